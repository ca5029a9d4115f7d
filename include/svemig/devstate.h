/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The state of the devices svemig-vmm emulates itself, as plain structs: the
 * serialisable form the stream's CONSOLE and VIRTIO frames carry. The VMM's
 * devices fill them on save and take them on restore; this file only frees
 * and checks them. (The in-kernel vGIC and timers have their own files:
 * vgic-state.h, timer-state.h.)
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"

#define DEV_STATE_REGS_MAX      64u
#define CONSOLE_STATE_BYTES_MAX 65536u /* each of the console's buffers */
#define VIRTIO_STATE_QUEUES_MAX 16u
#define VIRTIO_STATE_CONFIG_MAX 256u
#define VIRTIO_QUEUE_SIZE_MAX   32768u /* a split virtqueue's most entries */

/* One 32-bit device register, by its offset from the device's MMIO base. */
struct dev_reg {
        uint32_t offset;
        uint32_t value;
};

enum console_kind {
        CONSOLE_PL011 = 1,  /* an Arm PL011 UART emulated on MMIO exits */
        CONSOLE_VIRTIO = 2, /* virtio-console: its transport is a VIRTIO frame; this one holds the bytes */
};

/* The guest's console: its registers and the bytes on their way in and out. */
struct console_state {
        uint32_t kind; /* enum console_kind */
        uint64_t base; /* its MMIO base, guest-physical */
        uint32_t irq;  /* its SPI */
        size_t n_regs; /* PL011: the registers a guest programs (CR, LCR_H, IBRD, FBRD, IFLS, IMSC, RIS...)
                        */
        struct dev_reg regs[DEV_STATE_REGS_MAX];
        size_t rx_len; /* input received and not yet read by the guest (the receive FIFO), oldest first */
        uint8_t *rx;
        size_t tx_len; /* output the guest wrote that the host has not yet passed on, oldest first */
        uint8_t *tx;
};

/* One split virtqueue, as the device side of virtio-mmio knows it. */
struct virtio_queue_state {
        uint32_t num; /* QueueNum: entries, a power of two up to VIRTIO_QUEUE_SIZE_MAX; 0 = not set up */
        bool ready;   /* QueueReady */
        uint64_t desc, driver, device; /* the descriptor table, available and used rings (guest-physical) */
        uint16_t last_avail_idx;       /* the next available-ring entry the device takes */
        uint16_t used_idx;             /* the used ring's idx as the device last published it */
        /*
         * Heads of the descriptor chains the device took from the available
         * ring and has not yet returned in the used ring: requests in flight.
         * The destination processes each again from guest memory (which
         * moved with the guest), so none is lost; for a disk on storage the
         * hosts share, doing a read or write again gives the same result.
         */
        size_t n_inflight;
        uint16_t *inflight;
};

/* A virtio device on virtio-mmio (version 2): its transport registers and queues. */
struct virtio_dev_state {
        uint32_t index;     /* the VMM's device number, one frame each */
        uint32_t device_id; /* VIRTIO_ID_*: 2 block, 3 console */
        uint64_t base;      /* its MMIO base, guest-physical */
        uint32_t irq;       /* its SPI */
        uint64_t device_features, driver_features;
        uint32_t device_features_sel, driver_features_sel, queue_sel;
        uint32_t status, interrupt_status, config_generation;
        size_t config_len; /* the device's configuration space */
        uint8_t config[VIRTIO_STATE_CONFIG_MAX];
        size_t n_queues;
        struct virtio_queue_state queues[VIRTIO_STATE_QUEUES_MAX];
};

void console_state_done(struct console_state *st);
void virtio_dev_state_done(struct virtio_dev_state *st);

/* Check a decoded state before anyone acts on it: 0, or -EINVAL/-E2BIG with the reason. */
int console_state_check(const struct console_state *st, struct svemig_error *err);
int virtio_dev_state_check(const struct virtio_dev_state *st, struct svemig_error *err);

/* "PL011", "virtio-console"; "block", "console" (NULL when unknown). */
const char *console_kind_name(uint32_t kind);
const char *virtio_device_name(uint32_t device_id);
