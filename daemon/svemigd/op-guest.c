/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest operations: create, start, pause, resume, run N steps, stop,
 * delete, list, show. svemigd keeps the record (guest-registry.h); the
 * guest itself runs in its VMM (daemon/vmm/vmm.h), to which each operation on
 * a live guest is handed on (vmm-forward.h). Lifecycle:
 *
 *   create -> created --start--> running <--pause/resume--> paused
 *   any live state --stop--> stopped (the VMM ends; the record stays)
 *   stopped or dead --start--> a new VMM boots the guest again from its configuration
 *   delete: the record and svemigd's snapshots go (refused while a VMM runs, unless forced)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api-ops.h"
#include "client-file.h"
#include "clock.h"
#include "cpu-regs.h"
#include "cluster-view.h"
#include "guest-registry.h"
#include "log.h"
#include "macro.h"
#include "svemig/guest.h"
#include "svemigd.h"
#include "vmm-forward.h"

static int find_guest(struct svemigd *d, const char *name, struct guest_entry **out,
                      struct svemig_error *err)
{
        struct guest_entry *e;

        if (!name || !name[0])
                return svemig_error_set(err, EINVAL, "name the guest");
        e = guest_registry_find(d->guests, name);
        if (!e)
                return svemig_error_set(err, ENOENT, "no guest named %s on this host (svemigctl guest list)",
                                        name);
        if (e->busy)
                return svemig_error_set(err, EBUSY, "guest %s is busy: a %s (operation %llu) is in progress",
                                        name, e->busy, (unsigned long long)e->busy_operation);
        *out = e;
        return 0;
}

static void set_busy(struct guest_entry *e, struct api_call *call, const char *what)
{
        e->busy = what;
        e->busy_operation = api_call_operation(call);
}

static int choose_vls(struct svemigd *d, const Svemig__Api__GuestCreateRequest *req, vqset_t *out,
                      struct svemig_error *err)
{
        struct hv_caps caps;
        char have[256], want[256], why[256];
        struct vqset_reason reason;
        vqset_t set;
        int r;

        r = hv_get_caps(d->hv, &caps);
        if (r < 0)
                return svemig_error_set(err, r, "cannot read the host's capabilities: %s", strerror(-r));
        vqset_format(&caps.vls, VQSET_FORMAT_BITS, have, sizeof(have));

        switch (req->max_vl_case) {
        case SVEMIG__API__GUEST_CREATE_REQUEST__MAX_VL_CLUSTER:
                /* The set negotiated with the peers now up; empty = FPSIMD only. */
                return svemigd_cluster_guest_set(d, out, err);
        case SVEMIG__API__GUEST_CREATE_REQUEST__MAX_VL_MAX_VL_BITS:
                if (req->max_vl_bits == 0)
                        break;
                if (!caps.sve)
                        return svemig_error_set(err, EINVAL,
                                                "host %s has no SVE; create the guest without a VL",
                                                caps.host_name);
                if (req->max_vl_bits % 128 || !vqset_contains(&caps.vls, req->max_vl_bits / 128))
                        return svemig_error_set(
                                err, EINVAL,
                                "host %s cannot present a maximum VL of %u bits: it offers %s "
                                "bits",
                                caps.host_name, req->max_vl_bits, have);
                *out = vqset_upto(&caps.vls, req->max_vl_bits / 128);
                return 0;
        case SVEMIG__API__GUEST_CREATE_REQUEST__MAX_VL_VL_SET:
                vqset_clear(&set);
                for (size_t i = 0; i < req->vl_set->n_bits; i++) {
                        uint32_t bits = req->vl_set->bits[i];

                        if (bits == 0 || bits % 128 || bits / 128 > VQSET_VQ_MAX)
                                return svemig_error_set(err, EINVAL,
                                                        "%u bits is not a vector length: use multiples of "
                                                        "128 up to 2048",
                                                        bits);
                        vqset_add(&set, bits / 128);
                }
                if (!vqset_empty(&set) && !caps.sve)
                        return svemig_error_set(err, EINVAL,
                                                "host %s has no SVE; create the guest without a VL",
                                                caps.host_name);
                if (!vqset_can_present(&caps.vls, &set, &reason)) {
                        vqset_format(&set, VQSET_FORMAT_BITS, want, sizeof(want));
                        vqset_reason_format(&reason, why, sizeof(why));
                        return svemig_error_set(
                                err, EINVAL,
                                "host %s cannot present vector lengths %s bits (it offers %s "
                                "bits): %s",
                                caps.host_name, want, have, why);
                }
                *out = set;
                return 0;
        default:
                break;
        }
        *out = caps.vls; /* the host's full set (empty without SVE) */
        return 0;
}

/*
 * The CPU the guest shows: the cluster's baseline for CPU_CLUSTER (the
 * default with max VL "cluster"), recorded as text for every boot of it;
 * NULL for the host's own.
 */
static int choose_cpu(struct svemigd *d, const Svemig__Api__GuestCreateRequest *req, char **out,
                      struct svemig_error *err)
{
        struct cpubase_result base = {0};
        bool cluster = req->cpu == SVEMIG__API__GUEST_CREATE_REQUEST__CPU__CPU_CLUSTER ||
                       (req->cpu == SVEMIG__API__GUEST_CREATE_REQUEST__CPU__CPU_DEFAULT &&
                        req->max_vl_case == SVEMIG__API__GUEST_CREATE_REQUEST__MAX_VL_CLUSTER);
        int r;

        *out = NULL;
        if (!cluster)
                return 0;
        r = svemigd_cluster_cpu_baseline(d, &base, err);
        if (r < 0)
                return r;
        r = cpu_regs_format(base.regs, base.n_regs, out);
        cpubase_result_done(&base);
        return r < 0 ? svemig_error_set(err, -r, "out of memory") : 0;
}

/* --- create --- */

/*
 * A bare payload image (GuestCreateRequest.payload): the client passes the
 * file (client-file.h); its VMM loads it at IPA 0, enters it at 0x800
 * (daemon/vmm/payload.c) and keeps a copy in the guest's directory, from
 * which it boots again later.
 */
static int take_payload(struct api_call *call, const char *path, int *fd, struct svemig_error *err)
{
        if (!path || path[0] != '/')
                return svemig_error_set(err, EINVAL, "name the payload image by its absolute path, not '%s'",
                                        path ? path : "");
        return client_file_take(call, "guest create --payload", path, CLIENT_FILE_READ, fd, err);
}

/*
 * A Linux guest (GuestCreateRequest.linux_boot): the kvm backend only; the
 * client passes the kernel, then the initrd if it names one.
 */
static int take_linux(struct svemigd *d, struct api_call *call, const Svemig__Api__LinuxBoot *lb, int fds[2],
                      struct svemig_error *err)
{
        bool initrd = lb->initrd && lb->initrd[0];
        int r;

        if (strcmp(hv_backend_name(d->hv), "kvm") != 0)
                return svemig_error_set(
                        err, EOPNOTSUPP,
                        "svemigd runs the %s backend, which runs its synthetic workload only: "
                        "a Linux guest (--kernel) needs the kvm backend (backend = kvm in "
                        "migrate.conf, on an arm64 host with /dev/kvm)",
                        hv_backend_name(d->hv));
        if (!lb->kernel || lb->kernel[0] != '/' || (initrd && lb->initrd[0] != '/'))
                return svemig_error_set(err, EINVAL,
                                        "name the kernel and the initrd by their absolute paths");
        r = client_file_take_nth(call, "guest create --kernel", lb->kernel, CLIENT_FILE_READ, 0,
                                 initrd ? 2 : 1, &fds[0], err);
        if (r < 0 || !initrd)
                return r;
        return client_file_take_nth(call, "guest create --initrd", lb->initrd, CLIENT_FILE_READ, 1, 2,
                                    &fds[1], err);
}

static void start_after(struct svemigd *d, struct api_call *call, struct guest_entry *e, bool resume)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__GuestRef ref = SVEMIG__API__GUEST_REF__INIT;
        struct svemig_error err = {0};
        int r;

        ref.name = e->rec.name;
        if (resume) {
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_RESUME;
                req.guest_resume = &ref;
        } else {
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_START;
                req.guest_start = &ref;
        }
        r = vmm_forward(d, call, e, &req, NULL, NULL, false, NULL, &err);
        if (r < 0)
                api_call_fail_error(call, r, &err);
}

static void created(struct svemigd *d, struct api_call *call, struct guest_entry *e,
                    const Svemig__Api__Response *resp, const char *why)
{
        struct svemig_error err = {0};

        e->busy = NULL;
        if (!resp || resp->status) {
                /* Nothing is left of a guest that could not be created. */
                (void)guest_entry_delete(e, NULL, &err);
                if (resp)
                        api_call_fail_status(call, resp->status);
                else
                        api_call_fail(call, ECANCELED, "guest %s was not created: %s", e->rec.name, why);
                return;
        }
        log_msg(LOG_INFO, LOG_CTX(.guest = e->rec.name, .op = "guest-create"), "created guest %s",
                e->rec.name);
        reply_guest(call, e, resp->result_case == SVEMIG__API__RESPONSE__RESULT_GUEST ? resp->guest : NULL);
}

static void created_then_start(struct svemigd *d, struct api_call *call, struct guest_entry *e,
                               const Svemig__Api__Response *resp, const char *why)
{
        if (!resp || resp->status) {
                created(d, call, e, resp, why);
                return;
        }
        e->busy = NULL;
        start_after(d, call, e, false);
}

int op_guest_create(struct api_call *call, const Svemig__Api__Request *request, void *userdata,
                    struct svemig_error *err)
{
        const Svemig__Api__GuestCreateRequest *req = request->guest_create;
        struct svemigd *d = userdata;
        struct guest_record rec = {0};
        _cleanup_close_ int payload_fd = -1, kernel_fd = -1, initrd_fd = -1;
        int linux_fds[2] = {-1, -1};
        struct guest_entry *e;
        struct hv_caps caps;
        int r;

        r = guest_name_check(req->name, err);
        if (r < 0)
                return r;
        if (guest_registry_find(d->guests, req->name))
                return svemig_error_set(err, EEXIST, "a guest named %s already exists; choose another name",
                                        req->name);
        r = hv_get_caps(d->hv, &caps);
        if (r < 0)
                return svemig_error_set(err, r, "cannot read the host's capabilities: %s", strerror(-r));
        if (req->vcpus == 0 || req->vcpus > caps.max_vcpus)
                return svemig_error_set(err, EINVAL, "a guest has 1 to %u vcpus on host %s, not %u",
                                        caps.max_vcpus, caps.host_name, req->vcpus);
        if (req->memory_bytes == 0 || req->memory_bytes % HV_PAGE_SIZE)
                return svemig_error_set(err, EINVAL,
                                        "guest memory must be a non-zero multiple of %u bytes, not %llu",
                                        HV_PAGE_SIZE, (unsigned long long)req->memory_bytes);
        r = admit_guest(d, "guest create", req->name, req->memory_bytes, err);
        if (r < 0)
                return r;
        if (req->program_case == SVEMIG__API__GUEST_CREATE_REQUEST__PROGRAM_PAYLOAD) {
                r = take_payload(call, req->payload, &payload_fd, err);
                if (r < 0)
                        return r;
        }
        if (req->program_case == SVEMIG__API__GUEST_CREATE_REQUEST__PROGRAM_WORKLOAD &&
            req->workload->dirty_pages_per_step > GUEST_DIRTY_PAGES_MAX)
                return svemig_error_set(err, EINVAL,
                                        "a dirty rate of %u pages per step is more than a step writes: at "
                                        "most %u pages per step per vcpu, so that a step stays short enough "
                                        "to pause or cancel",
                                        req->workload->dirty_pages_per_step, GUEST_DIRTY_PAGES_MAX);
        if (req->program_case == SVEMIG__API__GUEST_CREATE_REQUEST__PROGRAM_LINUX_BOOT) {
                r = take_linux(d, call, req->linux_boot, linux_fds, err);
                kernel_fd = linux_fds[0];
                initrd_fd = linux_fds[1];
                if (r < 0)
                        return r;
        }
        if (req->program_case == SVEMIG__API__GUEST_CREATE_REQUEST__PROGRAM_WORKLOAD && req->workload->seed)
                return svemig_error_set(
                        err, EOPNOTSUPP,
                        "the workload's seed is fixed (0x5eed0000 + vcpu index); leave seed 0");

        rec.vcpus = req->vcpus;
        rec.memory_bytes = req->memory_bytes;
        rec.cluster = req->max_vl_case == SVEMIG__API__GUEST_CREATE_REQUEST__MAX_VL_CLUSTER;
        r = choose_vls(d, req, &rec.vls, err);
        if (r < 0)
                return r;
        r = choose_cpu(d, req, &rec.cpu_regs, err);
        if (r < 0)
                return r;
        if (req->program_case == SVEMIG__API__GUEST_CREATE_REQUEST__PROGRAM_WORKLOAD)
                rec.dirty_pages_per_step = req->workload->dirty_pages_per_step;
        rec.state = GUEST_CREATED;
        rec.created_ns = now_ns(CLOCK_REALTIME);
        if (guest_record_set_str(&rec.name, req->name) < 0 ||
            (req->program_case == SVEMIG__API__GUEST_CREATE_REQUEST__PROGRAM_PAYLOAD &&
             guest_record_set_str(&rec.payload, req->payload) < 0) ||
            (kernel_fd >= 0 &&
             (guest_record_set_str(&rec.kernel, req->linux_boot->kernel) < 0 ||
              guest_record_set_str(&rec.initrd, initrd_fd >= 0 ? req->linux_boot->initrd : NULL) < 0 ||
              guest_record_set_str(&rec.cmdline,
                                   req->linux_boot->cmdline[0] ? req->linux_boot->cmdline : NULL) < 0))) {
                guest_record_done(&rec);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        r = guest_registry_add(d->guests, &rec, &e, err);
        guest_record_done(&rec);
        if (r < 0)
                return r;
        set_busy(e, call, "create");
        if (kernel_fd >= 0)
                r = guest_launch_linux(d, call, e, linux_fds, req->start ? created_then_start : created,
                                       err);
        else
                r = guest_launch(d, call, e, -1, payload_fd, req->start ? created_then_start : created, err);
        if (r < 0) {
                e->busy = NULL;
                (void)guest_entry_delete(e, NULL, NULL);
                return r;
        }
        return 0;
}

/* --- start, pause, resume, run --- */

static void relaunched(struct svemigd *d, struct api_call *call, struct guest_entry *e,
                       const Svemig__Api__Response *resp, const char *why)
{
        e->busy = NULL;
        if (!resp || resp->status) {
                e->rec.state = GUEST_DEAD;
                e->rec.vmm_pid = 0;
                (void)guest_record_set_str(&e->rec.reason, resp ? resp->status->message : why);
                (void)guest_entry_save(e, NULL);
                if (resp)
                        api_call_fail_status(call, resp->status);
                else
                        api_call_fail(call, EIO, "guest %s did not start: %s", e->rec.name, why);
                return;
        }
        start_after(d, call, e, false);
}

int op_guest_start(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                   struct svemig_error *err)
{
        struct svemigd *d = userdata;
        struct guest_entry *e;
        int r;

        r = find_guest(d, req->guest_start->name, &e, err);
        if (r < 0)
                return r;
        if (e->vmm)
                return vmm_forward(d, call, e, (Svemig__Api__Request *)req, NULL, NULL, false, NULL, err);
        /* Stopped or dead: its memory is gone, so a new VMM boots it from its configuration. */
        r = admit_guest(d, "guest start", e->rec.name, e->rec.memory_bytes, err);
        if (r < 0)
                return r;
        log_msg(LOG_INFO, LOG_CTX(.guest = e->rec.name, .op = "guest-start"),
                "guest %s was %s: booting it again from its configuration", e->rec.name,
                guest_state_name(e->rec.state));
        set_busy(e, call, "start");
        r = guest_launch(d, call, e, -1, -1, relaunched, err);
        if (r < 0)
                e->busy = NULL;
        return r;
}

/* pause, resume, run, and show on a live guest: the VMM answers. */
static int forward_simple(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                          const char *name, bool cancellable, struct svemig_error *err)
{
        struct svemigd *d = userdata;
        struct guest_entry *e;
        int r;

        r = find_guest(d, name, &e, err);
        if (r < 0)
                return r;
        return vmm_forward(d, call, e, (Svemig__Api__Request *)req, NULL, NULL, cancellable, NULL, err);
}

int op_guest_pause(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                   struct svemig_error *err)
{
        return forward_simple(call, req, userdata, req->guest_pause->name, false, err);
}

int op_guest_resume(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                    struct svemig_error *err)
{
        return forward_simple(call, req, userdata, req->guest_resume->name, false, err);
}

int op_guest_run(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                 struct svemig_error *err)
{
        return forward_simple(call, req, userdata, req->guest_run->name, true, err);
}

int op_guest_show(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                  struct svemig_error *err)
{
        struct svemigd *d = userdata;
        struct guest_entry *e;
        struct forward *f;
        int r;

        if (!req->guest_show->name || !req->guest_show->name[0])
                return svemig_error_set(err, EINVAL, "name the guest");
        e = guest_registry_find(d->guests, req->guest_show->name);
        if (!e)
                return svemig_error_set(err, ENOENT, "no guest named %s on this host (svemigctl guest list)",
                                        req->guest_show->name);
        /* A busy guest is still shown: from its record while its VMM is not yet (or no longer) there. */
        if (!e->vmm) {
                if (req->guest_show->digest)
                        return guest_not_live(e, "take the digest of", err);
                reply_guest(call, e, NULL);
                return 0;
        }
        r = vmm_forward(d, call, e, (Svemig__Api__Request *)req, NULL, NULL, false, &f, err);
        if (r < 0)
                return r;
        /* Dead by the time it would answer: the record says so, and why. */
        f->record_if_lost = !req->guest_show->digest;
        return 0;
}

/* --- stop --- */

static void stopped(struct forward *f, const Svemig__Api__Response *resp)
{
        struct guest_entry *e = f->e;

        if (resp->result_case == SVEMIG__API__RESPONSE__RESULT_GUEST)
                guest_entry_update(e, resp->guest);
        guest_entry_detach(e, GUEST_STOPPED);
        e->busy = NULL;
        (void)guest_entry_save(e, NULL);
        log_msg(LOG_INFO, LOG_CTX(.guest = e->rec.name, .op = "guest-stop"),
                "stopped guest %s after %llu steps", e->rec.name, (unsigned long long)e->rec.steps);
        if (f->data) /* a forced delete */
                ((void (*)(struct forward *))f->data)(f);
        else
                reply_guest(f->call, e, NULL);
}

static void stop_failed(struct forward *f)
{
        f->e->busy = NULL;
}

static int stop_guest(struct svemigd *d, struct api_call *call, struct guest_entry *e,
                      void (*then)(struct forward *), struct svemig_error *err)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__GuestRef ref = SVEMIG__API__GUEST_REF__INIT;
        struct forward *f;
        int r;

        ref.name = e->rec.name;
        req.op_case = SVEMIG__API__REQUEST__OP_GUEST_STOP;
        req.guest_stop = &ref;
        set_busy(e, call, "stop");
        r = vmm_forward(d, call, e, &req, stopped, (void *)then, false, &f, err);
        if (r < 0) {
                e->busy = NULL;
                return r;
        }
        f->failed = stop_failed;
        return 0;
}

int op_guest_stop(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                  struct svemig_error *err)
{
        struct svemigd *d = userdata;
        struct guest_entry *e;
        int r;

        r = find_guest(d, req->guest_stop->name, &e, err);
        if (r < 0)
                return r;
        if (e->rec.state == GUEST_STOPPED)
                return svemig_error_set(err, EALREADY, "guest %s is already stopped", e->rec.name);
        if (!e->vmm) {
                /* Dead: there is nothing to stop, but the operator has now acknowledged it. */
                guest_entry_detach(e, GUEST_STOPPED);
                (void)guest_entry_save(e, NULL);
                reply_guest(call, e, NULL);
                return 0;
        }
        return stop_guest(d, call, e, NULL, err);
}

/* --- delete --- */

static void delete_now(struct svemigd *d, struct api_call *call, struct guest_entry *e)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        struct svemig_error err = {0};
        char name[GUEST_NAME_MAX + 1];
        int r;

        snprintf(name, sizeof(name), "%s", e->rec.name);
        r = guest_entry_delete(e, d->conf.snapshot_dir, &err);
        if (r < 0) {
                api_call_fail_error(call, r, &err);
                return;
        }
        log_msg(LOG_INFO, LOG_CTX(.guest = name, .op = "guest-delete"), "deleted guest %s", name);
        api_call_reply(call, &resp);
}

static void delete_after_stop(struct forward *f)
{
        delete_now(f->d, f->call, f->e);
}

int op_guest_delete(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                    struct svemig_error *err)
{
        struct svemigd *d = userdata;
        struct guest_entry *e;
        int r;

        r = find_guest(d, req->guest_delete->name, &e, err);
        if (r < 0)
                return r;
        if (e->vmm) {
                if (!req->guest_delete->force)
                        return svemig_error_set(
                                err, EBUSY,
                                "guest %s is %s in its VMM (pid %d); stop it first, or delete "
                                "it with --force",
                                e->rec.name, guest_state_name(e->rec.state), (int)e->rec.vmm_pid);
                return stop_guest(d, call, e, delete_after_stop, err);
        }
        delete_now(d, call, e);
        return 0;
}

/* --- list --- */

struct list_ctx {
        struct svemigd *d;
        struct api_call *call;
        unsigned pending;
};

static void list_reply(struct list_ctx *ctx)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__GuestList list = SVEMIG__API__GUEST_LIST__INIT;
        unsigned n = guest_registry_count(ctx->d->guests), i = 0;
        Svemig__Api__Guest **guests = calloc(n ? n : 1, sizeof(*guests));

        if (!guests) {
                api_call_fail(ctx->call, ENOMEM, "svemigd is out of memory");
                free(ctx);
                return;
        }
        for (struct guest_entry *e = guest_registry_first(ctx->d->guests); e && i < n;
             e = guest_registry_next(e))
                if ((guests[i] = guest_msg_new(e, NULL)))
                        i++;
        list.n_guests = i;
        list.guests = guests;
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_GUEST_LIST;
        resp.guest_list = &list;
        api_call_reply(ctx->call, &resp);
        for (unsigned k = 0; k < i; k++)
                guest_msg_free(guests[k]);
        free(guests);
        free(ctx);
}

struct list_item {
        struct list_ctx *ctx;
        struct guest_entry *e;
};

static void list_refreshed(const Svemig__Api__Response *resp, const char *why, void *userdata)
{
        struct list_item *item = userdata;
        struct list_ctx *ctx = item->ctx;

        if (resp && !resp->status && resp->result_case == SVEMIG__API__RESPONSE__RESULT_GUEST)
                guest_entry_update(item->e, resp->guest);
        guest_entry_unref(item->e);
        free(item);
        if (--ctx->pending == 0)
                list_reply(ctx);
}

int op_guest_list(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                  struct svemig_error *err)
{
        struct svemigd *d = userdata;
        struct list_ctx *ctx = calloc(1, sizeof(*ctx));

        if (!ctx)
                return svemig_error_set(err, ENOMEM, "out of memory");
        ctx->d = d;
        ctx->call = call;
        /* Each live guest's steps and state, fresh from its VMM; the rest from the records. */
        ctx->pending = 1;
        for (struct guest_entry *e = guest_registry_first(d->guests); e; e = guest_registry_next(e)) {
                Svemig__Api__Request show = SVEMIG__API__REQUEST__INIT;
                Svemig__Api__GuestRef ref = SVEMIG__API__GUEST_REF__INIT;
                struct list_item *item;

                if (!e->vmm || !(item = calloc(1, sizeof(*item))))
                        continue;
                item->ctx = ctx;
                item->e = guest_entry_ref(e);
                ref.name = e->rec.name;
                show.op_case = SVEMIG__API__REQUEST__OP_GUEST_SHOW;
                show.guest_show = &ref;
                if (vmm_client_call(e->vmm, &show, NULL, list_refreshed, item, NULL, NULL) < 0) {
                        guest_entry_unref(e);
                        free(item);
                        continue;
                }
                ctx->pending++;
        }
        if (--ctx->pending == 0)
                list_reply(ctx);
        return 0;
}
