/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the migration modules share:
 *   migrate-wire.c     PeerMessage frames on a socket, every wait bounded
 *   migrate-pump.c     the stream's bytes between a local pipe and the socket
 *   migrate-peer.c     Hello, HostInfo, this host's description, probe vcpus
 *   migrate-policy.c   convergence, throttling and compression decisions
 *   migrate-ledger.c   the destination's handoff outcomes
 *   migrate.c          the source
 *   migrate-receive.c  the destination
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "pbarena.h"
#include "peer.pb-c.h"
#include "svemig/migrate.h"

typedef Svemig__Peer__PeerMessage PeerMessage;

#define PEER_FRAME_HEAD_SIZE 8u
#define PEER_FRAME_SEED      0x50454552u /* "PEER" */

uint64_t migrate_now_ns(void);
unsigned migrate_timeout(unsigned timeout_ms);

/* ---- migrate-wire.c ---- */

/* A connection and what crossed it, for reports. */
struct wire {
        int fd;
        unsigned timeout_ms;
        uint64_t bytes_out, bytes_in;
        struct pbarena arena; /* holds the last received message */
        PeerMessage *last;
};

void wire_init(struct wire *w, int fd, unsigned timeout_ms);
void wire_done(struct wire *w);

/*
 * Sends one message. -ETIMEDOUT when the peer takes nothing for the timeout,
 * -EPIPE/-ECONNRESET when the connection is gone.
 */
int wire_send(struct wire *w, const PeerMessage *msg, struct svemig_error *err);

/*
 * Receives one message into w->last (valid until the next wire_recv).
 * timeout_ms 0 waits forever. -ENOTCONN for an orderly close before the
 * first byte of a frame, -EPIPE for one inside a frame, -ECONNRESET,
 * -ETIMEDOUT, -EBADMSG for a corrupt frame, -EMSGSIZE.
 */
int wire_recv(struct wire *w, unsigned timeout_ms, PeerMessage **out, struct svemig_error *err);

/* Sends raw bytes (a stream header) with the timeout. */
int wire_send_raw(struct wire *w, const void *buf, size_t len, struct svemig_error *err);

/* The same, gathered (a frame's head, payload and check); iov is consumed. */
int wire_sendv(struct wire *w, struct iovec *iov, int n, struct svemig_error *err);

/* Waits for events on fd, or the timeout (0 = forever): 1 ready, 0 timed out, -errno. */
int wire_poll(int fd, short events, unsigned timeout_ms);

/* The body's name, for "expected X, got Y". */
const char *wire_body_name(const PeerMessage *msg);

/* Sends an Abort (best effort: errors are ignored) with a reason. */
void wire_send_abort(struct wire *w, int code, enum migrate_step step, const char *reason);

/*
 * When the peer broke a wait with an Abort, returns its -code and reason;
 * otherwise r. Reads at most briefly: the peer either said why or did not.
 */
int wire_peer_reason(struct wire *w, int r, const char *peer, struct svemig_error *err);

/* Ends a connection now, as a killed process would: the peer reads EOF. */
void wire_kill(struct wire *w);

/* Both halves of an ended migration: a FIN, then what the peer still sends is drained until it closes. */
void wire_linger(struct wire *w);

/* ---- migrate-pump.c ---- */

struct pump;

enum pump_dir {
        PUMP_TO_PEER,   /* source: local pipe -> socket */
        PUMP_FROM_PEER, /* destination: socket -> local pipe */
};

/*
 * Starts a thread moving stream bytes between a pipe and the socket, so that
 * the stream writer/reader (which block without limit) never wait on the
 * peer: the pump does, with the timeout. *local_fd is the end the stream
 * writer (TO_PEER) or reader (FROM_PEER) uses; the pump owns it.
 */
int pump_start(int sock, enum pump_dir dir, unsigned timeout_ms, uint64_t max_bps, int *local_fd,
               struct pump **out, struct svemig_error *err);

/* Waits until 'bytes' stream bytes have moved (TO_PEER: into the socket; FROM_PEER: into the pipe). */
int pump_flush(struct pump *p, uint64_t bytes, struct svemig_error *err);

/* TO_PEER: from now on, data or a close from the peer means it stopped the migration. */
void pump_watch_peer(struct pump *p, bool on);

/* FROM_PEER: whether data is expected now, i.e. the timeout applies. */
void pump_expect(struct pump *p, bool on);

/*
 * Stops the pump as failed with code and reason, from any thread: the
 * stream's reader (FROM_PEER) then sees its end and fails with them.
 */
void pump_abort(struct pump *p, int code, const char *reason);

/* Stream bytes moved so far. */
uint64_t pump_bytes(struct pump *p);

/* 0, or the pump's failure with its reason. */
int pump_error(struct pump *p, struct svemig_error *err);

/*
 * Stops the thread. TO_PEER: closes the writer's end and waits until every
 * byte has gone to the socket first. Returns pump_error().
 */
int pump_stop(struct pump *p, struct svemig_error *err);

void pump_free(struct pump *p);

/* ---- migrate-channel.c ---- */

struct memory_frame;
struct svemig_stream_info;
struct svemig_mem_map;
struct channels_out;
struct channels_in;

/*
 * Source: opens n memory channels of migration id through opts->reconnect
 * (hellos as self, then Channel). cell: the bytes of one grid cell
 * (chunk_pages pages); cell i goes on channel i % n.
 */
int channels_open(const struct migrate_opts *opts, const struct peer_info *self, const uint8_t *id,
                  unsigned n, uint64_t cell, unsigned timeout_ms, struct channels_out **out,
                  struct svemig_error *err);
/* The writer's memory sink (stream_writer_set_memory_sink()): sends a frame on its cell's channel. */
int channels_send(void *userdata, const struct memory_frame *f);
/* Ends every channel with its trailer. */
int channels_finish(struct channels_out *c, struct svemig_error *err);
uint64_t channels_out_bytes(struct channels_out *c);  /* sent, on every channel */
uint64_t channels_out_queued(struct channels_out *c); /* not yet taken by the peer (SIOCOUTQ) */
/* 0, or the first channel's failure and its reason. */
int channels_out_error(struct channels_out *c, struct svemig_error *err);
void channels_out_free(struct channels_out *c);

struct channels_in_stats {
        uint64_t pages, zero_pages, bytes;
        uint64_t torn_pages; /* failed their checks, the guest writing them as they went; came again */
};

/* r < 0: a channel failed (once, err its reason); 0: every channel came to its verified trailer. */
typedef void (*channel_event_fn)(void *userdata, int r, const struct svemig_error *err);

/*
 * Destination: takes n channels of migration id from unix_fd
 * (migrate_channel_pass()), each within timeout_ms (sooner failing when
 * pump, the connection's, says the source went away), and starts a thread
 * per channel writing the pages it carries through map. on_event is
 * called from a channel's thread: once if one fails, or once when all have
 * ended. A channel waits on the source with timeout_ms, counted from the
 * last data on any channel.
 */
int channels_accept(int unix_fd, const uint8_t *id, unsigned n, unsigned timeout_ms, struct pump *pump,
                    const struct svemig_stream_info *info, const struct svemig_mem_map *map,
                    channel_event_fn on_event, void *userdata, struct channels_in **out,
                    struct svemig_error *err);
/*
 * Waits (up to timeout_ms) until every channel has come to its verified
 * trailer, and every page that failed its check has come again.
 */
int channels_in_wait(struct channels_in *set, unsigned timeout_ms, struct channels_in_stats *st,
                     struct svemig_error *err);
/* Stops the threads (a failed migration: their sockets are shut down) and frees. */
void channels_in_free(struct channels_in *set);

/* ---- migrate-peer.c ---- */

/* Creates vcpu 0 on vm and sets it up as init(features) -> SVE_VLS -> finalize. */
int peer_probe_vcpu(struct hv_vm *vm, uint32_t features, const vqset_t *vls, struct hv_vcpu **out,
                    struct svemig_error *err);

/* MemAvailable from /proc/meminfo, in bytes; 0 when unknown. */
uint64_t peer_mem_available(void);

int peer_info_to_msg(const struct peer_info *info, Svemig__Peer__HostInfo *msg, Svemig__RegValue **regs,
                     Svemig__RegValue ***reg_ptrs);
int peer_info_from_msg(const Svemig__Peer__HostInfo *msg, struct peer_info *info, struct svemig_error *err);

/* Answers a HostInfoRequest with self. */
int peer_serve_info(struct wire *w, const struct peer_info *self, struct svemig_error *err);

/* ---- migrate-policy.c ---- */

struct converge_opts {
        uint64_t downtime_ns;
        uint64_t downtime_limit_ns;
        unsigned max_rounds;
        bool auto_converge;
        unsigned throttle_initial, throttle_increment, throttle_max;
};

void converge_opts_from(const struct migrate_opts *opts, struct converge_opts *c);

/* What one pre-copy pass showed. */
struct converge_round {
        unsigned round;          /* passes done, the one measured included */
        uint64_t dirty_pages;    /* pages dirtied during it (to send next) */
        uint64_t round_ns;       /* how long it took */
        uint64_t sent_bytes;     /* stream bytes it sent */
        uint64_t sent_pages;     /* non-zero pages it sent */
        uint64_t link_bps;       /* measured over every pass so far */
        uint64_t fixed_bytes;    /* what stop-and-copy sends besides memory (vcpus, trailer) */
        uint64_t bytes_per_page; /* measured wire bytes per dirty page */
        unsigned throttle_pct;   /* now */
};

enum converge_action {
        CONVERGE_CONTINUE,  /* another pre-copy pass */
        CONVERGE_THROTTLE,  /* another pass, with the guest throttled to throttle_pct */
        CONVERGE_STOP_COPY, /* pause and finish */
        CONVERGE_GIVE_UP,   /* no convergence: resume, fail with reason */
};

struct converge_verdict {
        enum converge_action action;
        uint64_t expected_downtime_ns;
        uint64_t dirty_rate;   /* bytes/s */
        unsigned throttle_pct; /* for CONVERGE_THROTTLE */
        char reason[384];      /* for CONVERGE_GIVE_UP */
};

/* The policy of docs/migration.md "Convergence": a pure function, unit-tested. */
void converge_decide(const struct converge_opts *c, const struct converge_round *r,
                     struct converge_verdict *out);

/* What the compression choice weighs (docs/migration.md "Compression"). */
struct compression_input {
        double ratio;          /* LZ4 output / input on a sample of non-zero pages */
        uint64_t compress_bps; /* guest bytes/s all the workers compress, from the sample */
        uint64_t link_bps;     /* bytes/s the link carries (the cap, or measured); 0 = unknown */
        uint64_t raw_mem_bps;  /* guest bytes/s a piece sent raw moved, end to end; 0 = not tried */
        uint64_t lz4_mem_bps;  /* the same with LZ4; 0 = not tried */
        uint64_t raw_at_ns;    /* when raw_mem_bps was measured (migrate_now_ns()) */
        uint64_t lz4_at_ns;    /* when lz4_mem_bps was */
        uint64_t now_ns;       /* the time of the decision */
        bool no_trial;         /* stop-and-copy after a pre-copy: the faster way measured, no trial */
};

/* Measures ratio and compress_bps on a sample of guest memory; leaves link_bps. */
void compression_sample(const uint8_t *mem, uint64_t size, unsigned n_threads,
                        struct compression_input *out);

/* Whether LZ4 shrinks the sample enough to be worth having in the stream at all. */
bool compression_may_pay(const struct compression_input *in);

/*
 * MIGRATE_COMPRESSION_AUTO, before each piece of memory. Never LZ4 where it
 * does not shrink the data. Before any measurement: raw on an unknown link,
 * else LZ4 if compressing and sending less beats sending raw by a margin on
 * this link (the sample's model). Then each way is tried on a piece, and the
 * one that moved guest memory faster goes on, the other tried again once
 * its figure is 2 s old. A pure function, unit-tested.
 */
enum migrate_compression compression_decide(const struct compression_input *in);

/* ---- migrate-ledger.c ---- */

/* Records a new migration as pending. -EEXIST for an id seen before. */
int ledger_begin(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE]);

/*
 * Makes the outcome final if still pending: commit() runs the caller's start
 * under the ledger's lock and records COMMITTED when it returns 0, ABORTED
 * otherwise. Returns the final state.
 */
enum migrate_ledger_state ledger_commit(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                                        int (*commit)(void *userdata), void *userdata);
/* Pending -> ABORTED. Returns the final state. */
enum migrate_ledger_state ledger_abort(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE]);
/*
 * A Resolve: aborts a pending one; an unknown id is recorded as aborted. Returns the final state, or
 * MIGRATE_LEDGER_UNKNOWN when the ledger could not record it (no answer may be given then).
 */
enum migrate_ledger_state ledger_resolve(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE]);
