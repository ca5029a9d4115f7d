/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What svemigd keeps about a guest, in <state>/guests/<name>/guest.json
 * (json-c), so that a restarted daemon lists the guests it had, their last
 * snapshots, and finds their VMMs again. Written whole each time: into a
 * temporary file, fsync'd, renamed over the old one, directory fsync'd.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "svemig/error.h"
#include "svemig/vqset.h"

#define GUEST_NAME_MAX 63

enum guest_state {
        GUEST_CREATED, /* its VMM holds it; it has never run */
        GUEST_RUNNING,
        GUEST_PAUSED,
        GUEST_STOPPED, /* no VMM: stopped on request */
        GUEST_DEAD,    /* no VMM: it died, or was gone when svemigd started */
        _GUEST_STATE_MAX,
};

struct guest_snapshot {
        char *path;
        uint64_t created_ns;
        uint64_t bytes;
        uint64_t steps;
        char *parent;      /* an incremental snapshot's parent; NULL: a full one */
        uint64_t pause_us; /* how long the guest was paused for it */
};

struct guest_record {
        char *name;
        unsigned vcpus;
        uint64_t memory_bytes;
        vqset_t vls; /* empty: no SVE */
        bool cluster;
        uint32_t dirty_pages_per_step;
        enum guest_state state;
        uint64_t steps; /* last known */
        pid_t vmm_pid;  /* 0 when none */
        char *vmm_socket;
        char *reason;        /* GUEST_DEAD: what happened */
        char *restored_from; /* the snapshot it came from */
        /*
         * While it migrates in: the migration's id (32 hex digits). Its
         * outcome is in the host's ledger (host-ledger.h); a restarted
         * svemigd adopts or drops the guest by it.
         */
        char *incoming_migration;
        char *payload; /* a bare payload image it runs instead of the sim workload; NULL: none */
        /* Created at the cluster's CPU baseline: its ID register values (cpu-regs.h); NULL: the host's. */
        char *cpu_regs;
        /* A Linux guest: the kernel, initrd and command line its client gave (names only); NULL: none. */
        char *kernel, *initrd, *cmdline;
        uint64_t created_ns;
        struct guest_snapshot *snapshots; /* oldest first */
        size_t n_snapshots;
};

const char *guest_state_name(enum guest_state s);
/* -1 for an unknown name. */
int guest_state_from_name(const char *name);
/* Whether the guest has a VMM (or should have one). */
bool guest_state_has_vmm(enum guest_state s);

/* Letters, digits, '-', '_' and '.', not starting with '.' or '-', up to GUEST_NAME_MAX. */
int guest_name_check(const char *name, struct svemig_error *err);

int guest_record_load(const char *path, struct guest_record *rec, struct svemig_error *err);
int guest_record_save(const struct guest_record *rec, const char *path, struct svemig_error *err);
void guest_record_done(struct guest_record *rec);

int guest_record_set_str(char **field, const char *value);
int guest_record_add_snapshot(struct guest_record *rec, const char *path, uint64_t created_ns,
                              uint64_t bytes, uint64_t steps);
/* The newest snapshot's parent (NULL or "": a full one) and pause. */
int guest_record_set_snapshot_chain(struct guest_record *rec, const char *parent, uint64_t pause_us);
void guest_record_remove_snapshot(struct guest_record *rec, size_t i);

/*
 * The file a source VMM leaves in the guest's directory before it exits
 * once the destination owns the guest ("peer=NAME\nid=HEX\n"): a svemigd
 * that did not see the migration end removes the record by it.
 */
#define GUEST_MIGRATED_FILE "migrated"
/*
 * A payload guest's image, as its client passed it at create: the VMM keeps
 * this copy in the guest's directory, and the guest boots again from it.
 */
#define GUEST_PAYLOAD_FILE "payload.img"
