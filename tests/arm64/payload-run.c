/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Runs a bare aarch64 payload (tests/arm64/payloads/) on the real KVM through
 * the hv interface, inside the rig, and checks what it did:
 *
 *   payload-run rdvl IMAGE       RDVL reported by MMIO equals the vcpu's
 *                                maximum VL; PSCI SYSTEM_OFF ends the run
 *   payload-run workload IMAGE   the SVE workload's registers, memory and
 *                                dirty pages after K and then 3K iterations
 *                                equal the host's model of them
 *   payload-run result VQ        prints what payloads/countdown.S reports when
 *                                it ends having run at vq (the model's value,
 *                                for the live-migration case of tests/arm64/init)
 *
 * The VM: 64 KiB of RAM at IPA 0 holding the image, one vcpu with SVE at the
 * host's full VLS, entered at 0x800 in EL1h with SVE enabled (ARM64-RIG.md).
 * Prints "PASS/FAIL check" lines and "N passed, M failed"; exits 77 on a host
 * without SVE.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "macro.h"
#include "rig-check.h"
#include "svemig/hv.h"
#include "svemig/kvmreg.h"
#include "payloads/countdown.h"
#include "workload-model.h"

#define RAM_SIZE      WORKLOAD_RAM_SIZE
#define RAM_PAGES     (RAM_SIZE / HV_PAGE_SIZE)
#define ENTRY         WORKLOAD_ENTRY
#define MMIO_REPORT   WORKLOAD_MMIO_REPORT
#define BUF_GPA       WORKLOAD_BUF_GPA
#define COUNT_GPA     WORKLOAD_COUNT_GPA
#define PSTATE_EL1H   0x3c5ull
#define CPACR_SVE     0x330000ull /* FPEN = ZEN = 0b11: no FP/SVE traps at EL1 */
#define ZCR_MAX_LEN   0xfull
#define PSCI_SHUTDOWN 1 /* KVM_SYSTEM_EVENT_SHUTDOWN */

struct guest {
        struct hv *hv;
        struct hv_caps caps;
        struct hv_vm *vm;
        struct hv_vcpu *vcpu;
        uint8_t *ram;
};

static void guest_done(struct guest *g)
{
        hv_vcpu_destroy(g->vcpu);
        hv_vm_destroy(g->vm);
        hv_close(g->hv);
        if (g->ram)
                munmap(g->ram, RAM_SIZE);
}

static int load_image(const char *path, uint8_t *ram, struct svemig_error *err)
{
        FILE *f = fopen(path, "rb");
        size_t n;

        if (!f)
                return svemig_error_set(err, errno, "cannot open payload %s: %m", path);
        n = fread(ram, 1, RAM_SIZE, f);
        fclose(f);
        if (n <= ENTRY)
                return svemig_error_set(err, EINVAL, "payload %s is %zu bytes: it has no code at 0x%x", path,
                                        n, ENTRY);
        return 0;
}

static int guest_start(struct guest *g, const char *image, struct svemig_error *err)
{
        struct hv_config cfg = {.backend = HV_BACKEND_KVM};
        const uint64_t pc = ENTRY, pstate = PSTATE_EL1H, cpacr = CPACR_SVE, zcr = ZCR_MAX_LEN;
        int r;

        r = hv_open(&cfg, &g->hv, err);
        if (r < 0)
                return r;
        hv_get_caps(g->hv, &g->caps);
        if (!g->caps.sve)
                return svemig_error_set(err, ENOTSUP, "the host has no SVE: the payloads need it");
        g->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (g->ram == MAP_FAILED) {
                g->ram = NULL;
                return svemig_error_set(err, errno, "cannot allocate guest RAM: %m");
        }
        r = load_image(image, g->ram, err);
        if (r < 0)
                return r;
        r = hv_vm_create(g->hv, &g->vm, err);
        if (r < 0)
                return r;
        r = hv_vm_set_memslot(g->vm, 0, 0, RAM_SIZE, g->ram, HV_MEM_LOG_DIRTY, err);
        if (r < 0)
                return r;
        r = hv_vcpu_create(g->vm, 0, &g->vcpu, err);
        if (r < 0)
                return r;
        r = hv_vcpu_init(g->vcpu, HV_FEAT_BIT(HV_FEAT_PSCI_0_2) | HV_FEAT_BIT(HV_FEAT_SVE));
        if (r == 0)
                r = hv_vcpu_finalize(g->vcpu, HV_FEAT_SVE);
        if (r == 0)
                r = hv_vcpu_set_reg(g->vcpu, kvmreg_core_pc(), &pc);
        if (r == 0)
                r = hv_vcpu_set_reg(g->vcpu, kvmreg_core_pstate(), &pstate);
        if (r == 0)
                r = hv_vcpu_set_reg(g->vcpu, KVMREG_CPACR_EL1, &cpacr);
        if (r == 0)
                r = hv_vcpu_set_reg(g->vcpu, KVMREG_ZCR_EL1, &zcr);
        if (r < 0)
                return svemig_error_set(err, r, "setting up the vcpu failed: %s", strerror(-r));
        return 0;
}

/* Runs until an exit other than an interruption; the MMIO report's value in *value. */
static int run_to_report(struct guest *g, struct hv_exit *exit, uint64_t *value)
{
        int r;

        do
                r = hv_vcpu_run(g->vcpu, 0, exit);
        while (r == 0 && exit->reason == HV_EXIT_INTR);
        if (r == 0 && exit->reason == HV_EXIT_MMIO && value) {
                *value = 0;
                memcpy(value, exit->mmio.data, MIN(exit->mmio.len, (uint32_t)sizeof(*value)));
        }
        return r;
}

static int run_rdvl(struct guest *g)
{
        unsigned want = vq_to_bits(g->caps.max_vq);
        struct hv_exit exit;
        uint64_t vl = 0;
        int r;

        r = run_to_report(g, &exit, &vl);
        if (!rig_check(r == 0 && exit.reason == HV_EXIT_MMIO && exit.mmio.is_write &&
                               exit.mmio.addr == MMIO_REPORT,
                       "rdvl-mmio-report (run %d, exit %d, addr 0x%llx)", r, exit.reason,
                       (unsigned long long)exit.mmio.addr))
                return -EIO;
        printf("RIG-INFO rdvl=%llu max_vl=%u\n", (unsigned long long)vl, want);
        rig_check(vl == want, "rdvl-equals-max-vl (%llu bits, the vcpu's maximum is %u)",
                  (unsigned long long)vl, want);
        r = run_to_report(g, &exit, NULL);
        rig_check(r == 0 && exit.reason == HV_EXIT_SYSTEM_EVENT && exit.system_event == PSCI_SHUTDOWN,
                  "psci-system-off-exit (run %d, exit %d, event %u)", r, exit.reason, exit.system_event);
        return 0;
}

static void check_workload_state(struct guest *g, uint64_t k)
{
        unsigned vq = g->caps.max_vq;
        uint8_t z[KVMREG_ZREG_SLICE_BYTES], p[KVMREG_PREG_SLICE_BYTES];
        uint64_t x2 = 0, count;

        memcpy(&count, g->ram + COUNT_GPA, sizeof(count));
        rig_check(count == k, "workload-counter-in-memory (%llu, expected %llu)", (unsigned long long)count,
                  (unsigned long long)k);
        rig_check(hv_vcpu_get_reg(g->vcpu, kvmreg_core_x(2), &x2) == 0 && x2 == k, "workload-x2 (%llu)",
                  (unsigned long long)x2);
        rig_check(workload_buf_matches(g->ram + BUF_GPA, KVMREG_ZREG_SLICE_BYTES, vq, k),
                  "workload-memory-matches-model (%u lanes, k=%llu)", 2 * vq, (unsigned long long)k);
        rig_check(hv_vcpu_get_reg(g->vcpu, kvmreg_zreg(0, 0), z) == 0 &&
                          workload_z0_matches(z, sizeof(z), vq, k),
                  "workload-z0-matches-model");
        rig_check(hv_vcpu_get_reg(g->vcpu, kvmreg_zreg(1, 0), z) == 0 &&
                          workload_buf_matches(z, sizeof(z), vq, k),
                  "workload-z1-matches-model");
        /* ptrue p0.d: one predicate bit per byte, the lowest of each doubleword's 8. */
        rig_check(hv_vcpu_get_reg(g->vcpu, kvmreg_preg(0, 0), p) == 0 &&
                          workload_p0_matches(p, sizeof(p), vq),
                  "workload-p0-ptrue-d");
}

static int run_workload(struct guest *g)
{
        static const uint64_t stops[] = {1000, 3000};
        uint64_t bitmap[DIV_ROUND_UP(RAM_PAGES, 64)], value = 0;
        struct svemig_error err = {0};
        struct hv_exit exit;
        int r;

        for (size_t s = 0; s < ELEMENTSOF(stops); s++) {
                uint64_t k = stops[s];

                /* x0 is where the workload stops to report; moving it resumes the loop. */
                if (!rig_check(hv_vcpu_set_reg(g->vcpu, kvmreg_core_x(0), &k) == 0, "workload-set-x0"))
                        return -EIO;
                r = run_to_report(g, &exit, &value);
                if (!rig_check(r == 0 && exit.reason == HV_EXIT_MMIO && exit.mmio.addr == MMIO_REPORT &&
                                       value == k,
                               "workload-report-at-%llu (run %d, exit %d, value %llu)",
                               (unsigned long long)k, r, exit.reason, (unsigned long long)value))
                        return -EIO;
                check_workload_state(g, k);

                /* The guest wrote the buffer (page 2) and the counter (page 3), nothing else. */
                r = hv_vm_get_dirty_log(g->vm, 0, bitmap, &err);
                rig_check(r == 0 && bitmap[0] == ((1ull << (BUF_GPA / HV_PAGE_SIZE)) |
                                                  (1ull << (COUNT_GPA / HV_PAGE_SIZE))),
                          "workload-dirty-log-pages-2-3 (rc %d, bitmap 0x%llx)", r,
                          (unsigned long long)bitmap[0]);
                r = hv_vm_get_dirty_log(g->vm, 0, bitmap, &err);
                rig_check(r == 0 && bitmap[0] == 0, "workload-dirty-log-cleared (bitmap 0x%llx)",
                          (unsigned long long)bitmap[0]);
        }
        return 0;
}

int main(int argc, char **argv)
{
        _cleanup_(guest_done) struct guest g = {0};
        struct svemig_error err = {0};
        int r;

        if (argc == 3 && strcmp(argv[1], "result") == 0) {
                unsigned long vq = strtoul(argv[2], NULL, 0);

                if (vq < 1 || vq > 16) {
                        fprintf(stderr, "payload-run result: a vq from 1 to 16, not '%s'\n", argv[2]);
                        return 2;
                }
                printf("%llu\n", (unsigned long long)workload_result((unsigned)vq, COUNTDOWN_ITERS));
                return 0;
        }
        if (argc != 3 || (strcmp(argv[1], "rdvl") != 0 && strcmp(argv[1], "workload") != 0)) {
                fprintf(stderr, "usage: payload-run rdvl|workload IMAGE | result VQ\n");
                return 2;
        }
        r = guest_start(&g, argv[2], &err);
        if (r == -ENOTSUP) {
                printf("SKIP %s: %s\n", argv[1], err.msg);
                return 77;
        }
        if (r < 0) {
                fprintf(stderr, "payload-run: %s\n", svemig_error_str(&err, r));
                printf("0 passed, 1 failed\n");
                return 1;
        }
        if (strcmp(argv[1], "rdvl") == 0)
                run_rdvl(&g);
        else
                run_workload(&g);
        return rig_summary();
}
