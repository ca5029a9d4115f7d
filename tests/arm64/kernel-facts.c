/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kernel-facts: measures, on the real arm64 KVM of a rig host, what the sim
 * must reproduce for that kernel and KVM mode (tests/arm64/capture-facts.sh
 * runs it and keeps its output in src/sim/kernel-facts/):
 *
 *   - KVM_GET_REG_LIST of an SVE and a non-SVE vcpu, with every register's
 *     value right after init (the format of src/sim/reglists/);
 *   - the writable masks of the feature ID registers
 *     (KVM_ARM_GET_REG_WRITABLE_MASKS, Linux 6.7+), or that there are none;
 *   - for every feature ID register and CCSIDR (DEMUX) of each vcpu, field by
 *     4-bit field, whether KVM accepts a write before the first KVM_RUN that
 *     lowers the field by one, raises it by one or sets it to 0, and the
 *     errno when it refuses; every accepted write is undone before the next;
 *   - for each of those fields, the set of all 16 values it accepts;
 *   - the probed registers the first KVM_RUN changed, and the writes that
 *     were accepted, tried again after that KVM_RUN.
 *
 * It talks to /dev/kvm with raw ioctls, not through svemig's kvm backend, so
 * that what it records is the kernel's word and nothing of ours.
 *
 *   kernel-facts OUT.txt [COMMENT...]
 * Each COMMENT becomes a "# " line of the header.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "kvm-arm64.h"

#define RAM_SIZE  0x10000ull
#define MMIO_ADDR 0x10000000ull

static FILE *out;

static const char *errno_name(int e)
{
        switch (e) {
        case 0:
                return "ok";
        case EINVAL:
                return "EINVAL";
        case EPERM:
                return "EPERM";
        case ENOENT:
                return "ENOENT";
        case EBUSY:
                return "EBUSY";
        case E2BIG:
                return "E2BIG";
        case EFAULT:
                return "EFAULT";
        case ENOEXEC:
                return "ENOEXEC";
        case EOPNOTSUPP:
                return "EOPNOTSUPP";
        default:
                return "EOTHER";
        }
}

static void die(const char *what)
{
        fprintf(stderr, "kernel-facts: %s: %s\n", what, strerror(errno));
        exit(1);
}

static unsigned reg_size(uint64_t id)
{
        return 1u << ((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT);
}

static uint64_t sysreg_id(unsigned op0, unsigned op1, unsigned crn, unsigned crm, unsigned op2)
{
        return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG |
               (uint64_t)op0 << KVM_REG_ARM64_SYSREG_OP0_SHIFT |
               (uint64_t)op1 << KVM_REG_ARM64_SYSREG_OP1_SHIFT |
               (uint64_t)crn << KVM_REG_ARM64_SYSREG_CRN_SHIFT |
               (uint64_t)crm << KVM_REG_ARM64_SYSREG_CRM_SHIFT |
               (uint64_t)op2 << KVM_REG_ARM64_SYSREG_OP2_SHIFT;
}

/* The feature ID space of KVM_ARM_GET_REG_WRITABLE_MASKS: op0 3, op1 0/1/3, CRn 0, CRm 0..7. */
static bool is_feature_id(uint64_t id)
{
        unsigned op1 = (id & KVM_REG_ARM64_SYSREG_OP1_MASK) >> KVM_REG_ARM64_SYSREG_OP1_SHIFT;

        if ((id & KVM_REG_ARM_COPROC_MASK) != KVM_REG_ARM64_SYSREG)
                return false;
        return ((id & KVM_REG_ARM64_SYSREG_OP0_MASK) >> KVM_REG_ARM64_SYSREG_OP0_SHIFT) == 3 &&
               (op1 == 0 || op1 == 1 || op1 == 3) &&
               ((id & KVM_REG_ARM64_SYSREG_CRN_MASK) >> KVM_REG_ARM64_SYSREG_CRN_SHIFT) == 0 &&
               ((id & KVM_REG_ARM64_SYSREG_CRM_MASK) >> KVM_REG_ARM64_SYSREG_CRM_SHIFT) <= 7;
}

static bool is_demux(uint64_t id)
{
        return (id & KVM_REG_ARM_COPROC_MASK) == KVM_REG_ARM_DEMUX;
}

struct vm {
        int fd, vcpu;
        bool sve;
        struct kvm_run *run;
        uint8_t *ram;
        uint64_t *ids;
        uint64_t *reset; /* the value of ids[i] right after init, 0 when unreadable */
        size_t n;
};

static int get_reg(const struct vm *vm, uint64_t id, uint64_t *val)
{
        struct kvm_one_reg r = {.id = id, .addr = (uintptr_t)val};

        *val = 0;
        return ioctl(vm->vcpu, KVM_GET_ONE_REG, &r) < 0 ? errno : 0;
}

static int set_reg(const struct vm *vm, uint64_t id, uint64_t val)
{
        struct kvm_one_reg r = {.id = id, .addr = (uintptr_t)&val};

        return ioctl(vm->vcpu, KVM_SET_ONE_REG, &r) < 0 ? errno : 0;
}

/* A VM with one vcpu: PSCI 0.2, plus SVE (then finalized) when sve. */
static void vm_open(int kvm, bool sve, struct vm *vm)
{
        struct kvm_vcpu_init init;
        struct kvm_reg_list probe = {.n = 0}, *list;
        int feature = KVM_ARM_VCPU_SVE;
        long run_size;

        memset(vm, 0, sizeof(*vm));
        vm->sve = sve;
        vm->fd = ioctl(kvm, KVM_CREATE_VM, 0);
        if (vm->fd < 0)
                die("KVM_CREATE_VM");
        vm->vcpu = ioctl(vm->fd, KVM_CREATE_VCPU, 0);
        if (vm->vcpu < 0)
                die("KVM_CREATE_VCPU");
        if (ioctl(vm->fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
                die("KVM_ARM_PREFERRED_TARGET");
        memset(init.features, 0, sizeof(init.features));
        init.features[0] = 1u << KVM_ARM_VCPU_PSCI_0_2 | (sve ? 1u << KVM_ARM_VCPU_SVE : 0);
        if (ioctl(vm->vcpu, KVM_ARM_VCPU_INIT, &init) < 0)
                die(sve ? "KVM_ARM_VCPU_INIT (SVE)" : "KVM_ARM_VCPU_INIT");
        if (sve && ioctl(vm->vcpu, KVM_ARM_VCPU_FINALIZE, &feature) < 0)
                die("KVM_ARM_VCPU_FINALIZE");

        if (ioctl(vm->vcpu, KVM_GET_REG_LIST, &probe) == 0 || errno != E2BIG)
                die("KVM_GET_REG_LIST (count)");
        list = calloc(1, sizeof(*list) + probe.n * sizeof(uint64_t));
        if (!list)
                die("calloc");
        list->n = probe.n;
        if (ioctl(vm->vcpu, KVM_GET_REG_LIST, list) < 0)
                die("KVM_GET_REG_LIST");
        vm->n = list->n;
        vm->ids = malloc(vm->n * sizeof(uint64_t));
        if (!vm->ids)
                die("malloc");
        memcpy(vm->ids, list->reg, vm->n * sizeof(uint64_t));
        free(list);
        vm->reset = calloc(vm->n, sizeof(uint64_t));
        if (!vm->reset)
                die("calloc");
        for (size_t i = 0; i < vm->n; i++)
                if (reg_size(vm->ids[i]) <= 8)
                        get_reg(vm, vm->ids[i], &vm->reset[i]);

        run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
        if (run_size < 0)
                die("KVM_GET_VCPU_MMAP_SIZE");
        vm->run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
        if (vm->run == MAP_FAILED)
                die("mmap kvm_run");
}

static void print_reglist(const struct vm *vm)
{
        const char *kind = vm->sve ? "sve" : "nosve";

        fprintf(out, "=== REGLIST %s n=%zu\n", kind, vm->n);
        for (size_t i = 0; i < vm->n; i++) {
                uint64_t id = vm->ids[i], val;
                unsigned size = reg_size(id);

                if (size <= 8 && get_reg(vm, id, &val) == 0)
                        fprintf(out, "%016llx %u %016llx\n", (unsigned long long)id, size,
                                (unsigned long long)val);
                else
                        fprintf(out, "%016llx %u\n", (unsigned long long)id, size);
        }
        fprintf(out, "=== END %s\n", kind);
}

/* KVM_ARM_GET_REG_WRITABLE_MASKS, a VM ioctl, where the kernel has it. */
static void print_writable_masks(const struct vm *vm)
{
        static uint64_t masks[KVM_ARM_FEATURE_ID_RANGE_SIZE];
        struct reg_mask_range range = {.addr = (uintptr_t)masks, .range = KVM_ARM_FEATURE_ID_RANGE};
        int ranges = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES);

        if (ranges <= 0 || !(ranges & (1 << KVM_ARM_FEATURE_ID_RANGE))) {
                fprintf(out, "=== WRITABLE-MASKS none (KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES is %d)\n",
                        ranges);
                return;
        }
        if (ioctl(vm->fd, KVM_ARM_GET_REG_WRITABLE_MASKS, &range) < 0)
                die("KVM_ARM_GET_REG_WRITABLE_MASKS");
        fprintf(out, "=== WRITABLE-MASKS n=%d\n", KVM_ARM_FEATURE_ID_RANGE_SIZE);
        for (unsigned idx = 0; idx < KVM_ARM_FEATURE_ID_RANGE_SIZE; idx++) {
                unsigned op1 = idx >> 6 == 2 ? 3 : idx >> 6;

                fprintf(out, "%016llx %016llx\n",
                        (unsigned long long)sysreg_id(3, op1, 0, (idx >> 3) & 7, idx & 7),
                        (unsigned long long)masks[idx]);
        }
        fprintf(out, "=== END writable-masks\n");
}

struct write_try {
        uint64_t id;
        unsigned shift;
        const char *kind;
        unsigned from, to;
};

static bool probed(uint64_t id)
{
        return is_feature_id(id) || is_demux(id);
}

/*
 * Tries one field write and undoes it when it was accepted. Returns the
 * errno of the write (0 = accepted); *note gets what else was seen.
 */
static int try_write(const struct vm *vm, const struct write_try *t, uint64_t orig, char *note, size_t room)
{
        uint64_t mask = 0xfull << t->shift, want = (orig & ~mask) | (uint64_t)t->to << t->shift, back;
        int r = set_reg(vm, t->id, want), rr;

        note[0] = 0;
        if (r != 0)
                return r;
        rr = get_reg(vm, t->id, &back);
        if (rr != 0)
                snprintf(note, room, " readback=%s", errno_name(rr));
        else if (back != want)
                snprintf(note, room, " readback=%016llx", (unsigned long long)back);
        rr = set_reg(vm, t->id, orig);
        if (rr != 0)
                snprintf(note + strlen(note), room - strlen(note), " undo=%s", errno_name(rr));
        return 0;
}

static void print_try(const struct write_try *t, int r, const char *note)
{
        fprintf(out, "%016llx %2u %-5s %x %x %s%s\n", (unsigned long long)t->id, t->shift, t->kind, t->from,
                t->to, errno_name(r), note);
}

/*
 * Every field of every feature ID register and CCSIDR: lowered by one,
 * raised by one, set to 0. Returns the accepted writes that changed a value.
 */
static struct write_try *probe_fields(const struct vm *vm, const char *section, size_t *n_accepted)
{
        struct write_try *acc = NULL;
        size_t n_acc = 0, n_lines = 0;

        fprintf(out, "=== PROBE %s\n", section);
        for (size_t i = 0; i < vm->n; i++) {
                uint64_t id = vm->ids[i], orig;

                if (!probed(id))
                        continue;
                if (get_reg(vm, id, &orig) != 0)
                        continue;
                for (unsigned shift = 0; shift < reg_size(id) * 8; shift += 4) {
                        unsigned old = (unsigned)(orig >> shift) & 0xf;
                        struct write_try tries[3];
                        unsigned nt = 0;

                        if (old > 0)
                                tries[nt++] = (struct write_try){id, shift, "lower", old, old - 1};
                        if (old < 15)
                                tries[nt++] = (struct write_try){id, shift, "raise", old, old + 1};
                        if (old > 1)
                                tries[nt++] = (struct write_try){id, shift, "zero", old, 0};
                        for (unsigned k = 0; k < nt; k++) {
                                char note[64];
                                int r = try_write(vm, &tries[k], orig, note, sizeof(note));

                                print_try(&tries[k], r, note);
                                n_lines++;
                                if (r == 0) {
                                        acc = realloc(acc, (n_acc + 1) * sizeof(*acc));
                                        if (!acc)
                                                die("realloc");
                                        acc[n_acc++] = tries[k];
                                }
                        }
                }
        }
        fprintf(out, "=== END probe %zu writes\n", n_lines);
        *n_accepted = n_acc;
        return acc;
}

/* One KVM_RUN: a guest that stores to MMIO_ADDR, so that KVM exits to us. */
static void run_once(struct vm *vm)
{
        static const uint32_t code[] = {
                0xd2a20001, /* movz x1, #0x1000, lsl #16 (MMIO_ADDR) */
                0xf9000020, /* str x0, [x1] */
                0x14000000, /* b . */
        };
        struct kvm_userspace_memory_region slot = {.slot = 0, .guest_phys_addr = 0, .memory_size = RAM_SIZE};

        vm->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (vm->ram == MAP_FAILED)
                die("mmap guest RAM");
        memcpy(vm->ram, code, sizeof(code));
        slot.userspace_addr = (uintptr_t)vm->ram;
        if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
                die("KVM_SET_USER_MEMORY_REGION");
        if (set_reg(vm, KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | KVM_REG_ARM_CORE_REG(regs.pc),
                    0) ||
            set_reg(vm,
                    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | KVM_REG_ARM_CORE_REG(regs.pstate),
                    0x3c5))
                die("setting pc and pstate");
        if (ioctl(vm->vcpu, KVM_RUN, 0) < 0)
                die("KVM_RUN");
        if (vm->run->exit_reason != KVM_EXIT_MMIO || vm->run->mmio.phys_addr != MMIO_ADDR) {
                fprintf(stderr, "kernel-facts: KVM_RUN exited with reason %u, not the MMIO store\n",
                        vm->run->exit_reason);
                exit(1);
        }
}

/* The probed registers whose value the first KVM_RUN changed (the reset values are the REGLIST's). */
static void changed_by_run(const struct vm *vm, const char *kind)
{
        size_t n = 0;

        fprintf(out, "=== CHANGED-BY-RUN %s\n", kind);
        for (size_t i = 0; i < vm->n; i++) {
                uint64_t before = vm->reset[i], after;

                if (!probed(vm->ids[i]) || get_reg(vm, vm->ids[i], &after) != 0 || after == before)
                        continue;
                fprintf(out, "%016llx %016llx %016llx\n", (unsigned long long)vm->ids[i],
                        (unsigned long long)before, (unsigned long long)after);
                n++;
        }
        fprintf(out, "=== END changed-by-run %zu\n", n);
}

/*
 * Every value of every field, one field at a time from the values after
 * init: the set a VMM may give it (bit v = value v accepted), and the errno
 * of the refusals.
 */
static void field_values(const struct vm *vm, const char *kind)
{
        size_t n = 0;

        fprintf(out, "=== FIELD-VALUES %s\n", kind);
        for (size_t i = 0; i < vm->n; i++) {
                uint64_t id = vm->ids[i], orig;

                if (!probed(id) || get_reg(vm, id, &orig) != 0)
                        continue;
                for (unsigned shift = 0; shift < reg_size(id) * 8; shift += 4) {
                        unsigned from = (unsigned)(orig >> shift) & 0xf, set = 1u << from;
                        int refused = 0;

                        for (unsigned v = 0; v < 16; v++) {
                                struct write_try t = {id, shift, "any", from, v};
                                char note[64];
                                int r;

                                if (v == from)
                                        continue;
                                r = try_write(vm, &t, orig, note, sizeof(note));
                                if (r == 0)
                                        set |= 1u << v;
                                else
                                        refused = refused == 0 || refused == r ? r : -1;
                        }
                        fprintf(out, "%016llx %2u %x %04x %s\n", (unsigned long long)id, shift, from, set,
                                refused < 0 ? "EMIXED"
                                : refused   ? errno_name(refused)
                                            : "-");
                        n++;
                }
        }
        fprintf(out, "=== END field-values %zu\n", n);
}

static void probe_vcpu(int kvm, bool sve)
{
        const char *kind = sve ? "sve" : "nosve";
        struct write_try *acc;
        char section[64];
        struct vm vm;
        size_t n_acc;

        vm_open(kvm, sve, &vm);
        print_reglist(&vm);
        snprintf(section, sizeof(section), "%s before-run", kind);
        acc = probe_fields(&vm, section, &n_acc);
        field_values(&vm, kind);

        run_once(&vm);
        changed_by_run(&vm, kind);
        fprintf(out, "=== PROBE %s after-run\n", kind);
        for (size_t i = 0; i < n_acc; i++) {
                uint64_t orig;
                char note[64];
                int r;

                if (get_reg(&vm, acc[i].id, &orig) != 0)
                        continue;
                r = try_write(&vm, &acc[i], orig, note, sizeof(note));
                print_try(&acc[i], r, note);
        }
        fprintf(out, "=== END probe %zu writes\n", n_acc);
        free(acc);
        if (sve)
                print_writable_masks(&vm);
        free(vm.ids);
        free(vm.reset);
        close(vm.vcpu);
        close(vm.fd);
}

int main(int argc, char **argv)
{
        struct utsname u;
        int kvm;

        if (argc < 2) {
                fprintf(stderr, "usage: kernel-facts OUT.txt [COMMENT...]\n");
                return 2;
        }
        kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (kvm < 0)
                die("/dev/kvm");
        out = fopen(argv[1], "w");
        if (!out)
                die(argv[1]);
        uname(&u);
        fprintf(out, "# Kernel facts of Linux %s (%s), measured by tests/arm64/kernel-facts.c.\n", u.release,
                u.version);
        for (int i = 2; i < argc; i++)
                fprintf(out, "# %s\n", argv[i]);
        fprintf(out,
                "# Two VMs of one vcpu: 'sve' = KVM_ARM_VCPU_INIT with PSCI_0_2|SVE, then FINALIZE(SVE);"
                " 'nosve' = PSCI_0_2 only.\n"
                "# REGLIST: register id, size in bytes, value right after init (registers of 8 bytes or"
                " less).\n"
                "# PROBE: register id, field shift, write (lower/raise by one, zero), field before,"
                " field written, the kernel's answer (ok or errno name); an accepted write is undone"
                " before the next.\n"
                "# CHANGED-BY-RUN: register id, value after init, value after the first KVM_RUN (a guest"
                " with no in-kernel GIC that stores to MMIO).\n"
                "# WRITABLE-MASKS: KVM_ARM_GET_REG_WRITABLE_MASKS of the feature ID space (sve VM).\n");
        probe_vcpu(kvm, true);
        probe_vcpu(kvm, false);
        if (fclose(out) != 0)
                die(argv[1]);
        return 0;
}
