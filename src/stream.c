/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The svemig stream: the preamble and header, VCPU frames and the trailer,
 * for a writer and a reader on any fd. Frames are in stream/frame.c, the
 * writer's and reader's core in stream/stream-io.c, MEMORY frames in
 * stream/memchunk.c. The byte layout is in docs/stream-format.md.
 */
#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "checksum.h"
#include "macro.h"
#include "stream/memchunk.h"
#include "stream/stream-internal.h"
#include "stream.pb-c.h"
#include "svemig/kvmreg.h"
#include "unaligned.h"

const char *svemig_compression_name(enum svemig_compression c)
{
        switch (c) {
        case SVEMIG_COMPRESSION_NONE:
                return "none";
        case SVEMIG_COMPRESSION_LZ4:
                return "lz4";
        }
        return "unknown";
}

const char *svemig_digest_name(enum svemig_digest d)
{
        switch (d) {
        case SVEMIG_DIGEST_XXH3_128:
                return "XXH3-128";
        case SVEMIG_DIGEST_XXH3_64:
                return "XXH3-64";
        }
        return "unknown";
}

static bool is_pow2(uint64_t v)
{
        return v && !(v & (v - 1));
}

/*
 * The checks both ends make on a header. 'bad' is the errno for an invalid
 * value: EINVAL for a writer's caller, EBADMSG for a stream.
 */
static int info_check(const struct svemig_stream_info *info, int bad, const char *where,
                      struct svemig_error *err)
{
        uint64_t total = 0;

        if (info->vcpu_count > SVEMIG_STREAM_VCPUS_MAX)
                return svemig_error_set(err, E2BIG, "%s: %u vcpus, over the limit of %u", where,
                                        info->vcpu_count, SVEMIG_STREAM_VCPUS_MAX);
        if (info->n_slots > SVEMIG_STREAM_SLOTS_MAX)
                return svemig_error_set(err, E2BIG, "%s: %zu memory slots, over the limit of %u", where,
                                        info->n_slots, SVEMIG_STREAM_SLOTS_MAX);
        if (info->n_id_regs > SVEMIG_STREAM_ID_REGS_MAX)
                return svemig_error_set(err, E2BIG, "%s: %zu ID registers, over the limit of %u", where,
                                        info->n_id_regs, SVEMIG_STREAM_ID_REGS_MAX);
        if (!is_pow2(info->page_size) || info->page_size < 4096 || info->page_size > 65536)
                return svemig_error_set(err, bad,
                                        "%s: page size %u is not a power of two from 4096 to 65536", where,
                                        info->page_size);
        if (info->chunk_pages == 0 || info->chunk_pages > SVEMIG_STREAM_CHUNK_PAGES_MAX ||
            (uint64_t)info->chunk_pages * info->page_size > SVEMIG_STREAM_CHUNK_BYTES_MAX)
                return svemig_error_set(
                        err, E2BIG,
                        "%s: chunks of %u pages of %u bytes; the limits are %u pages and %u bytes", where,
                        info->chunk_pages, info->page_size, SVEMIG_STREAM_CHUNK_PAGES_MAX,
                        SVEMIG_STREAM_CHUNK_BYTES_MAX);
        if (info->guest_max_vq != vqset_highest(&info->guest_vls))
                return svemig_error_set(err, bad,
                                        "%s: guest max vq %u is not the highest vq of its VL set (%u)",
                                        where, info->guest_max_vq, vqset_highest(&info->guest_vls));
        if (info->compression != SVEMIG_COMPRESSION_NONE && info->compression != SVEMIG_COMPRESSION_LZ4)
                return svemig_error_set(err, bad, "%s: unknown compression %d", where,
                                        (int)info->compression);
        if (info->digest != SVEMIG_DIGEST_XXH3_128 && info->digest != SVEMIG_DIGEST_XXH3_64)
                return svemig_error_set(err, bad, "%s: unknown digest %d", where, (int)info->digest);

        for (size_t i = 0; i < info->n_slots; i++) {
                const struct svemig_stream_slot *s = &info->slots[i];

                if (s->size == 0 || s->gpa % info->page_size || s->size % info->page_size ||
                    s->gpa + s->size < s->gpa)
                        return svemig_error_set(
                                err, bad,
                                "%s: slot %u [0x%llx, +0x%llx) is empty, not page aligned or "
                                "wraps",
                                where, s->id, (unsigned long long)s->gpa, (unsigned long long)s->size);
                if (s->size > SVEMIG_STREAM_MEMORY_MAX || (total += s->size) > SVEMIG_STREAM_MEMORY_MAX)
                        return svemig_error_set(
                                err, E2BIG, "%s: the memory slots add up to over the limit of %llu bytes",
                                where, (unsigned long long)SVEMIG_STREAM_MEMORY_MAX);
                for (size_t j = 0; j < i; j++) {
                        const struct svemig_stream_slot *o = &info->slots[j];

                        if (o->id == s->id)
                                return svemig_error_set(err, bad, "%s: slot id %u appears twice", where,
                                                        s->id);
                        if (s->gpa < o->gpa + o->size && o->gpa < s->gpa + s->size)
                                return svemig_error_set(err, bad, "%s: slots %u and %u overlap", where,
                                                        o->id, s->id);
                }
        }
        for (size_t i = 0; i < info->n_id_regs; i++) {
                const struct vcpu_reg *reg = &info->id_regs[i];

                if (kvmreg_size(reg->id) > KVMREG_MAX_BYTES || reg->size != kvmreg_size(reg->id))
                        return svemig_error_set(
                                err, bad,
                                "%s: ID register 0x%016llx has %u bytes, its ID says %u (at most "
                                "%u)",
                                where, (unsigned long long)reg->id, reg->size, kvmreg_size(reg->id),
                                KVMREG_MAX_BYTES);
        }
        return 0;
}

static size_t set_string(char *dst, const char *src, const char *dflt)
{
        return (size_t)snprintf(dst, SVEMIG_STREAM_STRING_MAX, "%s", src[0] ? src : dflt);
}

static int writer_fill_info(struct svemig_stream_writer *w, const struct svemig_stream_info *in,
                            struct svemig_error *err)
{
        int r;
        struct svemig_stream_info *info = &w->info;
        char host[SVEMIG_STREAM_STRING_MAX] = "";

        *info = *in;
        info->major = SVEMIG_STREAM_MAJOR;
        info->minor = in->parent_location[0] ? SVEMIG_STREAM_MINOR_PARENT : SVEMIG_STREAM_MINOR;
        if (!in->host_name[0])
                (void)gethostname(host, sizeof(host) - 1);
        set_string(info->producer_name, in->producer_name, "svemig");
        set_string(info->producer_version, in->producer_version, SVEMIG_VERSION);
        set_string(info->host_name, in->host_name, host);
        if (!info->page_size)
                info->page_size = 4096;
        if (!info->chunk_pages)
                info->chunk_pages = SVEMIG_STREAM_CHUNK_PAGES_DEFAULT;
        if (!info->digest)
                info->digest = SVEMIG_DIGEST_XXH3_128;
        if (!info->created_ns)
                info->created_ns = now_ns(CLOCK_REALTIME);
        if (info->n_slots > SVEMIG_STREAM_SLOTS_MAX)
                return svemig_error_set(err, E2BIG, "stream header: %zu memory slots, over the limit of %u",
                                        info->n_slots, SVEMIG_STREAM_SLOTS_MAX);
        /* The writer keeps its own copy: the caller's array may go. */
        w->slots = calloc(info->n_slots ? info->n_slots : 1, sizeof(*w->slots));
        if (!w->slots)
                return -ENOMEM;
        if (info->n_slots)
                memcpy(w->slots, in->slots, info->n_slots * sizeof(*w->slots));
        info->slots = w->slots;
        r = info_check(info, EINVAL, "stream header", err);
        /* Written into the header now, not needed later. */
        info->id_regs = NULL;
        info->n_id_regs = 0;
        return r;
}

static int writer_put_header(struct svemig_stream_writer *w, const struct svemig_stream_info *in,
                             struct svemig_error *err)
{
        const struct svemig_stream_info *info = &w->info;
        Svemig__StreamHeader h = SVEMIG__STREAM_HEADER__INIT;
        Svemig__Producer producer = SVEMIG__PRODUCER__INIT;
        _cleanup_free_ Svemig__MemSlot *slots = NULL;
        _cleanup_free_ Svemig__MemSlot **slot_ptrs = NULL;
        _cleanup_free_ Svemig__RegValue *regs = NULL;
        _cleanup_free_ Svemig__RegValue **reg_ptrs = NULL;
        Svemig__FrameKind kinds[FRAME_KINDS_N], *kind_ptrs[FRAME_KINDS_N];
        _cleanup_free_ uint8_t *packed = NULL;
        size_t len, n_kinds = 0;

        producer.name = (char *)info->producer_name;
        producer.version = (char *)info->producer_version;
        producer.host_name = (char *)info->host_name;
        h.producer = &producer;
        h.host_vls = (ProtobufCBinaryData){KVMREG_VLS_BYTES, (uint8_t *)info->host_vls.w};
        h.guest_vls = (ProtobufCBinaryData){KVMREG_VLS_BYTES, (uint8_t *)info->guest_vls.w};
        h.guest_max_vq = info->guest_max_vq;
        h.vcpu_features = info->vcpu_features;
        h.vcpu_count = info->vcpu_count;
        h.page_size = info->page_size;
        h.compression = (Svemig__Compression)info->compression;
        h.created_ns = info->created_ns;
        h.source_kernel = (char *)info->source_kernel;
        h.hypervisor = (char *)info->hypervisor;
        h.purpose = (char *)info->purpose;
        h.frame_checksum = SVEMIG__FRAME_CHECKSUM__FRAME_CHECKSUM_XXH3_64;
        h.digest = (Svemig__Digest)info->digest;
        h.chunk_pages = info->chunk_pages;

        slots = calloc(info->n_slots + 1, sizeof(*slots));
        slot_ptrs = calloc(info->n_slots + 1, sizeof(*slot_ptrs));
        regs = calloc(in->n_id_regs + 1, sizeof(*regs));
        reg_ptrs = calloc(in->n_id_regs + 1, sizeof(*reg_ptrs));
        if (!slots || !slot_ptrs || !regs || !reg_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < info->n_slots; i++) {
                svemig__mem_slot__init(&slots[i]);
                slots[i].id = info->slots[i].id;
                slots[i].gpa = info->slots[i].gpa;
                slots[i].size = info->slots[i].size;
                slot_ptrs[i] = &slots[i];
        }
        h.n_slots = info->n_slots;
        h.slots = slot_ptrs;
        for (size_t i = 0; i < in->n_id_regs; i++) {
                svemig__reg_value__init(&regs[i]);
                regs[i].id = in->id_regs[i].id;
                regs[i].value = (ProtobufCBinaryData){in->id_regs[i].size, in->id_regs[i].value};
                reg_ptrs[i] = &regs[i];
        }
        h.n_id_regs = in->n_id_regs;
        h.id_regs = reg_ptrs;
        /*
         * PARENT only in incremental streams, the device kinds only where the
         * stream carries devices: any other stream stays readable by 1.1.
         */
        for (size_t i = 0; i < FRAME_KINDS_N; i++) {
                Svemig__FrameKind *k = &kinds[n_kinds];
                uint32_t type = frame_kinds[i].type;

                if (type == SVEMIG_FRAME_PARENT && !info->parent_location[0])
                        continue;
                if (type >= SVEMIG_FRAME_VGIC && type <= SVEMIG_FRAME_VIRTIO && !info->devices)
                        continue;
                svemig__frame_kind__init(k);
                k->type = type;
                k->name = (char *)frame_kinds[i].name;
                k->since_minor = frame_kinds[i].since_minor;
                k->required = frame_kinds[i].required;
                kind_ptrs[n_kinds++] = k;
        }
        h.n_frame_kinds = n_kinds;
        h.frame_kinds = kind_ptrs;
        if (info->parent_location[0]) {
                h.parent_location = (char *)info->parent_location;
                h.parent_digest =
                        (ProtobufCBinaryData){info->parent_digest_bytes, (uint8_t *)info->parent_digest};
        }

        len = svemig__stream_header__get_packed_size(&h);
        if (len > SVEMIG_STREAM_HEADER_MAX)
                return svemig_error_set(err, E2BIG, "stream header: %zu bytes, over the limit of %u", len,
                                        SVEMIG_STREAM_HEADER_MAX);
        /* Preamble, header and checksum in one buffer: the checksum covers the first two. */
        packed = malloc(STREAM_PREAMBLE_SIZE + len + 8);
        if (!packed)
                return -ENOMEM;
        memcpy(packed, stream_magic, STREAM_MAGIC_SIZE);
        put_le16(packed + 8, SVEMIG_STREAM_MAJOR);
        put_le16(packed + 10, (uint16_t)info->minor);
        put_le32(packed + 12, (uint32_t)len);
        svemig__stream_header__pack(&h, packed + STREAM_PREAMBLE_SIZE);
        put_le64(packed + STREAM_PREAMBLE_SIZE + len, checksum64(packed, STREAM_PREAMBLE_SIZE + len));
        struct iovec iov[1] = {{packed, STREAM_PREAMBLE_SIZE + len + 8}};
        return stream_writer_put(w, iov, 1, err);
}

void svemig_stream_writer_free(struct svemig_stream_writer *w)
{
        if (!w)
                return;
        workpool_free(w->pool);
        memchunk_writer_free(w->mem);
        if (w->digest)
                XXH3_freeState(w->digest);
        bytebuf_done(&w->pack);
        bytebuf_done(&w->zbuf);
        free(w->slots);
        free(w);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct svemig_stream_writer *, svemig_stream_writer_free);

int svemig_stream_writer_open(int fd, const struct svemig_stream_info *info,
                              const struct svemig_stream_write_opts *opts, struct svemig_stream_writer **out,
                              struct svemig_error *err)
{
        _cleanup_(svemig_stream_writer_freep) struct svemig_stream_writer *w = NULL;
        int r;

        if (fd < 0 || !info || !out)
                return svemig_error_set(err, EINVAL, "stream writer: no fd, header or result given");
        w = calloc(1, sizeof(*w));
        if (!w)
                return svemig_error_set(err, ENOMEM, "stream writer: out of memory");
        w->fd = fd;
        w->n_threads = opts ? opts->n_threads : 0;
        w->progress = opts ? opts->progress : NULL;
        w->userdata = opts ? opts->userdata : NULL;
        w->digest = XXH3_createState();
        if (!w->digest)
                return svemig_error_set(err, ENOMEM, "stream writer: out of memory");
        if (info->n_id_regs > SVEMIG_STREAM_ID_REGS_MAX)
                return svemig_error_set(err, E2BIG, "stream header: %zu ID registers, over the limit of %u",
                                        info->n_id_regs, SVEMIG_STREAM_ID_REGS_MAX);
        r = writer_fill_info(w, info, err);
        if (r < 0)
                return r == -ENOMEM ? svemig_error_set(err, r, "stream writer: out of memory") : r;
        stream_digest_reset(w->digest, w->info.digest);
        w->lz4 = w->info.compression == SVEMIG_COMPRESSION_LZ4;
        r = writer_put_header(w, info, err);
        if (r < 0)
                return r == -ENOMEM ? svemig_error_set(err, r, "stream writer: out of memory") : r;
        *out = w;
        w = NULL;
        return 0;
}

int stream_writer_ready(struct svemig_stream_writer *w, struct svemig_error *err)
{
        int r = stream_check(&w->failure, err);

        if (r == 0 && w->finished)
                r = svemig_error_set(err, EINVAL, "the stream is finished: nothing can follow its trailer");
        return r;
}

int stream_vcpu_encode(const struct svemig_stream_info *info, bool lz4, const struct vcpu_state *st,
                       struct bytebuf *pack, struct bytebuf *zbuf, struct frame_out *f,
                       struct svemig_error *err)
{
        Svemig__VcpuState msg = SVEMIG__VCPU_STATE__INIT;
        _cleanup_free_ Svemig__RegValue *regs = NULL;
        _cleanup_free_ Svemig__RegValue **ptrs = NULL;
        size_t len;

        if (st->index >= info->vcpu_count)
                return svemig_error_set(err, EINVAL, "vcpu %u: the stream header announces %u vcpus",
                                        st->index, info->vcpu_count);
        if (st->n_regs > SVEMIG_STREAM_REGS_MAX)
                return svemig_error_set(err, E2BIG, "vcpu %u: %zu registers, over the limit of %u",
                                        st->index, st->n_regs, SVEMIG_STREAM_REGS_MAX);

        regs = calloc(st->n_regs + 1, sizeof(*regs));
        ptrs = calloc(st->n_regs + 1, sizeof(*ptrs));
        if (!regs || !ptrs)
                return svemig_error_set(err, ENOMEM, "vcpu %u: out of memory", st->index);
        for (size_t i = 0; i < st->n_regs; i++) {
                const struct vcpu_reg *reg = &st->regs[i];

                if (reg->size != kvmreg_size(reg->id) || reg->size > KVMREG_MAX_BYTES)
                        return svemig_error_set(
                                err, EINVAL,
                                "vcpu %u: register 0x%016llx has %u bytes, its ID says %u (at "
                                "most %u)",
                                st->index, (unsigned long long)reg->id, reg->size, kvmreg_size(reg->id),
                                KVMREG_MAX_BYTES);
                svemig__reg_value__init(&regs[i]);
                regs[i].id = reg->id;
                regs[i].value = (ProtobufCBinaryData){reg->size, reg->value};
                ptrs[i] = &regs[i];
        }
        msg.index = st->index;
        msg.features = st->features;
        msg.vls = (ProtobufCBinaryData){KVMREG_VLS_BYTES, (uint8_t *)st->vls.w};
        msg.mp_state = st->mp_state;
        msg.n_regs = st->n_regs;
        msg.regs = ptrs;

        len = svemig__vcpu_state__get_packed_size(&msg);
        if (len > SVEMIG_STREAM_FRAME_MAX)
                return svemig_error_set(err, E2BIG, "vcpu %u: %zu bytes, over the frame limit of %u",
                                        st->index, len, SVEMIG_STREAM_FRAME_MAX);
        if (bytebuf_reserve(pack, len + 1) < 0 || bytebuf_reserve(zbuf, frame_lz4_bound(len)) < 0)
                return svemig_error_set(err, ENOMEM, "vcpu %u: out of memory", st->index);
        svemig__vcpu_state__pack(&msg, pack->p);
        frame_build(f, SVEMIG_FRAME_VCPU, true, pack->p, len, lz4, zbuf->p);
        return 0;
}

int stream_writer_put_vcpu(struct svemig_stream_writer *w, unsigned index, const struct frame_out *f,
                           struct svemig_error *err)
{
        int r = stream_writer_ready(w, err);

        if (r < 0)
                return r;
        if (w->vcpu_seen[index / 8] & (1u << (index % 8)))
                return svemig_error_set(err, EINVAL, "vcpu %u is already in the stream", index);
        r = stream_writer_emit(w, f, err);
        if (r < 0)
                return r;
        w->vcpu_seen[index / 8] |= 1u << (index % 8);
        w->stats.vcpus++;
        return 0;
}

int svemig_stream_write_vcpu(struct svemig_stream_writer *w, const struct vcpu_state *st,
                             struct svemig_error *err)
{
        struct frame_out f;
        int r;

        r = stream_vcpu_encode(&w->info, w->lz4, st, &w->pack, &w->zbuf, &f, err);
        if (r < 0)
                return r;
        return stream_writer_put_vcpu(w, st->index, &f, err);
}

int svemig_stream_writer_finish(struct svemig_stream_writer *w, struct svemig_error *err)
{
        Svemig__Trailer t = SVEMIG__TRAILER__INIT;
        uint8_t packed[256];
        struct frame_out f;
        size_t len;
        int r;

        r = stream_writer_ready(w, err);
        if (r < 0)
                return r;
        if (w->stats.vcpus != w->info.vcpu_count)
                return svemig_error_set(
                        err, EINVAL,
                        "the stream header announces %u vcpus but %u were written: write them "
                        "all before the trailer",
                        w->info.vcpu_count, w->stats.vcpus);

        stream_digest_value(w->digest, w->info.digest, w->stats.digest, &w->stats.digest_bytes);
        t.frames = w->stats.frames;
        t.vcpus = w->stats.vcpus;
        t.mem_chunks = w->stats.mem_chunks;
        t.mem_pages = w->stats.mem_pages;
        t.zero_pages = w->stats.zero_pages;
        t.length = w->stats.bytes;
        t.digest = (Svemig__Digest)w->info.digest;
        t.digest_value = (ProtobufCBinaryData){w->stats.digest_bytes, w->stats.digest};
        len = svemig__trailer__get_packed_size(&t);
        if (len > sizeof(packed))
                return svemig_error_set(err, EOVERFLOW, "the trailer does not fit: %zu bytes", len);
        svemig__trailer__pack(&t, packed);
        frame_build(&f, SVEMIG_FRAME_TRAILER, true, packed, len, false, NULL);
        r = stream_writer_emit(w, &f, err);
        if (r < 0)
                return r;
        w->stats.frames--; /* the trailer does not count itself */
        w->finished = true;
        return 0;
}

int svemig_stream_writer_set_lz4(struct svemig_stream_writer *w, bool on, struct svemig_error *err)
{
        if (on && w->info.compression != SVEMIG_COMPRESSION_LZ4)
                return svemig_error_set(err, EINVAL,
                                        "the stream header says its frames are not compressed: open the "
                                        "writer with LZ4 compression to switch it on later");
        w->lz4 = on;
        return 0;
}

const struct svemig_stream_stats *svemig_stream_writer_stats(const struct svemig_stream_writer *w)
{
        return &w->stats;
}

static const char *magic_problem(const uint8_t m[STREAM_MAGIC_SIZE])
{
        static const uint8_t crlf_to_lf[] = {0x89, 'S', 'V', 'M', '\n', 0x1a, '\n'};
        static const uint8_t lf_to_crlf[] = {0x89, 'S', 'V', 'M', '\r', '\r', '\n', 0x1a};
        static const uint8_t lf_to_crlf2[] = {0x89, 'S', 'V', 'M', '\r', '\n', 0x1a, '\r'};

        if (memcmp(m, stream_magic, STREAM_MAGIC_SIZE) == 0)
                return NULL;
        if (m[0] == (0x89 & 0x7f) && memcmp(m + 1, "SVM", 3) == 0)
                return "its first byte lost its high bit: it went through a 7-bit channel";
        if (memcmp(m, crlf_to_lf, sizeof(crlf_to_lf)) == 0)
                return "CR LF became LF: it was copied in text mode";
        if (memcmp(m, lf_to_crlf, sizeof(lf_to_crlf)) == 0 ||
            memcmp(m, lf_to_crlf2, sizeof(lf_to_crlf2)) == 0)
                return "LF became CR LF: it was copied in text mode";
        if (memcmp(m, stream_magic, 4) == 0)
                return "its line-ending bytes are mangled: it was copied in text mode";
        return "this is not an svemig stream";
}

static size_t copy_string(char *dst, const char *src)
{
        return (size_t)snprintf(dst, SVEMIG_STREAM_STRING_MAX, "%s", src ? src : "");
}

static int vls_from_bytes(vqset_t *out, const ProtobufCBinaryData *b)
{
        vqset_clear(out);
        if (b->len == 0)
                return 0;
        if (b->len != KVMREG_VLS_BYTES)
                return -EBADMSG;
        memcpy(out->w, b->data, KVMREG_VLS_BYTES);
        return 0;
}

/* The header message into r->info, with every limit checked. */
/* An incremental stream's parent: a location and a digest together, declared by the PARENT kind. */
static int reader_take_parent(struct svemig_stream_reader *r, const Svemig__StreamHeader *h,
                              const char *where, struct svemig_error *err)
{
        struct svemig_stream_info *info = &r->info;
        bool declared = false;

        for (size_t i = 0; i < h->n_frame_kinds; i++)
                declared |= h->frame_kinds[i]->type == SVEMIG_FRAME_PARENT;
        if (!declared && !h->parent_location[0] && !h->parent_digest.len)
                return 0;
        if (!declared || !h->parent_location[0] || (h->parent_digest.len != 16 && h->parent_digest.len != 8))
                return svemig_error_set(err, EBADMSG,
                                        "%s: an incremental stream needs the PARENT kind, the parent's "
                                        "location and its 8- or 16-byte digest together",
                                        where);
        if ((size_t)snprintf(info->parent_location, sizeof(info->parent_location), "%s",
                             h->parent_location) >= sizeof(info->parent_location))
                return svemig_error_set(err, E2BIG,
                                        "%s: a parent location of %zu bytes, over the limit of %u", where,
                                        strlen(h->parent_location), SVEMIG_STREAM_LOCATION_MAX - 1);
        memcpy(info->parent_digest, h->parent_digest.data, h->parent_digest.len);
        info->parent_digest_bytes = (unsigned)h->parent_digest.len;
        return 0;
}

static int reader_take_header(struct svemig_stream_reader *r, const Svemig__StreamHeader *h,
                              const char *where, struct svemig_error *err)
{
        struct svemig_stream_info *info = &r->info;
        const char *strings[] = {
                h->producer ? h->producer->name : "",
                h->producer ? h->producer->version : "",
                h->producer ? h->producer->host_name : "",
                h->source_kernel,
                h->hypervisor,
                h->purpose,
        };
        char *dst[] = {info->producer_name, info->producer_version, info->host_name,
                       info->source_kernel, info->hypervisor,       info->purpose};
        size_t blob = 0, off = 0;
        int k_parent;

        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                if (copy_string(dst[i], strings[i]) >= SVEMIG_STREAM_STRING_MAX)
                        return svemig_error_set(err, E2BIG,
                                                "%s: a string of %zu bytes, over the limit of %u", where,
                                                strlen(strings[i]), SVEMIG_STREAM_STRING_MAX - 1);
        if (vls_from_bytes(&info->host_vls, &h->host_vls) < 0 ||
            vls_from_bytes(&info->guest_vls, &h->guest_vls) < 0)
                return svemig_error_set(err, EBADMSG, "%s: a VL set is %zu/%zu bytes, not %u", where,
                                        h->host_vls.len, h->guest_vls.len, KVMREG_VLS_BYTES);
        info->guest_max_vq = h->guest_max_vq;
        info->vcpu_features = h->vcpu_features;
        info->vcpu_count = h->vcpu_count;
        info->page_size = h->page_size;
        info->chunk_pages = h->chunk_pages;
        info->compression = (enum svemig_compression)h->compression;
        info->digest = (enum svemig_digest)h->digest;
        info->created_ns = h->created_ns;
        if (h->frame_checksum != SVEMIG__FRAME_CHECKSUM__FRAME_CHECKSUM_XXH3_64)
                return svemig_error_set(err, EPROTO,
                                        "%s: frame checksum algorithm %d is unknown to this reader", where,
                                        (int)h->frame_checksum);

        /* Counts first: nothing is allocated for a header that claims too much. */
        if (h->n_slots > SVEMIG_STREAM_SLOTS_MAX)
                return svemig_error_set(err, E2BIG, "%s: %zu memory slots, over the limit of %u", where,
                                        h->n_slots, SVEMIG_STREAM_SLOTS_MAX);
        if (h->n_id_regs > SVEMIG_STREAM_ID_REGS_MAX)
                return svemig_error_set(err, E2BIG, "%s: %zu ID registers, over the limit of %u", where,
                                        h->n_id_regs, SVEMIG_STREAM_ID_REGS_MAX);
        if (h->n_frame_kinds > SVEMIG_STREAM_FRAME_KINDS_MAX)
                return svemig_error_set(err, E2BIG, "%s: %zu frame kinds, over the limit of %u", where,
                                        h->n_frame_kinds, SVEMIG_STREAM_FRAME_KINDS_MAX);

        r->slots = calloc(h->n_slots + 1, sizeof(*r->slots));
        r->id_regs = calloc(h->n_id_regs + 1, sizeof(*r->id_regs));
        if (!r->slots || !r->id_regs)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < h->n_slots; i++) {
                r->slots[i].id = h->slots[i]->id;
                r->slots[i].gpa = h->slots[i]->gpa;
                r->slots[i].size = h->slots[i]->size;
        }
        info->slots = r->slots;
        info->n_slots = h->n_slots;

        for (size_t i = 0; i < h->n_id_regs; i++) {
                const Svemig__RegValue *v = h->id_regs[i];
                if (kvmreg_size(v->id) > KVMREG_MAX_BYTES || v->value.len != kvmreg_size(v->id))
                        return svemig_error_set(
                                err, EBADMSG, "%s: ID register 0x%016llx has %zu bytes, its ID says %u",
                                where, (unsigned long long)v->id, v->value.len, kvmreg_size(v->id));
                blob += v->value.len;
        }
        r->id_reg_blob = malloc(blob + 1);
        if (!r->id_reg_blob)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < h->n_id_regs; i++) {
                const Svemig__RegValue *v = h->id_regs[i];
                r->id_regs[i].id = v->id;
                r->id_regs[i].size = (uint32_t)v->value.len;
                r->id_regs[i].value = r->id_reg_blob + off;
                memcpy(r->id_reg_blob + off, v->value.data, v->value.len);
                off += v->value.len;
        }
        info->id_regs = r->id_regs;
        info->n_id_regs = h->n_id_regs;

        k_parent = reader_take_parent(r, h, where, err);
        if (k_parent < 0)
                return k_parent;
        for (size_t i = 0; i < h->n_frame_kinds; i++) {
                const Svemig__FrameKind *k = h->frame_kinds[i];
                struct frame_kind *fk = &r->kinds[r->n_kinds++];

                if (k->type == 0 || k->type > UINT16_MAX || k->since_minor > UINT16_MAX)
                        return svemig_error_set(err, EBADMSG,
                                                "%s: frame kind %u (since v1.%u) is out of range", where,
                                                k->type, k->since_minor);
                fk->type = (uint16_t)k->type;
                fk->since_minor = (uint16_t)k->since_minor;
                fk->required = k->required;
                snprintf(fk->name, sizeof(fk->name), "%s", k->name ? k->name : "");
                if (fk->type >= SVEMIG_FRAME_VGIC && fk->type <= SVEMIG_FRAME_VIRTIO)
                        info->devices = true;
                /* A stream that will carry a required frame this build cannot read is refused now. */
                if (fk->required && !frame_known_kind(fk->type))
                        return svemig_error_set(
                                err, EPROTO,
                                "%s: the stream carries required frames of type %u (\"%s\"), "
                                "introduced in stream format v%u.%u; this svemig reads v%u.%u: "
                                "upgrade svemig to read it",
                                where, fk->type, fk->name, SVEMIG_STREAM_MAJOR, fk->since_minor,
                                SVEMIG_STREAM_MAJOR, SVEMIG_STREAM_MINOR);
        }
        return info_check(info, EBADMSG, where, err);
}

void svemig_stream_reader_free(struct svemig_stream_reader *r)
{
        if (!r)
                return;
        workpool_free(r->pool);
        memchunk_reader_free(r->mem);
        if (r->digest)
                XXH3_freeState(r->digest);
        bytebuf_done(&r->buf);
        bytebuf_done(&r->raw);
        pbarena_done(&r->arena);
        free(r->slots);
        free(r->id_regs);
        free(r->id_reg_blob);
        free(r);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct svemig_stream_reader *, svemig_stream_reader_free);

static int reader_open_header(struct svemig_stream_reader *r, struct svemig_error *err)
{
        uint8_t pre[STREAM_PREAMBLE_SIZE];
        Svemig__StreamHeader *h;
        uint32_t len, major, minor;
        uint64_t want, have;
        const char *problem;
        char where[64];
        int k;

        k = stream_reader_get(r, pre, STREAM_MAGIC_SIZE, "inside the magic", err);
        if (k < 0)
                return k;
        problem = magic_problem(pre);
        /* Named, never shown: the bytes of a file that is no stream are none of the reader's business. */
        if (problem)
                return svemig_error_set(err, EBADMSG, "offset 0: wrong magic: %s", problem);
        k = stream_reader_get(r, pre + STREAM_MAGIC_SIZE, STREAM_PREAMBLE_SIZE - STREAM_MAGIC_SIZE,
                              "inside the version and header length", err);
        if (k < 0)
                return k;
        major = get_le16(pre + 8);
        minor = get_le16(pre + 10);
        len = get_le32(pre + 12);
        if (major != SVEMIG_STREAM_MAJOR)
                return svemig_error_set(err, EPROTONOSUPPORT,
                                        "offset 8: stream format v%u.%u; this svemig reads v%u.x only%s",
                                        major, minor, SVEMIG_STREAM_MAJOR,
                                        major > SVEMIG_STREAM_MAJOR ? ": upgrade svemig to read it" : "");
        if (len > SVEMIG_STREAM_HEADER_MAX)
                return svemig_error_set(err, E2BIG, "offset 12: a header of %u bytes, over the limit of %u",
                                        len, SVEMIG_STREAM_HEADER_MAX);
        if (bytebuf_reserve(&r->buf, STREAM_PREAMBLE_SIZE + (size_t)len + 8) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        memcpy(r->buf.p, pre, STREAM_PREAMBLE_SIZE);
        k = stream_reader_get(r, r->buf.p + STREAM_PREAMBLE_SIZE, (size_t)len + 8, "inside the header", err);
        if (k < 0)
                return k;
        want = get_le64(r->buf.p + STREAM_PREAMBLE_SIZE + len);
        have = checksum64(r->buf.p, STREAM_PREAMBLE_SIZE + len);
        if (want != have)
                return svemig_error_set(err, EBADMSG,
                                        "offset %u: header checksum mismatch (stored 0x%016llx, computed "
                                        "0x%016llx): the header is corrupt",
                                        STREAM_PREAMBLE_SIZE + len, (unsigned long long)want,
                                        (unsigned long long)have);
        if (pbarena_reset(&r->arena, pbarena_budget(len)) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        h = svemig__stream_header__unpack(&r->arena.allocator, len, r->buf.p + STREAM_PREAMBLE_SIZE);
        if (!h)
                return svemig_error_set(err, EBADMSG,
                                        "offset %u: the header is not a valid StreamHeader message",
                                        STREAM_PREAMBLE_SIZE);
        r->info.major = major;
        r->info.minor = minor;
        snprintf(where, sizeof(where), "offset %u: header", STREAM_PREAMBLE_SIZE);
        k = reader_take_header(r, h, where, err);
        if (k < 0)
                return k;

        stream_digest_reset(r->digest, r->info.digest);
        stream_digest_update(r->digest, r->info.digest, r->buf.p, STREAM_PREAMBLE_SIZE + (size_t)len + 8);
        return 0;
}

int svemig_stream_reader_open(int fd, const struct svemig_stream_read_opts *opts,
                              struct svemig_stream_reader **out, struct svemig_error *err)
{
        _cleanup_(svemig_stream_reader_freep) struct svemig_stream_reader *r = NULL;
        int k;

        if (fd < 0 || !out)
                return svemig_error_set(err, EINVAL, "stream reader: no fd or result given");
        r = calloc(1, sizeof(*r));
        if (!r)
                return svemig_error_set(err, ENOMEM, "stream reader: out of memory");
        r->fd = fd;
        r->n_threads = opts ? opts->n_threads : 0;
        pbarena_init(&r->arena);
        r->digest = XXH3_createState();
        if (!r->digest)
                return svemig_error_set(err, ENOMEM, "stream reader: out of memory");
        k = reader_open_header(r, err);
        if (k < 0)
                return k;
        *out = r;
        r = NULL;
        return 0;
}

_Static_assert(SVEMIG_STREAM_PREAMBLE_SIZE == STREAM_PREAMBLE_SIZE,
               "the public preamble size is the format's");

int svemig_stream_header_size(const void *preamble, size_t *out, struct svemig_error *err)
{
        const uint8_t *pre = preamble;
        const char *problem = magic_problem(pre);
        uint32_t len;

        if (problem)
                return svemig_error_set(err, EBADMSG, "offset 0: wrong magic: %s", problem);
        if (get_le16(pre + 8) != SVEMIG_STREAM_MAJOR)
                return svemig_error_set(err, EPROTONOSUPPORT,
                                        "offset 8: stream format v%u.%u; this svemig reads v%u.x only",
                                        get_le16(pre + 8), get_le16(pre + 10), SVEMIG_STREAM_MAJOR);
        len = get_le32(pre + 12);
        if (len > SVEMIG_STREAM_HEADER_MAX)
                return svemig_error_set(err, E2BIG, "offset 12: a header of %u bytes, over the limit of %u",
                                        len, SVEMIG_STREAM_HEADER_MAX);
        *out = STREAM_PREAMBLE_SIZE + (size_t)len + 8;
        return 0;
}

int svemig_stream_reader_open_mem(const void *buf, size_t len, struct svemig_stream_reader **out,
                                  struct svemig_error *err)
{
        _cleanup_close_ int fd = -1;
        int k;

        /* The reader reads from a descriptor: a memfd holds the bytes (a header is at most 1 MiB). */
        if (len > STREAM_PREAMBLE_SIZE + (size_t)SVEMIG_STREAM_HEADER_MAX + 8)
                len = STREAM_PREAMBLE_SIZE + (size_t)SVEMIG_STREAM_HEADER_MAX + 8;
        fd = memfd_create("svemig-header", MFD_CLOEXEC);
        if (fd < 0)
                return svemig_error_set(err, errno, "memfd_create: %s", strerror(errno));
        if (write(fd, buf, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) != 0)
                return svemig_error_set(err, errno ? errno : EIO, "cannot hold the stream header: %s",
                                        strerror(errno ? errno : EIO));
        k = svemig_stream_reader_open(fd, NULL, out, err);
        if (k == 0)
                (*out)->fd = -1; /* past the header, reading fails (EBADF) instead of using another file */
        return k;
}

const struct svemig_stream_info *svemig_stream_reader_info(const struct svemig_stream_reader *r)
{
        return &r->info;
}

uint64_t svemig_stream_reader_offset(const struct svemig_stream_reader *r)
{
        return r->offset;
}

const struct svemig_stream_stats *svemig_stream_reader_stats(const struct svemig_stream_reader *r)
{
        return &r->stats;
}

/* Checks and decompresses the pending frame's payload into r->raw. */
int stream_reader_open_payload(struct svemig_stream_reader *r, const uint8_t **raw, struct svemig_error *err)
{
        if (bytebuf_reserve(&r->raw, (size_t)r->head.raw_len + 1) < 0 ||
            pbarena_reset(&r->arena, pbarena_budget(r->head.raw_len)) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        return frame_payload_open(&r->head, r->buf.p, r->raw.p, raw, r->head_offset, err);
}

static int reader_trailer(struct svemig_stream_reader *r, struct svemig_error *err)
{
        const struct svemig_stream_stats *s = &r->stats;
        unsigned dlen = r->info.digest == SVEMIG_DIGEST_XXH3_64 ? 8 : 16;
        unsigned long long off = r->head_offset;
        const uint8_t *raw;
        Svemig__Trailer *t;
        int k;

        k = stream_reader_open_payload(r, &raw, err);
        if (k < 0)
                return k;
        t = svemig__trailer__unpack(&r->arena.allocator, r->head.raw_len, raw);
        if (!t)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: the trailer is not a valid Trailer message", off);
        if (t->length != r->head_offset)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: the trailer says the stream before it has %llu bytes",
                                        off, (unsigned long long)t->length);
        if (t->frames != s->frames || t->vcpus != s->vcpus || t->mem_chunks != s->mem_chunks)
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: the trailer counts %llu frames (%u vcpus, %llu memory "
                        "chunks) but the stream has %llu (%u, %llu): frames were lost or added",
                        off, (unsigned long long)t->frames, t->vcpus, (unsigned long long)t->mem_chunks,
                        (unsigned long long)s->frames, s->vcpus, (unsigned long long)s->mem_chunks);
        if (r->mem_decoded == s->mem_chunks &&
            (t->mem_pages != s->mem_pages || t->zero_pages != s->zero_pages))
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: the trailer counts %llu pages (%llu zero) but the memory "
                        "frames carry %llu (%llu)",
                        off, (unsigned long long)t->mem_pages, (unsigned long long)t->zero_pages,
                        (unsigned long long)s->mem_pages, (unsigned long long)s->zero_pages);
        if (s->vcpus != r->info.vcpu_count)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: the stream holds %u vcpus but its header announces %u",
                                        off, s->vcpus, r->info.vcpu_count);
        if ((unsigned)t->digest != (unsigned)r->info.digest || t->digest_value.len != dlen)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: the trailer's digest is not the header's %s", off,
                                        svemig_digest_name(r->info.digest));
        if (memcmp(t->digest_value.data, r->trailer_digest, dlen) != 0)
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: the %s digest of the stream does not match its trailer: "
                        "the stream is corrupt",
                        off, svemig_digest_name(r->info.digest));
        memcpy(r->stats.digest, r->trailer_digest, dlen);
        r->stats.digest_bytes = dlen;
        r->stats.bytes = r->offset;
        return 0;
}

int svemig_stream_next(struct svemig_stream_reader *r, struct svemig_error *err)
{
        int k = stream_check(&r->failure, err);

        if (k < 0)
                return k;
        if (r->done)
                return 0;
        /* A frame read ahead by svemig_stream_read_memory() is returned now; a returned one is passed over.
         */
        if (!r->pending || r->pending_seen) {
                r->pending = false;
                k = stream_reader_read_frame(r, err);
                if (k < 0)
                        return stream_fail(&r->failure, k, err);
        }
        if (r->head.type == SVEMIG_FRAME_TRAILER) {
                r->pending = false;
                k = reader_trailer(r, err);
                if (k < 0)
                        return stream_fail(&r->failure, k, err);
                r->done = true;
                return 0;
        }
        r->pending_seen = true;
        r->stats.bytes = r->offset;
        return r->head.type;
}

int stream_vcpu_decode(const struct svemig_stream_info *info, const struct frame_head *h,
                       const uint8_t *stored, uint64_t offset, struct bytebuf *scratch,
                       struct pbarena *arena, struct vcpu_state *st, struct svemig_error *err)
{
        unsigned long long off = offset;
        _cleanup_free_ uint64_t *ids = NULL, *sorted = NULL;
        struct vcpu_state out = {0};
        const uint8_t *raw;
        Svemig__VcpuState *m;
        int k;

        if (bytebuf_reserve(scratch, (size_t)h->raw_len + 1) < 0 ||
            pbarena_reset(arena, pbarena_budget(h->raw_len)) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        k = frame_payload_open(h, stored, scratch->p, &raw, offset, err);
        if (k < 0)
                return k;
        m = svemig__vcpu_state__unpack(&arena->allocator, h->raw_len, raw);
        if (!m)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: the VCPU frame is not a valid VcpuState message", off);
        if (m->index >= info->vcpu_count)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: vcpu %u, but the header announces %u vcpus", off,
                                        m->index, info->vcpu_count);
        if (m->n_regs > SVEMIG_STREAM_REGS_MAX)
                return svemig_error_set(err, E2BIG,
                                        "offset %llu: vcpu %u has %zu registers, over the limit of %u", off,
                                        m->index, m->n_regs, SVEMIG_STREAM_REGS_MAX);
        if (vls_from_bytes(&out.vls, &m->vls) < 0)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: vcpu %u: its VL set has %zu bytes, not %u", off,
                                        m->index, m->vls.len, KVMREG_VLS_BYTES);

        ids = calloc(m->n_regs + 1, sizeof(*ids));
        sorted = calloc(m->n_regs + 1, sizeof(*sorted));
        if (!ids || !sorted)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < m->n_regs; i++) {
                const Svemig__RegValue *v = m->regs[i];

                if (kvmreg_size(v->id) > KVMREG_MAX_BYTES || v->value.len != kvmreg_size(v->id))
                        return svemig_error_set(
                                err, EBADMSG,
                                "offset %llu: vcpu %u: register 0x%016llx has %zu bytes, its ID "
                                "says %u (at most %u)",
                                off, m->index, (unsigned long long)v->id, v->value.len, kvmreg_size(v->id),
                                KVMREG_MAX_BYTES);
                ids[i] = sorted[i] = v->id;
        }
        qsort(sorted, m->n_regs, sizeof(*sorted), cmp_u64);
        for (size_t i = 1; i < m->n_regs; i++)
                if (sorted[i] == sorted[i - 1])
                        return svemig_error_set(err, EBADMSG,
                                                "offset %llu: vcpu %u: register 0x%016llx appears twice",
                                                off, m->index, (unsigned long long)sorted[i]);

        if (vcpu_state_alloc(&out, ids, m->n_regs) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < m->n_regs; i++)
                memcpy(out.regs[i].value, m->regs[i]->value.data, out.regs[i].size);
        out.index = m->index;
        out.features = m->features;
        (void)vls_from_bytes(&out.vls, &m->vls);
        out.mp_state = m->mp_state;
        *st = out;
        return 0;
}

static int reader_vcpu(struct svemig_stream_reader *r, struct vcpu_state *st, struct svemig_error *err)
{
        int k = stream_vcpu_decode(&r->info, &r->head, r->buf.p, r->head_offset, &r->raw, &r->arena, st,
                                   err);

        if (k < 0)
                return k;
        if (r->vcpu_seen[st->index / 8] & (1u << (st->index % 8))) {
                k = svemig_error_set(err, EBADMSG, "offset %llu: vcpu %u appears twice",
                                     (unsigned long long)r->head_offset, st->index);
                vcpu_state_done(st);
                return k;
        }
        r->vcpu_seen[st->index / 8] |= 1u << (st->index % 8);
        return 0;
}

/* 0 when a VCPU frame is pending for the caller. */
static int vcpu_pending(const struct svemig_stream_reader *r, struct svemig_error *err)
{
        int k = stream_check(&r->failure, err);

        if (k < 0)
                return k;
        if (!r->pending || !r->pending_seen || r->head.type != SVEMIG_FRAME_VCPU)
                return svemig_error_set(err, EINVAL,
                                        "no VCPU frame is pending: call svemig_stream_next() first");
        return 0;
}

int stream_reader_take_vcpu(struct svemig_stream_reader *r, struct bytebuf *buf, struct frame_head *h,
                            uint64_t *offset, struct svemig_error *err)
{
        struct bytebuf t;
        int k = vcpu_pending(r, err);

        if (k < 0)
                return k;
        t = *buf;
        *buf = r->buf;
        r->buf = t;
        *h = r->head;
        *offset = r->head_offset;
        r->pending = false;
        return 0;
}

int svemig_stream_read_vcpu(struct svemig_stream_reader *r, struct vcpu_state *st, struct svemig_error *err)
{
        int k = vcpu_pending(r, err);

        if (k < 0)
                return k;
        k = reader_vcpu(r, st, err);
        if (k < 0)
                return stream_fail(&r->failure, k, err);
        r->pending = false;
        return 0;
}
