/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* svemigctl's --json output: the pieces its commands share. */

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/vqset.h"

/* Prints a JSON document on stdout and frees it; returns CTL_EXIT_OK or CTL_EXIT_FAILURE. */
int ctl_print_json(struct json_object *doc);
/* An array of numbers, e.g. vector lengths in bits. */
struct json_object *ctl_json_u32s(const uint32_t *v, size_t n);
/* A vector-length set as an array of its lengths in bits. */
struct json_object *ctl_json_vq_bits(const vqset_t *s);
