/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* A grow-on-demand byte buffer, bounded by its callers. */
struct bytebuf {
        uint8_t *p;
        size_t cap;
};
int bytebuf_reserve(struct bytebuf *b, size_t n);
void bytebuf_done(struct bytebuf *b);
