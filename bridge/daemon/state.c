/* The daemon's state directory (docs/durability.md): opens the store when
 * one is configured, starts its thread (writes, commits, fsyncs and
 * checkpoints off the loop; completions come back through a wake of the
 * loop), puts the journal back end under the bus so every event is on disk
 * before it is published, and serves Replay requests from it. */
#define _DEFAULT_SOURCE
#include "daemon_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "xpb_error.h"
#include "xpb_log.h"

/* The default directory's parents (~/.local/state) may not exist yet:
 * made 0700 like the directory itself. */
static void make_parents(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) break;
        *p = '/';
    }
}

static void on_store_wake(void *ud)
{
    xpb_daemon *d = ud;
    xpb_store_complete(d->store);
}

static void notify_loop(void *ud)
{
    xpb_wake_signal(ud); /* from the store thread */
}

/* Without its thread the store still works, on the loop (slower): said once. */
static void start_thread(xpb_daemon *d)
{
    char why[768] = "";
    int rc = xpb_wake_new(d->loop, on_store_wake, d, &d->store_wake);
    if (rc == 0) rc = xpb_store_thread_start(d->store, notify_loop, d->store_wake, why, sizeof why);
    if (rc == 0) return;
    xpb_log(XPB_LOG_WARN, "state: no store thread (%s): commits run on the event loop",
            why[0] ? why : xpb_strerror(rc));
    xpb_wake_free(d->store_wake);
    d->store_wake = NULL;
}

void xpb_daemon_settle(void *ud)
{
    xpb_daemon *d = ud;
    if (d && d->store) xpb_store_wait(d->store);
}

int state_threaded(const xpb_daemon *d)
{
    return d->state == &state_local_ops && xpb_store_threaded(d->store);
}

int state_open(xpb_daemon *d, const xpb_config *cfg, char *err, size_t errlen)
{
    if (cfg->state_dir && strcmp(cfg->state_dir, "none") == 0) {
        xpb_log(XPB_LOG_INFO, "state: memory only (--state-dir none): events cannot be "
                              "replayed and nothing survives a restart");
        return 0;
    }
    char dflt[4096];
    const char *dir = cfg->state_dir && cfg->state_dir[0] ? cfg->state_dir : NULL;
    if (!dir) {
        if (xpb_config_default_state_dir(dflt, sizeof dflt) != 0) {
            snprintf(err, errlen, "state directory: %s", dflt);
            return XPB_EINVAL;
        }
        make_parents(dflt);
        dir = dflt;
    }
    xpb_store_config sc = {.dir = dir,
                           .journal_max_bytes = cfg->journal_max_bytes,
                           .journal_max_age_s = cfg->journal_max_age_s,
                           .sync = cfg->state_sync};
    char why[768];
    int rc = xpb_store_open(&d->store, &sc, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "state directory: %s", why);
        return rc;
    }
    snprintf(d->state_dir, sizeof d->state_dir, "%s", dir);
    d->state = &state_local_ops; /* cluster_start may put NATS KV in its place */
    start_thread(d);
    d->journal_max_bytes = cfg->journal_max_bytes ? cfg->journal_max_bytes
                                                  : XPB_STORE_DEFAULT_MAX_BYTES;
    d->journal_max_age_s = cfg->journal_max_age_s ? cfg->journal_max_age_s
                                                  : XPB_STORE_DEFAULT_MAX_AGE_S;
    xpb_journal_stats st;
    xpb_store_journal_stats(d->store, &st);
    xpb_log(XPB_LOG_INFO, "state: %s/%s%s, journal %s, seq %llu to %llu kept, next %llu", dir,
            XPB_STORE_FILE, cfg->state_dir ? "" : " (the default; --state-dir none: memory only)",
            xpb_store_journal_id(d->store), (unsigned long long)st.first_seq,
            (unsigned long long)st.last_seq, (unsigned long long)xpb_store_next_seq(d->store));
    return 0;
}

void state_bus_config(xpb_daemon *d, xpb_bus_config *bc)
{
    bc->journal = d->store; /* the bus puts its journal under the back end */
}

void state_close(xpb_daemon *d)
{
    xpb_store_wait(d->store); /* every write done and its completion run */
    xpb_store_close(d->store);
    d->store = NULL;
    xpb_wake_free(d->store_wake);
    d->store_wake = NULL;
    if (d->state == &state_local_ops) d->state = NULL;
}

/* ---- the local state back end: the state directory's store ------------------------- */

/* With the store thread, XEP-0198 state and removals are handed to it; a
 * failure is logged when it completes (as the synchronous calls' callers do). */
static void on_written(void *ud, const char *acc, uint64_t id, int rc, const char *err)
{
    xpb_daemon *d = ud;
    if (rc == 0) return;
    if (id) { /* an outbox removal */
        d->ctr.outbox_errors++;
        xpb_log(XPB_LOG_WARN, "session %s: outbox: %s (the send may go out again after a "
                              "restart)", acc ? acc : "?", err);
    } else {
        xpb_log(XPB_LOG_WARN, "session %s: %s", acc ? acc : "?", err);
    }
}

static int queued(int rc, const char *what, char *err, size_t errlen)
{
    if (rc) snprintf(err, errlen, "%s: not handed to the store thread: %s", what, xpb_strerror(rc));
    return rc;
}

static int loc_sm_save(xpb_daemon *d, const char *acc, const xpb_sm_state *st, char *err,
                       size_t errlen)
{
    if (state_threaded(d))
        return queued(xpb_store_submit_sm_save(d->store, acc, st, on_written, d),
                      "stream management state", err, errlen);
    return xpb_store_sm_save(d->store, acc, st, err, errlen);
}

static int loc_sm_clear(xpb_daemon *d, const char *acc, char *err, size_t errlen)
{
    if (state_threaded(d))
        return queued(xpb_store_submit_sm_clear(d->store, acc, on_written, d),
                      "stream management state", err, errlen);
    return xpb_store_sm_clear(d->store, acc, err, errlen);
}

/* Reads see every write handed over before them (account start: rare). */
static int loc_sm_load(xpb_daemon *d, const char *acc, xpb_sm_state *st, char *err,
                       size_t errlen)
{
    xpb_store_wait(d->store);
    return xpb_store_sm_load(d->store, acc, st, err, errlen);
}

static int loc_outbox_put(xpb_daemon *d, const xpb_outbox_item *it, char *err, size_t errlen)
{
    return xpb_store_outbox_put(d->store, it, err, errlen);
}

static int loc_outbox_done(xpb_daemon *d, const char *acc, uint64_t id, char *err,
                           size_t errlen)
{
    if (state_threaded(d))
        return queued(xpb_store_submit_outbox_done(d->store, acc, id, on_written, d), "outbox",
                      err, errlen);
    return xpb_store_outbox_done(d->store, acc, id, err, errlen);
}

static int loc_outbox_each(xpb_daemon *d, const char *acc, xpb_outbox_cb cb, void *ud,
                           char *err, size_t errlen)
{
    xpb_store_wait(d->store);
    return xpb_store_outbox_each(d->store, acc, cb, ud, err, errlen);
}

static int loc_marker_get(xpb_daemon *d, const char *acc, const char *archive, char *out,
                          size_t outlen, char *stream, size_t streamlen, char *err, size_t errlen)
{
    return xpb_store_marker_get(d->store, acc, archive, out, outlen, stream, streamlen, err,
                                errlen);
}

static int loc_seen_has(xpb_daemon *d, const char *acc, const char *archive,
                        const char *stanza_id, char *err, size_t errlen)
{
    return xpb_store_seen_has(d->store, acc, archive, stanza_id, err, errlen);
}

/* The journal is written inside xpb_bus_flush, before this: upto_seq is there. */
static int loc_seen_commit(xpb_daemon *d, const xpb_store_seen_item *it, size_t n,
                           uint64_t upto_seq, int64_t now_us, char *err, size_t errlen)
{
    (void)upto_seq;
    return xpb_store_seen_commit(d->store, it, n, now_us, err, errlen);
}

const struct state_ops state_local_ops = {
    .where = "the state directory", .async = 0,
    .sm_save = loc_sm_save, .sm_clear = loc_sm_clear, .sm_load = loc_sm_load,
    .outbox_put = loc_outbox_put, .outbox_done = loc_outbox_done,
    .outbox_each = loc_outbox_each, .marker_get = loc_marker_get, .seen_has = loc_seen_has,
    .seen_commit = loc_seen_commit};

/* ---- Replay -------------------------------------------------------------------------- */

#define REPLAY_MAX_EVENTS 10000u
#define REPLAY_MAX_BYTES (4u * 1024u * 1024u) /* a page stays well under a client's limit */

typedef struct page {
    xpb_buf batch; /* EventBatch wire bytes: field 1, one per event */
    uint32_t count;
} page;

static int add_event(void *ud, const xpb_journal_event *ev)
{
    page *pg = ud;
    static const uint8_t tag = 0x0a; /* EventBatch.event: field 1, length-delimited */
    if (xpb_buf_append(&pg->batch, &tag, 1) ||
        xpb_delim_write(&pg->batch, ev->record, ev->record_len))
        return 1;
    pg->count++;
    return pg->batch.len >= REPLAY_MAX_BYTES;
}

void req_replay(xpb_daemon *d, xpb_bus_request *req, const Xpb__V1__Replay *op)
{
    if (!d->store) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_NO_JOURNAL,
                            "replay: this bridge runs without a state directory (state.dir / "
                            "--state-dir), so it keeps no journal");
        return;
    }
    uint32_t max = op->has_max_events ? op->max_events : 1000;
    if (max == 0 || max > REPLAY_MAX_EVENTS) max = REPLAY_MAX_EVENTS;
    page pg = {.count = 0};
    xpb_buf_init(&pg.batch, REPLAY_MAX_BYTES + 1024u * 1024u);
    uint64_t next = 0;
    char err[768];
    int rc = xpb_store_journal_read(d->store, op->has_from_seq ? op->from_seq : 1,
                                    op->topic_prefix ? op->topic_prefix : "", max, add_event, &pg,
                                    &next, err, sizeof err);
    if (rc == XPB_EREPLAYGONE) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_REPLAY_GONE, "%s", err);
    } else if (rc) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_STORAGE, "replay: %s", err);
    } else {
        xpb_journal_stats st;
        xpb_store_journal_stats(d->store, &st);
        Xpb__V1__ReplayPage rp = XPB__V1__REPLAY_PAGE__INIT;
        rp.has_batch = 1;
        rp.batch.data = (uint8_t *)pg.batch.data;
        rp.batch.len = pg.batch.len;
        rp.has_next_seq = rp.has_last_seq = rp.has_count = 1;
        rp.next_seq = next;
        rp.last_seq = st.last_seq;
        rp.count = pg.count;
        rp.journal_id = (char *)xpb_store_journal_id(d->store);
        Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
        resp.result_case = XPB__V1__RESPONSE__RESULT_REPLAY;
        resp.replay = &rp;
        xpb_bus_reply(req, &resp);
    }
    xpb_buf_free(&pg.batch);
}
