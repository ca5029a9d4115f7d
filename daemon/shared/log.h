/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svemigd's log. Under systemd (JOURNAL_STREAM naming our stderr, or
 * INVOCATION_ID set) messages go to the journal with structured fields
 * GUEST=, PEER=, OP= and DOMAIN= (a libvirt domain), so `journalctl -u svemigd OP=snapshot GUEST=vm1`
 * finds them; otherwise, or when forced (--foreground), one line each on
 * stderr.
 */

#include <stdbool.h>
#include <syslog.h>

/* What a message is about; any field may be NULL. */
struct log_ctx {
        const char *guest;
        const char *peer;
        const char *op;
        const char *domain;
};

#define LOG_CTX(...) (&(const struct log_ctx){__VA_ARGS__})

void log_setup(int max_level, bool force_stderr);
void log_set_max_level(int level);
bool log_to_journal(void);

void log_msg(int level, const struct log_ctx *ctx, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define log_error(...)   log_msg(LOG_ERR, NULL, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, NULL, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_NOTICE, NULL, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_DEBUG, NULL, __VA_ARGS__)
