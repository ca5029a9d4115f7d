/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "ctl.h"
#include "macro.h"
#include "utf8.h"

static const struct ctl_command commands[] = {
        {"inspect", "FILE [--summary]",
         "print a snapshot or checkpoint stream for a person (or --json): header, every vcpu's "
         "registers by name (Z/P in hex, bytes beyond the VL marked), memory statistics and the "
         "verification of its checksums and digest; FILE may be - for stdin",
         ctl_inspect},
        {"verify", "FILE",
         "check every checksum, count and the digest of a stream; exits 5 on any fault, naming the "
         "offset and the problem",
         ctl_verify},
        {"checkpoint", "merge TOP OUT",
         "fold the chain of incremental checkpoints ending at TOP (a file or URL) into one full "
         "checkpoint at OUT, every link verified first",
         ctl_checkpoint},
        {"negotiate", "SET SET...",
         "compute the guest VL set a cluster of hosts can all present; SET is one host's lengths "
         "(\"128,256,512\", \"vq1,vq2\", \"0xb\" or \"none\")",
         ctl_negotiate},
        {"host-info", "",
         "show what the daemon's host offers guests: backend, kernel, the SVE vector lengths a new "
         "vcpu gets and the largest, CPUs",
         ctl_host_info},
        {"cluster", "",
         "show the daemon's live view of its cluster: each host up or down (with the reason), its "
         "backend, kernel and SVE lengths, whether it can present the guest set; the guest set every "
         "host up can present, the limiting hosts and what leaving them out would gain",
         ctl_cluster},
        {"guest", "create|start|pause|resume|run|stop|delete|show|list ...",
         "the daemon's guests: 'guest create NAME --vcpus N --memory SIZE [--vl 128,256|cluster] "
         "[--dirty-rate PAGES]', 'guest start|pause|resume|stop|show NAME', 'guest run NAME --steps N', "
         "'guest delete NAME [--force]', 'guest list' (svemigctl guest --help)",
         ctl_guest},
        {"snapshot", "NAME [PATH] [--keep N] [--stop]",
         "write guest NAME to PATH (default: the snapshot directory, keeping the newest N), with "
         "progress; the file appears whole or not at all",
         ctl_snapshot},
        {"restore", "PATH [--name NAME] [--start]",
         "restore a snapshot as a new guest; an incompatible host is refused from the header, with the "
         "reason (exit code 4)",
         ctl_restore},
        {"cancel", "ID", "cancel operation ID (the number a long operation's progress shows)", ctl_cancel},
        {"migrate", "GUEST PEER [--check]",
         "move a running guest to PEER, with progress and a report (total time, downtime, bytes, "
         "passes); --check only asks PEER whether it could take it; a refusal names the reason (exit "
         "code 4) and the guest runs on here",
         ctl_migrate},
        {"libvirt", "pin DOMAIN...|--all [--uri URI] [--check] | list [--uri URI]",
         "libvirt's domains and the cluster's SVE set: 'pin' rewrites each domain's persistent <cpu> to "
         "the set (next boot), --check only reports; 'list' shows each domain's SVE lengths and whether "
         "it is pinned (svemigctl libvirt --help)",
         ctl_libvirt_exec},
};

static void help(void)
{
        printf("Usage: svemigctl [--json] [--socket PATH] COMMAND [ARGS...]\n\n"
               "Operate svemig: SVE vector-length negotiation, snapshots and migration of arm64 KVM "
               "guests.\n\n"
               "Commands:\n");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                printf("  %s %s\n      %s\n", commands[i].name, commands[i].args, commands[i].help);
        printf("\nOptions:\n"
               "  -j, --json         machine-readable output (one JSON document on stdout)\n"
               "  -q, --quiet        no progress; commands that change a guest (create, start,\n"
               "                     snapshot, restore, cancel...) print nothing on success\n"
               "  -s, --socket PATH  the daemon's control socket\n"
               "  -h, --help         this text\n"
               "  -V, --version      the version\n"
               "\nExit codes:\n"
               "  0  success\n"
               "  1  the operation failed (the reason is printed)\n"
               "  2  bad command line or input\n"
               "  3  negotiate: no common SVE in the cluster (FPSIMD only)\n"
               "  4  a host cannot take the guest or stream (incompatible)\n"
               "  5  a stream failed verification\n"
               "  6  the daemon could not be reached\n");
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"json", no_argument, NULL, 'j'},         {"quiet", no_argument, NULL, 'q'},
                {"socket", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},      {0},
        };
        struct ctl_options opts = {0};
        int c;

        /* Names and paths travel as UTF-8 text (proto3 strings), and are printed back. */
        for (int i = 1; i < argc; i++)
                if (!utf8_valid(argv[i], strlen(argv[i]))) {
                        _cleanup_free_ char *shown = utf8_escape_dup(argv[i]);

                        return ctl_usage_error("argument %d, '%s', is not UTF-8 text", i,
                                               shown ? shown : "?");
                }
        /* Options may follow the command too, so stop at the first non-option only for the command. */
        while ((c = getopt_long(argc, argv, "+jqs:hV", longopts, NULL)) != -1) {
                switch (c) {
                case 'j':
                        opts.json = true;
                        break;
                case 'q':
                        opts.quiet = true;
                        break;
                case 's':
                        opts.socket_path = optarg;
                        break;
                case 'h':
                        help();
                        return CTL_EXIT_OK;
                case 'V':
                        printf("svemigctl %s\n", SVEMIG_VERSION);
                        return CTL_EXIT_OK;
                default:
                        return ctl_usage_error("unknown option");
                }
        }
        if (optind >= argc)
                return ctl_usage_error("no command given");

        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                if (strcmp(argv[optind], commands[i].name) == 0) {
                        /* The subcommand sees its name as argv[0] and parses its own options. */
                        optind++;
                        return commands[i].run(&opts, argc - optind + 1, argv + optind - 1);
                }
        }
        return ctl_usage_error("unknown command '%s'", argv[optind]);
}
