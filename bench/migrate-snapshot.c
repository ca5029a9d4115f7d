/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * migrate-snapshot: the guest bench/migrate-bench.py migrates, as a snapshot
 * file that `svemigctl restore` puts into a daemon: a sim guest of N vcpus at
 * 2048-bit SVE whose memory holds IMAGE, run a few steps so that every vcpu
 * holds full-width vector state.
 *
 *   migrate-snapshot IMAGE OUT [--vcpus N] [--dirty-pages P] [--active K]
 *
 * --dirty-pages: the sim workload's pages per step per vcpu (x28, carried by
 * the snapshot). --active: vcpus left runnable; the others are powered off
 * (mp_state STOPPED), which on the sim, as in KVM, sleep in run until
 * kicked: the model of an idle vcpu. Their SVE state travels all the same.
 */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench-util.h"
#include "macro.h"
#include "svemig/guest.h"
#include "svemig/snapshot.h"

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"vcpus", required_argument, NULL, 'c'},
                {"dirty-pages", required_argument, NULL, 'd'},
                {"active", required_argument, NULL, 'a'},
                {0},
        };
        const vqset_t map = {{0xffff}}; /* 128..2048 bits */
        struct hv_config cfg = {.backend = HV_BACKEND_SIM, .sim = {.cpu_maps = &map, .n_cpus = 1}};
        struct svemig_error err = {0};
        unsigned vcpus = 64, active = UINT_MAX;
        uint64_t dirty = 0;
        struct guest *g;
        struct hv *hv;
        int r, c;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        vcpus = (unsigned)atoi(optarg);
                        break;
                case 'd':
                        dirty = strtoull(optarg, NULL, 10);
                        break;
                case 'a':
                        active = (unsigned)atoi(optarg);
                        break;
                default:
                        return 2;
                }
        }
        if (argc - optind != 2) {
                fprintf(stderr,
                        "usage: migrate-snapshot IMAGE OUT [--vcpus N] [--dirty-pages P] [--active K]\n");
                return 2;
        }
        if ((r = hv_open(&cfg, &hv, &err)) < 0)
                bench_die("sim host", &err, r);
        {
                struct guest_config gc = {.n_vcpus = vcpus,
                                          .mem_bytes = bench_file_size(argv[optind]),
                                          .sve = true,
                                          .dirty_pages_per_step = dirty};

                if ((r = guest_create(hv, &gc, &g, &err)) < 0 || (r = guest_prefault(g, &err)) < 0)
                        bench_die("guest", &err, r);
        }
        bench_load_image(g, argv[optind]);
        /* Some steps, so that every vcpu holds full-width SVE state (and, with P, writes some pages). */
        if ((r = guest_run(g, 64, &err)) < 0)
                bench_die("run", &err, r);
        for (unsigned i = MIN(active, vcpus); i < vcpus; i++)
                if ((r = hv_vcpu_set_mp_state(guest_vcpu(g, i), HV_MP_STATE_STOPPED)) < 0)
                        bench_die("powering a vcpu off", NULL, r);
        if ((r = snapshot_save(g, argv[optind + 1], NULL, NULL, &err)) < 0)
                bench_die("snapshot", &err, r);
        guest_destroy(g);
        hv_close(hv);
        return EXIT_SUCCESS;
}
