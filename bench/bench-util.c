/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"
#include "macro.h"

double bench_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_mbps(uint64_t bytes, double seconds)
{
        return (double)bytes / 1e6 / seconds;
}

uint64_t bench_file_size(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

uint8_t *bench_alloc_populated(size_t size)
{
        void *p =
                mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

        if (p == MAP_FAILED) {
                perror("mmap");
                exit(EXIT_FAILURE);
        }
        return p;
}

double bench_time_command(const char *cmd, int runs)
{
        double best = 1e9;

        for (int i = 0; i < runs; i++) {
                double t = bench_now();

                if (system(cmd) != 0) {
                        fprintf(stderr, "bench: '%s' failed\n", cmd);
                        exit(EXIT_FAILURE);
                }
                t = bench_now() - t;
                if (t < best)
                        best = t;
        }
        return best;
}

void bench_die(const char *what, const struct svemig_error *err, int r)
{
        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, svemig_error_str(err, r));
        exit(EXIT_FAILURE);
}

void bench_load_image(struct guest *g, const char *path)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint64_t off = 0;

        if (fd < 0) {
                perror(path);
                exit(EXIT_FAILURE);
        }
        while (off < guest_mem_size(g)) {
                ssize_t n = read(fd, guest_mem(g) + off, guest_mem_size(g) - off);

                if (n <= 0)
                        break;
                off += (uint64_t)n;
        }
        if (off != guest_mem_size(g)) {
                fprintf(stderr, "%s: %s holds %llu bytes, the guest %llu\n", program_invocation_short_name,
                        path, (unsigned long long)off, (unsigned long long)guest_mem_size(g));
                exit(EXIT_FAILURE);
        }
}
