/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl checkpoint merge: folds a chain of incremental checkpoints into
 * one full checkpoint, here, with the user's rights. The chain is read and
 * verified whole first; the result appears whole or not at all: a local
 * file through ctl-file.c, a URL through the stores (uploaded while it is
 * written, visible once complete).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "ctl-file.h"
#include "ctl-json.h"
#include "ctl-stream.h"
#include "ctl.h"
#include "svemig/snapshot.h"

static void merge_help(void)
{
        printf("Usage: svemigctl [--json] [--quiet] checkpoint merge TOP OUT\n\n"
               "Fold the chain of incremental checkpoints ending at TOP into one full checkpoint at OUT\n"
               "(each a file or a URL; URLs use the [store] settings of $SVEMIG_CONFIG, else the default\n"
               "migrate.conf). Every link is read and verified first; OUT appears whole or not at all.\n");
}

/* Into a URL: uploaded as it is written, visible once complete. */
static int merge_to_url(const char *top, const char *out, const struct snapshot_chain *chain,
                        struct svemig_stream_stats *st, struct svemig_error *err)
{
        struct store_writer *w = NULL;
        struct svemig_error werr = {0};
        int r, k;

        r = store_writer_open(out, chain->sc, &w, err);
        if (r < 0)
                return r;
        r = snapshot_merge(top, chain, store_writer_fd(w), NULL, st, err);
        if (r < 0) {
                k = store_writer_abort(w, &werr);
                if (k < 0 && k != -ECANCELED) {
                        *err = werr;
                        r = k;
                }
                return r;
        }
        return store_writer_commit(w, err);
}

static int merge(const struct ctl_options *opts, const char *top, const char *out)
{
        struct snapshot_chain chain = {.local_dir = NULL};
        struct ctl_new_file file = {.fd = -1};
        struct svemig_stream_stats st = {0};
        struct svemig_error err = {0};
        struct migrate_conf conf;
        struct store_conf sc;
        int r;

        r = ctl_stream_store_conf(&conf, &sc, &err);
        if (r < 0) {
                fprintf(stderr, "svemigctl: checkpoint merge: %s\n", svemig_error_str(&err, r));
                return CTL_EXIT_FAILURE;
        }
        chain.sc = &sc;
        /* A failed upload closes its pipe: the writes must fail with EPIPE, not kill us. */
        signal(SIGPIPE, SIG_IGN);
        if (store_is_remote(out)) {
                r = merge_to_url(top, out, &chain, &st, &err);
        } else {
                r = ctl_file_create("checkpoint merge", out, &file);
                if (r) {
                        migrate_conf_done(&conf);
                        return r;
                }
                r = snapshot_merge(top, &chain, file.fd, NULL, &st, &err);
                if (r == 0 && (r = ctl_file_commit("checkpoint merge", &file)) != 0) {
                        ctl_file_abandon(&file);
                        migrate_conf_done(&conf);
                        return r;
                }
                ctl_file_abandon(&file);
        }
        migrate_conf_done(&conf);
        if (r < 0) {
                fprintf(stderr, "svemigctl: checkpoint merge: %s\n", svemig_error_str(&err, r));
                return ctl_stream_exit(r);
        }
        if (opts->json) {
                struct json_object *o = json_object_new_object();

                json_object_object_add(o, "top", json_object_new_string(top));
                json_object_object_add(o, "path", json_object_new_string(out));
                json_object_object_add(o, "bytes", json_object_new_int64((int64_t)st.bytes));
                json_object_object_add(o, "pages", json_object_new_int64((int64_t)st.mem_pages));
                return ctl_print_json(o);
        }
        if (!opts->quiet)
                printf("merged the chain of %s into %s (%llu bytes, full)\n", top, out,
                       (unsigned long long)st.bytes);
        return CTL_EXIT_OK;
}

int ctl_checkpoint(const struct ctl_options *opts, int argc, char **argv)
{
        struct ctl_options o = *opts;
        int i;

        for (i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--json") == 0)
                        o.json = true;
                else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        merge_help();
                        return CTL_EXIT_OK;
                }
        }
        if (argc < 2 || strcmp(argv[1], "merge") != 0)
                return ctl_usage_error("checkpoint: the subcommand is 'merge TOP OUT'");
        {
                const char *pos[2];
                int n = 0;

                for (i = 2; i < argc; i++) {
                        if (strcmp(argv[i], "--json") == 0)
                                continue;
                        if (argv[i][0] == '-' && argv[i][1])
                                return ctl_usage_error("checkpoint merge: unknown option '%s'", argv[i]);
                        if (n == 2)
                                return ctl_usage_error("checkpoint merge: give TOP and OUT only");
                        pos[n++] = argv[i];
                }
                if (n != 2)
                        return ctl_usage_error(
                                "checkpoint merge: give the chain's TOP and the OUT to write");
                return merge(&o, pos[0], pos[1]);
        }
}
