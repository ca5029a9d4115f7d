/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * XXH3 inlined from xxhash.h, built once per instruction set (src/meson.build
 * passes CHECKSUM_ISA and the matching -m flags): xxhash picks its vector
 * code from the compiler's target.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "checksum-impl.h"

#define CAT_(a, b) a##b
#define CAT(a, b)  CAT_(a, b)
#define STR_(a)    #a
#define STR(a)     STR_(a)

static uint64_t hash(const void *p, size_t n)
{
        return XXH3_64bits(p, n);
}

static void *state_new(void)
{
        return XXH3_createState();
}

static void state_free(void *st)
{
        XXH3_freeState(st);
}

static void reset(void *st)
{
        XXH3_64bits_reset(st);
}

static void update(void *st, const void *p, size_t n)
{
        XXH3_64bits_update(st, p, n);
}

static uint64_t digest(void *st)
{
        return XXH3_64bits_digest(st);
}

const struct checksum_impl CAT(checksum_impl_, CHECKSUM_ISA) = {
        .isa = STR(CHECKSUM_ISA),
        .hash = hash,
        .state_new = state_new,
        .state_free = state_free,
        .reset = reset,
        .update = update,
        .digest = digest,
};
