/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "ram-reserve.h"
#include "svemigd.h"
#include "vmm-forward.h"
#include "vmm-spawn.h"

static void forward_free(struct forward *f)
{
        guest_entry_unref(f->e);
        free(f);
}

static void on_progress(const Svemig__Api__Progress *p, void *userdata)
{
        struct forward *f = userdata;

        api_call_progress_msg(f->call, p);
}

static void on_cancel(struct api_call *call, void *userdata)
{
        struct forward *f = userdata;

        if (f->e->vmm)
                (void)vmm_client_cancel(f->e->vmm, f->vmm_id);
}

static void on_done(const Svemig__Api__Response *resp, const char *why, void *userdata)
{
        struct forward *f = userdata;

        if (!resp && f->record_if_lost)
                reply_guest(f->call, f->e, NULL);
        else if (!resp) {
                if (f->failed)
                        f->failed(f);
                api_call_fail(f->call, EIO, "guest %s: its VMM (pid %d) is gone: %s", f->e->rec.name,
                              (int)f->e->rec.vmm_pid, why);
        } else if (resp->status && resp->status->code != 0) {
                if (f->failed)
                        f->failed(f);
                api_call_fail_status(f->call, resp->status);
        } else
                f->done(f, resp);
        forward_free(f);
}

int guest_not_live(const struct guest_entry *e, const char *what, struct svemig_error *err)
{
        if (e->rec.state == GUEST_DEAD)
                return svemig_error_set(err, EINVAL, "cannot %s guest %s: it is dead (%s); start it again",
                                        what, e->rec.name,
                                        e->rec.reason ? e->rec.reason : "its VMM is gone");
        return svemig_error_set(err, EINVAL, "cannot %s guest %s: it is %s; start it first", what,
                                e->rec.name, guest_state_name(e->rec.state));
}

int vmm_forward(struct svemigd *d, struct api_call *call, struct guest_entry *e, Svemig__Api__Request *req,
                forward_done_t done, void *data, bool cancellable, struct forward **out,
                struct svemig_error *err)
{
        return vmm_forward_fd(d, call, e, req, -1, done, data, cancellable, out, err);
}

int vmm_forward_fd(struct svemigd *d, struct api_call *call, struct guest_entry *e,
                   Svemig__Api__Request *req, int fd, forward_done_t done, void *data, bool cancellable,
                   struct forward **out, struct svemig_error *err)
{
        struct forward *f;
        int r;

        if (!e->vmm) {
                const char *what = api_call_op_name(call);

                /* "guest-pause" -> "pause" */
                return guest_not_live(e, strncmp(what, "guest-", 6) == 0 ? what + 6 : what, err);
        }
        f = calloc(1, sizeof(*f));
        if (!f)
                return svemig_error_set(err, ENOMEM, "out of memory");
        f->d = d;
        f->call = call;
        f->e = guest_entry_ref(e);
        f->done = done ? done : forward_reply_guest;
        f->data = data;
        r = vmm_client_call_fd(e->vmm, req, fd, on_progress, on_done, f, &f->vmm_id, err);
        if (r < 0) {
                forward_free(f);
                return r;
        }
        if (cancellable)
                api_call_set_cancel(call, on_cancel, f);
        if (out)
                *out = f;
        return 0;
}

void reply_guest(struct api_call *call, const struct guest_entry *e, const Svemig__Api__Guest *live)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__Guest *g = guest_msg_new(e, live);

        if (!g) {
                api_call_fail(call, ENOMEM, "svemigd is out of memory");
                return;
        }
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_GUEST;
        resp.guest = g;
        api_call_reply(call, &resp);
        guest_msg_free(g);
}

void forward_reply_guest(struct forward *f, const Svemig__Api__Response *resp)
{
        const Svemig__Api__Guest *live = NULL;

        if (resp->result_case == SVEMIG__API__RESPONSE__RESULT_GUEST) {
                enum guest_state before = f->e->rec.state;

                live = resp->guest;
                guest_entry_update(f->e, live);
                /* A show changes nothing worth a write (and an fsync), unless the state moved. */
                if (before != f->e->rec.state || strcmp(api_call_op_name(f->call), "guest-show") != 0)
                        (void)guest_entry_save(f->e, NULL);
        }
        reply_guest(f->call, f->e, live);
}

/* --- launching a VMM --- */

struct launch {
        struct svemigd *d;
        struct api_call *call;
        struct guest_entry *e;
        struct vmm_spawn *spawn;
        launch_done_t done;
        bool cancelled;
};

static void launch_progress(const Svemig__Api__Progress *p, void *userdata)
{
        struct launch *l = userdata;

        api_call_progress_msg(l->call, p);
}

static void launch_cancel(struct api_call *call, void *userdata)
{
        struct launch *l = userdata;

        l->cancelled = true;
        vmm_spawn_kill(l->spawn);
}

static void launch_ready(struct vmm_spawn *s, const Svemig__Api__Response *resp, const char *why,
                         void *userdata)
{
        struct launch *l = userdata;
        struct svemig_error err = {0};
        char reason[600];

        if (resp && !resp->status) {
                if (guest_entry_attach(l->e, vmm_spawn_pid(s), true, &err) < 0) {
                        vmm_spawn_kill(s);
                        snprintf(reason, sizeof(reason), "svemigd cannot reach the VMM it started: %s",
                                 err.msg);
                        resp = NULL;
                        why = reason;
                } else {
                        if (resp->result_case == SVEMIG__API__RESPONSE__RESULT_GUEST)
                                guest_entry_update(l->e, resp->guest);
                        (void)guest_entry_save(l->e, NULL);
                        log_msg(LOG_INFO, LOG_CTX(.guest = l->e->rec.name), "guest %s: VMM pid %d serves it",
                                l->e->rec.name, (int)l->e->rec.vmm_pid);
                }
        }
        if (!resp && l->cancelled)
                why = "cancelled";
        /* The call is no longer this launch's to cancel. */
        if (l->call)
                api_call_set_cancel(l->call, NULL, NULL);
        l->done(l->d, l->call, l->e, resp, why);
        guest_entry_unref(l->e);
        vmm_spawn_free(s);
        free(l);
}

/* The guest to the standby, or when that fails to a new VMM. Closes standby's control socket. */
static int spawn_or_handoff(struct svemigd *d, struct launch *l, const struct vmm_spawn_args *args,
                            const struct ram_standby *standby, struct svemig_error *err)
{
        struct svemig_error why = {0};
        int r;

        if (!standby)
                return vmm_spawn(d->event, args, launch_progress, launch_ready, l, &l->spawn, err);
        r = vmm_spawn_handoff(d->event, standby->pid, standby->control_fd, args, launch_progress,
                              launch_ready, l, &l->spawn, &why);
        close(standby->control_fd);
        if (r >= 0)
                return 0;
        log_msg(LOG_WARNING, LOG_CTX(.guest = args->name, .op = "migrate"),
                "guest %s cannot go to the standby VMM (pid %d): %s; a new VMM receives it, in ordinary "
                "memory",
                args->name, (int)standby->pid, why.msg);
        return vmm_spawn(d->event, args, launch_progress, launch_ready, l, &l->spawn, err);
}

static int launch(struct svemigd *d, struct api_call *call, struct guest_entry *e, int restore_fd,
                  const char *restore_url, int payload_fd, const int linux_fds[2], int receive_fd,
                  const struct ram_standby *standby, int channel_fd, launch_done_t done,
                  struct svemig_error *err)
{
        char vls[256], config[4096], payload[PATH_MAX];
        struct vmm_spawn_args args = {
                .name = e->rec.name,
                .dir = e->dir,
                .verbose = d->verbose,
                .restore_fd = restore_fd,
                .restore_url = restore_url,
                .source_name = restore_fd >= 0 ? e->rec.restored_from
                               : e->rec.kernel ? e->rec.kernel
                                               : e->rec.payload,
                .receive_fd = receive_fd,
                .channel_fd = channel_fd,
                .vcpus = e->rec.vcpus,
                .memory = e->rec.memory_bytes,
                .vls = vls,
                .cpu_regs = e->rec.cpu_regs,
                .dirty_pages = e->rec.dirty_pages_per_step,
                .payload_fd = payload_fd,
                .kernel_fd = linux_fds ? linux_fds[0] : -1,
                .initrd_fd = linux_fds ? linux_fds[1] : -1,
                .cmdline = e->rec.cmdline,
        };
        struct launch *l;
        int r = 0;

        /* A Linux guest boots from the client's files only: svemigd keeps no copy of them (yet). */
        if (e->rec.kernel && !linux_fds && receive_fd < 0 && restore_fd < 0)
                return svemig_error_set(err, EOPNOTSUPP,
                                        "guest %s boots Linux kernel %s, of which svemigd keeps no copy; "
                                        "svemigd opens no file a client names: delete the guest and create "
                                        "it again",
                                        e->rec.name, e->rec.kernel);
        /* A payload guest boots again from the copy of its image in its directory: svemigd's own file. */
        if (e->rec.payload && payload_fd < 0) {
                snprintf(payload, sizeof(payload), "%s/" GUEST_PAYLOAD_FILE, e->dir);
                args.payload = payload;
                /* Created by an svemigd that kept no copy, or arrived by migration: never the client's path.
                 */
                if (access(payload, R_OK) < 0)
                        return svemig_error_set(
                                err, ENOENT,
                                "guest %s runs payload %s, of which svemigd keeps no copy (it was "
                                "created by an older svemigd, or migrated here); svemigd opens "
                                "no file a client names: delete the guest and create it again",
                                e->rec.name, e->rec.payload);
        }
        if (vqset_empty(&e->rec.vls))
                snprintf(vls, sizeof(vls), "none");
        else
                vqset_format(&e->rec.vls, VQSET_FORMAT_BITMAP, vls, sizeof(vls));
        /* The VMM runs in / : it gets the configuration by its absolute name. */
        if (d->conf.path) {
                if (!realpath(d->conf.path, config))
                        r = svemig_error_set(err, errno, "cannot find the configuration %s again: %s",
                                             d->conf.path, strerror(errno));
                args.config = config;
        }
        l = r < 0 ? NULL : calloc(1, sizeof(*l));
        if (!l) {
                if (standby)
                        ram_standby_discard(standby);
                return r < 0 ? r : svemig_error_set(err, ENOMEM, "out of memory");
        }
        l->d = d;
        l->call = call;
        l->done = done;
        r = spawn_or_handoff(d, l, &args, standby, err);
        if (r < 0) {
                free(l);
                return r;
        }
        l->e = guest_entry_ref(e);
        e->rec.vmm_pid = vmm_spawn_pid(l->spawn);
        if (call)
                api_call_set_cancel(call, launch_cancel, l);
        return 0;
}

int guest_launch(struct svemigd *d, struct api_call *call, struct guest_entry *e, int restore_fd,
                 int payload_fd, launch_done_t done, struct svemig_error *err)
{
        return launch(d, call, e, restore_fd, NULL, payload_fd, NULL, -1, NULL, -1, done, err);
}

int guest_launch_linux(struct svemigd *d, struct api_call *call, struct guest_entry *e, const int fds[2],
                       launch_done_t done, struct svemig_error *err)
{
        return launch(d, call, e, -1, NULL, -1, fds, -1, NULL, -1, done, err);
}

int guest_launch_url(struct svemigd *d, struct api_call *call, struct guest_entry *e, const char *url,
                     launch_done_t done, struct svemig_error *err)
{
        return launch(d, call, e, -1, url, -1, NULL, -1, NULL, -1, done, err);
}

int guest_launch_receive(struct svemigd *d, struct guest_entry *e, int fd, const struct ram_standby *standby,
                         int channel_fd, launch_done_t done, struct svemig_error *err)
{
        return launch(d, NULL, e, -1, NULL, -1, NULL, fd, standby, channel_fd, done, err);
}
