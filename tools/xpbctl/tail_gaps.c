/* Lost events in `xpbctl tail`: unfiltered, by the global sequence numbers
 * (a skipped seq is lost once a batch starting above it arrives); filtered,
 * by each topic's prev_seq against the last seq seen on that topic
 * (docs/bus.md). Reports go to standard error, or to standard output as
 * {"gap":...} lines with --json. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tail.h"

/* Seqs skipped so far that may still arrive: the bus batches per topic, so
 * events of different topics can arrive out of order. A skipped seq is lost
 * only once a batch whose first seq is above it arrives (batches leave the
 * bridge in order of their first seq; docs/bus.md). */
#define TAIL_MAX_PENDING 256
typedef struct seq_range {
    uint64_t first, last;
} seq_range;

/* With filters, the last seq seen per topic, compared with each batch's
 * prev_seq. A --kind filter without --account matches any number of
 * accounts, so the topics remembered are bounded; the least recently seen is
 * forgotten first (its next batch is then not checked). */
#define TAIL_MAX_TOPICS 4096
#define TAIL_TOPIC_BUCKETS 1024 /* power of two */
#define TAIL_TOPIC_MAX 4096     /* bytes: "<kind>/" + a bare JID (3071) + "/" */
typedef struct tail_topic {
    struct tail_topic *hnext, *lprev, *lnext;
    uint32_t hash;
    uint64_t last_seq;
    size_t len;
    char name[];
} tail_topic;

struct tail_gaps {
    bool json;
    bool check_gaps;   /* unfiltered: by global seq; filtered: by topic */
    uint64_t last_seq; /* highest seq seen */
    seq_range pending[TAIL_MAX_PENDING];
    size_t n_pending;
    tail_topic *topics[TAIL_TOPIC_BUCKETS];
    tail_topic *lru_head, *lru_tail; /* most recently seen first */
    size_t n_topics;
};

static void report_lost(const tail_gaps *t, uint64_t first, uint64_t last)
{
    uint64_t lost = last - first + 1;
    if (t->json) {
        printf("{\"gap\":{\"lost\":%" PRIu64 ",\"first\":%" PRIu64 ",\"last\":%" PRIu64 "}}\n",
               lost, first, last);
    } else {
        fflush(stdout);
        fprintf(stderr, "xpbctl: tail: lost %" PRIu64 " event%s (seq %" PRIu64 "..%" PRIu64 ")\n",
                lost, lost == 1 ? "" : "s", first, last);
    }
}

/* A batch with first seq `first` arrived: every pending seq below it is lost. */
static void settle_pending(tail_gaps *t, uint64_t first)
{
    size_t keep = 0;
    for (size_t i = 0; i < t->n_pending; i++) {
        seq_range r = t->pending[i];
        if (r.first < first) {
            uint64_t end = r.last < first ? r.last : first - 1;
            report_lost(t, r.first, end);
            if (r.last < first) continue;
            r.first = first;
        }
        t->pending[keep++] = r;
    }
    t->n_pending = keep;
    /* Seqs between the highest seen and this batch's first are lost too. */
    if (t->last_seq != 0 && first > t->last_seq + 1) {
        report_lost(t, t->last_seq + 1, first - 1);
        t->last_seq = first - 1;
    }
}

static void add_pending(tail_gaps *t, uint64_t first, uint64_t last)
{
    if (t->n_pending == TAIL_MAX_PENDING) { /* too many holes: the oldest is lost */
        report_lost(t, t->pending[0].first, t->pending[0].last);
        memmove(t->pending, t->pending + 1, (TAIL_MAX_PENDING - 1) * sizeof *t->pending);
        t->n_pending--;
    }
    t->pending[t->n_pending++] = (seq_range){first, last};
}

/* Takes seq out of the pending ranges; false when it was not pending. */
static bool fill_pending(tail_gaps *t, uint64_t seq)
{
    for (size_t i = 0; i < t->n_pending; i++) {
        seq_range *r = &t->pending[i];
        if (seq < r->first || seq > r->last) continue;
        if (r->first == r->last) {
            memmove(r, r + 1, (t->n_pending - i - 1) * sizeof *r);
            t->n_pending--;
        } else if (seq == r->first) {
            r->first++;
        } else if (seq == r->last) {
            r->last--;
        } else if (t->n_pending < TAIL_MAX_PENDING) {
            seq_range tail = {seq + 1, r->last};
            r->last = seq - 1;
            t->pending[t->n_pending++] = tail;
        } else {
            r->last = seq - 1; /* no room to split: the rest counts as lost later */
        }
        return true;
    }
    return false;
}

static void check_gap(tail_gaps *t, uint64_t seq)
{
    if (t->last_seq == 0 || seq == t->last_seq + 1) {
        t->last_seq = seq;
    } else if (seq > t->last_seq + 1) {
        add_pending(t, t->last_seq + 1, seq - 1);
        t->last_seq = seq;
    } else if (!fill_pending(t, seq)) {
        fflush(stdout);
        fprintf(stderr,
                "xpbctl: tail: sequence restarted at %" PRIu64 " (after %" PRIu64
                "): bridge restarted?\n",
                seq, t->last_seq);
        t->n_pending = 0;
        t->last_seq = seq;
    }
}

/* ---- per-topic gaps (filtered tail) ---- */

static uint32_t topic_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static void topic_unlink(tail_gaps *t, tail_topic *tp)
{
    if (tp->lprev)
        tp->lprev->lnext = tp->lnext;
    else
        t->lru_head = tp->lnext;
    if (tp->lnext)
        tp->lnext->lprev = tp->lprev;
    else
        t->lru_tail = tp->lprev;
    tp->lprev = tp->lnext = NULL;
}

static void topic_push(tail_gaps *t, tail_topic *tp)
{
    tp->lnext = t->lru_head;
    if (t->lru_head)
        t->lru_head->lprev = tp;
    else
        t->lru_tail = tp;
    t->lru_head = tp;
}

static void topic_forget_oldest(tail_gaps *t)
{
    tail_topic *tp = t->lru_tail;
    topic_unlink(t, tp);
    tail_topic **pp = &t->topics[tp->hash & (TAIL_TOPIC_BUCKETS - 1)];
    while (*pp != tp)
        pp = &(*pp)->hnext;
    *pp = tp->hnext;
    free(tp);
    t->n_topics--;
}

static void free_topics(tail_gaps *t)
{
    while (t->lru_tail)
        topic_forget_oldest(t);
}

/* Printed as is, on stderr and inside a JSON string: a bridge's topics are
 * "<kind>/<bare JID>/" and a JID holds no '"' (RFC 7622 §3.3.1, §3.2), so
 * anything else is simply not tracked. */
static bool topic_printable(const uint8_t *s, size_t len)
{
    if (!len || len > TAIL_TOPIC_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] == 0x7f || s[i] == '"' || s[i] == '\\') return false;
    return true;
}

/* The topic's entry, now the most recently seen; new ones have last_seq 0. */
static tail_topic *topic_get(tail_gaps *t, const uint8_t *name, size_t len)
{
    if (!topic_printable(name, len)) return NULL;
    uint32_t h = topic_hash((const char *)name, len);
    tail_topic **head = &t->topics[h & (TAIL_TOPIC_BUCKETS - 1)];
    for (tail_topic *tp = *head; tp; tp = tp->hnext)
        if (tp->hash == h && tp->len == len && memcmp(tp->name, name, len) == 0) {
            topic_unlink(t, tp);
            topic_push(t, tp);
            return tp;
        }
    if (t->n_topics >= TAIL_MAX_TOPICS) topic_forget_oldest(t);
    tail_topic *tp = calloc(1, sizeof(*tp) + len + 1);
    if (!tp) return NULL;
    memcpy(tp->name, name, len);
    tp->len = len;
    tp->hash = h;
    tp->hnext = *head;
    *head = tp;
    topic_push(t, tp);
    t->n_topics++;
    return tp;
}

static void report_topic_lost(const tail_gaps *t, const tail_topic *tp, uint64_t before,
                              uint64_t last)
{
    if (t->json) {
        printf("{\"gap\":{\"topic\":\"%s\",\"after\":%" PRIu64 ",\"before\":%" PRIu64
               ",\"last\":%" PRIu64 "}}\n",
               tp->name, tp->last_seq, before, last);
    } else {
        fflush(stdout);
        fprintf(stderr,
                "xpbctl: tail: lost events on %s between seq %" PRIu64 " and %" PRIu64
                " (the last was %" PRIu64 ")\n",
                tp->name, tp->last_seq, before, last);
    }
}

/* A batch of a filtered tail: prev_seq names the topic's event before it
 * (docs/bus.md); 0 or absent means unknown. A first seq at or below the last
 * one seen means the bridge restarted: start the topic over. */
static void check_topic_gap(tail_gaps *t, const uint8_t *topic, size_t len,
                            const Xpb__V1__EventBatch *b)
{
    tail_topic *tp = topic_get(t, topic, len);
    if (!tp) return;
    uint64_t first = b->event[0]->seq;
    if (tp->last_seq && first > tp->last_seq && b->has_prev_seq && b->prev_seq > tp->last_seq)
        report_topic_lost(t, tp, first, b->prev_seq);
    tp->last_seq = b->event[b->n_event - 1]->seq;
}

tail_gaps *tail_gaps_new(bool filtered, bool json)
{
    tail_gaps *t = calloc(1, sizeof(*t)); /* the topic table is big for a stack */
    if (!t) return NULL;
    t->json = json;
    t->check_gaps = !filtered;
    return t;
}

void tail_gaps_batch(tail_gaps *t, const uint8_t *topic, size_t len, const Xpb__V1__EventBatch *b)
{
    if (b->n_event == 0) return;
    if (t->check_gaps)
        settle_pending(t, b->event[0]->seq);
    else
        check_topic_gap(t, topic, len, b);
}

void tail_gaps_event(tail_gaps *t, uint64_t seq)
{
    if (t->check_gaps) check_gap(t, seq);
}

void tail_gaps_free(tail_gaps *t)
{
    if (!t) return;
    free_topics(t);
    free(t);
}
