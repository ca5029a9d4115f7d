/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Live migration between svemig peers (docs/migration.md).
 *
 * A connection between two peers (a TCP socket, or any connected stream
 * socket) starts with peer_hello() on both sides. Then the side that
 * connected sends requests and the other serves them:
 *
 *   source (connected)                     destination (accepted)
 *   peer_hello()                    <-->   peer_hello()
 *   migrate_check_send()             -->   migrate_serve() / migrate_check_receive()
 *   migrate_send()                   -->   migrate_serve() / migrate_receive()
 *   peer_request_info()              -->   migrate_serve()
 *   migrate_resolve()                -->   migrate_serve()
 *
 * A migration sends the svemig stream header first, so the destination
 * refuses an incompatible guest before any memory moves; then pre-copy
 * rounds of dirty memory; then stop-and-copy (the guest paused, the last
 * dirty pages and every vcpu); then a two-phase handoff: the destination
 * says LOADED, the source says COMMIT, the destination starts the guest and
 * says ACK.
 *
 * Every function returns 0 or a negative errno and, with err, a sentence that
 * names the side ("source"/"destination <host>") and the step that failed.
 * No call waits on the peer longer than the timeout.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/cpubase.h"
#include "svemig/error.h"
#include "svemig/idreg.h"
#include "svemig/guest.h"
#include "svemig/hv.h"
#include "svemig/vcpu.h"
#include "svemig/vqset.h"

#define MIGRATE_PROTOCOL_VERSION     1u
#define MIGRATE_PROTOCOL_VERSION_MIN 1u
#define MIGRATE_MSG_MAX              (1u << 20) /* a PeerMessage; memory travels in the stream */
#define MIGRATE_ID_SIZE              16u
#define MIGRATE_DEVICE_STATE_MAX     1024u /* migrate_opts.device_state, at most */
#define MIGRATE_CHANNELS_MAX         16u   /* memory channels of one migration, at most */

#define MIGRATE_TIMEOUT_MS_DEFAULT    30000u
#define MIGRATE_DOWNTIME_MS_DEFAULT   10u
#define MIGRATE_DOWNTIME_LIMIT_MS_DEF 300u
#define MIGRATE_MAX_ROUNDS_DEFAULT    30u

/* ---- Peers ---- */

/*
 * A guest of a host that could not move to some other host, and why (svemigd:
 * its libvirt domains some peer up cannot present). A host reports at most
 * PEER_STUCK_MAX of them in its HostInfo, one entry per guest and host it
 * could not move to (a guest's entries are consecutive), so that what peers
 * exchange stays bounded whatever a host runs.
 */
#define PEER_STUCK_MAX 8u

struct peer_stuck_guest {
        char guest[128];
        char state[24]; /* "running", "shut off"... */
        vqset_t vls;    /* the lengths it has on its host; empty: FPSIMD only */
        char host[64];  /* the host it could not move to */
        char why[160];
};

struct peer_stuck {
        unsigned n;     /* entries kept, at most PEER_STUCK_MAX */
        unsigned total; /* entries the host had: n, or more when it had to leave some out */
        struct peer_stuck_guest g[PEER_STUCK_MAX];
};

bool peer_stuck_equal(const struct peer_stuck *a, const struct peer_stuck *b);

/* What a peer says about itself in Hello and HostInfo. */
struct peer_info {
        unsigned protocol_version; /* the version agreed on the connection (remote), or ours */
        char svemig_version[64];
        char host_name[64];
        char backend[8]; /* "kvm" or "sim" */
        char kernel[128];
        bool sve;
        vqset_t vls; /* from the peer's own hypervisor (hv_get_caps) */
        unsigned max_vq;
        unsigned max_vcpus;
        unsigned n_cpus;
        unsigned ipa_bits;
        uint32_t vcpu_features; /* HV_FEAT_BIT()s a vcpu may be initialised with */
        uint64_t mem_available; /* bytes an incoming guest may use */
        /* Host-invariant registers (ID_AA64*, CCSIDR) of a probe vcpu, SVE when the host has it. Owned. */
        struct vcpu_state id_regs;
        /*
         * The bits of each feature ID register a VMM may write here before a
         * vcpu first runs (idreg_mask_index() order); known only on kernels
         * with KVM_ARM_GET_REG_WRITABLE_MASKS (6.7+), else nothing is writable.
         */
        bool id_writable_known;
        uint64_t id_writable[HV_ID_MASKS_N];
        /*
         * Its guests that could not move. This host's own list changes while
         * other threads send it: write it with peer_info_set_stuck() only,
         * and read it from another thread with peer_info_get_stuck(). Kept
         * last: a copy takes what precedes it, then the list under its lock.
         */
        struct peer_stuck stuck;
};

/* Replaces info's stuck list, guarded against the threads that send info meanwhile. */
void peer_info_set_stuck(struct peer_info *info, const struct peer_stuck *stuck);
/* A consistent copy of info's stuck list, from any thread. */
void peer_info_get_stuck(const struct peer_info *info, struct peer_stuck *out);

/*
 * The host's feature ID registers for the CPU baseline (svemig/cpubase.h):
 * value and writable bits each, into *out (free() it).
 */
int peer_info_cpu_regs(const struct peer_info *info, struct cpubase_reg **out, size_t *n_out);

/*
 * Describes this host: caps from hv, ID registers from a probe vcpu, and
 * mem_available (0 = the kernel's MemAvailable). Free with peer_info_done().
 */
int peer_info_local(struct hv *hv, uint64_t mem_available, struct peer_info *out, struct svemig_error *err);
void peer_info_done(struct peer_info *info);

/*
 * Both ends call this first on a new connection: each sends Hello and
 * HostInfo for self and reads the other's into *remote (free with
 * peer_info_done()). Refuses a peer whose protocol range does not overlap
 * ours. timeout_ms 0 = MIGRATE_TIMEOUT_MS_DEFAULT.
 */
int peer_hello(int fd, const struct peer_info *self, unsigned timeout_ms, struct peer_info *remote,
               struct svemig_error *err);

/*
 * Whether the host that said hello (its Hello's host name, as sent) may go
 * on: 0, or a negative errno with the reason in err (sent to the peer).
 */
typedef int (*peer_accept_fn)(void *userdata, const char *host_name, struct svemig_error *err);

/*
 * peer_hello() for the side that accepted the connection: once the peer's
 * Hello is read, accept() judges its host name before this host says
 * anything more about itself. A refused peer gets an Abort with the reason
 * (and no HostInfo); the call returns the refusal. accept NULL: any host.
 */
int peer_hello_accept(int fd, const struct peer_info *self, unsigned timeout_ms, peer_accept_fn accept,
                      void *userdata, struct peer_info *remote, struct svemig_error *err);

/* Asks the peer (served by migrate_serve()) for fresh HostInfo, for a cluster view. */
int peer_request_info(int fd, unsigned timeout_ms, struct peer_info *remote, struct svemig_error *err);

/* Tells the serving peer that this side is done; migrate_serve() returns MIGRATE_SERVED_BYE. */
int peer_bye(int fd, unsigned timeout_ms, struct svemig_error *err);

/* ---- Migration steps, phases, progress ---- */

/* The protocol's steps, in order: reasons name them, and the test hook fails at them. */
enum migrate_step {
        MIGRATE_STEP_NONE = 0,
        MIGRATE_STEP_REQUEST,   /* source: Migrate and the stream header; destination: reading them */
        MIGRATE_STEP_VERDICT,   /* the destination judges the header and answers */
        MIGRATE_STEP_PRECOPY,   /* memory rounds while the guest runs */
        MIGRATE_STEP_STOP_COPY, /* guest paused: last dirty pages, every vcpu, the trailer */
        MIGRATE_STEP_LOADED,    /* the destination has restored and verified; says LOADED */
        MIGRATE_STEP_COMMIT,    /* the source says COMMIT */
        MIGRATE_STEP_ACK,       /* the destination starts the guest and says ACK */
        _MIGRATE_STEP_MAX,
};

const char *migrate_step_name(enum migrate_step step);

enum migrate_compression {
        MIGRATE_COMPRESSION_AUTO = 0, /* LZ4 when a sample of guest memory says it pays on this link */
        MIGRATE_COMPRESSION_NONE,
        MIGRATE_COMPRESSION_LZ4,
};

/* "auto", "none", "lz4", and back (-EINVAL for anything else; out may be NULL). */
const char *migrate_compression_name(enum migrate_compression c);
int migrate_compression_parse(const char *name, enum migrate_compression *out);

struct migrate_progress {
        enum migrate_step step;        /* MIGRATE_STEP_PRECOPY, _STOP_COPY, ... */
        unsigned round;                /* memory passes so far */
        uint64_t bytes_sent;           /* wire bytes, source to destination */
        uint64_t dirty_pages;          /* pages to send in the next pass */
        uint64_t dirty_rate;           /* bytes/s the guest dirtied during the last pass */
        uint64_t link_bps;             /* bytes/s measured on the link */
        uint64_t expected_downtime_ns; /* if the guest were paused now */
        unsigned throttle_pct;         /* share of vcpu time taken away, 0..99 */
};

/* Called between steps and rounds. A negative errno cancels (only before COMMIT). */
typedef int (*migrate_progress_fn)(void *userdata, const struct migrate_progress *p);

/* Opens a new connection to the same destination, hello not done yet; returns the fd or -errno. */
typedef int (*migrate_connect_fn)(void *userdata);

/* ---- Source ---- */

struct migrate_opts {
        const char *guest_name; /* told to the destination; NULL = "" */
        const char *peer_name;  /* the destination, for reasons; NULL = "the destination" */
        unsigned timeout_ms;    /* the longest wait on the peer; 0 = MIGRATE_TIMEOUT_MS_DEFAULT */

        /* Convergence (docs/migration.md "Convergence"). */
        unsigned downtime_ms;        /* target pause; 0 = MIGRATE_DOWNTIME_MS_DEFAULT */
        unsigned downtime_limit_ms;  /* the most accepted once max_rounds is reached; 0 = default */
        unsigned max_rounds;         /* pre-copy passes; 0 = MIGRATE_MAX_ROUNDS_DEFAULT */
        bool no_auto_converge;       /* never throttle the guest */
        unsigned throttle_initial;   /* % of vcpu time taken at the first step; 0 = 20 */
        unsigned throttle_increment; /* 0 = 10 */
        unsigned throttle_max;       /* 0 = 99 */
        uint64_t max_bandwidth;      /* bytes/s on the wire; 0 = unlimited */
        uint64_t link_bps_hint; /* a previous report's link_bps, for the compression choice; 0 = unknown */

        enum migrate_compression compression;
        unsigned n_threads; /* memory encoders; 0 = one per CPU, or per channel where there are more */

        migrate_progress_fn progress;
        void *userdata;

        /*
         * The caller's state of the guest's devices (e.g. what a payload
         * reported over MMIO), opaque here: the destination's report gets a
         * copy (migrate_report.device_state). At most
         * MIGRATE_DEVICE_STATE_MAX bytes; NULL/0 = none.
         */
        const void *device_state;
        size_t device_state_size;

        /*
         * For a handoff in doubt (COMMIT sent, no ACK): a fresh connection
         * to ask the destination what became of the migration. NULL: the
         * source returns -EINPROGRESS with the guest paused.
         */
        migrate_connect_fn reconnect;
        void *reconnect_userdata;
        /* This host, as the hellos on those new connections describe it; NULL = peer_info_local(). */
        const struct peer_info *self;

        /*
         * Memory channels (docs/migration.md "Memory channels"): extra
         * connections, opened through reconnect, that carry guest memory
         * in parallel, as QEMU's multifd does. The destination may take
         * fewer (its Verdict says). 0, no reconnect, or a max_bandwidth
         * cap: every frame on the one connection.
         */
        unsigned channels;

        /*
         * Test hook: at this step the source behaves as if killed: it shuts
         * the connection down and returns -ECANCELED leaving the guest paused
         * (a killed source does not resume anything).
         */
        enum migrate_step fail_at;
};

enum migrate_outcome {
        MIGRATE_OUTCOME_NONE = 0,  /* failed before COMMIT: the source kept the guest */
        MIGRATE_OUTCOME_COMMITTED, /* the destination owns the guest */
        MIGRATE_OUTCOME_ABORTED,  /* COMMIT was sent, the destination had not taken it: the source kept it */
        MIGRATE_OUTCOME_IN_DOUBT, /* COMMIT sent, outcome unknown: the guest stays paused on the source */
};

struct migrate_report {
        uint8_t id[MIGRATE_ID_SIZE];
        enum migrate_outcome outcome;
        enum migrate_step failed_step; /* MIGRATE_STEP_NONE on success */
        bool resumed;                  /* source: the guest was running again when migrate_send() returned */
        uint64_t total_ns;
        uint64_t downtime_ns; /* source: guest paused until the ACK; destination: COMMIT to running */
        uint64_t bytes_sent;  /* source: wire bytes sent; destination: wire bytes received */
        uint64_t stream_bytes;
        uint64_t pages_sent; /* memory pages carried, zero pages included */
        uint64_t zero_pages;
        /*
         * Destination: pages that failed their own check on a memory channel
         * (the guest wrote them as they were sent) and came again.
         */
        uint64_t torn_pages;
        unsigned rounds;       /* memory passes, the stop-and-copy pass included */
        unsigned throttle_pct; /* the most vcpu time taken away */
        uint64_t link_bps;
        uint64_t final_dirty_pages;           /* sent while paused */
        enum migrate_compression compression; /* what the stream used */
        /*
         * Source: where the time went. setup: to the destination's verdict;
         * precopy: the passes while the guest ran. The downtime's parts:
         * pause_copy, paused until the last byte is in the socket; load, until
         * the destination has restored it all (Loaded); commit, COMMIT to Ack.
         */
        uint64_t setup_ns, precopy_ns, pause_copy_ns, load_ns, commit_ns;
        char peer_host[64]; /* the other end: the source from its Hello, the destination from its stream
                               header */
        /* Destination: the source's migrate_opts.device_state, as it sent it. */
        uint8_t device_state[MIGRATE_DEVICE_STATE_MAX];
        size_t device_state_size;
};

/*
 * Pre-flight: asks the destination whether it could take g, moving nothing.
 * 0 = yes. Otherwise the destination's errno and reason: -EINVAL (VL set: a
 * missing or extra vq; an ID-register difference), -ENOENT (a register one
 * side lacks), -ENOMEM (not enough memory), -EPROTO...
 */
int migrate_check_send(struct guest *g, int fd, const struct migrate_opts *opts, struct svemig_error *err);

/*
 * Migrates g to the peer on fd (after peer_hello()). g may be running (it
 * needs guest_config.log_dirty for pre-copy; without it the guest is paused
 * for a single pass) or paused.
 *
 * Returns 0 once the destination owns the guest: g is paused and the caller
 * must destroy it, never run it. On failure before COMMIT, g runs again
 * exactly as before if it was running (outcome NONE or ABORTED). After a
 * COMMIT whose ACK was lost and could not be resolved (opts->reconnect):
 * -EINPROGRESS, outcome IN_DOUBT, g paused and kept: resolve with
 * migrate_resolve() and resume g only when the destination did not commit.
 */
int migrate_send(struct guest *g, int fd, const struct migrate_opts *opts, struct migrate_report *report,
                 struct svemig_error *err);

/*
 * Asks the destination (on a new connection, after peer_hello()) what became
 * of migration id; the destination makes its answer final. *committed true:
 * destroy the source's copy; false: the destination does not run it (resume).
 */
int migrate_resolve(int fd, const uint8_t id[MIGRATE_ID_SIZE], unsigned timeout_ms, bool *committed,
                    struct svemig_error *err);

/* ---- Destination ---- */

/*
 * The destination's record of handoff outcomes, shared by every connection
 * of one process: a Resolve from a source and a COMMIT arriving late race on
 * it, and exactly one wins. It lives as long as the guests it received.
 */
struct migrate_ledger;

int migrate_ledger_new(struct migrate_ledger **out);
void migrate_ledger_free(struct migrate_ledger *l);

/*
 * The same, kept in directory dir (created 0700 if missing) and shared by
 * every process of a host that opens it: svemigd's listener and each VMM
 * that receives a guest. Decisions are made under flock(dir/.lock) and
 * written to a temporary file renamed over the entry, so they outlive every
 * process; an OS crash takes the guests they govern too (docs/migration.md,
 * "The ledger").
 */
int migrate_ledger_open(const char *dir, struct migrate_ledger **out, struct svemig_error *err);

enum migrate_ledger_state {
        MIGRATE_LEDGER_UNKNOWN = 0, /* never seen, or an ABORTED entry pruned: nothing of it runs here */
        MIGRATE_LEDGER_PENDING,     /* being received: neither committed nor given up yet */
        MIGRATE_LEDGER_COMMITTED,   /* final: the destination took COMMIT and started the guest */
        MIGRATE_LEDGER_ABORTED,     /* final: the destination will never run it */
};

#define MIGRATE_ID_HEX_SIZE (2 * MIGRATE_ID_SIZE + 1)

/* An id as 32 lowercase hex digits (and a NUL), and back (-EINVAL). */
void migrate_id_format(const uint8_t id[MIGRATE_ID_SIZE], char out[MIGRATE_ID_HEX_SIZE]);
int migrate_id_parse(const char *s, uint8_t id[MIGRATE_ID_SIZE]);

/* What the ledger says about id now, changing nothing. */
int migrate_ledger_get(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                       enum migrate_ledger_state *out, struct svemig_error *err);

/*
 * Gives id up as a Resolve does: PENDING or UNKNOWN becomes ABORTED (for
 * good: a later COMMIT loses). *out is the final state: ABORTED, or
 * COMMITTED if the COMMIT won first. For a receiver known to be gone.
 */
int migrate_ledger_give_up(struct migrate_ledger *l, const uint8_t id[MIGRATE_ID_SIZE],
                           enum migrate_ledger_state *out, struct svemig_error *err);

/*
 * Forgets what can be forgotten among entries unchanged for keep_s seconds:
 * ABORTED entries go (an unknown id is answered ABORTED anyway); COMMITTED
 * ones are folded into one list of ids (never dropped: a source left in
 * doubt may still ask); PENDING ones stay. No-op in memory.
 */
int migrate_ledger_prune(struct migrate_ledger *l, uint64_t keep_s, unsigned *pruned,
                         struct svemig_error *err);

struct migrate_recv_opts {
        struct migrate_ledger *ledger; /* required for migrations and Resolve */
        const struct peer_info *self;  /* answers HostInfoRequest; NULL = peer_info_local() */
        uint64_t mem_limit;            /* refuse guests larger than this; 0 = MemAvailable (+ ram_reserve) */
        /*
         * ram_reserve bytes of RAM mapped in this process and faulted in
         * ahead (a standby VMM's, in huge pages: guest_create_empty_mem()):
         * a guest that fits is received into it, taking the mapping over
         * (the caller must not touch it again), instead of fresh memory.
         * ram_mem is read only when ram_reserve is not 0; ram_reserve alone
         * (no ram_mem) only counts as memory this host can give (a Check).
         */
        uint64_t ram_reserve;
        void *ram_mem;
        bool log_dirty;              /* give received guests a dirty log, to migrate them on */
        unsigned timeout_ms;         /* waits on the source inside a request; 0 = default */
        unsigned request_timeout_ms; /* waiting for the next request; 0 = forever */
        unsigned n_threads;          /* decompression workers; 0 = one per CPU */
        migrate_progress_fn progress;
        void *userdata;
        /* The received guest's MMIO handler (guest_set_mmio_handler()), set before it first runs here. */
        guest_mmio_fn on_mmio;
        void *mmio_userdata;
        /*
         * Called once the guest is restored and verified, before the
         * destination says Loaded: it has not run here yet, so its state
         * may be read without pausing it. A negative errno fails the
         * migration (the source keeps the guest).
         */
        int (*on_loaded)(void *userdata, struct guest *g);
        void *loaded_userdata;
        /*
         * Test hooks: at fail_at, with fail_errno 0 the destination behaves
         * as if killed (connection shut, any received guest destroyed,
         * -ECANCELED); with fail_errno it fails there in order (e.g. ENOMEM:
         * out of memory), telling the source why.
         */
        enum migrate_step fail_at;
        int fail_errno;

        /*
         * Memory channels: up to max_channels per migration (0 = none
         * offered). Each arrives on channel_fd, a unix socket, as one
         * connection passed with migrate_channel_pass() by whoever
         * accepted it (migrate_peek() said MIGRATE_SERVED_CHANNEL; its
         * Channel message still unread). channel_fd is read only when
         * max_channels is not 0.
         */
        unsigned max_channels;
        int channel_fd;
        /*
         * Ask for whole-payload checks on the channels, as a destination
         * before per-page checks did (the source then copies each raw page
         * into its frame); for tests of that path.
         */
        bool whole_frame_checks;
};

enum migrate_served_kind {
        MIGRATE_SERVED_BYE = 0, /* the peer sent Bye or closed the connection between requests */
        MIGRATE_SERVED_HOST_INFO,
        MIGRATE_SERVED_CHECK,   /* answered; result in check_code/err */
        MIGRATE_SERVED_MIGRATE, /* guest is set when the migration committed */
        MIGRATE_SERVED_RESOLVE,
        MIGRATE_SERVED_CHANNEL, /* a memory channel of a migration in progress (migrate_channel_pass()) */
};

struct migrate_served {
        enum migrate_served_kind kind;
        char guest_name[256];
        int check_code;      /* CHECK: 0 or the -errno answered */
        struct guest *guest; /* MIGRATE: the received guest (running if it ran on the source); caller owns */
        struct migrate_report report;
};

/*
 * Reads one request from the peer on fd (after peer_hello()) and serves it.
 * Returns 0 with *out describing what was served (a refused check is still
 * 0), or -errno when the request failed (a migration that did not commit:
 * nothing is left running here) or the connection broke.
 */
int migrate_serve(struct hv *hv, int fd, const struct migrate_recv_opts *opts, struct migrate_served *out,
                  struct svemig_error *err);

/* Whether a guest of mem_bytes of RAM is received into opts' reserved RAM (else fresh memory). */
bool migrate_recv_uses_reserve(const struct migrate_recv_opts *opts, uint64_t mem_bytes);

/*
 * Serves requests until a migration ends: 0 with *out the received guest
 * (running if it was running on the source, paused otherwise), or -errno.
 * Checks and host-info requests before it are answered on the way.
 */
int migrate_receive(struct hv *hv, int fd, const struct migrate_recv_opts *opts, struct guest **out,
                    struct migrate_report *report, struct svemig_error *err);

/* Serves exactly one request, which must be a Check. 0 whatever the answer; *answer holds it. */
int migrate_check_receive(struct hv *hv, int fd, const struct migrate_recv_opts *opts, int *answer,
                          struct svemig_error *err);

/* ---- Handing a connection on ---- */

/*
 * Looks at the next request on fd (after peer_hello()) without taking it, so
 * that another process can serve it: *kind is MIGRATE_SERVED_MIGRATE (with
 * the guest's name), _CHECK, _RESOLVE, or _HOST_INFO for anything else
 * (_BYE for a frame that does not parse: the reader reports it). Waits up to
 * timeout_ms (0 = default) for the whole frame.
 */
int migrate_peek_request(int fd, unsigned timeout_ms, enum migrate_served_kind *kind, char *guest_name,
                         size_t name_size, struct svemig_error *err);

/* The same, with a Migrate's id (for the destination's ledger) besides its guest's name. */
struct migrate_peeked {
        enum migrate_served_kind kind;
        char guest_name[256];
        uint8_t id[MIGRATE_ID_SIZE]; /* MIGRATE_SERVED_MIGRATE, _CHANNEL: the migration's id; zero otherwise
                                      */
        unsigned channel;            /* MIGRATE_SERVED_CHANNEL: its index */
};

int migrate_peek(int fd, unsigned timeout_ms, struct migrate_peeked *out, struct svemig_error *err);

/*
 * After migrate_peek() said MIGRATE_SERVED_MIGRATE: peeks on past the
 * Migrate to the stream's preamble and header (which the source sends
 * before it waits for the Verdict), so that a destination can admit the
 * guest by its memory before it hands the connection on. Takes nothing.
 * At most MIGRATE_PEEK_MAX bytes are looked at (-E2BIG past them).
 */
#define MIGRATE_PEEK_MAX (64u << 10)

struct migrate_peeked_header {
        uint64_t memory_bytes; /* every memory slot's size, together */
        unsigned vcpus;
};

int migrate_peek_header(int fd, unsigned timeout_ms, struct migrate_peeked_header *out,
                        struct svemig_error *err);

/*
 * Hands conn_fd, a connection whose next request is a Channel (peeked, not
 * read), to the process receiving that migration, over unix_fd, the other
 * end of its migrate_recv_opts.channel_fd (SCM_RIGHTS). The caller keeps
 * and closes its conn_fd. -EPIPE when the receiving process is gone.
 */
int migrate_channel_pass(int unix_fd, int conn_fd, struct svemig_error *err);

/*
 * Refuses the migration request waiting on fd with code (an errno) and
 * reason, as the destination's Verdict: the source's migrate_send() fails
 * with them and keeps its guest. Drains what the source sent meanwhile.
 */
int migrate_refuse(int fd, int code, const char *reason, unsigned timeout_ms, struct svemig_error *err);
