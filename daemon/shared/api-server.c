/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control socket's transport: connections, credentials, framing,
 * calls in flight, cancellation and the clean stop. What each operation
 * does lives elsewhere (api-ops.c and the op-*.c handlers).
 *
 * Lifetimes: the server holds one reference on each connected client; each
 * call holds one on its client, so a call whose client hung up can still
 * complete (its answer is dropped). A client's fd is closed as soon as it is
 * done with, its memory once the last call is.
 */
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api-frame.h"
#include "api-server.h"
#include "utf8.h"
#include "log.h"
#include "macro.h"
#include "pbcheck.h"

#define CLIENTS_MAX_DEFAULT         128u
#define CLIENTS_PER_UID_MAX_DEFAULT 32u
#define IDLE_TIMEOUT_USEC_DEFAULT   (60ull * 1000000ull)
#define READ_CHUNK                  (64u << 10)
/*
 * Stop reading a client's requests while this much of its output is unsent;
 * Progress events are dropped meanwhile (the Response still goes).
 */
#define OUTPUT_HIGH_WATER (1u << 20)
/* Sets of fds received but not yet claimed by their frame (one per frame in flight is the most). */
#define FD_SETS_MAX 2u
/* How long a stopping daemon waits for clients to take their answers. */
#define DRAIN_TIMEOUT_USEC (10ull * 1000000ull)

struct client;

/* Fds that came in one recvmsg(); they belong to the frame whose bytes [start, end) cover 'end - 1'. */
struct fd_set_in {
        uint64_t end; /* the stream offset just past the bytes read with them */
        int fds[API_CALL_FDS_MAX];
        unsigned n;
        bool truncated; /* more came than fit: the kernel closed the rest */
};

struct api_call {
        struct api_server *server;
        struct client *client;
        LIST_ENTRY(api_call) client_link;
        LIST_ENTRY(api_call) server_link;
        uint64_t id;
        uint64_t operation;
        const struct api_op *op;
        bool cancelled;
        bool client_gone; /* ...because its client hung up */
        void (*cancel)(struct api_call *call, void *userdata);
        void *cancel_userdata;
};

struct client {
        struct api_server *server;
        LIST_ENTRY(client) link; /* in server->clients while connected */
        unsigned refs;
        uint64_t number; /* for the log */
        int fd;
        sd_event_source *io;
        struct ucred cred;
        bool authorized;
        bool closing;    /* read nothing more; close once the output is sent */
        bool processing; /* handling its input: do not close it under our feet */

        sd_event_source *idle_timer;

        uint8_t *in;
        size_t in_start, in_len, in_cap; /* unread frames are in[in_start .. in_start+in_len) */
        uint64_t in_pos;                 /* the stream offset of in[in_start] */
        struct fd_set_in fd_sets[FD_SETS_MAX];
        unsigned n_fd_sets;
        struct fd_set_in *handling_fds; /* the fds of the request whose handler runs */
        struct api_call *handling;
        uint8_t *out;
        size_t out_len, out_cap;

        LIST_HEAD(, api_call) calls;
        unsigned n_calls;
};

struct api_server {
        sd_event *event;
        int listen_fd;
        sd_event_source *listen_source;
        sd_event_source *drain_timer;
        struct api_server_params params;
        char *group_name;

        LIST_HEAD(, client) clients;
        LIST_HEAD(, api_call) calls;
        unsigned n_clients, n_calls;
        unsigned max_clients, max_clients_per_uid;
        uint64_t idle_timeout_usec;
        uint64_t next_client, next_operation;
        bool accept_paused;

        bool draining;
        bool drain_reported;
        void (*drain_done)(void *userdata);
        void *drain_userdata;
};

static void client_disconnect(struct client *c, const char *why);
static void client_maybe_finish(struct client *c);
static void call_complete(struct api_call *call, Svemig__Api__Response *resp);

/* --- clients --- */

static struct client *client_ref(struct client *c)
{
        c->refs++;
        return c;
}

static void fd_set_close(struct fd_set_in *set)
{
        for (unsigned i = 0; i < set->n; i++)
                if (set->fds[i] >= 0)
                        close(set->fds[i]);
        set->n = 0;
}

static void client_drop_fds(struct client *c)
{
        for (unsigned i = 0; i < c->n_fd_sets; i++)
                fd_set_close(&c->fd_sets[i]);
        c->n_fd_sets = 0;
}

static void client_unref(struct client *c)
{
        if (!c || --c->refs > 0)
                return;
        client_drop_fds(c);
        free(c->in);
        free(c->out);
        free(c);
}

static void server_check_drained(struct api_server *s)
{
        if (!s->draining || s->drain_reported || s->n_clients > 0 || s->n_calls > 0)
                return;
        s->drain_reported = true;
        s->drain_timer = sd_event_source_disable_unref(s->drain_timer);
        if (s->drain_done)
                s->drain_done(s->drain_userdata);
}

static void client_update_events(struct client *c)
{
        uint32_t events = 0;

        if (c->fd < 0)
                return;
        if (c->authorized && !c->closing && c->out_len < OUTPUT_HIGH_WATER)
                events |= EPOLLIN;
        if (c->out_len > 0)
                events |= EPOLLOUT;
        (void)sd_event_source_set_io_events(c->io, events);
}

static int client_queue(struct client *c, const uint8_t *data, size_t len)
{
        if (c->fd < 0)
                return 0; /* nobody to tell */
        if (c->out_cap - c->out_len < len) {
                size_t cap = MAX(c->out_cap * 2, c->out_len + len);
                uint8_t *p = realloc(c->out, cap);

                if (!p)
                        return -ENOMEM;
                c->out = p;
                c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, data, len);
        c->out_len += len;
        client_update_events(c);
        return 0;
}

static int client_send(struct client *c, Svemig__Api__ServerMessage *msg)
{
        _cleanup_free_ uint8_t *frame = NULL;
        size_t size;
        int r;

        if (c->fd < 0)
                return 0;
        r = api_frame_pack(&msg->base, &frame, &size);
        if (r < 0) {
                log_error("client %llu: cannot frame an answer: %s", (unsigned long long)c->number,
                          strerror(-r));
                return r;
        }
        r = client_queue(c, frame, size);
        if (r < 0)
                client_disconnect(c, "out of memory for its answers");
        return r;
}

static int client_send_response(struct client *c, Svemig__Api__Response *resp)
{
        Svemig__Api__ServerMessage msg = SVEMIG__API__SERVER_MESSAGE__INIT;

        msg.kind_case = SVEMIG__API__SERVER_MESSAGE__KIND_RESPONSE;
        msg.response = resp;
        return client_send(c, &msg);
}

/* An answer that is not a call's: refusals and frames we could not read as a request. */
static void client_send_error(struct client *c, uint64_t id, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void client_send_error(struct client *c, uint64_t id, int code, const char *fmt, ...)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__Status status = SVEMIG__API__STATUS__INIT;
        char raw[SVEMIG_ERROR_MSG_MAX], msg[SVEMIG_ERROR_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(raw, sizeof(raw), fmt, ap);
        va_end(ap);
        status.code = code;
        status.message = utf8_escape(raw, strlen(raw), msg, sizeof(msg));
        resp.id = id;
        resp.status = &status;
        client_send_response(c, &resp);
}

static void client_flush(struct client *c)
{
        while (c->fd >= 0 && c->out_len > 0) {
                ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        client_disconnect(c, errno == EPIPE || errno == ECONNRESET ? "hung up"
                                                                                   : strerror(errno));
                        return;
                }
                memmove(c->out, c->out + n, c->out_len - (size_t)n);
                c->out_len -= (size_t)n;
        }
        client_update_events(c);
}

/* Closes the connection. In-flight calls are cancelled; they still complete, unheard. */
static void client_disconnect(struct client *c, const char *why)
{
        struct api_server *s = c->server;
        struct api_call *call;

        if (c->fd < 0)
                return;
        log_debug("client %llu (uid %u, pid %d): closing: %s", (unsigned long long)c->number,
                  (unsigned)c->cred.uid, (int)c->cred.pid, why);
        c->io = sd_event_source_disable_unref(c->io);
        c->idle_timer = sd_event_source_disable_unref(c->idle_timer);
        close(c->fd);
        c->fd = -1;
        c->out_len = 0;
        client_drop_fds(c);
        LIST_REMOVE(c, link);
        s->n_clients--;
        if (s->accept_paused && !s->draining) {
                s->accept_paused = false;
                sd_event_source_set_enabled(s->listen_source, SD_EVENT_ON);
        }

        /*
         * The server's reference, dropped last, keeps c alive meanwhile. A
         * cancel callback may complete its call at once, changing the list.
         */
restart:
        LIST_FOREACH(call, &c->calls, client_link)
        {
                if (!call->cancelled && call->cancel) {
                        call->cancelled = true;
                        call->client_gone = true;
                        log_msg(LOG_INFO, LOG_CTX(.op = call->op->name),
                                "cancelling operation %llu: its client hung up",
                                (unsigned long long)call->operation);
                        call->cancel(call, call->cancel_userdata);
                        goto restart;
                }
        }
        client_unref(c); /* the server's */
        server_check_drained(s);
}

static void client_maybe_finish(struct client *c)
{
        if (c->fd < 0 || c->out_len > 0 || c->processing)
                return;
        if (c->closing && c->n_calls == 0)
                client_disconnect(c, "done");
        else if (c->server->draining && c->n_calls == 0)
                client_disconnect(c, "svemigd is stopping");
}

/* A client is idle from its last complete request or answered call; a partial frame does not count. */
static void client_touch(struct client *c)
{
        if (!c->idle_timer)
                return;
        (void)sd_event_source_set_time_relative(c->idle_timer, c->server->idle_timeout_usec);
        (void)sd_event_source_set_enabled(c->idle_timer, SD_EVENT_ONESHOT);
}

static int client_idle(sd_event_source *source, uint64_t usec, void *userdata)
{
        struct client *c = userdata;
        struct api_server *s = c->server;

        if (c->n_calls > 0) {
                /* Waiting for an answer is not idling: look again a timeout after it comes. */
                client_touch(c);
                return 0;
        }
        client_ref(c);
        log_msg(LOG_INFO, NULL, "client %llu (uid %u, pid %d): closing: no request for %llu s",
                (unsigned long long)c->number, (unsigned)c->cred.uid, (int)c->cred.pid,
                (unsigned long long)(s->idle_timeout_usec / 1000000ull));
        if (c->out_len == 0)
                client_send_error(c, 0, ETIMEDOUT,
                                  "svemigd closes connections that send no request for %llu s "
                                  "(client-timeout in migrate.conf); connect again",
                                  (unsigned long long)(s->idle_timeout_usec / 1000000ull));
        c->closing = true;
        c->in_len = 0;
        client_flush(c);
        /* One that does not even take its answers goes at once. */
        if (c->fd >= 0 && c->out_len > 0)
                client_disconnect(c, "idle, not reading its answers");
        client_maybe_finish(c);
        client_unref(c);
        return 0;
}

/* --- calls --- */

static struct api_call *call_find(struct client *c, uint64_t id)
{
        struct api_call *call;

        LIST_FOREACH(call, &c->calls, client_link)
        {
                if (call->id == id)
                        return call;
        }
        return NULL;
}

static struct api_call *call_new(struct client *c, uint64_t id, const struct api_op *op)
{
        struct api_server *s = c->server;
        struct api_call *call = calloc(1, sizeof(*call));

        if (!call)
                return NULL;
        call->server = s;
        call->client = client_ref(c);
        call->id = id;
        call->op = op;
        call->operation = ++s->next_operation;
        LIST_INSERT_HEAD(&c->calls, call, client_link);
        LIST_INSERT_HEAD(&s->calls, call, server_link);
        c->n_calls++;
        s->n_calls++;
        return call;
}

static void call_complete(struct api_call *call, Svemig__Api__Response *resp)
{
        struct api_server *s = call->server;
        struct client *c = call->client;
        Svemig__Api__Status safe;
        char msg[SVEMIG_ERROR_MSG_MAX];

        /* A reason may quote a peer or a stream: a proto3 string holds UTF-8, and a terminal shows it. */
        if (resp->status && resp->status->message &&
            !utf8_printable(resp->status->message, strlen(resp->status->message))) {
                safe = *resp->status;
                safe.message = utf8_escape(safe.message, strlen(safe.message), msg, sizeof(msg));
                resp->status = &safe;
        }

        /* Out of the lists first: sending may find the client gone and cancel what is left. */
        LIST_REMOVE(call, client_link);
        LIST_REMOVE(call, server_link);
        c->n_calls--;
        s->n_calls--;

        resp->id = call->id;
        if (resp->status && resp->status->code != 0)
                log_msg(resp->status->code == ESHUTDOWN ? LOG_DEBUG : LOG_INFO,
                        LOG_CTX(.op = call->op->name), "request %llu of client %llu failed: %s",
                        (unsigned long long)call->id, (unsigned long long)c->number, resp->status->message);
        if (c->handling == call)
                c->handling = NULL;
        free(call);
        if (c->fd >= 0) {
                client_send_response(c, resp);
                client_flush(c);
                if (c->n_calls == 0)
                        client_touch(c);
        }
        client_maybe_finish(c);
        client_unref(c);
        server_check_drained(s);
}

uint64_t api_call_id(const struct api_call *call)
{
        return call->id;
}

uint64_t api_call_operation(const struct api_call *call)
{
        return call->operation;
}

const char *api_call_op_name(const struct api_call *call)
{
        return call->op->name;
}

const struct ucred *api_call_peer(const struct api_call *call)
{
        return &call->client->cred;
}

struct api_server *api_call_server(const struct api_call *call)
{
        return call->server;
}

unsigned api_call_n_fds(const struct api_call *call)
{
        const struct client *c = call->client;

        return c->handling == call && c->handling_fds ? c->handling_fds->n : 0;
}

int api_call_take_fd(struct api_call *call, unsigned i)
{
        struct client *c = call->client;
        int fd;

        if (c->handling != call || !c->handling_fds || i >= c->handling_fds->n)
                return -1;
        fd = c->handling_fds->fds[i];
        c->handling_fds->fds[i] = -1;
        return fd;
}

void api_call_reply(struct api_call *call, Svemig__Api__Response *resp)
{
        resp->status = NULL;
        call_complete(call, resp);
}

static void call_failv(struct api_call *call, int code, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));
static void call_failv(struct api_call *call, int code, const char *fmt, va_list ap)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__Status status = SVEMIG__API__STATUS__INIT;
        char msg[SVEMIG_ERROR_MSG_MAX];

        vsnprintf(msg, sizeof(msg), fmt, ap);
        status.code = abs(code) ? abs(code) : EIO;
        status.message = msg;
        resp.status = &status;
        call_complete(call, &resp);
}

void api_call_fail(struct api_call *call, int code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        call_failv(call, code, fmt, ap);
        va_end(ap);
}

void api_call_fail_error(struct api_call *call, int r, const struct svemig_error *err)
{
        api_call_fail(call, r, "%s", svemig_error_str(err, r));
}

void api_call_fail_status(struct api_call *call, const Svemig__Api__Status *status)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__Status copy = *status;

        if (copy.code == 0)
                copy.code = EIO;
        if (!copy.message)
                copy.message = (char *)"";
        resp.status = &copy;
        call_complete(call, &resp);
}

void api_call_progress(struct api_call *call, const char *phase, uint64_t done, uint64_t total)
{
        Svemig__Api__Progress progress = SVEMIG__API__PROGRESS__INIT;

        progress.phase = (char *)phase;
        progress.done = done;
        progress.total = total;
        api_call_progress_msg(call, &progress);
}

void api_call_progress_msg(struct api_call *call, const Svemig__Api__Progress *p)
{
        Svemig__Api__ServerMessage msg = SVEMIG__API__SERVER_MESSAGE__INIT;
        Svemig__Api__Progress progress = *p;

        if (!call || call->client->fd < 0)
                return;
        /* A client that does not read its progress does not hold svemigd's memory with it. */
        if (call->client->out_len >= OUTPUT_HIGH_WATER)
                return;
        progress.id = call->id;
        progress.operation = call->operation;
        msg.kind_case = SVEMIG__API__SERVER_MESSAGE__KIND_PROGRESS;
        msg.progress = &progress;
        client_send(call->client, &msg);
        client_flush(call->client);
}

void api_call_set_cancel(struct api_call *call, void (*cancel)(struct api_call *call, void *userdata),
                         void *userdata)
{
        call->cancel = cancel;
        call->cancel_userdata = userdata;
}

bool api_call_cancelled(const struct api_call *call)
{
        return call->cancelled;
}

bool api_call_client_gone(const struct api_call *call)
{
        return call->client_gone;
}

int api_server_cancel(struct api_call *call, const Svemig__Api__CancelRequest *req, struct svemig_error *err)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__CancelResult result = SVEMIG__API__CANCEL_RESULT__INIT;
        struct api_call *target = NULL, *it;

        switch (req->target_case) {
        case SVEMIG__API__CANCEL_REQUEST__TARGET_REQUEST_ID:
                target = call_find(call->client, req->request_id);
                if (!target)
                        return svemig_error_set(err, ENOENT,
                                                "no request %llu is in flight on this connection",
                                                (unsigned long long)req->request_id);
                break;
        case SVEMIG__API__CANCEL_REQUEST__TARGET_OPERATION:
                LIST_FOREACH(it, &call->server->calls, server_link)
                {
                        if (it->operation == req->operation)
                                target = it;
                }
                if (!target)
                        return svemig_error_set(err, ENOENT, "no operation %llu is in flight in svemigd",
                                                (unsigned long long)req->operation);
                break;
        default:
                return svemig_error_set(err, EINVAL,
                                        "the cancel names nothing: set request_id or operation");
        }
        if (target == call)
                return svemig_error_set(err, EINVAL, "a cancel request cannot cancel itself");
        if (!target->cancel)
                return svemig_error_set(err, EOPNOTSUPP,
                                        "%s (operation %llu) cannot be cancelled; it finishes on its own",
                                        target->op->name, (unsigned long long)target->operation);

        result.operation = target->operation;
        if (!target->cancelled) {
                target->cancelled = true;
                log_msg(LOG_INFO, LOG_CTX(.op = target->op->name),
                        "cancelling operation %llu at the request of uid %u",
                        (unsigned long long)target->operation, (unsigned)call->client->cred.uid);
                target->cancel(target, target->cancel_userdata);
        }
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_CANCEL;
        resp.cancel = &result;
        api_call_reply(call, &resp);
        return 0;
}

/* --- requests --- */

/* For the "unknown operation" answer: which fields did the client set that we do not know? */
static void describe_unknown_fields(const Svemig__Api__Request *req, char *buf, size_t len)
{
        size_t off = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < req->base.n_unknown_fields && off < len; i++)
                off += (size_t)snprintf(buf + off, len - off, "%s%u", i ? ", " : " (field ",
                                        (unsigned)req->base.unknown_fields[i].tag);
        if (off > 0 && off < len)
                snprintf(buf + off, len - off, ")");
}

static void handle_request(struct client *c, const uint8_t *data, size_t len, struct fd_set_in *fds)
{
        struct api_server *s = c->server;
        struct svemig_error err = {0};
        Svemig__Api__Request *req;
        const struct api_op *op;
        struct api_call *call;
        const char *field, *why;
        int r;

        req = svemig__api__request__unpack(NULL, len, data);
        if (!req) {
                log_warning("client %llu (uid %u): malformed request: %zu bytes that are not a "
                            "svemig.api.Request",
                            (unsigned long long)c->number, (unsigned)c->cred.uid, len);
                client_send_error(
                        c, 0, EBADMSG,
                        "malformed request: %zu bytes that are not a svemig.api.Request message; is the "
                        "client speaking svemig's control API (proto/api.proto)?",
                        len);
                return;
        }
        if (req->id == 0) {
                client_send_error(c, 0, EINVAL,
                                  "request id 0 is reserved for the connection; number requests from 1");
                goto out;
        }
        if (fds->truncated) {
                client_send_error(c, req->id, EBADMSG,
                                  "request %llu came with more file descriptors than the %u a request may "
                                  "carry",
                                  (unsigned long long)req->id, API_CALL_FDS_MAX);
                goto out;
        }
        if (pb_check_strings(&svemig__api__request__descriptor, data, len, &field, &why) < 0) {
                client_send_error(
                        c, req->id, EINVAL,
                        "request %llu: its %s %s; names, paths and strings are UTF-8 text without NUL",
                        (unsigned long long)req->id, field, why);
                goto out;
        }
        op = req->op_case != SVEMIG__API__REQUEST__OP__NOT_SET ? s->params.lookup(req->op_case) : NULL;
        if (!op) {
                char fields[128];

                describe_unknown_fields(req, fields, sizeof(fields));
                log_warning("client %llu (uid %u): request %llu: unknown operation%s",
                            (unsigned long long)c->number, (unsigned)c->cred.uid,
                            (unsigned long long)req->id, fields);
                client_send_error(
                        c, req->id, EOPNOTSUPP,
                        "unknown operation%s: this svemigd does not know it; is the client newer than "
                        "the daemon?",
                        fields);
                goto out;
        }
        if (call_find(c, req->id)) {
                client_send_error(c, req->id, EEXIST,
                                  "request id %llu is already in flight on this connection; use a new id",
                                  (unsigned long long)req->id);
                goto out;
        }

        call = call_new(c, req->id, op);
        if (!call) {
                client_send_error(c, req->id, ENOMEM, "svemigd is out of memory");
                goto out;
        }
        log_msg(LOG_DEBUG, LOG_CTX(.op = op->name), "client %llu (uid %u): request %llu, operation %llu",
                (unsigned long long)c->number, (unsigned)c->cred.uid, (unsigned long long)req->id,
                (unsigned long long)call->operation);

        if (s->draining && !op->while_stopping)
                api_call_fail(call, ESHUTDOWN,
                              "svemigd is stopping, so %s was not started; retry once it is back (systemctl "
                              "start svemigd, or any connection to its socket when it is socket-activated)",
                              op->name);
        else if (!op->handler)
                api_call_fail(call, ENOSYS, "%s is not implemented yet in this svemigd", op->name);
        else {
                c->handling = call;
                c->handling_fds = fds;
                r = op->handler(call, req, s->params.userdata, &err);
                c->handling = NULL;
                c->handling_fds = NULL;
                if (r < 0)
                        api_call_fail_error(call, r, &err);
        }
out:
        svemig__api__request__free_unpacked(req, NULL);
}

/* Handles every complete frame in the input buffer. */
/*
 * The fds of the frame at stream offsets [start, end): those read with its
 * bytes (the kernel hands fds over with the first byte of the sendmsg() that
 * sent them, and ends that read there). Any set read before the frame began
 * is a stray, closed.
 */
static void client_claim_fds(struct client *c, uint64_t start, uint64_t end, struct fd_set_in *out)
{
        unsigned kept = 0;

        *out = (struct fd_set_in){0};
        for (unsigned i = 0; i < c->n_fd_sets; i++) {
                struct fd_set_in *set = &c->fd_sets[i];

                if (set->end > end) {
                        c->fd_sets[kept++] = *set;
                        continue;
                }
                if (set->end <= start) {
                        log_warning("client %llu (uid %u): closing %u file descriptor(s) that came with no "
                                    "request",
                                    (unsigned long long)c->number, (unsigned)c->cred.uid, set->n);
                        fd_set_close(set);
                        continue;
                }
                out->truncated |= set->truncated;
                for (unsigned k = 0; k < set->n; k++) {
                        if (out->n < API_CALL_FDS_MAX)
                                out->fds[out->n++] = set->fds[k];
                        else {
                                close(set->fds[k]);
                                out->truncated = true;
                        }
                }
        }
        c->n_fd_sets = kept;
}

static void client_process_input(struct client *c)
{
        /* Answering one request must not close the client before the next is read. */
        c->processing = true;
        while (c->fd >= 0 && !c->closing && c->in_len >= API_FRAME_HEADER_SIZE) {
                uint32_t len = api_frame_length(c->in + c->in_start);
                uint64_t start = c->in_pos, end = c->in_pos + API_FRAME_HEADER_SIZE + len;
                struct fd_set_in fds;

                if (len > API_REQUEST_MAX) {
                        log_warning(
                                "client %llu (uid %u): refusing a %u-byte frame (the limit is %u); closing",
                                (unsigned long long)c->number, (unsigned)c->cred.uid, len, API_REQUEST_MAX);
                        client_send_error(c, 0, EMSGSIZE,
                                          "a request of %u bytes exceeds the %u MiB limit; closing the "
                                          "connection",
                                          len, API_REQUEST_MAX >> 20);
                        c->closing = true;
                        c->in_len = 0;
                        client_drop_fds(c);
                        break;
                }
                if (c->in_len < API_FRAME_HEADER_SIZE + len)
                        break;
                client_claim_fds(c, start, end, &fds);
                handle_request(c, c->in + c->in_start + API_FRAME_HEADER_SIZE, len, &fds);
                fd_set_close(&fds);
                c->in_start += API_FRAME_HEADER_SIZE + len;
                c->in_len -= API_FRAME_HEADER_SIZE + len;
                c->in_pos = end;
                if (c->fd >= 0)
                        client_touch(c);
        }
        if (c->in_len == 0)
                c->in_start = 0;
        c->processing = false;
}

/*
 * Makes room for one more chunk of the frame being read. The buffer grows
 * with the bytes that arrive, never to a length a frame only claims, and at
 * most to API_REQUEST_MAX.
 */
static int client_reserve_input(struct client *c)
{
        size_t want = READ_CHUNK;

        if (c->in_start > 0) {
                memmove(c->in, c->in + c->in_start, c->in_len);
                c->in_start = 0;
        }
        if (c->in_len >= API_FRAME_HEADER_SIZE)
                want = MIN(MAX((size_t)READ_CHUNK, c->in_len * 2),
                           API_FRAME_HEADER_SIZE + (size_t)MIN(api_frame_length(c->in), API_REQUEST_MAX));
        want = MAX(want, c->in_len + 1);
        if (c->in_cap < want) {
                uint8_t *p = realloc(c->in, want);

                if (!p)
                        return -ENOMEM;
                c->in = p;
                c->in_cap = want;
        }
        return 0;
}

/* Reads what is there, and the fds sent with it, which are kept for their frame. */
static ssize_t client_recv(struct client *c)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * API_CALL_FDS_MAX)];
        } control;
        struct iovec iov = {.iov_base = c->in + c->in_len, .iov_len = c->in_cap - c->in_len};
        struct msghdr m = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = control.buf,
                           .msg_controllen = sizeof(control)};
        struct fd_set_in set = {0};
        ssize_t n;

        n = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return n;
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
                size_t k;

                if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
                        continue;
                k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int fd;

                        memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
                        if (set.n < API_CALL_FDS_MAX)
                                set.fds[set.n++] = fd;
                        else
                                close(fd);
                }
        }
        set.truncated = (m.msg_flags & MSG_CTRUNC) != 0;
        if (set.n == 0 && !set.truncated)
                return n;
        set.end = c->in_pos + c->in_len + (uint64_t)n;
        if (c->n_fd_sets >= FD_SETS_MAX) {
                /* More sets than requests it could still be sending: no client of ours does that. */
                fd_set_close(&set);
                client_drop_fds(c);
                errno = EPROTO;
                return -1;
        }
        c->fd_sets[c->n_fd_sets++] = set;
        return n;
}

/* Reads once, or until the socket is empty. */
static void client_read(struct client *c, bool until_empty)
{
        do {
                ssize_t n;

                if (client_reserve_input(c) < 0) {
                        client_disconnect(c, "out of memory for its request");
                        return;
                }
                n = client_recv(c);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n == 0 && c->in_len == 0 && (c->n_calls > 0 || c->out_len > 0)) {
                        /* Shut for writing only, maybe: it may still be waiting for its answers. */
                        c->closing = true;
                        client_update_events(c);
                        return;
                }
                if (n <= 0) {
                        if (c->in_len > 0) {
                                log_warning(
                                        "client %llu (uid %u) hung up in the middle of a request (%zu bytes "
                                        "of a frame read)",
                                        (unsigned long long)c->number, (unsigned)c->cred.uid, c->in_len);
                                client_disconnect(c, "hung up mid-request");
                        } else
                                client_disconnect(c, n == 0 ? "hung up" : strerror(errno));
                        return;
                }
                c->in_len += (size_t)n;
                client_process_input(c);
        } while (until_empty && c->fd >= 0 && !c->closing);
}

static int client_io(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
        struct client *c = client_ref(userdata);

        if (revents & EPOLLOUT)
                client_flush(c);
        if (c->fd >= 0 && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->authorized && !c->closing &&
            c->out_len < OUTPUT_HIGH_WATER)
                client_read(c, false);
        else if (c->fd >= 0 && (revents & (EPOLLHUP | EPOLLERR)))
                client_disconnect(c, "hung up");
        if (c->fd >= 0) {
                client_flush(c);
                client_maybe_finish(c);
        }
        client_unref(c);
        return 0;
}

/* --- accepting --- */

static bool peer_in_group(int fd, const struct ucred *cred, gid_t group)
{
        _cleanup_free_ gid_t *groups = NULL;
        socklen_t len = 64 * sizeof(gid_t);

        if (cred->gid == group)
                return true;
        /* Supplementary groups, as the kernel saw them at connect(). */
        for (;;) {
                gid_t *p = realloc(groups, len);

                if (!p)
                        return false;
                groups = p;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
                        break;
                if (errno != ERANGE)
                        return false;
        }
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                if (groups[i] == group)
                        return true;
        return false;
}

static void client_refuse(struct client *c, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void client_refuse(struct client *c, int code, const char *fmt, ...)
{
        char msg[SVEMIG_ERROR_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        log_warning("refusing client %llu (uid %u, gid %u, pid %d): %s", (unsigned long long)c->number,
                    (unsigned)c->cred.uid, (unsigned)c->cred.gid, (int)c->cred.pid, msg);
        client_ref(c);
        client_send_error(c, 0, code, "%s", msg);
        c->closing = true;
        client_flush(c);
        client_maybe_finish(c);
        client_unref(c);
}

static unsigned client_count_uid(const struct api_server *s, uid_t uid)
{
        const struct client *c;
        unsigned n = 0;

        LIST_FOREACH(c, &s->clients, link)
        {
                if (c->cred.uid == uid)
                        n++;
        }
        return n;
}

static void server_accept_one(struct api_server *s, int fd)
{
        socklen_t len = sizeof(struct ucred);
        struct client *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return;
        }
        c->server = s;
        c->refs = 1;
        c->fd = fd;
        c->number = ++s->next_client;
        LIST_INIT(&c->calls);
        r = sd_event_add_io(s->event, &c->io, fd, 0, client_io, c);
        if (r < 0) {
                log_error("cannot watch a new client: %s", strerror(-r));
                close(fd);
                free(c);
                return;
        }
        LIST_INSERT_HEAD(&s->clients, c, link);
        s->n_clients++;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0) {
                c->cred = (struct ucred){.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
                client_refuse(c, EACCES, "svemigd cannot tell who you are (SO_PEERCRED: %s)",
                              strerror(errno));
                return;
        }
        log_debug("client %llu connected: uid %u, gid %u, pid %d", (unsigned long long)c->number,
                  (unsigned)c->cred.uid, (unsigned)c->cred.gid, (int)c->cred.pid);

        if (c->cred.uid != 0 && c->cred.uid != geteuid() && !peer_in_group(fd, &c->cred, s->params.group)) {
                char group[80];

                if (s->group_name)
                        snprintf(group, sizeof(group), "'%s'", s->group_name);
                else
                        snprintf(group, sizeof(group), "%u", (unsigned)s->params.group);
                client_refuse(
                        c, EACCES,
                        "permission denied: uid %u is not allowed to use svemigd; only root, uid %u and "
                        "members of group %s are (add the user to the group, e.g. usermod -aG %s USER, or "
                        "set socket-group in migrate.conf)",
                        (unsigned)c->cred.uid, (unsigned)geteuid(), group,
                        s->group_name ? s->group_name : group);
                return;
        }
        if (s->n_clients > s->max_clients) {
                client_refuse(c, EUSERS,
                              "svemigd already serves %u clients, its limit (max-clients in migrate.conf); "
                              "retry when one has finished",
                              s->max_clients);
                return;
        }
        if (client_count_uid(s, c->cred.uid) > s->max_clients_per_uid) {
                client_refuse(c, EUSERS,
                              "uid %u already has %u connections open to svemigd, the most one user may "
                              "have (max-clients-per-user in migrate.conf); close one and retry",
                              (unsigned)c->cred.uid, s->max_clients_per_uid);
                return;
        }
        if (s->idle_timeout_usec != UINT64_MAX) {
                r = sd_event_add_time_relative(s->event, &c->idle_timer, CLOCK_MONOTONIC,
                                               s->idle_timeout_usec, 0, client_idle, c);
                if (r < 0) {
                        client_refuse(c, ENOMEM, "svemigd cannot watch one more client: %s", strerror(-r));
                        return;
                }
        }
        c->authorized = true;
        client_update_events(c);
}

static int server_listen_io(sd_event_source *source, int listen_fd, uint32_t revents, void *userdata)
{
        struct api_server *s = userdata;

        for (unsigned i = 0; i < 16; i++) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                return 0;
                        /* Out of fds or memory: stop accepting until a client leaves, not spin. */
                        log_error("cannot accept clients: %s; waiting for one to leave", strerror(errno));
                        s->accept_paused = true;
                        sd_event_source_set_enabled(s->listen_source, SD_EVENT_OFF);
                        return 0;
                }
                server_accept_one(s, fd);
        }
        return 0;
}

/* The group's name for messages, or NULL when it has none. */
static char *group_name_of(gid_t gid)
{
        struct group grp, *res = NULL;
        char buf[4096];

        if (getgrgid_r(gid, &grp, buf, sizeof(buf), &res) != 0 || !res)
                return NULL;
        return strdup(grp.gr_name);
}

int api_server_new(sd_event *event, const struct api_server_params *params, struct api_server **out,
                   struct svemig_error *err)
{
        struct api_server *s;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return svemig_error_set(err, ENOMEM, "out of memory");
        s->event = sd_event_ref(event);
        s->params = *params;
        s->listen_fd = params->listen_fd;
        s->max_clients = params->max_clients ? params->max_clients : CLIENTS_MAX_DEFAULT;
        s->max_clients_per_uid =
                params->max_clients_per_uid ? params->max_clients_per_uid : CLIENTS_PER_UID_MAX_DEFAULT;
        s->idle_timeout_usec =
                params->idle_timeout_usec ? params->idle_timeout_usec : IDLE_TIMEOUT_USEC_DEFAULT;
        LIST_INIT(&s->clients);
        LIST_INIT(&s->calls);
        /* A group without a name is still a group: the messages then give its gid. */
        s->group_name = params->group_name ? strdup(params->group_name) : group_name_of(params->group);
        if (params->group_name && !s->group_name) {
                api_server_free(s);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        r = sd_event_add_io(event, &s->listen_source, s->listen_fd, EPOLLIN, server_listen_io, s);
        if (r < 0) {
                api_server_free(s);
                return svemig_error_set(err, r, "cannot watch the control socket: %s", strerror(-r));
        }
        *out = s;
        return 0;
}

void api_server_free(struct api_server *s)
{
        if (!s)
                return;
        while (!LIST_EMPTY(&s->clients))
                client_disconnect(LIST_FIRST(&s->clients), "svemigd is exiting");
        s->listen_source = sd_event_source_disable_unref(s->listen_source);
        s->drain_timer = sd_event_source_disable_unref(s->drain_timer);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        sd_event_unref(s->event);
        free(s->group_name);
        free(s);
}

static int drain_timeout(sd_event_source *source, uint64_t usec, void *userdata)
{
        struct api_server *s = userdata;

        log_warning("%u client(s) did not take their answers in time; closing them", s->n_clients);
        while (!LIST_EMPTY(&s->clients))
                client_disconnect(LIST_FIRST(&s->clients), "svemigd is stopping");
        if (s->n_calls > 0)
                log_notice("waiting for %u operation(s) in flight to finish", s->n_calls);
        return 0;
}

void api_server_drain(struct api_server *s, void (*done)(void *userdata), void *userdata)
{
        struct client **clients, *c;
        size_t n = 0;

        if (s->draining)
                return;
        s->draining = true;
        s->drain_done = done;
        s->drain_userdata = userdata;
        sd_event_source_set_enabled(s->listen_source, SD_EVENT_OFF);
        (void)sd_event_add_time_relative(s->event, &s->drain_timer, CLOCK_MONOTONIC, DRAIN_TIMEOUT_USEC, 0,
                                         drain_timeout, s);

        /*
         * Requests the clients sent before the stop are already in our socket
         * buffers: read them now, so that each gets an answer (ESHUTDOWN)
         * rather than a silent close. Handling one may close another client,
         * so hold them all first.
         */
        clients = calloc(s->n_clients ? s->n_clients : 1, sizeof(*clients));
        if (clients) {
                LIST_FOREACH(c, &s->clients, link)
                {
                        clients[n++] = client_ref(c);
                }
        }
        for (size_t i = 0; i < n; i++) {
                c = clients[i];
                if (c->fd >= 0 && c->authorized && !c->closing)
                        client_read(c, true);
                if (c->fd >= 0) {
                        if (c->in_len > 0)
                                log_notice("client %llu: dropping an incomplete request (%zu bytes) at stop",
                                           (unsigned long long)c->number, c->in_len);
                        client_flush(c);
                        client_maybe_finish(c);
                }
                client_unref(c);
        }
        free(clients);
        server_check_drained(s);
}

unsigned api_server_n_clients(const struct api_server *s)
{
        return s->n_clients;
}

unsigned api_server_n_calls(const struct api_server *s)
{
        return s->n_calls;
}
