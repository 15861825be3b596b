/* xpbridge's daemon core (internal to the executable): the accounts and their
 * sessions, the bus request handlers, session events -> bus events, iq
 * correlation, MUC rejoin and self-ping, reload, clean shutdown. Logging and
 * the /metrics listener hang off it. Everything runs on the loop thread. */
#ifndef XPB_DAEMON_H
#define XPB_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include "xpb_config.h"
#include "xpb_bus.h"
#include "xpb_log.h"
#include "xpb_xml.h"
#include "xpb_trust.h"

struct event_base; /* libevent's, no longer declared by xpb_bus.h */

#define XPB_VERSION_STRING "0.1.0"
#define XPB_DAEMON_CLOSE_WAIT_MS 3000u      /* close / shutdown: wait this long for sessions */
#define XPB_DAEMON_SELF_PING_TIMEOUT_MS 30000u
#define XPB_DAEMON_MAX_PASSWORD 4096u       /* bytes of a password file */
#define XPB_DAEMON_MAX_IQ_TIMEOUT_MS 600000u
#define XPB_DAEMON_REQUEST_SLACK (64u * 1024u) /* request bytes beyond 2 x max_stanza_bytes */

/* ---- the daemon --------------------------------------------------------------- */
typedef struct xpb_daemon xpb_daemon;

/* cfg is copied. Binds the bus and starts a session per account. On failure
 * returns an XPB_E… code with err filled (the bus could not bind ...). */
int xpb_daemon_new(xpb_daemon **out, struct event_base *base, const xpb_config *cfg, char *err,
                   size_t errlen);
/* Close every session cleanly, wait at most XPB_DAEMON_CLOSE_WAIT_MS for them,
 * answer open requests (xpb_bus_free), then break the loop. */
void xpb_daemon_shutdown(xpb_daemon *d);
/* SIGHUP: apply the accounts of cfg (added, removed, restarted when changed). */
void xpb_daemon_reload(xpb_daemon *d, const xpb_config *cfg);
void xpb_daemon_free(xpb_daemon *d);
const char *xpb_daemon_events_url(const xpb_daemon *d);
const char *xpb_daemon_requests_url(const xpb_daemon *d);

/* ---- what /metrics shows -------------------------------------------------------- */
enum { XPB_DIR_IN = 0, XPB_DIR_OUT = 1 };
enum { XPB_KIND_MESSAGE = 0, XPB_KIND_PRESENCE, XPB_KIND_IQ, XPB_KIND_OTHER, XPB_KIND_COUNT };
enum { XPB_MST_CONNECTING = 0, XPB_MST_ONLINE, XPB_MST_DISCONNECTED, XPB_MST_CLOSING,
       XPB_MST_STOPPED, XPB_MST_COUNT };

typedef struct xpb_daemon_counters {
    uint64_t stanzas[2][XPB_KIND_COUNT];
    uint64_t bytes_xml[2], bytes_record[2];
    uint64_t reconnects, resumptions;  /* summed over sessions, removed ones included */
    uint64_t trust[XPB_TR_COUNT];      /* inbound stanzas by trust verdict reason */
    uint64_t open_forbidden;           /* open requests refused by bus.allow_* (ERR_FORBIDDEN) */
    unsigned sessions[XPB_MST_COUNT];
    unsigned n_accounts;
    int bus_up;
    /* the limits in force, so a dashboard or an alert can relate a gauge to its bound */
    unsigned queue_max, muc_self_ping_s;
    size_t max_stanza_bytes;
} xpb_daemon_counters;
void xpb_daemon_get_counters(xpb_daemon *d, xpb_daemon_counters *out);
void xpb_daemon_get_bus_stats(xpb_daemon *d, xpb_bus_stats *out);
/* Per-account gauges: i = 0, 1, ... until it returns 0. */
int xpb_daemon_account_at(xpb_daemon *d, size_t i, const char **name, unsigned *queued,
                          unsigned *unacked);
const char *xpb_metrics_state_name(int st);

/* ---- /metrics and /healthz (metrics.c) ------------------------------------------ */
typedef struct xpb_metrics xpb_metrics;
typedef struct xpb_metrics_opts {
    const char *listen;          /* "ADDR:PORT"; a non-loopback address needs allow_remote */
    int allow_remote;
    unsigned max_connections;    /* metrics.max_connections: more are closed at once */
    unsigned idle_timeout_s;     /* metrics.idle_timeout_s: per request, and per reply */
} xpb_metrics_opts;
int xpb_metrics_new(xpb_metrics **out, struct event_base *base, const xpb_metrics_opts *o,
                    xpb_daemon *d, char *err, size_t errlen);
void xpb_metrics_free(xpb_metrics *m);
/* The listen address rule alone (for --check-config and start-up): 0 or
 * XPB_EINVAL with err. "0" and "" (disabled) pass. */
int xpb_metrics_check_listen(const char *listen, int allow_remote, char *err, size_t errlen);
/* The exposition text (format 0.0.4) and the health verdict; for tests too. */
int xpb_metrics_render(xpb_daemon *d, xpb_buf *out);
int xpb_metrics_health(xpb_daemon *d, char *why, size_t whylen); /* 1 healthy */

#endif
