/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The ONE_REG ID codec against the kernel's own register lists
 * (src/sim/reglists/kvm-reglist-*.txt, KVM_GET_REG_LIST on Debian's 6.1 and 6.12
 * arm64 kernels) and against the literal IDs DESIGN.md documents.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "macro.h"
#include "svemig/kvmreg.h"

#ifndef SVEMIG_REGLIST_DIR
#error "SVEMIG_REGLIST_DIR must name src/sim/reglists"
#endif

static const char *const reglist_files[] = {
        SVEMIG_REGLIST_DIR "/kvm-reglist-6.1.0-56-cloud-arm64.txt",
        SVEMIG_REGLIST_DIR "/kvm-reglist-6.12.117+deb12-cloud-arm64.txt",
};

#define MAX_REGS 400

/* One "=== REGLIST <name> n=<n>" block of a reference file. */
struct reglist {
        char name[16];
        unsigned n;
        uint64_t id[MAX_REGS];
        unsigned size[MAX_REGS];
};

/* Reads the two blocks ('sve' and 'nosve') of a reference file. */
static void load_reglists(const char *path, struct reglist lists[2])
{
        char line[256];
        FILE *f = fopen(path, "re");
        struct reglist *cur = NULL;
        unsigned nlists = 0, want = 0;

        if (!f)
                fail_msg("cannot open %s: %s", path, strerror(errno));
        memset(lists, 0, 2 * sizeof(*lists));
        while (fgets(line, sizeof(line), f)) {
                char name[16];
                uint64_t id;
                unsigned size;

                if (sscanf(line, "=== REGLIST %15s n=%u", name, &want) == 2) {
                        assert_true(nlists < 2);
                        cur = &lists[nlists++];
                        snprintf(cur->name, sizeof(cur->name), "%s", name);
                        continue;
                }
                if (strncmp(line, "=== END", 7) == 0) {
                        assert_non_null(cur);
                        assert_int_equal(cur->n, want);
                        cur = NULL;
                        continue;
                }
                if (!cur || line[0] == '#')
                        continue;
                assert_int_equal(sscanf(line, "%" SCNx64 " %u", &id, &size), 2);
                assert_true(cur->n < MAX_REGS);
                cur->id[cur->n] = id;
                cur->size[cur->n] = size;
                cur->n++;
        }
        fclose(f);
        assert_int_equal(nlists, 2);
        assert_string_equal(lists[0].name, "sve");
        assert_string_equal(lists[1].name, "nosve");
}

static bool in_reglists(uint64_t id)
{
        static struct reglist lists[ELEMENTSOF(reglist_files)][2];
        static bool loaded;

        if (!loaded) {
                for (size_t i = 0; i < ELEMENTSOF(reglist_files); i++)
                        load_reglists(reglist_files[i], lists[i]);
                loaded = true;
        }
        for (size_t i = 0; i < ELEMENTSOF(reglist_files); i++)
                for (size_t l = 0; l < 2; l++)
                        for (size_t k = 0; k < lists[i][l].n; k++)
                                if (lists[i][l].id[k] == id)
                                        return true;
        return false;
}

/* Re-encodes a decoded register with the encoder of its class. */
static uint64_t reencode(const struct kvmreg *r)
{
        char name[64];

        switch (r->cls) {
        case KVMREG_CLASS_CORE:
                kvmreg_name(r->id, name, sizeof(name));
                if (name[0] == 'x')
                        return kvmreg_core_x(r->n);
                if (strncmp(name, "spsr[", 5) == 0)
                        return kvmreg_core_spsr(r->n);
                if (strcmp(name, "sp") == 0)
                        return kvmreg_core_sp();
                if (strcmp(name, "pc") == 0)
                        return kvmreg_core_pc();
                if (strcmp(name, "pstate") == 0)
                        return kvmreg_core_pstate();
                if (strcmp(name, "sp_el1") == 0)
                        return kvmreg_core_sp_el1();
                if (strcmp(name, "elr_el1") == 0)
                        return kvmreg_core_elr_el1();
                fail_msg("core register %s has no encoder", name);
                return 0;
        case KVMREG_CLASS_CORE_FP:
                return kvmreg_core_vreg(r->n);
        case KVMREG_CLASS_CORE_FPCR:
                kvmreg_name(r->id, name, sizeof(name));
                return strcmp(name, "fpsr") == 0 ? kvmreg_core_fpsr() : kvmreg_core_fpcr();
        case KVMREG_CLASS_SVE_VLS:
                return kvmreg_vls();
        case KVMREG_CLASS_SVE_Z:
                return kvmreg_zreg(r->n, r->slice);
        case KVMREG_CLASS_SVE_P:
                return kvmreg_preg(r->n, r->slice);
        case KVMREG_CLASS_SVE_FFR:
                return kvmreg_ffr(r->slice);
        case KVMREG_CLASS_FW:
                return kvmreg_fw(r->index);
        case KVMREG_CLASS_FW_FEAT:
                return kvmreg_fw_feat(r->index);
        case KVMREG_CLASS_SYS_ID:
        case KVMREG_CLASS_SYS:
        case KVMREG_CLASS_TIMER:
                return kvmreg_sys(r->op0, r->op1, r->crn, r->crm, r->op2);
        case KVMREG_CLASS_DEMUX:
                return kvmreg_demux_ccsidr(r->index);
        default:
                fail_msg("register 0x%016" PRIx64 " has class %s", r->id, kvmreg_class_name(r->cls));
                return 0;
        }
}

/* Decodes, sizes, names, parses back and re-encodes one ID; returns its class. */
static enum kvmreg_class check_roundtrip(uint64_t id, unsigned want_size)
{
        struct svemig_error err = {0};
        struct kvmreg r;
        char name[64];
        uint64_t back = 0;
        int n;

        if (kvmreg_decode(id, &r, &err) != 0)
                fail_msg("0x%016" PRIx64 ": %s", id, err.msg);
        assert_int_equal(r.id, id);
        if (r.cls == KVMREG_CLASS_UNKNOWN)
                fail_msg("0x%016" PRIx64 " decodes as unknown", id);
        assert_int_equal(kvmreg_size(id), want_size);
        assert_int_equal(r.size, want_size);

        n = kvmreg_name(id, name, sizeof(name));
        assert_true(n > 0 && (size_t)n < sizeof(name));
        assert_int_equal(strlen(name), n);
        assert_null(strstr(name, "REG_0x"));
        if (kvmreg_parse(name, &back, &err) != 0)
                fail_msg("0x%016" PRIx64 ": name '%s' does not parse: %s", id, name, err.msg);
        if (back != id)
                fail_msg("0x%016" PRIx64 ": name '%s' parses to 0x%016" PRIx64, id, name, back);

        back = reencode(&r);
        if (back != id)
                fail_msg("0x%016" PRIx64 " (%s) re-encodes to 0x%016" PRIx64, id, name, back);
        return r.cls;
}

/* Every ID of both reference files, both vcpus, round-trips; the class counts match DESIGN.md. */
static void test_reglists(void **state)
{
        static struct reglist lists[2];
        /* DESIGN.md: 6.1 has 261 registers for an SVE vcpu, 6.12 has 278. */
        static const unsigned want_sve_n[] = {261, 278};

        for (size_t i = 0; i < ELEMENTSOF(reglist_files); i++) {
                load_reglists(reglist_files[i], lists);
                assert_int_equal(lists[0].n, want_sve_n[i]);

                for (size_t l = 0; l < 2; l++) {
                        unsigned count[_KVMREG_CLASS_MAX] = {0};

                        for (size_t k = 0; k < lists[l].n; k++)
                                count[check_roundtrip(lists[l].id[k], lists[l].size[k])]++;

                        /* x0..x30, sp, pc, pstate, sp_el1, elr_el1, spsr[5], fpsr, fpcr: 43. */
                        assert_int_equal(count[KVMREG_CLASS_CORE] + count[KVMREG_CLASS_CORE_FPCR], 43);
                        assert_int_equal(count[KVMREG_CLASS_CORE_FPCR], 2);
                        if (l == 0) {
                                /* SVE: V regs are left out; slice 0 of 32 Z, 16 P, FFR; VLS. */
                                assert_int_equal(count[KVMREG_CLASS_CORE_FP], 0);
                                assert_int_equal(count[KVMREG_CLASS_SVE_Z], 32);
                                assert_int_equal(count[KVMREG_CLASS_SVE_P], 16);
                                assert_int_equal(count[KVMREG_CLASS_SVE_FFR], 1);
                                assert_int_equal(count[KVMREG_CLASS_SVE_VLS], 1);
                        } else {
                                assert_int_equal(count[KVMREG_CLASS_CORE_FP], 32);
                                assert_int_equal(count[KVMREG_CLASS_SVE_Z] + count[KVMREG_CLASS_SVE_P] +
                                                         count[KVMREG_CLASS_SVE_FFR] +
                                                         count[KVMREG_CLASS_SVE_VLS],
                                                 0);
                        }
                        assert_int_equal(count[KVMREG_CLASS_FW], 4);
                        assert_int_equal(count[KVMREG_CLASS_FW_FEAT], 3);
                        /* The virtual timer in both kernels; 6.12 adds the physical one. */
                        assert_int_equal(count[KVMREG_CLASS_TIMER], i == 0 ? 3 : 6);
                        assert_true(count[KVMREG_CLASS_SYS_ID] > 50);
                        assert_true(count[KVMREG_CLASS_SYS] > 50);
                        assert_true(count[KVMREG_CLASS_DEMUX] > 0);
                        /* The non-SVE list is the SVE one less 50 SVE registers and ZCR_EL1, plus V0..V31.
                         */
                        if (l == 1)
                                assert_int_equal(lists[1].n, lists[0].n - 50 - 1 + 32);
                }
        }
}

/* Encoders against the literal IDs of DESIGN.md and the kernel's documented ones. */
static void test_encoders(void **state)
{
        const struct {
                uint64_t got, want;
        } cases[] = {
                /* DESIGN.md "Register IDs". */
                {kvmreg_zreg(3, 0), 0x6080000000150060ull},
                {kvmreg_preg(15, 0), 0x60500000001505e0ull},
                {kvmreg_ffr(0), 0x6050000000150600ull},
                {kvmreg_vls(), 0x606000000015ffffull},
                /* (3,0,1,2,0): op0 = 3 sets bits 15:14, so 0x...c090 (0x...8090 would be op0 = 2). */
                {KVMREG_ZCR_EL1, 0x603000000013c090ull},
                {KVMREG_CPACR_EL1, 0x603000000013c082ull},
                {KVMREG_ID_AA64PFR0_EL1, 0x603000000013c020ull},
                {KVMREG_ID_AA64ZFR0_EL1, 0x603000000013c024ull},
                /* Fields at their limits. */
                {kvmreg_zreg(0, 0), 0x6080000000150000ull},
                {kvmreg_zreg(31, 31), 0x60800000001503ffull},
                {kvmreg_zreg(0, 1), 0x6080000000150001ull},
                {kvmreg_preg(0, 0), 0x6050000000150400ull},
                {kvmreg_preg(15, 31), 0x60500000001505ffull},
                {kvmreg_ffr(31), 0x605000000015061full},
                {kvmreg_sys(3, 7, 15, 15, 7), 0x603000000013ffffull},
                {kvmreg_sys(0, 0, 0, 0, 0), 0x6030000000130000ull},
                /* Core: offsets in 32-bit words into struct kvm_regs. */
                {kvmreg_core_x(0), 0x6030000000100000ull},
                {kvmreg_core_x(30), 0x603000000010003cull},
                {kvmreg_core_sp(), 0x603000000010003eull},
                {kvmreg_core_pc(), 0x6030000000100040ull},
                {kvmreg_core_pstate(), 0x6030000000100042ull},
                {kvmreg_core_sp_el1(), 0x6030000000100044ull},
                {kvmreg_core_elr_el1(), 0x6030000000100046ull},
                {kvmreg_core_spsr(0), 0x6030000000100048ull},
                {kvmreg_core_spsr(4), 0x6030000000100050ull},
                {kvmreg_core_vreg(0), 0x6040000000100054ull},
                {kvmreg_core_vreg(31), 0x60400000001000d0ull},
                {kvmreg_core_fpsr(), 0x60200000001000d4ull},
                {kvmreg_core_fpcr(), 0x60200000001000d5ull},
                /* Firmware, feature bitmaps, CCSIDR. */
                {kvmreg_fw(0), 0x6030000000140000ull},
                {kvmreg_fw(3), 0x6030000000140003ull},
                {kvmreg_fw(0xffff), 0x603000000014ffffull},
                {kvmreg_fw_feat(2), 0x6030000000160002ull},
                {kvmreg_demux_ccsidr(0xd), 0x602000000011000dull},
                /* Out of range: 0, never an alias of another register. */
                {kvmreg_zreg(32, 0), 0},
                {kvmreg_zreg(0, 32), 0},
                {kvmreg_preg(16, 0), 0},
                {kvmreg_preg(0, 32), 0},
                {kvmreg_ffr(32), 0},
                {kvmreg_sys(4, 0, 0, 0, 0), 0},
                {kvmreg_sys(0, 8, 0, 0, 0), 0},
                {kvmreg_sys(0, 0, 16, 0, 0), 0},
                {kvmreg_sys(0, 0, 0, 16, 0), 0},
                {kvmreg_sys(0, 0, 0, 0, 8), 0},
                {kvmreg_core_x(31), 0},
                {kvmreg_core_vreg(32), 0},
                {kvmreg_core_spsr(5), 0},
                {kvmreg_fw(0x10000), 0},
                {kvmreg_fw_feat(0x10000), 0},
                {kvmreg_demux_ccsidr(0x100), 0},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (cases[i].got != cases[i].want)
                        fail_msg("case %zu: 0x%016" PRIx64 " != 0x%016" PRIx64, i, cases[i].got,
                                 cases[i].want);

        /* DESIGN.md's literals are what the kernels really list. */
        assert_true(in_reglists(0x6080000000150060ull));
        assert_true(in_reglists(0x60500000001505e0ull));
        assert_true(in_reglists(0x6050000000150600ull));
        assert_true(in_reglists(0x606000000015ffffull));
        assert_true(in_reglists(0x603000000013c090ull));
        assert_false(in_reglists(0x6030000000138090ull));
        assert_true(in_reglists(kvmreg_core_vreg(31)));
        assert_true(in_reglists(kvmreg_core_fpcr()));
        assert_true(in_reglists(kvmreg_demux_ccsidr(0xd)));
}

static void assert_name(uint64_t id, const char *want)
{
        char name[64];
        uint64_t back = 0;
        struct svemig_error err = {0};

        kvmreg_name(id, name, sizeof(name));
        assert_string_equal(name, want);
        if (kvmreg_parse(want, &back, &err) != 0)
                fail_msg("'%s': %s", want, err.msg);
        assert_int_equal(back, id);
}

/* The names kvmreg.h documents, and the timers with the kernel's CNT/CVAL swap. */
static void test_names(void **state)
{
        assert_name(kvmreg_core_x(3), "x3");
        assert_name(kvmreg_core_sp(), "sp");
        assert_name(kvmreg_core_pc(), "pc");
        assert_name(kvmreg_core_pstate(), "pstate");
        assert_name(kvmreg_core_sp_el1(), "sp_el1");
        assert_name(kvmreg_core_elr_el1(), "elr_el1");
        assert_name(kvmreg_core_spsr(2), "spsr[2]");
        assert_name(kvmreg_core_vreg(7), "v7");
        assert_name(kvmreg_core_fpsr(), "fpsr");
        assert_name(kvmreg_core_fpcr(), "fpcr");
        assert_name(kvmreg_zreg(3, 0), "z3[0]");
        assert_name(kvmreg_zreg(31, 7), "z31[7]");
        assert_name(kvmreg_preg(15, 0), "p15[0]");
        assert_name(kvmreg_ffr(0), "ffr[0]");
        assert_name(kvmreg_ffr(31), "ffr[31]");
        assert_name(kvmreg_vls(), "SVE_VLS");
        assert_name(KVMREG_ZCR_EL1, "ZCR_EL1");
        assert_name(KVMREG_CPACR_EL1, "CPACR_EL1");
        assert_name(KVMREG_ID_AA64PFR0_EL1, "ID_AA64PFR0_EL1");
        assert_name(KVMREG_ID_AA64ZFR0_EL1, "ID_AA64ZFR0_EL1");
        assert_name(kvmreg_sys(3, 0, 0, 6, 0), "ID_AA64ISAR0_EL1");
        assert_name(kvmreg_sys(3, 0, 0, 0, 0), "MIDR_EL1");
        assert_name(kvmreg_sys(3, 0, 0, 0, 5), "MPIDR_EL1");
        assert_name(kvmreg_sys(3, 0, 1, 0, 0), "SCTLR_EL1");
        assert_name(kvmreg_sys(3, 0, 2, 0, 1), "TTBR1_EL1");
        assert_name(kvmreg_sys(3, 3, 13, 0, 3), "TPIDRRO_EL0");
        assert_name(kvmreg_sys(2, 0, 0, 2, 2), "MDSCR_EL1");
        assert_name(kvmreg_sys(2, 0, 0, 0, 4), "DBGBVR0_EL1");
        assert_name(kvmreg_sys(2, 0, 0, 15, 7), "DBGWCR15_EL1");
        assert_name(kvmreg_sys(3, 3, 14, 8, 0), "PMEVCNTR0_EL0");
        assert_name(kvmreg_sys(3, 3, 14, 15, 6), "PMEVTYPER30_EL0");
        assert_name(kvmreg_sys(3, 3, 14, 15, 7), "PMCCFILTR_EL0");
        assert_name(kvmreg_sys(3, 0, 14, 1, 0), "CNTKCTL_EL1");
        assert_name(kvmreg_fw(0), "FW[0x0000]");
        assert_name(kvmreg_fw_feat(1), "FW_FEAT[0x0001]");
        assert_name(kvmreg_demux_ccsidr(3), "DEMUX[0x0003]");

        /*
         * asm/kvm.h: KVM_REG_ARM_TIMER_CVAL and _CNT "have been accidentally
         * swapped": CNT carries CNTV_CVAL_EL0's encoding (3,3,14,3,2) and CVAL
         * carries CNTVCT_EL0's (3,3,14,0,2).
         */
        assert_name(0x603000000013df19ull, "TIMER_CTL");
        assert_name(kvmreg_sys(3, 3, 14, 3, 2), "TIMER_CNT");
        assert_name(kvmreg_sys(3, 3, 14, 0, 2), "TIMER_CVAL");
        assert_name(0x603000000013df11ull, "PTIMER_CTL");
        assert_name(0x603000000013df01ull, "PTIMER_CNT");
        assert_name(0x603000000013df12ull, "PTIMER_CVAL");

        /* Unknown groups keep their ID. */
        assert_name(0x6030000000170000ull, "REG_0x6030000000170000");
        /* A demux ID other than CCSIDR is not one the kernel defines: kept as unknown. */
        assert_name(0x6020000000110100ull, "REG_0x6020000000110100");
}

static void test_parse_forms(void **state)
{
        static const struct {
                const char *name;
                uint64_t id;
        } cases[] = {
                /* System register names are case-insensitive; so is the S form. */
                {"zcr_el1", 0x603000000013c090ull},
                {"Zcr_El1", 0x603000000013c090ull},
                {"S3_0_C1_C2_0", 0x603000000013c090ull},
                {"s3_0_c1_c2_0", 0x603000000013c090ull},
                {"S3_3_C14_C3_2", 0x603000000013df1aull},
                {"timer_cnt", 0x603000000013df1aull},
                {"dbgbvr15_el1", 0x603000000013807cull},
                /* REG_0x takes any decodable ID, named or not. */
                {"REG_0x603000000013c090", 0x603000000013c090ull},
                {"reg_0x6080000000150060", 0x6080000000150060ull},
                {"FW[0x3]", 0x6030000000140003ull},
                {"fw_feat[0x0002]", 0x6030000000160002ull},
                {"demux[0xd]", 0x602000000011000dull},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct svemig_error err = {0};
                uint64_t id = 0;

                if (kvmreg_parse(cases[i].name, &id, &err) != 0)
                        fail_msg("'%s': %s", cases[i].name, err.msg);
                if (id != cases[i].id)
                        fail_msg("'%s' parses to 0x%016" PRIx64, cases[i].name, id);
        }
}

/* Every system register encoding names and parses back; the unnamed ones as S<op0>_<op1>_C<n>_C<m>_<op2>. */
static void test_sysreg_names(void **state)
{
        unsigned named = 0, unnamed = 0;

        for (unsigned enc = 0; enc <= 0xffff; enc++) {
                unsigned op0 = enc >> 14, op1 = (enc >> 11) & 7, crn = (enc >> 7) & 15,
                         crm = (enc >> 3) & 15, op2 = enc & 7;
                uint64_t id = kvmreg_sys(op0, op1, crn, crm, op2), back = 0;
                struct svemig_error err = {0};
                char name[64], sform[64];
                struct kvmreg r;

                assert_int_equal(id, 0x6030000000130000ull | enc);
                assert_int_equal(kvmreg_decode(id, &r, NULL), 0);
                assert_true(r.op0 == op0 && r.op1 == op1 && r.crn == crn && r.crm == crm && r.op2 == op2);
                assert_int_equal(r.cls, r.cls == KVMREG_CLASS_TIMER          ? KVMREG_CLASS_TIMER
                                        : (op0 == 3 && op1 == 0 && crn == 0) ? KVMREG_CLASS_SYS_ID
                                                                             : KVMREG_CLASS_SYS);

                kvmreg_name(id, name, sizeof(name));
                snprintf(sform, sizeof(sform), "S%u_%u_C%u_C%u_%u", op0, op1, crn, crm, op2);
                if (strcmp(name, sform) == 0)
                        unnamed++;
                else
                        named++;
                if (kvmreg_parse(name, &back, &err) != 0)
                        fail_msg("'%s': %s", name, err.msg);
                if (back != id)
                        fail_msg("'%s' (0x%016" PRIx64 ") parses to 0x%016" PRIx64, name, id, back);
                /* The S form always parses, also for named registers. */
                assert_int_equal(kvmreg_parse(sform, &back, NULL), 0);
                assert_int_equal(back, id);
        }
        assert_true(named > 150);
        assert_true(unnamed > 60000);

        /* Examples of reserved ID encodings that the kernels list. */
        assert_name(kvmreg_sys(3, 0, 0, 3, 3), "S3_0_C0_C3_3");
        assert_true(in_reglists(kvmreg_sys(3, 0, 0, 3, 3)));
        assert_name(kvmreg_sys(3, 0, 0, 7, 7), "S3_0_C0_C7_7");
        assert_name(kvmreg_sys(1, 2, 3, 4, 5), "S1_2_C3_C4_5");
}

static void assert_decode_error(uint64_t id, const char *reason)
{
        struct svemig_error err = {0};
        struct kvmreg r = {.id = 42};
        char hex[32], name[64];

        assert_int_equal(kvmreg_decode(id, &r, &err), -EINVAL);
        assert_int_equal(err.code, EINVAL);
        snprintf(hex, sizeof(hex), "0x%016" PRIx64, id);
        if (!strstr(err.msg, hex) || !strstr(err.msg, reason))
                fail_msg("0x%016" PRIx64 ": '%s' lacks '%s' or '%s'", id, err.msg, hex, reason);
        /* The output is left alone on failure. */
        assert_int_equal(r.id, 42);
        /* The error path works without an error struct, and such an ID still has a name. */
        assert_int_equal(kvmreg_decode(id, NULL, NULL), -EINVAL);
        snprintf(hex, sizeof(hex), "REG_0x%016" PRIx64, id);
        kvmreg_name(id, name, sizeof(name));
        assert_string_equal(name, hex);
}

static void test_decode_errors(void **state)
{
        /* Not arm64: a 32-bit arm ID, an x86 one, 0 (what the encoders return for bad arguments). */
        assert_decode_error(0x4030000000100000ull,
                            "is not an arm64 KVM register ID: its architecture byte is 0x40");
        assert_decode_error(0x2030000000000000ull, "architecture byte is 0x20, arm64's is 0x60");
        assert_decode_error(0, "architecture byte is 0x00");
        /* Wider than any register. */
        assert_decode_error(0x6090000000150000ull, "size field 9 means 512 bytes, more than the widest");
        assert_decode_error(0x60f0000000130000ull, "size field 15 means 32768 bytes");
        /* Bits no group uses. */
        assert_decode_error(0x6030000010100000ull, "bits 0x0000000010000000 are set");
        assert_decode_error(0x603800000013c090ull, "bits 0x0008000000000000 are set");
        /* Core: not the start of a register, past struct kvm_regs, or the wrong size. */
        assert_decode_error(0x6030000000100001ull,
                            "index 0x0001 is not the start of a register in struct kvm_regs");
        assert_decode_error(0x6040000000100055ull, "index 0x0055 is not the start");
        assert_decode_error(0x60200000001000d6ull, "index 0x00d6 is not the start");
        assert_decode_error(0x6030000000101000ull, "index 0x1000 is not the start");
        assert_decode_error(0x6020000000100000ull,
                            "x0 is 8 bytes wide (size field 3), but the ID's size field 2 "
                            "says 4 bytes");
        assert_decode_error(0x6030000000100054ull, "v0 is 16 bytes wide");
        assert_decode_error(0x60300000001000d4ull, "fpsr is 4 bytes wide");
        assert_decode_error(0x6040000000100048ull, "spsr[0] is 8 bytes wide");
        /* SVE: Z is U2048, P and FFR U256, VLS U512; nothing else in the group. */
        assert_decode_error(0x6050000000150060ull,
                            "z3[0] is 256 bytes wide (size field 8), but the ID's size field "
                            "5 says 32 bytes");
        assert_decode_error(0x6030000000150060ull, "z3[0] is 256 bytes wide");
        assert_decode_error(0x60800000001505e0ull, "p15[0] is 32 bytes wide");
        assert_decode_error(0x6080000000150600ull, "ffr[0] is 32 bytes wide");
        assert_decode_error(0x603000000015ffffull, "SVE_VLS is 64 bytes wide");
        assert_decode_error(0x6050000000150620ull,
                            "index 0x0620 is not a Z (0x0000-0x03ff), P (0x0400-0x05ff), FFR");
        assert_decode_error(0x6050000000158000ull, "index 0x8000 is not a Z");
        /* System registers, firmware and CCSIDR registers have one size. */
        assert_decode_error(0x602000000013c090ull, "system register S3_0_C1_C2_0 is 8 bytes wide");
        assert_decode_error(0x604000000013df1aull, "says 16 bytes");
        assert_decode_error(0x6020000000140000ull, "FW[0x0000] is 8 bytes wide");
        assert_decode_error(0x6040000000160001ull, "FW_FEAT[0x0001] is 8 bytes wide");
        assert_decode_error(0x6030000000110003ull, "DEMUX[0x0003] is 4 bytes wide");
}

/* Decoded fields, per class. */
static void test_decode_fields(void **state)
{
        struct kvmreg r;

        assert_int_equal(kvmreg_decode(kvmreg_zreg(3, 5), &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_SVE_Z);
        assert_int_equal(r.n, 3);
        assert_int_equal(r.slice, 5);
        assert_int_equal(r.size, KVMREG_ZREG_SLICE_BYTES);

        assert_int_equal(kvmreg_decode(kvmreg_preg(9, 2), &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_SVE_P);
        assert_int_equal(r.n, 9);
        assert_int_equal(r.slice, 2);
        assert_int_equal(r.size, KVMREG_PREG_SLICE_BYTES);

        assert_int_equal(kvmreg_decode(kvmreg_ffr(4), &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_SVE_FFR);
        assert_int_equal(r.slice, 4);

        assert_int_equal(kvmreg_decode(kvmreg_vls(), &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_SVE_VLS);
        assert_int_equal(r.size, KVMREG_VLS_BYTES);

        assert_int_equal(kvmreg_decode(kvmreg_core_x(5), &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_CORE);
        assert_int_equal(r.n, 5);
        assert_int_equal(r.core_off, 10);

        assert_int_equal(kvmreg_decode(kvmreg_core_spsr(3), &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_CORE);
        assert_int_equal(r.n, 3);

        assert_int_equal(kvmreg_decode(kvmreg_core_vreg(7), &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_CORE_FP);
        assert_int_equal(r.n, 7);
        assert_int_equal(r.core_off, 0x54 + 7 * 4);
        assert_int_equal(r.size, 16);

        assert_int_equal(kvmreg_decode(kvmreg_core_fpcr(), &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_CORE_FPCR);
        assert_int_equal(r.size, 4);

        assert_int_equal(kvmreg_decode(KVMREG_ZCR_EL1, &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_SYS);
        assert_true(r.op0 == 3 && r.op1 == 0 && r.crn == 1 && r.crm == 2 && r.op2 == 0);

        assert_int_equal(kvmreg_decode(KVMREG_ID_AA64ZFR0_EL1, &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_SYS_ID);

        assert_int_equal(kvmreg_decode(0x603000000013df1aull, &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_TIMER);
        assert_true(r.op0 == 3 && r.op1 == 3 && r.crn == 14 && r.crm == 3 && r.op2 == 2);

        assert_int_equal(kvmreg_decode(kvmreg_fw(2), &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_FW);
        assert_int_equal(r.index, 2);

        assert_int_equal(kvmreg_decode(kvmreg_fw_feat(1), &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_FW_FEAT);
        assert_int_equal(r.index, 1);

        assert_int_equal(kvmreg_decode(kvmreg_demux_ccsidr(0xd), &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_DEMUX);
        assert_int_equal(r.index, 0xd);
        assert_int_equal(r.size, 4);

        /* A newer kernel's group: rc 0, unknown, index kept. */
        assert_int_equal(kvmreg_decode(0x6080000000170123ull, &r, NULL), 0);
        assert_int_equal(r.cls, KVMREG_CLASS_UNKNOWN);
        assert_int_equal(r.index, 0x123);
        assert_int_equal(r.size, 256);
}

static void assert_parse_error(const char *name, const char *reason)
{
        struct svemig_error err = {0};
        uint64_t id = 42;

        assert_int_equal(kvmreg_parse(name, &id, &err), -EINVAL);
        assert_int_equal(err.code, EINVAL);
        if (!strstr(err.msg, reason))
                fail_msg("'%s': '%s' lacks '%s'", name, err.msg, reason);
        assert_int_equal(id, 42);
        assert_int_equal(kvmreg_parse(name, &id, NULL), -EINVAL);
}

static void test_parse_errors(void **state)
{
        assert_parse_error("z3[32]", "register name 'z3[32]': the slice must be 0..31");
        assert_parse_error("ffr[99999999999999999999]", "the slice must be 0..31");
        assert_parse_error("z32[0]", "register name 'z32[0]': z... takes an index from 0 to 31");
        assert_parse_error("p16[0]", "p... takes an index from 0 to 15");
        assert_parse_error("x31", "x... takes an index from 0 to 30");
        assert_parse_error("v32", "v... takes an index from 0 to 31");
        assert_parse_error("spsr[5]", "spsr[...] takes an index from 0 to 4");
        assert_parse_error("DBGBVR16_EL1", "DBGBVR..._EL1 takes an index from 0 to 15");
        assert_parse_error("FW[0x10000]", "FW[...] takes an index from 0x0 to 0xffff");
        assert_parse_error("DEMUX[0x100]", "DEMUX[...] takes an index from 0x0 to 0xff");
        assert_parse_error("S4_0_C0_C0_0", "register name 'S4_0_C0_C0_0': op0 must be 0..3");
        assert_parse_error("S3_8_C0_C0_0", "op1 must be 0..7");
        assert_parse_error("S3_0_C16_C0_0", "CRn must be 0..15");
        assert_parse_error("S3_0_C0_C16_0", "CRm must be 0..15");
        assert_parse_error("S3_0_C0_C0_8", "op2 must be 0..7");
        assert_parse_error("REG_0x4030000000100000", "register name 'REG_0x4030000000100000': register "
                                                     "0x4030000000100000 is not an arm64 KVM register ID");
        assert_parse_error("REG_0x6050000000150060", "z3[0] is 256 bytes wide");
        /* Not a name at all: the message lists the accepted forms. */
        assert_parse_error("bogus", "'bogus' is not an arm64 KVM register name: use x0..x30");
        assert_parse_error("", "'' is not an arm64 KVM register name");
        assert_parse_error("z3", "ffr[slice], SVE_VLS");
        assert_parse_error("z3[0", "is not an arm64 KVM register name");
        assert_parse_error("z3[0]x", "is not an arm64 KVM register name");
        assert_parse_error("x-1", "is not an arm64 KVM register name");
        assert_parse_error("FW[3]", "FW[0x<n>]");
        assert_parse_error("S3_0_C1_C2", "S<op0>_<op1>_C<n>_C<m>_<op2>");
        assert_parse_error("REG_0x", "REG_0x<id>");
        assert_parse_error("REG_0x1603000000013c090", "REG_0x<id>");
        assert_parse_error("REG_0x603000000013c090 ", "REG_0x<id>");
        assert_parse_error(NULL, "no register name given");
}

/* Restore order: VLS, firmware, ID registers, other sysregs, core, FP, SVE, CCSIDR, timers last. */
static void test_restore_rank(void **state)
{
        static const enum kvmreg_class order[][3] = {
                {KVMREG_CLASS_SVE_VLS},
                {KVMREG_CLASS_FW, KVMREG_CLASS_FW_FEAT},
                {KVMREG_CLASS_SYS_ID},
                {KVMREG_CLASS_SYS},
                {KVMREG_CLASS_CORE},
                {KVMREG_CLASS_CORE_FP, KVMREG_CLASS_CORE_FPCR},
                {KVMREG_CLASS_SVE_Z, KVMREG_CLASS_SVE_P, KVMREG_CLASS_SVE_FFR},
                {KVMREG_CLASS_DEMUX},
                {KVMREG_CLASS_UNKNOWN},
                {KVMREG_CLASS_TIMER},
        };
        int prev = -1;
        unsigned seen = 0;

        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                int rank = kvmreg_restore_rank(order[i][0]);

                assert_true(rank > prev);
                for (size_t j = 0; j < 3 && (j == 0 || order[i][j] != KVMREG_CLASS_UNKNOWN); j++) {
                        assert_int_equal(kvmreg_restore_rank(order[i][j]), rank);
                        seen++;
                }
                prev = rank;
        }
        /* Every class has its place. */
        assert_int_equal(seen, _KVMREG_CLASS_MAX);
        assert_int_equal(kvmreg_restore_rank(_KVMREG_CLASS_MAX), -EINVAL);
        assert_int_equal(kvmreg_restore_rank((enum kvmreg_class) - 1), -EINVAL);

        /* Class names are distinct. */
        for (int a = 0; a < _KVMREG_CLASS_MAX; a++)
                for (int b = a + 1; b < _KVMREG_CLASS_MAX; b++)
                        assert_string_not_equal(kvmreg_class_name(a), kvmreg_class_name(b));
        assert_string_equal(kvmreg_class_name(KVMREG_CLASS_SVE_Z), "sve-z");
        assert_string_equal(kvmreg_class_name(_KVMREG_CLASS_MAX), "invalid");
}

/* xorshift64*: a fixed sequence, so that a failure reproduces. */
static uint64_t next_random(uint64_t *x)
{
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        return *x * 0x2545f4914f6cdd1dull;
}

/*
 * IDs built from random fields, mostly in the arm64 groups: each one either
 * decodes, names and parses back to itself, or is refused with EINVAL and a
 * reason that shows it.
 */
static void test_random_ids(void **state)
{
        static const unsigned groups[] = {0x10, 0x11, 0x13, 0x14, 0x15, 0x16, 0x17, 0xfff};
        uint64_t x = 0x5eed5eed5eed5eedull;
        unsigned ok = 0, refused = 0;

        for (unsigned i = 0; i < 200000; i++) {
                uint64_t rnd = next_random(&x), id, back = 0;
                struct svemig_error err = {0};
                char name[64], hex[32];
                struct kvmreg r;

                id = KVMREG_ARM64 | ((rnd >> 16) % 10) << KVMREG_SIZE_SHIFT |
                     (uint64_t)groups[(rnd >> 24) % ELEMENTSOF(groups)] << KVMREG_COPROC_SHIFT |
                     (rnd & 0xffff);
                if ((rnd >> 32) % 64 == 0)
                        id |= 1ull << (28 + (rnd >> 40) % 24);
                if ((rnd >> 48) % 64 == 0)
                        id ^= 1ull << (56 + (rnd >> 56) % 8);

                kvmreg_name(id, name, sizeof(name));
                if (kvmreg_decode(id, &r, &err) == 0) {
                        if (kvmreg_parse(name, &back, &err) != 0 || back != id)
                                fail_msg("0x%016" PRIx64 " '%s' does not parse back: %s", id, name, err.msg);
                        ok++;
                } else {
                        assert_int_equal(err.code, EINVAL);
                        snprintf(hex, sizeof(hex), "0x%016" PRIx64, id);
                        assert_non_null(strstr(err.msg, hex));
                        assert_int_equal(strncmp(name, "REG_", 4), 0);
                        refused++;
                }
        }
        assert_true(ok > 10000);
        assert_true(refused > 10000);
}

/* kvmreg_name() behaves like snprintf. */
static void test_name_buffer(void **state)
{
        char small[4];
        uint64_t id = kvmreg_sys(3, 0, 0, 4, 0); /* ID_AA64PFR0_EL1 */

        assert_int_equal(kvmreg_name(id, NULL, 0), strlen("ID_AA64PFR0_EL1"));
        memset(small, 'X', sizeof(small));
        assert_int_equal(kvmreg_name(id, small, sizeof(small)), strlen("ID_AA64PFR0_EL1"));
        assert_string_equal(small, "ID_");
        assert_int_equal(kvmreg_name(0x6030000000170000ull, small, sizeof(small)),
                         strlen("REG_0x6030000000170000"));
        assert_string_equal(small, "REG");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reglists),      cmocka_unit_test(test_encoders),
                cmocka_unit_test(test_names),         cmocka_unit_test(test_parse_forms),
                cmocka_unit_test(test_sysreg_names),  cmocka_unit_test(test_decode_errors),
                cmocka_unit_test(test_decode_fields), cmocka_unit_test(test_parse_errors),
                cmocka_unit_test(test_restore_rank),  cmocka_unit_test(test_random_ids),
                cmocka_unit_test(test_name_buffer),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
