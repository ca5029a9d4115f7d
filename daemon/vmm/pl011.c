/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "pl011.h"
#include "unaligned.h"

/* Registers (PL011 TRM, table 3-1). */
#define REG_DR    0x000
#define REG_RSR   0x004
#define REG_FR    0x018
#define REG_ILPR  0x020
#define REG_IBRD  0x024
#define REG_FBRD  0x028
#define REG_LCR_H 0x02c
#define REG_CR    0x030
#define REG_IFLS  0x034
#define REG_IMSC  0x038
#define REG_RIS   0x03c
#define REG_MIS   0x040
#define REG_ICR   0x044
#define REG_DMACR 0x048
#define REG_ID    0xfe0 /* PeriphID0..3, PCellID0..3 */

#define FR_RXFE  (1u << 4)
#define FR_TXFF  (1u << 5)
#define FR_RXFF  (1u << 6)
#define FR_TXFE  (1u << 7)
#define INT_RX   (1u << 4)
#define INT_TX   (1u << 5)
#define INT_RT   (1u << 6)
#define INT_MASK 0x7ffu
#define CR_LBE   (1u << 7)

/* What the AMBA bus reads to match the driver: a PL011 r1p5, and the PrimeCell ID. */
static const uint8_t ids[8] = {0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1};

void pl011_init(struct pl011 *u, pl011_out_fn out, pl011_irq_fn irq, void *userdata)
{
        memset(u, 0, sizeof(*u));
        pthread_mutex_init(&u->lock, NULL);
        /* The reset values: UART enabled for TX and RX, 8 bits, FIFO trigger at half. */
        u->s.cr = 0x300;
        u->s.ifls = 0x12;
        u->out = out;
        u->irq = irq;
        u->userdata = userdata;
}

void pl011_done(struct pl011 *u)
{
        pthread_mutex_destroy(&u->lock);
}

/* Under the lock: the line follows the masked status. */
static void update_irq(struct pl011 *u)
{
        bool level = (u->s.ris & u->s.imsc) != 0;

        if (level != u->line) {
                u->line = level;
                if (u->irq)
                        u->irq(u->userdata, level);
        }
}

static uint32_t rx_pop(struct pl011 *u)
{
        uint32_t c;

        if (u->s.rx_count == 0)
                return 0;
        c = u->s.rx[u->s.rx_head];
        u->s.rx_head = (u->s.rx_head + 1) % PL011_FIFO;
        if (--u->s.rx_count == 0)
                u->s.ris &= ~(INT_RX | INT_RT);
        return c;
}

static uint32_t reg_read(struct pl011 *u, uint64_t off)
{
        switch (off) {
        case REG_DR:
                return rx_pop(u);
        case REG_FR:
                return FR_TXFE | (u->s.rx_count == 0 ? FR_RXFE : 0) |
                       (u->s.rx_count == PL011_FIFO ? FR_RXFF : 0);
        case REG_ILPR:
                return u->s.ilpr;
        case REG_IBRD:
                return u->s.ibrd;
        case REG_FBRD:
                return u->s.fbrd;
        case REG_LCR_H:
                return u->s.lcr_h;
        case REG_CR:
                return u->s.cr;
        case REG_IFLS:
                return u->s.ifls;
        case REG_IMSC:
                return u->s.imsc;
        case REG_RIS:
                return u->s.ris;
        case REG_MIS:
                return u->s.ris & u->s.imsc;
        case REG_DMACR:
                return u->s.dmacr;
        default:
                if (off >= REG_ID && off < REG_ID + 32 && off % 4 == 0)
                        return ids[(off - REG_ID) / 4];
                return 0;
        }
}

static void reg_write(struct pl011 *u, uint64_t off, uint32_t v)
{
        switch (off) {
        case REG_DR: {
                uint8_t c = (uint8_t)v;

                /* In loopback (a driver's self-test) nothing reaches the console. */
                if (!(u->s.cr & CR_LBE) && u->out)
                        u->out(u->userdata, &c, 1);
                /* The FIFO drains at once: below any trigger level. */
                u->s.ris |= INT_TX;
                break;
        }
        case REG_ILPR:
                u->s.ilpr = v & 0xff;
                break;
        case REG_IBRD:
                u->s.ibrd = v & 0xffff;
                break;
        case REG_FBRD:
                u->s.fbrd = v & 0x3f;
                break;
        case REG_LCR_H:
                u->s.lcr_h = v & 0xff;
                break;
        case REG_CR:
                u->s.cr = v & 0xffff;
                break;
        case REG_IFLS:
                u->s.ifls = v & 0x3f;
                break;
        case REG_IMSC:
                u->s.imsc = v & INT_MASK;
                /* Unmasking TX with an empty FIFO asks for the interrupt at once. */
                if (v & INT_TX)
                        u->s.ris |= INT_TX;
                break;
        case REG_ICR:
                u->s.ris &= ~(v & INT_MASK);
                if (u->s.rx_count)
                        u->s.ris |= INT_RX | INT_RT; /* data still waits */
                break;
        case REG_DMACR:
                u->s.dmacr = v & 0x7;
                break;
        default:
                break; /* RSR/ECR clears errors, of which there are none; IDs are read-only */
        }
}

void pl011_mmio(struct pl011 *u, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
        uint8_t word[4] = {0};

        pthread_mutex_lock(&u->lock);
        if (is_write) {
                memcpy(word, data, len < 4 ? len : 4);
                reg_write(u, offset & ~3ull, get_le32(word));
        } else {
                put_le32(word, reg_read(u, offset & ~3ull));
                memset(data, 0, len);
                memcpy(data, word, len < 4 ? len : 4);
        }
        update_irq(u);
        pthread_mutex_unlock(&u->lock);
}

void pl011_input(struct pl011 *u, const uint8_t *buf, size_t len, size_t *taken)
{
        size_t n = 0;

        pthread_mutex_lock(&u->lock);
        while (n < len && u->s.rx_count < PL011_FIFO) {
                u->s.rx[(u->s.rx_head + u->s.rx_count) % PL011_FIFO] = buf[n++];
                u->s.rx_count++;
        }
        if (n)
                u->s.ris |= INT_RX | INT_RT;
        update_irq(u);
        pthread_mutex_unlock(&u->lock);
        *taken = n;
}
