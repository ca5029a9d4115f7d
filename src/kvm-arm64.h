/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The arm64 KVM uapi, from the kernel's own headers: every svemig source that
 * needs an arm64 KVM constant or structure includes this file and nothing
 * else for it, so the values always come from the kernel.
 *
 * On aarch64 these are the toolchain's <asm/kvm.h> and <linux/kvm.h>. On any
 * other host they are the copies in src/uapi/ imported from Debian's
 * linux-libc-dev-arm64-cross by scripts/update-kvm-headers.sh (src/uapi/VERSION
 * says which version). The host's own <linux/kvm.h> cannot serve there: it
 * includes the host's <asm/kvm.h>, whose struct kvm_regs, kvm_sync_regs and
 * friends clash with the arm64 ones. So do not include <linux/kvm.h> or
 * <asm/kvm.h> yourself in a file that includes this one.
 *
 * The generic parts (<linux/ioctl.h>, <linux/types.h>) are the host's, and the
 * ioctl numbers they compute (KVM_ARM_VCPU_INIT, KVM_GET_ONE_REG, ...) are the
 * same on arm64 and x86: both use asm-generic/ioctl.h.
 */

#include <stddef.h> /* offsetof, for KVM_REG_ARM_CORE_REG() */

#if defined(__aarch64__)
#include <asm/kvm.h>
#include <linux/kvm.h>
#else
#include "uapi/linux/kvm.h"
#endif

/*
 * Linux 6.7's writable ID register masks; the cross toolchain's headers (6.1,
 * src/uapi/VERSION) predate them. The values are the kernel's uapi.
 */
#ifndef KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES
#define KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES 230
#endif
#ifndef KVM_ARM_FEATURE_ID_RANGE
#define KVM_ARM_FEATURE_ID_RANGE      0
#define KVM_ARM_FEATURE_ID_RANGE_SIZE (3 * 8 * 8)
struct reg_mask_range {
        __u64 addr;
        __u32 range;
        __u32 reserved[13];
};
#endif
#ifndef KVM_ARM_GET_REG_WRITABLE_MASKS
#define KVM_ARM_GET_REG_WRITABLE_MASKS _IOR(KVMIO, 0xb6, struct reg_mask_range)
#endif

#ifndef KVM_REG_ARM64_SVE_VLS
#error "the arm64 <asm/kvm.h> in use predates SVE (Linux 5.2); run scripts/update-kvm-headers.sh"
#endif
