/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The host's model of tests/arm64/payloads/workload.S: where it keeps its
 * state and what that state is after k iterations at a vector length of vq
 * quadwords (L = 2 * vq doubleword lanes). Shared by the rig programs that
 * run it (payload-run.c on bare hv, snapshot-run.c through guest/snapshot).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WORKLOAD_RAM_SIZE    (64u * 1024) /* RAM at IPA 0 */
#define WORKLOAD_ENTRY       0x800u
#define WORKLOAD_BUF_GPA     0x2000u  /* the vector buffer */
#define WORKLOAD_COUNT_GPA   0x3000u  /* the iteration counter */
#define WORKLOAD_MMIO_REPORT 0x10000u /* the count is written here when it reaches x0 */
#define WORKLOAD_X_STOP      0        /* x0: the count at which to report */
#define WORKLOAD_X_COUNT     2        /* x2: the count */

/* Lane i of z0 after k iterations: (i+1) * 3^k, mod 2^64. */
uint64_t workload_z0_lane(unsigned i, uint64_t k);
/* Lane i of z1 and of the buffer after k iterations: (i+1) * (3^0 + ... + 3^(k-1)), mod 2^64. */
uint64_t workload_buf_lane(unsigned i, uint64_t k);

/*
 * Whether bytes (a Z slice 0 or the buffer, n bytes) hold the model's lanes
 * for vq and zeros past the vector length.
 */
bool workload_z0_matches(const uint8_t *bytes, size_t n, unsigned vq, uint64_t k);
bool workload_buf_matches(const uint8_t *bytes, size_t n, unsigned vq, uint64_t k);
/* Whether P slice 0 (n bytes) is ptrue .d at vq: bit 0 of each doubleword's 8 predicate bits. */
bool workload_p0_matches(const uint8_t *bytes, size_t n, unsigned vq);

/*
 * What payloads/countdown.S reports when it ends after k iterations at vq
 * throughout: the sum of the buffer's 2 * vq lanes, mod 2^64. Computed in
 * O(log k) steps, since k is tens of millions and this runs under TCG too.
 */
uint64_t workload_result(unsigned vq, uint64_t k);
