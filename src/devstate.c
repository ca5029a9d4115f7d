/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The VMM's own devices' state: freeing and checking it (include/svemig/devstate.h). */
#include <errno.h>
#include <stdlib.h>

#include "svemig/devstate.h"

#define VIRTIO_ID_BLOCK   2u
#define VIRTIO_ID_CONSOLE 3u

void console_state_done(struct console_state *st)
{
        if (!st)
                return;
        free(st->rx);
        free(st->tx);
        *st = (struct console_state){0};
}

void virtio_dev_state_done(struct virtio_dev_state *st)
{
        if (!st)
                return;
        for (size_t i = 0; i < st->n_queues && i < VIRTIO_STATE_QUEUES_MAX; i++)
                free(st->queues[i].inflight);
        *st = (struct virtio_dev_state){0};
}

const char *console_kind_name(uint32_t kind)
{
        return kind == CONSOLE_PL011 ? "PL011" : kind == CONSOLE_VIRTIO ? "virtio-console" : NULL;
}

const char *virtio_device_name(uint32_t device_id)
{
        return device_id == VIRTIO_ID_BLOCK ? "block" : device_id == VIRTIO_ID_CONSOLE ? "console" : NULL;
}

/* Offsets 4-aligned, each once. */
static int check_regs(const struct dev_reg *regs, size_t n, const char *who, struct svemig_error *err)
{
        if (n > DEV_STATE_REGS_MAX)
                return svemig_error_set(err, E2BIG, "%s: %zu registers, over %u", who, n,
                                        DEV_STATE_REGS_MAX);
        for (size_t i = 0; i < n; i++) {
                if (regs[i].offset % 4)
                        return svemig_error_set(err, EINVAL, "%s: register offset 0x%x is not 4-aligned",
                                                who, regs[i].offset);
                for (size_t j = 0; j < i; j++)
                        if (regs[j].offset == regs[i].offset)
                                return svemig_error_set(err, EINVAL, "%s: register 0x%x appears twice", who,
                                                        regs[i].offset);
        }
        return 0;
}

int console_state_check(const struct console_state *st, struct svemig_error *err)
{
        if (!console_kind_name(st->kind))
                return svemig_error_set(err, EINVAL,
                                        "console: kind %u is neither PL011 (1) nor virtio-console (2)",
                                        st->kind);
        if (st->rx_len > CONSOLE_STATE_BYTES_MAX || st->tx_len > CONSOLE_STATE_BYTES_MAX)
                return svemig_error_set(err, E2BIG, "console: %zu bytes in and %zu out, over %u each",
                                        st->rx_len, st->tx_len, CONSOLE_STATE_BYTES_MAX);
        if (st->irq && (st->irq < 32 || st->irq > 1019))
                return svemig_error_set(err, EINVAL, "console: interrupt %u is not an SPI (32..1019)",
                                        st->irq);
        return check_regs(st->regs, st->n_regs, "console", err);
}

static int check_queue(const struct virtio_dev_state *d, size_t q, struct svemig_error *err)
{
        const struct virtio_queue_state *v = &d->queues[q];

        if (v->num > VIRTIO_QUEUE_SIZE_MAX || (v->num & (v->num - 1)))
                return svemig_error_set(err, EINVAL,
                                        "virtio device %u, queue %zu: %u entries, not a power of two "
                                        "up to %u",
                                        d->index, q, v->num, VIRTIO_QUEUE_SIZE_MAX);
        if (v->ready && v->num == 0)
                return svemig_error_set(err, EINVAL, "virtio device %u, queue %zu: ready with no entries",
                                        d->index, q);
        if (v->n_inflight > v->num)
                return svemig_error_set(err, EINVAL,
                                        "virtio device %u, queue %zu: %zu requests in flight in a "
                                        "queue of %u",
                                        d->index, q, v->n_inflight, v->num);
        /* In flight are those taken and not yet used: never more than the indices say. */
        if ((uint16_t)(v->last_avail_idx - v->used_idx) < v->n_inflight)
                return svemig_error_set(err, EINVAL,
                                        "virtio device %u, queue %zu: %zu requests in flight, but "
                                        "only %u taken (avail %u) and not used (used %u)",
                                        d->index, q, v->n_inflight,
                                        (uint16_t)(v->last_avail_idx - v->used_idx), v->last_avail_idx,
                                        v->used_idx);
        for (size_t i = 0; i < v->n_inflight; i++) {
                if (v->inflight[i] >= v->num)
                        return svemig_error_set(err, EINVAL,
                                                "virtio device %u, queue %zu: request head %u is "
                                                "outside the queue's %u descriptors",
                                                d->index, q, v->inflight[i], v->num);
                for (size_t j = 0; j < i; j++)
                        if (v->inflight[j] == v->inflight[i])
                                return svemig_error_set(err, EINVAL,
                                                        "virtio device %u, queue %zu: request head "
                                                        "%u is in flight twice",
                                                        d->index, q, v->inflight[i]);
        }
        return 0;
}

int virtio_dev_state_check(const struct virtio_dev_state *st, struct svemig_error *err)
{
        int r = 0;

        if (!virtio_device_name(st->device_id))
                return svemig_error_set(err, EINVAL,
                                        "virtio device %u: device ID %u is neither block (2) nor "
                                        "console (3)",
                                        st->index, st->device_id);
        if (st->config_len > VIRTIO_STATE_CONFIG_MAX || st->n_queues > VIRTIO_STATE_QUEUES_MAX)
                return svemig_error_set(err, E2BIG,
                                        "virtio device %u: %zu configuration bytes and %zu queues, "
                                        "over %u and %u",
                                        st->index, st->config_len, st->n_queues, VIRTIO_STATE_CONFIG_MAX,
                                        VIRTIO_STATE_QUEUES_MAX);
        if (st->irq && (st->irq < 32 || st->irq > 1019))
                return svemig_error_set(err, EINVAL,
                                        "virtio device %u: interrupt %u is not an SPI (32..1019)", st->index,
                                        st->irq);
        if (st->driver_features & ~st->device_features)
                return svemig_error_set(err, EINVAL,
                                        "virtio device %u: the driver took features 0x%llx the "
                                        "device does not offer",
                                        st->index,
                                        (unsigned long long)(st->driver_features & ~st->device_features));
        for (size_t q = 0; q < st->n_queues && r >= 0; q++)
                r = check_queue(st, q, err);
        return r;
}
