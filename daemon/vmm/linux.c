/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "devtree.h"
#include "file-atomic.h"
#include "linux.h"
#include "log.h"
#include "macro.h"
#include "vmm.h"

#define DEFAULT_CMDLINE "console=ttyAMA0"
#define DTB_BUF_SIZE    0x10000u

void vmm_linux_init(struct vmm *v)
{
        struct vmm_linux *l = &v->linux_guest;

        l->console_fd = -1;
        l->event_fd = -1;
        pthread_mutex_init(&l->ring_lock, NULL);
}

void vmm_linux_done(struct vmm *v)
{
        struct vmm_linux *l = &v->linux_guest;

        sd_event_source_disable_unref(l->event_source);
        vgic_destroy(l->gic);
        l->gic = NULL;
        boot_image_done(&l->kernel);
        free(l->initrd);
        free(l->cmdline);
        if (l->active)
                pl011_done(&l->uart);
        if (l->console_fd >= 0)
                close(l->console_fd);
        if (l->event_fd >= 0)
                close(l->event_fd);
        pthread_mutex_destroy(&l->ring_lock);
}

static void console_out(void *userdata, const uint8_t *buf, size_t len)
{
        struct vmm_linux *l = userdata;

        pthread_mutex_lock(&l->ring_lock);
        for (size_t i = 0; i < len; i++)
                l->ring[(l->ring_written + i) % LINUX_CONSOLE_RING] = buf[i];
        l->ring_written += len;
        /* Under the lock, so that the file's bytes come in the ring's order. */
        if (l->console_fd >= 0 && write(l->console_fd, buf, len) < 0) {
                /* A full disk loses the file's copy only: the ring still has it. */
        }
        pthread_mutex_unlock(&l->ring_lock);
}

size_t vmm_linux_console_tail(struct vmm *v, uint8_t *buf, size_t size)
{
        struct vmm_linux *l = &v->linux_guest;
        size_t n;

        pthread_mutex_lock(&l->ring_lock);
        n = (size_t)MIN((uint64_t)MIN(size, (size_t)LINUX_CONSOLE_RING), l->ring_written);
        for (size_t i = 0; i < n; i++)
                buf[i] = l->ring[(l->ring_written - n + i) % LINUX_CONSOLE_RING];
        pthread_mutex_unlock(&l->ring_lock);
        return n;
}

static void uart_irq(void *userdata, bool level)
{
        struct vmm_linux *l = userdata;

        if (l->gic)
                (void)vgic_spi_set(l->gic, PL011_SPI, level);
}

static bool on_mmio(void *userdata, unsigned vcpu, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
        struct vmm_linux *l = userdata;

        (void)vcpu;
        if (addr >= PL011_BASE && addr < PL011_BASE + PL011_SIZE)
                pl011_mmio(&l->uart, addr - PL011_BASE, data, len, is_write);
        /* Elsewhere there is no device: writes go nowhere, reads see zeros. */
        return true;
}

static void on_event(void *userdata, unsigned vcpu, uint32_t type)
{
        struct vmm_linux *l = userdata;
        uint64_t one = 1;

        (void)vcpu;
        atomic_store(&l->event, type);
        if (write(l->event_fd, &one, sizeof(one)) < 0) {
                /* The counter cannot overflow with one event per boot; nothing to do. */
        }
}

static int on_devices(void *userdata, struct guest *g, struct svemig_error *err)
{
        struct vmm_linux *l = userdata;
        int r;

        vgic_destroy(l->gic);
        l->gic = NULL;
        r = vgic_create(guest_vm(g), guest_n_vcpus(g), &l->gic, err);
        if (r < 0)
                return r;
        return vgic_init(l->gic, err);
}

/* Kernel, device tree and initrd into the guest's RAM: a new guest's, or one booting again. */
static int load(struct vmm_linux *l, struct guest *g, const struct boot_layout *lay,
                struct svemig_error *err)
{
        uint8_t dtb[DTB_BUF_SIZE];
        struct devtree_params p = {
                .n_vcpus = guest_n_vcpus(g),
                .ram_base = guest_ram_base(g),
                .ram_size = guest_mem_size(g),
                .bootargs = l->cmdline,
                .initrd_start = lay->initrd,
                .initrd_end = lay->initrd + lay->initrd_size,
                .uart_base = PL011_BASE,
                .uart_spi = PL011_SPI,
        };
        size_t len;
        int r;

        r = devtree_build(&p, dtb, sizeof(dtb), &len, err);
        if (r < 0)
                return r;
        memcpy(guest_mem(g) + (lay->dtb - guest_ram_base(g)), dtb, len);
        if (l->initrd_size)
                memcpy(guest_mem(g) + (lay->initrd - guest_ram_base(g)), l->initrd, l->initrd_size);
        return 0;
}

static int boot(struct vmm *v, struct svemig_error *err)
{
        struct vmm_linux *l = &v->linux_guest;
        struct boot_layout lay;
        int r;

        r = boot_layout_plan(GUEST_RAM_BASE, l->cfg.mem_bytes, &l->kernel, l->initrd_size, &lay, err);
        if (r < 0)
                return r;
        l->cfg.image = l->kernel.data;
        l->cfg.image_size = l->kernel.size;
        l->cfg.ram_base = GUEST_RAM_BASE;
        l->cfg.image_offset = lay.kernel - GUEST_RAM_BASE;
        l->cfg.entry = lay.kernel;
        l->cfg.boot_x0 = lay.dtb;
        r = guest_create(v->hv, &l->cfg, &v->guest, err);
        if (r < 0)
                return r;
        return load(l, v->guest, &lay, err);
}

static int open_console(struct vmm *v, struct svemig_error *err)
{
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/" LINUX_CONSOLE_FILE, v->dir) < 0) {
                path = NULL;
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        v->linux_guest.console_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (v->linux_guest.console_fd < 0)
                return svemig_error_set(err, errno, "cannot open the console log %s: %s", path,
                                        strerror(errno));
        return 0;
}

int vmm_linux_create(struct vmm *v, const struct vmm_linux_args *a, struct guest_config *cfg,
                     struct svemig_error *err)
{
        struct vmm_linux *l = &v->linux_guest;
        int r;

        if (strcmp(hv_backend_name(v->hv), "kvm") != 0)
                return svemig_error_set(err, EOPNOTSUPP,
                                        "the %s backend runs its synthetic workload only; a Linux guest "
                                        "(--kernel) needs the kvm backend",
                                        hv_backend_name(v->hv));
        r = boot_image_read(a->kernel_fd, a->kernel_name, cfg->mem_bytes, &l->kernel, err);
        if (r == 0 && a->initrd_fd >= 0)
                r = boot_file_read(a->initrd_fd, a->initrd_name, cfg->mem_bytes, &l->initrd, &l->initrd_size,
                                   err);
        if (r < 0)
                return r;
        l->cmdline = strdup(a->cmdline ? a->cmdline : DEFAULT_CMDLINE);
        l->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (!l->cmdline || l->event_fd < 0)
                return svemig_error_set(err, errno ? errno : ENOMEM, "cannot set up the guest: %s",
                                        strerror(errno ? errno : ENOMEM));
        r = open_console(v, err);
        if (r < 0)
                return r;
        pl011_init(&l->uart, console_out, uart_irq, l);
        l->active = true;
        l->cfg = *cfg;
        l->cfg.linux_boot = true;
        l->cfg.dirty_pages_per_step = 0;
        l->cfg.on_mmio = on_mmio;
        l->cfg.mmio_userdata = l;
        l->cfg.on_devices = on_devices;
        l->cfg.on_event = on_event;
        l->cfg.event_userdata = l;
        return boot(v, err);
}

static void write_event(struct vmm *v, const char *text)
{
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/" LINUX_EVENT_FILE, v->dir) < 0)
                return;
        (void)write_file_atomic(path, text, strlen(text), 0600);
}

/* A reset: the guest boots again, in a new VM with the same vcpus, memory and kernel. */
static int reboot(struct vmm *v, struct svemig_error *err)
{
        struct vmm_linux *l = &v->linux_guest;
        char text[32];
        int r;

        guest_destroy(v->guest);
        v->guest = NULL;
        vgic_destroy(l->gic);
        l->gic = NULL;
        pthread_mutex_lock(&l->uart.lock);
        memset(&l->uart.s, 0, sizeof(l->uart.s));
        l->uart.s.cr = 0x300;
        l->uart.s.ifls = 0x12;
        l->uart.line = false;
        pthread_mutex_unlock(&l->uart.lock);
        r = boot(v, err);
        if (r < 0)
                return r;
        snprintf(text, sizeof(text), "reset %u\n", ++l->resets);
        write_event(v, text);
        return guest_start(v->guest, err);
}

static int on_event_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct vmm *v = userdata;
        struct vmm_linux *l = &v->linux_guest;
        struct svemig_error err = {0};
        uint64_t n;
        int r;

        (void)s;
        (void)revents;
        if (read(fd, &n, sizeof(n)) < 0 || v->exiting)
                return 0;
        (void)guest_pause(v->guest, NULL);
        if (atomic_load(&l->event) == GUEST_SYSTEM_EVENT_RESET) {
                log_msg(LOG_NOTICE, LOG_CTX(.guest = v->name), "the guest reset itself: booting it again");
                r = reboot(v, &err);
                if (r == 0)
                        return 0;
                log_msg(LOG_ERR, LOG_CTX(.guest = v->name), "cannot boot the guest again: %s",
                        svemig_error_str(&err, r));
        } else {
                log_msg(LOG_NOTICE, LOG_CTX(.guest = v->name), "the guest powered off: the VMM exits");
                write_event(v, "poweroff\n");
        }
        v->exiting = true;
        vmm_stop_serving(v);
        return 0;
}

int vmm_linux_watch(struct vmm *v, struct svemig_error *err)
{
        struct vmm_linux *l = &v->linux_guest;
        int r;

        if (!l->active)
                return 0;
        r = sd_event_add_io(v->event, &l->event_source, l->event_fd, EPOLLIN, on_event_fd, v);
        if (r < 0)
                return svemig_error_set(err, -r, "cannot watch the guest's events: %s", strerror(-r));
        return 0;
}
