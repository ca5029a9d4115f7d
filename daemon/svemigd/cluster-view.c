/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The cluster view. The links run on their own threads and only write an
 * eventfd when their state changes; the loop then takes a snapshot of every
 * link, logs what changed and recomputes the negotiation. So the view a
 * client reads is always one consistent snapshot, and never waits on a peer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cluster-view.h"
#include "guest-registry.h"
#include "op-migrate.h"
#include "log.h"
#include "macro.h"
#include "svemigd.h"

struct cluster_view {
        struct svemigd *d;
        struct peer_info self;
        struct cluster_member *members; /* [0] = this host */
        struct peer_link **links;       /* index-aligned with members; links[0] = NULL */
        size_t n_members;
        struct cluster_result result;
        bool have_result;
        uint64_t generation;
        unsigned refresh_ms;

        struct peer_listener *listener;
        sd_event_source *wake_source;
        int wake_fd; /* eventfd: the links -> the loop */
};

/* Called on a link's thread. */
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
static vqset_t member_vls(const struct cluster_member *m)
{
        vqset_t none = {{0}};

        return m->state.info.sve ? m->state.info.vls : none;
}

static void log_member_change(const struct cluster_member *m, const struct peer_link_state *old)
{
        const struct peer_link_state *s = &m->state;
        char vls[1024];

        if (s->up) {
                vqset_t set = member_vls(m);

                log_msg(LOG_INFO, LOG_CTX(.peer = m->name),
                        "peer %s %s: %s backend, kernel %s, VLS %s bits, svemig %s", m->name,
                        old->up ? "changed" : "is up", s->info.backend, s->info.kernel,
                        set_text(&set, vls, sizeof(vls)), s->info.svemig_version);
                if (s->id_diff.differ) {
                        char diff[256];

                        cluster_id_diff_format(&s->id_diff, m->name, diff, sizeof(diff));
                        log_msg(LOG_WARNING, LOG_CTX(.peer = m->name),
                                "guests cannot move between this host and %s: %s (KVM accepts no other "
                                "value of an ID register)",
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
        for (size_t i = 0; i < v->n_members && off < len; i++)
                if (v->result.hosts[i].limiting == limiting && (limiting || v->result.hosts[i].counted))
                        off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? ", " : "",
                                                v->members[i].name);
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

static int recompute(struct cluster_view *v, struct svemig_error *err)
{
        _cleanup_free_ struct cluster_host *hosts = calloc(v->n_members, sizeof(*hosts));
        struct cluster_result result;
        bool changed = false;
        int r;

        if (!hosts)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < v->n_members; i++) {
                struct cluster_member *m = &v->members[i];

                if (v->links[i]) {
                        struct peer_link_state old = m->state;

                        peer_link_get(v->links[i], &m->state);
                        if (m->state.version != old.version) {
                                changed = true;
                                log_member_change(m, &old);
                        }
                }
                hosts[i].counted = m->state.up;
                hosts[i].vls = member_vls(m);
        }
        r = cluster_compute(hosts, v->n_members, &result, err);
        if (r < 0)
                return r;
        if (!v->have_result || !cluster_result_equal(&result, &v->result)) {
                cluster_result_done(&v->result);
                v->result = result;
                v->have_result = true;
                changed = true;
                log_result(v);
        } else {
                cluster_result_done(&result);
        }
        if (changed)
                v->generation++;
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
        r = recompute(v, &err);
        if (r < 0)
                log_error("cannot recompute the cluster view: %s", svemig_error_str(&err, r));
        return 0;
}

static int add_members(struct cluster_view *v, const struct migrate_conf *conf, struct svemig_error *err)
{
        size_t n = conf->n_peers + 1;

        v->members = calloc(n, sizeof(*v->members));
        v->links = calloc(n, sizeof(*v->links));
        if (!v->members || !v->links)
                return svemig_error_set(err, ENOMEM, "out of memory");
        v->n_members = n;
        v->members[0] = (struct cluster_member){
                .name = conf->host_name,
                .self = true,
                .state = {.up = true, .known = true, .info = v->self, .version = 1},
        };
        memset(&v->members[0].state.info.id_regs, 0, sizeof(v->members[0].state.info.id_regs));
        {
                struct timespec ts;

                clock_gettime(CLOCK_REALTIME, &ts);
                v->members[0].state.since_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        }
        for (size_t i = 0; i < conf->n_peers; i++) {
                const struct migrate_conf_peer *p = &conf->peers[i];
                struct peer_link_params lp = {
                        .name = p->name,
                        .address = p->address,
                        .host = p->host,
                        .port = p->port,
                        .self = &v->self,
                        .refresh_ms = conf->peer_refresh_ms,
                        .timeout_ms = conf->peer_timeout_ms,
                        .changed = link_changed,
                        .userdata = v,
                };
                int r;

                /* Version 0: the first state the link reports is news, and logged. */
                v->members[i + 1] = (struct cluster_member){.name = p->name, .address = p->address};
                snprintf(v->members[i + 1].state.reason, sizeof(v->members[i + 1].state.reason),
                         "not connected yet");
                r = peer_link_start(&lp, &v->links[i + 1], err);
                if (r < 0)
                        return r;
        }
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

/*
 * On a listener's connection thread: only the hosts of this host's [peer]
 * sections may go on (conf is not changed while the daemon runs).
 */
static int accept_peer(void *userdata, const char *host_name, struct svemig_error *err)
{
        const struct migrate_conf *conf = &((struct svemigd *)userdata)->conf;
        char shown[65];

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
                        /* A migration is served by the guest's new VMM (op-migrate.c). */
                        .incoming = svemigd_migrate_incoming,
                        /* Its memory channels go to that VMM too. */
                        .channel = svemigd_migrate_channel,
                        /* Only the configured peers: anyone else gets nothing, least of all a guest. */
                        .accept = accept_peer,
                        .userdata = d,
                };

                r = peer_listener_new(d->event, &lp, &v->listener, err);
                if (r < 0)
                        goto fail;
                log_info("listening for peers on %s", peer_listener_address(v->listener));
        } else if (conf->n_peers > 0) {
                log_notice(
                        "no [cluster] listen address in %s: this host sees its %zu peer(s), but they cannot "
                        "reach it",
                        conf->path ? conf->path : "migrate.conf", conf->n_peers);
        }

        r = add_members(v, conf, err);
        if (r < 0)
                goto fail;
        r = recompute(v, err);
        if (r < 0)
                goto fail;
        *out = v;
        return 0;
fail:
        cluster_view_free(v);
        return r;
}

static void stop_links(struct cluster_view *v)
{
        for (size_t i = 0; v->links && i < v->n_members; i++) {
                peer_link_stop(v->links[i]);
                v->links[i] = NULL;
        }
}

void cluster_view_stop(struct cluster_view *v, void (*done)(void *userdata), void *userdata)
{
        if (!v) {
                if (done)
                        done(userdata);
                return;
        }
        stop_links(v);
        peer_listener_stop(v->listener, done, userdata);
}

void cluster_view_free(struct cluster_view *v)
{
        if (!v)
                return;
        stop_links(v);
        peer_listener_free(v->listener);
        sd_event_source_disable_unref(v->wake_source);
        if (v->wake_fd >= 0)
                close(v->wake_fd);
        cluster_result_done(&v->result);
        peer_info_done(&v->self);
        free(v->links);
        free(v->members);
        free(v);
}

const struct cluster_member *cluster_view_members(const struct cluster_view *v, size_t *n)
{
        *n = v->n_members;
        return v->members;
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

const struct peer_info *cluster_view_self(const struct cluster_view *v)
{
        return &v->self;
}

unsigned cluster_view_peer_timeout_ms(const struct cluster_view *v)
{
        return v->d->conf.peer_timeout_ms;
}

int cluster_view_peer(const struct cluster_view *v, const char *name, struct peer_address *addr,
                      const struct cluster_member **member, struct svemig_error *err)
{
        const struct migrate_conf *conf = &v->d->conf;
        char names[1024] = "";
        size_t off = 0;

        for (size_t i = 0; i < conf->n_peers; i++) {
                const struct migrate_conf_peer *p = &conf->peers[i];
                const struct cluster_member *m = &v->members[i + 1];

                if (strcmp(p->name, name) != 0) {
                        if (off < sizeof(names))
                                off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s",
                                                        off ? ", " : "", p->name);
                        continue;
                }
                if (!m->state.up)
                        return svemig_error_set(err, EHOSTDOWN, "peer %s is down: %s", name,
                                                m->state.reason);
                if (addr)
                        *addr = (struct peer_address){
                                .name = p->name, .address = p->address, .host = p->host, .port = p->port};
                if (member)
                        *member = m;
                return 0;
        }
        if (strcmp(name, conf->host_name) == 0)
                return svemig_error_set(err, EINVAL, "%s is this host; name one of its peers", name);
        if (conf->n_peers == 0)
                return svemig_error_set(
                        err, ENOENT,
                        "no peer named %s: %s lists no peers; add a [peer %s] section with its "
                        "address",
                        name, conf->path ? conf->path : "migrate.conf", name);
        return svemig_error_set(err, ENOENT, "no peer named %s in %s; its peers are: %s", name,
                                conf->path ? conf->path : "migrate.conf", names);
}

int svemigd_cluster_guest_set(struct svemigd *d, vqset_t *out, struct svemig_error *err)
{
        if (!d->cluster || !d->cluster->have_result)
                return svemig_error_set(
                        err, EAGAIN, "the cluster view is not ready yet (svemigd is starting); try again");
        *out = d->cluster->result.guest;
        return 0;
}
