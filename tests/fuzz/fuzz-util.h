/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the libFuzzer targets share: the input as a file or as a peer's end
 * of a socket. A harness failure (not the code under test) aborts: the run
 * must not pass for want of trying.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void fuzz_write_all(int fd, const uint8_t *data, size_t size)
{
        while (size > 0) {
                ssize_t n = write(fd, data, size);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        perror("fuzz harness: write");
                        abort();
                }
                data += n;
                size -= (size_t)n;
        }
}

/* The input as an anonymous file, at offset 0. */
static inline int fuzz_memfd(const uint8_t *data, size_t size)
{
        int fd = memfd_create("fuzz-input", MFD_CLOEXEC);

        if (fd < 0)
                abort();
        fuzz_write_all(fd, data, size);
        if (lseek(fd, 0, SEEK_SET) != 0)
                abort();
        return fd;
}

/*
 * A peer on the other end of *fd (a stream socketpair): it sends the input,
 * shuts its sending half, and reads whatever the code under test answers
 * until that side closes, so that no answer blocks on a full socket.
 */
struct fuzz_peer {
        int fd;
        const uint8_t *data;
        size_t size;
        pthread_t thread;
        bool done;   /* the other side closed (atomic) */
        int wake_fd; /* if > 0: an eventfd written once done, to wake an event loop */
};

static inline void *fuzz_peer_main(void *arg)
{
        struct fuzz_peer *p = arg;
        uint8_t sink[16384];

        /* A closed reader (EPIPE) only ends the sending. */
        for (size_t off = 0; off < p->size;) {
                ssize_t n = send(p->fd, p->data + off, p->size - off, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                off += (size_t)n;
        }
        shutdown(p->fd, SHUT_WR);
        for (;;) {
                ssize_t n = recv(p->fd, sink, sizeof(sink), 0);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
        }
        __atomic_store_n(&p->done, true, __ATOMIC_RELEASE);
        if (p->wake_fd > 0 && eventfd_write(p->wake_fd, 1) < 0)
                abort();
        return NULL;
}

/* Starts the peer on fd, a connected stream socket it then owns. */
static inline void fuzz_peer_start_fd(struct fuzz_peer *p, int fd, const uint8_t *data, size_t size,
                                      int wake_fd)
{
        *p = (struct fuzz_peer){.fd = fd, .data = data, .size = size, .wake_fd = wake_fd};
        if (pthread_create(&p->thread, NULL, fuzz_peer_main, p) != 0)
                abort();
}

/* Starts the peer on a new socketpair; returns the code under test's end of it. */
static inline int fuzz_peer_start(struct fuzz_peer *p, const uint8_t *data, size_t size)
{
        int fds[2];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
                abort();
        fuzz_peer_start_fd(p, fds[1], data, size, -1);
        return fds[0];
}

/* Closes our end (the peer then sees EOF) and waits for the peer. */
static inline void fuzz_peer_stop(struct fuzz_peer *p, int fd)
{
        close(fd);
        pthread_join(p->thread, NULL);
        close(p->fd);
}
