/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Payload guests (a raw image at a chosen IPA, entered at its own pc) and a
 * RAM base other than GUEST_RAM_BASE carried through snapshots. The payloads
 * themselves run on kvm, inside the rig (tests/arm64/snapshot-run.c); here
 * the sim checks the layout, the start state and the snapshot path.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <cmocka.h>

#include "sim-util.h"
#include "svemig/guest.h"
#include "svemig/kvmreg.h"
#include "svemig/snapshot.h"

#define MEM   (16 * HV_PAGE_SIZE)
#define ENTRY 0x800u

static uint8_t image[3 * HV_PAGE_SIZE];

static uint64_t reg(struct guest *g, uint64_t id)
{
        uint64_t v = 0;

        assert_int_equal(hv_vcpu_get_reg(guest_vcpu(g, 0), id, &v), 0);
        return v;
}

static struct guest_config payload_config(uint64_t ram_base)
{
        for (size_t i = 0; i < sizeof(image); i++)
                image[i] = (uint8_t)(i * 7 + 1);
        return (struct guest_config){.n_vcpus = 2,
                                     .mem_bytes = MEM,
                                     .sve = true,
                                     .image = image,
                                     .image_size = sizeof(image),
                                     .image_offset = HV_PAGE_SIZE,
                                     .entry = ram_base + HV_PAGE_SIZE + ENTRY,
                                     .ram_base = ram_base};
}

static void test_payload_layout_and_start_state(void **state)
{
        struct hv *a = sim_host_open("128,256,512", NULL);
        struct guest_config cfg = payload_config(0);
        struct svemig_error err = {0};
        struct guest *g;

        if (guest_create(a, &cfg, &g, &err) < 0)
                fail_msg("guest_create: %s", err.msg);
        assert_int_equal(guest_ram_base(g), 0);
        /* The image where asked, zeros around it. */
        assert_memory_equal(guest_mem(g) + HV_PAGE_SIZE, image, sizeof(image));
        for (uint64_t off = 0; off < MEM; off++)
                if (off < HV_PAGE_SIZE || off >= HV_PAGE_SIZE + sizeof(image))
                        assert_int_equal(guest_mem(g)[off], 0);
        for (unsigned i = 0; i < guest_n_vcpus(g); i++) {
                uint64_t pc = 0, x1 = 1;

                assert_int_equal(hv_vcpu_get_reg(guest_vcpu(g, i), kvmreg_core_pc(), &pc), 0);
                assert_int_equal(pc, HV_PAGE_SIZE + ENTRY);
                /* No workload parameters: the payload's registers start as KVM resets them. */
                assert_int_equal(hv_vcpu_get_reg(guest_vcpu(g, i), kvmreg_core_x(1), &x1), 0);
                assert_int_equal(x1, 0);
        }
        assert_int_equal(reg(g, kvmreg_core_pstate()), 0x3c5);
        assert_int_equal(reg(g, KVMREG_CPACR_EL1), 0x330000);
        assert_int_equal(reg(g, KVMREG_ZCR_EL1), 3); /* LEN = max_vq - 1, 512 bits */
        guest_destroy(g);
        hv_close(a);
}

static void test_payload_refusals(void **state)
{
        struct hv *a = sim_host_open("128,256", NULL);
        struct svemig_error err = {0};
        struct guest_config cfg;
        struct guest *g = NULL;

        cfg = payload_config(0);
        cfg.image_offset = MEM - HV_PAGE_SIZE;
        assert_int_equal(guest_create(a, &cfg, &g, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "does not fit"));
        cfg = payload_config(0);
        cfg.image_offset = UINT64_MAX;
        assert_int_equal(guest_create(a, &cfg, &g, &err), -EINVAL);
        cfg = payload_config(0);
        cfg.image_size = 0;
        assert_int_equal(guest_create(a, &cfg, &g, &err), -EINVAL);
        cfg = payload_config(0x1800);
        assert_int_equal(guest_create(a, &cfg, &g, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "not page aligned"));
        assert_null(g);
        hv_close(a);
}

/* The workload's guests still get GUEST_RAM_BASE by default, or the base they ask for. */
static void test_workload_ram_base(void **state)
{
        struct hv *a = sim_host_open("128,256", NULL);
        struct guest_config cfg = {.n_vcpus = 1, .mem_bytes = MEM, .sve = true};
        struct svemig_error err = {0};
        struct guest *g;

        assert_int_equal(guest_create(a, &cfg, &g, &err), 0);
        assert_int_equal(guest_ram_base(g), GUEST_RAM_BASE);
        assert_int_equal(reg(g, kvmreg_core_pc()), 0x800);
        guest_destroy(g);
        cfg.ram_base = 0x80000000ull;
        assert_int_equal(guest_create(a, &cfg, &g, &err), 0);
        assert_int_equal(guest_ram_base(g), 0x80000000ull);
        guest_destroy(g);
        hv_close(a);
}

static char *save_tmp(struct guest *g)
{
        static char path[] = "/tmp/svemig-test-guest-payload.XXXXXX";
        struct svemig_error err = {0};
        int fd;

        strcpy(path + sizeof(path) - 7, "XXXXXX");
        fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        if (snapshot_save(g, path, NULL, NULL, &err) < 0)
                fail_msg("snapshot_save: %s", err.msg);
        return path;
}

static bool same(struct guest *a, struct guest *b, char *diff, size_t len)
{
        struct svemig_error err = {0};
        bool equal;

        assert_int_equal(guest_compare(a, b, &equal, diff, len, &err), 0);
        return equal;
}

/* A guest whose RAM is not at GUEST_RAM_BASE comes back where it was, and goes on as if never stopped. */
static void check_base_through_snapshot(struct guest_config cfg)
{
        struct hv *a = sim_host_open("128,256,512", NULL), *b = sim_host_open("128,256", NULL);
        struct guest *g, *unbroken, *restored;
        struct svemig_error err = {0};
        char diff[256] = "", *path;

        assert_int_equal(vqset_parse("128,256", &cfg.vls, &err), 0);
        cfg.dirty_pages_per_step = 2;
        assert_int_equal(guest_create(a, &cfg, &g, &err), 0);
        assert_int_equal(guest_create(a, &cfg, &unbroken, &err), 0);
        assert_int_equal(guest_run(g, 40, &err), 0);
        path = save_tmp(g);
        if (snapshot_load(b, path, NULL, &restored, &err) < 0)
                fail_msg("snapshot_load: %s", err.msg);
        unlink(path);
        assert_int_equal(guest_ram_base(restored), guest_ram_base(g));
        if (!same(g, restored, diff, sizeof(diff)))
                fail_msg("restored guest differs: %s", diff);
        assert_int_equal(guest_run(restored, 60, &err), 0);
        assert_int_equal(guest_run(unbroken, 100, &err), 0);
        if (!same(unbroken, restored, diff, sizeof(diff)))
                fail_msg("40 + 60 steps through a snapshot differ from 100 steps: %s", diff);
        guest_destroy(g);
        guest_destroy(unbroken);
        guest_destroy(restored);
        hv_close(a);
        hv_close(b);
}

static void test_payload_at_ipa0_through_snapshot(void **state)
{
        check_base_through_snapshot(payload_config(0));
}

static void test_workload_high_base_through_snapshot(void **state)
{
        check_base_through_snapshot(
                (struct guest_config){.n_vcpus = 2, .mem_bytes = MEM, .sve = true, .ram_base = 1ull << 32});
}

/* Restoring into a guest whose RAM is elsewhere is refused, naming both places. */
static void test_restore_into_other_base(void **state)
{
        struct hv *a = sim_host_open("128,256", NULL);
        struct guest_config cfg = payload_config(0);
        struct svemig_stream_reader *rd = NULL;
        struct svemig_error err = {0};
        struct guest *g, *empty;
        char *path;
        int fd;

        assert_int_equal(guest_create(a, &cfg, &g, &err), 0);
        path = save_tmp(g);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(svemig_stream_reader_open(fd, NULL, &rd, &err), 0);
        assert_int_equal(svemig_stream_reader_info(rd)->n_slots, 1);
        assert_int_equal(svemig_stream_reader_info(rd)->slots[0].gpa, 0);
        assert_int_equal(guest_create_empty(a, 2, MEM, false, &empty, &err), 0);
        assert_int_equal(snapshot_restore_into(empty, rd, NULL, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "at 0x40000000; the stream 2 and"));
        assert_non_null(strstr(err.msg, "at 0x0"));
        svemig_stream_reader_free(rd);
        close(fd);
        unlink(path);
        guest_destroy(empty);
        guest_destroy(g);
        hv_close(a);
}

/* A vcpu that is powered off is not run, and does not hold up the others. */
static void test_powered_off_vcpu_not_run(void **state)
{
        struct hv *a = sim_host_open("128,256", NULL);
        struct guest *g = sim_guest_create(a, "128,256", 2, MEM, 1);
        struct svemig_error err = {0};

        assert_int_equal(hv_vcpu_set_mp_state(guest_vcpu(g, 1), HV_MP_STATE_STOPPED), 0);
        assert_int_equal(guest_run(g, 25, &err), 0);
        assert_int_equal(guest_steps(g, 0), 25);
        assert_int_equal(guest_steps(g, 1), 0);
        guest_destroy(g);
        hv_close(a);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_payload_layout_and_start_state),
                cmocka_unit_test(test_payload_refusals),
                cmocka_unit_test(test_workload_ram_base),
                cmocka_unit_test(test_payload_at_ipa0_through_snapshot),
                cmocka_unit_test(test_workload_high_base_through_snapshot),
                cmocka_unit_test(test_restore_into_other_base),
                cmocka_unit_test(test_powered_off_vcpu_not_run),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
