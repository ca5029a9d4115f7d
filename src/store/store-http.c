/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Plain HTTP(S) servers that take PUT, MOVE and DELETE (WebDAV, as nginx's
 * dav module): an upload streams into a temporary name beside the target
 * (chunked, as its length is not known ahead) and is moved onto the
 * target's name only when whole; on failure the temporary one is deleted.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "macro.h"
#include "store-curl.h"

static int http_check(const struct store_ctx *c, const char *location, struct svemig_error *err)
{
        const char *host = strstr(location, "://") + 3, *path = strchr(host, '/');

        (void)c;
        if (path == host || !host[0])
                return svemig_error_set(err, EINVAL, "%s: no host in the URL", location);
        if (!path || !path[1] || location[strlen(location) - 1] == '/')
                return svemig_error_set(err, EINVAL, "%s: name the object, not a directory", location);
        if (strpbrk(location, " \t\r\n?#"))
                return svemig_error_set(err, EINVAL,
                                        "%s: a checkpoint URL takes no spaces, query or fragment", location);
        return 0;
}

static int simple(const struct store_ctx *c, const char *method, const char *url, struct curl_slist *headers,
                  struct svemig_error *err)
{
        struct curl_req q = {.method = method, .url = url, .headers = headers};
        int r = store_curl_do(c, &q, err);

        store_curl_req_done(&q);
        return r;
}

static int http_put(const struct store_ctx *c, const char *location, struct store_source *src,
                    struct svemig_error *err)
{
        _cleanup_free_ char *tmp = NULL, *dest = NULL;
        struct curl_slist *move = NULL;
        struct curl_req q = {.method = "PUT", .src = src};
        uint64_t rnd = 0;
        int r;

        (void)!getrandom(&rnd, sizeof(rnd), 0);
        if (asprintf(&tmp, "%s.part-%016" PRIx64, location, rnd) < 0 ||
            asprintf(&dest, "Destination: %s", location) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        q.url = tmp;
        r = store_curl_do(c, &q, err);
        store_curl_req_done(&q);
        if (r == 0) {
                move = curl_slist_append(move, dest);
                move = curl_slist_append(move, "Overwrite: T");
                r = simple(c, "MOVE", tmp, move, err);
                curl_slist_free_all(move);
                if (r == -EOPNOTSUPP)
                        svemig_error_prefix(
                                err, "the server must allow MOVE (nginx: dav_methods PUT DELETE MOVE)");
        }
        if (r < 0) {
                /* Whatever the reason, try to leave nothing behind; the first reason is the one told. */
                struct svemig_error ignored = {0};
                atomic_bool never = false;
                struct store_ctx cleanup = *c;

                cleanup.cancel = &never;
                cleanup.conf.retries = 1;
                (void)simple(&cleanup, "DELETE", tmp, NULL, &ignored);
        }
        return r;
}

static int http_get(const struct store_ctx *c, const char *location, uint64_t offset, uint64_t length,
                    struct store_sink *sink, struct svemig_error *err)
{
        struct curl_req q = {
                .method = "GET",
                .url = location,
                .sink = sink,
                .range = offset > 0 || length > 0,
                .range_off = offset,
                .range_len = length,
        };
        int r = store_curl_do(c, &q, err);

        store_curl_req_done(&q);
        return r;
}

static int http_remove(const struct store_ctx *c, const char *location, struct svemig_error *err)
{
        return simple(c, "DELETE", location, NULL, err);
}

const struct store_ops store_http_ops = {
        .scheme = "http",
        .check = http_check,
        .put = http_put,
        .get = http_get,
        .remove = http_remove,
        .list = NULL,
};
