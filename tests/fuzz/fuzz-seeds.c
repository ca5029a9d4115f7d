/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Writes the fuzz targets' seed corpora: fuzz-seeds DIR writes
 * DIR/<target>/<seed> for every target (scripts/make-fuzz-seeds.sh runs it
 * into tests/fuzz/corpus/). Each seed is what the real writer of that input
 * produces: the peer protocol recorded from a real migration between two
 * sim hosts, requests as svemigctl frames them, records and ledger entries
 * as svemigd writes them, snapshots as the engine writes them. Seeds that
 * parse let the fuzzer reach past the first check.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api-frame.h"
#include "guest-record.h"
#include "macro.h"
#include "migrate/ledger.h"
#include "migrate/peer.h"
#include "migrate/wire.h"
#include "svemig/guest.h"
#include "svemig/migrate.h"
#include "svemig/snapshot.h"

static const char *out_dir;

static _Noreturn void die(const char *what, const struct svemig_error *err)
{
        fprintf(stderr, "fuzz-seeds: %s: %s\n", what, err ? err->msg : strerror(errno));
        exit(1);
}

static void put(const char *target, const char *name, const void *data, size_t size)
{
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", out_dir, target);
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                die(path, NULL);
        snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
        f = fopen(path, "we");
        if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
                die(path, NULL);
}

/* ---- Byte buffers ---- */

struct buf {
        uint8_t *data;
        size_t len;
};

static void buf_add(struct buf *b, const void *data, size_t len)
{
        uint8_t *p = realloc(b->data, b->len + len + 1);

        if (!p)
                die("out of memory", NULL);
        memcpy(p + b->len, data, len);
        b->data = p;
        b->len += len;
}

/* ---- The peer protocol, recorded ---- */

static struct hv *sim_host(const char *vls, const char *name)
{
        vqset_t map;
        struct hv_config cfg = {.backend = HV_BACKEND_SIM};
        struct svemig_error err = {0};
        struct hv *hv;

        if (vqset_parse(vls, &map, &err) < 0)
                die("vqset", &err);
        cfg.sim.cpu_maps = &map;
        cfg.sim.n_cpus = 1;
        cfg.sim.host_name = name;
        if (hv_open(&cfg, &hv, &err) < 0)
                die("sim host", &err);
        return hv;
}

static struct guest *small_guest(struct hv *hv, unsigned vcpus, uint64_t mem, bool start)
{
        struct guest_config cfg = {
                .n_vcpus = vcpus, .mem_bytes = mem, .sve = true, .dirty_pages_per_step = 2};
        struct svemig_error err = {0};
        struct guest *g;

        if (vqset_parse("128,256", &cfg.vls, &err) < 0 || guest_create(hv, &cfg, &g, &err) < 0)
                die("guest", &err);
        if (start && guest_start(g, &err) < 0)
                die("guest start", &err);
        return g;
}

/* Carries both ways between a and b, keeping what goes from a to b. */
struct proxy {
        int a, b;
        struct buf rec;
        pthread_t thread;
};

static void *proxy_main(void *arg)
{
        struct proxy *p = arg;
        bool a_open = true, b_open = true;
        uint8_t buf[65536];

        while (a_open || b_open) {
                struct pollfd fds[2] = {{.fd = a_open ? p->a : -1, .events = POLLIN},
                                        {.fd = b_open ? p->b : -1, .events = POLLIN}};

                if (poll(fds, 2, -1) < 0 && errno != EINTR)
                        break;
                for (int i = 0; i < 2; i++) {
                        int from = i == 0 ? p->a : p->b, to = i == 0 ? p->b : p->a;
                        ssize_t n;

                        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        n = recv(from, buf, sizeof(buf), 0);
                        if (n <= 0) {
                                shutdown(to, SHUT_WR);
                                if (i == 0)
                                        a_open = false;
                                else
                                        b_open = false;
                                continue;
                        }
                        if (i == 0)
                                buf_add(&p->rec, buf, (size_t)n);
                        for (ssize_t off = 0; off < n;) {
                                ssize_t k = send(to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

                                if (k <= 0)
                                        break;
                                off += k;
                        }
                }
        }
        return NULL;
}

struct dest {
        struct hv *hv;
        int fd;
        pthread_t thread;
};

/* A destination as svemigd and its VMM are: hello, then every request until Bye. */
static void *dest_main(void *arg)
{
        struct dest *d = arg;
        struct migrate_ledger *ledger;
        struct migrate_recv_opts opts = {.mem_limit = 64u << 20, .n_threads = 2};
        struct peer_info self, remote;
        struct svemig_error err = {0};

        if (migrate_ledger_new(&ledger) < 0 || peer_info_local(d->hv, 64u << 20, &self, &err) < 0)
                die("destination", &err);
        opts.ledger = ledger;
        opts.self = &self;
        if (peer_hello(d->fd, &self, 10000, &remote, &err) == 0) {
                peer_info_done(&remote);
                for (;;) {
                        struct migrate_served served;
                        int r = migrate_serve(d->hv, d->fd, &opts, &served, &err);

                        guest_destroy(served.guest);
                        if (r < 0 || served.kind == MIGRATE_SERVED_BYE)
                                break;
                }
        }
        shutdown(d->fd, SHUT_RDWR);
        peer_info_done(&self);
        migrate_ledger_free(ledger);
        return NULL;
}

enum session {
        SESSION_MIGRATE,
        SESSION_MIGRATE_RUNNING,
        SESSION_CHECK_INFO,
        SESSION_RESOLVE,
        SESSION_BAD_VLS
};

/* Runs one source's session against a real destination and keeps what the source said. */
static void record_session(struct hv *src_hv, struct hv *dst_hv, enum session kind, const char *name)
{
        int s[2], d[2];
        struct proxy p = {0};
        struct dest dst = {.hv = dst_hv};
        struct peer_info self, remote;
        struct svemig_error err = {0};
        struct migrate_opts opts = {.guest_name = "seed", .n_threads = 2, .timeout_ms = 10000};
        static const char device_state[] = "{\"payload\":\"seed\"}";
        uint8_t id[MIGRATE_ID_SIZE] = {0x5e, 0xed};
        struct migrate_report rep;
        struct guest *g = NULL;
        bool committed;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) < 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, d) < 0)
                die("socketpair", NULL);
        p.a = s[1];
        p.b = d[0];
        dst.fd = d[1];
        if (pthread_create(&p.thread, NULL, proxy_main, &p) != 0 ||
            pthread_create(&dst.thread, NULL, dest_main, &dst) != 0)
                die("pthread_create", NULL);
        if (peer_info_local(src_hv, 0, &self, &err) < 0 || peer_hello(s[0], &self, 10000, &remote, &err) < 0)
                die("source hello", &err);
        peer_info_done(&remote);
        switch (kind) {
        case SESSION_MIGRATE:
        case SESSION_MIGRATE_RUNNING:
                g = small_guest(src_hv, kind == SESSION_MIGRATE ? 2 : 1,
                                kind == SESSION_MIGRATE ? 256 * 1024 : 64 * 1024,
                                kind == SESSION_MIGRATE_RUNNING);
                opts.compression =
                        kind == SESSION_MIGRATE ? MIGRATE_COMPRESSION_NONE : MIGRATE_COMPRESSION_LZ4;
                opts.device_state = device_state;
                opts.device_state_size = sizeof(device_state) - 1;
                if (migrate_check_send(g, s[0], &opts, &err) < 0 ||
                    migrate_send(g, s[0], &opts, &rep, &err) < 0)
                        die("migration", &err);
                break;
        case SESSION_CHECK_INFO:
                g = small_guest(src_hv, 1, 128 * 1024, false);
                if (peer_request_info(s[0], 10000, &remote, &err) < 0)
                        die("host info", &err);
                peer_info_done(&remote);
                if (migrate_check_send(g, s[0], &opts, &err) < 0)
                        die("check", &err);
                break;
        case SESSION_RESOLVE:
                if (migrate_resolve(s[0], id, 10000, &committed, &err) < 0)
                        die("resolve", &err);
                break;
        case SESSION_BAD_VLS:
                /* A guest the destination refuses (no 512-bit VL there): the Verdict's way out. */
                g = small_guest(src_hv, 1, 128 * 1024, false);
                (void)migrate_send(g, s[0], &opts, &rep, &err);
                break;
        }
        (void)peer_bye(s[0], 1000, NULL);
        shutdown(s[0], SHUT_WR);
        pthread_join(dst.thread, NULL);
        pthread_join(p.thread, NULL);
        guest_destroy(g);
        peer_info_done(&self);
        close(s[0]);
        close(s[1]);
        close(d[0]);
        close(d[1]);
        put("peer", name, p.rec.data, p.rec.len);
        free(p.rec.data);
}

static void peer_seeds(void)
{
        struct hv *a = sim_host("128,256,512", "seed-a"), *b = sim_host("128,256", "seed-b");
        struct hv *c = sim_host("128", "seed-c");

        record_session(a, b, SESSION_MIGRATE, "migrate-check-none");
        record_session(a, b, SESSION_MIGRATE_RUNNING, "migrate-running-lz4");
        record_session(a, b, SESSION_CHECK_INFO, "info-check");
        record_session(a, b, SESSION_RESOLVE, "resolve");
        record_session(a, c, SESSION_BAD_VLS, "refused");
        hv_close(a);
        hv_close(b);
        hv_close(c);
}

/* ---- The stream ---- */

static void stream_seeds(void)
{
        struct hv *hv = sim_host("128,256,512", "seed-stream");
        struct snapshot_opts opts = {.created_ns = 1, .n_threads = 2};
        struct svemig_error err = {0};
        struct guest *g = small_guest(hv, 3, 128 * 1024, true);
        char path[] = "/tmp/svemig-seed-stream-XXXXXX";
        int fd = mkstemp(path);
        struct stat st;
        uint8_t *data;

        if (fd < 0 || guest_pause(g, &err) < 0 || snapshot_write_fd(g, fd, &opts, NULL, &err) < 0)
                die("snapshot", &err);
        if (fstat(fd, &st) < 0 || !(data = malloc((size_t)st.st_size)) ||
            pread(fd, data, (size_t)st.st_size, 0) != st.st_size)
                die("reading the snapshot", NULL);
        put("stream-reader", "three-vcpus", data, (size_t)st.st_size);
        free(data);
        close(fd);
        unlink(path);
        guest_destroy(g);
        hv_close(hv);
}

/* ---- Control requests, framed as svemigctl frames them ---- */

static void add_request(struct buf *b, Svemig__Api__Request *req)
{
        uint8_t *frame;
        size_t size;

        if (api_frame_pack(&req->base, &frame, &size) < 0)
                die("api_frame_pack", NULL);
        buf_add(b, frame, size);
        free(frame);
}

static void api_seeds(void)
{
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__HostInfoRequest hi = SVEMIG__API__HOST_INFO_REQUEST__INIT;
        Svemig__Api__GuestCreateRequest gc = SVEMIG__API__GUEST_CREATE_REQUEST__INIT;
        Svemig__Api__GuestRef ref = SVEMIG__API__GUEST_REF__INIT;
        Svemig__Api__GuestListRequest gl = SVEMIG__API__GUEST_LIST_REQUEST__INIT;
        Svemig__Api__CancelRequest cancel = SVEMIG__API__CANCEL_REQUEST__INIT;
        Svemig__Api__MigrateRequest mig = SVEMIG__API__MIGRATE_REQUEST__INIT;
        Svemig__Api__GuestRunRequest run = SVEMIG__API__GUEST_RUN_REQUEST__INIT;
        Svemig__Api__SnapshotRequest snap = SVEMIG__API__SNAPSHOT_REQUEST__INIT;
        struct buf one = {0}, session = {0};
        static const uint8_t huge[] = {0xff, 0xff, 0xff, 0x7f, 0x08, 0x01};

        req.id = 1;
        req.op_case = SVEMIG__API__REQUEST__OP_HOST_INFO;
        req.host_info = &hi;
        add_request(&one, &req);
        put("api-request", "host-info", one.data, one.len);
        buf_add(&session, one.data, one.len);

        gc.name = (char *)"g1";
        gc.vcpus = 2;
        gc.memory_bytes = 64u << 20;
        gc.max_vl_case = SVEMIG__API__GUEST_CREATE_REQUEST__MAX_VL_MAX_VL_BITS;
        gc.max_vl_bits = 256;
        req.id = 2;
        req.op_case = SVEMIG__API__REQUEST__OP_GUEST_CREATE;
        req.guest_create = &gc;
        add_request(&session, &req);

        ref.name = (char *)"g1";
        req.id = 3;
        req.op_case = SVEMIG__API__REQUEST__OP_GUEST_START;
        req.guest_start = &ref;
        add_request(&session, &req);

        cancel.target_case = SVEMIG__API__CANCEL_REQUEST__TARGET_REQUEST_ID;
        cancel.request_id = 3;
        req.id = 4;
        req.op_case = SVEMIG__API__REQUEST__OP_CANCEL;
        req.cancel = &cancel;
        add_request(&session, &req);

        req.id = 5;
        req.op_case = SVEMIG__API__REQUEST__OP_GUEST_LIST;
        req.guest_list = &gl;
        add_request(&session, &req);

        mig.guest = (char *)"g1";
        mig.peer = (char *)"host-b";
        req.id = 6;
        req.op_case = SVEMIG__API__REQUEST__OP_MIGRATE;
        req.migrate = &mig;
        add_request(&session, &req);

        cancel.target_case = SVEMIG__API__CANCEL_REQUEST__TARGET_OPERATION;
        cancel.operation = 6;
        req.id = 7;
        req.op_case = SVEMIG__API__REQUEST__OP_CANCEL;
        req.cancel = &cancel;
        add_request(&session, &req);

        run.name = (char *)"g1";
        run.steps = 10;
        req.id = 8;
        req.op_case = SVEMIG__API__REQUEST__OP_GUEST_RUN;
        req.guest_run = &run;
        add_request(&session, &req);

        snap.guest = (char *)"g1";
        snap.path = (char *)"/tmp/g1.svemig";
        req.id = 9;
        req.op_case = SVEMIG__API__REQUEST__OP_SNAPSHOT;
        req.snapshot = &snap;
        add_request(&session, &req);

        /* The same id twice, while the first runs. */
        req.id = 10;
        req.op_case = SVEMIG__API__REQUEST__OP_GUEST_SHOW;
        req.guest_show = &ref;
        add_request(&session, &req);
        add_request(&session, &req);
        put("api-request", "session", session.data, session.len);

        /* Id 0, and a frame over the limit. */
        free(one.data);
        one = (struct buf){0};
        req.id = 0;
        add_request(&one, &req);
        buf_add(&one, huge, sizeof(huge));
        put("api-request", "id0-huge", one.data, one.len);
        free(one.data);
        free(session.data);
}

/* ---- migrate.conf ---- */

static void conf_seeds(void)
{
        static const char *const confs[][2] = {
                {"full",
                 "# every section\n[daemon]\nhost-name = seed-a\nstate-directory = /var/lib/svemig\n"
                 "socket = /run/svemig/svemigd.sock\nsocket-group =\nlog-level = info\n\n"
                 "[hypervisor]\nbackend = sim\nkvm-device = /dev/kvm\n\n"
                 "[sim]\nkernel = 6.12\nkvm-mode = nvhe\ncpus = 2\ncpu0 = 128,256,512\ncpu1 = 128,256\n\n"
                 "[snapshot]\ndirectory = /var/lib/svemig/snapshots\nkeep = 3\ncompression = lz4\n\n"
                 "[cluster]\nlisten = 127.0.0.1:7411\nrefresh-interval = 5s\npeer-timeout = 10000ms\n"
                 "incoming-memory-limit = 4G\nincoming-reserve = 512M\nmigration-channels = 4\n\n"
                 "[peer seed-b]\naddress = 127.0.0.1:7412\n\n[peer seed-c]\naddress = [::1]:7413\n"},
                {"minimal", "[daemon]\nhost-name = h\n"},
                {"bad-line", "[daemon]\nhost-name\n"},
                {"bad-value", "[cluster]\npeer-timeout = soon\n; a comment\n"},
        };

        for (size_t i = 0; i < ELEMENTSOF(confs); i++)
                put("conf", confs[i][0], confs[i][1], strlen(confs[i][1]));
}

/* ---- guest.json ---- */

static void record_seed(const struct guest_record *rec, const char *name)
{
        char dir[] = "/tmp/svemig-seed-record-XXXXXX", path[64];
        struct svemig_error err = {0};
        struct stat st;
        uint8_t *data;
        int fd;

        if (!mkdtemp(dir))
                die("mkdtemp", NULL);
        snprintf(path, sizeof(path), "%s/guest.json", dir);
        if (guest_record_save(rec, path, &err) < 0)
                die("guest_record_save", &err);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || !(data = malloc((size_t)st.st_size)) ||
            read(fd, data, (size_t)st.st_size) != st.st_size)
                die(path, NULL);
        put("guest-record", name, data, (size_t)st.st_size);
        free(data);
        close(fd);
        unlink(path);
        rmdir(dir);
}

static void guest_record_seeds(void)
{
        struct guest_record rec = {0};
        struct svemig_error err = {0};

        rec.name = strdup("g1");
        rec.vcpus = 2;
        rec.memory_bytes = 64u << 20;
        if (vqset_parse("128,256,512", &rec.vls, &err) < 0)
                die("vqset", &err);
        rec.state = GUEST_RUNNING;
        rec.steps = 1234;
        rec.vmm_pid = 4321;
        rec.vmm_socket = strdup("/run/svemig/guests/g1/vmm.sock");
        rec.created_ns = 1700000000000000000ull;
        if (guest_record_add_snapshot(&rec, "/var/lib/svemig/snapshots/g1-1.svemig", 1700000000000000001ull,
                                      65536, 1000) < 0 ||
            guest_record_add_snapshot(&rec, "/backup/g1.svemig", 1700000000000000002ull, 131072, 1200) < 0)
                die("out of memory", NULL);
        record_seed(&rec, "running-snapshots");
        guest_record_done(&rec);

        rec = (struct guest_record){0};
        rec.name = strdup("nosve");
        rec.vcpus = 1;
        rec.memory_bytes = 1u << 20;
        rec.cluster = true;
        rec.state = GUEST_DEAD;
        rec.reason = strdup("its VMM died (signal 9)");
        rec.restored_from = strdup("/var/lib/svemig/snapshots/x.svemig");
        rec.incoming_migration = strdup("5e110a01000000000000000000000000");
        rec.payload = strdup("/var/lib/svemig/payloads/hello.bin");
        record_seed(&rec, "dead-incoming");
        guest_record_done(&rec);
}

/* ---- The ledger's files: u8 actions | u16 LE length | entry | committed list ---- */

static void ledger_seed(const char *name, uint8_t actions, const char *entry, const char *committed)
{
        struct buf b = {0};
        uint8_t head[3] = {actions, (uint8_t)strlen(entry), (uint8_t)(strlen(entry) >> 8)};

        buf_add(&b, head, sizeof(head));
        buf_add(&b, entry, strlen(entry));
        buf_add(&b, committed, strlen(committed));
        put("ledger", name, b.data, b.len);
        free(b.data);
}

static void ledger_seeds(void)
{
        /* Entries as dir_store() writes them; id B (5e110b02...b2) in the committed list. */
        static const char b_line[] = "5e110b020000000000000000000000b2\n";

        ledger_seed("pending-commit", 0, "svemig-ledger 1\nstate=pending\ntime=1\n", b_line);
        ledger_seed("committed-abort", 2 | 16, "svemig-ledger 1\nstate=committed\ntime=1\n", b_line);
        ledger_seed("aborted-resolve", 4, "svemig-ledger 1\nstate=aborted\ntime=1\n", "");
        ledger_seed("none-begin-commit", 1 | 16, "", "5e110a010000000000000000000000a1\n");
        ledger_seed("pending-fails", 8, "svemig-ledger 1\nstate=pending\ntime=99999999999\n", b_line);
}

int main(int argc, char **argv)
{
        if (argc != 2) {
                fprintf(stderr, "usage: fuzz-seeds DIR (writes DIR/<target>/<seed>)\n");
                return 2;
        }
        out_dir = argv[1];
        if (mkdir(out_dir, 0755) < 0 && errno != EEXIST)
                die(out_dir, NULL);
        api_seeds();
        conf_seeds();
        guest_record_seeds();
        ledger_seeds();
        stream_seeds();
        peer_seeds();
        return 0;
}
