/* Reading the archive: full-text search (FTS5) with filters, and walking
 * every row in the order stored (export, stats). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "db_internal.h"

#define XA_QUERY_MAX 4096 /* bytes of a search query, quoted */
#define XA_SQL_MAX 2048

static const char row_cols[] =
    "m.id, m.account, m.conversation, m.sender, NULL, m.edited_body, m.stanza_id, "
    "m.stanza_id_by, m.origin_id, m.direction, m.kind, m.time_us, m.target, m.retracted_us, "
    "m.rec, m.groupchat, m.msg_id, m.strip";

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* The row; false when its record cannot be inflated (a damaged file). */
static bool read_row(xa_db *db, sqlite3_stmt *st, xa_row *r)
{
    r->id = sqlite3_column_int64(st, 0);
    r->account = col_text(st, 1);
    r->conversation = col_text(st, 2);
    r->sender = col_text(st, 3);
    r->edited_body = col_text(st, 5);
    r->stanza_id = col_text(st, 6);
    r->stanza_id_by = col_text(st, 7);
    r->origin_id = col_text(st, 8);
    r->direction = (xa_dir)sqlite3_column_int(st, 9);
    r->kind = (xa_kind)sqlite3_column_int(st, 10);
    r->time_us = sqlite3_column_int64(st, 11);
    r->target = sqlite3_column_int64(st, 12);
    r->retracted_us = sqlite3_column_int64(st, 13);
    r->groupchat = sqlite3_column_int(st, 15) != 0;
    /* The body is the record's (no column: docs/archive.md, "Schema"). */
    if (xa_z_record(db, sqlite3_column_int64(st, 14), &r->record, &r->record_len) ||
        xa_z_body(db, r->record, r->record_len, &r->body))
        return false;
    return xa_z_restore(db, sqlite3_column_int(st, 17), col_text(st, 16), r->origin_id, &r->record,
                        &r->record_len) == 0;
}

/* The filter's WHERE terms, numbered from ?2 (?1 is the search query). */
static void where(const xa_filter *f, char *sql, size_t len)
{
    size_t n = strlen(sql);
    if (f->with)
        n += (size_t)snprintf(sql + n, len - n,
                              " AND m.conv IN (SELECT id FROM conv WHERE jid = ?2)");
    if (f->account)
        n += (size_t)snprintf(sql + n, len - n,
                              " AND m.conv IN (SELECT id FROM conv WHERE account = ?3)");
    if (f->since_us) n += (size_t)snprintf(sql + n, len - n, " AND m.time_us >= ?4");
    if (f->until_us) snprintf(sql + n, len - n, " AND m.time_us < ?5");
}

static void bind_filter(sqlite3_stmt *st, const xa_filter *f)
{
    if (f->with) sqlite3_bind_text(st, 2, f->with, -1, SQLITE_STATIC);
    if (f->account) sqlite3_bind_text(st, 3, f->account, -1, SQLITE_STATIC);
    if (f->since_us) sqlite3_bind_int64(st, 4, f->since_us);
    if (f->until_us) sqlite3_bind_int64(st, 5, f->until_us);
    sqlite3_bind_int64(st, 6, f->limit > 0 ? f->limit : -1);
}

static int run(xa_db *db, sqlite3_stmt *st, xa_row_fn fn, void *ud, char *err, size_t errlen)
{
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        xa_row r;
        if (!read_row(db, st, &r)) {
            rc = SQLITE_CORRUPT;
            break;
        }
        stop = fn(ud, &r);
    }
    if (!stop && rc != SQLITE_DONE) {
        rc = xa_db_error(db, rc, "reading", err, errlen);
        sqlite3_finalize(st);
        return rc;
    }
    sqlite3_finalize(st);
    return stop < 0 ? stop : 0;
}

/* Each whitespace-separated word as an FTS5 string ("..." with "" inside),
 * so that any text can be searched and none is taken as FTS5 syntax. */
static int quote_words(const char *q, char *out, size_t len)
{
    size_t n = 0;
    for (const char *p = q; *p;) {
        p += strspn(p, " \t\n");
        size_t w = strcspn(p, " \t\n");
        if (!w) break;
        if (n + 2 * w + 4 >= len) return -1;
        if (n) out[n++] = ' ';
        out[n++] = '"';
        for (size_t i = 0; i < w; i++) {
            if (p[i] == '"') out[n++] = '"';
            out[n++] = p[i];
        }
        out[n++] = '"';
        p += w;
    }
    out[n] = '\0';
    return n ? 0 : -1;
}

/* ---- newest first, fast -------------------------------------------------
 * Sorting every match by time costs O(matches) (a common word in a big
 * archive: tens of thousands of rows). FTS5 walks its matches by rowid
 * backwards for free, and rows are mostly archived in time order, so:
 * C = the 2 * limit + 16 matches with the highest ids; T = the limit-th
 * newest time in C, R = the lowest id in C. The newest `limit` matches all
 * have a time at or after T (C alone has `limit` such); one missing from C has
 * an id below R: those few are found from the time index. C plus them,
 * sorted by time, cut at `limit`, is exactly the newest `limit` matches. */
typedef struct hit {
    int64_t id, time_us;
} hit;

typedef struct hits {
    hit *v;
    size_t n, cap;
} hits;

static int cmp_hit(const void *a, const void *b)
{
    const hit *x = a, *y = b;
    if (x->time_us != y->time_us) return x->time_us < y->time_us ? 1 : -1;
    return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

static int collect(xa_db *db, const char *sql, const char *q, const xa_filter *f, int64_t t,
                   int64_t r, hits *h, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return xa_db_error(db, rc, "searching", err, errlen);
    sqlite3_bind_text(st, 1, q, -1, SQLITE_STATIC);
    bind_filter(st, f);
    sqlite3_bind_int64(st, 7, t);
    sqlite3_bind_int64(st, 8, r);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (h->n == h->cap) {
            size_t cap = h->cap ? 2 * h->cap : 64;
            hit *v = realloc(h->v, cap * sizeof *v);
            if (!v) {
                sqlite3_finalize(st);
                return XA_ENOMEM;
            }
            h->v = v;
            h->cap = cap;
        }
        h->v[h->n++] = (hit){sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1)};
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : xa_db_error(db, rc, "searching", err, errlen);
}

static int emit(xa_db *db, const hits *h, size_t n, xa_row_fn fn, void *ud, char *err,
                size_t errlen)
{
    char sql[XA_SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT %s FROM message m WHERE m.id = ?1", row_cols);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return xa_db_error(db, rc, "searching", err, errlen);
    int stop = 0;
    for (size_t i = 0; i < n && !stop; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, h->v[i].id);
        if (sqlite3_step(st) != SQLITE_ROW) continue;
        xa_row r;
        if (!read_row(db, st, &r)) {
            sqlite3_finalize(st);
            return xa_db_error(db, SQLITE_CORRUPT, "inflating a record", err, errlen);
        }
        stop = fn(ud, &r);
    }
    sqlite3_finalize(st);
    return stop < 0 ? stop : 0;
}

/* How many rows a time at or after t and an id below r have, up to
 * XA_LATE_MAX: the rows the second step of search_recent looks at. */
#define XA_LATE_MAX 4096
static int count_late(xa_db *db, int64_t t, int64_t r, int64_t *n, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h,
                                "SELECT count(*) FROM (SELECT 1 FROM msg INDEXED BY "
                                "message_time WHERE time_us >= ?1 AND id < ?2 LIMIT 4096)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, t);
        sqlite3_bind_int64(st, 2, r);
        rc = sqlite3_step(st);
        *n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : xa_db_error(db, rc, "searching", err, errlen);
}

static int search_recent(xa_db *db, const char *q, const xa_filter *f, xa_row_fn fn, void *ud,
                         char *err, size_t errlen)
{
    char sql[XA_SQL_MAX];
    hits h = {0};
    snprintf(sql, sizeof sql,
             "SELECT m.id, m.time_us FROM fts JOIN message m ON m.id = fts.rowid WHERE fts "
             "MATCH ?1 AND m.retracted_us IS NULL");
    where(f, sql, sizeof sql);
    size_t n = strlen(sql);
    snprintf(sql + n, sizeof sql - n, " ORDER BY fts.rowid DESC LIMIT ?6");
    /* More candidates than asked: then T is the limit-th newest time among
     * them, which a few old stamps (offline messages, history) do not drag
     * back. */
    xa_filter wide = *f;
    wide.limit = 2 * f->limit + 16;
    int rc = collect(db, sql, q, &wide, 0, 0, &h, err, errlen);
    if (!rc && h.n == (size_t)wide.limit) {
        int64_t r = INT64_MAX;
        for (size_t i = 0; i < h.n; i++)
            if (h.v[i].id < r) r = h.v[i].id;
        qsort(h.v, h.n, sizeof *h.v, cmp_hit);
        int64_t t = h.v[f->limit - 1].time_us;
        int64_t late = 0;
        rc = count_late(db, t, r, &late, err, errlen);
        xa_filter nolimit = *f;
        nolimit.limit = 0;
        if (!rc && late < XA_LATE_MAX) {
            /* CROSS JOIN: walk the time index first, then ask FTS5 about each row. */
            snprintf(sql, sizeof sql,
                     "SELECT m.id, m.time_us FROM msg m INDEXED BY message_time CROSS JOIN "
                     "fts WHERE fts.rowid = m.id AND fts MATCH ?1 AND m.time_us >= ?7 AND "
                     "m.id < ?8 AND m.retracted_us IS NULL AND m.kind = 0");
            where(f, sql, sizeof sql);
            rc = collect(db, sql, q, &nolimit, t, r, &h, err, errlen);
        } else if (!rc) {
            /* Old stamps among the newest (offline, history, archive catch-up): walk
             * the time index newest first against the set of matching ids. */
            h.n = 0;
            snprintf(sql, sizeof sql,
                     "SELECT m.id, m.time_us FROM msg m INDEXED BY message_time WHERE m.id IN "
                     "(SELECT rowid FROM fts WHERE fts MATCH ?1) AND m.retracted_us IS NULL AND "
                     "?7 >= 0 AND ?8 >= 0");
            where(f, sql, sizeof sql);
            size_t len = strlen(sql);
            snprintf(sql + len, sizeof sql - len, " ORDER BY m.time_us DESC, m.id DESC LIMIT ?6");
            rc = collect(db, sql, q, f, 0, 0, &h, err, errlen);
        }
    }
    if (!rc) {
        if (h.n) qsort(h.v, h.n, sizeof *h.v, cmp_hit);
        rc = emit(db, &h, h.n < (size_t)f->limit ? h.n : (size_t)f->limit, fn, ud, err, errlen);
    }
    free(h.v);
    return rc;
}

int xa_search(xa_db *db, const char *query, const xa_filter *f, xa_row_fn fn, void *ud, char *err,
              size_t errlen)
{
    char q[XA_QUERY_MAX], sql[XA_SQL_MAX];
    if (quote_words(query, q, sizeof q)) {
        if (err && errlen)
            snprintf(err, errlen, "the query must hold a word and stay under %d bytes",
                     XA_QUERY_MAX / 2);
        return XA_EINVAL;
    }
    if (!f->relevance && f->limit > 0) return search_recent(db, q, f, fn, ud, err, errlen);
    snprintf(sql, sizeof sql,
             "SELECT %s FROM fts JOIN message m ON m.id = fts.rowid WHERE fts MATCH ?1 AND "
             "m.retracted_us IS NULL",
             row_cols);
    where(f, sql, sizeof sql);
    size_t n = strlen(sql);
    snprintf(sql + n, sizeof sql - n, " ORDER BY %s LIMIT ?6",
             f->relevance ? "fts.rank, m.time_us DESC" : "m.time_us DESC, m.id DESC");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return xa_db_error(db, rc, "searching", err, errlen);
    sqlite3_bind_text(st, 1, q, -1, SQLITE_STATIC);
    bind_filter(st, f);
    return run(db, st, fn, ud, err, errlen);
}

int xa_each(xa_db *db, const xa_filter *f, xa_row_fn fn, void *ud, char *err, size_t errlen)
{
    char sql[XA_SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT %s FROM message m WHERE (?1 IS NULL OR 1)%s", row_cols,
             f->changes ? "" : " AND m.kind = 0");
    where(f, sql, sizeof sql);
    size_t n = strlen(sql);
    snprintf(sql + n, sizeof sql - n, " ORDER BY m.id LIMIT ?6");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return xa_db_error(db, rc, "reading", err, errlen);
    bind_filter(st, f);
    return run(db, st, fn, ud, err, errlen);
}
