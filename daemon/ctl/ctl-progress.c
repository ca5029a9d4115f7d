/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl-call.h"
#include "ctl-progress.h"

#define BAR_WIDTH 30

void ctl_progress_init(struct ctl_progress *p, const struct ctl_options *opts, bool json, const char *what)
{
        memset(p, 0, sizeof(*p));
        p->what = what;
        p->tty = isatty(STDERR_FILENO);
        p->off = opts->quiet || json;
        p->tenth = -1;
}

/* Bytes for a person: "123.4 MiB". */
static void human_bytes(uint64_t n, char *buf, size_t len)
{
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = (double)n;
        unsigned u = 0;

        while (v >= 1024 && u < 4) {
                v /= 1024;
                u++;
        }
        snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void ctl_progress_show(const Svemig__Api__Progress *pr, void *userdata)
{
        struct ctl_progress *p = userdata;
        const char *phase = pr->phase && pr->phase[0] ? pr->phase : "working";
        /* Memory phases count bytes; the others (vcpus, steps) count units. */
        bool bytes = strcmp(phase, "memory") == 0 || strcmp(phase, "verify") == 0;
        char done[32], total[32];
        int pct = pr->total ? (int)(pr->done * 100 / pr->total) : -1;

        if (p->off)
                return;
        if (bytes) {
                human_bytes(pr->done, done, sizeof(done));
                human_bytes(pr->total, total, sizeof(total));
        } else {
                snprintf(done, sizeof(done), "%llu", (unsigned long long)pr->done);
                snprintf(total, sizeof(total), "%llu", (unsigned long long)pr->total);
        }
        if (p->tty) {
                char bar[BAR_WIDTH + 1];
                int fill = pct < 0 ? 0 : pct * BAR_WIDTH / 100;

                memset(bar, '#', (size_t)fill);
                memset(bar + fill, '.', (size_t)(BAR_WIDTH - fill));
                bar[BAR_WIDTH] = '\0';
                fprintf(stderr, "\r\033[K%s [%s] %3d%% %-9s %s/%s (operation %llu)", p->what, bar,
                        pct < 0 ? 0 : pct, phase, done, total, (unsigned long long)pr->operation);
                fflush(stderr);
                p->drawn = true;
                return;
        }
        /* Plain lines: one per phase, and one per tenth of it. */
        if (strcmp(p->phase, phase) != 0) {
                snprintf(p->phase, sizeof(p->phase), "%s", phase);
                p->tenth = -1;
        }
        if (pct >= 0 && pct / 10 == p->tenth)
                return;
        p->tenth = pct < 0 ? p->tenth : pct / 10;
        if (pct >= 0)
                fprintf(stderr, "%s: %s %d%% (%s of %s, operation %llu)\n", p->what, phase, pct, done, total,
                        (unsigned long long)pr->operation);
        else
                fprintf(stderr, "%s: %s %s (operation %llu)\n", p->what, phase, done,
                        (unsigned long long)pr->operation);
}

void ctl_progress_end(struct ctl_progress *p)
{
        if (p->drawn)
                fputc('\n', stderr);
        p->drawn = false;
}

int ctl_call_progress(const struct ctl_options *opts, bool json, const char *what, Svemig__Api__Request *req,
                      int fd, Svemig__Api__Response **resp)
{
        struct ctl_progress p;
        int r;

        ctl_progress_init(&p, opts, json, what);
        r = ctl_call_fd(opts, what, req, fd, ctl_progress_show, &p, resp);
        ctl_progress_end(&p);
        return r;
}
