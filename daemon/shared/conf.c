/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * migrate.conf: read with inih, checked key by key.
 *
 * inih splits lines into sections, keys and values and strips comments; it
 * knows no line numbers in its handler and folds indented lines into the
 * previous value. So the file is fed to it through our own line reader,
 * which counts lines, reads lines of any length, strips indentation (an
 * indented key is a key, not a continuation) and sees every section header,
 * including empty ones, so that an unknown or incomplete section is refused
 * too.
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "macro.h"
#include "utf8.h"
#include "conf.h"
#include "parse-number.h"
#include "peer-tls.h"
#include "svemig/migrate.h"

#define SECTION_PEER_PREFIX "peer "
#define PEER_NAME_MAX       63
#define SNAPSHOT_KEEP_MAX   100000u
/* Read at most this much of one line; inih takes shorter ones still (INI_MAX_LINE). */
#define CONF_LINE_MAX 4096

struct seen_key {
        char *section;
        char *key;
        unsigned line;
};

struct cpu_key {
        unsigned index;
        vqset_t map;
        unsigned line;
};

struct peer_section {
        char *name;
        unsigned line;
};

struct parse_ctx {
        struct migrate_conf *conf;
        const char *path;
        FILE *f;
        unsigned line; /* the line inih is on */
        char *buf;
        size_t buf_size;

        struct seen_key *seen;
        size_t n_seen;

        /* [sim], combined once the whole file is read */
        unsigned sim_cpus, sim_cpus_line;
        bool have_vq_map;
        vqset_t vq_map;
        unsigned vq_map_line;
        struct cpu_key *cpu_keys;
        size_t n_cpu_keys;

        struct peer_section *peer_sections;
        size_t n_peer_sections;

        /* the first error, with its line (0 = the file as a whole) */
        struct svemig_error err;
        unsigned err_line;
        bool failed;
};

static const char *const log_levels[] = {
        [LOG_ERR] = "err",   [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

static int fail(struct parse_ctx *ctx, unsigned line, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Records the first error only: later ones are often its consequences. */
static int fail(struct parse_ctx *ctx, unsigned line, int code, const char *fmt, ...)
{
        va_list ap;

        if (ctx->failed)
                return -EINVAL;
        va_start(ap, fmt);
        svemig_error_setv(&ctx->err, code, fmt, ap);
        va_end(ap);
        ctx->err_line = line;
        ctx->failed = true;
        return -EINVAL;
}

static int set_string(char **dst, const char *value)
{
        char *s = strdup(value);

        if (!s)
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
}

/* --- value parsers: each gets the key's value and returns 0 or fails the parse --- */

typedef int (*value_parser)(struct parse_ctx *ctx, const char *key, const char *value);

static int parse_unsigned(struct parse_ctx *ctx, const char *key, const char *value, unsigned min,
                          unsigned max, unsigned *out)
{
        uint64_t v;

        if (parse_count(value, max, &v) < 0 || v < min)
                return fail(ctx, ctx->line, EINVAL, "%s = %s: expected a whole number from %u to %u", key,
                            value, min, max);
        *out = (unsigned)v;
        return 0;
}

static int parse_absolute_path(struct parse_ctx *ctx, const char *key, const char *value, char **dst)
{
        if (value[0] != '/')
                return fail(ctx, ctx->line, EINVAL, "%s = %s: expected an absolute path (starting with /)",
                            key, value);
        if (strlen(value) >= PATH_MAX)
                return fail(ctx, ctx->line, ENAMETOOLONG, "%s: the path is longer than %d bytes", key,
                            PATH_MAX - 1);
        return set_string(dst, value);
}

static int parse_host_name(struct parse_ctx *ctx, const char *key, const char *value)
{
        size_t n = strlen(value);

        if (n == 0 || n > MIGRATE_CONF_HOST_NAME_MAX)
                return fail(ctx, ctx->line, EINVAL, "%s: expected a name of 1 to %d characters", key,
                            MIGRATE_CONF_HOST_NAME_MAX);
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)value[i]) && !strchr("-._", value[i]))
                        return fail(ctx, ctx->line, EINVAL,
                                    "%s = %s: '%c' is not allowed; use letters, digits, '-', '.' and '_'",
                                    key, value, value[i]);
        return set_string(&ctx->conf->host_name, value);
}

static int parse_state_dir(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_absolute_path(ctx, key, value, &ctx->conf->state_dir);
}

static int parse_socket(struct parse_ctx *ctx, const char *key, const char *value)
{
        size_t max = sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1;

        if (strlen(value) > max)
                return fail(ctx, ctx->line, ENAMETOOLONG,
                            "%s: a Unix socket path holds at most %zu bytes; choose a shorter one", key,
                            max);
        return parse_absolute_path(ctx, key, value, &ctx->conf->socket_path);
}

static int parse_socket_group(struct parse_ctx *ctx, const char *key, const char *value)
{
        struct group grp, *res = NULL;
        char buf[4096], *end;
        unsigned long gid;
        int r;

        if (value[0] == '\0') {
                free(ctx->conf->socket_group);
                ctx->conf->socket_group = NULL;
                ctx->conf->socket_gid = getegid();
                return 0;
        }
        errno = 0;
        gid = strtoul(value, &end, 10);
        if (isdigit((unsigned char)value[0]) && !*end && !errno && gid < (gid_t)-1) {
                ctx->conf->socket_gid = (gid_t)gid;
                return set_string(&ctx->conf->socket_group, value);
        }
        r = getgrnam_r(value, &grp, buf, sizeof(buf), &res);
        if (r != 0)
                return fail(ctx, ctx->line, r, "%s = %s: cannot look the group up: %s", key, value,
                            strerror(r));
        if (!res)
                return fail(ctx, ctx->line, ENOENT,
                            "%s = %s: no such group; create it (groupadd --system %s) or name an existing "
                            "group",
                            key, value, value);
        ctx->conf->socket_gid = grp.gr_gid;
        return set_string(&ctx->conf->socket_group, value);
}

static int parse_log_level(struct parse_ctx *ctx, const char *key, const char *value)
{
        for (int i = 0; i < (int)ELEMENTSOF(log_levels); i++)
                if (log_levels[i] && strcmp(value, log_levels[i]) == 0) {
                        ctx->conf->log_level = i;
                        return 0;
                }
        return fail(ctx, ctx->line, EINVAL, "%s = %s: expected err, warning, notice, info or debug", key,
                    value);
}

static int parse_backend(struct parse_ctx *ctx, const char *key, const char *value)
{
        static const enum hv_backend backends[] = {HV_BACKEND_AUTO, HV_BACKEND_SIM, HV_BACKEND_KVM};

        for (size_t i = 0; i < ELEMENTSOF(backends); i++)
                if (strcmp(value, migrate_conf_backend_name(backends[i])) == 0) {
                        ctx->conf->backend = backends[i];
                        return 0;
                }
        return fail(ctx, ctx->line, EINVAL,
                    "%s = %s: expected auto (kvm on an arm64 KVM host, else sim), sim or kvm", key, value);
}

static int parse_kvm_device(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_absolute_path(ctx, key, value, &ctx->conf->kvm_device);
}

static int parse_sim_kernel(struct parse_ctx *ctx, const char *key, const char *value)
{
        if (strcmp(value, "6.1") != 0 && strcmp(value, "6.12") != 0)
                return fail(
                        ctx, ctx->line, EINVAL,
                        "%s = %s: the sim models Debian's 6.1 or 6.12 arm64 kernel; expected 6.1 or 6.12",
                        key, value);
        return set_string(&ctx->conf->sim_kernel, value);
}

static int parse_sim_kvm_mode(struct parse_ctx *ctx, const char *key, const char *value)
{
        if (strcmp(value, "vhe") != 0 && strcmp(value, "nvhe") != 0)
                return fail(ctx, ctx->line, EINVAL,
                            "%s = %s: expected vhe or nvhe (the mode of the KVM the sim models)", key,
                            value);
        ctx->conf->sim_nvhe = strcmp(value, "nvhe") == 0;
        return 0;
}

static int parse_sim_cpus(struct parse_ctx *ctx, const char *key, const char *value)
{
        ctx->sim_cpus_line = ctx->line;
        return parse_unsigned(ctx, key, value, 1, MIGRATE_CONF_SIM_CPUS_MAX, &ctx->sim_cpus);
}

/* A CPU's map: anything vqset_parse() takes, within what SVE hardware can have. */
static int parse_vq_map(struct parse_ctx *ctx, const char *key, const char *value, vqset_t *out)
{
        struct svemig_error e = {0};
        unsigned top;

        if (vqset_parse(value, out, &e) < 0)
                return fail(ctx, ctx->line, EINVAL, "%s = %s: %s", key, value, e.msg);
        top = vqset_highest(out);
        if (top > VQSET_VQ_ARCH_MAX)
                return fail(ctx, ctx->line, EINVAL,
                            "%s = %s: a CPU cannot implement %u-bit vectors; SVE stops at %u bits", key,
                            value, vq_to_bits(top), vq_to_bits(VQSET_VQ_ARCH_MAX));
        return 0;
}

static int parse_sim_vq_map(struct parse_ctx *ctx, const char *key, const char *value)
{
        ctx->vq_map_line = ctx->line;
        ctx->have_vq_map = true;
        return parse_vq_map(ctx, key, value, &ctx->vq_map);
}

/* cpuN = MAP */
static int parse_sim_cpu_n(struct parse_ctx *ctx, const char *key, const char *value)
{
        struct cpu_key *k;
        unsigned index = 0;
        int r;

        r = parse_unsigned(ctx, key, key + 3, 0, MIGRATE_CONF_SIM_CPUS_MAX - 1, &index);
        if (r < 0)
                return r;
        k = reallocarray(ctx->cpu_keys, ctx->n_cpu_keys + 1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        ctx->cpu_keys = k;
        k = &ctx->cpu_keys[ctx->n_cpu_keys];
        *k = (struct cpu_key){.index = index, .line = ctx->line};
        r = parse_vq_map(ctx, key, value, &k->map);
        if (r < 0)
                return r;
        ctx->n_cpu_keys++;
        return 0;
}

static bool is_cpu_n_key(const char *key)
{
        if (strncmp(key, "cpu", 3) != 0 || !key[3])
                return false;
        for (const char *p = key + 3; *p; p++)
                if (!isdigit((unsigned char)*p))
                        return false;
        /* "cpu007" would be a second spelling of cpu7; refuse it as unknown. */
        return key[3] != '0' || !key[4];
}

static int parse_snapshot_dir(struct parse_ctx *ctx, const char *key, const char *value)
{
        /* A remote directory: the checkpoint timer's snapshots go there, as NAME-TIME.svemig under it. */
        if (store_is_remote(value)) {
                if (value[strlen(value) - 1] == '/')
                        return fail(ctx, ctx->line, EINVAL, "%s = %s: leave out the trailing '/'", key,
                                    value);
                return set_string(&ctx->conf->snapshot_dir, value);
        }
        return parse_absolute_path(ctx, key, value, &ctx->conf->snapshot_dir);
}

static int parse_snapshot_keep(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_unsigned(ctx, key, value, 0, SNAPSHOT_KEEP_MAX, &ctx->conf->snapshot_keep);
}

static int parse_snapshot_compression(struct parse_ctx *ctx, const char *key, const char *value)
{
        if (strcmp(value, "lz4") != 0 && strcmp(value, "none") != 0)
                return fail(ctx, ctx->line, EINVAL, "%s = %s: expected lz4 or none", key, value);
        return set_string(&ctx->conf->snapshot_compression, value);
}

static int parse_store_endpoint(struct parse_ctx *ctx, const char *key, const char *value)
{
        if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0)
                return fail(
                        ctx, ctx->line, EINVAL,
                        "%s = %s: expected the S3 endpoint's URL, http://HOST[:PORT] or https://HOST[:PORT]",
                        key, value);
        return set_string(&ctx->conf->s3_endpoint, value);
}

static int parse_store_region(struct parse_ctx *ctx, const char *key, const char *value)
{
        for (const char *p = value; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '-')
                        return fail(ctx, ctx->line, EINVAL,
                                    "%s = %s: expected a region name such as us-east-1", key, value);
        return set_string(&ctx->conf->s3_region, value);
}

static int parse_store_credentials(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_absolute_path(ctx, key, value, &ctx->conf->credentials_file);
}

static int parse_store_profile(struct parse_ctx *ctx, const char *key, const char *value)
{
        (void)key;
        return set_string(&ctx->conf->s3_profile, value);
}

static int parse_store_ca_file(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_absolute_path(ctx, key, value, &ctx->conf->ca_file);
}

static int parse_store_part_size(struct parse_ctx *ctx, const char *key, const char *value)
{
        uint64_t v;

        if (parse_size(value, &v) < 0 || v < STORE_PART_SIZE_MIN || v > STORE_PART_SIZE_MAX)
                return fail(ctx, ctx->line, EINVAL,
                            "%s = %s: expected a size from 64K to 1G (AWS itself takes 5M at least)", key,
                            value);
        ctx->conf->part_size = v;
        return 0;
}

static int parse_store_parallel(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_unsigned(ctx, key, value, 1, STORE_PARALLEL_MAX, &ctx->conf->parallel_uploads);
}

static int parse_store_retries(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_unsigned(ctx, key, value, 1, 100, &ctx->conf->store_retries);
}

/*
 * HOST:PORT, with an IPv6 address in brackets. The host is not resolved
 * here: a peer may be down, or its name not resolvable yet, when we start.
 */
static int parse_address(struct parse_ctx *ctx, const char *key, const char *value, bool wildcard_ok,
                         struct migrate_conf_peer *p)
{
        const char *colon, *host = value;
        size_t host_len;
        unsigned port = 0;
        int r;

        if (value[0] == '[') {
                const char *close = strchr(value, ']');

                if (!close || close[1] != ':')
                        goto bad;
                host = value + 1;
                host_len = (size_t)(close - host);
                colon = close + 1;
                for (size_t i = 0; i < host_len; i++)
                        if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.')
                                goto bad;
        } else {
                colon = strrchr(value, ':');
                if (!colon || memchr(value, ':', (size_t)(colon - value)))
                        goto bad;
                host_len = (size_t)(colon - value);
                for (size_t i = 0; i < host_len; i++)
                        if (!isalnum((unsigned char)host[i]) && !strchr("-._", host[i]) &&
                            !(wildcard_ok && host_len == 1 && host[i] == '*'))
                                goto bad;
        }
        if (host_len == 0 || host_len > 253)
                goto bad;
        r = parse_unsigned(ctx, key, colon + 1, 1, 65535, &port);
        if (r < 0)
                return r;
        p->host = strndup(host, host_len);
        p->address = strdup(value);
        if (!p->host || !p->address)
                return -ENOMEM;
        p->port = (uint16_t)port;
        p->line = ctx->line;
        return 0;
bad:
        return fail(
                ctx, ctx->line, EINVAL,
                "%s = %s: expected HOST:PORT, e.g. node2.example:7070, 192.0.2.7:7070 or [2001:db8::7]:7070",
                key, value);
}

static struct migrate_conf_peer *peer_get(struct parse_ctx *ctx, const char *name)
{
        struct migrate_conf *conf = ctx->conf;
        struct migrate_conf_peer *p;

        for (size_t i = 0; i < conf->n_peers; i++)
                if (strcmp(conf->peers[i].name, name) == 0)
                        return &conf->peers[i];
        p = reallocarray(conf->peers, conf->n_peers + 1, sizeof(*p));
        if (!p)
                return NULL;
        conf->peers = p;
        p = &conf->peers[conf->n_peers];
        *p = (struct migrate_conf_peer){.name = strdup(name)};
        if (!p->name)
                return NULL;
        conf->n_peers++;
        return p;
}

static int parse_peer_address(struct parse_ctx *ctx, const char *section, const char *key, const char *value)
{
        struct migrate_conf_peer *p = peer_get(ctx, section + strlen(SECTION_PEER_PREFIX));

        if (!p)
                return -ENOMEM;
        return parse_address(ctx, key, value, false, p);
}

/* [cluster] listen = HOST:PORT, *:PORT for every address, or empty for no listener. */
static int parse_cluster_listen(struct parse_ctx *ctx, const char *key, const char *value)
{
        struct migrate_conf *conf = ctx->conf;
        struct migrate_conf_peer p = {0};
        int r;

        free(conf->listen_address);
        free(conf->listen_host);
        conf->listen_address = conf->listen_host = NULL;
        conf->listen_port = 0;
        if (value[0] == '\0')
                return 0;
        r = parse_address(ctx, key, value, true, &p);
        if (r < 0) {
                free(p.host);
                free(p.address);
                return r;
        }
        conf->listen_address = p.address;
        conf->listen_host = p.host;
        conf->listen_port = p.port;
        return 0;
}

/* A duration: N (seconds), Ns or Nms. */
static int parse_duration_ms(struct parse_ctx *ctx, const char *key, const char *value, unsigned min_ms,
                             unsigned max_ms, unsigned *out)
{
        unsigned long long v;
        char *end;

        errno = 0;
        if (!isdigit((unsigned char)value[0]))
                goto bad;
        v = strtoull(value, &end, 10);
        if (errno)
                goto bad;
        if (strcmp(end, "ms") == 0)
                ;
        else if (*end == '\0' || strcmp(end, "s") == 0)
                v = v > ULLONG_MAX / 1000 ? ULLONG_MAX : v * 1000;
        else
                goto bad;
        if (v < min_ms || v > max_ms)
                goto bad;
        *out = (unsigned)v;
        return 0;
bad:
        return fail(ctx, ctx->line, EINVAL,
                    "%s = %s: expected a duration from %ums to %us, as seconds (5, 5s) or milliseconds "
                    "(250ms)",
                    key, value, min_ms, max_ms / 1000);
}

static int parse_store_stall(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_duration_ms(ctx, key, value, 1000, 3600 * 1000, &ctx->conf->stall_timeout_ms);
}

static int parse_cluster_refresh(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_duration_ms(ctx, key, value, 50, 3600 * 1000, &ctx->conf->peer_refresh_ms);
}

static int parse_cluster_peer_timeout(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_duration_ms(ctx, key, value, 100, 600 * 1000, &ctx->conf->peer_timeout_ms);
}

static int parse_bytes(struct parse_ctx *ctx, const char *key, const char *value, uint64_t *out)
{
        if (parse_size(value, out) < 0)
                return fail(ctx, ctx->line, EINVAL, "%s = %s: expected bytes, as N, NK, NM or NG", key,
                            value);
        return 0;
}

static int parse_cluster_mem_limit(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_bytes(ctx, key, value, &ctx->conf->incoming_mem_limit);
}

static int parse_cluster_reserve(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_bytes(ctx, key, value, &ctx->conf->incoming_reserve);
}

/* Memory channels besides a migration's connection (docs/migration.md "Memory channels"). */
static int parse_cluster_channels(struct parse_ctx *ctx, const char *key, const char *value)
{
        uint64_t n;

        if (parse_count(value, MIGRATE_CHANNELS_MAX, &n) < 0)
                return fail(ctx, ctx->line, EINVAL,
                            "%s = %s: expected a number of memory channels from 0 (all memory on the "
                            "migration's one connection) to %u",
                            key, value, MIGRATE_CHANNELS_MAX);
        ctx->conf->migration_channels = (unsigned)n;
        return 0;
}

/* A limit on connections: 1 to 65536. */
static int parse_limit(struct parse_ctx *ctx, const char *key, const char *value, unsigned *out)
{
        uint64_t n;

        if (parse_count(value, 65536, &n) < 0 || n == 0)
                return fail(ctx, ctx->line, EINVAL,
                            "%s = %s: expected a number of connections from 1 to 65536", key, value);
        *out = (unsigned)n;
        return 0;
}

static int parse_daemon_client_timeout(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_duration_ms(ctx, key, value, 100, 86400 * 1000, &ctx->conf->client_timeout_ms);
}

static int parse_daemon_max_clients(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_limit(ctx, key, value, &ctx->conf->max_clients);
}

static int parse_daemon_max_clients_per_user(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_limit(ctx, key, value, &ctx->conf->max_clients_per_user);
}

static int parse_cluster_idle_timeout(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_duration_ms(ctx, key, value, 100, 86400 * 1000, &ctx->conf->peer_idle_ms);
}

static int parse_cluster_max_connections(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_limit(ctx, key, value, &ctx->conf->max_peer_conns);
}

static int parse_cluster_max_per_peer(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_limit(ctx, key, value, &ctx->conf->max_conns_per_peer);
}

/* [libvirt] uri: where svemigd follows libvirt's domains; empty: it does not. */
static int parse_libvirt_uri(struct parse_ctx *ctx, const char *key, const char *value)
{
        if (!value[0]) {
                free(ctx->conf->libvirt_uri);
                ctx->conf->libvirt_uri = NULL;
                return 0;
        }
        if (!strstr(value, ":///") && !strstr(value, "://"))
                return fail(ctx, ctx->line, EINVAL,
                            "%s = %s: expected a libvirt connection URI such as qemu:///system", key, value);
        return set_string(&ctx->conf->libvirt_uri, value);
}

static int parse_yes_no(struct parse_ctx *ctx, const char *key, const char *value, bool *out)
{
        if (strcmp(value, "yes") == 0 || strcmp(value, "no") == 0) {
                *out = strcmp(value, "yes") == 0;
                return 0;
        }
        return fail(ctx, ctx->line, EINVAL, "%s = %s: expected yes or no", key, value);
}

static int parse_libvirt_require_cluster(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_yes_no(ctx, key, value, &ctx->conf->libvirt_require_cluster_set);
}

static int parse_libvirt_daemon_down(struct parse_ctx *ctx, const char *key, const char *value)
{
        if (strcmp(value, "refuse") != 0 && strcmp(value, "allow") != 0)
                return fail(ctx, ctx->line, EINVAL,
                            "%s = %s: expected refuse (the hook refuses to start or take a domain while "
                            "svemigd cannot be asked) or allow (it lets libvirt go on, unchecked)",
                            key, value);
        ctx->conf->libvirt_daemon_down_allow = strcmp(value, "allow") == 0;
        return 0;
}

static int parse_libvirt_hook_timeout(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_duration_ms(ctx, key, value, 100, 60 * 1000, &ctx->conf->libvirt_hook_timeout_ms);
}

/* [cluster] advertise = HOST:PORT: where peers reach this host, when listen does not say (*:PORT). */
static int parse_cluster_advertise(struct parse_ctx *ctx, const char *key, const char *value)
{
        struct migrate_conf_peer p = {0};
        int r;

        free(ctx->conf->advertise);
        ctx->conf->advertise = NULL;
        if (value[0] == '\0')
                return 0;
        r = parse_address(ctx, key, value, false, &p);
        free(p.host);
        if (r < 0) {
                free(p.address);
                return r;
        }
        ctx->conf->advertise = p.address;
        return 0;
}

static int parse_cluster_store(struct parse_ctx *ctx, const char *key, const char *value)
{
        if (strcmp(value, "static") == 0)
                ctx->conf->store = MEMBERSHIP_STATIC;
        else if (strcmp(value, "etcd") == 0)
                ctx->conf->store = MEMBERSHIP_ETCD;
        else
                return fail(ctx, ctx->line, EINVAL,
                            "%s = %s: expected static (the [peer NAME] sections) or etcd (etcd-endpoints)",
                            key, value);
        return 0;
}

static void free_endpoints(struct migrate_conf *conf)
{
        for (size_t i = 0; i < conf->n_etcd_endpoints; i++)
                free(conf->etcd_endpoints[i]);
        free(conf->etcd_endpoints);
        conf->etcd_endpoints = NULL;
        conf->n_etcd_endpoints = 0;
}

/* etcd-endpoints = http://HOST:PORT,https://HOST:PORT,... */
static int parse_cluster_etcd_endpoints(struct parse_ctx *ctx, const char *key, const char *value)
{
        struct migrate_conf *conf = ctx->conf;
        _cleanup_free_ char *copy = strdup(value);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        free_endpoints(conf);
        for (char *e = strtok_r(copy, ", \t", &save); e; e = strtok_r(NULL, ", \t", &save)) {
                char **n;

                if ((strncmp(e, "http://", 7) != 0 || !e[7]) && (strncmp(e, "https://", 8) != 0 || !e[8]))
                        return fail(ctx, ctx->line, EINVAL,
                                    "%s: %s is not an etcd client URL; expected http://HOST:PORT or "
                                    "https://HOST:PORT, separated by commas",
                                    key, e);
                n = reallocarray(conf->etcd_endpoints, conf->n_etcd_endpoints + 1, sizeof(*n));
                if (!n)
                        return -ENOMEM;
                conf->etcd_endpoints = n;
                n[conf->n_etcd_endpoints] = strdup(e);
                if (!n[conf->n_etcd_endpoints])
                        return -ENOMEM;
                conf->n_etcd_endpoints++;
        }
        if (conf->n_etcd_endpoints == 0)
                return fail(ctx, ctx->line, EINVAL, "%s is empty: give at least one http(s)://HOST:PORT",
                            key);
        return 0;
}

static int parse_cluster_etcd_prefix(struct parse_ctx *ctx, const char *key, const char *value)
{
        if (value[0] == '\0' || strlen(value) > 200)
                return fail(ctx, ctx->line, EINVAL,
                            "%s = %s: expected a key prefix of 1 to 200 bytes, e.g. /svemig/", key, value);
        return set_string(&ctx->conf->etcd_prefix, value);
}

static int parse_cluster_etcd_cacert(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_absolute_path(ctx, key, value, &ctx->conf->etcd_cacert);
}

static int parse_cluster_etcd_cert(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_absolute_path(ctx, key, value, &ctx->conf->etcd_cert);
}

static int parse_cluster_etcd_key(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_absolute_path(ctx, key, value, &ctx->conf->etcd_key);
}

static int parse_cluster_etcd_user(struct parse_ctx *ctx, const char *key, const char *value)
{
        if (value[0] == '\0')
                return fail(ctx, ctx->line, EINVAL, "%s is empty: name an etcd user, or leave the key out",
                            key);
        return set_string(&ctx->conf->etcd_user, value);
}

static int parse_cluster_etcd_password_file(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_absolute_path(ctx, key, value, &ctx->conf->etcd_password_file);
}

static int parse_cluster_etcd_lease(struct parse_ctx *ctx, const char *key, const char *value)
{
        unsigned ms;
        int r;

        r = parse_duration_ms(ctx, key, value, 2000, 3600 * 1000, &ms);
        if (r < 0)
                return r;
        if (ms % 1000)
                return fail(ctx, ctx->line, EINVAL, "%s = %s: etcd's leases count whole seconds", key,
                            value);
        ctx->conf->etcd_lease_ttl_s = ms / 1000;
        return 0;
}

/* Peer TLS's x509 files: absolute paths, read (and checked) by migrate_conf_tls_load(). */
static int parse_cluster_tls_file(struct parse_ctx *ctx, const char *key, const char *value, char **dst,
                                  unsigned *line)
{
        *line = ctx->line;
        return parse_absolute_path(ctx, key, value, dst);
}

static int parse_cluster_tls_ca(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_cluster_tls_file(ctx, key, value, &ctx->conf->tls_ca, &ctx->conf->tls_ca_line);
}

static int parse_cluster_tls_cert(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_cluster_tls_file(ctx, key, value, &ctx->conf->tls_cert, &ctx->conf->tls_cert_line);
}

static int parse_cluster_tls_key(struct parse_ctx *ctx, const char *key, const char *value)
{
        return parse_cluster_tls_file(ctx, key, value, &ctx->conf->tls_key, &ctx->conf->tls_key_line);
}

static int parse_cluster_peer_tls(struct parse_ctx *ctx, const char *key, const char *value)
{
        ctx->conf->peer_tls_line = ctx->line;
        return parse_yes_no(ctx, key, value, &ctx->conf->peer_tls);
}

/* cluster-set = NAME: a word, as it goes into an etcd key. */
static int parse_cluster_set(struct parse_ctx *ctx, const char *key, const char *value)
{
        size_t n = strlen(value);

        if (n == 0 || n > MIGRATE_CONF_HOST_NAME_MAX ||
            strspn(value, "abcdefghijklmnopqrstuvwxyz"
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
                return fail(ctx, ctx->line, EINVAL,
                            "%s = %s: expected a name of 1 to %d letters, digits, '.', '_' or '-'", key,
                            value, MIGRATE_CONF_HOST_NAME_MAX);
        return set_string(&ctx->conf->cluster_set, value);
}

/* [guests] */

static int parse_guests_host_memory(struct parse_ctx *ctx, const char *key, const char *value)
{
        int r = parse_bytes(ctx, key, value, &ctx->conf->guest_host_memory);

        if (r == 0 && ctx->conf->guest_host_memory < (1u << 20))
                return fail(ctx, ctx->line, EINVAL,
                            "%s = %s: less than 1 MiB leaves no room for a guest; give the RAM guests may "
                            "have, or leave the key out for the host's MemTotal",
                            key, value);
        return r;
}

/* A ratio with up to two decimals, e.g. 1, 1.5, 0.75: kept as a percentage. */
static int parse_guests_overcommit(struct parse_ctx *ctx, const char *key, const char *value)
{
        unsigned long whole = 0, frac = 0;
        const char *p = value;
        unsigned digits = 0;

        if (!isdigit((unsigned char)*p))
                goto bad;
        for (; isdigit((unsigned char)*p) && whole <= MIGRATE_CONF_OVERCOMMIT_MAX; p++)
                whole = whole * 10 + (unsigned long)(*p - '0');
        if (*p == '.') {
                for (p++; isdigit((unsigned char)*p) && digits < 2; p++, digits++)
                        frac = frac * 10 + (unsigned long)(*p - '0');
                if (digits == 0)
                        goto bad;
                if (digits == 1)
                        frac *= 10;
        }
        if (*p || whole > MIGRATE_CONF_OVERCOMMIT_MAX || whole * 100 + frac == 0 ||
            whole * 100 + frac > MIGRATE_CONF_OVERCOMMIT_MAX * 100)
                goto bad;
        ctx->conf->guest_overcommit_pct = (unsigned)(whole * 100 + frac);
        return 0;
bad:
        return fail(ctx, ctx->line, EINVAL,
                    "%s = %s: expected a ratio from 0.01 to %u with at most two decimals (1 = guests may "
                    "have the host's memory, 1.5 = half as much again)",
                    key, value, MIGRATE_CONF_OVERCOMMIT_MAX);
}

/* --- sections and keys --- */

struct key_def {
        const char *key;
        value_parser parse;
};

struct section_def {
        const char *name;
        const struct key_def *keys;
        size_t n_keys;
};

static const struct key_def daemon_keys[] = {
        {"host-name", parse_host_name},
        {"state-directory", parse_state_dir},
        {"socket", parse_socket},
        {"socket-group", parse_socket_group},
        {"log-level", parse_log_level},
        {"client-timeout", parse_daemon_client_timeout},
        {"max-clients", parse_daemon_max_clients},
        {"max-clients-per-user", parse_daemon_max_clients_per_user},
};
static const struct key_def hypervisor_keys[] = {
        {"backend", parse_backend},
        {"kvm-device", parse_kvm_device},
};
/* and cpuN, see is_cpu_n_key() */
static const struct key_def sim_keys[] = {
        {"kernel", parse_sim_kernel},
        {"kvm-mode", parse_sim_kvm_mode},
        {"cpus", parse_sim_cpus},
        {"vq-map", parse_sim_vq_map},
};
static const struct key_def cluster_keys[] = {
        {"listen", parse_cluster_listen},
        {"refresh-interval", parse_cluster_refresh},
        {"peer-timeout", parse_cluster_peer_timeout},
        {"incoming-memory-limit", parse_cluster_mem_limit},
        {"incoming-reserve", parse_cluster_reserve},
        {"migration-channels", parse_cluster_channels},
        {"idle-timeout", parse_cluster_idle_timeout},
        {"max-connections", parse_cluster_max_connections},
        {"max-connections-per-peer", parse_cluster_max_per_peer},
        {"advertise", parse_cluster_advertise},
        {"store", parse_cluster_store},
        {"etcd-endpoints", parse_cluster_etcd_endpoints},
        {"etcd-prefix", parse_cluster_etcd_prefix},
        {"etcd-cacert", parse_cluster_etcd_cacert},
        {"etcd-cert", parse_cluster_etcd_cert},
        {"etcd-key", parse_cluster_etcd_key},
        {"etcd-user", parse_cluster_etcd_user},
        {"etcd-password-file", parse_cluster_etcd_password_file},
        {"etcd-lease", parse_cluster_etcd_lease},
        {"cluster-set", parse_cluster_set},
        {"peer-tls", parse_cluster_peer_tls},
        {"tls-ca", parse_cluster_tls_ca},
        {"tls-cert", parse_cluster_tls_cert},
        {"tls-key", parse_cluster_tls_key},
};
static const struct key_def guests_keys[] = {
        {"host-memory", parse_guests_host_memory},
        {"memory-overcommit", parse_guests_overcommit},
};
static const struct key_def snapshot_keys[] = {
        {"directory", parse_snapshot_dir},
        {"keep", parse_snapshot_keep},
        {"compression", parse_snapshot_compression},
};

static const struct key_def libvirt_keys[] = {
        {"uri", parse_libvirt_uri},
        {"require-cluster-set", parse_libvirt_require_cluster},
        {"daemon-down", parse_libvirt_daemon_down},
        {"hook-timeout", parse_libvirt_hook_timeout},
};

static const struct key_def store_keys[] = {
        {"s3-endpoint", parse_store_endpoint},
        {"s3-region", parse_store_region},
        {"credentials-file", parse_store_credentials},
        {"profile", parse_store_profile},
        {"ca-file", parse_store_ca_file},
        {"part-size", parse_store_part_size},
        {"parallel-uploads", parse_store_parallel},
        {"retries", parse_store_retries},
        {"stall-timeout", parse_store_stall},
};

#define SECTION(n, k)                                                                                       \
        {                                                                                                   \
                n, k, ELEMENTSOF(k)                                                                         \
        }
static const struct section_def sections[] = {
        SECTION("daemon", daemon_keys),   SECTION("hypervisor", hypervisor_keys),
        SECTION("sim", sim_keys),         SECTION("snapshot", snapshot_keys),
        SECTION("cluster", cluster_keys), SECTION("libvirt", libvirt_keys),
        SECTION("guests", guests_keys),   SECTION("store", store_keys),
};

#define KNOWN_SECTIONS                                                                                      \
        "[daemon], [hypervisor], [sim], [guests], [snapshot], [cluster], [libvirt], [store] and [peer "     \
        "NAME]"

static const struct section_def *section_find(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(sections); i++)
                if (strcmp(sections[i].name, name) == 0)
                        return &sections[i];
        return NULL;
}

static bool is_peer_section(const char *name)
{
        return strncmp(name, SECTION_PEER_PREFIX, strlen(SECTION_PEER_PREFIX)) == 0;
}

static int known_keys(const struct section_def *s, char *buf, size_t len)
{
        size_t off = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < s->n_keys && off < len; i++)
                off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", s->keys[i].key);
        if (strcmp(s->name, "sim") == 0 && off < len)
                snprintf(buf + off, len - off, ", cpuN");
        return 0;
}

/* Called by our line reader for every "[...]" line, before inih sees it. */
static int section_header(struct parse_ctx *ctx, const char *line)
{
        const char *close = strchr(line, ']');
        _cleanup_free_ char *name = NULL;

        if (!close)
                return 0; /* inih reports the syntax error */
        name = strndup(line + 1, (size_t)(close - line - 1));
        if (!name)
                return -ENOMEM;
        if (section_find(name))
                return 0;
        if (is_peer_section(name)) {
                const char *peer = name + strlen(SECTION_PEER_PREFIX);
                size_t n = strlen(peer);
                struct peer_section *ps;

                if (n == 0 || n > PEER_NAME_MAX)
                        return fail(ctx, ctx->line, EINVAL, "[%s]: a peer name has 1 to %d characters", name,
                                    PEER_NAME_MAX);
                for (size_t i = 0; i < n; i++)
                        if (!isalnum((unsigned char)peer[i]) && !strchr("-._", peer[i]))
                                return fail(ctx, ctx->line, EINVAL,
                                            "[%s]: '%c' is not allowed in a peer name; use letters, digits, "
                                            "'-', '.' and '_'",
                                            name, peer[i]);
                for (size_t i = 0; i < ctx->n_peer_sections; i++)
                        if (strcmp(ctx->peer_sections[i].name, peer) == 0)
                                return fail(ctx, ctx->line, EEXIST,
                                            "[%s] is already defined on line %u; give each peer one section",
                                            name, ctx->peer_sections[i].line);
                ps = reallocarray(ctx->peer_sections, ctx->n_peer_sections + 1, sizeof(*ps));
                if (!ps)
                        return -ENOMEM;
                ctx->peer_sections = ps;
                ps[ctx->n_peer_sections] = (struct peer_section){.name = strdup(peer), .line = ctx->line};
                if (!ps[ctx->n_peer_sections].name)
                        return -ENOMEM;
                ctx->n_peer_sections++;
                return 0;
        }
        return fail(ctx, ctx->line, EINVAL, "unknown section [%s]; the sections are " KNOWN_SECTIONS, name);
}

static int check_duplicate(struct parse_ctx *ctx, const char *section, const char *key)
{
        struct seen_key *s;

        for (size_t i = 0; i < ctx->n_seen; i++)
                if (strcmp(ctx->seen[i].section, section) == 0 && strcmp(ctx->seen[i].key, key) == 0)
                        return fail(ctx, ctx->line, EEXIST,
                                    "%s is already set on line %u; set each key once per section", key,
                                    ctx->seen[i].line);
        s = reallocarray(ctx->seen, ctx->n_seen + 1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        ctx->seen = s;
        s[ctx->n_seen] =
                (struct seen_key){.section = strdup(section), .key = strdup(key), .line = ctx->line};
        ctx->n_seen++;
        if (!s[ctx->n_seen - 1].section || !s[ctx->n_seen - 1].key)
                return -ENOMEM;
        return 0;
}

static int handle_key(struct parse_ctx *ctx, const char *section, const char *key, const char *value)
{
        const struct section_def *s;
        char known[256];
        int r;

        if (section[0] == '\0')
                return fail(ctx, ctx->line, EINVAL,
                            "%s is outside any section; put it under one of " KNOWN_SECTIONS, key);

        r = check_duplicate(ctx, section, key);
        if (r < 0)
                return r;

        if (is_peer_section(section)) {
                if (strcmp(key, "address") == 0)
                        return parse_peer_address(ctx, section, key, value);
                return fail(ctx, ctx->line, EINVAL, "unknown key '%s' in [%s]; the key there is: address",
                            key, section);
        }

        s = section_find(section);
        if (!s) /* section_header() refused it already */
                return fail(ctx, ctx->line, EINVAL, "unknown section [%s]", section);
        for (size_t i = 0; i < s->n_keys; i++)
                if (strcmp(s->keys[i].key, key) == 0)
                        return s->keys[i].parse(ctx, key, value);
        if (strcmp(section, "sim") == 0 && is_cpu_n_key(key))
                return parse_sim_cpu_n(ctx, key, value);

        known_keys(s, known, sizeof(known));
        return fail(ctx, ctx->line, EINVAL, "unknown key '%s' in [%s]; the keys there are: %s", key, section,
                    known);
}

static int ini_handler_cb(void *user, const char *section, const char *key, const char *value)
{
        struct parse_ctx *ctx = user;
        int r;

        if (ctx->failed)
                return 1; /* only the first error is reported; keep inih quiet */
        r = handle_key(ctx, section, key, value);
        if (r == -ENOMEM)
                fail(ctx, ctx->line, ENOMEM, "out of memory");
        return r < 0 ? 0 : 1;
}

/*
 * One line into ctx->buf, without its end: its length, -1 at the end of the
 * file, or -E2BIG past CONF_LINE_MAX bytes, read no further: a file of one
 * endless line (/dev/zero) is refused, not read until memory runs out.
 */
static ssize_t read_line(struct parse_ctx *ctx)
{
        size_t n = 0;
        int c;

        if (!ctx->buf) {
                ctx->buf = malloc(CONF_LINE_MAX + 1);
                if (!ctx->buf)
                        return -ENOMEM;
                ctx->buf_size = CONF_LINE_MAX + 1;
        }
        while ((c = getc(ctx->f)) != EOF && c != '\n') {
                if (n == CONF_LINE_MAX)
                        return -E2BIG;
                ctx->buf[n++] = (char)c;
        }
        if (c == EOF && n == 0)
                return -1;
        ctx->buf[n] = '\0';
        return (ssize_t)n;
}

/*
 * inih's line source: whole lines, counted, without indentation. A line
 * longer than inih's buffer is refused here rather than cut; so is one that
 * is not text (a NUL would cut a value short, silently).
 */
static char *ini_reader_cb(char *str, int num, void *stream)
{
        struct parse_ctx *ctx = stream;
        ssize_t n;
        char *p;

        n = read_line(ctx);
        if (n == -1)
                return NULL;
        ctx->line++;
        if (n == -ENOMEM) {
                fail(ctx, ctx->line, ENOMEM, "out of memory");
                return NULL;
        }
        if (n == -E2BIG) {
                fail(ctx, ctx->line, E2BIG, "the line is longer than %d characters", num - 2);
                return NULL; /* read no further */
        }
        if (memchr(ctx->buf, '\0', (size_t)n) || !utf8_valid(ctx->buf, (size_t)n)) {
                fail(ctx, ctx->line, EILSEQ, "the line %s; the configuration is UTF-8 text",
                     memchr(ctx->buf, '\0', (size_t)n) ? "holds a NUL byte" : "is not UTF-8");
                str[0] = '\0';
                return str;
        }
        while (n > 0 && ctx->buf[n - 1] == '\r')
                ctx->buf[--n] = '\0';
        p = ctx->buf;
        while (*p == ' ' || *p == '\t')
                p++;
        if (strlen(p) + 2 > (size_t)num) {
                fail(ctx, ctx->line, E2BIG, "the line is longer than %d characters", num - 2);
                str[0] = '\0';
                return str;
        }
        if (*p == '[' && !ctx->failed)
                if (section_header(ctx, p) == -ENOMEM)
                        fail(ctx, ctx->line, ENOMEM, "out of memory");
        snprintf(str, (size_t)num, "%s\n", p);
        return str;
}

/* --- the whole file --- */

static int combine_sim_cpus(struct parse_ctx *ctx)
{
        struct migrate_conf *conf = ctx->conf;
        unsigned n = ctx->sim_cpus;
        vqset_t *maps;

        if (!ctx->sim_cpus_line && !ctx->have_vq_map && ctx->n_cpu_keys == 0)
                return 0; /* keep the default host */

        if (!ctx->sim_cpus_line) {
                /* No cpus =: as many CPUs as the highest cpuN names, or one. */
                n = 1;
                for (size_t i = 0; i < ctx->n_cpu_keys; i++)
                        n = MAX(n, ctx->cpu_keys[i].index + 1);
        }
        for (size_t i = 0; i < ctx->n_cpu_keys; i++)
                if (ctx->cpu_keys[i].index >= n)
                        return fail(ctx, ctx->cpu_keys[i].line, EINVAL,
                                    "cpu%u: beyond cpus = %u (line %u); CPUs are numbered from 0",
                                    ctx->cpu_keys[i].index, n, ctx->sim_cpus_line);

        maps = calloc(n, sizeof(*maps));
        if (!maps)
                return -ENOMEM;
        for (unsigned c = 0; c < n; c++) {
                bool found = ctx->have_vq_map;

                maps[c] = ctx->vq_map;
                for (size_t i = 0; i < ctx->n_cpu_keys; i++)
                        if (ctx->cpu_keys[i].index == c) {
                                maps[c] = ctx->cpu_keys[i].map;
                                found = true;
                        }
                if (!found) {
                        unsigned line = ctx->sim_cpus_line;

                        for (size_t i = 0; i < ctx->n_cpu_keys; i++)
                                line = MAX(line, ctx->cpu_keys[i].line);
                        free(maps);
                        return fail(ctx, line, EINVAL,
                                    "[sim] has no VQ map for cpu%u; add cpu%u = ... or a vq-map = ... for "
                                    "every CPU not listed",
                                    c, c);
                }
        }
        free(conf->sim_cpus);
        conf->sim_cpus = maps;
        conf->n_sim_cpus = n;
        return 0;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(FILE *, fclose);

/* The first line of the password file, without its newline. */
static int read_password(struct parse_ctx *ctx)
{
        struct migrate_conf *conf = ctx->conf;
        _cleanup_(fclosep) FILE *f = fopen(conf->etcd_password_file, "re");
        char line[1024];

        if (!f)
                return fail(ctx, 0, errno, "etcd-password-file %s: %s", conf->etcd_password_file,
                            strerror(errno));
        if (!fgets(line, sizeof(line), f))
                line[0] = '\0';
        line[strcspn(line, "\r\n")] = '\0';
        return set_string(&conf->etcd_password, line);
}

/* What store = etcd needs, and what only it takes. */
static int check_store(struct parse_ctx *ctx)
{
        struct migrate_conf *conf = ctx->conf;

        if (conf->store != MEMBERSHIP_ETCD) {
                if (conf->cluster_set)
                        return fail(
                                ctx, 0, EINVAL,
                                "cluster-set = %s: a cluster set lives in etcd; set store = etcd, or remove "
                                "cluster-set",
                                conf->cluster_set);
                if (conf->n_etcd_endpoints)
                        return fail(
                                ctx, 0, EINVAL,
                                "etcd-endpoints is set but [cluster] store is static: set store = etcd to "
                                "use etcd, or remove etcd-endpoints");
                return 0;
        }
        if (conf->n_etcd_endpoints == 0)
                return fail(
                        ctx, 0, EINVAL,
                        "[cluster] store = etcd needs etcd-endpoints = http(s)://HOST:PORT,... (the etcd "
                        "members' client URLs)");
        if (conf->n_peers)
                return fail(ctx, conf->peers[0].line, EINVAL,
                            "[peer %s]: with store = etcd the hosts come from etcd; remove the [peer NAME] "
                            "sections, or set store = static",
                            conf->peers[0].name);
        if (!conf->listen_address)
                return fail(
                        ctx, 0, EINVAL,
                        "store = etcd registers where this host takes migrations: set [cluster] listen = "
                        "HOST:PORT");
        if (!conf->advertise && strcmp(conf->listen_host, "*") == 0)
                return fail(
                        ctx, 0, EINVAL,
                        "listen = %s says no address peers can dial: set [cluster] advertise = HOST:PORT "
                        "for store = etcd to register",
                        conf->listen_address);
        if (!conf->etcd_cert != !conf->etcd_key)
                return fail(ctx, 0, EINVAL, "etcd-cert and etcd-key go together: give both, or neither");
        if (conf->etcd_password_file && !conf->etcd_user)
                return fail(ctx, 0, EINVAL, "etcd-password-file needs etcd-user");
        if (conf->etcd_password_file)
                return read_password(ctx);
        return 0;
}

/* A host that talks to peers needs the three files while peer TLS is on (the default). */
static bool has_peers(const struct migrate_conf *conf)
{
        return conf->listen_address || conf->n_peers || conf->store == MEMBERSHIP_ETCD;
}

static int check_tls(struct parse_ctx *ctx)
{
        const struct migrate_conf *conf = ctx->conf;
        const char *missing[3];
        char list[48];
        size_t n = 0;

        if (!conf->peer_tls || !has_peers(conf))
                return 0;
        if (!conf->tls_ca)
                missing[n++] = "tls-ca";
        if (!conf->tls_cert)
                missing[n++] = "tls-cert";
        if (!conf->tls_key)
                missing[n++] = "tls-key";
        if (n == 0)
                return 0;
        if (n == 1)
                snprintf(list, sizeof(list), "%s is", missing[0]);
        else if (n == 2)
                snprintf(list, sizeof(list), "%s and %s are", missing[0], missing[1]);
        else
                snprintf(list, sizeof(list), "%s, %s and %s are", missing[0], missing[1], missing[2]);
        return fail(ctx, 0, EINVAL,
                    "peer TLS is on (the default) and this host has peers, but [cluster] %s not set: give "
                    "tls-ca (the cluster's CA), tls-cert (this host's certificate, naming %s) and tls-key "
                    "(its key) as x509 PEM files, or set peer-tls = no for a lab",
                    list, conf->host_name);
}

static int check_whole(struct parse_ctx *ctx)
{
        struct migrate_conf *conf = ctx->conf;
        int r;

        r = combine_sim_cpus(ctx);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ctx->n_peer_sections; i++) {
                bool has_address = false;

                for (size_t j = 0; j < conf->n_peers; j++)
                        if (strcmp(conf->peers[j].name, ctx->peer_sections[i].name) == 0)
                                has_address = conf->peers[j].address != NULL;
                if (!has_address)
                        return fail(ctx, ctx->peer_sections[i].line, EINVAL,
                                    "[peer %s] has no address; add address = HOST:PORT",
                                    ctx->peer_sections[i].name);
                if (strcmp(ctx->peer_sections[i].name, conf->host_name) == 0)
                        return fail(ctx, ctx->peer_sections[i].line, EINVAL,
                                    "[peer %s] is this host (host-name = %s); list only the other hosts",
                                    ctx->peer_sections[i].name, conf->host_name);
        }
        /*
         * A peer asks again every refresh interval: one silent for a peer timeout past that is let go
         * (sooner would make every peer flap).
         */
        if (!conf->peer_idle_ms)
                conf->peer_idle_ms = conf->peer_refresh_ms + conf->peer_timeout_ms;
        if (conf->peer_idle_ms <= conf->peer_refresh_ms)
                return fail(ctx, 0, EINVAL,
                            "[cluster] idle-timeout (%ums) must be longer than refresh-interval (%ums), or "
                            "every peer's connection is closed between its refreshes",
                            conf->peer_idle_ms, conf->peer_refresh_ms);
        if (conf->max_conns_per_peer > conf->max_peer_conns)
                conf->max_conns_per_peer = conf->max_peer_conns;
        if (conf->max_clients_per_user > conf->max_clients)
                conf->max_clients_per_user = conf->max_clients;
        r = check_store(ctx);
        if (r == 0)
                r = check_tls(ctx);
        if (r < 0)
                return r;
        if (!conf->snapshot_dir && asprintf(&conf->snapshot_dir, "%s/snapshots", conf->state_dir) < 0) {
                conf->snapshot_dir = NULL;
                return -ENOMEM;
        }
        return 0;
}

static void parse_ctx_done(struct parse_ctx *ctx)
{
        for (size_t i = 0; i < ctx->n_seen; i++) {
                free(ctx->seen[i].section);
                free(ctx->seen[i].key);
        }
        free(ctx->seen);
        for (size_t i = 0; i < ctx->n_peer_sections; i++)
                free(ctx->peer_sections[i].name);
        free(ctx->peer_sections);
        free(ctx->cpu_keys);
        free(ctx->buf);
}

static int set_defaults(struct migrate_conf *conf)
{
        char host[HOST_NAME_MAX + 1] = "";
        size_t n;

        *conf = (struct migrate_conf){
                .socket_gid = getegid(),
                .log_level = LOG_INFO,
                .backend = HV_BACKEND_AUTO,
                .snapshot_keep = 3,
                .guest_overcommit_pct = 100,
                .peer_refresh_ms = MIGRATE_CONF_PEER_REFRESH_MS,
                .peer_timeout_ms = MIGRATE_CONF_PEER_TIMEOUT_MS,
                .migration_channels = MIGRATE_CONF_CHANNELS,
                .client_timeout_ms = MIGRATE_CONF_CLIENT_TIMEOUT_MS,
                .max_clients = MIGRATE_CONF_MAX_CLIENTS,
                .max_clients_per_user = MIGRATE_CONF_MAX_CLIENTS_PER_UID,
                .max_peer_conns = MIGRATE_CONF_MAX_PEER_CONNS,
                .max_conns_per_peer = MIGRATE_CONF_MAX_CONNS_PER_PEER,
                .libvirt_hook_timeout_ms = MIGRATE_CONF_HOOK_TIMEOUT_MS,
                .etcd_lease_ttl_s = MIGRATE_CONF_ETCD_LEASE_S,
                .peer_tls = true,
        };
        /* The short host name: peers call each other by it. */
        if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
                snprintf(host, sizeof(host), "localhost");
        n = strcspn(host, ".");
        host[MIN(n, (size_t)MIGRATE_CONF_HOST_NAME_MAX)] = '\0';

        conf->host_name = strdup(host);
        conf->state_dir = strdup(SVEMIG_DEFAULT_STATE_DIR);
        conf->socket_path = strdup(SVEMIG_DEFAULT_SOCKET);
        conf->kvm_device = strdup("/dev/kvm");
        conf->sim_kernel = strdup("6.12");
        conf->snapshot_compression = strdup("lz4");
        conf->etcd_prefix = strdup(MIGRATE_CONF_ETCD_PREFIX);
        /* The sim's default host, spelled out so --check-config shows it. */
        conf->sim_cpus = calloc(1, sizeof(vqset_t));
        if (!conf->host_name || !conf->state_dir || !conf->socket_path || !conf->kvm_device ||
            !conf->sim_kernel || !conf->snapshot_compression || !conf->sim_cpus || !conf->etcd_prefix)
                return -ENOMEM;
        vqset_add(&conf->sim_cpus[0], 1);
        vqset_add(&conf->sim_cpus[0], 2);
        vqset_add(&conf->sim_cpus[0], 4);
        conf->n_sim_cpus = 1;
        return 0;
}

int migrate_conf_load(struct migrate_conf *conf, const char *path, struct svemig_error *err)
{
        struct parse_ctx ctx = {.conf = conf};
        bool explicit = path != NULL;
        int r;

        r = set_defaults(conf);
        if (r < 0)
                goto fail_nomem;
        if (!path)
                path = SVEMIG_DEFAULT_CONFIG;

        ctx.path = path;
        ctx.f = fopen(path, "re");
        if (!ctx.f) {
                r = -errno;
                if (r == -ENOENT && !explicit) {
                        /* No file: the built-in defaults, all of them valid. */
                        r = check_whole(&ctx);
                        if (r < 0)
                                goto fail_nomem;
                        parse_ctx_done(&ctx);
                        return 0;
                }
                migrate_conf_done(conf);
                return svemig_error_set(err, r, "%s: cannot open the configuration: %s", path, strerror(-r));
        }
        conf->path = strdup(path);
        if (!conf->path) {
                r = -ENOMEM;
                goto finish;
        }

        r = ini_parse_stream(ini_reader_cb, &ctx, ini_handler_cb, &ctx);
        if (ferror(ctx.f) && !ctx.failed)
                fail(&ctx, 0, EIO, "cannot read the file: %s", strerror(errno));
        if (r > 0 && (!ctx.failed || ctx.err_line > (unsigned)r)) {
                /* inih refused a line we never saw as a key: its syntax. */
                ctx.failed = false;
                fail(&ctx, (unsigned)r, EINVAL,
                     "cannot parse the line; expected [section], key = value, or a comment (# or ;)");
        } else if (r == -2) {
                fail(&ctx, 0, ENOMEM, "out of memory");
        }
        if (!ctx.failed)
                check_whole(&ctx);
        r = 0;
finish:
        fclose(ctx.f);
        parse_ctx_done(&ctx);
        if (r == -ENOMEM || (ctx.failed && ctx.err.code == ENOMEM))
                goto fail_nomem;
        if (ctx.failed) {
                int code = ctx.err.code;

                migrate_conf_done(conf);
                if (ctx.err_line)
                        return svemig_error_set(err, code, "%s:%u: %s", path, ctx.err_line, ctx.err.msg);
                return svemig_error_set(err, code, "%s: %s", path, ctx.err.msg);
        }
        return 0;

fail_nomem:
        migrate_conf_done(conf);
        return svemig_error_set(err, ENOMEM, "%s: out of memory reading the configuration",
                                path ? path : SVEMIG_DEFAULT_CONFIG);
}

void migrate_conf_done(struct migrate_conf *conf)
{
        free(conf->path);
        free(conf->host_name);
        free(conf->state_dir);
        free(conf->socket_path);
        free(conf->socket_group);
        free(conf->kvm_device);
        free(conf->sim_kernel);
        free(conf->sim_cpus);
        free(conf->snapshot_dir);
        free(conf->snapshot_compression);
        free(conf->s3_endpoint);
        free(conf->s3_region);
        free(conf->credentials_file);
        free(conf->s3_profile);
        free(conf->ca_file);
        free(conf->listen_address);
        free(conf->listen_host);
        free(conf->libvirt_uri);
        free(conf->advertise);
        free_endpoints(conf);
        free(conf->etcd_prefix);
        free(conf->etcd_cacert);
        free(conf->etcd_cert);
        free(conf->etcd_key);
        free(conf->etcd_user);
        free(conf->etcd_password);
        free(conf->etcd_password_file);
        free(conf->cluster_set);
        free(conf->tls_ca);
        free(conf->tls_cert);
        free(conf->tls_key);
        for (size_t i = 0; i < conf->n_peers; i++) {
                free(conf->peers[i].name);
                free(conf->peers[i].address);
                free(conf->peers[i].host);
        }
        free(conf->peers);
        *conf = (struct migrate_conf){0};
}

const char *migrate_conf_backend_name(enum hv_backend backend)
{
        switch (backend) {
        case HV_BACKEND_AUTO:
                return "auto";
        case HV_BACKEND_SIM:
                return "sim";
        case HV_BACKEND_KVM:
                return "kvm";
        }
        return "?";
}

static void print_vqset(FILE *f, const char *key, const vqset_t *s)
{
        char buf[4096];

        vqset_format(s, VQSET_FORMAT_BITS, buf, sizeof(buf));
        fprintf(f, "%s = %s\n", key, buf);
}

static void print_duration(FILE *f, const char *key, unsigned ms)
{
        if (ms % 1000 == 0)
                fprintf(f, "%s = %us\n", key, ms / 1000);
        else
                fprintf(f, "%s = %ums\n", key, ms);
}

void migrate_conf_print(const struct migrate_conf *conf, FILE *f)
{
        unsigned max_vq = 0;
        vqset_t virt;
        char buf[4096];

        fprintf(f, "# svemigd's effective configuration, from %s\n",
                conf->path ? conf->path : "the built-in defaults");
        fprintf(f, "\n[daemon]\nhost-name = %s\nstate-directory = %s\nsocket = %s\n", conf->host_name,
                conf->state_dir, conf->socket_path);
        if (conf->socket_group)
                fprintf(f, "socket-group = %s\n# (gid %u)\n", conf->socket_group,
                        (unsigned)conf->socket_gid);
        else
                fprintf(f, "socket-group =\n# (the daemon's own group, gid %u)\n",
                        (unsigned)conf->socket_gid);
        fprintf(f, "log-level = %s\n", log_levels[conf->log_level]);
        print_duration(f, "client-timeout", conf->client_timeout_ms);
        fprintf(f, "max-clients = %u\nmax-clients-per-user = %u\n", conf->max_clients,
                conf->max_clients_per_user);

        fprintf(f, "\n[hypervisor]\nbackend = %s\nkvm-device = %s\n",
                migrate_conf_backend_name(conf->backend), conf->kvm_device);

        fprintf(f, "\n[sim]\nkernel = %s\nkvm-mode = %s\ncpus = %zu\n", conf->sim_kernel,
                conf->sim_nvhe ? "nvhe" : "vhe", conf->n_sim_cpus);
        for (size_t i = 0; i < conf->n_sim_cpus; i++) {
                char key[32];

                snprintf(key, sizeof(key), "cpu%zu", i);
                print_vqset(f, key, &conf->sim_cpus[i]);
        }
        virt = vqset_virtualisable(conf->sim_cpus, conf->n_sim_cpus, &max_vq);
        vqset_format(&virt, VQSET_FORMAT_BITS, buf, sizeof(buf));
        fprintf(f, "# a new vcpu gets the VLS %s (max %u bits)\n", buf, vq_to_bits(max_vq));

        fprintf(f, "\n[guests]\n");
        if (conf->guest_host_memory)
                fprintf(f, "host-memory = %llu\n", (unsigned long long)conf->guest_host_memory);
        else
                fprintf(f, "# host-memory: the host's MemTotal\n");
        fprintf(f, "memory-overcommit = %u.%02u\n", conf->guest_overcommit_pct / 100,
                conf->guest_overcommit_pct % 100);

        fprintf(f, "\n[snapshot]\ndirectory = %s\nkeep = %u\ncompression = %s\n", conf->snapshot_dir,
                conf->snapshot_keep, conf->snapshot_compression);

        fprintf(f, "\n[cluster]\nlisten = %s\n", conf->listen_address ? conf->listen_address : "");
        if (!conf->listen_address)
                fprintf(f, "# (no listener: peers cannot reach this host)\n");
        print_duration(f, "refresh-interval", conf->peer_refresh_ms);
        print_duration(f, "peer-timeout", conf->peer_timeout_ms);
        if (conf->incoming_mem_limit)
                fprintf(f, "incoming-memory-limit = %llu\n", (unsigned long long)conf->incoming_mem_limit);
        else
                fprintf(f, "# incoming-memory-limit: 3/4 of [guests] host-memory\n");
        fprintf(f, "incoming-reserve = %llu\n", (unsigned long long)conf->incoming_reserve);
        if (!conf->incoming_reserve)
                fprintf(f, "# (no reserve: an incoming guest's RAM is faulted in during its migration)\n");
        fprintf(f, "migration-channels = %u\n", conf->migration_channels);
        if (!conf->migration_channels)
                fprintf(f, "# (no memory channels: a migration from here moves memory on one connection)\n");
        print_duration(f, "idle-timeout", conf->peer_idle_ms);
        fprintf(f, "max-connections = %u\nmax-connections-per-peer = %u\n", conf->max_peer_conns,
                conf->max_conns_per_peer);

        fprintf(f, "peer-tls = %s\n", conf->peer_tls ? "yes" : "no");
        if (!conf->peer_tls)
                fprintf(f, "# (peer TLS is off: peers are neither authenticated nor encrypted)\n");
        if (conf->tls_ca)
                fprintf(f, "tls-ca = %s\n", conf->tls_ca);
        if (conf->tls_cert)
                fprintf(f, "tls-cert = %s\n", conf->tls_cert);
        if (conf->tls_key)
                fprintf(f, "tls-key = %s\n", conf->tls_key);
        if (conf->advertise)
                fprintf(f, "advertise = %s\n", conf->advertise);
        fprintf(f, "store = %s\n", membership_backend_name(conf->store));
        if (conf->store == MEMBERSHIP_ETCD) {
                fprintf(f, "etcd-endpoints = ");
                for (size_t i = 0; i < conf->n_etcd_endpoints; i++)
                        fprintf(f, "%s%s", i ? "," : "", conf->etcd_endpoints[i]);
                fprintf(f, "\netcd-prefix = %s\n", conf->etcd_prefix);
                if (conf->etcd_cacert)
                        fprintf(f, "etcd-cacert = %s\n", conf->etcd_cacert);
                if (conf->etcd_cert)
                        fprintf(f, "etcd-cert = %s\netcd-key = %s\n", conf->etcd_cert, conf->etcd_key);
                if (conf->etcd_user)
                        fprintf(f, "etcd-user = %s\n", conf->etcd_user);
                if (conf->etcd_password_file)
                        fprintf(f, "etcd-password-file = %s\n", conf->etcd_password_file);
                fprintf(f, "etcd-lease = %us\n", conf->etcd_lease_ttl_s);
                if (conf->cluster_set)
                        fprintf(f, "cluster-set = %s\n", conf->cluster_set);
        }

        fprintf(f, "\n[libvirt]\nuri = %s\n", conf->libvirt_uri ? conf->libvirt_uri : "");
        if (!conf->libvirt_uri)
                fprintf(f, "# (svemigd does not follow libvirt's domains)\n");
        fprintf(f, "require-cluster-set = %s\ndaemon-down = %s\n",
                conf->libvirt_require_cluster_set ? "yes" : "no",
                conf->libvirt_daemon_down_allow ? "allow" : "refuse");
        print_duration(f, "hook-timeout", conf->libvirt_hook_timeout_ms);

        fprintf(f, "\n[store]\n");
        if (conf->s3_endpoint)
                fprintf(f, "s3-endpoint = %s\n", conf->s3_endpoint);
        else
                fprintf(f, "# (no s3-endpoint: s3:// locations cannot be used)\n");
        fprintf(f, "s3-region = %s\n", conf->s3_region ? conf->s3_region : "us-east-1");
        if (conf->credentials_file)
                fprintf(f, "credentials-file = %s\n", conf->credentials_file);
        if (conf->s3_profile)
                fprintf(f, "profile = %s\n", conf->s3_profile);
        if (conf->ca_file)
                fprintf(f, "ca-file = %s\n", conf->ca_file);
        fprintf(f, "part-size = %llu\nparallel-uploads = %u\nretries = %u\n",
                (unsigned long long)(conf->part_size ? conf->part_size : STORE_PART_SIZE_DEFAULT),
                conf->parallel_uploads ? conf->parallel_uploads : 4,
                conf->store_retries ? conf->store_retries : 5);
        print_duration(f, "stall-timeout", conf->stall_timeout_ms ? conf->stall_timeout_ms : 30000);

        for (size_t i = 0; i < conf->n_peers; i++)
                fprintf(f, "\n[peer %s]\naddress = %s\n", conf->peers[i].name, conf->peers[i].address);
}

void migrate_conf_store_conf(const struct migrate_conf *conf, struct store_conf *out)
{
        *out = (struct store_conf){
                .s3_endpoint = conf->s3_endpoint,
                .s3_region = conf->s3_region,
                .credentials_file = conf->credentials_file,
                .profile = conf->s3_profile,
                .ca_file = conf->ca_file,
                .part_size = (size_t)conf->part_size,
                .parallel = conf->parallel_uploads,
                .retries = conf->store_retries,
                .stall_s = (conf->stall_timeout_ms + 999) / 1000,
        };
}

void migrate_conf_hv_config(const struct migrate_conf *conf, struct hv_config *out)
{
        *out = (struct hv_config){
                .backend = conf->backend,
                .kvm_path = conf->kvm_device,
                .sim =
                        {
                                .cpu_maps = conf->sim_cpus,
                                .n_cpus = conf->n_sim_cpus,
                                .kernel = conf->sim_kernel,
                                .nvhe = conf->sim_nvhe,
                                .host_name = conf->host_name,
                        },
        };
}

/* Each file readable by this process, named with the key and line that gave it. */
static int tls_file_readable(const struct migrate_conf *conf, const char *key, const char *file,
                             unsigned line, struct svemig_error *err)
{
        FILE *f = fopen(file, "re");

        if (f) {
                fclose(f);
                return 0;
        }
        return svemig_error_set(err, errno, "%s:%u: %s = %s: cannot read it: %s", conf->path, line, key,
                                file, strerror(errno));
}

int migrate_conf_tls_load(const struct migrate_conf *conf, struct peer_tls_creds **out,
                          struct svemig_error *err)
{
        int r;

        *out = NULL;
        if (!conf->peer_tls || !has_peers(conf))
                return 0;
        r = tls_file_readable(conf, "tls-ca", conf->tls_ca, conf->tls_ca_line, err);
        if (r == 0)
                r = tls_file_readable(conf, "tls-cert", conf->tls_cert, conf->tls_cert_line, err);
        if (r == 0)
                r = tls_file_readable(conf, "tls-key", conf->tls_key, conf->tls_key_line, err);
        if (r < 0)
                return r;
        r = peer_tls_creds_load(conf->tls_ca, conf->tls_cert, conf->tls_key, out, err);
        if (r < 0)
                return svemig_error_prefix(err, "%s:%u: tls-cert", conf->path, conf->tls_cert_line);
        return 0;
}
