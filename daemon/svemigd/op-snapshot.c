/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Snapshot and restore. A snapshot is written by the guest's VMM (which
 * pauses it, writes the file never half, and resumes it), and recorded
 * here: into the snapshot directory under a name svemigd makes, or into the
 * file the client created and passed (client-file.h), which svemigd never
 * opens by its name. Only svemigd's own snapshots are ever pruned (keep).
 * A URL (http://, https://, s3://) is no client's file: the VMM uploads to
 * it, or restores from it, with the [store] settings of migrate.conf.
 * A restore hands the client's file (or the URL) to a new VMM, which judges
 * the header against this host before it reads anything else: an
 * incompatible stream is refused with the reason (Status.incompatible).
 * Nothing here reads a file or waits on a server: remote snapshots that
 * keep prunes are deleted on a thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api-ops.h"
#include "client-file.h"
#include "guest-registry.h"
#include "header-read.h"
#include "log.h"
#include "macro.h"
#include "svemig/snapshot.h"
#include "svemig/stream.h"
#include "svemigd.h"
#include "vmm-forward.h"

#define SNAPSHOT_SUFFIX ".svemig"

struct snap_ctx {
        unsigned keep;
        bool stop;
        Svemig__Api__SnapshotResult result;
        char *path;
        char *parent; /* the VMM's answer, kept for the reply (which may come after a stop) */
        char **pruned;
        size_t n_pruned;
};

static void snap_ctx_free(struct snap_ctx *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_pruned; i++)
                free(c->pruned[i]);
        free(c->pruned);
        free(c->path);
        free(c->parent);
        free(c);
}

/* Remote snapshots to delete, on a thread of their own: the event loop never waits on a server. */
struct remote_prune {
        struct store_conf sc;
        char *guest;
        char **locations;
        size_t n;
};

static void *remote_prune_main(void *arg)
{
        struct remote_prune *p = arg;

        for (size_t i = 0; i < p->n; i++) {
                struct svemig_error err = {0};

                if (store_delete(p->locations[i], &p->sc, &err) < 0)
                        log_msg(LOG_WARNING, LOG_CTX(.guest = p->guest, .op = "snapshot"),
                                "cannot remove the old snapshot: %s", err.msg);
                free(p->locations[i]);
        }
        free(p->locations);
        free(p->guest);
        free(p);
        return NULL;
}

static void remote_prune_start(struct svemigd *d, const char *guest, char **locations, size_t n)
{
        struct remote_prune *p = calloc(1, sizeof(*p));
        pthread_attr_t attr;
        pthread_t t;

        if (!p || !(p->guest = strdup(guest))) {
                free(p);
                goto fail;
        }
        migrate_conf_store_conf(&d->conf, &p->sc);
        p->locations = locations;
        p->n = n;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, remote_prune_main, p) == 0) {
                pthread_attr_destroy(&attr);
                return;
        }
        pthread_attr_destroy(&attr);
        free(p->guest);
        free(p);
fail:
        log_msg(LOG_WARNING, LOG_CTX(.guest = guest, .op = "snapshot"),
                "cannot start removing %zu old remote snapshots", n);
        for (size_t i = 0; i < n; i++)
                free(locations[i]);
        free(locations);
}

/* Removes one old snapshot: a file now, a remote object (queued in *remote) on a thread. */
static int prune_one(const char *path, char ***remote, size_t *n_remote)
{
        char **r, *copy;

        if (!store_is_remote(path))
                return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
        copy = strdup(path);
        r = realloc(*remote, (*n_remote + 1) * sizeof(*r));
        if (!copy || !r) {
                free(copy);
                if (r)
                        *remote = r;
                return -ENOMEM;
        }
        *remote = r;
        r[(*n_remote)++] = copy;
        return 0;
}

/* The index of the newest record of path, or SIZE_MAX. */
static size_t find_snapshot(const struct guest_record *rec, const char *path)
{
        for (size_t i = rec->n_snapshots; i-- > 0;)
                if (strcmp(rec->snapshots[i].path, path) == 0)
                        return i;
        return SIZE_MAX;
}

/* The full snapshot i's chain starts from, as far as the record knows it. */
static size_t chain_root(const struct guest_record *rec, size_t i)
{
        for (unsigned depth = 0; rec->snapshots[i].parent && depth < SNAPSHOT_CHAIN_MAX; depth++) {
                size_t p = find_snapshot(rec, rec->snapshots[i].parent);

                if (p == SIZE_MAX || p >= i)
                        break;
                i = p;
        }
        return i;
}

static void pruned_add(struct snap_ctx *c, const char *path)
{
        char **p = realloc(c->pruned, (c->n_pruned + 1) * sizeof(*p));

        if (!p)
                return;
        c->pruned = p;
        c->pruned[c->n_pruned] = strdup(path);
        if (c->pruned[c->n_pruned])
                c->n_pruned++;
}

/*
 * After a snapshot svemigd named: keeps the newest 'keep' chains of e's
 * snapshots that svemigd named in its snapshot directory (a full snapshot
 * and the incremental ones over it; a restorable chain), and removes the
 * rest, so that no parent a kept snapshot needs goes. Files the client
 * named are never touched.
 */
static void prune(struct svemigd *d, struct guest_entry *e, struct snap_ctx *c)
{
        const char *dir = d->conf.snapshot_dir;
        struct guest_record *rec = &e->rec;
        _cleanup_free_ size_t *root = NULL;
        _cleanup_free_ bool *kept = NULL, *seen = NULL, *own = NULL;
        char **remote = NULL;
        size_t n = rec->n_snapshots, n_remote = 0;
        unsigned chains = 0;
        int k;

        if (c->keep == 0 || n == 0 || !guest_snapshot_is_own(dir, rec->name, c->path))
                return;
        root = calloc(n, sizeof(*root));
        kept = calloc(n, sizeof(*kept));
        seen = calloc(n, sizeof(*seen));
        own = calloc(n, sizeof(*own));
        if (!root || !kept || !seen || !own)
                return;
        /* The record is oldest first: the newest chains are counted first. */
        for (size_t i = n; i-- > 0;) {
                own[i] = guest_snapshot_is_own(dir, rec->name, rec->snapshots[i].path);
                root[i] = chain_root(rec, i);
                if (own[i] && !seen[root[i]]) {
                        seen[root[i]] = true;
                        kept[root[i]] = ++chains <= c->keep;
                }
        }
        for (size_t i = 0; i < n; i++) {
                const char *path = rec->snapshots[i].path;

                if (!own[i] || kept[root[i]] || strcmp(path, c->path) == 0)
                        continue;
                k = prune_one(path, &remote, &n_remote);
                if (k < 0) {
                        log_msg(LOG_WARNING, LOG_CTX(.guest = rec->name, .op = "snapshot"),
                                "cannot remove the old snapshot %s: %s", path, strerror(-k));
                        own[i] = false; /* stays on record */
                        continue;
                }
                log_msg(LOG_INFO, LOG_CTX(.guest = rec->name, .op = "snapshot"),
                        "removed the old snapshot %s (keeping %u chains)", path, c->keep);
                pruned_add(c, path);
        }
        /* From the newest down, so that the indices below stay put. */
        for (size_t i = n; i-- > 0;)
                if (own[i] && !kept[root[i]] && strcmp(rec->snapshots[i].path, c->path) != 0)
                        guest_record_remove_snapshot(rec, i);
        if (n_remote)
                remote_prune_start(d, rec->name, remote, n_remote);
}

static void snapshot_reply(struct api_call *call, struct snap_ctx *c)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;

        c->result.path = c->path;
        c->result.n_pruned = c->n_pruned;
        c->result.pruned = c->pruned;
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_SNAPSHOT;
        resp.snapshot = &c->result;
        api_call_reply(call, &resp);
}

static void snapshot_stopped(struct forward *f, const Svemig__Api__Response *resp)
{
        struct snap_ctx *c = f->data;

        guest_entry_detach(f->e, GUEST_STOPPED);
        (void)guest_entry_save(f->e, NULL);
        snapshot_reply(f->call, c);
        snap_ctx_free(c);
}

static void snapshot_failed(struct forward *f)
{
        snap_ctx_free(f->data);
}

static void snapshot_written(struct forward *f, const Svemig__Api__Response *resp)
{
        const Svemig__Api__SnapshotResult *res = resp->snapshot;
        struct snap_ctx *c = f->data;
        struct guest_entry *e = f->e;
        struct svemig_error err = {0};

        if (resp->result_case != SVEMIG__API__RESPONSE__RESULT_SNAPSHOT) {
                api_call_fail(f->call, EIO, "guest %s: its VMM answered the snapshot without a result",
                              e->rec.name);
                snap_ctx_free(c);
                return;
        }
        c->result.bytes = res->bytes;
        c->result.steps = res->steps;
        c->result.created_ns = res->created_ns;
        c->parent = strdup(res->parent ? res->parent : "");
        c->result.parent = c->parent ? c->parent : "";
        c->result.pause_us = res->pause_us;
        c->result.live = res->live;
        c->result.precopy_rounds = res->precopy_rounds;
        if (guest_record_add_snapshot(&e->rec, c->path, res->created_ns, res->bytes, res->steps) < 0 ||
            guest_record_set_snapshot_chain(&e->rec, res->parent, res->pause_us) < 0)
                log_msg(LOG_ERR, LOG_CTX(.guest = e->rec.name), "out of memory recording %s", c->path);
        prune(f->d, e, c);
        (void)guest_entry_save(e, NULL);
        log_msg(LOG_INFO, LOG_CTX(.guest = e->rec.name, .op = "snapshot"),
                "snapshot %s: %llu bytes, %llu steps", c->path, (unsigned long long)res->bytes,
                (unsigned long long)res->steps);

        if (c->stop && e->vmm) {
                Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
                Svemig__Api__GuestRef ref = SVEMIG__API__GUEST_REF__INIT;
                struct forward *next;

                ref.name = e->rec.name;
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_STOP;
                req.guest_stop = &ref;
                if (vmm_forward(f->d, f->call, e, &req, snapshot_stopped, c, false, &next, &err) == 0) {
                        next->failed = snapshot_failed;
                        return;
                }
                log_msg(LOG_ERR, LOG_CTX(.guest = e->rec.name), "cannot stop after the snapshot: %s",
                        err.msg);
        }
        snapshot_reply(f->call, c);
        snap_ctx_free(c);
}

/* <snapshot dir>/<guest>-<UTC time>.svemig, the directory created if need be. */
static int default_path(struct svemigd *d, const char *name, char **out, struct svemig_error *err)
{
        struct timespec ts;
        struct tm tm;
        char stamp[32];

        if (!store_is_remote(d->conf.snapshot_dir) && mkdir(d->conf.snapshot_dir, 0750) < 0 &&
            errno != EEXIST)
                return svemig_error_set(err, errno, "cannot create the snapshot directory %s: %s",
                                        d->conf.snapshot_dir, strerror(errno));
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
        if (asprintf(out, "%s/%s-%s.%03ldZ" SNAPSHOT_SUFFIX, d->conf.snapshot_dir, name, stamp,
                     ts.tv_nsec / 1000000) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        return 0;
}

/* The client's file for a snapshot to PATH: its descriptor, never PATH opened here. */
static int take_target(struct svemigd *d, struct api_call *call, const char *path, int *fd,
                       struct svemig_error *err)
{
        int r = client_file_check_place(d, "snapshot", path, err);

        if (r < 0)
                return r;
        return client_file_take(call, "snapshot", path, CLIENT_FILE_WRITE, fd, err);
}

int op_snapshot(struct api_call *call, const Svemig__Api__Request *request, void *userdata,
                struct svemig_error *err)
{
        const Svemig__Api__SnapshotRequest *req = request->snapshot;
        Svemig__Api__Request fwd = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__SnapshotRequest sreq = SVEMIG__API__SNAPSHOT_REQUEST__INIT;
        struct svemigd *d = userdata;
        _cleanup_close_ int fd = -1;
        struct guest_entry *e;
        struct forward *f;
        struct snap_ctx *c;
        int r;

        if (!req->guest || !req->guest[0])
                return svemig_error_set(err, EINVAL, "name the guest to snapshot");
        e = guest_registry_find(d->guests, req->guest);
        if (!e)
                return svemig_error_set(err, ENOENT, "no guest named %s on this host (svemigctl guest list)",
                                        req->guest);
        if (e->busy)
                return svemig_error_set(err, EBUSY, "guest %s is busy: a %s (operation %llu) is in progress",
                                        req->guest, e->busy, (unsigned long long)e->busy_operation);
        if (!e->vmm)
                return guest_not_live(e, "snapshot", err);
        if (req->compression && req->compression[0] && strcmp(req->compression, "lz4") != 0)
                return svemig_error_set(err, EOPNOTSUPP,
                                        "compression '%s' is not available: snapshots are written with lz4 "
                                        "(incompressible chunks are stored raw)",
                                        req->compression);

        c = calloc(1, sizeof(*c));
        if (!c)
                return svemig_error_set(err, ENOMEM, "out of memory");
        svemig__api__snapshot_result__init(&c->result);
        c->keep = req->keep ? req->keep : d->conf.snapshot_keep;
        c->stop = req->stop;
        if (req->path && req->path[0]) {
                if (store_is_remote(req->path)) {
                        /* A URL: the guest's VMM uploads to it with [store]'s settings; nothing is opened
                         * here. */
                        struct store_conf sc;

                        migrate_conf_store_conf(&d->conf, &sc);
                        r = store_check_location(req->path, &sc, err);
                } else
                        r = take_target(d, call, req->path, &fd, err);
                if (r == 0 && !(c->path = strdup(req->path)))
                        r = svemig_error_set(err, ENOMEM, "out of memory");
        } else
                r = default_path(d, e->rec.name, &c->path, err);
        if (r < 0) {
                snap_ctx_free(c);
                return r;
        }

        sreq.guest = e->rec.name;
        sreq.path = c->path;
        sreq.incremental = req->incremental;
        fwd.op_case = SVEMIG__API__REQUEST__OP_SNAPSHOT;
        fwd.snapshot = &sreq;
        r = vmm_forward_fd(d, call, e, &fwd, fd, snapshot_written, c, true, &f, err);
        if (r < 0) {
                snap_ctx_free(c);
                return r;
        }
        f->failed = snapshot_failed;
        return 0;
}

/* --- restore --- */

/* The file's name without its directory and .svemig. */
static int name_from_path(const char *path, char *name, size_t len, struct svemig_error *err)
{
        const char *base = strrchr(path, '/');
        size_t n;

        base = base ? base + 1 : path;
        n = strlen(base);
        if (n > strlen(SNAPSHOT_SUFFIX) && strcmp(base + n - strlen(SNAPSHOT_SUFFIX), SNAPSHOT_SUFFIX) == 0)
                n -= strlen(SNAPSHOT_SUFFIX);
        snprintf(name, len, "%.*s", (int)n, base);
        if (guest_name_check(name, NULL) < 0)
                return svemig_error_set(
                        err, EINVAL,
                        "%s does not make a guest name (letters, digits, '-', '_', '.'); give "
                        "one with --name",
                        base);
        return 0;
}

static void restored(struct svemigd *d, struct api_call *call, struct guest_entry *e,
                     const Svemig__Api__Response *resp, const char *why)
{
        Svemig__Api__Response out = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__Guest *g;
        bool start = e->start_when_ready;

        e->busy = NULL;
        admit_arrived(e);
        if (!resp || resp->status) {
                (void)guest_entry_delete(e, NULL, NULL);
                if (resp)
                        api_call_fail_status(call, resp->status);
                else if (strcmp(why, "cancelled") == 0)
                        api_call_fail(call, ECANCELED, "restore cancelled; no guest was created");
                else
                        api_call_fail(call, EIO, "restore failed: %s", why);
                return;
        }
        log_msg(LOG_INFO, LOG_CTX(.guest = e->rec.name, .op = "restore"), "restored guest %s from %s",
                e->rec.name, e->rec.restored_from);
        if (start) {
                Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
                Svemig__Api__GuestRef ref = SVEMIG__API__GUEST_REF__INIT;
                struct svemig_error err = {0};

                ref.name = e->rec.name;
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_RESUME;
                req.guest_resume = &ref;
                if (vmm_forward(d, call, e, &req, NULL, NULL, false, NULL, &err) < 0)
                        api_call_fail_error(call, -err.code, &err);
                return;
        }
        g = guest_msg_new(e, resp->result_case == SVEMIG__API__RESPONSE__RESULT_GUEST ? resp->guest : NULL);
        if (!g) {
                api_call_fail(call, ENOMEM, "svemigd is out of memory");
                return;
        }
        out.result_case = SVEMIG__API__RESPONSE__RESULT_RESTORED;
        out.restored = g;
        api_call_reply(call, &out);
        guest_msg_free(g);
}

/* A restore between its request and its VMM: while svemigd reads the snapshot's header (header-read.h). */
struct restore_ctx {
        struct svemigd *d;
        struct api_call *call;
        char name[GUEST_NAME_MAX + 1];
        char *path;
        int fd;
        bool start;
};

static void restore_ctx_free(struct restore_ctx *x)
{
        if (x->fd >= 0)
                close(x->fd);
        free(x->path);
        free(x);
}

/* The header is read: admitted by its memory, the guest gets its record and a VMM that restores it. */
static int restore_launch(struct restore_ctx *x, const struct svemig_stream_info *info,
                          struct svemig_error *err)
{
        struct svemigd *d = x->d;
        struct guest_record rec = {0};
        struct guest_entry *e;
        uint64_t bytes = 0;
        int r;

        if (api_call_cancelled(x->call))
                return svemig_error_set(err, ECANCELED, "restore cancelled; no guest was created");
        if (guest_registry_find(d->guests, x->name))
                return svemig_error_set(
                        err, EEXIST, "a guest named %s already exists; restore under another name (--name)",
                        x->name);
        /*
         * A URL's header is read by its VMM, which checks its memory against
         * what is available there; a file's is admitted here, before any VMM.
         */
        if (info) {
                for (size_t i = 0; i < info->n_slots; i++)
                        bytes += info->slots[i].size;
                r = admit_arriving(d, "restore of", x->name, bytes, err);
                if (r < 0)
                        return r;
        }
        /* vcpus and VL set come from the VMM, which reads the header again (restored()). */
        rec.state = GUEST_PAUSED;
        rec.memory_bytes = bytes;
        rec.created_ns = (uint64_t)time(NULL) * 1000000000ull;
        if (guest_record_set_str(&rec.name, x->name) < 0 ||
            guest_record_set_str(&rec.restored_from, x->path) < 0) {
                guest_record_done(&rec);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        r = guest_registry_add(d->guests, &rec, &e, err);
        guest_record_done(&rec);
        if (r < 0)
                return r;
        e->busy = "restore";
        e->busy_operation = api_call_operation(x->call);
        e->start_when_ready = x->start;
        e->arriving_bytes = bytes;
        r = x->fd >= 0 ? guest_launch(d, x->call, e, x->fd, -1, restored, err)
                       : guest_launch_url(d, x->call, e, x->path, restored, err);
        if (r < 0) {
                e->busy = NULL;
                (void)guest_entry_delete(e, NULL, NULL);
        }
        return r;
}

static void restore_header_read(void *userdata, int r, const struct svemig_error *herr,
                                const struct svemig_stream_info *info)
{
        struct restore_ctx *x = userdata;
        struct svemig_error err = {0};

        if (r < 0) {
                err = *herr;
                svemig_error_prefix(&err, "%s", x->path);
        } else {
                r = restore_launch(x, info, &err);
        }
        if (r < 0)
                api_call_fail_error(x->call, r, &err);
        restore_ctx_free(x);
}

int op_restore(struct api_call *call, const Svemig__Api__Request *request, void *userdata,
               struct svemig_error *err)
{
        const Svemig__Api__RestoreRequest *req = request->restore;
        struct svemigd *d = userdata;
        struct restore_ctx *x;
        char name[GUEST_NAME_MAX + 1];
        int r;

        if (!req->path || (req->path[0] != '/' && !store_is_remote(req->path)))
                return svemig_error_set(err, EINVAL, "give the snapshot's absolute path, or its URL");
        if (req->name && req->name[0]) {
                r = guest_name_check(req->name, err);
                if (r < 0)
                        return r;
                snprintf(name, sizeof(name), "%s", req->name);
        } else if ((r = name_from_path(req->path, name, sizeof(name), err)) < 0)
                return r;
        if (guest_registry_find(d->guests, name))
                return svemig_error_set(
                        err, EEXIST, "a guest named %s already exists; restore under another name (--name)",
                        name);
        x = calloc(1, sizeof(*x));
        if (!x || !(x->path = strdup(req->path))) {
                free(x);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        x->fd = -1;
        x->d = d;
        x->call = call;
        x->start = req->start;
        snprintf(x->name, sizeof(x->name), "%s", name);
        if (store_is_remote(req->path)) {
                struct store_conf sc;

                /* The VMM judges a URL's header with a ranged GET before any memory moves. */
                migrate_conf_store_conf(&d->conf, &sc);
                r = store_check_location(req->path, &sc, err);
                if (r == 0)
                        r = restore_launch(x, NULL, err);
                restore_ctx_free(x);
                return r;
        }
        r = client_file_take(call, "restore", req->path, CLIENT_FILE_READ, &x->fd, err);
        if (r == 0)
                r = header_read_start(d->event, x->fd, restore_header_read, x, err);
        if (r < 0)
                restore_ctx_free(x);
        return r;
}
