/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The cluster's CPU baseline beyond vector lengths (DESIGN.md, "The CPU
 * baseline beyond vector lengths"): the feature ID register values every
 * counted host can present to a guest, negotiated field by field by each
 * field's safety rule (svemig/idreg.h), pinned by the hosts whose kernel
 * cannot write a field. A guest started at the baseline can move to any of
 * these hosts. The SVE field of ID_AA64PFR0_EL1 and ID_AA64ZFR0_EL1 follow
 * the guest's SVE feature, which the vector-length negotiation governs:
 * they are left out here, as are the fields only EL2 software uses
 * (svemig/idreg.h, el2_only), which cannot matter to a guest run at EL1.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"
#include "svemig/idreg.h"

/*
 * One feature ID register of a host (or a CCSIDR, whose bits no field
 * describes): its value, and the bits its kernel lets a VMM write.
 */
struct cpubase_reg {
        uint64_t id;
        uint64_t value;
        uint64_t writable;
};

struct cpubase_host {
        const char *name;
        bool counted; /* takes part; the others are index-aligned but not judged */
        const struct cpubase_reg *regs;
        size_t n_regs; /* a register a host lacks reads as 0 and cannot be written */
};

/* A field that one or more hosts hold below (or above) what the others could agree on. */
struct cpubase_limit {
        uint64_t id;
        const struct idreg_field *field;
        int64_t value;   /* the baseline's */
        int64_t without; /* what the other counted hosts would agree on without the limiting ones */
        size_t host;     /* the first limiting host */
        size_t n_hosts;  /* how many hold it there */
        bool pinned;     /* the limiting hosts cannot write the field: they fix it */
};

/* A field no value of which every counted host can present. */
struct cpubase_conflict {
        uint64_t id;
        const struct idreg_field *field; /* NULL: bits outside every known field */
        uint64_t mask;
        size_t host_a, host_b; /* two hosts that cannot agree */
        int64_t a, b;          /* their values (field bits, shifted down, for NULL field) */
};

/*
 * An EL2-only field (struct idreg_field.el2_only) in which counted hosts
 * differ: not compared, each host presents its own value to a guest.
 */
struct cpubase_uncompared {
        uint64_t id;
        const struct idreg_field *field;
        size_t host_a, host_b; /* the first two hosts that differ */
        int64_t a, b;
};

struct cpubase_host_verdict {
        bool counted;
        bool writes; /* it presents the baseline only by writing ID registers before the first run */
};

struct cpubase_result {
        struct cpubase_reg *regs; /* the baseline: value per register, writable unused; owned */
        size_t n_regs;
        struct cpubase_host_verdict *hosts; /* index-aligned with the input; owned */
        size_t n_hosts;
        struct cpubase_limit *limits; /* owned */
        size_t n_limits;
        struct cpubase_conflict *conflicts; /* owned; none: every counted host presents the baseline */
        size_t n_conflicts;
        struct cpubase_uncompared *uncompared; /* owned: "EL2-only, not compared" */
        size_t n_uncompared;
};

/*
 * Negotiates the baseline over the counted hosts. Returns 0 (conflicts, if
 * any, are in the result), -EINVAL when no host is counted, or -ENOMEM.
 * Free with cpubase_result_done().
 */
int cpubase_compute(const struct cpubase_host *hosts, size_t n, struct cpubase_result *out,
                    struct svemig_error *err);
void cpubase_result_done(struct cpubase_result *r);

/*
 * Whether a host can present a guest's feature ID registers (as a stream
 * records them): 0, or -EINVAL with the register and field named in err,
 * and why no VMM can hide it.
 */
int cpubase_can_present(const struct cpubase_reg *host, size_t n_host, const struct cpubase_reg *guest,
                        size_t n_guest, struct svemig_error *err);

/*
 * Bits left out of the baseline, which each host presents as its own: those
 * the vector-length negotiation governs (the SVE field, ZFR0) and the
 * EL2-only fields (idreg_el2_only_bits()). 0 for most registers.
 */
uint64_t cpubase_ignored_bits(uint64_t id);

/* "ID_AA64MMFR1_EL1.HCX" for a limit or conflict, into buf. */
void cpubase_field_name(uint64_t id, const struct idreg_field *field, char *buf, size_t len);
