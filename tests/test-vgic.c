/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest's vGIC (src/vgic.c): its layout, and the sim's refusal. On an
 * arm64 KVM (the rig's hosts) it also creates and initialises a real one.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "sim-util.h"
#include "svemig/guest.h"
#include "svemig/vgic.h"

static void test_layout(void **state)
{
        (void)state;
        /* The distributor, then the redistributors, all below RAM and apart. */
        assert_true(VGIC_DIST_BASE + VGIC_DIST_SIZE <= VGIC_REDIST_BASE);
        assert_true(VGIC_REDIST_BASE + (uint64_t)VGIC_MAX_VCPUS * VGIC_REDIST_SIZE <= VGIC_REDIST_LIMIT);
        assert_true(VGIC_REDIST_LIMIT <= GUEST_RAM_BASE);
        /* As many vcpus as QEMU's virt board takes in its first region. */
        assert_int_equal(VGIC_MAX_VCPUS, 123);
        assert_int_equal(VGIC_NR_IRQS % 32, 0);
}

static void test_sim_refuses(void **state)
{
        struct hv *hv = sim_host_open("128,256", NULL);
        struct svemig_error err = {0};
        struct hv_vm *vm;
        struct vgic *gic = NULL;

        (void)state;
        assert_int_equal(hv_vm_create(hv, &vm, &err), 0);
        assert_int_equal(vgic_create(vm, 1, &gic, &err), -ENODEV);
        assert_null(gic);
        assert_non_null(strstr(err.msg, "GICv3"));
        assert_non_null(strstr(err.msg, "kvm backend"));
        hv_vm_destroy(vm);
        hv_close(hv);
}

static void test_vcpu_count_refused(void **state)
{
        struct hv *hv = sim_host_open("128,256", NULL);
        struct svemig_error err = {0};
        struct hv_vm *vm;
        struct vgic *gic = NULL;

        (void)state;
        assert_int_equal(hv_vm_create(hv, &vm, &err), 0);
        assert_int_equal(vgic_create(vm, VGIC_MAX_VCPUS + 1, &gic, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "1 to 123 vcpus"));
        assert_int_equal(vgic_create(vm, 0, &gic, &err), -EINVAL);
        hv_vm_destroy(vm);
        hv_close(hv);
}

/* The real thing, where /dev/kvm is an arm64 KVM: create, vcpus, init, an SPI raised and lowered. */
static void test_kvm(void **state)
{
        struct hv_config cfg = {.backend = HV_BACKEND_KVM};
        struct svemig_error err = {0};
        struct hv *hv;
        struct hv_vm *vm;
        struct hv_vcpu *vcpus[2];
        struct vgic *gic;
        uint32_t nr = 0;

        (void)state;
        if (hv_open(&cfg, &hv, &err) < 0)
                skip();
        assert_int_equal(hv_vm_create(hv, &vm, &err), 0);
        assert_int_equal(vgic_create(vm, 2, &gic, &err), 0);
        for (unsigned i = 0; i < 2; i++) {
                assert_int_equal(hv_vcpu_create(vm, i, &vcpus[i], &err), 0);
                assert_int_equal(hv_vcpu_init(vcpus[i], HV_FEAT_BIT(HV_FEAT_PSCI_0_2)), 0);
        }
        assert_int_equal(vgic_init(gic, &err), 0);
        assert_int_equal(hv_device_get_attr(vgic_device(gic), VGIC_GRP_NR_IRQS, 0, &nr), 0);
        assert_int_equal(nr, VGIC_NR_IRQS);
        assert_int_equal(vgic_spi_set(gic, 1, true), 0);
        assert_int_equal(vgic_spi_set(gic, 1, false), 0);
        assert_int_equal(vgic_spi_set(gic, VGIC_NR_SPIS, true), -EINVAL);
        for (unsigned i = 0; i < 2; i++)
                hv_vcpu_destroy(vcpus[i]);
        vgic_destroy(gic);
        hv_vm_destroy(vm);
        hv_close(hv);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_layout),
                cmocka_unit_test(test_sim_refuses),
                cmocka_unit_test(test_vcpu_count_refused),
                cmocka_unit_test(test_kvm),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
