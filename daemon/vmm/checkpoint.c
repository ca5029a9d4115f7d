/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The base of incremental checkpoints (checkpoint.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "macro.h"
#include "vmm.h"

int vmm_checkpoint_collect(struct vmm *v, struct svemig_error *err)
{
        struct vmm_checkpoint *c = &v->checkpoint;
        size_t words = (guest_mem_size(v->guest) / HV_PAGE_SIZE + 63) / 64;
        _cleanup_free_ uint64_t *bits = calloc(words, sizeof(*bits));
        int r;

        if (!bits || (!c->dirty && !(c->dirty = calloc(words, sizeof(*c->dirty)))))
                return svemig_error_set(err, ENOMEM, "out of memory for the dirty log");
        c->dirty_words = words;
        r = hv_vm_get_dirty_log(guest_vm(v->guest), GUEST_RAM_SLOT, bits, err);
        if (r < 0)
                return svemig_error_prefix(err, "cannot read the guest's dirty log");
        for (size_t i = 0; i < words; i++)
                c->dirty[i] |= bits[i];
        return 0;
}

void vmm_checkpoint_chain(const struct vmm *v, struct store_conf *sc, struct snapshot_chain *out)
{
        const char *dir = v->conf.snapshot_dir;

        migrate_conf_store_conf(&v->conf, sc);
        out->sc = sc;
        out->local_dir = dir && !store_is_remote(dir) ? dir : "";
}

bool vmm_checkpoint_parent(const struct vmm *v, struct snapshot_opts *opts)
{
        const struct vmm_checkpoint *c = &v->checkpoint;
        struct snapshot_chain chain;
        struct store_conf sc;

        if (!c->location || !c->dirty)
                return false;
        vmm_checkpoint_chain(v, &sc, &chain);
        if (snapshot_chain_check(&chain, c->location, NULL) < 0)
                return false;
        opts->parent_location = c->location;
        opts->parent_digest = c->digest;
        opts->parent_digest_bytes = c->digest_bytes;
        opts->dirty = c->dirty;
        return true;
}

void vmm_checkpoint_taken(struct vmm *v, const char *location, const struct svemig_stream_stats *stats)
{
        struct vmm_checkpoint *c = &v->checkpoint;

        free(c->location);
        c->location = stats->digest_bytes ? strdup(location) : NULL;
        memcpy(c->digest, stats->digest, sizeof(c->digest));
        c->digest_bytes = stats->digest_bytes;
        if (c->dirty)
                memset(c->dirty, 0, c->dirty_words * sizeof(*c->dirty));
}

void vmm_checkpoint_forget(struct vmm *v)
{
        free(v->checkpoint.location);
        v->checkpoint.location = NULL;
}

void vmm_checkpoint_done(struct vmm *v)
{
        vmm_checkpoint_forget(v);
        free(v->checkpoint.dirty);
        v->checkpoint.dirty = NULL;
}
