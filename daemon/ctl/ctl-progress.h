/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * How svemigctl shows a long operation's Progress events, on stderr: a bar
 * redrawn in place on a terminal (isatty), plain lines otherwise (a line per
 * phase and per tenth done, so a log stays short), nothing with --quiet or
 * --json.
 */

#include <stdbool.h>
#include <stdint.h>

#include "api.pb-c.h"
#include "ctl.h"

struct ctl_progress {
        const char *what;
        bool tty;
        bool off;
        bool drawn;
        char phase[32];
        int tenth; /* the last tenth printed as a plain line */
};

void ctl_progress_init(struct ctl_progress *p, const struct ctl_options *opts, bool json, const char *what);
/* An api_progress_t: pass p as its userdata. */
void ctl_progress_show(const Svemig__Api__Progress *progress, void *userdata);
/* Ends the bar's line, if one was drawn. */
void ctl_progress_end(struct ctl_progress *p);

/*
 * ctl_call_fd() with its progress events drawn as a bar (TTY) or plain lines, and the line ended after.
 * fd: a file passed with the request, or -1.
 */
int ctl_call_progress(const struct ctl_options *opts, bool json, const char *what, Svemig__Api__Request *req,
                      int fd, Svemig__Api__Response **resp);
