/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The source's decisions: convergence, throttling and compression
 * (docs/migration.md). Pure functions, unit-tested, but for the sampling.
 */

#include <stdbool.h>
#include <stdint.h>

#include "svemig/migrate.h"

struct converge_opts {
        uint64_t downtime_ns;
        uint64_t downtime_limit_ns;
        unsigned max_rounds;
        bool auto_converge;
        unsigned throttle_initial, throttle_increment, throttle_max;
};

void converge_opts_from(const struct migrate_opts *opts, struct converge_opts *c);

/* What one pre-copy pass showed. */
struct converge_round {
        unsigned round;          /* passes done, the one measured included */
        uint64_t dirty_pages;    /* pages dirtied during it (to send next) */
        uint64_t round_ns;       /* how long it took */
        uint64_t sent_bytes;     /* stream bytes it sent */
        uint64_t sent_pages;     /* non-zero pages it sent */
        uint64_t link_bps;       /* measured over every pass so far */
        uint64_t fixed_bytes;    /* what stop-and-copy sends besides memory (vcpus, trailer) */
        uint64_t bytes_per_page; /* measured wire bytes per dirty page */
        unsigned throttle_pct;   /* now */
};

enum converge_action {
        CONVERGE_CONTINUE,  /* another pre-copy pass */
        CONVERGE_THROTTLE,  /* another pass, with the guest throttled to throttle_pct */
        CONVERGE_STOP_COPY, /* pause and finish */
        CONVERGE_GIVE_UP,   /* no convergence: resume, fail with reason */
};

struct converge_verdict {
        enum converge_action action;
        uint64_t expected_downtime_ns;
        uint64_t dirty_rate;   /* bytes/s */
        unsigned throttle_pct; /* for CONVERGE_THROTTLE */
        char reason[384];      /* for CONVERGE_GIVE_UP */
};

/* The policy of docs/migration.md "Convergence": a pure function, unit-tested. */
void converge_decide(const struct converge_opts *c, const struct converge_round *r,
                     struct converge_verdict *out);

/* What the compression choice weighs (docs/migration.md "Compression"). */
struct compression_input {
        double ratio;          /* LZ4 output / input on a sample of non-zero pages */
        uint64_t compress_bps; /* guest bytes/s all the workers compress, from the sample */
        uint64_t link_bps;     /* bytes/s the link carries (the cap, or measured); 0 = unknown */
        uint64_t raw_mem_bps;  /* guest bytes/s a piece sent raw moved, end to end; 0 = not tried */
        uint64_t lz4_mem_bps;  /* the same with LZ4; 0 = not tried */
        uint64_t raw_at_ns;    /* when raw_mem_bps was measured (now_ns(CLOCK_MONOTONIC)) */
        uint64_t lz4_at_ns;    /* when lz4_mem_bps was */
        uint64_t now_ns;       /* the time of the decision */
        bool no_trial;         /* stop-and-copy after a pre-copy: the faster way measured, no trial */
};

/* Measures ratio and compress_bps on a sample of guest memory; leaves link_bps. */
void compression_sample(const uint8_t *mem, uint64_t size, unsigned n_threads,
                        struct compression_input *out);

/* Whether LZ4 shrinks the sample enough to be worth having in the stream at all. */
bool compression_may_pay(const struct compression_input *in);

/*
 * MIGRATE_COMPRESSION_AUTO, before each piece of memory. Never LZ4 where it
 * does not shrink the data. Before any measurement: raw on an unknown link,
 * else LZ4 if compressing and sending less beats sending raw by a margin on
 * this link (the sample's model). Then each way is tried on a piece, and the
 * one that moved guest memory faster goes on, the other tried again once
 * its figure is 2 s old. A pure function, unit-tested.
 */
enum migrate_compression compression_decide(const struct compression_input *in);
