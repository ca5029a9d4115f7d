/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshot-bench: snapshot and restore throughput of a sim guest of 64 vcpus
 * at 2048-bit VL holding a 1 GiB memory image, against baselines measured in
 * the same run: a plain memcpy of the image, and the lz4 CLI compressing
 * (-1) and decompressing it. The QEMU figures, measured by
 * bench/qemu-baseline.py in the same run, come in as options.
 *
 *   snapshot-bench IMAGE WORKDIR [--vcpus N] [--runs N] [--qemu-save S] [--qemu-restore S]
 *
 * Not a test: it asserts nothing but that the restored guest equals the
 * original, and prints figures for people.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"
#include "macro.h"
#include "svemig/guest.h"
#include "svemig/snapshot.h"

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"vcpus", required_argument, NULL, 'c'},
                {"runs", required_argument, NULL, 'r'},
                {"qemu-save", required_argument, NULL, 's'},
                {"qemu-restore", required_argument, NULL, 'R'},
                {0},
        };
        unsigned vcpus = 64;
        int runs = 3, c;
        double qemu_save = 0, qemu_restore = 0;
        const vqset_t map = {{0xffff}}; /* 128..2048 bits */
        struct hv_config cfg = {.backend = HV_BACKEND_SIM, .sim = {.cpu_maps = &map, .n_cpus = 1}};
        struct svemig_error err = {0};
        struct svemig_stream_stats stats;
        struct guest *g, *back = NULL;
        char path[4096], cmd[8192], lz4_path[4096], diff[256];
        double t, t_memcpy = 1e9, t_save = 1e9, t_durable = 1e9, t_restore = 1e9, t_lz4c, t_lz4d;
        uint64_t size, snap_bytes, lz4_bytes;
        uint8_t *copy;
        struct hv *hv;
        bool equal;
        int r;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        vcpus = (unsigned)atoi(optarg);
                        break;
                case 'r':
                        runs = MAX(1, atoi(optarg));
                        break;
                case 's':
                        qemu_save = atof(optarg);
                        break;
                case 'R':
                        qemu_restore = atof(optarg);
                        break;
                default:
                        return 2;
                }
        }
        if (argc - optind != 2) {
                fprintf(stderr, "usage: snapshot-bench IMAGE WORKDIR [--vcpus N] [--runs N] [--qemu-save S] "
                                "[--qemu-restore S]\n");
                return 2;
        }
        size = bench_file_size(argv[optind]);
        snprintf(path, sizeof(path), "%s/bench.svemig", argv[optind + 1]);
        snprintf(lz4_path, sizeof(lz4_path), "%s/bench.lz4", argv[optind + 1]);

        if ((r = hv_open(&cfg, &hv, &err)) < 0)
                bench_die("sim host", &err, r);
        {
                struct guest_config gc = {.n_vcpus = vcpus, .mem_bytes = size, .sve = true};

                if ((r = guest_create(hv, &gc, &g, &err)) < 0 || (r = guest_prefault(g, &err)) < 0)
                        bench_die("guest", &err, r);
        }
        bench_load_image(g, argv[optind]);
        /* Some steps, with no memory writes, so that every vcpu holds full-width SVE state. */
        if ((r = guest_run(g, 64, &err)) < 0)
                bench_die("run", &err, r);

        copy = bench_alloc_populated(size);
        for (int i = 0; i < runs; i++) {
                t = bench_now();
                memcpy(copy, guest_mem(g), size);
                t_memcpy = MIN(t_memcpy, bench_now() - t);
        }
        munmap(copy, size);

        snprintf(cmd, sizeof(cmd), "lz4 -q -1 -f '%s' '%s'", argv[optind], lz4_path);
        t_lz4c = bench_time_command(cmd, runs);
        lz4_bytes = bench_file_size(lz4_path);
        snprintf(cmd, sizeof(cmd), "lz4 -q -d -f '%s' '%s.out'", lz4_path, lz4_path);
        t_lz4d = bench_time_command(cmd, runs);
        snprintf(cmd, sizeof(cmd), "%s.out", lz4_path);
        unlink(cmd);

        /* Into the page cache, as the QEMU and lz4 figures are; then durably, as snapshot_save() writes. */
        for (int i = 0; i < runs; i++) {
                _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

                t = bench_now();
                if ((r = snapshot_write_fd(g, fd, NULL, &stats, &err)) < 0)
                        bench_die("snapshot", &err, r);
                t_save = MIN(t_save, bench_now() - t);
        }
        for (int i = 0; i < runs; i++) {
                t = bench_now();
                if ((r = snapshot_save(g, path, NULL, &stats, &err)) < 0)
                        bench_die("snapshot", &err, r);
                t_durable = MIN(t_durable, bench_now() - t);
        }
        snap_bytes = bench_file_size(path);

        for (int i = 0; i < runs; i++) {
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                struct svemig_stream_reader *rd;

                guest_destroy(back);
                back = NULL;
                if ((r = svemig_stream_reader_open(fd, NULL, &rd, &err)) < 0 ||
                    (r = snapshot_check_host(hv, svemig_stream_reader_info(rd), &err)) < 0 ||
                    (r = guest_create_empty(hv, vcpus, size, false, &back, &err)) < 0 ||
                    (r = guest_prefault(back, &err)) < 0)
                        bench_die("restore setup", &err, r);
                /* Timed from here: the header is read and the destination's memory faulted in. */
                t = bench_now();
                r = snapshot_restore_into(back, rd, NULL, &err);
                t = bench_now() - t;
                svemig_stream_reader_free(rd);
                if (r < 0)
                        bench_die("restore", &err, r);
                t_restore = MIN(t_restore, t);
        }
        if ((r = guest_compare(g, back, &equal, diff, sizeof(diff), &err)) < 0)
                bench_die("compare", &err, r);
        if (!equal) {
                fprintf(stderr, "snapshot-bench: the restored guest differs: %s\n", diff);
                return EXIT_FAILURE;
        }

        printf("guest: %u vcpus at 2048-bit SVE, %llu MiB (hpc-memimage); best of %d runs; %ld CPUs\n",
               vcpus, (unsigned long long)(size >> 20), runs, sysconf(_SC_NPROCESSORS_ONLN));
        printf("%-34s %9s %10s %s\n", "", "seconds", "MB/s", "");
        printf("%-34s %9.3f %10.0f\n", "memcpy of the image", t_memcpy, bench_mbps(size, t_memcpy));
        printf("%-34s %9.3f %10.0f  -> %llu MB\n", "lz4 -1 (CLI) compress", t_lz4c, bench_mbps(size, t_lz4c),
               (unsigned long long)(lz4_bytes / 1000000));
        printf("%-34s %9.3f %10.0f\n", "lz4 -d (CLI) decompress", t_lz4d, bench_mbps(size, t_lz4d));
        printf("%-34s %9.3f %10.0f  -> %llu MB (%.0f%% zero pages)\n", "svemig snapshot to page cache",
               t_save, bench_mbps(size, t_save), (unsigned long long)(snap_bytes / 1000000),
               100.0 * (double)stats.zero_pages / (double)MAX(stats.mem_pages, 1));
        printf("%-34s %9.3f %10.0f\n", "svemig snapshot_save (+fsync)", t_durable,
               bench_mbps(size, t_durable));
        printf("%-34s %9.3f %10.0f\n", "svemig restore (pre-faulted)", t_restore,
               bench_mbps(size, t_restore));
        if (qemu_save > 0)
                printf("%-34s %9.3f %10.0f\n", "QEMU 7.2 save (same run)", qemu_save,
                       bench_mbps(size, qemu_save));
        if (qemu_restore > 0)
                printf("%-34s %9.3f %10.0f\n", "QEMU 7.2 restore (same run)", qemu_restore,
                       bench_mbps(size, qemu_restore));

        printf("\ntargets:\n");
        printf("  snapshot vs lz4 -1 throughput  %5.2fx  (target >= 1.5x)  %s\n", t_lz4c / t_save,
               t_lz4c / t_save >= 1.5 ? "met" : "MISSED");
        printf("  snapshot size vs lz4 -1 output %5.2fx  (target <= 1.0x)  %s\n",
               (double)snap_bytes / (double)lz4_bytes, snap_bytes <= lz4_bytes ? "met" : "MISSED");
        printf("  restore vs lz4 -d throughput   %5.2fx  (target >= 1.5x)  %s\n", t_lz4d / t_restore,
               t_lz4d / t_restore >= 1.5 ? "met" : "MISSED");
        if (qemu_save > 0)
                printf("  snapshot vs QEMU save          %5.2fx  (target > 1x)     %s\n", qemu_save / t_save,
                       qemu_save > t_save ? "met" : "MISSED");
        printf("  snapshot vs memcpy             %5.2fx of memcpy's speed\n", t_memcpy / t_save);

        unlink(path);
        unlink(lz4_path);
        guest_destroy(g);
        guest_destroy(back);
        hv_close(hv);
        return EXIT_SUCCESS;
}
