/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The SVE vector lengths of a libvirt domain, read from its XML's <cpu>
 * (libxml2), judged against a host, and written back pinned to a set.
 *
 * libvirt passes <feature name='sve'/> and <feature name='sveN'/> (N a
 * multiple of 128, up to 2048) to QEMU as -cpu ...,sve=on,sveN=on|off. QEMU
 * fills in the lengths below the largest one required that the domain names
 * neither way: under KVM every length the host offers there (KVM cannot hide
 * one below the maximum), so on a host H a domain gets H ∩ [1..max], provided
 * H has every length it requires and none it disables below its maximum.
 * Used by the hook, svemigctl libvirt and svemigd's libvirt watch.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.pb-c.h"
#include "svemig/error.h"
#include "svemig/vqset.h"

/* QEMU's sveN properties stop at 2048 bits. */
#define LIBVIRT_CPU_VQ_MAX VQSET_VQ_ARCH_MAX

enum libvirt_sve {
        LIBVIRT_SVE_DEFAULT, /* no SVE feature named: the CPU model's default, all the host offers */
        LIBVIRT_SVE_OFF,     /* <feature policy='disable' name='sve'/>: FPSIMD only */
        LIBVIRT_SVE_LENGTHS, /* sveN features name the lengths */
};

struct libvirt_cpu {
        enum libvirt_sve sve;
        vqset_t required; /* policy require or force */
        vqset_t disabled; /* policy disable or forbid */
        bool has_cpu;     /* the domain has a <cpu> element */
        char mode[32];    /* <cpu mode>, "custom" when absent */
        char model[64];   /* <model>'s text, empty when none */
};

/* Whether QEMU's CPU model 'model' has SVE (max, host, a64fx, neoverse-v1, neoverse-n2). */
bool libvirt_cpu_model_has_sve(const char *model);

/* The domain's <name> (malloc'd into *name) and its <cpu>'s SVE features. */
int libvirt_cpu_parse(const char *xml, size_t len, char **name, struct libvirt_cpu *out,
                      struct svemig_error *err);

/*
 * Whether a host whose hypervisor offers 'host' can start the domain: true
 * with *set = the lengths the guest gets there; false with *why naming the
 * lowest length it requires and the host lacks (VQSET_MISSING) or it
 * disables and the host cannot hide (VQSET_EXTRA).
 */
bool libvirt_cpu_on_host(const struct libvirt_cpu *c, const vqset_t *host, vqset_t *set,
                         struct vqset_reason *why);

/*
 * Pinned to 'set': it requires exactly those lengths and disables every
 * other up to 2048 bits (an empty set: SVE disabled), so every host gives
 * it the same set or refuses it.
 */
bool libvirt_cpu_pinned_to(const struct libvirt_cpu *c, const vqset_t *set);

/*
 * The domain XML with its <cpu>'s SVE features replaced by 'set' pinned
 * (libvirt_cpu_pinned_to()); a domain without <cpu> gets
 * <cpu mode='custom' match='exact'><model fallback='forbid'>max</model>.
 * Other features and the mode stay; so does the model, unless the set
 * has SVE and the model does not (libvirt 9 gives an aarch64 TCG domain
 * defined without <cpu> a cortex-a15): then it becomes max. *out is
 * malloc'd.
 */
int libvirt_cpu_pin_xml(const char *xml, size_t len, const vqset_t *set, char **out,
                        struct svemig_error *err);

/* "sve=on, 128, 256; off above", "sve off", "the host's default" for people. */
int libvirt_cpu_format(const struct libvirt_cpu *c, char *buf, size_t len);

/*
 * Why host 'host' cannot take the domain, in svemig's words: "node2 lacks
 * vq 4 (512-bit)", "node2 offers vq 3 (384-bit) below the domain's maximum
 * of 512 bits and cannot hide it".
 */
int libvirt_cpu_reason_format(const struct vqset_reason *why, const char *host, char *buf, size_t len);

/* To and from the control API's LibvirtCpu; bits points to 2 * LIBVIRT_CPU_VQ_MAX entries. */
void libvirt_cpu_to_proto(const struct libvirt_cpu *c, Svemig__Api__LibvirtCpu *out, uint32_t *bits);
int libvirt_cpu_from_proto(const Svemig__Api__LibvirtCpu *in, struct libvirt_cpu *out,
                           struct svemig_error *err);
