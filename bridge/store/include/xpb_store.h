/* The state directory's database (docs/durability.md): one SQLite file in WAL
 * mode holding the event journal (replay by seq), accepted sends until the
 * server acknowledges them, XEP-0198 resumption state, and XEP-0313 archive
 * markers with the stanza-ids seen (XEP-0359). Every write is a transaction;
 * how far a commit goes before the call returns is the sync mode
 * (xpb_store_sync). In every mode a kill -9 loses nothing that was reported
 * written (WAL: a commit is in the file when it returns). A power cut: with
 * XPB_STORE_SYNC_FULL nothing; with XPB_STORE_SYNC_SENDS (the default) no
 * accepted send, but the newest journal events, XEP-0198 state and markers
 * may go back to an earlier commit, together (a WAL recovers a prefix of its
 * commits), and the catch-up from the server's archive brings the events
 * back (docs/durability.md, "Power cuts"); with XPB_STORE_SYNC_NORMAL the
 * newest sends may be lost too. One store per process; call it from one
 * thread. With the store thread (xpb_store_thread_start) the writes are
 * handed to it instead and the caller's connection only reads. */
#ifndef XPB_STORE_H
#define XPB_STORE_H

#include <stddef.h>
#include <stdint.h>

#define XPB_STORE_FILE "xpbridge.db"
#define XPB_STORE_LOCK_FILE "xpbridge.lock" /* flock(2): one bridge per state directory */
#define XPB_STORE_SCHEMA_VERSION 3          /* 2: sm.jid; 3: marker.stream */
#define XPB_STORE_DEFAULT_MAX_BYTES (1024ull * 1024u * 1024u) /* journal retention: 1 GiB */
#define XPB_STORE_DEFAULT_MAX_AGE_S (7u * 24u * 3600u)        /* journal retention: 7 days */
#define XPB_STORE_JOURNAL_ID_LEN 32                           /* hex characters */

typedef struct xpb_store_config {
    const char *dir;           /* the state directory; created 0700 when missing */
    uint64_t journal_max_bytes; /* 0: XPB_STORE_DEFAULT_MAX_BYTES */
    uint64_t journal_max_age_s; /* 0: XPB_STORE_DEFAULT_MAX_AGE_S */
    uint64_t max_db_pages;      /* 0: no limit; tests set it to stand in for a full disk */
    int sync; /* an xpb_store_sync; 0: XPB_STORE_SYNC_SENDS */
} xpb_store_config;

/* How far a commit goes before it returns (above; docs/configuration.md, state.sync). */
typedef enum xpb_store_sync {
    XPB_STORE_SYNC_SENDS = 0,  /* a commit with outbox rows waits for the disk; others do not */
    XPB_STORE_SYNC_FULL = 1,   /* every commit fsynced (synchronous=FULL) */
    XPB_STORE_SYNC_NORMAL = 2, /* no commit waited for (synchronous=NORMAL) */
} xpb_store_sync;

typedef struct xpb_store xpb_store;

/* Takes an exclusive flock on DIR/xpbridge.lock (held until xpb_store_close),
 * then opens (creating) DIR/xpbridge.db. XPB_ESTORELOCKED when another
 * process holds the lock (err names the directory and that process's pid);
 * XPB_ESTORERO, XPB_ESTOREFULL or XPB_ESTORE with err naming the directory
 * and SQLite's reason. */
int xpb_store_open(xpb_store **out, const xpb_store_config *cfg, char *err, size_t errlen);
void xpb_store_close(xpb_store *s); /* NULL is fine */
/* Random, made when the journal was created: a subscriber tells "the bridge
 * restarted" (same id, seq goes on) from "the journal was replaced". */
const char *xpb_store_journal_id(const xpb_store *s);
/* The sync mode it was opened with (an xpb_store_sync). */
int xpb_store_get_sync(const xpb_store *s);

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

/* ---- group commit ------------------------------------------------------------------ */
/* One transaction for many outbox writes, so that they cost one fsync. After
 * xpb_store_batch_begin, outbox puts and dones join it until
 * xpb_store_batch_commit. Any other write (the journal, the XEP-0198 state,
 * markers, seen ids) and xpb_store_close commit the open batch first. Each
 * commit (or its failure) calls on_commit(ud, rc, err) once: rc 0 when every
 * row written in the batch is on disk, else XPB_ESTOREFULL, XPB_ESTORERO or
 * XPB_ESTORE with err naming the directory (the batch's rows are then gone).
 * on_commit must not call the store. */
typedef void (*xpb_store_commit_cb)(void *ud, int rc, const char *err);
int xpb_store_batch_begin(xpb_store *s, xpb_store_commit_cb on_commit, void *ud, char *err,
                          size_t errlen);
int xpb_store_batch_commit(xpb_store *s);
int xpb_store_batch_open(const xpb_store *s);

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
    char jid[3072]; /* the stream's bound full JID (RFC 7622 §3.1: at most 3071 bytes) */
} xpb_sm_state;

int xpb_store_sm_save(xpb_store *s, const char *account, const xpb_sm_state *st, char *err,
                      size_t errlen);
/* 0 and *st filled, 1 when none is saved, or an error. */
int xpb_store_sm_load(xpb_store *s, const char *account, xpb_sm_state *st, char *err,
                      size_t errlen);
int xpb_store_sm_clear(xpb_store *s, const char *account, char *err, size_t errlen);

/* ---- XEP-0313 markers and XEP-0359 de-duplication ---------------------------------- */
/* The last archive stanza-id of archive (the account's bare JID, or a room)
 * whose events are in the journal. 0 and out filled, 1 when none, or error.
 * stream (NULL: not wanted) gets the XEP-0198 stream id the marker was
 * written in while the archive was caught up, "" when it was not. */
int xpb_store_marker_get(xpb_store *s, const char *account, const char *archive, char *out,
                         size_t outlen, char *stream, size_t streamlen, char *err, size_t errlen);
/* stream NULL: "". */
int xpb_store_marker_set(xpb_store *s, const char *account, const char *archive,
                         const char *stanza_id, const char *stream, char *err, size_t errlen);
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
    const char *stream;    /* and its stream (caught up in it); NULL: "" */
} xpb_store_seen_item;
int xpb_store_seen_commit(xpb_store *s, const xpb_store_seen_item *it, size_t n, int64_t now_us,
                          char *err, size_t errlen);

/* ---- the store thread ---------------------------------------------------------------
 * Commits, fsyncs and WAL checkpoints off the caller's (event loop's) thread.
 * After xpb_store_thread_start the writes go through xpb_store_submit_*: each
 * is queued (a mutex-protected list swap per round, nothing else shared) and
 * runs on the store thread, on a connection of its own, in the order
 * submitted; the thread takes everything queued at once and writes it in one
 * transaction (a group commit: one fsync per round when it wrote outbox rows
 * in XPB_STORE_SYNC_SENDS, one per commit in FULL), then checkpoints the WAL
 * when it passed XPB_STORE_CHECKPOINT_PAGES (PASSIVE: readers are never
 * waited for). When a round fails (a full or read-only disk), it is rolled
 * back and each write is tried again alone, so each gets its own outcome.
 * Then notify(ud) is called on the store thread; the caller answers by calling
 * xpb_store_complete on its own thread, which calls each write's done
 * callback there, in submit order, once it is committed (and, for an outbox
 * row, on disk per the sync mode), or failed. The other calls of this header
 * (reads, xpb_store_journal_stats) stay on the caller's thread; writing with
 * the synchronous calls while the thread runs is not allowed. */
#define XPB_STORE_CHECKPOINT_PAGES 1000u /* SQLite's own automatic checkpoint size */

typedef void (*xpb_store_notify_fn)(void *ud);
int xpb_store_thread_start(xpb_store *s, xpb_store_notify_fn notify, void *ud, char *err,
                           size_t errlen);
/* 1 when the store thread runs (writes go through xpb_store_submit_*). */
int xpb_store_threaded(const xpb_store *s);
/* Calls the done callbacks of the writes that finished (the caller's thread). */
void xpb_store_complete(xpb_store *s);
/* Blocks until every write submitted so far has finished, then completes
 * them (xpb_store_complete). For the rare paths that must know now. */
void xpb_store_wait(xpb_store *s);

/* A write's outcome, on the caller's thread: rc 0, or XPB_ESTOREFULL,
 * XPB_ESTORERO or XPB_ESTORE with err naming the directory and the cause.
 * account and id are the write's (NULL and 0 when it has none); for
 * xpb_store_submit_seen, id is 1 when the markers were left out (below). */
typedef void (*xpb_store_done_cb)(void *ud, const char *account, uint64_t id, int rc,
                                  const char *err);
/* Every submit: 0 when queued (cb will be called once, cb may be NULL), or
 * XPB_ENOMEM / XPB_EINVAL (no thread) and nothing is queued. */
/* ev and what it points to stay the caller's, unchanged, until cb. */
int xpb_store_submit_journal(xpb_store *s, const xpb_journal_event *ev, size_t n,
                             xpb_store_done_cb cb, void *ud);
int xpb_store_submit_trim(xpb_store *s, int64_t now_us, xpb_store_done_cb cb, void *ud);
/* The others copy what they are given. */
int xpb_store_submit_outbox_put(xpb_store *s, const xpb_outbox_item *it, xpb_store_done_cb cb,
                                void *ud);
int xpb_store_submit_outbox_done(xpb_store *s, const char *account, uint64_t id,
                                 xpb_store_done_cb cb, void *ud);
int xpb_store_submit_sm_save(xpb_store *s, const char *account, const xpb_sm_state *st,
                             xpb_store_done_cb cb, void *ud);
int xpb_store_submit_sm_clear(xpb_store *s, const char *account, xpb_store_done_cb cb,
                              void *ud);
/* xpb_store_seen_commit on the thread. The markers are left out (the seen ids
 * are still written) when a journal append failed since the previous
 * xpb_store_submit_seen ran: a marker moves only past events in the journal. */
int xpb_store_submit_seen(xpb_store *s, const xpb_store_seen_item *it, size_t n, int64_t now_us,
                          xpb_store_done_cb cb, void *ud);

#endif
