/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The VMM's base for incremental checkpoints: the last checkpoint it wrote
 * (or restored from), by location and trailer digest, and the pages the
 * guest dirtied since, gathered from the hypervisor's dirty log. Whatever
 * else consumes the dirty log (a live migration's pre-copy) makes the base
 * unusable, and the next checkpoint is a full one.
 */

#include <stdbool.h>
#include <stdint.h>

#include "svemig/error.h"
#include "svemig/snapshot.h"

struct vmm;

struct vmm_checkpoint {
        char *location; /* NULL: no base, the next checkpoint is full */
        uint8_t digest[16];
        unsigned digest_bytes;
        uint64_t *dirty; /* pages dirtied since the base, gathered so far */
        size_t dirty_words;
};

/* Moves the hypervisor's dirty log into the base's bitmap (the guest must be paused). */
int vmm_checkpoint_collect(struct vmm *v, struct svemig_error *err);
/*
 * Fills opts' parent fields for an incremental checkpoint on the base, or
 * leaves them NULL (a full one) when there is no base svemig-vmm could read
 * back on a restore: none yet, or a file outside svemigd's snapshot
 * directory. Returns whether it is incremental.
 */
bool vmm_checkpoint_parent(const struct vmm *v, struct snapshot_opts *opts);
/* The checkpoint at location, whose digest is in stats, is the new base. */
void vmm_checkpoint_taken(struct vmm *v, const char *location, const struct svemig_stream_stats *stats);
/* The dirty log went elsewhere (a migration): no base until the next full checkpoint. */
void vmm_checkpoint_forget(struct vmm *v);
void vmm_checkpoint_done(struct vmm *v);
/* The chain rules for svemig-vmm: URLs with [store]'s settings, local files in the snapshot directory. */
void vmm_checkpoint_chain(const struct vmm *v, struct store_conf *sc, struct snapshot_chain *out);
