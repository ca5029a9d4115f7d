/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The equivalence at the heart of svemig: N steps, capture, restore on
 * another host, M more steps == N+M steps without a break.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <cmocka.h>

#include "sim-util.h"
#include "svemig/guest.h"
#include "svemig/kvmreg.h"

#define MEM (64 * HV_PAGE_SIZE)

/* Moves g to host dst: vcpus through capture/restore, memory copied. */
static struct guest *move(struct guest *g, struct hv *dst, void (*tamper)(struct vcpu_state *))
{
        struct svemig_error err = {0};
        struct vcpu_state *states;
        struct guest *h;

        assert_int_equal(guest_capture(g, &states, &err), 0);
        if (tamper)
                tamper(&states[0]);
        assert_int_equal(guest_create_empty(dst, guest_n_vcpus(g), guest_mem_size(g), false, &h, &err), 0);
        memcpy(guest_mem(h), guest_mem(g), guest_mem_size(g));
        if (guest_restore_vcpus(h, states, &err) < 0)
                fail_msg("restore: %s", err.msg);
        guest_states_free(states, guest_n_vcpus(g));
        return h;
}

static void run(struct guest *g, uint64_t steps)
{
        struct svemig_error err = {0};

        if (guest_run(g, steps, &err) < 0)
                fail_msg("run: %s", err.msg);
}

static bool same(struct guest *a, struct guest *b, char *diff, size_t len)
{
        struct svemig_error err = {0};
        bool equal;

        assert_int_equal(guest_compare(a, b, &equal, diff, len, &err), 0);
        return equal;
}

static void check_equivalence(const char *src_cpus, const char *dst_cpus, const char *vls, unsigned n_vcpus,
                              void (*tamper)(struct vcpu_state *), bool expect_equal)
{
        struct hv *a = sim_host_open(src_cpus, NULL), *b = sim_host_open(dst_cpus, NULL);
        struct guest *moved = sim_guest_create(a, vls, n_vcpus, MEM, 3),
                     *unbroken = sim_guest_create(a, vls, n_vcpus, MEM, 3), *there;
        char diff[256] = "";

        run(moved, 700);
        there = move(moved, b, tamper);
        run(there, 300);
        run(unbroken, 1000);

        for (unsigned i = 0; i < n_vcpus; i++)
                assert_int_equal(guest_steps(there, i), 300);
        if (expect_equal && !same(there, unbroken, diff, sizeof(diff)))
                fail_msg("700 + 300 steps across hosts differ from 1000 steps: %s", diff);
        if (!expect_equal && same(there, unbroken, diff, sizeof(diff)))
                fail_msg("a tampered state still matched the unbroken run");

        guest_destroy(moved);
        guest_destroy(unbroken);
        guest_destroy(there);
        hv_close(a);
        hv_close(b);
}

static void test_equivalence_sve(void **state)
{
        check_equivalence("128,256,512", "128,256;128,256,512", "128,256", 4, NULL, true);
}

static void test_equivalence_full_width(void **state)
{
        check_equivalence("128-2048", "128-2048", "128-2048", 2, NULL, true);
}

static void test_equivalence_non_sve(void **state)
{
        check_equivalence("none", "128,256", NULL, 2, NULL, true);
}

/* One bit of one Z register: the runs must diverge, or the check above proves nothing. */
static void flip_z_bit(struct vcpu_state *st)
{
        for (size_t i = 0; i < st->n_regs; i++)
                if (st->regs[i].id == kvmreg_zreg(7, 0)) {
                        st->regs[i].value[3] ^= 0x10;
                        return;
                }
        fail_msg("no z7 in the captured state");
}

static void test_tampered_state_diverges(void **state)
{
        check_equivalence("128,256,512", "128,256,512", "128,256,512", 1, flip_z_bit, false);
}

static void test_dirty_log(void **state)
{
        struct hv *a = sim_host_open("128,256", NULL);
        struct guest_config cfg = {
                .n_vcpus = 2, .mem_bytes = MEM, .sve = true, .dirty_pages_per_step = 2, .log_dirty = true};
        struct svemig_error err = {0};
        uint64_t bitmap[1] = {0};
        struct guest *g;
        unsigned dirty;

        assert_int_equal(guest_create(a, &cfg, &g, &err), 0);
        assert_int_equal(hv_vm_get_dirty_log(guest_vm(g), GUEST_RAM_SLOT, bitmap, &err), 0);
        assert_int_equal(bitmap[0], 0);
        run(g, 5);
        assert_int_equal(hv_vm_get_dirty_log(guest_vm(g), GUEST_RAM_SLOT, bitmap, &err), 0);
        dirty = (unsigned)__builtin_popcountll(bitmap[0]);
        /* 2 vcpus x 5 steps x 2 pages, some pages hit twice; each vcpu only in its own stripe. */
        assert_true(dirty >= 1 && dirty <= 20);
        for (unsigned p = 0; p < 64; p++)
                if (bitmap[0] & (1ull << p))
                        assert_true(memcmp(guest_mem(g) + p * HV_PAGE_SIZE, (uint8_t[HV_PAGE_SIZE]){0},
                                           HV_PAGE_SIZE) != 0);
        /* The log was cleared by reading it. */
        assert_int_equal(hv_vm_get_dirty_log(guest_vm(g), GUEST_RAM_SLOT, bitmap, &err), 0);
        assert_int_equal(bitmap[0], 0);
        guest_destroy(g);
        hv_close(a);
}

/* A free-running guest paused after S steps is the guest run exactly S steps; throttled or not. */
static void test_start_pause(void **state)
{
        struct hv *a = sim_host_open("128,256,512", NULL);
        struct guest *free_running = sim_guest_create(a, "128,256,512", 1, MEM, 3),
                     *counted = sim_guest_create(a, "128,256,512", 1, MEM, 3);
        struct svemig_error err = {0};
        struct vcpu_state *states;
        char diff[256] = "";
        uint64_t steps;

        assert_int_equal(guest_start(free_running, &err), 0);
        assert_true(guest_running(free_running));
        assert_int_equal(guest_start(free_running, &err), -EBUSY);
        assert_int_equal(guest_capture(free_running, &states, &err), -EBUSY);
        while (guest_steps(free_running, 0) < 2000)
                nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        guest_set_throttle(free_running, 50);
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
        assert_int_equal(guest_pause(free_running, &err), 0);
        assert_false(guest_running(free_running));
        assert_int_equal(guest_pause(free_running, &err), 0);

        steps = guest_steps(free_running, 0);
        run(counted, steps);
        if (!same(free_running, counted, diff, sizeof(diff)))
                fail_msg("paused after %llu steps but differs from %llu counted steps: %s",
                         (unsigned long long)steps, (unsigned long long)steps, diff);
        guest_destroy(free_running);
        guest_destroy(counted);
        hv_close(a);
}

/* Threads prepared ahead run nothing until guest_start(); unreleased, pause and destroy send them away. */
static void test_prepared_start(void **state)
{
        struct hv *a = sim_host_open("128,256,512", NULL);
        struct guest *g = sim_guest_create(a, "128,256,512", 2, MEM, 3),
                     *never = sim_guest_create(a, "128,256,512", 2, MEM, 3);
        struct svemig_error err = {0};

        assert_int_equal(guest_prepare_start(g, &err), 0);
        assert_false(guest_running(g));
        assert_int_equal(guest_prepare_start(g, &err), -EBUSY);
        assert_int_equal(guest_start(g, &err), 0);
        assert_true(guest_running(g));
        while (guest_steps(g, 0) < 1000 || guest_steps(g, 1) < 1000)
                nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        assert_int_equal(guest_pause(g, &err), 0);
        assert_false(guest_running(g));

        /* Paused before it was released: no vcpu ran a step, and it starts afresh later. */
        assert_int_equal(guest_prepare_start(g, &err), 0);
        assert_int_equal(guest_pause(g, &err), 0);
        assert_int_equal(guest_prepare_start(never, &err), 0);
        assert_int_equal(guest_pause(never, &err), 0);
        assert_int_equal(guest_steps(never, 0) + guest_steps(never, 1), 0);
        assert_int_equal(guest_start(g, &err), 0);
        assert_int_equal(guest_pause(g, &err), 0);

        /* Destroyed with its threads parked. */
        assert_int_equal(guest_prepare_start(never, &err), 0);
        guest_destroy(never);
        guest_destroy(g);
        hv_close(a);
}

/*
 * RAM faulted in ahead by the caller: the guest takes the mapping and gives
 * back what is past its RAM; a creation that fails leaves it to the caller.
 */
static void test_prepared_ram(void **state)
{
        const uint64_t map = 4u << 20, ram = 2u << 20;
        struct hv *hv = sim_host_open("128,256", NULL);
        struct svemig_error err = {0};
        struct guest *g = NULL;
        uint8_t *mem =
                mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        unsigned char vec;

        assert_true(mem != MAP_FAILED);
        assert_int_equal(guest_create_empty_mem(hv, 0, GUEST_RAM_BASE, ram, false, mem, map, &g, &err),
                         -EINVAL);
        mem[map - 1] = 1; /* still the caller's */
        assert_int_equal(guest_create_empty_mem(hv, 1, GUEST_RAM_BASE, map * 2, false, mem, map, &g, &err),
                         -EINVAL);
        assert_non_null(strstr(err.msg, "smaller"));
        mem[map - 1] = 2;

        assert_int_equal(guest_create_empty_mem(hv, 2, GUEST_RAM_BASE, ram, true, mem, map, &g, &err), 0);
        assert_ptr_equal(guest_mem(g), mem);
        assert_int_equal(guest_mem_size(g), ram);
        /* Past its RAM, the mapping is gone. */
        assert_int_equal(mincore(mem + ram, 4096, &vec), -1);
        assert_int_equal(errno, ENOMEM);
        assert_int_equal(mincore(mem, 4096, &vec), 0);
        guest_destroy(g);
        hv_close(hv);
}

/* What describes a guest is read before it first runs, and the same later, without a pause. */
static void test_describe(void **state)
{
        struct hv *hv = sim_host_open("128,256,512", NULL);
        struct guest *g = sim_guest_create(hv, "128,256", 2, MEM, 3);
        struct svemig_error err = {0};
        struct vcpu_state a = {0}, b = {0};

        assert_int_equal(guest_start(g, &err), 0);
        assert_true(guest_running(g));
        assert_int_equal(guest_describe(g, &a, &err), 0);
        assert_true(guest_running(g));
        assert_int_equal(guest_describe(g, &b, &err), 0);
        assert_int_equal(a.n_regs, b.n_regs);
        assert_true(a.n_regs > 0);
        assert_int_equal(a.features, b.features);
        assert_true(vqset_equal(&a.vls, &b.vls));
        for (size_t i = 0; i < a.n_regs; i++)
                assert_int_equal(a.regs[i].id, b.regs[i].id);
        /* A copy: the caller's to change and free. */
        memset(a.blob, 0xff, a.blob_size);
        vcpu_state_done(&a);
        assert_int_equal(guest_describe(g, &a, &err), 0);
        assert_memory_equal(a.blob, b.blob, a.blob_size);
        vcpu_state_done(&a);
        vcpu_state_done(&b);
        guest_destroy(g);
        hv_close(hv);
}

static void test_create_refusals(void **state)
{
        struct hv *a = sim_host_open("128,256", NULL), *none = sim_host_open("none", NULL);
        struct guest_config cfg = {.n_vcpus = 1, .mem_bytes = MEM, .sve = true};
        struct svemig_error err = {0};
        struct guest *g = NULL;

        assert_int_equal(guest_create(none, &cfg, &g, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "has no SVE"));
        assert_int_equal(vqset_parse("128,256,512", &cfg.vls, &err), 0);
        assert_int_equal(guest_create(a, &cfg, &g, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "cannot present"));
        cfg.vls = (vqset_t){{0}};
        cfg.mem_bytes = 1000;
        assert_int_equal(guest_create(a, &cfg, &g, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "multiple of 4096"));
        hv_close(a);
        hv_close(none);
}

struct devices_seen {
        unsigned calls, n_vcpus;
        uint32_t mp_state[2];
        int fail; /* what on_devices returns */
};

/* guest_config.on_devices: every vcpu exists and is set up by now. */
static int note_devices(void *userdata, struct guest *g, struct svemig_error *err)
{
        struct devices_seen *seen = userdata;

        seen->calls++;
        seen->n_vcpus = guest_n_vcpus(g);
        for (unsigned i = 0; i < 2 && i < guest_n_vcpus(g); i++)
                assert_int_equal(hv_vcpu_get_mp_state(guest_vcpu(g, i), &seen->mp_state[i]), 0);
        return seen->fail ? svemig_error_set(err, seen->fail, "no vGIC here") : 0;
}

/* A Linux guest's start: vcpu 0 at the entry with x0 = the device tree, the others off until CPU_ON. */
static void test_linux_boot_start_state(void **state)
{
        struct hv *hv = sim_host_open("128,256", NULL);
        static const uint8_t image[64] = {1, 2, 3};
        struct devices_seen seen = {0};
        struct guest_config cfg = {
                .n_vcpus = 2,
                .mem_bytes = MEM,
                .image = image,
                .image_size = sizeof(image),
                .ram_base = GUEST_RAM_BASE,
                .entry = GUEST_RAM_BASE,
                .linux_boot = true,
                .boot_x0 = GUEST_RAM_BASE + 0x200000,
                .on_devices = note_devices,
                .event_userdata = &seen,
        };
        struct svemig_error err = {0};
        struct guest *g = NULL;
        uint64_t v;

        assert_int_equal(guest_create(hv, &cfg, &g, &err), 0);
        assert_int_equal(seen.calls, 1);
        assert_int_equal(seen.n_vcpus, 2);
        assert_int_equal(seen.mp_state[0], HV_MP_STATE_RUNNABLE);
        assert_int_equal(seen.mp_state[1], HV_MP_STATE_STOPPED);
        assert_int_equal(hv_vcpu_features(guest_vcpu(g, 1)) & HV_FEAT_BIT(HV_FEAT_POWER_OFF),
                         HV_FEAT_BIT(HV_FEAT_POWER_OFF));
        assert_int_equal(hv_vcpu_get_reg(guest_vcpu(g, 0), kvmreg_core_x(0), &v), 0);
        assert_int_equal(v, GUEST_RAM_BASE + 0x200000);
        assert_int_equal(hv_vcpu_get_reg(guest_vcpu(g, 0), kvmreg_core_pc(), &v), 0);
        assert_int_equal(v, GUEST_RAM_BASE);
        assert_memory_equal(guest_mem(g), image, sizeof(image));
        assert_int_equal(guest_system_event(g), 0);
        guest_destroy(g);

        /* A device that cannot be made fails the guest, with its reason. */
        seen.fail = ENODEV;
        assert_int_equal(guest_create(hv, &cfg, &g, &err), -ENODEV);
        assert_non_null(strstr(err.msg, "no vGIC here"));
        hv_close(hv);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_equivalence_sve),
                cmocka_unit_test(test_equivalence_full_width),
                cmocka_unit_test(test_equivalence_non_sve),
                cmocka_unit_test(test_tampered_state_diverges),
                cmocka_unit_test(test_dirty_log),
                cmocka_unit_test(test_start_pause),
                cmocka_unit_test(test_create_refusals),
                cmocka_unit_test(test_prepared_start),
                cmocka_unit_test(test_prepared_ram),
                cmocka_unit_test(test_describe),
                cmocka_unit_test(test_linux_boot_start_state),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
