/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A stream writer's and reader's state, and the core they share: writing
 * and reading frames with the digest, counts and first failure
 * (stream/stream-io.c). Above it, MEMORY frames (stream/memchunk.c), and on
 * top the stream's header, vcpus and trailer (src/stream.c).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <xxhash.h>

#include "bytebuf.h"
#include "pbarena.h"
#include "stream/frame.h"
#include "stream.pb-c.h"
#include "svemig/stream.h"
#include "workpool.h"

/* memchunk.c's jobs and buffers, kept by a writer or reader across memory calls. */
struct memchunk_writer;
struct memchunk_reader;

/* Device frames seen, so that none comes twice (stream/devframes.c). */
struct devframes_seen {
        uint8_t once;    /* bit (type - SVEMIG_FRAME_VGIC) for VGIC, TIMERS, CONSOLE */
        uint64_t virtio; /* bit per VIRTIO index */
};

/* A spent reader or writer remembers its first error and returns it again. */
struct stream_failure {
        int code;
        char msg[SVEMIG_ERROR_MSG_MAX];
};
int stream_fail(struct stream_failure *f, int r, struct svemig_error *err);
int stream_check(const struct stream_failure *f, struct svemig_error *err);

const struct svemig_stream_slot *stream_find_slot(const struct svemig_stream_info *info, unsigned id);

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
        struct devframes_seen dev_seen;
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

/* 0 when the writer can take a frame: not failed, not finished. */
int stream_writer_ready(struct svemig_stream_writer *w, struct svemig_error *err);
/* Checks and decompresses the pending frame's payload into r->raw, with r->arena reset for it. */
int stream_reader_open_payload(struct svemig_stream_reader *r, const uint8_t **raw,
                               struct svemig_error *err);

/* Writes iov whole to the writer's fd, or fails the writer. */
int stream_writer_put(struct svemig_stream_writer *w, struct iovec *iov, int n, struct svemig_error *err);

/* Writes a frame, adding it to the digest and the counts. */
int stream_writer_emit(struct svemig_stream_writer *w, const struct frame_out *f, struct svemig_error *err);

/*
 * Writes a frame of any type: how tests make the frames of a newer minor
 * (since_minor) that this version does not know.
 */
int stream_writer_put_frame(struct svemig_stream_writer *w, uint16_t type, bool required,
                            uint16_t since_minor, const uint8_t *payload, size_t len,
                            struct svemig_error *err);

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
        struct devframes_seen dev_seen;

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

/* Reads exactly n bytes ("what", for the error) or fails the reader. */
int stream_reader_get(struct svemig_stream_reader *r, void *buf, size_t n, const char *what,
                      struct svemig_error *err);

/* The stream digest: reset, fed, and its value (len bytes of out). */
void stream_digest_reset(XXH3_state_t *st, enum svemig_digest d);
void stream_digest_value(XXH3_state_t *st, enum svemig_digest d, uint8_t out[16], unsigned *len);

/* Adds bytes to the stream digest. */
void stream_digest_update(XXH3_state_t *st, enum svemig_digest d, const void *p, size_t n);

/* Creates the pool on first use. */
int stream_pool(struct workpool **pool, unsigned n_threads, struct svemig_error *err);
