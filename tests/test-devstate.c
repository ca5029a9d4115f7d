/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Device state (stream format 1.2): the VGIC, TIMERS, CONSOLE and VIRTIO
 * frames through the writer and reader, every kind of bad frame refused
 * with its reason, the header's frame kinds, and the timers saved and
 * restored between two sim VMs with the counter continued. (The vGIC's save
 * and restore need the real KVM: tests/arm64/devstate-run.c on the rig.)
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "sim-util.h"
#include "stream-content.h"
#include "stream.pb-c.h"
#include "stream/stream-internal.h"
#include "svemig/kvmreg.h"
#include "svemig/snapshot.h"

static void assert_msg(const struct svemig_error *err, const char *needle)
{
        if (!strstr(err->msg, needle))
                fail_msg("expected \"%s\" in \"%s\"", needle, err->msg);
}

static int memfd(void)
{
        int fd = memfd_create("devstate", MFD_CLOEXEC);

        assert_true(fd >= 0);
        return fd;
}

/* A writer on a fresh memfd with the golden header; devices as given. */
static struct svemig_stream_writer *writer(int fd, bool devices)
{
        struct svemig_stream_writer *w = NULL;
        struct svemig_error err = {0};
        struct svemig_stream_info info;

        golden_info(&info);
        info.devices = devices;
        info.n_slots = 0;
        info.slots = NULL;
        if (svemig_stream_writer_open(fd, &info, NULL, &w, &err) < 0)
                fail_msg("writer: %s", err.msg);
        return w;
}

/* Reads fd from the start up to the first device frame and decodes it; returns the read's result. */
static int read_first_device(int fd, struct svemig_error *err)
{
        struct svemig_stream_reader *r = NULL;
        int k;

        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        k = svemig_stream_reader_open(fd, NULL, &r, err);
        while (k >= 0 && (k = svemig_stream_next(r, err)) > 0) {
                struct vgic_state g = {0};
                struct timer_state t = {0};
                struct console_state c = {0};
                struct virtio_dev_state v = {0};

                if (k == SVEMIG_FRAME_VGIC)
                        k = svemig_stream_read_vgic(r, &g, err);
                else if (k == SVEMIG_FRAME_TIMERS)
                        k = svemig_stream_read_timers(r, &t, err);
                else if (k == SVEMIG_FRAME_CONSOLE)
                        k = svemig_stream_read_console(r, &c, err);
                else if (k == SVEMIG_FRAME_VIRTIO)
                        k = svemig_stream_read_virtio(r, &v, err);
                vgic_state_done(&g);
                timer_state_done(&t);
                console_state_done(&c);
                virtio_dev_state_done(&v);
        }
        svemig_stream_reader_free(r);
        return k;
}

/* A frame of type with payload m, as a faulty or hostile writer would put it. */
static void put_raw(struct svemig_stream_writer *w, uint16_t type, const ProtobufCMessage *m)
{
        struct svemig_error err = {0};
        size_t len = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(len + 1);

        assert_non_null(buf);
        protobuf_c_message_pack(m, buf);
        if (stream_writer_put_frame(w, type, true, FRAME_DEVICES_MINOR, buf, len, &err) < 0)
                fail_msg("put_frame: %s", err.msg);
        free(buf);
}

/* ---- The header ---- */

static void test_header_kinds(void **state)
{
        struct svemig_stream_reader *r = NULL;
        struct svemig_error err = {0};
        int fd = memfd();

        /* Without devices, the header lists 1.0's kinds only: a 1.1 reader reads the stream. */
        svemig_stream_writer_free(writer(fd, false));
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(svemig_stream_reader_open(fd, NULL, &r, &err), 0);
        assert_int_equal(r->n_kinds, 3);
        assert_false(svemig_stream_reader_info(r)->devices);
        svemig_stream_reader_free(r);
        close(fd);

        /* With them, each device kind is listed as required since 1.2: a 1.1 reader refuses at open. */
        fd = memfd();
        svemig_stream_writer_free(writer(fd, true));
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(svemig_stream_reader_open(fd, NULL, &r, &err), 0);
        assert_int_equal(r->n_kinds, 7);
        for (size_t i = 3; i < 7; i++) {
                assert_int_equal(r->kinds[i].type, SVEMIG_FRAME_VGIC + i - 3);
                assert_int_equal(r->kinds[i].since_minor, 2);
                assert_true(r->kinds[i].required);
        }
        assert_string_equal(r->kinds[3].name, "VGIC");
        assert_string_equal(r->kinds[6].name, "VIRTIO");
        assert_true(svemig_stream_reader_info(r)->devices);
        svemig_stream_reader_free(r);
        close(fd);
}

/* ---- The writer refuses what a reader would ---- */

static void test_writer_refuses(void **state)
{
        struct svemig_error err = {0};
        struct vgic_state g;
        struct timer_state t;
        struct virtio_dev_state v;
        int fd = memfd();
        struct svemig_stream_writer *w = writer(fd, false);

        assert_int_equal(golden_vgic(&g), 0);
        assert_int_equal(svemig_stream_write_vgic(w, &g, &err), -EINVAL);
        assert_msg(&err, "a VGIC frame in a stream whose header does not announce device state");
        svemig_stream_writer_free(w);
        close(fd);

        fd = memfd();
        w = writer(fd, true);
        /* Twice. */
        assert_int_equal(svemig_stream_write_vgic(w, &g, &err), 0);
        assert_int_equal(svemig_stream_write_vgic(w, &g, &err), -EINVAL);
        assert_msg(&err, "the VGIC frame appears twice");
        svemig_stream_writer_free(w);
        close(fd);

        fd = memfd();
        w = writer(fd, true);
        /* A register the vGIC does not have, and one outside its IRQs. */
        g.regs[2].offset = 0x9000;
        assert_int_equal(svemig_stream_write_vgic(w, &g, &err), -EINVAL);
        assert_msg(&err, "the distributor: offset 0x9000 is not a register svemig carries");
        g.regs[2].offset = 0x0088; /* IGROUPR[2]: INTIDs 64..95 of a 64-IRQ GIC */
        assert_int_equal(svemig_stream_write_vgic(w, &g, &err), -EINVAL);
        assert_msg(&err, "offset 0x88 is outside the 64 IRQs the vGIC has");
        g.regs[2].offset = 0x0084;
        /* Not the header's vcpus. */
        g.n_cpus = 1;
        assert_int_equal(svemig_stream_write_vgic(w, &g, &err), -EINVAL);
        assert_msg(&err, "the vGIC state has 1 vcpus, the stream header 2");
        g.n_cpus = 2;
        vgic_state_done(&g);

        assert_int_equal(golden_timers(&t), 0);
        t.vcpus[1].vtimer_irq = 40;
        assert_int_equal(svemig_stream_write_timers(w, &t, &err), -EINVAL);
        assert_msg(&err, "vcpu 1: the virtual timer's interrupt 40 is not a PPI (16..31)");
        timer_state_done(&t);

        assert_int_equal(golden_virtio(0, &v), 0);
        v.queues[0].inflight[1] = 200;
        assert_int_equal(svemig_stream_write_virtio(w, &v, &err), -EINVAL);
        assert_msg(&err, "request head 200 is outside the queue's 128 descriptors");
        v.queues[0].inflight[1] = 5;
        assert_int_equal(svemig_stream_write_virtio(w, &v, &err), -EINVAL);
        assert_msg(&err, "request head 5 is in flight twice");
        v.queues[0].inflight[1] = 9;
        v.queues[0].used_idx = v.queues[0].last_avail_idx;
        assert_int_equal(svemig_stream_write_virtio(w, &v, &err), -EINVAL);
        assert_msg(&err, "3 requests in flight, but only 0 taken");
        virtio_dev_state_done(&v);
        svemig_stream_writer_free(w);
        close(fd);
}

/* ---- The reader refuses bad frames, naming the offset and the rule ---- */

static void vgic_msg(Svemig__VgicState *m, Svemig__VgicCpu *cpus, Svemig__VgicCpu **cpu_p,
                     Svemig__DevReg *reg, Svemig__DevReg **reg_p, uint32_t *levels)
{
        svemig__vgic_state__init(m);
        svemig__dev_reg__init(reg);
        reg->offset = 0x0008; /* GICD_IIDR */
        reg->value = 0x0300043b;
        reg_p[0] = reg;
        for (unsigned i = 0; i < 2; i++) {
                svemig__vgic_cpu__init(&cpus[i]);
                cpus[i].index = i;
                cpu_p[i] = &cpus[i];
        }
        m->nr_irqs = 64;
        m->n_regs = 1;
        m->regs = reg_p;
        m->n_spi_levels = 1;
        m->spi_levels = levels;
        m->n_cpus = 2;
        m->cpus = cpu_p;
}

static void expect_vgic_refused(Svemig__VgicState *m, bool twice, const char *needle)
{
        struct svemig_error err = {0};
        int fd = memfd();
        struct svemig_stream_writer *w = writer(fd, true);

        put_raw(w, SVEMIG_FRAME_VGIC, &m->base);
        if (twice)
                put_raw(w, SVEMIG_FRAME_VGIC, &m->base);
        svemig_stream_writer_free(w);
        assert_int_equal(read_first_device(fd, &err), -EBADMSG);
        assert_msg(&err, needle);
        close(fd);
}

static void test_reader_refuses_vgic(void **state)
{
        Svemig__VgicState m;
        Svemig__VgicCpu cpus[2], *cpu_p[2];
        Svemig__DevReg reg, *reg_p[1];
        uint32_t levels[1] = {0};

        vgic_msg(&m, cpus, cpu_p, &reg, reg_p, levels);
        expect_vgic_refused(&m, true, "VGIC frame appears twice");
        reg.offset = 0x1234;
        expect_vgic_refused(&m, false, "the VGIC frame: the distributor: offset 0x1234 is not a register");
        reg.offset = 0x0008;
        m.nr_irqs = 40;
        expect_vgic_refused(&m, false, "the vGIC has 40 IRQs: not 64..1024 in steps of 32");
        m.nr_irqs = 64;
        m.n_cpus = 1;
        expect_vgic_refused(&m, false, "1 CPU interfaces, the header 2 vcpus");
        m.n_cpus = 2;
        cpus[1].index = 0;
        expect_vgic_refused(&m, false, "CPU interface 1 says it is vcpu 0");
        cpus[1].index = 1;
        m.n_spi_levels = 0;
        expect_vgic_refused(&m, false, "0 words of SPI line levels for 64 IRQs, not 1");
}

static void test_reader_refuses_others(void **state)
{
        struct svemig_error err = {0};
        Svemig__TimerState t = SVEMIG__TIMER_STATE__INIT;
        Svemig__TimerVcpu tv[2], *tv_p[2];
        Svemig__VirtioDevice v = SVEMIG__VIRTIO_DEVICE__INIT;
        Svemig__VirtioQueue q = SVEMIG__VIRTIO_QUEUE__INIT, *q_p[1] = {&q};
        uint32_t inflight[2] = {3, 3};
        uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
        int fd = memfd();
        struct svemig_stream_writer *w = writer(fd, true);

        /* Not a message at all. */
        assert_int_equal(
                stream_writer_put_frame(w, SVEMIG_FRAME_CONSOLE, true, 2, garbage, sizeof(garbage), &err),
                0);
        svemig_stream_writer_free(w);
        assert_int_equal(read_first_device(fd, &err), -EBADMSG);
        assert_msg(&err, "the CONSOLE frame is not a valid ConsoleState message");
        close(fd);

        /* A timer control with bits CNTx_CTL_EL0 lacks. */
        for (unsigned i = 0; i < 2; i++) {
                svemig__timer_vcpu__init(&tv[i]);
                tv[i].index = i;
                tv_p[i] = &tv[i];
        }
        tv[1].vtimer_ctl = 0x9;
        t.n_vcpus = 2;
        t.vcpus = tv_p;
        fd = memfd();
        w = writer(fd, true);
        put_raw(w, SVEMIG_FRAME_TIMERS, &t.base);
        svemig_stream_writer_free(w);
        assert_int_equal(read_first_device(fd, &err), -EBADMSG);
        assert_msg(&err, "the TIMERS frame: vcpu 1: timer control 0x9/0x0 sets bits");
        close(fd);

        /* A request in flight twice, and a queue size that is no power of two. */
        v.index = 3;
        v.device_id = 2;
        q.num = 16;
        q.last_avail_idx = 2;
        q.n_inflight = 2;
        q.inflight = inflight;
        v.n_queues = 1;
        v.queues = q_p;
        fd = memfd();
        w = writer(fd, true);
        put_raw(w, SVEMIG_FRAME_VIRTIO, &v.base);
        svemig_stream_writer_free(w);
        assert_int_equal(read_first_device(fd, &err), -EBADMSG);
        assert_msg(&err, "virtio device 3, queue 0: request head 3 is in flight twice");
        close(fd);
        inflight[1] = 4;
        q.num = 24;
        fd = memfd();
        w = writer(fd, true);
        put_raw(w, SVEMIG_FRAME_VIRTIO, &v.base);
        svemig_stream_writer_free(w);
        assert_int_equal(read_first_device(fd, &err), -EBADMSG);
        assert_msg(&err, "24 entries, not a power of two");
        close(fd);

        /* The same device twice. */
        q.num = 16;
        fd = memfd();
        w = writer(fd, true);
        put_raw(w, SVEMIG_FRAME_VIRTIO, &v.base);
        put_raw(w, SVEMIG_FRAME_VIRTIO, &v.base);
        svemig_stream_writer_free(w);
        assert_int_equal(read_first_device(fd, &err), -EBADMSG);
        assert_msg(&err, "VIRTIO frame of device 3 appears twice");
        close(fd);
}

/* A damaged device frame is caught by its checksum like any other. */
static void test_bitflip(void **state)
{
        struct svemig_error err = {0};
        struct console_state c;
        int fd = memfd();
        struct svemig_stream_writer *w = writer(fd, true);
        off_t end;
        uint8_t byte;

        assert_int_equal(golden_console(&c), 0);
        assert_int_equal(svemig_stream_write_console(w, &c, &err), 0);
        console_state_done(&c);
        svemig_stream_writer_free(w);
        end = lseek(fd, 0, SEEK_END);
        /* A byte of the console's output, inside the payload: FRAME_TAIL_SIZE before the end, and more. */
        assert_int_equal(pread(fd, &byte, 1, end - FRAME_TAIL_SIZE - 2), 1);
        byte ^= 0x20;
        assert_int_equal(pwrite(fd, &byte, 1, end - FRAME_TAIL_SIZE - 2), 1);
        assert_int_equal(read_first_device(fd, &err), -EBADMSG);
        assert_msg(&err, "checksum");
        close(fd);
}

/* A guest restore that cannot take device state yet refuses it before anything moves. */
static void test_restore_refuses_devices(void **state)
{
        static const struct svemig_stream_slot slot = {.id = 0, .gpa = 0, .size = 16 * GOLDEN_PAGE};
        struct hv *hv = sim_host_open("128,256", NULL);
        struct svemig_stream_writer *w = NULL;
        struct svemig_error err = {0};
        struct svemig_stream_info info;
        struct guest *g = NULL;
        int fd = memfd();

        golden_info(&info);
        info.slots = &slot;
        info.n_slots = 1;
        assert_true(info.devices);
        assert_int_equal(svemig_stream_writer_open(fd, &info, NULL, &w, &err), 0);
        svemig_stream_writer_free(w);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(snapshot_restore_fd(hv, fd, NULL, &g, &err), -EPROTO);
        assert_null(g);
        assert_msg(&err, "the stream carries device state");
        close(fd);
        hv_close(hv);
}

/* ---- Names ---- */

static void test_names(void **state)
{
        char buf[64];

        vgic_reg_name(false, 0x0424, buf, sizeof(buf));
        assert_string_equal(buf, "GICD_IPRIORITYR[9]");
        vgic_reg_name(false, 0x6104, buf, sizeof(buf));
        assert_string_equal(buf, "GICD_IROUTER[32].hi");
        vgic_reg_name(true, 0x10100, buf, sizeof(buf));
        assert_string_equal(buf, "GICR_ISENABLER0");
        vgic_reg_name(true, 0x10c04, buf, sizeof(buf));
        assert_string_equal(buf, "GICR_ICFGR[1]");
        vgic_reg_name(false, 0x9000, buf, sizeof(buf));
        assert_string_equal(buf, "GICD_0x9000");
        assert_string_equal(vgic_sysreg_name(3u << 14 | 4u << 7 | 6u << 3), "ICC_PMR_EL1");
        assert_null(vgic_sysreg_name(0x1234));
        assert_string_equal(svemig_frame_type_name(SVEMIG_FRAME_TIMERS), "TIMERS");
        assert_string_equal(virtio_device_name(2), "block");
        assert_string_equal(console_kind_name(CONSOLE_PL011), "PL011");
}

/* ---- The timers between two sim VMs ---- */

struct sim_vm {
        struct hv_vm *vm;
        struct hv_vcpu *vcpus[2];
};

static void sim_vm(struct hv *hv, struct sim_vm *m)
{
        struct svemig_error err = {0};

        assert_int_equal(hv_vm_create(hv, &m->vm, &err), 0);
        for (unsigned i = 0; i < 2; i++) {
                assert_int_equal(hv_vcpu_create(m->vm, i, &m->vcpus[i], &err), 0);
                assert_int_equal(hv_vcpu_init(m->vcpus[i], HV_FEAT_BIT(HV_FEAT_PSCI_0_2)), 0);
        }
}

static void sim_vm_free(struct sim_vm *m)
{
        for (unsigned i = 0; i < 2; i++)
                hv_vcpu_destroy(m->vcpus[i]);
        hv_vm_destroy(m->vm);
}

static void test_timers_sim(void **state)
{
        const uint64_t cnt = 0x0000004000000000ull, cval = cnt + 0x100000000ull;
        const uint64_t ctl = TIMER_CTL_ENABLE, pctl = TIMER_CTL_ENABLE | TIMER_CTL_IMASK;
        struct hv *hv = sim_host_open("128,256", "6.12"), *old = sim_host_open("128,256", "6.1");
        struct timer_state a = {0}, b = {0};
        struct svemig_error err = {0};
        struct sim_vm src, dst, on61;

        sim_vm(hv, &src);
        assert_int_equal(hv_vcpu_set_reg(src.vcpus[0], KVMREG_TIMER_CNT, &cnt), 0);
        assert_int_equal(hv_vcpu_set_reg(src.vcpus[1], kvmreg_sys(3, 3, 14, 0, 2), &cval), 0);
        assert_int_equal(hv_vcpu_set_reg(src.vcpus[1], kvmreg_sys(3, 3, 14, 3, 1), &ctl), 0);
        assert_int_equal(hv_vcpu_set_reg(src.vcpus[1], kvmreg_sys(3, 3, 14, 2, 1), &pctl), 0);
        if (timer_state_save(src.vcpus, 2, &a, &err) < 0)
                fail_msg("save: %s", err.msg);
        assert_true(a.counter >= cnt);
        assert_int_equal(a.frequency_hz, 62500000);
        assert_int_equal(a.vcpus[1].vtimer_cval, cval);
        assert_int_equal(a.vcpus[1].vtimer_ctl & TIMER_CTL_ENABLE, TIMER_CTL_ENABLE);
        assert_true(a.vcpus[1].has_ptimer);
        assert_int_equal(a.vcpus[1].ptimer_ctl & ~TIMER_CTL_ISTATUS, pctl);
        /* The sim has no vGIC, so no timer PPIs to carry. */
        assert_int_equal(a.vcpus[0].vtimer_irq, 0);

        /* Restored elsewhere: the same timers, the counter on from where it stopped. */
        sim_vm(hv, &dst);
        if (timer_state_restore(dst.vcpus, 2, &a, &err) < 0)
                fail_msg("restore: %s", err.msg);
        assert_int_equal(timer_state_save(dst.vcpus, 2, &b, &err), 0);
        assert_true(b.counter >= a.counter);
        assert_int_equal(b.vcpus[1].vtimer_cval, cval);
        assert_int_equal(b.vcpus[1].ptimer_ctl, a.vcpus[1].ptimer_ctl);
        timer_state_done(&b);

        /* Another counter frequency: refused, naming both. */
        a.frequency_hz = 24000000;
        assert_int_equal(timer_state_restore(dst.vcpus, 2, &a, &err), -EINVAL);
        assert_msg(
                &err,
                "the guest's counter ran at 24000000 Hz on the source and this host's runs at 62500000 Hz");
        a.frequency_hz = 62500000;

        /* An enabled physical timer, to a kernel that lists none (6.1): refused; a disabled one moves on. */
        sim_vm(old, &on61);
        a.vcpus[1].ptimer_ctl = TIMER_CTL_ENABLE;
        assert_int_equal(timer_state_restore(on61.vcpus, 2, &a, &err), -EINVAL);
        assert_msg(&err, "the guest's physical timer is enabled");
        a.vcpus[1].ptimer_ctl = TIMER_CTL_IMASK;
        if (timer_state_restore(on61.vcpus, 2, &a, &err) < 0)
                fail_msg("restore on 6.1: %s", err.msg);
        assert_int_equal(timer_state_save(on61.vcpus, 2, &b, &err), 0);
        assert_false(b.vcpus[1].has_ptimer);
        assert_true(b.counter >= a.counter);

        timer_state_done(&a);
        timer_state_done(&b);
        sim_vm_free(&on61);
        sim_vm_free(&dst);
        sim_vm_free(&src);
        hv_close(old);
        hv_close(hv);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_header_kinds),
                cmocka_unit_test(test_writer_refuses),
                cmocka_unit_test(test_reader_refuses_vgic),
                cmocka_unit_test(test_reader_refuses_others),
                cmocka_unit_test(test_bitflip),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_timers_sim),
                cmocka_unit_test(test_restore_refuses_devices),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
