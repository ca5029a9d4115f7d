/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A guest's state in 32 hex digits: XXH3-128 over every vcpu's registers
 * and all of RAM. Two guests with the same digest hold the same state, so
 * `svemigctl guest show --digest` lets a person see that a restored guest
 * and its original agree after the same steps, without a snapshot file.
 *
 * The timer registers are left out: their counters follow the host's clock
 * (docs/sim-workload.md), as vcpu_state_equal() leaves them out.
 */
#include <errno.h>
#include <stdio.h>
#include <xxhash.h>

#include "guest-digest.h"
#include "macro.h"
#include "svemig/kvmreg.h"

static bool reg_is_timer(uint64_t id)
{
        struct kvmreg reg;

        return kvmreg_decode(id, &reg, NULL) == 0 && reg.cls == KVMREG_CLASS_TIMER;
}

int guest_digest(struct guest *g, char out[GUEST_DIGEST_HEX_SIZE], struct svemig_error *err)
{
        struct vcpu_state *states = NULL;
        unsigned n = guest_n_vcpus(g);
        XXH3_state_t *h;
        XXH128_canonical_t canon;
        int r;

        if (guest_running(g))
                return svemig_error_set(err, EBUSY, "the guest is running; pause it to take its digest");
        r = guest_capture(g, &states, err);
        if (r < 0)
                return r;
        h = XXH3_createState();
        if (!h) {
                guest_states_free(states, n);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        XXH3_128bits_reset(h);
        for (unsigned i = 0; i < n; i++) {
                const struct vcpu_state *st = &states[i];

                XXH3_128bits_update(h, &st->features, sizeof(st->features));
                XXH3_128bits_update(h, &st->vls, sizeof(st->vls));
                XXH3_128bits_update(h, &st->mp_state, sizeof(st->mp_state));
                for (size_t k = 0; k < st->n_regs; k++) {
                        if (reg_is_timer(st->regs[k].id))
                                continue;
                        XXH3_128bits_update(h, &st->regs[k].id, sizeof(st->regs[k].id));
                        XXH3_128bits_update(h, st->regs[k].value, st->regs[k].size);
                }
        }
        XXH3_128bits_update(h, guest_mem(g), guest_mem_size(g));
        XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(h));
        XXH3_freeState(h);
        guest_states_free(states, n);

        for (size_t i = 0; i < sizeof(canon.digest); i++)
                snprintf(out + 2 * i, 3, "%02x", canon.digest[i]);
        return 0;
}
