/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* After a short writev()/sendmsg()/recvmsg() of k bytes: drops the iovecs done, trims the next. */
static inline void iov_advance(struct iovec **iov, size_t *n, size_t k)
{
        while (*n > 0 && k >= (*iov)->iov_len) {
                k -= (*iov)->iov_len;
                (*iov)++;
                (*n)--;
        }
        if (*n > 0) {
                (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + k;
                (*iov)->iov_len -= k;
        }
}
