/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Whole-guest snapshots over svemig streams. The order on restore is the
 * point: the header is judged against the destination before anything else
 * is read; vcpus are restored (and their registers checked) as soon as all are read;
 * the trailer's digest is verified before the guest is handed over.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "macro.h"
#include "svemig/kvmreg.h"
#include "svemig/snapshot.h"

/* Progress is reported (and a cancel noticed) every this many bytes of memory. */
#define SNAPSHOT_PIECE (64ull << 20)

static int report(const struct snapshot_opts *opts, const char *phase, uint64_t done, uint64_t total,
                  struct svemig_error *err)
{
        int r;

        if (!opts || !opts->progress)
                return 0;
        r = opts->progress(opts->userdata, phase, done, total);
        if (r < 0)
                return svemig_error_set(err, r, "%s",
                                        r == -ECANCELED ? "cancelled" : "stopped by the caller");
        return 0;
}

/*
 * The stream writer's progress, passed on every SNAPSHOT_PIECE. Memory goes
 * to the writer in one call, so that its pipeline never drains until the end.
 */
struct memory_progress {
        const struct snapshot_opts *opts;
        uint64_t next;
        struct svemig_error err; /* the caller's reason, should it stop us */
};

static int memory_progress(void *userdata, uint64_t done, uint64_t total)
{
        struct memory_progress *mp = userdata;

        if (done < mp->next)
                return 0;
        mp->next = done + SNAPSHOT_PIECE;
        return report(mp->opts, "memory", done, total, &mp->err);
}

int snapshot_describe(struct guest *g, const struct vcpu_state *vcpu0, const char *purpose,
                      enum svemig_compression compression, uint64_t created_ns, struct snapshot_header *out,
                      struct svemig_error *err)
{
        struct svemig_stream_info *info = &out->info;
        struct hv_caps caps;
        int r;

        r = hv_get_caps(guest_host(g), &caps);
        if (r < 0)
                return svemig_error_set(err, r, "cannot read the host's capabilities");

        memset(out, 0, sizeof(*out));
        snprintf(info->host_name, sizeof(info->host_name), "%s", caps.host_name);
        snprintf(info->source_kernel, sizeof(info->source_kernel), "%s", caps.kernel);
        snprintf(info->hypervisor, sizeof(info->hypervisor), "%s", caps.backend);
        snprintf(info->purpose, sizeof(info->purpose), "%s", purpose);
        info->host_vls = caps.vls;
        info->guest_vls = vcpu0->vls;
        info->guest_max_vq = vqset_highest(&vcpu0->vls);
        info->vcpu_features = vcpu0->features;
        info->vcpu_count = guest_n_vcpus(g);
        info->compression = compression;
        info->created_ns = created_ns;

        out->slot = (struct svemig_stream_slot){
                .id = GUEST_RAM_SLOT, .gpa = guest_ram_base(g), .size = guest_mem_size(g)};
        info->slots = &out->slot;
        info->n_slots = 1;

        for (size_t i = 0; i < vcpu0->n_regs; i++) {
                if (!vcpu_reg_is_host_invariant(vcpu0->regs[i].id))
                        continue;
                if (info->n_id_regs == ELEMENTSOF(out->id_regs))
                        return svemig_error_set(err, E2BIG, "more than %zu ID registers",
                                                ELEMENTSOF(out->id_regs));
                out->id_regs[info->n_id_regs++] = vcpu0->regs[i];
        }
        info->id_regs = out->id_regs;
        return 0;
}

int snapshot_write_fd(struct guest *g, int fd, const struct snapshot_opts *opts,
                      struct svemig_stream_stats *stats, struct svemig_error *err)
{
        struct memory_progress mp = {.opts = opts, .next = SNAPSHOT_PIECE};
        struct svemig_stream_write_opts wopts = {
                .n_threads = opts ? opts->n_threads : 0,
                .progress = opts && opts->progress ? memory_progress : NULL,
                .userdata = &mp,
        };
        struct svemig_stream_writer *w = NULL;
        struct snapshot_header hdr;
        struct vcpu_state *states = NULL;
        unsigned n = guest_n_vcpus(g);
        uint64_t size = guest_mem_size(g);
        int r;

        r = guest_capture(g, &states, err);
        if (r < 0)
                return r;
        r = snapshot_describe(g, &states[0], opts && opts->purpose ? opts->purpose : "snapshot",
                              SVEMIG_COMPRESSION_LZ4, opts ? opts->created_ns : 0, &hdr, err);
        if (r < 0)
                goto out;
        r = svemig_stream_writer_open(fd, &hdr.info, &wopts, &w, err);
        if (r < 0)
                goto out;

        for (unsigned i = 0; i < n; i++) {
                r = report(opts, "vcpus", i, n, err);
                if (r < 0)
                        goto out;
                r = svemig_stream_write_vcpu(w, &states[i], err);
                if (r < 0)
                        goto out;
        }
        r = report(opts, "memory", 0, size, err);
        if (r < 0)
                goto out;
        {
                struct svemig_mem_range range = {
                        .slot = GUEST_RAM_SLOT,
                        .gpa = guest_ram_base(g),
                        .host = guest_mem(g),
                        .size = size,
                };

                r = svemig_stream_write_memory(w, &range, 1, err);
                if (r < 0) {
                        if (mp.err.code) /* the caller's own reason, not the writer's account of it */
                                r = svemig_error_set(err, mp.err.code, "%s", mp.err.msg);
                        goto out;
                }
        }
        r = svemig_stream_writer_finish(w, err);
        if (r < 0)
                goto out;
        r = report(opts, "memory", size, size, err);
        if (r == 0 && stats)
                *stats = *svemig_stream_writer_stats(w);
out:
        svemig_stream_writer_free(w);
        guest_states_free(states, n);
        return r;
}

/* fsync the directory holding path, so that a rename survives a crash. */
static int fsync_parent(const char *path)
{
        char dir[PATH_MAX];
        const char *slash = strrchr(path, '/');
        _cleanup_close_ int fd = -1;

        if (!slash)
                snprintf(dir, sizeof(dir), ".");
        else if (slash == path)
                snprintf(dir, sizeof(dir), "/");
        else
                snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return negative_errno();
        return 0;
}

int snapshot_save(struct guest *g, const char *path, const struct snapshot_opts *opts,
                  struct svemig_stream_stats *stats, struct svemig_error *err)
{
        char tmp[PATH_MAX];
        _cleanup_close_ int fd = -1;
        int r;

        if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
                return svemig_error_set(err, ENAMETOOLONG, "snapshot path too long: %s", path);
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return svemig_error_set(err, errno, "cannot create a temporary file beside %s: %s", path,
                                        strerror(errno));

        r = snapshot_write_fd(g, fd, opts, stats, err);
        if (r < 0)
                goto fail;
        if (fsync(fd) < 0 || fchmod(fd, 0640) < 0) {
                r = svemig_error_set(err, errno, "cannot flush %s to disk: %s", tmp, strerror(errno));
                goto fail;
        }
        if (rename(tmp, path) < 0) {
                r = svemig_error_set(err, errno, "cannot move the snapshot into place at %s: %s", path,
                                     strerror(errno));
                goto fail;
        }
        r = fsync_parent(path);
        if (r < 0)
                return svemig_error_set(err, r,
                                        "snapshot written to %s, but syncing its directory failed: %s", path,
                                        strerror(-r));
        return 0;
fail:
        unlink(tmp);
        return svemig_error_prefix(err, "snapshot to %s not written", path);
}

/* A vcpu on hv initialised, VL-set and finalized as the stream's vcpus were. */
static int probe_vcpu(struct hv_vm *vm, const struct svemig_stream_info *info, struct hv_vcpu **out,
                      struct svemig_error *err)
{
        struct hv_vcpu *vcpu;
        int r;

        r = hv_vcpu_create(vm, 0, &vcpu, err);
        if (r < 0)
                return r;
        r = hv_vcpu_init(vcpu, info->vcpu_features);
        if (r < 0) {
                svemig_error_set(err, r, "this host refuses vcpus with the stream's features 0x%x: %s",
                                 info->vcpu_features, strerror(-r));
                goto fail;
        }
        if (info->vcpu_features & HV_FEAT_BIT(HV_FEAT_SVE)) {
                r = hv_vcpu_set_reg(vcpu, kvmreg_vls(), info->guest_vls.w);
                if (r == 0)
                        r = hv_vcpu_finalize(vcpu, HV_FEAT_SVE);
                if (r < 0) {
                        svemig_error_set(err, r, "this host refuses the stream's vector lengths: %s",
                                         strerror(-r));
                        goto fail;
                }
        }
        *out = vcpu;
        return 0;
fail:
        hv_vcpu_destroy(vcpu);
        return r;
}

int snapshot_check_host(struct hv *hv, const struct svemig_stream_info *info, struct svemig_error *err)
{
        struct vcpu_state vl_only = {.features = info->vcpu_features, .vls = info->guest_vls};
        struct hv_vcpu *vcpu = NULL;
        struct hv_vm *vm = NULL;
        struct hv_caps caps;
        int r;

        r = hv_get_caps(hv, &caps);
        if (r < 0)
                return svemig_error_set(err, r, "cannot read this host's capabilities");
        if (info->vcpu_count > caps.max_vcpus)
                return svemig_error_set(err, EINVAL, "the stream has %u vcpus; host %s allows %u",
                                        info->vcpu_count, caps.host_name, caps.max_vcpus);
        r = vcpu_check_compat(&caps, NULL, &vl_only, err);
        if (r < 0)
                return r;

        r = hv_vm_create(hv, &vm, err);
        if (r < 0)
                return r;
        r = probe_vcpu(vm, info, &vcpu, err);
        if (r == 0)
                r = vcpu_check_invariants(vcpu, info->id_regs, info->n_id_regs, err);
        hv_vcpu_destroy(vcpu);
        hv_vm_destroy(vm);
        return r;
}

/* One RAM slot, wherever the guest had it: the layout guest.c builds. */
static int check_layout(const struct svemig_stream_info *info, struct svemig_error *err)
{
        if (info->n_slots != 1)
                return svemig_error_set(err, EPROTO,
                                        "the stream's memory layout has %zu slots, not one RAM slot, "
                                        "the only layout this version restores",
                                        info->n_slots);
        if (info->vcpu_count == 0)
                return svemig_error_set(err, EBADMSG, "the stream has no vcpus");
        /* Refused before anything moves, rather than a guest restored without its interrupt controller. */
        if (info->devices)
                return svemig_error_set(
                        err, EPROTO,
                        "the stream carries device state (a vGIC, timers, a console or virtio "
                        "devices: a Linux guest's), which this restore does not take yet; "
                        "restore it where svemig-vmm restores Linux guests");
        return 0;
}

/* One VCPU frame into states[]; each index once. */
static int read_vcpu(struct svemig_stream_reader *rd, struct vcpu_state *states, unsigned n,
                     struct svemig_error *err)
{
        struct vcpu_state st;
        int r;

        r = svemig_stream_read_vcpu(rd, &st, err);
        if (r < 0)
                return r;
        if (st.index >= n || states[st.index].regs) {
                vcpu_state_done(&st);
                return svemig_error_set(err, EBADMSG, "vcpu %u: out of range or repeated in the stream",
                                        st.index);
        }
        states[st.index] = st;
        return 0;
}

int snapshot_restore_into(struct guest *g, struct svemig_stream_reader *rd, const struct snapshot_opts *opts,
                          struct svemig_error *err)
{
        const struct svemig_stream_info *info = svemig_stream_reader_info(rd);
        struct vcpu_state *states = NULL;
        struct svemig_mem_map map;
        unsigned got = 0;
        int r, next;

        r = check_layout(info, err);
        if (r < 0)
                return r;
        if (guest_n_vcpus(g) != info->vcpu_count || guest_mem_size(g) != info->slots[0].size ||
            guest_ram_base(g) != info->slots[0].gpa)
                return svemig_error_set(
                        err, EINVAL,
                        "the guest to restore into has %u vcpus and %llu bytes at 0x%llx; the stream %u "
                        "and %llu at 0x%llx",
                        guest_n_vcpus(g), (unsigned long long)guest_mem_size(g),
                        (unsigned long long)guest_ram_base(g), info->vcpu_count,
                        (unsigned long long)info->slots[0].size, (unsigned long long)info->slots[0].gpa);

        states = calloc(info->vcpu_count, sizeof(*states));
        if (!states)
                return svemig_error_set(err, ENOMEM, "out of memory for %u vcpu states", info->vcpu_count);
        map = (struct svemig_mem_map){.slot = info->slots[0].id,
                                      .gpa = info->slots[0].gpa,
                                      .host = guest_mem(g),
                                      .size = guest_mem_size(g)};
        /*
         * VCPU and MEMORY frames may come in any order (docs/stream-format.md): a
         * migration's stream has memory on both sides of its vcpus. The vcpus are
         * restored, and their registers checked, as soon as the last one is read.
         */
        for (next = svemig_stream_next(rd, err); next == SVEMIG_FRAME_VCPU || next == SVEMIG_FRAME_MEMORY;
             next = svemig_stream_next(rd, err)) {
                if (next == SVEMIG_FRAME_VCPU) {
                        r = read_vcpu(rd, states, info->vcpu_count, err);
                        if (r == 0 && ++got == info->vcpu_count) {
                                r = report(opts, "vcpus", 0, info->vcpu_count, err);
                                if (r == 0)
                                        r = guest_restore_vcpus(g, states, err);
                        }
                } else {
                        r = report(opts, "memory",
                                   svemig_stream_reader_stats(rd)->mem_pages * info->page_size,
                                   guest_mem_size(g), err);
                        if (r == 0)
                                r = svemig_stream_read_memory(rd, &map, 1, err);
                }
                if (r < 0)
                        goto out;
        }
        if (next < 0)
                r = next;
        else if (got != info->vcpu_count)
                r = svemig_error_set(err, EBADMSG, "the stream holds %u of its %u vcpus", got,
                                     info->vcpu_count);
        else /* the trailer was read and its digest verified */
                r = report(opts, "verify", guest_mem_size(g), guest_mem_size(g), err);
out:
        guest_states_free(states, info->vcpu_count);
        return r;
}

int snapshot_restore_fd(struct hv *hv, int fd, const struct snapshot_opts *opts, struct guest **out,
                        struct svemig_error *err)
{
        struct svemig_stream_read_opts ropts = {.n_threads = opts ? opts->n_threads : 0};
        struct svemig_stream_reader *rd = NULL;
        const struct svemig_stream_info *info;
        struct guest *g = NULL;
        int r;

        r = svemig_stream_reader_open(fd, &ropts, &rd, err);
        if (r < 0)
                return r;
        info = svemig_stream_reader_info(rd);
        r = check_layout(info, err);
        if (r == 0)
                r = snapshot_check_host(hv, info, err);
        if (r == 0)
                r = guest_create_empty_at(hv, info->vcpu_count, info->slots[0].gpa, info->slots[0].size,
                                          false, &g, err);
        if (r == 0)
                r = snapshot_restore_into(g, rd, opts, err);
        svemig_stream_reader_free(rd);
        if (r < 0) {
                guest_destroy(g);
                return r;
        }
        *out = g;
        return 0;
}

int snapshot_load(struct hv *hv, const char *path, const struct snapshot_opts *opts, struct guest **out,
                  struct svemig_error *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        int r;

        if (fd < 0)
                return svemig_error_set(err, errno, "cannot open snapshot %s: %s", path, strerror(errno));
        r = snapshot_restore_fd(hv, fd, opts, out, err);
        if (r < 0)
                return svemig_error_prefix(err, "%s", path);
        return 0;
}
