/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Admission control: what guest memory this host takes on (docs/migration.md
 * "Admission").
 *
 * - Every guest with a VMM, and every guest arriving, counts its RAM
 *   against what the host can back: [guests] host-memory (default MemTotal)
 *   times [guests] memory-overcommit (default 1). guest create, a start
 *   that boots a stopped guest again, restore and incoming migrations are
 *   refused past it.
 * - Guests arriving (migrations on the peer port, restores) also count
 *   against a budget of their own, [cluster] incoming-memory-limit (default
 *   3/4 of host-memory), from the moment they are admitted by their stream
 *   header until they have arrived or failed: streams cannot claim more
 *   memory at once than that, however cheaply their pages travel.
 * - No guest may have more RAM than a stream can hold
 *   (SVEMIG_STREAM_MEMORY_MAX): it could never be snapshotted or migrated.
 *
 * Each refusal gives the figures (asked, in use, arriving, limit) and what
 * to do.
 */

#include <stdint.h>

#include "conf.h"
#include "svemig/error.h"

struct svemigd;

struct admit_limits {
        uint64_t host_memory;    /* [guests] host-memory, else MemTotal */
        unsigned overcommit_pct; /* [guests] memory-overcommit, in percent */
        uint64_t incoming_limit; /* [cluster] incoming-memory-limit, else 3/4 of host_memory */
};

/* The limits conf sets, with their defaults from this host's memory. */
int admit_limits_init(const struct migrate_conf *conf, struct admit_limits *out, struct svemig_error *err);

/* What the host can back: host_memory * overcommit. */
uint64_t admit_capacity(const struct admit_limits *l);

/*
 * Whether a guest of bytes of RAM may get a VMM here (guest create, start
 * of a stopped guest): what the host backs, less every guest that has one
 * and every guest arriving. what names the operation in the refusal.
 */
int admit_guest(struct svemigd *d, const char *what, const char *name, uint64_t bytes,
                struct svemig_error *err);

/*
 * Whether a guest arriving with bytes of RAM (by its stream's header: an
 * incoming migration, a restore) may come now: admit_guest()'s rule, and
 * the guests arriving together within incoming_limit. Once admitted, the
 * caller counts it in flight (guest_entry.arriving_bytes) until it has
 * arrived or failed.
 */
int admit_arriving(struct svemigd *d, const char *what, const char *name, uint64_t bytes,
                   struct svemig_error *err);

/* The guest has arrived (or failed): its RAM counts as any guest's from now on, if it has a VMM. */
struct guest_entry;
void admit_arrived(struct guest_entry *e);
