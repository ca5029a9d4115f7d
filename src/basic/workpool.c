/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "macro.h"
#include "workpool.h"

#define WORKPOOL_THREADS_MAX 256u

enum slot_state {
        SLOT_FREE = 0,
        SLOT_QUEUED,
        SLOT_RUNNING,
        SLOT_DONE,
};

struct workpool {
        pthread_mutex_t lock;
        pthread_cond_t work_cond; /* workers: a job was queued, or stop */
        pthread_cond_t done_cond; /* the caller: a job finished */
        pthread_t *threads;
        unsigned n_threads;
        bool stop;

        /* The running pipeline, under lock. */
        const struct workpool_pipeline *pl;
        unsigned *queue; /* FIFO of slots, capacity pl->window */
        unsigned q_head, q_len;
        enum slot_state *state;
        int *rc;
};

static void *worker_main(void *arg)
{
        struct workpool *p = arg;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                const struct workpool_pipeline *pl;
                unsigned slot;
                int r;

                while (!p->stop && p->q_len == 0)
                        pthread_cond_wait(&p->work_cond, &p->lock);
                if (p->q_len == 0)
                        break; /* stop, and nothing left to run */

                pl = p->pl;
                slot = p->queue[p->q_head];
                p->q_head = (p->q_head + 1) % pl->window;
                p->q_len--;
                p->state[slot] = SLOT_RUNNING;
                pthread_mutex_unlock(&p->lock);

                r = pl->work(pl->ctx, slot);

                pthread_mutex_lock(&p->lock);
                p->rc[slot] = r;
                p->state[slot] = SLOT_DONE;
                pthread_cond_broadcast(&p->done_cond);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

static unsigned online_cpus(void)
{
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        return n > 0 ? (unsigned)MIN((unsigned long)n, WORKPOOL_THREADS_MAX) : 1u;
}

void workpool_free(struct workpool *p)
{
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->work_cond);
        pthread_mutex_unlock(&p->lock);
        for (unsigned i = 0; i < p->n_threads; i++)
                pthread_join(p->threads[i], NULL);
        pthread_cond_destroy(&p->work_cond);
        pthread_cond_destroy(&p->done_cond);
        pthread_mutex_destroy(&p->lock);
        free(p->threads);
        free(p);
}

int workpool_new(unsigned n_threads, struct workpool **out)
{
        struct workpool *p;

        if (n_threads == 0)
                n_threads = online_cpus();
        n_threads = MIN(n_threads, WORKPOOL_THREADS_MAX);

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->threads = calloc(n_threads, sizeof(*p->threads));
        if (!p->threads) {
                free(p);
                return -ENOMEM;
        }
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->work_cond, NULL);
        pthread_cond_init(&p->done_cond, NULL);

        for (unsigned i = 0; i < n_threads; i++) {
                int r = pthread_create(&p->threads[i], NULL, worker_main, p);
                if (r != 0) {
                        workpool_free(p); /* joins the n_threads already started */
                        return -r;
                }
                p->n_threads++;
        }
        *out = p;
        return 0;
}

unsigned workpool_threads(const struct workpool *p)
{
        return p->n_threads;
}

/* Under lock. */
static void submit(struct workpool *p, unsigned slot)
{
        p->queue[(p->q_head + p->q_len) % p->pl->window] = slot;
        p->q_len++;
        p->state[slot] = SLOT_QUEUED;
        pthread_cond_signal(&p->work_cond);
}

/* Waits for the job in 'slot' and returns its work rc. */
static int wait_slot(struct workpool *p, unsigned slot)
{
        int r;

        pthread_mutex_lock(&p->lock);
        while (p->state[slot] != SLOT_DONE)
                pthread_cond_wait(&p->done_cond, &p->lock);
        r = p->rc[slot];
        p->state[slot] = SLOT_FREE;
        pthread_mutex_unlock(&p->lock);
        return r;
}

int workpool_run(struct workpool *p, const struct workpool_pipeline *pl)
{
        _cleanup_free_ unsigned *queue = NULL;
        _cleanup_free_ enum slot_state *state = NULL;
        _cleanup_free_ int *rc = NULL;
        unsigned long produced = 0, consumed = 0;
        bool ended = false;
        int r = 0;

        if (pl->window == 0)
                return -EINVAL;
        queue = calloc(pl->window, sizeof(*queue));
        state = calloc(pl->window, sizeof(*state));
        rc = calloc(pl->window, sizeof(*rc));
        if (!queue || !state || !rc)
                return -ENOMEM;

        pthread_mutex_lock(&p->lock);
        p->pl = pl;
        p->queue = queue;
        p->q_head = p->q_len = 0;
        p->state = state;
        p->rc = rc;
        pthread_mutex_unlock(&p->lock);

        while (r == 0) {
                /* Keep the window full... */
                while (!ended && produced - consumed < pl->window) {
                        unsigned slot = produced % pl->window;
                        int k = pl->produce(pl->ctx, slot);

                        if (k < 0) {
                                r = k;
                                break;
                        }
                        if (k == WORKPOOL_END) {
                                ended = true;
                                break;
                        }
                        /* ...except that a barrier job waits until every earlier one is consumed. */
                        while (k == WORKPOOL_JOB_BARRIER && consumed < produced && r == 0) {
                                unsigned s = consumed % pl->window;
                                r = pl->consume(pl->ctx, s, wait_slot(p, s));
                                consumed++;
                        }
                        if (r < 0)
                                break;
                        pthread_mutex_lock(&p->lock);
                        submit(p, slot);
                        pthread_mutex_unlock(&p->lock);
                        produced++;
                }
                if (r < 0 || consumed == produced)
                        break;

                /* ...and consume the oldest job. */
                unsigned s = consumed % pl->window;
                r = pl->consume(pl->ctx, s, wait_slot(p, s));
                consumed++;
        }

        /* After an error, the jobs in flight still own their slots: wait for them. */
        for (; consumed < produced; consumed++)
                (void)wait_slot(p, consumed % pl->window);

        pthread_mutex_lock(&p->lock);
        p->pl = NULL;
        p->queue = NULL;
        p->state = NULL;
        p->rc = NULL;
        pthread_mutex_unlock(&p->lock);
        return r;
}
