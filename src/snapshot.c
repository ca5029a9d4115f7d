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
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "macro.h"
#include "svemig/kvmreg.h"
#include "svemig/regdiff.h"
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

/* An incremental snapshot's header names its parent (1.2). */
static int describe_parent(const struct snapshot_opts *opts, struct svemig_stream_info *info,
                           struct svemig_error *err)
{
        if (!opts || !opts->parent_location)
                return 0;
        if (!opts->dirty || (opts->parent_digest_bytes != 16 && opts->parent_digest_bytes != 8))
                return svemig_error_set(err, EINVAL,
                                        "an incremental snapshot needs its parent's digest and "
                                        "the pages dirtied since");
        if ((size_t)snprintf(info->parent_location, sizeof(info->parent_location), "%s",
                             opts->parent_location) >= sizeof(info->parent_location))
                return svemig_error_set(err, ENAMETOOLONG, "the parent's location is over %u bytes: %s",
                                        SVEMIG_STREAM_LOCATION_MAX - 1, opts->parent_location);
        memcpy(info->parent_digest, opts->parent_digest, opts->parent_digest_bytes);
        info->parent_digest_bytes = opts->parent_digest_bytes;
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

        if (opts && opts->live)
                return snapshot_write_live(g, fd, opts, opts->live, stats, err);
        r = guest_capture(g, &states, err);
        if (r < 0)
                return r;
        r = snapshot_describe(g, &states[0], opts && opts->purpose ? opts->purpose : "snapshot",
                              SVEMIG_COMPRESSION_LZ4, opts ? opts->created_ns : 0, &hdr, err);
        if (r < 0)
                goto out;
        r = describe_parent(opts, &hdr.info, err);
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
                        .anon_private = true, /* guest.c's mmap, or a standby's */
                        .dirty = opts && opts->parent_location ? opts->dirty : NULL,
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

static uint64_t count_bits(const uint64_t *bits, size_t words)
{
        uint64_t n = 0;

        for (size_t i = 0; i < words; i++)
                n += (uint64_t)__builtin_popcountll(bits[i]);
        return n;
}

/* The dirty log into bits (replacing them), and added to since. */
static int take_dirty(struct guest *g, uint64_t *bits, uint64_t *since, size_t words,
                      struct svemig_error *err)
{
        int r = hv_vm_get_dirty_log(guest_vm(g), GUEST_RAM_SLOT, bits, err);

        if (r < 0)
                return svemig_error_prefix(err, "cannot read the guest's dirty log");
        for (size_t i = 0; i < words; i++)
                since[i] |= bits[i];
        return 0;
}

static int write_pages(struct svemig_stream_writer *w, struct guest *g, const uint64_t *dirty,
                       struct memory_progress *mp, struct svemig_error *err)
{
        struct svemig_mem_range range = {
                .slot = GUEST_RAM_SLOT,
                .gpa = guest_ram_base(g),
                .host = guest_mem(g),
                .size = guest_mem_size(g),
                .dirty = dirty,
        };
        int r = svemig_stream_write_memory(w, &range, 1, err);

        if (r < 0 && mp->err.code) /* the caller's own reason, not the writer's account of it */
                r = svemig_error_set(err, mp->err.code, "%s", mp->err.msg);
        return r;
}

int snapshot_write_live(struct guest *g, int fd, const struct snapshot_opts *opts,
                        struct snapshot_live *live, struct svemig_stream_stats *stats,
                        struct svemig_error *err)
{
        struct memory_progress mp = {.opts = opts, .next = SNAPSHOT_PIECE};
        struct svemig_stream_write_opts wopts = {
                .n_threads = opts ? opts->n_threads : 0,
                .progress = opts && opts->progress ? memory_progress : NULL,
                .userdata = &mp,
        };
        size_t words = (guest_mem_size(g) / HV_PAGE_SIZE + 63) / 64;
        unsigned max_rounds = live->max_rounds ? live->max_rounds : 5;
        uint64_t last = live->last_pages ? live->last_pages : 256;
        _cleanup_free_ uint64_t *bits = calloc(words, sizeof(*bits));
        struct svemig_stream_writer *w = NULL;
        struct vcpu_state vcpu0 = {0}, *states = NULL;
        struct snapshot_header hdr;
        unsigned n = guest_n_vcpus(g);
        int r;

        if (!bits)
                return svemig_error_set(err, ENOMEM, "out of memory for the dirty log");
        /* What the header says of the guest never changes once it is set up: read while it runs. */
        r = guest_describe(g, &vcpu0, err);
        if (r == 0)
                r = snapshot_describe(g, &vcpu0, opts && opts->purpose ? opts->purpose : "checkpoint",
                                      SVEMIG_COMPRESSION_LZ4, opts ? opts->created_ns : 0, &hdr, err);
        if (r == 0)
                r = describe_parent(opts, &hdr.info, err);
        if (r == 0)
                r = svemig_stream_writer_open(fd, &hdr.info, &wopts, &w, err);
        /* Pre-copy: everything (or what changed since the parent), then what changed meanwhile. */
        if (r == 0)
                r = report(opts, "memory", 0, guest_mem_size(g), err);
        if (r == 0)
                r = write_pages(w, g, opts && opts->parent_location ? opts->dirty : NULL, &mp, err);
        for (live->rounds = 0; r == 0; live->rounds++) {
                r = take_dirty(g, bits, live->since_base, words, err);
                if (r < 0 || live->rounds >= max_rounds || count_bits(bits, words) <= last)
                        break;
                r = write_pages(w, g, bits, &mp, err);
        }
        if (r < 0)
                goto out;

        /* Stop-and-copy: the vcpus and the last pages. */
        r = guest_pause(g, err);
        if (live->paused)
                live->paused(live->userdata);
        if (r == 0) {
                uint64_t *more = calloc(words, sizeof(*more));

                r = more ? take_dirty(g, more, live->since_base, words, err)
                         : svemig_error_set(err, ENOMEM, "out of memory");
                for (size_t i = 0; r == 0 && i < words; i++)
                        bits[i] |= more[i];
                free(more);
        }
        if (r == 0)
                r = guest_capture(g, &states, err);
        for (unsigned i = 0; r == 0 && i < n; i++)
                r = svemig_stream_write_vcpu(w, &states[i], err);
        if (r == 0)
                r = write_pages(w, g, bits, &mp, err);
        if (r == 0)
                r = svemig_stream_writer_finish(w, err);
        if (r == 0)
                r = report(opts, "memory", guest_mem_size(g), guest_mem_size(g), err);
        if (r == 0 && stats)
                *stats = *svemig_stream_writer_stats(w);
out:
        svemig_stream_writer_free(w);
        if (states)
                guest_states_free(states, n);
        vcpu_state_done(&vcpu0);
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

int snapshot_save_to(struct guest *g, const char *location, const struct store_conf *sc,
                     const struct snapshot_opts *opts, struct svemig_stream_stats *stats,
                     struct svemig_error *err)
{
        struct store_writer *w = NULL;
        struct svemig_error serr = {0};
        int r, k;

        if (!store_is_remote(location))
                return snapshot_save(g, location, opts, stats, err);
        r = store_writer_open(location, sc, &w, err);
        if (r < 0)
                return svemig_error_prefix(err, "snapshot to %s not written", location);
        r = snapshot_write_fd(g, store_writer_fd(w), opts, stats, err);
        if (r < 0) {
                /* An upload that failed first is the reason the stream could not be written. */
                k = store_writer_abort(w, &serr);
                if (k < 0 && k != -ECANCELED) {
                        *err = serr;
                        r = k;
                }
                return svemig_error_prefix(err, "snapshot to %s not written", location);
        }
        r = store_writer_commit(w, err);
        if (r < 0)
                return svemig_error_prefix(err, "snapshot to %s not written", location);
        return 0;
}

struct snapshot_source {
        struct store_reader *sr;
        struct svemig_stream_reader *rd;
        int fd; /* a local file's */
};

/* Ends s's transfer; its failure, if it had one, is the better reason for r. */
static int snapshot_source_close_store(struct snapshot_source *s, int r, struct svemig_error *err)
{
        struct svemig_error serr = {0};
        int k;

        svemig_stream_reader_free(s->rd);
        s->rd = NULL;
        k = store_reader_close(s->sr, &serr);
        s->sr = NULL;
        if (r < 0 && k < 0) {
                if (err)
                        *err = serr;
                return k;
        }
        return r;
}

/* Enough for the magic, the preamble and a StreamHeader of any likely guest; more is asked for if not. */
#define HEADER_PROBE (64u << 10)

static int source_try(struct snapshot_source *s, const char *location, const struct store_conf *sc,
                      uint64_t length, const struct svemig_stream_read_opts *ropts, struct svemig_error *err)
{
        int r;

        r = store_reader_open(location, sc, 0, length, &s->sr, err);
        if (r < 0)
                return r;
        r = svemig_stream_reader_open(store_reader_fd(s->sr), ropts, &s->rd, err);
        if (r < 0) {
                r = snapshot_source_close_store(s, r, err);
        }
        return r;
}

int snapshot_source_open(const char *location, const struct store_conf *sc, bool header_only,
                         const struct svemig_stream_read_opts *ropts, struct snapshot_source **out,
                         struct svemig_error *err)
{
        struct snapshot_source *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return svemig_error_set(err, ENOMEM, "out of memory");
        s->fd = -1;
        if (!store_is_remote(location)) {
                s->fd = open(location, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (s->fd < 0) {
                        r = svemig_error_set(err, errno, "cannot open snapshot %s: %s", location,
                                             strerror(errno));
                        free(s);
                        return r;
                }
                r = svemig_stream_reader_open(s->fd, ropts, &s->rd, err);
        } else {
                r = source_try(s, location, sc, header_only ? HEADER_PROBE : 0, ropts, err);
                /* A header past the probe: once more, with room for the largest the format allows. */
                if (r == -EBADMSG && header_only)
                        r = source_try(s, location, sc, SVEMIG_STREAM_HEADER_MAX + HEADER_PROBE, ropts, err);
        }
        if (r < 0) {
                snapshot_source_close(s, r, NULL);
                return svemig_error_prefix(err, "%s", location);
        }
        *out = s;
        return 0;
}

struct svemig_stream_reader *snapshot_source_reader(struct snapshot_source *s)
{
        return s->rd;
}

int snapshot_source_close(struct snapshot_source *s, int r, struct svemig_error *err)
{
        if (!s)
                return r;
        svemig_stream_reader_free(s->rd);
        s->rd = NULL;
        r = snapshot_source_close_store(s, r, err);
        if (s->fd >= 0)
                close(s->fd);
        free(s);
        return r;
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

/*
 * The header's ID registers against a probe vcpu of this host: each it
 * lists, the kernel judges (vcpu_check_invariants()); one it lacks is
 * dropped where regdiff says it cannot matter (6.12's CCSIDR 3..13 on 6.1).
 */
static int check_id_regs(struct hv_vcpu *vcpu, const struct svemig_stream_info *info,
                         struct svemig_error *err)
{
        struct regdiff_guest guest = {0};
        char name[64], why[256];
        uint8_t buf[KVMREG_MAX_BYTES];
        int r;

        for (size_t i = 0; i < info->n_id_regs; i++) {
                uint64_t v = 0;

                memcpy(&v, info->id_regs[i].value, MIN(info->id_regs[i].size, sizeof(v)));
                regdiff_guest_note(&guest, info->id_regs[i].id, v);
        }
        for (size_t i = 0; i < info->n_id_regs; i++) {
                const struct vcpu_reg *reg = &info->id_regs[i];
                uint64_t v = 0;

                if (hv_vcpu_get_reg(vcpu, reg->id, buf) == -ENOENT) {
                        memcpy(&v, reg->value, MIN(reg->size, sizeof(v)));
                        if (regdiff_source_only(&guest, reg->id, v, why, sizeof(why)) == 0)
                                continue;
                        kvmreg_name(reg->id, name, sizeof(name));
                        return svemig_error_set(err, ENOENT,
                                                "register %s (0x%016llx) is in the guest's state but this "
                                                "host's kernel does not have it, and %s",
                                                name, (unsigned long long)reg->id, why);
                }
                r = vcpu_check_invariants(vcpu, reg, 1, err);
                if (r < 0)
                        return r;
        }
        return 0;
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
                r = check_id_regs(vcpu, info, err);
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

/* rd into g: memory, and the vcpus unless it is a parent (whose vcpus its child replaces). */
static int restore_stream(struct guest *g, struct svemig_stream_reader *rd, const struct snapshot_opts *opts,
                          bool vcpus, struct svemig_error *err)
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
                        if (r == 0 && ++got == info->vcpu_count && vcpus) {
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

int snapshot_restore_into(struct guest *g, struct svemig_stream_reader *rd, const struct snapshot_opts *opts,
                          struct svemig_error *err)
{
        return restore_stream(g, rd, opts, true, err);
}

int snapshot_chain_check(const struct snapshot_chain *c, const char *location, struct svemig_error *err)
{
        size_t n;

        if (store_is_remote(location))
                return store_check_location(location, c->sc, err);
        if (location[0] != '/')
                return svemig_error_set(err, EINVAL, "a parent's location must be absolute or a URL, not %s",
                                        location);
        if (!c->local_dir)
                return 0;
        n = strlen(c->local_dir);
        if (n == 0 || strncmp(location, c->local_dir, n) != 0 || location[n] != '/' ||
            strchr(location + n + 1, '/'))
                return svemig_error_set(err, EPERM,
                                        "parent %s is a local file outside svemigd's snapshot directory "
                                        "%s: only parents there or at a URL are read for a restore",
                                        location, c->local_dir[0] ? c->local_dir : "(none)");
        return 0;
}

static void digest_hex(const uint8_t *d, unsigned n, char *out)
{
        for (unsigned i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", d[i]);
        out[2 * n] = 0;
}

/* The parent a child names: where, and its digest; copied, as the child's reader may go first. */
struct parent_ref {
        char location[SVEMIG_STREAM_LOCATION_MAX];
        uint8_t digest[16];
        unsigned digest_bytes;
};

static void parent_ref_of(const struct svemig_stream_info *info, struct parent_ref *p)
{
        memcpy(p->location, info->parent_location, sizeof(p->location));
        memcpy(p->digest, info->parent_digest, sizeof(p->digest));
        p->digest_bytes = info->parent_digest_bytes;
}

/* The parent's trailer digest must be the one its child names. */
static int check_parent_digest(struct svemig_stream_reader *rd, const struct parent_ref *p,
                               struct svemig_error *err)
{
        const struct svemig_stream_stats *st = svemig_stream_reader_stats(rd);
        char want[33], got[33];

        if (st->digest_bytes == p->digest_bytes && memcmp(st->digest, p->digest, p->digest_bytes) == 0)
                return 0;
        digest_hex(p->digest, p->digest_bytes, want);
        digest_hex(st->digest, st->digest_bytes, got);
        return svemig_error_set(err, EBADMSG,
                                "the chain is broken: %s is not the parent its child names (its digest is "
                                "%s, the child's parent had %s)",
                                p->location, got, want);
}

/*
 * A stream's memory into map, and its vcpus into states[] (NULL: passed
 * over), to the trailer, which is verified. For a parent, whose vcpus its
 * child replaces, and for a merge.
 */
static int read_link(struct svemig_stream_reader *rd, const struct svemig_mem_map *map, uint64_t map_size,
                     struct vcpu_state *states, struct svemig_error *err)
{
        const struct svemig_stream_info *info = svemig_stream_reader_info(rd);
        unsigned got = 0;
        int r, next;

        r = check_layout(info, err);
        if (r < 0)
                return r;
        if (info->slots[0].size != map_size || info->slots[0].gpa != map->gpa)
                return svemig_error_set(
                        err, EINVAL,
                        "its memory is %llu bytes at 0x%llx; the chain's top has %llu at 0x%llx",
                        (unsigned long long)info->slots[0].size, (unsigned long long)info->slots[0].gpa,
                        (unsigned long long)map_size, (unsigned long long)map->gpa);
        for (next = svemig_stream_next(rd, err); next == SVEMIG_FRAME_VCPU || next == SVEMIG_FRAME_MEMORY;
             next = svemig_stream_next(rd, err)) {
                if (next == SVEMIG_FRAME_MEMORY)
                        r = svemig_stream_read_memory(rd, map, 1, err);
                else if (states)
                        r = read_vcpu(rd, states, info->vcpu_count, err);
                if (r < 0)
                        return r;
                got += next == SVEMIG_FRAME_VCPU;
        }
        if (next < 0)
                return next;
        if (got != info->vcpu_count)
                return svemig_error_set(err, EBADMSG, "the stream holds %u of its %u vcpus", got,
                                        info->vcpu_count);
        return 0;
}

/* One link: p's own parents first, then p's memory over theirs, into map. */
static int restore_parent(const struct svemig_mem_map *map, uint64_t map_size, const struct parent_ref *p,
                          const struct snapshot_chain *c, unsigned depth, const struct snapshot_opts *opts,
                          struct svemig_error *err)
{
        struct svemig_stream_read_opts ropts = {.n_threads = opts ? opts->n_threads : 0};
        struct snapshot_source *src = NULL;
        const struct svemig_stream_info *info;
        struct parent_ref *grand;
        int r;

        if (depth >= SNAPSHOT_CHAIN_MAX)
                return svemig_error_set(err, ELOOP, "the chain has over %u links above %s",
                                        SNAPSHOT_CHAIN_MAX, p->location);
        r = snapshot_chain_check(c, p->location, err);
        if (r < 0)
                return r;
        /* Its header alone first, for its own parent: a stream held open would stall meanwhile. */
        r = snapshot_source_open(p->location, c->sc, true, &ropts, &src, err);
        if (r < 0)
                return svemig_error_prefix(err, "the chain is broken: its parent cannot be read");
        info = svemig_stream_reader_info(snapshot_source_reader(src));
        grand = info->parent_location[0] ? malloc(sizeof(*grand)) : NULL;
        if (grand)
                parent_ref_of(info, grand);
        r = info->parent_location[0] && !grand ? svemig_error_set(err, ENOMEM, "out of memory") : 0;
        snapshot_source_close(src, 0, NULL);
        if (r == 0 && grand)
                r = restore_parent(map, map_size, grand, c, depth + 1, opts, err);
        free(grand);
        if (r < 0)
                return r;

        r = snapshot_source_open(p->location, c->sc, false, &ropts, &src, err);
        if (r < 0)
                return svemig_error_prefix(err, "the chain is broken: its parent cannot be read");
        r = report(opts, "parent", depth, depth + 1, err);
        if (r == 0)
                r = read_link(snapshot_source_reader(src), map, map_size, NULL, err);
        if (r == 0)
                r = check_parent_digest(snapshot_source_reader(src), p, err);
        else
                r = svemig_error_prefix(err, "parent %s", p->location);
        return snapshot_source_close(src, r, err);
}

int snapshot_restore_parents(struct guest *g, const struct svemig_stream_info *info,
                             const struct snapshot_chain *c, const struct snapshot_opts *opts,
                             struct svemig_error *err)
{
        struct svemig_mem_map map = {.slot = GUEST_RAM_SLOT,
                                     .gpa = guest_ram_base(g),
                                     .host = guest_mem(g),
                                     .size = guest_mem_size(g)};
        struct parent_ref *p;
        int r;

        if (!info->parent_location[0])
                return 0;
        if (info->n_slots == 1)
                map.slot = info->slots[0].id;
        p = malloc(sizeof(*p));
        if (!p)
                return svemig_error_set(err, ENOMEM, "out of memory");
        parent_ref_of(info, p);
        r = restore_parent(&map, map.size, p, c, 0, opts, err);
        free(p);
        return r;
}

/* The chain ending at location, read into one buffer (mapped here), its top's vcpus into states. */
static int merge_read(const char *location, const struct snapshot_chain *c, const struct snapshot_opts *opts,
                      struct snapshot_source **top, struct svemig_mem_map *map, struct vcpu_state **states,
                      unsigned *n_states, struct svemig_error *err)
{
        struct svemig_stream_read_opts ropts = {.n_threads = opts ? opts->n_threads : 0};
        struct snapshot_source *src = NULL;
        const struct svemig_stream_info *info;
        struct parent_ref *p = NULL;
        int r;

        /* The top's header alone first: the parents load while no transfer of it is held open. */
        r = snapshot_source_open(location, c->sc, true, &ropts, &src, err);
        if (r < 0)
                return r;
        info = svemig_stream_reader_info(snapshot_source_reader(src));
        r = check_layout(info, err);
        if (r == 0) {
                *map = (struct svemig_mem_map){
                        .slot = info->slots[0].id, .gpa = info->slots[0].gpa, .size = info->slots[0].size};
                map->host =
                        mmap(NULL, map->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (map->host == MAP_FAILED) {
                        map->host = NULL;
                        r = svemig_error_set(err, errno, "cannot map %llu bytes for the merge: %s",
                                             (unsigned long long)map->size, strerror(errno));
                }
        }
        if (r == 0 && info->parent_location[0] && !(p = malloc(sizeof(*p))))
                r = svemig_error_set(err, ENOMEM, "out of memory");
        if (p)
                parent_ref_of(info, p);
        snapshot_source_close(src, 0, NULL);
        if (r == 0 && p)
                r = restore_parent(map, map->size, p, c, 0, opts, err);
        free(p);
        if (r < 0)
                return r;

        r = snapshot_source_open(location, c->sc, false, &ropts, &src, err);
        if (r < 0)
                return r;
        info = svemig_stream_reader_info(snapshot_source_reader(src));
        *states = calloc(info->vcpu_count ? info->vcpu_count : 1, sizeof(**states));
        *n_states = info->vcpu_count;
        r = *states ? read_link(snapshot_source_reader(src), map, map->size, *states, err)
                    : svemig_error_set(err, ENOMEM, "out of memory");
        if (r < 0)
                return snapshot_source_close(src, svemig_error_prefix(err, "%s", location), err);
        *top = src;
        return 0;
}

int snapshot_merge(const char *location, const struct snapshot_chain *c, int out_fd,
                   const struct snapshot_opts *opts, struct svemig_stream_stats *stats,
                   struct svemig_error *err)
{
        struct svemig_stream_write_opts wopts = {.n_threads = opts ? opts->n_threads : 0};
        struct svemig_mem_map map = {0};
        struct snapshot_source *top = NULL;
        struct svemig_stream_writer *w = NULL;
        struct vcpu_state *states = NULL;
        struct svemig_stream_info info;
        unsigned n = 0;
        int r;

        r = merge_read(location, c, opts, &top, &map, &states, &n, err);
        if (r < 0)
                goto out;
        /* The top's header, as a full stream: the same guest at the same moment. */
        info = *svemig_stream_reader_info(snapshot_source_reader(top));
        memset(info.parent_location, 0, sizeof(info.parent_location));
        info.parent_digest_bytes = 0;
        info.compression = SVEMIG_COMPRESSION_LZ4;
        info.producer_name[0] = info.producer_version[0] = 0;
        r = svemig_stream_writer_open(out_fd, &info, &wopts, &w, err);
        for (unsigned i = 0; r == 0 && i < n; i++)
                r = svemig_stream_write_vcpu(w, &states[i], err);
        if (r == 0) {
                struct svemig_mem_range range = {
                        .slot = map.slot, .gpa = map.gpa, .host = map.host, .size = map.size};

                r = report(opts, "memory", 0, map.size, err);
                if (r == 0)
                        r = svemig_stream_write_memory(w, &range, 1, err);
        }
        if (r == 0)
                r = svemig_stream_writer_finish(w, err);
        if (r == 0 && stats)
                *stats = *svemig_stream_writer_stats(w);
out:
        svemig_stream_writer_free(w);
        if (states)
                guest_states_free(states, n);
        snapshot_source_close(top, 0, NULL);
        if (map.host)
                munmap(map.host, map.size);
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
        if (r == 0 && info->parent_location[0])
                r = svemig_error_set(
                        err, EINVAL,
                        "the stream is incremental (its parent is %s): restore it with its chain",
                        info->parent_location);
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
