/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The control API's operations: the table that maps each Request.op to its
 * handler (api-ops.c), and the handlers, one op-<area>.c file per area. Each
 * handler gets the struct svemigd as userdata.
 */

#include "api-server.h"

/* The operation for a Request.op case; NULL when this daemon does not know it. */
const struct api_op *api_op_find(int op_case);

/* op-host.c */
int op_host_info(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                 struct svemig_error *err);

/* op-guest.c */
int op_guest_create(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                    struct svemig_error *err);
int op_guest_start(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                   struct svemig_error *err);
int op_guest_pause(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                   struct svemig_error *err);
int op_guest_resume(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                    struct svemig_error *err);
int op_guest_run(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                 struct svemig_error *err);
int op_guest_stop(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                  struct svemig_error *err);
int op_guest_delete(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                    struct svemig_error *err);
int op_guest_list(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                  struct svemig_error *err);
int op_guest_show(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                  struct svemig_error *err);

/* op-snapshot.c */
int op_snapshot(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                struct svemig_error *err);
int op_restore(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
               struct svemig_error *err);

/* op-cluster.c */
int op_cluster(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
               struct svemig_error *err);

/* op-migrate.c */
int op_migrate(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
               struct svemig_error *err);

/* op-libvirt.c */
int op_libvirt_hook(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                    struct svemig_error *err);
int op_libvirt_list(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                    struct svemig_error *err);
