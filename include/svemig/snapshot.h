/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Whole-guest snapshots: a guest's vcpus and memory written to an svemig
 * stream (include/svemig/stream.h), and restored from one into a fresh guest
 * on the same or another host.
 */

#include <stdint.h>

#include "svemig/error.h"
#include "svemig/guest.h"
#include "svemig/stream.h"

/*
 * Called between pieces of work. phase is "vcpus", "memory" or "verify";
 * done/total are bytes of guest memory (or vcpus, in "vcpus").
 * Returning a negative errno (e.g. -ECANCELED) stops the operation.
 */
typedef int (*snapshot_progress_fn)(void *userdata, const char *phase, uint64_t done, uint64_t total);

struct snapshot_opts {
        const char *purpose; /* "snapshot" (the default), "checkpoint", "migration" */
        uint64_t created_ns; /* 0 = now; fixed for reproducible output */
        unsigned n_threads;  /* compression workers; 0 = one per CPU */
        snapshot_progress_fn progress;
        void *userdata;
};

/*
 * A stream header describing guest g, the one snapshots and migrations
 * send first: the host, the guest's VL set and vcpu features from vcpu0's
 * captured state, the RAM slot, and the host-invariant registers vcpu0 saw.
 * info points into the struct, so keep it in place while info is used.
 */
struct snapshot_header {
        struct svemig_stream_info info;
        struct svemig_stream_slot slot;
        struct vcpu_reg id_regs[SVEMIG_STREAM_ID_REGS_MAX];
};

int snapshot_describe(struct guest *g, const struct vcpu_state *vcpu0, const char *purpose,
                      enum svemig_compression compression, uint64_t created_ns, struct snapshot_header *out,
                      struct svemig_error *err);

/*
 * Writes guest g, which must not be running, as a complete stream to fd.
 * stats (optional) receives the writer's totals.
 */
int snapshot_write_fd(struct guest *g, int fd, const struct snapshot_opts *opts,
                      struct svemig_stream_stats *stats, struct svemig_error *err);

/*
 * Writes guest g to path, never half: into a temporary file beside it,
 * fsync'd, then renamed over path (and the directory fsync'd). On any
 * failure, or a cancel from the progress callback, path is untouched and
 * the temporary file is gone.
 */
int snapshot_save(struct guest *g, const char *path, const struct snapshot_opts *opts,
                  struct svemig_stream_stats *stats, struct svemig_error *err);

/*
 * Whether host hv can take the stream whose header is info: its VL set, its
 * vcpu features, and the ID registers the guest saw. Needs nothing past the
 * header, so a destination can refuse before any memory moves.
 */
int snapshot_check_host(struct hv *hv, const struct svemig_stream_info *info, struct svemig_error *err);

/*
 * Restores the stream on fd into a new guest on hv: the header is checked
 * first (snapshot_check_host), then every vcpu is restored and verified,
 * then memory is read, then the trailer is verified. On any failure nothing
 * is left behind. The new guest is not running.
 */
int snapshot_restore_fd(struct hv *hv, int fd, const struct snapshot_opts *opts, struct guest **out,
                        struct svemig_error *err);

/*
 * The second half of snapshot_restore_fd(), for a caller that prepares the
 * guest itself (e.g. pre-faults its memory): restores the stream rd, whose
 * header the caller has read and checked with snapshot_check_host(), into g,
 * an empty guest (guest_create_empty()) with the stream's vcpu count and
 * memory size. On failure, g must be destroyed.
 */
int snapshot_restore_into(struct guest *g, struct svemig_stream_reader *rd, const struct snapshot_opts *opts,
                          struct svemig_error *err);

/* snapshot_restore_fd() from a file. */
int snapshot_load(struct hv *hv, const char *path, const struct snapshot_opts *opts, struct guest **out,
                  struct svemig_error *err);
