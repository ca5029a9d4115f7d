/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Every fallible svemig function returns 0 or a negative errno. When it fails
 * and the caller passed a struct svemig_error, the struct also holds a
 * sentence a person can act on: what was wrong and, where it helps, what to do.
 */

#include <stdarg.h>
#include <stddef.h>

#define SVEMIG_ERROR_MSG_MAX 512

struct svemig_error {
        int code; /* positive errno, 0 when no error was recorded */
        char msg[SVEMIG_ERROR_MSG_MAX];
};

/*
 * Records errno 'code' (positive or negative) and a printf-style reason in
 * 'err' (which may be NULL) and returns -|code|, so a caller can write
 * `return svemig_error_set(err, EINVAL, "...")`.
 */
int svemig_error_set(struct svemig_error *err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
int svemig_error_setv(struct svemig_error *err, int code, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

/* Prepends "context: " to an already recorded reason and returns -err->code. */
int svemig_error_prefix(struct svemig_error *err, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Clears a recorded error. */
void svemig_error_clear(struct svemig_error *err);

/* The recorded reason, or strerror of 'code' when none was recorded. */
const char *svemig_error_str(const struct svemig_error *err, int code);
