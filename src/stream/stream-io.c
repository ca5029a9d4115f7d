/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The core of a stream writer and reader: frames out with the digest and
 * counts, frames in with their kinds and limits, and the first failure.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "checksum.h"
#include "iov.h"
#include "macro.h"
#include "stream/stream-internal.h"
#include "unaligned.h"

int stream_fail(struct stream_failure *f, int r, struct svemig_error *err)
{
        if (f->code == 0) {
                f->code = abs(r);
                snprintf(f->msg, sizeof(f->msg), "%s", svemig_error_str(err, r));
        }
        return -abs(r);
}

int stream_check(const struct stream_failure *f, struct svemig_error *err)
{
        if (f->code == 0)
                return 0;
        return svemig_error_set(err, f->code, "%s", f->msg);
}

const struct svemig_stream_slot *stream_find_slot(const struct svemig_stream_info *info, unsigned id)
{
        for (size_t i = 0; i < info->n_slots; i++)
                if (info->slots[i].id == id)
                        return &info->slots[i];
        return NULL;
}

int stream_pool(struct workpool **pool, unsigned n_threads, struct svemig_error *err)
{
        int r;

        if (*pool)
                return 0;
        r = workpool_new(n_threads, pool);
        if (r < 0)
                return svemig_error_set(err, r, "cannot start the stream's worker threads: %s",
                                        strerror(-r));
        return 0;
}

static int write_all(int fd, struct iovec *iov, int iovcnt)
{
        size_t n = (size_t)iovcnt;

        while (n > 0) {
                ssize_t k = writev(fd, iov, (int)n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                struct pollfd p = {.fd = fd, .events = POLLOUT};
                                (void)poll(&p, 1, -1);
                                continue;
                        }
                        return negative_errno();
                }
                iov_advance(&iov, &n, (size_t)k);
        }
        return 0;
}

/* Writes bytes that count towards the digest. */
int stream_writer_put(struct svemig_stream_writer *w, struct iovec *iov, int n, struct svemig_error *err)
{
        uint64_t total = 0;
        int r;

        for (int i = 0; i < n; i++) {
                stream_digest_update(w->digest, w->info.digest, iov[i].iov_base, iov[i].iov_len);
                total += iov[i].iov_len;
        }
        r = write_all(w->fd, iov, n);
        if (r < 0)
                return stream_fail(&w->failure,
                                   svemig_error_set(err, r, "writing the stream at offset %llu failed: %s",
                                                    (unsigned long long)w->stats.bytes, strerror(-r)),
                                   err);
        w->stats.bytes += total;
        return 0;
}

int stream_writer_emit(struct svemig_stream_writer *w, const struct frame_out *f, struct svemig_error *err)
{
        struct iovec iov[3];
        int r;

        frame_iov(f, iov);
        r = stream_writer_put(w, iov, 3, err);
        if (r == 0)
                w->stats.frames++;
        return r;
}

void stream_digest_update(XXH3_state_t *st, enum svemig_digest d, const void *p, size_t n)
{
        if (d == SVEMIG_DIGEST_XXH3_64)
                XXH3_64bits_update(st, p, n);
        else
                XXH3_128bits_update(st, p, n);
}

int stream_writer_put_frame(struct svemig_stream_writer *w, uint16_t type, bool required,
                            uint16_t since_minor, const uint8_t *payload, size_t len,
                            struct svemig_error *err)
{
        struct frame_out f;

        frame_build(&f, type, required, payload, len, false, NULL);
        put_le16(f.head + 2, since_minor);
        put_le32(f.head + 16, XXH32(f.head, 16, FRAME_HEAD_SEED));
        return stream_writer_emit(w, &f, err);
}

void stream_digest_value(XXH3_state_t *st, enum svemig_digest d, uint8_t out[16], unsigned *len)
{
        if (d == SVEMIG_DIGEST_XXH3_64) {
                XXH64_canonicalFromHash((XXH64_canonical_t *)out, XXH3_64bits_digest(st));
                *len = 8;
        } else {
                XXH128_canonicalFromHash((XXH128_canonical_t *)out, XXH3_128bits_digest(st));
                *len = 16;
        }
}

void stream_digest_reset(XXH3_state_t *st, enum svemig_digest d)
{
        if (d == SVEMIG_DIGEST_XXH3_64)
                XXH3_64bits_reset(st);
        else
                XXH3_128bits_reset(st);
}

void stream_writer_set_memory_sink(struct svemig_stream_writer *w, stream_memory_sink_fn fn, void *userdata,
                                   bool page_checks)
{
        w->mem_sink = fn;
        w->mem_sink_data = userdata;
        w->mem_sink_page_checks = fn && page_checks;
}

const struct svemig_stream_stats *stream_writer_sink_stats(const struct svemig_stream_writer *w)
{
        return &w->sink_stats;
}

/* Reads up to n bytes, stopping early only at the end of the stream; *got says how many. */
static int reader_fill(struct svemig_stream_reader *r, void *buf, size_t n, size_t *got)
{
        *got = 0;
        while (*got < n) {
                ssize_t k = read(r->fd, (uint8_t *)buf + *got, n - *got);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                struct pollfd p = {.fd = r->fd, .events = POLLIN};
                                (void)poll(&p, 1, -1);
                                continue;
                        }
                        return negative_errno();
                }
                if (k == 0)
                        break;
                *got += (size_t)k;
        }
        return 0;
}

/* Reads exactly n bytes, or says where and inside what the stream ended. */
int stream_reader_get(struct svemig_stream_reader *r, void *buf, size_t n, const char *what,
                      struct svemig_error *err)
{
        size_t got;
        int k = reader_fill(r, buf, n, &got);

        if (k < 0)
                return svemig_error_set(err, k, "reading the stream at offset %llu failed: %s",
                                        (unsigned long long)(r->offset + got), strerror(-k));
        if (got < n)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: the stream is truncated: it ends %s (%zu of %zu bytes "
                                        "there)",
                                        (unsigned long long)(r->offset + got), what, got, n);
        r->offset += n;
        return 0;
}

static const struct frame_kind *reader_kind(const struct svemig_stream_reader *r, uint16_t type)
{
        for (size_t i = 0; i < r->n_kinds; i++)
                if (r->kinds[i].type == type)
                        return &r->kinds[i];
        return NULL;
}

/* The most a frame of a known type may hold decompressed. */
static uint32_t frame_raw_limit(const struct svemig_stream_reader *r, uint16_t type)
{
        switch (type) {
        case SVEMIG_FRAME_MEMORY:
                return (uint32_t)memchunk_raw_max(r->info.page_size, r->info.chunk_pages);
        case SVEMIG_FRAME_TRAILER:
                return TRAILER_RAW_MAX;
        default:
                return SVEMIG_STREAM_FRAME_MAX;
        }
}

int stream_reader_read_frame(struct svemig_stream_reader *r, struct svemig_error *err)
{
        for (;;) {
                uint64_t off = r->offset;
                uint8_t head[FRAME_HEAD_SIZE];
                struct frame_head h;
                const struct frame_kind *known;
                size_t got = 0;
                int k;

                /* A clean end between frames is still a truncation: the trailer is missing. */
                k = reader_fill(r, head, FRAME_HEAD_SIZE, &got);
                if (k < 0)
                        return svemig_error_set(err, k, "reading the stream at offset %llu failed: %s",
                                                (unsigned long long)off, strerror(-k));
                if (got == 0)
                        return svemig_error_set(
                                err, EBADMSG,
                                "offset %llu: the stream is truncated: it ends after %llu frames, "
                                "without a trailer",
                                (unsigned long long)off, (unsigned long long)r->stats.frames);
                if (got < FRAME_HEAD_SIZE)
                        return svemig_error_set(
                                err, EBADMSG,
                                "offset %llu: the stream is truncated: it ends inside a frame head "
                                "(%zu of %u bytes there)",
                                (unsigned long long)off, got, FRAME_HEAD_SIZE);
                r->offset += FRAME_HEAD_SIZE;
                k = frame_head_parse(head, &h, off, err);
                if (k < 0)
                        return k;

                known = frame_known_kind(h.type);
                if (!known && (h.flags & FRAME_F_REQUIRED)) {
                        const struct frame_kind *fk = reader_kind(r, h.type);
                        return svemig_error_set(
                                err, EPROTO,
                                "offset %llu: frame type %u%s%s%s is required and was introduced "
                                "in stream format v%u.%u; this svemig reads v%u.%u: upgrade "
                                "svemig to read it",
                                (unsigned long long)off, h.type, fk ? " (\"" : "", fk ? fk->name : "",
                                fk ? "\")" : "", SVEMIG_STREAM_MAJOR, fk ? fk->since_minor : h.since_minor,
                                SVEMIG_STREAM_MAJOR, SVEMIG_STREAM_MINOR);
                }
                if (known && (h.flags & FRAME_F_PAGE_LZ4) && h.type != SVEMIG_FRAME_MEMORY)
                        return svemig_error_set(
                                err, EBADMSG,
                                "offset %llu: a %s frame sets flag PAGE_LZ4, which only MEMORY "
                                "frames may set",
                                (unsigned long long)off, known->name);
                if (known && h.raw_len > frame_raw_limit(r, h.type))
                        return svemig_error_set(
                                err, E2BIG, "offset %llu: a %s frame of %u bytes, over its limit of %u",
                                (unsigned long long)off, known->name, h.raw_len, frame_raw_limit(r, h.type));

                if (h.type == SVEMIG_FRAME_TRAILER) {
                        unsigned n;
                        stream_digest_value(r->digest, r->info.digest, r->trailer_digest, &n);
                } else {
                        stream_digest_update(r->digest, r->info.digest, head, FRAME_HEAD_SIZE);
                }
                if (bytebuf_reserve(&r->buf, (size_t)h.stored_len + FRAME_TAIL_SIZE) < 0)
                        return svemig_error_set(err, ENOMEM, "out of memory");
                k = stream_reader_get(r, r->buf.p, (size_t)h.stored_len + FRAME_TAIL_SIZE,
                                      known ? "inside a frame payload" : "inside an unknown frame", err);
                if (k < 0)
                        return k;
                if (h.type != SVEMIG_FRAME_TRAILER) {
                        stream_digest_update(r->digest, r->info.digest, r->buf.p,
                                             (size_t)h.stored_len + FRAME_TAIL_SIZE);
                        r->stats.frames++;
                }
                if (!known) {
                        /* An optional frame from a newer minor: check it, count it, pass it over. */
                        uint64_t want = get_le64(r->buf.p + h.stored_len),
                                 have = checksum64(r->buf.p, h.stored_len);
                        if (want != have)
                                return svemig_error_set(
                                        err, EBADMSG,
                                        "offset %llu: optional frame type %u: payload checksum "
                                        "mismatch: the stream is corrupt",
                                        (unsigned long long)off, h.type);
                        r->stats.skipped++;
                        continue;
                }
                if (h.type == SVEMIG_FRAME_VCPU)
                        r->stats.vcpus++;
                else if (h.type == SVEMIG_FRAME_MEMORY)
                        r->stats.mem_chunks++;
                r->head = h;
                r->head_offset = off;
                r->pending = true;
                r->pending_seen = false;
                return h.type;
        }
}
