/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api-frame.h"

int api_frame_pack(const ProtobufCMessage *msg, uint8_t **frame, size_t *size)
{
        size_t len = protobuf_c_message_get_packed_size(msg);
        uint8_t *buf;

        if (len > API_FRAME_MAX)
                return -EMSGSIZE;
        buf = malloc(API_FRAME_HEADER_SIZE + len);
        if (!buf)
                return -ENOMEM;
        api_frame_set_length(buf, (uint32_t)len);
        protobuf_c_message_pack(msg, buf + API_FRAME_HEADER_SIZE);
        *frame = buf;
        *size = API_FRAME_HEADER_SIZE + len;
        return 0;
}

const char *api_errno_name(int code)
{
        const char *name = strerrorname_np(code);

        return name ? name : "EUNKNOWN";
}
