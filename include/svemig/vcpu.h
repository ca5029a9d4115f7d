/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A vcpu's complete architectural state, as the backend's register list
 * enumerates it, at each register's own width; and capture/restore between
 * backend instances.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"
#include "svemig/hv.h"
#include "svemig/vqset.h"

struct vcpu_reg {
        uint64_t id;
        uint32_t size;  /* kvmreg_size(id) */
        uint8_t *value; /* size bytes, little-endian memory image; points into vcpu_state.blob */
};

struct vcpu_state {
        unsigned index;
        uint32_t features; /* HV_FEAT_BIT()s passed to init */
        vqset_t vls;       /* the vcpu's SVE_VLS; empty without SVE */
        uint32_t mp_state;
        size_t n_regs;
        struct vcpu_reg *regs; /* in the backend's reg-list order */
        uint8_t *blob;         /* all values, owned */
        size_t blob_size;
};

/* Frees what a state owns and zeroes it. */
void vcpu_state_done(struct vcpu_state *st);

/*
 * Builds an empty state with room for n registers of the given IDs (values
 * zeroed), e.g. for a decoder. Returns 0 or -ENOMEM.
 */
int vcpu_state_alloc(struct vcpu_state *st, const uint64_t *ids, size_t n);

/* A deep copy of src into dst (which it overwrites). 0 or -ENOMEM. */
int vcpu_state_copy(struct vcpu_state *dst, const struct vcpu_state *src);

const struct vcpu_reg *vcpu_state_find(const struct vcpu_state *st, uint64_t id);

/*
 * Captures every register the vcpu's reg list enumerates, plus features,
 * VLS and mp_state. The vcpu must be initialised (and finalized with SVE).
 */
int vcpu_capture(struct hv_vcpu *vcpu, struct vcpu_state *out, struct svemig_error *err);

/*
 * What a restore would find wrong with a destination before writing a
 * register: run by vcpu_restore(), and by a snapshot or migration that wants
 * to refuse before any memory moves. 'dst' is a vcpu freshly initialised and
 * finalized with st's features and VLS, or NULL to check only the VL set
 * against caps.
 */
int vcpu_check_compat(const struct hv_caps *caps, struct hv_vcpu *dst, const struct vcpu_state *st,
                      struct svemig_error *err);

/*
 * Registers whose value is the host CPU's, not the guest's (ID registers,
 * CCSIDR): a different value on a destination is a host incompatibility.
 */
bool vcpu_reg_is_host_invariant(uint64_t id);

/*
 * Makes initialised vcpu dst present exactly these values for these
 * host-invariant registers: where one differs, it writes the given value,
 * which a kernel accepts before the first run where it allows the VMM to
 * choose it (6.12's writable ID fields). -EINVAL naming the first that
 * differs and is refused, or the backend's errno if one cannot be read
 * (-ENOENT: the host lacks it).
 */
int vcpu_check_invariants(struct hv_vcpu *dst, const struct vcpu_reg *regs, size_t n,
                          struct svemig_error *err);

/*
 * Restores st into a fresh (created, not initialised) vcpu:
 *   1. init with st's features;
 *   2. set SVE_VLS, refusing with the precise vq reason if the host cannot
 *      present the set;
 *   3. finalize;
 *   4. check that both sides have the same registers (a register on one
 *      side only is named, with its ID) and the same ID registers;
 *   5. write the registers in kvmreg_restore_rank() order;
 *   6. read every register back and compare.
 * Returns 0, -EINVAL for an incompatible host (with the reason), or the
 * backend's errno with the register that failed named.
 */
int vcpu_restore(struct hv_vcpu *vcpu, const struct vcpu_state *st, struct svemig_error *err);

/*
 * Compares two states register by register. The counters (TIMER_CNT and the
 * physical one), which move with wall time on a real host, are not compared.
 * Returns true when equal; when not, and diff is non-NULL, describes the first
 * difference there.
 */
bool vcpu_state_equal(const struct vcpu_state *a, const struct vcpu_state *b, char *diff, size_t len);
