/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A Linux guest's boot in svemig-vmm: the Image header and a gzip-compressed
 * vmlinuz (daemon/vmm/boot.c), the layout in RAM, the device tree read back
 * with libfdt (daemon/vmm/devtree.c), and the PL011 console's registers
 * (daemon/vmm/pl011.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>
#include <libfdt.h>
#include <zlib.h>

#include "boot.h"
#include "devtree.h"
#include "pl011.h"
#include "svemig/guest.h"
#include "svemig/vgic.h"
#include "unaligned.h"

#define IMAGE_LEN 8192u

/* An Image as the kernel's head.S lays out its header, with a body after it. */
static uint8_t *fake_image(uint64_t text_offset, uint64_t image_size)
{
        uint8_t *img = calloc(1, IMAGE_LEN);

        put_le64(img + 8, text_offset);
        put_le64(img + 16, image_size);
        put_le64(img + 24, 0xa); /* 4K pages, anywhere in RAM */
        put_le32(img + 56, BOOT_IMAGE_MAGIC);
        for (unsigned i = BOOT_IMAGE_HDR_SIZE; i < IMAGE_LEN; i++)
                img[i] = (uint8_t)(i * 7);
        return img;
}

static int memfd_with(const void *buf, size_t len)
{
        int fd = memfd_create("image", MFD_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, buf, len), (ssize_t)len);
        return fd;
}

static size_t gzip(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
        z_stream z = {0};

        assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)len;
        z.next_out = out;
        z.avail_out = (uInt)cap;
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        deflateEnd(&z);
        return z.total_out;
}

static void test_image_header(void **state)
{
        struct svemig_error err = {0};
        struct boot_image k;
        uint8_t *img = fake_image(0, 0x200000);

        (void)state;
        assert_int_equal(boot_image_parse(img, IMAGE_LEN, "Image", &k, &err), 0);
        assert_int_equal(k.text_offset, 0);
        assert_int_equal(k.image_size, 0x200000);
        /* A pre-3.17 kernel: image_size 0 means text_offset 0x80000. */
        put_le64(img + 16, 0);
        assert_int_equal(boot_image_parse(img, IMAGE_LEN, "Image", &k, &err), 0);
        assert_int_equal(k.text_offset, 0x80000);
        /* Not an Image: the reason, and what to give instead. */
        put_le32(img + 56, 0x464c457f);
        assert_int_equal(boot_image_parse(img, IMAGE_LEN, "bzImage", &k, &err), -ENOEXEC);
        assert_non_null(strstr(err.msg, "bzImage is not an arm64 Linux Image"));
        assert_non_null(strstr(err.msg, "vmlinuz"));
        assert_int_equal(boot_image_parse(img, 10, "tiny", &k, &err), -ENOEXEC);
        assert_non_null(strstr(err.msg, "tiny is 10 bytes, too short"));
        /* A header that claims less than the file holds. */
        put_le32(img + 56, BOOT_IMAGE_MAGIC);
        put_le64(img + 16, 100);
        assert_int_equal(boot_image_parse(img, IMAGE_LEN, "Image", &k, &err), -ENOEXEC);
        assert_non_null(strstr(err.msg, "bad Image header"));
        free(img);
}

static void test_vmlinuz_inflated(void **state)
{
        struct svemig_error err = {0};
        struct boot_image k;
        uint8_t *img = fake_image(0, 0x400000);
        uint8_t gz[IMAGE_LEN * 2];
        size_t n = gzip(img, IMAGE_LEN, gz, sizeof(gz));
        int fd = memfd_with(gz, n);

        (void)state;
        assert_int_equal(boot_image_read(fd, "vmlinuz", 1 << 20, &k, &err), 0);
        assert_int_equal(k.size, IMAGE_LEN);
        assert_memory_equal(k.data, img, IMAGE_LEN);
        assert_int_equal(k.image_size, 0x400000);
        boot_image_done(&k);
        close(fd);
        /* Cut short: said so, not booted half. */
        fd = memfd_with(gz, n / 2);
        assert_int_equal(boot_image_read(fd, "vmlinuz", 1 << 20, &k, &err), -ENOEXEC);
        assert_non_null(strstr(err.msg, "vmlinuz is a truncated gzip file"));
        close(fd);
        /* Larger than RAM once inflated. */
        fd = memfd_with(gz, n);
        assert_int_equal(boot_image_read(fd, "vmlinuz", 4096, &k, &err), -EFBIG);
        assert_non_null(strstr(err.msg, "more --memory"));
        close(fd);
        free(img);
}

static void test_layout(void **state)
{
        struct svemig_error err = {0};
        struct boot_image k = {.text_offset = 0, .image_size = 0x1a00000};
        struct boot_layout lay;

        (void)state;
        assert_int_equal(boot_layout_plan(GUEST_RAM_BASE, 256 << 20, &k, 5 << 20, &lay, &err), 0);
        assert_int_equal(lay.kernel, GUEST_RAM_BASE);
        /* The tree past all the kernel claims, 2 MiB aligned; the initrd after the tree's 2 MiB. */
        assert_int_equal(lay.dtb, GUEST_RAM_BASE + 0x1a00000);
        assert_int_equal(lay.initrd, lay.dtb + BOOT_DTB_MAX);
        assert_true(lay.initrd + lay.initrd_size <= GUEST_RAM_BASE + (256 << 20));
        assert_int_equal(boot_layout_plan(GUEST_RAM_BASE, 32 << 20, &k, 16 << 20, &lay, &err), -EFBIG);
        assert_non_null(strstr(err.msg, "give the guest more --memory"));
}

static const void *prop(const void *fdt, const char *path, const char *name, int *len)
{
        int node = fdt_path_offset(fdt, path);

        assert_true(node >= 0);
        return fdt_getprop(fdt, node, name, len);
}

static void test_devtree(void **state)
{
        static uint8_t buf[0x10000];
        struct devtree_params p = {
                .n_vcpus = 18,
                .ram_base = GUEST_RAM_BASE,
                .ram_size = 512 << 20,
                .bootargs = "console=ttyAMA0 rdinit=/init loglevel=3",
                .initrd_start = 0x42000000,
                .initrd_end = 0x42345678,
                .uart_base = PL011_BASE,
                .uart_spi = PL011_SPI,
        };
        struct svemig_error err = {0};
        const fdt64_t *reg;
        const fdt32_t *cells;
        const char *s;
        size_t len;
        int n, node, cpus = 0;

        (void)state;
        assert_int_equal(devtree_build(&p, buf, sizeof(buf), &len, &err), 0);
        assert_int_equal(fdt_check_header(buf), 0);
        assert_int_equal(len, fdt_totalsize(buf));

        assert_string_equal(prop(buf, "/chosen", "bootargs", NULL), p.bootargs);
        assert_int_equal(fdt64_to_cpu(*(const fdt64_t *)prop(buf, "/chosen", "linux,initrd-start", &n)),
                         0x42000000);
        assert_int_equal(n, 8);
        assert_int_equal(fdt64_to_cpu(*(const fdt64_t *)prop(buf, "/chosen", "linux,initrd-end", NULL)),
                         0x42345678);
        /* stdout-path leads to the PL011, which has its registers, SPI and clocks. */
        s = prop(buf, "/chosen", "stdout-path", NULL);
        assert_string_equal(s, "/pl011@9000000");
        assert_string_equal(prop(buf, s, "compatible", NULL), "arm,pl011");
        reg = prop(buf, s, "reg", &n);
        assert_int_equal(n, 16);
        assert_int_equal(fdt64_to_cpu(reg[0]), PL011_BASE);
        cells = prop(buf, s, "interrupts", &n);
        assert_int_equal(n, 12);
        assert_int_equal(fdt32_to_cpu(cells[0]), 0); /* SPI */
        assert_int_equal(fdt32_to_cpu(cells[1]), PL011_SPI);
        assert_non_null(prop(buf, s, "clocks", NULL));

        reg = prop(buf, "/memory@40000000", "reg", &n);
        assert_int_equal(fdt64_to_cpu(reg[0]), GUEST_RAM_BASE);
        assert_int_equal(fdt64_to_cpu(reg[1]), 512 << 20);

        /* One cpu per vcpu, by KVM's MPIDR, started by PSCI over HVC. */
        fdt_for_each_subnode(node, buf, fdt_path_offset(buf, "/cpus"))
        {
                assert_string_equal(fdt_getprop(buf, node, "enable-method", NULL), "psci");
                assert_int_equal(fdt32_to_cpu(*(const fdt32_t *)fdt_getprop(buf, node, "reg", NULL)),
                                 devtree_cpu_mpidr((unsigned)cpus));
                cpus++;
        }
        assert_int_equal(cpus, 18);
        assert_int_equal(devtree_cpu_mpidr(17), 0x101);
        assert_string_equal(prop(buf, "/psci", "method", NULL), "hvc");
        assert_true(fdt_node_check_compatible(buf, fdt_path_offset(buf, "/psci"), "arm,psci-0.2") == 0);

        /* The GICv3 where src/vgic.c puts it, a redistributor per vcpu. */
        reg = prop(buf, "/intc@8000000", "reg", &n);
        assert_int_equal(n, 32);
        assert_int_equal(fdt64_to_cpu(reg[0]), VGIC_DIST_BASE);
        assert_int_equal(fdt64_to_cpu(reg[2]), VGIC_REDIST_BASE);
        assert_int_equal(fdt64_to_cpu(reg[3]), 18 * VGIC_REDIST_SIZE);
        assert_non_null(prop(buf, "/intc@8000000", "interrupt-controller", NULL));
        cells = prop(buf, "/timer", "interrupts", &n);
        assert_int_equal(n, 48);
        assert_int_equal(fdt32_to_cpu(cells[7]), VGIC_PPI_VIRT_TIMER - 16);

        /* Too many vcpus for the redistributors: said, not built. */
        p.n_vcpus = VGIC_MAX_VCPUS + 1;
        assert_int_equal(devtree_build(&p, buf, sizeof(buf), &len, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "1 to 123 vcpus"));
        /* No initrd: no initrd properties. */
        p.n_vcpus = 1;
        p.initrd_start = p.initrd_end = 0;
        assert_int_equal(devtree_build(&p, buf, sizeof(buf), &len, &err), 0);
        assert_null(prop(buf, "/chosen", "linux,initrd-start", NULL));
}

struct uart_log {
        char out[64];
        size_t n_out;
        bool level;
        unsigned edges;
};

static void out(void *userdata, const uint8_t *buf, size_t len)
{
        struct uart_log *l = userdata;

        memcpy(l->out + l->n_out, buf, len);
        l->n_out += len;
}

static void irq(void *userdata, bool level)
{
        struct uart_log *l = userdata;

        l->level = level;
        l->edges++;
}

static uint32_t rd(struct pl011 *u, uint64_t off)
{
        uint8_t d[4];

        pl011_mmio(u, off, d, 4, false);
        return get_le32(d);
}

static void wr(struct pl011 *u, uint64_t off, uint32_t v)
{
        uint8_t d[4];

        put_le32(d, v);
        pl011_mmio(u, off, d, 4, true);
}

static void test_pl011(void **state)
{
        struct uart_log log = {0};
        struct pl011 u;
        size_t taken;

        (void)state;
        pl011_init(&u, out, irq, &log);
        /* What the AMBA bus matches the driver by. */
        assert_int_equal(rd(&u, 0xfe0), 0x11);
        assert_int_equal(rd(&u, 0xff0), 0x0d);
        assert_int_equal(rd(&u, 0xffc), 0xb1);
        /* Empty both ways; bytes written go out at once. */
        assert_int_equal(rd(&u, 0x18) & 0xf0, 0x90);
        wr(&u, 0x00, 'o');
        wr(&u, 0x00, 'k');
        assert_int_equal(log.n_out, 2);
        assert_memory_equal(log.out, "ok", 2);
        assert_false(log.level); /* TX is pending but masked */
        /* Unmasked, the TX interrupt raises the line; clearing it lowers it. */
        wr(&u, 0x38, 1u << 5);
        assert_true(log.level);
        assert_int_equal(rd(&u, 0x40), 1u << 5);
        wr(&u, 0x44, 1u << 5);
        assert_false(log.level);
        /* Input: RX interrupt while the FIFO holds bytes, read in order. */
        wr(&u, 0x38, (1u << 4) | (1u << 6));
        pl011_input(&u, (const uint8_t *)"hi", 2, &taken);
        assert_int_equal(taken, 2);
        assert_true(log.level);
        assert_int_equal(rd(&u, 0x18) & (1u << 4), 0);
        assert_int_equal(rd(&u, 0x00), 'h');
        assert_int_equal(rd(&u, 0x00), 'i');
        assert_false(log.level);
        assert_int_equal(rd(&u, 0x18) & (1u << 4), 1u << 4);
        /* The FIFO holds 16: the rest waits for the reader. */
        pl011_input(&u, (const uint8_t *)"0123456789abcdefXYZ", 19, &taken);
        assert_int_equal(taken, PL011_FIFO);
        /* Loopback (a driver's self-test) prints nothing. */
        wr(&u, 0x30, 0x300 | (1u << 7));
        wr(&u, 0x00, 'x');
        assert_int_equal(log.n_out, 2);
        pl011_done(&u);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_image_header), cmocka_unit_test(test_vmlinuz_inflated),
                cmocka_unit_test(test_layout),       cmocka_unit_test(test_devtree),
                cmocka_unit_test(test_pl011),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
