/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vcpu capture -> restore between sim hosts: bit-exact at every vector
 * length, and refused with the precise reason when the destination differs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sim-util.h"
#include "sim/idfacts.h"
#include "svemig/guest.h"
#include "svemig/kvmreg.h"
#include "svemig/vcpu.h"

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

/*
 * Registers a guest can hold any value in: core, FP and SVE data, ordinary
 * system registers; not those of the feature ID space (CLIDR, CTR, DCZID...),
 * whose values the kernel holds and checks as it does the ID registers'.
 */
static bool randomisable(uint64_t id)
{
        struct kvmreg reg;

        if (idfacts_probed(id))
                return false;

        assert_int_equal(kvmreg_decode(id, &reg, NULL), 0);
        switch (reg.cls) {
        case KVMREG_CLASS_CORE:
                return id != kvmreg_core_pstate();
        case KVMREG_CLASS_CORE_FP:
        case KVMREG_CLASS_CORE_FPCR:
        case KVMREG_CLASS_SVE_Z:
        case KVMREG_CLASS_SVE_P:
        case KVMREG_CLASS_SVE_FFR:
        case KVMREG_CLASS_SYS:
                return true;
        default:
                return false;
        }
}

/* Fills every randomisable register of vcpu with random bytes, through ONE_REG. */
static void randomise_vcpu(struct hv_vcpu *vcpu)
{
        uint64_t ids[512];
        size_t n = 512;

        assert_int_equal(hv_vcpu_reg_list(vcpu, ids, &n), 0);
        for (size_t i = 0; i < n; i++) {
                uint8_t buf[KVMREG_MAX_BYTES];

                if (!randomisable(ids[i]))
                        continue;
                for (unsigned b = 0; b < kvmreg_size(ids[i]); b++)
                        buf[b] = (uint8_t)rnd();
                assert_int_equal(hv_vcpu_set_reg(vcpu, ids[i], buf), 0);
        }
}

/* Captures vcpu 0 of a guest on src, restores it on dst, and asserts bit-exact equality. */
static void round_trip(struct hv *src, struct hv *dst, const char *vls)
{
        struct guest *g = sim_guest_create(src, vls, 1, 16 * HV_PAGE_SIZE, 0), *h;
        struct vcpu_state before, after;
        struct svemig_error err = {0};
        char diff[256];

        randomise_vcpu(guest_vcpu(g, 0));
        assert_int_equal(vcpu_capture(guest_vcpu(g, 0), &before, &err), 0);

        assert_int_equal(guest_create_empty(dst, 1, 16 * HV_PAGE_SIZE, false, &h, &err), 0);
        if (vcpu_restore(guest_vcpu(h, 0), &before, &err) < 0)
                fail_msg("restore of %s: %s", vls ? vls : "a non-SVE vcpu", err.msg);
        assert_int_equal(vcpu_capture(guest_vcpu(h, 0), &after, &err), 0);
        if (!vcpu_state_equal(&before, &after, diff, sizeof(diff)))
                fail_msg("%s: %s", vls ? vls : "non-SVE", diff);

        vcpu_state_done(&before);
        vcpu_state_done(&after);
        guest_destroy(g);
        guest_destroy(h);
}

static void test_round_trip_every_vl(void **state)
{
        /* Every maximum from 128 to 2048 bits, hosts offering every length up to it. */
        for (unsigned max = 1; max <= VQSET_VQ_ARCH_MAX; max++) {
                char spec[32], vls[32];
                struct hv *a, *b;

                snprintf(spec, sizeof(spec), "128-%u", max * 128);
                snprintf(vls, sizeof(vls), "128-%u", max * 128);
                a = sim_host_open(spec, NULL);
                b = sim_host_open(spec, NULL);
                round_trip(a, b, vls);
                hv_close(a);
                hv_close(b);
        }
}

static void test_round_trip_to_wider_host(void **state)
{
        /* A guest at the cluster set {128,256} moves to a host offering 128..512 with 384 missing. */
        struct hv *a = sim_host_open("128,256", NULL), *b = sim_host_open("128,256,512", NULL);
        struct hv *c = sim_host_open("128,256,512,1024,2048", NULL);

        round_trip(a, b, "128,256");
        round_trip(b, c, "128,256,512");
        round_trip(c, c, "128,256,512,1024,2048");
        hv_close(a);
        hv_close(b);
        hv_close(c);
}

static void test_round_trip_non_sve(void **state)
{
        struct hv *a = sim_host_open("none", NULL), *b = sim_host_open("128,256", NULL);

        round_trip(a, b, NULL);
        round_trip(b, a, NULL);
        hv_close(a);
        hv_close(b);
}

/* Restores a guest made on src with 'vls' into dst and returns rc and the reason. */
static int restore_into(struct hv *src, const char *vls, struct hv *dst, struct svemig_error *err)
{
        struct guest *g = sim_guest_create(src, vls, 1, 16 * HV_PAGE_SIZE, 0), *h;
        struct vcpu_state st;
        int r;

        assert_int_equal(vcpu_capture(guest_vcpu(g, 0), &st, err), 0);
        assert_int_equal(guest_create_empty(dst, 1, 16 * HV_PAGE_SIZE, false, &h, err), 0);
        r = vcpu_restore(guest_vcpu(h, 0), &st, err);
        vcpu_state_done(&st);
        guest_destroy(g);
        guest_destroy(h);
        return r;
}

/* restore_into() that reads register id of the restored vcpu into *value. */
static int restore_read(struct hv *src, struct hv *dst, uint64_t id, uint64_t *value,
                        struct svemig_error *err)
{
        struct guest *g = sim_guest_create(src, "128,256", 1, 16 * HV_PAGE_SIZE, 0), *h;
        struct vcpu_state st;
        int r;

        assert_int_equal(vcpu_capture(guest_vcpu(g, 0), &st, err), 0);
        assert_int_equal(guest_create_empty(dst, 1, 16 * HV_PAGE_SIZE, false, &h, err), 0);
        r = vcpu_restore(guest_vcpu(h, 0), &st, err);
        if (r == 0)
                assert_int_equal(hv_vcpu_get_reg(guest_vcpu(h, 0), id, value), 0);
        vcpu_state_done(&st);
        guest_destroy(g);
        guest_destroy(h);
        return r;
}

static void assert_reason(const struct svemig_error *err, const char *needle)
{
        if (!strstr(err->msg, needle))
                fail_msg("reason '%s' does not mention '%s'", err->msg, needle);
}

static void test_refuse_missing_vq(void **state)
{
        struct hv *a = sim_host_open("128,256,512", NULL), *b = sim_host_open("128,256", NULL);
        struct svemig_error err = {0};

        assert_int_equal(restore_into(a, "128,256,512", b, &err), -EINVAL);
        assert_reason(&err, "cannot present");
        assert_reason(&err, "512");
        hv_close(a);
        hv_close(b);
}

static void test_refuse_extra_vq(void **state)
{
        /* The destination has 384 below the guest's 512 maximum and cannot hide it. */
        struct hv *a = sim_host_open("128,256,512", NULL), *b = sim_host_open("128-512", NULL);
        struct svemig_error err = {0};

        assert_int_equal(restore_into(a, "128,256,512", b, &err), -EINVAL);
        assert_reason(&err, "384");
        hv_close(a);
        hv_close(b);
}

static void test_refuse_no_sve(void **state)
{
        struct hv *a = sim_host_open("128,256", NULL), *b = sim_host_open("none", NULL);
        struct svemig_error err = {0};

        assert_int_equal(restore_into(a, "128,256", b, &err), -EINVAL);
        assert_reason(&err, "has no SVE");
        hv_close(a);
        hv_close(b);
}

/*
 * Restores vcpu 0 of a guest made on src into dst, after setting register
 * id to value in its state (id 0: none).
 */
static int restore_with(struct hv *src, struct hv *dst, uint64_t id, uint64_t value,
                        struct svemig_error *err)
{
        struct guest *g = sim_guest_create(src, "128,256", 1, 16 * HV_PAGE_SIZE, 0), *h;
        struct vcpu_state st;
        int r;

        assert_int_equal(vcpu_capture(guest_vcpu(g, 0), &st, err), 0);
        if (id) {
                const struct vcpu_reg *reg = vcpu_state_find(&st, id);

                assert_non_null(reg);
                memcpy(reg->value, &value, reg->size);
        }
        assert_int_equal(guest_create_empty(dst, 1, 16 * HV_PAGE_SIZE, false, &h, err), 0);
        r = vcpu_restore(guest_vcpu(h, 0), &st, err);
        vcpu_state_done(&st);
        guest_destroy(g);
        guest_destroy(h);
        return r;
}

/*
 * 6.12 lists 17 registers 6.1 lacks. Each direction passes the register
 * lists (the physical timer, disabled, TCR2_EL1 and PIR_EL1 hidden, cache
 * levels the guest's CLIDR_EL1 does not declare), and then meets the ID
 * registers the two kernels present differently. A guest with its
 * physical timer enabled is refused by 6.1, naming the timer.
 */
static void test_register_list_differences(void **state)
{
        struct hv *a = sim_host_open("128,256", "6.12"), *b = sim_host_open("128,256", "6.1");
        struct svemig_error err = {0};

        /* 6.1 cannot write DebugVer 9: the refusal names the field. */
        assert_int_equal(restore_into(a, "128,256", b, &err), -EINVAL);
        assert_reason(&err, "host incompatibility");
        assert_reason(&err, "ID_AA64DFR0_EL1.DebugVer is 6 here, 9 wanted (lower-safe)");
        assert_reason(&err, "No VMM can present");
        /*
         * 6.12 writes a 6.1 guest's DebugVer (6) and CLIDR_EL1; HCX, which it
         * cannot lower, is EL2-only: the guest reads 6.12's own there.
         */
        uint64_t dfr0 = 0, mmfr1 = 0;
        assert_int_equal(restore_read(b, a, kvmreg_sys(3, 0, 0, 5, 0), &dfr0, &err), 0);
        assert_int_equal(dfr0, 0x10305006);
        assert_int_equal(restore_read(b, a, KVMREG_ID_AA64MMFR1_EL1, &mmfr1, &err), 0);
        assert_int_equal(mmfr1, 0x11010211122ull);

        assert_int_equal(restore_with(a, b, kvmreg_sys(3, 3, 14, 2, 1), 1, &err), -ENOENT);
        assert_reason(&err, "0x603000000013df11");
        assert_reason(&err, "does not have it");
        assert_reason(&err, "physical timer is enabled");
        hv_close(a);
        hv_close(b);
}

static void test_refuse_id_register_mismatch(void **state)
{
        /* Host b's CPU lacks a feature in ZFR0: a host incompatibility, not a silent change. */
        const struct hv_sim_id_reg zfr0 = {.id = KVMREG_ID_AA64ZFR0_EL1, .value = 0x0000000000000001ull};
        const vqset_t map = {{0x3}};
        struct hv_config cfg = {.backend = HV_BACKEND_SIM,
                                .sim = {.cpu_maps = &map, .n_cpus = 1, .id_regs = &zfr0, .n_id_regs = 1}};
        struct hv *a = sim_host_open("128,256", NULL), *b;
        struct svemig_error err = {0};

        assert_int_equal(hv_open(&cfg, &b, &err), 0);
        assert_int_equal(restore_into(a, "128,256", b, &err), -EINVAL);
        assert_reason(&err, "host incompatibility");
        assert_reason(&err, "ID_AA64ZFR0_EL1");
        hv_close(a);
        hv_close(b);
}

static void test_capture_before_finalize(void **state)
{
        struct hv *a = sim_host_open("128,256", NULL);
        struct svemig_error err = {0};
        struct vcpu_state st;
        struct hv_vm *vm;
        struct hv_vcpu *vcpu;

        assert_int_equal(hv_vm_create(a, &vm, &err), 0);
        assert_int_equal(hv_vcpu_create(vm, 0, &vcpu, &err), 0);
        assert_int_equal(hv_vcpu_init(vcpu, HV_FEAT_BIT(HV_FEAT_SVE) | HV_FEAT_BIT(HV_FEAT_PSCI_0_2)), 0);
        assert_int_equal(vcpu_capture(vcpu, &st, &err), -EPERM);
        assert_reason(&err, "finalized");
        hv_vcpu_destroy(vcpu);
        hv_vm_destroy(vm);
        hv_close(a);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip_every_vl),
                cmocka_unit_test(test_round_trip_to_wider_host),
                cmocka_unit_test(test_round_trip_non_sve),
                cmocka_unit_test(test_refuse_missing_vq),
                cmocka_unit_test(test_refuse_extra_vq),
                cmocka_unit_test(test_refuse_no_sve),
                cmocka_unit_test(test_register_list_differences),
                cmocka_unit_test(test_refuse_id_register_mismatch),
                cmocka_unit_test(test_capture_before_finalize),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
