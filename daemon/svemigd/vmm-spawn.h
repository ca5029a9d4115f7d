/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Starting a svemig-vmm (daemon/vmm/vmm.h) from svemigd: fork and exec it in a
 * session of its own (so that it outlives the daemon and its signals), and
 * read its ready pipe on the event loop without blocking it: Progress
 * frames while a restore reads, then one Response.
 *
 * A receiving VMM can also be a standby VMM started ahead (the incoming
 * RAM reserve, ram-reserve.h): vmm_spawn_handoff() gives it the guest, and
 * from there on it is watched and answers exactly as a spawned one.
 */

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "api.pb-c.h"
#include "svemig/error.h"

struct vmm_spawn;

struct vmm_spawn_args {
        const char *config; /* migrate.conf, absolute; NULL: the built-in defaults */
        const char *name;
        const char *dir; /* the guest's directory: vmm.sock goes there */
        bool verbose;
        int restore_fd; /* >= 0: a snapshot to restore (the VMM gets a copy); else the guest below */
        const char
                *restore_url; /* else non-NULL: a snapshot's URL, read by the VMM with [store]'s settings */
        const char *source_name; /* the client's name of the restored file or payload image; NULL: none */
        /* Else, >= 0: a guest migrating in on this peer connection (hello done); the VMM gets a copy. */
        int receive_fd;
        /* With receive_fd, >= 0: the caller's end of the unix socket that memory channels are passed on. */
        int channel_fd;
        unsigned vcpus;
        uint64_t memory;
        const char *vls;      /* a VL set as vqset_parse() reads it; "none" = no SVE */
        const char *cpu_regs; /* the ID register values to present (cpu-regs.h); NULL: the host's */
        uint32_t dirty_pages;
        const char
                *payload; /* a bare payload image (svemigd's copy) instead of the sim workload; NULL: none */
        int payload_fd;   /* >= 0: the client's payload image, read and copied by the VMM (it gets a copy) */
        /* A Linux guest: >= 0, the client's kernel and (or -1) initrd (the VMM gets copies); its cmdline. */
        int kernel_fd, initrd_fd;
        const char *cmdline;
};

typedef void (*vmm_spawn_progress_t)(const Svemig__Api__Progress *progress, void *userdata);
/*
 * The VMM's answer: its Response (status set when it failed; it has then
 * exited and been reaped), or NULL with 'why' when it died before
 * answering. After this the spawn is spent: free it.
 */
typedef void (*vmm_spawn_done_t)(struct vmm_spawn *s, const Svemig__Api__Response *resp, const char *why,
                                 void *userdata);

/* Where svemig-vmm is: $SVEMIG_VMM, else beside svemigd's own binary, else the installed one. */
const char *vmm_spawn_binary(void);

int vmm_spawn(sd_event *event, const struct vmm_spawn_args *args, vmm_spawn_progress_t progress,
              vmm_spawn_done_t done, void *userdata, struct vmm_spawn **out, struct svemig_error *err);
/*
 * Starts `svemig-vmm --standby size` (daemon/vmm/standby.c): *pid, and *control_fd,
 * svemigd's end of its control socket (standby-proto.h; non-blocking).
 */
int vmm_spawn_standby(const char *config, bool verbose, uint64_t size, pid_t *pid, int *control_fd,
                      struct svemig_error *err);
/*
 * Instead of vmm_spawn() for a receiving VMM (args->receive_fd): hands the
 * guest to the ready standby pid over control_fd (which stays the
 * caller's); its answer comes as a spawned VMM's. On failure the standby
 * has been killed and reaped: start the VMM with vmm_spawn() instead.
 */
int vmm_spawn_handoff(sd_event *event, pid_t pid, int control_fd, const struct vmm_spawn_args *args,
                      vmm_spawn_progress_t progress, vmm_spawn_done_t done, void *userdata,
                      struct vmm_spawn **out, struct svemig_error *err);
pid_t vmm_spawn_pid(const struct vmm_spawn *s);
/* Kills the VMM (SIGKILL), e.g. a cancelled restore; done() follows with NULL. */
void vmm_spawn_kill(struct vmm_spawn *s);
void vmm_spawn_free(struct vmm_spawn *s);

/* "exited with status 1", "was killed by signal 9 (Killed)", from a wait status or siginfo. */
void vmm_describe_exit(int code, int status, char *buf, size_t len);
/* Reaps the child pid, however many signals interrupt the wait; *si says how it ended. */
void vmm_wait_exit(pid_t pid, siginfo_t *si);
