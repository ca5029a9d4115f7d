/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "stream-content.h"
#include "svemig/hv.h"
#include "svemig/kvmreg.h"

const struct svemig_stream_slot golden_slots[GOLDEN_SLOTS] = {
        {.id = 0, .gpa = 0x40000000ull, .size = 24 * GOLDEN_PAGE},
        {.id = 3, .gpa = 0x80000000ull, .size = 8 * GOLDEN_PAGE},
};

static uint8_t pfr0[8] = {0x11, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00};
static uint8_t zfr0[8] = {0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
const struct vcpu_reg golden_id_regs[2] = {
        {.id = 0x603000000013c020ull /* ID_AA64PFR0_EL1 */, .size = 8, .value = pfr0},
        {.id = 0x603000000013c024ull /* ID_AA64ZFR0_EL1 */, .size = 8, .value = zfr0},
};

uint64_t content_rand(uint64_t *state)
{
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

void content_fill_random(uint8_t *p, size_t n, uint64_t *state)
{
        for (size_t i = 0; i < n; i++) {
                if (i % 8 == 0) {
                        uint64_t v = content_rand(state);
                        memcpy(p + i, &v, MIN(8, n - i));
                }
        }
}

int content_vcpu(unsigned index, const vqset_t *vls, uint64_t seed, struct vcpu_state *st)
{
        uint64_t ids[128], rng = seed;
        bool sve = !vqset_empty(vls);
        unsigned vq = vqset_highest(vls);
        size_t n = 0;
        int r;

        for (unsigned i = 0; i < 31; i++)
                ids[n++] = kvmreg_core_x(i);
        ids[n++] = kvmreg_core_sp();
        ids[n++] = kvmreg_core_pc();
        ids[n++] = kvmreg_core_pstate();
        if (!sve)
                for (unsigned i = 0; i < 32; i++)
                        ids[n++] = kvmreg_core_vreg(i);
        ids[n++] = kvmreg_core_fpsr();
        ids[n++] = kvmreg_core_fpcr();
        if (sve) {
                for (unsigned i = 0; i < 32; i++)
                        ids[n++] = kvmreg_zreg(i, 0);
                for (unsigned i = 0; i < 16; i++)
                        ids[n++] = kvmreg_preg(i, 0);
                ids[n++] = kvmreg_ffr(0);
                ids[n++] = kvmreg_vls();
                ids[n++] = KVMREG_ZCR_EL1;
        }
        ids[n++] = golden_id_regs[0].id;
        ids[n++] = golden_id_regs[1].id;

        r = vcpu_state_alloc(st, ids, n);
        if (r < 0)
                return r;
        st->index = index;
        st->features = HV_FEAT_BIT(HV_FEAT_PSCI_0_2) | (sve ? HV_FEAT_BIT(HV_FEAT_SVE) : 0);
        st->vls = *vls;
        st->mp_state = index == 0 ? HV_MP_STATE_RUNNABLE : HV_MP_STATE_STOPPED;
        for (size_t i = 0; i < n; i++) {
                struct vcpu_reg *reg = &st->regs[i];
                struct kvmreg d;

                content_fill_random(reg->value, reg->size, &rng);
                if (kvmreg_decode(reg->id, &d, NULL) < 0)
                        continue;
                /* Bytes beyond the VL read as zero on KVM. */
                if (d.cls == KVMREG_CLASS_SVE_Z)
                        memset(reg->value + 16 * vq, 0, reg->size - 16 * vq);
                else if (d.cls == KVMREG_CLASS_SVE_P || d.cls == KVMREG_CLASS_SVE_FFR)
                        memset(reg->value + 2 * vq, 0, reg->size - 2 * vq);
                else if (d.cls == KVMREG_CLASS_SVE_VLS)
                        memcpy(reg->value, vls->w, KVMREG_VLS_BYTES);
                else if (reg->id == golden_id_regs[0].id || reg->id == golden_id_regs[1].id)
                        memcpy(reg->value, reg->id == golden_id_regs[0].id ? pfr0 : zfr0, 8);
                else if (reg->id == KVMREG_ZCR_EL1) {
                        memset(reg->value, 0, reg->size);
                        reg->value[0] = (uint8_t)(vq - 1);
                }
        }
        return 0;
}

static void fill_page(uint8_t *p, unsigned slot, size_t i, unsigned round)
{
        uint64_t rng = ((uint64_t)slot << 48) ^ ((uint64_t)round << 40) ^ i;
        static const char words[] = "vector length quantum slice predicate register guest host ";

        switch (i % 5) {
        case 0:
        case 3:
                memset(p, 0, GOLDEN_PAGE);
                break;
        case 1:
                content_fill_random(p, GOLDEN_PAGE, &rng);
                break;
        case 2:
                for (size_t k = 0; k < GOLDEN_PAGE; k++)
                        p[k] = (uint8_t)words[(k * 7 + i + round) % (sizeof(words) - 1)];
                break;
        default:
                for (size_t k = 0; k < GOLDEN_PAGE / 8; k++) {
                        uint64_t v = k + i * 1000 + round;
                        memcpy(p + 8 * k, &v, 8);
                }
                break;
        }
}

void content_dirty(unsigned slot, uint64_t *bitmap, size_t n_pages)
{
        memset(bitmap, 0, DIV_ROUND_UP(n_pages, 64) * 8);
        /* A few scattered pages, a run across a chunk boundary, and a page turned zero. */
        for (size_t i = 0; i < n_pages; i++)
                if (i % 11 == 2 || (i >= 6 && i <= 10) || i == n_pages - 1)
                        bitmap[i / 64] |= 1ull << (i % 64);
}

void content_memory(unsigned slot, uint8_t *mem, size_t n_pages, unsigned round)
{
        _cleanup_free_ uint64_t *dirty = NULL;

        for (size_t i = 0; i < n_pages; i++)
                fill_page(mem + i * GOLDEN_PAGE, slot, i, 0);
        if (round == 0)
                return;
        dirty = calloc(DIV_ROUND_UP(n_pages, 64), sizeof(*dirty));
        if (!dirty)
                abort();
        content_dirty(slot, dirty, n_pages);
        for (size_t i = 0; i < n_pages; i++)
                if (dirty[i / 64] & (1ull << (i % 64)))
                        fill_page(mem + i * GOLDEN_PAGE, slot, i + 1, round);
}

void golden_info(struct svemig_stream_info *info)
{
        memset(info, 0, sizeof(*info));
        strcpy(info->producer_name, "svemig");
        strcpy(info->producer_version, "0.1.0");
        strcpy(info->host_name, "golden-host");
        strcpy(info->source_kernel, "6.1.0-golden");
        strcpy(info->hypervisor, "sim");
        strcpy(info->purpose, "snapshot");
        vqset_add(&info->host_vls, 1);
        vqset_add(&info->host_vls, 2);
        vqset_add(&info->host_vls, 4);
        vqset_add(&info->guest_vls, 1);
        vqset_add(&info->guest_vls, 2);
        info->guest_max_vq = 2;
        info->vcpu_features = HV_FEAT_BIT(HV_FEAT_PSCI_0_2) | HV_FEAT_BIT(HV_FEAT_SVE);
        info->vcpu_count = GOLDEN_VCPUS;
        info->page_size = GOLDEN_PAGE;
        info->chunk_pages = GOLDEN_CHUNK_PAGES;
        info->slots = golden_slots;
        info->n_slots = GOLDEN_SLOTS;
        info->id_regs = golden_id_regs;
        info->n_id_regs = 2;
        info->compression = SVEMIG_COMPRESSION_LZ4;
        info->digest = SVEMIG_DIGEST_XXH3_128;
        info->created_ns = 1700000000123456789ull;
        info->devices = true;
}

/* Appends n words from base on, with values drawn from *seed. */
static void add_words(struct vgic_reg *regs, size_t *n, uint32_t base, unsigned words, uint64_t *seed)
{
        for (unsigned i = 0; i < words; i++)
                regs[(*n)++] = (struct vgic_reg){base + 4 * i, (uint32_t)content_rand(seed)};
}

#define ICC(crn, crm, op2) ((uint16_t)(3u << 14 | (crn) << 7 | (crm) << 3 | (op2)))

int golden_vgic(struct vgic_state *st)
{
        static const uint16_t icc[] = {ICC(12, 12, 5), ICC(12, 12, 4), ICC(12, 12, 6),
                                       ICC(12, 12, 7), ICC(4, 6, 0),   ICC(12, 8, 3),
                                       ICC(12, 12, 3), ICC(12, 8, 4),  ICC(12, 9, 0)};
        uint64_t seed = 0x61c0;

        *st = (struct vgic_state){.nr_irqs = GOLDEN_NR_IRQS, .n_levels = GOLDEN_NR_IRQS / 32 - 1};
        st->regs = calloc(VGIC_STATE_DIST_REGS_MAX, sizeof(*st->regs));
        st->spi_levels = calloc(st->n_levels, sizeof(*st->spi_levels));
        st->cpus = calloc(GOLDEN_VCPUS, sizeof(*st->cpus));
        if (!st->regs || !st->spi_levels || !st->cpus)
                return -ENOMEM;
        /* In the order vgic_state_save() reads them: IIDR, CTLR, then each range over the SPIs. */
        add_words(st->regs, &st->n_regs, 0x0008, 1, &seed);
        add_words(st->regs, &st->n_regs, 0x0000, 1, &seed);
        add_words(st->regs, &st->n_regs, 0x0084, 1, &seed);  /* IGROUPR[1] */
        add_words(st->regs, &st->n_regs, 0x0d04, 1, &seed);  /* IGRPMODR[1] */
        add_words(st->regs, &st->n_regs, 0x0c08, 2, &seed);  /* ICFGR[2..3] */
        add_words(st->regs, &st->n_regs, 0x0420, 8, &seed);  /* IPRIORITYR[8..15] */
        add_words(st->regs, &st->n_regs, 0x6100, 64, &seed); /* IROUTER[32..63] */
        add_words(st->regs, &st->n_regs, 0x0204, 1, &seed);  /* ISPENDR[1] */
        add_words(st->regs, &st->n_regs, 0x0304, 1, &seed);  /* ISACTIVER[1] */
        add_words(st->regs, &st->n_regs, 0x0104, 1, &seed);  /* ISENABLER[1] */
        st->spi_levels[0] = 0x00002000;
        st->n_cpus = GOLDEN_VCPUS;
        for (unsigned c = 0; c < GOLDEN_VCPUS; c++) {
                struct vgic_cpu_state *cpu = &st->cpus[c];

                cpu->regs = calloc(VGIC_STATE_REDIST_REGS_MAX, sizeof(*cpu->regs));
                if (!cpu->regs)
                        return -ENOMEM;
                cpu->mpidr = 0x80000000ull | c;
                add_words(cpu->regs, &cpu->n_regs, 0x00000, 1, &seed); /* GICR_CTLR */
                add_words(cpu->regs, &cpu->n_regs, 0x10080, 1, &seed); /* IGROUPR0 */
                add_words(cpu->regs, &cpu->n_regs, 0x10d00, 1, &seed); /* IGRPMODR0 */
                add_words(cpu->regs, &cpu->n_regs, 0x10c00, 2, &seed); /* ICFGR0, ICFGR1 */
                add_words(cpu->regs, &cpu->n_regs, 0x10400, 8, &seed); /* IPRIORITYR0..7 */
                add_words(cpu->regs, &cpu->n_regs, 0x10200, 1, &seed); /* ISPENDR0 */
                add_words(cpu->regs, &cpu->n_regs, 0x10300, 1, &seed); /* ISACTIVER0 */
                add_words(cpu->regs, &cpu->n_regs, 0x10100, 1, &seed); /* ISENABLER0 */
                for (size_t i = 0; i < ELEMENTSOF(icc); i++)
                        cpu->sysregs[cpu->n_sysregs++] = (struct vgic_sysreg){icc[i], content_rand(&seed)};
                cpu->ppi_level = 1u << 27;
        }
        return 0;
}

int golden_timers(struct timer_state *st)
{
        *st = (struct timer_state){
                .counter = 0x0000001234567890ull, .frequency_hz = 62500000, .n_vcpus = GOLDEN_VCPUS};
        st->vcpus = calloc(GOLDEN_VCPUS, sizeof(*st->vcpus));
        if (!st->vcpus)
                return -ENOMEM;
        st->vcpus[0] = (struct timer_vcpu_state){
                .vtimer_ctl = TIMER_CTL_ENABLE,
                .vtimer_cval = 0x0000001300000000ull,
                .has_ptimer = true,
                .vtimer_irq = 27,
                .ptimer_irq = 30,
        };
        st->vcpus[1] = (struct timer_vcpu_state){
                .vtimer_ctl = TIMER_CTL_ENABLE | TIMER_CTL_IMASK | TIMER_CTL_ISTATUS,
                .vtimer_cval = 0x0000001200000000ull,
                .has_ptimer = true,
                .ptimer_ctl = TIMER_CTL_IMASK,
                .ptimer_cval = 0xffffffffffffffffull,
                .vtimer_irq = 27,
                .ptimer_irq = 30,
        };
        return 0;
}

int golden_console(struct console_state *st)
{
        static const struct dev_reg regs[] = {
                {0x024, 0x0027}, {0x028, 0x0004}, {0x02c, 0x0070}, {0x030, 0x0301},
                {0x034, 0x0012}, {0x038, 0x0050}, {0x03c, 0x0020}, {0x048, 0x0000},
        };
        static const char rx[] = "ls /proc\n", tx[] = "svemig golden console\r\n# ";

        *st = (struct console_state){.kind = CONSOLE_PL011, .base = 0x09000000, .irq = 33};
        memcpy(st->regs, regs, sizeof(regs));
        st->n_regs = ELEMENTSOF(regs);
        st->rx = malloc(sizeof(rx));
        st->tx = malloc(sizeof(tx));
        if (!st->rx || !st->tx)
                return -ENOMEM;
        memcpy(st->rx, rx, sizeof(rx) - 1);
        memcpy(st->tx, tx, sizeof(tx) - 1);
        st->rx_len = sizeof(rx) - 1;
        st->tx_len = sizeof(tx) - 1;
        return 0;
}

int golden_virtio(unsigned index, struct virtio_dev_state *st)
{
        bool blk = index == 0;

        *st = (struct virtio_dev_state){
                .index = index,
                .device_id = blk ? 2 : 3,
                .base = 0x0a000000ull + 0x200 * index,
                .irq = 48 + index,
                .device_features = 0x0000000130000246ull,
                .driver_features = 0x0000000100000206ull,
                .device_features_sel = 1,
                .driver_features_sel = 1,
                .queue_sel = blk ? 0 : 1,
                .status = 0x0f, /* ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK */
                .interrupt_status = blk ? 1 : 0,
                .config_generation = 0,
                .config_len = blk ? 8 : 4,
                .n_queues = blk ? 1 : 2,
        };
        memcpy(st->config, blk ? "\x00\x20\x00\x00\x00\x00\x00\x00" : "\x50\x00\x18\x00", st->config_len);
        for (size_t q = 0; q < st->n_queues; q++) {
                struct virtio_queue_state *v = &st->queues[q];

                *v = (struct virtio_queue_state){
                        .num = 128,
                        .ready = true,
                        .desc = 0x40010000ull + 0x4000 * (2 * index + q),
                        .driver = 0x40010800ull + 0x4000 * (2 * index + q),
                        .device = 0x40011000ull + 0x4000 * (2 * index + q),
                        .last_avail_idx = blk ? 0xfffe : 7,
                        .used_idx = blk ? 0xfffb : 7,
                };
                if (!blk)
                        continue;
                /* Three requests in flight across the 16-bit wrap of the indices. */
                v->inflight = malloc(3 * sizeof(*v->inflight));
                if (!v->inflight)
                        return -ENOMEM;
                v->inflight[0] = 5;
                v->inflight[1] = 9;
                v->inflight[2] = 127;
                v->n_inflight = 3;
        }
        return 0;
}

int golden_write_devices(struct svemig_stream_writer *w, struct svemig_error *err)
{
        struct vgic_state g = {0};
        struct timer_state t = {0};
        struct console_state c = {0};
        int r = golden_vgic(&g);

        if (r >= 0)
                r = svemig_stream_write_vgic(w, &g, err);
        if (r >= 0)
                r = golden_timers(&t);
        if (r >= 0)
                r = svemig_stream_write_timers(w, &t, err);
        if (r >= 0)
                r = golden_console(&c);
        if (r >= 0)
                r = svemig_stream_write_console(w, &c, err);
        for (unsigned i = 0; r >= 0 && i < GOLDEN_VIRTIO_DEVS; i++) {
                struct virtio_dev_state v = {0};

                r = golden_virtio(i, &v);
                if (r >= 0)
                        r = svemig_stream_write_virtio(w, &v, err);
                virtio_dev_state_done(&v);
        }
        vgic_state_done(&g);
        timer_state_done(&t);
        console_state_done(&c);
        return r;
}

int golden_vcpu(unsigned i, struct vcpu_state *st)
{
        vqset_t vls = {0};

        vqset_add(&vls, 1);
        vqset_add(&vls, 2);
        return content_vcpu(i, &vls, 0x5eed0000 + i, st);
}

void golden_final_memory(unsigned slot, uint8_t *mem)
{
        content_memory(golden_slots[slot].id, mem, golden_slots[slot].size / GOLDEN_PAGE, 1);
}

int golden_write(int fd, unsigned n_threads, struct svemig_error *err)
{
        return golden_write_as(fd, n_threads, NULL, err);
}

int golden_write_as(int fd, unsigned n_threads, const char *producer, struct svemig_error *err)
{
        struct svemig_stream_write_opts opts = {.n_threads = n_threads};
        struct svemig_stream_writer *w = NULL;
        struct svemig_mem_range ranges[GOLDEN_SLOTS];
        uint8_t *mem[GOLDEN_SLOTS] = {0};
        uint64_t dirty[GOLDEN_SLOTS][16];
        struct svemig_stream_info info;
        int r;

        golden_info(&info);
        if (producer) {
                snprintf(info.producer_name, sizeof(info.producer_name), "%s", producer);
                snprintf(info.host_name, sizeof(info.host_name), "%s", producer);
        }
        r = svemig_stream_writer_open(fd, &info, &opts, &w, err);
        if (r < 0)
                return r;
        for (unsigned s = 0; s < GOLDEN_SLOTS; s++) {
                size_t n = golden_slots[s].size / GOLDEN_PAGE;
                mem[s] = malloc(golden_slots[s].size);
                if (!mem[s]) {
                        r = -ENOMEM;
                        goto out;
                }
                content_memory(golden_slots[s].id, mem[s], n, 0);
                ranges[s] = (struct svemig_mem_range){golden_slots[s].id, golden_slots[s].gpa, mem[s],
                                                      golden_slots[s].size, NULL};
        }
        r = svemig_stream_write_memory(w, ranges, GOLDEN_SLOTS, err);
        if (r < 0)
                goto out;
        for (unsigned i = 0; i < GOLDEN_VCPUS; i++) {
                struct vcpu_state st;
                r = golden_vcpu(i, &st);
                if (r < 0)
                        goto out;
                r = svemig_stream_write_vcpu(w, &st, err);
                vcpu_state_done(&st);
                if (r < 0)
                        goto out;
        }
        r = golden_write_devices(w, err);
        if (r < 0)
                goto out;
        for (unsigned s = 0; s < GOLDEN_SLOTS; s++) {
                size_t n = golden_slots[s].size / GOLDEN_PAGE;
                content_memory(golden_slots[s].id, mem[s], n, 1);
                content_dirty(golden_slots[s].id, dirty[s], n);
                ranges[s].dirty = dirty[s];
        }
        r = svemig_stream_write_memory(w, ranges, GOLDEN_SLOTS, err);
        if (r < 0)
                goto out;
        r = svemig_stream_writer_finish(w, err);
out:
        svemig_stream_writer_free(w);
        for (unsigned s = 0; s < GOLDEN_SLOTS; s++)
                free(mem[s]);
        return r;
}
