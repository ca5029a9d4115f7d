/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for migrate.conf: any bytes, read by migrate_conf_load()
 * as svemigd and `svemigd --check-config` read the file. A bad file must be
 * refused with FILE:LINE and a reason, never crash or leak. A file that
 * loads is printed (--check-config's output), and that output must load
 * again into the same configuration: it prints the same.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "fuzz-util.h"

/* The printed configuration without its first line (which names the file read). */
static char *print_body(const struct migrate_conf *conf, size_t *len)
{
        char *text = NULL, *body;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        if (!f)
                abort();
        migrate_conf_print(conf, f);
        if (fclose(f) != 0)
                abort();
        body = strchr(text, '\n');
        body = strdup(body ? body : "");
        free(text);
        if (!body)
                abort();
        *len = strlen(body);
        return body;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct migrate_conf conf = {0}, again = {0};
        struct svemig_error err = {0};
        char path[64], path2[64], *first, *second;
        size_t len, len2;
        int fd = fuzz_memfd(data, size), fd2;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if (migrate_conf_load(&conf, path, &err) < 0) {
                /* Refused: with a reason, naming the file. */
                if (err.code <= 0 || strncmp(err.msg, path, strlen(path)) != 0) {
                        fprintf(stderr, "fuzz-conf: refused without a proper reason: %d '%s'\n", err.code,
                                err.msg);
                        abort();
                }
                close(fd);
                return 0;
        }
        first = print_body(&conf, &len);
        fd2 = fuzz_memfd((const uint8_t *)first, len);
        snprintf(path2, sizeof(path2), "/proc/self/fd/%d", fd2);
        if (migrate_conf_load(&again, path2, &err) < 0) {
                fprintf(stderr, "fuzz-conf: the printed configuration does not load: %s\n%s", err.msg,
                        first);
                abort();
        }
        second = print_body(&again, &len2);
        if (len != len2 || memcmp(first, second, len) != 0) {
                fprintf(stderr, "fuzz-conf: printed, loaded and printed again, it differs:\n%s\n----\n%s",
                        first, second);
                abort();
        }
        free(first);
        free(second);
        migrate_conf_done(&conf);
        migrate_conf_done(&again);
        close(fd);
        close(fd2);
        return 0;
}
