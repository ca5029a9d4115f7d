/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A cluster's vector-length view (DESIGN.md "Vector-length negotiation"):
 * over the hosts that take part (those reachable now), the guest set every
 * one of them can present, the hosts that hold it down, and what the others
 * would offer without them. Hosts that do not take part are kept in the
 * list, index-aligned, but neither counted nor judged.
 */

#include <stdbool.h>
#include <stddef.h>

#include "svemig/error.h"
#include "svemig/vcpu.h"
#include "svemig/vqset.h"

struct cluster_host {
        bool counted; /* takes part (e.g. reachable); at least one host must */
        vqset_t vls;  /* its hypervisor's own VLS; empty = no SVE */
};

struct cluster_host_verdict {
        bool counted;
        bool can_present;           /* counted hosts only: it can present the guest set exactly */
        struct vqset_reason reason; /* when it cannot: the first offending vq */
        bool limiting;              /* it lacks the lowest length some other counted host offers */
};

struct cluster_result {
        vqset_t guest;   /* empty: no common SVE, FPSIMD only */
        unsigned max_vq; /* max(guest), 0 when empty */
        size_t n_counted;
        size_t n_hosts;
        struct cluster_host_verdict *hosts; /* index-aligned with the input; owned */
        size_t n_limiting;
        /* What the counted hosts that do not limit would offer (n_limiting > 0 only). */
        bool have_without;
        vqset_t without;
        unsigned without_max_vq;
};

/*
 * Computes the view: vqset_negotiate() over the counted hosts, then again
 * over the counted hosts that do not limit. Returns 0, -EINVAL when no host
 * is counted, or -ENOMEM. Free with cluster_result_done().
 */
int cluster_compute(const struct cluster_host *hosts, size_t n, struct cluster_result *out,
                    struct svemig_error *err);
void cluster_result_done(struct cluster_result *r);

/*
 * The view of a cluster whose guest set is pinned (a named cluster set):
 * the guest set is 'pinned' whatever the hosts offer, and each counted host
 * is judged against it (can_present, with the first offending vq). Nothing
 * limits a pinned set: a host that cannot present it is one the guests
 * cannot move to. Returns 0, -EINVAL when no host is counted, or -ENOMEM.
 */
int cluster_compute_pinned(const struct cluster_host *hosts, size_t n, const vqset_t *pinned,
                           struct cluster_result *out, struct svemig_error *err);

/* Whether two results say the same thing (for logging changes only). */
bool cluster_result_equal(const struct cluster_result *a, const struct cluster_result *b);

/*
 * The first host-invariant register two hosts disagree on. KVM accepts no
 * other value for an ID register than its own, so a guest cannot move between
 * such hosts whatever its vector lengths: hosts in different KVM modes
 * (ID_AA64MMFR1_EL1.VH: VHE or nVHE) or on different CPUs or kernels.
 */
struct cluster_id_diff {
        bool differ;
        bool missing_here, missing_there; /* the register is on one side only (its value reads as 0) */
        uint64_t id;
        uint64_t here, there;
};

/*
 * Compares two hosts' probe ID registers (peer_info.id_regs). Leaves out what
 * follows the guest's SVE feature rather than the host, ID_AA64PFR0_EL1.SVE
 * and ID_AA64ZFR0_EL1, which the vector-length negotiation governs. Either
 * side empty (not known yet): no difference.
 */
void cluster_id_compare(const struct vcpu_state *here, const struct vcpu_state *there,
                        struct cluster_id_diff *out);

/* "ID register ID_AA64MMFR1_EL1 is 0x... here and 0x... on B". */
void cluster_id_diff_format(const struct cluster_id_diff *d, const char *peer, char *buf, size_t len);
