/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The stream's bytes between a local pipe and the peer's socket, on a
 * thread of their own, so that the stream writer and reader never wait on
 * the peer without a timeout.
 */

#include <stdbool.h>
#include <stdint.h>

#include "svemig/error.h"

struct pump;

enum pump_dir {
        PUMP_TO_PEER,   /* source: local pipe -> socket */
        PUMP_FROM_PEER, /* destination: socket -> local pipe */
};

/*
 * Starts a thread moving stream bytes between a pipe and the socket, so that
 * the stream writer/reader (which block without limit) never wait on the
 * peer: the pump does, with the timeout. *local_fd is the end the stream
 * writer (TO_PEER) or reader (FROM_PEER) uses; the pump owns it.
 */
int pump_start(int sock, enum pump_dir dir, unsigned timeout_ms, uint64_t max_bps, int *local_fd,
               struct pump **out, struct svemig_error *err);

/* Waits until 'bytes' stream bytes have moved (TO_PEER: into the socket; FROM_PEER: into the pipe). */
int pump_flush(struct pump *p, uint64_t bytes, struct svemig_error *err);

/* TO_PEER: from now on, data or a close from the peer means it stopped the migration. */
void pump_watch_peer(struct pump *p, bool on);

/* FROM_PEER: whether data is expected now, i.e. the timeout applies. */
void pump_expect(struct pump *p, bool on);

/*
 * Stops the pump as failed with code and reason, from any thread: the
 * stream's reader (FROM_PEER) then sees its end and fails with them.
 */
void pump_abort(struct pump *p, int code, const char *reason);

/* Stream bytes moved so far. */
uint64_t pump_bytes(struct pump *p);

/* 0, or the pump's failure with its reason. */
int pump_error(struct pump *p, struct svemig_error *err);

/*
 * Stops the thread. TO_PEER: closes the writer's end and waits until every
 * byte has gone to the socket first. Returns pump_error().
 */
int pump_stop(struct pump *p, struct svemig_error *err);

void pump_free(struct pump *p);
