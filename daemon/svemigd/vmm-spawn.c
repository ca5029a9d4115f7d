/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api-frame.h"
#include "config.h"
#include "macro.h"
#include "standby-proto.h"
#include "vmm-spawn.h"

/*
 * The fds a VMM is given, from 3 up in this order: the ready pipe, then for
 * a receiving VMM the peer connection (--receive-fd) and the socket its
 * memory channels arrive on (--channel-fd); a standby's control socket.
 */
#define FIRST_FD 3
#define FDS_MAX  3

struct vmm_spawn {
        sd_event *event;
        pid_t pid;
        int fd;
        sd_event_source *io;
        sd_event_source *child; /* its exit, awaited on the loop once its pipe ended without an answer */
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

void vmm_wait_exit(pid_t pid, siginfo_t *si)
{
        while (waitid(P_PID, (id_t)pid, si, WEXITED) < 0 && errno == EINTR)
                ;
}

/* After the pipe's end: the VMM has exited or is about to; reap it. */
static void reap(struct vmm_spawn *s, char *why, size_t len)
{
        siginfo_t si = {0};

        if (s->pid <= 0)
                return;
        vmm_wait_exit(s->pid, &si);
        vmm_describe_exit(si.si_code, si.si_status, why, len);
        s->pid = 0;
}

static int on_exit_unready(sd_event_source *source, const siginfo_t *si, void *userdata)
{
        struct vmm_spawn *s = userdata;
        char what[128], why[160];

        vmm_describe_exit(si->si_code, si->si_status, what, sizeof(what));
        /* Not freed in its own callback: sd-event reaps the child after it returns. The loop keeps it. */
        (void)sd_event_source_set_floating(s->child, true);
        s->child = sd_event_source_unref(s->child);
        s->pid = 0;
        snprintf(why, sizeof(why), "svemig-vmm %s before it was ready", what);
        s->done(s, NULL, why, s->userdata);
        return 0;
}

/* A failed VMM's exit: sd-event reaps it after this (a NULL handler would end the loop). */
static int on_exit_reaped(sd_event_source *source, const siginfo_t *si, void *userdata)
{
        return 0;
}

/*
 * The VMM answered, or its pipe ended. svemigd's loop never waits for a
 * process: one that failed is reaped by sd-event when it exits (a failed
 * VMM still unmaps its guest's memory first), and one that went without an
 * answer is reported once its exit says how.
 */
static void finish(struct vmm_spawn *s, const Svemig__Api__Response *resp)
{
        s->io = sd_event_source_disable_unref(s->io);
        if (s->fd >= 0)
                close(s->fd);
        s->fd = -1;
        s->finished = true;
        if (!resp && sd_event_add_child(s->event, &s->child, s->pid, WEXITED, on_exit_unready, s) >= 0)
                return;
        if (!resp) {
                char what[128], why[160];

                reap(s, what, sizeof(what));
                snprintf(why, sizeof(why), "svemig-vmm %s before it was ready", what);
                s->done(s, NULL, why, s->userdata);
                return;
        }
        if (resp->status && resp->status->code != 0) {
                sd_event_source *reaper = NULL;

                if (sd_event_add_child(s->event, &reaper, s->pid, WEXITED, on_exit_reaped, NULL) >= 0) {
                        (void)sd_event_source_set_floating(reaper, true);
                        sd_event_source_unref(reaper);
                        s->pid = 0;
                } else {
                        char what[128];

                        reap(s, what, sizeof(what));
                }
        }
        s->done(s, resp, NULL, s->userdata);
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

/*
 * Between fork and exec: only async-signal-safe calls. fds[i] becomes fd
 * FIRST_FD + i (fds[] are all above FIRST_FD + n: fork_vmm() made sure).
 */
_Noreturn static void child(const int *fds, size_t n, const char *binary, char **argv)
{
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
        for (size_t i = 0; i < n; i++)
                if (dup2(fds[i], FIRST_FD + (int)i) < 0)
                        _exit(126);
        null = open("/dev/null", O_RDONLY);
        if (null >= 0 && null != STDIN_FILENO) {
                dup2(null, STDIN_FILENO);
                close(null);
        }
        close_range((unsigned)(FIRST_FD + (int)n), ~0u, 0);
        if (chdir("/") < 0)
                _exit(126);
        execv(binary, argv);
        _exit(127);
}

/*
 * Forks and execs the VMM with fds[0..n) as fds FIRST_FD.. (each stays the
 * caller's; close-on-exec copies above them are made for the child).
 */
static int fork_vmm(const int *fds, size_t n, const char *binary, const char **argv, pid_t *out,
                    struct svemig_error *err)
{
        int copies[FDS_MAX];
        size_t made = 0;
        pid_t pid = -1;
        int r = 0;

        for (; made < n; made++) {
                copies[made] = fcntl(fds[made], F_DUPFD_CLOEXEC, FIRST_FD + FDS_MAX);
                if (copies[made] < 0) {
                        r = -errno;
                        break;
                }
        }
        if (r == 0) {
                pid = fork();
                if (pid < 0)
                        r = -errno;
                else if (pid == 0)
                        child(copies, n, binary, (char **)argv);
        }
        for (size_t i = 0; i < made; i++)
                close(copies[i]);
        if (r < 0)
                return svemig_error_set(err, r, "cannot start svemig-vmm: %s", strerror(-r));
        *out = pid;
        return 0;
}

static struct vmm_spawn *spawn_alloc(vmm_spawn_progress_t progress, vmm_spawn_done_t done, void *userdata)
{
        struct vmm_spawn *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->fd = -1;
        s->progress = progress;
        s->done = done;
        s->userdata = userdata;
        return s;
}

/* Watches a new VMM's ready pipe (its read end now s's); on failure the VMM is killed and reaped, s freed.
 */
static int watch(sd_event *event, struct vmm_spawn *s, pid_t pid, int ready_fd, struct vmm_spawn **out,
                 struct svemig_error *err)
{
        int r;

        s->event = event;
        s->pid = pid;
        s->fd = ready_fd;
        fcntl(s->fd, F_SETFL, O_NONBLOCK);
        r = sd_event_add_io(event, &s->io, s->fd, EPOLLIN, ready_io, s);
        if (r < 0) {
                vmm_spawn_free(s);
                return svemig_error_set(err, r, "cannot watch the VMM: %s", strerror(-r));
        }
        *out = s;
        return 0;
}

/* vmm_spawn_binary(), if it can be run; what: the VMM's role, for the reason. */
static int runnable_binary(const char *what, const char **out, struct svemig_error *err)
{
        const char *binary = vmm_spawn_binary();

        if (access(binary, X_OK) < 0)
                return svemig_error_set(err, errno,
                                        "cannot run %s %s: %s (is svemig installed completely? "
                                        "SVEMIG_VMM names another)",
                                        what, binary, strerror(errno));
        *out = binary;
        return 0;
}

int vmm_spawn(sd_event *event, const struct vmm_spawn_args *a, vmm_spawn_progress_t progress,
              vmm_spawn_done_t done, void *userdata, struct vmm_spawn **out, struct svemig_error *err)
{
        char vcpus[16], memory[32], dirty[16], ready_fd[8], receive_fd[8], channel_fd[8], file_fd[8],
                kernel_fd[8], initrd_fd[8];
        int fds[2], pass[FDS_MAX], r;
        const char *argv[40], *binary;
        size_t n = 0, n_pass = 0;
        struct vmm_spawn *s;
        pid_t pid;

        r = runnable_binary("the guest's VMM", &binary, err);
        if (r < 0)
                return r;
        snprintf(vcpus, sizeof(vcpus), "%u", a->vcpus);
        snprintf(memory, sizeof(memory), "%llu", (unsigned long long)a->memory);
        snprintf(dirty, sizeof(dirty), "%u", a->dirty_pages);
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
        if (pipe2(fds, O_CLOEXEC) < 0)
                return svemig_error_set(err, errno, "pipe: %s", strerror(errno));
        snprintf(ready_fd, sizeof(ready_fd), "%d", FIRST_FD + (int)n_pass);
        pass[n_pass++] = fds[1];
        if (a->receive_fd >= 0) {
                snprintf(receive_fd, sizeof(receive_fd), "%d", FIRST_FD + (int)n_pass);
                pass[n_pass++] = a->receive_fd;
                argv[n++] = "--receive-fd";
                argv[n++] = receive_fd;
                if (a->channel_fd >= 0) {
                        snprintf(channel_fd, sizeof(channel_fd), "%d", FIRST_FD + (int)n_pass);
                        pass[n_pass++] = a->channel_fd;
                        argv[n++] = "--channel-fd";
                        argv[n++] = channel_fd;
                }
        } else if (a->restore_fd >= 0) {
                snprintf(file_fd, sizeof(file_fd), "%d", FIRST_FD + (int)n_pass);
                pass[n_pass++] = a->restore_fd;
                argv[n++] = "--restore-fd";
                argv[n++] = file_fd;
        } else if (a->restore_url) {
                argv[n++] = "--restore-url";
                argv[n++] = a->restore_url;
        } else {
                argv[n++] = "--vcpus";
                argv[n++] = vcpus;
                argv[n++] = "--memory";
                argv[n++] = memory;
                argv[n++] = "--vls";
                argv[n++] = a->vls;
                argv[n++] = "--dirty-pages";
                argv[n++] = dirty;
                if (a->cpu_regs) {
                        argv[n++] = "--cpu-regs";
                        argv[n++] = a->cpu_regs;
                }
                if (a->kernel_fd >= 0) {
                        snprintf(kernel_fd, sizeof(kernel_fd), "%d", FIRST_FD + (int)n_pass);
                        pass[n_pass++] = a->kernel_fd;
                        argv[n++] = "--kernel-fd";
                        argv[n++] = kernel_fd;
                        if (a->initrd_fd >= 0) {
                                snprintf(initrd_fd, sizeof(initrd_fd), "%d", FIRST_FD + (int)n_pass);
                                pass[n_pass++] = a->initrd_fd;
                                argv[n++] = "--initrd-fd";
                                argv[n++] = initrd_fd;
                        }
                        if (a->cmdline && a->cmdline[0]) {
                                argv[n++] = "--cmdline";
                                argv[n++] = a->cmdline;
                        }
                } else if (a->payload_fd >= 0) {
                        snprintf(file_fd, sizeof(file_fd), "%d", FIRST_FD + (int)n_pass);
                        pass[n_pass++] = a->payload_fd;
                        argv[n++] = "--payload-fd";
                        argv[n++] = file_fd;
                } else if (a->payload) {
                        argv[n++] = "--payload";
                        argv[n++] = a->payload;
                }
        }
        if (a->source_name && a->receive_fd < 0 && !a->restore_url) {
                argv[n++] = "--source-name";
                argv[n++] = a->source_name;
        }
        argv[n] = NULL;

        s = spawn_alloc(progress, done, userdata);
        r = s ? fork_vmm(pass, n_pass, binary, argv, &pid, err)
              : svemig_error_set(err, ENOMEM, "out of memory");
        close(fds[1]);
        if (r < 0) {
                close(fds[0]);
                free(s);
                return r;
        }
        return watch(event, s, pid, fds[0], out, err);
}

int vmm_spawn_standby(const char *config, bool verbose, uint64_t size, pid_t *pid, int *control_fd,
                      struct svemig_error *err)
{
        char size_arg[32], control_arg[8];
        const char *argv[10], *binary;
        size_t n = 0;
        int sv[2], r;

        r = runnable_binary("the standby VMM", &binary, err);
        if (r < 0)
                return r;
        snprintf(size_arg, sizeof(size_arg), "%llu", (unsigned long long)size);
        snprintf(control_arg, sizeof(control_arg), "%d", FIRST_FD);
        argv[n++] = "svemig-vmm";
        argv[n++] = "--standby";
        argv[n++] = size_arg;
        argv[n++] = "--control-fd";
        argv[n++] = control_arg;
        if (config) {
                argv[n++] = "--config";
                argv[n++] = config;
        }
        if (verbose)
                argv[n++] = "--verbose";
        argv[n] = NULL;
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return svemig_error_set(err, errno, "socketpair: %s", strerror(errno));
        r = fork_vmm(&sv[1], 1, binary, argv, pid, err);
        close(sv[1]);
        if (r < 0) {
                close(sv[0]);
                return r;
        }
        fcntl(sv[0], F_SETFL, O_NONBLOCK);
        *control_fd = sv[0];
        return 0;
}

int vmm_spawn_handoff(sd_event *event, pid_t pid, int control_fd, const struct vmm_spawn_args *a,
                      vmm_spawn_progress_t progress, vmm_spawn_done_t done, void *userdata,
                      struct vmm_spawn **out, struct svemig_error *err)
{
        struct vmm_spawn *s;
        int fds[2], r;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return svemig_error_set(err, errno, "pipe: %s", strerror(errno));
        s = spawn_alloc(progress, done, userdata);
        r = s ? standby_order_send(control_fd, a->name, a->dir, a->receive_fd, fds[1], a->channel_fd, err)
              : svemig_error_set(err, ENOMEM, "out of memory");
        close(fds[1]);
        if (r < 0) {
                siginfo_t si;

                close(fds[0]);
                free(s);
                /* Dead or wedged; either way of no use to anyone now. */
                kill(pid, SIGKILL);
                vmm_wait_exit(pid, &si);
                return r;
        }
        return watch(event, s, pid, fds[0], out, err);
}

pid_t vmm_spawn_pid(const struct vmm_spawn *s)
{
        return s->pid;
}

void vmm_spawn_kill(struct vmm_spawn *s)
{
        if (s && s->pid > 0 && (!s->finished || s->child))
                kill(s->pid, SIGKILL);
}

void vmm_spawn_free(struct vmm_spawn *s)
{
        if (!s)
                return;
        if (!s->finished || s->child) {
                char why[128];

                vmm_spawn_kill(s);
                s->child = sd_event_source_disable_unref(s->child);
                reap(s, why, sizeof(why));
        }
        sd_event_source_disable_unref(s->io);
        if (s->fd >= 0)
                close(s->fd);
        free(s->in);
        free(s);
}
