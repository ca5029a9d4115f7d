/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Reaching a peer: resolve its configured address, connect over TCP within a
 * timeout, say hello, and make sure it is the host migrate.conf names. These
 * calls block; run them on a thread of their own (a peer link, a migration's
 * worker), never on the event loop.
 */

#include <stdint.h>

#include "svemig/error.h"
#include "svemig/migrate.h"

/*
 * What a dialled connection goes through before anything is said on it, e.g.
 * peer TLS (the daemons' peer-tls.c): secure() takes fd (and closes it, also
 * on failure), authenticates the peer as host name and returns in *out the
 * fd the peer protocol then uses. The library itself speaks plaintext.
 */
struct peer_transport {
        int (*secure)(void *userdata, int fd, const char *name, unsigned timeout_ms, int *out,
                      struct svemig_error *err);
        void *userdata;
};

struct peer_address {
        const char *name;    /* the host-name the peer must answer with ([peer NAME]) */
        const char *address; /* "HOST:PORT" as configured, for messages */
        const char *host;
        uint16_t port;
        const struct peer_transport *transport; /* NULL: plaintext */
};

/*
 * Connects to each address host resolves to, in turn, until one answers
 * within timeout_ms. While waiting, a readable stop_fd (-1: none) gives up
 * with -ECANCELED. Returns the connected socket (non-blocking, TCP_NODELAY)
 * in *out, through a->transport when there is one.
 */
int peer_dial(const struct peer_address *a, unsigned timeout_ms, int stop_fd, int *out,
              struct svemig_error *err);

/*
 * peer_hello() on a dialled socket, then checks that the peer is a->name:
 * a peer answering as another host is refused (EINVAL) with what to fix.
 * *remote is filled on success only (free with peer_info_done()).
 */
int peer_greet(const struct peer_address *a, int fd, const struct peer_info *self, unsigned timeout_ms,
               struct peer_info *remote, struct svemig_error *err);

/* Both: a connection to the peer with the hello done, ready for requests. */
int peer_connect(const struct peer_address *a, const struct peer_info *self, unsigned timeout_ms,
                 int stop_fd, int *out, struct peer_info *remote, struct svemig_error *err);
