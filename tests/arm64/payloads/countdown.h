/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * countdown.S's iteration count, shared with the host's model of its result
 * (workload-model.h). A multiple of 2^16 below 2^32 (movz/movk): a few
 * tens of seconds of guest time on the rig's emulated hosts (about 1 M
 * iterations a second there): a migration must start while it runs even when
 * each svemigctl call in the emulated host takes seconds (a loaded CI
 * machine: 4 M iterations were over before two calls had answered).
 */
#define COUNTDOWN_ITERS 0x2000000
