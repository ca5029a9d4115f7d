/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl-file.h"
#include "ctl.h"
#include "file-kind.h"
#include "macro.h"

#define SNAPSHOT_MODE 0640

static int fail(const char *what, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(const char *what, int code, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "svemigctl: %s: ", what);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return code;
}

/* path with its directory resolved (the daemon is told where the file really is). */
static int resolve(const char *what, const char *path, char *out)
{
        _cleanup_free_ char *d = strdup(path), *b = strdup(path);
        char dir[PATH_MAX];
        const char *base;

        if (!d || !b)
                return fail(what, CTL_EXIT_FAILURE, "out of memory");
        base = basename(b);
        if (!base[0] || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || path[strlen(path) - 1] == '/')
                return fail(what, CTL_EXIT_USAGE, "%s names a directory; give the file's name", path);
        if (!realpath(dirname(d), dir))
                return fail(what, CTL_EXIT_USAGE, "cannot write %s: its directory: %s", path,
                            strerror(errno));
        if ((size_t)snprintf(out, PATH_MAX, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, base) >= PATH_MAX)
                return fail(what, CTL_EXIT_USAGE, "%s: the path is too long", path);
        return 0;
}

int ctl_file_create(const char *what, const char *path, struct ctl_new_file *f)
{
        char dir[PATH_MAX];
        struct stat st;
        int r;

        *f = (struct ctl_new_file){.fd = -1};
        r = resolve(what, path, f->path);
        if (r)
                return r;
        if (lstat(f->path, &st) == 0 && !S_ISREG(st.st_mode))
                return fail(what, CTL_EXIT_USAGE,
                            "%s is %s; a snapshot only ever replaces a regular file: give another path",
                            f->path, file_kind_name(st.st_mode));
        snprintf(dir, sizeof(dir), "%s", f->path);
        *strrchr(dir, '/') = '\0';
        f->fd = open(dir[0] ? dir : "/", O_TMPFILE | O_RDWR | O_CLOEXEC, SNAPSHOT_MODE);
        if (f->fd >= 0)
                return 0;
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
                return fail(what, CTL_EXIT_FAILURE, "cannot create %s: %s", f->path, strerror(errno));
        /* A file system without O_TMPFILE: a named temporary file, renamed in place at the end. */
        if ((size_t)snprintf(f->tmp, sizeof(f->tmp), "%s.XXXXXX", f->path) >= sizeof(f->tmp))
                return fail(what, CTL_EXIT_USAGE, "%s: the path is too long", f->path);
        f->fd = mkostemp(f->tmp, O_CLOEXEC);
        if (f->fd < 0 || fchmod(f->fd, SNAPSHOT_MODE) < 0) {
                r = fail(what, CTL_EXIT_FAILURE, "cannot create a file beside %s: %s", f->path,
                         strerror(errno));
                ctl_file_abandon(f);
                return r;
        }
        return 0;
}

/* Links the unnamed file as a fresh temporary name beside its path. */
static int link_tmpfile(struct ctl_new_file *f)
{
        char proc[64];

        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
        for (unsigned i = 0; i < 16; i++) {
                uint32_t rnd = 0;

                (void)getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK);
                if ((size_t)snprintf(f->tmp, sizeof(f->tmp), "%s.%08x", f->path, rnd) >= sizeof(f->tmp))
                        return -ENAMETOOLONG;
                /* Through /proc; without it, AT_EMPTY_PATH (which needs CAP_DAC_READ_SEARCH). */
                if (linkat(AT_FDCWD, proc, AT_FDCWD, f->tmp, AT_SYMLINK_FOLLOW) == 0 ||
                    (errno == ENOENT && linkat(f->fd, "", AT_FDCWD, f->tmp, AT_EMPTY_PATH) == 0))
                        return 0;
                if (errno != EEXIST)
                        break;
        }
        f->tmp[0] = '\0';
        return -errno;
}

int ctl_file_commit(const char *what, struct ctl_new_file *f)
{
        char dir[PATH_MAX];
        _cleanup_close_ int dfd = -1;
        int r;

        if (!f->tmp[0]) {
                r = link_tmpfile(f);
                if (r < 0)
                        return fail(what, CTL_EXIT_FAILURE, "cannot give the snapshot its name %s: %s",
                                    f->path, strerror(-r));
        }
        if (rename(f->tmp, f->path) < 0) {
                r = fail(what, CTL_EXIT_FAILURE, "cannot move the snapshot into place at %s: %s", f->path,
                         strerror(errno));
                ctl_file_abandon(f);
                return r;
        }
        f->tmp[0] = '\0';
        snprintf(dir, sizeof(dir), "%s", f->path);
        *strrchr(dir, '/') = '\0';
        dfd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0)
                return fail(what, CTL_EXIT_FAILURE,
                            "snapshot written to %s, but syncing its directory failed: %s", f->path,
                            strerror(errno));
        close(f->fd);
        f->fd = -1;
        return 0;
}

void ctl_file_abandon(struct ctl_new_file *f)
{
        if (f->tmp[0])
                (void)unlink(f->tmp);
        f->tmp[0] = '\0';
        if (f->fd >= 0)
                close(f->fd);
        f->fd = -1;
}

int ctl_file_open_read(const char *what, const char *path, char *abs)
{
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        r = resolve(what, path, abs);
        if (r)
                return -r;
        /* O_NONBLOCK: a FIFO opens at once (and is refused below) rather than wait for a writer. */
        fd = open(abs, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return -fail(what, CTL_EXIT_FAILURE, "cannot open %s: %s", abs, strerror(errno));
        if (fstat(fd, &st) < 0)
                return -fail(what, CTL_EXIT_FAILURE, "cannot stat %s: %s", abs, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return -fail(what, CTL_EXIT_USAGE, "%s is %s; give a regular file", abs,
                             file_kind_name(st.st_mode));
        if (fcntl(fd, F_SETFL, 0) < 0)
                return -fail(what, CTL_EXIT_FAILURE, "%s: %s", abs, strerror(errno));
        r = fd;
        fd = -1;
        return r;
}
