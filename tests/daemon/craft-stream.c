/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * craft-stream MIB FILE: the stream of the admission tests' attack (issue 14,
 * "No admission control"): a guest of MIB MiB on the default sim host whose
 * every 4 KiB page holds one repeated non-zero byte, so that each page is
 * an LZ4 block of a few dozen bytes: a stream a hundred times smaller than
 * the memory it makes its destination fill. A real stream, written by the
 * library's own writer: only its proportions are hostile.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svemig/guest.h"
#include "svemig/hv.h"
#include "svemig/snapshot.h"

int main(int argc, char **argv)
{
        struct hv_config cfg = {.backend = HV_BACKEND_SIM};
        struct guest_config gc = {.n_vcpus = 1, .sve = true};
        struct svemig_stream_stats stats;
        struct svemig_error err = {0};
        struct guest *g = NULL;
        struct hv *hv = NULL;
        unsigned long mib;
        int fd, r;

        if (argc != 3 || (mib = strtoul(argv[1], NULL, 10)) == 0) {
                fprintf(stderr, "usage: craft-stream MIB FILE\n");
                return 2;
        }
        gc.mem_bytes = (uint64_t)mib << 20;
        fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                fprintf(stderr, "craft-stream: %s: %s\n", argv[2], strerror(errno));
                return 1;
        }
        r = hv_open(&cfg, &hv, &err);
        if (r == 0)
                r = guest_create(hv, &gc, &g, &err);
        if (r == 0) {
                /* Non-zero, so no page is elided as zero; one byte, so each compresses to almost nothing. */
                memset(guest_mem(g), 0x5a, gc.mem_bytes);
                r = snapshot_write_fd(g, fd, NULL, &stats, &err);
        }
        if (r < 0) {
                fprintf(stderr, "craft-stream: %s\n", svemig_error_str(&err, r));
                return 1;
        }
        printf("%llu\n", (unsigned long long)stats.bytes);
        guest_destroy(g);
        hv_close(hv);
        return close(fd) < 0 ? 1 : 0;
}
