/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A guest's generic timers and counter in and out of KVM (include/svemig/timer-state.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kvm-arm64.h"
#include "svemig/kvmreg.h"
#include "svemig/timer-state.h"

#define REG_VTIMER_CTL  kvmreg_sys(3, 3, 14, 3, 1) /* KVM_REG_ARM_TIMER_CTL */
#define REG_VTIMER_CVAL kvmreg_sys(3, 3, 14, 0, 2) /* KVM_REG_ARM_TIMER_CVAL (encoding swapped with CNT) */
#define REG_PTIMER_CTL  kvmreg_sys(3, 3, 14, 2, 1)
#define REG_PTIMER_CVAL kvmreg_sys(3, 3, 14, 2, 2)
#define SIM_FREQUENCY   62500000u /* hv_sim.c's counters, like QEMU's virt board */

void timer_state_done(struct timer_state *st)
{
        if (!st)
                return;
        free(st->vcpus);
        *st = (struct timer_state){0};
}

uint64_t timer_host_frequency(struct hv *hv)
{
        if (strcmp(hv_backend_name(hv), "sim") == 0)
                return SIM_FREQUENCY;
#if defined(__aarch64__)
        uint64_t f;

        /* Linux lets EL0 read CNTFRQ_EL0 (CNTKCTL_EL1.EL0PCTEN/EL0VCTEN). */
        __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(f));
        return f;
#else
        return 0;
#endif
}

static int get(struct hv_vcpu *vcpu, uint64_t id, const char *name, uint64_t *v, struct svemig_error *err)
{
        int r = hv_vcpu_get_reg(vcpu, id, v);

        if (r < 0)
                return svemig_error_set(err, -r, "vcpu %u: reading %s failed: %s", hv_vcpu_index(vcpu), name,
                                        strerror(-r));
        return 0;
}

static int put(struct hv_vcpu *vcpu, uint64_t id, const char *name, uint64_t v, struct svemig_error *err)
{
        int r = hv_vcpu_set_reg(vcpu, id, &v);

        if (r < 0)
                return svemig_error_set(err, -r, "vcpu %u: writing %s = 0x%llx failed: %s",
                                        hv_vcpu_index(vcpu), name, (unsigned long long)v, strerror(-r));
        return 0;
}

/* A timer PPI, where the kernel has the attribute (KVM with a vGIC); 0 otherwise. */
static uint32_t get_irq(struct hv_vcpu *vcpu, uint64_t attr)
{
        uint32_t irq = 0;

        if (hv_vcpu_has_attr(vcpu, KVM_ARM_VCPU_TIMER_CTRL, attr) < 0 ||
            hv_vcpu_get_attr(vcpu, KVM_ARM_VCPU_TIMER_CTRL, attr, &irq) < 0)
                return 0;
        return irq;
}

static int save_vcpu(struct hv_vcpu *vcpu, struct timer_vcpu_state *t, struct svemig_error *err)
{
        uint64_t v;
        int r;

        r = get(vcpu, REG_VTIMER_CTL, "TIMER_CTL", &t->vtimer_ctl, err);
        if (r >= 0)
                r = get(vcpu, REG_VTIMER_CVAL, "TIMER_CVAL", &t->vtimer_cval, err);
        if (r < 0)
                return r;
        /* 6.1 lists no physical timer: -ENOENT. */
        t->has_ptimer = hv_vcpu_get_reg(vcpu, REG_PTIMER_CTL, &v) == 0;
        if (t->has_ptimer) {
                t->ptimer_ctl = v;
                r = get(vcpu, REG_PTIMER_CVAL, "PTIMER_CVAL", &t->ptimer_cval, err);
                if (r < 0)
                        return r;
        }
        t->vtimer_irq = get_irq(vcpu, KVM_ARM_VCPU_TIMER_IRQ_VTIMER);
        t->ptimer_irq = get_irq(vcpu, KVM_ARM_VCPU_TIMER_IRQ_PTIMER);
        return 0;
}

int timer_state_save(struct hv_vcpu *const *vcpus, size_t n_vcpus, struct timer_state *out,
                     struct svemig_error *err)
{
        struct timer_state st = {0};
        int r;

        if (n_vcpus == 0 || n_vcpus > TIMER_STATE_VCPUS_MAX)
                return svemig_error_set(err, EINVAL, "%zu vcpus: 1..%u", n_vcpus, TIMER_STATE_VCPUS_MAX);
        st.vcpus = calloc(n_vcpus, sizeof(*st.vcpus));
        if (!st.vcpus)
                return svemig_error_set(err, ENOMEM, "out of memory");
        st.n_vcpus = n_vcpus;
        st.frequency_hz = timer_host_frequency(hv_vm_host(hv_vcpu_vm(vcpus[0])));
        r = get(vcpus[0], KVMREG_TIMER_CNT, "TIMER_CNT", &st.counter, err);
        for (size_t i = 0; r >= 0 && i < n_vcpus; i++)
                r = save_vcpu(vcpus[i], &st.vcpus[i], err);
        if (r < 0) {
                timer_state_done(&st);
                return r;
        }
        *out = st;
        return 0;
}

static int put_irq(struct hv_vcpu *vcpu, uint64_t attr, uint32_t irq, const char *which,
                   struct svemig_error *err)
{
        int r;

        if (irq == 0)
                return 0;
        if (hv_vcpu_has_attr(vcpu, KVM_ARM_VCPU_TIMER_CTRL, attr) < 0)
                return svemig_error_set(
                        err, EINVAL,
                        "vcpu %u: the source's %s timer interrupts on PPI %u, and this host's "
                        "KVM cannot set a timer's PPI (KVM_ARM_VCPU_TIMER_CTRL)",
                        hv_vcpu_index(vcpu), which, irq);
        r = hv_vcpu_set_attr(vcpu, KVM_ARM_VCPU_TIMER_CTRL, attr, &irq);
        if (r < 0)
                return svemig_error_set(err, -r, "vcpu %u: setting the %s timer's PPI to %u failed: %s",
                                        hv_vcpu_index(vcpu), which, irq, strerror(-r));
        return 0;
}

static int restore_vcpu(struct hv_vcpu *vcpu, const struct timer_vcpu_state *t, struct svemig_error *err)
{
        uint64_t v;
        int r;

        /* Compare value before control, so that enabling never meets a stale compare value. */
        r = put(vcpu, REG_VTIMER_CVAL, "TIMER_CVAL", t->vtimer_cval, err);
        if (r >= 0)
                r = put(vcpu, REG_VTIMER_CTL, "TIMER_CTL", t->vtimer_ctl, err);
        if (r < 0 || !t->has_ptimer)
                return r;
        if (hv_vcpu_get_reg(vcpu, REG_PTIMER_CTL, &v) < 0) {
                if (!(t->ptimer_ctl & TIMER_CTL_ENABLE))
                        return 0; /* a disabled timer's registers mean nothing to the guest */
                return svemig_error_set(
                        err, EINVAL,
                        "vcpu %u: the guest's physical timer is enabled (CNTP_CTL_EL0 0x%llx) "
                        "and this host's kernel does not let a VMM set it (Linux 6.1 lists no "
                        "PTIMER registers): restore on a kernel that does",
                        hv_vcpu_index(vcpu), (unsigned long long)t->ptimer_ctl);
        }
        r = put(vcpu, REG_PTIMER_CVAL, "PTIMER_CVAL", t->ptimer_cval, err);
        if (r >= 0)
                r = put(vcpu, REG_PTIMER_CTL, "PTIMER_CTL", t->ptimer_ctl, err);
        return r;
}

int timer_state_restore(struct hv_vcpu *const *vcpus, size_t n_vcpus, const struct timer_state *st,
                        struct svemig_error *err)
{
        uint64_t here;
        int r = timer_state_check(st, err);

        if (r < 0)
                return r;
        if (n_vcpus != st->n_vcpus)
                return svemig_error_set(err, EINVAL, "the timer state has %zu vcpus, this VM %zu",
                                        st->n_vcpus, n_vcpus);
        here = timer_host_frequency(hv_vm_host(hv_vcpu_vm(vcpus[0])));
        if (st->frequency_hz && here && st->frequency_hz != here)
                return svemig_error_set(
                        err, EINVAL,
                        "the guest's counter ran at %llu Hz on the source and this host's runs "
                        "at %llu Hz: KVM cannot scale it, so the guest's time would run at "
                        "another rate; restore on a host with the same counter frequency",
                        (unsigned long long)st->frequency_hz, (unsigned long long)here);
        for (size_t i = 0; i < n_vcpus && r >= 0; i++) {
                r = put_irq(vcpus[i], KVM_ARM_VCPU_TIMER_IRQ_VTIMER, st->vcpus[i].vtimer_irq, "virtual",
                            err);
                if (r >= 0)
                        r = put_irq(vcpus[i], KVM_ARM_VCPU_TIMER_IRQ_PTIMER, st->vcpus[i].ptimer_irq,
                                    "physical", err);
        }
        /* One write moves the whole VM's virtual counter: the guest reads st->counter from now on. */
        if (r >= 0)
                r = put(vcpus[0], KVMREG_TIMER_CNT, "TIMER_CNT", st->counter, err);
        for (size_t i = 0; i < n_vcpus && r >= 0; i++)
                r = restore_vcpu(vcpus[i], &st->vcpus[i], err);
        return r;
}

static int check_irq(size_t i, uint32_t irq, const char *which, struct svemig_error *err)
{
        if (irq != 0 && (irq < 16 || irq > 31))
                return svemig_error_set(err, EINVAL,
                                        "vcpu %zu: the %s timer's interrupt %u is not a PPI (16..31)", i,
                                        which, irq);
        return 0;
}

int timer_state_check(const struct timer_state *st, struct svemig_error *err)
{
        const uint64_t ctl_bits = TIMER_CTL_ENABLE | TIMER_CTL_IMASK | TIMER_CTL_ISTATUS;
        int r = 0;

        if (st->n_vcpus == 0 || st->n_vcpus > TIMER_STATE_VCPUS_MAX)
                return svemig_error_set(err, st->n_vcpus ? E2BIG : EINVAL, "timers of %zu vcpus: 1..%u",
                                        st->n_vcpus, TIMER_STATE_VCPUS_MAX);
        for (size_t i = 0; i < st->n_vcpus && r >= 0; i++) {
                const struct timer_vcpu_state *t = &st->vcpus[i];

                if ((t->vtimer_ctl | t->ptimer_ctl) & ~ctl_bits)
                        return svemig_error_set(
                                err, EINVAL,
                                "vcpu %zu: timer control 0x%llx/0x%llx sets bits CNTx_CTL_EL0 "
                                "does not have (only ENABLE, IMASK, ISTATUS)",
                                i, (unsigned long long)t->vtimer_ctl, (unsigned long long)t->ptimer_ctl);
                if (!t->has_ptimer && (t->ptimer_ctl || t->ptimer_cval))
                        return svemig_error_set(err, EINVAL,
                                                "vcpu %zu: physical timer values without the timer", i);
                r = check_irq(i, t->vtimer_irq, "virtual", err);
                if (r >= 0)
                        r = check_irq(i, t->ptimer_irq, "physical", err);
        }
        return r;
}
