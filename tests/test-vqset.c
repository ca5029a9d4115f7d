/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "macro.h"
#include "svemig/vqset.h"

/* A set from a 0-terminated list of vq: S(1, 2, 4). */
#define S(...) set_of((const unsigned[]){__VA_ARGS__, 0})
#define NONE   ((vqset_t){{0}})

static vqset_t set_of(const unsigned *vqs)
{
        vqset_t s = {0};

        for (; *vqs; vqs++)
                vqset_add(&s, *vqs);
        return s;
}

static const char *fmt_vq(const vqset_t *s)
{
        static char bufs[4][4096];
        static unsigned next;
        char *b = bufs[next++ % ELEMENTSOF(bufs)];

        vqset_format(s, VQSET_FORMAT_VQ, b, sizeof(bufs[0]));
        return b;
}

static void assert_set_equal(vqset_t got, vqset_t want)
{
        if (!vqset_equal(&got, &want))
                fail_msg("set %s, expected %s", fmt_vq(&got), fmt_vq(&want));
}

/* ---- basic operations ---- */

static void test_layout_is_vls(void **state)
{
        vqset_t s = S(1, 2, 4);

        /* Bit vq-1 of the __u64[8] register value. */
        assert_int_equal(sizeof(vqset_t), 64);
        assert_true(s.w[0] == 0xb);
        s = S(64, 65, 512);
        assert_true(s.w[0] == UINT64_C(1) << 63);
        assert_true(s.w[1] == 1);
        assert_true(s.w[7] == UINT64_C(1) << 63);
}

static void test_add_del_contains(void **state)
{
        vqset_t s = NONE;

        assert_true(vqset_empty(&s));
        vqset_add(&s, 0);
        vqset_add(&s, 513);
        vqset_add(&s, 100000);
        assert_true(vqset_empty(&s));

        vqset_add(&s, 1);
        vqset_add(&s, 512);
        vqset_add(&s, 64);
        assert_false(vqset_empty(&s));
        assert_true(vqset_contains(&s, 1));
        assert_true(vqset_contains(&s, 64));
        assert_true(vqset_contains(&s, 512));
        assert_false(vqset_contains(&s, 0));
        assert_false(vqset_contains(&s, 2));
        assert_false(vqset_contains(&s, 513));
        assert_int_equal(vqset_count(&s), 3);

        vqset_del(&s, 64);
        vqset_del(&s, 0);
        vqset_del(&s, 513);
        assert_false(vqset_contains(&s, 64));
        assert_int_equal(vqset_count(&s), 2);
        vqset_clear(&s);
        assert_true(vqset_empty(&s));
}

static void test_lowest_highest_next(void **state)
{
        vqset_t s = S(3, 63, 64, 65, 128, 129, 500, 512);
        unsigned want[] = {3, 63, 64, 65, 128, 129, 500, 512}, i = 0;
        vqset_t empty = NONE;

        assert_int_equal(vqset_lowest(&s), 3);
        assert_int_equal(vqset_highest(&s), 512);
        assert_int_equal(vqset_lowest(&empty), 0);
        assert_int_equal(vqset_highest(&empty), 0);
        assert_int_equal(vqset_next(&empty, 0), 0);
        assert_int_equal(vqset_next(&s, 0), 3);
        assert_int_equal(vqset_next(&s, 3), 63);
        assert_int_equal(vqset_next(&s, 4), 63);
        assert_int_equal(vqset_next(&s, 65), 128);
        assert_int_equal(vqset_next(&s, 500), 512);
        assert_int_equal(vqset_next(&s, 512), 0);
        assert_int_equal(vqset_next(&s, 1000), 0);

        VQSET_FOREACH (vq, &s) {
                assert_true(i < ELEMENTSOF(want));
                assert_int_equal(vq, want[i++]);
        }
        assert_int_equal(i, ELEMENTSOF(want));

        s = S(1);
        assert_int_equal(vqset_highest(&s), 1);
        assert_int_equal(vqset_lowest(&s), 1);
}

static void test_set_algebra(void **state)
{
        vqset_t a = S(1, 2, 4, 70, 300), b = S(2, 3, 4, 300, 512), r;

        r = vqset_and(&a, &b);
        assert_set_equal(r, S(2, 4, 300));
        r = vqset_or(&a, &b);
        assert_set_equal(r, S(1, 2, 3, 4, 70, 300, 512));
        r = vqset_andnot(&a, &b);
        assert_set_equal(r, S(1, 70));
        r = vqset_andnot(&b, &a);
        assert_set_equal(r, S(3, 512));
        assert_true(vqset_equal(&a, &a));
        assert_false(vqset_equal(&a, &b));

        r = vqset_upto(&a, 4);
        assert_set_equal(r, S(1, 2, 4));
        r = vqset_upto(&a, 0);
        assert_set_equal(r, NONE);
        r = vqset_upto(&a, 512);
        assert_set_equal(r, a);
        r = vqset_upto(&a, 70);
        assert_set_equal(r, S(1, 2, 4, 70));

        r = vqset_range(0);
        assert_true(vqset_empty(&r));
        r = vqset_range(4);
        assert_set_equal(r, S(1, 2, 3, 4));
        r = vqset_range(64);
        assert_int_equal(vqset_count(&r), 64);
        assert_int_equal(vqset_highest(&r), 64);
        r = vqset_range(65);
        assert_int_equal(vqset_count(&r), 65);
        r = vqset_range(512);
        assert_int_equal(vqset_count(&r), 512);
        r = vqset_range(9999);
        assert_int_equal(vqset_count(&r), 512);
}

/* ---- parse and format ---- */

struct parse_ok {
        const char *text;
        vqset_t want;
};

static void test_parse_accepts(void **state)
{
        char hex512[2 + 128 + 1] = "0x8", hexzeros[2 + 200 + 1] = "0x";
        const struct parse_ok cases[] = {
                {"128,256,512", S(1, 2, 4)},
                {"128, 256,\t512", S(1, 2, 4)},
                {"512,128,256,128", S(1, 2, 4)},
                {"128-512", S(1, 2, 3, 4)},
                {"128-128", S(1)},
                {"128,512-768,2048", S(1, 4, 5, 6, 16)},
                {"65536", S(512)},
                {"vq1,vq2,vq4", S(1, 2, 4)},
                {"VQ1,Vq2,vQ4", S(1, 2, 4)},
                {"vq1-vq4", S(1, 2, 3, 4)},
                {"vq1-VQ4,vq16", S(1, 2, 3, 4, 16)},
                {"vq512", S(512)},
                {"0xb", S(1, 2, 4)},
                {"0XB", S(1, 2, 4)},
                {"0x000b", S(1, 2, 4)},
                {"0x8000", S(16)},
                {"0x10000000000000000", S(65)},
                {"0x0", NONE},
                {"none", NONE},
                {"NONE", NONE},
        };

        memset(hex512 + 3, '0', 127);
        hex512[2 + 128] = '\0';
        memset(hexzeros + 2, '0', 199);
        hexzeros[2 + 199] = 'b';
        hexzeros[2 + 200] = '\0';

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct svemig_error err = {0};
                vqset_t s = S(7);

                if (vqset_parse(cases[i].text, &s, &err) != 0)
                        fail_msg("\"%s\" refused: %s", cases[i].text, err.msg);
                if (!vqset_equal(&s, &cases[i].want))
                        fail_msg("\"%s\" parsed to %s, expected %s", cases[i].text, fmt_vq(&s),
                                 fmt_vq(&cases[i].want));
        }

        vqset_t s;
        assert_int_equal(vqset_parse(hex512, &s, NULL), 0);
        assert_set_equal(s, S(512));
        assert_int_equal(vqset_parse(hexzeros, &s, NULL), 0);
        assert_set_equal(s, S(1, 2, 4));
}

struct parse_bad {
        const char *text;
        const char *token; /* must appear quoted in the message */
        const char *why;   /* and this */
};

static void test_parse_refuses(void **state)
{
        static char hex129[2 + 129 + 1] = "0x1";
        const struct parse_bad cases[] = {
                {"100", "\"100\"", "multiple of 128"},
                {"128,200", "\"200\"", "multiple of 128"},
                {"0", "\"0\"", "out of range"},
                {"65664", "\"65664\"", "out of range"},
                {"131072", "\"131072\"", "out of range"},
                {"99999999999999999999999", "\"99999999999999999999999\"", "out of range"},
                {"vq0", "\"vq0\"", "out of range"},
                {"vq513", "\"vq513\"", "out of range"},
                {"vq99999999999999999999", "\"vq99999999999999999999\"", "out of range"},
                {"vq", "\"vq\"", "not a vector quantum"},
                {"vqx", "\"vqx\"", "not a vector quantum"},
                {"abc", "\"abc\"", "not a length"},
                {"1e3", "\"1e3\"", "not a length"},
                {"+128", "\"+128\"", "not a length"},
                {"-128", "\"-128\"", "not a length"},
                {" 128", "\" 128\"", "not a length"},
                {"128 ,256", "\"128 \"", "not a length"},
                {"128,", "\"128,\"", "empty entry"},
                {",128", "\",128\"", "empty entry"},
                {"128,,256", "\"128,,256\"", "empty entry"},
                {"128,vq2", "\"vq2\"", "mixes"},
                {"vq1,256", "\"256\"", "mixes"},
                {"vq1-4", "\"vq1-4\"", "mixes"},
                {"128-vq4", "\"128-vq4\"", "mixes"},
                {"128,0xb", "\"0xb\"", "on its own"},
                {"0x", "\"0x\"", "no hex digits"},
                {"0xg", "\"0xg\"", "not a hex bitmap"},
                {"0xb,0x1", "\"0xb,0x1\"", "not a hex bitmap"},
                {hex129, "\"0x1000", "wider than"},
                {"512-128", "\"512-128\"", "reversed"},
                {"vq4-vq1", "\"vq4-vq1\"", "reversed"},
                {"128-", "\"128-\"", "not a length"},
                {"128-256-384", "\"128-256-384\"", "not a length"},
                {"nonesuch", "\"nonesuch\"", "not a length"},
                {"", "\"\"", "is empty"},
                {" ", "\" \"", "is empty"},
        };

        memset(hex129 + 3, '0', 128);
        hex129[2 + 129] = '\0';

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct svemig_error err = {0};
                vqset_t s = S(7);
                int r = vqset_parse(cases[i].text, &s, &err);

                if (r != -EINVAL)
                        fail_msg("\"%s\": returned %d, expected -EINVAL", cases[i].text, r);
                assert_int_equal(err.code, EINVAL);
                if (!strstr(err.msg, cases[i].token))
                        fail_msg("\"%s\": message does not quote %s: %s", cases[i].text, cases[i].token,
                                 err.msg);
                if (!strstr(err.msg, cases[i].why))
                        fail_msg("\"%s\": message does not say \"%s\": %s", cases[i].text, cases[i].why,
                                 err.msg);
                /* Every refusal shows what would have been accepted. */
                if (!strstr(err.msg, "accepted forms") || !strstr(err.msg, "\"vq1,vq2,vq4\"") ||
                    !strstr(err.msg, "\"0xb\"") || !strstr(err.msg, "\"128,256,512\"") ||
                    !strstr(err.msg, "\"none\""))
                        fail_msg("\"%s\": message lacks the accepted forms: %s", cases[i].text, err.msg);
                /* A refused parse leaves the output alone. */
                assert_set_equal(s, S(7));
        }

        struct svemig_error err = {0};
        vqset_t s;
        assert_int_equal(vqset_parse(NULL, &s, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "accepted forms"));
        /* The error is optional. */
        assert_int_equal(vqset_parse("100", &s, NULL), -EINVAL);
}

static void test_parse_error_message_bounded(void **state)
{
        char text[4096];
        struct svemig_error err = {0};
        vqset_t s;

        /* A long token is cut, but the reason and the accepted forms survive. */
        memset(text, '7', sizeof(text) - 1);
        text[sizeof(text) - 1] = '\0';
        assert_int_equal(vqset_parse(text, &s, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "\"7777777"));
        assert_non_null(strstr(err.msg, "...\""));
        assert_non_null(strstr(err.msg, "out of range"));
        assert_non_null(strstr(err.msg, "\"none\" for a host without SVE"));
}

static void test_format(void **state)
{
        char buf[4096];
        vqset_t s = S(1, 2, 4), empty = NONE;

        assert_int_equal(vqset_format(&s, VQSET_FORMAT_BITS, buf, sizeof(buf)), 11);
        assert_string_equal(buf, "128,256,512");
        vqset_format(&s, VQSET_FORMAT_VQ, buf, sizeof(buf));
        assert_string_equal(buf, "vq1,vq2,vq4");
        vqset_format(&s, VQSET_FORMAT_BITMAP, buf, sizeof(buf));
        assert_string_equal(buf, "0xb");

        vqset_format(&empty, VQSET_FORMAT_BITS, buf, sizeof(buf));
        assert_string_equal(buf, "none");
        vqset_format(&empty, VQSET_FORMAT_VQ, buf, sizeof(buf));
        assert_string_equal(buf, "none");
        vqset_format(&empty, VQSET_FORMAT_BITMAP, buf, sizeof(buf));
        assert_string_equal(buf, "0x0");

        s = S(65);
        vqset_format(&s, VQSET_FORMAT_BITMAP, buf, sizeof(buf));
        assert_string_equal(buf, "0x10000000000000000");
        s = S(1, 512);
        vqset_format(&s, VQSET_FORMAT_BITMAP, buf, sizeof(buf));
        assert_int_equal(strlen(buf), 2 + 128);
        assert_true(strncmp(buf, "0x8000", 6) == 0);
        assert_true(buf[2 + 127] == '1');
        vqset_format(&s, VQSET_FORMAT_BITS, buf, sizeof(buf));
        assert_string_equal(buf, "128,65536");

        /* Like snprintf: truncated, NUL-terminated, the full length returned. */
        s = S(1, 2, 4);
        memset(buf, 'x', sizeof(buf));
        assert_int_equal(vqset_format(&s, VQSET_FORMAT_BITS, buf, 5), 11);
        assert_string_equal(buf, "128,");
        assert_int_equal(vqset_format(&s, VQSET_FORMAT_VQ, NULL, 0), 11);
        assert_int_equal(vqset_format(&s, VQSET_FORMAT_BITMAP, buf, 1), 3);
        assert_string_equal(buf, "");

        /* The whole range needs far more than a small buffer. */
        s = vqset_range(512);
        int n = vqset_format(&s, VQSET_FORMAT_BITS, NULL, 0);
        assert_true(n > 2000);
        assert_int_equal(vqset_format(&s, VQSET_FORMAT_BITS, buf, sizeof(buf)), n);
        assert_int_equal(strlen(buf), (size_t)n);
}

/* ---- a fixed-seed generator for the property tests ---- */

static uint64_t rng_state;

static uint64_t rng(void)
{
        /* xorshift64* */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * UINT64_C(2685821657736338717);
}

static unsigned rng_below(unsigned n)
{
        return (unsigned)(rng() % n);
}

static uint64_t test_seed(void)
{
        const char *e = getenv("SVEMIG_TEST_SEED");
        uint64_t seed = e ? strtoull(e, NULL, 0) : UINT64_C(0x5e3e0128);

        print_message("vqset property tests: seed 0x%" PRIx64 " (set SVEMIG_TEST_SEED to change)\n", seed);
        return seed ? seed : 1;
}

/*
 * A host or CPU: no SVE now and then, otherwise vq1 (architecturally
 * mandatory) and a random mix of the rest up to max_vq, biased towards the
 * power-of-two sets real parts implement so that hosts often agree.
 */
static vqset_t random_set(unsigned max_vq)
{
        vqset_t s = {0};
        unsigned top;

        switch (rng_below(10)) {
        case 0:
                return s;
        case 1:
        case 2:
        case 3:
                top = 1u << rng_below(5); /* 128 .. 2048 bits */
                for (unsigned vq = 1; vq <= top && vq <= max_vq; vq *= 2)
                        vqset_add(&s, vq);
                if (rng_below(3) == 0)
                        vqset_add(&s, 1 + rng_below(max_vq));
                return s;
        case 4:
        case 5:
                top = 1 + rng_below(max_vq);
                return vqset_range(top);
        default:
                vqset_add(&s, 1);
                for (unsigned vq = 2; vq <= max_vq; vq++)
                        if (rng_below(2))
                                vqset_add(&s, vq);
                return s;
        }
}

static void test_format_parse_round_trip(void **state)
{
        static const enum vqset_format forms[] = {VQSET_FORMAT_BITS, VQSET_FORMAT_VQ, VQSET_FORMAT_BITMAP};
        char buf[8192];

        rng_state = test_seed();
        for (unsigned i = 0; i < 3000; i++) {
                vqset_t s = {0}, back;

                /* Sparse sets over the whole range, so every word and both ends get used. */
                for (unsigned k = rng_below(12); k > 0; k--)
                        vqset_add(&s, 1 + rng_below(VQSET_VQ_MAX));
                if (i % 3 == 0)
                        s = random_set(VQSET_VQ_ARCH_MAX);
                if (i == 0)
                        s = vqset_range(VQSET_VQ_MAX);

                for (size_t f = 0; f < ELEMENTSOF(forms); f++) {
                        struct svemig_error err = {0};
                        int n = vqset_format(&s, forms[f], buf, sizeof(buf));

                        assert_true(n > 0 && (size_t)n < sizeof(buf));
                        if (vqset_parse(buf, &back, &err) != 0)
                                fail_msg("format %zu of %s gave \"%s\", refused: %s", f, fmt_vq(&s), buf,
                                         err.msg);
                        assert_set_equal(back, s);
                }
        }
}

/* ---- presenting a guest set ---- */

static void check_present(vqset_t host, vqset_t guest, enum vqset_mismatch kind, unsigned vq,
                          const char *text)
{
        struct vqset_reason why = {.kind = 99, .vq = 99};
        char buf[256];

        assert_int_equal(vqset_can_present(&host, &guest, &why), kind == VQSET_OK);
        assert_int_equal(why.kind, kind);
        assert_int_equal(why.vq, vq);
        assert_int_equal(why.guest_max_vq, vqset_highest(&guest));
        assert_int_equal(vqset_reason_format(&why, buf, sizeof(buf)), strlen(text));
        assert_string_equal(buf, text);
        /* The reason is optional. */
        assert_int_equal(vqset_can_present(&host, &guest, NULL), kind == VQSET_OK);
}

static void test_can_present(void **state)
{
        static const char *ok = "the host can present the guest's vector lengths exactly";

        check_present(S(1, 2, 4), S(1, 2, 4), VQSET_OK, 0, ok);
        /* Lengths above the guest's maximum are hidden by choosing the maximum. */
        check_present(S(1, 2, 4, 8, 16), S(1, 2, 4), VQSET_OK, 0, ok);
        check_present(S(1, 2, 3, 4), S(1, 2), VQSET_OK, 0, ok);
        /* No SVE in the guest: FPSIMD only, presentable anywhere. */
        check_present(S(1, 2, 4), NONE, VQSET_OK, 0, ok);
        check_present(NONE, NONE, VQSET_OK, 0, ok);

        check_present(S(1, 2), S(1, 2, 4), VQSET_MISSING, 4, "vq 4 (512-bit) is missing on this host");
        check_present(NONE, S(1), VQSET_MISSING, 1, "vq 1 (128-bit) is missing on this host");
        check_present(
                S(1, 2, 3, 4), S(1, 2, 4), VQSET_EXTRA, 3,
                "vq 3 (384-bit) is offered by this host below the guest's maximum of 512 bits and cannot be "
                "hidden");
        /* The lowest offending vq wins, whichever its kind. */
        check_present(S(1, 3), S(1, 2, 4), VQSET_MISSING, 2, "vq 2 (256-bit) is missing on this host");
        check_present(
                S(1, 2, 3), S(1, 2, 4), VQSET_EXTRA, 3,
                "vq 3 (384-bit) is offered by this host below the guest's maximum of 512 bits and cannot be "
                "hidden");
        check_present(
                S(1, 2, 4, 6, 8), S(1, 2, 4, 8), VQSET_EXTRA, 6,
                "vq 6 (768-bit) is offered by this host below the guest's maximum of 1024 bits and cannot "
                "be hidden");
        check_present(S(1, 2, 4, 8, 16), S(1, 2, 4, 8, 12, 16), VQSET_MISSING, 12,
                      "vq 12 (1536-bit) is missing on this host");

        /* Without the guest's maximum the sentence still reads. */
        struct vqset_reason why = {.kind = VQSET_EXTRA, .vq = 3};
        char buf[256];
        vqset_reason_format(&why, buf, sizeof(buf));
        assert_string_equal(buf,
                            "vq 3 (384-bit) is offered by this host below the guest's maximum and cannot be "
                            "hidden");
        assert_int_equal(vqset_reason_format(&why, NULL, 0), strlen(buf));
}

/* ---- the kernel's virtualisable-VL computation ---- */

static void check_virtualisable(const vqset_t *cpus, size_t n, vqset_t want)
{
        unsigned max = 999;
        vqset_t got = vqset_virtualisable(cpus, n, &max);

        assert_set_equal(got, want);
        assert_int_equal(max, vqset_highest(&want));
        got = vqset_virtualisable(cpus, n, NULL);
        assert_set_equal(got, want);
}

static void test_virtualisable(void **state)
{
        /* The kernel's round-down: 768 bits exists on one CPU only, so the cap is 5, then 4. */
        check_virtualisable((vqset_t[]){S(1, 2, 4, 8), S(1, 2, 4, 6, 8)}, 2, S(1, 2, 4));
        /* Identical CPUs offer everything, up to the architecture's 2048 bits. */
        check_virtualisable((vqset_t[]){S(1, 2, 4), S(1, 2, 4), S(1, 2, 4)}, 3, S(1, 2, 4));
        check_virtualisable((vqset_t[]){vqset_range(16)}, 1, vqset_range(16));
        check_virtualisable((vqset_t[]){S(1, 2, 4, 8, 16)}, 1, S(1, 2, 4, 8, 16));
        /* KVM's VL_ARCH_MAX. */
        check_virtualisable((vqset_t[]){vqset_range(32), vqset_range(32)}, 2, vqset_range(16));
        check_virtualisable((vqset_t[]){S(1, 2, 4, 8, 16, 32, 64)}, 1, S(1, 2, 4, 8, 16));
        check_virtualisable((vqset_t[]){S(1, 2, 4, 8, 17)}, 1, S(1, 2, 4, 8));
        /* big.LITTLE with different lengths: only what every CPU shares below the first difference. */
        check_virtualisable((vqset_t[]){S(1, 2), S(1, 2, 3, 4)}, 2, S(1, 2));
        check_virtualisable((vqset_t[]){S(1, 2, 3, 4), S(1, 2, 4)}, 2, S(1, 2));
        check_virtualisable((vqset_t[]){S(1), S(1, 2, 4, 8, 16)}, 2, S(1));
        /* One CPU without SVE switches it off for the system. */
        check_virtualisable((vqset_t[]){S(1, 2, 4), NONE, S(1, 2, 4)}, 3, NONE);
        check_virtualisable((vqset_t[]){NONE}, 1, NONE);
        check_virtualisable(NULL, 0, NONE);
        /* A CPU without vq1 is architecturally impossible; nothing can be offered then. */
        check_virtualisable((vqset_t[]){S(1, 2), S(2)}, 2, NONE);
}

/* The offer by brute force: the largest m every CPU agrees on below and including. */
static vqset_t virtualisable_model(const vqset_t *cpus, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (vqset_empty(&cpus[i]))
                        return NONE;
        for (unsigned m = VQSET_VQ_ARCH_MAX; n > 0 && m >= 1; m--) {
                vqset_t first = vqset_upto(&cpus[0], m);
                bool agree = vqset_contains(&first, m);

                for (size_t i = 1; agree && i < n; i++) {
                        vqset_t other = vqset_upto(&cpus[i], m);
                        agree = vqset_equal(&first, &other);
                }
                if (agree)
                        return first;
        }
        return NONE;
}

static void test_virtualisable_property(void **state)
{
        vqset_t cpus[8];

        rng_state = test_seed() ^ 0xc9u;
        for (unsigned iter = 0; iter < 4000; iter++) {
                size_t n = 1 + rng_below(ELEMENTSOF(cpus));
                unsigned max;

                /* Past the architecture's 16 now and then, to exercise the cap. */
                for (size_t i = 0; i < n; i++) {
                        cpus[i] = random_set(iter % 4 == 0 ? 32 : VQSET_VQ_ARCH_MAX);
                        /* Mostly SVE everywhere, or the answer is nearly always empty. */
                        if (vqset_empty(&cpus[i]) && rng_below(4))
                                cpus[i] = S(1);
                }

                vqset_t got = vqset_virtualisable(cpus, n, &max), want = virtualisable_model(cpus, n);
                if (!vqset_equal(&got, &want) || max != vqset_highest(&want)) {
                        for (size_t i = 0; i < n; i++)
                                print_error("cpu %zu: %s\n", i, fmt_vq(&cpus[i]));
                        fail_msg("iteration %u: offered %s (max %u), model says %s", iter, fmt_vq(&got), max,
                                 fmt_vq(&want));
                }
        }
}

/* ---- the cluster ---- */

static void check_negotiate(const vqset_t *hosts, size_t n, vqset_t want, const size_t *limiting,
                            size_t n_limiting)
{
        struct vqset_cluster c = {0};
        struct svemig_error err = {0};

        assert_int_equal(vqset_negotiate(hosts, n, &c, &err), 0);
        assert_set_equal(c.guest, want);
        assert_int_equal(c.max_vq, vqset_highest(&want));
        assert_int_equal(c.n_hosts, n);
        assert_non_null(c.hosts);
        assert_non_null(c.limiting);

        /* Every host can present the cluster's set: the computation guarantees it. */
        for (size_t i = 0; i < n; i++) {
                assert_true(c.hosts[i].can_present);
                assert_int_equal(c.hosts[i].reason.kind, VQSET_OK);
        }

        assert_int_equal(c.n_limiting, n_limiting);
        for (size_t i = 0, k = 0; i < n; i++) {
                bool want_limiting = k < n_limiting && limiting[k] == i;

                if (c.limiting[i] != want_limiting)
                        fail_msg("host %zu (%s): limiting %d, expected %d", i, fmt_vq(&hosts[i]),
                                 c.limiting[i], want_limiting);
                k += want_limiting;
        }

        vqset_cluster_done(&c);
        assert_null(c.hosts);
        assert_null(c.limiting);
        assert_int_equal(c.n_hosts, 0);
}

#define HOSTS(...)    ((const vqset_t[]){__VA_ARGS__}), ELEMENTSOF(((const vqset_t[]){__VA_ARGS__}))
#define LIMITING(...) ((const size_t[]){__VA_ARGS__}), ELEMENTSOF(((const size_t[]){__VA_ARGS__}))
#define NO_LIMITING   NULL, 0

static void test_negotiate_design_table(void **state)
{
        /* The table in DESIGN.md "Vector-length negotiation", row by row. */
        check_negotiate(HOSTS(S(1, 2, 4), S(1, 2)), S(1, 2), LIMITING(1));
        check_negotiate(HOSTS(S(1, 2, 3, 4), S(1, 2, 4)), S(1, 2), LIMITING(1));
        check_negotiate(HOSTS(S(1, 2, 4, 8), S(1, 2, 4, 6, 8)), S(1, 2, 4), LIMITING(0));
        check_negotiate(HOSTS(S(1, 2, 4), NONE), NONE, LIMITING(1));
        check_negotiate(HOSTS(NONE, S(1, 2, 4), S(1, 2, 4, 8, 16)), NONE, LIMITING(0));
}

static void test_negotiate_more(void **state)
{
        /* One host: whatever it offers. */
        check_negotiate(HOSTS(S(1, 2, 4, 8)), S(1, 2, 4, 8), NO_LIMITING);
        /* Identical hosts: nobody limits. */
        check_negotiate(HOSTS(S(1, 2, 4), S(1, 2, 4), S(1, 2, 4)), S(1, 2, 4), NO_LIMITING);
        /* No host has SVE: no SVE, and nobody in particular to blame. */
        check_negotiate(HOSTS(NONE, NONE), NONE, NO_LIMITING);
        check_negotiate(HOSTS(NONE), NONE, NO_LIMITING);
        /* A VQ1-only host holds everyone at 128 bits. */
        check_negotiate(HOSTS(S(1), S(1, 2, 4), S(1, 2, 3, 4)), S(1), LIMITING(0));
        check_negotiate(HOSTS(S(1), S(1)), S(1), NO_LIMITING);
        /* 2048-bit hosts. */
        check_negotiate(HOSTS(vqset_range(16), vqset_range(16)), vqset_range(16), NO_LIMITING);
        check_negotiate(HOSTS(S(1, 2, 4, 8, 16), S(1, 2, 4, 8, 16)), S(1, 2, 4, 8, 16), NO_LIMITING);
        check_negotiate(HOSTS(vqset_range(16), S(1, 2, 4, 8, 16)), S(1, 2), LIMITING(1));
        check_negotiate(HOSTS(S(1, 2, 4, 8), S(1, 2, 4, 8, 16)), S(1, 2, 4, 8), LIMITING(0));
        check_negotiate(HOSTS(vqset_range(15), vqset_range(16)), vqset_range(15), LIMITING(0));
        /* Non-contiguous sets, and the round-down to a member of full. */
        check_negotiate(HOSTS(S(1, 2, 4, 8, 16), S(1, 2, 4, 8, 12, 16)), S(1, 2, 4, 8), LIMITING(0));
        check_negotiate(HOSTS(S(1, 3, 5), S(1, 3, 5)), S(1, 3, 5), NO_LIMITING);
        check_negotiate(HOSTS(S(1, 3, 5, 7), S(1, 3, 5, 6, 7)), S(1, 3, 5), LIMITING(0));
        check_negotiate(HOSTS(S(1, 2, 4, 8), S(1, 2, 4, 6, 8), S(1, 2, 4, 5, 8)), S(1, 2, 4),
                        LIMITING(0, 1));
        /* Several hosts lack the same vq: all of them limit. */
        check_negotiate(HOSTS(S(1, 2, 3), S(1, 2), S(1, 2), S(1, 2, 3, 4)), S(1, 2), LIMITING(1, 2));
        /* Only the hosts lacking the lowest partial-only vq limit, not those lacking a higher one. */
        check_negotiate(HOSTS(S(1, 2), S(1, 2, 4), S(1, 2, 3, 4)), S(1, 2), LIMITING(0, 1));
        check_negotiate(HOSTS(S(1, 2, 3, 4), S(1, 2, 3), S(1, 2)), S(1, 2), LIMITING(2));
        /* The design's demo cluster: {128,256,512}, {128,256}, {128,256,384,512}. */
        check_negotiate(HOSTS(S(1, 2, 4), S(1, 2), S(1, 2, 3, 4)), S(1, 2), LIMITING(0, 1));
        /* Hosts without vq1 (not architectural) still follow the rule. */
        check_negotiate(HOSTS(S(2, 4), S(1, 2, 4)), NONE, LIMITING(0));
}

static void test_negotiate_errors(void **state)
{
        struct vqset_cluster c = {0};
        struct svemig_error err = {0};

        assert_int_equal(vqset_negotiate(NULL, 0, &c, &err), -EINVAL);
        assert_int_equal(err.code, EINVAL);
        assert_non_null(strstr(err.msg, "no hosts"));
        assert_int_equal(vqset_negotiate(NULL, 0, &c, NULL), -EINVAL);

        /* Done on a zeroed or NULL cluster is harmless. */
        vqset_cluster_done(&c);
        vqset_cluster_done(NULL);
}

/* The largest m for which every host shows the same set below and including m, by brute force. */
static unsigned cluster_max_model(const vqset_t *hosts, size_t n)
{
        for (unsigned m = VQSET_VQ_MAX; m >= 1; m--) {
                vqset_t first = vqset_upto(&hosts[0], m);
                bool ok = vqset_contains(&first, m);

                for (size_t i = 1; ok && i < n; i++) {
                        vqset_t other = vqset_upto(&hosts[i], m);
                        ok = vqset_equal(&first, &other);
                }
                if (ok)
                        return m;
        }
        return 0;
}

static void test_negotiate_property(void **state)
{
        vqset_t hosts[6], rest[6];

        rng_state = test_seed() ^ 0x4e60u;
        for (unsigned iter = 0; iter < 4000; iter++) {
                size_t n = 1 + rng_below(ELEMENTSOF(hosts)), n_rest = 0;
                struct vqset_cluster c = {0}, without = {0};
                unsigned model;

                for (size_t i = 0; i < n; i++) {
                        hosts[i] = random_set(VQSET_VQ_ARCH_MAX);
                        if (vqset_empty(&hosts[i]) && rng_below(3))
                                hosts[i] = random_set(VQSET_VQ_ARCH_MAX);
                }
                /* Clusters of identical hosts are common in life; make them common here. */
                if (iter % 5 == 0)
                        for (size_t i = 1; i < n; i++)
                                hosts[i] = hosts[0];

                assert_int_equal(vqset_negotiate(hosts, n, &c, NULL), 0);

                /* Presentable on every host, checked directly and through the verdicts. */
                for (size_t i = 0; i < n; i++) {
                        struct vqset_reason why;

                        if (!vqset_can_present(&hosts[i], &c.guest, &why) || !c.hosts[i].can_present)
                                fail_msg("iteration %u: host %zu (%s) cannot present %s: vq %u kind %d",
                                         iter, i, fmt_vq(&hosts[i]), fmt_vq(&c.guest), why.vq, why.kind);
                }

                /* Maximal: no larger maximum gives a set every host can present. */
                model = cluster_max_model(hosts, n);
                if (c.max_vq != model)
                        fail_msg("iteration %u: max vq %u, brute force says %u", iter, c.max_vq, model);
                for (unsigned m = c.max_vq + 1; m <= VQSET_VQ_ARCH_MAX; m++) {
                        vqset_t g = vqset_upto(&hosts[0], m);
                        bool all = vqset_contains(&g, m);

                        for (size_t i = 0; all && i < n; i++)
                                all = vqset_can_present(&hosts[i], &g, NULL);
                        if (all)
                                fail_msg(
                                        "iteration %u: %s (max %u) is presentable by all, but %s was chosen",
                                        iter, fmt_vq(&g), m, fmt_vq(&c.guest));
                }
                assert_int_equal(c.max_vq, vqset_highest(&c.guest));

                /* Limiting hosts: leaving them out strictly raises the maximum; nobody limits otherwise. */
                for (size_t i = 0; i < n; i++)
                        if (!c.limiting[i])
                                rest[n_rest++] = hosts[i];
                if (c.n_limiting == 0) {
                        for (size_t i = 1; i < n; i++)
                                if (!vqset_equal(&hosts[i], &hosts[0]))
                                        fail_msg("iteration %u: hosts differ, yet none limits", iter);
                } else {
                        assert_true(n_rest > 0 && n_rest < n);
                        assert_int_equal(vqset_negotiate(rest, n_rest, &without, NULL), 0);
                        if (without.max_vq <= c.max_vq)
                                fail_msg("iteration %u: leaving out the limiting hosts keeps max vq %u",
                                         iter, without.max_vq);
                        vqset_cluster_done(&without);
                }
                vqset_cluster_done(&c);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_layout_is_vls),
                cmocka_unit_test(test_add_del_contains),
                cmocka_unit_test(test_lowest_highest_next),
                cmocka_unit_test(test_set_algebra),
                cmocka_unit_test(test_parse_accepts),
                cmocka_unit_test(test_parse_refuses),
                cmocka_unit_test(test_parse_error_message_bounded),
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_format_parse_round_trip),
                cmocka_unit_test(test_can_present),
                cmocka_unit_test(test_virtualisable),
                cmocka_unit_test(test_virtualisable_property),
                cmocka_unit_test(test_negotiate_design_table),
                cmocka_unit_test(test_negotiate_more),
                cmocka_unit_test(test_negotiate_errors),
                cmocka_unit_test(test_negotiate_property),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
