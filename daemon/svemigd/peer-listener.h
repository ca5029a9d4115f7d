/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svemigd's TCP listener for its peers ([cluster] listen in migrate.conf).
 * The event loop accepts; each connection is served on a thread of its own,
 * since the peer protocol's calls block: peer_hello(), then migrate_serve()
 * for each request (HostInfo refreshes, pre-flight checks, migrations,
 * resolves) until the peer says Bye or goes away. What was served comes back
 * to the loop through an eventfd source and is handed to params.served()
 * there, on the loop's thread.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "svemig/error.h"
#include "svemig/hv.h"
#include "svemig/migrate.h"

struct peer_listener;
struct peer_tls_creds;

/*
 * On the loop, for every request served except HostInfo (which every peer
 * asks for each refresh interval): r and err as migrate_serve() returned
 * them, peer the name the peer gave in its Hello. A guest received
 * (s->kind == MIGRATE_SERVED_MIGRATE, s->guest) becomes the callee's.
 */
typedef void (*peer_served_fn)(void *userdata, const char *peer, struct migrate_served *s, int r,
                               const struct svemig_error *err);

/*
 * On the loop: the next request on a connection is a Migrate of guest_name,
 * migration id, whose stream header (peeked on the connection's thread,
 * migrate_peek_header()) says what memory the guest has, or header_r < 0 and
 * header_err why it could not be read; the callee admits it or refuses it,
 * takes fd (hello done, the request unread) and serves it in another
 * process, e.g. the guest's new VMM. The listener forgets it.
 */
struct peer_incoming {
        const char *guest_name;
        const uint8_t *id; /* MIGRATE_ID_SIZE bytes */
        uint64_t memory_bytes;
        int header_r;
        const struct svemig_error *header_err;
};

typedef void (*peer_incoming_fn)(void *userdata, const char *peer, const struct peer_incoming *in, int fd);

/*
 * On the loop: the connection is memory channel 'index' of migration id
 * (docs/migration.md "Memory channels"); its Channel message is next,
 * unread. The callee takes fd and hands it to the process receiving that
 * migration (migrate_channel_pass()), or closes it. The listener forgets it.
 */
typedef void (*peer_channel_fn)(void *userdata, const char *peer, const uint8_t id[MIGRATE_ID_SIZE],
                                unsigned index, int fd);

struct peer_listener_params {
        const char *host; /* an address or name to bind, or "*" for every address */
        uint16_t port;
        struct hv *hv;
        const struct peer_info *self; /* this host, as Hello and HostInfo tell it; outlives the listener */
        struct migrate_ledger
                *ledger;          /* the host's (host-ledger.h); NULL: migrations and resolves are refused */
        unsigned timeout_ms;      /* the longest wait on a peer inside a request */
        uint64_t mem_limit;       /* refuse guests with more RAM; 0 = MemAvailable */
        uint64_t ram_reserve;     /* [cluster] incoming-reserve: held for incoming guests, so theirs too */
        unsigned max_connections; /* 0 = 64; more are closed at once, with a warning */
        unsigned max_per_address; /* from one address; 0 = max_connections */
        unsigned idle_ms;         /* a connection with no request for this long is closed; 0 = 15 s */
        peer_served_fn served;    /* NULL: logged only (and a received guest destroyed) */
        peer_incoming_fn incoming; /* NULL: migrations are served here (migrate_serve()) */
        peer_channel_fn channel;   /* with incoming: memory channels; NULL: they are closed */
        peer_accept_fn accept;     /* judges each Hello's host name before anything else; NULL: any host */
        void *userdata;
        /*
         * Peer TLS ([cluster] tls-*): each connection's handshake comes first, and its Hello must
         * name a host its certificate names; NULL: plaintext (peer-tls = no).
         */
        const struct peer_tls_creds *tls;
};

int peer_listener_new(sd_event *event, const struct peer_listener_params *params, struct peer_listener **out,
                      struct svemig_error *err);

/*
 * Starts the clean stop: no new connections; idle connections are closed,
 * and those serving a request finish it first. done() runs on the loop once
 * every connection is gone (from within this call when none is open).
 */
void peer_listener_stop(struct peer_listener *l, void (*done)(void *userdata), void *userdata);

/* Stops if not stopped, waits for every connection's thread, and frees. */
void peer_listener_free(struct peer_listener *l);

unsigned peer_listener_n_connections(const struct peer_listener *l);

/* Where it listens, numerically, e.g. "[::]:7070" or "127.0.0.1:7070". */
const char *peer_listener_address(const struct peer_listener *l);
