/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The registers one kernel lists and another does not, each decided from
 * what the guest's own registers say about it: a feature its ID registers
 * hide, a cache level its CLIDR_EL1 does not declare, a timer it has not
 * enabled. docs/cpu-baseline.md has the table for Debian's 6.1 and 6.12.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

#include "svemig/kvmreg.h"
#include "svemig/regdiff.h"

#define ID_AA64MMFR3_EL1 kvmreg_sys(3, 0, 0, 7, 3)
#define CLIDR_EL1        kvmreg_sys(3, 1, 0, 0, 1)
#define TCR2_EL1         kvmreg_sys(3, 0, 2, 0, 3)
#define PIRE0_EL1        kvmreg_sys(3, 0, 10, 2, 2)
#define PIR_EL1          kvmreg_sys(3, 0, 10, 2, 3)
#define CNTP_CTL_EL0     kvmreg_sys(3, 3, 14, 2, 1)
#define CNTP_CVAL_EL0    kvmreg_sys(3, 3, 14, 2, 2)

void regdiff_guest_note(struct regdiff_guest *g, uint64_t id, uint64_t value)
{
        if (id == CLIDR_EL1) {
                g->clidr = value;
                g->have_clidr = true;
        } else if (id == ID_AA64MMFR3_EL1) {
                g->mmfr3 = value;
                g->have_mmfr3 = true;
        } else if (id == CNTP_CTL_EL0) {
                g->cntp_ctl = value;
                g->have_cntp_ctl = true;
        }
}

static unsigned field(uint64_t v, unsigned shift)
{
        return (unsigned)(v >> shift) & 0xf;
}

/* CCSIDR for CSSELR index: whether the guest's CLIDR_EL1 declares that cache at all. */
static int ccsidr(const struct regdiff_guest *g, unsigned index, char *why, size_t len)
{
        bool have = g->have_clidr;
        uint64_t clidr = g->clidr;
        unsigned level = (index >> 1) + 1, ind = index & 1;
        unsigned ctype = level <= 7 ? (unsigned)(clidr >> (3 * (level - 1))) & 7 : 0;
        bool present = ind ? (ctype == 1 || ctype == 3) : (ctype >= 2 && ctype <= 4);

        if (have && !present) {
                snprintf(why, len,
                         "the guest's CLIDR_EL1 (0x%llx) declares no level %u %s cache, so it never "
                         "selects this CCSIDR",
                         (unsigned long long)clidr, level, ind ? "instruction" : "data or unified");
                return 0;
        }
        snprintf(why, len,
                 "the guest's CLIDR_EL1 declares a level %u %s cache, and this CCSIDR describes it", level,
                 ind ? "instruction" : "data or unified");
        return -ENOENT;
}

/* A register of a feature the guest's ID_AA64MMFR3_EL1 field must show for the guest to use it. */
static int hidden_by_mmfr3(const struct regdiff_guest *g, uint64_t value, unsigned shift,
                           const char *feature, char *why, size_t len)
{
        bool have = g->have_mmfr3;
        uint64_t mmfr3 = g->mmfr3;

        if (value == 0) {
                snprintf(why, len, "it holds 0, its reset value");
                return 0;
        }
        if (have && field(mmfr3, shift) == 0) {
                snprintf(why, len, "the guest's ID_AA64MMFR3_EL1 hides %s, so it cannot use the register",
                         feature);
                return 0;
        }
        snprintf(why, len, "the guest's ID_AA64MMFR3_EL1 shows %s and the register holds 0x%llx", feature,
                 (unsigned long long)value);
        return -ENOENT;
}

/* The physical timer's compare state matters only while the guest has the timer enabled. */
static int ptimer(const struct regdiff_guest *g, const char *what, char *why, size_t len)
{
        bool have = g->have_cntp_ctl;
        uint64_t ctl = g->cntp_ctl;

        if (!have || !(ctl & 1)) {
                snprintf(why, len,
                         "the guest's physical timer is disabled (CNTP_CTL_EL0.ENABLE 0), so its %s "
                         "cannot fire",
                         what);
                return 0;
        }
        snprintf(why, len,
                 "the guest's physical timer is enabled (CNTP_CTL_EL0 0x%llx) and the destination "
                 "cannot carry its %s",
                 (unsigned long long)ctl, what);
        return -ENOENT;
}

int regdiff_source_only(const struct regdiff_guest *g, uint64_t id, uint64_t value, char *why, size_t len)
{
        struct kvmreg k;

        if (kvmreg_decode(id, &k, NULL) < 0) {
                snprintf(why, len, "svemig does not know the register");
                return -ENOENT;
        }
        if (k.cls == KVMREG_CLASS_DEMUX)
                return ccsidr(g, k.index, why, len);
        if (id == TCR2_EL1)
                return hidden_by_mmfr3(g, value, 0, "FEAT_TCR2 (TCRX)", why, len);
        if (id == PIRE0_EL1 || id == PIR_EL1)
                return hidden_by_mmfr3(g, value, 8, "FEAT_S1PIE", why, len);
        if (id == CNTP_CTL_EL0)
                return ptimer(g, "control", why, len);
        if (id == CNTP_CVAL_EL0)
                return ptimer(g, "compare value", why, len);
        if (id == KVMREG_PTIMER_CNT) {
                /*
                 * A kernel without it (6.1) gives no way to offset the physical
                 * counter: every guest there reads the host's. The guest's time,
                 * its virtual counter, moves with it (KVMREG_TIMER_CNT).
                 */
                snprintf(why, len,
                         "the destination's kernel cannot offset the physical counter for any guest; "
                         "the guest's virtual counter moves with it");
                return 0;
        }
        snprintf(why, len, "svemig cannot tell that its value does not matter to the guest");
        return -ENOENT;
}
