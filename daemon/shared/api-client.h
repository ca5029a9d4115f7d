/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A client's side of the control socket (svemigctl, the libvirt hook): connect, send a Request, read
 * Progress events and the Response. Blocking; one call at a time.
 */

#include <stdint.h>

#include "api.pb-c.h"
#include "svemig/error.h"

struct api_client;

/* Called for each Progress event of the call in flight. */
typedef void (*api_progress_t)(const Svemig__Api__Progress *progress, void *userdata);

/* --socket's default: $SVEMIG_SOCKET, else SVEMIG_DEFAULT_SOCKET. */
const char *api_client_default_socket(void);

/*
 * Connects to the daemon at path (NULL: the default). Failing, err says
 * which socket and what to check.
 */
int api_client_connect(const char *path, struct api_client **out, struct svemig_error *err);
/*
 * The same, but no step (connecting, each send, each wait for a message)
 * blocks longer than timeout_ms: then -ETIMEDOUT, with err saying so. For
 * callers that must answer in bounded time (the libvirt hook).
 */
int api_client_connect_timeout(const char *path, unsigned timeout_ms, struct api_client **out,
                               struct svemig_error *err);
void api_client_free(struct api_client *c);
const char *api_client_socket(const struct api_client *c);

/*
 * Sends req (its id is set here) and waits for its Response, which the
 * caller frees with svemig__api__response__free_unpacked(). A Response
 * about the connection itself (id 0: refused, malformed...) is returned as
 * the answer too. A negative errno means the exchange itself failed (the
 * daemon hung up, sent garbage...), with err saying so; the daemon's own
 * refusals are in (*out)->status.
 */
int api_client_call(struct api_client *c, Svemig__Api__Request *req, api_progress_t progress, void *userdata,
                    Svemig__Api__Response **out, struct svemig_error *err);

/*
 * The same, passing fd (a file the client opened itself) with the request
 * (SCM_RIGHTS); fd stays the caller's. First asks the daemon, once per
 * connection, whether it takes files so (HostInfo.features "client-files"):
 * -EPROTONOSUPPORT with the reason when it does not, and nothing is sent.
 */
int api_client_call_fd(struct api_client *c, Svemig__Api__Request *req, int fd, api_progress_t progress,
                       void *userdata, Svemig__Api__Response **out, struct svemig_error *err);
/* The same with n_fds files in one message, in this order (e.g. a Linux guest's kernel and initrd). */
#define API_CLIENT_FDS_MAX 4u
int api_client_call_fds(struct api_client *c, Svemig__Api__Request *req, const int *fds, unsigned n_fds,
                        api_progress_t progress, void *userdata, Svemig__Api__Response **out,
                        struct svemig_error *err);

/* The feature a daemon announces when it takes client files as descriptors. */
#define API_FEATURE_CLIENT_FILES "client-files"

/*
 * Asks the daemon to cancel request 'id' of this connection, without
 * waiting: the cancelled call's own Response tells how it ended. Safe to
 * call from a signal handler's deferred path, not from the handler itself.
 */
int api_client_send_cancel(struct api_client *c, uint64_t id, struct svemig_error *err);
