/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl negotiate SET SET...: the guest vector-length set a cluster of
 * hosts can all present (DESIGN.md "Vector-length negotiation"), which hosts
 * hold it down, and what leaving them out would gain.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-json.h"
#include "ctl.h"
#include "macro.h"
#include "svemig/vqset.h"

/* Long enough for any set in any form: 512 entries of "65536,". */
#define SET_TEXT_MAX (VQSET_VQ_MAX * 6 + 8)

static void cluster_donep(struct vqset_cluster *c)
{
        vqset_cluster_done(c);
}

/* The hosts not marked limiting, for the re-run that shows what leaving those out would gain. */
static size_t hosts_without_limiting(const vqset_t *hosts, const struct vqset_cluster *c, vqset_t *rest)
{
        size_t n = 0;

        for (size_t i = 0; i < c->n_hosts; i++)
                if (!c->limiting[i])
                        rest[n++] = hosts[i];
        return n;
}

/* ---- JSON ---- */

static struct json_object *json_limiting(const struct vqset_cluster *c)
{
        struct json_object *a = json_object_new_array();

        for (size_t i = 0; i < c->n_hosts; i++)
                if (c->limiting[i])
                        json_object_array_add(a, json_object_new_int64((int64_t)i));
        return a;
}

static int print_json(const vqset_t *hosts, const struct vqset_cluster *c,
                      const struct vqset_cluster *without)
{
        struct json_object *root = json_object_new_object(), *list = json_object_new_array();

        json_object_object_add(root, "guest_bits", ctl_json_vq_bits(&c->guest));
        json_object_object_add(root, "max_bits", json_object_new_int((int32_t)vq_to_bits(c->max_vq)));
        json_object_object_add(root, "limiting", json_limiting(c));

        for (size_t i = 0; i < c->n_hosts; i++) {
                struct json_object *h = json_object_new_object();
                char reason[256];

                json_object_object_add(h, "index", json_object_new_int64((int64_t)i));
                json_object_object_add(h, "bits", ctl_json_vq_bits(&hosts[i]));
                json_object_object_add(h, "can_present", json_object_new_boolean(c->hosts[i].can_present));
                if (c->hosts[i].can_present) {
                        json_object_object_add(h, "reason", NULL);
                } else {
                        vqset_reason_format(&c->hosts[i].reason, reason, sizeof(reason));
                        json_object_object_add(h, "reason", json_object_new_string(reason));
                }
                json_object_array_add(list, h);
        }
        json_object_object_add(root, "hosts", list);

        /* Beyond the kernel: what the cluster would offer without its limiting hosts. */
        if (without) {
                struct json_object *w = json_object_new_object();

                json_object_object_add(w, "excluded", json_limiting(c));
                json_object_object_add(w, "guest_bits", ctl_json_vq_bits(&without->guest));
                json_object_object_add(w, "max_bits",
                                       json_object_new_int((int32_t)vq_to_bits(without->max_vq)));
                json_object_object_add(root, "without_limiting", w);
        } else {
                json_object_object_add(root, "without_limiting", NULL);
        }
        return ctl_print_json(root);
}

/* ---- for a person ---- */

static const char *set_text(const vqset_t *s, char *buf, size_t len)
{
        if (vqset_empty(s))
                return "no SVE";
        vqset_format(s, VQSET_FORMAT_BITS, buf, len);
        return buf;
}

static void print_host_list(const struct vqset_cluster *c)
{
        const char *sep = "";

        for (size_t i = 0; i < c->n_hosts; i++)
                if (c->limiting[i]) {
                        printf("%s%zu", sep, i);
                        sep = ", ";
                }
}

static void print_guest(const vqset_t *guest, unsigned max_vq)
{
        char buf[SET_TEXT_MAX];

        if (vqset_empty(guest)) {
                puts("no common SVE; FPSIMD only");
                return;
        }
        vqset_format(guest, VQSET_FORMAT_BITS, buf, sizeof(buf));
        printf("%s bits (maximum %u bits)\n", buf, vq_to_bits(max_vq));
}

static int print_human(const vqset_t *hosts, const struct vqset_cluster *c,
                       const struct vqset_cluster *without)
{
        char buf[SET_TEXT_MAX], reason[256];

        fputs("guest set: ", stdout);
        print_guest(&c->guest, c->max_vq);

        if (c->n_limiting == 0) {
                puts("limiting:  none (every host offers the same lengths)");
        } else {
                printf("limiting:  host%s ", c->n_limiting > 1 ? "s" : "");
                print_host_list(c);
                /*
                 * The lowest length the others would gain is the one the
                 * limiting hosts lack: every length below it was common.
                 */
                if (without) {
                        vqset_t gained = vqset_andnot(&without->guest, &c->guest);
                        unsigned vq = vqset_lowest(&gained);

                        if (vq)
                                printf(" (lacking %u bits, which another host offers)", vq_to_bits(vq));
                }
                putchar('\n');
        }

        for (size_t i = 0; i < c->n_hosts; i++) {
                printf("host %zu%s: %s: ", i, c->limiting[i] ? " (limiting)" : "",
                       set_text(&hosts[i], buf, sizeof(buf)));
                if (c->hosts[i].can_present) {
                        puts(vqset_empty(&c->guest) ? "yes (FPSIMD only)" : "yes");
                } else {
                        vqset_reason_format(&c->hosts[i].reason, reason, sizeof(reason));
                        printf("no, %s\n", reason);
                }
        }

        if (without) {
                printf("without host%s ", c->n_limiting > 1 ? "s" : "");
                print_host_list(c);
                fputs(": ", stdout);
                print_guest(&without->guest, without->max_vq);
        }
        return CTL_EXIT_OK;
}

static void help(void)
{
        printf("Usage: svemigctl [--json] negotiate SET SET...\n\n"
               "Compute the SVE vector lengths a guest can use on every host of a cluster. Each SET is\n"
               "one host's lengths as its hypervisor offers them: \"128,256,512\", \"128-512\",\n"
               "\"vq1,vq2,vq4\", \"vq1-vq4\", the SVE_VLS bitmap \"0xb\", or \"none\" for a host without "
               "SVE.\n\n"
               "  -j, --json  print one JSON object\n"
               "  -h, --help  this text\n\n"
               "Exits 0 with a guest set, 3 when the hosts share no SVE (FPSIMD only), 2 on bad input.\n");
}

int ctl_negotiate(const struct ctl_options *opts, int argc, char **argv)
{
        _cleanup_(cluster_donep) struct vqset_cluster cluster = {0}, without = {0};
        _cleanup_free_ vqset_t *hosts = NULL, *rest = NULL;
        struct svemig_error err = {0};
        bool json = opts->json, have_without = false;
        size_t n;
        int r;

        r = ctl_parse_json_help("negotiate", argc, argv, help, &json);
        if (r >= 0)
                return r;

        n = (size_t)(argc - optind);
        if (n == 0)
                return ctl_usage_error("negotiate: give one SET per host, e.g. "
                                       "'svemigctl negotiate 128,256,512 128,256'");

        hosts = calloc(n, sizeof(*hosts));
        rest = calloc(n, sizeof(*rest));
        if (!hosts || !rest) {
                fputs("svemigctl: negotiate: out of memory\n", stderr);
                return CTL_EXIT_FAILURE;
        }

        for (size_t i = 0; i < n; i++) {
                r = vqset_parse(argv[optind + (int)i], &hosts[i], &err);
                if (r < 0)
                        return ctl_usage_error("negotiate: host %zu: %s", i, svemig_error_str(&err, r));
        }

        r = vqset_negotiate(hosts, n, &cluster, &err);
        if (r < 0) {
                fprintf(stderr, "svemigctl: negotiate: %s\n", svemig_error_str(&err, r));
                return CTL_EXIT_FAILURE;
        }

        /* Limiting hosts lack a length some other host has, so at least one host remains. */
        if (cluster.n_limiting > 0) {
                r = vqset_negotiate(rest, hosts_without_limiting(hosts, &cluster, rest), &without, &err);
                if (r < 0) {
                        fprintf(stderr, "svemigctl: negotiate: %s\n", svemig_error_str(&err, r));
                        return CTL_EXIT_FAILURE;
                }
                have_without = true;
        }

        r = json ? print_json(hosts, &cluster, have_without ? &without : NULL)
                 : print_human(hosts, &cluster, have_without ? &without : NULL);
        if (r != CTL_EXIT_OK)
                return r;
        if (fflush(stdout) != 0) {
                perror("svemigctl: negotiate: writing the result");
                return CTL_EXIT_FAILURE;
        }
        return vqset_empty(&cluster.guest) ? CTL_EXIT_NO_SVE : CTL_EXIT_OK;
}
