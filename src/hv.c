/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

#include "hv-backend.h"

int hv_open(const struct hv_config *cfg, struct hv **out, struct svemig_error *err)
{
        static const struct hv_config defaults = {0};
        const struct hv_ops *ops;

        if (!cfg)
                cfg = &defaults;

        switch (cfg->backend) {
        case HV_BACKEND_SIM:
                ops = &hv_sim_ops;
                break;
        case HV_BACKEND_KVM:
                ops = &hv_kvm_ops;
                break;
        case HV_BACKEND_AUTO:
                ops = hv_kvm_available(cfg->kvm_path) ? &hv_kvm_ops : &hv_sim_ops;
                break;
        default:
                return svemig_error_set(err, EINVAL, "unknown hypervisor backend %d", (int)cfg->backend);
        }
        return ops->open(cfg, out, err);
}

void hv_close(struct hv *hv)
{
        if (hv)
                hv->ops->close(hv);
}

int hv_get_caps(struct hv *hv, struct hv_caps *caps)
{
        memset(caps, 0, sizeof(*caps));
        return hv->ops->get_caps(hv, caps);
}

const char *hv_backend_name(const struct hv *hv)
{
        return hv->ops->name;
}

int hv_vm_create(struct hv *hv, struct hv_vm **out, struct svemig_error *err)
{
        return hv->ops->vm_create(hv, out, err);
}

void hv_vm_destroy(struct hv_vm *vm)
{
        if (vm)
                vm->hv->ops->vm_destroy(vm);
}

struct hv *hv_vm_host(const struct hv_vm *vm)
{
        return vm->hv;
}

int hv_vm_set_memslot(struct hv_vm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *hva,
                      unsigned flags, struct svemig_error *err)
{
        if ((gpa | size) & (HV_PAGE_SIZE - 1))
                return svemig_error_set(err, EINVAL,
                                        "memory slot %u: address 0x%llx and size 0x%llx must be multiples "
                                        "of the %u-byte page",
                                        slot, (unsigned long long)gpa, (unsigned long long)size,
                                        HV_PAGE_SIZE);
        /* KVM_SET_USER_MEMORY_REGION's userspace_addr, too, is page-aligned (EINVAL). */
        if ((uintptr_t)hva & (HV_PAGE_SIZE - 1))
                return svemig_error_set(
                        err, EINVAL, "memory slot %u: host memory at %p is not aligned to the %u-byte page",
                        slot, hva, HV_PAGE_SIZE);
        if (flags & ~HV_MEM_LOG_DIRTY)
                return svemig_error_set(err, EINVAL, "memory slot %u: unknown flags 0x%x", slot, flags);
        return vm->hv->ops->set_memslot(vm, slot, gpa, size, hva, flags, err);
}

int hv_vm_get_dirty_log(struct hv_vm *vm, unsigned slot, uint64_t *bitmap, struct svemig_error *err)
{
        return vm->hv->ops->get_dirty_log(vm, slot, bitmap, err);
}

int hv_vm_get_writable_masks(struct hv_vm *vm, uint64_t masks[HV_ID_MASKS_N], struct svemig_error *err)
{
        return vm->hv->ops->get_writable_masks(vm, masks, err);
}

int hv_vm_irq_line(struct hv_vm *vm, uint32_t irq, bool level)
{
        return vm->hv->ops->irq_line(vm, irq, level);
}

int hv_vm_create_device(struct hv_vm *vm, uint32_t type, struct hv_device **out, struct svemig_error *err)
{
        return vm->hv->ops->device_create(vm, type, out, err);
}

void hv_device_destroy(struct hv_device *dev)
{
        if (dev)
                dev->vm->hv->ops->device_destroy(dev);
}

int hv_device_has_attr(struct hv_device *dev, uint32_t group, uint64_t attr)
{
        return dev->vm->hv->ops->device_attr(dev, HV_ATTR_HAS, group, attr, NULL);
}

int hv_device_get_attr(struct hv_device *dev, uint32_t group, uint64_t attr, void *buf)
{
        return dev->vm->hv->ops->device_attr(dev, HV_ATTR_GET, group, attr, buf);
}

int hv_device_set_attr(struct hv_device *dev, uint32_t group, uint64_t attr, const void *buf)
{
        /* KVM takes the buffer as a user address either way; it only reads it here. */
        return dev->vm->hv->ops->device_attr(dev, HV_ATTR_SET, group, attr, (void *)buf);
}

int hv_vcpu_has_attr(struct hv_vcpu *vcpu, uint32_t group, uint64_t attr)
{
        return vcpu->vm->hv->ops->vcpu_attr(vcpu, HV_ATTR_HAS, group, attr, NULL);
}

int hv_vcpu_get_attr(struct hv_vcpu *vcpu, uint32_t group, uint64_t attr, void *buf)
{
        return vcpu->vm->hv->ops->vcpu_attr(vcpu, HV_ATTR_GET, group, attr, buf);
}

int hv_vcpu_set_attr(struct hv_vcpu *vcpu, uint32_t group, uint64_t attr, const void *buf)
{
        return vcpu->vm->hv->ops->vcpu_attr(vcpu, HV_ATTR_SET, group, attr, (void *)buf);
}

int hv_vcpu_create(struct hv_vm *vm, unsigned index, struct hv_vcpu **out, struct svemig_error *err)
{
        return vm->hv->ops->vcpu_create(vm, index, out, err);
}

void hv_vcpu_destroy(struct hv_vcpu *vcpu)
{
        if (vcpu)
                vcpu->vm->hv->ops->vcpu_destroy(vcpu);
}

unsigned hv_vcpu_index(const struct hv_vcpu *vcpu)
{
        return vcpu->index;
}

struct hv_vm *hv_vcpu_vm(const struct hv_vcpu *vcpu)
{
        return vcpu->vm;
}

static const struct hv_ops *vcpu_ops(const struct hv_vcpu *vcpu)
{
        return vcpu->vm->hv->ops;
}

int hv_vcpu_init(struct hv_vcpu *vcpu, uint32_t features)
{
        int r = vcpu_ops(vcpu)->vcpu_init(vcpu, features);

        if (r == 0) {
                vcpu->features = features;
                vcpu->initialised = true;
        }
        return r;
}

uint32_t hv_vcpu_features(const struct hv_vcpu *vcpu)
{
        return vcpu->features;
}

int hv_vcpu_finalize(struct hv_vcpu *vcpu, int what)
{
        return vcpu_ops(vcpu)->vcpu_finalize(vcpu, what);
}

int hv_vcpu_get_reg(struct hv_vcpu *vcpu, uint64_t id, void *buf)
{
        return vcpu_ops(vcpu)->get_reg(vcpu, id, buf);
}

int hv_vcpu_set_reg(struct hv_vcpu *vcpu, uint64_t id, const void *buf)
{
        return vcpu_ops(vcpu)->set_reg(vcpu, id, buf);
}

int hv_vcpu_reg_list(struct hv_vcpu *vcpu, uint64_t *ids, size_t *n)
{
        return vcpu_ops(vcpu)->reg_list(vcpu, ids, n);
}

int hv_vcpu_get_mp_state(struct hv_vcpu *vcpu, uint32_t *state)
{
        return vcpu_ops(vcpu)->get_mp_state(vcpu, state);
}

int hv_vcpu_set_mp_state(struct hv_vcpu *vcpu, uint32_t state)
{
        return vcpu_ops(vcpu)->set_mp_state(vcpu, state);
}

int hv_vcpu_run(struct hv_vcpu *vcpu, uint64_t max_steps, struct hv_exit *exit)
{
        memset(exit, 0, sizeof(*exit));
        return vcpu_ops(vcpu)->run(vcpu, max_steps, exit);
}

int hv_vcpu_mmio_reply(struct hv_vcpu *vcpu, const void *data, uint32_t len)
{
        if (len > 8)
                return -EINVAL;
        if (!vcpu_ops(vcpu)->mmio_reply)
                return -EOPNOTSUPP;
        return vcpu_ops(vcpu)->mmio_reply(vcpu, data, len);
}

void hv_vcpu_kick(struct hv_vcpu *vcpu)
{
        vcpu_ops(vcpu)->kick(vcpu);
}
