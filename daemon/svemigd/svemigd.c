/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigd: one per host, under systemd. It reads migrate.conf, opens the
 * hypervisor, serves the control socket (handed over by svemigd.socket, or
 * bound here when started by hand) on an sd-event loop, and tells systemd
 * how it is doing (READY, STATUS, WATCHDOG, STOPPING).
 *
 * Stopping (SIGTERM, SIGINT) pauses nothing and loses nothing: no new
 * requests are started, those in flight finish and are answered, every
 * client is closed, and the daemon exits 0. Guests are not paused, stopped
 * or snapshotted because the daemon stops; what happens to a guest is only
 * ever what someone asked for. That holds because a guest does not live in
 * this process: each runs in its own svemig-vmm (daemon/vmm/vmm.h), in a session
 * of its own, which outlives the daemon (svemigd.service has
 * KillMode=process). A restarted svemigd reads its records and reconnects to
 * every VMM still running.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "api-ops.h"
#include "cluster-view.h"
#include "config.h"
#include "guest-registry.h"
#include "log.h"
#include "peer-tls.h"
#include "macro.h"
#include "libvirt-watch.h"
#include "op-libvirt.h"
#include "ram-reserve.h"
#include "svemigd.h"

struct args {
        const char *config;
        bool check_config;
        bool foreground;
        bool verbose;
};

static void help(void)
{
        printf("Usage: svemigd [OPTIONS]\n\n"
               "The svemig daemon: runs, snapshots, restores and migrates arm64 KVM guests using SVE,\n"
               "and serves svemigctl on its control socket. Normally started by systemd (svemigd.socket,\n"
               "svemigd.service).\n\n"
               "Options:\n"
               "  -c, --config FILE   read FILE instead of %s\n"
               "      --check-config  validate the configuration, print it as svemigd sees it, and exit\n"
               "                      (0 when valid; 1 with FILE:LINE: reason when not)\n"
               "  -f, --foreground    log to stderr even under systemd\n"
               "  -v, --verbose       log debug messages too\n"
               "  -h, --help          this text\n"
               "  -V, --version       the version\n",
               SVEMIG_DEFAULT_CONFIG);
}

static int parse_argv(int argc, char **argv, struct args *args)
{
        enum {
                ARG_CHECK_CONFIG = 0x100
        };
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"check-config", no_argument, NULL, ARG_CHECK_CONFIG},
                {"foreground", no_argument, NULL, 'f'},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {0},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:fvhV", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        args->config = optarg;
                        break;
                case ARG_CHECK_CONFIG:
                        args->check_config = true;
                        break;
                case 'f':
                        args->foreground = true;
                        break;
                case 'v':
                        args->verbose = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case 'V':
                        printf("svemigd %s\n", SVEMIG_VERSION);
                        return 0;
                default:
                        fprintf(stderr, "Try 'svemigd --help'.\n");
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "svemigd: unexpected argument '%s'\nTry 'svemigd --help'.\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

/* mkdir -p, the last component with 'mode'. */
static int mkdir_parents(const char *path, mode_t mode, struct svemig_error *err)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return svemig_error_set(err, errno, "cannot create %s: %s", p, strerror(errno));
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return svemig_error_set(err, errno, "cannot create %s: %s", p, strerror(errno));
        return 0;
}

/* Refuses to take over a socket another daemon still answers on; removes a dead one. */
static int remove_stale_socket(const char *path, struct svemig_error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : svemig_error_set(err, errno, "%s: %s", path, strerror(errno));
        if (!S_ISSOCK(st.st_mode))
                return svemig_error_set(err, EEXIST,
                                        "%s exists and is not a socket; remove it or set another socket in "
                                        "migrate.conf",
                                        path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return svemig_error_set(err, errno, "socket: %s", strerror(errno));
        strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                return svemig_error_set(
                        err, EADDRINUSE,
                        "another svemigd is already listening on %s; stop it first, or give this "
                        "one another socket in migrate.conf",
                        path);
        if (unlink(path) < 0 && errno != ENOENT)
                return svemig_error_set(err, errno, "cannot remove the stale socket %s: %s", path,
                                        strerror(errno));
        return 0;
}

static int bind_own_socket(struct svemigd *d, int *out, struct svemig_error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        const char *path = d->conf.socket_path;
        _cleanup_free_ char *dir = strdup(path);
        _cleanup_close_ int fd = -1;
        mode_t old_umask;
        char *slash;
        int r;

        if (!dir)
                return svemig_error_set(err, ENOMEM, "out of memory");
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                r = mkdir_parents(dir, 0755, err);
                if (r < 0)
                        return svemig_error_prefix(err, "the socket's directory");
        }
        r = remove_stale_socket(path, err);
        if (r < 0)
                return r;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return svemig_error_set(err, errno, "socket: %s", strerror(errno));
        strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
        /* Created 0660 from the start, never briefly open to all. */
        old_umask = umask(0117);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old_umask);
        if (r < 0)
                return svemig_error_set(err, errno, "cannot bind the control socket %s: %s", path,
                                        strerror(errno));
        if (d->conf.socket_gid != getegid() && chown(path, (uid_t)-1, d->conf.socket_gid) < 0) {
                r = -errno;
                unlink(path);
                return svemig_error_set(err, r, "cannot give the control socket %s to group %s: %s", path,
                                        d->conf.socket_group, strerror(-r));
        }
        if (chmod(path, 0660) < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                unlink(path);
                return svemig_error_set(err, r, "cannot listen on %s: %s", path, strerror(-r));
        }
        d->bound_socket = strdup(path);
        d->listen_path = strdup(path);
        if (!d->bound_socket || !d->listen_path) {
                unlink(path);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        *out = fd;
        fd = -1;
        return 0;
}

/* Where a passed socket listens, for the log: it may differ from socket= in migrate.conf. */
static char *socket_path_of(int fd)
{
        struct sockaddr_un sa = {0};
        socklen_t len = sizeof(sa);

        if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ||
            len <= offsetof(struct sockaddr_un, sun_path) || sa.sun_path[0] == '\0')
                return strdup("(an unnamed socket)");
        return strndup(sa.sun_path, len - offsetof(struct sockaddr_un, sun_path));
}

/* The socket systemd passed (svemigd.socket), else our own. */
static int open_control_socket(struct svemigd *d, int *out, struct svemig_error *err)
{
        int n, fd, r;

        n = sd_listen_fds(true);
        if (n < 0)
                return svemig_error_set(err, n, "cannot take the sockets systemd passed: %s", strerror(-n));
        if (n == 0)
                return bind_own_socket(d, out, err);
        if (n > 1)
                return svemig_error_set(
                        err, EINVAL,
                        "systemd passed %d sockets, svemigd takes one; give svemigd.socket a single "
                        "ListenStream=",
                        n);
        fd = SD_LISTEN_FDS_START;
        r = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0);
        if (r <= 0)
                return svemig_error_set(
                        err, r < 0 ? r : EINVAL,
                        "the socket systemd passed is not a listening Unix stream socket; check "
                        "ListenStream= in svemigd.socket");
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return svemig_error_set(err, errno, "cannot set up the passed socket: %s", strerror(errno));
        d->socket_activated = true;
        d->listen_path = socket_path_of(fd);
        *out = fd;
        return 0;
}

static void peers_stopped(void *userdata)
{
        struct svemigd *d = userdata;

        log_info("every request is answered and every client closed; exiting");
        sd_event_exit(d->event, 0);
}

static void drained(void *userdata)
{
        struct svemigd *d = userdata;

        /* What peers asked for (a migration coming in) finishes too. */
        cluster_view_stop(d->cluster, peers_stopped, d);
}

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct svemigd *d = userdata;

        if (d->stopping) {
                log_notice("already stopping; waiting for %u request(s) in flight",
                           api_server_n_calls(d->server));
                return 0;
        }
        d->stopping = true;
        sd_notifyf(false, "STOPPING=1\nSTATUS=Stopping: finishing %u request(s) for %u client(s)",
                   api_server_n_calls(d->server), api_server_n_clients(d->server));
        log_info("stopping on %s: finishing %u request(s) in flight; guests are left as they are",
                 strsignal((int)si->ssi_signo), api_server_n_calls(d->server));
        /* No new peer connections from now on; idle ones close. */
        cluster_view_stop(d->cluster, NULL, NULL);
        api_server_drain(d->server, drained, d);
        return 0;
}

static int setup_event_loop(struct svemigd *d, struct svemig_error *err)
{
        sigset_t mask;
        int r;

        r = sd_event_default(&d->event);
        if (r < 0)
                return svemig_error_set(err, r, "cannot create the event loop: %s", strerror(-r));

        /* Signals are taken through the loop (signalfd), so block their default action. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        /* The VMMs it starts are reaped through the loop (sd_event_add_child). */
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        /*
         * A stop outranks requests that arrive with it: once it is seen, what
         * is read next is refused (ESHUTDOWN), not started.
         */
        for (unsigned i = 0; i < 2; i++) {
                sd_event_source *source;

                r = sd_event_add_signal(d->event, &source, i ? SIGINT : SIGTERM, on_stop_signal, d);
                if (r < 0)
                        return svemig_error_set(err, r, "cannot watch signals: %s", strerror(-r));
                sd_event_source_set_priority(source, SD_EVENT_PRIORITY_IMPORTANT);
                /* The loop owns it from here. */
                sd_event_source_set_floating(source, true);
                sd_event_source_unref(source);
        }

        /* WATCHDOG=1 at half of WATCHDOG_USEC, from the loop itself: a stuck loop stops petting. */
        r = sd_event_set_watchdog(d->event, true);
        if (r < 0)
                return svemig_error_set(err, r, "cannot set up the watchdog: %s", strerror(-r));
        if (r > 0)
                log_debug("systemd watchdog enabled");
        return 0;
}

/* libvirt's domains changed: the peers hear which could not move. */
static void libvirt_changed(void *userdata)
{
        libvirt_stuck_refresh(userdata);
}

static int start(struct svemigd *d, struct svemig_error *err)
{
        struct api_server_params params = {
                .group = d->conf.socket_gid,
                /* A gid given by number is named by the server, if it has a name. */
                .group_name = d->conf.socket_group && !isdigit((unsigned char)d->conf.socket_group[0])
                                      ? d->conf.socket_group
                                      : NULL,
                .lookup = api_op_find,
                .userdata = d,
                .max_clients = d->conf.max_clients,
                .max_clients_per_uid = d->conf.max_clients_per_user,
                .idle_timeout_usec = (uint64_t)d->conf.client_timeout_ms * 1000ull,
        };
        struct hv_config hvcfg;
        struct hv_caps caps;
        char vls[256];
        int r;

        r = setup_event_loop(d, err);
        if (r < 0)
                return r;

        r = mkdir_parents(d->conf.state_dir, 0750, err);
        if (r < 0)
                return svemig_error_prefix(err, "the state directory (state-directory in %s)",
                                           d->conf.path ? d->conf.path : "migrate.conf");

        migrate_conf_hv_config(&d->conf, &hvcfg);
        r = hv_open(&hvcfg, &d->hv, err);
        if (r < 0)
                return svemig_error_prefix(err, "cannot open the %s hypervisor backend",
                                           migrate_conf_backend_name(d->conf.backend));
        r = hv_get_caps(d->hv, &caps);
        if (r < 0)
                return svemig_error_set(err, r, "cannot read the hypervisor's capabilities: %s",
                                        strerror(-r));

        r = admit_limits_init(&d->conf, &d->admit, err);
        if (r < 0)
                return r;
        /* The guests it had, and their VMMs, which ran on while it was away. */
        r = guest_registry_open(d->event, d->conf.state_dir, &d->guests, err);
        if (r < 0)
                return r;

        /* Peer TLS first: without its files no peer is reached or served. */
        r = migrate_conf_tls_load(&d->conf, &d->tls, err);
        if (r < 0)
                return r;
        d->transport = (struct peer_transport){.secure = peer_tls_secure_dial, .userdata = d->tls};
        if (!d->conf.peer_tls)
                log_warning("peer TLS is off ([cluster] peer-tls = no in %s): peers are neither "
                            "authenticated nor encrypted, and any host that can reach the peer port may "
                            "claim a peer's name; for a lab only",
                            d->conf.path ? d->conf.path : "migrate.conf");
        else if (d->tls)
                log_info("peer TLS on: peers must present a certificate from %s", d->conf.tls_ca);

        /* The peer listener and the links to the peers: the cluster view. */
        r = cluster_view_new(d, &d->cluster, err);
        if (r < 0)
                return r;
        /* libvirt's domains, followed by a thread of its own: libvirtd may come and go. */
        if (d->conf.libvirt_uri) {
                r = libvirt_watch_new(d->event, d->conf.libvirt_uri, libvirt_changed, d, &d->libvirt, err);
                if (r < 0)
                        return r;
        }
        /* Faulted in by a standby VMM of its own: the daemon serves meanwhile. */
        if (d->conf.incoming_reserve) {
                char config[PATH_MAX];

                /* The standby runs in / : it gets the configuration by its absolute name. */
                if (d->conf.path && !realpath(d->conf.path, config))
                        return svemig_error_set(err, errno, "cannot find the configuration %s again: %s",
                                                d->conf.path, strerror(errno));
                r = ram_reserve_new(d->event, d->conf.incoming_reserve, d->conf.path ? config : NULL,
                                    d->verbose, &d->reserve, err);
                if (r < 0)
                        return r;
        }

        r = open_control_socket(d, &params.listen_fd, err);
        if (r < 0)
                return r;
        r = api_server_new(d->event, &params, &d->server, err);
        if (r < 0)
                return r;

        vqset_format(&caps.vls, VQSET_FORMAT_BITS, vls, sizeof(vls));
        log_info("svemigd %s on %s: %s backend (%s), host VLS %s bits; serving %s%s", SVEMIG_VERSION,
                 d->conf.host_name, caps.backend, caps.kernel, vls, d->listen_path ? d->listen_path : "?",
                 d->socket_activated ? " (socket-activated)" : "");
        sd_notifyf(false, "READY=1\nSTATUS=Serving on %s: %s backend, host VLS %s bits",
                   d->listen_path ? d->listen_path : "?", caps.backend, vls);
        return 0;
}

static void svemigd_done(struct svemigd *d)
{
        api_server_free(d->server);
        cluster_view_free(d->cluster);
        libvirt_watch_free(d->libvirt);
        ram_reserve_free(d->reserve);
        /* Only our connections to the VMMs close: the guests run on. */
        guest_registry_free(d->guests);
        if (d->bound_socket)
                unlink(d->bound_socket);
        free(d->bound_socket);
        free(d->listen_path);
        hv_close(d->hv);
        peer_tls_creds_free(d->tls);
        sd_event_unref(d->event);
        migrate_conf_done(&d->conf);
}

int main(int argc, char **argv)
{
        struct svemigd d = {0};
        struct svemig_error err = {0};
        struct args args = {0};
        int r;

        r = parse_argv(argc, argv, &args);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        r = migrate_conf_load(&d.conf, args.config, &err);
        if (args.check_config) {
                if (r >= 0) {
                        /* The files as svemigd would use them: readable, the key the certificate's. */
                        r = migrate_conf_tls_load(&d.conf, &d.tls, &err);
                        peer_tls_creds_free(d.tls);
                        d.tls = NULL;
                        if (r < 0)
                                migrate_conf_done(&d.conf);
                }
                if (r < 0) {
                        fprintf(stderr, "%s\n", err.msg);
                        return EXIT_FAILURE;
                }
                migrate_conf_print(&d.conf, stdout);
                migrate_conf_done(&d.conf);
                return EXIT_SUCCESS;
        }
        d.verbose = args.verbose;
        log_setup(args.verbose ? LOG_DEBUG : (r < 0 ? LOG_INFO : d.conf.log_level), args.foreground);
        if (r >= 0)
                r = start(&d, &err);
        if (r < 0) {
                log_error("%s", err.msg);
                sd_notifyf(false, "STATUS=Failed to start: %s\nERRNO=%d", err.msg, -r);
                svemigd_done(&d);
                return EXIT_FAILURE;
        }

        r = sd_event_loop(d.event);
        if (r < 0)
                log_error("the event loop failed: %s", strerror(-r));
        sd_notify(false, "STATUS=Stopped");
        svemigd_done(&d);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
