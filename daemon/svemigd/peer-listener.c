/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The peer listener. Threads never touch the loop's state: each connection's
 * thread queues events (hello done, request served, closed) under the
 * listener's lock and wakes the loop through an eventfd; the loop logs them,
 * hands served requests on, and joins the threads of closed connections.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "host-ledger.h"
#include "log.h"
#include "macro.h"
#include "peer-listener.h"
#include "peer-tls.h"

#define MAX_CONNECTIONS_DEFAULT 64u
#define IDLE_MS_DEFAULT         15000u /* migrate.conf's: refresh-interval + peer-timeout */

struct conn {
        struct peer_listener *l;
        int fd;
        char remote[NI_MAXHOST + 16]; /* "ADDRESS:PORT" */
        char host[NI_MAXHOST];        /* ADDRESS: what the per-peer limit counts */
        char peer[64]; /* the host name its Hello gave; written by its thread before EV_HELLO */
        pthread_t thread;
        bool greeting; /* in peer_hello(), which no stop eventfd interrupts; under the listener's lock */
        struct peer_tls_cert *cert; /* peer TLS: the peer's certificate, which its Hello must match */
        struct conn *next;
};

enum event_kind {
        EV_HELLO,
        EV_SERVED,
        EV_INCOMING, /* a Migrate is next: the connection is handed to l->incoming */
        EV_CHANNEL,  /* a Channel is next: the connection is handed to l->channel */
        EV_CLOSED,
};

struct event {
        struct event *next;
        enum event_kind kind;
        struct conn *conn;
        int r;
        struct svemig_error err;
        struct migrate_served served;
        struct migrate_peeked peeked;        /* EV_INCOMING, EV_CHANNEL */
        struct migrate_peeked_header header; /* EV_INCOMING: its stream's header, if r == 0 (else err why) */
};

struct peer_listener {
        sd_event_source *accept_source;
        sd_event_source *wake_source;
        int listen_fd;
        int wake_fd; /* eventfd: threads -> loop */
        int stop_fd; /* eventfd: loop -> threads, readable once stopping */
        char address[NI_MAXHOST + 16];

        struct hv *hv;
        const struct peer_info *self;
        struct migrate_recv_opts recv;
        sd_event_source *prune_timer;
        unsigned timeout_ms;
        unsigned max_connections, max_per_address;
        unsigned idle_ms;
        peer_served_fn served;
        peer_incoming_fn incoming;
        peer_channel_fn channel;
        peer_accept_fn accept;
        void *userdata;
        const struct peer_tls_creds *tls;

        struct conn *conns; /* the loop's: every connection whose thread is not joined */
        unsigned n_conns;
        bool stopping;
        void (*done)(void *userdata);
        void *done_userdata;

        pthread_mutex_t lock; /* guards the queue */
        struct event *head, **tail;
};

static const char *kind_name(enum migrate_served_kind kind)
{
        switch (kind) {
        case MIGRATE_SERVED_BYE:
                return "bye";
        case MIGRATE_SERVED_HOST_INFO:
                return "host information";
        case MIGRATE_SERVED_CHECK:
                return "pre-flight check";
        case MIGRATE_SERVED_MIGRATE:
                return "migration";
        case MIGRATE_SERVED_RESOLVE:
                return "resolve";
        case MIGRATE_SERVED_CHANNEL:
                return "memory channel";
        }
        return "request";
}

/* ---- on the connection's thread ---- */

/* NULL only for an event that is just for the log. */
static struct event *event_new(struct conn *c, enum event_kind kind)
{
        struct event *ev = calloc(1, sizeof(*ev));

        /* The events that end the thread must reach the loop, which joins it: retry. */
        while (!ev && kind != EV_HELLO && kind != EV_SERVED) {
                usleep(10000);
                ev = calloc(1, sizeof(*ev));
        }
        if (ev) {
                ev->kind = kind;
                ev->conn = c;
        }
        return ev;
}

static void queue(struct conn *c, struct event *ev)
{
        struct peer_listener *l = c->l;
        uint64_t one = 1;

        pthread_mutex_lock(&l->lock);
        *l->tail = ev;
        l->tail = &ev->next;
        pthread_mutex_unlock(&l->lock);
        (void)!write(l->wake_fd, &one, sizeof(one));
}

static void push(struct conn *c, enum event_kind kind, int r, const struct svemig_error *err,
                 const struct migrate_served *served)
{
        struct event *ev = event_new(c, kind);

        if (!ev)
                return;
        ev->r = r;
        if (err)
                ev->err = *err;
        if (served)
                ev->served = *served;
        queue(c, ev);
}

/*
 * The connection goes to the loop, which hands it on (a Migrate or a Channel
 * is next, unread); a Migrate with what its stream's header says, read here
 * (the peek waits on the peer), so that the loop admits the guest or not.
 */
static void push_handoff(struct conn *c, const struct migrate_peeked *p)
{
        struct event *ev = event_new(c, p->kind == MIGRATE_SERVED_CHANNEL ? EV_CHANNEL : EV_INCOMING);

        ev->peeked = *p;
        if (ev->kind == EV_INCOMING)
                ev->r = migrate_peek_header(c->fd, c->l->timeout_ms, &ev->header, &ev->err);
        queue(c, ev);
}

/*
 * Idle between requests: 1 when a request arrives (or the peer closes), 0
 * when stopping, -ETIMEDOUT when the peer said nothing for idle_ms (a peer
 * asks at least every refresh interval: one that does not is let go, so that
 * silent connections cannot hold every slot).
 */
static int wait_request(struct conn *c)
{
        struct pollfd p[2] = {{.fd = c->l->stop_fd, .events = POLLIN}, {.fd = c->fd, .events = POLLIN}};
        int k;

        do
                k = poll(p, 2, (int)c->l->idle_ms);
        while (k < 0 && errno == EINTR);
        if (k == 0)
                return -ETIMEDOUT;
        return k > 0 && !p[0].revents;
}

/*
 * Peer TLS: the handshake (any certificate the CA vouches for: the Hello
 * says which host it must name), then the connection goes on through the
 * relay, whose end replaces c->fd.
 */
static int tls_accept(struct conn *c, struct svemig_error *err)
{
        static const struct peer_tls_names any = {.any = true};
        struct peer_listener *l = c->l;
        struct peer_tls *t;
        int net, local, r;

        r = peer_tls_handshake(l->tls, c->fd, true, &any, l->timeout_ms, &t, NULL, 0, err);
        if (r < 0)
                return r;
        r = peer_tls_peer_cert(t, &c->cert, err);
        if (r < 0) {
                peer_tls_free(t);
                return r;
        }
        pthread_mutex_lock(&l->lock);
        net = c->fd;
        c->fd = -1; /* the relay's now, closed by it even if it cannot start */
        pthread_mutex_unlock(&l->lock);
        r = peer_tls_relay(t, net, &local, err);
        if (r < 0)
                return r;
        pthread_mutex_lock(&l->lock);
        c->fd = local;
        pthread_mutex_unlock(&l->lock);
        return 0;
}

/* The Hello must name a host its certificate names, and that host must be one of the peers. */
static int accept_hello(void *userdata, const char *host_name, struct svemig_error *err)
{
        struct conn *c = userdata;
        char names[200], shown[65];
        size_t i = 0;

        if (c->cert && !peer_tls_cert_names(c->cert, host_name)) {
                for (; host_name[i] && i + 1 < sizeof(shown); i++)
                        shown[i] = host_name[i] >= 0x20 && host_name[i] < 0x7f ? host_name[i] : '?';
                shown[i] = 0;
                return svemig_error_set(err, EACCES,
                                        "its Hello says host '%s', but its TLS certificate names %s: a host "
                                        "may speak only as the host its certificate names",
                                        shown, peer_tls_cert_describe(c->cert, names, sizeof(names)));
        }
        return c->l->accept ? c->l->accept(c->l->userdata, host_name, err) : 0;
}

static void *conn_main(void *userdata)
{
        struct conn *c = userdata;
        struct peer_listener *l = c->l;
        struct svemig_error err = {0};
        struct peer_info remote = {0};
        int r;

        r = l->tls ? tls_accept(c, &err) : 0;
        if (r < 0) {
                pthread_mutex_lock(&l->lock);
                c->greeting = false;
                pthread_mutex_unlock(&l->lock);
                push(c, EV_CLOSED, r == -EPROTO || r == -EACCES ? -EACCES : r, &err, NULL);
                return NULL;
        }
        r = peer_hello_accept(c->fd, l->self, l->timeout_ms, accept_hello, c, &remote, &err);
        pthread_mutex_lock(&l->lock);
        c->greeting = false;
        pthread_mutex_unlock(&l->lock);
        if (r < 0) {
                push(c, EV_CLOSED, r, &err, NULL);
                return NULL;
        }
        snprintf(c->peer, sizeof(c->peer), "%s", remote.host_name);
        peer_info_done(&remote);
        push(c, EV_HELLO, 0, NULL, NULL);

        for (;;) {
                struct migrate_served s;

                r = wait_request(c);
                if (r <= 0) {
                        if (r == -ETIMEDOUT)
                                svemig_error_set(&err, ETIMEDOUT,
                                                 "no request for %u ms ([cluster] idle-timeout); closed",
                                                 l->idle_ms);
                        break;
                }

                svemig_error_clear(&err);
                if (l->incoming) {
                        struct migrate_peeked p;

                        r = migrate_peek(c->fd, l->timeout_ms, &p, &err);
                        if (r == -ENOTCONN) /* closed between requests, as a Bye */
                                r = 0;
                        if (r < 0)
                                break;
                        if (p.kind == MIGRATE_SERVED_MIGRATE || p.kind == MIGRATE_SERVED_CHANNEL) {
                                /* The loop hands the fd on; this thread is done with it. */
                                push_handoff(c, &p);
                                return NULL;
                        }
                }
                r = migrate_serve(l->hv, c->fd, &l->recv, &s, &err);
                if (r == 0 && s.kind == MIGRATE_SERVED_BYE)
                        break;
                if (r < 0 || s.kind != MIGRATE_SERVED_HOST_INFO)
                        push(c, EV_SERVED, r, &err, &s);
                if (r < 0)
                        break;
        }
        push(c, EV_CLOSED, r, r < 0 ? &err : NULL, NULL);
        return NULL;
}

/* ---- on the loop ---- */

static void conn_free(struct conn *c)
{
        if (c->fd >= 0)
                close(c->fd);
        peer_tls_cert_free(c->cert);
        free(c);
}

static void maybe_done(struct peer_listener *l)
{
        void (*done)(void *userdata) = l->done;

        if (!l->stopping || l->n_conns > 0 || !done)
                return;
        l->done = NULL;
        done(l->done_userdata);
}

static void reap(struct peer_listener *l, struct conn *c)
{
        for (struct conn **p = &l->conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        pthread_join(c->thread, NULL);
        l->n_conns--;
        conn_free(c);
}

static void handle_served(struct peer_listener *l, struct event *ev)
{
        struct migrate_served *s = &ev->served;
        const char *peer = ev->conn->peer;
        const char *what = kind_name(s->kind);

        if (ev->r < 0)
                log_msg(LOG_WARNING, LOG_CTX(.peer = peer, .guest = s->guest_name[0] ? s->guest_name : NULL),
                        "peer %s: %s failed: %s", peer, what, svemig_error_str(&ev->err, ev->r));
        else if (s->kind == MIGRATE_SERVED_CHECK)
                log_msg(LOG_INFO, LOG_CTX(.peer = peer, .guest = s->guest_name),
                        "peer %s: pre-flight check for guest %s: %s", peer, s->guest_name,
                        s->check_code ? svemig_error_str(&ev->err, s->check_code) : "it can come");
        else
                log_msg(LOG_INFO, LOG_CTX(.peer = peer, .guest = s->guest_name[0] ? s->guest_name : NULL),
                        "peer %s: %s served", peer, what);

        if (l->served) {
                l->served(l->userdata, peer, s, ev->r, &ev->err);
        } else if (s->guest) {
                log_msg(LOG_ERR, LOG_CTX(.peer = peer, .guest = s->guest_name),
                        "peer %s: guest %s arrived but nothing takes received guests here; it is destroyed",
                        peer, s->guest_name);
                guest_destroy(s->guest);
        }
        s->guest = NULL;
}

/* The connection leaves the listener for whoever serves a Migrate or a Channel. */
static void handoff(struct peer_listener *l, struct event *ev)
{
        const struct migrate_peeked *p = &ev->peeked;
        struct conn *c = ev->conn;
        char peer[sizeof(c->peer)];
        int cfd = c->fd;

        snprintf(peer, sizeof(peer), "%s", c->peer);
        c->fd = -1;
        reap(l, c);
        if (ev->kind == EV_INCOMING) {
                log_msg(LOG_INFO, LOG_CTX(.peer = peer, .guest = p->guest_name),
                        "peer %s: incoming migration of guest %s", peer, p->guest_name);
                struct peer_incoming in = {
                        .guest_name = p->guest_name,
                        .id = p->id,
                        .memory_bytes = ev->header.memory_bytes,
                        .header_r = ev->r,
                        .header_err = &ev->err,
                };

                l->incoming(l->userdata, peer, &in, cfd);
        } else if (l->channel) {
                l->channel(l->userdata, peer, p->id, p->channel, cfd);
        } else {
                log_msg(LOG_WARNING, LOG_CTX(.peer = peer),
                        "peer %s: memory channel %u of a migration, but nothing here takes channels; closed",
                        peer, p->channel);
                close(cfd);
        }
}

static int on_wake(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
        struct peer_listener *l = userdata;
        struct event *ev;
        uint64_t n;

        (void)source;
        (void)revents;
        (void)!read(fd, &n, sizeof(n));
        pthread_mutex_lock(&l->lock);
        ev = l->head;
        l->head = NULL;
        l->tail = &l->head;
        pthread_mutex_unlock(&l->lock);

        while (ev) {
                struct event *next = ev->next;
                struct conn *c = ev->conn;

                switch (ev->kind) {
                case EV_HELLO:
                        log_msg(LOG_INFO, LOG_CTX(.peer = c->peer), "peer %s connected from %s", c->peer,
                                c->remote);
                        break;
                case EV_SERVED:
                        handle_served(l, ev);
                        break;
                case EV_INCOMING:
                case EV_CHANNEL:
                        handoff(l, ev);
                        break;
                case EV_CLOSED:
                        if (!c->peer[0] && ev->r == -EACCES)
                                log_msg(LOG_WARNING, NULL, "refused a peer connection from %s: %s",
                                        c->remote, svemig_error_str(&ev->err, ev->r));
                        else if (!c->peer[0])
                                log_msg(LOG_NOTICE, NULL, "a connection from %s failed before its hello: %s",
                                        c->remote, svemig_error_str(&ev->err, ev->r));
                        else if (ev->r < 0)
                                log_msg(LOG_INFO, LOG_CTX(.peer = c->peer),
                                        "peer %s (%s): connection lost: %s", c->peer, c->remote,
                                        svemig_error_str(&ev->err, ev->r));
                        else
                                log_msg(LOG_DEBUG, LOG_CTX(.peer = c->peer), "peer %s (%s) disconnected",
                                        c->peer, c->remote);
                        reap(l, c);
                        break;
                }
                free(ev);
                ev = next;
        }
        maybe_done(l);
        return 0;
}

/* Once at start, then hourly: the ledger keeps what can still be asked about (host-ledger.h). */
static int on_prune(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct peer_listener *l = userdata;
        struct svemig_error err = {0};
        unsigned n = 0;

        (void)usec;
        if (migrate_ledger_prune(l->recv.ledger, HOST_LEDGER_KEEP_S, &n, &err) < 0)
                log_warning("%s", err.msg);
        else if (n)
                log_info("the migration ledger forgot or folded %u decided entries", n);
        (void)sd_event_source_set_time_relative(s, 3600ull * 1000000ull);
        (void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static void format_sockaddr(const struct sockaddr *sa, socklen_t len, char *buf, size_t size, char *host,
                            size_t host_size)
{
        char h[NI_MAXHOST] = "?", port[16] = "?";

        getnameinfo(sa, len, h, sizeof(h), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(buf, size, strchr(h, ':') ? "[%s]:%s" : "%s:%s", h, port);
        if (host)
                snprintf(host, host_size, "%s", h);
}

static unsigned count_from(const struct peer_listener *l, const char *host)
{
        unsigned n = 0;

        for (const struct conn *c = l->conns; c; c = c->next)
                n += strcmp(c->host, host) == 0;
        return n;
}

static int on_accept(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
        struct peer_listener *l = userdata;
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        struct conn *c;
        int cfd, one = 1, r;

        (void)source;
        (void)revents;
        cfd = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        log_warning("cannot accept a peer's connection on %s: %s", l->address,
                                    strerror(errno));
                return 0;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                log_error("out of memory accepting a peer's connection");
                close(cfd);
                return 0;
        }
        c->l = l;
        c->fd = cfd;
        format_sockaddr((struct sockaddr *)&ss, len, c->remote, sizeof(c->remote), c->host, sizeof(c->host));
        if (l->n_conns >= l->max_connections) {
                log_warning(
                        "refusing a peer's connection from %s: %u connections are open already, the limit "
                        "([cluster] max-connections)",
                        c->remote, l->n_conns);
                conn_free(c);
                return 0;
        }
        if (count_from(l, c->host) >= l->max_per_address) {
                log_warning("refusing a peer's connection from %s: %u connections from %s are open already, "
                            "the limit for one peer ([cluster] max-connections-per-peer)",
                            c->remote, l->max_per_address, c->host);
                conn_free(c);
                return 0;
        }
        (void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->greeting = true;
        r = pthread_create(&c->thread, NULL, conn_main, c);
        if (r != 0) {
                log_error("cannot serve the peer connection from %s: %s", c->remote, strerror(r));
                conn_free(c);
                return 0;
        }
        c->next = l->conns;
        l->conns = c;
        l->n_conns++;
        return 0;
}

/* "*": every address, IPv6 and IPv4 on one socket where the host has IPv6. */
static int bind_any(uint16_t port, int *out, char *address, size_t size)
{
        struct sockaddr_in6 sa6 = {
                .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
        struct sockaddr_in sa4 = {
                .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
        int fd, zero = 0, one = 1;

        fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
                (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
                (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, (struct sockaddr *)&sa6, sizeof(sa6)) == 0) {
                        snprintf(address, size, "[::]:%u", port);
                        *out = fd;
                        return 0;
                }
                if (errno != EADDRNOTAVAIL && errno != EAFNOSUPPORT) {
                        int r = -errno;

                        close(fd);
                        return r;
                }
                close(fd);
        }
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sa4, sizeof(sa4)) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        snprintf(address, size, "0.0.0.0:%u", port);
        *out = fd;
        return 0;
}

static int bind_host(const char *host, uint16_t port, int *out, char *address, size_t size,
                     struct svemig_error *err)
{
        const struct addrinfo hints = {
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
        };
        struct addrinfo *res = NULL;
        char p[8];
        int r, one = 1;

        snprintf(p, sizeof(p), "%u", port);
        r = getaddrinfo(host, p, &hints, &res);
        if (r != 0)
                return svemig_error_set(err, r == EAI_SYSTEM ? errno : EADDRNOTAVAIL,
                                        "cannot resolve %s: %s", host,
                                        r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
        r = -EADDRNOTAVAIL;
        for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                ai->ai_protocol);

                if (fd < 0) {
                        r = -errno;
                        continue;
                }
                (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
                        format_sockaddr(ai->ai_addr, ai->ai_addrlen, address, size, NULL, 0);
                        *out = fd;
                        r = 0;
                        break;
                }
                r = -errno;
                close(fd);
        }
        freeaddrinfo(res);
        if (r < 0)
                return svemig_error_set(err, r, "%s", strerror(-r));
        return 0;
}

int peer_listener_new(sd_event *event, const struct peer_listener_params *params, struct peer_listener **out,
                      struct svemig_error *err)
{
        struct peer_listener *l;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return svemig_error_set(err, ENOMEM, "out of memory");
        pthread_mutex_init(&l->lock, NULL);
        l->tail = &l->head;
        l->listen_fd = -1;
        l->hv = params->hv;
        l->self = params->self;
        l->timeout_ms = params->timeout_ms;
        l->max_connections = params->max_connections ? params->max_connections : MAX_CONNECTIONS_DEFAULT;
        l->max_per_address = params->max_per_address ? params->max_per_address : l->max_connections;
        l->idle_ms = params->idle_ms ? params->idle_ms : IDLE_MS_DEFAULT;
        l->served = params->served;
        l->incoming = params->incoming;
        l->channel = params->channel;
        l->accept = params->accept;
        l->userdata = params->userdata;
        l->tls = params->tls;
        l->recv = (struct migrate_recv_opts){
                .ledger = params->ledger,
                .self = params->self,
                .mem_limit = params->mem_limit,
                /* A Check is judged as the receiving VMM will judge the Migrate (counting the reserve). */
                .ram_reserve = params->ram_reserve,
                .timeout_ms = params->timeout_ms,
                /* The request has begun arriving when it is called: a stalled one times out. */
                .request_timeout_ms = params->timeout_ms,
        };
        l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (l->wake_fd < 0 || l->stop_fd < 0) {
                r = svemig_error_set(err, errno, "cannot create an eventfd: %s", strerror(errno));
                goto fail;
        }

        if (strcmp(params->host, "*") == 0) {
                r = bind_any(params->port, &l->listen_fd, l->address, sizeof(l->address));
                if (r < 0)
                        svemig_error_set(err, r, "%s", strerror(-r));
        } else {
                r = bind_host(params->host, params->port, &l->listen_fd, l->address, sizeof(l->address),
                              err);
        }
        if (r == 0 && listen(l->listen_fd, SOMAXCONN) < 0)
                r = svemig_error_set(err, errno, "%s", strerror(errno));
        if (r < 0) {
                svemig_error_prefix(
                        err, "cannot listen for peers on %s%s%s:%u ([cluster] listen in migrate.conf)",
                        strchr(params->host, ':') ? "[" : "", params->host,
                        strchr(params->host, ':') ? "]" : "", params->port);
                if (r == -EADDRINUSE && err)
                        snprintf(err->msg + strlen(err->msg), sizeof(err->msg) - strlen(err->msg),
                                 "; another program (another svemigd?) holds the port: stop it or choose "
                                 "another port");
                goto fail;
        }

        r = sd_event_add_io(event, &l->wake_source, l->wake_fd, EPOLLIN, on_wake, l);
        if (r >= 0)
                r = sd_event_add_io(event, &l->accept_source, l->listen_fd, EPOLLIN, on_accept, l);
        if (r >= 0 && l->recv.ledger)
                r = sd_event_add_time_relative(event, &l->prune_timer, CLOCK_MONOTONIC, 0, 0, on_prune, l);
        if (r < 0) {
                svemig_error_set(err, r, "cannot watch the peer listener: %s", strerror(-r));
                goto fail;
        }
        *out = l;
        return 0;
fail:
        peer_listener_free(l);
        return r;
}

void peer_listener_stop(struct peer_listener *l, void (*done)(void *userdata), void *userdata)
{
        uint64_t one = 1;

        if (!l) {
                if (done)
                        done(userdata);
                return;
        }
        if (!l->stopping) {
                l->stopping = true;
                sd_event_source_set_enabled(l->accept_source, SD_EVENT_OFF);
                (void)!write(l->stop_fd, &one, sizeof(one));
                /* A connection still waiting for its peer's Hello is not worth waiting for. */
                pthread_mutex_lock(&l->lock);
                for (struct conn *c = l->conns; c; c = c->next)
                        if (c->greeting && c->fd >= 0)
                                shutdown(c->fd, SHUT_RDWR);
                pthread_mutex_unlock(&l->lock);
        }
        l->done = done;
        l->done_userdata = userdata;
        maybe_done(l);
}

void peer_listener_free(struct peer_listener *l)
{
        if (!l)
                return;
        l->done = NULL;
        peer_listener_stop(l, NULL, NULL);
        /* Busy connections finish their request; the events they queue are only logged now. */
        while (l->conns)
                reap(l, l->conns);
        for (struct event *ev = l->head, *next; ev; ev = next) {
                next = ev->next;
                if (ev->kind == EV_SERVED && ev->served.guest) {
                        log_msg(LOG_ERR, LOG_CTX(.guest = ev->served.guest_name),
                                "guest %s arrived while svemigd was exiting; it is destroyed",
                                ev->served.guest_name);
                        guest_destroy(ev->served.guest);
                }
                free(ev);
        }
        sd_event_source_disable_unref(l->accept_source);
        sd_event_source_disable_unref(l->wake_source);
        sd_event_source_disable_unref(l->prune_timer);
        if (l->listen_fd >= 0)
                close(l->listen_fd);
        if (l->wake_fd >= 0)
                close(l->wake_fd);
        if (l->stop_fd >= 0)
                close(l->stop_fd);
        pthread_mutex_destroy(&l->lock);
        free(l);
}

unsigned peer_listener_n_connections(const struct peer_listener *l)
{
        return l ? l->n_conns : 0;
}

const char *peer_listener_address(const struct peer_listener *l)
{
        return l->address;
}
