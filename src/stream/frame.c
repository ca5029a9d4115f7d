/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Frames: build, seal, parse and open them (docs/stream-format.md, "Frames"). */
#include <errno.h>
#include <lz4.h>
#include <string.h>
#include <xxhash.h>

#include "checksum.h"
#include "macro.h"
#include "stream/frame.h"
#include "svemig/stream.h"
#include "unaligned.h"

/* Like PNG's: a high-bit byte, then CR LF, ^Z and LF, so that text-mode copies show. */
const uint8_t stream_magic[STREAM_MAGIC_SIZE] = {0x89, 'S', 'V', 'M', '\r', '\n', 0x1a, '\n'};

/* The frame types of this version, with the minor that introduced each. */
const struct frame_kind frame_kinds[FRAME_KINDS_N] = {
        {SVEMIG_FRAME_VCPU, 0, true, "VCPU"},
        {SVEMIG_FRAME_MEMORY, 0, true, "MEMORY"},
        {SVEMIG_FRAME_TRAILER, 0, true, "TRAILER"},
        {SVEMIG_FRAME_PARENT, SVEMIG_STREAM_MINOR_PARENT, true, "PARENT"},
        {SVEMIG_FRAME_VGIC, FRAME_DEVICES_MINOR, true, "VGIC"},
        {SVEMIG_FRAME_TIMERS, FRAME_DEVICES_MINOR, true, "TIMERS"},
        {SVEMIG_FRAME_CONSOLE, FRAME_DEVICES_MINOR, true, "CONSOLE"},
        {SVEMIG_FRAME_VIRTIO, FRAME_DEVICES_MINOR, true, "VIRTIO"},
};

const struct frame_kind *frame_known_kind(uint32_t type)
{
        for (size_t i = 0; i < ELEMENTSOF(frame_kinds); i++)
                if (frame_kinds[i].type == type)
                        return &frame_kinds[i];
        return NULL;
}

const char *svemig_frame_type_name(uint32_t type)
{
        const struct frame_kind *k = frame_known_kind(type);
        return k ? k->name : NULL;
}

size_t frame_lz4_bound(size_t raw_len)
{
        return (size_t)LZ4_compressBound((int)raw_len);
}

/*
 * The head and tail of a frame whose payload (stored_len bytes, raw_len
 * decompressed) is in place; the check covers f's payload, which is all of
 * it except with FRAME_F_PAGE_CHECKS.
 */
static void frame_finish(struct frame_out *f, uint16_t type, uint32_t flags, uint16_t since_minor,
                         size_t stored_len, size_t raw_len)
{
        put_le16(f->head, type);
        put_le16(f->head + 2, since_minor);
        put_le32(f->head + 4, flags);
        put_le32(f->head + 8, (uint32_t)stored_len);
        put_le32(f->head + 12, (uint32_t)raw_len);
        put_le32(f->head + 16, XXH32(f->head, 16, FRAME_HEAD_SEED));
        put_le64(f->tail, checksum64(f->payload, f->len));
}

void frame_build(struct frame_out *f, uint16_t type, bool required, const uint8_t *raw, size_t raw_len,
                 bool lz4, uint8_t *zbuf)
{
        const struct frame_kind *k = frame_known_kind(type);
        uint32_t flags = required ? FRAME_F_REQUIRED : 0;

        f->payload = raw;
        f->len = raw_len;
        if (lz4 && raw_len > 0) {
                int z = LZ4_compress_default((const char *)raw, (char *)zbuf, (int)raw_len,
                                             (int)frame_lz4_bound(raw_len));
                /* Only where it pays: incompressible payloads are stored as they are. */
                if (z > 0 && (size_t)z < raw_len) {
                        f->payload = zbuf;
                        f->len = (size_t)z;
                        flags |= FRAME_F_LZ4;
                }
        }
        frame_finish(f, type, flags, k ? k->since_minor : SVEMIG_STREAM_MINOR, f->len, raw_len);
}

void frame_seal_fields(struct frame_out *f, uint16_t type, uint32_t flags, uint16_t since_minor,
                       const uint8_t *fields, size_t len, size_t data_len)
{
        f->payload = fields;
        f->len = len;
        frame_finish(f, type, flags, since_minor, len + data_len, len + data_len);
}

void frame_seal(struct frame_out *f, uint16_t type, uint32_t flags, uint16_t since_minor,
                const uint8_t *payload, size_t len)
{
        frame_seal_fields(f, type, flags, since_minor, payload, len, 0);
}

int frame_head_parse(const uint8_t head[FRAME_HEAD_SIZE], struct frame_head *h, uint64_t offset,
                     struct svemig_error *err)
{
        uint32_t stored = get_le32(head + 16), computed = XXH32(head, 16, FRAME_HEAD_SEED);

        if (stored != computed)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: frame head checksum mismatch (stored 0x%08x, computed "
                                        "0x%08x): the stream is corrupt here",
                                        (unsigned long long)offset, stored, computed);
        h->type = get_le16(head);
        h->since_minor = get_le16(head + 2);
        h->flags = get_le32(head + 4);
        h->stored_len = get_le32(head + 8);
        h->raw_len = get_le32(head + 12);

        if (h->type == 0)
                return svemig_error_set(err, EBADMSG, "offset %llu: frame type 0 is invalid",
                                        (unsigned long long)offset);
        if (h->flags & FRAME_F_MUST_KNOW & ~FRAME_F_KNOWN)
                return svemig_error_set(err, EPROTO,
                                        "offset %llu: frame type %u sets flags 0x%04x that this reader does "
                                        "not understand (introduced in stream format v%u.%u; this svemig "
                                        "reads v%u.%u): upgrade svemig",
                                        (unsigned long long)offset, h->type,
                                        h->flags & FRAME_F_MUST_KNOW & ~FRAME_F_KNOWN, SVEMIG_STREAM_MAJOR,
                                        h->since_minor, SVEMIG_STREAM_MAJOR, SVEMIG_STREAM_MINOR);
        if (h->stored_len > SVEMIG_STREAM_FRAME_MAX || h->raw_len > SVEMIG_STREAM_FRAME_MAX)
                return svemig_error_set(
                        err, E2BIG,
                        "offset %llu: frame type %u claims %u bytes (%u decompressed), over the "
                        "limit of %u",
                        (unsigned long long)offset, h->type, h->stored_len, h->raw_len,
                        SVEMIG_STREAM_FRAME_MAX);
        if (!(h->flags & FRAME_F_LZ4) && h->stored_len != h->raw_len)
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: uncompressed frame type %u has stored length %u but raw "
                        "length %u",
                        (unsigned long long)offset, h->type, h->stored_len, h->raw_len);
        if ((h->flags & FRAME_F_PAGE_CHECKS) &&
            (h->type != SVEMIG_FRAME_MEMORY || (h->flags & (FRAME_F_LZ4 | FRAME_F_PAGE_LZ4))))
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: frame type %u sets flag PAGE_CHECKS, which only raw "
                                        "MEMORY frames carry",
                                        (unsigned long long)offset, h->type);
        if ((h->flags & FRAME_F_LZ4) && (h->stored_len == 0 || h->stored_len > frame_lz4_bound(h->raw_len)))
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: LZ4 frame type %u: %u stored bytes cannot decompress to %u",
                        (unsigned long long)offset, h->type, h->stored_len, h->raw_len);
        return 0;
}

int frame_payload_open(const struct frame_head *h, const uint8_t *stored, uint8_t *scratch,
                       const uint8_t **raw, uint64_t offset, struct svemig_error *err)
{
        uint64_t want = get_le64(stored + h->stored_len), have = checksum64(stored, h->stored_len);
        const char *name = svemig_frame_type_name(h->type);

        if (h->flags & FRAME_F_PAGE_CHECKS) /* its pages are checked one by one, where they land */
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: a MEMORY frame with a check per page (flag "
                                        "PAGE_CHECKS), which only a live migration's memory channels "
                                        "carry, and only laid out straight into the guest",
                                        (unsigned long long)offset);
        if (want != have)
                return svemig_error_set(err, EBADMSG,
                                        "offset %llu: %s frame payload checksum mismatch (stored 0x%016llx, "
                                        "computed 0x%016llx): the stream is corrupt",
                                        (unsigned long long)offset, name ? name : "unknown",
                                        (unsigned long long)want, (unsigned long long)have);
        if (!(h->flags & FRAME_F_LZ4)) {
                *raw = stored;
                return 0;
        }
        if (LZ4_decompress_safe((const char *)stored, (char *)scratch, (int)h->stored_len,
                                (int)h->raw_len) != (int)h->raw_len)
                return svemig_error_set(
                        err, EBADMSG,
                        "offset %llu: %s frame: its LZ4 data does not decompress to the %u bytes "
                        "its head announces",
                        (unsigned long long)offset, name ? name : "unknown", h->raw_len);
        *raw = scratch;
        return 0;
}

size_t memchunk_fields_max(uint32_t chunk_pages)
{
        /*
         * slot, gpa, page_count; three bitmaps; the LZ4 sizes (each < 65536:
         * 3 bytes); the page checks; data's tag, length.
         */
        return 32 + 3 * (3 + DIV_ROUND_UP(chunk_pages, 8)) + 4 + 3 * (size_t)chunk_pages + 4 +
               8 * (size_t)chunk_pages + 6;
}

size_t memchunk_raw_max(uint32_t page_size, uint32_t chunk_pages)
{
        return memchunk_fields_max(chunk_pages) + (size_t)chunk_pages * page_size;
}
