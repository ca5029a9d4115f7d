/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ID register writes, CLIDR/CCSIDR and the VHE/nVHE difference, as the rig
 * measured them on each kernel (src/sim/kernel-facts/, made by
 * tests/arm64/capture-facts.sh): on the sim these check the model, on the real
 * kernel that it still answers as the measured release of its series did.
 * The KVM mode is the one the vcpu shows (ID_AA64MMFR1_EL1.VH).
 */
#include <stdio.h>
#include <sys/mman.h>

#include "conformance.h"
#include "sim/idfacts.h"

#define MMFR1_VH_SHIFT 8
#define DFR0_6_1       0x0000000010305006ull /* ID_AA64DFR0_EL1 on 6.1: DebugVer 6 */
#define DFR0_6_12      0x0000000010305009ull /* on 6.12: DebugVer 9 */
#define ID_AA64DFR0    kvmreg_sys(3, 0, 0, 5, 0)
#define CLIDR_EL1      kvmreg_sys(3, 1, 0, 0, 1)
#define CCSIDR(i)      (0x6020000000110000ull | (i))

#define RAM_SIZE    (64u * 1024)
#define ENTRY       0x800u
#define MMIO_ADDR   0x10000000ull
#define PSTATE_EL1H 0x3c5ull
#define INSN_STR    0xf9000020u /* str x0, [x1] */

static uint64_t field(uint64_t v, unsigned shift)
{
        return (v >> shift) & 0xf;
}

static uint64_t with_field(uint64_t v, unsigned shift, uint64_t f)
{
        return (v & ~(0xfull << shift)) | f << shift;
}

/* ONE_REG of a register of 4 or 8 bytes, as a u64. */
static int get64(struct hv_vcpu *vcpu, uint64_t id, uint64_t *v)
{
        uint32_t w = 0;
        int r;

        *v = 0;
        if (kvmreg_size(id) == 8)
                return hv_vcpu_get_reg(vcpu, id, v);
        r = hv_vcpu_get_reg(vcpu, id, &w);
        *v = w;
        return r;
}

static int set64(struct hv_vcpu *vcpu, uint64_t id, uint64_t v)
{
        uint32_t w = (uint32_t)v;

        return kvmreg_size(id) == 8 ? hv_vcpu_set_reg(vcpu, id, &v) : hv_vcpu_set_reg(vcpu, id, &w);
}

/* A vcpu of the given kind, and whether its KVM runs in nVHE mode. */
static int idreg_vcpu(struct conf *c, struct hv_vm **vm, struct hv_vcpu **vcpu, bool sve, bool *nvhe)
{
        uint64_t mmfr1;
        int r = conf_vcpu(c, vm, vcpu, true, sve ? FEAT_SVE : FEAT_PSCI, true);

        if (r < 0)
                return r;
        r = get64(*vcpu, KVMREG_ID_AA64MMFR1_EL1, &mmfr1);
        if (r < 0) {
                conf_fail(c, __FILE__, __LINE__, "reading ID_AA64MMFR1_EL1: %s", conf_errno_name(r));
                return r;
        }
        *nvhe = field(mmfr1, MMFR1_VH_SHIFT) == 0;
        return 0;
}

/* The writes the rig measured on this kernel's series, in this mode, for this vcpu kind. */
static const struct idfacts_probes *probes_find(const char *kernel, bool nvhe, bool sve)
{
        for (size_t i = 0; i < idfacts_n_probe_tables; i++) {
                const struct idfacts_probes *t = &idfacts_probe_tables[i];

                if (t->nvhe == nvhe && t->sve == sve && idfacts_same_series(t->kernel, kernel))
                        return t;
        }
        return NULL;
}

/* One KVM_RUN: KVM exits on the guest's MMIO store; the sim runs one step. */
static int run_once(struct conf *c, struct hv_vm *vm, struct hv_vcpu *vcpu, void *ram)
{
        struct svemig_error err = {0};
        struct hv_exit exit;
        uint64_t pc = ENTRY, pstate = PSTATE_EL1H, x1 = MMIO_ADDR;
        int r;

        ((uint32_t *)ram)[ENTRY / 4] = INSN_STR;
        r = hv_vm_set_memslot(vm, 0, 0, RAM_SIZE, ram, 0, &err);
        if (r == 0)
                r = hv_vcpu_set_reg(vcpu, kvmreg_core_pc(), &pc);
        if (r == 0)
                r = hv_vcpu_set_reg(vcpu, kvmreg_core_pstate(), &pstate);
        if (r == 0)
                r = hv_vcpu_set_reg(vcpu, kvmreg_core_x(1), &x1);
        if (r == 0)
                r = hv_vcpu_run(vcpu, 1, &exit);
        if (r < 0)
                conf_fail(c, __FILE__, __LINE__, "running the vcpu once: %s", svemig_error_str(&err, r));
        return r;
}

/*
 * Replays every write the rig measured on this kernel series, mode and vcpu
 * kind: before the first KVM_RUN from the values after init, then, after one
 * run, those that had been accepted. Each must get the measured answer; an
 * accepted write reads back and is undone.
 */
static void ram_unmap(void **p)
{
        if (*p && *p != MAP_FAILED)
                munmap(*p, RAM_SIZE);
}

/* Guest RAM: page-aligned, as KVM_SET_USER_MEMORY_REGION wants it. */
static void *ram_map(struct conf *c)
{
        void *p = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED) {
                conf_fail(c, __FILE__, __LINE__, "mmap of the guest's RAM failed");
                return NULL;
        }
        return p;
}

static void replay(struct conf *c, bool sve)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        _cleanup_(ram_unmap) void *ram = NULL;
        const struct idfacts_probes *t;
        char name[64];
        bool nvhe, ran = false;

        if (idreg_vcpu(c, &vm, &vcpu, sve, &nvhe) < 0)
                return;
        t = probes_find(c->caps.kernel, nvhe, sve);
        SKIP_UNLESS(c, t, "the rig measured no %s kernel in %s mode (src/sim/kernel-facts/)", c->caps.kernel,
                    nvhe ? "nVHE" : "VHE");
        ram = ram_map(c);
        if (!ram)
                return;
        for (size_t i = 0; i < t->n; i++) {
                const struct idfacts_probe *p = &t->probes[i];
                uint64_t cur, want, back;
                int r;

                if (p->after_run && !ran) {
                        if (run_once(c, vm, vcpu, ram) < 0)
                                return;
                        ran = true;
                }
                kvmreg_name(p->id, name, sizeof(name));
                CHECK_RC(c, get64(vcpu, p->id, &cur), 0);
                if (!p->after_run)
                        CHECK(c, field(cur, p->shift) == p->from,
                              "%s is 0x%llx after init: field %u is %llx, on %s it was %x", name,
                              (unsigned long long)cur, p->shift, (unsigned long long)field(cur, p->shift),
                              t->kernel, p->from);
                want = with_field(cur, p->shift, p->to);
                r = set64(vcpu, p->id, want);
                CHECK(c, r == -p->answer, "%s: writing field %u as %x (0x%llx) %s: %s, %s answered %s", name,
                      p->shift, p->to, (unsigned long long)want,
                      p->after_run ? "after KVM_RUN" : "before KVM_RUN", conf_errno_name(r), t->kernel,
                      conf_errno_name(-p->answer));
                if (r < 0)
                        continue;
                CHECK_RC(c, get64(vcpu, p->id, &back), 0);
                CHECK(c, back == want, "%s reads 0x%llx after an accepted write of 0x%llx", name,
                      (unsigned long long)back, (unsigned long long)want);
                CHECK_RC(c, set64(vcpu, p->id, cur), 0);
        }
}

static void replay_sve(struct conf *c)
{
        SKIP_UNLESS(c, c->caps.sve, "the host has no SVE");
        replay(c, true);
}

static void replay_nosve(struct conf *c)
{
        replay(c, false);
}

/* The writable masks are the measured ones; a kernel without them (6.1) says so. */
static void writable_masks(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        const struct idfacts_profile *p;
        struct svemig_error err = {0};
        uint64_t masks[HV_ID_MASKS_N];
        bool nvhe;
        int r;

        if (idreg_vcpu(c, &vm, &vcpu, false, &nvhe) < 0)
                return;
        p = idfacts_find(c->caps.kernel, nvhe, false);
        SKIP_UNLESS(c, p, "the rig measured no %s kernel", c->caps.kernel);
        r = hv_vm_get_writable_masks(vm, masks, &err);
        if (!p->masks) {
                CHECK(c, r == -EOPNOTSUPP, "%s had no writable masks, this one answers %s", p->kernel,
                      conf_errno_name(r));
                return;
        }
        CHECK(c, r == 0, "reading the writable masks: %s", svemig_error_str(&err, r));
        for (unsigned op1 = 0; op1 < 4; op1++)
                for (unsigned crm = 0; crm < 8; crm++)
                        for (unsigned op2 = 0; op2 < 8; op2++) {
                                int idx = hv_id_mask_index(op1, crm, op2);
                                uint64_t id = kvmreg_sys(3, op1, 0, crm, op2);
                                char name[64];

                                if (idx < 0)
                                        continue;
                                kvmreg_name(id, name, sizeof(name));
                                CHECK(c, masks[idx] == idfacts_mask(p, id),
                                      "%s: writable mask 0x%016llx, %s had 0x%016llx", name,
                                      (unsigned long long)masks[idx], p->kernel,
                                      (unsigned long long)idfacts_mask(p, id));
                        }
}

static bool is_6_12(const struct conf *c)
{
        return idfacts_same_series(c->caps.kernel, "6.12");
}

static bool is_6_1(const struct conf *c)
{
        return idfacts_same_series(c->caps.kernel, "6.1");
}

/*
 * The cluster baseline's first case: 6.12 presents 6.1's ID_AA64DFR0_EL1
 * (DebugVer lowered from 9 to 6, a safe value within its writable mask) when
 * asked before the first run, and refuses it after (EBUSY); 6.1 refuses
 * 6.12's value (EINVAL), its ID registers being invariant but for MPIDR and
 * ID_AA64PFR0_EL1.CSV2/CSV3.
 */
static void dfr0_across_kernels(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        _cleanup_(ram_unmap) void *ram = NULL;
        uint64_t dfr0, v;
        bool nvhe;

        SKIP_UNLESS(c, is_6_1(c) || is_6_12(c), "the case knows the 6.1 and 6.12 values only");
        if (idreg_vcpu(c, &vm, &vcpu, false, &nvhe) < 0)
                return;
        CHECK_RC(c, get64(vcpu, ID_AA64DFR0, &dfr0), 0);
        if (is_6_1(c)) {
                CHECK(c, dfr0 == DFR0_6_1, "ID_AA64DFR0_EL1 is 0x%llx on 6.1", (unsigned long long)dfr0);
                CHECK_RC(c, set64(vcpu, ID_AA64DFR0, DFR0_6_12), -EINVAL);
                return;
        }
        CHECK(c, dfr0 == DFR0_6_12, "ID_AA64DFR0_EL1 is 0x%llx on 6.12", (unsigned long long)dfr0);
        CHECK_RC(c, set64(vcpu, ID_AA64DFR0, DFR0_6_1), 0);
        CHECK_RC(c, get64(vcpu, ID_AA64DFR0, &v), 0);
        CHECK(c, v == DFR0_6_1, "ID_AA64DFR0_EL1 reads 0x%llx after 6.1's value was written",
              (unsigned long long)v);
        /* Raising DebugVer above the host's is not safe. */
        CHECK_RC(c, set64(vcpu, ID_AA64DFR0, with_field(DFR0_6_12, 0, 0xa)), -EINVAL);
        ram = ram_map(c);
        if (!ram || run_once(c, vm, vcpu, ram) < 0)
                return;
        CHECK_RC(c, set64(vcpu, ID_AA64DFR0, DFR0_6_12), -EBUSY);
        CHECK_RC(c, set64(vcpu, ID_AA64DFR0, DFR0_6_1), 0);
}

/*
 * ID_AA64MMFR1_EL1.VH shows the host's KVM mode and no kernel lets a VMM
 * change it in either direction: a guest cannot move between VHE and nVHE
 * hosts with its ID registers unchanged.
 */
static void vh_fixed(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint64_t mmfr1;
        bool nvhe;

        if (idreg_vcpu(c, &vm, &vcpu, false, &nvhe) < 0)
                return;
        CHECK_RC(c, get64(vcpu, KVMREG_ID_AA64MMFR1_EL1, &mmfr1), 0);
        CHECK_RC(c, set64(vcpu, KVMREG_ID_AA64MMFR1_EL1, with_field(mmfr1, MMFR1_VH_SHIFT, nvhe ? 1 : 0)),
                 -EINVAL);
        CHECK_RC(c, set64(vcpu, KVMREG_ID_AA64MMFR1_EL1, mmfr1), 0);
}

/*
 * CLIDR_EL1 and the CCSIDRs: 6.1 shows the host's cache geometry (three
 * CCSIDRs) and takes no other value; 6.12 shows a synthetic one (a CCSIDR
 * per CSSELR value 0..13, line size field 2) and takes a VMM's CLIDR and
 * CCSIDRs, but no line size below CTR_EL0's minimum.
 */
static void cache_ids(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint64_t clidr, ccsidr;
        bool nvhe;

        SKIP_UNLESS(c, is_6_1(c) || is_6_12(c), "the case knows 6.1 and 6.12 only");
        if (idreg_vcpu(c, &vm, &vcpu, false, &nvhe) < 0)
                return;
        CHECK_RC(c, get64(vcpu, CLIDR_EL1, &clidr), 0);
        CHECK_RC(c, get64(vcpu, CCSIDR(0), &ccsidr), 0);
        if (is_6_1(c)) {
                CHECK(c, hv_vcpu_get_reg(vcpu, CCSIDR(3), &(uint32_t){0}) == -ENOENT,
                      "6.1 has a fourth CCSIDR");
                CHECK_RC(c, set64(vcpu, CLIDR_EL1, clidr ^ 1), -EINVAL);
                CHECK_RC(c, set64(vcpu, CCSIDR(0), ccsidr + (1u << 13)), -EINVAL);
                CHECK_RC(c, set64(vcpu, CCSIDR(0), ccsidr), 0);
                return;
        }
        CHECK(c, ccsidr == 2, "CCSIDR 0 is 0x%llx on 6.12, not the synthetic 0x2",
              (unsigned long long)ccsidr);
        CHECK_RC(c, get64(vcpu, CCSIDR(13), &ccsidr), 0);
        CHECK_RC(c, set64(vcpu, CLIDR_EL1, with_field(clidr, 0, field(clidr, 0) ^ 1)), 0);
        CHECK_RC(c, set64(vcpu, CCSIDR(1), 0x701fe00a), 0);
        CHECK_RC(c, set64(vcpu, CCSIDR(1), 1), -EINVAL);
}

const struct conf_case conf_cases_idregs[] = {
        {"id-write-replay-sve", replay_sve},   {"id-write-replay-nosve", replay_nosve},
        {"id-writable-masks", writable_masks}, {"id-dfr0-across-kernels", dfr0_across_kernels},
        {"id-mmfr1-vh-fixed", vh_fixed},       {"id-cache-clidr-ccsidr", cache_ids},
};
const size_t conf_n_cases_idregs = ELEMENTSOF(conf_cases_idregs);
