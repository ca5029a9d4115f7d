/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the control socket's request side: the input is what
 * a client writes to svemigd's socket (length-prefixed frames of
 * svemig.api.Request). A real api_server on a real sd-event loop accepts the
 * connection, reads the frames and dispatches them to operations that
 * behave as svemigd's do: some answer at once, some fail, some run on
 * (sending Progress) and finish later or when cancelled, Cancel itself.
 * Whatever the client sends, the server must answer or refuse it, never
 * crash, leak or stall; once the client hangs up every call completes and
 * the connection goes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <systemd/sd-event.h>

#include "api-server.h"
#include "fuzz-util.h"
#include "log.h"

/* Turns of 100 ms without any event before the server counts as stalled (30 s: a loaded machine). */
#define IDLE_TURNS_MAX 300

static sd_event *event;
static struct sockaddr_un addr;
static socklen_t addr_len;
static struct api_server *server;
/* The client's thread says here that the server has closed its connection. */
static int wake_fd = -1;

/* An operation that runs on: it finishes on a later turn of the loop, or when cancelled. */
struct long_op {
        struct api_call *call;
        sd_event_source *finish;
};

static void long_op_free(struct long_op *op)
{
        sd_event_source_disable_unref(op->finish);
        free(op);
}

static int long_op_finish(sd_event_source *s, void *userdata)
{
        struct long_op *op = userdata;
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        struct api_call *call = op->call;

        api_call_progress(call, "finishing", 1, 1);
        long_op_free(op);
        api_call_reply(call, &resp);
        return 0;
}

static void long_op_cancel(struct api_call *call, void *userdata)
{
        long_op_free(userdata);
        api_call_fail(call, ECANCELED, "cancelled%s",
                      api_call_client_gone(call) ? ": its client hung up" : "");
}

static int op_long(struct api_call *call, const Svemig__Api__Request *req, bool cancellable,
                   struct svemig_error *err)
{
        struct long_op *op = calloc(1, sizeof(*op));
        Svemig__Api__Progress p = SVEMIG__API__PROGRESS__INIT;

        if (!op)
                return svemig_error_set(err, ENOMEM, "out of memory");
        op->call = call;
        if (sd_event_add_defer(event, &op->finish, long_op_finish, op) < 0)
                abort();
        if (cancellable)
                api_call_set_cancel(call, long_op_cancel, op);
        p.phase = (char *)"starting";
        p.round = (uint32_t)req->id;
        api_call_progress_msg(call, &p);
        return 0;
}

static int op_host_info(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                        struct svemig_error *err)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__HostInfo hi = SVEMIG__API__HOST_INFO__INIT;

        hi.backend = (char *)"sim";
        hi.host_name = (char *)"fuzz";
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_HOST_INFO;
        resp.host_info = &hi;
        api_call_reply(call, &resp);
        return 0;
}

static int op_guest_create(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                           struct svemig_error *err)
{
        const Svemig__Api__GuestCreateRequest *c = req->guest_create;

        /* The client's strings go back in the message, as svemigd's refusals quote them. */
        return svemig_error_set(err, EEXIST, "guest %s already exists", c && c->name ? c->name : "(none)");
}

static int op_guest_ref(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                        struct svemig_error *err)
{
        const Svemig__Api__GuestRef *g = NULL;

        switch (req->op_case) {
        case SVEMIG__API__REQUEST__OP_GUEST_START:
                g = req->guest_start;
                break;
        case SVEMIG__API__REQUEST__OP_GUEST_PAUSE:
                g = req->guest_pause;
                break;
        case SVEMIG__API__REQUEST__OP_GUEST_DELETE:
                g = req->guest_delete;
                break;
        default:
                g = req->guest_show;
                break;
        }
        if (g && g->name && g->name[0] == 'x')
                return svemig_error_set(err, ENOENT, "no guest %s", g->name);
        return op_long(call, req, !(g && g->force), err);
}

static int op_guest_list(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                         struct svemig_error *err)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;

        api_call_reply(call, &resp);
        return 0;
}

static int op_run_on(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                     struct svemig_error *err)
{
        return op_long(call, req, req->op_case == SVEMIG__API__REQUEST__OP_MIGRATE, err);
}

static int op_cancel(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                     struct svemig_error *err)
{
        return api_server_cancel(call, req->cancel, err);
}

static const struct api_op ops[] = {
        {SVEMIG__API__REQUEST__OP_HOST_INFO, "host-info", op_host_info, true},
        {SVEMIG__API__REQUEST__OP_GUEST_CREATE, "guest-create", op_guest_create, false},
        {SVEMIG__API__REQUEST__OP_GUEST_START, "guest-start", op_guest_ref, false},
        {SVEMIG__API__REQUEST__OP_GUEST_PAUSE, "guest-pause", op_guest_ref, false},
        {SVEMIG__API__REQUEST__OP_GUEST_RESUME, "guest-resume", op_guest_ref, false},
        {SVEMIG__API__REQUEST__OP_GUEST_STOP, "guest-stop", op_guest_ref, false},
        {SVEMIG__API__REQUEST__OP_GUEST_DELETE, "guest-delete", op_guest_ref, false},
        {SVEMIG__API__REQUEST__OP_GUEST_LIST, "guest-list", op_guest_list, true},
        {SVEMIG__API__REQUEST__OP_GUEST_SHOW, "guest-show", op_guest_ref, true},
        {SVEMIG__API__REQUEST__OP_SNAPSHOT, "snapshot", NULL, false},
        {SVEMIG__API__REQUEST__OP_RESTORE, "restore", NULL, false},
        {SVEMIG__API__REQUEST__OP_CANCEL, "cancel", op_cancel, true},
        {SVEMIG__API__REQUEST__OP_GUEST_RUN, "guest-run", op_run_on, false},
        /* cluster: unknown to this server, as to an older svemigd */
        {SVEMIG__API__REQUEST__OP_MIGRATE, "migrate", op_run_on, false},
};

static const struct api_op *lookup(int op_case)
{
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
                if (ops[i].op_case == op_case)
                        return &ops[i];
        return NULL;
}

static int on_wake(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        eventfd_t v;

        (void)eventfd_read(fd, &v);
        return 0;
}

static void setup(void)
{
        struct api_server_params params = {.group = getegid(), .group_name = "fuzz", .lookup = lookup};
        struct svemig_error err = {0};
        int fd;

        /* Quiet: every malformed request is logged, and there are millions. */
        log_set_max_level(LOG_CRIT);
        if (sd_event_new(&event) < 0)
                abort();
        addr.sun_family = AF_UNIX;
        /* An abstract name of our own: nothing on disk, nothing shared with another run. */
        snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "svemig-fuzz-api-%d", (int)getpid());
        addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(addr.sun_path + 1));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&addr, addr_len) < 0 || listen(fd, 16) < 0)
                abort();
        params.listen_fd = fd;
        wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake_fd < 0 || sd_event_add_io(event, NULL, wake_fd, EPOLLIN, on_wake, NULL) < 0)
                abort();
        if (api_server_new(event, &params, &server, &err) < 0) {
                fprintf(stderr, "fuzz-api-request: %s\n", err.msg);
                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fuzz_peer peer;
        unsigned idle = 0;
        int fd;

        if (!event)
                setup();
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, addr_len) < 0)
                abort();
        fuzz_peer_start_fd(&peer, fd, data, size, wake_fd);
        /* Until the client has been answered, hung up on and forgotten, with every call complete. */
        while (!__atomic_load_n(&peer.done, __ATOMIC_ACQUIRE) || api_server_n_clients(server) > 0 ||
               api_server_n_calls(server) > 0) {
                int r = sd_event_run(event, 100000);

                if (r < 0)
                        abort();
                idle = r == 0 ? idle + 1 : 0;
                if (idle > IDLE_TURNS_MAX) {
                        fprintf(stderr, "fuzz-api-request: the server stalled: %u client(s), %u call(s)\n",
                                api_server_n_clients(server), api_server_n_calls(server));
                        abort();
                }
        }
        pthread_join(peer.thread, NULL);
        close(fd);
        return 0;
}
