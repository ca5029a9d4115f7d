/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A bump allocator for protobuf-c unpacking with a hard budget. protobuf-c
 * sizes repeated fields by counting them in the input, so a few bytes of
 * hostile input can ask for many times their size; decoding with an arena
 * bounds that (unpack fails cleanly when the budget runs out) and makes the
 * allocations of a hot decode loop free.
 */

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

struct pbarena {
        ProtobufCAllocator allocator; /* pass &arena->allocator to *__unpack() */
        uint8_t *base;
        size_t cap, used;
        size_t limit; /* the current budget, <= cap */
};

/* The budget for a payload of raw_len bytes: ample for any valid message. */
static inline size_t pbarena_budget(size_t raw_len)
{
        return 2 * raw_len + (1u << 20);
}

void pbarena_init(struct pbarena *a);
/* Empties the arena and makes room for 'budget' bytes. Returns 0 or -ENOMEM. */
int pbarena_reset(struct pbarena *a, size_t budget);
void pbarena_done(struct pbarena *a);
