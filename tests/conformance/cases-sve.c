/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SVE: the VLS pseudo-register and its rules, the Z/P/FFR slices, and the
 * FPSIMD view of an SVE vcpu (arch/arm64/kvm/guest.c).
 */
#include <stdio.h>

#include "conformance.h"

#define NEED_SVE(c) SKIP_UNLESS(c, (c)->caps.sve, "the host has no SVE")

static int get_vls(struct hv_vcpu *vcpu, vqset_t *vls)
{
        return hv_vcpu_get_reg(vcpu, kvmreg_vls(), vls->w);
}

static int set_vls(struct hv_vcpu *vcpu, const vqset_t *vls)
{
        return hv_vcpu_set_reg(vcpu, kvmreg_vls(), vls->w);
}

static const char *fmt(const vqset_t *s, char *buf, size_t len)
{
        vqset_format(s, VQSET_FORMAT_BITMAP, buf, len);
        return buf;
}

/* A byte pattern that differs per register, so a mixed-up register shows. */
static void pattern(uint8_t *buf, size_t len, unsigned seed)
{
        for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)(seed * 37 + i * 7 + 1);
}

static void vls_read_before_finalize(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        vqset_t vls;
        char a[160], b[160];

        NEED_SVE(c);
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, false) < 0)
                return;
        CHECK_RC(c, get_vls(vcpu, &vls), 0);
        CHECK(c, vqset_equal(&vls, &c->caps.vls), "VLS %s, the host offers %s", fmt(&vls, a, sizeof(a)),
              fmt(&c->caps.vls, b, sizeof(b)));
}

/* Any maximum the host has can be chosen, with exactly the host's set below it. */
static void vls_narrow(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        char a[160], b[160];

        NEED_SVE(c);
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, false) < 0)
                return;
        VQSET_FOREACH (vq, &c->caps.vls) {
                vqset_t want = vqset_upto(&c->caps.vls, vq), got;

                CHECK(c, set_vls(vcpu, &want) == 0, "writing VLS %s failed", fmt(&want, a, sizeof(a)));
                CHECK_RC(c, get_vls(vcpu, &got), 0);
                CHECK(c, vqset_equal(&got, &want), "wrote VLS %s, read %s", fmt(&want, a, sizeof(a)),
                      fmt(&got, b, sizeof(b)));
        }
}

/* The narrowed set survives finalize and sets the register widths. */
static void vls_narrow_finalize(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        unsigned vq = vqset_lowest(&c->caps.vls);
        vqset_t want, got;
        uint8_t buf[KVMREG_ZREG_SLICE_BYTES], back[KVMREG_ZREG_SLICE_BYTES];
        char a[160], b[160];

        NEED_SVE(c);
        want = vqset_upto(&c->caps.vls, vq);
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, false) < 0)
                return;
        CHECK_RC(c, set_vls(vcpu, &want), 0);
        CHECK_RC(c, hv_vcpu_finalize(vcpu, HV_FEAT_SVE), 0);
        CHECK_RC(c, get_vls(vcpu, &got), 0);
        CHECK(c, vqset_equal(&got, &want), "VLS %s after finalize, set %s", fmt(&got, a, sizeof(a)),
              fmt(&want, b, sizeof(b)));
        pattern(buf, sizeof(buf), 5);
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, kvmreg_zreg(5, 0), buf), 0);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_zreg(5, 0), back), 0);
        for (unsigned i = 0; i < sizeof(back); i++)
                CHECK(c, back[i] == (i < vq * 16 ? buf[i] : 0), "z5 byte %u is 0x%02x at VL %u bits", i,
                      back[i], vq_to_bits(vq));
}

/* A gap below the chosen maximum is EINVAL: KVM cannot hide a length. */
static void vls_gap(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        unsigned max = c->caps.max_vq;
        char a[160];

        NEED_SVE(c);
        SKIP_UNLESS(c, vqset_count(&c->caps.vls) >= 2, "the host offers one vector length");
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, false) < 0)
                return;
        VQSET_FOREACH (vq, &c->caps.vls) {
                vqset_t bad = c->caps.vls;

                if (vq == max)
                        break;
                vqset_del(&bad, vq);
                CHECK(c, set_vls(vcpu, &bad) == -EINVAL,
                      "VLS %s (a gap at vq %u) was not refused with EINVAL", fmt(&bad, a, sizeof(a)), vq);
        }
}

/* A length the host lacks (a hole, above its maximum, or past SVE's 2048 bits) is EINVAL. */
static void vls_unavailable(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        vqset_t empty;
        char a[160];

        NEED_SVE(c);
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, false) < 0)
                return;
        for (unsigned vq = 1; vq <= VQSET_VQ_MAX; vq = vq < 18 ? vq + 1 : vq * 2) {
                vqset_t bad = c->caps.vls;

                if (vqset_contains(&bad, vq))
                        continue;
                vqset_add(&bad, vq);
                CHECK(c, set_vls(vcpu, &bad) == -EINVAL,
                      "VLS %s (vq %u, which the host lacks) was not refused with EINVAL",
                      fmt(&bad, a, sizeof(a)), vq);
        }
        vqset_clear(&empty);
        CHECK_RC(c, set_vls(vcpu, &empty), -EINVAL);
}

static void vls_after_finalize(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        vqset_t got;

        NEED_SVE(c);
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, true) < 0)
                return;
        CHECK_RC(c, set_vls(vcpu, &c->caps.vls), -EPERM);
        CHECK_RC(c, get_vls(vcpu, &got), 0);
        CHECK(c, vqset_equal(&got, &c->caps.vls), "VLS changed by a refused write");
}

/* Before finalize, the SVE state has no size yet: EPERM, but a slice that can never exist is ENOENT. */
static void sve_before_finalize(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint8_t buf[KVMREG_ZREG_SLICE_BYTES] = {0};
        uint64_t ids[4], x0 = 0;
        size_t n = ELEMENTSOF(ids);
        struct hv_exit exit;

        NEED_SVE(c);
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_zreg(0, 0), buf), -EPERM);
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, kvmreg_zreg(0, 0), buf), -EPERM);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_preg(0, 0), buf), -EPERM);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_ffr(0), buf), -EPERM);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_zreg(0, 1), buf), -ENOENT);
        CHECK_RC(c, hv_vcpu_reg_list(vcpu, ids, &n), -EPERM);
        CHECK_RC(c, hv_vcpu_run(vcpu, 1, &exit), -EPERM);
        /* Core registers do not wait for finalize. */
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_core_x(0), &x0), 0);
}

/*
 * Slice 0 of a register of 'bytes' per slice holds 'valid' bytes: a write
 * reads back up to there and as zero beyond; slice 1 and beyond are ENOENT.
 */
static void check_slices(struct conf *c, struct hv_vcpu *vcpu, uint64_t id0, uint64_t id1, uint64_t id31,
                         unsigned bytes, unsigned valid, unsigned seed)
{
        uint8_t buf[KVMREG_ZREG_SLICE_BYTES], back[KVMREG_ZREG_SLICE_BYTES];
        char name[64];

        kvmreg_name(id0, name, sizeof(name));
        CHECK(c, kvmreg_size(id0) == bytes, "%s is %u bytes wide, expected %u", name, kvmreg_size(id0),
              bytes);
        pattern(buf, bytes, seed);
        memset(back, 0xee, sizeof(back));
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, id0, buf), 0);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, id0, back), 0);
        for (unsigned i = 0; i < bytes; i++)
                CHECK(c, back[i] == (i < valid ? buf[i] : 0), "%s byte %u reads 0x%02x, expected 0x%02x",
                      name, i, back[i], i < valid ? buf[i] : 0);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, id1, back), -ENOENT);
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, id1, buf), -ENOENT);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, id31, back), -ENOENT);
}

static void z_slices(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        unsigned vl = c->caps.max_vq * 16;

        NEED_SVE(c);
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, true) < 0)
                return;
        for (unsigned n = 0; n < 32; n += 31) {
                check_slices(c, vcpu, kvmreg_zreg(n, 0), kvmreg_zreg(n, 1), kvmreg_zreg(n, 31),
                             KVMREG_ZREG_SLICE_BYTES, vl, n);
                if (c->failed)
                        return;
        }
}

static void p_slices(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        unsigned pl = c->caps.max_vq * 2;

        NEED_SVE(c);
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, true) < 0)
                return;
        for (unsigned n = 0; n < 16; n += 15) {
                check_slices(c, vcpu, kvmreg_preg(n, 0), kvmreg_preg(n, 1), kvmreg_preg(n, 31),
                             KVMREG_PREG_SLICE_BYTES, pl, 100 + n);
                if (c->failed)
                        return;
        }
        check_slices(c, vcpu, kvmreg_ffr(0), kvmreg_ffr(1), kvmreg_ffr(31), KVMREG_PREG_SLICE_BYTES, pl,
                     200);
}

/* Z/P registers are 2048/256-bit slices: any other size field is not one of them. */
static void sve_wrong_size(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint8_t buf[KVMREG_ZREG_SLICE_BYTES] = {0};
        uint64_t z0_u64 = (kvmreg_zreg(0, 0) & ~KVMREG_SIZE_MASK) | (3ull << KVMREG_SIZE_SHIFT);

        NEED_SVE(c);
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, true) < 0)
                return;
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, z0_u64, buf), -EINVAL);
}

/* On an SVE vcpu the V registers live in Z: their core IDs are EINVAL; FPSR/FPCR stay. */
static void fpsimd_on_sve(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint8_t v[16] = {0};
        uint32_t fpsr = 1u << 27, fpcr = 1u << 25, back = 0;

        NEED_SVE(c);
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, true) < 0)
                return;
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_core_vreg(0), v), -EINVAL);
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, kvmreg_core_vreg(31), v), -EINVAL);
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, kvmreg_core_fpsr(), &fpsr), 0);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_core_fpsr(), &back), 0);
        CHECK(c, back == fpsr, "FPSR reads 0x%x after writing 0x%x", back, fpsr);
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, kvmreg_core_fpcr(), &fpcr), 0);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_core_fpcr(), &back), 0);
        CHECK(c, back == fpcr, "FPCR reads 0x%x after writing 0x%x", back, fpcr);
}

/* A vcpu initialised without SVE has none of it, even on an SVE host. */
static void non_sve_vcpu_on_sve_host(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint8_t buf[KVMREG_ZREG_SLICE_BYTES] = {0};
        uint64_t zcr = 0;

        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_PSCI, false) < 0)
                return;
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_vls(), buf), -ENOENT);
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, kvmreg_vls(), c->caps.vls.w), -ENOENT);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_zreg(0, 0), buf), -ENOENT);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_preg(0, 0), buf), -ENOENT);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, kvmreg_ffr(0), buf), -ENOENT);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, KVMREG_ZCR_EL1, &zcr), -ENOENT);
}

/* ZCR_EL1 resets to 0 (EL1 limited to 128 bits until the guest raises LEN). */
static void zcr_reset(struct conf *c)
{
        _cleanup_vm_ struct hv_vm *vm = NULL;
        _cleanup_vcpu_ struct hv_vcpu *vcpu = NULL;
        uint64_t zcr = ~0ull, len = 0xf;

        NEED_SVE(c);
        if (conf_vcpu(c, &vm, &vcpu, true, FEAT_SVE, true) < 0)
                return;
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, KVMREG_ZCR_EL1, &zcr), 0);
        CHECK(c, zcr == 0, "ZCR_EL1 is 0x%llx after init", (unsigned long long)zcr);
        CHECK_RC(c, hv_vcpu_set_reg(vcpu, KVMREG_ZCR_EL1, &len), 0);
        CHECK_RC(c, hv_vcpu_get_reg(vcpu, KVMREG_ZCR_EL1, &zcr), 0);
        CHECK(c, zcr == len, "ZCR_EL1 reads 0x%llx after writing 0xf", (unsigned long long)zcr);
}

const struct conf_case conf_cases_sve[] = {
        {"vls-read-before-finalize", vls_read_before_finalize},
        {"vls-narrow", vls_narrow},
        {"vls-narrow-then-finalize", vls_narrow_finalize},
        {"vls-gap-einval", vls_gap},
        {"vls-unavailable-einval", vls_unavailable},
        {"vls-after-finalize-eperm", vls_after_finalize},
        {"sve-before-finalize-eperm", sve_before_finalize},
        {"z-slice0-and-enoent", z_slices},
        {"p-ffr-slice0-and-enoent", p_slices},
        {"sve-wrong-size-einval", sve_wrong_size},
        {"fpsimd-vregs-einval-on-sve", fpsimd_on_sve},
        {"non-sve-vcpu-has-no-sve", non_sve_vcpu_on_sve_host},
        {"zcr-el1-reset-zero", zcr_reset},
};
const size_t conf_n_cases_sve = ELEMENTSOF(conf_cases_sve);
