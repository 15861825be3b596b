/* Storing messages exactly once (docs/archive.md, "De-duplication"): each
 * message leaves keys in msgkey (keys.c) — its stanza-id with its `by`, its
 * origin-id in the conversation, its content — and a message that finds one
 * of its keys there is a copy: it only fills in what the stored one lacks
 * (the stanza-id the server added, the nick a room reflected, our own
 * direction). The same message seen live, as a carbon, from the server's
 * archive and as our own delivery is thus one row. */
#include <stdio.h>
#include <string.h>

#include "archive.h"
#include "db_internal.h"
#include "keys.h"

typedef xa_key key;

/* The message's de-duplication keys, strongest first, then its lookup key
 * ('i', for the changes that name it); *n_dedup: how many are for
 * de-duplication. */
static int keys_of(const xa_db *db, const xa_msg *m, key k[4], size_t *n, size_t *n_dedup)
{
    int rc = 0;
    *n = 0;
    if (m->stanza_id && m->stanza_id_by)
        rc = xa_key_make(db, &k[(*n)++], 's', m->account, m->stanza_id_by, m->stanza_id);
    if (!rc && m->origin_id)
        rc = xa_key_make(db, &k[(*n)++], 'o', m->account, m->conversation, m->origin_id);
    if (!rc) rc = xa_key_content(db, &k[(*n)++], m);
    *n_dedup = *n;
    if (!rc && m->msg_id && m->kind == XA_KIND_MESSAGE)
        rc = xa_key_make(db, &k[(*n)++], 'i', m->account, m->conversation, m->msg_id);
    return rc;
}

static int step_done(xa_db *db, sqlite3_stmt *st, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : xa_db_error(db, rc, what, err, errlen);
}

int xa_key_find(xa_db *db, const xa_key *k, int64_t *id, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_KEY_FIND, "SELECT message FROM msgkey WHERE key = ?1", &st, err,
                        errlen);
    if (rc) return rc;
    sqlite3_bind_blob(st, 1, k->b, XA_KEY_BYTES, SQLITE_STATIC);
    int s = sqlite3_step(st);
    *id = s == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return s == SQLITE_ROW || s == SQLITE_DONE ? 0 : xa_db_error(db, s, "finding a key", err, errlen);
}

static int add_keys(xa_db *db, const key *k, size_t n, int64_t id, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st;
        int rc = xa_db_stmt(db, XA_ST_KEY_ADD,
                            "INSERT OR IGNORE INTO msgkey(key, message) VALUES (?1, ?2)", &st, err,
                            errlen);
        if (rc) return rc;
        sqlite3_bind_blob(st, 1, k[i].b, XA_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, id);
        if ((rc = step_done(db, st, "adding a key", err, errlen))) return rc;
    }
    return 0;
}

/* What a stored row says about the copy that found it by a weaker key. */
typedef struct stored {
    char sid[256], sid_by[3072], sender[1024];
    int direction, groupchat;
} stored;

static int get_stored(xa_db *db, int64_t id, stored *s, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_MSG_GET,
                        "SELECT stanza_id, stanza_id_by, direction, groupchat, sender FROM "
                        "message WHERE id = ?1",
                        &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    memset(s, 0, sizeof *s);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        const unsigned char *v;
        if ((v = sqlite3_column_text(st, 0))) snprintf(s->sid, sizeof s->sid, "%s", v);
        if ((v = sqlite3_column_text(st, 1))) snprintf(s->sid_by, sizeof s->sid_by, "%s", v);
        s->direction = sqlite3_column_int(st, 2);
        s->groupchat = sqlite3_column_int(st, 3);
        if ((v = sqlite3_column_text(st, 4))) snprintf(s->sender, sizeof s->sender, "%s", v);
    }
    sqlite3_reset(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : xa_db_error(db, r, "reading a row", err, errlen);
}

/* Two different stanza-ids from the same archive are two messages, whatever
 * their origin-id or content says (the same "ok" sent twice). */
static bool conflicts(const xa_msg *m, const stored *s)
{
    return m->stanza_id && s->sid[0] && strcmp(s->sid_by, m->stanza_id_by) == 0 &&
           strcmp(s->sid, m->stanza_id) != 0;
}

/* Our nick in a room, learnt when our delivery and the room's reflection of
 * it meet: every message from that nick there is then ours. */
static int learn_nick(xa_db *db, const xa_msg *m, const char *nick, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_NICK_SET,
                        "INSERT OR REPLACE INTO ownnick(account, room, nick) VALUES (?1,?2,?3)",
                        &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, m->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->conversation, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, nick, -1, SQLITE_TRANSIENT);
    if ((rc = step_done(db, st, "remembering our nick", err, errlen))) return rc;
    rc = xa_db_stmt(db, XA_ST_NICK_APPLY,
                    "UPDATE message SET direction = 1 WHERE account = ?1 AND conversation = ?2 "
                    "AND groupchat = 1 AND sender = ?3 AND direction = 0",
                    &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, m->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->conversation, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, nick, -1, SQLITE_TRANSIENT);
    return step_done(db, st, "marking our room messages", err, errlen);
}

static int is_own_nick(xa_db *db, const xa_msg *m, bool *own, char *err, size_t errlen)
{
    *own = false;
    if (!m->groupchat || !m->sender) return 0;
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_NICK_GET,
                        "SELECT 1 FROM ownnick WHERE account = ?1 AND room = ?2 AND nick = ?3",
                        &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, m->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->conversation, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, m->sender, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    *own = r == SQLITE_ROW;
    sqlite3_reset(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : xa_db_error(db, r, "reading our nick", err, errlen);
}

static int merge(xa_db *db, int64_t id, const xa_msg *m, const stored *s, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_MSG_MERGE,
                        "UPDATE message SET stanza_id = coalesce(stanza_id, ?2),"
                        " stanza_id_by = coalesce(stanza_id_by, ?3),"
                        " origin_id = coalesce(origin_id, ?4), sender = coalesce(sender, ?5),"
                        " direction = max(direction, ?6) WHERE id = ?1",
                        &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    if (m->stanza_id && m->stanza_id_by) {
        sqlite3_bind_text(st, 2, m->stanza_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, m->stanza_id_by, -1, SQLITE_STATIC);
    }
    if (m->origin_id) sqlite3_bind_text(st, 4, m->origin_id, -1, SQLITE_STATIC);
    if (m->sender) sqlite3_bind_text(st, 5, m->sender, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, m->direction);
    if ((rc = step_done(db, st, "merging a copy", err, errlen))) return rc;
    if (!m->groupchat) return 0;
    if (m->own && s->direction == XA_DIR_IN && s->sender[0])
        return learn_nick(db, m, s->sender, err, errlen);
    if (!m->own && s->direction == XA_DIR_OUT && !s->sender[0] && m->sender)
        return learn_nick(db, m, m->sender, err, errlen);
    return 0;
}

/* The first stored copy among m's keys; 0 when none. */
static int find_copy(xa_db *db, const xa_msg *m, const key *k, size_t n, int64_t *id, stored *s,
                     char *err, size_t errlen)
{
    *id = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t found = 0;
        int rc = xa_key_find(db, &k[i], &found, err, errlen);
        if (rc) return rc;
        if (!found) continue;
        if ((rc = get_stored(db, found, s, err, errlen))) return rc;
        if (k[i].type != 's' && conflicts(m, s)) continue;
        *id = found;
        return 0;
    }
    return 0;
}

static void bind_opt(sqlite3_stmt *st, int i, const char *v)
{
    if (v) sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static int insert(xa_db *db, const xa_msg *m, const xpb_buf *rec, int64_t *id, char *err,
                  size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_MSG_INSERT,
                        "INSERT INTO message(account, conversation, direction, groupchat, sender,"
                        " stanza_id, stanza_id_by, origin_id, msg_id, time_us, body, record, kind,"
                        " target_ref) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
                        &st, err, errlen);
    if (rc) return rc;
    bool own = false;
    if ((rc = is_own_nick(db, m, &own, err, errlen))) return rc;
    sqlite3_bind_text(st, 1, m->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->conversation, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, own ? XA_DIR_OUT : (int)m->direction);
    sqlite3_bind_int(st, 4, m->groupchat);
    bind_opt(st, 5, m->sender);
    if (m->stanza_id && m->stanza_id_by) {
        bind_opt(st, 6, m->stanza_id);
        bind_opt(st, 7, m->stanza_id_by);
    }
    bind_opt(st, 8, m->origin_id);
    bind_opt(st, 9, m->msg_id);
    sqlite3_bind_int64(st, 10, m->time_us);
    bind_opt(st, 11, m->body);
    sqlite3_bind_blob(st, 12, rec->data, (int)rec->len, SQLITE_STATIC);
    sqlite3_bind_int(st, 13, (int)m->kind);
    bind_opt(st, 14, m->target);
    if ((rc = step_done(db, st, "storing a message", err, errlen))) return rc;
    *id = sqlite3_last_insert_rowid(db->h);
    return 0;
}

static int index_body(xa_db *db, int64_t id, const char *body, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_FTS_INSERT, "INSERT INTO fts(rowid, body) VALUES (?1, ?2)", &st,
                        err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, body, -1, SQLITE_STATIC);
    return step_done(db, st, "indexing a body", err, errlen);
}

int xa_store(xa_db *db, xpb_arena *a, const xa_msg *m, xa_counts *c, char *err, size_t errlen)
{
    (void)a;
    if (db->cutoff_us && m->time_us < db->cutoff_us) {
        c->skipped++; /* older than --keep-days: it would be pruned at once */
        return 0;
    }
    key k[4];
    size_t n = 0, n_dedup = 0;
    int64_t id = 0;
    stored s;
    int rc = keys_of(db, m, k, &n, &n_dedup);
    if (!rc) rc = find_copy(db, m, k, n_dedup, &id, &s, err, errlen);
    if (rc) return rc;
    if (id) {
        c->duplicates++;
        rc = merge(db, id, m, &s, err, errlen);
        return rc ? rc : add_keys(db, k, n, id, err, errlen);
    }
    xpb_buf rec;
    xpb_buf_init(&rec, 0);
    if (xpb_stanza_pack(&rec, m->stanza)) {
        xpb_buf_free(&rec);
        if (err && errlen) snprintf(err, errlen, "cannot pack the message's record");
        return XA_ENOMEM;
    }
    rc = insert(db, m, &rec, &id, err, errlen);
    xpb_buf_free(&rec);
    if (!rc) rc = add_keys(db, k, n, id, err, errlen);
    if (rc) return rc;
    if (m->kind == XA_KIND_MESSAGE) {
        c->stored++;
        rc = index_body(db, id, m->body, err, errlen);
        return rc ? rc : xa_link_pending(db, id, m, c, err, errlen);
    }
    c->changes++;
    return xa_link_change(db, id, m, c, err, errlen);
}

int xa_ingest(xa_db *db, xpb_arena *a, const Xpb__V1__Event *ev, xa_counts *c, char *err,
              size_t errlen)
{
    xa_msg m;
    c->events++;
    int rc = xa_extract(a, ev, &m, err, errlen);
    if (rc == XA_SKIP) {
        c->skipped++;
        return 0;
    }
    if (rc == XA_EINVAL) {
        c->refused++; /* err says why; the caller may print it */
        return 0;
    }
    if (err && errlen) err[0] = '\0';
    return rc ? rc : xa_store(db, a, &m, c, err, errlen);
}
