/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration between simulated hosts over real sockets, with real
 * threads: the happy paths, refusals, convergence, and a fault matrix in
 * which every failure must leave exactly one running copy of the guest whose
 * state, run on, equals an unbroken run.
 *
 * The hosts are those of issue 5: A {128,256,512}, B {128,256},
 * C {128,256,384,512}.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "sim/sim.h"
#include "macro.h"
#include "migrate/channel.h"
#include "migrate/ledger.h"
#include "migrate/peer.h"
#include "migrate/policy.h"
#include "migrate/pump.h"
#include "migrate/wire.h"
#include "sim-util.h"
#include "svemig/guest.h"
#include "svemig/kvmreg.h"
#include "svemig/migrate.h"

#define HOST_A "128,256,512"
#define HOST_B "128,256"
#define HOST_C "128,256,384,512"

#define TEST_TIMEOUT_MS 10000u
#define DEAD_TIMEOUT_MS 400u

/* ---- Guests and their equivalence with an unbroken run ---- */

struct spec {
        const char *vls;
        unsigned n_vcpus;
        uint64_t mem;
        uint64_t dirty_per_step;
};

static const struct spec small = {"128,256", 1, 512 * 1024, 2};

static struct guest *make_guest(struct hv *hv, const struct spec *sp)
{
        struct guest_config cfg = {.n_vcpus = sp->n_vcpus,
                                   .mem_bytes = sp->mem,
                                   .sve = true,
                                   .dirty_pages_per_step = sp->dirty_per_step,
                                   .log_dirty = true};
        struct svemig_error err = {0};
        struct guest *g;

        assert_int_equal(vqset_parse(sp->vls, &cfg.vls, &err), 0);
        if (guest_create(hv, &cfg, &g, &err) < 0)
                fail_msg("guest_create: %s", err.msg);
        return g;
}

static void wait_steps(struct guest *g, uint64_t more)
{
        uint64_t target = guest_steps(g, 0) + more;

        for (unsigned i = 0; guest_steps(g, 0) < target; i++) {
                if (i > 20000)
                        fail_msg("the guest does not run");
                nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        }
}

static struct guest *start_guest(struct hv *hv, const struct spec *sp)
{
        struct svemig_error err = {0};
        struct guest *g = make_guest(hv, sp);

        assert_int_equal(guest_start(g, &err), 0);
        wait_steps(g, 500);
        return g;
}

/* Steps vcpu i has run in its whole life: the workload counts them in x0. */
static uint64_t lifetime_steps(const struct vcpu_state *st)
{
        const struct vcpu_reg *x0 = vcpu_state_find(st, kvmreg_core_x(0));
        uint64_t v = 0;

        assert_non_null(x0);
        memcpy(&v, x0->value, sizeof(v));
        return v;
}

/*
 * Pauses g and compares it with a fresh guest whose every vcpu ran exactly
 * as many steps without a break. Each vcpu writes only its own stripe, so
 * vcpus may be run one after the other.
 */
static void assert_unbroken(struct guest *g, const struct spec *sp)
{
        struct svemig_error err = {0};
        struct vcpu_state *states;
        struct guest *ref;
        char diff[256] = "";
        bool equal;

        assert_int_equal(guest_pause(g, &err), 0);
        assert_int_equal(guest_capture(g, &states, &err), 0);
        ref = make_guest(guest_host(g), sp);
        for (unsigned i = 0; i < sp->n_vcpus; i++) {
                uint64_t left = lifetime_steps(&states[i]);

                assert_true(left > 0);
                while (left > 0) {
                        struct hv_exit exit;

                        assert_int_equal(hv_vcpu_run(guest_vcpu(ref, i), left, &exit), 0);
                        assert_true(exit.steps > 0);
                        left -= exit.steps;
                }
        }
        guest_states_free(states, sp->n_vcpus);
        assert_int_equal(guest_compare(g, ref, &equal, diff, sizeof(diff), &err), 0);
        if (!equal)
                fail_msg("the surviving guest differs from an unbroken run: %s", diff);
        guest_destroy(ref);
}

/* Exactly one of src and dst runs; it runs on, and equals an unbroken run. */
static void assert_one_running(struct guest *src, struct guest *dst, const struct spec *sp)
{
        struct guest *alive;
        unsigned n = (guest_running(src) ? 1 : 0) + (dst && guest_running(dst) ? 1 : 0);

        if (n != 1)
                fail_msg("%u running copies (source %s, destination %s)", n,
                         guest_running(src) ? "running" : "paused",
                         dst ? (guest_running(dst) ? "running" : "paused") : "none");
        alive = guest_running(src) ? src : dst;
        wait_steps(alive, 300);
        assert_unbroken(alive, sp);
}

/* ---- Hosts, connections, and a destination in a thread ---- */

struct host {
        struct hv *hv;
        struct migrate_ledger *ledger;
        pthread_t resolvers[16];
        unsigned n_resolvers;
        int chan[2]; /* memory channels go in at [0], as a daemon's listener passes them, and out at [1] */
        uint64_t corrupt_channel_at; /* if not 0: channel 0's byte at this offset is flipped on the way */
        uint64_t stall_channels_at;  /* if not 0: every channel stops after this many bytes, kept open */
        pthread_t forwarders[MIGRATE_CHANNELS_MAX];
        unsigned n_forwarders;
        /* The lists above grow from several threads at once (one per channel): TSan saw a lost entry. */
        pthread_mutex_t lock;
};

/* Starts fn(arg) as one of the host's threads that host_close() joins. */
static void host_thread(struct host *h, pthread_t *list, unsigned *n, unsigned max, void *(*fn)(void *),
                        void *arg)
{
        pthread_mutex_lock(&h->lock);
        assert_true(*n < max);
        assert_int_equal(pthread_create(&list[*n], NULL, fn, arg), 0);
        (*n)++;
        pthread_mutex_unlock(&h->lock);
}

static void host_open(struct host *h, const char *cpus)
{
        memset(h, 0, sizeof(*h));
        pthread_mutex_init(&h->lock, NULL);
        h->hv = sim_host_open(cpus, NULL);
        assert_int_equal(migrate_ledger_new(&h->ledger), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, h->chan), 0);
}

static void host_close(struct host *h)
{
        /* The resolvers start the forwarders: once they are joined, no thread is added. */
        for (unsigned i = 0; i < h->n_resolvers; i++)
                pthread_join(h->resolvers[i], NULL);
        for (unsigned i = 0; i < h->n_forwarders; i++)
                pthread_join(h->forwarders[i], NULL);
        pthread_mutex_destroy(&h->lock);
        close(h->chan[0]);
        close(h->chan[1]);
        migrate_ledger_free(h->ledger);
        hv_close(h->hv);
}

/* The end of a test that moved g: both copies and both hosts go. */
static void end_both(struct guest *src, struct guest *dst, struct host *a, struct host *b)
{
        guest_destroy(src);
        guest_destroy(dst);
        host_close(a);
        host_close(b);
}

static void pair(int fds[2])
{
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
}

/* Loopback TCP: fds[0] connected, fds[1] accepted. */
static void tcp_pair(int fds[2])
{
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(addr);
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(l >= 0);
        assert_int_equal(bind(l, (struct sockaddr *)&addr, sizeof(addr)), 0);
        assert_int_equal(listen(l, 1), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *)&addr, &len), 0);
        fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(connect(fds[0], (struct sockaddr *)&addr, sizeof(addr)), 0);
        fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        assert_true(fds[1] >= 0);
        close(l);
}

struct dst_job {
        struct host *host;
        int fd;
        struct migrate_recv_opts opts;
        struct guest *guest;
        struct migrate_report report;
        struct peer_info remote;
        int r;
        struct svemig_error err;
        pthread_t thread;
};

static void *dst_main(void *arg)
{
        struct dst_job *j = arg;
        struct peer_info self;

        j->r = peer_info_local(j->host->hv, 0, &self, &j->err);
        if (j->r == 0)
                j->r = peer_hello(j->fd, &self, TEST_TIMEOUT_MS, &j->remote, &j->err);
        peer_info_done(&self);
        if (j->r == 0)
                j->r = migrate_receive(j->host->hv, j->fd, &j->opts, &j->guest, &j->report, &j->err);
        peer_info_done(&j->remote);
        /* As a daemon does once a connection is done with. */
        shutdown(j->fd, SHUT_RDWR);
        return NULL;
}

static void dst_start(struct dst_job *j, struct host *h, int fd, const struct migrate_recv_opts *opts)
{
        memset(j, 0, sizeof(*j));
        j->host = h;
        j->fd = fd;
        if (opts)
                j->opts = *opts;
        j->opts.ledger = h->ledger;
        j->opts.log_dirty = true;
        j->opts.channel_fd = h->chan[1];
        if (!opts)
                j->opts.max_channels = 4;
        if (!j->opts.timeout_ms)
                j->opts.timeout_ms = TEST_TIMEOUT_MS;
        if (!j->opts.request_timeout_ms)
                j->opts.request_timeout_ms = TEST_TIMEOUT_MS;
        assert_int_equal(pthread_create(&j->thread, NULL, dst_main, j), 0);
}

static void dst_join(struct dst_job *j)
{
        pthread_join(j->thread, NULL);
}

/* The source's end of the hello. */
static int src_hello(struct hv *hv, int fd, struct svemig_error *err)
{
        struct peer_info self, remote;
        int r;

        assert_int_equal(peer_info_local(hv, 0, &self, err), 0);
        r = peer_hello(fd, &self, TEST_TIMEOUT_MS, &remote, err);
        if (r == 0)
                peer_info_done(&remote);
        peer_info_done(&self);
        return r;
}

/*
 * A channel's bytes, passed on with one of them flipped (host.corrupt_channel_at),
 * or up to a point and then no more, the connection kept open (host.stall_channels_at).
 */
struct flipper {
        int from, to;
        uint64_t at, stall_at;
};

static void *flipper_main(void *arg)
{
        struct flipper *f = arg;
        uint8_t buf[65536];
        uint64_t seen = 0;
        ssize_t n;

        while ((n = read(f->from, buf, sizeof(buf))) > 0) {
                if (f->stall_at && seen + (uint64_t)n > f->stall_at)
                        n = (ssize_t)(f->stall_at - seen);
                if (f->at && f->at >= seen && f->at < seen + (uint64_t)n)
                        buf[f->at - seen] ^= 0x20;
                seen += (uint64_t)n;
                if (send(f->to, buf, (size_t)n, MSG_NOSIGNAL) != n)
                        break;
                if (f->stall_at && seen == f->stall_at) {
                        /* Silent, not gone: until the destination gives up on it. */
                        struct pollfd p = {.fd = f->to, .events = POLLIN};

                        while (poll(&p, 1, -1) > 0 && !(p.revents & (POLLHUP | POLLERR)) &&
                               recv(f->to, buf, sizeof(buf), MSG_DONTWAIT) > 0)
                                ;
                        break;
                }
        }
        close(f->from);
        close(f->to);
        free(f);
        return NULL;
}

/*
 * Hands a channel on as a daemon's listener does, through the flipper for
 * channel 0 if asked; then the flipper owns fd (returns true).
 */
static bool pass_channel(struct host *h, int fd, unsigned index)
{
        int fds[2];

        if ((h->corrupt_channel_at && index == 0) || h->stall_channels_at) {
                struct flipper *f = calloc(1, sizeof(*f));
                uint8_t msg[256];
                ssize_t n;

                /* The Channel message goes through as it is: only the frames after it are fair game. */
                pair(fds);
                n = recv(fd, msg, sizeof(msg), MSG_PEEK);
                assert_true(n >= 8);
                n = PEER_FRAME_HEAD_SIZE +
                    (ssize_t)(msg[0] | msg[1] << 8 | msg[2] << 16 | (uint32_t)msg[3] << 24);
                assert_int_equal(read(fd, msg, (size_t)n), n);
                assert_int_equal(write(fds[0], msg, (size_t)n), n);
                *f = (struct flipper){.from = fd,
                                      .to = fds[0],
                                      .at = h->corrupt_channel_at,
                                      .stall_at = h->stall_channels_at};
                host_thread(h, h->forwarders, &h->n_forwarders, MIGRATE_CHANNELS_MAX, flipper_main, f);
                assert_int_equal(migrate_channel_pass(h->chan[0], fds[1], NULL), 0);
                close(fds[1]);
                return true;
        }
        assert_int_equal(migrate_channel_pass(h->chan[0], fd, NULL), 0);
        return false;
}

/* A Resolve or a memory channel taken by host h on a new connection, as its daemon would. */
struct resolver {
        struct host *h;
        int fd;
};

static void *resolver_main(void *arg)
{
        struct resolver *rs = arg;
        struct migrate_recv_opts opts = {.ledger = rs->h->ledger, .timeout_ms = TEST_TIMEOUT_MS};
        struct migrate_served served;
        struct migrate_peeked peeked;
        struct peer_info self, remote;
        bool taken = false;

        if (peer_info_local(rs->h->hv, 0, &self, NULL) == 0 &&
            peer_hello(rs->fd, &self, TEST_TIMEOUT_MS, &remote, NULL) == 0) {
                if (migrate_peek(rs->fd, TEST_TIMEOUT_MS, &peeked, NULL) == 0 &&
                    peeked.kind == MIGRATE_SERVED_CHANNEL)
                        taken = pass_channel(rs->h, rs->fd, peeked.channel);
                else
                        (void)migrate_serve(rs->h->hv, rs->fd, &opts, &served, NULL);
                peer_info_done(&remote);
        }
        peer_info_done(&self);
        if (!taken)
                close(rs->fd);
        free(rs);
        return NULL;
}

static int reconnect(void *userdata)
{
        struct host *h = userdata;
        struct resolver *rs = calloc(1, sizeof(*rs));
        int fds[2];

        pair(fds);
        rs->h = h;
        rs->fd = fds[1];
        host_thread(h, h->resolvers, &h->n_resolvers, ELEMENTSOF(h->resolvers), resolver_main, rs);
        return fds[0];
}

/* A migration that committed, else the test fails with the reason of whichever side failed. */
static void assert_committed(int r, const struct svemig_error *err, const struct dst_job *j,
                             const struct migrate_report *rep)
{
        if (r < 0)
                fail_msg("%s", err->msg);
        if (j->r < 0)
                fail_msg("destination: %s", j->err.msg);
        assert_int_equal(rep->outcome, MIGRATE_OUTCOME_COMMITTED);
}

static struct migrate_opts base_opts(struct host *dst)
{
        return (struct migrate_opts){.guest_name = "g",
                                     .peer_name = "dst",
                                     .timeout_ms = TEST_TIMEOUT_MS,
                                     .reconnect = reconnect,
                                     .reconnect_userdata = dst};
}

/* One migration of g from its host to dst over fds; returns migrate_send()'s result. */
static int migrate(struct guest *g, struct host *dst, const int fds[2], const struct migrate_opts *opts,
                   const struct migrate_recv_opts *ropts, struct dst_job *job, struct migrate_report *rep,
                   struct svemig_error *err)
{
        int r;

        dst_start(job, dst, fds[1], ropts);
        memset(rep, 0, sizeof(*rep));
        r = src_hello(guest_host(g), fds[0], err);
        if (r == 0)
                r = migrate_send(g, fds[0], opts, rep, err);
        else
                rep->resumed = guest_running(g); /* nothing began */
        if (r == 0 || job->opts.fail_at == MIGRATE_STEP_NONE)
                (void)peer_bye(fds[0], 1000, NULL);
        close(fds[0]);
        dst_join(job);
        close(fds[1]);
        return r;
}

/* ---- Happy paths ---- */

static void test_hello(void **state)
{
        struct host a, b;
        struct svemig_error err = {0};
        struct dst_job j = {0};
        struct peer_info self, remote;
        int fds[2];

        host_open(&a, HOST_A);
        host_open(&b, HOST_B);
        pair(fds);
        j.host = &b;
        j.fd = fds[1];
        assert_int_equal(pthread_create(&j.thread, NULL, dst_main, &j), 0);
        assert_int_equal(peer_info_local(a.hv, 0, &self, &err), 0);
        assert_int_equal(peer_hello(fds[0], &self, TEST_TIMEOUT_MS, &remote, &err), 0);

        /* B as B's own hypervisor sees it. */
        {
                vqset_t want;

                assert_int_equal(vqset_parse(HOST_B, &want, &err), 0);
                assert_true(vqset_equal(&remote.vls, &want));
        }
        assert_string_equal(remote.host_name, HOST_B);
        assert_string_equal(remote.backend, "sim");
        assert_int_equal(remote.protocol_version, MIGRATE_PROTOCOL_VERSION);
        assert_true(remote.sve);
        assert_true(remote.vcpu_features & HV_FEAT_BIT(HV_FEAT_SVE));
        assert_true(remote.id_regs.n_regs > 0);
        assert_non_null(vcpu_state_find(&remote.id_regs, kvmreg_sys(3, 0, 0, 4, 4))); /* ID_AA64ZFR0_EL1 */
        assert_true(remote.mem_available > 0);
        peer_info_done(&remote);

        /* And again on demand, for a cluster view. */
        assert_int_equal(peer_request_info(fds[0], TEST_TIMEOUT_MS, &remote, &err), 0);
        assert_string_equal(remote.host_name, HOST_B);
        peer_info_done(&remote);
        assert_int_equal(peer_bye(fds[0], TEST_TIMEOUT_MS, &err), 0);
        dst_join(&j);
        /* migrate_receive() saw no migration before the Bye. */
        assert_int_equal(j.r, -ENOTCONN);
        peer_info_done(&self);
        close(fds[0]);
        close(fds[1]);
        host_close(&a);
        host_close(&b);
}

/* A peer speaking only a future protocol is refused with the versions named. */
static void test_hello_version(void **state)
{
        Svemig__Peer__Hello hello = SVEMIG__PEER__HELLO__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;
        struct host a;
        struct svemig_error err = {0};
        struct peer_info self, remote;
        struct wire w;
        int fds[2];

        host_open(&a, HOST_A);
        pair(fds);
        hello.protocol_version = 7;
        hello.min_protocol_version = 5;
        hello.host_name = "future";
        hello.svemig_version = "9.0";
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_HELLO;
        msg.hello = &hello;
        wire_init(&w, fds[1], TEST_TIMEOUT_MS);
        assert_int_equal(wire_send(&w, &msg, &err), 0);
        wire_done(&w);
        assert_int_equal(peer_info_local(a.hv, 0, &self, &err), 0);
        assert_int_equal(peer_hello(fds[0], &self, TEST_TIMEOUT_MS, &remote, &err), -EPROTONOSUPPORT);
        assert_non_null(strstr(err.msg, "5..7"));
        peer_info_done(&self);
        close(fds[0]);
        close(fds[1]);
        host_close(&a);
}

/*
 * A Migrate whose GuestSpec lists no registers and carries no device state
 * (or which has no GuestSpec), and no stream after it: refused with an
 * error. The destination once passed their NULL data to memcpy (UBSan, in
 * the ASan+UBSan tier; found by fuzz-peer).
 */
static void test_migrate_bare_request(void **state)
{
        static const uint8_t id[MIGRATE_ID_SIZE] = {1, 2, 3};
        Svemig__Peer__GuestSpec spec = SVEMIG__PEER__GUEST_SPEC__INIT;
        struct host b;

        host_open(&b, HOST_B);
        for (int with_spec = 0; with_spec < 2; with_spec++) {
                Svemig__Peer__Migrate m = SVEMIG__PEER__MIGRATE__INIT;
                PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;
                struct migrate_recv_opts opts = {.ledger = b.ledger, .timeout_ms = TEST_TIMEOUT_MS};
                struct migrate_served served;
                struct svemig_error err = {0};
                struct wire w;
                uint8_t own_id[MIGRATE_ID_SIZE];
                int fds[2];

                memcpy(own_id, id, sizeof(own_id));
                own_id[15] = (uint8_t)with_spec; /* each its own migration in the ledger */
                spec.name = "bare";
                m.id.data = own_id;
                m.id.len = sizeof(own_id);
                m.guest = with_spec ? &spec : NULL;
                msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_MIGRATE;
                msg.migrate = &m;
                pair(fds);
                wire_init(&w, fds[0], TEST_TIMEOUT_MS);
                assert_int_equal(wire_send(&w, &msg, &err), 0);
                wire_done(&w);
                shutdown(fds[0], SHUT_WR);
                assert_true(migrate_serve(b.hv, fds[1], &opts, &served, &err) < 0);
                assert_int_equal(served.kind, MIGRATE_SERVED_MIGRATE);
                assert_null(served.guest);
                assert_true(err.msg[0] != 0);
                close(fds[0]);
                close(fds[1]);
        }
        host_close(&b);
}

/*
 * A peer that sends part of a request's frame and closes: the listener's
 * peek says so at once, where it used to wait out its whole timeout
 * (found by fuzz-peer).
 */
static void test_peek_closed_mid_frame(void **state)
{
        static const uint8_t half[] = {100, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0x08, 0x01};
        struct svemig_error err = {0};
        struct migrate_peeked peeked;
        int fds[2];

        pair(fds);
        assert_int_equal(send(fds[0], half, sizeof(half), 0), (ssize_t)sizeof(half));
        shutdown(fds[0], SHUT_WR);
        /* A day: the answer must come from the close, not from the clock. */
        assert_int_equal(migrate_peek(fds[1], 86400u * 1000u, &peeked, &err), -EPIPE);
        assert_non_null(strstr(err.msg, "inside a frame"));
        close(fds[0]);
        close(fds[1]);
}

/* A peer that sends its Hello and HostInfo at once, as both sides of a hello may. */
static void fake_peer_greets(int fd, const char *host_name, unsigned top_vq, uint32_t features)
{
        Svemig__Peer__Hello hello = SVEMIG__PEER__HELLO__INIT;
        Svemig__Peer__HostInfo hi = SVEMIG__PEER__HOST_INFO__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;
        struct svemig_error err = {0};
        uint64_t vls[8] = {0};
        struct wire w;

        for (unsigned vq = 1; vq <= top_vq; vq *= 2)
                vls[(vq - 1) / 64] |= 1ull << ((vq - 1) % 64);
        hello.protocol_version = MIGRATE_PROTOCOL_VERSION;
        hello.min_protocol_version = MIGRATE_PROTOCOL_VERSION_MIN;
        hello.host_name = (char *)host_name;
        hello.svemig_version = "1.0";
        hi.host_name = (char *)host_name;
        hi.backend = "\x1b";
        hi.sve = true;
        hi.vls = (ProtobufCBinaryData){sizeof(vls), (uint8_t *)vls};
        hi.max_vq = top_vq;
        hi.vcpu_features = features;
        wire_init(&w, fd, TEST_TIMEOUT_MS);
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_HELLO;
        msg.hello = &hello;
        assert_int_equal(wire_send(&w, &msg, &err), 0);
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_HOST_INFO;
        msg.host_info = &hi;
        assert_int_equal(wire_send(&w, &msg, &err), 0);
        wire_done(&w);
}

/*
 * What a peer says is checked against the architecture (SVE stops at 2048
 * bits, vq 16; a peer claimed 65536-bit vectors) and the known features, and
 * its words are escaped: a newline in a host name forged journal lines.
 */
static void test_hello_host_facts(void **state)
{
        const struct {
                const char *name;
                unsigned top_vq;
                uint32_t features;
                int r;
                const char *why;
        } cases[] = {
                {"evil\nsvemigd: forged\xff", 16, HV_FEAT_BIT(HV_FEAT_SVE), 0, NULL},
                {"big", 512, HV_FEAT_BIT(HV_FEAT_SVE), -EBADMSG,
                 "65536-bit vectors; SVE stops at 2048 bits"},
                {"big", 32, HV_FEAT_BIT(HV_FEAT_SVE), -EBADMSG, "4096-bit vectors"},
                {"odd", 4, HV_FEAT_BIT(HV_FEAT_SVE) | (1u << 20), -EBADMSG, "vcpu features 0x100000"},
        };
        struct host a;

        host_open(&a, HOST_A);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct svemig_error err = {0};
                struct peer_info self, remote;
                int fds[2], r;

                pair(fds);
                fake_peer_greets(fds[1], cases[i].name, cases[i].top_vq, cases[i].features);
                assert_int_equal(peer_info_local(a.hv, 0, &self, &err), 0);
                r = peer_hello(fds[0], &self, TEST_TIMEOUT_MS, &remote, &err);
                assert_int_equal(r, cases[i].r);
                if (r < 0) {
                        if (!strstr(err.msg, cases[i].why))
                                fail_msg("case %zu: %s", i, err.msg);
                } else {
                        assert_string_equal(remote.host_name, "evil\\x0asvemigd: forged\\xff");
                        assert_string_equal(remote.backend, "\\x1b");
                        peer_info_done(&remote);
                }
                peer_info_done(&self);
                close(fds[0]);
                close(fds[1]);
        }
        host_close(&a);
}

/*
 * A host's stuck guests travel in its HostInfo, bounded: a list of its own
 * comes back as it was sent; a newer peer's longer list is cut to
 * PEER_STUCK_MAX with its total kept, and its words are escaped; a length
 * past the architecture's is refused.
 */
static void test_host_info_stuck(void **state)
{
        struct peer_info self = {0}, back = {0};
        struct peer_host_info hi = {0};
        struct peer_stuck st = {0}, got;
        struct svemig_error err = {0};
        Svemig__Peer__StuckGuest many[PEER_STUCK_MAX + 4], *ptrs[PEER_STUCK_MAX + 4];
        uint32_t bits[] = {128, 256, 512}, huge[] = {4096};

        (void)state;
        st.n = 2;
        st.total = 11;
        for (unsigned i = 0; i < st.n; i++) {
                snprintf(st.g[i].guest, sizeof(st.g[i].guest), "wide512");
                snprintf(st.g[i].state, sizeof(st.g[i].state), "running");
                vqset_add(&st.g[i].vls, 1);
                vqset_add(&st.g[i].vls, 4);
                snprintf(st.g[i].host, sizeof(st.g[i].host), "host%c", 'b' + i);
                snprintf(st.g[i].why, sizeof(st.g[i].why), "host%c lacks vq 4 (512-bit)", 'b' + i);
        }
        peer_info_set_stuck(&self, &st);
        peer_info_get_stuck(&self, &got);
        assert_true(peer_stuck_equal(&st, &got));
        assert_int_equal(peer_info_to_msg(&self, &hi), 0);
        hi.msg.vls = (ProtobufCBinaryData){sizeof(self.vls.w), (uint8_t *)self.vls.w};
        assert_int_equal(peer_info_from_msg(&hi.msg, &back, &err), 0);
        assert_true(peer_stuck_equal(&st, &back.stuck));
        peer_host_info_done(&hi);
        peer_info_done(&back);

        /* A newer peer's twelve, one of them with a forged journal line in its name. */
        svemig__peer__host_info__init(&hi.msg);
        hi.msg.vls = (ProtobufCBinaryData){sizeof(self.vls.w), (uint8_t *)self.vls.w};
        for (size_t i = 0; i < ELEMENTSOF(many); i++) {
                svemig__peer__stuck_guest__init(&many[i]);
                many[i].guest = i == 0 ? "evil\nsvemigd: forged" : "g";
                many[i].state = "running";
                many[i].host = "hostb";
                many[i].why = "hostb lacks vq 4 (512-bit)";
                many[i].vl_bits = bits;
                many[i].n_vl_bits = ELEMENTSOF(bits);
                ptrs[i] = &many[i];
        }
        hi.msg.stuck = ptrs;
        hi.msg.n_stuck = ELEMENTSOF(many);
        assert_int_equal(peer_info_from_msg(&hi.msg, &back, &err), 0);
        assert_int_equal(back.stuck.n, PEER_STUCK_MAX);
        assert_int_equal(back.stuck.total, ELEMENTSOF(many));
        assert_string_equal(back.stuck.g[0].guest, "evil\\x0asvemigd: forged");
        assert_true(vqset_contains(&back.stuck.g[0].vls, 4));
        peer_info_done(&back);

        many[3].vl_bits = huge;
        many[3].n_vl_bits = 1;
        assert_int_equal(peer_info_from_msg(&hi.msg, &back, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "4096-bit"));
        peer_info_done(&back);
}

static void migrate_ok(struct guest *g, struct host *dst, bool tcp, const struct spec *sp,
                       struct guest **out, struct migrate_report *rep)
{
        struct migrate_opts opts = base_opts(dst);
        struct svemig_error err = {0};
        struct dst_job j;
        int fds[2];

        if (tcp)
                tcp_pair(fds);
        else
                pair(fds);
        assert_committed(migrate(g, dst, fds, &opts, NULL, &j, rep, &err), &err, &j, rep);
        assert_non_null(j.guest);
        assert_false(guest_running(g));
        *out = j.guest;
}

static void test_migrate_running(void **state)
{
        struct host a, c;
        struct migrate_report rep;
        struct guest *g, *there;

        host_open(&a, HOST_A);
        host_open(&c, HOST_C);
        g = start_guest(a.hv, &small);
        migrate_ok(g, &c, false, &small, &there, &rep);
        assert_true(guest_running(there));
        assert_true(rep.rounds >= 2); /* at least one pre-copy pass and the stop-and-copy one */
        assert_true(rep.bytes_sent > 0 && rep.stream_bytes > 0 && rep.bytes_sent > rep.stream_bytes);
        assert_true(rep.downtime_ns > 0 && rep.downtime_ns <= rep.total_ns);
        assert_true(rep.pages_sent >= small.mem / HV_PAGE_SIZE);
        assert_one_running(g, there, &small);
        guest_destroy(g);
        guest_destroy(there);
        host_close(&a);
        host_close(&c);
}

/* Four vcpus, each with its own step count, over loopback TCP. */
static void test_migrate_tcp_multi_vcpu(void **state)
{
        const struct spec sp = {"128,256", 4, 1024 * 1024, 3};
        struct host a, b;
        struct migrate_report rep;
        struct guest *g, *there;

        host_open(&a, HOST_A);
        host_open(&b, HOST_B);
        g = start_guest(a.hv, &sp);
        migrate_ok(g, &b, true, &sp, &there, &rep);
        assert_one_running(g, there, &sp);
        guest_destroy(g);
        guest_destroy(there);
        host_close(&a);
        host_close(&b);
}

/* A failed migration: the source runs its guest on, and the destination has none. Destroys g. */
static void assert_source_kept(struct guest *g, const struct migrate_report *rep, const struct dst_job *j,
                               const struct spec *sp)
{
        assert_true(rep->resumed);
        assert_null(j->guest);
        assert_one_running(g, NULL, sp);
        guest_destroy(g);
}

/* g, running, to dst over loopback TCP with two memory channels (as many as ropts lets dst take). */
static int channel_migrate_opts(struct guest *g, struct host *dst, struct migrate_opts *opts,
                                const struct migrate_recv_opts *ropts, struct dst_job *j,
                                struct migrate_report *rep, struct svemig_error *err)
{
        int fds[2];

        opts->channels = 2;
        tcp_pair(fds);
        return migrate(g, dst, fds, opts, ropts, j, rep, err);
}

static int channel_migrate(struct guest *g, struct host *dst, const struct migrate_recv_opts *ropts,
                           migrate_progress_fn progress, void *userdata, struct dst_job *j,
                           struct migrate_report *rep, struct svemig_error *err)
{
        struct migrate_opts opts = base_opts(dst);

        opts.progress = progress;
        opts.userdata = userdata;
        return channel_migrate_opts(g, dst, &opts, ropts, j, rep, err);
}

/* Raw pages on the channels, whatever a sample of memory would say: each with a check of its own. */
static int channel_migrate_raw(struct guest *g, struct host *dst, const struct migrate_recv_opts *ropts,
                               struct dst_job *j, struct migrate_report *rep, struct svemig_error *err)
{
        struct migrate_opts opts = base_opts(dst);

        opts.compression = MIGRATE_COMPRESSION_NONE;
        return channel_migrate_opts(g, dst, &opts, ropts, j, rep, err);
}

/*
 * Memory on two channels besides the connection, over loopback TCP: every
 * page of every pass arrives (the guest dirties pages on several of the
 * grid's cells), and the guest runs on as an unbroken run.
 */
static void test_migrate_channels(void **state)
{
        const struct spec sp = {"128,256", 4, 6 * 1024 * 1024, 8};

        /* With a check per page (raw pages sent from guest memory), and per frame, as before them. */
        for (unsigned whole = 0; whole < 2; whole++) {
                const struct migrate_recv_opts ropts = {.max_channels = 4, .whole_frame_checks = whole};
                struct svemig_error err = {0};
                struct migrate_report rep;
                struct dst_job j;
                struct host a, b;
                struct guest *g;

                host_open(&a, HOST_A);
                host_open(&b, HOST_B);
                g = start_guest(a.hv, &sp);
                assert_committed(channel_migrate_raw(g, &b, &ropts, &j, &rep, &err), &err, &j, &rep);
                assert_true(rep.rounds >= 2);
                /* The memory went on the channels: the stream itself holds little more than the vcpus. */
                assert_true(rep.bytes_sent > rep.stream_bytes + 2 * 1024 * 1024);
                assert_int_equal(j.report.pages_sent, rep.pages_sent);
                assert_int_equal(j.report.zero_pages, rep.zero_pages);
                assert_one_running(g, j.guest, &sp);
                end_both(g, j.guest, &a, &b);
        }
}

/* Pages the "guest" rewrites after the first pass: one holding data becomes zero, one zero gets data. */
struct rewrite {
        struct guest *g;
        unsigned calls;
};

#define DATA_PAGE 700u /* in the grid's third cell: its channel is 0 of 2 */
#define ZERO_PAGE 900u /* in the fourth: channel 1 */

static void rewrite_page(struct guest *g, unsigned page, int byte)
{
        memset(guest_mem(g) + (size_t)page * HV_PAGE_SIZE, byte, HV_PAGE_SIZE);
        sim_vm_mark_dirty((struct sim_vm *)guest_vm(g), guest_ram_base(g) + (uint64_t)page * HV_PAGE_SIZE,
                          HV_PAGE_SIZE);
}

static int rewrite_after_pass(void *userdata, const struct migrate_progress *p)
{
        struct rewrite *rw = userdata;

        if (p->step == MIGRATE_STEP_PRECOPY && rw->calls++ == 0) {
                rewrite_page(rw->g, DATA_PAGE, 0);
                rewrite_page(rw->g, ZERO_PAGE, 0x5a);
        }
        return 0;
}

/*
 * The destination's channels skip zero pages on memory still fresh: a page
 * they wrote data into and that comes again as a zero page must be
 * cleared, and a page that was zero and comes with data written. The
 * guest writes no memory itself here, so both copies must end equal.
 */
static void test_channels_rewritten_pages(void **state)
{
        const struct spec sp = {"128,256", 2, 4 * 1024 * 1024, 0};
        struct svemig_error err = {0};
        struct migrate_report rep;
        struct rewrite rw = {0};
        struct dst_job j;
        struct host a, b;
        struct guest *g;

        host_open(&a, HOST_A);
        host_open(&b, HOST_B);
        g = make_guest(a.hv, &sp);
        rewrite_page(g, DATA_PAGE, 0xa5);
        assert_int_equal(guest_start(g, &err), 0);
        rw.g = g;
        assert_committed(channel_migrate(g, &b, NULL, rewrite_after_pass, &rw, &j, &rep, &err), &err, &j,
                         &rep);
        assert_true(rw.calls >= 1);
        assert_int_equal(guest_pause(j.guest, &err), 0);
        assert_memory_equal(guest_mem(g), guest_mem(j.guest), sp.mem);
        assert_int_equal(guest_mem(j.guest)[(size_t)DATA_PAGE * HV_PAGE_SIZE + 17], 0);
        assert_int_equal(guest_mem(j.guest)[(size_t)ZERO_PAGE * HV_PAGE_SIZE + 17], 0x5a);
        end_both(g, j.guest, &a, &b);
}

/* A destination with RAM faulted in ahead in its own process (a standby VMM's) receives into it. */
static void test_migrate_prepared_ram(void **state)
{
        const struct spec sp = {"128,256", 2, 4 * 1024 * 1024, 4};
        const uint64_t map = 8u << 20;
        uint8_t *mem =
                mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        struct migrate_recv_opts ropts = {.max_channels = 2, .ram_reserve = map, .ram_mem = mem};
        struct svemig_error err = {0};
        struct migrate_report rep;
        struct dst_job j;
        struct host a, b;
        struct guest *g;

        assert_true(mem != MAP_FAILED);
        host_open(&a, HOST_A);
        host_open(&b, HOST_B);
        g = start_guest(a.hv, &sp);
        if (channel_migrate(g, &b, &ropts, NULL, NULL, &j, &rep, &err) < 0)
                fail_msg("%s", err.msg);
        if (j.r < 0)
                fail_msg("destination: %s", j.err.msg);
        assert_ptr_equal(guest_mem(j.guest), mem);
        assert_one_running(g, j.guest, &sp);
        end_both(g, j.guest, &a, &b); /* the destination's mapping with it */
}

struct loaded_probe {
        unsigned calls;
        bool was_running;
        int answer;
};

static int probe_loaded(void *userdata, struct guest *g)
{
        struct loaded_probe *p = userdata;

        p->calls++;
        p->was_running |= guest_running(g);
        return p->answer;
}

/*
 * The destination's on_loaded: once, with the guest loaded and not yet
 * running there; a refusal fails the migration and the source keeps it.
 */
static void test_on_loaded(void **state)
{
        const struct spec sp = {"128,256", 2, 2 * 1024 * 1024, 4};

        for (int answer = 0; answer >= -ENOMEM; answer -= ENOMEM) {
                struct loaded_probe probe = {.answer = answer};
                const struct migrate_recv_opts ropts = {
                        .max_channels = 2, .on_loaded = probe_loaded, .loaded_userdata = &probe};
                struct svemig_error err = {0};
                struct migrate_report rep;
                struct dst_job j;
                struct host a, b;
                struct guest *g;
                int r;

                host_open(&a, HOST_A);
                host_open(&b, HOST_B);
                g = start_guest(a.hv, &sp);
                r = channel_migrate(g, &b, &ropts, NULL, NULL, &j, &rep, &err);
                assert_int_equal(probe.calls, 1);
                assert_false(probe.was_running);
                if (answer == 0) {
                        assert_int_equal(r, 0);
                        assert_one_running(g, j.guest, &sp);
                        guest_destroy(j.guest);
                } else {
                        assert_int_equal(r, -ENOMEM);
                        assert_non_null(strstr(err.msg, "refused"));
                        assert_source_kept(g, &rep, &j, &sp);
                        g = NULL;
                }
                guest_destroy(g);
                host_close(&a);
                host_close(&b);
        }
}

/* A destination that offers no channels (an older one) takes the memory on the one connection. */
static void test_migrate_channels_refused(void **state)
{
        const struct spec sp = {"128,256", 2, 2 * 1024 * 1024, 4};
        const struct migrate_recv_opts ropts = {.max_channels = 0};
        struct svemig_error err = {0};
        struct migrate_report rep;
        struct dst_job j;
        struct host a, b;
        struct guest *g;

        host_open(&a, HOST_A);
        host_open(&b, HOST_B);
        g = start_guest(a.hv, &sp);
        assert_committed(channel_migrate(g, &b, &ropts, NULL, NULL, &j, &rep, &err), &err, &j, &rep);
        assert_true(rep.stream_bytes > 2 * 1024 * 1024 / 2);
        assert_int_equal(b.n_resolvers, 0); /* no channel was opened */
        assert_one_running(g, j.guest, &sp);
        end_both(g, j.guest, &a, &b);
}

/* Guest memory that LZ4 cannot shrink and that the workload never writes (spec with no dirty pages). */
static uint64_t pattern_word(size_t i)
{
        uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull;

        x ^= x >> 31;
        return x * 0xbf58476d1ce4e5b9ull;
}

static void fill_pattern(struct guest *g)
{
        uint64_t *w = (uint64_t *)guest_mem(g);

        for (size_t i = 0; i < guest_mem_size(g) / sizeof(*w); i++)
                w[i] = pattern_word(i);
}

static bool holds_pattern(struct guest *g)
{
        const uint64_t *w = (const uint64_t *)guest_mem(g);

        for (size_t i = 0; i < guest_mem_size(g) / sizeof(*w); i++)
                if (w[i] != pattern_word(i))
                        return false;
        return true;
}

/*
 * A byte of a channel's frames flipped on the way: at the head, in the
 * fields, in the first frame's third page and in a later frame; with a
 * check per page and with a check per frame (a destination that asks for
 * that). The destination's channel thread catches it, the migration fails
 * with the channel's reason on both sides, and the guest runs on at the
 * source, its memory whole. It writes no memory, so no page comes again: a
 * damaged page that does come again heals (test_channel_page_heals).
 */
static void test_channel_corrupt(void **state)
{
        const struct spec sp = {"128,256", 2, 4 * 1024 * 1024, 0};
        const uint64_t at[] = {3, 20 + 100, 20 + 4096 * 3, 1 << 20};

        for (unsigned whole = 0; whole < 2; whole++)
                for (size_t i = 0; i < ELEMENTSOF(at); i++) {
                        const struct migrate_recv_opts ropts = {.max_channels = 2,
                                                                .whole_frame_checks = whole};
                        struct svemig_error err = {0};
                        struct migrate_report rep;
                        struct dst_job j;
                        struct host a, b;
                        struct guest *g;

                        host_open(&a, HOST_A);
                        host_open(&b, HOST_B);
                        b.corrupt_channel_at = at[i];
                        g = make_guest(a.hv, &sp);
                        fill_pattern(g);
                        assert_int_equal(guest_start(g, &err), 0);
                        if (channel_migrate_raw(g, &b, &ropts, &j, &rep, &err) == 0)
                                fail_msg("byte %llu flipped (%s checks): the migration went through",
                                         (unsigned long long)at[i], whole ? "frame" : "page");
                        assert_true(j.r < 0);
                        assert_non_null(strstr(j.err.msg, "memory channel 0"));
                        assert_non_null(strstr(err.msg, "memory channel 0"));
                        /* A page that fails its own check is only known lost once the channels end. */
                        if (!whole && at[i] > 20 + 4096)
                                assert_non_null(strstr(j.err.msg, "did not come again"));
                        assert_true(rep.resumed);
                        assert_null(j.guest);
                        wait_steps(g, 300);
                        assert_int_equal(guest_pause(g, &err), 0);
                        assert_true(holds_pattern(g));
                        guest_destroy(g);
                        host_close(&a);
                        host_close(&b);
                }
}

/*
 * After the first pass's dirty-log read, the guest runs 100 steps before
 * the source goes on: at 64 of its 128 pages a step it has then rewritten
 * every page, so each comes again, however little CPU the guest got while
 * the pass was sent.
 */
static int rewrite_every_page(void *userdata, const struct migrate_progress *p)
{
        if (p->step == MIGRATE_STEP_PRECOPY && p->round == 1)
                wait_steps(userdata, 100);
        return 0;
}

/*
 * A page damaged on the way in its own check (FRAME_F_PAGE_CHECKS), as a
 * page the guest writes while it is sent is: the guest writes it again, so
 * it comes again in a later pass, and the migration ends as an unbroken run.
 */
static void test_channel_page_heals(void **state)
{
        const struct spec sp = {"128,256", 1, 512 * 1024, 64};
        const struct migrate_recv_opts ropts = {.max_channels = 2};
        struct svemig_error err = {0};
        struct migrate_report rep;
        struct migrate_opts opts;
        struct dst_job j;
        struct host a, b;
        struct guest *g;

        host_open(&a, HOST_A);
        host_open(&b, HOST_B);
        b.corrupt_channel_at = 20 + 4096 * 3;
        g = start_guest(a.hv, &sp);
        opts = base_opts(&b);
        opts.compression = MIGRATE_COMPRESSION_NONE;
        opts.progress = rewrite_every_page;
        opts.userdata = g;
        assert_committed(channel_migrate_opts(g, &b, &opts, &ropts, &j, &rep, &err), &err, &j, &rep);
        assert_true(j.report.torn_pages >= 1);
        assert_one_running(g, j.guest, &sp);
        end_both(g, j.guest, &a, &b);
}

/*
 * A source that falls silent in the middle of pre-copy, its connections
 * open (a host gone without a word): the destination's channels give up
 * once none has had data for its timeout, and say so; the source is told
 * (Abort) and keeps its guest running.
 */
static void test_channels_silent_source(void **state)
{
        const struct spec sp = {"128,256", 2, 8 * 1024 * 1024, 4};
        /*
         * The whole test's timeout, not a short one: every wait of the destination has it, and at
         * 1.5 s one before the stall (the channels' accept, under TSan on a loaded machine) ran out
         * first, with another reason.
         */
        const struct migrate_recv_opts ropts = {.max_channels = 2, .timeout_ms = TEST_TIMEOUT_MS};
        struct svemig_error err = {0};
        struct migrate_report rep;
        struct dst_job j;
        struct host a, b;
        struct guest *g;

        host_open(&a, HOST_A);
        host_open(&b, HOST_B);
        b.stall_channels_at = 1 << 20;
        g = start_guest(a.hv, &sp);
        assert_true(channel_migrate(g, &b, &ropts, NULL, NULL, &j, &rep, &err) < 0);
        assert_int_equal(j.r, -ETIMEDOUT);
        assert_non_null(strstr(j.err.msg, "no data from the source on any memory channel"));
        assert_int_equal(rep.failed_step, MIGRATE_STEP_PRECOPY);
        assert_source_kept(g, &rep, &j, &sp);
        host_close(&a);
        host_close(&b);
}

/* A paused guest moves in one pass and stays paused. */
static void test_migrate_paused(void **state)
{
        struct host a, c;
        struct svemig_error err = {0};
        struct migrate_report rep;
        struct guest *g, *there;

        host_open(&a, HOST_A);
        host_open(&c, HOST_C);
        g = start_guest(a.hv, &small);
        assert_int_equal(guest_pause(g, &err), 0);
        migrate_ok(g, &c, false, &small, &there, &rep);
        assert_int_equal(rep.rounds, 1);
        assert_false(guest_running(there));
        assert_int_equal(guest_start(there, &err), 0);
        assert_one_running(g, there, &small);
        guest_destroy(g);
        guest_destroy(there);
        host_close(&a);
        host_close(&c);
}

/* A -> B -> C -> A, running all the way. */
static void test_chain(void **state)
{
        struct host h[3];
        struct migrate_report rep;
        struct guest *g, *next;
        const int order[] = {1, 2, 0};

        host_open(&h[0], HOST_A);
        host_open(&h[1], HOST_B);
        host_open(&h[2], HOST_C);
        g = start_guest(h[0].hv, &small);
        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                migrate_ok(g, &h[order[i]], false, &small, &next, &rep);
                assert_ptr_equal(guest_host(next), h[order[i]].hv);
                guest_destroy(g);
                g = next;
                wait_steps(g, 300);
        }
        assert_one_running(g, NULL, &small);
        guest_destroy(g);
        for (unsigned i = 0; i < 3; i++)
                host_close(&h[i]);
}

/* ---- Refusals and the pre-flight check ---- */

static int check(struct guest *g, struct host *dst, const struct migrate_recv_opts *ropts,
                 struct svemig_error *err)
{
        struct migrate_opts opts = base_opts(dst);
        struct dst_job j;
        int fds[2], r;

        pair(fds);
        dst_start(&j, dst, fds[1], ropts);
        assert_int_equal(src_hello(guest_host(g), fds[0], err), 0);
        r = migrate_check_send(g, fds[0], &opts, err);
        assert_int_equal(peer_bye(fds[0], TEST_TIMEOUT_MS, NULL), 0);
        dst_join(&j);
        /* The destination answered, then saw the Bye: nothing came over. */
        assert_int_equal(j.r, -ENOTCONN);
        assert_null(j.guest);
        close(fds[0]);
        close(fds[1]);
        return r;
}

static void test_check(void **state)
{
        const struct spec at512 = {"128,256,512", 1, 512 * 1024, 2};
        struct host a, a61, b, c;
        struct svemig_error err = {0};
        struct guest *g, *g512;
        struct migrate_recv_opts tight = {.mem_limit = 256 * 1024};

        host_open(&a, HOST_A);
        host_open(&b, HOST_B);
        host_open(&c, HOST_C);
        memset(&a61, 0, sizeof(a61));
        a61.hv = sim_host_open(HOST_A, "6.1");
        assert_int_equal(migrate_ledger_new(&a61.ledger), 0);
        g = start_guest(a.hv, &small);
        g512 = start_guest(a.hv, &at512);

        assert_int_equal(check(g, &b, NULL, &err), 0);
        assert_int_equal(check(g, &c, NULL, &err), 0);

        /* 512 bits to a host without them: vq 4 missing. */
        assert_int_equal(check(g512, &b, NULL, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "vq 4 (512-bit) is missing"));
        /* 512 bits to a host with 384 too: vq 3 is extra and cannot be hidden. */
        assert_int_equal(check(g512, &c, NULL, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "vq 3 (384-bit) is offered by this host below"));
        /*
         * A host with another kernel: the registers only 6.12 lists cannot
         * matter to this guest (regdiff.h), but 6.1 cannot present 6.12's
         * ID registers.
         */
        assert_int_equal(check(g, &a61, NULL, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "ID register"));
        /* Not enough memory. */
        assert_int_equal(check(g, &c, &tight, &err), -ENOMEM);
        assert_non_null(strstr(err.msg, "not enough memory"));

        /* Checking moved nothing and stopped nothing. */
        assert_true(guest_running(g) && guest_running(g512));
        guest_destroy(g512);
        assert_one_running(g, NULL, &small);
        guest_destroy(g);
        host_close(&a);
        host_close(&a61);
        host_close(&b);
        host_close(&c);
}

/* A host whose ISAR0 differs: an ID-register difference, named. */
static void test_check_id_reg(void **state)
{
        const vqset_t *maps;
        vqset_t map;
        struct hv_sim_id_reg zfr0 = {.id = 0, .value = 0};
        struct hv_config cfg = {.backend = HV_BACKEND_SIM};
        struct svemig_error err = {0};
        struct host a, odd;
        struct guest *g;

        host_open(&a, HOST_A);
        assert_int_equal(vqset_parse(HOST_A, &map, &err), 0);
        maps = &map;
        zfr0.id = kvmreg_sys(3, 0, 0, 6, 0); /* ID_AA64ISAR0_EL1: another CPU's instructions */
        zfr0.value = 0x1234;
        cfg.sim.cpu_maps = maps;
        cfg.sim.n_cpus = 1;
        cfg.sim.host_name = "odd";
        cfg.sim.id_regs = &zfr0;
        cfg.sim.n_id_regs = 1;
        memset(&odd, 0, sizeof(odd));
        assert_int_equal(hv_open(&cfg, &odd.hv, &err), 0);
        assert_int_equal(migrate_ledger_new(&odd.ledger), 0);
        g = start_guest(a.hv, &small);
        assert_int_equal(check(g, &odd, NULL, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "ID register"));
        guest_destroy(g);
        host_close(&a);
        host_close(&odd);
}

/* The guest at 512 bits to B: refused at the header, with the reason, and nothing moved. */
static void test_refused(void **state)
{
        const struct spec at512 = {"128,256,512", 1, 512 * 1024, 2};
        struct host a, b;
        struct migrate_opts opts;
        struct svemig_error err = {0};
        struct migrate_report rep;
        struct dst_job j;
        struct guest *g;
        int fds[2];

        host_open(&a, HOST_A);
        host_open(&b, HOST_B);
        g = start_guest(a.hv, &at512);
        opts = base_opts(&b);
        pair(fds);
        assert_int_equal(migrate(g, &b, fds, &opts, NULL, &j, &rep, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "refused"));
        assert_non_null(strstr(err.msg, "vq 4 (512-bit) is missing"));
        assert_int_equal(rep.failed_step, MIGRATE_STEP_VERDICT);
        assert_int_equal(rep.outcome, MIGRATE_OUTCOME_NONE);
        assert_true(rep.resumed);
        assert_int_equal(rep.pages_sent, 0);
        assert_true(rep.bytes_sent < at512.mem / 4);
        assert_null(j.guest);
        assert_true(j.r < 0);
        assert_one_running(g, NULL, &at512);
        guest_destroy(g);
        host_close(&a);
        host_close(&b);
}

/* ---- Convergence ---- */

static void test_policy(void **state)
{
        struct converge_opts c;
        struct converge_verdict v;
        struct converge_round r = {.round = 1,
                                   .dirty_pages = 1000,
                                   .round_ns = 100000000,
                                   .sent_bytes = 4096000,
                                   .link_bps = 40960000, /* 10000 pages/s */
                                   .bytes_per_page = 4096};

        converge_opts_from(NULL, &c);
        /* 1000 pages at 10000 pages/s: 100 ms > 10 ms; dirtied all it sent: throttle. */
        converge_decide(&c, &r, &v);
        assert_int_equal(v.action, CONVERGE_THROTTLE);
        assert_int_equal(v.throttle_pct, 20);
        assert_int_equal(v.expected_downtime_ns, 100000000);
        r.throttle_pct = 20;
        converge_decide(&c, &r, &v);
        assert_int_equal(v.throttle_pct, 30);
        r.throttle_pct = 99;
        converge_decide(&c, &r, &v);
        assert_int_equal(v.action, CONVERGE_CONTINUE);
        /* The throttle worked: 50 pages left, 5 ms. */
        r.dirty_pages = 50;
        converge_decide(&c, &r, &v);
        assert_int_equal(v.action, CONVERGE_STOP_COPY);
        /* Out of rounds: within the limit, finish; over it, give up with the numbers. */
        r.round = c.max_rounds;
        r.dirty_pages = 2000;
        converge_decide(&c, &r, &v);
        assert_int_equal(v.action, CONVERGE_STOP_COPY);
        r.dirty_pages = 20000;
        converge_decide(&c, &r, &v);
        assert_int_equal(v.action, CONVERGE_GIVE_UP);
        assert_non_null(strstr(v.reason, "did not converge"));
        /* Nothing dirty: stop and copy even when the vcpus alone take longer than the target. */
        r.round = 1;
        r.dirty_pages = 0;
        r.fixed_bytes = 4096000; /* 100 ms at this link */
        converge_decide(&c, &r, &v);
        assert_int_equal(v.action, CONVERGE_STOP_COPY);
        assert_int_equal(v.expected_downtime_ns, 100000000);
        r.fixed_bytes = 0;
        r.dirty_pages = 20000;
        /* Without auto-converge it never throttles. */
        c.auto_converge = false;
        r.round = 1;
        r.throttle_pct = 0;
        converge_decide(&c, &r, &v);
        assert_int_equal(v.action, CONVERGE_CONTINUE);
}

/* The adaptive compression choice: raw where the link outruns the workers, LZ4 where it is slow. */
static void test_compression_decide(void **state)
{
        /* The hpc image's figures: LZ4 leaves 60%; two workers compress 1.2 GB/s. */
        struct compression_input in = {.ratio = 0.6, .compress_bps = 1200000000};

        /* Unknown link: raw until a piece has measured it. */
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        /* Loopback, 2 GB/s: compressing would be the bottleneck. */
        in.link_bps = 2000000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        /* A link as fast as the workers: LZ4 would gain nothing at all. */
        in.link_bps = 1200000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        /* A capped or slow link, 200 MB/s: 40% fewer bytes on it, the workers keep up. */
        in.link_bps = 200000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_LZ4);
        /* Inside the margin (LZ4 needs 10% less time than raw): 0.6/L against 0.9/L. */
        in.link_bps = 600000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_LZ4);
        /* A slow link but slow workers too (one weak CPU): raw. */
        in.compress_bps = 150000000;
        in.link_bps = 200000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        /* Memory LZ4 cannot shrink by 10% never pays, however slow the link. */
        in = (struct compression_input){.ratio = 0.95, .compress_bps = 1200000000, .link_bps = 1000000};
        assert_false(compression_may_pay(&in));
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        in.ratio = 0.5;
        assert_true(compression_may_pay(&in));
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_LZ4);
        /*
         * Measured: the other way is tried on the next piece, then what each
         * moved end to end decides, whatever the model said (a host whose
         * CPUs are busy with other work), and the slower way is tried again
         * once its figure is 2 s old (times in ns).
         */
        in = (struct compression_input){.ratio = 0.6, .compress_bps = 1200000000, .link_bps = 2000000000};
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        in.raw_mem_bps = 300000000;
        in.raw_at_ns = in.now_ns = 10000000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_LZ4);
        in.lz4_mem_bps = 250000000;
        in.lz4_at_ns = in.now_ns = 10100000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        /* Raw measured again and again: LZ4's figure ages until it is tried again, at 2 s. */
        in.raw_at_ns = in.now_ns = 12000000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        in.raw_at_ns = in.now_ns = 12100000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_LZ4);
        in.lz4_mem_bps = 450000000;
        in.lz4_at_ns = in.now_ns = 12200000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_LZ4);
        /* Now raw is the slower way, tried again once its figure (12.1 s) is 2 s old. */
        in.lz4_at_ns = in.now_ns = 14000000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_LZ4);
        in.lz4_at_ns = in.now_ns = 14100000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        /* LZ4 must beat raw by the margin (10%) to be kept: 2.0 GB/s raw against 2.1 GB/s LZ4 stays raw. */
        in = (struct compression_input){.ratio = 0.6, .compress_bps = 1200000000, .link_bps = 2500000000};
        in.raw_mem_bps = 2000000000;
        in.lz4_mem_bps = 2100000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        /* A capped link starts with LZ4 and tries raw next. */
        in = (struct compression_input){.ratio = 0.6, .compress_bps = 1200000000, .link_bps = 200000000};
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_LZ4);
        in.lz4_mem_bps = 330000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        /* A measurement never revives LZ4 on memory it does not shrink. */
        in.ratio = 0.95;
        in.raw_mem_bps = 200000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        in.ratio = 0.5;
        /*
         * Stop-and-copy after a pre-copy: never the other way on trial,
         * however old its figure; the faster one measured, or the only one.
         */
        in = (struct compression_input){.ratio = 0.6, .compress_bps = 1200000000, .link_bps = 2000000000};
        in.raw_mem_bps = 300000000;
        in.no_trial = true;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        in.lz4_mem_bps = 450000000;
        in.now_ns = 30000000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_LZ4);
        in.lz4_mem_bps = 250000000;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
        in.raw_mem_bps = 0;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_LZ4);
        in.ratio = 0.5;
        /* No measurement of the workers (an all-zero sample): nothing to compress. */
        in.compress_bps = 0;
        assert_int_equal(compression_decide(&in), MIGRATE_COMPRESSION_NONE);
}

struct trace {
        unsigned throttles[64];
        unsigned n;
        unsigned precopy_calls;
};

static int record(void *userdata, const struct migrate_progress *p)
{
        struct trace *t = userdata;

        if (p->step == MIGRATE_STEP_PRECOPY) {
                t->precopy_calls++;
                if (t->n < ELEMENTSOF(t->throttles))
                        t->throttles[t->n++] = p->throttle_pct;
        }
        return 0;
}

/*
 * A guest that dirties its memory faster than a capped link carries it: the
 * source throttles it step by step, then finishes within the downtime limit.
 */
static void test_throttle(void **state)
{
        const struct spec busy = {"128,256", 1, 256 * 1024, 8};
        struct host a, c;
        struct migrate_opts opts;
        struct svemig_error err = {0};
        struct migrate_report rep;
        struct trace t = {0};
        struct dst_job j;
        struct guest *g;
        int fds[2];

        host_open(&a, HOST_A);
        host_open(&c, HOST_C);
        g = start_guest(a.hv, &busy);
        opts = base_opts(&c);
        opts.max_bandwidth = 2u << 20;
        opts.compression = MIGRATE_COMPRESSION_NONE;
        opts.max_rounds = 5;
        opts.downtime_limit_ms = 60000;
        opts.progress = record;
        opts.userdata = &t;
        pair(fds);
        assert_committed(migrate(g, &c, fds, &opts, NULL, &j, &rep, &err), &err, &j, &rep);
        /* Progressive: 0, then 20, 30, ... as the passes fail to shrink the dirty set. */
        assert_true(rep.throttle_pct >= 20);
        assert_true(t.n >= 2);
        for (unsigned i = 1; i < t.n; i++)
                assert_true(t.throttles[i] >= t.throttles[i - 1]);
        assert_int_equal(t.throttles[0], 0);
        assert_int_equal(t.throttles[1], 20);
        assert_true(rep.link_bps > 0 && rep.link_bps < (4u << 20));
        assert_one_running(g, j.guest, &busy);
        end_both(g, j.guest, &a, &c);
}

/* No auto-converge, a tight limit: the migration gives up, says why, and the guest runs on here. */
static void test_no_convergence(void **state)
{
        const struct spec busy = {"128,256", 1, 256 * 1024, 8};
        struct host a, c;
        struct migrate_opts opts;
        struct svemig_error err = {0};
        struct migrate_report rep;
        struct dst_job j;
        struct guest *g;
        int fds[2];

        host_open(&a, HOST_A);
        host_open(&c, HOST_C);
        g = start_guest(a.hv, &busy);
        opts = base_opts(&c);
        opts.max_bandwidth = 2u << 20;
        opts.compression = MIGRATE_COMPRESSION_NONE;
        opts.max_rounds = 3;
        opts.downtime_ms = 1;
        opts.downtime_limit_ms = 1;
        opts.no_auto_converge = true;
        pair(fds);
        assert_int_equal(migrate(g, &c, fds, &opts, NULL, &j, &rep, &err), -ETIME);
        assert_non_null(strstr(err.msg, "did not converge after 3 pre-copy passes"));
        assert_int_equal(rep.failed_step, MIGRATE_STEP_PRECOPY);
        assert_true(rep.resumed);
        assert_int_equal(rep.throttle_pct, 0);
        assert_null(j.guest);
        assert_one_running(g, NULL, &busy);
        guest_destroy(g);
        host_close(&a);
        host_close(&c);
}

/* ---- Faults: the test hooks (a killed source or destination) ---- */

static void run_fault(enum migrate_step src_kill, enum migrate_step dst_at, int dst_errno, bool restart_dst,
                      int *r_out, struct svemig_error *err_out)
{
        struct host a, c;
        struct migrate_opts opts;
        struct migrate_recv_opts ropts = {.fail_at = dst_at, .fail_errno = dst_errno};
        struct migrate_report rep;
        struct dst_job j;
        struct guest *g;
        int fds[2], r;

        host_open(&a, HOST_A);
        host_open(&c, HOST_C);
        g = start_guest(a.hv, &small);
        opts = base_opts(&c);
        opts.fail_at = src_kill;
        pair(fds);
        /* A killed destination comes back as a new process, without its ledger. */
        dst_start(&j, &c, fds[1], &ropts);
        assert_int_equal(src_hello(a.hv, fds[0], err_out), 0);
        if (restart_dst) {
                /* Resolve against the restarted process: swap the ledger the resolvers see. */
                struct migrate_ledger *old = c.ledger;

                assert_int_equal(migrate_ledger_new(&c.ledger), 0);
                r = migrate_send(g, fds[0], &opts, &rep, err_out);
                dst_join(&j);
                migrate_ledger_free(old);
        } else {
                r = migrate_send(g, fds[0], &opts, &rep, err_out);
                close(fds[0]);
                dst_join(&j);
                fds[0] = -1;
        }
        if (fds[0] >= 0)
                close(fds[0]);
        close(fds[1]);
        *r_out = r;

        if (src_kill != MIGRATE_STEP_NONE) {
                /* A killed source: what it left does not run; the destination runs it only after COMMIT. */
                assert_int_equal(r, -ECANCELED);
                if (src_kill == MIGRATE_STEP_ACK) {
                        assert_non_null(j.guest);
                        if (guest_running(g))
                                fail_msg("the killed source's guest runs");
                        assert_one_running(g, j.guest, &small);
                } else {
                        assert_null(j.guest);
                        assert_true(j.r < 0);
                        /* Its last state is intact: a restart from it loses nothing. */
                        if (!guest_running(g))
                                assert_int_equal(guest_start(g, NULL), 0);
                        assert_one_running(g, NULL, &small);
                }
        } else {
                /* A failing destination: the source has the guest back. */
                assert_true(r < 0);
                assert_null(j.guest);
                assert_true(rep.resumed);
                assert_one_running(g, NULL, &small);
        }
        end_both(g, j.guest, &a, &c);
}

static void test_source_killed(void **state)
{
        static const enum migrate_step steps[] = {MIGRATE_STEP_REQUEST, MIGRATE_STEP_VERDICT,
                                                  MIGRATE_STEP_PRECOPY, MIGRATE_STEP_STOP_COPY,
                                                  MIGRATE_STEP_COMMIT,  MIGRATE_STEP_ACK};
        struct svemig_error err;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                memset(&err, 0, sizeof(err));
                run_fault(steps[i], MIGRATE_STEP_NONE, 0, false, &r, &err);
                assert_non_null(strstr(err.msg, "source killed"));
        }
}

static void test_destination_killed(void **state)
{
        static const enum migrate_step steps[] = {
                MIGRATE_STEP_REQUEST, MIGRATE_STEP_VERDICT, MIGRATE_STEP_PRECOPY, MIGRATE_STEP_STOP_COPY,
                MIGRATE_STEP_LOADED,  MIGRATE_STEP_COMMIT,  MIGRATE_STEP_ACK};
        struct svemig_error err;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                memset(&err, 0, sizeof(err));
                run_fault(MIGRATE_STEP_NONE, steps[i], 0, true, &r, &err);
        }
}

/* The destination runs out of memory in the middle of the stream: the source shows why. */
static void test_destination_oom(void **state)
{
        struct svemig_error err = {0};
        int r;

        run_fault(MIGRATE_STEP_NONE, MIGRATE_STEP_PRECOPY, ENOMEM, false, &r, &err);
        assert_int_equal(r, -ENOMEM);
        assert_non_null(strstr(err.msg, "destination dst stopped at pre-copy"));
        assert_non_null(strstr(err.msg, "Cannot allocate memory"));
}

/* ---- Faults on the wire: a proxy between the two ---- */

enum proxy_mode {
        PROXY_RECORD,
        PROXY_CUT,     /* both directions end once a limit is reached */
        PROXY_CORRUPT, /* one byte flipped */
        PROXY_STALL,   /* nothing more is forwarded, nothing is closed: a dead peer */
};

struct proxy {
        enum proxy_mode mode;
        int src, dst; /* the proxy's ends */
        /* Limits: bytes source->destination, destination->source. UINT64_MAX = none. */
        uint64_t s2d_limit, d2s_limit;
        /* Once d2s has passed d2s_mark, allow s2d_extra more bytes source->destination. */
        uint64_t d2s_mark, s2d_extra;
        bool corrupt_d2s;
        bool tcp; /* TCP between the source and the proxy; a cut is a reset */
        uint64_t s2d, d2s;
        uint64_t s2d_at_mark;
        bool marked;
        /* Destination->source frame ends, as recorded. */
        uint64_t d2s_ends[16];
        unsigned n_ends;
        uint8_t head[8];
        uint64_t next_end;
        int stop[2];
        pthread_t thread;
};

static void proxy_end(struct proxy *p)
{
        if (p->tcp) {
                /* A reset, not a close: the source's next call fails with ECONNRESET. */
                struct linger lg = {.l_onoff = 1, .l_linger = 0};

                setsockopt(p->src, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
                close(p->src);
                p->src = -1;
        } else
                shutdown(p->src, SHUT_RDWR);
        shutdown(p->dst, SHUT_RDWR);
}

static void record_frames(struct proxy *p, uint64_t start, const uint8_t *buf, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                uint64_t off = start + i;

                if (off >= p->next_end && off < p->next_end + 8)
                        p->head[off - p->next_end] = buf[i];
                if (off == p->next_end + 7) {
                        uint64_t len =
                                p->head[0] | p->head[1] << 8 | p->head[2] << 16 | (uint64_t)p->head[3] << 24;

                        p->next_end += 8 + len;
                        if (p->n_ends < ELEMENTSOF(p->d2s_ends))
                                p->d2s_ends[p->n_ends++] = p->next_end;
                }
        }
}

enum fwd {
        FWD_OK,
        FWD_EOF,   /* that side closed: the close was passed on */
        FWD_LIMIT, /* the limit was reached */
};

/* Forwards what is there from 'from' to 'to'. */
static enum fwd forward(struct proxy *p, int from, int to, bool s2d)
{
        uint8_t buf[65536];
        uint64_t *count = s2d ? &p->s2d : &p->d2s;
        uint64_t limit = s2d ? p->s2d_limit : p->d2s_limit;
        ssize_t n = recv(from, buf, sizeof(buf), MSG_DONTWAIT);
        size_t k;

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return FWD_OK;
        if (n <= 0) {
                shutdown(to, SHUT_WR);
                return FWD_EOF;
        }
        if (s2d && p->marked)
                limit = MIN(limit, p->s2d_at_mark + p->s2d_extra);
        if (p->mode == PROXY_RECORD && !s2d)
                record_frames(p, p->d2s, buf, (size_t)n);
        k = (size_t)n;
        if (p->mode == PROXY_CUT || p->mode == PROXY_STALL)
                k = *count >= limit ? 0 : (size_t)MIN((uint64_t)n, limit - *count);
        if (p->mode == PROXY_CORRUPT && s2d != p->corrupt_d2s && *count <= limit &&
            limit < *count + (uint64_t)n)
                buf[limit - *count] ^= 0x40;
        for (size_t off = 0; off < k;) {
                ssize_t w = send(to, buf + off, k - off, MSG_NOSIGNAL);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return FWD_EOF;
                off += (size_t)w;
        }
        *count += k;
        if (!s2d && !p->marked && p->d2s >= p->d2s_mark) {
                p->marked = true;
                p->s2d_at_mark = p->s2d;
        }
        return k < (size_t)n ? FWD_LIMIT : FWD_OK;
}

static void *proxy_main(void *arg)
{
        struct proxy *p = arg;
        bool src_open = true, dst_open = true;

        while (src_open || dst_open) {
                struct pollfd fds[3] = {{.fd = p->src, .events = src_open ? POLLIN : 0},
                                        {.fd = p->dst, .events = dst_open ? POLLIN : 0},
                                        {.fd = p->stop[0], .events = POLLIN}};
                enum fwd f = FWD_OK;

                if (poll(fds, 3, -1) < 0)
                        continue;
                if (fds[2].revents)
                        return NULL;
                if (fds[0].revents && src_open) {
                        f = forward(p, p->src, p->dst, true);
                        if (f == FWD_EOF)
                                src_open = false;
                }
                if (f != FWD_LIMIT && fds[1].revents && dst_open) {
                        f = forward(p, p->dst, p->src, false);
                        if (f == FWD_EOF)
                                dst_open = false;
                }
                if (f == FWD_LIMIT && p->mode == PROXY_CUT) {
                        proxy_end(p);
                        return NULL;
                }
                if (f == FWD_LIMIT)
                        break; /* PROXY_STALL */
        }
        /* A dead peer (or both closed): the connections stay as they are until the test is over. */
        {
                struct pollfd f = {.fd = p->stop[0], .events = POLLIN};

                while (poll(&f, 1, -1) < 0)
                        ;
        }
        return NULL;
}

/* Source end in fds[0], destination end in fds[1], the proxy between. */
static void proxy_start(struct proxy *p, int fds[2])
{
        int a[2], b[2];

        if (p->tcp)
                tcp_pair(a);
        else
                pair(a);
        pair(b);
        fds[0] = a[0];
        p->src = a[1];
        fds[1] = b[0];
        p->dst = b[1];
        assert_int_equal(pipe(p->stop), 0);
        assert_int_equal(pthread_create(&p->thread, NULL, proxy_main, p), 0);
}

static void proxy_stop(struct proxy *p)
{
        assert_int_equal(write(p->stop[1], "x", 1), 1);
        pthread_join(p->thread, NULL);
        if (p->src >= 0)
                close(p->src);
        close(p->dst);
        close(p->stop[0]);
        close(p->stop[1]);
}

static struct proxy proxy_new(enum proxy_mode mode)
{
        return (struct proxy){
                .mode = mode, .s2d_limit = UINT64_MAX, .d2s_limit = UINT64_MAX, .d2s_mark = UINT64_MAX};
}

/*
 * One migration through proxy p. Whatever p does, exactly one copy runs
 * afterwards, and it equals an unbroken run.
 */
static int through(struct proxy *p, unsigned timeout_ms, struct svemig_error *err,
                   struct migrate_report *rep)
{
        struct host a, c;
        struct migrate_opts opts;
        struct migrate_recv_opts ropts = {.timeout_ms = timeout_ms, .request_timeout_ms = timeout_ms};
        struct dst_job j;
        struct guest *g;
        int fds[2], r;

        host_open(&a, HOST_A);
        host_open(&c, HOST_C);
        g = start_guest(a.hv, &small);
        opts = base_opts(&c);
        opts.timeout_ms = timeout_ms;
        proxy_start(p, fds);
        r = migrate(g, &c, fds, &opts, &ropts, &j, rep, err);
        proxy_stop(p);
        if (r < 0 && getenv("TEST_MIGRATE_VERBOSE"))
                print_message("source: %s\ndestination: %s\n", err->msg, j.err.msg);
        if (r == 0)
                assert_non_null(j.guest);
        assert_one_running(g, j.guest, &small);
        end_both(g, j.guest, &a, &c);
        return r;
}

/* A clean run through a recording proxy: where the destination's messages end. */
static struct proxy recorded(void)
{
        struct proxy p = proxy_new(PROXY_RECORD);
        struct svemig_error err = {0};
        struct migrate_report rep;

        if (through(&p, TEST_TIMEOUT_MS, &err, &rep) < 0)
                fail_msg("%s", err.msg);
        print_message("recorded: %llu bytes to the destination, %llu back\n", (unsigned long long)p.s2d,
                      (unsigned long long)p.d2s);
        /* Hello, HostInfo, Verdict, Loaded, Ack. */
        assert_int_equal(p.n_ends, 5);
        return p;
}

static void test_wire_cuts(void **state)
{
        struct proxy rec = recorded();
        uint64_t loaded_end = rec.d2s_ends[3], ack_end = rec.d2s_ends[4];
        /* Fixed offsets: how long a stream is varies from run to run with the running guest. */
        uint64_t s2d_cuts[] = {0, 3, 60, 300, 2000, 5000, 20000, 100000, 400000};
        uint64_t d2s_cuts[] = {0,
                               5,
                               rec.d2s_ends[1],
                               rec.d2s_ends[2] - 1,
                               rec.d2s_ends[2],
                               loaded_end - 1,
                               loaded_end,
                               ack_end - 1};
        struct svemig_error err;
        struct migrate_report rep;
        unsigned committed = 0, kept = 0;

        for (size_t i = 0; i < ELEMENTSOF(s2d_cuts); i++) {
                struct proxy p = proxy_new(PROXY_CUT);

                p.s2d_limit = s2d_cuts[i];
                memset(&err, 0, sizeof(err));
                if (through(&p, TEST_TIMEOUT_MS, &err, &rep) == 0) {
                        /* This run's stream was shorter than the recorded one: the cut never came. */
                        assert_true(p.s2d < p.s2d_limit);
                        continue;
                }
                assert_true(rep.resumed);
                kept++;
        }
        for (size_t i = 0; i < ELEMENTSOF(d2s_cuts); i++) {
                struct proxy p = proxy_new(PROXY_CUT);
                int r;

                p.d2s_limit = d2s_cuts[i];
                memset(&err, 0, sizeof(err));
                r = through(&p, TEST_TIMEOUT_MS, &err, &rep);
                /* The Ack lost: resolved on a new connection as committed. */
                if (d2s_cuts[i] >= loaded_end) {
                        assert_int_equal(r, 0);
                        committed++;
                } else {
                        assert_true(r < 0);
                        kept++;
                }
        }
        /* COMMIT cut short on its way (none of it, or all but its last byte): resolved as aborted. */
        for (uint64_t extra = 0; extra < 2; extra++) {
                struct proxy p = proxy_new(PROXY_CUT);
                int r;

                p.d2s_mark = loaded_end;
                p.s2d_extra = extra == 0 ? 0 : 10;
                memset(&err, 0, sizeof(err));
                r = through(&p, TEST_TIMEOUT_MS, &err, &rep);
                assert_true(r < 0);
                assert_int_equal(rep.outcome, MIGRATE_OUTCOME_ABORTED);
                assert_true(rep.resumed);
        }
        assert_true(committed > 0 && kept > 0);
}

static void test_wire_corruption(void **state)
{
        struct proxy rec = recorded();
        uint64_t s2d_at[] = {2, 40, 200, 3000, 6000, 20000, 100000, 300000};
        uint64_t d2s_at[] = {3, rec.d2s_ends[1] + 10, rec.d2s_ends[2] + 9, rec.d2s_ends[3] - 2};
        struct svemig_error err;
        struct migrate_report rep;

        for (size_t i = 0; i < ELEMENTSOF(s2d_at); i++) {
                struct proxy p = proxy_new(PROXY_CORRUPT);

                p.s2d_limit = s2d_at[i];
                memset(&err, 0, sizeof(err));
                /* Caught by a checksum somewhere: the stream's, or the frame's; or this run was shorter. */
                if (through(&p, TEST_TIMEOUT_MS, &err, &rep) == 0)
                        assert_true(p.s2d <= p.s2d_limit);
        }
        for (size_t i = 0; i < ELEMENTSOF(d2s_at); i++) {
                struct proxy p = proxy_new(PROXY_CORRUPT);

                p.corrupt_d2s = true;
                p.d2s_limit = d2s_at[i];
                memset(&err, 0, sizeof(err));
                assert_true(through(&p, TEST_TIMEOUT_MS, &err, &rep) < 0);
        }
}

/* A peer that stops answering but does not close: every wait times out, and one copy runs. */
static void test_dead_peer(void **state)
{
        struct proxy rec = recorded();
        struct svemig_error err;
        struct migrate_report rep;
        struct {
                uint64_t s2d, d2s;
                int expect; /* 0 success, -1 failure */
        } cases[] = {
                {5000, UINT64_MAX, -1},            /* at the stream header */
                {100000, UINT64_MAX, -1},          /* mid-stream */
                {UINT64_MAX, rec.d2s_ends[2], -1}, /* no Loaded */
                {UINT64_MAX, rec.d2s_ends[3], 0},  /* no Ack: resolved as committed */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct proxy p = proxy_new(PROXY_STALL);
                int r;

                p.s2d_limit = cases[i].s2d;
                p.d2s_limit = cases[i].d2s;
                memset(&err, 0, sizeof(err));
                r = through(&p, DEAD_TIMEOUT_MS, &err, &rep);
                if (cases[i].expect == 0)
                        assert_int_equal(r, 0);
                else {
                        assert_true(r < 0);
                        assert_true(rep.resumed);
                }
        }
}

/* The connection is reset (TCP RST) mid-stream, and when only the Ack is left. */
static void test_reset(void **state)
{
        struct proxy rec = recorded();
        struct svemig_error err = {0};
        struct migrate_report rep;
        struct proxy p = proxy_new(PROXY_CUT);

        p.tcp = true;
        p.s2d_limit = 100000;
        if (through(&p, TEST_TIMEOUT_MS, &err, &rep) < 0) {
                assert_true(rep.resumed);
                /* Where the source notices depends on timing (an RST drops what was buffered), but always
                 * before LOADED. */
                if (rep.failed_step < MIGRATE_STEP_VERDICT || rep.failed_step > MIGRATE_STEP_STOP_COPY)
                        fail_msg("a reset 100000 bytes into the stream failed at step %s",
                                 migrate_step_name(rep.failed_step));
        } else {
                assert_true(p.s2d <= p.s2d_limit); /* a stream shorter than the cut */
        }

        p = proxy_new(PROXY_CUT);
        p.tcp = true;
        p.d2s_limit = rec.d2s_ends[3];
        memset(&err, 0, sizeof(err));
        if (through(&p, TEST_TIMEOUT_MS, &err, &rep) < 0)
                fail_msg("a lost Ack should resolve as committed: %s", err.msg);
        assert_int_equal(rep.outcome, MIGRATE_OUTCOME_COMMITTED);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hello),
                cmocka_unit_test(test_hello_version),
                cmocka_unit_test(test_hello_host_facts),
                cmocka_unit_test(test_host_info_stuck),
                cmocka_unit_test(test_migrate_bare_request),
                cmocka_unit_test(test_peek_closed_mid_frame),
                cmocka_unit_test(test_policy),
                cmocka_unit_test(test_compression_decide),
                cmocka_unit_test(test_migrate_running),
                cmocka_unit_test(test_migrate_tcp_multi_vcpu),
                cmocka_unit_test(test_migrate_paused),
                cmocka_unit_test(test_migrate_channels),
                cmocka_unit_test(test_migrate_channels_refused),
                cmocka_unit_test(test_migrate_prepared_ram),
                cmocka_unit_test(test_on_loaded),
                cmocka_unit_test(test_channels_rewritten_pages),
                cmocka_unit_test(test_channel_corrupt),
                cmocka_unit_test(test_channel_page_heals),
                cmocka_unit_test(test_channels_silent_source),
                cmocka_unit_test(test_chain),
                cmocka_unit_test(test_check),
                cmocka_unit_test(test_check_id_reg),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_throttle),
                cmocka_unit_test(test_no_convergence),
                cmocka_unit_test(test_source_killed),
                cmocka_unit_test(test_destination_killed),
                cmocka_unit_test(test_destination_oom),
                cmocka_unit_test(test_wire_cuts),
                cmocka_unit_test(test_wire_corruption),
                cmocka_unit_test(test_dead_peer),
                cmocka_unit_test(test_reset),
        };

        /* TEST_MIGRATE_ONLY and TEST_MIGRATE_SKIP take a pattern of case names (cmocka's * and ?). */
        if (getenv("TEST_MIGRATE_ONLY"))
                cmocka_set_test_filter(getenv("TEST_MIGRATE_ONLY"));
        if (getenv("TEST_MIGRATE_SKIP"))
                cmocka_set_skip_filter(getenv("TEST_MIGRATE_SKIP"));
        return cmocka_run_group_tests(tests, NULL, NULL);
}
