/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Runs inside a Linux guest of svemig-vmm (the arm64 rig's linux round):
 * prints the SVE vector lengths the guest sees, from
 * /proc/sys/abi/sve_default_vector_length and by probing prctl(PR_SVE_SET_VL)
 * with every length from 128 to 2048 bits, then computes a checksum over a
 * long loop with SVE at the task's vector length, printing its progress,
 * and the same checksum in scalar code: the two agree at any length.
 *
 *   sve-vl [ITERATIONS]     (default 1<<24)
 *
 * Lines: "SVE default-bytes N", "SVE vls-bits A,B,...", "SVE vl-bits N",
 * "SVE progress I/N", "SVE checksum 0x...", "SVE scalar 0x...", and "SVE OK"
 * or "SVE MISMATCH". Built static with the cross compiler.
 */
#include <arm_sve.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>

#ifndef PR_SVE_SET_VL
#define PR_SVE_SET_VL 50
#define PR_SVE_GET_VL 51
#endif
#define PR_SVE_VL_LEN_MASK 0xffff

#define CHUNKS 8

/* One element's term: what the vector loop sums lane by lane. */
static uint64_t term(uint64_t i)
{
        return (i * i) ^ (i >> 3);
}

static uint64_t sum_sve(uint64_t from, uint64_t to)
{
        svuint64_t acc = svdup_u64(0);

        for (uint64_t i = from; i < to; i += svcntd()) {
                svbool_t pg = svwhilelt_b64_u64(i, to);
                svuint64_t x = svindex_u64(i, 1);
                svuint64_t t = sveor_u64_x(pg, svmul_u64_x(pg, x, x), svlsr_n_u64_x(pg, x, 3));

                acc = svadd_u64_m(pg, acc, t);
        }
        return svaddv_u64(svptrue_b64(), acc);
}

static void probe(void)
{
        FILE *f = fopen("/proc/sys/abi/sve_default_vector_length", "r");
        int def = -1, last = -1, saved = prctl(PR_SVE_GET_VL);
        const char *sep = "";

        if (f) {
                if (fscanf(f, "%d", &def) != 1)
                        def = -1;
                fclose(f);
        }
        printf("SVE default-bytes %d\n", def);
        printf("SVE vls-bits ");
        /* The kernel rounds a length it lacks down to one it has: each distinct answer is one. */
        for (int vl = 16; vl <= 256; vl += 16) {
                int got = prctl(PR_SVE_SET_VL, vl);

                if (got < 0)
                        continue;
                got &= PR_SVE_VL_LEN_MASK;
                if (got != last && got == vl) {
                        printf("%s%d", sep, got * 8);
                        sep = ",";
                }
                last = got;
        }
        printf("\n");
        if (saved >= 0)
                prctl(PR_SVE_SET_VL, saved & PR_SVE_VL_LEN_MASK);
}

int main(int argc, char **argv)
{
        uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 1ull << 24;
        uint64_t sum = 0, scalar = 0;

        setvbuf(stdout, NULL, _IOLBF, 0);
        probe();
        printf("SVE vl-bits %llu\n", (unsigned long long)svcntb() * 8);
        for (unsigned c = 0; c < CHUNKS; c++) {
                sum += sum_sve(n * c / CHUNKS, n * (c + 1) / CHUNKS);
                printf("SVE progress %u/%u\n", c + 1, CHUNKS);
        }
        for (uint64_t i = 0; i < n; i++)
                scalar += term(i);
        printf("SVE checksum 0x%016llx\nSVE scalar 0x%016llx\n", (unsigned long long)sum,
               (unsigned long long)scalar);
        printf(sum == scalar ? "SVE OK\n" : "SVE MISMATCH\n");
        return sum == scalar ? 0 : 1;
}
