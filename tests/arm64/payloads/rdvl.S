/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A bare EL1 payload that reports its SVE vector length: it writes RDVL (in
 * bits) to the MMIO address 0x10000, just past its 64 KiB of RAM, then turns
 * the VM off with PSCI SYSTEM_OFF.
 *
 * Loaded at IPA 0 and entered at 0x800 in EL1h (pstate 0x3c5) with SVE
 * enabled: CPACR_EL1 = 0x330000 (FPEN, ZEN), ZCR_EL1.LEN = 0xf so that the
 * vector length is the vcpu's maximum (tests/arm64/payload-run.c sets these).
 */
        .text
        .org    0x800
        .global _start
_start:
        rdvl    x0, #1                  /* VL in bytes */
        lsl     x0, x0, #3
        mov     x6, #0x10000
        str     x0, [x6]                /* MMIO exit: the VL in bits */
        movz    x0, #0x0008
        movk    x0, #0x8400, lsl #16    /* PSCI 0.2 SYSTEM_OFF, 0x84000008 */
        hvc     #0
1:      b       1b
