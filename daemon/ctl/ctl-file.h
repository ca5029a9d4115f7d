/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The files svemigctl hands svemigd (proto/api.proto "Files"): opened here,
 * with the user's own rights, and passed as descriptors, so that the daemon
 * never opens a path a client names. Errors say what is wrong with the path
 * and never what is in the file.
 */

#include <limits.h>
#include <stdbool.h>

/* A snapshot being written: unnamed until ctl_file_commit() puts it at path. */
struct ctl_new_file {
        int fd;
        char path[PATH_MAX]; /* absolute, its directory resolved */
        char tmp[PATH_MAX];  /* the named temporary file where O_TMPFILE is not supported; "" otherwise */
};

/*
 * Creates the file that will be path (made absolute, its directory
 * resolved): an unnamed file in path's directory (O_TMPFILE), or a temporary
 * file beside it. A path that exists must be a regular file, which commit
 * replaces. Returns 0, or the exit code after printing why (as 'what').
 */
int ctl_file_create(const char *what, const char *path, struct ctl_new_file *out);
/* Puts the written file at its path, whole (and syncs the directory). Returns 0 or the exit code. */
int ctl_file_commit(const char *what, struct ctl_new_file *f);
/* Leaves nothing behind. */
void ctl_file_abandon(struct ctl_new_file *f);

/*
 * Opens path for reading, never blocking (a FIFO is refused, not waited on):
 * a regular file only. *abs (PATH_MAX) is its absolute name. Returns the fd,
 * or -(exit code) after printing why.
 */
int ctl_file_open_read(const char *what, const char *path, char *abs);
