/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemigd built without the libvirt client library (meson -Dlibvirt=disabled,
 * as the arm64 rig's cross build is): [libvirt] uri is refused with the
 * reason; the hook's questions are still answered (op-libvirt.c).
 */
#include <errno.h>

#include "libvirt-watch.h"

int libvirt_watch_new(sd_event *event, const char *uri, void (*changed)(void *userdata), void *userdata,
                      struct libvirt_watch **out, struct svemig_error *err)
{
        return svemig_error_set(err, EOPNOTSUPP,
                                "[libvirt] uri = %s: this svemigd was built without libvirt "
                                "(meson -Dlibvirt=disabled); remove the key, or build it with libvirt",
                                uri);
}

void libvirt_watch_free(struct libvirt_watch *w)
{
}

const char *libvirt_watch_uri(const struct libvirt_watch *w)
{
        return "";
}

const struct libvirt_watch_view *libvirt_watch_view(const struct libvirt_watch *w)
{
        static const struct libvirt_watch_view none = {.error = "svemigd was built without libvirt"};

        return &none;
}
