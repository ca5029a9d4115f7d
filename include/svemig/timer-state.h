/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The generic timers of a guest's vcpus and its counter, saved and restored
 * so that the guest's time continues across hosts: the destination sets the
 * guest's virtual counter to the value it had when the source stopped it,
 * whatever the destination's own counter reads. The struct is the
 * serialisable form: the stream's TIMERS frame carries it as it is.
 *
 * How: KVM_REG_ARM_TIMER_CNT, written on one vcpu, moves the VM's virtual
 * counter offset (CNTVOFF) so that the guest reads that value now. Linux 6.1
 * offers nothing else; 6.4 added KVM_ARM_SET_COUNTER_OFFSET, a VM-wide
 * offset from the host's physical counter, after which KVM ignores
 * TIMER_CNT writes. svemig uses TIMER_CNT on both (6.12 still honours it
 * while userspace never sets the VM offset), so one path serves every
 * kernel. The physical counter (CNTPCT_EL0) cannot be offset on either
 * kernel without FEAT_ECV, so a guest's physical counter follows its host;
 * the physical timer's registers move (6.12 lists them; 6.1 does not).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"
#include "svemig/hv.h"

#define TIMER_STATE_VCPUS_MAX 4096u

/* CNTx_CTL_EL0 bits. */
#define TIMER_CTL_ENABLE  (1u << 0)
#define TIMER_CTL_IMASK   (1u << 1)
#define TIMER_CTL_ISTATUS (1u << 2)

struct timer_vcpu_state {
        uint64_t vtimer_ctl, vtimer_cval; /* CNTV_CTL_EL0, CNTV_CVAL_EL0 */
        bool has_ptimer;                  /* the kernel lists the physical timer's registers (6.12) */
        uint64_t ptimer_ctl, ptimer_cval; /* CNTP_CTL_EL0, CNTP_CVAL_EL0 */
        /* The timers' PPIs (KVM_ARM_VCPU_TIMER_IRQ_VTIMER/PTIMER); 0 where the kernel gave none. */
        uint32_t vtimer_irq, ptimer_irq;
};

struct timer_state {
        uint64_t counter;      /* the guest's virtual counter (CNTVCT_EL0) when saved, its vcpus stopped */
        uint64_t frequency_hz; /* the source's CNTFRQ_EL0; 0 = unknown */
        size_t n_vcpus;
        struct timer_vcpu_state *vcpus; /* in vcpu index order */
};

void timer_state_done(struct timer_state *st);

/* The counter frequency of hv's host (CNTFRQ_EL0; the sim's 62.5 MHz); 0 where unknown. */
uint64_t timer_host_frequency(struct hv *hv);

/*
 * Saves every vcpu's timers and the guest's counter. The vcpus (all of the
 * VM's, in index order) must be stopped: the counter is read once, on the
 * first, and is the value the guest continues from.
 */
int timer_state_save(struct hv_vcpu *const *vcpus, size_t n_vcpus, struct timer_state *out,
                     struct svemig_error *err);

/*
 * Restores st into a VM's vcpus (initialised, not yet run): the timers' PPIs,
 * the counter (so the guest reads st->counter now and counts on from it),
 * then each timer's compare value and control. Refused with the reason: a
 * counter frequency other than the source's (the guest's time would run at
 * another rate; KVM cannot scale it), an enabled physical timer on a kernel
 * that does not list it.
 */
int timer_state_restore(struct hv_vcpu *const *vcpus, size_t n_vcpus, const struct timer_state *st,
                        struct svemig_error *err);

/* Checks a decoded state: counts, PPIs (16..31 or 0), control bits. 0 or -EINVAL/-E2BIG with the reason. */
int timer_state_check(const struct timer_state *st, struct svemig_error *err);
