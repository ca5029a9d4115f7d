/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A Linux guest in svemig-vmm (kvm backend): the kernel (an arm64 Image,
 * or Debian's gzip-compressed vmlinuz), an optional initrd and command
 * line, booted as Documentation/arch/arm64/booting.rst asks, with the
 * in-kernel GICv3 (src/vgic.c), the arch timer, PSCI through KVM and a
 * PL011 console whose output goes to DIR/console.log and a ring of the
 * recent output.
 *
 * PSCI SYSTEM_OFF ends the VMM (the guest is off); SYSTEM_RESET boots the
 * guest again from the same kernel, in a new VM. DIR/last-event says which
 * happened last ("poweroff" or "reset N").
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "boot.h"
#include "pl011.h"
#include "svemig/guest.h"
#include "svemig/vgic.h"

#define LINUX_CONSOLE_RING 65536u
#define LINUX_CONSOLE_FILE "console.log"
#define LINUX_EVENT_FILE   "last-event"

struct vmm;

struct vmm_linux {
        bool active; /* the guest is a Linux guest */
        struct boot_image kernel;
        uint8_t *initrd;
        size_t initrd_size;
        char *cmdline;
        struct guest_config cfg; /* what it was created with, to boot it again on a reset */

        struct vgic *gic;
        struct pl011 uart;
        int console_fd; /* DIR/console.log, appended */
        pthread_mutex_t ring_lock;
        uint8_t ring[LINUX_CONSOLE_RING];
        uint64_t ring_written; /* bytes ever written: the ring holds the last LINUX_CONSOLE_RING */

        int event_fd; /* a vcpu thread's PSCI system event, for the loop */
        sd_event_source *event_source;
        _Atomic uint32_t event;
        unsigned resets;
};

struct vmm_linux_args {
        int kernel_fd, initrd_fd; /* initrd_fd -1: none */
        const char *kernel_name, *initrd_name;
        const char *cmdline; /* NULL: "console=ttyAMA0" */
};

void vmm_linux_init(struct vmm *v);
void vmm_linux_done(struct vmm *v);
/* Creates v->guest from cfg (vcpus, memory, VLs set) booting the kernel. */
int vmm_linux_create(struct vmm *v, const struct vmm_linux_args *a, struct guest_config *cfg,
                     struct svemig_error *err);
/* Watches the guest's system events on v->event (after setup_loop()). */
int vmm_linux_watch(struct vmm *v, struct svemig_error *err);
/* The ring's last bytes, oldest first, into buf; returns how many. */
size_t vmm_linux_console_tail(struct vmm *v, uint8_t *buf, size_t size);
