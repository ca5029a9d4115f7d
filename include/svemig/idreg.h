/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The feature ID registers a guest sees, field by field, with each field's
 * safety rule as the kernel's arm64_ftr_bits state it (lower-safe,
 * higher-safe, exact), and what KVM (6.7 and later) accepts when a VMM
 * writes one before the first KVM_RUN: in a field the host marks writable
 * (KVM_ARM_GET_REG_WRITABLE_MASKS), a value the safety rule allows against
 * the host's own; everywhere else, the host's own value. Anything else gets
 * EINVAL (as measured on 6.12). A kernel without writable ID registers
 * (6.1) has an empty mask. The rules are KVM's where it overrides the
 * host's (kvm_arm64_ftr_safe_value(): ID_AA64DFR0_EL1's PMUVer and
 * DebugVer are lower-safe for a guest, DebugVer no lower than 6).
 * Writable bits outside every known field take any value: registers the
 * kernel models itself, such as CLIDR_EL1 (writable since 6.3).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum idreg_rule {
        IDREG_EXACT,       /* the host's value, or the field's one safe value */
        IDREG_LOWER_SAFE,  /* any value up to the host's */
        IDREG_HIGHER_SAFE, /* any value from the host's up */
        /* as higher-safe, but 0 (unknown) is safest: 0 is always allowed, and any value is with 0 */
        IDREG_HIGHER_OR_ZERO_SAFE,
};

struct idreg_field {
        const char *name;
        uint8_t shift, width;
        bool is_signed; /* 0xf reads as -1: "not implemented" below 0 */
        enum idreg_rule rule;
        uint8_t safe;  /* IDREG_EXACT: the value a host may always write instead of its own */
        uint8_t floor; /* the least value KVM accepts in a write (DebugVer: 6) */
        /*
         * It says only what EL2 or EL3 offers (docs/cpu-baseline.md, "Fields
         * only EL2 uses"): KVM runs a guest at EL1 without nested
         * virtualization, so the field cannot matter to it. It is not
         * compared between hosts; each host presents its own value.
         */
        bool el2_only;
};

struct idreg_desc {
        uint64_t id;
        const char *name;
        const struct idreg_field *fields; /* the fields the kernel knows; other bits must equal */
        size_t n_fields;
};

/* The feature ID registers KVM_ARM_GET_REG_WRITABLE_MASKS covers: op0=3, op1 in {0,1,3}, CRn=0. */
bool idreg_is_feature(uint64_t id);

/* hv_id_mask_index() (svemig/hv.h) of a register ID; -1 for an ID outside the space. */
int idreg_mask_index(uint64_t id);
/* The register ID at that index. */
uint64_t idreg_mask_id(unsigned index);

/* The register's fields as the kernel knows them, or NULL (then every bit must equal). */
const struct idreg_desc *idreg_find(uint64_t id);

/* The field's value in v, sign-extended for a signed field. */
int64_t idreg_field_get(const struct idreg_field *f, uint64_t v);
uint64_t idreg_field_mask(const struct idreg_field *f);
/* "ID_AA64DFR0_EL1", or kvmreg_name()'s for a register without fields here. */
void idreg_name(uint64_t id, char *buf, size_t len);
/* The bits d's fields cover (0 for NULL). */
uint64_t idreg_known_bits(const struct idreg_desc *d);
/* The bits of the register's EL2-only fields (struct idreg_field.el2_only), 0 for most. */
uint64_t idreg_el2_only_bits(uint64_t id);
/*
 * The bits a destination keeps as its own when it takes a guest's ID
 * registers (docs/cpu-baseline.md): the EL2-only fields, and the GIC
 * fields (ID_AA64PFR0_EL1.GIC, ID_PFR1_EL1.GIC), which KVM sets from the
 * VM's own interrupt controller: 6.12 clears them at the first run of a VM
 * without an in-kernel GIC, 6.1 shows the host's, and neither takes the
 * other's value.
 */
uint64_t idreg_host_kept_bits(uint64_t id);

/* Why a host cannot present a value of a register. */
struct idreg_refusal {
        const struct idreg_field *field; /* NULL: bits outside every known field */
        uint64_t mask;                   /* the bits concerned */
        bool writable;                   /* the host may write them, but not to this value */
        int64_t want, own;               /* the field's values (field != NULL) */
};

/*
 * Whether a host whose register reads own, with these writable bits, can
 * present v to a guest: 0 (v == own, or KVM takes the write), or -EINVAL
 * with the first field it cannot in *why (optional).
 */
int idreg_can_present(uint64_t id, uint64_t own, uint64_t writable, uint64_t v, struct idreg_refusal *why);

/*
 * "ID_AA64DFR0_EL1.DebugVer: 0x9 here, 0x6 wanted; the field is exact and
 * this host cannot write it" and the like, for messages.
 */
void idreg_refusal_format(uint64_t id, const struct idreg_refusal *why, char *buf, size_t len);

/*
 * "ID_AA64DFR0_EL1.DebugVer is 9 here, 6 wanted (lower-safe)": the first
 * field in which want differs from own, or the bits outside every known
 * field, for a refusal whose writable bits are unknown (the kernel said no).
 */
void idreg_first_difference(uint64_t id, uint64_t own, uint64_t want, char *buf, size_t len);
