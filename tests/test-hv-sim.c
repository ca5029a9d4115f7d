/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What is particular to the sim backend: its host built from per-CPU VQ
 * maps, its reference kernels, memory slots, and the workload's use of the
 * effective vector length. The KVM ABI itself is the conformance suite's.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sim-util.h"
#include "svemig/guest.h"
#include "svemig/kvmreg.h"

static void assert_vls(struct hv *hv, const char *want_bits, unsigned want_max)
{
        struct hv_caps caps;
        char got[128];

        assert_int_equal(hv_get_caps(hv, &caps), 0);
        vqset_format(&caps.vls, VQSET_FORMAT_BITS, got, sizeof(got));
        assert_string_equal(got, want_bits);
        assert_int_equal(caps.max_vq, want_max);
        assert_int_equal(caps.sve, want_max != 0);
        hv_close(hv);
}

static void test_host_from_cpu_maps(void **state)
{
        /* big.LITTLE-style: 384 on some CPUs only caps the host at 256. */
        assert_vls(sim_host_open("128-512;128,256,512", NULL), "128,256", 2);
        assert_vls(sim_host_open("128,256,512;128,256,512", NULL), "128,256,512", 4);
        /* One CPU without SVE makes the whole host non-SVE. */
        assert_vls(sim_host_open("128,256;none", NULL), "none", 0);
        assert_vls(sim_host_open("128-2048", NULL),
                   "128,256,384,512,640,768,896,1024,1152,1280,1408,1536,1664,"
                   "1792,1920,2048",
                   16);
        assert_vls(sim_host_open("128", NULL), "128", 1);
}

static void test_open_refusals(void **state)
{
        const vqset_t wide = {{0x1ffff}};
        struct hv_config cfg = {.backend = HV_BACKEND_SIM, .sim = {.cpu_maps = &wide, .n_cpus = 1}};
        struct svemig_error err = {0};
        struct hv *hv;

        assert_int_equal(hv_open(&cfg, &hv, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "SVE stops at 2048 bits"));
        cfg.sim.cpu_maps = NULL;
        cfg.sim.n_cpus = 0;
        cfg.sim.kernel = "5.10";
        assert_int_equal(hv_open(&cfg, &hv, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "\"6.1\" or \"6.12\""));
}

static size_t reg_count(struct hv *hv, bool sve)
{
        struct svemig_error err = {0};
        uint64_t ids[512];
        size_t n = 512;
        struct hv_vm *vm;
        struct hv_vcpu *vcpu;

        assert_int_equal(hv_vm_create(hv, &vm, &err), 0);
        assert_int_equal(hv_vcpu_create(vm, 0, &vcpu, &err), 0);
        assert_int_equal(
                hv_vcpu_init(vcpu, HV_FEAT_BIT(HV_FEAT_PSCI_0_2) | (sve ? HV_FEAT_BIT(HV_FEAT_SVE) : 0)), 0);
        if (sve)
                assert_int_equal(hv_vcpu_finalize(vcpu, HV_FEAT_SVE), 0);
        assert_int_equal(hv_vcpu_reg_list(vcpu, ids, &n), 0);
        hv_vcpu_destroy(vcpu);
        hv_vm_destroy(vm);
        return n;
}

static void test_reference_kernels(void **state)
{
        /* The counts of DESIGN.md and of the reference lists. */
        struct hv *k61 = sim_host_open("128,256", "6.1"), *k612 = sim_host_open("128,256", "6.12");

        assert_int_equal(reg_count(k61, true), 261);
        assert_int_equal(reg_count(k61, false), 242);
        assert_int_equal(reg_count(k612, true), 278);
        assert_int_equal(reg_count(k612, false), 259);
        hv_close(k61);
        hv_close(k612);
}

static void test_memslots(void **state)
{
        struct hv *hv = sim_host_open("128", NULL);
        struct svemig_error err = {0};
        static uint8_t mem[4 * HV_PAGE_SIZE] __attribute__((aligned(HV_PAGE_SIZE)));
        struct hv_vm *vm;
        uint64_t bitmap[1];

        assert_int_equal(hv_vm_create(hv, &vm, &err), 0);
        assert_int_equal(hv_vm_set_memslot(vm, 0, 0x40000000, sizeof(mem), mem, 0, &err), 0);
        assert_int_equal(hv_vm_set_memslot(vm, 1, 0x40001000, HV_PAGE_SIZE, mem, 0, &err), -EEXIST);
        assert_non_null(strstr(err.msg, "overlaps slot 0"));
        assert_int_equal(hv_vm_set_memslot(vm, 1, 0x40000100, HV_PAGE_SIZE, mem, 0, &err), -EINVAL);
        assert_int_equal(hv_vm_set_memslot(vm, 99, 0x80000000, HV_PAGE_SIZE, mem, 0, &err), -EINVAL);
        assert_int_equal(hv_vm_get_dirty_log(vm, 0, bitmap, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "does not log dirty pages"));
        /* Deleting a slot frees its range. */
        assert_int_equal(hv_vm_set_memslot(vm, 0, 0x40000000, 0, NULL, 0, &err), 0);
        assert_int_equal(hv_vm_set_memslot(vm, 1, 0x40001000, HV_PAGE_SIZE, mem, HV_MEM_LOG_DIRTY, &err), 0);
        assert_int_equal(hv_vm_get_dirty_log(vm, 1, bitmap, &err), 0);
        hv_vm_destroy(vm);
        hv_close(hv);
}

/* The workload runs at ZCR_EL1's length: Z bytes beyond it stay zero, as an SVE write at a reduced VL leaves
 * them. */
static void test_effective_vl(void **state)
{
        struct hv *hv = sim_host_open("128,256,512", NULL);
        struct guest_config cfg = {.n_vcpus = 1, .mem_bytes = 16 * HV_PAGE_SIZE, .sve = true};
        struct svemig_error err = {0};
        uint8_t z[KVMREG_ZREG_SLICE_BYTES];
        uint64_t zcr = 0; /* the reset value: 128 bits */
        struct guest *g;

        assert_int_equal(guest_create(hv, &cfg, &g, &err), 0);
        assert_int_equal(hv_vcpu_set_reg(guest_vcpu(g, 0), KVMREG_ZCR_EL1, &zcr), 0);
        assert_int_equal(guest_run(g, 32, &err), 0);
        for (unsigned n = 0; n < 32; n++) {
                assert_int_equal(hv_vcpu_get_reg(guest_vcpu(g, 0), kvmreg_zreg(n, 0), z), 0);
                assert_memory_not_equal(z, (uint8_t[16]){0}, 16);
                assert_memory_equal(z + 16, (uint8_t[240]){0}, 240);
        }
        /* ZCR_EL1.LEN = 2 asks for 384 bits; the vcpu has 128, 256 and 512, so it runs at 256. */
        zcr = 2;
        assert_int_equal(hv_vcpu_set_reg(guest_vcpu(g, 0), KVMREG_ZCR_EL1, &zcr), 0);
        assert_int_equal(guest_run(g, 32, &err), 0);
        assert_int_equal(hv_vcpu_get_reg(guest_vcpu(g, 0), kvmreg_zreg(5, 0), z), 0);
        assert_memory_not_equal(z + 16, (uint8_t[16]){0}, 16);
        assert_memory_equal(z + 32, (uint8_t[224]){0}, 224);
        guest_destroy(g);
        hv_close(hv);
}

static void test_id_register_overrides(void **state)
{
        const struct hv_sim_id_reg regs[] = {
                {KVMREG_ID_AA64ZFR0_EL1, 0x1},
                {KVMREG_ID_AA64PFR0_EL1, 0x0000000000000011ull}, /* its SVE field still follows the vcpu */
        };
        const vqset_t map = {{0x3}};
        struct hv_config cfg = {.backend = HV_BACKEND_SIM,
                                .sim = {.cpu_maps = &map, .n_cpus = 1, .id_regs = regs, .n_id_regs = 2}};
        struct svemig_error err = {0};
        uint64_t v = 0, other = 2;
        struct hv_vm *vm;
        struct hv_vcpu *vcpu;
        struct hv *hv;

        assert_int_equal(hv_open(&cfg, &hv, &err), 0);
        assert_int_equal(hv_vm_create(hv, &vm, &err), 0);
        assert_int_equal(hv_vcpu_create(vm, 0, &vcpu, &err), 0);
        assert_int_equal(hv_vcpu_init(vcpu, HV_FEAT_BIT(HV_FEAT_SVE)), 0);
        assert_int_equal(hv_vcpu_get_reg(vcpu, KVMREG_ID_AA64ZFR0_EL1, &v), 0);
        assert_int_equal(v, 0x1);
        assert_int_equal(hv_vcpu_get_reg(vcpu, KVMREG_ID_AA64PFR0_EL1, &v), 0);
        assert_int_equal(v, 0x0000000100000011ull);
        /* Invariant: the same value is accepted, another refused. */
        assert_int_equal(hv_vcpu_set_reg(vcpu, KVMREG_ID_AA64PFR0_EL1, &v), 0);
        assert_int_equal(hv_vcpu_set_reg(vcpu, KVMREG_ID_AA64ZFR0_EL1, &other), -EINVAL);
        hv_vcpu_destroy(vcpu);
        hv_vm_destroy(vm);
        hv_close(hv);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_host_from_cpu_maps), cmocka_unit_test(test_open_refusals),
                cmocka_unit_test(test_reference_kernels),  cmocka_unit_test(test_memslots),
                cmocka_unit_test(test_effective_vl),       cmocka_unit_test(test_id_register_overrides),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
