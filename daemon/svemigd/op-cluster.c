/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The cluster operation: the daemon's live cluster view (cluster-view.h), as it stands. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api-ops.h"
#include "cluster-view.h"
#include "macro.h"
#include "svemigd.h"

/* A host's stuck libvirt domains as the API shows them: its entries grouped by domain. */
struct stuck_reply {
        Svemig__Api__LibvirtDomain doms[PEER_STUCK_MAX];
        Svemig__Api__LibvirtDomain *ptrs[PEER_STUCK_MAX];
        char *at[PEER_STUCK_MAX];
        char *why[PEER_STUCK_MAX];
        uint32_t bits[PEER_STUCK_MAX][VQSET_VQ_ARCH_MAX];
};

/* Everything the response points to, freed once it is sent. */
struct cluster_reply {
        Svemig__Api__ClusterView view;
        Svemig__Api__ClusterGain gain;
        Svemig__Api__ClusterHost *hosts;
        Svemig__Api__ClusterHost **host_ptrs;
        char (*reasons)[256];
        char (*id_diffs)[256];
        Svemig__Api__CpuReg *cpu; /* MEMBERSHIP_CPU_REGS_MAX per host */
        Svemig__Api__CpuReg **cpu_ptrs;
        uint32_t *bits; /* VQSET_VQ_MAX per host, then the guest set, then the gain */
        const char **limiting;
        struct stuck_reply *stuck; /* per host */
};

static void cluster_reply_done(struct cluster_reply *c)
{
        free(c->stuck);
        free(c->hosts);
        free(c->host_ptrs);
        free(c->reasons);
        free(c->id_diffs);
        free(c->cpu);
        free(c->cpu_ptrs);
        free(c->bits);
        free(c->limiting);
}

static size_t fill_bits(const vqset_t *s, uint32_t *out)
{
        size_t n = 0;

        VQSET_FOREACH (vq, s)
                out[n++] = vq_to_bits(vq);
        return n;
}

/* The entries of one domain are consecutive (peer_stuck): each run becomes one LibvirtDomain. */
static void fill_stuck(const struct peer_stuck *st, struct stuck_reply *out, Svemig__Api__ClusterHost *h)
{
        size_t n_doms = 0;

        for (unsigned i = 0; i < st->n; i++) {
                const struct peer_stuck_guest *g = &st->g[i];
                Svemig__Api__LibvirtDomain *dom;
                size_t n = 0;

                out->at[i] = (char *)g->host;
                out->why[i] = (char *)g->why;
                if (i > 0 && strcmp(g->guest, st->g[i - 1].guest) == 0) {
                        out->ptrs[n_doms - 1]->n_stuck_at++;
                        out->ptrs[n_doms - 1]->n_stuck_why++;
                        continue;
                }
                dom = &out->doms[n_doms];
                svemig__api__libvirt_domain__init(dom);
                dom->name = (char *)g->guest;
                dom->state = (char *)g->state;
                VQSET_FOREACH (vq, &g->vls)
                        if (n < VQSET_VQ_ARCH_MAX)
                                out->bits[i][n++] = vq_to_bits(vq);
                dom->vl_bits = out->bits[i];
                dom->n_vl_bits = n;
                dom->presentable = true;
                dom->stuck_at = &out->at[i];
                dom->stuck_why = &out->why[i];
                dom->n_stuck_at = dom->n_stuck_why = 1;
                out->ptrs[n_doms++] = dom;
        }
        h->libvirt_stuck = out->ptrs;
        h->n_libvirt_stuck = n_doms;
        h->libvirt_stuck_total = st->total;
}

static void fill_cpu(struct cluster_reply *c, size_t i, const struct membership_host *m,
                     Svemig__Api__ClusterHost *h)
{
        Svemig__Api__CpuReg *regs = c->cpu + i * MEMBERSHIP_CPU_REGS_MAX;
        Svemig__Api__CpuReg **ptrs = c->cpu_ptrs + i * MEMBERSHIP_CPU_REGS_MAX;

        for (size_t k = 0; k < m->n_cpu; k++) {
                svemig__api__cpu_reg__init(&regs[k]);
                regs[k].id = m->cpu[k].id;
                regs[k].value = m->cpu[k].value;
                regs[k].writable = m->cpu[k].writable;
                ptrs[k] = &regs[k];
        }
        h->n_cpu = m->n_cpu;
        h->cpu = ptrs;
}

int op_cluster(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
               struct svemig_error *err)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        _cleanup_(cluster_reply_done) struct cluster_reply c = {0};
        struct svemigd *d = userdata;
        const struct membership_host *members;
        const struct cluster_result *res;
        size_t n, n_limiting = 0;
        uint32_t *guest_bits, *gain_bits;
        const char *stale_reason;

        (void)req;
        if (!d->cluster)
                return svemig_error_set(err, EAGAIN, "the cluster view is not ready yet; try again");
        members = cluster_view_members(d->cluster, &n);
        res = cluster_view_result(d->cluster);

        c.hosts = calloc(n, sizeof(*c.hosts));
        c.host_ptrs = calloc(n, sizeof(*c.host_ptrs));
        c.reasons = calloc(n, sizeof(*c.reasons));
        c.id_diffs = calloc(n, sizeof(*c.id_diffs));
        c.bits = calloc((n + 2) * VQSET_VQ_MAX, sizeof(*c.bits));
        c.limiting = calloc(n, sizeof(*c.limiting));
        c.stuck = calloc(n, sizeof(*c.stuck));
        c.cpu = calloc(n * MEMBERSHIP_CPU_REGS_MAX, sizeof(*c.cpu));
        c.cpu_ptrs = calloc(n * MEMBERSHIP_CPU_REGS_MAX, sizeof(*c.cpu_ptrs));
        if (!c.hosts || !c.host_ptrs || !c.reasons || !c.id_diffs || !c.bits || !c.limiting || !c.stuck ||
            !c.cpu || !c.cpu_ptrs)
                return svemig_error_set(err, ENOMEM, "out of memory");
        guest_bits = c.bits + n * VQSET_VQ_MAX;
        gain_bits = guest_bits + VQSET_VQ_MAX;

        for (size_t i = 0; i < n; i++) {
                const struct membership_host *m = &members[i];
                const struct cluster_host_verdict *v = &res->hosts[i];
                Svemig__Api__ClusterHost *h = &c.hosts[i];

                svemig__api__cluster_host__init(h);
                h->name = (char *)m->name;
                h->self = m->self;
                h->address = (char *)m->address;
                h->up = m->up;
                h->down_reason = (char *)(m->up ? "" : m->reason);
                h->since_ns = m->since_ns;
                h->known = m->known;
                if (m->known) {
                        h->backend = (char *)m->info.backend;
                        h->kernel = (char *)m->info.kernel;
                        h->sve = m->info.sve;
                        h->svemig_version = (char *)m->info.svemig_version;
                        if (m->info.sve) {
                                h->vl_bits = c.bits + i * VQSET_VQ_MAX;
                                h->n_vl_bits = fill_bits(&m->info.vls, h->vl_bits);
                        }
                        cluster_id_diff_format(&m->id_diff, m->name, c.id_diffs[i], sizeof(c.id_diffs[i]));
                        h->id_difference = c.id_diffs[i];
                        fill_stuck(&m->info.stuck, &c.stuck[i], h);
                        fill_cpu(&c, i, m, h);
                }
                h->counted = v->counted;
                h->can_present = v->can_present;
                h->limiting = v->limiting;
                if (v->counted && !v->can_present) {
                        vqset_reason_format(&v->reason, c.reasons[i], sizeof(c.reasons[i]));
                        h->present_reason = c.reasons[i];
                }
                if (v->limiting)
                        c.limiting[n_limiting++] = m->name;
                c.host_ptrs[i] = h;
        }

        svemig__api__cluster_view__init(&c.view);
        c.view.n_hosts = n;
        c.view.hosts = c.host_ptrs;
        c.view.guest_bits = guest_bits;
        c.view.n_guest_bits = fill_bits(&res->guest, guest_bits);
        c.view.max_bits = vq_to_bits(res->max_vq);
        c.view.n_limiting = n_limiting;
        c.view.limiting = (char **)c.limiting;
        c.view.generation = cluster_view_generation(d->cluster);
        c.view.refresh_ms = cluster_view_refresh_ms(d->cluster);
        c.view.listen = (char *)(cluster_view_listen_address(d->cluster) ?: "");
        c.view.store = (char *)cluster_view_store(d->cluster);
        c.view.stale = cluster_view_stale(d->cluster, &stale_reason, &c.view.stale_since_ns);
        c.view.stale_reason = (char *)(c.view.stale ? stale_reason : "");
        c.view.cluster_set = (char *)cluster_view_membership(d->cluster)->set_name;
        c.view.pinned = cluster_view_membership(d->cluster)->pinned;
        c.view.refused = (char *)cluster_view_membership(d->cluster)->refused;
        if (res->have_without) {
                svemig__api__cluster_gain__init(&c.gain);
                c.gain.n_excluded = n_limiting;
                c.gain.excluded = (char **)c.limiting;
                c.gain.guest_bits = gain_bits;
                c.gain.n_guest_bits = fill_bits(&res->without, gain_bits);
                c.gain.max_bits = vq_to_bits(res->without_max_vq);
                c.view.without_limiting = &c.gain;
        }

        resp.result_case = SVEMIG__API__RESPONSE__RESULT_CLUSTER;
        resp.cluster = &c.view;
        api_call_reply(call, &resp);
        return 0;
}
