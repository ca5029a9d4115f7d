/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The files a client names (proto/api.proto "Files"): svemigd never opens
 * them. The client opens each with its own rights and passes the descriptor
 * with the request; svemigd only checks what it got, without blocking
 * (fstat, fcntl), and hands it to the VMM that reads or writes it.
 */

#include <stdbool.h>

#include "api-server.h"
#include "svemig/error.h"

struct svemigd;

enum client_file_use {
        CLIENT_FILE_READ,
        CLIENT_FILE_WRITE,
};

/*
 * Takes the descriptor that came with call for the file the client calls
 * 'name' (its 'what', e.g. "snapshot"): a regular file open for 'use'.
 * *fd is then the caller's. A request naming a file without its descriptor
 * (an svemigctl older than svemigd) is refused with the reason.
 */
int client_file_take(struct api_call *call, const char *what, const char *name, enum client_file_use use,
                     int *fd, struct svemig_error *err);
/* The same for file i of a request that carries n (e.g. a Linux guest's kernel, then its initrd). */
int client_file_take_nth(struct api_call *call, const char *what, const char *name, enum client_file_use use,
                         unsigned i, unsigned n, int *fd, struct svemig_error *err);

/*
 * Refuses a file a client names inside svemigd's own places (the state
 * directory, the snapshot directory): they stay svemigd's.
 */
int client_file_check_place(struct svemigd *d, const char *what, const char *path, struct svemig_error *err);
