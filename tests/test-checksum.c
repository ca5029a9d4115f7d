/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The frame check's builds of XXH3 (src/basic/checksum.h) against libxxhash's:
 * every build this CPU can run, one-shot and in pieces, at every length up
 * to a few strides and on whole chunks, must give libxxhash's value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <cmocka.h>

#include "checksum-impl.h"
#include "checksum.h"

#define BUF (1u << 20)

static uint8_t *random_bytes(size_t n, unsigned seed)
{
        uint8_t *p = malloc(n);

        assert_non_null(p);
        srand(seed);
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)rand();
        return p;
}

/* The builds this CPU can run. */
static size_t builds(const struct checksum_impl **out)
{
        size_t n = 0;

        out[n++] = &checksum_impl_generic;
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2"))
                out[n++] = &checksum_impl_avx2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
                out[n++] = &checksum_impl_avx512;
#endif
        return n;
}

static void check_build(const struct checksum_impl *b, const uint8_t *buf)
{
        void *st = b->state_new();
        size_t lengths[] = {BUF, BUF - 1, 4096 * 3 + 17, 65536 + 250};

        assert_non_null(st);
        for (size_t len = 0; len <= 2100; len++)
                assert_int_equal(b->hash(buf, len), XXH3_64bits(buf, len));
        for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
                size_t len = lengths[i], cut = len / 3 + 5;
                uint64_t want = XXH3_64bits(buf, len);

                assert_int_equal(b->hash(buf, len), want);
                /* In pieces, as a channel hashes a frame's fields and then its pages. */
                b->reset(st);
                b->update(st, buf, 100);
                b->update(st, buf + 100, cut - 100);
                b->update(st, buf + cut, len - cut);
                assert_int_equal(b->digest(st), want);
        }
        b->state_free(st);
}

static void test_builds_match_libxxhash(void **state)
{
        const struct checksum_impl *b[3];
        uint8_t *buf = random_bytes(BUF, 7);
        size_t n = builds(b);

        for (size_t i = 0; i < n; i++)
                check_build(b[i], buf);
        free(buf);
}

/* The entry points use one of those builds, and one that this CPU can run. */
static void test_chosen(void **state)
{
        const struct checksum_impl *b[3];
        uint8_t *buf = random_bytes(BUF, 11);
        struct checksum_state *st = checksum_state_new();
        size_t n = builds(b);
        bool found = false;

        for (size_t i = 0; i < n; i++)
                found |= strcmp(b[i]->isa, checksum_isa()) == 0;
        assert_true(found);
        assert_int_equal(checksum64(buf, BUF), XXH3_64bits(buf, BUF));
        checksum_reset(st);
        checksum_update(st, buf, 4096);
        checksum_update(st, buf + 4096, BUF - 4096);
        assert_int_equal(checksum_digest(st), XXH3_64bits(buf, BUF));
        checksum_state_free(st);
        free(buf);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_builds_match_libxxhash),
                cmocka_unit_test(test_chosen),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
