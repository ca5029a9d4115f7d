/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mutual TLS between peers with GnuTLS (peer-tls.h). Only TLS 1.3, no
 * session tickets (a migration's connections are few and long: resumption
 * buys nothing, and a ticket is one more message after the handshake that a
 * record layer carried on elsewhere would have to read).
 */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "peer-tls.h"

#define PEER_TLS_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3"

struct peer_tls_creds {
        gnutls_certificate_credentials_t cred;
};

struct peer_tls {
        gnutls_session_t session;
        const struct peer_tls_names *accept;
        char *matched;
        size_t matched_size;
        char why[256]; /* the verify callback's reason */
};

static int tls_error(struct svemig_error *err, int code, int gnutls_r, const char *what)
{
        return svemig_error_set(err, code, "%s: %s", what, gnutls_strerror(gnutls_r));
}

void peer_tls_creds_free(struct peer_tls_creds *c)
{
        if (!c)
                return;
        if (c->cred)
                gnutls_certificate_free_credentials(c->cred);
        free(c);
}

/* This host's own certificate must chain to the CA: a peer would refuse it otherwise, later and less
 * clearly. */
static int check_own_chain(struct peer_tls_creds *c, const char *ca_file, const char *cert_file,
                           struct svemig_error *err)
{
        gnutls_x509_crt_t *chain = NULL;
        unsigned n = 0, status = 0;
        gnutls_x509_trust_list_t tl = NULL;
        int r;

        r = gnutls_certificate_get_x509_crt(c->cred, 0, &chain, &n);
        if (r < 0)
                return tls_error(err, EINVAL, r, cert_file);
        gnutls_certificate_get_trust_list(c->cred, &tl);
        r = gnutls_x509_trust_list_verify_crt(tl, chain, n, 0, &status, NULL);
        if (r >= 0 && status != 0) {
                gnutls_datum_t out = {0};

                (void)gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0);
                r = svemig_error_set(err, EINVAL,
                                     "%s does not chain to the CA in %s: %s; sign it with that CA (or set "
                                     "[cluster] tls-ca to the CA that signed it)",
                                     cert_file, ca_file, out.data ? (const char *)out.data : "not trusted");
                gnutls_free(out.data);
        } else if (r < 0) {
                r = tls_error(err, EINVAL, r, cert_file);
        }
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(chain[i]);
        gnutls_free(chain);
        return r < 0 ? r : 0;
}

int peer_tls_creds_load(const char *ca_file, const char *cert_file, const char *key_file,
                        struct peer_tls_creds **out, struct svemig_error *err)
{
        struct peer_tls_creds *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return svemig_error_set(err, ENOMEM, "out of memory");
        r = gnutls_certificate_allocate_credentials(&c->cred);
        if (r < 0) {
                r = tls_error(err, ENOMEM, r, "cannot set up TLS credentials");
                goto fail;
        }
        r = gnutls_certificate_set_x509_trust_file(c->cred, ca_file, GNUTLS_X509_FMT_PEM);
        if (r <= 0) {
                r = r == 0 ? svemig_error_set(err, EINVAL, "%s holds no CA certificate (PEM expected)",
                                              ca_file)
                           : svemig_error_set(err, r == GNUTLS_E_FILE_ERROR ? ENOENT : EINVAL,
                                              "cannot read the CA certificate %s: %s", ca_file,
                                              gnutls_strerror(r));
                goto fail;
        }
        r = gnutls_certificate_set_x509_key_file(c->cred, cert_file, key_file, GNUTLS_X509_FMT_PEM);
        if (r < 0) {
                r = svemig_error_set(err, r == GNUTLS_E_FILE_ERROR ? ENOENT : EINVAL,
                                     "cannot use the certificate %s with the key %s: %s%s", cert_file,
                                     key_file, gnutls_strerror(r),
                                     r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH
                                             ? " (tls-key must be the key tls-cert was made for)"
                                             : "");
                goto fail;
        }
        r = check_own_chain(c, ca_file, cert_file, err);
        if (r < 0)
                goto fail;
        *out = c;
        return 0;
fail:
        peer_tls_creds_free(c);
        return r;
}

/* The names a certificate gives, for a refusal: its DNS SANs, else its CN. */
static void cert_names(gnutls_x509_crt_t crt, char *buf, size_t size)
{
        size_t used = 0;

        buf[0] = 0;
        for (unsigned i = 0;; i++) {
                char name[256];
                size_t len = sizeof(name) - 1;
                unsigned type;
                int r = gnutls_x509_crt_get_subject_alt_name2(crt, i, name, &len, &type, NULL);

                if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        break;
                if (r < 0 || type != GNUTLS_SAN_DNSNAME)
                        continue;
                name[len] = 0;
                used += (size_t)snprintf(buf + used, used < size ? size - used : 0, "%s%s", used ? ", " : "",
                                         name);
        }
        if (!buf[0]) {
                size_t len = size;

                if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &len) < 0)
                        snprintf(buf, size, "no name");
        }
        for (char *p = buf; *p; p++) /* a peer's bytes, for the journal */
                if (*p < 0x20 || *p >= 0x7f)
                        *p = '?';
}

static bool names_one(gnutls_x509_crt_t crt, const char *name)
{
        return name && gnutls_x509_crt_check_hostname2(crt, name, GNUTLS_VERIFY_DO_NOT_ALLOW_WILDCARDS);
}

/* During the handshake: the chain, then the name. Nonzero fails the handshake with an alert. */
static int verify_peer(gnutls_session_t session)
{
        struct peer_tls *t = gnutls_session_get_ptr(session);
        const gnutls_datum_t *certs;
        unsigned n = 0, status = 0;
        gnutls_x509_crt_t crt;
        char names[200];
        int r;

        r = gnutls_certificate_verify_peers2(session, &status);
        if (r < 0 || status != 0) {
                gnutls_datum_t out = {0};

                if (r >= 0)
                        (void)gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0);
                snprintf(t->why, sizeof(t->why), "its certificate is not trusted: %s",
                         r < 0      ? gnutls_strerror(r)
                         : out.data ? (const char *)out.data
                                    : "unknown");
                gnutls_free(out.data);
                return -1;
        }
        certs = gnutls_certificate_get_peers(session, &n);
        if (!certs || n == 0 || gnutls_x509_crt_init(&crt) < 0) {
                snprintf(t->why, sizeof(t->why), "it sent no certificate");
                return -1;
        }
        r = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);
        if (r >= 0) {
                const char *hit = t->accept->any ? "" : NULL;

                if (!hit && t->accept->expect && names_one(crt, t->accept->expect))
                        hit = t->accept->expect;
                for (size_t i = 0; !hit && i < t->accept->n; i++)
                        if (names_one(crt, t->accept->names[i]))
                                hit = t->accept->names[i];
                if (hit) {
                        if (t->matched)
                                snprintf(t->matched, t->matched_size, "%s", hit);
                        gnutls_x509_crt_deinit(crt);
                        return 0;
                }
                cert_names(crt, names, sizeof(names));
                if (t->accept->expect)
                        snprintf(t->why, sizeof(t->why),
                                 "its certificate names %s, not %s: fix [peer %s] address in migrate.conf, "
                                 "or give that host a certificate naming %s",
                                 names, t->accept->expect, t->accept->expect, t->accept->expect);
                else
                        snprintf(t->why, sizeof(t->why),
                                 "its certificate names %s, which is none of this host's [peer] names",
                                 names);
        } else {
                snprintf(t->why, sizeof(t->why), "its certificate cannot be read: %s", gnutls_strerror(r));
        }
        gnutls_x509_crt_deinit(crt);
        return -1;
}

void peer_tls_free(struct peer_tls *t)
{
        if (!t)
                return;
        if (t->session)
                gnutls_deinit(t->session);
        free(t);
}

int peer_tls_handshake(const struct peer_tls_creds *c, int fd, bool server,
                       const struct peer_tls_names *accept, unsigned timeout_ms, struct peer_tls **out,
                       char *matched, size_t size, struct svemig_error *err)
{
        struct peer_tls *t;
        int r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return svemig_error_set(err, ENOMEM, "out of memory");
        t->accept = accept;
        t->matched = matched;
        t->matched_size = size;
        r = gnutls_init(&t->session, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_TICKETS);
        if (r < 0) {
                r = tls_error(err, ENOMEM, r, "cannot start a TLS session");
                goto fail;
        }
        gnutls_session_set_ptr(t->session, t);
        r = gnutls_priority_set_direct(t->session, PEER_TLS_PRIORITY, NULL);
        if (r == 0)
                r = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, c->cred);
        if (r < 0) {
                r = tls_error(err, EINVAL, r, "cannot set up a TLS session");
                goto fail;
        }
        if (server)
                gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_function(t->session, verify_peer);
        gnutls_transport_set_int(t->session, fd);
        gnutls_handshake_set_timeout(t->session, timeout_ms ? timeout_ms : GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
        do
                r = gnutls_handshake(t->session);
        while (r < 0 && !gnutls_error_is_fatal(r));
        if (r < 0) {
                if (t->why[0])
                        r = svemig_error_set(err, EACCES, "TLS: the peer is refused: %s", t->why);
                else if (r == GNUTLS_E_TIMEDOUT)
                        r = svemig_error_set(err, ETIMEDOUT, "TLS: no handshake from the peer within %u ms",
                                             timeout_ms);
                else if (r == GNUTLS_E_NO_CERTIFICATE_FOUND || r == GNUTLS_E_CERTIFICATE_REQUIRED)
                        r = svemig_error_set(err, EPROTO, "TLS: the peer presented no certificate: %s",
                                             gnutls_strerror(r));
                else if (r == GNUTLS_E_PULL_ERROR || r == GNUTLS_E_PREMATURE_TERMINATION ||
                         r == GNUTLS_E_PUSH_ERROR)
                        r = svemig_error_set(
                                err, EPROTO,
                                "TLS: the peer closed the connection during the handshake (%s): "
                                "it may not trust this host's certificate, or not speak TLS "
                                "(peer-tls = no there?)",
                                gnutls_strerror(r));
                else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
                        r = svemig_error_set(err, EACCES, "TLS: the peer refused this host: %s",
                                             gnutls_alert_get_name(gnutls_alert_get(t->session)));
                else if (r == GNUTLS_E_UNEXPECTED_PACKET_LENGTH ||
                         r == GNUTLS_E_UNSUPPORTED_VERSION_PACKET || r == GNUTLS_E_UNEXPECTED_PACKET)
                        r = svemig_error_set(
                                err, EPROTO,
                                "TLS: the peer does not speak TLS (%s): peer TLS is on here; is "
                                "peer-tls = no there?",
                                gnutls_strerror(r));
                else
                        r = tls_error(err, EPROTO, r, "TLS handshake with the peer failed");
                goto fail;
        }
        *out = t;
        return 0;
fail:
        peer_tls_free(t);
        return r;
}

int peer_tls_send(struct peer_tls *t, const void *buf, size_t len, struct svemig_error *err)
{
        const uint8_t *p = buf;

        while (len > 0) {
                ssize_t k = gnutls_record_send(t->session, p, len);

                if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
                        continue;
                if (k < 0)
                        return tls_error(err, EPIPE, (int)k, "TLS: sending failed");
                p += k;
                len -= (size_t)k;
        }
        return 0;
}

int peer_tls_recv(struct peer_tls *t, void *buf, size_t len, struct svemig_error *err)
{
        uint8_t *p = buf;

        while (len > 0) {
                ssize_t k = gnutls_record_recv(t->session, p, len);

                if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
                        continue;
                if (k == 0)
                        return svemig_error_set(err, EPIPE, "the peer closed the connection");
                if (k < 0)
                        return tls_error(err, EBADMSG, (int)k, "TLS: receiving failed");
                p += k;
                len -= (size_t)k;
        }
        return 0;
}

int peer_tls_bye(struct peer_tls *t, struct svemig_error *err)
{
        int r;

        do
                r = gnutls_bye(t->session, GNUTLS_SHUT_WR);
        while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
        return r < 0 ? tls_error(err, EPIPE, r, "TLS: cannot end the session") : 0;
}

struct peer_tls_cert {
        gnutls_x509_crt_t crt;
};

int peer_tls_peer_cert(struct peer_tls *t, struct peer_tls_cert **out, struct svemig_error *err)
{
        const gnutls_datum_t *certs;
        struct peer_tls_cert *c;
        unsigned n = 0;
        int r;

        certs = gnutls_certificate_get_peers(t->session, &n);
        if (!certs || n == 0)
                return svemig_error_set(err, EPROTO, "TLS: the peer presented no certificate");
        c = calloc(1, sizeof(*c));
        if (!c)
                return svemig_error_set(err, ENOMEM, "out of memory");
        r = gnutls_x509_crt_init(&c->crt);
        if (r >= 0)
                r = gnutls_x509_crt_import(c->crt, &certs[0], GNUTLS_X509_FMT_DER);
        if (r < 0) {
                peer_tls_cert_free(c);
                return tls_error(err, EPROTO, r, "TLS: the peer's certificate cannot be read");
        }
        *out = c;
        return 0;
}

bool peer_tls_cert_names(const struct peer_tls_cert *c, const char *host)
{
        return names_one(c->crt, host);
}

const char *peer_tls_cert_describe(const struct peer_tls_cert *c, char *buf, size_t size)
{
        cert_names(c->crt, buf, size);
        return buf;
}

void peer_tls_cert_free(struct peer_tls_cert *c)
{
        if (!c)
                return;
        if (c->crt)
                gnutls_x509_crt_deinit(c->crt);
        free(c);
}

/* ---- the relay: a session behind a socketpair ---- */

#define RELAY_BUF      (64u * 1024u)
#define RELAY_PAIR_BUF (4 << 20)

/*
 * One thread per connection, both directions, every call non-blocking: a
 * GnuTLS session is not used by two threads at once (a sender and a
 * receiver each in its own thread stalled migrations under load).
 */
struct relay {
        struct peer_tls *t;
        int net, local;
        uint8_t in[RELAY_BUF], out[RELAY_BUF];
        size_t in_off, in_len;   /* opened from the peer, not yet written to local */
        size_t out_off, out_len; /* read from local, not yet taken by GnuTLS */
        bool local_eof;          /* the local side sends no more */
        bool local_gone;         /* ... and reads no more (closed) */
        bool net_eof;            /* the peer sends no more (close_notify, EOF or a bad record) */
        bool net_broken;         /* the peer cannot be written to */
        bool bye_done;
        bool send_again, bye_again; /* GnuTLS said try again: wait for POLLOUT */
};

static void relay_free(struct relay *r)
{
        peer_tls_free(r->t);
        close(r->net);
        close(r->local);
        free(r);
}

/* Moves what can move now, without blocking. */
static void relay_step(struct relay *r)
{
        ssize_t k;

        /* The peer's bytes to the local side. */
        while (!r->local_gone && r->in_off < r->in_len) {
                k = send(r->local, r->in + r->in_off, r->in_len - r->in_off, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (k > 0)
                        r->in_off += (size_t)k;
                else if (k < 0 && (errno == EAGAIN || errno == EINTR))
                        break;
                else
                        r->local_gone = true;
        }
        while (!r->net_eof && !r->local_gone && r->in_off == r->in_len) {
                k = gnutls_record_recv(r->t->session, r->in, sizeof(r->in));
                if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
                        break;
                if (k <= 0) {
                        /* close_notify, EOF or a record failing its check: the local side reads the end. */
                        r->net_eof = true;
                        shutdown(r->local, SHUT_WR);
                        break;
                }
                r->in_off = 0;
                r->in_len = (size_t)k;
                while (r->in_off < r->in_len) {
                        k = send(r->local, r->in + r->in_off, r->in_len - r->in_off,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (k > 0)
                                r->in_off += (size_t)k;
                        else if (k < 0 && (errno == EAGAIN || errno == EINTR))
                                break;
                        else
                                r->local_gone = true, r->in_off = r->in_len;
                }
        }

        /* The local side's bytes to the peer, sealed. */
        r->send_again = false;
        while (!r->net_broken) {
                if (r->out_off == r->out_len) {
                        if (r->local_eof)
                                break;
                        k = recv(r->local, r->out, sizeof(r->out), MSG_DONTWAIT);
                        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                                break;
                        if (k <= 0) {
                                r->local_eof = true;
                                break;
                        }
                        r->out_off = 0;
                        r->out_len = (size_t)k;
                }
                k = gnutls_record_send(r->t->session, r->out + r->out_off, r->out_len - r->out_off);
                if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED) {
                        r->send_again = true;
                        break;
                }
                if (k < 0) {
                        /* The peer is gone: the local side's writes fail, its reads end. */
                        r->net_broken = true;
                        shutdown(r->local, SHUT_RDWR);
                        break;
                }
                r->out_off += (size_t)k;
        }
        /* The local side is done: the peer reads a clean end. */
        if (r->local_eof && r->out_off == r->out_len && !r->bye_done && !r->net_broken) {
                int b = gnutls_bye(r->t->session, GNUTLS_SHUT_WR);

                r->bye_again = b == GNUTLS_E_AGAIN || b == GNUTLS_E_INTERRUPTED;
                if (!r->bye_again) {
                        r->bye_done = true;
                        shutdown(r->net, SHUT_WR);
                }
        }
}

static bool relay_done(const struct relay *r)
{
        bool out_done = r->net_broken || r->bye_done;
        bool in_done = r->local_gone || (r->net_eof && r->in_off == r->in_len);

        return out_done && in_done;
}

static void *relay_main(void *userdata)
{
        struct relay *r = userdata;

        for (;;) {
                struct pollfd p[2] = {{.fd = r->net}, {.fd = r->local}};

                relay_step(r);
                if (relay_done(r))
                        break;
                if (!r->net_eof && !r->local_gone && r->in_off == r->in_len) {
                        if (gnutls_record_check_pending(r->t->session) > 0)
                                continue;
                        p[0].events |= POLLIN;
                }
                if (r->send_again || r->bye_again)
                        p[0].events |= POLLOUT;
                if (!r->local_eof && r->out_off == r->out_len && !r->net_broken)
                        p[1].events |= POLLIN;
                if (!r->local_gone && r->in_off < r->in_len)
                        p[1].events |= POLLOUT;
                if (poll(p, 2, -1) < 0 && errno != EINTR)
                        break;
                /* The local side closed: nobody reads what would come; stop reading (closing then resets).
                 */
                if ((p[1].revents & (POLLHUP | POLLERR)) && !(p[1].revents & POLLIN)) {
                        r->local_gone = true;
                        r->local_eof = true;
                }
                if ((p[0].revents & (POLLHUP | POLLERR)) && !(p[0].revents & POLLIN) && r->send_again)
                        r->net_broken = true;
        }
        relay_free(r);
        return NULL;
}

int peer_tls_relay(struct peer_tls *t, int net_fd, int *out, struct svemig_error *err)
{
        int flags = fcntl(net_fd, F_GETFL), sv[2] = {-1, -1}, r;
        struct relay *rl = NULL;
        pthread_attr_t attr;
        pthread_t th;

        if (flags < 0 || fcntl(net_fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
            fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0 ||
            (!(flags & O_NONBLOCK) ? 0 : fcntl(sv[0], F_SETFL, O_NONBLOCK)) < 0) {
                r = svemig_error_set(err, errno, "TLS: cannot set up the connection's relay: %s",
                                     strerror(errno));
                goto fail;
        }
        /*
         * The pair holds what a TCP socket's buffers would (the engine sizes its receive buffers to
         * megabytes and counts on them): a unix stream socket's capacity is its writer's SO_SNDBUF,
         * a few hundred KiB by default. Past wmem_max only root's SO_SNDBUFFORCE gets it.
         */
        for (unsigned i = 0; i < 2; i++)
                if (setsockopt(sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &(int){RELAY_PAIR_BUF}, sizeof(int)) < 0)
                        (void)setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &(int){RELAY_PAIR_BUF}, sizeof(int));
        rl = calloc(1, sizeof(*rl));
        if (!rl) {
                r = svemig_error_set(err, ENOMEM, "out of memory");
                goto fail;
        }
        rl->t = t;
        rl->net = net_fd;
        rl->local = sv[1];
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = -pthread_create(&th, &attr, relay_main, rl);
        pthread_attr_destroy(&attr);
        if (r < 0) {
                free(rl);
                r = svemig_error_set(err, -r, "TLS: cannot start the connection's relay: %s", strerror(-r));
                goto fail;
        }
        *out = sv[0];
        return 0;
fail:
        if (sv[0] >= 0) {
                close(sv[0]);
                close(sv[1]);
        }
        peer_tls_free(t);
        close(net_fd);
        return r;
}

int peer_tls_secure_dial(void *creds, int fd, const char *name, unsigned timeout_ms, int *out,
                         struct svemig_error *err)
{
        const struct peer_tls_names want = {.expect = name};
        int flags = fcntl(fd, F_GETFL);
        struct peer_tls *t;
        int r;

        /* The handshake blocks, bounded by its own timeout. */
        if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
                r = svemig_error_set(err, errno, "TLS: %s", strerror(errno));
                close(fd);
                return r;
        }
        r = peer_tls_handshake(creds, fd, false, &want, timeout_ms, &t, NULL, 0, err);
        if (r < 0) {
                close(fd);
                return r;
        }
        (void)fcntl(fd, F_SETFL, flags);
        return peer_tls_relay(t, fd, out, err);
}

const char *peer_tls_description(struct peer_tls *t, char *buf, size_t size)
{
        char *d = gnutls_session_get_desc(t->session);

        snprintf(buf, size, "%s", d ? d : "TLS");
        gnutls_free(d);
        return buf;
}

int peer_tls_export(struct peer_tls *t, bool read, struct peer_tls_state *out, struct svemig_error *err)
{
        gnutls_datum_t key = {0}, iv = {0};
        int r;

        memset(out, 0, sizeof(*out));
        r = gnutls_record_get_state(t->session, read, NULL, &iv, &key, out->seq);
        if (r < 0)
                return tls_error(err, EINVAL, r, "TLS: cannot read the session's record state");
        if (key.size > sizeof(out->key) || iv.size > sizeof(out->iv))
                return svemig_error_set(err, ENOTSUP,
                                        "TLS: the cipher's key (%u bytes) or IV (%u) is too large", key.size,
                                        iv.size);
        out->cipher = (int)gnutls_cipher_get(t->session);
        memcpy(out->key, key.data, key.size);
        out->key_size = key.size;
        memcpy(out->iv, iv.data, iv.size);
        out->iv_size = iv.size;
        return 0;
}

/* ---- the record layer, carried on (RFC 8446 5.2) ---- */

#define RECORD_HEAD       5u
#define RECORD_TAG        16u
#define RECORD_PLAIN_MAX  16384u
#define RECORD_MAX        (RECORD_PLAIN_MAX + 256u)
#define CONTENT_ALERT     21u
#define CONTENT_HANDSHAKE 22u
#define CONTENT_DATA      23u

struct record_dir {
        gnutls_aead_cipher_hd_t aead;
        uint8_t iv[12];
        uint64_t seq;
};

struct peer_tls_record {
        struct record_dir tx, rx;
        uint8_t out[RECORD_HEAD + RECORD_PLAIN_MAX + 1 + RECORD_TAG];
        uint8_t in[RECORD_HEAD + RECORD_MAX];
        uint8_t plain[RECORD_MAX];
        size_t plain_off, plain_len; /* what the last record gave and was not read yet */
        bool closed;
};

static uint64_t seq_be(const uint8_t seq[8])
{
        uint64_t v = 0;

        for (unsigned i = 0; i < 8; i++)
                v = v << 8 | seq[i];
        return v;
}

static int dir_init(struct record_dir *d, const struct peer_tls_state *s, struct svemig_error *err)
{
        gnutls_datum_t key = {(unsigned char *)s->key, (unsigned)s->key_size};
        int r;

        if (s->iv_size != sizeof(d->iv))
                return svemig_error_set(err, ENOTSUP, "TLS: a %zu-byte IV is not a TLS 1.3 AEAD's",
                                        s->iv_size);
        r = gnutls_aead_cipher_init(&d->aead, (gnutls_cipher_algorithm_t)s->cipher, &key);
        if (r < 0)
                return tls_error(err, ENOTSUP, r, "TLS: cannot carry the session's cipher on");
        memcpy(d->iv, s->iv, sizeof(d->iv));
        d->seq = seq_be(s->seq);
        return 0;
}

static void dir_nonce(const struct record_dir *d, uint8_t nonce[12])
{
        memcpy(nonce, d->iv, 12);
        for (unsigned i = 0; i < 8; i++)
                nonce[4 + i] ^= (uint8_t)(d->seq >> (56 - 8 * i));
}

void peer_tls_record_free(struct peer_tls_record *r)
{
        if (!r)
                return;
        if (r->tx.aead)
                gnutls_aead_cipher_deinit(r->tx.aead);
        if (r->rx.aead)
                gnutls_aead_cipher_deinit(r->rx.aead);
        free(r);
}

int peer_tls_record_new(const struct peer_tls_state *tx, const struct peer_tls_state *rx,
                        struct peer_tls_record **out, struct svemig_error *err)
{
        struct peer_tls_record *r = calloc(1, sizeof(*r));
        int k;

        if (!r)
                return svemig_error_set(err, ENOMEM, "out of memory");
        k = dir_init(&r->tx, tx, err);
        if (k == 0)
                k = dir_init(&r->rx, rx, err);
        if (k < 0) {
                peer_tls_record_free(r);
                return k;
        }
        *out = r;
        return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len, struct svemig_error *err)
{
        while (len > 0) {
                ssize_t k = send(fd, p, len, MSG_NOSIGNAL);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return svemig_error_set(err, errno, "sending failed: %s", strerror(errno));
                p += k;
                len -= (size_t)k;
        }
        return 0;
}

/* 1 when all len bytes came, 0 at EOF before the first, -errno otherwise. */
static int read_all(int fd, uint8_t *p, size_t len, struct svemig_error *err)
{
        size_t got = 0;

        while (got < len) {
                ssize_t k = recv(fd, p + got, len - got, 0);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return svemig_error_set(err, errno, "receiving failed: %s", strerror(errno));
                if (k == 0)
                        return got ? svemig_error_set(err, EPIPE,
                                                      "the peer closed the connection inside a "
                                                      "TLS record")
                                   : 0;
                got += (size_t)k;
        }
        return 1;
}

int peer_tls_record_send(struct peer_tls_record *r, int fd, const void *buf, size_t len,
                         struct svemig_error *err)
{
        const uint8_t *p = buf;

        while (len > 0) {
                size_t n = MIN(len, (size_t)RECORD_PLAIN_MAX), clen = n + 1 + RECORD_TAG;
                uint8_t nonce[12], *head = r->out, inner[RECORD_PLAIN_MAX + 1];
                int k;

                head[0] = CONTENT_DATA;
                head[1] = 3;
                head[2] = 3;
                head[3] = (uint8_t)(clen >> 8);
                head[4] = (uint8_t)clen;
                memcpy(inner, p, n);
                inner[n] = CONTENT_DATA;
                dir_nonce(&r->tx, nonce);
                k = gnutls_aead_cipher_encrypt(r->tx.aead, nonce, sizeof(nonce), head, RECORD_HEAD,
                                               RECORD_TAG, inner, n + 1, r->out + RECORD_HEAD, &clen);
                if (k < 0)
                        return tls_error(err, EIO, k, "TLS: cannot encrypt a record");
                r->tx.seq++;
                k = write_all(fd, r->out, RECORD_HEAD + clen, err);
                if (k < 0)
                        return k;
                p += n;
                len -= n;
        }
        return 0;
}

/* Reads and opens the next record into r->plain: 1 with data, 0 at the peer's end, -errno. */
static int next_record(struct peer_tls_record *r, int fd, struct svemig_error *err)
{
        uint8_t nonce[12];
        size_t clen, plen = sizeof(r->plain);
        int k;

        k = read_all(fd, r->in, RECORD_HEAD, err);
        if (k <= 0)
                return k;
        clen = (size_t)r->in[3] << 8 | r->in[4];
        if (r->in[0] != CONTENT_DATA || clen > RECORD_MAX || clen < 1 + RECORD_TAG)
                return svemig_error_set(err, EBADMSG,
                                        "TLS: a record of type %u and %zu bytes is not a TLS 1.3 record",
                                        r->in[0], clen);
        k = read_all(fd, r->in + RECORD_HEAD, clen, err);
        if (k <= 0)
                return k < 0 ? k
                             : svemig_error_set(err, EPIPE,
                                                "the peer closed the connection inside a record");
        dir_nonce(&r->rx, nonce);
        k = gnutls_aead_cipher_decrypt(r->rx.aead, nonce, sizeof(nonce), r->in, RECORD_HEAD, RECORD_TAG,
                                       r->in + RECORD_HEAD, clen, r->plain, &plen);
        if (k < 0)
                return svemig_error_set(err, EBADMSG, "TLS: record %llu fails its check (%s)",
                                        (unsigned long long)r->rx.seq, gnutls_strerror(k));
        r->rx.seq++;
        while (plen > 0 && r->plain[plen - 1] == 0) /* padding */
                plen--;
        if (plen == 0)
                return svemig_error_set(err, EBADMSG, "TLS: a record without a content type");
        switch (r->plain[--plen]) {
        case CONTENT_DATA:
                r->plain_off = 0;
                r->plain_len = plen;
                return 1;
        case CONTENT_ALERT:
                if (plen == 2 && r->plain[1] == GNUTLS_A_CLOSE_NOTIFY)
                        return 0;
                return svemig_error_set(err, ECONNRESET, "TLS: the peer sent alert %u: %s",
                                        plen == 2 ? r->plain[1] : 0u,
                                        plen == 2 ? gnutls_alert_get_strname(r->plain[1]) : "malformed");
        case CONTENT_HANDSHAKE:
                return svemig_error_set(err, EPROTO,
                                        "TLS: the peer sent a post-handshake message (type %u), which a "
                                        "session carried on does not take",
                                        plen ? r->plain[0] : 0u);
        default:
                return svemig_error_set(err, EBADMSG, "TLS: a record of content type %u", r->plain[plen]);
        }
}

int peer_tls_record_recv(struct peer_tls_record *r, int fd, void *buf, size_t len, struct svemig_error *err)
{
        uint8_t *p = buf;

        while (len > 0) {
                size_t n;

                if (r->plain_off == r->plain_len) {
                        int k = r->closed ? 0 : next_record(r, fd, err);

                        if (k == 0) {
                                r->closed = true;
                                return svemig_error_set(err, EPIPE, "the peer closed the connection");
                        }
                        if (k < 0)
                                return k;
                        continue;
                }
                n = MIN(len, r->plain_len - r->plain_off);
                memcpy(p, r->plain + r->plain_off, n);
                r->plain_off += n;
                p += n;
                len -= n;
        }
        return 0;
}
