/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The cluster's vector-length view over the hosts taking part: the
 * negotiation itself is vqset_negotiate(); this maps it back onto the full
 * host list and adds what leaving the limiting hosts out would gain.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "svemig/cluster.h"
#include "svemig/idreg.h"
#include "svemig/kvmreg.h"

static void vqset_cluster_donep(struct vqset_cluster *c)
{
        vqset_cluster_done(c);
}

int cluster_compute(const struct cluster_host *hosts, size_t n, struct cluster_result *out,
                    struct svemig_error *err)
{
        _cleanup_(vqset_cluster_donep) struct vqset_cluster all = {0}, without = {0};
        _cleanup_free_ vqset_t *sets = NULL;
        _cleanup_free_ size_t *index = NULL;
        _cleanup_free_ struct cluster_host_verdict *verdicts = NULL;
        size_t n_counted = 0, n_rest = 0;
        int r;

        memset(out, 0, sizeof(*out));
        sets = calloc(n ? n : 1, sizeof(*sets));
        index = calloc(n ? n : 1, sizeof(*index));
        verdicts = calloc(n ? n : 1, sizeof(*verdicts));
        if (!sets || !index || !verdicts)
                return svemig_error_set(err, ENOMEM, "out of memory computing the cluster view");

        for (size_t i = 0; i < n; i++)
                if (hosts[i].counted) {
                        index[n_counted] = i;
                        sets[n_counted++] = hosts[i].vls;
                }
        if (n_counted == 0)
                return svemig_error_set(err, EINVAL,
                                        "no host takes part in the cluster view: at least this host must");

        r = vqset_negotiate(sets, n_counted, &all, err);
        if (r < 0)
                return r;
        for (size_t k = 0; k < n_counted; k++) {
                struct cluster_host_verdict *v = &verdicts[index[k]];

                v->counted = true;
                v->can_present = all.hosts[k].can_present;
                v->reason = all.hosts[k].reason;
                v->limiting = all.limiting[k];
        }

        /* A limiting host lacks a length another counted host has, so someone remains. */
        if (all.n_limiting > 0) {
                for (size_t k = 0; k < n_counted; k++)
                        if (!all.limiting[k])
                                sets[n_rest++] = sets[k];
                r = vqset_negotiate(sets, n_rest, &without, err);
                if (r < 0)
                        return r;
                out->have_without = true;
                out->without = without.guest;
                out->without_max_vq = without.max_vq;
        }

        out->guest = all.guest;
        out->max_vq = all.max_vq;
        out->n_counted = n_counted;
        out->n_hosts = n;
        out->n_limiting = all.n_limiting;
        out->hosts = verdicts;
        verdicts = NULL;
        return 0;
}

int cluster_compute_pinned(const struct cluster_host *hosts, size_t n, const vqset_t *pinned,
                           struct cluster_result *out, struct svemig_error *err)
{
        memset(out, 0, sizeof(*out));
        out->hosts = calloc(n ? n : 1, sizeof(*out->hosts));
        if (!out->hosts)
                return svemig_error_set(err, ENOMEM, "out of memory computing the cluster view");
        for (size_t i = 0; i < n; i++) {
                struct cluster_host_verdict *v = &out->hosts[i];

                if (!hosts[i].counted)
                        continue;
                v->counted = true;
                v->can_present = vqset_can_present(&hosts[i].vls, pinned, &v->reason);
                out->n_counted++;
        }
        if (out->n_counted == 0) {
                cluster_result_done(out);
                return svemig_error_set(err, EINVAL,
                                        "no host takes part in the cluster view: at least this host must");
        }
        out->n_hosts = n;
        out->guest = *pinned;
        out->max_vq = vqset_highest(pinned);
        return 0;
}

void cluster_result_done(struct cluster_result *r)
{
        if (!r)
                return;
        free(r->hosts);
        memset(r, 0, sizeof(*r));
}

bool cluster_result_equal(const struct cluster_result *a, const struct cluster_result *b)
{
        if (!vqset_equal(&a->guest, &b->guest) || a->n_hosts != b->n_hosts ||
            a->have_without != b->have_without ||
            (a->have_without && !vqset_equal(&a->without, &b->without)))
                return false;
        for (size_t i = 0; i < a->n_hosts; i++) {
                const struct cluster_host_verdict *x = &a->hosts[i], *y = &b->hosts[i];

                if (x->counted != y->counted || x->can_present != y->can_present ||
                    x->limiting != y->limiting || x->reason.kind != y->reason.kind ||
                    x->reason.vq != y->reason.vq)
                        return false;
        }
        return true;
}

#define ID_AA64PFR0_SVE_MASK (0xfull << 32)

/* A register's value as the comparison takes it: 0 when absent, the SVE-dependent fields left out. */
static uint64_t id_value(const struct vcpu_state *st, uint64_t id, bool *present)
{
        const struct vcpu_reg *reg = vcpu_state_find(st, id);
        uint64_t value = 0;

        *present = reg != NULL;
        if (reg)
                memcpy(&value, reg->value, MIN(reg->size, sizeof(value)));
        if (id == KVMREG_ID_AA64PFR0_EL1)
                value &= ~ID_AA64PFR0_SVE_MASK;
        /* Fields only EL2 uses (VH, HCX...) and the GIC fields: each host keeps its own. */
        return value & ~idreg_host_kept_bits(id);
}

static bool id_compared(uint64_t id)
{
        return vcpu_reg_is_host_invariant(id) && id != KVMREG_ID_AA64ZFR0_EL1;
}

/* The first register of 'a' (in its order) whose value 'b' does not share. */
static bool first_diff(const struct vcpu_state *a, const struct vcpu_state *b, bool a_is_here,
                       struct cluster_id_diff *out)
{
        for (size_t i = 0; i < a->n_regs; i++) {
                uint64_t id = a->regs[i].id, va, vb;
                bool in_a, in_b;

                if (!id_compared(id))
                        continue;
                va = id_value(a, id, &in_a);
                vb = id_value(b, id, &in_b);
                if (in_b && va == vb)
                        continue;
                *out = (struct cluster_id_diff){
                        .differ = true,
                        .missing_here = !a_is_here && !in_b,
                        .missing_there = a_is_here && !in_b,
                        .id = id,
                        .here = a_is_here ? va : vb,
                        .there = a_is_here ? vb : va,
                };
                return true;
        }
        return false;
}

void cluster_id_compare(const struct vcpu_state *here, const struct vcpu_state *there,
                        struct cluster_id_diff *out)
{
        *out = (struct cluster_id_diff){0};
        if (!here || !there || here->n_regs == 0 || there->n_regs == 0)
                return;
        if (!first_diff(here, there, true, out))
                first_diff(there, here, false, out);
}

void cluster_id_diff_format(const struct cluster_id_diff *d, const char *peer, char *buf, size_t len)
{
        char name[64];

        if (!d->differ) {
                snprintf(buf, len, "%s", "");
                return;
        }
        kvmreg_name(d->id, name, sizeof(name));
        if (d->missing_here || d->missing_there)
                snprintf(buf, len, "ID register %s is on %s only", name,
                         d->missing_there ? "this host" : peer);
        else
                snprintf(buf, len, "ID register %s is 0x%016llx here and 0x%016llx on %s", name,
                         (unsigned long long)d->here, (unsigned long long)d->there, peer);
}
