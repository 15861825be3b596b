/* Corrections (XEP-0308) and retractions (XEP-0424) are not messages of
 * their own: each is kept (its record, for export) and linked to the message
 * it names, whose current text (edited_body) or state (retracted_us) it
 * changes; the search index follows. A change that arrives before its
 * message (archives can deliver out of order) waits with target_ref set and
 * is applied when the message comes. XEP-0308 §5: only the original sender
 * may correct; a change from someone else is kept but not applied. */
#include <stdio.h>
#include <string.h>

#include "archive.h"
#include "db_internal.h"

static int step_done(xa_db *db, sqlite3_stmt *st, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : xa_db_error(db, rc, what, err, errlen);
}

/* Applies change `change` (kind, body, time) to message `target`. */
static int apply(xa_db *db, int64_t change, int64_t target, xa_kind kind, const char *body,
                 int64_t time_us, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_SET_TARGET,
                        "UPDATE message SET target = ?2, target_ref = NULL WHERE id = ?1", &st, err,
                        errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, change);
    sqlite3_bind_int64(st, 2, target);
    if ((rc = step_done(db, st, "linking a change", err, errlen))) return rc;
    if (kind == XA_KIND_CORRECTION) {
        /* The latest correction wins, whatever order they arrive in. */
        rc = xa_db_stmt(db, XA_ST_EDIT,
                        "UPDATE message SET edited_body = ?2, edited_us = ?3 WHERE id = ?1 AND "
                        "(edited_us IS NULL OR edited_us <= ?3)",
                        &st, err, errlen);
        if (rc) return rc;
        sqlite3_bind_int64(st, 1, target);
        sqlite3_bind_text(st, 2, body ? body : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, time_us);
        if ((rc = step_done(db, st, "applying a correction", err, errlen))) return rc;
        if (sqlite3_changes(db->h) == 0) return 0;
        rc = xa_db_stmt(db, XA_ST_FTS_UPDATE, "UPDATE fts SET text = ?2 WHERE rowid = ?1", &st,
                        err, errlen);
        if (rc) return rc;
        sqlite3_bind_int64(st, 1, target);
        sqlite3_bind_text(st, 2, body ? body : "", -1, SQLITE_TRANSIENT);
        return step_done(db, st, "re-indexing a correction", err, errlen);
    }
    rc = xa_db_stmt(db, XA_ST_RETRACT,
                    "UPDATE message SET retracted_us = coalesce(retracted_us, ?2) WHERE id = ?1",
                    &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, target);
    sqlite3_bind_int64(st, 2, time_us);
    if ((rc = step_done(db, st, "applying a retraction", err, errlen))) return rc;
    rc = xa_db_stmt(db, XA_ST_FTS_DELETE, "DELETE FROM fts WHERE rowid = ?1", &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, target);
    return step_done(db, st, "removing a retracted message from the index", err, errlen);
}

/* XEP-0308 §5 / XEP-0424 §6: the change's sender must be the message's.
 * In 1:1 chats that is the direction; in rooms the nick (when known). */
static bool same_author(const xa_msg *m, int direction, const char *sender)
{
    if (!m->groupchat) return (int)m->direction == direction;
    if (m->own || direction == XA_DIR_OUT) return true; /* our own: the nick may be unknown */
    return !sender || !m->sender || strcmp(sender, m->sender) == 0;
}

int xa_link_change(xa_db *db, int64_t id, const xa_msg *m, xa_counts *c, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    /* XEP-0308 names the original's id; XEP-0424 1.x the origin-id (1:1) or
     * the room's stanza-id. */
    int rc = xa_db_stmt(db, XA_ST_TARGET_FIND,
                        "SELECT id, direction, sender FROM message WHERE account = ?1 AND "
                        "conversation = ?2 AND kind = 0 AND (msg_id = ?3 OR origin_id = ?3 OR "
                        "stanza_id = ?3) ORDER BY id LIMIT 1",
                        &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, m->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->conversation, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, m->target, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r != SQLITE_ROW) {
        sqlite3_reset(st);
        return r == SQLITE_DONE ? 0 : xa_db_error(db, r, "finding a change's message", err, errlen);
    }
    int64_t target = sqlite3_column_int64(st, 0);
    int direction = sqlite3_column_int(st, 1);
    char sender[1024] = "";
    const unsigned char *v = sqlite3_column_text(st, 2);
    if (v) snprintf(sender, sizeof sender, "%s", v);
    sqlite3_reset(st);
    if (!same_author(m, direction, sender[0] ? sender : NULL)) return 0;
    c->linked++;
    return apply(db, id, target, m->kind, m->body, m->time_us, err, errlen);
}

typedef struct pending {
    int64_t id, time_us;
    int kind;
    char body[4096];
} pending;

#define XA_PENDING_MAX 64 /* changes applied to one arriving message at once */

int xa_link_pending(xa_db *db, int64_t id, const xa_msg *m, xa_counts *c, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_PENDING_FIND,
                        "SELECT id, kind, time_us, body FROM message WHERE account = ?1 AND "
                        "conversation = ?2 AND target_ref IN (?3, ?4, ?5) ORDER BY time_us",
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
        snprintf(p[n].body, sizeof p[n].body, "%s", b ? (const char *)b : "");
        n++;
    }
    sqlite3_reset(st);
    for (size_t i = 0; i < n && !rc; i++) {
        c->linked++;
        rc = apply(db, p[i].id, id, (xa_kind)p[i].kind, p[i].body, p[i].time_us, err, errlen);
    }
    return rc;
}

int xa_prune(xa_db *db, int64_t cutoff_us, uint64_t *n, char *err, size_t errlen)
{
    static const char *const steps[] = {
        "CREATE TEMP TABLE IF NOT EXISTS doomed(id INTEGER PRIMARY KEY)",
        "DELETE FROM temp.doomed",
        "INSERT INTO temp.doomed SELECT id FROM message WHERE kind = 0 AND time_us < ?1",
        "INSERT OR IGNORE INTO temp.doomed SELECT id FROM message WHERE target IN "
        "(SELECT id FROM temp.doomed) OR (target IS NULL AND kind <> 0 AND time_us < ?1)",
        "DELETE FROM fts WHERE rowid IN (SELECT id FROM temp.doomed)",
        "DELETE FROM msgkey WHERE message IN (SELECT id FROM temp.doomed)",
        "DELETE FROM message WHERE id IN (SELECT id FROM temp.doomed)",
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
        if (rc != SQLITE_DONE && rc != SQLITE_OK) return xa_db_error(db, rc, "pruning", err, errlen);
    }
    return 0;
}
