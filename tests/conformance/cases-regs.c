/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * KVM_GET_REG_LIST, ONE_REG at every width, core registers and ID registers.
 * The exact lists and reset values come from the kernel's reference lists
 * (src/sim/reglists/, through reglist.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "conformance.h"
#include "sim/reglist.h"

struct class_count {
        unsigned n[_KVMREG_CLASS_MAX];
        bool zcr;
};

static void count_classes(const uint64_t *ids, size_t n, struct class_count *cc)
{
        memset(cc, 0, sizeof(*cc));
        for (size_t i = 0; i < n; i++) {
                struct kvmreg r;

                if (kvmreg_decode(ids[i], &r, NULL) == 0)
                        cc->n[r.cls]++;
                if (ids[i] == KVMREG_ZCR_EL1)
                        cc->zcr = true;
        }
}

/* The reference profile for the backend's kernel, or for its major.minor. */
static const struct reglist_profile *profile(const struct conf *c, bool sve)
{
        const struct reglist_profile *p = reglist_profile_find(c->caps.kernel, sve);
        char mm[16];
        unsigned major, minor;

        if (p || sscanf(c->caps.kernel, "%u.%u", &major, &minor) != 2)
                return p;
        snprintf(mm, sizeof(mm), "%u.%u", major, minor);
        return reglist_profile_find(mm, sve);
}

static void reglist_e2big(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        _cleanup_free_ uint64_t *all = NULL;
        uint64_t one[1];
        size_t n = 0, total = 0;

        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_PSCI, false) < 0)
                return;
        all = conf_reg_list(c, vcpu, &total);
        if (!all)
                return;
        CHECK_RC(c, hv_vcpu_reg_list(vcpu, NULL, &n), -E2BIG);
        CHECK(c, n == total, "a short list reports %zu registers, the full one has %zu", n, total);
        n = 1;
        CHECK_RC(c, hv_vcpu_reg_list(vcpu, one, &n), -E2BIG);
        CHECK(c, n == total, "a short list reports %zu registers, the full one has %zu", n, total);
        n = total;
        CHECK_RC(c, hv_vcpu_reg_list(vcpu, all, &n), 0);
}

static void reglist_classes(struct conf *c, bool sve)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        _cleanup_free_ uint64_t *ids = NULL;
        struct class_count cc;
        size_t n;

        if (conf_vcpu(c, &vm, &vcpu, true, sve ? FEAT_SVE : FEAT_PSCI, true) < 0)
                return;
        ids = conf_reg_list(c, vcpu, &n);
        if (!ids)
                return;
        count_classes(ids, n, &cc);
        CHECK(c, cc.n[KVMREG_CLASS_UNKNOWN] == 0, "%u registers of unknown class",
              cc.n[KVMREG_CLASS_UNKNOWN]);
        CHECK(c, cc.n[KVMREG_CLASS_CORE] == 41,
              "%u core registers, expected 41 (x0-x30, sp, pc, pstate, "
              "sp_el1, elr_el1, spsr[5])",
              cc.n[KVMREG_CLASS_CORE]);
        CHECK(c, cc.n[KVMREG_CLASS_CORE_FPCR] == 2, "%u of FPSR/FPCR", cc.n[KVMREG_CLASS_CORE_FPCR]);
        CHECK(c, cc.n[KVMREG_CLASS_CORE_FP] == (sve ? 0u : 32u), "%u fp_regs.vregs on a%s SVE vcpu",
              cc.n[KVMREG_CLASS_CORE_FP], sve ? "n" : " non-");
        CHECK(c, cc.n[KVMREG_CLASS_SVE_Z] == (sve ? 32u : 0u), "%u Z slices", cc.n[KVMREG_CLASS_SVE_Z]);
        CHECK(c, cc.n[KVMREG_CLASS_SVE_P] == (sve ? 16u : 0u), "%u P slices", cc.n[KVMREG_CLASS_SVE_P]);
        CHECK(c, cc.n[KVMREG_CLASS_SVE_FFR] == (sve ? 1u : 0u), "%u FFR slices", cc.n[KVMREG_CLASS_SVE_FFR]);
        CHECK(c, cc.n[KVMREG_CLASS_SVE_VLS] == (sve ? 1u : 0u), "%u SVE_VLS", cc.n[KVMREG_CLASS_SVE_VLS]);
        CHECK(c, cc.zcr == sve, "ZCR_EL1 is %s the list of a%s SVE vcpu", cc.zcr ? "in" : "not in",
              sve ? "n" : " non-");
        CHECK(c, cc.n[KVMREG_CLASS_SYS_ID] > 0 && cc.n[KVMREG_CLASS_SYS] > 0 && cc.n[KVMREG_CLASS_FW] > 0,
              "no ID, system or firmware registers");
}

static void reglist_classes_sve(struct conf *c)
{
        SKIP_UNLESS(c, c->caps.sve, "the host has no SVE");
        reglist_classes(c, true);
}

static void reglist_classes_nosve(struct conf *c)
{
        reglist_classes(c, false);
}

/* The exact list, in the kernel's order, and the reset values of core registers. */
static void reglist_reference(struct conf *c, bool sve)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        _cleanup_free_ uint64_t *ids = NULL;
        const struct reglist_profile *p = profile(c, sve);
        char name[64];
        size_t n;

        SKIP_UNLESS(c, p, "no reference list for kernel %s in src/sim/reglists/", c->caps.kernel);
        if (conf_vcpu(c, &vm, &vcpu, true, sve ? FEAT_SVE : FEAT_PSCI, true) < 0)
                return;
        ids = conf_reg_list(c, vcpu, &n);
        if (!ids)
                return;
        for (size_t i = 0; i < MIN(n, p->n); i++) {
                kvmreg_name(p->regs[i].id, name, sizeof(name));
                CHECK(c, ids[i] == p->regs[i].id,
                      "entry %zu is 0x%016llx, the %s reference has %s (0x%016llx)", i,
                      (unsigned long long)ids[i], p->kernel, name, (unsigned long long)p->regs[i].id);
        }
        CHECK(c, n == p->n, "%zu registers, the %s reference has %zu", n, p->kernel, p->n);

        for (size_t i = 0; i < p->n; i++) {
                const struct reglist_entry *e = &p->regs[i];
                struct kvmreg r;
                uint64_t v = 0;

                if (!e->has_value || kvmreg_decode(e->id, &r, NULL) < 0 ||
                    (r.cls != KVMREG_CLASS_CORE && r.cls != KVMREG_CLASS_CORE_FPCR))
                        continue;
                kvmreg_name(e->id, name, sizeof(name));
                CHECK(c, hv_vcpu_get_reg(vcpu, e->id, &v) == 0, "reading %s failed", name);
                CHECK(c, v == e->reset, "%s is 0x%llx after init, the reference says 0x%llx", name,
                      (unsigned long long)v, (unsigned long long)e->reset);
        }
}

static void reglist_reference_sve(struct conf *c)
{
        SKIP_UNLESS(c, c->caps.sve, "the host has no SVE");
        reglist_reference(c, true);
}

static void reglist_reference_nosve(struct conf *c)
{
        reglist_reference(c, false);
}

/* ONE_REG moves 4, 8, 16, 32, 64 and 256 bytes; nothing is a u64. */
static void one_reg_widths(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint8_t buf[KVMREG_MAX_BYTES], back[KVMREG_MAX_BYTES];
        uint64_t x = 0x0123456789abcdefull, xb = 0, pc = 0x800, pcb = 0;
        uint32_t fpsr = 0x8000000, fpsrb = 0;

        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_PSCI, false) < 0)
                return;
        CHECK(c,
              kvmreg_size(kvmreg_core_fpsr()) == 4 && kvmreg_size(kvmreg_core_x(0)) == 8 &&
                      kvmreg_size(kvmreg_core_vreg(0)) == 16,
              "core register sizes");
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, kvmreg_core_fpsr(), &fpsr), 0);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_core_fpsr(), &fpsrb), 0);
        CHECK(c, fpsrb == fpsr, "FPSR 0x%x, wrote 0x%x", fpsrb, fpsr);
        for (unsigned n = 0; n < 31; n++) {
                uint64_t v = x ^ n;

                CHECK_RC(c, hv_vcpu_set_reg(vcpu, kvmreg_core_x(n), &v), 0);
        }
        for (unsigned n = 0; n < 31; n++) {
                CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_core_x(n), &xb), 0);
                CHECK(c, xb == (x ^ n), "x%u reads 0x%llx", n, (unsigned long long)xb);
        }
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, kvmreg_core_pc(), &pc), 0);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_core_pc(), &pcb), 0);
        CHECK(c, pcb == pc, "pc reads 0x%llx", (unsigned long long)pcb);
        /* A non-SVE vcpu's V registers are 128-bit core registers. */
        for (unsigned n = 0; n < 32; n++) {
                for (unsigned i = 0; i < 16; i++)
                        buf[i] = (uint8_t)(n * 16 + i);
                CHECK_RC(c, hv_vcpu_set_reg(vcpu, kvmreg_core_vreg(n), buf), 0);
        }
        for (unsigned n = 0; n < 32; n++) {
                CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_core_vreg(n), back), 0);
                for (unsigned i = 0; i < 16; i++)
                        CHECK(c, back[i] == (uint8_t)(n * 16 + i), "v%u byte %u reads 0x%02x", n, i,
                              back[i]);
        }
}

/* A core register ID whose size field disagrees with the field it names is EINVAL. */
static void core_wrong_size(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint64_t x0_u32 = (kvmreg_core_x(0) & ~KVMREG_SIZE_MASK) | (2ull << KVMREG_SIZE_SHIFT), v = 0;

        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_PSCI, false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, x0_u32, &v), -EINVAL);
}

static void sys_unknown(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint64_t v = 0;

        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_PSCI, false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_sys(3, 7, 15, 15, 7), &v), -ENOENT);
}

#define PFR0_SVE_SHIFT   32
#define ZFR0_SVEVER_MASK 0xfull

static uint64_t sve_field(uint64_t pfr0)
{
        return (pfr0 >> PFR0_SVE_SHIFT) & 0xf;
}

/*
 * ID_AA64PFR0_EL1.SVE and ID_AA64ZFR0_EL1 follow the vcpu's features; an ID
 * register takes back its own value but refuses a different one.
 */
static void id_regs(struct conf *c, bool sve)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint64_t pfr0 = 0, zfr0 = 0, bad;

        if (conf_vcpu(c, &vm, &vcpu, true, sve ? FEAT_SVE : FEAT_PSCI, true) < 0)
                return;
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, KVMREG_ID_AA64PFR0_EL1, &pfr0), 0);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, KVMREG_ID_AA64ZFR0_EL1, &zfr0), 0);
        if (sve)
                CHECK(c, sve_field(pfr0) >= 1, "ID_AA64PFR0_EL1 0x%llx has no SVE on an SVE vcpu",
                      (unsigned long long)pfr0);
        else {
                CHECK(c, sve_field(pfr0) == 0, "ID_AA64PFR0_EL1 0x%llx shows SVE on a non-SVE vcpu",
                      (unsigned long long)pfr0);
                CHECK(c, zfr0 == 0, "ID_AA64ZFR0_EL1 is 0x%llx on a non-SVE vcpu", (unsigned long long)zfr0);
        }

        CHECK_RC(c, hv_vcpu_set_reg(vcpu, KVMREG_ID_AA64PFR0_EL1, &pfr0), 0);
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, KVMREG_ID_AA64ZFR0_EL1, &zfr0), 0);
        bad = pfr0 | (0xfull << PFR0_SVE_SHIFT);
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, KVMREG_ID_AA64PFR0_EL1, &bad), -EINVAL);
        bad = zfr0 | ZFR0_SVEVER_MASK;
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, KVMREG_ID_AA64ZFR0_EL1, &bad), -EINVAL);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, KVMREG_ID_AA64PFR0_EL1, &bad), 0);
        CHECK(c, bad == pfr0, "a refused write changed ID_AA64PFR0_EL1");
}

static void id_regs_sve(struct conf *c)
{
        SKIP_UNLESS(c, c->caps.sve, "the host has no SVE");
        id_regs(c, true);
}

static void id_regs_nosve(struct conf *c)
{
        id_regs(c, false);
}

const struct conf_case conf_cases_regs[] = {
        {"reglist-e2big", reglist_e2big},
        {"reglist-classes-sve", reglist_classes_sve},
        {"reglist-classes-nosve", reglist_classes_nosve},
        {"reglist-reference-sve", reglist_reference_sve},
        {"reglist-reference-nosve", reglist_reference_nosve},
        {"one-reg-widths", one_reg_widths},
        {"core-wrong-size-einval", core_wrong_size},
        {"sys-unknown-enoent", sys_unknown},
        {"id-regs-sve", id_regs_sve},
        {"id-regs-nosve", id_regs_nosve},
};
const size_t conf_n_cases_regs = ELEMENTSOF(conf_cases_regs);
