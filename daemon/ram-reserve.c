/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "ram-reserve.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

enum reserve_state {
        RESERVE_EMPTY, /* handed out; the next waits for ram_reserve_refill() */
        RESERVE_PREPARING,
        RESERVE_READY,
        RESERVE_FAILED,
};

struct ram_reserve {
        uint64_t size;
        enum reserve_state state;
        int fd; /* the memfd, once READY */
        pthread_t thread;
        bool thread_running;
        int done_fd; /* eventfd: the thread has finished */
        sd_event_source *done_source;
        /* Written by the thread, read on the loop once done_fd says so. */
        int result_fd;
        struct svemig_error result_err;
};

/*
 * Fault every page in through a shared mapping: the kernel clears them now,
 * here, not under the receiving VMM's first touches. (fallocate() would not
 * do: shmem leaves fallocated pages to be cleared at their first fault.)
 */
static int populate(int fd, uint64_t size, struct svemig_error *err)
{
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        int r = 0;

        if (p == MAP_FAILED)
                return svemig_error_set(err, errno, "cannot map it: %s", strerror(errno));
        if (madvise(p, size, MADV_POPULATE_WRITE) < 0) {
                if (errno != EINVAL)
                        r = svemig_error_set(err, errno,
                                             "cannot fault it in: %s (is the host short of memory?)",
                                             strerror(errno));
                else /* before Linux 5.14: a write per page does the same */
                        for (uint64_t off = 0; off < size; off += (uint64_t)getpagesize())
                                ((volatile uint8_t *)p)[off] = 0;
        }
        munmap(p, size);
        return r;
}

static void *prepare_main(void *userdata)
{
        struct ram_reserve *rr = userdata;
        int fd, r;

        fd = memfd_create("svemig-incoming-reserve", MFD_CLOEXEC);
        if (fd < 0)
                r = svemig_error_set(&rr->result_err, errno, "memfd_create: %s", strerror(errno));
        else if (ftruncate(fd, (off_t)rr->size) < 0)
                r = svemig_error_set(&rr->result_err, errno, "cannot size it: %s", strerror(errno));
        else
                r = populate(fd, rr->size, &rr->result_err);
        if (r < 0 && fd >= 0) {
                close(fd);
                fd = -1;
        }
        rr->result_fd = fd;
        (void)eventfd_write(rr->done_fd, 1);
        return NULL;
}

static int start(struct ram_reserve *rr, struct svemig_error *err)
{
        int r;

        rr->state = RESERVE_PREPARING;
        rr->result_fd = -1;
        rr->result_err = (struct svemig_error){0};
        r = pthread_create(&rr->thread, NULL, prepare_main, rr);
        if (r != 0) {
                rr->state = RESERVE_FAILED;
                return svemig_error_set(err, r, "cannot start preparing the incoming RAM reserve: %s",
                                        strerror(r));
        }
        rr->thread_running = true;
        return 0;
}

static void join(struct ram_reserve *rr)
{
        if (!rr->thread_running)
                return;
        pthread_join(rr->thread, NULL);
        rr->thread_running = false;
}

static int on_done(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
        struct ram_reserve *rr = userdata;
        eventfd_t v;

        (void)eventfd_read(rr->done_fd, &v);
        join(rr);
        if (rr->result_fd < 0) {
                rr->state = RESERVE_FAILED;
                log_warning("the incoming RAM reserve (%llu MiB) could not be prepared: %s; incoming guests "
                            "get ordinary memory until the next one is",
                            (unsigned long long)(rr->size >> 20), rr->result_err.msg);
                return 0;
        }
        rr->fd = rr->result_fd;
        rr->result_fd = -1;
        rr->state = RESERVE_READY;
        log_info("the incoming RAM reserve is ready: %llu MiB faulted in for the next guest to migrate in",
                 (unsigned long long)(rr->size >> 20));
        return 0;
}

int ram_reserve_new(sd_event *event, uint64_t size, struct ram_reserve **out, struct svemig_error *err)
{
        uint64_t page = (uint64_t)getpagesize();
        struct ram_reserve *rr;
        int r;

        if (size == 0)
                return svemig_error_set(err, EINVAL, "an incoming RAM reserve needs a size");
        rr = calloc(1, sizeof(*rr));
        if (!rr)
                return svemig_error_set(err, ENOMEM, "out of memory");
        rr->size = (size + page - 1) / page * page;
        rr->fd = -1;
        rr->result_fd = -1;
        rr->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (rr->done_fd < 0) {
                r = svemig_error_set(err, errno, "cannot create an eventfd: %s", strerror(errno));
                goto fail;
        }
        r = sd_event_add_io(event, &rr->done_source, rr->done_fd, EPOLLIN, on_done, rr);
        if (r < 0) {
                r = svemig_error_set(err, r, "cannot watch the incoming RAM reserve: %s", strerror(-r));
                goto fail;
        }
        r = start(rr, err);
        if (r < 0)
                goto fail;
        log_info("preparing an incoming RAM reserve of %llu MiB", (unsigned long long)(rr->size >> 20));
        *out = rr;
        return 0;
fail:
        ram_reserve_free(rr);
        return r;
}

uint64_t ram_reserve_size(const struct ram_reserve *rr)
{
        return rr ? rr->size : 0;
}

int ram_reserve_take(struct ram_reserve *rr, int *fd, uint64_t *size, struct svemig_error *err)
{
        struct svemig_error why = {0};

        switch (rr->state) {
        case RESERVE_EMPTY:
                return svemig_error_set(err, EAGAIN,
                                        "the incoming RAM reserve went to a guest still arriving; the next "
                                        "is prepared once it has");
        case RESERVE_PREPARING:
                return svemig_error_set(err, EAGAIN, "the incoming RAM reserve is still being prepared");
        case RESERVE_FAILED:
                if (start(rr, &why) < 0)
                        log_warning("%s", why.msg);
                return svemig_error_set(err, EAGAIN, "the last incoming RAM reserve could not be prepared");
        case RESERVE_READY:
                break;
        }
        *fd = rr->fd;
        *size = rr->size;
        rr->fd = -1;
        rr->state = RESERVE_EMPTY;
        return 0;
}

void ram_reserve_refill(struct ram_reserve *rr)
{
        struct svemig_error why = {0};

        if (!rr || rr->state != RESERVE_EMPTY)
                return;
        /* A fresh memfd for the next guest: the last one's pages will not read as zero again. */
        if (start(rr, &why) < 0)
                log_warning("%s", why.msg);
}

void ram_reserve_free(struct ram_reserve *rr)
{
        if (!rr)
                return;
        join(rr);
        if (rr->result_fd >= 0)
                close(rr->result_fd);
        if (rr->fd >= 0)
                close(rr->fd);
        sd_event_source_disable_unref(rr->done_source);
        if (rr->done_fd >= 0)
                close(rr->done_fd);
        free(rr);
}
