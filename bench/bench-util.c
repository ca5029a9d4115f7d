/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "bench-util.h"

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
