/* Sessions spread over N worker loops, each on a thread of its own, driven
 * from one owner loop (the daemon's): several loops, shape 1 of
 * docs/architecture.md. `limits.loops` ("auto" by default: one per core):
 * sessions are added, removed and closed, their events reach the owner's
 * thread a worker loop turn at a time with the stanzas copied and the
 * session's state, stats and XEP-0198 state mirrored, and stanzas are sent.
 *
 * The owner calls everything here from its loop's thread; on_event runs
 * there too. A worker never waits for the owner except for an XPB_SE_SM
 * event, which the session reports before it tells the server its h: the
 * worker waits until on_event has run for it (the owner keeps the state
 * first, docs/durability.md). The owner never waits for a worker, so that
 * wait cannot deadlock. */
#ifndef XPB_SHARDS_H
#define XPB_SHARDS_H

#include "xpb_loop.h"

typedef struct xpb_shards xpb_shards;
typedef struct xpb_shard_session xpb_shard_session;

/* ev as the session reported it, on the owner's thread (pointers valid
 * during the call; ev->stanza is a copy). */
typedef void (*xpb_shards_event_cb)(void *ud, xpb_shard_session *ss, const xpb_session_event *ev);

typedef struct xpb_shards_config {
    unsigned workers;          /* 1 .. XPB_SHARDS_MAX_WORKERS */
    xpb_loop *owner;           /* where on_event runs */
    xpb_loop_config worker;    /* each worker loop's (base, on_event, ud are set here);
                                * connect_rate is split evenly over the workers */
    xpb_shards_event_cb on_event;
    xpb_loop_log_cb on_log;    /* called on the worker's thread; NULL: none */
    void *ud;
} xpb_shards_config;

#define XPB_SHARDS_MAX_WORKERS 64u

int xpb_shards_new(xpb_shards **out, const xpb_shards_config *cfg, char *err, size_t errlen);
/* Stops the workers and frees every session (no clean shutdown: close them
 * and wait for STOPPED first). */
void xpb_shards_free(xpb_shards *sh);
unsigned xpb_shards_workers(const xpb_shards *sh);
/* A worker holds at most this many event batches the owner has not run yet
 * (64 events each); past it, the worker waits (xpb_shards_waits counts it). */
#define XPB_SHARDS_MAX_IN_FLIGHT 256u
/* Times a worker waited because the owner was that far behind. */
unsigned long long xpb_shards_waits(const xpb_shards *sh);

/* The session is made and started on worker hash(name) % workers; cfg and
 * ca_file are copied. A setup failure comes back as an XPB_SE_STATE event
 * with XPB_SS_STOPPED and the reason. */
int xpb_shards_add(xpb_shards *sh, const char *name, const xpb_session_config *cfg,
                   const char *ca_file, xpb_shard_session **out);
/* No event of ss is delivered after this; the session is freed on its worker. */
void xpb_shards_remove(xpb_shard_session *ss);
void xpb_shard_close(xpb_shard_session *ss);

void xpb_shard_set_ud(xpb_shard_session *ss, void *ud);
void *xpb_shard_ud(const xpb_shard_session *ss);
const char *xpb_shard_name(const xpb_shard_session *ss);
unsigned xpb_shard_worker(const xpb_shard_session *ss);
/* Sends st: the owner checks it (unless checked: it passed xpb_stanza_check
 * with the session's limits), gives it an id when it has none (into id;
 * NULL: not wanted),
 * writes its XML (*xml_bytes its size) and a handle (larger than the last),
 * and answers at once; the worker's session queues the bytes. A refusal the
 * worker's session makes after (the queue filled meanwhile, the stream
 * stopped) comes back as an XPB_SE_FAILED event for the handle. Refused at
 * once: XPB_ENOTCONN (stopped or closing, as last reported), XPB_EQUEUEFULL
 * (the last reported queue plus what is on its way reaches the session's
 * bounds), and the record's own errors. */
int xpb_shard_send(xpb_shard_session *ss, const xpb_stanza *st, int checked, uint64_t *handle,
                   char *id, size_t idlen, size_t *xml_bytes);

/* As of the last event delivered; the stats' queued and unacked as of now. */
xpb_session_state xpb_shard_state(const xpb_shard_session *ss);
void xpb_shard_stats(const xpb_shard_session *ss, xpb_session_stats *out);
/* 0 and *out filled, 1 when the stream cannot be resumed. */
int xpb_shard_sm(const xpb_shard_session *ss, xpb_session_sm *out);

#endif
