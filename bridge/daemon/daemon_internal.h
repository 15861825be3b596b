/* Internal to the daemon library (bridge/daemon/): the state its files share
 * and the functions they call across file boundaries. Each file owns a seam:
 *   daemon.c    the core: new/free, session events -> bus events, publish,
 *               shutdown, counters, the one session-state table
 *   accounts.c  accounts: password files, start, close, reap, reload
 *   iq.c        pending iqs: tracking, matching a response, timeouts
 *   muc.c       MUC: join, rejoin, XEP-0410 self-ping, instant rooms
 *   requests.c  the bus requests (req_*) and their dispatch, sending
 *   catchup.c   catch-up from the server's archive (XEP-0313) after a fresh bind
 *   status.c    the list and status requests
 *   sm_keep.c   the XEP-0198 state kept through the state back end
 *   sends.c     durable sends: ids, the outbox, the group commit, resends
 *   delivery.c  the Delivery events of sent stanzas (tracked by handle),
 *               XEP-0184 receipts
 *   state.c     the state directory; the local state back end (SQLite)
 *   state_nats.c the NATS state back end (KV buckets xpb_sm, xpb_outbox)
 *   marks_nats.c its MAM markers and seen stanza-ids (KV bucket xpb_marks)
 * Everything runs on the loop thread; timers are the loop's (xpb_loop.h).
 * The state directory's writes run on the store thread (xpb_store.h); their
 * completions come back on the loop through store_wake (state.c). */
#ifndef XPB_DAEMON_INTERNAL_H
#define XPB_DAEMON_INTERNAL_H

#include <time.h>

#include "xpb_daemon.h"
#include "xpb_store.h"
#include "open_policy.h"
#include "xpb_loop.h"
#include "xpb_session.h"
#include "xpb_shards.h"
#include "xpb_stanza.h"
#include "xpb_strmap.h"
#include "xpb_trust.h"

typedef Xpb__V1__SessionState__State pub_state;

enum iq_kind { IQ_USER, IQ_ROSTER, IQ_SELFPING, IQ_CATCHUP };

/* A sent stanza whose outcome a Delivery event reports. Outcomes arrive in
 * send order and handles grow, so the FIFO is searched from its head (or
 * from where the last search ended) and stops at a larger handle. */
struct handle_ent {
    struct handle_ent *next;
    uint64_t handle;
    char *request_id, *stanza_id;
    uint64_t outbox_id;    /* its row in the store's outbox; 0: not kept */
    int resent;            /* sent again after a restart (Delivery.resent) */
    uint8_t *record;       /* a message: its packed record, for ACKED's Delivery.stanza
                            * (in the entry's own block, like the two ids) */
    size_t record_len;
    int received;          /* its XEP-0184 receipt came before the server's ack */
};

/* A message sent with SendStanza.receipt, waiting for the peer's XEP-0184
 * <received/>; only its addressee (bare JID) may confirm it. */
struct receipt_wait {
    struct receipt_wait *next;
    char *stanza_id, *peer, *request_id;
};

struct room {
    struct room *next;
    char *room, *nick, *password;
    char *norm;            /* room normalised (RFC 7622), made on first use; NULL: not yet */
    int history;
};

struct account;
struct batch_job;
struct pending_iq {
    struct pending_iq *next, *prev;   /* every pending iq of the daemon */
    struct pending_iq *anext, *aprev; /* those of acc: what a response is matched against */
    xpb_daemon *d;
    struct account *acc;
    enum iq_kind kind;
    char *id, *peer;       /* peer NULL: the account's own server/bare JID */
    xpb_bus_request *req;  /* NULL for self-pings */
    xpb_timer *timer;
    unsigned timeout_ms;
    char *room;            /* self-ping: the room */
    char *mam_qid;         /* a MAM query (XEP-0313): its queryid, "" none; NULL: not MAM */
};

struct closer {
    struct closer *next;
    xpb_bus_request *req;
};

struct account {
    struct account *next;
    /* What a /metrics walk reads (visit_account), side by side: it touches
     * neither the loop session nor the session. */
    char *name;                /* bare JID */
    xpb_loop_session *ls;  /* its session on the daemon's loop (no worker loops), or */
    xpb_shard_session *ss; /* its proxy on a worker loop (link.c) */
    xpb_session_gauges gauges; /* its session's queue, written by the session */
    int dead;
    xpb_daemon *d;
    xpb_account_cfg cfg;
    int from_config;
    unsigned char *password;
    size_t password_len;
    char *full_jid;
    struct handle_ent *h_head, *h_tail;
    struct handle_ent *h_find; /* where find_handle last found one (or NULL) */
    int h_unordered; /* a handle was tracked after a larger one (a new session) */
    /* An outcome the session reported inside xpb_session_send, before the
     * handle was tracked (without XEP-0198 a written stanza is acked at
     * once): kept here and published as soon as send_for tracks it. */
    int in_send, early_set, early_sent;
    uint64_t early_handle;
    xpb_session_event_kind early_kind;
    char early_reason[256];
    struct room *rooms;
    struct pending_iq *iqs; /* this account's pending iqs (anext) */
    struct closer *closers;
    xpb_timer *close_timer;
    int removing;
    int bucket;            /* its XPB_MST_* in the daemon's live gauges; -1: not counted */
    uint64_t seen_reconnects, seen_resumptions; /* its session's, already in the totals */
    xpb_account_cfg *restart_cfg; /* reload: start again with this once stopped */
    /* The last broadcast presence a backend set (presence request without
     * `to`): a fresh session after a reconnect announces it again, so a
     * reconnect does not silently turn "away" back into the configured one. */
    int pres_set, pres_show, pres_has_prio, pres_prio;
    char *pres_status;
    struct catchup *cu; /* catchup.c: one per archive (ours, each room's) */
    char *cu_stream;    /* catchup.c: the XEP-0198 stream id markers are written in; NULL none */
    uint64_t outbox_next;  /* the next outbox id (sends.c); past every kept one */
    uint64_t outbox_n;     /* sends kept in the outbox now */
    struct receipt_wait *receipts; /* newest first, at most XPB_DAEMON_RECEIPTS_MAX */
    unsigned n_receipts;
    int sm_dirty; /* stanzas received since the XEP-0198 state was last kept */
    int sm_listed; /* on d->sm_list (sm_keep.c) */
    struct account *sm_next;
};

/* Where the XEP-0198 state and the accepted-but-unacknowledged sends are
 * kept (docs/durability.md, docs/scaling.md): the state directory's SQLite
 * store (state.c), or NATS KV when leases move accounts between bridges
 * (state_nats.c). sm_load and outbox_each are called inside account_start.
 * With async, outbox_put only queues the write: the backend calls
 * sends_kept when it is stored (or failed), and only then is the send
 * handed to its session and answered. */
struct state_ops {
    const char *where; /* for errors: "the state directory", "NATS KV" */
    int async;
    int (*sm_save)(xpb_daemon *d, const char *acc, const xpb_sm_state *st, char *err,
                   size_t errlen);
    int (*sm_clear)(xpb_daemon *d, const char *acc, char *err, size_t errlen);
    /* 0 and *st filled, 1 when none, < 0 on error. */
    int (*sm_load)(xpb_daemon *d, const char *acc, xpb_sm_state *st, char *err, size_t errlen);
    int (*outbox_put)(xpb_daemon *d, const xpb_outbox_item *it, char *err, size_t errlen);
    int (*outbox_done)(xpb_daemon *d, const char *acc, uint64_t id, char *err, size_t errlen);
    int (*outbox_each)(xpb_daemon *d, const char *acc, xpb_outbox_cb cb, void *ud, char *err,
                       size_t errlen);
    /* The MAM markers and seen stanza-ids of catch-up (catchup.c), as the
     * xpb_store_marker_get / _seen_has / _seen_commit of the store. seen_commit
     * is called once the events are handed to the bus (xpb_bus_flush);
     * upto_seq is the bus's last seq then: a back end whose bus acknowledges
     * later (NATS) writes them only once every event up to it is stored. */
    int (*marker_get)(xpb_daemon *d, const char *acc, const char *archive, char *out, size_t outlen,
                      char *stream, size_t streamlen, char *err, size_t errlen);
    int (*seen_has)(xpb_daemon *d, const char *acc, const char *archive, const char *stanza_id,
                    char *err, size_t errlen);
    int (*seen_commit)(xpb_daemon *d, const xpb_store_seen_item *it, size_t n, uint64_t upto_seq,
                       int64_t now_us, char *err, size_t errlen);
};

struct xpb_cluster;
/* A SendBatch whose items wait for the async state back end (sends.c): one
 * d->deferred entry per kept item, consecutive. Once every item's key is
 * stored or refused (and the group is sealed), item_done runs for each in
 * order (rc 0: kept, hand it over with sends_send_kept; else why says why,
 * and its outbox key is gone), then finish; nothing is sent before. */
struct send_prep;
struct send_group {
    void (*item_done)(struct send_group *g, struct send_prep *p, int rc, const char *why);
    void (*finish)(struct send_group *g);
    int sealed; /* every item was prepared */
};

struct state_nats;
struct marks_nats;
struct xpb_daemon {
    xpb_shards *shards; /* the worker loops (config loops >= 1), or NULL: sessions on loop */
    xpb_loop *loop;          /* given by xpb_daemon_new's caller */
    /* The accounts oldest first, for the sliced /metrics walk (walk.c):
     * walk_pos of them are left to visit, from walk_pos - 1 down. */
    struct account **walk_arr;
    size_t walk_n, walk_cap, walk_pos;
    uint64_t outbox_total;       /* the live accounts' outbox_n, kept as they change (sends.c) */
    unsigned dedupe_entries;     /* the bus's request-id cache holds this many answers */
    struct xpb_cluster *cluster; /* the NATS back end and the leases (cluster.c), or NULL */
    xpb_bus *bus;
    xpb_store *store; /* the state directory's database, or NULL */
    const struct state_ops *state; /* where sends and XEP-0198 state are kept; NULL: nowhere */
    struct state_nats *nstate;     /* state_nats.c's, with the NATS state back end */
    struct marks_nats *nmarks;     /* marks_nats.c's, with the NATS state back end */
    char state_dir[4096]; /* its directory, for errors */
    xpb_wake *store_wake; /* the store thread's completions wake the loop (state.c) */
    xpb_timer *sm_timer;  /* keeps the XEP-0198 state of accounts with sm_dirty (sm_keep.c) */
    int sm_timer_armed;
    struct account *sm_list; /* accounts the sm_timer saves: each marked dirty since (once) */
    /* Group commit (sends.c): sends whose outbox row is in the open batch,
     * sent and answered by commit_timer once the batch is on disk. */
    struct deferred *deferred, **deferred_tail;
    struct send_group *open_group; /* the SendBatch being prepared (async back end) */
    xpb_timer *put_retry_timer;    /* async back end: failed puts tried again (sends.c) */
    int put_retry_armed;
    struct batch_job *jobs; /* SendBatch requests waiting for the store thread (requests.c) */
    xpb_timer *commit_timer;
    int commit_armed;
    char commit_err[768]; /* the last failed commit's reason */
    xpb_arena *send_arena;
    uint64_t journal_max_bytes, journal_max_age_s; /* its retention in force */
    struct account *accounts;
    xpb_strmap by_name;      /* name -> the live account of that name (find_account) */
    struct pending_iq *iqs;
    xpb_arena *arena, *rarena;
    xpb_pack_plan *plan; /* sizes records for the byte counters (codec/pack.c) */
    xpb_record_limits limits;
    unsigned queue_max, muc_ping_s;
    unsigned backoff_reset_s; /* limits.backoff_reset_s */
    unsigned backoff_max_s;   /* limits.backoff_max_s */
    int compact_records; /* publish compact forms (docs/mapping.md §7) */
    xpb_open_rules open_rules; /* bus.allow_*: what an open request may do */
    xpb_account_cfg *conf;     /* the configuration's accounts: what open may start */
    size_t n_conf;
    xpb_daemon_counters ctr;
    /* Kept as sessions change (account_recount), so a status request or a
     * scrape reads them without walking 10,000 accounts. */
    unsigned n_bucket[XPB_MST_COUNT];
    uint64_t sum_reconnects, sum_resumptions; /* removed sessions' included */
    xpb_timer *reap_timer, *ping_timer, *shutdown_timer;
    int shutting_down;
    time_t started;
    uint64_t iq_counter;
    int iq_answer_version;  /* iq.answer_version */
    char **iq_passthrough;  /* iq.passthrough */
    size_t n_iq_passthrough;
    struct catchup_daemon *cu; /* catchup.c; NULL: off (no state back end, mam.catchup off) */
};

/* ---- daemon.c ------------------------------------------------------------------ */
char *xstrdup(const char *s);
int kind_index(Xpb__V1__Kind k);
/* The live (not dead) account of that name, in O(1). */
struct account *find_account(xpb_daemon *d, const char *name);
struct account *request_account(xpb_daemon *d, const char *name, char *why, size_t whylen);
/* ---- link.c: the account's session, on this loop or a worker's ------------- */
int link_present(const struct account *a);
int link_add(struct account *a, const xpb_session_config *sc, char *err, size_t errlen);
void link_remove(struct account *a);
void link_close(struct account *a);
xpb_session_state link_state(const struct account *a); /* XPB_SS_STOPPED: none */
void link_stats(const struct account *a, xpb_session_stats *st); /* zeros: none */
int link_sm(const struct account *a, xpb_session_sm *sm);          /* 1: none */
/* As xpb_session_send(_checked), with the id given (or the record's) into
 * id and the XML's size into *xml_bytes (either NULL: not wanted). */
int link_send(struct account *a, const xpb_stanza *st, int checked, uint64_t *h, char *id,
              size_t idlen, size_t *xml_bytes);
/* daemon.c: a session event of a, on the daemon's thread. */
void daemon_session_event(struct account *a, const xpb_session_event *ev);
void expand_id_uuid(xpb_stanza *st, char buf[37]);
struct handle_ent *track_handle(struct account *a, uint64_t h, const char *request_id,
                                const char *sid);
/* The same with a copy of the packed record (ACKED's Delivery.stanza); the
 * entry, its ids and its record are one block that free_handle frees. */
struct handle_ent *track_handle_record(struct account *a, uint64_t h, const char *request_id,
                                       const char *sid, const uint8_t *record, size_t record_len);
struct handle_ent *take_handle(struct account *a, uint64_t h);
struct handle_ent *find_handle(struct account *a, uint64_t h);
void free_handle(struct handle_ent *e);
void publish_event(xpb_daemon *d, const char *kind, const char *account, Xpb__V1__Event *ev);
int remember_config(xpb_daemon *d, const xpb_config *cfg);
void finish_shutdown(xpb_daemon *d);
/* The one session-state mapping (xpb_daemon_state_name names its buckets). */
pub_state daemon_bus_state(xpb_session_state s);
int daemon_state_bucket(xpb_session_state s);

/* ---- accounts.c ---------------------------------------------------------------- */
/* Brings the daemon's gauges and totals up to date with a's session (after
 * any event of it, and when a is started, marked dead or freed): O(1). */
void account_recount(struct account *a);
void answer_closers(struct account *a, const char *note);
void schedule_reap(xpb_daemon *d);
void account_free(struct account *a);
/* Password: inline (an open request) or from cfg->password_file. */
int account_start(xpb_daemon *d, const xpb_account_cfg *cfg, const char *password,
                  int from_config, char *err, size_t errlen);
void account_close(struct account *a);
void on_reap(void *arg);
/* walk.c: the array the /metrics walk reads. walk_reserve before an account
 * is started (room for one more), walk_add once it is, walk_drop_dead in
 * on_reap before the dead accounts are freed. */
int walk_reserve(xpb_daemon *d);
void walk_add(xpb_daemon *d, struct account *a);
void walk_drop_dead(xpb_daemon *d);
void walk_free(xpb_daemon *d);

/* ---- iq.c ---------------------------------------------------------------------- */
void pending_free(xpb_daemon *d, struct pending_iq *p);
struct pending_iq *pending_add(struct account *a, enum iq_kind kind, const char *id,
                               const char *peer, xpb_bus_request *req, unsigned ms);
void pending_drop_account(xpb_daemon *d, const struct account *a, const char *why);
struct pending_iq *pending_nth(xpb_daemon *d, const struct account *a, const char *id, size_t n);
void pending_resolve(struct pending_iq *p, xpb_stanza *st);

/* ---- muc.c --------------------------------------------------------------------- */
int join_stanza(const struct room *r, xpb_stanza *st, Xpb__V1__MucJoin *mj,
                Xpb__V1__MucHistory *hist, char *to, size_t tolen);
void join_one(struct account *a, const struct room *r);
void rejoin_rooms(struct account *a);
void accept_instant_room(struct account *a, const xpb_node *el);
void on_ping_timer(void *arg);
int room_add(struct account *a, const char *room, const char *nick, const char *pw, int history,
             struct room **out);

/* ---- requests.c ---------------------------------------------------------------- */
int send_own(struct account *a, const xpb_stanza *st);
void resend_presence(struct account *a);
/* The bus request handler (an xpb_bus_handler) that bus_start gives the bus. */
void on_request(void *ud, xpb_bus_request *req, const Xpb__V1__Request *r);
/* A SendBatch's row is written (or failed): at its last, sends_arm. */
void send_batch_kept(struct batch_job *j);
/* Sends and answers every SendBatch whose rows are all written, in order. */
void send_batch_run(xpb_daemon *d);
/* a is going away: its waiting SendBatches are refused when they finish. */
void send_batch_drop_account(struct account *a);

/* ---- sends.c ------------------------------------------------------------------- */
/* What sends_accept prepared for one send: its id, its packed record, its
 * outbox row. sends_done frees it. */
struct send_prep {
    char id[XPB_SESSION_ID_MAX];
    xpb_buf record;
    uint64_t outbox_id;
    int receipt;
    int in_batch;  /* its row is in the open batch (SEND_INBATCH): see sends_committed */
    int put_rc;    /* the store thread's outcome for its row (-1: not yet) */
    struct batch_job *job; /* the SendBatch it belongs to (requests.c), or NULL */
    char err[256]; /* why the outbox refused it, when it did */
};
#define SEND_RECEIPT 1u  /* SendStanza.receipt */
#define SEND_INBATCH 4u  /* a SendBatch item: its row joins the open batch, not answered
                            here; the caller commits (sends_commit) before any is sent */
#define SEND_BATCH 2u    /* may wait for the group commit: sends.c answers it */
#define SENDS_DEFERRED 1 /* sends_accept: kept for the group commit; answered later */
/* What a send request does once its stanza is handed to the session
 * (requests.c, send_then_run): at once, or, when sends.c deferred it (the
 * group commit, an async state back end), once it is kept. */
enum send_then_kind { THEN_REPLY, THEN_IQ, THEN_ROSTER, THEN_PRESENCE, THEN_JOIN };
struct send_then {
    enum send_then_kind kind;
    unsigned ms;  /* THEN_IQ: its timeout */
    int remember; /* THEN_PRESENCE: the broadcast presence to announce again */
};
/* st as sent (id set), id its stanza id. */
void send_then_run(struct account *a, xpb_bus_request *req, const xpb_stanza *st,
                   const char *id, const struct send_then *t);
/* Gives st an id (and a message an origin-id equal to it, XEP-0359), adds
 * the receipt request, and keeps it in the outbox before the request is
 * answered. 0; SENDS_DEFERRED (SEND_BATCH: its row joined the open batch,
 * or the async state back end stores it: sends.c sends it and runs then
 * once it is kept); or req is answered (ERR_STORAGE naming where) and an
 * error returned. then: NULL for a SendBatch item. request_id: what its
 * Delivery names (a SendBatch item's "<request_id>/<index>"), kept with it,
 * so the Delivery of a send made again after a restart names it too, and a
 * resend of the request is answered without sending it twice. */
int sends_accept(struct account *a, xpb_bus_request *req, const char *request_id, xpb_stanza *st,
                 unsigned flags, const struct send_then *then, struct send_prep *p);
/* Commits the open batch now, or with the store thread waits for the rows
 * handed to it (and sends and answers the deferred sends it held): 0, or the
 * store's error with err naming the directory (the batch's rows are gone).
 * Then sends_committed for each SEND_INBATCH prep: that item's outcome (rc,
 * or with the store thread its row's own, err then set to its reason). */
int sends_commit(xpb_daemon *d, char *err, size_t errlen);
int sends_committed(struct account *a, struct send_prep *p, int rc, char *err, size_t errlen);
/* The local store runs its thread: writes are handed to it (state.c). */
int state_threaded(const xpb_daemon *d);
/* The answer to a refused xpb_session_send. */
void reply_send_error(struct account *a, xpb_bus_request *req, int rc);
void reply_sent(struct account *a, xpb_bus_request *req, const char *id);
/* Remembers the answer a send of stanza id got for request_id (the bus's
 * cache: xpb_bus_remember_answer), for a send kept from the last run. */
void remember_sent(struct account *a, const char *request_id, const char *id);
/* The list and status requests (status.c). */
void req_list(xpb_daemon *d, xpb_bus_request *req);
void req_status(xpb_daemon *d, xpb_bus_request *req);
/* Commits the open batch and sends and answers what it held, and answers
 * (ERR_NOT_CONNECTED) what the async back end has not confirmed (before the
 * bus goes away). */
void sends_flush(xpb_daemon *d);
/* After this turn: the deferred sends and SendBatches whose rows are written
 * are sent and answered (the commit timer). */
void sends_arm(xpb_daemon *d);
/* The session refused it: forget its outbox row. */
void sends_abort(struct account *a, struct send_prep *p);
/* The session took it as handle h: track it, publish QUEUED, then what the
 * session reported inside the send (SENT, ACKED or FAILED). */
void sends_track(struct account *a, uint64_t h, const char *request_id, const xpb_stanza *st,
                 struct send_prep *p);
void sends_prep_free(struct send_prep *p);
/* Its outbox row (id; 0: none) is no longer needed: removed, in the turn's
 * batch where there is one. */
void sends_outbox_forget(struct account *a, uint64_t id);

/* ---- delivery.c ---------------------------------------------------------------- */
/* Session events: SENT, ACKED, FAILED (Delivery), SM (state kept). */
void publish_delivery(struct account *a, const xpb_session_event *sev);
/* The session took the stanza sid (kind) as handle h: tracked with p's
 * outbox id and, for a message, its packed record; NULL when out of memory. */
struct handle_ent *delivery_track(struct account *a, uint64_t h, const char *request_id,
                                  const char *sid, int kind, struct send_prep *p, int resent);
/* QUEUED, then what the session reported inside xpb_session_send. */
void delivery_after_send(struct account *a, uint64_t h, const struct handle_ent *e);
/* A message sent with SendStanza.receipt: wait for its addressee's receipt. */
void delivery_want_receipt(struct account *a, const char *id, const char *to, const char *rid);
void sends_on_sm(struct account *a);
/* A stanza was received: its h is kept within XPB_DAEMON_SM_SAVE_MS. */
void sends_on_inbound(struct account *a);
void sends_free(xpb_daemon *d);
void sends_on_stopped(struct account *a);
void sm_keep_forget(struct account *a); /* off d->sm_list: the account is being freed */
/* An inbound message: a XEP-0184 <received/> from the addressee is RECEIVED. */
void sends_on_receipt(struct account *a, const xpb_stanza *st);
/* Account start: the saved XEP-0198 state (1 when none), then the outbox
 * items the last process left unacknowledged, sent again. */
int sends_load_sm(struct account *a, xpb_session_sm *out);
void sends_resend(struct account *a);
void sends_account_free(struct account *a);
/* A kept send (its record) to its session, tracked under request_id: 0 and
 * *sent (valid until the next call), or the session's error (its outbox key
 * is then removed). */
int sends_send_kept(struct account *a, struct send_prep *p, const char *request_id,
                    const xpb_stanza **sent);
/* Every item of g was prepared (d->open_group is no longer g): it may run. */
void sends_group_sealed(xpb_daemon *d, struct send_group *g);
/* The async state back end stored (rc 0) or failed to store (err) the
 * outbox item (account, id): its deferred send goes out and is answered. */
void sends_kept(xpb_daemon *d, const char *account, uint64_t id, int rc, const char *err);

/* state.c: the state directory, the journal under the bus, Replay. */
int state_open(xpb_daemon *d, const xpb_config *cfg, char *err, size_t errlen);
void state_bus_config(xpb_daemon *d, xpb_bus_config *bc);
void state_close(xpb_daemon *d);
void req_replay(xpb_daemon *d, xpb_bus_request *req, const Xpb__V1__Replay *op);
extern const struct state_ops state_local_ops;

/* state_nats.c: the NATS state back end (docs/scaling.md). */
extern const struct state_ops state_nats_ops;
struct xpb_bus_nats_cfg;
/* Opens the buckets on a KV worker of its own and becomes d->state. */
int state_nats_init(xpb_daemon *d, const struct xpb_bus_nats_cfg *cfg, char *err,
                    size_t errlen);
void state_nats_free(xpb_daemon *d);
/* The KV worker of the NATS state back end: bucket indexes, for marks_nats.c. */
#define STATE_NATS_BUCKET_SM 0
#define STATE_NATS_BUCKET_OUTBOX 1
#define STATE_NATS_BUCKET_MARKS 2
struct xpb_kv *state_nats_kv(xpb_daemon *d);

/* marks_nats.c: markers and seen stanza-ids in KV bucket xpb_marks, kept in
 * memory for the accounts this bridge runs (read at their prefetch) and
 * written after JetStream acknowledged the events they stand for. */
int marks_nats_init(xpb_daemon *d);
void marks_nats_free(xpb_daemon *d); /* writes what the bus already acknowledged */
/* A prefetch's FETCH of <token>.* in xpb_marks: the account's marks from now on. */
int marks_nats_loaded(xpb_daemon *d, const char *jid, char *const *keys,
                      uint8_t *const *values, const size_t *lens, size_t n);
void marks_nats_forget(xpb_daemon *d, const char *jid); /* the account is no longer ours */
int marks_nats_marker_get(xpb_daemon *d, const char *acc, const char *archive, char *out,
                          size_t outlen, char *stream, size_t streamlen, char *err, size_t errlen);
int marks_nats_seen_has(xpb_daemon *d, const char *acc, const char *archive,
                        const char *stanza_id, char *err, size_t errlen);
int marks_nats_seen_commit(xpb_daemon *d, const xpb_store_seen_item *it, size_t n,
                           uint64_t upto_seq, int64_t now_us, char *err, size_t errlen);
/* Reads the account's XEP-0198 state and outbox from KV, then calls
 * cluster_prefetched(d, idx, jid, rc): account_start within that call sees
 * them through sm_load and outbox_each. 0, or the KV queue's error. */
int state_nats_prefetch(xpb_daemon *d, size_t idx, const char *jid);

/* catchup.c: catch-up from the server's archive (docs/durability.md). */
int catchup_init(xpb_daemon *d, const xpb_config *cfg);
void catchup_fini(xpb_daemon *d); /* records what is pending; before state_close */
void catchup_commit(xpb_daemon *d); /* records what is pending now */
void catchup_account_free(struct account *a);
void catchup_online(struct account *a); /* a fresh bind (not a resumption) */
/* A resumption: archives caught up in this stream before a restart are again. */
void catchup_resumed(struct account *a);
/* Inbound presence: our self-presence from a joined room starts its catch-up. */
void catchup_presence(struct account *a, const xpb_node *el, uint32_t trust);
/* An inbound message that passed the trust rules: 1 when catch-up took it (a
 * result of its own query) or dropped it (its stanza-id was published
 * before); 0: publish it as usual (its stanza-id is then remembered). */
int catchup_inbound(struct account *a, const xpb_node *el, uint32_t trust);
/* The response to an IQ_CATCHUP pending iq (el NULL: it timed out); the caller frees p. */
void catchup_iq(struct pending_iq *p, const xpb_node *el);
/* cluster.c: many bridges over NATS (docs/scaling.md); no-ops without it. */
int cluster_bus_config(xpb_daemon *d, const xpb_config *cfg, xpb_bus_config *bc, char *err,
                       size_t errlen);
int cluster_owns_accounts(const xpb_daemon *d); /* accounts come from leases, not the list */
int cluster_start(xpb_daemon *d, char *err, size_t errlen);
void cluster_account_started(xpb_daemon *d, const char *jid);
void cluster_account_gone(xpb_daemon *d, const char *jid);
void cluster_shutdown(xpb_daemon *d);
void cluster_free(xpb_daemon *d);
void cluster_counters(const xpb_daemon *d, xpb_daemon_counters *out);
/* The prefetch of a claimed account's state ended (rc 0: read): start it. */
void cluster_prefetched(xpb_daemon *d, size_t idx, const char *jid, int rc);

#endif
