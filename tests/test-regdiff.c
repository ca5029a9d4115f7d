/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Each decision of src/regdiff.c on a register only the guest's state
 * carries: dropped when the guest's own registers show it cannot matter,
 * refused by name otherwise.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "svemig/kvmreg.h"
#include "svemig/regdiff.h"

static char why[256];

static int decide(const struct regdiff_guest *g, uint64_t id, uint64_t value)
{
        return regdiff_source_only(g, id, value, why, sizeof(why));
}

/* Debian 6.12's CLIDR_EL1 (L1 instruction, L2 unified) and 6.1's (L1 separate, L2 unified). */
static void test_ccsidr_by_clidr(void **state)
{
        struct regdiff_guest g612 = {0}, g61 = {0}, unknown = {0};

        regdiff_guest_note(&g612, kvmreg_sys(3, 1, 0, 0, 1), 0x2000021);
        regdiff_guest_note(&g61, kvmreg_sys(3, 1, 0, 0, 1), 0x2000023);
        /* CSSELR 3: level 2 instruction; a unified L2 is no instruction cache. */
        assert_int_equal(decide(&g612, kvmreg_demux_ccsidr(3), 2), 0);
        assert_non_null(strstr(why, "declares no level 2 instruction cache"));
        /* CSSELR 0 and 1 on 6.1's: level 1 data and instruction both exist. */
        assert_int_equal(decide(&g61, kvmreg_demux_ccsidr(0), 0x701fe00a), -ENOENT);
        assert_int_equal(decide(&g61, kvmreg_demux_ccsidr(1), 0x201fe012), -ENOENT);
        assert_non_null(strstr(why, "level 1 instruction"));
        /* Levels 3 to 7 exist in neither. */
        for (unsigned i = 4; i <= 13; i++)
                assert_int_equal(decide(&g61, kvmreg_demux_ccsidr(i), 2), 0);
        /* A guest whose CLIDR_EL1 is unknown keeps every CCSIDR it has. */
        assert_int_equal(decide(&unknown, kvmreg_demux_ccsidr(5), 2), -ENOENT);
}

static void test_hidden_features(void **state)
{
        const uint64_t tcr2 = kvmreg_sys(3, 0, 2, 0, 3), pir = kvmreg_sys(3, 0, 10, 2, 3);
        struct regdiff_guest hidden = {0}, shown = {0};

        regdiff_guest_note(&hidden, kvmreg_sys(3, 0, 0, 7, 3), 0);
        regdiff_guest_note(&shown, kvmreg_sys(3, 0, 0, 7, 3), 0x101);
        assert_int_equal(decide(&shown, tcr2, 0), 0); /* its reset value */
        assert_int_equal(decide(&hidden, pir, 0x1de7ec7edbadc0deull), 0);
        assert_non_null(strstr(why, "hides FEAT_S1PIE"));
        assert_int_equal(decide(&shown, pir, 0x1de7ec7edbadc0deull), -ENOENT);
        assert_int_equal(decide(&shown, tcr2, 5), -ENOENT);
        assert_non_null(strstr(why, "shows FEAT_TCR2"));
}

static void test_physical_timer(void **state)
{
        const uint64_t ctl = kvmreg_sys(3, 3, 14, 2, 1), cval = kvmreg_sys(3, 3, 14, 2, 2);
        struct regdiff_guest off = {0}, on = {0};

        regdiff_guest_note(&off, ctl, 4); /* ISTATUS, not ENABLE */
        regdiff_guest_note(&on, ctl, 1);
        assert_int_equal(decide(&off, ctl, 4), 0);
        assert_int_equal(decide(&off, cval, 12345), 0);
        assert_int_equal(decide(&on, ctl, 1), -ENOENT);
        assert_int_equal(decide(&on, cval, 12345), -ENOENT);
        assert_non_null(strstr(why, "compare value"));
        assert_int_equal(decide(&on, KVMREG_PTIMER_CNT, 99), 0);
}

static void test_unknown_refused(void **state)
{
        struct regdiff_guest g = {0};

        assert_int_equal(decide(&g, kvmreg_sys(3, 0, 12, 12, 5), 1), -ENOENT);
        assert_non_null(strstr(why, "cannot tell"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ccsidr_by_clidr),
                cmocka_unit_test(test_hidden_features),
                cmocka_unit_test(test_physical_timer),
                cmocka_unit_test(test_unknown_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
