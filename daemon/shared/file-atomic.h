/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A small state file (guest.json, a guest's "migrated" mark) written whole or
 * not at all: a temporary file beside it, fsync'd, renamed over it, and its
 * directory fsync'd. A reader, or a svemigd started after a crash, sees the
 * old content or the new one.
 */

#include <stddef.h>
#include <sys/types.h>

/* Returns 0 or a negative errno; on failure nothing is left beside path. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
