/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libvirt operations: the hook's question (may this host start or take
 * this domain?) and the domains svemigd follows (libvirt-watch.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api-ops.h"
#include "cluster-view.h"
#include "libvirt-cpu.h"
#include "log.h"
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
        const struct cluster_member *m;
        struct vqset_reason reason;
        vqset_t peer;
        size_t n;

        if (!d->cluster)
                return false;
        m = cluster_view_members(d->cluster, &n);
        for (size_t i = 0; i < n; i++) {
                if (m[i].self || !m[i].state.up || !m[i].state.known)
                        continue;
                vqset_clear(&peer);
                if (m[i].state.info.sve)
                        peer = m[i].state.info.vls;
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
