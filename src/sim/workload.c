/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sim's synthetic guest: one step rewrites SVE (or FPSIMD) vector state,
 * predicates, FFR, FPSR/FPCR, general registers, TPIDR_EL0 and guest memory,
 * each from a running hash of everything read before it. The next state
 * depends on the whole current state, so a snapshot or migration that drops
 * or narrows a single bit shows up as a diverging run. docs/sim-workload.md
 * gives the exact definition.
 */
#include <string.h>

#include "macro.h"
#include "sim/sim.h"
#include "svemig/guest.h"

/* Guest-visible parameters, set by whoever loads the guest. */
#define WL_X_STRIPE_INDEX 26 /* which share of memory this vcpu writes */
#define WL_X_STRIPES      27 /* how many vcpus share memory */
#define WL_X_DIRTY_PAGES  28 /* pages written per step */
#define WL_X_SCRATCH      24 /* x2..x25 are rewritten by the workload */

#define FPSR_MASK 0xf800009full /* N Z C V QC, IDC, IXC UFC OFC DZC IOC */
#define FPCR_MASK 0x07c80000ull /* AHP DN FZ RMode FZ16 */

/* splitmix64's finaliser: a cheap bijective mix with full avalanche. */
static uint64_t mix(uint64_t x)
{
        x += 0x9e3779b97f4a7c15ull;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        return x ^ (x >> 31);
}

static uint64_t load64(const uint8_t *p)
{
        uint64_t v;

        memcpy(&v, p, sizeof(v));
        return v;
}

static void store64(uint8_t *p, uint64_t v)
{
        memcpy(p, &v, sizeof(v));
}

/*
 * Rewrites 'bytes' of a vector register at the effective length and zeroes
 * the rest up to 'max', as an SVE write at a reduced VL does.
 */
static uint64_t rewrite_vector(uint8_t *reg, unsigned bytes, unsigned max, uint64_t h)
{
        for (unsigned j = 0; j < bytes / 8; j++) {
                uint64_t lane = mix(load64(reg + 8 * j) ^ h ^ (j * 0x9e3779b97f4a7c15ull));

                store64(reg + 8 * j, lane);
                h = mix(h ^ lane);
        }
        memset(reg + bytes, 0, max - bytes);
        return h;
}

static uint64_t rewrite_predicate(uint8_t *reg, unsigned bytes, unsigned max, uint64_t h)
{
        for (unsigned j = 0; j < bytes; j++) {
                reg[j] ^= (uint8_t)mix(h + j);
                h = mix(h ^ reg[j]);
        }
        memset(reg + bytes, 0, max - bytes);
        return h;
}

/*
 * The sim's vcpus reach guest RAM as a guest's CPUs do: on KVM the host's
 * ThreadSanitizer never sees those accesses (the guest runs them), and here
 * it does not either. Its reports of them against pre-copy's readers were
 * live migration's design (docs/migration.md: the dirty log sends such a
 * page again), and each one, suppressed, still cost TSan a symbolized stack:
 * test-migrate's channel cases ran for tens of minutes under it.
 */
__attribute__((no_sanitize("thread"), noinline)) static uint64_t guest_rmw(uint8_t *p, uint64_t h)
{
        uint64_t *word = (uint64_t *)(void *)p; /* 8-byte aligned: off is a multiple of 8 */
        uint64_t old = *word;

        *word = mix(old ^ h);
        return old;
}

static uint64_t touch_memory(struct sim_vcpu *v, uint64_t h)
{
        const struct sim_slot *slot = sim_vm_first_slot(sim_vm_of(v));
        uint64_t stripes = v->x[WL_X_STRIPES] ? v->x[WL_X_STRIPES] : 1;
        uint64_t index = v->x[WL_X_STRIPE_INDEX] % stripes;
        uint64_t per_stripe;

        if (!slot)
                return h;
        per_stripe = slot->size / HV_PAGE_SIZE / stripes;
        if (per_stripe == 0)
                return h;

        for (uint64_t d = 0; d < MIN(v->x[WL_X_DIRTY_PAGES], (uint64_t)GUEST_DIRTY_PAGES_MAX); d++) {
                uint64_t r = mix(h + d);
                uint64_t page = index + stripes * (r % per_stripe);
                uint64_t off = (r >> 32) % (HV_PAGE_SIZE / 8) * 8;
                uint64_t gpa = slot->gpa + page * HV_PAGE_SIZE + off;
                uint64_t old = guest_rmw(sim_vm_mem(sim_vm_of(v), gpa, 8), h);

                sim_vm_mark_dirty(sim_vm_of(v), gpa, 8);
                h = mix(h ^ old);
        }
        return h;
}

void sim_workload_step(struct sim_vcpu *v)
{
        uint64_t *x = v->x, h = x[1];
        unsigned n = (unsigned)(x[0] % 32);

        if (v->sve) {
                unsigned vq = sim_vcpu_effective_vq(v);

                h = rewrite_vector(v->z[n], vq * 16, SIM_ZREG_MAX, h);
                h = rewrite_predicate(v->p[n % SIM_NR_PREGS], vq * 2, SIM_PREG_MAX, h);
                if (n % 4 == 0)
                        /* FFR takes a predicate's value, as SETFFR/RDFFR sequences leave it. */
                        memcpy(v->ffr, v->p[n % SIM_NR_PREGS], SIM_PREG_MAX);
        } else {
                h = rewrite_vector(v->v[n], 16, 16, h);
        }

        *v->fpsr = (*v->fpsr ^ h) & FPSR_MASK;
        if (n % 8 == 0)
                *v->fpcr = h & FPCR_MASK;
        h = mix(h ^ *v->fpsr ^ *v->fpcr);

        h = touch_memory(v, h);

        x[2 + n % WL_X_SCRATCH] = h;
        *v->tpidr_el0 = h ^ x[0];
        x[1] = h;
        x[0]++;
        *v->pc = 0x800 + 4 * (x[0] % 64);
}
