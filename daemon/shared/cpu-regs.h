/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A guest's CPU baseline as text, "0xID=0xVALUE,...": what svemigd records
 * in guest.json ("cpu_regs") and hands its VMM (--cpu-regs), which writes
 * it into the vcpus' ID registers before their first run
 * (guest_config.id_regs).
 */

#include <stddef.h>

#include "svemig/cpubase.h"
#include "svemig/error.h"

/* The registers' IDs and values (not their writable bits), into *out (free() it). */
int cpu_regs_format(const struct cpubase_reg *regs, size_t n, char **out);

/* Reads cpu_regs_format()'s text: 0, or -EINVAL naming the bad item. Free *out. */
int cpu_regs_parse(const char *text, struct cpubase_reg **out, size_t *n_out, struct svemig_error *err);
