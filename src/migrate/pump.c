/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The stream's bytes between a local pipe and the peer's socket, in a thread.
 *
 * The stream writer and reader (src/stream.c) block on their fd without a
 * limit, which is right for files but not for a peer that may die silently.
 * So they work on a pipe, and this pump alone faces the socket: it waits on
 * the peer with the migration's timeout, caps the bandwidth, counts the
 * bytes, and on the source notices a destination that speaks up (an Abort)
 * or goes away in the middle of the stream.
 *
 * After a failure a TO_PEER pump keeps draining the pipe, so that the writer
 * never blocks or meets EPIPE (and SIGPIPE); a FROM_PEER pump closes its end,
 * so that the reader sees the stream end and fails.
 *
 * Without a bandwidth cap the bytes move with splice(): the pipe's pages go
 * to the socket, and the socket's to the pipe, without a copy through this
 * thread. On the source and the destination alike that spares two copies of
 * every byte of guest memory, the most of what the transport costs on a
 * fast link. The socket is non-blocking while the pump runs (splice would
 * otherwise wait on it without the timeout); its flags are restored after.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "macro.h"
#include "migrate/pump.h"
#include "migrate/wire.h"

#define PUMP_BUF           (256u << 10)
#define PUMP_PIPE_SIZE     (1 << 20)
#define PUMP_SLICE         (64u << 10) /* bytes sent at a time under a bandwidth cap */
#define PUMP_POLL_SLICE_MS 50          /* the longest the pump sleeps without looking at its flags */

struct pump {
        int sock;
        int sock_flags; /* as found, restored on free; -1 = not changed */
        enum pump_dir dir;
        unsigned timeout_ms;
        uint64_t max_bps;
        int pipe_rd, pipe_wr; /* TO_PEER: the pump reads pipe_rd; FROM_PEER: it writes pipe_wr */
        int stop_rd, stop_wr;
        pthread_t thread;
        bool started;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint64_t bytes; /* moved */
        bool watch_peer;
        bool expect;
        uint64_t expect_since;
        bool exited;
        int error;
        char reason[SVEMIG_ERROR_MSG_MAX];

        /* Token bucket for max_bps. */
        double tokens;
        uint64_t refill_ns;
        uint8_t buf[PUMP_BUF];
};

static void pump_fail(struct pump *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pump_fail(struct pump *p, int code, const char *fmt, ...)
{
        va_list ap;

        pthread_mutex_lock(&p->lock);
        if (p->error == 0) {
                p->error = abs(code);
                va_start(ap, fmt);
                vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
                va_end(ap);
        }
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
}

void pump_abort(struct pump *p, int code, const char *reason)
{
        pump_fail(p, code, "%s", reason);
        (void)!write(p->stop_wr, "x", 1);
}

static bool pump_failed(struct pump *p)
{
        bool failed;

        pthread_mutex_lock(&p->lock);
        failed = p->error != 0;
        pthread_mutex_unlock(&p->lock);
        return failed;
}

static void pump_count(struct pump *p, size_t n)
{
        pthread_mutex_lock(&p->lock);
        p->bytes += n;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
}

static bool flag(struct pump *p, const bool *f)
{
        bool v;

        pthread_mutex_lock(&p->lock);
        v = *f;
        pthread_mutex_unlock(&p->lock);
        return v;
}

/* How many of n bytes may go now under the bandwidth cap; 0 means wait *wait_ms. */
static size_t pump_allow(struct pump *p, size_t n, int *wait_ms)
{
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        double burst = MAX((double)PUMP_SLICE, (double)p->max_bps / 50.0);

        if (!p->max_bps)
                return n;
        p->tokens += (double)(now - p->refill_ns) * (double)p->max_bps / 1e9;
        p->tokens = MIN(p->tokens, burst);
        p->refill_ns = now;
        n = MIN(n, (size_t)PUMP_SLICE);
        if (p->tokens >= (double)n)
                return n;
        *wait_ms = (int)(((double)n - p->tokens) * 1000.0 / (double)p->max_bps) + 1;
        return 0;
}

/* Polls the socket (and the stop pipe). 1: ready, 0: stop, -ETIMEDOUT. */
static int pump_wait(struct pump *p, short events, int timeout_ms, short *revents)
{
        for (;;) {
                struct pollfd fds[2] = {{.fd = p->sock, .events = events},
                                        {.fd = p->stop_rd, .events = POLLIN}};
                int k = poll(fds, 2, timeout_ms);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                if (fds[1].revents)
                        return 0;
                if (k == 0)
                        return -ETIMEDOUT;
                *revents = fds[0].revents;
                return 1;
        }
}

/* The destination said something (an Abort) or went away while we were sending. */
static void peer_spoke(struct pump *p)
{
        uint8_t b;
        ssize_t k = recv(p->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT);

        if (k > 0)
                pump_fail(p, ECONNABORTED, "the destination stopped the migration");
        else if (k == 0)
                pump_fail(p, EPIPE, "the destination closed the connection in the middle of the stream");
        else
                pump_fail(p, errno, "the connection to the destination failed: %s", strerror(errno));
}

/* A send or splice to the destination failed with errno e: recorded. */
static void send_failed(struct pump *p, int e)
{
        if (e == EPIPE || e == ECONNRESET)
                pump_fail(p, e, "the destination closed the connection (%s)", strerror(e));
        else
                pump_fail(p, e, "sending to the destination failed: %s", strerror(e));
}

/* The socket is full: waits until it takes more. 0 to go on, 1 on a stop, -1 on failure (recorded). */
static int wait_writable(struct pump *p, bool watch)
{
        short ev = 0;
        int r = pump_wait(p, POLLOUT | (watch ? POLLIN : 0), (int)p->timeout_ms, &ev);

        if (r == 0)
                return 1;
        if (r == -ETIMEDOUT) {
                pump_fail(p, ETIMEDOUT, "the destination has taken no data for %u ms", p->timeout_ms);
                return -1;
        }
        if (r < 0) {
                pump_fail(p, r, "poll failed: %s", strerror(-r));
                return -1;
        }
        if ((ev & (POLLIN | POLLHUP | POLLERR)) && watch) {
                peer_spoke(p);
                return -1;
        }
        return 0;
}

/* TO_PEER: sends n bytes of p->buf. 0 done, 1 stopped, <0 failed (recorded). */
static int send_chunk(struct pump *p, size_t n)
{
        size_t off = 0;

        while (off < n) {
                int wait_ms = -1;
                size_t allow = pump_allow(p, n - off, &wait_ms);
                short ev = 0;
                bool watch = flag(p, &p->watch_peer);
                ssize_t k;
                int r;

                if (allow == 0) {
                        r = pump_wait(p, watch ? POLLIN : 0, wait_ms, &ev);
                        if (r == 0)
                                return 1;
                        if (r > 0 && ev) {
                                peer_spoke(p);
                                return -1;
                        }
                        continue;
                }
                k = send(p->sock, p->buf + off, allow, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
                        r = wait_writable(p, watch);
                        if (r != 0)
                                return r;
                        continue;
                }
                if (k < 0) {
                        send_failed(p, errno);
                        return -1;
                }
                if (p->max_bps)
                        p->tokens -= (double)k;
                off += (size_t)k;
                pump_count(p, (size_t)k);
        }
        return 0;
}

/*
 * TO_PEER without a cap: moves what the pipe holds into the socket. 0 on
 * progress, 1 at the end of the stream or a stop, -1 on failure (recorded).
 */
static int splice_to_peer(struct pump *p)
{
        ssize_t k;

        k = splice(p->pipe_rd, NULL, p->sock, NULL, PUMP_PIPE_SIZE, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (k > 0) {
                pump_count(p, (size_t)k);
                return 0;
        }
        if (k == 0)
                return 1; /* the writer is done: every byte went out */
        if (errno == EINTR)
                return 0;
        if (errno != EAGAIN) {
                send_failed(p, errno);
                return -1;
        }
        /* The socket is full (or the pipe ran dry: then it is writable and the caller polls the pipe). */
        return wait_writable(p, flag(p, &p->watch_peer));
}

static void pump_to_peer(struct pump *p)
{
        for (;;) {
                struct pollfd fds[3] = {{.fd = p->pipe_rd, .events = POLLIN},
                                        {.fd = p->stop_rd, .events = POLLIN},
                                        {.fd = p->sock, .events = 0}};
                bool failed = pump_failed(p);
                ssize_t n;
                int k;

                /* Unwatched, the socket is left out: poll would report its hang-ups regardless. */
                if (!failed && flag(p, &p->watch_peer))
                        fds[2].events = POLLIN;
                else
                        fds[2].fd = -1;
                k = poll(fds, 3, -1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        pump_fail(p, errno, "poll failed: %s", strerror(errno));
                        return;
                }
                if (fds[1].revents)
                        return;
                if (fds[2].revents && !fds[0].revents) {
                        peer_spoke(p);
                        continue;
                }
                if (!failed && p->sock_flags >= 0) {
                        if (splice_to_peer(p) > 0)
                                return;
                        continue;
                }
                n = read(p->pipe_rd, p->buf, sizeof(p->buf));
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (n < 0) {
                        pump_fail(p, errno, "reading the local stream failed: %s", strerror(errno));
                        return;
                }
                if (n == 0)
                        return; /* the writer is done: every byte went out */
                if (failed)
                        continue; /* drain, so the writer never blocks */
                if (send_chunk(p, (size_t)n) > 0)
                        return;
        }
}

static int write_pipe(struct pump *p, const uint8_t *buf, size_t n)
{
        while (n > 0) {
                ssize_t k = write(p->pipe_wr, buf, n);

                if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
                        struct pollfd fds[2] = {{.fd = p->pipe_wr, .events = POLLOUT},
                                                {.fd = p->stop_rd, .events = POLLIN}};

                        if (poll(fds, 2, -1) > 0 && fds[1].revents)
                                return 1;
                        continue;
                }
                if (k < 0) {
                        /* The reader is gone: it failed, and its owner knows why. */
                        pump_fail(p, errno, "the local stream reader went away");
                        return -1;
                }
                buf += k;
                n -= (size_t)k;
        }
        return 0;
}

/* How long the pump may wait now: data is due by the deadline only while it is expected. */
static int from_peer_wait(struct pump *p, uint64_t last_data, bool *timed_out)
{
        uint64_t since, deadline, now = now_ns(CLOCK_MONOTONIC);
        bool expect;

        pthread_mutex_lock(&p->lock);
        expect = p->expect;
        since = p->expect_since;
        pthread_mutex_unlock(&p->lock);
        *timed_out = false;
        if (!expect)
                return PUMP_POLL_SLICE_MS; /* and look again: expect may be set meanwhile */
        deadline = MAX(last_data, since) + (uint64_t)p->timeout_ms * 1000000ull;
        if (now >= deadline) {
                *timed_out = true;
                return 0;
        }
        return (int)MIN((uint64_t)PUMP_POLL_SLICE_MS, DIV_ROUND_UP(deadline - now, 1000000ull));
}

static void pump_from_peer(struct pump *p)
{
        uint64_t last_data = now_ns(CLOCK_MONOTONIC);

        for (;;) {
                bool timed_out;
                int wait = from_peer_wait(p, last_data, &timed_out);
                short ev = 0;
                ssize_t n;
                int r;

                if (timed_out) {
                        pump_fail(p, ETIMEDOUT, "no data from the source for %u ms", p->timeout_ms);
                        return;
                }
                r = pump_wait(p, POLLIN, wait, &ev);
                if (r == 0)
                        return;
                if (r == -ETIMEDOUT)
                        continue;
                if (r < 0) {
                        pump_fail(p, r, "poll failed: %s", strerror(-r));
                        return;
                }
                if (p->sock_flags >= 0) {
                        n = splice(p->sock, NULL, p->pipe_wr, NULL, PUMP_PIPE_SIZE,
                                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                        if (n < 0 && errno == EAGAIN) {
                                /* The reader has not taken the last bytes yet (or the socket ran dry). */
                                struct pollfd fds[2] = {{.fd = p->pipe_wr, .events = POLLOUT},
                                                        {.fd = p->stop_rd, .events = POLLIN}};

                                if (poll(fds, 2, PUMP_POLL_SLICE_MS) > 0 && fds[1].revents)
                                        return;
                                last_data =
                                        now_ns(CLOCK_MONOTONIC); /* the wait was ours, not the source's */
                                continue;
                        }
                        if (n < 0 && errno == EPIPE) {
                                pump_fail(p, errno, "the local stream reader went away");
                                return;
                        }
                } else
                        n = recv(p->sock, p->buf, sizeof(p->buf), MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (n < 0) {
                        pump_fail(p, errno, "the connection to the source failed: %s", strerror(errno));
                        return;
                }
                if (n == 0) {
                        pump_fail(p, EPIPE,
                                  "the source closed the connection in the middle of the stream (it "
                                  "aborted the migration or died)");
                        return;
                }
                last_data = now_ns(CLOCK_MONOTONIC);
                pump_count(p, (size_t)n);
                if (p->sock_flags < 0 && write_pipe(p, p->buf, (size_t)n) != 0)
                        return;
        }
}

static void *pump_main(void *arg)
{
        struct pump *p = arg;
        sigset_t pipe_sig;

        /*
         * splice() into a socket the peer closed raises SIGPIPE (it has no
         * MSG_NOSIGNAL): blocked here, it stays pending on this thread,
         * which ends soon after, and the EPIPE is handled as send's.
         */
        sigemptyset(&pipe_sig);
        sigaddset(&pipe_sig, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_sig, NULL);

        if (p->dir == PUMP_TO_PEER)
                pump_to_peer(p);
        else {
                pump_from_peer(p);
                /* The reader sees the end of the stream (and fails unless it had it all). */
                close(p->pipe_wr);
                p->pipe_wr = -1;
        }
        pthread_mutex_lock(&p->lock);
        p->exited = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

int pump_start(int sock, enum pump_dir dir, unsigned timeout_ms, uint64_t max_bps, int *local_fd,
               struct pump **out, struct svemig_error *err)
{
        struct pump *p = calloc(1, sizeof(*p));
        int fds[2], stop[2], r;

        if (!p)
                return svemig_error_set(err, ENOMEM, "out of memory");
        if (pipe2(fds, O_CLOEXEC) < 0) {
                free(p);
                return svemig_error_set(err, errno, "cannot create a pipe: %s", strerror(errno));
        }
        if (pipe2(stop, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                close(fds[0]);
                close(fds[1]);
                free(p);
                return svemig_error_set(err, r, "cannot create a pipe: %s", strerror(-r));
        }
        /* Bigger than the default 64 KiB, so the pump rarely waits on the stream code (best effort). */
        (void)fcntl(fds[1], F_SETPIPE_SZ, PUMP_PIPE_SIZE);
        /* The pump's own end never blocks it: it polls, and stop can always get through. */
        (void)fcntl(dir == PUMP_TO_PEER ? fds[0] : fds[1], F_SETFL, O_NONBLOCK);

        p->sock = sock;
        p->sock_flags = -1;
        /* splice() needs the socket non-blocking; a cap sends slices through the buffer instead. */
        if (!max_bps) {
                int fl = fcntl(sock, F_GETFL);

                if (fl >= 0 && fcntl(sock, F_SETFL, fl | O_NONBLOCK) == 0)
                        p->sock_flags = fl;
        }
        p->dir = dir;
        p->timeout_ms = migrate_timeout(timeout_ms);
        p->max_bps = max_bps;
        p->pipe_rd = fds[0];
        p->pipe_wr = fds[1];
        p->stop_rd = stop[0];
        p->stop_wr = stop[1];
        p->refill_ns = now_ns(CLOCK_MONOTONIC);
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        r = -pthread_create(&p->thread, NULL, pump_main, p);
        if (r < 0) {
                p->started = false;
                pump_free(p);
                return svemig_error_set(err, r, "cannot start the stream thread: %s", strerror(-r));
        }
        p->started = true;
        /* From the locals: the thread owns p's fds now (it closes pipe_wr at the stream's end). */
        *local_fd = dir == PUMP_TO_PEER ? fds[1] : fds[0];
        *out = p;
        return 0;
}

int pump_error(struct pump *p, struct svemig_error *err)
{
        int r = 0;

        pthread_mutex_lock(&p->lock);
        if (p->error)
                r = svemig_error_set(err, p->error, "%s", p->reason);
        pthread_mutex_unlock(&p->lock);
        return r;
}

int pump_flush(struct pump *p, uint64_t bytes, struct svemig_error *err)
{
        pthread_mutex_lock(&p->lock);
        while (p->bytes < bytes && !p->error && !p->exited)
                pthread_cond_wait(&p->cond, &p->lock);
        pthread_mutex_unlock(&p->lock);
        return pump_error(p, err);
}

void pump_watch_peer(struct pump *p, bool on)
{
        pthread_mutex_lock(&p->lock);
        p->watch_peer = on;
        /* The thread polls with the new set from the next stream bytes on, which is all it needs. */
        pthread_mutex_unlock(&p->lock);
}

void pump_expect(struct pump *p, bool on)
{
        pthread_mutex_lock(&p->lock);
        if (on && !p->expect)
                p->expect_since = now_ns(CLOCK_MONOTONIC); /* the timeout runs from now */
        p->expect = on;
        pthread_mutex_unlock(&p->lock);
}

uint64_t pump_bytes(struct pump *p)
{
        uint64_t b;

        pthread_mutex_lock(&p->lock);
        b = p->bytes;
        pthread_mutex_unlock(&p->lock);
        return b;
}

static void pump_join(struct pump *p, bool stop)
{
        if (!p->started)
                return;
        if (stop)
                (void)!write(p->stop_wr, "x", 1);
        pthread_join(p->thread, NULL);
        p->started = false;
}

int pump_stop(struct pump *p, struct svemig_error *err)
{
        if (p->dir == PUMP_TO_PEER && p->pipe_wr >= 0) {
                /* EOF on the pipe once the writer's bytes are all read: the thread sends them and exits. */
                close(p->pipe_wr);
                p->pipe_wr = -1;
                pump_join(p, false);
        } else
                pump_join(p, true);
        return pump_error(p, err);
}

void pump_free(struct pump *p)
{
        if (!p)
                return;
        pump_join(p, true);
        if (p->pipe_rd >= 0)
                close(p->pipe_rd);
        if (p->pipe_wr >= 0)
                close(p->pipe_wr);
        close(p->stop_rd);
        close(p->stop_wr);
        if (p->sock_flags >= 0)
                (void)fcntl(p->sock, F_SETFL, p->sock_flags);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        free(p);
}
