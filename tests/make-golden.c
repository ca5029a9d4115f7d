/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * make-golden OUT: writes the golden stream (tests/stream-content.c) of the
 * format version this build writes to OUT. scripts/make-golden.sh runs it;
 * the result is committed as tests/data/stream-v1.<minor>.svemig and every
 * later build must keep reading it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "stream-content.h"

int main(int argc, char **argv)
{
        struct svemig_error err = {0};
        char tmp[4096];
        int fd, r;

        /* --producer: the tests' stream whose writer says anything at all (ctl-escape). */
        const char *producer = argc == 4 && strcmp(argv[1], "--producer") == 0 ? argv[2] : NULL;

        if (argc != 2 && !producer) {
                fprintf(stderr, "usage: make-golden [--producer NAME] OUT\n");
                return 2;
        }
        argv += argc - 2;
        snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                perror(tmp);
                return 1;
        }
        r = golden_write_as(fd, 0, producer, &err);
        if (r == 0 && fsync(fd) < 0)
                r = -1;
        close(fd);
        if (r < 0 || rename(tmp, argv[1]) < 0) {
                fprintf(stderr, "make-golden: %s\n", svemig_error_str(&err, r));
                unlink(tmp);
                return 1;
        }
        return 0;
}
