/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Bare payload guests in svemig-vmm (api.proto GuestCreateRequest.payload,
 * PayloadStatus): the image is loaded at IPA 0 and entered at 0x800 in EL1h,
 * as the payloads of tests/arm64/payloads/ are linked. A payload reports by
 * writing to an address outside its RAM; KVM hands each such write to the
 * VMM (an MMIO exit), which records it here and lets the vcpu go on.
 *
 * Every VMM arms this handler, whatever its guest runs: a guest that never
 * writes outside RAM (the sim workload) records nothing. What was recorded
 * travels with a migration as the guest's device state (a packed
 * PayloadStatus in GuestSpec.device_state, taken when the migration starts),
 * and the destination's VMM, whose handler is armed before the guest first
 * runs there, carries on counting from it.
 *
 * The handler runs on the vcpu threads; everything else on the loop thread
 * or a job's worker: the recorded fields are under v->payload.lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.pb-c.h"
#include "file-atomic.h"
#include "guest-record.h"
#include "macro.h"
#include "vmm.h"

/* Where a payload image goes and starts (tests/arm64/payloads/build.sh links them so). */
#define PAYLOAD_RAM_BASE 0x0ull
#define PAYLOAD_ENTRY    0x800ull

static bool on_mmio(void *userdata, unsigned vcpu, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
        struct vmm_payload *p = userdata;
        uint64_t value = 0;

        if (!is_write)
                return true; /* a read sees zeros */
        memcpy(&value, data, MIN(len, (uint32_t)sizeof(value)));
        pthread_mutex_lock(&p->lock);
        p->reports++;
        p->last_addr = addr;
        p->last_value = value;
        pthread_mutex_unlock(&p->lock);
        return true;
}

void vmm_payload_init(struct vmm *v)
{
        pthread_mutex_init(&v->payload.lock, NULL);
}

void vmm_payload_done(struct vmm *v)
{
        free(v->payload.image);
        v->payload.image = NULL;
        pthread_mutex_destroy(&v->payload.lock);
}

void vmm_payload_arm(struct vmm *v, guest_mmio_fn *fn, void **userdata)
{
        *fn = on_mmio;
        *userdata = &v->payload;
}

/* The image on fd (called path in messages), whole. */
static int read_image(int fd, const char *path, uint64_t max, uint8_t **out, size_t *size,
                      struct svemig_error *err)
{
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;
        size_t done = 0;

        if (fstat(fd, &st) < 0)
                return svemig_error_set(err, errno, "cannot stat payload image %s: %s", path,
                                        strerror(errno));
        if (!S_ISREG(st.st_mode))
                return svemig_error_set(err, EINVAL, "payload image %s is not a regular file", path);
        if ((uint64_t)st.st_size <= PAYLOAD_ENTRY)
                return svemig_error_set(err, EINVAL,
                                        "payload image %s is %lld bytes: it has no code at its entry 0x%llx "
                                        "(link it at 0 with _start at 0x800)",
                                        path, (long long)st.st_size, PAYLOAD_ENTRY);
        if ((uint64_t)st.st_size > max)
                return svemig_error_set(
                        err, EFBIG,
                        "payload image %s is %lld bytes, more than the guest's %llu bytes of "
                        "RAM; give it more memory",
                        path, (long long)st.st_size, (unsigned long long)max);
        buf = malloc((size_t)st.st_size);
        if (!buf)
                return svemig_error_set(err, ENOMEM, "out of memory");
        while (done < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return svemig_error_set(err, n < 0 ? errno : EIO, "cannot read payload image %s: %s",
                                                path, n < 0 ? strerror(errno) : "it shrank");
                done += (size_t)n;
        }
        *out = buf;
        buf = NULL;
        *size = done;
        return 0;
}

int vmm_payload_create(struct vmm *v, const char *path, int fd, const char *name, struct guest_config *cfg,
                       struct svemig_error *err)
{
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_free_ char *copy = NULL;
        _cleanup_close_ int own = -1;
        size_t size = 0;
        int r;

        if (!name)
                name = path;
        if (fd < 0) {
                own = fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return svemig_error_set(err, errno, "cannot open payload image %s: %s", path,
                                                strerror(errno));
        }
        r = read_image(fd, name, cfg->mem_bytes, &buf, &size, err);
        if (r < 0)
                return r;
        /* The client's file is read once: the guest boots again from svemigd's copy. */
        if (own < 0) {
                if (asprintf(&copy, "%s/" GUEST_PAYLOAD_FILE, v->dir) < 0) {
                        copy = NULL;
                        return svemig_error_set(err, ENOMEM, "out of memory");
                }
                r = write_file_atomic(copy, buf, size, 0600);
                if (r < 0)
                        return svemig_error_set(err, r, "cannot keep a copy of payload image %s in %s: %s",
                                                name, copy, strerror(-r));
        }
        v->payload.image = strdup(name);
        if (!v->payload.image)
                return svemig_error_set(err, ENOMEM, "out of memory");
        v->payload.ram_base = PAYLOAD_RAM_BASE;
        v->payload.entry = PAYLOAD_ENTRY;
        cfg->image = buf;
        cfg->image_size = size;
        cfg->image_offset = 0;
        cfg->ram_base = PAYLOAD_RAM_BASE;
        cfg->entry = PAYLOAD_ENTRY;
        cfg->dirty_pages_per_step = 0;
        vmm_payload_arm(v, &cfg->on_mmio, &cfg->mmio_userdata);
        r = guest_create(v->hv, cfg, &v->guest, err);
        cfg->image = NULL;
        return r < 0 ? svemig_error_prefix(err, "payload %s", name) : 0;
}

bool vmm_payload_describe(struct vmm *v, Svemig__Api__PayloadStatus *ps)
{
        if (!v->payload.image)
                return false;
        /* Latched: a later pause (e.g. a stop) joins the threads but undoes nothing. */
        if (v->guest && guest_running(v->guest) && guest_vcpus_active(v->guest) == 0)
                v->payload.finished = true;
        pthread_mutex_lock(&v->payload.lock);
        ps->image = v->payload.image;
        ps->ram_base = v->payload.ram_base;
        ps->entry = v->payload.entry;
        ps->reports = v->payload.reports;
        ps->last_addr = v->payload.last_addr;
        ps->last_value = v->payload.last_value;
        ps->finished = v->payload.finished;
        pthread_mutex_unlock(&v->payload.lock);
        return true;
}

int vmm_payload_pack(struct vmm *v, uint8_t *buf, size_t size, size_t *len)
{
        Svemig__Api__PayloadStatus ps = SVEMIG__API__PAYLOAD_STATUS__INIT;

        *len = 0;
        if (!vmm_payload_describe(v, &ps))
                return 0;
        if (svemig__api__payload_status__get_packed_size(&ps) > size)
                ps.image = (char *)""; /* a path too long to carry: the destination shows none */
        if (svemig__api__payload_status__get_packed_size(&ps) > size)
                return -EMSGSIZE;
        *len = svemig__api__payload_status__pack(&ps, buf);
        return 0;
}

int vmm_payload_unpack(struct vmm *v, const uint8_t *buf, size_t len, struct svemig_error *err)
{
        Svemig__Api__PayloadStatus *ps;

        if (len == 0)
                return 0; /* the source had no payload: the sim workload */
        ps = svemig__api__payload_status__unpack(NULL, len, buf);
        if (!ps)
                return svemig_error_set(err, EPROTO, "the source sent device state that does not parse");
        free(v->payload.image);
        v->payload.image = strdup(ps->image && ps->image[0] ? ps->image : "(migrated)");
        v->payload.ram_base = ps->ram_base;
        v->payload.entry = ps->entry;
        pthread_mutex_lock(&v->payload.lock);
        /* Writes made here already are newer than the source's last one. */
        if (v->payload.reports == 0) {
                v->payload.last_addr = ps->last_addr;
                v->payload.last_value = ps->last_value;
        }
        v->payload.reports += ps->reports;
        pthread_mutex_unlock(&v->payload.lock);
        v->payload.finished = ps->finished;
        svemig__api__payload_status__free_unpacked(ps, NULL);
        return v->payload.image ? 0 : svemig_error_set(err, ENOMEM, "out of memory");
}
