/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "standby-proto.h"

#define ORDER_FDS_MAX 3

int standby_ready_send(int sock, int r, const struct svemig_error *err)
{
        struct standby_ready m = {.magic = STANDBY_READY_MAGIC};

        if (r < 0) {
                m.code = -r;
                snprintf(m.message, sizeof(m.message), "%s", svemig_error_str(err, r));
        }
        if (send(sock, &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
                return -errno;
        return 0;
}

int standby_ready_recv(int sock, struct svemig_error *err)
{
        struct standby_ready m;
        ssize_t n;

        n = recv(sock, &m, sizeof(m), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return -EAGAIN;
        if (n < 0)
                return errno == ECONNRESET ? 0 : svemig_error_set(err, errno, "%s", strerror(errno));
        if (n == 0)
                return 0;
        if (n != (ssize_t)sizeof(m) || m.magic != STANDBY_READY_MAGIC)
                return svemig_error_set(err, EPROTO, "it said something other than whether it is ready");
        if (m.code == 0)
                return 1;
        m.message[sizeof(m.message) - 1] = '\0';
        return svemig_error_set(err, m.code > 0 ? m.code : EIO, "%s", m.message);
}

int standby_order_send(int sock, const char *name, const char *dir, int receive_fd, int ready_fd,
                       int channel_fd, struct svemig_error *err)
{
        const int fds[ORDER_FDS_MAX] = {receive_fd, ready_fd, channel_fd};
        const size_t n_fds = channel_fd >= 0 ? 3 : 2;
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * ORDER_FDS_MAX)];
        } control = {0};
        struct standby_order o = {.magic = STANDBY_ORDER_MAGIC, .has_channel = channel_fd >= 0};
        struct iovec iov = {.iov_base = &o, .iov_len = sizeof(o)};
        struct msghdr m = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = control.buf,
                           .msg_controllen = CMSG_SPACE(sizeof(int) * n_fds)};
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);

        if (strlen(name) >= sizeof(o.name) || strlen(dir) >= sizeof(o.dir))
                return svemig_error_set(err, ENAMETOOLONG,
                                        "guest name or directory too long for a standby VMM");
        strcpy(o.name, name);
        strcpy(o.dir, dir);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        /* One datagram, queued whole or not at all: the standby only ever reads it whole. */
        if (sendmsg(sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof(o))
                return svemig_error_set(err, errno, "cannot hand the guest to the standby VMM: %s",
                                        strerror(errno));
        return 0;
}

/* Closes what a bad order brought. */
static void close_received(const int *fds, size_t n)
{
        for (size_t i = 0; i < n; i++)
                close(fds[i]);
}

int standby_order_recv(int sock, struct standby_order *order, struct standby_order_fds *out,
                       struct svemig_error *err)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * ORDER_FDS_MAX)];
        } control = {0};
        struct iovec iov = {.iov_base = order, .iov_len = sizeof(*order)};
        struct msghdr m = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = control.buf,
                           .msg_controllen = sizeof(control.buf)};
        int fds[ORDER_FDS_MAX] = {-1, -1, -1};
        size_t n_fds = 0;
        struct cmsghdr *c;
        ssize_t n;

        do
                n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == ECONNRESET ? 0
                                           : svemig_error_set(err, errno, "cannot read svemigd's order: %s",
                                                              strerror(errno));
        if (n == 0)
                return 0;
        for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        n_fds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        memcpy(fds, CMSG_DATA(c), sizeof(int) * MIN(n_fds, (size_t)ORDER_FDS_MAX));
                }
        if (n != (ssize_t)sizeof(*order) || order->magic != STANDBY_ORDER_MAGIC ||
            (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || n_fds != (order->has_channel ? 3u : 2u)) {
                close_received(fds, MIN(n_fds, (size_t)ORDER_FDS_MAX));
                return svemig_error_set(err, EPROTO, "svemigd's order to the standby VMM is garbled");
        }
        order->name[sizeof(order->name) - 1] = '\0';
        order->dir[sizeof(order->dir) - 1] = '\0';
        out->receive_fd = fds[0];
        out->ready_fd = fds[1];
        out->channel_fd = order->has_channel ? fds[2] : -1;
        return 1;
}
