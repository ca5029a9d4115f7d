/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration through svemigd (docs/migration.md, "In the daemons").
 *
 * Source: `migrate GUEST PEER [--check]` resolves PEER in the cluster view
 * and hands the request, with the peer's address, to the guest's VMM, which
 * runs the engine there (the guest lives in it). Progress comes back through
 * vmm_forward(). When the destination owns the guest its VMM exits and the
 * guest's record here is removed: the guest lives on PEER now, under the same
 * name, and this host keeps no copy of it to show (the log says where it
 * went). On a failure the guest runs on, and the VMM's reason is relayed.
 *
 * Destination: the peer listener hands over a connection whose next request
 * is a Migrate; it goes to the incoming RAM reserve's standby VMM when one
 * is ready (ram-reserve.h), else a new VMM is started on it (--receive-fd),
 * and the guest is registered under the name the source gave, or refused
 * when that name is taken here. Its memory channels (docs/migration.md "Memory channels")
 * arrive on the same peer port, each on a connection of its own: the
 * listener hands each here, and it is passed on to that VMM over a unix
 * socket made for the purpose when the VMM was started.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api-ops.h"
#include "cluster-view.h"
#include "guest-registry.h"
#include "log.h"
#include "op-migrate.h"
#include "peer-listener.h"
#include "ram-reserve.h"
#include "svemigd.h"
#include "vmm-forward.h"

static void migrated(struct forward *f, const Svemig__Api__Response *resp)
{
        struct guest_entry *e = f->e;
        const Svemig__Api__MigrateReport *rep =
                resp->result_case == SVEMIG__API__RESPONSE__RESULT_MIGRATE ? resp->migrate : NULL;
        struct svemig_error err = {0};
        Svemig__Api__Response copy;

        e->busy = NULL;
        if (rep && !rep->check) {
                log_msg(LOG_NOTICE, LOG_CTX(.guest = e->rec.name, .peer = rep->peer, .op = "migrate"),
                        "guest %s migrated to %s (%llu bytes, %u passes); its record here is removed",
                        e->rec.name, rep->peer, (unsigned long long)rep->bytes_sent, rep->rounds);
                guest_entry_detach(e, GUEST_STOPPED);
                if (guest_entry_delete(e, NULL, &err) < 0)
                        log_msg(LOG_WARNING, LOG_CTX(.guest = e->rec.name), "%s", err.msg);
        }
        copy = *resp;
        api_call_reply(f->call, &copy);
}

static void migrate_failed(struct forward *f)
{
        f->e->busy = NULL;
}

int op_migrate(struct api_call *call, const Svemig__Api__Request *request, void *userdata,
               struct svemig_error *err)
{
        const Svemig__Api__MigrateRequest *m = request->migrate;
        Svemig__Api__Request req = SVEMIG__API__REQUEST__INIT;
        Svemig__Api__MigrateRequest fwd = SVEMIG__API__MIGRATE_REQUEST__INIT;
        struct svemigd *d = userdata;
        const struct membership_host *member;
        struct peer_address addr;
        struct guest_entry *e;
        struct forward *f;
        const char *stale;
        int r;

        if (!m->guest || !m->guest[0] || !m->peer || !m->peer[0])
                return svemig_error_set(err, EINVAL, "give the guest and the peer to migrate it to");
        e = guest_registry_find(d->guests, m->guest);
        if (!e)
                return svemig_error_set(err, ENOENT, "no guest named %s here", m->guest);
        if (e->busy)
                return svemig_error_set(err, EBUSY, "guest %s is busy with a %s; wait for it", e->rec.name,
                                        e->busy);
        if (strcmp(m->peer, d->conf.host_name) == 0)
                return svemig_error_set(err, EINVAL, "guest %s is already on %s; name another peer",
                                        e->rec.name, m->peer);
        if (m->compression && m->compression[0] && migrate_compression_parse(m->compression, NULL) < 0)
                return svemig_error_set(err, EINVAL, "compression %s: expected auto, none or lz4",
                                        m->compression);
        if (m->channels_set && m->channels > MIGRATE_CHANNELS_MAX)
                return svemig_error_set(err, EINVAL, "%u memory channels: expected 0 to %u", m->channels,
                                        MIGRATE_CHANNELS_MAX);
        r = cluster_view_peer(d->cluster, m->peer, &addr, &member, err);
        if (r < 0)
                return r;
        if (cluster_view_stale(d->cluster, &stale, NULL))
                log_warning(
                        "guest %s goes to %s at %s, as the stale cluster view last knew it (%s); %s judges "
                        "the guest by its own facts before any memory moves",
                        e->rec.name, addr.name, addr.address, stale, addr.name);

        fwd.guest = e->rec.name;
        fwd.peer = (char *)addr.name;
        fwd.check = m->check;
        fwd.address = (char *)addr.address;
        fwd.host = (char *)addr.host;
        fwd.port = addr.port;
        fwd.max_bandwidth = m->max_bandwidth;
        fwd.downtime_ms = m->downtime_ms;
        fwd.compression = m->compression;
        fwd.channels = m->channels_set ? m->channels : d->conf.migration_channels;
        fwd.channels_set = true;
        req.op_case = SVEMIG__API__REQUEST__OP_MIGRATE;
        req.migrate = &fwd;
        r = vmm_forward(d, call, e, &req, migrated, NULL, true, &f, err);
        if (r < 0)
                return r;
        f->failed = migrate_failed;
        e->busy = m->check ? "migration check" : "migration";
        e->busy_operation = api_call_operation(call);
        return 0;
}

/* --- destination --- */

struct refusal {
        int fd;
        int code;
        unsigned timeout_ms;
        char reason[512];
};

/* On a thread of its own: the source may take up to the timeout to read the refusal. */
static void *refuse_main(void *userdata)
{
        struct refusal *x = userdata;

        (void)migrate_refuse(x->fd, x->code, x->reason, x->timeout_ms, NULL);
        close(x->fd);
        free(x);
        return NULL;
}

static void refuse(struct svemigd *d, int fd, int code, const char *reason)
{
        struct refusal *x = calloc(1, sizeof(*x));
        pthread_attr_t attr;
        pthread_t t;

        if (!x) {
                close(fd);
                return;
        }
        x->fd = fd;
        x->code = code;
        x->timeout_ms = d->conf.peer_timeout_ms;
        snprintf(x->reason, sizeof(x->reason), "%s", reason);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, refuse_main, x) != 0) {
                close(fd);
                free(x);
        }
        pthread_attr_destroy(&attr);
}

static void arrived(struct svemigd *d, struct api_call *call, struct guest_entry *e,
                    const Svemig__Api__Response *resp, const char *why)
{
        e->busy = NULL;
        admit_arrived(e);
        /* Its stream is over: a late channel finds no receiver and is closed (svemigd_migrate_channel()). */
        if (e->channel_fd >= 0)
                close(e->channel_fd);
        e->channel_fd = -1;
        /* Whether it took the reserve or not, its stream is over: the next one has the host to itself. */
        ram_reserve_refill(d->reserve);
        if (!resp || resp->status) {
                /* The ledger says whether it never ran here (dropped) or ran and died with its VMM. */
                guest_entry_incoming_ended(e, resp ? resp->status->message : why);
                return;
        }
        (void)guest_record_set_str(&e->rec.incoming_migration, NULL);
        (void)guest_entry_save(e, NULL);
        log_msg(LOG_NOTICE, LOG_CTX(.guest = e->rec.name, .op = "migrate"), "guest %s arrived; VMM pid %d",
                e->rec.name, (int)e->rec.vmm_pid);
}

/*
 * The incoming RAM reserve's standby VMM for the guest, if one is ready:
 * it receives the guest, into its RAM when the guest fits (the VMM says
 * which in the log). The next is started once the guest has arrived.
 */
static bool take_reserve(struct svemigd *d, const char *guest_name, struct ram_standby *standby)
{
        struct svemig_error why = {0};

        if (!d->reserve)
                return false;
        if (ram_reserve_take(d->reserve, standby, &why) < 0) {
                log_msg(LOG_INFO, LOG_CTX(.guest = guest_name, .op = "migrate"),
                        "%s: guest %s gets a new VMM and ordinary memory, faulted in as it arrives", why.msg,
                        guest_name);
                return false;
        }
        log_msg(LOG_INFO, LOG_CTX(.guest = guest_name, .op = "migrate"),
                "guest %s is offered the incoming RAM reserve (%llu MiB): standby VMM pid %d receives it; "
                "the "
                "next is prepared once it has arrived",
                guest_name, (unsigned long long)(standby->size >> 20), (int)standby->pid);
        return true;
}

/*
 * The unix socket e's receiving VMM takes its memory channels on: e keeps
 * one end (e->channel_fd), the VMM's end is returned. -1 when it cannot be
 * made: the VMM offers no channels and the migration runs on one connection.
 */
static int channel_socket(struct guest_entry *e, const char *peer)
{
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                log_msg(LOG_WARNING, LOG_CTX(.peer = peer, .guest = e->rec.name, .op = "migrate"),
                        "guest %s comes on one connection, without memory channels: socketpair: %s",
                        e->rec.name, strerror(errno));
                return -1;
        }
        e->channel_fd = sv[0];
        return sv[1];
}

/* The guest arriving by migration hex; NULL if none. */
static struct guest_entry *arriving_by(struct svemigd *d, const char *hex)
{
        for (struct guest_entry *e = guest_registry_first(d->guests); e; e = guest_registry_next(e))
                if (e->rec.incoming_migration && strcmp(e->rec.incoming_migration, hex) == 0)
                        return e;
        return NULL;
}

void svemigd_migrate_channel(void *userdata, const char *peer, const uint8_t id[MIGRATE_ID_SIZE],
                             unsigned index, int fd)
{
        char hex[MIGRATE_ID_HEX_SIZE];
        struct svemigd *d = userdata;
        struct svemig_error err = {0};
        struct guest_entry *e;

        /* Refused (closed): the source fails that migration, naming the channel, and resumes its guest. */
        migrate_id_format(id, hex);
        e = arriving_by(d, hex);
        if (!e)
                log_msg(LOG_WARNING, LOG_CTX(.peer = peer, .op = "migrate"),
                        "peer %s: memory channel %u of migration %s, which no guest is arriving by here "
                        "(ended, or never began); closed",
                        peer, index, hex);
        else if (e->channel_fd < 0)
                log_msg(LOG_WARNING, LOG_CTX(.peer = peer, .guest = e->rec.name, .op = "migrate"),
                        "peer %s: memory channel %u of guest %s's migration, whose VMM takes no channels "
                        "from this svemigd (an earlier one started it, or its channel socket failed); "
                        "closed",
                        peer, index, e->rec.name);
        else if (migrate_channel_pass(e->channel_fd, fd, &err) < 0)
                log_msg(LOG_WARNING, LOG_CTX(.peer = peer, .guest = e->rec.name, .op = "migrate"),
                        "peer %s: memory channel %u of guest %s's migration: %s; closed", peer, index,
                        e->rec.name, err.msg);
        else
                log_msg(LOG_DEBUG, LOG_CTX(.peer = peer, .guest = e->rec.name, .op = "migrate"),
                        "peer %s: memory channel %u of guest %s's migration handed to its VMM", peer, index,
                        e->rec.name);
        close(fd); /* the VMM has its own copy, or the channel is refused */
}

void svemigd_migrate_incoming(void *userdata, const char *peer, const struct peer_incoming *in, int fd)
{
        const char *guest_name = in->guest_name;
        char hex[MIGRATE_ID_HEX_SIZE];
        struct svemigd *d = userdata;
        struct svemig_error err = {0};
        struct guest_record rec = {0};
        struct guest_entry *e;
        char reason[512];
        struct ram_standby standby;
        int vmm_channel_fd, r;
        bool reserved;

        if (d->stopping) {
                refuse(d, fd, ESHUTDOWN, "the destination daemon is stopping; try again later");
                return;
        }
        r = guest_name_check(guest_name, &err);
        if (r >= 0 && guest_registry_find(d->guests, guest_name)) {
                snprintf(err.msg, sizeof(err.msg),
                         "%s already has a guest named %s; delete or rename it there first",
                         d->conf.host_name, guest_name);
                r = -EEXIST;
        }
        /* Judged by its header before anything is allocated for it, here or in a VMM. */
        if (r >= 0 && in->header_r < 0) {
                r = in->header_r;
                snprintf(err.msg, sizeof(err.msg), "%s", in->header_err->msg);
        }
        if (r >= 0)
                r = admit_arriving(d, "incoming guest", guest_name, in->memory_bytes, &err);
        if (r < 0) {
                log_msg(LOG_WARNING, LOG_CTX(.peer = peer, .guest = guest_name, .op = "migrate"),
                        "refusing guest %s from %s: %s", guest_name, peer, err.msg);
                refuse(d, fd, -r, err.msg);
                return;
        }
        rec.state = GUEST_PAUSED;
        rec.created_ns = (uint64_t)time(NULL) * 1000000000ull;
        rec.memory_bytes = in->memory_bytes;
        migrate_id_format(in->id, hex);
        if (guest_record_set_str(&rec.name, guest_name) < 0 ||
            guest_record_set_str(&rec.incoming_migration, hex) < 0) {
                guest_record_done(&rec);
                refuse(d, fd, ENOMEM, "the destination daemon is out of memory");
                return;
        }
        r = guest_registry_add(d->guests, &rec, &e, &err);
        guest_record_done(&rec);
        if (r < 0) {
                refuse(d, fd, -r, err.msg);
                return;
        }
        e->busy = "incoming migration";
        e->arriving_bytes = in->memory_bytes;
        log_msg(LOG_INFO, LOG_CTX(.peer = peer, .guest = guest_name, .op = "migrate"),
                "guest %s is coming from %s", guest_name, peer);
        reserved = take_reserve(d, guest_name, &standby);
        vmm_channel_fd = channel_socket(e, peer);
        r = guest_launch_receive(d, e, fd, reserved ? &standby : NULL, vmm_channel_fd, arrived, &err);
        if (vmm_channel_fd >= 0)
                close(vmm_channel_fd); /* the VMM has its own copy */
        if (r < 0) {
                snprintf(reason, sizeof(reason), "%s cannot start a VMM for the guest: %s",
                         d->conf.host_name, err.msg);
                e->busy = NULL;
                (void)guest_entry_delete(e, NULL, NULL);
                ram_reserve_refill(d->reserve);
                refuse(d, fd, -r, reason);
                return;
        }
        /* Its VMM's pid on record: a restarted svemigd waits for it to settle (guest-registry.c). */
        (void)guest_entry_save(e, NULL);
        close(fd); /* the VMM has its own copy */
}
