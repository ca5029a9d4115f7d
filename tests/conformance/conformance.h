/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The backend conformance suite: one set of cases written against the hv
 * interface only, run on the sim everywhere and on the real arm64 KVM in the
 * rig (tests/arm64/). Each case states a fact of DESIGN.md "The KVM arm64
 * SVE ABI" (taken from arch/arm64/kvm/ of Linux 6.1) and fails when the
 * backend disagrees; a disagreement on the sim is a sim bug.
 *
 * A case is a void function. The CHECK macros record the first failure of
 * the running case and return from it; cleanup attributes release what the
 * case made.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "macro.h"
#include "svemig/hv.h"
#include "svemig/kvmreg.h"
#include "svemig/vqset.h"

struct conf {
        struct hv *hv;
        struct hv_caps caps;
        /* The running case. */
        bool failed;
        bool skipped;
        char why[512];
};

struct conf_case {
        const char *name;
        void (*run)(struct conf *c);
};

void conf_fail(struct conf *c, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void conf_skip(struct conf *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *conf_errno_name(int r);

#define CHECK(c, cond, ...)                                                                                 \
        do {                                                                                                \
                if (!(cond)) {                                                                              \
                        conf_fail((c), __FILE__, __LINE__, __VA_ARGS__);                                    \
                        return;                                                                             \
                }                                                                                           \
        } while (0)

/* expr must return 'want' (0 or a negative errno). */
#define CHECK_RC(c, expr, want)                                                                             \
        do {                                                                                                \
                int _r = (expr), _w = (want);                                                               \
                if (_r != _w) {                                                                             \
                        conf_fail((c), __FILE__, __LINE__, "%s returned %s, expected %s", #expr,            \
                                  conf_errno_name(_r), conf_errno_name(_w));                                \
                        return;                                                                             \
                }                                                                                           \
        } while (0)

#define SKIP_UNLESS(c, cond, ...)                                                                           \
        do {                                                                                                \
                if (!(cond)) {                                                                              \
                        conf_skip((c), __VA_ARGS__);                                                        \
                        return;                                                                             \
                }                                                                                           \
        } while (0)

DEFINE_TRIVIAL_CLEANUP_FUNC(struct hv_vm *, hv_vm_destroy);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct hv_vcpu *, hv_vcpu_destroy);
#define _cleanup_vm_   _cleanup_(hv_vm_destroyp)
#define _cleanup_vcpu_ _cleanup_(hv_vcpu_destroyp)

#define FEAT_PSCI HV_FEAT_BIT(HV_FEAT_PSCI_0_2)
#define FEAT_SVE  (HV_FEAT_BIT(HV_FEAT_PSCI_0_2) | HV_FEAT_BIT(HV_FEAT_SVE))

/*
 * A fresh VM (every case that inits a vcpu uses its own: newer kernels refuse
 * vcpus whose features differ within one VM) with vcpu 0 created, and, when
 * 'init' is set, initialised with 'features' and, for SVE, finalized when
 * 'finalize' is set. 0 or a negative errno; failures are recorded in c.
 */
int conf_vcpu(struct conf *c, struct hv_vm **vm, struct hv_vcpu **vcpu, bool init, uint32_t features,
              bool finalize);

/* The register list of a vcpu, malloc'ed; NULL (recorded in c) on failure. */
uint64_t *conf_reg_list(struct conf *c, struct hv_vcpu *vcpu, size_t *n);

/* The cases, by file. */
extern const struct conf_case conf_cases_setup[];
extern const size_t conf_n_cases_setup;
extern const struct conf_case conf_cases_sve[];
extern const size_t conf_n_cases_sve;
extern const struct conf_case conf_cases_regs[];
extern const size_t conf_n_cases_regs;
extern const struct conf_case conf_cases_vm[];
extern const size_t conf_n_cases_vm;
extern const struct conf_case conf_cases_idregs[];
extern const size_t conf_n_cases_idregs;
