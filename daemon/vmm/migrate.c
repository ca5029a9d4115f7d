/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration in svemig-vmm (docs/migration.md, "In the daemons").
 *
 * Source: svemigd hands the VMM a MigrateRequest with the peer's address;
 * a worker thread connects to the peer's listener, says hello as this host,
 * and runs migrate_check_send() or migrate_send(), relaying the engine's
 * progress. When the destination owns the guest, the VMM answers with the
 * report and exits; when the migration fails before COMMIT the guest runs
 * on here as before; a handoff in doubt leaves it paused.
 *
 * Destination: svemigd's listener hands an accepted connection whose next
 * request is a Migrate to a new VMM (--receive-fd), or to the standby VMM
 * of the incoming RAM reserve (standby.c), which calls
 * migrate_receive() with the host's ledger (host-ledger.h): the COMMIT is
 * taken there under the same lock as svemigd's listener answers a Resolve,
 * and the outcome outlives both processes.
 *
 * Test hooks, read only when set (the integration tests set them in
 * svemigd's environment, which its VMMs inherit):
 *   SVEMIG_TEST_MIGRATE_MAX_BANDWIDTH=BYTES_PER_S  the source's link cap
 *   SVEMIG_TEST_RECV_FAIL_AT=STEP                  migrate_recv_opts.fail_at (a step's name)
 *   SVEMIG_TEST_RECV_FAIL_ERRNO=N                  migrate_recv_opts.fail_errno (e.g. 12, ENOMEM)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "file-atomic.h"
#include "guest-record.h"
#include "host-ledger.h"
#include "log.h"
#include "macro.h"
#include "peer-tls.h"
#include "svemig/peer-connect.h"
#include "svemig/kvmreg.h"
#include "svemig/migrate.h"
#include "vmm.h"

struct mig_arg {
        struct vmm_job *job;
        struct api_call *call;
        char *peer, *address, *host;
        uint16_t port;
        bool check;
        uint64_t max_bandwidth;
        unsigned downtime_ms;
        enum migrate_compression compression;
        unsigned channels;
        bool incompatible; /* the destination refused the guest itself (exit 4), not the transport */
        struct peer_info self;
        struct peer_tls_creds *tls;      /* [cluster] tls-*; NULL: plaintext (peer-tls = no) */
        struct peer_transport transport; /* every dial of this migration: peer TLS with tls */
        struct migrate_report rep;
        uint64_t steps;
        /* What the guest's devices recorded when the migration started (payload.c). */
        uint8_t device_state[MIGRATE_DEVICE_STATE_MAX];
        size_t device_state_size;
};

static void mig_arg_free(struct mig_arg *a)
{
        if (!a)
                return;
        peer_info_done(&a->self);
        peer_tls_creds_free(a->tls);
        free(a->peer);
        free(a->address);
        free(a->host);
        free(a);
}

static struct peer_address mig_address(const struct mig_arg *a)
{
        return (struct peer_address){.name = a->peer,
                                     .address = a->address,
                                     .host = a->host,
                                     .port = a->port,
                                     .transport = a->tls ? &a->transport : NULL};
}

static int mig_progress(void *userdata, const struct migrate_progress *p)
{
        struct mig_arg *a = userdata;
        Svemig__Api__Progress msg = SVEMIG__API__PROGRESS__INIT;

        /*
         * A cancel because svemigd went away (killed, restarted) is not the
         * operator's: the migration goes on here, and a restarted svemigd
         * learns its end from the guest's directory (record_migrated()).
         */
        if (vmm_job_cancelled(a->job) && !api_call_client_gone(a->call))
                return -ECANCELED;
        msg.phase = (char *)migrate_step_name(p->step);
        msg.done = p->bytes_sent;
        msg.round = p->round;
        msg.dirty_rate = p->dirty_rate;
        msg.expected_downtime_ns = p->expected_downtime_ns;
        msg.link_bps = p->link_bps;
        msg.throttle_pct = p->throttle_pct;
        vmm_job_progress_msg(a->job, &msg);
        return 0;
}

/*
 * A handoff in doubt asks the destination again on a new connection
 * (migrate_opts.reconnect). Its svemigd may be restarting: a refused
 * connection is tried again for up to the peer timeout.
 */
static int mig_reconnect(void *userdata)
{
        struct mig_arg *a = userdata;
        struct peer_address pa = mig_address(a);
        unsigned timeout_ms =
                a->job ? vmm_job_vmm(a->job)->conf.peer_timeout_ms : MIGRATE_TIMEOUT_MS_DEFAULT;
        struct timespec pause = {.tv_nsec = 100 * 1000000};
        int fd = -1, r;

        for (unsigned waited = 0;; waited += 100) {
                r = peer_dial(&pa, timeout_ms, -1, &fd, NULL);
                if (r >= 0 || r != -ECONNREFUSED || waited >= timeout_ms)
                        break;
                nanosleep(&pause, NULL);
        }
        return r < 0 ? r : fd;
}

/*
 * The destination owns the guest: say so in the guest's directory before
 * anything else, so that a svemigd that did not see this end (it was
 * restarted meanwhile) removes the record instead of calling the guest dead.
 */
static void record_migrated(struct vmm *v, const struct mig_arg *a)
{
        _cleanup_free_ char *path = NULL;
        char text[256], hex[MIGRATE_ID_HEX_SIZE];
        int n, r;

        if (asprintf(&path, "%s/%s", v->dir, GUEST_MIGRATED_FILE) < 0)
                return;
        migrate_id_format(a->rep.id, hex);
        n = snprintf(text, sizeof(text), "peer=%s\nid=%s\n", a->peer, hex);
        r = write_file_atomic(path, text, (size_t)n, 0600);
        if (r < 0)
                log_msg(LOG_WARNING, LOG_CTX(.guest = v->name, .peer = a->peer),
                        "cannot record that guest %s went to %s in %s: %s", v->name, a->peer, path,
                        strerror(-r));
}

/* The destination's own refusals of the guest: its VL set, registers, ID registers, memory. */
static bool is_refusal(int r)
{
        return r == -EINVAL || r == -ENOENT || r == -ENOMEM;
}

static int mig_work(struct vmm_job *job, void *arg, struct svemig_error *err)
{
        struct mig_arg *a = arg;
        struct vmm *v = vmm_job_vmm(job);
        struct peer_address pa;
        struct peer_info remote = {0};
        struct migrate_opts opts = {
                .guest_name = v->name,
                .peer_name = a->peer,
                .timeout_ms = v->conf.peer_timeout_ms,
                .progress = mig_progress,
                .userdata = a,
                .reconnect = mig_reconnect,
                .reconnect_userdata = a,
                .device_state = a->device_state,
                .device_state_size = a->device_state_size,
                .max_bandwidth = a->max_bandwidth,
                .downtime_ms = a->downtime_ms,
                .compression = a->compression,
                .channels = a->channels,
        };
        const char *bw = getenv("SVEMIG_TEST_MIGRATE_MAX_BANDWIDTH");
        _cleanup_close_ int fd = -1;
        int r;

        /* The tests' slow link: a migration lasts long enough for a fault to land half-way. */
        if (bw && !opts.max_bandwidth)
                opts.max_bandwidth = strtoull(bw, NULL, 10);
        a->job = job;
        /* The main connection, its channels and a resolve all go over peer TLS. */
        r = migrate_conf_tls_load(&v->conf, &a->tls, err);
        if (r < 0)
                return svemig_error_prefix(err, "cannot migrate guest %s to %s over peer TLS", v->name,
                                           a->peer);
        a->transport = (struct peer_transport){.secure = peer_tls_secure_dial, .userdata = a->tls};
        r = peer_info_local(v->hv, 0, &a->self, err);
        if (r < 0)
                return svemig_error_prefix(err, "cannot describe this host to %s", a->peer);
        /* Peers know this host by its configured name, whatever the kernel calls it. */
        snprintf(a->self.host_name, sizeof(a->self.host_name), "%s", v->conf.host_name);
        opts.self = &a->self; /* the channels' and a resolve's hellos say the same */
        pa = mig_address(a);

        r = peer_connect(&pa, &a->self, v->conf.peer_timeout_ms, -1, &fd, &remote, err);
        if (r < 0)
                return svemig_error_prefix(err, "cannot reach peer %s (%s); guest %s runs on here", a->peer,
                                           a->address, v->name);
        snprintf(a->rep.peer_host, sizeof(a->rep.peer_host), "%s", remote.host_name);
        peer_info_done(&remote);

        if (a->check) {
                r = migrate_check_send(v->guest, fd, &opts, err);
                if (r < 0) {
                        a->incompatible = is_refusal(r);
                        return r;
                }
                (void)peer_bye(fd, v->conf.peer_timeout_ms, NULL);
                return 0;
        }
        r = migrate_send(v->guest, fd, &opts, &a->rep, err);
        a->steps = vmm_total_steps(v);
        if (r == 0)
                record_migrated(v, a);
        if (r < 0 && a->rep.failed_step == MIGRATE_STEP_VERDICT)
                a->incompatible = is_refusal(r);
        return r;
}

static int start_drain(sd_event_source *s, void *userdata)
{
        struct vmm *v = userdata;

        api_server_drain(v->server, vmm_drained, v);
        return 0;
}

static void mig_done(struct vmm *v, struct api_call *call, int r, const struct svemig_error *err, void *arg)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__MigrateReport rep = SVEMIG__API__MIGRATE_REPORT__INIT;
        struct mig_arg *a = arg;
        sd_event_source *defer;

        if (r < 0) {
                Svemig__Api__Status status = SVEMIG__API__STATUS__INIT;

                log_msg(LOG_WARNING, LOG_CTX(.guest = v->name, .peer = a->peer, .op = "migrate"), "%s",
                        svemig_error_str(err, r));
                status.code = -r;
                status.message = (char *)svemig_error_str(err, r);
                status.incompatible = a->incompatible;
                api_call_fail_status(call, &status);
                mig_arg_free(a);
                return;
        }
        rep.guest = v->name;
        rep.peer = a->peer;
        rep.check = a->check;
        rep.peer_host = a->rep.peer_host;
        if (!a->check) {
                rep.total_ns = a->rep.total_ns;
                rep.downtime_ns = a->rep.downtime_ns;
                rep.bytes_sent = a->rep.bytes_sent;
                rep.stream_bytes = a->rep.stream_bytes;
                rep.rounds = a->rep.rounds;
                rep.pages_sent = a->rep.pages_sent;
                rep.zero_pages = a->rep.zero_pages;
                rep.throttle_pct = a->rep.throttle_pct;
                rep.link_bps = a->rep.link_bps;
                rep.compression = (char *)migrate_compression_name(a->rep.compression);
                rep.steps = a->steps;
                rep.setup_ns = a->rep.setup_ns;
                rep.precopy_ns = a->rep.precopy_ns;
                rep.pause_copy_ns = a->rep.pause_copy_ns;
                rep.load_ns = a->rep.load_ns;
                rep.commit_ns = a->rep.commit_ns;
        }
        resp.result_case = SVEMIG__API__RESPONSE__RESULT_MIGRATE;
        resp.migrate = &rep;
        if (!a->check) {
                log_msg(LOG_NOTICE, LOG_CTX(.guest = v->name, .peer = a->peer, .op = "migrate"),
                        "guest %s now runs on %s; exiting", v->name, a->peer);
                /* The destination owns the guest: this copy must never run again. */
                v->exiting = true;
        }
        api_call_reply(call, &resp);
        mig_arg_free(a);
        if (!v->exiting)
                return;
        if (sd_event_add_defer(v->event, &defer, start_drain, v) >= 0) {
                (void)sd_event_source_set_enabled(defer, SD_EVENT_ONESHOT);
                (void)sd_event_source_set_floating(defer, true);
                sd_event_source_unref(defer);
        } else
                api_server_drain(v->server, vmm_drained, v);
}

int vmm_op_migrate(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                   struct svemig_error *err)
{
        const Svemig__Api__MigrateRequest *m = req->migrate;
        struct vmm *v = userdata;
        struct mig_arg *a;
        int r;

        if (m->guest && m->guest[0] && strcmp(m->guest, v->name) != 0)
                return svemig_error_set(err, ENOENT, "this VMM runs guest %s, not %s", v->name, m->guest);
        if (v->exiting)
                return svemig_error_set(err, ESHUTDOWN, "guest %s is stopping", v->name);
        if (!m->peer || !m->peer[0] || !m->host || !m->host[0] || m->port == 0 || m->port > 65535)
                return svemig_error_set(err, EINVAL, "a migration needs the peer's name, host and port");
        a = calloc(1, sizeof(*a));
        if (!a)
                return svemig_error_set(err, ENOMEM, "out of memory");
        a->peer = strdup(m->peer);
        a->address = strdup(m->address && m->address[0] ? m->address : m->host);
        a->host = strdup(m->host);
        a->port = (uint16_t)m->port;
        a->check = m->check;
        a->max_bandwidth = m->max_bandwidth;
        a->downtime_ms = m->downtime_ms;
        /* svemigd checked it and always sets it; a request without it gets this host's default. */
        a->channels = MIN(m->channels_set ? m->channels : v->conf.migration_channels, MIGRATE_CHANNELS_MAX);
        /* svemigd checked it (op-migrate.c); anything else stays auto. */
        if (m->compression)
                (void)migrate_compression_parse(m->compression, &a->compression);
        a->call = call;
        if (!a->peer || !a->address || !a->host) {
                mig_arg_free(a);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        r = vmm_payload_pack(v, a->device_state, sizeof(a->device_state), &a->device_state_size);
        if (r < 0) {
                mig_arg_free(a);
                return svemig_error_set(err, -r, "guest %s: its payload's state does not fit in a migration",
                                        v->name);
        }
        /* Its pre-copy takes the dirty log: the next checkpoint cannot build on the last one. */
        if (!a->check)
                vmm_checkpoint_forget(v);
        r = vmm_job_start(v, call, a->check ? "migration check" : "migration", mig_work, mig_done, a, err);
        if (r < 0)
                mig_arg_free(a);
        return r;
}

/* --- destination --- */

/* The guest's VL set, from vcpu 0's SVE_VLS (KVM's layout: bit vq-1). Empty without SVE. */
static vqset_t guest_vls(struct guest *g)
{
        uint64_t w[KVMREG_VLS_BYTES / 8] = {0};
        vqset_t s;

        vqset_clear(&s);
        if (hv_vcpu_get_reg(guest_vcpu(g, 0), kvmreg_vls(), w) < 0)
                return s;
        for (unsigned vq = 1; vq <= KVMREG_VLS_BYTES * 8 && vq <= VQSET_VQ_MAX; vq++)
                if (w[(vq - 1) / 64] & (1ull << ((vq - 1) % 64)))
                        vqset_add(&s, vq);
        return s;
}

/* Once loaded, before the guest first runs here: no second pause after its arrival. */
static int read_arrival(void *userdata, struct guest *g)
{
        return vmm_take_workload_state(userdata, g);
}

/* SVEMIG_TEST_RECV_FAIL_AT / _ERRNO (see the top of this file). */
static void recv_test_hooks(struct migrate_recv_opts *opts)
{
        const char *at = getenv("SVEMIG_TEST_RECV_FAIL_AT"), *code = getenv("SVEMIG_TEST_RECV_FAIL_ERRNO");

        if (!at)
                return;
        for (int s = MIGRATE_STEP_REQUEST; s < _MIGRATE_STEP_MAX; s++)
                if (strcmp(at, migrate_step_name((enum migrate_step)s)) == 0)
                        opts->fail_at = (enum migrate_step)s;
        opts->fail_errno = code ? atoi(code) : 0;
        log_warning("test hook: receiving fails at %s%s%s", migrate_step_name(opts->fail_at),
                    opts->fail_errno ? " with " : "", opts->fail_errno ? strerror(opts->fail_errno) : "");
}

/* A standby's incoming RAM reserve: its size, and counted as memory this host can give the guest. */
static void reserve_opts(void *ram_mem, uint64_t ram_size, struct migrate_recv_opts *opts,
                         struct peer_info *self)
{
        if (!ram_mem)
                return;
        opts->ram_mem = ram_mem;
        opts->ram_reserve = ram_size;
        if (!opts->mem_limit)
                self->mem_available += opts->ram_reserve;
}

static void reserve_log(const struct vmm *v, const struct migrate_recv_opts *opts, const char *peer)
{
        uint64_t size = guest_mem_size(v->guest);

        if (migrate_recv_uses_reserve(opts, size))
                log_msg(LOG_INFO, LOG_CTX(.guest = v->name, .peer = peer, .op = "migrate"),
                        "guest %s's %llu MiB of RAM came into the incoming RAM reserve", v->name,
                        (unsigned long long)(size >> 20));
        else if (opts->ram_reserve)
                log_msg(LOG_INFO, LOG_CTX(.guest = v->name, .peer = peer, .op = "migrate"),
                        "guest %s's %llu MiB of RAM is larger than the incoming RAM reserve (%llu MiB): it "
                        "came into ordinary memory",
                        v->name, (unsigned long long)(size >> 20),
                        (unsigned long long)(opts->ram_reserve >> 20));
}

int vmm_receive(struct vmm *v, int fd, void *ram_mem, uint64_t ram_size, int channel_fd,
                struct svemig_error *err)
{
        struct migrate_ledger *ledger = NULL;
        struct svemig_error why = {0};
        struct peer_info self = {0};
        struct migrate_report rep = {0};
        struct migrate_recv_opts opts = {
                .self = &self,
                .log_dirty = true, /* so that it can move on */
                .mem_limit = v->conf.incoming_mem_limit,
                .timeout_ms = v->conf.peer_timeout_ms,
                .request_timeout_ms = v->conf.peer_timeout_ms,
                /* svemigd passes each memory channel of this migration on channel_fd. */
                .max_channels = channel_fd >= 0 ? MIGRATE_CHANNELS_MAX : 0,
                .channel_fd = channel_fd,
        };
        int r;

        r = host_ledger_open(v->conf.state_dir, &ledger, err);
        if (r < 0)
                return r;
        recv_test_hooks(&opts);
        r = peer_info_local(v->hv, v->conf.incoming_mem_limit, &self, err);
        if (r < 0) {
                migrate_ledger_free(ledger);
                return r;
        }
        reserve_opts(ram_mem, ram_size, &opts, &self);
        snprintf(self.host_name, sizeof(self.host_name), "%s", v->conf.host_name);
        opts.ledger = ledger;
        /* Armed before the guest first runs here: a payload's next report is not lost. */
        vmm_payload_arm(v, &opts.on_mmio, &opts.mmio_userdata);
        opts.on_loaded = read_arrival;
        opts.loaded_userdata = v;
        r = migrate_receive(v->hv, fd, &opts, &v->guest, &rep, err);
        peer_info_done(&self);
        /* The outcome stays in the host's ledger: a source in doubt asks svemigd's listener. */
        migrate_ledger_free(ledger);
        if (r < 0)
                return r; /* the process exits: whether the guest had taken ram_mem matters no more */
        /* A guest larger than the reserve came into fresh memory: the reserve goes back to the host. */
        if (ram_mem && !migrate_recv_uses_reserve(&opts, guest_mem_size(v->guest)))
                munmap(ram_mem, ram_size);
        /* Committed: the guest is ours whatever its device state says; a bad one is only logged. */
        r = vmm_payload_unpack(v, rep.device_state, rep.device_state_size, &why);
        if (r < 0)
                log_msg(LOG_WARNING, LOG_CTX(.guest = v->name, .peer = rep.peer_host, .op = "migrate"),
                        "guest %s arrived from %s, but not what its payload reported there: %s", v->name,
                        rep.peer_host, svemig_error_str(&why, r));

        /* A payload keeps no step count: its registers are its own. */
        if (v->payload.image) {
                memset(v->base_steps, 0, guest_n_vcpus(v->guest) * sizeof(*v->base_steps));
                v->dirty_pages_per_step = 0;
        }
        v->vls = guest_vls(v->guest);
        v->ever_ran = true;
        log_msg(LOG_NOTICE, LOG_CTX(.guest = v->name, .peer = rep.peer_host, .op = "migrate"),
                "guest %s arrived from %s: %llu bytes, %llu pages (%llu of them zero; %llu written by the "
                "guest as they were sent, which came again)",
                v->name, rep.peer_host, (unsigned long long)rep.bytes_sent,
                (unsigned long long)rep.pages_sent, (unsigned long long)rep.zero_pages,
                (unsigned long long)rep.torn_pages);
        reserve_log(v, &opts, rep.peer_host);
        return 0;
}
