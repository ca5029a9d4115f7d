/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A pool of worker threads running an ordered pipeline: the calling thread
 * produces jobs in order, workers run them in any order, and the calling
 * thread consumes the results in production order. Stream encoding
 * (compress in parallel, write in order) and decoding (read in order,
 * decompress in parallel) are both this shape.
 */

struct workpool;

/* n_threads == 0: one per online CPU. Returns 0 or -ENOMEM/-EAGAIN. */
int workpool_new(unsigned n_threads, struct workpool **out);
void workpool_free(struct workpool *p);
unsigned workpool_threads(const struct workpool *p);

enum {
        WORKPOOL_END = 0,         /* no more jobs */
        WORKPOOL_JOB = 1,         /* the slot holds a job */
        WORKPOOL_JOB_BARRIER = 2, /* the slot holds a job; consume every earlier one first */
};

struct workpool_pipeline {
        unsigned window; /* jobs in flight at most; slots are 0..window-1 */
        void *ctx;
        /* Calling thread: fills 'slot' with the next job. Returns WORKPOOL_* or a negative errno. */
        int (*produce)(void *ctx, unsigned slot);
        /* Any worker: runs the job in 'slot'. Its return value is handed to consume. */
        int (*work)(void *ctx, unsigned slot);
        /* Calling thread, in production order: finishes the job. A negative return stops the pipeline. */
        int (*consume)(void *ctx, unsigned slot, int work_rc);
};

/*
 * Runs the pipeline until produce returns WORKPOOL_END and every job is
 * consumed, or until the first error, after which no job is produced or
 * consumed but the ones running are waited for (so their slots may be
 * freed). Returns 0 or the first error in production order. One pipeline
 * runs on a pool at a time.
 */
int workpool_run(struct workpool *p, const struct workpool_pipeline *pl);
