/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A snapshot's stream header, read off the event loop: a thread preads the
 * preamble, header and header checksum of the client's file (never more,
 * and without moving its offset, which the VMM reads from), and the loop
 * gets what the header says. So a restore is judged by its header (admit.h)
 * before a VMM exists for it, and a slow disk or a large header never stalls
 * the loop.
 */

#include <systemd/sd-event.h>

#include "svemig/error.h"
#include "svemig/stream.h"

/*
 * On the loop: r == 0 and info (valid during the call only), or r < 0 and
 * err saying what is wrong with the file.
 */
typedef void (*header_read_done_fn)(void *userdata, int r, const struct svemig_error *err,
                                    const struct svemig_stream_info *info);

/* Starts reading fd's header (fd stays the caller's and must stay open until done() has run). */
int header_read_start(sd_event *event, int fd, header_read_done_fn done, void *userdata,
                      struct svemig_error *err);
