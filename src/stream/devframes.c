/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The device state frames of stream format 1.2 (docs/stream-format.md):
 * VGIC, TIMERS, CONSOLE and VIRTIO, to and from the engine's plain structs
 * (vgic-state.h, timer-state.h, devstate.h). The structs' own checks are
 * the frames' rules, so the writer refuses what a reader would.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "stream/stream-internal.h"
#include "svemig/devstate.h"
#include "svemig/timer-state.h"
#include "svemig/vgic-state.h"

/* The first seen of a type that comes once, or a VIRTIO index; -EBADMSG/-EINVAL for a second. */
static int mark_seen(struct devframes_seen *seen, uint16_t type, uint32_t index, int code, const char *where,
                     struct svemig_error *err)
{
        const char *name = svemig_frame_type_name(type);

        if (type == SVEMIG_FRAME_VIRTIO) {
                if (index >= SVEMIG_STREAM_VIRTIO_MAX)
                        return svemig_error_set(err, code == EBADMSG ? EBADMSG : E2BIG,
                                                "%svirtio device %u: at most %u devices (0..%u)", where,
                                                index, SVEMIG_STREAM_VIRTIO_MAX,
                                                SVEMIG_STREAM_VIRTIO_MAX - 1);
                if (seen->virtio & 1ull << index)
                        return svemig_error_set(err, code, "%sVIRTIO frame of device %u appears twice",
                                                where, index);
                seen->virtio |= 1ull << index;
                return 0;
        }
        if (seen->once & 1u << (type - SVEMIG_FRAME_VGIC))
                return svemig_error_set(err, code, "%sthe %s frame appears twice", where, name);
        seen->once |= (uint8_t)(1u << (type - SVEMIG_FRAME_VGIC));
        return 0;
}

/* ---- Writer ---- */

/* Packs m into a frame of type and writes it. */
static int put_message(struct svemig_stream_writer *w, uint16_t type, uint32_t index,
                       const ProtobufCMessage *m, struct svemig_error *err)
{
        struct frame_out f;
        size_t len;
        int r = stream_writer_ready(w, err);

        if (r < 0)
                return r;
        if (!w->info.devices)
                return svemig_error_set(err, EINVAL,
                                        "a %s frame in a stream whose header does not announce device state "
                                        "(svemig_stream_info.devices)",
                                        svemig_frame_type_name(type));
        len = protobuf_c_message_get_packed_size(m);
        if (len > SVEMIG_STREAM_FRAME_MAX)
                return svemig_error_set(err, E2BIG, "a %s frame of %zu bytes, over the frame limit of %u",
                                        svemig_frame_type_name(type), len, SVEMIG_STREAM_FRAME_MAX);
        if (bytebuf_reserve(&w->pack, len + 1) < 0 || bytebuf_reserve(&w->zbuf, frame_lz4_bound(len)) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        r = mark_seen(&w->dev_seen, type, index, EINVAL, "", err);
        if (r < 0)
                return r;
        protobuf_c_message_pack(m, w->pack.p);
        frame_build(&f, type, true, w->pack.p, len, w->lz4, w->zbuf.p);
        return stream_writer_emit(w, &f, err);
}

static int vcpus_match(const struct svemig_stream_writer *w, size_t n, const char *what,
                       struct svemig_error *err)
{
        if (n != w->info.vcpu_count)
                return svemig_error_set(err, EINVAL, "the %s state has %zu vcpus, the stream header %u",
                                        what, n, w->info.vcpu_count);
        return 0;
}

/* DevRegs for regs, in two caller-freed arrays. */
static int dev_regs(const struct vgic_reg *regs, size_t n, Svemig__DevReg **out, Svemig__DevReg ***ptrs)
{
        *out = calloc(n + 1, sizeof(**out));
        *ptrs = calloc(n + 1, sizeof(**ptrs));
        if (!*out || !*ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                svemig__dev_reg__init(&(*out)[i]);
                (*out)[i].offset = regs[i].offset;
                (*out)[i].value = regs[i].value;
                (*ptrs)[i] = &(*out)[i];
        }
        return 0;
}

_Static_assert(sizeof(struct vgic_reg) == sizeof(struct dev_reg), "one register layout");

int svemig_stream_write_vgic(struct svemig_stream_writer *w, const struct vgic_state *st,
                             struct svemig_error *err)
{
        Svemig__VgicState m = SVEMIG__VGIC_STATE__INIT;
        _cleanup_free_ Svemig__DevReg *dist = NULL, **dist_p = NULL;
        _cleanup_free_ Svemig__VgicCpu *cpus = NULL, **cpu_p = NULL;
        _cleanup_free_ Svemig__VgicSysReg *sys = NULL, **sys_p = NULL;
        Svemig__DevReg **rd[VGIC_STATE_CPUS_MAX] = {0}, *rd_v[VGIC_STATE_CPUS_MAX] = {0};
        int r = vgic_state_check(st, err);

        if (r >= 0)
                r = vcpus_match(w, st->n_cpus, "vGIC", err);
        if (r < 0)
                return r;
        cpus = calloc(st->n_cpus, sizeof(*cpus));
        cpu_p = calloc(st->n_cpus, sizeof(*cpu_p));
        sys = calloc(st->n_cpus * VGIC_STATE_SYSREGS_MAX, sizeof(*sys));
        sys_p = calloc(st->n_cpus * VGIC_STATE_SYSREGS_MAX, sizeof(*sys_p));
        r = !cpus || !cpu_p || !sys || !sys_p ? -ENOMEM : dev_regs(st->regs, st->n_regs, &dist, &dist_p);
        for (size_t i = 0; r >= 0 && i < st->n_cpus; i++) {
                const struct vgic_cpu_state *c = &st->cpus[i];
                Svemig__VgicSysReg *s = sys + i * VGIC_STATE_SYSREGS_MAX;

                svemig__vgic_cpu__init(&cpus[i]);
                r = dev_regs(c->regs, c->n_regs, &rd_v[i], &rd[i]);
                cpus[i].index = (uint32_t)i;
                cpus[i].mpidr = c->mpidr;
                cpus[i].n_regs = c->n_regs;
                cpus[i].regs = rd[i];
                cpus[i].ppi_level = c->ppi_level;
                for (size_t j = 0; j < c->n_sysregs; j++) {
                        svemig__vgic_sys_reg__init(&s[j]);
                        s[j].instr = c->sysregs[j].instr;
                        s[j].value = c->sysregs[j].value;
                        sys_p[i * VGIC_STATE_SYSREGS_MAX + j] = &s[j];
                }
                cpus[i].n_sysregs = c->n_sysregs;
                cpus[i].sysregs = sys_p + i * VGIC_STATE_SYSREGS_MAX;
                cpu_p[i] = &cpus[i];
        }
        if (r >= 0) {
                m.nr_irqs = st->nr_irqs;
                m.n_regs = st->n_regs;
                m.regs = dist_p;
                m.n_spi_levels = st->n_levels;
                m.spi_levels = st->spi_levels;
                m.n_cpus = st->n_cpus;
                m.cpus = cpu_p;
                r = put_message(w, SVEMIG_FRAME_VGIC, 0, &m.base, err);
        } else {
                r = svemig_error_set(err, ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < st->n_cpus; i++) {
                free(rd[i]);
                free(rd_v[i]);
        }
        return r;
}

int svemig_stream_write_timers(struct svemig_stream_writer *w, const struct timer_state *st,
                               struct svemig_error *err)
{
        Svemig__TimerState m = SVEMIG__TIMER_STATE__INIT;
        _cleanup_free_ Svemig__TimerVcpu *v = NULL, **p = NULL;
        int r = timer_state_check(st, err);

        if (r >= 0)
                r = vcpus_match(w, st->n_vcpus, "timer", err);
        if (r < 0)
                return r;
        v = calloc(st->n_vcpus, sizeof(*v));
        p = calloc(st->n_vcpus, sizeof(*p));
        if (!v || !p)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < st->n_vcpus; i++) {
                const struct timer_vcpu_state *t = &st->vcpus[i];

                svemig__timer_vcpu__init(&v[i]);
                v[i].index = (uint32_t)i;
                v[i].vtimer_ctl = t->vtimer_ctl;
                v[i].vtimer_cval = t->vtimer_cval;
                v[i].has_ptimer = t->has_ptimer;
                v[i].ptimer_ctl = t->ptimer_ctl;
                v[i].ptimer_cval = t->ptimer_cval;
                v[i].vtimer_irq = t->vtimer_irq;
                v[i].ptimer_irq = t->ptimer_irq;
                p[i] = &v[i];
        }
        m.counter = st->counter;
        m.frequency_hz = st->frequency_hz;
        m.n_vcpus = st->n_vcpus;
        m.vcpus = p;
        return put_message(w, SVEMIG_FRAME_TIMERS, 0, &m.base, err);
}

int svemig_stream_write_console(struct svemig_stream_writer *w, const struct console_state *st,
                                struct svemig_error *err)
{
        Svemig__ConsoleState m = SVEMIG__CONSOLE_STATE__INIT;
        _cleanup_free_ Svemig__DevReg *regs = NULL, **p = NULL;
        int r = console_state_check(st, err);

        if (r < 0)
                return r;
        if (dev_regs((const struct vgic_reg *)st->regs, st->n_regs, &regs, &p) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        m.kind = st->kind;
        m.mmio_base = st->base;
        m.irq = st->irq;
        m.n_regs = st->n_regs;
        m.regs = p;
        m.rx = (ProtobufCBinaryData){st->rx_len, st->rx};
        m.tx = (ProtobufCBinaryData){st->tx_len, st->tx};
        return put_message(w, SVEMIG_FRAME_CONSOLE, 0, &m.base, err);
}

int svemig_stream_write_virtio(struct svemig_stream_writer *w, const struct virtio_dev_state *st,
                               struct svemig_error *err)
{
        Svemig__VirtioDevice m = SVEMIG__VIRTIO_DEVICE__INIT;
        Svemig__VirtioQueue q[VIRTIO_STATE_QUEUES_MAX], *qp[VIRTIO_STATE_QUEUES_MAX];
        uint32_t *inflight[VIRTIO_STATE_QUEUES_MAX] = {0};
        int r = virtio_dev_state_check(st, err);

        if (r < 0)
                return r;
        for (size_t i = 0; i < st->n_queues && r >= 0; i++) {
                const struct virtio_queue_state *s = &st->queues[i];

                svemig__virtio_queue__init(&q[i]);
                q[i].num = s->num;
                q[i].ready = s->ready;
                q[i].desc = s->desc;
                q[i].driver = s->driver;
                q[i].device = s->device;
                q[i].last_avail_idx = s->last_avail_idx;
                q[i].used_idx = s->used_idx;
                inflight[i] = calloc(s->n_inflight + 1, sizeof(*inflight[i]));
                if (!inflight[i])
                        r = svemig_error_set(err, ENOMEM, "out of memory");
                for (size_t j = 0; r >= 0 && j < s->n_inflight; j++)
                        inflight[i][j] = s->inflight[j];
                q[i].n_inflight = s->n_inflight;
                q[i].inflight = inflight[i];
                qp[i] = &q[i];
        }
        if (r >= 0) {
                m.index = st->index;
                m.device_id = st->device_id;
                m.mmio_base = st->base;
                m.irq = st->irq;
                m.device_features = st->device_features;
                m.driver_features = st->driver_features;
                m.device_features_sel = st->device_features_sel;
                m.driver_features_sel = st->driver_features_sel;
                m.queue_sel = st->queue_sel;
                m.status = st->status;
                m.interrupt_status = st->interrupt_status;
                m.config_generation = st->config_generation;
                m.config = (ProtobufCBinaryData){st->config_len, (uint8_t *)st->config};
                m.n_queues = st->n_queues;
                m.queues = qp;
                r = put_message(w, SVEMIG_FRAME_VIRTIO, st->index, &m.base, err);
        }
        for (size_t i = 0; i < VIRTIO_STATE_QUEUES_MAX; i++)
                free(inflight[i]);
        return r;
}

/* ---- Reader ---- */

/* The pending frame, of type, checked and decompressed into *raw. */
static int pending_payload(struct svemig_stream_reader *r, uint16_t type, const uint8_t **raw,
                           struct svemig_error *err)
{
        int k = stream_check(&r->failure, err);

        if (k < 0)
                return k;
        if (!r->pending || !r->pending_seen || r->head.type != type)
                return svemig_error_set(err, EINVAL,
                                        "no %s frame is pending: call svemig_stream_next() first",
                                        svemig_frame_type_name(type));
        return stream_reader_open_payload(r, raw, err);
}

/* A decoded state that breaks a rule: the stream is at fault, at this offset. */
static int bad(struct svemig_stream_reader *r, int k, uint16_t type, struct svemig_error *err)
{
        if (err)
                err->code = k == -E2BIG ? E2BIG : EBADMSG;
        return svemig_error_prefix(err, "offset %llu: the %s frame", (unsigned long long)r->head_offset,
                                   svemig_frame_type_name(type));
}

static int not_message(struct svemig_stream_reader *r, uint16_t type, const char *msg,
                       struct svemig_error *err)
{
        return svemig_error_set(err, EBADMSG, "offset %llu: the %s frame is not a valid %s message",
                                (unsigned long long)r->head_offset, svemig_frame_type_name(type), msg);
}

/* Common ending of a read: the state's own check, once only, the frame consumed. */
static int finish_read(struct svemig_stream_reader *r, uint16_t type, uint32_t index, int k,
                       struct svemig_error *err)
{
        char where[64];

        if (k < 0)
                return stream_fail(&r->failure, bad(r, k, type, err), err);
        snprintf(where, sizeof(where), "offset %llu: ", (unsigned long long)r->head_offset);
        k = mark_seen(&r->dev_seen, type, index, EBADMSG, where, err);
        if (k < 0)
                return stream_fail(&r->failure, k, err);
        r->pending = false;
        return 0;
}

static int copy_regs(struct vgic_reg **out, Svemig__DevReg *const *in, size_t n)
{
        *out = calloc(n + 1, sizeof(**out));
        if (!*out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                (*out)[i] = (struct vgic_reg){in[i]->offset, in[i]->value};
        return 0;
}

static int vgic_from(const Svemig__VgicState *m, unsigned vcpu_count, struct vgic_state *st,
                     struct svemig_error *err)
{
        if (m->n_cpus != vcpu_count)
                return svemig_error_set(err, EBADMSG, "%zu CPU interfaces, the header %u vcpus", m->n_cpus,
                                        vcpu_count);
        if (m->n_regs > VGIC_STATE_DIST_REGS_MAX || m->n_spi_levels > VGIC_STATE_NR_IRQS_MAX / 32)
                return svemig_error_set(
                        err, E2BIG, "%zu distributor registers and %zu level words, over %u and %u",
                        m->n_regs, m->n_spi_levels, VGIC_STATE_DIST_REGS_MAX, VGIC_STATE_NR_IRQS_MAX / 32);
        st->nr_irqs = m->nr_irqs;
        st->cpus = calloc(m->n_cpus + 1, sizeof(*st->cpus));
        st->spi_levels = calloc(m->n_spi_levels + 1, sizeof(*st->spi_levels));
        if (!st->cpus || !st->spi_levels || copy_regs(&st->regs, m->regs, m->n_regs) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        st->n_regs = m->n_regs;
        st->n_levels = m->n_spi_levels;
        if (m->n_spi_levels) /* protobuf-c leaves an empty array NULL */
                memcpy(st->spi_levels, m->spi_levels, m->n_spi_levels * sizeof(*st->spi_levels));
        for (size_t i = 0; i < m->n_cpus; i++) {
                const Svemig__VgicCpu *c = m->cpus[i];
                struct vgic_cpu_state *d = &st->cpus[i];

                st->n_cpus = i + 1;
                if (c->index != i)
                        return svemig_error_set(err, EBADMSG,
                                                "CPU interface %zu says it is vcpu %u: they come "
                                                "in index order",
                                                i, c->index);
                if (c->n_regs > VGIC_STATE_REDIST_REGS_MAX || c->n_sysregs > VGIC_STATE_SYSREGS_MAX)
                        return svemig_error_set(err, E2BIG,
                                                "vcpu %zu: %zu redistributor and %zu ICC registers, "
                                                "over %u and %u",
                                                i, c->n_regs, c->n_sysregs, VGIC_STATE_REDIST_REGS_MAX,
                                                VGIC_STATE_SYSREGS_MAX);
                if (copy_regs(&d->regs, c->regs, c->n_regs) < 0)
                        return svemig_error_set(err, ENOMEM, "out of memory");
                d->n_regs = c->n_regs;
                d->mpidr = c->mpidr;
                d->ppi_level = c->ppi_level;
                for (size_t j = 0; j < c->n_sysregs; j++) {
                        if (c->sysregs[j]->instr > UINT16_MAX)
                                return svemig_error_set(err, EBADMSG,
                                                        "vcpu %zu: system register 0x%x is not "
                                                        "an encoding",
                                                        i, c->sysregs[j]->instr);
                        d->sysregs[j] =
                                (struct vgic_sysreg){(uint16_t)c->sysregs[j]->instr, c->sysregs[j]->value};
                }
                d->n_sysregs = c->n_sysregs;
        }
        return vgic_state_check(st, err);
}

int svemig_stream_read_vgic(struct svemig_stream_reader *r, struct vgic_state *st, struct svemig_error *err)
{
        struct vgic_state out = {0};
        Svemig__VgicState *m;
        const uint8_t *raw;
        int k = pending_payload(r, SVEMIG_FRAME_VGIC, &raw, err);

        if (k < 0)
                return k == -EINVAL ? k : stream_fail(&r->failure, k, err);
        m = svemig__vgic_state__unpack(&r->arena.allocator, r->head.raw_len, raw);
        if (!m)
                return stream_fail(&r->failure, not_message(r, SVEMIG_FRAME_VGIC, "VgicState", err), err);
        k = vgic_from(m, r->info.vcpu_count, &out, err);
        k = finish_read(r, SVEMIG_FRAME_VGIC, 0, k, err);
        if (k < 0) {
                vgic_state_done(&out);
                return k;
        }
        *st = out;
        return 0;
}

static int timers_from(const Svemig__TimerState *m, unsigned vcpu_count, struct timer_state *st,
                       struct svemig_error *err)
{
        if (m->n_vcpus != vcpu_count)
                return svemig_error_set(err, EBADMSG, "timers of %zu vcpus, the header %u", m->n_vcpus,
                                        vcpu_count);
        st->counter = m->counter;
        st->frequency_hz = m->frequency_hz;
        st->vcpus = calloc(m->n_vcpus + 1, sizeof(*st->vcpus));
        if (!st->vcpus)
                return svemig_error_set(err, ENOMEM, "out of memory");
        st->n_vcpus = m->n_vcpus;
        for (size_t i = 0; i < m->n_vcpus; i++) {
                const Svemig__TimerVcpu *t = m->vcpus[i];

                if (t->index != i)
                        return svemig_error_set(err, EBADMSG,
                                                "entry %zu says it is vcpu %u: they come in "
                                                "index order",
                                                i, t->index);
                st->vcpus[i] = (struct timer_vcpu_state){
                        .vtimer_ctl = t->vtimer_ctl,
                        .vtimer_cval = t->vtimer_cval,
                        .has_ptimer = t->has_ptimer,
                        .ptimer_ctl = t->ptimer_ctl,
                        .ptimer_cval = t->ptimer_cval,
                        .vtimer_irq = t->vtimer_irq,
                        .ptimer_irq = t->ptimer_irq,
                };
        }
        return timer_state_check(st, err);
}

int svemig_stream_read_timers(struct svemig_stream_reader *r, struct timer_state *st,
                              struct svemig_error *err)
{
        struct timer_state out = {0};
        Svemig__TimerState *m;
        const uint8_t *raw;
        int k = pending_payload(r, SVEMIG_FRAME_TIMERS, &raw, err);

        if (k < 0)
                return k == -EINVAL ? k : stream_fail(&r->failure, k, err);
        m = svemig__timer_state__unpack(&r->arena.allocator, r->head.raw_len, raw);
        if (!m)
                return stream_fail(&r->failure, not_message(r, SVEMIG_FRAME_TIMERS, "TimerState", err), err);
        k = timers_from(m, r->info.vcpu_count, &out, err);
        k = finish_read(r, SVEMIG_FRAME_TIMERS, 0, k, err);
        if (k < 0) {
                timer_state_done(&out);
                return k;
        }
        *st = out;
        return 0;
}

static int bytes_copy(uint8_t **out, size_t *len, const ProtobufCBinaryData *b)
{
        *out = malloc(b->len + 1);
        if (!*out)
                return -ENOMEM;
        if (b->len)
                memcpy(*out, b->data, b->len);
        *len = b->len;
        return 0;
}

static int console_from(const Svemig__ConsoleState *m, struct console_state *st, struct svemig_error *err)
{
        if (m->n_regs > DEV_STATE_REGS_MAX || m->rx.len > CONSOLE_STATE_BYTES_MAX ||
            m->tx.len > CONSOLE_STATE_BYTES_MAX)
                return svemig_error_set(err, E2BIG,
                                        "%zu registers, %zu bytes in and %zu out: over %u, %u, %u",
                                        m->n_regs, m->rx.len, m->tx.len, DEV_STATE_REGS_MAX,
                                        CONSOLE_STATE_BYTES_MAX, CONSOLE_STATE_BYTES_MAX);
        st->kind = m->kind;
        st->base = m->mmio_base;
        st->irq = m->irq;
        for (size_t i = 0; i < m->n_regs; i++)
                st->regs[i] = (struct dev_reg){m->regs[i]->offset, m->regs[i]->value};
        st->n_regs = m->n_regs;
        if (bytes_copy(&st->rx, &st->rx_len, &m->rx) < 0 || bytes_copy(&st->tx, &st->tx_len, &m->tx) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        return console_state_check(st, err);
}

int svemig_stream_read_console(struct svemig_stream_reader *r, struct console_state *st,
                               struct svemig_error *err)
{
        struct console_state out = {0};
        Svemig__ConsoleState *m;
        const uint8_t *raw;
        int k = pending_payload(r, SVEMIG_FRAME_CONSOLE, &raw, err);

        if (k < 0)
                return k == -EINVAL ? k : stream_fail(&r->failure, k, err);
        m = svemig__console_state__unpack(&r->arena.allocator, r->head.raw_len, raw);
        if (!m)
                return stream_fail(&r->failure, not_message(r, SVEMIG_FRAME_CONSOLE, "ConsoleState", err),
                                   err);
        k = console_from(m, &out, err);
        k = finish_read(r, SVEMIG_FRAME_CONSOLE, 0, k, err);
        if (k < 0) {
                console_state_done(&out);
                return k;
        }
        *st = out;
        return 0;
}

static int queue_from(const Svemig__VirtioQueue *q, struct virtio_queue_state *d, size_t i,
                      struct svemig_error *err)
{
        if (q->last_avail_idx > UINT16_MAX || q->used_idx > UINT16_MAX)
                return svemig_error_set(err, EBADMSG, "queue %zu: ring indices %u and %u over 16 bits", i,
                                        q->last_avail_idx, q->used_idx);
        if (q->n_inflight > VIRTIO_QUEUE_SIZE_MAX)
                return svemig_error_set(err, E2BIG, "queue %zu: %zu requests in flight, over %u", i,
                                        q->n_inflight, VIRTIO_QUEUE_SIZE_MAX);
        *d = (struct virtio_queue_state){
                .num = q->num,
                .ready = q->ready,
                .desc = q->desc,
                .driver = q->driver,
                .device = q->device,
                .last_avail_idx = (uint16_t)q->last_avail_idx,
                .used_idx = (uint16_t)q->used_idx,
        };
        d->inflight = calloc(q->n_inflight + 1, sizeof(*d->inflight));
        if (!d->inflight)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t j = 0; j < q->n_inflight; j++) {
                if (q->inflight[j] > UINT16_MAX)
                        return svemig_error_set(err, EBADMSG, "queue %zu: request head %u over 16 bits", i,
                                                q->inflight[j]);
                d->inflight[j] = (uint16_t)q->inflight[j];
        }
        d->n_inflight = q->n_inflight;
        return 0;
}

static int virtio_from(const Svemig__VirtioDevice *m, struct virtio_dev_state *st, struct svemig_error *err)
{
        int k = 0;

        if (m->config.len > VIRTIO_STATE_CONFIG_MAX || m->n_queues > VIRTIO_STATE_QUEUES_MAX)
                return svemig_error_set(err, E2BIG, "%zu configuration bytes and %zu queues, over %u and %u",
                                        m->config.len, m->n_queues, VIRTIO_STATE_CONFIG_MAX,
                                        VIRTIO_STATE_QUEUES_MAX);
        *st = (struct virtio_dev_state){
                .index = m->index,
                .device_id = m->device_id,
                .base = m->mmio_base,
                .irq = m->irq,
                .device_features = m->device_features,
                .driver_features = m->driver_features,
                .device_features_sel = m->device_features_sel,
                .driver_features_sel = m->driver_features_sel,
                .queue_sel = m->queue_sel,
                .status = m->status,
                .interrupt_status = m->interrupt_status,
                .config_generation = m->config_generation,
                .config_len = m->config.len,
        };
        if (m->config.len)
                memcpy(st->config, m->config.data, m->config.len);
        for (size_t i = 0; i < m->n_queues && k >= 0; i++) {
                k = queue_from(m->queues[i], &st->queues[i], i, err);
                st->n_queues = i + 1;
        }
        return k < 0 ? k : virtio_dev_state_check(st, err);
}

int svemig_stream_read_virtio(struct svemig_stream_reader *r, struct virtio_dev_state *st,
                              struct svemig_error *err)
{
        struct virtio_dev_state out = {0};
        Svemig__VirtioDevice *m;
        const uint8_t *raw;
        int k = pending_payload(r, SVEMIG_FRAME_VIRTIO, &raw, err);

        if (k < 0)
                return k == -EINVAL ? k : stream_fail(&r->failure, k, err);
        m = svemig__virtio_device__unpack(&r->arena.allocator, r->head.raw_len, raw);
        if (!m)
                return stream_fail(&r->failure, not_message(r, SVEMIG_FRAME_VIRTIO, "VirtioDevice", err),
                                   err);
        k = virtio_from(m, &out, err);
        k = finish_read(r, SVEMIG_FRAME_VIRTIO, m->index, k, err);
        if (k < 0) {
                virtio_dev_state_done(&out);
                return k;
        }
        *st = out;
        return 0;
}
