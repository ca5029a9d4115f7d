/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The text of a protobuf message before it is decoded: protobuf-c hands a
 * string field over as a C string, so an embedded NUL would silently cut it
 * ("ab\0cd" is "ab"), and proto3 strings must be UTF-8.
 */

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Checks every string field of the encoded message buf[0..len) of type d,
 * in nested messages too: 0, or -EILSEQ with *bad_field set to the field's
 * name and *why to "holds a NUL byte" or "is not UTF-8". Bytes that are not
 * a well-formed message are left to the decoder to refuse.
 */
int pb_check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                     const char **bad_field, const char **why);
