/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The destination side: serving a peer's requests, and receiving a guest.
 *
 * The guest received here is never run before the source's COMMIT: until
 * then any failure (the connection, the stream, a timeout, a Resolve that
 * comes first) discards it. COMMIT and Resolve are decided on the ledger
 * under one lock, so exactly one of them wins.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "macro.h"
#include "migrate/channel.h"
#include "migrate/ledger.h"
#include "migrate/peer.h"
#include "migrate/pump.h"
#include "migrate/wire.h"
#include "stream/stream-internal.h"
#include "workpool.h"
#include "svemig/kvmreg.h"
#include "svemig/snapshot.h"
#include "svemig/stream.h"

struct dest {
        struct hv *hv;
        const struct migrate_recv_opts *opts;
        struct migrate_report *rep;
        struct wire *w;
        struct pump *pump;
        int stream_fd;
        struct svemig_stream_reader *reader;
        struct guest *g;
        enum migrate_step step;
        bool pending; /* in the ledger, not decided */
        bool running; /* start on COMMIT */
        char name[256];
        uint64_t *reg_ids;
        size_t n_reg_ids;
        unsigned want_channels;       /* the source's Migrate.channels */
        struct channels_in *channels; /* those taken */
};

static const struct migrate_recv_opts no_recv_opts;

/* Bytes the kernel may hold for us (it doubles this for its bookkeeping): a few ms of decoding. */
#define RECV_BUFFER (1 << 20)

/* ---- Judging a guest ---- */

static double mib(uint64_t b)
{
        return (double)b / (1024.0 * 1024.0);
}

/* One RAM slot, wherever the guest had it (a bare payload's is at IPA 0): the layout guest.c builds. */
static int check_layout(const struct svemig_stream_info *info, struct svemig_error *err)
{
        if (info->n_slots != 1 || info->slots[0].id != GUEST_RAM_SLOT || info->slots[0].size == 0)
                return svemig_error_set(err, EPROTO,
                                        "the guest's memory layout (%zu slots) is not one RAM slot, the "
                                        "only layout this version receives",
                                        info->n_slots);
        if (info->page_size != HV_PAGE_SIZE)
                return svemig_error_set(err, EPROTO, "the guest uses %u-byte pages; this host %u",
                                        info->page_size, HV_PAGE_SIZE);
        if (info->vcpu_count == 0)
                return svemig_error_set(err, EBADMSG, "the guest has no vcpus");
        return 0;
}

/*
 * The VL set first (its reason names the vq), then, on a probe vcpu set up
 * as the guest's, the register list both ways (a register absent on either
 * side is named) and the ID registers' values.
 */
static int check_vcpu(struct hv *hv, const struct svemig_stream_info *info, const uint64_t *ids, size_t n,
                      struct svemig_error *err)
{
        struct vcpu_state st;
        struct hv_caps caps;
        struct hv_vm *vm = NULL;
        struct hv_vcpu *vcpu = NULL;
        int r;

        r = hv_get_caps(hv, &caps);
        if (r < 0)
                return svemig_error_set(err, r, "cannot read this host's capabilities");
        r = vcpu_state_alloc(&st, ids, n);
        if (r < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        st.features = info->vcpu_features;
        st.vls = info->guest_vls;
        r = vcpu_check_compat(&caps, NULL, &st, err);
        if (r < 0 || n == 0)
                goto out;
        /* The values compared are the ID registers': the header has them. */
        for (size_t i = 0; i < info->n_id_regs; i++) {
                const struct vcpu_reg *have = vcpu_state_find(&st, info->id_regs[i].id);

                if (have && have->size == info->id_regs[i].size)
                        memcpy(have->value, info->id_regs[i].value, have->size);
        }
        r = hv_vm_create(hv, &vm, err);
        if (r == 0)
                r = peer_probe_vcpu(vm, info->vcpu_features, &info->guest_vls, &vcpu, err);
        if (r == 0)
                r = vcpu_check_compat(&caps, vcpu, &st, err);
        hv_vcpu_destroy(vcpu);
        hv_vm_destroy(vm);
out:
        vcpu_state_done(&st);
        return r;
}

/*
 * Whether this host can take the guest: layout, VL set, registers, then
 * what snapshot_check_host() adds (vcpu count, features, the header's ID
 * registers), then memory.
 */
static int judge(struct hv *hv, const struct migrate_recv_opts *opts, const struct svemig_stream_info *info,
                 const uint64_t *ids, size_t n_ids, struct svemig_error *err)
{
        uint64_t need, avail;
        int r;

        r = check_layout(info, err);
        if (r == 0)
                r = check_vcpu(hv, info, ids, n_ids, err);
        if (r == 0)
                r = snapshot_check_host(hv, info, err);
        if (r < 0)
                return r;
        need = info->slots[0].size;
        /* Reserved RAM is the host's to give, though MemAvailable no longer counts it. */
        avail = opts->mem_limit ? opts->mem_limit : peer_mem_available() + opts->ram_reserve;
        if (avail && need > avail)
                return svemig_error_set(
                        err, ENOMEM,
                        "not enough memory: the guest has %.1f MiB of RAM, this host can give "
                        "%.1f MiB%s",
                        mib(need), mib(avail), opts->mem_limit ? " (its configured limit)" : "");
        return 0;
}

bool migrate_recv_uses_reserve(const struct migrate_recv_opts *opts, uint64_t mem_bytes)
{
        return opts->ram_reserve && opts->ram_mem && mem_bytes <= opts->ram_reserve;
}

/* The guest to receive into: on the reserved RAM when it fits, else fresh memory. */
static int create_guest(struct hv *hv, const struct migrate_recv_opts *opts,
                        const struct svemig_stream_info *info, struct guest **out, struct svemig_error *err)
{
        uint64_t size = info->slots[0].size;

        if (migrate_recv_uses_reserve(opts, size))
                return guest_create_empty_mem(hv, info->vcpu_count, info->slots[0].gpa, size,
                                              opts->log_dirty, opts->ram_mem, opts->ram_reserve, out, err);
        return guest_create_empty_at(hv, info->vcpu_count, info->slots[0].gpa, size, opts->log_dirty, out,
                                     err);
}

static int send_verdict(struct wire *w, int code, const char *message, unsigned channels, bool page_checks,
                        struct svemig_error *err)
{
        Svemig__Peer__Verdict v = SVEMIG__PEER__VERDICT__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;

        v.code = abs(code);
        v.message = (char *)(message ? message : "");
        v.channels = channels;
        v.page_checks = channels > 0 && page_checks;
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_VERDICT;
        msg.verdict = &v;
        return wire_send(w, &msg, err);
}

static int serve_check(struct hv *hv, struct wire *w, const struct migrate_recv_opts *opts,
                       const Svemig__Peer__Check *check, struct migrate_served *out,
                       struct svemig_error *err)
{
        struct svemig_stream_reader *rd = NULL;
        struct svemig_error why = {0};
        const uint64_t *ids = check->guest ? check->guest->reg_ids : NULL;
        size_t n_ids = check->guest ? check->guest->n_reg_ids : 0;
        int r;

        if (check->guest && check->guest->name)
                snprintf(out->guest_name, sizeof(out->guest_name), "%s", check->guest->name);
        if (check->stream_header.len > SVEMIG_STREAM_PREAMBLE_SIZE + SVEMIG_STREAM_HEADER_MAX + 8u)
                r = svemig_error_set(&why, EBADMSG, "the stream header in the Check cannot be read");
        else
                r = svemig_stream_reader_open_mem(check->stream_header.data, check->stream_header.len, &rd,
                                                  &why);
        if (r == 0)
                r = judge(hv, opts, svemig_stream_reader_info(rd), ids, n_ids, &why);
        svemig_stream_reader_free(rd);
        out->check_code = r;
        if (r < 0 && err)
                *err = why;
        return send_verdict(w, r, r < 0 ? why.msg : "", 0, false, NULL) < 0 ? -EPIPE : 0;
}

/* ---- Receiving a guest ---- */

static int dest_fail(struct dest *d, int r, struct svemig_error *err)
{
        d->rep->failed_step = d->step;
        svemig_error_prefix(err, "receiving %s%s%sfailed at %s", d->name[0] ? "guest '" : "", d->name,
                            d->name[0] ? "' " : "", migrate_step_name(d->step));
        return r;
}

/* The pump's reason beats the reader's "truncated": it knows the peer went away or fell silent. */
static int stream_reason(struct dest *d, int r, struct svemig_error *err)
{
        int k = d->pump ? pump_error(d->pump, err) : 0;

        return k < 0 ? k : r;
}

static void stream_close(struct dest *d)
{
        channels_in_free(d->channels);
        d->channels = NULL;
        svemig_stream_reader_free(d->reader);
        d->reader = NULL;
        pump_free(d->pump);
        d->pump = NULL;
}

static void discard(struct dest *d)
{
        if (d->pending)
                ledger_abort(d->opts->ledger, d->rep->id);
        d->pending = false;
        guest_destroy(d->g);
        d->g = NULL;
}

/* The test hook: at step, a kill (fail_errno 0) or an orderly failure with fail_errno. */
static bool hook(struct dest *d, enum migrate_step step, int *r, bool *killed, struct svemig_error *err)
{
        if (d->opts->fail_at != step)
                return false;
        if (d->opts->fail_errno) {
                *r = svemig_error_set(err, d->opts->fail_errno,
                                      "destination: %s (injected by the test hook)",
                                      strerror(d->opts->fail_errno));
                return true;
        }
        /*
         * A killed process takes its guest and its ledger with it: the
         * guest goes, the ledger entry is left for the test to throw away
         * with the rest of the "process".
         */
        stream_close(d);
        wire_kill(d->w);
        guest_destroy(d->g);
        d->g = NULL;
        d->rep->failed_step = step;
        *killed = true;
        *r = svemig_error_set(err, ECANCELED, "destination killed at %s (test hook)",
                              migrate_step_name(step));
        return true;
}

/* The received guest's RAM, as the stream's memory frames address it. */
static struct svemig_mem_map guest_map(const struct dest *d)
{
        return (struct svemig_mem_map){.slot = GUEST_RAM_SLOT,
                                       .gpa = guest_ram_base(d->g),
                                       .host = guest_mem(d->g),
                                       .size = guest_mem_size(d->g)};
}

/* vcpus restored at once: a few per worker, so that decoding the next ones overlaps. */
#define RESTORE_JOBS_PER_THREAD 2
#define RESTORE_THREADS_MAX     8

/*
 * The stream as a pipeline: the calling thread reads frames in order (memory
 * it applies itself), and each vcpu frame is a job that a worker decodes and
 * restores while the next is read. The vcpus are independent, and restoring
 * 64 of them one after the other is most of the destination's part of the
 * downtime.
 */
struct restore_job {
        /* The frame as read, decoded on the worker too: decoding is most of a vcpu's cost here. */
        struct frame_head head;
        uint64_t offset;
        struct bytebuf frame, scratch;
        struct pbarena arena;
        struct vcpu_state st;
        struct svemig_error err;
};

struct reading {
        struct dest *d;
        bool *killed;
        struct svemig_error *err;
        struct svemig_mem_map map;
        bool *seen; /* set by the workers, atomically */
        unsigned vcpus;
        struct restore_job *jobs;
        bool hooked; /* the test hook is due: run it once no worker touches the guest */
};

/* Whether the test hook is due at step; it runs after the pipeline (it may destroy the guest). */
static bool hook_due(struct reading *rd, enum migrate_step step)
{
        rd->hooked = rd->d->opts->fail_at == step;
        return rd->hooked;
}

/* Applies memory frames until the next vcpu frame (into slot) or the verified trailer. */
static int read_produce(void *ctx, unsigned slot)
{
        struct reading *rd = ctx;
        struct dest *d = rd->d;
        struct restore_job *job = &rd->jobs[slot];
        int r;

        for (;;) {
                r = svemig_stream_next(d->reader, rd->err);
                if (r < 0)
                        return stream_reason(d, r, rd->err);
                if (r == 0)
                        return WORKPOOL_END; /* the trailer: counts and digest verified */
                if (r >= SVEMIG_FRAME_VGIC)
                        return svemig_error_set(rd->err, EPROTO,
                                                "the source sent device state (a %s frame), which this "
                                                "destination does not restore yet",
                                                svemig_frame_type_name((uint32_t)r));
                if (r != SVEMIG_FRAME_MEMORY)
                        break;
                /* The channels' bookkeeping of written pages holds only if they carry all of it. */
                if (d->channels)
                        return svemig_error_set(rd->err, EPROTO,
                                                "the source sent memory on the connection while its memory "
                                                "channels carry it");
                if (hook_due(rd, d->step))
                        return -ECANCELED;
                r = svemig_stream_read_memory(d->reader, &rd->map, 1, rd->err);
                if (r < 0)
                        return stream_reason(d, r, rd->err);
        }

        /* SVEMIG_FRAME_VCPU: the guest is paused on the source; restore each vcpu as it comes. */
        d->step = MIGRATE_STEP_STOP_COPY;
        if (hook_due(rd, d->step))
                return -ECANCELED;
        r = stream_reader_take_vcpu(d->reader, &job->frame, &job->head, &job->offset, rd->err);
        if (r < 0)
                return stream_reason(d, r, rd->err);
        return WORKPOOL_JOB;
}

static int read_work(void *ctx, unsigned slot)
{
        struct reading *rd = ctx;
        struct restore_job *job = &rd->jobs[slot];
        const struct svemig_stream_info *info = svemig_stream_reader_info(rd->d->reader);
        int r;

        job->err = (struct svemig_error){0};
        vcpu_state_done(&job->st);
        r = stream_vcpu_decode(info, &job->head, job->frame.p, job->offset, &job->scratch, &job->arena,
                               &job->st, &job->err);
        if (r < 0)
                return r;
        if (__atomic_exchange_n(&rd->seen[job->st.index], true, __ATOMIC_RELAXED))
                return svemig_error_set(&job->err, EBADMSG, "offset %llu: vcpu %u appears twice",
                                        (unsigned long long)job->offset, job->st.index);
        return vcpu_restore(guest_vcpu(rd->d->g, job->st.index), &job->st, &job->err);
}

static int read_consume(void *ctx, unsigned slot, int work_rc)
{
        struct reading *rd = ctx;
        struct restore_job *job = &rd->jobs[slot];

        vcpu_state_done(&job->st);
        if (work_rc < 0) {
                if (rd->err)
                        *rd->err = job->err;
                return work_rc;
        }
        rd->vcpus++;
        return 0;
}

static int read_stream(struct dest *d, bool *killed, struct svemig_error *err)
{
        const struct svemig_stream_info *info = svemig_stream_reader_info(d->reader);
        _cleanup_free_ bool *seen = calloc(info->vcpu_count, sizeof(bool));
        struct workpool *pool = NULL;
        struct workpool_pipeline pl;
        struct reading rd = {.d = d, .killed = killed, .err = err, .map = guest_map(d), .seen = seen};
        int r;

        if (!seen)
                return svemig_error_set(err, ENOMEM, "destination: out of memory");
        r = workpool_new(0, &pool);
        if (r < 0)
                return svemig_error_set(err, r, "destination: cannot start the vcpu restore threads: %s",
                                        strerror(-r));
        pl = (struct workpool_pipeline){
                .window = RESTORE_JOBS_PER_THREAD * MIN(workpool_threads(pool), RESTORE_THREADS_MAX),
                .ctx = &rd,
                .produce = read_produce,
                .work = read_work,
                .consume = read_consume,
        };
        rd.jobs = calloc(pl.window, sizeof(*rd.jobs));
        if (!rd.jobs) {
                workpool_free(pool);
                return svemig_error_set(err, ENOMEM, "destination: out of memory");
        }
        for (unsigned i = 0; i < pl.window; i++)
                pbarena_init(&rd.jobs[i].arena);
        d->step = MIGRATE_STEP_PRECOPY;
        r = workpool_run(pool, &pl);
        /* After a failure the jobs in flight were waited for but not consumed. */
        for (unsigned i = 0; i < pl.window; i++) {
                vcpu_state_done(&rd.jobs[i].st);
                bytebuf_done(&rd.jobs[i].frame);
                bytebuf_done(&rd.jobs[i].scratch);
                pbarena_done(&rd.jobs[i].arena);
        }
        free(rd.jobs);
        workpool_free(pool);
        if (rd.hooked && hook(d, d->step, &r, killed, err))
                return r;
        if (r < 0)
                return r;
        if (rd.vcpus != info->vcpu_count)
                return svemig_error_set(err, EBADMSG, "the stream held %u of its %u vcpus", rd.vcpus,
                                        info->vcpu_count);
        return 0;
}

static int send_loaded(struct dest *d, struct svemig_error *err)
{
        Svemig__Peer__Loaded l = SVEMIG__PEER__LOADED__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;

        l.id.data = d->rep->id;
        l.id.len = MIGRATE_ID_SIZE;
        l.vcpus = guest_n_vcpus(d->g);
        l.pages = d->rep->pages_sent;
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_LOADED;
        msg.loaded = &l;
        return wire_send(d->w, &msg, err);
}

static int send_ack(struct dest *d, int code, const char *why, struct svemig_error *err)
{
        Svemig__Peer__Ack a = SVEMIG__PEER__ACK__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;

        a.id.data = d->rep->id;
        a.id.len = MIGRATE_ID_SIZE;
        a.code = abs(code);
        a.message = (char *)(why ? why : "");
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_ACK;
        msg.ack = &a;
        return wire_send(d->w, &msg, err);
}

struct start_ctx {
        struct dest *d;
        struct svemig_error err;
        uint64_t t_running;
};

/* Runs under the ledger's lock: the guest starts iff this COMMIT wins. */
static int start_guest(void *userdata)
{
        struct start_ctx *c = userdata;
        int r = c->d->running ? guest_start(c->d->g, &c->err) : 0;

        c->t_running = now_ns(CLOCK_MONOTONIC);
        return r;
}

static int await_commit(struct dest *d, struct svemig_error *err)
{
        PeerMessage *in;
        int r;

        r = wire_recv(d->w, d->w->timeout_ms, &in, err);
        if (r < 0)
                return svemig_error_prefix(err,
                                           "destination: waiting for COMMIT (the source keeps the guest)");
        if (in->body_case == SVEMIG__PEER__PEER_MESSAGE__BODY_ABORT)
                return svemig_error_set(err, in->abort->code ? (int)in->abort->code : ECANCELED,
                                        "the source stopped at %s: %s", in->abort->step, in->abort->message);
        if (in->body_case != SVEMIG__PEER__PEER_MESSAGE__BODY_COMMIT)
                return svemig_error_set(err, EPROTO, "the source sent %s where COMMIT was due",
                                        wire_body_name(in));
        if (in->commit->id.len != MIGRATE_ID_SIZE ||
            memcmp(in->commit->id.data, d->rep->id, MIGRATE_ID_SIZE))
                return svemig_error_set(err, EPROTO, "the source sent COMMIT for another migration");
        return 0;
}

/* After the trailer: LOADED, COMMIT, start, ACK. */
static int handoff(struct dest *d, bool *killed, struct svemig_error *err)
{
        struct start_ctx c = {.d = d};
        enum migrate_ledger_state state;
        uint64_t t_commit;
        int r;

        d->step = MIGRATE_STEP_LOADED;
        if (hook(d, d->step, &r, killed, err))
                return r;
        r = send_loaded(d, err);
        if (r < 0)
                return svemig_error_prefix(err, "destination: sending LOADED");

        d->step = MIGRATE_STEP_COMMIT;
        if (hook(d, d->step, &r, killed, err))
                return r;
        r = await_commit(d, err);
        if (r < 0)
                return r;
        t_commit = now_ns(CLOCK_MONOTONIC);

        d->step = MIGRATE_STEP_ACK;
        state = ledger_commit(d->opts->ledger, d->rep->id, start_guest, &c);
        d->pending = false;
        if (state != MIGRATE_LEDGER_COMMITTED) {
                const char *why =
                        c.err.code ? c.err.msg
                                   : "the migration was resolved as aborted before its COMMIT arrived";

                (void)send_ack(d, c.err.code ? c.err.code : ECANCELED, why, NULL);
                return svemig_error_set(err, c.err.code ? c.err.code : ECANCELED, "destination: %s", why);
        }
        d->rep->downtime_ns = c.t_running - t_commit;
        d->rep->outcome = MIGRATE_OUTCOME_COMMITTED;
        if (hook(d, d->step, &r, killed, err))
                return r;
        /* The guest is ours now whatever happens to the Ack: a lost one is the source's to resolve. */
        (void)send_ack(d, 0, NULL, NULL);
        return 0;
}

static int open_stream(struct dest *d, struct svemig_error *err)
{
        struct svemig_stream_read_opts ropts = {.n_threads = d->opts->n_threads};
        int rcvbuf = RECV_BUFFER, r;

        /*
         * A bounded receive buffer: left to autotuning it grows to tens of
         * megabytes that the decoders are still behind on when the source
         * pauses the guest, and the pause lasts until they catch up. The
         * source waits for its send queue to drain before it pauses.
         */
        (void)setsockopt(d->w->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        r = pump_start(d->w->fd, PUMP_FROM_PEER, d->w->timeout_ms, 0, &d->stream_fd, &d->pump, err);
        if (r < 0)
                return r;
        pump_expect(d->pump, true);
        r = svemig_stream_reader_open(d->stream_fd, &ropts, &d->reader, err);
        if (r < 0)
                return stream_reason(d, r, err);
        pump_expect(d->pump, false);
        /*
         * Nothing may follow the header before our Verdict. The pump counts
         * spliced bytes once they are in the pipe, where the reader may have
         * them first: wait for its count to catch up.
         */
        r = pump_flush(d->pump, svemig_stream_reader_offset(d->reader), err);
        if (r < 0)
                return r;
        if (pump_bytes(d->pump) != svemig_stream_reader_offset(d->reader))
                return svemig_error_set(err, EPROTO,
                                        "the source sent more than the stream header before the Verdict");
        return 0;
}

/* The memory channels this destination takes of those the source offers. */
static unsigned channels_taken(const struct dest *d)
{
        return d->opts->max_channels
                       ? MIN(d->want_channels, MIN(d->opts->max_channels, MIGRATE_CHANNELS_MAX))
                       : 0;
}

/*
 * A channel failed: the stream's reader stops at once, with the channel's
 * reason. All ended: the connection's timeout applies again (the channels
 * watched the source meanwhile; the connection stays silent until the
 * vcpus).
 */
static void channel_event(void *userdata, int r, const struct svemig_error *err)
{
        struct dest *d = userdata;

        if (r < 0)
                pump_abort(d->pump, r, svemig_error_str(err, r));
        else
                pump_expect(d->pump, true);
}

/* Right after the Verdict the source opens them, before any memory moves. */
static int accept_channels(struct dest *d, bool *killed, struct svemig_error *err)
{
        struct svemig_mem_map map = guest_map(d);
        unsigned n = channels_taken(d);
        int r;

        if (n == 0)
                return 0;
        /*
         * Silent until the vcpus: the channels watch the source meanwhile,
         * and give the connection its timeout back once they all end.
         */
        pump_expect(d->pump, false);
        r = channels_accept(d->opts->channel_fd, d->rep->id, n, d->w->timeout_ms, d->pump,
                            svemig_stream_reader_info(d->reader), &map, channel_event, d, &d->channels, err);
        if (r < 0)
                return svemig_error_prefix(err, "destination");
        /* The stream's memory comes on the channels: the pre-copy's hook is due now. */
        if (hook(d, MIGRATE_STEP_PRECOPY, &r, killed, err))
                return r;
        return 0;
}

/* After the stream's trailer: every channel's, verified, and what they carried counted. */
static int end_channels(struct dest *d, struct svemig_error *err)
{
        struct channels_in_stats st;
        int r;

        if (!d->channels)
                return 0;
        r = channels_in_wait(d->channels, d->w->timeout_ms, &st, err);
        if (r < 0)
                return r;
        d->rep->pages_sent = st.pages;
        d->rep->zero_pages = st.zero_pages;
        d->rep->torn_pages = st.torn_pages;
        d->rep->bytes_sent = st.bytes;
        return 0;
}

static int copy_request(struct dest *d, const Svemig__Peer__Migrate *m, struct svemig_error *err)
{
        if (m->id.len != MIGRATE_ID_SIZE)
                return svemig_error_set(err, EPROTO, "the Migrate request has a %zu-byte id", m->id.len);
        memcpy(d->rep->id, m->id.data, MIGRATE_ID_SIZE);
        d->running = m->running;
        d->want_channels = m->channels;
        if (m->guest) {
                snprintf(d->name, sizeof(d->name), "%s", m->guest->name ? m->guest->name : "");
                d->n_reg_ids = m->guest->n_reg_ids;
                d->reg_ids = calloc(d->n_reg_ids ? d->n_reg_ids : 1, sizeof(*d->reg_ids));
                if (!d->reg_ids)
                        return svemig_error_set(err, ENOMEM, "out of memory");
                memcpy_safe(d->reg_ids, m->guest->reg_ids, d->n_reg_ids * sizeof(*d->reg_ids));
                if (m->guest->device_state.len > MIGRATE_DEVICE_STATE_MAX)
                        return svemig_error_set(
                                err, EPROTO,
                                "the Migrate request carries %zu bytes of device state, more than %u",
                                m->guest->device_state.len, MIGRATE_DEVICE_STATE_MAX);
                memcpy_safe(d->rep->device_state, m->guest->device_state.data, m->guest->device_state.len);
                d->rep->device_state_size = m->guest->device_state.len;
        }
        return 0;
}

static int receive(struct hv *hv, struct wire *w, const struct migrate_recv_opts *opts,
                   const Svemig__Peer__Migrate *m, struct migrate_served *out, struct svemig_error *err)
{
        struct dest d = {.hv = hv, .opts = opts, .rep = &out->report, .w = w, .stream_fd = -1};
        const struct svemig_stream_info *info;
        struct svemig_error why = {0};
        bool killed = false, refused = false, fresh;
        uint64_t t_start = now_ns(CLOCK_MONOTONIC);
        int r;

        /* m lives in w's arena: copy what is needed before w receives again. */
        d.step = MIGRATE_STEP_REQUEST;
        r = copy_request(&d, m, err);
        if (r < 0)
                goto fail;
        snprintf(out->guest_name, sizeof(out->guest_name), "%s", d.name);
        if (!opts->ledger) {
                r = svemig_error_set(err, EINVAL, "destination: no ledger configured for migrations");
                goto fail;
        }
        r = ledger_begin(opts->ledger, d.rep->id);
        if (r < 0) {
                r = svemig_error_set(err, r == -EEXIST ? EALREADY : -r,
                                     "destination: migration id seen before");
                goto fail;
        }
        d.pending = true;
        if (hook(&d, d.step, &r, &killed, err))
                goto fail;
        r = open_stream(&d, err);
        if (r < 0)
                goto fail;

        d.step = MIGRATE_STEP_VERDICT;
        if (hook(&d, d.step, &r, &killed, err))
                goto fail;
        info = svemig_stream_reader_info(d.reader);
        snprintf(d.rep->peer_host, sizeof(d.rep->peer_host), "%s", info->host_name);
        r = judge(hv, opts, info, d.reg_ids, d.n_reg_ids, &why);
        if (r == 0)
                r = create_guest(hv, opts, info, &d.g, &why);
        if (r == 0)
                guest_set_mmio_handler(d.g, opts->on_mmio, opts->mmio_userdata);
        if (r < 0) {
                /* Refused before any memory moved: the connection stays clean for another request. */
                *err = why;
                refused = true;
                (void)send_verdict(d.w, r, why.msg, 0, false, NULL);
                goto fail;
        }
        /*
         * Fresh RAM (not the caller's, faulted in ahead) in small pages while
         * the stream fills it: a first write then clears 4 KiB, where a huge
         * page would clear (and on a busy host compact) 2 MiB, and zero
         * pages are never written at all (stream/memchunk.c). Huge pages are asked
         * for again once it is loaded.
         */
        fresh = !migrate_recv_uses_reserve(opts, guest_mem_size(d.g));
        if (fresh)
                (void)madvise(guest_mem(d.g), guest_mem_size(d.g), MADV_NOHUGEPAGE);
        r = send_verdict(d.w, 0, NULL, channels_taken(&d), !opts->whole_frame_checks, err);
        if (r < 0)
                goto fail;
        pump_expect(d.pump, true);
        d.step = MIGRATE_STEP_PRECOPY;
        r = accept_channels(&d, &killed, err);
        if (r < 0)
                goto fail;
        /*
         * The vcpu threads are created now, parked, so that COMMIT only
         * releases them: creating 64 threads costs milliseconds of downtime.
         * Best effort: guest_start() creates them itself if this failed.
         */
        if (d.running)
                (void)guest_prepare_start(d.g, NULL);

        r = read_stream(&d, &killed, err);
        if (r == 0)
                r = end_channels(&d, err);
        /* Described while it does not run: migrating it on will not stop it for that. */
        if (r == 0)
                (void)guest_describe(d.g, NULL, NULL);
        if (r == 0 && opts->on_loaded) {
                r = opts->on_loaded(opts->loaded_userdata, d.g);
                if (r < 0)
                        svemig_error_set(err, -r, "destination: the received guest was refused: %s",
                                         strerror(-r));
        }
        if (r < 0)
                goto fail;
        if (fresh)
                (void)madvise(guest_mem(d.g), guest_mem_size(d.g), MADV_HUGEPAGE);
        pump_expect(d.pump, false);
        r = pump_stop(d.pump, err);
        if (r == 0 && pump_bytes(d.pump) != svemig_stream_reader_offset(d.reader))
                r = svemig_error_set(err, EPROTO, "the source sent bytes past the stream's trailer");
        if (r < 0)
                goto fail;
        d.rep->pages_sent += svemig_stream_reader_stats(d.reader)->mem_pages;
        d.rep->zero_pages += svemig_stream_reader_stats(d.reader)->zero_pages;
        d.rep->stream_bytes = svemig_stream_reader_offset(d.reader);
        d.rep->bytes_sent += d.w->bytes_in + d.rep->stream_bytes;

        /* The reader's workers and buffers go after the handoff: the guest is paused until it is done. */
        r = handoff(&d, &killed, err);
        if (r < 0)
                goto fail;
        stream_close(&d);
        out->guest = d.g;
        d.g = NULL;
        d.rep->total_ns = now_ns(CLOCK_MONOTONIC) - t_start;
        goto out;

fail:
        if (killed)
                goto out;
        stream_close(&d);
        discard(&d);
        if (!refused) {
                /* Mid-protocol: tell the source why, then let it go. */
                wire_send_abort(d.w, r, d.step, svemig_error_str(err, r));
                wire_linger(d.w);
        }
        r = dest_fail(&d, r, err);
out:
        if (killed)
                discard(&d);
        free(d.reg_ids);
        return r;
}

/* ---- Serving ---- */

static int serve_resolve(struct wire *w, const struct migrate_recv_opts *opts,
                         const Svemig__Peer__Resolve *res, struct svemig_error *err)
{
        Svemig__Peer__Outcome o = SVEMIG__PEER__OUTCOME__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;
        uint8_t id[MIGRATE_ID_SIZE];
        enum migrate_ledger_state s;

        if (res->id.len != MIGRATE_ID_SIZE)
                return svemig_error_set(err, EPROTO, "a Resolve with a %zu-byte id", res->id.len);
        if (!opts->ledger)
                return svemig_error_set(err, EINVAL,
                                        "destination: no ledger configured to resolve migrations");
        memcpy(id, res->id.data, MIGRATE_ID_SIZE);
        s = ledger_resolve(opts->ledger, id);
        if (s == MIGRATE_LEDGER_UNKNOWN)
                /* No answer beats a wrong one: the source stays in doubt and asks again. */
                return svemig_error_set(err, EIO, "destination: the ledger cannot record the outcome");
        o.id.data = id;
        o.id.len = MIGRATE_ID_SIZE;
        o.state = s == MIGRATE_LEDGER_COMMITTED ? SVEMIG__PEER__OUTCOME__STATE__COMMITTED
                                                : SVEMIG__PEER__OUTCOME__STATE__ABORTED;
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_OUTCOME;
        msg.outcome = &o;
        return wire_send(w, &msg, err);
}

static int serve_info(struct hv *hv, struct wire *w, const struct migrate_recv_opts *opts,
                      struct svemig_error *err)
{
        struct peer_info self;
        int r;

        if (opts->self)
                return peer_serve_info(w, opts->self, err);
        r = peer_info_local(hv, opts->mem_limit, &self, err);
        if (r == 0)
                r = peer_serve_info(w, &self, err);
        peer_info_done(&self);
        return r;
}

int migrate_serve(struct hv *hv, int fd, const struct migrate_recv_opts *opts, struct migrate_served *out,
                  struct svemig_error *err)
{
        struct svemig_error local = {0};
        PeerMessage *msg;
        struct wire w;
        int r;

        if (!opts)
                opts = &no_recv_opts;
        if (!err)
                err = &local;
        memset(out, 0, sizeof(*out));
        wire_init(&w, fd, opts->timeout_ms);
        r = wire_recv(&w, opts->request_timeout_ms, &msg, err);
        if (r == -ENOTCONN) {
                out->kind = MIGRATE_SERVED_BYE;
                r = 0;
                goto out;
        }
        if (r < 0) {
                svemig_error_prefix(err, "destination: waiting for a request");
                goto out;
        }
        switch (msg->body_case) {
        case SVEMIG__PEER__PEER_MESSAGE__BODY_BYE:
                out->kind = MIGRATE_SERVED_BYE;
                break;
        case SVEMIG__PEER__PEER_MESSAGE__BODY_HOST_INFO_REQUEST:
                out->kind = MIGRATE_SERVED_HOST_INFO;
                r = serve_info(hv, &w, opts, err);
                break;
        case SVEMIG__PEER__PEER_MESSAGE__BODY_CHECK:
                out->kind = MIGRATE_SERVED_CHECK;
                r = serve_check(hv, &w, opts, msg->check, out, err);
                break;
        case SVEMIG__PEER__PEER_MESSAGE__BODY_MIGRATE:
                out->kind = MIGRATE_SERVED_MIGRATE;
                r = receive(hv, &w, opts, msg->migrate, out, err);
                break;
        case SVEMIG__PEER__PEER_MESSAGE__BODY_RESOLVE:
                out->kind = MIGRATE_SERVED_RESOLVE;
                r = serve_resolve(&w, opts, msg->resolve, err);
                break;
        default:
                r = svemig_error_set(err, EPROTO, "destination: the peer sent %s where a request was due",
                                     wire_body_name(msg));
                break;
        }
out:
        wire_done(&w);
        return r;
}

int migrate_receive(struct hv *hv, int fd, const struct migrate_recv_opts *opts, struct guest **out,
                    struct migrate_report *report, struct svemig_error *err)
{
        struct migrate_served served;
        int r;

        *out = NULL;
        for (;;) {
                r = migrate_serve(hv, fd, opts, &served, err);
                if (report && served.kind == MIGRATE_SERVED_MIGRATE)
                        *report = served.report;
                if (r < 0)
                        return r;
                if (served.kind == MIGRATE_SERVED_BYE)
                        return svemig_error_set(err, ENOTCONN,
                                                "destination: the source closed the connection without "
                                                "migrating a guest");
                if (served.kind == MIGRATE_SERVED_MIGRATE) {
                        *out = served.guest;
                        return 0;
                }
        }
}

int migrate_check_receive(struct hv *hv, int fd, const struct migrate_recv_opts *opts, int *answer,
                          struct svemig_error *err)
{
        struct migrate_served served;
        int r = migrate_serve(hv, fd, opts, &served, err);

        if (r < 0)
                return r;
        if (served.kind != MIGRATE_SERVED_CHECK) {
                guest_destroy(served.guest);
                return svemig_error_set(err, EPROTO,
                                        "destination: the peer sent another request than a check");
        }
        *answer = served.check_code;
        return 0;
}
