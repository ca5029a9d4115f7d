/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svemigd's live view of its cluster: this host and every other host its
 * membership knows (svemig/membership.h: the [peer NAME] sections, or the
 * records in etcd), each up or down (with the reason) and what its
 * hypervisor offers; whether the membership can vouch for it (stale);
 * and, over this host and the peers that are up, the guest VL set every one
 * of them can present, the hosts that limit it and what excluding them would
 * gain (cluster_compute()). It is recomputed on the loop whenever a peer
 * joins, leaves or changes, and each change is logged with PEER=.
 *
 * It owns the peer listener ([cluster] listen) and the membership, whose
 * threads only wake the loop. Everything here runs on the loop's thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer-listener.h"
#include "svemig/cluster.h"
#include "svemig/cpubase.h"
#include "svemig/error.h"
#include "svemig/membership.h"
#include "svemig/migrate.h"
#include "svemig/peer-connect.h"

struct svemigd;
struct cluster_view;

/* Starts the listener (if configured) and the membership d->conf names. */
int cluster_view_new(struct svemigd *d, struct cluster_view **out, struct svemig_error *err);

/*
 * Stops the links and the listener: no new peer connections, idle ones
 * closed, requests being served finish. done() runs on the loop once the
 * last peer connection is gone.
 */
void cluster_view_stop(struct cluster_view *v, void (*done)(void *userdata), void *userdata);
void cluster_view_free(struct cluster_view *v);

/*
 * Member 0 is this host (always up and known, info = what it tells its
 * peers), then the others (static: migrate.conf's order; etcd: by name).
 */
const struct membership_host *cluster_view_members(const struct cluster_view *v, size_t *n);
/* Index-aligned with the members. */
const struct cluster_result *cluster_view_result(const struct cluster_view *v);
/* Bumps whenever a member or the result changes. */
uint64_t cluster_view_generation(const struct cluster_view *v);
unsigned cluster_view_refresh_ms(const struct cluster_view *v);
/* The membership cannot vouch for the view: the hosts are the last it knew. reason/since may be NULL. */
bool cluster_view_stale(const struct cluster_view *v, const char **reason, uint64_t *since_ns);
/* The membership's view as last copied: its cluster set, whether pinned, whether this host was refused. */
const struct membership_view *cluster_view_membership(const struct cluster_view *v);
/* "static", or "etcd URL,... under PREFIX". */
const char *cluster_view_store(const struct cluster_view *v);
/* Where the peer listener listens, NULL when it does not. */
const char *cluster_view_listen_address(const struct cluster_view *v);
/* What this host says about itself to its peers (peer_hello(), HostInfo). */
/*
 * This host's guests that could not move (op-libvirt.h): the peers get them
 * in its HostInfo (static) or its record (etcd), and the view's own row.
 */
void cluster_view_set_stuck(struct cluster_view *v, const struct peer_stuck *stuck);
const struct peer_info *cluster_view_self(const struct cluster_view *v);
/* [cluster] peer-timeout. */
unsigned cluster_view_peer_timeout_ms(const struct cluster_view *v);

/*
 * The peer a migration goes to, by name: -ENOENT when the membership knows
 * no such host (the reason names those it does), -EHOSTDOWN with the reason
 * when it is down now. *addr (for peer_connect(), on a worker thread) and
 * *member point into the view and the configuration: copy what outlives the
 * loop's current turn.
 */
int cluster_view_peer(const struct cluster_view *v, const char *name, struct peer_address *addr,
                      const struct membership_host **member, struct svemig_error *err);

/*
 * The guest set for max VL "cluster": the set this host and every peer now
 * up can present (this host's own when no peer is up). Empty = FPSIMD only.
 */
int svemigd_cluster_guest_set(struct svemigd *d, vqset_t *out, struct svemig_error *err);

/*
 * The CPU baseline (svemig/cpubase.h) over this host and every peer now up
 * that told its ID registers; index-aligned with cluster_view_members().
 * -EINVAL when no baseline exists (the reason names the field and two
 * hosts); free with cpubase_result_done().
 */
int svemigd_cluster_cpu_baseline(struct svemigd *d, struct cpubase_result *out, struct svemig_error *err);
