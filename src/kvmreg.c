/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The arm64 KVM ONE_REG ID codec. Every value comes from the kernel's uapi
 * headers (src/kvm-arm64.h); the constants that include/svemig/kvmreg.h
 * exposes are checked against them at build time.
 *
 * One table, regnames[], drives names, parsing, encoding and (for the core
 * and SVE groups) decoding, so that a name and its ID can never disagree.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "kvm-arm64.h"
#include "macro.h"
#include "svemig/kvmreg.h"

/* kvmreg.h mirrors the kernel; the kernel is the authority. */
_Static_assert(KVMREG_ARM64 == KVM_REG_ARM64, "KVMREG_ARM64");
_Static_assert(KVMREG_SIZE_SHIFT == KVM_REG_SIZE_SHIFT, "KVMREG_SIZE_SHIFT");
_Static_assert(KVMREG_SIZE_MASK == KVM_REG_SIZE_MASK, "KVMREG_SIZE_MASK");
_Static_assert(KVMREG_COPROC_SHIFT == KVM_REG_ARM_COPROC_SHIFT, "KVMREG_COPROC_SHIFT");
_Static_assert(KVMREG_COPROC_MASK == KVM_REG_ARM_COPROC_MASK, "KVMREG_COPROC_MASK");
_Static_assert(KVMREG_GROUP_CORE << KVMREG_COPROC_SHIFT == KVM_REG_ARM_CORE, "KVMREG_GROUP_CORE");
_Static_assert(KVMREG_GROUP_DEMUX << KVMREG_COPROC_SHIFT == KVM_REG_ARM_DEMUX, "KVMREG_GROUP_DEMUX");
_Static_assert(KVMREG_GROUP_SYSREG << KVMREG_COPROC_SHIFT == KVM_REG_ARM64_SYSREG, "KVMREG_GROUP_SYSREG");
_Static_assert(KVMREG_GROUP_FW << KVMREG_COPROC_SHIFT == KVM_REG_ARM_FW, "KVMREG_GROUP_FW");
_Static_assert(KVMREG_GROUP_SVE << KVMREG_COPROC_SHIFT == KVM_REG_ARM64_SVE, "KVMREG_GROUP_SVE");
_Static_assert(KVMREG_GROUP_FW_FEAT << KVMREG_COPROC_SHIFT == KVM_REG_ARM_FW_FEAT_BMAP,
               "KVMREG_GROUP_FW_FEAT");
_Static_assert(KVMREG_ZREG_SLICE_BYTES == KVM_REG_SIZE(KVM_REG_ARM64_SVE_ZREG(0, 0)), "Z slice size");
_Static_assert(KVMREG_PREG_SLICE_BYTES == KVM_REG_SIZE(KVM_REG_ARM64_SVE_PREG(0, 0)), "P slice size");
_Static_assert(KVMREG_PREG_SLICE_BYTES == KVM_REG_SIZE(KVM_REG_ARM64_SVE_FFR(0)), "FFR slice size");
_Static_assert(KVMREG_SLICE_MAX == KVM_ARM64_SVE_MAX_SLICES, "KVMREG_SLICE_MAX");
_Static_assert(KVMREG_VLS_BYTES == KVM_REG_SIZE(KVM_REG_ARM64_SVE_VLS), "KVMREG_VLS_BYTES");
_Static_assert(KVMREG_VLS_BYTES == KVM_ARM64_SVE_VLS_WORDS * sizeof(__u64), "VLS words");
_Static_assert(KVMREG_MAX_BYTES == KVM_REG_SIZE(KVM_REG_SIZE_U2048), "KVMREG_MAX_BYTES");
/* The table's index arithmetic: a Z, P or FFR ID is base + n * slices + slice. */
_Static_assert(KVM_REG_ARM64_SVE_ZREG(1, 0) - KVM_REG_ARM64_SVE_ZREG(0, 0) == KVM_ARM64_SVE_MAX_SLICES,
               "Z layout");
_Static_assert(KVM_REG_ARM64_SVE_PREG(1, 0) - KVM_REG_ARM64_SVE_PREG(0, 0) == KVM_ARM64_SVE_MAX_SLICES,
               "P layout");
_Static_assert(KVM_REG_ARM64_SVE_ZREG(0, 1) - KVM_REG_ARM64_SVE_ZREG(0, 0) == 1, "slice layout");
/* Core offsets are in 32-bit words and must fit the 16-bit index. */
_Static_assert(sizeof(struct kvm_regs) / sizeof(__u32) <= 0xffff, "struct kvm_regs too large");
/* A system register's fields fill the low 16 bits exactly. */
_Static_assert((KVM_REG_ARM64_SYSREG_OP0_MASK | KVM_REG_ARM64_SYSREG_OP1_MASK |
                KVM_REG_ARM64_SYSREG_CRN_MASK | KVM_REG_ARM64_SYSREG_CRM_MASK |
                KVM_REG_ARM64_SYSREG_OP2_MASK) == 0xffff,
               "sysreg fields");

/* The low 16 bits of an ID: core offset, sysreg fields, SVE or firmware index. */
#define INDEX_MASK 0xffffull
/* Bits that no arm64 group uses: between the coprocessor group and the size. */
#define RESERVED_MASK (~(KVM_REG_ARCH_MASK | KVM_REG_SIZE_MASK | KVM_REG_ARM_COPROC_MASK | INDEX_MASK))
/* An ID without its size field, so that a table entry matches whatever size an ID claims. */
#define SIZELESS(id) ((id) & ~KVM_REG_SIZE_MASK)

/* The size field of an ID for a register of 'bytes' bytes. */
#define SIZE_FIELD(bytes)                                                                                   \
        ((bytes) == 4    ? KVM_REG_SIZE_U32                                                                 \
         : (bytes) == 8  ? KVM_REG_SIZE_U64                                                                 \
         : (bytes) == 16 ? KVM_REG_SIZE_U128                                                                \
                         : KVM_REG_SIZE_U8 /* no core register: see the assertions below */)

#define MEMBER_SIZE(member) sizeof(((struct kvm_regs *)0)->member)

/* Every core register is 4, 8 or 16 bytes wide, so SIZE_FIELD() covers them. */
_Static_assert(MEMBER_SIZE(regs.regs[0]) == 8 && MEMBER_SIZE(regs.sp) == 8 && MEMBER_SIZE(regs.pc) == 8 &&
                       MEMBER_SIZE(regs.pstate) == 8 && MEMBER_SIZE(sp_el1) == 8 &&
                       MEMBER_SIZE(elr_el1) == 8 && MEMBER_SIZE(spsr[0]) == 8,
               "64-bit core registers");
_Static_assert(MEMBER_SIZE(fp_regs.vregs[0]) == 16, "128-bit V registers");
_Static_assert(MEMBER_SIZE(fp_regs.fpsr) == 4 && MEMBER_SIZE(fp_regs.fpcr) == 4, "32-bit FPSR, FPCR");

/*
 * A family of registers named prefix[index]suffix[[slice]]: the index is
 * printed only when count > 1 (in hex as 0x%04x when hex is set), the slice
 * only when slices > 0. Member k (and slice s) has ID base + k * step + s.
 */
struct regname {
        const char *prefix;
        const char *suffix;
        uint64_t base; /* ID of member 0, slice 0, with its size */
        unsigned count;
        unsigned step;
        unsigned slices;
        bool hex;
        enum kvmreg_class cls; /* KVMREG_CLASS_SYS: any system register, classified by encoding */
};

/* A core register family: a struct kvm_regs member, 'n' consecutive elements of it. */
#define CORE(pfx, sfx, member, n, c)                                                                        \
        {                                                                                                   \
                .prefix = pfx, .suffix = sfx,                                                               \
                .base = KVM_REG_ARM64 | KVM_REG_ARM_CORE | SIZE_FIELD(MEMBER_SIZE(member)) |                \
                        KVM_REG_ARM_CORE_REG(member),                                                       \
                .count = n, .step = MEMBER_SIZE(member) / sizeof(__u32), .cls = c,                          \
        }
#define CORE_ARRAY(pfx, sfx, array, c)                                                                      \
        CORE(pfx, sfx, array[0], MEMBER_SIZE(array) / MEMBER_SIZE(array[0]), c)

#define SVE(pfx, first, n, c)                                                                               \
        {                                                                                                   \
                .prefix = pfx, .suffix = "", .base = first, .count = n, .step = KVM_ARM64_SVE_MAX_SLICES,   \
                .slices = KVM_ARM64_SVE_MAX_SLICES, .cls = c,                                               \
        }

#define SYSREG_ID(op0, op1, crn, crm, op2) ARM64_SYS_REG(op0, op1, crn, crm, op2)
#define SYS(name, op0, op1, crn, crm, op2)                                                                  \
        {                                                                                                   \
                .prefix = name, .suffix = "", .base = SYSREG_ID(op0, op1, crn, crm, op2), .count = 1,       \
                .step = 1, .cls = KVMREG_CLASS_SYS,                                                         \
        }
/* name<k>suffix for k < n, at encodings base + k * step (step in units of the low 16 bits). */
#define SYS_N(name, sfx, op0, op1, crn, crm, op2, n, stp)                                                   \
        {                                                                                                   \
                .prefix = name, .suffix = sfx, .base = SYSREG_ID(op0, op1, crn, crm, op2), .count = n,      \
                .step = stp, .cls = KVMREG_CLASS_SYS,                                                       \
        }
#define ONE(name, id, c)                                                                                    \
        {                                                                                                   \
                .prefix = name, .suffix = "", .base = id, .count = 1, .step = 1, .cls = c,                  \
        }
#define HEX(name, first, n, c)                                                                              \
        {                                                                                                   \
                .prefix = name, .suffix = "]", .base = first, .count = n, .step = 1, .hex = true, .cls = c, \
        }

/* The step between DBGBVR0_EL1 and DBGBVR1_EL1: CRm counts the breakpoint. */
#define CRM_STEP ARM64_SYS_REG_SHIFT_MASK(1, CRM)

/* The table's first entries, in this order: the encoders use them. */
enum {
        RN_X,
        RN_SP,
        RN_PC,
        RN_PSTATE,
        RN_SP_EL1,
        RN_ELR_EL1,
        RN_SPSR,
        RN_V,
        RN_FPSR,
        RN_FPCR,
        RN_Z,
        RN_P,
        RN_FFR,
        RN_VLS,
        RN_FW,
        RN_FW_FEAT,
        RN_DEMUX,
        RN_TIMERS, /* the six timer entries: a system register's decode looks only there */
        RN_TIMERS_END = RN_TIMERS + 6,
};

static const struct regname regnames[] = {
        /* Core: struct kvm_regs. */
        [RN_X] = CORE_ARRAY("x", "", regs.regs, KVMREG_CLASS_CORE),
        [RN_SP] = CORE("sp", "", regs.sp, 1, KVMREG_CLASS_CORE),
        [RN_PC] = CORE("pc", "", regs.pc, 1, KVMREG_CLASS_CORE),
        [RN_PSTATE] = CORE("pstate", "", regs.pstate, 1, KVMREG_CLASS_CORE),
        [RN_SP_EL1] = CORE("sp_el1", "", sp_el1, 1, KVMREG_CLASS_CORE),
        [RN_ELR_EL1] = CORE("elr_el1", "", elr_el1, 1, KVMREG_CLASS_CORE),
        [RN_SPSR] = CORE_ARRAY("spsr[", "]", spsr, KVMREG_CLASS_CORE),
        [RN_V] = CORE_ARRAY("v", "", fp_regs.vregs, KVMREG_CLASS_CORE_FP),
        [RN_FPSR] = CORE("fpsr", "", fp_regs.fpsr, 1, KVMREG_CLASS_CORE_FPCR),
        [RN_FPCR] = CORE("fpcr", "", fp_regs.fpcr, 1, KVMREG_CLASS_CORE_FPCR),

        /* SVE. */
        [RN_Z] = SVE("z", KVM_REG_ARM64_SVE_ZREG(0, 0), KVM_ARM64_SVE_NUM_ZREGS, KVMREG_CLASS_SVE_Z),
        [RN_P] = SVE("p", KVM_REG_ARM64_SVE_PREG(0, 0), KVM_ARM64_SVE_NUM_PREGS, KVMREG_CLASS_SVE_P),
        [RN_FFR] = SVE("ffr", KVM_REG_ARM64_SVE_FFR(0), 1, KVMREG_CLASS_SVE_FFR),
        [RN_VLS] = ONE("SVE_VLS", KVM_REG_ARM64_SVE_VLS, KVMREG_CLASS_SVE_VLS),

        /* Firmware pseudo-registers and CCSIDR values, by index. */
        [RN_FW] = HEX("FW[", KVM_REG_ARM_FW_REG(0), INDEX_MASK + 1, KVMREG_CLASS_FW),
        [RN_FW_FEAT] =
                HEX("FW_FEAT[", KVM_REG_ARM_FW_FEAT_BMAP_REG(0), INDEX_MASK + 1, KVMREG_CLASS_FW_FEAT),
        [RN_DEMUX] = HEX("DEMUX[",
                         KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_DEMUX | KVM_REG_ARM_DEMUX_ID_CCSIDR,
                         KVM_REG_ARM_DEMUX_VAL_MASK + 1, KVMREG_CLASS_DEMUX),

        /*
         * The timers, under KVM's names: the kernel's TIMER_CNT and TIMER_CVAL
         * IDs carry each other's architectural encodings (see asm/kvm.h), so
         * naming them after their encoding would mislead.
         */
        [RN_TIMERS] = ONE("TIMER_CTL", KVM_REG_ARM_TIMER_CTL, KVMREG_CLASS_TIMER),
        ONE("TIMER_CNT", KVM_REG_ARM_TIMER_CNT, KVMREG_CLASS_TIMER),
        ONE("TIMER_CVAL", KVM_REG_ARM_TIMER_CVAL, KVMREG_CLASS_TIMER),
        ONE("PTIMER_CTL", KVM_REG_ARM_PTIMER_CTL, KVMREG_CLASS_TIMER),
        ONE("PTIMER_CNT", KVM_REG_ARM_PTIMER_CNT, KVMREG_CLASS_TIMER),
        [RN_TIMERS_END - 1] = ONE("PTIMER_CVAL", KVM_REG_ARM_PTIMER_CVAL, KVMREG_CLASS_TIMER),

        /* Debug (op0 = 2). */
        SYS("OSDTRRX_EL1", 2, 0, 0, 0, 2),
        SYS("MDCCINT_EL1", 2, 0, 0, 2, 0),
        SYS("MDSCR_EL1", 2, 0, 0, 2, 2),
        SYS("OSDTRTX_EL1", 2, 0, 0, 3, 2),
        SYS("OSECCR_EL1", 2, 0, 0, 6, 2),
        SYS_N("DBGBVR", "_EL1", 2, 0, 0, 0, 4, 16, CRM_STEP),
        SYS_N("DBGBCR", "_EL1", 2, 0, 0, 0, 5, 16, CRM_STEP),
        SYS_N("DBGWVR", "_EL1", 2, 0, 0, 0, 6, 16, CRM_STEP),
        SYS_N("DBGWCR", "_EL1", 2, 0, 0, 0, 7, 16, CRM_STEP),
        SYS("MDRAR_EL1", 2, 0, 1, 0, 0),
        SYS("OSLAR_EL1", 2, 0, 1, 0, 4),
        SYS("OSLSR_EL1", 2, 0, 1, 1, 4),
        SYS("OSDLR_EL1", 2, 0, 1, 3, 4),
        SYS("DBGPRCR_EL1", 2, 0, 1, 4, 4),
        SYS("DBGCLAIMSET_EL1", 2, 0, 7, 8, 6),
        SYS("DBGCLAIMCLR_EL1", 2, 0, 7, 9, 6),
        SYS("DBGAUTHSTATUS_EL1", 2, 0, 7, 14, 6),
        SYS("MDCCSR_EL0", 2, 3, 0, 1, 0),
        SYS("DBGDTR_EL0", 2, 3, 0, 4, 0),
        SYS("DBGDTRRX_EL0", 2, 3, 0, 5, 0),
        SYS("DBGVCR32_EL2", 2, 4, 0, 7, 0),

        /* Identification (op0 = 3, op1 = 0, CRn = 0). */
        SYS("MIDR_EL1", 3, 0, 0, 0, 0),
        SYS("MPIDR_EL1", 3, 0, 0, 0, 5),
        SYS("REVIDR_EL1", 3, 0, 0, 0, 6),
        SYS("ID_PFR0_EL1", 3, 0, 0, 1, 0),
        SYS("ID_PFR1_EL1", 3, 0, 0, 1, 1),
        SYS("ID_DFR0_EL1", 3, 0, 0, 1, 2),
        SYS("ID_AFR0_EL1", 3, 0, 0, 1, 3),
        SYS("ID_MMFR0_EL1", 3, 0, 0, 1, 4),
        SYS("ID_MMFR1_EL1", 3, 0, 0, 1, 5),
        SYS("ID_MMFR2_EL1", 3, 0, 0, 1, 6),
        SYS("ID_MMFR3_EL1", 3, 0, 0, 1, 7),
        SYS("ID_ISAR0_EL1", 3, 0, 0, 2, 0),
        SYS("ID_ISAR1_EL1", 3, 0, 0, 2, 1),
        SYS("ID_ISAR2_EL1", 3, 0, 0, 2, 2),
        SYS("ID_ISAR3_EL1", 3, 0, 0, 2, 3),
        SYS("ID_ISAR4_EL1", 3, 0, 0, 2, 4),
        SYS("ID_ISAR5_EL1", 3, 0, 0, 2, 5),
        SYS("ID_MMFR4_EL1", 3, 0, 0, 2, 6),
        SYS("ID_ISAR6_EL1", 3, 0, 0, 2, 7),
        SYS("MVFR0_EL1", 3, 0, 0, 3, 0),
        SYS("MVFR1_EL1", 3, 0, 0, 3, 1),
        SYS("MVFR2_EL1", 3, 0, 0, 3, 2),
        SYS("ID_PFR2_EL1", 3, 0, 0, 3, 4),
        SYS("ID_DFR1_EL1", 3, 0, 0, 3, 5),
        SYS("ID_MMFR5_EL1", 3, 0, 0, 3, 6),
        SYS("ID_AA64PFR0_EL1", 3, 0, 0, 4, 0),
        SYS("ID_AA64PFR1_EL1", 3, 0, 0, 4, 1),
        SYS("ID_AA64PFR2_EL1", 3, 0, 0, 4, 2),
        SYS("ID_AA64ZFR0_EL1", 3, 0, 0, 4, 4),
        SYS("ID_AA64SMFR0_EL1", 3, 0, 0, 4, 5),
        SYS("ID_AA64FPFR0_EL1", 3, 0, 0, 4, 7),
        SYS("ID_AA64DFR0_EL1", 3, 0, 0, 5, 0),
        SYS("ID_AA64DFR1_EL1", 3, 0, 0, 5, 1),
        SYS("ID_AA64DFR2_EL1", 3, 0, 0, 5, 2),
        SYS("ID_AA64AFR0_EL1", 3, 0, 0, 5, 4),
        SYS("ID_AA64AFR1_EL1", 3, 0, 0, 5, 5),
        SYS("ID_AA64ISAR0_EL1", 3, 0, 0, 6, 0),
        SYS("ID_AA64ISAR1_EL1", 3, 0, 0, 6, 1),
        SYS("ID_AA64ISAR2_EL1", 3, 0, 0, 6, 2),
        SYS("ID_AA64ISAR3_EL1", 3, 0, 0, 6, 3),
        SYS("ID_AA64MMFR0_EL1", 3, 0, 0, 7, 0),
        SYS("ID_AA64MMFR1_EL1", 3, 0, 0, 7, 1),
        SYS("ID_AA64MMFR2_EL1", 3, 0, 0, 7, 2),
        SYS("ID_AA64MMFR3_EL1", 3, 0, 0, 7, 3),
        SYS("ID_AA64MMFR4_EL1", 3, 0, 0, 7, 4),

        /* EL1 system control, translation, exceptions. */
        SYS("SCTLR_EL1", 3, 0, 1, 0, 0),
        SYS("ACTLR_EL1", 3, 0, 1, 0, 1),
        SYS("CPACR_EL1", 3, 0, 1, 0, 2),
        SYS("RGSR_EL1", 3, 0, 1, 0, 5),
        SYS("GCR_EL1", 3, 0, 1, 0, 6),
        SYS("ZCR_EL1", 3, 0, 1, 2, 0),
        SYS("TRFCR_EL1", 3, 0, 1, 2, 1),
        SYS("SMPRI_EL1", 3, 0, 1, 2, 4),
        SYS("SMCR_EL1", 3, 0, 1, 2, 6),
        SYS("TTBR0_EL1", 3, 0, 2, 0, 0),
        SYS("TTBR1_EL1", 3, 0, 2, 0, 1),
        SYS("TCR_EL1", 3, 0, 2, 0, 2),
        SYS("TCR2_EL1", 3, 0, 2, 0, 3),
        SYS("APIAKEYLO_EL1", 3, 0, 2, 1, 0),
        SYS("APIAKEYHI_EL1", 3, 0, 2, 1, 1),
        SYS("APIBKEYLO_EL1", 3, 0, 2, 1, 2),
        SYS("APIBKEYHI_EL1", 3, 0, 2, 1, 3),
        SYS("APDAKEYLO_EL1", 3, 0, 2, 2, 0),
        SYS("APDAKEYHI_EL1", 3, 0, 2, 2, 1),
        SYS("APDBKEYLO_EL1", 3, 0, 2, 2, 2),
        SYS("APDBKEYHI_EL1", 3, 0, 2, 2, 3),
        SYS("APGAKEYLO_EL1", 3, 0, 2, 3, 0),
        SYS("APGAKEYHI_EL1", 3, 0, 2, 3, 1),
        SYS("ICC_PMR_EL1", 3, 0, 4, 6, 0),
        SYS("AFSR0_EL1", 3, 0, 5, 1, 0),
        SYS("AFSR1_EL1", 3, 0, 5, 1, 1),
        SYS("ESR_EL1", 3, 0, 5, 2, 0),
        SYS("ERRIDR_EL1", 3, 0, 5, 3, 0),
        SYS("ERRSELR_EL1", 3, 0, 5, 3, 1),
        SYS("TFSR_EL1", 3, 0, 5, 6, 0),
        SYS("TFSRE0_EL1", 3, 0, 5, 6, 1),
        SYS("FAR_EL1", 3, 0, 6, 0, 0),
        SYS("PAR_EL1", 3, 0, 7, 4, 0),
        SYS("PMINTENSET_EL1", 3, 0, 9, 14, 1),
        SYS("PMINTENCLR_EL1", 3, 0, 9, 14, 2),
        SYS("PMMIR_EL1", 3, 0, 9, 14, 6),
        SYS("MAIR_EL1", 3, 0, 10, 2, 0),
        SYS("PIRE0_EL1", 3, 0, 10, 2, 2),
        SYS("PIR_EL1", 3, 0, 10, 2, 3),
        SYS("POR_EL1", 3, 0, 10, 2, 4),
        SYS("AMAIR_EL1", 3, 0, 10, 3, 0),
        SYS("LORSA_EL1", 3, 0, 10, 4, 0),
        SYS("LOREA_EL1", 3, 0, 10, 4, 1),
        SYS("LORN_EL1", 3, 0, 10, 4, 2),
        SYS("LORC_EL1", 3, 0, 10, 4, 3),
        SYS("LORID_EL1", 3, 0, 10, 4, 7),
        SYS("VBAR_EL1", 3, 0, 12, 0, 0),
        SYS("DISR_EL1", 3, 0, 12, 1, 1),
        SYS("ICC_BPR0_EL1", 3, 0, 12, 8, 3),
        SYS("ICC_BPR1_EL1", 3, 0, 12, 12, 3),
        SYS("ICC_CTLR_EL1", 3, 0, 12, 12, 4),
        SYS("ICC_SRE_EL1", 3, 0, 12, 12, 5),
        SYS("ICC_IGRPEN0_EL1", 3, 0, 12, 12, 6),
        SYS("ICC_IGRPEN1_EL1", 3, 0, 12, 12, 7),
        SYS("CONTEXTIDR_EL1", 3, 0, 13, 0, 1),
        SYS("TPIDR_EL1", 3, 0, 13, 0, 4),
        SYS("ACCDATA_EL1", 3, 0, 13, 0, 5),
        SYS("SCXTNUM_EL1", 3, 0, 13, 0, 7),
        SYS("CNTKCTL_EL1", 3, 0, 14, 1, 0),

        /* Cache identification and selection. */
        SYS("CCSIDR_EL1", 3, 1, 0, 0, 0),
        SYS("CLIDR_EL1", 3, 1, 0, 0, 1),
        SYS("CCSIDR2_EL1", 3, 1, 0, 0, 2),
        SYS("GMID_EL1", 3, 1, 0, 0, 4),
        SYS("SMIDR_EL1", 3, 1, 0, 0, 6),
        SYS("AIDR_EL1", 3, 1, 0, 0, 7),
        SYS("CSSELR_EL1", 3, 2, 0, 0, 0),
        SYS("CTR_EL0", 3, 3, 0, 0, 1),
        SYS("DCZID_EL0", 3, 3, 0, 0, 7),

        /* PMU (EL0 view). */
        SYS("PMCR_EL0", 3, 3, 9, 12, 0),
        SYS("PMCNTENSET_EL0", 3, 3, 9, 12, 1),
        SYS("PMCNTENCLR_EL0", 3, 3, 9, 12, 2),
        SYS("PMOVSCLR_EL0", 3, 3, 9, 12, 3),
        SYS("PMSWINC_EL0", 3, 3, 9, 12, 4),
        SYS("PMSELR_EL0", 3, 3, 9, 12, 5),
        SYS("PMCEID0_EL0", 3, 3, 9, 12, 6),
        SYS("PMCEID1_EL0", 3, 3, 9, 12, 7),
        SYS("PMCCNTR_EL0", 3, 3, 9, 13, 0),
        SYS("PMXEVTYPER_EL0", 3, 3, 9, 13, 1),
        SYS("PMXEVCNTR_EL0", 3, 3, 9, 13, 2),
        SYS("PMUSERENR_EL0", 3, 3, 9, 14, 0),
        SYS("PMOVSSET_EL0", 3, 3, 9, 14, 3),
        /* PMEVCNTR<n>_EL0 is (3,3,14,8+n/8,n%8): CRm:op2 count n. */
        SYS_N("PMEVCNTR", "_EL0", 3, 3, 14, 8, 0, 31, 1),
        SYS_N("PMEVTYPER", "_EL0", 3, 3, 14, 12, 0, 31, 1),
        SYS("PMCCFILTR_EL0", 3, 3, 14, 15, 7),

        /* EL0 thread registers and the rest of the generic timer. */
        SYS("TPIDR_EL0", 3, 3, 13, 0, 2),
        SYS("TPIDRRO_EL0", 3, 3, 13, 0, 3),
        SYS("TPIDR2_EL0", 3, 3, 13, 0, 5),
        SYS("SCXTNUM_EL0", 3, 3, 13, 0, 7),
        SYS("CNTFRQ_EL0", 3, 3, 14, 0, 0),
        SYS("CNTP_TVAL_EL0", 3, 3, 14, 2, 0),
        SYS("CNTV_TVAL_EL0", 3, 3, 14, 3, 0),

        /* AArch32 state kept at EL2 for a 32-bit EL0/EL1. */
        SYS("DACR32_EL2", 3, 4, 3, 0, 0),
        SYS("IFSR32_EL2", 3, 4, 5, 0, 1),
        SYS("FPEXC32_EL2", 3, 4, 5, 3, 0),
};

struct class_info {
        const char *name;
        int rank;
};

/*
 * Restore order (kvmreg.h): VLS before finalize; firmware and ID registers
 * first so that an incompatible host is refused before any state moves;
 * timers last because writing TIMER_CNT moves the guest's virtual counter.
 * A newer kernel's unknown registers go just before the timers.
 */
static const struct class_info classes[_KVMREG_CLASS_MAX] = {
        [KVMREG_CLASS_SVE_VLS] = {"sve-vls", 0}, [KVMREG_CLASS_FW] = {"fw", 1},
        [KVMREG_CLASS_FW_FEAT] = {"fw-feat", 1}, [KVMREG_CLASS_SYS_ID] = {"sys-id", 2},
        [KVMREG_CLASS_SYS] = {"sys", 3},         [KVMREG_CLASS_CORE] = {"core", 4},
        [KVMREG_CLASS_CORE_FP] = {"core-fp", 5}, [KVMREG_CLASS_CORE_FPCR] = {"core-fpcr", 5},
        [KVMREG_CLASS_SVE_Z] = {"sve-z", 6},     [KVMREG_CLASS_SVE_P] = {"sve-p", 6},
        [KVMREG_CLASS_SVE_FFR] = {"sve-ffr", 6}, [KVMREG_CLASS_DEMUX] = {"demux", 7},
        [KVMREG_CLASS_UNKNOWN] = {"unknown", 8}, [KVMREG_CLASS_TIMER] = {"timer", 9},
};

const char *kvmreg_class_name(enum kvmreg_class cls)
{
        if ((unsigned)cls >= _KVMREG_CLASS_MAX)
                return "invalid";
        return classes[cls].name;
}

int kvmreg_restore_rank(enum kvmreg_class cls)
{
        if ((unsigned)cls >= _KVMREG_CLASS_MAX)
                return -EINVAL;
        return classes[cls].rank;
}

/* The ID of member k, slice s of a family. */
static uint64_t regname_id(const struct regname *e, unsigned k, unsigned s)
{
        if (k >= e->count || s >= MAX(e->slices, 1u))
                return 0;
        return e->base + (uint64_t)k * e->step + s;
}

/* The family among entries [first, end) an ID (of any size) belongs to, with its member and slice. */
static const struct regname *regname_search(size_t first, size_t end, uint64_t id, unsigned *ret_k,
                                            unsigned *ret_s)
{
        for (size_t i = first; i < end; i++) {
                const struct regname *e = &regnames[i];
                uint64_t base = SIZELESS(e->base), sid = SIZELESS(id), off, k, s;

                /* The range test first: a division per table entry was most of a decode. */
                if (sid < base || sid - base >= (uint64_t)e->count * e->step)
                        continue;
                off = sid - base;
                k = off / e->step;
                s = off % e->step;
                if (s >= MAX(e->slices, 1u))
                        continue;
                if (ret_k)
                        *ret_k = (unsigned)k;
                if (ret_s)
                        *ret_s = (unsigned)s;
                return e;
        }
        return NULL;
}

static const struct regname *regname_find(uint64_t id, unsigned *ret_k, unsigned *ret_s)
{
        return regname_search(0, ELEMENTSOF(regnames), id, ret_k, ret_s);
}

uint64_t kvmreg_zreg(unsigned n, unsigned slice)
{
        return regname_id(&regnames[RN_Z], n, slice);
}

uint64_t kvmreg_preg(unsigned n, unsigned slice)
{
        return regname_id(&regnames[RN_P], n, slice);
}

uint64_t kvmreg_ffr(unsigned slice)
{
        return regname_id(&regnames[RN_FFR], 0, slice);
}

uint64_t kvmreg_vls(void)
{
        return regnames[RN_VLS].base;
}

uint64_t kvmreg_sys(unsigned op0, unsigned op1, unsigned crn, unsigned crm, unsigned op2)
{
        /* The kernel's macro masks each field; an out-of-range one would alias another register. */
        if (op0 > 3 || op1 > 7 || crn > 15 || crm > 15 || op2 > 7)
                return 0;
        return SYSREG_ID((uint64_t)op0, (uint64_t)op1, (uint64_t)crn, (uint64_t)crm, (uint64_t)op2);
}

uint64_t kvmreg_core_x(unsigned n)
{
        return regname_id(&regnames[RN_X], n, 0);
}

uint64_t kvmreg_core_sp(void)
{
        return regnames[RN_SP].base;
}

uint64_t kvmreg_core_pc(void)
{
        return regnames[RN_PC].base;
}

uint64_t kvmreg_core_pstate(void)
{
        return regnames[RN_PSTATE].base;
}

uint64_t kvmreg_core_vreg(unsigned n)
{
        return regname_id(&regnames[RN_V], n, 0);
}

uint64_t kvmreg_core_fpsr(void)
{
        return regnames[RN_FPSR].base;
}

uint64_t kvmreg_core_fpcr(void)
{
        return regnames[RN_FPCR].base;
}

uint64_t kvmreg_core_sp_el1(void)
{
        return regnames[RN_SP_EL1].base;
}

uint64_t kvmreg_core_elr_el1(void)
{
        return regnames[RN_ELR_EL1].base;
}

uint64_t kvmreg_core_spsr(unsigned n)
{
        return regname_id(&regnames[RN_SPSR], n, 0);
}

uint64_t kvmreg_fw(unsigned index)
{
        return regname_id(&regnames[RN_FW], index, 0);
}

uint64_t kvmreg_fw_feat(unsigned index)
{
        return regname_id(&regnames[RN_FW_FEAT], index, 0);
}

uint64_t kvmreg_demux_ccsidr(unsigned csselr)
{
        return regname_id(&regnames[RN_DEMUX], csselr, 0);
}

/* Formats a family member's name; returns the length like snprintf. */
static int regname_format(const struct regname *e, unsigned k, unsigned s, char *buf, size_t len)
{
        char index[16] = "", slice[16] = "";

        if (e->count > 1)
                snprintf(index, sizeof(index), e->hex ? "0x%04x" : "%u", k);
        if (e->slices > 0)
                snprintf(slice, sizeof(slice), "[%u]", s);
        return snprintf(buf, len, "%s%s%s%s", e->prefix, index, e->suffix, slice);
}

static void sysreg_fields(uint64_t id, struct kvmreg *r)
{
        r->op0 = (id & KVM_REG_ARM64_SYSREG_OP0_MASK) >> KVM_REG_ARM64_SYSREG_OP0_SHIFT;
        r->op1 = (id & KVM_REG_ARM64_SYSREG_OP1_MASK) >> KVM_REG_ARM64_SYSREG_OP1_SHIFT;
        r->crn = (id & KVM_REG_ARM64_SYSREG_CRN_MASK) >> KVM_REG_ARM64_SYSREG_CRN_SHIFT;
        r->crm = (id & KVM_REG_ARM64_SYSREG_CRM_MASK) >> KVM_REG_ARM64_SYSREG_CRM_SHIFT;
        r->op2 = (id & KVM_REG_ARM64_SYSREG_OP2_MASK) >> KVM_REG_ARM64_SYSREG_OP2_SHIFT;
}

/* The size of an ID's size field, for messages. */
static unsigned size_field(uint64_t id)
{
        return (unsigned)((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT);
}

static int decode_sysreg(uint64_t id, struct kvmreg *r, struct svemig_error *err)
{
        const struct regname *e;

        sysreg_fields(id, r);
        if (kvmreg_size(id) != sizeof(__u64))
                return svemig_error_set(
                        err, EINVAL,
                        "register 0x%016" PRIx64 ": system register S%u_%u_C%u_C%u_%u is 8 bytes "
                        "wide (size field 3), but the ID's size field %u says %u bytes",
                        id, r->op0, r->op1, r->crn, r->crm, r->op2, size_field(id), kvmreg_size(id));

        /* Not the whole table: every restore decodes every register of every vcpu in the pause. */
        e = regname_search(RN_TIMERS, RN_TIMERS_END, id, NULL, NULL);
        if (e && e->cls == KVMREG_CLASS_TIMER)
                r->cls = KVMREG_CLASS_TIMER;
        else if (r->op0 == 3 && r->op1 == 0 && r->crn == 0)
                r->cls = KVMREG_CLASS_SYS_ID;
        else
                r->cls = KVMREG_CLASS_SYS;
        return 0;
}

/*
 * Core and SVE registers: the table is the decoder. 'what' says, for the
 * error, which indexes the group has.
 */
static int decode_by_table(uint64_t id, struct kvmreg *r, const char *what, struct svemig_error *err)
{
        const struct regname *e;
        char name[64];
        unsigned k, s;

        e = regname_find(id, &k, &s);
        if (!e)
                return svemig_error_set(err, EINVAL,
                                        "register 0x%016" PRIx64 ": index 0x%04" PRIx64 " is not %s", id,
                                        (uint64_t)(id & INDEX_MASK), what);

        /* The name only for the reason: decoding is on the path of every restore. */
        if (size_field(id) != size_field(e->base)) {
                regname_format(e, k, s, name, sizeof(name));
                return svemig_error_set(err, EINVAL,
                                        "register 0x%016" PRIx64
                                        ": %s is %u bytes wide (size field %u), but the "
                                        "ID's size field %u says %u bytes",
                                        id, name, kvmreg_size(e->base), size_field(e->base), size_field(id),
                                        kvmreg_size(id));
        }

        r->cls = e->cls;
        switch (e->cls) {
        case KVMREG_CLASS_CORE:
        case KVMREG_CLASS_CORE_FP:
        case KVMREG_CLASS_CORE_FPCR:
                r->core_off = (unsigned)(id & INDEX_MASK);
                r->n = k;
                break;
        case KVMREG_CLASS_SVE_Z:
        case KVMREG_CLASS_SVE_P:
        case KVMREG_CLASS_SVE_FFR:
                r->n = k;
                r->slice = s;
                break;
        default:
                r->index = (unsigned)(id & INDEX_MASK);
                break;
        }
        return 0;
}

int kvmreg_decode(uint64_t id, struct kvmreg *out, struct svemig_error *err)
{
        struct kvmreg r = {.id = id, .cls = KVMREG_CLASS_UNKNOWN, .size = kvmreg_size(id)};
        unsigned group = (unsigned)((id & KVM_REG_ARM_COPROC_MASK) >> KVM_REG_ARM_COPROC_SHIFT);
        int rc;

        if ((id & KVM_REG_ARCH_MASK) != KVM_REG_ARM64)
                return svemig_error_set(err, EINVAL,
                                        "register 0x%016" PRIx64 " is not an arm64 KVM register ID: its "
                                        "architecture byte is 0x%02" PRIx64 ", arm64's is 0x%02" PRIx64,
                                        id, (uint64_t)((id & KVM_REG_ARCH_MASK) >> 56),
                                        (uint64_t)(KVM_REG_ARM64 >> 56));
        if (r.size > KVMREG_MAX_BYTES)
                return svemig_error_set(err, EINVAL,
                                        "register 0x%016" PRIx64
                                        ": size field %u means %u bytes, more than the "
                                        "widest arm64 register (%u bytes, a Z slice)",
                                        id, size_field(id), r.size, KVMREG_MAX_BYTES);

        switch (group) {
        case KVMREG_GROUP_CORE:
        case KVMREG_GROUP_SVE:
        case KVMREG_GROUP_SYSREG:
        case KVMREG_GROUP_FW:
        case KVMREG_GROUP_FW_FEAT:
        case KVMREG_GROUP_DEMUX:
                if (id & RESERVED_MASK)
                        return svemig_error_set(err, EINVAL,
                                                "register 0x%016" PRIx64 ": bits 0x%016" PRIx64
                                                " are set, but no arm64 register group uses them",
                                                id, (uint64_t)(id & RESERVED_MASK));
                break;
        default:
                /* A newer kernel's group: keep it, so that it survives a round trip. */
                r.index = (unsigned)(id & INDEX_MASK);
                goto done;
        }

        switch (group) {
        case KVMREG_GROUP_SYSREG:
                rc = decode_sysreg(id, &r, err);
                break;
        case KVMREG_GROUP_CORE:
                rc = decode_by_table(id, &r, "the start of a register in struct kvm_regs (in 32-bit words)",
                                     err);
                break;
        case KVMREG_GROUP_SVE:
                rc = decode_by_table(id, &r,
                                     "a Z (0x0000-0x03ff), P (0x0400-0x05ff), FFR (0x0600-0x061f) or VLS "
                                     "(0xffff) register",
                                     err);
                break;
        case KVMREG_GROUP_DEMUX:
                if ((id & KVM_REG_ARM_DEMUX_ID_MASK) != KVM_REG_ARM_DEMUX_ID_CCSIDR) {
                        /* Only CCSIDR is defined; a newer one is kept as unknown. */
                        r.index = (unsigned)(id & INDEX_MASK);
                        rc = 0;
                        break;
                }
                rc = decode_by_table(id, &r, "a CCSIDR value", err);
                break;
        default: /* FW, FW_FEAT: every index is valid. */
                rc = decode_by_table(id, &r, "a firmware register", err);
                break;
        }
        if (rc < 0)
                return rc;
done:
        if (out)
                *out = r;
        return 0;
}

int kvmreg_name(uint64_t id, char *buf, size_t len)
{
        const struct regname *e;
        struct kvmreg r;
        unsigned k, s;

        if (kvmreg_decode(id, &r, NULL) < 0 || r.cls == KVMREG_CLASS_UNKNOWN)
                return snprintf(buf, len, "REG_0x%016" PRIx64, id);

        e = regname_find(id, &k, &s);
        if (e)
                return regname_format(e, k, s, buf, len);

        /* Only a system register can lack a table entry. */
        return snprintf(buf, len, "S%u_%u_C%u_C%u_%u", r.op0, r.op1, r.crn, r.crm, r.op2);
}

/*
 * Reads a decimal (or, with hex, "0x"-prefixed hexadecimal) number of at most
 * 'max' at *p, advancing *p. Returns 1 when there was a number (and sets
 * *overflow when it exceeds max), 0 when there was none.
 */
static int parse_number(const char **p, bool hex, unsigned long max, unsigned *ret, bool *overflow)
{
        const char *s = *p;
        unsigned long v = 0;
        unsigned digits = 0;

        if (hex) {
                if (s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
                        return 0;
                s += 2;
        }
        for (; hex ? isxdigit((unsigned char)*s) : isdigit((unsigned char)*s); s++, digits++) {
                unsigned d = isdigit((unsigned char)*s) ? (unsigned)(*s - '0')
                                                        : (unsigned)(tolower((unsigned char)*s) - 'a' + 10);
                if (v <= max)
                        v = v * (hex ? 16 : 10) + d;
        }
        if (digits == 0)
                return 0;
        *overflow = v > max;
        *ret = (unsigned)MIN(v, max);
        *p = s;
        return 1;
}

/* Consumes a case-insensitive literal at *p. */
static bool parse_literal(const char **p, const char *lit)
{
        size_t n = strlen(lit);

        if (strncasecmp(*p, lit, n) != 0)
                return false;
        *p += n;
        return true;
}

/* Matches a whole name against a family: 1 and *id on a match, 0 if not, <0 when an index is out of range.
 */
static int regname_parse(const struct regname *e, const char *name, uint64_t *id, struct svemig_error *err)
{
        const char *p = name;
        unsigned k = 0, s = 0;
        bool over_k = false, over_s = false;

        if (!parse_literal(&p, e->prefix))
                return 0;
        if (e->count > 1 && !parse_number(&p, e->hex, e->count - 1, &k, &over_k))
                return 0;
        if (!parse_literal(&p, e->suffix))
                return 0;
        if (e->slices > 0 &&
            (!parse_literal(&p, "[") || !parse_number(&p, false, e->slices - 1, &s, &over_s) ||
             !parse_literal(&p, "]")))
                return 0;
        if (*p != '\0')
                return 0;

        if (over_k)
                return svemig_error_set(
                        err, EINVAL,
                        e->hex ? "register name '%s': %s...%s takes an index from 0x0 to 0x%x"
                               : "register name '%s': %s...%s takes an index from 0 to %u",
                        name, e->prefix, e->suffix, e->count - 1);
        if (over_s)
                return svemig_error_set(err, EINVAL, "register name '%s': the slice must be 0..%u", name,
                                        e->slices - 1);
        *id = regname_id(e, k, s);
        return 1;
}

/* "S<op0>_<op1>_C<crn>_C<crm>_<op2>": 1 on a match, 0 if not the form, <0 when a field is out of range. */
static int parse_sysreg_form(const char *name, uint64_t *id, struct svemig_error *err)
{
        static const struct {
                const char *lead;
                const char *field;
                unsigned max;
        } fields[] = {
                {"S", "op0", 3}, {"_", "op1", 7}, {"_C", "CRn", 15}, {"_C", "CRm", 15}, {"_", "op2", 7},
        };
        unsigned v[ELEMENTSOF(fields)];
        const char *p = name;

        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                bool over = false;

                if (!parse_literal(&p, fields[i].lead) ||
                    !parse_number(&p, false, fields[i].max, &v[i], &over))
                        return 0;
                if (over)
                        return svemig_error_set(err, EINVAL, "register name '%s': %s must be 0..%u", name,
                                                fields[i].field, fields[i].max);
        }
        if (*p != '\0')
                return 0;
        *id = kvmreg_sys(v[0], v[1], v[2], v[3], v[4]);
        return 1;
}

int kvmreg_parse(const char *name, uint64_t *id, struct svemig_error *err)
{
        const char *p = name;
        uint64_t v = 0;
        int r;

        if (!name)
                return svemig_error_set(err, EINVAL, "no register name given");

        for (size_t i = 0; i < ELEMENTSOF(regnames); i++) {
                r = regname_parse(&regnames[i], name, &v, err);
                if (r != 0)
                        goto out;
        }

        r = parse_sysreg_form(name, &v, err);
        if (r != 0)
                goto out;

        if (parse_literal(&p, "REG_0x")) {
                char *end;

                errno = 0;
                v = strtoull(p, &end, 16);
                if (isxdigit((unsigned char)*p) && *end == '\0' && errno == 0 && end - p <= 16) {
                        r = kvmreg_decode(v, NULL, err);
                        if (r < 0)
                                return err ? svemig_error_prefix(err, "register name '%s'", name) : r;
                        r = 1;
                        goto out;
                }
        }

        return svemig_error_set(
                err, EINVAL,
                "'%s' is not an arm64 KVM register name: use x0..x30, sp, pc, pstate, sp_el1, "
                "elr_el1, spsr[0..4], v0..v31, fpsr, fpcr, z0..z31[slice], p0..p15[slice], "
                "ffr[slice], SVE_VLS, a system register (ZCR_EL1, or S<op0>_<op1>_C<n>_C<m>_<op2>), "
                "TIMER_CTL, TIMER_CNT, TIMER_CVAL, PTIMER_*, FW[0x<n>], FW_FEAT[0x<n>], "
                "DEMUX[0x<n>] or REG_0x<id>",
                name);
out:
        if (r < 0)
                return r;
        if (id)
                *id = v;
        return 0;
}
