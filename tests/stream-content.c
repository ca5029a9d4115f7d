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
