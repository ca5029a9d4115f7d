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

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_three_hosts),    cmocka_unit_test(test_down_host_is_not_counted),
                cmocka_unit_test(test_no_sve_host),    cmocka_unit_test(test_alone_and_equal),
                cmocka_unit_test(test_nobody_counted),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
