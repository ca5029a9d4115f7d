/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The in-kernel GICv3 of a guest (KVM's vgic-v3 device), at the guest
 * physical addresses of QEMU's virt board so that a Linux guest's device
 * tree looks familiar. Create it after the VM and before any vcpu runs;
 * vgic_init() (KVM_DEV_ARM_VGIC_CTRL_INIT) once every vcpu exists.
 *
 * The sim has no in-kernel devices: vgic_create() refuses there and says
 * that Linux guests need the kvm backend.
 */

#include <stdbool.h>
#include <stdint.h>

#include "svemig/error.h"
#include "svemig/hv.h"

/* The layout, as on QEMU's virt board. */
#define VGIC_DIST_BASE   0x08000000ull
#define VGIC_DIST_SIZE   0x10000ull /* 64 KiB */
#define VGIC_REDIST_BASE 0x080a0000ull
#define VGIC_REDIST_SIZE 0x20000ull /* per vcpu: RD_base and SGI_base frames */
/* The redistributors' region ends here (the first device after it: the UART). */
#define VGIC_REDIST_LIMIT 0x09000000ull
#define VGIC_MAX_VCPUS    ((unsigned)((VGIC_REDIST_LIMIT - VGIC_REDIST_BASE) / VGIC_REDIST_SIZE))

/* Interrupt lines: 32 private (SGIs 0-15, PPIs 16-31), then the SPIs. */
#define VGIC_NR_IRQS  128u
#define VGIC_SPI_BASE 32u
#define VGIC_NR_SPIS  (VGIC_NR_IRQS - VGIC_SPI_BASE)

/* The arch timer's PPIs (INTIDs) as KVM wires them by default, and as the device tree says. */
#define VGIC_PPI_SEC_PHYS_TIMER 29u
#define VGIC_PPI_PHYS_TIMER     30u
#define VGIC_PPI_VIRT_TIMER     27u
#define VGIC_PPI_HYP_TIMER      26u

/* KVM's vgic-v3 attribute groups (KVM_DEV_ARM_VGIC_GRP_*) and the control attribute. */
#define VGIC_GRP_ADDR        0u
#define VGIC_GRP_DIST_REGS   1u
#define VGIC_GRP_NR_IRQS     3u
#define VGIC_GRP_CTRL        4u
#define VGIC_GRP_REDIST_REGS 5u
#define VGIC_GRP_CPU_SYSREGS 6u
#define VGIC_GRP_LEVEL_INFO  7u
#define VGIC_CTRL_INIT       0u
/* KVM_VGIC_V3_ADDR_TYPE_* for VGIC_GRP_ADDR. */
#define VGIC_ADDR_TYPE_DIST   2u
#define VGIC_ADDR_TYPE_REDIST 3u

struct vgic;

/*
 * Creates the vgic-v3 of vm for n_vcpus vcpus: VGIC_NR_IRQS lines, the
 * distributor at VGIC_DIST_BASE, one redistributor region at
 * VGIC_REDIST_BASE holding one per vcpu.
 */
int vgic_create(struct hv_vm *vm, unsigned n_vcpus, struct vgic **out, struct svemig_error *err);
/* KVM_DEV_ARM_VGIC_CTRL_INIT: once every vcpu is created, before any runs. */
int vgic_init(struct vgic *gic, struct svemig_error *err);
void vgic_destroy(struct vgic *gic);
/* The KVM device, for its attributes (e.g. saving its registers). */
struct hv_device *vgic_device(const struct vgic *gic);
unsigned vgic_n_vcpus(const struct vgic *gic);

/* Raises or lowers SPI number spi (0-based: INTID VGIC_SPI_BASE + spi), as a level-triggered line. */
int vgic_spi_set(struct vgic *gic, unsigned spi, bool level);
