/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The stores' dispatch: the public entry points, the argument checks, the
 * defaults, and the threads that move bytes between a caller's pipe and a
 * backend, so that a stream writer or reader works on a store as on a file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "store-backend.h"

bool store_is_remote(const char *location)
{
        return location && (strncmp(location, "http://", 7) == 0 || strncmp(location, "https://", 8) == 0 ||
                            strncmp(location, "s3://", 5) == 0);
}

static const struct store_ops *pick(const char *location)
{
        if (strncmp(location, "s3://", 5) == 0)
                return &store_s3_ops;
        if (store_is_remote(location))
                return &store_http_ops;
        return &store_file_ops;
}

static int make_ctx(const struct store_conf *conf, atomic_bool *cancel, struct store_ctx *out,
                    struct svemig_error *err)
{
        memset(out, 0, sizeof(*out));
        if (conf)
                out->conf = *conf;
        if (!out->conf.s3_region || !out->conf.s3_region[0])
                out->conf.s3_region = "us-east-1";
        if (!out->conf.part_size)
                out->conf.part_size = STORE_PART_SIZE_DEFAULT;
        if (out->conf.part_size < STORE_PART_SIZE_MIN || out->conf.part_size > STORE_PART_SIZE_MAX)
                return svemig_error_set(err, EINVAL, "the S3 part size %zu is outside %u..%u bytes",
                                        out->conf.part_size, STORE_PART_SIZE_MIN, STORE_PART_SIZE_MAX);
        if (!out->conf.parallel)
                out->conf.parallel = 4;
        if (out->conf.parallel > STORE_PARALLEL_MAX)
                return svemig_error_set(err, EINVAL, "%u parts in flight is over the limit of %u",
                                        out->conf.parallel, STORE_PARALLEL_MAX);
        if (!out->conf.retries)
                out->conf.retries = 5;
        if (!out->conf.stall_s)
                out->conf.stall_s = 30;
        if (!out->conf.connect_timeout_s)
                out->conf.connect_timeout_s = 10;
        out->cancel = cancel;
        return 0;
}

static int check(const char *location, const struct store_conf *conf, struct store_ctx *c,
                 atomic_bool *cancel, const struct store_ops **ops, struct svemig_error *err)
{
        int r;

        if (!location || !location[0])
                return svemig_error_set(err, EINVAL, "no location given");
        r = make_ctx(conf, cancel, c, err);
        if (r < 0)
                return r;
        *ops = pick(location);
        return (*ops)->check(c, location, err);
}

int store_check_location(const char *location, const struct store_conf *conf, struct svemig_error *err)
{
        atomic_bool never = false;
        const struct store_ops *ops;
        struct store_ctx c;

        return check(location, conf, &c, &never, &ops, err);
}

/* The threads below write to pipes whose reader may go: they want EPIPE, not the signal. */
static void block_sigpipe(void)
{
        sigset_t set;

        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* --- writer --- */

struct store_writer {
        const struct store_ops *ops;
        struct store_ctx ctx;
        atomic_bool cancel;
        char *location;
        int fd;  /* the caller's end */
        int rfd; /* the upload thread's end */
        pthread_t thread;
        int result;
        struct svemig_error err;
};

static void *upload_main(void *arg)
{
        struct store_writer *w = arg;
        struct store_source src = {.fd = w->rfd, .cancel = &w->cancel};

        block_sigpipe();
        w->result = w->ops->put(&w->ctx, w->location, &src, &w->err);
        /* Failed or done: the caller's writes now end in EPIPE rather than blocking. */
        close(w->rfd);
        w->rfd = -1;
        return NULL;
}

static void writer_free(struct store_writer *w)
{
        if (w->fd >= 0)
                close(w->fd);
        free(w->location);
        free(w);
}

int store_writer_open(const char *location, const struct store_conf *conf, struct store_writer **out,
                      struct svemig_error *err)
{
        struct store_writer *w = calloc(1, sizeof(*w));
        int fds[2], r;

        if (!w)
                return svemig_error_set(err, ENOMEM, "out of memory");
        w->fd = w->rfd = -1;
        r = check(location, conf, &w->ctx, &w->cancel, &w->ops, err);
        if (r < 0) {
                writer_free(w);
                return r;
        }
        w->location = strdup(location);
        if (!w->location || pipe2(fds, O_CLOEXEC) < 0) {
                r = svemig_error_set(err, w->location ? errno : ENOMEM, "cannot make a pipe for %s: %m",
                                     location);
                writer_free(w);
                return r;
        }
        w->rfd = fds[0];
        w->fd = fds[1];
        /* A bigger pipe lets the stream writer run ahead of a slow link a little. */
        (void)fcntl(w->fd, F_SETPIPE_SZ, 1 << 20);
        r = pthread_create(&w->thread, NULL, upload_main, w);
        if (r) {
                close(w->rfd);
                writer_free(w);
                return svemig_error_set(err, r, "cannot start the upload of %s: %s", location, strerror(r));
        }
        *out = w;
        return 0;
}

int store_writer_fd(const struct store_writer *w)
{
        return w->fd;
}

int store_writer_commit(struct store_writer *w, struct svemig_error *err)
{
        int r;

        close(w->fd);
        w->fd = -1;
        pthread_join(w->thread, NULL);
        r = w->result;
        if (r < 0 && err)
                *err = w->err;
        writer_free(w);
        return r;
}

int store_writer_abort(struct store_writer *w, struct svemig_error *err)
{
        int r;

        if (!w)
                return -ECANCELED;
        /* Set before the close, so that the EOF the thread then meets reads as a cancel. */
        atomic_store(&w->cancel, true);
        close(w->fd);
        w->fd = -1;
        pthread_join(w->thread, NULL);
        r = w->result < 0 ? w->result : -ECANCELED;
        if (r != -ECANCELED && err)
                *err = w->err;
        writer_free(w);
        return r;
}

/* --- reader --- */

struct store_reader {
        const struct store_ops *ops;
        struct store_ctx ctx;
        atomic_bool cancel;
        char *location;
        uint64_t offset, length;
        int fd;
        int wfd;
        pthread_t thread;
        bool started;
        int result;
        bool closed_early;
        struct svemig_error err;
};

static void *download_main(void *arg)
{
        struct store_reader *rd = arg;
        struct store_sink sink = {.fd = rd->wfd};

        block_sigpipe();
        rd->result = rd->ops->get(&rd->ctx, rd->location, rd->offset, rd->length, &sink, &rd->err);
        rd->closed_early = sink.closed;
        close(rd->wfd);
        rd->wfd = -1;
        return NULL;
}

static void reader_free(struct store_reader *rd)
{
        if (rd->fd >= 0)
                close(rd->fd);
        if (rd->wfd >= 0)
                close(rd->wfd);
        free(rd->location);
        free(rd);
}

int store_reader_open(const char *location, const struct store_conf *conf, uint64_t offset, uint64_t length,
                      struct store_reader **out, struct svemig_error *err)
{
        struct store_reader *rd = calloc(1, sizeof(*rd));
        int fds[2], r;

        if (!rd)
                return svemig_error_set(err, ENOMEM, "out of memory");
        rd->fd = rd->wfd = -1;
        rd->offset = offset;
        rd->length = length;
        r = check(location, conf, &rd->ctx, &rd->cancel, &rd->ops, err);
        if (r < 0) {
                reader_free(rd);
                return r;
        }
        rd->location = strdup(location);
        if (!rd->location || pipe2(fds, O_CLOEXEC) < 0) {
                r = svemig_error_set(err, rd->location ? errno : ENOMEM, "cannot make a pipe for %s: %m",
                                     location);
                reader_free(rd);
                return r;
        }
        rd->fd = fds[0];
        rd->wfd = fds[1];
        (void)fcntl(rd->wfd, F_SETPIPE_SZ, 1 << 20);
        r = pthread_create(&rd->thread, NULL, download_main, rd);
        if (r) {
                reader_free(rd);
                return svemig_error_set(err, r, "cannot start the download of %s: %s", location,
                                        strerror(r));
        }
        rd->started = true;
        *out = rd;
        return 0;
}

int store_reader_fd(const struct store_reader *rd)
{
        return rd->fd;
}

int store_reader_close(struct store_reader *rd, struct svemig_error *err)
{
        int r;

        if (!rd)
                return 0;
        /* The thread meets EPIPE on its next write, or the cancel in its transfer's callback. */
        atomic_store(&rd->cancel, true);
        close(rd->fd);
        rd->fd = -1;
        pthread_join(rd->thread, NULL);
        r = rd->result;
        if (rd->closed_early || r == -ECANCELED)
                r = 0;
        if (r < 0 && err)
                *err = rd->err;
        reader_free(rd);
        return r;
}

/* --- the rest --- */

int store_delete(const char *location, const struct store_conf *conf, struct svemig_error *err)
{
        atomic_bool never = false;
        const struct store_ops *ops;
        struct store_ctx c;
        int r;

        r = check(location, conf, &c, &never, &ops, err);
        if (r < 0)
                return r;
        return ops->remove(&c, location, err);
}

int store_list(const char *prefix, const struct store_conf *conf, store_list_fn fn, void *userdata,
               struct svemig_error *err)
{
        atomic_bool never = false;
        const struct store_ops *ops;
        struct store_ctx c;
        int r;

        r = check(prefix, conf, &c, &never, &ops, err);
        if (r < 0)
                return r;
        if (!ops->list)
                return svemig_error_set(err, EOPNOTSUPP,
                                        "%s: a plain HTTP server gives no listing; list it on the server, "
                                        "or use an s3:// location",
                                        prefix);
        return ops->list(&c, prefix, fn, userdata, err);
}
