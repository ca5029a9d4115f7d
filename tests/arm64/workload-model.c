/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "workload-model.h"

uint64_t workload_z0_lane(unsigned i, uint64_t k)
{
        uint64_t p = 1;

        while (k--)
                p *= 3;
        return (i + 1) * p;
}

uint64_t workload_buf_lane(unsigned i, uint64_t k)
{
        /* Summed rather than divided: the division by 2 does not hold mod 2^64. */
        uint64_t s = 0, p = 1;

        for (uint64_t j = 0; j < k; j++, p *= 3)
                s += p;
        return (i + 1) * s;
}

static bool lanes_match(const uint8_t *bytes, size_t n, unsigned vq, uint64_t k,
                        uint64_t (*lane)(unsigned, uint64_t))
{
        unsigned lanes = 2 * vq;

        for (unsigned i = 0; i < n / 8; i++) {
                uint64_t v;

                memcpy(&v, bytes + 8 * i, 8);
                if (v != (i < lanes ? lane(i, k) : 0))
                        return false;
        }
        return true;
}

bool workload_z0_matches(const uint8_t *bytes, size_t n, unsigned vq, uint64_t k)
{
        return lanes_match(bytes, n, vq, k, workload_z0_lane);
}

bool workload_buf_matches(const uint8_t *bytes, size_t n, unsigned vq, uint64_t k)
{
        return lanes_match(bytes, n, vq, k, workload_buf_lane);
}

static uint64_t pow3(uint64_t k)
{
        uint64_t r = 1, b = 3;

        for (; k; k >>= 1, b *= b)
                if (k & 1)
                        r *= b;
        return r;
}

/* 3^0 + ... + 3^(k-1) mod 2^64: S(2m) = S(m) (1 + 3^m), S(m+1) = 1 + 3 S(m). */
static uint64_t geometric_sum(uint64_t k)
{
        if (k == 0)
                return 0;
        if (k & 1)
                return 1 + 3 * geometric_sum(k - 1);
        return geometric_sum(k / 2) * (1 + pow3(k / 2));
}

uint64_t workload_result(unsigned vq, uint64_t k)
{
        uint64_t lanes = 2ull * vq;

        /* Lane i holds (i+1) S(k): the lanes sum to L(L+1)/2 S(k). */
        return lanes * (lanes + 1) / 2 * geometric_sum(k);
}

bool workload_p0_matches(const uint8_t *bytes, size_t n, unsigned vq)
{
        /* VL/8 predicate bits = 2 * vq bytes; ptrue .d sets the lowest bit of each byte. */
        for (size_t i = 0; i < n; i++)
                if (bytes[i] != (i < 2 * vq ? 0x01 : 0))
                        return false;
        return true;
}
