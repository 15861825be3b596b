/* /metrics (Prometheus text exposition format 0.0.4) and /healthz, served on
 * the bounded HTTP server of the loop library (xpb_httpd.h), on a thread and
 * loop of its own. The listener knows nothing of the daemon: on every request
 * it asks the snapshot callback it was given for the figures (main.c wires it
 * to the daemon), which runs on the daemon's loop thread and only copies
 * numbers and names; the text is rendered on the listener's thread, so the
 * sessions' I/O waits for the copy, not for the rendering. A test can render
 * from a fake source. */
#ifndef XPB_METRICS_H
#define XPB_METRICS_H

#include <stddef.h>
#include "xpb_bus.h"    /* xpb_bus_stats */
#include "xpb_daemon.h" /* xpb_daemon_counters, XPB_MST_* */
#include "xpb_loop.h"
#include "xpb_xml.h"

/* One account's gauges (xpb_queue_depth, xpb_unacked). */
typedef struct xpb_metrics_account {
    size_t name_off; /* into the snapshot's names: copied, the source may change */
    unsigned queued, unacked;
} xpb_metrics_account;

/* The figures of one request, filled by the source. The listener keeps one
 * snapshot and reuses its room from scrape to scrape: filling it on the
 * daemon's loop thread never allocates (xpb_metrics_snapshot_add_account
 * says XPB_METRICS_FULL instead, and the listener's thread makes room). */
typedef struct xpb_metrics_snapshot {
    xpb_daemon_counters c;
    xpb_bus_stats bus;
    const char *state_name[XPB_MST_COUNT]; /* the label of each c.sessions[] bucket */
    xpb_metrics_account *accounts;
    size_t n_accounts, cap_accounts;
    char *names; /* the accounts' names, each NUL-terminated */
    size_t names_len, names_cap;
    uint64_t libevent_seen, libevent_suppressed; /* libevent's log messages */
} xpb_metrics_snapshot;

/* How long a request waits for the daemon's loop to copy its figures; past
 * it, /metrics and /healthz answer 503 naming this limit (a loop that
 * stalls this long is itself the alarm). */
#define XPB_METRICS_SNAPSHOT_WAIT_MS 2000u

/* Fills *out (emptied before the first call of a request, its room kept;
 * first = 1 then), on the daemon's loop thread. Returns 0 when done,
 * XPB_METRICS_MORE to be called again on a later loop turn (a slice of the
 * accounts at a time, so the loop never stops for the whole walk),
 * XPB_METRICS_FULL when an account did not fit (called again, first = 0,
 * once the listener's thread made room; that account is added then), or
 * another value: answered 500. */
#define XPB_METRICS_MORE 1
#define XPB_METRICS_FULL 2
/* Accounts copied per loop turn for a scrape. */
#define XPB_METRICS_SLICE 2048u
typedef int (*xpb_metrics_snapshot_fn)(void *ud, xpb_metrics_snapshot *out, int first);
/* 0, or XPB_METRICS_FULL (nothing added) when the room is used up: it never
 * allocates, because it runs on the daemon's loop thread. */
int xpb_metrics_snapshot_add_account(xpb_metrics_snapshot *s, const char *name, unsigned queued,
                                     unsigned unacked);
/* Room for at least accounts more accounts with name_bytes more bytes of
 * names (NULs included): 0 or XPB_ENOMEM. */
int xpb_metrics_snapshot_reserve(xpb_metrics_snapshot *s, size_t accounts, size_t name_bytes);
/* Empties the snapshot and keeps its room; _clear frees the room too. */
void xpb_metrics_snapshot_reset(xpb_metrics_snapshot *s);
void xpb_metrics_snapshot_clear(xpb_metrics_snapshot *s);
static inline const char *xpb_metrics_account_name(const xpb_metrics_snapshot *s,
                                                   const xpb_metrics_account *a)
{
    return s->names + a->name_off;
}

typedef struct xpb_metrics xpb_metrics;
typedef struct xpb_metrics_opts {
    const char *listen;          /* "ADDR:PORT"; a non-loopback address needs allow_remote */
    int allow_remote;
    unsigned max_connections;    /* metrics.max_connections: more are closed at once */
    unsigned idle_timeout_s;     /* metrics.idle_timeout_s: per request, and per reply */
    size_t expected_accounts;    /* the snapshot's room is made for these at once (the
                                  * configured accounts): the first scrape need not wait */
} xpb_metrics_opts;
/* loop is the daemon's: snapshot runs on its thread. The listener binds at
 * once (errors in err) and serves from its own thread until xpb_metrics_free,
 * which the daemon's thread calls. */
int xpb_metrics_new(xpb_metrics **out, xpb_loop *loop, const xpb_metrics_opts *o,
                    xpb_metrics_snapshot_fn snapshot, void *ud, char *err, size_t errlen);
void xpb_metrics_free(xpb_metrics *m);
/* The listen address rule alone (for --check-config and start-up): 0 or
 * XPB_EINVAL with err. "0" and "" (disabled) pass. */
int xpb_metrics_check_listen(const char *listen, int allow_remote, char *err, size_t errlen);
/* The exposition text of a snapshot (without the listener's own figures) and
 * the health verdict: 1 healthy, 0 not, with why ("ok", "the bus is down",
 * "no session online (N configured)"). */
int xpb_metrics_render(const xpb_metrics_snapshot *s, xpb_buf *out);
int xpb_metrics_health(const xpb_metrics_snapshot *s, char *why, size_t whylen);

#endif
