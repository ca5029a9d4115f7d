/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The CPU baseline for a person or as JSON: svemigctl negotiate's and cluster's. */
#include <inttypes.h>
#include <stdio.h>

#include "ctl-cpu.h"

static struct json_object *hex_string(uint64_t v)
{
        char buf[24];

        snprintf(buf, sizeof(buf), "0x%016" PRIx64, v);
        return json_object_new_string(buf);
}

struct json_object *ctl_cpu_json(const struct cpubase_result *c)
{
        struct json_object *o = json_object_new_object(), *base = json_object_new_object(),
                           *hosts = json_object_new_array(), *limits = json_object_new_array(),
                           *conflicts = json_object_new_array(), *uncompared = json_object_new_array();
        char name[96];

        for (size_t i = 0; i < c->n_regs; i++) {
                char key[24];

                snprintf(key, sizeof(key), "0x%016" PRIx64, c->regs[i].id);
                json_object_object_add(base, key, hex_string(c->regs[i].value));
        }
        for (size_t i = 0; i < c->n_hosts; i++) {
                struct json_object *h = json_object_new_object();

                json_object_object_add(h, "index", json_object_new_int64((int64_t)i));
                json_object_object_add(h, "writes_id_regs", json_object_new_boolean(c->hosts[i].writes));
                json_object_array_add(hosts, h);
        }
        for (size_t i = 0; i < c->n_limits; i++) {
                const struct cpubase_limit *l = &c->limits[i];
                struct json_object *j = json_object_new_object();

                cpubase_field_name(l->id, l->field, name, sizeof(name));
                json_object_object_add(j, "field", json_object_new_string(name));
                json_object_object_add(j, "value", json_object_new_int64(l->value));
                json_object_object_add(j, "without", json_object_new_int64(l->without));
                json_object_object_add(j, "host", json_object_new_int64((int64_t)l->host));
                json_object_object_add(j, "n_hosts", json_object_new_int64((int64_t)l->n_hosts));
                json_object_object_add(j, "pinned", json_object_new_boolean(l->pinned));
                json_object_array_add(limits, j);
        }
        for (size_t i = 0; i < c->n_conflicts; i++) {
                const struct cpubase_conflict *k = &c->conflicts[i];
                struct json_object *j = json_object_new_object(), *hs = json_object_new_array(),
                                   *vs = json_object_new_array();

                cpubase_field_name(k->id, k->field, name, sizeof(name));
                json_object_object_add(j, "field", json_object_new_string(name));
                json_object_array_add(hs, json_object_new_int64((int64_t)k->host_a));
                json_object_array_add(hs, json_object_new_int64((int64_t)k->host_b));
                json_object_array_add(vs, json_object_new_int64(k->a));
                json_object_array_add(vs, json_object_new_int64(k->b));
                json_object_object_add(j, "hosts", hs);
                json_object_object_add(j, "values", vs);
                json_object_array_add(conflicts, j);
        }
        for (size_t i = 0; i < c->n_uncompared; i++) {
                const struct cpubase_uncompared *u = &c->uncompared[i];
                struct json_object *j = json_object_new_object(), *hs = json_object_new_array(),
                                   *vs = json_object_new_array();

                cpubase_field_name(u->id, u->field, name, sizeof(name));
                json_object_object_add(j, "field", json_object_new_string(name));
                json_object_array_add(hs, json_object_new_int64((int64_t)u->host_a));
                json_object_array_add(hs, json_object_new_int64((int64_t)u->host_b));
                json_object_array_add(vs, json_object_new_int64(u->a));
                json_object_array_add(vs, json_object_new_int64(u->b));
                json_object_object_add(j, "hosts", hs);
                json_object_object_add(j, "values", vs);
                json_object_array_add(uncompared, j);
        }
        json_object_object_add(o, "baseline", base);
        json_object_object_add(o, "el2_only_not_compared", uncompared);
        json_object_object_add(o, "hosts", hosts);
        json_object_object_add(o, "limits", limits);
        json_object_object_add(o, "conflicts", conflicts);
        return o;
}

void ctl_cpu_print(const char *const *names, const struct cpubase_result *c)
{
        char name[96];
        size_t writers = 0;

        if (!c) {
                puts("CPU baseline: not negotiated; give each host as a file 'svemigctl host-info --json' "
                     "wrote to negotiate it");
                return;
        }
        if (c->n_conflicts) {
                printf("CPU baseline: none: %zu field%s no value of which every host can present\n",
                       c->n_conflicts, c->n_conflicts > 1 ? "s have" : " has");
                for (size_t i = 0; i < c->n_conflicts; i++) {
                        const struct cpubase_conflict *k = &c->conflicts[i];

                        cpubase_field_name(k->id, k->field, name, sizeof(name));
                        printf("  %s: %" PRId64 " on host %zu (%s), %" PRId64 " on host %zu (%s); "
                               "neither kernel can present the other's\n",
                               name, k->a, k->host_a, names[k->host_a], k->b, k->host_b, names[k->host_b]);
                }
                return;
        }
        printf("CPU baseline: %zu ID registers every host can present\n", c->n_regs);
        for (size_t i = 0; i < c->n_hosts; i++)
                if (c->hosts[i].writes)
                        writers++;
        printf("  %zu of %zu hosts present it by writing ID registers before a guest first runs\n", writers,
               c->n_hosts);
        for (size_t i = 0; i < c->n_limits; i++) {
                const struct cpubase_limit *l = &c->limits[i];

                cpubase_field_name(l->id, l->field, name, sizeof(name));
                printf("  limiting: host %zu (%s)%s holds %s at %" PRId64 " (%" PRId64 " without %s%s)\n",
                       l->host, names[l->host], l->n_hosts > 1 ? " and others" : "", name, l->value,
                       l->without, l->n_hosts > 1 ? "them" : "it",
                       l->pinned ? "; its kernel cannot write the field" : "");
        }
        for (size_t i = 0; i < c->n_uncompared; i++) {
                const struct cpubase_uncompared *u = &c->uncompared[i];

                cpubase_field_name(u->id, u->field, name, sizeof(name));
                printf("  EL2-only, not compared: %s (%" PRId64 " on host %zu (%s), %" PRId64
                       " on host %zu (%s)); a guest at EL1 cannot use it, each host presents its own\n",
                       name, u->a, u->host_a, names[u->host_a], u->b, u->host_b, names[u->host_b]);
        }
}
