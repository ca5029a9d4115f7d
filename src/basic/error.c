/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svemig/error.h"

int svemig_error_setv(struct svemig_error *err, int code, const char *fmt, va_list ap)
{
        code = abs(code);
        if (err) {
                err->code = code;
                vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        }
        return -code;
}

int svemig_error_set(struct svemig_error *err, int code, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = svemig_error_setv(err, code, fmt, ap);
        va_end(ap);
        return r;
}

int svemig_error_prefix(struct svemig_error *err, const char *fmt, ...)
{
        char prefix[SVEMIG_ERROR_MSG_MAX], old[SVEMIG_ERROR_MSG_MAX];
        va_list ap;

        if (!err)
                return -EIO;
        if (err->code == 0)
                err->code = EIO;

        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);

        memcpy(old, err->msg, sizeof(old));
        snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old[0] ? old : strerror(err->code));
        return -err->code;
}

void svemig_error_clear(struct svemig_error *err)
{
        if (err) {
                err->code = 0;
                err->msg[0] = '\0';
        }
}

const char *svemig_error_str(const struct svemig_error *err, int code)
{
        if (err && err->msg[0])
                return err->msg;
        return strerror(abs(code));
}
