/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "file-atomic.h"
#include "guest-record.h"
#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_object *, json_object_put);

static const char *const state_names[_GUEST_STATE_MAX] = {
        [GUEST_CREATED] = "created", [GUEST_RUNNING] = "running", [GUEST_PAUSED] = "paused",
        [GUEST_STOPPED] = "stopped", [GUEST_DEAD] = "dead",
};

const char *guest_state_name(enum guest_state s)
{
        return s < _GUEST_STATE_MAX ? state_names[s] : "unknown";
}

int guest_state_from_name(const char *name)
{
        for (int i = 0; i < _GUEST_STATE_MAX; i++)
                if (name && strcmp(name, state_names[i]) == 0)
                        return i;
        return -1;
}

bool guest_state_has_vmm(enum guest_state s)
{
        return s == GUEST_CREATED || s == GUEST_RUNNING || s == GUEST_PAUSED;
}

int guest_name_check(const char *name, struct svemig_error *err)
{
        size_t len = name ? strlen(name) : 0;

        if (len == 0)
                return svemig_error_set(err, EINVAL, "give the guest a name");
        if (len > GUEST_NAME_MAX)
                return svemig_error_set(err, EINVAL, "guest name '%.70s...' is longer than %u characters",
                                        name, GUEST_NAME_MAX);
        if (name[0] == '.' || name[0] == '-')
                return svemig_error_set(err, EINVAL, "guest name '%s' must not start with '%c'", name,
                                        name[0]);
        for (size_t i = 0; i < len; i++) {
                char c = name[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.'))
                        return svemig_error_set(
                                err, EINVAL,
                                "guest name '%s' has '%c'; use letters, digits, '-', '_' and "
                                "'.'",
                                name, c);
        }
        return 0;
}

int guest_record_set_str(char **field, const char *value)
{
        char *copy = NULL;

        if (value && value[0] && !(copy = strdup(value)))
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

int guest_record_add_snapshot(struct guest_record *rec, const char *path, uint64_t created_ns,
                              uint64_t bytes, uint64_t steps)
{
        struct guest_snapshot *p = realloc(rec->snapshots, (rec->n_snapshots + 1) * sizeof(*p));

        if (!p)
                return -ENOMEM;
        rec->snapshots = p;
        p[rec->n_snapshots] = (struct guest_snapshot){
                .path = strdup(path), .created_ns = created_ns, .bytes = bytes, .steps = steps};
        if (!p[rec->n_snapshots].path)
                return -ENOMEM;
        rec->n_snapshots++;
        return 0;
}

int guest_record_set_snapshot_chain(struct guest_record *rec, const char *parent, uint64_t pause_us)
{
        struct guest_snapshot *s = &rec->snapshots[rec->n_snapshots - 1];

        s->pause_us = pause_us;
        return parent && parent[0] ? guest_record_set_str(&s->parent, parent) : 0;
}

void guest_record_remove_snapshot(struct guest_record *rec, size_t i)
{
        if (i >= rec->n_snapshots)
                return;
        free(rec->snapshots[i].path);
        free(rec->snapshots[i].parent);
        memmove(&rec->snapshots[i], &rec->snapshots[i + 1],
                (rec->n_snapshots - i - 1) * sizeof(rec->snapshots[0]));
        rec->n_snapshots--;
}

void guest_record_done(struct guest_record *rec)
{
        free(rec->name);
        free(rec->vmm_socket);
        free(rec->reason);
        free(rec->restored_from);
        free(rec->incoming_migration);
        free(rec->payload);
        free(rec->cpu_regs);
        free(rec->kernel);
        free(rec->initrd);
        free(rec->cmdline);
        for (size_t i = 0; i < rec->n_snapshots; i++) {
                free(rec->snapshots[i].path);
                free(rec->snapshots[i].parent);
        }
        free(rec->snapshots);
        memset(rec, 0, sizeof(*rec));
}

/* --- JSON --- */

static void add_str(struct json_object *o, const char *key, const char *value)
{
        if (value)
                json_object_object_add(o, key, json_object_new_string(value));
}

static void add_u64(struct json_object *o, const char *key, uint64_t value)
{
        /* json-c's int64 holds every value we store (ns since the epoch, bytes, steps). */
        json_object_object_add(o, key, json_object_new_int64((int64_t)value));
}

static struct json_object *record_to_json(const struct guest_record *rec)
{
        struct json_object *o = json_object_new_object(), *snaps = json_object_new_array();
        char vls[256];

        vqset_format(&rec->vls, VQSET_FORMAT_BITS, vls, sizeof(vls));
        add_str(o, "name", rec->name);
        add_u64(o, "vcpus", rec->vcpus);
        add_u64(o, "memory_bytes", rec->memory_bytes);
        add_str(o, "vl_bits", vls);
        json_object_object_add(o, "cluster", json_object_new_boolean(rec->cluster));
        add_u64(o, "dirty_pages_per_step", rec->dirty_pages_per_step);
        add_str(o, "state", guest_state_name(rec->state));
        add_u64(o, "steps", rec->steps);
        add_u64(o, "vmm_pid", (uint64_t)rec->vmm_pid);
        add_str(o, "vmm_socket", rec->vmm_socket);
        add_str(o, "reason", rec->reason);
        add_str(o, "restored_from", rec->restored_from);
        add_str(o, "incoming_migration", rec->incoming_migration);
        add_str(o, "payload", rec->payload);
        add_str(o, "cpu_regs", rec->cpu_regs);
        add_str(o, "kernel", rec->kernel);
        add_str(o, "initrd", rec->initrd);
        add_str(o, "cmdline", rec->cmdline);
        add_u64(o, "created_ns", rec->created_ns);
        for (size_t i = 0; i < rec->n_snapshots; i++) {
                struct json_object *s = json_object_new_object();

                add_str(s, "path", rec->snapshots[i].path);
                add_u64(s, "created_ns", rec->snapshots[i].created_ns);
                add_u64(s, "bytes", rec->snapshots[i].bytes);
                add_u64(s, "steps", rec->snapshots[i].steps);
                add_str(s, "parent", rec->snapshots[i].parent);
                add_u64(s, "pause_us", rec->snapshots[i].pause_us);
                json_object_array_add(snaps, s);
        }
        json_object_object_add(o, "snapshots", snaps);
        return o;
}

int guest_record_save(const struct guest_record *rec, const char *path, struct svemig_error *err)
{
        _cleanup_(json_object_putp) struct json_object *o = record_to_json(rec);
        _cleanup_free_ char *line = NULL;
        const char *text;
        int r;

        text = o ? json_object_to_json_string_ext(o,
                                                  JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE)
                 : NULL;
        if (!text || asprintf(&line, "%s\n", text) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory writing the record of guest %s",
                                        rec->name);
        r = write_file_atomic(path, line, strlen(line), 0640);
        if (r < 0)
                return svemig_error_set(err, -r, "cannot write the record of guest %s to %s: %s", rec->name,
                                        path, strerror(-r));
        return 0;
}

static const char *get_str(struct json_object *o, const char *key)
{
        struct json_object *v;

        return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
                       ? json_object_get_string(v)
                       : NULL;
}

static uint64_t get_u64(struct json_object *o, const char *key)
{
        struct json_object *v;

        return json_object_object_get_ex(o, key, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

int guest_record_load(const char *path, struct guest_record *rec, struct svemig_error *err)
{
        _cleanup_(json_object_putp) struct json_object *o = json_object_from_file(path);
        struct json_object *snaps, *v;
        const char *name, *state, *vls;
        int s, r;

        memset(rec, 0, sizeof(*rec));
        if (!o)
                return svemig_error_set(err, EBADMSG, "%s: cannot read it as JSON: %s", path,
                                        json_util_get_last_err() ?: "unknown error");
        name = get_str(o, "name");
        state = get_str(o, "state");
        vls = get_str(o, "vl_bits");
        s = guest_state_from_name(state);
        if (!name || s < 0 || !vls)
                return svemig_error_set(err, EBADMSG,
                                        "%s: not a guest record (name, state or vl_bits missing)", path);
        r = vqset_parse(vls, &rec->vls, err);
        if (r < 0)
                return svemig_error_prefix(err, "%s: vl_bits", path);
        rec->state = (enum guest_state)s;
        rec->vcpus = (unsigned)get_u64(o, "vcpus");
        rec->memory_bytes = get_u64(o, "memory_bytes");
        rec->cluster = json_object_object_get_ex(o, "cluster", &v) && json_object_get_boolean(v);
        rec->dirty_pages_per_step = (uint32_t)get_u64(o, "dirty_pages_per_step");
        rec->steps = get_u64(o, "steps");
        rec->vmm_pid = (pid_t)get_u64(o, "vmm_pid");
        rec->created_ns = get_u64(o, "created_ns");
        if (guest_record_set_str(&rec->name, name) < 0 ||
            guest_record_set_str(&rec->vmm_socket, get_str(o, "vmm_socket")) < 0 ||
            guest_record_set_str(&rec->reason, get_str(o, "reason")) < 0 ||
            guest_record_set_str(&rec->restored_from, get_str(o, "restored_from")) < 0 ||
            guest_record_set_str(&rec->incoming_migration, get_str(o, "incoming_migration")) < 0 ||
            guest_record_set_str(&rec->payload, get_str(o, "payload")) < 0 ||
            guest_record_set_str(&rec->cpu_regs, get_str(o, "cpu_regs")) < 0 ||
            guest_record_set_str(&rec->kernel, get_str(o, "kernel")) < 0 ||
            guest_record_set_str(&rec->initrd, get_str(o, "initrd")) < 0 ||
            guest_record_set_str(&rec->cmdline, get_str(o, "cmdline")) < 0)
                goto oom;
        if (json_object_object_get_ex(o, "snapshots", &snaps) && json_object_is_type(snaps, json_type_array))
                for (size_t i = 0; i < json_object_array_length(snaps); i++) {
                        struct json_object *sn = json_object_array_get_idx(snaps, i);
                        const char *p = get_str(sn, "path");

                        if (p &&
                            (guest_record_add_snapshot(rec, p, get_u64(sn, "created_ns"),
                                                       get_u64(sn, "bytes"), get_u64(sn, "steps")) < 0 ||
                             guest_record_set_snapshot_chain(rec, get_str(sn, "parent"),
                                                             get_u64(sn, "pause_us")) < 0))
                                goto oom;
                }
        return 0;
oom:
        guest_record_done(rec);
        return svemig_error_set(err, ENOMEM, "out of memory");
}
