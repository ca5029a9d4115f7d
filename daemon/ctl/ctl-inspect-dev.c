/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl inspect's view of the device frames of stream format 1.2: the
 * vGIC's registers by name, the timers and the counter, the console's
 * registers and bytes, each virtio device's transport and queues.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl-inspect-dev.h"
#include "macro.h"
#include "svemig/devstate.h"
#include "svemig/stream.h"
#include "svemig/timer-state.h"
#include "svemig/vgic-state.h"
#include "utf8.h"

#define NAME_MAX_LEN 48

/* The console's bytes for a terminal or JSON: escaped, never raw. */
static void bytes_text(const uint8_t *p, size_t n, char *buf, size_t size)
{
        utf8_escape((const char *)p, n, buf, size);
}

static void timer_ctl_text(uint64_t ctl, char *buf, size_t len)
{
        snprintf(buf, len, "0x%" PRIx64 " (%s%s%s)", ctl, ctl & TIMER_CTL_ENABLE ? "enabled" : "disabled",
                 ctl & TIMER_CTL_IMASK ? ", masked" : "", ctl & TIMER_CTL_ISTATUS ? ", firing" : "");
}

/* ---- Text ---- */

static void text_regs(bool redist, const struct vgic_reg *regs, size_t n)
{
        char name[NAME_MAX_LEN];

        for (size_t i = 0; i < n; i++) {
                vgic_reg_name(redist, regs[i].offset, name, sizeof(name));
                printf("    %-24s 0x%08x\n", name, regs[i].value);
        }
}

static void text_vgic(const struct vgic_state *g, bool summary)
{
        printf("\nVGIC: GICv3, %u IRQs, %zu CPU interfaces, %zu distributor words\n", g->nr_irqs, g->n_cpus,
               g->n_regs);
        if (summary)
                return;
        text_regs(false, g->regs, g->n_regs);
        for (size_t i = 0; i < g->n_levels; i++)
                printf("    %-24s 0x%08x\n", "line levels", g->spi_levels[i]);
        for (size_t c = 0; c < g->n_cpus; c++) {
                const struct vgic_cpu_state *cpu = &g->cpus[c];

                printf("  vcpu %zu (MPIDR 0x%" PRIx64 "): PPI line levels 0x%08x\n", c, cpu->mpidr,
                       cpu->ppi_level);
                text_regs(true, cpu->regs, cpu->n_regs);
                for (size_t i = 0; i < cpu->n_sysregs; i++)
                        printf("    %-24s 0x%016" PRIx64 "\n", vgic_sysreg_name(cpu->sysregs[i].instr),
                               cpu->sysregs[i].value);
        }
}

static void text_timers(const struct timer_state *t, bool summary)
{
        char ctl[64];

        printf("\nTIMERS: guest counter 0x%016" PRIx64 " at %" PRIu64 " Hz, %zu vcpus\n", t->counter,
               t->frequency_hz, t->n_vcpus);
        if (summary)
                return;
        for (size_t i = 0; i < t->n_vcpus; i++) {
                const struct timer_vcpu_state *v = &t->vcpus[i];

                timer_ctl_text(v->vtimer_ctl, ctl, sizeof(ctl));
                printf("  vcpu %zu virtual   CTL %s, CVAL 0x%016" PRIx64 ", PPI %u\n", i, ctl,
                       v->vtimer_cval, v->vtimer_irq);
                if (!v->has_ptimer) {
                        printf("  vcpu %zu physical  not carried (the source's kernel lists no PTIMER "
                               "registers)\n",
                               i);
                        continue;
                }
                timer_ctl_text(v->ptimer_ctl, ctl, sizeof(ctl));
                printf("  vcpu %zu physical  CTL %s, CVAL 0x%016" PRIx64 ", PPI %u\n", i, ctl,
                       v->ptimer_cval, v->ptimer_irq);
        }
}

static void text_console(const struct console_state *c, bool summary)
{
        char text[4 * CONSOLE_STATE_BYTES_MAX + 1];

        printf("\nCONSOLE: %s at 0x%" PRIx64 ", SPI %u, %zu bytes in, %zu out\n", console_kind_name(c->kind),
               c->base, c->irq, c->rx_len, c->tx_len);
        if (summary)
                return;
        for (size_t i = 0; i < c->n_regs; i++)
                printf("    0x%03x                    0x%08x\n", c->regs[i].offset, c->regs[i].value);
        bytes_text(c->rx, c->rx_len, text, sizeof(text));
        printf("  in  \"%s\"\n", text);
        bytes_text(c->tx, c->tx_len, text, sizeof(text));
        printf("  out \"%s\"\n", text);
}

static void text_virtio(const struct virtio_dev_state *d, bool summary)
{
        printf("\nVIRTIO %u: %s at 0x%" PRIx64 ", SPI %u, status 0x%02x, features 0x%016" PRIx64
               " of 0x%016" PRIx64 ", %zu queues\n",
               d->index, virtio_device_name(d->device_id), d->base, d->irq, d->status, d->driver_features,
               d->device_features, d->n_queues);
        if (summary)
                return;
        printf("  interrupt status 0x%x, config generation %u, selectors: queue %u, features %u/%u, %zu "
               "config bytes\n",
               d->interrupt_status, d->config_generation, d->queue_sel, d->device_features_sel,
               d->driver_features_sel, d->config_len);
        for (size_t q = 0; q < d->n_queues; q++) {
                const struct virtio_queue_state *v = &d->queues[q];

                printf("  queue %zu: %u entries%s, desc 0x%" PRIx64 ", driver 0x%" PRIx64
                       ", device 0x%" PRIx64 ", next avail %u, used %u, %zu in flight",
                       q, v->num, v->ready ? ", ready" : "", v->desc, v->driver, v->device,
                       v->last_avail_idx, v->used_idx, v->n_inflight);
                for (size_t i = 0; i < v->n_inflight; i++)
                        printf("%s%u", i ? " " : ": ", v->inflight[i]);
                printf("\n");
        }
}

void inspect_device_text(int type, const void *st, bool summary)
{
        switch (type) {
        case SVEMIG_FRAME_VGIC:
                text_vgic(st, summary);
                break;
        case SVEMIG_FRAME_TIMERS:
                text_timers(st, summary);
                break;
        case SVEMIG_FRAME_CONSOLE:
                text_console(st, summary);
                break;
        default:
                text_virtio(st, summary);
                break;
        }
}

/* ---- JSON ---- */

static struct json_object *hex(uint64_t v)
{
        char buf[24];

        snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
        return json_object_new_string(buf);
}

static void add(struct json_object *o, const char *key, struct json_object *v)
{
        json_object_object_add(o, key, v);
}

static struct json_object *json_regs(bool redist, const struct vgic_reg *regs, size_t n)
{
        struct json_object *a = json_object_new_array();
        char name[NAME_MAX_LEN];

        for (size_t i = 0; i < n; i++) {
                struct json_object *r = json_object_new_object();

                vgic_reg_name(redist, regs[i].offset, name, sizeof(name));
                add(r, "name", json_object_new_string(name));
                add(r, "offset", hex(regs[i].offset));
                add(r, "value", hex(regs[i].value));
                json_object_array_add(a, r);
        }
        return a;
}

static void json_vgic(struct json_object *o, const struct vgic_state *g, bool summary)
{
        struct json_object *cpus = json_object_new_array(), *levels = json_object_new_array();

        add(o, "nr_irqs", json_object_new_int((int32_t)g->nr_irqs));
        add(o, "cpu_interfaces", json_object_new_int64((int64_t)g->n_cpus));
        if (summary) {
                json_object_put(cpus);
                json_object_put(levels);
                return;
        }
        add(o, "distributor", json_regs(false, g->regs, g->n_regs));
        for (size_t i = 0; i < g->n_levels; i++)
                json_object_array_add(levels, hex(g->spi_levels[i]));
        add(o, "spi_levels", levels);
        for (size_t c = 0; c < g->n_cpus; c++) {
                const struct vgic_cpu_state *cpu = &g->cpus[c];
                struct json_object *j = json_object_new_object(), *sys = json_object_new_array();

                add(j, "vcpu", json_object_new_int64((int64_t)c));
                add(j, "mpidr", hex(cpu->mpidr));
                add(j, "ppi_levels", hex(cpu->ppi_level));
                add(j, "redistributor", json_regs(true, cpu->regs, cpu->n_regs));
                for (size_t i = 0; i < cpu->n_sysregs; i++) {
                        struct json_object *r = json_object_new_object();

                        add(r, "name", json_object_new_string(vgic_sysreg_name(cpu->sysregs[i].instr)));
                        add(r, "value", hex(cpu->sysregs[i].value));
                        json_object_array_add(sys, r);
                }
                add(j, "cpu_interface", sys);
                json_object_array_add(cpus, j);
        }
        add(o, "cpus", cpus);
}

static void json_timers(struct json_object *o, const struct timer_state *t, bool summary)
{
        struct json_object *a = json_object_new_array();

        add(o, "counter", hex(t->counter));
        add(o, "frequency_hz", json_object_new_int64((int64_t)t->frequency_hz));
        if (summary) {
                json_object_put(a);
                return;
        }
        for (size_t i = 0; i < t->n_vcpus; i++) {
                const struct timer_vcpu_state *v = &t->vcpus[i];
                struct json_object *j = json_object_new_object();

                add(j, "vcpu", json_object_new_int64((int64_t)i));
                add(j, "virtual_ctl", hex(v->vtimer_ctl));
                add(j, "virtual_cval", hex(v->vtimer_cval));
                add(j, "virtual_ppi", json_object_new_int((int32_t)v->vtimer_irq));
                add(j, "physical", json_object_new_boolean(v->has_ptimer));
                if (v->has_ptimer) {
                        add(j, "physical_ctl", hex(v->ptimer_ctl));
                        add(j, "physical_cval", hex(v->ptimer_cval));
                        add(j, "physical_ppi", json_object_new_int((int32_t)v->ptimer_irq));
                }
                json_object_array_add(a, j);
        }
        add(o, "vcpus", a);
}

static void json_console(struct json_object *o, const struct console_state *c, bool summary)
{
        char text[4 * CONSOLE_STATE_BYTES_MAX + 1];
        struct json_object *regs;

        add(o, "kind", json_object_new_string(console_kind_name(c->kind)));
        add(o, "base", hex(c->base));
        add(o, "irq", json_object_new_int((int32_t)c->irq));
        add(o, "rx_bytes", json_object_new_int64((int64_t)c->rx_len));
        add(o, "tx_bytes", json_object_new_int64((int64_t)c->tx_len));
        if (summary)
                return;
        regs = json_object_new_array();
        for (size_t i = 0; i < c->n_regs; i++) {
                struct json_object *r = json_object_new_object();

                add(r, "offset", hex(c->regs[i].offset));
                add(r, "value", hex(c->regs[i].value));
                json_object_array_add(regs, r);
        }
        add(o, "registers", regs);
        bytes_text(c->rx, c->rx_len, text, sizeof(text));
        add(o, "rx", json_object_new_string(text));
        bytes_text(c->tx, c->tx_len, text, sizeof(text));
        add(o, "tx", json_object_new_string(text));
}

static void json_virtio(struct json_object *o, const struct virtio_dev_state *d, bool summary)
{
        struct json_object *qs;

        add(o, "index", json_object_new_int((int32_t)d->index));
        add(o, "device", json_object_new_string(virtio_device_name(d->device_id)));
        add(o, "base", hex(d->base));
        add(o, "irq", json_object_new_int((int32_t)d->irq));
        add(o, "status", hex(d->status));
        add(o, "device_features", hex(d->device_features));
        add(o, "driver_features", hex(d->driver_features));
        if (summary)
                return;
        add(o, "interrupt_status", hex(d->interrupt_status));
        add(o, "config_generation", json_object_new_int((int32_t)d->config_generation));
        add(o, "queue_sel", json_object_new_int((int32_t)d->queue_sel));
        add(o, "config_bytes", json_object_new_int64((int64_t)d->config_len));
        qs = json_object_new_array();
        for (size_t q = 0; q < d->n_queues; q++) {
                const struct virtio_queue_state *v = &d->queues[q];
                struct json_object *j = json_object_new_object(), *inf = json_object_new_array();

                add(j, "num", json_object_new_int((int32_t)v->num));
                add(j, "ready", json_object_new_boolean(v->ready));
                add(j, "desc", hex(v->desc));
                add(j, "driver", hex(v->driver));
                add(j, "device", hex(v->device));
                add(j, "last_avail_idx", json_object_new_int(v->last_avail_idx));
                add(j, "used_idx", json_object_new_int(v->used_idx));
                for (size_t i = 0; i < v->n_inflight; i++)
                        json_object_array_add(inf, json_object_new_int(v->inflight[i]));
                add(j, "in_flight", inf);
                json_object_array_add(qs, j);
        }
        add(o, "queues", qs);
}

struct json_object *inspect_device_json(int type, const void *st, bool summary)
{
        struct json_object *o = json_object_new_object();

        add(o, "frame", json_object_new_string(svemig_frame_type_name((uint32_t)type)));
        switch (type) {
        case SVEMIG_FRAME_VGIC:
                json_vgic(o, st, summary);
                break;
        case SVEMIG_FRAME_TIMERS:
                json_timers(o, st, summary);
                break;
        case SVEMIG_FRAME_CONSOLE:
                json_console(o, st, summary);
                break;
        default:
                json_virtio(o, st, summary);
                break;
        }
        return o;
}
