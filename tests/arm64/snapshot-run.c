/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Real SVE guests snapshotted and restored on the real KVM, inside the rig,
 * through the product's own modules (guest.c, snapshot.c, hv_kvm.c). The
 * guest is tests/arm64/payloads/workload.S, whose state after k iterations
 * the host can predict (workload-model.h); it reports by MMIO when its count
 * reaches x0, and the MMIO handler stops it there, at exactly k.
 *
 *   snapshot-run roundtrip IMAGE
 *       run to K, snapshot_save(), snapshot_load() into a new VM on this
 *       host, continue to 3K; bit-exact (every register, Z/P at full width,
 *       all RAM) against a guest that ran to 3K without a stop, and equal to
 *       the model
 *   snapshot-run save IMAGE FILE [--vls SET]
 *       start the guest at SET (default: all the host offers), run to K,
 *       check it against the model and snapshot_save() it to FILE
 *   snapshot-run restore FILE [--expect-vl BITS] [--image IMAGE]
 *       snapshot_load() FILE, check it at K, continue to 3K and check it
 *       against the model at the guest's VL (and BITS); with IMAGE, also
 *       bit-exact against a guest started here at the same VL set
 *   snapshot-run refuse FILE --expect-vq VQ | --expect TEXT
 *       snapshot_load() FILE must fail with -EINVAL, before any memory is
 *       read, for a reason naming vq VQ as missing on this host (or saying
 *       TEXT)
 *
 * Prints "PASS/FAIL check" lines, "RIG-INFO" lines for the rig's summary and
 * "N passed, M failed"; exits 77 on a host without SVE.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "rig-check.h"
#include "svemig/guest.h"
#include "svemig/kvmreg.h"
#include "svemig/snapshot.h"
#include "workload-model.h"

#define K_SNAPSHOT 1000u
#define K_FINAL    (3 * K_SNAPSHOT)
/* A guest that never reports must not hold the rig until init's timeout. */
#define WATCHDOG_S 60

/* What the workload's MMIO reports said; the handler's userdata. */
struct reports {
        uint64_t stop_at; /* the count at which to stop the vcpu */
        uint64_t last;    /* the last count reported */
        unsigned n;
        uint64_t stray_addr; /* an access anywhere else, 0 if none */
};

static bool on_mmio(void *userdata, unsigned vcpu, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
        struct reports *rep = userdata;

        if (addr != WORKLOAD_MMIO_REPORT || !is_write || len != 8) {
                rep->stray_addr = addr ? addr : 1;
                return false;
        }
        memcpy(&rep->last, data, sizeof(rep->last));
        rep->n++;
        /* An earlier count is a report the guest repeats: keep going to ours. */
        return rep->last != rep->stop_at;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct guest *, guest_destroy);

static int read_file(const char *path, uint8_t **out, size_t *size, struct svemig_error *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
                return svemig_error_set(err, errno, "cannot open %s: %s", path, strerror(errno));
        buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        if (!buf)
                return svemig_error_set(err, ENOMEM, "out of memory reading %s", path);
        if (read(fd, buf, (size_t)st.st_size) != st.st_size)
                return svemig_error_set(err, EIO, "cannot read %s in one go", path);
        *out = buf;
        buf = NULL;
        *size = (size_t)st.st_size;
        return 0;
}

static int open_kvm(struct hv **hv, struct hv_caps *caps, struct svemig_error *err)
{
        struct hv_config cfg = {.backend = HV_BACKEND_KVM};
        int r;

        r = hv_open(&cfg, hv, err);
        if (r < 0)
                return r;
        r = hv_get_caps(*hv, caps);
        if (r < 0)
                return svemig_error_set(err, r, "cannot read the host's capabilities");
        if (!caps->sve)
                return svemig_error_set(err, ENOTSUP, "the host has no SVE: the workload needs it");
        return 0;
}

/* A payload guest: the image at IPA 0 in 64 KiB of RAM, one vcpu entered at 0x800 at the VL set vls. */
static int workload_guest(struct hv *hv, const uint8_t *image, size_t size, const vqset_t *vls,
                          struct reports *rep, struct guest **out, struct svemig_error *err)
{
        struct guest_config cfg = {
                .n_vcpus = 1,
                .mem_bytes = WORKLOAD_RAM_SIZE,
                .sve = true,
                .vls = vls ? *vls : (vqset_t){{0}},
                .image = image,
                .image_size = size,
                .entry = WORKLOAD_ENTRY,
                .ram_base = 0,
                .on_mmio = on_mmio,
                .mmio_userdata = rep,
        };

        return guest_create(hv, &cfg, out, err);
}

/* Moves the guest's stop to k and runs it until its handler stops it there. */
static bool run_to(struct guest *g, struct reports *rep, uint64_t k, const char *what)
{
        struct svemig_error err = {0};
        int r;

        *rep = (struct reports){.stop_at = k};
        r = hv_vcpu_set_reg(guest_vcpu(g, 0), kvmreg_core_x(WORKLOAD_X_STOP), &k);
        if (!rig_check(r == 0, "%s-set-x0 (%s)", what, strerror(-r)))
                return false;
        /* On kvm the step budget counts nothing: the vcpu runs until the handler stops it. */
        r = guest_run(g, 1, &err);
        return rig_check(r == 0 && rep->stray_addr == 0 && rep->last == k,
                         "%s-stopped-at-%llu (run: %s; last report %llu of %u; stray MMIO at 0x%llx)", what,
                         (unsigned long long)k, r < 0 ? svemig_error_str(&err, r) : "ok",
                         (unsigned long long)rep->last, rep->n, (unsigned long long)rep->stray_addr);
}

/*
 * The guest was saved stopped at its report of K. Had the MMIO access not
 * been completed before the capture (guest.c), the pc would still be on
 * the reporting store and the restored guest would report K again.
 */
static void check_resumed_past_report(const struct reports *rep, const char *what)
{
        rig_check(rep->n == 1, "%s-resumed-past-the-report (%u reports on the way to %llu)", what, rep->n,
                  (unsigned long long)rep->stop_at);
}

/* The guest's vector length in quadwords: the maximum of its vcpu's VL set. */
static unsigned guest_vq(struct guest *g)
{
        vqset_t vls = {{0}};

        if (hv_vcpu_get_reg(guest_vcpu(g, 0), kvmreg_vls(), vls.w) < 0)
                return 0;
        return vqset_highest(&vls);
}

/* The guest's registers and memory against the model after k iterations at vq. */
static void check_model(struct guest *g, unsigned vq, uint64_t k, const char *what)
{
        struct hv_vcpu *vcpu = guest_vcpu(g, 0);
        uint8_t z[KVMREG_ZREG_SLICE_BYTES], p[KVMREG_PREG_SLICE_BYTES];
        const uint8_t *mem = guest_mem(g);
        uint64_t count, x2 = 0;

        memcpy(&count, mem + WORKLOAD_COUNT_GPA, sizeof(count));
        rig_check(count == k, "%s-counter-in-memory (%llu, model %llu)", what, (unsigned long long)count,
                  (unsigned long long)k);
        rig_check(hv_vcpu_get_reg(vcpu, kvmreg_core_x(WORKLOAD_X_COUNT), &x2) == 0 && x2 == k,
                  "%s-x2 (%llu, model %llu)", what, (unsigned long long)x2, (unsigned long long)k);
        rig_check(workload_buf_matches(mem + WORKLOAD_BUF_GPA, KVMREG_ZREG_SLICE_BYTES, vq, k),
                  "%s-memory-buffer (%u lanes, k=%llu)", what, 2 * vq, (unsigned long long)k);
        rig_check(hv_vcpu_get_reg(vcpu, kvmreg_zreg(0, 0), z) == 0 &&
                          workload_z0_matches(z, sizeof(z), vq, k),
                  "%s-z0 (%u-bit lanes filled, zeros past them)", what, vq_to_bits(vq));
        rig_check(hv_vcpu_get_reg(vcpu, kvmreg_zreg(1, 0), z) == 0 &&
                          workload_buf_matches(z, sizeof(z), vq, k),
                  "%s-z1", what);
        rig_check(hv_vcpu_get_reg(vcpu, kvmreg_preg(0, 0), p) == 0 && workload_p0_matches(p, sizeof(p), vq),
                  "%s-p0-ptrue-d", what);
}

/* Every vcpu register (Z/P/FFR at full width included) and all of RAM. */
static void check_same(struct guest *a, struct guest *b, const char *what)
{
        struct svemig_error err = {0};
        char diff[256] = "";
        bool equal = false;
        int r;

        r = guest_compare(a, b, &equal, diff, sizeof(diff), &err);
        rig_check(r == 0 && equal, "%s (%s)", what,
                  r < 0   ? svemig_error_str(&err, r)
                  : equal ? "bit-exact"
                          : diff);
}

static int do_roundtrip(struct hv *hv, const uint8_t *image, size_t size, const struct hv_caps *caps)
{
        _cleanup_(guest_destroyp) struct guest *g = NULL, *restored = NULL, *unbroken = NULL;
        struct reports rep, rep_restored, rep_unbroken;
        struct svemig_error err = {0};
        char path[] = "/tmp/roundtrip-XXXXXX";
        _cleanup_close_ int fd = mkstemp(path);
        int r;

        if (!rig_check(fd >= 0, "roundtrip-tmpfile (%s)", strerror(errno)))
                return -EIO;
        r = workload_guest(hv, image, size, NULL, &rep, &g, &err);
        if (r == 0)
                r = workload_guest(hv, image, size, NULL, &rep_unbroken, &unbroken, &err);
        if (!rig_check(r == 0, "roundtrip-create-guests (%s)", svemig_error_str(&err, r)))
                return r;

        if (!run_to(g, &rep, K_SNAPSHOT, "roundtrip-first-leg"))
                return -EIO;
        check_model(g, caps->max_vq, K_SNAPSHOT, "roundtrip-at-k");
        r = snapshot_save(g, path, NULL, NULL, &err);
        if (!rig_check(r == 0, "roundtrip-snapshot-save (%s)", svemig_error_str(&err, r)))
                return r;
        r = snapshot_load(hv, path, NULL, &restored, &err);
        unlink(path);
        if (!rig_check(r == 0, "roundtrip-snapshot-load-new-vm (%s)", svemig_error_str(&err, r)))
                return r;
        rig_check(guest_ram_base(restored) == 0, "roundtrip-restored-ram-at-ipa-0 (0x%llx)",
                  (unsigned long long)guest_ram_base(restored));
        check_same(g, restored, "roundtrip-restored-equals-saved");

        guest_set_mmio_handler(restored, on_mmio, &rep_restored);
        if (!run_to(restored, &rep_restored, K_FINAL, "roundtrip-restored"))
                return -EIO;
        check_resumed_past_report(&rep_restored, "roundtrip-restored");
        /* The reference never stopped before 3K. */
        if (!run_to(unbroken, &rep_unbroken, K_FINAL, "roundtrip-unbroken"))
                return -EIO;
        rig_check(rep_unbroken.n == 1, "roundtrip-unbroken-reported-once (%u)", rep_unbroken.n);
        check_model(restored, caps->max_vq, K_FINAL, "roundtrip-restored-at-3k");
        check_same(restored, unbroken, "roundtrip-restored-equals-unbroken-run");
        /* The original, continued in its own VM, is the same guest too. */
        if (run_to(g, &rep, K_FINAL, "roundtrip-original"))
                check_same(g, restored, "roundtrip-original-equals-restored");
        printf("RIG-INFO restored at %u of %u bits, continued from %u to %u iterations: bit-exact\n",
               vq_to_bits(guest_vq(restored)), vq_to_bits(caps->max_vq), K_SNAPSHOT, K_FINAL);
        return 0;
}

static int do_save(struct hv *hv, const uint8_t *image, size_t size, const char *file, const vqset_t *vls,
                   const struct hv_caps *caps)
{
        _cleanup_(guest_destroyp) struct guest *g = NULL;
        struct svemig_stream_stats stats = {0};
        struct svemig_error err = {0};
        vqset_t guest_vls = {{0}};
        struct reports rep;
        char set[128];
        unsigned vq;
        int r;

        r = workload_guest(hv, image, size, vqset_empty(vls) ? NULL : vls, &rep, &g, &err);
        if (!rig_check(r == 0, "save-create-guest (%s)", svemig_error_str(&err, r)))
                return r;
        hv_vcpu_get_reg(guest_vcpu(g, 0), kvmreg_vls(), guest_vls.w);
        vq = vqset_highest(&guest_vls);
        rig_check(vq == (vqset_empty(vls) ? caps->max_vq : vqset_highest(vls)), "save-guest-vl (%u bits)",
                  vq_to_bits(vq));
        if (!run_to(g, &rep, K_SNAPSHOT, "save"))
                return -EIO;
        check_model(g, vq, K_SNAPSHOT, "save-at-k");
        r = snapshot_save(g, file, NULL, &stats, &err);
        if (!rig_check(r == 0, "save-snapshot (%s)", svemig_error_str(&err, r)))
                return r;
        vqset_format(&guest_vls, VQSET_FORMAT_BITS, set, sizeof(set));
        printf("RIG-INFO saved %s: guest VLs %s bits, stopped at %u iterations, %llu bytes\n", file, set,
               K_SNAPSHOT, (unsigned long long)stats.bytes);
        return 0;
}

static int do_restore(struct hv *hv, const char *file, unsigned expect_bits, const char *image_path)
{
        _cleanup_(guest_destroyp) struct guest *g = NULL, *native = NULL;
        _cleanup_free_ uint8_t *image = NULL;
        struct svemig_error err = {0};
        struct reports rep, rep_native;
        size_t size = 0;
        vqset_t vls = {{0}};
        unsigned vq;
        int r;

        r = snapshot_load(hv, file, NULL, &g, &err);
        if (!rig_check(r == 0, "restore-snapshot-load (%s)", svemig_error_str(&err, r)))
                return r;
        hv_vcpu_get_reg(guest_vcpu(g, 0), kvmreg_vls(), vls.w);
        vq = vqset_highest(&vls);
        if (expect_bits)
                rig_check(vq_to_bits(vq) == expect_bits, "restore-guest-vl (%u bits, expected %u)",
                          vq_to_bits(vq), expect_bits);
        check_model(g, vq, K_SNAPSHOT, "restore-at-k");

        guest_set_mmio_handler(g, on_mmio, &rep);
        if (!run_to(g, &rep, K_FINAL, "restore-continued"))
                return -EIO;
        check_resumed_past_report(&rep, "restore-continued");
        check_model(g, vq, K_FINAL, "restore-at-3k");

        if (image_path) {
                r = read_file(image_path, &image, &size, &err);
                if (r == 0)
                        r = workload_guest(hv, image, size, &vls, &rep_native, &native, &err);
                if (!rig_check(r == 0, "restore-native-guest (%s)", svemig_error_str(&err, r)))
                        return r;
                if (run_to(native, &rep_native, K_FINAL, "restore-native"))
                        check_same(g, native, "restore-equals-native-run");
        }
        printf("RIG-INFO restored %s at %u bits, continued from %u to %u iterations: %s\n", file,
               vq_to_bits(vq), K_SNAPSHOT, K_FINAL,
               rig_failures() ? "FAILED"
               : image_path   ? "matches the model, bit-exact against a run here"
                              : "matches the model");
        return 0;
}

/* The restore's progress: any memory reported means the refusal came too late. */
static int count_memory(void *userdata, const char *phase, uint64_t done, uint64_t total)
{
        if (strcmp(phase, "vcpus") != 0)
                ++*(unsigned *)userdata;
        return 0;
}

static int do_refuse(struct hv *hv, const char *file, unsigned expect_vq, const char *expect)
{
        _cleanup_(guest_destroyp) struct guest *g = NULL;
        struct svemig_error err = {0};
        unsigned progressed = 0;
        struct snapshot_opts opts = {.progress = count_memory, .userdata = &progressed};
        char needle[64];
        int r;

        r = snapshot_load(hv, file, &opts, &g, &err);
        if (expect)
                snprintf(needle, sizeof(needle), "%s", expect);
        else
                snprintf(needle, sizeof(needle), "vq %u (%u-bit) is missing", expect_vq,
                         vq_to_bits(expect_vq));
        rig_check(r == -EINVAL, "refuse-einval (%d: %s)", r, r < 0 ? svemig_error_str(&err, r) : "loaded");
        rig_check(r < 0 && strstr(err.msg, needle), "refuse-reason (wanted \"%s\")", needle);
        rig_check(progressed == 0 && !g, "refuse-before-memory (%u progress calls)", progressed);
        printf("RIG-INFO refused %s: %s\n", file, r < 0 ? err.msg : "(it loaded)");
        return 0;
}

static int usage(void)
{
        fprintf(stderr, "usage: snapshot-run roundtrip IMAGE\n"
                        "       snapshot-run save IMAGE FILE [--vls SET]\n"
                        "       snapshot-run restore FILE [--expect-vl BITS] [--image IMAGE]\n"
                        "       snapshot-run refuse FILE --expect-vq VQ | --expect TEXT\n");
        return 2;
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"vls", required_argument, NULL, 'v'},       {"expect-vl", required_argument, NULL, 'l'},
                {"expect-vq", required_argument, NULL, 'q'}, {"image", required_argument, NULL, 'i'},
                {"expect", required_argument, NULL, 'e'},    {},
        };
        _cleanup_free_ uint8_t *image = NULL;
        struct svemig_error err = {0};
        const char *mode, *image_path = NULL, *expect = NULL;
        unsigned expect_bits = 0, expect_vq = 0;
        struct hv *hv = NULL;
        struct hv_caps caps;
        vqset_t vls = {{0}};
        size_t size = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'v':
                        if (vqset_parse(optarg, &vls, &err) < 0) {
                                fprintf(stderr, "snapshot-run: --vls %s: %s\n", optarg, err.msg);
                                return 2;
                        }
                        break;
                case 'l':
                        expect_bits = (unsigned)strtoul(optarg, NULL, 0);
                        break;
                case 'q':
                        expect_vq = (unsigned)strtoul(optarg, NULL, 0);
                        break;
                case 'i':
                        image_path = optarg;
                        break;
                case 'e':
                        expect = optarg;
                        break;
                default:
                        return usage();
                }
        if (optind >= argc)
                return usage();
        mode = argv[optind++];
        if (!((strcmp(mode, "roundtrip") == 0 && argc - optind == 1) ||
              (strcmp(mode, "save") == 0 && argc - optind == 2) ||
              (strcmp(mode, "restore") == 0 && argc - optind == 1) ||
              (strcmp(mode, "refuse") == 0 && argc - optind == 1 && (expect_vq || expect))))
                return usage();

        alarm(WATCHDOG_S);
        r = open_kvm(&hv, &caps, &err);
        if (r == -ENOTSUP) {
                printf("SKIP %s: %s\n", mode, err.msg);
                return 77;
        }
        if (r == 0 && (strcmp(mode, "roundtrip") == 0 || strcmp(mode, "save") == 0))
                r = read_file(argv[optind], &image, &size, &err);
        if (r < 0) {
                fprintf(stderr, "snapshot-run: %s\n", svemig_error_str(&err, r));
                printf("0 passed, 1 failed\n");
                hv_close(hv);
                return 1;
        }

        if (strcmp(mode, "roundtrip") == 0)
                do_roundtrip(hv, image, size, &caps);
        else if (strcmp(mode, "save") == 0)
                do_save(hv, image, size, argv[optind + 1], &vls, &caps);
        else if (strcmp(mode, "restore") == 0)
                do_restore(hv, argv[optind], expect_bits, image_path);
        else
                do_refuse(hv, argv[optind], expect_vq, expect);
        hv_close(hv);
        return rig_summary();
}
