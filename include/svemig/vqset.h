/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A set of SVE vector quanta (vq = VL / 128 bits), 1..512, stored exactly as
 * the value of KVM_REG_ARM64_SVE_VLS: __u64[8], bit (vq - 1) set when VL =
 * vq * 128 bits is in the set. A vqset can be written to and read from that
 * register as it is.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"

#define VQSET_VQ_MIN 1u
#define VQSET_VQ_MAX 512u
#define VQSET_WORDS  8u

/* The architecture stops at 2048-bit vectors; KVM's ONE_REG slices too. */
#define VQSET_VQ_ARCH_MAX 16u

typedef struct vqset {
        uint64_t w[VQSET_WORDS];
} vqset_t;

static inline unsigned vq_to_bits(unsigned vq)
{
        return vq * 128u;
}

/* Build and query. Out-of-range vq are ignored by add/del and absent for contains. */
void vqset_clear(vqset_t *s);
void vqset_add(vqset_t *s, unsigned vq);
void vqset_del(vqset_t *s, unsigned vq);
bool vqset_contains(const vqset_t *s, unsigned vq);
bool vqset_empty(const vqset_t *s);
bool vqset_equal(const vqset_t *a, const vqset_t *b);
unsigned vqset_count(const vqset_t *s);
unsigned vqset_lowest(const vqset_t *s);  /* 0 when empty */
unsigned vqset_highest(const vqset_t *s); /* 0 when empty */
/* The next vq in s strictly above 'vq', or 0. vqset_next(s, 0) is the lowest. */
unsigned vqset_next(const vqset_t *s, unsigned vq);

vqset_t vqset_and(const vqset_t *a, const vqset_t *b);
vqset_t vqset_or(const vqset_t *a, const vqset_t *b);
vqset_t vqset_andnot(const vqset_t *a, const vqset_t *b); /* a \ b */
/* The members of s in [1..max_vq]. */
vqset_t vqset_upto(const vqset_t *s, unsigned max_vq);
/* {1..max_vq} */
vqset_t vqset_range(unsigned max_vq);

#define VQSET_FOREACH(vq, s) for (unsigned vq = vqset_next((s), 0); vq != 0; vq = vqset_next((s), vq))

/*
 * Parsing accepts, case-insensitively and with optional blanks after commas:
 *   - lengths in bits: "128,256,512" (each a multiple of 128, 128..65536);
 *   - quanta: "vq1,vq2,vq4";
 *   - the raw VLS bitmap in hex: "0xb" (up to 512 bits);
 *   - "none" or "" for the empty set (a host without SVE).
 * Ranges are allowed in the first two forms: "128-512" and "vq1-vq4" mean
 * every length between. Anything else is refused with a message that shows
 * the accepted forms.
 */
int vqset_parse(const char *text, vqset_t *out, struct svemig_error *err);

enum vqset_format {
        VQSET_FORMAT_BITS,   /* "128,256,512", "none" when empty */
        VQSET_FORMAT_VQ,     /* "vq1,vq2,vq4", "none" when empty */
        VQSET_FORMAT_BITMAP, /* "0xb", "0x0" when empty */
};

/*
 * Writes s in 'fmt' into buf (NUL-terminated, truncated to len). Returns the
 * length the full text needs, excluding the NUL, like snprintf.
 */
int vqset_format(const vqset_t *s, enum vqset_format fmt, char *buf, size_t len);

/*
 * The kernel's virtualisable-VL computation (arch/arm64/kernel/fpsimd.c) over
 * per-CPU VQ maps: full = AND of the maps, partial = OR. A VL offered by only
 * some CPUs cannot be hidden from a guest below its maximum, so the maximum
 * virtualisable vq is (lowest vq of partial \ full) - 1, capped at max(full)
 * and at VQSET_VQ_ARCH_MAX. The set KVM offers a new vcpu is full ∩ [1..that].
 *
 * Returns the offered set (empty when any CPU lacks SVE, i.e. has an empty
 * map) and stores its maximum in *max_vq (0 for none) when max_vq is non-NULL.
 */
vqset_t vqset_virtualisable(const vqset_t *cpu_maps, size_t n_cpus, unsigned *max_vq);

/* Why a host cannot present a guest set. */
enum vqset_mismatch {
        VQSET_OK = 0,
        VQSET_MISSING, /* the guest needs vq, the host lacks it */
        VQSET_EXTRA,   /* the host has vq below the guest's max, which it cannot hide */
};

struct vqset_reason {
        enum vqset_mismatch kind;
        unsigned vq; /* the first (lowest) offending vq, 0 when kind == VQSET_OK */
        /* max(guest) the host was checked against (set by vqset_can_present), 0 if unknown */
        unsigned guest_max_vq;
};

/*
 * Whether a host whose hypervisor offers 'host' can present 'guest' exactly:
 * host ∩ [1..max(guest)] == guest. An empty guest set (no SVE, FPSIMD only)
 * is presentable anywhere. When the answer is no and why is non-NULL, *why
 * names the lowest offending vq and whether it is missing or extra.
 */
bool vqset_can_present(const vqset_t *host, const vqset_t *guest, struct vqset_reason *why);

/* "vq 3 (384 bits) is missing on the host" and the like, into buf. */
int vqset_reason_format(const struct vqset_reason *why, char *buf, size_t len);

struct vqset_host_verdict {
        bool can_present;
        struct vqset_reason reason;
};

struct vqset_cluster {
        vqset_t guest;   /* the cluster's guest set, empty when there is no common SVE */
        unsigned max_vq; /* max(guest), 0 when empty */
        size_t n_hosts;
        /* Per host, index-aligned with the input. Owned; freed by vqset_cluster_done(). */
        struct vqset_host_verdict *hosts;
        /*
         * The host(s) whose set decides the cap: those lacking the lowest
         * partial-only vq (or any SVE); empty when every host has the same set.
         */
        bool *limiting;
        size_t n_limiting;
};

/*
 * The cluster computation of DESIGN.md "Vector-length negotiation" over host
 * sets H1..Hn (each the hypervisor's own VLS): full = AND, partial = OR,
 * cap = (lowest vq of partial \ full) - 1 or max(full), rounded down to a
 * member of full; guest = full ∩ [1..cap]. Returns 0, -EINVAL for n == 0,
 * or -ENOMEM.
 */
int vqset_negotiate(const vqset_t *hosts, size_t n, struct vqset_cluster *out, struct svemig_error *err);
void vqset_cluster_done(struct vqset_cluster *c);
