/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "ctl-stream.h"
#include "ctl.h"
#include "macro.h"
#include "svemig/devstate.h"
#include "svemig/timer-state.h"
#include "svemig/vgic-state.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct svemig_stream_reader *, svemig_stream_reader_free);

/* Decodes (and so checks) the pending device frame of type k, and shows it to the visitor. */
static int walk_device(struct svemig_stream_reader *r, int k, const struct ctl_stream_visit *v,
                       struct svemig_error *err)
{
        union {
                struct vgic_state vgic;
                struct timer_state timers;
                struct console_state console;
                struct virtio_dev_state virtio;
        } u = {0};
        int r2;

        switch (k) {
        case SVEMIG_FRAME_VGIC:
                r2 = svemig_stream_read_vgic(r, &u.vgic, err);
                break;
        case SVEMIG_FRAME_TIMERS:
                r2 = svemig_stream_read_timers(r, &u.timers, err);
                break;
        case SVEMIG_FRAME_CONSOLE:
                r2 = svemig_stream_read_console(r, &u.console, err);
                break;
        default:
                r2 = svemig_stream_read_virtio(r, &u.virtio, err);
                break;
        }
        if (r2 < 0)
                return r2;
        if (v && v->device)
                v->device(v->ctx, k, &u);
        if (k == SVEMIG_FRAME_VGIC)
                vgic_state_done(&u.vgic);
        else if (k == SVEMIG_FRAME_TIMERS)
                timer_state_done(&u.timers);
        else if (k == SVEMIG_FRAME_CONSOLE)
                console_state_done(&u.console);
        else
                virtio_dev_state_done(&u.virtio);
        return 0;
}

static int walk_frames(struct svemig_stream_reader *r, const struct ctl_stream_visit *v,
                       struct svemig_error *err)
{
        int k;

        while ((k = svemig_stream_next(r, err)) > 0) {
                if (k == SVEMIG_FRAME_VCPU) {
                        struct vcpu_state st;

                        k = svemig_stream_read_vcpu(r, &st, err);
                        if (k < 0)
                                return k;
                        if (v && v->vcpu)
                                v->vcpu(v->ctx, &st);
                        vcpu_state_done(&st);
                } else if (k == SVEMIG_FRAME_MEMORY) {
                        k = svemig_stream_read_memory(r, NULL, 0, err);
                        if (k < 0)
                                return k;
                } else if (k >= SVEMIG_FRAME_VGIC && k <= SVEMIG_FRAME_VIRTIO) {
                        k = walk_device(r, k, v, err);
                        if (k < 0)
                                return k;
                }
        }
        return k;
}

int ctl_stream_walk(const char *path, const struct ctl_stream_visit *v, struct svemig_stream_stats *stats,
                    uint64_t *bytes, struct svemig_error *err)
{
        _cleanup_(svemig_stream_reader_freep) struct svemig_stream_reader *r = NULL;
        _cleanup_close_ int fd = -1;
        uint8_t extra[4096];
        ssize_t n;
        int k;

        memset(stats, 0, sizeof(*stats));
        *bytes = 0;
        if (strcmp(path, "-") == 0) {
                fd = dup(STDIN_FILENO);
        } else {
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        }
        if (fd < 0)
                return svemig_error_set(err, errno, "%s: %m", path);

        k = svemig_stream_reader_open(fd, NULL, &r, err);
        if (k < 0)
                return svemig_error_prefix(err, "%s", path);
        if (v && v->header)
                v->header(v->ctx, svemig_stream_reader_info(r));
        k = walk_frames(r, v, err);
        *stats = *svemig_stream_reader_stats(r);
        *bytes = svemig_stream_reader_offset(r);
        if (k < 0)
                return svemig_error_prefix(err, "%s", path);

        /* A file holds one stream: anything after the trailer is damage too. */
        do
                n = read(fd, extra, sizeof(extra));
        while (n < 0 && errno == EINTR);
        if (n > 0)
                return svemig_error_set(err, EBADMSG, "%s: offset %llu: %s bytes follow the trailer", path,
                                        (unsigned long long)*bytes, n == sizeof(extra) ? "more" : "extra");
        if (n < 0)
                return svemig_error_set(err, errno, "%s: %m", path);
        return 0;
}

int ctl_stream_exit(int r)
{
        switch (-r) {
        case 0:
                return CTL_EXIT_OK;
        case EBADMSG:
        case EPROTO:
        case E2BIG:
        case EPROTONOSUPPORT:
                return CTL_EXIT_CORRUPT;
        default:
                return CTL_EXIT_FAILURE;
        }
}
