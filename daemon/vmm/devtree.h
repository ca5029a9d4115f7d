/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The flattened device tree a Linux guest boots with (libfdt): memory, the
 * cpus (PSCI), the GICv3, the arch timer, the PL011 console, chosen.
 */

#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"

struct devtree_params {
        unsigned n_vcpus;
        uint64_t ram_base, ram_size;
        const char *bootargs;              /* NULL: none */
        uint64_t initrd_start, initrd_end; /* both 0: no initrd */
        uint64_t uart_base;
        unsigned uart_spi;
};

/* Writes the tree into buf (size bytes); *len is its size. */
int devtree_build(const struct devtree_params *p, void *buf, size_t size, size_t *len,
                  struct svemig_error *err);

/* KVM's MPIDR_EL1 affinity for vcpu i (Aff0 = i % 16, Aff1 = i / 16), the cpu node's reg. */
static inline uint32_t devtree_cpu_mpidr(unsigned i)
{
        return (uint32_t)((i >> 4) << 8 | (i & 0xf));
}
