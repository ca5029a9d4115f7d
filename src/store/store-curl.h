/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * One HTTP request through libcurl, as the HTTP and S3 stores make them:
 * retried with backoff on timeouts, resets and 5xx (a download resumes
 * where it broke, pinned to the object's ETag; a streamed upload only
 * while none of it was sent), a stalled transfer failed, a cancel obeyed,
 * and any other answer turned into a sentence naming the method, the URL,
 * the status and the server's own error code and message.
 */

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store-backend.h"

struct curl_req {
        const char *method; /* "GET", "PUT", "POST", "DELETE", "MOVE", "HEAD" */
        const char *url;
        struct curl_slist *headers; /* the caller's */
        const char *sigv4;          /* CURLOPT_AWS_SIGV4's provider string, or NULL */
        const char *userpwd;        /* with sigv4: "KEY:SECRET" */
        /* The body, if any: bytes in memory (retried freely), or a streamed source. */
        const void *body;
        size_t body_len;
        struct store_source *src;
        /* A 2xx body goes to sink when given, else it is kept in resp. */
        struct store_sink *sink;
        bool range;
        uint64_t range_off, range_len; /* range_len 0: to the end */
        /* Out. */
        long status;
        char etag[256];
        char *resp; /* NUL-terminated, capped */
        size_t resp_len;
};

int store_curl_do(const struct store_ctx *c, struct curl_req *q, struct svemig_error *err);
void store_curl_req_done(struct curl_req *q);

/* Percent-encodes s (RFC 3986's unreserved kept; '/' too when keep_slash). Free the result. */
char *store_curl_escape(const char *s, bool keep_slash);

/* The text of the first <tag>...</tag> in xml, or NULL. Free the result. */
char *store_curl_xml_tag(const char *xml, const char *tag, const char **after);
