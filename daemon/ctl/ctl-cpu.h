/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <json-c/json.h>

#include "svemig/cpubase.h"

/*
 * {"baseline": {ID: VALUE}, "hosts": [{index, writes_id_regs}], "limits",
 * "conflicts", "el2_only_not_compared"}.
 */
struct json_object *ctl_cpu_json(const struct cpubase_result *c);

/* The baseline, its limits, conflicts and EL2-only fields; names index-aligned with c's hosts. c NULL: not
 * negotiated. */
void ctl_cpu_print(const char *const *names, const struct cpubase_result *c);
