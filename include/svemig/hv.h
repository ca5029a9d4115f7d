/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The hypervisor interface. Every use of the hypervisor goes through it, and
 * it mirrors the arm64 KVM ioctls one for one, errno for errno, so that the
 * same code (and the same conformance suite) runs on both backends:
 *
 *   - "kvm": real ioctls on /dev/kvm (aarch64 Linux only);
 *   - "sim": a software model of arm64 KVM built from a simulated host's
 *     per-CPU VQ maps and the kernel's reference register lists.
 *
 * The per-register calls (get/set_reg, reg_list, init, finalize) return what
 * the kernel would: 0 or -EINVAL/-EPERM/-ENOENT/-E2BIG..., with no message;
 * callers that face a person add one. hv_open() and the VM calls take a
 * struct svemig_error since their failures need explaining.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"
#include "svemig/vqset.h"

struct hv;
struct hv_vm;
struct hv_vcpu;

enum hv_backend {
        HV_BACKEND_AUTO = 0, /* kvm when /dev/kvm is an arm64 KVM, else sim */
        HV_BACKEND_SIM,
        HV_BACKEND_KVM,
};

/* vcpu features, as KVM_ARM_VCPU_* bit numbers in kvm_vcpu_init.features[0]. */
#define HV_FEAT_POWER_OFF 0
#define HV_FEAT_EL1_32BIT 1
#define HV_FEAT_PSCI_0_2  2
#define HV_FEAT_PMU_V3    3
#define HV_FEAT_SVE       4
#define HV_FEAT_BIT(f)    (1u << (f))
/* Every feature above: what a peer may claim. */
#define HV_FEAT_KNOWN (HV_FEAT_BIT(HV_FEAT_SVE + 1) - 1)

/* KVM_MP_STATE_* */
#define HV_MP_STATE_RUNNABLE 0
#define HV_MP_STATE_STOPPED  5

/* KVM_MEM_LOG_DIRTY_PAGES */
#define HV_MEM_LOG_DIRTY 1u

#define HV_PAGE_SIZE 4096u

/* A value a simulated host gives an ID register instead of the reference one. */
struct hv_sim_id_reg {
        uint64_t id; /* a system register ID of class KVMREG_CLASS_SYS_ID */
        uint64_t value;
};

struct hv_sim_config {
        /*
         * One VQ map per simulated CPU. An empty map is a CPU without SVE,
         * which makes the whole host non-SVE (KVM_CAP_ARM_SVE = 0).
         * n_cpus == 0 means one CPU with {128, 256, 512} bits.
         */
        const vqset_t *cpu_maps;
        size_t n_cpus;
        /*
         * The kernel whose register list and reset values the sim
         * reproduces: "6.1" or "6.12" (the default when NULL).
         */
        const char *kernel;
        const char *host_name; /* reported in caps; NULL = "sim" */
        /*
         * ID registers that differ from the reference CPU's, e.g. a host
         * whose ZFR0 lacks SVE2. The SVE field of PFR0 and ZFR0 always follow
         * whether the vcpu has SVE, as on KVM.
         */
        const struct hv_sim_id_reg *id_regs;
        size_t n_id_regs;
        /*
         * KVM running in nVHE mode (kvm-arm.mode=nvhe) rather than VHE: a
         * vcpu then reads ID_AA64MMFR1_EL1.VH as 0, as on the rig's nVHE hosts.
         */
        bool nvhe;
};

struct hv_config {
        enum hv_backend backend;
        const char *kvm_path; /* NULL = /dev/kvm */
        struct hv_sim_config sim;
};

struct hv_caps {
        char backend[8];  /* "sim" or "kvm" */
        char kernel[128]; /* the kernel release (kvm) or the modelled one (sim) */
        char host_name[64];
        bool sve;           /* KVM_CAP_ARM_SVE */
        vqset_t vls;        /* the SVE_VLS a new vcpu offers; empty without SVE */
        unsigned max_vq;    /* max(vls) */
        unsigned ipa_bits;  /* KVM_CAP_ARM_VM_IPA_SIZE */
        unsigned max_vcpus; /* KVM_CAP_MAX_VCPUS */
        unsigned n_cpus;    /* host CPUs */
};

int hv_open(const struct hv_config *cfg, struct hv **out, struct svemig_error *err);
void hv_close(struct hv *hv);
int hv_get_caps(struct hv *hv, struct hv_caps *caps);
const char *hv_backend_name(const struct hv *hv);

int hv_vm_create(struct hv *hv, struct hv_vm **out, struct svemig_error *err);
void hv_vm_destroy(struct hv_vm *vm);
struct hv *hv_vm_host(const struct hv_vm *vm);

/*
 * KVM_SET_USER_MEMORY_REGION: maps [gpa, gpa+size) onto caller-owned memory
 * at hva. size == 0 deletes the slot. With HV_MEM_LOG_DIRTY, guest writes are
 * recorded per 4 KiB page.
 */
int hv_vm_set_memslot(struct hv_vm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *hva,
                      unsigned flags, struct svemig_error *err);
/*
 * KVM_GET_DIRTY_LOG: copies the slot's dirty bitmap (bit i = page i, in u64
 * words, little-endian bit order) into bitmap and clears it.
 */
int hv_vm_get_dirty_log(struct hv_vm *vm, unsigned slot, uint64_t *bitmap, struct svemig_error *err);

/*
 * KVM_ARM_GET_REG_WRITABLE_MASKS (Linux 6.7+): which bits of each register of
 * the feature ID space a VMM may change before the first KVM_RUN. masks[i]
 * belongs to the register op0 3, op1 {0, 1, 3}[i / 64], CRn 0, CRm (i / 8) % 8,
 * op2 i % 8 (hv_id_mask_index()). -EOPNOTSUPP when the kernel has no such
 * masks (KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES lacks the feature ID range).
 */
#define HV_ID_MASKS_N 192
int hv_vm_get_writable_masks(struct hv_vm *vm, uint64_t masks[HV_ID_MASKS_N], struct svemig_error *err);

/* The index in hv_vm_get_writable_masks()'s masks of register S3_<op1>_C0_C<crm>_<op2>; -1 outside the
 * space. */
static inline int hv_id_mask_index(unsigned op1, unsigned crm, unsigned op2)
{
        if ((op1 != 0 && op1 != 1 && op1 != 3) || crm > 7 || op2 > 7)
                return -1;
        return (int)((op1 == 3 ? 2 : op1) << 6 | crm << 3 | op2);
}

/* KVM_CREATE_VCPU */
/*
 * In-kernel devices (KVM_CREATE_DEVICE) and their attributes
 * (KVM_{HAS,GET,SET}_DEVICE_ATTR), as for the vGIC. The attribute calls
 * return the kernel's errno and no message, like the per-register calls.
 * The sim has no in-kernel devices: it refuses every type with -ENODEV,
 * as a kernel does a type it does not know.
 */
struct hv_device;

/* KVM_DEV_TYPE_ARM_VGIC_V3 */
#define HV_DEV_VGIC_V3 7

int hv_vm_create_device(struct hv_vm *vm, uint32_t type, struct hv_device **out, struct svemig_error *err);
void hv_device_destroy(struct hv_device *dev);
int hv_device_has_attr(struct hv_device *dev, uint32_t group, uint64_t attr);
int hv_device_get_attr(struct hv_device *dev, uint32_t group, uint64_t attr, void *buf);
int hv_device_set_attr(struct hv_device *dev, uint32_t group, uint64_t attr, const void *buf);
/* The same attribute calls on a vcpu (e.g. the timer's PPIs, KVM_ARM_VCPU_TIMER_CTRL). */
int hv_vcpu_has_attr(struct hv_vcpu *vcpu, uint32_t group, uint64_t attr);
int hv_vcpu_get_attr(struct hv_vcpu *vcpu, uint32_t group, uint64_t attr, void *buf);
int hv_vcpu_set_attr(struct hv_vcpu *vcpu, uint32_t group, uint64_t attr, const void *buf);
/* KVM_IRQ_LINE: irq in KVM's arm64 encoding (type, vcpu index, number). */
int hv_vm_irq_line(struct hv_vm *vm, uint32_t irq, bool level);

int hv_vcpu_create(struct hv_vm *vm, unsigned index, struct hv_vcpu **out, struct svemig_error *err);
void hv_vcpu_destroy(struct hv_vcpu *vcpu);
unsigned hv_vcpu_index(const struct hv_vcpu *vcpu);
struct hv_vm *hv_vcpu_vm(const struct hv_vcpu *vcpu);

/* KVM_ARM_VCPU_INIT with the preferred target and HV_FEAT_BIT()s. */
int hv_vcpu_init(struct hv_vcpu *vcpu, uint32_t features);
/* The features the vcpu was last initialised with. */
uint32_t hv_vcpu_features(const struct hv_vcpu *vcpu);
/* KVM_ARM_VCPU_FINALIZE(what), what = HV_FEAT_SVE */
int hv_vcpu_finalize(struct hv_vcpu *vcpu, int what);

/* KVM_GET_ONE_REG / KVM_SET_ONE_REG; buf holds kvmreg_size(id) bytes. */
int hv_vcpu_get_reg(struct hv_vcpu *vcpu, uint64_t id, void *buf);
int hv_vcpu_set_reg(struct hv_vcpu *vcpu, uint64_t id, const void *buf);
/*
 * KVM_GET_REG_LIST: on entry *n is the room in ids; on return the count.
 * -E2BIG (with *n set to the count) when ids is too small.
 */
int hv_vcpu_reg_list(struct hv_vcpu *vcpu, uint64_t *ids, size_t *n);

int hv_vcpu_get_mp_state(struct hv_vcpu *vcpu, uint32_t *state);
int hv_vcpu_set_mp_state(struct hv_vcpu *vcpu, uint32_t state);

enum hv_exit_reason {
        HV_EXIT_NONE = 0,
        HV_EXIT_STEPS,        /* sim: the step budget ran out */
        HV_EXIT_INTR,         /* hv_vcpu_kick() */
        HV_EXIT_MMIO,         /* a guest access outside RAM */
        HV_EXIT_SYSTEM_EVENT, /* PSCI SYSTEM_OFF / RESET */
};

struct hv_exit {
        enum hv_exit_reason reason;
        uint64_t steps; /* sim: workload steps run by this call */
        struct {
                uint64_t addr;
                uint8_t data[8];
                uint32_t len;
                bool is_write;
        } mmio;
        uint32_t system_event;
};

/*
 * KVM_RUN. On the sim, runs at most max_steps steps of the synthetic
 * workload (docs/sim-workload.md); on kvm, max_steps is ignored and the call
 * returns at the next exit. -EPERM before the SVE vcpu is finalized,
 * -ENOEXEC before init.
 */
int hv_vcpu_run(struct hv_vcpu *vcpu, uint64_t max_steps, struct hv_exit *exit);
/*
 * After an HV_EXIT_MMIO read: the len bytes (at most 8) the guest's load
 * gets when the vcpu next runs; without it the load reads zeros. The sim
 * makes no MMIO exits and refuses it with -EOPNOTSUPP.
 */
int hv_vcpu_mmio_reply(struct hv_vcpu *vcpu, const void *data, uint32_t len);
/* Makes a running or the next hv_vcpu_run() return HV_EXIT_INTR. Thread-safe. */
void hv_vcpu_kick(struct hv_vcpu *vcpu);
