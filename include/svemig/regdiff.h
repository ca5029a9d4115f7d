/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Registers only one side lists (docs/cpu-baseline.md, "Register list
 * differences"): kernels list different registers (Debian 6.1: 261 for an
 * SVE vcpu, 6.12: 278). A register the destination lists and the guest's
 * state lacks keeps the destination's reset value. One the guest's state
 * carries and the destination lacks is dropped only when its value cannot
 * matter to the guest, judged from the guest's own registers; otherwise
 * the guest is refused, naming it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the decisions read of the guest's own registers. */
struct regdiff_guest {
        bool have_clidr, have_mmfr3, have_cntp_ctl;
        uint64_t clidr;    /* CLIDR_EL1: the cache levels it declares */
        uint64_t mmfr3;    /* ID_AA64MMFR3_EL1: TCRX, S1PIE */
        uint64_t cntp_ctl; /* CNTP_CTL_EL0: the physical timer's ENABLE */
};

/* Notes one of the guest's registers (every one may be passed; the others are ignored). */
void regdiff_guest_note(struct regdiff_guest *g, uint64_t id, uint64_t value);

/*
 * Whether the destination may drop register id (holding value), which the
 * guest's state carries and the destination's kernel lacks: 0 (why says
 * why it cannot matter), or -ENOENT with the reason the guest needs it.
 */
int regdiff_source_only(const struct regdiff_guest *g, uint64_t id, uint64_t value, char *why, size_t len);
