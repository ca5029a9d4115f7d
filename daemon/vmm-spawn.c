/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api-frame.h"
#include "config.h"
#include "macro.h"
#include "vmm-spawn.h"

#define READY_FD   3
#define RECEIVE_FD 4 /* --receive-fd: the peer connection an incoming guest arrives on */
#define RAM_FD     5 /* --ram-fd: with it, the incoming RAM reserve */
#define CHANNEL_FD 6 /* --channel-fd: with it, the socket its memory channels arrive on */

struct vmm_spawn {
        pid_t pid;
        int fd;
        sd_event_source *io;
        vmm_spawn_progress_t progress;
        vmm_spawn_done_t done;
        void *userdata;
        uint8_t *in;
        size_t in_len, in_cap;
        bool finished;
};

const char *vmm_spawn_binary(void)
{
        static char path[PATH_MAX];
        const char *env = getenv("SVEMIG_VMM");
        char self[PATH_MAX];
        ssize_t n;

        if (env && env[0])
                return env;
        if (path[0])
                return path;
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                char *slash;

                self[n] = '\0';
                slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        snprintf(path, sizeof(path), "%s/svemig-vmm", self);
                        if (access(path, X_OK) == 0)
                                return path;
                }
        }
        snprintf(path, sizeof(path), "%s", SVEMIG_LIBEXECDIR "/svemig/svemig-vmm");
        return path;
}

void vmm_describe_exit(int code, int status, char *buf, size_t len)
{
        if (code == CLD_EXITED)
                snprintf(buf, len, "exited with status %d", status);
        else if (code == CLD_KILLED || code == CLD_DUMPED)
                snprintf(buf, len, "was killed by signal %d (%s)%s", status, strsignal(status),
                         code == CLD_DUMPED ? ", core dumped" : "");
        else
                snprintf(buf, len, "ended (code %d, status %d)", code, status);
}

/* After the pipe's end: the VMM has exited or is about to; reap it. */
static void reap(struct vmm_spawn *s, char *why, size_t len)
{
        siginfo_t si = {0};

        if (s->pid <= 0)
                return;
        while (waitid(P_PID, (id_t)s->pid, &si, WEXITED) < 0 && errno == EINTR)
                ;
        vmm_describe_exit(si.si_code, si.si_status, why, len);
        s->pid = 0;
}

static void finish(struct vmm_spawn *s, const Svemig__Api__Response *resp)
{
        char why[128] = "";

        s->io = sd_event_source_disable_unref(s->io);
        if (s->fd >= 0)
                close(s->fd);
        s->fd = -1;
        s->finished = true;
        if (!resp || (resp->status && resp->status->code != 0)) {
                char what[128];

                reap(s, what, sizeof(what));
                snprintf(why, sizeof(why), "svemig-vmm %s before it was ready", what);
        }
        s->done(s, resp, resp ? NULL : why, s->userdata);
}

static bool handle_frame(struct vmm_spawn *s, const uint8_t *buf, size_t len)
{
        Svemig__Api__ServerMessage *msg = svemig__api__server_message__unpack(NULL, len, buf);
        bool last = false;

        if (!msg)
                return false;
        if (msg->kind_case == SVEMIG__API__SERVER_MESSAGE__KIND_PROGRESS && s->progress)
                s->progress(msg->progress, s->userdata);
        else if (msg->kind_case == SVEMIG__API__SERVER_MESSAGE__KIND_RESPONSE) {
                finish(s, msg->response);
                last = true;
        }
        svemig__api__server_message__free_unpacked(msg, NULL);
        return last;
}

static int ready_io(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
        struct vmm_spawn *s = userdata;
        ssize_t n;

        if (s->in_cap - s->in_len < 4096) {
                size_t cap = MAX(s->in_cap * 2, s->in_len + 65536);
                uint8_t *b = realloc(s->in, cap);

                if (!b) {
                        vmm_spawn_kill(s);
                        finish(s, NULL);
                        return 0;
                }
                s->in = b;
                s->in_cap = cap;
        }
        n = read(s->fd, s->in + s->in_len, s->in_cap - s->in_len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                finish(s, NULL);
                return 0;
        }
        s->in_len += (size_t)n;
        while (s->in_len >= API_FRAME_HEADER_SIZE) {
                uint32_t len = api_frame_length(s->in);

                if (len > API_FRAME_MAX) {
                        vmm_spawn_kill(s);
                        finish(s, NULL);
                        return 0;
                }
                if (s->in_len < API_FRAME_HEADER_SIZE + len)
                        break;
                if (handle_frame(s, s->in + API_FRAME_HEADER_SIZE, len))
                        return 0; /* done() ran: s may be gone */
                memmove(s->in, s->in + API_FRAME_HEADER_SIZE + len, s->in_len - API_FRAME_HEADER_SIZE - len);
                s->in_len -= API_FRAME_HEADER_SIZE + len;
        }
        return 0;
}

/* Between fork and exec: only async-signal-safe calls. */
_Noreturn static void child(int ready, int receive, int ram, int channel, const char *binary, char **argv)
{
        const int last = channel >= 0   ? CHANNEL_FD
                         : ram >= 0     ? RAM_FD
                         : receive >= 0 ? RECEIVE_FD
                                        : READY_FD;
        sigset_t none;
        int null;

        /* svemigd blocks the signals its loop takes; the VMM starts clean. */
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        signal(sig, SIG_DFL);
        /* Its own session: a stop of svemigd (or ^C in its terminal) does not reach it. */
        setsid();
        if (ready == READY_FD)
                fcntl(ready, F_SETFD, 0);
        else if (dup2(ready, READY_FD) < 0)
                _exit(126);
        /* receive, ram and channel are above CHANNEL_FD (vmm_spawn() made sure): nothing is in their way. */
        if (receive >= 0 && dup2(receive, RECEIVE_FD) < 0)
                _exit(126);
        if (ram >= 0 && dup2(ram, RAM_FD) < 0)
                _exit(126);
        if (ram < 0 && channel >= 0)
                close(RAM_FD); /* not the VMM's, whatever it is: close_range() below starts above it */
        if (channel >= 0 && dup2(channel, CHANNEL_FD) < 0)
                _exit(126);
        null = open("/dev/null", O_RDONLY);
        if (null >= 0 && null != STDIN_FILENO) {
                dup2(null, STDIN_FILENO);
                close(null);
        }
        close_range(last + 1, ~0u, 0);
        if (chdir("/") < 0)
                _exit(126);
        execv(binary, argv);
        _exit(127);
}

/* The copies made for the child; -1: none. */
static void close_fds(int receive, int ram, int channel)
{
        const int fds[] = {receive, ram, channel};

        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

int vmm_spawn(sd_event *event, const struct vmm_spawn_args *a, vmm_spawn_progress_t progress,
              vmm_spawn_done_t done, void *userdata, struct vmm_spawn **out, struct svemig_error *err)
{
        const char *binary = vmm_spawn_binary();
        char vcpus[16], memory[32], dirty[16], ready_fd[8], receive_fd[8], ram_fd[8], channel_fd[8];
        const char *argv[26];
        size_t n = 0;
        int fds[2], receive, ram, channel, r;
        bool dup_failed;
        struct vmm_spawn *s;
        pid_t pid;

        if (access(binary, X_OK) < 0)
                return svemig_error_set(err, errno,
                                        "cannot run the guest's VMM %s: %s (is svemig installed completely? "
                                        "SVEMIG_VMM names another)",
                                        binary, strerror(errno));
        snprintf(vcpus, sizeof(vcpus), "%u", a->vcpus);
        snprintf(memory, sizeof(memory), "%llu", (unsigned long long)a->memory);
        snprintf(dirty, sizeof(dirty), "%u", a->dirty_pages);
        snprintf(ready_fd, sizeof(ready_fd), "%d", READY_FD);
        argv[n++] = "svemig-vmm";
        argv[n++] = "--name";
        argv[n++] = a->name;
        argv[n++] = "--dir";
        argv[n++] = a->dir;
        argv[n++] = "--ready-fd";
        argv[n++] = ready_fd;
        if (a->config) {
                argv[n++] = "--config";
                argv[n++] = a->config;
        }
        if (a->verbose)
                argv[n++] = "--verbose";
        if (a->receive) {
                snprintf(receive_fd, sizeof(receive_fd), "%d", RECEIVE_FD);
                argv[n++] = "--receive-fd";
                argv[n++] = receive_fd;
                if (a->ram) {
                        snprintf(ram_fd, sizeof(ram_fd), "%d", RAM_FD);
                        argv[n++] = "--ram-fd";
                        argv[n++] = ram_fd;
                }
                if (a->channel) {
                        snprintf(channel_fd, sizeof(channel_fd), "%d", CHANNEL_FD);
                        argv[n++] = "--channel-fd";
                        argv[n++] = channel_fd;
                }
        } else if (a->restore) {
                argv[n++] = "--restore";
                argv[n++] = a->restore;
        } else {
                argv[n++] = "--vcpus";
                argv[n++] = vcpus;
                argv[n++] = "--memory";
                argv[n++] = memory;
                argv[n++] = "--vls";
                argv[n++] = a->vls;
                argv[n++] = "--dirty-pages";
                argv[n++] = dirty;
                if (a->payload) {
                        argv[n++] = "--payload";
                        argv[n++] = a->payload;
                }
        }
        argv[n] = NULL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return svemig_error_set(err, ENOMEM, "out of memory");
        s->fd = -1;
        s->progress = progress;
        s->done = done;
        s->userdata = userdata;
        if (pipe2(fds, O_CLOEXEC) < 0) {
                free(s);
                return svemig_error_set(err, errno, "pipe: %s", strerror(errno));
        }
        /* Above every fd number the child moves things to. */
        receive = a->receive ? fcntl(a->receive_fd, F_DUPFD_CLOEXEC, CHANNEL_FD + 1) : -1;
        ram = a->receive && a->ram ? fcntl(a->ram_fd, F_DUPFD_CLOEXEC, CHANNEL_FD + 1) : -1;
        channel = a->receive && a->channel ? fcntl(a->channel_fd, F_DUPFD_CLOEXEC, CHANNEL_FD + 1) : -1;
        dup_failed = a->receive && (receive < 0 || (a->ram && ram < 0) || (a->channel && channel < 0));
        pid = dup_failed ? -1 : fork();
        if (pid < 0) {
                r = -errno;
                close(fds[0]);
                close(fds[1]);
                close_fds(receive, ram, channel);
                free(s);
                return svemig_error_set(err, r, "cannot start the guest's VMM: fork: %s", strerror(-r));
        }
        if (pid == 0)
                child(fds[1], receive, ram, channel, binary, (char **)argv);
        close(fds[1]);
        close_fds(receive, ram, channel);
        s->pid = pid;
        s->fd = fds[0];
        fcntl(s->fd, F_SETFL, O_NONBLOCK);
        r = sd_event_add_io(event, &s->io, s->fd, EPOLLIN, ready_io, s);
        if (r < 0) {
                vmm_spawn_kill(s);
                s->finished = true;
                vmm_spawn_free(s);
                return svemig_error_set(err, r, "cannot watch the VMM: %s", strerror(-r));
        }
        *out = s;
        return 0;
}

pid_t vmm_spawn_pid(const struct vmm_spawn *s)
{
        return s->pid;
}

void vmm_spawn_kill(struct vmm_spawn *s)
{
        if (s && s->pid > 0 && !s->finished)
                kill(s->pid, SIGKILL);
}

void vmm_spawn_free(struct vmm_spawn *s)
{
        if (!s)
                return;
        if (!s->finished) {
                vmm_spawn_kill(s);
                char why[128];

                reap(s, why, sizeof(why));
        }
        sd_event_source_disable_unref(s->io);
        if (s->fd >= 0)
                close(s->fd);
        free(s->in);
        free(s);
}
