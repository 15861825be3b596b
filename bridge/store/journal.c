/* The event journal (xpb_store.h): every published event is appended before
 * it is published, a flush's events in one transaction (group commit); replay
 * reads them back by seq; retention drops the oldest by size and age. The seq
 * goes on across restarts (the highest seq kept) and across a journal
 * trimmed to nothing (meta 'last_seq', written by the trim before it deletes:
 * not at every append, whose commit then writes one page less). */
#include "store_internal.h"

#include <stdio.h>
#include <string.h>

#include "xpb_error.h"

static uint64_t meta_u64(xpb_store *s, const char *key)
{
    sqlite3_stmt *q;
    uint64_t v = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?1", -1, &q, NULL)) return 0;
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW) v = (uint64_t)sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

int store_journal_load(xpb_store *s, char *err, size_t errlen)
{
    sqlite3_stmt *q;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT count(*), coalesce(sum(length(record) + length(topic)), 0),"
                                " coalesce(min(seq), 0), coalesce(max(seq), 0) FROM journal",
                                -1, &q, NULL);
    if (rc) return store_fail(s, rc, "journal", err, errlen);
    if ((rc = sqlite3_step(q)) != SQLITE_ROW) {
        sqlite3_finalize(q);
        return store_fail(s, rc, "journal", err, errlen);
    }
    s->js.events = (uint64_t)sqlite3_column_int64(q, 0);
    s->js.bytes = (uint64_t)sqlite3_column_int64(q, 1);
    s->js.first_seq = (uint64_t)sqlite3_column_int64(q, 2);
    uint64_t max_seq = (uint64_t)sqlite3_column_int64(q, 3);
    sqlite3_finalize(q);
    uint64_t last = meta_u64(s, "last_seq");
    s->js.last_seq = last > max_seq ? last : max_seq;
    return 0;
}

uint64_t xpb_store_next_seq(const xpb_store *s)
{
    xpb_journal_stats js;
    xpb_store_journal_stats(s, &js);
    return js.last_seq + 1;
}

static int append_one(xpb_store *s, const xpb_journal_event *ev)
{
    sqlite3_stmt *q = store_stmt(s, ST_J_APPEND);
    if (!q) return sqlite3_errcode(s->db);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)ev->seq);
    sqlite3_bind_int64(q, 2, ev->time_us);
    sqlite3_bind_text(q, 3, ev->topic, -1, SQLITE_STATIC);
    static const uint8_t empty[1];
    sqlite3_bind_blob(q, 4, ev->record_len ? ev->record : empty, (int)ev->record_len, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int set_last(xpb_store *s, uint64_t last)
{
    sqlite3_stmt *q = store_stmt(s, ST_J_SET_LAST);
    if (!q) return sqlite3_errcode(s->db);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)last);
    int rc = sqlite3_step(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int xpb_store_journal_append(xpb_store *s, const xpb_journal_event *ev, size_t n, char *err,
                             size_t errlen)
{
    if (n == 0) return 0;
    /* Seqs only grow; one may be missing (an event the bus could not pack). */
    for (size_t i = 0; i < n; i++) {
        uint64_t after = i ? ev[i - 1].seq : s->js.last_seq;
        if (ev[i].seq <= after) {
            snprintf(err, errlen, "journal: event seq %llu out of order (must be above %llu)",
                     (unsigned long long)ev[i].seq, (unsigned long long)after);
            return XPB_EINVAL;
        }
    }
    store_batch_end(s);
    int rc = store_txn_begin(s);
    uint64_t bytes = 0;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        rc = append_one(s, &ev[i]);
        bytes += ev[i].record_len + strlen(ev[i].topic);
    }
    if (rc == SQLITE_OK) rc = store_txn_commit(s);
    if (rc != SQLITE_OK) {
        int code = store_fail(s, rc, "journal append", err, errlen);
        store_txn_rollback(s);
        s->js.append_errors++;
        return code;
    }
    if (!s->js.first_seq) s->js.first_seq = ev[0].seq;
    s->js.last_seq = ev[n - 1].seq;
    s->js.events += n;
    s->js.bytes += bytes;
    s->js.appended += n;
    return 0;
}

static int replay_gone(const xpb_store *s, const xpb_journal_stats *js, uint64_t from_seq,
                       char *err, size_t errlen)
{
    if (js->first_seq)
        snprintf(err, errlen,
                 "replay from seq %llu: the journal keeps seq %llu to %llu (retention: "
                 "journal_max_bytes %llu, journal_max_age_s %llu)",
                 (unsigned long long)from_seq, (unsigned long long)js->first_seq,
                 (unsigned long long)js->last_seq, (unsigned long long)s->max_bytes,
                 (unsigned long long)s->max_age_s);
    else
        snprintf(err, errlen, "replay from seq %llu: the journal is empty; the next seq is %llu",
                 (unsigned long long)from_seq, (unsigned long long)(js->last_seq + 1));
    return XPB_EREPLAYGONE;
}

int xpb_store_journal_read(xpb_store *s, uint64_t from_seq, const char *topic_prefix,
                           size_t max_events, xpb_journal_cb cb, void *ud, uint64_t *next,
                           char *err, size_t errlen)
{
    if (from_seq == 0) from_seq = 1;
    *next = from_seq;
    xpb_journal_stats js; /* the store thread's figures when it writes the journal */
    xpb_store_journal_stats(s, &js);
    if (from_seq <= js.last_seq && (!js.first_seq || from_seq < js.first_seq))
        return replay_gone(s, &js, from_seq, err, errlen);
    int prefixed = topic_prefix && topic_prefix[0];
    sqlite3_stmt *q = store_stmt(s, prefixed ? ST_J_READ_PREFIX : ST_J_READ);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "journal read", err, errlen);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)from_seq);
    sqlite3_bind_int64(q, 2, max_events ? (sqlite3_int64)max_events : -1);
    if (prefixed) sqlite3_bind_text(q, 3, topic_prefix, -1, SQLITE_STATIC);
    s->js.replays++;
    int rc, stopped = 0;
    size_t rows = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        xpb_journal_event ev = {
            .seq = (uint64_t)sqlite3_column_int64(q, 0),
            .time_us = sqlite3_column_int64(q, 1),
            .topic = (const char *)sqlite3_column_text(q, 2),
            .record = sqlite3_column_blob(q, 3),
            .record_len = (size_t)sqlite3_column_bytes(q, 3),
        };
        *next = ev.seq + 1;
        rows++;
        s->js.replayed_events++;
        if (cb(ud, &ev)) {
            stopped = 1;
            break;
        }
    }
    sqlite3_reset(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_fail(s, rc, "journal read", err, errlen);
    /* Fewer rows than asked and not stopped: every kept event up to the end
     * was examined (those of other topics included), so go on after it. */
    if (!stopped && (!max_events || rows < max_events) && *next <= js.last_seq)
        *next = js.last_seq + 1;
    return 0;
}

/* The highest seq to drop so that the journal fits max_bytes. */
static int size_cutoff(xpb_store *s, uint64_t *cut)
{
    *cut = 0;
    if (s->js.bytes <= s->max_bytes) return SQLITE_OK;
    uint64_t excess = s->js.bytes - s->max_bytes, freed = 0;
    sqlite3_stmt *q = store_stmt(s, ST_J_SIZES);
    if (!q) return sqlite3_errcode(s->db);
    int rc;
    while (freed < excess && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        *cut = (uint64_t)sqlite3_column_int64(q, 0);
        freed += (uint64_t)sqlite3_column_int64(q, 1);
    }
    sqlite3_reset(q);
    return SQLITE_OK;
}

static int age_cutoff(xpb_store *s, int64_t now_us, uint64_t *cut)
{
    *cut = 0;
    sqlite3_stmt *q = store_stmt(s, ST_J_OLDEST_AFTER_AGE);
    if (!q) return sqlite3_errcode(s->db);
    sqlite3_bind_int64(q, 1, now_us - (int64_t)s->max_age_s * 1000000);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) *cut = (uint64_t)sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int xpb_store_journal_trim(xpb_store *s, int64_t now_us, char *err, size_t errlen)
{
    uint64_t by_size, by_age;
    store_batch_end(s);
    int rc = size_cutoff(s, &by_size);
    if (rc == SQLITE_OK) rc = age_cutoff(s, now_us, &by_age);
    if (rc != SQLITE_OK) return store_fail(s, rc, "journal trim", err, errlen);
    uint64_t cut = by_size > by_age ? by_size : by_age;
    if (!cut) return 0;
    rc = set_last(s, s->js.last_seq); /* the seq goes on when every row goes */
    if (rc != SQLITE_OK) return store_fail(s, rc, "journal trim", err, errlen);
    sqlite3_stmt *q = store_stmt(s, ST_J_DELETE_TO);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "journal trim", err, errlen);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)cut);
    rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) return store_fail(s, rc, "journal trim", err, errlen);
    uint64_t before = s->js.events;
    uint64_t last = s->js.last_seq;
    rc = store_journal_load(s, err, errlen);
    s->js.last_seq = last > s->js.last_seq ? last : s->js.last_seq;
    s->js.trimmed += before - s->js.events;
    return rc;
}

void xpb_store_journal_stats(const xpb_store *s, xpb_journal_stats *out)
{
    if (!s->t) {
        *out = s->js;
        return;
    }
    store_thread_js(s, out); /* what the thread wrote; replays are served here */
    out->replays = s->js.replays;
    out->replayed_events = s->js.replayed_events;
}
