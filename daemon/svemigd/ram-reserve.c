/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "ram-reserve.h"
#include "standby-proto.h"
#include "vmm-spawn.h"

enum reserve_state {
        RESERVE_EMPTY,    /* handed out; the next waits for ram_reserve_refill() */
        RESERVE_STARTING, /* a standby is faulting its RAM in (or is about to be started) */
        RESERVE_READY,
        RESERVE_FAILED, /* the next try waits for ram_reserve_refill() or a take */
};

struct ram_reserve {
        sd_event *event;
        uint64_t size;
        char *config;
        bool verbose;
        enum reserve_state state;
        /* The standby, while it is ours: pid 0 and control_fd -1 when none. */
        pid_t pid;
        int control_fd;
        sd_event_source *io;    /* its control socket: its word on being ready */
        sd_event_source *child; /* its exit */
        bool child_exited; /* child fired: sd-event reaps it (the source is freed later, not in there) */
        char why[SVEMIG_ERROR_MSG_MAX]; /* what it said when it could not be ready */
        /* A standby that died is replaced once at once (from a defer: not in the child's callback). */
        sd_event_source *retry;
        bool replacement; /* the current standby replaces a failed one: if it fails too, wait */
};

static unsigned long long mib(const struct ram_reserve *rr)
{
        return (unsigned long long)(rr->size >> 20);
}

/* Forgets the standby: it has been reaped (child_exited), handed out (pid 0), or is reaped here. */
static void release(struct ram_reserve *rr)
{
        rr->io = sd_event_source_disable_unref(rr->io);
        rr->child = sd_event_source_disable_unref(rr->child);
        if (rr->control_fd >= 0)
                close(rr->control_fd);
        rr->control_fd = -1;
        if (rr->pid > 0 && !rr->child_exited) {
                siginfo_t si;

                /* Its socket's end is its signal to exit; one still faulting in is not listening yet. */
                if (rr->state != RESERVE_READY)
                        kill(rr->pid, SIGTERM);
                vmm_wait_exit(rr->pid, &si);
        }
        rr->pid = 0;
        rr->child_exited = false;
        rr->why[0] = '\0';
}

static void start(struct ram_reserve *rr);

static int on_retry(sd_event_source *source, void *userdata)
{
        start(userdata);
        return 0;
}

/* The standby ended before it was used. */
static int on_standby_exit(sd_event_source *source, const siginfo_t *si, void *userdata)
{
        struct ram_reserve *rr = userdata;
        const char *when = rr->state == RESERVE_READY ? "before a guest came" : "before it was ready";
        struct svemig_error err = {0};
        char how[128];

        rr->child_exited = true;
        /* What it said before it exited, if on_control() has not read it yet (the two come in no set order).
         */
        if (rr->io && !rr->why[0] && standby_ready_recv(rr->control_fd, &err) < 0 && err.code)
                snprintf(rr->why, sizeof(rr->why), "%s", err.msg);
        rr->io = sd_event_source_disable_unref(rr->io);
        vmm_describe_exit(si->si_code, si->si_status, how, sizeof(how));
        if (rr->replacement) {
                rr->state = RESERVE_FAILED;
                log_warning(
                        "the incoming RAM reserve (%llu MiB) could not be prepared: its standby VMM (pid "
                        "%d) %s %s%s%s; incoming guests get ordinary memory, and another is tried once one "
                        "has arrived",
                        mib(rr), (int)si->si_pid, how, when, rr->why[0] ? ": " : "", rr->why);
                return 0;
        }
        log_warning("the incoming RAM reserve's standby VMM (pid %d) %s %s%s%s; starting another",
                    (int)si->si_pid, how, when, rr->why[0] ? ": " : "", rr->why);
        rr->state = RESERVE_STARTING;
        rr->replacement = true;
        (void)sd_event_source_set_enabled(rr->retry, SD_EVENT_ONESHOT);
        return 0;
}

static int on_control(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
        struct ram_reserve *rr = userdata;
        struct svemig_error err = {0};
        int r;

        r = standby_ready_recv(fd, &err);
        if (r == -EAGAIN)
                return 0;
        if (r == 1 && rr->state == RESERVE_STARTING) {
                rr->state = RESERVE_READY;
                rr->replacement = false;
                log_info("the incoming RAM reserve is ready: %llu MiB faulted in for the next guest to "
                         "migrate in",
                         mib(rr));
                return 0;
        }
        /* It failed (and exits), or closed its end (it is exiting), or garbled: on_standby_exit() says the
         * rest. */
        if (r < 0)
                snprintf(rr->why, sizeof(rr->why), "%s", err.msg);
        if (r == -EPROTO)
                kill(rr->pid, SIGKILL);
        rr->io = sd_event_source_disable_unref(rr->io);
        return 0;
}

static void start(struct ram_reserve *rr)
{
        struct svemig_error err = {0};
        int r;

        release(rr);
        r = vmm_spawn_standby(rr->config, rr->verbose, rr->size, &rr->pid, &rr->control_fd, &err);
        if (r >= 0) {
                r = sd_event_add_io(rr->event, &rr->io, rr->control_fd, EPOLLIN, on_control, rr);
                if (r >= 0)
                        r = sd_event_add_child(rr->event, &rr->child, rr->pid, WEXITED, on_standby_exit, rr);
                if (r < 0)
                        svemig_error_set(&err, r, "cannot watch its standby VMM: %s", strerror(-r));
        }
        if (r < 0) {
                rr->state = RESERVE_FAILED;
                release(rr);
                log_warning(
                        "the incoming RAM reserve (%llu MiB) could not be prepared: %s; incoming guests get "
                        "ordinary memory until the next one is",
                        mib(rr), err.msg);
                return;
        }
        rr->state = RESERVE_STARTING;
        log_info("preparing an incoming RAM reserve of %llu MiB: standby VMM pid %d", mib(rr), (int)rr->pid);
}

int ram_reserve_new(sd_event *event, uint64_t size, const char *config, bool verbose,
                    struct ram_reserve **out, struct svemig_error *err)
{
        uint64_t page = (uint64_t)getpagesize();
        struct ram_reserve *rr;
        int r;

        if (size == 0)
                return svemig_error_set(err, EINVAL, "an incoming RAM reserve needs a size");
        rr = calloc(1, sizeof(*rr));
        if (!rr)
                return svemig_error_set(err, ENOMEM, "out of memory");
        rr->event = event;
        rr->size = (size + page - 1) / page * page;
        rr->verbose = verbose;
        rr->control_fd = -1;
        if (config && !(rr->config = strdup(config))) {
                free(rr);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        r = sd_event_add_defer(event, &rr->retry, on_retry, rr);
        if (r >= 0)
                r = sd_event_source_set_enabled(rr->retry, SD_EVENT_OFF);
        if (r < 0) {
                ram_reserve_free(rr);
                return svemig_error_set(err, r, "cannot set up the incoming RAM reserve: %s", strerror(-r));
        }
        start(rr);
        *out = rr;
        return 0;
}

int ram_reserve_take(struct ram_reserve *rr, struct ram_standby *out, struct svemig_error *err)
{
        switch (rr->state) {
        case RESERVE_EMPTY:
                return svemig_error_set(err, EAGAIN,
                                        "the incoming RAM reserve went to a guest still arriving; the next "
                                        "is prepared once it has");
        case RESERVE_STARTING:
                return svemig_error_set(err, EAGAIN, "the incoming RAM reserve is still being prepared");
        case RESERVE_FAILED:
                /* Not now, while this guest streams in: ram_reserve_refill() tries again after it. */
                return svemig_error_set(
                        err, EAGAIN,
                        "the last incoming RAM reserve could not be prepared; the next is tried "
                        "once this guest has arrived");
        case RESERVE_READY:
                break;
        }
        /* The guest's VMM from now on: svemigd watches it as the guest's (guest_entry_attach()), not here.
         */
        rr->io = sd_event_source_disable_unref(rr->io);
        rr->child = sd_event_source_disable_unref(rr->child);
        out->pid = rr->pid;
        out->control_fd = rr->control_fd;
        out->size = rr->size;
        rr->pid = 0;
        rr->control_fd = -1;
        rr->state = RESERVE_EMPTY;
        return 0;
}

void ram_standby_discard(const struct ram_standby *s)
{
        siginfo_t si;

        close(s->control_fd);
        vmm_wait_exit(s->pid, &si);
}

void ram_reserve_refill(struct ram_reserve *rr)
{
        if (!rr || (rr->state != RESERVE_EMPTY && rr->state != RESERVE_FAILED))
                return;
        /* After a failure, one try: if it fails too, the next waits for the next refill. */
        rr->replacement = rr->state == RESERVE_FAILED;
        start(rr);
}

void ram_reserve_free(struct ram_reserve *rr)
{
        if (!rr)
                return;
        sd_event_source_disable_unref(rr->retry);
        release(rr);
        free(rr->config);
        free(rr);
}
