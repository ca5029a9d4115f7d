/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The memory channels: MEMORY frames of a live migration on connections of
 * their own, beside the main one (docs/migration.md, "Memory channels").
 */

#include <stdint.h>

#include "migrate/pump.h"
#include "svemig/migrate.h"

struct memory_frame;
struct svemig_stream_info;
struct svemig_mem_map;
struct channels_out;
struct channels_in;

/*
 * Source: opens n memory channels of migration id through opts->reconnect
 * (hellos as self, then Channel). cell: the bytes of one grid cell
 * (chunk_pages pages); cell i goes on channel i % n.
 */
int channels_open(const struct migrate_opts *opts, const struct peer_info *self, const uint8_t *id,
                  unsigned n, uint64_t cell, unsigned timeout_ms, struct channels_out **out,
                  struct svemig_error *err);
/* The writer's memory sink (stream_writer_set_memory_sink()): sends a frame on its cell's channel. */
int channels_send(void *userdata, const struct memory_frame *f);
/* Ends every channel with its trailer. */
int channels_finish(struct channels_out *c, struct svemig_error *err);
uint64_t channels_out_bytes(struct channels_out *c);  /* sent, on every channel */
uint64_t channels_out_queued(struct channels_out *c); /* not yet taken by the peer (SIOCOUTQ) */
/* 0, or the first channel's failure and its reason. */
int channels_out_error(struct channels_out *c, struct svemig_error *err);
void channels_out_free(struct channels_out *c);

struct channels_in_stats {
        uint64_t pages, zero_pages, bytes;
        uint64_t torn_pages; /* failed their checks, the guest writing them as they went; came again */
};

/* r < 0: a channel failed (once, err its reason); 0: every channel came to its verified trailer. */
typedef void (*channel_event_fn)(void *userdata, int r, const struct svemig_error *err);

/*
 * Destination: takes n channels of migration id from unix_fd
 * (migrate_channel_pass()), each within timeout_ms (sooner failing when
 * pump, the connection's, says the source went away), and starts a thread
 * per channel writing the pages it carries through map. on_event is
 * called from a channel's thread: once if one fails, or once when all have
 * ended. A channel waits on the source with timeout_ms, counted from the
 * last data on any channel.
 */
int channels_accept(int unix_fd, const uint8_t *id, unsigned n, unsigned timeout_ms, struct pump *pump,
                    const struct svemig_stream_info *info, const struct svemig_mem_map *map,
                    channel_event_fn on_event, void *userdata, struct channels_in **out,
                    struct svemig_error *err);
/*
 * Waits (up to timeout_ms) until every channel has come to its verified
 * trailer, and every page that failed its check has come again.
 */
int channels_in_wait(struct channels_in *set, unsigned timeout_ms, struct channels_in_stats *st,
                     struct svemig_error *err);
/* Stops the threads (a failed migration: their sockets are shut down) and frees. */
void channels_in_free(struct channels_in *set);
