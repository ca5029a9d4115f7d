/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svemigd's link to one configured peer ([peer NAME] in migrate.conf), run
 * on a thread of its own so the event loop never waits on a peer: connect
 * over TCP, peer_hello(), then peer_request_info() every refresh interval.
 * A peer that cannot be reached, answers too late, closes the connection or
 * turns out to be another host is marked down with the reason and retried
 * with a backoff (250 ms, doubling up to the refresh interval).
 *
 * The link's state is read with peer_link_get() from any thread; the link
 * calls params.changed() from its own thread whenever the state changes (up,
 * down, another reason, other host information), so that the loop can
 * recompute the cluster view.
 */

#include <stdbool.h>
#include <stdint.h>

#include "svemig/cluster.h"
#include "svemig/error.h"
#include "svemig/migrate.h"

struct peer_link;

struct peer_link_params {
        const char *name;    /* the peer's host-name, as [peer NAME] says */
        const char *address; /* "HOST:PORT" as configured, for messages */
        const char *host;    /* what to connect to */
        uint16_t port;
        const struct peer_info *self; /* what this host says about itself; outlives the link */
        unsigned refresh_ms;
        unsigned timeout_ms;
        /* Called on the link's thread after a change: keep it to waking the loop (an eventfd write). */
        void (*changed)(void *userdata);
        void *userdata;
};

struct peer_link_state {
        bool up;
        bool known;                        /* info holds what the peer said (now, or when last up) */
        char reason[SVEMIG_ERROR_MSG_MAX]; /* down: why */
        struct peer_info info;             /* without id_regs (left empty) */
        struct cluster_id_diff id_diff;    /* its ID registers against this host's */
        uint64_t since_ns;                 /* CLOCK_REALTIME when it entered its state */
        uint64_t version;                  /* bumps with every change */
};

/* Copies the parameters' strings; starts the thread. */
int peer_link_start(const struct peer_link_params *params, struct peer_link **out, struct svemig_error *err);

/*
 * Says Bye to the peer if connected, stops the thread (cutting short any
 * wait on the peer) and frees the link. Does not call changed() again.
 */
void peer_link_stop(struct peer_link *link);

/* A snapshot of the link's state. */
void peer_link_get(struct peer_link *link, struct peer_link_state *out);

const char *peer_link_name(const struct peer_link *link);
/* "HOST:PORT" as configured. */
const char *peer_link_address(const struct peer_link *link);
