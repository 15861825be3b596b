/* /metrics (Prometheus text exposition format 0.0.4) and /healthz over the
 * bounded HTTP server (bridge/io/httpd.c), on a loopback address unless
 * allow_remote: the numbers say which accounts exist, so they are not
 * published by default. The figures come from the snapshot callback. */
#define _DEFAULT_SOURCE
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xpb_httpd.h"
#include "xpb_error.h"
#include "xpb_loop.h"

#define METRICS_MAX_ADDR 128
/* Sizing the reused snapshot (make_room): accounts beyond the counted ones,
 * and the bytes per name before any is seen. */
#define XPB_METRICS_ROOM_MARGIN 64u
#define XPB_METRICS_NAME_GUESS 48u

struct xpb_metrics {
    xpb_httpd *http;
    unsigned max_connections, idle_timeout_s;
    xpb_metrics_snapshot_fn snapshot;
    void *ud;
    xpb_loop *own; /* the listener's loop, run by thread */
    pthread_t thread;
    int thread_on;
    xpb_wake *take;     /* on the daemon's loop: copy the figures */
    xpb_wake *stop;     /* on the listener's loop: leave it */
    pthread_mutex_t mu; /* guards want, ready, full, growing, snap and snap_rc */
    pthread_cond_t cv;
    int want, ready, stopping, snap_rc;
    int walking; /* the snapshot of the waiting request is part-way (MORE or FULL) */
    int full;    /* the walk waits for room (XPB_METRICS_FULL) */
    int growing; /* the listener's thread is making room: the loop keeps off snap */
    /* Filled on the daemon's thread while want (and not growing), read by the
     * listener's once ready; its room is kept for the next request. */
    xpb_metrics_snapshot snap;
    size_t page_len; /* the last page's size: room for the next one is made at once */
};

int xpb_metrics_snapshot_add_account(xpb_metrics_snapshot *s, const char *name, unsigned queued,
                                     unsigned unacked)
{
    size_t len = strlen(name) + 1;
    if (s->n_accounts == s->cap_accounts || len > s->names_cap - s->names_len)
        return XPB_METRICS_FULL;
    memcpy(s->names + s->names_len, name, len);
    s->accounts[s->n_accounts++] = (xpb_metrics_account){s->names_len, queued, unacked};
    s->names_len += len;
    return 0;
}

int xpb_metrics_snapshot_reserve(xpb_metrics_snapshot *s, size_t accounts, size_t name_bytes)
{
    if (accounts > SIZE_MAX / sizeof *s->accounts - s->n_accounts ||
        name_bytes > SIZE_MAX - s->names_len)
        return XPB_ENOMEM;
    /* The new room is written once here, so that its pages are faulted in on
     * the caller's thread (the listener's), not on the daemon's loop. */
    size_t want = s->n_accounts + accounts;
    if (want > s->cap_accounts) {
        xpb_metrics_account *a = realloc(s->accounts, want * sizeof *a);
        if (!a) return XPB_ENOMEM;
        memset(a + s->cap_accounts, 0, (want - s->cap_accounts) * sizeof *a);
        s->accounts = a;
        s->cap_accounts = want;
    }
    want = s->names_len + name_bytes;
    if (want > s->names_cap) {
        char *n = realloc(s->names, want);
        if (!n) return XPB_ENOMEM;
        memset(n + s->names_cap, 0, want - s->names_cap);
        s->names = n;
        s->names_cap = want;
    }
    return 0;
}

void xpb_metrics_snapshot_reset(xpb_metrics_snapshot *s)
{
    xpb_metrics_snapshot kept = {.accounts = s->accounts, .cap_accounts = s->cap_accounts,
                                 .names = s->names, .names_cap = s->names_cap};
    *s = kept;
}

void xpb_metrics_snapshot_clear(xpb_metrics_snapshot *s)
{
    free(s->accounts);
    free(s->names);
    *s = (xpb_metrics_snapshot){0};
}

/* The listener's thread, after XPB_METRICS_FULL: room for every account the
 * counters count (with a margin for accounts added since) at the names'
 * mean length so far, and at least twice what did not do. */
static int make_room(xpb_metrics_snapshot *s)
{
    size_t total = (size_t)s->c.n_accounts + XPB_METRICS_ROOM_MARGIN;
    size_t left = total > s->n_accounts ? total - s->n_accounts : XPB_METRICS_ROOM_MARGIN;
    size_t mean = s->n_accounts ? s->names_len / s->n_accounts + 1 : XPB_METRICS_NAME_GUESS;
    size_t accounts = left, names = left * mean;
    if (s->n_accounts == s->cap_accounts && accounts < s->cap_accounts)
        accounts = s->cap_accounts; /* at least doubled */
    if (names < s->names_cap) names = s->names_cap;
    return xpb_metrics_snapshot_reserve(s, accounts, names);
}

/* ---- the exposition text ---------------------------------------------------------- */

static int put(xpb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int put(xpb_buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) return XPB_EINVAL;
    return xpb_buf_append(b, line, (size_t)n);
}

static int head(xpb_buf *b, const char *name, const char *type, const char *help)
{
    return put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values: \ " and newline escaped (exposition format). Runs of
 * plain characters go in one append: a scrape at 10,000 accounts writes
 * 20,000 of these. */
static int label_value(xpb_buf *b, const char *v)
{
    int rc = 0;
    while (*v && !rc) {
        size_t run = strcspn(v, "\\\"\n");
        if (run) rc = xpb_buf_append(b, v, run);
        v += run;
        if (!*v || rc) break;
        rc = xpb_buf_append_str(b, *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : "\\n");
        v++;
    }
    return rc;
}

/* "NAME{account=\"VALUE\"} N\n" without printf: one per account and gauge. */
static int account_line(xpb_buf *b, const char *name, size_t name_len, const char *account,
                        unsigned n)
{
    char num[16];
    size_t k = sizeof num;
    num[--k] = '\n';
    do num[--k] = (char)('0' + n % 10); while ((n /= 10) != 0);
    num[--k] = ' ';
    num[--k] = '}';
    num[--k] = '"';
    int rc = xpb_buf_append(b, name, name_len);
    if (!rc) rc = xpb_buf_append(b, "{account=\"", 10);
    if (!rc) rc = label_value(b, account);
    if (!rc) rc = xpb_buf_append(b, num + k, sizeof num - k);
    return rc;
}

static int render_sessions(const xpb_metrics_snapshot *snap, xpb_buf *b)
{
    const xpb_daemon_counters *c = &snap->c;
    int rc = head(b, "xpb_sessions", "gauge", "Bridged sessions by state.");
    for (int s = 0; s < XPB_MST_COUNT && !rc; s++) {
        rc = put(b, "xpb_sessions{state=\"");
        if (!rc) rc = label_value(b, snap->state_name[s] ? snap->state_name[s] : "unknown");
        if (!rc) rc = put(b, "\"} %u\n", c->sessions[s]);
    }
    static const char *const names[2] = {"xpb_queue_depth", "xpb_unacked"};
    static const char *const helps[2] = {
        "Stanzas waiting to be sent (offline queue, bounded by queue_max).",
        "Stanzas sent but not yet acknowledged by the server (XEP-0198)."};
    for (int m = 0; m < 2 && !rc; m++) {
        rc = head(b, names[m], "gauge", helps[m]);
        size_t nl = strlen(names[m]);
        for (size_t i = 0; !rc && i < snap->n_accounts; i++) {
            const xpb_metrics_account *a = &snap->accounts[i];
            rc = account_line(b, names[m], nl, xpb_metrics_account_name(snap, a),
                              m == 0 ? a->queued : a->unacked);
        }
    }
    return rc;
}

static int render_traffic(xpb_buf *b, const xpb_daemon_counters *c)
{
    static const char *const dirs[2] = {"in", "out"};
    static const char *const kinds[XPB_KIND_COUNT] = {"message", "presence", "iq", "other"};
    int rc = head(b, "xpb_stanzas_total", "counter", "Stanzas received (in) and sent (out).");
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < XPB_KIND_COUNT && !rc; k++)
            rc = put(b, "xpb_stanzas_total{direction=\"%s\",kind=\"%s\"} %" PRIu64 "\n", dirs[d],
                     kinds[k], c->stanzas[d][k]);
    if (!rc)
        rc = head(b, "xpb_bytes_total", "counter",
                  "Stanza bytes as XML and as records, received (in) and sent (out).");
    for (int d = 0; d < 2 && !rc; d++) {
        rc = put(b, "xpb_bytes_total{direction=\"%s\",format=\"xml\"} %" PRIu64 "\n", dirs[d],
                 c->bytes_xml[d]);
        if (!rc)
            rc = put(b, "xpb_bytes_total{direction=\"%s\",format=\"record\"} %" PRIu64 "\n",
                     dirs[d], c->bytes_record[d]);
    }
    if (!rc) rc = head(b, "xpb_reconnects_total", "counter", "Reconnections of all sessions.");
    if (!rc) rc = put(b, "xpb_reconnects_total %" PRIu64 "\n", c->reconnects);
    if (!rc)
        rc = head(b, "xpb_resumptions_total", "counter",
                  "Streams resumed with XEP-0198 after a reconnection.");
    if (!rc) rc = put(b, "xpb_resumptions_total %" PRIu64 "\n", c->resumptions);
    return rc;
}

/* The inbound trust verdicts (bridge/stanza_trust.h, docs/security.md). */
static int render_trust(xpb_buf *b, const xpb_daemon_counters *c)
{
    int rc = head(b, "xpb_inbound_trust_total", "counter",
                  "Received stanzas by the trust rule that decided them: published, dropped, "
                  "answered by the bridge, or published marked (docs/security.md).");
    for (int r = 0; r < XPB_TR_COUNT && !rc; r++)
        rc = put(b, "xpb_inbound_trust_total{rule=\"%s\",action=\"%s\"} %" PRIu64 "\n",
                 xpb_trust_reason_name(r), xpb_trust_reason_action(r), c->trust[r]);
    return rc;
}

static int counter(xpb_buf *b, const char *name, const char *help, uint64_t v)
{
    int rc = head(b, name, "counter", help);
    return rc ? rc : put(b, "%s %" PRIu64 "\n", name, v);
}

static int gauge(xpb_buf *b, const char *name, const char *help, uint64_t v);

/* The journal (docs/durability.md): what it keeps against its retention,
 * and what it did. Absent without a state directory. */
static int render_journal(xpb_buf *b, const xpb_daemon_counters *c)
{
    if (!c->journal_on) return 0;
    const xpb_journal_stats *j = &c->journal;
    int rc = gauge(b, "xpb_journal_bytes", "Journal size: topic and record bytes kept.", j->bytes);
    if (!rc)
        rc = gauge(b, "xpb_journal_max_bytes", "state.journal_max_bytes: retention by size.",
                   c->journal_max_bytes);
    if (!rc)
        rc = gauge(b, "xpb_journal_max_age_seconds", "state.journal_max_age_s: retention by age.",
                   c->journal_max_age_s);
    if (!rc) rc = gauge(b, "xpb_journal_events", "Events kept in the journal.", j->events);
    if (!rc)
        rc = gauge(b, "xpb_journal_oldest_seq", "The oldest seq a Replay can still serve (0: empty).",
                   j->first_seq);
    if (!rc) rc = gauge(b, "xpb_journal_last_seq", "The newest seq in the journal.", j->last_seq);
    if (!rc)
        rc = counter(b, "xpb_journal_appended_total", "Events written to the journal.", j->appended);
    if (!rc)
        rc = counter(b, "xpb_journal_commits_total", "Group commits (one per bus flush).",
                     c->journal_bus.commits);
    if (!rc)
        rc = counter(b, "xpb_journal_append_errors_total",
                     "Flushes whose events could not be written (published all the same: full "
                     "or read-only state directory).",
                     c->journal_bus.append_errors);
    if (!rc)
        rc = counter(b, "xpb_journal_waits_total",
                     "Bus flushes that waited on the event loop for the store thread "
                     "(XPB_BUS_JOURNAL_INFLIGHT_MAX flushes were already waiting for the disk).",
                     c->journal_bus.waits);
    if (!rc)
        rc = counter(b, "xpb_journal_trimmed_total", "Events dropped by retention.", j->trimmed);
    if (!rc) rc = counter(b, "xpb_journal_replays_total", "Replay pages served.", j->replays);
    if (!rc)
        rc = counter(b, "xpb_journal_replayed_events_total", "Events read back for Replay.",
                     j->replayed_events);
    return rc;
}

/* Catch-up from the server's archive (docs/durability.md, "Catch-up"). Absent
 * when it is off (no state directory, or mam.catchup = false). */
static int render_catchup(xpb_buf *b, const xpb_daemon_counters *c)
{
    if (!c->catchup_on) return 0;
    int rc = counter(b, "xpb_catchup_runs_total",
                     "Archive catch-ups started (the account's archive, each room's).",
                     c->catchup_runs);
    if (!rc)
        rc = counter(b, "xpb_catchup_messages_total", "Archived messages published (from_archive).",
                     c->catchup_messages);
    if (!rc)
        rc = counter(b, "xpb_catchup_duplicates_total",
                     "Archived or live messages dropped: their stanza-id was published before.",
                     c->catchup_duplicates);
    if (!rc)
        rc = counter(b, "xpb_catchup_bounded_total",
                     "Catch-ups stopped at mam.max_pages or mam.max_messages.", c->catchup_bounded);
    if (!rc)
        rc = counter(b, "xpb_catchup_refused_total",
                     "Archives missing, refusing the query or not answering in mam.timeout_ms.",
                     c->catchup_refused);
    return rc;
}

/* Durable sends (docs/durability.md, "Sends"): kept in the outbox until the
 * server acks them, sent again after a restart, refused when the state
 * directory cannot be written; XEP-0184 receipts matched or refused. */
static int render_sends(xpb_buf *b, const xpb_daemon_counters *c)
{
    int rc = 0;
    if (c->journal_on) {
        rc = counter(b, "xpb_sends_persisted_total",
                     "Sends written to the outbox before they were answered.",
                     c->sends_persisted);
        if (!rc)
            rc = counter(b, "xpb_sends_resent_total",
                         "Outbox sends sent again after a restart (same id).", c->sends_resent);
        if (!rc)
            rc = gauge(b, "xpb_outbox_sends", "Sends in the outbox: not yet acknowledged.",
                       c->outbox);
        if (!rc)
            rc = counter(b, "xpb_storage_refusals_total",
                         "Sends refused with ERR_STORAGE: the state directory was full or "
                         "read-only.",
                         c->storage_refusals);
        if (!rc)
            rc = counter(b, "xpb_outbox_errors_total",
                         "Acknowledged sends the outbox could not forget (sent again after a "
                         "restart).",
                         c->outbox_errors);
    }
    if (!rc)
        rc = counter(b, "xpb_receipts_received_total",
                     "XEP-0184 receipts from the addressee (Delivery RECEIVED).",
                     c->receipts_received);
    if (!rc)
        rc = counter(b, "xpb_receipts_refused_total",
                     "XEP-0184 receipts from another JID than the addressee, ignored.",
                     c->receipts_spoofed);
    return rc;
}

/* The configured limits, beside the gauges they bound (xpb_queue_depth ...). */
static int render_limits(xpb_buf *b, const xpb_daemon_counters *c)
{
    int rc = gauge(b, "xpb_queue_max",
                       "limits.queue_max: stanzas kept per account (xpb_queue_depth + xpb_unacked).",
                       c->queue_max);
    if (!rc)
        rc = gauge(b, "xpb_max_stanza_bytes",
                       "limits.max_stanza_bytes: largest stanza read or written (RFC 6120 13.12).",
                       c->max_stanza_bytes);
    if (!rc)
        rc = gauge(b, "xpb_muc_self_ping_seconds",
                       "limits.muc_self_ping_s: XEP-0410 self-ping interval, 0 when off.",
                       c->muc_self_ping_s);
    if (!rc)
        rc = gauge(b, "xpb_worker_loops",
                   "limits.loops in force: worker loops running the sessions, 0 when all run "
                   "on the main loop.",
                   c->worker_loops);
    if (!rc)
        rc = counter(b, "xpb_worker_waits_total",
                     "Times a worker loop stopped reading its sockets until the main loop had run "
                     "its events (XPB_SHARDS_MAX_IN_FLIGHT batches of 64 behind).",
                     c->worker_waits);
    return rc;
}

static int render_leases(xpb_buf *b, const xpb_daemon_counters *c)
{
    if (!c->leases_on) return 0;
    int rc = gauge(b, "xpb_leases_owned", "Accounts this bridge holds a lease on (nats.leases).",
                   c->leases_owned);
    if (!rc)
        rc = gauge(b, "xpb_leases_claiming", "Claims sent, not yet answered.", c->leases_claiming);
    if (!rc)
        rc = gauge(b, "xpb_leases_closing", "Accounts given up or lost whose session is closing.",
                   c->leases_closing);
    if (!rc)
        rc = gauge(b, "xpb_leases_live_bridges", "Bridges seen in xpb_bridges at the last round.",
                   c->leases_live_bridges);
    if (!rc) rc = counter(b, "xpb_leases_claims_total", "Claims sent.", c->leases_claims);
    if (!rc)
        rc = counter(b, "xpb_leases_claims_lost_total",
                     "Claims another bridge won, or that got no answer.", c->leases_claims_lost);
    if (!rc)
        rc = counter(b, "xpb_leases_renewals_total", "Renewals that held.", c->leases_renewals);
    if (!rc)
        rc = counter(b, "xpb_leases_renew_failures_total",
                     "Renewals refused (taken) or unanswered.", c->leases_renew_failures);
    if (!rc)
        rc = counter(b, "xpb_leases_lost_total", "Leases lost: taken, or not renewed in time.",
                     c->leases_lost);
    if (!rc)
        rc = counter(b, "xpb_leases_deadline_closes_total",
                     "Sessions closed: NATS did not confirm a renewal within 70% of the ttl.",
                     c->leases_deadline_closes);
    return rc;
}

static int render_bus(xpb_buf *b, const xpb_bus_stats *s)
{
    int rc = counter(b, "xpb_bus_events_total", "Events published on the bus.", s->events);
    if (!rc) rc = counter(b, "xpb_bus_batches_total", "NNG messages (event batches) sent.", s->batches);
    if (!rc)
        rc = counter(b, "xpb_bus_publish_errors_total", "Event batches the PUB socket refused.",
                     s->publish_errors);
    if (!rc)
        rc = counter(b, "xpb_bus_events_dropped_total", "Events in batches the PUB socket refused.",
                     s->events_dropped);
    if (!rc) rc = counter(b, "xpb_bus_requests_total", "Requests received.", s->requests);
    if (!rc)
        rc = counter(b, "xpb_bus_malformed_total", "Requests answered with ERR_BAD_REQUEST "
                                                   "because they did not decode or validate.",
                     s->malformed);
    if (!rc)
        rc = counter(b, "xpb_bus_dedupe_hits_total",
                     "Resent request ids answered from the response cache.", s->dedupe_hits);
    if (!rc)
        rc = counter(b, "xpb_bus_dedupe_restored_total",
                     "Answers rebuilt from kept sends at a start or a takeover, so that a "
                     "resent request id is not run again.",
                     s->dedupe_restored);
    if (!rc)
        rc = head(b, "xpb_bus_dedupe_size", "gauge",
                  "Answered request ids remembered now (at most bus.dedupe_entries).");
    if (!rc) rc = put(b, "xpb_bus_dedupe_size %u\n", s->dedupe_size);
    if (!rc)
        rc = counter(b, "xpb_bus_busy_total", "Requests refused with ERR_BUSY.", s->busy);
    if (!rc) rc = head(b, "xpb_bus_inflight", "gauge", "Requests being served.");
    if (!rc) rc = put(b, "xpb_bus_inflight %u\n", s->inflight);
    if (!rc)
        rc = counter(b, "xpb_bus_bad_strings_total",
                     "Requests refused because a string field held a NUL, invalid UTF-8, a "
                     "character XML does not allow, or more than max_stanza_bytes.",
                     s->bad_strings);
    if (!rc)
        rc = counter(b, "xpb_bus_busy_control_total",
                     "status, list and close requests refused with ERR_BUSY (control slots full).",
                     s->busy_control);
    if (!rc)
        rc = head(b, "xpb_bus_inflight_control", "gauge",
                  "status, list and close requests being served (their own slots).");
    if (!rc) rc = put(b, "xpb_bus_inflight_control %u\n", s->inflight_control);
    if (!rc)
        rc = counter(b, "xpb_bus_publish_retries_total",
                     "Event batches sent again (NATS: refused, or no JetStream ack in time).",
                     s->publish_retries);
    if (!rc)
        rc = head(b, "xpb_bus_publish_pending", "gauge",
                  "Event batches held until the back end acknowledges them (NATS JetStream).");
    if (!rc) rc = put(b, "xpb_bus_publish_pending %llu\n", (unsigned long long)s->publish_pending);
    return rc;
}

int xpb_metrics_render(const xpb_metrics_snapshot *s, xpb_buf *out)
{
    int rc = render_sessions(s, out);
    if (!rc) rc = render_traffic(out, &s->c);
    if (!rc) rc = render_trust(out, &s->c);
    if (!rc) rc = render_limits(out, &s->c);
    if (!rc) rc = render_journal(out, &s->c);
    if (!rc) rc = render_catchup(out, &s->c);
    if (!rc) rc = render_sends(out, &s->c);
    if (!rc) rc = render_leases(out, &s->c);
    if (!rc) rc = render_bus(out, &s->bus);
    if (!rc)
        rc = counter(out, "xpb_bus_open_forbidden_total",
                     "open requests refused with ERR_FORBIDDEN (bus.allow_inline_credentials, "
                     "bus.allow_open_overrides).",
                     s->c.open_forbidden);
    return rc;
}

int xpb_metrics_health(const xpb_metrics_snapshot *s, char *why, size_t whylen)
{
    const xpb_daemon_counters c = s->c;
    if (!c.bus_up) {
        snprintf(why, whylen, "the bus is down");
        return 0;
    }
    if (c.n_accounts > 0 && c.sessions[XPB_MST_ONLINE] == 0) {
        snprintf(why, whylen, "no session online (%u configured)", c.n_accounts);
        return 0;
    }
    snprintf(why, whylen, "ok");
    return 1;
}

/* ---- the limits of this listener and of the log ----------------------------------- */

static int gauge(xpb_buf *b, const char *name, const char *help, uint64_t v)
{
    int rc = head(b, name, "gauge", help);
    return rc ? rc : put(b, "%s %" PRIu64 "\n", name, v);
}

static int render_http(const struct xpb_metrics *m, const xpb_metrics_snapshot *snap, xpb_buf *b)
{
    xpb_httpd_stats st;
    uint64_t seen = snap->libevent_seen, suppressed = snap->libevent_suppressed;
    xpb_httpd_get_stats(m->http, &st);
    int rc = gauge(b, "xpb_metrics_connections", "Open /metrics connections.", st.open);
    if (!rc)
        rc = gauge(b, "xpb_metrics_max_connections", "metrics.max_connections.",
                   m->max_connections);
    if (!rc)
        rc = counter(b, "xpb_metrics_connections_total", "/metrics connections accepted.",
                     st.accepted);
    if (!rc)
        rc = counter(b, "xpb_metrics_connections_refused_total",
                     "/metrics connections closed at once: over metrics.max_connections, or "
                     "shed while out of file descriptors.", st.refused);
    if (!rc)
        rc = counter(b, "xpb_metrics_connections_timed_out_total",
                     "/metrics connections closed after metrics.idle_timeout_s.", st.timed_out);
    if (!rc)
        rc = counter(b, "xpb_metrics_bad_requests_total",
                     "/metrics requests refused: not HTTP/1.x, or a head over 8 KiB.",
                     st.bad_requests);
    if (!rc)
        rc = counter(b, "xpb_metrics_accept_errors_total",
                     "accept() failures on the /metrics listener (EMFILE, ENFILE, ...); each "
                     "pauses it for 250 ms.", st.accept_errors);
    if (!rc)
        rc = counter(b, "xpb_libevent_messages_total", "libevent's own log messages.", seen);
    if (!rc)
        rc = counter(b, "xpb_libevent_messages_suppressed_total",
                     "libevent log messages not written (over the log rate limit).", suppressed);
    return rc;
}

/* ---- HTTP ---------------------------------------------------------------------------- */

static void reply_text(xpb_httpd_reply *r, int code, const char *reason, const char *ctype,
                       const char *body, size_t len)
{
    r->status = code;
    r->reason = reason;
    r->ctype = ctype;
    xpb_buf_reset(&r->body);
    xpb_buf_append(&r->body, body, len);
}

/* ---- the figures, copied on the daemon's thread ------------------------------------ */

/* The daemon's loop thread: a request is waiting for the figures. It only
 * copies into the room the listener's thread made (no allocation here). */
static void on_take(void *arg)
{
    struct xpb_metrics *m = arg;
    pthread_mutex_lock(&m->mu);
    if (m->want && !m->growing && !m->full) {
        int first = !m->walking;
        if (first) {
            xpb_metrics_snapshot_reset(&m->snap);
            xpb_loop_libevent_log_counts(&m->snap.libevent_seen, &m->snap.libevent_suppressed);
        }
        int rc = m->snapshot(m->ud, &m->snap, first);
        m->walking = rc == XPB_METRICS_MORE || rc == XPB_METRICS_FULL;
        if (rc == XPB_METRICS_MORE) {
            xpb_wake_signal(m->take); /* the next slice after the loop's other work */
        } else if (rc == XPB_METRICS_FULL) {
            m->full = 1; /* the listener makes room, then wakes us again */
            pthread_cond_broadcast(&m->cv);
        } else {
            m->snap_rc = rc;
            m->want = 0;
            m->ready = 1;
            pthread_cond_broadcast(&m->cv);
        }
    } else if (!m->want) {
        m->walking = 0; /* its request gave up */
    }
    pthread_mutex_unlock(&m->mu);
}

/* The listener's thread, m->mu held, after XPB_METRICS_FULL: more room,
 * made outside the lock while the loop keeps off the snapshot. */
static int grow_snapshot(struct xpb_metrics *m)
{
    m->full = 0;
    m->growing = 1;
    pthread_mutex_unlock(&m->mu);
    int rc = make_room(&m->snap);
    pthread_mutex_lock(&m->mu);
    m->growing = 0;
    if (rc == 0) xpb_wake_signal(m->take);
    return rc;
}

/* The listener's thread: m->snap holds the figures, or XPB_ETIMEOUT when the
 * daemon's loop did not copy them within XPB_METRICS_SNAPSHOT_WAIT_MS (or is
 * stopping). */
static int take_snapshot(struct xpb_metrics *m)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += XPB_METRICS_SNAPSHOT_WAIT_MS / 1000u;
    until.tv_nsec += (long)(XPB_METRICS_SNAPSHOT_WAIT_MS % 1000u) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&m->mu);
    m->ready = m->full = 0;
    m->want = 1;
    m->walking = 0; /* a walk an earlier request left unfinished starts over */
    pthread_mutex_unlock(&m->mu);
    xpb_wake_signal(m->take);
    pthread_mutex_lock(&m->mu);
    int rc = 0, room = 0;
    while (!m->ready && !m->stopping && rc != ETIMEDOUT && !room) {
        if (m->full) room = grow_snapshot(m);
        else rc = pthread_cond_timedwait(&m->cv, &m->mu, &until);
    }
    if (m->ready) rc = m->snap_rc;
    else rc = room ? room : XPB_ETIMEOUT;
    m->want = m->ready = 0;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* The page, straight into the reply's body (which goes to the socket without
 * a copy), with room for all of it made first: the last page's size, or a
 * guess from the accounts' names the first time. */
static int render_page(struct xpb_metrics *m, const xpb_metrics_snapshot *snap, xpb_buf *b)
{
    size_t guess = m->page_len ? m->page_len + m->page_len / 8
                               : 2 * snap->names_len + 64 * snap->n_accounts + 16384;
    xpb_buf_reset(b);
    int rc = xpb_buf_make_room(b, guess);
    if (!rc) rc = xpb_metrics_render(snap, b);
    if (!rc) rc = render_http(m, snap, b);
    if (!rc) m->page_len = b->len;
    return rc;
}

static void reply_unavailable(xpb_httpd_reply *r)
{
    char body[200];
    int n = snprintf(body, sizeof body,
                     "the bridge's loop did not hand over its figures within %u ms "
                     "(XPB_METRICS_SNAPSHOT_WAIT_MS)\n",
                     XPB_METRICS_SNAPSHOT_WAIT_MS);
    reply_text(r, 503, "Service Unavailable", "text/plain; charset=utf-8", body, (size_t)n);
}

static void on_http(void *arg, const char *path, xpb_httpd_reply *r)
{
    struct xpb_metrics *m = arg;
    int is_metrics = strcmp(path, "/metrics") == 0, is_health = strcmp(path, "/healthz") == 0;
    const xpb_metrics_snapshot *snap = &m->snap;
    int snap_rc = is_metrics || is_health ? take_snapshot(m) : 0;
    if (snap_rc == XPB_ETIMEOUT) {
        reply_unavailable(r);
    } else if (is_metrics) {
        if (!snap_rc && render_page(m, snap, &r->body) == 0) {
            r->status = 200;
            r->reason = "OK";
            r->ctype = "text/plain; version=0.0.4; charset=utf-8";
        } else {
            reply_text(r, 500, "Internal Server Error", "text/plain; charset=utf-8",
                       "metrics rendering failed\n", 25);
        }
    } else if (is_health) {
        char why[256] = "the figures could not be read", body[300];
        int ok = !snap_rc && xpb_metrics_health(snap, why, sizeof why);
        int n = snprintf(body, sizeof body, "%s\n", why);
        reply_text(r, ok ? 200 : 503, ok ? "OK" : "Service Unavailable",
                   "text/plain; charset=utf-8", body, (size_t)n);
    } else {
        static const char nf[] = "try /metrics or /healthz\n";
        reply_text(r, 404, "Not Found", "text/plain; charset=utf-8", nf, sizeof nf - 1);
    }
}

/* "ADDR:PORT" or "[v6]:PORT" -> addr, port. */
static int split_listen(const char *s, char *addr, size_t alen, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon) return XPB_EINVAL;
    const char *a = s;
    size_t n = (size_t)(colon - s);
    if (n >= 2 && a[0] == '[' && a[n - 1] == ']') {
        a++;
        n -= 2;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (n == 0 || n >= alen || *end || p <= 0 || p > 65535) return XPB_EINVAL;
    memcpy(addr, a, n);
    addr[n] = '\0';
    *port = (uint16_t)p;
    return 0;
}

static int is_loopback(const char *addr)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, addr, &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
    return strcmp(addr, "localhost") == 0;
}

static int check_listen(const char *listen, int allow_remote, char *addr, size_t alen,
                        uint16_t *port, char *err, size_t errlen)
{
    if (split_listen(listen, addr, alen, port) != 0) {
        snprintf(err, errlen, "metrics listen \"%s\": expected ADDR:PORT", listen);
        return XPB_EINVAL;
    }
    if (!allow_remote && !is_loopback(addr)) {
        snprintf(err, errlen,
                 "metrics listen \"%s\" is not a loopback address (set metrics.allow_remote "
                 "= true to publish metrics beyond this host)",
                 listen);
        return XPB_EINVAL;
    }
    return 0;
}

int xpb_metrics_check_listen(const char *listen, int allow_remote, char *err, size_t errlen)
{
    char addr[METRICS_MAX_ADDR];
    uint16_t port;
    if (!listen || !listen[0] || strcmp(listen, "0") == 0) return 0;
    return check_listen(listen, allow_remote, addr, sizeof addr, &port, err, errlen);
}

static void on_stop(void *arg)
{
    struct xpb_metrics *m = arg;
    xpb_loop_stop(m->own);
}

static void *run_listener(void *arg)
{
    struct xpb_metrics *m = arg;
    xpb_loop_run(m->own);
    return NULL;
}

int xpb_metrics_new(xpb_metrics **out, xpb_loop *loop, const xpb_metrics_opts *o,
                    xpb_metrics_snapshot_fn snapshot, void *ud, char *err, size_t errlen)
{
    char addr[METRICS_MAX_ADDR];
    uint16_t port;
    int rc = check_listen(o->listen, o->allow_remote, addr, sizeof addr, &port, err, errlen);
    if (rc) return rc;
    struct xpb_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return XPB_ENOMEM;
    }
    m->snapshot = snapshot;
    m->ud = ud;
    m->max_connections = o->max_connections;
    m->idle_timeout_s = o->idle_timeout_s;
    if (o->expected_accounts) {
        size_t n = o->expected_accounts + XPB_METRICS_ROOM_MARGIN;
        if (xpb_metrics_snapshot_reserve(&m->snap, n, n * XPB_METRICS_NAME_GUESS) != 0) {
            snprintf(err, errlen, "metrics listener: out of memory for %zu accounts' figures",
                     o->expected_accounts);
            xpb_metrics_snapshot_clear(&m->snap);
            free(m);
            return XPB_ENOMEM;
        }
    }
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL); /* CLOCK_REALTIME deadlines (take_snapshot) */
    xpb_loop_config lc = {0};
    rc = xpb_loop_new(&m->own, &lc);
    if (rc == 0) rc = xpb_wake_new(loop, on_take, m, &m->take);
    if (rc == 0) rc = xpb_wake_new(m->own, on_stop, m, &m->stop);
    if (rc != 0) snprintf(err, errlen, "metrics listener: %s", xpb_strerror(rc));
    xpb_httpd_opts ho = {.addr = addr, .port = port, .max_connections = o->max_connections,
                         .idle_timeout_s = o->idle_timeout_s};
    if (rc == 0) rc = xpb_httpd_new(&m->http, m->own, &ho, on_http, m, err, errlen);
    if (rc == 0 && pthread_create(&m->thread, NULL, run_listener, m) != 0) {
        snprintf(err, errlen, "metrics listener: cannot start its thread");
        rc = XPB_ENOMEM;
    }
    if (rc) {
        xpb_metrics_free(m);
        return rc;
    }
    m->thread_on = 1;
    *out = m;
    return 0;
}

void xpb_metrics_free(xpb_metrics *m)
{
    if (!m) return;
    if (m->thread_on) {
        pthread_mutex_lock(&m->mu);
        m->stopping = 1; /* a request waiting for figures gives up now */
        pthread_cond_broadcast(&m->cv);
        pthread_mutex_unlock(&m->mu);
        xpb_wake_signal(m->stop);
        pthread_join(m->thread, NULL);
    }
    xpb_httpd_free(m->http);
    xpb_wake_free(m->stop);
    xpb_wake_free(m->take);
    xpb_loop_free(m->own);
    xpb_metrics_snapshot_clear(&m->snap);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
