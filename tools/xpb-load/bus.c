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

#define SUB_MAX_BYTES (64u * 1024u * 1024u)
#define SUB_QUEUE 4096
#define SUB_POLL_MS 100
#define SUB_REDIAL_MS 5
#define SUB_SEEN_MAX_BYTES (64u * 1024u * 1024u) /* seqs checked: 512 M */
#define LAT_MAX (4u * 1024u * 1024u)             /* latency samples kept */
#define SUB_ARENA_BLOCK (256u * 1024u)           /* a batch of 64 events fits in one */

struct lsub {
    nng_socket s;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t mu;
    uint64_t messages, online, deliveries, gaps, complete, last_ns;
    uint8_t *seen; /* bit per seq: the gap rule of docs/bus.md needs the set */
    size_t seen_bytes;
    /* Each batch is unpacked into it and it is reset after: the SUB shares
     * the 2 cores with the bridge, and a malloc per field of every event
     * was most of its CPU. */
    xpb_arena *arena;
    uint64_t *lat, *lat_bridge; /* arrival - send; event stamp - send */
    size_t n_lat, n_lat_bridge;
};

/* stamped: Event.timestamp_us (wall clock, set where the bridge publishes)
 * on this process's monotonic clock, in ns; 0 when the event has none. */
static void on_stanza(lsub *s, const Xpb__V1__Stanza *st, uint64_t now, uint64_t stamped)
{
    if (!st->has_kind || st->kind != XPB__V1__KIND__KIND_MESSAGE) return;
    s->messages++;
    s->last_ns = now;
    if (st->id && !strncmp(st->id, "lt-", 3) && s->n_lat < LAT_MAX) {
        uint64_t sent = strtoull(st->id + 3, NULL, 10);
        if (sent && sent <= now) s->lat[s->n_lat++] = now - sent;
        /* The stamp has microseconds only: a hop under 1 us counts as 0. */
        if (sent && stamped) s->lat_bridge[s->n_lat_bridge++] = stamped > sent ? stamped - sent : 0;
    }
}

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
static void check_batch(lsub *s, const Xpb__V1__EventBatch *b)
{
    if (!b->n_event || !b->event[0]->has_seq) return;
    uint64_t first = b->event[0]->seq;
    if (!s->complete) s->complete = first - 1;
    for (uint64_t q = s->complete + 1; q < first; q++)
        if (!seen_get(s, q)) s->gaps++;
    if (first - 1 > s->complete) s->complete = first - 1;
    for (size_t i = 0; i < b->n_event; i++)
        if (b->event[i]->has_seq) seen_set(s, b->event[i]->seq);
}

static void on_event(lsub *s, const Xpb__V1__Event *e, uint64_t now, int64_t wall_off)
{
    uint64_t stamped = 0;
    if (e->has_timestamp_us && (int64_t)(e->timestamp_us * 1000u) > wall_off)
        stamped = (uint64_t)((int64_t)(e->timestamp_us * 1000u) - wall_off);
    if (e->body_case == XPB__V1__EVENT__BODY_STANZA) on_stanza(s, e->stanza, now, stamped);
    if (e->body_case == XPB__V1__EVENT__BODY_STATE && e->state->has_state &&
        (e->state->state == XPB__V1__SESSION_STATE__STATE__STATE_ONLINE ||
         e->state->state == XPB__V1__SESSION_STATE__STATE__STATE_RESUMED))
        s->online++;
    if (e->body_case == XPB__V1__EVENT__BODY_DELIVERY && e->delivery->has_outcome &&
        e->delivery->outcome == XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED)
        s->deliveries++;
}

/* Every NNG message: topic, NUL, EventBatch (bus.proto). */
static void on_message(lsub *s, nng_msg *m)
{
    uint64_t now = load_now_ns();
    int64_t wall_off = wall_minus_mono();
    const uint8_t *d = nng_msg_body(m);
    size_t len = nng_msg_len(m);
    const uint8_t *nul = memchr(d, 0, len);
    if (!nul) return;
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

static void *sub_main(void *arg)
{
    lsub *s = arg;
    while (!s->stop) {
        nng_msg *m = NULL;
        if (nng_recvmsg(s->s, &m, 0) == 0) {
            on_message(s, m);
            nng_msg_free(m);
        }
    }
    return NULL;
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
    if (!rv) rv = nng_socket_set_ms(s->s, NNG_OPT_RECVTIMEO, SUB_POLL_MS);
    /* The bridge binds after it starts: catch its first state events. */
    if (!rv) rv = nng_socket_set_ms(s->s, NNG_OPT_RECONNMINT, SUB_REDIAL_MS);
    if (!rv) rv = nng_dial(s->s, events_url, NULL, NNG_FLAG_NONBLOCK); /* redials */
    if (!rv) rv = pthread_create(&s->thread, NULL, sub_main, s);
    if (rv) {
        fprintf(stderr, "xpb-load: cannot subscribe to %s: %s\n", events_url, nng_strerror(rv));
        nng_close(s->s);
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
    s->stop = 1;
    pthread_join(s->thread, NULL);
    nng_close(s->s);
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
