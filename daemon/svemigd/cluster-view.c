/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The cluster view. The membership runs on threads of its own and only
 * writes an eventfd when its view may have changed; the loop then takes a
 * copy of it, logs what changed and recomputes the negotiation. So the view
 * a client reads is always one consistent snapshot, and never waits on a
 * peer or on etcd.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cluster-view.h"
#include "guest-registry.h"
#include "op-libvirt.h"
#include "op-migrate.h"
#include "log.h"
#include "macro.h"
#include "svemigd.h"

struct cluster_view {
        struct svemigd *d;
        struct peer_info self;
        struct membership *membership;
        struct membership_view view; /* hosts[0] = this host */
        struct cluster_result result;
        bool have_result;
        bool have_current; /* the membership has vouched for the view once */
        uint64_t generation;
        unsigned refresh_ms;

        struct peer_listener *listener;
        sd_event_source *wake_source;
        int wake_fd; /* eventfd: the links -> the loop */
};

/* Called on a membership thread. */
static void link_changed(void *userdata)
{
        struct cluster_view *v = userdata;
        uint64_t one = 1;

        (void)!write(v->wake_fd, &one, sizeof(one));
}

static const char *set_text(const vqset_t *s, char *buf, size_t len)
{
        if (vqset_empty(s))
                return "none (no SVE)";
        vqset_format(s, VQSET_FORMAT_BITS, buf, len);
        return buf;
}

/* A host's VL set as the negotiation takes it: empty without SVE. */
static vqset_t member_vls(const struct membership_host *m)
{
        vqset_t none = {{0}};

        return m->info.sve ? m->info.vls : none;
}

static void log_member_change(const struct membership_host *m, const struct membership_host *old)
{
        const struct membership_host *s = m;
        char vls[1024];

        if (s->up) {
                vqset_t set = member_vls(m);

                log_msg(LOG_INFO, LOG_CTX(.peer = m->name),
                        "peer %s %s: %s backend, kernel %s, VLS %s bits, svemig %s%s%s; %u of its guests "
                        "could not move to some host",
                        m->name, old->up ? "changed" : "is up", s->info.backend, s->info.kernel,
                        set_text(&set, vls, sizeof(vls)), s->info.svemig_version,
                        s->address[0] ? ", at " : "", s->address, s->info.stuck.total);
                if (s->id_diff.differ) {
                        char diff[256];

                        cluster_id_diff_format(&s->id_diff, m->name, diff, sizeof(diff));
                        log_msg(LOG_WARNING, LOG_CTX(.peer = m->name),
                                "ID registers differ between this host and %s: %s (only guests at the "
                                "cluster's CPU baseline move between them)",
                                m->name, diff);
                }
        } else if (old->up) {
                log_msg(LOG_WARNING, LOG_CTX(.peer = m->name), "peer %s is down: %s", m->name, s->reason);
        } else {
                /* Still down, for another reason (it is retried meanwhile). */
                log_msg(old->version == 0 ? LOG_NOTICE : LOG_INFO, LOG_CTX(.peer = m->name),
                        "peer %s is not reachable: %s", m->name, s->reason);
        }
}

static void format_names(const struct cluster_view *v, bool limiting, char *buf, size_t len)
{
        size_t off = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < v->view.n_hosts && off < len; i++)
                if (v->result.hosts[i].limiting == limiting && (limiting || v->result.hosts[i].counted))
                        off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? ", " : "",
                                                v->view.hosts[i].name);
}

static void log_result(const struct cluster_view *v)
{
        const struct cluster_result *r = &v->result;
        char set[1024], names[1024], without[1024];

        if (vqset_empty(&r->guest))
                snprintf(set, sizeof(set), "no common SVE, FPSIMD only");
        else {
                vqset_format(&r->guest, VQSET_FORMAT_BITS, set, sizeof(set));
                snprintf(set + strlen(set), sizeof(set) - strlen(set), " bits (max %u)",
                         vq_to_bits(r->max_vq));
        }
        if (r->n_limiting == 0) {
                log_notice("cluster guest set: %s, over %zu of %zu hosts; no host limits it", set,
                           r->n_counted, r->n_hosts);
                return;
        }
        format_names(v, true, names, sizeof(names));
        vqset_format(&r->without, VQSET_FORMAT_BITS, without, sizeof(without));
        log_notice("cluster guest set: %s, over %zu of %zu hosts; limited by %s (without: %s bits)", set,
                   r->n_counted, r->n_hosts, names, vqset_empty(&r->without) ? "none" : without);
}

static int name_cmp(const void *a, const void *b)
{
        const struct membership_host *const *x = a, *const *y = b;

        return strcmp((*x)->name, (*y)->name);
}

/* Logs each host that is new or changed against the previous view (looked up by name). */
static bool log_changes(const struct membership_view *old, const struct membership_view *now)
{
        /* Pointers, not hosts: thousands of hosts of a kilobyte or two each are sorted every change. */
        _cleanup_free_ const struct membership_host **sorted = NULL;
        bool changed = old->n_hosts != now->n_hosts;

        if (old->n_hosts) {
                sorted = malloc(old->n_hosts * sizeof(*sorted));
                if (!sorted)
                        return true;
                for (size_t i = 0; i < old->n_hosts; i++)
                        sorted[i] = &old->hosts[i];
                qsort(sorted, old->n_hosts, sizeof(*sorted), name_cmp);
        }
        for (size_t i = 0; i < now->n_hosts; i++) {
                const struct membership_host *m = &now->hosts[i], *o = NULL, **found;
                struct membership_host fresh = {0};

                if (m->self)
                        continue;
                found = sorted ? bsearch(&m, sorted, old->n_hosts, sizeof(*sorted), name_cmp) : NULL;
                if (found)
                        o = *found;
                if (o && o->version == m->version && o->up == m->up)
                        continue;
                changed = true;
                if (!o) {
                        /* Version 0: the first state a host shows is news, and logged. */
                        snprintf(fresh.reason, sizeof(fresh.reason), "not known yet");
                        o = &fresh;
                }
                log_member_change(m, o);
        }
        return changed;
}

static void log_staleness(const struct cluster_view *v, const struct membership_view *old)
{
        const struct membership_view *now = &v->view;

        if (now->refused[0] && strcmp(now->refused, old->refused) != 0)
                log_error("not joining the cluster: %s", now->refused);
        else if (!now->refused[0] && old->refused[0])
                log_notice("joining the cluster: this host can present cluster set %s's guest set",
                           now->set_name);

        /* Before the first answer from the store, stale is only how a start looks. */
        if (now->stale && (!old->stale || strcmp(old->stale_reason, now->stale_reason) != 0))
                log_msg(v->have_current ? LOG_WARNING : LOG_INFO, LOG_CTX(),
                        "the cluster view is stale (%s): it shows the hosts as last known; guests are "
                        "still judged by each destination's own facts",
                        now->stale_reason);
        else if (!now->stale && old->stale)
                log_notice("the cluster view is %s (%s)", v->have_current ? "current again" : "current",
                           membership_describe(v->membership));
}

static int recompute(struct cluster_view *v, struct svemig_error *err)
{
        _cleanup_free_ struct cluster_host *hosts = NULL;
        struct membership_view old = v->view, now;
        struct cluster_result result;
        uint64_t t0 = now_ns(CLOCK_MONOTONIC), t1;
        bool changed;
        int r;

        r = membership_get(v->membership, &now, err);
        if (r < 0)
                return r;
        hosts = calloc(now.n_hosts, sizeof(*hosts));
        if (!hosts) {
                membership_view_done(&now);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        v->view = now;
        changed = log_changes(&old, &now) || old.stale != now.stale ||
                  strcmp(old.stale_reason, now.stale_reason) != 0;
        log_staleness(v, &old);
        v->have_current |= !now.stale;
        membership_view_done(&old);
        for (size_t i = 0; i < now.n_hosts; i++) {
                hosts[i].counted = now.hosts[i].up;
                hosts[i].vls = member_vls(&now.hosts[i]);
        }
        t1 = now_ns(CLOCK_MONOTONIC);
        r = now.pinned ? cluster_compute_pinned(hosts, now.n_hosts, &now.pinned_set, &result, err)
                       : cluster_compute(hosts, now.n_hosts, &result, err);
        if (r < 0)
                return r;
        /* What one change costs the loop, for bench/membership-bench.py. */
        log_debug("cluster view over %zu hosts recomputed in %" PRIu64 " us (negotiation %" PRIu64 " us)",
                  now.n_hosts, (now_ns(CLOCK_MONOTONIC) - t0) / 1000, (now_ns(CLOCK_MONOTONIC) - t1) / 1000);
        if (!v->have_result || !cluster_result_equal(&result, &v->result)) {
                cluster_result_done(&v->result);
                v->result = result;
                v->have_result = true;
                changed = true;
                log_result(v);
        } else {
                /* The hosts may have moved: the verdicts stay index-aligned with them. */
                cluster_result_done(&v->result);
                v->result = result;
        }
        if (changed) {
                v->generation++;
                /* Another host up or down: this host's domains may be stuck, or free, now. */
                libvirt_stuck_refresh(v->d);
        }
        return 0;
}

static int on_wake(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
        struct cluster_view *v = userdata;
        struct svemig_error err = {0};
        uint64_t n;
        int r;

        (void)source;
        (void)revents;
        (void)!read(fd, &n, sizeof(n));
        /* Stopping: a change the membership reported before it stopped changes nothing now. */
        if (!v->membership)
                return 0;
        r = recompute(v, &err);
        if (r < 0)
                log_error("cannot recompute the cluster view: %s", svemig_error_str(&err, r));
        return 0;
}

static int start_membership(struct cluster_view *v, const struct migrate_conf *conf,
                            struct svemig_error *err)
{
        _cleanup_free_ struct membership_peer *peers =
                calloc(conf->n_peers ? conf->n_peers : 1, sizeof(*peers));
        struct membership_params p = {
                .host_name = conf->host_name,
                .address = conf->advertise ? conf->advertise : conf->listen_address,
                .self = &v->self,
                .refresh_ms = conf->peer_refresh_ms,
                .timeout_ms = conf->peer_timeout_ms,
                .changed = link_changed,
                .userdata = v,
                .transport = v->d->tls ? &v->d->transport : NULL,
                .peers = peers,
                .n_peers = conf->n_peers,
                .etcd =
                        {
                                .endpoints = (const char *const *)conf->etcd_endpoints,
                                .n_endpoints = conf->n_etcd_endpoints,
                                .prefix = conf->etcd_prefix,
                                .cacert = conf->etcd_cacert,
                                .cert = conf->etcd_cert,
                                .key = conf->etcd_key,
                                .user = conf->etcd_user,
                                .password = conf->etcd_password,
                                .lease_ttl_s = conf->etcd_lease_ttl_s,
                                .cluster_set = conf->cluster_set,
                        },
        };
        int r;

        if (!peers)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < conf->n_peers; i++)
                peers[i] = (struct membership_peer){.name = conf->peers[i].name,
                                                    .address = conf->peers[i].address,
                                                    .host = conf->peers[i].host,
                                                    .port = conf->peers[i].port};
        r = membership_new(conf->store, &p, &v->membership, err);
        if (r < 0)
                return svemig_error_prefix(err, "cannot start the cluster membership");
        log_info("cluster membership: %s", membership_describe(v->membership));
        return 0;
}

/* A name as it may be shown: what is not printable ASCII becomes '?', so a peer cannot forge log lines. */
static void printable_name(char *dst, size_t size, const char *name)
{
        size_t i = 0;

        for (; name[i] && i + 1 < size; i++)
                dst[i] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
        dst[i] = 0;
}

/* Whether host_name is registered in the membership now (etcd); a copy, so from any thread. */
static bool registered(struct svemigd *d, const char *host_name)
{
        struct cluster_view *v = __atomic_load_n(&d->cluster, __ATOMIC_ACQUIRE);
        struct membership_view view = {0};
        bool found = false;

        if (!v || membership_get(v->membership, &view, NULL) < 0)
                return false;
        for (size_t i = 0; i < view.n_hosts && !found; i++)
                found = !view.hosts[i].self && strcmp(view.hosts[i].name, host_name) == 0;
        membership_view_done(&view);
        return found;
}

/*
 * On a listener's connection thread: only the cluster's hosts may go on,
 * those of this host's [peer] sections (conf is not changed while the
 * daemon runs), or with store = etcd those registered there now.
 */
static int accept_peer(void *userdata, const char *host_name, struct svemig_error *err)
{
        struct svemigd *d = userdata;
        const struct migrate_conf *conf = &d->conf;
        char shown[65];

        if (conf->store == MEMBERSHIP_ETCD) {
                if (registered(d, host_name))
                        return 0;
                printable_name(shown, sizeof(shown), host_name);
                return svemig_error_set(
                        err, EACCES,
                        "host '%s' is not a peer of %s: only the hosts registered in etcd may "
                        "connect",
                        shown, conf->host_name);
        }
        for (size_t i = 0; i < conf->n_peers; i++)
                if (strcmp(conf->peers[i].name, host_name) == 0)
                        return 0;
        printable_name(shown, sizeof(shown), host_name);
        return svemig_error_set(
                err, EACCES,
                "host '%s' is not a peer of %s: only the hosts of its [peer NAME] sections in "
                "migrate.conf may connect",
                shown, conf->host_name);
}

int cluster_view_new(struct svemigd *d, struct cluster_view **out, struct svemig_error *err)
{
        const struct migrate_conf *conf = &d->conf;
        struct cluster_view *v;
        int r;

        v = calloc(1, sizeof(*v));
        if (!v)
                return svemig_error_set(err, ENOMEM, "out of memory");
        v->d = d;
        v->refresh_ms = conf->peer_refresh_ms;
        v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (v->wake_fd < 0) {
                r = svemig_error_set(err, errno, "cannot create an eventfd: %s", strerror(errno));
                goto fail;
        }

        r = peer_info_local(d->hv, conf->incoming_mem_limit, &v->self, err);
        if (r < 0) {
                svemig_error_prefix(err, "cannot describe this host to its peers");
                goto fail;
        }
        /* Peers know this host by its configured name, whatever the kernel calls it. */
        snprintf(v->self.host_name, sizeof(v->self.host_name), "%s", conf->host_name);

        r = sd_event_add_io(d->event, &v->wake_source, v->wake_fd, EPOLLIN, on_wake, v);
        if (r < 0) {
                svemig_error_set(err, r, "cannot watch the peer links: %s", strerror(-r));
                goto fail;
        }

        if (conf->listen_address) {
                struct peer_listener_params lp = {
                        .host = conf->listen_host,
                        .port = conf->listen_port,
                        .hv = d->hv,
                        .self = &v->self,
                        .timeout_ms = conf->peer_timeout_ms,
                        /* Resolve is answered from the host's ledger, shared with the VMMs. */
                        .ledger = guest_registry_ledger(d->guests),
                        .mem_limit = conf->incoming_mem_limit,
                        .ram_reserve = conf->incoming_reserve,
                        .idle_ms = conf->peer_idle_ms,
                        .max_connections = conf->max_peer_conns,
                        .max_per_address = conf->max_conns_per_peer,
                        /* A migration is served by the guest's new VMM (op-migrate.c). */
                        .incoming = svemigd_migrate_incoming,
                        /* Its memory channels go to that VMM too. */
                        .channel = svemigd_migrate_channel,
                        /* Only the configured peers: anyone else gets nothing, least of all a guest. */
                        .accept = accept_peer,
                        .userdata = d,
                        /* And before that, peer TLS: its certificate must name the host its Hello does. */
                        .tls = d->tls,
                };

                r = peer_listener_new(d->event, &lp, &v->listener, err);
                if (r < 0)
                        goto fail;
                log_info("listening for peers on %s", peer_listener_address(v->listener));
        } else if (conf->n_peers > 0 || conf->store == MEMBERSHIP_ETCD) {
                log_notice("no [cluster] listen address in %s: this host sees its peers, but they cannot "
                           "reach it",
                           conf->path ? conf->path : "migrate.conf");
        }

        r = start_membership(v, conf, err);
        if (r < 0)
                goto fail;
        r = recompute(v, err);
        if (r < 0)
                goto fail;
        __atomic_store_n(out, v,
                         __ATOMIC_RELEASE); /* the listener's threads may already look (registered()) */
        return 0;
fail:
        cluster_view_free(v);
        return r;
}

static void stop_membership(struct cluster_view *v)
{
        membership_free(v->membership);
        v->membership = NULL;
}

void cluster_view_stop(struct cluster_view *v, void (*done)(void *userdata), void *userdata)
{
        if (!v) {
                if (done)
                        done(userdata);
                return;
        }
        stop_membership(v);
        peer_listener_stop(v->listener, done, userdata);
}

void cluster_view_free(struct cluster_view *v)
{
        if (!v)
                return;
        stop_membership(v);
        peer_listener_free(v->listener);
        sd_event_source_disable_unref(v->wake_source);
        if (v->wake_fd >= 0)
                close(v->wake_fd);
        cluster_result_done(&v->result);
        peer_info_done(&v->self);
        membership_view_done(&v->view);
        free(v);
}

const struct membership_host *cluster_view_members(const struct cluster_view *v, size_t *n)
{
        *n = v->view.n_hosts;
        return v->view.hosts;
}

bool cluster_view_stale(const struct cluster_view *v, const char **reason, uint64_t *since_ns)
{
        if (reason)
                *reason = v->view.stale_reason;
        if (since_ns)
                *since_ns = v->view.stale_since_ns;
        return v->view.stale;
}

const struct membership_view *cluster_view_membership(const struct cluster_view *v)
{
        return &v->view;
}

const char *cluster_view_store(const struct cluster_view *v)
{
        return v->membership ? membership_describe(v->membership) : "stopped";
}

const struct cluster_result *cluster_view_result(const struct cluster_view *v)
{
        return &v->result;
}

uint64_t cluster_view_generation(const struct cluster_view *v)
{
        return v->generation;
}

unsigned cluster_view_refresh_ms(const struct cluster_view *v)
{
        return v->refresh_ms;
}

const char *cluster_view_listen_address(const struct cluster_view *v)
{
        return v->listener ? peer_listener_address(v->listener) : NULL;
}

void cluster_view_set_stuck(struct cluster_view *v, const struct peer_stuck *stuck)
{
        if (peer_stuck_equal(&v->self.stuck, stuck))
                return;
        peer_info_set_stuck(&v->self, stuck);
        if (v->membership)
                membership_self_changed(v->membership);
        /* This host's row of the view, from a fresh copy of the membership. */
        v->generation++;
        link_changed(v);
}

const struct peer_info *cluster_view_self(const struct cluster_view *v)
{
        return &v->self;
}

unsigned cluster_view_peer_timeout_ms(const struct cluster_view *v)
{
        return v->d->conf.peer_timeout_ms;
}

int cluster_view_peer(const struct cluster_view *v, const char *name, struct peer_address *addr,
                      const struct membership_host **member, struct svemig_error *err)
{
        const struct migrate_conf *conf = &v->d->conf;
        const char *where = conf->store == MEMBERSHIP_ETCD ? "etcd"
                            : conf->path                   ? conf->path
                                                           : "migrate.conf";
        char names[1024] = "";
        size_t off = 0;

        for (size_t i = 1; i < v->view.n_hosts; i++) {
                const struct membership_host *m = &v->view.hosts[i];

                if (strcmp(m->name, name) != 0) {
                        if (off < sizeof(names))
                                off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s",
                                                        off ? ", " : "", m->name);
                        continue;
                }
                if (!m->up && v->view.stale)
                        return svemig_error_set(
                                err, EHOSTDOWN,
                                "peer %s was down when the cluster view was last current: %s "
                                "(the view is stale now: %s)",
                                name, m->reason, v->view.stale_reason);
                if (!m->up)
                        return svemig_error_set(err, EHOSTDOWN, "peer %s is down: %s", name, m->reason);
                if (addr)
                        *addr = (struct peer_address){
                                .name = m->name, .address = m->address, .host = m->host, .port = m->port};
                if (member)
                        *member = m;
                return 0;
        }
        if (strcmp(name, conf->host_name) == 0)
                return svemig_error_set(err, EINVAL, "%s is this host; name one of its peers", name);
        if (v->view.n_hosts <= 1 && conf->store == MEMBERSHIP_ETCD)
                return svemig_error_set(
                        err, ENOENT, "no peer named %s: no other host is registered in %s%s%s", name,
                        cluster_view_store(v), v->view.stale ? "; and the view is stale: " : "",
                        v->view.stale ? v->view.stale_reason : "");
        if (v->view.n_hosts <= 1)
                return svemig_error_set(
                        err, ENOENT,
                        "no peer named %s: %s lists no peers; add a [peer %s] section with its "
                        "address",
                        name, where, name);
        return svemig_error_set(err, ENOENT, "no peer named %s in %s; its peers are: %s", name, where,
                                names);
}

int svemigd_cluster_guest_set(struct svemigd *d, vqset_t *out, struct svemig_error *err)
{
        if (!d->cluster || !d->cluster->have_result)
                return svemig_error_set(
                        err, EAGAIN, "the cluster view is not ready yet (svemigd is starting); try again");
        if (d->cluster->view.refused[0])
                return svemig_error_set(err, EPERM, "this host is not in the cluster: %s",
                                        d->cluster->view.refused);
        *out = d->cluster->result.guest;
        if (d->cluster->view.stale)
                log_warning("the cluster guest set comes from a stale view (%s): hosts that joined or left "
                            "since are not counted",
                            d->cluster->view.stale_reason);
        return 0;
}

int svemigd_cluster_cpu_baseline(struct svemigd *d, struct cpubase_result *out, struct svemig_error *err)
{
        const struct membership_view *v;
        _cleanup_free_ struct cpubase_host *hosts = NULL;
        vqset_t set;
        int r;

        r = svemigd_cluster_guest_set(d, &set, err); /* the same checks: ready, this host a member */
        if (r < 0)
                return r;
        v = &d->cluster->view;
        hosts = calloc(v->n_hosts ? v->n_hosts : 1, sizeof(*hosts));
        if (!hosts)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < v->n_hosts; i++) {
                const struct membership_host *m = &v->hosts[i];

                hosts[i] = (struct cpubase_host){m->name, m->up && m->n_cpu > 0, m->cpu, m->n_cpu};
        }
        r = cpubase_compute(hosts, v->n_hosts, out, err);
        if (r < 0)
                return r;
        if (out->n_conflicts) {
                const struct cpubase_conflict *k = &out->conflicts[0];
                char name[96];

                cpubase_field_name(k->id, k->field, name, sizeof(name));
                r = svemig_error_set(err, EINVAL,
                                     "the cluster has no CPU baseline: %s is %" PRId64 " on %s and %" PRId64
                                     " on %s, and neither kernel can present the other's (svemigctl "
                                     "cluster shows every limit); create the guest with --cpu host",
                                     name, k->a, v->hosts[k->host_a].name, k->b, v->hosts[k->host_b].name);
                cpubase_result_done(out);
                return r;
        }
        return 0;
}
