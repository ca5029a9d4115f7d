/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl guest create|start|pause|resume|run|stop|delete|show|list: the
 * guests of the daemon's host, each running in its own VMM.
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
#include "macro.h"
#include "parse-number.h"
#include "svemig/guest.h"
#include "svemig/vqset.h"

static void help(void)
{
        printf("Usage: svemigctl [--socket PATH] [--json] [--quiet] guest COMMAND ...\n\n"
               "  create NAME --vcpus N --memory SIZE [--vl SET|cluster] [--cpu cluster|host]\n"
               "         [--dirty-rate PAGES | --payload IMAGE] [--start]\n"
               "      a new guest running the sim workload in its own VMM. SIZE takes K, M, G suffixes.\n"
               "      --vl: its vector lengths (\"128,256\": this host must present exactly that set);\n"
               "      \"cluster\" the set every host of the cluster can present (negotiated with the peers "
               "up now);\n"
               "      \"none\" no SVE; default this host's full set. --cpu: the ID registers it shows:\n"
               "      \"cluster\" the cluster's CPU baseline, which every host up now can present (the\n"
               "      default with --vl cluster; docs/cpu-baseline.md), \"host\" this host's own (the\n"
               "      default otherwise). --dirty-rate: pages each vcpu writes\n"
               "      per workload step. --payload: run a bare aarch64 image instead (loaded at IPA 0,\n"
               "      entered at 0x800 at EL1; tests/arm64/payloads/); show lists what it reported\n"
               "      by MMIO writes, and whether it finished.\n"
               "  create NAME --kernel IMAGE [--initrd FILE] [--cmdline TEXT] --vcpus N --memory SIZE\n"
               "         [--vl SET|cluster] [--start]\n"
               "      a Linux guest (kvm backend): IMAGE is an arm64 Image or Debian's vmlinuz; its\n"
               "      console is DIR/console.log in the guest's directory (cmdline default:\n"
               "      console=ttyAMA0).\n"
               "  start NAME     run it (a stopped or dead guest boots again from its configuration)\n"
               "  pause NAME     stop its vcpus; resume NAME runs them on\n"
               "  run NAME --steps N   run exactly N workload steps per vcpu, then leave it paused\n"
               "  stop NAME      end its VMM (its memory goes; the record and snapshots stay)\n"
               "  delete NAME [--force]  remove the record and the snapshots svemigd named;\n"
               "                 --force stops a guest whose VMM still runs first\n"
               "  show NAME [--digest]  state, VL set, vcpus, memory, steps, dirty rate, VMM, snapshots;\n"
               "                 --digest adds a hash of its registers and memory (not while running)\n"
               "  list           every guest on record\n");
}

/* A request's answer: the guest for a person or as JSON. */
static int print_guest_response(Svemig__Api__Response *resp, bool json, const char *what)
{
        const Svemig__Api__Guest *g = resp->result_case == SVEMIG__API__RESPONSE__RESULT_GUEST ? resp->guest
                                      : resp->result_case == SVEMIG__API__RESPONSE__RESULT_RESTORED
                                              ? resp->restored
                                              : NULL;

        if (!g) {
                if (json)
                        return ctl_print_json(json_object_new_object());
                return CTL_EXIT_OK;
        }
        if (json)
                return ctl_print_json(ctl_guest_json(g));
        ctl_guest_print(g);
        return CTL_EXIT_OK;
}

static int print_answer(const struct ctl_options *opts, bool json, const char *what,
                        Svemig__Api__Response *resp)
{
        int r;

        /* --quiet: a change's exit code says it all; a question (show) is still answered. */
        r = json || !opts->quiet || strcmp(what, "guest show") == 0 ? print_guest_response(resp, json, what)
                                                                    : CTL_EXIT_OK;
        svemig__api__response__free_unpacked(resp, NULL);
        return r;
}

static int call_and_print(const struct ctl_options *opts, bool json, const char *what,
                          Svemig__Api__Request *req, bool progress, int fd)
{
        Svemig__Api__Response *resp = NULL;
        int r;

        r = progress ? ctl_call_progress(opts, json, what, req, fd, &resp)
                     : ctl_call_fd(opts, what, req, fd, NULL, NULL, &resp);
        return r != CTL_EXIT_OK ? r : print_answer(opts, json, what, resp);
}

static int call_and_print_fds(const struct ctl_options *opts, bool json, const char *what,
                              Svemig__Api__Request *req, const int *fds, unsigned n_fds)
{
        Svemig__Api__Response *resp = NULL;
        int r = ctl_call_fds(opts, what, req, fds, n_fds, NULL, NULL, &resp);

        return r != CTL_EXIT_OK ? r : print_answer(opts, json, what, resp);
}

static int create_verb(const struct ctl_options *opts, int argc, char **argv)
{
        static const struct option longopts[] = {
                {"vcpus", required_argument, NULL, 'c'},
                {"memory", required_argument, NULL, 'm'},
                {"vl", required_argument, NULL, 'l'},
                {"cpu", required_argument, NULL, 'u'},
                {"dirty-rate", required_argument, NULL, 'd'},
                {"start", no_argument, NULL, 's'},
                {"json", no_argument, NULL, 'j'},
                {"payload", required_argument, NULL, 'p'},
                {"kernel", required_argument, NULL, 'k'},
                {"initrd", required_argument, NULL, 'i'},
                {"cmdline", required_argument, NULL, 'L'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__GuestCreateRequest create = SVEMIG__API__GUEST_CREATE_REQUEST__INIT;
        Svemig__Api__Workload workload = SVEMIG__API__WORKLOAD__INIT;
        Svemig__Api__VlSet vlset = SVEMIG__API__VL_SET__INIT;
        uint32_t bits[VQSET_VQ_MAX];
        Svemig__Api__LinuxBoot linux_boot = SVEMIG__API__LINUX_BOOT__INIT;
        const char *payload = NULL, *kernel = NULL, *initrd = NULL, *cmdline = NULL;
        char payload_path[PATH_MAX], kernel_path[PATH_MAX], initrd_path[PATH_MAX];
        int fd = -1, fds[2] = {-1, -1}, r;
        bool json = opts->json, dirty = false;
        uint64_t v;
        int c;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "jh", longopts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        if (parse_count(optarg, UINT32_MAX, &v) < 0 || v == 0)
                                return ctl_usage_error(
                                        "guest create: --vcpus takes a number above 0, not '%s'", optarg);
                        create.vcpus = (uint32_t)v;
                        break;
                case 'm':
                        if (parse_size(optarg, &create.memory_bytes) < 0)
                                return ctl_usage_error(
                                        "guest create: --memory takes a size such as 256M or 1G, "
                                        "not '%s'",
                                        optarg);
                        break;
                case 'l':
                        if (strcmp(optarg, "cluster") == 0) {
                                create.max_vl_case = SVEMIG__API__GUEST_CREATE_REQUEST__MAX_VL_CLUSTER;
                                create.cluster = true;
                        } else {
                                struct svemig_error err = {0};
                                vqset_t set;

                                if (vqset_parse(optarg, &set, &err) < 0)
                                        return ctl_usage_error("guest create: --vl: %s (or \"cluster\")",
                                                               err.msg);
                                VQSET_FOREACH (vq, &set) {
                                        bits[vlset.n_bits++] = vq_to_bits(vq);
                                }
                                vlset.bits = bits;
                                create.max_vl_case = SVEMIG__API__GUEST_CREATE_REQUEST__MAX_VL_VL_SET;
                                create.vl_set = &vlset;
                        }
                        break;
                case 'u':
                        if (strcmp(optarg, "cluster") == 0)
                                create.cpu = SVEMIG__API__GUEST_CREATE_REQUEST__CPU__CPU_CLUSTER;
                        else if (strcmp(optarg, "host") == 0)
                                create.cpu = SVEMIG__API__GUEST_CREATE_REQUEST__CPU__CPU_HOST;
                        else
                                return ctl_usage_error("guest create: --cpu takes \"cluster\" or \"host\", "
                                                       "not '%s'",
                                                       optarg);
                        break;
                case 'd':
                        if (parse_count(optarg, GUEST_DIRTY_PAGES_MAX, &v) < 0)
                                return ctl_usage_error("guest create: --dirty-rate takes a number of pages "
                                                       "from 0 to %u (what one step writes per vcpu), not "
                                                       "'%s'",
                                                       GUEST_DIRTY_PAGES_MAX, optarg);
                        workload.dirty_pages_per_step = (uint32_t)v;
                        dirty = true;
                        break;
                case 'p':
                        payload = optarg;
                        break;
                case 'k':
                        kernel = optarg;
                        break;
                case 'i':
                        initrd = optarg;
                        break;
                case 'L':
                        cmdline = optarg;
                        break;
                case 's':
                        create.start = true;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'h':
                        help();
                        return CTL_EXIT_OK;
                default:
                        return ctl_usage_error("guest create: unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind + 1 != argc)
                return ctl_usage_error("guest create: give one guest NAME");
        if (!create.vcpus || !create.memory_bytes)
                return ctl_usage_error("guest create: --vcpus and --memory are required");
        if (payload && dirty)
                return ctl_usage_error(
                        "guest create: a payload guest has no --dirty-rate; give one or the other");
        if (kernel && (payload || dirty))
                return ctl_usage_error(
                        "guest create: a Linux guest (--kernel) has no --payload or --dirty-rate");
        if ((initrd || cmdline) && !kernel)
                return ctl_usage_error("guest create: --initrd and --cmdline go with --kernel");
        create.name = argv[optind];
        if (kernel) {
                /* Opened here, with our own rights; the VMM reads them through the descriptors. */
                fds[0] = ctl_file_open_read("guest create: --kernel", kernel, kernel_path);
                if (fds[0] < 0)
                        return -fds[0];
                if (initrd) {
                        fds[1] = ctl_file_open_read("guest create: --initrd", initrd, initrd_path);
                        if (fds[1] < 0) {
                                close(fds[0]);
                                return -fds[1];
                        }
                }
                linux_boot.kernel = kernel_path;
                linux_boot.initrd = initrd ? initrd_path : (char *)"";
                linux_boot.cmdline = (char *)(cmdline ? cmdline : "");
                create.program_case = SVEMIG__API__GUEST_CREATE_REQUEST__PROGRAM_LINUX_BOOT;
                create.linux_boot = &linux_boot;
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_CREATE;
                req.guest_create = &create;
                r = call_and_print_fds(opts, json, "guest create", &req, fds, initrd ? 2 : 1);
                close(fds[0]);
                if (fds[1] >= 0)
                        close(fds[1]);
                return r;
        }
        if (payload) {
                /* We open it, with our own rights; its VMM reads it through the descriptor. */
                fd = ctl_file_open_read("guest create: --payload", payload, payload_path);
                if (fd < 0)
                        return -fd;
                create.program_case = SVEMIG__API__GUEST_CREATE_REQUEST__PROGRAM_PAYLOAD;
                create.payload = payload_path;
        } else {
                create.program_case = SVEMIG__API__GUEST_CREATE_REQUEST__PROGRAM_WORKLOAD;
                create.workload = &workload;
        }
        req.op_case = SVEMIG__API__REQUEST__OP_GUEST_CREATE;
        req.guest_create = &create;
        r = call_and_print(opts, json, "guest create", &req, false, fd);
        if (fd >= 0)
                close(fd);
        return r;
}

/* start, pause, resume, stop, delete, show, list, run. */
static int guest_simple(const struct ctl_options *opts, const char *cmd, int argc, char **argv)
{
        static const struct option longopts[] = {
                {"json", no_argument, NULL, 'j'},   {"force", no_argument, NULL, 'f'},
                {"digest", no_argument, NULL, 'd'}, {"steps", required_argument, NULL, 's'},
                {"help", no_argument, NULL, 'h'},   {0},
        };
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__GuestRef ref = SVEMIG__API__GUEST_REF__INIT;
        Svemig__Api__GuestRunRequest run = SVEMIG__API__GUEST_RUN_REQUEST__INIT;
        Svemig__Api__GuestListRequest list = SVEMIG__API__GUEST_LIST_REQUEST__INIT;
        Svemig__Api__Response *resp = NULL;
        bool json = opts->json, is_list = strcmp(cmd, "list") == 0, is_run = strcmp(cmd, "run") == 0;
        char what[32];
        uint64_t v;
        int c, r;

        snprintf(what, sizeof(what), "guest %s", cmd);
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "jh", longopts, NULL)) != -1) {
                switch (c) {
                case 'j':
                        json = true;
                        break;
                case 'f':
                        if (strcmp(cmd, "delete") != 0)
                                return ctl_usage_error("%s: --force is for guest delete", what);
                        ref.force = true;
                        break;
                case 'd':
                        if (strcmp(cmd, "show") != 0)
                                return ctl_usage_error("%s: --digest is for guest show", what);
                        ref.digest = true;
                        break;
                case 's':
                        if (!is_run)
                                return ctl_usage_error("%s: --steps is for guest run", what);
                        if (parse_count(optarg, UINT64_MAX, &v) < 0 || v == 0)
                                return ctl_usage_error("guest run: --steps takes a number above 0, not '%s'",
                                                       optarg);
                        run.steps = v;
                        break;
                case 'h':
                        help();
                        return CTL_EXIT_OK;
                default:
                        return ctl_usage_error("%s: unknown option '%s'", what, argv[optind - 1]);
                }
        }
        if (is_list) {
                if (optind != argc)
                        return ctl_usage_error("guest list: takes no arguments");
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_LIST;
                req.guest_list = &list;
                r = ctl_call(opts, what, &req, NULL, NULL, &resp);
                if (r != CTL_EXIT_OK)
                        return r;
                if (resp->result_case != SVEMIG__API__RESPONSE__RESULT_GUEST_LIST) {
                        fputs("svemigctl: guest list: svemigd answered without a list\n", stderr);
                        r = CTL_EXIT_FAILURE;
                } else if (json) {
                        struct json_object *doc = json_object_new_object(), *a = json_object_new_array();

                        for (size_t i = 0; i < resp->guest_list->n_guests; i++)
                                json_object_array_add(a, ctl_guest_json(resp->guest_list->guests[i]));
                        json_object_object_add(doc, "guests", a);
                        r = ctl_print_json(doc);
                } else if (resp->guest_list->n_guests == 0)
                        puts("no guests");
                else
                        ctl_guest_table(resp->guest_list->guests, resp->guest_list->n_guests);
                svemig__api__response__free_unpacked(resp, NULL);
                return r;
        }
        if (optind + 1 != argc)
                return ctl_usage_error("%s: give one guest NAME", what);
        ref.name = argv[optind];
        if (is_run) {
                if (!run.steps)
                        return ctl_usage_error("guest run: --steps N is required");
                run.name = argv[optind];
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_RUN;
                req.guest_run = &run;
        } else if (strcmp(cmd, "start") == 0) {
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_START;
                req.guest_start = &ref;
        } else if (strcmp(cmd, "pause") == 0) {
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_PAUSE;
                req.guest_pause = &ref;
        } else if (strcmp(cmd, "resume") == 0) {
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_RESUME;
                req.guest_resume = &ref;
        } else if (strcmp(cmd, "stop") == 0) {
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_STOP;
                req.guest_stop = &ref;
        } else if (strcmp(cmd, "delete") == 0) {
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_DELETE;
                req.guest_delete = &ref;
        } else {
                req.op_case = SVEMIG__API__REQUEST__OP_GUEST_SHOW;
                req.guest_show = &ref;
        }
        r = call_and_print(opts, json, what, &req, is_run, -1);
        if (r == CTL_EXIT_OK && !json && !opts->quiet && strcmp(cmd, "delete") == 0)
                printf("deleted guest %s\n", argv[optind]);
        return r;
}

int ctl_guest(const struct ctl_options *opts, int argc, char **argv)
{
        static const char *const simple[] = {"start", "pause",  "resume", "run",
                                             "stop",  "delete", "show",   "list"};

        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                help();
                return argc < 2 ? CTL_EXIT_USAGE : CTL_EXIT_OK;
        }
        if (strcmp(argv[1], "create") == 0)
                return create_verb(opts, argc - 1, argv + 1);
        for (size_t i = 0; i < ELEMENTSOF(simple); i++)
                if (strcmp(argv[1], simple[i]) == 0)
                        return guest_simple(opts, simple[i], argc - 1, argv + 1);
        return ctl_usage_error(
                "guest: unknown command '%s' (create, start, pause, resume, run, stop, delete, "
                "show, list)",
                argv[1]);
}
