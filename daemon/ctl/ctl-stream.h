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

/*
 * Reads path ("-" = stdin) through. Returns 0 when every checksum, count and
 * the digest verify, else a negative errno with the reason in err. *stats
 * and *bytes say how far it got either way.
 */
int ctl_stream_walk(const char *path, const struct ctl_stream_visit *v, struct svemig_stream_stats *stats,
                    uint64_t *bytes, struct svemig_error *err);

/* The exit code for ctl_stream_walk()'s result: CORRUPT for what is wrong with the stream. */
int ctl_stream_exit(int r);
