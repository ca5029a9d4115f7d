/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The CPU baseline (src/cpubase.c) and the field rules under it
 * (src/idreg.c), on the feature ID registers Debian's 6.1 and 6.12 kernels
 * present (src/sim/reglists/) and on hand-made hosts for each rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "macro.h"
#include "sim/reglist.h"
#include "svemig/cpubase.h"
#include "svemig/kvmreg.h"

#define DFR0  kvmreg_sys(3, 0, 0, 5, 0)
#define ISAR0 kvmreg_sys(3, 0, 0, 6, 0)
#define ISAR1 kvmreg_sys(3, 0, 0, 6, 1)
#define MMFR1 KVMREG_ID_AA64MMFR1_EL1
#define PFR0  KVMREG_ID_AA64PFR0_EL1

#define MAX_ID_REGS 128

struct kernel_host {
        struct cpubase_reg regs[MAX_ID_REGS];
        size_t n;
};

/*
 * A host on a reference kernel: its feature ID registers' values after
 * init, and the given writable bits for (id, mask) pairs (the rest: none,
 * as on 6.1).
 */
static void kernel_host(struct kernel_host *h, const char *kernel, const uint64_t (*writable)[2], size_t n_w)
{
        const struct reglist_profile *p = reglist_profile_find(kernel, true);

        assert_non_null(p);
        h->n = 0;
        for (size_t i = 0; i < p->n; i++) {
                if (!idreg_is_feature(p->regs[i].id) || !p->regs[i].has_value)
                        continue;
                assert_true(h->n < MAX_ID_REGS);
                h->regs[h->n] = (struct cpubase_reg){p->regs[i].id, p->regs[i].reset, 0};
                for (size_t k = 0; k < n_w; k++)
                        if (writable[k][0] == p->regs[i].id)
                                h->regs[h->n].writable = writable[k][1];
                h->n++;
        }
        assert_true(h->n > 10);
}

static uint64_t reg_value(const struct cpubase_reg *regs, size_t n, uint64_t id)
{
        for (size_t i = 0; i < n; i++)
                if (regs[i].id == id)
                        return regs[i].value;
        fail_msg("register 0x%llx missing", (unsigned long long)id);
        return 0;
}

static void set_value(struct kernel_host *h, uint64_t id, uint64_t v)
{
        for (size_t i = 0; i < h->n; i++)
                if (h->regs[i].id == id) {
                        h->regs[i].value = v;
                        return;
                }
        fail_msg("register 0x%llx missing", (unsigned long long)id);
}

/*
 * 6.12 as a 6.12 host: DebugVer, PMUVer, WRPs, DoubleLock of DFR0, all of
 * MMFR1, and CLIDR_EL1 (the kernel's own cache model) writable.
 */
#define DFR0_ID  0x603000000013c028ull
#define MMFR1_ID 0x603000000013c039ull
#define CLIDR_ID 0x603000000013c801ull
static const uint64_t writable_612[][2] = {
        {DFR0_ID, 0x0000000f00f00f0full},
        {MMFR1_ID, 0xffffffffffffffffull},
        {CLIDR_ID, 0xffffffffffffffffull},
};

/*
 * The two kernels differ in DFR0.DebugVer (6 vs 9), MMFR1.HCX (0 vs 1) and
 * CLIDR_EL1 (their cache models): 6.12 writes all three to 6.1's.
 */
static void test_kernels_611_612(void **state)
{
        struct kernel_host a, b;
        struct svemig_error err = {0};
        struct cpubase_result res;

        kernel_host(&a, "6.1", NULL, 0);
        kernel_host(&b, "6.12", writable_612, ELEMENTSOF(writable_612));
        assert_int_not_equal(reg_value(a.regs, a.n, DFR0), reg_value(b.regs, b.n, DFR0));
        assert_int_not_equal(reg_value(a.regs, a.n, MMFR1), reg_value(b.regs, b.n, MMFR1));

        const struct cpubase_host hosts[] = {{"a", true, a.regs, a.n}, {"b", true, b.regs, b.n}};
        assert_int_equal(cpubase_compute(hosts, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 0);
        /* The baseline is 6.1's, which 6.1 presents as it is and 6.12 by writing. */
        for (size_t i = 0; i < res.n_regs; i++)
                assert_int_equal(res.regs[i].value & ~cpubase_ignored_bits(res.regs[i].id),
                                 reg_value(a.regs, a.n, res.regs[i].id) &
                                         ~cpubase_ignored_bits(res.regs[i].id));
        assert_false(res.hosts[0].writes);
        assert_true(res.hosts[1].writes);
        /* HCX is lower-safe and 6.1 cannot write it: 6.1 pins it, and without 6.1 it would be 1. */
        bool hcx = false;
        for (size_t i = 0; i < res.n_limits; i++) {
                char name[80];

                cpubase_field_name(res.limits[i].id, res.limits[i].field, name, sizeof(name));
                if (strcmp(name, "ID_AA64MMFR1_EL1.HCX") == 0) {
                        hcx = true;
                        assert_int_equal(res.limits[i].host, 0);
                        assert_true(res.limits[i].pinned);
                        assert_int_equal(res.limits[i].value, 0);
                        assert_int_equal(res.limits[i].without, 1);
                }
        }
        assert_true(hcx);
        /* Each host can present the baseline, 6.1 with no write at all. */
        assert_int_equal(cpubase_can_present(a.regs, a.n, res.regs, res.n_regs, &err), 0);
        assert_int_equal(cpubase_can_present(b.regs, b.n, res.regs, res.n_regs, &err), 0);
        cpubase_result_done(&res);
}

/* A guest with 6.12's full features: 6.1 cannot present it, and says which field and why. */
static void test_612_guest_refused_by_61(void **state)
{
        struct kernel_host a, b;
        struct svemig_error err = {0};

        kernel_host(&a, "6.1", NULL, 0);
        kernel_host(&b, "6.12", writable_612, ELEMENTSOF(writable_612));
        assert_int_equal(cpubase_can_present(a.regs, a.n, b.regs, b.n, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "ID_AA64DFR0_EL1.DebugVer"));
        assert_non_null(strstr(err.msg, "cannot write the field"));
        /* And 6.12 takes a 6.1 guest. */
        assert_int_equal(cpubase_can_present(b.regs, b.n, a.regs, a.n, &err), 0);
}

/* 6.12 cannot raise a field above its own: a guest wanting HCX=2 is refused as lower-safe. */
static void test_no_write_upward(void **state)
{
        struct kernel_host b, g;
        struct svemig_error err = {0};

        kernel_host(&b, "6.12", writable_612, ELEMENTSOF(writable_612));
        g = b;
        set_value(&g, MMFR1, (reg_value(b.regs, b.n, MMFR1) & ~(0xfull << 40)) | (2ull << 40));
        assert_int_equal(cpubase_can_present(b.regs, b.n, g.regs, g.n, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "ID_AA64MMFR1_EL1.HCX: 1 here, 2 wanted; the field is lower-safe"));
}

/* VHE and nVHE hosts on 6.1: ID_AA64MMFR1_EL1.VH differs and neither can write it. */
static void test_vhe_nvhe_61(void **state)
{
        struct kernel_host a, b;
        struct svemig_error err = {0};
        struct cpubase_result res;
        char name[80];

        kernel_host(&a, "6.1", NULL, 0);
        b = a;
        set_value(&b, MMFR1, reg_value(a.regs, a.n, MMFR1) & ~(0xfull << 8));

        const struct cpubase_host hosts[] = {{"vhe", true, a.regs, a.n}, {"nvhe", true, b.regs, b.n}};
        assert_int_equal(cpubase_compute(hosts, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 1);
        cpubase_field_name(res.conflicts[0].id, res.conflicts[0].field, name, sizeof(name));
        assert_string_equal(name, "ID_AA64MMFR1_EL1.VH");
        assert_int_equal(res.conflicts[0].host_a, 0);
        assert_int_equal(res.conflicts[0].host_b, 1);
        assert_int_equal(res.conflicts[0].a, 1);
        assert_int_equal(res.conflicts[0].b, 0);
        cpubase_result_done(&res);
}

static struct cpubase_reg one(uint64_t id, uint64_t v, uint64_t w)
{
        return (struct cpubase_reg){id, v, w};
}

/* Lower-safe, all writable: the least wins, and the host holding it is named with what the rest would give.
 */
static void test_lower_safe_limit(void **state)
{
        const struct cpubase_reg r0 = one(ISAR0, 2ull << 20, ~0ull), r1 = one(ISAR0, 2ull << 20, ~0ull),
                                 r2 = one(ISAR0, 0, ~0ull);
        const struct cpubase_host hosts[] = {{"a", true, &r0, 1}, {"b", true, &r1, 1}, {"c", true, &r2, 1}};
        struct svemig_error err = {0};
        struct cpubase_result res;

        assert_int_equal(cpubase_compute(hosts, 3, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 0);
        assert_int_equal(res.regs[0].value, 0);
        assert_int_equal(res.n_limits, 1);
        assert_string_equal(res.limits[0].field->name, "ATOMIC");
        assert_int_equal(res.limits[0].host, 2);
        assert_false(res.limits[0].pinned);
        assert_int_equal(res.limits[0].without, 2);
        assert_true(res.hosts[0].writes);
        assert_false(res.hosts[2].writes);
        cpubase_result_done(&res);
}

/* A host that cannot write pins the field; one with less that can write it cannot rise to it. */
static void test_pinned_and_conflict(void **state)
{
        const struct cpubase_reg fixed1 = one(ISAR0, 1ull << 20, 0), fixed2 = one(ISAR0, 2ull << 20, 0),
                                 rich = one(ISAR0, 2ull << 20, ~0ull), poor = one(ISAR0, 0, ~0ull);
        struct svemig_error err = {0};
        struct cpubase_result res;

        const struct cpubase_host pinned[] = {{"fixed", true, &fixed1, 1}, {"rich", true, &rich, 1}};
        assert_int_equal(cpubase_compute(pinned, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 0);
        assert_int_equal(res.regs[0].value, 1ull << 20);
        assert_int_equal(res.n_limits, 1);
        assert_true(res.limits[0].pinned);
        assert_int_equal(res.limits[0].without, 2);
        cpubase_result_done(&res);

        /* Two hosts that cannot write and differ, or a pinned value above what a writer has: no baseline. */
        const struct cpubase_host two[] = {{"f1", true, &fixed1, 1}, {"f2", true, &fixed2, 1}};
        assert_int_equal(cpubase_compute(two, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 1);
        cpubase_result_done(&res);
        const struct cpubase_host up[] = {{"f1", true, &fixed1, 1}, {"poor", true, &poor, 1}};
        assert_int_equal(cpubase_compute(up, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 1);
        assert_int_equal(res.conflicts[0].a, 1);
        assert_int_equal(res.conflicts[0].b, 0);
        cpubase_result_done(&res);

        /* A host that does not take part changes nothing. */
        const struct cpubase_host out[] = {{"f1", true, &fixed1, 1}, {"f2", false, &fixed2, 1}};
        assert_int_equal(cpubase_compute(out, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 0);
        assert_false(res.hosts[1].counted);
        cpubase_result_done(&res);
}

/*
 * Exact fields take the safe value when hosts differ; KVM's DebugVer is
 * lower-safe but never below 6; signed fields order 0xf (not implemented)
 * below 0.
 */
static void test_exact_floor_signed(void **state)
{
        const struct cpubase_reg api1 = one(ISAR1, 1ull << 8, ~0ull), api2 = one(ISAR1, 2ull << 8, ~0ull),
                                 d9 = one(DFR0, 9, 0xf), d8 = one(DFR0, 8, 0), d5 = one(DFR0, 5, 0),
                                 fp0 = one(PFR0, 0, ~0ull), fpnone = one(PFR0, 0xfull << 16, ~0ull);
        struct svemig_error err = {0};
        struct cpubase_result res;

        const struct cpubase_host exact[] = {{"a", true, &api1, 1}, {"b", true, &api2, 1}};
        assert_int_equal(cpubase_compute(exact, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 0);
        assert_int_equal((res.regs[0].value >> 8) & 0xf, 0);
        cpubase_result_done(&res);

        const struct cpubase_host debug[] = {{"a", true, &d9, 1}, {"b", true, &d8, 1}};
        assert_int_equal(cpubase_compute(debug, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 0);
        assert_int_equal(res.regs[0].value & 0xf, 8);
        cpubase_result_done(&res);
        const struct cpubase_host floor[] = {{"a", true, &d9, 1}, {"b", true, &d5, 1}};
        assert_int_equal(cpubase_compute(floor, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 1);
        assert_string_equal(res.conflicts[0].field->name, "DebugVer");
        cpubase_result_done(&res);
        assert_int_equal(cpubase_can_present(&d9, 1, &d5, 1, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "below its least value"));

        const struct cpubase_host fp[] = {{"a", true, &fp0, 1}, {"b", true, &fpnone, 1}};
        assert_int_equal(cpubase_compute(fp, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 0);
        assert_int_equal((res.regs[0].value >> 16) & 0xf, 0xf);
        cpubase_result_done(&res);
}

/*
 * Bits no field covers must be equal unless the kernel lets them be written
 * (a register it models itself); the SVE field follows the vector-length
 * negotiation instead.
 */
static void test_unknown_bits_and_sve(void **state)
{
        const struct cpubase_reg u0 = one(DFR0, 0, 0), u1 = one(DFR0, 1ull << 63, 0),
                                 w1 = one(DFR0, 1ull << 63, ~0ull), sve = one(PFR0, 1ull << 32, 0),
                                 nosve = one(PFR0, 0, 0);
        struct svemig_error err = {0};
        struct cpubase_result res;

        const struct cpubase_host unknown[] = {{"a", true, &u0, 1}, {"b", true, &u1, 1}};
        assert_int_equal(cpubase_compute(unknown, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 1);
        assert_null(res.conflicts[0].field);
        assert_int_equal(res.conflicts[0].mask, 1ull << 63);
        cpubase_result_done(&res);
        /* The host that can write them follows the one that cannot. */
        const struct cpubase_host written[] = {{"w", true, &w1, 1}, {"a", true, &u0, 1}};
        assert_int_equal(cpubase_compute(written, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 0);
        assert_int_equal(res.regs[0].value, 0);
        assert_true(res.hosts[0].writes);
        cpubase_result_done(&res);

        const struct cpubase_host s[] = {{"sve", true, &sve, 1}, {"nosve", true, &nosve, 1}};
        assert_int_equal(cpubase_compute(s, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 0);
        cpubase_result_done(&res);
        assert_int_equal(cpubase_can_present(&nosve, 1, &sve, 1, &err), 0);
}

static void test_no_host(void **state)
{
        const struct cpubase_host none[] = {{"a", false, NULL, 0}};
        struct svemig_error err = {0};
        struct cpubase_result res;

        assert_int_equal(cpubase_compute(none, 1, &res, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "no host"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_kernels_611_612),
                cmocka_unit_test(test_612_guest_refused_by_61),
                cmocka_unit_test(test_no_write_upward),
                cmocka_unit_test(test_vhe_nvhe_61),
                cmocka_unit_test(test_lower_safe_limit),
                cmocka_unit_test(test_pinned_and_conflict),
                cmocka_unit_test(test_exact_floor_signed),
                cmocka_unit_test(test_unknown_bits_and_sve),
                cmocka_unit_test(test_no_host),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
