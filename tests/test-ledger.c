/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The destination's durable ledger (src/migrate/ledger.c): two handles on one
 * directory stand for svemigd's listener and a receiving VMM, which must
 * agree on every migration's outcome, keep it across a restart, and never
 * let a COMMIT win after a Resolve (docs/migration.md, "The ledger").
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrate/ledger.h"
#include "migrate/wire.h"
#include "svemig/migrate.h"

struct fixture {
        char dir[64];
        struct migrate_ledger *listener, *vmm;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct svemig_error err = {0};

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/svemig-ledger-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        assert_int_equal(migrate_ledger_open(f->dir, &f->listener, &err), 0);
        assert_int_equal(migrate_ledger_open(f->dir, &f->vmm, &err), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char cmd[128];

        migrate_ledger_free(f->listener);
        migrate_ledger_free(f->vmm);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static void make_id(uint8_t id[MIGRATE_ID_SIZE], uint8_t seed)
{
        for (unsigned i = 0; i < MIGRATE_ID_SIZE; i++)
                id[i] = (uint8_t)(seed * 31u + i);
}

static enum migrate_ledger_state state_of(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE])
{
        enum migrate_ledger_state s = MIGRATE_LEDGER_UNKNOWN;
        struct svemig_error err = {0};

        assert_int_equal(migrate_ledger_get(l, id, &s, &err), 0);
        return s;
}

struct start {
        const char *dir;
        int result;
        unsigned calls;
        bool lock_was_held;
};

/* The receiver's start: it must run holding the ledger's lock, as another process sees it. */
static int start_guest(void *userdata)
{
        struct start *s = userdata;
        char path[128];
        int fd;

        s->calls++;
        snprintf(path, sizeof(path), "%s/.lock", s->dir);
        fd = open(path, O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        s->lock_was_held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
        close(fd);
        return s->result;
}

static void test_commit_is_seen_by_the_other_handle(void **state)
{
        struct fixture *f = *state;
        struct start s = {.dir = f->dir};
        uint8_t id[MIGRATE_ID_SIZE];

        make_id(id, 1);
        assert_int_equal(state_of(f->listener, id), MIGRATE_LEDGER_UNKNOWN);
        assert_int_equal(ledger_begin(f->vmm, id), 0);
        assert_int_equal(ledger_begin(f->vmm, id), -EEXIST);
        assert_int_equal(state_of(f->listener, id), MIGRATE_LEDGER_PENDING);

        assert_int_equal(ledger_commit(f->vmm, id, start_guest, &s), MIGRATE_LEDGER_COMMITTED);
        assert_int_equal(s.calls, 1);
        assert_true(s.lock_was_held);
        /* A Resolve after the COMMIT won is told so, and changes nothing. */
        assert_int_equal(ledger_resolve(f->listener, id), MIGRATE_LEDGER_COMMITTED);
        assert_int_equal(state_of(f->vmm, id), MIGRATE_LEDGER_COMMITTED);
        /* A second COMMIT does not start a second copy. */
        assert_int_equal(ledger_commit(f->vmm, id, start_guest, &s), MIGRATE_LEDGER_COMMITTED);
        assert_int_equal(s.calls, 1);
}

static void test_resolve_first_means_commit_loses(void **state)
{
        struct fixture *f = *state;
        struct start s = {.dir = f->dir};
        uint8_t id[MIGRATE_ID_SIZE];

        make_id(id, 2);
        assert_int_equal(ledger_begin(f->vmm, id), 0);
        assert_int_equal(ledger_resolve(f->listener, id), MIGRATE_LEDGER_ABORTED);
        assert_int_equal(ledger_commit(f->vmm, id, start_guest, &s), MIGRATE_LEDGER_ABORTED);
        assert_int_equal(s.calls, 0);
        assert_int_equal(state_of(f->vmm, id), MIGRATE_LEDGER_ABORTED);

        /* An id never seen is recorded as aborted, so its COMMIT can never win later. */
        make_id(id, 3);
        assert_int_equal(ledger_resolve(f->listener, id), MIGRATE_LEDGER_ABORTED);
        assert_int_equal(ledger_begin(f->vmm, id), -EEXIST);
        assert_int_equal(ledger_commit(f->vmm, id, start_guest, &s), MIGRATE_LEDGER_ABORTED);
        assert_int_equal(s.calls, 0);
}

static void test_failed_start_aborts(void **state)
{
        struct fixture *f = *state;
        struct start s = {.dir = f->dir, .result = -ENOMEM};
        enum migrate_ledger_state out;
        struct svemig_error err = {0};
        uint8_t id[MIGRATE_ID_SIZE];

        make_id(id, 4);
        assert_int_equal(ledger_begin(f->vmm, id), 0);
        assert_int_equal(ledger_commit(f->vmm, id, start_guest, &s), MIGRATE_LEDGER_ABORTED);
        assert_int_equal(s.calls, 1);
        assert_int_equal(ledger_resolve(f->listener, id), MIGRATE_LEDGER_ABORTED);

        /* A receiver known to be gone: svemigd gives its pending entry up. */
        make_id(id, 5);
        assert_int_equal(ledger_begin(f->vmm, id), 0);
        assert_int_equal(migrate_ledger_give_up(f->listener, id, &out, &err), 0);
        assert_int_equal(out, MIGRATE_LEDGER_ABORTED);
        assert_int_equal(ledger_abort(f->vmm, id), MIGRATE_LEDGER_ABORTED);
}

static void test_outcomes_outlive_the_processes(void **state)
{
        struct fixture *f = *state;
        struct start s = {.dir = f->dir};
        struct svemig_error err = {0};
        uint8_t committed[MIGRATE_ID_SIZE], aborted[MIGRATE_ID_SIZE], pending[MIGRATE_ID_SIZE];
        unsigned pruned = 99;

        make_id(committed, 6);
        make_id(aborted, 7);
        make_id(pending, 8);
        assert_int_equal(ledger_begin(f->vmm, committed), 0);
        assert_int_equal(ledger_commit(f->vmm, committed, start_guest, &s), MIGRATE_LEDGER_COMMITTED);
        assert_int_equal(ledger_begin(f->vmm, aborted), 0);
        assert_int_equal(ledger_abort(f->vmm, aborted), MIGRATE_LEDGER_ABORTED);
        assert_int_equal(ledger_begin(f->vmm, pending), 0);

        /* Both "processes" restart. */
        migrate_ledger_free(f->listener);
        migrate_ledger_free(f->vmm);
        f->vmm = NULL;
        assert_int_equal(migrate_ledger_open(f->dir, &f->listener, &err), 0);
        assert_int_equal(state_of(f->listener, committed), MIGRATE_LEDGER_COMMITTED);
        assert_int_equal(state_of(f->listener, aborted), MIGRATE_LEDGER_ABORTED);
        assert_int_equal(state_of(f->listener, pending), MIGRATE_LEDGER_PENDING);

        /* Pruning everything old: aborted goes, committed is kept (folded), pending stays. */
        assert_int_equal(migrate_ledger_prune(f->listener, 0, &pruned, &err), 0);
        assert_int_equal(pruned, 2);
        assert_int_equal(state_of(f->listener, aborted), MIGRATE_LEDGER_UNKNOWN);
        assert_int_equal(state_of(f->listener, committed), MIGRATE_LEDGER_COMMITTED);
        assert_int_equal(state_of(f->listener, pending), MIGRATE_LEDGER_PENDING);
        assert_int_equal(ledger_resolve(f->listener, committed), MIGRATE_LEDGER_COMMITTED);
        assert_int_equal(ledger_resolve(f->listener, aborted), MIGRATE_LEDGER_ABORTED);
        assert_int_equal(ledger_resolve(f->listener, pending), MIGRATE_LEDGER_ABORTED);
        assert_int_equal(migrate_ledger_open(f->dir, &f->vmm, &err), 0);
}

/* Writes text as the committed list, as a cut-short write or a hand edit could leave it. */
static void put_committed(const struct fixture *f, const char *text)
{
        char path[128];
        int fd;

        snprintf(path, sizeof(path), "%s/committed", f->dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
}

/*
 * A commit folded into a committed list whose last line was left unended
 * stays COMMITTED (it used to be glued to that line and forgotten: a source
 * in doubt would then resume a guest that runs here; found by fuzz-ledger),
 * and neither a piece of a long line nor a longer line counts as an entry.
 */
static void test_committed_list_damaged(void **state)
{
        struct fixture *f = *state;
        struct start s = {.dir = f->dir};
        struct svemig_error err = {0};
        uint8_t id[MIGRATE_ID_SIZE], other[MIGRATE_ID_SIZE];
        char hex[MIGRATE_ID_HEX_SIZE], text[256];
        unsigned pruned = 0;

        make_id(id, 10);
        put_committed(f, "5e11"); /* cut short */
        assert_int_equal(ledger_begin(f->vmm, id), 0);
        assert_int_equal(ledger_commit(f->vmm, id, start_guest, &s), MIGRATE_LEDGER_COMMITTED);
        assert_int_equal(migrate_ledger_prune(f->listener, 0, &pruned, &err), 0);
        assert_int_equal(pruned, 1);
        assert_int_equal(state_of(f->listener, id), MIGRATE_LEDGER_COMMITTED);
        assert_int_equal(ledger_resolve(f->listener, id), MIGRATE_LEDGER_COMMITTED);

        make_id(other, 11);
        migrate_id_format(other, hex);
        /* 39 bytes before it: the old reader's 40-byte pieces made the id a line of its own. */
        snprintf(text, sizeof(text), "5e11\n%039d%s\n%sff\n", 0, hex, hex);
        put_committed(f, text);
        assert_int_equal(state_of(f->listener, other), MIGRATE_LEDGER_UNKNOWN);
}

static void test_bad_directory_and_ids(void **state)
{
        struct fixture *f = *state;
        struct migrate_ledger *l = NULL;
        struct svemig_error err = {0};
        char path[128], hex[MIGRATE_ID_HEX_SIZE];
        uint8_t id[MIGRATE_ID_SIZE], back[MIGRATE_ID_SIZE];
        int fd;

        snprintf(path, sizeof(path), "%s/a-file", f->dir);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_true(migrate_ledger_open(path, &l, &err) < 0);
        assert_null(l);
        assert_non_null(strstr(err.msg, path));

        make_id(id, 9);
        migrate_id_format(id, hex);
        assert_int_equal(strlen(hex), 2 * MIGRATE_ID_SIZE);
        assert_int_equal(migrate_id_parse(hex, back), 0);
        assert_memory_equal(id, back, MIGRATE_ID_SIZE);
        hex[5] = 'g';
        assert_int_equal(migrate_id_parse(hex, back), -EINVAL);
        assert_int_equal(migrate_id_parse("00", back), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_commit_is_seen_by_the_other_handle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_resolve_first_means_commit_loses, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_start_aborts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_outcomes_outlive_the_processes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_committed_list_damaged, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_directory_and_ids, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
