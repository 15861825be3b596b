/* The archive database (docs/archive.md, "Schema"): opening it, refusing
 * what is not ours (another file, a damaged one, a newer schema, a read-only
 * one) with a sentence that says which, the schema, transactions and the
 * resume point that commits with the messages. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "archive.h"
#include "db_internal.h"

#define XA_BUSY_TIMEOUT_MS 10000 /* a reader (search) may hold the WAL briefly */
/* 64 MiB of page cache, and reads through a 1 GiB memory map. */
#define XA_CACHE_PRAGMAS                                                                           \
    "PRAGMA cache_size=-65536; PRAGMA mmap_size=1073741824; PRAGMA wal_autocheckpoint=16384"

/* The id columns (stanza-id, origin-id, the stanza's id) hold a canonical
 * UUID as its 16 bytes and a plain decimal number as an integer (store.c,
 * bind_id); the view gives the text back (ID_TEXT). */
#define ID_TEXT(c)                                                                                 \
    "CASE typeof(" c ") WHEN 'blob' THEN lower(substr(hex(" c "),1,8)||'-'||"                     \
    "substr(hex(" c "),9,4)||'-'||substr(hex(" c "),13,4)||'-'||substr(hex(" c "),17,4)||'-'||"    \
    "substr(hex(" c "),21)) ELSE CAST(" c " AS TEXT) END"

/* msg leaves out what the conversation implies (msg.strip, store.c); the
 * view puts it back. */
#define VIEW_SENDER                                                                                \
    "CASE WHEN m.strip & 32 THEN c.jid WHEN m.strip & 64 THEN c.account ELSE m.sender END"
#define VIEW_BY                                                                                    \
    "CASE WHEN m.strip & 16 THEN (CASE WHEN m.groupchat THEN c.jid ELSE c.account END) "          \
    "ELSE m.stanza_id_by END"
#define VIEW_MSG_ID                                                                                \
    "CASE WHEN m.strip & 8 THEN " ID_TEXT("m.origin_id") " ELSE " ID_TEXT("m.msg_id") " END"

static const char schema_sql[] =
    "CREATE TABLE resume(id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  journal_id TEXT NOT NULL, seq INTEGER NOT NULL, secret BLOB NOT NULL);"
    "INSERT INTO resume VALUES (1, '', 0, randomblob(16));"
    "CREATE TABLE conv(id INTEGER PRIMARY KEY, account TEXT NOT NULL, jid TEXT NOT NULL,"
    "  UNIQUE (account, jid));"
    /* No body column: the body is in the record (zrec.c) and the index is
     * contentless; `xpb-archive sql` shows it (docs/archive.md). */
    "CREATE TABLE msg("
    "  id INTEGER PRIMARY KEY, conv INTEGER NOT NULL,"
    "  direction INTEGER NOT NULL, groupchat INTEGER NOT NULL, sender TEXT,"
    "  stanza_id, stanza_id_by TEXT, origin_id, msg_id,"
    "  time_us INTEGER NOT NULL, rec INTEGER NOT NULL,"
    "  kind INTEGER NOT NULL DEFAULT 0, target INTEGER, target_ref TEXT,"
    "  edited_body TEXT, edited_us INTEGER, retracted_us INTEGER, strip INTEGER);"
    "CREATE INDEX message_time ON msg(time_us);"
    "CREATE INDEX message_target ON msg(target) WHERE target IS NOT NULL;"
    "CREATE INDEX message_pending ON msg(conv, target_ref) WHERE target_ref IS NOT NULL;"
    "CREATE VIEW message AS SELECT m.id, m.conv, c.account, c.jid AS conversation,"
    "  m.direction, m.groupchat, " VIEW_SENDER " AS sender,"
    "  " ID_TEXT("m.stanza_id") " AS stanza_id, " VIEW_BY " AS stanza_id_by,"
    "  " ID_TEXT("m.origin_id") " AS origin_id, " VIEW_MSG_ID " AS msg_id,"
    "  m.time_us, m.rec, m.kind, m.target, m.target_ref, m.edited_body, m.edited_us,"
    "  m.retracted_us, m.strip FROM msg m JOIN conv c ON c.id = m.conv;"
    "CREATE TABLE dict(id INTEGER PRIMARY KEY, bytes BLOB NOT NULL);"
    "CREATE TABLE chunk(id INTEGER PRIMARY KEY, zdict INTEGER, bytes BLOB NOT NULL);"
    /* key: a 64-bit SipHash (keys.c), the rowid. */
    "CREATE TABLE msgkey(key INTEGER PRIMARY KEY, message INTEGER NOT NULL);"
    "CREATE TABLE ownnick(account TEXT NOT NULL, room TEXT NOT NULL, nick TEXT NOT NULL,"
    "  PRIMARY KEY (account, room)) WITHOUT ROWID;"
    "CREATE VIRTUAL TABLE fts USING fts5(body, content='', columnsize=0);"
    "PRAGMA user_version = 3;";

/* What a connection of ours adds: the view with the body read from the
 * record (xpb_body, zrec.c), under the same name in the TEMP schema (which
 * SQLite looks in first). */
static const char temp_sql[] =
    "CREATE TEMP VIEW message AS SELECT *, xpb_body(rec) AS body FROM main.message";

static void setf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void setf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int xa_db_error(xa_db *db, int rc, const char *what, char *err, size_t errlen)
{
    const char *msg = db && db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc);
    int prim = rc & 0xff;
    const char *path = db ? db->path : "";
    switch (prim) {
    case SQLITE_FULL:
        setf(err, errlen, "%s: %s: the disk is full (SQLITE_FULL)", path, what);
        return XA_EFULL;
    case SQLITE_IOERR:
        /* A write past RLIMIT_FSIZE fails with EFBIG; ENOSPC can surface here too. */
        if (err && errlen)
            snprintf(err, errlen, "%s: %s: write failed: %s (%s)", path, what, msg,
                     errno ? strerror(errno) : "I/O error");
        return errno == EFBIG || errno == ENOSPC || errno == EDQUOT ? XA_EFULL : XA_EIO;
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
        setf(err, errlen, "%s: %s: the database is read-only or cannot be opened", path, what);
        return prim == SQLITE_CANTOPEN ? XA_EIO : XA_EREADONLY;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        setf(err, errlen, "%s: %s: not an xpb-archive database, or a damaged one", path, what);
        return XA_ECORRUPT;
    case SQLITE_NOMEM:
        setf(err, errlen, "%s: %s: out of memory", path, what);
        return XA_ENOMEM;
    default:
        if (err && errlen) snprintf(err, errlen, "%s: %s: %s", path, what, msg);
        return XA_EIO;
    }
}

static int exec(xa_db *db, const char *sql, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : xa_db_error(db, rc, what, err, errlen);
}

static int user_version(xa_db *db, int *v, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : xa_db_error(db, rc, "reading the schema version", err, errlen);
}

/* The tables we need exist: a file with our user_version but not our tables is
 * someone else's database. */
static int check_tables(xa_db *db, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db->h,
        "SELECT count(*) FROM sqlite_master WHERE name IN "
        "('resume','conv','msg','message','dict','chunk','msgkey','ownnick','fts')",
        -1, &st, NULL);
    int n = 0;
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
    if (rc == SQLITE_OK) rc = sqlite3_finalize(st);
    if (rc != SQLITE_OK) return xa_db_error(db, rc, "reading the schema", err, errlen);
    if (n != 9) {
        setf(err, errlen,
             "%s: has schema version %d but not the archive's tables: not an "
             "xpb-archive database",
             db->path, XA_SCHEMA_VERSION);
        return XA_ECORRUPT;
    }
    return 0;
}

static int check_schema(xa_db *db, xa_mode mode, char *err, size_t errlen)
{
    int v = 0, rc = user_version(db, &v, err, errlen);
    if (rc) return rc;
    if (v > XA_SCHEMA_VERSION) {
        if (err && errlen)
            snprintf(err, errlen,
                     "%s: schema version %d was written by a newer xpb-archive (this one reads "
                     "up to %d; PRAGMA user_version)",
                     db->path, v, XA_SCHEMA_VERSION);
        return XA_ENEWER;
    }
    if (v == XA_SCHEMA_VERSION) return check_tables(db, err, errlen);
    if (v > 0) {
        if (err && errlen)
            snprintf(err, errlen,
                     "%s: schema version %d was written by an older xpb-archive (this one reads "
                     "%d only; export the archive with that one, then import it)",
                     db->path, v, XA_SCHEMA_VERSION);
        return XA_ECORRUPT;
    }
    /* Version 0: a new file, or someone else's database. */
    sqlite3_stmt *st = NULL;
    int n = 0;
    rc = sqlite3_prepare_v2(db->h, "SELECT count(*) FROM sqlite_master", -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int(st, 0);
    if (rc == SQLITE_OK) rc = sqlite3_finalize(st);
    if (rc != SQLITE_OK) return xa_db_error(db, rc, "reading the schema", err, errlen);
    if (n > 0) {
        setf(err, errlen, "%s: %s", db->path,
             "an SQLite database without the archive's schema (user_version 0): not an "
             "xpb-archive database");
        return XA_ECORRUPT;
    }
    if (mode != XA_OPEN_CREATE) {
        setf(err, errlen, "%s: %s", db->path, "an empty database: nothing archived yet");
        return XA_ECORRUPT;
    }
    rc = exec(db, "BEGIN IMMEDIATE", "creating the schema", err, errlen);
    if (!rc) rc = exec(db, schema_sql, "creating the schema", err, errlen);
    if (!rc) return exec(db, "COMMIT", "creating the schema", err, errlen);
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int open_file(xa_db *db, xa_mode mode, char *err, size_t errlen)
{
    struct stat sb;
    if (mode != XA_OPEN_CREATE && stat(db->path, &sb) != 0) {
        setf(err, errlen, "%s: %s (no archive there)", db->path, strerror(errno));
        return XA_ENOTFOUND;
    }
    if (mode != XA_OPEN_READ && stat(db->path, &sb) == 0 && access(db->path, W_OK) != 0) {
        setf(err, errlen, "%s: %s", db->path, "the database is read-only (no write permission)");
        return XA_EREADONLY;
    }
    int flags = mode == XA_OPEN_READ ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (mode == XA_OPEN_CREATE) flags |= SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(db->path, &db->h, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) return xa_db_error(db, rc, "opening", err, errlen);
    sqlite3_extended_result_codes(db->h, 1);
    sqlite3_busy_timeout(db->h, XA_BUSY_TIMEOUT_MS);
    if (mode != XA_OPEN_READ && sqlite3_db_readonly(db->h, "main") == 1) {
        setf(err, errlen, "%s: %s", db->path, "the database is read-only");
        return XA_EREADONLY;
    }
    return 0;
}

static int load_secret(xa_db *db, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, "SELECT secret FROM resume", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW &&
        sqlite3_column_bytes(st, 0) == (int)sizeof db->secret) {
        memcpy(db->secret, sqlite3_column_blob(st, 0), sizeof db->secret);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        rc = SQLITE_CORRUPT;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : xa_db_error(db, rc, "reading the key secret", err, errlen);
}

int xa_db_open(const char *path, xa_mode mode, xa_db **out, char *err, size_t errlen)
{
    *out = NULL;
    /* No global allocation statistics: each of SQLite's mallocs would take
     * a mutex for them (a few % of the ingest). Only before SQLite starts:
     * later calls fail harmlessly (SQLITE_MISUSE). */
    static bool configured;
    if (!configured) {
        configured = true;
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    }
    xa_db *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        free(db);
        setf(err, errlen, "%s: %s", path, "out of memory");
        return XA_ENOMEM;
    }
    db->n_pending = 1; /* unknown until the first xa_db_begin: look changes up */
    db->n_ownnick = 1; /* the same for our room nicks */
    int rc = open_file(db, mode, err, errlen);
    /* WAL: readers (search) never block the writer; NORMAL sync is durable
     * at each commit's WAL append with checkpoints fsynced (docs/archive.md). */
    if (!rc && mode != XA_OPEN_READ)
        rc = exec(db, "PRAGMA journal_mode=WAL", "switching to WAL (is it an SQLite file?)", err,
                  errlen);
    if (!rc) rc = exec(db, "PRAGMA synchronous=NORMAL", "setting synchronous", err, errlen);
    /* The keys are random: without a cache that holds the key and index
     * pages, each insert reads pages again (a 250,000-message archive ingested
     * 40 times slower with SQLite's default 2 MB). */
    if (!rc) rc = exec(db, XA_CACHE_PRAGMAS, "setting the cache", err, errlen);
    if (!rc) rc = check_schema(db, mode, err, errlen);
    if (!rc) rc = load_secret(db, err, errlen);
    if (!rc) rc = xa_z_open(db, err, errlen);
    if (!rc) rc = xa_z_register(db, err, errlen);
    if (!rc) rc = exec(db, temp_sql, "adding the message view", err, errlen);
    if (rc) {
        xa_db_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void xa_db_close(xa_db *db)
{
    if (!db) return;
    for (size_t i = 0; i < XA_N_STMTS; i++)
        sqlite3_finalize(db->stmt[i]);
    xa_z_close(db);
    xa_conv_cache_clear(db);
    if (db->h) sqlite3_close(db->h);
    free(db->path);
    free(db);
}

struct sqlite3 *xa_db_sqlite(xa_db *db)
{
    return db->h;
}

void xa_db_set_cutoff(xa_db *db, int64_t cutoff_us)
{
    db->cutoff_us = cutoff_us;
}

/* A prepared statement kept for the life of the handle. */
int xa_db_stmt(xa_db *db, xa_stmt_id id, const char *sql, sqlite3_stmt **out, char *err,
               size_t errlen)
{
    if (!db->stmt[id]) {
        int rc = sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->stmt[id], NULL);
        if (rc != SQLITE_OK) return xa_db_error(db, rc, "preparing a statement", err, errlen);
    }
    sqlite3_reset(db->stmt[id]);
    sqlite3_clear_bindings(db->stmt[id]);
    *out = db->stmt[id];
    return 0;
}

int xa_db_begin(xa_db *db, char *err, size_t errlen)
{
    int rc = exec(db, "BEGIN IMMEDIATE", "starting a transaction", err, errlen);
    if (rc) return rc;
    db->in_tx = true;
    /* Another writer may have stored changes since our last transaction. */
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db->h,
                            "SELECT (SELECT count(*) FROM msg WHERE target_ref IS NOT NULL), "
                            "(SELECT count(*) FROM ownnick)",
                            -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db->n_pending = sqlite3_column_int64(st, 0);
        db->n_ownnick = sqlite3_column_int64(st, 1);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK) return 0;
    rc = xa_db_error(db, rc, "counting waiting changes", err, errlen);
    xa_db_rollback(db);
    return rc;
}

int xa_db_commit(xa_db *db, const char *journal_id, uint64_t seq, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = xa_db_stmt(db, XA_ST_RESUME_SET,
                        "UPDATE resume SET journal_id = coalesce(?1, journal_id), seq = ?2", &st,
                        err, errlen);
    if (rc) return rc;
    if (journal_id) sqlite3_bind_text(st, 1, journal_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    if (s != SQLITE_DONE) return xa_db_error(db, s, "writing the resume point", err, errlen);
    errno = 0;
    if ((rc = xa_z_flush(db, err, errlen))) return rc;
    rc = exec(db, "COMMIT", "committing", err, errlen);
    if (rc) return rc; /* the caller rolls back: the resume point did not move */
    db->in_tx = false;
    xa_z_commit(db);
    return 0;
}

int xa_db_commit_plain(xa_db *db, char *err, size_t errlen)
{
    errno = 0;
    int rc = xa_z_flush(db, err, errlen);
    if (!rc) rc = exec(db, "COMMIT", "committing", err, errlen);
    if (!rc) {
        db->in_tx = false;
        xa_z_commit(db);
    }
    return rc;
}

void xa_db_rollback(xa_db *db)
{
    if (sqlite3_get_autocommit(db->h) == 0) sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    db->in_tx = false;
    xa_z_rollback(db);
    xa_conv_cache_clear(db);
}

bool xa_db_in_transaction(const xa_db *db)
{
    return db->in_tx;
}

int xa_db_resume(xa_db *db, char journal_id[XA_JOURNAL_ID_MAX + 1], uint64_t *seq, char *err,
                 size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->h, "SELECT journal_id, seq FROM resume", -1, &st, NULL);
    journal_id[0] = '\0';
    *seq = 0;
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *j = sqlite3_column_text(st, 0);
        snprintf(journal_id, XA_JOURNAL_ID_MAX + 1, "%s", j ? (const char *)j : "");
        *seq = (uint64_t)sqlite3_column_int64(st, 1);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : xa_db_error(db, rc, "reading the resume point", err, errlen);
}
