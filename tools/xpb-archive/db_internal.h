/* The archive handle's insides, for db.c, store.c, changes.c and query.c. */
#ifndef XPB_ARCHIVE_DB_INTERNAL_H
#define XPB_ARCHIVE_DB_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

/* The statements the ingest path runs per message, prepared once. */
typedef enum xa_stmt_id {
    XA_ST_RESUME_SET,
    XA_ST_KEY_FIND,
    XA_ST_KEY_ADD,
    XA_ST_MSG_GET,
    XA_ST_MSG_INSERT,
    XA_ST_MSG_MERGE,
    XA_ST_FTS_INSERT,
    XA_ST_NICK_GET,
    XA_ST_NICK_SET,
    XA_ST_NICK_APPLY,
    XA_ST_TARGET_GET,
    XA_ST_FTS_CURRENT,
    XA_ST_PENDING_FIND,
    XA_ST_SET_TARGET,
    XA_ST_EDIT,
    XA_ST_RETRACT,
    XA_ST_FTS_UPDATE, /* the insert of a corrected text */
    XA_ST_FTS_DELETE,
    XA_N_STMTS
} xa_stmt_id;

struct xa_db {
    sqlite3 *h;
    char *path;
    bool in_tx;
    int64_t cutoff_us;
    uint8_t secret[16]; /* the key hash's secret (resume.secret) */
    sqlite3_stmt *stmt[XA_N_STMTS];
};

/* The statement id, prepared from sql on first use, reset and unbound. */
int xa_db_stmt(struct xa_db *db, xa_stmt_id id, const char *sql, sqlite3_stmt **out, char *err,
               size_t errlen);

#endif
