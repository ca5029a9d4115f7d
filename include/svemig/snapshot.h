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
#include "svemig/store.h"
#include "svemig/stream.h"

/*
 * Called between pieces of work. phase is "vcpus", "memory" or "verify";
 * done/total are bytes of guest memory (or vcpus, in "vcpus").
 * Returning a negative errno (e.g. -ECANCELED) stops the operation.
 */
typedef int (*snapshot_progress_fn)(void *userdata, const char *phase, uint64_t done, uint64_t total);

struct snapshot_live;

struct snapshot_opts {
        const char *purpose; /* "snapshot" (the default), "checkpoint", "migration" */
        uint64_t created_ns; /* 0 = now; fixed for reproducible output */
        unsigned n_threads;  /* compression workers; 0 = one per CPU */
        snapshot_progress_fn progress;
        void *userdata;
        /*
         * An incremental snapshot: its parent's location and trailer digest,
         * and the pages dirtied since the parent (a bitmap of the RAM slot, as
         * KVM_GET_DIRTY_LOG fills it), the only ones written. NULL: full.
         */
        const char *parent_location;
        const uint8_t *parent_digest;
        unsigned parent_digest_bytes;
        const uint64_t *dirty;
        /* A running guest, written with pre-copy (snapshot_write_live()); NULL: it must be paused. */
        struct snapshot_live *live;
};

/* The most links a chain of incremental snapshots may have above its full one. */
#define SNAPSHOT_CHAIN_MAX 64u

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
 * A checkpoint of a running guest, as a live migration's pre-copy: its
 * memory is written while it runs (all of it, or opts->dirty for an
 * incremental one), then what it dirtied meanwhile, in rounds, from the
 * dirty log; then it is paused for the vcpus and the last dirty pages
 * alone, so that the pause does not grow with its memory. A restore
 * applies the frames in order, later pages over earlier ones.
 */
struct snapshot_live {
        /*
         * In and out: the pages dirtied since the last checkpoint. Every page the
         * dirty log gives is added, so that nothing is lost if this one fails.
         */
        uint64_t *since_base;
        unsigned max_rounds; /* pre-copy rounds after the first; 0: 5 */
        uint64_t last_pages; /* a round this small goes into the pause; 0: 256 */
        /* Called on this thread right after the guest paused. */
        void (*paused)(void *userdata);
        void *userdata;
        unsigned rounds; /* out: pre-copy rounds done */
};

/* The guest must be running and keep a dirty log. It is left paused, whatever the outcome past the pause. */
int snapshot_write_live(struct guest *g, int fd, const struct snapshot_opts *opts,
                        struct snapshot_live *live, struct svemig_stream_stats *stats,
                        struct svemig_error *err);

/*
 * Writes guest g to path, never half: into a temporary file beside it,
 * fsync'd, then renamed over path (and the directory fsync'd). On any
 * failure, or a cancel from the progress callback, path is untouched and
 * the temporary file is gone.
 */
int snapshot_save(struct guest *g, const char *path, const struct snapshot_opts *opts,
                  struct svemig_stream_stats *stats, struct svemig_error *err);

/*
 * snapshot_save() to any location (include/svemig/store.h): a local path
 * goes to snapshot_save(); a URL is uploaded while the stream is written,
 * with no local copy, and appears only once complete. On failure or a
 * cancel nothing is left visible, and err names the URL and the server's
 * answer when the upload is what failed.
 */
int snapshot_save_to(struct guest *g, const char *location, const struct store_conf *sc,
                     const struct snapshot_opts *opts, struct svemig_stream_stats *stats,
                     struct svemig_error *err);

/*
 * A stream read from a location: a local path or a URL. header_only asks
 * the store for the header's bytes alone (a Range request), for judging a
 * stream before any memory moves; the reader then holds nothing past the
 * header.
 */
struct snapshot_source;

int snapshot_source_open(const char *location, const struct store_conf *sc, bool header_only,
                         const struct svemig_stream_read_opts *ropts, struct snapshot_source **out,
                         struct svemig_error *err);
struct svemig_stream_reader *snapshot_source_reader(struct snapshot_source *s);
/*
 * Frees s (NULL too). r is the caller's result so far: when it is a failure
 * and the transfer itself broke (the server went away, a stall, a 5xx past
 * the retries), the transfer's reason replaces the reader's account of the
 * short stream in err. Returns r, or the transfer's error.
 */
int snapshot_source_close(struct snapshot_source *s, int r, struct svemig_error *err);

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

/*
 * Where the parents of an incremental stream may be read from: URLs with
 * sc's settings, and local files in local_dir only (NULL: anywhere, for a
 * tool that runs with its user's rights; "" : none).
 */
struct snapshot_chain {
        const struct store_conf *sc;
        const char *local_dir;
};

/* Whether location may be read as a parent under c, with the reason if not. */
int snapshot_chain_check(const struct snapshot_chain *c, const char *location, struct svemig_error *err);

/*
 * For an incremental stream whose header is info: restores the memory of
 * its parents into g, the full one first, each parent's trailer digest
 * checked against the digest its child names. A missing or different
 * parent is refused by its location. Then the caller restores the stream
 * itself with snapshot_restore_into(). Nothing to do for a full stream.
 */
int snapshot_restore_parents(struct guest *g, const struct svemig_stream_info *info,
                             const struct snapshot_chain *c, const struct snapshot_opts *opts,
                             struct svemig_error *err);

/*
 * Folds the chain ending at location (its parents read under c) into one
 * full stream on out_fd: the top's vcpus and header (without the parent),
 * and the memory the whole chain makes. Every link is verified as it is
 * read, each parent's digest against its child's; nothing is written
 * before the chain has been read whole. Needs the guest's memory size in
 * RAM.
 */
int snapshot_merge(const char *location, const struct snapshot_chain *c, int out_fd,
                   const struct snapshot_opts *opts, struct svemig_stream_stats *stats,
                   struct svemig_error *err);

/* snapshot_restore_fd() from a file. */
int snapshot_load(struct hv *hv, const char *path, const struct snapshot_opts *opts, struct guest **out,
                  struct svemig_error *err);
