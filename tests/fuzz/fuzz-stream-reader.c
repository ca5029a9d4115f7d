/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the stream reader: any bytes, read as a stream from
 * an fd exactly as a restore would, memory decoded into a destination built
 * from the header's own layout (when small) or only checked, device frames
 * (1.2) decoded into their structs. The reader must
 * refuse bad input with an error, never crash, hang, leak or allocate
 * without bound. tests/fuzz/README.md says how to run it for longer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "svemig/devstate.h"
#include "svemig/stream.h"
#include "svemig/timer-state.h"
#include "svemig/vgic-state.h"

/* Destinations above this are not allocated: the chunks are then only checked. */
#define FUZZ_MEMORY_MAX (8u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int make_fd(const uint8_t *data, size_t size)
{
        int fd = memfd_create("fuzz-stream", MFD_CLOEXEC);
        size_t off = 0;

        if (fd < 0)
                abort();
        while (off < size) {
                ssize_t n = write(fd, data + off, size - off);
                if (n <= 0)
                        abort();
                off += (size_t)n;
        }
        if (lseek(fd, 0, SEEK_SET) != 0)
                abort();
        return fd;
}

/* A device frame decoded (and checked) as a restore would; false when refused. */
static bool read_device(struct svemig_stream_reader *r, int k)
{
        struct svemig_error err;
        struct vgic_state g = {0};
        struct timer_state t = {0};
        struct console_state c = {0};
        struct virtio_dev_state v = {0};
        int rc;

        if (k == SVEMIG_FRAME_VGIC)
                rc = svemig_stream_read_vgic(r, &g, &err);
        else if (k == SVEMIG_FRAME_TIMERS)
                rc = svemig_stream_read_timers(r, &t, &err);
        else if (k == SVEMIG_FRAME_CONSOLE)
                rc = svemig_stream_read_console(r, &c, &err);
        else
                rc = svemig_stream_read_virtio(r, &v, &err);
        vgic_state_done(&g);
        timer_state_done(&t);
        console_state_done(&c);
        virtio_dev_state_done(&v);
        return rc >= 0;
}

static void read_frames(struct svemig_stream_reader *r, const struct svemig_mem_map *map, size_t n_map)
{
        struct svemig_error err;
        int k;

        while ((k = svemig_stream_next(r, &err)) > 0) {
                if (k == SVEMIG_FRAME_VCPU) {
                        struct vcpu_state st;
                        if (svemig_stream_read_vcpu(r, &st, &err) < 0)
                                return;
                        vcpu_state_done(&st);
                } else if (k == SVEMIG_FRAME_MEMORY) {
                        if (svemig_stream_read_memory(r, map, n_map, &err) < 0)
                                return;
                } else if (k >= SVEMIG_FRAME_VGIC && k <= SVEMIG_FRAME_VIRTIO) {
                        if (!read_device(r, k))
                                return;
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct svemig_stream_read_opts opts = {.n_threads = 2};
        struct svemig_stream_reader *r = NULL;
        struct svemig_mem_map *map = NULL;
        const struct svemig_stream_info *info;
        struct svemig_error err;
        uint64_t total = 0;
        size_t n_map = 0;
        int fd = make_fd(data, size);

        if (svemig_stream_reader_open(fd, &opts, &r, &err) < 0)
                goto out;
        info = svemig_stream_reader_info(r);
        for (size_t i = 0; i < info->n_slots; i++)
                total += info->slots[i].size;
        if (total <= FUZZ_MEMORY_MAX && info->n_slots) {
                map = calloc(info->n_slots, sizeof(*map));
                if (!map)
                        abort();
                for (size_t i = 0; i < info->n_slots; i++) {
                        map[i] =
                                (struct svemig_mem_map){info->slots[i].id, info->slots[i].gpa,
                                                        calloc(1, info->slots[i].size), info->slots[i].size};
                        if (!map[i].host)
                                abort();
                        n_map++;
                }
        }
        read_frames(r, map, n_map);
out:
        for (size_t i = 0; i < n_map; i++)
                free(map[i].host);
        free(map);
        svemig_stream_reader_free(r);
        close(fd);
        return 0;
}
