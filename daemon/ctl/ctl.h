/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svemigctl subcommands. Each lives in its own daemon/ctl-<name>.c and
 * returns the process exit code (see EXIT CODES in svemigctl --help).
 */

#include <stdbool.h>
#include <stdint.h>

enum ctl_exit {
        CTL_EXIT_OK = 0,
        CTL_EXIT_FAILURE = 1,      /* the operation failed; the reason is printed */
        CTL_EXIT_USAGE = 2,        /* bad command line or input */
        CTL_EXIT_NO_SVE = 3,       /* negotiate: the cluster has no common SVE (FPSIMD only) */
        CTL_EXIT_INCOMPATIBLE = 4, /* a host cannot take a guest or stream */
        CTL_EXIT_CORRUPT = 5,      /* a stream failed verification */
        CTL_EXIT_DAEMON = 6,       /* the daemon could not be reached */
};

struct ctl_options {
        bool json;
        bool quiet;
        const char *socket_path;
};

struct ctl_command {
        const char *name;
        const char *args;
        const char *help;
        int (*run)(const struct ctl_options *opts, int argc, char **argv);
};

/*
 * Subcommands get argv[0] = their name and parse their own options with
 * getopt_long after resetting optind = 0; they accept --json too.
 */
int ctl_negotiate(const struct ctl_options *opts, int argc, char **argv);
int ctl_inspect(const struct ctl_options *opts, int argc, char **argv);
int ctl_verify(const struct ctl_options *opts, int argc, char **argv);
int ctl_checkpoint(const struct ctl_options *opts, int argc, char **argv);
int ctl_host_info(const struct ctl_options *opts, int argc, char **argv);
int ctl_guest(const struct ctl_options *opts, int argc, char **argv);
int ctl_snapshot(const struct ctl_options *opts, int argc, char **argv);
int ctl_restore(const struct ctl_options *opts, int argc, char **argv);
int ctl_cancel(const struct ctl_options *opts, int argc, char **argv);
int ctl_cluster(const struct ctl_options *opts, int argc, char **argv);
int ctl_migrate(const struct ctl_options *opts, int argc, char **argv);
/* ctl-libvirt.c, in svemigctl-libvirt; svemigctl runs that through ctl_libvirt_exec(). */
int ctl_libvirt(const struct ctl_options *opts, int argc, char **argv);
int ctl_libvirt_exec(const struct ctl_options *opts, int argc, char **argv);

/*
 * Parses the options of a subcommand that takes only --json and --help:
 * returns -1 to go on (optind at the first argument, *json set), or the
 * exit code to return (after --help, or a usage error naming cmd).
 */
int ctl_parse_json_help(const char *cmd, int argc, char **argv, void (*help)(void), bool *json);

/* Prints "svemigctl: <what>" and returns CTL_EXIT_USAGE. */
int ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
