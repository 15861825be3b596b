/* Shared by the store's files: the handle, its prepared statements, and the
 * mapping of SQLite's errors onto ours with a sentence naming the cause. */
#ifndef XPB_STORE_INTERNAL_H
#define XPB_STORE_INTERNAL_H

#include <sqlite3.h>

#include "xpb_store.h"

enum store_stmt {
    ST_J_APPEND,
    ST_J_READ,
    ST_J_READ_PREFIX,
    ST_J_SET_LAST,
    ST_J_OLDEST_AFTER_AGE,
    ST_J_SIZES,
    ST_J_DELETE_TO,
    ST_O_PUT,
    ST_O_DONE,
    ST_O_EACH,
    ST_O_COUNT,
    ST_SM_SAVE,
    ST_SM_LOAD,
    ST_SM_CLEAR,
    ST_M_GET,
    ST_M_SET,
    ST_SEEN_ADD,
    ST_SEEN_COUNT,
    ST_SEEN_TRIM,
    ST_SEEN_HAS,
    ST_TX_BEGIN,    /* the statements of store_txn_*, prepared once: a round */
    ST_TX_COMMIT,   /* runs them for every write in it */
    ST_TX_SAVEPOINT,
    ST_TX_RELEASE,
    ST_TX_ROLLBACK_TO,
    ST_COUNT
};

struct xpb_store {
    sqlite3 *db;
    int lock_fd; /* DIR/xpbridge.lock, flock(LOCK_EX) while open; -1 none */
    int sync;    /* xpb_store_sync */
    sqlite3_stmt *st[ST_COUNT];
    char path[4096];
    char journal_id[XPB_STORE_JOURNAL_ID_LEN + 1];
    uint64_t max_bytes, max_age_s;
    xpb_journal_stats js;
    int batch;                    /* a group-commit transaction is open */
    int batch_puts;               /* it wrote outbox rows: its commit waits for the disk */
    xpb_store_commit_cb batch_cb; /* told when it commits or fails */
    void *batch_ud;
    uint64_t max_db_pages;   /* the configuration's, for the store thread's connection */
    int in_round;            /* the store thread's round: one transaction, puts wait for its end */
    uint64_t seen_journal_errors; /* js.append_errors when seen ids were last written */
    struct store_thread *t;  /* store_thread.c; NULL: every write runs on the caller's thread */
};

/* The statement (prepared on first use, then reset for reuse), or NULL. */
sqlite3_stmt *store_stmt(xpb_store *s, enum store_stmt which);
/* Maps rc (an SQLite result) to an XPB_E… code and writes "what: reason". */
int store_fail(xpb_store *s, int rc, const char *what, char *err, size_t errlen);
int store_exec(xpb_store *s, const char *sql, const char *what, char *err, size_t errlen);
int store_journal_load(xpb_store *s, char *err, size_t errlen);
/* Commits the open batch, if any (before a write that is not part of it). */
void store_batch_end(xpb_store *s);
/* XPB_STORE_SYNC_SENDS: after a commit that wrote outbox rows, wait for the
 * disk (0 in the other modes: FULL waited at the commit, NORMAL does not). */
int store_sync_sends(xpb_store *s, char *err, size_t errlen);
/* Opens s->db at s->path with s->sync and s->max_db_pages, the schema made,
 * the journal's figures loaded (xpb_store_open; the store thread's own
 * connection). */
int store_open_db(xpb_store *s, char *err, size_t errlen);
/* Steps a statement without parameters (BEGIN, COMMIT, ...): an SQLite code. */
int store_step_stmt(xpb_store *s, enum store_stmt which);
/* A transaction of its own, or inside the store thread's round a savepoint. */
int store_txn_begin(xpb_store *s);
int store_txn_commit(xpb_store *s);
void store_txn_rollback(xpb_store *s);
/* store_thread.c: stops and joins the thread (every write submitted is done);
 * completions not yet run are dropped. */
void store_thread_stop(xpb_store *s);
/* The journal's figures: the store thread's when it runs (under its lock). */
void store_thread_js(const xpb_store *s, xpb_journal_stats *out);

#endif
