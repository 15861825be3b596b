/* The state directory's database (docs/durability.md): one SQLite file in WAL
 * mode holding the event journal (replay by seq), accepted sends until the
 * server acknowledges them, XEP-0198 resumption state, and XEP-0313 archive
 * markers with the stanza-ids seen (XEP-0359). Every write is a transaction
 * that is on disk when the call returns (synchronous=FULL), so a kill -9 or a
 * power cut loses nothing that was reported written (with sync_normal, a
 * kill -9 still loses nothing; a power cut may lose the last commits). One
 * store per process; call it from one thread. */
#ifndef XPB_STORE_H
#define XPB_STORE_H

#include <stddef.h>
#include <stdint.h>

#define XPB_STORE_FILE "xpbridge.db"
#define XPB_STORE_SCHEMA_VERSION 1
#define XPB_STORE_DEFAULT_MAX_BYTES (1024ull * 1024u * 1024u) /* journal retention: 1 GiB */
#define XPB_STORE_DEFAULT_MAX_AGE_S (7u * 24u * 3600u)        /* journal retention: 7 days */
#define XPB_STORE_JOURNAL_ID_LEN 32                           /* hex characters */

typedef struct xpb_store_config {
    const char *dir;           /* the state directory; created 0700 when missing */
    uint64_t journal_max_bytes; /* 0: XPB_STORE_DEFAULT_MAX_BYTES */
    uint64_t journal_max_age_s; /* 0: XPB_STORE_DEFAULT_MAX_AGE_S */
    uint64_t max_db_pages;      /* 0: no limit; tests set it to stand in for a full disk */
    int sync_normal; /* 1: synchronous=NORMAL: a commit survives kill -9 but may be lost to a
                        power cut; 0 (default): FULL, on disk when the call returns */
} xpb_store_config;

typedef struct xpb_store xpb_store;

/* Opens (creating) DIR/xpbridge.db. XPB_ESTORERO, XPB_ESTOREFULL or XPB_ESTORE
 * with err naming the directory and SQLite's reason. */
int xpb_store_open(xpb_store **out, const xpb_store_config *cfg, char *err, size_t errlen);
void xpb_store_close(xpb_store *s); /* NULL is fine */
/* Random, made when the journal was created: a subscriber tells "the bridge
 * restarted" (same id, seq goes on) from "the journal was replaced". */
const char *xpb_store_journal_id(const xpb_store *s);

/* ---- the event journal ---------------------------------------------------------- */
typedef struct xpb_journal_event {
    uint64_t seq;
    int64_t time_us;
    const char *topic; /* NUL-terminated */
    const uint8_t *record;
    size_t record_len;
} xpb_journal_event;

typedef struct xpb_journal_stats {
    uint64_t first_seq, last_seq; /* first_seq 0 when empty; last_seq goes on across restarts */
    uint64_t events, bytes;       /* kept now: count and topic + record bytes */
    uint64_t appended, trimmed, replays, replayed_events, append_errors;
} xpb_journal_stats;

/* The seq the next appended event must carry (last_seq + 1). */
uint64_t xpb_store_next_seq(const xpb_store *s);
/* Appends n events in one transaction (a group commit); their seqs must grow
 * and be at least xpb_store_next_seq. On error nothing of them is kept. */
int xpb_store_journal_append(xpb_store *s, const xpb_journal_event *ev, size_t n, char *err,
                             size_t errlen);
/* Calls cb for each kept event with seq >= from_seq whose topic starts with
 * topic_prefix ("" for all), in seq order, at most max_events of them; *next
 * gets the seq to ask for next (past the last one examined). cb returns
 * non-zero to stop early. XPB_EREPLAYGONE, with err naming the oldest seq
 * kept, when events from from_seq on are no longer all kept. */
typedef int (*xpb_journal_cb)(void *ud, const xpb_journal_event *ev);
int xpb_store_journal_read(xpb_store *s, uint64_t from_seq, const char *topic_prefix,
                           size_t max_events, xpb_journal_cb cb, void *ud, uint64_t *next,
                           char *err, size_t errlen);
/* Drops the oldest events until the journal fits journal_max_bytes and none is
 * older than journal_max_age_s before now_us. */
int xpb_store_journal_trim(xpb_store *s, int64_t now_us, char *err, size_t errlen);
void xpb_store_journal_stats(const xpb_store *s, xpb_journal_stats *out);

/* ---- accepted sends until the server acknowledges them ---------------------------- */
typedef struct xpb_outbox_item {
    const char *account;    /* bare JID */
    uint64_t id;            /* the daemon's handle, unique per account */
    const char *stanza_id;  /* the id the stanza carries (kept when resent) */
    const char *request_id; /* the bus request that made it, or NULL */
    const uint8_t *xml;     /* the stanza as written to the stream */
    size_t xml_len;
} xpb_outbox_item;

int xpb_store_outbox_put(xpb_store *s, const xpb_outbox_item *it, char *err, size_t errlen);
/* Acknowledged by the server, or failed for good: forget it. */
int xpb_store_outbox_done(xpb_store *s, const char *account, uint64_t id, char *err,
                          size_t errlen);
/* Every kept item of account, oldest first (after a restart: send them again). */
typedef int (*xpb_outbox_cb)(void *ud, const xpb_outbox_item *it);
int xpb_store_outbox_each(xpb_store *s, const char *account, xpb_outbox_cb cb, void *ud,
                          char *err, size_t errlen);
size_t xpb_store_outbox_count(xpb_store *s, const char *account);

/* ---- XEP-0198 resumption state ----------------------------------------------------- */
typedef struct xpb_sm_state {
    char id[256];       /* <enabled id=.../> */
    char location[256]; /* <enabled location=.../>, "" when none */
    uint32_t h_in, h_out;
    int64_t saved_us;
} xpb_sm_state;

int xpb_store_sm_save(xpb_store *s, const char *account, const xpb_sm_state *st, char *err,
                      size_t errlen);
/* 0 and *st filled, 1 when none is saved, or an error. */
int xpb_store_sm_load(xpb_store *s, const char *account, xpb_sm_state *st, char *err,
                      size_t errlen);
int xpb_store_sm_clear(xpb_store *s, const char *account, char *err, size_t errlen);

/* ---- XEP-0313 markers and XEP-0359 de-duplication ---------------------------------- */
/* The last archive stanza-id of archive (the account's bare JID, or a room)
 * whose events are in the journal. 0 and out filled, 1 when none, or error. */
int xpb_store_marker_get(xpb_store *s, const char *account, const char *archive, char *out,
                         size_t outlen, char *err, size_t errlen);
int xpb_store_marker_set(xpb_store *s, const char *account, const char *archive,
                         const char *stanza_id, char *err, size_t errlen);
/* Records stanza_id as seen for (account, archive): 0 when new, 1 when it was
 * seen before (a duplicate), or an error. Keeps at most XPB_STORE_SEEN_MAX ids
 * per archive, dropping the oldest. */
#define XPB_STORE_SEEN_MAX 10000u
int xpb_store_seen(xpb_store *s, const char *account, const char *archive, const char *stanza_id,
                   int64_t now_us, char *err, size_t errlen);
/* 1 when stanza_id is recorded as seen for (account, archive), 0 when not, or
 * an error. Writes nothing. */
int xpb_store_seen_has(xpb_store *s, const char *account, const char *archive,
                       const char *stanza_id, char *err, size_t errlen);
/* Records many seen ids and markers in one transaction (on disk when it
 * returns, or none of them): the daemon writes them after the events they
 * stand for are in the journal. */
typedef struct xpb_store_seen_item {
    const char *account, *archive;
    const char *stanza_id; /* recorded as seen; NULL: none */
    const char *marker;    /* the archive's new marker (xpb_store_marker_set); NULL: none */
} xpb_store_seen_item;
int xpb_store_seen_commit(xpb_store *s, const xpb_store_seen_item *it, size_t n, int64_t now_us,
                          char *err, size_t errlen);

#endif
