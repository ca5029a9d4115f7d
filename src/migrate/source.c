/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The source side of a live migration (docs/migration.md):
 *
 *   Migrate + stream header -> Verdict -> pre-copy passes -> pause,
 *   last dirty pages, vcpus, trailer -> Loaded -> COMMIT -> Ack
 *
 * The rule that keeps exactly one running copy: until COMMIT has been sent,
 * any failure resumes the guest here (the destination never runs a guest
 * without COMMIT). Once COMMIT may have reached the destination, this side
 * never resumes on its own: without an Ack it asks the destination on a new
 * connection (Resolve), whose answer is final, and otherwise leaves the
 * guest paused and says so (-EINPROGRESS).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "macro.h"
#include "migrate/channel.h"
#include "migrate/peer.h"
#include "migrate/policy.h"
#include "migrate/pump.h"
#include "migrate/wire.h"
#include "stream/stream-internal.h"
#include "svemig/snapshot.h"
#include "svemig/stream.h"
#include "workpool.h"

/* Memory goes to the stream writer in pieces, so that failures and cancels are noticed promptly. */
#define SOURCE_PIECE       (64ull << 20)
#define SOURCE_TRIAL_PIECE (16ull << 20) /* a compression mode on trial */
#define RESOLVE_TRIES      3u
#define VCPU_OVERHEAD      4096u /* framing and encoding per vcpu, for the downtime estimate */
#define DRAIN_WAIT_NS      (500ull * 1000000ull)

struct source {
        struct guest *g;
        const struct migrate_opts *opts;
        struct migrate_report *rep;
        struct wire w;
        struct pump *pump;
        int stream_fd;
        struct svemig_stream_writer *writer;
        struct converge_opts conv;
        enum migrate_step step;
        bool was_running;
        bool paused; /* by us */
        bool commit_sent;
        bool killed; /* by the test hook */
        uint64_t t_start, t_verdict, t_pause, t_copied, t_loaded, t_commit, t_acked;
        struct vcpu_state desc; /* vcpu 0, for the header and the register list */
        uint64_t *dirty;        /* the pages still to send */
        size_t words;
        unsigned throttle;
        uint64_t link_bytes, link_ns; /* over every pre-copy pass */
        uint64_t bytes_per_page;
        struct compression_input comp; /* MIGRATE_COMPRESSION_AUTO's measurements */
        bool adaptive;                 /* choose LZ4 or raw before each piece */
        bool measured;                 /* a piece was measured (the first only measures the link) */
        unsigned want_channels;        /* memory channels asked for */
        struct channels_out *channels; /* and those the destination took */
        char peer[96];                 /* "destination <host>" */
};

static const struct migrate_opts no_opts;

/* ---- Describing the guest ---- */

/* vcpu 0's state, for the stream header and the register list: read before the guest first ran. */
static int capture_descriptor(struct source *s, struct svemig_error *err)
{
        return guest_describe(s->g, &s->desc, err);
}

/* The stream header of this migration. id_regs point into s->desc. */
static int describe(struct source *s, enum migrate_compression c, struct snapshot_header *hdr,
                    struct svemig_error *err)
{
        return snapshot_describe(s->g, &s->desc, "migration",
                                 c == MIGRATE_COMPRESSION_LZ4 ? SVEMIG_COMPRESSION_LZ4
                                                              : SVEMIG_COMPRESSION_NONE,
                                 0, hdr, err);
}

/* GuestSpec: the name and vcpu 0's register list. reg_ids is the caller's to free. */
static int guest_spec(const struct source *s, Svemig__Peer__GuestSpec *spec, uint64_t **reg_ids)
{
        svemig__peer__guest_spec__init(spec);
        *reg_ids = calloc(s->desc.n_regs ? s->desc.n_regs : 1, sizeof(**reg_ids));
        if (!*reg_ids)
                return -ENOMEM;
        for (size_t i = 0; i < s->desc.n_regs; i++)
                (*reg_ids)[i] = s->desc.regs[i].id;
        spec->name = (char *)(s->opts->guest_name ? s->opts->guest_name : "");
        spec->n_reg_ids = s->desc.n_regs;
        spec->reg_ids = *reg_ids;
        /* The caller's device state rides along, unread (migrate_opts.device_state). */
        if (s->opts->device_state && s->opts->device_state_size <= MIGRATE_DEVICE_STATE_MAX) {
                spec->device_state.data = (uint8_t *)s->opts->device_state;
                spec->device_state.len = s->opts->device_state_size;
        }
        return 0;
}

/* ---- Failure ---- */

/* Where the source is and what it does, in front of a reason. */
static int source_fail(struct source *s, int r, struct svemig_error *err)
{
        const char *name = s->opts->guest_name;

        s->rep->failed_step = s->step;
        svemig_error_prefix(err, "migrating %s%s%sto %s failed at %s", name ? "guest '" : "",
                            name ? name : "", name ? "' " : "", s->peer, migrate_step_name(s->step));
        return r;
}

/* Puts the guest back as it was on entry: running (at full speed) if it was. */
static void resume(struct source *s)
{
        guest_set_throttle(s->g, 100);
        if (s->paused && s->was_running && guest_start(s->g, NULL) == 0)
                s->paused = false;
        s->rep->resumed = guest_running(s->g);
}

/* Takes the reason from the destination when it sent one (an Abort) before the connection broke. */
static int peer_reason(struct source *s, int r, struct svemig_error *err)
{
        return wire_peer_reason(&s->w, r, s->peer, err);
}

static void stream_close(struct source *s)
{
        svemig_stream_writer_free(s->writer);
        s->writer = NULL;
        pump_free(s->pump);
        s->pump = NULL;
        channels_out_free(s->channels);
        s->channels = NULL;
}

/* The test hook: behave as a killed source would. Nothing is resumed. */
static bool killed_at(struct source *s, enum migrate_step step, int *r, struct svemig_error *err)
{
        if (s->opts->fail_at != step)
                return false;
        stream_close(s);
        wire_kill(&s->w);
        s->killed = true;
        s->rep->failed_step = step;
        *r = svemig_error_set(err, ECANCELED, "source killed at %s (test hook)", migrate_step_name(step));
        return true;
}

static int progress(struct source *s, const struct migrate_progress *p, struct svemig_error *err)
{
        int r;

        if (!s->opts->progress)
                return 0;
        r = s->opts->progress(s->opts->userdata, p);
        if (r < 0)
                return svemig_error_set(err, r, "source: %s by the caller",
                                        r == -ECANCELED ? "cancelled" : "stopped");
        return 0;
}

static uint64_t bytes_sent(struct source *s)
{
        return s->w.bytes_out + (s->pump ? pump_bytes(s->pump) : 0) + channels_out_bytes(s->channels);
}

/* The memory sent so far, on the stream and on the channels. */
struct mem_sent {
        uint64_t bytes, pages, zero, stored, lz4_chunks;
};

static struct mem_sent memory_sent(const struct source *s)
{
        const struct svemig_stream_stats *a = svemig_stream_writer_stats(s->writer),
                                         *b = stream_writer_sink_stats(s->writer);

        return (struct mem_sent){
                .bytes = a->bytes + b->bytes,
                .pages = a->mem_pages + b->mem_pages,
                .zero = a->zero_pages + b->zero_pages,
                .stored = a->mem_stored + b->mem_stored,
                .lz4_chunks = a->lz4_chunks + b->lz4_chunks,
        };
}

/* A failed memory write: the channel's reason rather than the writer's, and the peer's before both. */
static int memory_reason(struct source *s, int r, struct svemig_error *err)
{
        if (s->channels && channels_out_error(s->channels, err) < 0)
                svemig_error_prefix(err, "source");
        return peer_reason(s, r, err);
}

/* ---- Memory passes ---- */

struct pass {
        uint64_t ns, bytes, pages, zero, nonzero_bytes;
};

/*
 * MIGRATE_COMPRESSION_AUTO: LZ4 or raw for what comes next
 * (compression_decide(): the sample against the link's speed at first, then
 * what each way measured on this migration's pieces).
 */
static int adapt_compression(struct source *s, bool *trial, struct svemig_error *err)
{
        uint64_t mine, other;
        bool lz4;

        if (!s->adaptive)
                return 0;
        s->comp.now_ns = now_ns(CLOCK_MONOTONIC);
        lz4 = compression_decide(&s->comp) == MIGRATE_COMPRESSION_LZ4;
        mine = lz4 ? s->comp.lz4_mem_bps : s->comp.raw_mem_bps;
        other = lz4 ? s->comp.raw_mem_bps : s->comp.lz4_mem_bps;
        /* A way not measured, or measured slower: on trial. */
        *trial = s->measured && (mine == 0 || mine < other);
        return svemig_stream_writer_set_lz4(s->writer, lz4, err);
}

/*
 * After a piece: wire bytes/s (each piece's is a lower bound of the link's
 * speed: keep the best) and data bytes/s (its non-zero pages: zero pages
 * cost either way next to nothing, and pieces differ in how many they
 * hold) for the mode it used. Below a few MiB the buffering makes the
 * figures noise, and the first piece pays for the start (the connections'
 * slow start, the peer's first touches): it only measures the link.
 */
static void measure_piece(struct source *s, bool lz4, uint64_t wire, uint64_t data, uint64_t ns)
{
        bool first = !s->measured;

        if (data < (4ull << 20) || ns == 0)
                return;
        s->measured = true;
        if (!s->opts->max_bandwidth)
                s->comp.link_bps = MAX(s->comp.link_bps, (uint64_t)((double)wire * 1e9 / (double)ns));
        if (first)
                return;
        *(lz4 ? &s->comp.lz4_mem_bps : &s->comp.raw_mem_bps) = (uint64_t)((double)data * 1e9 / (double)ns);
        *(lz4 ? &s->comp.lz4_at_ns : &s->comp.raw_at_ns) = now_ns(CLOCK_MONOTONIC);
}

/* One piece of a pass, compressed or not as the link allows now, and measured. */
static int write_piece(struct source *s, const struct svemig_mem_range *range, struct svemig_error *err)
{
        struct mem_sent m0 = memory_sent(s), m1;
        uint64_t t0;
        int r;

        t0 = now_ns(CLOCK_MONOTONIC);
        r = svemig_stream_write_memory(s->writer, range, 1, err);
        if (r < 0)
                return memory_reason(s, svemig_error_prefix(err, "source: writing guest memory"), err);
        m1 = memory_sent(s);
        measure_piece(s, s->writer->lz4, m1.bytes - m0.bytes,
                      (m1.pages - m1.zero - (m0.pages - m0.zero)) * HV_PAGE_SIZE,
                      now_ns(CLOCK_MONOTONIC) - t0);
        return 0;
}

/* Writes the pages of dirty (NULL: all of RAM) and waits until they are in the socket. */
static int send_pass(struct source *s, const uint64_t *dirty, struct pass *p, struct svemig_error *err)
{
        uint64_t size = guest_mem_size(s->g), start = now_ns(CLOCK_MONOTONIC);
        struct mem_sent m0 = memory_sent(s), m1;
        int r;

        for (uint64_t off = 0, len; off < size; off += len) {
                const uint64_t *bits = dirty ? dirty + off / HV_PAGE_SIZE / 64 : NULL;
                bool any = !bits, trial = false;

                len = MIN(SOURCE_PIECE, size - off);
                for (uint64_t i = 0; !any && i < DIV_ROUND_UP(len / HV_PAGE_SIZE, 64); i++)
                        any = bits[i] != 0;
                if (!any)
                        continue;
                r = pump_error(s->pump, err);
                if (r < 0)
                        return peer_reason(s, r, err);
                r = adapt_compression(s, &trial, err);
                if (r < 0)
                        return r;
                /*
                 * An LZ4 trial is short: a wrong guess costs a quarter of a
                 * piece. Raw costs nothing to try and is measured on a whole
                 * one: short pieces measure noise on a busy host.
                 */
                if (trial && s->writer->lz4)
                        len = MIN(len, SOURCE_TRIAL_PIECE);
                r = write_piece(s,
                                &(struct svemig_mem_range){
                                        .slot = GUEST_RAM_SLOT,
                                        .gpa = guest_ram_base(s->g) + off, /* a payload's RAM is at 0 */
                                        .host = guest_mem(s->g) + off,
                                        .size = len,
                                        .dirty = bits,
                                        .anon_private = true, /* guest.c's mmap, or a standby's */
                                },
                                err);
                if (r < 0)
                        return r;
        }
        /* The channels' frames are in their sockets already: the workers sent them. */
        r = pump_flush(s->pump, svemig_stream_writer_stats(s->writer)->bytes, err);
        if (r < 0)
                return peer_reason(s, r, err);
        m1 = memory_sent(s);
        p->ns = now_ns(CLOCK_MONOTONIC) - start;
        p->bytes = m1.bytes - m0.bytes;
        p->pages = m1.pages - m0.pages;
        p->zero = m1.zero - m0.zero;
        p->nonzero_bytes = m1.stored - m0.stored;
        s->rep->pages_sent = m1.pages;
        s->rep->zero_pages = m1.zero;
        if (m1.lz4_chunks)
                s->rep->compression = MIGRATE_COMPRESSION_LZ4;
        s->rep->rounds++;
        return 0;
}

static uint64_t count_bits(const uint64_t *bits, size_t words)
{
        uint64_t n = 0;

        for (size_t i = 0; i < words; i++)
                n += (uint64_t)__builtin_popcountll(bits[i]);
        return n;
}

static int read_dirty(struct source *s, uint64_t *bits, struct svemig_error *err)
{
        int r = hv_vm_get_dirty_log(guest_vm(s->g), GUEST_RAM_SLOT, bits, err);

        if (r < 0)
                return svemig_error_prefix(err, "source: reading the dirty log");
        return 0;
}

static void account_pass(struct source *s, const struct pass *p)
{
        s->link_bytes += p->bytes;
        s->link_ns += p->ns;
        if (p->pages > p->zero)
                s->bytes_per_page = MAX(p->nonzero_bytes / (p->pages - p->zero), 1ull);
        s->rep->link_bps = s->link_ns ? (uint64_t)((double)s->link_bytes * 1e9 / (double)s->link_ns) : 0;
}

/*
 * Pre-copy: a full pass, then passes of what the guest dirtied meanwhile,
 * until the policy says stop and copy. On return s->dirty holds the pages
 * dirtied since the last pass.
 */
static int precopy(struct source *s, struct svemig_error *err)
{
        struct converge_round round = {.fixed_bytes =
                                               guest_n_vcpus(s->g) * (s->desc.blob_size + VCPU_OVERHEAD)};
        struct pass p;
        int r;

        /* Start the log afresh: the first pass sends everything there is. */
        r = read_dirty(s, s->dirty, err);
        if (r < 0)
                return r;
        r = send_pass(s, NULL, &p, err);
        for (;;) {
                struct converge_verdict v;
                struct migrate_progress prog;

                if (r < 0)
                        return r;
                account_pass(s, &p);
                r = read_dirty(s, s->dirty, err);
                if (r < 0)
                        return r;
                round.round = s->rep->rounds;
                round.dirty_pages = count_bits(s->dirty, s->words);
                round.round_ns = p.ns;
                round.sent_bytes = p.bytes;
                round.sent_pages = p.pages - p.zero;
                round.link_bps = s->rep->link_bps;
                round.bytes_per_page = s->bytes_per_page;
                round.throttle_pct = s->throttle;
                converge_decide(&s->conv, &round, &v);

                prog = (struct migrate_progress){.step = MIGRATE_STEP_PRECOPY,
                                                 .round = s->rep->rounds,
                                                 .bytes_sent = bytes_sent(s),
                                                 .dirty_pages = round.dirty_pages,
                                                 .dirty_rate = v.dirty_rate,
                                                 .link_bps = round.link_bps,
                                                 .expected_downtime_ns = v.expected_downtime_ns,
                                                 .throttle_pct = s->throttle};
                r = progress(s, &prog, err);
                if (r < 0)
                        return r;
                switch (v.action) {
                case CONVERGE_STOP_COPY:
                        return 0;
                case CONVERGE_GIVE_UP:
                        return svemig_error_set(err, ETIME, "source: %s", v.reason);
                case CONVERGE_THROTTLE:
                        s->throttle = v.throttle_pct;
                        s->rep->throttle_pct = MAX(s->rep->throttle_pct, s->throttle);
                        guest_set_throttle(s->g, 100 - s->throttle);
                        break;
                case CONVERGE_CONTINUE:
                        break;
                }
                r = send_pass(s, s->dirty, &p, err);
        }
}

/*
 * Before the pause: waits (a bounded while) until the destination's kernel
 * has taken every byte of the pre-copy, so that the pause does not begin
 * with the destination megabytes behind. Best effort: a socket that cannot
 * say (not TCP) or a slow drain only costs the pause what it did before.
 */
static void drain_before_pause(struct source *s)
{
        uint64_t deadline = now_ns(CLOCK_MONOTONIC) + DRAIN_WAIT_NS;
        int queued;

        while (ioctl(s->w.fd, SIOCOUTQ, &queued) == 0 &&
               (queued > 0 || channels_out_queued(s->channels) > 0) && now_ns(CLOCK_MONOTONIC) < deadline &&
               pump_error(s->pump, NULL) == 0)
                nanosleep(&(struct timespec){.tv_nsec = 200000}, NULL);
}

/*
 * The vcpus are captured and encoded on the pool's workers, a few at a
 * time, and each is written, in order, as soon as it is ready: the
 * destination restores the first ones while the last are still read here.
 * All of it is on the guest's downtime.
 */
#define CAPTURE_WINDOW 8u

struct capture {
        struct source *s;
        unsigned next; /* the next vcpu to hand out */
        struct svemig_error *err;
        struct {
                unsigned index;
                struct vcpu_state st;
                struct bytebuf pack, zbuf;
                struct frame_out frame;
                struct svemig_error err;
        } slot[CAPTURE_WINDOW];
};

static int capture_produce(void *ctx, unsigned slot)
{
        struct capture *c = ctx;

        if (c->next >= guest_n_vcpus(c->s->g))
                return WORKPOOL_END;
        c->slot[slot].index = c->next++;
        return WORKPOOL_JOB;
}

static int capture_work(void *ctx, unsigned slot)
{
        struct capture *c = ctx;
        const struct svemig_stream_writer *w = c->s->writer;
        int r;

        vcpu_state_done(&c->slot[slot].st);
        r = vcpu_capture(guest_vcpu(c->s->g, c->slot[slot].index), &c->slot[slot].st, &c->slot[slot].err);
        if (r < 0)
                return r;
        /*
         * Compressed whenever the header allows, whatever memory does: the
         * vcpus cross while the guest is paused, where every byte through
         * the pumps costs more than compressing it here, beside the capture.
         */
        return stream_vcpu_encode(&w->info, w->info.compression == SVEMIG_COMPRESSION_LZ4, &c->slot[slot].st,
                                  &c->slot[slot].pack, &c->slot[slot].zbuf, &c->slot[slot].frame,
                                  &c->slot[slot].err);
}

static int capture_consume(void *ctx, unsigned slot, int work_rc)
{
        struct capture *c = ctx;
        int r;

        if (work_rc < 0) {
                *c->err = c->slot[slot].err;
                return svemig_error_prefix(c->err, "source: capturing the vcpus");
        }
        r = stream_writer_put_vcpu(c->s->writer, c->slot[slot].index, &c->slot[slot].frame, c->err);
        return r < 0 ? svemig_error_prefix(c->err, "source: writing the vcpus") : 0;
}

static int send_vcpus(struct source *s, struct svemig_error *err)
{
        _cleanup_free_ struct capture *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return svemig_error_set(err, ENOMEM, "source: out of memory capturing the vcpus");
        *c = (struct capture){.s = s, .err = err};
        r = workpool_run(s->writer->pool,
                         &(struct workpool_pipeline){
                                 .window = MIN(CAPTURE_WINDOW, 2 * workpool_threads(s->writer->pool)),
                                 .ctx = c,
                                 .produce = capture_produce,
                                 .work = capture_work,
                                 .consume = capture_consume,
                         });
        for (unsigned i = 0; i < CAPTURE_WINDOW; i++) {
                vcpu_state_done(&c->slot[i].st);
                bytebuf_done(&c->slot[i].pack);
                bytebuf_done(&c->slot[i].zbuf);
        }
        return r;
}

/* Pause; the last dirty pages and every vcpu; the trailer; everything out of the pump. */
static int stop_and_copy(struct source *s, bool precopied, struct svemig_error *err)
{
        _cleanup_free_ uint64_t *more = NULL;
        struct pass p;
        int r;

        if (precopied)
                drain_before_pause(s);
        if (s->was_running) {
                r = guest_pause(s->g, err);
                s->paused = true;
                if (r < 0)
                        return svemig_error_prefix(err, "source: pausing the guest");
        }
        s->t_pause = now_ns(CLOCK_MONOTONIC);
        /*
         * After a pre-copy the pause sends a remainder: a trial of the slower
         * way would only lengthen the downtime. Without one (a paused guest)
         * all of RAM goes now, and the trials are how it finds the faster.
         */
        s->comp.no_trial = precopied;
        if (precopied) {
                more = calloc(s->words, sizeof(*more));
                if (!more)
                        return svemig_error_set(err, ENOMEM, "source: out of memory");
                r = read_dirty(s, more, err);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < s->words; i++)
                        s->dirty[i] |= more[i];
                s->rep->final_dirty_pages = count_bits(s->dirty, s->words);
        } else
                s->rep->final_dirty_pages = guest_mem_size(s->g) / HV_PAGE_SIZE;

        r = send_vcpus(s, err);
        if (r < 0)
                return r;
        r = send_pass(s, precopied ? s->dirty : NULL, &p, err);
        if (r < 0)
                return r;
        if (s->channels) {
                r = channels_finish(s->channels, err);
                if (r < 0)
                        return memory_reason(s, r, err);
        }
        /*
         * From the trailer on, the destination speaks (Loaded) as soon as it
         * has it, which the pump must not take for an Abort; an Abort now is
         * read in Loaded's place.
         */
        pump_watch_peer(s->pump, false);
        r = svemig_stream_writer_finish(s->writer, err);
        if (r < 0)
                return svemig_error_prefix(err, "source: writing the trailer");
        s->rep->stream_bytes = svemig_stream_writer_stats(s->writer)->bytes;
        r = pump_stop(s->pump, err);
        if (r < 0)
                return peer_reason(s, r, err);
        s->rep->bytes_sent = bytes_sent(s);
        s->t_copied = now_ns(CLOCK_MONOTONIC);
        return 0;
}

/* ---- The handoff ---- */

static int expect_reply(struct source *s, Svemig__Peer__PeerMessage__BodyCase kind, const char *what,
                        PeerMessage **out, struct svemig_error *err)
{
        int r = wire_recv(&s->w, s->w.timeout_ms, out, err);

        if (r < 0)
                return svemig_error_prefix(err, "%s: waiting for %s", s->peer, what);
        if ((*out)->body_case == SVEMIG__PEER__PEER_MESSAGE__BODY_ABORT)
                return svemig_error_set(err, (*out)->abort->code ? (int)(*out)->abort->code : EPROTO,
                                        "%s stopped at %s: %s", s->peer, (*out)->abort->step,
                                        (*out)->abort->message);
        if ((*out)->body_case != kind)
                return svemig_error_set(err, EPROTO, "%s sent %s where %s was due", s->peer,
                                        wire_body_name(*out), what);
        if (kind != SVEMIG__PEER__PEER_MESSAGE__BODY_VERDICT) {
                ProtobufCBinaryData *id = kind == SVEMIG__PEER__PEER_MESSAGE__BODY_LOADED
                                                  ? &(*out)->loaded->id
                                                  : &(*out)->ack->id;

                if (id->len != MIGRATE_ID_SIZE || memcmp(id->data, s->rep->id, MIGRATE_ID_SIZE) != 0)
                        return svemig_error_set(err, EPROTO, "%s answered %s for another migration", s->peer,
                                                what);
        }
        return 0;
}

/*
 * This host as the hellos of new connections (channels, a resolve) describe
 * it: the caller's, as its first hello did, or read now into *local (then
 * the caller frees it).
 */
static int self_info(struct source *s, struct peer_info *local, const struct peer_info **out,
                     struct svemig_error *err)
{
        int r;

        if (s->opts->self) {
                *out = s->opts->self;
                return 0;
        }
        r = peer_info_local(guest_host(s->g), 0, local, err);
        if (r < 0)
                return r;
        *out = local;
        return 0;
}

static void self_done(const struct peer_info *self, struct peer_info *local)
{
        if (self == local)
                peer_info_done(local);
}

/* Asks the destination on new connections what became of the migration. 1 committed, 0 not, <0 unknown. */
static int resolve(struct source *s, struct svemig_error *err)
{
        struct peer_info local, remote;
        const struct peer_info *self;
        int r = -ENOTCONN;

        if (!s->opts->reconnect)
                return svemig_error_set(err, ENOTCONN, "no way to reach the destination again");
        r = self_info(s, &local, &self, err);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < RESOLVE_TRIES; i++) {
                int fd = s->opts->reconnect(s->opts->reconnect_userdata);
                bool committed;

                if (fd < 0) {
                        r = svemig_error_set(err, fd, "cannot reach the destination again: %s",
                                             strerror(-fd));
                        continue;
                }
                r = peer_hello(fd, self, s->w.timeout_ms, &remote, err);
                if (r == 0) {
                        peer_info_done(&remote);
                        r = migrate_resolve(fd, s->rep->id, s->w.timeout_ms, &committed, err);
                }
                close(fd);
                if (r == 0) {
                        self_done(self, &local);
                        return committed ? 1 : 0;
                }
        }
        self_done(self, &local);
        return r;
}

/*
 * COMMIT is out (or may be): the guest is no longer ours to resume unless the
 * destination says it did not take it.
 */
static int handoff_in_doubt(struct source *s, int r, struct svemig_error *err)
{
        struct svemig_error why = *err, rerr = {0};
        int k = resolve(s, &rerr);

        if (k == 1) {
                s->rep->outcome = MIGRATE_OUTCOME_COMMITTED;
                s->rep->failed_step = MIGRATE_STEP_NONE;
                svemig_error_clear(err);
                return 0;
        }
        if (k == 0) {
                s->rep->outcome = MIGRATE_OUTCOME_ABORTED;
                resume(s);
                *err = why;
                svemig_error_prefix(err,
                                    "%s did not commit (asked again after the Ack never came); the "
                                    "guest %s here",
                                    s->peer, s->rep->resumed ? "runs again" : "is kept, paused,");
                return r;
        }
        s->rep->outcome = MIGRATE_OUTCOME_IN_DOUBT;
        s->rep->failed_step = MIGRATE_STEP_ACK;
        return svemig_error_set(
                err, EINPROGRESS,
                "migrating to %s: COMMIT was sent but no Ack came (%s), and asking again failed "
                "(%s). The guest stays PAUSED here and is not destroyed: resume it only once %s "
                "answers migrate_resolve() that it did not commit",
                s->peer, svemig_error_str(&why, r), svemig_error_str(&rerr, k), s->peer);
}

static int send_commit(struct source *s, struct svemig_error *err)
{
        Svemig__Peer__Commit commit = SVEMIG__PEER__COMMIT__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;

        commit.id.data = s->rep->id;
        commit.id.len = MIGRATE_ID_SIZE;
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_COMMIT;
        msg.commit = &commit;
        return wire_send(&s->w, &msg, err);
}

static int handoff(struct source *s, struct svemig_error *err)
{
        struct migrate_progress prog = {.round = s->rep->rounds};
        PeerMessage *in;
        int r;

        s->step = MIGRATE_STEP_LOADED;
        r = expect_reply(s, SVEMIG__PEER__PEER_MESSAGE__BODY_LOADED, "Loaded", &in, err);
        if (r < 0)
                return r;
        s->t_loaded = now_ns(CLOCK_MONOTONIC);

        s->step = MIGRATE_STEP_COMMIT;
        prog.step = MIGRATE_STEP_COMMIT;
        prog.bytes_sent = bytes_sent(s);
        r = progress(s, &prog, err);
        if (r < 0)
                return r;
        if (killed_at(s, MIGRATE_STEP_COMMIT, &r, err))
                return r;
        s->t_commit = now_ns(CLOCK_MONOTONIC);
        r = send_commit(s, err);
        if (r < 0) {
                /*
                 * Not all of the frame went out, so the destination cannot
                 * read a COMMIT; closing makes sure no rest follows later.
                 */
                wire_kill(&s->w);
                return svemig_error_prefix(err, "source: sending COMMIT");
        }
        s->commit_sent = true;

        s->step = MIGRATE_STEP_ACK;
        if (killed_at(s, MIGRATE_STEP_ACK, &r, err))
                return r;
        r = expect_reply(s, SVEMIG__PEER__PEER_MESSAGE__BODY_ACK, "Ack", &in, err);
        if (r < 0)
                return handoff_in_doubt(s, r, err);
        if (in->ack->code != 0) {
                /* The destination took COMMIT but discarded its copy: the guest is still ours. */
                s->rep->outcome = MIGRATE_OUTCOME_ABORTED;
                return svemig_error_set(err, (int)in->ack->code, "%s could not start the guest: %s", s->peer,
                                        in->ack->message);
        }
        s->rep->outcome = MIGRATE_OUTCOME_COMMITTED;
        return 0;
}

/* ---- Request and verdict ---- */

static int send_request(struct source *s, struct svemig_error *err)
{
        Svemig__Peer__Migrate mig = SVEMIG__PEER__MIGRATE__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;
        Svemig__Peer__GuestSpec spec;
        _cleanup_free_ uint64_t *ids = NULL;

        if (guest_spec(s, &spec, &ids) < 0)
                return svemig_error_set(err, ENOMEM, "source: out of memory");
        mig.id.data = s->rep->id;
        mig.id.len = MIGRATE_ID_SIZE;
        mig.guest = &spec;
        mig.running = s->was_running;
        mig.channels = s->want_channels;
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_MIGRATE;
        msg.migrate = &mig;
        return wire_send(&s->w, &msg, err);
}

/* The memory channels the destination took: opened now, before any memory moves. */
static int open_channels(struct source *s, unsigned n, bool page_checks, struct svemig_error *err)
{
        const struct svemig_stream_info *info;
        const struct peer_info *self;
        struct peer_info local;
        int r;

        if (n == 0)
                return 0;
        info = &s->writer->info;
        r = self_info(s, &local, &self, err);
        if (r < 0)
                return r;
        r = channels_open(s->opts, self, s->rep->id, n, (uint64_t)info->chunk_pages * info->page_size,
                          s->w.timeout_ms, &s->channels, err);
        self_done(self, &local);
        if (r < 0)
                return svemig_error_prefix(err, "source");
        stream_writer_set_memory_sink(s->writer, channels_send, s->channels, page_checks);
        return 0;
}

/* The destination's answer to the header. A refusal leaves the connection clean for another request. */
static int await_verdict(struct source *s, bool *refused, struct svemig_error *err)
{
        PeerMessage *in;
        int r;

        *refused = false;
        r = expect_reply(s, SVEMIG__PEER__PEER_MESSAGE__BODY_VERDICT, "Verdict", &in, err);
        if (r < 0)
                return r;
        if (in->verdict->code == 0 && in->verdict->channels > s->want_channels)
                return svemig_error_set(err, EPROTO, "%s took %u memory channels; %u were offered", s->peer,
                                        in->verdict->channels, s->want_channels);
        if (in->verdict->code == 0)
                return open_channels(s, in->verdict->channels, in->verdict->page_checks, err);
        *refused = true;
        return svemig_error_set(err, (int)in->verdict->code, "%s refused the guest: %s", s->peer,
                                in->verdict->message);
}

/*
 * The header's compression: fixed by the caller, or for AUTO, LZ4 (frames
 * may be compressed) when a sample says LZ4 shrinks this guest's memory at
 * all; adapt_compression() then turns it on and off as the link allows.
 */
static enum migrate_compression header_compression(struct source *s)
{
        if (s->opts->compression != MIGRATE_COMPRESSION_AUTO)
                return s->opts->compression;
        compression_sample(guest_mem(s->g), guest_mem_size(s->g), s->opts->n_threads, &s->comp);
        s->comp.link_bps = s->opts->max_bandwidth ? s->opts->max_bandwidth : s->opts->link_bps_hint;
        s->adaptive = compression_may_pay(&s->comp);
        return s->adaptive ? MIGRATE_COMPRESSION_LZ4 : MIGRATE_COMPRESSION_NONE;
}

/*
 * The memory encoders: one per CPU, or one per channel where there are more
 * channels: a worker blocked sending on its channel leaves its CPU to the
 * others (on 2 CPUs with 4 channels: median 347 ms against 363 ms).
 */
static unsigned encoders(const struct source *s)
{
        long cpus;

        if (s->opts->n_threads)
                return s->opts->n_threads;
        cpus = sysconf(_SC_NPROCESSORS_ONLN);
        return MAX(cpus > 0 ? (unsigned)cpus : 1u, s->want_channels);
}

static int open_stream(struct source *s, struct svemig_error *err)
{
        struct svemig_stream_write_opts wopts = {.n_threads = encoders(s)};
        struct snapshot_header hdr;
        enum migrate_compression c;
        int r;

        c = header_compression(s);
        /* The report says LZ4 once memory went compressed (send_pass()). */
        s->rep->compression = s->adaptive ? MIGRATE_COMPRESSION_NONE : c;
        r = describe(s, c, &hdr, err);
        if (r < 0)
                return r;
        r = pump_start(s->w.fd, PUMP_TO_PEER, s->w.timeout_ms, s->opts->max_bandwidth, &s->stream_fd,
                       &s->pump, err);
        if (r < 0)
                return r;
        r = send_request(s, err);
        if (r < 0)
                return r;
        r = svemig_stream_writer_open(s->stream_fd, &hdr.info, &wopts, &s->writer, err);
        if (r < 0)
                return svemig_error_prefix(err, "source: writing the stream header");
        /* Its workers now, not in the pause: they capture and encode the vcpus too (send_vcpus()). */
        r = stream_pool(&s->writer->pool, s->writer->n_threads, err);
        if (r < 0)
                return r;
        r = pump_flush(s->pump, svemig_stream_writer_stats(s->writer)->bytes, err);
        if (r < 0)
                return r;
        return 0;
}

static int source_init(struct source *s, struct guest *g, int fd, const struct migrate_opts *opts,
                       struct migrate_report *rep, struct svemig_error *err)
{
        *s = (struct source){.g = g, .opts = opts ? opts : &no_opts, .rep = rep, .stream_fd = -1};
        memset(rep, 0, sizeof(*rep));
        wire_init(&s->w, fd, s->opts->timeout_ms);
        converge_opts_from(s->opts, &s->conv);
        if (s->opts->peer_name)
                snprintf(s->peer, sizeof(s->peer), "destination %s", s->opts->peer_name);
        else
                snprintf(s->peer, sizeof(s->peer), "the destination");
        s->t_start = now_ns(CLOCK_MONOTONIC);
        s->was_running = guest_running(g);
        if (s->opts->reconnect && !s->opts->max_bandwidth)
                s->want_channels = MIN(s->opts->channels, MIGRATE_CHANNELS_MAX);
        if (getrandom(rep->id, sizeof(rep->id), 0) != (ssize_t)sizeof(rep->id))
                return svemig_error_set(err, errno ? errno : EIO,
                                        "source: no random bytes for the migration id");
        return 0;
}

static void source_done(struct source *s)
{
        stream_close(s);
        vcpu_state_done(&s->desc);
        free(s->dirty);
        wire_done(&s->w);
}

int migrate_send(struct guest *g, int fd, const struct migrate_opts *opts, struct migrate_report *report,
                 struct svemig_error *err)
{
        struct migrate_report scratch;
        struct svemig_error local = {0};
        struct source s;
        bool refused = false, precopied = false;
        int r;

        if (!report)
                report = &scratch;
        if (!err)
                err = &local;
        r = source_init(&s, g, fd, opts, report, err);
        if (r < 0)
                goto out;

        s.step = MIGRATE_STEP_REQUEST;
        r = capture_descriptor(&s, err);
        if (r < 0)
                goto fail;
        if (killed_at(&s, MIGRATE_STEP_REQUEST, &r, err))
                goto out;
        r = open_stream(&s, err);
        if (r < 0)
                goto fail;

        s.step = MIGRATE_STEP_VERDICT;
        if (killed_at(&s, MIGRATE_STEP_VERDICT, &r, err))
                goto out;
        r = await_verdict(&s, &refused, err);
        if (r < 0)
                goto fail;
        s.t_verdict = now_ns(CLOCK_MONOTONIC);
        pump_watch_peer(s.pump, true);

        s.step = MIGRATE_STEP_PRECOPY;
        if (killed_at(&s, MIGRATE_STEP_PRECOPY, &r, err))
                goto out;
        s.words = DIV_ROUND_UP(guest_mem_size(g) / HV_PAGE_SIZE, 64);
        s.dirty = calloc(s.words, sizeof(*s.dirty));
        if (!s.dirty) {
                r = svemig_error_set(err, ENOMEM, "source: out of memory");
                goto fail;
        }
        /* Pre-copy needs a running guest with a dirty log; otherwise one pass while paused does it all. */
        if (s.was_running && hv_vm_get_dirty_log(guest_vm(g), GUEST_RAM_SLOT, s.dirty, NULL) == 0) {
                precopied = true;
                r = precopy(&s, err);
                if (r < 0)
                        goto fail;
        }

        s.step = MIGRATE_STEP_STOP_COPY;
        if (killed_at(&s, MIGRATE_STEP_STOP_COPY, &r, err))
                goto out;
        r = stop_and_copy(&s, precopied, err);
        if (r < 0)
                goto fail;

        r = handoff(&s, err);
        if (r < 0 || s.rep->outcome != MIGRATE_OUTCOME_COMMITTED)
                goto fail;
        s.t_acked = now_ns(CLOCK_MONOTONIC);
        report->downtime_ns = s.t_acked - s.t_pause;
        report->setup_ns = s.t_verdict - s.t_start;
        report->precopy_ns = s.t_pause - s.t_verdict;
        report->pause_copy_ns = s.t_copied - s.t_pause;
        report->load_ns = s.t_loaded - s.t_copied;
        report->commit_ns = s.t_acked - s.t_commit;
        report->bytes_sent = bytes_sent(&s); /* the Ack's exchange included, past the stream's end */
        guest_set_throttle(g, 100);
        r = 0;
        goto out;

fail:
        if (s.killed)
                goto out; /* as a killed process: nothing more happens */
        if (s.rep->outcome == MIGRATE_OUTCOME_IN_DOUBT)
                goto out; /* paused, kept, and said so */
        stream_close(&s);
        if (!refused)
                wire_kill(&s.w); /* the connection is mid-protocol: nothing more can follow on it */
        if (s.rep->outcome != MIGRATE_OUTCOME_COMMITTED)
                resume(&s);
        report->bytes_sent = bytes_sent(&s);
        r = source_fail(&s, r, err);
out:
        report->total_ns = now_ns(CLOCK_MONOTONIC) - s.t_start;
        source_done(&s);
        return r;
}

/* ---- Pre-flight ---- */

/* The stream header a migration would send, as bytes (through a memfd: the writer wants an fd). */
static int header_bytes(struct source *s, uint8_t **out, size_t *len, struct svemig_error *err)
{
        struct svemig_stream_writer *w = NULL;
        struct snapshot_header hdr;
        _cleanup_close_ int fd = memfd_create("svemig-header", MFD_CLOEXEC);
        uint64_t n;
        int r;

        if (fd < 0)
                return svemig_error_set(err, errno, "source: memfd_create: %s", strerror(errno));
        r = describe(s, MIGRATE_COMPRESSION_LZ4, &hdr, err);
        if (r < 0)
                return r;
        r = svemig_stream_writer_open(fd, &hdr.info, NULL, &w, err);
        if (r < 0)
                return r;
        n = svemig_stream_writer_stats(w)->bytes;
        svemig_stream_writer_free(w);
        *out = malloc(n ? n : 1);
        if (!*out)
                return svemig_error_set(err, ENOMEM, "source: out of memory");
        if (pread(fd, *out, n, 0) != (ssize_t)n) {
                free(*out);
                return svemig_error_set(err, EIO, "source: reading back the stream header failed");
        }
        *len = n;
        return 0;
}

int migrate_check_send(struct guest *g, int fd, const struct migrate_opts *opts, struct svemig_error *err)
{
        Svemig__Peer__Check check = SVEMIG__PEER__CHECK__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;
        Svemig__Peer__GuestSpec spec;
        struct svemig_error local = {0};
        struct migrate_report rep;
        _cleanup_free_ uint64_t *ids = NULL;
        _cleanup_free_ uint8_t *header = NULL;
        struct source s;
        size_t len = 0;
        bool refused;
        int r;

        if (!err)
                err = &local;
        r = source_init(&s, g, fd, opts, &rep, err);
        if (r == 0)
                r = capture_descriptor(&s, err);
        if (r == 0)
                r = header_bytes(&s, &header, &len, err);
        if (r == 0 && guest_spec(&s, &spec, &ids) < 0)
                r = svemig_error_set(err, ENOMEM, "source: out of memory");
        if (r < 0)
                goto out;
        check.guest = &spec;
        check.stream_header.data = header;
        check.stream_header.len = len;
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_CHECK;
        msg.check = &check;
        s.step = MIGRATE_STEP_VERDICT;
        r = wire_send(&s.w, &msg, err);
        if (r == 0)
                r = await_verdict(&s, &refused, err);
out:
        source_done(&s);
        if (r < 0)
                return svemig_error_prefix(err, "pre-flight check");
        return 0;
}

/* ---- Resolution ---- */

int migrate_resolve(int fd, const uint8_t id[MIGRATE_ID_SIZE], unsigned timeout_ms, bool *committed,
                    struct svemig_error *err)
{
        Svemig__Peer__Resolve res = SVEMIG__PEER__RESOLVE__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT, *in = NULL;
        struct svemig_error local = {0};
        struct wire w;
        int r;

        if (!err)
                err = &local;
        wire_init(&w, fd, timeout_ms);
        res.id.data = (uint8_t *)id;
        res.id.len = MIGRATE_ID_SIZE;
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_RESOLVE;
        msg.resolve = &res;
        r = wire_send(&w, &msg, err);
        if (r == 0)
                r = wire_recv(&w, w.timeout_ms, &in, err);
        if (r == 0 && (in->body_case != SVEMIG__PEER__PEER_MESSAGE__BODY_OUTCOME ||
                       in->outcome->id.len != MIGRATE_ID_SIZE ||
                       memcmp(in->outcome->id.data, id, MIGRATE_ID_SIZE) != 0))
                r = svemig_error_set(err, EPROTO, "the destination sent %s where the Outcome was due",
                                     wire_body_name(in));
        if (r == 0)
                *committed = in->outcome->state == SVEMIG__PEER__OUTCOME__STATE__COMMITTED;
        wire_done(&w);
        if (r < 0)
                return svemig_error_prefix(err, "resolving a handoff in doubt");
        return 0;
}
