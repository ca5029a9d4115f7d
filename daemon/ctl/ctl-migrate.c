/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl migrate GUEST PEER [--check]: moves a running guest to a peer of
 * the daemon's cluster (or only asks the peer whether it could take it),
 * with the migration's progress on stderr and its report at the end.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ctl-call.h"
#include "ctl-guest-print.h"
#include "macro.h"
#include "parse-number.h"
#include "svemig/migrate.h"

struct mig_progress {
        bool off, tty, drawn;
        char phase[32];
        unsigned round;
};

static void human(double v, const char *unit, char *buf, size_t len)
{
        static const char *const prefix[] = {"", "Ki", "Mi", "Gi", "Ti"};
        unsigned u = 0;

        while (v >= 1024 && u < 4) {
                v /= 1024;
                u++;
        }
        snprintf(buf, len, u ? "%.1f %s%s" : "%.0f %s%s", v, prefix[u], unit);
}

/* One line per phase and per memory pass; redrawn in place on a terminal. */
static void show(const Svemig__Api__Progress *pr, void *userdata)
{
        struct mig_progress *p = userdata;
        const char *phase = pr->phase && pr->phase[0] ? pr->phase : "working";
        char sent[32], rate[32];

        if (p->off)
                return;
        if (!p->tty && strcmp(p->phase, phase) == 0 && p->round == pr->round)
                return;
        snprintf(p->phase, sizeof(p->phase), "%s", phase);
        p->round = pr->round;
        human((double)pr->done, "B", sent, sizeof(sent));
        human((double)pr->dirty_rate, "B/s", rate, sizeof(rate));
        fprintf(stderr, "%smigrate: %-9s pass %u, %s sent, dirtying %s, expected downtime %.1f ms%s%s",
                p->tty ? "\r\033[K" : "", phase, pr->round, sent, rate, pr->expected_downtime_ns / 1e6,
                pr->throttle_pct ? ", throttled" : "", p->tty ? "" : "\n");
        if (p->tty) {
                fflush(stderr);
                p->drawn = true;
        }
}

static void help(void)
{
        printf("Usage: svemigctl [--socket PATH] [--json] migrate GUEST PEER [--check] [--max-bandwidth "
               "RATE]\n"
               "                 [--downtime MS] [--compression auto|none|lz4] [--channels N]\n\n"
               "Move guest GUEST, running or paused, to PEER (a [peer NAME] of migrate.conf) while it\n"
               "runs: pre-copy of its memory, then a short pause for the last pages and its vcpus, then\n"
               "the handoff. Progress goes to stderr; the report (total time, downtime, bytes, passes)\n"
               "to stdout. --check only asks PEER whether it could take the guest; nothing moves.\n"
               "Exit 4 when PEER refuses the guest (its VL set, registers, ID registers, memory), with\n"
               "the reason; 1 on other failures. Either way the guest runs on here as before.\n\n"
               "  --max-bandwidth RATE  bytes per second on the wire, with K, M or G (binary): leave the\n"
               "                        link to other traffic (default: unlimited)\n"
               "  --downtime MS         the pause to aim for at stop-and-copy (default 10); the guest is\n"
               "                        throttled until the rest fits, within 300 ms after 30 passes\n"
               "  --compression MODE    auto (default: LZ4 only where it moves memory faster on this\n"
               "                        link, measured as it goes), none, or lz4\n"
               "  --channels N          memory channels: extra connections to PEER's port that carry\n"
               "                        memory in parallel, 0 to %u; 0 = one connection\n"
               "                        (default: [cluster] migration-channels, 4; none with\n"
               "                        --max-bandwidth)\n",
               MIGRATE_CHANNELS_MAX);
}

static void add_phases(struct json_object *doc, const Svemig__Api__MigrateReport *rep)
{
        const struct {
                const char *name;
                uint64_t ns;
        } phases[] = {
                {"setup_ns", rep->setup_ns},           {"precopy_ns", rep->precopy_ns},
                {"pause_copy_ns", rep->pause_copy_ns}, {"load_ns", rep->load_ns},
                {"commit_ns", rep->commit_ns},
        };
        struct json_object *o = json_object_new_object();

        for (size_t i = 0; i < ELEMENTSOF(phases); i++)
                json_object_object_add(o, phases[i].name, json_object_new_int64((int64_t)phases[i].ns));
        json_object_object_add(doc, "phases", o);
}

static int print_report(const Svemig__Api__MigrateReport *rep, bool json)
{
        char bytes[32], link[32];

        if (json) {
                struct json_object *doc = json_object_new_object();

                json_object_object_add(doc, "guest", json_object_new_string(rep->guest ? rep->guest : ""));
                json_object_object_add(doc, "peer", json_object_new_string(rep->peer ? rep->peer : ""));
                json_object_object_add(doc, "check", json_object_new_boolean(rep->check));
                if (!rep->check) {
                        json_object_object_add(doc, "total_ns",
                                               json_object_new_int64((int64_t)rep->total_ns));
                        json_object_object_add(doc, "downtime_ns",
                                               json_object_new_int64((int64_t)rep->downtime_ns));
                        json_object_object_add(doc, "bytes_sent",
                                               json_object_new_int64((int64_t)rep->bytes_sent));
                        json_object_object_add(doc, "stream_bytes",
                                               json_object_new_int64((int64_t)rep->stream_bytes));
                        json_object_object_add(doc, "rounds", json_object_new_int((int)rep->rounds));
                        json_object_object_add(doc, "pages_sent",
                                               json_object_new_int64((int64_t)rep->pages_sent));
                        json_object_object_add(doc, "zero_pages",
                                               json_object_new_int64((int64_t)rep->zero_pages));
                        json_object_object_add(doc, "throttle_pct",
                                               json_object_new_int((int)rep->throttle_pct));
                        json_object_object_add(doc, "link_bps",
                                               json_object_new_int64((int64_t)rep->link_bps));
                        json_object_object_add(
                                doc, "compression",
                                json_object_new_string(rep->compression ? rep->compression : ""));
                        json_object_object_add(doc, "steps", json_object_new_int64((int64_t)rep->steps));
                        add_phases(doc, rep);
                }
                return ctl_print_json(doc);
        }
        if (rep->check) {
                printf("%s can take guest %s\n", rep->peer, rep->guest);
                return CTL_EXIT_OK;
        }
        human((double)rep->bytes_sent, "B", bytes, sizeof(bytes));
        human((double)rep->link_bps, "B/s", link, sizeof(link));
        printf("guest %s migrated to %s\n"
               "  total time   %.1f ms\n"
               "  downtime     %.2f ms\n"
               "  bytes sent   %s (%llu pages, %llu of them zero; compression %s)\n"
               "  passes       %u%s\n"
               "  link         %s\n"
               "  phases       setup %.1f ms, pre-copy %.1f ms; paused: copy %.2f ms, destination "
               "loads %.2f ms, commit %.2f ms\n",
               rep->guest, rep->peer, rep->total_ns / 1e6, rep->downtime_ns / 1e6, bytes,
               (unsigned long long)rep->pages_sent, (unsigned long long)rep->zero_pages,
               rep->compression && rep->compression[0] ? rep->compression : "none", rep->rounds,
               rep->throttle_pct ? " (vcpus throttled)" : "", link, rep->setup_ns / 1e6,
               rep->precopy_ns / 1e6, rep->pause_copy_ns / 1e6, rep->load_ns / 1e6, rep->commit_ns / 1e6);
        return CTL_EXIT_OK;
}

int ctl_migrate(const struct ctl_options *opts, int argc, char **argv)
{
        static const struct option longopts[] = {
                {"check", no_argument, NULL, 'c'},          {"max-bandwidth", required_argument, NULL, 'b'},
                {"downtime", required_argument, NULL, 'd'}, {"compression", required_argument, NULL, 'z'},
                {"channels", required_argument, NULL, 'C'}, {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},           {0},
        };
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__MigrateRequest m = SVEMIG__API__MIGRATE_REQUEST__INIT;
        Svemig__Api__Response *resp = NULL;
        struct mig_progress p = {0};
        bool json = opts->json;
        uint64_t v;
        int c, r;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "cjh", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        m.check = true;
                        break;
                case 'b':
                        if (parse_size(optarg, &m.max_bandwidth) < 0 || m.max_bandwidth == 0)
                                return ctl_usage_error("migrate: --max-bandwidth takes bytes per second "
                                                       "such as 100M, not '%s'",
                                                       optarg);
                        break;
                case 'd':
                        if (parse_count(optarg, 60000, &v) < 0 || v == 0)
                                return ctl_usage_error(
                                        "migrate: --downtime takes milliseconds from 1 to 60000, not '%s'",
                                        optarg);
                        m.downtime_ms = (uint32_t)v;
                        break;
                case 'z':
                        if (migrate_compression_parse(optarg, NULL) < 0)
                                return ctl_usage_error(
                                        "migrate: --compression takes auto, none or lz4, not '%s'", optarg);
                        m.compression = optarg;
                        break;
                case 'C':
                        if (parse_count(optarg, MIGRATE_CHANNELS_MAX, &v) < 0)
                                return ctl_usage_error("migrate: --channels takes a number from 0 (one "
                                                       "connection) to %u, not '%s'",
                                                       MIGRATE_CHANNELS_MAX, optarg);
                        m.channels = (uint32_t)v;
                        m.channels_set = true;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        help();
                        return CTL_EXIT_OK;
                default:
                        return ctl_usage_error("migrate: unknown option '%s'", argv[optind - 1]);
                }
        }
        if (argc - optind != 2)
                return ctl_usage_error("migrate: give the GUEST and the PEER to move it to");
        m.guest = argv[optind];
        m.peer = argv[optind + 1];
        req.op_case = SVEMIG__API__REQUEST__OP_MIGRATE;
        req.migrate = &m;

        p.off = json || opts->quiet || m.check;
        p.tty = isatty(STDERR_FILENO);
        r = ctl_call(opts, m.check ? "migrate --check" : "migrate", &req, show, &p, &resp);
        if (p.drawn)
                fputc('\n', stderr);
        if (r != CTL_EXIT_OK)
                return r;
        if (resp->result_case != SVEMIG__API__RESPONSE__RESULT_MIGRATE) {
                fputs("svemigctl: migrate: svemigd answered without a report\n", stderr);
                r = CTL_EXIT_FAILURE;
        } else if (json || !opts->quiet)
                r = print_report(resp->migrate, json);
        svemig__api__response__free_unpacked(resp, NULL);
        return r;
}
