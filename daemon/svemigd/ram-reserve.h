/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The incoming RAM reserve ([cluster] incoming-reserve in migrate.conf): a
 * standby VMM (`svemig-vmm --standby`, daemon/vmm/standby.c) started ahead, which
 * holds that much anonymous memory in transparent huge pages, faulted in,
 * and becomes the receiving VMM of the next guest to migrate in. So the
 * guest lands in memory that is there already, mapped in the process that
 * receives it, as in QEMU's -incoming -mem-prealloc destination, instead of
 * paying the kernel's clearing of fresh pages and the filling of their
 * page tables inside the migration.
 *
 * Each standby serves one guest. The next is started once that guest has
 * arrived (ram_reserve_refill()), not while it streams in: faulting in a new
 * reserve then would take CPU and memory bandwidth from the migration. A
 * standby that dies before it is used is logged and replaced; if its
 * replacement fails too, the next try waits for ram_reserve_refill().
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "svemig/error.h"

struct ram_reserve;

/* A ready standby, taken: the caller's to hand a guest to (vmm_spawn_handoff()) and to close/reap. */
struct ram_standby {
        pid_t pid;
        int control_fd; /* svemigd's end of its control socket (standby-proto.h) */
        uint64_t size;  /* bytes of RAM it holds */
};

/* A taken standby that will not be used after all: told to exit (its socket closed), and reaped. */
void ram_standby_discard(const struct ram_standby *s);

/*
 * Starts the first standby at once: size bytes (rounded up to a page),
 * with config (migrate.conf; NULL: the defaults) and verbose as for any VMM.
 */
int ram_reserve_new(sd_event *event, uint64_t size, const char *config, bool verbose,
                    struct ram_reserve **out, struct svemig_error *err);
/*
 * The ready standby, now the caller's; or -EAGAIN while one is being
 * prepared, or handed out and not refilled yet, or failed (the next is
 * tried at the next ram_reserve_refill()), with a sentence saying so.
 */
int ram_reserve_take(struct ram_reserve *r, struct ram_standby *out, struct svemig_error *err);
/* After the guest given the last standby has arrived (or failed to), or after a failure: the next one. */
void ram_reserve_refill(struct ram_reserve *r);
/* Closes the waiting standby's control socket (it exits) and reaps it. */
void ram_reserve_free(struct ram_reserve *r);
