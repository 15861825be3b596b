/* Event batching: events of one topic are appended to one EventBatch frame
 * without re-packing, and every batch starts with its topic's prev_seq so
 * subscribers detect loss (docs/bus.md, "Gaps"). Pure: no I/O. */
#include "bus_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"

#define BATCH_FIRST_CAP 4096u

/* Whether name[0..len) is the topic "<kind>/<account>/". */
static int topic_is(const char *name, size_t len, const char *kind, const char *account)
{
    size_t kl = strlen(kind), al = strlen(account);
    return len == kl + al + 2 && memcmp(name, kind, kl) == 0 && name[kl] == '/' &&
           memcmp(name + kl + 1, account, al) == 0;
}

static uint32_t topic_hash(const char *kind, const char *account)
{
    uint32_t h = 2166136261u; /* FNV-1a over "<kind>/<account>/" */
    for (const char *s = kind; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (const char *s = account; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return (h ^ '/') * 16777619u;
}

static void topic_lru_unlink(xpb_bus_batcher *b, xpb_bus_topic *t)
{
    if (t->lprev != NULL)
        t->lprev->lnext = t->lnext;
    else
        b->lru_head = t->lnext;
    if (t->lnext != NULL)
        t->lnext->lprev = t->lprev;
    else
        b->lru_tail = t->lprev;
    t->lprev = t->lnext = NULL;
}

static void topic_lru_push(xpb_bus_batcher *b, xpb_bus_topic *t)
{
    t->lnext = b->lru_head;
    if (b->lru_head != NULL)
        b->lru_head->lprev = t;
    else
        b->lru_tail = t;
    b->lru_head = t;
}

/* Forgets the least recently published topic: its next batch has prev_seq 0. */
static void topic_evict(xpb_bus_batcher *b)
{
    xpb_bus_topic *t = b->lru_tail;
    topic_lru_unlink(b, t);
    if (t->open != NULL) t->open->te = NULL; /* goes out as it is; a new one may open */
    xpb_bus_topic **pp = &b->topics[t->hash & (XPB_BUS_TOPIC_BUCKETS - 1)];
    while (*pp != t)
        pp = &(*pp)->hnext;
    *pp = t->hnext;
    free(t);
    b->ntopics--;
}

/* The topic's entry, now the most recently used; created with last_seq 0
 * (unknown) when new. NULL when out of memory. */
xpb_bus_topic *xpb_bus_topic_get(xpb_bus_batcher *b, const char *kind, const char *account)
{
    uint32_t h = topic_hash(kind, account);
    xpb_bus_topic **head = &b->topics[h & (XPB_BUS_TOPIC_BUCKETS - 1)];
    for (xpb_bus_topic *t = *head; t != NULL; t = t->hnext)
        if (t->hash == h && topic_is(t->name, t->len, kind, account)) {
            topic_lru_unlink(b, t);
            topic_lru_push(b, t);
            return t;
        }
    if (b->ntopics >= XPB_BUS_MAX_TOPICS) topic_evict(b);
    size_t tl = strlen(kind) + strlen(account) + 2;
    xpb_bus_topic *t = calloc(1, sizeof *t + tl + 1);
    if (t == NULL) return NULL;
    snprintf(t->name, tl + 1, "%s/%s/", kind, account);
    t->len = tl;
    t->hash = h;
    t->hnext = *head;
    *head = t;
    topic_lru_push(b, t);
    b->ntopics++;
    return t;
}

static size_t varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        p[n++] = c | (v != 0 ? 0x80 : 0);
    } while (v != 0);
    return n;
}

/* Room for need more bytes; capacity doubles so appends stay amortized O(1). */
static int batch_reserve(xpb_bus_open_batch *bt, size_t need)
{
    if (bt->len + need <= bt->cap) return 0;
    size_t cap = bt->cap != 0 ? bt->cap : BATCH_FIRST_CAP;
    while (cap < bt->len + need)
        cap *= 2;
    uint8_t *p = realloc(bt->buf, cap);
    if (p == NULL) return XPB_ENOMEM;
    bt->buf = p;
    bt->cap = cap;
    return 0;
}

static int batch_put(xpb_bus_open_batch *bt, const void *data, size_t n)
{
    if (batch_reserve(bt, n) != 0) return XPB_ENOMEM;
    memcpy(bt->buf + bt->len, data, n);
    bt->len += n;
    return 0;
}

/* EventBatch.prev_seq (field 2, varint): written once, before the events;
 * protobuf accepts fields in any order, so appending events stays cheap. */
static int batch_put_prev_seq(xpb_bus_open_batch *bt, uint64_t prev_seq)
{
    uint8_t f[11];
    f[0] = 0x10;
    size_t fl = 1 + varint_put(f + 1, prev_seq);
    return batch_put(bt, f, fl);
}

/* EventBatch.journal_id (field 3, string), before the events like prev_seq. */
static int batch_put_journal_id(xpb_bus_open_batch *bt, const char *id)
{
    if (id == NULL) return 0;
    uint8_t f[11];
    size_t n = strlen(id);
    f[0] = 0x1a;
    size_t fl = 1 + varint_put(f + 1, n);
    return batch_put(bt, f, fl) != 0 ? XPB_ENOMEM : batch_put(bt, id, n);
}

static xpb_bus_open_batch *batch_new(const char *kind, const char *account, uint64_t prev_seq,
                                     const char *journal_id)
{
    size_t kl = strlen(kind), al = strlen(account), tl = kl + al + 2;
    xpb_bus_open_batch *bt = calloc(1, sizeof *bt + tl + 1 + kl + 1 + al + 1);
    if (bt == NULL) return NULL;
    snprintf(bt->topic, tl + 1, "%s/%s/", kind, account);
    memcpy(bt->topic + tl + 1, kind, kl + 1);
    memcpy(bt->topic + tl + 1 + kl + 1, account, al + 1);
    bt->kind = bt->topic + tl + 1;
    bt->account = bt->kind + kl + 1;
    bt->topic_len = tl;
    bt->kind_len = kl;
    /* The NUL after the topic is part of the frame: a prefix subscription
     * on "message/alice@x/" can then never match "message/alice@x.org/". */
    if (batch_put(bt, bt->topic, tl + 1) != 0 || batch_put_prev_seq(bt, prev_seq) != 0 ||
        batch_put_journal_id(bt, journal_id) != 0) {
        xpb_bus_batch_free(bt);
        return NULL;
    }
    return bt;
}

xpb_bus_open_batch *xpb_bus_batch_get(xpb_bus_batcher *b, xpb_bus_topic *te, const char *kind,
                                      const char *account)
{
    if (te == NULL) return NULL;
    if (te->open != NULL) return te->open;
    xpb_bus_open_batch *bt = batch_new(kind, account, te->last_seq, b->journal_id);
    if (bt == NULL) return NULL;
    bt->te = te;
    te->open = bt;
    if (b->tail != NULL)
        b->tail->next = bt;
    else
        b->head = bt;
    b->tail = bt;
    return bt;
}

/* EventBatch is "repeated Event event = 1": its wire bytes are just tag 0x0a,
 * length, event, repeated; so events are appended without re-packing. */
int xpb_bus_batch_append(xpb_bus_open_batch *bt, xpb_pack_plan *plan, const Xpb__V1__Event *ev,
                         size_t evlen)
{
    uint8_t hdr[11];
    hdr[0] = 0x0a;
    size_t hl = 1 + varint_put(hdr + 1, evlen);
    if (batch_reserve(bt, hl + evlen) != 0) return XPB_ENOMEM;
    memcpy(bt->buf + bt->len, hdr, hl);
    xpb_pack_plan_write(plan, &ev->base, bt->buf + bt->len + hl);
    bt->len += hl + evlen;
    if (bt->count++ == 0) bt->first_seq = ev->seq;
    bt->last_seq = ev->seq;
    return 0;
}

xpb_bus_open_batch *xpb_bus_batcher_take(xpb_bus_batcher *b)
{
    xpb_bus_open_batch *bt = b->head;
    b->head = b->tail = NULL;
    for (xpb_bus_open_batch *x = bt; x != NULL; x = x->next) {
        if (x->te != NULL) x->te->open = NULL;
        x->te = NULL;
    }
    return bt;
}

void xpb_bus_batch_free(xpb_bus_open_batch *bt)
{
    if (bt == NULL) return;
    free(bt->buf);
    free(bt);
}

void xpb_bus_batcher_free(xpb_bus_batcher *b)
{
    xpb_bus_open_batch *bt = xpb_bus_batcher_take(b);
    while (bt != NULL) {
        xpb_bus_open_batch *next = bt->next;
        xpb_bus_batch_free(bt);
        bt = next;
    }
    while (b->lru_tail != NULL)
        topic_evict(b);
}
