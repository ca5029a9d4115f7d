/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What a hypervisor backend implements. src/hv.c owns the public hv_*()
 * entry points, argument checks common to every backend, and dispatch; each
 * backend (hv_sim.c, hv_kvm.c) embeds the base structs below as the first
 * member of its own and fills a struct hv_ops.
 */

#include "svemig/hv.h"

struct hv_ops;

enum hv_attr_op {
        HV_ATTR_HAS,
        HV_ATTR_GET,
        HV_ATTR_SET,
};

struct hv {
        const struct hv_ops *ops;
};

struct hv_vm {
        struct hv *hv;
};

/* An in-kernel device; the backend embeds it first in its own. */
struct hv_device {
        struct hv_vm *vm;
};

struct hv_vcpu {
        struct hv_vm *vm;
        unsigned index;
        uint32_t features;
        bool initialised;
};

struct hv_ops {
        const char *name;

        int (*open)(const struct hv_config *cfg, struct hv **out, struct svemig_error *err);
        void (*close)(struct hv *hv);
        int (*get_caps)(struct hv *hv, struct hv_caps *caps);

        int (*vm_create)(struct hv *hv, struct hv_vm **out, struct svemig_error *err);
        void (*vm_destroy)(struct hv_vm *vm);
        int (*set_memslot)(struct hv_vm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *hva,
                           unsigned flags, struct svemig_error *err);
        int (*get_dirty_log)(struct hv_vm *vm, unsigned slot, uint64_t *bitmap, struct svemig_error *err);
        int (*get_writable_masks)(struct hv_vm *vm, uint64_t *masks, struct svemig_error *err);
        int (*irq_line)(struct hv_vm *vm, uint32_t irq, bool level);

        int (*device_create)(struct hv_vm *vm, uint32_t type, struct hv_device **out,
                             struct svemig_error *err);
        void (*device_destroy)(struct hv_device *dev);
        int (*device_attr)(struct hv_device *dev, enum hv_attr_op op, uint32_t group, uint64_t attr,
                           void *buf);
        int (*vcpu_attr)(struct hv_vcpu *vcpu, enum hv_attr_op op, uint32_t group, uint64_t attr, void *buf);

        int (*vcpu_create)(struct hv_vm *vm, unsigned index, struct hv_vcpu **out, struct svemig_error *err);
        void (*vcpu_destroy)(struct hv_vcpu *vcpu);
        int (*vcpu_init)(struct hv_vcpu *vcpu, uint32_t features);
        int (*vcpu_finalize)(struct hv_vcpu *vcpu, int what);
        int (*get_reg)(struct hv_vcpu *vcpu, uint64_t id, void *buf);
        int (*set_reg)(struct hv_vcpu *vcpu, uint64_t id, const void *buf);
        int (*reg_list)(struct hv_vcpu *vcpu, uint64_t *ids, size_t *n);
        int (*get_mp_state)(struct hv_vcpu *vcpu, uint32_t *state);
        int (*set_mp_state)(struct hv_vcpu *vcpu, uint32_t state);
        int (*run)(struct hv_vcpu *vcpu, uint64_t max_steps, struct hv_exit *exit);
        void (*kick)(struct hv_vcpu *vcpu);
        int (*mmio_reply)(struct hv_vcpu *vcpu, const void *data, uint32_t len); /* NULL: no MMIO exits */
};

extern const struct hv_ops hv_sim_ops;
extern const struct hv_ops hv_kvm_ops;

/* Whether /dev/kvm (or path) is an arm64 KVM this build can drive. */
bool hv_kvm_available(const char *path);
