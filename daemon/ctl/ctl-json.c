/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "ctl-json.h"
#include "ctl.h"

int ctl_print_json(struct json_object *doc)
{
        const char *text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
                                                                       JSON_C_TO_STRING_NOSLASHESCAPE);
        int r = CTL_EXIT_OK;

        if (text)
                puts(text);
        else {
                fputs("svemigctl: out of memory formatting JSON\n", stderr);
                r = CTL_EXIT_FAILURE;
        }
        json_object_put(doc);
        return r;
}

struct json_object *ctl_json_vq_bits(const vqset_t *s)
{
        struct json_object *a = json_object_new_array();

        VQSET_FOREACH (vq, s)
                json_object_array_add(a, json_object_new_int((int32_t)vq_to_bits(vq)));
        return a;
}

struct json_object *ctl_json_u32s(const uint32_t *v, size_t n)
{
        struct json_object *a = json_object_new_array();

        for (size_t i = 0; i < n; i++)
                json_object_array_add(a, json_object_new_int64(v[i]));
        return a;
}
