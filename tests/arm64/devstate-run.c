/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The vGIC's and the timers' state saved and restored on the real KVM,
 * inside the rig, through the product's vgic-state.c and timer-state.c.
 *
 *   devstate-run roundtrip
 *       a VM with a vGIC v3 and two vcpus gets distinctive state (a pending
 *       and an active SPI, a level-triggered SPI held high, priorities,
 *       enables, routing, a pending SGI, the CPU interfaces' priority mask,
 *       binary point, group enable and an active priority, a timer armed
 *       with a compare value in the future, the counter at a value); it is
 *       saved, restored into a second VM on this host and saved again: every
 *       register must match, and the guest's counter must continue from
 *       where it stopped (never backwards, no gap larger than the pause).
 *   devstate-run save FILE
 *       the same state, saved into a stream file (VCPU, VGIC and TIMERS
 *       frames) for another host
 *   devstate-run restore FILE
 *       reads the stream, restores it into a new VM here and compares every
 *       register with what the stream carried; the counter continues from
 *       the stream's value, by no more than this host's time since
 *
 * Prints "PASS/FAIL check" lines, "RIG-INFO" lines and "N passed, M failed";
 * exits 77 on a host without an arm64 KVM.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "kvm-arm64.h"
#include "macro.h"
#include "rig-check.h"
#include "svemig/hv.h"
#include "svemig/kvmreg.h"
#include "svemig/stream.h"
#include "svemig/timer-state.h"
#include "svemig/vcpu.h"
#include "svemig/vgic-state.h"

#define N_VCPUS    2
#define NR_IRQS    128u
#define DIST_BASE  0x08000000ull
#define RDIST_BASE 0x080a0000ull

/* Distinctive values (see the file's comment). */
#define COUNTER     0x0000001234000000ull
#define CVAL_AHEAD  0x0000010000000000ull /* hours ahead at any counter frequency */
#define SPI_PENDING 40u                   /* edge, group 1, enabled, routed to vcpu 1, pending */
#define SPI_ACTIVE  41u                   /* active, enabled */
#define SPI_LEVEL   45u                   /* level-triggered, line held high */
#define SGI_PENDING 3u                    /* on vcpu 1 */
#define PPI_VTIMER  27u

struct vm {
        struct hv_vm *vm;
        struct hv_device *gic;
        struct hv_vcpu *vcpus[N_VCPUS];
};

static void vm_free(struct vm *m)
{
        for (size_t i = 0; i < N_VCPUS; i++)
                hv_vcpu_destroy(m->vcpus[i]);
        hv_device_destroy(m->gic);
        hv_vm_destroy(m->vm);
        *m = (struct vm){0};
}

static uint64_t host_counter(void)
{
#if defined(__aarch64__)
        uint64_t c;

        __asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(c)::"memory");
        return c;
#else
        return 0;
#endif
}

static int gic_set(struct vm *m, uint32_t group, uint64_t attr, const void *v, const char *what)
{
        int r = hv_device_set_attr(m->gic, group, attr, v);

        if (r < 0)
                fprintf(stderr, "%s: %s\n", what, strerror(-r));
        return r;
}

/* VM, vGIC (placed, not yet initialised) and vcpus; with init, the vcpus are initialised too. */
static int vm_create(struct hv *hv, bool init, struct vm *m, struct svemig_error *err)
{
        uint64_t dist = DIST_BASE, rdist = RDIST_BASE;
        int r = hv_vm_create(hv, &m->vm, err);

        if (r >= 0)
                r = hv_vm_create_device(m->vm, HV_DEV_VGIC_V3, &m->gic, err);
        if (r < 0)
                return r;
        if (gic_set(m, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &dist, "GICD base") < 0 ||
            gic_set(m, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST, &rdist, "GICR base") < 0)
                return svemig_error_set(err, EIO, "placing the vGIC failed");
        for (unsigned i = 0; i < N_VCPUS; i++) {
                r = hv_vcpu_create(m->vm, i, &m->vcpus[i], err);
                if (r < 0)
                        return r;
                if (init && (r = hv_vcpu_init(m->vcpus[i], HV_FEAT_BIT(HV_FEAT_PSCI_0_2))) < 0)
                        return svemig_error_set(err, r, "vcpu %u: init failed: %s", i, strerror(-r));
        }
        return 0;
}

/* NR_IRQS and CTRL_INIT: once every vcpu exists (and, on a destination, has its registers). */
static int vm_init_gic(struct vm *m, struct svemig_error *err)
{
        uint32_t nr = NR_IRQS;

        if (gic_set(m, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr, "NR_IRQS") < 0 ||
            gic_set(m, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL, "CTRL_INIT") < 0)
                return svemig_error_set(err, EIO, "initialising the vGIC failed");
        return 0;
}

static bool dist_w(struct vm *m, uint32_t off, uint32_t v)
{
        return gic_set(m, KVM_DEV_ARM_VGIC_GRP_DIST_REGS, off, &v, "distributor write") == 0;
}

static bool redist_w(struct vm *m, unsigned cpu, uint32_t off, uint32_t v)
{
        /* vcpu i's MPIDR is Aff0 = i here (KVM's default for a few vcpus). */
        return gic_set(m, KVM_DEV_ARM_VGIC_GRP_REDIST_REGS, (uint64_t)cpu << 32 | off, &v,
                       "redistributor write") == 0;
}

static bool icc_w(struct vm *m, unsigned cpu, unsigned crn, unsigned crm, unsigned op2, uint64_t v)
{
        uint64_t instr = 3u << 14 | crn << 7 | crm << 3 | op2;

        return gic_set(m, KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS, (uint64_t)cpu << 32 | instr, &v, "ICC write") ==
               0;
}

static uint32_t bit(unsigned irq)
{
        return 1u << (irq % 32);
}

/* What a guest would have left behind: see the file's comment. */
static bool set_distinctive(struct vm *m)
{
        uint64_t cnt = COUNTER, cval = COUNTER + CVAL_AHEAD, ctl = TIMER_CTL_ENABLE;
        uint64_t ctl1 = TIMER_CTL_ENABLE | TIMER_CTL_IMASK, cval1 = 0x123456789abcull;
        bool ok = true;

        ok &= dist_w(m, 0x0000, 0x2); /* GICD_CTLR.EnableGrp1 */
        ok &= dist_w(m, 0x0080 + 4 * (SPI_PENDING / 32), bit(SPI_PENDING) | bit(SPI_ACTIVE));
        ok &= dist_w(m, 0x0c00 + 4 * (SPI_PENDING / 16), 2u << 2 * (SPI_PENDING % 16)); /* edge */
        ok &= dist_w(m, 0x0400 + SPI_PENDING, 0x0000a060); /* priorities 0x60 (40), 0xa0 (41) */
        ok &= dist_w(m, 0x6000 + 8 * SPI_PENDING, 1);      /* routed to Aff0 1 */
        ok &= dist_w(m, 0x0100 + 4 * (SPI_PENDING / 32),
                     bit(SPI_PENDING) | bit(SPI_ACTIVE) | bit(SPI_LEVEL));
        ok &= dist_w(m, 0x0200 + 4 * (SPI_PENDING / 32), bit(SPI_PENDING));
        ok &= dist_w(m, 0x0300 + 4 * (SPI_ACTIVE / 32), bit(SPI_ACTIVE));
        ok &= hv_vm_irq_line(m->vm, KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT | SPI_LEVEL, true) == 0;
        ok &= redist_w(m, 1, 0x10000 + 0x0400 + 4 * (PPI_VTIMER / 4), 0x50u << 8 * (PPI_VTIMER % 4));
        ok &= redist_w(m, 1, 0x10000 + 0x0100, bit(PPI_VTIMER));
        ok &= redist_w(m, 1, 0x10000 + 0x0200, bit(SGI_PENDING));
        for (unsigned c = 0; c < N_VCPUS; c++) {
                ok &= icc_w(m, c, 4, 6, 0, 0xf0 - 0x10 * c); /* ICC_PMR_EL1 */
                ok &= icc_w(m, c, 12, 12, 3, 3);             /* ICC_BPR1_EL1 */
                ok &= icc_w(m, c, 12, 12, 7, 1);             /* ICC_IGRPEN1_EL1 */
        }
        ok &= icc_w(m, 0, 12, 9, 0, 1u << 3); /* ICC_AP1R0_EL1: a priority active */
        ok &= hv_vcpu_set_reg(m->vcpus[0], KVMREG_TIMER_CNT, &cnt) == 0;
        ok &= hv_vcpu_set_reg(m->vcpus[0], kvmreg_sys(3, 3, 14, 0, 2), &cval) == 0;
        ok &= hv_vcpu_set_reg(m->vcpus[0], kvmreg_sys(3, 3, 14, 3, 1), &ctl) == 0;
        ok &= hv_vcpu_set_reg(m->vcpus[1], kvmreg_sys(3, 3, 14, 0, 2), &cval1) == 0;
        ok &= hv_vcpu_set_reg(m->vcpus[1], kvmreg_sys(3, 3, 14, 3, 1), &ctl1) == 0;
        return ok;
}

static uint32_t reg_of(const struct vgic_reg *regs, size_t n, uint32_t off)
{
        for (size_t i = 0; i < n; i++)
                if (regs[i].offset == off)
                        return regs[i].value;
        return 0xdeadbeef;
}

static uint64_t sysreg_of(const struct vgic_cpu_state *c, unsigned crn, unsigned crm, unsigned op2)
{
        uint16_t instr = (uint16_t)(3u << 14 | crn << 7 | crm << 3 | op2);

        for (size_t i = 0; i < c->n_sysregs; i++)
                if (c->sysregs[i].instr == instr)
                        return c->sysregs[i].value;
        return UINT64_MAX;
}

/* The state set_distinctive() left is in what was saved: the test compares something. */
static void check_saved(const struct vgic_state *g, const struct timer_state *t)
{
        const struct vgic_cpu_state *c1 = &g->cpus[1];

        rig_check(reg_of(g->regs, g->n_regs, 0x0200 + 4) & bit(SPI_PENDING), "saved-spi-pending");
        rig_check(reg_of(g->regs, g->n_regs, 0x0300 + 4) & bit(SPI_ACTIVE), "saved-spi-active");
        rig_check(reg_of(g->regs, g->n_regs, 0x0400 + SPI_PENDING) == 0xa060, "saved-spi-priorities (0x%x)",
                  reg_of(g->regs, g->n_regs, 0x0400 + SPI_PENDING));
        rig_check(reg_of(g->regs, g->n_regs, 0x6000 + 8 * SPI_PENDING) == 1, "saved-spi-route");
        rig_check(g->n_levels >= 1 && g->spi_levels[0] & bit(SPI_LEVEL), "saved-spi-level");
        rig_check(reg_of(c1->regs, c1->n_regs, 0x10200) & bit(SGI_PENDING), "saved-sgi-pending");
        rig_check(reg_of(c1->regs, c1->n_regs, 0x10100) & bit(PPI_VTIMER), "saved-ppi-enabled");
        rig_check(sysreg_of(&g->cpus[0], 4, 6, 0) == 0xf0, "saved-icc-pmr (0x%" PRIx64 ")",
                  sysreg_of(&g->cpus[0], 4, 6, 0));
        rig_check(sysreg_of(&g->cpus[0], 12, 9, 0) == 1u << 3, "saved-icc-ap1r0 (0x%" PRIx64 ")",
                  sysreg_of(&g->cpus[0], 12, 9, 0));
        rig_check(t->vcpus[0].vtimer_ctl & TIMER_CTL_ENABLE && !(t->vcpus[0].vtimer_ctl & TIMER_CTL_ISTATUS),
                  "saved-timer-armed (ctl 0x%" PRIx64 ")", t->vcpus[0].vtimer_ctl);
        rig_check(t->vcpus[0].vtimer_cval == COUNTER + CVAL_AHEAD, "saved-timer-cval");
        rig_check(t->counter >= COUNTER, "saved-counter (0x%" PRIx64 ")", t->counter);
        printf("RIG-INFO vgic %u IRQs, %zu distributor words, %zu+%zu redistributor words, %zu ICC "
               "registers a "
               "vcpu; counter at %" PRIu64 " Hz\n",
               g->nr_irqs, g->n_regs, g->cpus[0].n_regs, g->cpus[1].n_regs, g->cpus[0].n_sysregs,
               t->frequency_hz);
}

static bool regs_equal(const char *who, const struct vgic_reg *a, size_t na, const struct vgic_reg *b,
                       size_t nb)
{
        char name[48];

        if (!rig_check(na == nb, "%s-count (%zu, %zu)", who, na, nb))
                return false;
        for (size_t i = 0; i < na; i++) {
                if (a[i].offset == b[i].offset && a[i].value == b[i].value)
                        continue;
                vgic_reg_name(strcmp(who, "dist") != 0, a[i].offset, name, sizeof(name));
                return rig_check(false, "%s-%s (0x%08x restored as 0x%08x)", who, name, a[i].value,
                                 b[i].value);
        }
        return true;
}

/* Field by field: the struct's padding is nobody's state. */
static bool timers_equal(const struct timer_vcpu_state *a, const struct timer_vcpu_state *b)
{
        return a->vtimer_ctl == b->vtimer_ctl && a->vtimer_cval == b->vtimer_cval &&
               a->has_ptimer == b->has_ptimer && a->ptimer_ctl == b->ptimer_ctl &&
               a->ptimer_cval == b->ptimer_cval && a->vtimer_irq == b->vtimer_irq &&
               a->ptimer_irq == b->ptimer_irq;
}

/* Every register the restore wrote reads back as saved. */
static void compare(const struct vgic_state *a, const struct vgic_state *b, const struct timer_state *ta,
                    const struct timer_state *tb)
{
        bool ok = true;
        char who[16];

        ok &= regs_equal("dist", a->regs, a->n_regs, b->regs, b->n_regs);
        ok &= rig_check(a->n_levels == b->n_levels &&
                                !memcmp(a->spi_levels, b->spi_levels, a->n_levels * sizeof(*a->spi_levels)),
                        "spi-levels");
        for (size_t c = 0; c < N_VCPUS; c++) {
                const struct vgic_cpu_state *x = &a->cpus[c], *y = &b->cpus[c];

                snprintf(who, sizeof(who), "redist%zu", c);
                ok &= regs_equal(who, x->regs, x->n_regs, y->regs, y->n_regs);
                ok &= rig_check(x->ppi_level == y->ppi_level, "%s-ppi-level (0x%x, 0x%x)", who, x->ppi_level,
                                y->ppi_level);
                ok &= rig_check(x->n_sysregs == y->n_sysregs, "cpu%zu-icc-count", c);
                for (size_t i = 0; i < x->n_sysregs && i < y->n_sysregs; i++)
                        if (x->sysregs[i].value != y->sysregs[i].value)
                                ok &= rig_check(false, "cpu%zu-%s (0x%" PRIx64 " restored as 0x%" PRIx64 ")",
                                                c, vgic_sysreg_name(x->sysregs[i].instr),
                                                x->sysregs[i].value, y->sysregs[i].value);
                ok &= rig_check(timers_equal(&ta->vcpus[c], &tb->vcpus[c]),
                                "cpu%zu-timers (ctl 0x%" PRIx64 "/0x%" PRIx64 ", cval 0x%" PRIx64
                                "/0x%" PRIx64 ", ppi %u/%u)",
                                c, ta->vcpus[c].vtimer_ctl, tb->vcpus[c].vtimer_ctl,
                                ta->vcpus[c].vtimer_cval, tb->vcpus[c].vtimer_cval, ta->vcpus[c].vtimer_irq,
                                tb->vcpus[c].vtimer_irq);
        }
        rig_check(ok, "every-register-restored");
}

static int save(struct vm *m, struct vcpu_state *vs, struct vgic_state *g, struct timer_state *t,
                struct svemig_error *err)
{
        int r = 0;

        for (size_t i = 0; vs && i < N_VCPUS && r >= 0; i++)
                r = vcpu_capture(m->vcpus[i], &vs[i], err);
        if (r >= 0)
                r = timer_state_save(m->vcpus, N_VCPUS, t, err);
        if (r >= 0)
                r = vgic_state_save(m->gic, m->vcpus, N_VCPUS, g, err);
        return r;
}

/* Into a new VM: its vcpus' registers, then the vGIC's initialisation, then the devices' state. */
static int restore(struct hv *hv, struct vm *m, const struct vcpu_state *vs, const struct vgic_state *g,
                   const struct timer_state *t, struct svemig_error *err)
{
        int r = vm_create(hv, false, m, err);

        for (size_t i = 0; i < N_VCPUS && r >= 0; i++)
                r = vcpu_restore(m->vcpus[i], &vs[i], err);
        if (r >= 0)
                r = vm_init_gic(m, err);
        if (r >= 0)
                r = timer_state_restore(m->vcpus, N_VCPUS, t, err);
        if (r >= 0)
                r = vgic_state_restore(m->gic, m->vcpus, N_VCPUS, g, err);
        return r;
}

/* Restores into a new VM, saves it back and compares; the counter against the host's time since h0. */
static void restore_and_compare(struct hv *hv, const struct vcpu_state *vs, const struct vgic_state *ga,
                                const struct timer_state *ta, uint64_t h0)
{
        _cleanup_(vgic_state_done) struct vgic_state gb = {0};
        _cleanup_(timer_state_done) struct timer_state tb = {0};
        struct svemig_error err = {0};
        struct vm b = {0};
        uint64_t h1;
        int r;

        r = restore(hv, &b, vs, ga, ta, &err);
        if (!rig_check(r >= 0, "restore (%s)", svemig_error_str(&err, r)))
                goto out;
        r = save(&b, NULL, &gb, &tb, &err);
        h1 = host_counter();
        if (!rig_check(r >= 0, "save-restored (%s)", svemig_error_str(&err, r)))
                goto out;
        compare(ga, &gb, ta, &tb);
        /* The guest's counter went on from where it stopped, by no more than the host's time since. */
        rig_check(tb.counter >= ta->counter, "counter-never-backwards (0x%" PRIx64 " then 0x%" PRIx64 ")",
                  ta->counter, tb.counter);
        rig_check(tb.counter - ta->counter <= h1 - h0,
                  "counter-no-gap (moved %" PRIu64 " ticks while the host's moved %" PRIu64 ")",
                  tb.counter - ta->counter, h1 - h0);
        printf("RIG-INFO counter moved %" PRIu64 " ticks across the restore, the host's %" PRIu64 "\n",
               tb.counter - ta->counter, h1 - h0);
out:
        vm_free(&b);
}

/* The source VM with its distinctive state, saved. */
static bool source(struct hv *hv, struct vm *a, struct vcpu_state *vs, struct vgic_state *g,
                   struct timer_state *t)
{
        struct svemig_error err = {0};
        int r = vm_create(hv, true, a, &err);

        if (r >= 0)
                r = vm_init_gic(a, &err);
        if (!rig_check(r >= 0, "source-vm (%s)", svemig_error_str(&err, r)))
                return false;
        if (!rig_check(set_distinctive(a), "set-distinctive-state"))
                return false;
        r = save(a, vs, g, t, &err);
        if (!rig_check(r >= 0, "save (%s)", svemig_error_str(&err, r)))
                return false;
        check_saved(g, t);
        return true;
}

static int write_stream(const char *path, const struct vcpu_state *vs, const struct vgic_state *g,
                        const struct timer_state *t, struct svemig_error *err)
{
        struct svemig_stream_info info = {
                .hypervisor = "kvm",
                .purpose = "devstate",
                .vcpu_count = N_VCPUS,
                .vcpu_features = vs[0].features,
                .devices = true,
        };
        struct svemig_stream_writer *w = NULL;
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int r;

        if (fd < 0)
                return svemig_error_set(err, errno, "cannot create %s: %s", path, strerror(errno));
        r = svemig_stream_writer_open(fd, &info, NULL, &w, err);
        for (size_t i = 0; r >= 0 && i < N_VCPUS; i++)
                r = svemig_stream_write_vcpu(w, &vs[i], err);
        if (r >= 0)
                r = svemig_stream_write_vgic(w, g, err);
        if (r >= 0)
                r = svemig_stream_write_timers(w, t, err);
        if (r >= 0)
                r = svemig_stream_writer_finish(w, err);
        svemig_stream_writer_free(w);
        return r;
}

static int read_stream(const char *path, struct vcpu_state *vs, struct vgic_state *g, struct timer_state *t,
                       struct svemig_error *err)
{
        struct svemig_stream_reader *rd = NULL;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        unsigned n_vcpus = 0;
        int r;

        if (fd < 0)
                return svemig_error_set(err, errno, "cannot open %s: %s", path, strerror(errno));
        r = svemig_stream_reader_open(fd, NULL, &rd, err);
        if (r >= 0 && svemig_stream_reader_info(rd)->vcpu_count != N_VCPUS)
                r = svemig_error_set(err, EINVAL, "the stream has %u vcpus, not %d",
                                     svemig_stream_reader_info(rd)->vcpu_count, N_VCPUS);
        while (r >= 0 && (r = svemig_stream_next(rd, err)) > 0) {
                if (r == SVEMIG_FRAME_VCPU)
                        r = svemig_stream_read_vcpu(rd, &vs[n_vcpus++], err);
                else if (r == SVEMIG_FRAME_VGIC)
                        r = svemig_stream_read_vgic(rd, g, err);
                else if (r == SVEMIG_FRAME_TIMERS)
                        r = svemig_stream_read_timers(rd, t, err);
        }
        svemig_stream_reader_free(rd);
        if (r >= 0 && (!g->n_cpus || !t->n_vcpus))
                r = svemig_error_set(err, EBADMSG, "the stream lacks its VGIC or TIMERS frame");
        return r;
}

static int save_file(struct hv *hv, const char *path)
{
        _cleanup_(vgic_state_done) struct vgic_state g = {0};
        _cleanup_(timer_state_done) struct timer_state t = {0};
        struct vcpu_state vs[N_VCPUS] = {0};
        struct svemig_error err = {0};
        struct vm a = {0};
        int r;

        if (source(hv, &a, vs, &g, &t)) {
                r = write_stream(path, vs, &g, &t, &err);
                rig_check(r >= 0, "write-stream (%s)", svemig_error_str(&err, r));
                printf("RIG-INFO saved %s: counter 0x%" PRIx64 ", %zu distributor words\n", path, t.counter,
                       g.n_regs);
        }
        for (size_t i = 0; i < N_VCPUS; i++)
                vcpu_state_done(&vs[i]);
        vm_free(&a);
        return rig_summary();
}

static int restore_file(struct hv *hv, const char *path)
{
        _cleanup_(vgic_state_done) struct vgic_state g = {0};
        _cleanup_(timer_state_done) struct timer_state t = {0};
        struct vcpu_state vs[N_VCPUS] = {0};
        struct svemig_error err = {0};
        uint64_t h0 = host_counter();
        int r = read_stream(path, vs, &g, &t, &err);

        if (rig_check(r >= 0, "read-stream (%s)", svemig_error_str(&err, r))) {
                check_saved(&g, &t);
                restore_and_compare(hv, vs, &g, &t, h0);
        }
        for (size_t i = 0; i < N_VCPUS; i++)
                vcpu_state_done(&vs[i]);
        return rig_summary();
}

static int roundtrip(struct hv *hv)
{
        _cleanup_(vgic_state_done) struct vgic_state g = {0};
        _cleanup_(timer_state_done) struct timer_state t = {0};
        struct vcpu_state vs[N_VCPUS] = {0};
        struct vm a = {0};
        uint64_t h0 = host_counter();

        if (source(hv, &a, vs, &g, &t))
                restore_and_compare(hv, vs, &g, &t, h0);
        for (size_t i = 0; i < N_VCPUS; i++)
                vcpu_state_done(&vs[i]);
        vm_free(&a);
        return rig_summary();
}

/*
 * What this kernel offers for the counter beside KVM_REG_ARM_TIMER_CNT
 * (timer-state.h): KVM_ARM_SET_COUNTER_OFFSET came with Linux 6.4.
 */
#define CAP_COUNTER_OFFSET 227 /* KVM_CAP_COUNTER_OFFSET, newer than src/uapi's 6.1 headers */

static void report_counter_caps(void)
{
        _cleanup_close_ int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        int has = fd < 0 ? -1 : ioctl(fd, KVM_CHECK_EXTENSION, CAP_COUNTER_OFFSET);

        printf("RIG-INFO KVM_CAP_COUNTER_OFFSET (KVM_ARM_SET_COUNTER_OFFSET): %s; the counter moves by "
               "TIMER_CNT\n",
               has > 0 ? "offered" : "not offered");
}

int main(int argc, char **argv)
{
        struct hv_config cfg = {.backend = HV_BACKEND_KVM};
        struct svemig_error err = {0};
        struct hv *hv = NULL;
        int r;

        bool file = argc == 3 && (strcmp(argv[1], "save") == 0 || strcmp(argv[1], "restore") == 0);

        if (!file && (argc != 2 || strcmp(argv[1], "roundtrip") != 0)) {
                fprintf(stderr, "usage: devstate-run roundtrip | save FILE | restore FILE\n");
                return 2;
        }
        r = hv_open(&cfg, &hv, &err);
        if (r < 0) {
                printf("SKIP: no arm64 KVM here: %s\n", svemig_error_str(&err, r));
                return 77;
        }
        if (!file)
                report_counter_caps();
        r = !file ? roundtrip(hv) : argv[1][0] == 's' ? save_file(hv, argv[2]) : restore_file(hv, argv[2]);
        hv_close(hv);
        return r;
}
