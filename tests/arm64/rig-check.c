/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>

#include "rig-check.h"

static unsigned n_pass, n_fail;

bool rig_check(bool ok, const char *fmt, ...)
{
        va_list ap;

        printf("%s ", ok ? "PASS" : "FAIL");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        ok ? n_pass++ : n_fail++;
        return ok;
}

unsigned rig_failures(void)
{
        return n_fail;
}

int rig_summary(void)
{
        printf("%u passed, %u failed\n", n_pass, n_fail);
        return n_fail || !n_pass ? 1 : 0;
}
