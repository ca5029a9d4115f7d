/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* svemigctl host-info: what the daemon's host offers guests. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl-call.h"
#include "ctl-json.h"
#include "macro.h"
#include "svemig/hv.h"
#include "svemig/idreg.h"
#include "svemig/vqset.h"

/* {"0x<id>": "0x<value>"}: 64-bit numbers as strings, as JSON readers lose their low bits. */
static struct json_object *json_id_regs(const Svemig__Api__HostInfo *h)
{
        struct json_object *o = json_object_new_object();

        for (size_t i = 0; i < h->n_id_regs; i++) {
                uint64_t v = 0;
                char key[24], val[24];

                if (h->id_regs[i]->value.len > sizeof(v))
                        continue;
                memcpy(&v, h->id_regs[i]->value.data, h->id_regs[i]->value.len);
                snprintf(key, sizeof(key), "0x%016" PRIx64, h->id_regs[i]->id);
                snprintf(val, sizeof(val), "0x%016" PRIx64, v);
                json_object_object_add(o, key, json_object_new_string(val));
        }
        return o;
}

/* The writable bits of the feature ID registers that have any, or null when the kernel has no masks. */
static struct json_object *json_id_writable(const Svemig__Api__HostInfo *h)
{
        struct json_object *o;

        if (h->n_id_writable != HV_ID_MASKS_N)
                return NULL;
        o = json_object_new_object();
        for (unsigned i = 0; i < HV_ID_MASKS_N; i++) {
                char key[24], val[24];

                if (!h->id_writable[i])
                        continue;
                snprintf(key, sizeof(key), "0x%016" PRIx64, idreg_mask_id(i));
                snprintf(val, sizeof(val), "0x%016" PRIx64, h->id_writable[i]);
                json_object_object_add(o, key, json_object_new_string(val));
        }
        return o;
}

static int print_json(const Svemig__Api__HostInfo *h)
{
        struct json_object *root = json_object_new_object();

        json_object_object_add(root, "backend", json_object_new_string(h->backend));
        json_object_object_add(root, "kernel", json_object_new_string(h->kernel));
        json_object_object_add(root, "host_name", json_object_new_string(h->host_name));
        json_object_object_add(root, "sve", json_object_new_boolean(h->sve));
        json_object_object_add(root, "vl_bits", ctl_json_u32s(h->vl_bits, h->n_vl_bits));
        json_object_object_add(root, "max_vl_bits", json_object_new_int64(h->max_vl_bits));
        json_object_object_add(root, "cpus", json_object_new_int64(h->cpus));
        json_object_object_add(root, "max_vcpus", json_object_new_int64(h->max_vcpus));
        json_object_object_add(root, "ipa_bits", json_object_new_int64(h->ipa_bits));
        json_object_object_add(root, "daemon_version", json_object_new_string(h->daemon_version));
        json_object_object_add(root, "id_regs", json_id_regs(h));
        json_object_object_add(root, "id_writable", json_id_writable(h));
        return ctl_print_json(root);
}

static int print_human(const Svemig__Api__HostInfo *h)
{
        printf("host:            %s\n", h->host_name);
        printf("backend:         %s\n", h->backend);
        printf("kernel:          %s\n", h->kernel);
        printf("cpus:            %u\n", h->cpus);
        if (!h->sve || h->n_vl_bits == 0) {
                puts("SVE:             no (guests get FPSIMD only)");
        } else {
                fputs("host VLS:        ", stdout);
                for (size_t i = 0; i < h->n_vl_bits; i++)
                        printf("%s%u", i ? "," : "", h->vl_bits[i]);
                puts(" bits");
                printf("virtualisable:   up to %u bits\n", h->max_vl_bits);
        }
        printf("max vcpus:       %u\n", h->max_vcpus);
        printf("IPA bits:        %u\n", h->ipa_bits);
        printf("ID registers:    %zu, %s\n", h->n_id_regs,
               h->n_id_writable == HV_ID_MASKS_N ? "some writable before a vcpu runs (Linux 6.7+)"
                                                 : "none writable (the kernel has no writable masks)");
        printf("svemigd:         %s\n", h->daemon_version);
        return CTL_EXIT_OK;
}

static void help(void)
{
        printf("Usage: svemigctl [--socket PATH] [--json] host-info\n\n"
               "Show what the daemon's host offers guests: the hypervisor backend and kernel, the SVE\n"
               "vector lengths a new vcpu gets (the host VLS) and the largest, the CPUs, and the ID\n"
               "registers a guest sees with those a VMM may write (the CPU baseline's inputs: give the\n"
               "--json output of each host to 'svemigctl negotiate').\n\n"
               "  -j, --json  print one JSON object\n"
               "  -h, --help  this text\n");
}

int ctl_host_info(const struct ctl_options *opts, int argc, char **argv)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__HostInfoRequest hreq = SVEMIG__API__HOST_INFO_REQUEST__INIT;
        Svemig__Api__Response *resp = NULL;
        bool json = opts->json;
        int r;

        r = ctl_parse_json_help("host-info", argc, argv, help, &json);
        if (r >= 0)
                return r;
        if (optind < argc)
                return ctl_usage_error("host-info: takes no arguments");

        req.op_case = SVEMIG__API__REQUEST__OP_HOST_INFO;
        req.host_info = &hreq;
        r = ctl_call(opts, "host-info", &req, NULL, NULL, &resp);
        if (r != CTL_EXIT_OK)
                return r;
        if (resp->result_case != SVEMIG__API__RESPONSE__RESULT_HOST_INFO) {
                fputs("svemigctl: host-info: svemigd answered without host information\n", stderr);
                r = CTL_EXIT_FAILURE;
        } else
                r = json ? print_json(resp->host_info) : print_human(resp->host_info);
        svemig__api__response__free_unpacked(resp, NULL);
        return r;
}
