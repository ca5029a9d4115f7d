/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemig-vmm's long operations (a snapshot, running N steps) run on a
 * worker thread, so that the VMM's loop keeps answering: a show, and above
 * all the cancel that stops a snapshot half-way. The worker never touches
 * the loop's objects; it posts progress and its end through an eventfd,
 * and the loop does the talking.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "macro.h"
#include "vmm.h"

struct vmm_job {
        struct vmm *vmm;
        struct api_call *call;
        vmm_job_work_t work;
        vmm_job_done_t done;
        void *arg;
        pthread_t thread;
        int efd;
        sd_event_source *source;
        atomic_bool cancelled;
        bool interrupts_guest; /* a cancel also interrupts the guest's steps (vmm_job_interrupts_guest()) */

        pthread_mutex_t lock;
        pthread_cond_t cond; /* signalled on cancel, for vmm_job_pace() */
        /* Under lock: */
        bool has_progress, finished;
        char phase[32];
        uint64_t progress_done, progress_total;
        Svemig__Api__Progress progress_more; /* a migration's round, rates...: phase/done/total aside */
        int r;
        struct svemig_error err;
};

static void job_free(struct vmm_job *job)
{
        sd_event_source_disable_unref(job->source);
        if (job->efd >= 0)
                close(job->efd);
        pthread_mutex_destroy(&job->lock);
        pthread_cond_destroy(&job->cond);
        free(job);
}

static void job_wake(struct vmm_job *job)
{
        uint64_t one = 1;

        (void)!write(job->efd, &one, sizeof(one));
}

static void *job_main(void *arg)
{
        struct vmm_job *job = arg;
        struct svemig_error err = {0};
        int r = job->work(job, job->arg, &err);

        pthread_mutex_lock(&job->lock);
        job->r = r;
        job->err = err;
        job->finished = true;
        pthread_mutex_unlock(&job->lock);
        job_wake(job);
        return NULL;
}

static int job_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct vmm_job *job = userdata;
        struct vmm *v = job->vmm;
        bool has_progress, finished;
        char phase[sizeof(job->phase)];
        uint64_t done, total, junk;
        Svemig__Api__Progress p;

        (void)!read(job->efd, &junk, sizeof(junk));
        pthread_mutex_lock(&job->lock);
        has_progress = job->has_progress;
        job->has_progress = false;
        memcpy(phase, job->phase, sizeof(phase));
        done = job->progress_done;
        total = job->progress_total;
        p = job->progress_more;
        finished = job->finished;
        pthread_mutex_unlock(&job->lock);

        /* The last progress goes out even when the end came with it: it comes before the answer. */
        if (has_progress) {
                p.phase = phase;
                p.done = done;
                p.total = total;
                api_call_progress_msg(job->call, &p);
        }
        if (!finished)
                return 0;

        pthread_join(job->thread, NULL);
        v->job = NULL;
        v->job_name = NULL;
        job->done(v, job->call, job->r, &job->err, job->arg);
        job_free(job);
        return 0;
}

static void job_cancel(struct api_call *call, void *userdata)
{
        struct vmm_job *job = userdata;

        pthread_mutex_lock(&job->lock);
        atomic_store(&job->cancelled, true);
        pthread_cond_broadcast(&job->cond);
        pthread_mutex_unlock(&job->lock);
        if (job->interrupts_guest)
                guest_interrupt(job->vmm->guest);
}

void vmm_job_interrupts_guest(struct vmm *v)
{
        if (v->job)
                v->job->interrupts_guest = true;
}

int vmm_job_start(struct vmm *v, struct api_call *call, const char *name, vmm_job_work_t work,
                  vmm_job_done_t done, void *arg, struct svemig_error *err)
{
        struct vmm_job *job;
        int r;

        if (v->job)
                return svemig_error_set(err, EBUSY, "guest %s is busy with %s; wait for it or cancel it",
                                        v->name, v->job_name);
        job = calloc(1, sizeof(*job));
        if (!job)
                return svemig_error_set(err, ENOMEM, "out of memory");
        job->vmm = v;
        job->progress_more = (Svemig__Api__Progress)SVEMIG__API__PROGRESS__INIT;
        job->call = call;
        job->work = work;
        job->done = done;
        job->arg = arg;
        pthread_mutex_init(&job->lock, NULL);
        pthread_cond_init(&job->cond, NULL);
        job->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (job->efd < 0) {
                r = svemig_error_set(err, errno, "eventfd: %s", strerror(errno));
                job_free(job);
                return r;
        }
        r = sd_event_add_io(v->event, &job->source, job->efd, EPOLLIN, job_io, job);
        if (r < 0) {
                job_free(job);
                return svemig_error_set(err, r, "cannot watch the worker: %s", strerror(-r));
        }
        r = -pthread_create(&job->thread, NULL, job_main, job);
        if (r < 0) {
                job_free(job);
                return svemig_error_set(err, r, "cannot start a worker thread: %s", strerror(-r));
        }
        v->job = job;
        v->job_name = name;
        api_call_set_cancel(call, job_cancel, job);
        return 0;
}

void vmm_job_progress_msg(struct vmm_job *job, const Svemig__Api__Progress *p)
{
        pthread_mutex_lock(&job->lock);
        job->progress_more = *p;
        pthread_mutex_unlock(&job->lock);
        vmm_job_progress(job, p->phase, p->done, p->total);
}

void vmm_job_progress(struct vmm_job *job, const char *phase, uint64_t done, uint64_t total)
{
        pthread_mutex_lock(&job->lock);
        job->has_progress = true;
        snprintf(job->phase, sizeof(job->phase), "%s", phase);
        job->progress_done = done;
        job->progress_total = total;
        pthread_mutex_unlock(&job->lock);
        job_wake(job);
}

bool vmm_job_cancelled(struct vmm_job *job)
{
        return atomic_load(&job->cancelled);
}

struct vmm *vmm_job_vmm(struct vmm_job *job)
{
        return job->vmm;
}

void vmm_job_pace(struct vmm_job *job, unsigned ms)
{
        struct timespec until = realtime_deadline(ms);

        pthread_mutex_lock(&job->lock);
        while (!atomic_load(&job->cancelled))
                if (pthread_cond_timedwait(&job->cond, &job->lock, &until) == ETIMEDOUT)
                        break;
        pthread_mutex_unlock(&job->lock);
}
