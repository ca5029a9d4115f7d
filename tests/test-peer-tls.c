/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/shared/peer-tls.c: mutual TLS between two real GnuTLS sessions on
 * a loopback TCP connection, with CAs made by scripts/make-test-ca.sh.
 * A peer is accepted only with a certificate from the CA naming an accepted
 * host; one without a certificate, from another CA, or naming another host
 * is refused, and both sides say why.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "peer-tls.h"

static char dir[] = "/tmp/svemig-tls-XXXXXX";

static char *path(const char *sub, const char *file)
{
        static char buf[8][512];
        static unsigned i;
        char *p = buf[i++ % 8];

        snprintf(p, 512, "%s/%s/%s", dir, sub, file);
        return p;
}

static int setup(void **state)
{
        char cmd[2048];

        (void)state;
        if (!mkdtemp(dir))
                return -1;
        snprintf(cmd, sizeof(cmd), "%s %s/ca a b && %s %s/other a b && cat %s/ca/ca.pem >>%s/other/ca.pem",
                 MAKE_TEST_CA, dir, MAKE_TEST_CA, dir, dir, dir);
        return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
        char cmd[600];

        (void)state;
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        return system(cmd) == 0 ? 0 : -1;
}

static void tcp_pair(int fds[2])
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(l >= 0);
        assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(l, 1), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
        fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(connect(fds[0], (struct sockaddr *)&sa, sizeof(sa)), 0);
        fds[1] = accept(l, NULL, NULL);
        assert_true(fds[1] >= 0);
        close(l);
}

/* The accepting side, on a thread: host b's listener, which accepts peer a only. */
struct server {
        const struct peer_tls_creds *creds;
        int fd, r;
        struct svemig_error err;
        char matched[64];
        char data[6];
        struct peer_tls_state rx; /* its read side, right after the handshake */
};

/* The dialling side's write state, right after its handshake. */
static struct peer_tls_state last_tx;

static void *serve(void *userdata)
{
        static const char *const peers[] = {"a"};
        const struct peer_tls_names accept = {.names = peers, .n = 1};
        struct server *s = userdata;
        struct peer_tls *t = NULL;

        s->r = peer_tls_handshake(s->creds, s->fd, true, &accept, 5000, &t, s->matched, sizeof(s->matched),
                                  &s->err);
        if (s->r == 0)
                s->r = peer_tls_export(t, true, &s->rx, &s->err);
        if (s->r == 0) {
                s->r = peer_tls_recv(t, s->data, 5, &s->err);
                if (s->r == 0)
                        s->r = peer_tls_send(t, "world", 5, &s->err);
        }
        peer_tls_free(t);
        close(s->fd);
        return NULL;
}

static struct peer_tls_creds *load(const char *ca, const char *host)
{
        struct peer_tls_creds *c = NULL;
        struct svemig_error err = {0};
        char cert[64], key[64];

        snprintf(cert, sizeof(cert), "%s.pem", host);
        snprintf(key, sizeof(key), "%s-key.pem", host);
        assert_int_equal(peer_tls_creds_load(path(ca, "ca.pem"), path(ca, cert), path(ca, key), &c, &err),
                         0);
        return c;
}

/* Host a (with client_creds) dials b, expecting b. Returns the client's result; *s the server's. */
static int dial(struct peer_tls_creds *client_creds, const char *expect, struct server *s,
                struct svemig_error *err)
{
        const struct peer_tls_names want = {.expect = expect};
        struct peer_tls_creds *b = load("ca", "b");
        struct peer_tls *t = NULL;
        char matched[64] = "", reply[6] = "";
        pthread_t th;
        int fds[2], r;

        tcp_pair(fds);
        *s = (struct server){.creds = b, .fd = fds[1]};
        assert_int_equal(pthread_create(&th, NULL, serve, s), 0);
        r = peer_tls_handshake(client_creds, fds[0], false, &want, 5000, &t, matched, sizeof(matched), err);
        if (r == 0)
                assert_int_equal(peer_tls_export(t, false, &last_tx, err), 0);
        if (r == 0) {
                assert_string_equal(matched, expect);
                r = peer_tls_send(t, "hello", 5, err);
                if (r == 0)
                        r = peer_tls_recv(t, reply, 5, err);
                if (r == 0)
                        assert_string_equal(reply, "world");
        }
        peer_tls_free(t);
        close(fds[0]);
        pthread_join(th, NULL);
        peer_tls_creds_free(b);
        return r;
}

static void test_peers_of_one_ca_talk(void **state)
{
        struct peer_tls_creds *a = load("ca", "a");
        struct svemig_error err = {0};
        struct server s;

        (void)state;
        assert_int_equal(dial(a, "b", &s, &err), 0);
        assert_int_equal(s.r, 0);
        assert_string_equal(s.matched, "a");
        assert_string_equal(s.data, "hello");
        peer_tls_creds_free(a);
}

static void test_certificate_of_another_ca_is_refused(void **state)
{
        /* Host a's name, but from another CA: b's listener must not take it for a. */
        struct peer_tls_creds *stranger = load("other", "a");
        struct svemig_error err = {0};
        struct server s;

        (void)state;
        /* It trusts b's CA too (its ca.pem holds both), so b is the one to refuse it. */
        assert_int_not_equal(dial(stranger, "b", &s, &err), 0);
        assert_true((s.r == -EACCES && strstr(s.err.msg, "not trusted")) ||
                    (s.r == -EPROTO && strstr(s.err.msg, "presented no certificate")));
        assert_string_equal(s.data, "");
        peer_tls_creds_free(stranger);
}

static void test_certificate_naming_another_host_is_refused(void **state)
{
        /* b's own certificate (right CA) dialling b: b accepts only a. */
        struct peer_tls_creds *b = load("ca", "b");
        struct svemig_error err = {0};
        struct server s;
        int r;

        (void)state;
        r = dial(b, "b", &s, &err);
        assert_int_equal(s.r, -EACCES);
        assert_non_null(
                strstr(s.err.msg, "its certificate names b, which is none of this host's [peer] names"));
        assert_string_equal(s.data, "");
        assert_int_not_equal(r, 0);
        peer_tls_creds_free(b);
}

static void test_dialler_refuses_the_wrong_host(void **state)
{
        /* a dials what it believes is c, but b answers: a refuses it, and says why. */
        struct peer_tls_creds *a = load("ca", "a");
        struct svemig_error err = {0};
        struct server s;

        (void)state;
        assert_int_equal(dial(a, "c", &s, &err), -EACCES);
        assert_non_null(strstr(err.msg, "its certificate names b, not c"));
        assert_string_equal(s.data, "");
        peer_tls_creds_free(a);
}

static void test_plain_client_gets_nothing(void **state)
{
        static const char hello[] = "\x08\x00\x00\x00\x00\x00\x00\x00plaintext";
        struct svemig_error err = {0};
        struct server s;
        pthread_t th;
        char buf[256];
        int fds[2];
        ssize_t k, total = 0;

        (void)state;
        struct peer_tls_creds *b = load("ca", "b");
        tcp_pair(fds);
        s = (struct server){.creds = b, .fd = fds[1]};
        assert_int_equal(pthread_create(&th, NULL, serve, &s), 0);
        assert_int_equal(send(fds[0], hello, sizeof(hello) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(hello) - 1);
        while ((k = recv(fds[0], buf, sizeof(buf), 0)) > 0)
                total += k;
        pthread_join(th, NULL);
        assert_int_not_equal(s.r, 0);
        assert_string_equal(s.data, "");
        assert_true(total < 16); /* an alert at most */
        close(fds[0]);
        peer_tls_creds_free(b);
        (void)err;
}

static void test_bad_files_are_named(void **state)
{
        struct peer_tls_creds *c = NULL;
        struct svemig_error err = {0};

        (void)state;
        assert_int_equal(peer_tls_creds_load(path("ca", "missing.pem"), path("ca", "a.pem"),
                                             path("ca", "a-key.pem"), &c, &err),
                         -ENOENT);
        assert_non_null(strstr(err.msg, "missing.pem"));
        assert_int_equal(peer_tls_creds_load(path("ca", "ca.pem"), path("ca", "a.pem"),
                                             path("ca", "b-key.pem"), &c, &err),
                         -EINVAL);
        assert_non_null(strstr(err.msg, "tls-key must be the key tls-cert was made for"));
        assert_int_equal(peer_tls_creds_load(path("ca", "ca.pem"), path("other", "b.pem"),
                                             path("other", "b-key.pem"), &c, &err),
                         -EINVAL);
        assert_non_null(strstr(err.msg, "does not chain to the CA"));
        assert_null(c);
}

static void test_record_state_exports(void **state)
{
        /* What a record layer carried on in another process (or kTLS) takes: a's write side is b's read
         * side. */
        struct peer_tls_creds *a = load("ca", "a");
        struct svemig_error err = {0};
        struct server s;

        (void)state;
        assert_int_equal(dial(a, "b", &s, &err), 0);
        assert_int_equal(s.r, 0);
        assert_true(s.rx.key_size == 16 || s.rx.key_size == 32);
        assert_int_equal(s.rx.iv_size, 12);
        assert_int_equal(s.rx.key_size, last_tx.key_size);
        assert_memory_equal(s.rx.key, last_tx.key, s.rx.key_size);
        assert_memory_equal(s.rx.iv, last_tx.iv, 12);
        assert_memory_equal(s.rx.seq, last_tx.seq, 8);
        assert_int_equal(s.rx.cipher, last_tx.cipher);
        peer_tls_creds_free(a);
}

/* b's listener hands its session to another process, as svemigd hands a connection to svemig-vmm. */
struct handshake_job {
        struct peer_tls_creds *creds;
        int fd, r;
        struct peer_tls_state tx, rx;
};

static void *handshake_and_export(void *userdata)
{
        static const char *const peers[] = {"a"};
        const struct peer_tls_names accept = {.names = peers, .n = 1};
        struct handshake_job *j = userdata;
        struct peer_tls *t = NULL;
        struct svemig_error err = {0};

        j->r = peer_tls_handshake(j->creds, j->fd, true, &accept, 5000, &t, NULL, 0, &err);
        if (j->r == 0)
                j->r = peer_tls_export(t, false, &j->tx, &err);
        if (j->r == 0)
                j->r = peer_tls_export(t, true, &j->rx, &err);
        peer_tls_free(t); /* sends nothing: the session goes on in the child */
        return NULL;
}

#define BULK (1u << 20)

static uint8_t pattern(size_t i, unsigned salt)
{
        return (uint8_t)((i * 131u) ^ (i >> 9) ^ salt);
}

/* In the child: 0 when all went as it should. */
static int carry_on(const struct handshake_job *j, int fd)
{
        struct peer_tls_record *r = NULL;
        struct svemig_error err = {0};
        uint8_t *buf = malloc(BULK);
        int bad = 0;

        if (!buf || peer_tls_record_new(&j->tx, &j->rx, &r, &err) < 0)
                return 1;
        /* Odd sizes: reads that end inside records and span several. */
        for (size_t off = 0; off < BULK && !bad;) {
                size_t n = off + 7777 > BULK ? BULK - off : 7777;

                bad = peer_tls_record_recv(r, fd, buf + off, n, &err) < 0;
                off += n;
        }
        for (size_t i = 0; i < BULK && !bad; i++)
                bad = buf[i] != pattern(i, 1);
        for (size_t i = 0; i < BULK; i++)
                buf[i] = pattern(i, 2);
        if (!bad)
                bad = peer_tls_record_send(r, fd, buf, BULK, &err) < 0;
        /* The peer's close_notify reads as the end. */
        if (!bad)
                bad = peer_tls_record_recv(r, fd, buf, 1, &err) != -EPIPE ? 2 : 0;
        if (bad)
                fprintf(stderr, "child: %s\n", err.msg);
        peer_tls_record_free(r);
        free(buf);
        return bad;
}

static void test_session_goes_on_in_another_process(void **state)
{
        struct peer_tls_creds *a = load("ca", "a"), *b = load("ca", "b");
        const struct peer_tls_names want = {.expect = "b"};
        struct handshake_job j = {.creds = b};
        struct svemig_error err = {0};
        struct peer_tls *t = NULL;
        uint8_t *buf = malloc(BULK);
        pthread_t th;
        int fds[2], status;
        pid_t pid;

        (void)state;
        assert_non_null(buf);
        tcp_pair(fds);
        j.fd = fds[1];
        assert_int_equal(pthread_create(&th, NULL, handshake_and_export, &j), 0);
        assert_int_equal(peer_tls_handshake(a, fds[0], false, &want, 5000, &t, NULL, 0, &err), 0);
        pthread_join(th, NULL);
        assert_int_equal(j.r, 0);

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(fds[0]);
                _exit(carry_on(&j, fds[1]));
        }
        close(fds[1]);
        for (size_t i = 0; i < BULK; i++)
                buf[i] = pattern(i, 1);
        assert_int_equal(peer_tls_send(t, buf, BULK, &err), 0);
        memset(buf, 0, BULK);
        assert_int_equal(peer_tls_recv(t, buf, BULK, &err), 0);
        for (size_t i = 0; i < BULK; i++)
                if (buf[i] != pattern(i, 2))
                        fail_msg("byte %zu from the child differs", i);
        assert_int_equal(peer_tls_bye(t, &err), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        peer_tls_free(t);
        close(fds[0]);
        free(buf);
        peer_tls_creds_free(a);
        peer_tls_creds_free(b);
}

/* The server's side of a relayed connection: the handshake accepting any name, then the relay. */
struct relay_side {
        const struct peer_tls_creds *creds;
        int fd, local, r;
        char cert_names[200];
        bool names_a, names_b;
        struct svemig_error err;
};

static void *relay_serve(void *userdata)
{
        static const struct peer_tls_names any = {.any = true};
        struct relay_side *s = userdata;
        struct peer_tls_cert *cert = NULL;
        struct peer_tls *t = NULL;

        s->r = peer_tls_handshake(s->creds, s->fd, true, &any, 5000, &t, NULL, 0, &s->err);
        if (s->r == 0)
                s->r = peer_tls_peer_cert(t, &cert, &s->err);
        if (s->r == 0) {
                s->names_a = peer_tls_cert_names(cert, "a");
                s->names_b = peer_tls_cert_names(cert, "b");
                peer_tls_cert_describe(cert, s->cert_names, sizeof(s->cert_names));
                peer_tls_cert_free(cert);
                s->r = peer_tls_relay(t, s->fd, &s->local, &s->err);
        } else {
                peer_tls_free(t);
                close(s->fd);
        }
        return NULL;
}

/* Moves len bytes from one plain end to the other, both ways at once (a thread writes one way). */
struct pour {
        int fd;
        const uint8_t *buf;
        size_t len;
};

static void *pour(void *userdata)
{
        struct pour *p = userdata;
        size_t off = 0;

        while (off < p->len) {
                ssize_t k = write(p->fd, p->buf + off, p->len - off);

                if (k <= 0)
                        break;
                off += (size_t)k;
        }
        shutdown(p->fd, SHUT_WR);
        return NULL;
}

static size_t drain(int fd, uint8_t *buf, size_t size)
{
        size_t got = 0;

        for (;;) {
                ssize_t k = read(fd, buf + got, size - got);

                if (k <= 0)
                        return got;
                got += (size_t)k;
        }
}

/*
 * The relay: both ends see a plain socket; 4 MiB cross each way at once, in
 * order, and each side's shutdown reaches the other as EOF (close_notify).
 */
static void test_relay_carries_both_ways_and_ends(void **state)
{
        const size_t len = 4u << 20;
        struct peer_tls_creds *a = load("ca", "a"), *b = load("ca", "b");
        struct relay_side s = {.creds = b};
        struct svemig_error err = {0};
        uint8_t *up = malloc(len), *down = malloc(len), *got_up = malloc(len + 1),
                *got_down = malloc(len + 1);
        pthread_t th, pa, pb;
        int fds[2], local = -1;

        (void)state;
        assert_non_null(up && down && got_up && got_down);
        for (size_t i = 0; i < len; i++) {
                up[i] = (uint8_t)(i * 7 + 1);
                down[i] = (uint8_t)(i * 13 + 5);
        }
        tcp_pair(fds);
        s.fd = fds[1];
        assert_int_equal(pthread_create(&th, NULL, relay_serve, &s), 0);
        assert_int_equal(peer_tls_secure_dial(a, fds[0], "b", 5000, &local, &err), 0);
        pthread_join(th, NULL);
        assert_int_equal(s.r, 0);
        assert_true(s.names_a);
        assert_false(s.names_b);
        assert_string_equal(s.cert_names, "a");

        struct pour pu = {.fd = local, .buf = up, .len = len}, pd = {.fd = s.local, .buf = down, .len = len};
        assert_int_equal(pthread_create(&pa, NULL, pour, &pu), 0);
        assert_int_equal(pthread_create(&pb, NULL, pour, &pd), 0);
        assert_int_equal(drain(s.local, got_up, len + 1), len);
        assert_int_equal(drain(local, got_down, len + 1), len);
        pthread_join(pa, NULL);
        pthread_join(pb, NULL);
        assert_memory_equal(got_up, up, len);
        assert_memory_equal(got_down, down, len);
        close(local);
        close(s.local);
        peer_tls_creds_free(a);
        peer_tls_creds_free(b);
        free(up);
        free(down);
        free(got_up);
        free(got_down);
}

/* A dialler that wants b but reaches a host whose certificate names a: refused, with the reason. */
static void test_secure_dial_refuses_the_wrong_host(void **state)
{
        struct peer_tls_creds *a = load("ca", "a");
        struct relay_side s = {.creds = a};
        struct svemig_error err = {0};
        pthread_t th;
        int fds[2], local = -1;

        (void)state;
        tcp_pair(fds);
        s.fd = fds[1];
        assert_int_equal(pthread_create(&th, NULL, relay_serve, &s), 0);
        assert_int_equal(peer_tls_secure_dial(a, fds[0], "b", 5000, &local, &err), -EACCES);
        assert_non_null(strstr(err.msg, "its certificate names a, not b"));
        pthread_join(th, NULL);
        assert_true(s.r < 0);
        peer_tls_creds_free(a);
}

static void test_tampered_record_is_refused(void **state)
{
        struct peer_tls_creds *a = load("ca", "a"), *b = load("ca", "b");
        const struct peer_tls_names want = {.expect = "b"};
        struct handshake_job j = {.creds = b};
        struct peer_tls_record *r = NULL;
        struct svemig_error err = {0};
        struct peer_tls *t = NULL;
        uint8_t rec[64], got[8];
        pthread_t th;
        int fds[2], sp[2];
        ssize_t n;

        (void)state;
        tcp_pair(fds);
        j.fd = fds[1];
        assert_int_equal(pthread_create(&th, NULL, handshake_and_export, &j), 0);
        assert_int_equal(peer_tls_handshake(a, fds[0], false, &want, 5000, &t, NULL, 0, &err), 0);
        pthread_join(th, NULL);
        assert_int_equal(j.r, 0);
        /* One record as GnuTLS sent it, a bit flipped on the way. */
        assert_int_equal(peer_tls_send(t, "secret", 6, &err), 0);
        n = recv(fds[1], rec, 5 + 6 + 1 + 16, MSG_WAITALL);
        assert_int_equal(n, 5 + 6 + 1 + 16);
        rec[9] ^= 0x40;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
        assert_int_equal(send(sp[0], rec, (size_t)n, 0), n);
        assert_int_equal(peer_tls_record_new(&j.tx, &j.rx, &r, &err), 0);
        assert_int_equal(peer_tls_record_recv(r, sp[1], got, 6, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "fails its check"));
        peer_tls_record_free(r);
        peer_tls_free(t);
        close(sp[0]);
        close(sp[1]);
        close(fds[0]);
        close(fds[1]);
        peer_tls_creds_free(a);
        peer_tls_creds_free(b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_peers_of_one_ca_talk),
                cmocka_unit_test(test_certificate_of_another_ca_is_refused),
                cmocka_unit_test(test_certificate_naming_another_host_is_refused),
                cmocka_unit_test(test_dialler_refuses_the_wrong_host),
                cmocka_unit_test(test_plain_client_gets_nothing),
                cmocka_unit_test(test_bad_files_are_named),
                cmocka_unit_test(test_record_state_exports),
                cmocka_unit_test(test_session_goes_on_in_another_process),
                cmocka_unit_test(test_tampered_record_is_refused),
                cmocka_unit_test(test_relay_carries_both_ways_and_ends),
                cmocka_unit_test(test_secure_dial_refuses_the_wrong_host),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
