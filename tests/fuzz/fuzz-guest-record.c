/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for guest.json: any bytes, read by guest_record_load()
 * as a restarted svemigd reads <state>/guests/<name>/guest.json. A bad
 * record must be refused with a reason, never crash or leak. A record that
 * loads is saved (as svemigd rewrites it) and must load again as the same
 * record.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "guest-record.h"

/* In memory where there is a tmpfs: the fsyncs of every write then cost nothing. */
static char dir[64];
static char saved[sizeof(dir) + 16];

static void cleanup(void)
{
        unlink(saved);
        rmdir(dir);
}

static bool str_equal(const char *a, const char *b)
{
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool record_equal(const struct guest_record *a, const struct guest_record *b)
{
        if (!str_equal(a->name, b->name) || a->vcpus != b->vcpus || a->memory_bytes != b->memory_bytes ||
            !vqset_equal(&a->vls, &b->vls) || a->cluster != b->cluster ||
            a->dirty_pages_per_step != b->dirty_pages_per_step || a->state != b->state ||
            a->steps != b->steps || a->vmm_pid != b->vmm_pid || !str_equal(a->vmm_socket, b->vmm_socket) ||
            !str_equal(a->reason, b->reason) || !str_equal(a->restored_from, b->restored_from) ||
            !str_equal(a->incoming_migration, b->incoming_migration) || !str_equal(a->payload, b->payload) ||
            a->created_ns != b->created_ns || a->n_snapshots != b->n_snapshots)
                return false;
        for (size_t i = 0; i < a->n_snapshots; i++)
                if (!str_equal(a->snapshots[i].path, b->snapshots[i].path) ||
                    a->snapshots[i].created_ns != b->snapshots[i].created_ns ||
                    a->snapshots[i].bytes != b->snapshots[i].bytes ||
                    a->snapshots[i].steps != b->snapshots[i].steps)
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct guest_record rec, again;
        struct svemig_error err = {0};
        char path[64];
        int fd = fuzz_memfd(data, size);

        if (!saved[0]) {
                snprintf(dir, sizeof(dir), "%s/svemig-fuzz-guest-record-XXXXXX",
                         access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
                if (!mkdtemp(dir))
                        abort();
                snprintf(saved, sizeof(saved), "%s/guest.json", dir);
                atexit(cleanup);
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if (guest_record_load(path, &rec, &err) < 0) {
                if (err.code <= 0 || !err.msg[0])
                        abort();
                close(fd);
                return 0;
        }
        if (guest_record_save(&rec, saved, &err) < 0) {
                fprintf(stderr, "fuzz-guest-record: cannot save: %s\n", err.msg);
                abort();
        }
        if (guest_record_load(saved, &again, &err) < 0) {
                fprintf(stderr, "fuzz-guest-record: a saved record does not load: %s\n", err.msg);
                abort();
        }
        if (!record_equal(&rec, &again)) {
                fprintf(stderr, "fuzz-guest-record: saved and loaded again, the record differs\n");
                abort();
        }
        guest_record_done(&rec);
        guest_record_done(&again);
        close(fd);
        return 0;
}
