/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "macro.h"
#include "svemig/guest.h"
#include "svemig/kvmreg.h"

/* The start state (docs/sim-workload.md; payloads get the same but their own pc). */
#define GUEST_ENTRY        0x800ull
#define GUEST_PSTATE       0x3c5ull    /* EL1h, DAIF masked */
#define GUEST_CPACR_FP_SVE 0x330000ull /* FPEN and ZEN: no traps for FP/SIMD or SVE */
#define WL_X_SEED          1
#define WL_X_STRIPE_INDEX  26
#define WL_X_STRIPES       27
#define WL_X_DIRTY_PAGES   28

/* Steps per KVM_RUN on the sim while running freely: small enough for a prompt pause. */
#define GUEST_RUN_BATCH 256
/* The longest a throttled vcpu sleeps before it looks whether it is asked to stop. */
#define THROTTLE_SLICE_NS 1000000ull

struct vcpu_thread {
        struct guest *g;
        unsigned index;
        uint64_t budget; /* steps to run, UINT64_MAX for until paused */
        int r;
};

struct guest {
        struct hv *hv;
        struct hv_vm *vm;
        unsigned n_vcpus;
        struct hv_vcpu **vcpus;
        _Atomic uint64_t *steps;
        uint8_t *mem;
        uint64_t mem_size;
        uint64_t ram_base;
        bool mem_borrowed;       /* the caller's until guest_create_empty_mem() succeeds */
        struct vcpu_state *desc; /* guest_describe()'s, once read */

        guest_mmio_fn on_mmio;
        void *mmio_userdata;
        guest_event_fn on_event;
        void *event_userdata;
        bool linux_boot;               /* powered-off vcpus run, to wait for PSCI CPU_ON */
        _Atomic uint32_t system_event; /* the last PSCI SYSTEM_OFF/RESET since the start */

        /* Running vcpu threads, between guest_start() and guest_pause(). */
        bool running;
        _Atomic unsigned active; /* of those, the threads still running (guest_vcpus_active()) */
        atomic_bool stop;
        atomic_bool interrupted;   /* guest_interrupt(): the running guest_run() stops, till cleared */
        _Atomic unsigned throttle; /* percent of full speed */
        pthread_t *threads;
        struct vcpu_thread *jobs;

        /*
         * Threads created ahead by guest_prepare_start(), parked at the gate
         * until guest_start() opens it: a migration's destination pays for
         * creating them before the guest pauses on the source, not after.
         */
        bool parked;
        bool gate_open; /* every start passes the gate: open at once unless parked */
        pthread_mutex_t gate_lock;
        pthread_cond_t gate;
};

struct hv *guest_host(const struct guest *g)
{
        return g->hv;
}

struct hv_vm *guest_vm(const struct guest *g)
{
        return g->vm;
}

unsigned guest_n_vcpus(const struct guest *g)
{
        return g->n_vcpus;
}

struct hv_vcpu *guest_vcpu(const struct guest *g, unsigned i)
{
        return i < g->n_vcpus ? g->vcpus[i] : NULL;
}

uint8_t *guest_mem(const struct guest *g)
{
        return g->mem;
}

uint64_t guest_mem_size(const struct guest *g)
{
        return g->mem_size;
}

uint64_t guest_ram_base(const struct guest *g)
{
        return g->ram_base;
}

void guest_set_mmio_handler(struct guest *g, guest_mmio_fn fn, void *userdata)
{
        g->on_mmio = fn;
        g->mmio_userdata = userdata;
}

void guest_set_event_handler(struct guest *g, guest_event_fn fn, void *userdata, bool linux_boot)
{
        g->on_event = fn;
        g->event_userdata = userdata;
        g->linux_boot = linux_boot;
}

uint32_t guest_system_event(const struct guest *g)
{
        return atomic_load(&g->system_event);
}

uint64_t guest_steps(const struct guest *g, unsigned i)
{
        return i < g->n_vcpus ? atomic_load(&g->steps[i]) : 0;
}

void guest_destroy(struct guest *g)
{
        if (!g)
                return;
        guest_pause(g, NULL);
        for (unsigned i = 0; g->vcpus && i < g->n_vcpus; i++)
                hv_vcpu_destroy(g->vcpus[i]);
        hv_vm_destroy(g->vm);
        if (g->mem && g->mem != MAP_FAILED && !g->mem_borrowed)
                munmap(g->mem, g->mem_size);
        vcpu_state_done(g->desc);
        free(g->desc);
        free(g->vcpus);
        free(g->steps);
        free(g->threads);
        free(g->jobs);
        pthread_cond_destroy(&g->gate);
        pthread_mutex_destroy(&g->gate_lock);
        free(g);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct guest *, guest_destroy);

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

int guest_mem_prefault(void *mem, uint64_t size, struct svemig_error *err)
{
        if (madvise(mem, size, MADV_POPULATE_WRITE) == 0)
                return 0;
        if (errno != EINVAL)
                return svemig_error_set(err, errno, "cannot fault in %llu bytes of guest memory: %s",
                                        (unsigned long long)size, strerror(errno));
        /* Before Linux 5.14: one write per page does the same. */
        for (uint64_t off = 0; off < size; off += HV_PAGE_SIZE)
                ((volatile uint8_t *)mem)[off] = 0;
        return 0;
}

int guest_prefault(struct guest *g, struct svemig_error *err)
{
        return guest_mem_prefault(g->mem, g->mem_size, err);
}

/*
 * The guest's RAM: anonymous memory, or mem (the caller's, faulted in
 * ahead, all zero; e.g. a standby VMM's), taken over once the guest is made.
 */
static int map_ram(struct guest *g, uint64_t mem_bytes, void *mem, uint64_t map_size,
                   struct svemig_error *err)
{
        if (mem) {
                if (map_size < mem_bytes)
                        return svemig_error_set(
                                err, EINVAL,
                                "the prepared RAM (%llu bytes) is smaller than the guest's %llu",
                                (unsigned long long)map_size, (unsigned long long)mem_bytes);
                g->mem = mem;
                g->mem_borrowed = true;
                return 0;
        }
        g->mem = mmap(NULL, mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
        if (g->mem == MAP_FAILED)
                return svemig_error_set(err, errno, "cannot map %llu bytes of guest memory: %s",
                                        (unsigned long long)mem_bytes, strerror(errno));
        /* Huge pages where the kernel has them, as QEMU asks: fewer TLB walks. */
        (void)madvise(g->mem, mem_bytes, MADV_HUGEPAGE);
        return 0;
}

static int create_empty(struct hv *hv, unsigned n_vcpus, uint64_t ram_base, uint64_t mem_bytes,
                        bool log_dirty, void *mem, uint64_t map_size, struct guest **out,
                        struct svemig_error *err)
{
        _cleanup_(guest_destroyp) struct guest *g = NULL;
        int r;

        if (n_vcpus == 0)
                return svemig_error_set(err, EINVAL, "a guest needs at least one vcpu");
        if (mem_bytes == 0 || mem_bytes % HV_PAGE_SIZE)
                return svemig_error_set(err, EINVAL, "guest memory must be a non-zero multiple of %u bytes",
                                        HV_PAGE_SIZE);
        if (ram_base % HV_PAGE_SIZE || ram_base + mem_bytes < ram_base)
                return svemig_error_set(err, EINVAL,
                                        "guest RAM at 0x%llx (%llu bytes) is not page aligned or wraps "
                                        "around; put it at a multiple of %u",
                                        (unsigned long long)ram_base, (unsigned long long)mem_bytes,
                                        HV_PAGE_SIZE);

        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->hv = hv;
        g->throttle = 100;
        pthread_mutex_init(&g->gate_lock, NULL);
        pthread_cond_init(&g->gate, NULL);
        g->vcpus = calloc(n_vcpus, sizeof(*g->vcpus));
        g->steps = calloc(n_vcpus, sizeof(*g->steps));
        g->threads = calloc(n_vcpus, sizeof(*g->threads));
        g->jobs = calloc(n_vcpus, sizeof(*g->jobs));
        if (!g->vcpus || !g->steps || !g->threads || !g->jobs)
                return svemig_error_set(err, ENOMEM, "out of memory for %u vcpus", n_vcpus);

        g->mem_size = mem_bytes;
        r = map_ram(g, mem_bytes, mem, map_size, err);
        if (r < 0)
                return r;
        g->ram_base = ram_base;

        r = hv_vm_create(hv, &g->vm, err);
        if (r < 0)
                return r;
        r = hv_vm_set_memslot(g->vm, GUEST_RAM_SLOT, ram_base, mem_bytes, g->mem,
                              log_dirty ? HV_MEM_LOG_DIRTY : 0, err);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < n_vcpus; i++) {
                r = hv_vcpu_create(g->vm, i, &g->vcpus[i], err);
                if (r < 0)
                        return r;
                g->n_vcpus++;
        }
        if (g->mem_borrowed) {
                /* Taken over, faulted in ahead (in huge pages where it had them); the rest goes back now. */
                if (map_size > mem_bytes)
                        munmap(g->mem + mem_bytes, map_size - mem_bytes);
                g->mem_borrowed = false;
        }
        *out = g;
        g = NULL;
        return 0;
}

int guest_create_empty_mem(struct hv *hv, unsigned n_vcpus, uint64_t ram_base, uint64_t mem_bytes,
                           bool log_dirty, void *mem, uint64_t map_size, struct guest **out,
                           struct svemig_error *err)
{
        return create_empty(hv, n_vcpus, ram_base, mem_bytes, log_dirty, mem, map_size, out, err);
}

int guest_create_empty_at(struct hv *hv, unsigned n_vcpus, uint64_t ram_base, uint64_t mem_bytes,
                          bool log_dirty, struct guest **out, struct svemig_error *err)
{
        return create_empty(hv, n_vcpus, ram_base, mem_bytes, log_dirty, NULL, 0, out, err);
}

int guest_create_empty(struct hv *hv, unsigned n_vcpus, uint64_t mem_bytes, bool log_dirty,
                       struct guest **out, struct svemig_error *err)
{
        return guest_create_empty_at(hv, n_vcpus, GUEST_RAM_BASE, mem_bytes, log_dirty, out, err);
}

static int set_u64(struct hv_vcpu *vcpu, uint64_t id, uint64_t value, struct svemig_error *err)
{
        char name[64];
        int r = hv_vcpu_set_reg(vcpu, id, &value);

        if (r < 0) {
                kvmreg_name(id, name, sizeof(name));
                return svemig_error_set(err, r, "vcpu %u: setting %s to 0x%llx failed: %s",
                                        hv_vcpu_index(vcpu), name, (unsigned long long)value, strerror(-r));
        }
        return 0;
}

/* cfg->id_regs into vcpu, before its first run: the kernel judges each (vcpu_check_invariants()). */
static int present_cpu(struct hv_vcpu *vcpu, const struct guest_config *cfg, struct svemig_error *err)
{
        for (size_t k = 0; k < cfg->n_id_regs; k++) {
                const struct cpubase_reg *want = &cfg->id_regs[k];
                uint64_t keep = cpubase_ignored_bits(want->id), own = 0, v;
                unsigned size = kvmreg_size(want->id);
                struct vcpu_reg reg = {want->id, size, (uint8_t *)&v};
                int r;

                if (size > sizeof(v))
                        continue;
                r = hv_vcpu_get_reg(vcpu, want->id, &own);
                if (r == -ENOENT)
                        continue; /* a register another host's kernel lists (CCSIDR 3..13 on 6.12) */
                if (r < 0)
                        return svemig_error_set(err, r, "vcpu %u: reading ID register 0x%016llx: %s",
                                                hv_vcpu_index(vcpu), (unsigned long long)want->id,
                                                strerror(-r));
                v = (want->value & ~keep) | (own & keep);
                r = vcpu_check_invariants(vcpu, &reg, 1, err);
                if (r < 0)
                        return svemig_error_prefix(err,
                                                   "this host cannot present the cluster's CPU baseline");
        }
        return 0;
}

/* init -> SVE_VLS -> finalize -> the start registers (the workload's, or the payload's entry). */
static int setup_vcpu(struct guest *g, struct hv_vcpu *vcpu, const struct guest_config *cfg, unsigned max_vq,
                      struct svemig_error *err)
{
        unsigned i = hv_vcpu_index(vcpu);
        uint32_t features = HV_FEAT_BIT(HV_FEAT_PSCI_0_2) | (cfg->sve ? HV_FEAT_BIT(HV_FEAT_SVE) : 0);
        int r;

        if (cfg->linux_boot && i > 0)
                features |= HV_FEAT_BIT(HV_FEAT_POWER_OFF);

        r = hv_vcpu_init(vcpu, features);
        if (r < 0)
                return svemig_error_set(err, r, "vcpu %u: KVM_ARM_VCPU_INIT failed: %s%s", i, strerror(-r),
                                        r == -EINVAL && cfg->sve ? " (does the host have SVE?)" : "");
        if (cfg->sve) {
                if (!vqset_empty(&cfg->vls)) {
                        r = hv_vcpu_set_reg(vcpu, kvmreg_vls(), cfg->vls.w);
                        if (r < 0)
                                return svemig_error_set(err, r, "vcpu %u: the host refused the VL set: %s",
                                                        i, strerror(-r));
                }
                r = hv_vcpu_finalize(vcpu, HV_FEAT_SVE);
                if (r < 0)
                        return svemig_error_set(err, r, "vcpu %u: finalize failed: %s", i, strerror(-r));
        }

        r = present_cpu(vcpu, cfg, err);
        if (r < 0)
                return r;
        if ((r = set_u64(vcpu, kvmreg_core_pc(), cfg->image ? cfg->entry : GUEST_ENTRY, err)) < 0 ||
            (r = set_u64(vcpu, kvmreg_core_pstate(), GUEST_PSTATE, err)) < 0 ||
            (r = set_u64(vcpu, KVMREG_CPACR_EL1, GUEST_CPACR_FP_SVE, err)) < 0)
                return r;
        if (!cfg->image &&
            ((r = set_u64(vcpu, kvmreg_core_x(WL_X_SEED), 0x5eed0000ull + i, err)) < 0 ||
             (r = set_u64(vcpu, kvmreg_core_x(WL_X_STRIPE_INDEX), i, err)) < 0 ||
             (r = set_u64(vcpu, kvmreg_core_x(WL_X_STRIPES), g->n_vcpus, err)) < 0 ||
             (r = set_u64(vcpu, kvmreg_core_x(WL_X_DIRTY_PAGES), cfg->dirty_pages_per_step, err)) < 0))
                return r;
        if (cfg->linux_boot && i == 0 && (r = set_u64(vcpu, kvmreg_core_x(0), cfg->boot_x0, err)) < 0)
                return r;
        /* ZCR_EL1 resets to 128 bits; a guest that wants its whole VL raises LEN itself. */
        if (cfg->sve && (r = set_u64(vcpu, KVMREG_ZCR_EL1, max_vq - 1, err)) < 0)
                return r;
        return 0;
}

static uint64_t guest_config_ram_base(const struct guest_config *cfg)
{
        return cfg->image || cfg->ram_base ? cfg->ram_base : GUEST_RAM_BASE;
}

int guest_create(struct hv *hv, const struct guest_config *cfg, struct guest **out, struct svemig_error *err)
{
        _cleanup_(guest_destroyp) struct guest *g = NULL;
        struct hv_caps caps;
        unsigned max_vq = 0;
        int r;

        r = hv_get_caps(hv, &caps);
        if (r < 0)
                return svemig_error_set(err, r, "cannot read the host's capabilities");
        if (cfg->sve) {
                struct vqset_reason why;
                char want[256], have[256], reason[256];

                if (!caps.sve)
                        return svemig_error_set(err, EINVAL,
                                                "host %s has no SVE; create the guest without SVE",
                                                caps.host_name);
                if (!vqset_empty(&cfg->vls) && !vqset_can_present(&caps.vls, &cfg->vls, &why)) {
                        vqset_format(&cfg->vls, VQSET_FORMAT_BITS, want, sizeof(want));
                        vqset_format(&caps.vls, VQSET_FORMAT_BITS, have, sizeof(have));
                        vqset_reason_format(&why, reason, sizeof(reason));
                        return svemig_error_set(
                                err, EINVAL,
                                "host %s cannot present vector lengths %s bits (it offers %s): %s",
                                caps.host_name, want, have, reason);
                }
                max_vq = vqset_empty(&cfg->vls) ? caps.max_vq : vqset_highest(&cfg->vls);
        }

        if (cfg->image && (cfg->image_size == 0 || cfg->image_offset > cfg->mem_bytes ||
                           cfg->image_size > cfg->mem_bytes - cfg->image_offset))
                return svemig_error_set(err, EINVAL,
                                        "a payload of %zu bytes at offset 0x%llx does not fit in %llu bytes "
                                        "of guest RAM; give the guest more memory",
                                        cfg->image_size, (unsigned long long)cfg->image_offset,
                                        (unsigned long long)cfg->mem_bytes);

        r = guest_create_empty_at(hv, cfg->n_vcpus, guest_config_ram_base(cfg), cfg->mem_bytes,
                                  cfg->log_dirty, &g, err);
        if (r < 0)
                return r;
        if (cfg->image)
                memcpy(g->mem + cfg->image_offset, cfg->image, cfg->image_size);
        guest_set_mmio_handler(g, cfg->on_mmio, cfg->mmio_userdata);
        guest_set_event_handler(g, cfg->on_event, cfg->event_userdata, cfg->linux_boot);
        for (unsigned i = 0; i < g->n_vcpus; i++) {
                r = setup_vcpu(g, g->vcpus[i], cfg, max_vq, err);
                if (r < 0)
                        return r;
        }
        if (cfg->on_devices && (r = cfg->on_devices(cfg->event_userdata, g, err)) < 0)
                return r;
        *out = g;
        g = NULL;
        return 0;
}

/* Sleeps so that a batch that took 'busy' ns runs at the throttle's share of the time. */
static void throttle_sleep(const struct guest *g, uint64_t busy)
{
        unsigned pct = atomic_load(&g->throttle);
        uint64_t idle;

        if (pct >= 100 || pct == 0)
                return;
        idle = busy * (100 - pct) / pct;
        /*
         * In slices, so that a pause is not held up: on kvm a batch lasts
         * until the guest's next exit, and the idle time after a long one
         * may be seconds.
         */
        while (idle > 0 && !atomic_load(&g->stop)) {
                uint64_t slice = MIN(idle, THROTTLE_SLICE_NS);

                nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = (long)slice}, NULL);
                idle -= slice;
        }
}

/* Whether the vcpu's MMIO handler lets it go on after this exit; a read gets the handler's value. */
static bool mmio_continue(struct guest *g, unsigned index, struct hv_exit *exit)
{
        bool go_on;

        if (!g->on_mmio)
                return true;
        go_on = g->on_mmio(g->mmio_userdata, index, exit->mmio.addr, exit->mmio.data, exit->mmio.len,
                           exit->mmio.is_write);
        if (!exit->mmio.is_write)
                (void)hv_vcpu_mmio_reply(g->vcpus[index], exit->mmio.data, MIN(exit->mmio.len, 8u));
        return go_on;
}

/* PSCI SYSTEM_OFF or RESET: the handler hears of it, and the whole guest stops. */
static void system_event(struct guest *g, unsigned index, uint32_t type)
{
        atomic_store(&g->system_event, type);
        atomic_store(&g->stop, true);
        for (unsigned i = 0; i < g->n_vcpus; i++)
                if (i != index)
                        hv_vcpu_kick(g->vcpus[i]);
        if (g->on_event)
                g->on_event(g->event_userdata, index, type);
}

/*
 * KVM finishes an MMIO access (a read's register, the pc past the
 * instruction) only when the vcpu next enters KVM_RUN, and its registers
 * say nothing of the pending part. Entering once with a kick pending (KVM's
 * immediate_exit) completes it and runs no guest instruction, so that a
 * capture taken now is the whole truth.
 */
static int complete_mmio(struct hv_vcpu *vcpu)
{
        struct hv_exit exit;
        int r;

        hv_vcpu_kick(vcpu);
        r = hv_vcpu_run(vcpu, 1, &exit);
        if (r == 0 && exit.reason != HV_EXIT_INTR)
                return -EIO;
        return r;
}

static bool powered_off(struct hv_vcpu *vcpu)
{
        uint32_t mp_state;

        return hv_vcpu_get_mp_state(vcpu, &mp_state) == 0 && mp_state == HV_MP_STATE_STOPPED;
}

static void wait_gate(struct guest *g)
{
        pthread_mutex_lock(&g->gate_lock);
        while (!g->gate_open)
                pthread_cond_wait(&g->gate, &g->gate_lock);
        pthread_mutex_unlock(&g->gate_lock);
}

static void open_gate(struct guest *g)
{
        pthread_mutex_lock(&g->gate_lock);
        g->gate_open = true;
        pthread_cond_broadcast(&g->gate);
        pthread_mutex_unlock(&g->gate_lock);
}

static void *vcpu_thread_main(void *arg)
{
        struct vcpu_thread *t = arg;
        struct guest *g = t->g;
        struct hv_vcpu *vcpu = g->vcpus[t->index];
        uint64_t left = t->budget;
        bool mmio_pending = false;

        wait_gate(g);
        /*
         * Sent away from the gate (the parked guest paused or destroyed): its
         * vcpu is not touched. A powered-off vcpu: KVM would put it to sleep
         * until PSCI CPU_ON, which nothing here sends.
         */
        if (atomic_load(&g->stop) || (!g->linux_boot && powered_off(vcpu))) {
                atomic_fetch_sub(&g->active, 1);
                return NULL;
        }
        while (left > 0 && !atomic_load(&g->stop) && !atomic_load(&g->interrupted)) {
                uint64_t start = now_ns(CLOCK_MONOTONIC);
                struct hv_exit exit;

                t->r = hv_vcpu_run(vcpu, MIN(left, (uint64_t)GUEST_RUN_BATCH), &exit);
                mmio_pending = t->r == 0 && exit.reason == HV_EXIT_MMIO;
                if (t->r < 0)
                        break;
                atomic_fetch_add(&g->steps[t->index], exit.steps);
                if (t->budget != UINT64_MAX)
                        left -= MIN(left, exit.steps);
                /* A powered-off vcpu, or a guest that asked to stop, runs no further. */
                if (exit.reason == HV_EXIT_SYSTEM_EVENT && g->linux_boot)
                        system_event(g, t->index, exit.system_event);
                if (exit.reason == HV_EXIT_SYSTEM_EVENT || (exit.reason == HV_EXIT_STEPS && exit.steps == 0))
                        break;
                if (exit.reason == HV_EXIT_MMIO && !mmio_continue(g, t->index, &exit))
                        break;
                throttle_sleep(g, now_ns(CLOCK_MONOTONIC) - start);
        }
        if (mmio_pending)
                t->r = complete_mmio(vcpu);
        atomic_fetch_sub(&g->active, 1);
        return NULL;
}

/* Starts a thread per vcpu with the given budget; gated ones park until open_gate(). */
static int start_threads(struct guest *g, uint64_t budget, bool gated, struct svemig_error *err)
{
        int r;

        if (g->running || g->parked)
                return svemig_error_set(err, EBUSY, "the guest is already running");
        g->gate_open = !gated;
        atomic_store(&g->stop, false);
        atomic_store(&g->system_event, 0);
        atomic_store(&g->active, g->n_vcpus);
        for (unsigned i = 0; i < g->n_vcpus; i++) {
                g->jobs[i] = (struct vcpu_thread){.g = g, .index = i, .budget = budget};
                r = -pthread_create(&g->threads[i], NULL, vcpu_thread_main, &g->jobs[i]);
                if (r < 0) {
                        atomic_store(&g->stop, true);
                        open_gate(g);
                        for (unsigned j = 0; j < i; j++) {
                                hv_vcpu_kick(g->vcpus[j]);
                                pthread_join(g->threads[j], NULL);
                        }
                        return svemig_error_set(err, r, "cannot start the thread of vcpu %u: %s", i,
                                                strerror(-r));
                }
        }
        if (gated)
                g->parked = true;
        else
                g->running = true;
        return 0;
}

/* Waits for every vcpu thread (kicking them first when stopping) and returns the first failure. */
static int join_threads(struct guest *g, bool stop, struct svemig_error *err)
{
        int r = 0;

        if (!g->running && !g->parked)
                return 0;
        if (g->parked) {
                /* Never released: the threads leave at the gate without running their vcpu. */
                stop = true;
                atomic_store(&g->stop, true);
                open_gate(g);
                g->parked = false;
        }
        if (stop) {
                atomic_store(&g->stop, true);
                for (unsigned i = 0; i < g->n_vcpus; i++)
                        hv_vcpu_kick(g->vcpus[i]);
        }
        for (unsigned i = 0; i < g->n_vcpus; i++) {
                pthread_join(g->threads[i], NULL);
                if (r == 0 && g->jobs[i].r < 0)
                        r = svemig_error_set(err, g->jobs[i].r, "vcpu %u: KVM_RUN failed: %s", i,
                                             strerror(-g->jobs[i].r));
        }
        g->running = false;
        return r;
}

int guest_run(struct guest *g, uint64_t steps, struct svemig_error *err)
{
        int r;

        if (steps == 0)
                return 0;
        r = start_threads(g, steps, false, err);
        if (r < 0)
                return r;
        r = join_threads(g, false, err);
        if (r == 0 && atomic_load(&g->interrupted))
                return svemig_error_set(err, EINTR, "interrupted");
        return r;
}

void guest_interrupt(struct guest *g)
{
        atomic_store(&g->interrupted, true);
        /* A vcpu between two batches sees the flag; one inside a batch leaves it after its step. */
        for (unsigned i = 0; i < g->n_vcpus; i++)
                hv_vcpu_kick(g->vcpus[i]);
}

void guest_interrupt_clear(struct guest *g)
{
        atomic_store(&g->interrupted, false);
}

int guest_prepare_start(struct guest *g, struct svemig_error *err)
{
        return start_threads(g, UINT64_MAX, true, err);
}

/* vcpu 0 read while nothing runs, kept: what describes the guest never changes once it is set up. */
static int describe_still(struct guest *g, struct svemig_error *err)
{
        struct vcpu_state *st;
        int r;

        if (g->desc)
                return 0;
        st = calloc(1, sizeof(*st));
        if (!st)
                return svemig_error_set(err, ENOMEM, "out of memory");
        r = vcpu_capture(g->vcpus[0], st, err);
        if (r < 0) {
                free(st);
                return r;
        }
        g->desc = st;
        return 0;
}

int guest_describe(struct guest *g, struct vcpu_state *out, struct svemig_error *err)
{
        bool was_running = g->running;
        int r, r2;

        if (!g->desc && was_running) {
                r = guest_pause(g, err);
                if (r < 0)
                        return r;
        }
        r = describe_still(g, err);
        if (!g->parked && was_running && !g->running) {
                r2 = guest_start(g, r < 0 ? NULL : err);
                if (r == 0)
                        r = r2;
        }
        if (r == 0 && out && vcpu_state_copy(out, g->desc) < 0)
                r = svemig_error_set(err, ENOMEM, "out of memory");
        return r;
}

int guest_start(struct guest *g, struct svemig_error *err)
{
        if (g->parked) {
                g->parked = false;
                g->running = true;
                open_gate(g);
                return 0;
        }
        /* Described before it first runs: a migration then need not stop it for that. */
        if (!g->desc && g->n_vcpus)
                (void)describe_still(g, NULL);
        return start_threads(g, UINT64_MAX, false, err);
}

int guest_pause(struct guest *g, struct svemig_error *err)
{
        return join_threads(g, true, err);
}

bool guest_running(const struct guest *g)
{
        return g->running;
}

unsigned guest_vcpus_active(const struct guest *g)
{
        return g->running ? atomic_load(&g->active) : 0;
}

void guest_set_throttle(struct guest *g, unsigned percent)
{
        atomic_store(&g->throttle, percent == 0 ? 1 : MIN(percent, 100u));
}

void guest_states_free(struct vcpu_state *states, unsigned n)
{
        for (unsigned i = 0; states && i < n; i++)
                vcpu_state_done(&states[i]);
        free(states);
}

int guest_capture(struct guest *g, struct vcpu_state **out, struct svemig_error *err)
{
        struct vcpu_state *states = calloc(g->n_vcpus, sizeof(*states));
        int r;

        if (g->running) {
                free(states);
                return svemig_error_set(err, EBUSY,
                                        "the guest is running; pause it before capturing its state");
        }
        if (!states)
                return svemig_error_set(err, ENOMEM, "out of memory capturing %u vcpus", g->n_vcpus);
        for (unsigned i = 0; i < g->n_vcpus; i++) {
                r = vcpu_capture(g->vcpus[i], &states[i], err);
                if (r < 0) {
                        guest_states_free(states, g->n_vcpus);
                        return r;
                }
        }
        *out = states;
        return 0;
}

int guest_restore_vcpus(struct guest *g, const struct vcpu_state *states, struct svemig_error *err)
{
        for (unsigned i = 0; i < g->n_vcpus; i++) {
                int r = vcpu_restore(g->vcpus[i], &states[i], err);

                if (r < 0)
                        return r;
        }
        return 0;
}

int guest_compare(struct guest *a, struct guest *b, bool *equal, char *diff, size_t len,
                  struct svemig_error *err)
{
        struct vcpu_state *sa = NULL, *sb = NULL;
        int r;

        *equal = false;
        if (a->n_vcpus != b->n_vcpus || a->mem_size != b->mem_size || a->ram_base != b->ram_base) {
                snprintf(diff, len,
                         "%u vcpus and %llu bytes at 0x%llx against %u vcpus and %llu bytes at 0x%llx",
                         a->n_vcpus, (unsigned long long)a->mem_size, (unsigned long long)a->ram_base,
                         b->n_vcpus, (unsigned long long)b->mem_size, (unsigned long long)b->ram_base);
                return 0;
        }
        r = guest_capture(a, &sa, err);
        if (r < 0)
                return r;
        r = guest_capture(b, &sb, err);
        if (r < 0) {
                guest_states_free(sa, a->n_vcpus);
                return r;
        }

        *equal = true;
        for (unsigned i = 0; i < a->n_vcpus && *equal; i++)
                *equal = vcpu_state_equal(&sa[i], &sb[i], diff, len);
        if (*equal && memcmp(a->mem, b->mem, a->mem_size) != 0) {
                uint64_t off = 0;

                while (a->mem[off] == b->mem[off])
                        off++;
                snprintf(diff, len, "guest memory differs first at 0x%llx",
                         (unsigned long long)(a->ram_base + off));
                *equal = false;
        }
        guest_states_free(sa, a->n_vcpus);
        guest_states_free(sb, b->n_vcpus);
        return 0;
}
