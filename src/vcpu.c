/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vcpu capture and restore: every register the backend enumerates, at its
 * own width, moved between backend instances under KVM's ordering rules
 * (init -> SVE_VLS -> finalize -> registers) and verified by reading back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "svemig/idreg.h"
#include "svemig/kvmreg.h"
#include "svemig/regdiff.h"
#include "svemig/vcpu.h"

/* Registers that may differ between a write and the read back: the counters move with time. */
static bool reg_is_volatile(uint64_t id)
{
        return id == KVMREG_TIMER_CNT || id == KVMREG_PTIMER_CNT;
}

static enum kvmreg_class reg_class(uint64_t id)
{
        struct kvmreg reg;

        if (kvmreg_decode(id, &reg, NULL) < 0)
                return KVMREG_CLASS_UNKNOWN;
        return reg.cls;
}

static bool class_is_host_invariant(uint64_t id, enum kvmreg_class cls)
{
        /* MPIDR_EL1 sits among the ID registers but is the vcpu's own (its affinity), set by userspace. */
        if (id == KVMREG_MPIDR_EL1)
                return false;
        /* And the rest of the feature ID space (op1 1 and 3): CLIDR_EL1, CTR_EL0, DCZID_EL0... */
        return cls == KVMREG_CLASS_SYS_ID || cls == KVMREG_CLASS_DEMUX ||
               (cls == KVMREG_CLASS_SYS && idreg_is_feature(id));
}

bool vcpu_reg_is_host_invariant(uint64_t id)
{
        return class_is_host_invariant(id, reg_class(id));
}

/*
 * The class of each of st's registers, decoded once: a restore needs it
 * twice (invariants, order) for every register of every vcpu while the
 * guest is paused, and decoding is a table search.
 */
static enum kvmreg_class *classify(const struct vcpu_state *st)
{
        enum kvmreg_class *cls = calloc(st->n_regs ? st->n_regs : 1, sizeof(*cls));

        if (!cls)
                return NULL;
        for (size_t i = 0; i < st->n_regs; i++)
                cls[i] = reg_class(st->regs[i].id);
        return cls;
}

static const char *reg_name(uint64_t id, char *buf, size_t len)
{
        kvmreg_name(id, buf, len);
        return buf;
}

void vcpu_state_done(struct vcpu_state *st)
{
        if (!st)
                return;
        free(st->regs);
        free(st->blob);
        memset(st, 0, sizeof(*st));
}

int vcpu_state_alloc(struct vcpu_state *st, const uint64_t *ids, size_t n)
{
        size_t total = 0, off = 0;

        memset(st, 0, sizeof(*st));
        for (size_t i = 0; i < n; i++)
                total += kvmreg_size(ids[i]);

        st->regs = calloc(n ? n : 1, sizeof(*st->regs));
        st->blob = calloc(total ? total : 1, 1);
        if (!st->regs || !st->blob) {
                vcpu_state_done(st);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                st->regs[i].id = ids[i];
                st->regs[i].size = kvmreg_size(ids[i]);
                st->regs[i].value = st->blob + off;
                off += st->regs[i].size;
        }
        st->n_regs = n;
        st->blob_size = total;
        return 0;
}

int vcpu_state_copy(struct vcpu_state *dst, const struct vcpu_state *src)
{
        _cleanup_free_ uint64_t *ids = calloc(src->n_regs ? src->n_regs : 1, sizeof(*ids));
        int r;

        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < src->n_regs; i++)
                ids[i] = src->regs[i].id;
        r = vcpu_state_alloc(dst, ids, src->n_regs);
        if (r < 0)
                return r;
        memcpy(dst->blob, src->blob, src->blob_size);
        dst->index = src->index;
        dst->features = src->features;
        dst->vls = src->vls;
        dst->mp_state = src->mp_state;
        return 0;
}

const struct vcpu_reg *vcpu_state_find(const struct vcpu_state *st, uint64_t id)
{
        for (size_t i = 0; i < st->n_regs; i++)
                if (st->regs[i].id == id)
                        return &st->regs[i];
        return NULL;
}

/* KVM_GET_REG_LIST into a fresh array, growing it on E2BIG as the ABI intends. */
static int get_reg_list(struct hv_vcpu *vcpu, uint64_t **out, size_t *n_out)
{
        size_t n = 512;

        for (;;) {
                _cleanup_free_ uint64_t *ids = calloc(n, sizeof(*ids));
                size_t room = n;
                int r;

                if (!ids)
                        return -ENOMEM;
                r = hv_vcpu_reg_list(vcpu, ids, &room);
                if (r == -E2BIG && room > n) {
                        n = room;
                        continue;
                }
                if (r < 0)
                        return r;
                *out = ids;
                ids = NULL;
                *n_out = room;
                return 0;
        }
}

int vcpu_capture(struct hv_vcpu *vcpu, struct vcpu_state *out, struct svemig_error *err)
{
        _cleanup_free_ uint64_t *ids = NULL;
        struct vcpu_state st;
        unsigned index = hv_vcpu_index(vcpu);
        size_t n;
        int r;

        r = get_reg_list(vcpu, &ids, &n);
        if (r < 0)
                return svemig_error_set(err, r, "vcpu %u: cannot list its registers: %s%s", index,
                                        strerror(-r),
                                        r == -EPERM ? " (an SVE vcpu must be finalized first)" : "");
        r = vcpu_state_alloc(&st, ids, n);
        if (r < 0)
                return svemig_error_set(err, r, "vcpu %u: out of memory for %zu registers", index, n);

        st.index = index;
        st.features = hv_vcpu_features(vcpu);
        for (size_t i = 0; i < n; i++) {
                struct vcpu_reg *reg = &st.regs[i];
                char name[64];

                r = hv_vcpu_get_reg(vcpu, reg->id, reg->value);
                if (r < 0) {
                        svemig_error_set(err, r, "vcpu %u: reading %s (0x%016llx) failed: %s", index,
                                         reg_name(reg->id, name, sizeof(name)), (unsigned long long)reg->id,
                                         strerror(-r));
                        vcpu_state_done(&st);
                        return r;
                }
                if (reg->id == kvmreg_vls())
                        memcpy(st.vls.w, reg->value, KVMREG_VLS_BYTES);
        }
        r = hv_vcpu_get_mp_state(vcpu, &st.mp_state);
        if (r < 0) {
                vcpu_state_done(&st);
                return svemig_error_set(err, r, "vcpu %u: reading its mp_state failed: %s", index,
                                        strerror(-r));
        }
        *out = st;
        return 0;
}

static int check_vl_set(const struct hv_caps *caps, const struct vcpu_state *st, struct svemig_error *err)
{
        char want[256], have[256], why_text[256];
        struct vqset_reason why;

        if (!(st->features & HV_FEAT_BIT(HV_FEAT_SVE)))
                return 0;
        vqset_format(&st->vls, VQSET_FORMAT_BITS, want, sizeof(want));
        if (!caps->sve)
                return svemig_error_set(err, EINVAL,
                                        "vcpu %u uses SVE (vector lengths %s bits) but host %s has no SVE",
                                        st->index, want, caps->host_name);
        if (vqset_can_present(&caps->vls, &st->vls, &why))
                return 0;
        vqset_format(&caps->vls, VQSET_FORMAT_BITS, have, sizeof(have));
        vqset_reason_format(&why, why_text, sizeof(why_text));
        return svemig_error_set(
                err, EINVAL, "host %s cannot present the guest's vector lengths %s bits (it offers %s): %s",
                caps->host_name, want, have, why_text);
}

static int missing_on_destination(struct svemig_error *err, unsigned index, uint64_t id)
{
        char name[64];

        return svemig_error_set(
                err, ENOENT,
                "vcpu %u: register %s (0x%016llx) is in the guest's state but the destination "
                "host's kernel does not have it",
                index, reg_name(id, name, sizeof(name)), (unsigned long long)id);
}

int vcpu_check_invariants(struct hv_vcpu *dst, const struct vcpu_reg *regs, size_t n,
                          struct svemig_error *err)
{
        char name[64], field[160];

        for (size_t i = 0; i < n; i++) {
                const struct vcpu_reg *reg = &regs[i];
                uint8_t cur[KVMREG_MAX_BYTES];
                uint64_t want = 0, have = 0, kept;
                int r;

                r = hv_vcpu_get_reg(dst, reg->id, cur);
                if (r == -ENOENT)
                        return missing_on_destination(err, hv_vcpu_index(dst), reg->id);
                if (r < 0)
                        return svemig_error_set(err, r,
                                                "reading %s (0x%016llx) on the destination failed: %s",
                                                reg_name(reg->id, name, sizeof(name)),
                                                (unsigned long long)reg->id, strerror(-r));
                memcpy(&want, reg->value, MIN(reg->size, 8u));
                memcpy(&have, cur, MIN(reg->size, 8u));
                if (memcmp(cur, reg->value, reg->size) == 0)
                        continue;
                /*
                 * The kernel judges: before its first run, a vcpu takes an ID
                 * register value the host can present (Linux 6.7+, within
                 * KVM_ARM_GET_REG_WRITABLE_MASKS and by each field's safety
                 * rule); 6.1 takes none but its own. Where it refuses, the
                 * fields that cannot matter to the guest (EL2-only, GIC) stay
                 * this host's, and the rest is tried again.
                 */
                r = hv_vcpu_set_reg(dst, reg->id, reg->value);
                if (r == 0)
                        continue;
                kept = idreg_host_kept_bits(reg->id);
                if (kept && reg->size == sizeof(uint64_t)) {
                        uint64_t v = (want & ~kept) | (have & kept);

                        if (v == have)
                                continue;
                        r = hv_vcpu_set_reg(dst, reg->id, &v);
                        if (r == 0)
                                continue;
                        want = v;
                }
                idreg_first_difference(reg->id, have, want, field, sizeof(field));
                return svemig_error_set(
                        err, EINVAL,
                        "host incompatibility: ID register %s (0x%016llx) is 0x%016llx on the "
                        "guest's source but 0x%016llx here, and this host's kernel refuses the guest's "
                        "value "
                        "(%s): %s. No VMM can present a value the kernel will not write",
                        reg_name(reg->id, name, sizeof(name)), (unsigned long long)reg->id,
                        (unsigned long long)want, (unsigned long long)have, strerror(-r), field);
        }
        return 0;
}

static bool id_listed(const uint64_t *sorted, size_t n, uint64_t id)
{
        return bsearch(&id, sorted, n, sizeof(*sorted), cmp_u64) != NULL;
}

/* A sorted copy of ids, for id_listed(). */
/* A register of 8 bytes or less as a u64 (little-endian, as KVM lays it out). */
static uint64_t reg_u64(const struct vcpu_reg *reg)
{
        uint64_t v = 0;

        memcpy(&v, reg->value, MIN(reg->size, sizeof(v)));
        return v;
}

static uint64_t *sorted_copy(const uint64_t *ids, size_t n)
{
        uint64_t *c = malloc((n ? n : 1) * sizeof(*c));

        if (!c)
                return NULL;
        memcpy(c, ids, n * sizeof(*c));
        qsort(c, n, sizeof(*c), cmp_u64);
        return c;
}

static bool same_order(const uint64_t *ids, const struct vcpu_state *st)
{
        for (size_t i = 0; i < st->n_regs; i++)
                if (ids[i] != st->regs[i].id)
                        return false;
        return true;
}

/*
 * The destination's list ids (n of them) and the state's: the same set, or
 * the first difference named. Lookups go through sorted copies: a migration
 * checks every vcpu while the guest is paused, and a linear search over ~300
 * registers for each of ~300 costs milliseconds over 64 vcpus.
 */
static int check_same_set(const uint64_t *ids, size_t n, const struct vcpu_state *st, bool **skip,
                          struct svemig_error *err)
{
        _cleanup_free_ uint64_t *dst_sorted = NULL;
        struct regdiff_guest guest = {0};
        char name[64], why[256];

        *skip = NULL;
        if (n == st->n_regs && same_order(ids, st))
                return 0; /* the usual case: the same kernel's list, in its order */
        dst_sorted = sorted_copy(ids, n);
        *skip = calloc(st->n_regs ? st->n_regs : 1, sizeof(**skip));
        if (!dst_sorted || !*skip)
                return svemig_error_set(err, ENOMEM, "vcpu %u: out of memory", st->index);

        for (size_t i = 0; i < st->n_regs; i++)
                if (st->regs[i].size <= sizeof(uint64_t))
                        regdiff_guest_note(&guest, st->regs[i].id, reg_u64(&st->regs[i]));
        /* Registers only the destination lists keep their reset values: nothing to check. */
        for (size_t i = 0; i < st->n_regs; i++) {
                if (id_listed(dst_sorted, n, st->regs[i].id))
                        continue;
                if (regdiff_source_only(&guest, st->regs[i].id, reg_u64(&st->regs[i]), why, sizeof(why)) < 0)
                        return svemig_error_set(
                                err, ENOENT,
                                "vcpu %u: register %s (0x%016llx) is in the guest's state but "
                                "the destination host's kernel does not have it, and %s",
                                st->index, reg_name(st->regs[i].id, name, sizeof(name)),
                                (unsigned long long)st->regs[i].id, why);
                (*skip)[i] = true;
        }
        return 0;
}

/*
 * The destination must have the guest's registers, but for those whose
 * value cannot matter (*skip: dropped, see regdiff.h), and the same
 * host-invariant values (a different CPU).
 */
static int check_registers(struct hv_vcpu *dst, const struct vcpu_state *st, const enum kvmreg_class *cls,
                           bool **skip, struct svemig_error *err)
{
        _cleanup_free_ uint64_t *ids = NULL;
        size_t n;
        int r;

        r = get_reg_list(dst, &ids, &n);
        if (r < 0)
                return svemig_error_set(err, r, "vcpu %u: cannot list the destination's registers: %s",
                                        st->index, strerror(-r));
        r = check_same_set(ids, n, st, skip, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < st->n_regs; i++)
                if (!(*skip && (*skip)[i]) && class_is_host_invariant(st->regs[i].id, cls[i]) &&
                    (r = vcpu_check_invariants(dst, &st->regs[i], 1, err)) < 0)
                        return r;
        return 0;
}

int vcpu_check_compat(const struct hv_caps *caps, struct hv_vcpu *dst, const struct vcpu_state *st,
                      struct svemig_error *err)
{
        _cleanup_free_ enum kvmreg_class *cls = NULL;
        int r = check_vl_set(caps, st, err);

        if (r < 0 || !dst)
                return r;
        _cleanup_free_ bool *skip = NULL;

        cls = classify(st);
        if (!cls)
                return svemig_error_set(err, ENOMEM, "vcpu %u: out of memory", st->index);
        return check_registers(dst, st, cls, &skip, err);
}

/*
 * The registers of st in restore order: by kvmreg_restore_rank(), list order
 * within a rank (a counting sort). Each ID is decoded once: a migration
 * restores every vcpu while the guest is paused.
 */
static int restore_order(const struct vcpu_state *st, const enum kvmreg_class *cls, size_t **out)
{
        size_t *order = calloc(st->n_regs ? st->n_regs : 1, sizeof(*order));
        size_t start[_KVMREG_CLASS_MAX + 1] = {0};

        if (!order)
                return -ENOMEM;
        for (size_t i = 0; i < st->n_regs; i++) {
                int rank = kvmreg_restore_rank(cls[i]);

                if (rank < 0 || rank >= _KVMREG_CLASS_MAX) {
                        free(order);
                        return -EINVAL;
                }
                start[rank + 1]++;
        }
        for (int rank = 0; rank < _KVMREG_CLASS_MAX; rank++)
                start[rank + 1] += start[rank];
        for (size_t i = 0; i < st->n_regs; i++)
                order[start[kvmreg_restore_rank(cls[i])]++] = i;
        *out = order;
        return 0;
}

/* Steps 1-3: init, SVE_VLS, finalize. */
static int restore_setup(struct hv_vcpu *vcpu, const struct vcpu_state *st, struct svemig_error *err)
{
        struct hv_caps caps;
        int r;

        r = hv_get_caps(hv_vm_host(hv_vcpu_vm(vcpu)), &caps);
        if (r < 0)
                return svemig_error_set(err, r, "cannot read the destination host's capabilities");
        r = check_vl_set(&caps, st, err);
        if (r < 0)
                return r;

        r = hv_vcpu_init(vcpu, st->features);
        if (r < 0)
                return svemig_error_set(err, r, "vcpu %u: KVM_ARM_VCPU_INIT with features 0x%x failed: %s",
                                        st->index, st->features, strerror(-r));
        if (!(st->features & HV_FEAT_BIT(HV_FEAT_SVE)))
                return 0;

        r = hv_vcpu_set_reg(vcpu, kvmreg_vls(), st->vls.w);
        if (r < 0) {
                char want[256];

                vqset_format(&st->vls, VQSET_FORMAT_BITS, want, sizeof(want));
                return svemig_error_set(err, r, "vcpu %u: the host refused vector lengths %s bits: %s",
                                        st->index, want, strerror(-r));
        }
        r = hv_vcpu_finalize(vcpu, HV_FEAT_SVE);
        if (r < 0)
                return svemig_error_set(err, r, "vcpu %u: KVM_ARM_VCPU_FINALIZE(SVE) failed: %s", st->index,
                                        strerror(-r));
        return 0;
}

static int restore_registers(struct hv_vcpu *vcpu, const struct vcpu_state *st, const enum kvmreg_class *cls,
                             const bool *skip, struct svemig_error *err)
{
        _cleanup_free_ size_t *order = NULL;
        char name[64];
        int r;

        r = restore_order(st, cls, &order);
        if (r < 0)
                return svemig_error_set(err, r, "vcpu %u: cannot order the registers for restore",
                                        st->index);

        for (size_t k = 0; k < st->n_regs; k++) {
                const struct vcpu_reg *reg = &st->regs[order[k]];

                if (reg->id == kvmreg_vls() || (skip && skip[order[k]]) ||
                    class_is_host_invariant(reg->id, cls[order[k]]))
                        continue; /* set before finalize, dropped, or by check_registers() */
                r = hv_vcpu_set_reg(vcpu, reg->id, reg->value);
                if (r < 0)
                        return svemig_error_set(err, r, "vcpu %u: writing %s (0x%016llx) failed: %s",
                                                st->index, reg_name(reg->id, name, sizeof(name)),
                                                (unsigned long long)reg->id, strerror(-r));
        }
        r = hv_vcpu_set_mp_state(vcpu, st->mp_state);
        if (r < 0)
                return svemig_error_set(err, r, "vcpu %u: setting mp_state %u failed: %s", st->index,
                                        st->mp_state, strerror(-r));
        return 0;
}

/* reg's value and cur are the same, but in the fields this host keeps (see vcpu_check_invariants()). */
static bool same_but_kept(const struct vcpu_reg *reg, const uint8_t *cur)
{
        uint64_t el2 = idreg_host_kept_bits(reg->id), a = 0, b = 0;

        if (!el2 || reg->size != sizeof(uint64_t))
                return memcmp(cur, reg->value, reg->size) == 0;
        memcpy(&a, reg->value, sizeof(a));
        memcpy(&b, cur, sizeof(b));
        return ((a ^ b) & ~el2) == 0;
}

/* Step 6: what the hypervisor holds now is what was saved, bit for bit (fields the host keeps aside). */
static int restore_verify(struct hv_vcpu *vcpu, const struct vcpu_state *st, const bool *skip,
                          struct svemig_error *err)
{
        char name[64];

        for (size_t i = 0; i < st->n_regs; i++) {
                const struct vcpu_reg *reg = &st->regs[i];
                uint8_t cur[KVMREG_MAX_BYTES];
                int r;

                if (reg_is_volatile(reg->id) || (skip && skip[i]))
                        continue;
                r = hv_vcpu_get_reg(vcpu, reg->id, cur);
                if (r < 0)
                        return svemig_error_set(err, r, "vcpu %u: reading back %s failed: %s", st->index,
                                                reg_name(reg->id, name, sizeof(name)), strerror(-r));
                if (!same_but_kept(reg, cur))
                        return svemig_error_set(
                                err, EIO,
                                "vcpu %u: %s (0x%016llx) reads back differently from what was "
                                "restored",
                                st->index, reg_name(reg->id, name, sizeof(name)),
                                (unsigned long long)reg->id);
        }
        return 0;
}

int vcpu_restore(struct hv_vcpu *vcpu, const struct vcpu_state *st, struct svemig_error *err)
{
        _cleanup_free_ enum kvmreg_class *cls = NULL;
        _cleanup_free_ bool *skip = NULL;
        int r;

        r = restore_setup(vcpu, st, err);
        if (r < 0)
                return r;
        cls = classify(st);
        if (!cls)
                return svemig_error_set(err, ENOMEM, "vcpu %u: out of memory", st->index);
        r = check_registers(vcpu, st, cls, &skip, err);
        if (r < 0)
                return r;
        r = restore_registers(vcpu, st, cls, skip, err);
        if (r < 0)
                return r;
        return restore_verify(vcpu, st, skip, err);
}

bool vcpu_state_equal(const struct vcpu_state *a, const struct vcpu_state *b, char *diff, size_t len)
{
        char name[64];

        if (a->features != b->features || !vqset_equal(&a->vls, &b->vls) || a->mp_state != b->mp_state) {
                if (diff)
                        snprintf(diff, len, "vcpu %u: features, vector lengths or mp_state differ",
                                 a->index);
                return false;
        }
        if (a->n_regs != b->n_regs) {
                if (diff)
                        snprintf(diff, len, "vcpu %u: %zu registers against %zu", a->index, a->n_regs,
                                 b->n_regs);
                return false;
        }
        for (size_t i = 0; i < a->n_regs; i++) {
                const struct vcpu_reg *ra = &a->regs[i], *rb = vcpu_state_find(b, ra->id);

                if (reg_is_volatile(ra->id))
                        continue;
                if (!rb || memcmp(ra->value, rb->value, ra->size) != 0) {
                        if (diff)
                                snprintf(diff, len, "vcpu %u: %s (0x%016llx) %s", a->index,
                                         reg_name(ra->id, name, sizeof(name)), (unsigned long long)ra->id,
                                         rb ? "differs" : "is missing from the second state");
                        return false;
                }
        }
        return true;
}
