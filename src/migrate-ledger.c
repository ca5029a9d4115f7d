/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The destination's handoff outcomes. A migration is PENDING from its
 * Migrate request until either its COMMIT is taken (COMMITTED, the guest
 * started under the lock) or it is given up (ABORTED): a failure on its
 * connection, or a Resolve from a source that lost the ACK. Whichever comes
 * first decides, under one lock, so that a late COMMIT can never start a
 * guest the source was told to resume.
 *
 * Entries are never dropped: an answer must not change for as long as the
 * process that may run the guest lives, and an entry is a few bytes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "migrate-internal.h"

struct ledger_entry {
        uint8_t id[MIGRATE_ID_SIZE];
        enum ledger_state state;
};

struct migrate_ledger {
        pthread_mutex_t lock;
        struct ledger_entry *entries;
        size_t n, cap;
};

int migrate_ledger_new(struct migrate_ledger **out)
{
        struct migrate_ledger *l = calloc(1, sizeof(*l));

        if (!l)
                return -ENOMEM;
        pthread_mutex_init(&l->lock, NULL);
        *out = l;
        return 0;
}

void migrate_ledger_free(struct migrate_ledger *l)
{
        if (!l)
                return;
        pthread_mutex_destroy(&l->lock);
        free(l->entries);
        free(l);
}

static struct ledger_entry *find(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE])
{
        for (size_t i = 0; i < l->n; i++)
                if (memcmp(l->entries[i].id, id, MIGRATE_ID_SIZE) == 0)
                        return &l->entries[i];
        return NULL;
}

static struct ledger_entry *add(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                                enum ledger_state state)
{
        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 16;
                struct ledger_entry *e = realloc(l->entries, cap * sizeof(*e));

                if (!e)
                        return NULL;
                l->entries = e;
                l->cap = cap;
        }
        memcpy(l->entries[l->n].id, id, MIGRATE_ID_SIZE);
        l->entries[l->n].state = state;
        return &l->entries[l->n++];
}

int ledger_begin(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE])
{
        int r = 0;

        pthread_mutex_lock(&l->lock);
        if (find(l, id))
                r = -EEXIST;
        else if (!add(l, id, LEDGER_PENDING))
                r = -ENOMEM;
        pthread_mutex_unlock(&l->lock);
        return r;
}

enum ledger_state ledger_commit(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                                int (*commit)(void *userdata), void *userdata)
{
        struct ledger_entry *e;
        enum ledger_state s;

        pthread_mutex_lock(&l->lock);
        e = find(l, id);
        if (e && e->state == LEDGER_PENDING)
                e->state = commit(userdata) == 0 ? LEDGER_COMMITTED : LEDGER_ABORTED;
        s = e ? e->state : LEDGER_UNKNOWN;
        pthread_mutex_unlock(&l->lock);
        return s;
}

enum ledger_state ledger_abort(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE])
{
        struct ledger_entry *e;
        enum ledger_state s;

        pthread_mutex_lock(&l->lock);
        e = find(l, id);
        if (e && e->state == LEDGER_PENDING)
                e->state = LEDGER_ABORTED;
        s = e ? e->state : LEDGER_UNKNOWN;
        pthread_mutex_unlock(&l->lock);
        return s;
}

enum ledger_state ledger_resolve(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE])
{
        struct ledger_entry *e;
        enum ledger_state s;

        pthread_mutex_lock(&l->lock);
        e = find(l, id);
        if (!e)
                /* Never seen here (or this process restarted): nothing of it runs here, and never will. */
                e = add(l, id, LEDGER_ABORTED);
        else if (e->state == LEDGER_PENDING)
                e->state = LEDGER_ABORTED;
        s = e ? e->state : LEDGER_ABORTED;
        pthread_mutex_unlock(&l->lock);
        return s;
}
