/* The loop's primitives for everyone above it (xpb_loop.h): one-shot timers, fd
 * watches, a wake-up any thread may signal, and signals. With these, the bus,
 * the daemon and main never include libevent; only the loop library does. */
#include "xpb_loop.h"

#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <time.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "xpb_error.h"
#include "xpb_log.h"

/* ---- timers -------------------------------------------------------------------- */

struct xpb_timer {
    struct event *ev;
    xpb_timer_cb cb;
    void *ud;
};

static void on_timer_ev(evutil_socket_t fd, short what, void *arg)
{
    xpb_timer *t = arg;
    (void)fd, (void)what;
    t->cb(t->ud);
}

int xpb_timer_new(xpb_loop *l, xpb_timer_cb cb, void *ud, xpb_timer **out)
{
    if (!l || !cb || !out) return XPB_EINVAL;
    xpb_timer *t = calloc(1, sizeof *t);
    if (!t) return XPB_ENOMEM;
    t->cb = cb;
    t->ud = ud;
    t->ev = evtimer_new(xpb_loop_base(l), on_timer_ev, t);
    if (!t->ev) {
        free(t);
        return XPB_ENOMEM;
    }
    *out = t;
    return 0;
}

void xpb_timer_start(xpb_timer *t, unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000u), (suseconds_t)(ms % 1000u) * 1000};
    evtimer_add(t->ev, &tv);
}

void xpb_timer_stop(xpb_timer *t)
{
    if (t) evtimer_del(t->ev);
}

int xpb_timer_pending(const xpb_timer *t)
{
    return t && evtimer_pending(t->ev, NULL);
}

void xpb_timer_free(xpb_timer *t)
{
    if (!t) return;
    event_free(t->ev);
    free(t);
}

/* ---- fd watches ------------------------------------------------------------------ */

struct xpb_watch {
    struct event *ev;
    xpb_watch_cb cb;
    void *ud;
};

static void on_watch_ev(evutil_socket_t fd, short what, void *arg)
{
    xpb_watch *w = arg;
    (void)what;
    w->cb(w->ud, (int)fd);
}

int xpb_watch_new(xpb_loop *l, int fd, xpb_watch_cb cb, void *ud, xpb_watch **out)
{
    if (!l || fd < 0 || !cb || !out) return XPB_EINVAL;
    xpb_watch *w = calloc(1, sizeof *w);
    if (!w) return XPB_ENOMEM;
    w->cb = cb;
    w->ud = ud;
    w->ev = event_new(xpb_loop_base(l), fd, EV_READ | EV_PERSIST, on_watch_ev, w);
    if (!w->ev || event_add(w->ev, NULL) != 0) {
        if (w->ev) event_free(w->ev);
        free(w);
        return XPB_ENOMEM;
    }
    *out = w;
    return 0;
}

void xpb_watch_free(xpb_watch *w)
{
    if (!w) return;
    event_free(w->ev);
    free(w);
}

/* ---- wake-ups --------------------------------------------------------------------- */

/* An eventfd the loop reads; `armed` coalesces: only the first signal after the
 * loop ran the callback costs a write(2). */
struct xpb_wake {
    xpb_watch *watch;
    int fd;
    atomic_int armed;
    xpb_wake_cb cb;
    void *ud;
};

static void on_wake_fd(void *ud, int fd)
{
    xpb_wake *w = ud;
    uint64_t n;
    while (read(fd, &n, sizeof n) > 0) {
    }
    atomic_store(&w->armed, 0);
    w->cb(w->ud);
}

int xpb_wake_new(xpb_loop *l, xpb_wake_cb cb, void *ud, xpb_wake **out)
{
    if (!l || !cb || !out) return XPB_EINVAL;
    xpb_wake *w = calloc(1, sizeof *w);
    if (!w) return XPB_ENOMEM;
    w->cb = cb;
    w->ud = ud;
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int rc = w->fd < 0 ? XPB_ENOMEM : xpb_watch_new(l, w->fd, on_wake_fd, w, &w->watch);
    if (rc != 0) {
        if (w->fd >= 0) close(w->fd);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void xpb_wake_signal(xpb_wake *w)
{
    if (atomic_exchange(&w->armed, 1)) return;
    uint64_t one = 1;
    while (write(w->fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

void xpb_wake_free(xpb_wake *w)
{
    if (!w) return;
    xpb_watch_free(w->watch);
    close(w->fd);
    free(w);
}

/* ---- signals --------------------------------------------------------------------- */

struct xpb_signal {
    struct event *ev;
    xpb_signal_cb cb;
    void *ud;
};

static void on_signal_ev(evutil_socket_t sig, short what, void *arg)
{
    xpb_signal *s = arg;
    (void)what;
    s->cb(s->ud, (int)sig);
}

int xpb_signal_new(xpb_loop *l, int signo, xpb_signal_cb cb, void *ud, xpb_signal **out)
{
    if (!l || !cb || !out) return XPB_EINVAL;
    xpb_signal *s = calloc(1, sizeof *s);
    if (!s) return XPB_ENOMEM;
    s->cb = cb;
    s->ud = ud;
    s->ev = evsignal_new(xpb_loop_base(l), signo, on_signal_ev, s);
    if (!s->ev || event_add(s->ev, NULL) != 0) {
        if (s->ev) event_free(s->ev);
        free(s);
        return XPB_EINVAL;
    }
    *out = s;
    return 0;
}

void xpb_signal_free(xpb_signal *s)
{
    if (!s) return;
    event_free(s->ev);
    free(s);
}

/* ---- libevent's own messages ---------------------------------------------------------- */

/* libevent's messages (event_set_log_callback): a burst per window, the rest
 * counted and summed up in the next line that gets through. A library that
 * logs per failed accept() must not be able to fill the disk. Process-wide,
 * like libevent's callback itself. */
static struct {
    uint64_t seen, suppressed, suppressed_reported;
    time_t window;
    unsigned in_window;
} g_evlog;

static void on_libevent_log(int severity, const char *msg)
{
    g_evlog.seen++;
    time_t now = time(NULL);
    if (now - g_evlog.window >= (time_t)XPB_LOOP_LIBEVENT_LOG_WINDOW_S) {
        g_evlog.window = now;
        g_evlog.in_window = 0;
    }
    if (g_evlog.in_window >= XPB_LOOP_LIBEVENT_LOG_BURST) {
        g_evlog.suppressed++;
        return;
    }
    g_evlog.in_window++;
    int level = severity == EVENT_LOG_DEBUG ? XPB_LOG_DEBUG
                : severity == EVENT_LOG_MSG ? XPB_LOG_INFO
                : severity == EVENT_LOG_WARN ? XPB_LOG_WARN
                                             : XPB_LOG_ERROR;
    uint64_t skipped = g_evlog.suppressed - g_evlog.suppressed_reported;
    g_evlog.suppressed_reported = g_evlog.suppressed;
    if (skipped)
        xpb_log(level, "libevent: %s (%" PRIu64 " earlier libevent messages suppressed: at most "
                       "%u every %u s)", msg, skipped, XPB_LOOP_LIBEVENT_LOG_BURST,
                XPB_LOOP_LIBEVENT_LOG_WINDOW_S);
    else
        xpb_log(level, "libevent: %s", msg);
}

void xpb_loop_route_libevent_log(void)
{
    event_set_log_callback(on_libevent_log);
}

void xpb_loop_libevent_log_counts(uint64_t *seen, uint64_t *suppressed)
{
    *seen = g_evlog.seen;
    *suppressed = g_evlog.suppressed;
}
