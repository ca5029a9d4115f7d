/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * MEMORY frames: guest memory in chunks of up to chunk_pages pages. Zero
 * pages become a bit; with LZ4 each other page is compressed on its own and
 * kept so where that shrinks it, else stored raw (LZ4 would grow it). In
 * guest memory, where matches rarely cross pages, pages on their own cost
 * little against LZ4 over a whole chunk, and they spare incompressible
 * pages the block format's growth (docs/stream-format.md). Encoding and decoding run on the worker pool;
 * frames go to the stream in address order whatever the thread count, so
 * output is reproducible.
 */
#include <errno.h>
#include <lz4.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "stream-internal.h"
#include "stream.pb-c.h"

#define BITMAP_BYTES_MAX (SVEMIG_STREAM_CHUNK_PAGES_MAX / 8)

/* Jobs in flight per worker: enough to hide the writer's or reader's I/O behind the compression. */
#define JOBS_PER_THREAD 4u
/*
 * The reader's: decoding waits on no I/O once a frame is read, and what is
 * read ahead is what a live migration's destination is still behind on
 * when the source pauses the guest.
 */
#define READ_JOBS_PER_THREAD 2u

/* The MemChunk field 6 (data), length-delimited: its tag byte. */
#define MEMCHUNK_DATA_TAG ((6u << 3) | 2u)

size_t memchunk_raw_max(uint32_t page_size, uint32_t chunk_pages)
{
        /* Fields and their tags, three bitmaps with theirs, the LZ4 sizes (< 65536: 3 bytes each), the
         * pages. */
        return 64 + 3 * (4 + DIV_ROUND_UP(chunk_pages, 8)) + (4 + 3 * (size_t)chunk_pages) +
               (size_t)chunk_pages * page_size;
}

static bool bit_test(const uint8_t *map, size_t i)
{
        return map[i / 8] & (1u << (i % 8));
}

static void bit_set(uint8_t *map, size_t i)
{
        map[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Most pages are not zero, and say so in their first word. */
static bool page_is_zero(const uint8_t *p, size_t size)
{
        const uint64_t *w = (const uint64_t *)p;
        uint64_t acc = 0;

        if (w[0])
                return false;
        for (size_t i = 0; i < size / sizeof(*w); i++)
                acc |= w[i];
        return acc == 0;
}

static size_t varint_size(uint64_t v)
{
        size_t n = 1;

        for (; v >= 0x80; v >>= 7)
                n++;
        return n;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
        size_t n = 0;

        for (; v >= 0x80; v >>= 7)
                p[n++] = (uint8_t)(v | 0x80);
        p[n++] = (uint8_t)v;
        return n;
}

/* ---- Writing ---- */

struct wjob {
        /* The chunk: pages [0, n_pages) from host, those set in carried (or all). */
        unsigned slot;
        uint64_t gpa;
        const uint8_t *host;
        uint32_t n_pages;
        bool all;
        uint8_t carried[BITMAP_BYTES_MAX];
        uint64_t done; /* bytes of the call's ranges up to this chunk's end, for progress */

        /* The encoded frame and what it holds. */
        LZ4_stream_t *lz4;
        uint8_t zero[BITMAP_BYTES_MAX], lz4_pages[BITMAP_BYTES_MAX];
        uint32_t lz4_sizes[SVEMIG_STREAM_CHUNK_PAGES_MAX];
        struct bytebuf out; /* room for the MemChunk's other fields, then its data */
        struct frame_out frame;
        uint64_t n_carried, n_zero, n_lz4;
};

/*
 * Kept by the writer from its first memory write to its end: a pre-copy
 * round or a snapshot in pieces would otherwise fault in megabytes of
 * fresh buffers on every call.
 */
struct memchunk_writer {
        unsigned window;
        struct wjob jobs[];
};

struct wctx {
        struct svemig_stream_writer *w;
        const struct svemig_mem_range *ranges;
        size_t n_ranges;
        size_t ri;     /* the range being cut into chunks */
        uint64_t pi;   /* its next page */
        uint64_t base; /* bytes of the ranges before it */
        uint64_t total;
        struct wjob *jobs;
        struct svemig_error *err;
};

void memchunk_writer_free(struct memchunk_writer *m)
{
        if (!m)
                return;
        for (unsigned i = 0; i < m->window; i++) {
                LZ4_freeStream(m->jobs[i].lz4);
                bytebuf_done(&m->jobs[i].out);
        }
        free(m);
}

static int memchunk_writer_new(unsigned window, struct memchunk_writer **out)
{
        struct memchunk_writer *m = calloc(1, sizeof(*m) + window * sizeof(m->jobs[0]));

        if (!m)
                return -ENOMEM;
        m->window = window;
        for (unsigned i = 0; i < window; i++) {
                m->jobs[i].lz4 = LZ4_createStream();
                if (!m->jobs[i].lz4) {
                        memchunk_writer_free(m);
                        return -ENOMEM;
                }
        }
        *out = m;
        return 0;
}

static bool dirty_test(const uint64_t *dirty, uint64_t i)
{
        return dirty[i / 64] & (1ull << (i % 64));
}

/* The next chunk with anything to carry, trimmed to its first and last dirty page. */
static int w_produce(void *ctx, unsigned slot)
{
        struct wctx *c = ctx;
        struct wjob *j = &c->jobs[slot];
        uint32_t ps = c->w->info.page_size, cp = c->w->info.chunk_pages;

        while (c->ri < c->n_ranges) {
                const struct svemig_mem_range *rg = &c->ranges[c->ri];
                uint64_t n = rg->size / ps, start = c->pi, end, first, last;

                if (start >= n) {
                        c->base += rg->size;
                        c->ri++;
                        c->pi = 0;
                        continue;
                }
                end = MIN(start + cp, n);
                c->pi = end;

                first = start;
                last = end;
                if (rg->dirty) {
                        while (first < end && !dirty_test(rg->dirty, first)) {
                                /* Whole clear words at a time: a pre-copy round is mostly clean. */
                                if (first % 64 == 0 && end - first >= 64 && rg->dirty[first / 64] == 0)
                                        first += 64;
                                else
                                        first++;
                        }
                        if (first == end)
                                continue;
                        while (!dirty_test(rg->dirty, last - 1))
                                last--;
                }
                j->slot = rg->slot;
                j->gpa = rg->gpa + first * ps;
                j->host = (const uint8_t *)rg->host + first * ps;
                j->n_pages = (uint32_t)(last - first);
                j->done = c->base + end * ps;
                j->all = true;
                memset(j->carried, 0, sizeof(j->carried));
                if (rg->dirty)
                        for (uint64_t i = first; i < last; i++) {
                                if (dirty_test(rg->dirty, i))
                                        bit_set(j->carried, i - first);
                                else
                                        j->all = false;
                        }
                return WORKPOOL_JOB;
        }
        return WORKPOOL_END;
}

/* Room before the data for the MemChunk's other fields at their largest, and the data's tag and length. */
static size_t head_room(uint32_t chunk_pages)
{
        /* slot, gpa, page_count; three bitmaps; the LZ4 sizes (each < 65536: 3 bytes); data's tag, length.
         */
        return 32 + 3 * (3 + DIV_ROUND_UP(chunk_pages, 8)) + 4 + 3 * (size_t)chunk_pages + 6;
}

/*
 * Bytes LZ4 tries at the start and in the middle of a page before the whole
 * page: if it cannot take 1/64 off either, the page is stored raw without
 * compressing the rest. Random data and noisy floating-point fields (half
 * the pages of bench/'s HPC image) then cost an eighth of a compression
 * instead of a whole one. The price: a page incompressible at both places
 * but not elsewhere is stored raw, never larger than the page.
 */
#define PROBE_BYTES 256u

static bool probe_compresses(LZ4_stream_t *st, const uint8_t *p, uint8_t *dst)
{
        LZ4_resetStream_fast(st);
        return LZ4_compress_fast_continue(st, (const char *)p, (char *)dst, PROBE_BYTES,
                                          PROBE_BYTES - PROBE_BYTES / 64, 1) > 0;
}

/*
 * Compresses one page on its own into dst (page_size bytes of room). Returns
 * the block's size if the block and its size field are smaller than the page,
 * 0 if the page is better stored raw. Each page starts afresh, so no block
 * depends on a page that may have changed since it was read (a running guest).
 */
static size_t page_compress(LZ4_stream_t *st, const uint8_t *p, uint32_t ps, uint8_t *dst)
{
        int z;

        if (!probe_compresses(st, p, dst) && !probe_compresses(st, p + ps / 2, dst))
                return 0;
        LZ4_resetStream_fast(st);
        z = LZ4_compress_fast_continue(st, (const char *)p, (char *)dst, (int)ps, (int)ps - 1, 1);
        if (z <= 0 || (size_t)z + varint_size((uint64_t)z) >= ps)
                return 0;
        return (size_t)z;
}

static int w_work(void *ctx, unsigned slot)
{
        struct wctx *c = ctx;
        struct wjob *j = &c->jobs[slot];
        const struct svemig_stream_info *info = &c->w->info;
        bool lz4 = c->w->lz4;
        Svemig__MemChunk m = SVEMIG__MEM_CHUNK__INIT;
        size_t bm = DIV_ROUND_UP(j->n_pages, 8), room = head_room(info->chunk_pages), dlen = 0, hlen, tlen;
        uint32_t ps = info->page_size;
        uint8_t *data, *head;

        /* The data is written straight after the room, never packed twice. */
        if (bytebuf_reserve(&j->out, room + (size_t)j->n_pages * ps) < 0)
                return -ENOMEM;
        data = j->out.p + room;
        memset(j->zero, 0, bm);
        memset(j->lz4_pages, 0, bm);
        j->n_carried = j->n_zero = j->n_lz4 = 0;
        for (uint32_t i = 0; i < j->n_pages; i++) {
                const uint8_t *p = j->host + (size_t)i * ps;
                size_t z;

                if (!j->all && !bit_test(j->carried, i))
                        continue;
                j->n_carried++;
                if (page_is_zero(p, ps)) {
                        bit_set(j->zero, i);
                        j->n_zero++;
                        continue;
                }
                z = lz4 ? page_compress(j->lz4, p, ps, data + dlen) : 0;
                if (z) {
                        bit_set(j->lz4_pages, i);
                        j->lz4_sizes[j->n_lz4++] = (uint32_t)z;
                        dlen += z;
                } else {
                        /* A copy, even of a raw page: the checksum must cover the bytes written. */
                        memcpy(data + dlen, p, ps);
                        dlen += ps;
                }
        }

        m.slot = j->slot;
        m.gpa = j->gpa;
        m.page_count = j->n_pages;
        if (!j->all)
                m.carried = (ProtobufCBinaryData){bm, j->carried};
        if (j->n_zero)
                m.zero = (ProtobufCBinaryData){bm, j->zero};
        if (j->n_lz4) {
                m.lz4_pages = (ProtobufCBinaryData){bm, j->lz4_pages};
                m.n_lz4_sizes = j->n_lz4;
                m.lz4_sizes = j->lz4_sizes;
        }
        /*
         * The other fields go right before the data, then the data's own tag
         * and length (a message may end with any field, so this is the
         * message protobuf-c would pack, without copying the data again).
         */
        hlen = svemig__mem_chunk__get_packed_size(&m);
        tlen = dlen ? 1 + varint_size(dlen) : 0;
        if (hlen + tlen > room)
                return -EOVERFLOW;
        head = data - tlen - hlen;
        svemig__mem_chunk__pack(&m, head);
        if (dlen) {
                head[hlen] = MEMCHUNK_DATA_TAG;
                put_varint(head + hlen + 1, dlen);
        }
        /* A chunk with no LZ4 page is a 1.0 chunk, which 1.0 readers still read. */
        frame_seal(&j->frame, SVEMIG_FRAME_MEMORY, FRAME_F_REQUIRED | (j->n_lz4 ? FRAME_F_PAGE_LZ4 : 0),
                   j->n_lz4 ? FRAME_PAGE_LZ4_MINOR : 0, head, hlen + tlen + dlen);
        return 0;
}

static int w_consume(void *ctx, unsigned slot, int rc)
{
        struct wctx *c = ctx;
        struct wjob *j = &c->jobs[slot];
        struct svemig_stream_writer *w = c->w;
        struct svemig_stream_stats *s = &w->stats;
        int r;

        if (rc < 0)
                return svemig_error_set(c->err, rc, "encoding memory at 0x%llx: %s",
                                        (unsigned long long)j->gpa, strerror(-rc));
        r = stream_writer_emit(w, &j->frame, c->err);
        if (r < 0)
                return r;
        s->mem_chunks++;
        s->mem_pages += j->n_carried;
        s->zero_pages += j->n_zero;
        s->mem_stored += FRAME_HEAD_SIZE + j->frame.len + FRAME_TAIL_SIZE;
        s->lz4_pages += j->n_lz4;
        if (j->n_lz4 || (get_le32(j->frame.head + 4) & FRAME_F_LZ4))
                s->lz4_chunks++;
        if (w->progress) {
                r = w->progress(w->userdata, j->done, c->total);
                if (r < 0)
                        return svemig_error_set(
                                c->err, r, "writing memory stopped at 0x%llx by the caller: %s",
                                (unsigned long long)(j->gpa + (uint64_t)j->n_pages * w->info.page_size),
                                strerror(-r));
        }
        return 0;
}

static int check_range(const struct svemig_stream_writer *w, const struct svemig_mem_range *rg,
                       struct svemig_error *err)
{
        const struct svemig_stream_slot *s = stream_find_slot(&w->info, rg->slot);
        uint32_t ps = w->info.page_size;

        if (!s)
                return svemig_error_set(err, EINVAL,
                                        "memory range in slot %u: the stream header has no such slot",
                                        rg->slot);
        if (rg->gpa % ps || rg->size % ps)
                return svemig_error_set(err, EINVAL,
                                        "memory range [0x%llx, +0x%llx) is not page aligned (%u)",
                                        (unsigned long long)rg->gpa, (unsigned long long)rg->size, ps);
        if (rg->gpa < s->gpa || rg->gpa - s->gpa > s->size || rg->size > s->size - (rg->gpa - s->gpa))
                return svemig_error_set(
                        err, EINVAL, "memory range [0x%llx, +0x%llx) is outside slot %u [0x%llx, +0x%llx)",
                        (unsigned long long)rg->gpa, (unsigned long long)rg->size, s->id,
                        (unsigned long long)s->gpa, (unsigned long long)s->size);
        if (rg->size && !rg->host)
                return svemig_error_set(err, EINVAL, "memory range [0x%llx, +0x%llx) has no host memory",
                                        (unsigned long long)rg->gpa, (unsigned long long)rg->size);
        return 0;
}

int svemig_stream_write_memory(struct svemig_stream_writer *w, const struct svemig_mem_range *ranges,
                               size_t n_ranges, struct svemig_error *err)
{
        struct wctx c = {.w = w, .ranges = ranges, .n_ranges = n_ranges, .err = err};
        struct workpool_pipeline pl;
        int r;

        r = stream_check(&w->failure, err);
        if (r < 0)
                return r;
        if (w->finished)
                return svemig_error_set(err, EINVAL,
                                        "the stream is finished: nothing can follow its trailer");
        for (size_t i = 0; i < n_ranges; i++) {
                r = check_range(w, &ranges[i], err);
                if (r < 0)
                        return r;
                c.total += ranges[i].size;
        }
        r = stream_pool(&w->pool, w->n_threads, err);
        if (r < 0)
                return r;
        if (!w->mem) {
                r = memchunk_writer_new(JOBS_PER_THREAD * workpool_threads(w->pool), &w->mem);
                if (r < 0)
                        return svemig_error_set(err, r, "out of memory");
        }

        c.jobs = w->mem->jobs;
        pl = (struct workpool_pipeline){
                .window = w->mem->window,
                .ctx = &c,
                .produce = w_produce,
                .work = w_work,
                .consume = w_consume,
        };
        r = workpool_run(w->pool, &pl);
        if (r < 0 && r != -ENOMEM)
                r = stream_fail(&w->failure, r, err); /* frames may be half written: the stream is spent */
        else if (r == -ENOMEM)
                r = svemig_error_set(err, r, "out of memory encoding memory");
        return r;
}

/* ---- Reading ---- */

struct rjob {
        struct frame_head head;
        uint64_t offset;
        struct bytebuf buf, raw, page;
        struct pbarena arena;
        struct svemig_error err;
        uint64_t n_carried, n_zero, n_lz4;

        /* Ordering between jobs that touch the same pages, under rctx.lock. */
        uint64_t seq;
        bool range_known, finished;
        unsigned slot;
        uint64_t start, end;
};

/* Kept by the reader from its first memory read to its end, as memchunk_writer is. */
struct memchunk_reader {
        unsigned window;
        struct rjob jobs[];
};

struct rctx {
        struct svemig_stream_reader *r;
        const struct svemig_mem_map *map;
        size_t n_map;
        struct rjob *jobs;
        unsigned window;
        bool first;
        uint64_t next_seq;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct svemig_error *err;
};

void memchunk_reader_free(struct memchunk_reader *m)
{
        if (!m)
                return;
        for (unsigned i = 0; i < m->window; i++) {
                bytebuf_done(&m->jobs[i].buf);
                bytebuf_done(&m->jobs[i].raw);
                bytebuf_done(&m->jobs[i].page);
                pbarena_done(&m->jobs[i].arena);
        }
        free(m);
}

static int memchunk_reader_new(unsigned window, struct memchunk_reader **out)
{
        struct memchunk_reader *m = calloc(1, sizeof(*m) + window * sizeof(m->jobs[0]));

        if (!m)
                return -ENOMEM;
        m->window = window;
        for (unsigned i = 0; i < window; i++)
                pbarena_init(&m->jobs[i].arena);
        *out = m;
        return 0;
}

static void swap_bufs(struct bytebuf *a, struct bytebuf *b)
{
        struct bytebuf t = *a;
        *a = *b;
        *b = t;
}

/* Reads the next MEMORY frame into the slot; any other frame stays pending in the reader. */
static int r_produce(void *ctx, unsigned slot)
{
        struct rctx *c = ctx;
        struct rjob *j = &c->jobs[slot];
        struct svemig_stream_reader *r = c->r;

        if (!c->first) {
                int t = stream_reader_read_frame(r, c->err);
                if (t < 0)
                        return t;
                if (t != SVEMIG_FRAME_MEMORY)
                        return WORKPOOL_END;
        }
        c->first = false;
        swap_bufs(&j->buf, &r->buf);
        j->head = r->head;
        j->offset = r->head_offset;
        r->pending = false;

        pthread_mutex_lock(&c->lock);
        j->seq = c->next_seq++;
        j->range_known = j->finished = false;
        pthread_mutex_unlock(&c->lock);
        return WORKPOOL_JOB;
}

static uint8_t *map_lookup(const struct rctx *c, unsigned slot, uint64_t gpa, uint64_t size)
{
        for (size_t i = 0; i < c->n_map; i++) {
                const struct svemig_mem_map *m = &c->map[i];
                if (m->slot == slot && gpa >= m->gpa && gpa - m->gpa <= m->size &&
                    size <= m->size - (gpa - m->gpa))
                        return (uint8_t *)m->host + (gpa - m->gpa);
        }
        return NULL;
}

/*
 * A later chunk may resend pages of an earlier one (pre-copy rounds), so a
 * job writes only once every earlier job that might touch its pages is done.
 * Earlier jobs were dequeued first and never wait for later ones: no deadlock.
 */
static void wait_earlier(struct rctx *c, const struct rjob *j)
{
        pthread_mutex_lock(&c->lock);
        for (;;) {
                bool blocked = false;

                for (unsigned i = 0; i < c->window && !blocked; i++) {
                        const struct rjob *o = &c->jobs[i];
                        if (o == j || o->finished || o->seq >= j->seq)
                                continue;
                        blocked = !o->range_known ||
                                  (o->slot == j->slot && o->start < j->end && j->start < o->end);
                }
                if (!blocked)
                        break;
                pthread_cond_wait(&c->cond, &c->lock);
        }
        pthread_mutex_unlock(&c->lock);
}

struct chunk_counts {
        uint64_t carried, zero, lz4;
};

/* The LZ4 pages (1.1): a bitmap over carried non-zero pages, and a size each. Returns their bytes in
 * *lz4_bytes. */
static int chunk_check_lz4(const Svemig__MemChunk *m, uint32_t flags, uint32_t ps, uint64_t off,
                           uint64_t n_lz4, uint64_t *lz4_bytes, struct svemig_error *err)
{
        if (!(flags & FRAME_F_PAGE_LZ4) && (m->lz4_pages.len || m->n_lz4_sizes))
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: memory chunk holds LZ4 pages but its frame does not set "
                        "flag PAGE_LZ4",
                        (unsigned long long)off);
        if (m->n_lz4_sizes != n_lz4)
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: memory chunk gives %zu LZ4 page sizes for %llu LZ4 pages",
                        (unsigned long long)off, m->n_lz4_sizes, (unsigned long long)n_lz4);
        *lz4_bytes = 0;
        for (size_t i = 0; i < m->n_lz4_sizes; i++) {
                if (m->lz4_sizes[i] == 0 || m->lz4_sizes[i] >= ps)
                        return svemig_error_set(
                                err, EBADMSG,
                                "offset %llu: memory chunk LZ4 page %zu has %u bytes; a page's block has "
                                "1..%u",
                                (unsigned long long)off, i, m->lz4_sizes[i], ps - 1);
                *lz4_bytes += m->lz4_sizes[i];
        }
        return 0;
}

static int chunk_check(const struct svemig_stream_info *info, const Svemig__MemChunk *m, uint32_t flags,
                       uint64_t off, struct chunk_counts *n, struct svemig_error *err)
{
        const struct svemig_stream_slot *s = stream_find_slot(info, m->slot);
        uint32_t ps = info->page_size;
        size_t bm = DIV_ROUND_UP(m->page_count, 8);
        uint64_t data = 0, len, lz4_bytes = 0;
        int k;

        if (!s)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: memory chunk for slot %u, which the header lacks",
                                        (unsigned long long)off, m->slot);
        if (m->page_count == 0 || m->page_count > info->chunk_pages)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: memory chunk of %u pages (the header allows 1..%u)",
                                        (unsigned long long)off, m->page_count, info->chunk_pages);
        len = (uint64_t)m->page_count * ps;
        if (m->gpa % ps || m->gpa < s->gpa || m->gpa - s->gpa > s->size || len > s->size - (m->gpa - s->gpa))
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: memory chunk [0x%llx, +0x%llx) is not page aligned inside "
                        "slot %u [0x%llx, +0x%llx)",
                        (unsigned long long)off, (unsigned long long)m->gpa, (unsigned long long)len, s->id,
                        (unsigned long long)s->gpa, (unsigned long long)s->size);
        if ((m->carried.len && m->carried.len != bm) || (m->zero.len && m->zero.len != bm) ||
            (m->lz4_pages.len && m->lz4_pages.len != bm))
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: memory chunk bitmaps of %zu, %zu and %zu bytes for %u pages",
                        (unsigned long long)off, m->carried.len, m->zero.len, m->lz4_pages.len,
                        m->page_count);
        *n = (struct chunk_counts){0};
        for (uint32_t i = 0; i < bm * 8; i++) {
                bool carried = m->carried.len ? bit_test(m->carried.data, i) : i < m->page_count;
                bool zero = m->zero.len && bit_test(m->zero.data, i);
                bool lz4 = m->lz4_pages.len && bit_test(m->lz4_pages.data, i);

                if ((carried || zero || lz4) && i >= m->page_count)
                        return svemig_error_set(
                                err, EBADMSG,
                                "offset %llu: memory chunk bitmap sets bit %u past its %u pages",
                                (unsigned long long)off, i, m->page_count);
                if (zero && !carried)
                        return svemig_error_set(
                                err, EBADMSG,
                                "offset %llu: memory chunk marks page %u zero but does not carry it",
                                (unsigned long long)off, i);
                if (lz4 && (!carried || zero))
                        return svemig_error_set(
                                err, EBADMSG,
                                "offset %llu: memory chunk marks page %u LZ4 but it is not a "
                                "carried non-zero page",
                                (unsigned long long)off, i);
                n->carried += carried;
                n->zero += zero;
                n->lz4 += lz4;
                data += carried && !zero && !lz4;
        }
        k = chunk_check_lz4(m, flags, ps, off, n->lz4, &lz4_bytes, err);
        if (k < 0)
                return k;
        if (m->data.len != data * ps + lz4_bytes)
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: memory chunk carries %zu bytes of page data, its bitmaps "
                        "say %llu raw pages of %u and %llu bytes of LZ4 pages",
                        (unsigned long long)off, m->data.len, (unsigned long long)data, ps,
                        (unsigned long long)lz4_bytes);
        return 0;
}

/*
 * Writes the chunk's pages to dst, or with dst NULL only decompresses its
 * LZ4 pages (into a scratch page) so that a check finds what a restore would.
 */
static int chunk_apply(struct rjob *j, const Svemig__MemChunk *m, uint32_t ps, uint8_t *dst)
{
        const uint8_t *src = m->data.data;
        size_t li = 0;

        if (!dst && j->n_lz4 && bytebuf_reserve(&j->page, ps) < 0)
                return svemig_error_set(&j->err, ENOMEM, "out of memory");
        for (uint32_t i = 0; i < m->page_count; i++) {
                uint8_t *p = dst ? dst + (size_t)i * ps : NULL;

                if (m->carried.len && !bit_test(m->carried.data, i))
                        continue;
                if (m->zero.len && bit_test(m->zero.data, i)) {
                        /*
                         * Only if it is not zero already: a page of fresh
                         * memory, as a destination's, reads as the shared
                         * zero page, and writing it would allocate and
                         * clear a page for nothing.
                         */
                        if (p && !page_is_zero(p, ps))
                                memset(p, 0, ps);
                } else if (m->lz4_pages.len && bit_test(m->lz4_pages.data, i)) {
                        uint32_t z = m->lz4_sizes[li++];

                        if (LZ4_decompress_safe((const char *)src, (char *)(p ? p : j->page.p), (int)z,
                                                (int)ps) != (int)ps)
                                return svemig_error_set(&j->err, EBADMSG,
                                                        "offset %llu: the LZ4 block of page 0x%llx does not "
                                                        "decompress to a page",
                                                        (unsigned long long)j->offset,
                                                        (unsigned long long)(m->gpa + (uint64_t)i * ps));
                        src += z;
                } else {
                        if (p)
                                memcpy(p, src, ps);
                        src += ps;
                }
        }
        return 0;
}

static int r_decode(struct rctx *c, struct rjob *j)
{
        const struct svemig_stream_info *info = &c->r->info;
        const uint8_t *raw;
        Svemig__MemChunk *m;
        struct chunk_counts n = {0};
        uint8_t *dst = NULL;
        uint32_t ps = info->page_size;
        int k;

        if (bytebuf_reserve(&j->raw, (size_t)j->head.raw_len + 1) < 0 ||
            pbarena_reset(&j->arena, pbarena_budget(j->head.raw_len)) < 0)
                return svemig_error_set(&j->err, ENOMEM, "out of memory");
        k = frame_payload_open(&j->head, j->buf.p, j->raw.p, &raw, j->offset, &j->err);
        if (k < 0)
                return k;
        m = svemig__mem_chunk__unpack(&j->arena.allocator, j->head.raw_len, raw);
        if (!m)
                return svemig_error_set(&j->err, EBADMSG,
                                        "offset %llu: the MEMORY frame is not a valid MemChunk message",
                                        (unsigned long long)j->offset);
        k = chunk_check(info, m, j->head.flags, j->offset, &n, &j->err);
        if (k < 0)
                return k;
        j->n_carried = n.carried;
        j->n_zero = n.zero;
        j->n_lz4 = n.lz4;

        pthread_mutex_lock(&c->lock);
        j->slot = m->slot;
        j->start = m->gpa;
        j->end = m->gpa + (uint64_t)m->page_count * ps;
        j->range_known = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);

        if (!c->map)
                return chunk_apply(j, m, ps, NULL);
        dst = map_lookup(c, m->slot, m->gpa, (uint64_t)m->page_count * ps);
        if (!dst)
                return svemig_error_set(
                        &j->err, ERANGE,
                        "offset %llu: memory chunk [0x%llx, +0x%llx) of slot %u is outside the "
                        "destination's memory",
                        (unsigned long long)j->offset, (unsigned long long)m->gpa,
                        (unsigned long long)m->page_count * ps, m->slot);
        wait_earlier(c, j);
        return chunk_apply(j, m, ps, dst);
}

static int r_work(void *ctx, unsigned slot)
{
        struct rctx *c = ctx;
        struct rjob *j = &c->jobs[slot];
        int k;

        svemig_error_clear(&j->err);
        k = r_decode(c, j);

        pthread_mutex_lock(&c->lock);
        j->finished = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        return k;
}

static int r_consume(void *ctx, unsigned slot, int rc)
{
        struct rctx *c = ctx;
        struct rjob *j = &c->jobs[slot];
        struct svemig_stream_stats *s = &c->r->stats;

        if (rc < 0)
                return svemig_error_set(c->err, rc, "%s", svemig_error_str(&j->err, rc));
        c->r->mem_decoded++;
        s->mem_pages += j->n_carried;
        s->zero_pages += j->n_zero;
        s->lz4_pages += j->n_lz4;
        s->mem_stored += FRAME_HEAD_SIZE + j->head.stored_len + FRAME_TAIL_SIZE;
        if (j->n_lz4 || (j->head.flags & FRAME_F_LZ4))
                s->lz4_chunks++;
        return 0;
}

int svemig_stream_read_memory(struct svemig_stream_reader *r, const struct svemig_mem_map *map, size_t n_map,
                              struct svemig_error *err)
{
        struct rctx c = {.r = r, .map = map, .n_map = n_map, .first = true, .err = err};
        struct workpool_pipeline pl;
        int k;

        k = stream_check(&r->failure, err);
        if (k < 0)
                return k;
        if (!r->pending || !r->pending_seen || r->head.type != SVEMIG_FRAME_MEMORY)
                return svemig_error_set(err, EINVAL,
                                        "no MEMORY frame is pending: call svemig_stream_next() first");
        k = stream_pool(&r->pool, r->n_threads, err);
        if (k < 0)
                return k;
        if (!r->mem) {
                k = memchunk_reader_new(READ_JOBS_PER_THREAD * workpool_threads(r->pool), &r->mem);
                if (k < 0)
                        return svemig_error_set(err, k, "out of memory");
        }

        c.window = r->mem->window;
        c.jobs = r->mem->jobs;
        for (unsigned i = 0; i < c.window; i++)
                c.jobs[i].finished = true; /* an empty slot blocks nobody */
        pthread_mutex_init(&c.lock, NULL);
        pthread_cond_init(&c.cond, NULL);

        pl = (struct workpool_pipeline){
                .window = c.window,
                .ctx = &c,
                .produce = r_produce,
                .work = r_work,
                .consume = r_consume,
        };
        k = workpool_run(r->pool, &pl);
        if (k < 0)
                k = stream_fail(&r->failure, k, err);
        r->stats.bytes = r->offset;

        pthread_cond_destroy(&c.cond);
        pthread_mutex_destroy(&c.lock);
        return k;
}
