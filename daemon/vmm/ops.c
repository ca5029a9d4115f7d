/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What svemig-vmm does for svemigd: the guest operations on the one guest
 * it owns. State rules (svemigd relies on them and relays the refusals):
 *
 *   start   created -> running        resume  paused -> running
 *   pause   running -> paused         run N   created/paused/running -> paused, N steps later
 *   snapshot  pauses a running guest, writes the file, resumes it (unless asked to stop)
 *   stop    answers, then the process exits (the guest's memory is gone)
 *
 * While a snapshot or a run is in flight, everything but show and cancel is
 * refused with EBUSY.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "guest-digest.h"
#include "log.h"
#include "macro.h"
#include "svemig/kvmreg.h"
#include "svemig/snapshot.h"
#include "vmm.h"

/* Steps per guest_run() in a run: how often a run reports progress and notices a cancel. */
#define RUN_CHUNK 4096u

static uint64_t read_x(struct guest *g, unsigned vcpu, unsigned n)
{
        uint64_t value = 0;

        if (hv_vcpu_get_reg(guest_vcpu(g, vcpu), kvmreg_core_x(n), &value) < 0)
                return 0;
        return value;
}

int vmm_take_workload_state(struct vmm *v, struct guest *g)
{
        unsigned n = guest_n_vcpus(g);

        free(v->base_steps);
        v->base_steps = calloc(n, sizeof(*v->base_steps));
        if (!v->base_steps)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++)
                v->base_steps[i] = read_x(g, i, 0);
        v->dirty_pages_per_step = (uint32_t)read_x(g, 0, 28);
        return 0;
}

uint64_t vmm_vcpu_steps(const struct vmm *v, unsigned i)
{
        return v->base_steps[i] + guest_steps(v->guest, i);
}

uint64_t vmm_total_steps(const struct vmm *v)
{
        uint64_t sum = 0;

        for (unsigned i = 0; i < guest_n_vcpus(v->guest); i++)
                sum += vmm_vcpu_steps(v, i);
        return sum;
}

const char *vmm_state(const struct vmm *v)
{
        /* A run in flight is the guest running, whatever guest_running() says between chunks. */
        if ((v->job && v->job_name && strcmp(v->job_name, "run") == 0) || guest_running(v->guest))
                return "running";
        return v->ever_ran ? "paused" : "created";
}

void vmm_describe(struct vmm *v, Svemig__Api__Guest *g)
{
        static uint32_t vl_bits[VQSET_VQ_MAX];
        static Svemig__Api__PayloadStatus payload;
        static uint64_t *vcpu_steps;
        static unsigned n_vcpu_steps;
        unsigned n = guest_n_vcpus(v->guest);
        size_t nvl = 0;

        if (n_vcpu_steps < n) {
                uint64_t *p = realloc(vcpu_steps, n * sizeof(*p));

                if (p) {
                        vcpu_steps = p;
                        n_vcpu_steps = n;
                }
        }
        VQSET_FOREACH (vq, &v->vls) {
                vl_bits[nvl++] = vq_to_bits(vq);
        }
        g->name = v->name;
        g->state = (char *)vmm_state(v);
        g->vcpus = n;
        g->memory_bytes = guest_mem_size(v->guest);
        g->n_vl_bits = nvl;
        g->vl_bits = vl_bits;
        g->max_vl_bits = vq_to_bits(vqset_highest(&v->vls));
        g->steps = vmm_total_steps(v);
        /* As last measured while it ran; a guest that does not run dirties nothing. */
        g->dirty_pages_per_second = strcmp(g->state, "running") == 0 ? vmm_dirty_rate(v) : 0;
        g->dirty_pages_per_step = v->dirty_pages_per_step;
        g->vmm_pid = (uint32_t)getpid();
        g->vmm_socket = v->socket_path;
        svemig__api__payload_status__init(&payload);
        if (vmm_payload_describe(v, &payload))
                g->payload = &payload;
        if (n_vcpu_steps >= n) {
                for (unsigned i = 0; i < n; i++)
                        vcpu_steps[i] = vmm_vcpu_steps(v, i);
                g->n_vcpu_steps = n;
                g->vcpu_steps = vcpu_steps;
        }
}

static void reply_guest(struct vmm *v, struct api_call *call, const char *digest)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__Guest g = SVEMIG__API__GUEST__INIT;

        vmm_describe(v, &g);
        if (digest)
                g.digest = (char *)digest;
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_GUEST;
        resp.guest = &g;
        api_call_reply(call, &resp);
}

/* svemigd names the guest in each request; a VMM serves only its own. */
static int check_target(struct vmm *v, const char *name, bool busy_ok, struct svemig_error *err)
{
        if (name && name[0] && strcmp(name, v->name) != 0)
                return svemig_error_set(err, ENOENT, "this VMM runs guest %s, not %s", v->name, name);
        if (!busy_ok && v->job)
                return svemig_error_set(err, EBUSY, "guest %s is busy with a %s; wait for it or cancel it",
                                        v->name, v->job_name);
        if (v->exiting)
                return svemig_error_set(err, ESHUTDOWN, "guest %s is stopping", v->name);
        return 0;
}

static int op_start(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                    struct svemig_error *err)
{
        struct vmm *v = userdata;
        bool resume = req->op_case == SVEMIG__API__REQUEST__OP_GUEST_RESUME;
        const Svemig__Api__GuestRef *ref = resume ? req->guest_resume : req->guest_start;
        const char *state;
        int r;

        r = check_target(v, ref->name, false, err);
        if (r < 0)
                return r;
        state = vmm_state(v);
        if (strcmp(state, "running") == 0)
                return svemig_error_set(err, EALREADY, "guest %s is already running", v->name);
        if (resume && strcmp(state, "created") == 0)
                return svemig_error_set(err, EINVAL,
                                        "guest %s has never run, so there is nothing to resume; start it",
                                        v->name);
        if (!resume && strcmp(state, "paused") == 0)
                return svemig_error_set(err, EINVAL, "guest %s is paused; resume it rather than start it",
                                        v->name);
        r = guest_start(v->guest, err);
        if (r < 0)
                return svemig_error_prefix(err, "guest %s", v->name);
        v->ever_ran = true;
        vmm_rate_restart(v);
        log_msg(LOG_INFO, LOG_CTX(.guest = v->name, .op = api_call_op_name(call)), "running");
        reply_guest(v, call, NULL);
        return 0;
}

static int op_pause(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                    struct svemig_error *err)
{
        struct vmm *v = userdata;
        int r;

        r = check_target(v, req->guest_pause->name, false, err);
        if (r < 0)
                return r;
        if (!guest_running(v->guest))
                return svemig_error_set(err, EINVAL, "guest %s is not running (it is %s)", v->name,
                                        vmm_state(v));
        r = guest_pause(v->guest, err);
        if (r < 0)
                return svemig_error_prefix(err, "guest %s", v->name);
        log_msg(LOG_INFO, LOG_CTX(.guest = v->name, .op = "guest-pause"), "paused after %llu steps",
                (unsigned long long)vmm_total_steps(v));
        reply_guest(v, call, NULL);
        return 0;
}

void vmm_drained(void *userdata)
{
        struct vmm *v = userdata;

        sd_event_exit(v->event, 0);
}

static int start_drain(sd_event_source *s, void *userdata)
{
        struct vmm *v = userdata;

        api_server_drain(v->server, vmm_drained, v);
        return 0;
}

static int op_stop(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                   struct svemig_error *err)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__Guest g = SVEMIG__API__GUEST__INIT;
        struct vmm *v = userdata;
        sd_event_source *defer;
        int r;

        r = check_target(v, req->guest_stop->name, false, err);
        if (r < 0)
                return r;
        r = guest_pause(v->guest, err);
        if (r < 0)
                log_msg(LOG_WARNING, LOG_CTX(.guest = v->name), "stopping: %s", err->msg);
        log_msg(LOG_INFO, LOG_CTX(.guest = v->name, .op = "guest-stop"), "stopped after %llu steps; exiting",
                (unsigned long long)vmm_total_steps(v));
        vmm_describe(v, &g);
        g.state = (char *)"stopped";
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_GUEST;
        resp.guest = &g;
        v->exiting = true;
        api_call_reply(call, &resp);
        /*
         * The answer goes out first; then, once this handler has returned,
         * every client is closed and the loop ends.
         */
        r = sd_event_add_defer(v->event, &defer, start_drain, v);
        if (r >= 0) {
                (void)sd_event_source_set_enabled(defer, SD_EVENT_ONESHOT);
                (void)sd_event_source_set_floating(defer, true);
                sd_event_source_unref(defer);
        } else
                api_server_drain(v->server, vmm_drained, v);
        return 0;
}

static int op_show(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                   struct svemig_error *err)
{
        struct vmm *v = userdata;
        char digest[GUEST_DIGEST_HEX_SIZE];
        int r;

        r = check_target(v, req->guest_show->name, !req->guest_show->digest, err);
        if (r < 0)
                return r;
        if (!req->guest_show->digest) {
                reply_guest(v, call, NULL);
                return 0;
        }
        r = guest_digest(v->guest, digest, err);
        if (r < 0)
                return svemig_error_prefix(err, "guest %s", v->name);
        reply_guest(v, call, digest);
        return 0;
}

/* --- run N steps --- */

struct run_arg {
        uint64_t steps;
};

static int run_work(struct vmm_job *job, void *arg, struct svemig_error *err)
{
        struct run_arg *a = arg;
        struct vmm *v = vmm_job_vmm(job);
        uint64_t done = 0, start = guest_steps(v->guest, 0);
        int r;

        /* The client knows it is under way (and may cancel it) before the first chunk's end. */
        vmm_job_progress(job, "running", 0, a->steps);
        while (done < a->steps) {
                uint64_t n = MIN((uint64_t)RUN_CHUNK, a->steps - done);

                r = vmm_job_cancelled(job) ? -EINTR : guest_run(v->guest, n, err);
                /* Cancelled between chunks, or in one (each vcpu stopped after its step then). */
                if (r == -EINTR)
                        return svemig_error_set(err, ECANCELED,
                                                "run cancelled after %llu of %llu steps (vcpu 0); the guest "
                                                "is paused there",
                                                (unsigned long long)(guest_steps(v->guest, 0) - start),
                                                (unsigned long long)a->steps);
                if (r < 0)
                        return r;
                done += n;
                vmm_job_progress(job, "running", done, a->steps);
        }
        return 0;
}

static void run_done(struct vmm *v, struct api_call *call, int r, const struct svemig_error *err, void *arg)
{
        free(arg);
        guest_interrupt_clear(v->guest);
        if (r < 0) {
                api_call_fail(call, r, "guest %s: %s", v->name, svemig_error_str(err, r));
                return;
        }
        log_msg(LOG_INFO, LOG_CTX(.guest = v->name, .op = "guest-run"), "paused after %llu steps",
                (unsigned long long)vmm_total_steps(v));
        reply_guest(v, call, NULL);
}

static int op_run(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                  struct svemig_error *err)
{
        struct vmm *v = userdata;
        struct run_arg *a;
        int r;

        r = check_target(v, req->guest_run->name, false, err);
        if (r < 0)
                return r;
        if (req->guest_run->steps == 0)
                return svemig_error_set(err, EINVAL, "give a number of steps above 0");
        a = calloc(1, sizeof(*a));
        if (!a)
                return svemig_error_set(err, ENOMEM, "out of memory");
        a->steps = req->guest_run->steps;
        /* From wherever it is: a running guest is paused first, then runs exactly N more. */
        r = guest_pause(v->guest, err);
        if (r >= 0)
                r = vmm_job_start(v, call, "run", run_work, run_done, a, err);
        if (r < 0) {
                free(a);
                return r;
        }
        vmm_job_interrupts_guest(v);
        v->ever_ran = true;
        return 0;
}

/* --- snapshot --- */

struct snap_arg {
        char *path; /* svemigd's own file, written whole by snapshot_save(); or the client's name of fd */
        int fd;     /* >= 0: the client's file, passed by svemigd: written through, never opened by name */
        bool stop;
        bool incremental; /* asked for; parent says whether it was */
        char *parent;
        uint64_t created_ns;
        uint64_t paused_ns; /* CLOCK_MONOTONIC when it paused the guest */
        bool live;          /* the guest runs: pre-copy, then a pause for the vcpus and the last pages */
        struct snapshot_live precopy;
        uint64_t steps;
        unsigned pace_ms;
        struct svemig_stream_stats stats;
        struct vmm_job *job;
};

static int snap_progress(void *userdata, const char *phase, uint64_t done, uint64_t total)
{
        struct snap_arg *a = userdata;

        if (vmm_job_cancelled(a->job))
                return -ECANCELED;
        vmm_job_progress(a->job, phase, done, total);
        /* The tests' slow-down knob: memory is written slowly enough for a cancel to land half-way. */
        if (a->pace_ms > 0 && strcmp(phase, "memory") == 0 && done < total) {
                vmm_job_pace(a->job, a->pace_ms);
                if (vmm_job_cancelled(a->job))
                        return -ECANCELED;
        }
        return 0;
}

/* On the job's thread, as a live snapshot pauses the guest: from now on it is paused as for any other. */
static void snap_paused(void *userdata)
{
        struct snap_arg *a = userdata;
        struct vmm *v = vmm_job_vmm(a->job);

        a->paused_ns = now_ns(CLOCK_MONOTONIC);
        a->steps = vmm_total_steps(v);
        v->job_paused_it = true;
}

static int snap_work(struct vmm_job *job, void *arg, struct svemig_error *err)
{
        struct snap_arg *a = arg;
        int r;
        struct snapshot_opts opts = {
                .purpose = "snapshot",
                .created_ns = a->created_ns,
                .progress = snap_progress,
                .userdata = a,
        };
        struct store_conf sc;

        a->job = job;
        r = vmm_checkpoint_collect(vmm_job_vmm(job), err);
        if (r < 0)
                return r;
        if (a->incremental && vmm_checkpoint_parent(vmm_job_vmm(job), &opts) &&
            !(a->parent = strdup(opts.parent_location)))
                return svemig_error_set(err, ENOMEM, "out of memory");
        if (a->live) {
                /* Pre-copy while it runs; paused only for the vcpus and the last pages. */
                a->precopy = (struct snapshot_live){.since_base = vmm_job_vmm(job)->checkpoint.dirty,
                                                    .paused = snap_paused,
                                                    .userdata = a};
                opts.live = &a->precopy;
        }
        if (store_is_remote(a->path)) {
                /* A URL is opened here, with the [store] settings of svemigd's migrate.conf. */
                migrate_conf_store_conf(&vmm_job_vmm(job)->conf, &sc);
                return snapshot_save_to(vmm_job_vmm(job)->guest, a->path, &sc, &opts, &a->stats, err);
        }
        if (a->fd < 0)
                return snapshot_save(vmm_job_vmm(job)->guest, a->path, &opts, &a->stats, err);
        /* The client made the file (unnamed until it names it): it gets whatever was there no longer. */
        if (ftruncate(a->fd, 0) < 0 || lseek(a->fd, 0, SEEK_SET) < 0)
                return svemig_error_set(err, errno, "snapshot to %s not written: %s", a->path,
                                        strerror(errno));
        r = snapshot_write_fd(vmm_job_vmm(job)->guest, a->fd, &opts, &a->stats, err);
        if (r < 0)
                return svemig_error_prefix(err, "snapshot to %s not written", a->path);
        if (fsync(a->fd) < 0)
                return svemig_error_set(err, errno, "cannot flush %s to disk: %s", a->path, strerror(errno));
        return 0;
}

static void snap_arg_free(struct snap_arg *a)
{
        if (a) {
                if (a->fd >= 0)
                        close(a->fd);
                free(a->path);
                free(a->parent);
                free(a);
        }
}

static void snap_done(struct vmm *v, struct api_call *call, int r, const struct svemig_error *err, void *arg)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__SnapshotResult res = SVEMIG__API__SNAPSHOT_RESULT__INIT;
        struct snap_arg *a = arg;
        struct svemig_error rerr = {0};

        /* Whatever the outcome, a guest the snapshot paused runs on, unless it is to stop. */
        if (v->job_paused_it && !(r == 0 && a->stop) && guest_start(v->guest, &rerr) < 0)
                log_msg(LOG_ERR, LOG_CTX(.guest = v->name), "cannot resume after the snapshot: %s",
                        rerr.msg);
        res.pause_us = v->job_paused_it ? (now_ns(CLOCK_MONOTONIC) - a->paused_ns) / 1000 : 0;
        v->job_paused_it = false;
        if (r < 0) {
                log_msg(LOG_INFO, LOG_CTX(.guest = v->name, .op = "snapshot"), "%s",
                        svemig_error_str(err, r));
                api_call_fail(call, r, "%s", svemig_error_str(err, r));
                snap_arg_free(a);
                return;
        }
        log_msg(LOG_INFO, LOG_CTX(.guest = v->name, .op = "snapshot"),
                "wrote %s (%llu bytes%s%s) at %llu steps", a->path, (unsigned long long)a->stats.bytes,
                a->parent ? ", over " : "", a->parent ? a->parent : "", (unsigned long long)a->steps);
        vmm_checkpoint_taken(v, a->path, &a->stats);
        res.parent = a->parent ? a->parent : "";
        res.live = a->live;
        res.precopy_rounds = a->precopy.rounds;
        res.path = a->path;
        res.bytes = a->stats.bytes;
        res.steps = a->steps;
        res.created_ns = a->created_ns;
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_SNAPSHOT;
        resp.snapshot = &res;
        api_call_reply(call, &resp);
        snap_arg_free(a);
}

static int op_snapshot(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                       struct svemig_error *err)
{
        const Svemig__Api__SnapshotRequest *sreq = req->snapshot;
        struct vmm *v = userdata;
        struct snap_arg *a;
        const char *pace = getenv("SVEMIG_TEST_SNAPSHOT_PACE_MS");
        bool was_running;
        int r;

        r = check_target(v, sreq->guest, false, err);
        if (r < 0)
                return r;
        if (!sreq->path || (sreq->path[0] != '/' && !store_is_remote(sreq->path)))
                return svemig_error_set(err, EINVAL, "the snapshot path must be absolute, or a URL");
        a = calloc(1, sizeof(*a));
        if (a)
                a->fd = api_call_take_fd(call, 0);
        if (!a || !(a->path = strdup(sreq->path))) {
                snap_arg_free(a);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        a->stop = sreq->stop;
        a->incremental = sreq->incremental;
        a->created_ns = now_ns(CLOCK_REALTIME);
        a->pace_ms = pace ? (unsigned)strtoul(pace, NULL, 10) : 0;

        was_running = guest_running(v->guest);
        /* A running guest is written live (pre-copy, on the dirty log every VMM keeps); any other is paused.
         */
        a->live = was_running;
        r = a->live ? 0 : guest_pause(v->guest, err);
        if (r >= 0 && !a->live) {
                a->paused_ns = now_ns(CLOCK_MONOTONIC);
                a->steps = vmm_total_steps(v);
        }
        if (r >= 0)
                r = vmm_job_start(v, call, "snapshot", snap_work, snap_done, a, err);
        if (r < 0) {
                if (was_running)
                        (void)guest_start(v->guest, NULL);
                snap_arg_free(a);
                return r;
        }
        v->job_paused_it = was_running && !a->live; /* a live one sets it as it pauses */
        return 0;
}

static int op_cancel(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                     struct svemig_error *err)
{
        return api_server_cancel(call, req->cancel, err);
}

#define OP(c) SVEMIG__API__REQUEST__OP_##c

static const struct api_op ops[] = {
        {OP(GUEST_START), "guest-start", op_start, false},
        {OP(GUEST_RESUME), "guest-resume", op_start, false},
        {OP(GUEST_PAUSE), "guest-pause", op_pause, false},
        {OP(GUEST_STOP), "guest-stop", op_stop, false},
        {OP(GUEST_SHOW), "guest-show", op_show, false},
        {OP(GUEST_RUN), "guest-run", op_run, false},
        {OP(SNAPSHOT), "snapshot", op_snapshot, false},
        {OP(MIGRATE), "migrate", vmm_op_migrate, false},
        {OP(CANCEL), "cancel", op_cancel, true},
};

const struct api_op *vmm_op_find(int op_case)
{
        for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                if (ops[i].op_case == op_case)
                        return &ops[i];
        return NULL;
}
