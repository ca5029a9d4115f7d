/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The host-info operation: what this host's hypervisor offers a guest. */
#include <endian.h>
#include <string.h>

#include "api-ops.h"
#include "cluster-view.h"
#include "config.h"
#include "macro.h"
#include "svemigd.h"

/* What this daemon does that an older one does not (HostInfo.features). */
static const char *const features[] = {
        "client-files", /* files a request names come as descriptors only */
};

int op_host_info(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                 struct svemig_error *err)
{
        Svemig__Api__Response resp = SVEMIG__API__RESPONSE__INIT;
        Svemig__Api__HostInfo info = SVEMIG__API__HOST_INFO__INIT;
        struct svemigd *d = userdata;
        const struct peer_info *self = cluster_view_self(d->cluster);
        _cleanup_free_ Svemig__RegValue *regs = NULL;
        _cleanup_free_ Svemig__RegValue **reg_ptrs = NULL;
        uint32_t vl_bits[VQSET_VQ_MAX];
        uint64_t vls[VQSET_WORDS];
        struct hv_caps caps;
        size_t n = 0;
        int r;

        r = hv_get_caps(d->hv, &caps);
        if (r < 0)
                return svemig_error_set(err, r, "cannot read the %s hypervisor's capabilities: %s",
                                        hv_backend_name(d->hv), strerror(-r));

        VQSET_FOREACH (vq, &caps.vls) {
                vl_bits[n++] = vq_to_bits(vq);
        }
        /* The register's own layout: __u64[8], little-endian. */
        for (unsigned i = 0; i < VQSET_WORDS; i++)
                vls[i] = htole64(caps.vls.w[i]);

        info.backend = caps.backend;
        info.kernel = caps.kernel;
        info.host_name = d->conf.host_name; /* the name peers know us by */
        info.sve = caps.sve;
        info.n_vl_bits = n;
        info.vl_bits = vl_bits;
        info.vls.data = (uint8_t *)vls;
        info.vls.len = sizeof(vls);
        info.max_vl_bits = vq_to_bits(caps.max_vq);
        info.cpus = caps.n_cpus;
        info.max_vcpus = caps.max_vcpus;
        info.ipa_bits = caps.ipa_bits;
        info.daemon_version = (char *)SVEMIG_VERSION;
        info.n_features = ELEMENTSOF(features);
        info.features = (char **)features;

        /* The CPU baseline's inputs: what this host tells its peers. */
        regs = calloc(self->id_regs.n_regs + 1, sizeof(*regs));
        reg_ptrs = calloc(self->id_regs.n_regs + 1, sizeof(*reg_ptrs));
        if (!regs || !reg_ptrs)
                return svemig_error_set(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < self->id_regs.n_regs; i++) {
                svemig__reg_value__init(&regs[i]);
                regs[i].id = self->id_regs.regs[i].id;
                regs[i].value.data = self->id_regs.regs[i].value;
                regs[i].value.len = self->id_regs.regs[i].size;
                reg_ptrs[i] = &regs[i];
        }
        info.n_id_regs = self->id_regs.n_regs;
        info.id_regs = reg_ptrs;
        if (self->id_writable_known) {
                info.n_id_writable = HV_ID_MASKS_N;
                info.id_writable = (uint64_t *)self->id_writable;
        }

        resp.result_case = SVEMIG__API__RESPONSE__RESULT_HOST_INFO;
        resp.host_info = &info;
        api_call_reply(call, &resp);
        return 0;
}
