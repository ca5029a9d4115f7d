/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Cluster membership: which hosts make up the cluster, where each takes
 * migrations and what its hypervisor offers (its peer_info), behind one
 * small interface with two backends:
 *
 *   static  the peers migrate.conf lists; each is asked for its HostInfo
 *           over the peer port every refresh interval, on a thread per
 *           peer (the embedded default, for a rack);
 *   etcd    this host registers itself under a lease it keeps alive and
 *           watches every other host's record (etcd's v3 JSON gateway over
 *           HTTP), on threads of its own (for sites of thousands of hosts).
 *
 * Either way the caller never blocks on the network: the backend calls
 * params.changed() from its own thread whenever what membership_get()
 * returns may have changed, and membership_get() copies the current view
 * under a lock. The library never logs: the reasons are in the view.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/cluster.h"
#include "svemig/error.h"
#include "svemig/migrate.h"

struct peer_transport; /* svemig/peer-connect.h */

#define MEMBERSHIP_NAME_MAX     64
#define MEMBERSHIP_CPU_REGS_MAX 224 /* the feature ID space (192) and the CCSIDRs */
#define MEMBERSHIP_ADDRESS_MAX  262 /* "[V6]:PORT" */

enum membership_backend {
        MEMBERSHIP_STATIC = 0,
        MEMBERSHIP_ETCD,
};

const char *membership_backend_name(enum membership_backend b);

/* One host as the backend sees it. */
struct membership_host {
        char name[MEMBERSHIP_NAME_MAX];
        char address[MEMBERSHIP_ADDRESS_MAX]; /* "HOST:PORT" for migrations; "" for this host */
        char host[MEMBERSHIP_ADDRESS_MAX];    /* the address's HOST, without brackets */
        uint16_t port;
        bool self;
        bool up;
        bool known;                        /* info holds what the host said (now, or when last up) */
        char reason[SVEMIG_ERROR_MSG_MAX]; /* down: why */
        struct peer_info info;             /* without id_regs (left empty) */
        struct cluster_id_diff id_diff;    /* its ID registers against this host's */
        /*
         * Its feature ID registers and CCSIDRs with the bits its kernel lets
         * a VMM write (peer_info_cpu_regs()), for the CPU baseline
         * (svemig/cpubase.h); n_cpu 0 when it said none.
         */
        struct cpubase_reg cpu[MEMBERSHIP_CPU_REGS_MAX];
        size_t n_cpu;
        uint64_t since_ns; /* CLOCK_REALTIME when it entered its state */
        uint64_t version;  /* bumps with every change of this host */
};

/*
 * A copy of the membership: this host first, then the others (static: in
 * migrate.conf's order; etcd: by name). stale: the backend cannot vouch that
 * the others are still as shown (etcd unreachable, without quorum, too
 * slow); the hosts are the last ones it knew, stale_reason says why, and
 * stale_since_ns since when.
 */
struct membership_view {
        struct membership_host *hosts;
        size_t n_hosts;
        bool stale;
        char stale_reason[SVEMIG_ERROR_MSG_MAX];
        uint64_t stale_since_ns;
        /*
         * etcd, with a cluster set: its name; pinned once its record is read
         * (PREFIX "sets/" NAME), pinned_set the guest set it pins; refused
         * non-empty when this host cannot present it and so stays out of
         * etcd (why).
         */
        char set_name[MEMBERSHIP_NAME_MAX];
        bool pinned;
        vqset_t pinned_set;
        char refused[SVEMIG_ERROR_MSG_MAX];
};

void membership_view_done(struct membership_view *v);

/* A [peer NAME] of the static backend. */
struct membership_peer {
        const char *name;
        const char *address; /* "HOST:PORT" as configured */
        const char *host;
        uint16_t port;
};

struct membership_etcd_params {
        const char *const *endpoints; /* "http(s)://HOST:PORT", tried in turn */
        size_t n_endpoints;
        const char *prefix; /* keys are PREFIX "hosts/" NAME */
        const char *cacert; /* NULL: the system's CAs */
        const char *cert;   /* client certificate (PEM), NULL: none */
        const char *key;    /* its key */
        const char *user;   /* NULL: no authentication */
        const char *password;
        unsigned lease_ttl_s; /* this host's record outlives it by at most this */
        /*
         * The named cluster set this host belongs to, NULL: none. Its record
         * PREFIX "sets/" NAME ({"vl_bits": [...]}, put by the operator) pins
         * the guest set: this host registers only while it can present it.
         */
        const char *cluster_set;
};

struct membership_params {
        const char *host_name;        /* this host */
        const char *address;          /* where this host takes migrations ("HOST:PORT"); NULL: nowhere */
        const struct peer_info *self; /* with its id_regs; must outlive the membership */
        unsigned refresh_ms;          /* static: how often a peer is asked again */
        unsigned timeout_ms;          /* the longest wait for an answer */
        /* Called on a backend thread: keep it to waking a loop (an eventfd write). */
        void (*changed)(void *userdata);
        void *userdata;

        const struct peer_transport *transport; /* static: what links dial through (peer TLS); NULL: none */
        const struct membership_peer *peers;    /* static */
        size_t n_peers;
        struct membership_etcd_params etcd; /* etcd */
};

struct membership;

/* Checks the parameters and starts the backend's threads. */
int membership_new(enum membership_backend backend, const struct membership_params *params,
                   struct membership **out, struct svemig_error *err);

/*
 * Stops the threads (cutting short any wait on the network; the static
 * backend says Bye to its peers, the etcd one revokes this host's lease) and
 * frees. changed() is not called again. Takes NULL.
 */
void membership_free(struct membership *m);

/* A copy of the current view; free with membership_view_done(). 0 or -ENOMEM. */
int membership_get(struct membership *m, struct membership_view *out, struct svemig_error *err);

/*
 * This host's stuck guests changed (peer_info_set_stuck() on params.self):
 * etcd puts its record again; static peers get them when they next ask.
 */
void membership_self_changed(struct membership *m);

enum membership_backend membership_backend(const struct membership *m);

/* "etcd http://a:2379,http://b:2379 under /svemig/", or "static". */
const char *membership_describe(const struct membership *m);

/*
 * Splits "HOST:PORT" or "[V6]:PORT" into host (brackets off) and port.
 * -EINVAL with the reason.
 */
int membership_split_address(const char *address, char *host, size_t host_len, uint16_t *port,
                             struct svemig_error *err);
