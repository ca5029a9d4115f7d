/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Mutual TLS between peers, with GnuTLS and x509 files (issue 14, item 1):
 * the credentials of [cluster] tls-ca, tls-cert and tls-key, a handshake on
 * a connected socket that both ends authenticate, and the peer's name from
 * its certificate (CN or DNS SAN), judged against the names this host
 * accepts.
 *
 * The session's record keys can be read back (peer_tls_export()): this
 * kernel has no kTLS (no "tls" ULP), and a connection svemigd accepts is
 * used by another process (svemig-vmm), which a GnuTLS session cannot
 * follow. What is left to do is in docs/migration.md "Peer TLS".
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"

struct peer_tls_creds;
struct peer_tls;

/*
 * Loads the CA, this host's certificate and its key (PEM files) and checks
 * them as a peer would: the key matches the certificate, which chains to the
 * CA. Errors name the file and say what to do.
 */
int peer_tls_creds_load(const char *ca_file, const char *cert_file, const char *key_file,
                        struct peer_tls_creds **out, struct svemig_error *err);
void peer_tls_creds_free(struct peer_tls_creds *c);

/*
 * Which names this side accepts: expect (the one host a dialling side wants,
 * e.g. [peer NAME]), or any of names[0..n) (a listener's peers). The peer's
 * certificate must chain to the CA and name one of them; *matched (size
 * bytes) gets the name it matched.
 */
struct peer_tls_names {
        const char *expect;
        const char *const *names;
        size_t n;
        bool any; /* any name the CA vouches for: the caller judges it (peer_tls_cert_names()) */
};

/*
 * The TLS 1.3 handshake on the connected socket fd (server: the side that
 * accepted), both ends presenting certificates, bounded by timeout_ms.
 * A refusal sends the peer an alert and returns -EACCES (an unacceptable
 * certificate), -EPROTO (no TLS, or no certificate) or -ETIMEDOUT, with the
 * reason in err.
 */
int peer_tls_handshake(const struct peer_tls_creds *c, int fd, bool server,
                       const struct peer_tls_names *accept, unsigned timeout_ms, struct peer_tls **out,
                       char *matched, size_t size, struct svemig_error *err);

/*
 * The peer's certificate, kept for judging its Hello after the handshake
 * (a listener accepting any name the CA vouches for).
 */
struct peer_tls_cert;
int peer_tls_peer_cert(struct peer_tls *t, struct peer_tls_cert **out, struct svemig_error *err);
/* Whether the certificate names host (DNS SAN, else CN; no wildcards). */
bool peer_tls_cert_names(const struct peer_tls_cert *c, const char *host);
/* The names it gives, printable, for a refusal. */
const char *peer_tls_cert_describe(const struct peer_tls_cert *c, char *buf, size_t size);
void peer_tls_cert_free(struct peer_tls_cert *c);

/*
 * Carries the session on a socketpair, so that code which reads and writes
 * a plain socket (the peer protocol, the memory channels, a VMM the fd is
 * passed to) goes over TLS: one thread moves the bytes both ways,
 * non-blocking, sealing what that code writes into records and opening the
 * peer's (never two threads in one GnuTLS session). Takes t and net_fd
 * (closing both when done, also on failure). *out is the other end, an
 * AF_UNIX stream socket, blocking or not as net_fd was.
 *
 * Ends: the end closing (or shutting its write side) sends close_notify; the
 * peer's close_notify, EOF or a bad record reads as EOF at *out; a peer that
 * cannot be written to makes *out's writes fail with EPIPE.
 */
int peer_tls_relay(struct peer_tls *t, int net_fd, int *out, struct svemig_error *err);

/*
 * A dialling side's whole step, as struct peer_transport's secure() of
 * svemig/peer-connect.h (userdata: the peer_tls_creds): the handshake as
 * client expecting the certificate to name name, then the relay.
 */
int peer_tls_secure_dial(void *creds, int fd, const char *name, unsigned timeout_ms, int *out,
                         struct svemig_error *err);

/* Sends or receives exactly len bytes through the session (blocking on fd). */
int peer_tls_send(struct peer_tls *t, const void *buf, size_t len, struct svemig_error *err);
int peer_tls_recv(struct peer_tls *t, void *buf, size_t len, struct svemig_error *err);

/* Tells the peer this side sends no more (close_notify). */
int peer_tls_bye(struct peer_tls *t, struct svemig_error *err);

/* The cipher suite's name, for the journal ("TLS1.3-AES-256-GCM"). */
const char *peer_tls_description(struct peer_tls *t, char *buf, size_t size);

/*
 * The record layer's state in one direction (write or read): the key, the
 * IV and the next sequence number, what kTLS would take (TLS_TX / TLS_RX).
 */
struct peer_tls_state {
        int cipher; /* gnutls_cipher_algorithm_t */
        uint8_t key[32];
        size_t key_size;
        uint8_t iv[12];
        size_t iv_size;
        uint8_t seq[8];
};
int peer_tls_export(struct peer_tls *t, bool read, struct peer_tls_state *out, struct svemig_error *err);

/*
 * Frees the session, sending nothing: the connection may go on elsewhere
 * (peer_tls_record). The fd stays open.
 */
void peer_tls_free(struct peer_tls *t);

/*
 * A TLS 1.3 record layer carried on from an exported state, in this
 * process or another one that got the fd (SCM_RIGHTS) and both states:
 * what kTLS does in the kernel, done here with GnuTLS's AEAD ciphers. The
 * peer goes on with its GnuTLS session and sees one session. It carries
 * application data; the peer's close_notify reads as the end; a
 * post-handshake message (KeyUpdate) is refused with a reason, as svemig
 * never asks for one.
 */
struct peer_tls_record;

int peer_tls_record_new(const struct peer_tls_state *tx, const struct peer_tls_state *rx,
                        struct peer_tls_record **out, struct svemig_error *err);
void peer_tls_record_free(struct peer_tls_record *r);

/* Sends len bytes on fd (blocking) in records of at most 16 KiB. */
int peer_tls_record_send(struct peer_tls_record *r, int fd, const void *buf, size_t len,
                         struct svemig_error *err);

/*
 * Receives exactly len bytes from fd (blocking). -EPIPE when the peer
 * closed (close_notify or EOF) first, -EBADMSG for a record that fails its
 * check.
 */
int peer_tls_record_recv(struct peer_tls_record *r, int fd, void *buf, size_t len, struct svemig_error *err);
