/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The control socket between svemigd and a standby VMM (`svemig-vmm
 * --standby SIZE --control-fd N`, the incoming RAM reserve: ram-reserve.h).
 *
 * A SOCK_SEQPACKET socketpair made by svemigd; each message is one
 * datagram holding one fixed struct below (both ends come from the same
 * build, so no versioning beyond the magic):
 *
 *   standby -> svemigd, once: struct standby_ready. code 0: its RAM is
 *     mapped and faulted in, it waits for an order; else a positive errno
 *     and the sentence saying why it could not, and it exits non-zero.
 *   svemigd -> standby, once: struct standby_order, with SCM_RIGHTS
 *     carrying, in this order, the peer connection the guest arrives on
 *     (a spawned receiving VMM's --receive-fd), the write end of the ready
 *     pipe (--ready-fd) and, when has_channel, the socket its memory
 *     channels are passed on (--channel-fd). From then on the standby is
 *     that guest's receiving VMM, as if started with those options.
 *
 * The socket's end (svemigd stopped, or gave up on it) before an order is
 * not an error: the standby exits 0.
 */

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest-record.h"
#include "svemig/error.h"

#define STANDBY_READY_MAGIC 0x53425259u /* "SBRY" */
#define STANDBY_ORDER_MAGIC 0x5342524fu /* "SBRO" */

struct standby_ready {
        uint32_t magic;
        int32_t code; /* 0: ready; else a positive errno */
        char message[SVEMIG_ERROR_MSG_MAX];
};

struct standby_order {
        uint32_t magic;
        bool has_channel;
        char name[GUEST_NAME_MAX + 1];
        char dir[PATH_MAX];
};

/* The fds an order carries, as the standby receives them; -1: none. */
struct standby_order_fds {
        int receive_fd;
        int ready_fd;
        int channel_fd;
};

/* From the standby: ready (r 0), or why it is not (r < 0, with err's sentence). */
int standby_ready_send(int sock, int r, const struct svemig_error *err);
/*
 * From svemigd's loop (the socket is non-blocking): 1 ready; 0 the socket's
 * end; -EAGAIN nothing yet; else the standby's failure (or a garbled
 * message), with a sentence in err.
 */
int standby_ready_recv(int sock, struct svemig_error *err);

/* From svemigd. channel_fd -1: none. The fds stay the caller's (the standby gets copies). */
int standby_order_send(int sock, const char *name, const char *dir, int receive_fd, int ready_fd,
                       int channel_fd, struct svemig_error *err);
/* In the standby, blocking: 1 an order (its fds now the caller's, close-on-exec); 0 the socket's end. */
int standby_order_recv(int sock, struct standby_order *order, struct standby_order_fds *fds,
                       struct svemig_error *err);
