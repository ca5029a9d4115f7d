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
#define MIGRATE_CONF_CHANNELS        4u /* [cluster] migration-channels */

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
        char *socket_group; /* NULL: the daemon's own group */
        gid_t socket_gid;   /* resolved socket_group, or the daemon's egid */
        int log_level;      /* LOG_ERR .. LOG_DEBUG */

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

        /* [cluster] */
        char *listen_address; /* "HOST:PORT" as written; NULL: no peer listener */
        char *listen_host;    /* HOST without brackets; "*" = every address */
        uint16_t listen_port;
        unsigned peer_refresh_ms;    /* how often each peer's HostInfo is asked for again */
        unsigned peer_timeout_ms;    /* the longest wait on a peer's answer */
        uint64_t incoming_mem_limit; /* bytes of RAM an incoming guest may have; 0: MemAvailable */
        uint64_t incoming_reserve;   /* bytes of RAM kept faulted in for the next incoming guest; 0: none */
        unsigned migration_channels; /* memory channels a migration from here opens; 0: one connection */

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
