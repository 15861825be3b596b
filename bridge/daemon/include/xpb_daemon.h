/* xpbridge's daemon (the xpbdaemon library): the accounts and their sessions
 * on a loop it is given, the bus request handlers, session events -> bus
 * events, iq correlation, MUC rejoin and self-ping, reload, clean shutdown.
 * It knows neither the /metrics listener nor where logs go: main.c wires
 * those, reading the figures below. Everything runs on the loop thread. */
#ifndef XPB_DAEMON_H
#define XPB_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include "xpb_config.h"
#include "xpb_bus.h"
#include "xpb_bus_journal.h"
#include "xpb_store.h"
#include "xpb_log.h"
#include "xpb_loop.h"
#include "xpb_xml.h"
#include "xpb_trust.h"


#define XPB_VERSION_STRING "0.1.0"
#define XPB_DAEMON_CLOSE_WAIT_MS 3000u      /* close / shutdown: wait this long for sessions */
#define XPB_DAEMON_SELF_PING_TIMEOUT_MS 30000u
#define XPB_DAEMON_MAX_PASSWORD 4096u       /* bytes of a password file */
#define XPB_DAEMON_MAX_IQ_TIMEOUT_MS 600000u
#define XPB_DAEMON_MAX_SEND_BATCH 4096u     /* stanzas in one SendBatch request */
#define XPB_DAEMON_REQUEST_SLACK (64u * 1024u) /* request bytes beyond 2 x max_stanza_bytes */
/* XEP-0184: messages sent with a receipt request whose <received/> is awaited,
 * per account; past it the oldest wait is dropped (it never gets RECEIVED). */
#define XPB_DAEMON_RECEIPTS_MAX 10000u
/* XEP-0198 h of received stanzas is kept at most this long after them, so a
 * resumed stream after a crash redelivers only what came in that window. */
#define XPB_DAEMON_SM_SAVE_MS 10u
/* The same with the state in NATS KV (one KV round trip per account per save,
 * on one worker thread): longer, so a busy bridge does not queue saves faster
 * than KV takes them; a takeover gets at most this much again from the server. */
#define XPB_DAEMON_SM_SAVE_KV_MS 250u
/* A send's KV put that fails is tried this many more times, after a pause
 * of 250 ms doubling to 2 s (a put to a stream without a leader fails at
 * once; one without an answer takes 1.5 s), before the send is refused:
 * 11.75 s of pauses at least, longer than a stream's leader election. */
#define XPB_DAEMON_KV_PUT_TRIES 8u
#define XPB_DAEMON_KV_RETRY_MIN_MS 250u
#define XPB_DAEMON_KV_RETRY_MAX_MS 2000u
/* Group commit of the outbox (sends.c): a batch is committed this long after
 * its first row (0: on the loop's next turn). 1 ms measured no better. */
#ifndef XPB_DAEMON_COMMIT_MS
#define XPB_DAEMON_COMMIT_MS 0u
#endif

/* ---- the daemon --------------------------------------------------------------- */
typedef struct xpb_daemon xpb_daemon;

/* cfg is copied. Takes over the loop's session events (xpb_loop_set_handlers),
 * binds the bus and starts a session per account on loop, which must outlive
 * the daemon. On failure returns an XPB_E… code with err filled (the bus
 * could not bind ...). */
int xpb_daemon_new(xpb_daemon **out, xpb_loop *loop, const xpb_config *cfg, char *err,
                   size_t errlen);
/* Close every session cleanly, wait at most XPB_DAEMON_CLOSE_WAIT_MS for them,
 * answer open requests (xpb_bus_free), then break the loop (xpb_loop_stop). */
void xpb_daemon_shutdown(xpb_daemon *d);
/* SIGHUP: apply the accounts of cfg (added, removed, restarted when changed). */
void xpb_daemon_reload(xpb_daemon *d, const xpb_config *cfg);
void xpb_daemon_free(xpb_daemon *d);
/* Waits until the state directory's store thread has written everything
 * handed to it and runs what that completes (tests and tools; the loop does
 * it by itself through its wake event). d is an xpb_daemon. */
void xpb_daemon_settle(void *d);
const char *xpb_daemon_events_url(const xpb_daemon *d);
const char *xpb_daemon_requests_url(const xpb_daemon *d);

/* ---- the figures /metrics shows (read by main.c's snapshot) ---------------------- */
enum { XPB_DIR_IN = 0, XPB_DIR_OUT = 1 };
enum { XPB_KIND_MESSAGE = 0, XPB_KIND_PRESENCE, XPB_KIND_IQ, XPB_KIND_OTHER, XPB_KIND_COUNT };
/* Sessions by state, as /metrics counts them (xpb_sessions{state}). One table
 * in daemon.c maps every xpb_session_state both to one of these and to the
 * bus's SessionState (docs/bus.md): a CLOSING session is "closing" here and
 * DISCONNECTED on the bus, which has no closing state. */
enum { XPB_MST_CONNECTING = 0, XPB_MST_ONLINE, XPB_MST_DISCONNECTED, XPB_MST_CLOSING,
       XPB_MST_STOPPED, XPB_MST_COUNT };
/* "connecting", "online", "disconnected", "closing", "stopped"; "unknown". */
const char *xpb_daemon_state_name(int bucket);

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
    unsigned worker_loops; /* limits.loops in force ("auto" resolved); 0: one loop */
    uint64_t worker_waits; /* a worker loop waited: the daemon's loop was XPB_SHARDS_MAX_IN_FLIGHT
                              batches behind it */
    /* the state directory's journal (docs/durability.md); journal_on 0: none */
    int journal_on;
    xpb_journal_stats journal;      /* kept now, appended, trimmed, replays served */
    xpb_bus_journal_stats journal_bus; /* group commits and append errors */
    uint64_t journal_max_bytes, journal_max_age_s;
    /* catch-up from the server's archive (docs/durability.md, "Catch-up") */
    int catchup_on;
    uint64_t catchup_runs;       /* archives asked (the account's, rooms') */
    uint64_t catchup_messages;   /* archived messages published */
    uint64_t catchup_duplicates; /* archived or live messages dropped: stanza-id seen before */
    uint64_t catchup_bounded;    /* runs stopped at mam.max_pages / mam.max_messages */
    uint64_t catchup_refused;    /* archives missing, refusing or not answering */
    /* durable sends (docs/durability.md, "Sends"): written to the outbox,
     * sent again after a restart, refused because the state directory was
     * full or read-only; outbox: sends kept now, waiting for the server's ack */
    uint64_t sends_persisted, sends_resent, storage_refusals, outbox_errors;
    uint64_t outbox;
    uint64_t receipts_received, receipts_spoofed; /* XEP-0184 <received/> matched / refused */
    /* account leases over NATS (docs/scaling.md); leases_on 0: none */
    int leases_on;
    uint64_t leases_owned, leases_claiming, leases_closing, leases_live_bridges;
    uint64_t leases_claims, leases_claims_lost, leases_renewals, leases_renew_failures;
    uint64_t leases_lost, leases_deadline_closes;
} xpb_daemon_counters;
void xpb_daemon_get_counters(xpb_daemon *d, xpb_daemon_counters *out);
void xpb_daemon_get_bus_stats(xpb_daemon *d, xpb_bus_stats *out);
/* Per-account gauges, one call of cb per live account (O(n) for a scrape:
 * issue 10 found the indexed walk O(n^2)). cb returns non-zero to stop; that
 * value is returned: a positive one pauses the walk at that account (the
 * next call visits it again: the caller had no room for it), a negative one
 * ends the walk. The walk goes in slices of at most max accounts, one
 * slice per call, so a scrape at 10,000 accounts never holds the loop for
 * the whole walk: start = 1 begins a walk (a later start abandons an
 * unfinished one). *more says whether accounts are left. Accounts added
 * meanwhile may be missed and removed ones are skipped; none is visited
 * twice. */
typedef int (*xpb_daemon_account_fn)(void *ud, const char *name, unsigned queued,
                                     unsigned unacked);
int xpb_daemon_each_account_slice(xpb_daemon *d, int start, size_t max, xpb_daemon_account_fn cb,
                                  void *ud, int *more);

#endif
