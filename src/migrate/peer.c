/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Peers: what a host says about itself (its hypervisor's caps, the ID
 * registers of a probe vcpu, the memory it can give), and the Hello/HostInfo
 * exchange that opens every connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "macro.h"
#include "migrate/peer.h"
#include "svemig/kvmreg.h"
#include "svemig/stream.h"
#include "utf8.h"

static inline void fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
}

/* The features a vcpu may ask for, probed one by one on the host. */
static const unsigned probe_features[] = {HV_FEAT_POWER_OFF, HV_FEAT_EL1_32BIT, HV_FEAT_PSCI_0_2,
                                          HV_FEAT_PMU_V3, HV_FEAT_SVE};

int peer_probe_vcpu(struct hv_vm *vm, uint32_t features, const vqset_t *vls, struct hv_vcpu **out,
                    struct svemig_error *err)
{
        struct hv_vcpu *vcpu;
        int r;

        r = hv_vcpu_create(vm, 0, &vcpu, err);
        if (r < 0)
                return r;
        r = hv_vcpu_init(vcpu, features);
        if (r < 0) {
                svemig_error_set(err, r, "this host refuses vcpus with features 0x%x: %s", features,
                                 strerror(-r));
                goto fail;
        }
        if (features & HV_FEAT_BIT(HV_FEAT_SVE)) {
                if (vls && !vqset_empty(vls))
                        r = hv_vcpu_set_reg(vcpu, kvmreg_vls(), vls->w);
                if (r == 0)
                        r = hv_vcpu_finalize(vcpu, HV_FEAT_SVE);
                if (r < 0) {
                        svemig_error_set(err, r, "this host refuses the vector lengths: %s", strerror(-r));
                        goto fail;
                }
        }
        *out = vcpu;
        return 0;
fail:
        hv_vcpu_destroy(vcpu);
        return r;
}

uint64_t peer_mem_available(void)
{
        _cleanup_(fclosep) FILE *f = fopen("/proc/meminfo", "re");
        char line[256];
        unsigned long long kib;

        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
                        return (uint64_t)kib * 1024;
        return 0;
}

/* Which features a fresh vcpu accepts here, alone beside PSCI 0.2. */
static uint32_t supported_features(struct hv *hv)
{
        uint32_t ok = 0;

        for (size_t i = 0; i < ELEMENTSOF(probe_features); i++) {
                struct hv_vm *vm = NULL;
                struct hv_vcpu *vcpu = NULL;
                uint32_t f = HV_FEAT_BIT(probe_features[i]);

                if (hv_vm_create(hv, &vm, NULL) < 0)
                        continue;
                if (hv_vcpu_create(vm, 0, &vcpu, NULL) == 0 && hv_vcpu_init(vcpu, f) == 0)
                        ok |= f;
                hv_vcpu_destroy(vcpu);
                hv_vm_destroy(vm);
        }
        return ok;
}

/* The host-invariant registers of vcpu, into st. */
static int read_id_regs(struct hv_vcpu *vcpu, struct vcpu_state *st, struct svemig_error *err)
{
        struct vcpu_state all;
        _cleanup_free_ uint64_t *ids = NULL;
        size_t n = 0;
        int r;

        r = vcpu_capture(vcpu, &all, err);
        if (r < 0)
                return r;
        ids = calloc(all.n_regs ? all.n_regs : 1, sizeof(*ids));
        if (!ids) {
                vcpu_state_done(&all);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < all.n_regs; i++)
                if (vcpu_reg_is_host_invariant(all.regs[i].id))
                        ids[n++] = all.regs[i].id;
        r = vcpu_state_alloc(st, ids, n);
        if (r < 0) {
                vcpu_state_done(&all);
                return svemig_error_set(err, r, "out of memory");
        }
        for (size_t i = 0; i < n; i++)
                memcpy(st->regs[i].value, vcpu_state_find(&all, ids[i])->value, st->regs[i].size);
        vcpu_state_done(&all);
        return 0;
}

int peer_info_local(struct hv *hv, uint64_t mem_available, struct peer_info *out, struct svemig_error *err)
{
        struct hv_caps caps;
        struct hv_vm *vm = NULL;
        struct hv_vcpu *vcpu = NULL;
        uint32_t features;
        int r;

        memset(out, 0, sizeof(*out));
        r = hv_get_caps(hv, &caps);
        if (r < 0)
                return svemig_error_set(err, r, "cannot read this host's capabilities");
        out->protocol_version = MIGRATE_PROTOCOL_VERSION;
        snprintf(out->svemig_version, sizeof(out->svemig_version), "%s", SVEMIG_VERSION);
        snprintf(out->host_name, sizeof(out->host_name), "%s", caps.host_name);
        snprintf(out->backend, sizeof(out->backend), "%s", caps.backend);
        snprintf(out->kernel, sizeof(out->kernel), "%s", caps.kernel);
        out->sve = caps.sve;
        out->vls = caps.vls;
        out->max_vq = caps.max_vq;
        out->max_vcpus = caps.max_vcpus;
        out->n_cpus = caps.n_cpus;
        out->ipa_bits = caps.ipa_bits;
        out->vcpu_features = supported_features(hv);
        out->mem_available = mem_available ? mem_available : peer_mem_available();

        features = HV_FEAT_BIT(HV_FEAT_PSCI_0_2) | (caps.sve ? HV_FEAT_BIT(HV_FEAT_SVE) : 0);
        r = hv_vm_create(hv, &vm, err);
        if (r < 0)
                return r;
        r = peer_probe_vcpu(vm, features, NULL, &vcpu, err);
        if (r == 0)
                r = read_id_regs(vcpu, &out->id_regs, err);
        /* The writable bits, for the CPU baseline; a kernel before 6.7 has none. */
        if (r == 0) {
                struct svemig_error merr = {0};
                int m = hv_vm_get_writable_masks(vm, out->id_writable, &merr);

                out->id_writable_known = m == 0;
                if (m < 0 && m != -EOPNOTSUPP)
                        r = svemig_error_set(err, -m, "reading the writable ID register masks: %s",
                                             merr.msg);
        }
        hv_vcpu_destroy(vcpu);
        hv_vm_destroy(vm);
        if (r < 0)
                return svemig_error_prefix(err, "probing this host's ID registers");
        return 0;
}

int peer_info_cpu_regs(const struct peer_info *info, struct cpubase_reg **out, size_t *n_out)
{
        struct cpubase_reg *regs = calloc(info->id_regs.n_regs ? info->id_regs.n_regs : 1, sizeof(*regs));
        size_t n = 0;

        if (!regs)
                return -ENOMEM;
        for (size_t i = 0; i < info->id_regs.n_regs; i++) {
                const struct vcpu_reg *reg = &info->id_regs.regs[i];
                int idx = idreg_mask_index(reg->id);
                struct kvmreg k;
                bool ccsidr = kvmreg_decode(reg->id, &k, NULL) == 0 && k.cls == KVMREG_CLASS_DEMUX;

                if ((idx < 0 && !ccsidr) || reg->size > sizeof(uint64_t))
                        continue;
                regs[n].id = reg->id;
                regs[n].value = 0;
                memcpy(&regs[n].value, reg->value, reg->size);
                /*
                 * A kernel with writable ID registers (6.7+) models its own
                 * cache geometry and takes a VMM's CCSIDRs (as measured on
                 * 6.12); one without (6.1) takes none.
                 */
                if (idx >= 0)
                        regs[n].writable = info->id_writable_known ? info->id_writable[idx] : 0;
                else
                        regs[n].writable = info->id_writable_known ? ~0ull : 0;
                n++;
        }
        *out = regs;
        *n_out = n;
        return 0;
}

void peer_info_done(struct peer_info *info)
{
        if (info)
                vcpu_state_done(&info->id_regs);
}

/* Guards every peer_info's stuck list: this host's changes on svemigd's loop while peer threads send it. */
static pthread_mutex_t stuck_lock = PTHREAD_MUTEX_INITIALIZER;

bool peer_stuck_equal(const struct peer_stuck *a, const struct peer_stuck *b)
{
        if (a->n != b->n || a->total != b->total)
                return false;
        for (unsigned i = 0; i < a->n; i++) {
                const struct peer_stuck_guest *x = &a->g[i], *y = &b->g[i];

                if (strcmp(x->guest, y->guest) != 0 || strcmp(x->state, y->state) != 0 ||
                    !vqset_equal(&x->vls, &y->vls) || strcmp(x->host, y->host) != 0 ||
                    strcmp(x->why, y->why) != 0)
                        return false;
        }
        return true;
}

void peer_info_set_stuck(struct peer_info *info, const struct peer_stuck *stuck)
{
        pthread_mutex_lock(&stuck_lock);
        info->stuck = *stuck;
        pthread_mutex_unlock(&stuck_lock);
}

void peer_info_get_stuck(const struct peer_info *info, struct peer_stuck *out)
{
        pthread_mutex_lock(&stuck_lock);
        *out = info->stuck;
        pthread_mutex_unlock(&stuck_lock);
}

void peer_host_info_done(struct peer_host_info *h)
{
        free(h->regs);
        free(h->reg_ptrs);
        h->regs = NULL;
        h->reg_ptrs = NULL;
}

static void stuck_to_msg(struct peer_host_info *h)
{
        peer_info_get_stuck(h->info, &h->stuck);
        for (unsigned i = 0; i < h->stuck.n && i < PEER_STUCK_MAX; i++) {
                const struct peer_stuck_guest *g = &h->stuck.g[i];
                Svemig__Peer__StuckGuest *m = &h->stuck_msgs[i];
                size_t n = 0;

                svemig__peer__stuck_guest__init(m);
                m->guest = (char *)g->guest;
                m->state = (char *)g->state;
                m->host = (char *)g->host;
                m->why = (char *)g->why;
                VQSET_FOREACH (vq, &g->vls) {
                        if (n == VQSET_VQ_ARCH_MAX)
                                break;
                        h->stuck_bits[i][n++] = vq_to_bits(vq);
                }
                m->vl_bits = h->stuck_bits[i];
                m->n_vl_bits = n;
                h->stuck_ptrs[i] = m;
        }
        h->msg.stuck = h->stuck_ptrs;
        h->msg.n_stuck = MIN(h->stuck.n, PEER_STUCK_MAX);
        h->msg.stuck_total = h->stuck.total;
}

int peer_info_to_msg(const struct peer_info *info, struct peer_host_info *h)
{
        size_t n = info->id_regs.n_regs;
        Svemig__Peer__HostInfo *msg = &h->msg;

        h->info = info;
        h->regs = calloc(n ? n : 1, sizeof(*h->regs));
        h->reg_ptrs = calloc(n ? n : 1, sizeof(*h->reg_ptrs));
        if (!h->regs || !h->reg_ptrs) {
                peer_host_info_done(h);
                return -ENOMEM;
        }
        svemig__peer__host_info__init(msg);
        msg->host_name = (char *)info->host_name;
        msg->backend = (char *)info->backend;
        msg->kernel = (char *)info->kernel;
        msg->sve = info->sve;
        msg->vls.data = (uint8_t *)info->vls.w;
        msg->vls.len = sizeof(info->vls.w);
        msg->max_vq = info->max_vq;
        msg->max_vcpus = info->max_vcpus;
        msg->n_cpus = info->n_cpus;
        msg->ipa_bits = info->ipa_bits;
        msg->vcpu_features = info->vcpu_features;
        msg->mem_available = info->mem_available;
        for (size_t i = 0; i < n; i++) {
                svemig__reg_value__init(&h->regs[i]);
                h->regs[i].id = info->id_regs.regs[i].id;
                h->regs[i].value.data = info->id_regs.regs[i].value;
                h->regs[i].value.len = info->id_regs.regs[i].size;
                h->reg_ptrs[i] = &h->regs[i];
        }
        msg->n_id_regs = n;
        msg->id_regs = h->reg_ptrs;
        if (info->id_writable_known) {
                msg->n_id_writable = HV_ID_MASKS_N;
                msg->id_writable = (uint64_t *)info->id_writable;
        }
        stuck_to_msg(h);
        return 0;
}

static void copy_str(char *dst, size_t len, const char *src)
{
        /* A peer's words go to the journal, JSON and terminals: escaped, whatever it sent. */
        utf8_escape(src ? src : "", src ? strlen(src) : 0, dst, len);
}

/* A peer's host facts, against the architecture (SVE stops at 2048 bits) and the known features. */
static int host_facts_check(const Svemig__Peer__HostInfo *msg, struct svemig_error *err)
{
        vqset_t vls;
        unsigned top;

        memcpy(vls.w, msg->vls.data, sizeof(vls.w));
        top = MAX(vqset_highest(&vls), msg->max_vq);
        if (top > VQSET_VQ_ARCH_MAX)
                return svemig_error_set(err, EBADMSG,
                                        "HostInfo: the peer claims %u-bit vectors; SVE stops at %u bits",
                                        vq_to_bits(top), vq_to_bits(VQSET_VQ_ARCH_MAX));
        if (msg->vcpu_features & ~HV_FEAT_KNOWN)
                return svemig_error_set(err, EBADMSG,
                                        "HostInfo: the peer claims vcpu features 0x%x, unknown here",
                                        msg->vcpu_features & ~HV_FEAT_KNOWN);
        return 0;
}

/* A peer's stuck guests, escaped; lengths past the architecture's are a lie and refused. */
static int stuck_from_msg(const Svemig__Peer__HostInfo *msg, struct peer_stuck *out,
                          struct svemig_error *err)
{
        *out = (struct peer_stuck){0};
        for (size_t i = 0; i < msg->n_stuck && i < PEER_STUCK_MAX; i++) {
                const Svemig__Peer__StuckGuest *m = msg->stuck[i];
                struct peer_stuck_guest *g = &out->g[i];

                for (size_t k = 0; k < m->n_vl_bits; k++) {
                        if (m->vl_bits[k] == 0 || m->vl_bits[k] % 128 ||
                            m->vl_bits[k] > vq_to_bits(VQSET_VQ_ARCH_MAX))
                                return svemig_error_set(err, EBADMSG,
                                                        "HostInfo: stuck guest with a %u-bit vector length",
                                                        m->vl_bits[k]);
                        vqset_add(&g->vls, m->vl_bits[k] / 128);
                }
                copy_str(g->guest, sizeof(g->guest), m->guest);
                copy_str(g->state, sizeof(g->state), m->state);
                copy_str(g->host, sizeof(g->host), m->host);
                copy_str(g->why, sizeof(g->why), m->why);
                out->n++;
        }
        /* An older peer sends no total; a newer one may send more than we keep. */
        out->total = MAX(MAX(msg->stuck_total, (uint32_t)msg->n_stuck), out->n);
        return 0;
}

int peer_info_from_msg(const Svemig__Peer__HostInfo *msg, struct peer_info *info, struct svemig_error *err)
{
        struct peer_stuck stuck;

        _cleanup_free_ uint64_t *ids = NULL;
        size_t n = msg->n_id_regs;
        int r;

        if (msg->vls.len != sizeof(info->vls.w))
                return svemig_error_set(err, EBADMSG, "HostInfo: the VL set has %zu bytes, not %zu",
                                        msg->vls.len, sizeof(info->vls.w));
        if (n > SVEMIG_STREAM_ID_REGS_MAX)
                return svemig_error_set(err, E2BIG, "HostInfo: %zu ID registers, over the limit", n);
        if (msg->n_id_writable != 0 && msg->n_id_writable != HV_ID_MASKS_N)
                return svemig_error_set(err, EBADMSG,
                                        "HostInfo: %zu writable ID register masks, not 0 or %u",
                                        msg->n_id_writable, HV_ID_MASKS_N);
        r = host_facts_check(msg, err);
        if (r < 0)
                return r;
        r = stuck_from_msg(msg, &stuck, err);
        if (r < 0)
                return r;
        ids = calloc(n ? n : 1, sizeof(*ids));
        if (!ids)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                ids[i] = msg->id_regs[i]->id;
                if (msg->id_regs[i]->value.len != kvmreg_size(ids[i]))
                        return svemig_error_set(err, EBADMSG,
                                                "HostInfo: ID register 0x%016" PRIx64
                                                " has %zu bytes, its ID "
                                                "says %u",
                                                ids[i], msg->id_regs[i]->value.len, kvmreg_size(ids[i]));
        }
        copy_str(info->host_name, sizeof(info->host_name), msg->host_name);
        copy_str(info->backend, sizeof(info->backend), msg->backend);
        copy_str(info->kernel, sizeof(info->kernel), msg->kernel);
        info->sve = msg->sve;
        memcpy(info->vls.w, msg->vls.data, sizeof(info->vls.w));
        info->max_vq = msg->max_vq;
        info->max_vcpus = msg->max_vcpus;
        info->n_cpus = msg->n_cpus;
        info->ipa_bits = msg->ipa_bits;
        info->vcpu_features = msg->vcpu_features;
        info->mem_available = msg->mem_available;
        info->id_writable_known = msg->n_id_writable == HV_ID_MASKS_N;
        memset(info->id_writable, 0, sizeof(info->id_writable));
        if (info->id_writable_known)
                memcpy(info->id_writable, msg->id_writable, sizeof(info->id_writable));
        info->stuck = stuck;
        vcpu_state_done(&info->id_regs);
        if (vcpu_state_alloc(&info->id_regs, ids, n) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
                memcpy(info->id_regs.regs[i].value, msg->id_regs[i]->value.data, info->id_regs.regs[i].size);
        return 0;
}

static int send_host_info(struct wire *w, const struct peer_info *self, struct svemig_error *err)
{
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;
        _cleanup_(peer_host_info_done) struct peer_host_info hi = {0};

        if (peer_info_to_msg(self, &hi) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_HOST_INFO;
        msg.host_info = &hi.msg;
        return wire_send(w, &msg, err);
}

/* Reads the next message and insists on its kind. */
static int expect(struct wire *w, Svemig__Peer__PeerMessage__BodyCase kind, const char *what,
                  PeerMessage **out, struct svemig_error *err)
{
        int r = wire_recv(w, w->timeout_ms, out, err);

        if (r < 0)
                return svemig_error_prefix(err, "waiting for the peer's %s", what);
        if ((*out)->body_case == SVEMIG__PEER__PEER_MESSAGE__BODY_ABORT)
                return svemig_error_set(err, (*out)->abort->code ? (int)(*out)->abort->code : EPROTO,
                                        "the peer refused: %s", (*out)->abort->message);
        if ((*out)->body_case != kind)
                return svemig_error_set(err, EPROTO, "the peer sent %s where %s was due",
                                        wire_body_name(*out), what);
        return 0;
}

int peer_hello(int fd, const struct peer_info *self, unsigned timeout_ms, struct peer_info *remote,
               struct svemig_error *err)
{
        return peer_hello_accept(fd, self, timeout_ms, NULL, NULL, remote, err);
}

int peer_hello_accept(int fd, const struct peer_info *self, unsigned timeout_ms, peer_accept_fn accept,
                      void *userdata, struct peer_info *remote, struct svemig_error *err)
{
        Svemig__Peer__Hello hello = SVEMIG__PEER__HELLO__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT, *in;
        struct wire w;
        unsigned agreed;
        int r;

        memset(remote, 0, sizeof(*remote));
        wire_init(&w, fd, timeout_ms);
        hello.protocol_version = MIGRATE_PROTOCOL_VERSION;
        hello.min_protocol_version = MIGRATE_PROTOCOL_VERSION_MIN;
        hello.svemig_version = (char *)SVEMIG_VERSION;
        hello.host_name = (char *)self->host_name;
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_HELLO;
        msg.hello = &hello;

        /* Both sides speak first: the messages are small enough for any socket buffer. */
        r = wire_send(&w, &msg, err);
        if (r == 0)
                r = expect(&w, SVEMIG__PEER__PEER_MESSAGE__BODY_HELLO, "Hello", &in, err);
        if (r < 0)
                goto out;
        agreed = MIN(in->hello->protocol_version, MIGRATE_PROTOCOL_VERSION);
        copy_str(remote->host_name, sizeof(remote->host_name), in->hello->host_name);
        copy_str(remote->svemig_version, sizeof(remote->svemig_version), in->hello->svemig_version);
        if (agreed < MAX(in->hello->min_protocol_version, MIGRATE_PROTOCOL_VERSION_MIN)) {
                r = svemig_error_set(
                        err, EPROTONOSUPPORT,
                        "peer %s (svemig %s) speaks peer protocol %u..%u, this svemig %s speaks "
                        "%u..%u: upgrade the older one",
                        remote->host_name, remote->svemig_version, in->hello->min_protocol_version,
                        in->hello->protocol_version, SVEMIG_VERSION, MIGRATE_PROTOCOL_VERSION_MIN,
                        MIGRATE_PROTOCOL_VERSION);
                goto out;
        }
        if (accept) {
                r = accept(userdata, in->hello->host_name ? in->hello->host_name : "", err);
                if (r < 0)
                        goto out;
        }
        r = send_host_info(&w, self, err);
        if (r == 0)
                r = expect(&w, SVEMIG__PEER__PEER_MESSAGE__BODY_HOST_INFO, "HostInfo", &in, err);
        if (r == 0)
                r = peer_info_from_msg(in->host_info, remote, err);
        remote->protocol_version = agreed;
out:
        if (r < 0 && r != -EPIPE && r != -ENOTCONN && r != -ECONNRESET)
                wire_send_abort(&w, r, MIGRATE_STEP_NONE, svemig_error_str(err, r));
        wire_done(&w);
        if (r < 0)
                peer_info_done(remote);
        return r;
}

int peer_request_info(int fd, unsigned timeout_ms, struct peer_info *remote, struct svemig_error *err)
{
        Svemig__Peer__HostInfoRequest req = SVEMIG__PEER__HOST_INFO_REQUEST__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT, *in;
        struct wire w;
        int r;

        wire_init(&w, fd, timeout_ms);
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_HOST_INFO_REQUEST;
        msg.host_info_request = &req;
        r = wire_send(&w, &msg, err);
        if (r == 0)
                r = expect(&w, SVEMIG__PEER__PEER_MESSAGE__BODY_HOST_INFO, "HostInfo", &in, err);
        if (r == 0)
                r = peer_info_from_msg(in->host_info, remote, err);
        wire_done(&w);
        return r;
}

int peer_bye(int fd, unsigned timeout_ms, struct svemig_error *err)
{
        Svemig__Peer__Bye bye = SVEMIG__PEER__BYE__INIT;
        PeerMessage msg = SVEMIG__PEER__PEER_MESSAGE__INIT;
        struct wire w;
        int r;

        wire_init(&w, fd, timeout_ms);
        msg.body_case = SVEMIG__PEER__PEER_MESSAGE__BODY_BYE;
        msg.bye = &bye;
        r = wire_send(&w, &msg, err);
        wire_done(&w);
        return r;
}

int peer_serve_info(struct wire *w, const struct peer_info *self, struct svemig_error *err)
{
        return send_host_info(w, self, err);
}
