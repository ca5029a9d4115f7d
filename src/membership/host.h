/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the membership's dispatch and its backends share (besides svemig/membership.h). */

#include <stdbool.h>
#include <stddef.h>

#include "svemig/membership.h"

/* Appends room for one host to v (zeroed); *cap is its room now. NULL on ENOMEM. */
struct membership_host *membership_view_add(struct membership_view *v, size_t *cap);

/* Whether a host's facts changed in a way the view or a person would see (mem_available moves all the time).
 */
bool membership_info_same(const struct peer_info *a, const struct peer_info *b);
bool membership_id_diff_same(const struct cluster_id_diff *a, const struct cluster_id_diff *b);
/* h->cpu from what the host said (info's id_regs and writable masks): 0 or -ENOMEM. */
int membership_host_set_cpu(struct membership_host *h, const struct peer_info *info);
bool membership_cpu_same(const struct membership_host *a, const struct membership_host *b);
