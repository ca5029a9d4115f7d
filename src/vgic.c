/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "svemig/vgic.h"

/* KVM_IRQ_LINE's encoding on arm64: type in bits 24-27, the INTID in bits 0-15. */
#define IRQ_TYPE_SHIFT 24
#define IRQ_TYPE_SPI   1u

struct vgic {
        struct hv_vm *vm;
        struct hv_device *dev;
        unsigned n_vcpus;
};

struct hv_device *vgic_device(const struct vgic *gic)
{
        return gic->dev;
}

unsigned vgic_n_vcpus(const struct vgic *gic)
{
        return gic->n_vcpus;
}

void vgic_destroy(struct vgic *gic)
{
        if (!gic)
                return;
        if (gic->dev)
                hv_device_destroy(gic->dev);
        free(gic);
}

static int set_addr(struct vgic *gic, uint64_t type, uint64_t addr, const char *what,
                    struct svemig_error *err)
{
        int r = hv_device_set_attr(gic->dev, VGIC_GRP_ADDR, type, &addr);

        if (r < 0)
                return svemig_error_set(err, r, "the vGIC refused its %s at 0x%llx: %s", what,
                                        (unsigned long long)addr, strerror(-r));
        return 0;
}

int vgic_create(struct hv_vm *vm, unsigned n_vcpus, struct vgic **out, struct svemig_error *err)
{
        struct vgic *gic;
        uint32_t nr_irqs = VGIC_NR_IRQS;
        int r;

        if (n_vcpus == 0 || n_vcpus > VGIC_MAX_VCPUS)
                return svemig_error_set(err, EINVAL,
                                        "the vGIC's redistributor region holds 1 to %u vcpus, not %u",
                                        VGIC_MAX_VCPUS, n_vcpus);
        gic = calloc(1, sizeof(*gic));
        if (!gic)
                return svemig_error_set(err, ENOMEM, "out of memory");
        gic->vm = vm;
        gic->n_vcpus = n_vcpus;
        r = hv_vm_create_device(vm, HV_DEV_VGIC_V3, &gic->dev, err);
        if (r < 0) {
                free(gic);
                return err ? svemig_error_prefix(err, "cannot create the guest's GICv3") : r;
        }
        r = hv_device_set_attr(gic->dev, VGIC_GRP_NR_IRQS, 0, &nr_irqs);
        if (r < 0) {
                vgic_destroy(gic);
                return svemig_error_set(err, r, "the vGIC refused %u interrupt lines: %s", VGIC_NR_IRQS,
                                        strerror(-r));
        }
        r = set_addr(gic, VGIC_ADDR_TYPE_DIST, VGIC_DIST_BASE, "distributor", err);
        if (r == 0)
                r = set_addr(gic, VGIC_ADDR_TYPE_REDIST, VGIC_REDIST_BASE, "redistributors", err);
        if (r < 0) {
                vgic_destroy(gic);
                return r;
        }
        *out = gic;
        return 0;
}

int vgic_init(struct vgic *gic, struct svemig_error *err)
{
        int r = hv_device_set_attr(gic->dev, VGIC_GRP_CTRL, VGIC_CTRL_INIT, NULL);

        if (r < 0)
                return svemig_error_set(err, r,
                                        "the vGIC's initialisation failed: %s (are all %u vcpus created, "
                                        "and none run yet?)",
                                        strerror(-r), gic->n_vcpus);
        return 0;
}

int vgic_spi_set(struct vgic *gic, unsigned spi, bool level)
{
        if (spi >= VGIC_NR_SPIS)
                return -EINVAL;
        return hv_vm_irq_line(gic->vm, IRQ_TYPE_SPI << IRQ_TYPE_SHIFT | (VGIC_SPI_BASE + spi), level);
}
