/* The state database (xpb_store.h): opening it in the state directory, its
 * schema, the statement cache, and errors that name the directory and cause
 * (a full disk and a read-only directory each get their own code, so the
 * daemon can refuse new sends with the reason while relaying goes on). */
#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xpb_error.h"

static const char *const SQL[ST_COUNT] = {
    [ST_J_APPEND] = "INSERT INTO journal(seq, time_us, topic, record) VALUES (?1, ?2, ?3, ?4)",
    [ST_J_READ] = "SELECT seq, time_us, topic, record FROM journal WHERE seq >= ?1 "
                  "ORDER BY seq LIMIT ?2",
    [ST_J_READ_PREFIX] = "SELECT seq, time_us, topic, record FROM journal WHERE seq >= ?1 "
                         "AND substr(topic, 1, length(?3)) = ?3 ORDER BY seq LIMIT ?2",
    [ST_J_SET_LAST] = "INSERT INTO meta(key, value) VALUES ('last_seq', ?1) "
                      "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [ST_J_OLDEST_AFTER_AGE] = "SELECT max(seq) FROM journal WHERE time_us < ?1",
    [ST_J_SIZES] = "SELECT seq, length(record) + length(topic) FROM journal ORDER BY seq",
    [ST_J_DELETE_TO] = "DELETE FROM journal WHERE seq <= ?1",
    [ST_O_PUT] = "INSERT OR REPLACE INTO outbox(account, id, stanza_id, request_id, xml) "
                 "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_O_DONE] = "DELETE FROM outbox WHERE account = ?1 AND id = ?2",
    [ST_O_EACH] = "SELECT id, stanza_id, request_id, xml FROM outbox WHERE account = ?1 "
                  "ORDER BY id",
    [ST_O_COUNT] = "SELECT count(*) FROM outbox WHERE account = ?1",
    [ST_SM_SAVE] = "INSERT OR REPLACE INTO sm(account, sm_id, location, h_in, h_out, saved_us) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_SM_LOAD] = "SELECT sm_id, location, h_in, h_out, saved_us FROM sm WHERE account = ?1",
    [ST_SM_CLEAR] = "DELETE FROM sm WHERE account = ?1",
    [ST_M_GET] = "SELECT stanza_id FROM marker WHERE account = ?1 AND archive = ?2",
    [ST_M_SET] = "INSERT OR REPLACE INTO marker(account, archive, stanza_id) VALUES (?1, ?2, ?3)",
    [ST_SEEN_ADD] = "INSERT OR IGNORE INTO seen(account, archive, stanza_id, seen_us) "
                    "VALUES (?1, ?2, ?3, ?4)",
    [ST_SEEN_COUNT] = "SELECT count(*) FROM seen WHERE account = ?1 AND archive = ?2",
    [ST_SEEN_TRIM] = "DELETE FROM seen WHERE rowid IN (SELECT rowid FROM seen WHERE "
                     "account = ?1 AND archive = ?2 ORDER BY seen_us, rowid LIMIT ?3)",
    [ST_SEEN_HAS] = "SELECT 1 FROM seen WHERE account = ?1 AND archive = ?2 AND stanza_id = ?3",
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value ANY) STRICT;"
    "CREATE TABLE IF NOT EXISTS journal(seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL,"
    " topic TEXT NOT NULL, record BLOB NOT NULL) STRICT;"
    "CREATE TABLE IF NOT EXISTS outbox(account TEXT NOT NULL, id INTEGER NOT NULL,"
    " stanza_id TEXT, request_id TEXT, xml BLOB NOT NULL, PRIMARY KEY(account, id)) STRICT;"
    "CREATE TABLE IF NOT EXISTS sm(account TEXT PRIMARY KEY, sm_id TEXT NOT NULL,"
    " location TEXT NOT NULL, h_in INTEGER NOT NULL, h_out INTEGER NOT NULL,"
    " saved_us INTEGER NOT NULL) STRICT;"
    "CREATE TABLE IF NOT EXISTS marker(account TEXT NOT NULL, archive TEXT NOT NULL,"
    " stanza_id TEXT NOT NULL, PRIMARY KEY(account, archive)) STRICT;"
    "CREATE TABLE IF NOT EXISTS seen(account TEXT NOT NULL, archive TEXT NOT NULL,"
    " stanza_id TEXT NOT NULL, seen_us INTEGER NOT NULL, UNIQUE(account, archive, stanza_id))"
    " STRICT;";

sqlite3_stmt *store_stmt(xpb_store *s, enum store_stmt which)
{
    if (!s->st[which] &&
        sqlite3_prepare_v3(s->db, SQL[which], -1, SQLITE_PREPARE_PERSISTENT, &s->st[which], NULL))
        return NULL;
    sqlite3_reset(s->st[which]);
    sqlite3_clear_bindings(s->st[which]);
    return s->st[which];
}

int store_fail(xpb_store *s, int rc, const char *what, char *err, size_t errlen)
{
    int prim = rc & 0xff;
    int code = prim == SQLITE_FULL      ? XPB_ESTOREFULL
               : prim == SQLITE_READONLY ? XPB_ESTORERO
               : prim == SQLITE_NOMEM    ? XPB_ENOMEM
                                         : XPB_ESTORE;
    const char *why = s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    if (prim == SQLITE_FULL)
        snprintf(err, errlen, "%s: state directory full (%s): %s", what, s ? s->path : "?", why);
    else if (prim == SQLITE_READONLY)
        snprintf(err, errlen, "%s: state directory read-only (%s): %s", what, s ? s->path : "?",
                 why);
    else
        snprintf(err, errlen, "%s: %s: %s", what, s ? s->path : "?", why);
    return code;
}

int store_exec(xpb_store *s, const char *sql, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : store_fail(s, rc, what, err, errlen);
}

/* The directory: created 0700 when missing; it must be a directory we can write. */
static int prepare_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT || mkdir(dir, 0700) != 0) {
            snprintf(err, errlen, "state directory %s: %s", dir, strerror(errno));
            return errno == EROFS || errno == EACCES ? XPB_ESTORERO : XPB_ESTORE;
        }
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "state directory %s: not a directory", dir);
        return XPB_ESTORE;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "state directory %s: not writable: %s", dir, strerror(errno));
        return XPB_ESTORERO;
    }
    return 0;
}

static int make_journal_id(xpb_store *s, char *err, size_t errlen)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'journal_id'", -1, &q,
                           NULL))
        return store_fail(s, sqlite3_errcode(s->db), "journal id", err, errlen);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(q, 0) == XPB_STORE_JOURNAL_ID_LEN) {
        memcpy(s->journal_id, sqlite3_column_text(q, 0), XPB_STORE_JOURNAL_ID_LEN);
        sqlite3_finalize(q);
        return 0;
    }
    sqlite3_finalize(q);
    unsigned char raw[XPB_STORE_JOURNAL_ID_LEN / 2];
    sqlite3_randomness(sizeof raw, raw);
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(s->journal_id + 2 * i, 3, "%02x", raw[i]);
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO meta(key, value) VALUES ('journal_id', '%s')",
             s->journal_id);
    return store_exec(s, sql, "journal id", err, errlen);
}

static int open_db(xpb_store *s, const xpb_store_config *cfg, char *err, size_t errlen)
{
    int rc = sqlite3_open_v2(s->path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) return store_fail(s, rc, "open", err, errlen);
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 2000);
    /* WAL: readers never block the writer; FULL: a commit is on disk when it
     * returns, so what we reported written survives a power cut too. */
    rc = store_exec(s, cfg->sync_normal ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                        : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
                    "open", err, errlen);
    if (!rc && cfg->max_db_pages) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%llu",
                 (unsigned long long)cfg->max_db_pages);
        rc = store_exec(s, sql, "open", err, errlen);
    }
    if (!rc) rc = store_exec(s, SCHEMA, "schema", err, errlen);
    if (!rc) rc = store_exec(s, "PRAGMA user_version=1", "schema", err, errlen);
    if (!rc) rc = make_journal_id(s, err, errlen);
    if (!rc) rc = store_journal_load(s, err, errlen);
    return rc;
}

int xpb_store_open(xpb_store **out, const xpb_store_config *cfg, char *err, size_t errlen)
{
    if (!out || !cfg || !cfg->dir) return XPB_EINVAL;
    int rc = prepare_dir(cfg->dir, err, errlen);
    if (rc) return rc;
    xpb_store *s = calloc(1, sizeof *s);
    if (!s) return XPB_ENOMEM;
    s->max_bytes = cfg->journal_max_bytes ? cfg->journal_max_bytes : XPB_STORE_DEFAULT_MAX_BYTES;
    s->max_age_s = cfg->journal_max_age_s ? cfg->journal_max_age_s : XPB_STORE_DEFAULT_MAX_AGE_S;
    if ((size_t)snprintf(s->path, sizeof s->path, "%s/%s", cfg->dir, XPB_STORE_FILE) >=
        sizeof s->path) {
        snprintf(err, errlen, "state directory %s: path too long", cfg->dir);
        free(s);
        return XPB_EINVAL;
    }
    rc = open_db(s, cfg, err, errlen);
    if (rc) {
        xpb_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void xpb_store_close(xpb_store *s)
{
    if (!s) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    free(s);
}

const char *xpb_store_journal_id(const xpb_store *s)
{
    return s->journal_id;
}
