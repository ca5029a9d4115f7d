/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The stream's framing (docs/stream-format.md): the preamble's magic, a
 * frame's head, payload and check, and the frame types this version knows.
 * The lowest layer of the stream: it knows nothing of readers or writers.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "svemig/error.h"

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

/* A frame type: its name, whether a reader must know it, and the minor that introduced it. */
struct frame_kind {
        uint16_t type, since_minor;
        bool required;
        char name[64];
};

/* The frame types of this version, with the minor that introduced each. */
#define FRAME_KINDS_N       8
#define FRAME_DEVICES_MINOR 2u /* VGIC, TIMERS, CONSOLE, VIRTIO */
extern const struct frame_kind frame_kinds[FRAME_KINDS_N];

/* This version's kind of a frame type, or NULL. */
const struct frame_kind *frame_known_kind(uint32_t type);

/* The most a TRAILER frame may hold decompressed. */
#define TRAILER_RAW_MAX 4096u

/* A MemChunk's fields before its data, at most: what a reader must see to lay a frame out. */
size_t memchunk_fields_max(uint32_t chunk_pages);
/* The MEMORY frame's worst case, for limits: payload bytes of a full chunk. */
size_t memchunk_raw_max(uint32_t page_size, uint32_t chunk_pages);
