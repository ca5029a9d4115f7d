/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The static membership: the peers migrate.conf lists, one link each on a
 * thread of its own: connect over TCP, peer_hello(), then
 * peer_request_info() every refresh interval. A peer that cannot be
 * reached, answers too late, closes the connection or turns out to be
 * another host is marked down with the reason and retried with a backoff
 * (250 ms, doubling up to the refresh interval).
 *
 * Every wait (connect, the peer's answers, the refresh interval, the
 * backoff) also watches the link's stop eventfd, and stopping shuts the
 * connection's read side, so a stopping daemon never waits out a timeout on
 * a peer.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "macro.h"
#include "membership/host.h"
#include "membership/membership-backend.h"
#include "svemig/peer-connect.h"

#define BACKOFF_MIN_MS 250u
#define BYE_TIMEOUT_MS 1000u

struct peer_link {
        char *name;
        char *host;
        char *address;
        uint16_t port;
        const struct peer_info *self;
        unsigned refresh_ms;
        unsigned timeout_ms;
        void (*changed)(void *userdata); /* membership_params.changed */
        void *userdata;
        struct peer_address peer; /* points to the strings above */

        int stop_fd; /* eventfd, readable once stopping */
        pthread_t thread;
        bool started;

        pthread_mutex_t lock; /* guards what follows */
        bool stopping;
        int fd; /* the connection while there is one, for link_stop() to cut */
        struct membership_host state;
};

struct static_members {
        struct peer_link **links;
        size_t n_links;
};

enum wake {
        WAKE_TIMEOUT,
        WAKE_STOP,
        WAKE_FD,
};

/* Waits up to timeout_ms for the stop eventfd, or for 'events' on fd (when fd >= 0). */
static enum wake wait_for(struct peer_link *l, int fd, short events, unsigned timeout_ms)
{
        struct pollfd p[2] = {{.fd = l->stop_fd, .events = POLLIN}, {.fd = fd, .events = events}};
        int k;

        do
                k = poll(p, fd >= 0 ? 2 : 1, (int)timeout_ms);
        while (k < 0 && errno == EINTR);
        if (p[0].revents)
                return WAKE_STOP;
        if (k > 0 && fd >= 0 && p[1].revents)
                return WAKE_FD;
        return WAKE_TIMEOUT;
}

/* Updates the state under the lock and tells the loop when something a person would see changed. */
static void mark_up(struct peer_link *l, const struct peer_info *info)
{
        struct membership_host *s = &l->state;
        bool changed, notify;

        struct cluster_id_diff diff;
        static _Thread_local struct membership_host cpu; /* large: off the stack */

        cluster_id_compare(&l->self->id_regs, &info->id_regs, &diff);
        if (membership_host_set_cpu(&cpu, info) < 0)
                cpu.n_cpu = 0;
        pthread_mutex_lock(&l->lock);
        changed = !s->up || !s->known || !membership_info_same(&s->info, info) ||
                  !membership_id_diff_same(&s->id_diff, &diff) || !membership_cpu_same(s, &cpu);
        s->info = *info;
        s->id_diff = diff;
        s->n_cpu = cpu.n_cpu;
        memcpy(s->cpu, cpu.cpu, cpu.n_cpu * sizeof(cpu.cpu[0]));
        /* The ID registers stay with the caller: the view does not need them. */
        memset(&s->info.id_regs, 0, sizeof(s->info.id_regs));
        if (changed) {
                if (!s->up)
                        s->since_ns = now_ns(CLOCK_REALTIME);
                s->up = true;
                s->known = true;
                s->reason[0] = '\0';
                s->version++;
        }
        notify = changed && !l->stopping;
        pthread_mutex_unlock(&l->lock);
        if (notify)
                l->changed(l->userdata);
}

static void mark_down(struct peer_link *l, const char *reason)
{
        struct membership_host *s = &l->state;
        bool changed, notify;

        pthread_mutex_lock(&l->lock);
        changed = s->up || strcmp(s->reason, reason) != 0;
        if (changed) {
                if (s->up || s->version == 0)
                        s->since_ns = now_ns(CLOCK_REALTIME);
                s->up = false;
                snprintf(s->reason, sizeof(s->reason), "%s", reason);
                s->version++;
        }
        notify = changed && !l->stopping;
        pthread_mutex_unlock(&l->lock);
        if (notify)
                l->changed(l->userdata);
}

/* Registers the connection so that link_stop() can cut it; false when already stopping. */
static bool set_fd(struct peer_link *l, int fd)
{
        bool ok;

        pthread_mutex_lock(&l->lock);
        ok = !l->stopping || fd < 0;
        if (ok)
                l->fd = fd;
        pthread_mutex_unlock(&l->lock);
        return ok;
}

/*
 * The connection's life once the hello is done: a fresh HostInfo every
 * refresh interval. Returns 1 when the link stops, or a negative errno with
 * the reason the connection is lost.
 */
static int keep_up(struct peer_link *l, int fd, const struct peer_info *hello, struct svemig_error *err)
{
        for (;;) {
                struct peer_info fresh = {0};
                char c;
                ssize_t k;
                int r;

                switch (wait_for(l, fd, POLLIN, l->refresh_ms)) {
                case WAKE_STOP:
                        (void)peer_bye(fd, BYE_TIMEOUT_MS, NULL);
                        return 1;
                case WAKE_FD:
                        /* Between requests the peer only ever closes the connection. */
                        k = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
                        if (k == 0)
                                return svemig_error_set(err, EPIPE, "%s closed the connection", l->address);
                        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                                continue;
                        if (k < 0)
                                return svemig_error_set(err, errno, "%s: the connection failed: %s",
                                                        l->address, strerror(errno));
                        return svemig_error_set(err, EPROTO, "%s sent a message nobody asked for",
                                                l->address);
                case WAKE_TIMEOUT:
                        break;
                }
                r = peer_request_info(fd, l->timeout_ms, &fresh, err);
                if (r == 0) {
                        /* HostInfo does not repeat what only the Hello says. */
                        fresh.protocol_version = hello->protocol_version;
                        memcpy(fresh.svemig_version, hello->svemig_version, sizeof(fresh.svemig_version));
                        mark_up(l, &fresh);
                }
                peer_info_done(&fresh);
                if (r < 0)
                        return svemig_error_prefix(err, "%s: asking for its host information", l->address);
        }
}

static unsigned next_backoff(unsigned backoff, unsigned cap)
{
        cap = MAX(cap, BACKOFF_MIN_MS);
        return backoff == 0 ? BACKOFF_MIN_MS : MIN(backoff * 2, cap);
}

static void *link_main(void *userdata)
{
        struct peer_link *l = userdata;
        unsigned backoff = 0;

        for (;;) {
                struct svemig_error err = {0};
                struct peer_info remote = {0};
                int fd = -1, r;

                if (backoff && wait_for(l, -1, 0, backoff) == WAKE_STOP)
                        break;
                r = peer_dial(&l->peer, l->timeout_ms, l->stop_fd, &fd, &err);
                if (r == -ECANCELED)
                        break;
                if (r == 0 && !set_fd(l, fd)) {
                        close(fd);
                        break;
                }
                if (r == 0)
                        r = peer_greet(&l->peer, fd, l->self, l->timeout_ms, &remote, &err);
                if (r == 0) {
                        mark_up(l, &remote);
                        r = keep_up(l, fd, &remote, &err);
                        peer_info_done(&remote);
                        /* Lost after being up: the peer may be restarting, so try again soon. */
                        backoff = 0;
                }
                if (fd >= 0) {
                        set_fd(l, -1);
                        close(fd);
                }
                if (r > 0)
                        break;
                if (wait_for(l, -1, 0, 0) == WAKE_STOP)
                        break;
                mark_down(l, svemig_error_str(&err, r));
                backoff = next_backoff(backoff, l->refresh_ms);
        }
        return NULL;
}

static void link_free(struct peer_link *l)
{
        if (!l)
                return;
        if (l->stop_fd >= 0)
                close(l->stop_fd);
        pthread_mutex_destroy(&l->lock);
        free(l->name);
        free(l->host);
        free(l->address);
        free(l);
}

static int link_start(const struct membership_params *params, const struct membership_peer *p,
                      struct peer_link **out, struct svemig_error *err)
{
        struct peer_link *l;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return svemig_error_set(err, ENOMEM, "out of memory");
        pthread_mutex_init(&l->lock, NULL);
        l->fd = -1;
        l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        l->name = strdup(p->name);
        l->host = strdup(p->host);
        l->address = strdup(p->address);
        if (l->stop_fd < 0 || !l->name || !l->host || !l->address) {
                r = l->stop_fd < 0 ? -errno : -ENOMEM;
                link_free(l);
                return svemig_error_set(err, r, "cannot set up the link to peer %s: %s", p->name,
                                        strerror(-r));
        }
        l->port = p->port;
        l->peer = (struct peer_address){.name = l->name,
                                        .address = l->address,
                                        .host = l->host,
                                        .port = l->port,
                                        .transport = params->transport};
        l->self = params->self;
        l->refresh_ms = params->refresh_ms;
        l->timeout_ms = params->timeout_ms;
        l->changed = params->changed;
        l->userdata = params->userdata;
        snprintf(l->state.name, sizeof(l->state.name), "%s", p->name);
        snprintf(l->state.address, sizeof(l->state.address), "%s", p->address);
        snprintf(l->state.host, sizeof(l->state.host), "%s", p->host);
        l->state.port = p->port;
        snprintf(l->state.reason, sizeof(l->state.reason), "not connected yet");

        r = -pthread_create(&l->thread, NULL, link_main, l);
        if (r < 0) {
                link_free(l);
                return svemig_error_set(err, r, "cannot start the link to peer %s: %s", p->name,
                                        strerror(-r));
        }
        l->started = true;
        *out = l;
        return 0;
}

static void link_stop(struct peer_link *l)
{
        uint64_t one = 1;

        if (!l)
                return;
        (void)!write(l->stop_fd, &one, sizeof(one));
        pthread_mutex_lock(&l->lock);
        l->stopping = true;
        /* Cuts short a wait for the peer's answer; Bye can still be sent. */
        if (l->fd >= 0)
                shutdown(l->fd, SHUT_RD);
        pthread_mutex_unlock(&l->lock);
        if (l->started)
                pthread_join(l->thread, NULL);
        link_free(l);
}

static void static_stop(void *state)
{
        struct static_members *s = state;

        if (!s)
                return;
        for (size_t i = 0; i < s->n_links; i++)
                link_stop(s->links[i]);
        free(s->links);
        free(s);
}

static int static_start(const struct membership_params *p, void **out, struct svemig_error *err)
{
        struct static_members *s = calloc(1, sizeof(*s));
        int r;

        if (!s || (p->n_peers && !(s->links = calloc(p->n_peers, sizeof(*s->links))))) {
                free(s);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < p->n_peers; i++) {
                r = link_start(p, &p->peers[i], &s->links[i], err);
                if (r < 0) {
                        static_stop(s);
                        return r;
                }
                s->n_links++;
        }
        *out = s;
        return 0;
}

static int static_get(void *state, struct membership_view *out, size_t *cap, struct svemig_error *err)
{
        struct static_members *s = state;

        for (size_t i = 0; i < s->n_links; i++) {
                struct peer_link *l = s->links[i];
                struct membership_host *h = membership_view_add(out, cap);

                if (!h)
                        return svemig_error_set(err, ENOMEM, "out of memory");
                pthread_mutex_lock(&l->lock);
                *h = l->state;
                pthread_mutex_unlock(&l->lock);
        }
        return 0;
}

const struct membership_ops membership_static_ops = {
        .name = "static",
        .start = static_start,
        .stop = static_stop,
        .get = static_get,
};
