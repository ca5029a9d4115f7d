/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest-registry.h"
#include "host-ledger.h"
#include "log.h"
#include "svemig/store.h"
#include "macro.h"
#include "vmm-spawn.h"

#define RECORD_FILE "guest.json"
#define SOCKET_FILE "vmm.sock"

/* How often a guest a previous svemigd left arriving is looked at again, until it settles. */
#define SETTLE_INTERVAL_USEC 100000ull

struct guest_registry {
        sd_event *event;
        char *dir; /* <state>/guests */
        TAILQ_HEAD(, guest_entry) entries;
        unsigned n;
        struct migrate_ledger *ledger; /* the host's (host-ledger.h): incoming migrations' outcomes */
        sd_event_source *settle_timer;
};

static int on_vmm_exit(sd_event_source *s, const siginfo_t *si, void *userdata);
static bool moved_away(struct guest_entry *e);

/*
 * Lets go of the watch on a VMM this svemigd started, without leaving a
 * zombie: the loop keeps the source and reaps the VMM when it exits.
 */
static void release_child(struct guest_entry *e)
{
        if (!e->child)
                return;
        if (e->child_exited) {
                e->child = sd_event_source_disable_unref(e->child);
                return;
        }
        sd_event_source_set_userdata(e->child, NULL);
        (void)sd_event_source_set_floating(e->child, true);
        e->child = sd_event_source_unref(e->child);
}

static void release_channel(struct guest_entry *e)
{
        if (e->channel_fd >= 0)
                close(e->channel_fd);
        e->channel_fd = -1;
}

static void entry_free(struct guest_entry *e)
{
        vmm_client_free(e->vmm);
        release_child(e);
        release_channel(e);
        guest_record_done(&e->rec);
        free(e->dir);
        free(e->record_path);
        free(e);
}

struct guest_entry *guest_entry_ref(struct guest_entry *e)
{
        e->refs++;
        return e;
}

void guest_entry_unref(struct guest_entry *e)
{
        if (e && --e->refs == 0)
                entry_free(e);
}

static void entry_unlink(struct guest_entry *e)
{
        struct guest_registry *reg = e->reg;

        if (e->removed)
                return;
        e->removed = true;
        TAILQ_REMOVE(&reg->entries, e, link);
        reg->n--;
        vmm_client_free(e->vmm);
        e->vmm = NULL;
        release_child(e);
        release_channel(e);
        guest_entry_unref(e);
}

static int entry_new(struct guest_registry *reg, const char *name, struct guest_entry **out)
{
        struct guest_entry *e = calloc(1, sizeof(*e)), *it;

        if (!e)
                return -ENOMEM;
        e->reg = reg;
        e->refs = 1;
        e->channel_fd = -1;
        if (asprintf(&e->dir, "%s/%s", reg->dir, name) < 0 ||
            asprintf(&e->record_path, "%s/%s", e->dir, RECORD_FILE) < 0) {
                free(e->dir);
                free(e);
                return -ENOMEM;
        }
        /* In name order, as a restarted svemigd finds them. */
        TAILQ_FOREACH(it, &reg->entries, link)
        {
                if (strcmp(it->rec.name ? it->rec.name : "", name) > 0)
                        break;
        }
        if (it)
                TAILQ_INSERT_BEFORE(it, e, link);
        else
                TAILQ_INSERT_TAIL(&reg->entries, e, link);
        reg->n++;
        *out = e;
        return 0;
}

int guest_entry_save(struct guest_entry *e, struct svemig_error *err)
{
        struct svemig_error local = {0};
        int r;

        if (e->removed)
                return 0;
        r = guest_record_save(&e->rec, e->record_path, err ? err : &local);
        if (r < 0)
                log_msg(LOG_ERR, LOG_CTX(.guest = e->rec.name), "%s", (err ? err : &local)->msg);
        return r;
}

/* --- the VMM --- */

void guest_entry_mark_dead(struct guest_entry *e, const char *why)
{
        char reason[512];

        if (e->removed)
                return;
        snprintf(reason, sizeof(reason), "its VMM (pid %d) %s", (int)e->rec.vmm_pid, why);
        log_msg(LOG_WARNING, LOG_CTX(.guest = e->rec.name), "guest %s is dead: %s", e->rec.name, reason);
        vmm_client_free(e->vmm);
        e->vmm = NULL;
        e->rec.state = GUEST_DEAD;
        (void)guest_record_set_str(&e->rec.reason, reason);
        (void)guest_entry_save(e, NULL);
}

static void on_vmm_lost(struct vmm_client *c, const char *why, void *userdata)
{
        struct guest_entry *e = userdata;

        /* A stop in flight ends this way; its own callback records it. */
        if (e->busy && strcmp(e->busy, "stop") == 0)
                return;
        /* A migration this svemigd did not start (it was restarted meanwhile) took the guest away. */
        if (moved_away(e))
                return;
        guest_entry_mark_dead(e, why);
}

static int on_vmm_exit(sd_event_source *s, const siginfo_t *si, void *userdata)
{
        struct guest_entry *e = userdata;
        char how[128];

        /*
         * Released (its guest deleted, or a newer VMM watched): reaped, and
         * that is all. (A child source must not be freed in its own callback:
         * sd-event reaps the child after it returns.)
         */
        if (!e) {
                (void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
                return 0;
        }
        vmm_describe_exit(si->si_code, si->si_status, how, sizeof(how));
        e->child_exited = true;
        if (e->rec.vmm_pid != si->si_pid)
                return 0;
        if (e->busy && strcmp(e->busy, "stop") == 0 && si->si_code == CLD_EXITED && si->si_status == 0)
                return 0;
        /* Either its socket's end was seen first (dead already: say how it ended) or not yet. */
        if (e->rec.state == GUEST_DEAD || guest_state_has_vmm(e->rec.state))
                guest_entry_mark_dead(e, how);
        return 0;
}

int guest_entry_attach(struct guest_entry *e, pid_t pid, bool own, struct svemig_error *err)
{
        _cleanup_free_ char *sock = NULL;
        int r;

        if (asprintf(&sock, "%s/%s", e->dir, SOCKET_FILE) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        vmm_client_free(e->vmm);
        e->vmm = NULL;
        r = vmm_client_connect(e->reg->event, sock, on_vmm_lost, e, &e->vmm, err);
        if (r < 0)
                return r;
        e->rec.vmm_pid = pid;
        (void)guest_record_set_str(&e->rec.vmm_socket, sock);
        (void)guest_record_set_str(&e->rec.reason, NULL);
        if (own) {
                release_child(e);
                e->child_exited = false;
                r = sd_event_add_child(e->reg->event, &e->child, pid, WEXITED, on_vmm_exit, e);
                if (r < 0)
                        log_msg(LOG_WARNING, LOG_CTX(.guest = e->rec.name),
                                "cannot watch VMM pid %d: %s; its exit is seen from its socket only",
                                (int)pid, strerror(-r));
        }
        return 0;
}

void guest_entry_detach(struct guest_entry *e, enum guest_state state)
{
        vmm_client_free(e->vmm);
        e->vmm = NULL;
        /* Our child is still reaped when it exits: the source stays until then. */
        e->rec.state = state;
        e->rec.vmm_pid = 0;
        (void)guest_record_set_str(&e->rec.vmm_socket, NULL);
}

void guest_entry_update(struct guest_entry *e, const Svemig__Api__Guest *g)
{
        int s = guest_state_from_name(g->state);

        if (s >= 0)
                e->rec.state = (enum guest_state)s;
        e->rec.steps = g->steps;
        if (g->vcpus)
                e->rec.vcpus = g->vcpus;
        if (g->memory_bytes)
                e->rec.memory_bytes = g->memory_bytes;
        e->rec.dirty_pages_per_step = g->dirty_pages_per_step;
        e->dirty_rate = g->dirty_pages_per_second;
        /* A guest that arrived by migration learns here what it runs. */
        if (g->payload && g->payload->image && g->payload->image[0] && !e->rec.payload)
                (void)guest_record_set_str(&e->rec.payload, g->payload->image);
        vqset_clear(&e->rec.vls);
        for (size_t i = 0; i < g->n_vl_bits; i++)
                if (g->vl_bits[i] % 128 == 0 && g->vl_bits[i] / 128 >= 1 &&
                    g->vl_bits[i] / 128 <= VQSET_VQ_MAX)
                        vqset_add(&e->rec.vls, g->vl_bits[i] / 128);
}

/* --- the message --- */

struct guest_msg {
        Svemig__Api__Guest g; /* first: guest_msg_free() casts back */
        uint32_t vl_bits[VQSET_VQ_MAX];
        Svemig__Api__SnapshotInfo *infos;
        Svemig__Api__SnapshotInfo **ptrs;
        Svemig__Api__PayloadStatus payload;
};

Svemig__Api__Guest *guest_msg_new(const struct guest_entry *e, const Svemig__Api__Guest *live)
{
        const struct guest_record *rec = &e->rec;
        struct guest_msg *m = calloc(1, sizeof(*m));
        size_t n = 0;

        if (!m)
                return NULL;
        svemig__api__guest__init(&m->g);
        if (rec->n_snapshots) {
                m->infos = calloc(rec->n_snapshots, sizeof(*m->infos));
                m->ptrs = calloc(rec->n_snapshots, sizeof(*m->ptrs));
                if (!m->infos || !m->ptrs) {
                        guest_msg_free(&m->g);
                        return NULL;
                }
        }
        VQSET_FOREACH (vq, &rec->vls) {
                m->vl_bits[n++] = vq_to_bits(vq);
        }
        m->g.name = rec->name;
        m->g.state = (char *)guest_state_name(rec->state);
        m->g.vcpus = rec->vcpus;
        m->g.memory_bytes = rec->memory_bytes;
        m->g.n_vl_bits = n;
        m->g.vl_bits = m->vl_bits;
        m->g.max_vl_bits = vq_to_bits(vqset_highest(&rec->vls));
        m->g.steps = rec->steps;
        m->g.dirty_pages_per_step = rec->dirty_pages_per_step;
        m->g.dirty_pages_per_second = guest_state_has_vmm(rec->state) ? e->dirty_rate : 0;
        m->g.cluster = rec->cluster;
        m->g.cpu = rec->cpu_regs ? "cluster" : "host";
        m->g.vmm_pid = (uint32_t)rec->vmm_pid;
        m->g.vmm_socket = rec->vmm_socket ? rec->vmm_socket : (char *)"";
        m->g.reason = rec->reason ? rec->reason : (char *)"";
        m->g.restored_from = rec->restored_from ? rec->restored_from : (char *)"";
        if (rec->payload) {
                svemig__api__payload_status__init(&m->payload);
                m->payload.image = rec->payload;
                m->g.payload = &m->payload;
        }
        for (size_t i = 0; i < rec->n_snapshots; i++) {
                svemig__api__snapshot_info__init(&m->infos[i]);
                m->infos[i].path = rec->snapshots[i].path;
                m->infos[i].created_ns = rec->snapshots[i].created_ns;
                m->infos[i].bytes = rec->snapshots[i].bytes;
                m->infos[i].steps = rec->snapshots[i].steps;
                m->infos[i].parent = rec->snapshots[i].parent ? rec->snapshots[i].parent : "";
                m->infos[i].pause_us = rec->snapshots[i].pause_us;
                m->ptrs[i] = &m->infos[i];
        }
        m->g.n_snapshots = rec->n_snapshots;
        m->g.snapshots = m->ptrs;
        if (rec->n_snapshots) {
                m->g.last_snapshot = rec->snapshots[rec->n_snapshots - 1].path;
                m->g.last_snapshot_ns = rec->snapshots[rec->n_snapshots - 1].created_ns;
        }
        if (live) {
                /* What the VMM says now: it runs the guest. */
                m->g.n_vcpu_steps = live->n_vcpu_steps;
                m->g.vcpu_steps = live->vcpu_steps;
                if (live->digest && live->digest[0])
                        m->g.digest = live->digest;
                /* What the payload reported: only its VMM knows. */
                m->g.payload = live->payload;
        }
        return &m->g;
}

void guest_msg_free(Svemig__Api__Guest *g)
{
        struct guest_msg *m = (struct guest_msg *)g;

        if (!m)
                return;
        free(m->infos);
        free(m->ptrs);
        free(m);
}

/* --- adding and removing --- */

int guest_registry_add(struct guest_registry *reg, struct guest_record *rec, struct guest_entry **out,
                       struct svemig_error *err)
{
        struct guest_entry *e;
        int r;

        if (guest_registry_find(reg, rec->name))
                return svemig_error_set(err, EEXIST, "a guest named %s already exists; choose another name",
                                        rec->name);
        r = entry_new(reg, rec->name, &e);
        if (r < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        if (mkdir(e->dir, 0750) < 0) {
                r = -errno;
                entry_unlink(e);
                if (r == -EEXIST)
                        return svemig_error_set(
                                err, EEXIST,
                                "%s/%s already exists but holds no guest record; remove it or "
                                "choose another name",
                                reg->dir, rec->name);
                return svemig_error_set(err, r, "cannot create %s/%s: %s", reg->dir, rec->name,
                                        strerror(-r));
        }
        e->rec = *rec;
        memset(rec, 0, sizeof(*rec));
        r = guest_entry_save(e, err);
        if (r < 0) {
                rmdir(e->dir);
                entry_unlink(e);
                return r;
        }
        *out = e;
        return 0;
}

static bool path_in_dir(const char *path, const char *dir)
{
        size_t n = strlen(dir);

        return strncmp(path, dir, n) == 0 && path[n] == '/' && !strchr(path + n + 1, '/');
}

bool guest_snapshot_is_own(const char *snapshot_dir, const char *guest, const char *path)
{
        const char *base = strrchr(path, '/'), *suffix = ".svemig";
        size_t n = strlen(guest), len;

        if (!snapshot_dir || !path_in_dir(path, snapshot_dir))
                return false;
        base++;
        len = strlen(base);
        /* <guest>-<UTC time>.svemig, as op-snapshot.c names them */
        return strncmp(base, guest, n) == 0 && base[n] == '-' && len > n + 1 + strlen(suffix) &&
               strcmp(base + len - strlen(suffix), suffix) == 0;
}

int guest_entry_delete(struct guest_entry *e, const char *snapshot_dir, struct svemig_error *err)
{
        _cleanup_free_ char *sock = NULL;

        /*
         * Snapshots svemigd named go with the guest; files a person named stay theirs. Remote
         * ones stay too: deleting them would wait on a server in the event loop.
         */
        for (size_t i = 0; i < e->rec.n_snapshots; i++)
                if (guest_snapshot_is_own(snapshot_dir, e->rec.name, e->rec.snapshots[i].path) &&
                    !store_is_remote(e->rec.snapshots[i].path) && unlink(e->rec.snapshots[i].path) < 0 &&
                    errno != ENOENT)
                        log_msg(LOG_WARNING, LOG_CTX(.guest = e->rec.name), "cannot remove %s: %s",
                                e->rec.snapshots[i].path, strerror(errno));
        if (asprintf(&sock, "%s/%s", e->dir, SOCKET_FILE) >= 0)
                unlink(sock);
        free(sock);
        sock = NULL;
        if (asprintf(&sock, "%s/%s", e->dir, GUEST_MIGRATED_FILE) >= 0)
                unlink(sock);
        free(sock);
        sock = NULL;
        if (asprintf(&sock, "%s/%s", e->dir, GUEST_PAYLOAD_FILE) >= 0)
                unlink(sock);
        if (unlink(e->record_path) < 0 && errno != ENOENT)
                return svemig_error_set(err, errno, "cannot remove %s: %s", e->record_path, strerror(errno));
        if (rmdir(e->dir) < 0 && errno != ENOENT)
                log_msg(LOG_WARNING, LOG_CTX(.guest = e->rec.name), "cannot remove %s: %s", e->dir,
                        strerror(errno));
        entry_unlink(e);
        return 0;
}

/* --- lookups --- */

struct guest_entry *guest_registry_find(struct guest_registry *reg, const char *name)
{
        struct guest_entry *e;

        TAILQ_FOREACH(e, &reg->entries, link)
        {
                if (name && strcmp(e->rec.name, name) == 0)
                        return e;
        }
        return NULL;
}

struct guest_entry *guest_registry_first(struct guest_registry *reg)
{
        return TAILQ_FIRST(&reg->entries);
}

struct guest_entry *guest_registry_next(struct guest_entry *e)
{
        return TAILQ_NEXT(e, link);
}

unsigned guest_registry_count(const struct guest_registry *reg)
{
        return reg->n;
}

const char *guest_registry_dir(const struct guest_registry *reg)
{
        return reg->dir;
}

struct migrate_ledger *guest_registry_ledger(struct guest_registry *reg)
{
        return reg->ledger;
}

/* --- start: what the last svemigd left --- */

static void refresh_done(const Svemig__Api__Response *resp, const char *why, void *userdata)
{
        struct guest_entry *e = userdata;

        if (resp && !resp->status && resp->result_case == SVEMIG__API__RESPONSE__RESULT_GUEST) {
                guest_entry_update(e, resp->guest);
                (void)guest_entry_save(e, NULL);
        }
        guest_entry_unref(e);
}

/* Asks the VMM what the guest has done meanwhile. */
static void refresh(struct guest_entry *e)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__GuestRef ref = SVEMIG__API__GUEST_REF__INIT;

        ref.name = e->rec.name;
        req.op_case = SVEMIG__API__REQUEST__OP_GUEST_SHOW;
        req.guest_show = &ref;
        if (vmm_client_call(e->vmm, &req, NULL, refresh_done, guest_entry_ref(e), NULL, NULL) < 0)
                guest_entry_unref(e);
}

/* --- guests that left, or were arriving, while no svemigd watched --- */

/* Whether the guest's VMM migrated it away (GUEST_MIGRATED_FILE); if so its record is removed. */
static bool moved_away(struct guest_entry *e)
{
        _cleanup_free_ char *path = NULL;
        struct svemig_error err = {0};
        char buf[256] = "", peer[64] = "?";
        const char *p;
        FILE *f;

        if (asprintf(&path, "%s/%s", e->dir, GUEST_MIGRATED_FILE) < 0)
                return false;
        f = fopen(path, "re");
        if (!f)
                return false;
        buf[fread(buf, 1, sizeof(buf) - 1, f)] = 0;
        fclose(f);
        p = strstr(buf, "peer=");
        if (p)
                sscanf(p + 5, "%63[^\n]", peer);
        log_msg(LOG_NOTICE, LOG_CTX(.guest = e->rec.name, .peer = peer, .op = "migrate"),
                "guest %s migrated to %s while no svemigd saw it end; its record here is removed",
                e->rec.name, peer);
        guest_entry_detach(e, GUEST_STOPPED);
        if (guest_entry_delete(e, NULL, &err) < 0)
                log_msg(LOG_WARNING, LOG_CTX(.guest = e->rec.name), "%s", err.msg);
        return true;
}

/* /proc/PID/NAME as a string; false when it cannot be read. */
static bool read_proc(pid_t pid, const char *name, char *buf, size_t len)
{
        char path[64];
        ssize_t k;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        k = read(fd, buf, len - 1);
        close(fd);
        if (k <= 0)
                return false;
        buf[k] = 0;
        return true;
}

/* A live svemig-vmm, not a zombie nor another program that got its pid. */
static bool vmm_alive(pid_t pid)
{
        char buf[512];
        const char *st;

        if (pid <= 0 || !read_proc(pid, "cmdline", buf, sizeof(buf)) || !strstr(buf, "svemig-vmm"))
                return false;
        if (!read_proc(pid, "stat", buf, sizeof(buf)))
                return false;
        st = strrchr(buf, ')');
        return st && st[1] == ' ' && st[2] != 'Z' && st[2] != 'X';
}

static void incoming_dropped(struct guest_entry *e, const char *why)
{
        struct svemig_error err = {0};

        log_msg(LOG_WARNING, LOG_CTX(.guest = e->rec.name, .op = "migrate"),
                "incoming guest %s did not arrive: %s", e->rec.name, why);
        e->busy = NULL;
        if (guest_entry_delete(e, NULL, &err) < 0)
                log_msg(LOG_WARNING, LOG_CTX(.guest = e->rec.name), "%s", err.msg);
}

/* Its outcome, made final when the receiver is gone: COMMITTED or ABORTED; UNKNOWN if unreadable. */
static enum migrate_ledger_state incoming_outcome(struct guest_entry *e, bool receiver_gone)
{
        enum migrate_ledger_state s = MIGRATE_LEDGER_UNKNOWN;
        struct svemig_error err = {0};
        uint8_t id[MIGRATE_ID_SIZE];
        int r;

        if (!e->reg->ledger || migrate_id_parse(e->rec.incoming_migration, id) < 0)
                return MIGRATE_LEDGER_ABORTED; /* nothing to go by: it never committed in a ledger here */
        r = receiver_gone ? migrate_ledger_give_up(e->reg->ledger, id, &s, &err)
                          : migrate_ledger_get(e->reg->ledger, id, &s, &err);
        if (r < 0) {
                log_msg(LOG_WARNING, LOG_CTX(.guest = e->rec.name), "incoming guest %s: %s", e->rec.name,
                        err.msg);
                return MIGRATE_LEDGER_UNKNOWN;
        }
        return s;
}

void guest_entry_incoming_ended(struct guest_entry *e, const char *why)
{
        char reason[600];

        if (incoming_outcome(e, true) == MIGRATE_LEDGER_COMMITTED) {
                /* It was ours: the source has let go of it. Say so, never hide it. */
                snprintf(reason, sizeof(reason), "ran the guest it received, then ended: %s", why);
                e->busy = NULL;
                (void)guest_record_set_str(&e->rec.incoming_migration, NULL);
                guest_entry_mark_dead(e, reason);
                return;
        }
        incoming_dropped(e, why);
}

/* Decides a guest a previous svemigd left arriving. Returns whether it must be looked at again. */
static bool settle(struct guest_entry *e)
{
        struct svemig_error err = {0};
        bool alive = vmm_alive(e->rec.vmm_pid);

        switch (incoming_outcome(e, false)) {
        case MIGRATE_LEDGER_COMMITTED:
                if (guest_entry_attach(e, e->rec.vmm_pid, false, &err) == 0) {
                        log_msg(LOG_NOTICE, LOG_CTX(.guest = e->rec.name, .op = "migrate"),
                                "guest %s arrived while svemigd was away; adopted with its VMM (pid %d)",
                                e->rec.name, (int)e->rec.vmm_pid);
                        e->settling = false;
                        e->busy = NULL;
                        (void)guest_record_set_str(&e->rec.incoming_migration, NULL);
                        (void)guest_entry_save(e, NULL);
                        refresh(e);
                        return false;
                }
                if (alive)
                        return true; /* committed, not serving yet */
                e->settling = false;
                guest_entry_incoming_ended(e, "its VMM exited before serving it");
                return false;
        case MIGRATE_LEDGER_ABORTED:
                e->settling = false;
                incoming_dropped(e, "its migration was aborted (the host's ledger says so)");
                return false;
        default:
                /* Pending, or not begun: its VMM is still at it, or is gone without deciding. */
                if (alive)
                        return true;
                e->settling = false;
                guest_entry_incoming_ended(e, "its VMM is gone");
                return false;
        }
}

static int on_settle(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct guest_registry *reg = userdata;
        struct guest_entry *e, *next;
        bool again = false;

        (void)usec;
        for (e = TAILQ_FIRST(&reg->entries); e; e = next) {
                next = TAILQ_NEXT(e, link);
                if (e->settling)
                        again |= settle(e);
        }
        if (again) {
                (void)sd_event_source_set_time_relative(s, SETTLE_INTERVAL_USEC);
                (void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        }
        return 0;
}

static void load_one(struct guest_registry *reg, const char *name)
{
        struct svemig_error err = {0};
        struct guest_entry *e;
        char path[4096];
        int r;

        snprintf(path, sizeof(path), "%s/%s/%s", reg->dir, name, RECORD_FILE);
        if (access(path, F_OK) < 0) {
                log_warning("%s/%s holds no guest record; ignoring it", reg->dir, name);
                return;
        }
        if (entry_new(reg, name, &e) < 0)
                return;
        r = guest_record_load(path, &e->rec, &err);
        if (r == 0 && strcmp(e->rec.name, name) != 0)
                r = svemig_error_set(&err, EBADMSG, "%s names guest %s, not %s", path, e->rec.name, name);
        if (r < 0) {
                log_error("ignoring guest %s: %s", name, err.msg);
                entry_unlink(e);
                return;
        }
        if (e->rec.incoming_migration) {
                /* It was arriving: the ledger and its VMM say how that ended (on_settle). */
                e->settling = true;
                e->busy = "incoming migration";
                return;
        }
        if (moved_away(e))
                return;
        if (!guest_state_has_vmm(e->rec.state)) {
                log_msg(LOG_INFO, LOG_CTX(.guest = name), "guest %s on record: %s", name,
                        guest_state_name(e->rec.state));
                return;
        }
        r = guest_entry_attach(e, e->rec.vmm_pid, false, &err);
        if (r < 0) {
                char why[600];

                snprintf(why, sizeof(why), "was gone when svemigd started (%s)", err.msg);
                guest_entry_mark_dead(e, why);
                return;
        }
        log_msg(LOG_INFO, LOG_CTX(.guest = name), "guest %s: reconnected to its VMM (pid %d)", name,
                (int)e->rec.vmm_pid);
        refresh(e);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int only_names(const struct dirent *d)
{
        return d->d_name[0] != '.';
}

int guest_registry_open(sd_event *event, const char *state_dir, struct guest_registry **out,
                        struct svemig_error *err)
{
        struct guest_registry *reg = calloc(1, sizeof(*reg));
        struct dirent **names = NULL;
        int n;

        if (!reg)
                return svemig_error_set(err, ENOMEM, "out of memory");
        reg->event = sd_event_ref(event);
        TAILQ_INIT(&reg->entries);
        if (asprintf(&reg->dir, "%s/guests", state_dir) < 0) {
                reg->dir = NULL;
                guest_registry_free(reg);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        if (mkdir(reg->dir, 0750) < 0 && errno != EEXIST) {
                int r = -errno;

                svemig_error_set(err, r, "cannot create %s: %s", reg->dir, strerror(-r));
                guest_registry_free(reg);
                return r;
        }
        n = host_ledger_open(state_dir, &reg->ledger, err);
        if (n < 0) {
                guest_registry_free(reg);
                return n;
        }
        n = scandir(reg->dir, &names, only_names, by_name);
        if (n < 0) {
                int r = -errno;

                svemig_error_set(err, r, "cannot read %s: %s", reg->dir, strerror(-r));
                guest_registry_free(reg);
                return r;
        }
        for (int i = 0; i < n; i++) {
                struct svemig_error nerr = {0};

                if (guest_name_check(names[i]->d_name, &nerr) == 0)
                        load_one(reg, names[i]->d_name);
                else
                        log_warning("ignoring %s/%s: %s", reg->dir, names[i]->d_name, nerr.msg);
                free(names[i]);
        }
        free(names);
        if (reg->n)
                log_info("%u guest(s) on record in %s", reg->n, reg->dir);
        if (sd_event_add_time_relative(event, &reg->settle_timer, CLOCK_MONOTONIC, 0, 0, on_settle, reg) < 0)
                log_warning("cannot watch guests that were arriving; they stay as recorded");
        *out = reg;
        return 0;
}

void guest_registry_free(struct guest_registry *reg)
{
        if (!reg)
                return;
        /* The VMMs run on: only our connections to them close. */
        while (!TAILQ_EMPTY(&reg->entries))
                entry_unlink(TAILQ_FIRST(&reg->entries));
        sd_event_source_disable_unref(reg->settle_timer);
        migrate_ledger_free(reg->ledger);
        sd_event_unref(reg->event);
        free(reg->dir);
        free(reg);
}
