/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemig-vmm: runs one guest, in its own process, for svemigd.
 *
 * svemigd spawns it in a session of its own and talks to it over
 * DIR/vmm.sock. The guest lives here, not in the daemon, so that stopping or
 * restarting svemigd pauses nothing and loses nothing: a restarted daemon
 * reconnects to every VMM it finds in its state directory.
 *
 *   svemig-vmm --name NAME --dir DIR --ready-fd FD [--config FILE]
 *              (--vcpus N --memory BYTES --vls SET [--cpu-regs 0xID=0xVALUE,...]
 *                (--dirty-pages N | --payload IMAGE | --payload-fd FD |
 *                 (--kernel-fd FD | --kernel IMAGE) [--initrd-fd FD | --initrd FILE] [--cmdline TEXT]) |
 *               --restore-fd FD [--source-name NAME] | --restore-url URL |
 *               --receive-fd FD [--channel-fd FD])
 *   svemig-vmm --standby SIZE --control-fd FD [--config FILE]
 *
 * It opens the hypervisor as migrate.conf describes (the daemon's own
 * file), creates the guest (or restores it from the snapshot open on
 * --restore-fd, a client's file svemigd passed on, or from --restore-url,
 * read with migrate.conf's [store] settings; header checked first),
 * binds DIR/vmm.sock (0600), and then reports on FD: Progress frames while
 * a restore reads, and one final Response (the Guest, or why it failed,
 * with Status.incompatible when this host cannot take the stream). Then it
 * serves the socket until told to stop (or SIGTERM).
 *
 * With --standby it is the incoming RAM reserve (standby.c): SIZE bytes
 * faulted in ahead, then, on svemigd's order over FD (standby-proto.h),
 * the receiving VMM of the next guest to migrate in, as if started with
 * --name, --dir, --ready-fd, --receive-fd and --channel-fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "api-frame.h"
#include "clock.h"
#include "config.h"
#include "cpu-regs.h"
#include "log.h"
#include "macro.h"
#include "parse-number.h"
#include "svemig/guest.h"
#include "svemig/kvmreg.h"
#include "svemig/snapshot.h"
#include "vmm.h"

#define RATE_INTERVAL_USEC 1000000ull

struct args {
        const char *config;
        const char *name;
        const char *dir;
        int ready_fd;
        int restore_fd;          /* a snapshot to restore, open for reading */
        const char *restore_url; /* or a snapshot's URL (http://, https://, s3://) */
        const char *source_name; /* the client's name of that file or of the payload image; NULL: none */
        int receive_fd;          /* a peer connection whose next request is a Migrate (hello done) */
        int channel_fd;          /* with receive_fd: a unix socket svemigd passes the memory channels on */
        uint64_t standby;        /* --standby SIZE: the incoming RAM reserve, waiting on control_fd */
        int control_fd;
        unsigned vcpus;
        uint64_t memory;
        const char *vls;
        const char *cpu_regs; /* --cpu-regs: the ID register values to present (cpu-regs.h) */
        uint32_t dirty_pages;
        const char *payload;         /* a bare payload image instead of the sim workload (payload.c) */
        int payload_fd;              /* the same, as the client passed it: read, and copied into --dir */
        const char *kernel, *initrd; /* a Linux guest (linux.c): files svemig-vmm opens */
        int kernel_fd, initrd_fd;    /* the same, as the client passed them */
        const char *cmdline;
        bool verbose;
};

static int parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
        if (parse_count(s, max, out) < 0) {
                fprintf(stderr, "svemig-vmm: bad %s '%s'\n", opt, s);
                return -EINVAL;
        }
        return 0;
}

static int parse_fd(const char *opt, const char *s, int *fd)
{
        uint64_t v;
        int r = parse_u64(opt, s, INT32_MAX, &v);

        if (r == 0)
                *fd = (int)v;
        return r;
}

static int parse_argv(int argc, char **argv, struct args *a)
{
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"name", required_argument, NULL, 'n'},
                {"dir", required_argument, NULL, 'd'},
                {"ready-fd", required_argument, NULL, 'r'},
                {"restore-fd", required_argument, NULL, 'R'},
                {"receive-fd", required_argument, NULL, 'F'},
                {"source-name", required_argument, NULL, 'N'},
                {"payload-fd", required_argument, NULL, 'Q'},
                {"channel-fd", required_argument, NULL, 'H'}, /* with --receive-fd */
                {"restore-url", required_argument, NULL, 'W'},
                {"vcpus", required_argument, NULL, 'C'},
                {"memory", required_argument, NULL, 'm'},
                {"vls", required_argument, NULL, 'l'},
                {"dirty-pages", required_argument, NULL, 'D'},
                {"cpu-regs", required_argument, NULL, 'U'},
                {"payload", required_argument, NULL, 'P'},
                {"standby", required_argument, NULL, 'S'},
                {"control-fd", required_argument, NULL, 'K'}, /* with --standby */
                {"kernel", required_argument, NULL, 'k'},
                {"kernel-fd", required_argument, NULL, 'x'},
                {"initrd", required_argument, NULL, 'i'},
                {"initrd-fd", required_argument, NULL, 'y'},
                {"cmdline", required_argument, NULL, 'L'},
                {"verbose", no_argument, NULL, 'v'},
                {0},
        };
        uint64_t v;
        int c;

        a->ready_fd = -1;
        a->restore_fd = -1;
        a->payload_fd = -1;
        a->kernel_fd = -1;
        a->initrd_fd = -1;
        a->receive_fd = -1;
        a->channel_fd = -1;
        a->control_fd = -1;
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        a->config = optarg;
                        break;
                case 'n':
                        a->name = optarg;
                        break;
                case 'd':
                        a->dir = optarg;
                        break;
                case 'r':
                        if (parse_fd("--ready-fd", optarg, &a->ready_fd) < 0)
                                return -EINVAL;
                        break;
                case 'R':
                        if (parse_fd("--restore-fd", optarg, &a->restore_fd) < 0)
                                return -EINVAL;
                        break;
                case 'W':
                        if (!store_is_remote(optarg)) {
                                fprintf(stderr,
                                        "svemig-vmm: --restore-url takes http://, https:// or s3:// "
                                        "URLs, not '%s'\n",
                                        optarg);
                                return -EINVAL;
                        }
                        a->restore_url = optarg;
                        break;
                case 'N':
                        a->source_name = optarg;
                        break;
                case 'Q':
                        if (parse_fd("--payload-fd", optarg, &a->payload_fd) < 0)
                                return -EINVAL;
                        break;
                case 'F':
                        if (parse_fd("--receive-fd", optarg, &a->receive_fd) < 0)
                                return -EINVAL;
                        break;
                case 'S':
                        if (parse_u64("--standby", optarg, UINT64_MAX, &a->standby) < 0)
                                return -EINVAL;
                        break;
                case 'K':
                        if (parse_fd("--control-fd", optarg, &a->control_fd) < 0)
                                return -EINVAL;
                        break;
                case 'H':
                        if (parse_fd("--channel-fd", optarg, &a->channel_fd) < 0)
                                return -EINVAL;
                        break;
                case 'C':
                        if (parse_u64("--vcpus", optarg, UINT32_MAX, &v) < 0)
                                return -EINVAL;
                        a->vcpus = (unsigned)v;
                        break;
                case 'm':
                        if (parse_u64("--memory", optarg, UINT64_MAX, &a->memory) < 0)
                                return -EINVAL;
                        break;
                case 'l':
                        a->vls = optarg;
                        break;
                case 'U':
                        a->cpu_regs = optarg;
                        break;
                case 'D':
                        if (parse_u64("--dirty-pages", optarg, GUEST_DIRTY_PAGES_MAX, &v) < 0)
                                return -EINVAL;
                        a->dirty_pages = (uint32_t)v;
                        break;
                case 'P':
                        a->payload = optarg;
                        break;
                case 'k':
                        a->kernel = optarg;
                        break;
                case 'i':
                        a->initrd = optarg;
                        break;
                case 'x':
                        if (parse_fd("--kernel-fd", optarg, &a->kernel_fd) < 0)
                                return -EINVAL;
                        break;
                case 'y':
                        if (parse_fd("--initrd-fd", optarg, &a->initrd_fd) < 0)
                                return -EINVAL;
                        break;
                case 'L':
                        a->cmdline = optarg;
                        break;
                case 'v':
                        a->verbose = true;
                        break;
                default:
                        return -EINVAL;
                }
        }
        if (a->standby || a->control_fd >= 0) {
                if (!a->standby || a->control_fd < 0 || a->name || a->dir || a->restore_fd >= 0 ||
                    a->restore_url || a->receive_fd >= 0 || a->vcpus) {
                        fprintf(stderr,
                                "svemig-vmm --standby SIZE needs --control-fd, and takes the guest's "
                                "name, directory and connection from svemigd's order\n");
                        return -EINVAL;
                }
                return 0;
        }
        if (!a->name || !a->dir ||
            (a->restore_fd < 0 && !a->restore_url && a->receive_fd < 0 &&
             (!a->vcpus || !a->memory || !a->vls))) {
                fprintf(stderr,
                        "svemig-vmm is started by svemigd; it needs --name, --dir and either "
                        "--restore-fd, --restore-url, --receive-fd or --vcpus, --memory and --vls\n");
                return -EINVAL;
        }
        return 0;
}

/* --- the ready pipe --- */

static void ready_send(int fd, Svemig__Api__ServerMessage *msg)
{
        _cleanup_free_ uint8_t *frame = NULL;
        size_t size, off = 0;

        if (fd < 0 || api_frame_pack(&msg->base, &frame, &size) < 0)
                return;
        while (off < size) {
                ssize_t n = write(fd, frame + off, size - off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return; /* svemigd is gone; the socket is how it will find us */
                off += (size_t)n;
        }
}

static void ready_fail(int fd, int r, const struct svemig_error *err, bool incompatible)
{
        Svemig__Api__ServerMessage msg = SVEMIG__API__SERVER_MESSAGE__INIT;
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__Status status = SVEMIG__API__STATUS__INIT;

        status.code = r < 0 ? -r : EIO;
        status.message = (char *)svemig_error_str(err, r);
        status.incompatible = incompatible;
        resp.status = &status;
        msg.kind_case = SVEMIG__API__SERVER_MESSAGE__KIND_RESPONSE;
        msg.response = &resp;
        ready_send(fd, &msg);
}

static void ready_ok(struct vmm *v, int fd)
{
        Svemig__Api__ServerMessage msg = SVEMIG__API__SERVER_MESSAGE__INIT;
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__Guest g = SVEMIG__API__GUEST__INIT;

        vmm_describe(v, &g);
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_GUEST;
        resp.guest = &g;
        msg.kind_case = SVEMIG__API__SERVER_MESSAGE__KIND_RESPONSE;
        msg.response = &resp;
        ready_send(fd, &msg);
}

static int restore_progress(void *userdata, const char *phase, uint64_t done, uint64_t total)
{
        Svemig__Api__ServerMessage msg = SVEMIG__API__SERVER_MESSAGE__INIT;
        Svemig__Api__Progress p = SVEMIG__API__PROGRESS__INIT;

        p.phase = (char *)phase;
        p.done = done;
        p.total = total;
        msg.kind_case = SVEMIG__API__SERVER_MESSAGE__KIND_PROGRESS;
        msg.progress = &p;
        ready_send(*(int *)userdata, &msg);
        return 0;
}

/* --- the guest --- */

/* Opens a file the VMM is given by path (svemigd's copy, or a test's) to read. */
static int open_read(const char *path, const char *what, int *fd, struct svemig_error *err)
{
        *fd = open(path, O_RDONLY | O_CLOEXEC);
        if (*fd < 0)
                return svemig_error_set(err, errno, "cannot open the %s %s: %s", what, path,
                                        strerror(errno));
        return 0;
}

static int create_linux(struct vmm *v, const struct args *a, struct guest_config *cfg,
                        struct svemig_error *err)
{
        struct vmm_linux_args la = {
                .kernel_fd = a->kernel_fd,
                .initrd_fd = a->initrd_fd,
                .kernel_name = a->kernel ? a->kernel : (a->source_name ? a->source_name : "the kernel"),
                .initrd_name = a->initrd ? a->initrd : "the initrd",
                .cmdline = a->cmdline,
        };
        _cleanup_close_ int kfd = -1, ifd = -1;
        int r;

        if (la.kernel_fd < 0) {
                r = open_read(a->kernel, "kernel", &kfd, err);
                if (r < 0)
                        return r;
                la.kernel_fd = kfd;
        }
        if (la.initrd_fd < 0 && a->initrd) {
                r = open_read(a->initrd, "initrd", &ifd, err);
                if (r < 0)
                        return r;
                la.initrd_fd = ifd;
        }
        return vmm_linux_create(v, &la, cfg, err);
}

static int create_guest(struct vmm *v, const struct args *a, struct svemig_error *err)
{
        struct guest_config cfg = {
                .n_vcpus = a->vcpus,
                .mem_bytes = a->memory,
                .dirty_pages_per_step = a->dirty_pages,
                .log_dirty = true, /* pre-copy, when it migrates */
        };
        _cleanup_free_ struct cpubase_reg *cpu = NULL;
        int r;

        r = vqset_parse(a->vls, &v->vls, err);
        if (r < 0)
                return r;
        if (a->cpu_regs) {
                r = cpu_regs_parse(a->cpu_regs, &cpu, &cfg.n_id_regs, err);
                if (r < 0)
                        return r;
                cfg.id_regs = cpu;
        }
        cfg.sve = !vqset_empty(&v->vls);
        cfg.vls = v->vls;
        v->dirty_pages_per_step = a->dirty_pages;
        if (a->kernel || a->kernel_fd >= 0)
                r = create_linux(v, a, &cfg, err);
        else if (a->payload || a->payload_fd >= 0)
                r = vmm_payload_create(v, a->payload, a->payload_fd, a->source_name, &cfg, err);
        else
                r = guest_create(v->hv, &cfg, &v->guest, err);
        if (r < 0)
                return r;
        v->base_steps = calloc(a->vcpus, sizeof(*v->base_steps));
        return v->base_steps ? 0 : svemig_error_set(err, ENOMEM, "out of memory");
}

/* Opens the snapshot to restore: the client's file, or a URL with the stores' settings of migrate.conf. */
static int restore_open(struct vmm *v, const struct args *a, bool header_only, struct snapshot_source **src,
                        struct svemig_stream_reader **rd, struct svemig_error *err)
{
        struct store_conf sc;
        int r;

        if (!a->restore_url)
                return svemig_stream_reader_open(a->restore_fd, NULL, rd, err);
        migrate_conf_store_conf(&v->conf, &sc);
        r = snapshot_source_open(a->restore_url, &sc, header_only, NULL, src, err);
        if (r == 0)
                *rd = snapshot_source_reader(*src);
        return r;
}

/* Whether this host can take the stream; *incompatible says that is why it cannot. */
static int restore_judge(struct vmm *v, const char *name, const struct svemig_stream_info *info,
                         bool *incompatible, struct svemig_error *err)
{
        int r = snapshot_check_host(v->hv, info, err);

        if (r < 0) {
                *incompatible = true;
                return svemig_error_prefix(err, "%s cannot be restored on this host", name);
        }
        if (info->n_slots != 1)
                return svemig_error_set(err, EPROTO, "%s: %zu memory slots; this version restores one", name,
                                        info->n_slots);
        return 0;
}

/*
 * The header is judged against this host before anything else is read;
 * *incompatible says it failed. From a URL the header comes first alone (a
 * Range request), so that an incompatible host refuses before any memory
 * is downloaded. An incremental stream's parents are restored next, the
 * full one first (each read header first, then whole); then the stream
 * itself streams in. The checkpoint restored is the base of the next
 * incremental one.
 */
static int restore_guest(struct vmm *v, const struct args *a, bool *incompatible, struct svemig_error *err)
{
        struct snapshot_opts opts = {.progress = restore_progress, .userdata = (void *)&a->ready_fd};
        struct svemig_stream_reader *rd = NULL;
        struct snapshot_source *src = NULL;
        const struct svemig_stream_info *info;
        const char *name = a->restore_url   ? a->restore_url
                           : a->source_name ? a->source_name
                                            : "the snapshot";
        struct snapshot_chain chain;
        struct svemig_stream_stats stats;
        struct store_conf sc;
        int r;

        vmm_checkpoint_chain(v, &sc, &chain);
        r = restore_open(v, a, a->restore_url != NULL, &src, &rd, err);
        if (r < 0)
                return a->restore_url ? r : svemig_error_prefix(err, "%s", name);
        info = svemig_stream_reader_info(rd);
        r = restore_judge(v, name, info, incompatible, err);
        if (r < 0)
                goto out;
        v->vls = (info->vcpu_features & HV_FEAT_BIT(HV_FEAT_SVE)) ? info->guest_vls : (vqset_t){0};
        /* A dirty log, as a created guest has: for pre-copy, and for incremental checkpoints. */
        r = guest_create_empty_at(v->hv, info->vcpu_count, info->slots[0].gpa, info->slots[0].size, true,
                                  &v->guest, err);
        if (r == 0)
                r = snapshot_restore_parents(v->guest, info, &chain, &opts, err);
        if (r == 0 && a->restore_url) {
                /* What was read is the header alone: now the whole stream. */
                r = snapshot_source_close(src, 0, err);
                src = NULL;
                rd = NULL;
                if (r == 0)
                        r = restore_open(v, a, false, &src, &rd, err);
        }
        if (r == 0)
                r = snapshot_restore_into(v->guest, rd, &opts, err);
        if (r == 0)
                stats = *svemig_stream_reader_stats(rd);
        if (r < 0)
                r = svemig_error_prefix(err, "%s", name);
out:
        if (src)
                r = snapshot_source_close(src, r, err);
        else
                svemig_stream_reader_free(rd);
        if (r < 0)
                return r;

        if (a->restore_url || a->source_name)
                vmm_checkpoint_taken(v, name, &stats);
        if (vmm_take_workload_state(v, v->guest) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        v->ever_ran = true;
        return 0;
}

/* --- the socket --- */

static int bind_socket(struct vmm *v, const char *dir, int *out, struct svemig_error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        mode_t old;
        int r;

        if (asprintf(&v->socket_path, "%s/vmm.sock", dir) < 0) {
                v->socket_path = NULL;
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        if (strlen(v->socket_path) >= sizeof(sa.sun_path))
                return svemig_error_set(err, ENAMETOOLONG,
                                        "%s is too long for a Unix socket; choose a shorter state-directory",
                                        v->socket_path);
        strcpy(sa.sun_path, v->socket_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return svemig_error_set(err, errno, "socket: %s", strerror(errno));
        /* A socket left by a VMM that died is taken over; a live one is not. */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                return svemig_error_set(err, EADDRINUSE, "another VMM already serves guest %s at %s",
                                        v->name, v->socket_path);
        close(fd);
        unlink(v->socket_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return svemig_error_set(err, errno, "socket: %s", strerror(errno));
        old = umask(0177); /* 0600: only svemigd's user */
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0 || listen(fd, 16) < 0)
                return svemig_error_set(err, errno, "cannot listen on %s: %s", v->socket_path,
                                        strerror(errno));
        *out = fd;
        fd = -1;
        return 0;
}

static struct vmm_rate_sample rate_sample(const struct vmm *v)
{
        return (struct vmm_rate_sample){.steps = vmm_total_steps(v),
                                        .usec = now_ns(CLOCK_MONOTONIC) / NSEC_PER_USEC};
}

/* Each tick starts a new window; the rate spans the last two, so it always covers the latest steps. */
static int on_rate_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct vmm *v = userdata;

        (void)usec;
        v->rate_from = v->rate_tick;
        v->rate_tick = rate_sample(v);
        sd_event_source_set_time_relative(s, RATE_INTERVAL_USEC);
        return 0;
}

double vmm_dirty_rate(const struct vmm *v)
{
        struct vmm_rate_sample now = rate_sample(v);

        if (now.usec <= v->rate_from.usec || now.steps < v->rate_from.steps)
                return 0;
        return (double)(now.steps - v->rate_from.steps) * v->dirty_pages_per_step * 1e6 /
               (double)(now.usec - v->rate_from.usec);
}

void vmm_rate_restart(struct vmm *v)
{
        v->rate_from = v->rate_tick = rate_sample(v);
        if (v->rate_timer)
                (void)sd_event_source_set_time_relative(v->rate_timer, RATE_INTERVAL_USEC);
}

static void on_drained(void *userdata)
{
        struct vmm *v = userdata;

        sd_event_exit(v->event, 0);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct vmm *v = userdata;

        if (v->exiting)
                return 0;
        log_msg(LOG_NOTICE, LOG_CTX(.guest = v->name), "%s: stopping the guest and exiting",
                strsignal((int)si->ssi_signo));
        v->exiting = true;
        (void)guest_pause(v->guest, NULL);
        vmm_stop_serving(v);
        return 0;
}

void vmm_stop_serving(struct vmm *v)
{
        api_server_drain(v->server, on_drained, v);
}

static int setup_loop(struct vmm *v, struct svemig_error *err)
{
        sigset_t mask;
        int r;

        r = sd_event_default(&v->event);
        if (r < 0)
                return svemig_error_set(err, r, "cannot create the event loop: %s", strerror(-r));
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        if ((r = sd_event_add_signal(v->event, NULL, SIGTERM, on_signal, v)) < 0 ||
            (r = sd_event_add_signal(v->event, NULL, SIGINT, on_signal, v)) < 0)
                return svemig_error_set(err, r, "cannot watch signals: %s", strerror(-r));
        return 0;
}

static int serve(struct vmm *v, const struct args *a, struct svemig_error *err)
{
        struct api_server_params params = {
                .group = getegid(),
                .lookup = vmm_op_find,
                .userdata = v,
                /* Only svemigd (root, 0600 socket) connects, and stays connected while idle. */
                .idle_timeout_usec = UINT64_MAX,
        };
        int r;

        r = bind_socket(v, a->dir, &params.listen_fd, err);
        if (r < 0)
                return r;
        r = api_server_new(v->event, &params, &v->server, err);
        if (r < 0) {
                close(params.listen_fd);
                return r;
        }
        vmm_rate_restart(v);
        r = sd_event_add_time_relative(v->event, &v->rate_timer, CLOCK_MONOTONIC, RATE_INTERVAL_USEC, 0,
                                       on_rate_timer, v);
        if (r < 0)
                return svemig_error_set(err, r, "cannot set up a timer: %s", strerror(-r));
        return sd_event_source_set_enabled(v->rate_timer, SD_EVENT_ON) < 0 ? -EIO : 0;
}

static void vmm_done(struct vmm *v)
{
        api_server_free(v->server);
        sd_event_source_disable_unref(v->rate_timer);
        guest_destroy(v->guest);
        vmm_linux_done(v);
        if (v->socket_path)
                unlink(v->socket_path);
        free(v->socket_path);
        free(v->base_steps);
        hv_close(v->hv);
        sd_event_unref(v->event);
        migrate_conf_done(&v->conf);
        vmm_payload_done(v);
        vmm_checkpoint_done(v);
}

/*
 * --standby: the reserve is prepared, then svemigd's order gives what a
 * receiving VMM has on its command line. 1: receive; 0: no order came
 * (svemigd stopped: exit quietly); < 0: failed, said on the control socket.
 */
static int standby(struct args *a, struct standby_order *order, void **mem, struct svemig_error *err)
{
        struct standby_order_fds fds;
        int r;

        /* Until the order, its default signals stay: a SIGTERM ends a standby at once. */
        signal(SIGPIPE, SIG_IGN);
        r = vmm_standby(a->control_fd, a->standby, mem, order, &fds, err);
        close(a->control_fd);
        a->control_fd = -1;
        if (r <= 0)
                return r;
        a->name = order->name;
        a->dir = order->dir;
        a->ready_fd = fds.ready_fd;
        a->receive_fd = fds.receive_fd;
        a->channel_fd = fds.channel_fd;
        log_msg(LOG_INFO, LOG_CTX(.guest = a->name, .op = "migrate"),
                "standby VMM pid %d receives guest %s (%llu MiB of RAM faulted in ahead)", (int)getpid(),
                a->name, (unsigned long long)(a->standby >> 20));
        return 1;
}

int main(int argc, char **argv)
{
        struct svemig_error err = {0};
        struct standby_order order;
        struct hv_config hvcfg;
        struct vmm v = {0};
        struct args a = {0};
        bool incompatible = false;
        void *ram_mem = NULL;
        int r;

        if (parse_argv(argc, argv, &a) < 0)
                return EXIT_FAILURE;
        vmm_payload_init(&v);
        vmm_linux_init(&v);

        r = migrate_conf_load(&v.conf, a.config, &err);
        log_setup(a.verbose ? LOG_DEBUG : (r < 0 ? LOG_INFO : v.conf.log_level), false);
        if (a.standby) {
                if (r >= 0)
                        r = standby(&a, &order, &ram_mem, &err);
                else
                        (void)standby_ready_send(a.control_fd, r, &err);
                if (r <= 0) {
                        if (r < 0)
                                log_msg(LOG_ERR, NULL, "standby VMM: %s", svemig_error_str(&err, r));
                        vmm_done(&v);
                        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
                }
        }
        v.name = (char *)a.name;
        v.dir = a.dir;
        if (r >= 0)
                r = setup_loop(&v, &err);
        if (r >= 0) {
                migrate_conf_hv_config(&v.conf, &hvcfg);
                r = hv_open(&hvcfg, &v.hv, &err);
        }
        if (r >= 0)
                r = a.receive_fd >= 0 ? vmm_receive(&v, a.receive_fd, ram_mem, a.standby, a.channel_fd, &err)
                    : a.restore_fd >= 0 || a.restore_url ? restore_guest(&v, &a, &incompatible, &err)
                                                         : create_guest(&v, &a, &err);
        if (a.receive_fd >= 0)
                close(a.receive_fd);
        if (a.restore_fd >= 0)
                close(a.restore_fd);
        if (a.payload_fd >= 0)
                close(a.payload_fd);
        if (a.kernel_fd >= 0)
                close(a.kernel_fd);
        if (a.initrd_fd >= 0)
                close(a.initrd_fd);
        if (a.channel_fd >= 0)
                close(a.channel_fd); /* the migration is over: svemigd closes its end too */
        if (r >= 0)
                r = serve(&v, &a, &err);
        if (r >= 0)
                r = vmm_linux_watch(&v, &err);
        if (r < 0) {
                log_msg(LOG_ERR, LOG_CTX(.guest = a.name), "%s", svemig_error_str(&err, r));
                ready_fail(a.ready_fd, r, &err, incompatible);
                vmm_done(&v);
                return EXIT_FAILURE;
        }
        log_msg(LOG_INFO, LOG_CTX(.guest = a.name), "guest %s %s: %u vcpus, %llu MiB; serving %s", a.name,
                a.receive_fd >= 0                    ? "received"
                : a.restore_fd >= 0 || a.restore_url ? "restored"
                                                     : "created",
                guest_n_vcpus(v.guest), (unsigned long long)(guest_mem_size(v.guest) >> 20), v.socket_path);
        ready_ok(&v, a.ready_fd);
        if (a.ready_fd >= 0)
                close(a.ready_fd);

        r = sd_event_loop(v.event);
        vmm_done(&v);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
