/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "header-read.h"
#include "macro.h"

struct header_read {
        int fd;
        int pipe[2]; /* the thread writes one byte once done */
        sd_event_source *source;
        header_read_done_fn done;
        void *userdata;
        /* The thread's results, read by the loop after the byte: */
        int r;
        struct svemig_error err;
        struct svemig_stream_reader *rd;
        bool finished; /* released by the thread once the results are written (the pipe alone says nothing to
                          TSan) */
};

static int pread_all(int fd, void *buf, size_t n, struct svemig_error *err)
{
        size_t have = 0;

        while (have < n) {
                ssize_t k = pread(fd, (uint8_t *)buf + have, n - have, (off_t)have);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return svemig_error_set(err, errno, "cannot read it: %s", strerror(errno));
                if (k == 0)
                        return svemig_error_set(err, EBADMSG,
                                                "it ends at byte %zu, inside the stream's header: it is no "
                                                "complete snapshot",
                                                have);
                have += (size_t)k;
        }
        return 0;
}

static int read_header(struct header_read *h)
{
        uint8_t pre[SVEMIG_STREAM_PREAMBLE_SIZE];
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;
        int r;

        r = pread_all(h->fd, pre, sizeof(pre), &h->err);
        if (r == 0)
                r = svemig_stream_header_size(pre, &n, &h->err);
        if (r < 0)
                return r;
        buf = malloc(n);
        if (!buf)
                return svemig_error_set(&h->err, ENOMEM, "out of memory");
        r = pread_all(h->fd, buf, n, &h->err);
        if (r == 0)
                r = svemig_stream_reader_open_mem(buf, n, &h->rd, &h->err);
        return r;
}

static void *thread_main(void *userdata)
{
        struct header_read *h = userdata;
        char one = 1;

        h->r = read_header(h);
        __atomic_store_n(&h->finished, true, __ATOMIC_RELEASE);
        (void)!write(h->pipe[1], &one, 1);
        return NULL;
}

static void header_read_free(struct header_read *h)
{
        sd_event_source_disable_unref(h->source);
        if (h->pipe[0] >= 0)
                close(h->pipe[0]);
        if (h->pipe[1] >= 0)
                close(h->pipe[1]);
        svemig_stream_reader_free(h->rd);
        free(h);
}

static int on_done(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
        struct header_read *h = userdata;

        if (!__atomic_load_n(&h->finished, __ATOMIC_ACQUIRE))
                return 0;
        h->done(h->userdata, h->r, &h->err, h->r == 0 ? svemig_stream_reader_info(h->rd) : NULL);
        header_read_free(h);
        return 0;
}

int header_read_start(sd_event *event, int fd, header_read_done_fn done, void *userdata,
                      struct svemig_error *err)
{
        struct header_read *h = calloc(1, sizeof(*h));
        pthread_attr_t attr;
        pthread_t t;
        int r;

        if (!h)
                return svemig_error_set(err, ENOMEM, "out of memory");
        h->fd = fd;
        h->done = done;
        h->userdata = userdata;
        h->pipe[0] = h->pipe[1] = -1;
        if (pipe2(h->pipe, O_CLOEXEC) < 0) {
                r = svemig_error_set(err, errno, "pipe: %s", strerror(errno));
                goto fail;
        }
        r = sd_event_add_io(event, &h->source, h->pipe[0], EPOLLIN, on_done, h);
        if (r < 0) {
                svemig_error_set(err, r, "cannot watch the header's reader: %s", strerror(-r));
                goto fail;
        }
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = -pthread_create(&t, &attr, thread_main, h);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                svemig_error_set(err, r, "cannot start a thread to read the header: %s", strerror(-r));
                goto fail;
        }
        return 0;
fail:
        header_read_free(h);
        return r;
}
