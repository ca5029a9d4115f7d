/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reaching a peer: resolve, connect with a timeout (cut short by a stop eventfd), hello, identity. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "svemig/peer-connect.h"

#define BYE_TIMEOUT_MS 1000u

/* 1: fd is writable (connected or failed), 0: timeout, -ECANCELED: stop_fd became readable. */
static int wait_connected(int fd, int stop_fd, unsigned timeout_ms)
{
        struct pollfd p[2] = {{.fd = fd, .events = POLLOUT}, {.fd = stop_fd, .events = POLLIN}};
        int k;

        do
                k = poll(p, stop_fd >= 0 ? 2 : 1, (int)timeout_ms);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return negative_errno();
        if (stop_fd >= 0 && p[1].revents)
                return -ECANCELED;
        return p[0].revents ? 1 : 0;
}

static int connect_one(const struct peer_address *a, const struct addrinfo *ai, unsigned timeout_ms,
                       int stop_fd, int *out, struct svemig_error *err)
{
        _cleanup_close_ int fd = -1;
        char ip[NI_MAXHOST] = "?", via[NI_MAXHOST + 4] = "";
        socklen_t len = sizeof(int);
        int one = 1, so_error = 0, r;

        getnameinfo(ai->ai_addr, ai->ai_addrlen, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST);
        /* A name: say which of its addresses failed. */
        if (strcmp(ip, a->host) != 0)
                snprintf(via, sizeof(via), " (%s)", ip);
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
                return svemig_error_set(err, errno, "cannot create a socket for %s%s: %s", a->address, via,
                                        strerror(errno));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                if (errno != EINPROGRESS)
                        return svemig_error_set(err, errno, "cannot connect to %s%s: %s", a->address, via,
                                                strerror(errno));
                r = wait_connected(fd, stop_fd, timeout_ms);
                if (r == -ECANCELED)
                        return r;
                if (r < 0)
                        return svemig_error_set(err, r, "cannot connect to %s%s: %s", a->address, via,
                                                strerror(-r));
                if (r == 0)
                        return svemig_error_set(err, ETIMEDOUT,
                                                "cannot connect to %s%s: no answer within %u ms", a->address,
                                                via, timeout_ms);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0)
                        so_error = errno;
                if (so_error)
                        return svemig_error_set(err, so_error, "cannot connect to %s%s: %s", a->address, via,
                                                strerror(so_error));
        }
        /* Requests and answers are small: do not let Nagle hold them back. */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        *out = fd;
        fd = -1;
        return 0;
}

int peer_dial(const struct peer_address *a, unsigned timeout_ms, int stop_fd, int *out,
              struct svemig_error *err)
{
        const struct addrinfo hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG,
        };
        struct addrinfo *res = NULL;
        char port[8];
        int r;

        snprintf(port, sizeof(port), "%u", a->port);
        r = getaddrinfo(a->host, port, &hints, &res);
        if (r != 0)
                return svemig_error_set(err, r == EAI_SYSTEM ? errno : EHOSTUNREACH,
                                        "cannot resolve %s: %s; check [peer %s] address in migrate.conf",
                                        a->host, r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r),
                                        a->name);
        r = svemig_error_set(err, EHOSTUNREACH, "%s resolves to no address", a->host);
        for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                r = connect_one(a, ai, timeout_ms, stop_fd, out, err);
                if (r == 0 || r == -ECANCELED)
                        break;
        }
        freeaddrinfo(res);
        if (r == 0 && a->transport) {
                int fd = *out;

                r = a->transport->secure(a->transport->userdata, fd, a->name, timeout_ms, out, err);
                if (r < 0)
                        return svemig_error_prefix(err, "%s (%s)", a->address, a->name);
        }
        return r;
}

int peer_greet(const struct peer_address *a, int fd, const struct peer_info *self, unsigned timeout_ms,
               struct peer_info *remote, struct svemig_error *err)
{
        int r;

        r = peer_hello(fd, self, timeout_ms, remote, err);
        if (r < 0)
                return svemig_error_prefix(err, "%s: the hello failed", a->address);
        if (strcmp(remote->host_name, a->name) != 0) {
                (void)peer_bye(fd, BYE_TIMEOUT_MS, NULL);
                r = svemig_error_set(err, EINVAL,
                                     "%s is host %s, not %s: fix [peer %s] address in migrate.conf (or that "
                                     "host's host-name)",
                                     a->address, remote->host_name, a->name, a->name);
                peer_info_done(remote);
                return r;
        }
        return 0;
}

int peer_connect(const struct peer_address *a, const struct peer_info *self, unsigned timeout_ms,
                 int stop_fd, int *out, struct peer_info *remote, struct svemig_error *err)
{
        int fd, r;

        r = peer_dial(a, timeout_ms, stop_fd, &fd, err);
        if (r < 0)
                return r;
        r = peer_greet(a, fd, self, timeout_ms, remote, err);
        if (r < 0) {
                close(fd);
                return r;
        }
        *out = fd;
        return 0;
}
