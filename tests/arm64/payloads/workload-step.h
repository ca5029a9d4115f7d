/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The workload's setup and one iteration, shared by workload.S and
 * countdown.S so that both compute what the host's model
 * (tests/arm64/workload-model.c) says: z0.d[i] = i+1, then per iteration
 * buf += z0, z0 *= 3, and the count stored at 0x3000.
 *   x2 the count, x3 the buffer (0x2000), x4 the counter (0x3000),
 *   x6 the MMIO report address (0x10000).
 */
.macro WORKLOAD_SETUP
        ptrue   p0.d
        index   z0.d, #1, #1
        mov     x2, #0
        mov     x3, #0x2000
        mov     x4, #0x3000
        mov     x6, #0x10000
.endm

.macro WORKLOAD_STEP
        ld1d    {z1.d}, p0/z, [x3]
        add     z1.d, z1.d, z0.d
        st1d    {z1.d}, p0, [x3]
        mul     z0.d, z0.d, #3
        add     x2, x2, #1
        str     x2, [x4]
.endm
