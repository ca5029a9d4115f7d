/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * XXH3-64, the stream's frame check, bit for bit as libxxhash computes it,
 * but on the widest vector unit this CPU has: Debian's libxxhash is built
 * for any x86-64 (SSE2), and every byte a migration moves is checked on
 * both ends. xxhash's own code, inlined (XXH_INLINE_ALL) and built once per
 * instruction set (checksum-impl.c); the choice is made at the first call.
 */

#include <stddef.h>
#include <stdint.h>

uint64_t checksum64(const void *p, size_t n);

/* The same over a payload that arrives in pieces. */
struct checksum_state;

struct checksum_state *checksum_state_new(void);
void checksum_state_free(struct checksum_state *st);
void checksum_reset(struct checksum_state *st);
void checksum_update(struct checksum_state *st, const void *p, size_t n);
uint64_t checksum_digest(struct checksum_state *st);

/* The instruction set in use: "avx512", "avx2" or "generic". */
const char *checksum_isa(void);
