/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Which handler serves which operation. An operation with no handler yet
 * answers ENOSYS "not implemented yet"; wiring one is a line here.
 */
#include "api-ops.h"
#include "macro.h"

static int op_cancel(struct api_call *call, const Svemig__Api__Request *req, void *userdata,
                     struct svemig_error *err)
{
        return api_server_cancel(call, req->cancel, err);
}

#define OP(c) SVEMIG__API__REQUEST__OP_##c

static const struct api_op ops[] = {
        {OP(HOST_INFO), "host-info", op_host_info, false},
        {OP(GUEST_CREATE), "guest-create", NULL, false},
        {OP(GUEST_START), "guest-start", NULL, false},
        {OP(GUEST_PAUSE), "guest-pause", NULL, false},
        {OP(GUEST_RESUME), "guest-resume", NULL, false},
        {OP(GUEST_STOP), "guest-stop", NULL, false},
        {OP(GUEST_DELETE), "guest-delete", NULL, false},
        {OP(GUEST_LIST), "guest-list", NULL, false},
        {OP(GUEST_SHOW), "guest-show", NULL, false},
        {OP(SNAPSHOT), "snapshot", NULL, false},
        {OP(RESTORE), "restore", NULL, false},
        /* A stopping daemon still lets a client cancel what it waits for. */
        {OP(CANCEL), "cancel", op_cancel, true},
};

const struct api_op *api_op_find(int op_case)
{
        for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                if (ops[i].op_case == op_case)
                        return &ops[i];
        return NULL;
}
