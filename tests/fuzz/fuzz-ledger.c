/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the migration ledger's files (src/migrate/ledger.c):
 * what another process, an older svemig or a damaged disk left in the
 * ledger's directory. The input is
 *
 *     u8 actions | u16 LE n | n bytes: the entry of migration ID_A | the rest: the committed list
 *
 * The harness writes those two files, opens the ledger on the directory and
 * runs what a destination and a Resolve do: get, begin, commit or abort or
 * resolve (by the actions' bits), a get of ID_B (in the committed list of
 * the seeds), prune. Bad files must read as an error or a state, never
 * crash; and a migration the ledger once said COMMITTED must stay COMMITTED
 * whatever follows (a source told so has let its guest go).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz-util.h"
#include "migrate/ledger.h"

static const uint8_t id_a[MIGRATE_ID_SIZE] = {0x5e, 0x11, 0x0a, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa1};
static const uint8_t id_b[MIGRATE_ID_SIZE] = {0x5e, 0x11, 0x0b, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb2};

/* In memory where there is a tmpfs: the fsyncs of every write then cost nothing. */
static char dir[64];
static bool made;

static void empty_dir(void)
{
        DIR *d = opendir(dir);

        if (!d)
                abort();
        for (struct dirent *de; (de = readdir(d));)
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        (void)unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
}

static void cleanup(void)
{
        empty_dir();
        rmdir(dir);
}

static void put(const char *name, const uint8_t *data, size_t size)
{
        char path[sizeof(dir) + 64];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                abort();
        fuzz_write_all(fd, data, size);
        close(fd);
}

static int start_ok(void *userdata)
{
        return 0;
}

static int start_fails(void *userdata)
{
        return -EIO;
}

/* Once COMMITTED, always COMMITTED. */
static void check_kept(struct migrate_ledger *l, const uint8_t *id, bool committed, const char *when)
{
        enum migrate_ledger_state s;
        struct svemig_error err = {0};

        if (!committed || migrate_ledger_get(l, id, &s, &err) < 0)
                return;
        if (s != MIGRATE_LEDGER_COMMITTED) {
                fprintf(stderr, "fuzz-ledger: a COMMITTED migration reads as %d %s\n", (int)s, when);
                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char hex[MIGRATE_ID_HEX_SIZE];
        struct migrate_ledger *l;
        struct svemig_error err = {0};
        enum migrate_ledger_state s = MIGRATE_LEDGER_UNKNOWN, sb = MIGRATE_LEDGER_UNKNOWN;
        bool a_committed, b_committed;
        unsigned actions, pruned;
        size_t n;

        if (size < 3)
                return 0;
        if (!made) {
                snprintf(dir, sizeof(dir), "%s/svemig-fuzz-ledger-XXXXXX",
                         access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
                if (!mkdtemp(dir))
                        abort();
                made = true;
                atexit(cleanup);
        }
        actions = data[0];
        n = (size_t)data[1] | (size_t)data[2] << 8;
        data += 3;
        size -= 3;
        n = n < size ? n : size;
        migrate_id_format(id_a, hex);
        put(hex, data, n);
        put("committed", data + n, size - n);

        if (migrate_ledger_open(dir, &l, &err) < 0) {
                fprintf(stderr, "fuzz-ledger: %s\n", err.msg);
                abort();
        }
        (void)migrate_ledger_get(l, id_a, &s, &err);
        (void)migrate_ledger_get(l, id_b, &sb, &err);
        a_committed = s == MIGRATE_LEDGER_COMMITTED;
        b_committed = sb == MIGRATE_LEDGER_COMMITTED;
        if (actions & 1)
                (void)ledger_begin(l, id_a);
        switch ((actions >> 1) & 3) {
        case 0:
                s = ledger_commit(l, id_a, actions & 8 ? start_fails : start_ok, NULL);
                break;
        case 1:
                s = ledger_abort(l, id_a);
                break;
        case 2:
                s = ledger_resolve(l, id_a);
                break;
        default:
                (void)migrate_ledger_give_up(l, id_a, &s, &err);
                break;
        }
        if (a_committed && s != MIGRATE_LEDGER_COMMITTED) {
                fprintf(stderr, "fuzz-ledger: a COMMITTED migration was decided again as %d\n", (int)s);
                abort();
        }
        a_committed |= s == MIGRATE_LEDGER_COMMITTED;
        check_kept(l, id_a, a_committed, "after its decision");
        if (actions & 16)
                (void)ledger_resolve(l, id_b);
        /* Everything is old enough to go: the prune's worst case. */
        if (migrate_ledger_prune(l, 0, &pruned, &err) < 0) {
                fprintf(stderr, "fuzz-ledger: prune: %s\n", err.msg);
                abort();
        }
        check_kept(l, id_a, a_committed, "after a prune");
        check_kept(l, id_b, b_committed, "after a prune");
        migrate_ledger_free(l);
        empty_dir();
        return 0;
}
