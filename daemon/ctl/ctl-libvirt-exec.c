/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl libvirt: run by svemigctl-libvirt, its own executable, so that
 * only it loads the libvirt client library (some 50 shared libraries, which
 * would slow every other svemigctl command several times over).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"
#include "macro.h"

/* Beside svemigctl (the build tree, an install), else in libexecdir. */
static const char *helper_path(void)
{
        static char path[PATH_MAX];
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        char *slash;

        if (n > 0) {
                self[n] = '\0';
                slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        snprintf(path, sizeof(path), "%s/svemigctl-libvirt", self);
                        if (access(path, X_OK) == 0)
                                return path;
                }
        }
        snprintf(path, sizeof(path), "%s", SVEMIG_LIBEXECDIR "/svemig/svemigctl-libvirt");
        return path;
}

int ctl_libvirt_exec(const struct ctl_options *opts, int argc, char **argv)
{
        const char *path = helper_path();
        _cleanup_free_ char **args = calloc((size_t)argc + 6, sizeof(*args));
        int n = 0;

        if (!args) {
                fprintf(stderr, "svemigctl: libvirt: out of memory\n");
                return CTL_EXIT_FAILURE;
        }
        args[n++] = (char *)"svemigctl-libvirt";
        if (opts->json)
                args[n++] = (char *)"--json";
        if (opts->quiet)
                args[n++] = (char *)"--quiet";
        if (opts->socket_path) {
                args[n++] = (char *)"--socket";
                args[n++] = (char *)opts->socket_path;
        }
        for (int i = 0; i < argc; i++)
                args[n++] = argv[i];
        args[n] = NULL;
        execv(path, args);
        fprintf(stderr,
                "svemigctl: libvirt: cannot run %s: %s; svemig's libvirt support is installed with it\n",
                path, strerror(errno));
        return CTL_EXIT_FAILURE;
}
