/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Memory slots, the dirty log, and KVM_RUN's entry rules and kick: what
 * every backend shares, whatever guest code it runs.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#include "conformance.h"

#define RAM_SIZE    (64u * 1024)
#define RAM_PAGES   (RAM_SIZE / HV_PAGE_SIZE)
#define ENTRY       0x800u
#define PSTATE_EL1H 0x3c5ull /* EL1h, DAIF masked */
#define INSN_B_SELF 0x14000000u

struct ram {
        void *p;
        size_t size;
};

static void ram_free(struct ram *r)
{
        if (r->p && r->p != MAP_FAILED)
                munmap(r->p, r->size);
}

static bool ram_alloc(struct conf *c, struct ram *r, size_t size)
{
        r->size = size;
        r->p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r->p == MAP_FAILED) {
                conf_fail(c, __FILE__, __LINE__, "mmap of %zu bytes failed", size);
                return false;
        }
        return true;
}

static void dirty_log_fresh(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        _cleanup_(ram_free) struct ram ram = {0};
        uint64_t bitmap[DIV_ROUND_UP(RAM_PAGES, 64)];
        struct svemig_error err = {0};

        if (conf_vcpu(c, &vm, &vcpu, false, 0, false) < 0 || !ram_alloc(c, &ram, RAM_SIZE))
                return;
        CHECK_RC(c, hv_vm_set_memslot(vm, 0, 0, RAM_SIZE, ram.p, HV_MEM_LOG_DIRTY, &err), 0);
        memset(bitmap, 0xff, sizeof(bitmap));
        CHECK_RC(c, hv_vm_get_dirty_log(vm, 0, bitmap, &err), 0);
        for (size_t i = 0; i < ELEMENTSOF(bitmap); i++)
                CHECK(c, bitmap[i] == 0, "a slot nothing ran in has dirty pages: word %zu is 0x%llx", i,
                      (unsigned long long)bitmap[i]);
}

/* KVM_GET_DIRTY_LOG is ENOENT for a slot without logging, a missing slot and a deleted one. */
static void dirty_log_enoent(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        _cleanup_(ram_free) struct ram ram = {0};
        uint64_t bitmap[DIV_ROUND_UP(RAM_PAGES, 64)];
        struct svemig_error err = {0};

        if (conf_vcpu(c, &vm, &vcpu, false, 0, false) < 0 || !ram_alloc(c, &ram, 2 * RAM_SIZE))
                return;
        CHECK_RC(c, hv_vm_set_memslot(vm, 0, 0, RAM_SIZE, ram.p, 0, &err), 0);
        CHECK_RC(c, hv_vm_get_dirty_log(vm, 0, bitmap, &err), -ENOENT);
        CHECK_RC(c, hv_vm_get_dirty_log(vm, 5, bitmap, &err), -ENOENT);
        CHECK_RC(c,
                 hv_vm_set_memslot(vm, 1, RAM_SIZE, RAM_SIZE, (char *)ram.p + RAM_SIZE, HV_MEM_LOG_DIRTY,
                                   &err),
                 0);
        CHECK_RC(c, hv_vm_get_dirty_log(vm, 1, bitmap, &err), 0);
        CHECK_RC(c, hv_vm_set_memslot(vm, 1, RAM_SIZE, 0, NULL, 0, &err), 0);
        CHECK_RC(c, hv_vm_get_dirty_log(vm, 1, bitmap, &err), -ENOENT);
}

static void memslot_overlap(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        _cleanup_(ram_free) struct ram ram = {0};
        struct svemig_error err = {0};

        if (conf_vcpu(c, &vm, &vcpu, false, 0, false) < 0 || !ram_alloc(c, &ram, 2 * RAM_SIZE))
                return;
        CHECK_RC(c, hv_vm_set_memslot(vm, 0, 0, RAM_SIZE, ram.p, 0, &err), 0);
        CHECK_RC(c, hv_vm_set_memslot(vm, 1, RAM_SIZE / 2, RAM_SIZE, (char *)ram.p + RAM_SIZE, 0, &err),
                 -EEXIST);
        CHECK(c, err.msg[0] != 0, "a refused memory slot came without a reason");
        CHECK_RC(c, hv_vm_set_memslot(vm, 2, 0x801, RAM_SIZE, ram.p, 0, &err), -EINVAL);
}

/* A runnable vcpu spinning on "b ." at ENTRY: the sim ignores the code, KVM runs it. */
static int spin_vcpu(struct conf *c, struct hv_vm **vm, struct hv_vcpu **vcpu, struct ram *ram)
{
        struct svemig_error err = {0};
        uint64_t pc = ENTRY, pstate = PSTATE_EL1H;
        uint32_t features = c->caps.sve ? FEAT_SVE : FEAT_PSCI;
        int r;

        r = conf_vcpu(c, vm, vcpu, true, features, true);
        if (r < 0)
                return r;
        if (!ram_alloc(c, ram, RAM_SIZE))
                return -ENOMEM;
        ((uint32_t *)ram->p)[ENTRY / 4] = INSN_B_SELF;
        r = hv_vm_set_memslot(*vm, 0, 0, RAM_SIZE, ram->p, HV_MEM_LOG_DIRTY, &err);
        if (r == 0)
                r = hv_vcpu_set_reg(*vcpu, kvmreg_core_pc(), &pc);
        if (r == 0)
                r = hv_vcpu_set_reg(*vcpu, kvmreg_core_pstate(), &pstate);
        if (r < 0)
                conf_fail(c, __FILE__, __LINE__, "setting up a spinning vcpu: %s",
                          svemig_error_str(&err, r));
        return r;
}

/* A kick before KVM_RUN makes that run return at once (immediate_exit). */
static void kick_before_run(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        _cleanup_(ram_free) struct ram ram = {0};
        struct hv_exit exit;

        if (spin_vcpu(c, &vm, &vcpu, &ram) < 0)
                return;
        hv_vcpu_kick(vcpu);
        CHECK_RC(c, hv_vcpu_run(vcpu, UINT64_MAX, &exit), 0);
        CHECK(c, exit.reason == HV_EXIT_INTR, "run after a kick exited with reason %d, not INTR",
              exit.reason);
}

struct runner {
        struct hv_vcpu *vcpu;
        struct hv_exit exit;
        int r;
        atomic_bool done;
};

static void *run_thread(void *arg)
{
        struct runner *rn = arg;

        rn->r = hv_vcpu_run(rn->vcpu, UINT64_MAX, &rn->exit);
        atomic_store(&rn->done, true);
        return NULL;
}

/*
 * A kick from another thread ends a run that would never end by itself.
 * Whether the kick lands before or inside KVM_RUN, the answer is INTR; the
 * pause only makes "inside" the likely case.
 */
static void kick_running(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        _cleanup_(ram_free) struct ram ram = {0};
        struct runner rn = {0};
        struct timespec pause = {.tv_nsec = 20 * 1000 * 1000};
        pthread_t t;

        if (spin_vcpu(c, &vm, &vcpu, &ram) < 0)
                return;
        rn.vcpu = vcpu;
        CHECK(c, pthread_create(&t, NULL, run_thread, &rn) == 0, "pthread_create failed");
        nanosleep(&pause, NULL);
        hv_vcpu_kick(vcpu);
        pthread_join(t, NULL);
        CHECK_RC(c, rn.r, 0);
        CHECK(c, rn.exit.reason == HV_EXIT_INTR, "a kicked run exited with reason %d, not INTR",
              rn.exit.reason);
}

/*
 * A powered-off vcpu (mp_state STOPPED) does not run: KVM_RUN sleeps until
 * a PSCI CPU_ON or a kick, and a kick makes it return INTR having run nothing.
 */
static void stopped_vcpu_sleeps(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        _cleanup_(ram_free) struct ram ram = {0};
        struct runner rn = {0};
        struct timespec pause = {.tv_nsec = 50 * 1000 * 1000};
        uint64_t pc_before = 0, pc_after = 0;
        pthread_t t;

        if (spin_vcpu(c, &vm, &vcpu, &ram) < 0)
                return;
        CHECK_RC(c, hv_vcpu_set_mp_state(vcpu, HV_MP_STATE_STOPPED), 0);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_core_pc(), &pc_before), 0);
        rn.vcpu = vcpu;
        CHECK(c, pthread_create(&t, NULL, run_thread, &rn) == 0, "pthread_create failed");
        nanosleep(&pause, NULL);
        CHECK(c, !atomic_load(&rn.done), "KVM_RUN on a stopped vcpu returned without a kick (reason %d)",
              rn.exit.reason);
        hv_vcpu_kick(vcpu);
        pthread_join(t, NULL);
        CHECK_RC(c, rn.r, 0);
        CHECK(c, rn.exit.reason == HV_EXIT_INTR, "a kicked stopped vcpu exited with reason %d, not INTR",
              rn.exit.reason);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_core_pc(), &pc_after), 0);
        CHECK(c, pc_after == pc_before, "a stopped vcpu ran: pc moved from 0x%llx to 0x%llx",
              (unsigned long long)pc_before, (unsigned long long)pc_after);
}

const struct conf_case conf_cases_vm[] = {
        {"dirty-log-fresh-slot-clean", dirty_log_fresh},
        {"dirty-log-enoent", dirty_log_enoent},
        {"memslot-overlap-eexist", memslot_overlap},
        {"kick-before-run-intr", kick_before_run},
        {"kick-running-vcpu-intr", kick_running},
        {"stopped-vcpu-sleeps-until-kick", stopped_vcpu_sleeps},
};
const size_t conf_n_cases_vm = ELEMENTSOF(conf_cases_vm);
