/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The arm64 Linux boot protocol (Documentation/arch/arm64/booting.rst):
 * the kernel's Image header, a gzip-compressed Image (Debian's vmlinuz)
 * inflated as QEMU does, and where kernel, device tree and initrd go in RAM.
 */

#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"

#define BOOT_IMAGE_MAGIC    0x644d5241u /* "ARM\x64" at offset 56 */
#define BOOT_IMAGE_HDR_SIZE 64u
#define BOOT_DTB_MAX        0x200000ull /* booting.rst: at most 2 MiB, 8-byte aligned */
#define BOOT_KERNEL_ALIGN   0x200000ull /* the kernel's base: 2 MiB aligned */

struct boot_image {
        uint8_t *data; /* the Image, inflated */
        size_t size;
        uint64_t text_offset; /* from the base of RAM (2 MiB aligned) to the Image */
        uint64_t image_size;  /* what the kernel occupies from there, BSS included */
};

/* Parses an Image header: *what* names the file in messages. */
int boot_image_parse(const uint8_t *buf, size_t len, const char *what, struct boot_image *out,
                     struct svemig_error *err);
/* Reads the kernel on fd (an Image, or one gzip-compressed), at most max bytes once inflated. */
int boot_image_read(int fd, const char *what, uint64_t max, struct boot_image *out,
                    struct svemig_error *err);
void boot_image_done(struct boot_image *img);

/* Reads a whole regular file (the initrd) into memory, at most max bytes. */
int boot_file_read(int fd, const char *what, uint64_t max, uint8_t **out, size_t *size,
                   struct svemig_error *err);

struct boot_layout {
        uint64_t kernel; /* IPAs */
        uint64_t dtb;
        uint64_t initrd, initrd_size;
};

/* Places the kernel, a device tree of up to BOOT_DTB_MAX and an initrd in RAM, or says why they do not fit.
 */
int boot_layout_plan(uint64_t ram_base, uint64_t ram_size, const struct boot_image *k, uint64_t initrd_size,
                     struct boot_layout *out, struct svemig_error *err);
