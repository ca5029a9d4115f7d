/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the membership's dispatch and its backends share: hosts, views, addresses. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "membership/host.h"

int membership_split_address(const char *address, char *host, size_t host_len, uint16_t *port,
                             struct svemig_error *err)
{
        const char *colon, *h = address;
        size_t hl;
        char *end;
        unsigned long p;

        if (!address || !address[0])
                return svemig_error_set(err, EINVAL, "an empty address: expected HOST:PORT");
        colon = strrchr(address, ':');
        if (!colon || colon == address)
                return svemig_error_set(err, EINVAL, "address %s: expected HOST:PORT or [V6]:PORT", address);
        hl = (size_t)(colon - address);
        if (address[0] == '[') {
                if (colon[-1] != ']')
                        return svemig_error_set(err, EINVAL, "address %s: expected [V6]:PORT", address);
                h++;
                hl -= 2;
        }
        if (hl == 0 || hl >= host_len)
                return svemig_error_set(err, EINVAL, "address %s: the host is empty or too long", address);
        errno = 0;
        p = strtoul(colon + 1, &end, 10);
        if (errno || *end || end == colon + 1 || p == 0 || p > 65535)
                return svemig_error_set(err, EINVAL, "address %s: the port must be 1 to 65535", address);
        memcpy(host, h, hl);
        host[hl] = '\0';
        *port = (uint16_t)p;
        return 0;
}

/* What changes the view or what a person would want logged; mem_available moves all the time. */
bool membership_info_same(const struct peer_info *a, const struct peer_info *b)
{
        return a->sve == b->sve && vqset_equal(&a->vls, &b->vls) && a->max_vq == b->max_vq &&
               a->n_cpus == b->n_cpus && a->max_vcpus == b->max_vcpus && a->ipa_bits == b->ipa_bits &&
               a->vcpu_features == b->vcpu_features && strcmp(a->backend, b->backend) == 0 &&
               strcmp(a->kernel, b->kernel) == 0 && strcmp(a->host_name, b->host_name) == 0 &&
               strcmp(a->svemig_version, b->svemig_version) == 0 && peer_stuck_equal(&a->stuck, &b->stuck);
}

bool membership_id_diff_same(const struct cluster_id_diff *a, const struct cluster_id_diff *b)
{
        return a->differ == b->differ &&
               (!a->differ || (a->id == b->id && a->here == b->here && a->there == b->there &&
                               a->missing_here == b->missing_here && a->missing_there == b->missing_there));
}

int membership_host_set_cpu(struct membership_host *h, const struct peer_info *info)
{
        struct cpubase_reg *regs;
        size_t n;

        if (peer_info_cpu_regs(info, &regs, &n) < 0)
                return -ENOMEM;
        h->n_cpu = MIN(n, (size_t)MEMBERSHIP_CPU_REGS_MAX);
        memcpy(h->cpu, regs, h->n_cpu * sizeof(*regs));
        free(regs);
        return 0;
}

bool membership_cpu_same(const struct membership_host *a, const struct membership_host *b)
{
        return a->n_cpu == b->n_cpu && memcmp(a->cpu, b->cpu, a->n_cpu * sizeof(a->cpu[0])) == 0;
}

struct membership_host *membership_view_add(struct membership_view *v, size_t *cap)
{
        if (v->n_hosts == *cap) {
                size_t n = *cap ? *cap * 2 : 16;
                struct membership_host *h = realloc(v->hosts, n * sizeof(*h));

                if (!h)
                        return NULL;
                v->hosts = h;
                *cap = n;
        }
        memset(&v->hosts[v->n_hosts], 0, sizeof(v->hosts[0]));
        return &v->hosts[v->n_hosts++];
}

void membership_view_done(struct membership_view *v)
{
        free(v->hosts);
        *v = (struct membership_view){0};
}
