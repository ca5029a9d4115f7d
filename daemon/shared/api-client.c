/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "api-client.h"
#include "api-frame.h"
#include "macro.h"
#include "conf.h"

struct api_client {
        int fd;
        unsigned timeout_ms;
        char *path;
        uint64_t next_id;
        bool takes_files; /* the daemon said so (HostInfo.features) */
};

#define CHECK_HINT                                                                                          \
        "Is svemigd running? Check 'systemctl status svemigd.socket svemigd.service', or name the "         \
        "daemon's "                                                                                         \
        "socket with --socket PATH or SVEMIG_SOCKET."

const char *api_client_default_socket(void)
{
        const char *env = getenv("SVEMIG_SOCKET");

        return env && env[0] ? env : SVEMIG_DEFAULT_SOCKET;
}

static int set_timeouts(int fd, unsigned timeout_ms)
{
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};

        /* A Unix socket's connect() waits on the send timeout too. */
        if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        return 0;
}

int api_client_connect(const char *path, struct api_client **out, struct svemig_error *err)
{
        return api_client_connect_timeout(path, 0, out, err);
}

int api_client_connect_timeout(const char *path, unsigned timeout_ms, struct api_client **out,
                               struct svemig_error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        struct api_client *c;

        if (!path)
                path = api_client_default_socket();
        if (strlen(path) >= sizeof(sa.sun_path))
                return svemig_error_set(err, ENAMETOOLONG,
                                        "the socket path %s is too long for a Unix socket", path);
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return svemig_error_set(err, errno, "socket: %s", strerror(errno));
        if (timeout_ms && set_timeouts(fd, timeout_ms) < 0)
                return svemig_error_set(err, errno, "setsockopt: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = errno;

                switch (e) {
                case EAGAIN:
                case EINPROGRESS:
                        return svemig_error_set(err, ETIMEDOUT,
                                                "svemigd at %s did not accept the connection within %u ms "
                                                "(busy or hung). " CHECK_HINT,
                                                path, timeout_ms);
                case ENOENT:
                        return svemig_error_set(
                                err, e, "cannot reach svemigd: %s does not exist. " CHECK_HINT, path);
                case ECONNREFUSED:
                        return svemig_error_set(err, e,
                                                "cannot reach svemigd at %s: nothing listens there (a stale "
                                                "socket). " CHECK_HINT,
                                                path);
                case EACCES:
                        return svemig_error_set(
                                err, e,
                                "cannot reach svemigd at %s: permission denied. Run as root or as "
                                "a member of the socket's group ('ls -l %s'; socket-group in "
                                "migrate.conf).",
                                path, path);
                default:
                        return svemig_error_set(err, e, "cannot reach svemigd at %s: %s. " CHECK_HINT, path,
                                                strerror(e));
                }
        }

        c = calloc(1, sizeof(*c));
        if (!c || !(c->path = strdup(path))) {
                free(c);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        c->fd = fd;
        c->timeout_ms = timeout_ms;
        fd = -1;
        *out = c;
        return 0;
}

void api_client_free(struct api_client *c)
{
        if (!c)
                return;
        if (c->fd >= 0)
                close(c->fd);
        free(c->path);
        free(c);
}

const char *api_client_socket(const struct api_client *c)
{
        return c->path;
}

static int send_all(struct api_client *c, const uint8_t *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno; /* the caller words it: the daemon may have said why first */
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Reads exactly len bytes; -ECONNRESET at end of file. */
static int recv_all(struct api_client *c, uint8_t *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = recv(c->fd, buf, len, 0);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ECONNRESET;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

/* The frame's first bytes, with fd attached: the daemon takes it as this request's. */
static ssize_t send_with_fds(struct api_client *c, const uint8_t *buf, size_t len, const int *fds,
                             unsigned n_fds)
{
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * API_CLIENT_FDS_MAX)];
        } control = {0};
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
        struct msghdr m = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = control.buf,
                           .msg_controllen = CMSG_SPACE(sizeof(int) * n_fds)};
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        ssize_t n;

        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(h), fds, sizeof(int) * n_fds);
        do
                n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        return n < 0 ? -errno : n;
}

static int send_request(struct api_client *c, Svemig__Api__Request *req, const int *fds, unsigned n_fds)
{
        _cleanup_free_ uint8_t *frame = NULL;
        size_t size, off = 0;
        int r;

        r = api_frame_pack(&req->base, &frame, &size);
        if (r < 0)
                return r;
        if (n_fds > 0) {
                ssize_t n = send_with_fds(c, frame, size, fds, n_fds);

                if (n < 0)
                        return (int)n;
                off = (size_t)n;
        }
        return send_all(c, frame + off, size - off);
}

static int read_message(struct api_client *c, Svemig__Api__ServerMessage **out, struct svemig_error *err)
{
        uint8_t header[API_FRAME_HEADER_SIZE];
        _cleanup_free_ uint8_t *body = NULL;
        uint32_t len = 0;
        int r;

        r = recv_all(c, header, sizeof(header));
        if (r == 0) {
                len = api_frame_length(header);
                if (len > API_FRAME_MAX)
                        return svemig_error_set(
                                err, EMSGSIZE, "svemigd at %s sent a %u-byte message, over the %u MiB limit",
                                c->path, len, API_FRAME_MAX >> 20);
                body = malloc(len ? len : 1);
                if (!body)
                        return svemig_error_set(err, ENOMEM, "out of memory");
                r = recv_all(c, body, len);
        }
        if (r == -ECONNRESET)
                return svemig_error_set(
                        err, ECONNRESET,
                        "svemigd at %s closed the connection without answering; see 'journalctl "
                        "-u svemigd' for why",
                        c->path);
        if (r == -EAGAIN)
                return svemig_error_set(err, ETIMEDOUT, "svemigd at %s did not answer within %u ms", c->path,
                                        c->timeout_ms);
        if (r < 0)
                return svemig_error_set(err, r, "reading from svemigd at %s: %s", c->path, strerror(-r));

        *out = svemig__api__server_message__unpack(NULL, len, body);
        if (!*out)
                return svemig_error_set(
                        err, EBADMSG,
                        "svemigd at %s sent a message svemigctl cannot read; are they the same "
                        "version?",
                        c->path);
        return 0;
}

static int call(struct api_client *c, Svemig__Api__Request *req, const int *fds, unsigned n_fds,
                api_progress_t progress, void *userdata, Svemig__Api__Response **out,
                struct svemig_error *err)
{
        int sent;

        if (n_fds > API_CLIENT_FDS_MAX)
                return svemig_error_set(err, E2BIG, "a request carries at most %u files",
                                        API_CLIENT_FDS_MAX);
        req->id = ++c->next_id;
        sent = send_request(c, req, fds, n_fds);
        if (sent == -EMSGSIZE)
                return svemig_error_set(err, EMSGSIZE, "the request is over the %u MiB limit",
                                        API_FRAME_MAX >> 20);
        /*
         * A write error is not the end: the daemon may have refused us and
         * hung up, and its reason is waiting to be read.
         */
        for (;;) {
                Svemig__Api__ServerMessage *msg = NULL;
                int r = read_message(c, &msg, err);

                if (r < 0) {
                        if (sent < 0)
                                return svemig_error_set(err, sent, "cannot send to svemigd at %s: %s",
                                                        c->path, strerror(-sent));
                        return r;
                }
                if (msg->kind_case == SVEMIG__API__SERVER_MESSAGE__KIND_PROGRESS) {
                        if (progress && msg->progress->id == req->id)
                                progress(msg->progress, userdata);
                } else if (msg->kind_case == SVEMIG__API__SERVER_MESSAGE__KIND_RESPONSE &&
                           (msg->response->id == req->id || msg->response->id == 0)) {
                        /* Detach the response; the rest goes. */
                        *out = msg->response;
                        msg->response = NULL;
                        msg->kind_case = SVEMIG__API__SERVER_MESSAGE__KIND__NOT_SET;
                        svemig__api__server_message__free_unpacked(msg, NULL);
                        return 0;
                }
                /* Anything else (a cancel's own answer, a newer daemon's news) is not ours to wait for. */
                svemig__api__server_message__free_unpacked(msg, NULL);
        }
}

int api_client_call(struct api_client *c, Svemig__Api__Request *req, api_progress_t progress, void *userdata,
                    Svemig__Api__Response **out, struct svemig_error *err)
{
        return call(c, req, NULL, 0, progress, userdata, out, err);
}

/* Whether the daemon takes files as descriptors; an older one would open the path itself, as root. */
static int check_takes_files(struct api_client *c, struct svemig_error *err)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__HostInfoRequest hreq = SVEMIG__API__HOST_INFO_REQUEST__INIT;
        Svemig__Api__Response *resp = NULL;
        const char *version = "?";
        int r;

        if (c->takes_files)
                return 0;
        req.op_case = SVEMIG__API__REQUEST__OP_HOST_INFO;
        req.host_info = &hreq;
        r = call(c, &req, NULL, 0, NULL, NULL, &resp, err);
        if (r < 0)
                return r;
        if (resp->result_case == SVEMIG__API__RESPONSE__RESULT_HOST_INFO) {
                for (size_t i = 0; i < resp->host_info->n_features; i++)
                        if (strcmp(resp->host_info->features[i], API_FEATURE_CLIENT_FILES) == 0)
                                c->takes_files = true;
                if (resp->host_info->daemon_version && resp->host_info->daemon_version[0])
                        version = resp->host_info->daemon_version;
        }
        if (!c->takes_files && resp->status && resp->status->code)
                r = svemig_error_set(err, resp->status->code, "%s", resp->status->message);
        else if (!c->takes_files)
                r = svemig_error_set(err, EPROTONOSUPPORT,
                                     "svemigd at %s (version %s) cannot take the file from svemigctl: it is "
                                     "older, and would open the path itself, as root. Update svemigd to the "
                                     "version of this svemigctl",
                                     c->path, version);
        svemig__api__response__free_unpacked(resp, NULL);
        return r;
}

int api_client_call_fds(struct api_client *c, Svemig__Api__Request *req, const int *fds, unsigned n_fds,
                        api_progress_t progress, void *userdata, Svemig__Api__Response **out,
                        struct svemig_error *err)
{
        int r = check_takes_files(c, err);

        if (r < 0)
                return r;
        return call(c, req, fds, n_fds, progress, userdata, out, err);
}

int api_client_call_fd(struct api_client *c, Svemig__Api__Request *req, int fd, api_progress_t progress,
                       void *userdata, Svemig__Api__Response **out, struct svemig_error *err)
{
        return api_client_call_fds(c, req, &fd, 1, progress, userdata, out, err);
}

int api_client_send_cancel(struct api_client *c, uint64_t id, struct svemig_error *err)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__CancelRequest cancel = SVEMIG__API__CANCEL_REQUEST__INIT;
        int r;

        cancel.target_case = SVEMIG__API__CANCEL_REQUEST__TARGET_REQUEST_ID;
        cancel.request_id = id;
        req.op_case = SVEMIG__API__REQUEST__OP_CANCEL;
        req.cancel = &cancel;
        req.id = ++c->next_id;
        r = send_request(c, &req, NULL, 0);
        if (r < 0)
                return svemig_error_set(err, r, "cannot send the cancel to svemigd at %s: %s", c->path,
                                        strerror(-r));
        return 0;
}
