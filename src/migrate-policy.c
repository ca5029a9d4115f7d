/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The source's decisions, kept apart from the protocol so that they can be
 * read and tested on their own (docs/migration.md "Convergence"):
 *   - after each pre-copy pass: go on, throttle the guest, stop and copy,
 *     or give up;
 *   - once per migration: whether LZ4 pays on this link.
 */
#include <lz4.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "migrate-internal.h"

#define THROTTLE_INITIAL_DEFAULT   20u
#define THROTTLE_INCREMENT_DEFAULT 10u
#define THROTTLE_MAX_DEFAULT       99u
#define SAMPLE_PAGES               64u

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

        if (out->expected_downtime_ns <= c->downtime_ns) {
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

enum migrate_compression compression_choose(const uint8_t *mem, uint64_t size, unsigned n_threads,
                                            uint64_t link_bps)
{
        uint64_t pages = size / HV_PAGE_SIZE, in = 0, out = 0, start, spent;
        char dst[LZ4_COMPRESSBOUND(HV_PAGE_SIZE)];
        double ratio, t_none, t_lz4, compress_bps;
        long cpus;

        if (n_threads == 0) {
                cpus = sysconf(_SC_NPROCESSORS_ONLN);
                n_threads = cpus > 0 ? (unsigned)cpus : 1;
        }
        start = migrate_now_ns();
        /* Non-zero pages spread over the whole of RAM: zero pages travel as a bit either way. */
        for (uint64_t i = 0, step = MAX(pages / (SAMPLE_PAGES * 4), 1ull);
             i < pages && in < SAMPLE_PAGES * HV_PAGE_SIZE; i += step) {
                const uint8_t *page = mem + i * HV_PAGE_SIZE;
                int z;

                if (page_is_zero(page))
                        continue;
                z = LZ4_compress_default((const char *)page, dst, HV_PAGE_SIZE, (int)sizeof(dst));
                in += HV_PAGE_SIZE;
                out += z > 0 && z < (int)HV_PAGE_SIZE ? (uint64_t)z : HV_PAGE_SIZE;
        }
        spent = MAX(migrate_now_ns() - start, 1ull);
        if (in == 0)
                return MIGRATE_COMPRESSION_NONE; /* all zero: nothing to compress */
        ratio = (double)out / (double)in;
        if (ratio > 0.9)
                return MIGRATE_COMPRESSION_NONE;
        if (link_bps == 0)
                return MIGRATE_COMPRESSION_LZ4; /* unknown link: the data shrinks, assume it pays */
        compress_bps = (double)in * 1e9 / (double)spent * n_threads;
        /* Per byte of guest memory, with compression pipelined beside the sending. */
        t_none = 1.0 / (double)link_bps;
        t_lz4 = MAX(ratio / (double)link_bps, 1.0 / compress_bps);
        return t_lz4 < 0.9 * t_none ? MIGRATE_COMPRESSION_LZ4 : MIGRATE_COMPRESSION_NONE;
}
