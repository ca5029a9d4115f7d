/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-json.h"
#include "ctl.h"
#include "utf8.h"

/*
 * Strings a stream or a peer wrote that are not UTF-8 would make the document
 * invalid JSON (json-c copies their bytes): they are escaped as "\xNN" text.
 */
static void make_utf8(struct json_object *o)
{
        switch (json_object_get_type(o)) {
        case json_type_string: {
                const char *s = json_object_get_string(o);
                size_t len = (size_t)json_object_get_string_len(o);

                if (!utf8_valid(s, len)) {
                        char *safe = malloc(4 * len + 1);

                        if (safe) {
                                json_object_set_string(o, utf8_escape(s, len, safe, 4 * len + 1));
                                free(safe);
                        }
                }
                break;
        }
        case json_type_array:
                for (size_t i = 0; i < json_object_array_length(o); i++)
                        make_utf8(json_object_array_get_idx(o, i));
                break;
        case json_type_object: {
                json_object_object_foreach(o, key, value)
                {
                        (void)key;
                        make_utf8(value);
                }
                break;
        }
        default:
                break;
        }
}

int ctl_print_json(struct json_object *doc)
{
        make_utf8(doc);
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
