/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Deterministic stream content, shared by the golden-file generator
 * (tests/make-golden.c) and tests/test-stream.c: the golden file's header,
 * vcpus and memory are rebuilt from these functions and compared with what
 * the reader decodes. Changing anything here changes the expected content
 * of tests/data/stream-v1.svemig: don't, except to add a new golden file.
 */

#include <stdint.h>

#include "svemig/devstate.h"
#include "svemig/stream.h"
#include "svemig/timer-state.h"
#include "svemig/vgic-state.h"

#define GOLDEN_PAGE        4096u
#define GOLDEN_VCPUS       2u
#define GOLDEN_CHUNK_PAGES 8u
#define GOLDEN_SLOTS       2u

extern const struct svemig_stream_slot golden_slots[GOLDEN_SLOTS];

/* A splitmix64 generator: the same seed gives the same bytes everywhere. */
uint64_t content_rand(uint64_t *state);
void content_fill_random(uint8_t *p, size_t n, uint64_t *state);

/*
 * A vcpu with core, FP/SVE (every Z, P and FFR slice 0, at the width the ID
 * gives, bytes beyond the VL zero), SVE_VLS, ZCR_EL1 and two ID registers,
 * values drawn from seed. vls empty = a vcpu without SVE (V registers instead).
 */
int content_vcpu(unsigned index, const vqset_t *vls, uint64_t seed, struct vcpu_state *st);

/*
 * Memory of n pages where page i is, by i % 5: zero, random, text-like
 * (compressible), zero, a counter pattern. 'round' > 0 rewrites the pages
 * content_dirty() selects with round-dependent bytes.
 */
void content_memory(unsigned slot, uint8_t *mem, size_t n_pages, unsigned round);
/* The pages round 1 rewrote: a KVM-style dirty bitmap of n_pages bits. */
void content_dirty(unsigned slot, uint64_t *bitmap, size_t n_pages);

/* The golden file's header, fixed creation time included. */
void golden_info(struct svemig_stream_info *info);
/* The golden file's id_regs. */
extern const struct vcpu_reg golden_id_regs[2];
/* The golden file's vcpu i. */
int golden_vcpu(unsigned i, struct vcpu_state *st);

/*
 * Writes the golden stream to fd: header, slot memory (round 0), vcpus,
 * the dirty pages of round 1, trailer.
 */
int golden_write(int fd, unsigned n_threads, struct svemig_error *err);
/* The same stream, but for its producer's name and host name (NULL: the golden ones). */
int golden_write_as(int fd, unsigned n_threads, const char *producer, struct svemig_error *err);
/*
 * The golden file's device state (1.2): a vGIC of GOLDEN_NR_IRQS IRQs, the
 * timers, a PL011 console with bytes both ways, and two virtio devices (a
 * block device with requests in flight, a console). 0 or -ENOMEM.
 */
#define GOLDEN_NR_IRQS     64u
#define GOLDEN_VIRTIO_DEVS 2u
int golden_vgic(struct vgic_state *st);
int golden_timers(struct timer_state *st);
int golden_console(struct console_state *st);
int golden_virtio(unsigned index, struct virtio_dev_state *st);
/* Writes them all, in that order. */
int golden_write_devices(struct svemig_stream_writer *w, struct svemig_error *err);

/* The memory of slot after the golden stream: round 0, then round 1's dirty pages. */
void golden_final_memory(unsigned slot, uint8_t *mem);
