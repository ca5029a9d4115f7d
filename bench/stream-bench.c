/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * stream-bench: the stream's memory encoding and decoding throughput on a
 * memory image (bench/run.sh gives it `hpc-memimage 1024`), against
 * baselines measured in the same run on the same bytes: a plain memcpy, and
 * the lz4 CLI compressing (-1) and decompressing.
 *
 *   stream-bench IMAGE WORKDIR [--runs N] [--threads N] [--chunk-pages N]
 *
 * Encoding writes one memory slot holding the image as a stream to a file
 * in WORKDIR (the page cache), as a snapshot does; decoding reads it back
 * into pre-faulted memory, as a restore does. MB/s are of the image's
 * bytes, 10^6 bytes per MB. Not a test: it checks only that the decoded
 * image equals the original.
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
#include "svemig/stream.h"

#define SLOT_GPA 0x40000000ull

static uint32_t chunk_pages; /* 0: the stream's default */

struct result {
        double best_s;
        uint64_t out_bytes;
};

static uint8_t *load_image(const char *path, size_t *size)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        uint8_t *p;
        size_t off = 0;

        if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0 || st.st_size % 4096) {
                fprintf(stderr, "stream-bench: %s: not a memory image (%s)\n", path,
                        fd < 0 ? strerror(errno) : "empty or not a multiple of 4096 bytes");
                exit(EXIT_FAILURE);
        }
        *size = (size_t)st.st_size;
        p = bench_alloc_populated(*size);
        while (off < *size) {
                ssize_t n = read(fd, p + off, *size - off);
                if (n <= 0) {
                        perror("stream-bench: read");
                        exit(EXIT_FAILURE);
                }
                off += (size_t)n;
        }
        close(fd);
        return p;
}

static struct result time_command(const char *cmd, const char *out, int runs)
{
        struct result r = {1e9, 0};

        for (int i = 0; i < runs; i++) {
                double t = bench_now();
                if (system(cmd) != 0) {
                        fprintf(stderr, "stream-bench: '%s' failed\n", cmd);
                        exit(EXIT_FAILURE);
                }
                t = bench_now() - t;
                if (t < r.best_s)
                        r.best_s = t;
        }
        r.out_bytes = out ? bench_file_size(out) : 0;
        return r;
}

static struct result time_memcpy(uint8_t *dst, const uint8_t *src, size_t size, int runs)
{
        struct result r = {1e9, size};

        for (int i = 0; i < runs; i++) {
                double t = bench_now();
                memcpy(dst, src, size);
                t = bench_now() - t;
                if (t < r.best_s)
                        r.best_s = t;
        }
        return r;
}

static struct result time_encode(const char *path, const uint8_t *img, size_t size, unsigned threads,
                                 int runs)
{
        struct svemig_stream_slot slot = {0, SLOT_GPA, size};
        struct svemig_stream_write_opts opts = {.n_threads = threads};
        struct svemig_mem_range range = {0, SLOT_GPA, img, size, NULL};
        struct result res = {1e9, 0};

        for (int i = 0; i < runs; i++) {
                struct svemig_stream_info info = {0};
                struct svemig_stream_writer *w = NULL;
                struct svemig_error err = {0};
                double t;
                int fd, r;

                info.slots = &slot;
                info.n_slots = 1;
                info.compression = SVEMIG_COMPRESSION_LZ4;
                info.chunk_pages = chunk_pages;
                snprintf(info.purpose, sizeof(info.purpose), "benchmark");
                /* Start from an empty file, as lz4 -f does. */
                unlink(path);
                t = bench_now();
                fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd < 0) {
                        perror(path);
                        exit(EXIT_FAILURE);
                }
                r = svemig_stream_writer_open(fd, &info, &opts, &w, &err);
                if (r == 0)
                        r = svemig_stream_write_memory(w, &range, 1, &err);
                if (r == 0)
                        r = svemig_stream_writer_finish(w, &err);
                svemig_stream_writer_free(w);
                close(fd);
                t = bench_now() - t;
                if (r < 0)
                        bench_die("encoding", &err, r);
                if (t < res.best_s)
                        res.best_s = t;
        }
        res.out_bytes = bench_file_size(path);
        return res;
}

static struct result time_decode(const char *path, uint8_t *dst, size_t size, unsigned threads, int runs)
{
        struct svemig_stream_read_opts opts = {.n_threads = threads};
        struct svemig_mem_map map = {0, SLOT_GPA, dst, size};
        struct result res = {1e9, size};

        for (int i = 0; i < runs; i++) {
                struct svemig_stream_reader *rd = NULL;
                struct svemig_error err = {0};
                double t;
                int fd, k;

                memset(dst, 0x5a, size); /* so the check below means something; still faulted in */
                t = bench_now();
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        perror(path);
                        exit(EXIT_FAILURE);
                }
                k = svemig_stream_reader_open(fd, &opts, &rd, &err);
                while (k >= 0 && (k = svemig_stream_next(rd, &err)) > 0)
                        if (k == SVEMIG_FRAME_MEMORY)
                                k = svemig_stream_read_memory(rd, &map, 1, &err);
                svemig_stream_reader_free(rd);
                close(fd);
                t = bench_now() - t;
                if (k < 0)
                        bench_die("decoding", &err, k);
                if (t < res.best_s)
                        res.best_s = t;
        }
        return res;
}

static void row(const char *what, size_t in, const struct result *r, const struct result *ref)
{
        printf("  %-34s %8.0f MB/s  %6.3f s", what, bench_mbps(in, r->best_s), r->best_s);
        if (r->out_bytes)
                printf("  %11llu bytes (%.3f)", (unsigned long long)r->out_bytes,
                       (double)r->out_bytes / (double)in);
        if (ref)
                printf("  %.2fx", ref->best_s / r->best_s);
        putchar('\n');
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"runs", required_argument, NULL, 'r'},
                {"threads", required_argument, NULL, 't'},
                {"chunk-pages", required_argument, NULL, 'c'},
                {0},
        };
        char lz4_out[4096], raw_out[4096], stream_out[4096], cmd[3 * 4096];
        struct result cp, lz4c, lz4c_null, lz4d, lz4d_null, enc, dec;
        unsigned threads = 0;
        uint8_t *img, *dst;
        int runs = 3, c;
        size_t size;

        while ((c = getopt_long(argc, argv, "r:t:c:", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        chunk_pages = (uint32_t)atoi(optarg);
                        break;
                case 'r':
                        runs = atoi(optarg) > 0 ? atoi(optarg) : 1;
                        break;
                case 't':
                        threads = (unsigned)atoi(optarg);
                        break;
                default:
                        return 2;
                }
        }
        if (argc - optind != 2) {
                fprintf(stderr,
                        "usage: stream-bench IMAGE WORKDIR [--runs N] [--threads N] [--chunk-pages N]\n");
                return 2;
        }
        snprintf(lz4_out, sizeof(lz4_out), "%s/stream-bench.lz4", argv[optind + 1]);
        snprintf(raw_out, sizeof(raw_out), "%s/stream-bench.out", argv[optind + 1]);
        snprintf(stream_out, sizeof(stream_out), "%s/stream-bench.svemig", argv[optind + 1]);

        img = load_image(argv[optind], &size);
        dst = bench_alloc_populated(size);
        printf("stream-bench: %s, %zu MiB, best of %d runs, %ld online CPUs, %s workers\n", argv[optind],
               size >> 20, runs, sysconf(_SC_NPROCESSORS_ONLN), threads ? "" : "one per CPU");

        cp = time_memcpy(dst, img, size, runs);
        snprintf(cmd, sizeof(cmd), "lz4 -1 -q -f '%s' '%s'", argv[optind], lz4_out);
        lz4c = time_command(cmd, lz4_out, runs);
        snprintf(cmd, sizeof(cmd), "lz4 -1 -q -c '%s' > /dev/null", argv[optind]);
        lz4c_null = time_command(cmd, NULL, runs);
        snprintf(cmd, sizeof(cmd), "lz4 -d -q -f '%s' '%s'", lz4_out, raw_out);
        lz4d = time_command(cmd, NULL, runs);
        snprintf(cmd, sizeof(cmd), "lz4 -d -q -c '%s' > /dev/null", lz4_out);
        lz4d_null = time_command(cmd, NULL, runs);
        unlink(raw_out);

        enc = time_encode(stream_out, img, size, threads, runs);
        dec = time_decode(stream_out, dst, size, threads, runs);
        if (memcmp(dst, img, size) != 0) {
                fprintf(stderr, "stream-bench: the decoded image differs from the original\n");
                return 1;
        }

        printf("\n  %-34s %13s  %7s  %s\n", "", "throughput", "time", "output (ratio)   speed vs lz4 CLI");
        row("memcpy", size, &cp, NULL);
        row("lz4 -1 IMAGE FILE", size, &lz4c, NULL);
        row("lz4 -1 IMAGE > /dev/null", size, &lz4c_null, NULL);
        row("svemig encode to FILE", size, &enc, &lz4c);
        printf("  %-34s %.2fx vs lz4 -1 > /dev/null; size %.3f of lz4 -1's\n", "",
               lz4c_null.best_s / enc.best_s, (double)enc.out_bytes / (double)lz4c.out_bytes);
        row("lz4 -d FILE FILE", size, &lz4d, NULL);
        row("lz4 -d FILE > /dev/null", size, &lz4d_null, NULL);
        row("svemig decode into memory", size, &dec, &lz4d);
        printf("  %-34s %.2fx vs lz4 -d > /dev/null\n", "", lz4d_null.best_s / dec.best_s);

        printf("\ntargets: encode >= 1.5x lz4 -1 (%s), stream <= lz4 -1 output (%s), decode >= 1.5x lz4 -d "
               "(%s)\n",
               lz4c.best_s / enc.best_s >= 1.5 ? "met" : "MISSED",
               enc.out_bytes <= lz4c.out_bytes ? "met" : "MISSED",
               lz4d.best_s / dec.best_s >= 1.5 ? "met" : "MISSED");
        unlink(lz4_out);
        unlink(stream_out);
        return 0;
}
