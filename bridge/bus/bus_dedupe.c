/* Request de-duplication: a resend of a request id already answered gets
 * the remembered bytes, one still in flight waits for the same answer
 * (docs/bus.md, "Resends"). A hash table plus an LRU list of answers. */
#include "bus_dedupe.h"

#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"

static uint32_t hash_id(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

int xpb_bus_dd_init(xpb_bus_dedupe *d, unsigned max_done, size_t in_flight)
{
    memset(d, 0, sizeof *d);
    d->max_done = max_done;
    d->nbuckets = 64;
    while (d->nbuckets < 2u * ((size_t)max_done + in_flight))
        d->nbuckets *= 2;
    d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
    return d->buckets == NULL ? XPB_ENOMEM : 0;
}

void xpb_bus_dd_free(xpb_bus_dedupe *d)
{
    for (size_t i = 0; d->buckets != NULL && i < d->nbuckets; i++) {
        xpb_bus_dd_entry *e = d->buckets[i];
        while (e != NULL) {
            xpb_bus_dd_entry *next = e->hnext;
            free(e->resp);
            free(e);
            e = next;
        }
    }
    free(d->buckets);
    d->buckets = NULL;
}

xpb_bus_dd_entry *xpb_bus_dd_find(xpb_bus_dedupe *d, const char *id)
{
    uint32_t h = hash_id(id);
    for (xpb_bus_dd_entry *e = d->buckets[h & (d->nbuckets - 1)]; e != NULL; e = e->hnext)
        if (e->hash == h && strcmp(e->id, id) == 0) return e;
    return NULL;
}

xpb_bus_dd_entry *xpb_bus_dd_add(xpb_bus_dedupe *d, const char *id)
{
    size_t n = strlen(id);
    if (n > XPB_BUS_MAX_REQUEST_ID) return NULL;
    xpb_bus_dd_entry *e = calloc(1, sizeof *e);
    if (e == NULL) return NULL;
    memcpy(e->id, id, n + 1);
    e->hash = hash_id(id);
    size_t i = e->hash & (d->nbuckets - 1);
    e->hnext = d->buckets[i];
    d->buckets[i] = e;
    return e;
}

static void dd_unhash(xpb_bus_dedupe *d, xpb_bus_dd_entry *e)
{
    xpb_bus_dd_entry **pp = &d->buckets[e->hash & (d->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

static void lru_unlink(xpb_bus_dedupe *d, xpb_bus_dd_entry *e)
{
    if (e->lprev != NULL)
        e->lprev->lnext = e->lnext;
    else
        d->lru_head = e->lnext;
    if (e->lnext != NULL)
        e->lnext->lprev = e->lprev;
    else
        d->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_push(xpb_bus_dedupe *d, xpb_bus_dd_entry *e)
{
    e->lprev = NULL;
    e->lnext = d->lru_head;
    if (d->lru_head != NULL)
        d->lru_head->lprev = e;
    else
        d->lru_tail = e;
    d->lru_head = e;
}

void xpb_bus_dd_touch(xpb_bus_dedupe *d, xpb_bus_dd_entry *e)
{
    lru_unlink(d, e);
    lru_push(d, e);
}

void xpb_bus_dd_answered(xpb_bus_dedupe *d, xpb_bus_dd_entry *e, uint8_t *resp, size_t len)
{
    e->owner = NULL;
    e->waiters = NULL;
    e->resp = resp;
    e->resp_len = len;
    lru_push(d, e);
    d->done_count++;
}

void xpb_bus_dd_evict(xpb_bus_dedupe *d)
{
    while (d->done_count > d->max_done && d->lru_tail != NULL) {
        xpb_bus_dd_entry *e = d->lru_tail;
        lru_unlink(d, e);
        dd_unhash(d, e);
        free(e->resp);
        free(e);
        d->done_count--;
    }
}

void xpb_bus_dd_drop(xpb_bus_dedupe *d, xpb_bus_dd_entry *e)
{
    dd_unhash(d, e);
    free(e->resp);
    free(e);
}
