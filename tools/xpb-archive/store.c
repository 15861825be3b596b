/* Storing messages exactly once (docs/archive.md, "De-duplication"): each
 * message leaves keys in msgkey (keys.c) — its stanza-id with its `by`, its
 * origin-id in the conversation, its content — and a message that finds one
 * of its keys there is a copy: it only fills in what the stored one lacks
 * (the stanza-id the server added, the nick a room reflected, our own
 * direction). The same message seen live, as a carbon, from the server's
 * archive and as our own delivery is thus one row. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <stdio.h>
#include <stdlib.h>
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
    /* The content key is the fallback for messages without an origin-id:
     * every copy of one with an origin-id carries the same (XEP-0359 §4). */
    if (!rc && !m->origin_id) rc = xa_key_content(db, &k[(*n)++], m);
    *n_dedup = *n;
    /* The id attribute, for the changes that name it; when it is the
     * origin-id (most clients), the 'o' key finds the message already. */
    if (!rc && m->msg_id && m->kind == XA_KIND_MESSAGE &&
        !(m->origin_id && strcmp(m->msg_id, m->origin_id) == 0))
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
    sqlite3_bind_int64(st, 1, k->v);
    int s = sqlite3_step(st);
    *id = s == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return s == SQLITE_ROW || s == SQLITE_DONE ? 0
                                               : xa_db_error(db, s, "finding a key", err, errlen);
}

/* Two keys a statement (a message has two, rarely three or four). */
static int add_keys(xa_db *db, const key *k, size_t n, int64_t id, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i += 2) {
        sqlite3_stmt *st;
        bool two = i + 1 < n;
        int rc = two ? xa_db_stmt(db, XA_ST_KEY_ADD2,
                                  "INSERT OR IGNORE INTO msgkey(key, message) VALUES (?1, ?3), "
                                  "(?2, ?3)",
                                  &st, err, errlen)
                     : xa_db_stmt(db, XA_ST_KEY_ADD,
                                  "INSERT OR IGNORE INTO msgkey(key, message) VALUES (?1, ?3)", &st,
                                  err, errlen);
        if (rc) return rc;
        sqlite3_bind_int64(st, 1, k[i].v);
        if (two) sqlite3_bind_int64(st, 2, k[i + 1].v);
        sqlite3_bind_int64(st, 3, id);
        if ((rc = step_done(db, st, "adding a key", err, errlen))) return rc;
    }
    return 0;
}

/* An id (stanza-id, origin-id, the stanza's id) as its column holds it: a
 * canonical lowercase UUID (XEP-0359 ids usually are) as its 16 bytes, a
 * plain decimal number (ejabberd's stanza-ids) as an integer, else the
 * text. The view `message` (db.c, ID_TEXT) gives the text back. */
static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool uuid_bytes(const char *v, uint8_t out[16])
{
    size_t n = 0;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (v[i] != '-') return false;
            continue;
        }
        int h = hexval(v[i]);
        if (h < 0) return false;
        if (n % 2 == 0)
            out[n / 2] = (uint8_t)(h << 4);
        else
            out[n / 2] |= (uint8_t)h;
        n++;
    }
    return v[36] == '\0';
}

static bool decimal(const char *v, int64_t *out)
{
    size_t n = strlen(v);
    if (n == 0 || n > 18 || (v[0] == '0' && n > 1) || strspn(v, "0123456789") != n) return false;
    *out = 0;
    for (size_t i = 0; i < n; i++)
        *out = *out * 10 + (v[i] - '0');
    return true;
}

static void bind_id(sqlite3_stmt *st, int i, const char *v)
{
    uint8_t u[16];
    int64_t d;
    if (!v) return;
    if (uuid_bytes(v, u))
        sqlite3_bind_blob(st, i, u, sizeof u, SQLITE_TRANSIENT);
    else if (decimal(v, &d))
        sqlite3_bind_int64(st, i, d);
    else
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
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
    return r == SQLITE_ROW || r == SQLITE_DONE ? 0
                                               : xa_db_error(db, r, "reading a row", err, errlen);
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
                        "INSERT INTO ownnick(account, room, nick) VALUES (?1,?2,?3) ON CONFLICT "
                        "(account, room) DO UPDATE SET nick = excluded.nick WHERE nick <> "
                        "excluded.nick",
                        &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, m->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->conversation, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, nick, -1, SQLITE_TRANSIENT);
    if ((rc = step_done(db, st, "remembering our nick", err, errlen))) return rc;
    /* Known already: its messages are marked. The marking walks the whole
     * table (no conversation index: docs/archive.md), once per new nick. */
    if (sqlite3_changes(db->h) == 0) return 0;
    db->n_ownnick++;
    rc =
        xa_db_stmt(db, XA_ST_NICK_APPLY,
                   "UPDATE msg SET direction = 1 WHERE conv = (SELECT id FROM conv WHERE "
                   "account = ?1 AND jid = ?2) AND groupchat = 1 AND sender = ?3 AND direction = 0",
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
    if (!m->groupchat || !m->sender || db->n_ownnick == 0) return 0;
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_NICK_GET,
                        "SELECT 1 FROM ownnick WHERE account = ?1 AND room = ?2 AND nick = ?3", &st,
                        err, errlen);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, m->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->conversation, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, m->sender, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    *own = r == SQLITE_ROW;
    sqlite3_reset(st);
    return r == SQLITE_ROW || r == SQLITE_DONE
               ? 0
               : xa_db_error(db, r, "reading our nick", err, errlen);
}

static int merge(xa_db *db, int64_t id, const xa_msg *m, const stored *s, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_MSG_MERGE,
                        "UPDATE msg SET stanza_id = coalesce(stanza_id, ?2),"
                        " stanza_id_by = CASE WHEN stanza_id IS NULL THEN ?3 ELSE stanza_id_by END,"
                        " origin_id = coalesce(origin_id, ?4), sender = CASE WHEN sender IS NULL"
                        " AND coalesce(strip, 0) & 96 = 0 THEN ?5 ELSE sender END,"
                        " direction = max(direction, ?6) WHERE id = ?1",
                        &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    if (m->stanza_id && m->stanza_id_by) {
        bind_id(st, 2, m->stanza_id);
        sqlite3_bind_text(st, 3, m->stanza_id_by, -1, SQLITE_STATIC);
    }
    bind_id(st, 4, m->origin_id);
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

/* The messages m's de-duplication keys (at most two: keys_of) point to, in
 * one statement (two scalar subqueries: an IN list would build a temporary
 * table each time); 0 where none. */
static int find_keys(xa_db *db, const key *k, size_t n, int64_t found[2], char *err,
                     size_t errlen)
{
    sqlite3_stmt *st;
    int rc = xa_db_stmt(db, XA_ST_KEY_FIND2,
                        "SELECT (SELECT message FROM msgkey WHERE key = ?1), (SELECT message FROM "
                        "msgkey WHERE key = ?2)",
                        &st, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, k[0].v);
    sqlite3_bind_int64(st, 2, k[n > 1 ? 1 : 0].v);
    int r = sqlite3_step(st);
    found[0] = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    found[1] = r == SQLITE_ROW && n > 1 ? sqlite3_column_int64(st, 1) : 0;
    sqlite3_reset(st);
    return r == SQLITE_ROW ? 0 : xa_db_error(db, r, "finding a key", err, errlen);
}

/* The first stored copy among m's keys, strongest first; 0 when none. */
static int find_copy(xa_db *db, const xa_msg *m, const key *k, size_t n, int64_t *id, stored *s,
                     char *err, size_t errlen)
{
    int64_t found[2];
    *id = 0;
    int rc = n ? find_keys(db, k, n, found, err, errlen) : 0;
    for (size_t i = 0; !rc && i < n && i < 2; i++) {
        if (!found[i]) continue;
        if ((rc = get_stored(db, found[i], s, err, errlen))) return rc;
        if (k[i].type != 's' && conflicts(m, s)) continue;
        *id = found[i];
        return 0;
    }
    return rc;
}

static void bind_opt(sqlite3_stmt *st, int i, const char *v)
{
    if (v) sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

void xa_conv_cache_clear(xa_db *db)
{
    for (size_t i = 0; i < XA_CONV_CACHE; i++) {
        free(db->conv_cache[i].account);
        free(db->conv_cache[i].jid);
    }
    memset(db->conv_cache, 0, sizeof db->conv_cache);
}

static uint64_t conv_hash(const char *account, const char *jid)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (const char *p = account; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
    h = (h ^ 0xff) * 0x100000001b3ULL;
    for (const char *p = jid; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
    return h;
}

static int conv_id_db(xa_db *db, const xa_msg *m, int64_t *id, char *err, size_t errlen);

/* The id of m's conversation (table conv), added when new. */
static int conv_id(xa_db *db, const xa_msg *m, int64_t *id, char *err, size_t errlen)
{
    uint64_t h = conv_hash(m->account, m->conversation);
    struct xa_conv_slot *s = &db->conv_cache[h % XA_CONV_CACHE];
    if (s->id && s->hash == h && strcmp(s->account, m->account) == 0 &&
        strcmp(s->jid, m->conversation) == 0) {
        *id = s->id;
        return 0;
    }
    int rc = conv_id_db(db, m, id, err, errlen);
    if (rc) return rc;
    char *a = strdup(m->account), *j = strdup(m->conversation);
    if (!a || !j) {
        free(a);
        free(j);
        return 0; /* not kept: looked up again next time */
    }
    free(s->account);
    free(s->jid);
    s->hash = h;
    s->id = *id;
    s->account = a;
    s->jid = j;
    return 0;
}

static int conv_id_db(xa_db *db, const xa_msg *m, int64_t *id, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    for (int pass = 0; pass < 2; pass++) {
        int rc =
            xa_db_stmt(db, XA_ST_CONV_FIND, "SELECT id FROM conv WHERE account = ?1 AND jid = ?2",
                       &st, err, errlen);
        if (rc) return rc;
        sqlite3_bind_text(st, 1, m->account, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, m->conversation, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        *id = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        sqlite3_reset(st);
        if (r != SQLITE_ROW && r != SQLITE_DONE)
            return xa_db_error(db, r, "finding a conversation", err, errlen);
        if (*id || pass) break;
        rc = xa_db_stmt(db, XA_ST_CONV_ADD, "INSERT INTO conv(account, jid) VALUES (?1, ?2)", &st,
                        err, errlen);
        if (rc) return rc;
        sqlite3_bind_text(st, 1, m->account, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, m->conversation, -1, SQLITE_STATIC);
        if ((rc = step_done(db, st, "adding a conversation", err, errlen))) return rc;
    }
    return *id ? 0 : xa_db_error(db, SQLITE_CORRUPT, "adding a conversation", err, errlen);
}

static int insert(xa_db *db, const xa_msg *m, const xpb_buf *rec, int strip, int64_t *id, char *err,
                  size_t errlen)
{
    sqlite3_stmt *st;
    int64_t conv = 0;
    int rc = conv_id(db, m, &conv, err, errlen);
    if (rc) return rc;
    rc = xa_db_stmt(db, XA_ST_MSG_INSERT,
                    "INSERT INTO msg(conv, direction, groupchat, sender,"
                    " stanza_id, stanza_id_by, origin_id, msg_id, time_us, kind,"
                    " target_ref, rec, strip) VALUES (?1,?3,?4,?5,?6,?7,?8,?9,?10,?13,"
                    "?14,?15,?16)",
                    &st, err, errlen);
    if (rc) return rc;
    bool own = false;
    if ((rc = is_own_nick(db, m, &own, err, errlen))) return rc;
    sqlite3_bind_int64(st, 1, conv);
    sqlite3_bind_int(st, 3, own ? XA_DIR_OUT : (int)m->direction);
    sqlite3_bind_int(st, 4, m->groupchat);
    /* What the conversation implies is left out (the view puts it back). */
    if (!m->groupchat && m->sender && strcmp(m->sender, m->conversation) == 0)
        strip |= XA_STRIP_SENDER_PEER;
    else if (!m->groupchat && m->sender && strcmp(m->sender, m->account) == 0)
        strip |= XA_STRIP_SENDER_ACCOUNT;
    else
        bind_opt(st, 5, m->sender);
    if (m->stanza_id && m->stanza_id_by) {
        bind_id(st, 6, m->stanza_id);
        if (strcmp(m->stanza_id_by, m->groupchat ? m->conversation : m->account) == 0)
            strip |= XA_STRIP_BY_DEFAULT;
        else
            bind_opt(st, 7, m->stanza_id_by);
    }
    bind_id(st, 8, m->origin_id);
    if (m->msg_id && m->origin_id && strcmp(m->msg_id, m->origin_id) == 0)
        strip |= XA_STRIP_MSG_ID_IS_ORIGIN;
    else
        bind_id(st, 9, m->msg_id);
    sqlite3_bind_int64(st, 10, m->time_us);
    int64_t ref = 0;
    rc = xa_z_add(db, (const uint8_t *)rec->data, rec->len, &ref, err, errlen);
    if (rc) return rc;
    sqlite3_bind_int64(st, 15, ref);
    if (strip) sqlite3_bind_int(st, 16, strip);
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
    /* The record without what its columns hold already (zrec.c puts it
     * back): the id, the origin-id. The body stays in it (no column). */
    xpb_stanza bare = *m->stanza;
    int strip = 0;
    if (bare.id && m->msg_id && strcmp(bare.id, m->msg_id) == 0) {
        bare.id = NULL;
        strip |= XA_STRIP_ID;
    }
    if (bare.origin_id && m->origin_id && strcmp(bare.origin_id, m->origin_id) == 0) {
        bare.origin_id = NULL;
        strip |= XA_STRIP_ORIGIN_ID;
    }
    xpb_buf rec;
    xpb_buf_init(&rec, 0);
    if (xpb_stanza_pack(&rec, &bare)) {
        xpb_buf_free(&rec);
        if (err && errlen) snprintf(err, errlen, "cannot pack the message's record");
        return XA_ENOMEM;
    }
    rc = insert(db, m, &rec, strip, &id, err, errlen);
    xpb_buf_free(&rec);
    if (!rc) rc = add_keys(db, k, n, id, err, errlen);
    if (rc) return rc;
    if (m->kind == XA_KIND_MESSAGE) {
        c->stored++;
        rc = index_body(db, id, m->body, err, errlen);
        return rc ? rc : xa_link_pending(db, id, m, c, err, errlen);
    }
    c->changes++;
    db->n_pending++; /* it may wait for its message */
    return xa_link_change(db, id, m, c, err, errlen);
}

static int ingest(xa_db *db, xpb_arena *a, Xpb__V1__Event *owned, const Xpb__V1__Event *ev,
                  xa_counts *c, char *err, size_t errlen)
{
    xa_msg m;
    c->events++;
    int rc = owned ? xa_extract_owned(a, owned, &m, err, errlen)
                   : xa_extract(a, ev, &m, err, errlen);
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

int xa_ingest(xa_db *db, xpb_arena *a, const Xpb__V1__Event *ev, xa_counts *c, char *err,
              size_t errlen)
{
    return ingest(db, a, NULL, ev, c, err, errlen);
}

int xa_ingest_owned(xa_db *db, xpb_arena *a, Xpb__V1__Event *ev, xa_counts *c, char *err,
                    size_t errlen)
{
    return ingest(db, a, ev, ev, c, err, errlen);
}
