/* Service manager notification (sd_notify(3)) for xpbridge.service
 * (Type=notify): READY=1 once the bus is bound, STATUS= with the sessions
 * online, WATCHDOG=1 from the loop, RELOADING=1 and STOPPING=1. Without
 * NOTIFY_SOCKET (not started by systemd) every call does nothing. */
#ifndef XPB_NOTIFY_H
#define XPB_NOTIFY_H

#include <stddef.h>

#include "xpb_loop.h"

/* Writes the one-line STATUS text ("3 of 4 sessions online") into buf. */
typedef void (*xpb_notify_status_fn)(void *ud, char *buf, size_t len);

typedef struct xpb_notify xpb_notify;
/* The status is sent with READY and then whenever it changes, checked every
 * XPB_NOTIFY_STATUS_MS or at half the watchdog interval, whichever is shorter. */
#define XPB_NOTIFY_STATUS_MS 5000u
int xpb_notify_new(xpb_notify **out, xpb_loop *loop, xpb_notify_status_fn status, void *ud);
void xpb_notify_ready(xpb_notify *n);
/* RELOADING=1; call xpb_notify_ready again when the reload is over. */
void xpb_notify_reloading(xpb_notify *n);
void xpb_notify_stopping(xpb_notify *n);
void xpb_notify_free(xpb_notify *n); /* NULL is fine */
/* 1 when a service manager listens (NOTIFY_SOCKET set). */
int xpb_notify_active(const xpb_notify *n);

#endif
