/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The source's decisions, kept apart from the protocol so that they can be
 * read and tested on their own (docs/migration.md "Convergence"):
 *   - after each pre-copy pass: go on, throttle the guest, stop and copy,
 *     or give up;
 *   - before each piece of memory: whether LZ4 pays on this link now.
 */
#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "macro.h"
#include "migrate/policy.h"

#define THROTTLE_INITIAL_DEFAULT   20u
#define THROTTLE_INCREMENT_DEFAULT 10u
#define THROTTLE_MAX_DEFAULT       99u
#define SAMPLE_PAGES               64u
#define COMPRESSION_MIN_GAIN       0.9 /* LZ4 must take 10% off the sample at least */
#define COMPRESSION_MARGIN         0.9 /* and be expected 10% faster than raw */
/*
 * How old the slower way's figure gets before it is tried again: by time,
 * not by pieces, so that a migration over in a second (1 GiB on loopback,
 * where LZ4 never pays) tries it once, and one on a slow link about as
 * often as every 8 pieces there.
 */
#define COMPRESSION_RETRY_NS (2000000000ull)

void converge_opts_from(const struct migrate_opts *opts, struct converge_opts *c)
{
        const struct migrate_opts none = {0};

        if (!opts)
                opts = &none;
        c->downtime_ns =
                (uint64_t)(opts->downtime_ms ? opts->downtime_ms : MIGRATE_DOWNTIME_MS_DEFAULT) * 1000000ull;
        c->downtime_limit_ns = (uint64_t)(opts->downtime_limit_ms ? opts->downtime_limit_ms
                                                                  : MIGRATE_DOWNTIME_LIMIT_MS_DEF) *
                               1000000ull;
        c->downtime_limit_ns = MAX(c->downtime_limit_ns, c->downtime_ns);
        c->max_rounds = opts->max_rounds ? opts->max_rounds : MIGRATE_MAX_ROUNDS_DEFAULT;
        c->auto_converge = !opts->no_auto_converge;
        c->throttle_initial =
                MIN(opts->throttle_initial ? opts->throttle_initial : THROTTLE_INITIAL_DEFAULT, 99u);
        c->throttle_increment =
                opts->throttle_increment ? opts->throttle_increment : THROTTLE_INCREMENT_DEFAULT;
        c->throttle_max = MIN(opts->throttle_max ? opts->throttle_max : THROTTLE_MAX_DEFAULT, 99u);
}

static double mib(uint64_t bytes)
{
        return (double)bytes / (1024.0 * 1024.0);
}

void converge_decide(const struct converge_opts *c, const struct converge_round *r,
                     struct converge_verdict *out)
{
        uint64_t bpp = r->bytes_per_page ? r->bytes_per_page : HV_PAGE_SIZE;
        uint64_t link = r->link_bps ? r->link_bps : 1;
        uint64_t dirty_bytes = r->dirty_pages * bpp;
        double expected = ((double)dirty_bytes + (double)r->fixed_bytes) * 1e9 / (double)link;

        memset(out, 0, sizeof(*out));
        out->expected_downtime_ns = expected > 1e18 ? UINT64_MAX / 2 : (uint64_t)expected;
        out->dirty_rate = r->round_ns ? (uint64_t)((double)dirty_bytes * 1e9 / (double)r->round_ns) : 0;
        out->throttle_pct = r->throttle_pct;

        /*
         * Within the target, or nothing dirty: another pass would send
         * nothing, and the pause cannot get shorter than the vcpus' state.
         */
        if (out->expected_downtime_ns <= c->downtime_ns || r->dirty_pages == 0) {
                out->action = CONVERGE_STOP_COPY;
                return;
        }
        if (r->round >= c->max_rounds) {
                if (out->expected_downtime_ns <= c->downtime_limit_ns) {
                        out->action = CONVERGE_STOP_COPY;
                        return;
                }
                out->action = CONVERGE_GIVE_UP;
                snprintf(
                        out->reason, sizeof(out->reason),
                        "did not converge after %u pre-copy passes: %llu pages (%.1f MiB) are still dirty, "
                        "the guest dirties %.1f MiB/s and the link carries %.1f MiB/s, so the final pause "
                        "would last about %llu ms, over the limit of %llu ms%s; raise the downtime limit or "
                        "the bandwidth%s",
                        r->round, (unsigned long long)r->dirty_pages, mib(dirty_bytes), mib(out->dirty_rate),
                        mib(r->link_bps), (unsigned long long)(out->expected_downtime_ns / 1000000ull),
                        (unsigned long long)(c->downtime_limit_ns / 1000000ull),
                        r->throttle_pct ? " even with the guest throttled" : "",
                        c->auto_converge ? "" : ", or allow auto-converge");
                return;
        }
        /*
         * QEMU's auto-converge trigger: the guest dirtied more than half of
         * what the pass could send, so the next pass will not be much
         * smaller. Throttle one step more.
         */
        if (c->auto_converge && dirty_bytes * 2 > r->sent_bytes && r->throttle_pct < c->throttle_max) {
                out->action = CONVERGE_THROTTLE;
                out->throttle_pct = r->throttle_pct == 0
                                            ? c->throttle_initial
                                            : MIN(r->throttle_pct + c->throttle_increment, c->throttle_max);
                return;
        }
        out->action = CONVERGE_CONTINUE;
}

static bool page_is_zero(const uint8_t *p)
{
        static const uint8_t zero[HV_PAGE_SIZE];

        return memcmp(p, zero, HV_PAGE_SIZE) == 0;
}

/* One pass over the sample: non-zero pages spread over the whole of RAM (zero pages travel as a bit either
 * way). */
static uint64_t sample_pass(const uint8_t *mem, uint64_t pages, uint64_t *in, uint64_t *stored)
{
        char dst[LZ4_COMPRESSBOUND(HV_PAGE_SIZE)];
        uint64_t start = now_ns(CLOCK_MONOTONIC);

        *in = *stored = 0;
        for (uint64_t i = 0, step = MAX(pages / (SAMPLE_PAGES * 4), 1ull);
             i < pages && *in < SAMPLE_PAGES * HV_PAGE_SIZE; i += step) {
                const uint8_t *page = mem + i * HV_PAGE_SIZE;
                int z;

                if (page_is_zero(page))
                        continue;
                z = LZ4_compress_default((const char *)page, dst, HV_PAGE_SIZE, (int)sizeof(dst));
                *in += HV_PAGE_SIZE;
                *stored += z > 0 && z < (int)HV_PAGE_SIZE ? (uint64_t)z : HV_PAGE_SIZE;
        }
        return MAX(now_ns(CLOCK_MONOTONIC) - start, 1ull);
}

void compression_sample(const uint8_t *mem, uint64_t size, unsigned n_threads, struct compression_input *out)
{
        uint64_t pages = size / HV_PAGE_SIZE, in, stored, spent;
        long cpus;

        if (n_threads == 0) {
                cpus = sysconf(_SC_NPROCESSORS_ONLN);
                n_threads = cpus > 0 ? (unsigned)cpus : 1;
        }
        /* Timed twice, the faster kept: the first pass also pays for cold caches and TLB. */
        spent = sample_pass(mem, pages, &in, &stored);
        spent = MIN(spent, sample_pass(mem, pages, &in, &stored));
        out->ratio = in ? (double)stored / (double)in : 1.0;
        out->compress_bps = in ? (uint64_t)((double)in * 1e9 / (double)spent * n_threads) : 0;
}

bool compression_may_pay(const struct compression_input *in)
{
        return in->ratio <= COMPRESSION_MIN_GAIN;
}

/* The model: seconds per byte of guest memory each way, compressing pipelined beside the sending. */
static enum migrate_compression compression_model(const struct compression_input *in)
{
        double t_raw = 1.0 / (double)in->link_bps,
               t_lz4 = MAX(in->ratio / (double)in->link_bps, 1.0 / (double)in->compress_bps);

        return t_lz4 < COMPRESSION_MARGIN * t_raw ? MIGRATE_COMPRESSION_LZ4 : MIGRATE_COMPRESSION_NONE;
}

enum migrate_compression compression_decide(const struct compression_input *in)
{
        enum migrate_compression best;
        uint64_t other_at;

        if (!compression_may_pay(in) || in->compress_bps == 0)
                return MIGRATE_COMPRESSION_NONE;
        if (!in->raw_mem_bps && !in->lz4_mem_bps)
                /* Nothing measured: raw (no CPU) on an unknown link, else what the model says. */
                return in->link_bps ? compression_model(in) : MIGRATE_COMPRESSION_NONE;
        /*
         * The sample predicts the workers alone, not both ends' CPU on a host
         * shared with other work (on loopback, the "link" is the same CPUs
         * that compress). So each way is tried on a piece, and the one that
         * moved guest memory faster end to end goes on; once the other's
         * figure is COMPRESSION_RETRY_NS old it is tried again, as the load
         * may have changed.
         */
        if (!in->raw_mem_bps || !in->lz4_mem_bps) {
                enum migrate_compression measured =
                        in->raw_mem_bps ? MIGRATE_COMPRESSION_NONE : MIGRATE_COMPRESSION_LZ4;

                /* The other way is tried next; not while the guest is paused. */
                if (in->no_trial)
                        return measured;
                return measured == MIGRATE_COMPRESSION_NONE ? MIGRATE_COMPRESSION_LZ4
                                                            : MIGRATE_COMPRESSION_NONE;
        }
        /* LZ4 must win by the model's margin too: it costs both ends CPU, and one piece's figure is noisy.
         */
        best = COMPRESSION_MARGIN * (double)in->lz4_mem_bps > (double)in->raw_mem_bps
                       ? MIGRATE_COMPRESSION_LZ4
                       : MIGRATE_COMPRESSION_NONE;
        other_at = best == MIGRATE_COMPRESSION_LZ4 ? in->raw_at_ns : in->lz4_at_ns;
        if (!in->no_trial && in->now_ns - other_at >= COMPRESSION_RETRY_NS)
                return best == MIGRATE_COMPRESSION_LZ4 ? MIGRATE_COMPRESSION_NONE : MIGRATE_COMPRESSION_LZ4;
        return best;
}

static const char *const compression_names[] = {
        [MIGRATE_COMPRESSION_AUTO] = "auto",
        [MIGRATE_COMPRESSION_NONE] = "none",
        [MIGRATE_COMPRESSION_LZ4] = "lz4",
};

const char *migrate_compression_name(enum migrate_compression c)
{
        return (size_t)c < ELEMENTSOF(compression_names) ? compression_names[c] : "?";
}

int migrate_compression_parse(const char *name, enum migrate_compression *out)
{
        for (size_t i = 0; i < ELEMENTSOF(compression_names); i++)
                if (strcmp(name, compression_names[i]) == 0) {
                        if (out)
                                *out = (enum migrate_compression)i;
                        return 0;
                }
        return -EINVAL;
}
