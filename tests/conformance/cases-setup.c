/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Host caps and the vcpu setup order: KVM_ARM_VCPU_INIT with features, then
 * (for SVE) KVM_ARM_VCPU_FINALIZE, then register access and KVM_RUN.
 */
#include "conformance.h"

static void caps_consistent(struct conf *c)
{
        CHECK(c, strcmp(c->caps.backend, hv_backend_name(c->hv)) == 0, "caps say backend '%s', hv says '%s'",
              c->caps.backend, hv_backend_name(c->hv));
        CHECK(c, c->caps.sve == !vqset_empty(&c->caps.vls), "KVM_CAP_ARM_SVE is %d but the VLS is %s",
              c->caps.sve, vqset_empty(&c->caps.vls) ? "empty" : "not empty");
        CHECK(c, c->caps.max_vq == vqset_highest(&c->caps.vls), "max_vq %u, VLS maximum %u", c->caps.max_vq,
              vqset_highest(&c->caps.vls));
        CHECK(c, c->caps.max_vq <= VQSET_VQ_ARCH_MAX, "max_vq %u beyond the architecture", c->caps.max_vq);
        CHECK(c, c->caps.ipa_bits >= 32 && c->caps.ipa_bits <= 52, "IPA size %u bits", c->caps.ipa_bits);
        CHECK(c, c->caps.max_vcpus >= 1, "KVM_CAP_MAX_VCPUS is %u", c->caps.max_vcpus);
        CHECK(c, c->caps.kernel[0] != 0, "no kernel release");
}

/* kvm_vcpu_enable_sve(): SVE on a host without it is EINVAL. */
static void init_sve_without_host_sve(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;

        SKIP_UNLESS(c, !c->caps.sve, "the host has SVE");
        if (conf_vcpu(c, &vm, &vcpu, false, 0, false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_init(vcpu, FEAT_SVE), -EINVAL);
        CHECK_RC(c, hv_vcpu_init(vcpu, FEAT_PSCI), 0);
}

/* Features at or above KVM_VCPU_MAX_FEATURES are ENOENT. */
static void init_unknown_feature(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;

        if (conf_vcpu(c, &vm, &vcpu, false, 0, false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_init(vcpu, FEAT_PSCI | (1u << 31)), -ENOENT);
}

/*
 * A second KVM_ARM_VCPU_INIT must repeat the first one's features. POWER_OFF
 * is no feature of the vcpu but its initial state: 6.1 refuses a change of it
 * too (EINVAL), 6.12 takes it (measured on the rig).
 */
static void init_again(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        bool v6_1 = strncmp(c->caps.kernel, "6.1.", 4) == 0 || strcmp(c->caps.kernel, "6.1") == 0;
        uint32_t off = FEAT_PSCI | HV_FEAT_BIT(HV_FEAT_POWER_OFF);

        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_PSCI, false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_init(vcpu, FEAT_PSCI), 0);
        CHECK_RC(c, hv_vcpu_init(vcpu, FEAT_SVE), -EINVAL);
        CHECK(c, hv_vcpu_features(vcpu) == FEAT_PSCI, "features 0x%x after a refused init",
              hv_vcpu_features(vcpu));
        CHECK_RC(c, hv_vcpu_init(vcpu, off), v6_1 ? -EINVAL : 0);
        CHECK(c, hv_vcpu_features(vcpu) == (v6_1 ? FEAT_PSCI : off),
              "features 0x%x after the init with POWER_OFF", hv_vcpu_features(vcpu));
}

/* Every vcpu ioctl but INIT is ENOEXEC before KVM_ARM_VCPU_INIT. */
static void before_init(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint64_t v = 0, ids[4];
        size_t n = ELEMENTSOF(ids);
        struct hv_exit exit;

        if (conf_vcpu(c, &vm, &vcpu, false, 0, false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_core_x(0), &v), -ENOEXEC);
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, kvmreg_core_x(0), &v), -ENOEXEC);
        CHECK_RC(c, hv_vcpu_reg_list(vcpu, ids, &n), -ENOEXEC);
        CHECK_RC(c, hv_vcpu_finalize(vcpu, HV_FEAT_SVE), -ENOEXEC);
        CHECK_RC(c, hv_vcpu_run(vcpu, 1, &exit), -ENOEXEC);
}

/* kvm_arm_vcpu_finalize(): EINVAL without SVE or for another feature, EPERM twice. */
static void finalize_rules(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL, *vm2 = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL, *vcpu2 = NULL;

        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_PSCI, false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_finalize(vcpu, HV_FEAT_SVE), -EINVAL);
        SKIP_UNLESS(c, c->caps.sve, "the host has no SVE (the non-SVE part passed)");
        if (conf_vcpu(c, &vm2, &vcpu2, true, FEAT_SVE, false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_finalize(vcpu2, HV_FEAT_PMU_V3), -EINVAL);
        CHECK_RC(c, hv_vcpu_finalize(vcpu2, HV_FEAT_SVE), 0);
        CHECK_RC(c, hv_vcpu_finalize(vcpu2, HV_FEAT_SVE), -EPERM);
}

static void mp_state(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL, *vm2 = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL, *vcpu2 = NULL;
        uint32_t st = 99;

        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_PSCI, false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_get_mp_state(vcpu, &st), 0);
        CHECK(c, st == HV_MP_STATE_RUNNABLE, "mp_state %u after init, expected RUNNABLE", st);
        CHECK_RC(c, hv_vcpu_set_mp_state(vcpu, HV_MP_STATE_STOPPED), 0);
        CHECK_RC(c, hv_vcpu_get_mp_state(vcpu, &st), 0);
        CHECK(c, st == HV_MP_STATE_STOPPED, "mp_state %u, expected STOPPED", st);
        CHECK_RC(c, hv_vcpu_set_mp_state(vcpu, HV_MP_STATE_RUNNABLE), 0);
        CHECK_RC(c, hv_vcpu_set_mp_state(vcpu, 42), -EINVAL);

        /* KVM_ARM_VCPU_POWER_OFF: the vcpu starts stopped. */
        if (conf_vcpu(c, &vm2, &vcpu2, true, FEAT_PSCI | HV_FEAT_BIT(HV_FEAT_POWER_OFF), false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_get_mp_state(vcpu2, &st), 0);
        CHECK(c, st == HV_MP_STATE_STOPPED, "mp_state %u after init with POWER_OFF, expected STOPPED", st);
}

const struct conf_case conf_cases_setup[] = {
        {"caps-consistent", caps_consistent},
        {"init-sve-without-host-sve-einval", init_sve_without_host_sve},
        {"init-unknown-feature-enoent", init_unknown_feature},
        {"init-again-same-features-only", init_again},
        {"before-init-enoexec", before_init},
        {"finalize-rules", finalize_rules},
        {"mp-state", mp_state},
};
const size_t conf_n_cases_setup = ELEMENTSOF(conf_cases_setup);
