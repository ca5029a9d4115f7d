/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "svemig/error.h"
#include "svemig/guest.h"

#define GUEST_DIGEST_HEX_SIZE 33 /* 32 hex digits and the NUL */

/*
 * XXH3-128 of a guest that is not running: every vcpu's features, VL set,
 * mp_state and registers (the timers aside), then all of RAM. -EBUSY while
 * it runs.
 */
int guest_digest(struct guest *g, char out[GUEST_DIGEST_HEX_SIZE], struct svemig_error *err);
