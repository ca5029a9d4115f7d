/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The cluster's CPU baseline: per feature ID register field, the richest
 * value every counted host can present. A host whose kernel cannot write
 * the field presents only its own value (it pins the field); one that can
 * presents any value the field's safety rule allows against its own, as
 * KVM's arm64_check_features() decides. Bits outside every known field
 * must be equal everywhere.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "svemig/cpubase.h"
#include "svemig/kvmreg.h"

#define ID_AA64PFR0_EL1_SVE (0xfull << 32)

uint64_t cpubase_ignored_bits(uint64_t id)
{
        if (id == KVMREG_ID_AA64PFR0_EL1)
                return ID_AA64PFR0_EL1_SVE | idreg_el2_only_bits(id);
        if (id == KVMREG_ID_AA64ZFR0_EL1)
                return ~0ull;
        return idreg_el2_only_bits(id);
}

void cpubase_field_name(uint64_t id, const struct idreg_field *field, char *buf, size_t len)
{
        char name[64];

        idreg_name(id, name, sizeof(name));
        snprintf(buf, len, "%s%s%s", name, field ? "." : "", field ? field->name : "");
}

/* A register as host h has it: its value and writable bits, 0 when it lacks it. */
static struct cpubase_reg host_reg(const struct cpubase_host *h, uint64_t id)
{
        for (size_t i = 0; i < h->n_regs; i++)
                if (h->regs[i].id == id)
                        return h->regs[i];
        return (struct cpubase_reg){.id = id};
}

static int cmp_reg_id(const void *a, const void *b)
{
        return cmp_u64(&((const struct cpubase_reg *)a)->id, &((const struct cpubase_reg *)b)->id);
}

/*
 * Whether every counted host lists id. A register outside the feature ID
 * space (a CCSIDR) that one host lacks does not read as 0 there: that host
 * has no such register, and another's (6.12's CCSIDR 3..13) is dropped by
 * regdiff, not negotiated.
 */
static bool listed_by_all(const struct cpubase_host *hosts, size_t n, uint64_t id)
{
        for (size_t i = 0; i < n; i++) {
                bool found = false;

                for (size_t j = 0; hosts[i].counted && !found && j < hosts[i].n_regs; j++)
                        found = hosts[i].regs[j].id == id;
                if (hosts[i].counted && !found)
                        return false;
        }
        return true;
}

/* The union of the counted hosts' feature ID registers, and the other registers they all list; sorted. */
static int union_ids(const struct cpubase_host *hosts, size_t n, struct cpubase_reg **out, size_t *n_out)
{
        size_t cap = 0, k = 0;
        struct cpubase_reg *ids;

        for (size_t i = 0; i < n; i++)
                if (hosts[i].counted)
                        cap += hosts[i].n_regs;
        ids = calloc(cap ? cap : 1, sizeof(*ids));
        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; hosts[i].counted && j < hosts[i].n_regs; j++)
                        ids[k++].id = hosts[i].regs[j].id;
        qsort(ids, k, sizeof(*ids), cmp_reg_id);
        *n_out = 0;
        for (size_t i = 0; i < k; i++)
                if ((*n_out == 0 || ids[*n_out - 1].id != ids[i].id) &&
                    (idreg_is_feature(ids[i].id) || listed_by_all(hosts, n, ids[i].id)))
                        ids[(*n_out)++] = (struct cpubase_reg){.id = ids[i].id};
        *out = ids;
        return 0;
}

struct negotiation {
        const struct cpubase_host *hosts;
        size_t n;
        struct cpubase_result *res;
        size_t cap_limits, cap_conflicts, cap_uncompared;
};

/* Appends one element of size bytes to *arr (n of cap), growing it by doubling. */
static int append(void **arr, size_t *n, size_t *cap, const void *elem, size_t size)
{
        if (*n == *cap) {
                size_t c = *cap ? 2 * *cap : 8;
                void *p = realloc(*arr, c * size);

                if (!p)
                        return -ENOMEM;
                *arr = p;
                *cap = c;
        }
        memcpy((char *)*arr + *n * size, elem, size);
        (*n)++;
        return 0;
}

static int add_conflict(struct negotiation *ng, const struct cpubase_conflict *c)
{
        return append((void **)&ng->res->conflicts, &ng->res->n_conflicts, &ng->cap_conflicts, c,
                      sizeof(*c));
}

static int add_limit(struct negotiation *ng, const struct cpubase_limit *l)
{
        return append((void **)&ng->res->limits, &ng->res->n_limits, &ng->cap_limits, l, sizeof(*l));
}

/* The first two counted hosts whose EL2-only field f differs, recorded as not compared. */
static int note_uncompared(struct negotiation *ng, uint64_t id, const struct idreg_field *f)
{
        size_t first = SIZE_MAX;
        int64_t v0 = 0;

        for (size_t i = 0; i < ng->n; i++) {
                int64_t v;

                if (!ng->hosts[i].counted)
                        continue;
                v = idreg_field_get(f, host_reg(&ng->hosts[i], id).value);
                if (first == SIZE_MAX) {
                        first = i;
                        v0 = v;
                } else if (v != v0) {
                        const struct cpubase_uncompared u = {id, f, first, i, v0, v};

                        return append((void **)&ng->res->uncompared, &ng->res->n_uncompared,
                                      &ng->cap_uncompared, &u, sizeof(u));
                }
        }
        return 0;
}

/* The field as host i presents it unwritten, and whether its kernel can write it. */
static int64_t field_own(const struct negotiation *ng, size_t i, uint64_t id, const struct idreg_field *f,
                         bool *can_write)
{
        struct cpubase_reg reg = host_reg(&ng->hosts[i], id);
        uint64_t mask = idreg_field_mask(f);

        *can_write = (reg.writable & mask) == mask;
        return idreg_field_get(f, reg.value);
}

/* Whether a host with own (writable or not) can present v in f. */
static bool field_can(const struct idreg_field *f, int64_t own, bool can_write, int64_t v)
{
        if (v == own)
                return true;
        if (!can_write || (f->floor && v < f->floor))
                return false;
        switch (f->rule) {
        case IDREG_EXACT:
                return v == f->safe;
        case IDREG_LOWER_SAFE:
                return v < own;
        case IDREG_HIGHER_SAFE:
                return v > own;
        case IDREG_HIGHER_OR_ZERO_SAFE:
                return v == 0 || (own != 0 && v > own);
        }
        return false;
}

/*
 * The value every counted host (but skip, when not SIZE_MAX) can present in
 * f, the richest by the rule: 0 and *out, or -ESRCH with two hosts that
 * cannot agree in *a, *b.
 */
static int field_agree(const struct negotiation *ng, uint64_t id, const struct idreg_field *f, size_t skip,
                       bool skip_pinners, int64_t pinned_at, int64_t *out, size_t *a, size_t *b)
{
        bool have = false, lower = f->rule == IDREG_LOWER_SAFE;
        int64_t cand[3];
        size_t n_cand = 0, first = SIZE_MAX;
        int64_t best = 0, fixed = 0;
        bool have_fixed = false;

        for (size_t i = 0; i < ng->n; i++) {
                bool w;
                int64_t own;

                if (!ng->hosts[i].counted || i == skip)
                        continue;
                own = field_own(ng, i, id, f, &w);
                if (skip_pinners && !w && own == pinned_at)
                        continue;
                if (first == SIZE_MAX)
                        first = i;
                if (!w) {
                        if (have_fixed && own != fixed) {
                                *a = first;
                                *b = i;
                                return -ESRCH;
                        }
                        have_fixed = true;
                        fixed = own;
                }
                if (!have || (lower ? own < best : own > best))
                        best = own;
                have = true;
        }
        if (!have) {
                *a = *b = SIZE_MAX;
                return -ENOENT;
        }
        /* The candidates, richest first: a pinned value, the ordered extreme, then the safe value. */
        if (have_fixed)
                cand[n_cand++] = fixed;
        else if (f->rule == IDREG_LOWER_SAFE || f->rule == IDREG_HIGHER_SAFE ||
                 f->rule == IDREG_HIGHER_OR_ZERO_SAFE)
                cand[n_cand++] = best;
        if (f->rule == IDREG_EXACT) {
                cand[n_cand++] = field_own(ng, first, id, f, &(bool){false});
                cand[n_cand++] = f->safe;
        } else if (f->rule == IDREG_HIGHER_OR_ZERO_SAFE) {
                cand[n_cand++] = 0;
        }
        for (size_t c = 0; c < n_cand; c++) {
                bool all = true;

                for (size_t i = 0; all && i < ng->n; i++) {
                        bool w;
                        int64_t own;

                        if (!ng->hosts[i].counted || i == skip)
                                continue;
                        own = field_own(ng, i, id, f, &w);
                        if (skip_pinners && !w && own == pinned_at)
                                continue;
                        if (!field_can(f, own, w, cand[c])) {
                                all = false;
                                *a = first;
                                *b = i;
                        }
                }
                if (all) {
                        *out = cand[c];
                        return 0;
                }
        }
        return -ESRCH;
}

/*
 * Lower- or higher-safe fields only: the hosts that hold the field at v
 * while some other counted host has more to give, and what the rest would
 * agree on without them.
 */
static int field_limits(struct negotiation *ng, uint64_t id, const struct idreg_field *f, int64_t v)
{
        bool lower = f->rule == IDREG_LOWER_SAFE, pinned = false, richer = false;
        struct cpubase_limit l = {.id = id, .field = f, .value = v, .host = SIZE_MAX};
        size_t a, b;

        if (f->rule != IDREG_LOWER_SAFE && f->rule != IDREG_HIGHER_SAFE)
                return 0;
        for (size_t i = 0; i < ng->n; i++) {
                bool w;
                int64_t own;

                if (!ng->hosts[i].counted)
                        continue;
                own = field_own(ng, i, id, f, &w);
                if (own == v) {
                        if (l.host == SIZE_MAX)
                                l.host = i;
                        l.n_hosts++;
                        pinned |= !w;
                } else if (lower ? own > v : own < v) {
                        richer = true;
                }
        }
        if (!richer || l.host == SIZE_MAX)
                return 0;
        l.pinned = pinned;
        /* Without the hosts at v: those that cannot write it, or (none pinning) all of them. */
        if (pinned) {
                if (field_agree(ng, id, f, SIZE_MAX, true, v, &l.without, &a, &b) < 0)
                        return 0;
        } else {
                struct negotiation rest = *ng;
                struct cpubase_host *hs = calloc(ng->n, sizeof(*hs));
                int r;

                if (!hs)
                        return -ENOMEM;
                for (size_t i = 0; i < ng->n; i++) {
                        bool w;

                        hs[i] = ng->hosts[i];
                        if (hs[i].counted && field_own(ng, i, id, f, &w) == v)
                                hs[i].counted = false;
                }
                rest.hosts = hs;
                r = field_agree(&rest, id, f, SIZE_MAX, false, 0, &l.without, &a, &b);
                free(hs);
                if (r < 0)
                        return 0;
        }
        if (l.without == v)
                return 0;
        return add_limit(ng, &l);
}

/*
 * The bits no known field covers, bit by bit: a host that cannot write a bit
 * pins it to its own value; where no host pins it, the first host's value.
 * Two hosts pinning a bit differently mean no baseline (a conflict).
 */
static int negotiate_other_bits(struct negotiation *ng, struct cpubase_reg *base, uint64_t covered,
                                size_t first)
{
        uint64_t pinned = 0;

        base->value = (base->value & covered) | (host_reg(&ng->hosts[first], base->id).value & ~covered);
        for (size_t i = 0; i < ng->n; i++) {
                struct cpubase_reg reg = host_reg(&ng->hosts[i], base->id);
                uint64_t mine = ~reg.writable & ~covered, clash = mine & pinned & (reg.value ^ base->value);

                if (!ng->hosts[i].counted)
                        continue;
                if (clash) {
                        size_t j = 0;

                        while (j < i && !(ng->hosts[j].counted &&
                                          (~host_reg(&ng->hosts[j], base->id).writable & clash) == clash))
                                j++;
                        return add_conflict(ng, &(struct cpubase_conflict){base->id, NULL, clash, j, i,
                                                                           (int64_t)(base->value & clash),
                                                                           (int64_t)(reg.value & clash)});
                }
                base->value = (base->value & ~(mine & ~pinned)) | (reg.value & mine & ~pinned);
                pinned |= mine;
        }
        return 0;
}

static int negotiate_reg(struct negotiation *ng, struct cpubase_reg *base)
{
        const struct idreg_desc *d = idreg_find(base->id);
        uint64_t ignored = cpubase_ignored_bits(base->id), covered = ignored;
        size_t first = SIZE_MAX;
        int r;

        for (size_t i = 0; i < ng->n && first == SIZE_MAX; i++)
                if (ng->hosts[i].counted)
                        first = i;
        base->value = host_reg(&ng->hosts[first], base->id).value;

        for (size_t k = 0; d && k < d->n_fields; k++) {
                const struct idreg_field *f = &d->fields[k];
                uint64_t mask = idreg_field_mask(f);
                size_t a, b;
                int64_t v;
                bool w;

                if (f->el2_only) {
                        r = note_uncompared(ng, base->id, f);
                        if (r < 0)
                                return r;
                }
                if (mask & ignored)
                        continue;
                covered |= mask;
                r = field_agree(ng, base->id, f, SIZE_MAX, false, 0, &v, &a, &b);
                if (r == -ESRCH) {
                        r = add_conflict(ng, &(struct cpubase_conflict){base->id, f, mask, a, b,
                                                                        field_own(ng, a, base->id, f, &w),
                                                                        field_own(ng, b, base->id, f, &w)});
                        if (r < 0)
                                return r;
                        continue;
                }
                base->value = (base->value & ~mask) | (((uint64_t)v << f->shift) & mask);
                r = field_limits(ng, base->id, f, v);
                if (r < 0)
                        return r;
        }
        return negotiate_other_bits(ng, base, covered, first);
}

void cpubase_result_done(struct cpubase_result *r)
{
        if (!r)
                return;
        free(r->regs);
        free(r->hosts);
        free(r->limits);
        free(r->conflicts);
        free(r->uncompared);
        *r = (struct cpubase_result){0};
}

int cpubase_compute(const struct cpubase_host *hosts, size_t n, struct cpubase_result *out,
                    struct svemig_error *err)
{
        struct cpubase_result res = {0};
        struct negotiation ng = {.hosts = hosts, .n = n, .res = &res};
        size_t counted = 0;
        int r;

        for (size_t i = 0; i < n; i++)
                counted += hosts[i].counted;
        if (!counted)
                return svemig_error_set(err, EINVAL, "no host takes part in the CPU baseline");
        res.n_hosts = n;
        res.hosts = calloc(n, sizeof(*res.hosts));
        r = res.hosts ? union_ids(hosts, n, &res.regs, &res.n_regs) : -ENOMEM;
        for (size_t k = 0; r == 0 && k < res.n_regs; k++)
                r = negotiate_reg(&ng, &res.regs[k]);
        if (r < 0) {
                cpubase_result_done(&res);
                return svemig_error_set(err, -r, "the CPU baseline: %s", strerror(-r));
        }
        for (size_t i = 0; i < n; i++) {
                res.hosts[i].counted = hosts[i].counted;
                for (size_t k = 0; hosts[i].counted && k < res.n_regs; k++) {
                        uint64_t keep = ~cpubase_ignored_bits(res.regs[k].id);

                        if ((host_reg(&hosts[i], res.regs[k].id).value & keep) != (res.regs[k].value & keep))
                                res.hosts[i].writes = true;
                }
        }
        *out = res;
        return 0;
}

int cpubase_can_present(const struct cpubase_reg *host, size_t n_host, const struct cpubase_reg *guest,
                        size_t n_guest, struct svemig_error *err)
{
        const struct cpubase_host h = {.counted = true, .regs = host, .n_regs = n_host};

        for (size_t k = 0; k < n_guest; k++) {
                struct cpubase_reg own = host_reg(&h, guest[k].id);
                uint64_t keep = ~cpubase_ignored_bits(guest[k].id);
                struct idreg_refusal why;
                char reason[256];

                if (!idreg_is_feature(guest[k].id))
                        continue;
                /* The ignored bits follow the guest's SVE feature: as the host has them. */
                if (idreg_can_present(guest[k].id, own.value, own.writable,
                                      (guest[k].value & keep) | (own.value & ~keep), &why) == 0)
                        continue;
                idreg_refusal_format(guest[k].id, &why, reason, sizeof(reason));
                return svemig_error_set(err, EINVAL, "this host cannot present the guest's %s", reason);
        }
        return 0;
}
