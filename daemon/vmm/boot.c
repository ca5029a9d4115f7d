/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "boot.h"
#include "macro.h"
#include "unaligned.h"

/* Kernels before 3.17 leave image_size 0 and load at this offset. */
#define LEGACY_TEXT_OFFSET 0x80000ull
#define INITRD_ALIGN       0x1000ull

static uint64_t align_up(uint64_t x, uint64_t a)
{
        return (x + a - 1) & ~(a - 1);
}

int boot_image_parse(const uint8_t *buf, size_t len, const char *what, struct boot_image *out,
                     struct svemig_error *err)
{
        if (len < BOOT_IMAGE_HDR_SIZE)
                return svemig_error_set(err, ENOEXEC,
                                        "%s is %zu bytes, too short for an arm64 Linux Image; give the "
                                        "kernel's Image or vmlinuz",
                                        what, len);
        if (get_le32(buf + 56) != BOOT_IMAGE_MAGIC)
                return svemig_error_set(
                        err, ENOEXEC,
                        "%s is not an arm64 Linux Image (no \"ARM\\x64\" magic at offset 56); "
                        "give the kernel's Image, or its gzip-compressed vmlinuz",
                        what);
        out->text_offset = get_le64(buf + 8);
        out->image_size = get_le64(buf + 16);
        if (out->image_size == 0) {
                out->text_offset = LEGACY_TEXT_OFFSET;
                out->image_size = len;
        }
        if (out->image_size < len || out->text_offset % 4096 || out->text_offset >= BOOT_KERNEL_ALIGN)
                return svemig_error_set(
                        err, ENOEXEC,
                        "%s has a bad Image header: text_offset 0x%llx, image_size %llu for a "
                        "file of %zu bytes",
                        what, (unsigned long long)out->text_offset, (unsigned long long)out->image_size,
                        len);
        return 0;
}

void boot_image_done(struct boot_image *img)
{
        free(img->data);
        img->data = NULL;
}

int boot_file_read(int fd, const char *what, uint64_t max, uint8_t **out, size_t *size,
                   struct svemig_error *err)
{
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;
        size_t done = 0;

        if (fstat(fd, &st) < 0)
                return svemig_error_set(err, errno, "cannot stat %s: %s", what, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return svemig_error_set(err, EINVAL, "%s is not a regular file", what);
        if ((uint64_t)st.st_size > max)
                return svemig_error_set(err, EFBIG,
                                        "%s is %lld bytes, more than fits in the guest's RAM; give it more "
                                        "--memory",
                                        what, (long long)st.st_size);
        buf = malloc(MAX((size_t)st.st_size, (size_t)1));
        if (!buf)
                return svemig_error_set(err, ENOMEM, "out of memory");
        while (done < (size_t)st.st_size) {
                ssize_t n = pread(fd, buf + done, (size_t)st.st_size - done, (off_t)done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return svemig_error_set(err, n < 0 ? errno : EIO, "cannot read %s: %s", what,
                                                n < 0 ? strerror(errno) : "it shrank");
                done += (size_t)n;
        }
        *out = buf;
        buf = NULL;
        *size = done;
        return 0;
}

/* gzip (RFC 1952) as Debian ships vmlinuz: inflated into a buffer that grows, up to max bytes. */
static int inflate_gzip(const uint8_t *in, size_t len, const char *what, uint64_t max, uint8_t **out,
                        size_t *size, struct svemig_error *err)
{
        z_stream z = {0};
        _cleanup_free_ uint8_t *buf = NULL;
        size_t cap = (size_t)MIN((uint64_t)MAX(len * 4, (size_t)1 << 20), max);
        int zr;

        if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
                return svemig_error_set(err, ENOMEM, "cannot start inflating %s", what);
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)MIN(len, (size_t)UINT32_MAX);
        for (;;) {
                uint8_t *nb = realloc(buf, cap);

                if (!nb) {
                        inflateEnd(&z);
                        return svemig_error_set(err, ENOMEM, "out of memory inflating %s", what);
                }
                buf = nb;
                z.next_out = buf + z.total_out;
                z.avail_out = (uInt)(cap - z.total_out);
                zr = inflate(&z, Z_NO_FLUSH);
                if (zr == Z_STREAM_END)
                        break;
                if (zr != Z_OK && zr != Z_BUF_ERROR) {
                        inflateEnd(&z);
                        return svemig_error_set(err, ENOEXEC, "%s is not a valid gzip file: %s", what,
                                                z.msg ? z.msg : "inflate failed");
                }
                if (z.avail_out > 0) {
                        inflateEnd(&z);
                        return svemig_error_set(err, ENOEXEC, "%s is a truncated gzip file", what);
                }
                if (cap >= max) {
                        inflateEnd(&z);
                        return svemig_error_set(
                                err, EFBIG,
                                "%s inflates to more than %llu bytes, the guest's RAM; give it "
                                "more --memory",
                                what, (unsigned long long)max);
                }
                cap = (size_t)MIN((uint64_t)cap * 2, max);
        }
        *size = z.total_out;
        inflateEnd(&z);
        *out = buf;
        buf = NULL;
        return 0;
}

int boot_image_read(int fd, const char *what, uint64_t max, struct boot_image *out, struct svemig_error *err)
{
        _cleanup_free_ uint8_t *raw = NULL;
        size_t len = 0;
        int r;

        *out = (struct boot_image){0};
        r = boot_file_read(fd, what, max, &raw, &len, err);
        if (r < 0)
                return r;
        if (len >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
                uint8_t *img = NULL;
                size_t size = 0;

                r = inflate_gzip(raw, len, what, max, &img, &size, err);
                if (r < 0)
                        return r;
                free(raw);
                raw = img;
                len = size;
        }
        r = boot_image_parse(raw, len, what, out, err);
        if (r < 0)
                return r;
        out->data = raw;
        out->size = len;
        raw = NULL;
        return 0;
}

int boot_layout_plan(uint64_t ram_base, uint64_t ram_size, const struct boot_image *k, uint64_t initrd_size,
                     struct boot_layout *out, struct svemig_error *err)
{
        uint64_t base = align_up(ram_base, BOOT_KERNEL_ALIGN);
        uint64_t end = ram_base + ram_size;

        out->kernel = base + k->text_offset;
        /* The device tree and the initrd after all the kernel claims, each on its own 2 MiB. */
        out->dtb = align_up(out->kernel + k->image_size, BOOT_KERNEL_ALIGN);
        out->initrd = initrd_size ? out->dtb + BOOT_DTB_MAX : 0;
        out->initrd_size = initrd_size;
        if (out->dtb + BOOT_DTB_MAX + align_up(initrd_size, INITRD_ALIGN) > end)
                return svemig_error_set(
                        err, EFBIG,
                        "the kernel (%llu bytes in memory), its device tree and an initrd of "
                        "%llu bytes do not fit in %llu MiB of RAM; give the guest more --memory",
                        (unsigned long long)k->image_size, (unsigned long long)initrd_size,
                        (unsigned long long)(ram_size >> 20));
        return 0;
}
