/* Per-account state that must survive a crash (xpb_store.h): accepted sends
 * until the server acknowledges them, XEP-0198 resumption state, XEP-0313
 * archive markers and the XEP-0359 stanza-ids already seen. */
#include "store_internal.h"

#include <stdio.h>
#include <string.h>

#include "xpb_error.h"

static int step_done(xpb_store *s, sqlite3_stmt *q, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc == SQLITE_DONE) return 0;
    int code = store_fail(s, rc, what, err, errlen);
    /* A full disk may roll the whole batch back: its rows are gone, say so. */
    if (s->batch && sqlite3_get_autocommit(s->db)) {
        s->batch = 0;
        if (s->batch_cb) s->batch_cb(s->batch_ud, code, err);
    }
    return code;
}

static void bind_opt_text(sqlite3_stmt *q, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(q, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, i);
}

int xpb_store_outbox_put(xpb_store *s, const xpb_outbox_item *it, char *err, size_t errlen)
{
    sqlite3_stmt *q = store_stmt(s, ST_O_PUT);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "outbox", err, errlen);
    sqlite3_bind_text(q, 1, it->account, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)it->id);
    bind_opt_text(q, 3, it->stanza_id);
    bind_opt_text(q, 4, it->request_id);
    sqlite3_bind_blob(q, 5, it->xml, (int)it->xml_len, SQLITE_STATIC);
    int rc = step_done(s, q, "outbox", err, errlen);
    if (s->batch || s->in_round) s->batch_puts = 1; /* on disk when the batch commits */
    else if (!rc) rc = store_sync_sends(s, err, errlen); /* its own commit: now */
    return rc;
}

int xpb_store_outbox_done(xpb_store *s, const char *account, uint64_t id, char *err,
                          size_t errlen)
{
    sqlite3_stmt *q = store_stmt(s, ST_O_DONE);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "outbox", err, errlen);
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)id);
    return step_done(s, q, "outbox", err, errlen);
}

int xpb_store_outbox_each(xpb_store *s, const char *account, xpb_outbox_cb cb, void *ud,
                          char *err, size_t errlen)
{
    sqlite3_stmt *q = store_stmt(s, ST_O_EACH);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "outbox", err, errlen);
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        xpb_outbox_item it = {
            .account = account,
            .id = (uint64_t)sqlite3_column_int64(q, 0),
            .stanza_id = (const char *)sqlite3_column_text(q, 1),
            .request_id = (const char *)sqlite3_column_text(q, 2),
            .xml = sqlite3_column_blob(q, 3),
            .xml_len = (size_t)sqlite3_column_bytes(q, 3),
        };
        if (cb(ud, &it)) break;
    }
    sqlite3_reset(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_fail(s, rc, "outbox", err, errlen);
}

size_t xpb_store_outbox_count(xpb_store *s, const char *account)
{
    sqlite3_stmt *q = store_stmt(s, ST_O_COUNT);
    if (!q) return 0;
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    size_t n = sqlite3_step(q) == SQLITE_ROW ? (size_t)sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    return n;
}

int xpb_store_sm_save(xpb_store *s, const char *account, const xpb_sm_state *st, char *err,
                      size_t errlen)
{
    store_batch_end(s);
    sqlite3_stmt *q = store_stmt(s, ST_SM_SAVE);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "stream management state", err, errlen);
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, st->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, st->location, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, st->h_in);
    sqlite3_bind_int64(q, 5, st->h_out);
    sqlite3_bind_int64(q, 6, st->saved_us);
    sqlite3_bind_text(q, 7, st->jid, -1, SQLITE_STATIC);
    return step_done(s, q, "stream management state", err, errlen);
}

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

int xpb_store_sm_load(xpb_store *s, const char *account, xpb_sm_state *st, char *err,
                      size_t errlen)
{
    sqlite3_stmt *q = store_stmt(s, ST_SM_LOAD);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "stream management state", err, errlen);
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        copy_text(st->id, sizeof st->id, sqlite3_column_text(q, 0));
        copy_text(st->location, sizeof st->location, sqlite3_column_text(q, 1));
        st->h_in = (uint32_t)sqlite3_column_int64(q, 2);
        st->h_out = (uint32_t)sqlite3_column_int64(q, 3);
        st->saved_us = sqlite3_column_int64(q, 4);
        copy_text(st->jid, sizeof st->jid, sqlite3_column_text(q, 5));
    }
    sqlite3_reset(q);
    if (rc == SQLITE_ROW) return 0;
    return rc == SQLITE_DONE ? 1 : store_fail(s, rc, "stream management state", err, errlen);
}

int xpb_store_sm_clear(xpb_store *s, const char *account, char *err, size_t errlen)
{
    store_batch_end(s);
    sqlite3_stmt *q = store_stmt(s, ST_SM_CLEAR);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "stream management state", err, errlen);
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    return step_done(s, q, "stream management state", err, errlen);
}

int xpb_store_marker_get(xpb_store *s, const char *account, const char *archive, char *out,
                         size_t outlen, char *stream, size_t streamlen, char *err, size_t errlen)
{
    sqlite3_stmt *q = store_stmt(s, ST_M_GET);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "archive marker", err, errlen);
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, archive, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) copy_text(out, outlen, sqlite3_column_text(q, 0));
    if (rc == SQLITE_ROW && stream) copy_text(stream, streamlen, sqlite3_column_text(q, 1));
    sqlite3_reset(q);
    if (rc == SQLITE_ROW) return 0;
    return rc == SQLITE_DONE ? 1 : store_fail(s, rc, "archive marker", err, errlen);
}

int xpb_store_marker_set(xpb_store *s, const char *account, const char *archive,
                         const char *stanza_id, const char *stream, char *err, size_t errlen)
{
    store_batch_end(s);
    sqlite3_stmt *q = store_stmt(s, ST_M_SET);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "archive marker", err, errlen);
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, archive, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, stanza_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, stream ? stream : "", -1, SQLITE_STATIC);
    return step_done(s, q, "archive marker", err, errlen);
}

static int seen_trim(xpb_store *s, const char *account, const char *archive, char *err,
                     size_t errlen)
{
    sqlite3_stmt *q = store_stmt(s, ST_SEEN_COUNT);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "seen ids", err, errlen);
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, archive, -1, SQLITE_STATIC);
    int64_t n = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    if (n <= (int64_t)XPB_STORE_SEEN_MAX) return 0;
    q = store_stmt(s, ST_SEEN_TRIM);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "seen ids", err, errlen);
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, archive, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, n - (int64_t)XPB_STORE_SEEN_MAX);
    return step_done(s, q, "seen ids", err, errlen);
}

int xpb_store_seen(xpb_store *s, const char *account, const char *archive, const char *stanza_id,
                   int64_t now_us, char *err, size_t errlen)
{
    store_batch_end(s);
    sqlite3_stmt *q = store_stmt(s, ST_SEEN_ADD);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "seen ids", err, errlen);
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, archive, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, stanza_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, now_us);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) return store_fail(s, rc, "seen ids", err, errlen);
    if (sqlite3_changes(s->db) == 0) return 1; /* already there: a duplicate */
    /* Trim now and then, not on every id. */
    if ((uint64_t)sqlite3_last_insert_rowid(s->db) % 256u == 0)
        return seen_trim(s, account, archive, err, errlen);
    return 0;
}

int xpb_store_seen_has(xpb_store *s, const char *account, const char *archive,
                       const char *stanza_id, char *err, size_t errlen)
{
    sqlite3_stmt *q = store_stmt(s, ST_SEEN_HAS);
    if (!q) return store_fail(s, sqlite3_errcode(s->db), "seen ids", err, errlen);
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, archive, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, stanza_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc == SQLITE_ROW) return 1;
    return rc == SQLITE_DONE ? 0 : store_fail(s, rc, "seen ids", err, errlen);
}

static int seen_item(xpb_store *s, const xpb_store_seen_item *it, int64_t now_us, char *err,
                     size_t errlen)
{
    int rc = it->stanza_id ? xpb_store_seen(s, it->account, it->archive, it->stanza_id, now_us,
                                            err, errlen)
                           : 0;
    if (rc < 0) return rc;
    if (it->marker)
        return xpb_store_marker_set(s, it->account, it->archive, it->marker, it->stream, err,
                                    errlen);
    return 0;
}

int xpb_store_seen_commit(xpb_store *s, const xpb_store_seen_item *it, size_t n, int64_t now_us,
                          char *err, size_t errlen)
{
    if (n == 0) return 0;
    int rc = store_txn_begin(s);
    if (rc != SQLITE_OK) return store_fail(s, rc, "seen ids", err, errlen);
    int xrc = 0;
    for (size_t i = 0; i < n && xrc == 0; i++) xrc = seen_item(s, &it[i], now_us, err, errlen);
    if (xrc == 0) {
        rc = store_txn_commit(s);
        if (rc == SQLITE_OK) return 0;
        xrc = store_fail(s, rc, "seen ids", err, errlen);
    }
    store_txn_rollback(s);
    return xrc;
}
