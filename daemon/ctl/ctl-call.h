/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What every svemigctl subcommand that talks to svemigd shares. */

#include "api-client.h"
#include "ctl.h"

/*
 * Connects to the daemon (opts->socket_path or the default), sends req and
 * waits for the answer. On success returns CTL_EXIT_OK with *resp set (free
 * it with svemig__api__response__free_unpacked()). Otherwise prints
 * "svemigctl: WHAT: reason" and returns the exit code: CTL_EXIT_DAEMON when
 * the daemon could not be reached or the exchange broke, CTL_EXIT_FAILURE
 * when the daemon refused, with its reason (CTL_EXIT_INCOMPATIBLE when the
 * reason is a host incompatibility, Status.incompatible).
 */
int ctl_call(const struct ctl_options *opts, const char *what, Svemig__Api__Request *req,
             api_progress_t progress, void *userdata, Svemig__Api__Response **resp);
/* The same, passing fd (a file svemigctl opened, e.g. ctl-file.h) with the request; -1: none. */
int ctl_call_fd(const struct ctl_options *opts, const char *what, Svemig__Api__Request *req, int fd,
                api_progress_t progress, void *userdata, Svemig__Api__Response **resp);
/* The same with n_fds files, in the order the request's message says. */
int ctl_call_fds(const struct ctl_options *opts, const char *what, Svemig__Api__Request *req, const int *fds,
                 unsigned n_fds, api_progress_t progress, void *userdata, Svemig__Api__Response **resp);
