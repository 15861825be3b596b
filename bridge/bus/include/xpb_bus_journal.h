/* The journal back end (docs/durability.md): a decorator around another back
 * end (NNG by default). It holds each flush's batches, appends their events
 * to the state directory's journal in one transaction, and only then hands
 * the batches to the inner back end, so an event is on disk before any
 * subscriber can see it, and a subscriber that missed it replays it by seq.
 * With the store thread the append runs there and the batches are handed on
 * when it completes, in flush order. */
#ifndef XPB_BUS_JOURNAL_H
#define XPB_BUS_JOURNAL_H

#include "xpb_bus_backend.h"
#include "xpb_store.h"

/* Journal retention is checked this often (and at start). */
#define XPB_BUS_JOURNAL_TRIM_MS 60000u
/* With the store thread: flushes handed to it and not yet written. One more
 * waits on the loop for the thread (a disk slower than the events holds the
 * loop back, as it did without the thread, instead of memory growing). */
#define XPB_BUS_JOURNAL_INFLIGHT_MAX 64u

typedef struct xpb_bus_journal_cfg {
    xpb_store *store;                 /* used on the loop thread; outlives the bus */
    const xpb_bus_backend_ops *inner; /* NULL: xpb_bus_nng_ops */
    const void *inner_cfg;            /* the inner back end's backend_cfg */
} xpb_bus_journal_cfg;

/* backend_cfg: an xpb_bus_journal_cfg. */
extern const xpb_bus_backend_ops xpb_bus_journal_ops;

typedef struct xpb_bus_journal_stats {
    uint64_t commits, events, append_errors;
    uint64_t waits; /* flushes that waited: XPB_BUS_JOURNAL_INFLIGHT_MAX were in flight */
} xpb_bus_journal_stats;
/* The journal back end's own counters (be: from xpb_bus_backend_of). */
void xpb_bus_journal_get_stats(const xpb_bus *b, xpb_bus_journal_stats *out);

#endif
