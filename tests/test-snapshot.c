/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Whole-guest snapshots through real files: equivalence across hosts,
 * refusals before memory is read, cancel and failure leaving nothing behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "macro.h"
#include "sim-util.h"
#include "svemig/guest.h"
#include "svemig/kvmreg.h"
#include "svemig/snapshot.h"

#define MEM (256 * HV_PAGE_SIZE)

static char dir[] = "/tmp/svemig-test-snapshot.XXXXXX";

static int setup(void **state)
{
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
        char cmd[256];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        return system(cmd);
}

static const char *path_of(const char *name)
{
        static char path[512];

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return path;
}

/* Temporary files left in the test directory: snapshot_save() names them "<file>.XXXXXX". */
static unsigned count_temporaries(void)
{
        DIR *d = opendir(dir);
        struct dirent *e;
        unsigned n = 0;

        while ((e = readdir(d)))
                n += strstr(e->d_name, ".svemig.") != NULL;
        closedir(d);
        return n;
}

static void run(struct guest *g, uint64_t steps)
{
        struct svemig_error err = {0};

        if (guest_run(g, steps, &err) < 0)
                fail_msg("run: %s", err.msg);
}

static void save(struct guest *g, const char *name)
{
        struct svemig_error err = {0};
        struct svemig_stream_stats stats;

        if (snapshot_save(g, path_of(name), NULL, &stats, &err) < 0)
                fail_msg("snapshot_save: %s", err.msg);
        assert_int_equal(stats.vcpus, guest_n_vcpus(g));
        assert_int_equal(stats.mem_pages, MEM / HV_PAGE_SIZE);
}

static void test_equivalence_through_file(void **state)
{
        struct hv *a = sim_host_open("128,256,512", NULL), *c = sim_host_open("128-512", NULL);
        struct guest *g = sim_guest_create(a, "128,256", 3, MEM, 5),
                     *unbroken = sim_guest_create(a, "128,256", 3, MEM, 5), *back;
        struct svemig_error err = {0};
        char diff[256] = "";
        bool equal;

        run(g, 400);
        save(g, "eq.svemig");
        if (snapshot_load(c, path_of("eq.svemig"), NULL, &back, &err) < 0)
                fail_msg("snapshot_load: %s", err.msg);
        run(back, 600);
        run(unbroken, 1000);
        assert_int_equal(guest_compare(back, unbroken, &equal, diff, sizeof(diff), &err), 0);
        if (!equal)
                fail_msg("400 steps + file + 600 steps differ from 1000 steps: %s", diff);
        /* The file is a finished product: no temporary was left beside it. */
        assert_int_equal(count_temporaries(), 0);

        guest_destroy(g);
        guest_destroy(unbroken);
        guest_destroy(back);
        hv_close(a);
        hv_close(c);
}

/* Pages of [p, p + size) the kernel backs (present or swapped), by /proc/self/pagemap. */
static uint64_t backed_pages(const uint8_t *p, uint64_t size)
{
        uint64_t n = 0, e;
        int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

        assert_true(fd >= 0);
        for (uint64_t off = 0; off < size; off += HV_PAGE_SIZE) {
                assert_int_equal(pread(fd, &e, sizeof(e), (off_t)((uintptr_t)(p + off) / HV_PAGE_SIZE * 8)),
                                 sizeof(e));
                n += (e >> 62) != 0;
        }
        close(fd);
        return n;
}

/*
 * A large guest that touched little: its snapshot reads only what it
 * touched (svemig_mem_range.anon_private), so the kernel backs no page of
 * it for the snapshot's sake. Reading them all, a 100 GiB guest's snapshot
 * was killed by the OOM killer at 22.7 GB. And it restores whole.
 */
static void test_untouched_memory_stays_untouched(void **state)
{
        const uint64_t mem = 256ull << 20;
        struct hv *hv = sim_host_open("128,256", NULL);
        struct guest *g = sim_guest_create(hv, "128,256", 1, mem, 4), *back, *unbroken;
        struct svemig_error err = {0};
        uint64_t before;
        char diff[256] = "";
        bool equal;

        if (sysconf(_SC_PAGESIZE) != HV_PAGE_SIZE)
                skip(); /* pagemap counts the kernel's pages */
        run(g, 10);
        before = backed_pages(guest_mem(g), mem);
        /* 40 pages written; with transparent huge pages, the 2 MiB around each. */
        assert_in_range(before, 1, mem / HV_PAGE_SIZE / 2);
        if (snapshot_save(g, path_of("sparse.svemig"), NULL, NULL, &err) < 0)
                fail_msg("snapshot_save: %s", err.msg);
        assert_int_equal(backed_pages(guest_mem(g), mem), before);
        if (snapshot_load(hv, path_of("sparse.svemig"), NULL, &back, &err) < 0)
                fail_msg("snapshot_load: %s", err.msg);
        unbroken = sim_guest_create(hv, "128,256", 1, mem, 4);
        run(unbroken, 10);
        assert_int_equal(guest_compare(back, unbroken, &equal, diff, sizeof(diff), &err), 0);
        if (!equal)
                fail_msg("the restored sparse guest differs: %s", diff);
        guest_destroy(g);
        guest_destroy(back);
        guest_destroy(unbroken);
        hv_close(hv);
}

/*
 * docs/stream-format.md lets VCPU and MEMORY frames come in any order; a
 * stream with its vcpus between two halves of memory passed verify but
 * failed restore ("a vcpu frame after guest memory"). It restores now.
 */
static void test_vcpus_after_memory(void **state)
{
        struct hv *a = sim_host_open("128,256,512", NULL), *c = sim_host_open("128-512", NULL);
        struct guest *g = sim_guest_create(a, "128,256", 2, MEM, 5),
                     *unbroken = sim_guest_create(a, "128,256", 2, MEM, 5), *back;
        struct svemig_stream_writer *w = NULL;
        struct svemig_error err = {0};
        struct snapshot_header hdr;
        struct vcpu_state *states;
        char diff[256] = "";
        bool equal;
        int fd;

        run(g, 400);
        assert_int_equal(guest_capture(g, &states, &err), 0);
        assert_int_equal(snapshot_describe(g, &states[0], "snapshot", SVEMIG_COMPRESSION_LZ4, 0, &hdr, &err),
                         0);
        fd = open(path_of("order.svemig"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(svemig_stream_writer_open(fd, &hdr.info, NULL, &w, &err), 0);
        for (unsigned half = 0; half < 2; half++) {
                struct svemig_mem_range range = {.slot = GUEST_RAM_SLOT,
                                                 .gpa = guest_ram_base(g) + half * MEM / 2,
                                                 .host = (uint8_t *)guest_mem(g) + half * MEM / 2,
                                                 .size = MEM / 2};

                assert_int_equal(svemig_stream_write_memory(w, &range, 1, &err), 0);
                for (unsigned i = 0; half == 0 && i < guest_n_vcpus(g); i++)
                        assert_int_equal(svemig_stream_write_vcpu(w, &states[i], &err), 0);
        }
        assert_int_equal(svemig_stream_writer_finish(w, &err), 0);
        svemig_stream_writer_free(w);
        close(fd);
        guest_states_free(states, guest_n_vcpus(g));

        if (snapshot_load(c, path_of("order.svemig"), NULL, &back, &err) < 0)
                fail_msg("snapshot_load: %s", err.msg);
        run(back, 600);
        run(unbroken, 1000);
        assert_int_equal(guest_compare(back, unbroken, &equal, diff, sizeof(diff), &err), 0);
        if (!equal)
                fail_msg("restored from vcpus-after-memory, the guest differs: %s", diff);
        guest_destroy(g);
        guest_destroy(unbroken);
        guest_destroy(back);
        hv_close(a);
        hv_close(c);
}

/*
 * Restores name into hv expecting refusal rc with a reason naming needle;
 * a corrupt tail proves memory was never reached: a memory read would have
 * reported the corruption instead.
 */
static void assert_refused(struct hv *hv, const char *name, int rc, const char *needle)
{
        struct svemig_error err = {0};
        struct guest *g = NULL;
        struct stat st;
        int fd;

        assert_int_equal(stat(path_of(name), &st), 0);
        fd = open(path_of(name), O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "garbage!", 8, st.st_size - 100), 8);
        close(fd);

        assert_int_equal(snapshot_load(hv, path_of(name), NULL, &g, &err), rc);
        assert_null(g);
        if (!strstr(err.msg, needle))
                fail_msg("reason '%s' does not mention '%s'", err.msg, needle);
}

static void test_refuse_vl_set(void **state)
{
        struct hv *a = sim_host_open("128,256,512", NULL), *b = sim_host_open("128,256", NULL);
        struct hv *c = sim_host_open("128-512", NULL);
        struct guest *g = sim_guest_create(a, "128,256,512", 1, MEM, 5);

        save(g, "wide.svemig");
        assert_refused(b, "wide.svemig", -EINVAL, "vq 4 (512-bit) is missing");
        save(g, "wide.svemig");
        assert_refused(c, "wide.svemig", -EINVAL, "vq 3 (384-bit)");
        guest_destroy(g);
        hv_close(a);
        hv_close(b);
        hv_close(c);
}

static void test_refuse_id_register(void **state)
{
        const struct hv_sim_id_reg zfr0 = {.id = KVMREG_ID_AA64ZFR0_EL1, .value = 0x1};
        const vqset_t map = {{0x3}};
        struct hv_config cfg = {.backend = HV_BACKEND_SIM,
                                .sim = {.cpu_maps = &map, .n_cpus = 1, .id_regs = &zfr0, .n_id_regs = 1}};
        struct hv *a = sim_host_open("128,256", NULL), *b;
        struct svemig_error err = {0};
        struct guest *g = sim_guest_create(a, "128,256", 1, MEM, 5);

        assert_int_equal(hv_open(&cfg, &b, &err), 0);
        save(g, "zfr0.svemig");
        assert_refused(b, "zfr0.svemig", -EINVAL, "ID_AA64ZFR0_EL1");
        guest_destroy(g);
        hv_close(a);
        hv_close(b);
}

static void test_register_list_difference(void **state)
{
        /* A 6.1 host whose CPU reports what the 6.12 one does: only the kernel's register lists differ. */
        const struct hv_sim_id_reg as_612[] = {
                {kvmreg_sys(3, 0, 0, 5, 0), 0x0000000010305009ull}, /* ID_AA64DFR0_EL1 */
                {kvmreg_sys(3, 0, 0, 7, 1), 0x0000011010211122ull}, /* ID_AA64MMFR1_EL1 */
                {kvmreg_demux_ccsidr(0), 2},
                {kvmreg_demux_ccsidr(1), 2},
                {kvmreg_demux_ccsidr(2), 2},
                {kvmreg_sys(3, 1, 0, 0, 1), 0x0000000002000021ull}, /* CLIDR_EL1 */
        };
        const vqset_t map = {{0x3}};
        struct hv_config cfg = {.backend = HV_BACKEND_SIM,
                                .sim = {.cpu_maps = &map,
                                        .n_cpus = 1,
                                        .kernel = "6.1",
                                        .id_regs = as_612,
                                        .n_id_regs = ELEMENTSOF(as_612)}};
        struct hv *k612 = sim_host_open("128,256", "6.12"), *k61;
        struct guest *g = sim_guest_create(k612, "128,256", 1, MEM, 5);
        struct svemig_error err = {0};

        struct guest *back = NULL;

        assert_int_equal(hv_open(&cfg, &k61, &err), 0);
        save(g, "k612.svemig");
        /*
         * The registers only 6.12 lists are dropped where they cannot matter
         * (docs/cpu-baseline.md): CCSIDR 3..13, which the guest's CLIDR_EL1
         * does not declare, the disabled physical timer, TCR2/PIR hidden.
         */
        if (snapshot_load(k61, path_of("k612.svemig"), NULL, &back, &err) < 0)
                fail_msg("%s", err.msg);
        guest_destroy(back);
        /* An enabled physical timer cannot be dropped: refused, naming it, before memory is read. */
        assert_int_equal(hv_vcpu_set_reg(guest_vcpu(g, 0), kvmreg_sys(3, 3, 14, 2, 1), &(uint64_t){1}), 0);
        save(g, "k612-timer.svemig");
        assert_refused(k61, "k612-timer.svemig", -ENOENT, "does not have it");
        guest_destroy(g);
        hv_close(k612);
        hv_close(k61);
}

static void test_refuse_no_sve(void **state)
{
        struct hv *a = sim_host_open("128,256", NULL), *none = sim_host_open("none", NULL);
        struct guest *g = sim_guest_create(a, "128,256", 1, MEM, 5);

        save(g, "sve.svemig");
        assert_refused(none, "sve.svemig", -EINVAL, "has no SVE");
        guest_destroy(g);
        hv_close(a);
        hv_close(none);
}

static int cancel_in_memory(void *userdata, const char *phase, uint64_t done, uint64_t total)
{
        unsigned *calls = userdata;

        (*calls)++;
        return strcmp(phase, "memory") == 0 ? -ECANCELED : 0;
}

static void test_cancel_leaves_old_file(void **state)
{
        struct hv *a = sim_host_open("128,256", NULL);
        struct guest *g = sim_guest_create(a, "128,256", 2, MEM, 5), *back;
        struct svemig_error err = {0};
        unsigned calls = 0;
        struct snapshot_opts opts = {.progress = cancel_in_memory, .userdata = &calls};
        char diff[256];
        bool equal;

        save(g, "keep.svemig");
        run(g, 10);
        assert_int_equal(snapshot_save(g, path_of("keep.svemig"), &opts, NULL, &err), -ECANCELED);
        assert_non_null(strstr(err.msg, "cancelled"));
        assert_true(calls >= 2);
        /* No temporary left, and the old snapshot is whole: it restores to the guest before the 10 steps. */
        assert_int_equal(count_temporaries(), 0);
        assert_int_equal(snapshot_load(a, path_of("keep.svemig"), NULL, &back, &err), 0);
        assert_int_equal(guest_compare(g, back, &equal, diff, sizeof(diff), &err), 0);
        assert_false(equal);
        run(back, 10);
        assert_int_equal(guest_compare(g, back, &equal, diff, sizeof(diff), &err), 0);
        assert_true(equal);
        guest_destroy(g);
        guest_destroy(back);
        hv_close(a);
}

static void test_corrupt_and_truncated(void **state)
{
        struct hv *a = sim_host_open("128,256", NULL);
        struct guest *g = sim_guest_create(a, "128,256", 1, MEM, 5), *back = NULL;
        struct svemig_error err = {0};
        struct stat st;
        uint8_t byte;
        int fd;

        run(g, 50);
        save(g, "bad.svemig");
        assert_int_equal(stat(path_of("bad.svemig"), &st), 0);
        /* A flipped byte deep in memory: found, and no guest comes back. */
        fd = open(path_of("bad.svemig"), O_RDWR);
        assert_int_equal(pread(fd, &byte, 1, st.st_size / 2), 1);
        byte ^= 0x55;
        assert_int_equal(pwrite(fd, &byte, 1, st.st_size / 2), 1);
        assert_int_equal(snapshot_load(a, path_of("bad.svemig"), NULL, &back, &err), -EBADMSG);
        assert_null(back);
        assert_non_null(strstr(err.msg, "bad.svemig"));
        /* Truncated (this save's own size: the encoders' threads may lay out another). */
        save(g, "bad.svemig");
        assert_int_equal(stat(path_of("bad.svemig"), &st), 0);
        assert_int_equal(truncate(path_of("bad.svemig"), st.st_size - 10), 0);
        assert_int_equal(snapshot_load(a, path_of("bad.svemig"), NULL, &back, &err), -EBADMSG);
        assert_null(back);
        close(fd);
        assert_int_equal(snapshot_load(a, path_of("missing.svemig"), NULL, &back, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "missing.svemig"));
        guest_destroy(g);
        hv_close(a);
}

/* A guest with a dirty log, as svemig-vmm keeps one, for incremental snapshots. */
static struct guest *logged_guest(struct hv *hv)
{
        struct guest_config cfg = {
                .n_vcpus = 2, .mem_bytes = MEM, .sve = true, .dirty_pages_per_step = 3, .log_dirty = true};
        struct svemig_error err = {0};
        struct guest *g;

        assert_int_equal(vqset_parse("128,256", &cfg.vls, &err), 0);
        if (guest_create(hv, &cfg, &g, &err) < 0)
                fail_msg("guest_create: %s", err.msg);
        return g;
}

/* Saves g to name: full (parent NULL) or over parent, with the pages dirtied since; returns its stats. */
static struct svemig_stream_stats save_link(struct guest *g, const char *name, const char *parent,
                                            const struct svemig_stream_stats *pst)
{
        uint64_t bits[MEM / HV_PAGE_SIZE / 64] = {0};
        char parent_path[512];
        struct snapshot_opts opts = {0};
        struct svemig_stream_stats st;
        struct svemig_error err = {0};

        if (hv_vm_get_dirty_log(guest_vm(g), GUEST_RAM_SLOT, bits, &err) < 0)
                fail_msg("dirty log: %s", err.msg);
        if (parent) {
                snprintf(parent_path, sizeof(parent_path), "%s", path_of(parent));
                opts.parent_location = parent_path;
                opts.parent_digest = pst->digest;
                opts.parent_digest_bytes = pst->digest_bytes;
                opts.dirty = bits;
        }
        if (snapshot_save(g, path_of(name), &opts, &st, &err) < 0)
                fail_msg("snapshot_save %s: %s", name, err.msg);
        return st;
}

/* The chain ending at name, restored on hv: its parents' memory first, then its own. */
static int load_chain(struct hv *hv, const char *name, struct guest **out, struct svemig_error *err)
{
        struct snapshot_chain chain = {.local_dir = dir};
        struct snapshot_source *src = NULL;
        const struct svemig_stream_info *info;
        struct guest *g = NULL;
        int r;

        r = snapshot_source_open(path_of(name), NULL, false, NULL, &src, err);
        if (r < 0)
                return r;
        info = svemig_stream_reader_info(snapshot_source_reader(src));
        r = guest_create_empty_at(hv, info->vcpu_count, info->slots[0].gpa, info->slots[0].size, false, &g,
                                  err);
        if (r == 0)
                r = snapshot_restore_parents(g, info, &chain, NULL, err);
        if (r == 0)
                r = snapshot_restore_into(g, snapshot_source_reader(src), NULL, err);
        r = snapshot_source_close(src, r, err);
        if (r < 0) {
                guest_destroy(g);
                return r;
        }
        *out = g;
        return 0;
}

static void test_incremental_chain(void **state)
{
        struct hv *a = sim_host_open("128,256,512", NULL);
        struct guest *g = logged_guest(a), *unbroken = logged_guest(a), *back;
        struct svemig_stream_stats full, inc1, inc2;
        struct svemig_error err = {0};
        char diff[256] = "";
        bool equal;

        run(g, 300);
        full = save_link(g, "full.svemig", NULL, NULL);
        run(g, 10);
        inc1 = save_link(g, "inc1.svemig", "full.svemig", &full);
        run(g, 10);
        inc2 = save_link(g, "inc2.svemig", "inc1.svemig", &inc1);
        /* Only the dirtied pages: 2 vcpus * 3 pages * 10 steps at most, of 256. */
        assert_true(inc1.mem_pages <= 60 && inc1.mem_pages > 0);
        assert_true(inc2.mem_pages <= 60 && inc2.mem_pages < full.mem_pages);

        /* The chain (full, inc1, inc2) restores the guest as it was at inc2. */
        if (load_chain(a, "inc2.svemig", &back, &err) < 0)
                fail_msg("restore of the chain: %s", err.msg);
        run(back, 100);
        run(unbroken, 420);
        assert_int_equal(guest_compare(back, unbroken, &equal, diff, sizeof(diff), &err), 0);
        if (!equal)
                fail_msg("the chain + 100 steps differs from 420 steps: %s", diff);
        guest_destroy(back);

        /* The library's one-file restore refuses an incremental stream, naming its parent. */
        assert_int_equal(snapshot_load(a, path_of("inc2.svemig"), NULL, &back, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "incremental"));

        /* A different parent at inc1's place breaks the chain: refused by name. */
        run(g, 5);
        save_link(g, "inc1.svemig", NULL, NULL);
        assert_int_equal(load_chain(a, "inc2.svemig", &back, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "chain is broken"));
        assert_non_null(strstr(err.msg, path_of("inc1.svemig")));
        /* A missing one too. */
        assert_int_equal(unlink(path_of("full.svemig")), 0);
        save_link(g, "inc1.svemig", "full.svemig", &full);
        assert_int_equal(load_chain(a, "inc2.svemig", &back, &err) < 0, true);
        assert_non_null(strstr(err.msg, "full.svemig"));

        guest_destroy(g);
        guest_destroy(unbroken);
        hv_close(a);
}

/* A parent outside the directory the restorer allows is refused before it is opened. */
static void test_chain_local_dir(void **state)
{
        struct snapshot_chain in_dir = {.local_dir = "/var/lib/svemig/snapshots"}, none = {.local_dir = ""};
        struct svemig_error err = {0};

        assert_int_equal(snapshot_chain_check(&in_dir, "/var/lib/svemig/snapshots/g-1.svemig", &err), 0);
        assert_int_equal(snapshot_chain_check(&in_dir, "/etc/shadow", &err), -EPERM);
        assert_non_null(strstr(err.msg, "outside svemigd's snapshot directory"));
        assert_int_equal(snapshot_chain_check(&in_dir, "/var/lib/svemig/snapshots/../x", &err), -EPERM);
        assert_int_equal(snapshot_chain_check(&none, "/tmp/x.svemig", &err), -EPERM);
        assert_int_equal(snapshot_chain_check(&in_dir, "relative.svemig", &err), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_equivalence_through_file),
                cmocka_unit_test(test_vcpus_after_memory),
                cmocka_unit_test(test_untouched_memory_stays_untouched),
                cmocka_unit_test(test_refuse_vl_set),
                cmocka_unit_test(test_refuse_id_register),
                cmocka_unit_test(test_register_list_difference),
                cmocka_unit_test(test_refuse_no_sve),
                cmocka_unit_test(test_cancel_leaves_old_file),
                cmocka_unit_test(test_corrupt_and_truncated),
                cmocka_unit_test(test_incremental_chain),
                cmocka_unit_test(test_chain_local_dir),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
