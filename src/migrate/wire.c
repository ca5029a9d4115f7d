/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PeerMessage frames on a socket: u32 LE length, u32 LE XXH32 of the
 * payload, payload. Every wait on the peer is a poll() with the connection's
 * timeout, and every read takes exactly the frame's bytes, so that the
 * stream that may follow on the same socket is left untouched.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <xxhash.h>

#include "clock.h"
#include "iov.h"
#include "macro.h"
#include "migrate/wire.h"

/* The step names an Abort and every report use (the public migrate_step_name()). */
static const char *const step_names[_MIGRATE_STEP_MAX] = {
        [MIGRATE_STEP_NONE] = "start",
        [MIGRATE_STEP_REQUEST] = "request",
        [MIGRATE_STEP_VERDICT] = "verdict",
        [MIGRATE_STEP_PRECOPY] = "pre-copy",
        [MIGRATE_STEP_STOP_COPY] = "stop-and-copy",
        [MIGRATE_STEP_LOADED] = "loaded",
        [MIGRATE_STEP_COMMIT] = "commit",
        [MIGRATE_STEP_ACK] = "ack",
};

const char *migrate_step_name(enum migrate_step step)
{
        return step < _MIGRATE_STEP_MAX && step_names[step] ? step_names[step] : "unknown";
}

unsigned migrate_timeout(unsigned timeout_ms)
{
        return timeout_ms ? timeout_ms : MIGRATE_TIMEOUT_MS_DEFAULT;
}

void wire_init(struct wire *w, int fd, unsigned timeout_ms)
{
        *w = (struct wire){.fd = fd, .timeout_ms = migrate_timeout(timeout_ms)};
        pbarena_init(&w->arena);
}

void wire_done(struct wire *w)
{
        pbarena_done(&w->arena);
        w->last = NULL;
}

int wire_poll(int fd, short events, unsigned timeout_ms)
{
        uint64_t deadline = now_ns(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000000ull;

        for (;;) {
                struct pollfd p = {.fd = fd, .events = events};
                int wait = -1, k;

                if (timeout_ms) {
                        uint64_t now = now_ns(CLOCK_MONOTONIC);

                        if (now >= deadline)
                                return 0;
                        wait = (int)DIV_ROUND_UP(deadline - now, 1000000ull);
                }
                k = poll(&p, 1, wait);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                if (k > 0)
                        return 1;
        }
}

static int send_bytes(struct wire *w, const uint8_t *buf, size_t len, struct svemig_error *err)
{
        struct iovec iov = {(void *)buf, len};

        return wire_sendv(w, &iov, 1, err);
}

/* Reads exactly len bytes. *got says how many arrived before an error. */
static int recv_bytes(struct wire *w, uint8_t *buf, size_t len, unsigned timeout_ms, size_t *got,
                      struct svemig_error *err)
{
        *got = 0;
        while (*got < len) {
                ssize_t k = recv(w->fd, buf + *got, len - *got, MSG_DONTWAIT);

                if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
                        int r = wire_poll(w->fd, POLLIN, timeout_ms);

                        if (r < 0)
                                return svemig_error_set(err, r, "waiting for data: %s", strerror(-r));
                        if (r == 0)
                                return svemig_error_set(err, ETIMEDOUT, "no answer from the peer for %u ms",
                                                        timeout_ms);
                        continue;
                }
                if (k < 0)
                        return svemig_error_set(err, errno, "receiving failed: %s", strerror(errno));
                if (k == 0)
                        return svemig_error_set(err, EPIPE, "the peer closed the connection");
                *got += (size_t)k;
                w->bytes_in += (uint64_t)k;
        }
        return 0;
}

int wire_send(struct wire *w, const PeerMessage *msg, struct svemig_error *err)
{
        size_t len = svemig__peer__peer_message__get_packed_size(msg);
        _cleanup_free_ uint8_t *frame = NULL;
        uint32_t sum;

        if (len > MIGRATE_MSG_MAX)
                return svemig_error_set(err, EMSGSIZE, "a %s message of %zu bytes is over the limit of %u",
                                        wire_body_name(msg), len, MIGRATE_MSG_MAX);
        frame = malloc(PEER_FRAME_HEAD_SIZE + len);
        if (!frame)
                return svemig_error_set(err, ENOMEM, "out of memory");
        svemig__peer__peer_message__pack(msg, frame + PEER_FRAME_HEAD_SIZE);
        sum = XXH32(frame + PEER_FRAME_HEAD_SIZE, len, PEER_FRAME_SEED);
        for (unsigned i = 0; i < 4; i++) {
                frame[i] = (uint8_t)(len >> (8 * i));
                frame[4 + i] = (uint8_t)(sum >> (8 * i));
        }
        return send_bytes(w, frame, PEER_FRAME_HEAD_SIZE + len, err);
}

int wire_send_raw(struct wire *w, const void *buf, size_t len, struct svemig_error *err)
{
        return send_bytes(w, buf, len, err);
}

int wire_sendv(struct wire *w, struct iovec *iov, int n, struct svemig_error *err)
{
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};

        while (m.msg_iovlen > 0) {
                ssize_t k = sendmsg(w->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);

                if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
                        int r = wire_poll(w->fd, POLLOUT, w->timeout_ms);

                        if (r < 0)
                                return svemig_error_set(err, r, "waiting to send: %s", strerror(-r));
                        if (r == 0)
                                return svemig_error_set(err, ETIMEDOUT, "the peer took no data for %u ms",
                                                        w->timeout_ms);
                        continue;
                }
                if (k < 0)
                        return svemig_error_set(err, errno, "sending failed: %s", strerror(errno));
                w->bytes_out += (uint64_t)k;
                iov_advance(&m.msg_iov, &m.msg_iovlen, (size_t)k);
        }
        return 0;
}

static uint32_t le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int wire_recv(struct wire *w, unsigned timeout_ms, PeerMessage **out, struct svemig_error *err)
{
        uint8_t head[PEER_FRAME_HEAD_SIZE];
        _cleanup_free_ uint8_t *payload = NULL;
        uint32_t len, sum;
        size_t got;
        int r;

        w->last = NULL;
        r = recv_bytes(w, head, sizeof(head), timeout_ms, &got, err);
        if (r == -EPIPE && got == 0)
                return svemig_error_set(err, ENOTCONN, "the peer closed the connection");
        if (r < 0)
                return r;
        len = le32(head);
        sum = le32(head + 4);
        if (len > MIGRATE_MSG_MAX)
                return svemig_error_set(
                        err, EMSGSIZE,
                        "the peer sent a frame of %u bytes, over the limit of %u (corrupt or "
                        "not an svemig peer)",
                        len, MIGRATE_MSG_MAX);
        payload = malloc(len ? len : 1);
        if (!payload)
                return svemig_error_set(err, ENOMEM, "out of memory");
        r = recv_bytes(w, payload, len, w->timeout_ms, &got, err);
        if (r < 0)
                return r;
        if (XXH32(payload, len, PEER_FRAME_SEED) != sum)
                return svemig_error_set(err, EBADMSG, "a %u-byte frame from the peer fails its checksum",
                                        len);
        r = pbarena_reset(&w->arena, pbarena_budget(len));
        if (r < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        w->last = svemig__peer__peer_message__unpack(&w->arena.allocator, len, payload);
        if (!w->last || w->last->body_case == SVEMIG__PEER__PEER_MESSAGE__BODY__NOT_SET)
                return svemig_error_set(err, EBADMSG,
                                        "a %u-byte frame from the peer is not a message this "
                                        "version knows",
                                        len);
        *out = w->last;
        return 0;
}

const char *wire_body_name(const PeerMessage *msg)
{
        switch (msg->body_case) {
        case SVEMIG__PEER__PEER_MESSAGE__BODY_HELLO:
                return "Hello";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_HOST_INFO:
                return "HostInfo";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_HOST_INFO_REQUEST:
                return "HostInfoRequest";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_CHECK:
                return "Check";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_MIGRATE:
                return "Migrate";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_VERDICT:
                return "Verdict";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_LOADED:
                return "Loaded";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_COMMIT:
                return "Commit";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_ACK:
                return "Ack";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_ABORT:
                return "Abort";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_RESOLVE:
                return "Resolve";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_OUTCOME:
                return "Outcome";
        case SVEMIG__PEER__PEER_MESSAGE__BODY_BYE:
                return "Bye";
        default:
                return "unknown";
        }
}

void wire_send_abort(struct wire *w, int code, enum migrate_step step, const char *reason)
{
        Svemig__Peer__Abort abort_msg = SVEMIG__PEER__ABORT__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;
        unsigned saved = w->timeout_ms;

        abort_msg.code = abs(code);
        abort_msg.message = (char *)reason;
        abort_msg.step = (char *)migrate_step_name(step);
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_ABORT;
        msg.abort = &abort_msg;
        /* Best effort, and brief: the connection may be why we abort. */
        w->timeout_ms = MIN(saved, 1000u);
        (void)wire_send(w, &msg, NULL);
        w->timeout_ms = saved;
}

int wire_peer_reason(struct wire *w, int r, const char *peer, struct svemig_error *err)
{
        PeerMessage *msg;

        /* An Abort the peer sent before closing is still queued here: it says why. */
        if (wire_recv(w, MIN(w->timeout_ms, 1000u), &msg, NULL) < 0 ||
            msg->body_case != SVEMIG__PEER__PEER_MESSAGE__BODY_ABORT)
                return r;
        return svemig_error_set(err, msg->abort->code ? (int)msg->abort->code : EPROTO,
                                "%s stopped at %s: %s", peer, msg->abort->step, msg->abort->message);
}

void wire_kill(struct wire *w)
{
        shutdown(w->fd, SHUT_RDWR);
}

void wire_linger(struct wire *w)
{
        uint8_t sink[4096];

        shutdown(w->fd, SHUT_WR);
        /* Closing with unread data would reset the connection and could lose our last words. */
        while (wire_poll(w->fd, POLLIN, MIN(w->timeout_ms, 2000u)) > 0) {
                ssize_t k = recv(w->fd, sink, sizeof(sink), MSG_DONTWAIT);

                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                        break;
        }
}
