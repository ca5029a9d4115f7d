/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "clock.h"
#include "libvirt-state.h"
#include "libvirt-watch.h"
#include "log.h"
#include "macro.h"

#define BACKOFF_MIN_MS 250u
#define BACKOFF_MAX_MS 5000u

struct watch_event {
        char domain[256];
        char what[64];
};

struct libvirt_watch {
        char *uri;
        void (*changed)(void *userdata);
        void *userdata;
        sd_event_source *source;
        int efd;
        pthread_t thread;
        bool started;

        pthread_mutex_t lock;
        pthread_cond_t cond; /* wakes the backoff wait at stop */
        /* Under lock: what the thread posts, and the stop flag. */
        bool stop;
        struct libvirt_watch_view shared;
        struct watch_event *pending;
        size_t n_pending;

        /* The thread's own. */
        virConnectPtr conn;
        bool closed;
        bool dirty;

        /* The loop's own copy. */
        struct libvirt_watch_view view;
};

static const char *const event_names[] = {
        [VIR_DOMAIN_EVENT_DEFINED] = "defined",    [VIR_DOMAIN_EVENT_UNDEFINED] = "undefined",
        [VIR_DOMAIN_EVENT_STARTED] = "started",    [VIR_DOMAIN_EVENT_SUSPENDED] = "suspended",
        [VIR_DOMAIN_EVENT_RESUMED] = "resumed",    [VIR_DOMAIN_EVENT_STOPPED] = "stopped",
        [VIR_DOMAIN_EVENT_SHUTDOWN] = "shut down", [VIR_DOMAIN_EVENT_PMSUSPENDED] = "pm-suspended",
        [VIR_DOMAIN_EVENT_CRASHED] = "crashed",
};

/* The detail that matters here: whether the event is a migration's. */
static bool detail_is_migration(int event, int detail)
{
        switch (event) {
        case VIR_DOMAIN_EVENT_STARTED:
                return detail == VIR_DOMAIN_EVENT_STARTED_MIGRATED;
        case VIR_DOMAIN_EVENT_SUSPENDED:
                return detail == VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED;
        case VIR_DOMAIN_EVENT_RESUMED:
                return detail == VIR_DOMAIN_EVENT_RESUMED_MIGRATED;
        case VIR_DOMAIN_EVENT_STOPPED:
                return detail == VIR_DOMAIN_EVENT_STOPPED_MIGRATED;
        default:
                return false;
        }
}

static void post(struct libvirt_watch *w)
{
        uint64_t one = 1;

        if (write(w->efd, &one, sizeof(one)) < 0) {
                /* The counter is saturated: the loop has a post to read already. */
        }
}

static void queue_event(struct libvirt_watch *w, const char *domain, const char *what)
{
        struct watch_event *p;

        pthread_mutex_lock(&w->lock);
        p = reallocarray(w->pending, w->n_pending + 1, sizeof(*p));
        if (p) {
                w->pending = p;
                snprintf(p[w->n_pending].domain, sizeof(p->domain), "%s", domain);
                snprintf(p[w->n_pending].what, sizeof(p->what), "%s", what);
                w->n_pending++;
        }
        w->shared.events++;
        pthread_mutex_unlock(&w->lock);
}

static void set_state(struct libvirt_watch *w, bool connected, const char *error,
                      struct libvirt_domain_info *domains, size_t n)
{
        pthread_mutex_lock(&w->lock);
        w->shared.connected = connected;
        snprintf(w->shared.error, sizeof(w->shared.error), "%s", error ? error : "");
        free(w->shared.domains);
        w->shared.domains = domains;
        w->shared.n_domains = n;
        pthread_mutex_unlock(&w->lock);
        post(w);
}

static const char *last_error(void)
{
        const char *m = virGetLastErrorMessage();

        return m ? m : "unknown libvirt error";
}

static void read_domain(virDomainPtr dom, struct libvirt_domain_info *out)
{
        struct svemig_error err = {0};
        int state = -1;
        char *xml;

        snprintf(out->name, sizeof(out->name), "%s", virDomainGetName(dom));
        virDomainGetState(dom, &state, NULL, 0);
        snprintf(out->state, sizeof(out->state), "%s", libvirt_state_name(state));
        out->persistent = virDomainIsPersistent(dom) == 1;
        xml = virDomainGetXMLDesc(dom, 0);
        /* Unreadable XML (it went meanwhile): the host's default set, shown as such. */
        if (!xml || libvirt_cpu_parse(xml, strlen(xml), NULL, &out->cpu, &err) < 0)
                out->cpu = (struct libvirt_cpu){0};
        free(xml);
}

/* The thread: every domain again, after each batch of events. */
static int refresh(struct libvirt_watch *w)
{
        struct libvirt_domain_info *infos;
        virDomainPtr *doms = NULL;
        int n;

        n = virConnectListAllDomains(w->conn, &doms, 0);
        if (n < 0)
                return -EIO;
        infos = calloc((size_t)n + 1, sizeof(*infos));
        for (int i = 0; i < n; i++) {
                if (infos)
                        read_domain(doms[i], &infos[i]);
                virDomainFree(doms[i]);
        }
        free(doms);
        if (!infos)
                return -ENOMEM;
        set_state(w, true, NULL, infos, (size_t)n);
        return 0;
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        struct libvirt_watch *w = opaque;
        char what[64];

        (void)conn;
        snprintf(what, sizeof(what), "%s%s",
                 event >= 0 && event < (int)ELEMENTSOF(event_names) && event_names[event]
                         ? event_names[event]
                         : "changed",
                 detail_is_migration(event, detail) ? " (migrated)" : "");
        queue_event(w, virDomainGetName(dom), what);
        /* Read the domains after the callback: no libvirt call from inside its loop's dispatch. */
        w->dirty = true;
        return 0;
}

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
        struct libvirt_watch *w = opaque;

        (void)conn;
        (void)reason;
        w->closed = true;
}

static void wake_noop(int timer, void *opaque)
{
        (void)opaque;
        virEventRemoveTimeout(timer);
}

static bool stopping(struct libvirt_watch *w)
{
        bool s;

        pthread_mutex_lock(&w->lock);
        s = w->stop;
        pthread_mutex_unlock(&w->lock);
        return s;
}

static void backoff(struct libvirt_watch *w, unsigned ms)
{
        struct timespec until = realtime_deadline(ms);

        pthread_mutex_lock(&w->lock);
        while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT)
                ;
        pthread_mutex_unlock(&w->lock);
}

/* One connection, followed until libvirtd goes or we stop. */
static void follow(struct libvirt_watch *w)
{
        char msg[256];
        int cb;

        w->closed = false;
        w->dirty = false;
        virConnectRegisterCloseCallback(w->conn, on_close, w, NULL);
        /* Keepalives make a hung libvirtd count as gone too. */
        virConnectSetKeepAlive(w->conn, 5, 3);
        cb = virConnectDomainEventRegisterAny(w->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                              VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), w, NULL);
        if (cb < 0 || refresh(w) < 0) {
                snprintf(msg, sizeof(msg), "cannot follow libvirt's domains at %s: %s", w->uri,
                         last_error());
                set_state(w, false, msg, NULL, 0);
                w->closed = true;
        }
        while (!w->closed && !stopping(w)) {
                if (virEventRunDefaultImpl() < 0)
                        break;
                if (w->dirty && !w->closed) {
                        w->dirty = false;
                        refresh(w);
                }
        }
        if (cb >= 0)
                virConnectDomainEventDeregisterAny(w->conn, cb);
        virConnectUnregisterCloseCallback(w->conn, on_close);
}

static void *watch_thread(void *userdata)
{
        struct libvirt_watch *w = userdata;
        unsigned delay = BACKOFF_MIN_MS;
        char msg[256];

        while (!stopping(w)) {
                w->conn = virConnectOpen(w->uri);
                if (!w->conn) {
                        snprintf(msg, sizeof(msg), "cannot connect to libvirt at %s: %s; retrying", w->uri,
                                 last_error());
                        set_state(w, false, msg, NULL, 0);
                        backoff(w, delay);
                        delay = MIN(delay * 2, BACKOFF_MAX_MS);
                        continue;
                }
                delay = BACKOFF_MIN_MS;
                follow(w);
                virConnectClose(w->conn);
                w->conn = NULL;
                if (!stopping(w)) {
                        snprintf(msg, sizeof(msg), "libvirt at %s closed the connection; reconnecting",
                                 w->uri);
                        set_state(w, false, msg, NULL, 0);
                        backoff(w, delay);
                }
        }
        return NULL;
}

static void view_done(struct libvirt_watch_view *v)
{
        free(v->domains);
        v->domains = NULL;
        v->n_domains = 0;
}

static int on_post(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct libvirt_watch *w = userdata;
        _cleanup_free_ struct watch_event *events = NULL;
        bool was_connected = w->view.connected;
        char was_error[256];
        uint64_t n_posts;
        size_t n = 0;

        (void)s;
        (void)revents;
        if (read(fd, &n_posts, sizeof(n_posts)) < 0)
                return 0;
        snprintf(was_error, sizeof(was_error), "%s", w->view.error);
        view_done(&w->view);
        pthread_mutex_lock(&w->lock);
        w->view = w->shared;
        w->view.domains = calloc(w->shared.n_domains + 1, sizeof(*w->view.domains));
        if (w->view.domains)
                memcpy(w->view.domains, w->shared.domains, w->shared.n_domains * sizeof(*w->view.domains));
        else
                w->view.n_domains = 0;
        events = w->pending;
        n = w->n_pending;
        w->pending = NULL;
        w->n_pending = 0;
        pthread_mutex_unlock(&w->lock);

        if (w->view.connected && !was_connected)
                log_info("libvirt: following %zu domain(s) at %s", w->view.n_domains, w->uri);
        else if (!w->view.connected && strcmp(was_error, w->view.error) != 0)
                log_warning("libvirt: %s", w->view.error);
        for (size_t i = 0; i < n; i++)
                log_msg(LOG_INFO, LOG_CTX(.op = "libvirt", .domain = events[i].domain),
                        "libvirt: domain %s %s", events[i].domain, events[i].what);
        w->changed(w->userdata);
        return 0;
}

int libvirt_watch_new(sd_event *event, const char *uri, void (*changed)(void *userdata), void *userdata,
                      struct libvirt_watch **out, struct svemig_error *err)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        struct libvirt_watch *w;
        int r;

        /* libvirt's own event loop, once per process, before any connection. */
        pthread_once(&once, (void (*)(void))virEventRegisterDefaultImpl);
        w = calloc(1, sizeof(*w));
        if (!w || !(w->uri = strdup(uri))) {
                free(w);
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        w->changed = changed;
        w->userdata = userdata;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        snprintf(w->view.error, sizeof(w->view.error), "connecting to %s", uri);
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0) {
                r = -errno;
                libvirt_watch_free(w);
                return svemig_error_set(err, -r, "eventfd: %s", strerror(-r));
        }
        r = sd_event_add_io(event, &w->source, w->efd, EPOLLIN, on_post, w);
        if (r >= 0)
                r = -pthread_create(&w->thread, NULL, watch_thread, w);
        if (r < 0) {
                libvirt_watch_free(w);
                return svemig_error_set(err, -r, "cannot start following libvirt at %s: %s", uri,
                                        strerror(-r));
        }
        w->started = true;
        *out = w;
        return 0;
}

void libvirt_watch_free(struct libvirt_watch *w)
{
        if (!w)
                return;
        if (w->started) {
                pthread_mutex_lock(&w->lock);
                w->stop = true;
                pthread_cond_broadcast(&w->cond);
                pthread_mutex_unlock(&w->lock);
                /* A timer wakes libvirt's loop out of its poll. */
                virEventAddTimeout(0, wake_noop, NULL, NULL);
                pthread_join(w->thread, NULL);
        }
        sd_event_source_disable_unref(w->source);
        if (w->efd >= 0)
                close(w->efd);
        view_done(&w->view);
        view_done(&w->shared);
        free(w->pending);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
        free(w->uri);
        free(w);
}

const char *libvirt_watch_uri(const struct libvirt_watch *w)
{
        return w->uri;
}

const struct libvirt_watch_view *libvirt_watch_view(const struct libvirt_watch *w)
{
        return &w->view;
}
