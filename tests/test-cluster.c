/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The cluster view: negotiation over the counted hosts, verdicts mapped back, the gain without the limiting.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "svemig/cluster.h"
#include "svemig/hv.h"
#include "svemig/kvmreg.h"
#include "svemig/migrate.h"

#define S(...) set_of((const unsigned[]){__VA_ARGS__, 0})
#define NONE   ((vqset_t){{0}})

static vqset_t set_of(const unsigned *vqs)
{
        vqset_t s = {0};

        for (; *vqs; vqs++)
                vqset_add(&s, *vqs);
        return s;
}

static void assert_set(vqset_t got, vqset_t want)
{
        char g[256], w[256];

        vqset_format(&got, VQSET_FORMAT_VQ, g, sizeof(g));
        vqset_format(&want, VQSET_FORMAT_VQ, w, sizeof(w));
        assert_string_equal(g, w);
}

/* The integration tests' three hosts: {128,256,512}, {128,256}, {128,256,384,512}. */
static void test_three_hosts(void **state)
{
        const struct cluster_host h[] = {
                {true, S(1, 2, 4)},
                {true, S(1, 2)},
                {true, S(1, 2, 3, 4)},
        };
        struct cluster_result r;

        (void)state;
        assert_int_equal(cluster_compute(h, 3, &r, NULL), 0);
        assert_set(r.guest, S(1, 2));
        assert_int_equal(r.max_vq, 2);
        assert_int_equal(r.n_counted, 3);
        /* 384 bits is the lowest length only some have: the two lacking it limit. */
        assert_int_equal(r.n_limiting, 2);
        assert_true(r.hosts[0].limiting);
        assert_true(r.hosts[1].limiting);
        assert_false(r.hosts[2].limiting);
        for (size_t i = 0; i < 3; i++)
                assert_true(r.hosts[i].can_present);
        assert_true(r.have_without);
        assert_set(r.without, S(1, 2, 3, 4));
        assert_int_equal(r.without_max_vq, 4);
        cluster_result_done(&r);
}

/* A pinned set: the guest set whatever the hosts offer; each counted host judged against it; none limits. */
static void test_pinned(void **state)
{
        const struct cluster_host h[] = {
                {true, S(1, 2, 4)},
                {true, S(1)},
                {false, S(1)},
                {true, S(1, 2, 3)},
        };
        const vqset_t pinned = S(1, 2);
        struct cluster_result r;

        (void)state;
        assert_int_equal(cluster_compute_pinned(h, 4, &pinned, &r, NULL), 0);
        assert_set(r.guest, S(1, 2));
        assert_int_equal(r.max_vq, 2);
        assert_int_equal(r.n_counted, 3);
        assert_int_equal(r.n_limiting, 0);
        assert_false(r.have_without);
        assert_true(r.hosts[0].can_present);
        /* {1} lacks vq 2, which the pinned set needs: the guests cannot move there. */
        assert_false(r.hosts[1].can_present);
        assert_int_equal(r.hosts[1].reason.kind, VQSET_MISSING);
        assert_int_equal(r.hosts[1].reason.vq, 2);
        assert_false(r.hosts[2].counted);
        /* {1,2,3} can hide vq 3, above the set's maximum. */
        assert_true(r.hosts[3].can_present);
        cluster_result_done(&r);
        assert_int_equal(cluster_compute_pinned(h + 2, 1, &pinned, &r, NULL), -EINVAL);
}

/* A host that is down is listed but neither counted nor judged. */
static void test_down_host_is_not_counted(void **state)
{
        const struct cluster_host h[] = {
                {true, S(1, 2, 4)},
                {false, NONE},
                {true, S(1, 2, 3, 4)},
        };
        struct cluster_result r;

        (void)state;
        assert_int_equal(cluster_compute(h, 3, &r, NULL), 0);
        assert_set(r.guest, S(1, 2));
        assert_int_equal(r.n_counted, 2);
        assert_int_equal(r.n_hosts, 3);
        assert_false(r.hosts[1].counted);
        assert_false(r.hosts[1].can_present);
        assert_false(r.hosts[1].limiting);
        assert_true(r.hosts[0].limiting);
        assert_int_equal(r.n_limiting, 1);
        assert_set(r.without, S(1, 2, 3, 4));
        cluster_result_done(&r);
}

/* A host without SVE drops the cluster to FPSIMD only, and is the one that limits. */
static void test_no_sve_host(void **state)
{
        const struct cluster_host h[] = {
                {true, S(1, 2, 4)},
                {true, S(1, 2, 3, 4)},
                {true, NONE},
        };
        struct cluster_result r;

        (void)state;
        assert_int_equal(cluster_compute(h, 3, &r, NULL), 0);
        assert_true(vqset_empty(&r.guest));
        assert_int_equal(r.max_vq, 0);
        assert_int_equal(r.n_limiting, 1);
        assert_true(r.hosts[2].limiting);
        assert_true(r.hosts[2].can_present); /* FPSIMD only is presentable anywhere */
        assert_set(r.without, S(1, 2));
        cluster_result_done(&r);
}

/* Equal sets: nobody limits, nothing to gain. */
static void test_alone_and_equal(void **state)
{
        const struct cluster_host h[] = {{true, S(1, 2, 4)}, {true, S(1, 2, 4)}};
        struct cluster_result r, again;

        (void)state;
        assert_int_equal(cluster_compute(h, 1, &r, NULL), 0);
        assert_set(r.guest, S(1, 2, 4));
        assert_int_equal(r.n_limiting, 0);
        assert_false(r.have_without);
        assert_int_equal(cluster_compute(h, 2, &again, NULL), 0);
        assert_false(cluster_result_equal(&r, &again)); /* a host more */
        cluster_result_done(&again);
        assert_int_equal(cluster_compute(h, 1, &again, NULL), 0);
        assert_true(cluster_result_equal(&r, &again));
        cluster_result_done(&again);
        cluster_result_done(&r);
}

static void test_nobody_counted(void **state)
{
        const struct cluster_host h[] = {{false, S(1)}};
        struct svemig_error err = {0};
        struct cluster_result r;

        (void)state;
        assert_int_equal(cluster_compute(h, 1, &r, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "at least this host"));
        assert_int_equal(cluster_compute(h, 0, &r, NULL), -EINVAL);
}

/* What a sim host tells its peers about its ID registers (a probe vcpu's). */
static void probe_host(const vqset_t *map, bool nvhe, struct peer_info *out)
{
        struct hv_config cfg = {.backend = HV_BACKEND_SIM,
                                .sim = {.cpu_maps = map, .n_cpus = 1, .nvhe = nvhe}};
        struct svemig_error err = {0};
        struct hv *hv;

        assert_int_equal(hv_open(&cfg, &hv, &err), 0);
        assert_int_equal(peer_info_local(hv, 0, out, &err), 0);
        assert_true(out->id_regs.n_regs > 0);
        hv_close(hv);
}

static uint64_t reg_value(const struct vcpu_state *st, uint64_t id)
{
        const struct vcpu_reg *reg = vcpu_state_find(st, id);
        uint64_t v = 0;

        assert_non_null(reg);
        memcpy(&v, reg->value, sizeof(v));
        return v;
}

static void test_id_registers(void **state)
{
        const vqset_t b = S(1, 2), a = S(1, 2, 4), none = NONE;
        struct peer_info vhe, vhe_a, nvhe, nosve;
        struct cluster_id_diff d;
        struct vcpu_state partial = {0};
        char text[256];

        (void)state;
        probe_host(&b, false, &vhe);
        probe_host(&a, false, &vhe_a);
        probe_host(&b, true, &nvhe);
        probe_host(&none, false, &nosve);

        /* Other vector lengths, or no SVE at all, are the negotiation's business, not a difference. */
        cluster_id_compare(&vhe.id_regs, &vhe_a.id_regs, &d);
        assert_false(d.differ);
        assert_int_not_equal(reg_value(&vhe.id_regs, KVMREG_ID_AA64PFR0_EL1),
                             reg_value(&nosve.id_regs, KVMREG_ID_AA64PFR0_EL1));
        cluster_id_compare(&vhe.id_regs, &nosve.id_regs, &d);
        assert_false(d.differ);

        /*
         * VHE against nVHE: only ID_AA64MMFR1_EL1.VH differs, as on the rig's
         * hosts (...1122 against ...1022), a field only EL2 uses: no difference.
         */
        assert_int_not_equal(reg_value(&vhe.id_regs, KVMREG_ID_AA64MMFR1_EL1),
                             reg_value(&nvhe.id_regs, KVMREG_ID_AA64MMFR1_EL1));
        cluster_id_compare(&vhe.id_regs, &nvhe.id_regs, &d);
        assert_false(d.differ);
        cluster_id_compare(&nvhe.id_regs, &vhe.id_regs, &d);
        assert_false(d.differ);

        /* A register on one side only is a difference, named with the side that has it. */
        assert_int_equal(vcpu_state_alloc(&partial, &(uint64_t){KVMREG_ID_AA64PFR0_EL1}, 1), 0);
        memcpy(partial.regs[0].value, vcpu_state_find(&vhe.id_regs, KVMREG_ID_AA64PFR0_EL1)->value, 8);
        cluster_id_compare(&partial, &vhe.id_regs, &d);
        assert_true(d.differ && d.missing_here && !d.missing_there);
        cluster_id_diff_format(&d, "b", text, sizeof(text));
        assert_non_null(strstr(text, "is on b only"));
        cluster_id_compare(&vhe.id_regs, &partial, &d);
        assert_true(d.differ && d.missing_there);

        /* Unknown (nothing said yet): no difference. */
        cluster_id_compare(&vhe.id_regs, &(struct vcpu_state){0}, &d);
        assert_false(d.differ);

        vcpu_state_done(&partial);
        peer_info_done(&vhe);
        peer_info_done(&vhe_a);
        peer_info_done(&nvhe);
        peer_info_done(&nosve);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_three_hosts),    cmocka_unit_test(test_down_host_is_not_counted),
                cmocka_unit_test(test_no_sve_host),    cmocka_unit_test(test_alone_and_equal),
                cmocka_unit_test(test_nobody_counted), cmocka_unit_test(test_id_registers),
                cmocka_unit_test(test_pinned),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
