/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The svemig stream, format v1 (docs/stream-format.md): one format for
 * snapshot files, remote checkpoints and the live-migration wire.
 *
 *   magic, major.minor, StreamHeader, header checksum
 *   frames: VCPU | MEMORY | (unknown optional frames, skipped) ...
 *   TRAILER: counts and a digest of every byte before it
 *
 * Both ends work on any fd (file, pipe, socket) and never seek: the writer
 * only appends, the reader reads exactly the bytes it needs and nothing past
 * the trailer, so a protocol may continue on the same socket afterwards.
 *
 * Every function returns 0 (or a count) or a negative errno, with a sentence
 * in *err naming the byte offset and the problem. Reader errors:
 *   -EBADMSG          corrupt: wrong magic, checksum or digest mismatch,
 *                     truncation, malformed or inconsistent payload
 *   -EPROTONOSUPPORT  a major version this build does not read
 *   -EPROTO           an unknown required frame or must-understand flag
 *   -E2BIG            a length or count over the format's limits
 *   -ERANGE           a memory chunk the caller's memory map does not cover
 * After an error the reader or writer is spent: every later call returns it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"
#include "svemig/vcpu.h"
#include "svemig/vqset.h"

#define SVEMIG_STREAM_MAJOR 1u
/* 1.1: MEMORY frames may hold pages as LZ4 blocks, each on its own; 1.2: device state frames */
#define SVEMIG_STREAM_MINOR 2u

/* Hard limits, checked by the writer and the reader alike. */
#define SVEMIG_STREAM_HEADER_MAX      (1u << 20)  /* StreamHeader bytes */
#define SVEMIG_STREAM_FRAME_MAX       (16u << 20) /* a frame's payload, stored or decompressed */
#define SVEMIG_STREAM_VCPUS_MAX       4096u
#define SVEMIG_STREAM_REGS_MAX        4096u /* registers per vcpu */
#define SVEMIG_STREAM_ID_REGS_MAX     256u  /* header id_regs */
#define SVEMIG_STREAM_SLOTS_MAX       512u
#define SVEMIG_STREAM_MEMORY_MAX      (1ull << 44) /* 16 TiB, all slots together */
#define SVEMIG_STREAM_CHUNK_PAGES_MAX 1024u
#define SVEMIG_STREAM_CHUNK_BYTES_MAX (4u << 20) /* chunk_pages * page_size */
#define SVEMIG_STREAM_STRING_MAX      256u       /* header strings, NUL included */
#define SVEMIG_STREAM_FRAME_KINDS_MAX 64u
#define SVEMIG_STREAM_LOCATION_MAX    1024u /* an incremental stream's parent location, NUL included */
#define SVEMIG_STREAM_MINOR_PARENT    2u    /* 1.2: incremental streams (a parent location and digest) */
#define SVEMIG_STREAM_VIRTIO_MAX      64u   /* VIRTIO frames, one per device */

#define SVEMIG_STREAM_CHUNK_PAGES_DEFAULT 256u /* 1 MiB of 4 KiB pages: LZ4 loses little at chunk starts */

enum svemig_frame_type {
        SVEMIG_FRAME_VCPU = 1,    /* since 1.0, required */
        SVEMIG_FRAME_MEMORY = 2,  /* since 1.0, required */
        SVEMIG_FRAME_TRAILER = 3, /* since 1.0, required */
        /* since 1.2, required: declared (never written) by incremental streams, for older readers */
        SVEMIG_FRAME_PARENT = 4,
        SVEMIG_FRAME_VGIC = 5,    /* since 1.2, required: struct vgic_state */
        SVEMIG_FRAME_TIMERS = 6,  /* since 1.2, required: struct timer_state */
        SVEMIG_FRAME_CONSOLE = 7, /* since 1.2, required: struct console_state */
        SVEMIG_FRAME_VIRTIO = 8,  /* since 1.2, required: struct virtio_dev_state, one per device */
};

struct vgic_state;
struct timer_state;
struct console_state;
struct virtio_dev_state;

enum svemig_compression {
        SVEMIG_COMPRESSION_NONE = 0,
        SVEMIG_COMPRESSION_LZ4 = 1,
};

enum svemig_digest {
        SVEMIG_DIGEST_XXH3_128 = 1,
        SVEMIG_DIGEST_XXH3_64 = 2,
};

struct svemig_stream_slot {
        unsigned id;
        uint64_t gpa;
        uint64_t size;
};

/*
 * The StreamHeader. A writer fills it to describe the stream; a reader
 * returns it decoded, with every limit checked.
 */
struct svemig_stream_info {
        unsigned major, minor; /* reader: the stream's version; ignored by the writer */
        char producer_name[SVEMIG_STREAM_STRING_MAX];    /* writer: "" = "svemig" */
        char producer_version[SVEMIG_STREAM_STRING_MAX]; /* writer: "" = this build's version */
        char host_name[SVEMIG_STREAM_STRING_MAX];
        char source_kernel[SVEMIG_STREAM_STRING_MAX];
        char hypervisor[SVEMIG_STREAM_STRING_MAX]; /* "kvm" or "sim" */
        char purpose[SVEMIG_STREAM_STRING_MAX];    /* "snapshot", "checkpoint", "migration" */
        vqset_t host_vls;
        vqset_t guest_vls;
        unsigned guest_max_vq;
        uint32_t vcpu_features;
        unsigned vcpu_count;
        uint32_t page_size;   /* writer: 0 = 4096 */
        uint32_t chunk_pages; /* writer: 0 = SVEMIG_STREAM_CHUNK_PAGES_DEFAULT */
        size_t n_slots;
        const struct svemig_stream_slot *slots; /* reader: owned by the reader */
        size_t n_id_regs;
        const struct vcpu_reg *id_regs; /* reader: owned by the reader */
        enum svemig_compression compression;
        enum svemig_digest digest; /* writer: 0 = XXH3-128 */
        /* ns since the Unix epoch; writer: 0 = now (give a fixed value for reproducible output) */
        uint64_t created_ns;
        /*
         * An incremental stream's parent (1.2): where it is, and its trailer's digest
         * (parent_digest_bytes of parent_digest, canonical). "" = a full stream.
         */
        char parent_location[SVEMIG_STREAM_LOCATION_MAX];
        uint8_t parent_digest[16];
        unsigned parent_digest_bytes;
        /*
         * The stream carries device state frames (1.2: VGIC, TIMERS, CONSOLE,
         * VIRTIO). The header then lists them as required kinds, so that a
         * 1.1 reader refuses the stream at open, naming v1.2, instead of
         * restoring a guest without its devices; without it, a stream of a
         * guest without devices stays readable by 1.1 readers, and device
         * frames are refused by the writer (-EINVAL).
         */
        bool devices;
};

/* Memory totals of a stream so far. */
struct svemig_stream_stats {
        uint64_t frames;       /* frames, trailer excluded */
        uint64_t bytes;        /* stream bytes so far */
        unsigned vcpus;        /* VCPU frames */
        uint64_t mem_chunks;   /* MEMORY frames */
        uint64_t mem_pages;    /* pages carried, zero pages included */
        uint64_t zero_pages;   /* of which all zero (a bit each) */
        uint64_t mem_stored;   /* bytes of MEMORY frames, framing included */
        uint64_t lz4_chunks;   /* MEMORY frames with LZ4-compressed content (frame or pages) */
        uint64_t skipped;      /* unknown optional frames skipped (reader) */
        uint8_t digest[16];    /* trailer's digest, canonical (big-endian) */
        unsigned digest_bytes; /* 16 (XXH3-128) or 8 (XXH3-64); 0 before the trailer */
        uint64_t lz4_pages;    /* data pages stored as LZ4 blocks of their own (1.1); the rest are raw */
};

/* ---- Writer ---- */

struct svemig_stream_writer;

/*
 * Progress of svemig_stream_write_memory(): called on the calling thread as
 * frames are written, with the bytes of the call's ranges dealt with so far
 * and their total. A negative errno stops the write with that error, and
 * the writer is then spent.
 */
typedef int (*svemig_stream_progress_fn)(void *userdata, uint64_t done, uint64_t total);

struct svemig_stream_write_opts {
        unsigned n_threads;                 /* compression workers; 0 = one per online CPU */
        svemig_stream_progress_fn progress; /* optional */
        void *userdata;
};

/*
 * Writes the magic, version and header to fd (which it does not own or
 * close). opts may be NULL.
 */
int svemig_stream_writer_open(int fd, const struct svemig_stream_info *info,
                              const struct svemig_stream_write_opts *opts, struct svemig_stream_writer **out,
                              struct svemig_error *err);

/* Appends a VCPU frame. st->index must be below info->vcpu_count and written once. */
int svemig_stream_write_vcpu(struct svemig_stream_writer *w, const struct vcpu_state *st,
                             struct svemig_error *err);

/*
 * A guest memory range to write: [gpa, gpa + size) of slot, mapped at host.
 * dirty, when non-NULL, selects the pages to write: bit i (u64 words, LSB
 * first, as KVM_GET_DIRTY_LOG fills it) = page i of the range. NULL writes
 * every page, so the same call serves a full snapshot and a pre-copy round.
 */
struct svemig_mem_range {
        unsigned slot;
        uint64_t gpa;
        const void *host;
        uint64_t size;
        const uint64_t *dirty;
        /*
         * host is private anonymous memory of this process (as a guest's
         * RAM is): a page never touched, neither present nor swapped
         * (/proc/self/pagemap), is written as a zero page without being
         * read, so that writing a huge untouched guest does not make the
         * kernel back it. Elsewhere (shared or file memory) every page is read.
         */
        bool anon_private;
};

/*
 * Appends MEMORY frames for the ranges (which must lie inside the header's
 * slots, page aligned): zero pages become a bit; with LZ4 compression each
 * other page is compressed on its own on the worker pool and kept so where
 * that shrinks it, else stored raw. Frames are written in range and address
 * order whatever the thread count. The workers and their buffers stay with
 * the writer, so calling this often (pre-copy rounds, pieces) costs no more
 * than one call.
 */
int svemig_stream_write_memory(struct svemig_stream_writer *w, const struct svemig_mem_range *ranges,
                               size_t n_ranges, struct svemig_error *err);

/*
 * Whether the frames written from now on are LZ4-compressed (where that
 * shrinks them), as the header's compression says at open. Only a stream
 * whose header says LZ4 may turn it on: the header's NONE promises readers
 * that no frame is compressed, its LZ4 only that frames may be (each frame
 * carries its own flag). A live migration turns LZ4 off and on between
 * pieces of memory as the link's speed against the workers' says
 * (docs/migration.md "Compression"). -EINVAL for LZ4 under a NONE header.
 */
int svemig_stream_writer_set_lz4(struct svemig_stream_writer *w, bool on, struct svemig_error *err);

/*
 * Appends a device state frame (the stream's header must say devices). VGIC,
 * TIMERS and CONSOLE come at most once, VIRTIO once per device index; the
 * VGIC's and TIMERS' vcpus must be the header's vcpu_count. Each state is
 * checked as a reader will check it (vgic_state_check() and its kin).
 */
int svemig_stream_write_vgic(struct svemig_stream_writer *w, const struct vgic_state *st,
                             struct svemig_error *err);
int svemig_stream_write_timers(struct svemig_stream_writer *w, const struct timer_state *st,
                               struct svemig_error *err);
int svemig_stream_write_console(struct svemig_stream_writer *w, const struct console_state *st,
                                struct svemig_error *err);
int svemig_stream_write_virtio(struct svemig_stream_writer *w, const struct virtio_dev_state *st,
                               struct svemig_error *err);

/* Writes the trailer. The stream is complete once this returns 0. */
int svemig_stream_writer_finish(struct svemig_stream_writer *w, struct svemig_error *err);

const struct svemig_stream_stats *svemig_stream_writer_stats(const struct svemig_stream_writer *w);

/* Frees the writer. Without a finish, the stream has no trailer and readers refuse it. */
void svemig_stream_writer_free(struct svemig_stream_writer *w);

/* ---- Reader ---- */

struct svemig_stream_reader;

struct svemig_stream_read_opts {
        unsigned n_threads; /* decompression workers; 0 = one per online CPU */
};

/*
 * Reads ONLY the magic, version, header and header checksum from fd (which
 * it does not own or close), so that a destination can refuse the stream
 * before anything else moves. opts may be NULL.
 */
int svemig_stream_reader_open(int fd, const struct svemig_stream_read_opts *opts,
                              struct svemig_stream_reader **out, struct svemig_error *err);

/*
 * The bytes a stream's preamble, header and header checksum take, from its
 * first SVEMIG_STREAM_PREAMBLE_SIZE bytes: what to read ahead (or peek) to
 * judge a stream by its header. Checks the magic, major version and the
 * header's length limit, as svemig_stream_reader_open() does.
 */
#define SVEMIG_STREAM_PREAMBLE_SIZE 16u
int svemig_stream_header_size(const void *preamble, size_t *out, struct svemig_error *err);

/*
 * svemig_stream_reader_open() on a stream's start held in memory (len
 * bytes, at least its preamble, header and checksum): a header peeked from
 * a connection or read ahead from a file. Only the header can be used.
 */
int svemig_stream_reader_open_mem(const void *buf, size_t len, struct svemig_stream_reader **out,
                                  struct svemig_error *err);

const struct svemig_stream_info *svemig_stream_reader_info(const struct svemig_stream_reader *r);

/*
 * Reads the next frame. Returns SVEMIG_FRAME_VCPU or SVEMIG_FRAME_MEMORY,
 * after which the caller calls svemig_stream_read_vcpu() or
 * svemig_stream_read_memory() (or next again, which passes the frame over);
 * or 0 once the trailer has been read and verified: counts and digest.
 * Unknown optional frames are skipped (checksummed all the same).
 */
int svemig_stream_next(struct svemig_stream_reader *r, struct svemig_error *err);

/* Decodes the pending VCPU frame into *st (free with vcpu_state_done()). */
int svemig_stream_read_vcpu(struct svemig_stream_reader *r, struct vcpu_state *st, struct svemig_error *err);

/*
 * Decodes the pending device frame (svemig_stream_next() returned its type)
 * into *st, checked (free with vgic_state_done() and its kin). A frame that
 * breaks a rule is -EBADMSG, naming its offset and the rule; one that comes
 * twice too.
 */
int svemig_stream_read_vgic(struct svemig_stream_reader *r, struct vgic_state *st, struct svemig_error *err);
int svemig_stream_read_timers(struct svemig_stream_reader *r, struct timer_state *st,
                              struct svemig_error *err);
int svemig_stream_read_console(struct svemig_stream_reader *r, struct console_state *st,
                               struct svemig_error *err);
int svemig_stream_read_virtio(struct svemig_stream_reader *r, struct virtio_dev_state *st,
                              struct svemig_error *err);

/* Where the caller wants guest memory: [gpa, gpa + size) of slot is at host. */
struct svemig_mem_map {
        unsigned slot;
        uint64_t gpa;
        void *host;
        uint64_t size;
};

/*
 * Decodes the pending MEMORY frame and every MEMORY frame right after it,
 * in parallel, into the caller's memory (zero pages are written as zeros).
 * It stops before the first other frame, which the next
 * svemig_stream_next() returns. With map == NULL the chunks are only
 * checked and counted (svemigctl verify and inspect).
 */
int svemig_stream_read_memory(struct svemig_stream_reader *r, const struct svemig_mem_map *map, size_t n_map,
                              struct svemig_error *err);

/* Bytes read so far (the offset of the next byte in the stream). */
uint64_t svemig_stream_reader_offset(const struct svemig_stream_reader *r);
const struct svemig_stream_stats *svemig_stream_reader_stats(const struct svemig_stream_reader *r);

void svemig_stream_reader_free(struct svemig_stream_reader *r);

/* Names for people. */
const char *svemig_frame_type_name(uint32_t type); /* NULL for types this build does not know */
const char *svemig_compression_name(enum svemig_compression c);
const char *svemig_digest_name(enum svemig_digest d);
