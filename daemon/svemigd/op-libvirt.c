/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libvirt operations: the hook's question (may this host start or take
 * this domain?) and the domains svemigd follows (libvirt-watch.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-ops.h"
#include "cluster-view.h"
#include "libvirt-cpu.h"
#include "libvirt-watch.h"
#include "op-libvirt.h"
#include "log.h"
#include "macro.h"
#include "svemigd.h"

#define VERDICT_MAX 512

static const char *op_verb(const char *operation)
{
        if (strcmp(operation, "migrate") == 0)
                return "take the incoming migration of";
        if (strcmp(operation, "restore") == 0)
                return "restore";
        return "start";
}

/* require-cluster-set: the first up peer that could not take the domain's set. */
static bool cluster_refuses(struct svemigd *d, const vqset_t *set, const char **host, char *why, size_t len)
{
        const struct membership_host *m;
        struct vqset_reason reason;
        vqset_t peer;
        size_t n;

        if (!d->cluster)
                return false;
        m = cluster_view_members(d->cluster, &n);
        for (size_t i = 0; i < n; i++) {
                if (m[i].self || !m[i].up || !m[i].known)
                        continue;
                vqset_clear(&peer);
                if (m[i].info.sve)
                        peer = m[i].info.vls;
                if (!vqset_can_present(&peer, set, &reason)) {
                        *host = m[i].name;
                        libvirt_cpu_reason_format(&reason, m[i].name, why, len);
                        return true;
                }
        }
        return false;
}

static int judge(struct svemigd *d, const Svemig__Api__LibvirtHookRequest *rq, const struct libvirt_cpu *cpu,
                 Svemig__Api__LibvirtHookVerdict *v, vqset_t *set, char *msg, struct svemig_error *err)
{
        const char *host = d->conf.host_name, *peer = NULL;
        char why[256], lengths[256];
        struct vqset_reason reason;
        struct hv_caps caps;
        int r;

        r = hv_get_caps(d->hv, &caps);
        if (r < 0)
                return svemig_error_set(err, -r, "cannot read the %s hypervisor's capabilities: %s",
                                        hv_backend_name(d->hv), strerror(-r));
        if (!caps.sve)
                vqset_clear(&caps.vls);
        if (!libvirt_cpu_on_host(cpu, &caps.vls, set, &reason)) {
                libvirt_cpu_reason_format(&reason, host, why, sizeof(why));
                vqset_format(&caps.vls, VQSET_FORMAT_BITS, lengths, sizeof(lengths));
                snprintf(msg, VERDICT_MAX,
                         "svemig: host %s cannot %s domain %s: %s (this host offers SVE lengths %s); pin "
                         "the domain to the cluster's set with 'svemigctl libvirt pin %s'",
                         host, op_verb(rq->operation), rq->domain, why, lengths, rq->domain);
                return 0;
        }
        vqset_format(set, VQSET_FORMAT_BITS, lengths, sizeof(lengths));
        if (d->conf.libvirt_require_cluster_set && strcmp(rq->operation, "prepare") == 0 &&
            cluster_refuses(d, set, &peer, why, sizeof(why))) {
                v->refused_by = (char *)peer;
                snprintf(msg, VERDICT_MAX,
                         "svemig: domain %s is outside the cluster's SVE set (require-cluster-set = yes): "
                         "with lengths %s it could not move to host %s: %s; pin it with 'svemigctl libvirt "
                         "pin %s'",
                         rq->domain, lengths, peer, why, rq->domain);
                return 0;
        }
        v->allow = true;
        snprintf(msg, VERDICT_MAX, "svemig: host %s may %s domain %s: it gets SVE lengths %s", host,
                 op_verb(rq->operation), rq->domain, lengths);
        return 0;
}

int op_libvirt_hook(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                    struct svemig_error *err)
{
        const Svemig__Api__LibvirtHookRequest *rq = req->libvirt_hook;
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__LibvirtHookVerdict v = SVEMIG__API__LIBVIRT_HOOK_VERDICT__INIT;
        struct svemigd *d = userdata;
        uint32_t bits[VQSET_VQ_MAX];
        struct libvirt_cpu cpu;
        char msg[VERDICT_MAX];
        vqset_t set;
        int r;

        if (!rq->domain[0])
                return svemig_error_set(err, EINVAL, "the hook's request names no domain");
        r = libvirt_cpu_from_proto(rq->cpu, &cpu, err);
        if (r < 0)
                return r;
        r = judge(d, rq, &cpu, &v, &set, msg, err);
        if (r < 0)
                return r;
        log_msg(v.allow ? LOG_INFO : LOG_WARNING, LOG_CTX(.op = "libvirt-hook", .domain = rq->domain),
                "libvirt %s %s: %s: %s", rq->operation, rq->sub_operation, v.allow ? "allowed" : "refused",
                msg);
        v.message = msg;
        if (v.allow) {
                size_t n = 0;

                VQSET_FOREACH (vq, &set)
                        bits[n++] = vq_to_bits(vq);
                v.vl_bits = bits;
                v.n_vl_bits = n;
        }
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_LIBVIRT_HOOK;
        resp.libvirt_hook = &v;
        api_call_reply(call, &resp);
        return 0;
}

void libvirt_reply_done(struct libvirt_reply *r)
{
        free(r->doms);
        free(r->ptrs);
        free(r->cpus);
        free(r->bits);
        free(r->reasons);
        free(r->stuck_at);
        free(r->stuck_why);
        free(r->stuck_why_ptrs);
        *r = (struct libvirt_reply){0};
}

#define BITS_PER_DOMAIN (3 * LIBVIRT_CPU_VQ_MAX)

/* The up peers that could not take 'set', into dom's stuck lists. */
static void fill_stuck(struct svemigd *d, const vqset_t *set, Svemig__Api__LibvirtDomain *dom, char **at,
                       char (*why)[256], char **why_ptrs)
{
        const struct membership_host *m;
        struct vqset_reason reason;
        size_t n, k = 0;
        vqset_t peer;

        m = d->cluster ? cluster_view_members(d->cluster, &n) : NULL;
        for (size_t i = 0; m && i < n; i++) {
                if (m[i].self || !m[i].up || !m[i].known)
                        continue;
                vqset_clear(&peer);
                if (m[i].info.sve)
                        peer = m[i].info.vls;
                if (vqset_can_present(&peer, set, &reason))
                        continue;
                at[k] = (char *)m[i].name;
                libvirt_cpu_reason_format(&reason, m[i].name, why[k], sizeof(why[k]));
                why_ptrs[k] = why[k];
                k++;
        }
        dom->stuck_at = at;
        dom->n_stuck_at = k;
        dom->stuck_why = why_ptrs;
        dom->n_stuck_why = k;
}

static void fill_domain(struct svemigd *d, const struct libvirt_domain_info *info, const vqset_t *host,
                        const vqset_t *cluster, struct libvirt_reply *r, size_t i, size_t members)
{
        Svemig__Api__LibvirtDomain *dom = &r->doms[i];
        uint32_t *bits = r->bits + i * BITS_PER_DOMAIN;
        struct vqset_reason reason;
        size_t n = 0;
        vqset_t set;

        svemig__api__libvirt_domain__init(dom);
        dom->name = (char *)info->name;
        dom->state = (char *)info->state;
        libvirt_cpu_to_proto(&info->cpu, &r->cpus[i], bits);
        dom->cpu = &r->cpus[i];
        dom->pinned = libvirt_cpu_pinned_to(&info->cpu, cluster);
        dom->presentable = libvirt_cpu_on_host(&info->cpu, host, &set, &reason);
        if (!dom->presentable) {
                libvirt_cpu_reason_format(&reason, d->conf.host_name, r->reasons[i], sizeof(r->reasons[i]));
                dom->reason = r->reasons[i];
                return;
        }
        VQSET_FOREACH (vq, &set)
                bits[2 * LIBVIRT_CPU_VQ_MAX + n++] = vq_to_bits(vq);
        dom->vl_bits = bits + 2 * LIBVIRT_CPU_VQ_MAX;
        dom->n_vl_bits = n;
        fill_stuck(d, &set, dom, r->stuck_at + i * members, r->stuck_why + i * members,
                   r->stuck_why_ptrs + i * members);
}

int libvirt_reply_build(struct svemigd *d, bool only_stuck, struct libvirt_reply *r)
{
        const struct libvirt_watch_view *v;
        struct svemig_error err = {0};
        size_t members = 1, k = 0;
        vqset_t cluster;
        struct hv_caps caps;
        int ret;

        *r = (struct libvirt_reply){0};
        if (!d->libvirt)
                return 0;
        v = libvirt_watch_view(d->libvirt);
        ret = hv_get_caps(d->hv, &caps);
        if (ret < 0)
                return ret;
        if (!caps.sve)
                vqset_clear(&caps.vls);
        if (svemigd_cluster_guest_set(d, &cluster, &err) < 0)
                vqset_clear(&cluster);
        if (d->cluster)
                cluster_view_members(d->cluster, &members);
        r->doms = calloc(v->n_domains + 1, sizeof(*r->doms));
        r->ptrs = calloc(v->n_domains + 1, sizeof(*r->ptrs));
        r->cpus = calloc(v->n_domains + 1, sizeof(*r->cpus));
        r->bits = calloc((v->n_domains + 1) * BITS_PER_DOMAIN, sizeof(*r->bits));
        r->reasons = calloc(v->n_domains + 1, sizeof(*r->reasons));
        r->stuck_at = calloc((v->n_domains + 1) * members, sizeof(*r->stuck_at));
        r->stuck_why = calloc((v->n_domains + 1) * members, sizeof(*r->stuck_why));
        r->stuck_why_ptrs = calloc((v->n_domains + 1) * members, sizeof(*r->stuck_why_ptrs));
        if (!r->doms || !r->ptrs || !r->cpus || !r->bits || !r->reasons || !r->stuck_at || !r->stuck_why ||
            !r->stuck_why_ptrs) {
                libvirt_reply_done(r);
                return -ENOMEM;
        }
        for (size_t i = 0; i < v->n_domains; i++) {
                fill_domain(d, &v->domains[i], &caps.vls, &cluster, r, k, members);
                if (only_stuck && r->doms[k].n_stuck_at == 0)
                        continue;
                r->ptrs[k] = &r->doms[k];
                k++;
        }
        r->n = k;
        return 0;
}

void libvirt_stuck_refresh(struct svemigd *d)
{
        _cleanup_(libvirt_reply_done) struct libvirt_reply r = {0};
        struct peer_stuck st = {0};

        if (!d->cluster || libvirt_reply_build(d, true, &r) < 0)
                return;
        for (size_t k = 0; k < r.n; k++) {
                const Svemig__Api__LibvirtDomain *dom = r.ptrs[k];

                for (size_t j = 0; j < dom->n_stuck_at && j < dom->n_stuck_why; j++) {
                        struct peer_stuck_guest *g = &st.g[st.n];

                        st.total++;
                        if (st.n == PEER_STUCK_MAX)
                                continue;
                        snprintf(g->guest, sizeof(g->guest), "%s", dom->name);
                        snprintf(g->state, sizeof(g->state), "%s", dom->state);
                        for (size_t b = 0; b < dom->n_vl_bits; b++)
                                vqset_add(&g->vls, dom->vl_bits[b] / 128);
                        snprintf(g->host, sizeof(g->host), "%s", dom->stuck_at[j]);
                        snprintf(g->why, sizeof(g->why), "%s", dom->stuck_why[j]);
                        st.n++;
                }
        }
        cluster_view_set_stuck(d->cluster, &st);
}

int op_libvirt_list(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                    struct svemig_error *err)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__LibvirtDomainList list = SVEMIG__API__LIBVIRT_DOMAIN_LIST__INIT;
        struct svemigd *d = userdata;
        struct libvirt_reply r;
        int ret;

        (void)req;
        ret = libvirt_reply_build(d, false, &r);
        if (ret < 0)
                return svemig_error_set(err, -ret, "cannot list libvirt's domains: %s", strerror(-ret));
        if (d->libvirt) {
                const struct libvirt_watch_view *v = libvirt_watch_view(d->libvirt);

                list.uri = (char *)libvirt_watch_uri(d->libvirt);
                list.connected = v->connected;
                list.error = (char *)v->error;
                list.events = v->events;
        }
        list.domains = r.ptrs;
        list.n_domains = r.n;
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_LIBVIRT_LIST;
        resp.libvirt_list = &list;
        api_call_reply(call, &resp);
        libvirt_reply_done(&r);
        return 0;
}
