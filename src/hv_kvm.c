/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kvm backend: the hv interface over the real arm64 KVM ioctls on
 * /dev/kvm. Every per-register call is one ioctl and returns the kernel's
 * errno untouched, so that what the conformance suite sees here is the
 * kernel's own behaviour, which the sim must match.
 *
 * It compiles everywhere (the arm64 uapi comes from kvm-arm64.h), but only an
 * aarch64 build can drive an arm64 KVM: elsewhere hv_kvm_available() is false
 * and opening the backend fails with a message pointing at the sim.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "hv-backend.h"
#include "kvm-arm64.h"
#include "macro.h"

/* hv.h mirrors these kernel values so that callers need no uapi header. */
_Static_assert(HV_FEAT_SVE == KVM_ARM_VCPU_SVE, "HV_FEAT_SVE is KVM_ARM_VCPU_SVE");
_Static_assert(HV_FEAT_PSCI_0_2 == KVM_ARM_VCPU_PSCI_0_2, "HV_FEAT_PSCI_0_2 is KVM_ARM_VCPU_PSCI_0_2");
_Static_assert(HV_FEAT_POWER_OFF == KVM_ARM_VCPU_POWER_OFF, "HV_FEAT_POWER_OFF is KVM_ARM_VCPU_POWER_OFF");
_Static_assert(HV_FEAT_PMU_V3 == KVM_ARM_VCPU_PMU_V3, "HV_FEAT_PMU_V3 is KVM_ARM_VCPU_PMU_V3");
_Static_assert(HV_MP_STATE_RUNNABLE == KVM_MP_STATE_RUNNABLE, "HV_MP_STATE_RUNNABLE is KVM's");
_Static_assert(HV_MP_STATE_STOPPED == KVM_MP_STATE_STOPPED, "HV_MP_STATE_STOPPED is KVM's");
_Static_assert(HV_MEM_LOG_DIRTY == KVM_MEM_LOG_DIRTY_PAGES, "HV_MEM_LOG_DIRTY is KVM_MEM_LOG_DIRTY_PAGES");
_Static_assert(HV_DEV_VGIC_V3 == KVM_DEV_TYPE_ARM_VGIC_V3, "HV_DEV_VGIC_V3 is KVM_DEV_TYPE_ARM_VGIC_V3");

#define KVM_DEFAULT_PATH "/dev/kvm"
#define KVM_MAX_SLOTS    32u

/*
 * hv_vcpu_kick() interrupts a thread inside KVM_RUN with this signal. Its
 * handler does nothing: the point is the -EINTR it makes KVM_RUN return.
 * A real-time signal, so that it collides with no signal an application uses
 * by convention.
 */
#define KVM_KICK_SIGNAL (SIGRTMIN + 4)

struct hvk_host {
        struct hv base;
        int fd;
        char path[256];
        size_t run_size; /* KVM_GET_VCPU_MMAP_SIZE */
        struct hv_caps caps;
};

struct hvk_slot {
        bool used;
        uint64_t size;
};

struct hvk_vm {
        struct hv_vm base;
        int fd;
        struct kvm_vcpu_init preferred; /* KVM_ARM_PREFERRED_TARGET, features cleared */
        struct hvk_slot slots[KVM_MAX_SLOTS];
};

struct hvk_vcpu {
        struct hv_vcpu base;
        int fd;
        struct kvm_run *run;
        size_t run_size;
        pthread_t thread; /* the thread inside KVM_RUN, valid while in_run */
        int in_run;       /* atomic */
        pthread_mutex_t kick_lock;
};

static struct hvk_host *to_host(struct hv *hv)
{
        return (struct hvk_host *)hv;
}

static struct hvk_vm *to_vm(struct hv_vm *vm)
{
        return (struct hvk_vm *)vm;
}

static struct hvk_vcpu *to_vcpu(struct hv_vcpu *vcpu)
{
        return (struct hvk_vcpu *)vcpu;
}

/* ioctl() as 0 or a negative errno. */
static int xioctl(int fd, unsigned long req, void *arg)
{
        return ioctl(fd, req, arg) < 0 ? negative_errno() : 0;
}

static int check_extension(int fd, long cap)
{
        int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

        return r < 0 ? 0 : r;
}

static bool built_for_arm64(void)
{
#if defined(__aarch64__)
        return true;
#else
        return false;
#endif
}

static const char *build_arch(void)
{
#if defined(__x86_64__)
        return "x86_64";
#elif defined(__i386__)
        return "i386";
#elif defined(__aarch64__)
        return "aarch64";
#else
        return "a non-arm64 architecture";
#endif
}

bool hv_kvm_available(const char *path)
{
        _cleanup_close_ int fd = -1;

        if (!built_for_arm64())
                return false;
        fd = open(path ? path : KVM_DEFAULT_PATH, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return false;
        return ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
}

/*
 * The VLS a new SVE vcpu offers, read from a throwaway vcpu initialised with
 * SVE and not finalized (the only time KVM lets SVE_VLS be read).
 */
static int probe_vls(int kvm_fd, vqset_t *vls, struct svemig_error *err)
{
        _cleanup_close_ int vm_fd = -1, vcpu_fd = -1;
        struct kvm_vcpu_init init = {0};
        struct kvm_one_reg reg = {.id = KVM_REG_ARM64_SVE_VLS, .addr = (uintptr_t)vls->w};

        vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
        if (vm_fd < 0)
                return svemig_error_set(err, errno, "KVM_CREATE_VM for the SVE probe failed: %m");
        if (ioctl(vm_fd, KVM_ARM_PREFERRED_TARGET, &init) < 0)
                return svemig_error_set(err, errno, "KVM_ARM_PREFERRED_TARGET failed: %m");
        vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
        if (vcpu_fd < 0)
                return svemig_error_set(err, errno, "KVM_CREATE_VCPU for the SVE probe failed: %m");
        init.features[0] |= 1u << KVM_ARM_VCPU_SVE;
        if (ioctl(vcpu_fd, KVM_ARM_VCPU_INIT, &init) < 0)
                return svemig_error_set(err, errno,
                                        "KVM_ARM_VCPU_INIT with SVE failed although "
                                        "KVM_CAP_ARM_SVE is set: %m");
        if (ioctl(vcpu_fd, KVM_GET_ONE_REG, &reg) < 0)
                return svemig_error_set(err, errno, "reading KVM_REG_ARM64_SVE_VLS failed: %m");
        return 0;
}

static int probe_caps(struct hvk_host *h, struct svemig_error *err)
{
        struct hv_caps *c = &h->caps;
        struct utsname u;
        long n;
        int r;

        snprintf(c->backend, sizeof(c->backend), "kvm");
        if (uname(&u) == 0)
                snprintf(c->kernel, sizeof(c->kernel), "%s", u.release);
        if (gethostname(c->host_name, sizeof(c->host_name)) < 0 || !c->host_name[0])
                snprintf(c->host_name, sizeof(c->host_name), "kvm");
        c->host_name[sizeof(c->host_name) - 1] = 0;
        n = sysconf(_SC_NPROCESSORS_ONLN);
        c->n_cpus = n > 0 ? (unsigned)n : 1;
        c->ipa_bits = check_extension(h->fd, KVM_CAP_ARM_VM_IPA_SIZE);
        if (c->ipa_bits == 0)
                c->ipa_bits = 40; /* the fixed IPA size of kernels without the cap */
        c->max_vcpus = check_extension(h->fd, KVM_CAP_MAX_VCPUS);
        c->sve = check_extension(h->fd, KVM_CAP_ARM_SVE) > 0;
        vqset_clear(&c->vls);
        if (c->sve) {
                r = probe_vls(h->fd, &c->vls, err);
                if (r < 0)
                        return r;
        }
        c->max_vq = vqset_highest(&c->vls);
        return 0;
}

static int hvk_open(const struct hv_config *cfg, struct hv **out, struct svemig_error *err)
{
        const char *path = cfg->kvm_path ? cfg->kvm_path : KVM_DEFAULT_PATH;
        _cleanup_free_ struct hvk_host *h = NULL;
        _cleanup_close_ int fd = -1;
        int version, size, r;

        if (!built_for_arm64())
                return svemig_error_set(err, ENODEV,
                                        "%s is not an arm64 KVM: this svemig was built for %s and its kvm "
                                        "backend drives arm64 KVM only; use backend=sim",
                                        path, build_arch());

        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return svemig_error_set(err, errno,
                                        "cannot open %s: %m; check that KVM is enabled on this host and "
                                        "that you may use it, or use backend=sim",
                                        path);
        version = ioctl(fd, KVM_GET_API_VERSION, 0);
        if (version != KVM_API_VERSION)
                return svemig_error_set(err, ENODEV,
                                        "%s speaks KVM API %d, not %d: it is not a KVM this "
                                        "build can drive; use backend=sim",
                                        path, version, KVM_API_VERSION);
        size = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
        if (size < (int)sizeof(struct kvm_run))
                return svemig_error_set(err, size < 0 ? errno : EIO, "%s: KVM_GET_VCPU_MMAP_SIZE failed",
                                        path);

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->base.ops = &hv_kvm_ops;
        h->fd = fd;
        h->run_size = (size_t)size;
        snprintf(h->path, sizeof(h->path), "%s", path);
        r = probe_caps(h, err);
        if (r < 0)
                return svemig_error_prefix(err, "%s", path);

        fd = -1;
        *out = &h->base;
        h = NULL;
        return 0;
}

static void hvk_close(struct hv *hv)
{
        struct hvk_host *h = to_host(hv);

        close(h->fd);
        free(h);
}

static int hvk_get_caps(struct hv *hv, struct hv_caps *caps)
{
        *caps = to_host(hv)->caps;
        return 0;
}

/* ---- VMs and memory ---------------------------------------------------- */

static int hvk_vm_create(struct hv *hv, struct hv_vm **out, struct svemig_error *err)
{
        struct hvk_host *h = to_host(hv);
        _cleanup_free_ struct hvk_vm *vm = NULL;
        _cleanup_close_ int fd = -1;

        fd = ioctl(h->fd, KVM_CREATE_VM, 0);
        if (fd < 0)
                return svemig_error_set(err, errno, "%s: KVM_CREATE_VM failed: %m", h->path);

        vm = calloc(1, sizeof(*vm));
        if (!vm)
                return -ENOMEM;
        if (ioctl(fd, KVM_ARM_PREFERRED_TARGET, &vm->preferred) < 0)
                return svemig_error_set(err, errno, "%s: KVM_ARM_PREFERRED_TARGET failed: %m", h->path);
        memset(vm->preferred.features, 0, sizeof(vm->preferred.features));
        vm->base.hv = hv;
        vm->fd = fd;
        fd = -1;
        *out = &vm->base;
        vm = NULL;
        return 0;
}

static void hvk_vm_destroy(struct hv_vm *hvm)
{
        struct hvk_vm *vm = to_vm(hvm);

        close(vm->fd);
        free(vm);
}

static int hvk_set_memslot(struct hv_vm *hvm, unsigned slot, uint64_t gpa, uint64_t size, void *hva,
                           unsigned flags, struct svemig_error *err)
{
        struct hvk_vm *vm = to_vm(hvm);
        struct kvm_userspace_memory_region region = {
                .slot = slot,
                .flags = (flags & HV_MEM_LOG_DIRTY) ? KVM_MEM_LOG_DIRTY_PAGES : 0,
                .guest_phys_addr = gpa,
                .memory_size = size,
                .userspace_addr = (uintptr_t)hva,
        };

        if (slot >= KVM_MAX_SLOTS)
                return svemig_error_set(err, EINVAL, "memory slot %u: svemig's kvm backend has slots 0..%u",
                                        slot, KVM_MAX_SLOTS - 1);
        if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
                return svemig_error_set(err, errno,
                                        "KVM_SET_USER_MEMORY_REGION slot %u [0x%llx, +0x%llx) failed: %m",
                                        slot, (unsigned long long)gpa, (unsigned long long)size);
        vm->slots[slot].used = size != 0;
        vm->slots[slot].size = size;
        return 0;
}

static int hvk_get_writable_masks(struct hv_vm *hvm, uint64_t *masks, struct svemig_error *err)
{
        struct hvk_vm *vm = to_vm(hvm);
        struct reg_mask_range range = {.addr = (uintptr_t)masks, .range = KVM_ARM_FEATURE_ID_RANGE};
        int ranges = ioctl(vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES);

        _Static_assert(HV_ID_MASKS_N == KVM_ARM_FEATURE_ID_RANGE_SIZE,
                       "HV_ID_MASKS_N is the kernel's range");
        if (ranges <= 0 || !(ranges & (1 << KVM_ARM_FEATURE_ID_RANGE)))
                return svemig_error_set(err, EOPNOTSUPP,
                                        "this kernel's KVM has no writable ID register masks (Linux 6.7+)");
        if (ioctl(vm->fd, KVM_ARM_GET_REG_WRITABLE_MASKS, &range) < 0)
                return svemig_error_set(err, errno, "KVM_ARM_GET_REG_WRITABLE_MASKS failed: %m");
        return 0;
}

static int hvk_irq_line(struct hv_vm *hvm, uint32_t irq, bool level)
{
        struct kvm_irq_level line = {.irq = irq, .level = level};

        return ioctl(to_vm(hvm)->fd, KVM_IRQ_LINE, &line) < 0 ? -errno : 0;
}

struct hvk_device {
        struct hv_device base;
        int fd;
};

static int hvk_device_create(struct hv_vm *hvm, uint32_t type, struct hv_device **out,
                             struct svemig_error *err)
{
        struct kvm_create_device create = {.type = type};
        struct hvk_device *dev;

        if (ioctl(to_vm(hvm)->fd, KVM_CREATE_DEVICE, &create) < 0)
                return svemig_error_set(err, errno, "KVM_CREATE_DEVICE of type %u failed: %m", type);
        dev = calloc(1, sizeof(*dev));
        if (!dev) {
                close(create.fd);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        dev->base.vm = hvm;
        dev->fd = create.fd;
        *out = &dev->base;
        return 0;
}

static void hvk_device_destroy(struct hv_device *hdev)
{
        struct hvk_device *dev = (struct hvk_device *)hdev;

        close(dev->fd);
        free(dev);
}

/* KVM_{HAS,GET,SET}_DEVICE_ATTR on a device's or a vcpu's fd. */
static int hvk_attr(int fd, enum hv_attr_op op, uint32_t group, uint64_t attr, void *buf)
{
        static const unsigned long ioctls[] = {
                [HV_ATTR_HAS] = KVM_HAS_DEVICE_ATTR,
                [HV_ATTR_GET] = KVM_GET_DEVICE_ATTR,
                [HV_ATTR_SET] = KVM_SET_DEVICE_ATTR,
        };
        struct kvm_device_attr a = {.group = group, .attr = attr, .addr = (uintptr_t)buf};

        return ioctl(fd, ioctls[op], &a) < 0 ? -errno : 0;
}

static int hvk_device_attr(struct hv_device *hdev, enum hv_attr_op op, uint32_t group, uint64_t attr,
                           void *buf)
{
        return hvk_attr(((struct hvk_device *)hdev)->fd, op, group, attr, buf);
}

static int hvk_vcpu_attr(struct hv_vcpu *hvc, enum hv_attr_op op, uint32_t group, uint64_t attr, void *buf)
{
        return hvk_attr(to_vcpu(hvc)->fd, op, group, attr, buf);
}

static int hvk_get_dirty_log(struct hv_vm *hvm, unsigned slot, uint64_t *bitmap, struct svemig_error *err)
{
        struct hvk_vm *vm = to_vm(hvm);
        struct kvm_dirty_log log = {.slot = slot, .dirty_bitmap = bitmap};

        if (slot >= KVM_MAX_SLOTS || !vm->slots[slot].used)
                return svemig_error_set(err, ENOENT, "memory slot %u does not exist", slot);
        if (ioctl(vm->fd, KVM_GET_DIRTY_LOG, &log) < 0) {
                if (errno == ENOENT)
                        return svemig_error_set(err, ENOENT,
                                                "memory slot %u does not log dirty pages; create it with "
                                                "HV_MEM_LOG_DIRTY",
                                                slot);
                return svemig_error_set(err, errno, "KVM_GET_DIRTY_LOG of slot %u failed: %m", slot);
        }
        return 0;
}

/* ---- vcpus ------------------------------------------------------------- */

static void kick_handler(int sig)
{
}

static int kick_handler_result;

static void kick_handler_init(void)
{
        /* No SA_RESTART: the signal is there to make KVM_RUN fail with EINTR. */
        struct sigaction sa = {.sa_handler = kick_handler};

        sigemptyset(&sa.sa_mask);
        kick_handler_result = sigaction(KVM_KICK_SIGNAL, &sa, NULL) < 0 ? negative_errno() : 0;
}

static int install_kick_handler(void)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        pthread_once(&once, kick_handler_init);
        return kick_handler_result;
}

static int hvk_vcpu_create(struct hv_vm *hvm, unsigned index, struct hv_vcpu **out, struct svemig_error *err)
{
        struct hvk_vm *vm = to_vm(hvm);
        struct hvk_host *h = to_host(hvm->hv);
        _cleanup_free_ struct hvk_vcpu *v = NULL;
        _cleanup_close_ int fd = -1;
        void *run;
        int r;

        r = install_kick_handler();
        if (r < 0)
                return svemig_error_set(err, r, "cannot install the vcpu kick signal handler: %s",
                                        strerror(-r));
        fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)index);
        if (fd < 0)
                return svemig_error_set(err, errno, "KVM_CREATE_VCPU %u failed: %m%s", index,
                                        errno == EINVAL ? " (index beyond the host's vcpu limit?)" : "");
        run = mmap(NULL, h->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (run == MAP_FAILED)
                return svemig_error_set(err, errno, "mapping vcpu %u's kvm_run failed: %m", index);

        v = calloc(1, sizeof(*v));
        if (!v) {
                munmap(run, h->run_size);
                return -ENOMEM;
        }
        v->base.vm = hvm;
        v->base.index = index;
        v->fd = fd;
        v->run = run;
        v->run_size = h->run_size;
        pthread_mutex_init(&v->kick_lock, NULL);
        fd = -1;
        *out = &v->base;
        v = NULL;
        return 0;
}

static void hvk_vcpu_destroy(struct hv_vcpu *hvcpu)
{
        struct hvk_vcpu *v = to_vcpu(hvcpu);

        munmap(v->run, v->run_size);
        close(v->fd);
        pthread_mutex_destroy(&v->kick_lock);
        free(v);
}

static int hvk_vcpu_init(struct hv_vcpu *hvcpu, uint32_t features)
{
        struct hvk_vcpu *v = to_vcpu(hvcpu);
        struct kvm_vcpu_init init = to_vm(hvcpu->vm)->preferred;

        init.features[0] = features;
        return xioctl(v->fd, KVM_ARM_VCPU_INIT, &init);
}

static int hvk_vcpu_finalize(struct hv_vcpu *hvcpu, int what)
{
        return xioctl(to_vcpu(hvcpu)->fd, KVM_ARM_VCPU_FINALIZE, &what);
}

static int hvk_get_reg(struct hv_vcpu *hvcpu, uint64_t id, void *buf)
{
        struct kvm_one_reg reg = {.id = id, .addr = (uintptr_t)buf};

        return xioctl(to_vcpu(hvcpu)->fd, KVM_GET_ONE_REG, &reg);
}

static int hvk_set_reg(struct hv_vcpu *hvcpu, uint64_t id, const void *buf)
{
        struct kvm_one_reg reg = {.id = id, .addr = (uintptr_t)buf};

        return xioctl(to_vcpu(hvcpu)->fd, KVM_SET_ONE_REG, &reg);
}

static int hvk_reg_list(struct hv_vcpu *hvcpu, uint64_t *ids, size_t *n)
{
        _cleanup_free_ struct kvm_reg_list *list = NULL;
        int r;

        if (*n > UINT32_MAX)
                *n = UINT32_MAX;
        list = malloc(sizeof(*list) + *n * sizeof(uint64_t));
        if (!list)
                return -ENOMEM;
        list->n = *n;
        r = xioctl(to_vcpu(hvcpu)->fd, KVM_GET_REG_LIST, list);
        if (r == 0 || r == -E2BIG)
                *n = list->n;
        if (r == 0)
                memcpy(ids, list->reg, list->n * sizeof(uint64_t));
        return r;
}

static int hvk_get_mp_state(struct hv_vcpu *hvcpu, uint32_t *state)
{
        struct kvm_mp_state mp;
        int r = xioctl(to_vcpu(hvcpu)->fd, KVM_GET_MP_STATE, &mp);

        if (r == 0)
                *state = mp.mp_state;
        return r;
}

static int hvk_set_mp_state(struct hv_vcpu *hvcpu, uint32_t state)
{
        struct kvm_mp_state mp = {.mp_state = state};

        return xioctl(to_vcpu(hvcpu)->fd, KVM_SET_MP_STATE, &mp);
}

static void translate_exit(struct kvm_run *run, struct hv_exit *exit)
{
        switch (run->exit_reason) {
        case KVM_EXIT_MMIO:
                exit->reason = HV_EXIT_MMIO;
                exit->mmio.addr = run->mmio.phys_addr;
                exit->mmio.len = run->mmio.len;
                exit->mmio.is_write = run->mmio.is_write;
                if (run->mmio.is_write)
                        memcpy(exit->mmio.data, run->mmio.data, sizeof(exit->mmio.data));
                else
                        /* Zeros unless the VMM's device answers (hv_vcpu_mmio_reply()). */
                        memset(run->mmio.data, 0, sizeof(run->mmio.data));
                break;
        case KVM_EXIT_SYSTEM_EVENT:
                exit->reason = HV_EXIT_SYSTEM_EVENT;
                exit->system_event = run->system_event.type;
                break;
        case KVM_EXIT_INTR:
                exit->reason = HV_EXIT_INTR;
                break;
        default:
                exit->reason = HV_EXIT_NONE;
        }
}

static int hvk_run(struct hv_vcpu *hvcpu, uint64_t max_steps, struct hv_exit *exit)
{
        struct hvk_vcpu *v = to_vcpu(hvcpu);
        int r;

        v->thread = pthread_self();
        __atomic_store_n(&v->in_run, 1, __ATOMIC_SEQ_CST);
        r = xioctl(v->fd, KVM_RUN, NULL);
        /* Under the lock, so that a kick never signals a thread that has moved on. */
        pthread_mutex_lock(&v->kick_lock);
        __atomic_store_n(&v->in_run, 0, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&v->kick_lock);

        if (r == -EINTR) {
                /* A kick (or another signal): the caller decides whether to run again. */
                __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                exit->reason = HV_EXIT_INTR;
                return 0;
        }
        if (r < 0)
                return r;
        translate_exit(v->run, exit);
        /*
         * Entry failures, internal errors and MMIO without a valid syndrome
         * mean the guest cannot go on; say so rather than spin.
         */
        return exit->reason == HV_EXIT_NONE ? -EIO : 0;
}

static int hvk_mmio_reply(struct hv_vcpu *hvcpu, const void *data, uint32_t len)
{
        struct kvm_run *run = to_vcpu(hvcpu)->run;

        if (run->exit_reason != KVM_EXIT_MMIO || run->mmio.is_write)
                return -EINVAL;
        memcpy(run->mmio.data, data, len);
        return 0;
}

static void hvk_kick(struct hv_vcpu *hvcpu)
{
        struct hvk_vcpu *v = to_vcpu(hvcpu);

        /*
         * immediate_exit covers a vcpu thread that is about to enter KVM_RUN
         * (or will call it next); the signal one already inside it. The
         * seq_cst store and load pair with hvk_run()'s, so at least one of
         * the two reaches the thread.
         */
        __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_lock(&v->kick_lock);
        if (__atomic_load_n(&v->in_run, __ATOMIC_SEQ_CST))
                pthread_kill(v->thread, KVM_KICK_SIGNAL);
        pthread_mutex_unlock(&v->kick_lock);
}

const struct hv_ops hv_kvm_ops = {
        .name = "kvm",
        .open = hvk_open,
        .close = hvk_close,
        .get_caps = hvk_get_caps,
        .vm_create = hvk_vm_create,
        .vm_destroy = hvk_vm_destroy,
        .set_memslot = hvk_set_memslot,
        .get_dirty_log = hvk_get_dirty_log,
        .get_writable_masks = hvk_get_writable_masks,
        .irq_line = hvk_irq_line,
        .device_create = hvk_device_create,
        .device_destroy = hvk_device_destroy,
        .device_attr = hvk_device_attr,
        .vcpu_attr = hvk_vcpu_attr,
        .vcpu_create = hvk_vcpu_create,
        .vcpu_destroy = hvk_vcpu_destroy,
        .vcpu_init = hvk_vcpu_init,
        .vcpu_finalize = hvk_vcpu_finalize,
        .get_reg = hvk_get_reg,
        .set_reg = hvk_set_reg,
        .reg_list = hvk_reg_list,
        .get_mp_state = hvk_get_mp_state,
        .set_mp_state = hvk_set_mp_state,
        .run = hvk_run,
        .kick = hvk_kick,
        .mmio_reply = hvk_mmio_reply,
};
