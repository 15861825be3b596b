/* Inside bridge/io: the parts of xpb_shards that shards.c (the sessions,
 * events worker -> owner, commands) and shard_sends.c (sends owner ->
 * worker) share. */
#ifndef XPB_SHARDS_INTERNAL_H
#define XPB_SHARDS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "xpb_shards.h"

struct worker {
    xpb_shards *sh;
    unsigned index;
    xpb_loop *loop;
    xpb_loop_thread *thread;
    xpb_shard_session *creating; /* its events while xpb_loop_add_session starts it */
    struct ev_batch *batch;      /* this turn's events, not yet posted */
    xpb_wake *flush;             /* posts the batch after the turn */
    /* Batches the owner ran come back here (it pushes, the worker takes the
     * whole list), so a steady flow reuses the same warm blocks: freed on the
     * owner's thread, glibc gave the worker's heap back to the system and
     * took it again, a page fault per 4 KiB (docs/architecture.md). */
    _Atomic(struct ev_batch *) returned;
    struct ev_batch *spare; /* the worker's: taken from returned */
    unsigned n_spare;
    /* Sends the owner has accepted for this worker's sessions in its turn,
     * posted together (send_batch); the worker gives the emptied one back. */
    struct send_batch *sends;
    _Atomic(struct send_batch *) spare_sends;
    /* Event batches posted and not yet given back: at XPB_SHARDS_MAX_IN_FLIGHT
     * the worker waits for the owner (backpressure: its sockets are not read
     * meanwhile, so the servers' TCP windows fill; nothing is dropped). */
    atomic_uint in_flight;
    unsigned turn_events, last_turn_events; /* events of this turn, of the last one */
};

struct xpb_shards {
    xpb_shards_config cfg;
    struct worker w[XPB_SHARDS_MAX_WORKERS];
    unsigned n;
    xpb_mailbox *to_owner;
    xpb_wake *send_flush;    /* on the owner's loop: posts every worker's sends after its turn */
    xpb_shard_session *live; /* owner side: added, not removed */
    /* XPB_SE_SM: a worker waits for the owner's on_event (or for the end). */
    pthread_mutex_t sm_mu;
    pthread_cond_t sm_cv;
    /* Set under sm_mu (for the XEP-0198 wait), read also without it by a
     * worker that waits for room (post_batch). */
    atomic_int stopping;
    atomic_ullong waits;  /* times a worker waited for the owner (xpb_shards_waits) */
    /* Random words for the ids of sends without one (shard_sends.c), drawn
     * from the kernel a block at a time: owner's thread only. */
    uint32_t id_rand[64];
    unsigned id_rand_left;
};

struct xpb_shard_session {
    xpb_shards *sh;
    unsigned wi;
    char *name;
    atomic_int refs;
    /* owner side */
    xpb_shard_session *prev, *next;
    void *ud;
    int removed;
    xpb_session_state state;
    xpb_session_stats stats;
    int sm_ok;
    /* The XEP-0198 state as of the last events, kept small: the struct is
     * 3.6 KiB of fixed arrays, a tenth of an idle session (issue 10's 32 KiB
     * per session at 10,000). NULL until the first XPB_SE_SM. */
    char *sm_strs; /* id, location, jid: each NUL-terminated, one allocation */
    uint32_t sm_h_in, sm_h_acked;
    uint64_t next_handle, id_counter;
    const char *stream_ns;   /* "" on a WebSocket, jabber:client otherwise */
    size_t max_stanza_bytes; /* 0: the codec's default */
    unsigned queue_max;
    atomic_uint on_way;      /* sends posted, not yet queued by the worker */
    xpb_session_gauges live; /* the worker's session writes them as its queue changes */
    /* worker side */
    xpb_loop_session *ls;
};

/* Drops a reference; the last frees the proxy. */
void shards_unref(xpb_shard_session *ss);
/* On w's thread: ev of ss (s: its session, NULL when none) into w's batch. */
void shards_worker_event(struct worker *w, xpb_shard_session *ss, const xpb_session_event *ev,
                         xpb_session *s);

/* shard_sends.c. On the owner's thread: a command to ss's worker, after the
 * sends accepted before it (a full mailbox is waited out). */
int shards_post_cmd(xpb_shard_session *ss, xpb_mail_fn run, xpb_mail_fn drop, void *arg);
/* The owner's wake after its turn: every worker's open send batch posted. */
void shards_on_send_flush(void *ud);
/* At free, on the owner's thread: sends accepted and never posted are dropped
 * (before the workers stop); then, after, the batches kept for reuse. */
void shards_drop_unposted_sends(xpb_shards *sh);
void shards_free_send_spares(struct worker *w);

#endif
