/* Internal to bridge/bus/: event batching (bus_batch.c). One open batch per
 * topic "<kind>/<account>/", each a frame (topic, NUL, EventBatch wire bytes)
 * grown in place; and the last seq of each topic for EventBatch.prev_seq.
 * Loop thread only. */
#ifndef XPB_BUS_BATCH_H
#define XPB_BUS_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "xpb/v1/bus.pb-c.h"
#include "xpb_stanza.h" /* xpb_pack_plan */

/* Topics whose last seq is remembered for EventBatch.prev_seq; the least
 * recently published one is forgotten first (its next batch says 0). */
#define XPB_BUS_MAX_TOPICS 16384u   /* every state/<account>/ topic of 10,000 accounts */
#define XPB_BUS_TOPIC_BUCKETS 4096u /* power of two */

struct xpb_bus_topic;
typedef struct xpb_bus_open_batch {
    struct xpb_bus_open_batch *next;
    struct xpb_bus_topic *te; /* the topic whose open batch this is; NULL: forgotten */
    uint8_t *buf; /* topic, NUL, EventBatch wire bytes */
    size_t len, cap;
    unsigned count;
    uint64_t first_seq, last_seq;
    size_t kind_len, topic_len;
    const char *kind, *account; /* inside topic[], after the topic NUL */
    char topic[];               /* "<kind>/<account>/" NUL "<kind>" NUL "<account>" NUL */
} xpb_bus_open_batch;

typedef struct xpb_bus_topic {
    struct xpb_bus_topic *hnext, *lprev, *lnext;
    uint32_t hash;
    uint64_t last_seq;         /* 0: unknown */
    xpb_bus_open_batch *open;  /* its batch being filled, or NULL */
    size_t len;
    char name[];
} xpb_bus_topic;

typedef struct xpb_bus_batcher {
    xpb_bus_open_batch *head, *tail; /* in the order they were opened */
    xpb_bus_topic *topics[XPB_BUS_TOPIC_BUCKETS];
    xpb_bus_topic *lru_head, *lru_tail; /* most recently published first */
    unsigned ntopics;
    const char *journal_id; /* EventBatch.journal_id of every batch; NULL: none */
} xpb_bus_batcher;

void xpb_bus_batcher_free(xpb_bus_batcher *bt); /* open batches and topics */

/* The topic's entry, now the most recent; created with last_seq 0 when new.
 * NULL when out of memory. */
xpb_bus_topic *xpb_bus_topic_get(xpb_bus_batcher *bt, const char *kind, const char *account);

/* The open batch of topic te (from xpb_bus_topic_get: found in O(1)), or a
 * new one that starts with te's last_seq as prev_seq. NULL: out of memory. */
xpb_bus_open_batch *xpb_bus_batch_get(xpb_bus_batcher *bt, xpb_bus_topic *te, const char *kind,
                                      const char *account);
/* Appends ev (seq set, measured with plan just before: evlen). */
int xpb_bus_batch_append(xpb_bus_open_batch *b, xpb_pack_plan *plan, const Xpb__V1__Event *ev,
                         size_t evlen);
/* Detaches every open batch, oldest first (free each with xpb_bus_batch_free). */
xpb_bus_open_batch *xpb_bus_batcher_take(xpb_bus_batcher *bt);
void xpb_bus_batch_free(xpb_bus_open_batch *b);

#endif
