/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The sim backend's internal state, shared by the KVM model (hv_sim.c),
 * the machine as its guest sees it (sim/machine.c) and the synthetic guest
 * workload (sim/workload.c), which hv_sim.c runs.
 */

#include <pthread.h>

#include "svemig/kvmreg.h"
#include <stdatomic.h>

#include "hv-backend.h"
#include "sim/idfacts.h"
#include "sim/reglist.h"

#define SIM_MAX_SLOTS 32
#define SIM_NR_ZREGS  32
#define SIM_NR_PREGS  16
#define SIM_ZREG_MAX  256 /* bytes at 2048 bits */
#define SIM_PREG_MAX  32

struct sim_reg;
struct reglist_profile;

struct sim_host {
        struct hv base;
        char kernel[64];
        char host_name[64];
        unsigned n_cpus;
        bool sve;
        vqset_t full;    /* VQs every CPU implements (the kernel's vq_map) */
        vqset_t vls;     /* what a new vcpu offers: full ∩ [1..max_vq] */
        unsigned max_vq; /* the kernel's max virtualisable vq, 0 without SVE */
        struct hv_sim_id_reg *id_regs;
        size_t n_id_regs;
        bool nvhe;
        /*
         * A vcpu's registers after KVM_ARM_VCPU_INIT, per reference list,
         * computed once: resetting 64 vcpus one by one (host values, a sort)
         * was most of a migration's restore on this backend.
         */
        pthread_mutex_t reset_lock;
        struct sim_reset *resets;
};

/* The plain registers of a profile as a reset vcpu has them. */
struct sim_reset {
        struct sim_reset *next;
        const struct reglist_profile *prof;
        size_t n;
        uint64_t *values;      /* in profile order */
        struct kvmreg *regs;   /* decoded ids */
        struct sim_reg *index; /* sorted by id */
        size_t mpidr;          /* MPIDR_EL1's slot in values (the vcpu's own); SIZE_MAX when absent */
        /* How this kernel, KVM mode and vcpu kind answer ID register writes; NULL: none measured. */
        const struct idfacts_profile *facts;
};

struct sim_slot {
        bool used;
        unsigned flags;
        uint64_t gpa, size;
        uint8_t *hva;
        uint64_t *dirty; /* one bit per page, set atomically by vcpu threads */
};

struct sim_vm {
        struct hv_vm base;
        pthread_mutex_t lock; /* memslot changes */
        struct sim_slot slots[SIM_MAX_SLOTS];
        /* Virtual and physical counter offsets: VM-wide, as KVM's CNTVOFF. */
        _Atomic uint64_t cnt_offset[2];
        unsigned n_vcpus;
        atomic_bool ran; /* a vcpu entered KVM_RUN: 6.12 then freezes the ID registers */
};

/* A lookup entry: a register ID and its index in sim_vcpu.values. */
struct sim_reg {
        uint64_t id;
        size_t index;
        const struct kvmreg *reg; /* decoded, in the host's struct sim_reset */
};

struct sim_vcpu {
        struct hv_vcpu base;
        bool sve, finalized;
        vqset_t vls;
        unsigned max_vq;
        uint32_t mp_state;
        atomic_bool kicked;
        /* A stopped vcpu sleeps in run until kicked, as KVM's does. */
        pthread_mutex_t wake_lock;
        pthread_cond_t wake;

        /*
         * Plain registers (all but the SVE group, vregs and counters) in
         * the order of reset->index's slots, which is the profile's, so that
         * x0..x30 are contiguous in values[]. The IDs and their lookup are
         * the host's, shared by every vcpu with this profile.
         */
        const struct sim_reset *reset; /* NULL before init */
        uint64_t *values;
        bool ran; /* the first run's changes (idfacts_profile.changes) are made */

        uint8_t z[SIM_NR_ZREGS][SIM_ZREG_MAX];
        uint8_t p[SIM_NR_PREGS][SIM_PREG_MAX];
        uint8_t ffr[SIM_PREG_MAX];
        uint8_t v[32][16]; /* fp_regs.vregs of a non-SVE vcpu; on SVE they are Z's low 128 bits */

        /* Registers the workload touches every step. */
        uint64_t *x, *pc, *fpsr, *fpcr, *tpidr_el0, *zcr_el1;
};

static inline struct sim_vm *sim_vm_of(struct sim_vcpu *v)
{
        return (struct sim_vm *)v->base.vm;
}

/* ---- sim/machine.c ---- */

/* Host memory behind [gpa, gpa+len) if one slot maps all of it, else NULL. */
uint8_t *sim_vm_mem(struct sim_vm *vm, uint64_t gpa, size_t len);

/*
 * Marks the pages of [gpa, gpa+len) dirty when their slot logs them. Called
 * after the store, never before: a log read between the two would clear
 * the mark of a page whose new content it cannot see yet. (On KVM, a store
 * after a log read faults on the re-protected page and marks it anew.)
 */
void sim_vm_mark_dirty(struct sim_vm *vm, uint64_t gpa, size_t len);

/* The lowest-numbered memory slot in use, or NULL. */
const struct sim_slot *sim_vm_first_slot(struct sim_vm *vm);

/* The vq the guest runs at: ZCR_EL1.LEN limited to the vcpu's set. */
unsigned sim_vcpu_effective_vq(const struct sim_vcpu *v);

/* ---- sim/workload.c ---- */

/* One step of the synthetic workload (docs/sim-workload.md). */
void sim_workload_step(struct sim_vcpu *v);
