/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * MEMORY frames: guest memory in chunks, zero pages elided by bitmap, the
 * rest compressed in parallel on the stream's worker pool, for a writer, a
 * reader, and a migration's memory channels (docs/stream-format.md).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "bytebuf.h"
#include "pbarena.h"
#include "stream/frame.h"
#include "stream/stream-internal.h"
#include "stream.pb-c.h"

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

/* Frees memchunk.c's state of a writer or reader. NULL is fine. */
void memchunk_writer_free(struct memchunk_writer *m);
void memchunk_reader_free(struct memchunk_reader *m);
