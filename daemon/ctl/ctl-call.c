/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>

#include "ctl-call.h"
#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct api_client *, api_client_free);

int ctl_call(const struct ctl_options *opts, const char *what, Svemig__Api__Request *req,
             api_progress_t progress, void *userdata, Svemig__Api__Response **resp)
{
        return ctl_call_fd(opts, what, req, -1, progress, userdata, resp);
}

int ctl_call_fd(const struct ctl_options *opts, const char *what, Svemig__Api__Request *req, int fd,
                api_progress_t progress, void *userdata, Svemig__Api__Response **resp)
{
        return ctl_call_fds(opts, what, req, &fd, fd >= 0 ? 1 : 0, progress, userdata, resp);
}

int ctl_call_fds(const struct ctl_options *opts, const char *what, Svemig__Api__Request *req, const int *fds,
                 unsigned n_fds, api_progress_t progress, void *userdata, Svemig__Api__Response **resp)
{
        _cleanup_(api_client_freep) struct api_client *client = NULL;
        struct svemig_error err = {0};
        Svemig__Api__Response *r = NULL;
        int ret;

        ret = api_client_connect(opts->socket_path, &client, &err);
        if (ret >= 0)
                ret = n_fds ? api_client_call_fds(client, req, fds, n_fds, progress, userdata, &r, &err)
                            : api_client_call(client, req, progress, userdata, &r, &err);
        if (ret < 0) {
                fprintf(stderr, "svemigctl: %s: %s\n", what, svemig_error_str(&err, ret));
                return ret == -EPROTONOSUPPORT ? CTL_EXIT_FAILURE : CTL_EXIT_DAEMON;
        }
        if (r->status && r->status->code != 0) {
                /* The daemon's own words: they say what was wrong and what to do. */
                fprintf(stderr, "svemigctl: %s: %s\n", what, r->status->message);
                ret = r->status->incompatible ? CTL_EXIT_INCOMPATIBLE : CTL_EXIT_FAILURE;
                svemig__api__response__free_unpacked(r, NULL);
                return ret;
        }
        *resp = r;
        return CTL_EXIT_OK;
}
