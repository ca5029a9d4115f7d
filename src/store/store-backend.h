/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What store.c asks of each store (file, HTTP, S3). store.c owns the fds
 * and the threads; a backend moves bytes between a location and a source
 * or a sink on the calling thread, and never makes a half object visible.
 */

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "svemig/store.h"

/* The configuration with every default applied. */
struct store_ctx {
        struct store_conf conf;
        atomic_bool *cancel; /* set: stop now, clean up, return -ECANCELED */
};

/* The object's bytes, read from the writer's pipe until EOF. */
struct store_source {
        int fd;
        atomic_bool *cancel;
        uint64_t consumed;
};

/* Reads up to n bytes; fewer only at EOF. -ECANCELED once the writer aborted. */
static inline int store_source_read(struct store_source *s, void *buf, size_t n, size_t *got)
{
        *got = 0;
        while (*got < n) {
                ssize_t k = read(s->fd, (char *)buf + *got, n - *got);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                *got += (size_t)k;
        }
        s->consumed += *got;
        /* An abort closes the pipe too: its EOF is no end of data. */
        if (atomic_load(s->cancel))
                return -ECANCELED;
        return 0;
}

/* Where a download goes: the reader's pipe. */
struct store_sink {
        int fd;
        uint64_t delivered;
        bool closed; /* the reader closed its end: not an error, the transfer just stops */
};

/* Writes all of buf; -EPIPE once the reader has gone. */
static inline int store_sink_write(struct store_sink *s, const void *buf, size_t n)
{
        size_t done = 0;

        while (done < n) {
                ssize_t k = write(s->fd, (const char *)buf + done, n - done);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        if (errno == EPIPE)
                                s->closed = true;
                        return -errno;
                }
                done += (size_t)k;
        }
        s->delivered += n;
        return 0;
}

struct store_ops {
        const char *scheme; /* "file", "http", "s3" */
        int (*check)(const struct store_ctx *c, const char *location, struct svemig_error *err);
        /* Uploads src to location whole, or leaves nothing (also on -ECANCELED). */
        int (*put)(const struct store_ctx *c, const char *location, struct store_source *src,
                   struct svemig_error *err);
        /* Downloads [offset, offset+length) (length 0: to the end) into sink. */
        int (*get)(const struct store_ctx *c, const char *location, uint64_t offset, uint64_t length,
                   struct store_sink *sink, struct svemig_error *err);
        int (*remove)(const struct store_ctx *c, const char *location, struct svemig_error *err);
        int (*list)(const struct store_ctx *c, const char *prefix, store_list_fn fn, void *userdata,
                    struct svemig_error *err);
};

extern const struct store_ops store_file_ops;
extern const struct store_ops store_http_ops;
extern const struct store_ops store_s3_ops;
