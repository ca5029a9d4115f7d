/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl libvirt: libvirt's domains and the cluster's SVE set, through
 * the libvirt C API. 'pin' rewrites a domain's persistent <cpu> to the set
 * svemigd negotiated with its peers (libvirt-cpu.h), so it starts the same
 * on every host or is refused by the hook; 'list' shows each domain's SVE
 * lengths and whether it is pinned.
 *
 * libvirt's ABI check refuses any change of <cpu> across a migration, so
 * the set has to be right in the persistent definition: it takes effect at
 * the domain's next boot.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "ctl-call.h"
#include "ctl-json.h"
#include "libvirt-cpu.h"
#include "libvirt-state.h"
#include "macro.h"

struct libvirt_opts {
        const char *uri;
        bool all;
        bool check;
        bool json;
};

static void conn_closep(virConnectPtr *c)
{
        if (*c)
                virConnectClose(*c);
}

/* libvirt prints its errors itself by default; we word them. */
static void quiet_errors(void *userdata, virErrorPtr e)
{
        (void)userdata;
        (void)e;
}

static const char *last_error(void)
{
        const char *m = virGetLastErrorMessage();

        return m ? m : "unknown libvirt error";
}

static int open_conn(const char *uri, virConnectPtr *out)
{
        virSetErrorFunc(NULL, quiet_errors);
        *out = virConnectOpen(uri);
        if (!*out) {
                fprintf(stderr, "svemigctl: libvirt: cannot connect to %s: %s\n",
                        uri ? uri : "libvirt's default", last_error());
                return CTL_EXIT_FAILURE;
        }
        return CTL_EXIT_OK;
}

/* The set svemigd negotiated with its peers (svemigctl cluster). */
static int cluster_set(const struct ctl_options *opts, vqset_t *out)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__ClusterRequest creq = SVEMIG__API__CLUSTER_REQUEST__INIT;
        Svemig__Api__Response *resp = NULL;
        int ret;

        req.op_case = SVEMIG__API__REQUEST__OP_CLUSTER;
        req.cluster = &creq;
        ret = ctl_call(opts, "libvirt: the cluster's SVE set", &req, NULL, NULL, &resp);
        if (ret != CTL_EXIT_OK)
                return ret;
        vqset_clear(out);
        for (size_t i = 0; i < resp->cluster->n_guest_bits; i++)
                vqset_add(out, resp->cluster->guest_bits[i] / 128);
        svemig__api__response__free_unpacked(resp, NULL);
        return CTL_EXIT_OK;
}

/* The persistent definition (what the next boot uses) and what it says of SVE. */
static int domain_cpu(virDomainPtr dom, char **xml, struct libvirt_cpu *cpu)
{
        struct svemig_error err = {0};
        int r;

        *xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE);
        if (!*xml) {
                fprintf(stderr, "svemigctl: libvirt: domain %s: cannot read its XML: %s\n",
                        virDomainGetName(dom), last_error());
                return CTL_EXIT_FAILURE;
        }
        r = libvirt_cpu_parse(*xml, strlen(*xml), NULL, cpu, &err);
        if (r < 0) {
                fprintf(stderr, "svemigctl: libvirt: domain %s: %s\n", virDomainGetName(dom),
                        svemig_error_str(&err, r));
                free(*xml);
                *xml = NULL;
                return CTL_EXIT_FAILURE;
        }
        return CTL_EXIT_OK;
}

static void describe(const struct libvirt_cpu *cpu, char *buf, size_t len)
{
        if (!cpu->has_cpu)
                snprintf(buf, len, "no <cpu>: the host's lengths");
        else
                libvirt_cpu_format(cpu, buf, len);
}

static int pin_one(virConnectPtr conn, virDomainPtr dom, const vqset_t *set, const struct libvirt_opts *o,
                   bool *changed)
{
        _cleanup_free_ char *xml = NULL, *pinned = NULL;
        const char *name = virDomainGetName(dom);
        struct svemig_error err = {0};
        struct libvirt_cpu cpu;
        char was[256], want[256];
        virDomainPtr defined;
        int ret, r;

        ret = domain_cpu(dom, &xml, &cpu);
        if (ret != CTL_EXIT_OK)
                return ret;
        vqset_format(set, VQSET_FORMAT_BITS, want, sizeof(want));
        if (libvirt_cpu_pinned_to(&cpu, set)) {
                printf("%s: already pinned to the cluster's SVE set %s; not touched\n", name, want);
                return CTL_EXIT_OK;
        }
        *changed = true;
        describe(&cpu, was, sizeof(was));
        if (o->check) {
                printf("%s: SVE %s; not pinned to the cluster's set %s (svemigctl libvirt pin %s)\n", name,
                       was, want, name);
                return CTL_EXIT_OK;
        }
        r = libvirt_cpu_pin_xml(xml, strlen(xml), set, &pinned, &err);
        if (r < 0) {
                fprintf(stderr, "svemigctl: libvirt: domain %s: %s\n", name, svemig_error_str(&err, r));
                return CTL_EXIT_FAILURE;
        }
        defined = virDomainDefineXML(conn, pinned);
        if (!defined) {
                fprintf(stderr, "svemigctl: libvirt: domain %s: libvirt refused the pinned definition: %s\n",
                        name, last_error());
                return CTL_EXIT_FAILURE;
        }
        virDomainFree(defined);
        if (!vqset_empty(set) && cpu.has_cpu && strcmp(cpu.mode, "custom") == 0 &&
            !libvirt_cpu_model_has_sve(cpu.model))
                printf("%s: CPU model %s -> max (%s has no SVE)\n", name,
                       cpu.model[0] ? cpu.model : "(none)", cpu.model[0] ? cpu.model : "no model");
        printf("%s: SVE %s -> %s (sve%u and above disabled)%s\n", name, was, want,
               vqset_empty(set) ? 128 : vq_to_bits(vqset_highest(set) + 1),
               virDomainIsActive(dom) == 1
                       ? "; it runs on as it is: the new set takes effect at its next boot"
                       : "; takes effect when it next starts");
        return CTL_EXIT_OK;
}

static int pin(const struct ctl_options *opts, const struct libvirt_opts *o, int n, char **names)
{
        _cleanup_(conn_closep) virConnectPtr conn = NULL;
        virDomainPtr *doms = NULL;
        int ret, count = 0, worst = CTL_EXIT_OK;
        bool changed = false;
        vqset_t set;

        if (o->all == (n > 0))
                return ctl_usage_error("libvirt pin: name one or more domains, or --all");
        ret = cluster_set(opts, &set);
        if (ret == CTL_EXIT_OK)
                ret = open_conn(o->uri, &conn);
        if (ret != CTL_EXIT_OK)
                return ret;
        if (o->all) {
                count = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_PERSISTENT);
                if (count < 0) {
                        fprintf(stderr, "svemigctl: libvirt: cannot list domains: %s\n", last_error());
                        return CTL_EXIT_FAILURE;
                }
        } else {
                doms = calloc((size_t)n, sizeof(*doms));
                if (!doms)
                        return CTL_EXIT_FAILURE;
                for (count = 0; count < n; count++) {
                        doms[count] = virDomainLookupByName(conn, names[count]);
                        if (!doms[count]) {
                                fprintf(stderr, "svemigctl: libvirt: no domain %s: %s\n", names[count],
                                        last_error());
                                worst = CTL_EXIT_FAILURE;
                                break;
                        }
                }
        }
        for (int i = 0; i < count && worst == CTL_EXIT_OK; i++) {
                ret = pin_one(conn, doms[i], &set, o, &changed);
                if (ret != CTL_EXIT_OK)
                        worst = ret;
        }
        for (int i = 0; i < count; i++)
                virDomainFree(doms[i]);
        free(doms);
        /* --check: 4 says some domain is not pinned, as a host that cannot take a guest does. */
        if (worst == CTL_EXIT_OK && o->check && changed)
                return CTL_EXIT_INCOMPATIBLE;
        return worst;
}

static struct json_object *list_entry(virDomainPtr dom, const struct libvirt_cpu *cpu, bool pinned)
{
        struct json_object *o = json_object_new_object();
        int state = -1;
        char what[256];

        virDomainGetState(dom, &state, NULL, 0);
        describe(cpu, what, sizeof(what));
        json_object_object_add(o, "name", json_object_new_string(virDomainGetName(dom)));
        json_object_object_add(o, "state", json_object_new_string(libvirt_state_name(state)));
        json_object_object_add(o, "sve",
                               json_object_new_string(cpu->sve == LIBVIRT_SVE_OFF       ? "off"
                                                      : cpu->sve == LIBVIRT_SVE_LENGTHS ? "lengths"
                                                                                        : "default"));
        json_object_object_add(o, "required_bits", ctl_json_vq_bits(&cpu->required));
        json_object_object_add(o, "disabled_bits", ctl_json_vq_bits(&cpu->disabled));
        json_object_object_add(o, "description", json_object_new_string(what));
        json_object_object_add(o, "pinned", json_object_new_boolean(pinned));
        return o;
}

static int list(const struct ctl_options *opts, const struct libvirt_opts *o)
{
        _cleanup_(conn_closep) virConnectPtr conn = NULL;
        struct json_object *doc = NULL, *arr = NULL;
        virDomainPtr *doms = NULL;
        char set_text[256];
        int ret, count;
        vqset_t set;

        ret = cluster_set(opts, &set);
        if (ret == CTL_EXIT_OK)
                ret = open_conn(o->uri, &conn);
        if (ret != CTL_EXIT_OK)
                return ret;
        count = virConnectListAllDomains(conn, &doms, 0);
        if (count < 0) {
                fprintf(stderr, "svemigctl: libvirt: cannot list domains: %s\n", last_error());
                return CTL_EXIT_FAILURE;
        }
        vqset_format(&set, VQSET_FORMAT_BITS, set_text, sizeof(set_text));
        if (o->json) {
                doc = json_object_new_object();
                arr = json_object_new_array();
                json_object_object_add(doc, "cluster_bits", ctl_json_vq_bits(&set));
                json_object_object_add(doc, "domains", arr);
        } else {
                printf("cluster SVE set: %s\n%-20s %-10s %-7s %s\n", set_text, "DOMAIN", "STATE", "PINNED",
                       "SVE (persistent definition)");
        }
        for (int i = 0; i < count; i++) {
                _cleanup_free_ char *xml = NULL;
                struct libvirt_cpu cpu;
                char what[256];
                int state = -1;

                if (domain_cpu(doms[i], &xml, &cpu) != CTL_EXIT_OK) {
                        ret = CTL_EXIT_FAILURE;
                        continue;
                }
                if (o->json) {
                        json_object_array_add(arr,
                                              list_entry(doms[i], &cpu, libvirt_cpu_pinned_to(&cpu, &set)));
                        continue;
                }
                virDomainGetState(doms[i], &state, NULL, 0);
                describe(&cpu, what, sizeof(what));
                printf("%-20s %-10s %-7s %s\n", virDomainGetName(doms[i]), libvirt_state_name(state),
                       libvirt_cpu_pinned_to(&cpu, &set) ? "yes" : "no", what);
        }
        for (int i = 0; i < count; i++)
                virDomainFree(doms[i]);
        free(doms);
        if (o->json)
                return ctl_print_json(doc) == CTL_EXIT_OK ? ret : CTL_EXIT_FAILURE;
        return ret;
}

static void print_bits(const uint32_t *bits, size_t n)
{
        if (n == 0)
                fputs("none", stdout);
        for (size_t i = 0; i < n; i++)
                printf("%s%u", i ? "," : "", bits[i]);
}

static struct json_object *daemon_entry(const Svemig__Api__LibvirtDomain *dom)
{
        struct json_object *o = json_object_new_object(), *at = json_object_new_array(),
                           *why = json_object_new_array();

        json_object_object_add(o, "name", json_object_new_string(dom->name));
        json_object_object_add(o, "state", json_object_new_string(dom->state));
        json_object_object_add(o, "sve", json_object_new_string(dom->cpu ? dom->cpu->sve : "default"));
        json_object_object_add(o, "vl_bits", ctl_json_u32s(dom->vl_bits, dom->n_vl_bits));
        json_object_object_add(o, "presentable", json_object_new_boolean(dom->presentable));
        json_object_object_add(o, "reason", dom->reason[0] ? json_object_new_string(dom->reason) : NULL);
        json_object_object_add(o, "pinned", json_object_new_boolean(dom->pinned));
        for (size_t i = 0; i < dom->n_stuck_at && i < dom->n_stuck_why; i++) {
                json_object_array_add(at, json_object_new_string(dom->stuck_at[i]));
                json_object_array_add(why, json_object_new_string(dom->stuck_why[i]));
        }
        json_object_object_add(o, "could_not_move_to", at);
        json_object_object_add(o, "why", why);
        return o;
}

/* What svemigd sees of libvirt ([libvirt] uri): live state, the set here, where it could not go. */
static int list_daemon(const struct ctl_options *opts, const struct libvirt_opts *o)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__LibvirtListRequest lreq = SVEMIG__API__LIBVIRT_LIST_REQUEST__INIT;
        Svemig__Api__Response *resp = NULL;
        const Svemig__Api__LibvirtDomainList *l;
        int ret;

        req.op_case = SVEMIG__API__REQUEST__OP_LIBVIRT_LIST;
        req.libvirt_list = &lreq;
        ret = ctl_call(opts, "libvirt list", &req, NULL, NULL, &resp);
        if (ret != CTL_EXIT_OK)
                return ret;
        l = resp->libvirt_list;
        if (!l->uri[0]) {
                fprintf(stderr,
                        "svemigctl: libvirt list: svemigd does not follow libvirt: set [libvirt] uri in "
                        "its migrate.conf, or ask libvirt directly with --uri URI\n");
                svemig__api__response__free_unpacked(resp, NULL);
                return CTL_EXIT_FAILURE;
        }
        if (o->json) {
                struct json_object *doc = json_object_new_object(), *arr = json_object_new_array();

                json_object_object_add(doc, "uri", json_object_new_string(l->uri));
                json_object_object_add(doc, "connected", json_object_new_boolean(l->connected));
                json_object_object_add(doc, "error", l->error[0] ? json_object_new_string(l->error) : NULL);
                json_object_object_add(doc, "events", json_object_new_int64((int64_t)l->events));
                for (size_t i = 0; i < l->n_domains; i++)
                        json_object_array_add(arr, daemon_entry(l->domains[i]));
                json_object_object_add(doc, "domains", arr);
                svemig__api__response__free_unpacked(resp, NULL);
                return ctl_print_json(doc);
        }
        printf("libvirt: %s, %s%s%s\n", l->uri, l->connected ? "connected" : "not connected",
               l->connected ? "" : ": ", l->error);
        printf("%-20s %-10s %-7s %-14s %s\n", "DOMAIN", "STATE", "PINNED", "SVE HERE", "COULD NOT MOVE TO");
        for (size_t i = 0; i < l->n_domains; i++) {
                const Svemig__Api__LibvirtDomain *dom = l->domains[i];

                printf("%-20s %-10s %-7s ", dom->name, dom->state, dom->pinned ? "yes" : "no");
                if (dom->presentable)
                        print_bits(dom->vl_bits, dom->n_vl_bits);
                else
                        printf("refused: %s", dom->reason);
                for (size_t k = 0; k < dom->n_stuck_at && k < dom->n_stuck_why; k++)
                        printf("%s%s", k ? "; " : "  ", dom->stuck_why[k]);
                putchar('\n');
        }
        svemig__api__response__free_unpacked(resp, NULL);
        return CTL_EXIT_OK;
}

static void help(void)
{
        printf("Usage: svemigctl libvirt pin DOMAIN...|--all [--uri URI] [--check]\n"
               "       svemigctl libvirt list [--uri URI] [--json]\n\n"
               "pin: rewrite each domain's persistent <cpu> to the cluster's SVE set (svemigctl cluster):\n"
               "the set's lengths required, every other up to 2048 bits disabled; a domain without\n"
               "<cpu> gets <cpu mode='custom' match='exact'> with model max. The change takes effect at\n"
               "the domain's next boot. A domain already pinned is not touched. --check only reports,\n"
               "and exits 4 when some domain is not pinned.\n"
               "list: what svemigd sees of libvirt ([libvirt] uri in its migrate.conf), following its\n"
               "events: each domain's state, the SVE lengths it gets on this host (or why this host\n"
               "refuses it), whether it is pinned to the cluster's set, and the hosts up it could not\n"
               "move to, and why. With --uri, libvirt's persistent definitions, read directly.\n"
               "--uri: the libvirt connection (pin's default: libvirt's own, e.g. qemu:///system).\n");
}

int ctl_libvirt(const struct ctl_options *opts, int argc, char **argv)
{
        static const struct option longopts[] = {
                {"uri", required_argument, NULL, 'u'}, {"all", no_argument, NULL, 'a'},
                {"check", no_argument, NULL, 'c'},     {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},      {0},
        };
        struct libvirt_opts o = {.json = opts->json};
        const char *verb;
        int c;

        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                help();
                return argc < 2 ? CTL_EXIT_USAGE : CTL_EXIT_OK;
        }
        verb = argv[1];
        opterr = 0;
        optind = 0;
        while ((c = getopt_long(argc - 1, argv + 1, "u:acjh", longopts, NULL)) != -1) {
                switch (c) {
                case 'u':
                        o.uri = optarg;
                        break;
                case 'a':
                        o.all = true;
                        break;
                case 'c':
                        o.check = true;
                        break;
                case 'j':
                        o.json = true;
                        break;
                case 'h':
                        help();
                        return CTL_EXIT_OK;
                default:
                        return ctl_usage_error("libvirt %s: unknown option '%s'", verb, argv[optind]);
                }
        }
        if (strcmp(verb, "pin") == 0)
                return pin(opts, &o, argc - 1 - optind, argv + 1 + optind);
        if (strcmp(verb, "list") == 0) {
                if (optind < argc - 1 || o.all || o.check)
                        return ctl_usage_error("libvirt list takes only --uri and --json");
                return o.uri ? list(opts, &o) : list_daemon(opts, &o);
        }
        return ctl_usage_error("libvirt: unknown verb '%s'; the verbs are pin and list", verb);
}
