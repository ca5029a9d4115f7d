/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

#include "pbcheck.h"
#include "utf8.h"

/* Deeper than any svemig message nests; a crafted message cannot recurse without end. */
#define PB_CHECK_DEPTH_MAX 16

static bool read_varint(const uint8_t *buf, size_t len, size_t *i, uint64_t *out)
{
        uint64_t v = 0;

        for (unsigned shift = 0; shift < 64 && *i < len; shift += 7) {
                uint8_t b = buf[(*i)++];

                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *out = v;
                        return true;
                }
        }
        return false;
}

static int check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, unsigned depth,
                 const char **bad_field, const char **why)
{
        size_t i = 0;

        if (depth > PB_CHECK_DEPTH_MAX)
                return 0;
        while (i < len) {
                const ProtobufCFieldDescriptor *f;
                uint64_t key, n;

                if (!read_varint(buf, len, &i, &key))
                        return 0;
                switch (key & 7) {
                case 0:
                        if (!read_varint(buf, len, &i, &n))
                                return 0;
                        continue;
                case 1:
                        i += 8;
                        continue;
                case 5:
                        i += 4;
                        continue;
                case 2:
                        break;
                default:
                        return 0;
                }
                if (!read_varint(buf, len, &i, &n) || n > len - i)
                        return 0;
                f = key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3))
                                           : NULL;
                if (f && f->type == PROTOBUF_C_TYPE_STRING) {
                        if (memchr(buf + i, '\0', n) || !utf8_valid((const char *)buf + i, n)) {
                                *bad_field = f->name;
                                *why = memchr(buf + i, '\0', n) ? "holds a NUL byte" : "is not UTF-8";
                                return -EILSEQ;
                        }
                } else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                        int r = check(f->descriptor, buf + i, n, depth + 1, bad_field, why);

                        if (r < 0)
                                return r;
                }
                i += n;
        }
        return 0;
}

int pb_check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                     const char **bad_field, const char **why)
{
        return check(d, buf, len, 0, bad_field, why);
}
