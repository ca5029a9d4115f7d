/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * countdown.S's iteration count, shared with the host's model of its result
 * (workload-model.h). A multiple of 2^16 below 2^32 (movz/movk): a few
 * seconds of guest time on the rig's emulated hosts (about 1 M iterations a
 * second there), long enough for a migration to start and end while it runs.
 */
#define COUNTDOWN_ITERS 0x400000
