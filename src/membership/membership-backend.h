/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What a membership backend implements (svemig/membership.h): the dispatch
 * in membership.c checks the arguments, then calls these.
 */

#include "svemig/membership.h"

struct membership_ops {
        const char *name;
        /* Starts the backend's threads; *out is the backend's own state. */
        int (*start)(const struct membership_params *p, void **out, struct svemig_error *err);
        /* Stops the threads and frees the state. */
        void (*stop)(void *state);
        /*
         * Adds the hosts after this one (out->hosts[0] is filled by the dispatch;
         * *cap is the room, for membership_view_add()), and the staleness.
         */
        int (*get)(void *state, struct membership_view *out, size_t *cap, struct svemig_error *err);
        /* This host's facts changed (its stuck guests): publish them. NULL: peers ask for them anyway. */
        void (*self_changed)(void *state);
};

extern const struct membership_ops membership_static_ops;
extern const struct membership_ops membership_etcd_ops;
