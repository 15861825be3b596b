/* The archive handle's insides, for db.c, store.c, changes.c and query.c. */
#ifndef XPB_ARCHIVE_DB_INTERNAL_H
#define XPB_ARCHIVE_DB_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>
#include <zlib.h>

#include "xpb_xml.h"

/* The statements the ingest path runs per message, prepared once. */
typedef enum xa_stmt_id {
    XA_ST_RESUME_SET,
    XA_ST_KEY_FIND,
    XA_ST_KEY_FIND2,
    XA_ST_KEY_ADD,
    XA_ST_KEY_ADD2,
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
    XA_ST_CHUNK_ADD,
    XA_ST_CHUNK_NEXT,
    XA_ST_CONV_FIND,
    XA_ST_CONV_ADD,
    XA_N_STMTS
} xa_stmt_id;

/* Record compression (zrec.c). */
#define XA_ZDICT_MAX 8        /* dictionary ids 1..7 */
#define XA_ZDICT_BYTES 16384  /* a dictionary: the archive's first 16 KiB of records */
#define XA_CHUNK_BYTES 32768  /* records per chunk: a new chunk starts past this */

typedef struct xa_zdict {
    uint8_t *bytes;
    size_t len;
} xa_zdict;

typedef struct xa_z {
    z_stream def, inf;
    bool def_ready, inf_ready;
    int cur;                 /* the dictionary new records use; 0: none yet */
    bool learnt_in_tx;       /* cur was written in the open transaction */
    xa_zdict dict[XA_ZDICT_MAX];
    xpb_buf sample;          /* records seen while there is no dictionary */
    xpb_buf out;             /* the last deflated chunk */
    int64_t open_id;         /* the chunk being filled (0: none), its records: */
    xpb_buf open;
    int64_t cache_id;        /* the last chunk read, inflated */
    xpb_buf cache;
    xpb_buf whole;           /* the last record restored */
    xpb_buf body;            /* the last body read (xa_z_body) */
} xa_z;

#define XA_CONV_CACHE 4096 /* conversation ids kept in memory */

struct xa_db {
    sqlite3 *h;
    char *path;
    bool in_tx;
    int64_t cutoff_us;
    uint8_t secret[16]; /* the key hash's secret (resume.secret) */
    sqlite3_stmt *stmt[XA_N_STMTS];
    xa_z z;
    /* Changes that may wait for their message (msg.target_ref set): counted
     * at each xa_db_begin, raised for each change stored; while it is 0 a
     * new message has nothing to look up (changes.c). */
    int64_t n_pending;
    /* Our nicks in rooms (ownnick): counted at each xa_db_begin; while 0 a
     * room message has no nick of ours to look up (store.c). */
    int64_t n_ownnick;
    /* The conversations' ids last used (store.c), forgotten at a rollback
     * (the rows it added went with it). */
    struct xa_conv_slot {
        uint64_t hash;
        int64_t id;
        char *account, *jid;
    } conv_cache[XA_CONV_CACHE];
};

/* The statement id, prepared from sql on first use, reset and unbound. */
int xa_db_stmt(struct xa_db *db, xa_stmt_id id, const char *sql, sqlite3_stmt **out, char *err,
               size_t errlen);

/* zrec.c. open: the current dictionary; add: appends a record to the open
 * chunk, *ref its message.rec; flush: writes the open chunk (before each
 * commit); record: the plain record ref names (valid until the next call);
 * rollback/commit: what a rolled-back transaction made is forgotten. */
void xa_conv_cache_clear(struct xa_db *db);
int xa_z_open(struct xa_db *db, char *err, size_t errlen);
void xa_z_close(struct xa_db *db);
int xa_z_add(struct xa_db *db, const uint8_t *rec, size_t len, int64_t *ref, char *err,
             size_t errlen);
int xa_z_flush(struct xa_db *db, char *err, size_t errlen);
int xa_z_record(struct xa_db *db, int64_t ref, const uint8_t **rec, size_t *len);
/* The SQL function xpb_body(rec): the body of the record rec names (NULL
 * when it has none), for the TEMP view `message` (db.c) and prune. */
int xa_z_register(struct xa_db *db, char *err, size_t errlen);
/* The record's first body text (extract.c's choice), into db's buffer
 * (NUL-terminated, valid until the next call); *body NULL when it has none. */
int xa_z_body(struct xa_db *db, const uint8_t *rec, size_t len, const char **body);
/* msg.strip: what the stored record left out because a column holds it. */
#define XA_STRIP_ID 1
#define XA_STRIP_ORIGIN_ID 2
/* ...and the columns left NULL because the view (db.c) derives them: */
#define XA_STRIP_MSG_ID_IS_ORIGIN 8   /* msg_id: the origin-id */
#define XA_STRIP_BY_DEFAULT 16        /* stanza_id_by: the room, or our account */
#define XA_STRIP_SENDER_PEER 32       /* sender: the conversation's JID (1:1) */
#define XA_STRIP_SENDER_ACCOUNT 64    /* sender: our account (1:1) */
/* The record *rec with the stripped fields put back (*rec then points into
 * db's buffer, valid until the next call). */
int xa_z_restore(struct xa_db *db, int strip, const char *id, const char *origin_id,
                 const uint8_t **rec, size_t *len);
void xa_z_rollback(struct xa_db *db);
void xa_z_commit(struct xa_db *db);

#endif
