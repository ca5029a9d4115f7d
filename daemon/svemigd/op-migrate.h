/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* op-migrate.c: live migration through svemigd (docs/migration.md, "In the daemons"). */

#include <stdint.h>

#include "svemig/migrate.h"

struct svemigd;

/*
 * The peer listener's handoff (peer_incoming_fn, userdata the struct svemigd): fd (a peer connection, hello
 * done) carries a Migrate of in->guest_name, migration in->id, next. Admits the guest by the memory its
 * stream's header gives (admit.h), registers it with the id (so that a restarted svemigd settles it by the
 * host's ledger) and starts a VMM that receives it; or refuses it (over the memory limits, an unreadable
 * header, the name is taken here, the daemon is stopping). Takes fd.
 */
struct peer_incoming;
void svemigd_migrate_incoming(void *d, const char *peer, const struct peer_incoming *in, int fd);

/*
 * The peer listener's handoff of a memory channel (peer_channel_fn): fd is channel 'index' of migration
 * id. Passed to the VMM receiving that migration, or refused (closed, with a warning naming the peer,
 * the guest when there is one, and the index) when no guest arrives by it here. Takes fd.
 */
void svemigd_migrate_channel(void *d, const char *peer, const uint8_t id[MIGRATE_ID_SIZE], unsigned index,
                             int fd);
