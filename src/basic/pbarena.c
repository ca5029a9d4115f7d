/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pbarena.h"

#define PBARENA_ALIGN 16u

static void *arena_alloc(void *data, size_t size)
{
        struct pbarena *a = data;
        size_t off = (a->used + PBARENA_ALIGN - 1) & ~(size_t)(PBARENA_ALIGN - 1);

        if (off > a->limit || size > a->limit - off)
                return NULL; /* over budget: protobuf-c fails the unpack */
        a->used = off + size;
        return a->base + off;
}

static void arena_free(void *data, void *p)
{
        /* Everything goes at the next reset. */
}

void pbarena_init(struct pbarena *a)
{
        memset(a, 0, sizeof(*a));
        a->allocator.alloc = arena_alloc;
        a->allocator.free = arena_free;
        a->allocator.allocator_data = a;
}

int pbarena_reset(struct pbarena *a, size_t budget)
{
        if (budget > a->cap) {
                uint8_t *p = realloc(a->base, budget);
                if (!p)
                        return -ENOMEM;
                a->base = p;
                a->cap = budget;
        }
        a->used = 0;
        a->limit = budget;
        return 0;
}

void pbarena_done(struct pbarena *a)
{
        free(a->base);
        pbarena_init(a);
}
