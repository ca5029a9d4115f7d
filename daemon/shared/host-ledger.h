/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * This host's handoff ledger (docs/migration.md, "The ledger"):
 * <state-directory>/ledger, one durable record of every incoming migration's
 * outcome, shared by svemigd's peer listener (which answers Resolve), each
 * receiving svemig-vmm (which commits) and the guest registry (which adopts
 * or drops, after a restart, a guest that was arriving).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "svemig/migrate.h"

#define HOST_LEDGER_SUBDIR "ledger"

/* Decided entries older than this are pruned (ABORTED) or folded into the committed list (COMMITTED). */
#define HOST_LEDGER_KEEP_S (24u * 3600u)

static inline int host_ledger_open(const char *state_dir, struct migrate_ledger **out,
                                   struct svemig_error *err)
{
        char *dir;
        int r;

        if (asprintf(&dir, "%s/%s", state_dir, HOST_LEDGER_SUBDIR) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        r = migrate_ledger_open(dir, out, err);
        free(dir);
        return r;
}
