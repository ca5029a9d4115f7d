/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What svemigctl and svemigctl-libvirt share: usage errors and the --json/--help parser. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>

#include "ctl.h"

int ctl_usage_error(const char *fmt, ...)
{
        va_list ap;

        fputs("svemigctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'svemigctl --help'.\n", stderr);
        return CTL_EXIT_USAGE;
}

int ctl_parse_json_help(const char *cmd, int argc, char **argv, void (*help)(void), bool *json)
{
        static const struct option longopts[] = {
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c;

        /* Errors are ours to word; getopt would name the subcommand as the program. */
        opterr = 0;
        optind = 0;
        while ((c = getopt_long(argc, argv, "jh", longopts, NULL)) != -1) {
                switch (c) {
                case 'j':
                        *json = true;
                        break;
                case 'h':
                        help();
                        return CTL_EXIT_OK;
                default:
                        return ctl_usage_error("%s: unknown option '%s'", cmd, argv[optind - 1]);
                }
        }
        return -1;
}
