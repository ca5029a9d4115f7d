/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <sys/stat.h>

/* "a FIFO", "a directory", ...: what a file is when it should be a regular file. */
static inline const char *file_kind_name(mode_t mode)
{
        if (S_ISDIR(mode))
                return "a directory";
        if (S_ISFIFO(mode))
                return "a FIFO";
        if (S_ISCHR(mode))
                return "a character device";
        if (S_ISBLK(mode))
                return "a block device";
        if (S_ISSOCK(mode))
                return "a socket";
        if (S_ISLNK(mode))
                return "a symbolic link";
        return "not a regular file";
}
