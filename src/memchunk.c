/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * MEMORY frames: guest memory in chunks of up to chunk_pages pages. Zero
 * pages become a bit; the other pages are LZ4-compressed where that pays.
 * Encoding and decoding run on the worker pool; frames go to the stream in
 * address order whatever the thread count, so output is reproducible.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "stream-internal.h"
#include "stream.pb-c.h"

#define BITMAP_BYTES_MAX (SVEMIG_STREAM_CHUNK_PAGES_MAX / 8)
#define BITMAP_WORDS_MAX (SVEMIG_STREAM_CHUNK_PAGES_MAX / 64)

/* Jobs in flight per worker: enough to hide the writer's or reader's I/O behind the compression. */
#define JOBS_PER_THREAD 4u

size_t memchunk_raw_max(uint32_t page_size, uint32_t chunk_pages)
{
        /* Fields and their tags, two bitmaps with theirs, then the pages. */
        return 64 + 2 * (4 + DIV_ROUND_UP(chunk_pages, 8)) + (size_t)chunk_pages * page_size;
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

/* ---- Writing ---- */

struct wjob {
        /* The chunk: pages [0, n_pages) from host, those set in carried (or all). */
        unsigned slot;
        uint64_t gpa;
        const uint8_t *host;
        uint32_t n_pages;
        bool all;
        uint8_t carried[BITMAP_BYTES_MAX];

        /* The encoded frame and what it holds. */
        uint8_t zero[BITMAP_BYTES_MAX];
        struct bytebuf gather, pack, zbuf;
        struct frame_out frame;
        uint64_t n_carried, n_zero;
};

struct wctx {
        struct svemig_stream_writer *w;
        const struct svemig_mem_range *ranges;
        size_t n_ranges;
        size_t ri;   /* the range being cut into chunks */
        uint64_t pi; /* its next page */
        struct wjob *jobs;
        unsigned window;
        struct svemig_error *err;
};

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

static int w_work(void *ctx, unsigned slot)
{
        struct wctx *c = ctx;
        struct wjob *j = &c->jobs[slot];
        const struct svemig_stream_info *info = &c->w->info;
        Svemig__MemChunk m = SVEMIG__MEM_CHUNK__INIT;
        size_t bm = DIV_ROUND_UP(j->n_pages, 8), n_data = 0, len;
        uint32_t ps = info->page_size;

        const uint8_t *run = NULL; /* the data pages, while they are one run of guest memory */
        bool contiguous = true;

        memset(j->zero, 0, bm);
        j->n_carried = j->n_zero = 0;
        for (uint32_t i = 0; i < j->n_pages; i++) {
                const uint8_t *p = j->host + (size_t)i * ps;

                if (!j->all && !bit_test(j->carried, i))
                        continue;
                j->n_carried++;
                if (page_is_zero(p, ps)) {
                        bit_set(j->zero, i);
                        j->n_zero++;
                        continue;
                }
                if (n_data == 0)
                        run = p;
                else if (contiguous && p != run + n_data * ps) {
                        /* Gather from here on; the pages so far are one run. */
                        if (bytebuf_reserve(&j->gather, (size_t)j->n_pages * ps) < 0)
                                return -ENOMEM;
                        memcpy(j->gather.p, run, n_data * ps);
                        contiguous = false;
                }
                if (!contiguous)
                        memcpy(j->gather.p + n_data * ps, p, ps);
                n_data++;
        }
        m.slot = j->slot;
        m.gpa = j->gpa;
        m.page_count = j->n_pages;
        if (!j->all)
                m.carried = (ProtobufCBinaryData){bm, j->carried};
        if (j->n_zero)
                m.zero = (ProtobufCBinaryData){bm, j->zero};
        /* One run is packed straight from guest memory, with no gathering copy. */
        m.data = (ProtobufCBinaryData){n_data * ps, (uint8_t *)(contiguous ? run : j->gather.p)};

        len = svemig__mem_chunk__get_packed_size(&m);
        if (bytebuf_reserve(&j->pack, len) < 0 || bytebuf_reserve(&j->zbuf, frame_lz4_bound(len)) < 0)
                return -ENOMEM;
        svemig__mem_chunk__pack(&m, j->pack.p);
        frame_build(&j->frame, SVEMIG_FRAME_MEMORY, true, j->pack.p, len,
                    info->compression == SVEMIG_COMPRESSION_LZ4, j->zbuf.p);
        return 0;
}

static int w_consume(void *ctx, unsigned slot, int rc)
{
        struct wctx *c = ctx;
        struct wjob *j = &c->jobs[slot];
        struct svemig_stream_stats *s = &c->w->stats;
        int r;

        if (rc < 0)
                return svemig_error_set(c->err, rc, "encoding memory at 0x%llx: %s",
                                        (unsigned long long)j->gpa, strerror(-rc));
        r = stream_writer_emit(c->w, &j->frame, c->err);
        if (r < 0)
                return r;
        s->mem_chunks++;
        s->mem_pages += j->n_carried;
        s->zero_pages += j->n_zero;
        s->mem_stored += FRAME_HEAD_SIZE + j->frame.len + FRAME_TAIL_SIZE;
        if (get_le32(j->frame.head + 4) & FRAME_F_LZ4)
                s->lz4_chunks++;
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
        }
        r = stream_pool(&w->pool, w->n_threads, err);
        if (r < 0)
                return r;

        c.window = JOBS_PER_THREAD * workpool_threads(w->pool);
        c.jobs = calloc(c.window, sizeof(*c.jobs));
        if (!c.jobs)
                return svemig_error_set(err, ENOMEM, "out of memory");
        pl = (struct workpool_pipeline){
                .window = c.window,
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
        for (unsigned i = 0; i < c.window; i++) {
                bytebuf_done(&c.jobs[i].gather);
                bytebuf_done(&c.jobs[i].pack);
                bytebuf_done(&c.jobs[i].zbuf);
        }
        free(c.jobs);
        return r;
}

/* ---- Reading ---- */

struct rjob {
        struct frame_head head;
        uint64_t offset;
        struct bytebuf buf, raw;
        struct pbarena arena;
        struct svemig_error err;
        uint64_t n_carried, n_zero;

        /* Ordering between jobs that touch the same pages, under rctx.lock. */
        uint64_t seq;
        bool range_known, finished;
        unsigned slot;
        uint64_t start, end;
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

static int chunk_check(const struct svemig_stream_info *info, const Svemig__MemChunk *m, uint64_t off,
                       uint64_t *n_carried, uint64_t *n_zero, struct svemig_error *err)
{
        const struct svemig_stream_slot *s = stream_find_slot(info, m->slot);
        uint32_t ps = info->page_size;
        size_t bm = DIV_ROUND_UP(m->page_count, 8);
        uint64_t data = 0, len;

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
        if ((m->carried.len && m->carried.len != bm) || (m->zero.len && m->zero.len != bm))
                return svemig_error_set(
                        err, EBADMSG, "offset %llu: memory chunk bitmaps of %zu and %zu bytes for %u pages",
                        (unsigned long long)off, m->carried.len, m->zero.len, m->page_count);
        *n_carried = *n_zero = 0;
        for (uint32_t i = 0; i < bm * 8; i++) {
                bool carried = m->carried.len ? bit_test(m->carried.data, i) : i < m->page_count;
                bool zero = m->zero.len && bit_test(m->zero.data, i);

                if ((carried || zero) && i >= m->page_count)
                        return svemig_error_set(
                                err, EBADMSG,
                                "offset %llu: memory chunk bitmap sets bit %u past its %u pages",
                                (unsigned long long)off, i, m->page_count);
                if (zero && !carried)
                        return svemig_error_set(
                                err, EBADMSG,
                                "offset %llu: memory chunk marks page %u zero but does not carry it",
                                (unsigned long long)off, i);
                *n_carried += carried;
                *n_zero += zero;
                data += carried && !zero;
        }
        if (m->data.len != data * ps)
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: memory chunk carries %zu bytes of page data, its bitmaps "
                        "say %llu pages of %u",
                        (unsigned long long)off, m->data.len, (unsigned long long)data, ps);
        return 0;
}

static int r_decode(struct rctx *c, struct rjob *j)
{
        const struct svemig_stream_info *info = &c->r->info;
        const uint8_t *raw;
        Svemig__MemChunk *m;
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
        k = chunk_check(info, m, j->offset, &j->n_carried, &j->n_zero, &j->err);
        if (k < 0)
                return k;

        pthread_mutex_lock(&c->lock);
        j->slot = m->slot;
        j->start = m->gpa;
        j->end = m->gpa + (uint64_t)m->page_count * ps;
        j->range_known = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);

        if (!c->map)
                return 0;
        dst = map_lookup(c, m->slot, m->gpa, (uint64_t)m->page_count * ps);
        if (!dst)
                return svemig_error_set(
                        &j->err, ERANGE,
                        "offset %llu: memory chunk [0x%llx, +0x%llx) of slot %u is outside the "
                        "destination's memory",
                        (unsigned long long)j->offset, (unsigned long long)m->gpa,
                        (unsigned long long)m->page_count * ps, m->slot);
        wait_earlier(c, j);
        for (uint32_t i = 0, d = 0; i < m->page_count; i++) {
                uint8_t *p = dst + (size_t)i * ps;

                if (m->carried.len && !bit_test(m->carried.data, i))
                        continue;
                if (m->zero.len && bit_test(m->zero.data, i))
                        memset(p, 0, ps);
                else
                        memcpy(p, m->data.data + (size_t)ps * d++, ps);
        }
        return 0;
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
        s->mem_stored += FRAME_HEAD_SIZE + j->head.stored_len + FRAME_TAIL_SIZE;
        if (j->head.flags & FRAME_F_LZ4)
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

        c.window = JOBS_PER_THREAD * workpool_threads(r->pool);
        c.jobs = calloc(c.window, sizeof(*c.jobs));
        if (!c.jobs)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (unsigned i = 0; i < c.window; i++) {
                pbarena_init(&c.jobs[i].arena);
                c.jobs[i].finished = true; /* an empty slot blocks nobody */
        }
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
        for (unsigned i = 0; i < c.window; i++) {
                bytebuf_done(&c.jobs[i].buf);
                bytebuf_done(&c.jobs[i].raw);
                pbarena_done(&c.jobs[i].arena);
        }
        free(c.jobs);
        return k;
}
