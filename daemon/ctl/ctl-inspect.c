/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl inspect FILE [--json] [--summary]: any svemig stream for a
 * person (or a program), like CRIU's crit: the header, every vcpu's
 * registers by name (Z/P/FFR in hex with the bytes beyond the vcpu's VL
 * marked), each device frame by name (ctl-inspect-dev.c), memory statistics and the verification of the
 * checksums and the trailer's digest. A damaged stream is shown as far as it reads, then the fault; the exit
 * code is then 5 as for verify.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "ctl-inspect-dev.h"
#include "ctl-json.h"
#include "ctl-stream.h"
#include "ctl.h"
#include "macro.h"
#include "utf8.h"
#include "svemig/hv.h"
#include "svemig/kvmreg.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_object *, json_object_put);

#define HEX_MAX (2 * KVMREG_MAX_BYTES + KVMREG_MAX_BYTES / 2 + 8)

struct inspect {
        struct json_object *chain; /* the parents verified, nearest first */
        bool json;
        bool summary; /* no register values */
        struct json_object *root, *vcpus, *devices;
        uint32_t page_size;
};

static const char *const feature_names[] = {
        [HV_FEAT_POWER_OFF] = "power-off",
        [HV_FEAT_EL1_32BIT] = "el1-32bit",
        [HV_FEAT_PSCI_0_2] = "psci-0.2",
        [HV_FEAT_PMU_V3] = "pmu-v3",
        [HV_FEAT_SVE] = "sve",
};

static void features_text(uint32_t f, char *buf, size_t len)
{
        size_t off = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < 32 && off < len; i++) {
                if (!(f & (1u << i)))
                        continue;
                if (i < ELEMENTSOF(feature_names) && feature_names[i])
                        off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "," : "",
                                                feature_names[i]);
                else
                        off += (size_t)snprintf(buf + off, len - off, "%sbit%u", off ? "," : "", i);
        }
        if (off == 0)
                snprintf(buf, len, "none");
}

static const char *mp_state_name(uint32_t s)
{
        switch (s) {
        case HV_MP_STATE_RUNNABLE:
                return "runnable";
        case 1:
                return "uninitialized";
        case 2:
                return "init-received";
        case 3:
                return "stopped";
        case 5:
                return "halted";
        case 7:
                return "suspended";
        default:
                return "unknown";
        }
}

static void time_text(uint64_t ns, char *buf, size_t len)
{
        time_t t = (time_t)(ns / 1000000000ull);
        struct tm tm;

        if (!gmtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, len, "%" PRIu64 " ns", ns);
}

/* Bytes in memory order; with group > 0, a space every 'group' bytes. */
static void hex_bytes(const uint8_t *p, size_t n, unsigned group, char *buf, size_t len)
{
        size_t off = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < n && off + 4 < len; i++) {
                if (group && i && i % group == 0)
                        buf[off++] = ' ';
                off += (size_t)snprintf(buf + off, len - off, "%02x", p[i]);
        }
}

/* A little-endian number of n bytes as 0x..., most significant digit first. */
static void hex_number(const uint8_t *p, size_t n, char *buf, size_t len)
{
        size_t off = (size_t)snprintf(buf, len, "0x");

        for (size_t i = n; i-- > 0 && off + 3 < len;)
                off += (size_t)snprintf(buf + off, len - off, "%02x", p[i]);
}

static bool all_zero(const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

struct reg_text {
        char name[64];
        char value[HEX_MAX];  /* within the VL for SVE registers */
        char beyond[HEX_MAX]; /* SVE registers: the bytes past the VL, "" when none */
        size_t beyond_bytes;
        bool beyond_zero;
};

/* How a register reads: Z, P and FFR split at the vcpu's VL (vq * 16 and vq * 2 bytes). */
static void reg_format(const struct vcpu_state *st, const struct vcpu_reg *reg, struct reg_text *t)
{
        unsigned vq = vqset_highest(&st->vls);
        struct kvmreg d;
        size_t in_vl = reg->size;
        unsigned group = 0;

        memset(t, 0, sizeof(*t));
        kvmreg_name(reg->id, t->name, sizeof(t->name));
        if (kvmreg_decode(reg->id, &d, NULL) < 0)
                d.cls = KVMREG_CLASS_UNKNOWN;

        switch (d.cls) {
        case KVMREG_CLASS_SVE_Z:
                group = 16; /* one 128-bit granule per group */
                in_vl = MIN((size_t)vq * 16, reg->size);
                break;
        case KVMREG_CLASS_SVE_P:
        case KVMREG_CLASS_SVE_FFR:
                group = 2;
                in_vl = MIN((size_t)vq * 2, reg->size);
                break;
        case KVMREG_CLASS_SVE_VLS: {
                vqset_t s;
                memcpy(s.w, reg->value, MIN(sizeof(s.w), (size_t)reg->size));
                vqset_format(&s, VQSET_FORMAT_BITS, t->value, sizeof(t->value));
                return;
        }
        default:
                if (reg->size <= 16)
                        hex_number(reg->value, reg->size, t->value, sizeof(t->value));
                else
                        hex_bytes(reg->value, reg->size, 0, t->value, sizeof(t->value));
                return;
        }
        hex_bytes(reg->value, in_vl, group, t->value, sizeof(t->value));
        t->beyond_bytes = reg->size - in_vl;
        t->beyond_zero = all_zero(reg->value + in_vl, t->beyond_bytes);
        if (t->beyond_bytes)
                hex_bytes(reg->value + in_vl, t->beyond_bytes, group, t->beyond, sizeof(t->beyond));
}

/* ---- Text ---- */

/* What the stream's writer said, for a terminal: no escape sequence of its reaches it. */
#define SAFE_SIZE (4 * SVEMIG_STREAM_STRING_MAX)
static const char *safe(const char *s, char buf[SAFE_SIZE])
{
        return utf8_escape(s, strlen(s), buf, SAFE_SIZE);
}

static void text_header(const struct svemig_stream_info *info)
{
        char a[VQSET_VQ_MAX * 6 + 8], b[VQSET_VQ_MAX * 6 + 8], when[64], feats[128];
        char s[6][SAFE_SIZE];

        time_text(info->created_ns, when, sizeof(when));
        features_text(info->vcpu_features, feats, sizeof(feats));
        printf("svemig stream v%u.%u\n", info->major, info->minor);
        printf("  producer      %s %s on %s\n", safe(info->producer_name, s[0]),
               safe(info->producer_version, s[1]), safe(info->host_name, s[2]));
        printf("  created       %s (%" PRIu64 " ns)\n", when, info->created_ns);
        printf("  purpose       %s\n", info->purpose[0] ? safe(info->purpose, s[3]) : "-");
        printf("  source        kernel %s, hypervisor %s\n",
               info->source_kernel[0] ? safe(info->source_kernel, s[4]) : "-",
               info->hypervisor[0] ? safe(info->hypervisor, s[5]) : "-");
        vqset_format(&info->host_vls, VQSET_FORMAT_BITS, a, sizeof(a));
        vqset_format(&info->guest_vls, VQSET_FORMAT_BITS, b, sizeof(b));
        printf("  host VLs      %s\n", a);
        printf("  guest VLs     %s (max %u bits)\n", b, vq_to_bits(info->guest_max_vq));
        printf("  vcpus         %u, features 0x%x (%s)\n", info->vcpu_count, info->vcpu_features, feats);
        printf("  memory        %zu slot%s, page %u bytes, chunks of %u pages\n", info->n_slots,
               info->n_slots == 1 ? "" : "s", info->page_size, info->chunk_pages);
        for (size_t i = 0; i < info->n_slots; i++)
                printf("    slot %-4u  gpa 0x%010" PRIx64 "  size 0x%" PRIx64 " (%" PRIu64 " MiB)\n",
                       info->slots[i].id, info->slots[i].gpa, info->slots[i].size,
                       info->slots[i].size >> 20);
        printf("  compression   %s\n", svemig_compression_name(info->compression));
        printf("  digest        %s\n", svemig_digest_name(info->digest));
        if (info->parent_location[0]) {
                char d[33];

                for (unsigned i = 0; i < info->parent_digest_bytes; i++)
                        sprintf(d + 2 * i, "%02x", info->parent_digest[i]);
                d[2 * info->parent_digest_bytes] = 0;
                printf("  parent        %s (digest %s): incremental, the pages dirtied since it\n",
                       safe(info->parent_location, s[0]), d);
        }
        for (size_t i = 0; i < info->n_id_regs; i++) {
                struct reg_text t;
                struct vcpu_state none = {0};

                reg_format(&none, &info->id_regs[i], &t);
                printf("  id register   %-16s %s\n", t.name, t.value);
        }
}

static void text_vcpu(const struct inspect *in, const struct vcpu_state *st)
{
        char feats[128], vls[VQSET_VQ_MAX * 6 + 8];
        unsigned vq = vqset_highest(&st->vls);

        features_text(st->features, feats, sizeof(feats));
        vqset_format(&st->vls, VQSET_FORMAT_BITS, vls, sizeof(vls));
        printf("\nvcpu %u: features 0x%x (%s), VL %u bits (VLs %s), %s, %zu registers\n", st->index,
               st->features, feats, vq_to_bits(vq), vls, mp_state_name(st->mp_state), st->n_regs);
        if (in->summary)
                return;
        for (size_t i = 0; i < st->n_regs; i++) {
                struct reg_text t;

                reg_format(st, &st->regs[i], &t);
                printf("  %-16s %s", t.name, t.value);
                if (t.beyond_bytes && t.beyond_zero)
                        printf("  | beyond VL: %zu zero bytes", t.beyond_bytes);
                else if (t.beyond_bytes)
                        printf("  | beyond VL (%zu bytes, NOT zero): %s", t.beyond_bytes, t.beyond);
                putchar('\n');
        }
}

static void text_memory(const struct inspect *in, const struct svemig_stream_stats *s)
{
        uint64_t data_pages = s->mem_pages - s->zero_pages, raw = s->mem_pages * in->page_size;

        printf("\nmemory: %" PRIu64 " chunks (%" PRIu64 " LZ4, %" PRIu64 " stored raw)\n", s->mem_chunks,
               s->lz4_chunks, s->mem_chunks - s->lz4_chunks);
        printf("  pages         %" PRIu64 " carried: %" PRIu64 " zero (a bit each), %" PRIu64 " with data\n",
               s->mem_pages, s->zero_pages, data_pages);
        printf("  bytes         %" PRIu64 " of memory in %" PRIu64 " stream bytes", raw, s->mem_stored);
        if (raw)
                printf(" (ratio %.3f)", (double)s->mem_stored / (double)raw);
        putchar('\n');
}

/* ---- JSON ---- */

static struct json_object *json_hex64(uint64_t v)
{
        char buf[24];

        snprintf(buf, sizeof(buf), "0x%016" PRIx64, v);
        return json_object_new_string(buf);
}

static struct json_object *json_reg(const struct vcpu_state *st, const struct vcpu_reg *reg)
{
        struct json_object *o = json_object_new_object();
        struct reg_text t;

        reg_format(st, reg, &t);
        json_object_object_add(o, "name", json_object_new_string(t.name));
        json_object_object_add(o, "id", json_hex64(reg->id));
        json_object_object_add(o, "size", json_object_new_int((int32_t)reg->size));
        json_object_object_add(o, "value", json_object_new_string(t.value));
        if (t.beyond_bytes) {
                json_object_object_add(o, "beyond_vl_bytes", json_object_new_int64((int64_t)t.beyond_bytes));
                json_object_object_add(o, "beyond_vl_zero", json_object_new_boolean(t.beyond_zero));
                if (!t.beyond_zero)
                        json_object_object_add(o, "beyond_vl", json_object_new_string(t.beyond));
        }
        return o;
}

static void json_header(struct inspect *in, const struct svemig_stream_info *info)
{
        struct json_object *h = json_object_new_object(), *p = json_object_new_object();
        struct json_object *slots = json_object_new_array(), *ids = json_object_new_array();
        char version[16], when[64];

        snprintf(version, sizeof(version), "%u.%u", info->major, info->minor);
        time_text(info->created_ns, when, sizeof(when));
        json_object_object_add(in->root, "version", json_object_new_string(version));
        json_object_object_add(p, "name", json_object_new_string(info->producer_name));
        json_object_object_add(p, "version", json_object_new_string(info->producer_version));
        json_object_object_add(p, "host_name", json_object_new_string(info->host_name));
        json_object_object_add(h, "producer", p);
        json_object_object_add(h, "created_ns", json_object_new_int64((int64_t)info->created_ns));
        json_object_object_add(h, "created", json_object_new_string(when));
        json_object_object_add(h, "purpose", json_object_new_string(info->purpose));
        json_object_object_add(h, "source_kernel", json_object_new_string(info->source_kernel));
        json_object_object_add(h, "hypervisor", json_object_new_string(info->hypervisor));
        json_object_object_add(h, "host_vls_bits", ctl_json_vq_bits(&info->host_vls));
        json_object_object_add(h, "guest_vls_bits", ctl_json_vq_bits(&info->guest_vls));
        json_object_object_add(h, "guest_max_bits",
                               json_object_new_int((int32_t)vq_to_bits(info->guest_max_vq)));
        json_object_object_add(h, "vcpu_features", json_object_new_int64(info->vcpu_features));
        json_object_object_add(h, "vcpu_count", json_object_new_int64(info->vcpu_count));
        json_object_object_add(h, "page_size", json_object_new_int64(info->page_size));
        json_object_object_add(h, "chunk_pages", json_object_new_int64(info->chunk_pages));
        json_object_object_add(h, "compression",
                               json_object_new_string(svemig_compression_name(info->compression)));
        json_object_object_add(h, "digest", json_object_new_string(svemig_digest_name(info->digest)));
        json_object_object_add(h, "parent",
                               info->parent_location[0] ? json_object_new_string(info->parent_location)
                                                        : NULL);
        for (size_t i = 0; i < info->n_slots; i++) {
                struct json_object *s = json_object_new_object();
                json_object_object_add(s, "id", json_object_new_int64(info->slots[i].id));
                json_object_object_add(s, "gpa", json_hex64(info->slots[i].gpa));
                json_object_object_add(s, "size", json_object_new_int64((int64_t)info->slots[i].size));
                json_object_array_add(slots, s);
        }
        json_object_object_add(h, "slots", slots);
        for (size_t i = 0; i < info->n_id_regs; i++) {
                struct vcpu_state none = {0};
                json_object_array_add(ids, json_reg(&none, &info->id_regs[i]));
        }
        json_object_object_add(h, "id_regs", ids);
        json_object_object_add(in->root, "header", h);
        in->vcpus = json_object_new_array();
        json_object_object_add(in->root, "vcpus", in->vcpus);
}

static void json_vcpu(struct inspect *in, const struct vcpu_state *st)
{
        struct json_object *v = json_object_new_object(), *regs = json_object_new_array();

        json_object_object_add(v, "index", json_object_new_int64(st->index));
        json_object_object_add(v, "features", json_object_new_int64(st->features));
        json_object_object_add(v, "vls_bits", ctl_json_vq_bits(&st->vls));
        json_object_object_add(v, "vl_bits",
                               json_object_new_int((int32_t)vq_to_bits(vqset_highest(&st->vls))));
        json_object_object_add(v, "mp_state", json_object_new_string(mp_state_name(st->mp_state)));
        json_object_object_add(v, "n_regs", json_object_new_int64((int64_t)st->n_regs));
        if (!in->summary) {
                for (size_t i = 0; i < st->n_regs; i++)
                        json_object_array_add(regs, json_reg(st, &st->regs[i]));
                json_object_object_add(v, "registers", regs);
        } else {
                json_object_put(regs);
        }
        json_object_array_add(in->vcpus, v);
}

static void json_memory(struct inspect *in, const struct svemig_stream_stats *s)
{
        struct json_object *m = json_object_new_object();
        uint64_t raw = s->mem_pages * in->page_size;

        json_object_object_add(m, "chunks", json_object_new_int64((int64_t)s->mem_chunks));
        json_object_object_add(m, "lz4_chunks", json_object_new_int64((int64_t)s->lz4_chunks));
        json_object_object_add(m, "pages", json_object_new_int64((int64_t)s->mem_pages));
        json_object_object_add(m, "zero_pages", json_object_new_int64((int64_t)s->zero_pages));
        json_object_object_add(m, "raw_bytes", json_object_new_int64((int64_t)raw));
        json_object_object_add(m, "stored_bytes", json_object_new_int64((int64_t)s->mem_stored));
        json_object_object_add(m, "ratio",
                               raw ? json_object_new_double((double)s->mem_stored / (double)raw) : NULL);
        json_object_object_add(in->root, "memory", m);
}

/* ---- Visitors ---- */

/* A parent of the chain, verified whole (ctl_stream_walk_chain). */
static void on_link(void *ctx, const struct ctl_chain_link *l)
{
        struct inspect *in = ctx;
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "location", json_object_new_string(l->location));
        json_object_object_add(o, "digest", json_object_new_string(l->digest));
        json_object_object_add(o, "bytes", json_object_new_int64((int64_t)l->bytes));
        json_object_object_add(o, "pages", json_object_new_int64((int64_t)l->mem_pages));
        json_object_array_add(in->chain, o);
}

static void on_header(void *ctx, const struct svemig_stream_info *info)
{
        struct inspect *in = ctx;

        in->page_size = info->page_size;
        if (in->json)
                json_header(in, info);
        else
                text_header(info);
}

static void on_vcpu(void *ctx, const struct vcpu_state *st)
{
        struct inspect *in = ctx;

        if (in->json)
                json_vcpu(in, st);
        else
                text_vcpu(in, st);
}

static void on_device(void *ctx, int type, const void *st)
{
        struct inspect *in = ctx;

        if (!in->json) {
                inspect_device_text(type, st, in->summary);
                return;
        }
        if (!in->devices) {
                in->devices = json_object_new_array();
                json_object_object_add(in->root, "devices", in->devices);
        }
        json_object_array_add(in->devices, inspect_device_json(type, st, in->summary));
}

int ctl_inspect(const struct ctl_options *opts, int argc, char **argv)
{
        static const struct option longopts[] = {
                {"json", no_argument, NULL, 'j'},
                {"summary", no_argument, NULL, 's'},
                {0},
        };
        struct inspect in = {.json = opts->json};
        struct ctl_stream_visit v = {.ctx = &in, .header = on_header, .vcpu = on_vcpu, .device = on_device};
        _cleanup_(json_object_putp) struct json_object *root = NULL;
        struct svemig_stream_stats stats;
        struct svemig_error err = {0};
        char digest[33] = "";
        struct ctl_parent parent;
        uint64_t bytes;
        int c, k, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "js", longopts, NULL)) != -1) {
                switch (c) {
                case 'j':
                        in.json = true;
                        break;
                case 's':
                        in.summary = true;
                        break;
                default:
                        return ctl_usage_error("inspect: unknown option");
                }
        }
        if (argc - optind != 1)
                return ctl_usage_error("inspect: give exactly one FILE");
        if (in.json)
                in.root = root = json_object_new_object();
        in.chain = json_object_new_array();

        k = ctl_stream_walk(argv[optind], &v, &stats, &bytes, &parent, &err);
        if (k == 0 && parent.location[0])
                k = ctl_stream_walk_chain(&parent, on_link, &in, &err);
        for (unsigned i = 0; i < stats.digest_bytes; i++)
                sprintf(digest + 2 * i, "%02x", stats.digest[i]);

        if (in.json) {
                struct json_object *t = json_object_new_object();

                json_object_object_add(root, "file", json_object_new_string(argv[optind]));
                json_object_object_add(root, "bytes", json_object_new_int64((int64_t)bytes));
                json_memory(&in, &stats);
                json_object_object_add(t, "frames", json_object_new_int64((int64_t)stats.frames));
                json_object_object_add(t, "skipped_frames", json_object_new_int64((int64_t)stats.skipped));
                json_object_object_add(t, "digest", k == 0 ? json_object_new_string(digest) : NULL);
                json_object_object_add(root, "trailer", t);
                json_object_object_add(root, "chain", in.chain);
                json_object_object_add(root, "verified", json_object_new_boolean(k == 0));
                json_object_object_add(root, "error",
                                       k < 0 ? json_object_new_string(svemig_error_str(&err, k)) : NULL);
                r = ctl_print_json(json_object_get(root)); /* it frees its own reference */
                return k < 0 ? ctl_stream_exit(k) : r;
        }
        if (in.page_size)
                text_memory(&in, &stats);
        for (size_t i = 0; i < json_object_array_length(in.chain); i++) {
                struct json_object *l = json_object_array_get_idx(in.chain, i), *loc, *dg, *b;

                json_object_object_get_ex(l, "location", &loc);
                json_object_object_get_ex(l, "digest", &dg);
                json_object_object_get_ex(l, "bytes", &b);
                printf("%s %s: %" PRId64 " bytes, digest %s: verified\n",
                       i ? "        " : "\nchain: ", json_object_get_string(loc), json_object_get_int64(b),
                       json_object_get_string(dg));
        }
        json_object_put(in.chain);
        if (k < 0) {
                printf("\nverification FAILED after %" PRIu64 " bytes\n", bytes);
                fprintf(stderr, "svemigctl: %s\n", svemig_error_str(&err, k));
                return ctl_stream_exit(k);
        }
        printf("\ntrailer: %" PRIu64 " frames", stats.frames);
        if (stats.skipped)
                printf(" (%" PRIu64 " optional frames of a newer version skipped)", stats.skipped);
        printf(", %" PRIu64 " bytes, digest %s: verified\n", bytes, digest);
        return CTL_EXIT_OK;
}
