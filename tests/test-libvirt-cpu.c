/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/shared/libvirt-cpu.c: a domain XML's SVE features read, judged
 * against hosts, and pinned; the pinned XML read back.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "libvirt-cpu.h"

#define DOMAIN_HEAD "<domain type='qemu'><name>vm1</name><memory>262144</memory>"

static vqset_t set_of(const char *text)
{
        struct svemig_error err = {0};
        vqset_t s;

        assert_int_equal(vqset_parse(text, &s, &err), 0);
        return s;
}

static void parse(const char *xml, struct libvirt_cpu *c)
{
        struct svemig_error err = {0};
        char *name = NULL;

        assert_int_equal(libvirt_cpu_parse(xml, strlen(xml), &name, c, &err), 0);
        assert_string_equal(name, "vm1");
        free(name);
}

static void test_no_cpu(void **state)
{
        struct libvirt_cpu c;
        struct vqset_reason why;
        vqset_t host = set_of("128,256,512"), got;

        (void)state;
        parse(DOMAIN_HEAD "</domain>", &c);
        assert_false(c.has_cpu);
        assert_int_equal(c.sve, LIBVIRT_SVE_DEFAULT);
        assert_true(libvirt_cpu_on_host(&c, &host, &got, &why));
        assert_true(vqset_equal(&got, &host));
}

static void test_lengths(void **state)
{
        static const char xml[] = DOMAIN_HEAD
                "<cpu mode='custom' match='exact'><model fallback='forbid'>max</model>"
                "<feature policy='require' name='sve'/><feature name='sve128'/>"
                "<feature policy='require' name='sve256'/><feature policy='require' name='sve512'/>"
                "<feature policy='disable' name='sve1024'/><feature policy='require' name='pmu'/>"
                "</cpu></domain>";
        struct libvirt_cpu c;
        struct vqset_reason why;
        vqset_t wide = set_of("128,256,512"), narrow = set_of("128,256"), odd = set_of("128,256,384,512"),
                got;
        char buf[256];

        (void)state;
        parse(xml, &c);
        assert_int_equal(c.sve, LIBVIRT_SVE_LENGTHS);
        assert_true(vqset_equal(&c.required, &wide));
        assert_true(vqset_contains(&c.disabled, 8));
        assert_true(libvirt_cpu_on_host(&c, &wide, &got, &why));
        assert_true(vqset_equal(&got, &wide));

        assert_false(libvirt_cpu_on_host(&c, &narrow, &got, &why));
        assert_int_equal(why.kind, VQSET_MISSING);
        assert_int_equal(why.vq, 4);
        libvirt_cpu_reason_format(&why, "hostb", buf, sizeof(buf));
        assert_string_equal(buf, "hostb lacks vq 4 (512-bit)");

        /* QEMU fills in 384 below the maximum on such a host: allowed, and the set says so. */
        assert_true(libvirt_cpu_on_host(&c, &odd, &got, &why));
        assert_true(vqset_equal(&got, &odd));
}

static void test_disabled_below_max(void **state)
{
        static const char xml[] = DOMAIN_HEAD "<cpu mode='host-passthrough'>"
                                              "<feature policy='require' name='sve128'/>"
                                              "<feature policy='disable' name='sve384'/>"
                                              "<feature policy='require' name='sve512'/></cpu></domain>";
        struct libvirt_cpu c;
        struct vqset_reason why;
        vqset_t odd = set_of("128,256,384,512"), got;

        (void)state;
        parse(xml, &c);
        assert_false(libvirt_cpu_on_host(&c, &odd, &got, &why));
        assert_int_equal(why.kind, VQSET_EXTRA);
        assert_int_equal(why.vq, 3);
}

static void test_sve_off_and_conflict(void **state)
{
        static const char off[] = DOMAIN_HEAD "<cpu><feature policy='disable' name='sve'/></cpu></domain>";
        static const char bad[] = DOMAIN_HEAD "<cpu><feature policy='disable' name='sve'/>"
                                              "<feature policy='require' name='sve256'/></cpu></domain>";
        struct svemig_error err = {0};
        struct libvirt_cpu c;
        struct vqset_reason why;
        vqset_t none, got;

        (void)state;
        vqset_clear(&none);
        parse(off, &c);
        assert_int_equal(c.sve, LIBVIRT_SVE_OFF);
        assert_true(libvirt_cpu_on_host(&c, &none, &got, &why));
        assert_true(vqset_empty(&got));
        assert_int_equal(libvirt_cpu_parse(bad, strlen(bad), NULL, &c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "disables sve but requires sve256"));
}

static void test_malformed(void **state)
{
        static const char *const bad[] = {"<domain><name>x</name>", "<notadomain/>", "<domain/>",
                                          "<!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
                                          "<domain><name>&e;</name></domain>"};
        struct svemig_error err = {0};
        struct libvirt_cpu c;
        char *name = NULL;

        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_true(libvirt_cpu_parse(bad[i], strlen(bad[i]), &name, &c, &err) < 0);
                assert_null(name);
        }
}

static void test_pin_round_trip(void **state)
{
        static const char xml[] = DOMAIN_HEAD "<cpu mode='custom' match='exact'><model>max</model>"
                                              "<feature policy='require' name='pmu'/>"
                                              "<feature policy='require' name='sve512'/></cpu></domain>";
        struct svemig_error err = {0};
        vqset_t cluster = set_of("128,256"), none;
        struct libvirt_cpu c;
        char *out = NULL, *out2 = NULL;

        (void)state;
        parse(xml, &c);
        assert_false(libvirt_cpu_pinned_to(&c, &cluster));
        assert_int_equal(libvirt_cpu_pin_xml(xml, strlen(xml), &cluster, &out, &err), 0);
        parse(out, &c);
        assert_true(libvirt_cpu_pinned_to(&c, &cluster));
        assert_non_null(strstr(out, "name=\"pmu\""));     /* other features stay */
        assert_non_null(strstr(out, "name=\"sve2048\"")); /* disabled up to 2048 */
        assert_null(strstr(out, "policy=\"require\" name=\"sve512\""));

        /* No <cpu>: one is made; an empty set disables SVE. */
        vqset_clear(&none);
        assert_int_equal(libvirt_cpu_pin_xml(DOMAIN_HEAD "</domain>", strlen(DOMAIN_HEAD "</domain>"), &none,
                                             &out2, &err),
                         0);
        parse(out2, &c);
        assert_true(c.has_cpu);
        assert_true(libvirt_cpu_pinned_to(&c, &none));
        assert_non_null(strstr(out2, "<model fallback=\"forbid\">max</model>"));
        free(out);
        free(out2);
}

/* libvirt 9 defines an aarch64 TCG domain without <cpu> with a cortex-a15, which has no SVE. */
static void test_pin_model_without_sve(void **state)
{
        static const char xml[] = DOMAIN_HEAD "<cpu mode='custom' match='exact' check='none'>"
                                              "<model fallback='forbid'>cortex-a15</model></cpu></domain>";
        struct svemig_error err = {0};
        vqset_t cluster = set_of("128,256");
        struct libvirt_cpu c;
        char *out = NULL;

        (void)state;
        parse(xml, &c);
        assert_string_equal(c.model, "cortex-a15");
        assert_false(libvirt_cpu_model_has_sve(c.model));
        assert_int_equal(libvirt_cpu_pin_xml(xml, strlen(xml), &cluster, &out, &err), 0);
        parse(out, &c);
        assert_string_equal(c.model, "max");
        assert_true(libvirt_cpu_pinned_to(&c, &cluster));
        free(out);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_no_cpu),
                cmocka_unit_test(test_lengths),
                cmocka_unit_test(test_disabled_below_max),
                cmocka_unit_test(test_sve_off_and_conflict),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_pin_round_trip),
                cmocka_unit_test(test_pin_model_without_sve),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
