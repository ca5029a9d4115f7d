/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The destination's handoff outcomes. A migration is PENDING from its
 * Migrate request until either its COMMIT is taken (COMMITTED, the guest
 * started under the lock) or it is given up (ABORTED): a failure on its
 * connection, or a Resolve from a source that lost the ACK. Whichever comes
 * first decides, under one lock, so that a late COMMIT can never start a
 * guest the source was told to resume.
 *
 * Two kinds, one set of rules:
 *
 * - migrate_ledger_new(): in memory, for one process (the engine's tests).
 *
 * - migrate_ledger_open(DIR): on disk, shared by every process of a host
 *   (svemigd's peer listener answers Resolve, each receiving VMM commits)
 *   and outliving them all. One small file per migration id, DIR/<hex id>,
 *   holding its state and when it was last changed. Every decision is made
 *   holding flock(DIR/.lock) (an open file description of its own per
 *   decision, so threads of one process exclude each other too), and every
 *   change is written to a temporary file renamed over the entry: a reader
 *   sees the old state or the new one, and a state once answered outlives
 *   every process (not an OS crash, which takes the guests too: dir_store()).
 *
 * What may be forgotten (migrate_ledger_prune()): an ABORTED entry, at any
 *   time, since an unknown id is answered ABORTED anyway and a COMMIT needs a
 *   PENDING entry to win. A COMMITTED entry is never forgotten (a source left
 *   in doubt may ask at any later time, and must not be told to resume):
 *   once old it is folded into DIR/committed, 33 bytes a line. A PENDING entry
 *   is never pruned: its receiver or a Resolve decides it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "migrate/ledger.h"

#define LOCK_FILE      ".lock"
#define COMMITTED_FILE "committed"
#define ENTRY_MAGIC    "svemig-ledger 1\n"
#define HEX_ID_LEN     (2 * MIGRATE_ID_SIZE)

struct ledger_entry {
        uint8_t id[MIGRATE_ID_SIZE];
        enum migrate_ledger_state state;
};

struct migrate_ledger {
        pthread_mutex_t lock;
        /* In memory: */
        struct ledger_entry *entries;
        size_t n, cap;
        /* On disk: */
        char *dir;
        int dir_fd;
};

static const char *const state_names[] = {
        [MIGRATE_LEDGER_UNKNOWN] = "unknown",
        [MIGRATE_LEDGER_PENDING] = "pending",
        [MIGRATE_LEDGER_COMMITTED] = "committed",
        [MIGRATE_LEDGER_ABORTED] = "aborted",
};

void migrate_id_format(const uint8_t id[MIGRATE_ID_SIZE], char out[MIGRATE_ID_HEX_SIZE])
{
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < MIGRATE_ID_SIZE; i++) {
                out[2 * i] = hex[id[i] >> 4];
                out[2 * i + 1] = hex[id[i] & 0xf];
        }
        out[HEX_ID_LEN] = 0;
}

static int hex_digit(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

int migrate_id_parse(const char *s, uint8_t id[MIGRATE_ID_SIZE])
{
        if (!s || strlen(s) != HEX_ID_LEN)
                return -EINVAL;
        for (size_t i = 0; i < MIGRATE_ID_SIZE; i++) {
                int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EINVAL;
                id[i] = (uint8_t)(hi << 4 | lo);
        }
        return 0;
}

/* ---- Creating ---- */

int migrate_ledger_new(struct migrate_ledger **out)
{
        struct migrate_ledger *l = calloc(1, sizeof(*l));

        if (!l)
                return -ENOMEM;
        pthread_mutex_init(&l->lock, NULL);
        l->dir_fd = -1;
        *out = l;
        return 0;
}

int migrate_ledger_open(const char *dir, struct migrate_ledger **out, struct svemig_error *err)
{
        struct migrate_ledger *l;
        int r;

        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return svemig_error_set(err, errno, "cannot create the migration ledger %s: %s", dir,
                                        strerror(errno));
        r = migrate_ledger_new(&l);
        if (r < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        l->dir = strdup(dir);
        l->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (!l->dir || l->dir_fd < 0) {
                r = l->dir ? -errno : -ENOMEM;
                migrate_ledger_free(l);
                return svemig_error_set(err, -r, "cannot open the migration ledger %s: %s", dir,
                                        strerror(-r));
        }
        *out = l;
        return 0;
}

void migrate_ledger_free(struct migrate_ledger *l)
{
        if (!l)
                return;
        pthread_mutex_destroy(&l->lock);
        free(l->entries);
        if (l->dir_fd >= 0)
                close(l->dir_fd);
        free(l->dir);
        free(l);
}

/* ---- In memory ---- */

static struct ledger_entry *mem_find(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE])
{
        for (size_t i = 0; i < l->n; i++)
                if (memcmp(l->entries[i].id, id, MIGRATE_ID_SIZE) == 0)
                        return &l->entries[i];
        return NULL;
}

static int mem_store(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                     enum migrate_ledger_state state)
{
        struct ledger_entry *e = mem_find(l, id);

        if (!e) {
                if (l->n == l->cap) {
                        size_t cap = l->cap ? 2 * l->cap : 16;

                        e = realloc(l->entries, cap * sizeof(*e));
                        if (!e)
                                return -ENOMEM;
                        l->entries = e;
                        l->cap = cap;
                }
                e = &l->entries[l->n++];
                memcpy(e->id, id, MIGRATE_ID_SIZE);
        }
        e->state = state;
        return 0;
}

/* ---- On disk ---- */

static int parse_state(const char *text, enum migrate_ledger_state *out, uint64_t *when)
{
        const char *s;

        if (strncmp(text, ENTRY_MAGIC, strlen(ENTRY_MAGIC)) != 0 || !(s = strstr(text, "\nstate=")))
                return -EBADMSG;
        s += strlen("\nstate=");
        for (int i = MIGRATE_LEDGER_PENDING; i <= MIGRATE_LEDGER_ABORTED; i++) {
                size_t n = strlen(state_names[i]);

                if (strncmp(s, state_names[i], n) == 0 && s[n] == '\n') {
                        const char *t = strstr(text, "\ntime=");

                        *out = (enum migrate_ledger_state)i;
                        if (when)
                                *when = t ? strtoull(t + strlen("\ntime="), NULL, 10) : 0;
                        return 0;
                }
        }
        return -EBADMSG;
}

/* The entry's own file: its state, or MIGRATE_LEDGER_UNKNOWN without one. */
static int file_load(struct migrate_ledger *l, const char *name, enum migrate_ledger_state *out,
                     uint64_t *when)
{
        char buf[256];
        _cleanup_close_ int fd = openat(l->dir_fd, name, O_RDONLY | O_CLOEXEC);
        ssize_t k;

        *out = MIGRATE_LEDGER_UNKNOWN;
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        k = read(fd, buf, sizeof(buf) - 1);
        if (k < 0)
                return -errno;
        buf[k] = 0;
        return parse_state(buf, out, when);
}

/*
 * Whether id was folded into the committed list by a prune: a line that is
 * exactly its hex id. Whole lines, however long: a piece of a longer line
 * is not an entry.
 */
static int committed_list_has(struct migrate_ledger *l, const char *hex)
{
        _cleanup_close_ int fd = openat(l->dir_fd, COMMITTED_FILE, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        ssize_t n;
        FILE *f;
        int found = 0;

        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        f = fdopen(fd, "r");
        if (!f)
                return -errno;
        fd = -1;
        while (!found && (n = getline(&line, &size, f)) >= 0)
                found = (n == HEX_ID_LEN || (n == HEX_ID_LEN + 1 && line[HEX_ID_LEN] == '\n')) &&
                        strncmp(line, hex, HEX_ID_LEN) == 0;
        fclose(f);
        return found;
}

static int dir_load(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                    enum migrate_ledger_state *out)
{
        char hex[MIGRATE_ID_HEX_SIZE];
        int r;

        migrate_id_format(id, hex);
        r = file_load(l, hex, out, NULL);
        if (r < 0 || *out != MIGRATE_LEDGER_UNKNOWN)
                return r;
        r = committed_list_has(l, hex);
        if (r > 0)
                *out = MIGRATE_LEDGER_COMMITTED;
        return r < 0 ? r : 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;

        while (len) {
                ssize_t k = write(fd, p, len);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                p += k;
                len -= (size_t)k;
        }
        return 0;
}

/*
 * Temporary file, renamed over the entry: every process sees the old state
 * or the new one, never half. Not fsync'd, and on purpose: this write sits
 * in the guest's downtime (COMMITTED is recorded before the ACK), where two
 * fsyncs cost 1 to 35 ms on a loaded host, and durability beyond the
 * processes buys nothing here. Every entry governs a guest that lives in
 * this host's memory: an OS crash that could lose the entry takes that
 * guest with it, and the entry lost is answered ABORTED, which is then the
 * truth (the source resumes its copy). Process deaths, the failures the
 * ledger is for, keep the page cache.
 */
static int dir_store(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                     enum migrate_ledger_state state)
{
        char hex[MIGRATE_ID_HEX_SIZE], tmp[HEX_ID_LEN + 8], text[128];
        int fd, n, r;

        migrate_id_format(id, hex);
        snprintf(tmp, sizeof(tmp), ".%s.tmp", hex);
        n = snprintf(text, sizeof(text), ENTRY_MAGIC "state=%s\ntime=%llu\n", state_names[state],
                     (unsigned long long)time(NULL));
        fd = openat(l->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        r = write_all(fd, text, (size_t)n);
        close(fd);
        if (r == 0 && renameat(l->dir_fd, tmp, l->dir_fd, hex) < 0)
                r = -errno;
        if (r < 0)
                (void)unlinkat(l->dir_fd, tmp, 0);
        return r;
}

/* ---- Both ---- */

/* Holds the ledger: the mutex, and on disk the flock. Returns the lock's fd (or -1 in memory), -errno. */
static int ledger_lock(struct migrate_ledger *l)
{
        int fd;

        pthread_mutex_lock(&l->lock);
        if (!l->dir)
                return -1;
        fd = openat(l->dir_fd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
                int r = -errno;

                pthread_mutex_unlock(&l->lock);
                return r;
        }
        while (flock(fd, LOCK_EX) < 0)
                if (errno != EINTR) {
                        int r = -errno;

                        close(fd);
                        pthread_mutex_unlock(&l->lock);
                        return r;
                }
        return fd;
}

static void ledger_unlock(struct migrate_ledger *l, int fd)
{
        if (fd >= 0)
                close(fd); /* drops the flock */
        pthread_mutex_unlock(&l->lock);
}

static bool lock_failed(struct migrate_ledger *l, int fd)
{
        return l->dir && fd < 0;
}

static int load(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE], enum migrate_ledger_state *out)
{
        struct ledger_entry *e;

        if (l->dir)
                return dir_load(l, id, out);
        e = mem_find(l, id);
        *out = e ? e->state : MIGRATE_LEDGER_UNKNOWN;
        return 0;
}

static int store(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                 enum migrate_ledger_state state)
{
        return l->dir ? dir_store(l, id, state) : mem_store(l, id, state);
}

int ledger_begin(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE])
{
        enum migrate_ledger_state s;
        int fd = ledger_lock(l), r;

        if (lock_failed(l, fd))
                return fd;
        r = load(l, id, &s);
        if (r == 0 && s != MIGRATE_LEDGER_UNKNOWN)
                r = -EEXIST;
        if (r == 0)
                r = store(l, id, MIGRATE_LEDGER_PENDING);
        ledger_unlock(l, fd);
        return r;
}

enum migrate_ledger_state ledger_commit(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                                        int (*commit)(void *userdata), void *userdata)
{
        enum migrate_ledger_state s = MIGRATE_LEDGER_ABORTED;
        int fd = ledger_lock(l);

        if (lock_failed(l, fd))
                return MIGRATE_LEDGER_ABORTED; /* nothing started: the entry stays pending, a Resolve aborts
                                                  it */
        if (load(l, id, &s) < 0)
                s = MIGRATE_LEDGER_ABORTED;
        else if (s == MIGRATE_LEDGER_PENDING) {
                /*
                 * Started first, recorded after: a process killed in between
                 * takes the guest with it and leaves the entry pending, which a
                 * Resolve makes ABORTED, so the source resumes. If the record
                 * cannot be written the caller discards the guest it started.
                 */
                if (commit(userdata) == 0 && store(l, id, MIGRATE_LEDGER_COMMITTED) == 0)
                        s = MIGRATE_LEDGER_COMMITTED;
                else {
                        (void)store(l, id, MIGRATE_LEDGER_ABORTED);
                        s = MIGRATE_LEDGER_ABORTED;
                }
        } else if (s == MIGRATE_LEDGER_UNKNOWN)
                s = MIGRATE_LEDGER_ABORTED; /* pruned as aborted, or never begun: no COMMIT wins */
        ledger_unlock(l, fd);
        return s;
}

/* PENDING (and with 'unknown_too', UNKNOWN) -> ABORTED; MIGRATE_LEDGER_UNKNOWN when that cannot be recorded.
 */
static enum migrate_ledger_state give_up(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                                         bool unknown_too)
{
        enum migrate_ledger_state s = MIGRATE_LEDGER_UNKNOWN;
        int fd = ledger_lock(l);

        if (lock_failed(l, fd))
                return MIGRATE_LEDGER_UNKNOWN;
        if (load(l, id, &s) < 0)
                s = MIGRATE_LEDGER_UNKNOWN;
        else if (s == MIGRATE_LEDGER_PENDING || (s == MIGRATE_LEDGER_UNKNOWN && unknown_too))
                s = store(l, id, MIGRATE_LEDGER_ABORTED) == 0 ? MIGRATE_LEDGER_ABORTED
                                                              : MIGRATE_LEDGER_UNKNOWN;
        ledger_unlock(l, fd);
        return s;
}

enum migrate_ledger_state ledger_abort(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE])
{
        return give_up(l, id, false);
}

enum migrate_ledger_state ledger_resolve(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE])
{
        /* Never seen here (or pruned): nothing of it runs here, and now never will. */
        return give_up(l, id, true);
}

/* ---- For the daemons ---- */

int migrate_ledger_get(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                       enum migrate_ledger_state *out, struct svemig_error *err)
{
        enum migrate_ledger_state s = MIGRATE_LEDGER_UNKNOWN;
        int fd = ledger_lock(l), r;

        if (lock_failed(l, fd))
                return svemig_error_set(err, -fd, "cannot lock the migration ledger %s: %s", l->dir,
                                        strerror(-fd));
        r = load(l, id, &s);
        ledger_unlock(l, fd);
        if (r < 0)
                return svemig_error_set(err, -r, "cannot read the migration ledger %s: %s", l->dir,
                                        strerror(-r));
        *out = (enum migrate_ledger_state)s;
        return 0;
}

int migrate_ledger_give_up(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                           enum migrate_ledger_state *out, struct svemig_error *err)
{
        enum migrate_ledger_state s = give_up(l, id, true);

        if (s == MIGRATE_LEDGER_UNKNOWN)
                return svemig_error_set(err, EIO, "cannot record an outcome in the migration ledger %s",
                                        l->dir ? l->dir : "(in memory)");
        *out = (enum migrate_ledger_state)s;
        return 0;
}

static int committed_list_append(struct migrate_ledger *l, const char *hex)
{
        char line[HEX_ID_LEN + 3], last = '\n';
        _cleanup_close_ int fd =
                openat(l->dir_fd, COMMITTED_FILE, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        struct stat st;
        int r;

        if (fd < 0)
                return -errno;
        /* A last line left unended (a write cut short) must not swallow this one. */
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) != 1)
                return -EIO;
        snprintf(line, sizeof(line), "%s%s\n", last == '\n' ? "" : "\n", hex);
        r = write_all(fd, line, strlen(line));
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        return r;
}

static int prune_one(struct migrate_ledger *l, const char *name, uint64_t keep_s, uint64_t now)
{
        enum migrate_ledger_state s;
        uint64_t when = 0;
        uint8_t id[MIGRATE_ID_SIZE];
        int r;

        if (migrate_id_parse(name, id) < 0)
                return 0;
        r = file_load(l, name, &s, &when);
        if (r < 0 || s == MIGRATE_LEDGER_PENDING || when + keep_s > now)
                return 0;
        /* The fact that it committed stays, in 33 bytes, before its file goes. */
        if (s == MIGRATE_LEDGER_COMMITTED && committed_list_append(l, name) < 0)
                return 0;
        if (unlinkat(l->dir_fd, name, 0) < 0)
                return 0;
        return 1;
}

int migrate_ledger_prune(struct migrate_ledger *l, uint64_t keep_s, unsigned *pruned,
                         struct svemig_error *err)
{
        uint64_t now = (uint64_t)time(NULL);
        unsigned n = 0;
        DIR *d;
        int fd, dfd;

        if (pruned)
                *pruned = 0;
        if (!l->dir)
                return 0; /* in memory: it goes with its process */
        fd = ledger_lock(l);
        if (fd < 0)
                return svemig_error_set(err, -fd, "cannot lock the migration ledger %s: %s", l->dir,
                                        strerror(-fd));
        dfd = openat(l->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        d = dfd >= 0 ? fdopendir(dfd) : NULL;
        if (!d) {
                int r = -errno;

                if (dfd >= 0)
                        close(dfd);
                ledger_unlock(l, fd);
                return svemig_error_set(err, -r, "cannot read the migration ledger %s: %s", l->dir,
                                        strerror(-r));
        }
        for (struct dirent *de; (de = readdir(d));)
                n += (unsigned)prune_one(l, de->d_name, keep_s, now);
        closedir(d);
        if (n)
                (void)fsync(l->dir_fd);
        ledger_unlock(l, fd);
        if (pruned)
                *pruned = n;
        return 0;
}
