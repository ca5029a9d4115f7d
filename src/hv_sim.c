/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sim backend: a software model of arm64 KVM. It reproduces what a
 * caller of the kernel's ioctls can observe — the register list and reset
 * values of the reference kernels (src/sim/reglists/), the virtualisable-VL
 * computation over per-CPU VQ maps, the vcpu setup ordering and every error
 * code of arch/arm64/kvm/guest.c for the registers it has — and runs a
 * deterministic synthetic guest (sim/workload.c) in place of real code.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "sim/sim.h"
#include "macro.h"
#include "svemig/kvmreg.h"

/* KVM_VCPU_MAX_FEATURES on 6.1: features at or above it get ENOENT. */
#define SIM_VCPU_MAX_FEATURES 7
#define SIM_FEATURES                                                                                        \
        (HV_FEAT_BIT(HV_FEAT_POWER_OFF) | HV_FEAT_BIT(HV_FEAT_PSCI_0_2) | HV_FEAT_BIT(HV_FEAT_SVE))

#define SIM_DEFAULT_KERNEL "6.12"
#define SIM_TPIDR_EL0      kvmreg_sys(3, 3, 13, 0, 2)

/* PSTATE.M values KVM accepts for a 64-bit vcpu: EL0t, EL1t, EL1h. */
#define PSR_MODE_MASK 0x1full

static int sim_get_caps(struct hv *hv, struct hv_caps *caps);

/* ---- the host ---------------------------------------------------------- */

static int sim_open(const struct hv_config *cfg, struct hv **out, struct svemig_error *err)
{
        static const vqset_t default_map = {{0xb}};
        const struct hv_sim_config *sc = &cfg->sim;
        const vqset_t *maps = sc->n_cpus ? sc->cpu_maps : &default_map;
        size_t n_cpus = sc->n_cpus ? sc->n_cpus : 1;
        const char *kernel = sc->kernel ? sc->kernel : SIM_DEFAULT_KERNEL;
        const struct reglist_profile *prof;
        _cleanup_free_ struct sim_host *h = NULL;

        prof = reglist_profile_find(kernel, false);
        if (!prof)
                return svemig_error_set(
                        err, EINVAL,
                        "sim: no reference register list for kernel '%s'; use \"6.1\" or \"6.12\"", kernel);

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        pthread_mutex_init(&h->reset_lock, NULL);
        h->base.ops = &hv_sim_ops;
        snprintf(h->kernel, sizeof(h->kernel), "%s", prof->kernel);
        snprintf(h->host_name, sizeof(h->host_name), "%s", sc->host_name ? sc->host_name : "sim");
        h->n_cpus = n_cpus;

        for (size_t i = 0; i < n_cpus; i++)
                if (vqset_highest(&maps[i]) > VQSET_VQ_ARCH_MAX)
                        return svemig_error_set(
                                err, EINVAL, "sim: CPU %zu offers %u-bit vectors; SVE stops at %u bits", i,
                                vq_to_bits(vqset_highest(&maps[i])), vq_to_bits(VQSET_VQ_ARCH_MAX));

        h->vls = vqset_virtualisable(maps, n_cpus, &h->max_vq);
        h->sve = !vqset_empty(&h->vls);
        if (h->sve) {
                h->full = maps[0];
                for (size_t i = 1; i < n_cpus; i++)
                        h->full = vqset_and(&h->full, &maps[i]);
        }

        if (sc->n_id_regs) {
                h->id_regs = calloc(sc->n_id_regs, sizeof(*h->id_regs));
                if (!h->id_regs)
                        return -ENOMEM;
                memcpy(h->id_regs, sc->id_regs, sc->n_id_regs * sizeof(*h->id_regs));
                h->n_id_regs = sc->n_id_regs;
        }
        h->nvhe = sc->nvhe;

        *out = &h->base;
        h = NULL;
        return 0;
}

static void sim_reset_free(struct sim_reset *t)
{
        free(t->values);
        free(t->regs);
        free(t->index);
        free(t);
}

static void sim_close(struct hv *hv)
{
        struct sim_host *h = (struct sim_host *)hv;

        while (h->resets) {
                struct sim_reset *next = h->resets->next;

                sim_reset_free(h->resets);
                h->resets = next;
        }
        pthread_mutex_destroy(&h->reset_lock);
        free(h->id_regs);
        free(h);
}

static int sim_get_caps(struct hv *hv, struct hv_caps *caps)
{
        struct sim_host *h = (struct sim_host *)hv;

        snprintf(caps->backend, sizeof(caps->backend), "sim");
        snprintf(caps->kernel, sizeof(caps->kernel), "%s", h->kernel);
        snprintf(caps->host_name, sizeof(caps->host_name), "%s", h->host_name);
        caps->sve = h->sve;
        caps->vls = h->vls;
        caps->max_vq = h->max_vq;
        caps->ipa_bits = 40;
        caps->max_vcpus = 512;
        caps->n_cpus = h->n_cpus;
        return 0;
}

/* ---- VMs and memory ---------------------------------------------------- */

/* The counters the sim exposes tick at 62.5 MHz from CLOCK_MONOTONIC, like QEMU's virt board. */
static uint64_t sim_host_counter(void)
{
        return now_ns(CLOCK_MONOTONIC) / 16;
}

static int sim_vm_create(struct hv *hv, struct hv_vm **out, struct svemig_error *err)
{
        struct sim_vm *vm = calloc(1, sizeof(*vm));

        if (!vm)
                return svemig_error_set(err, ENOMEM, "sim: out of memory creating a VM");
        vm->base.hv = hv;
        pthread_mutex_init(&vm->lock, NULL);
        /* A new VM's counters start near zero, as the reference lists show. */
        vm->cnt_offset[0] = vm->cnt_offset[1] = sim_host_counter();
        *out = &vm->base;
        return 0;
}

static void sim_vm_destroy(struct hv_vm *hvm)
{
        struct sim_vm *vm = (struct sim_vm *)hvm;

        for (unsigned i = 0; i < SIM_MAX_SLOTS; i++)
                free(vm->slots[i].dirty);
        pthread_mutex_destroy(&vm->lock);
        free(vm);
}

static int sim_set_memslot(struct hv_vm *hvm, unsigned slot, uint64_t gpa, uint64_t size, void *hva,
                           unsigned flags, struct svemig_error *err)
{
        struct sim_vm *vm = (struct sim_vm *)hvm;
        struct sim_slot *s;
        uint64_t *dirty = NULL;
        int r = 0;

        if (slot >= SIM_MAX_SLOTS)
                return svemig_error_set(err, EINVAL, "memory slot %u: the sim has slots 0..%u", slot,
                                        SIM_MAX_SLOTS - 1);
        if (size && !hva)
                return svemig_error_set(err, EFAULT, "memory slot %u: no host memory given", slot);
        if (size && (flags & HV_MEM_LOG_DIRTY)) {
                dirty = calloc(DIV_ROUND_UP(size / HV_PAGE_SIZE, 64), sizeof(uint64_t));
                if (!dirty)
                        return svemig_error_set(err, ENOMEM, "memory slot %u: no memory for its dirty log",
                                                slot);
        }

        pthread_mutex_lock(&vm->lock);
        s = &vm->slots[slot];
        for (unsigned i = 0; size && i < SIM_MAX_SLOTS; i++) {
                const struct sim_slot *o = &vm->slots[i];

                if (i != slot && o->used && gpa < o->gpa + o->size && o->gpa < gpa + size) {
                        r = svemig_error_set(err, EEXIST, "memory slot %u overlaps slot %u", slot, i);
                        goto out;
                }
        }
        free(s->dirty);
        *s = (struct sim_slot){
                .used = size != 0,
                .flags = flags,
                .gpa = gpa,
                .size = size,
                .hva = hva,
                .dirty = dirty,
        };
        dirty = NULL;
out:
        pthread_mutex_unlock(&vm->lock);
        free(dirty);
        return r;
}

static int sim_get_dirty_log(struct hv_vm *hvm, unsigned slot, uint64_t *bitmap, struct svemig_error *err)
{
        struct sim_vm *vm = (struct sim_vm *)hvm;
        struct sim_slot *s;
        size_t words;

        if (slot >= SIM_MAX_SLOTS || !vm->slots[slot].used)
                return svemig_error_set(err, ENOENT, "memory slot %u does not exist", slot);
        s = &vm->slots[slot];
        if (!s->dirty)
                return svemig_error_set(err, ENOENT, "memory slot %u does not log dirty pages", slot);

        words = DIV_ROUND_UP(s->size / HV_PAGE_SIZE, 64);
        for (size_t i = 0; i < words; i++)
                bitmap[i] = __atomic_exchange_n(&s->dirty[i], 0, __ATOMIC_ACQ_REL);
        return 0;
}

/* The masks the rig read from this kernel in this mode (the same for either vcpu kind). */
static int sim_get_writable_masks(struct hv_vm *hvm, uint64_t *masks, struct svemig_error *err)
{
        const struct sim_host *h = (const struct sim_host *)hvm->hv;
        const struct idfacts_profile *facts = idfacts_find(h->kernel, h->nvhe, true);
        struct kvmreg r;

        if (!facts || !facts->masks)
                return svemig_error_set(err, EOPNOTSUPP,
                                        "this kernel's KVM has no writable ID register masks (Linux 6.7+)");
        memset(masks, 0, HV_ID_MASKS_N * sizeof(*masks));
        for (size_t i = 0; i < facts->n_masks; i++) {
                int idx = kvmreg_decode(facts->masks[i].id, &r, NULL) == 0
                                  ? hv_id_mask_index(r.op1, r.crm, r.op2)
                                  : -1;

                if (idx >= 0)
                        masks[idx] = facts->masks[i].mask;
        }
        return 0;
}

/* ---- vcpus: creation, init, finalize ----------------------------------- */

static int sim_vcpu_create(struct hv_vm *hvm, unsigned index, struct hv_vcpu **out, struct svemig_error *err)
{
        struct sim_vm *vm = (struct sim_vm *)hvm;
        struct sim_vcpu *v;
        struct hv_caps caps;

        sim_get_caps(hvm->hv, &caps);
        if (index >= caps.max_vcpus)
                return svemig_error_set(err, EINVAL, "vcpu %u: the host allows vcpus 0..%u", index,
                                        caps.max_vcpus - 1);
        v = calloc(1, sizeof(*v));
        if (!v)
                return svemig_error_set(err, ENOMEM, "vcpu %u: out of memory", index);
        v->base.vm = hvm;
        v->base.index = index;
        pthread_mutex_init(&v->wake_lock, NULL);
        pthread_cond_init(&v->wake, NULL);
        vm->n_vcpus++;
        *out = &v->base;
        return 0;
}

/*
 * The sim runs its synthetic workload, which needs no interrupt controller:
 * it has no in-kernel devices, and answers as a kernel answers a device type
 * it does not know.
 */
static int sim_device_create(struct hv_vm *hvm, uint32_t type, struct hv_device **out,
                             struct svemig_error *err)
{
        (void)hvm;
        (void)out;
        return svemig_error_set(err, ENODEV,
                                "KVM_CREATE_DEVICE of type %u: the sim backend has no in-kernel devices "
                                "(it runs its synthetic workload; Linux guests need the kvm backend)",
                                type);
}

/* Never called: no device is ever created. */
static void sim_device_destroy(struct hv_device *dev)
{
        (void)dev;
}

static int sim_device_attr(struct hv_device *dev, enum hv_attr_op op, uint32_t group, uint64_t attr,
                           void *buf)
{
        (void)dev, (void)op, (void)group, (void)attr, (void)buf;
        return -ENXIO;
}

/* No vcpu attribute group (PMU, timer, PV time) exists without the devices. */
static int sim_vcpu_attr(struct hv_vcpu *vcpu, enum hv_attr_op op, uint32_t group, uint64_t attr, void *buf)
{
        (void)vcpu, (void)op, (void)group, (void)attr, (void)buf;
        return -ENXIO;
}

/* KVM_IRQ_LINE without an irqchip: the kernel's answer is -ENXIO. */
static int sim_irq_line(struct hv_vm *vm, uint32_t irq, bool level)
{
        (void)vm, (void)irq, (void)level;
        return -ENXIO;
}

static void sim_vcpu_destroy(struct hv_vcpu *hvc)
{
        struct sim_vcpu *v = (struct sim_vcpu *)hvc;

        sim_vm_of(v)->n_vcpus--;
        pthread_cond_destroy(&v->wake);
        pthread_mutex_destroy(&v->wake_lock);
        free(v->values);
        free(v);
}

static int cmp_reg_id(const void *a, const void *b)
{
        uint64_t x = ((const struct sim_reg *)a)->id, y = ((const struct sim_reg *)b)->id;

        return x < y ? -1 : x > y;
}

static const struct sim_reg *sim_reg_find(struct sim_vcpu *v, uint64_t id)
{
        struct sim_reg key = {.id = id};

        if (!v->reset)
                return NULL;
        return bsearch(&key, v->reset->index, v->reset->n, sizeof(*v->reset->index), cmp_reg_id);
}

static uint64_t *sim_reg_ptr(struct sim_vcpu *v, uint64_t id)
{
        const struct sim_reg *hit = sim_reg_find(v, id);

        return hit ? &v->values[hit->index] : NULL;
}

/* Registers the sim keeps as plain values: all but the SVE group, vregs and counters. */
static bool sim_is_plain(uint64_t id)
{
        unsigned group = (id & KVMREG_COPROC_MASK) >> KVMREG_COPROC_SHIFT;

        if (group == KVMREG_GROUP_SVE || id == KVMREG_TIMER_CNT || id == KVMREG_PTIMER_CNT)
                return false;
        return !(group == KVMREG_GROUP_CORE && kvmreg_size(id) == 16);
}

#define ID_AA64PFR0_SVE_MASK (0xfull << 32)
#define ID_AA64MMFR1_VH_MASK (0xfull << 8)

/* The host's value of a register: its override, with the SVE fields following the vcpu as on KVM. */
static uint64_t sim_id_reg_value(const struct sim_host *h, uint64_t id, uint64_t reference, bool sve)
{
        uint64_t value = reference;

        for (size_t i = 0; i < h->n_id_regs; i++)
                if (h->id_regs[i].id == id)
                        value = h->id_regs[i].value;
        if (id == KVMREG_ID_AA64PFR0_EL1)
                value = (value & ~ID_AA64PFR0_SVE_MASK) | (sve ? 1ull << 32 : 0);
        else if (id == KVMREG_ID_AA64ZFR0_EL1 && !sve)
                value = 0;
        else if (id == KVMREG_ID_AA64MMFR1_EL1 && h->nvhe)
                value &= ~ID_AA64MMFR1_VH_MASK;
        return value;
}

/* The plain registers of a reset vcpu with this profile on this host, but for its MPIDR. */
static struct sim_reset *sim_reset_build(const struct sim_host *h, const struct reglist_profile *prof)
{
        struct sim_reset *t = calloc(1, sizeof(*t));
        size_t n = 0;

        if (!t)
                return NULL;
        t->prof = prof;
        t->values = calloc(prof->n ? prof->n : 1, sizeof(*t->values));
        t->regs = calloc(prof->n ? prof->n : 1, sizeof(*t->regs));
        t->index = calloc(prof->n ? prof->n : 1, sizeof(*t->index));
        if (!t->values || !t->regs || !t->index) {
                sim_reset_free(t);
                return NULL;
        }
        t->mpidr = SIZE_MAX;
        t->facts = idfacts_find(prof->kernel, h->nvhe, prof->sve);
        for (size_t i = 0; i < prof->n; i++) {
                const struct reglist_entry *e = &prof->regs[i];

                if (!sim_is_plain(e->id))
                        continue;
                if (e->id == KVMREG_MPIDR_EL1)
                        t->mpidr = n;
                t->values[n] = sim_id_reg_value(h, e->id, e->has_value ? e->reset : 0, prof->sve);
                /* A listed register the table cannot name is refused on write, as before (-ENOENT). */
                t->index[n] = (struct sim_reg){
                        .id = e->id,
                        .index = n,
                        .reg = kvmreg_decode(e->id, &t->regs[n], NULL) == 0 ? &t->regs[n] : NULL};
                n++;
        }
        t->n = n;
        qsort(t->index, n, sizeof(*t->index), cmp_reg_id);
        return t;
}

static const struct sim_reset *sim_reset_find(struct sim_host *h, const struct reglist_profile *prof)
{
        struct sim_reset *t;

        pthread_mutex_lock(&h->reset_lock);
        for (t = h->resets; t && t->prof != prof; t = t->next)
                ;
        if (!t && (t = sim_reset_build(h, prof))) {
                t->next = h->resets;
                h->resets = t;
        }
        pthread_mutex_unlock(&h->reset_lock);
        return t;
}

/* kvm_reset_vcpu(): every register back to the reference kernel's value after init. */
static int sim_vcpu_reset(struct sim_vcpu *v, const struct reglist_profile *prof)
{
        const struct sim_reset *t = sim_reset_find((struct sim_host *)v->base.vm->hv, prof);

        if (!t)
                return -ENOMEM;
        if (v->reset != t) {
                uint64_t *values = calloc(t->n ? t->n : 1, sizeof(*values));

                if (!values)
                        return -ENOMEM;
                free(v->values);
                v->values = values;
                v->reset = t;
        }
        memcpy(v->values, t->values, t->n * sizeof(*v->values));
        v->ran = false;
        if (t->mpidr != SIZE_MAX)
                /* KVM derives MPIDR from the vcpu id: Aff0 = id % 16, Aff1 = id / 16. */
                v->values[t->mpidr] =
                        (1ull << 31) | ((v->base.index / 16) & 0xff) << 8 | (v->base.index % 16);

        memset(v->z, 0, sizeof(v->z));
        memset(v->p, 0, sizeof(v->p));
        memset(v->ffr, 0, sizeof(v->ffr));
        memset(v->v, 0, sizeof(v->v));

        v->x = sim_reg_ptr(v, kvmreg_core_x(0));
        v->pc = sim_reg_ptr(v, kvmreg_core_pc());
        v->fpsr = sim_reg_ptr(v, kvmreg_core_fpsr());
        v->fpcr = sim_reg_ptr(v, kvmreg_core_fpcr());
        v->tpidr_el0 = sim_reg_ptr(v, SIM_TPIDR_EL0);
        v->zcr_el1 = sim_reg_ptr(v, KVMREG_ZCR_EL1);
        return 0;
}

static int sim_vcpu_init(struct hv_vcpu *hvc, uint32_t features)
{
        struct sim_vcpu *v = (struct sim_vcpu *)hvc;
        struct sim_host *h = (struct sim_host *)hvc->vm->hv;
        bool sve = features & HV_FEAT_BIT(HV_FEAT_SVE);
        const struct reglist_profile *prof;
        int r;

        /*
         * kvm_vcpu_set_target(): unknown features ENOENT, a changed set on
         * re-init EINVAL; 6.12 no longer counts POWER_OFF (the rig's
         * init-again-same-features-only).
         */
        if (features >> SIM_VCPU_MAX_FEATURES)
                return -ENOENT;
        if (hvc->initialised &&
            ((features ^ hvc->features) &
             ~(idfacts_same_series(h->kernel, "6.1") ? 0 : HV_FEAT_BIT(HV_FEAT_POWER_OFF))))
                return -EINVAL;
        /* The reference lists cover PSCI 0.2, SVE and POWER_OFF vcpus only. */
        if (features & ~SIM_FEATURES)
                return -EINVAL;
        /* kvm_vcpu_enable_sve(): SVE on a host without it. */
        if (sve && !h->sve)
                return -EINVAL;

        prof = reglist_profile_find(h->kernel, sve);
        if (!prof)
                return -EINVAL;
        r = sim_vcpu_reset(v, prof);
        if (r < 0)
                return r;

        v->sve = sve;
        if (sve && !v->finalized) {
                v->vls = h->vls;
                v->max_vq = h->max_vq;
        }
        v->mp_state =
                (features & HV_FEAT_BIT(HV_FEAT_POWER_OFF)) ? HV_MP_STATE_STOPPED : HV_MP_STATE_RUNNABLE;
        return 0;
}

static int sim_vcpu_finalize(struct hv_vcpu *hvc, int what)
{
        struct sim_vcpu *v = (struct sim_vcpu *)hvc;

        if (!hvc->initialised)
                return -ENOEXEC;
        if (what != HV_FEAT_SVE || !v->sve)
                return -EINVAL;
        if (v->finalized)
                return -EPERM;
        v->finalized = true;
        return 0;
}

/* ---- ONE_REG ----------------------------------------------------------- */

/* kvm_arm_vcpu_is_finalized() */
static bool sim_finalized(const struct sim_vcpu *v)
{
        return !v->sve || v->finalized;
}

static int sim_get_vls(struct sim_vcpu *v, void *buf)
{
        if (!v->sve)
                return -ENOENT;
        memcpy(buf, v->vls.w, KVMREG_VLS_BYTES);
        return 0;
}

/* set_sve_vls(): only a maximum can be chosen; everything the host has below it stays. */
static int sim_set_vls(struct sim_vcpu *v, const void *buf)
{
        struct sim_host *h = (struct sim_host *)v->base.vm->hv;
        vqset_t want;
        unsigned max_vq;

        if (!v->sve)
                return -ENOENT;
        if (v->finalized)
                return -EPERM;
        memcpy(want.w, buf, KVMREG_VLS_BYTES);
        max_vq = vqset_highest(&want);
        if (max_vq > h->max_vq)
                return -EINVAL;
        for (unsigned vq = 1; vq <= max_vq; vq++)
                if (vqset_contains(&want, vq) != vqset_contains(&h->full, vq))
                        return -EINVAL;
        if (max_vq < VQSET_VQ_MIN)
                return -EINVAL;
        v->vls = want;
        v->max_vq = max_vq;
        return 0;
}

/*
 * sve_reg_to_region(): where an SVE register lives, and how many of its
 * bytes are real at the vcpu's VL (the rest read as zero, and are ignored
 * on write).
 */
static int sim_sve_region(struct sim_vcpu *v, uint64_t id, uint8_t **data, unsigned *len, unsigned *size)
{
        const uint64_t zmin = kvmreg_zreg(0, 0), zmax = kvmreg_zreg(SIM_NR_ZREGS - 1, KVMREG_SLICE_MAX - 1);
        const uint64_t pmin = kvmreg_preg(0, 0), pmax = kvmreg_ffr(KVMREG_SLICE_MAX - 1);
        unsigned n = (id >> 5) & 0x1f, slice = id & 0x1f;

        if (id >= zmin && id <= zmax) {
                if (!v->sve || slice > 0)
                        return -ENOENT;
                *data = v->z[n];
                *len = v->max_vq * 16;
                *size = KVMREG_ZREG_SLICE_BYTES;
        } else if (id >= pmin && id <= pmax) {
                if (!v->sve || slice > 0)
                        return -ENOENT;
                *data = n < SIM_NR_PREGS ? v->p[n] : v->ffr;
                *len = v->max_vq * 2;
                *size = KVMREG_PREG_SLICE_BYTES;
        } else {
                return -EINVAL;
        }
        if (!v->finalized)
                return -EPERM;
        return 0;
}

static int sim_sve_reg(struct sim_vcpu *v, uint64_t id, void *buf, const void *in)
{
        unsigned len, size;
        uint8_t *data;
        int r;

        if (id == kvmreg_vls())
                return in ? sim_set_vls(v, in) : sim_get_vls(v, buf);

        r = sim_sve_region(v, id, &data, &len, &size);
        if (r < 0)
                return r;
        if (in) {
                memcpy(data, in, len);
        } else {
                memcpy(buf, data, len);
                memset((uint8_t *)buf + len, 0, size - len);
        }
        return 0;
}

/* Core registers: validate_core_offset() / core_reg_size_from_offset(). */
static int sim_core_reg(struct sim_vcpu *v, uint64_t id, void *buf, const void *in)
{
        struct kvmreg reg;
        uint64_t *p;

        if (kvmreg_decode(id, &reg, NULL) < 0)
                return -EINVAL;
        if (reg.cls == KVMREG_CLASS_CORE_FP) {
                /* On an SVE vcpu the V registers are reached only through Z. */
                if (v->sve)
                        return -EINVAL;
                if (in)
                        memcpy(v->v[reg.n], in, 16);
                else
                        memcpy(buf, v->v[reg.n], 16);
                return 0;
        }
        p = sim_reg_ptr(v, id);
        if (!p)
                return -EINVAL;
        if (!in) {
                memcpy(buf, p, reg.size);
                return 0;
        }
        if (id == kvmreg_core_pstate()) {
                uint64_t mode;

                memcpy(&mode, in, sizeof(mode));
                mode &= PSR_MODE_MASK;
                if (mode != 0x0 && mode != 0x4 && mode != 0x5)
                        return -EINVAL;
        }
        *p = 0;
        memcpy(p, in, reg.size);
        return 0;
}

static int sim_counter_index(uint64_t id)
{
        return id == KVMREG_TIMER_CNT ? 0 : id == KVMREG_PTIMER_CNT ? 1 : -1;
}

static int sim_counter_reg(struct sim_vcpu *v, uint64_t id, void *buf, const void *in)
{
        struct sim_vm *vm = sim_vm_of(v);
        int i = sim_counter_index(id);
        uint64_t val;

        /* The 6.1 list has no physical counter. */
        if (i == 1 && !sim_reg_ptr(v, kvmreg_sys(3, 3, 14, 2, 1)))
                return -ENOENT;
        if (in) {
                memcpy(&val, in, sizeof(val));
                /* Writing a counter moves the VM-wide offset, as on KVM. */
                atomic_store(&vm->cnt_offset[i], sim_host_counter() - val);
        } else {
                val = sim_host_counter() - atomic_load(&vm->cnt_offset[i]);
                memcpy(buf, &val, sizeof(val));
        }
        return 0;
}

/* Writes that KVM refuses for what the value says, not for where it goes. */
static int sim_check_write(struct sim_vcpu *v, const struct kvmreg *reg, uint64_t old, uint64_t val)
{
        switch (reg->cls) {
        case KVMREG_CLASS_SYS_ID:
        case KVMREG_CLASS_DEMUX:
                /* Invariant: the host's value, and no other. MPIDR is the vcpu's own. */
                if (reg->id != KVMREG_MPIDR_EL1 && val != old)
                        return -EINVAL;
                return 0;
        case KVMREG_CLASS_FW:
                if (reg->index == 0)
                        /* KVM_REG_ARM_PSCI_VERSION: 0.2, 1.0 or 1.1 */
                        return (val == 0x2 || val == 0x10000 || val == 0x10001) ? 0 : -EINVAL;
                /* SMCCC workaround levels: a guest cannot be promised more than the host has. */
                return val <= old ? 0 : -EINVAL;
        case KVMREG_CLASS_FW_FEAT:
                /* Firmware feature bitmaps: only a subset of the host's. */
                return (val & ~old) ? -EINVAL : 0;
        default:
                return 0;
        }
}

static int sim_plain_reg(struct sim_vcpu *v, uint64_t id, void *buf, const void *in)
{
        const struct sim_reg *hit = sim_reg_find(v, id);
        const struct idfacts_profile *facts = v->reset ? v->reset->facts : NULL;
        uint64_t *p, val = 0;
        int r;

        if (!hit || !hit->reg)
                return -ENOENT;
        p = &v->values[hit->index];
        if (!in) {
                memcpy(buf, p, hit->reg->size);
                return 0;
        }
        memcpy(&val, in, hit->reg->size);
        /* The ID registers, CLIDR, CTR, CCSIDR...: as the rig measured this kernel answer. */
        if (facts && idfacts_probed(id))
                r = idfacts_check_write(facts, id, v->reset->values[hit->index], *p, val, hit->reg->size,
                                        atomic_load(&sim_vm_of(v)->ran));
        else
                r = sim_check_write(v, hit->reg, *p, val);
        if (r < 0)
                return r;
        *p = val;
        return 0;
}

/* kvm_arm_get_reg() / kvm_arm_set_reg(): in is NULL for a read. */
static int sim_one_reg(struct hv_vcpu *hvc, uint64_t id, void *buf, const void *in)
{
        struct sim_vcpu *v = (struct sim_vcpu *)hvc;
        unsigned group = (id & KVMREG_COPROC_MASK) >> KVMREG_COPROC_SHIFT;

        if (!hvc->initialised)
                return -ENOEXEC;
        if (((id & ~KVMREG_SIZE_MASK) >> 32) != (KVMREG_ARM64 >> 32))
                return -EINVAL;

        switch (group) {
        case KVMREG_GROUP_CORE:
                return sim_core_reg(v, id, buf, in);
        case KVMREG_GROUP_SVE:
                return sim_sve_reg(v, id, buf, in);
        default:
                break;
        }
        if (sim_counter_index(id) >= 0)
                return sim_counter_reg(v, id, buf, in);
        return sim_plain_reg(v, id, buf, in);
}

static int sim_get_reg(struct hv_vcpu *hvc, uint64_t id, void *buf)
{
        return sim_one_reg(hvc, id, buf, NULL);
}

static int sim_set_reg(struct hv_vcpu *hvc, uint64_t id, const void *buf)
{
        return sim_one_reg(hvc, id, NULL, buf);
}

static int sim_reg_list(struct hv_vcpu *hvc, uint64_t *ids, size_t *n)
{
        struct sim_vcpu *v = (struct sim_vcpu *)hvc;
        size_t room = *n;

        if (!hvc->initialised)
                return -ENOEXEC;
        if (!sim_finalized(v))
                return -EPERM;
        const struct reglist_profile *prof = v->reset->prof;

        *n = prof->n;
        if (room < prof->n)
                return -E2BIG;
        for (size_t i = 0; i < prof->n; i++)
                ids[i] = prof->regs[i].id;
        return 0;
}

static int sim_get_mp_state(struct hv_vcpu *hvc, uint32_t *state)
{
        struct sim_vcpu *v = (struct sim_vcpu *)hvc;

        if (!hvc->initialised)
                return -ENOEXEC;
        *state = v->mp_state;
        return 0;
}

static int sim_set_mp_state(struct hv_vcpu *hvc, uint32_t state)
{
        struct sim_vcpu *v = (struct sim_vcpu *)hvc;

        if (!hvc->initialised)
                return -ENOEXEC;
        if (state != HV_MP_STATE_RUNNABLE && state != HV_MP_STATE_STOPPED)
                return -EINVAL;
        v->mp_state = state;
        return 0;
}

/* ---- running ----------------------------------------------------------- */

/*
 * What the kernel does at a vcpu's first KVM_RUN to the registers the rig
 * saw change (6.12 clears the GIC fields of ID_AA64PFR0_EL1 and ID_PFR1_EL1
 * without an in-kernel GIC), and from then on the VM's ID registers are frozen.
 */
static void sim_first_run(struct sim_vcpu *v)
{
        const struct idfacts_profile *facts = v->reset->facts;

        atomic_store(&sim_vm_of(v)->ran, true);
        if (v->ran)
                return;
        v->ran = true;
        for (size_t i = 0; facts && i < facts->n_changes; i++) {
                uint64_t *p = sim_reg_ptr(v, facts->changes[i].id);

                if (p)
                        *p = (*p & ~facts->changes[i].mask) |
                             (facts->changes[i].value & facts->changes[i].mask);
        }
}

static int sim_run(struct hv_vcpu *hvc, uint64_t max_steps, struct hv_exit *exit)
{
        struct sim_vcpu *v = (struct sim_vcpu *)hvc;

        if (!hvc->initialised)
                return -ENOEXEC;
        if (!sim_finalized(v))
                return -EPERM;
        sim_first_run(v);

        /* A powered-off vcpu runs nothing: it sleeps until a kick, as in KVM (no PSCI CPU_ON here). */
        if (v->mp_state == HV_MP_STATE_STOPPED) {
                pthread_mutex_lock(&v->wake_lock);
                while (!atomic_exchange(&v->kicked, false))
                        pthread_cond_wait(&v->wake, &v->wake_lock);
                pthread_mutex_unlock(&v->wake_lock);
                exit->reason = HV_EXIT_INTR;
                return 0;
        }
        exit->reason = HV_EXIT_STEPS;
        for (uint64_t i = 0; i < max_steps; i++) {
                if (atomic_exchange(&v->kicked, false)) {
                        exit->reason = HV_EXIT_INTR;
                        return 0;
                }
                sim_workload_step(v);
                exit->steps++;
        }
        return 0;
}

static void sim_kick(struct hv_vcpu *hvc)
{
        struct sim_vcpu *v = (struct sim_vcpu *)hvc;

        pthread_mutex_lock(&v->wake_lock);
        atomic_store(&v->kicked, true);
        pthread_cond_signal(&v->wake);
        pthread_mutex_unlock(&v->wake_lock);
}

const struct hv_ops hv_sim_ops = {
        .name = "sim",
        .open = sim_open,
        .close = sim_close,
        .get_caps = sim_get_caps,
        .vm_create = sim_vm_create,
        .vm_destroy = sim_vm_destroy,
        .set_memslot = sim_set_memslot,
        .get_dirty_log = sim_get_dirty_log,
        .get_writable_masks = sim_get_writable_masks,
        .irq_line = sim_irq_line,
        .device_create = sim_device_create,
        .device_destroy = sim_device_destroy,
        .device_attr = sim_device_attr,
        .vcpu_attr = sim_vcpu_attr,
        .vcpu_create = sim_vcpu_create,
        .vcpu_destroy = sim_vcpu_destroy,
        .vcpu_init = sim_vcpu_init,
        .vcpu_finalize = sim_vcpu_finalize,
        .get_reg = sim_get_reg,
        .set_reg = sim_set_reg,
        .reg_list = sim_reg_list,
        .get_mp_state = sim_get_mp_state,
        .set_mp_state = sim_set_mp_state,
        .run = sim_run,
        .kick = sim_kick,
};
