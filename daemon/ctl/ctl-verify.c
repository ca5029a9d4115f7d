/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigctl verify FILE: reads a stream through and checks every frame
 * checksum, every count and the trailer's digest. Exits 0 when all hold and
 * 5 (CTL_EXIT_CORRUPT) on any fault, naming the offset and the problem.
 */
#include <getopt.h>
#include <stdio.h>

#include <json-c/json.h>

#include "ctl-json.h"
#include "ctl-stream.h"
#include "ctl.h"
#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_object *, json_object_put);

static void digest_hex(const struct svemig_stream_stats *s, char *buf)
{
        for (unsigned i = 0; i < s->digest_bytes; i++)
                sprintf(buf + 2 * i, "%02x", s->digest[i]);
        buf[2 * s->digest_bytes] = '\0';
}

/* Each verified link, kept for the report. */
static void on_link(void *ctx, const struct ctl_chain_link *l)
{
        struct json_object *o = json_object_new_object();

        json_object_object_add(o, "location", json_object_new_string(l->location));
        json_object_object_add(o, "digest", json_object_new_string(l->digest));
        json_object_object_add(o, "bytes", json_object_new_int64((int64_t)l->bytes));
        json_object_array_add(ctx, o);
}

int ctl_verify(const struct ctl_options *opts, int argc, char **argv)
{
        static const struct option longopts[] = {
                {"json", no_argument, NULL, 'j'},
                {0},
        };
        _cleanup_(json_object_putp) struct json_object *chain = json_object_new_array();
        struct svemig_stream_stats stats;
        struct svemig_error err = {0};
        struct ctl_parent parent;
        bool json = opts->json;
        char digest[33] = "";
        uint64_t bytes;
        int c, k;

        optind = 0;
        while ((c = getopt_long(argc, argv, "j", longopts, NULL)) != -1) {
                if (c != 'j')
                        return ctl_usage_error("verify: unknown option");
                json = true;
        }
        if (argc - optind != 1)
                return ctl_usage_error("verify: give exactly one FILE");

        k = ctl_stream_walk(argv[optind], NULL, &stats, &bytes, &parent, &err);
        digest_hex(&stats, digest);
        /* An incremental stream is only as good as its chain: every link is read and checked. */
        if (k == 0 && parent.location[0])
                k = ctl_stream_walk_chain(&parent, on_link, chain, &err);
        if (json) {
                _cleanup_(json_object_putp) struct json_object *o = json_object_new_object();

                json_object_object_add(o, "file", json_object_new_string(argv[optind]));
                json_object_object_add(o, "verified", json_object_new_boolean(k == 0));
                json_object_object_add(o, "error",
                                       k < 0 ? json_object_new_string(svemig_error_str(&err, k)) : NULL);
                json_object_object_add(o, "bytes", json_object_new_int64((int64_t)bytes));
                json_object_object_add(o, "frames", json_object_new_int64((int64_t)stats.frames));
                json_object_object_add(o, "digest", k == 0 ? json_object_new_string(digest) : NULL);
                json_object_object_add(o, "parent",
                                       parent.location[0] ? json_object_new_string(parent.location) : NULL);
                json_object_object_add(o, "chain", json_object_get(chain));
                (void)ctl_print_json(json_object_get(o));
        } else if (k < 0) {
                fprintf(stderr, "svemigctl: %s\n", svemig_error_str(&err, k));
                if (!opts->quiet)
                        printf("%s: FAILED\n", argv[optind]);
        } else if (!opts->quiet) {
                printf("%s: OK (%llu bytes, %llu frames, digest %s)\n", argv[optind],
                       (unsigned long long)bytes, (unsigned long long)stats.frames, digest);
                for (size_t i = 0; i < json_object_array_length(chain); i++) {
                        struct json_object *l = json_object_array_get_idx(chain, i), *loc, *dg;

                        json_object_object_get_ex(l, "location", &loc);
                        json_object_object_get_ex(l, "digest", &dg);
                        printf("  parent %s: OK (digest %s)\n", json_object_get_string(loc),
                               json_object_get_string(dg));
                }
        }
        return ctl_stream_exit(k);
}
