/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-regs.h"
#include "macro.h"

#define ITEM_MAX 40 /* "0x" + 16 + "=0x" + 16 + "," */

int cpu_regs_format(const struct cpubase_reg *regs, size_t n, char **out)
{
        char *s = malloc(n * ITEM_MAX + 1);
        size_t len = 0;

        if (!s)
                return -ENOMEM;
        s[0] = '\0';
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(s + len, ITEM_MAX + 1, "%s0x%016" PRIx64 "=0x%016" PRIx64,
                                        i ? "," : "", regs[i].id, regs[i].value);
        *out = s;
        return 0;
}

static int parse_item(const char *item, struct cpubase_reg *reg, struct svemig_error *err)
{
        char *end;

        errno = 0;
        reg->id = strtoull(item, &end, 16);
        if (errno || end == item || *end != '=')
                return svemig_error_set(err, EINVAL, "CPU registers: '%s' is not 0xID=0xVALUE", item);
        item = end + 1;
        reg->value = strtoull(item, &end, 16);
        if (errno || end == item || *end)
                return svemig_error_set(err, EINVAL, "CPU registers: '%s' is not a hex value", item);
        reg->writable = 0;
        return 0;
}

int cpu_regs_parse(const char *text, struct cpubase_reg **out, size_t *n_out, struct svemig_error *err)
{
        _cleanup_free_ char *copy = strdup(text);
        _cleanup_free_ struct cpubase_reg *regs = NULL;
        size_t n = 1;
        char *save = NULL;
        int r;

        if (!copy)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (const char *p = text; *p; p++)
                n += *p == ',';
        regs = calloc(n, sizeof(*regs));
        if (!regs)
                return svemig_error_set(err, ENOMEM, "out of memory");
        n = 0;
        for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                r = parse_item(item, &regs[n], err);
                if (r < 0)
                        return r;
                n++;
        }
        *out = regs;
        regs = NULL;
        *n_out = n;
        return 0;
}
