/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What each kernel does with a VMM's writes to its ID registers, generated at
 * build time (scripts/gen-idfacts.py) from the facts the rig measured on the
 * real KVM (src/sim/kernel-facts/, tests/arm64/capture-facts.sh), per kernel,
 * KVM mode and vcpu kind. The sim answers ID register writes from them; the
 * conformance suite replays every measured write on any backend.
 *
 * "Probed" registers are those of the feature ID space (op0 3, op1 0/1/3,
 * CRn 0, CRm 0..7: the ID registers, MIDR/MPIDR/REVIDR, CLIDR, CTR, DCZID...)
 * and the CCSIDRs (DEMUX). The rig tried, on every 4-bit field of each, every
 * value, one field at a time from the values after init.
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A probed field that takes a value other than its own (a write of that field alone). */
struct idfacts_field {
        uint64_t id;
        uint8_t shift;
        uint8_t from;    /* the field's value on the host measured */
        uint16_t values; /* bit v: the kernel takes value v there */
};

/* KVM_ARM_GET_REG_WRITABLE_MASKS: the bits of a register a VMM may change. */
struct idfacts_mask {
        uint64_t id;
        uint64_t mask;
};

/* What the first KVM_RUN did to a register (no in-kernel GIC): the bits in mask become value's. */
struct idfacts_change {
        uint64_t id;
        uint64_t mask;
        uint64_t value;
};

struct idfacts_profile {
        const char *kernel; /* the release measured, e.g. "6.12.118+deb12-cloud-arm64" */
        bool nvhe;
        bool sve;
        int refuse_errno; /* a refused write before the first KVM_RUN */
        int run_errno;    /* a changing write to a frozen register after it; 0: none is frozen */
        const struct idfacts_field *fields;
        size_t n_fields;
        const uint64_t *frozen; /* sorted */
        size_t n_frozen;
        const struct idfacts_change *changes;
        size_t n_changes;
        const struct idfacts_mask *masks; /* NULL: the kernel has no KVM_ARM_GET_REG_WRITABLE_MASKS */
        size_t n_masks;                   /* registers with a non-zero mask */
};

extern const struct idfacts_profile idfacts_profiles[];
extern const size_t idfacts_n_profiles;

/* One measured write: 'from' is the field's value after init, 'to' the one written. */
struct idfacts_probe {
        uint64_t id;
        uint8_t shift;
        uint8_t from, to;
        int answer; /* 0 or the errno */
        bool after_run;
};

/*
 * Every write measured, for the conformance suite: generated beside the rules
 * but linked into tests/conformance/ only, not the library.
 */
struct idfacts_probes {
        const char *kernel;
        bool nvhe;
        bool sve;
        const struct idfacts_probe *probes;
        size_t n;
};

extern const struct idfacts_probes idfacts_probe_tables[];
extern const size_t idfacts_n_probe_tables;

/*
 * The profile for kernel 'kernel' (a release, or its major.minor such as
 * "6.12"; matched by major.minor), the mode and vcpu kind; NULL when the rig
 * measured none.
 */
const struct idfacts_profile *idfacts_find(const char *kernel, bool nvhe, bool sve);

/* Whether the rig probed writes to register 'id' (feature ID space or DEMUX). */
bool idfacts_probed(uint64_t id);

/* KVM_ARM_GET_REG_WRITABLE_MASKS's mask of 'id' (0 when it has none). */
uint64_t idfacts_mask(const struct idfacts_profile *p, uint64_t id);

/*
 * The kernel's answer to writing 'val' to probed register 'id' whose value
 * after init is 'reset' and is now 'cur': 0 or a negative errno. 'ran' says
 * whether the VM has run.
 */
int idfacts_check_write(const struct idfacts_profile *p, uint64_t id, uint64_t reset, uint64_t cur,
                        uint64_t val, unsigned size, bool ran);

/* Whether two kernel releases are of one series: "6.12.118+deb12-cloud-arm64" and "6.12" are, "6.1" and
 * "6.12" not. */
bool idfacts_same_series(const char *a, const char *b);
