/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The verdict lines of the rig's programs: "PASS/FAIL what", then "N passed, M failed". */

#include <stdbool.h>

bool rig_check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Failures so far. */
unsigned rig_failures(void);
/* Prints the closing line; returns the exit code: 1 when anything failed or nothing was checked. */
int rig_summary(void);
