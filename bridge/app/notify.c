/* sd_notify(3) for xpbridge.service: readiness, a status line, the watchdog
 * ping from the loop (so a stuck loop gets the service restarted), reload and
 * stop. libsystemd does the socket protocol; this file only decides when. */
#include "notify.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "xpb_error.h"
#include "xpb_log.h"

struct xpb_notify {
    xpb_timer *tick;
    unsigned tick_ms;
    int active, watchdog, ready;
    xpb_notify_status_fn status;
    void *ud;
    char last[256];
};

static void send_status(xpb_notify *n, const char *prefix)
{
    char now[256];
    n->status(n->ud, now, sizeof now);
    if (!prefix && strcmp(now, n->last) == 0) return;
    memcpy(n->last, now, sizeof n->last);
    sd_notifyf(0, "%sSTATUS=%s", prefix ? prefix : "", now);
}

static void on_tick(void *ud)
{
    xpb_notify *n = ud;
    if (n->watchdog) sd_notify(0, "WATCHDOG=1");
    if (n->ready) send_status(n, NULL);
    xpb_timer_start(n->tick, n->tick_ms);
}

int xpb_notify_new(xpb_notify **out, xpb_loop *loop, xpb_notify_status_fn status, void *ud)
{
    xpb_notify *n = calloc(1, sizeof *n);
    if (!n) return XPB_ENOMEM;
    n->status = status;
    n->ud = ud;
    const char *sock = getenv("NOTIFY_SOCKET");
    n->active = sock && sock[0];
    uint64_t wd_us = 0;
    n->watchdog = n->active && sd_watchdog_enabled(0, &wd_us) > 0 && wd_us > 0;
    n->tick_ms = XPB_NOTIFY_STATUS_MS;
    if (n->watchdog && wd_us / 2000u < n->tick_ms) n->tick_ms = (unsigned)(wd_us / 2000u);
    if (n->tick_ms == 0) n->tick_ms = 1;
    int rc = n->active ? xpb_timer_new(loop, on_tick, n, &n->tick) : 0;
    if (rc != 0) {
        free(n);
        return rc;
    }
    if (n->active) {
        xpb_timer_start(n->tick, n->tick_ms);
        xpb_log(XPB_LOG_DEBUG, "service manager: notify socket set, watchdog %s (%u ms ping)",
                n->watchdog ? "on" : "off", n->watchdog ? n->tick_ms : 0u);
    }
    *out = n;
    return 0;
}

int xpb_notify_active(const xpb_notify *n)
{
    return n && n->active;
}

void xpb_notify_ready(xpb_notify *n)
{
    if (!xpb_notify_active(n)) return;
    n->ready = 1;
    send_status(n, "READY=1\n");
}

void xpb_notify_reloading(xpb_notify *n)
{
    if (!xpb_notify_active(n)) return;
    /* For Type=notify, xpb_notify_ready after the reload ends it. */
    sd_notify(0, "RELOADING=1\nSTATUS=reloading the configuration");
}

void xpb_notify_stopping(xpb_notify *n)
{
    if (!xpb_notify_active(n)) return;
    sd_notify(0, "STOPPING=1\nSTATUS=closing sessions");
}

void xpb_notify_free(xpb_notify *n)
{
    if (!n) return;
    xpb_timer_free(n->tick);
    free(n);
}
