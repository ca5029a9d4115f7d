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
        {OP(GUEST_CREATE), "guest-create", op_guest_create, false},
        {OP(GUEST_START), "guest-start", op_guest_start, false},
        {OP(GUEST_PAUSE), "guest-pause", op_guest_pause, false},
        {OP(GUEST_RESUME), "guest-resume", op_guest_resume, false},
        {OP(GUEST_STOP), "guest-stop", op_guest_stop, false},
        {OP(GUEST_DELETE), "guest-delete", op_guest_delete, false},
        {OP(GUEST_LIST), "guest-list", op_guest_list, false},
        {OP(GUEST_SHOW), "guest-show", op_guest_show, false},
        {OP(GUEST_RUN), "guest-run", op_guest_run, false},
        {OP(SNAPSHOT), "snapshot", op_snapshot, false},
        {OP(RESTORE), "restore", op_restore, false},
        {OP(CLUSTER), "cluster", op_cluster, false},
        {OP(MIGRATE), "migrate", op_migrate, false},
        {OP(LIBVIRT_HOOK), "libvirt-hook", op_libvirt_hook, false},
        {OP(LIBVIRT_LIST), "libvirt-list", op_libvirt_list, false},
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
