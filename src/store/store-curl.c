/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * HTTP requests for the remote stores (store-curl.h). The stall check is
 * ours, not CURLOPT_LOW_SPEED_*: time a streamed upload spends waiting for
 * the snapshot to produce bytes is no stall of the link.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "macro.h"
#include "store-curl.h"

#define RESP_MAX       (1u << 20) /* an error or XML answer kept; past it, cut */
#define BACKOFF_MIN_MS 200u
#define BACKOFF_MAX_MS 5000u

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct attempt {
        const struct store_ctx *c;
        struct curl_req *q;
        CURL *h;
        uint64_t from; /* where the body we asked for starts */
        uint64_t skip; /* bytes of a 200 answer to drop: the server ignored our Range */
        bool body_started;
        uint64_t last_bytes;    /* up+down at the last progress */
        uint64_t last_progress; /* ns */
        uint64_t starved;       /* ns spent waiting for the source since then */
        bool stalled, cancelled, sink_failed;
};

static uint64_t mono_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool ok_status(long s)
{
        return s >= 200 && s < 300;
}

static void keep_resp(struct curl_req *q, const char *data, size_t n)
{
        char *p;

        if (q->resp_len >= RESP_MAX)
                return;
        if (n > RESP_MAX - q->resp_len)
                n = RESP_MAX - q->resp_len;
        p = realloc(q->resp, q->resp_len + n + 1);
        if (!p)
                return;
        memcpy(p + q->resp_len, data, n);
        q->resp = p;
        q->resp_len += n;
        q->resp[q->resp_len] = '\0';
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
        struct attempt *a = userdata;
        size_t n = size * nmemb, skip;
        long status = 0;

        curl_easy_getinfo(a->h, CURLINFO_RESPONSE_CODE, &status);
        if (!ok_status(status) || !a->q->sink) {
                keep_resp(a->q, data, n);
                return n;
        }
        if (!a->body_started) {
                a->body_started = true;
                a->skip = status == 200 ? a->from : 0;
        }
        skip = a->skip < n ? (size_t)a->skip : n;
        a->skip -= skip;
        if (n > skip && store_sink_write(a->q->sink, data + skip, n - skip) < 0) {
                a->sink_failed = true;
                return CURL_WRITEFUNC_ERROR;
        }
        return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
        struct attempt *a = userdata;
        size_t n = size * nmemb;

        if (n > 5 && strncasecmp(data, "ETag:", 5) == 0) {
                const char *v = data + 5;
                size_t len = n - 5;

                while (len && (*v == ' ' || *v == '\t'))
                        v++, len--;
                while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
                        len--;
                snprintf(a->q->etag, sizeof(a->q->etag), "%.*s", (int)len, v);
        }
        return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
        struct attempt *a = userdata;
        uint64_t t0 = mono_ns();
        size_t got;
        int r;

        r = store_source_read(a->q->src, buf, size * nitems, &got);
        a->starved += mono_ns() - t0;
        if (r < 0) {
                a->cancelled = r == -ECANCELED;
                return CURL_READFUNC_ABORT;
        }
        return got;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
        struct attempt *a = userdata;
        uint64_t now = mono_ns(), bytes = (uint64_t)dlnow + (uint64_t)ulnow;

        (void)dltotal;
        (void)ultotal;
        if (atomic_load(a->c->cancel)) {
                a->cancelled = true;
                return 1;
        }
        if (bytes != a->last_bytes) {
                a->last_bytes = bytes;
                a->last_progress = now;
                a->starved = 0;
        } else if (now - a->last_progress > a->starved + a->c->conf.stall_s * 1000000000ull) {
                a->stalled = true;
                return 1;
        }
        return 0;
}

static int setup(struct attempt *a, struct curl_slist **extra)
{
        const struct store_ctx *c = a->c;
        struct curl_req *q = a->q;
        CURL *h = a->h;
        char range[64];

        curl_easy_setopt(h, CURLOPT_URL, q->url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)c->conf.connect_timeout_s);
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, a);
        if (c->conf.ca_file)
                curl_easy_setopt(h, CURLOPT_CAINFO, c->conf.ca_file);
        if (q->sigv4) {
                curl_easy_setopt(h, CURLOPT_AWS_SIGV4, q->sigv4);
                curl_easy_setopt(h, CURLOPT_USERPWD, q->userpwd);
        }
        if (strcmp(q->method, "GET") == 0) {
                curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        } else if (strcmp(q->method, "HEAD") == 0) {
                curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        } else if (strcmp(q->method, "PUT") == 0 && q->src) {
                curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
                curl_easy_setopt(h, CURLOPT_READDATA, a);
        } else if (q->body || strcmp(q->method, "POST") == 0 || strcmp(q->method, "PUT") == 0) {
                curl_easy_setopt(h, CURLOPT_POST, 1L);
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body ? q->body : "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
                if (strcmp(q->method, "POST") != 0)
                        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
                /*
                 * The body is in memory: no wait for a 100 Continue. But curl 7.88 signs
                 * an "Expect:" it then leaves out, so a signed request keeps the wait.
                 */
                if (!q->sigv4)
                        *extra = curl_slist_append(*extra, "Expect:");
        } else {
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
        }
        if (q->range) {
                uint64_t from = q->range_off + (q->sink ? q->sink->delivered : 0);

                a->from = from;

                if (q->range_len)
                        snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, from,
                                 q->range_off + q->range_len - 1);
                else
                        snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-", from);
                *extra = curl_slist_append(*extra, range);
        }
        for (struct curl_slist *l = q->headers; l; l = l->next)
                *extra = curl_slist_append(*extra, l->data);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, *extra);
        return 0;
}

static bool retryable_curl(CURLcode cc)
{
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR:
                return true;
        default:
                return false;
        }
}

static int status_errno(long s)
{
        switch (s) {
        case 401:
        case 403:
                return EACCES;
        case 404:
                return ENOENT;
        case 409:
                return EBUSY;
        case 412:
                return ESTALE;
        case 416:
                return ERANGE;
        case 405:
        case 501:
                return EOPNOTSUPP;
        default:
                return s >= 500 ? EIO : EPROTO;
        }
}

char *store_curl_xml_tag(const char *xml, const char *tag, const char **after)
{
        char open[64], close_[64];
        const char *s, *e;

        if (!xml)
                return NULL;
        snprintf(open, sizeof(open), "<%s>", tag);
        snprintf(close_, sizeof(close_), "</%s>", tag);
        s = strstr(xml, open);
        if (!s)
                return NULL;
        s += strlen(open);
        e = strstr(s, close_);
        if (!e)
                return NULL;
        if (after)
                *after = e + strlen(close_);
        return strndup(s, (size_t)(e - s));
}

/* The server's own account: S3's <Code> and <Message>, or the start of a text body. */
static void server_says(const struct curl_req *q, char *buf, size_t len)
{
        _cleanup_free_ char *code = store_curl_xml_tag(q->resp, "Code", NULL);
        _cleanup_free_ char *msg = store_curl_xml_tag(q->resp, "Message", NULL);

        buf[0] = '\0';
        if (code)
                snprintf(buf, len, ": %s%s%s", code, msg ? ": " : "", msg ? msg : "");
}

static void sleep_backoff(const struct store_ctx *c, unsigned attempt)
{
        uint64_t ms = BACKOFF_MIN_MS << (attempt < 5 ? attempt : 5);

        if (ms > BACKOFF_MAX_MS)
                ms = BACKOFF_MAX_MS;
        /* In pieces, so that a cancel is not kept waiting. */
        for (uint64_t slept = 0; slept < ms && !atomic_load(c->cancel); slept += 50) {
                struct timespec ts = {0, 50 * 1000000L};

                nanosleep(&ts, NULL);
        }
}

int store_curl_do(const struct store_ctx *c, struct curl_req *q, struct svemig_error *err)
{
        char errbuf[CURL_ERROR_SIZE];
        char said[512];
        unsigned tries;

        pthread_once(&curl_once, curl_init_once);
        for (tries = 0;; tries++) {
                struct attempt a = {.c = c, .q = q, .last_progress = mono_ns()};
                struct curl_slist *extra = NULL;
                bool retry = false;
                CURLcode cc;

                a.h = curl_easy_init();
                if (!a.h)
                        return svemig_error_set(err, ENOMEM, "%s %s: cannot start a transfer", q->method,
                                                q->url);
                errbuf[0] = '\0';
                curl_easy_setopt(a.h, CURLOPT_ERRORBUFFER, errbuf);
                free(q->resp);
                q->resp = NULL;
                q->resp_len = 0;
                q->status = 0;
                if (tries > 0 && q->sink && q->sink->delivered > 0) {
                        /* Resume from the same version of the object, or not at all. */
                        if (q->etag[0]) {
                                char h[300];

                                snprintf(h, sizeof(h), "If-Match: %s", q->etag);
                                extra = curl_slist_append(extra, h);
                        }
                        q->range = true;
                }
                setup(&a, &extra);
                cc = curl_easy_perform(a.h);
                curl_easy_getinfo(a.h, CURLINFO_RESPONSE_CODE, &q->status);
                curl_easy_cleanup(a.h);
                curl_slist_free_all(extra);

                if (a.cancelled || atomic_load(c->cancel))
                        return svemig_error_set(err, ECANCELED, "%s %s: cancelled", q->method, q->url);
                if (a.sink_failed && q->sink->closed)
                        return 0; /* the reader has what it wanted */
                if (a.sink_failed)
                        return svemig_error_set(err, EIO, "%s %s: cannot pass the data on: %m", q->method,
                                                q->url);
                if (cc == CURLE_OK && ok_status(q->status))
                        return 0;

                if (a.stalled || (cc != CURLE_OK && retryable_curl(cc)) ||
                    (cc == CURLE_OK && (q->status >= 500 || q->status == 429)))
                        retry = !(q->src && q->src->consumed > 0) && tries < c->conf.retries;
                if (retry) {
                        sleep_backoff(c, tries);
                        continue;
                }
                if (a.stalled)
                        return svemig_error_set(
                                err, ETIMEDOUT, "%s %s: the transfer stalled (no byte for %u s), %u %s",
                                q->method, q->url, c->conf.stall_s, tries + 1, tries ? "tries" : "try");
                if (cc != CURLE_OK)
                        return svemig_error_set(err,
                                                cc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT
                                                : cc == CURLE_COULDNT_CONNECT  ? ECONNREFUSED
                                                                               : EIO,
                                                "%s %s: %s%s%s (%u %s)", q->method, q->url,
                                                curl_easy_strerror(cc), errbuf[0] ? ": " : "", errbuf,
                                                tries + 1, tries ? "tries" : "try");
                server_says(q, said, sizeof(said));
                return svemig_error_set(err, status_errno(q->status),
                                        "%s %s: the server answered HTTP %ld%s%s", q->method, q->url,
                                        q->status, said, tries ? " (after retries)" : "");
        }
}

void store_curl_req_done(struct curl_req *q)
{
        free(q->resp);
        q->resp = NULL;
        q->resp_len = 0;
}

char *store_curl_escape(const char *s, bool keep_slash)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *out = malloc(3 * n + 1), *p = out;

        if (!out)
                return NULL;
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;

                if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                    ch == '-' || ch == '_' || ch == '.' || ch == '~' || (keep_slash && ch == '/')) {
                        *p++ = (char)ch;
                } else {
                        *p++ = '%';
                        *p++ = hex[ch >> 4];
                        *p++ = hex[ch & 15];
                }
        }
        *p = '\0';
        return out;
}
