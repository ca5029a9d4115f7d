/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl negotiate HOST HOST...: the guest vector-length set a cluster of
 * hosts can all present (DESIGN.md "Vector-length negotiation"), which hosts
 * hold it down, and what leaving them out would gain. A HOST is a set, or a
 * file `svemigctl host-info --json` wrote; with files for every host it also
 * negotiates the CPU baseline (docs/cpu-baseline.md).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <inttypes.h>

#include "ctl-cpu.h"
#include "ctl-json.h"
#include "ctl.h"
#include "macro.h"
#include "svemig/cpubase.h"
#include "svemig/vqset.h"

/* Long enough for any set in any form: 512 entries of "65536,". */
#define SET_TEXT_MAX (VQSET_VQ_MAX * 6 + 8)

static void cluster_donep(struct vqset_cluster *c)
{
        vqset_cluster_done(c);
}

/* One host as given: its VL set, and its feature ID registers when it came from a file. */
struct host_arg {
        const char *name;
        struct cpubase_reg *regs; /* NULL: a bare set, no CPU facts */
        size_t n_regs;
};

static bool is_host_file(const char *arg)
{
        size_t n = strlen(arg);

        return strchr(arg, '/') || (n > 5 && strcmp(arg + n - 5, ".json") == 0);
}

static int hex_u64(struct json_object *o, uint64_t *out)
{
        const char *s = json_object_get_string(o);
        char *end;

        if (!s || strncmp(s, "0x", 2) != 0)
                return -EINVAL;
        errno = 0;
        *out = strtoull(s, &end, 16);
        return errno || *end ? -EINVAL : 0;
}

/* A host-info --json file: its vector lengths and its feature ID registers with their writable bits. */
static int read_host_file(const char *path, vqset_t *vls, struct host_arg *h, char *why, size_t len)
{
        struct json_object *root = json_object_from_file(path), *bits, *regs, *w;
        size_t n = 0;

        if (!root) {
                snprintf(why, len, "%s: %s", path, json_util_get_last_err());
                return -EINVAL;
        }
        *vls = (vqset_t){0};
        if (!json_object_object_get_ex(root, "vl_bits", &bits) ||
            !json_object_is_type(bits, json_type_array) ||
            !json_object_object_get_ex(root, "id_regs", &regs) ||
            !json_object_is_type(regs, json_type_object)) {
                snprintf(why, len,
                         "%s: not what 'svemigctl host-info --json' writes (no vl_bits or id_regs)", path);
                json_object_put(root);
                return -EINVAL;
        }
        for (size_t i = 0; i < json_object_array_length(bits); i++) {
                int64_t b = json_object_get_int64(json_object_array_get_idx(bits, i));

                if (b <= 0 || b % 128 || b / 128 > VQSET_VQ_MAX) {
                        snprintf(why, len, "%s: vl_bits holds %" PRId64 ", not a vector length", path, b);
                        json_object_put(root);
                        return -EINVAL;
                }
                vqset_add(vls, (unsigned)(b / 128));
        }
        h->regs = calloc(json_object_object_length(regs) + 1, sizeof(*h->regs));
        if (!h->regs) {
                json_object_put(root);
                return -ENOMEM;
        }
        json_object_object_foreach(regs, key, val)
        {
                uint64_t id, v;
                char *end;

                errno = 0;
                id = strtoull(key, &end, 16);
                if (errno || *end || hex_u64(val, &v) < 0) {
                        snprintf(why, len, "%s: id_regs entry \"%s\" is not \"0x<id>\": \"0x<value>\"", path,
                                 key);
                        json_object_put(root);
                        return -EINVAL;
                }
                if (idreg_mask_index(id) >= 0)
                        h->regs[n++] = (struct cpubase_reg){id, v, 0};
        }
        h->n_regs = n;
        if (json_object_object_get_ex(root, "id_writable", &w) && json_object_is_type(w, json_type_object))
                for (size_t i = 0; i < n; i++) {
                        char id[24];
                        struct json_object *m;

                        snprintf(id, sizeof(id), "0x%016" PRIx64, h->regs[i].id);
                        if (json_object_object_get_ex(w, id, &m) && hex_u64(m, &h->regs[i].writable) < 0) {
                                snprintf(why, len, "%s: id_writable[%s] is not \"0x<bits>\"", path, id);
                                json_object_put(root);
                                return -EINVAL;
                        }
                }
        json_object_put(root);
        return 0;
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

/* ---- the CPU baseline ---- */

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
                      const struct vqset_cluster *without, const struct cpubase_result *cpu)
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
        json_object_object_add(root, "cpu", cpu ? ctl_cpu_json(cpu) : NULL);
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
                       const struct vqset_cluster *without, const struct host_arg *args,
                       const struct cpubase_result *cpu)
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
        {
                const char **names = calloc(c->n_hosts ? c->n_hosts : 1, sizeof(*names));

                for (size_t i = 0; names && i < c->n_hosts; i++)
                        names[i] = args[i].name;
                if (names)
                        ctl_cpu_print(names, cpu);
                free(names);
        }
        return CTL_EXIT_OK;
}

static void help(void)
{
        printf("Usage: svemigctl [--json] negotiate HOST HOST...\n\n"
               "Compute the SVE vector lengths a guest can use on every host of a cluster, and the CPU\n"
               "(the ID registers) it can see on every one. Each HOST is one host's lengths as its\n"
               "hypervisor offers them, \"128,256,512\", \"128-512\", \"vq1,vq2,vq4\", \"vq1-vq4\", the "
               "SVE_VLS\n"
               "bitmap \"0xb\", or \"none\" for a host without SVE; or a file that 'svemigctl host-info\n"
               "--json' wrote on that host (a path with a '/' or ending in .json), which also gives its ID\n"
               "registers and those its kernel lets a VMM write. With a file for every host, the CPU\n"
               "baseline is negotiated too (docs/cpu-baseline.md).\n\n"
               "  -j, --json  print one JSON object\n"
               "  -h, --help  this text\n\n"
               "Exits 0 with a guest set, 3 when the hosts share no SVE (FPSIMD only), 4 when no CPU\n"
               "baseline exists (a field no value of which every host can present), 2 on bad input.\n");
}

static void host_args_free(struct host_arg *a, size_t n)
{
        for (size_t i = 0; a && i < n; i++)
                free(a[i].regs);
        free(a);
}

int ctl_negotiate(const struct ctl_options *opts, int argc, char **argv)
{
        _cleanup_(cluster_donep) struct vqset_cluster cluster = {0}, without = {0};
        _cleanup_free_ vqset_t *hosts = NULL, *rest = NULL;
        _cleanup_free_ struct cpubase_host *cpu_hosts = NULL;
        struct cpubase_result cpu = {0};
        struct host_arg *args = NULL;
        struct svemig_error err = {0};
        bool json = opts->json, have_without = false, have_cpu = true;
        char why[512];
        size_t n;
        int r;

        r = ctl_parse_json_help("negotiate", argc, argv, help, &json);
        if (r >= 0)
                return r;

        n = (size_t)(argc - optind);
        if (n == 0)
                return ctl_usage_error("negotiate: give one SET or host-info file per host, e.g. "
                                       "'svemigctl negotiate 128,256,512 128,256'");

        hosts = calloc(n, sizeof(*hosts));
        rest = calloc(n, sizeof(*rest));
        args = calloc(n, sizeof(*args));
        cpu_hosts = calloc(n, sizeof(*cpu_hosts));
        if (!hosts || !rest || !args || !cpu_hosts) {
                host_args_free(args, n);
                fputs("svemigctl: negotiate: out of memory\n", stderr);
                return CTL_EXIT_FAILURE;
        }

        for (size_t i = 0; i < n; i++) {
                const char *arg = argv[optind + (int)i];

                args[i].name = arg;
                if (is_host_file(arg)) {
                        r = read_host_file(arg, &hosts[i], &args[i], why, sizeof(why));
                        if (r < 0) {
                                host_args_free(args, n);
                                return ctl_usage_error("negotiate: host %zu: %s", i,
                                                       r == -ENOMEM ? "out of memory" : why);
                        }
                        cpu_hosts[i] = (struct cpubase_host){arg, true, args[i].regs, args[i].n_regs};
                        continue;
                }
                have_cpu = false;
                r = vqset_parse(arg, &hosts[i], &err);
                if (r < 0) {
                        host_args_free(args, n);
                        return ctl_usage_error("negotiate: host %zu: %s", i, svemig_error_str(&err, r));
                }
        }

        r = vqset_negotiate(hosts, n, &cluster, &err);
        /* Limiting hosts lack a length some other host has, so at least one host remains. */
        if (r == 0 && cluster.n_limiting > 0) {
                r = vqset_negotiate(rest, hosts_without_limiting(hosts, &cluster, rest), &without, &err);
                have_without = r == 0;
        }
        if (r == 0 && have_cpu)
                r = cpubase_compute(cpu_hosts, n, &cpu, &err);
        if (r < 0) {
                host_args_free(args, n);
                cpubase_result_done(&cpu);
                fprintf(stderr, "svemigctl: negotiate: %s\n", svemig_error_str(&err, r));
                return CTL_EXIT_FAILURE;
        }

        r = json ? print_json(hosts, &cluster, have_without ? &without : NULL, have_cpu ? &cpu : NULL)
                 : print_human(hosts, &cluster, have_without ? &without : NULL, args,
                               have_cpu ? &cpu : NULL);
        host_args_free(args, n);
        if (r == CTL_EXIT_OK && fflush(stdout) != 0) {
                perror("svemigctl: negotiate: writing the result");
                r = CTL_EXIT_FAILURE;
        }
        if (r == CTL_EXIT_OK && have_cpu && cpu.n_conflicts)
                r = CTL_EXIT_INCOMPATIBLE;
        else if (r == CTL_EXIT_OK && vqset_empty(&cluster.guest))
                r = CTL_EXIT_NO_SVE;
        cpubase_result_done(&cpu);
        return r;
}
