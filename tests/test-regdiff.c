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
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "sim/reglist.h"
#include "svemig/kvmreg.h"
#include "svemig/regdiff.h"

#ifndef SVEMIG_CPU_BASELINE_DOC
#error "SVEMIG_CPU_BASELINE_DOC must name docs/cpu-baseline.md"
#endif

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

/* A row of the doc's tables: its id and its first decision word ("drop", ...). */
struct row {
        uint64_t id;
        char decision[16];
};

/* The rows of the table under the heading that starts with 'heading'. */
static size_t doc_rows(const char *heading, struct row *rows, size_t max)
{
        FILE *f = fopen(SVEMIG_CPU_BASELINE_DOC, "re");
        char line[1024];
        bool in = false;
        size_t n = 0;

        assert_non_null(f);
        while (fgets(line, sizeof(line), f)) {
                char *id;

                if (strncmp(line, "#", 1) == 0)
                        in = strncmp(line, heading, strlen(heading)) == 0;
                if (!in || line[0] != '|' || !(id = strstr(line, "| 0x")))
                        continue;
                assert_true(n < max);
                rows[n].id = strtoull(id + 2, NULL, 16);
                /* The decision: the column after the id and the value(s). */
                char *col = id + 2;
                for (int skip = 0; skip < 2 && col; skip++)
                        col = strchr(col + 1, '|');
                assert_non_null(col);
                sscanf(col + 1, " %15s", rows[n].decision);
                n++;
        }
        fclose(f);
        return n;
}

static const struct reglist_entry *entry(const struct reglist_profile *p, uint64_t id)
{
        for (size_t i = 0; i < p->n; i++)
                if (p->regs[i].id == id)
                        return &p->regs[i];
        return NULL;
}

/*
 * docs/cpu-baseline.md's tables against the reference lists: every
 * register only 6.12 lists is in the first, with the decision regdiff
 * makes for a guest holding 6.12's reset values; every register both list
 * with different values is in the second; 6.1 lists nothing 6.12 lacks.
 */
static void test_doc_table(void **state)
{
        struct row only[64], differ[64];
        size_t n_only = doc_rows("### Registers only 6.12 lists", only, 64);
        size_t n_differ = doc_rows("### Registers both list", differ, 64);

        assert_true(n_only > 0 && n_differ > 0);
        for (int sve = 0; sve < 2; sve++) {
                const struct reglist_profile *a = reglist_profile_find("6.1", sve),
                                             *b = reglist_profile_find("6.12", sve);
                struct regdiff_guest g = {0};
                size_t seen_only = 0, seen_differ = 0;

                assert_non_null(a);
                assert_non_null(b);
                for (size_t i = 0; i < b->n; i++)
                        regdiff_guest_note(&g, b->regs[i].id, b->regs[i].reset);
                for (size_t i = 0; i < a->n; i++)
                        if (!entry(b, a->regs[i].id))
                                fail_msg("6.1 lists 0x%016" PRIx64 ", which 6.12 lacks", a->regs[i].id);
                for (size_t i = 0; i < b->n; i++) {
                        const struct reglist_entry *e = &b->regs[i], *o = entry(a, e->id);
                        bool found = false;

                        if (!o) {
                                for (size_t k = 0; k < n_only; k++)
                                        if (only[k].id == e->id) {
                                                int r = decide(&g, e->id, e->reset);

                                                found = true;
                                                if ((r == 0) != (strcmp(only[k].decision, "drop") == 0))
                                                        fail_msg("0x%016" PRIx64
                                                                 ": the doc says %s, regdiff %s (%s)",
                                                                 e->id, only[k].decision,
                                                                 r ? "refuses" : "drops", why);
                                        }
                                if (!found)
                                        fail_msg("0x%016" PRIx64 " is only on 6.12 and not in the doc",
                                                 e->id);
                                seen_only++;
                        } else if (o->has_value && e->has_value && o->reset != e->reset) {
                                for (size_t k = 0; k < n_differ; k++)
                                        found |= differ[k].id == e->id;
                                if (!found)
                                        fail_msg("0x%016" PRIx64 " differs (0x%" PRIx64 ", 0x%" PRIx64
                                                 ") and is not in the doc",
                                                 e->id, o->reset, e->reset);
                                seen_differ++;
                        }
                }
                assert_int_equal(seen_only, n_only);
                assert_int_equal(seen_differ, n_differ);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ccsidr_by_clidr), cmocka_unit_test(test_hidden_features),
                cmocka_unit_test(test_physical_timer),  cmocka_unit_test(test_unknown_refused),
                cmocka_unit_test(test_doc_table),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
