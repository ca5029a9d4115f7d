/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * An ARM PL011 UART on MMIO exits: the Linux guest's console (ttyAMA0).
 * Transmit never fills (each byte goes to the output callback at once);
 * received bytes wait in a 16-byte FIFO. Its interrupt is a level on one
 * SPI of the vGIC. The registers live in struct pl011_state, plain, so that
 * they can be saved and restored with the guest.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PL011_BASE 0x09000000ull /* as on QEMU's virt board */
#define PL011_SIZE 0x1000ull
#define PL011_SPI  1u
#define PL011_FIFO 16u

struct pl011_state {
        uint32_t cr, lcr_h, ibrd, fbrd, ifls, imsc, ris, dmacr, ilpr;
        uint8_t rx[PL011_FIFO];
        uint32_t rx_head, rx_count;
};

typedef void (*pl011_out_fn)(void *userdata, const uint8_t *buf, size_t len);
/* Sets the UART's interrupt line to level. */
typedef void (*pl011_irq_fn)(void *userdata, bool level);

struct pl011 {
        struct pl011_state s;
        pthread_mutex_t lock; /* vcpu threads and the console's input */
        bool line;            /* the level last given to irq */
        pl011_out_fn out;
        pl011_irq_fn irq;
        void *userdata;
};

void pl011_init(struct pl011 *u, pl011_out_fn out, pl011_irq_fn irq, void *userdata);
void pl011_done(struct pl011 *u);
/* An access at offset (from PL011_BASE) of len bytes; a read fills data. */
void pl011_mmio(struct pl011 *u, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);
/* Bytes typed on the console; *taken says how many fit in the FIFO now. */
void pl011_input(struct pl011 *u, const uint8_t *buf, size_t len, size_t *taken);
