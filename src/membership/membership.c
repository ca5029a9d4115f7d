/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Cluster membership: the public entry points, their checks, and the parts both backends share. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "macro.h"
#include "membership/host.h"
#include "membership/membership-backend.h"

struct membership {
        const struct membership_ops *ops;
        enum membership_backend backend;
        void *state;
        char host_name[MEMBERSHIP_NAME_MAX];
        const struct peer_info *self;
        uint64_t since_ns;
        char describe[1024];
};

const char *membership_backend_name(enum membership_backend b)
{
        return b == MEMBERSHIP_ETCD ? "etcd" : "static";
}

static int check_params(enum membership_backend backend, const struct membership_params *p,
                        struct svemig_error *err)
{
        if (!p->host_name || !p->host_name[0] || strlen(p->host_name) >= MEMBERSHIP_NAME_MAX)
                return svemig_error_set(err, EINVAL, "this host needs a name of 1 to %d characters",
                                        MEMBERSHIP_NAME_MAX - 1);
        if (!p->self || !p->changed)
                return svemig_error_set(err, EINVAL, "membership: no host description or no callback");
        if (backend == MEMBERSHIP_ETCD) {
                if (p->etcd.n_endpoints == 0)
                        return svemig_error_set(
                                err, EINVAL, "store = etcd needs etcd-endpoints = http(s)://HOST:PORT,...");
                if (!p->etcd.prefix || !p->etcd.prefix[0])
                        return svemig_error_set(err, EINVAL, "store = etcd needs a non-empty etcd-prefix");
                if (!p->address)
                        return svemig_error_set(err, EINVAL,
                                                "store = etcd registers where this host takes migrations: "
                                                "set [cluster] listen (and advertise when it listens on *)");
                if (!p->etcd.cert != !p->etcd.key)
                        return svemig_error_set(err, EINVAL,
                                                "etcd-cert and etcd-key go together: give both or neither");
                if (p->etcd.lease_ttl_s < 2)
                        return svemig_error_set(err, EINVAL, "etcd lease of %us: give at least 2 s",
                                                p->etcd.lease_ttl_s);
        } else if (backend != MEMBERSHIP_STATIC) {
                return svemig_error_set(err, EINVAL, "unknown membership backend %d", (int)backend);
        }
        return 0;
}

static void describe(struct membership *m, enum membership_backend backend,
                     const struct membership_params *p)
{
        size_t off;

        if (backend == MEMBERSHIP_STATIC) {
                snprintf(m->describe, sizeof(m->describe), "static");
                return;
        }
        off = (size_t)snprintf(m->describe, sizeof(m->describe), "etcd ");
        for (size_t i = 0; i < p->etcd.n_endpoints && off < sizeof(m->describe); i++)
                off += (size_t)snprintf(m->describe + off, sizeof(m->describe) - off, "%s%s", i ? "," : "",
                                        p->etcd.endpoints[i]);
        if (off < sizeof(m->describe))
                snprintf(m->describe + off, sizeof(m->describe) - off, " under %s", p->etcd.prefix);
}

int membership_new(enum membership_backend backend, const struct membership_params *params,
                   struct membership **out, struct svemig_error *err)
{
        struct membership *m;
        int r;

        r = check_params(backend, params, err);
        if (r < 0)
                return r;
        m = calloc(1, sizeof(*m));
        if (!m)
                return svemig_error_set(err, ENOMEM, "out of memory");
        m->backend = backend;
        m->ops = backend == MEMBERSHIP_ETCD ? &membership_etcd_ops : &membership_static_ops;
        snprintf(m->host_name, sizeof(m->host_name), "%s", params->host_name);
        m->self = params->self;
        m->since_ns = now_ns(CLOCK_REALTIME);
        describe(m, backend, params);
        r = m->ops->start(params, &m->state, err);
        if (r < 0) {
                free(m);
                return r;
        }
        *out = m;
        return 0;
}

void membership_free(struct membership *m)
{
        if (!m)
                return;
        m->ops->stop(m->state);
        free(m);
}

static void self_host(const struct membership *m, struct membership_host *out)
{
        *out = (struct membership_host){
                .self = true,
                .up = true,
                .known = true,
                .since_ns = m->since_ns,
                .version = 1,
        };
        /* Any thread may ask: the stuck list (last) changes meanwhile, and is copied under its lock. */
        memcpy(&out->info, m->self, offsetof(struct peer_info, stuck));
        peer_info_get_stuck(m->self, &out->info.stuck);
        snprintf(out->name, sizeof(out->name), "%s", m->host_name);
        if (membership_host_set_cpu(out, m->self) < 0)
                out->n_cpu = 0;
        /* The view carries no ID registers; the caller keeps its own. */
        memset(&out->info.id_regs, 0, sizeof(out->info.id_regs));
}

int membership_get(struct membership *m, struct membership_view *out, struct svemig_error *err)
{
        size_t cap = 0;
        struct membership_host *self;
        int r;

        *out = (struct membership_view){0};
        self = membership_view_add(out, &cap);
        if (!self)
                return svemig_error_set(err, ENOMEM, "out of memory");
        self_host(m, self);
        r = m->ops->get(m->state, out, &cap, err);
        if (r < 0)
                membership_view_done(out);
        return r;
}

void membership_self_changed(struct membership *m)
{
        if (m->ops->self_changed)
                m->ops->self_changed(m->state);
}

enum membership_backend membership_backend(const struct membership *m)
{
        return m->backend;
}

const char *membership_describe(const struct membership *m)
{
        return m->describe;
}
