/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The workload of workload.S, run a fixed number of iterations and then
 * ended: the payload that svemigd runs and live-migrates on the rig
 * (tests/arm64/init, case "live-migrate"). It runs for seconds, so that a
 * migration lands in the middle of it:
 *
 *   every 2^16 iterations    writes the count to MMIO 0x10000 (progress;
 *                            each is an exit, where a throttled vcpu slows)
 *   after COUNTDOWN_ITERS    writes the sum of the buffer's L lanes to MMIO
 *                            0x10008 (the result), then PSCI SYSTEM_OFF
 *
 * With L = VL / 64 lanes and K = COUNTDOWN_ITERS, buf.d[i] = (i+1) * (3^0 +
 * ... + 3^(K-1)) mod 2^64, so the result is L(L+1)/2 times that sum: it
 * depends on every iteration, and on the vector length it ran at throughout
 * (tests/arm64/workload-model.h, workload_result()). Entry as rdvl.S: ZCR_EL1
 * is set by the VMM to the vcpu's maximum VL.
 */
#include "countdown.h"
#include "workload-step.inc"

        .text
        .org    0x800
        .global _start
_start:
        WORKLOAD_SETUP                  /* MMIO at x6: progress, then the result at +8 */
        movz    x0, #(COUNTDOWN_ITERS >> 16), lsl #16
        movk    x0, #(COUNTDOWN_ITERS & 0xffff)
loop:
        WORKLOAD_STEP
        tst     x2, #0xffff
        b.ne    1f
        str     x2, [x6]                /* progress: the count so far */
1:      cmp     x2, x0
        b.ne    loop

        ld1d    {z1.d}, p0/z, [x3]
        uaddv   d2, p0, z1.d            /* the result: the sum of the lanes */
        fmov    x7, d2
        str     x7, [x6, #8]
        movz    x0, #0x0008
        movk    x0, #0x8400, lsl #16    /* PSCI 0.2 SYSTEM_OFF, 0x84000008 */
        hvc     #0
2:      b       2b
