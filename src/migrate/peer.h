/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Hello, HostInfo and this host's description: what two hosts tell each
 * other before a migration, and the probe vcpu that measures this host.
 */

#include <stdint.h>

#include "migrate/wire.h"
#include "svemig/hv.h"
#include "svemig/migrate.h"

/* Creates vcpu 0 on vm and sets it up as init(features) -> SVE_VLS -> finalize. */
int peer_probe_vcpu(struct hv_vm *vm, uint32_t features, const vqset_t *vls, struct hv_vcpu **out,
                    struct svemig_error *err);

/* MemAvailable from /proc/meminfo, in bytes; 0 when unknown. */
uint64_t peer_mem_available(void);

/* A HostInfo message built from a peer_info, with what it points to. */
struct peer_host_info {
        Svemig__Peer__HostInfo msg;
        const struct peer_info *info;
        Svemig__RegValue *regs;
        Svemig__RegValue **reg_ptrs;
        struct peer_stuck stuck; /* a copy: this host's list may change while the message is sent */
        Svemig__Peer__StuckGuest stuck_msgs[PEER_STUCK_MAX];
        Svemig__Peer__StuckGuest *stuck_ptrs[PEER_STUCK_MAX];
        uint32_t stuck_bits[PEER_STUCK_MAX][VQSET_VQ_ARCH_MAX];
};

int peer_info_to_msg(const struct peer_info *info, struct peer_host_info *out);
void peer_host_info_done(struct peer_host_info *h);
int peer_info_from_msg(const Svemig__Peer__HostInfo *msg, struct peer_info *info, struct svemig_error *err);

/* Answers a HostInfoRequest with self. */
int peer_serve_info(struct wire *w, const struct peer_info *self, struct svemig_error *err);
