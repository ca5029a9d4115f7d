/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulated machine as its guest sees it: memory by guest-physical
 * address, with KVM's dirty marks, and the vector length a vcpu runs at.
 * Below both the KVM model (hv_sim.c) and the workload (workload.c).
 */
#include "sim/sim.h"

static struct sim_slot *sim_vm_slot_of(struct sim_vm *vm, uint64_t gpa, size_t len)
{
        for (unsigned i = 0; i < SIM_MAX_SLOTS; i++) {
                struct sim_slot *s = &vm->slots[i];

                if (s->used && gpa >= s->gpa && gpa - s->gpa + len <= s->size)
                        return s;
        }
        return NULL;
}

uint8_t *sim_vm_mem(struct sim_vm *vm, uint64_t gpa, size_t len)
{
        struct sim_slot *s = sim_vm_slot_of(vm, gpa, len);

        return s ? s->hva + (gpa - s->gpa) : NULL;
}

void sim_vm_mark_dirty(struct sim_vm *vm, uint64_t gpa, size_t len)
{
        struct sim_slot *s = sim_vm_slot_of(vm, gpa, len);
        uint64_t off;

        if (!s || !s->dirty)
                return;
        off = gpa - s->gpa;
        /* Release: whoever reads the log (acquire) and then the page sees the store that marked it. */
        for (uint64_t pg = off / HV_PAGE_SIZE; pg <= (off + len - 1) / HV_PAGE_SIZE; pg++)
                __atomic_fetch_or(&s->dirty[pg / 64], 1ull << (pg % 64), __ATOMIC_RELEASE);
}

const struct sim_slot *sim_vm_first_slot(struct sim_vm *vm)
{
        for (unsigned i = 0; i < SIM_MAX_SLOTS; i++)
                if (vm->slots[i].used)
                        return &vm->slots[i];
        return NULL;
}

unsigned sim_vcpu_effective_vq(const struct sim_vcpu *v)
{
        unsigned want = (unsigned)(*v->zcr_el1 & 0xf) + 1, best = 0;

        /* The hardware runs at the largest length it has that is no longer than ZCR_EL1 asks. */
        VQSET_FOREACH (vq, &v->vls) {
                if (vq > want)
                        break;
                best = vq;
        }
        return best ? best : vqset_lowest(&v->vls);
}
