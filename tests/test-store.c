/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store dispatch and the file store, with no server: a writer's object
 * appears whole at commit and not at all after an abort, a reader gives the
 * byte range asked for, and bad locations and missing credentials are
 * refused with the reason. (HTTP and S3 against real servers:
 * tests/daemon/test-store.py.)
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "macro.h"
#include "svemig/store.h"

static char dir[] = "/tmp/svemig-test-store-XXXXXX";

static int entries(void)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

static void write_all(int fd, const void *buf, size_t n)
{
        assert_int_equal(write(fd, buf, n), (ssize_t)n);
}

static size_t read_all(int fd, char *buf, size_t cap)
{
        size_t got = 0;
        ssize_t k;

        while ((k = read(fd, buf + got, cap - got)) > 0)
                got += (size_t)k;
        return got;
}

static void test_file_commit_and_abort(void **state)
{
        struct svemig_error err = {0};
        struct store_writer *w;
        char path[256], buf[64];
        FILE *f;

        (void)state;
        snprintf(path, sizeof(path), "%s/a.svemig", dir);
        assert_int_equal(store_writer_open(path, NULL, &w, &err), 0);
        write_all(store_writer_fd(w), "hello ", 6);
        write_all(store_writer_fd(w), "world", 5);
        /* Not there until committed. */
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(store_writer_commit(w, &err), 0);
        f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof(buf), f));
        fclose(f);
        assert_string_equal(buf, "hello world");

        snprintf(path, sizeof(path), "%s/b.svemig", dir);
        assert_int_equal(store_writer_open(path, NULL, &w, &err), 0);
        write_all(store_writer_fd(w), "half", 4);
        assert_int_equal(store_writer_abort(w, &err), -ECANCELED);
        assert_int_equal(access(path, F_OK), -1);
        /* Only a.svemig: no temporary file left. */
        assert_int_equal(entries(), 1);
}

static void test_file_ranges(void **state)
{
        struct svemig_error err = {0};
        struct store_reader *rd;
        char path[256], buf[64];
        size_t n;

        (void)state;
        snprintf(path, sizeof(path), "%s/a.svemig", dir);
        assert_int_equal(store_reader_open(path, NULL, 6, 3, &rd, &err), 0);
        n = read_all(store_reader_fd(rd), buf, sizeof(buf));
        assert_int_equal(store_reader_close(rd, &err), 0);
        assert_int_equal(n, 3);
        assert_memory_equal(buf, "wor", 3);

        assert_int_equal(store_reader_open(path, NULL, 0, 0, &rd, &err), 0);
        n = read_all(store_reader_fd(rd), buf, sizeof(buf));
        assert_int_equal(store_reader_close(rd, &err), 0);
        assert_int_equal(n, 11);

        /* A reader that stops early is no failure. */
        assert_int_equal(store_reader_open(path, NULL, 0, 0, &rd, &err), 0);
        assert_int_equal(store_reader_close(rd, &err), 0);

        /* A missing file: the transfer's reason comes at close. */
        snprintf(path, sizeof(path), "%s/none.svemig", dir);
        assert_int_equal(store_reader_open(path, NULL, 0, 0, &rd, &err), 0);
        assert_int_equal(read_all(store_reader_fd(rd), buf, sizeof(buf)), 0);
        assert_int_equal(store_reader_close(rd, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "none.svemig"));
}

static void expect_refused(const char *location, const struct store_conf *sc, int code, const char *words)
{
        struct svemig_error err = {0};

        assert_int_equal(store_check_location(location, sc, &err), -code);
        if (!strstr(err.msg, words))
                fail_msg("%s: \"%s\" lacks \"%s\"", location, err.msg, words);
}

static void test_bad_locations(void **state)
{
        struct store_conf sc = {.s3_endpoint = "http://127.0.0.1:1"};

        (void)state;
        expect_refused("s3://b/k", &sc, EINVAL, "3 to 63");
        expect_refused("s3://Bucket/k", &sc, EINVAL, "lower-case");
        expect_refused("s3://bucket/", &sc, EINVAL, "s3://BUCKET/KEY");
        expect_refused("s3://bucket/k", NULL, EINVAL, "s3-endpoint");
        expect_refused("http://host/dir/", &sc, EINVAL, "name the object");
        expect_refused("http://host/a?x=1", &sc, EINVAL, "no spaces, query");
        expect_refused("ftp://host/a", &sc, EPROTONOSUPPORT, "unknown scheme");
        sc.part_size = 1024;
        expect_refused("s3://bucket/k", &sc, EINVAL, "part size");
        assert_true(store_is_remote("https://h/x"));
        assert_false(store_is_remote("/tmp/x"));
}

static void test_s3_without_credentials(void **state)
{
        struct store_conf sc = {.s3_endpoint = "http://127.0.0.1:1"};
        struct svemig_error err = {0};
        struct store_writer *w;

        (void)state;
        unsetenv("AWS_ACCESS_KEY_ID");
        unsetenv("AWS_SECRET_ACCESS_KEY");
        unsetenv("AWS_SHARED_CREDENTIALS_FILE");
        setenv("HOME", dir, 1);
        assert_int_equal(store_writer_open("s3://bucket/k", &sc, &w, &err), 0);
        assert_int_equal(store_writer_commit(w, &err), -ENOKEY);
        assert_non_null(strstr(err.msg, "AWS_ACCESS_KEY_ID"));
        assert_non_null(strstr(err.msg, "credentials-file"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_file_commit_and_abort),
                cmocka_unit_test(test_file_ranges),
                cmocka_unit_test(test_bad_locations),
                cmocka_unit_test(test_s3_without_credentials),
        };
        char cmd[128];
        int r;

        signal(SIGPIPE, SIG_IGN);
        if (!mkdtemp(dir))
                return 1;
        r = cmocka_run_group_tests(tests, NULL, NULL);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        (void)!system(cmd);
        return r;
}
