/* The bus back-end contract (docs/bus.md, "Back ends"): a back end only
 * moves bytes. The front (xpb_bus.h) hands it packed event batches that
 * already carry their seqs and topic, and gets from it raw request bytes with
 * an opaque reply token; the back end sends the reply bytes the front makes.
 * Seqs, batching, de-duplication, decoding and every rule stay in the front.
 * Back ends are ops tables filled with designated initializers. */
#ifndef XPB_BUS_BACKEND_H
#define XPB_BUS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "xpb_bus.h"

/* A back end's handle on one request that awaits its reply. */
typedef struct xpb_bus_token xpb_bus_token;

/* What the front gives a back end at open. Both callbacks run on the loop
 * thread (a back end with its own threads moves the work there with an
 * xpb_wake first); neither may be called from inside an op the front is
 * running, except published from publish and flush_done. */
typedef struct xpb_bus_host {
    void *front;
    /* One request's bytes (valid during the call only). The front answers
     * every token exactly once with ops->reply, possibly before returning. */
    void (*request)(void *front, xpb_bus_token *tok, const uint8_t *data, size_t len);
    /* Every event up to seq is published as far as this back end promises
     * (NNG: handed to PUB; JetStream: acknowledged by the server; a durable
     * log: committed). seqs only grow; a back end may report late. */
    void (*published)(void *front, uint64_t seq);
} xpb_bus_host;

/* One batch of one topic: seqs first_seq..last_seq, consecutive except for
 * events that failed to pack (then counted in the front's stats). */
typedef struct xpb_bus_batch {
    const uint8_t *frame; /* topic, NUL, EventBatch wire bytes */
    size_t frame_len;
    const char *topic; /* "<kind>/<account>/" (frame starts with it) */
    size_t topic_len;  /* the EventBatch is at frame + topic_len + 1 */
    const char *kind, *account;
    uint64_t first_seq, last_seq;
    unsigned count;
    const char *journal_id; /* the journal's id with a state directory, else NULL */
} xpb_bus_batch;

typedef enum xpb_bus_endpoint { XPB_BUS_EP_EVENTS, XPB_BUS_EP_REQUESTS } xpb_bus_endpoint;

typedef struct xpb_bus_backend_stats {
    uint64_t reply_errors;    /* replies that could not be sent */
    uint64_t publish_retries; /* batches sent again after a refusal or a missing ack */
    uint64_t publish_pending; /* batches taken and not yet acknowledged */
} xpb_bus_backend_stats;

struct xpb_bus_backend_ops {
    const char *name; /* "nng" */
    /* Binds or connects; starts delivering requests through host. cfg and
     * host stay valid until close. */
    int (*open)(void **be, xpb_loop *loop, const xpb_bus_config *cfg, const xpb_bus_host *host,
                char *err, size_t errlen);
    /* Takes one batch (the frame stays the front's: copy it). 0 when taken;
     * otherwise the batch's events are lost and the front counts them. */
    int (*publish)(void *be, const xpb_bus_batch *bt);
    /* The end of one flush: every batch of it has been given to publish.
     * A durable log commits its group here; NULL when nothing to do. */
    void (*flush_done)(void *be);
    /* Sends the reply bytes (copy them) and forgets tok. 0, or an error
     * after which tok is forgotten all the same (counted in reply_errors). */
    int (*reply)(void *be, xpb_bus_token *tok, const uint8_t *data, size_t len);
    /* Shutdown, first step: take no more requests and hand every request
     * already received to host->request now (the front answers them). */
    void (*drain)(void *be);
    /* Waits (bounded) for replies in flight, closes and frees. */
    void (*close)(void *be);
    void (*stats)(void *be, xpb_bus_backend_stats *out);
    /* What clients connect to, for logs and xpbctl; NULL or "" when none. */
    const char *(*endpoint)(void *be, xpb_bus_endpoint which);
    /* Requests naming account reach this bridge from now on (on) or no
     * longer (off): NATS subscribes xpb.req.<token>. NULL where every
     * request reaches the bridge anyway (NNG). 0 or an XPB_E code. */
    int (*route)(void *be, const char *account, int on);
};

/* NNG (bus_nng.c): events on PUB, requests on REP through NNG contexts. */
extern const xpb_bus_backend_ops xpb_bus_nng_ops;
/* NATS JetStream (bus_nats.c; settings in xpb_bus_nats.h). */
extern const xpb_bus_backend_ops xpb_bus_nats_ops;

#endif
