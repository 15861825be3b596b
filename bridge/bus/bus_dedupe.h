/* Internal to bridge/bus/: request de-duplication by request id
 * (bus_dedupe.c). An entry is in flight (an owner at the handler and the
 * resends waiting on it) or answered (the packed response, on an LRU list
 * bounded by dedupe_entries). Loop thread only. */
#ifndef XPB_BUS_DEDUPE_H
#define XPB_BUS_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

#include "xpb_bus.h"

typedef struct xpb_bus_dd_entry {
    struct xpb_bus_dd_entry *hnext, *lprev, *lnext;
    uint32_t hash;
    xpb_bus_request *owner, *waiters; /* in flight: owner non-NULL */
    uint8_t *resp;                    /* answered: the packed response */
    size_t resp_len;
    char id[XPB_BUS_MAX_REQUEST_ID + 1];
} xpb_bus_dd_entry;

typedef struct xpb_bus_dedupe {
    xpb_bus_dd_entry **buckets;
    size_t nbuckets; /* power of two */
    xpb_bus_dd_entry *lru_head, *lru_tail;
    unsigned done_count, max_done;
} xpb_bus_dedupe;

/* max_done answered entries; in_flight more may exist (for the table size). */
int xpb_bus_dd_init(xpb_bus_dedupe *d, unsigned max_done, size_t in_flight);
void xpb_bus_dd_free(xpb_bus_dedupe *d);
xpb_bus_dd_entry *xpb_bus_dd_find(xpb_bus_dedupe *d, const char *id);
/* A new in-flight entry for id (at most XPB_BUS_MAX_REQUEST_ID bytes). */
xpb_bus_dd_entry *xpb_bus_dd_add(xpb_bus_dedupe *d, const char *id);
/* An answered entry was used again: it becomes the most recent. */
void xpb_bus_dd_touch(xpb_bus_dedupe *d, xpb_bus_dd_entry *e);
/* The entry is answered: it keeps resp (malloc'ed, now the entry's). */
void xpb_bus_dd_answered(xpb_bus_dedupe *d, xpb_bus_dd_entry *e, uint8_t *resp, size_t len);
/* Forgets the least recent answers beyond max_done (may free any of them). */
void xpb_bus_dd_evict(xpb_bus_dedupe *d);
/* An in-flight entry that will never get an answer (shutdown). */
void xpb_bus_dd_drop(xpb_bus_dedupe *d, xpb_bus_dd_entry *e);

#endif
