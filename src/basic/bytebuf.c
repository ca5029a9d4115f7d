/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "bytebuf.h"

int bytebuf_reserve(struct bytebuf *b, size_t n)
{
        uint8_t *p;

        if (n <= b->cap)
                return 0;
        p = realloc(b->p, n);
        if (!p)
                return -ENOMEM;
        b->p = p;
        b->cap = n;
        return 0;
}

void bytebuf_done(struct bytebuf *b)
{
        free(b->p);
        b->p = NULL;
        b->cap = 0;
}
