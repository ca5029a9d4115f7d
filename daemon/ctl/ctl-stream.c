/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "ctl-stream.h"
#include "ctl.h"
#include "macro.h"
#include "svemig/snapshot.h"
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

static void take_parent(const struct svemig_stream_info *info, struct ctl_parent *p)
{
        if (!p)
                return;
        memcpy(p->location, info->parent_location, sizeof(p->location));
        memcpy(p->digest, info->parent_digest, sizeof(p->digest));
        p->digest_bytes = info->parent_digest_bytes;
}

static int walk_fd(int fd, const char *path, const struct ctl_stream_visit *v,
                   struct svemig_stream_stats *stats, uint64_t *bytes, struct ctl_parent *parent,
                   struct svemig_error *err)
{
        _cleanup_(svemig_stream_reader_freep) struct svemig_stream_reader *r = NULL;
        uint8_t extra[4096];
        ssize_t n;
        int k;

        k = svemig_stream_reader_open(fd, NULL, &r, err);
        if (k < 0)
                return svemig_error_prefix(err, "%s", path);
        take_parent(svemig_stream_reader_info(r), parent);
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

int ctl_stream_store_conf(struct migrate_conf *conf, struct store_conf *sc, struct svemig_error *err)
{
        int k = migrate_conf_load(conf, getenv("SVEMIG_CONFIG"), err);

        if (k < 0)
                return svemig_error_prefix(err, "cannot read the store settings");
        migrate_conf_store_conf(conf, sc);
        return 0;
}

/* A URL, read with the stores' settings of migrate.conf ($SVEMIG_CONFIG, else the default file). */
static int walk_remote(const char *url, const struct ctl_stream_visit *v, struct svemig_stream_stats *stats,
                       uint64_t *bytes, struct ctl_parent *parent, struct svemig_error *err)
{
        struct svemig_error serr = {0};
        struct migrate_conf conf;
        struct store_reader *sr = NULL;
        struct store_conf sc;
        int k, t;

        k = ctl_stream_store_conf(&conf, &sc, err);
        if (k < 0)
                return svemig_error_prefix(err, "%s", url);
        k = store_reader_open(url, &sc, 0, 0, &sr, err);
        if (k == 0) {
                k = walk_fd(store_reader_fd(sr), url, v, stats, bytes, parent, err);
                /* The transfer's own failure (the server's answer) says more than a short stream. */
                t = store_reader_close(sr, &serr);
                if (k < 0 && t < 0) {
                        *err = serr;
                        k = t;
                }
        }
        migrate_conf_done(&conf);
        return k;
}

int ctl_stream_walk(const char *path, const struct ctl_stream_visit *v, struct svemig_stream_stats *stats,
                    uint64_t *bytes, struct ctl_parent *parent, struct svemig_error *err)
{
        _cleanup_close_ int fd = -1;

        memset(stats, 0, sizeof(*stats));
        *bytes = 0;
        if (parent)
                parent->location[0] = 0;
        if (store_is_remote(path))
                return walk_remote(path, v, stats, bytes, parent, err);
        if (strcmp(path, "-") == 0) {
                fd = dup(STDIN_FILENO);
        } else {
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        }
        if (fd < 0)
                return svemig_error_set(err, errno, "%s: %m", path);
        return walk_fd(fd, path, v, stats, bytes, parent, err);
}

static void hex(const uint8_t *d, unsigned n, char *out)
{
        for (unsigned i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", d[i]);
        out[2 * n] = 0;
}

int ctl_stream_walk_chain(const struct ctl_parent *parent,
                          void (*fn)(void *ctx, const struct ctl_chain_link *l), void *ctx,
                          struct svemig_error *err)
{
        _cleanup_free_ struct ctl_parent *cur = malloc(sizeof(*cur)), *next = malloc(sizeof(*next));
        struct svemig_stream_stats stats;
        char want[33], got[33];
        uint64_t bytes;
        int k;

        if (!cur || !next)
                return svemig_error_set(err, ENOMEM, "out of memory");
        *cur = *parent;
        for (unsigned depth = 0; cur->location[0]; depth++) {
                if (depth >= SNAPSHOT_CHAIN_MAX)
                        return svemig_error_set(err, ELOOP, "the chain has over %u links",
                                                SNAPSHOT_CHAIN_MAX);
                if (!store_is_remote(cur->location) && cur->location[0] != '/')
                        return svemig_error_set(err, EBADMSG,
                                                "the chain is broken: parent %s is not absolute",
                                                cur->location);
                k = ctl_stream_walk(cur->location, NULL, &stats, &bytes, next, err);
                if (k < 0)
                        return svemig_error_prefix(err, "the chain is broken: parent %s", cur->location);
                hex(cur->digest, cur->digest_bytes, want);
                hex(stats.digest, stats.digest_bytes, got);
                if (strcmp(want, got) != 0)
                        return svemig_error_set(
                                err, EBADMSG,
                                "the chain is broken: %s is not the parent its child names (its "
                                "digest is %s, the child's parent had %s)",
                                cur->location, got, want);
                if (fn)
                        fn(ctx, &(struct ctl_chain_link){.location = cur->location,
                                                         .digest = got,
                                                         .bytes = bytes,
                                                         .mem_pages = stats.mem_pages});
                *cur = *next;
        }
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
