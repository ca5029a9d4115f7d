/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the peer protocol, as a destination host meets it:
 * the input is what a connecting peer sends (its Hello and HostInfo, then
 * requests: HostInfoRequest, Check, Migrate with its stream, Commit,
 * Resolve, Bye...). The harness plays svemigd's listener and a receiving
 * VMM on a simulated host: peer_hello() (Hello and HostInfo decoding), then
 * for each request migrate_peek() (what the listener looks at) and
 * migrate_serve() (frames, PeerMessage decoding, the Verdict, the stream,
 * the handoff against an in-memory ledger). Bad input must be refused with
 * an error, never crash, hang, leak or take unbounded memory.
 */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz-util.h"
#include "migrate/peer.h"
#include "svemig/guest.h"
#include "svemig/hv.h"
#include "svemig/migrate.h"

/* Guests above this are refused before any memory is allocated for them. */
#define FUZZ_GUEST_MEM_MAX (8u << 20)
/* Waits happen only on a truncated frame; the peer has closed by then. */
#define FUZZ_TIMEOUT_MS   200u
#define FUZZ_REQUESTS_MAX 16

static struct hv *hv;
static struct peer_info self;

static void setup(void)
{
        vqset_t maps[1];
        struct hv_config cfg = {.backend = HV_BACKEND_SIM};
        struct svemig_error err = {0};

        if (vqset_parse("128,256,512", &maps[0], &err) < 0)
                abort();
        cfg.sim.cpu_maps = maps;
        cfg.sim.n_cpus = 1;
        cfg.sim.host_name = "fuzz-dest";
        if (hv_open(&cfg, &hv, &err) < 0 || peer_info_local(hv, FUZZ_GUEST_MEM_MAX, &self, &err) < 0) {
                fprintf(stderr, "fuzz-peer: cannot set up the sim host: %s\n", err.msg);
                abort();
        }
}

static void serve(int fd, struct migrate_ledger *ledger)
{
        struct migrate_recv_opts opts = {.ledger = ledger,
                                         .self = &self,
                                         .mem_limit = FUZZ_GUEST_MEM_MAX,
                                         .timeout_ms = FUZZ_TIMEOUT_MS,
                                         .request_timeout_ms = FUZZ_TIMEOUT_MS,
                                         .n_threads = 2};
        struct svemig_error err = {0};
        struct peer_info remote;

        if (peer_hello(fd, &self, FUZZ_TIMEOUT_MS, &remote, &err) < 0)
                return;
        peer_info_done(&remote);
        for (int i = 0; i < FUZZ_REQUESTS_MAX; i++) {
                struct migrate_peeked peeked;
                struct migrate_served served;
                int r;

                /* As svemigd's listener does before it hands the request on. */
                if (migrate_peek(fd, FUZZ_TIMEOUT_MS, &peeked, &err) < 0)
                        return;
                r = migrate_serve(hv, fd, &opts, &served, &err);
                guest_destroy(served.guest);
                if (r < 0 || served.kind == MIGRATE_SERVED_BYE)
                        return;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct migrate_ledger *ledger;
        struct fuzz_peer peer;
        int fd;

        if (!hv)
                setup();
        if (migrate_ledger_new(&ledger) < 0)
                abort();
        fd = fuzz_peer_start(&peer, data, size);
        serve(fd, ledger);
        fuzz_peer_stop(&peer, fd);
        migrate_ledger_free(ledger);
        return 0;
}
