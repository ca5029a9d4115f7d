/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The numbers an operator types, on svemigctl's command line and in
 * migrate.conf, read one way everywhere. Each returns 0 or -EINVAL (-ERANGE
 * past max); the caller words the error, as it knows the option.
 */

#include <stdint.h>

/* A whole decimal number from 0 to max: "12", never "-1", "+3", " 4" or "5x". */
int parse_count(const char *s, uint64_t max, uint64_t *out);

/* Bytes: N, or N with K, M or G (powers of 1024, either case) and an optional B or iB: "256M", "1GiB". */
int parse_size(const char *s, uint64_t *out);
