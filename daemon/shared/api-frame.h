/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The control socket's framing, shared by svemigd and svemigctl: each
 * message is a u32 little-endian length and that many bytes of protobuf
 * (proto/api.proto). Frames above API_FRAME_MAX are refused by both ends.
 */

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "api.pb-c.h"

#define API_FRAME_HEADER_SIZE 4u
#define API_FRAME_MAX         (16u << 20)

static inline uint32_t api_frame_length(const uint8_t header[API_FRAME_HEADER_SIZE])
{
        return (uint32_t)header[0] | (uint32_t)header[1] << 8 | (uint32_t)header[2] << 16 |
               (uint32_t)header[3] << 24;
}

static inline void api_frame_set_length(uint8_t header[API_FRAME_HEADER_SIZE], uint32_t len)
{
        header[0] = (uint8_t)len;
        header[1] = (uint8_t)(len >> 8);
        header[2] = (uint8_t)(len >> 16);
        header[3] = (uint8_t)(len >> 24);
}

/*
 * Packs msg into a new frame (header included), malloc'ed into *frame.
 * -EMSGSIZE when the message exceeds API_FRAME_MAX, -ENOMEM.
 */
int api_frame_pack(const ProtobufCMessage *msg, uint8_t **frame, size_t *size);

/* The errno-style name of a status code, e.g. "EACCES", for logs and --json. */
const char *api_errno_name(int code);
