/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* One build of XXH3 (checksum-impl.c), for checksum.c to choose from. */

#include <stddef.h>
#include <stdint.h>

struct checksum_impl {
        const char *isa;
        uint64_t (*hash)(const void *p, size_t n);
        void *(*state_new)(void);
        void (*state_free)(void *st);
        void (*reset)(void *st);
        void (*update)(void *st, const void *p, size_t n);
        uint64_t (*digest)(void *st);
};

extern const struct checksum_impl checksum_impl_generic;
#if defined(__x86_64__)
extern const struct checksum_impl checksum_impl_avx2;
extern const struct checksum_impl checksum_impl_avx512;
#endif
