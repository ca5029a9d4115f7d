/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svemigd following libvirt's domains ([libvirt] uri). A thread of its own
 * holds the libvirt connection and runs libvirt's event loop: it connects
 * (again, with a backoff, whenever libvirtd goes away), lists the domains
 * with their state and SVE features (libvirt-cpu.h), and follows their
 * lifecycle events (virConnectDomainEventRegisterAny). It never blocks
 * svemigd's loop: each change is posted through an eventfd, and the loop
 * logs the event with DOMAIN= and takes a copy of the list.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "libvirt-cpu.h"
#include "svemig/error.h"

struct libvirt_watch;

struct libvirt_domain_info {
        char name[256];
        char state[24]; /* "running", "paused", "shut off"... */
        bool persistent;
        struct libvirt_cpu cpu; /* from its live XML */
};

/* What the loop sees: a copy taken when the thread last posted. */
struct libvirt_watch_view {
        bool connected;
        char error[256]; /* not connected: why */
        uint64_t events; /* lifecycle events seen */
        size_t n_domains;
        struct libvirt_domain_info *domains; /* owned by the watch */
};

/*
 * Starts the thread for 'uri'; the loop gets its posts on 'event', and calls
 * changed(userdata) once it has taken each new copy of the list.
 */
int libvirt_watch_new(sd_event *event, const char *uri, void (*changed)(void *userdata), void *userdata,
                      struct libvirt_watch **out, struct svemig_error *err);
/* Stops the thread (closing the connection) and frees. */
void libvirt_watch_free(struct libvirt_watch *w);

const char *libvirt_watch_uri(const struct libvirt_watch *w);
/* The loop's copy; valid until the loop's next turn. */
const struct libvirt_watch_view *libvirt_watch_view(const struct libvirt_watch *w);
