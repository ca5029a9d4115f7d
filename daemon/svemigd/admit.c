/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysinfo.h>

#include "admit.h"
#include "guest-registry.h"
#include "svemig/stream.h"
#include "svemigd.h"

int admit_limits_init(const struct migrate_conf *conf, struct admit_limits *out, struct svemig_error *err)
{
        struct sysinfo si;

        out->host_memory = conf->guest_host_memory;
        if (!out->host_memory) {
                if (sysinfo(&si) < 0)
                        return svemig_error_set(err, errno,
                                                "cannot read the host's memory (sysinfo: %s); set [guests] "
                                                "host-memory",
                                                strerror(errno));
                out->host_memory = (uint64_t)si.totalram * si.mem_unit;
        }
        out->overcommit_pct = conf->guest_overcommit_pct ? conf->guest_overcommit_pct : 100;
        /* A quarter of the host stays out of reach of what streams in at once: the host's and its guests'.
         */
        out->incoming_limit = conf->incoming_mem_limit ? conf->incoming_mem_limit : out->host_memory / 4 * 3;
        return 0;
}

uint64_t admit_capacity(const struct admit_limits *l)
{
        unsigned __int128 c = (unsigned __int128)l->host_memory * l->overcommit_pct / 100;

        return c > UINT64_MAX ? UINT64_MAX : (uint64_t)c;
}

/* "17408.0 GiB", "512.0 MiB", "64 KiB": enough to compare the figures of a refusal. */
static const char *size_str(uint64_t b, char *buf, size_t size)
{
        if (b >= (1ull << 30))
                snprintf(buf, size, "%.1f GiB", (double)b / (double)(1ull << 30));
        else if (b >= (1ull << 20))
                snprintf(buf, size, "%.1f MiB", (double)b / (double)(1ull << 20));
        else
                snprintf(buf, size, "%llu KiB", (unsigned long long)(b >> 10));
        return buf;
}

struct usage {
        uint64_t with_vmm; /* guests that have a VMM, not arriving */
        uint64_t arriving;
};

static struct usage usage(struct svemigd *d)
{
        struct usage u = {0};

        for (struct guest_entry *e = guest_registry_first(d->guests); e; e = guest_registry_next(e)) {
                if (e->arriving_bytes)
                        u.arriving += e->arriving_bytes;
                else if (guest_state_has_vmm(e->rec.state))
                        u.with_vmm += e->rec.memory_bytes;
        }
        return u;
}

static int check_stream_limit(const char *what, const char *name, uint64_t bytes, struct svemig_error *err)
{
        char a[32], m[32];

        if (bytes <= SVEMIG_STREAM_MEMORY_MAX)
                return 0;
        return svemig_error_set(err, EFBIG,
                                "%s %s: %s of guest memory is more than a snapshot or a migration can ever "
                                "hold (%s, the stream format's limit); give the guest at most that",
                                what, name, size_str(bytes, a, sizeof(a)),
                                size_str(SVEMIG_STREAM_MEMORY_MAX, m, sizeof(m)));
}

static int check_capacity(struct svemigd *d, const struct usage *u, const char *what, const char *name,
                          uint64_t bytes, struct svemig_error *err)
{
        const struct admit_limits *l = &d->admit;
        uint64_t cap = admit_capacity(l), used = u->with_vmm + u->arriving;
        char a[32], h[32], c[32], g[32], w[32], f[32];

        if (used <= cap && bytes <= cap - used)
                return 0;
        return svemig_error_set(
                err, ENOMEM,
                "%s %s: %s of guest memory is more than host %s can back: it gives guests %s "
                "([guests] host-memory %s x memory-overcommit %u.%02u), and its guests have %s, guests "
                "arriving %s, so %s is left; give the guest less, stop or delete guests here, or raise "
                "[guests] memory-overcommit",
                what, name, size_str(bytes, a, sizeof(a)), d->conf.host_name, size_str(cap, c, sizeof(c)),
                size_str(l->host_memory, h, sizeof(h)), l->overcommit_pct / 100, l->overcommit_pct % 100,
                size_str(u->with_vmm, g, sizeof(g)), size_str(u->arriving, w, sizeof(w)),
                size_str(used < cap ? cap - used : 0, f, sizeof(f)));
}

int admit_guest(struct svemigd *d, const char *what, const char *name, uint64_t bytes,
                struct svemig_error *err)
{
        struct usage u = usage(d);
        int r;

        r = check_stream_limit(what, name, bytes, err);
        if (r == 0)
                r = check_capacity(d, &u, what, name, bytes, err);
        return r;
}

int admit_arriving(struct svemigd *d, const char *what, const char *name, uint64_t bytes,
                   struct svemig_error *err)
{
        const struct admit_limits *l = &d->admit;
        struct usage u = usage(d);
        char a[32], w[32], m[32];
        int r;

        r = check_stream_limit(what, name, bytes, err);
        if (r < 0)
                return r;
        if (u.arriving > l->incoming_limit || bytes > l->incoming_limit - u.arriving)
                return svemig_error_set(
                        err, ENOMEM,
                        "%s %s: its stream asks for %s of guest memory; with the guests arriving now (%s) "
                        "that passes host %s's limit for guests arriving at once, %s ([cluster] "
                        "incoming-memory-limit); %s",
                        what, name, size_str(bytes, a, sizeof(a)), size_str(u.arriving, w, sizeof(w)),
                        d->conf.host_name, size_str(l->incoming_limit, m, sizeof(m)),
                        bytes > l->incoming_limit ? "raise the limit to take a guest this large"
                                                  : "try again once they have arrived, or raise the limit");
        return check_capacity(d, &u, what, name, bytes, err);
}

void admit_arrived(struct guest_entry *e)
{
        e->arriving_bytes = 0;
}
