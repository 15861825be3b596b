/* The state database (xpb_store.h): opening it in the state directory, its
 * schema, the statement cache, and errors that name the directory and cause
 * (a full disk and a read-only directory each get their own code, so the
 * daemon can refuse new sends with the reason while relaying goes on). */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xpb_error.h"

#define XPB_STR_(x) #x
#define XPB_STR(x) XPB_STR_(x)

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
    [ST_SM_SAVE] = "INSERT OR REPLACE INTO sm(account, sm_id, location, h_in, h_out, saved_us, "
                   "jid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_SM_LOAD] = "SELECT sm_id, location, h_in, h_out, saved_us, jid FROM sm WHERE account = ?1",
    [ST_SM_CLEAR] = "DELETE FROM sm WHERE account = ?1",
    [ST_M_GET] = "SELECT stanza_id, stream FROM marker WHERE account = ?1 AND archive = ?2",
    [ST_M_SET] = "INSERT OR REPLACE INTO marker(account, archive, stanza_id, stream) "
                 "VALUES (?1, ?2, ?3, ?4)",
    [ST_SEEN_ADD] = "INSERT OR IGNORE INTO seen(account, archive, stanza_id, seen_us) "
                    "VALUES (?1, ?2, ?3, ?4)",
    [ST_SEEN_COUNT] = "SELECT count(*) FROM seen WHERE account = ?1 AND archive = ?2",
    [ST_SEEN_TRIM] = "DELETE FROM seen WHERE rowid IN (SELECT rowid FROM seen WHERE "
                     "account = ?1 AND archive = ?2 ORDER BY seen_us, rowid LIMIT ?3)",
    [ST_SEEN_HAS] = "SELECT 1 FROM seen WHERE account = ?1 AND archive = ?2 AND stanza_id = ?3",
    [ST_TX_BEGIN] = "BEGIN IMMEDIATE",
    [ST_TX_COMMIT] = "COMMIT",
    [ST_TX_SAVEPOINT] = "SAVEPOINT op",
    [ST_TX_RELEASE] = "RELEASE op",
    [ST_TX_ROLLBACK_TO] = "ROLLBACK TO op",
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value ANY) STRICT;"
    "CREATE TABLE IF NOT EXISTS journal(seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL,"
    " topic TEXT NOT NULL, record BLOB NOT NULL) STRICT;"
    "CREATE TABLE IF NOT EXISTS outbox(account TEXT NOT NULL, id INTEGER NOT NULL,"
    " stanza_id TEXT, request_id TEXT, xml BLOB NOT NULL, PRIMARY KEY(account, id)) STRICT;"
    "CREATE TABLE IF NOT EXISTS sm(account TEXT PRIMARY KEY, sm_id TEXT NOT NULL,"
    " location TEXT NOT NULL, h_in INTEGER NOT NULL, h_out INTEGER NOT NULL,"
    " saved_us INTEGER NOT NULL, jid TEXT NOT NULL DEFAULT '') STRICT;"
    "CREATE TABLE IF NOT EXISTS marker(account TEXT NOT NULL, archive TEXT NOT NULL,"
    " stanza_id TEXT NOT NULL, stream TEXT NOT NULL DEFAULT '', PRIMARY KEY(account, archive))"
    " STRICT;"
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

static int user_version(xpb_store *s)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &q, NULL)) return -1;
    int v = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : -1;
    sqlite3_finalize(q);
    return v;
}

/* 1 when table has the column, 0 when not, < 0 on error. */
static int has_column(xpb_store *s, const char *table, const char *column)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &q,
                           NULL))
        return -1;
    sqlite3_bind_text(q, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, column, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Adds a column the database was made without (a fresh one has it from
 * SCHEMA). By the column's presence, not the version alone: an older
 * xpbridge that opened the file since wrote its own version back. */
static int add_column(xpb_store *s, const char *table, const char *column, const char *sql,
                      char *err, size_t errlen)
{
    int has = has_column(s, table, column);
    if (has < 0) return store_fail(s, sqlite3_errcode(s->db), "schema", err, errlen);
    return has ? 0 : store_exec(s, sql, "schema", err, errlen);
}

/* Version 2: the sm table keeps the bound full JID (a resumed stream has
 * no bind to tell it). Version 3: a marker keeps the XEP-0198 stream it was
 * written in while its archive was caught up (catchup.c: a restart that
 * resumes that stream is caught up too). */
static int migrate(xpb_store *s, char *err, size_t errlen)
{
    int rc = add_column(s, "sm", "jid", "ALTER TABLE sm ADD COLUMN jid TEXT NOT NULL DEFAULT ''",
                        err, errlen);
    if (!rc)
        rc = add_column(s, "marker", "stream",
                        "ALTER TABLE marker ADD COLUMN stream TEXT NOT NULL DEFAULT ''", err,
                        errlen);
    int v = rc ? 0 : user_version(s);
    if (!rc && v != XPB_STORE_SCHEMA_VERSION)
        rc = store_exec(s, "PRAGMA user_version=" XPB_STR(XPB_STORE_SCHEMA_VERSION), "schema",
                        err, errlen);
    return rc;
}

int store_open_db(xpb_store *s, char *err, size_t errlen)
{
    int rc = sqlite3_open_v2(s->path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) return store_fail(s, rc, "open", err, errlen);
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 2000);
    /* WAL: readers never block the writer, and a commit is in the file when
     * it returns (kill -9 safe). FULL adds an fsync per commit (power-cut
     * safe); SENDS takes it only for the outbox (store_sync_sends). */
    rc = store_exec(s, s->sync == XPB_STORE_SYNC_FULL
                           ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                           : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                    "open", err, errlen);
    if (!rc && s->max_db_pages) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%llu",
                 (unsigned long long)s->max_db_pages);
        rc = store_exec(s, sql, "open", err, errlen);
    }
    if (!rc) rc = store_exec(s, SCHEMA, "schema", err, errlen);
    if (!rc) rc = migrate(s, err, errlen);
    if (!rc) rc = make_journal_id(s, err, errlen);
    if (!rc) rc = store_journal_load(s, err, errlen);
    return rc;
}

/* One bridge per state directory: an exclusive flock(2) on DIR/xpbridge.lock,
 * held for the store's life (the kernel drops it when the process dies, so
 * a kill -9 leaves no stale lock). The file holds the holder's pid so the
 * refusal can name it. */
static int take_lock(xpb_store *s, const char *dir, char *err, size_t errlen)
{
    char path[4096 + 32];
    snprintf(path, sizeof path, "%s/%s", dir, XPB_STORE_LOCK_FILE);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        snprintf(err, errlen, "state directory %s: lock file %s: %s", dir, path, strerror(errno));
        return errno == EROFS || errno == EACCES ? XPB_ESTORERO : XPB_ESTORE;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(s->lock_fd, pid, sizeof pid - 1, 0);
        while (n > 0 && (pid[n - 1] == '\n' || pid[n - 1] == ' ')) n--;
        pid[n > 0 ? n : 0] = '\0';
        if (e == EWOULDBLOCK)
            snprintf(err, errlen,
                     "state directory %s is in use by another xpbridge (pid %s, lock %s): "
                     "one state directory serves one bridge",
                     dir, pid[0] ? pid : "unknown", path);
        else
            snprintf(err, errlen, "state directory %s: lock %s: %s", dir, path, strerror(e));
        return XPB_ESTORELOCKED;
    }
    char me[32];
    int len = snprintf(me, sizeof me, "%ld\n", (long)getpid());
    if (ftruncate(s->lock_fd, 0) != 0 || pwrite(s->lock_fd, me, (size_t)len, 0) != len)
        { /* the lock holds; only the pid shown to a second bridge is missing */ }
    return 0;
}

int xpb_store_open(xpb_store **out, const xpb_store_config *cfg, char *err, size_t errlen)
{
    if (!out || !cfg || !cfg->dir) return XPB_EINVAL;
    int rc = prepare_dir(cfg->dir, err, errlen);
    if (rc) return rc;
    xpb_store *s = calloc(1, sizeof *s);
    if (!s) return XPB_ENOMEM;
    s->lock_fd = -1;
    rc = take_lock(s, cfg->dir, err, errlen);
    if (rc) {
        xpb_store_close(s);
        return rc;
    }
    s->max_bytes = cfg->journal_max_bytes ? cfg->journal_max_bytes : XPB_STORE_DEFAULT_MAX_BYTES;
    s->max_age_s = cfg->journal_max_age_s ? cfg->journal_max_age_s : XPB_STORE_DEFAULT_MAX_AGE_S;
    if ((size_t)snprintf(s->path, sizeof s->path, "%s/%s", cfg->dir, XPB_STORE_FILE) >=
        sizeof s->path) {
        snprintf(err, errlen, "state directory %s: path too long", cfg->dir);
        free(s);
        return XPB_EINVAL;
    }
    s->sync = cfg->sync;
    s->max_db_pages = cfg->max_db_pages;
    rc = store_open_db(s, err, errlen);
    if (rc) {
        xpb_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int xpb_store_get_sync(const xpb_store *s)
{
    return s->sync;
}

/* XPB_STORE_SYNC_SENDS: a commit that wrote outbox rows waits for the disk
 * (an fsync of the WAL, which also makes every earlier commit durable); the
 * others do not. The WAL's file is SQLite's: asked for through
 * SQLITE_FCNTL_JOURNAL_POINTER and synced with its own xSync. */
int store_sync_sends(xpb_store *s, char *err, size_t errlen)
{
    if (s->sync != XPB_STORE_SYNC_SENDS) return 0;
    sqlite3_file *f = NULL;
    int rc = sqlite3_file_control(s->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f);
    if (rc == SQLITE_OK && f && f->pMethods) rc = f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
    return rc == SQLITE_OK ? 0 : store_fail(s, rc, "outbox (waiting for the disk)", err, errlen);
}

int xpb_store_batch_begin(xpb_store *s, xpb_store_commit_cb on_commit, void *ud, char *err,
                          size_t errlen)
{
    if (s->batch) return XPB_EINVAL;
    int rc = store_exec(s, "BEGIN IMMEDIATE", "outbox", err, errlen);
    if (rc) return rc;
    s->batch_puts = 0;
    s->batch = 1;
    s->batch_cb = on_commit;
    s->batch_ud = ud;
    return 0;
}

int xpb_store_batch_open(const xpb_store *s)
{
    return s && s->batch;
}

int xpb_store_batch_commit(xpb_store *s)
{
    if (!s->batch) return 0;
    char err[768] = "";
    s->batch = 0;
    int rc = store_exec(s, "COMMIT", "outbox", err, sizeof err);
    if (rc) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    else if (s->batch_puts) rc = store_sync_sends(s, err, sizeof err);
    if (s->batch_cb) s->batch_cb(s->batch_ud, rc, err);
    return rc;
}

void store_batch_end(xpb_store *s)
{
    if (s->batch) xpb_store_batch_commit(s);
}

int store_step_stmt(xpb_store *s, enum store_stmt which)
{
    sqlite3_stmt *q = store_stmt(s, which);
    if (!q) return sqlite3_errcode(s->db);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

int store_txn_begin(xpb_store *s)
{
    return store_step_stmt(s, s->in_round ? ST_TX_SAVEPOINT : ST_TX_BEGIN);
}

int store_txn_commit(xpb_store *s)
{
    return store_step_stmt(s, s->in_round ? ST_TX_RELEASE : ST_TX_COMMIT);
}

void store_txn_rollback(xpb_store *s)
{
    if (sqlite3_get_autocommit(s->db)) return; /* SQLite rolled it back already */
    if (!s->in_round) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return;
    }
    store_step_stmt(s, ST_TX_ROLLBACK_TO);
    store_step_stmt(s, ST_TX_RELEASE);
}

void xpb_store_close(xpb_store *s)
{
    if (!s) return;
    store_thread_stop(s);
    store_batch_end(s);
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    if (s->lock_fd >= 0) close(s->lock_fd); /* drops the flock */
    free(s);
}

const char *xpb_store_journal_id(const xpb_store *s)
{
    return s->journal_id;
}
