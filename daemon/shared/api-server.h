/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svemigd's control socket: accepts clients on a listening Unix stream
 * socket, checks who they are (SO_PEERCRED), reads length-prefixed Request
 * frames and hands each to the operation that api_op_find() names. Each
 * request becomes a struct api_call, which its handler completes at once or
 * later (a long operation), sending Progress events meanwhile.
 *
 * Everything here runs on the sd-event loop's thread. A handler whose work
 * runs on other threads hands its results back to the loop (e.g. through an
 * eventfd source) before calling api_call_*().
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "api.pb-c.h"
#include "svemig/error.h"

struct api_server;
struct api_call;

/*
 * An operation's handler. The request is freed when the handler returns;
 * copy what a long operation needs. Returns:
 *   - 0 after completing the call (api_call_reply/api_call_fail), or after
 *     keeping it to complete later;
 *   - a negative errno with err filled, and the server fails the call with it.
 */
typedef int (*api_handler_t)(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                             struct svemig_error *err);

struct api_op {
        int op_case;           /* SVEMIG__API__REQUEST__OP_* */
        const char *name;      /* "host-info", "guest-create"... for logs and messages */
        api_handler_t handler; /* NULL: known but not implemented yet (ENOSYS) */
        bool while_stopping;   /* still served once the daemon is draining */
};

typedef const struct api_op *(*api_op_lookup_t)(int op_case);

struct api_server_params {
        int listen_fd;          /* a listening AF_UNIX SOCK_STREAM socket; the server owns it */
        gid_t group;            /* members may connect (besides root and our own uid) */
        const char *group_name; /* for the refusal message; NULL: the gid */
        api_op_lookup_t lookup;
        void *userdata; /* passed to handlers */
        /*
         * What one client may hold (0: the defaults in api-server.c). A client
         * with no call in flight that sends no complete request for
         * idle_timeout_usec is closed (UINT64_MAX: never).
         */
        unsigned max_clients;
        unsigned max_clients_per_uid;
        uint64_t idle_timeout_usec;
};

/* The most file descriptors one request may carry (SCM_RIGHTS with its frame). */
#define API_CALL_FDS_MAX 4u
/* The largest request a server reads; larger ones are refused and the connection closed. */
#define API_REQUEST_MAX (1u << 20)

int api_server_new(sd_event *event, const struct api_server_params *params, struct api_server **out,
                   struct svemig_error *err);
void api_server_free(struct api_server *server);

/*
 * Starts the clean stop: no new connections; requests already running finish
 * and get their answers; requests read from now on are refused with
 * ESHUTDOWN (except while_stopping ops, e.g. cancel); each client is closed
 * once it has nothing in flight. done() runs once every client is gone and
 * every call has completed.
 */
void api_server_drain(struct api_server *server, void (*done)(void *userdata), void *userdata);

unsigned api_server_n_clients(const struct api_server *server);
unsigned api_server_n_calls(const struct api_server *server);

/* --- for handlers --- */

uint64_t api_call_id(const struct api_call *call);
/* The daemon-wide number of this operation (Progress.operation, CancelRequest.operation). */
uint64_t api_call_operation(const struct api_call *call);
const char *api_call_op_name(const struct api_call *call);
/* Who asked (SO_PEERCRED). */
const struct ucred *api_call_peer(const struct api_call *call);
struct api_server *api_call_server(const struct api_call *call);

/*
 * The file descriptors that came with the request (SCM_RIGHTS on its frame),
 * while its handler runs. api_call_take_fd() hands fd i over to the caller
 * (-1 when there is none); those not taken are closed when the handler
 * returns.
 */
unsigned api_call_n_fds(const struct api_call *call);
int api_call_take_fd(struct api_call *call, unsigned i);

/*
 * Completes the call with a success response: the caller fills the result
 * oneof of resp (id and status are set here) and still owns resp. The call
 * is freed.
 */
void api_call_reply(struct api_call *call, Svemig__Api__Response *resp);
/* Completes the call with an error status. The call is freed. */
void api_call_fail(struct api_call *call, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
void api_call_fail_error(struct api_call *call, int r, const struct svemig_error *err);
/*
 * Completes the call with this status as it is (code, message and flags
 * such as incompatible), e.g. one relayed from a VMM. The call is freed.
 */
void api_call_fail_status(struct api_call *call, const Svemig__Api__Status *status);

/* Sends a Progress event (dropped when the client is gone). */
void api_call_progress(struct api_call *call, const char *phase, uint64_t done, uint64_t total);
/* The same with every field of p (a migration's round, rates...); id and operation are the call's. */
void api_call_progress_msg(struct api_call *call, const Svemig__Api__Progress *p);

/*
 * Makes the call cancellable: cancel() runs (once) when a client cancels it
 * or when its client disconnects. The handler then completes it as it can,
 * normally with api_call_fail(call, ECANCELED, ...).
 */
void api_call_set_cancel(struct api_call *call, void (*cancel)(struct api_call *call, void *userdata),
                         void *userdata);
bool api_call_cancelled(const struct api_call *call);
/* Whether it was cancelled because its client hung up (not by a Cancel request). */
bool api_call_client_gone(const struct api_call *call);

/*
 * The Cancel operation: cancels the call the request names (by request id on
 * the caller's connection, or by operation number) and completes 'call'.
 */
int api_server_cancel(struct api_call *call, const Svemig__Api__CancelRequest *req,
                      struct svemig_error *err);
