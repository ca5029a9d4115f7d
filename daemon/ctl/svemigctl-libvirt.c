/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl-libvirt: 'svemigctl libvirt ...' (ctl-libvirt.c), which
 * svemigctl runs with its own options first:
 *     svemigctl-libvirt [--json] [--quiet] [--socket PATH] libvirt ARGS...
 */
#include <getopt.h>
#include <string.h>

#include "ctl.h"

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                {"json", no_argument, NULL, 'j'},
                {"quiet", no_argument, NULL, 'q'},
                {"socket", required_argument, NULL, 's'},
                {0},
        };
        struct ctl_options opts = {0};
        int c;

        while ((c = getopt_long(argc, argv, "+jqs:", longopts, NULL)) != -1) {
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
                default:
                        return ctl_usage_error("unknown option");
                }
        }
        if (optind >= argc || strcmp(argv[optind], "libvirt") != 0)
                return ctl_usage_error("svemigctl-libvirt is run by 'svemigctl libvirt ...'");
        return ctl_libvirt(&opts, argc - optind, argv + optind);
}
