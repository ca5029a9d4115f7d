/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Handing an accepted connection on: a daemon's listener looks at the next
 * request without taking it (MSG_PEEK), so that a migration can be served by
 * another process (the guest's new VMM) that reads it whole; or it refuses
 * the migration outright, as a Verdict the source reports.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "macro.h"
#include "migrate/wire.h"
#include "svemig/stream.h"
#include "unaligned.h"

/* Waits until 'want' bytes can be peeked, or the timeout. */
static int peek_bytes(int fd, void *buf, size_t want, unsigned timeout_ms, struct svemig_error *err)
{
        uint64_t deadline = now_ns(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000000ull;

        for (;;) {
                ssize_t k = recv(fd, buf, want, MSG_PEEK | MSG_DONTWAIT);

                if (k == (ssize_t)want)
                        return 0;
                if (k == 0)
                        return svemig_error_set(err, ENOTCONN, "the peer closed the connection");
                if (k < 0 && errno != EAGAIN && errno != EINTR)
                        return svemig_error_set(err, errno, "receiving failed: %s", strerror(errno));
                if (now_ns(CLOCK_MONOTONIC) >= deadline)
                        return svemig_error_set(err, ETIMEDOUT,
                                                "no complete request from the peer for %u ms", timeout_ms);
                if (k < 0) {
                        int r = wire_poll(fd, POLLIN, timeout_ms);

                        if (r < 0)
                                return svemig_error_set(err, r, "waiting for data: %s", strerror(-r));
                } else {
                        /* Part of the frame is there: poll() would say readable at once, so wait a little.
                         */
                        struct timespec ms = {.tv_nsec = 1000000};
                        struct pollfd p = {.fd = fd, .events = POLLRDHUP};

                        /* ...unless the peer has closed: then the rest never comes. */
                        if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP)) &&
                            recv(fd, buf, want, MSG_PEEK | MSG_DONTWAIT) != (ssize_t)want)
                                return svemig_error_set(err, EPIPE,
                                                        "the peer closed the connection inside a frame "
                                                        "(%zd of %zu bytes sent)",
                                                        k, want);
                        nanosleep(&ms, NULL);
                }
        }
}

int migrate_peek(int fd, unsigned timeout_ms, struct migrate_peeked *out, struct svemig_error *err)
{
        uint8_t head[PEER_FRAME_HEAD_SIZE];
        _cleanup_free_ uint8_t *frame = NULL;
        PeerMessage *msg;
        uint32_t len;
        int r;

        memset(out, 0, sizeof(*out));
        out->kind = MIGRATE_SERVED_BYE;
        timeout_ms = migrate_timeout(timeout_ms);
        r = peek_bytes(fd, head, sizeof(head), timeout_ms, err);
        if (r < 0)
                return r;
        len = (uint32_t)head[0] | (uint32_t)head[1] << 8 | (uint32_t)head[2] << 16 | (uint32_t)head[3] << 24;
        if (len > MIGRATE_MSG_MAX)
                return svemig_error_set(err, EMSGSIZE,
                                        "the peer sent a frame of %u bytes, over the limit of %u", len,
                                        MIGRATE_MSG_MAX);
        frame = malloc(PEER_FRAME_HEAD_SIZE + len);
        if (!frame)
                return svemig_error_set(err, ENOMEM, "out of memory");
        r = peek_bytes(fd, frame, PEER_FRAME_HEAD_SIZE + len, timeout_ms, err);
        if (r < 0)
                return r;
        /* A corrupt frame is left for whoever reads it, who reports it as such. */
        msg = svemig__peer__peer_message__unpack(NULL, len, frame + PEER_FRAME_HEAD_SIZE);
        if (!msg)
                return 0;
        switch (msg->body_case) {
        case SVEMIG__PEER__PEER_MESSAGE__BODY_MIGRATE:
                out->kind = MIGRATE_SERVED_MIGRATE;
                if (msg->migrate->guest && msg->migrate->guest->name)
                        snprintf(out->guest_name, sizeof(out->guest_name), "%s", msg->migrate->guest->name);
                if (msg->migrate->id.len == MIGRATE_ID_SIZE)
                        memcpy(out->id, msg->migrate->id.data, MIGRATE_ID_SIZE);
                break;
        case SVEMIG__PEER__PEER_MESSAGE__BODY_CHECK:
                out->kind = MIGRATE_SERVED_CHECK;
                break;
        case SVEMIG__PEER__PEER_MESSAGE__BODY_RESOLVE:
                out->kind = MIGRATE_SERVED_RESOLVE;
                break;
        case SVEMIG__PEER__PEER_MESSAGE__BODY_CHANNEL:
                out->kind = MIGRATE_SERVED_CHANNEL;
                if (msg->channel->id.len == MIGRATE_ID_SIZE)
                        memcpy(out->id, msg->channel->id.data, MIGRATE_ID_SIZE);
                out->channel = msg->channel->index;
                break;
        default:
                out->kind = MIGRATE_SERVED_HOST_INFO;
                break;
        }
        svemig__peer__peer_message__free_unpacked(msg, NULL);
        return 0;
}

int migrate_peek_header(int fd, unsigned timeout_ms, struct migrate_peeked_header *out,
                        struct svemig_error *err)
{
        _cleanup_free_ uint8_t *buf = NULL;
        struct svemig_stream_reader *rd = NULL;
        const struct svemig_stream_info *info;
        uint8_t head[PEER_FRAME_HEAD_SIZE];
        size_t at, header;
        int r;

        memset(out, 0, sizeof(*out));
        timeout_ms = migrate_timeout(timeout_ms);
        r = peek_bytes(fd, head, sizeof(head), timeout_ms, err);
        if (r < 0)
                return r;
        at = PEER_FRAME_HEAD_SIZE + (size_t)get_le32(head);
        if (at + SVEMIG_STREAM_PREAMBLE_SIZE > MIGRATE_PEEK_MAX)
                goto too_big;
        buf = malloc(MIGRATE_PEEK_MAX);
        if (!buf)
                return svemig_error_set(err, ENOMEM, "out of memory");
        r = peek_bytes(fd, buf, at + SVEMIG_STREAM_PREAMBLE_SIZE, timeout_ms, err);
        if (r < 0)
                return svemig_error_prefix(err, "the stream's preamble after the Migrate");
        r = svemig_stream_header_size(buf + at, &header, err);
        if (r < 0)
                return svemig_error_prefix(err, "the migrated stream");
        if (at + header > MIGRATE_PEEK_MAX)
                goto too_big;
        r = peek_bytes(fd, buf, at + header, timeout_ms, err);
        if (r < 0)
                return svemig_error_prefix(err, "the stream header after the Migrate");
        r = svemig_stream_reader_open_mem(buf + at, header, &rd, err);
        if (r < 0)
                return svemig_error_prefix(err, "the migrated stream");
        info = svemig_stream_reader_info(rd);
        for (size_t i = 0; i < info->n_slots; i++)
                out->memory_bytes += info->slots[i].size; /* the reader checked the sum against its limit */
        out->vcpus = info->vcpu_count;
        svemig_stream_reader_free(rd);
        return 0;
too_big:
        /* Peeked bytes stay in the socket's buffer, which is not made for more (nor is a real header). */
        return svemig_error_set(
                err, E2BIG,
                "the Migrate request and the stream header after it pass %u KiB, more than a "
                "destination looks at before it admits a guest",
                MIGRATE_PEEK_MAX >> 10);
}

int migrate_peek_request(int fd, unsigned timeout_ms, enum migrate_served_kind *kind, char *guest_name,
                         size_t name_size, struct svemig_error *err)
{
        struct migrate_peeked p;
        int r = migrate_peek(fd, timeout_ms, &p, err);

        *kind = p.kind;
        if (guest_name && name_size)
                snprintf(guest_name, name_size, "%s", p.guest_name);
        return r;
}

int migrate_refuse(int fd, int code, const char *reason, unsigned timeout_ms, struct svemig_error *err)
{
        Svemig__Peer__PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;
        Svemig__Peer__Verdict v = SVEMIG__PEER__VERDICT__INIT;
        struct wire w;
        char buf[4096];
        int r;

        v.code = code > 0 ? code : -code;
        v.message = (char *)reason;
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_VERDICT;
        msg.verdict = &v;
        wire_init(&w, fd, migrate_timeout(timeout_ms));
        r = wire_send(&w, &msg, err);
        wire_done(&w);
        if (r < 0)
                return r;
        /* Let the source read the Verdict: closing with its stream unread would reset the connection. */
        (void)shutdown(fd, SHUT_WR);
        for (;;) {
                ssize_t k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

                if (k == 0)
                        break;
                if (k < 0 && errno != EAGAIN && errno != EINTR)
                        break;
                if (k < 0 && wire_poll(fd, POLLIN, migrate_timeout(timeout_ms)) <= 0)
                        break;
        }
        return 0;
}

int migrate_channel_pass(int unix_fd, int conn_fd, struct svemig_error *err)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {0};
        uint8_t byte = 'C';
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr m = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = control.buf,
                           .msg_controllen = sizeof(control.buf)};
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);

        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &conn_fd, sizeof(int));
        if (sendmsg(unix_fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)
                return svemig_error_set(err, errno == EAGAIN ? EBUSY : errno,
                                        "cannot hand the memory channel to its receiver: %s",
                                        strerror(errno));
        return 0;
}
