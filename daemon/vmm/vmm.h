/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svemig-vmm: the process that runs ONE guest, as QEMU does under libvirt.
 * svemigd spawns it (in its own session, so that it outlives the daemon),
 * and talks to it over <state>/guests/<name>/vmm.sock (0600) with the same
 * framing and messages as its own control socket (proto/api.proto): the
 * guest operations, addressed to the one guest this process owns.
 *
 * Shared by svemig-vmm.c (main, create/restore), ops.c (the handlers)
 * and job.c (long operations on a worker thread).
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "api-server.h"
#include "linux.h"
#include "checkpoint.h"
#include "conf.h"
#include "standby-proto.h"
#include "svemig/guest.h"
#include "svemig/hv.h"

struct vmm_job;

/* A bare payload guest and what it reported (payload.c); image NULL for the sim workload. */
struct vmm_payload {
        char *image;
        uint64_t ram_base, entry;
        bool finished;        /* latched once every vcpu stopped by itself */
        pthread_mutex_t lock; /* the handler writes these from the vcpu threads */
        uint64_t reports, last_addr, last_value;
};

struct vmm {
        struct migrate_conf conf;
        sd_event *event;
        struct hv *hv;
        struct guest *guest;
        struct api_server *server;
        char *name;
        const char *dir; /* the guest's directory (--dir): vmm.sock, the "migrated" mark */
        char *socket_path;

        vqset_t vls; /* the guest's VL set; empty without SVE */
        uint32_t dirty_pages_per_step;
        uint64_t *base_steps; /* per vcpu: steps run before this process (a restored guest's x0) */
        bool ever_ran;        /* "created" until the first start or run */
        struct vmm_payload payload;
        struct vmm_linux linux_guest;     /* active: a Linux guest (linux.c) */
        struct vmm_checkpoint checkpoint; /* the base of incremental checkpoints */

        struct vmm_job *job; /* the long operation in flight (snapshot, run), NULL when none */
        const char *job_name;
        bool job_paused_it; /* the job paused a running guest, which it resumes after */

        /* The dirty rate (vmm_dirty_rate()): steps counted at the last two ticks of a 1 s timer. */
        sd_event_source *rate_timer;
        struct vmm_rate_sample {
                uint64_t steps, usec;
        } rate_from, rate_tick;

        bool exiting;
};

/*
 * A guest that ran elsewhere (restored, or arrived), before it first runs
 * here: the sim workload keeps its step count in x0 and its dirty rate in
 * x28 (docs/sim-workload.md), so that steps counted here and before add up.
 */
int vmm_take_workload_state(struct vmm *v, struct guest *g);

/* Steps run by vcpu i, in this process and before it. */
uint64_t vmm_vcpu_steps(const struct vmm *v, unsigned i);
uint64_t vmm_total_steps(const struct vmm *v);
/* Pages the guest writes per second; vmm_rate_restart() when it starts running. */
double vmm_dirty_rate(const struct vmm *v);
void vmm_rate_restart(struct vmm *v);
/* "created", "running" or "paused", as svemigd records it. */
const char *vmm_state(const struct vmm *v);

/* Stops serving (the drain, then the loop ends): a signal, or a guest that powered off. */
void vmm_stop_serving(struct vmm *v);

/* ops.c: the operations this process serves, for api_server_params.lookup. */
const struct api_op *vmm_op_find(int op_case);
/* api_server_drain()'s done: the loop ends. */
void vmm_drained(void *userdata);

/* migrate.c: the source's MigrateRequest; the destination's incoming guest on fd (hello done). */
int vmm_op_migrate(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                   struct svemig_error *err);
/*
 * ram_mem: a standby's incoming RAM reserve, ram_size bytes mapped here and faulted in ahead, or NULL;
 * the guest takes it over when it fits, else it is unmapped once the guest has arrived. channel_fd: the
 * unix socket svemigd passes the migration's memory channels on (migrate_recv_opts.channel_fd), or -1.
 */
int vmm_receive(struct vmm *v, int fd, void *ram_mem, uint64_t ram_size, int channel_fd,
                struct svemig_error *err);
/* Fills g (whose arrays point into v's storage until the next call) with the guest as it is now. */
void vmm_describe(struct vmm *v, Svemig__Api__Guest *g);

/*
 * standby.c: maps size bytes in huge pages, faults them in, says so on control_fd (or why not) and
 * waits for svemigd's order (standby-proto.h). 1: an order came, *mem is the mapping; 0: svemigd closed
 * the socket first (exit quietly); < 0: the memory could not be prepared (said on control_fd too).
 */
int vmm_standby(int control_fd, uint64_t size, void **mem, struct standby_order *order,
                struct standby_order_fds *fds, struct svemig_error *err);

/* payload.c: bare payload guests and their MMIO reports. */
void vmm_payload_init(struct vmm *v);
void vmm_payload_done(struct vmm *v);
/*
 * Creates v->guest from cfg (vcpus, memory, VLs set) running a payload image:
 * the client's, open on fd (>= 0), which is also copied into the guest's
 * directory (GUEST_PAYLOAD_FILE) to boot it again later; else the file at
 * path, svemigd's copy. name: what the client called it (PayloadStatus.image);
 * NULL: path.
 */
int vmm_payload_create(struct vmm *v, const char *path, int fd, const char *name, struct guest_config *cfg,
                       struct svemig_error *err);
/* The MMIO handler that records reports into v, for any guest of v (created or received). */
void vmm_payload_arm(struct vmm *v, guest_mmio_fn *fn, void **userdata);
/* Fills ps (pointing into v) when the guest is a payload; false for the sim workload. */
bool vmm_payload_describe(struct vmm *v, Svemig__Api__PayloadStatus *ps);
/* The device state a migration carries (*len 0: none); -EMSGSIZE when it does not fit in size. */
int vmm_payload_pack(struct vmm *v, uint8_t *buf, size_t size, size_t *len);
/* On the destination: what the source recorded (len 0: the guest is no payload). */
int vmm_payload_unpack(struct vmm *v, const uint8_t *buf, size_t len, struct svemig_error *err);

/* job.c */
typedef int (*vmm_job_work_t)(struct vmm_job *job, void *arg, struct svemig_error *err);
typedef void (*vmm_job_done_t)(struct vmm *v, struct api_call *call, int r, const struct svemig_error *err,
                               void *arg);

/*
 * Runs work(arg) on a worker thread for 'call'. Progress posted with
 * vmm_job_progress() reaches the call's client from the loop; a cancel of
 * the call sets vmm_job_cancelled(). When work returns, done() runs on the
 * loop thread and completes the call. One job at a time: v->job.
 */
int vmm_job_start(struct vmm *v, struct api_call *call, const char *name, vmm_job_work_t work,
                  vmm_job_done_t done, void *arg, struct svemig_error *err);
/* From the worker: the latest progress (coalesced if the loop is behind). */
void vmm_job_progress(struct vmm_job *job, const char *phase, uint64_t done, uint64_t total);
/* The same with every field of p (phase copied; its pointers need not outlive the call). */
void vmm_job_progress_msg(struct vmm_job *job, const Svemig__Api__Progress *p);
bool vmm_job_cancelled(struct vmm_job *job);
/*
 * Right after vmm_job_start(), on the loop: a cancel of the job also
 * interrupts the guest's steps (guest_interrupt()), for a job that runs
 * them; done() then calls guest_interrupt_clear().
 */
void vmm_job_interrupts_guest(struct vmm *v);
struct vmm *vmm_job_vmm(struct vmm_job *job);
/*
 * From the worker: waits up to ms milliseconds, or until the job is
 * cancelled. Only for SVEMIG_TEST_SNAPSHOT_PACE_MS, the tests' slow-down knob.
 */
void vmm_job_pace(struct vmm_job *job, unsigned ms);
