/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Reading a whole stream file for svemigctl inspect and verify: every frame
 * is decoded and checked (memory too, into no destination), and nothing may
 * follow the trailer.
 */

#include <stdint.h>

#include "svemig/stream.h"

struct ctl_stream_visit {
        void *ctx;
        /* Called once the header has been read and checked. */
        void (*header)(void *ctx, const struct svemig_stream_info *info);
        /* Called for each VCPU frame, in stream order. */
        void (*vcpu)(void *ctx, const struct vcpu_state *st);
        /*
         * Called for each device frame (1.2), in stream order: type is
         * SVEMIG_FRAME_VGIC, _TIMERS, _CONSOLE or _VIRTIO and st the matching
         * struct vgic_state, timer_state, console_state or virtio_dev_state.
         */
        void (*device)(void *ctx, int type, const void *st);
};

/* An incremental stream's parent, as its header names it; location "" for a full stream. */
struct ctl_parent {
        char location[SVEMIG_STREAM_LOCATION_MAX];
        uint8_t digest[16];
        unsigned digest_bytes;
};

/*
 * Reads path ("-" = stdin) through. Returns 0 when every checksum, count and
 * the digest verify, else a negative errno with the reason in err. *stats
 * and *bytes say how far it got either way; parent (optional) gets the
 * parent the header names.
 */
int ctl_stream_walk(const char *path, const struct ctl_stream_visit *v, struct svemig_stream_stats *stats,
                    uint64_t *bytes, struct ctl_parent *parent, struct svemig_error *err);

/* One verified link of a chain: a parent, read whole, its digest the one its child names. */
struct ctl_chain_link {
        const char *location;
        const char *digest; /* hex */
        uint64_t bytes;
        uint64_t mem_pages;
};

/*
 * Walks the parents of a stream whose header named parent (ctl_stream_walk),
 * up to the full one: each read and verified whole, its digest checked
 * against the one its child names; fn is called for each link. A missing
 * or different parent fails with "the chain is broken" and its location.
 */
int ctl_stream_walk_chain(const struct ctl_parent *parent,
                          void (*fn)(void *ctx, const struct ctl_chain_link *l), void *ctx,
                          struct svemig_error *err);

/* The [store] settings of $SVEMIG_CONFIG, else the default migrate.conf (migrate_conf_done() conf after). */
struct migrate_conf;
struct store_conf;
int ctl_stream_store_conf(struct migrate_conf *conf, struct store_conf *sc, struct svemig_error *err);

/* The exit code for ctl_stream_walk()'s result: CORRUPT for what is wrong with the stream. */
int ctl_stream_exit(int r);
