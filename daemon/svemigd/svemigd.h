/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svemigd's state, shared by main (svemigd.c) and the operations' handlers
 * (op-*.c), which receive it as their userdata.
 */

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "admit.h"
#include "api-server.h"
#include "conf.h"
#include "svemig/hv.h"
#include "svemig/peer-connect.h"

struct guest_registry;
struct cluster_view;
struct libvirt_watch;

struct svemigd {
        struct migrate_conf conf;
        struct admit_limits admit; /* admit.h: what guest memory this host takes on */
        sd_event *event;
        struct hv *hv;
        struct api_server *server;
        bool socket_activated;
        char *bound_socket; /* the socket we created ourselves, removed at exit */
        char *listen_path;  /* where we listen, for the log */
        bool stopping;
        bool verbose;                    /* -v: the VMMs it starts log debug messages too */
        struct guest_registry *guests;   /* guest-registry.h */
        struct cluster_view *cluster;    /* cluster-view.h: the peers and the negotiated guest set */
        struct ram_reserve *reserve;     /* ram-reserve.h: [cluster] incoming-reserve; NULL when 0 */
        struct libvirt_watch *libvirt;   /* libvirt-watch.h: [libvirt] uri; NULL when unset */
        struct peer_tls_creds *tls;      /* peer-tls.h: [cluster] tls-*; NULL: peer-tls = no, or no peers */
        struct peer_transport transport; /* what its own dials go through: peer TLS with tls */
};
