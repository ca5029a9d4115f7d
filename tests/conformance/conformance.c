/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The conformance suite's runner:
 *
 *   conformance --backend sim [--sim-cpus "128,256,512;128,256"] [--sim-kernel 6.1] [--sim-nvhe]
 *   conformance --backend kvm [--kvm-path /dev/kvm]
 *   common: [--expect-vls 0xb] [--case NAME]...
 *
 * --sim-cpus takes one VQ map per simulated CPU, separated by ';', each in any
 * form vqset_parse() reads ("none" is a CPU without SVE); --sim-nvhe models KVM
 * in nVHE mode. --expect-vls checks
 * the VLS the backend reports (the rig passes what QEMU was told to emulate).
 * Prints one line per case, "PASS name", "FAIL name: why" or "SKIP name:
 * why", then "N passed, M failed"; exits 1 when a case failed.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "conformance.h"

#define MAX_SIM_CPUS 64
#define MAX_ONLY     32

void conf_fail(struct conf *c, const char *file, int line, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (c->failed)
                return;
        c->failed = true;
        n = snprintf(c->why, sizeof(c->why), "%s:%d: ", file, line);
        va_start(ap, fmt);
        vsnprintf(c->why + n, sizeof(c->why) - n, fmt, ap);
        va_end(ap);
}

void conf_skip(struct conf *c, const char *fmt, ...)
{
        va_list ap;

        c->skipped = true;
        va_start(ap, fmt);
        vsnprintf(c->why, sizeof(c->why), fmt, ap);
        va_end(ap);
}

const char *conf_errno_name(int r)
{
        static __thread char buf[32];

        switch (r) {
        case 0:
                return "0";
        case -EINVAL:
                return "-EINVAL";
        case -EPERM:
                return "-EPERM";
        case -ENOENT:
                return "-ENOENT";
        case -E2BIG:
                return "-E2BIG";
        case -ENOEXEC:
                return "-ENOEXEC";
        case -EEXIST:
                return "-EEXIST";
        case -EBUSY:
                return "-EBUSY";
        case -EFAULT:
                return "-EFAULT";
        case -ENODEV:
                return "-ENODEV";
        default:
                snprintf(buf, sizeof(buf), "%d (%s)", r, r < 0 ? strerror(-r) : "?");
                return buf;
        }
}

int conf_vcpu(struct conf *c, struct hv_vm **vm, struct hv_vcpu **vcpu, bool init, uint32_t features,
              bool finalize)
{
        struct svemig_error err = {0};
        int r;

        r = hv_vm_create(c->hv, vm, &err);
        if (r < 0) {
                conf_fail(c, __FILE__, __LINE__, "hv_vm_create: %s", svemig_error_str(&err, r));
                return r;
        }
        r = hv_vcpu_create(*vm, 0, vcpu, &err);
        if (r < 0) {
                conf_fail(c, __FILE__, __LINE__, "hv_vcpu_create: %s", svemig_error_str(&err, r));
                return r;
        }
        if (!init)
                return 0;
        r = hv_vcpu_init(*vcpu, features);
        if (r < 0) {
                conf_fail(c, __FILE__, __LINE__, "hv_vcpu_init(0x%x): %s", features, conf_errno_name(r));
                return r;
        }
        if (finalize && (features & HV_FEAT_BIT(HV_FEAT_SVE))) {
                r = hv_vcpu_finalize(*vcpu, HV_FEAT_SVE);
                if (r < 0) {
                        conf_fail(c, __FILE__, __LINE__, "hv_vcpu_finalize: %s", conf_errno_name(r));
                        return r;
                }
        }
        return 0;
}

uint64_t *conf_reg_list(struct conf *c, struct hv_vcpu *vcpu, size_t *n)
{
        uint64_t *ids;
        size_t want = 0;
        int r;

        r = hv_vcpu_reg_list(vcpu, NULL, &want);
        if (r != -E2BIG && r != 0) {
                conf_fail(c, __FILE__, __LINE__, "reg list size query: %s", conf_errno_name(r));
                return NULL;
        }
        ids = calloc(want + 1, sizeof(*ids));
        if (!ids) {
                conf_fail(c, __FILE__, __LINE__, "out of memory");
                return NULL;
        }
        *n = want;
        r = hv_vcpu_reg_list(vcpu, ids, n);
        if (r < 0 || *n != want) {
                conf_fail(c, __FILE__, __LINE__, "reg list: %s, %zu registers after %zu", conf_errno_name(r),
                          *n, want);
                free(ids);
                return NULL;
        }
        return ids;
}

static int parse_sim_cpus(const char *text, vqset_t *maps, size_t *n)
{
        _cleanup_free_ char *copy = strdup(text);
        char *save = NULL;
        struct svemig_error err = {0};

        if (!copy)
                return -ENOMEM;
        *n = 0;
        for (char *tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
                if (*n == MAX_SIM_CPUS) {
                        fprintf(stderr, "conformance: at most %d simulated CPUs\n", MAX_SIM_CPUS);
                        return -EINVAL;
                }
                if (vqset_parse(tok, &maps[(*n)++], &err) < 0) {
                        fprintf(stderr, "conformance: --sim-cpus '%s': %s\n", tok, err.msg);
                        return -EINVAL;
                }
        }
        if (*n == 0) {
                fprintf(stderr, "conformance: --sim-cpus needs at least one VQ map\n");
                return -EINVAL;
        }
        return 0;
}

static bool selected(const char *name, const char *const *only, size_t n_only)
{
        if (n_only == 0)
                return true;
        for (size_t i = 0; i < n_only; i++)
                if (strcmp(name, only[i]) == 0)
                        return true;
        return false;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: conformance --backend sim|kvm [--sim-cpus MAP[;MAP...]] [--sim-kernel 6.1|6.12]\n"
                   "                   [--sim-nvhe]"
                   " [--kvm-path PATH] [--expect-vls VLS] [--case NAME]...\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"backend", required_argument, NULL, 'b'},
                {"sim-cpus", required_argument, NULL, 'c'},
                {"sim-kernel", required_argument, NULL, 'k'},
                {"sim-nvhe", no_argument, NULL, 'n'},
                {"kvm-path", required_argument, NULL, 'p'},
                {"expect-vls", required_argument, NULL, 'e'},
                {"case", required_argument, NULL, 'o'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        static const struct {
                const struct conf_case *cases;
                const size_t *n;
        } files[] = {
                {conf_cases_setup, &conf_n_cases_setup},   {conf_cases_sve, &conf_n_cases_sve},
                {conf_cases_regs, &conf_n_cases_regs},     {conf_cases_vm, &conf_n_cases_vm},
                {conf_cases_idregs, &conf_n_cases_idregs},
        };
        struct hv_config cfg = {.backend = HV_BACKEND_SIM};
        vqset_t maps[MAX_SIM_CPUS], expect;
        const char *only[MAX_ONLY];
        size_t n_only = 0;
        bool check_vls = false;
        struct svemig_error err = {0};
        struct conf c = {0};
        unsigned passed = 0, failed = 0, skipped = 0;
        char vls[160];
        int opt, r;

        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'b':
                        if (strcmp(optarg, "sim") == 0)
                                cfg.backend = HV_BACKEND_SIM;
                        else if (strcmp(optarg, "kvm") == 0)
                                cfg.backend = HV_BACKEND_KVM;
                        else if (strcmp(optarg, "auto") == 0)
                                cfg.backend = HV_BACKEND_AUTO;
                        else {
                                fprintf(stderr, "conformance: --backend is sim, kvm or auto, not '%s'\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'c':
                        if (parse_sim_cpus(optarg, maps, &cfg.sim.n_cpus) < 0)
                                return 2;
                        cfg.sim.cpu_maps = maps;
                        break;
                case 'k':
                        cfg.sim.kernel = optarg;
                        break;
                case 'n':
                        cfg.sim.nvhe = true;
                        break;
                case 'p':
                        cfg.kvm_path = optarg;
                        break;
                case 'e':
                        if (vqset_parse(optarg, &expect, &err) < 0) {
                                fprintf(stderr, "conformance: --expect-vls: %s\n", err.msg);
                                return 2;
                        }
                        check_vls = true;
                        break;
                case 'o':
                        if (n_only == MAX_ONLY) {
                                fprintf(stderr, "conformance: at most %d --case options\n", MAX_ONLY);
                                return 2;
                        }
                        only[n_only++] = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                usage(stderr);
                return 2;
        }

        r = hv_open(&cfg, &c.hv, &err);
        if (r < 0) {
                fprintf(stderr, "conformance: %s\n", svemig_error_str(&err, r));
                printf("0 passed, 1 failed\n");
                return 1;
        }
        hv_get_caps(c.hv, &c.caps);
        vqset_format(&c.caps.vls, VQSET_FORMAT_BITMAP, vls, sizeof(vls));
        printf("# backend %s, kernel %s, host %s, SVE %s, VLS %s, IPA %u bits, %u vcpus max, %u CPUs\n",
               c.caps.backend, c.caps.kernel, c.caps.host_name, c.caps.sve ? "yes" : "no", vls,
               c.caps.ipa_bits, c.caps.max_vcpus, c.caps.n_cpus);
        printf("RIG-INFO backend=%s kernel=%s vls=%s sve=%d ipa=%u\n", c.caps.backend, c.caps.kernel, vls,
               c.caps.sve, c.caps.ipa_bits);

        if (check_vls) {
                /* Not a case: it is what every case's expectations rest on. */
                char want[160];

                vqset_format(&expect, VQSET_FORMAT_BITMAP, want, sizeof(want));
                if (vqset_equal(&expect, &c.caps.vls))
                        printf("PASS host-vls (%s)\n", vls);
                else
                        printf("FAIL host-vls: the backend offers VLS %s, the host was set up for %s\n", vls,
                               want);
                vqset_equal(&expect, &c.caps.vls) ? passed++ : failed++;
        }

        for (size_t f = 0; f < ELEMENTSOF(files); f++)
                for (size_t i = 0; i < *files[f].n; i++) {
                        const struct conf_case *cc = &files[f].cases[i];

                        if (!selected(cc->name, only, n_only))
                                continue;
                        c.failed = c.skipped = false;
                        c.why[0] = 0;
                        cc->run(&c);
                        if (c.failed) {
                                printf("FAIL %s: %s\n", cc->name, c.why);
                                failed++;
                        } else if (c.skipped) {
                                printf("SKIP %s: %s\n", cc->name, c.why);
                                skipped++;
                        } else {
                                printf("PASS %s\n", cc->name);
                                passed++;
                        }
                        fflush(stdout);
                }

        hv_close(c.hv);
        if (skipped)
                printf("# %u skipped (not applicable to this host)\n", skipped);
        printf("%u passed, %u failed\n", passed, failed);
        return failed ? 1 : 0;
}
