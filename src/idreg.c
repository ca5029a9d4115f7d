/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The feature ID registers' fields and their safety rules: the kernel's
 * arm64_ftr_bits (arch/arm64/kernel/cpufeature.c, 6.12), which KVM's
 * arm64_check_features() applies to a VMM's writes. Fields the kernel does
 * not list must keep the host's value, as KVM requires.
 */
#include <errno.h>
#include <stdio.h>

#include "macro.h"
#include "svemig/hv.h"
#include "svemig/idreg.h"
#include "svemig/kvmreg.h"

#define SYSREG(op0, op1, crn, crm, op2)                                                                     \
        (0x6030000000130000ull | ((uint64_t)(op0) << 14) | ((uint64_t)(op1) << 11) |                        \
         ((uint64_t)(crn) << 7) | ((uint64_t)(crm) << 3) | (uint64_t)(op2))

#define LOWER(n, s)                                                                                         \
        {                                                                                                   \
                n, s, 4, false, IDREG_LOWER_SAFE, 0                                                         \
        }
#define SLOWER(n, s)                                                                                        \
        {                                                                                                   \
                n, s, 4, true, IDREG_LOWER_SAFE, 0                                                          \
        }
#define HIGHER(n, s)                                                                                        \
        {                                                                                                   \
                n, s, 4, false, IDREG_HIGHER_SAFE, 0                                                        \
        }
#define EXACT(n, s, v)                                                                                      \
        {                                                                                                   \
                n, s, 4, false, IDREG_EXACT, v                                                              \
        }
/* A field only EL2 or EL3 software uses (docs/cpu-baseline.md): not compared between hosts. */
#define EL2(n, s, r, v)                                                                                     \
        {                                                                                                   \
                n, s, 4, false, r, v, 0, true                                                               \
        }

static const struct idreg_field pfr0[] = {
        LOWER("CSV3", 60),
        LOWER("CSV2", 56),
        LOWER("DIT", 48),
        LOWER("AMU", 44),
        LOWER("MPAM", 40),
        EL2("SEL2", 36, IDREG_LOWER_SAFE, 0),
        LOWER("SVE", 32),
        LOWER("RAS", 28),
        LOWER("GIC", 24),
        SLOWER("AdvSIMD", 20),
        SLOWER("FP", 16),
        EL2("EL3", 12, IDREG_LOWER_SAFE, 0),
        EL2("EL2", 8, IDREG_LOWER_SAFE, 0),
        LOWER("EL1", 4),
        LOWER("EL0", 0),
};

static const struct idreg_field pfr1[] = {
        LOWER("DF2", 56), LOWER("GCS", 44),       SLOWER("MTE_frac", 40),
        LOWER("SME", 24), LOWER("MPAM_frac", 16), LOWER("RAS_frac", 12),
        LOWER("MTE", 8),  LOWER("SSBS", 4),       LOWER("BT", 0),
};

static const struct idreg_field zfr0[] = {
        LOWER("F64MM", 56),   LOWER("F32MM", 52),   LOWER("F16MM", 48),  LOWER("I8MM", 44),
        LOWER("SM4", 40),     LOWER("SHA3", 32),    LOWER("B16B16", 24), LOWER("BF16", 20),
        LOWER("BitPerm", 16), LOWER("EltPerm", 12), LOWER("AES", 4),     LOWER("SVEver", 0),
};

static const struct idreg_field dfr0[] = {
        SLOWER("DoubleLock", 36),
        LOWER("PMSVer", 32),
        LOWER("CTX_CMPs", 28),
        LOWER("WRPs", 20),
        LOWER("BRPs", 12),
        /* KVM's own rules for a guest: lower-safe, where the host's are exact. */
        SLOWER("PMUVer", 8),
        {"DebugVer", 0, 4, false, IDREG_LOWER_SAFE, 0, 6},
};

static const struct idreg_field isar0[] = {
        LOWER("RNDR", 60),  LOWER("TLB", 56),  LOWER("TS", 52),   LOWER("FHM", 48), LOWER("DP", 44),
        LOWER("SM4", 40),   LOWER("SM3", 36),  LOWER("SHA3", 32), LOWER("RDM", 28), LOWER("ATOMIC", 20),
        LOWER("CRC32", 16), LOWER("SHA2", 12), LOWER("SHA1", 8),  LOWER("AES", 4),
};

static const struct idreg_field isar1[] = {
        LOWER("XS", 56),      LOWER("I8MM", 52),  LOWER("DGH", 48),     LOWER("BF16", 44),
        LOWER("SPECRES", 40), LOWER("SB", 36),    LOWER("FRINTTS", 32), LOWER("GPI", 28),
        LOWER("GPA", 24),     LOWER("LRCPC", 20), LOWER("FCMA", 16),    LOWER("JSCVT", 12),
        EXACT("API", 8, 0),   EXACT("APA", 4, 0), LOWER("DPB", 0),
};

static const struct idreg_field isar2[] = {
        LOWER("LUT", 56),  LOWER("CSSC", 52),    LOWER("RPRFM", 48), LOWER("CLRBHB", 28), LOWER("BC", 20),
        LOWER("MOPS", 16), EXACT("APA3", 12, 0), LOWER("GPA3", 8),   LOWER("RPRES", 4),   LOWER("WFxT", 0),
};

static const struct idreg_field mmfr0[] = {
        LOWER("ECV", 60),
        EL2("FGT", 56, IDREG_LOWER_SAFE, 0),
        LOWER("EXS", 44),
        EL2("TGRAN4_2", 40, IDREG_EXACT, 1),
        EL2("TGRAN64_2", 36, IDREG_EXACT, 1),
        EL2("TGRAN16_2", 32, IDREG_EXACT, 1),
        SLOWER("TGRAN4", 28),
        SLOWER("TGRAN64", 24),
        LOWER("TGRAN16", 20),
        LOWER("BIGENDEL0", 16),
        LOWER("SNSMEM", 12),
        LOWER("BIGEND", 8),
        LOWER("ASIDBITS", 4),
        LOWER("PARANGE", 0),
};

static const struct idreg_field mmfr1[] = {
        LOWER("ECBHB", 60),
        LOWER("TIDCP1", 52),
        LOWER("AFP", 44),
        EL2("HCX", 40, IDREG_LOWER_SAFE, 0),
        LOWER("ETS", 36),
        LOWER("TWED", 32),
        EL2("XNX", 28, IDREG_LOWER_SAFE, 0),
        HIGHER("SpecSEI", 24),
        LOWER("PAN", 20),
        LOWER("LO", 16),
        LOWER("HPDS", 12),
        EL2("VH", 8, IDREG_LOWER_SAFE, 0),
        EL2("VMIDBits", 4, IDREG_LOWER_SAFE, 0),
        LOWER("HAFDBS", 0),
};

static const struct idreg_field mmfr2[] = {
        LOWER("E0PD", 60),
        EL2("EVT", 56, IDREG_LOWER_SAFE, 0),
        LOWER("BBM", 52),
        LOWER("TTL", 48),
        EL2("FWB", 40, IDREG_LOWER_SAFE, 0),
        LOWER("IDS", 36),
        LOWER("AT", 32),
        LOWER("ST", 28),
        EL2("NV", 24, IDREG_LOWER_SAFE, 0),
        LOWER("CCIDX", 20),
        LOWER("VARange", 16),
        LOWER("IESB", 12),
        LOWER("LSM", 8),
        LOWER("UAO", 4),
        LOWER("CnP", 0),
};

static const struct idreg_field ctr[] = {
        {"RES1", 31, 1, false, IDREG_EXACT, 1, 0},
        {"DIC", 29, 1, false, IDREG_LOWER_SAFE, 0, 0},
        {"IDC", 28, 1, false, IDREG_LOWER_SAFE, 0, 0},
        {"CWG", 24, 4, false, IDREG_HIGHER_OR_ZERO_SAFE, 0, 0},
        {"ERG", 20, 4, false, IDREG_HIGHER_OR_ZERO_SAFE, 0, 0},
        LOWER("DminLine", 16),
        {"L1Ip", 14, 2, false, IDREG_EXACT, 2 /* VIPT */, 0},
        LOWER("IminLine", 0),
};

#define DESC(op0, op1, crn, crm, op2, n, f)                                                                 \
        {                                                                                                   \
                SYSREG(op0, op1, crn, crm, op2), n, f, ELEMENTSOF(f)                                        \
        }

static const struct idreg_desc descs[] = {
        DESC(3, 0, 0, 4, 0, "ID_AA64PFR0_EL1", pfr0),
        DESC(3, 0, 0, 4, 1, "ID_AA64PFR1_EL1", pfr1),
        DESC(3, 0, 0, 4, 4, "ID_AA64ZFR0_EL1", zfr0),
        DESC(3, 0, 0, 5, 0, "ID_AA64DFR0_EL1", dfr0),
        DESC(3, 0, 0, 6, 0, "ID_AA64ISAR0_EL1", isar0),
        DESC(3, 0, 0, 6, 1, "ID_AA64ISAR1_EL1", isar1),
        DESC(3, 0, 0, 6, 2, "ID_AA64ISAR2_EL1", isar2),
        DESC(3, 0, 0, 7, 0, "ID_AA64MMFR0_EL1", mmfr0),
        DESC(3, 0, 0, 7, 1, "ID_AA64MMFR1_EL1", mmfr1),
        DESC(3, 0, 0, 7, 2, "ID_AA64MMFR2_EL1", mmfr2),
        DESC(3, 3, 0, 0, 1, "CTR_EL0", ctr),
};

bool idreg_is_feature(uint64_t id)
{
        struct kvmreg r;

        if (kvmreg_decode(id, &r, NULL) < 0 || (r.cls != KVMREG_CLASS_SYS_ID && r.cls != KVMREG_CLASS_SYS))
                return false;
        return r.op0 == 3 && (r.op1 == 0 || r.op1 == 1 || r.op1 == 3) && r.crn == 0;
}

int idreg_mask_index(uint64_t id)
{
        struct kvmreg r;

        if (!idreg_is_feature(id) || kvmreg_decode(id, &r, NULL) < 0)
                return -1;
        return hv_id_mask_index(r.op1, r.crm, r.op2);
}

uint64_t idreg_mask_id(unsigned index)
{
        static const unsigned op1[] = {0, 1, 3};

        return SYSREG(3, op1[index / 64 % 3], 0, (index / 8) % 8, index % 8);
}

const struct idreg_desc *idreg_find(uint64_t id)
{
        for (size_t i = 0; i < ELEMENTSOF(descs); i++)
                if (descs[i].id == id)
                        return &descs[i];
        return NULL;
}

uint64_t idreg_field_mask(const struct idreg_field *f)
{
        return ((1ull << f->width) - 1) << f->shift;
}

void idreg_name(uint64_t id, char *buf, size_t len)
{
        const struct idreg_desc *d = idreg_find(id);

        if (d)
                snprintf(buf, len, "%s", d->name);
        else
                kvmreg_name(id, buf, len);
}

uint64_t idreg_known_bits(const struct idreg_desc *d)
{
        uint64_t m = 0;

        for (size_t i = 0; d && i < d->n_fields; i++)
                m |= idreg_field_mask(&d->fields[i]);
        return m;
}

uint64_t idreg_el2_only_bits(uint64_t id)
{
        const struct idreg_desc *d = idreg_find(id);
        uint64_t m = 0;

        for (size_t i = 0; d && i < d->n_fields; i++)
                if (d->fields[i].el2_only)
                        m |= idreg_field_mask(&d->fields[i]);
        return m;
}

uint64_t idreg_host_kept_bits(uint64_t id)
{
        uint64_t m = idreg_el2_only_bits(id);

        if (id == SYSREG(3, 0, 0, 4, 0))
                m |= 0xfull << 24; /* ID_AA64PFR0_EL1.GIC */
        else if (id == SYSREG(3, 0, 0, 1, 1))
                m |= 0xfull << 28; /* ID_PFR1_EL1.GIC */
        return m;
}

int64_t idreg_field_get(const struct idreg_field *f, uint64_t v)
{
        uint64_t raw = (v >> f->shift) & ((1ull << f->width) - 1);

        if (f->is_signed && (raw >> (f->width - 1)))
                return (int64_t)raw - (1ll << f->width);
        return (int64_t)raw;
}

/* arm64_ftr_safe_value(): what the kernel makes of want against the host's own. */
static int64_t safe_value(const struct idreg_field *f, int64_t want, int64_t own)
{
        switch (f->rule) {
        case IDREG_EXACT:
                return f->safe;
        case IDREG_LOWER_SAFE:
                return MIN(want, own);
        case IDREG_HIGHER_OR_ZERO_SAFE:
                if (!want || !own)
                        return 0;
                return MAX(want, own);
        case IDREG_HIGHER_SAFE:
                return MAX(want, own);
        }
        return own;
}

int idreg_can_present(uint64_t id, uint64_t own, uint64_t writable, uint64_t v, struct idreg_refusal *why)
{
        const struct idreg_desc *d = idreg_find(id);
        uint64_t checked = 0;

        for (size_t i = 0; d && i < d->n_fields; i++) {
                const struct idreg_field *f = &d->fields[i];
                uint64_t mask = idreg_field_mask(f);
                int64_t want = idreg_field_get(f, v), mine = idreg_field_get(f, own);
                bool can_write = (writable & mask) == mask;

                if (!can_write)
                        continue; /* checked below with the bits no field covers */
                checked |= mask;
                if (want == mine || ((!f->floor || want >= f->floor) && safe_value(f, want, mine) == want))
                        continue;
                if (why)
                        *why = (struct idreg_refusal){f, mask, true, want, mine};
                return -EINVAL;
        }
        /*
         * Writable bits no known field covers take any value: a register the
         * kernel models itself (CLIDR_EL1 since 6.3) rather than by ftr fields.
         */
        checked |= writable & ~idreg_known_bits(d);
        if ((v & ~checked) == (own & ~checked))
                return 0;
        if (why) {
                uint64_t bad = (v ^ own) & ~checked;

                *why = (struct idreg_refusal){.mask = bad};
                for (size_t i = 0; d && i < d->n_fields; i++)
                        if (bad & idreg_field_mask(&d->fields[i])) {
                                const struct idreg_field *f = &d->fields[i];

                                *why = (struct idreg_refusal){f, idreg_field_mask(f), false,
                                                              idreg_field_get(f, v),
                                                              idreg_field_get(f, own)};
                                break;
                        }
        }
        return -EINVAL;
}

static const char *rule_name(enum idreg_rule r)
{
        switch (r) {
        case IDREG_EXACT:
                return "exact";
        case IDREG_LOWER_SAFE:
                return "lower-safe";
        case IDREG_HIGHER_SAFE:
                return "higher-safe";
        case IDREG_HIGHER_OR_ZERO_SAFE:
                return "higher-or-zero-safe";
        }
        return "unknown";
}

void idreg_refusal_format(uint64_t id, const struct idreg_refusal *why, char *buf, size_t len)
{
        char name[64];

        idreg_name(id, name, sizeof(name));
        if (!why->field) {
                snprintf(buf, len, "%s bits 0x%016llx: the kernel lets no VMM change them", name,
                         (unsigned long long)why->mask);
                return;
        }
        if (why->writable)
                snprintf(buf, len, "%s.%s: %lld here, %lld wanted; the field is %s, so %s", name,
                         why->field->name, (long long)why->own, (long long)why->want,
                         rule_name(why->field->rule),
                         why->field->rule == IDREG_EXACT
                                 ? "only the host's value or the safe one can be written"
                         : why->field->floor && why->want < why->field->floor
                                 ? "no write can go below its least value"
                                 : "no write can go that way");
        else
                snprintf(buf, len,
                         "%s.%s: %lld here, %lld wanted; this host's kernel cannot write the field", name,
                         why->field->name, (long long)why->own, (long long)why->want);
}

void idreg_first_difference(uint64_t id, uint64_t own, uint64_t want, char *buf, size_t len)
{
        const struct idreg_desc *d = idreg_find(id);
        char name[64];

        idreg_name(id, name, sizeof(name));
        for (size_t i = 0; d && i < d->n_fields; i++) {
                const struct idreg_field *f = &d->fields[i];

                if (idreg_field_get(f, own) != idreg_field_get(f, want)) {
                        snprintf(buf, len, "%s.%s is %lld here, %lld wanted (%s)", name, f->name,
                                 (long long)idreg_field_get(f, own), (long long)idreg_field_get(f, want),
                                 rule_name(f->rule));
                        return;
                }
        }
        snprintf(buf, len, "%s bits 0x%016llx differ", name,
                 (unsigned long long)((own ^ want) & ~idreg_known_bits(d)));
}
