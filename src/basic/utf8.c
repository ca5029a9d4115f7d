/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

size_t utf8_char_len(const char *str, size_t len)
{
        const uint8_t *s = (const uint8_t *)str;
        uint32_t cp;
        size_t n;

        if (len == 0)
                return 0;
        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                n = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4, cp = s[0] & 0x07;
        else
                return 0;
        if (len < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

bool utf8_valid(const char *s, size_t len)
{
        for (size_t i = 0, n; i < len; i += n) {
                n = utf8_char_len(s + i, len - i);
                if (n == 0 || s[i] == '\0')
                        return false;
        }
        return true;
}

/* A control character: C0, DEL, or C1 (U+0080..U+009F, 0xc2 0x80..0x9f in UTF-8). */
static bool is_control(const char *s, size_t n)
{
        uint8_t c = (uint8_t)s[0];

        return (n == 1 && (c < 0x20 || c == 0x7f)) || (n == 2 && c == 0xc2 && (uint8_t)s[1] < 0xa0);
}

bool utf8_printable(const char *s, size_t len)
{
        for (size_t i = 0, n; i < len; i += n) {
                n = utf8_char_len(s + i, len - i);
                if (n == 0 || is_control(s + i, n))
                        return false;
        }
        return true;
}

char *utf8_escape(const char *s, size_t len, char *out, size_t size)
{
        size_t o = 0;

        if (size == 0)
                return out;
        for (size_t i = 0, n; i < len; i += n) {
                n = utf8_char_len(s + i, len - i);
                if (n == 0 || is_control(s + i, n)) {
                        /* The whole character when it is one (a C1 control is two bytes), else one byte. */
                        size_t k = n ? n : 1;

                        if (o + 4 * k >= size)
                                break;
                        for (size_t j = 0; j < k; j++, o += 4)
                                snprintf(out + o, 5, "\\x%02x", (uint8_t)s[i + j]);
                        n = k;
                        continue;
                }
                if (o + n >= size)
                        break;
                memcpy(out + o, s + i, n);
                o += n;
        }
        out[o] = '\0';
        return out;
}

char *utf8_escape_dup(const char *s)
{
        size_t len = s ? strlen(s) : 0;
        char *out = malloc(4 * len + 1);

        return out ? utf8_escape(s ? s : "", len, out, 4 * len + 1) : NULL;
}
