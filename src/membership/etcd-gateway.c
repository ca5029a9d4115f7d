/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * etcd's v3 JSON gateway with libcurl. Each conn runs its transfers on a
 * multi handle of its own and polls it, so that etcd_conn_cancel() (a
 * curl_multi_wakeup()) ends any call, stream or wait at once.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "macro.h"
#include "membership/etcd-gateway.h"

#define ANSWER_MAX (512u << 20) /* a range of every host's record stays far below */

struct etcd_gateway {
        char **endpoints;
        size_t n_endpoints;
        atomic_size_t current; /* the endpoint every conn tries first */
        char *cacert, *cert, *key, *user, *password;
        unsigned timeout_ms;

        pthread_mutex_t lock; /* guards the token */
        char *token;          /* from /v3/auth/authenticate; NULL without a user */
};

struct etcd_conn {
        struct etcd_gateway *g;
        CURLM *multi;
        atomic_bool cancelled;
        size_t endpoint;     /* the index last used, for messages */
        unsigned timeout_ms; /* 0: the gateway's */
};

/* One transfer's answer: buffered, or handed out object by object (a stream). */
struct xfer {
        CURL *easy;
        char *buf;
        size_t len, cap;
        bool too_big;
        json_tokener *tok; /* streams only */
        int (*on_message)(struct json_object *msg, void *userdata, struct svemig_error *err);
        void *userdata;
        int stopped; /* on_message's non-zero result */
        struct svemig_error *err;
};

static char *dup_or_null(const char *s)
{
        return s ? strdup(s) : NULL;
}

void etcd_gateway_free(struct etcd_gateway *g)
{
        if (!g)
                return;
        for (size_t i = 0; i < g->n_endpoints; i++)
                free(g->endpoints[i]);
        free(g->endpoints);
        free(g->cacert);
        free(g->cert);
        free(g->key);
        free(g->user);
        free(g->password);
        free(g->token);
        pthread_mutex_destroy(&g->lock);
        free(g);
}

int etcd_gateway_new(const struct membership_etcd_params *p, unsigned timeout_ms, struct etcd_gateway **out,
                     struct svemig_error *err)
{
        struct etcd_gateway *g;
        CURLcode cr;

        /* Once per process, before any thread of ours uses curl. */
        cr = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (cr != CURLE_OK)
                return svemig_error_set(err, EIO, "cannot set up libcurl: %s", curl_easy_strerror(cr));
        g = calloc(1, sizeof(*g));
        if (!g)
                return svemig_error_set(err, ENOMEM, "out of memory");
        pthread_mutex_init(&g->lock, NULL);
        g->timeout_ms = timeout_ms;
        g->endpoints = calloc(p->n_endpoints, sizeof(*g->endpoints));
        if (!g->endpoints)
                goto nomem;
        for (size_t i = 0; i < p->n_endpoints; i++) {
                const char *e = p->endpoints[i];
                size_t n = strlen(e);

                if (strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0) {
                        etcd_gateway_free(g);
                        return svemig_error_set(
                                err, EINVAL,
                                "etcd endpoint %s: expected http://HOST:PORT or https://HOST:PORT", e);
                }
                /* Paths are appended: no trailing slash. */
                while (n > 0 && e[n - 1] == '/')
                        n--;
                g->endpoints[i] = strndup(e, n);
                if (!g->endpoints[i])
                        goto nomem;
                g->n_endpoints++;
        }
        g->cacert = dup_or_null(p->cacert);
        g->cert = dup_or_null(p->cert);
        g->key = dup_or_null(p->key);
        g->user = dup_or_null(p->user);
        g->password = dup_or_null(p->password ? p->password : (p->user ? "" : NULL));
        if ((p->cacert && !g->cacert) || (p->cert && !g->cert) || (p->key && !g->key) ||
            (p->user && !g->user) || (p->user && !g->password))
                goto nomem;
        *out = g;
        return 0;
nomem:
        etcd_gateway_free(g);
        return svemig_error_set(err, ENOMEM, "out of memory");
}

int etcd_conn_new(struct etcd_gateway *g, struct etcd_conn **out, struct svemig_error *err)
{
        struct etcd_conn *c = calloc(1, sizeof(*c));

        if (!c)
                return svemig_error_set(err, ENOMEM, "out of memory");
        c->g = g;
        c->multi = curl_multi_init();
        if (!c->multi) {
                free(c);
                return svemig_error_set(err, ENOMEM, "cannot set up libcurl");
        }
        *out = c;
        return 0;
}

void etcd_conn_free(struct etcd_conn *c)
{
        if (!c)
                return;
        curl_multi_cleanup(c->multi);
        free(c);
}

void etcd_conn_cancel(struct etcd_conn *c)
{
        atomic_store(&c->cancelled, true);
        curl_multi_wakeup(c->multi);
}

void etcd_conn_set_timeout(struct etcd_conn *c, unsigned ms)
{
        c->timeout_ms = ms;
}

int etcd_conn_wait(struct etcd_conn *c, unsigned ms)
{
        uint64_t end = now_ns(CLOCK_MONOTONIC) + (uint64_t)ms * NSEC_PER_MSEC;

        for (;;) {
                uint64_t now = now_ns(CLOCK_MONOTONIC);

                if (atomic_load(&c->cancelled))
                        return -ECANCELED;
                if (now >= end)
                        return 0;
                curl_multi_poll(c->multi, NULL, 0, (int)((end - now) / NSEC_PER_MSEC) + 1, NULL);
        }
}

const char *etcd_conn_endpoint(const struct etcd_conn *c)
{
        return c->g->endpoints[c->endpoint];
}

/* Feeds a stream's bytes to the tokener, one complete JSON object at a time. */
static int stream_feed(struct xfer *x, const char *p, size_t n)
{
        while (n > 0 && !x->stopped) {
                struct json_object *o = json_tokener_parse_ex(x->tok, p, (int)MIN(n, (size_t)INT32_MAX));
                enum json_tokener_error e = json_tokener_get_error(x->tok);
                size_t used = json_tokener_get_parse_end(x->tok);

                if (!o && e == json_tokener_continue)
                        return 0;
                if (!o) {
                        x->stopped = svemig_error_set(x->err, EPROTO, "etcd streamed something not JSON: %s",
                                                      json_tokener_error_desc(e));
                        return -1;
                }
                json_tokener_reset(x->tok);
                x->stopped = x->on_message(o, x->userdata, x->err);
                json_object_put(o);
                if (used == 0)
                        used = n;
                p += used;
                n -= used;
        }
        return x->stopped ? -1 : 0;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *userdata)
{
        struct xfer *x = userdata;
        size_t n = size * nmemb;
        long code = 0;

        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
        if (x->tok && code == 200)
                return stream_feed(x, p, n) < 0 ? 0 : n;
        if (x->len + n + 1 > x->cap) {
                size_t cap = MAX(x->cap * 2, x->len + n + 1 + 4096);
                char *b;

                if (cap > ANSWER_MAX) {
                        x->too_big = true;
                        return 0;
                }
                b = realloc(x->buf, cap);
                if (!b)
                        return 0;
                x->buf = b;
                x->cap = cap;
        }
        memcpy(x->buf + x->len, p, n);
        x->len += n;
        x->buf[x->len] = '\0';
        return n;
}

/* Runs one transfer on the conn's multi handle. */
static CURLcode run(struct etcd_conn *c, CURL *easy)
{
        CURLcode result = CURLE_ABORTED_BY_CALLBACK;
        CURLMsg *msg;
        int running = 1, left;

        curl_multi_add_handle(c->multi, easy);
        while (running && !atomic_load(&c->cancelled)) {
                if (curl_multi_perform(c->multi, &running) != CURLM_OK)
                        break;
                if (running)
                        curl_multi_poll(c->multi, NULL, 0, 1000, NULL);
        }
        while ((msg = curl_multi_info_read(c->multi, &left)))
                if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy)
                        result = msg->data.result;
        curl_multi_remove_handle(c->multi, easy);
        return result;
}

static void set_tls_and_auth(struct etcd_gateway *g, CURL *easy, struct curl_slist **headers)
{
        if (g->cacert)
                curl_easy_setopt(easy, CURLOPT_CAINFO, g->cacert);
        if (g->cert) {
                curl_easy_setopt(easy, CURLOPT_SSLCERT, g->cert);
                curl_easy_setopt(easy, CURLOPT_SSLKEY, g->key);
        }
        pthread_mutex_lock(&g->lock);
        if (g->token) {
                char h[1024];

                snprintf(h, sizeof(h), "Authorization: %s", g->token);
                *headers = curl_slist_append(*headers, h);
        }
        pthread_mutex_unlock(&g->lock);
}

/* The message of an error answer: {"error": ..., "message": ..., "code": N}. */
static void error_message(const char *body, char *buf, size_t len, int *grpc_code)
{
        _cleanup_(json_object_putp) struct json_object *o = body ? json_tokener_parse(body) : NULL;
        struct json_object *m = NULL, *c = NULL;

        *grpc_code = 0;
        if (o && json_object_object_get_ex(o, "code", &c))
                *grpc_code = json_object_get_int(c);
        if (o &&
            (json_object_object_get_ex(o, "message", &m) || json_object_object_get_ex(o, "error", &m)) &&
            json_object_is_type(m, json_type_string))
                snprintf(buf, len, "%s", json_object_get_string(m));
        else
                snprintf(buf, len, "%.200s", body && body[0] ? body : "(no message)");
}

enum attempt {
        ATTEMPT_DONE, /* an answer, good or bad: the result is final */
        ATTEMPT_NEXT, /* the endpoint could not serve it: try the next */
        ATTEMPT_AUTH, /* the token expired: authenticate and try again */
};

static enum attempt attempt(struct etcd_conn *c, size_t ep, const char *path, const char *body, bool stream,
                            struct xfer *x, int *ret, struct svemig_error *err)
{
        struct etcd_gateway *g = c->g;
        struct curl_slist *headers = NULL;
        char url[1024], msg[512];
        CURLcode cr;
        long code = 0;
        int grpc = 0;
        unsigned timeout_ms = c->timeout_ms ? c->timeout_ms : g->timeout_ms;
        CURL *easy;

        easy = curl_easy_init();
        if (!easy) {
                *ret = svemig_error_set(err, ENOMEM, "cannot set up libcurl");
                return ATTEMPT_DONE;
        }
        x->easy = easy;
        x->len = 0;
        snprintf(url, sizeof(url), "%s%s", g->endpoints[ep], path);
        headers = curl_slist_append(headers, "Content-Type: application/json");
        /*
         * gRPC metadata through the gateway: a member cut off from its leader
         * refuses, and ends its watches, rather than serve what it last knew.
         */
        headers = curl_slist_append(headers, "Grpc-Metadata-hasleader: true");
        set_tls_and_auth(g, easy, &headers);
        curl_easy_setopt(easy, CURLOPT_URL, url);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
        if (!stream)
                curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
        cr = run(c, easy);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(easy);
        curl_slist_free_all(headers);
        x->easy = NULL;

        if (atomic_load(&c->cancelled)) {
                *ret = svemig_error_set(err, ECANCELED, "stopping");
                return ATTEMPT_DONE;
        }
        if (x->stopped) {
                *ret = x->stopped;
                return ATTEMPT_DONE;
        }
        if (cr == CURLE_OPERATION_TIMEDOUT) {
                *ret = svemig_error_set(err, ETIMEDOUT, "etcd at %s did not answer %s within %u ms",
                                        g->endpoints[ep], path, timeout_ms);
                return ATTEMPT_NEXT;
        }
        if (x->too_big) {
                *ret = svemig_error_set(err, EFBIG, "etcd's answer to %s passed %u MiB", path,
                                        ANSWER_MAX >> 20);
                return ATTEMPT_DONE;
        }
        if (cr != CURLE_OK) {
                *ret = svemig_error_set(err, ECONNREFUSED, "cannot reach etcd at %s: %s", g->endpoints[ep],
                                        curl_easy_strerror(cr));
                return ATTEMPT_NEXT;
        }
        if (code == 200 && stream) {
                *ret = svemig_error_set(err, ECONNRESET, "etcd at %s ended the stream", g->endpoints[ep]);
                return ATTEMPT_DONE;
        }
        if (code == 200) {
                *ret = 0;
                return ATTEMPT_DONE;
        }
        error_message(x->buf, msg, sizeof(msg), &grpc);
        /* gRPC 16: unauthenticated (the token expired); 14: unavailable, as with no leader. */
        if (grpc == 16 && g->user && strstr(path, "/auth/") == NULL) {
                *ret = svemig_error_set(err, EPERM, "etcd at %s: %s", g->endpoints[ep], msg);
                return ATTEMPT_AUTH;
        }
        *ret = svemig_error_set(err, grpc == 16 || code == 401 ? EPERM : EIO,
                                "etcd at %s answered %s with %ld: %s", g->endpoints[ep], path, code, msg);
        return code >= 500 || grpc == 14 ? ATTEMPT_NEXT : ATTEMPT_DONE;
}

static int authenticate(struct etcd_conn *c, struct svemig_error *err);

/* Tries each endpoint in turn, from the one that last worked. */
static int post(struct etcd_conn *c, const char *path, struct json_object *body, bool stream, struct xfer *x,
                struct svemig_error *err)
{
        struct etcd_gateway *g = c->g;
        const char *text = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);
        bool authed = false;
        int r = -EIO;

        if (!text)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t k = 0; k < g->n_endpoints; k++) {
                size_t ep = atomic_load(&g->current) % g->n_endpoints;

                c->endpoint = ep;
                switch (attempt(c, ep, path, text, stream, x, &r, err)) {
                case ATTEMPT_DONE:
                        return r;
                case ATTEMPT_AUTH:
                        if (authed)
                                return r;
                        authed = true;
                        r = authenticate(c, err);
                        if (r < 0)
                                return r;
                        k--;
                        continue;
                case ATTEMPT_NEXT:
                        /* Only the first conn to see this endpoint fail moves everybody on. */
                        atomic_compare_exchange_strong(&g->current, &ep, ep + 1);
                        break;
                }
        }
        return r;
}

static int authenticate(struct etcd_conn *c, struct svemig_error *err)
{
        struct etcd_gateway *g = c->g;
        _cleanup_(json_object_putp) struct json_object *body = json_object_new_object();
        _cleanup_(json_object_putp) struct json_object *answer = NULL;
        struct json_object *t;
        int r;

        if (!body)
                return svemig_error_set(err, ENOMEM, "out of memory");
        json_object_object_add(body, "name", json_object_new_string(g->user));
        json_object_object_add(body, "password", json_object_new_string(g->password));
        r = etcd_call(c, "/v3/auth/authenticate", json_object_get(body), &answer, err);
        if (r < 0)
                return svemig_error_prefix(err, "etcd refused user %s", g->user);
        if (!json_object_object_get_ex(answer, "token", &t) || !json_object_is_type(t, json_type_string))
                return svemig_error_set(err, EPROTO, "etcd's authentication answer holds no token");
        pthread_mutex_lock(&g->lock);
        free(g->token);
        g->token = strdup(json_object_get_string(t));
        pthread_mutex_unlock(&g->lock);
        return 0;
}

static int ensure_token(struct etcd_conn *c, const char *path, struct svemig_error *err)
{
        bool have;

        if (!c->g->user || strstr(path, "/auth/"))
                return 0;
        pthread_mutex_lock(&c->g->lock);
        have = c->g->token != NULL;
        pthread_mutex_unlock(&c->g->lock);
        return have ? 0 : authenticate(c, err);
}

int etcd_call(struct etcd_conn *c, const char *path, struct json_object *body, struct json_object **answer,
              struct svemig_error *err)
{
        _cleanup_(json_object_putp) struct json_object *b = body;
        struct xfer x = {.err = err};
        int r;

        *answer = NULL;
        if (!b)
                return svemig_error_set(err, ENOMEM, "out of memory");
        r = ensure_token(c, path, err);
        if (r == 0)
                r = post(c, path, b, false, &x, err);
        if (r == 0) {
                *answer = x.buf ? json_tokener_parse(x.buf) : NULL;
                if (!*answer)
                        r = svemig_error_set(err, EPROTO, "etcd at %s answered %s with something not JSON",
                                             etcd_conn_endpoint(c), path);
        }
        free(x.buf);
        return r;
}

int etcd_stream(struct etcd_conn *c, const char *path, struct json_object *body,
                int (*on_message)(struct json_object *msg, void *userdata, struct svemig_error *err),
                void *userdata, struct svemig_error *err)
{
        _cleanup_(json_object_putp) struct json_object *b = body;
        struct xfer x = {.err = err, .on_message = on_message, .userdata = userdata};
        int r;

        if (!b)
                return svemig_error_set(err, ENOMEM, "out of memory");
        x.tok = json_tokener_new();
        if (!x.tok)
                return svemig_error_set(err, ENOMEM, "out of memory");
        r = ensure_token(c, path, err);
        if (r == 0)
                r = post(c, path, b, true, &x, err);
        json_tokener_free(x.tok);
        free(x.buf);
        return r;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

struct json_object *etcd_b64(const void *data, size_t n)
{
        const uint8_t *p = data;
        size_t len = (n + 2) / 3 * 4, o = 0;
        _cleanup_free_ char *s = malloc(len + 1);

        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                             (i + 2 < n ? p[i + 2] : 0);

                s[o++] = B64[v >> 18 & 63];
                s[o++] = B64[v >> 12 & 63];
                s[o++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
                s[o++] = i + 2 < n ? B64[v & 63] : '=';
        }
        s[o] = '\0';
        return json_object_new_string_len(s, (int)o);
}

static int b64_value(char ch)
{
        const char *p = ch ? strchr(B64, ch) : NULL;

        return p ? (int)(p - B64) : -1;
}

int etcd_unb64(const char *s, uint8_t **out, size_t *n)
{
        size_t len = s ? strlen(s) : 0, o = 0;
        uint32_t acc = 0;
        unsigned bits = 0;
        uint8_t *b;

        b = malloc(len / 4 * 3 + 4);
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                int v;

                if (s[i] == '=')
                        break;
                v = b64_value(s[i]);
                if (v < 0) {
                        free(b);
                        return -EINVAL;
                }
                acc = acc << 6 | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        b[o++] = (uint8_t)(acc >> bits);
                }
        }
        b[o] = 0;
        *out = b;
        *n = o;
        return 0;
}

uint64_t etcd_u64(struct json_object *o, const char *key)
{
        struct json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v))
                return 0;
        if (json_object_is_type(v, json_type_string))
                return strtoull(json_object_get_string(v), NULL, 10);
        return (uint64_t)json_object_get_int64(v);
}

int etcd_prefix_end(const char *prefix, char *buf, size_t len)
{
        size_t n = strlen(prefix);

        if (n == 0 || n >= len)
                return -EINVAL;
        memcpy(buf, prefix, n + 1);
        /* The key just past every key that starts with prefix: its last byte, plus one. */
        while (n > 0 && (uint8_t)buf[n - 1] == 0xff)
                buf[--n] = '\0';
        if (n == 0)
                return -EINVAL;
        buf[n - 1] = (char)((uint8_t)buf[n - 1] + 1);
        return 0;
}
