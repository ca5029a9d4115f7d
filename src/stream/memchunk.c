/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * MEMORY frames: guest memory in chunks of up to chunk_pages pages. Zero
 * pages become a bit; with LZ4 each other page is compressed on its own and
 * kept so where that shrinks it, else stored raw (LZ4 would grow it). In
 * guest memory, where matches rarely cross pages, pages on their own cost
 * little against LZ4 over a whole chunk, and they spare incompressible
 * pages the block format's growth (docs/stream-format.md). Encoding and
 * decoding run on the worker pool; frames go to the stream in address order
 * whatever the thread count, so output is reproducible.
 *
 * On a migration's memory channels raw pages need no copy: they go from the
 * guest's memory, each with a check of its own (FRAME_F_PAGE_CHECKS).
 */
#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checksum.h"
#include "macro.h"
#include "stream/memchunk.h"
#include "stream/stream-internal.h"
#include "unaligned.h"
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
        bool anon_private; /* the range's: untouched pages are zero (svemig_mem_range) */
        uint64_t pagemap[SVEMIG_STREAM_CHUNK_PAGES_MAX];
        uint8_t carried[BITMAP_BYTES_MAX];
        uint64_t done; /* bytes of the call's ranges up to this chunk's end, for progress */

        /* The encoded frame and what it holds. */
        LZ4_stream_t *lz4;
        uint8_t zero[BITMAP_BYTES_MAX], lz4_pages[BITMAP_BYTES_MAX];
        uint32_t lz4_sizes[SVEMIG_STREAM_CHUNK_PAGES_MAX];
        struct bytebuf out; /* room for the MemChunk's other fields, then its data */
        struct frame_out frame;
        uint64_t n_carried, n_zero, n_lz4;

        /* FRAME_F_PAGE_CHECKS: the data pages where they are, adjacent ones merged, and their checks. */
        uint64_t page_checks[SVEMIG_STREAM_CHUNK_PAGES_MAX];
        struct iovec data[SVEMIG_STREAM_CHUNK_PAGES_MAX / 2 + 1];
        unsigned n_data;
        size_t data_len;
};

/*
 * Kept by the writer from its first memory write to its end: a pre-copy
 * round or a snapshot in pieces would otherwise fault in megabytes of
 * fresh buffers on every call.
 */
struct memchunk_writer {
        int pagemap_fd; /* /proc/self/pagemap; -1: every page is read */
        uint32_t kernel_page_size;
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
        if (m->pagemap_fd >= 0)
                close(m->pagemap_fd);
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
        /* Without it, every page is read. */
        m->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        m->kernel_page_size = (uint32_t)sysconf(_SC_PAGESIZE);
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
                if (c->w->mem_sink) /* the grid from address 0 (stream_writer_set_memory_sink()) */
                        end = MIN(start + cp - (rg->gpa / ps + start) % cp, n);
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
                j->anon_private = rg->anon_private;
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

/* A data page left where it is (FRAME_F_PAGE_CHECKS): checked now, sent from there. */
static void put_in_place(struct wjob *j, const uint8_t *p, uint32_t ps)
{
        struct iovec *last = j->n_data ? &j->data[j->n_data - 1] : NULL;

        j->page_checks[j->data_len / ps] = checksum64(p, ps);
        if (last && (const uint8_t *)last->iov_base + last->iov_len == p)
                last->iov_len += ps;
        else
                j->data[j->n_data++] = (struct iovec){(void *)p, ps};
        j->data_len += ps;
}

#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_SWAPPED (1ull << 62)

/*
 * Whether j's pages can be told untouched by /proc/self/pagemap (one entry
 * per kernel page: the stream's pages must be the kernel's): j->pagemap
 * then holds their entries.
 */
static bool read_pagemap(const struct memchunk_writer *m, struct wjob *j, uint32_t ps)
{
        size_t len = (size_t)j->n_pages * sizeof(j->pagemap[0]);
        off_t at = (off_t)((uintptr_t)j->host / ps * sizeof(j->pagemap[0]));

        return j->anon_private && m->pagemap_fd >= 0 && m->kernel_page_size == ps &&
               pread(m->pagemap_fd, j->pagemap, len, at) == (ssize_t)len;
}

/* Never touched: reads as zero, and reading it would only make the kernel back it. */
static bool untouched(const struct wjob *j, bool have_pagemap, uint32_t i)
{
        return have_pagemap && !(j->pagemap[i] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED));
}

static int w_work(void *ctx, unsigned slot)
{
        struct wctx *c = ctx;
        struct wjob *j = &c->jobs[slot];
        const struct svemig_stream_info *info = &c->w->info;
        bool lz4 = c->w->lz4, in_place = c->w->mem_sink_page_checks && !lz4;
        Svemig__MemChunk m = SVEMIG__MEM_CHUNK__INIT;
        size_t bm = DIV_ROUND_UP(j->n_pages, 8), room = memchunk_fields_max(info->chunk_pages), dlen = 0,
               hlen, tlen;
        uint32_t ps = info->page_size;
        bool have_pagemap = read_pagemap(c->w->mem, j, ps);
        uint8_t *data, *head;

        /* The data is written straight after the room, never packed twice. */
        if (bytebuf_reserve(&j->out, room + (in_place ? 0 : (size_t)j->n_pages * ps)) < 0)
                return -ENOMEM;
        data = j->out.p + room;
        memset(j->zero, 0, bm);
        memset(j->lz4_pages, 0, bm);
        j->n_carried = j->n_zero = j->n_lz4 = 0;
        j->n_data = 0;
        j->data_len = 0;
        for (uint32_t i = 0; i < j->n_pages; i++) {
                const uint8_t *p = j->host + (size_t)i * ps;
                size_t z;

                if (!j->all && !bit_test(j->carried, i))
                        continue;
                j->n_carried++;
                if (untouched(j, have_pagemap, i) || page_is_zero(p, ps)) {
                        bit_set(j->zero, i);
                        j->n_zero++;
                        continue;
                }
                if (in_place) {
                        put_in_place(j, p, ps);
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
        if (j->data_len) {
                m.n_page_checks = j->data_len / ps;
                m.page_checks = j->page_checks;
                dlen = j->data_len;
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
        if (j->data_len)
                frame_seal_fields(&j->frame, SVEMIG_FRAME_MEMORY, FRAME_F_REQUIRED | FRAME_F_PAGE_CHECKS,
                                  FRAME_PAGE_CHECKS_MINOR, head, hlen + tlen, dlen);
        else /* a chunk with no LZ4 page is a 1.0 chunk, which 1.0 readers still read */
                frame_seal(&j->frame, SVEMIG_FRAME_MEMORY,
                           FRAME_F_REQUIRED | (j->n_lz4 ? FRAME_F_PAGE_LZ4 : 0),
                           j->n_lz4 ? FRAME_PAGE_LZ4_MINOR : 0, head, hlen + tlen + dlen);
        if (c->w->mem_sink) /* sent from here, so that the sink's channels fill in parallel */
                return c->w->mem_sink(c->w->mem_sink_data, &(struct memory_frame){.gpa = j->gpa,
                                                                                  .pages = j->n_carried,
                                                                                  .zero_pages = j->n_zero,
                                                                                  .out = &j->frame,
                                                                                  .data = j->data,
                                                                                  .n_data = j->n_data,
                                                                                  .data_len = j->data_len});
        return 0;
}

static int w_consume(void *ctx, unsigned slot, int rc)
{
        struct wctx *c = ctx;
        struct wjob *j = &c->jobs[slot];
        struct svemig_stream_writer *w = c->w;
        struct svemig_stream_stats *s = w->mem_sink ? &w->sink_stats : &w->stats;
        int r;

        if (rc < 0)
                return svemig_error_set(c->err, rc, "%s memory at 0x%llx: %s",
                                        w->mem_sink ? "sending" : "encoding", (unsigned long long)j->gpa,
                                        strerror(-rc));
        if (w->mem_sink) {
                s->frames++;
                s->bytes += FRAME_HEAD_SIZE + j->frame.len + j->data_len + FRAME_TAIL_SIZE;
        } else {
                r = stream_writer_emit(w, &j->frame, c->err);
                if (r < 0)
                        return r;
        }
        s->mem_chunks++;
        s->mem_pages += j->n_carried;
        s->zero_pages += j->n_zero;
        s->mem_stored += FRAME_HEAD_SIZE + j->frame.len + j->data_len + FRAME_TAIL_SIZE;
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
        struct bytebuf buf;
        struct memchunk_decoder dec;
        struct svemig_error err;
        struct memchunk_counts n;

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
                memchunk_decoder_done(&m->jobs[i].dec);
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
                memchunk_decoder_init(&m->jobs[i].dec);
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

static uint8_t *map_lookup(const struct svemig_mem_map *map, size_t n_map, unsigned slot, uint64_t gpa,
                           uint64_t size)
{
        for (size_t i = 0; i < n_map; i++) {
                const struct svemig_mem_map *m = &map[i];
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

/* Page i of a checked chunk: carried (all, without a bitmap), and of those, zero. */
static bool page_carried(const Svemig__MemChunk *m, uint32_t i)
{
        return !m->carried.len || bit_test(m->carried.data, i);
}

static bool page_zero(const Svemig__MemChunk *m, uint32_t i)
{
        return m->zero.len && bit_test(m->zero.data, i);
}

static int chunk_check(const struct svemig_stream_info *info, const Svemig__MemChunk *m, uint32_t flags,
                       uint64_t off, struct memchunk_counts *n, struct svemig_error *err)
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
        *n = (struct memchunk_counts){0};
        for (uint32_t i = 0; i < bm * 8; i++) {
                bool carried = m->carried.len ? bit_test(m->carried.data, i) : i < m->page_count;
                bool zero = page_zero(m, i);
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
        if (m->n_page_checks != ((flags & FRAME_F_PAGE_CHECKS) ? data : 0))
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: memory chunk gives %zu page checks for %llu data "
                                        "pages in a frame %s flag PAGE_CHECKS",
                                        (unsigned long long)off, m->n_page_checks, (unsigned long long)data,
                                        (flags & FRAME_F_PAGE_CHECKS) ? "with" : "without");
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
 * The marks' bitmaps (struct memchunk_marks; bit i: page i of the map).
 * With written, memory is known to be zero where no bit is set: a zero page
 * there needs neither a write nor a look. Words are updated atomically, for
 * threads that write pages of the same word.
 */
static bool written_test(const uint64_t *w, uint64_t page)
{
        return __atomic_load_n(&w[page / 64], __ATOMIC_RELAXED) & (1ull << (page % 64));
}

static void mark(uint64_t *w, uint64_t page, bool on)
{
        if (on)
                __atomic_fetch_or(&w[page / 64], 1ull << (page % 64), __ATOMIC_RELAXED);
        else
                __atomic_fetch_and(&w[page / 64], ~(1ull << (page % 64)), __ATOMIC_RELAXED);
}

/* A zero page into p (page 'page' of the map): written only where it may not be zero already. */
static void zero_page(uint8_t *p, uint32_t ps, uint64_t *written, uint64_t page)
{
        if (written) {
                if (written_test(written, page)) {
                        memset(p, 0, ps);
                        mark(written, page, false);
                }
                return;
        }
        /*
         * Only if it is not zero already: a page of fresh memory, as a
         * destination's, reads as the shared zero page, and writing it
         * would allocate and clear a page for nothing.
         */
        if (!page_is_zero(p, ps))
                memset(p, 0, ps);
}

/* A carried page has come, with data or zero (already in place), its check failed or not. */
static void page_came(uint8_t *p, uint32_t ps, const struct memchunk_marks *marks, uint64_t page, bool zero,
                      bool failed)
{
        uint64_t *written = marks ? marks->written : NULL;

        if (zero)
                zero_page(p, ps, written, page);
        else if (written)
                mark(written, page, true);
        if (marks && marks->unverified)
                mark(marks->unverified, page, failed);
}

/*
 * Writes the chunk's pages to dst, or with dst NULL only decompresses its
 * LZ4 pages (into a scratch page) so that a check finds what a restore would.
 */
static int chunk_apply(struct memchunk_decoder *d, const Svemig__MemChunk *m, uint32_t ps, uint8_t *dst,
                       const struct memchunk_marks *marks, uint64_t first_page, uint64_t offset,
                       struct svemig_error *err)
{
        const uint8_t *src = m->data.data;
        size_t li = 0;

        if (!dst && m->n_lz4_sizes && bytebuf_reserve(&d->page, ps) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (uint32_t i = 0; i < m->page_count; i++) {
                uint8_t *p = dst ? dst + (size_t)i * ps : NULL;

                if (!page_carried(m, i))
                        continue;
                if (p)
                        page_came(p, ps, marks, first_page + i, page_zero(m, i), false);
                if (page_zero(m, i))
                        continue;
                if (m->lz4_pages.len && bit_test(m->lz4_pages.data, i)) {
                        uint32_t z = m->lz4_sizes[li++];

                        if (LZ4_decompress_safe((const char *)src, (char *)(p ? p : d->page.p), (int)z,
                                                (int)ps) != (int)ps)
                                return svemig_error_set(err, EBADMSG,
                                                        "offset %llu: the LZ4 block of page 0x%llx does not "
                                                        "decompress to a page",
                                                        (unsigned long long)offset,
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

/* Checks the frame's payload, and decodes and checks its MemChunk (in d's arena, until d's next frame). */
static int chunk_open(struct memchunk_decoder *d, const struct svemig_stream_info *info,
                      const struct frame_head *h, const uint8_t *stored, uint64_t offset,
                      Svemig__MemChunk **out, struct memchunk_counts *n, struct svemig_error *err)
{
        const uint8_t *raw;
        int k;

        if (bytebuf_reserve(&d->raw, (size_t)h->raw_len + 1) < 0 ||
            pbarena_reset(&d->arena, pbarena_budget(h->raw_len)) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        k = frame_payload_open(h, stored, d->raw.p, &raw, offset, err);
        if (k < 0)
                return k;
        *out = svemig__mem_chunk__unpack(&d->arena.allocator, h->raw_len, raw);
        if (!*out)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: the MEMORY frame is not a valid MemChunk message",
                                        (unsigned long long)offset);
        return chunk_check(info, *out, h->flags, offset, n, err);
}

static uint8_t *chunk_dst(const struct svemig_mem_map *map, size_t n_map, const Svemig__MemChunk *m,
                          uint32_t ps, uint64_t offset, struct svemig_error *err)
{
        uint8_t *dst = map_lookup(map, n_map, m->slot, m->gpa, (uint64_t)m->page_count * ps);

        if (!dst)
                svemig_error_set(err, ERANGE,
                                 "offset %llu: memory chunk [0x%llx, +0x%llx) of slot %u is outside the "
                                 "destination's memory",
                                 (unsigned long long)offset, (unsigned long long)m->gpa,
                                 (unsigned long long)m->page_count * ps, m->slot);
        return dst;
}

static int r_decode(struct rctx *c, struct rjob *j)
{
        const struct svemig_stream_info *info = &c->r->info;
        Svemig__MemChunk *m;
        uint8_t *dst;
        uint32_t ps = info->page_size;
        int k;

        k = chunk_open(&j->dec, info, &j->head, j->buf.p, j->offset, &m, &j->n, &j->err);
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
                return chunk_apply(&j->dec, m, ps, NULL, NULL, 0, j->offset, &j->err);
        dst = chunk_dst(c->map, c->n_map, m, ps, j->offset, &j->err);
        if (!dst)
                return -ERANGE;
        wait_earlier(c, j);
        return chunk_apply(&j->dec, m, ps, dst, NULL, 0, j->offset, &j->err);
}

/* Reads a varint at *p (before end); false if it runs past end or over 10 bytes. */
static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
        *v = 0;
        for (unsigned shift = 0; *p < end && shift < 70; shift += 7) {
                uint8_t b = *(*p)++;

                *v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80))
                        return true;
        }
        return false;
}

/*
 * Where the data field (6) of a MemChunk starts in its encoding, from the
 * first bytes of it: the offset of its tag in *tag_off, of its content in
 * *data_off, and its length. Only the top-level tags are walked (each
 * field's length skipped); false when the field is not in those bytes.
 */
static bool find_data(const uint8_t *buf, size_t len, size_t *tag_off, size_t *data_off, uint64_t *data_len)
{
        const uint8_t *p = buf, *end = buf + len;

        while (p < end) {
                const uint8_t *tag_at = p;
                uint64_t tag, skip;

                if (!get_varint(&p, end, &tag))
                        return false;
                switch (tag & 7) {
                case 0:
                        if (!get_varint(&p, end, &skip))
                                return false;
                        continue;
                case 1:
                        skip = 8;
                        break;
                case 5:
                        skip = 4;
                        break;
                case 2:
                        if (!get_varint(&p, end, &skip))
                                return false;
                        if (tag >> 3 == 6) {
                                *tag_off = (size_t)(tag_at - buf);
                                *data_off = (size_t)(p - buf);
                                *data_len = skip;
                                return true;
                        }
                        break;
                default:
                        return false;
                }
                if (skip > (uint64_t)(end - p))
                        return false;
                p += skip;
        }
        return false;
}

int memchunk_layout(struct memchunk_decoder *d, const struct svemig_stream_info *info,
                    const struct svemig_mem_map *map, const struct frame_head *h, const uint8_t *head,
                    size_t head_len, uint64_t offset, struct memchunk_layout *out, struct svemig_error *err)
{
        size_t tag_off, data_off;
        uint64_t data_len;
        Svemig__MemChunk *m;
        int k;

        if (h->type != SVEMIG_FRAME_MEMORY || (h->flags & (FRAME_F_LZ4 | FRAME_F_PAGE_LZ4)))
                return 0;
        if (!find_data(head, MIN(head_len, (size_t)h->raw_len), &tag_off, &data_off, &data_len) ||
            data_off + data_len != h->raw_len)
                return 0;
        if (pbarena_reset(&d->arena, pbarena_budget(tag_off)) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        /* The fields before the data: a MemChunk of its own, whose data the caller puts in place. */
        m = svemig__mem_chunk__unpack(&d->arena.allocator, tag_off, head);
        if (!m)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: the MEMORY frame is not a valid MemChunk message",
                                        (unsigned long long)offset);
        m->data.len = data_len;
        k = chunk_check(info, m, h->flags, offset, &out->n, err);
        if (k < 0)
                return k;
        out->dst = chunk_dst(map, 1, m, info->page_size, offset, err);
        if (!out->dst)
                return -ERANGE;
        out->first_page = (uint64_t)(out->dst - (uint8_t *)map->host) / info->page_size;
        out->m = m;
        out->data_off = data_off;
        out->page_size = info->page_size;
        return 1;
}

size_t memchunk_layout_iov(const struct memchunk_layout *l, struct iovec *iov, size_t max)
{
        const Svemig__MemChunk *m = l->m;
        size_t n = 0;

        for (uint32_t i = 0; i < m->page_count; i++) {
                uint8_t *p = l->dst + (size_t)i * l->page_size;

                if (!page_carried(m, i) || page_zero(m, i))
                        continue;
                if (n && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == p)
                        iov[n - 1].iov_len += l->page_size;
                else if (n < max)
                        iov[n++] = (struct iovec){p, l->page_size};
                else
                        return 0;
        }
        return n;
}

unsigned memchunk_layout_verify(const struct memchunk_layout *l, uint8_t *failed)
{
        const Svemig__MemChunk *m = l->m;
        unsigned n = 0;
        size_t k = 0;

        memset(failed, 0, DIV_ROUND_UP(m->page_count, 8));
        for (uint32_t i = 0; i < m->page_count; i++) {
                if (!page_carried(m, i) || page_zero(m, i))
                        continue;
                if (checksum64(l->dst + (size_t)i * l->page_size, l->page_size) != m->page_checks[k++]) {
                        bit_set(failed, i);
                        n++;
                }
        }
        return n;
}

void memchunk_layout_done(const struct memchunk_layout *l, const struct memchunk_marks *marks,
                          const uint8_t *failed)
{
        const Svemig__MemChunk *m = l->m;

        for (uint32_t i = 0; i < m->page_count; i++)
                if (page_carried(m, i))
                        page_came(l->dst + (size_t)i * l->page_size, l->page_size, marks, l->first_page + i,
                                  page_zero(m, i), failed && bit_test(failed, i));
}

void memchunk_decoder_init(struct memchunk_decoder *d)
{
        *d = (struct memchunk_decoder){0};
        pbarena_init(&d->arena);
}

void memchunk_decoder_done(struct memchunk_decoder *d)
{
        bytebuf_done(&d->raw);
        bytebuf_done(&d->page);
        pbarena_done(&d->arena);
}

int memchunk_apply_frame(struct memchunk_decoder *d, const struct svemig_stream_info *info,
                         const struct svemig_mem_map *map, const struct memchunk_marks *marks,
                         const struct frame_head *h, const uint8_t *stored, uint64_t offset,
                         struct memchunk_counts *n, struct svemig_error *err)
{
        Svemig__MemChunk *m;
        uint8_t *dst;
        int k;

        k = chunk_open(d, info, h, stored, offset, &m, n, err);
        if (k < 0)
                return k;
        dst = chunk_dst(map, 1, m, info->page_size, offset, err);
        if (!dst)
                return -ERANGE;
        return chunk_apply(d, m, info->page_size, dst, marks,
                           (uint64_t)(dst - (uint8_t *)map->host) / info->page_size, offset, err);
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
        s->mem_pages += j->n.carried;
        s->zero_pages += j->n.zero;
        s->lz4_pages += j->n.lz4;
        s->mem_stored += FRAME_HEAD_SIZE + j->head.stored_len + FRAME_TAIL_SIZE;
        if (j->n.lz4 || (j->head.flags & FRAME_F_LZ4))
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
