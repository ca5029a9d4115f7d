/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The libvirt domains svemigd follows (libvirt-watch.h), judged against this
 * host and the peers up, as the control API shows them: for 'svemigctl
 * libvirt list' and, the stuck ones, for 'svemigctl cluster'.
 */

#include <stdbool.h>

#include "api.pb-c.h"

struct svemigd;

struct libvirt_reply {
        size_t n;
        Svemig__Api__LibvirtDomain *doms;
        Svemig__Api__LibvirtDomain **ptrs;
        Svemig__Api__LibvirtCpu *cpus;
        uint32_t *bits; /* per domain: required, disabled, the set here */
        char (*reasons)[256];
        char **stuck_at; /* per domain: up to the number of members */
        char (*stuck_why)[256];
        char **stuck_why_ptrs;
};

/* Every domain (only_stuck: those some up host could not take); empty when not following. */
int libvirt_reply_build(struct svemigd *d, bool only_stuck, struct libvirt_reply *out);
void libvirt_reply_done(struct libvirt_reply *r);

/*
 * Tells the peers (cluster_view_set_stuck()) which of this host's domains
 * could not move to some other host up: after each change of libvirt's
 * domains or of the cluster's hosts.
 */
void libvirt_stuck_refresh(struct svemigd *d);
