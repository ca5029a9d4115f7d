/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parse-number.h"

/* The leading digits of s; *end is what follows them. */
static int parse_digits(const char *s, char **end, unsigned long long *out)
{
        if (!isdigit((unsigned char)s[0]))
                return -EINVAL;
        errno = 0;
        *out = strtoull(s, end, 10);
        return errno ? -ERANGE : 0;
}

int parse_count(const char *s, uint64_t max, uint64_t *out)
{
        unsigned long long v;
        char *end;
        int r = parse_digits(s, &end, &v);

        if (r < 0)
                return r;
        if (*end)
                return -EINVAL;
        if (v > max)
                return -ERANGE;
        *out = v;
        return 0;
}

int parse_size(const char *s, uint64_t *out)
{
        unsigned long long v;
        unsigned shift = 0;
        char *end;
        int r = parse_digits(s, &end, &v);

        if (r < 0)
                return r;
        switch (*end) {
        case 'k':
        case 'K':
                shift = 10;
                break;
        case 'm':
        case 'M':
                shift = 20;
                break;
        case 'g':
        case 'G':
                shift = 30;
                break;
        case '\0':
                break;
        default:
                return -EINVAL;
        }
        if (shift && end[1] && strcasecmp(end + 1, "iB") != 0 && strcasecmp(end + 1, "B") != 0)
                return -EINVAL;
        if (v > (UINT64_MAX >> shift))
                return -ERANGE;
        *out = v << shift;
        return 0;
}
