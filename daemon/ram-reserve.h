/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The incoming RAM reserve ([cluster] incoming-reserve in migrate.conf):
 * a memfd of that size whose pages svemigd faults in ahead, on a thread of
 * its own, so that a guest migrating in lands in memory that is already
 * there, as QEMU's -incoming -mem-prealloc destination does, instead of
 * paying the kernel's clearing of fresh pages inside the migration.
 *
 * Each memfd serves one guest (fresh memory reads as zero, and a receiver
 * leaves zero pages unwritten). The next is prepared once that guest has
 * arrived (ram_reserve_refill()), not while it streams in: faulting in a
 * new reserve then would take CPU and memory bandwidth from the migration.
 */

#include <stdint.h>
#include <systemd/sd-event.h>

#include "svemig/error.h"

struct ram_reserve;

/* Starts preparing a reserve of size bytes (rounded up to a page) at once. */
int ram_reserve_new(sd_event *event, uint64_t size, struct ram_reserve **out, struct svemig_error *err);
/*
 * The ready memfd, now the caller's (*size its size); or -EAGAIN while it
 * is being prepared, or handed out and not refilled yet, or failed (then
 * this call starts another), with a sentence saying so in err.
 */
int ram_reserve_take(struct ram_reserve *r, int *fd, uint64_t *size, struct svemig_error *err);
/* After the guest given the last reserve has arrived (or failed to): prepares the next one. */
void ram_reserve_refill(struct ram_reserve *r);
uint64_t ram_reserve_size(const struct ram_reserve *r);
/* Waits for a preparation in flight, then frees the memory. */
void ram_reserve_free(struct ram_reserve *r);
