/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The arm64 KVM ONE_REG register IDs: encode, decode, size, names and the
 * class that decides restore order. IDs are the kernel's stable ABI, so
 * streams key registers on them; nothing here narrows a register to u64.
 *
 * The field values below mirror the kernel's arm64 uapi <asm/kvm.h>; the
 * codec checks them at build time against the imported kernel headers
 * (src/uapi/, refreshed by scripts/update-kvm-headers.sh).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"

#define KVMREG_ARM64         0x6000000000000000ull
#define KVMREG_SIZE_SHIFT    52
#define KVMREG_SIZE_MASK     0x00f0000000000000ull
#define KVMREG_COPROC_SHIFT  16
#define KVMREG_COPROC_MASK   0x000000000fff0000ull
#define KVMREG_GROUP_CORE    0x0010u
#define KVMREG_GROUP_DEMUX   0x0011u
#define KVMREG_GROUP_SYSREG  0x0013u
#define KVMREG_GROUP_FW      0x0014u
#define KVMREG_GROUP_SVE     0x0015u
#define KVMREG_GROUP_FW_FEAT 0x0016u

/* Slices: a Z slice is 2048 bits, a P or FFR slice 256 bits. */
#define KVMREG_ZREG_SLICE_BYTES 256u
#define KVMREG_PREG_SLICE_BYTES 32u
#define KVMREG_SLICE_MAX        32u
#define KVMREG_VLS_BYTES        64u

/* The widest register: a Z slice. */
#define KVMREG_MAX_BYTES 256u

enum kvmreg_class {
        KVMREG_CLASS_UNKNOWN = 0,
        KVMREG_CLASS_CORE,      /* x0..x30, sp, pc, pstate, sp_el1, elr_el1, spsr[] */
        KVMREG_CLASS_CORE_FP,   /* fp_regs.vregs[0..31]: absent on an SVE vcpu */
        KVMREG_CLASS_CORE_FPCR, /* fp_regs.fpsr, fp_regs.fpcr */
        KVMREG_CLASS_SVE_VLS,   /* KVM_REG_ARM64_SVE_VLS: before finalize */
        KVMREG_CLASS_SVE_Z,
        KVMREG_CLASS_SVE_P,
        KVMREG_CLASS_SVE_FFR,
        KVMREG_CLASS_FW,      /* group 0x0014: PSCI version, SMCCC workarounds */
        KVMREG_CLASS_FW_FEAT, /* group 0x0016: firmware feature bitmaps */
        KVMREG_CLASS_SYS_ID,  /* ID registers (op0=3, op1=0, CRn=0): host invariants */
        KVMREG_CLASS_SYS,     /* other system registers */
        KVMREG_CLASS_TIMER,   /* KVM_REG_ARM_TIMER_CTL/CNT/CVAL and the 6.12 ptimer ones */
        KVMREG_CLASS_DEMUX,   /* group 0x0011: CCSIDR values */
        _KVMREG_CLASS_MAX,
};

struct kvmreg {
        uint64_t id;
        enum kvmreg_class cls;
        unsigned size; /* bytes, from the ID */
        /* Decoded fields; which are meaningful depends on cls. */
        unsigned core_off; /* CORE*: offset in struct kvm_regs, in 32-bit words */
        unsigned n;        /* SVE_Z/P: register number; CORE: x index, spsr index or v index */
        unsigned slice;    /* SVE_Z/P/FFR */
        unsigned op0, op1, crn, crm, op2; /* SYS*, TIMER */
        unsigned index;                   /* FW, FW_FEAT, DEMUX: the low 16 bits */
};

/* Bytes of a register, from bits 52..55 of its ID: 1 << size field. */
static inline unsigned kvmreg_size(uint64_t id)
{
        return 1u << ((id & KVMREG_SIZE_MASK) >> KVMREG_SIZE_SHIFT);
}

/*
 * Encoders. Each returns 0, an ID that kvmreg_decode() rejects, for an
 * argument out of range (the kernel's macros would mask it into another
 * register's ID instead).
 */
uint64_t kvmreg_zreg(unsigned n, unsigned slice);
uint64_t kvmreg_preg(unsigned n, unsigned slice);
uint64_t kvmreg_ffr(unsigned slice);
uint64_t kvmreg_vls(void);
uint64_t kvmreg_sys(unsigned op0, unsigned op1, unsigned crn, unsigned crm, unsigned op2);
uint64_t kvmreg_core_x(unsigned n); /* x0..x30 */
uint64_t kvmreg_core_sp(void);
uint64_t kvmreg_core_pc(void);
uint64_t kvmreg_core_pstate(void);
uint64_t kvmreg_core_vreg(unsigned n); /* fp_regs.vregs[n], U128 */
uint64_t kvmreg_core_fpsr(void);
uint64_t kvmreg_core_fpcr(void);
uint64_t kvmreg_core_sp_el1(void);
uint64_t kvmreg_core_elr_el1(void);
uint64_t kvmreg_core_spsr(unsigned n);         /* spsr[0..4] */
uint64_t kvmreg_fw(unsigned index);            /* group 0x0014, index 0..0xffff */
uint64_t kvmreg_fw_feat(unsigned index);       /* group 0x0016, index 0..0xffff */
uint64_t kvmreg_demux_ccsidr(unsigned csselr); /* group 0x0011, CCSIDR for CSSELR value 0..0xff */

/* Well-known system registers. */
#define KVMREG_ZCR_EL1          kvmreg_sys(3, 0, 1, 2, 0)
#define KVMREG_CPACR_EL1        kvmreg_sys(3, 0, 1, 0, 2)
#define KVMREG_ID_AA64PFR0_EL1  kvmreg_sys(3, 0, 0, 4, 0)
#define KVMREG_ID_AA64ZFR0_EL1  kvmreg_sys(3, 0, 0, 4, 4)
#define KVMREG_ID_AA64MMFR1_EL1 kvmreg_sys(3, 0, 0, 7, 1)
/* Among the ID registers by encoding, but the vcpu's own (its affinity), set by userspace. */
#define KVMREG_MPIDR_EL1 kvmreg_sys(3, 0, 0, 0, 5)
/* The counters: KVM_REG_ARM_TIMER_CNT and (6.12) KVM_REG_ARM_PTIMER_CNT, encodings swapped in the uapi. */
#define KVMREG_TIMER_CNT  kvmreg_sys(3, 3, 14, 3, 2)
#define KVMREG_PTIMER_CNT kvmreg_sys(3, 3, 14, 0, 1)

/*
 * Decodes any arm64 ONE_REG ID. Returns 0, or -EINVAL (with a reason) for an
 * ID that is not arm64, has a bad size for its class, or whose fields are out
 * of range. Unknown groups decode as KVMREG_CLASS_UNKNOWN with rc 0 so that
 * a newer kernel's registers survive a round trip (so do demux IDs other than
 * CCSIDR). Any ID wider than KVMREG_MAX_BYTES is refused. 'out' is written
 * only on success; it may be NULL.
 */
int kvmreg_decode(uint64_t id, struct kvmreg *out, struct svemig_error *err);

/*
 * A readable name that kvmreg_parse() turns back into the same ID:
 * "x3", "sp", "pc", "pstate", "sp_el1", "elr_el1", "spsr[2]", "v7", "fpsr",
 * "fpcr", "z3[0]", "p15[0]", "ffr[0]", "SVE_VLS", "ZCR_EL1" (named system
 * registers), "S3_0_C1_C2_0" (others), "TIMER_CNT", "FW[0x0000]",
 * "FW_FEAT[0x0001]", "DEMUX[0x0003]", and "REG_0x<id>" for unknown IDs.
 * Returns the length like snprintf. kvmreg_parse() ignores case and also
 * accepts "S<op0>_<op1>_C<n>_C<m>_<op2>" for named system registers and
 * "REG_0x<id>" for any ID that kvmreg_decode() accepts; it fails with
 * -EINVAL and a reason that lists the accepted forms.
 */
int kvmreg_name(uint64_t id, char *buf, size_t len);
int kvmreg_parse(const char *name, uint64_t *id, struct svemig_error *err);

const char *kvmreg_class_name(enum kvmreg_class cls);

/*
 * The restore rank of a class: registers are written in ascending rank.
 * VLS comes before finalize; firmware and ID registers before the rest so
 * that an incompatible host is refused early; timers last, as QEMU does,
 * because writing TIMER_CNT moves the guest's virtual counter. A newer
 * kernel's unknown registers go just before the timers. Classes of equal rank
 * (FW and FW_FEAT; CORE_FP and CORE_FPCR; SVE Z, P and FFR) may be written in
 * any order. Returns -EINVAL for a value that is not a class.
 */
int kvmreg_restore_rank(enum kvmreg_class cls);
