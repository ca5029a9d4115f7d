/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The destination's durable handoff outcomes (docs/migration.md, "The
 * ledger"): the internal half of svemig/migrate.h's migrate_ledger.
 */

#include "svemig/migrate.h"

/* Records a new migration as pending. -EEXIST for an id seen before. */
int ledger_begin(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE]);

/*
 * Makes the outcome final if still pending: commit() runs the caller's start
 * under the ledger's lock and records COMMITTED when it returns 0, ABORTED
 * otherwise. Returns the final state.
 */
enum migrate_ledger_state ledger_commit(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                                        int (*commit)(void *userdata), void *userdata);
/* Pending -> ABORTED. Returns the final state. */
enum migrate_ledger_state ledger_abort(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE]);
/*
 * A Resolve: aborts a pending one; an unknown id is recorded as aborted. Returns the final state, or
 * MIGRATE_LEDGER_UNKNOWN when the ledger could not record it (no answer may be given then).
 */
enum migrate_ledger_state ledger_resolve(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE]);
