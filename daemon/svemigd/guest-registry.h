/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svemigd's guests: one entry per <state>/guests/<name>/, holding the
 * guest's record (guest-record.h) and, while its VMM lives, the connection
 * to it (vmm-client.h). At start the registry reads every record and
 * reconnects to every VMM still listening; a VMM that is gone, or that dies
 * later, leaves its guest "dead" with the reason, and its snapshots listed.
 *
 * Entries are reference counted: an operation waiting on a VMM holds one,
 * so a delete meanwhile cannot free the entry under it.
 */

#include <stdbool.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "api.pb-c.h"
#include "guest-record.h"
#include "svemig/error.h"
#include "vmm-client.h"

struct guest_registry;

struct guest_entry {
        TAILQ_ENTRY(guest_entry) link;
        struct guest_registry *reg;
        unsigned refs;
        bool removed; /* deleted; freed with its last reference */
        struct guest_record rec;
        char *dir;
        char *record_path;
        struct vmm_client *vmm;  /* while its VMM lives */
        sd_event_source *child;  /* its VMM, when this svemigd started it: reaped, exit status known */
        bool child_exited;       /* ...and it has exited (reaped) */
        const char *busy;        /* an operation that changes what the guest is: "stop", "start"... */
        uint64_t busy_operation; /* its operation number, for messages */
        double dirty_rate;       /* as its VMM last measured it */
        bool start_when_ready;   /* a restore asked to run the guest once it is restored */
        bool settling;           /* left arriving by a previous svemigd: settled by the ledger */
        /*
         * Arriving: svemigd's end of the receiving VMM's channel socket
         * (migrate_recv_opts.channel_fd), where the migration's memory
         * channels are passed (op-migrate.c); -1 otherwise. Closed when the
         * migration has ended, or with the entry.
         */
        int channel_fd;
        /* Arriving (a migration or a restore admitted by its header, admit.h): its RAM, counted in flight.
         */
        uint64_t arriving_bytes;
};

int guest_registry_open(sd_event *event, const char *state_dir, struct guest_registry **out,
                        struct svemig_error *err);
void guest_registry_free(struct guest_registry *reg);

struct guest_entry *guest_registry_find(struct guest_registry *reg, const char *name);
/* Oldest first; NULL after the last. */
struct guest_entry *guest_registry_first(struct guest_registry *reg);
struct guest_entry *guest_registry_next(struct guest_entry *e);
unsigned guest_registry_count(const struct guest_registry *reg);
const char *guest_registry_dir(const struct guest_registry *reg);
/* The host's ledger of incoming migrations (host-ledger.h): the peer listener answers Resolve from it. */
struct migrate_ledger *guest_registry_ledger(struct guest_registry *reg);

/*
 * A new entry named rec->name: its directory is created (EEXIST when a
 * guest has the name) and the record written. rec is moved into the entry.
 */
int guest_registry_add(struct guest_registry *reg, struct guest_record *rec, struct guest_entry **out,
                       struct svemig_error *err);

struct guest_entry *guest_entry_ref(struct guest_entry *e);
void guest_entry_unref(struct guest_entry *e);

/* Writes the record; a failure is logged and returned. */
int guest_entry_save(struct guest_entry *e, struct svemig_error *err);

/*
 * Connects to the VMM (pid) now serving the guest at its vmm.sock. own:
 * this svemigd spawned it, so it reaps it and knows how it ended.
 */
int guest_entry_attach(struct guest_entry *e, pid_t pid, bool own, struct svemig_error *err);
/* Lets go of the VMM (it was stopped on request): state 'state', no pid. */
void guest_entry_detach(struct guest_entry *e, enum guest_state state);
/* The VMM is gone unexpectedly: state dead, with why. */
void guest_entry_mark_dead(struct guest_entry *e, const char *why);

/* Takes what a VMM says about the guest (state, steps, config) into the record. */
void guest_entry_update(struct guest_entry *e, const Svemig__Api__Guest *live);

/*
 * An incoming guest's VMM ended without serving it (it failed, or died):
 * by the host's ledger, the guest never ran here (its migration is given up
 * if still pending, and the entry removed) or it ran and died with its VMM
 * (dead, with why).
 */
void guest_entry_incoming_ended(struct guest_entry *e, const char *why);

/*
 * Whether path is a snapshot svemigd named itself for guest (in
 * snapshot_dir, as <guest>-<UTC time>.svemig): only those are ever pruned
 * (keep) or deleted with the guest; files a person named stay theirs.
 */
bool guest_snapshot_is_own(const char *snapshot_dir, const char *guest, const char *path);

/* Removes the record and the directory (and the snapshots listed under 'snapshot_dir'), then the entry. */
int guest_entry_delete(struct guest_entry *e, const char *snapshot_dir, struct svemig_error *err);

/*
 * The Guest message for e: the record, with what 'live' (a VMM's answer,
 * may be NULL) says on top. Free with guest_msg_free(); it may point into
 * live, which must outlive it.
 */
Svemig__Api__Guest *guest_msg_new(const struct guest_entry *e, const Svemig__Api__Guest *live);
void guest_msg_free(Svemig__Api__Guest *g);
