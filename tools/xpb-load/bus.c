/* xpb-load's bus side: a SUB that counts events, checks seq for gaps and
 * measures the hop of stamped messages (the test server's send time to this
 * arrival, one machine clock); and a REQ load generator keeping K `send`
 * requests in flight through NNG contexts (docs/bus.md). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "load.h"
#include "xpb/v1/bus.pb-c.h"
#include "xpb_arena.h"
#include "xpb_nng_close.h"

#define SUB_MAX_BYTES (64u * 1024u * 1024u)
#define SUB_QUEUE 4096
#define SUB_REDIAL_MS 5
#define SUB_SEEN_MAX_BYTES (64u * 1024u * 1024u) /* seqs checked: 512 M */
#define LAT_MAX (4u * 1024u * 1024u)             /* latency samples kept */
#define SUB_ARENA_BLOCK (256u * 1024u)           /* a batch of 64 events fits in one */

typedef struct wire {
    const uint8_t *p, *end;
} wire;

typedef struct light_ev {
    uint64_t seq, stamp_us;
    int has_seq;
    unsigned body;  /* 10 stanza, 11 state, 12 delivery, 0 none */
    uint64_t value; /* the stanza's kind, the state's state, the delivery's outcome */
    wire id;        /* the stanza's id (may be empty) */
} light_ev;

#define SUB_LIGHT_MAX 4096u /* events a batch may hold (bus.batch_max's bound) */

struct lsub {
    nng_socket s;
    lrecv rx;
    pthread_mutex_t mu;
    uint64_t messages, online, deliveries, gaps, complete, last_ns;
    uint64_t batches; /* NNG messages received (every SUB_UNPACK_EVERY-th is unpacked) */
    light_ev light[SUB_LIGHT_MAX]; /* the batch being read off the wire */
    uint8_t *seen; /* bit per seq: the gap rule of docs/bus.md needs the set */
    size_t seen_bytes;
    /* Each batch is unpacked into it and it is reset after: the SUB shares
     * the 2 cores with the bridge, and a malloc per field of every event
     * was most of its CPU. */
    xpb_arena *arena;
    uint64_t *lat, *lat_bridge; /* arrival - send; event stamp - send */
    size_t n_lat, n_lat_bridge;
};

/* CLOCK_REALTIME - CLOCK_MONOTONIC, now: turns an event's wall-clock stamp
 * into the monotonic time the test server stamps its probes with. */
static int64_t wall_minus_mono(void)
{
    struct timespec w, m;
    clock_gettime(CLOCK_REALTIME, &w);
    clock_gettime(CLOCK_MONOTONIC, &m);
    return ((int64_t)w.tv_sec - (int64_t)m.tv_sec) * 1000000000 + (w.tv_nsec - m.tv_nsec);
}

static int seen_get(const lsub *s, uint64_t seq)
{
    return seq / 8 < s->seen_bytes && (s->seen[seq / 8] >> (seq % 8)) & 1;
}

static void seen_set(lsub *s, uint64_t seq)
{
    if (seq / 8 >= s->seen_bytes) {
        size_t n = s->seen_bytes ? s->seen_bytes : 4096;
        while (n <= seq / 8)
            n *= 2;
        if (n > SUB_SEEN_MAX_BYTES) return;
        uint8_t *p = realloc(s->seen, n);
        if (!p) return;
        memset(p + s->seen_bytes, 0, n - s->seen_bytes);
        s->seen = p;
        s->seen_bytes = n;
    }
    s->seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
}

/* docs/bus.md, "Sequence numbers and gaps": batches leave in the order of
 * their first seq, so a batch starting at F means every seq below F not seen
 * yet was lost. The first batch seen starts the count (events before the
 * subscriber connected are not losses). */
static void batch_starts(lsub *s, uint64_t first)
{
    if (!s->complete) s->complete = first - 1;
    for (uint64_t q = s->complete + 1; q < first; q++)
        if (!seen_get(s, q)) s->gaps++;
    if (first - 1 > s->complete) s->complete = first - 1;
}

static void check_batch(lsub *s, const Xpb__V1__EventBatch *b)
{
    if (!b->n_event || !b->event[0]->has_seq) return;
    batch_starts(s, b->event[0]->seq);
    for (size_t i = 0; i < b->n_event; i++)
        if (b->event[i]->has_seq) seen_set(s, b->event[i]->seq);
}

/* ---- the batch read off the wire, not unpacked ------------------------------------
 * The subscriber shares the 2 cores with the bridge it measures: unpacking
 * every event (the stanza's every field) took about a fifth of a core
 * during a flood, CPU a bridge with two loops needs. It reads only what it
 * counts: each event's seq, stamp and body, and in the body the stanza's
 * kind and id, the state's state, the delivery's outcome (bus.proto field
 * numbers). Every SUB_UNPACK_EVERY-th batch, and any the scan cannot
 * read, is unpacked with protobuf-c instead, as all were before. A miscount
 * either way fails a run (events or sends "missing"), which the smoke test
 * (tests/tools/test_xpb_load_smoke.sh) would report. */

#define SUB_UNPACK_EVERY 64u

static int wire_varint(wire *w, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && w->p < w->end; shift += 7) {
        uint8_t b = *w->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* The next field: its number, wire type, and for a length-delimited one its
 * bytes in *sub (for a varint, its value in *v). -1 when malformed or done. */
static int wire_field(wire *w, unsigned *num, uint64_t *v, wire *sub)
{
    uint64_t key, n;
    if (w->p >= w->end || wire_varint(w, &key)) return -1;
    *num = (unsigned)(key >> 3);
    switch (key & 7) {
    case 0:
        return wire_varint(w, v);
    case 1:
        if (w->end - w->p < 8) return -1;
        w->p += 8;
        return 0;
    case 5:
        if (w->end - w->p < 4) return -1;
        w->p += 4;
        return 0;
    case 2:
        if (wire_varint(w, &n) || n > (uint64_t)(w->end - w->p)) return -1;
        *sub = (wire){w->p, w->p + n};
        w->p += n;
        return 0;
    default:
        return -1;
    }
}

/* The one varint field num of a message; 0 when absent. */
static uint64_t wire_get(wire w, unsigned want)
{
    unsigned num;
    uint64_t v = 0, got = 0;
    wire sub;
    while (wire_field(&w, &num, &v, &sub) == 0)
        if (num == want) got = v;
    return got;
}

static int light_event(wire w, light_ev *e)
{
    unsigned num;
    uint64_t v = 0;
    wire sub = {0}, body = {0};
    *e = (light_ev){0};
    while (w.p < w.end) {
        if (wire_field(&w, &num, &v, &sub)) return -1;
        if (num == 1)
            e->seq = v, e->has_seq = 1;
        else if (num == 2)
            e->stamp_us = v;
        else if (num >= 10 && num <= 12)
            e->body = num, body = sub;
    }
    if (e->body == 10) {
        while (body.p < body.end) {
            if (wire_field(&body, &num, &v, &sub)) return -1;
            if (num == 1)
                e->value = v;
            else if (num == 4)
                e->id = sub;
        }
    } else if (e->body) {
        e->value = wire_get(body, 1);
    }
    return 0;
}

/* What an event adds to the counts, read off the wire or unpacked (on_event):
 * one rule for both. The stamp (Event.timestamp_us, wall clock, set where the
 * bridge publishes) goes onto this process's monotonic clock; it has
 * microseconds only, so a hop under 1 us counts as 0. */
static void light_on_event(lsub *s, const light_ev *e, uint64_t now, int64_t wall_off)
{
    if (e->body == 10 && e->value == XPB__V1__KIND__KIND_MESSAGE) {
        s->messages++;
        s->last_ns = now;
        size_t idl = (size_t)(e->id.end - e->id.p);
        if (idl > 3 && idl < 32 && !memcmp(e->id.p, "lt-", 3) && s->n_lat < LAT_MAX) {
            char num[32];
            memcpy(num, e->id.p + 3, idl - 3);
            num[idl - 3] = 0;
            uint64_t sent = strtoull(num, NULL, 10), stamped = 0;
            if (e->stamp_us && (int64_t)(e->stamp_us * 1000u) > wall_off)
                stamped = (uint64_t)((int64_t)(e->stamp_us * 1000u) - wall_off);
            if (sent && sent <= now) s->lat[s->n_lat++] = now - sent;
            if (sent && stamped)
                s->lat_bridge[s->n_lat_bridge++] = stamped > sent ? stamped - sent : 0;
        }
    }
    if (e->body == 11 && (e->value == XPB__V1__SESSION_STATE__STATE__STATE_ONLINE ||
                          e->value == XPB__V1__SESSION_STATE__STATE__STATE_RESUMED))
        s->online++;
    if (e->body == 12 && e->value == XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED) s->deliveries++;
}

/* An unpacked event as the light scan would have read it. */
static void on_event(lsub *s, const Xpb__V1__Event *e, uint64_t now, int64_t wall_off)
{
    light_ev l = {.seq = e->seq,
                  .has_seq = e->has_seq,
                  .stamp_us = e->has_timestamp_us ? e->timestamp_us : 0};
    if (e->body_case == XPB__V1__EVENT__BODY_STANZA) {
        const Xpb__V1__Stanza *st = e->stanza;
        l.body = 10;
        l.value = st->has_kind ? (uint64_t)st->kind : 0;
        if (st->id)
            l.id = (wire){(const uint8_t *)st->id, (const uint8_t *)st->id + strlen(st->id)};
    } else if (e->body_case == XPB__V1__EVENT__BODY_STATE) {
        l.body = 11;
        l.value = e->state->has_state ? (uint64_t)e->state->state : 0;
    } else if (e->body_case == XPB__V1__EVENT__BODY_DELIVERY) {
        l.body = 12;
        l.value = e->delivery->has_outcome ? (uint64_t)e->delivery->outcome : 0;
    }
    light_on_event(s, &l, now, wall_off);
}

/* The batch as light events: 0, or -1 when it does not read (then unpacked). */
static int light_batch(lsub *s, const uint8_t *d, size_t len, uint64_t now, int64_t wall_off)
{
    wire w = {d, d + len}, sub;
    unsigned num;
    uint64_t v;
    size_t n = 0;
    /* Read whole (well formed, or unpacked instead) before anything counts. */
    while (w.p < w.end) {
        if (wire_field(&w, &num, &v, &sub)) return -1;
        if (num != 1) continue;
        if (n == SUB_LIGHT_MAX || light_event(sub, &s->light[n++])) return -1;
    }
    uint64_t first = n && s->light[0].has_seq ? s->light[0].seq : 0; /* as check_batch */
    if (first) batch_starts(s, first);
    for (size_t i = 0; i < n; i++) {
        if (first && s->light[i].has_seq) seen_set(s, s->light[i].seq);
        light_on_event(s, &s->light[i], now, wall_off);
    }
    return 0;
}

/* Every NNG message: topic, NUL, EventBatch (bus.proto). */
static void on_message(void *arg, nng_msg *m)
{
    lsub *s = arg;
    uint64_t now = load_now_ns();
    int64_t wall_off = wall_minus_mono();
    const uint8_t *d = nng_msg_body(m);
    size_t len = nng_msg_len(m);
    const uint8_t *nul = memchr(d, 0, len);
    if (!nul) return;
    size_t blen = len - (size_t)(nul + 1 - d);
    if (++s->batches % SUB_UNPACK_EVERY != 0) {
        pthread_mutex_lock(&s->mu);
        int rc = light_batch(s, nul + 1, blen, now, wall_off);
        pthread_mutex_unlock(&s->mu);
        if (rc == 0) return;
    }
    Xpb__V1__EventBatch *b = xpb__v1__event_batch__unpack(xpb_arena_pb_allocator(s->arena),
                                                          len - (size_t)(nul + 1 - d), nul + 1);
    if (!b) {
        xpb_arena_reset(s->arena);
        return;
    }
    pthread_mutex_lock(&s->mu);
    check_batch(s, b);
    for (size_t i = 0; i < b->n_event; i++)
        on_event(s, b->event[i], now, wall_off);
    pthread_mutex_unlock(&s->mu);
    xpb_arena_reset(s->arena); /* b and everything in it */
}

static void lrecv_done(void *arg)
{
    lrecv *r = arg;
    int rv = nng_aio_result(r->aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) return;
    if (rv == 0) {
        nng_msg *m = nng_aio_get_msg(r->aio);
        r->fn(r->ud, m);
        nng_msg_free(m);
    }
    nng_recv_aio(r->s, r->aio); /* once lrecv_stop began: refused (ECANCELED) */
}

int lrecv_start(lrecv *r, nng_socket s, lrecv_fn fn, void *ud)
{
    *r = (lrecv){.s = s, .fn = fn, .ud = ud};
    int rv = nng_aio_alloc(&r->aio, lrecv_done, r);
    if (rv) {
        r->aio = NULL;
        return rv;
    }
    nng_aio_set_timeout(r->aio, NNG_DURATION_INFINITE);
    nng_recv_aio(s, r->aio);
    return 0;
}

void lrecv_stop(lrecv *r)
{
    if (!r->aio) return;
    nng_aio_stop(r->aio); /* cancels the receive and waits out its callback */
    nng_aio_free(r->aio);
    r->aio = NULL;
}

int lsub_start(const char *events_url, lsub **out)
{
    lsub *s = calloc(1, sizeof(*s));
    if (!s || !(s->lat = malloc(LAT_MAX * sizeof(*s->lat))) ||
        !(s->lat_bridge = malloc(LAT_MAX * sizeof(*s->lat_bridge))) ||
        !(s->arena = xpb_arena_new(SUB_ARENA_BLOCK))) {
        if (s) {
            free(s->lat);
            free(s->lat_bridge);
        }
        free(s);
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    int rv = nng_sub0_open(&s->s);
    if (!rv) rv = nng_socket_set(s->s, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    if (!rv) rv = nng_socket_set_size(s->s, NNG_OPT_RECVMAXSZ, SUB_MAX_BYTES);
    if (!rv) rv = nng_socket_set_int(s->s, NNG_OPT_RECVBUF, SUB_QUEUE);
    /* The bridge binds after it starts: catch its first state events. */
    if (!rv) rv = nng_socket_set_ms(s->s, NNG_OPT_RECONNMINT, SUB_REDIAL_MS);
    if (!rv) rv = nng_dial(s->s, events_url, NULL, NNG_FLAG_NONBLOCK); /* redials */
    if (!rv) rv = lrecv_start(&s->rx, s->s, on_message, s);
    if (rv) {
        fprintf(stderr, "xpb-load: cannot subscribe to %s: %s\n", events_url, nng_strerror(rv));
        xpb_nng_close_bounded(s->s, LOAD_CLOSE_MS);
        free(s->lat);
        free(s->lat_bridge);
        xpb_arena_free(s->arena);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void lsub_stop(lsub *s)
{
    if (!s) return;
    lrecv_stop(&s->rx);
    xpb_nng_close_bounded(s->s, LOAD_CLOSE_MS); /* NNG 1.5.2 can hang (xpb_nng_close.h) */
    pthread_mutex_destroy(&s->mu);
    free(s->lat);
    free(s->lat_bridge);
    xpb_arena_free(s->arena);
    free(s->seen);
    free(s);
}

void lsub_reset(lsub *s)
{
    pthread_mutex_lock(&s->mu);
    s->messages = s->online = s->deliveries = s->last_ns = 0;
    s->n_lat = s->n_lat_bridge = 0;
    pthread_mutex_unlock(&s->mu);
}

static uint64_t read_locked(lsub *s, const uint64_t *field)
{
    pthread_mutex_lock(&s->mu);
    uint64_t v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

uint64_t lsub_messages(lsub *s)
{
    return read_locked(s, &s->messages);
}
uint64_t lsub_online(lsub *s)
{
    return read_locked(s, &s->online);
}
uint64_t lsub_deliveries(lsub *s)
{
    return read_locked(s, &s->deliveries);
}
uint64_t lsub_gaps(lsub *s)
{
    return read_locked(s, &s->gaps);
}
uint64_t lsub_last_ns(lsub *s)
{
    return read_locked(s, &s->last_ns);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

const uint64_t *lsub_latencies(lsub *s, size_t *n)
{
    pthread_mutex_lock(&s->mu);
    qsort(s->lat, s->n_lat, sizeof(*s->lat), cmp_u64);
    *n = s->n_lat;
    pthread_mutex_unlock(&s->mu);
    return s->lat;
}

const uint64_t *lsub_bridge_latencies(lsub *s, size_t *n)
{
    pthread_mutex_lock(&s->mu);
    qsort(s->lat_bridge, s->n_lat_bridge, sizeof(*s->lat_bridge), cmp_u64);
    *n = s->n_lat_bridge;
    pthread_mutex_unlock(&s->mu);
    return s->lat_bridge;
}
