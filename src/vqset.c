/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Sets of SVE vector quanta, kept in the exact layout of KVM_REG_ARM64_SVE_VLS,
 * and the two computations built on them: the kernel's virtualisable-VL
 * computation across CPUs, and the same computation across a cluster's hosts.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "macro.h"
#include "svemig/vqset.h"

#define BITS_PER_WORD 64u

/* Lengths in bits: 128 .. VQSET_VQ_MAX * 128 = 65536. */
#define VQSET_BITS_MAX (VQSET_VQ_MAX * 128u)
/* The raw bitmap holds VQSET_VQ_MAX bits, 4 per hex digit. */
#define VQSET_HEX_DIGITS_MAX (VQSET_VQ_MAX / 4u)

static bool vq_valid(unsigned vq)
{
        return vq >= VQSET_VQ_MIN && vq <= VQSET_VQ_MAX;
}

void vqset_clear(vqset_t *s)
{
        *s = (vqset_t){0};
}

void vqset_add(vqset_t *s, unsigned vq)
{
        if (vq_valid(vq))
                s->w[(vq - 1) / BITS_PER_WORD] |= UINT64_C(1) << ((vq - 1) % BITS_PER_WORD);
}

void vqset_del(vqset_t *s, unsigned vq)
{
        if (vq_valid(vq))
                s->w[(vq - 1) / BITS_PER_WORD] &= ~(UINT64_C(1) << ((vq - 1) % BITS_PER_WORD));
}

bool vqset_contains(const vqset_t *s, unsigned vq)
{
        if (!vq_valid(vq))
                return false;
        return (s->w[(vq - 1) / BITS_PER_WORD] >> ((vq - 1) % BITS_PER_WORD)) & 1;
}

bool vqset_empty(const vqset_t *s)
{
        for (unsigned i = 0; i < VQSET_WORDS; i++)
                if (s->w[i])
                        return false;
        return true;
}

bool vqset_equal(const vqset_t *a, const vqset_t *b)
{
        return memcmp(a->w, b->w, sizeof(a->w)) == 0;
}

unsigned vqset_count(const vqset_t *s)
{
        unsigned n = 0;

        for (unsigned i = 0; i < VQSET_WORDS; i++)
                n += (unsigned)__builtin_popcountll(s->w[i]);
        return n;
}

unsigned vqset_next(const vqset_t *s, unsigned vq)
{
        /* Bit index 'vq' holds vq + 1, the first candidate. */
        for (unsigned bit = vq; bit < VQSET_VQ_MAX;) {
                unsigned i = bit / BITS_PER_WORD;
                uint64_t word = s->w[i] & (~UINT64_C(0) << (bit % BITS_PER_WORD));

                if (word)
                        return i * BITS_PER_WORD + (unsigned)__builtin_ctzll(word) + 1;
                bit = (i + 1) * BITS_PER_WORD;
        }
        return 0;
}

unsigned vqset_lowest(const vqset_t *s)
{
        return vqset_next(s, 0);
}

unsigned vqset_highest(const vqset_t *s)
{
        for (unsigned i = VQSET_WORDS; i-- > 0;)
                if (s->w[i])
                        return i * BITS_PER_WORD + (BITS_PER_WORD - 1 - (unsigned)__builtin_clzll(s->w[i])) +
                               1;
        return 0;
}

vqset_t vqset_and(const vqset_t *a, const vqset_t *b)
{
        vqset_t r;

        for (unsigned i = 0; i < VQSET_WORDS; i++)
                r.w[i] = a->w[i] & b->w[i];
        return r;
}

vqset_t vqset_or(const vqset_t *a, const vqset_t *b)
{
        vqset_t r;

        for (unsigned i = 0; i < VQSET_WORDS; i++)
                r.w[i] = a->w[i] | b->w[i];
        return r;
}

vqset_t vqset_andnot(const vqset_t *a, const vqset_t *b)
{
        vqset_t r;

        for (unsigned i = 0; i < VQSET_WORDS; i++)
                r.w[i] = a->w[i] & ~b->w[i];
        return r;
}

vqset_t vqset_range(unsigned max_vq)
{
        vqset_t r = {0};

        max_vq = MIN(max_vq, VQSET_VQ_MAX);
        for (unsigned i = 0; i < VQSET_WORDS; i++) {
                unsigned lo = i * BITS_PER_WORD; /* bits below lo are in earlier words */

                if (max_vq >= lo + BITS_PER_WORD)
                        r.w[i] = ~UINT64_C(0);
                else if (max_vq > lo)
                        r.w[i] = (UINT64_C(1) << (max_vq - lo)) - 1;
        }
        return r;
}

vqset_t vqset_upto(const vqset_t *s, unsigned max_vq)
{
        vqset_t range = vqset_range(max_vq);

        return vqset_and(s, &range);
}

/* ---- parsing ---- */

#define ACCEPTED_FORMS                                                                                      \
        "accepted forms: lengths in bits (\"128,256,512\" or \"128-512\"; multiples of 128 up to 65536), "  \
        "quanta (\"vq1,vq2,vq4\" or \"vq1-vq4\"; vq1 to vq512), the SVE_VLS bitmap in hex "                 \
        "(\"0xb\"; up to 512 bits), or \"none\" for a host without SVE"

/* Long input is cut in messages so the reason and the accepted forms still fit. */
#define QUOTE_MAX 48

enum parse_form {
        FORM_UNKNOWN,
        FORM_BITS,
        FORM_VQ,
};

struct token {
        const char *text; /* the whole input, for the message */
        const char *p;
        size_t len;
};

static int parse_fail(struct svemig_error *err, const struct token *t, const char *why)
{
        size_t tlen = strlen(t->text);

        return svemig_error_set(err, EINVAL, "invalid vector-length set \"%.*s%s\": \"%.*s%s\" %s; %s",
                                (int)MIN(tlen, (size_t)QUOTE_MAX), t->text, tlen > QUOTE_MAX ? "..." : "",
                                (int)MIN(t->len, (size_t)QUOTE_MAX), t->p, t->len > QUOTE_MAX ? "..." : "",
                                why, ACCEPTED_FORMS);
}

static bool has_prefix_ci(const char *p, size_t len, const char *prefix)
{
        size_t n = strlen(prefix);

        return len >= n && strncasecmp(p, prefix, n) == 0;
}

/*
 * A decimal number of p[0..len): digits only, no sign or blank. Values past
 * UINT32_MAX saturate there; every caller refuses them as out of range.
 */
static bool parse_decimal(const char *p, size_t len, unsigned long *out)
{
        unsigned long v = 0;

        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++) {
                if (!isdigit((unsigned char)p[i]))
                        return false;
                v = MIN(v * 10 + (unsigned long)(p[i] - '0'), (unsigned long)UINT32_MAX);
        }
        *out = v;
        return true;
}

/* One end of a range, or a single entry: "256" in bits or "vq2" in quanta. Returns its vq. */
static int parse_endpoint(const struct token *t, const char *p, size_t len, enum parse_form form,
                          unsigned *vq, struct svemig_error *err)
{
        unsigned long v;

        if (form == FORM_VQ) {
                if (!has_prefix_ci(p, len, "vq"))
                        return parse_fail(err, t,
                                          "mixes quanta with another form; write every entry as vqN");
                if (!parse_decimal(p + 2, len - 2, &v))
                        return parse_fail(err, t,
                                          "is not a vector quantum; write vqN with N a decimal number");
                if (v < VQSET_VQ_MIN || v > VQSET_VQ_MAX)
                        return parse_fail(err, t, "is out of range; quanta run from vq1 to vq512");
                *vq = (unsigned)v;
                return 0;
        }

        if (has_prefix_ci(p, len, "vq"))
                return parse_fail(err, t,
                                  "mixes quanta with lengths in bits; use one form for the whole set");
        if (has_prefix_ci(p, len, "0x"))
                return parse_fail(err, t, "is a hex bitmap, which must be the whole set on its own");
        if (!parse_decimal(p, len, &v))
                return parse_fail(err, t, "is not a length in bits");
        if (v == 0 || v > VQSET_BITS_MAX)
                return parse_fail(err, t, "is out of range; lengths run from 128 to 65536 bits");
        if (v % 128 != 0)
                return parse_fail(err, t, "is not a multiple of 128 bits");
        *vq = (unsigned)(v / 128);
        return 0;
}

/* One comma-separated entry: a single length or quantum, or a range "a-b". */
static int parse_entry(const struct token *t, enum parse_form form, vqset_t *out, struct svemig_error *err)
{
        const char *dash = memchr(t->p, '-', t->len);
        unsigned lo, hi;
        int r;

        if (!dash) {
                r = parse_endpoint(t, t->p, t->len, form, &lo, err);
                if (r < 0)
                        return r;
                vqset_add(out, lo);
                return 0;
        }

        r = parse_endpoint(t, t->p, (size_t)(dash - t->p), form, &lo, err);
        if (r < 0)
                return r;
        r = parse_endpoint(t, dash + 1, t->len - (size_t)(dash - t->p) - 1, form, &hi, err);
        if (r < 0)
                return r;
        if (lo > hi)
                return parse_fail(err, t, "is a reversed range; write the lower end first");
        for (unsigned vq = lo; vq <= hi; vq++)
                vqset_add(out, vq);
        return 0;
}

static int parse_bitmap(const char *text, vqset_t *out, struct svemig_error *err)
{
        struct token t = {.text = text, .p = text, .len = strlen(text)};
        const char *digits = text + 2;
        size_t n = strlen(digits);

        if (n == 0)
                return parse_fail(err, &t, "has no hex digits after 0x");
        for (size_t i = 0; i < n; i++)
                if (!isxdigit((unsigned char)digits[i]))
                        return parse_fail(err, &t,
                                          "is not a hex bitmap (a comma-separated list cannot start "
                                          "with one)");

        /* The last digit holds vq 1..4; leading zeros are allowed past 128 digits. */
        for (size_t i = 0; i < n; i++) {
                char c = digits[n - 1 - i];
                uint64_t nibble =
                        (uint64_t)(isdigit((unsigned char)c) ? c - '0'
                                                             : tolower((unsigned char)c) - 'a' + 10);

                if (nibble == 0)
                        continue;
                if (i >= VQSET_HEX_DIGITS_MAX)
                        return parse_fail(err, &t, "is wider than the 512-bit SVE_VLS register");
                out->w[i / 16] |= nibble << (4 * (i % 16));
        }
        return 0;
}

int vqset_parse(const char *text, vqset_t *out, struct svemig_error *err)
{
        enum parse_form form = FORM_UNKNOWN;
        vqset_t s = {0};
        const char *p;
        int r;

        if (!text)
                return svemig_error_set(err, EINVAL, "no vector-length set given; %s", ACCEPTED_FORMS);

        /* Empty is a mistake (a key left blank, an unset variable), not a host without SVE. */
        if (text[strspn(text, " \t")] == '\0')
                return parse_fail(err, &(struct token){.text = text, .p = text, .len = strlen(text)},
                                  "is empty (\"none\" is a host without SVE)");
        if (strcasecmp(text, "none") == 0) {
                *out = s;
                return 0;
        }

        if (has_prefix_ci(text, strlen(text), "0x")) {
                r = parse_bitmap(text, &s, err);
                if (r < 0)
                        return r;
                *out = s;
                return 0;
        }

        /* The first entry decides the form; every later one must match it. */
        form = has_prefix_ci(text, strlen(text), "vq") ? FORM_VQ : FORM_BITS;

        for (p = text;;) {
                const char *comma = strchr(p, ',');
                struct token t = {.text = text, .p = p, .len = comma ? (size_t)(comma - p) : strlen(p)};

                if (t.len == 0) {
                        t.p = text;
                        t.len = strlen(text);
                        return parse_fail(err, &t, "has an empty entry (a stray or trailing comma?)");
                }
                r = parse_entry(&t, form, &s, err);
                if (r < 0)
                        return r;
                if (!comma)
                        break;
                /* Blanks are allowed after a comma only. */
                p = comma + 1;
                p += strspn(p, " \t");
        }

        *out = s;
        return 0;
}

/* ---- formatting ---- */

/* snprintf into buf at *pos, keeping *pos the length the full text needs. */
static void append(char *buf, size_t len, size_t *pos, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void append(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(*pos < len ? buf + *pos : NULL, *pos < len ? len - *pos : 0, fmt, ap);
        va_end(ap);
        if (n > 0)
                *pos += (size_t)n;
}

static void format_bitmap(const vqset_t *s, char *buf, size_t len, size_t *pos)
{
        unsigned i = VQSET_WORDS;

        while (i > 1 && s->w[i - 1] == 0)
                i--;
        append(buf, len, pos, "0x%" PRIx64, s->w[i - 1]);
        while (i-- > 1)
                append(buf, len, pos, "%016" PRIx64, s->w[i - 1]);
}

int vqset_format(const vqset_t *s, enum vqset_format fmt, char *buf, size_t len)
{
        const char *sep = "";
        size_t pos = 0;

        if (buf && len > 0)
                buf[0] = '\0';
        else
                len = 0;

        if (fmt == VQSET_FORMAT_BITMAP) {
                format_bitmap(s, buf, len, &pos);
                return (int)pos;
        }

        if (vqset_empty(s)) {
                append(buf, len, &pos, "none");
                return (int)pos;
        }

        VQSET_FOREACH (vq, s) {
                if (fmt == VQSET_FORMAT_VQ)
                        append(buf, len, &pos, "%svq%u", sep, vq);
                else
                        append(buf, len, &pos, "%s%u", sep, vq_to_bits(vq));
                sep = ",";
        }
        return (int)pos;
}

/* ---- the kernel's computation ---- */

/*
 * The largest vq a guest may use given the set every member offers (full) and
 * the set some member offers (partial): a vq only some members offer cannot be
 * hidden from a guest whose maximum lies above it, so the maximum must stay
 * below the lowest such vq. Rounded down to a member of full, so the result is
 * the maximum of the set it yields; 0 when nothing is left.
 */
static unsigned max_common_vq(const vqset_t *full, const vqset_t *partial, unsigned arch_cap)
{
        vqset_t partial_only = vqset_andnot(partial, full);
        unsigned first = vqset_lowest(&partial_only);
        unsigned cap = first ? first - 1 : vqset_highest(full);
        vqset_t below;

        cap = MIN(cap, arch_cap);
        below = vqset_upto(full, cap);
        return vqset_highest(&below);
}

vqset_t vqset_virtualisable(const vqset_t *cpu_maps, size_t n_cpus, unsigned *max_vq)
{
        vqset_t full = {0}, partial = {0};
        unsigned max = 0;

        /* Like vec_init_vq_map for the boot CPU and vec_update_vq_map for each secondary. */
        for (size_t i = 0; i < n_cpus; i++) {
                /* One CPU without SVE turns SVE off for the whole system. */
                if (vqset_empty(&cpu_maps[i])) {
                        full = partial = (vqset_t){0};
                        break;
                }
                if (i == 0) {
                        full = partial = cpu_maps[0];
                } else {
                        full = vqset_and(&full, &cpu_maps[i]);
                        partial = vqset_or(&partial, &cpu_maps[i]);
                }
        }

        /* KVM further caps sve_max_virtualisable_vl at VL_ARCH_MAX (kvm_arm_init_sve). */
        max = max_common_vq(&full, &partial, VQSET_VQ_ARCH_MAX);
        if (max_vq)
                *max_vq = max;
        return vqset_upto(&full, max);
}

/* ---- presenting a guest set ---- */

bool vqset_can_present(const vqset_t *host, const vqset_t *guest, struct vqset_reason *why)
{
        unsigned max = vqset_highest(guest);
        vqset_t shown = vqset_upto(host, max), missing = vqset_andnot(guest, &shown),
                extra = vqset_andnot(&shown, guest);
        unsigned first_missing = vqset_lowest(&missing), first_extra = vqset_lowest(&extra);
        struct vqset_reason r = {.kind = VQSET_OK, .guest_max_vq = max};

        /* The lowest offending vq is the one a person should look at first. */
        if (first_missing && (!first_extra || first_missing < first_extra)) {
                r.kind = VQSET_MISSING;
                r.vq = first_missing;
        } else if (first_extra) {
                r.kind = VQSET_EXTRA;
                r.vq = first_extra;
        }

        if (why)
                *why = r;
        return r.kind == VQSET_OK;
}

int vqset_reason_format(const struct vqset_reason *why, char *buf, size_t len)
{
        size_t pos = 0;

        if (buf && len > 0)
                buf[0] = '\0';
        else
                len = 0;

        switch (why->kind) {
        case VQSET_OK:
                append(buf, len, &pos, "the host can present the guest's vector lengths exactly");
                break;
        case VQSET_MISSING:
                append(buf, len, &pos, "vq %u (%u-bit) is missing on this host", why->vq,
                       vq_to_bits(why->vq));
                break;
        case VQSET_EXTRA:
                append(buf, len, &pos, "vq %u (%u-bit) is offered by this host below the guest's maximum",
                       why->vq, vq_to_bits(why->vq));
                if (why->guest_max_vq)
                        append(buf, len, &pos, " of %u bits", vq_to_bits(why->guest_max_vq));
                append(buf, len, &pos, " and cannot be hidden");
                break;
        default:
                append(buf, len, &pos, "unknown vector-length mismatch %d at vq %u", (int)why->kind,
                       why->vq);
                break;
        }
        return (int)pos;
}

/* ---- the cluster ---- */

void vqset_cluster_done(struct vqset_cluster *c)
{
        if (!c)
                return;
        free(c->hosts);
        free(c->limiting);
        *c = (struct vqset_cluster){0};
}

int vqset_negotiate(const vqset_t *hosts, size_t n, struct vqset_cluster *out, struct svemig_error *err)
{
        _cleanup_free_ struct vqset_host_verdict *verdicts = NULL;
        _cleanup_free_ bool *limiting = NULL;
        vqset_t full, partial, partial_only;
        size_t n_limiting = 0;
        unsigned first, max;

        if (n == 0)
                return svemig_error_set(err, EINVAL,
                                        "cannot negotiate vector lengths for no hosts: give at least one");

        verdicts = calloc(n, sizeof(*verdicts));
        limiting = calloc(n, sizeof(*limiting));
        if (!verdicts || !limiting)
                return svemig_error_set(err, ENOMEM,
                                        "out of memory negotiating vector lengths for %zu hosts", n);

        full = partial = hosts[0];
        for (size_t i = 1; i < n; i++) {
                full = vqset_and(&full, &hosts[i]);
                partial = vqset_or(&partial, &hosts[i]);
        }

        /*
         * The hosts' sets are already their hypervisors' VLS, capped by KVM,
         * so no architectural cap applies on top.
         */
        max = max_common_vq(&full, &partial, VQSET_VQ_MAX);

        /* The hosts lacking the lowest partial-only vq are the ones that set the cap. */
        partial_only = vqset_andnot(&partial, &full);
        first = vqset_lowest(&partial_only);
        for (size_t i = 0; first && i < n; i++)
                if (!vqset_contains(&hosts[i], first)) {
                        limiting[i] = true;
                        n_limiting++;
                }

        *out = (struct vqset_cluster){
                .guest = vqset_upto(&full, max),
                .max_vq = max,
                .n_hosts = n,
                .n_limiting = n_limiting,
        };
        for (size_t i = 0; i < n; i++)
                verdicts[i].can_present = vqset_can_present(&hosts[i], &out->guest, &verdicts[i].reason);

        out->hosts = verdicts;
        out->limiting = limiting;
        verdicts = NULL;
        limiting = NULL;
        return 0;
}
