/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A deterministic SVE workload that loops forever over vector and memory
 * state. With L = VL / 64 doubleword lanes, i < L, and iteration k = 1, 2, ...:
 *
 *   before the loop   z0.d[i] = i + 1, p0 = ptrue .d, buffer at 0x2000 zero
 *   each iteration    z1 = buf; z1 += z0; buf = z1; z0 *= 3; x2 = k;
 *                     the counter at 0x3000 = k
 *
 * so after K iterations (mod 2^64) z0.d[i] = (i+1) * 3^K and
 * buf.d[i] = z1.d[i] = (i+1) * (3^0 + ... + 3^(K-1)), and lanes past VL are
 * zero. Each time the count reaches x0 it reports the count by an MMIO write
 * to 0x10000 and goes on; the host may move x0 and resume. Entry as rdvl.S.
 */
#include "workload-step.inc"

        .text
        .org    0x800
        .global _start
_start:
        WORKLOAD_SETUP
loop:
        WORKLOAD_STEP
        cmp     x2, x0
        b.ne    loop
        str     x2, [x6]                /* MMIO exit: the count */
        b       loop
