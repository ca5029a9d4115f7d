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
 *
 * Every frame carries a checksum, so the mutator mends the checksums of the
 * frames up to the first Migrate (a stream follows it) in three mutations
 * of four: the decoders behind the check are reached, and the check itself
 * still meets bad sums.
 */
#include <stdint.h>
#include <stdlib.h>
#include <xxhash.h>

#include "fuzz-util.h"
#include "migrate/peer.h"
#include "migrate/wire.h"
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

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

static uint32_t get_le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
        size = LLVMFuzzerMutate(data, size, max_size);
        if (seed % 4 == 0)
                return size;
        for (size_t off = 0; off + PEER_FRAME_HEAD_SIZE <= size;) {
                uint32_t len = get_le32(data + off), sum;
                const uint8_t *payload = data + off + PEER_FRAME_HEAD_SIZE;
                PeerMessage *msg;
                bool migrate;

                if (len > MIGRATE_MSG_MAX || len > size - off - PEER_FRAME_HEAD_SIZE)
                        break;
                sum = XXH32(payload, len, PEER_FRAME_SEED);
                for (unsigned i = 0; i < 4; i++)
                        data[off + 4 + i] = (uint8_t)(sum >> (8 * i));
                msg = svemig__peer__peer_message__unpack(NULL, len, payload);
                migrate = msg && msg->body_case == SVEMIG__PEER__PEER_MESSAGE__BODY_MIGRATE;
                svemig__peer__peer_message__free_unpacked(msg, NULL);
                if (migrate)
                        break;
                off += PEER_FRAME_HEAD_SIZE + len;
        }
        return size;
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
