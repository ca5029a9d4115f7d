/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <libfdt.h>
#include <stdio.h>
#include <string.h>

#include "devtree.h"
#include "pl011.h"
#include "svemig/vgic.h"

#define PHANDLE_GIC 1
#define PHANDLE_CLK 2
/* The GIC binding's interrupt cells: type, number, flags. */
#define GIC_SPI       0
#define GIC_PPI       1
#define IRQ_LEVEL_HI  4
#define UART_CLOCK_HZ 24000000

/* Each libfdt call returns 0 or -FDT_ERR_*; the first failure ends the tree. */
#define TRY(call)                                                                                           \
        do {                                                                                                \
                int r_ = (call);                                                                            \
                if (r_ < 0)                                                                                 \
                        return r_;                                                                          \
        } while (0)

static int prop_u64_pair(void *fdt, const char *name, uint64_t a, uint64_t b)
{
        fdt64_t v[2] = {cpu_to_fdt64(a), cpu_to_fdt64(b)};

        return fdt_property(fdt, name, v, sizeof(v));
}

static int prop_cells(void *fdt, const char *name, const uint32_t *cells, size_t n)
{
        fdt32_t v[12];

        for (size_t i = 0; i < n && i < 12; i++)
                v[i] = cpu_to_fdt32(cells[i]);
        return fdt_property(fdt, name, v, (int)(n * sizeof(fdt32_t)));
}

static int node_cpus(void *fdt, unsigned n)
{
        char name[32];

        TRY(fdt_begin_node(fdt, "cpus"));
        TRY(fdt_property_u32(fdt, "#address-cells", 1));
        TRY(fdt_property_u32(fdt, "#size-cells", 0));
        for (unsigned i = 0; i < n; i++) {
                snprintf(name, sizeof(name), "cpu@%x", devtree_cpu_mpidr(i));
                TRY(fdt_begin_node(fdt, name));
                TRY(fdt_property_string(fdt, "device_type", "cpu"));
                TRY(fdt_property_string(fdt, "compatible", "arm,arm-v8"));
                TRY(fdt_property_u32(fdt, "reg", devtree_cpu_mpidr(i)));
                TRY(fdt_property_string(fdt, "enable-method", "psci"));
                TRY(fdt_end_node(fdt));
        }
        return fdt_end_node(fdt);
}

static int node_psci(void *fdt)
{
        /* KVM's PSCI (HV_FEAT_PSCI_0_2: 0.2 or later, 1.x on recent kernels): the standard function IDs. */
        static const char compat[] = "arm,psci-1.0\0arm,psci-0.2";

        TRY(fdt_begin_node(fdt, "psci"));
        TRY(fdt_property(fdt, "compatible", compat, sizeof(compat)));
        TRY(fdt_property_string(fdt, "method", "hvc"));
        return fdt_end_node(fdt);
}

static int node_gic(void *fdt, unsigned n_vcpus)
{
        char name[32];
        fdt64_t reg[4] = {cpu_to_fdt64(VGIC_DIST_BASE), cpu_to_fdt64(VGIC_DIST_SIZE),
                          cpu_to_fdt64(VGIC_REDIST_BASE),
                          cpu_to_fdt64((uint64_t)n_vcpus * VGIC_REDIST_SIZE)};

        snprintf(name, sizeof(name), "intc@%llx", (unsigned long long)VGIC_DIST_BASE);
        TRY(fdt_begin_node(fdt, name));
        TRY(fdt_property_string(fdt, "compatible", "arm,gic-v3"));
        TRY(fdt_property_u32(fdt, "#interrupt-cells", 3));
        TRY(fdt_property(fdt, "interrupt-controller", NULL, 0));
        TRY(fdt_property_u32(fdt, "#redistributor-regions", 1));
        TRY(fdt_property(fdt, "reg", reg, sizeof(reg)));
        TRY(fdt_property_u32(fdt, "phandle", PHANDLE_GIC));
        return fdt_end_node(fdt);
}

static int node_timer(void *fdt)
{
        /* PPIs are numbered from 16 in the binding. */
        const uint32_t irqs[] = {
                GIC_PPI, VGIC_PPI_SEC_PHYS_TIMER - 16, IRQ_LEVEL_HI,
                GIC_PPI, VGIC_PPI_PHYS_TIMER - 16,     IRQ_LEVEL_HI,
                GIC_PPI, VGIC_PPI_VIRT_TIMER - 16,     IRQ_LEVEL_HI,
                GIC_PPI, VGIC_PPI_HYP_TIMER - 16,      IRQ_LEVEL_HI,
        };

        TRY(fdt_begin_node(fdt, "timer"));
        TRY(fdt_property_string(fdt, "compatible", "arm,armv8-timer"));
        TRY(prop_cells(fdt, "interrupts", irqs, 12));
        return fdt_end_node(fdt);
}

static int node_uart(void *fdt, const struct devtree_params *p, char *path, size_t len)
{
        static const char compat[] = "arm,pl011\0arm,primecell";
        static const char clocks[] = "uartclk\0apb_pclk";
        const uint32_t irq[] = {GIC_SPI, p->uart_spi, IRQ_LEVEL_HI};
        const uint32_t clk[] = {PHANDLE_CLK, PHANDLE_CLK};

        TRY(fdt_begin_node(fdt, "apb-pclk"));
        TRY(fdt_property_string(fdt, "compatible", "fixed-clock"));
        TRY(fdt_property_u32(fdt, "#clock-cells", 0));
        TRY(fdt_property_u32(fdt, "clock-frequency", UART_CLOCK_HZ));
        TRY(fdt_property_string(fdt, "clock-output-names", "clk24mhz"));
        TRY(fdt_property_u32(fdt, "phandle", PHANDLE_CLK));
        TRY(fdt_end_node(fdt));

        snprintf(path, len, "/pl011@%llx", (unsigned long long)p->uart_base);
        TRY(fdt_begin_node(fdt, path + 1));
        TRY(fdt_property(fdt, "compatible", compat, sizeof(compat)));
        TRY(prop_u64_pair(fdt, "reg", p->uart_base, PL011_SIZE));
        TRY(prop_cells(fdt, "interrupts", irq, 3));
        TRY(prop_cells(fdt, "clocks", clk, 2));
        TRY(fdt_property(fdt, "clock-names", clocks, sizeof(clocks)));
        return fdt_end_node(fdt);
}

static int node_chosen(void *fdt, const struct devtree_params *p, const char *stdout_path)
{
        TRY(fdt_begin_node(fdt, "chosen"));
        if (p->bootargs)
                TRY(fdt_property_string(fdt, "bootargs", p->bootargs));
        TRY(fdt_property_string(fdt, "stdout-path", stdout_path));
        if (p->initrd_end > p->initrd_start) {
                TRY(fdt_property_u64(fdt, "linux,initrd-start", p->initrd_start));
                TRY(fdt_property_u64(fdt, "linux,initrd-end", p->initrd_end));
        }
        return fdt_end_node(fdt);
}

static int build(const struct devtree_params *p, void *fdt, size_t size)
{
        char name[48], uart[48];

        TRY(fdt_create(fdt, (int)size));
        TRY(fdt_finish_reservemap(fdt));
        TRY(fdt_begin_node(fdt, ""));
        TRY(fdt_property_string(fdt, "compatible", "linux,dummy-virt"));
        TRY(fdt_property_string(fdt, "model", "svemig-vmm"));
        TRY(fdt_property_u32(fdt, "#address-cells", 2));
        TRY(fdt_property_u32(fdt, "#size-cells", 2));
        TRY(fdt_property_u32(fdt, "interrupt-parent", PHANDLE_GIC));

        snprintf(name, sizeof(name), "memory@%llx", (unsigned long long)p->ram_base);
        TRY(fdt_begin_node(fdt, name));
        TRY(fdt_property_string(fdt, "device_type", "memory"));
        TRY(prop_u64_pair(fdt, "reg", p->ram_base, p->ram_size));
        TRY(fdt_end_node(fdt));

        TRY(node_cpus(fdt, p->n_vcpus));
        TRY(node_psci(fdt));
        TRY(node_gic(fdt, p->n_vcpus));
        TRY(node_timer(fdt));
        TRY(node_uart(fdt, p, uart, sizeof(uart)));
        TRY(node_chosen(fdt, p, uart));
        TRY(fdt_end_node(fdt));
        return fdt_finish(fdt);
}

int devtree_build(const struct devtree_params *p, void *buf, size_t size, size_t *len,
                  struct svemig_error *err)
{
        int r;

        if (p->n_vcpus == 0 || p->n_vcpus > VGIC_MAX_VCPUS)
                return svemig_error_set(err, EINVAL, "a Linux guest has 1 to %u vcpus, not %u",
                                        VGIC_MAX_VCPUS, p->n_vcpus);
        r = build(p, buf, size);
        if (r < 0)
                return svemig_error_set(err, r == -FDT_ERR_NOSPACE ? ENOSPC : EINVAL,
                                        "cannot build the guest's device tree: %s", fdt_strerror(r));
        *len = fdt_totalsize(buf);
        return 0;
}
