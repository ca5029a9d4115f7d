/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A non-blocking client of one VMM, on svemigd's event loop. Lifetimes: the
 * owner's reference is dropped by vmm_client_free(); the I/O handler holds
 * one while it dispatches, since a callback may free the client.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api-frame.h"
#include "macro.h"
#include "vmm-client.h"

#define FDS_QUEUED_MAX 8u

struct pending {
        LIST_ENTRY(pending) link;
        uint64_t id;
        vmm_progress_t progress;
        vmm_done_t done;
        void *userdata;
};

struct vmm_client {
        unsigned refs;
        int fd;
        sd_event_source *io;
        uint64_t next_id;
        vmm_lost_t lost;
        void *userdata;
        const char *lost_why; /* set while lost() runs: what the calls in flight are told */
        uint8_t *in;
        size_t in_len, in_cap;
        uint8_t *out;
        size_t out_len, out_cap;
        /*
         * Descriptors to send with the frame at out[offset], len bytes (SCM_RIGHTS on its first byte;
         * the receiver gives them to the frame whose bytes they came with, so that frame is sent alone).
         */
        struct {
                size_t offset, len;
                int fd;
        } fds[FDS_QUEUED_MAX];
        unsigned n_fds;
        LIST_HEAD(, pending) calls;
};

static void client_unref(struct vmm_client *c)
{
        if (!c || --c->refs > 0)
                return;
        free(c->in);
        free(c->out);
        free(c);
}

/* Ends the connection: every call in flight completes with NULL and 'why'. */
static void client_close(struct vmm_client *c, const char *why)
{
        if (c->fd < 0)
                return;
        if (c->lost_why)
                why = c->lost_why;
        c->io = sd_event_source_disable_unref(c->io);
        close(c->fd);
        c->fd = -1;
        for (unsigned i = 0; i < c->n_fds; i++)
                close(c->fds[i].fd);
        c->n_fds = 0;
        while (!LIST_EMPTY(&c->calls)) {
                struct pending *p = LIST_FIRST(&c->calls);

                LIST_REMOVE(p, link);
                p->done(NULL, why, p->userdata);
                free(p);
        }
}

static void client_lost(struct vmm_client *c, const char *why)
{
        vmm_lost_t lost = c->lost;

        if (c->fd < 0)
                return;
        /* The owner hears first, so that the calls failed next find the guest's record already saying so. */
        c->lost = NULL;
        c->lost_why = why;
        c->refs++;
        if (lost)
                lost(c, why, c->userdata);
        client_close(c, why);
        client_unref(c);
}

static void update_events(struct vmm_client *c)
{
        if (c->fd >= 0)
                (void)sd_event_source_set_io_events(c->io, EPOLLIN | (c->out_len ? EPOLLOUT : 0));
}

/* Sends up to len bytes of out, with fd (>= 0) on the first. */
static ssize_t send_some(struct vmm_client *c, size_t len, int fd)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {0};
        struct iovec iov = {.iov_base = c->out, .iov_len = len};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

        if (fd >= 0) {
                struct cmsghdr *h;

                m.msg_control = control.buf;
                m.msg_controllen = sizeof(control);
                h = CMSG_FIRSTHDR(&m);
                h->cmsg_level = SOL_SOCKET;
                h->cmsg_type = SCM_RIGHTS;
                h->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(h), &fd, sizeof(int));
        }
        return sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void flush(struct vmm_client *c)
{
        while (c->fd >= 0 && c->out_len > 0) {
                /* A frame that carries a descriptor goes out on a send() of its own, starting with it. */
                bool with_fd = c->n_fds > 0 && c->fds[0].offset == 0;
                size_t len = with_fd ? c->fds[0].len : c->n_fds > 0 ? c->fds[0].offset : c->out_len;
                ssize_t n = send_some(c, len, with_fd ? c->fds[0].fd : -1);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n < 0) {
                        client_lost(c, errno == EPIPE || errno == ECONNRESET ? "closed the connection"
                                                                             : strerror(errno));
                        return;
                }
                memmove(c->out, c->out + n, c->out_len - (size_t)n);
                c->out_len -= (size_t)n;
                if (with_fd) {
                        close(c->fds[0].fd);
                        memmove(&c->fds[0], &c->fds[1], (c->n_fds - 1) * sizeof(c->fds[0]));
                        c->n_fds--;
                }
                for (unsigned i = 0; i < c->n_fds; i++)
                        c->fds[i].offset -= (size_t)n;
        }
        update_events(c);
}

static struct pending *find(struct vmm_client *c, uint64_t id)
{
        struct pending *p;

        LIST_FOREACH(p, &c->calls, link)
        {
                if (p->id == id)
                        return p;
        }
        return NULL;
}

static void dispatch(struct vmm_client *c, const uint8_t *buf, size_t len)
{
        Svemig__Api__ServerMessage *msg = svemig__api__server_message__unpack(NULL, len, buf);
        struct pending *p;

        if (!msg) {
                client_lost(c, "sent a message svemigd cannot read");
                return;
        }
        if (msg->kind_case == SVEMIG__API__SERVER_MESSAGE__KIND_PROGRESS) {
                p = find(c, msg->progress->id);
                if (p && p->progress)
                        p->progress(msg->progress, p->userdata);
        } else if (msg->kind_case == SVEMIG__API__SERVER_MESSAGE__KIND_RESPONSE) {
                p = find(c, msg->response->id);
                if (p) {
                        LIST_REMOVE(p, link);
                        p->done(msg->response, NULL, p->userdata);
                        free(p);
                }
        }
        svemig__api__server_message__free_unpacked(msg, NULL);
}

static int client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct vmm_client *c = userdata;

        c->refs++;
        if (revents & EPOLLOUT)
                flush(c);
        if (c->fd >= 0 && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                ssize_t n;

                if (c->in_cap - c->in_len < 65536) {
                        size_t cap = MAX(c->in_cap * 2, c->in_len + 65536);
                        uint8_t *b = realloc(c->in, cap);

                        if (!b) {
                                client_lost(c, "out of memory");
                                goto out;
                        }
                        c->in = b;
                        c->in_cap = cap;
                }
                n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        goto out;
                if (n <= 0) {
                        client_lost(c, n == 0 ? "closed its control socket" : strerror(errno));
                        goto out;
                }
                c->in_len += (size_t)n;
                while (c->fd >= 0 && c->in_len >= API_FRAME_HEADER_SIZE) {
                        uint32_t len = api_frame_length(c->in);

                        if (len > API_FRAME_MAX) {
                                client_lost(c, "sent an oversized message");
                                goto out;
                        }
                        if (c->in_len < API_FRAME_HEADER_SIZE + len)
                                break;
                        dispatch(c, c->in + API_FRAME_HEADER_SIZE, len);
                        if (c->fd < 0)
                                break;
                        memmove(c->in, c->in + API_FRAME_HEADER_SIZE + len,
                                c->in_len - API_FRAME_HEADER_SIZE - len);
                        c->in_len -= API_FRAME_HEADER_SIZE + len;
                }
        }
out:
        client_unref(c);
        return 0;
}

int vmm_client_connect(sd_event *event, const char *path, vmm_lost_t lost, void *userdata,
                       struct vmm_client **out, struct svemig_error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        struct vmm_client *c;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return svemig_error_set(err, ENAMETOOLONG, "%s is too long for a Unix socket", path);
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return svemig_error_set(err, errno, "socket: %s", strerror(errno));
        /* A Unix socket connects at once, or not at all (EAGAIN: its backlog is full, as good as refused).
         */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return svemig_error_set(err, errno, "no VMM answers on %s: %s", path, strerror(errno));
        c = calloc(1, sizeof(*c));
        if (!c)
                return svemig_error_set(err, ENOMEM, "out of memory");
        c->refs = 1;
        c->fd = fd;
        c->lost = lost;
        c->userdata = userdata;
        LIST_INIT(&c->calls);
        r = sd_event_add_io(event, &c->io, fd, EPOLLIN, client_io, c);
        if (r < 0) {
                free(c);
                return svemig_error_set(err, r, "cannot watch %s: %s", path, strerror(-r));
        }
        fd = -1;
        *out = c;
        return 0;
}

void vmm_client_free(struct vmm_client *c)
{
        if (!c)
                return;
        c->lost = NULL;
        client_close(c, "svemigd let go of the VMM");
        client_unref(c);
}

/* fd >= 0: a copy of it goes with the frame. */
static int queue(struct vmm_client *c, Svemig__Api__Request *req, int fd)
{
        _cleanup_free_ uint8_t *frame = NULL;
        size_t size;
        int r, copy = -1;

        if (fd >= 0 && c->n_fds >= FDS_QUEUED_MAX)
                return -EAGAIN;
        r = api_frame_pack(&req->base, &frame, &size);
        if (r < 0)
                return r;
        if (fd >= 0) {
                copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (copy < 0)
                        return -errno;
                c->fds[c->n_fds].offset = c->out_len;
                c->fds[c->n_fds].len = size;
                c->fds[c->n_fds].fd = copy;
        }
        if (c->out_cap - c->out_len < size) {
                size_t cap = MAX(c->out_cap * 2, c->out_len + size);
                uint8_t *b = realloc(c->out, cap);

                if (!b) {
                        if (copy >= 0)
                                close(copy);
                        return -ENOMEM;
                }
                c->out = b;
                c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, frame, size);
        c->out_len += size;
        if (copy >= 0)
                c->n_fds++;
        return 0;
}

int vmm_client_call(struct vmm_client *c, Svemig__Api__Request *req, vmm_progress_t progress,
                    vmm_done_t done, void *userdata, uint64_t *id, struct svemig_error *err)
{
        return vmm_client_call_fd(c, req, -1, progress, done, userdata, id, err);
}

int vmm_client_call_fd(struct vmm_client *c, Svemig__Api__Request *req, int fd, vmm_progress_t progress,
                       vmm_done_t done, void *userdata, uint64_t *id, struct svemig_error *err)
{
        struct pending *p;
        int r;

        if (c->fd < 0)
                return svemig_error_set(err, ENOTCONN, "the VMM's connection is closed");
        p = calloc(1, sizeof(*p));
        if (!p)
                return svemig_error_set(err, ENOMEM, "out of memory");
        req->id = ++c->next_id;
        r = queue(c, req, fd);
        if (r < 0) {
                free(p);
                return svemig_error_set(err, r, "cannot send to the VMM: %s", strerror(-r));
        }
        p->id = req->id;
        p->progress = progress;
        p->done = done;
        p->userdata = userdata;
        LIST_INSERT_HEAD(&c->calls, p, link);
        if (id)
                *id = req->id;
        /* Sent from the loop: done() never runs before this returns. */
        update_events(c);
        return 0;
}

int vmm_client_cancel(struct vmm_client *c, uint64_t id)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__CancelRequest cancel = SVEMIG__API__CANCEL_REQUEST__INIT;
        int r;

        if (c->fd < 0)
                return -ENOTCONN;
        cancel.target_case = SVEMIG__API__CANCEL_REQUEST__TARGET_REQUEST_ID;
        cancel.request_id = id;
        req.op_case = SVEMIG__API__REQUEST__OP_CANCEL;
        req.cancel = &cancel;
        /* Its answer carries an id nobody waits for, and is dropped. */
        req.id = ++c->next_id;
        r = queue(c, &req, -1);
        if (r < 0)
                return r;
        update_events(c);
        return 0;
}
