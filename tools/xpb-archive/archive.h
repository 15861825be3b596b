/* xpb-archive's archive (docs/archive.md): a SQLite database (WAL) of the
 * messages the bridge's events carried, each stored once. db.c opens and
 * checks it, extract.c turns an event into a row, store.c writes rows with
 * de-duplication, changes.c links corrections and retractions, query.c reads.
 * Not installed: the cmd_*.c files, the unit tests and the benchmark use it. */
#ifndef XPB_ARCHIVE_H
#define XPB_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xpb/v1/bus.pb-c.h"
#include "xpb_arena.h"
#include "xpb_stanza.h"

/* The schema this build writes and the newest it reads (PRAGMA user_version). */
#define XA_SCHEMA_VERSION 3
#define XA_ERR_MAX 512      /* bytes of an error sentence */
#define XA_JOURNAL_ID_MAX 64 /* EventBatch.journal_id: the bridge writes 32 hex digits */

/* Errors: 0 or one of these; each comes with a sentence in the caller's err. */
enum {
    XA_EIO = -1,       /* SQLite failed otherwise (the sentence has its message) */
    XA_ECORRUPT = -2,  /* not an archive database, or a damaged one */
    XA_ENEWER = -3,    /* written by a newer xpb-archive (user_version > XA_SCHEMA_VERSION) */
    XA_EREADONLY = -4, /* the file or its directory is read-only */
    XA_EFULL = -5,     /* the disk is full or the file size limit was hit */
    XA_ENOMEM = -6,
    XA_EINVAL = -7,   /* a record that cannot be archived (the sentence says why) */
    XA_ENOTFOUND = -8 /* the database file does not exist (read-only commands) */
};

typedef enum xa_mode {
    XA_OPEN_CREATE, /* read-write, created (with the schema) when missing */
    XA_OPEN_WRITE,  /* read-write, must exist */
    XA_OPEN_READ,   /* read-only, must exist */
} xa_mode;

typedef struct xa_db xa_db;

/* Opens path and checks it: an SQLite file, our schema, not newer, writable
 * when asked. 0 with *out, or XA_E… with err filled ("FILE: ..."). */
int xa_db_open(const char *path, xa_mode mode, xa_db **out, char *err, size_t errlen);
void xa_db_close(xa_db *db);
/* The handle, for query.c and the commands' own reads. */
struct sqlite3 *xa_db_sqlite(xa_db *db);
/* SQLite's result code rc as one of ours, with "what: message" in err. */
int xa_db_error(xa_db *db, int rc, const char *what, char *err, size_t errlen);

/* Transactions: one per event batch. xa_db_commit writes the resume point
 * (journal_id may be NULL: kept as it is) in the same transaction. */
int xa_db_begin(xa_db *db, char *err, size_t errlen);
int xa_db_commit(xa_db *db, const char *journal_id, uint64_t seq, char *err, size_t errlen);
/* The same without touching the resume point (import, prune). */
int xa_db_commit_plain(xa_db *db, char *err, size_t errlen);
void xa_db_rollback(xa_db *db);
bool xa_db_in_transaction(const xa_db *db);
/* The resume point: journal_id ("" when none) and the last seq stored. */
int xa_db_resume(xa_db *db, char journal_id[XA_JOURNAL_ID_MAX + 1], uint64_t *seq, char *err,
                 size_t errlen);

/* ---- one archived message (extract.c) ---------------------------------- */
typedef enum xa_kind {
    XA_KIND_MESSAGE = 0,
    XA_KIND_CORRECTION = 1, /* XEP-0308 <replace id=''/> */
    XA_KIND_RETRACTION = 2, /* XEP-0424 <retract id=''/> (or the older apply-to form) */
} xa_kind;

typedef enum xa_dir { XA_DIR_IN = 0, XA_DIR_OUT = 1 } xa_dir;

typedef struct xa_msg {
    const char *account;      /* bare JID */
    const char *conversation; /* peer's bare JID, or the room's */
    xa_dir direction;
    bool own;                 /* from a Delivery: we sent it */
    bool groupchat;
    const char *sender;       /* nick in rooms; bare JID otherwise; NULL when unknown */
    const char *stanza_id, *stanza_id_by; /* XEP-0359, the archive's own when several */
    const char *origin_id;
    const char *msg_id;       /* the stanza's id attribute */
    int64_t time_us;          /* the delay stamp, else the event's time */
    const char *body;
    xa_kind kind;
    const char *target;       /* correction/retraction: the id it names */
    const xpb_stanza *stanza; /* the message itself (a carbon's inner one), plain */
} xa_msg;

#define XA_SKIP 1 /* xa_extract: nothing to archive in this event */
/* Reads ev: 0 with *m filled (pointers into ev or arena a), XA_SKIP for an
 * event that carries no message to archive (presence, a chat state, an
 * error, a delivery other than ACKED...), or XA_EINVAL (err says why). */
int xa_extract(xpb_arena *a, const Xpb__V1__Event *ev, xa_msg *m, char *err, size_t errlen);
/* An event from untrusted bytes, owned by arena a: the wire walk bounds the
 * nesting depth and refuses a NUL in any string (xpb_pb_check_wire_nul), then
 * protobuf-c unpacks it with the arena's allocator (nothing to free: the
 * arena's reset does it). NULL with err filled when refused. */
Xpb__V1__Event *xa_event_unpack(xpb_arena *a, const uint8_t *data, size_t len, char *err,
                                size_t errlen);
/* xa_extract for an event from xa_event_unpack: its stanza is checked
 * (xpb_stanza_check) and made plain in place instead of copied, so ev
 * changes (strings it gains are in a). */
int xa_extract_owned(xpb_arena *a, Xpb__V1__Event *ev, xa_msg *m, char *err, size_t errlen);
/* XEP-0082 date-time ("2026-12-06T03:43:21.5Z", offsets allowed) to
 * microseconds since 1970; -1 when it is not one. */
int64_t xa_parse_stamp(const char *s);
/* The other way: "YYYY-MM-DDThh:mm:ss.uuuuuuZ" (or without fraction). */
void xa_format_stamp(int64_t us, char *out, size_t outlen);

/* ---- writing (store.c, changes.c) --------------------------------------- */
typedef struct xa_counts {
    uint64_t events, stored, duplicates, changes, linked, skipped, refused;
} xa_counts;

/* Stores m inside the open transaction unless it is there already (same
 * (account, stanza-id by, stanza-id), else origin-id in the conversation,
 * else content hash); a duplicate fills what the stored copy lacks (a
 * stanza-id, the sender, our direction). Counts in c. */
int xa_store(xa_db *db, xpb_arena *a, const xa_msg *m, xa_counts *c, char *err, size_t errlen);
/* Runs xa_extract then xa_store for one event (the path `run` and `import`
 * share). A refused record is counted, not an error. */
int xa_ingest(xa_db *db, xpb_arena *a, const Xpb__V1__Event *ev, xa_counts *c, char *err,
              size_t errlen);
/* The same for an event from xa_event_unpack in arena a (xa_extract_owned);
 * the caller resets a afterwards, which frees ev. */
int xa_ingest_owned(xa_db *db, xpb_arena *a, Xpb__V1__Event *ev, xa_counts *c, char *err,
                    size_t errlen);
/* Ingest drops messages older than this (0: keep all); `run --keep-days`. */
void xa_db_set_cutoff(xa_db *db, int64_t cutoff_us);

/* changes.c: a correction or retraction just stored as row `id` is linked to
 * the message it names; a message just stored picks up the changes that
 * arrived before it. */
int xa_link_change(xa_db *db, int64_t id, const xa_msg *m, xa_counts *c, char *err, size_t errlen);
int xa_link_pending(xa_db *db, int64_t id, const xa_msg *m, xa_counts *c, char *err,
                    size_t errlen);

/* Deletes messages older than cutoff_us with their changes; *n: how many. */
int xa_prune(xa_db *db, int64_t cutoff_us, uint64_t *n, char *err, size_t errlen);

/* ---- reading (query.c) -------------------------------------------------- */
typedef struct xa_filter {
    const char *with, *account; /* NULL: any */
    int64_t since_us, until_us; /* 0: no bound */
    long long limit;            /* 0: none */
    bool relevance;             /* search: by FTS5 rank, else newest first */
    bool changes;               /* export: corrections and retractions too */
} xa_filter;

typedef struct xa_row {
    int64_t id;
    const char *account, *conversation, *sender, *body, *edited_body, *stanza_id, *stanza_id_by,
        *origin_id;
    xa_dir direction;
    xa_kind kind;
    int64_t time_us, target, retracted_us;
    const uint8_t *record;
    size_t record_len;
    bool groupchat;
} xa_row;

typedef int (*xa_row_fn)(void *ud, const xa_row *row);
/* FTS5 search: each word of query must occur (as typed: words are quoted,
 * so no FTS5 syntax is needed or possible). Retracted messages are not found. */
int xa_search(xa_db *db, const char *query, const xa_filter *f, xa_row_fn fn, void *ud, char *err,
              size_t errlen);
/* Every stored row in the order stored (messages, and changes with f->changes). */
int xa_each(xa_db *db, const xa_filter *f, xa_row_fn fn, void *ud, char *err, size_t errlen);

#endif
