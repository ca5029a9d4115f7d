/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * migrate.conf, svemigd's one configuration file (INI, parsed with inih).
 * The shipped, commented default at the root of the tree documents every
 * key. Unknown sections and keys, repeated keys and bad values are refused
 * with "FILE:LINE: reason", so a typo never silently falls back to a default.
 *
 * (Named conf.h, not config.h: that is the build's generated header.)
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "config.h"
#include "svemig/error.h"
#include "svemig/hv.h"
#include "svemig/membership.h"
#include "svemig/store.h"
#include "svemig/vqset.h"

/* Where svemigd and svemigctl look when told nothing else. */
#define SVEMIG_DEFAULT_CONFIG    SVEMIG_SYSCONFDIR "/svemig/migrate.conf"
#define SVEMIG_DEFAULT_SOCKET    "/run/svemig/svemigd.sock"
#define SVEMIG_DEFAULT_STATE_DIR "/var/lib/svemig"

#define MIGRATE_CONF_HOST_NAME_MAX 63
#define MIGRATE_CONF_SIM_CPUS_MAX  4096u

#define MIGRATE_CONF_PEER_REFRESH_MS 5000u
#define MIGRATE_CONF_PEER_TIMEOUT_MS 10000u
#define MIGRATE_CONF_CHANNELS        4u   /* [cluster] migration-channels */
#define MIGRATE_CONF_OVERCOMMIT_MAX  100u /* [guests] memory-overcommit, at most */
/* The connection limits of both sockets (docs: migrate.conf). */
#define MIGRATE_CONF_CLIENT_TIMEOUT_MS   60000u
#define MIGRATE_CONF_MAX_CLIENTS         128u
#define MIGRATE_CONF_MAX_CLIENTS_PER_UID 32u
#define MIGRATE_CONF_MAX_PEER_CONNS      64u
#define MIGRATE_CONF_MAX_CONNS_PER_PEER  16u
#define MIGRATE_CONF_HOOK_TIMEOUT_MS     5000u /* [libvirt] hook-timeout */
#define MIGRATE_CONF_ETCD_PREFIX         "/svemig/"
#define MIGRATE_CONF_ETCD_LEASE_S        10u

struct migrate_conf_peer {
        char *name;    /* from the section name [peer NAME] */
        char *address; /* "HOST:PORT" or "[V6]:PORT" as written */
        char *host;    /* HOST, without brackets */
        uint16_t port;
        unsigned line; /* where its address was set */
};

struct migrate_conf {
        char *path; /* the file read, NULL for the built-in defaults */

        /* [daemon] */
        char *host_name;
        char *state_dir;
        char *socket_path;
        char *socket_group;            /* NULL: the daemon's own group */
        gid_t socket_gid;              /* resolved socket_group, or the daemon's egid */
        int log_level;                 /* LOG_ERR .. LOG_DEBUG */
        unsigned client_timeout_ms;    /* a control connection with nothing in flight is closed after */
        unsigned max_clients;          /* control connections at once */
        unsigned max_clients_per_user; /* ... of one uid */

        /* [hypervisor] */
        enum hv_backend backend;
        char *kvm_device;

        /* [sim] */
        char *sim_kernel;  /* "6.1" or "6.12" */
        bool sim_nvhe;     /* kvm-mode = nvhe */
        vqset_t *sim_cpus; /* n_sim_cpus maps; NULL/0: the sim's default host */
        size_t n_sim_cpus;

        /* [snapshot] */
        char *snapshot_dir; /* an absolute path, or a remote location (store_is_remote()) */
        unsigned snapshot_keep;
        char *snapshot_compression; /* "lz4" or "none" */

        /* [guests] */
        uint64_t guest_host_memory;    /* bytes of RAM the host gives its guests; 0: MemTotal */
        unsigned guest_overcommit_pct; /* guests' RAM together may be this % of it (memory-overcommit) */

        /* [cluster] */
        char *listen_address; /* "HOST:PORT" as written; NULL: no peer listener */
        char *listen_host;    /* HOST without brackets; "*" = every address */
        uint16_t listen_port;
        unsigned peer_refresh_ms; /* how often each peer's HostInfo is asked for again */
        unsigned peer_timeout_ms; /* the longest wait on a peer's answer */
        /*
         * Bytes of RAM the guests arriving at once (migrations, restores) may
         * have together, and so each one; 0: the default, 3/4 of
         * guest_host_memory (svemigd's admit.c).
         */
        uint64_t incoming_mem_limit;
        uint64_t incoming_reserve;   /* bytes of RAM kept faulted in for the next incoming guest; 0: none */
        unsigned migration_channels; /* memory channels a migration from here opens; 0: one connection */
        unsigned peer_idle_ms;       /* a peer connection with no request for this long is closed;
                                        default refresh-interval + peer-timeout */
        unsigned max_peer_conns;     /* connections on the peer port at once */
        unsigned max_conns_per_peer; /* ... from one address */
        bool peer_tls;               /* mutual TLS on the peer port and every memory channel (default) */
        char *tls_ca, *tls_cert, *tls_key; /* x509 PEM files; required with peer_tls when there are peers */
        unsigned tls_ca_line, tls_cert_line, tls_key_line, peer_tls_line;

        /* [libvirt] */
        char *libvirt_uri;                /* NULL: svemigd does not follow libvirt */
        bool libvirt_require_cluster_set; /* the hook also refuses domains outside the cluster's set */
        bool libvirt_daemon_down_allow;   /* the hook lets libvirt go on when svemigd cannot be asked */
        unsigned libvirt_hook_timeout_ms; /* the longest the hook waits on svemigd */
        char *advertise;                  /* "HOST:PORT" peers dial for migrations; NULL: listen's */
        enum membership_backend store;    /* store = static | etcd */
        char **etcd_endpoints;            /* etcd-endpoints = URL,... */
        size_t n_etcd_endpoints;
        char *etcd_prefix;
        char *etcd_cacert, *etcd_cert, *etcd_key; /* NULL: none (the system's CAs) */
        char *etcd_user;
        char *etcd_password; /* read from etcd-password-file */
        char *etcd_password_file;
        unsigned etcd_lease_ttl_s;
        char *cluster_set; /* the named cluster set this host joins (etcd); NULL: none */

        /* [store]: remote checkpoint locations (include/svemig/store.h); NULL/0: the store's default */
        char *s3_endpoint;
        char *s3_region;
        char *credentials_file;
        char *s3_profile;
        char *ca_file;
        uint64_t part_size;
        unsigned parallel_uploads;
        unsigned store_retries;
        unsigned stall_timeout_ms;

        /* [peer NAME] ... */
        struct migrate_conf_peer *peers;
        size_t n_peers;
};

/*
 * Fills 'conf' with the built-in defaults, then reads 'path' over them.
 * path == NULL reads SVEMIG_DEFAULT_CONFIG if it exists and keeps the
 * defaults otherwise; an explicit path must exist. On failure err holds
 * "FILE:LINE: reason" (or "FILE: reason") and conf is released.
 */
int migrate_conf_load(struct migrate_conf *conf, const char *path, struct svemig_error *err);
void migrate_conf_done(struct migrate_conf *conf);

struct peer_tls_creds;

/*
 * Loads the peer TLS credentials of [cluster] tls-ca, tls-cert and tls-key
 * (peer-tls.h), checked as a peer would check them. *out is NULL when peer
 * TLS is off or this host has no peers. Errors are "FILE:LINE: key = PATH:
 * reason", an unreadable file named with the key that gave it.
 */
int migrate_conf_tls_load(const struct migrate_conf *conf, struct peer_tls_creds **out,
                          struct svemig_error *err);

/* Writes the effective configuration to f, as a migrate.conf that would give it. */
void migrate_conf_print(const struct migrate_conf *conf, FILE *f);

/*
 * The hypervisor configuration the file describes. It points into conf,
 * which must outlive it.
 */
void migrate_conf_hv_config(const struct migrate_conf *conf, struct hv_config *out);

/* The store configuration the file describes. It points into conf, which must outlive it. */
void migrate_conf_store_conf(const struct migrate_conf *conf, struct store_conf *out);

const char *migrate_conf_backend_name(enum hv_backend backend);
