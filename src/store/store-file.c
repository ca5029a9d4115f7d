/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Local files: written into a temporary file beside the target, fsync'd,
 * and renamed over it only when whole.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "store-backend.h"

#define FILE_BUF (1u << 20)

static const char *path_of(const char *location)
{
        return strncmp(location, "file://", 7) == 0 ? location + 7 : location;
}

static int file_check(const struct store_ctx *c, const char *location, struct svemig_error *err)
{
        const char *path = path_of(location);

        (void)c;
        if (!path[0])
                return svemig_error_set(err, EINVAL, "%s: no path", location);
        if (strstr(location, "://") && strncmp(location, "file://", 7) != 0)
                return svemig_error_set(
                        err, EPROTONOSUPPORT,
                        "%s: unknown scheme; use a path, http://, https:// or s3://BUCKET/KEY", location);
        return 0;
}

static int copy_in(struct store_source *src, int fd, const char *tmp, struct svemig_error *err)
{
        _cleanup_free_ uint8_t *buf = malloc(FILE_BUF);
        size_t got;
        int r;

        if (!buf)
                return svemig_error_set(err, ENOMEM, "out of memory");
        do {
                r = store_source_read(src, buf, FILE_BUF, &got);
                if (r == -ECANCELED)
                        return svemig_error_set(err, ECANCELED, "cancelled");
                if (r < 0)
                        return svemig_error_set(err, -r, "reading the data for %s: %s", tmp, strerror(-r));
                for (size_t done = 0; done < got;) {
                        ssize_t k = write(fd, buf + done, got - done);

                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k < 0)
                                return svemig_error_set(err, errno, "cannot write %s: %m", tmp);
                        done += (size_t)k;
                }
        } while (got == FILE_BUF);
        return 0;
}

static int file_put(const struct store_ctx *c, const char *location, struct store_source *src,
                    struct svemig_error *err)
{
        const char *path = path_of(location);
        char tmp[PATH_MAX];
        _cleanup_close_ int fd = -1;
        int r;

        (void)c;
        if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
                return svemig_error_set(err, ENAMETOOLONG, "path too long: %s", path);
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return svemig_error_set(err, errno, "cannot create a temporary file beside %s: %m", path);
        r = copy_in(src, fd, tmp, err);
        if (r == 0 && (fsync(fd) < 0 || fchmod(fd, 0640) < 0))
                r = svemig_error_set(err, errno, "cannot flush %s to disk: %m", tmp);
        if (r == 0 && rename(tmp, path) < 0)
                r = svemig_error_set(err, errno, "cannot move %s into place: %m", path);
        if (r < 0)
                unlink(tmp);
        return r;
}

static int file_get(const struct store_ctx *c, const char *location, uint64_t offset, uint64_t length,
                    struct store_sink *sink, struct svemig_error *err)
{
        const char *path = path_of(location);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        _cleanup_free_ uint8_t *buf = malloc(FILE_BUF);
        uint64_t left = length ? length : UINT64_MAX;

        if (fd < 0)
                return svemig_error_set(err, errno, "cannot open %s: %m", path);
        if (!buf)
                return svemig_error_set(err, ENOMEM, "out of memory");
        while (left > 0) {
                ssize_t k = pread(fd, buf, left < FILE_BUF ? (size_t)left : FILE_BUF, (off_t)offset);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return svemig_error_set(err, errno, "cannot read %s: %m", path);
                if (k == 0)
                        break;
                if (atomic_load(c->cancel))
                        return -ECANCELED;
                if (store_sink_write(sink, buf, (size_t)k) < 0)
                        return sink->closed ? 0 : svemig_error_set(err, errno, "passing on %s: %m", path);
                offset += (uint64_t)k;
                left -= (uint64_t)k;
        }
        return 0;
}

static int file_remove(const struct store_ctx *c, const char *location, struct svemig_error *err)
{
        (void)c;
        if (unlink(path_of(location)) < 0)
                return svemig_error_set(err, errno, "cannot remove %s: %m", path_of(location));
        return 0;
}

static int file_list(const struct store_ctx *c, const char *prefix, store_list_fn fn, void *userdata,
                     struct svemig_error *err)
{
        const char *path = path_of(prefix), *slash = strrchr(path, '/');
        _cleanup_free_ char *dir = slash ? strndup(path, (size_t)(slash - path + 1)) : strdup("./");
        const char *base = slash ? slash + 1 : path;
        DIR *d;
        struct dirent *de;
        int r = 0;

        (void)c;
        if (!dir)
                return svemig_error_set(err, ENOMEM, "out of memory");
        d = opendir(dir);
        if (!d)
                return svemig_error_set(err, errno, "cannot list %s: %m", dir);
        while (r >= 0 && (de = readdir(d))) {
                char full[PATH_MAX];
                struct stat st;

                if (strncmp(de->d_name, base, strlen(base)) != 0 || de->d_name[0] == '.')
                        continue;
                if (snprintf(full, sizeof(full), "%s%s", slash ? dir : "", de->d_name) >= (int)sizeof(full))
                        continue;
                if (stat(full, &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                r = fn(userdata, full, (uint64_t)st.st_size);
        }
        closedir(d);
        return r < 0 ? r : 0;
}

const struct store_ops store_file_ops = {
        .scheme = "file",
        .check = file_check,
        .put = file_put,
        .get = file_get,
        .remove = file_remove,
        .list = file_list,
};
