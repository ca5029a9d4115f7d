/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Text that others wrote (a peer's host name, a stream's producer, a
 * client's request) checked before it is trusted, and escaped before it
 * reaches a journal, a terminal or JSON.
 */

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid UTF-8 sequence at s[0..len), or 0 (overlong forms, surrogates and > U+10FFFF are
 * invalid). */
size_t utf8_char_len(const char *s, size_t len);

/* s[0..len) is valid UTF-8 with no NUL. */
bool utf8_valid(const char *s, size_t len);

/* s[0..len) is valid UTF-8 with no control character (C0, DEL, C1): it may be printed as it is. */
bool utf8_printable(const char *s, size_t len);

/*
 * s[0..len) into out[0..size), NUL-terminated: control characters and bytes
 * that are not UTF-8 become "\xNN", everything else is copied; truncated at a
 * character boundary. Returns out.
 */
char *utf8_escape(const char *s, size_t len, char *out, size_t size);

/* A malloc'd escaped copy of the string s (NULL as ""); NULL when out of memory. */
char *utf8_escape_dup(const char *s);
