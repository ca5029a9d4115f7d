/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What src/stream.c (header, framing, vcpus, trailer) shares with
 * src/memchunk.c (memory chunks on the worker pool). The byte layout is in
 * docs/stream-format.md.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <xxhash.h>

#include "pbarena.h"
#include "stream.pb-c.h"
#include "svemig/stream.h"
#include "workpool.h"

/* The preamble: magic, u16 major, u16 minor, u32 header length. */
#define STREAM_MAGIC_SIZE    8u
#define STREAM_PREAMBLE_SIZE 16u
extern const uint8_t stream_magic[STREAM_MAGIC_SIZE];

/* A frame: 20-byte head, payload, 8-byte XXH3-64 of the stored payload. */
#define FRAME_HEAD_SIZE 20u
#define FRAME_TAIL_SIZE 8u
#define FRAME_HEAD_SEED 0x5356454du /* "SVEM": the XXH32 seed of the head check */

#define FRAME_F_REQUIRED (1u << 0)
#define FRAME_F_LZ4      (1u << 1)
#define FRAME_F_PAGE_LZ4 (1u << 2) /* 1.1, MEMORY only: the MemChunk holds pages as LZ4 blocks */
/*
 * MEMORY, a migration's memory channels only (negotiated, never in a stream
 * file): each data page has its own check (MemChunk.page_checks) and the
 * frame's check covers the payload before the pages. The source can then
 * send pages straight from a running guest's memory: a page the guest
 * writes meanwhile fails only its own check, and comes again in the next
 * pass, as every page written after a pass's dirty-log read does.
 */
#define FRAME_F_PAGE_CHECKS  (1u << 3)
#define FRAME_F_KNOWN        (FRAME_F_REQUIRED | FRAME_F_LZ4 | FRAME_F_PAGE_LZ4 | FRAME_F_PAGE_CHECKS)
#define FRAME_PAGE_LZ4_MINOR 1u /* the since_minor of frames that set FRAME_F_PAGE_LZ4 */
/* Channel frames only: the stream's version stays where it is (1.1). */
#define FRAME_PAGE_CHECKS_MINOR 1u
#define FRAME_F_MUST_KNOW       0x0000ffffu /* unknown bits here are refused; above, ignored */

struct frame_head {
        uint16_t type;
        uint16_t since_minor;
        uint32_t flags;
        uint32_t stored_len;
        uint32_t raw_len;
};

/* A frame ready to write: head, payload (raw, or LZ4 in a scratch buffer) and tail. */
struct frame_out {
        uint8_t head[FRAME_HEAD_SIZE];
        const uint8_t *payload;
        size_t len;
        uint8_t tail[FRAME_TAIL_SIZE];
};

/* The frame as it goes out: head, payload, tail. */
static inline void frame_iov(const struct frame_out *f, struct iovec iov[3])
{
        iov[0] = (struct iovec){(void *)f->head, FRAME_HEAD_SIZE};
        iov[1] = (struct iovec){(void *)f->payload, f->len};
        iov[2] = (struct iovec){(void *)f->tail, FRAME_TAIL_SIZE};
}

/* Scratch bytes frame_build() needs to try LZ4 on raw_len bytes. */
size_t frame_lz4_bound(size_t raw_len);

/*
 * Frames raw_len bytes of payload. With lz4, compresses them into zbuf
 * (frame_lz4_bound(raw_len) bytes) and keeps that only if it is smaller.
 */
void frame_build(struct frame_out *f, uint16_t type, bool required, const uint8_t *raw, size_t raw_len,
                 bool lz4, uint8_t *zbuf);

/* Frames a payload stored as it is (raw_len = len), with the given flags and since_minor. */
void frame_seal(struct frame_out *f, uint16_t type, uint32_t flags, uint16_t since_minor,
                const uint8_t *payload, size_t len);
/*
 * Frames len bytes of fields followed by data_len bytes kept elsewhere
 * (FRAME_F_PAGE_CHECKS: the check covers the fields only).
 */
void frame_seal_fields(struct frame_out *f, uint16_t type, uint32_t flags, uint16_t since_minor,
                       const uint8_t *fields, size_t len, size_t data_len);

/* Decodes and checks a frame head read at 'offset'. */
int frame_head_parse(const uint8_t head[FRAME_HEAD_SIZE], struct frame_head *h, uint64_t offset,
                     struct svemig_error *err);

/*
 * Checks a frame's payload checksum and decompresses it. 'stored' holds
 * stored_len payload bytes and the tail; scratch has raw_len bytes of room.
 * *raw points at the raw payload (in 'stored' or in scratch).
 */
int frame_payload_open(const struct frame_head *h, const uint8_t *stored, uint8_t *scratch,
                       const uint8_t **raw, uint64_t offset, struct svemig_error *err);

static inline void put_le16(uint8_t *p, uint16_t v)
{
        p[0] = v;
        p[1] = v >> 8;
}
static inline void put_le32(uint8_t *p, uint32_t v)
{
        for (unsigned i = 0; i < 4; i++)
                p[i] = v >> (8 * i);
}
static inline void put_le64(uint8_t *p, uint64_t v)
{
        for (unsigned i = 0; i < 8; i++)
                p[i] = v >> (8 * i);
}
static inline uint16_t get_le16(const uint8_t *p)
{
        return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t get_le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_le64(const uint8_t *p)
{
        return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* A grow-on-demand byte buffer, bounded by its callers. */
struct bytebuf {
        uint8_t *p;
        size_t cap;
};
int bytebuf_reserve(struct bytebuf *b, size_t n);
void bytebuf_done(struct bytebuf *b);

/* A spent reader or writer remembers its first error and returns it again. */
struct stream_failure {
        int code;
        char msg[SVEMIG_ERROR_MSG_MAX];
};
int stream_fail(struct stream_failure *f, int r, struct svemig_error *err);
int stream_check(const struct stream_failure *f, struct svemig_error *err);

const struct svemig_stream_slot *stream_find_slot(const struct svemig_stream_info *info, unsigned id);

/* memchunk.c's jobs and buffers, kept by a writer or reader across memory calls. */
struct memchunk_writer;
struct memchunk_reader;

/* What one MEMORY frame carried. */
struct memchunk_counts {
        uint64_t carried, zero, lz4;
};

/* A MEMORY frame decoder's scratch, kept from frame to frame. */
struct memchunk_decoder {
        struct bytebuf raw, page;
        struct pbarena arena;
};

void memchunk_decoder_init(struct memchunk_decoder *d);
void memchunk_decoder_done(struct memchunk_decoder *d);

/*
 * A destination's marks on its pages, one bit per page of the map, each
 * optional; words are updated atomically (channels share words).
 *   written: the pages that may hold data, in memory that is zero elsewhere.
 *   unverified: the pages whose last copy failed its own check
 *   (FRAME_F_PAGE_CHECKS); a later copy clears the bit.
 */
struct memchunk_marks {
        uint64_t *written;
        uint64_t *unverified;
};

/*
 * Checks and decodes one MEMORY frame read at offset (its head parsed into h;
 * stored holds its payload and check) and writes its pages into map's
 * memory. For frames that do not come through a reader (a migration's
 * channels). marks (optional) are kept up to date.
 */
int memchunk_apply_frame(struct memchunk_decoder *d, const struct svemig_stream_info *info,
                         const struct svemig_mem_map *map, const struct memchunk_marks *marks,
                         const struct frame_head *h, const uint8_t *stored, uint64_t offset,
                         struct memchunk_counts *n, struct svemig_error *err);

/*
 * A raw MEMORY frame received straight into the guest (a migration's
 * channels): its fields come first, then its pages go where they belong,
 * with no copy between.
 */
struct memchunk_layout {
        const Svemig__MemChunk *m; /* the fields before the data, in the decoder's arena */
        size_t data_off;           /* payload bytes before the pages */
        uint8_t *dst;              /* the chunk's first page, in the destination */
        uint64_t first_page;       /* its index in the map */
        uint32_t page_size;
        struct memchunk_counts n;
};

/*
 * From the first head_len bytes of a MEMORY frame's payload (head parsed
 * into h): 1 and *out when the frame can be laid out (raw pages, its data
 * field last and within those bytes), its fields checked as a whole frame's
 * are; 0 when it must be read whole (memchunk_apply_frame()); -errno for a
 * frame that is bad.
 */
int memchunk_layout(struct memchunk_decoder *d, const struct svemig_stream_info *info,
                    const struct svemig_mem_map *map, const struct frame_head *h, const uint8_t *head,
                    size_t head_len, uint64_t offset, struct memchunk_layout *out, struct svemig_error *err);
/* Where its data pages go, adjacent ones merged: the iovecs' count, 0 if more than max. */
size_t memchunk_layout_iov(const struct memchunk_layout *l, struct iovec *iov, size_t max);
/*
 * FRAME_F_PAGE_CHECKS, once its pages are in: each data page against its
 * check; failed (a bit per page of the chunk) says which did not match, and
 * the return value how many.
 */
unsigned memchunk_layout_verify(const struct memchunk_layout *l, uint8_t *failed);
/*
 * Once its pages are in: its zero pages cleared where they may not be zero,
 * and marks kept (as above); failed (optional): memchunk_layout_verify()'s.
 */
void memchunk_layout_done(const struct memchunk_layout *l, const struct memchunk_marks *marks,
                          const uint8_t *failed);
/* A MemChunk's fields before its data, at most: what a reader must see to lay a frame out. */
size_t memchunk_fields_max(uint32_t chunk_pages);

/* A MEMORY frame handed to a writer's memory sink. */
struct memory_frame {
        uint64_t gpa;                /* its first page */
        uint64_t pages, zero_pages;  /* carried, and of them all zero */
        const struct frame_out *out; /* head, payload, tail */
        /* FRAME_F_PAGE_CHECKS: the pages, after out's payload, where they are in the guest's memory. */
        const struct iovec *data;
        unsigned n_data;
        size_t data_len;
};

/*
 * Takes a MEMORY frame the writer would have written to its stream; called
 * from the encoding workers, several at once. 0 or -errno (the writer then
 * fails as for a write error; the sink keeps its own reason).
 */
typedef int (*stream_memory_sink_fn)(void *userdata, const struct memory_frame *f);

/*
 * From now on MEMORY frames go to fn, not to the stream: a live migration's
 * memory channels. They are then counted in stream_writer_sink_stats(), not
 * in the stream's own stats or trailer. Chunks are cut on a grid of
 * chunk_pages pages from guest-physical address 0, so that one page always
 * falls in the chunk of the same grid cell. fn NULL: back to the stream.
 * page_checks: frames without LZ4 pages go with FRAME_F_PAGE_CHECKS, their
 * pages not copied but handed over where they are (memory_frame.data).
 */
void stream_writer_set_memory_sink(struct svemig_stream_writer *w, stream_memory_sink_fn fn, void *userdata,
                                   bool page_checks);
const struct svemig_stream_stats *stream_writer_sink_stats(const struct svemig_stream_writer *w);

struct svemig_stream_writer {
        int fd;
        struct stream_failure failure;
        struct svemig_stream_info info;
        struct svemig_stream_slot *slots;
        XXH3_state_t *digest;
        struct svemig_stream_stats stats;
        uint8_t vcpu_seen[SVEMIG_STREAM_VCPUS_MAX / 8];
        unsigned n_threads;
        svemig_stream_progress_fn progress;
        void *userdata;
        struct workpool *pool;       /* on the first memory write */
        struct memchunk_writer *mem; /* memchunk.c's jobs and buffers, from the first memory write */
        struct bytebuf pack, zbuf;   /* for vcpu frames */
        bool lz4;                    /* compress the frames written now (svemig_stream_writer_set_lz4()) */
        bool finished;
        stream_memory_sink_fn mem_sink; /* stream_writer_set_memory_sink() */
        void *mem_sink_data;
        bool mem_sink_page_checks;
        struct svemig_stream_stats sink_stats;
};

/*
 * Decodes a VCPU frame's stored payload and check (read at offset, head
 * parsed into h): what svemig_stream_read_vcpu() does but for the check
 * that no vcpu comes twice, with the caller's scratch, on any thread.
 */
int stream_vcpu_decode(const struct svemig_stream_info *info, const struct frame_head *h,
                       const uint8_t *stored, uint64_t offset, struct bytebuf *scratch,
                       struct pbarena *arena, struct vcpu_state *st, struct svemig_error *err);

/*
 * Takes the pending VCPU frame whole, to decode it elsewhere
 * (stream_vcpu_decode()): its stored payload and check move into *buf (the
 * reader keeps buf's old memory). The caller checks that no vcpu comes twice.
 */
int stream_reader_take_vcpu(struct svemig_stream_reader *r, struct bytebuf *buf, struct frame_head *h,
                            uint64_t *offset, struct svemig_error *err);

/*
 * The VCPU frame of st, for a writer with this header and compression: what
 * svemig_stream_write_vcpu() writes, built on any thread into the caller's
 * buffers (f points into them), to be written with stream_writer_put_vcpu().
 */
int stream_vcpu_encode(const struct svemig_stream_info *info, bool lz4, const struct vcpu_state *st,
                       struct bytebuf *pack, struct bytebuf *zbuf, struct frame_out *f,
                       struct svemig_error *err);
int stream_writer_put_vcpu(struct svemig_stream_writer *w, unsigned index, const struct frame_out *f,
                           struct svemig_error *err);

/* Writes a frame, adding it to the digest and the counts. */
int stream_writer_emit(struct svemig_stream_writer *w, const struct frame_out *f, struct svemig_error *err);

/*
 * Writes a frame of any type: how tests make the frames of a newer minor
 * (since_minor) that this version does not know.
 */
int stream_writer_put_frame(struct svemig_stream_writer *w, uint16_t type, bool required,
                            uint16_t since_minor, const uint8_t *payload, size_t len,
                            struct svemig_error *err);

struct frame_kind {
        uint16_t type, since_minor;
        bool required;
        char name[64];
};

struct svemig_stream_reader {
        int fd;
        uint64_t offset;
        struct stream_failure failure;
        struct svemig_stream_info info;
        struct svemig_stream_slot *slots;
        struct vcpu_reg *id_regs;
        uint8_t *id_reg_blob;
        struct frame_kind kinds[SVEMIG_STREAM_FRAME_KINDS_MAX];
        size_t n_kinds;
        XXH3_state_t *digest;
        struct svemig_stream_stats stats;
        uint8_t vcpu_seen[SVEMIG_STREAM_VCPUS_MAX / 8];

        /* The frame svemig_stream_next() returned, read but not decoded. */
        bool pending;
        bool pending_seen; /* returned by svemig_stream_next() (else read ahead by a memory read) */
        struct frame_head head;
        uint64_t head_offset;
        struct bytebuf buf; /* stored payload + tail */
        struct bytebuf raw; /* decompressed payload */
        struct pbarena arena;
        uint8_t trailer_digest[16]; /* the digest of every byte before the trailer */
        bool done;
        uint64_t mem_decoded; /* MEMORY frames decoded: pages are counted only then */

        unsigned n_threads;
        struct workpool *pool;       /* on the first memory read */
        struct memchunk_reader *mem; /* memchunk.c's jobs and buffers, from the first memory read */
};

/*
 * Reads the next frame the caller can see into r->head/r->buf (payload not
 * yet checked), skipping unknown optional frames and refusing unknown
 * required ones. Returns its type.
 */
int stream_reader_read_frame(struct svemig_stream_reader *r, struct svemig_error *err);

/* Adds bytes to the stream digest. */
void stream_digest_update(XXH3_state_t *st, enum svemig_digest d, const void *p, size_t n);

/* Creates the pool on first use. */
int stream_pool(struct workpool **pool, unsigned n_threads, struct svemig_error *err);

/* The MEMORY frame's worst case, for limits: payload bytes of a full chunk. */
size_t memchunk_raw_max(uint32_t page_size, uint32_t chunk_pages);

/* Frees memchunk.c's state of a writer or reader. NULL is fine. */
void memchunk_writer_free(struct memchunk_writer *m);
void memchunk_reader_free(struct memchunk_reader *m);
