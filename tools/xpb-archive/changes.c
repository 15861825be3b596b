/* Corrections (XEP-0308) and retractions (XEP-0424) are not messages of
 * their own: each is kept (its record, for export) and linked to the message
 * it names, whose current text (edited_body) or state (retracted_us) it
 * changes; the search index follows. A change that arrives before its
 * message (archives can deliver out of order) waits with target_ref set and
 * is applied when the message comes. XEP-0308 §5: only the original sender
 * may correct; a change from someone else is kept but not applied. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "db_internal.h"
#include "keys.h"

static int step_done(xa_db *db, sqlite3_stmt *st, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : xa_db_error(db, rc, what, err, errlen);
}

/* The message's text as the index holds it (its latest correction, else its
 * body), whether it is retracted, and when it was last corrected. */
typedef struct current {
    char text[65536 + 1];
    bool retracted;
    int64_t edited_us;
} current;

static int get_current(xa_db *db, int64_t id, current *cur, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_FTS_CURRENT,
                        "SELECT coalesce(edited_body, body), retracted_us IS NOT NULL, "
                        "coalesce(edited_us, 0) FROM message WHERE id = ?1",
                        &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(cur->text, sizeof cur->text, "%s", t ? (const char *)t : "");
        cur->retracted = sqlite3_column_int(st, 1) != 0;
        cur->edited_us = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    return r == SQLITE_ROW ? 0
                           : xa_db_error(db, r == SQLITE_DONE ? SQLITE_CORRUPT : r,
                                         "reading a changed message", err, errlen);
}

/* The index is contentless FTS5 (the text is in the record): an entry is
 * deleted with the text it was made from. */
static int fts(xa_db *db, xa_stmt_id which, int64_t id, const char *text, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, which,
                        which == XA_ST_FTS_DELETE
                            ? "INSERT INTO fts(fts, rowid, body) VALUES ('delete', ?1, ?2)"
                            : "INSERT INTO fts(rowid, body) VALUES (?1, ?2)",
                        &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    return step_done(db, st, "updating the search index", err, errlen);
}

static int edit(xa_db *db, int64_t target, const char *body, int64_t time_us, char *err,
                size_t errlen)
{
    static current cur;
    int rc = get_current(db, target, &cur, err, errlen);
    if (rc || cur.edited_us > time_us) return rc; /* the latest correction wins */
    sqlite3_stmt *st;
    rc = xa_db_stmt(db, XA_ST_EDIT, "UPDATE msg SET edited_body = ?2, edited_us = ?3 WHERE id = ?1",
                    &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, target);
    sqlite3_bind_text(st, 2, body ? body : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, time_us);
    if ((rc = step_done(db, st, "applying a correction", err, errlen)) || cur.retracted) return rc;
    rc = fts(db, XA_ST_FTS_DELETE, target, cur.text, err, errlen);
    return rc ? rc : fts(db, XA_ST_FTS_UPDATE, target, body ? body : "", err, errlen);
}

static int retract(xa_db *db, int64_t target, int64_t time_us, char *err, size_t errlen)
{
    static current cur;
    int rc = get_current(db, target, &cur, err, errlen);
    if (rc || cur.retracted) return rc;
    sqlite3_stmt *st;
    rc = xa_db_stmt(db, XA_ST_RETRACT, "UPDATE msg SET retracted_us = ?2 WHERE id = ?1", &st, err,
                    errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, target);
    sqlite3_bind_int64(st, 2, time_us);
    if ((rc = step_done(db, st, "applying a retraction", err, errlen))) return rc;
    return fts(db, XA_ST_FTS_DELETE, target, cur.text, err, errlen);
}

/* Applies change `change` (kind, body, time) to message `target`. */
static int apply(xa_db *db, int64_t change, int64_t target, xa_kind kind, const char *body,
                 int64_t time_us, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc =
        xa_db_stmt(db, XA_ST_SET_TARGET,
                   "UPDATE msg SET target = ?2, target_ref = NULL WHERE id = ?1", &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, change);
    sqlite3_bind_int64(st, 2, target);
    if ((rc = step_done(db, st, "linking a change", err, errlen))) return rc;
    return kind == XA_KIND_CORRECTION ? edit(db, target, body, time_us, err, errlen)
                                      : retract(db, target, time_us, err, errlen);
}

/* XEP-0308 §5 / XEP-0424 §6: the change's sender must be the message's.
 * In 1:1 chats that is the direction; in rooms the nick (when known). */
static bool same_author(const xa_msg *m, int direction, const char *sender)
{
    if (!m->groupchat) return (int)m->direction == direction;
    if (m->own || direction == XA_DIR_OUT) return true; /* our own: the nick may be unknown */
    return !sender || !m->sender || strcmp(sender, m->sender) == 0;
}

/* A message of m's conversation that id names: XEP-0308 names the
 * original's id attribute; XEP-0424 1.x the origin-id in chats and the
 * room's stanza-id in rooms. Looked up by key (keys.c). */
typedef struct target {
    int64_t id;
    int direction;
    char sender[1024];
} target;

static int check_target(xa_db *db, const xa_msg *m, int64_t id, target *t, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_TARGET_GET,
                        "SELECT direction, sender FROM message WHERE id = ?1 AND kind = 0 AND "
                        "account = ?2 AND conversation = ?3",
                        &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, m->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, m->conversation, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        t->id = id;
        t->direction = sqlite3_column_int(st, 0);
        const unsigned char *v = sqlite3_column_text(st, 1);
        snprintf(t->sender, sizeof t->sender, "%s", v ? (const char *)v : "");
    }
    sqlite3_reset(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? 0
                                               : xa_db_error(db, r, "reading a row", err, errlen);
}

static int find_target(xa_db *db, const xa_msg *m, target *t, char *err, size_t errlen)
{
    const struct {
        char type;
        const char *a;
    } ways[] = {
        {'i', m->conversation}, {'o', m->conversation}, {'s', m->conversation}, {'s', m->account}};
    t->id = 0;
    for (size_t i = 0; i < sizeof ways / sizeof ways[0] && !t->id; i++) {
        xa_key k;
        int64_t id = 0;
        int rc = xa_key_make(db, &k, ways[i].type, m->account, ways[i].a, m->target);
        if (!rc) rc = xa_key_find(db, &k, &id, err, errlen);
        if (!rc && id) rc = check_target(db, m, id, t, err, errlen);
        if (rc) return rc;
    }
    return 0;
}

int xa_link_change(xa_db *db, int64_t id, const xa_msg *m, xa_counts *c, char *err, size_t errlen)
{
    target t;
    int rc = find_target(db, m, &t, err, errlen);
    if (rc || !t.id) return rc; /* not there yet: target_ref waits for it */
    if (!same_author(m, t.direction, t.sender[0] ? t.sender : NULL)) return 0;
    c->linked++;
    return apply(db, id, t.id, m->kind, m->body, m->time_us, err, errlen);
}

typedef struct pending {
    int64_t id, time_us;
    int kind;
    char *body;
} pending;

#define XA_PENDING_MAX 64 /* changes applied to one arriving message at once */

int xa_link_pending(xa_db *db, int64_t id, const xa_msg *m, xa_counts *c, char *err, size_t errlen)
{
    if (db->n_pending == 0) return 0; /* no change waits: nothing to look up */
    sqlite3_stmt *st;
    int rc =
        xa_db_stmt(db, XA_ST_PENDING_FIND,
                   "SELECT id, kind, time_us, xpb_body(rec) FROM msg INDEXED BY message_pending "
                   "WHERE conv = (SELECT id FROM conv WHERE account = ?1 AND jid = ?2) AND "
                   "target_ref IS NOT NULL AND target_ref IN (?3, ?4, ?5) ORDER BY time_us",
                   &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, m->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->conversation, -1, SQLITE_STATIC);
    if (m->msg_id) sqlite3_bind_text(st, 3, m->msg_id, -1, SQLITE_STATIC);
    if (m->origin_id) sqlite3_bind_text(st, 4, m->origin_id, -1, SQLITE_STATIC);
    if (m->stanza_id) sqlite3_bind_text(st, 5, m->stanza_id, -1, SQLITE_STATIC);
    static pending p[XA_PENDING_MAX];
    size_t n = 0;
    int r;
    while (n < XA_PENDING_MAX && (r = sqlite3_step(st)) == SQLITE_ROW) {
        p[n].id = sqlite3_column_int64(st, 0);
        p[n].kind = sqlite3_column_int(st, 1);
        p[n].time_us = sqlite3_column_int64(st, 2);
        const unsigned char *b = sqlite3_column_text(st, 3);
        if (!(p[n].body = strdup(b ? (const char *)b : ""))) break;
        n++;
    }
    sqlite3_reset(st);
    for (size_t i = 0; i < n; i++) {
        c->linked++;
        if (!rc)
            rc = apply(db, p[i].id, id, (xa_kind)p[i].kind, p[i].body, p[i].time_us, err, errlen);
        free(p[i].body);
    }
    return rc;
}

int xa_prune(xa_db *db, int64_t cutoff_us, uint64_t *n, char *err, size_t errlen)
{
    static const char *const steps[] = {
        "CREATE TEMP TABLE IF NOT EXISTS doomed(id INTEGER PRIMARY KEY)",
        "DELETE FROM temp.doomed",
        "INSERT INTO temp.doomed SELECT id FROM msg WHERE kind = 0 AND time_us < ?1",
        "INSERT OR IGNORE INTO temp.doomed SELECT id FROM msg WHERE target IN "
        "(SELECT id FROM temp.doomed) OR (target IS NULL AND kind <> 0 AND time_us < ?1)",
        "INSERT INTO fts(fts, rowid, body) SELECT 'delete', id, coalesce(edited_body, "
        "xpb_body(rec)) "
        "FROM msg WHERE id IN (SELECT id FROM temp.doomed) AND kind = 0 AND "
        "retracted_us IS NULL",
        "DELETE FROM msgkey WHERE message IN (SELECT id FROM temp.doomed)",
        "DELETE FROM msg WHERE id IN (SELECT id FROM temp.doomed)",
        "DELETE FROM chunk WHERE id NOT IN (SELECT DISTINCT rec >> 15 FROM msg)",
    };
    *n = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db->h, steps[i], -1, &st, NULL);
        if (rc == SQLITE_OK && sqlite3_bind_parameter_count(st) > 0)
            sqlite3_bind_int64(st, 1, cutoff_us);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        if (i == 6) *n = (uint64_t)sqlite3_changes(db->h);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE && rc != SQLITE_OK)
            return xa_db_error(db, rc, "pruning", err, errlen);
    }
    return 0;
}
