/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemig-demo: the offline tour behind `make demo`, on the embedded sim
 * backend. Three simulated hosts with different SVE vector lengths; the
 * cluster's guest set; a guest run on one host, captured, restored on
 * another and run on; and proof that the result equals an unbroken run.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "svemig/guest.h"
#include "svemig/snapshot.h"
#include "svemig/vqset.h"

#define MAX_HOSTS 8

struct demo_host {
        char name[2];
        const char *cpus;
        vqset_t map;
        struct hv *hv;
        struct hv_caps caps;
};

static int fail(const char *what, const struct svemig_error *err, int r)
{
        fprintf(stderr, "svemig-demo: %s: %s\n", what, svemig_error_str(err, r));
        return EXIT_FAILURE;
}

static const char *bits(const vqset_t *s, char *buf, size_t len)
{
        vqset_format(s, VQSET_FORMAT_BITS, buf, len);
        return buf;
}

static int open_hosts(struct demo_host *hosts, size_t n)
{
        struct svemig_error err = {0};
        char b1[128], b2[128];
        int r;

        printf("== 1. %zu simulated hosts (sim backend, the kernel's virtualisable-VL rules)\n", n);
        for (size_t i = 0; i < n; i++) {
                struct demo_host *h = &hosts[i];
                struct hv_config cfg = {.backend = HV_BACKEND_SIM,
                                        .sim = {.cpu_maps = &h->map, .n_cpus = 1, .host_name = h->name}};

                r = vqset_parse(h->cpus, &h->map, &err);
                if (r < 0)
                        return fail("host CPU vector lengths", &err, r);
                r = hv_open(&cfg, &h->hv, &err);
                if (r < 0)
                        return fail("opening a sim host", &err, r);
                hv_get_caps(h->hv, &h->caps);
                printf("   host %s: CPUs implement %s bits; KVM offers vcpus %s bits (kernel %s)\n", h->name,
                       bits(&h->map, b1, sizeof(b1)), bits(&h->caps.vls, b2, sizeof(b2)), h->caps.kernel);
        }
        return 0;
}

static int negotiate(struct demo_host *hosts, size_t n, vqset_t *guest_set)
{
        vqset_t sets[MAX_HOSTS];
        struct vqset_cluster c;
        struct svemig_error err = {0};
        char b[128], reason[256];
        int r;

        for (size_t i = 0; i < n; i++)
                sets[i] = hosts[i].caps.vls;
        r = vqset_negotiate(sets, n, &c, &err);
        if (r < 0)
                return fail("negotiation", &err, r);

        printf("\n== 2. Cluster negotiation\n   guest set: %s bits (max %u bits)\n",
               bits(&c.guest, b, sizeof(b)), vq_to_bits(c.max_vq));
        for (size_t i = 0; i < n; i++) {
                vqset_reason_format(&c.hosts[i].reason, reason, sizeof(reason));
                printf("   host %s: %s%s%s%s\n", hosts[i].name,
                       c.hosts[i].can_present ? "can present it" : "cannot: ",
                       c.hosts[i].can_present ? "" : reason, c.limiting[i] ? "  <- limits the cluster" : "",
                       "");
        }
        *guest_set = c.guest;
        vqset_cluster_done(&c);
        return 0;
}

/* The last host other than 'skip' that can present set: with the defaults, the one unlike the source. */
static struct demo_host *host_presenting(struct demo_host *hosts, size_t n, size_t skip, const vqset_t *set)
{
        for (size_t i = n; i-- > 0;)
                if (i != skip && vqset_can_present(&hosts[i].caps.vls, set, NULL))
                        return &hosts[i];
        return NULL;
}

static int move_and_compare(struct demo_host *src, struct demo_host *dst, const vqset_t *set, unsigned vcpus,
                            uint64_t n_steps, uint64_t m_steps, const char *file)
{
        struct guest_config cfg = {
                .n_vcpus = vcpus, .mem_bytes = 4 << 20, .sve = true, .vls = *set, .dirty_pages_per_step = 4};
        struct guest *g = NULL, *moved = NULL, *unbroken = NULL;
        struct svemig_stream_stats stats;
        struct svemig_error err = {0};
        char b[128], diff[256] = "";
        bool equal = false;
        int r, ret = EXIT_FAILURE;

        printf("\n== 3. A guest on host %s at the cluster set %s bits: %u vcpus, 4 MiB of RAM, %llu steps\n",
               src->name, bits(set, b, sizeof(b)), vcpus, (unsigned long long)n_steps);
        if ((r = guest_create(src->hv, &cfg, &g, &err)) < 0 || (r = guest_run(g, n_steps, &err)) < 0) {
                fail("running the guest", &err, r);
                goto out;
        }

        if ((r = snapshot_save(g, file, NULL, &stats, &err)) < 0) {
                fail("snapshot", &err, r);
                goto out;
        }
        printf("   snapshot %s: %u vcpus (Z at %u bits, P, FFR, FPSIMD, system, timer, firmware "
               "registers),\n"
               "   %llu pages of memory (%llu of them zero, elided), %llu bytes in all\n",
               file, stats.vcpus, vqset_highest(set) * 128, (unsigned long long)stats.mem_pages,
               (unsigned long long)stats.zero_pages, (unsigned long long)stats.bytes);

        printf("\n== 4. Restored from the file on host %s, then %llu more steps\n", dst->name,
               (unsigned long long)m_steps);
        if ((r = snapshot_load(dst->hv, file, NULL, &moved, &err)) < 0 ||
            (r = guest_run(moved, m_steps, &err)) < 0) {
                fail("restore", &err, r);
                goto out;
        }

        printf("\n== 5. Reference: the same guest run %llu steps on host %s without a break\n",
               (unsigned long long)(n_steps + m_steps), src->name);
        if ((r = guest_create(src->hv, &cfg, &unbroken, &err)) < 0 ||
            (r = guest_run(unbroken, n_steps + m_steps, &err)) < 0 ||
            (r = guest_compare(moved, unbroken, &equal, diff, sizeof(diff), &err)) < 0) {
                fail("reference run", &err, r);
                goto out;
        }
        if (!equal) {
                printf("   DIFFERENT: %s\n", diff);
                goto out;
        }
        printf("   identical: every register of %u vcpus and all %u KiB of memory, bit for bit\n", vcpus,
               (unsigned)(cfg.mem_bytes >> 10));
        ret = EXIT_SUCCESS;
out:
        guest_destroy(g);
        guest_destroy(moved);
        guest_destroy(unbroken);
        return ret;
}

/* A snapshot of a guest at the source's full set, offered to a host that cannot present it. */
static int show_refusal(struct demo_host *src, struct demo_host *hosts, size_t n, const char *file)
{
        struct guest_config cfg = {.n_vcpus = 1, .mem_bytes = 64 << 10, .sve = true};
        struct guest *g = NULL, *h = NULL;
        struct svemig_error err = {0};
        struct demo_host *dst = NULL;
        char b[128];
        int r;

        for (size_t i = 0; i < n && !dst; i++)
                if (!vqset_can_present(&hosts[i].caps.vls, &src->caps.vls, NULL))
                        dst = &hosts[i];
        if (!dst)
                return EXIT_SUCCESS;

        printf("\n== 6. A snapshot of a guest at host %s's full set %s bits, offered to host %s\n",
               src->name, bits(&src->caps.vls, b, sizeof(b)), dst->name);
        if ((r = guest_create(src->hv, &cfg, &g, &err)) < 0 ||
            (r = snapshot_save(g, file, NULL, NULL, &err)) < 0)
                return fail("preparing the refusal", &err, r);
        r = snapshot_load(dst->hv, file, NULL, &h, &err);
        printf("   refused (%s) from the header, before any memory was read:\n   %s\n",
               r < 0 ? strerror(-r) : "not refused!", err.msg);
        guest_destroy(g);
        guest_destroy(h);
        return r < 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static void usage(void)
{
        printf("Usage: svemig-demo [--vcpus N] [--steps N] [--more M] [--dir DIR] [HOST...]\n\n"
               "Each HOST is the vector lengths its CPUs implement, in any form vqset takes\n"
               "(\"128,256,512\", \"vq1,vq2\", \"0xb\"). Default: 128,256,512  128,256  128,256,384,512.\n"
               "Snapshots are written to DIR (default: the current directory) as guest.svemig and\n"
               "wide.svemig, and left there for svemigctl inspect and verify.\n");
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"vcpus", required_argument, NULL, 'c'}, {"steps", required_argument, NULL, 'n'},
                {"more", required_argument, NULL, 'm'},  {"dir", required_argument, NULL, 'd'},
                {"help", no_argument, NULL, 'h'},        {0},
        };
        static const char *const default_hosts[] = {"128,256,512", "128,256", "128,256,384,512"};
        struct demo_host hosts[MAX_HOSTS] = {0};
        const char *dir = ".";
        char file[4096], wide[4096];
        unsigned vcpus = 4;
        uint64_t n_steps = 5000, m_steps = 3000;
        struct demo_host *dst;
        vqset_t set;
        size_t n = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        vcpus = (unsigned)strtoul(optarg, NULL, 0);
                        break;
                case 'n':
                        n_steps = strtoull(optarg, NULL, 0);
                        break;
                case 'm':
                        m_steps = strtoull(optarg, NULL, 0);
                        break;
                case 'd':
                        dir = optarg;
                        break;
                case 'h':
                        usage();
                        return EXIT_SUCCESS;
                default:
                        usage();
                        return 2;
                }
        }
        if (vcpus == 0 || vcpus > 64) {
                fprintf(stderr, "svemig-demo: --vcpus takes 1..64\n");
                return 2;
        }
        for (int i = optind; i < argc && n < MAX_HOSTS; i++)
                hosts[n++].cpus = argv[i];
        if (n == 0)
                for (; n < ELEMENTSOF(default_hosts); n++)
                        hosts[n].cpus = default_hosts[n];
        if (n < 2) {
                fprintf(stderr, "svemig-demo: give at least two hosts\n");
                return 2;
        }
        for (size_t i = 0; i < n; i++)
                hosts[i].name[0] = (char)('A' + i);

        r = open_hosts(hosts, n);
        if (r == 0)
                r = negotiate(hosts, n, &set);
        if (r == 0 && vqset_empty(&set)) {
                printf("\nThe cluster has no common SVE: guests would run FPSIMD only.\n");
                r = EXIT_SUCCESS;
        } else if (r == 0) {
                dst = host_presenting(hosts, n, 0, &set);
                snprintf(file, sizeof(file), "%s/guest.svemig", dir);
                snprintf(wide, sizeof(wide), "%s/wide.svemig", dir);
                r = dst ? move_and_compare(&hosts[0], dst, &set, vcpus, n_steps, m_steps, file)
                        : EXIT_FAILURE;
                if (r == 0)
                        r = show_refusal(&hosts[0], hosts, n, wide);
        }
        for (size_t i = 0; i < n; i++)
                hv_close(hosts[i].hv);
        return r;
}
