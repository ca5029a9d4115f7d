/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Cluster membership without a live cluster: the dispatch's checks, the
 * static backend with no peers, addresses, etcd's base64 and prefix ends,
 * and the etcd backend facing an endpoint where nothing listens (its view
 * says stale, and why). The backends against real etcd and real peers are
 * tests/daemon/test-etcd.py and test-cluster.py.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>

#include "membership/etcd-gateway.h"
#include "svemig/membership.h"

static void wake(void *userdata)
{
        uint64_t one = 1;

        (void)!write(*(int *)userdata, &one, sizeof(one));
}

static struct peer_info self_info(void)
{
        struct peer_info p = {.sve = true, .max_vq = 2};

        snprintf(p.host_name, sizeof(p.host_name), "here");
        snprintf(p.backend, sizeof(p.backend), "sim");
        vqset_add(&p.vls, 1);
        vqset_add(&p.vls, 2);
        return p;
}

static void test_split_address(void **state)
{
        char host[64];
        uint16_t port;

        (void)state;
        assert_int_equal(membership_split_address("node2.example:7070", host, sizeof(host), &port, NULL), 0);
        assert_string_equal(host, "node2.example");
        assert_int_equal(port, 7070);
        assert_int_equal(membership_split_address("[2001:db8::7]:9", host, sizeof(host), &port, NULL), 0);
        assert_string_equal(host, "2001:db8::7");
        assert_int_equal(port, 9);
        assert_int_equal(membership_split_address("nohost", host, sizeof(host), &port, NULL), -EINVAL);
        assert_int_equal(membership_split_address("h:0", host, sizeof(host), &port, NULL), -EINVAL);
        assert_int_equal(membership_split_address("h:70000", host, sizeof(host), &port, NULL), -EINVAL);
        assert_int_equal(membership_split_address(":1", host, sizeof(host), &port, NULL), -EINVAL);
}

static void test_base64(void **state)
{
        static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
        static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};

        (void)state;
        for (size_t i = 0; i < 7; i++) {
                struct json_object *o = etcd_b64(plain[i], strlen(plain[i]));
                uint8_t *back;
                size_t n;

                assert_non_null(o);
                assert_string_equal(json_object_get_string(o), coded[i]);
                json_object_put(o);
                assert_int_equal(etcd_unb64(coded[i], &back, &n), 0);
                assert_int_equal(n, strlen(plain[i]));
                assert_memory_equal(back, plain[i], n);
                free(back);
        }
        {
                uint8_t *b;
                size_t n;

                assert_int_equal(etcd_unb64("Zm9v!", &b, &n), -EINVAL);
        }
}

static void test_prefix_end_and_u64(void **state)
{
        char end[32];
        struct json_object *o = json_tokener_parse("{\"a\":\"18446744073709551615\",\"b\":7}");

        (void)state;
        assert_int_equal(etcd_prefix_end("/svemig/hosts/", end, sizeof(end)), 0);
        assert_string_equal(end, "/svemig/hosts0");
        assert_int_equal(etcd_prefix_end("", end, sizeof(end)), -EINVAL);
        /* 64-bit numbers come as strings; left out means 0. */
        assert_true(etcd_u64(o, "a") == UINT64_MAX);
        assert_true(etcd_u64(o, "b") == 7);
        assert_true(etcd_u64(o, "missing") == 0);
        json_object_put(o);
}

static void test_checks(void **state)
{
        struct peer_info self = self_info();
        int fd = -1;
        const char *ep[] = {"http://127.0.0.1:1"};
        struct membership_params p = {.host_name = "here",
                                      .address = "127.0.0.1:7000",
                                      .self = &self,
                                      .timeout_ms = 1000,
                                      .changed = wake,
                                      .userdata = &fd};
        struct svemig_error err = {0};
        struct membership *m = NULL;

        (void)state;
        assert_int_equal(membership_new(MEMBERSHIP_ETCD, &p, &m, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "etcd-endpoints"));
        p.etcd = (struct membership_etcd_params){
                .endpoints = ep, .n_endpoints = 1, .prefix = "/s/", .cert = "/c.pem", .lease_ttl_s = 10};
        assert_int_equal(membership_new(MEMBERSHIP_ETCD, &p, &m, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "etcd-key"));
        p.etcd.cert = NULL;
        p.address = NULL;
        assert_int_equal(membership_new(MEMBERSHIP_ETCD, &p, &m, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "listen"));
        p.host_name = "";
        assert_int_equal(membership_new(MEMBERSHIP_STATIC, &p, &m, &err), -EINVAL);
        assert_null(m);
}

static void test_static_without_peers(void **state)
{
        struct peer_info self = self_info();
        int fd = -1;
        struct membership_params p = {.host_name = "here", .self = &self, .changed = wake, .userdata = &fd};
        struct membership_view v;
        struct membership *m = NULL;

        (void)state;
        assert_int_equal(membership_new(MEMBERSHIP_STATIC, &p, &m, NULL), 0);
        assert_int_equal(membership_get(m, &v, NULL), 0);
        assert_int_equal(v.n_hosts, 1);
        assert_true(v.hosts[0].self && v.hosts[0].up);
        assert_string_equal(v.hosts[0].name, "here");
        assert_false(v.stale);
        assert_string_equal(membership_describe(m), "static");
        membership_view_done(&v);
        membership_free(m);
}

/* A port on loopback where nothing listens: bound, never listened on. */
static int dead_port(int *fd)
{
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);

        *fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(*fd >= 0);
        assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
        return ntohs(a.sin_port);
}

static void test_etcd_unreachable_is_stale(void **state)
{
        struct peer_info self = self_info();
        int wake_fd = eventfd(0, EFD_CLOEXEC), sock;
        char url[64];
        const char *ep[1] = {url};
        struct membership_params p = {
                .host_name = "here",
                .address = "127.0.0.1:7000",
                .self = &self,
                .timeout_ms = 1000,
                .changed = wake,
                .userdata = &wake_fd,
                .etcd = {.endpoints = ep, .n_endpoints = 1, .prefix = "/s/", .lease_ttl_s = 10},
        };
        struct membership *m = NULL;
        bool seen = false;

        (void)state;
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/", dead_port(&sock));
        assert_int_equal(membership_new(MEMBERSHIP_ETCD, &p, &m, NULL), 0);
        assert_non_null(strstr(membership_describe(m), "under /s/"));
        /* Each wake is an event; a bound of many of them only guards a hang. */
        for (int i = 0; i < 1000 && !seen; i++) {
                struct pollfd pfd = {.fd = wake_fd, .events = POLLIN};
                struct membership_view v;
                uint64_t n;

                assert_true(poll(&pfd, 1, 60000) == 1);
                (void)!read(wake_fd, &n, sizeof(n));
                assert_int_equal(membership_get(m, &v, NULL), 0);
                assert_true(v.stale);
                assert_int_equal(v.n_hosts, 1);
                seen = strstr(v.stale_reason, "cannot reach etcd") != NULL;
                membership_view_done(&v);
        }
        assert_true(seen);
        membership_free(m);
        close(sock);
        close(wake_fd);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_split_address),
                cmocka_unit_test(test_base64),
                cmocka_unit_test(test_prefix_end_and_u64),
                cmocka_unit_test(test_checks),
                cmocka_unit_test(test_static_without_peers),
                cmocka_unit_test(test_etcd_unreachable_is_stale),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
