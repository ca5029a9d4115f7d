/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* svemigctl inspect's view of the device frames (ctl-inspect-dev.c). */

#include <stdbool.h>

#include <json-c/json.h>

/* A device frame (SVEMIG_FRAME_VGIC..VIRTIO, st its decoded struct), by name; summary: no registers. */
void inspect_device_text(int type, const void *st, bool summary);
struct json_object *inspect_device_json(int type, const void *st, bool summary);
