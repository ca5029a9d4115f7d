/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl-guest-print.h"
#include "ctl.h"

void ctl_format_time(uint64_t ns, char *buf, size_t len)
{
        time_t t = (time_t)(ns / 1000000000ull);
        struct tm tm;

        if (!ns || !gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
                snprintf(buf, len, "-");
}

static struct json_object *u64(uint64_t v)
{
        return json_object_new_int64((int64_t)v);
}

/* A payload's reports are raw 64-bit values (checksums): unsigned in JSON, never wrapped negative. */
static struct json_object *payload_json(const Svemig__Api__PayloadStatus *p)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "image", json_object_new_string(p->image));
        json_object_object_add(o, "ram_base", json_object_new_uint64(p->ram_base));
        json_object_object_add(o, "entry", json_object_new_uint64(p->entry));
        json_object_object_add(o, "reports", json_object_new_uint64(p->reports));
        json_object_object_add(o, "last_addr", json_object_new_uint64(p->last_addr));
        json_object_object_add(o, "last_value", json_object_new_uint64(p->last_value));
        json_object_object_add(o, "finished", json_object_new_boolean(p->finished));
        return o;
}

struct json_object *ctl_guest_json(const Svemig__Api__Guest *g)
{
        struct json_object *o = json_object_new_object(), *bits = json_object_new_array(),
                           *steps = json_object_new_array(), *snaps = json_object_new_array();

        for (size_t i = 0; i < g->n_vl_bits; i++)
                json_object_array_add(bits, u64(g->vl_bits[i]));
        for (size_t i = 0; i < g->n_vcpu_steps; i++)
                json_object_array_add(steps, u64(g->vcpu_steps[i]));
        for (size_t i = 0; i < g->n_snapshots; i++) {
                struct json_object *s = json_object_new_object();

                json_object_object_add(s, "path", json_object_new_string(g->snapshots[i]->path));
                json_object_object_add(s, "created_ns", u64(g->snapshots[i]->created_ns));
                json_object_object_add(s, "bytes", u64(g->snapshots[i]->bytes));
                json_object_object_add(s, "steps", u64(g->snapshots[i]->steps));
                json_object_object_add(s, "parent", json_object_new_string(g->snapshots[i]->parent));
                json_object_object_add(s, "pause_us", u64(g->snapshots[i]->pause_us));
                json_object_array_add(snaps, s);
        }
        json_object_object_add(o, "name", json_object_new_string(g->name));
        json_object_object_add(o, "state", json_object_new_string(g->state));
        json_object_object_add(o, "vcpus", u64(g->vcpus));
        json_object_object_add(o, "memory_bytes", u64(g->memory_bytes));
        json_object_object_add(o, "vl_bits", bits);
        json_object_object_add(o, "max_vl_bits", u64(g->max_vl_bits));
        json_object_object_add(o, "cluster", json_object_new_boolean(g->cluster));
        json_object_object_add(o, "cpu", json_object_new_string(g->cpu && g->cpu[0] ? g->cpu : "host"));
        json_object_object_add(o, "steps", u64(g->steps));
        json_object_object_add(o, "vcpu_steps", steps);
        json_object_object_add(o, "dirty_pages_per_step", u64(g->dirty_pages_per_step));
        json_object_object_add(o, "dirty_pages_per_second",
                               json_object_new_double(g->dirty_pages_per_second));
        json_object_object_add(o, "vmm_pid", u64(g->vmm_pid));
        json_object_object_add(o, "vmm_socket", json_object_new_string(g->vmm_socket));
        json_object_object_add(o, "last_snapshot", json_object_new_string(g->last_snapshot));
        json_object_object_add(o, "last_snapshot_ns", u64(g->last_snapshot_ns));
        json_object_object_add(o, "snapshots", snaps);
        json_object_object_add(o, "restored_from", json_object_new_string(g->restored_from));
        json_object_object_add(o, "reason", json_object_new_string(g->reason));
        if (g->digest && g->digest[0])
                json_object_object_add(o, "digest", json_object_new_string(g->digest));
        if (g->payload)
                json_object_object_add(o, "payload", payload_json(g->payload));
        return o;
}

static void print_vls(const Svemig__Api__Guest *g, char *buf, size_t len)
{
        size_t off = 0;

        if (g->n_vl_bits == 0) {
                snprintf(buf, len, "none (FPSIMD only)");
                return;
        }
        for (size_t i = 0; i < g->n_vl_bits && off < len; i++)
                off += (size_t)snprintf(buf + off, len - off, "%s%u", i ? "," : "", g->vl_bits[i]);
}

void ctl_guest_print(const Svemig__Api__Guest *g)
{
        char vls[512], when[64];

        print_vls(g, vls, sizeof(vls));
        printf("name:           %s\n", g->name);
        printf("state:          %s\n", g->state);
        if (g->reason && g->reason[0])
                printf("reason:         %s\n", g->reason);
        printf("vcpus:          %u\n", g->vcpus);
        if (g->memory_bytes % (1 << 20))
                printf("memory:         %llu KiB\n", (unsigned long long)(g->memory_bytes >> 10));
        else
                printf("memory:         %llu MiB\n", (unsigned long long)(g->memory_bytes >> 20));
        printf("vector lengths: %s%s%s\n", vls, g->n_vl_bits ? " bits" : "", g->cluster ? " (cluster)" : "");
        printf("CPU:            %s\n", g->cpu && strcmp(g->cpu, "cluster") == 0
                                               ? "the cluster's baseline (ID registers written at create)"
                                               : "this host's");
        printf("steps:          %llu", (unsigned long long)g->steps);
        if (g->n_vcpu_steps > 1) {
                fputs(" (", stdout);
                for (size_t i = 0; i < g->n_vcpu_steps; i++)
                        printf("%s%llu", i ? " + " : "", (unsigned long long)g->vcpu_steps[i]);
                fputs(")", stdout);
        }
        putchar('\n');
        printf("dirty rate:     %.0f pages/s (%u pages per step per vcpu)\n", g->dirty_pages_per_second,
               g->dirty_pages_per_step);
        if (g->vmm_pid)
                printf("VMM:            pid %u, %s\n", g->vmm_pid, g->vmm_socket);
        else
                printf("VMM:            none\n");
        if (g->restored_from && g->restored_from[0])
                printf("restored from:  %s\n", g->restored_from);
        if (g->last_snapshot && g->last_snapshot[0]) {
                ctl_format_time(g->last_snapshot_ns, when, sizeof(when));
                const Svemig__Api__SnapshotInfo *last = g->snapshots[g->n_snapshots - 1];

                printf("last snapshot:  %s (%s; %zu on record)\n", g->last_snapshot, when, g->n_snapshots);
                printf("                %llu bytes, %s, the guest paused %.3f ms\n",
                       (unsigned long long)last->bytes, last->parent[0] ? "incremental" : "full",
                       (double)last->pause_us / 1000);
                if (last->parent[0])
                        printf("                over %s\n", last->parent);
        } else
                printf("last snapshot:  none\n");
        if (g->digest && g->digest[0])
                printf("state digest:   %s\n", g->digest);
        if (g->payload) {
                const Svemig__Api__PayloadStatus *p = g->payload;

                printf("payload:        %s (RAM at 0x%llx, entry 0x%llx)\n", p->image,
                       (unsigned long long)p->ram_base, (unsigned long long)p->entry);
                if (p->reports)
                        printf("reported:       %llu (0x%llx) at 0x%llx, %llu report%s in all\n",
                               (unsigned long long)p->last_value, (unsigned long long)p->last_value,
                               (unsigned long long)p->last_addr, (unsigned long long)p->reports,
                               p->reports == 1 ? "" : "s");
                else
                        printf("reported:       nothing yet\n");
                printf("finished:       %s\n", p->finished ? "yes (every vcpu stopped by itself)" : "no");
        }
}

void ctl_guest_table(Svemig__Api__Guest *const *guests, size_t n)
{
        printf("%-20s %-8s %5s %9s %-16s %14s  %s\n", "NAME", "STATE", "VCPUS", "MEMORY", "VL (bits)",
               "STEPS", "LAST SNAPSHOT");
        for (size_t i = 0; i < n; i++) {
                const Svemig__Api__Guest *g = guests[i];
                char vls[512], mem[32];

                print_vls(g, vls, sizeof(vls));
                if (g->n_vl_bits == 0)
                        snprintf(vls, sizeof(vls), "none");
                snprintf(mem, sizeof(mem), "%lluM", (unsigned long long)(g->memory_bytes >> 20));
                printf("%-20s %-8s %5u %9s %-16s %14llu  %s\n", g->name, g->state, g->vcpus, mem, vls,
                       (unsigned long long)g->steps,
                       g->last_snapshot && g->last_snapshot[0] ? g->last_snapshot : "-");
        }
}
