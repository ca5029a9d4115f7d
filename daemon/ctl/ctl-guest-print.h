/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* How svemigctl prints guests: for a person, or as JSON (the same fields, named as in api.proto). */

#include <json-c/json.h>

#include "api.pb-c.h"
#include "ctl-json.h"

struct json_object *ctl_guest_json(const Svemig__Api__Guest *g);
void ctl_guest_print(const Svemig__Api__Guest *g);
/* One line per guest under a header. */
void ctl_guest_table(Svemig__Api__Guest *const *guests, size_t n);

/* "2026-11-21 16:41:12 UTC" */
void ctl_format_time(uint64_t ns, char *buf, size_t len);
