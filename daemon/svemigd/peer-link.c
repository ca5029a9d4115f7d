/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The link to one peer, on its own thread. Every wait (connect, the peer's
 * answers, the refresh interval, the backoff) also watches the link's stop
 * eventfd, and peer_link_stop() shuts the connection's read side, so a
 * stopping daemon never waits out a timeout on a peer.
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

#include "macro.h"
#include "peer-connect.h"
#include "peer-link.h"

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
        void (*changed)(void *userdata);
        void *userdata;
        struct peer_address peer; /* points to the strings above */

        int stop_fd; /* eventfd, readable once stopping */
        pthread_t thread;
        bool started;

        pthread_mutex_t lock; /* guards what follows */
        bool stopping;
        int fd; /* the connection while there is one, for peer_link_stop() to cut */
        struct peer_link_state state;
};

enum wake {
        WAKE_TIMEOUT,
        WAKE_STOP,
        WAKE_FD,
};

static uint64_t now_realtime_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

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

/* What changes the view or what a person would want logged; mem_available moves all the time. */
static bool info_same(const struct peer_info *a, const struct peer_info *b)
{
        return a->sve == b->sve && vqset_equal(&a->vls, &b->vls) && a->max_vq == b->max_vq &&
               a->n_cpus == b->n_cpus && a->max_vcpus == b->max_vcpus && a->ipa_bits == b->ipa_bits &&
               a->vcpu_features == b->vcpu_features && strcmp(a->backend, b->backend) == 0 &&
               strcmp(a->kernel, b->kernel) == 0 && strcmp(a->host_name, b->host_name) == 0 &&
               strcmp(a->svemig_version, b->svemig_version) == 0;
}

static bool id_diff_same(const struct cluster_id_diff *a, const struct cluster_id_diff *b)
{
        return a->differ == b->differ &&
               (!a->differ || (a->id == b->id && a->here == b->here && a->there == b->there &&
                               a->missing_here == b->missing_here && a->missing_there == b->missing_there));
}

/* Updates the state under the lock and tells the loop when something a person would see changed. */
static void mark_up(struct peer_link *l, const struct peer_info *info)
{
        struct peer_link_state *s = &l->state;
        bool changed, notify;

        struct cluster_id_diff diff;

        cluster_id_compare(&l->self->id_regs, &info->id_regs, &diff);
        pthread_mutex_lock(&l->lock);
        changed = !s->up || !s->known || !info_same(&s->info, info) || !id_diff_same(&s->id_diff, &diff);
        s->info = *info;
        s->id_diff = diff;
        /* The ID registers stay with the caller: the view does not need them. */
        memset(&s->info.id_regs, 0, sizeof(s->info.id_regs));
        if (changed) {
                if (!s->up)
                        s->since_ns = now_realtime_ns();
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
        struct peer_link_state *s = &l->state;
        bool changed, notify;

        pthread_mutex_lock(&l->lock);
        changed = s->up || strcmp(s->reason, reason) != 0;
        if (changed) {
                if (s->up || s->version == 0)
                        s->since_ns = now_realtime_ns();
                s->up = false;
                snprintf(s->reason, sizeof(s->reason), "%s", reason);
                s->version++;
        }
        notify = changed && !l->stopping;
        pthread_mutex_unlock(&l->lock);
        if (notify)
                l->changed(l->userdata);
}

/* Registers the connection so that peer_link_stop() can cut it; false when already stopping. */
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

int peer_link_start(const struct peer_link_params *params, struct peer_link **out, struct svemig_error *err)
{
        struct peer_link *l;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return svemig_error_set(err, ENOMEM, "out of memory");
        pthread_mutex_init(&l->lock, NULL);
        l->fd = -1;
        l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        l->name = strdup(params->name);
        l->host = strdup(params->host);
        l->address = strdup(params->address);
        if (l->stop_fd < 0 || !l->name || !l->host || !l->address) {
                r = l->stop_fd < 0 ? -errno : -ENOMEM;
                link_free(l);
                return svemig_error_set(err, r, "cannot set up the link to peer %s: %s", params->name,
                                        strerror(-r));
        }
        l->port = params->port;
        l->peer = (struct peer_address){
                .name = l->name, .address = l->address, .host = l->host, .port = l->port};
        l->self = params->self;
        l->refresh_ms = params->refresh_ms;
        l->timeout_ms = params->timeout_ms;
        l->changed = params->changed;
        l->userdata = params->userdata;
        snprintf(l->state.reason, sizeof(l->state.reason), "not connected yet");

        r = -pthread_create(&l->thread, NULL, link_main, l);
        if (r < 0) {
                link_free(l);
                return svemig_error_set(err, r, "cannot start the link to peer %s: %s", params->name,
                                        strerror(-r));
        }
        l->started = true;
        *out = l;
        return 0;
}

void peer_link_stop(struct peer_link *l)
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

void peer_link_get(struct peer_link *l, struct peer_link_state *out)
{
        pthread_mutex_lock(&l->lock);
        *out = l->state;
        pthread_mutex_unlock(&l->lock);
}

const char *peer_link_name(const struct peer_link *l)
{
        return l->name;
}

const char *peer_link_address(const struct peer_link *l)
{
        return l->address;
}
