/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "utf8.h"

#define LOG_LINE_MAX 2048

static int max_level = LOG_INFO;
static bool journal;

/* Whether systemd connected our stderr to the journal, or started us as a unit. */
static bool under_systemd(void)
{
        const char *stream = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (stream && sscanf(stream, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
            (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
                return true;
        return getenv("INVOCATION_ID") != NULL;
}

void log_setup(int level, bool force_stderr)
{
        max_level = level;
        journal = !force_stderr && under_systemd();
}

void log_set_max_level(int level)
{
        max_level = level;
}

bool log_to_journal(void)
{
        return journal;
}

static const char *level_name(int level)
{
        static const char *const names[] = {
                [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",     [LOG_CRIT] = "crit",
                [LOG_ERR] = "error",   [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
        };

        return level >= 0 && level < (int)ELEMENTSOF(names) ? names[level] : "?";
}

static int send_journal(int level, const struct log_ctx *ctx, const char *msg)
{
        char prio[16], *fields[7] = {0};
        struct iovec iov[9];
        size_t n = 0;
        int r = -ENOMEM;

        snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
        if (asprintf(&fields[0], "MESSAGE=%s", msg) < 0)
                fields[0] = NULL;
        if (ctx && ctx->guest && asprintf(&fields[1], "GUEST=%s", ctx->guest) < 0)
                fields[1] = NULL;
        if (ctx && ctx->peer && asprintf(&fields[2], "PEER=%s", ctx->peer) < 0)
                fields[2] = NULL;
        if (ctx && ctx->op && asprintf(&fields[3], "OP=%s", ctx->op) < 0)
                fields[3] = NULL;
        if (ctx && ctx->domain && asprintf(&fields[5], "DOMAIN=%s", ctx->domain) < 0)
                fields[5] = NULL;
        if (!fields[0])
                goto out;

        /* svemigd, or svemig-vmm: both log through here. */
        if (asprintf(&fields[4], "SYSLOG_IDENTIFIER=%s", program_invocation_short_name) < 0)
                fields[4] = NULL;
        iov[n++] = (struct iovec){prio, strlen(prio)};
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (fields[i])
                        iov[n++] = (struct iovec){fields[i], strlen(fields[i])};
        r = sd_journal_sendv(iov, (int)n);
out:
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                free(fields[i]);
        return r;
}

void log_msg(int level, const struct log_ctx *ctx, const char *fmt, ...)
{
        char raw[LOG_LINE_MAX], msg[LOG_LINE_MAX], safe[4][128];
        struct log_ctx safe_ctx;
        int saved = errno;
        va_list ap;

        if (level > max_level)
                return;

        va_start(ap, fmt);
        vsnprintf(raw, sizeof(raw), fmt, ap);
        va_end(ap);
        /* Names and reasons a peer, a stream or a client wrote: one line of text, whatever they hold. */
        utf8_escape(raw, strlen(raw), msg, sizeof(msg));
        if (ctx) {
                const char *v[] = {ctx->guest, ctx->peer, ctx->op, ctx->domain};

                for (size_t i = 0; i < ELEMENTSOF(v); i++)
                        if (v[i])
                                v[i] = utf8_escape(v[i], strlen(v[i]), safe[i], sizeof(safe[i]));
                safe_ctx = (struct log_ctx){.guest = v[0], .peer = v[1], .op = v[2], .domain = v[3]};
                ctx = &safe_ctx;
        }

        /* If the journal is gone (or never was), stderr still reaches someone. */
        if (!journal || send_journal(level, ctx, msg) < 0) {
                char fields[256] = "";
                size_t off = 0;

                if (ctx) {
                        const char *names[] = {"op", "guest", "peer", "domain"};
                        const char *values[] = {ctx->op, ctx->guest, ctx->peer, ctx->domain};

                        for (size_t i = 0; i < ELEMENTSOF(names) && off < sizeof(fields); i++)
                                if (values[i])
                                        off += (size_t)snprintf(fields + off, sizeof(fields) - off,
                                                                "%s%s=%s", off ? " " : " [", names[i],
                                                                values[i]);
                        if (off > 0 && off < sizeof(fields))
                                snprintf(fields + off, sizeof(fields) - off, "]");
                }
                fprintf(stderr, "%s: %s: %s%s\n", program_invocation_short_name, level_name(level), msg,
                        fields);
        }
        errno = saved;
}
