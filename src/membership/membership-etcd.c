/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The etcd membership. Two threads, each with a connection of its own:
 *
 * - the lease thread registers this host: it grants a lease of the
 *   configured TTL, puts PREFIX "hosts/" NAME (this host's record: its
 *   migration address and its facts) under it, and keeps it alive every
 *   third of the TTL. A lease found expired is granted again and the record
 *   put again; on stop the lease is revoked, so this host leaves at once.
 * - the watch thread reads every record under PREFIX "hosts/" (a range),
 *   then watches the prefix from the revision after it. A record put is a
 *   host up (or changed); a record deleted (its lease expired or was
 *   revoked) is a host down. A broken watch is read again from scratch.
 *
 * Either thread failing to hear from etcd (unreachable, no leader, no
 * quorum, slower than the timeout) marks the view stale with the reason:
 * the hosts shown are then the last ones known, and nobody can say whether
 * they are still there.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "macro.h"
#include "utf8.h"
#include "membership/etcd-gateway.h"
#include "membership/host.h"
#include "membership/membership-backend.h"
#include "svemig/kvmreg.h"
#include "svemig/vcpu.h"

#define BACKOFF_MIN_MS    100u
#define BACKOFF_MAX_MS    2000u
#define REVOKE_TIMEOUT_MS 1000u
#define KEY_MAX           512

struct etcd_members {
        void (*changed)(void *userdata); /* membership_params.changed */
        void *userdata;
        struct etcd_gateway *g;
        struct etcd_conn *lease_conn, *watch_conn;
        pthread_t lease_thread, watch_thread;
        bool lease_started, watch_started;
        atomic_bool stopping;
        atomic_bool reput; /* this host's record left etcd while its lease lives: put it again */

        char prefix[KEY_MAX];       /* everything svemig keeps: watched */
        char prefix_end[KEY_MAX];   /* the range's end */
        char hosts_prefix[KEY_MAX]; /* PREFIX "hosts/" */
        char set_key[KEY_MAX];      /* PREFIX "sets/" NAME, or empty */
        char set_name[MEMBERSHIP_NAME_MAX];
        char self_key[KEY_MAX];
        char self_name[MEMBERSHIP_NAME_MAX];
        char instance[40]; /* this daemon's run, to tell a namesake from itself */
        char *address;     /* where this host takes migrations, for its record */
        char *record;      /* this host's record, JSON; under the lock (its stuck guests change) */
        const struct peer_info *self;
        unsigned ttl_s;

        pthread_mutex_t lock;          /* guards what follows */
        struct membership_host *hosts; /* by name */
        size_t n_hosts, cap_hosts;
        char lease_reason[SVEMIG_ERROR_MSG_MAX]; /* non-empty: the lease is in doubt */
        char watch_reason[SVEMIG_ERROR_MSG_MAX]; /* non-empty: the watch is broken */
        char conflict[SVEMIG_ERROR_MSG_MAX];     /* non-empty: another daemon uses this name */
        uint64_t lease_since_ns, watch_since_ns;
        bool loaded; /* the watch has read etcd's records once */
        bool pinned; /* the cluster set's record, as last read */
        vqset_t pinned_set;
        char refused[SVEMIG_ERROR_MSG_MAX]; /* non-empty: this host stays out of etcd, why */
};

/* ---- This host's record ---- */

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
        char buf[24];

        snprintf(buf, sizeof(buf), "%" PRIu64, v);
        json_object_object_add(o, key, json_object_new_string(buf));
}

static struct json_object *id_regs_json(const struct vcpu_state *st)
{
        struct json_object *a = json_object_new_array();

        for (size_t i = 0; a && i < st->n_regs; i++) {
                const struct vcpu_reg *r = &st->regs[i];
                struct json_object *pair = json_object_new_array();
                char id[24], hex[2 * 256 + 1];

                snprintf(id, sizeof(id), "0x%016" PRIx64, r->id);
                for (uint32_t k = 0; k < r->size && k < 256; k++)
                        snprintf(hex + 2 * k, 3, "%02x", r->value[k]);
                hex[2 * MIN(r->size, 256u)] = '\0';
                json_object_array_add(pair, json_object_new_string(id));
                json_object_array_add(pair, json_object_new_string(hex));
                json_object_array_add(a, pair);
        }
        return a;
}

static struct json_object *stuck_json(const struct peer_stuck *st)
{
        struct json_object *a = json_object_new_array();

        for (unsigned i = 0; a && i < st->n; i++) {
                const struct peer_stuck_guest *g = &st->g[i];
                struct json_object *o = json_object_new_object(), *bits = json_object_new_array();

                VQSET_FOREACH (vq, &g->vls)
                        json_object_array_add(bits, json_object_new_int((int)vq_to_bits(vq)));
                json_object_object_add(o, "guest", json_object_new_string(g->guest));
                json_object_object_add(o, "state", json_object_new_string(g->state));
                json_object_object_add(o, "vl_bits", bits);
                json_object_object_add(o, "host", json_object_new_string(g->host));
                json_object_object_add(o, "why", json_object_new_string(g->why));
                json_object_array_add(a, o);
        }
        return a;
}

/* The writable masks (HV_ID_MASKS_N, idreg_mask_index() order) as hex, for the CPU baseline. */
static struct json_object *id_writable_json(const struct peer_info *self)
{
        struct json_object *a = json_object_new_array();

        for (size_t i = 0; a && i < HV_ID_MASKS_N; i++) {
                char hex[24];

                snprintf(hex, sizeof(hex), "0x%016" PRIx64, self->id_writable[i]);
                json_object_array_add(a, json_object_new_string(hex));
        }
        return a;
}

static int id_writable_parse(struct json_object *a, struct peer_info *info)
{
        if (!json_object_is_type(a, json_type_array) || json_object_array_length(a) != HV_ID_MASKS_N)
                return -EINVAL;
        for (size_t i = 0; i < HV_ID_MASKS_N; i++) {
                const char *hex = json_object_get_string(json_object_array_get_idx(a, i));
                char *end;

                if (!hex)
                        return -EINVAL;
                errno = 0;
                info->id_writable[i] = strtoull(hex, &end, 16);
                if (errno || *end || end == hex)
                        return -EINVAL;
        }
        info->id_writable_known = true;
        return 0;
}

static char *record_new(const struct peer_info *self, const char *name, const char *address,
                        const char *instance, const char *set)
{
        struct peer_stuck stuck;
        _cleanup_(json_object_putp) struct json_object *o = json_object_new_object();
        struct json_object *vls = json_object_new_array();
        const char *text;

        if (!o || !vls) {
                json_object_put(vls);
                return NULL;
        }
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "address", json_object_new_string(address));
        json_object_object_add(o, "instance", json_object_new_string(instance));
        if (set[0])
                json_object_object_add(o, "cluster_set", json_object_new_string(set));
        json_object_object_add(o, "svemig_version", json_object_new_string(self->svemig_version));
        json_object_object_add(o, "protocol_version", json_object_new_int((int)self->protocol_version));
        json_object_object_add(o, "backend", json_object_new_string(self->backend));
        json_object_object_add(o, "kernel", json_object_new_string(self->kernel));
        json_object_object_add(o, "sve", json_object_new_boolean(self->sve));
        VQSET_FOREACH (vq, &self->vls)
                json_object_array_add(vls, json_object_new_int((int)vq_to_bits(vq)));
        json_object_object_add(o, "vl_bits", vls);
        json_object_object_add(o, "max_vq", json_object_new_int((int)self->max_vq));
        json_object_object_add(o, "max_vcpus", json_object_new_int((int)self->max_vcpus));
        json_object_object_add(o, "n_cpus", json_object_new_int((int)self->n_cpus));
        json_object_object_add(o, "ipa_bits", json_object_new_int((int)self->ipa_bits));
        add_u64(o, "vcpu_features", self->vcpu_features);
        add_u64(o, "mem_available", self->mem_available);
        json_object_object_add(o, "id_regs", id_regs_json(&self->id_regs));
        peer_info_get_stuck(self, &stuck);
        if (stuck.total) {
                json_object_object_add(o, "stuck", stuck_json(&stuck));
                json_object_object_add(o, "stuck_total", json_object_new_int((int)stuck.total));
        }
        if (self->id_writable_known)
                json_object_object_add(o, "id_writable", id_writable_json(self));
        text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        return text ? strdup(text) : NULL;
}

static const char *get_str(struct json_object *o, const char *key)
{
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static unsigned get_uint(struct json_object *o, const char *key)
{
        struct json_object *v;

        return json_object_object_get_ex(o, key, &v) ? (unsigned)json_object_get_int64(v) : 0;
}

static int hex_bytes(const char *hex, uint8_t *out, size_t n)
{
        if (strlen(hex) != 2 * n)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                unsigned v;

                if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                        return -EINVAL;
                out[i] = (uint8_t)v;
        }
        return 0;
}

static int id_regs_parse(struct json_object *a, struct vcpu_state *st)
{
        size_t n = json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
        _cleanup_free_ uint64_t *ids = calloc(n ? n : 1, sizeof(*ids));
        int r;

        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct json_object *pair = json_object_array_get_idx(a, i);
                const char *id = json_object_get_string(json_object_array_get_idx(pair, 0));

                if (!id)
                        return -EINVAL;
                ids[i] = strtoull(id, NULL, 16);
                if (kvmreg_size(ids[i]) > 256)
                        return -EINVAL;
        }
        r = vcpu_state_alloc(st, ids, n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const char *hex = json_object_get_string(
                        json_object_array_get_idx(json_object_array_get_idx(a, i), 1));

                if (!hex || hex_bytes(hex, st->regs[i].value, st->regs[i].size) < 0) {
                        vcpu_state_done(st);
                        return -EINVAL;
                }
        }
        return 0;
}

/* A host's words go to the journal, JSON and terminals: escaped, whatever its record says. */
static void copy_escaped(char *dst, size_t len, const char *src)
{
        utf8_escape(src ? src : "", src ? strlen(src) : 0, dst, len);
}

/* The record's stuck guests, at most PEER_STUCK_MAX whatever a newer host puts. */
static int stuck_parse(struct json_object *o, struct peer_stuck *out, struct svemig_error *err)
{
        struct json_object *a;

        *out = (struct peer_stuck){0};
        if (!json_object_object_get_ex(o, "stuck", &a) || !json_object_is_type(a, json_type_array))
                return 0;
        for (size_t i = 0; i < json_object_array_length(a) && out->n < PEER_STUCK_MAX; i++) {
                struct json_object *e = json_object_array_get_idx(a, i), *bits;
                struct peer_stuck_guest *g = &out->g[out->n];

                if (!json_object_is_type(e, json_type_object))
                        return svemig_error_set(err, EINVAL,
                                                "its record in etcd has a stuck guest that is "
                                                "not a JSON object");
                if (json_object_object_get_ex(e, "vl_bits", &bits) &&
                    json_object_is_type(bits, json_type_array))
                        for (size_t k = 0; k < json_object_array_length(bits); k++) {
                                int b = json_object_get_int(json_object_array_get_idx(bits, k));

                                if (b < 128 || b % 128 || b / 128 > (int)VQSET_VQ_ARCH_MAX)
                                        return svemig_error_set(
                                                err, EINVAL,
                                                "its record in etcd has a stuck guest with a "
                                                "VL of %d bits",
                                                b);
                                vqset_add(&g->vls, (unsigned)b / 128);
                        }
                copy_escaped(g->guest, sizeof(g->guest), get_str(e, "guest"));
                copy_escaped(g->state, sizeof(g->state), get_str(e, "state"));
                copy_escaped(g->host, sizeof(g->host), get_str(e, "host"));
                copy_escaped(g->why, sizeof(g->why), get_str(e, "why"));
                out->n++;
        }
        out->total = MAX(get_uint(o, "stuck_total"), (unsigned)json_object_array_length(a));
        return 0;
}

/* A record into h (name aside); the ID registers are compared with this host's, then dropped. */
static int record_parse(struct etcd_members *s, const char *text, size_t len, struct membership_host *h,
                        char *instance, size_t instance_len, struct svemig_error *err)
{
        _cleanup_(json_object_putp) struct json_object *o = NULL;
        struct json_tokener *tok = json_tokener_new();
        struct json_object *vls = NULL, *ids = NULL;
        struct vcpu_state regs = {0};
        const char *address, *inst;
        int r;

        if (!tok)
                return svemig_error_set(err, ENOMEM, "out of memory");
        o = json_tokener_parse_ex(tok, text, (int)len);
        json_tokener_free(tok);
        if (!o || !json_object_is_type(o, json_type_object))
                return svemig_error_set(err, EINVAL, "its record in etcd is not a JSON object");
        address = get_str(o, "address");
        if (!address)
                return svemig_error_set(err, EINVAL, "its record in etcd has no address");
        r = membership_split_address(address, h->host, sizeof(h->host), &h->port, err);
        if (r < 0)
                return svemig_error_prefix(err, "its record in etcd");
        snprintf(h->address, sizeof(h->address), "%s", address);
        inst = get_str(o, "instance");
        snprintf(instance, instance_len, "%s", inst ? inst : "");
        h->info = (struct peer_info){0};
        snprintf(h->info.host_name, sizeof(h->info.host_name), "%s", h->name);
        snprintf(h->info.svemig_version, sizeof(h->info.svemig_version), "%s",
                 get_str(o, "svemig_version") ?: "");
        snprintf(h->info.backend, sizeof(h->info.backend), "%s", get_str(o, "backend") ?: "");
        snprintf(h->info.kernel, sizeof(h->info.kernel), "%s", get_str(o, "kernel") ?: "");
        h->info.protocol_version = get_uint(o, "protocol_version");
        h->info.max_vq = get_uint(o, "max_vq");
        h->info.max_vcpus = get_uint(o, "max_vcpus");
        h->info.n_cpus = get_uint(o, "n_cpus");
        h->info.ipa_bits = get_uint(o, "ipa_bits");
        h->info.vcpu_features = (uint32_t)etcd_u64(o, "vcpu_features");
        h->info.mem_available = etcd_u64(o, "mem_available");
        {
                struct json_object *b;

                h->info.sve = json_object_object_get_ex(o, "sve", &b) && json_object_get_boolean(b);
        }
        if (json_object_object_get_ex(o, "vl_bits", &vls) && json_object_is_type(vls, json_type_array)) {
                for (size_t i = 0; i < json_object_array_length(vls); i++) {
                        int bits = json_object_get_int(json_object_array_get_idx(vls, i));

                        if (bits < 128 || bits % 128 || bits / 128 > (int)VQSET_VQ_MAX)
                                return svemig_error_set(err, EINVAL,
                                                        "its record in etcd has a VL of %d bits", bits);
                        vqset_add(&h->info.vls, (unsigned)bits / 128);
                }
        }
        r = stuck_parse(o, &h->info.stuck, err);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(o, "id_regs", &ids)) {
                r = id_regs_parse(ids, &regs);
                if (r < 0)
                        return svemig_error_set(err, -r, "its record in etcd has unreadable ID registers");
        }
        if (json_object_object_get_ex(o, "id_writable", &ids) && id_writable_parse(ids, &h->info) < 0) {
                vcpu_state_done(&regs);
                return svemig_error_set(err, EINVAL,
                                        "its record in etcd has unreadable writable ID register masks");
        }
        cluster_id_compare(&s->self->id_regs, &regs, &h->id_diff);
        h->info.id_regs = regs;
        r = membership_host_set_cpu(h, &h->info);
        h->info.id_regs = (struct vcpu_state){0};
        vcpu_state_done(&regs);
        if (r < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        return 0;
}

/* ---- The hosts table, under the lock ---- */

static int host_cmp(const void *key, const void *elem)
{
        return strcmp(key, ((const struct membership_host *)elem)->name);
}

static struct membership_host *host_find(struct etcd_members *s, const char *name)
{
        /* An empty table has no array yet, and bsearch() must not be given NULL. */
        if (s->n_hosts == 0)
                return NULL;
        return bsearch(name, s->hosts, s->n_hosts, sizeof(*s->hosts), host_cmp);
}

static struct membership_host *host_insert(struct etcd_members *s, const char *name)
{
        size_t at = s->n_hosts;

        if (s->n_hosts == s->cap_hosts) {
                size_t cap = s->cap_hosts ? s->cap_hosts * 2 : 64;
                struct membership_host *h = realloc(s->hosts, cap * sizeof(*h));

                if (!h)
                        return NULL;
                s->hosts = h;
                s->cap_hosts = cap;
        }
        /* Ranges come sorted: the new host is nearly always last. */
        while (at > 0 && strcmp(s->hosts[at - 1].name, name) > 0)
                at--;
        memmove(&s->hosts[at + 1], &s->hosts[at], (s->n_hosts - at) * sizeof(*s->hosts));
        s->n_hosts++;
        memset(&s->hosts[at], 0, sizeof(s->hosts[at]));
        snprintf(s->hosts[at].name, sizeof(s->hosts[at].name), "%s", name);
        return &s->hosts[at];
}

static void mark_down(struct membership_host *h, const char *reason)
{
        if (!h->up && strcmp(h->reason, reason) == 0)
                return;
        if (h->up || h->version == 0)
                h->since_ns = now_ns(CLOCK_REALTIME);
        h->up = false;
        snprintf(h->reason, sizeof(h->reason), "%s", reason);
        h->version++;
}

/* A record put under name: the host is up with these facts. */
static int apply_put(struct etcd_members *s, const char *name, const char *value, size_t len, bool *changed)
{
        struct svemig_error err = {0};
        struct membership_host fresh = {0}, *h;
        char instance[sizeof(s->instance)];
        int r;

        if (strcmp(name, s->self_name) == 0) {
                r = record_parse(s, value, len, &fresh, instance, sizeof(instance), &err);
                if (r == 0 && strcmp(instance, s->instance) != 0 && !s->conflict[0]) {
                        snprintf(s->conflict, sizeof(s->conflict),
                                 "another svemigd registers as %s in etcd (at %s): give each host its own "
                                 "host-name in migrate.conf",
                                 name, fresh.address);
                        *changed = true;
                }
                return 0;
        }
        snprintf(fresh.name, sizeof(fresh.name), "%s", name);
        r = record_parse(s, value, len, &fresh, instance, sizeof(instance), &err);
        h = host_find(s, name);
        if (!h && !(h = host_insert(s, name)))
                return -ENOMEM;
        if (r < 0) {
                mark_down(h, svemig_error_str(&err, r));
                *changed = true;
                return 0;
        }
        if (h->up && h->known && membership_info_same(&h->info, &fresh.info) &&
            membership_id_diff_same(&h->id_diff, &fresh.id_diff) && membership_cpu_same(h, &fresh) &&
            strcmp(h->address, fresh.address) == 0) {
                h->info.mem_available = fresh.info.mem_available;
                return 0;
        }
        if (!h->up)
                h->since_ns = now_ns(CLOCK_REALTIME);
        snprintf(h->address, sizeof(h->address), "%s", fresh.address);
        snprintf(h->host, sizeof(h->host), "%s", fresh.host);
        h->port = fresh.port;
        h->info = fresh.info;
        h->id_diff = fresh.id_diff;
        h->n_cpu = fresh.n_cpu;
        memcpy(h->cpu, fresh.cpu, fresh.n_cpu * sizeof(fresh.cpu[0]));
        h->up = h->known = true;
        h->reason[0] = '\0';
        h->version++;
        *changed = true;
        return 0;
}

static void apply_delete(struct etcd_members *s, const char *name, bool *changed)
{
        struct membership_host *h = host_find(s, name);

        if (!h || !h->up)
                return;
        mark_down(h, "its record left etcd: its lease expired (svemigd stopped answering) or it stopped");
        *changed = true;
}

/* The name a key under the prefix stands for; NULL for anything else. */
static const char *key_name(struct etcd_members *s, const char *key)
{
        size_t n = strlen(s->hosts_prefix);

        if (strncmp(key, s->hosts_prefix, n) != 0 || !key[n] || strlen(key + n) >= MEMBERSHIP_NAME_MAX)
                return NULL;
        return key + n;
}

static void set_reason(struct etcd_members *s, char *reason, uint64_t *since, const char *text)
{
        bool notify;

        pthread_mutex_lock(&s->lock);
        notify = strcmp(reason, text) != 0;
        if (!reason[0] && text[0])
                *since = now_ns(CLOCK_REALTIME);
        snprintf(reason, SVEMIG_ERROR_MSG_MAX, "%s", text);
        pthread_mutex_unlock(&s->lock);
        if (notify && !atomic_load(&s->stopping))
                s->changed(s->userdata);
}

/* A cluster set's record: {"vl_bits": [128, 256]} (empty: FPSIMD only). */
static int set_parse(const char *text, size_t len, vqset_t *out)
{
        _cleanup_(json_object_putp) struct json_object *o = NULL;
        struct json_tokener *tok = json_tokener_new();
        struct json_object *bits;

        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, text, (int)len);
        json_tokener_free(tok);
        *out = (vqset_t){{0}};
        if (!o || !json_object_object_get_ex(o, "vl_bits", &bits) ||
            !json_object_is_type(bits, json_type_array))
                return -EINVAL;
        for (size_t i = 0; i < json_object_array_length(bits); i++) {
                int b = json_object_get_int(json_object_array_get_idx(bits, i));

                if (b < 128 || b % 128 || b / 128 > (int)VQSET_VQ_MAX)
                        return -EINVAL;
                vqset_add(out, (unsigned)b / 128);
        }
        return 0;
}

/* The cluster set's record put (value) or deleted (NULL), under the lock. */
static void apply_set(struct etcd_members *s, const char *value, size_t len, bool *changed)
{
        vqset_t set;
        bool pinned = value && set_parse(value, len, &set) == 0;

        if (pinned == s->pinned && (!pinned || vqset_equal(&set, &s->pinned_set)))
                return;
        s->pinned = pinned;
        s->pinned_set = pinned ? set : (vqset_t){{0}};
        *changed = true;
}

/* ---- The watch thread ---- */

/* kv {"key","value"} of a range or an event; DELETE when value is ignored. */
static int apply_kv(struct etcd_members *s, struct json_object *kv, bool del, bool *changed,
                    char (*seen)[MEMBERSHIP_NAME_MAX], size_t *n_seen, bool *seen_set)
{
        _cleanup_free_ uint8_t *key = NULL, *value = NULL;
        size_t klen, vlen = 0;
        const char *name, *b64v;
        int r = 0;

        if (etcd_unb64(get_str(kv, "key"), &key, &klen) < 0)
                return -EPROTO;
        if (s->set_key[0] && strcmp((const char *)key, s->set_key) == 0) {
                b64v = get_str(kv, "value");
                if (!del && etcd_unb64(b64v ? b64v : "", &value, &vlen) < 0)
                        return -EPROTO;
                apply_set(s, del ? NULL : (const char *)value, vlen, changed);
                if (seen_set)
                        *seen_set = true;
                return 0;
        }
        name = key_name(s, (const char *)key);
        if (!name)
                return 0;
        if (del && strcmp(name, s->self_name) == 0) {
                atomic_store(&s->reput, true);
                return 0;
        }
        if (del) {
                apply_delete(s, name, changed);
                return 0;
        }
        b64v = get_str(kv, "value");
        if (etcd_unb64(b64v ? b64v : "", &value, &vlen) < 0)
                return -EPROTO;
        r = apply_put(s, name, (const char *)value, vlen, changed);
        if (r == 0 && seen)
                snprintf(seen[(*n_seen)++], MEMBERSHIP_NAME_MAX, "%s", name);
        return r;
}

static struct json_object *range_body(struct etcd_members *s)
{
        struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "key", etcd_b64(s->prefix, strlen(s->prefix)));
        json_object_object_add(o, "range_end", etcd_b64(s->prefix_end, strlen(s->prefix_end)));
        return o;
}

static int seen_cmp(const void *a, const void *b)
{
        return strcmp(a, b);
}

/* Reads every record: the table becomes what etcd holds at *revision. */
static int load(struct etcd_members *s, uint64_t *revision, struct svemig_error *err)
{
        _cleanup_(json_object_putp) struct json_object *answer = NULL;
        _cleanup_free_ char(*seen)[MEMBERSHIP_NAME_MAX] = NULL;
        struct json_object *kvs = NULL, *header = NULL;
        size_t n, n_seen = 0;
        bool changed = false, seen_set = false;
        int r;

        r = etcd_call(s->watch_conn, "/v3/kv/range", range_body(s), &answer, err);
        if (r < 0)
                return svemig_error_prefix(err, "reading the hosts from etcd");
        json_object_object_get_ex(answer, "header", &header);
        *revision = etcd_u64(header, "revision");
        json_object_object_get_ex(answer, "kvs", &kvs);
        n = kvs && json_object_is_type(kvs, json_type_array) ? json_object_array_length(kvs) : 0;
        seen = calloc(n ? n : 1, sizeof(*seen));
        if (!seen)
                return svemig_error_set(err, ENOMEM, "out of memory");
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < n && r == 0; i++)
                r = apply_kv(s, json_object_array_get_idx(kvs, i), false, &changed, seen, &n_seen,
                             &seen_set);
        if (r == 0 && !seen_set)
                apply_set(s, NULL, 0, &changed);
        s->loaded = true;
        /* Whoever is not in etcd any more left while the watch was broken. */
        qsort(seen, n_seen, sizeof(*seen), seen_cmp);
        for (size_t i = 0; i < s->n_hosts && r == 0; i++)
                if (!bsearch(s->hosts[i].name, seen, n_seen, sizeof(*seen), seen_cmp))
                        apply_delete(s, s->hosts[i].name, &changed);
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
                return svemig_error_set(err, -r, "etcd sent a host record that cannot be read");
        if (changed)
                s->changed(s->userdata);
        return 0;
}

static int on_watch(struct json_object *msg, void *userdata, struct svemig_error *err)
{
        struct etcd_members *s = userdata;
        struct json_object *result = NULL, *events = NULL, *e;
        bool changed = false;
        int r = 0;

        if (json_object_object_get_ex(msg, "error", &e)) {
                struct json_object *m = NULL;

                if (json_object_is_type(e, json_type_object))
                        json_object_object_get_ex(e, "message", &m);
                return svemig_error_set(err, EIO, "etcd ended the watch: %s",
                                        json_object_get_string(m ? m : e));
        }
        if (!json_object_object_get_ex(msg, "result", &result))
                return 0;
        if (json_object_object_get_ex(result, "canceled", &e) && json_object_get_boolean(e))
                return svemig_error_set(err, ESTALE,
                                        "etcd cancelled the watch (compacted at revision %" PRIu64
                                        "): reading the hosts again",
                                        etcd_u64(result, "compact_revision"));
        if (json_object_object_get_ex(result, "created", &e) && json_object_get_boolean(e)) {
                /* Watching: from here on the view follows etcd. */
                set_reason(s, s->watch_reason, &s->watch_since_ns, "");
                return 0;
        }
        if (!json_object_object_get_ex(result, "events", &events))
                return 0;
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < json_object_array_length(events) && r == 0; i++) {
                struct json_object *ev = json_object_array_get_idx(events, i), *kv = NULL, *type = NULL;
                bool del = json_object_object_get_ex(ev, "type", &type) &&
                           strcmp(json_object_get_string(type), "DELETE") == 0;

                if (json_object_object_get_ex(ev, "kv", &kv))
                        r = apply_kv(s, kv, del, &changed, NULL, NULL, NULL);
        }
        pthread_mutex_unlock(&s->lock);
        if (changed)
                s->changed(s->userdata);
        return r < 0 ? svemig_error_set(err, EPROTO, "etcd sent a watch event that cannot be read") : 0;
}

static struct json_object *watch_body(struct etcd_members *s, uint64_t revision)
{
        struct json_object *o = json_object_new_object(), *create = range_body(s);
        char rev[24];

        if (!o || !create) {
                json_object_put(o);
                json_object_put(create);
                return NULL;
        }
        snprintf(rev, sizeof(rev), "%" PRIu64, revision);
        json_object_object_add(create, "start_revision", json_object_new_string(rev));
        json_object_object_add(o, "create_request", create);
        return o;
}

static unsigned next_backoff(unsigned b)
{
        return b == 0 ? BACKOFF_MIN_MS : MIN(b * 2, BACKOFF_MAX_MS);
}

static void *watch_main(void *userdata)
{
        struct etcd_members *s = userdata;
        unsigned backoff = 0;

        for (;;) {
                struct svemig_error err = {0};
                uint64_t revision = 0;
                int r;

                if (backoff && etcd_conn_wait(s->watch_conn, backoff) < 0)
                        break;
                r = load(s, &revision, &err);
                if (r == 0)
                        r = etcd_stream(s->watch_conn, "/v3/watch", watch_body(s, revision + 1), on_watch, s,
                                        &err);
                if (r == -ECANCELED || atomic_load(&s->stopping))
                        break;
                /* A watch that ran a while was good: come back quickly. */
                backoff = r == -ECONNRESET || r == -ESTALE ? 0 : next_backoff(backoff);
                set_reason(s, s->watch_reason, &s->watch_since_ns, svemig_error_str(&err, r));
                if (backoff == 0 && etcd_conn_wait(s->watch_conn, BACKOFF_MIN_MS) < 0)
                        break;
        }
        return NULL;
}

/* ---- The lease thread ---- */

static struct json_object *id_body(const char *field, uint64_t id)
{
        struct json_object *o = json_object_new_object();
        char buf[24];

        if (!o)
                return NULL;
        snprintf(buf, sizeof(buf), "%" PRIu64, id);
        json_object_object_add(o, field, json_object_new_string(buf));
        return o;
}

static int do_register(struct etcd_members *s, uint64_t *id, struct svemig_error *err)
{
        _cleanup_(json_object_putp) struct json_object *grant = NULL, *put = NULL;
        struct json_object *body;
        _cleanup_free_ char *record = NULL;
        char ttl[16];
        int r;

        if (*id == 0) {
                body = json_object_new_object();
                if (body) {
                        snprintf(ttl, sizeof(ttl), "%u", s->ttl_s);
                        json_object_object_add(body, "TTL", json_object_new_string(ttl));
                }
                r = etcd_call(s->lease_conn, "/v3/lease/grant", body, &grant, err);
                if (r < 0)
                        return svemig_error_prefix(err, "cannot register this host in etcd");
                *id = etcd_u64(grant, "ID");
                if (*id == 0)
                        return svemig_error_set(err, EPROTO, "etcd granted a lease without an ID: %s",
                                                get_str(grant, "error") ?: "no reason given");
        }
        pthread_mutex_lock(&s->lock);
        record = strdup(s->record);
        pthread_mutex_unlock(&s->lock);
        if (!record)
                return svemig_error_set(err, ENOMEM, "out of memory");
        body = json_object_new_object();
        if (body) {
                json_object_object_add(body, "key", etcd_b64(s->self_key, strlen(s->self_key)));
                json_object_object_add(body, "value", etcd_b64(record, strlen(record)));
                add_u64(body, "lease", *id);
        }
        r = etcd_call(s->lease_conn, "/v3/kv/put", body, &put, err);
        if (r < 0 && r != -ECANCELED)
                /* The lease may have run out meanwhile: the next try takes a new one (this one expires). */
                *id = 0;
        if (r < 0)
                return svemig_error_prefix(err, "cannot register this host in etcd");
        return 0;
}

/* 1: alive; 0: expired; negative errno: etcd did not say. */
static int keep_alive(struct etcd_members *s, uint64_t id, struct svemig_error *err)
{
        _cleanup_(json_object_putp) struct json_object *answer = NULL;
        struct json_object *result = NULL;
        int r;

        r = etcd_call(s->lease_conn, "/v3/lease/keepalive", id_body("ID", id), &answer, err);
        if (r < 0)
                return svemig_error_prefix(err, "cannot keep this host's lease alive in etcd");
        if (!json_object_object_get_ex(answer, "result", &result))
                result = answer;
        return etcd_u64(result, "TTL") > 0;
}

static void lease_revoke(struct etcd_members *s, uint64_t id)
{
        _cleanup_(json_object_putp) struct json_object *answer = NULL;
        struct etcd_conn *c = NULL;

        if (etcd_conn_new(s->g, &c, NULL) < 0)
                return;
        etcd_conn_set_timeout(c, REVOKE_TIMEOUT_MS);
        (void)etcd_call(c, "/v3/lease/revoke", id_body("ID", id), &answer, NULL);
        etcd_conn_free(c);
}

/*
 * Whether this host may be in the cluster: with a cluster set, only once
 * the set's record is read and this host can present its guest set.
 * 1: yes; 0: refused (why in s->refused); -EAGAIN: not known yet.
 */
static int set_allows(struct etcd_members *s)
{
        char why[SVEMIG_ERROR_MSG_MAX] = "";
        bool notify;
        int r = 1;

        if (!s->set_key[0])
                return 1;
        pthread_mutex_lock(&s->lock);
        if (!s->loaded) {
                r = -EAGAIN;
        } else if (!s->pinned) {
                snprintf(
                        why, sizeof(why),
                        "cluster set %s is not defined in etcd (or its record is not {\"vl_bits\": [...]}): "
                        "put %s with the guest set it pins",
                        s->set_name, s->set_key);
                r = 0;
        } else {
                vqset_t mine = s->self->sve ? s->self->vls : (vqset_t){{0}};
                struct vqset_reason vr;
                char set[256], reason[256];

                if (!vqset_can_present(&mine, &s->pinned_set, &vr)) {
                        vqset_format(&s->pinned_set, VQSET_FORMAT_BITS, set, sizeof(set));
                        vqset_reason_format(&vr, reason, sizeof(reason));
                        snprintf(why, sizeof(why),
                                 "this host cannot present cluster set %s's guest set (%s bits): %s; it "
                                 "stays "
                                 "out of the cluster rather than lower the set",
                                 s->set_name, vqset_empty(&s->pinned_set) ? "none" : set, reason);
                        r = 0;
                }
        }
        notify = r >= 0 && strcmp(why, s->refused) != 0;
        if (notify)
                snprintf(s->refused, sizeof(s->refused), "%s", why);
        pthread_mutex_unlock(&s->lock);
        if (notify && !atomic_load(&s->stopping))
                s->changed(s->userdata);
        return r;
}

static void *lease_main(void *userdata)
{
        struct etcd_members *s = userdata;
        unsigned interval = MAX(s->ttl_s * 1000 / 3, 500u), wait = 0, backoff = 0;
        uint64_t id = 0;
        bool registered = false;

        for (;;) {
                struct svemig_error err = {0};
                int r;

                if (wait && etcd_conn_wait(s->lease_conn, wait) < 0)
                        break;
                r = set_allows(s);
                if (r <= 0) {
                        /* Out of the cluster, not out of touch: the view of the others is current. */
                        if (registered)
                                lease_revoke(s, id);
                        if (r == 0)
                                set_reason(s, s->lease_reason, &s->lease_since_ns, "");
                        id = 0;
                        registered = false;
                        wait = r == 0 ? interval : BACKOFF_MIN_MS;
                        continue;
                }
                if (!registered) {
                        r = do_register(s, &id, &err);
                        if (r == -ECANCELED)
                                break;
                        if (r < 0) {
                                set_reason(s, s->lease_reason, &s->lease_since_ns,
                                           svemig_error_str(&err, r));
                                wait = backoff = next_backoff(backoff);
                                continue;
                        }
                        registered = true;
                        backoff = 0;
                        set_reason(s, s->lease_reason, &s->lease_since_ns, "");
                        wait = interval;
                        continue;
                }
                if (atomic_exchange(&s->reput, false)) {
                        /* Deleted by hand, or lost by etcd: the lease may be alive still. */
                        r = do_register(s, &id, &err);
                        if (r == -ECANCELED)
                                break;
                        if (r < 0) {
                                atomic_store(&s->reput, true);
                                set_reason(s, s->lease_reason, &s->lease_since_ns,
                                           svemig_error_str(&err, r));
                                wait = backoff = next_backoff(backoff);
                                continue;
                        }
                }
                r = keep_alive(s, id, &err);
                if (r == -ECANCELED)
                        break;
                if (r < 0) {
                        /* Retried sooner than the interval: the lease may be about to run out. */
                        set_reason(s, s->lease_reason, &s->lease_since_ns, svemig_error_str(&err, r));
                        wait = backoff = next_backoff(backoff);
                        continue;
                }
                backoff = 0;
                if (r == 0) {
                        set_reason(s, s->lease_reason, &s->lease_since_ns,
                                   "this host's lease expired in etcd (it could not be kept alive in time): "
                                   "registering again");
                        id = 0;
                        registered = false;
                        wait = 0;
                        continue;
                }
                set_reason(s, s->lease_reason, &s->lease_since_ns, "");
                wait = interval;
        }
        if (id)
                lease_revoke(s, id);
        return NULL;
}

/* ---- The backend ---- */

static void etcd_stop(void *state)
{
        struct etcd_members *s = state;

        if (!s)
                return;
        atomic_store(&s->stopping, true);
        if (s->lease_conn)
                etcd_conn_cancel(s->lease_conn);
        if (s->watch_conn)
                etcd_conn_cancel(s->watch_conn);
        if (s->lease_started)
                pthread_join(s->lease_thread, NULL);
        if (s->watch_started)
                pthread_join(s->watch_thread, NULL);
        etcd_conn_free(s->lease_conn);
        etcd_conn_free(s->watch_conn);
        etcd_gateway_free(s->g);
        pthread_mutex_destroy(&s->lock);
        free(s->hosts);
        free(s->record);
        free(s->address);
        free(s);
}

static void make_instance(char *buf, size_t len)
{
        uint64_t a = now_ns(CLOCK_REALTIME), b = now_ns(CLOCK_MONOTONIC) ^ ((uint64_t)getpid() << 32);

        snprintf(buf, len, "%016" PRIx64 "%016" PRIx64, a, b);
}

static int etcd_start(const struct membership_params *p, void **out, struct svemig_error *err)
{
        struct etcd_members *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return svemig_error_set(err, ENOMEM, "out of memory");
        pthread_mutex_init(&s->lock, NULL);
        s->changed = p->changed;
        s->userdata = p->userdata;
        s->self = p->self;
        s->ttl_s = p->etcd.lease_ttl_s;
        snprintf(s->self_name, sizeof(s->self_name), "%s", p->host_name);
        if ((size_t)snprintf(s->hosts_prefix, sizeof(s->hosts_prefix), "%shosts/", p->etcd.prefix) >=
                    sizeof(s->hosts_prefix) ||
            (size_t)snprintf(s->prefix, sizeof(s->prefix), "%s", p->etcd.prefix) >= sizeof(s->prefix) ||
            etcd_prefix_end(s->prefix, s->prefix_end, sizeof(s->prefix_end)) < 0 ||
            (p->etcd.cluster_set &&
             (size_t)snprintf(s->set_key, sizeof(s->set_key), "%ssets/%s", p->etcd.prefix,
                              p->etcd.cluster_set) >= sizeof(s->set_key))) {
                etcd_stop(s);
                return svemig_error_set(err, EINVAL, "etcd-prefix %s is too long", p->etcd.prefix);
        }
        snprintf(s->self_key, sizeof(s->self_key), "%s%s", s->hosts_prefix, p->host_name);
        snprintf(s->set_name, sizeof(s->set_name), "%s", p->etcd.cluster_set ? p->etcd.cluster_set : "");
        make_instance(s->instance, sizeof(s->instance));
        s->address = strdup(p->address);
        s->record =
                s->address ? record_new(p->self, p->host_name, p->address, s->instance, s->set_name) : NULL;
        snprintf(s->watch_reason, sizeof(s->watch_reason), "not connected to etcd yet");
        snprintf(s->lease_reason, sizeof(s->lease_reason), "not registered in etcd yet");
        s->watch_since_ns = s->lease_since_ns = now_ns(CLOCK_REALTIME);
        if (!s->record) {
                etcd_stop(s);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        r = etcd_gateway_new(&p->etcd, p->timeout_ms, &s->g, err);
        if (r == 0)
                r = etcd_conn_new(s->g, &s->lease_conn, err);
        if (r == 0)
                r = etcd_conn_new(s->g, &s->watch_conn, err);
        if (r == 0) {
                r = -pthread_create(&s->lease_thread, NULL, lease_main, s);
                s->lease_started = r == 0;
        }
        if (r == 0) {
                r = -pthread_create(&s->watch_thread, NULL, watch_main, s);
                s->watch_started = r == 0;
                if (r < 0)
                        svemig_error_set(err, r, "cannot start etcd's threads: %s", strerror(-r));
        }
        if (r < 0) {
                etcd_stop(s);
                return r;
        }
        *out = s;
        return 0;
}

static int etcd_get(void *state, struct membership_view *out, size_t *cap, struct svemig_error *err)
{
        struct etcd_members *s = state;
        const char *reason;
        int r = 0;

        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < s->n_hosts; i++) {
                struct membership_host *h = membership_view_add(out, cap);

                if (!h) {
                        r = svemig_error_set(err, ENOMEM, "out of memory");
                        break;
                }
                *h = s->hosts[i];
        }
        snprintf(out->set_name, sizeof(out->set_name), "%s", s->set_name);
        out->pinned = s->pinned;
        out->pinned_set = s->pinned_set;
        snprintf(out->refused, sizeof(out->refused), "%s", s->refused);
        reason = s->conflict[0] ? s->conflict : s->watch_reason[0] ? s->watch_reason : s->lease_reason;
        out->stale = reason[0] != '\0';
        if (out->stale) {
                snprintf(out->stale_reason, sizeof(out->stale_reason), "%s", reason);
                out->stale_since_ns = s->watch_reason[0] && s->lease_reason[0]
                                              ? MIN(s->watch_since_ns, s->lease_since_ns)
                                      : s->watch_reason[0] ? s->watch_since_ns
                                                           : s->lease_since_ns;
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

/* The record again, put at the lease thread's next turn (within a third of the TTL). */
static void etcd_self_changed(void *state)
{
        struct etcd_members *s = state;
        char *record = record_new(s->self, s->self_name, s->address, s->instance, s->set_name), *old;

        if (!record)
                return; /* out of memory: the record as it was */
        pthread_mutex_lock(&s->lock);
        old = s->record;
        s->record = record;
        pthread_mutex_unlock(&s->lock);
        free(old);
        atomic_store(&s->reput, true);
}

const struct membership_ops membership_etcd_ops = {
        .name = "etcd",
        .start = etcd_start,
        .stop = etcd_stop,
        .get = etcd_get,
        .self_changed = etcd_self_changed,
};
