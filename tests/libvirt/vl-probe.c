/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest's side of the libvirt tests: prints every SVE vector length this
 * (aarch64) guest can set, as "vl-probe: lengths 128,256", found by asking
 * prctl(PR_SVE_SET_VL) for each multiple of 128 bits: the kernel answers
 * with the largest length it supports at or below the request.
 * Built static with aarch64-linux-gnu-gcc; runs as the initramfs's helper.
 */
#include <stdio.h>
#include <sys/prctl.h>

#ifndef PR_SVE_SET_VL
#define PR_SVE_SET_VL 50
#endif
#define PR_SVE_VL_LEN_MASK 0xffff

int main(void)
{
        int seen[17] = {0}, first = 1;

        for (int vq = 1; vq <= 16; vq++) {
                int r = prctl(PR_SVE_SET_VL, vq * 16, 0, 0, 0);

                if (r < 0) {
                        printf("vl-probe: no SVE (prctl: %m)\n");
                        return 0;
                }
                if ((r & PR_SVE_VL_LEN_MASK) == vq * 16)
                        seen[vq] = 1;
        }
        printf("vl-probe: lengths ");
        for (int vq = 1; vq <= 16; vq++)
                if (seen[vq]) {
                        printf("%s%d", first ? "" : ",", vq * 128);
                        first = 0;
                }
        printf("\n");
        return 0;
}
