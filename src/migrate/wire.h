/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The peer protocol's framing: PeerMessage frames on a socket, every wait
 * bounded (docs/migration.md). The lowest layer of the migration engine.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "pbarena.h"
#include "peer.pb-c.h"
#include "svemig/migrate.h"

typedef Svemig__Peer__PeerMessage PeerMessage;

#define PEER_FRAME_HEAD_SIZE 8u
#define PEER_FRAME_SEED      0x50454552u /* "PEER" */

/* timeout_ms, or MIGRATE_TIMEOUT_MS_DEFAULT when 0. */
unsigned migrate_timeout(unsigned timeout_ms);

/* A connection and what crossed it, for reports. */
struct wire {
        int fd;
        unsigned timeout_ms;
        uint64_t bytes_out, bytes_in;
        struct pbarena arena; /* holds the last received message */
        PeerMessage *last;
};

void wire_init(struct wire *w, int fd, unsigned timeout_ms);
void wire_done(struct wire *w);

/*
 * Sends one message. -ETIMEDOUT when the peer takes nothing for the timeout,
 * -EPIPE/-ECONNRESET when the connection is gone.
 */
int wire_send(struct wire *w, const PeerMessage *msg, struct svemig_error *err);

/*
 * Receives one message into w->last (valid until the next wire_recv).
 * timeout_ms 0 waits forever. -ENOTCONN for an orderly close before the
 * first byte of a frame, -EPIPE for one inside a frame, -ECONNRESET,
 * -ETIMEDOUT, -EBADMSG for a corrupt frame, -EMSGSIZE.
 */
int wire_recv(struct wire *w, unsigned timeout_ms, PeerMessage **out, struct svemig_error *err);

/* Sends raw bytes (a stream header) with the timeout. */
int wire_send_raw(struct wire *w, const void *buf, size_t len, struct svemig_error *err);

/* The same, gathered (a frame's head, payload and check); iov is consumed. */
int wire_sendv(struct wire *w, struct iovec *iov, int n, struct svemig_error *err);

/* Waits for events on fd, or the timeout (0 = forever): 1 ready, 0 timed out, -errno. */
int wire_poll(int fd, short events, unsigned timeout_ms);

/* The body's name, for "expected X, got Y". */
const char *wire_body_name(const PeerMessage *msg);

/* Sends an Abort (best effort: errors are ignored) with a reason. */
void wire_send_abort(struct wire *w, int code, enum migrate_step step, const char *reason);

/*
 * When the peer broke a wait with an Abort, returns its -code and reason;
 * otherwise r. Reads at most briefly: the peer either said why or did not.
 */
int wire_peer_reason(struct wire *w, int r, const char *peer, struct svemig_error *err);

/* Ends a connection now, as a killed process would: the peer reads EOF. */
void wire_kill(struct wire *w);

/* Both halves of an ended migration: a FIN, then what the peer still sends is drained until it closes. */
void wire_linger(struct wire *w);
