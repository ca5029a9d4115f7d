/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>

#include "checksum-impl.h"
#include "checksum.h"

static const struct checksum_impl *impl;
static pthread_once_t impl_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
        impl = &checksum_impl_generic;
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
                impl = &checksum_impl_avx512;
        else if (__builtin_cpu_supports("avx2"))
                impl = &checksum_impl_avx2;
#endif
}

static const struct checksum_impl *get(void)
{
        pthread_once(&impl_once, choose);
        return impl;
}

uint64_t checksum64(const void *p, size_t n)
{
        return get()->hash(p, n);
}

struct checksum_state *checksum_state_new(void)
{
        return get()->state_new();
}

void checksum_state_free(struct checksum_state *st)
{
        if (st)
                get()->state_free(st);
}

void checksum_reset(struct checksum_state *st)
{
        get()->reset(st);
}

void checksum_update(struct checksum_state *st, const void *p, size_t n)
{
        get()->update(st, p, n);
}

uint64_t checksum_digest(struct checksum_state *st)
{
        return get()->digest(st);
}

const char *checksum_isa(void)
{
        return get()->isa;
}
