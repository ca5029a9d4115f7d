/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemig's libvirt QEMU hook, installed as /etc/libvirt/hooks/qemu.d/svemig.
 * libvirtd runs it as
 *
 *     svemig DOMAIN OPERATION SUB-OPERATION EXTRA   (the domain XML on stdin)
 *
 * and a non-zero exit of "prepare begin", "migrate begin" or "restore begin"
 * refuses the operation, virsh showing what we print on stderr. We read the
 * domain's <cpu> (libvirt-cpu.h) and ask the local svemigd whether this host
 * can present its SVE lengths (LibvirtHookRequest: svemigd judges, logs the
 * decision with DOMAIN= and answers). Every other operation is left alone.
 * We never call libvirt: libvirtd waits for us, and would deadlock.
 *
 * When svemigd cannot be asked in time, [libvirt] daemon-down decides:
 * refuse (the default) or allow.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "api-client.h"
#include "conf.h"
#include "libvirt-cpu.h"
#include "macro.h"

enum hook_exit {
        HOOK_ALLOW = 0,
        HOOK_REFUSE = 1,
        HOOK_USAGE = 2,
};

#define XML_MAX (16u << 20)

static const char *const checked_ops[] = {"prepare", "migrate", "restore"};

/* What the alarm's handler needs: set once before it is armed. */
static const char *alarm_message;
static int alarm_exit;

static void on_alarm(int sig)
{
        (void)sig;
        if (write(STDERR_FILENO, alarm_message, strlen(alarm_message)) < 0) {
                /* Nothing left to tell anyone. */
        }
        _exit(alarm_exit);
}

static bool is_checked(const char *op, const char *subop)
{
        if (strcmp(subop, "begin") != 0)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(checked_ops); i++)
                if (strcmp(op, checked_ops[i]) == 0)
                        return true;
        return false;
}

/* All of stdin: libvirt writes the whole XML and closes it. */
static int read_stdin(char **out, size_t *len)
{
        size_t size = 0, cap = 0;
        char *buf = NULL;

        for (;;) {
                ssize_t n;

                if (size + 4096 > cap) {
                        char *b;

                        cap = cap ? cap * 2 : 65536;
                        if (cap > XML_MAX || !(b = realloc(buf, cap))) {
                                free(buf);
                                return cap > XML_MAX ? -EFBIG : -ENOMEM;
                        }
                        buf = b;
                }
                n = read(STDIN_FILENO, buf + size, cap - size);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        free(buf);
                        return -errno;
                }
                if (n == 0)
                        break;
                size += (size_t)n;
        }
        *out = buf;
        *len = size;
        return 0;
}

/* Logged where svemigd would have logged it, as svemigd cannot. */
static void journal_note(int level, const char *domain, const char *msg)
{
        sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", level, "DOMAIN=%s", domain, "OP=libvirt-hook",
                        "SYSLOG_IDENTIFIER=svemig-libvirt-hook", NULL);
}

/* svemigd could not answer: the configured policy, said plainly. */
static int daemon_down(const struct migrate_conf *conf, const char *domain, const char *op,
                       const char *reason)
{
        char msg[1024];
        const char *file = conf->path ? conf->path : SVEMIG_DEFAULT_CONFIG;

        if (conf->libvirt_daemon_down_allow)
                snprintf(msg, sizeof(msg),
                         "svemig: cannot ask svemigd about domain %s (%s): allowing libvirt's %s unchecked, "
                         "as [libvirt] daemon-down = allow in %s\n",
                         domain, reason, op, file);
        else
                snprintf(msg, sizeof(msg),
                         "svemig: cannot ask svemigd about domain %s (%s): refusing libvirt's %s, as "
                         "[libvirt] daemon-down = refuse in %s; start svemigd, or set daemon-down = allow "
                         "to let domains start unchecked while it is down\n",
                         domain, reason, op, file);
        fputs(msg, stderr);
        journal_note(conf->libvirt_daemon_down_allow ? LOG_WARNING : LOG_ERR, domain, msg);
        return conf->libvirt_daemon_down_allow ? HOOK_ALLOW : HOOK_REFUSE;
}

static int ask(const struct migrate_conf *conf, const char *domain, const char *op, const char *subop,
               const struct libvirt_cpu *cpu)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__LibvirtHookRequest rq = SVEMIG__API__LIBVIRT_HOOK_REQUEST__INIT;
        Svemig__Api__LibvirtCpu pcpu;
        Svemig__Api__Response *resp = NULL;
        struct api_client *client = NULL;
        uint32_t bits[2 * LIBVIRT_CPU_VQ_MAX];
        struct svemig_error err = {0};
        int r, ret;

        libvirt_cpu_to_proto(cpu, &pcpu, bits);
        rq.domain = (char *)domain;
        rq.operation = (char *)op;
        rq.sub_operation = (char *)subop;
        rq.cpu = &pcpu;
        req.op_case = SVEMIG__API__REQUEST__OP_LIBVIRT_HOOK;
        req.libvirt_hook = &rq;

        r = api_client_connect_timeout(NULL, conf->libvirt_hook_timeout_ms, &client, &err);
        if (r >= 0)
                r = api_client_call(client, &req, NULL, NULL, &resp, &err);
        api_client_free(client);
        if (r < 0)
                return daemon_down(conf, domain, op, svemig_error_str(&err, r));
        if (resp->status && resp->status->code != 0) {
                /* An older svemigd, or a request it found wrong: it could not judge. */
                ret = daemon_down(conf, domain, op, resp->status->message);
        } else if (resp->result_case != SVEMIG__API__RESPONSE__RESULT_LIBVIRT_HOOK) {
                ret = daemon_down(conf, domain, op, "svemigd answered something else");
        } else {
                ret = resp->libvirt_hook->allow ? HOOK_ALLOW : HOOK_REFUSE;
                if (ret == HOOK_REFUSE)
                        fprintf(stderr, "%s\n", resp->libvirt_hook->message);
        }
        svemig__api__response__free_unpacked(resp, NULL);
        return ret;
}

static void usage(void)
{
        fprintf(stderr,
                "Usage: svemig-libvirt-hook DOMAIN OPERATION SUB-OPERATION EXTRA < DOMAIN.xml\n\n"
                "svemig's libvirt QEMU hook: install it as /etc/libvirt/hooks/qemu.d/svemig. libvirtd runs "
                "it;\nit refuses 'prepare begin', 'migrate begin' and 'restore begin' of a domain whose "
                "SVE\nvector lengths this host cannot present, as svemigd judges them.\n"
                "Environment: SVEMIG_SOCKET (svemigd's socket), SVEMIG_CONFIG (migrate.conf).\n");
}

int main(int argc, char **argv)
{
        _cleanup_free_ char *xml = NULL, *name = NULL;
        struct svemig_error err = {0};
        struct migrate_conf conf;
        struct libvirt_cpu cpu;
        static char alarm_buf[1024];
        const char *domain, *op, *subop;
        size_t len = 0;
        int r, ret;

        if (argc < 4 || argc > 5) {
                usage();
                return HOOK_USAGE;
        }
        domain = argv[1];
        op = argv[2];
        subop = argv[3];
        /* libvirt writes the XML whatever we do with it; read it so it never meets a closed pipe. */
        r = read_stdin(&xml, &len);
        if (!is_checked(op, subop))
                return HOOK_ALLOW;
        if (r < 0) {
                fprintf(stderr, "svemig: cannot read domain %s's XML on stdin: %s\n", domain, strerror(-r));
                return HOOK_REFUSE;
        }

        r = migrate_conf_load(&conf, getenv("SVEMIG_CONFIG"), &err);
        if (r < 0) {
                fprintf(stderr,
                        "svemig: cannot judge domain %s: %s; fix the file (svemigd --check-config)\n",
                        domain, svemig_error_str(&err, r));
                return HOOK_REFUSE;
        }
        /*
         * Each socket step is bounded by hook-timeout; this bounds them all
         * together, so libvirt never waits on us for long.
         */
        snprintf(alarm_buf, sizeof(alarm_buf),
                 "svemig: svemigd did not answer about domain %s within %u ms: %s libvirt's %s "
                 "([libvirt] daemon-down = %s)\n",
                 domain, 2 * conf.libvirt_hook_timeout_ms,
                 conf.libvirt_daemon_down_allow ? "allowing" : "refusing", op,
                 conf.libvirt_daemon_down_allow ? "allow" : "refuse");
        alarm_message = alarm_buf;
        alarm_exit = conf.libvirt_daemon_down_allow ? HOOK_ALLOW : HOOK_REFUSE;
        signal(SIGALRM, on_alarm);
        alarm((2 * conf.libvirt_hook_timeout_ms + 999) / 1000);

        r = libvirt_cpu_parse(xml, len, &name, &cpu, &err);
        if (r < 0) {
                fprintf(stderr, "svemig: cannot judge domain %s: %s\n", domain, svemig_error_str(&err, r));
                ret = HOOK_REFUSE;
        } else {
                ret = ask(&conf, domain, op, subop, &cpu);
        }
        migrate_conf_done(&conf);
        return ret;
}
