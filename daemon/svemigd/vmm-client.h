/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svemigd's side of a VMM's control socket (daemon/vmm/vmm.h): one connection
 * per live VMM, on the daemon's sd-event loop, never blocking it. Requests
 * are the control API's own (proto/api.proto); each gets its Progress
 * events and one Response through callbacks.
 *
 * When the VMM's end closes (it exited, was killed, or crashed), lost()
 * runs, and then every call in flight completes with resp == NULL and the
 * reason.
 */

#include <stdint.h>
#include <systemd/sd-event.h>

#include "api.pb-c.h"
#include "svemig/error.h"

struct vmm_client;

typedef void (*vmm_progress_t)(const Svemig__Api__Progress *progress, void *userdata);
/* resp is NULL when the connection was lost ('why' says how); it is freed after the callback. */
typedef void (*vmm_done_t)(const Svemig__Api__Response *resp, const char *why, void *userdata);
typedef void (*vmm_lost_t)(struct vmm_client *c, const char *why, void *userdata);

/* Connects to the VMM at path. Fails (ECONNREFUSED, ENOENT) when no VMM listens there. */
int vmm_client_connect(sd_event *event, const char *path, vmm_lost_t lost, void *userdata,
                       struct vmm_client **out, struct svemig_error *err);
/* Closes the connection; calls in flight complete first with resp == NULL. lost() is not called. */
void vmm_client_free(struct vmm_client *c);

/*
 * Sends req (its id is set here) and returns at once; *id (optional) is the
 * id for vmm_client_cancel(). progress may be NULL.
 */
int vmm_client_call(struct vmm_client *c, Svemig__Api__Request *req, vmm_progress_t progress,
                    vmm_done_t done, void *userdata, uint64_t *id, struct svemig_error *err);
/* The same, with a copy of fd passed along (SCM_RIGHTS); fd stays the caller's. */
int vmm_client_call_fd(struct vmm_client *c, Svemig__Api__Request *req, int fd, vmm_progress_t progress,
                       vmm_done_t done, void *userdata, uint64_t *id, struct svemig_error *err);
/* Asks the VMM to cancel request id; the call's own Response tells how it ended. */
int vmm_client_cancel(struct vmm_client *c, uint64_t id);
