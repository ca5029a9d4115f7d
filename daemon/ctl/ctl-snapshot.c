/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl snapshot, restore and cancel: the long operations, with their
 * progress, and the way to stop one half-way.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl-call.h"
#include "ctl-file.h"
#include "ctl-guest-print.h"
#include "ctl-progress.h"
#include "parse-number.h"
#include "svemig/store.h"

static void snapshot_help(void)
{
        printf("Usage: svemigctl [--socket PATH] [--json] [--quiet] snapshot NAME [PATH] [--keep N] "
               "[--stop] [--incremental]\n\n"
               "Write guest NAME to PATH, a file or a URL (http://, https://, s3://BUCKET/KEY, uploaded\n"
               "as it is written, with the [store] settings of svemigd's migrate.conf) (default: the\n"
               "snapshot directory of migrate.conf, as\n"
               "NAME-<UTC time>.svemig). A running guest is paused while it is written and runs on after\n"
               "(--stop ends it instead). The file appears whole or not at all: a failure or a cancel\n"
               "(svemigctl cancel ID, with the operation number the progress shows) leaves nothing.\n"
               "--keep N keeps the newest N snapshots of the guest in that directory (0 or none: the\n"
               "configured keep).\n"
               "--incremental writes only the pages the guest dirtied since its last checkpoint, which it\n"
               "names as its parent; a full one when there is none its VMM could read back (none yet, a\n"
               "migration since, or a file of yours outside the snapshot directory).\n");
}

int ctl_snapshot(const struct ctl_options *opts, int argc, char **argv)
{
        static const struct option longopts[] = {
                {"keep", required_argument, NULL, 'k'},  {"stop", no_argument, NULL, 's'},
                {"incremental", no_argument, NULL, 'i'}, {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},        {0},
        };
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__SnapshotRequest sreq = SVEMIG__API__SNAPSHOT_REQUEST__INIT;
        uint64_t keep;
        Svemig__Api__Response *resp = NULL;
        struct ctl_new_file file = {.fd = -1};
        bool json = opts->json;
        int c, r;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "jh", longopts, NULL)) != -1) {
                switch (c) {
                case 'k':
                        if (parse_count(optarg, UINT32_MAX, &keep) < 0)
                                return ctl_usage_error("snapshot: --keep takes a number, not '%s'", optarg);
                        sreq.keep = (uint32_t)keep;
                        break;
                case 's':
                        sreq.stop = true;
                        break;
                case 'i':
                        sreq.incremental = true;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        snapshot_help();
                        return CTL_EXIT_OK;
                default:
                        return ctl_usage_error("snapshot: unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind >= argc || argc - optind > 2)
                return ctl_usage_error("snapshot: give the guest's NAME and optionally a PATH");
        sreq.guest = argv[optind];
        /*
         * We create the file, with our own rights; svemigd writes it through the descriptor.
         * A URL goes as it is: the guest's VMM uploads to it with migrate.conf's [store] settings.
         */
        if (optind + 1 < argc && store_is_remote(argv[optind + 1])) {
                sreq.path = argv[optind + 1];
        } else if (optind + 1 < argc) {
                r = ctl_file_create("snapshot", argv[optind + 1], &file);
                if (r)
                        return r;
                sreq.path = file.path;
        }
        req.op_case = SVEMIG__API__REQUEST__OP_SNAPSHOT;
        req.snapshot = &sreq;

        r = ctl_call_progress(opts, json, "snapshot", &req, file.fd, &resp);
        if (r != CTL_EXIT_OK) {
                ctl_file_abandon(&file);
                return r;
        }
        if (resp->result_case != SVEMIG__API__RESPONSE__RESULT_SNAPSHOT) {
                fputs("svemigctl: snapshot: svemigd answered without a result\n", stderr);
                r = CTL_EXIT_FAILURE;
        } else if (file.fd >= 0 && (r = ctl_file_commit("snapshot", &file)) != 0) {
                ; /* said why */
        } else if (json) {
                const Svemig__Api__SnapshotResult *s = resp->snapshot;
                struct json_object *doc = json_object_new_object(), *pruned = json_object_new_array();

                for (size_t i = 0; i < s->n_pruned; i++)
                        json_object_array_add(pruned, json_object_new_string(s->pruned[i]));
                json_object_object_add(doc, "guest", json_object_new_string(sreq.guest));
                json_object_object_add(doc, "path", json_object_new_string(s->path));
                json_object_object_add(doc, "bytes", json_object_new_int64((int64_t)s->bytes));
                json_object_object_add(doc, "steps", json_object_new_int64((int64_t)s->steps));
                json_object_object_add(doc, "created_ns", json_object_new_int64((int64_t)s->created_ns));
                json_object_object_add(doc, "parent", json_object_new_string(s->parent));
                json_object_object_add(doc, "pause_us", json_object_new_int64((int64_t)s->pause_us));
                json_object_object_add(doc, "live", json_object_new_boolean(s->live));
                json_object_object_add(doc, "precopy_rounds", json_object_new_int64(s->precopy_rounds));
                json_object_object_add(doc, "pruned", pruned);
                r = ctl_print_json(doc);
        } else if (!opts->quiet) {
                const Svemig__Api__SnapshotResult *s = resp->snapshot;

                printf("snapshot of %s: %s (%llu bytes, at %llu steps; paused %.3f ms)\n", sreq.guest,
                       s->path, (unsigned long long)s->bytes, (unsigned long long)s->steps,
                       (double)s->pause_us / 1000);
                if (s->parent[0])
                        printf("incremental, over %s\n", s->parent);
                for (size_t i = 0; i < s->n_pruned; i++)
                        printf("removed the older %s\n", s->pruned[i]);
        }
        ctl_file_abandon(&file);
        svemig__api__response__free_unpacked(resp, NULL);
        return r;
}

static void restore_help(void)
{
        printf("Usage: svemigctl [--socket PATH] [--json] [--quiet] restore PATH [--name NAME] [--start]\n\n"
               "Restore the snapshot PATH (a file or a URL) as a new guest (NAME, default the file's name "
               "without .svemig),\n"
               "paused, or running with --start. The file's header is judged against this host first: an\n"
               "incompatible host (vector lengths, vcpu features, ID registers) is refused before anything\n"
               "else is read, with the reason, and exit code 4.\n");
}

int ctl_restore(const struct ctl_options *opts, int argc, char **argv)
{
        static const struct option longopts[] = {
                {"name", required_argument, NULL, 'n'},
                {"start", no_argument, NULL, 's'},
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__RestoreRequest rreq = SVEMIG__API__RESTORE_REQUEST__INIT;
        Svemig__Api__Response *resp = NULL;
        char path[PATH_MAX];
        bool json = opts->json;
        int c, r, fd;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "jh", longopts, NULL)) != -1) {
                switch (c) {
                case 'n':
                        rreq.name = optarg;
                        break;
                case 's':
                        rreq.start = true;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        restore_help();
                        return CTL_EXIT_OK;
                default:
                        return ctl_usage_error("restore: unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind + 1 != argc)
                return ctl_usage_error("restore: give one snapshot PATH");
        /* We open it, with our own rights; svemigd reads it through the descriptor. A URL goes as it is. */
        if (store_is_remote(argv[optind])) {
                fd = -1;
                rreq.path = argv[optind];
        } else {
                fd = ctl_file_open_read("restore", argv[optind], path);
                if (fd < 0)
                        return -fd;
                rreq.path = path;
        }
        req.op_case = SVEMIG__API__REQUEST__OP_RESTORE;
        req.restore = &rreq;

        r = ctl_call_progress(opts, json, "restore", &req, fd, &resp);
        if (fd >= 0)
                close(fd);
        if (r != CTL_EXIT_OK)
                return r;
        if (resp->result_case == SVEMIG__API__RESPONSE__RESULT_RESTORED ||
            resp->result_case == SVEMIG__API__RESPONSE__RESULT_GUEST) {
                const Svemig__Api__Guest *g = resp->result_case == SVEMIG__API__RESPONSE__RESULT_RESTORED
                                                      ? resp->restored
                                                      : resp->guest;

                if (json)
                        r = ctl_print_json(ctl_guest_json(g));
                else if (!opts->quiet)
                        ctl_guest_print(g);
        } else {
                fputs("svemigctl: restore: svemigd answered without the guest\n", stderr);
                r = CTL_EXIT_FAILURE;
        }
        svemig__api__response__free_unpacked(resp, NULL);
        return r;
}

int ctl_cancel(const struct ctl_options *opts, int argc, char **argv)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__CancelRequest creq = SVEMIG__API__CANCEL_REQUEST__INIT;
        Svemig__Api__Response *resp = NULL;
        bool json = opts->json;
        const char *id = NULL;
        unsigned long long v;
        char *end;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
                        json = true;
                else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        printf("Usage: svemigctl cancel ID\n\nCancel operation ID of svemigd (the number "
                               "its "
                               "progress shows, e.g. a snapshot's). The operation's own client is told it "
                               "was cancelled.\n");
                        return CTL_EXIT_OK;
                } else if (id)
                        return ctl_usage_error("cancel: give one operation ID");
                else
                        id = argv[i];
        }
        if (!id)
                return ctl_usage_error("cancel: give the operation ID its progress shows");
        errno = 0;
        v = strtoull(id, &end, 10);
        if (errno || end == id || *end || v == 0)
                return ctl_usage_error("cancel: '%s' is not an operation number", id);
        creq.target_case = SVEMIG__API__CANCEL_REQUEST__TARGET_OPERATION;
        creq.operation = v;
        req.op_case = SVEMIG__API__REQUEST__OP_CANCEL;
        req.cancel = &creq;
        r = ctl_call(opts, "cancel", &req, NULL, NULL, &resp);
        if (r != CTL_EXIT_OK)
                return r;
        if (json) {
                struct json_object *doc = json_object_new_object();

                json_object_object_add(doc, "operation", json_object_new_int64((int64_t)v));
                r = ctl_print_json(doc);
        } else if (!opts->quiet)
                printf("cancelling operation %llu\n", v);
        svemig__api__response__free_unpacked(resp, NULL);
        return r;
}
