/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Checkpoint stores: where a stream goes and comes from. A location is a
 * local path, an http:// or https:// URL (a WebDAV-like server that takes
 * PUT, MOVE and DELETE, such as nginx's dav module), or s3://BUCKET/KEY (an
 * S3 endpoint named in the configuration, signed with SigV4).
 *
 * Both directions are streams on an fd, as the stream writer and reader
 * want them (include/svemig/stream.h):
 *
 *   - A writer hands out an fd to write the object's bytes to; they go up
 *     while they are written, with bounded memory. The object appears only
 *     at store_writer_commit(), whole; store_writer_abort() (or any failure)
 *     leaves nothing visible. If the upload fails first, the fd's reader is
 *     closed: the caller's writes get EPIPE, so it must ignore SIGPIPE.
 *   - A reader hands out an fd to read a byte range of the object from. A
 *     reader that stops early just closes: the transfer ends there. When the
 *     fd ends short or a read fails, store_reader_close() tells the
 *     transfer's own reason (the URL and the server's answer).
 *
 * Transfers retry with backoff on timeouts, connection resets and 5xx
 * answers (a download resumes where it broke, from the same version of the
 * object); any other answer fails at once with the URL, the HTTP status and
 * the server's error code and message.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"

struct store_conf {
        const char *s3_endpoint;      /* "http(s)://HOST[:PORT]", path-style; needed for s3:// */
        const char *s3_region;        /* NULL: "us-east-1" */
        const char *credentials_file; /* AWS shared-credentials form, read after the environment */
        const char *profile;          /* NULL: $AWS_PROFILE, else "default" */
        const char *ca_file;          /* PEM bundle trusted for https, besides the system's */
        size_t part_size;             /* S3 multipart part bytes; 0: 8 MiB (AWS takes 5 MiB at least) */
        unsigned parallel;            /* S3 parts in flight at once; 0: 4 */
        unsigned retries;             /* further tries of a transfer that may be retried; 0: 5 */
        unsigned stall_s;             /* a transfer moving no byte this long has failed; 0: 30 */
        unsigned connect_timeout_s;   /* 0: 10 */
};

#define STORE_PART_SIZE_DEFAULT (8u << 20)
#define STORE_PART_SIZE_MIN     (64u << 10) /* AWS's smallest is 5 MiB; servers may take less */
#define STORE_PART_SIZE_MAX     (1u << 30)
#define STORE_PARALLEL_MAX      32u

/* Whether location is a URL (http://, https://, s3://) rather than a local path. */
bool store_is_remote(const char *location);

/* Whether location is well formed for its store, with the reason if not. */
int store_check_location(const char *location, const struct store_conf *conf, struct svemig_error *err);

struct store_writer;

int store_writer_open(const char *location, const struct store_conf *conf, struct store_writer **out,
                      struct svemig_error *err);
int store_writer_fd(const struct store_writer *w);
/* Ends the data, waits for the upload and makes the object visible. Frees w either way. */
int store_writer_commit(struct store_writer *w, struct svemig_error *err);
/*
 * Cancels: nothing is left visible. Frees w; takes NULL. Returns the
 * upload's own failure if it had failed already (the reason the caller's
 * writes met EPIPE), else -ECANCELED.
 */
int store_writer_abort(struct store_writer *w, struct svemig_error *err);

struct store_reader;

/* Reads length bytes from offset (length 0: to the end). */
int store_reader_open(const char *location, const struct store_conf *conf, uint64_t offset, uint64_t length,
                      struct store_reader **out, struct svemig_error *err);
int store_reader_fd(const struct store_reader *rd);
/*
 * Closes the fd and ends the transfer. Returns the transfer's failure if
 * it had one (a reader that closed early is none), else 0. Frees rd; takes
 * NULL.
 */
int store_reader_close(struct store_reader *rd, struct svemig_error *err);

int store_delete(const char *location, const struct store_conf *conf, struct svemig_error *err);

/* Called for each object under prefix, in the store's order. A negative return stops the listing. */
typedef int (*store_list_fn)(void *userdata, const char *location, uint64_t size);

/* Lists the objects whose location starts with prefix. Plain HTTP servers give no listing: -EOPNOTSUPP. */
int store_list(const char *prefix, const struct store_conf *conf, store_list_fn fn, void *userdata,
               struct svemig_error *err);
