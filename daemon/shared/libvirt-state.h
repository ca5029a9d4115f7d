/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* For the programs that link libvirt (svemigd's libvirt-watch.c, svemigctl-libvirt). */
#include <libvirt/libvirt.h>

/* A domain state (virDomainState) as svemigctl shows it. */
static inline const char *libvirt_state_name(int state)
{
        switch (state) {
        case VIR_DOMAIN_RUNNING:
                return "running";
        case VIR_DOMAIN_BLOCKED:
                return "blocked";
        case VIR_DOMAIN_PAUSED:
                return "paused";
        case VIR_DOMAIN_SHUTDOWN:
                return "shutting down";
        case VIR_DOMAIN_SHUTOFF:
                return "shut off";
        case VIR_DOMAIN_CRASHED:
                return "crashed";
        case VIR_DOMAIN_PMSUSPENDED:
                return "suspended";
        default:
                return "unknown";
        }
}
