/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A vGIC v3's state in and out of KVM (include/svemig/vgic-state.h). One
 * table describes every register carried: where it sits, how many words it
 * spans for the IRQs the GIC has, and the phase of the restore it belongs
 * to, so that save, restore, checking and naming cannot disagree.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm-arm64.h"
#include "macro.h"
#include "svemig/kvmreg.h"
#include "svemig/vgic-state.h"

/* The restore's phases, in order (vgic_state_restore()). */
enum phase {
        PH_IIDR,    /* GICD_IIDR before anything else, as the kernel asks */
        PH_CTRL,    /* control registers */
        PH_CONFIG,  /* group, group modifier, trigger mode, priority, routing */
        PH_LEVEL,   /* line levels (LEVEL_INFO), not a register */
        PH_PENDING, /* pending latch and active state, once their configuration is in */
        PH_ENABLE,  /* enables last */
        PH_N,
};

struct range {
        const char *name;
        uint32_t base;
        uint8_t bits;   /* bits per IRQ; 0 = a register of 'words' words */
        uint8_t words;  /* with bits == 0 */
        uint8_t phase;  /* enum phase */
        uint32_t clear; /* the clear half's base (written all ones first), or 0 */
};

#define SGI 0x10000u /* a redistributor's SGI frame, after its RD_base frame */

/* The distributor: per-IRQ ranges cover the SPIs (the redistributors hold the rest). */
static const struct range dist_ranges[] = {
        {"GICD_IIDR", 0x0008, 0, 1, PH_IIDR, 0},
        {"GICD_CTLR", 0x0000, 0, 1, PH_CTRL, 0},
        {"GICD_IGROUPR", 0x0080, 1, 0, PH_CONFIG, 0},
        {"GICD_IGRPMODR", 0x0d00, 1, 0, PH_CONFIG, 0},
        {"GICD_ICFGR", 0x0c00, 2, 0, PH_CONFIG, 0},
        {"GICD_IPRIORITYR", 0x0400, 8, 0, PH_CONFIG, 0},
        {"GICD_IROUTER", 0x6000, 64, 0, PH_CONFIG, 0},
        {"GICD_ISPENDR", 0x0200, 1, 0, PH_PENDING, 0},
        {"GICD_ISACTIVER", 0x0300, 1, 0, PH_PENDING, 0x0380},
        {"GICD_ISENABLER", 0x0100, 1, 0, PH_ENABLE, 0x0180},
};

/*
 * A redistributor: its SGIs and PPIs (INTIDs 0..31) in the SGI frame.
 * GICR_PROPBASER and GICR_PENDBASER are left out: they serve LPIs only, which
 * need an ITS, and KVM sanitises what is written there (0 reads back 0x180),
 * so they could not be restored as read anyway.
 */
static const struct range redist_ranges[] = {
        {"GICR_CTLR", 0x0000, 0, 1, PH_CTRL, 0},
        {"GICR_IGROUPR", SGI + 0x0080, 1, 0, PH_CONFIG, 0},
        {"GICR_IGRPMODR", SGI + 0x0d00, 1, 0, PH_CONFIG, 0},
        {"GICR_ICFGR", SGI + 0x0c00, 2, 0, PH_CONFIG, 0},
        {"GICR_IPRIORITYR", SGI + 0x0400, 8, 0, PH_CONFIG, 0},
        {"GICR_ISPENDR", SGI + 0x0200, 1, 0, PH_PENDING, 0},
        {"GICR_ISACTIVER", SGI + 0x0300, 1, 0, PH_PENDING, SGI + 0x0380},
        {"GICR_ISENABLER", SGI + 0x0100, 1, 0, PH_ENABLE, SGI + 0x0180},
};

#define ICC(crn, crm, op2) ((uint16_t)(3u << 14 | 0u << 11 | (crn) << 7 | (crm) << 3 | (op2)))

/* The CPU interface, in restore order: SRE and CTLR (PRIbits) first. */
static const struct {
        const char *name;
        uint16_t instr;
        bool optional; /* the AP registers past what PRIbits gives */
} icc_regs[] = {
        {"ICC_SRE_EL1", ICC(12, 12, 5), false},     {"ICC_CTLR_EL1", ICC(12, 12, 4), false},
        {"ICC_IGRPEN0_EL1", ICC(12, 12, 6), false}, {"ICC_IGRPEN1_EL1", ICC(12, 12, 7), false},
        {"ICC_PMR_EL1", ICC(4, 6, 0), false},       {"ICC_BPR0_EL1", ICC(12, 8, 3), false},
        {"ICC_BPR1_EL1", ICC(12, 12, 3), false},    {"ICC_AP0R0_EL1", ICC(12, 8, 4), false},
        {"ICC_AP0R1_EL1", ICC(12, 8, 5), true},     {"ICC_AP0R2_EL1", ICC(12, 8, 6), true},
        {"ICC_AP0R3_EL1", ICC(12, 8, 7), true},     {"ICC_AP1R0_EL1", ICC(12, 9, 0), false},
        {"ICC_AP1R1_EL1", ICC(12, 9, 1), true},     {"ICC_AP1R2_EL1", ICC(12, 9, 2), true},
        {"ICC_AP1R3_EL1", ICC(12, 9, 3), true},
};
_Static_assert(ELEMENTSOF(icc_regs) <= VGIC_STATE_SYSREGS_MAX, "room for every ICC register");

/* The words of range r: [*first, *last) by word index, for a GIC of nr_irqs IRQs. */
static void range_words(const struct range *r, bool redist, uint32_t nr_irqs, uint32_t *first,
                        uint32_t *last)
{
        uint32_t lo = redist ? 0 : 32, hi = redist ? 32 : nr_irqs;

        if (r->bits == 0) {
                *first = 0;
                *last = r->words;
                return;
        }
        *first = lo * r->bits / 32;
        *last = hi * r->bits / 32;
}

/* The range holding offset, and the word's index in it; NULL if none. */
static const struct range *range_of(bool redist, uint32_t offset, uint32_t *word)
{
        const struct range *t = redist ? redist_ranges : dist_ranges;
        size_t n = redist ? ELEMENTSOF(redist_ranges) : ELEMENTSOF(dist_ranges);

        if (offset % 4)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                /* The widest range (IROUTER, 1024 IRQs) spans 8 KiB. */
                uint32_t span = t[i].bits ? 1024u * t[i].bits / 8 : 4u * t[i].words;

                if (offset >= t[i].base && offset < t[i].base + span) {
                        *word = (offset - t[i].base) / 4;
                        return &t[i];
                }
        }
        return NULL;
}

int vgic_reg_name(bool redist, uint32_t offset, char *buf, size_t len)
{
        uint32_t word;
        const struct range *r = range_of(redist, offset, &word);

        if (!r)
                return snprintf(buf, len, "%s_0x%x", redist ? "GICR" : "GICD", offset);
        if (r->bits == 64)
                return snprintf(buf, len, "%s[%u]%s", r->name, word / 2, word % 2 ? ".hi" : "");
        if (r->bits == 0)
                return snprintf(buf, len, "%s%s", r->name, r->words == 2 ? (word ? ".hi" : ".lo") : "");
        /* The redistributor's one-word registers are the architecture's "...R0". */
        if (redist && r->bits == 1)
                return snprintf(buf, len, "%s0", r->name);
        return snprintf(buf, len, "%s[%u]", r->name, word);
}

const char *vgic_sysreg_name(uint16_t instr)
{
        for (size_t i = 0; i < ELEMENTSOF(icc_regs); i++)
                if (icc_regs[i].instr == instr)
                        return icc_regs[i].name;
        return NULL;
}

void vgic_state_done(struct vgic_state *st)
{
        if (!st)
                return;
        for (size_t i = 0; i < st->n_cpus; i++)
                free(st->cpus[i].regs);
        free(st->cpus);
        free(st->regs);
        free(st->spi_levels);
        *st = (struct vgic_state){0};
}

/* The attribute's key for a vcpu: MPIDR_EL1's affinity fields, Aff3 at the top. */
static uint64_t mpidr_key(uint64_t mpidr)
{
        return ((mpidr >> 32 & 0xff) << 24 | (mpidr & 0xffffff)) << KVM_DEV_ARM_VGIC_V3_MPIDR_SHIFT;
}

static int vcpu_mpidr(struct hv_vcpu *vcpu, uint64_t *mpidr, struct svemig_error *err)
{
        int r = hv_vcpu_get_reg(vcpu, KVMREG_MPIDR_EL1, mpidr);

        if (r < 0)
                return svemig_error_set(err, -r, "vcpu %u: reading MPIDR_EL1 failed: %s",
                                        hv_vcpu_index(vcpu), strerror(-r));
        return 0;
}

/* The register words of one table, read through group (DIST_REGS or REDIST_REGS). */
static int save_ranges(struct hv_device *gic, bool redist, uint64_t key, uint32_t nr_irqs,
                       struct vgic_reg **out, size_t *n_out, struct svemig_error *err)
{
        const struct range *t = redist ? redist_ranges : dist_ranges;
        size_t n = redist ? ELEMENTSOF(redist_ranges) : ELEMENTSOF(dist_ranges);
        uint32_t group = redist ? KVM_DEV_ARM_VGIC_GRP_REDIST_REGS : KVM_DEV_ARM_VGIC_GRP_DIST_REGS;
        _cleanup_free_ struct vgic_reg *regs =
                calloc(redist ? VGIC_STATE_REDIST_REGS_MAX : VGIC_STATE_DIST_REGS_MAX, sizeof(*regs));
        size_t k = 0;
        char name[48];

        if (!regs)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                uint32_t first, last;

                range_words(&t[i], redist, nr_irqs, &first, &last);
                for (uint32_t w = first; w < last; w++) {
                        uint32_t off = t[i].base + 4 * w, v;
                        int r = hv_device_get_attr(gic, group, key | off, &v);

                        if (r < 0) {
                                vgic_reg_name(redist, off, name, sizeof(name));
                                return svemig_error_set(err, -r, "reading %s failed: %s", name,
                                                        strerror(-r));
                        }
                        regs[k++] = (struct vgic_reg){off, v};
                }
        }
        *out = regs;
        regs = NULL;
        *n_out = k;
        return 0;
}

static int save_cpu(struct hv_device *gic, struct hv_vcpu *vcpu, struct vgic_cpu_state *cpu,
                    struct svemig_error *err)
{
        uint64_t key;
        int r = vcpu_mpidr(vcpu, &cpu->mpidr, err);

        if (r < 0)
                return r;
        key = mpidr_key(cpu->mpidr);
        r = save_ranges(gic, true, key, 32, &cpu->regs, &cpu->n_regs, err);
        if (r < 0)
                return svemig_error_prefix(err, "vcpu %u's redistributor", hv_vcpu_index(vcpu));
        for (size_t i = 0; i < ELEMENTSOF(icc_regs); i++) {
                uint64_t v;

                r = hv_device_get_attr(gic, KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, key | icc_regs[i].instr, &v);
                if (r < 0 && icc_regs[i].optional)
                        continue;
                if (r < 0)
                        return svemig_error_set(err, -r, "vcpu %u: reading %s failed: %s",
                                                hv_vcpu_index(vcpu), icc_regs[i].name, strerror(-r));
                cpu->sysregs[cpu->n_sysregs++] = (struct vgic_sysreg){icc_regs[i].instr, v};
        }
        r = hv_device_get_attr(gic, KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO,
                               key | (uint64_t)VGIC_LEVEL_INFO_LINE_LEVEL
                                               << KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO_SHIFT,
                               &cpu->ppi_level);
        if (r < 0)
                return svemig_error_set(err, -r, "vcpu %u: reading the PPIs' line levels failed: %s",
                                        hv_vcpu_index(vcpu), strerror(-r));
        return 0;
}

static uint64_t level_attr(uint64_t key, uint32_t intid)
{
        return key | (uint64_t)VGIC_LEVEL_INFO_LINE_LEVEL << KVM_DEV_ARM_VGIC_LINE_LEVEL_INFO_SHIFT | intid;
}

int vgic_state_save(struct hv_device *gic, struct hv_vcpu *const *vcpus, size_t n_vcpus,
                    struct vgic_state *out, struct svemig_error *err)
{
        _cleanup_(vgic_state_done) struct vgic_state st = {0};
        int r;

        if (n_vcpus == 0)
                return svemig_error_set(err, EINVAL, "a vGIC without vcpus has no state to save");
        r = hv_device_get_attr(gic, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &st.nr_irqs);
        if (r < 0)
                return svemig_error_set(err, -r, "reading the vGIC's number of IRQs failed: %s",
                                        strerror(-r));
        if (st.nr_irqs < 64 || st.nr_irqs > VGIC_STATE_NR_IRQS_MAX || st.nr_irqs % 32)
                return svemig_error_set(err, EINVAL, "the vGIC reports %u IRQs, not 64..1024 in steps of 32",
                                        st.nr_irqs);
        r = save_ranges(gic, false, 0, st.nr_irqs, &st.regs, &st.n_regs, err);
        if (r < 0)
                return svemig_error_prefix(err, "the distributor");
        st.n_levels = st.nr_irqs / 32 - 1;
        st.spi_levels = calloc(st.n_levels, sizeof(*st.spi_levels));
        st.cpus = calloc(n_vcpus, sizeof(*st.cpus));
        if (!st.spi_levels || !st.cpus)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < st.n_levels; i++) {
                r = hv_device_get_attr(gic, KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO, level_attr(0, 32 * (i + 1)),
                                       &st.spi_levels[i]);
                if (r < 0)
                        return svemig_error_set(err, -r,
                                                "reading the line levels of SPIs %zu..%zu failed: %s",
                                                32 * (i + 1), 32 * (i + 1) + 31, strerror(-r));
        }
        for (; st.n_cpus < n_vcpus; st.n_cpus++) {
                r = save_cpu(gic, vcpus[st.n_cpus], &st.cpus[st.n_cpus], err);
                if (r < 0) {
                        st.n_cpus++; /* so that done frees what it holds */
                        return r;
                }
        }
        *out = st;
        st = (struct vgic_state){0};
        return 0;
}

/* Writes one register (after its clear half, all ones). */
static int put_reg(struct hv_device *gic, bool redist, uint64_t key, const struct vgic_reg *reg,
                   const struct range *rg, struct svemig_error *err)
{
        uint32_t group = redist ? KVM_DEV_ARM_VGIC_GRP_REDIST_REGS : KVM_DEV_ARM_VGIC_GRP_DIST_REGS;
        uint32_t ones = UINT32_MAX;
        char name[48];
        int r = 0;

        if (rg->clear)
                r = hv_device_set_attr(gic, group, key | (rg->clear + (reg->offset - rg->base)), &ones);
        if (r >= 0)
                r = hv_device_set_attr(gic, group, key | reg->offset, &reg->value);
        if (r >= 0)
                return 0;
        vgic_reg_name(redist, reg->offset, name, sizeof(name));
        if (rg->phase == PH_IIDR)
                return svemig_error_set(
                        err, -r,
                        "this host's vGIC refuses the source's GICD_IIDR 0x%08x (%s): its KVM "
                        "implements another revision of the vGIC; restore on a host whose "
                        "kernel's vGIC has that revision",
                        reg->value, strerror(-r));
        return svemig_error_set(err, -r, "writing %s = 0x%08x failed: %s", name, reg->value, strerror(-r));
}

/* Writes the registers of one phase, in the order the state holds them. */
static int put_phase(struct hv_device *gic, bool redist, uint64_t key, const struct vgic_reg *regs, size_t n,
                     enum phase ph, struct svemig_error *err)
{
        for (size_t i = 0; i < n; i++) {
                uint32_t word;
                const struct range *rg = range_of(redist, regs[i].offset, &word);
                int r;

                if (!rg || rg->phase != ph)
                        continue;
                r = put_reg(gic, redist, key, &regs[i], rg, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int put_level(struct hv_device *gic, uint64_t key, uint32_t intid, uint32_t bits,
                     struct svemig_error *err)
{
        int r = hv_device_set_attr(gic, KVM_DEV_ARM_VGIC_GRP_LEVEL_INFO, level_attr(key, intid), &bits);

        if (r < 0)
                return svemig_error_set(err, -r, "setting the line levels of INTIDs %u..%u failed: %s",
                                        intid, intid + 31, strerror(-r));
        return 0;
}

static int restore_cpu(struct hv_device *gic, struct hv_vcpu *vcpu, const struct vgic_cpu_state *cpu,
                       struct svemig_error *err)
{
        uint64_t mpidr, key;
        int r = vcpu_mpidr(vcpu, &mpidr, err);

        if (r < 0)
                return r;
        if (mpidr_key(mpidr) != mpidr_key(cpu->mpidr))
                return svemig_error_set(
                        err, EINVAL,
                        "vcpu %u has MPIDR_EL1 0x%llx here but 0x%llx in the state: restore the "
                        "vcpus' registers before the vGIC",
                        hv_vcpu_index(vcpu), (unsigned long long)mpidr, (unsigned long long)cpu->mpidr);
        key = mpidr_key(mpidr);
        for (int ph = PH_CTRL; ph < PH_N; ph++) {
                r = ph == PH_LEVEL ? put_level(gic, key, 0, cpu->ppi_level, err)
                                   : put_phase(gic, true, key, cpu->regs, cpu->n_regs, ph, err);
                if (r < 0)
                        return svemig_error_prefix(err, "vcpu %u's redistributor", hv_vcpu_index(vcpu));
        }
        return 0;
}

static int restore_sysregs(struct hv_device *gic, struct hv_vcpu *vcpu, const struct vgic_cpu_state *cpu,
                           struct svemig_error *err)
{
        uint64_t key = mpidr_key(cpu->mpidr);

        for (size_t i = 0; i < cpu->n_sysregs; i++) {
                const struct vgic_sysreg *s = &cpu->sysregs[i];
                int r = hv_device_set_attr(gic, KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, key | s->instr, &s->value);

                if (r == -EINVAL && s->instr == ICC(12, 12, 4))
                        return svemig_error_set(
                                err, EINVAL,
                                "vcpu %u: this host's GIC CPU interface refuses the source's "
                                "ICC_CTLR_EL1 0x%llx: it differs in the priority or ID bits "
                                "(PRIbits, IDbits), SEIS or A3V, which KVM takes from the "
                                "hardware; restore on a host with the same GIC",
                                hv_vcpu_index(vcpu), (unsigned long long)s->value);
                if (r < 0)
                        return svemig_error_set(err, -r, "vcpu %u: writing %s = 0x%llx failed: %s",
                                                hv_vcpu_index(vcpu), vgic_sysreg_name(s->instr),
                                                (unsigned long long)s->value, strerror(-r));
        }
        return 0;
}

int vgic_state_restore(struct hv_device *gic, struct hv_vcpu *const *vcpus, size_t n_vcpus,
                       const struct vgic_state *st, struct svemig_error *err)
{
        uint32_t nr_irqs;
        int r = vgic_state_check(st, err);

        if (r < 0)
                return r;
        if (n_vcpus != st->n_cpus)
                return svemig_error_set(err, EINVAL, "the vGIC state has %zu vcpus, this VM %zu", st->n_cpus,
                                        n_vcpus);
        r = hv_device_get_attr(gic, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs);
        if (r < 0)
                return svemig_error_set(err, -r, "reading the vGIC's number of IRQs failed: %s",
                                        strerror(-r));
        if (nr_irqs != st->nr_irqs)
                return svemig_error_set(err, EINVAL,
                                        "the vGIC state has %u IRQs, this VM's vGIC %u: create it "
                                        "with the source's number",
                                        st->nr_irqs, nr_irqs);
        for (int ph = PH_IIDR; ph <= PH_CTRL; ph++) {
                r = put_phase(gic, false, 0, st->regs, st->n_regs, ph, err);
                if (r < 0)
                        return svemig_error_prefix(err, "the distributor");
        }
        for (size_t i = 0; i < n_vcpus; i++) {
                r = restore_cpu(gic, vcpus[i], &st->cpus[i], err);
                if (r < 0)
                        return r;
        }
        for (int ph = PH_CONFIG; ph < PH_N; ph++) {
                for (size_t i = 0; ph == PH_LEVEL && i < st->n_levels; i++) {
                        r = put_level(gic, 0, 32 * (uint32_t)(i + 1), st->spi_levels[i], err);
                        if (r < 0)
                                return r;
                }
                r = ph == PH_LEVEL ? 0 : put_phase(gic, false, 0, st->regs, st->n_regs, ph, err);
                if (r < 0)
                        return svemig_error_prefix(err, "the distributor");
        }
        for (size_t i = 0; i < n_vcpus; i++) {
                r = restore_sysregs(gic, vcpus[i], &st->cpus[i], err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Every offset known, inside the IRQs the GIC has, each once (offsets sorted into a bitmap). */
static int check_regs(bool redist, uint32_t nr_irqs, const struct vgic_reg *regs, size_t n, const char *who,
                      struct svemig_error *err)
{
        uint64_t seen[(0x10000 + 0x10000) / 4 / 64] = {0}; /* every offset below 128 KiB, a bit a word */

        for (size_t i = 0; i < n; i++) {
                uint32_t word, first, last, off = regs[i].offset;
                const struct range *rg = range_of(redist, off, &word);

                if (!rg)
                        return svemig_error_set(err, EINVAL,
                                                "%s: offset 0x%x is not a register svemig carries (a "
                                                "damaged or foreign stream)",
                                                who, off);
                range_words(rg, redist, nr_irqs, &first, &last);
                if (word < first || word >= last)
                        return svemig_error_set(err, EINVAL,
                                                "%s: offset 0x%x is outside the %u IRQs the vGIC has", who,
                                                off, nr_irqs);
                if (seen[off / 4 / 64] & 1ull << (off / 4 % 64))
                        return svemig_error_set(err, EINVAL, "%s: offset 0x%x appears twice", who, off);
                seen[off / 4 / 64] |= 1ull << (off / 4 % 64);
        }
        return 0;
}

int vgic_state_check(const struct vgic_state *st, struct svemig_error *err)
{
        char who[32];
        int r;

        if (st->nr_irqs < 64 || st->nr_irqs > VGIC_STATE_NR_IRQS_MAX || st->nr_irqs % 32)
                return svemig_error_set(err, EINVAL, "the vGIC has %u IRQs: not 64..1024 in steps of 32",
                                        st->nr_irqs);
        if (st->n_regs > VGIC_STATE_DIST_REGS_MAX)
                return svemig_error_set(err, E2BIG, "the distributor has %zu registers, over %u", st->n_regs,
                                        VGIC_STATE_DIST_REGS_MAX);
        if (st->n_levels != st->nr_irqs / 32 - 1)
                return svemig_error_set(err, EINVAL, "%zu words of SPI line levels for %u IRQs, not %u",
                                        st->n_levels, st->nr_irqs, st->nr_irqs / 32 - 1);
        if (st->n_cpus == 0 || st->n_cpus > VGIC_STATE_CPUS_MAX)
                return svemig_error_set(err, st->n_cpus ? E2BIG : EINVAL,
                                        "the vGIC has %zu CPU interfaces: "
                                        "1..%u",
                                        st->n_cpus, VGIC_STATE_CPUS_MAX);
        r = check_regs(false, st->nr_irqs, st->regs, st->n_regs, "the distributor", err);
        for (size_t i = 0; r >= 0 && i < st->n_cpus; i++) {
                const struct vgic_cpu_state *c = &st->cpus[i];

                snprintf(who, sizeof(who), "redistributor %zu", i);
                if (c->n_regs > VGIC_STATE_REDIST_REGS_MAX || c->n_sysregs > VGIC_STATE_SYSREGS_MAX)
                        return svemig_error_set(
                                err, E2BIG, "%s: %zu registers and %zu ICC registers, over %u and %u", who,
                                c->n_regs, c->n_sysregs, VGIC_STATE_REDIST_REGS_MAX, VGIC_STATE_SYSREGS_MAX);
                r = check_regs(true, 32, c->regs, c->n_regs, who, err);
                for (size_t j = 0; r >= 0 && j < c->n_sysregs; j++) {
                        bool dup = false;

                        for (size_t k = 0; k < j; k++)
                                dup |= c->sysregs[k].instr == c->sysregs[j].instr;
                        if (!vgic_sysreg_name(c->sysregs[j].instr) || dup)
                                r = svemig_error_set(
                                        err, EINVAL, "CPU interface %zu: system register 0x%04x %s", i,
                                        c->sysregs[j].instr,
                                        dup ? "appears twice" : "is not an ICC register svemig carries");
                }
        }
        return r;
}
