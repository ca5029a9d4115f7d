/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one way svemig reads a clock. */

#include <stdint.h>
#include <time.h>

#define NSEC_PER_SEC  1000000000ull
#define NSEC_PER_MSEC 1000000ull
#define NSEC_PER_USEC 1000ull

/* clock in ns: CLOCK_MONOTONIC for intervals and deadlines, CLOCK_REALTIME for dates. */
static inline uint64_t now_ns(clockid_t clock)
{
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* CLOCK_REALTIME ms from now, for pthread_cond_timedwait(). */
static inline struct timespec realtime_deadline(unsigned ms)
{
        struct timespec t;

        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_sec += ms / 1000;
        t.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
        }
        return t;
}
