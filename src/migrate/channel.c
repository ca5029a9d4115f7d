/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Memory channels (docs/migration.md "Memory channels"): besides the
 * migration's connection, a few more that carry only MEMORY frames, so that
 * guest memory moves over several TCP streams at once, as QEMU's multifd
 * does. One stream on loopback stops near 2.5 GB/s here; two reach twice
 * that.
 *
 * A page always travels on the same channel: chunks are cut on a grid of
 * chunk_pages pages from address 0 and cell i goes on channel i % n. TCP
 * keeps each channel in order and the source finishes a pass before it
 * starts the next, so a resent page can never overtake its older copy.
 *
 * Each channel ends with a TRAILER frame of its own: the frames and pages
 * it carried, its length, and an XXH3-64 of its frames' heads and checks
 * (each payload is covered by its check), so that a lost, doubled or
 * reordered frame is caught as surely as a damaged one.
 *
 * The source's encoding workers send frames themselves, a lock per
 * channel; the destination has a thread per channel that checks each
 * frame and writes its pages into the guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "checksum.h"
#include "clock.h"
#include "iov.h"
#include "macro.h"
#include "migrate/channel.h"
#include "migrate/peer.h"
#include "migrate/pump.h"
#include "migrate/wire.h"
#include "stream/memchunk.h"
#include "stream/stream-internal.h"
#include "stream.pb-c.h"
#include "unaligned.h"

#define CHANNEL_TRAILER_MAX 4096u
#define CHANNEL_RECV_BUFFER (2 << 20)
#define RECV_LOWAT_MAX      (CHANNEL_RECV_BUFFER / 4) /* in_recv_body(): well inside the window */
#define LAYOUT_IOV          (SVEMIG_STREAM_CHUNK_PAGES_MAX + 2u)
/* A frame going out: head, fields, each run of adjacent data pages (FRAME_F_PAGE_CHECKS), tail. */
#define SEND_IOV (SVEMIG_STREAM_CHUNK_PAGES_MAX / 2u + 4u)

/* What one channel carried, counted the same way on both ends. */
struct channel_count {
        uint64_t frames, pages, zero, bytes;
        XXH3_state_t *digest; /* of each frame's head and check */
};

static int count_init(struct channel_count *c)
{
        *c = (struct channel_count){.digest = XXH3_createState()};
        if (!c->digest)
                return -ENOMEM;
        XXH3_64bits_reset(c->digest);
        return 0;
}

static void count_frame(struct channel_count *c, const uint8_t head[FRAME_HEAD_SIZE], uint32_t stored_len,
                        const uint8_t tail[FRAME_TAIL_SIZE], uint64_t pages, uint64_t zero)
{
        XXH3_64bits_update(c->digest, head, FRAME_HEAD_SIZE);
        XXH3_64bits_update(c->digest, tail, FRAME_TAIL_SIZE);
        c->frames++;
        c->pages += pages;
        c->zero += zero;
        c->bytes += FRAME_HEAD_SIZE + (uint64_t)stored_len + FRAME_TAIL_SIZE;
}

static void count_digest(const struct channel_count *c, uint8_t out[8])
{
        XXH64_canonicalFromHash((XXH64_canonical_t *)out, XXH3_64bits_digest(c->digest));
}

/* ---- Source ---- */

struct channel_out {
        struct wire w;
        pthread_mutex_t lock;
        struct channel_count count;
};

struct channels_out {
        unsigned n;
        uint64_t cell; /* bytes of one grid cell */
        pthread_mutex_t lock;
        int error;
        struct svemig_error why;
        struct channel_out ch[];
};

static int out_fail(struct channels_out *c, unsigned i, int r, const struct svemig_error *err)
{
        pthread_mutex_lock(&c->lock);
        if (!c->error) {
                c->error = r;
                svemig_error_set(&c->why, -r, "memory channel %u: %s", i, svemig_error_str(err, r));
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

/* A connected channel's greeting: the hellos, then which migration's channel it is. */
struct channel_greeting {
        struct channel_out *ch;
        const struct peer_info *self;
        const uint8_t *id;
        unsigned index;
        pthread_t thread;
        bool threaded; /* else greeted inline: no thread could be started */
        int r;
        struct svemig_error err;
};

static void *greet(void *userdata)
{
        struct channel_greeting *g = userdata;
        Svemig__Peer__Channel msg = SVEMIG__PEER__CHANNEL__INIT;
        PeerMessage pm = SVEMIG__PEER__PEER_MESSAGE__INIT;
        struct peer_info remote;

        g->r = peer_hello(g->ch->w.fd, g->self, g->ch->w.timeout_ms, &remote, &g->err);
        if (g->r < 0)
                return NULL;
        peer_info_done(&remote);
        msg.id = (ProtobufCBinaryData){MIGRATE_ID_SIZE, (uint8_t *)g->id};
        msg.index = g->index;
        pm.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_CHANNEL;
        pm.channel = &msg;
        g->r = wire_send(&g->ch->w, &pm, &g->err);
        return NULL;
}

/*
 * Connects every channel (opts->reconnect is called from this thread only),
 * then greets them all at once: each greeting is a few round trips through
 * the destination's listener, which on a real network would add up.
 */
static int open_all(struct channels_out *c, const struct migrate_opts *opts, const struct peer_info *self,
                    const uint8_t *id, unsigned timeout_ms, struct svemig_error *err)
{
        struct channel_greeting g[MIGRATE_CHANNELS_MAX];
        int r = 0;

        for (unsigned i = 0; i < c->n; i++) {
                int fd = opts->reconnect(opts->reconnect_userdata);

                if (fd < 0)
                        return svemig_error_set(err, fd, "opening memory channel %u: cannot connect: %s", i,
                                                strerror(-fd));
                wire_init(&c->ch[i].w, fd, timeout_ms);
        }
        for (unsigned i = 0; i < c->n; i++) {
                g[i] = (struct channel_greeting){.ch = &c->ch[i], .self = self, .id = id, .index = i};
                g[i].threaded = pthread_create(&g[i].thread, NULL, greet, &g[i]) == 0;
                if (!g[i].threaded)
                        greet(&g[i]);
        }
        for (unsigned i = 0; i < c->n; i++) {
                if (g[i].threaded)
                        pthread_join(g[i].thread, NULL);
                if (g[i].r < 0 && r == 0) {
                        *err = g[i].err;
                        r = svemig_error_prefix(err, "opening memory channel %u", i);
                }
        }
        return r;
}

int channels_open(const struct migrate_opts *opts, const struct peer_info *self, const uint8_t *id,
                  unsigned n, uint64_t cell, unsigned timeout_ms, struct channels_out **out,
                  struct svemig_error *err)
{
        struct channels_out *c;
        int r = 0;

        if (n > MIGRATE_CHANNELS_MAX)
                return svemig_error_set(err, EINVAL, "%u memory channels; at most %u", n,
                                        MIGRATE_CHANNELS_MAX);
        c = calloc(1, sizeof(*c) + n * sizeof(c->ch[0]));
        if (!c)
                return svemig_error_set(err, ENOMEM, "out of memory");
        c->n = n;
        c->cell = cell;
        pthread_mutex_init(&c->lock, NULL);
        for (unsigned i = 0; i < n; i++) {
                c->ch[i].w.fd = -1;
                pthread_mutex_init(&c->ch[i].lock, NULL);
                if (r == 0 && count_init(&c->ch[i].count) < 0)
                        r = svemig_error_set(err, ENOMEM, "out of memory");
        }
        if (r == 0)
                r = open_all(c, opts, self, id, timeout_ms, err);
        if (r < 0) {
                channels_out_free(c);
                return r;
        }
        *out = c;
        return 0;
}

int channels_send(void *userdata, const struct memory_frame *f)
{
        struct channels_out *c = userdata;
        unsigned i = (unsigned)((f->gpa / c->cell) % c->n);
        struct channel_out *ch = &c->ch[i];
        struct svemig_error err = {0};
        struct iovec iov[SEND_IOV];
        int r;

        if (f->n_data > SEND_IOV - 3)
                return -E2BIG;
        frame_iov(f->out, iov);
        /* The pages, where they are in the guest, go between the fields and the tail. */
        iov[2 + f->n_data] = iov[2];
        memcpy(iov + 2, f->data, f->n_data * sizeof(*iov));
        r = channels_out_error(c, NULL); /* after one channel failed, the others send nothing more */
        if (r < 0)
                return r;
        pthread_mutex_lock(&ch->lock);
        r = wire_sendv(&ch->w, iov, 3 + (int)f->n_data, &err);
        if (r == 0)
                count_frame(&ch->count, f->out->head, (uint32_t)(f->out->len + f->data_len), f->out->tail,
                            f->pages, f->zero_pages);
        pthread_mutex_unlock(&ch->lock);
        return r < 0 ? out_fail(c, i, r, &err) : 0;
}

int channels_finish(struct channels_out *c, struct svemig_error *err)
{
        for (unsigned i = 0; i < c->n; i++) {
                struct channel_out *ch = &c->ch[i];
                Svemig__Trailer t = SVEMIG__TRAILER__INIT;
                uint8_t packed[256], digest[8];
                struct frame_out f;
                struct iovec iov[3];
                int r;

                count_digest(&ch->count, digest);
                t.frames = ch->count.frames;
                t.mem_chunks = ch->count.frames;
                t.mem_pages = ch->count.pages;
                t.zero_pages = ch->count.zero;
                t.length = ch->count.bytes;
                t.digest = SVEMIG__DIGEST__DIGEST_XXH3_64_CHECKS;
                t.digest_value = (ProtobufCBinaryData){sizeof(digest), digest};
                frame_build(&f, SVEMIG_FRAME_TRAILER, true, packed, svemig__trailer__pack(&t, packed), false,
                            NULL);
                frame_iov(&f, iov);
                r = wire_sendv(&ch->w, iov, 3, err);
                if (r < 0) {
                        out_fail(c, i, r, err);
                        return channels_out_error(c, err);
                }
        }
        return 0;
}

uint64_t channels_out_bytes(struct channels_out *c)
{
        uint64_t n = 0;

        for (unsigned i = 0; c && i < c->n; i++) {
                pthread_mutex_lock(&c->ch[i].lock);
                n += c->ch[i].w.bytes_out;
                pthread_mutex_unlock(&c->ch[i].lock);
        }
        return n;
}

uint64_t channels_out_queued(struct channels_out *c)
{
        uint64_t n = 0;

        for (unsigned i = 0; c && i < c->n; i++) {
                int q;

                if (ioctl(c->ch[i].w.fd, SIOCOUTQ, &q) == 0 && q > 0)
                        n += (uint64_t)q;
        }
        return n;
}

int channels_out_error(struct channels_out *c, struct svemig_error *err)
{
        int r;

        pthread_mutex_lock(&c->lock);
        r = c->error;
        if (r < 0 && err)
                *err = c->why;
        pthread_mutex_unlock(&c->lock);
        return r;
}

void channels_out_free(struct channels_out *c)
{
        if (!c)
                return;
        for (unsigned i = 0; i < c->n; i++) {
                if (c->ch[i].w.fd >= 0)
                        close(c->ch[i].w.fd);
                wire_done(&c->ch[i].w);
                XXH3_freeState(c->ch[i].count.digest);
                pthread_mutex_destroy(&c->ch[i].lock);
        }
        pthread_mutex_destroy(&c->lock);
        free(c);
}

/* ---- Destination ---- */

struct channel_in {
        struct channels_in *set;
        unsigned index;
        struct wire w;
        pthread_t thread;
        bool started;
        struct memchunk_decoder dec;
        struct bytebuf buf;
        struct channel_count count;
        struct checksum_state *check;                      /* a payload received in pieces */
        uint8_t failed[SVEMIG_STREAM_CHUNK_PAGES_MAX / 8]; /* a frame's pages that failed their checks */
        uint64_t torn; /* pages that failed their checks (and must come again) */
        int r;
        struct svemig_error err;
};

struct channels_in {
        const struct svemig_stream_info *info;
        struct svemig_mem_map map;
        unsigned n;
        unsigned timeout_ms;
        _Atomic uint64_t last_data; /* when any channel last had data */
        channel_event_fn on_event;
        void *userdata;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned running;
        bool failed;
        size_t fields_max; /* what a frame's fields take at most, peeked to lay it out */
        /*
         * The guest's memory is fresh, so zero where no page was written.
         * A page whose check failed (FRAME_F_PAGE_CHECKS: the guest wrote
         * it as it was sent) stays unverified until it comes again.
         */
        struct memchunk_marks marks;
        struct channel_in ch[];
};

/* The channel's trailer: every count, its length and its digest as this end saw them. */
static int in_trailer(struct channel_in *c, const struct frame_head *h, uint64_t offset)
{
        Svemig__Trailer *t;
        const uint8_t *raw;
        uint8_t digest[8];
        int r;

        if (h->flags & FRAME_F_LZ4)
                return svemig_error_set(&c->err, EBADMSG, "offset %llu: a compressed trailer",
                                        (unsigned long long)offset);
        r = frame_payload_open(h, c->buf.p, NULL, &raw, offset, &c->err);
        if (r < 0)
                return r;
        t = svemig__trailer__unpack(NULL, h->stored_len, raw);
        if (!t)
                return svemig_error_set(&c->err, EBADMSG,
                                        "offset %llu: the trailer is not a Trailer message",
                                        (unsigned long long)offset);
        count_digest(&c->count, digest);
        if (t->frames != c->count.frames || t->mem_chunks != c->count.frames ||
            t->mem_pages != c->count.pages || t->zero_pages != c->count.zero || t->length != c->count.bytes)
                r = svemig_error_set(&c->err, EBADMSG,
                                     "the trailer says %llu frames, %llu pages (%llu zero) in %llu bytes; "
                                     "%llu, %llu (%llu) in %llu came: frames were lost",
                                     (unsigned long long)t->frames, (unsigned long long)t->mem_pages,
                                     (unsigned long long)t->zero_pages, (unsigned long long)t->length,
                                     (unsigned long long)c->count.frames, (unsigned long long)c->count.pages,
                                     (unsigned long long)c->count.zero, (unsigned long long)c->count.bytes);
        else if (t->digest != SVEMIG__DIGEST__DIGEST_XXH3_64_CHECKS ||
                 t->digest_value.len != sizeof(digest) ||
                 memcmp(t->digest_value.data, digest, sizeof(digest)))
                r = svemig_error_set(&c->err, EBADMSG,
                                     "the trailer's digest of the frames does not match what came: frames "
                                     "were reordered or replaced");
        svemig__trailer__free_unpacked(t, NULL);
        return r;
}

#define RECV_SLICE_MS      1000 /* how often a waiting channel looks at the others (SO_RCVTIMEO) */
#define RECV_BODY_SLICE_MS 2    /* in_recv_body()'s */

/*
 * After a receive returned k <= 0: 1 to wait on (a slice passed with no
 * data here, while the source still sends on some channel), else the
 * error. A channel may rightly idle while the dirty pages lie in other
 * channels' cells; the source is only given up when all fall silent.
 */
static int in_recv_error(struct channel_in *c, ssize_t k)
{
        uint64_t idle;

        if (k == 0)
                return svemig_error_set(&c->err, EPIPE,
                                        "the source closed the channel in the middle of a frame");
        if (errno == EINTR)
                return 1;
        if (errno != EAGAIN)
                return svemig_error_set(&c->err, errno, "receiving failed: %s", strerror(errno));
        idle = now_ns(CLOCK_MONOTONIC) - atomic_load(&c->set->last_data);
        if (idle < (uint64_t)c->set->timeout_ms * 1000000ull)
                return 1;
        return svemig_error_set(&c->err, ETIMEDOUT,
                                "no data from the source on any memory channel for %u ms",
                                c->set->timeout_ms);
}

static void in_alive(struct channel_in *c)
{
        atomic_store(&c->set->last_data, now_ns(CLOCK_MONOTONIC));
}

/* The first n bytes waiting on the channel, left there. */
static int in_peek(struct channel_in *c, uint8_t *buf, size_t n)
{
        for (;;) {
                ssize_t k = recv(c->w.fd, buf, n, MSG_PEEK | MSG_WAITALL);
                int r;

                if (k == (ssize_t)n)
                        return 0;
                if (k <= 0) {
                        r = in_recv_error(c, k);
                        if (r < 0)
                                return r;
                        continue;
                }
                /* A peek may stop short of n: wait for the rest. */
                nanosleep(&(struct timespec){.tv_nsec = 100000}, NULL);
        }
}

static int in_recvv(struct channel_in *c, struct iovec *iov, size_t n)
{
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = n};

        while (m.msg_iovlen > 0) {
                ssize_t k = recvmsg(c->w.fd, &m, MSG_WAITALL);
                int r;

                if (k <= 0) {
                        r = in_recv_error(c, k);
                        if (r < 0)
                                return r;
                        continue;
                }
                in_alive(c);
                c->w.bytes_in += (uint64_t)k;
                iov_advance(&m.msg_iov, &m.msg_iovlen, (size_t)k);
        }
        return 0;
}

static int in_recv(struct channel_in *c, void *buf, size_t len)
{
        struct iovec iov = {buf, len};

        return in_recvv(c, &iov, 1);
}

static void in_set_wakeup(struct channel_in *c, int lowat, unsigned slice_ms)
{
        struct timeval slice = {.tv_sec = slice_ms / 1000, .tv_usec = (slice_ms % 1000) * 1000};

        (void)setsockopt(c->w.fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
        (void)setsockopt(c->w.fd, SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof(slice));
}

/*
 * A frame's body, len bytes: the thread is woken once most of it has
 * come (SO_RCVLOWAT), not for each segment, about 16 times for a 1 MiB
 * frame. Those wakeups cost a migration on 2 CPUs about 6% of its time
 * (idle median 299 -> 282 ms). The kernel does not wake a reader short of its
 * low mark while the window it advertises is smaller (early in a
 * connection), so the wait is sliced short meanwhile. Heads and peeks wake
 * at the first byte, as before: what follows a pass's last frame comes
 * only after the pause.
 */
static int in_recv_body(struct channel_in *c, struct iovec *iov, size_t n, size_t len)
{
        int r;

        in_set_wakeup(c, (int)MIN(len, (size_t)RECV_LOWAT_MAX), RECV_BODY_SLICE_MS);
        r = in_recvv(c, iov, n);
        in_set_wakeup(c, 1, RECV_SLICE_MS);
        return r;
}

static int check_mismatch(struct channel_in *c, uint64_t offset, const char *what, uint64_t want,
                          uint64_t have)
{
        return svemig_error_set(&c->err, EBADMSG,
                                "offset %llu: MEMORY frame %s checksum mismatch (stored 0x%016llx, computed "
                                "0x%016llx): the stream is corrupt",
                                (unsigned long long)offset, what, (unsigned long long)want,
                                (unsigned long long)have);
}

/*
 * The frame's checks, its pages in place: with FRAME_F_PAGE_CHECKS, the
 * fields' own, then each page's, a page that fails left to come again
 * (c->failed); else the whole payload's.
 */
static int in_verify(struct channel_in *c, const struct frame_head *h, const struct memchunk_layout *l,
                     const struct iovec *pages, size_t n_pages, uint64_t want, uint64_t offset,
                     const uint8_t **failed)
{
        uint64_t have;

        *failed = NULL;
        if (h->flags & FRAME_F_PAGE_CHECKS) {
                unsigned torn;

                have = checksum64(c->buf.p, l->data_off);
                if (have != want)
                        return check_mismatch(c, offset, "fields", want, have);
                torn = memchunk_layout_verify(l, c->failed);
                c->torn += torn;
                if (torn)
                        *failed = c->failed;
                return 0;
        }
        checksum_reset(c->check);
        checksum_update(c->check, c->buf.p, l->data_off);
        for (size_t i = 0; i < n_pages; i++)
                checksum_update(c->check, pages[i].iov_base, pages[i].iov_len);
        have = checksum_digest(c->check);
        return have == want ? 0 : check_mismatch(c, offset, "payload", want, have);
}

/*
 * A raw MEMORY frame straight into the guest: its fields, peeked, say where
 * its pages go, and one recvmsg() puts them there. The guest does not run
 * before COMMIT, so pages that turn out to be damaged only fail the
 * migration (or, with their own checks, must come again), as they would
 * have from a buffer. 1: done; 0: the frame must be read whole.
 */
static int in_direct(struct channel_in *c, const struct frame_head *h, uint64_t offset,
                     struct memchunk_counts *n, uint8_t tail[FRAME_TAIL_SIZE])
{
        static _Thread_local struct iovec iov[LAYOUT_IOV];
        size_t peek = MIN((size_t)h->stored_len, c->set->fields_max), k;
        struct memchunk_layout l;
        const uint8_t *failed;
        int r;

        if (peek == 0)
                return 0;
        if (bytebuf_reserve(&c->buf, c->set->fields_max) < 0)
                return svemig_error_set(&c->err, ENOMEM, "out of memory");
        r = in_peek(c, c->buf.p, peek);
        if (r < 0)
                return r;
        r = memchunk_layout(&c->dec, c->set->info, &c->set->map, h, c->buf.p, peek, offset, &l, &c->err);
        if (r <= 0)
                return r;
        iov[0] = (struct iovec){c->buf.p, l.data_off};
        k = memchunk_layout_iov(&l, iov + 1, LAYOUT_IOV - 2);
        if (k == 0 && l.data_off < h->stored_len)
                return 0;
        iov[k + 1] = (struct iovec){tail, FRAME_TAIL_SIZE};
        r = in_recv_body(c, iov, k + 2, (size_t)h->stored_len + FRAME_TAIL_SIZE);
        if (r < 0)
                return r;
        /* in_recvv() moved the iovecs on: lay them out again for the check. */
        memchunk_layout_iov(&l, iov, LAYOUT_IOV - 2);
        r = in_verify(c, h, &l, iov, k, get_le64(tail), offset, &failed);
        if (r < 0)
                return r;
        memchunk_layout_done(&l, &c->set->marks, failed);
        *n = l.n;
        return 1;
}

/* Reads frames until the channel's trailer, writing memory as it comes. */
static int in_run(struct channel_in *c)
{
        const struct svemig_stream_info *info = c->set->info;
        size_t mem_max = memchunk_raw_max(info->page_size, info->chunk_pages);
        uint64_t offset = 0;

        for (;;) {
                uint8_t head[FRAME_HEAD_SIZE], tail[FRAME_TAIL_SIZE];
                struct frame_head h;
                struct memchunk_counts n;
                int r;

                r = in_recv(c, head, sizeof(head));
                if (r < 0)
                        return svemig_error_prefix(&c->err, "offset %llu", (unsigned long long)offset);
                r = frame_head_parse(head, &h, offset, &c->err);
                if (r < 0)
                        return r;
                if (h.type != SVEMIG_FRAME_MEMORY && h.type != SVEMIG_FRAME_TRAILER)
                        return svemig_error_set(&c->err, EPROTO,
                                                "offset %llu: a frame of type %u; a channel carries MEMORY "
                                                "frames and a trailer",
                                                (unsigned long long)offset, h.type);
                if (h.raw_len > (h.type == SVEMIG_FRAME_MEMORY ? mem_max : CHANNEL_TRAILER_MAX))
                        return svemig_error_set(&c->err, E2BIG, "offset %llu: a %s frame of %u bytes",
                                                (unsigned long long)offset, svemig_frame_type_name(h.type),
                                                h.raw_len);
                r = h.type == SVEMIG_FRAME_MEMORY ? in_direct(c, &h, offset, &n, tail) : 0;
                if (r < 0)
                        return r;
                if (r > 0) {
                        count_frame(&c->count, head, h.stored_len, tail, n.carried, n.zero);
                        offset += FRAME_HEAD_SIZE + (uint64_t)h.stored_len + FRAME_TAIL_SIZE;
                        continue;
                }
                if (bytebuf_reserve(&c->buf, (size_t)h.stored_len + FRAME_TAIL_SIZE) < 0)
                        return svemig_error_set(&c->err, ENOMEM, "out of memory");
                r = in_recv_body(c, &(struct iovec){c->buf.p, (size_t)h.stored_len + FRAME_TAIL_SIZE}, 1,
                                 (size_t)h.stored_len + FRAME_TAIL_SIZE);
                if (r < 0)
                        return svemig_error_prefix(&c->err, "offset %llu", (unsigned long long)offset);
                if (h.type == SVEMIG_FRAME_TRAILER)
                        return in_trailer(c, &h, offset);
                r = memchunk_apply_frame(&c->dec, info, &c->set->map, &c->set->marks, &h, c->buf.p, offset,
                                         &n, &c->err);
                if (r < 0)
                        return r;
                count_frame(&c->count, head, h.stored_len, c->buf.p + h.stored_len, n.carried, n.zero);
                offset += FRAME_HEAD_SIZE + (uint64_t)h.stored_len + FRAME_TAIL_SIZE;
        }
}

static void *in_main(void *userdata)
{
        struct channel_in *c = userdata;
        struct channels_in *set = c->set;

        bool first = false, last;

        c->r = in_run(c);
        if (c->r < 0)
                svemig_error_prefix(&c->err, "memory channel %u", c->index);
        pthread_mutex_lock(&set->lock);
        set->running--;
        if (c->r < 0 && !set->failed)
                first = set->failed = true;
        last = set->running == 0 && !set->failed;
        pthread_cond_broadcast(&set->cond);
        pthread_mutex_unlock(&set->lock);
        /* Unlocked: the callback may stop the migration, which frees nothing of ours yet. */
        if ((first || last) && set->on_event)
                set->on_event(set->userdata, first ? c->r : 0, first ? &c->err : NULL);
        return NULL;
}

#define TAKE_SLICE_MS 100u /* how often a wait for a channel looks at the migration's connection */

/*
 * The next connection svemigd (or whoever accepted it) passes on unix_fd,
 * within timeout_ms; sooner the pump's error when the connection's pump
 * (optional) says the source went away meanwhile.
 */
static int take_fd(int unix_fd, unsigned timeout_ms, struct pump *pump, struct svemig_error *err)
{
        uint64_t deadline = now_ns(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000000ull;
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        uint8_t byte;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
        struct cmsghdr *c;
        int r, fd = -1;

        for (;;) {
                ssize_t k;

                m.msg_control = control.buf;
                m.msg_controllen = sizeof(control.buf);
                k = recvmsg(unix_fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (k > 0)
                        break;
                if (k == 0)
                        return svemig_error_set(err, EPIPE, "whoever hands the channels over went away");
                if (errno != EAGAIN && errno != EINTR)
                        return svemig_error_set(err, errno, "receiving a channel: %s", strerror(errno));
                r = wire_poll(unix_fd, POLLIN, TAKE_SLICE_MS);
                if (r < 0)
                        return svemig_error_set(err, r, "waiting for a channel: %s", strerror(-r));
                if (r == 0 && pump && pump_error(pump, err) < 0)
                        return svemig_error_prefix(err, "waiting for the memory channels");
                if (r == 0 && now_ns(CLOCK_MONOTONIC) >= deadline)
                        return svemig_error_set(err, ETIMEDOUT, "no memory channel came for %u ms",
                                                timeout_ms);
        }
        c = CMSG_FIRSTHDR(&m);
        if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int)))
                memcpy(&fd, CMSG_DATA(c), sizeof(int));
        if (fd < 0)
                return svemig_error_set(err, EPROTO, "a channel handed over without its connection");
        return fd;
}

/* Reads the Channel message on a handed-over connection and puts it in its place. */
static int in_place(struct channels_in *set, int fd, const uint8_t *id, unsigned timeout_ms,
                    struct svemig_error *err)
{
        struct wire w;
        PeerMessage *msg;
        unsigned i = 0;
        int r;

        wire_init(&w, fd, timeout_ms);
        r = wire_recv(&w, timeout_ms, &msg, err);
        if (r == 0 && msg->body_case != SVEMIG__PEER__PEER_MESSAGE__BODY_CHANNEL)
                r = svemig_error_set(err, EPROTO, "a channel connection began with %s", wire_body_name(msg));
        if (r == 0 && (msg->channel->id.len != MIGRATE_ID_SIZE ||
                       memcmp(msg->channel->id.data, id, MIGRATE_ID_SIZE) != 0))
                r = svemig_error_set(err, EPROTO, "a channel of another migration came");
        if (r == 0) {
                i = msg->channel->index;
                if (i >= set->n || set->ch[i].w.fd >= 0)
                        r = svemig_error_set(err, EPROTO, "channel %u came, of %u, or twice", i, set->n);
        }
        if (r < 0) {
                wire_done(&w);
                close(fd);
                return r;
        }
        wire_done(&w);
        /* Blocking, in slices (in_set_wakeup() below): in_recv_error() watches all channels together. */
        (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        /*
         * A bounded receive buffer, as the connection's (receive.c):
         * left to autotuning, megabytes of pre-copy wait in it when the
         * source pauses, and the pause lasts until this end has applied
         * them (median idle downtime 11.0 ms unbounded, 8.9 ms so).
         */
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int){CHANNEL_RECV_BUFFER}, sizeof(int));
        wire_init(&set->ch[i].w, fd, 0);
        in_set_wakeup(&set->ch[i], 1, RECV_SLICE_MS);
        return 0;
}

int channels_accept(int unix_fd, const uint8_t *id, unsigned n, unsigned timeout_ms, struct pump *pump,
                    const struct svemig_stream_info *info, const struct svemig_mem_map *map,
                    channel_event_fn on_event, void *userdata, struct channels_in **out,
                    struct svemig_error *err)
{
        struct channels_in *set = calloc(1, sizeof(*set) + n * sizeof(set->ch[0]));
        int r = 0;

        if (!set)
                return svemig_error_set(err, ENOMEM, "out of memory");
        set->info = info;
        set->map = *map;
        set->n = n;
        set->fields_max = memchunk_fields_max(info->chunk_pages);
        set->marks.written = calloc(DIV_ROUND_UP(map->size / info->page_size, 64), sizeof(uint64_t));
        set->marks.unverified = calloc(DIV_ROUND_UP(map->size / info->page_size, 64), sizeof(uint64_t));
        if (!set->marks.written || !set->marks.unverified)
                r = svemig_error_set(err, ENOMEM, "out of memory");
        set->on_event = on_event;
        set->userdata = userdata;
        set->timeout_ms = timeout_ms;
        atomic_store(&set->last_data, now_ns(CLOCK_MONOTONIC));
        pthread_mutex_init(&set->lock, NULL);
        pthread_cond_init(&set->cond, NULL);
        for (unsigned i = 0; i < n; i++) {
                struct channel_in *c = &set->ch[i];

                c->set = set;
                c->index = i;
                c->w.fd = -1;
                memchunk_decoder_init(&c->dec);
                c->check = checksum_state_new();
                if (count_init(&c->count) < 0 || !c->check)
                        r = svemig_error_set(err, ENOMEM, "out of memory");
        }
        for (unsigned i = 0; i < n && r == 0; i++) {
                int fd = take_fd(unix_fd, timeout_ms, pump, err);

                r = fd < 0 ? fd : in_place(set, fd, id, timeout_ms, err);
        }
        for (unsigned i = 0; i < n && r == 0; i++) {
                r = -pthread_create(&set->ch[i].thread, NULL, in_main, &set->ch[i]);
                if (r < 0)
                        svemig_error_set(err, -r, "cannot start a thread for channel %u", i);
                else {
                        set->ch[i].started = true;
                        pthread_mutex_lock(&set->lock);
                        set->running++;
                        pthread_mutex_unlock(&set->lock);
                }
        }
        if (r < 0) {
                channels_in_free(set);
                return svemig_error_prefix(err, "memory channels");
        }
        *out = set;
        return 0;
}

/* Every channel came to its trailer: a page whose last copy failed its check is lost. */
static int unverified_left(const struct channels_in *set, struct svemig_error *err)
{
        uint64_t words = DIV_ROUND_UP(set->map.size / set->info->page_size, 64);
        uint64_t cell = (uint64_t)set->info->chunk_pages * set->info->page_size;

        for (uint64_t i = 0; i < words; i++) {
                uint64_t gpa;

                if (!set->marks.unverified[i])
                        continue;
                gpa = set->map.gpa +
                      (i * 64 + (uint64_t)__builtin_ctzll(set->marks.unverified[i])) * set->info->page_size;
                return svemig_error_set(err, EBADMSG,
                                        "memory channel %u: the page at 0x%llx failed its check and did "
                                        "not come again: the stream is corrupt",
                                        (unsigned)((gpa / cell) % set->n), (unsigned long long)gpa);
        }
        return 0;
}

int channels_in_wait(struct channels_in *set, unsigned timeout_ms, struct channels_in_stats *st,
                     struct svemig_error *err)
{
        struct timespec deadline = realtime_deadline(timeout_ms);
        int r = 0;

        pthread_mutex_lock(&set->lock);
        while (set->running > 0 && r == 0)
                r = -pthread_cond_timedwait(&set->cond, &set->lock, &deadline);
        pthread_mutex_unlock(&set->lock);
        if (r == -ETIMEDOUT)
                return svemig_error_set(err, ETIMEDOUT,
                                        "the memory channels did not end for %u ms after the stream",
                                        timeout_ms);
        *st = (struct channels_in_stats){0};
        for (unsigned i = 0; i < set->n; i++) {
                struct channel_in *c = &set->ch[i];

                if (c->r < 0) {
                        *err = c->err;
                        return c->r;
                }
                st->pages += c->count.pages;
                st->zero_pages += c->count.zero;
                st->bytes += c->w.bytes_in;
                st->torn_pages += c->torn;
        }
        return unverified_left(set, err);
}

void channels_in_free(struct channels_in *set)
{
        if (!set)
                return;
        /* Threads still reading are woken by the shutdown: their channel is over either way. */
        for (unsigned i = 0; i < set->n; i++)
                if (set->ch[i].w.fd >= 0)
                        shutdown(set->ch[i].w.fd, SHUT_RDWR);
        for (unsigned i = 0; i < set->n; i++) {
                struct channel_in *c = &set->ch[i];

                if (c->started)
                        pthread_join(c->thread, NULL);
                if (c->w.fd >= 0)
                        close(c->w.fd);
                wire_done(&c->w);
                memchunk_decoder_done(&c->dec);
                bytebuf_done(&c->buf);
                XXH3_freeState(c->count.digest);
                checksum_state_free(c->check);
        }
        pthread_cond_destroy(&set->cond);
        pthread_mutex_destroy(&set->lock);
        free(set->marks.written);
        free(set->marks.unverified);
        free(set);
}
