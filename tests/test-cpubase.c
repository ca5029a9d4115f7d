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
#include "sim/idfacts.h"
#include "sim/reglist.h"
#include "svemig/cpubase.h"
#include "svemig/hv.h"
#include "svemig/kvmreg.h"
#include "svemig/migrate.h"
#include "svemig/vcpu.h"

#ifndef SVEMIG_CPU_BASELINE_DOC
#error "SVEMIG_CPU_BASELINE_DOC must name docs/cpu-baseline.md"
#endif

#define DFR0  kvmreg_sys(3, 0, 0, 5, 0)
#define ISAR0 kvmreg_sys(3, 0, 0, 6, 0)
#define ISAR1 kvmreg_sys(3, 0, 0, 6, 1)
#define MMFR1 KVMREG_ID_AA64MMFR1_EL1
#define PFR0  KVMREG_ID_AA64PFR0_EL1

#define MAX_ID_REGS 128
#define CLIDR_ID    0x603000000013c801ull

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

/* A 6.12 host: the writable masks the rig measured (the same in VHE and nVHE). */
static void kernel_host_612(struct kernel_host *h)
{
        const struct idfacts_profile *p = idfacts_find("6.12", false, true);

        assert_non_null(p);
        kernel_host(h, "6.12", NULL, 0);
        for (size_t i = 0; i < h->n; i++)
                h->regs[i].writable = idfacts_mask(p, h->regs[i].id);
}

/* The names of res's fields not compared, "A.B,C.D", in order. */
static void uncompared_names(const struct cpubase_result *res, char *buf, size_t len)
{
        buf[0] = 0;
        for (size_t i = 0; i < res->n_uncompared; i++) {
                char name[80];

                cpubase_field_name(res->uncompared[i].id, res->uncompared[i].field, name, sizeof(name));
                snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? "," : "", name);
        }
}

/*
 * The two kernels differ in DFR0.DebugVer (6 vs 9), MMFR1.HCX (0 vs 1) and
 * CLIDR_EL1 (their cache models). 6.12 writes DebugVer and CLIDR_EL1 to
 * 6.1's but cannot write HCX (outside its mask): HCX, EL2-only, is not
 * compared.
 */
static void test_kernels_611_612(void **state)
{
        struct kernel_host a, b;
        struct svemig_error err = {0};
        struct cpubase_result res;
        char names[256];

        kernel_host(&a, "6.1", NULL, 0);
        kernel_host_612(&b);
        assert_int_not_equal(reg_value(a.regs, a.n, DFR0), reg_value(b.regs, b.n, DFR0));
        assert_int_not_equal(reg_value(a.regs, a.n, MMFR1), reg_value(b.regs, b.n, MMFR1));

        const struct cpubase_host hosts[] = {{"a", true, a.regs, a.n}, {"b", true, b.regs, b.n}};
        assert_int_equal(cpubase_compute(hosts, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 0);
        uncompared_names(&res, names, sizeof(names));
        assert_string_equal(names, "ID_AA64MMFR1_EL1.HCX");
        assert_int_equal(res.uncompared[0].host_a, 0);
        assert_int_equal(res.uncompared[0].host_b, 1);
        assert_int_equal(res.uncompared[0].a, 0);
        assert_int_equal(res.uncompared[0].b, 1);
        /* The baseline is 6.1's, which 6.1 presents as it is and 6.12 by writing. */
        for (size_t i = 0; i < res.n_regs; i++)
                assert_int_equal(res.regs[i].value & ~cpubase_ignored_bits(res.regs[i].id),
                                 reg_value(a.regs, a.n, res.regs[i].id) &
                                         ~cpubase_ignored_bits(res.regs[i].id));
        assert_false(res.hosts[0].writes);
        assert_true(res.hosts[1].writes);
        /* DebugVer: 6.1 pins it at 6; without 6.1 it would be 9. No limit on HCX. */
        bool debugver = false;
        for (size_t i = 0; i < res.n_limits; i++) {
                char name[80];

                cpubase_field_name(res.limits[i].id, res.limits[i].field, name, sizeof(name));
                assert_string_not_equal(name, "ID_AA64MMFR1_EL1.HCX");
                if (strcmp(name, "ID_AA64DFR0_EL1.DebugVer") == 0) {
                        debugver = true;
                        assert_int_equal(res.limits[i].host, 0);
                        assert_true(res.limits[i].pinned);
                        assert_int_equal(res.limits[i].value, 6);
                        assert_int_equal(res.limits[i].without, 9);
                }
        }
        assert_true(debugver);
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
        kernel_host_612(&b);
        assert_int_equal(cpubase_can_present(a.regs, a.n, b.regs, b.n, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "ID_AA64DFR0_EL1.DebugVer"));
        assert_non_null(strstr(err.msg, "cannot write the field"));
        /* And 6.12 takes a 6.1 guest. */
        assert_int_equal(cpubase_can_present(b.regs, b.n, a.regs, a.n, &err), 0);
}

/* 6.12 cannot raise a field above its own: a guest wanting PAN=3 is refused as lower-safe. */
static void test_no_write_upward(void **state)
{
        struct kernel_host b, g;
        struct svemig_error err = {0};

        kernel_host_612(&b);
        g = b;
        assert_int_equal((reg_value(b.regs, b.n, MMFR1) >> 20) & 0xf, 2);
        set_value(&g, MMFR1, (reg_value(b.regs, b.n, MMFR1) & ~(0xfull << 20)) | (3ull << 20));
        assert_int_equal(cpubase_can_present(b.regs, b.n, g.regs, g.n, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "ID_AA64MMFR1_EL1.PAN: 2 here, 3 wanted; the field is lower-safe"));
        /* An EL2-only field is not judged: HCX 2 is no reason to refuse. */
        g = b;
        set_value(&g, MMFR1, (reg_value(b.regs, b.n, MMFR1) & ~(0xfull << 40)) | (2ull << 40));
        assert_int_equal(cpubase_can_present(b.regs, b.n, g.regs, g.n, &err), 0);
}

/* VHE and nVHE hosts on 6.1: ID_AA64MMFR1_EL1.VH differs and neither can write it; EL2-only, not compared.
 */
static void test_vhe_nvhe_61(void **state)
{
        struct kernel_host a, b;
        struct svemig_error err = {0};
        struct cpubase_result res;
        char names[256];

        kernel_host(&a, "6.1", NULL, 0);
        b = a;
        set_value(&b, MMFR1, reg_value(a.regs, a.n, MMFR1) & ~(0xfull << 8));

        const struct cpubase_host hosts[] = {{"vhe", true, a.regs, a.n}, {"nvhe", true, b.regs, b.n}};
        assert_int_equal(cpubase_compute(hosts, 2, &res, &err), 0);
        assert_int_equal(res.n_conflicts, 0);
        uncompared_names(&res, names, sizeof(names));
        assert_string_equal(names, "ID_AA64MMFR1_EL1.VH");
        assert_int_equal(res.uncompared[0].a, 1);
        assert_int_equal(res.uncompared[0].b, 0);
        assert_false(res.hosts[0].writes);
        assert_false(res.hosts[1].writes);
        assert_int_equal(cpubase_can_present(b.regs, b.n, a.regs, a.n, &err), 0);
        cpubase_result_done(&res);
}

/* A host of each kernel and mode, described as svemigd describes it (peer_info_local() on the sim). */
static struct hv *rig_host(const char *kernel, bool nvhe, struct cpubase_reg **regs, size_t *n)
{
        struct hv_config cfg = {.backend = HV_BACKEND_SIM};
        struct svemig_error err = {0};
        struct peer_info info;
        struct hv *hv;

        cfg.sim.kernel = kernel;
        cfg.sim.nvhe = nvhe;
        cfg.sim.host_name = kernel;
        if (hv_open(&cfg, &hv, &err) < 0 || peer_info_local(hv, 1 << 20, &info, &err) < 0)
                fail_msg("%s %s: %s", kernel, nvhe ? "nVHE" : "VHE", err.msg);
        assert_int_equal(peer_info_cpu_regs(&info, regs, n), 0);
        peer_info_done(&info);
        return hv;
}

/* Whether a fresh SVE vcpu of hv takes the baseline: its kernel judges (vcpu_check_invariants()). */
static void kernel_takes(struct hv *hv, const struct cpubase_result *res, const char *what)
{
        struct svemig_error err = {0};
        struct hv_vm *vm = NULL;
        struct hv_vcpu *vcpu = NULL;
        struct hv_caps caps;

        assert_int_equal(hv_get_caps(hv, &caps), 0);
        assert_int_equal(hv_vm_create(hv, &vm, &err), 0);
        assert_int_equal(hv_vcpu_create(vm, 0, &vcpu, &err), 0);
        assert_int_equal(hv_vcpu_init(vcpu, HV_FEAT_BIT(HV_FEAT_SVE)), 0);
        assert_int_equal(hv_vcpu_finalize(vcpu, HV_FEAT_SVE), 0);
        for (size_t i = 0; i < res->n_regs; i++) {
                uint8_t buf[8];
                uint64_t own = 0, v;
                struct vcpu_reg reg = {res->regs[i].id, kvmreg_size(res->regs[i].id), buf};

                assert_int_equal(hv_vcpu_get_reg(vcpu, reg.id, &own), 0);
                v = (res->regs[i].value & ~cpubase_ignored_bits(reg.id)) |
                    (own & cpubase_ignored_bits(reg.id));
                memcpy(buf, &v, 8);
                if (vcpu_check_invariants(vcpu, &reg, 1, &err) < 0)
                        fail_msg("%s: %s", what, err.msg);
        }
        hv_vcpu_destroy(vcpu);
        hv_vm_destroy(vm);
}

/*
 * The EL2-only list against the rig's data: each pair of Debian 6.1 and
 * 6.12 hosts, VHE and nVHE, as the sim answers from the rig's facts, has a
 * baseline without conflict; the fields not compared are exactly HCX (6.1
 * against 6.12) and VH (VHE against nVHE); each host's kernel takes it.
 */
static void test_rig_kernels(void **state)
{
        static const struct {
                const char *kernel;
                bool nvhe;
        } kinds[] = {{"6.1", false}, {"6.1", true}, {"6.12", false}, {"6.12", true}};
        struct cpubase_reg *regs[4];
        size_t n[4];
        struct hv *hv[4];

        for (size_t i = 0; i < 4; i++)
                hv[i] = rig_host(kinds[i].kernel, kinds[i].nvhe, &regs[i], &n[i]);
        for (size_t i = 0; i < 4; i++)
                for (size_t j = i + 1; j < 4; j++) {
                        const struct cpubase_host hosts[] = {{"a", true, regs[i], n[i]},
                                                             {"b", true, regs[j], n[j]}};
                        bool kernels = strcmp(kinds[i].kernel, kinds[j].kernel) != 0;
                        bool modes = kinds[i].nvhe != kinds[j].nvhe;
                        struct svemig_error err = {0};
                        struct cpubase_result res;
                        char names[256], what[64];

                        snprintf(what, sizeof(what), "%s%s and %s%s", kinds[i].kernel,
                                 kinds[i].nvhe ? " nVHE" : "", kinds[j].kernel,
                                 kinds[j].nvhe ? " nVHE" : "");
                        assert_int_equal(cpubase_compute(hosts, 2, &res, &err), 0);
                        if (res.n_conflicts) {
                                char name[80];

                                cpubase_field_name(res.conflicts[0].id, res.conflicts[0].field, name,
                                                   sizeof(name));
                                fail_msg("%s: conflict in %s", what, name);
                        }
                        uncompared_names(&res, names, sizeof(names));
                        assert_string_equal(names, kernels && modes
                                                           ? "ID_AA64MMFR1_EL1.HCX,ID_AA64MMFR1_EL1.VH"
                                                   : kernels ? "ID_AA64MMFR1_EL1.HCX"
                                                   : modes   ? "ID_AA64MMFR1_EL1.VH"
                                                             : "");
                        /* The cache geometry: 6.1's own, which 6.12 writes; CCSIDR 3..13 only 6.12 lists. */
                        if (kernels) {
                                assert_int_equal(reg_value(res.regs, res.n_regs, 0x6020000000110000ull),
                                                 0x701fe00a);
                                assert_int_equal(reg_value(res.regs, res.n_regs, CLIDR_ID), 0x2000023);
                                for (size_t k = 0; k < res.n_regs; k++)
                                        assert_int_not_equal(res.regs[k].id, 0x6020000000110003ull);
                        }
                        kernel_takes(hv[i], &res, what);
                        kernel_takes(hv[j], &res, what);
                        cpubase_result_done(&res);
                }
        for (size_t i = 0; i < 4; i++) {
                free(regs[i]);
                hv_close(hv[i]);
        }
}

/* docs/cpu-baseline.md's table of fields only EL2 uses is idreg's list, no more, no less. */
static void test_el2_doc_table(void **state)
{
        FILE *f = fopen(SVEMIG_CPU_BASELINE_DOC, "re");
        char line[1024], doc[2048] = "", code[2048] = "";
        bool in = false;

        assert_non_null(f);
        while (fgets(line, sizeof(line), f)) {
                char field[80];

                if (line[0] == '#')
                        in = strncmp(line, "## Fields only EL2 uses", 23) == 0;
                if (in && sscanf(line, "| %79[A-Za-z0-9_.] |", field) == 1 && strchr(field, '.'))
                        snprintf(doc + strlen(doc), sizeof(doc) - strlen(doc), "%s,", field);
        }
        fclose(f);
        for (unsigned i = 0; i < HV_ID_MASKS_N; i++) {
                const struct idreg_desc *d = idreg_find(idreg_mask_id(i));

                for (size_t k = 0; d && k < d->n_fields; k++)
                        if (d->fields[k].el2_only)
                                snprintf(code + strlen(code), sizeof(code) - strlen(code), "%s.%s,", d->name,
                                         d->fields[k].name);
        }
        assert_true(strlen(code) > 0);
        assert_string_equal(doc, code);
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
                cmocka_unit_test(test_rig_kernels),
                cmocka_unit_test(test_el2_doc_table),
                cmocka_unit_test(test_lower_safe_limit),
                cmocka_unit_test(test_pinned_and_conflict),
                cmocka_unit_test(test_exact_floor_signed),
                cmocka_unit_test(test_unknown_bits_and_sve),
                cmocka_unit_test(test_no_host),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
