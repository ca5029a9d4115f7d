/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Peer TLS's cost on one loopback TCP connection (bench/run.sh): N MiB
 * from a sender to a receiving process, plaintext, then through TLS 1.3
 * (GnuTLS on the sender, the receiver's session handed to a forked child
 * and carried on by peer_tls_record, as svemig-vmm would receive a guest).
 *   tls-bench CERT-DIR [MiB]   (CERT-DIR from scripts/make-test-ca.sh DIR a b)
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-util.h"
#include "peer-tls.h"

#define PIECE (1u << 20)

static void tcp_pair(int fds[2])
{
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        int l = socket(AF_INET, SOCK_STREAM, 0);

        if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
            getsockname(l, (struct sockaddr *)&sa, &len) < 0)
                exit(1);
        fds[0] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fds[0], (struct sockaddr *)&sa, sizeof(sa)) < 0)
                exit(1);
        fds[1] = accept(l, NULL, NULL);
        close(l);
}

static struct peer_tls_creds *load(const char *dir, const char *host)
{
        char ca[512], cert[512], key[512];
        struct peer_tls_creds *c = NULL;
        struct svemig_error err = {0};

        snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
        snprintf(cert, sizeof(cert), "%s/%s.pem", dir, host);
        snprintf(key, sizeof(key), "%s/%s-key.pem", dir, host);
        if (peer_tls_creds_load(ca, cert, key, &c, &err) < 0) {
                fprintf(stderr, "%s\n", err.msg);
                exit(1);
        }
        return c;
}

struct job {
        struct peer_tls_creds *creds;
        int fd, r;
        struct peer_tls_state tx, rx;
};

static void *accept_tls(void *userdata)
{
        static const char *const peers[] = {"a"};
        const struct peer_tls_names names = {.names = peers, .n = 1};
        struct job *j = userdata;
        struct svemig_error err = {0};
        struct peer_tls *t = NULL;

        j->r = peer_tls_handshake(j->creds, j->fd, true, &names, 5000, &t, NULL, 0, &err);
        if (j->r == 0)
                j->r = peer_tls_export(t, false, &j->tx, &err);
        if (j->r == 0)
                j->r = peer_tls_export(t, true, &j->rx, &err);
        peer_tls_free(t);
        return NULL;
}

/* The receiving child: reads mib MiB, plaintext (j NULL) or through the carried-on session. */
static int receive(int fd, const struct job *j, unsigned mib)
{
        struct peer_tls_record *r = NULL;
        struct svemig_error err = {0};
        uint8_t *buf = malloc(PIECE);

        if (j && peer_tls_record_new(&j->tx, &j->rx, &r, &err) < 0)
                return 1;
        for (unsigned i = 0; i < mib; i++) {
                if (r) {
                        if (peer_tls_record_recv(r, fd, buf, PIECE, &err) < 0)
                                return 1;
                } else {
                        for (size_t got = 0; got < PIECE;) {
                                ssize_t k = recv(fd, buf + got, PIECE - got, 0);

                                if (k <= 0)
                                        return 1;
                                got += (size_t)k;
                        }
                }
        }
        (void)!write(fd, "k", 1); /* plaintext: only the end is timed */
        peer_tls_record_free(r);
        free(buf);
        return 0;
}

static double run(const char *dir, unsigned mib, bool tls)
{
        struct peer_tls_creds *a = NULL, *b = NULL;
        struct svemig_error err = {0};
        struct peer_tls *t = NULL;
        struct job j = {0};
        uint8_t *buf = malloc(PIECE), ok;
        double t0, t1;
        int fds[2], status;
        pid_t pid;

        for (size_t i = 0; i < PIECE; i++)
                buf[i] = (uint8_t)(i * 131u ^ (i >> 9));
        tcp_pair(fds);
        if (tls) {
                const struct peer_tls_names want = {.expect = "b"};
                pthread_t th;

                a = load(dir, "a");
                b = load(dir, "b");
                j = (struct job){.creds = b, .fd = fds[1]};
                pthread_create(&th, NULL, accept_tls, &j);
                if (peer_tls_handshake(a, fds[0], false, &want, 5000, &t, NULL, 0, &err) < 0) {
                        fprintf(stderr, "%s\n", err.msg);
                        exit(1);
                }
                pthread_join(th, NULL);
        }
        pid = fork();
        if (pid == 0) {
                close(fds[0]);
                _exit(receive(fds[1], tls ? &j : NULL, mib));
        }
        close(fds[1]);
        t0 = bench_now();
        for (unsigned i = 0; i < mib; i++) {
                int r = t ? peer_tls_send(t, buf, PIECE, &err)
                          : (send(fds[0], buf, PIECE, 0) == PIECE ? 0 : -1);

                if (r < 0)
                        exit(1);
        }
        if (recv(fds[0], &ok, 1, MSG_WAITALL) != 1)
                exit(1);
        t1 = bench_now();
        waitpid(pid, &status, 0);
        peer_tls_free(t);
        peer_tls_creds_free(a);
        peer_tls_creds_free(b);
        close(fds[0]);
        free(buf);
        return t1 - t0;
}

int main(int argc, char **argv)
{
        unsigned mib = argc > 2 ? (unsigned)atoi(argv[2]) : 1024;
        double plain = 1e9, tls = 1e9;

        if (argc < 2) {
                fprintf(stderr, "usage: %s CERT-DIR [MiB]\n", argv[0]);
                return 2;
        }
        for (int i = 0; i < 3; i++) { /* best of 3 each, interleaved */
                double p = run(argv[1], mib, false), s = run(argv[1], mib, true);

                plain = p < plain ? p : plain;
                tls = s < tls ? s : tls;
        }
        printf("one connection, %u MiB, best of 3: plaintext %.0f MB/s, TLS 1.3 (carried on in another "
               "process) "
               "%.0f MB/s\n",
               mib, bench_mbps((uint64_t)mib << 20, plain), bench_mbps((uint64_t)mib << 20, tls));
        return 0;
}
