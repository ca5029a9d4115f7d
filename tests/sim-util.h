/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Helpers for tests that need simulated hosts. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svemig/guest.h"
#include "svemig/hv.h"
#include "svemig/vqset.h"

/*
 * Opens a sim host whose CPUs have the VQ maps in 'cpus', separated by ';'
 * (each in a form vqset_parse() takes; "none" for a CPU without SVE), and
 * the reference kernel 'kernel' (NULL for the default). Aborts on failure:
 * a test that cannot build its host has nothing to test.
 */
static inline struct hv *sim_host_open(const char *cpus, const char *kernel)
{
        vqset_t maps[16];
        struct hv_config cfg = {.backend = HV_BACKEND_SIM};
        struct svemig_error err = {0};
        char buf[512], *save = NULL;
        struct hv *hv;
        size_t n = 0;

        snprintf(buf, sizeof(buf), "%s", cpus);
        for (char *tok = strtok_r(buf, ";", &save); tok && n < 16; tok = strtok_r(NULL, ";", &save))
                if (vqset_parse(tok, &maps[n++], &err) < 0) {
                        fprintf(stderr, "bad CPU map '%s': %s\n", tok, err.msg);
                        abort();
                }
        cfg.sim.cpu_maps = maps;
        cfg.sim.n_cpus = n;
        cfg.sim.kernel = kernel;
        cfg.sim.host_name = cpus;
        if (hv_open(&cfg, &hv, &err) < 0) {
                fprintf(stderr, "sim host '%s': %s\n", cpus, err.msg);
                abort();
        }
        return hv;
}

/*
 * Creates a guest on hv running the sim workload: SVE at the lengths 'vls'
 * (any vqset_parse() form), or without SVE when vls is NULL. Aborts on
 * failure, with the reason.
 */
static inline struct guest *sim_guest_create(struct hv *hv, const char *vls, unsigned n_vcpus,
                                             uint64_t mem_bytes, uint64_t dirty_pages_per_step)
{
        struct guest_config cfg = {.n_vcpus = n_vcpus,
                                   .mem_bytes = mem_bytes,
                                   .sve = vls != NULL,
                                   .dirty_pages_per_step = dirty_pages_per_step};
        struct svemig_error err = {0};
        struct guest *g;

        if ((vls && vqset_parse(vls, &cfg.vls, &err) < 0) || guest_create(hv, &cfg, &g, &err) < 0) {
                fprintf(stderr, "guest at '%s': %s\n", vls ? vls : "no SVE", err.msg);
                abort();
        }
        return g;
}
