/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "sim/reglist.h"

const struct reglist_profile *reglist_profile_find(const char *kernel, bool sve)
{
        size_t len = strlen(kernel);

        for (size_t i = 0; i < reglist_n_profiles; i++) {
                const struct reglist_profile *p = &reglist_profiles[i];

                /* "6.1" must not match "6.12...": the prefix has to end at a version separator. */
                if (p->sve == sve && strncmp(p->kernel, kernel, len) == 0 &&
                    strchr(".-+", p->kernel[len]) != NULL)
                        return p;
        }
        return NULL;
}
