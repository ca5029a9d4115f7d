/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A vGIC v3's state, saved from and restored into KVM's in-kernel GIC
 * through hv.h's device attributes (KVM_DEV_ARM_VGIC_GRP_DIST_REGS,
 * REDIST_REGS, CPU_SYSREGS, LEVEL_INFO). The structs are the serialisable
 * form: the stream's VGIC frame carries them as they are. Registers are
 * keyed by their offset (or, for the CPU interface, their instruction
 * encoding) so that a reader can check and name each one.
 *
 * Not carried: LPIs and an ITS (svemig-vmm creates none; so neither
 * GICR_PROPBASER nor GICR_PENDBASER), GICD_STATUSR and GICR_STATUSR (error
 * reporting only), GICR_WAKER (KVM keeps none).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"
#include "svemig/hv.h"

#define VGIC_STATE_NR_IRQS_MAX 1024u /* KVM_DEV_ARM_VGIC_GRP_NR_IRQS: 64..1024 */
#define VGIC_STATE_SYSREGS_MAX 16u
#define VGIC_STATE_CPUS_MAX    512u /* KVM's most vcpus with a vGIC v3 */
/* The most distributor and redistributor words a vGIC of 1024 IRQs has. */
#define VGIC_STATE_DIST_REGS_MAX   1024u
#define VGIC_STATE_REDIST_REGS_MAX 32u

/* One 32-bit register (a 64-bit one is two, lower word first). */
struct vgic_reg {
        uint32_t offset; /* from the distributor's base, or a redistributor's RD_base */
        uint32_t value;
};

/* An ICC_* register: instr is op0:op1:CRn:CRm:op2 in 2:3:4:4:3 bits, as KVM encodes it. */
struct vgic_sysreg {
        uint16_t instr;
        uint64_t value;
};

struct vgic_cpu_state {
        uint64_t mpidr; /* the vcpu's MPIDR_EL1: its redistributor's and CPU interface's key */
        size_t n_regs;
        struct vgic_reg *regs; /* its redistributor, SGI frame at 0x10000 included */
        size_t n_sysregs;
        struct vgic_sysreg sysregs[VGIC_STATE_SYSREGS_MAX];
        uint32_t ppi_level; /* line levels of INTIDs 0..31 (SGIs have none) */
};

struct vgic_state {
        uint32_t nr_irqs; /* SGIs, PPIs and SPIs: 64..1024, a multiple of 32 */
        size_t n_regs;
        struct vgic_reg *regs; /* the distributor */
        size_t n_levels;
        uint32_t *spi_levels; /* line levels of INTIDs 32 + 32 i .. 63 + 32 i */
        size_t n_cpus;
        struct vgic_cpu_state *cpus; /* one per vcpu, in vcpu index order */
};

/* Frees what st owns and zeroes it. */
void vgic_state_done(struct vgic_state *st);

/*
 * Saves the vGIC's state. gic is an initialised vGIC v3 (CTRL_INIT done),
 * vcpus all of the VM's vcpus in index order, none of them running.
 */
int vgic_state_save(struct hv_device *gic, struct hv_vcpu *const *vcpus, size_t n_vcpus,
                    struct vgic_state *out, struct svemig_error *err);

/*
 * Restores st into a vGIC v3 created with st->nr_irqs IRQs and initialised
 * after its vcpus (the same number, created in the same order, their
 * MPIDR_EL1 already restored), before any vcpu runs. It writes in the order
 * the kernel needs (Documentation/virt/kvm/devices/arm-vgic-v3.rst): GICD_IIDR
 * first, then the controls, the configuration (groups, trigger modes,
 * priorities, routing), the line levels, then pending, active and enabled
 * state, each clear half of a set/clear pair before its set half; the CPU
 * interfaces last, ICC_SRE_EL1 and ICC_CTLR_EL1 (which fixes the number of
 * active priority registers) before the others.
 */
int vgic_state_restore(struct hv_device *gic, struct hv_vcpu *const *vcpus, size_t n_vcpus,
                       const struct vgic_state *st, struct svemig_error *err);

/*
 * Checks st as a decoder must before anyone acts on it: nr_irqs, counts,
 * every offset a register this file knows, within nr_irqs, once. 0 or
 * -EINVAL (-E2BIG for a count over its limit) with the reason.
 */
int vgic_state_check(const struct vgic_state *st, struct svemig_error *err);

/*
 * Names for people: "GICD_IPRIORITYR[10]", "GICR_ISENABLER0", "ICC_PMR_EL1".
 * The offset's name, with the word index in brackets; NULL-free: an offset
 * this file does not know prints as "GICD_0x1234".
 */
int vgic_reg_name(bool redist, uint32_t offset, char *buf, size_t len);
const char *vgic_sysreg_name(uint16_t instr); /* NULL when unknown */
