/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client-file.h"
#include "file-kind.h"
#include "svemigd.h"

int client_file_take(struct api_call *call, const char *what, const char *name, enum client_file_use use,
                     int *out, struct svemig_error *err)
{
        return client_file_take_nth(call, what, name, use, 0, 1, out, err);
}

int client_file_take_nth(struct api_call *call, const char *what, const char *name, enum client_file_use use,
                         unsigned i, unsigned n, int *out, struct svemig_error *err)
{
        struct stat st;
        int fd, mode;

        if (api_call_n_fds(call) != n) {
                if (api_call_n_fds(call) == 0)
                        return svemig_error_set(
                                err, EPROTO,
                                "%s: svemigd opens no file a client names; the client opens %s itself and "
                                "passes it with the request. This client sent only the name: it is older "
                                "than svemigd, update it (svemigctl %s)",
                                what, name, SVEMIG_VERSION);
                return svemig_error_set(err, EINVAL,
                                        "%s: %u file descriptors came with the request; give %u", what,
                                        api_call_n_fds(call), n);
        }
        fd = api_call_take_fd(call, i);
        if (fstat(fd, &st) < 0) {
                close(fd);
                return svemig_error_set(err, errno, "%s: cannot stat the file passed for %s: %s", what, name,
                                        strerror(errno));
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                return svemig_error_set(err, EINVAL, "%s: the file passed for %s is %s; give a regular file",
                                        what, name, file_kind_name(st.st_mode));
        }
        mode = fcntl(fd, F_GETFL) & O_ACCMODE;
        if (use == CLIENT_FILE_WRITE ? mode == O_RDONLY : mode == O_WRONLY) {
                close(fd);
                return svemig_error_set(err, EBADF, "%s: the file passed for %s is not open for %s", what,
                                        name, use == CLIENT_FILE_WRITE ? "writing" : "reading");
        }
        *out = fd;
        return 0;
}

/* Whether path is dir or lies below it (both as written, and dir also as it resolves). */
static bool under(const char *path, const char *dir)
{
        char real[PATH_MAX];
        const char *dirs[2] = {dir, realpath(dir, real)};

        for (size_t i = 0; i < 2; i++) {
                size_t n;

                if (!dirs[i])
                        continue;
                n = strlen(dirs[i]);
                while (n > 1 && dirs[i][n - 1] == '/')
                        n--;
                if (strncmp(path, dirs[i], n) == 0 && (path[n] == '/' || path[n] == '\0'))
                        return true;
        }
        return false;
}

int client_file_check_place(struct svemigd *d, const char *what, const char *path, struct svemig_error *err)
{
        if (!path || path[0] != '/')
                return svemig_error_set(err, EINVAL, "%s: name the file by its absolute path, not '%s'",
                                        what, path ? path : "");
        if (under(path, d->conf.state_dir) || under(path, d->conf.snapshot_dir))
                return svemig_error_set(
                        err, EPERM,
                        "%s: %s is in svemigd's own %s; give a path outside it (without a path, a snapshot "
                        "goes to the snapshot directory under a name svemigd makes)",
                        what, path,
                        under(path, d->conf.snapshot_dir) ? "snapshot directory" : "state directory");
        return 0;
}
