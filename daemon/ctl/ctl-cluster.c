/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl cluster: the daemon's live view of its cluster. Each host (this
 * one and its peers) up or down with the reason, what its hypervisor offers,
 * whether it can present the guest set; the guest set itself; the hosts that
 * limit it and what leaving them out would gain.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl-call.h"
#include "ctl-cpu.h"
#include "ctl-json.h"
#include "macro.h"
#include "svemig/migrate.h"

/* ---- JSON ---- */

static struct json_object *json_names(char **names, size_t n)
{
        struct json_object *a = json_object_new_array();

        for (size_t i = 0; i < n; i++)
                json_object_array_add(a, json_object_new_string(names[i]));
        return a;
}

/* A string, or null when empty. */
static struct json_object *json_str(const char *s)
{
        return s && s[0] ? json_object_new_string(s) : NULL;
}

static struct json_object *json_host(const Svemig__Api__ClusterHost *h)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "name", json_object_new_string(h->name));
        json_object_object_add(o, "self", json_object_new_boolean(h->self));
        json_object_object_add(o, "address", json_str(h->address));
        json_object_object_add(o, "state", json_object_new_string(h->up ? "up" : "down"));
        json_object_object_add(o, "down_reason", h->up ? NULL : json_str(h->down_reason));
        json_object_object_add(o, "since_ns", json_object_new_int64((int64_t)h->since_ns));
        json_object_object_add(o, "backend", h->known ? json_str(h->backend) : NULL);
        json_object_object_add(o, "kernel", h->known ? json_str(h->kernel) : NULL);
        json_object_object_add(o, "sve", h->known ? json_object_new_boolean(h->sve) : NULL);
        json_object_object_add(o, "vl_bits", h->known ? ctl_json_u32s(h->vl_bits, h->n_vl_bits) : NULL);
        json_object_object_add(o, "svemig_version", h->known ? json_str(h->svemig_version) : NULL);
        json_object_object_add(o, "counted", json_object_new_boolean(h->counted));
        json_object_object_add(o, "can_present",
                               h->counted ? json_object_new_boolean(h->can_present) : NULL);
        json_object_object_add(o, "reason",
                               h->counted && !h->can_present ? json_str(h->present_reason) : NULL);
        json_object_object_add(o, "limiting", json_object_new_boolean(h->limiting));
        json_object_object_add(o, "id_difference", json_str(h->id_difference));
        {
                struct json_object *stuck = json_object_new_array();

                for (size_t k = 0; k < h->n_libvirt_stuck; k++) {
                        const Svemig__Api__LibvirtDomain *dom = h->libvirt_stuck[k];
                        struct json_object *d = json_object_new_object();

                        json_object_object_add(d, "name", json_object_new_string(dom->name));
                        json_object_object_add(d, "state", json_object_new_string(dom->state));
                        json_object_object_add(d, "vl_bits", ctl_json_u32s(dom->vl_bits, dom->n_vl_bits));
                        json_object_object_add(d, "could_not_move_to",
                                               json_names(dom->stuck_at, dom->n_stuck_at));
                        json_object_object_add(d, "why", json_names(dom->stuck_why, dom->n_stuck_why));
                        json_object_array_add(stuck, d);
                }
                json_object_object_add(o, "libvirt_stuck", stuck);
                json_object_object_add(o, "libvirt_stuck_total",
                                       json_object_new_int64(h->libvirt_stuck_total));
        }
        return o;
}

/* The CPU baseline over the hosts up that told their ID registers, from what svemigd reports. */
struct cluster_cpu {
        struct cpubase_host *hosts;
        struct cpubase_reg *regs;
        const char **names;
        struct cpubase_result res;
        bool have;
};

static void cluster_cpu_done(struct cluster_cpu *c)
{
        cpubase_result_done(&c->res);
        free(c->hosts);
        free(c->regs);
        free(c->names);
}

static void cluster_cpu_compute(const Svemig__Api__ClusterView *v, struct cluster_cpu *c)
{
        size_t total = 0, k = 0, counted = 0;

        *c = (struct cluster_cpu){0};
        for (size_t i = 0; i < v->n_hosts; i++)
                total += v->hosts[i]->n_cpu;
        c->hosts = calloc(v->n_hosts ? v->n_hosts : 1, sizeof(*c->hosts));
        c->regs = calloc(total ? total : 1, sizeof(*c->regs));
        c->names = calloc(v->n_hosts ? v->n_hosts : 1, sizeof(*c->names));
        if (!c->hosts || !c->regs || !c->names)
                return;
        for (size_t i = 0; i < v->n_hosts; i++) {
                const Svemig__Api__ClusterHost *h = v->hosts[i];

                c->names[i] = h->name;
                c->hosts[i] = (struct cpubase_host){h->name, h->up && h->n_cpu > 0, c->regs + k, h->n_cpu};
                counted += c->hosts[i].counted;
                for (size_t j = 0; j < h->n_cpu; j++)
                        c->regs[k++] =
                                (struct cpubase_reg){h->cpu[j]->id, h->cpu[j]->value, h->cpu[j]->writable};
        }
        c->have = counted > 0 && cpubase_compute(c->hosts, v->n_hosts, &c->res, NULL) == 0;
}

static int print_json(const Svemig__Api__ClusterView *v)
{
        struct json_object *root = json_object_new_object(), *hosts = json_object_new_array();

        for (size_t i = 0; i < v->n_hosts; i++) {
                if (v->hosts[i]->self)
                        json_object_object_add(root, "self", json_object_new_string(v->hosts[i]->name));
                json_object_array_add(hosts, json_host(v->hosts[i]));
        }
        json_object_object_add(root, "listen", json_str(v->listen));
        json_object_object_add(root, "store", json_str(v->store[0] ? v->store : "static"));
        json_object_object_add(root, "stale", json_object_new_boolean(v->stale));
        json_object_object_add(root, "stale_reason", v->stale ? json_str(v->stale_reason) : NULL);
        json_object_object_add(root, "cluster_set", json_str(v->cluster_set));
        json_object_object_add(root, "pinned", json_object_new_boolean(v->pinned));
        json_object_object_add(root, "refused", json_str(v->refused));
        json_object_object_add(root, "stale_since_ns",
                               v->stale ? json_object_new_int64((int64_t)v->stale_since_ns) : NULL);
        json_object_object_add(root, "refresh_ms", json_object_new_int64(v->refresh_ms));
        json_object_object_add(root, "generation", json_object_new_int64((int64_t)v->generation));
        json_object_object_add(root, "guest_bits", ctl_json_u32s(v->guest_bits, v->n_guest_bits));
        json_object_object_add(root, "max_bits", json_object_new_int64(v->max_bits));
        json_object_object_add(root, "limiting", json_names(v->limiting, v->n_limiting));
        if (v->without_limiting) {
                const Svemig__Api__ClusterGain *g = v->without_limiting;
                struct json_object *w = json_object_new_object();

                json_object_object_add(w, "excluded", json_names(g->excluded, g->n_excluded));
                json_object_object_add(w, "guest_bits", ctl_json_u32s(g->guest_bits, g->n_guest_bits));
                json_object_object_add(w, "max_bits", json_object_new_int64(g->max_bits));
                json_object_object_add(root, "without_limiting", w);
        } else {
                json_object_object_add(root, "without_limiting", NULL);
        }
        json_object_object_add(root, "hosts", hosts);
        {
                _cleanup_(cluster_cpu_done) struct cluster_cpu cpu;

                cluster_cpu_compute(v, &cpu);
                json_object_object_add(root, "cpu", cpu.have ? ctl_cpu_json(&cpu.res) : NULL);
        }
        return ctl_print_json(root);
}

/* ---- for a person ---- */

static void print_bits(const uint32_t *bits, size_t n)
{
        for (size_t i = 0; i < n; i++)
                printf("%s%u", i ? "," : "", bits[i]);
}

static void print_set(const uint32_t *bits, size_t n, uint32_t max)
{
        if (n == 0) {
                puts("no common SVE; FPSIMD only");
                return;
        }
        print_bits(bits, n);
        printf(" bits (maximum %u bits)\n", max);
}

static void print_names(char **names, size_t n)
{
        for (size_t i = 0; i < n; i++)
                printf("%s%s", i ? ", " : "", names[i]);
}

/*
 * The lowest length the others would gain is the one the limiting hosts
 * lack: every length below it was common already.
 */
static void print_lacking(const Svemig__Api__ClusterView *v)
{
        const Svemig__Api__ClusterGain *g = v->without_limiting;

        if (!g)
                return;
        for (size_t i = 0; i < g->n_guest_bits; i++) {
                bool common = false;

                for (size_t j = 0; j < v->n_guest_bits; j++)
                        common |= v->guest_bits[j] == g->guest_bits[i];
                if (!common) {
                        printf(" (lacking %u bits, which another host offers)", g->guest_bits[i]);
                        return;
                }
        }
}

static const char *vls_text(const Svemig__Api__ClusterHost *h, char *buf, size_t len)
{
        size_t off = 0;

        if (!h->known)
                return "-";
        if (!h->sve || h->n_vl_bits == 0)
                return "none (no SVE)";
        buf[0] = '\0';
        for (size_t i = 0; i < h->n_vl_bits && off < len; i++)
                off += (size_t)snprintf(buf + off, len - off, "%s%u", i ? "," : "", h->vl_bits[i]);
        return buf;
}

static void format_since(uint64_t ns, char *buf, size_t len)
{
        time_t t = (time_t)(ns / 1000000000ull);
        struct tm tm;

        if (!ns || !localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(buf, len, "?");
}

static int print_human(const Svemig__Api__ClusterView *v)
{
        int name_w = 4, vls_w = 10, kernel_w = 6, backend_w = 7;
        size_t n_up = 0;
        char vls[4096], name[128], since[64];

        for (size_t i = 0; i < v->n_hosts; i++) {
                const Svemig__Api__ClusterHost *h = v->hosts[i];

                n_up += h->up;
                name_w = MAX(name_w, (int)strlen(h->name) + (h->self ? 7 : 0));
                vls_w = MAX(vls_w, (int)strlen(vls_text(h, vls, sizeof(vls))));
                if (h->known) {
                        kernel_w = MAX(kernel_w, (int)strlen(h->kernel));
                        backend_w = MAX(backend_w, (int)strlen(h->backend));
                }
        }

        if (v->store[0] && strcmp(v->store, "static") != 0)
                printf("hosts:     %zu, %zu up; from %s; %s%s\n", v->n_hosts, n_up, v->store,
                       v->listen[0] ? "listening on " : "not listening for peers", v->listen);
        else
                printf("hosts:     %zu, %zu up; peers asked every %u ms; %s%s\n", v->n_hosts, n_up,
                       v->refresh_ms, v->listen[0] ? "listening on " : "not listening for peers", v->listen);
        if (v->stale) {
                format_since(v->stale_since_ns, since, sizeof(since));
                printf("STALE:     since %s: %s\n"
                       "           (the hosts below are as last known; a migration is still judged by its\n"
                       "           destination's own facts)\n",
                       since, v->stale_reason);
        }
        if (v->refused[0])
                printf("REFUSED:   this host is not in the cluster: %s\n", v->refused);
        if (v->cluster_set[0] && v->pinned)
                printf("set:       %s, its guest set pinned in etcd (a host that cannot present it stays "
                       "out)\n",
                       v->cluster_set);
        else if (v->cluster_set[0])
                printf("set:       %s, not defined in etcd yet\n", v->cluster_set);
        fputs("guest set: ", stdout);
        print_set(v->guest_bits, v->n_guest_bits, v->max_bits);
        if (v->n_limiting == 0 && v->pinned) {
                puts("limiting:  none (the set is pinned)");
        } else if (v->n_limiting == 0) {
                puts("limiting:  none (every host up offers the same lengths)");
        } else {
                fputs("limiting:  ", stdout);
                print_names(v->limiting, v->n_limiting);
                print_lacking(v);
                putchar('\n');
        }
        if (v->without_limiting) {
                fputs("without ", stdout);
                print_names(v->without_limiting->excluded, v->without_limiting->n_excluded);
                fputs(": ", stdout);
                print_set(v->without_limiting->guest_bits, v->without_limiting->n_guest_bits,
                          v->without_limiting->max_bits);
        }

        printf("\n%-*s  %-5s  %-*s  %-*s  %-*s  %s\n", name_w, "HOST", "STATE", backend_w, "BACKEND",
               kernel_w, "KERNEL", vls_w, "VLS (bits)", "CAN PRESENT");
        for (size_t i = 0; i < v->n_hosts; i++) {
                const Svemig__Api__ClusterHost *h = v->hosts[i];

                snprintf(name, sizeof(name), "%s%s", h->name, h->self ? " (self)" : "");
                printf("%-*s  %-5s  %-*s  %-*s  %-*s  %s%s\n", name_w, name, h->up ? "up" : "down",
                       backend_w, h->known ? h->backend : "-", kernel_w, h->known ? h->kernel : "-", vls_w,
                       vls_text(h, vls, sizeof(vls)),
                       !h->counted      ? "- (not counted)"
                       : h->can_present ? "yes"
                                        : "no",
                       h->limiting ? ", limiting" : "");
        }
        for (size_t i = 0; i < v->n_hosts; i++) {
                const Svemig__Api__ClusterHost *h = v->hosts[i];
                size_t shown = 0;

                format_since(h->since_ns, since, sizeof(since));
                if (!h->up)
                        printf("%s (%s): down since %s: %s\n", h->name, h->address, since, h->down_reason);
                else if (h->counted && !h->can_present && v->pinned)
                        printf("%s: the guests cannot move there: it cannot present the pinned set: %s\n",
                               h->name, h->present_reason);
                else if (h->counted && !h->can_present)
                        printf("%s: cannot present the guest set: %s\n", h->name, h->present_reason);
                if (h->id_difference[0])
                        printf("%s: its ID registers differ from this host's: %s (a guest created with "
                               "--cpu host may not move between them; one at the CPU baseline below can)\n",
                               h->name, h->id_difference);
                for (size_t k = 0; k < h->n_libvirt_stuck; k++) {
                        const Svemig__Api__LibvirtDomain *dom = h->libvirt_stuck[k];

                        for (size_t j = 0; j < dom->n_stuck_at && j < dom->n_stuck_why; j++)
                                printf("%s: libvirt domain %s (%s) could not move to %s: %s\n", h->name,
                                       dom->name, dom->state, dom->stuck_at[j], dom->stuck_why[j]);
                        shown += dom->n_stuck_at;
                }
                if (h->libvirt_stuck_total > shown)
                        printf("%s: and %zu more libvirt domain(s) or host(s) it could not move to (a host "
                               "tells its peers %u at most; 'svemigctl libvirt list' on %s shows all)\n",
                               h->name, (size_t)h->libvirt_stuck_total - shown, PEER_STUCK_MAX, h->name);
        }
        {
                _cleanup_(cluster_cpu_done) struct cluster_cpu cpu;

                cluster_cpu_compute(v, &cpu);
                if (cpu.have)
                        ctl_cpu_print(cpu.names, &cpu.res);
                else
                        puts("CPU baseline: unknown (no host up told its ID registers)");
        }
        return CTL_EXIT_OK;
}

static void help(void)
{
        printf("Usage: svemigctl [--socket PATH] cluster [--json]\n\n"
               "Show the daemon's live view of its cluster: this host and each peer (from migrate.conf or "
               "etcd),\n"
               "up or down (with the reason; a peer that is down is retried), its backend, kernel and SVE\n"
               "vector lengths (the host VLS), and whether it can present the guest set. The guest set is\n"
               "the one every host that is up can present (what 'guest create --vl cluster' gives); the\n"
               "limiting hosts lack the lowest length another host offers, and 'without' shows the set\n"
               "the others would offer without them.\n\n"
               "  -j, --json  print one JSON object:\n"
               "      self, listen, refresh_ms, generation (bumps with every change),\n"
               "      store (\"static\" or \"etcd URL,... under PREFIX\"), stale (the store cannot vouch\n"
               "      for the hosts now: they are as last known), stale_reason, stale_since_ns,\n"
               "      cluster_set (or null), pinned (its guest set pinned in etcd), refused (why this\n"
               "      host stays out of the cluster, or null),\n"
               "      guest_bits (empty: FPSIMD only), max_bits, limiting (host names),\n"
               "      without_limiting {excluded, guest_bits, max_bits} or null,\n"
               "      hosts [{name, self, address, state (\"up\"/\"down\"), down_reason, since_ns,\n"
               "              backend, kernel, sve, vl_bits, svemig_version (null until known),\n"
               "              counted, can_present (null when not counted), reason, limiting,\n"
               "              id_difference (the first ID register differing from this host's, or null),\n"
               "              libvirt_stuck [{name, state, vl_bits, could_not_move_to, why}] (the host's\n"
               "              libvirt domains that could not move to some host up, as it tells its peers:\n"
               "              at most 8 (domain, host) pairs), libvirt_stuck_total (the pairs it had)}],\n"
               "      cpu: the CPU baseline over the hosts up, as 'negotiate --json' shows it (null when\n"
               "           no host told its ID registers)\n"
               "  -h, --help  this text\n");
}

int ctl_cluster(const struct ctl_options *opts, int argc, char **argv)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__ClusterRequest creq = SVEMIG__API__CLUSTER_REQUEST__INIT;
        Svemig__Api__Response *resp = NULL;
        bool json = opts->json;
        int r;

        r = ctl_parse_json_help("cluster", argc, argv, help, &json);
        if (r >= 0)
                return r;
        if (optind < argc)
                return ctl_usage_error("cluster: takes no arguments");

        req.op_case = SVEMIG__API__REQUEST__OP_CLUSTER;
        req.cluster = &creq;
        r = ctl_call(opts, "cluster", &req, NULL, NULL, &resp);
        if (r != CTL_EXIT_OK)
                return r;
        if (resp->result_case != SVEMIG__API__RESPONSE__RESULT_CLUSTER) {
                fputs("svemigctl: cluster: svemigd answered without a cluster view\n", stderr);
                r = CTL_EXIT_FAILURE;
        } else
                r = json ? print_json(resp->cluster) : print_human(resp->cluster);
        svemig__api__response__free_unpacked(resp, NULL);
        return r;
}
