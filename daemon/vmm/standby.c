/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * svemig-vmm --standby SIZE --control-fd N: the incoming RAM reserve as a
 * VMM started ahead (docs/migration.md, "In the daemons").
 *
 * It maps SIZE bytes of anonymous memory in transparent huge pages and
 * faults them in before it says it is ready, as QEMU's -incoming
 * -mem-prealloc destination does: a guest migrating in then lands in RAM
 * that is there already, in 2 MiB pages, mapped in this very process, so
 * neither the kernel's clearing of fresh pages nor the filling of 4 KiB
 * page-table entries happens inside the migration. Then it waits for
 * svemigd's order (standby-proto.h) and becomes that guest's receiving VMM.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "vmm.h"

#define HUGE_PAGE_SIZE (2ull << 20)

/* Anonymous memory of size bytes starting on a huge page boundary, so that all of it can be huge pages. */
static int map_aligned(uint64_t size, void **out, struct svemig_error *err)
{
        uint64_t span = size + HUGE_PAGE_SIZE;
        uint8_t *p, *start;

        p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
                return svemig_error_set(err, errno,
                                        "cannot map the incoming RAM reserve (%llu MiB): %s; make "
                                        "[cluster] incoming-reserve smaller",
                                        (unsigned long long)(size >> 20), strerror(errno));
        start = (uint8_t *)(((uintptr_t)p + HUGE_PAGE_SIZE - 1) & ~(uintptr_t)(HUGE_PAGE_SIZE - 1));
        if (start > p)
                munmap(p, (size_t)(start - p));
        if (start + size < p + span)
                munmap(start + size, (size_t)(p + span - (start + size)));
        *out = start;
        return 0;
}

static int populate(void *mem, uint64_t size, struct svemig_error *err)
{
        int r;

        /* Without THP (or with it off) the reserve is still faulted in, in small pages. */
        (void)madvise(mem, size, MADV_HUGEPAGE);
        r = guest_mem_prefault(mem, size, NULL);
        if (r < 0)
                return svemig_error_set(err, -r,
                                        "cannot fault in the incoming RAM reserve (%llu MiB): %s; is the "
                                        "host short of memory? make [cluster] incoming-reserve smaller",
                                        (unsigned long long)(size >> 20), strerror(-r));
        return 0;
}

int vmm_standby(int control_fd, uint64_t size, void **mem, struct standby_order *order,
                struct standby_order_fds *fds, struct svemig_error *err)
{
        void *p = NULL;
        int r;

        r = map_aligned(size, &p, err);
        if (r == 0) {
                r = populate(p, size, err);
                if (r < 0)
                        munmap(p, size);
        }
        if (r < 0) {
                (void)standby_ready_send(control_fd, r, err);
                return r;
        }
        log_debug("standby: %llu MiB faulted in; waiting for a guest to migrate in",
                  (unsigned long long)(size >> 20));
        /* svemigd gone already (EPIPE): nobody will order anything. */
        if (standby_ready_send(control_fd, 0, NULL) < 0 ||
            (r = standby_order_recv(control_fd, order, fds, err)) <= 0) {
                munmap(p, size);
                return r;
        }
        *mem = p;
        return 1;
}
