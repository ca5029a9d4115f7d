/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The kernel's reference register lists, generated at build time from
 * src/sim/reglists/ (copies of KVM_GET_REG_LIST on Debian's arm64 kernels):
 * which registers a vcpu has, in the kernel's order, and their values right
 * after KVM_ARM_VCPU_INIT. The sim reproduces them.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reglist_entry {
        uint64_t id;
        bool has_value; /* registers of 8 bytes or less */
        uint64_t reset;
};

struct reglist_profile {
        const char *kernel; /* e.g. "6.1.0-56-cloud-arm64" */
        bool sve;           /* an SVE vcpu's list, or a non-SVE one's */
        size_t n;
        const struct reglist_entry *regs;
};

extern const struct reglist_profile reglist_profiles[];
extern const size_t reglist_n_profiles;

/*
 * The profile whose kernel release starts with 'kernel' ("6.1", "6.12", or a
 * full release), for an SVE or non-SVE vcpu; NULL when there is none.
 */
const struct reglist_profile *reglist_profile_find(const char *kernel, bool sve);
