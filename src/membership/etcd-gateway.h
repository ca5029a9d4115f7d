/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * etcd's v3 JSON gateway over HTTP(S) with libcurl: one POST of a JSON body
 * and its JSON answer, or a stream of answers (a watch). Keys and values
 * travel in base64; 64-bit numbers come as strings; fields at their
 * default value are left out.
 *
 * A gateway holds the endpoints, TLS and authentication; each thread that
 * talks to etcd holds an etcd_conn of its own, whose waits
 * etcd_conn_cancel() cuts short from any thread. A call that cannot reach
 * an endpoint, or whose member has no leader, tries the next one.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "svemig/error.h"
#include "svemig/membership.h"

struct etcd_gateway;
struct etcd_conn;

DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_object *, json_object_put);

int etcd_gateway_new(const struct membership_etcd_params *p, unsigned timeout_ms, struct etcd_gateway **out,
                     struct svemig_error *err);
void etcd_gateway_free(struct etcd_gateway *g);

int etcd_conn_new(struct etcd_gateway *g, struct etcd_conn **out, struct svemig_error *err);
void etcd_conn_free(struct etcd_conn *c);
/* From any thread: the conn's call or wait in progress, and every later one, returns -ECANCELED. */
void etcd_conn_cancel(struct etcd_conn *c);
/* The longest wait for a call's answer on this conn (0: the gateway's). */
void etcd_conn_set_timeout(struct etcd_conn *c, unsigned ms);
/* Waits ms, or less when cancelled: -ECANCELED then, else 0. */
int etcd_conn_wait(struct etcd_conn *c, unsigned ms);

/*
 * POSTs body (consumed) to path ("/v3/kv/put") and parses the answer into
 * *answer. An error answer from etcd gives -EIO (-EPERM for authentication)
 * with its message; no answer within the timeout gives -ETIMEDOUT.
 */
int etcd_call(struct etcd_conn *c, const char *path, struct json_object *body, struct json_object **answer,
              struct svemig_error *err);

/*
 * POSTs body (consumed) to path and hands each JSON object of the streamed
 * answer to on_message(), until it returns non-zero (returned), the stream
 * ends or fails (negative errno with the reason), or the conn is cancelled.
 * on_open() runs once the endpoint answered with 200.
 */
int etcd_stream(struct etcd_conn *c, const char *path, struct json_object *body,
                int (*on_message)(struct json_object *msg, void *userdata, struct svemig_error *err),
                void *userdata, struct svemig_error *err);

/* The endpoint the conn talks to now, for messages. */
const char *etcd_conn_endpoint(const struct etcd_conn *c);

/* base64 of n bytes, as a new JSON string. */
struct json_object *etcd_b64(const void *data, size_t n);
/* Decodes a base64 string; *out is NUL-terminated for convenience. -EINVAL when not base64. */
int etcd_unb64(const char *s, uint8_t **out, size_t *n);

/* A 64-bit number as the gateway sends it: a string, or missing (0). */
uint64_t etcd_u64(struct json_object *o, const char *key);
/* The range end that covers every key starting with prefix. */
int etcd_prefix_end(const char *prefix, char *buf, size_t len);
