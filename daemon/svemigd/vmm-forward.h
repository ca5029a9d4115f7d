/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A client's call handed on to the guest's VMM: its Progress events are
 * relayed to the client, a cancel from the client is passed to the VMM, and
 * the VMM's refusal comes back word for word (Status as it is). If the VMM
 * dies meanwhile, the call fails saying so.
 */

#include <stdbool.h>

#include "api-server.h"
#include "guest-registry.h"

struct svemigd;
struct forward;

/* The VMM answered with success. Must complete f->call (reply or fail). */
typedef void (*forward_done_t)(struct forward *f, const Svemig__Api__Response *resp);

struct forward {
        struct svemigd *d;
        struct api_call *call;
        struct guest_entry *e; /* a reference, dropped after done */
        uint64_t vmm_id;
        forward_done_t done;
        void (*failed)(struct forward *f); /* optional: before a failure is relayed */
        bool record_if_lost;               /* the VMM died meanwhile: answer with the record (show) */
        void *data;
};

/*
 * Sends req to e's VMM for call. done NULL: forward_reply_guest. Returns a
 * negative errno (nothing sent) when e has no VMM or sending failed.
 */
int vmm_forward(struct svemigd *d, struct api_call *call, struct guest_entry *e, Svemig__Api__Request *req,
                forward_done_t done, void *data, bool cancellable, struct forward **out,
                struct svemig_error *err);
/* The same, passing a copy of fd (a client's file) with the request; fd stays the caller's. */
int vmm_forward_fd(struct svemigd *d, struct api_call *call, struct guest_entry *e,
                   Svemig__Api__Request *req, int fd, forward_done_t done, void *data, bool cancellable,
                   struct forward **out, struct svemig_error *err);

/* Takes the VMM's Guest into the record and answers the client with the guest. */
void forward_reply_guest(struct forward *f, const Svemig__Api__Response *resp);

/* Answers call with e as the record has it, live adding what a VMM just said (may be NULL). */
void reply_guest(struct api_call *call, const struct guest_entry *e, const Svemig__Api__Guest *live);

/* Why e has no VMM to do 'what', as a sentence for the client. */
int guest_not_live(const struct guest_entry *e, const char *what, struct svemig_error *err);

/*
 * Starts a VMM for e: the guest from its record, or restored from the
 * snapshot open on restore_fd (>= 0; the VMM gets a copy). payload_fd: the
 * client's payload image for a new payload guest, which the VMM keeps a copy
 * of in the guest's directory to boot it again later; -1: that copy (or the
 * sim workload). Its progress is relayed to call; a cancel of call
 * kills it. done() runs once: with the VMM's Response (success: e is
 * attached to the VMM and its record updated and saved; or the VMM's
 * refusal, Status as it is), or with resp == NULL and why.
 */
typedef void (*launch_done_t)(struct svemigd *d, struct api_call *call, struct guest_entry *e,
                              const Svemig__Api__Response *resp, const char *why);
int guest_launch(struct svemigd *d, struct api_call *call, struct guest_entry *e, int restore_fd,
                 int payload_fd, launch_done_t done, struct svemig_error *err);
/* The same for a new Linux guest: fds[0] its client's kernel, fds[1] its initrd or -1 (the VMM gets copies).
 */
int guest_launch_linux(struct svemigd *d, struct api_call *call, struct guest_entry *e, const int fds[2],
                       launch_done_t done, struct svemig_error *err);
/* The same for a restore from a URL, which the VMM reads with migrate.conf's [store] settings. */
int guest_launch_url(struct svemigd *d, struct api_call *call, struct guest_entry *e, const char *url,
                     launch_done_t done, struct svemig_error *err);
/*
 * The same for a guest migrating in on fd (a peer connection, hello done; the VMM gets a copy), no call.
 * standby: the incoming RAM reserve's standby VMM (ram-reserve.h), which becomes the guest's VMM, now
 * this call's in every case; if it cannot take the guest, or NULL, a new VMM is started. channel_fd: the
 * VMM's end of the unix socket its memory channels are passed on (the VMM gets a copy), or -1: none.
 */
struct ram_standby;
int guest_launch_receive(struct svemigd *d, struct guest_entry *e, int fd, const struct ram_standby *standby,
                         int channel_fd, launch_done_t done, struct svemig_error *err);
