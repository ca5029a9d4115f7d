/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>

#include "sim/idfacts.h"
#include "svemig/kvmreg.h"

bool idfacts_same_series(const char *a, const char *b)
{
        unsigned amaj, amin, bmaj, bmin;

        return sscanf(a, "%u.%u", &amaj, &amin) == 2 && sscanf(b, "%u.%u", &bmaj, &bmin) == 2 &&
               amaj == bmaj && amin == bmin;
}

const struct idfacts_profile *idfacts_find(const char *kernel, bool nvhe, bool sve)
{
        for (size_t i = 0; i < idfacts_n_profiles; i++) {
                const struct idfacts_profile *p = &idfacts_profiles[i];

                if (p->nvhe == nvhe && p->sve == sve && idfacts_same_series(p->kernel, kernel))
                        return p;
        }
        return NULL;
}

bool idfacts_probed(uint64_t id)
{
        struct kvmreg r;

        if ((id & KVMREG_COPROC_MASK) >> KVMREG_COPROC_SHIFT == KVMREG_GROUP_DEMUX)
                return true;
        if (kvmreg_decode(id, &r, NULL) < 0 || (r.cls != KVMREG_CLASS_SYS_ID && r.cls != KVMREG_CLASS_SYS))
                return false;
        return r.op0 == 3 && (r.op1 == 0 || r.op1 == 1 || r.op1 == 3) && r.crn == 0 && r.crm <= 7;
}

uint64_t idfacts_mask(const struct idfacts_profile *p, uint64_t id)
{
        for (size_t i = 0; p->masks && i < p->n_masks; i++)
                if (p->masks[i].id == id)
                        return p->masks[i].mask;
        return 0;
}

/*
 * Whether the kernel takes value 'want' in a field that is 'host' on this
 * host. On a host whose field is what the rig's was, the measured set says;
 * on another, a value of that set is taken only below the host's own (the
 * lower-safe rule of most fields), but for fields that take anything.
 */
static bool field_takes(const struct idfacts_profile *p, uint64_t id, unsigned shift, unsigned host,
                        unsigned want)
{
        for (size_t i = 0; i < p->n_fields; i++) {
                const struct idfacts_field *f = &p->fields[i];

                if (f->id != id || f->shift != shift)
                        continue;
                if (!(f->values >> want & 1))
                        return false;
                return f->values == 0xffff || host == f->from || want < host;
        }
        return want == host;
}

static bool frozen(const struct idfacts_profile *p, uint64_t id)
{
        for (size_t i = 0; i < p->n_frozen; i++)
                if (p->frozen[i] == id)
                        return true;
        return false;
}

/*
 * Each field is judged alone, as the kernel's arm64_check_features() does: a
 * value the rig saw the kernel take for it, with the other fields at the
 * host's. On a kernel with writable masks, no bit outside them may change.
 */
int idfacts_check_write(const struct idfacts_profile *p, uint64_t id, uint64_t reset, uint64_t cur,
                        uint64_t val, unsigned size, bool ran)
{
        uint64_t mask = idfacts_mask(p, id);

        if (val == cur)
                return 0;
        if (ran && p->run_errno && frozen(p, id))
                return -p->run_errno;
        if (mask && ((val ^ reset) & ~mask))
                return -p->refuse_errno;
        for (unsigned shift = 0; shift < size * 8; shift += 4) {
                unsigned want = (unsigned)(val >> shift) & 0xf, host = (unsigned)(reset >> shift) & 0xf;

                if (!field_takes(p, id, shift, host, want))
                        return -p->refuse_errno;
        }
        return 0;
}
