/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A guest: one hv VM with its vcpus and its RAM (one memory slot, at
 * GUEST_RAM_BASE as on QEMU's virt board unless the guest says otherwise).
 * It is what snapshots capture and restore and what the daemon runs.
 *
 * It runs one of two things: the sim's synthetic workload
 * (docs/sim-workload.md), or a bare aarch64 payload, a raw image loaded into
 * RAM and entered at EL1h (tests/arm64/payloads/), which runs on kvm.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/cpubase.h"
#include "svemig/error.h"
#include "svemig/hv.h"
#include "svemig/vcpu.h"
#include "svemig/vqset.h"

#define GUEST_RAM_BASE 0x40000000ull
#define GUEST_RAM_SLOT 0u
/*
 * The most pages a sim workload step writes per vcpu (its x28 beyond this
 * counts as this): a step is never interrupted, so this bounds the work
 * between two chances to pause or cancel: 16 MiB of writes, about a
 * millisecond on an idle host (65536 pages took 0.5 s a step on a loaded
 * one).
 */
#define GUEST_DIRTY_PAGES_MAX 4096u

struct guest;

/*
 * Called from a vcpu's thread when the guest accesses an address outside
 * RAM (KVM_EXIT_MMIO): data holds the len bytes written; for a read, the
 * handler may fill data with what the load returns (it starts as zeros).
 * Returns true to keep the vcpu running, false to stop it there: its thread
 * ends, the access is completed, and the next guest_run() or guest_start()
 * resumes after it.
 */
typedef bool (*guest_mmio_fn)(void *userdata, unsigned vcpu, uint64_t addr, uint8_t *data, uint32_t len,
                              bool is_write);
/*
 * Called from a vcpu's thread when the guest asks PSCI for SYSTEM_OFF or
 * SYSTEM_RESET (type: KVM_SYSTEM_EVENT_*, GUEST_SYSTEM_EVENT_*). Every vcpu
 * of the guest stops after it, as when each stopped by itself.
 */
typedef void (*guest_event_fn)(void *userdata, unsigned vcpu, uint32_t type);
#define GUEST_SYSTEM_EVENT_SHUTDOWN 1
#define GUEST_SYSTEM_EVENT_RESET    2
/* Called once every vcpu is set up, before any runs: the guest's in-kernel devices (its vGIC). */
typedef int (*guest_devices_fn)(void *userdata, struct guest *g, struct svemig_error *err);

struct guest_config {
        unsigned n_vcpus;
        uint64_t mem_bytes; /* a multiple of HV_PAGE_SIZE */
        bool sve;
        /*
         * The vcpus' vector lengths: empty means all the host offers.
         * Otherwise the host must be able to present it exactly.
         */
        vqset_t vls;
        /*
         * The sim workload's knob (docs/sim-workload.md): pages written per
         * step per vcpu, at most GUEST_DIRTY_PAGES_MAX.
         */
        uint64_t dirty_pages_per_step;
        /* Keep a dirty log on guest RAM (for pre-copy). */
        bool log_dirty;

        /*
         * A bare payload instead of the sim workload: image_size bytes
         * copied into RAM at image_offset, and every vcpu entered at
         * 'entry' (an IPA) with no workload registers set. Payloads run on
         * kvm; on the sim the vcpus run the synthetic workload regardless.
         */
        const void *image;
        size_t image_size;
        uint64_t image_offset;
        uint64_t entry;
        /*
         * The IPA where RAM starts, page aligned. 0 means GUEST_RAM_BASE,
         * except for a payload (image set), whose RAM is at ram_base as
         * given: bare payloads are linked at IPA 0.
         */
        uint64_t ram_base;

        /*
         * The CPU the vcpus present (a cluster's baseline, svemig/cpubase.h):
         * written to each vcpu's ID registers before its first run, but for
         * the bits each host keeps its own (cpubase_ignored_bits(): the SVE
         * fields, EL2-only fields). A register the vcpu lacks is left out;
         * one the host's kernel will not write fails the create, naming the
         * field. NULL: the host's own values.
         */
        const struct cpubase_reg *id_regs;
        size_t n_id_regs;

        /* MMIO exits (guest_set_mmio_handler()); NULL ignores writes and reads zeros. */
        guest_mmio_fn on_mmio;
        void *mmio_userdata;

        /*
         * A Linux guest (Documentation/arch/arm64/booting.rst): vcpu 0
         * enters at 'entry' with x0 = boot_x0 (the device tree's address);
         * the others start powered off (HV_FEAT_POWER_OFF) and wait in KVM
         * until the guest starts them with PSCI CPU_ON.
         */
        bool linux_boot;
        uint64_t boot_x0;
        guest_devices_fn on_devices; /* the in-kernel devices, before any vcpu runs */
        guest_event_fn on_event;     /* PSCI SYSTEM_OFF / RESET */
        void *event_userdata;        /* for on_devices and on_event */
};

/*
 * Creates a guest ready to run: the VM, RAM (zeroed, then the payload's
 * image if any), every vcpu initialised (PSCI 0.2, and SVE with the chosen VL
 * set then finalized), and the start state loaded: pc (the payload's entry,
 * or the workload's), pstate EL1h with DAIF masked, CPACR_EL1 with no FP or
 * SVE traps, ZCR_EL1.LEN at the vcpu's maximum VL, and for the workload its
 * parameter registers.
 */
int guest_create(struct hv *hv, const struct guest_config *cfg, struct guest **out,
                 struct svemig_error *err);

/*
 * Creates a guest to restore into: the VM, zeroed RAM of mem_bytes and
 * n_vcpus created but not initialised (vcpu_restore() does that).
 */
int guest_create_empty(struct hv *hv, unsigned n_vcpus, uint64_t mem_bytes, bool log_dirty,
                       struct guest **out, struct svemig_error *err);
/* guest_create_empty() with RAM at IPA ram_base (page aligned) instead of GUEST_RAM_BASE. */
int guest_create_empty_at(struct hv *hv, unsigned n_vcpus, uint64_t ram_base, uint64_t mem_bytes,
                          bool log_dirty, struct guest **out, struct svemig_error *err);
/*
 * guest_create_empty_at() on memory mapped in this process and faulted in
 * ahead (anonymous, all zero, map_size >= mem_bytes bytes; e.g. a standby
 * VMM's, in huge pages): on success the guest owns the mapping and unmaps
 * what is past its RAM at once; on failure the caller keeps it.
 */
int guest_create_empty_mem(struct hv *hv, unsigned n_vcpus, uint64_t ram_base, uint64_t mem_bytes,
                           bool log_dirty, void *mem, uint64_t map_size, struct guest **out,
                           struct svemig_error *err);

void guest_destroy(struct guest *g);

/*
 * Faults in all of the guest's RAM now (MADV_POPULATE_WRITE, or a touch
 * pass on older kernels), so that a restore into it is not paced by first
 * touches of fresh pages.
 */
int guest_prefault(struct guest *g, struct svemig_error *err);
/* The same for memory of one's own: size bytes at mem, e.g. RAM reserved for a guest to come. */
int guest_mem_prefault(void *mem, uint64_t size, struct svemig_error *err);

struct hv *guest_host(const struct guest *g);
struct hv_vm *guest_vm(const struct guest *g);
unsigned guest_n_vcpus(const struct guest *g);
struct hv_vcpu *guest_vcpu(const struct guest *g, unsigned i);
uint8_t *guest_mem(const struct guest *g);
uint64_t guest_mem_size(const struct guest *g);
/* The IPA of guest_mem()'s first byte. */
uint64_t guest_ram_base(const struct guest *g);
/* Workload steps run by vcpu i since the guest was created or restored. */
uint64_t guest_steps(const struct guest *g, unsigned i);

/*
 * Sets (or with fn NULL, clears) the MMIO handler, e.g. on a guest just
 * restored from a snapshot. Not while the guest is running.
 */
void guest_set_mmio_handler(struct guest *g, guest_mmio_fn fn, void *userdata);
/*
 * Sets the system event handler (guest_config.on_event), and whether
 * powered-off vcpus run (and so wait in KVM for PSCI CPU_ON) as a Linux
 * guest's secondaries do, e.g. on a guest just restored. Not while running.
 */
void guest_set_event_handler(struct guest *g, guest_event_fn fn, void *userdata, bool linux_boot);
/* The last PSCI system event a vcpu reported since the guest last started (0: none). */
uint32_t guest_system_event(const struct guest *g);

/*
 * Runs every vcpu for 'steps' workload steps, one thread per vcpu, and
 * waits for all of them. Returns the first failure. On kvm, where nothing
 * counts steps, each vcpu runs until it stops by itself: its MMIO handler
 * says so, or the guest powers off (PSCI SYSTEM_OFF/RESET). A vcpu that is
 * powered off is not run.
 */
int guest_run(struct guest *g, uint64_t steps, struct svemig_error *err);

/*
 * From any thread: a guest_run() in progress stops after each vcpu's
 * current step and returns -EINTR; one that starts later runs no step,
 * until guest_interrupt_clear(). What a cancel of "run N steps" calls.
 */
void guest_interrupt(struct guest *g);
void guest_interrupt_clear(struct guest *g);

/*
 * Starts every vcpu running in its own thread until guest_pause(). On the
 * sim, a vcpu runs workload steps without end; on kvm, until it stops by
 * itself as in guest_run(). -EBUSY when already running.
 */
int guest_start(struct guest *g, struct svemig_error *err);

/*
 * Creates the vcpu threads of a later guest_start() now, parked: they touch
 * no vcpu until guest_start() releases them (cheaply, e.g. under a lock),
 * and guest_pause() or guest_destroy() sends them away unreleased. For a
 * migration's destination, whose start is on the guest's downtime. -EBUSY
 * when already running or prepared.
 */
int guest_prepare_start(struct guest *g, struct svemig_error *err);

/*
 * Stops every vcpu (a kick, as KVM's immediate_exit) and waits for their
 * threads, so that the state is consistent for capture. A no-op when the
 * guest is not running. Returns the first vcpu failure seen while running.
 */
int guest_pause(struct guest *g, struct svemig_error *err);

/*
 * vcpu 0's state as far as it describes the guest to a stream header or a
 * peer (features, VL set, register list, host-invariant registers: none of
 * it changes once the guest is set up), into out (the caller's; NULL: only
 * read it). Read once, while nothing runs, and kept: guest_start() reads it
 * before the guest first runs; otherwise the guest is paused for it once.
 */
int guest_describe(struct guest *g, struct vcpu_state *out, struct svemig_error *err);

bool guest_running(const struct guest *g);

/*
 * Of a running guest's vcpus, how many still run: 0 once every one has
 * stopped by itself (powered off, or stopped by its MMIO handler), while
 * guest_running() stays true until guest_pause(). 0 when not running.
 */
unsigned guest_vcpus_active(const struct guest *g);

/*
 * Slows a running guest's vcpus to about percent of their speed (1..100),
 * as QEMU's auto-converge does, so that a migration can outpace its dirty
 * rate. 100 (the default) is full speed.
 */
void guest_set_throttle(struct guest *g, unsigned percent);

/* Captures every vcpu. *out is an array of guest_n_vcpus() states; free with guest_states_free(). */
int guest_capture(struct guest *g, struct vcpu_state **out, struct svemig_error *err);
/* Restores every vcpu of an empty guest from states. */
int guest_restore_vcpus(struct guest *g, const struct vcpu_state *states, struct svemig_error *err);
void guest_states_free(struct vcpu_state *states, unsigned n);

/*
 * Whether two guests hold the same state: every vcpu (vcpu_state_equal) and
 * all of RAM. When not, describes the first difference in diff.
 */
int guest_compare(struct guest *a, struct guest *b, bool *equal, char *diff, size_t len,
                  struct svemig_error *err);
