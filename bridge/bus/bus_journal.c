/* The journal back end (xpb_bus_journal.h): write ahead of publish. Each
 * flush's batches are copied, their events appended to the journal in one
 * transaction (a group commit), then handed to the inner back end. With the
 * store thread (xpb_store_thread_start) the append is handed to it and the
 * flush's batches wait, in flush order, for its completion: the loop goes on
 * meanwhile and the events are still published only once written. When the
 * journal cannot be written (a full or read-only state directory) the events
 * are still published, and the error is counted and logged once per cause:
 * live relaying never stops for the disk. */
#include "xpb_bus_journal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "bus_internal.h"
#include "xpb_error.h"
#include "xpb_log.h"
#include "xpb_loop.h"

typedef struct held_batch {
    xpb_bus_batch bt; /* frame, topic, kind and account point into mem */
    uint8_t *mem;
} held_batch;

typedef struct jbe {
    const xpb_bus_backend_ops *inner;
    void *inner_be;
    xpb_bus_config inner_cfg;
    const xpb_bus_host *front;
    xpb_bus_host host; /* what the inner back end calls: passed on to the front */
    xpb_store *store;
    xpb_timer *trim;
    held_batch *held;
    size_t nheld, capheld;
    xpb_journal_event *ev;
    size_t nev, capev;
    int last_error; /* logged once until it changes or a commit works again */
    unsigned inflight; /* flushes the store thread holds (at most XPB_BUS_JOURNAL_INFLIGHT_MAX) */
    xpb_bus_journal_stats st;
} jbe;

static void on_inner_request(void *front, xpb_bus_token *tok, const uint8_t *data, size_t len)
{
    const jbe *j = front;
    j->front->request(j->front->front, tok, data, len);
}

static void on_inner_published(void *front, uint64_t seq)
{
    const jbe *j = front;
    j->front->published(j->front->front, seq);
}

static int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static void on_trimmed(void *ud, const char *account, uint64_t id, int rc, const char *err)
{
    (void)ud;
    (void)account;
    (void)id;
    if (rc != 0) xpb_log(XPB_LOG_WARN, "journal retention: %s", err);
}

static void on_trim(void *ud)
{
    jbe *j = ud;
    char err[512];
    if (xpb_store_threaded(j->store)) {
        if (xpb_store_submit_trim(j->store, now_us(), on_trimmed, j) != 0)
            xpb_log(XPB_LOG_WARN, "journal retention: out of memory; tried again later");
    } else if (xpb_store_journal_trim(j->store, now_us(), err, sizeof err) != 0) {
        xpb_log(XPB_LOG_WARN, "journal retention: %s", err);
    }
    xpb_timer_start(j->trim, XPB_BUS_JOURNAL_TRIM_MS);
}

static int j_open(void **be, xpb_loop *loop, const xpb_bus_config *cfg, const xpb_bus_host *host,
                  char *err, size_t errlen)
{
    const xpb_bus_journal_cfg *jc = cfg->backend_cfg;
    if (jc == NULL || jc->store == NULL) return XPB_EINVAL;
    jbe *j = calloc(1, sizeof *j);
    if (j == NULL) return XPB_ENOMEM;
    j->store = jc->store;
    j->front = host;
    j->inner = jc->inner != NULL ? jc->inner : &xpb_bus_nng_ops;
    j->inner_cfg = *cfg;
    j->inner_cfg.backend = j->inner;
    j->inner_cfg.backend_cfg = jc->inner_cfg;
    j->host = (xpb_bus_host){.front = j, .request = on_inner_request,
                             .published = on_inner_published};
    int rc = xpb_timer_new(loop, on_trim, j, &j->trim);
    if (rc == 0) rc = j->inner->open(&j->inner_be, loop, &j->inner_cfg, &j->host, err, errlen);
    if (rc != 0) {
        xpb_timer_free(j->trim);
        free(j);
        return rc;
    }
    on_trim(j);
    *be = j;
    return 0;
}

/* A varint at *p (below end); 0 when malformed. */
static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t c = *(*p)++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return 1;
    }
    return 0;
}

/* Event.seq (field 1) and Event.timestamp_us (field 2) from an event's bytes. */
static void event_head(const uint8_t *p, const uint8_t *end, uint64_t *seq, uint64_t *ts)
{
    *seq = *ts = 0;
    uint64_t tag, v;
    while (p < end && get_varint(&p, end, &tag)) {
        unsigned wt = (unsigned)(tag & 7);
        if (wt == 0) {
            if (!get_varint(&p, end, &v)) return;
            if (tag >> 3 == 1) *seq = v;
            if (tag >> 3 == 2) *ts = v;
        } else if (wt == 2) {
            if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p)) return;
            p += v;
        } else {
            return; /* seq and timestamp come first; nothing else is needed */
        }
        if (*seq && *ts) return;
    }
}

static int grow(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need) n *= 2;
    void *p = realloc(*arr, n * size);
    if (p == NULL) return XPB_ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

/* The events of one held batch: EventBatch field 1 (tag 0x0a) entries. */
static int collect_events(jbe *j, const held_batch *h)
{
    const uint8_t *p = h->bt.frame + h->bt.topic_len + 1, *end = h->bt.frame + h->bt.frame_len;
    uint64_t tag, len;
    while (p < end && get_varint(&p, end, &tag)) {
        unsigned wt = (unsigned)(tag & 7);
        if (wt == 0) {
            if (!get_varint(&p, end, &len)) return XPB_EPBDECODE;
            continue;
        }
        if (wt != 2 || !get_varint(&p, end, &len) || len > (uint64_t)(end - p))
            return XPB_EPBDECODE;
        if (tag >> 3 == 1) {
            if (grow((void **)&j->ev, &j->capev, j->nev + 1, sizeof *j->ev)) return XPB_ENOMEM;
            uint64_t seq, ts;
            event_head(p, p + len, &seq, &ts);
            j->ev[j->nev++] = (xpb_journal_event){.seq = seq, .time_us = (int64_t)ts,
                                                  .topic = h->bt.topic, .record = p,
                                                  .record_len = (size_t)len};
        }
        p += len;
    }
    return 0;
}

static int j_publish(void *be, const xpb_bus_batch *bt)
{
    jbe *j = be;
    if (grow((void **)&j->held, &j->capheld, j->nheld + 1, sizeof *j->held)) return XPB_ENOMEM;
    size_t tl = strlen(bt->topic), kl = strlen(bt->kind), al = strlen(bt->account);
    uint8_t *mem = malloc(bt->frame_len + tl + kl + al + 3);
    if (mem == NULL) return XPB_ENOMEM;
    held_batch *h = &j->held[j->nheld++];
    h->mem = mem;
    h->bt = *bt;
    memcpy(mem, bt->frame, bt->frame_len);
    char *s = (char *)mem + bt->frame_len;
    memcpy(s, bt->topic, tl + 1);
    memcpy(s + tl + 1, bt->kind, kl + 1);
    memcpy(s + tl + 1 + kl + 1, bt->account, al + 1);
    h->bt.frame = mem;
    h->bt.topic = s;
    h->bt.kind = s + tl + 1;
    h->bt.account = s + tl + 1 + kl + 1;
    return 0;
}

static void count_append(jbe *j, size_t nev, int rc, const char *err)
{
    if (rc == 0) {
        j->st.commits++;
        j->st.events += nev;
        if (j->last_error) xpb_log(XPB_LOG_INFO, "journal: writing again");
        j->last_error = 0;
        return;
    }
    j->st.append_errors++;
    if (rc != j->last_error)
        xpb_log(XPB_LOG_ERROR, "journal: %s; events are published but not kept for replay",
                err && err[0] ? err : xpb_strerror(rc));
    j->last_error = rc;
}

static int by_seq(const void *a, const void *b)
{
    uint64_t x = ((const xpb_journal_event *)a)->seq, y = ((const xpb_journal_event *)b)->seq;
    return x < y ? -1 : x > y;
}

/* The flush's events in seq order. Batches are per topic and leave in the
 * order of their first seq, so two topics' events interleave across them
 * (message/a: 1, 3; state/b: 2): batch by batch they come 1, 3, 2, and the
 * journal, whose seqs only grow, refused the whole flush (the events were
 * published and not kept: a resuming subscriber missed them). */
static int collect_held(jbe *j)
{
    int rc = 0;
    j->nev = 0;
    for (size_t i = 0; i < j->nheld && rc == 0; i++) rc = collect_events(j, &j->held[i]);
    for (size_t i = 1; rc == 0 && i < j->nev; i++)
        if (j->ev[i].seq < j->ev[i - 1].seq) {
            qsort(j->ev, j->nev, sizeof *j->ev, by_seq);
            break;
        }
    return rc;
}

/* The held batches go to the inner back end, in their order, and are freed. */
static void publish_held(jbe *j, held_batch *held, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        j->inner->publish(j->inner_be, &held[i].bt);
        free(held[i].mem);
    }
    if (j->inner->flush_done) j->inner->flush_done(j->inner_be);
}

/* One flush handed to the store thread: its batches and the events that point
 * into them, until the append completes. */
typedef struct flight {
    jbe *j;
    held_batch *held;
    size_t nheld;
    xpb_journal_event *ev;
    size_t nev;
} flight;

static void on_appended(void *ud, const char *account, uint64_t id, int rc, const char *err)
{
    (void)account;
    (void)id;
    flight *f = ud;
    f->j->inflight--;
    count_append(f->j, f->nev, rc, err);
    publish_held(f->j, f->held, f->nheld);
    free(f->held);
    free(f->ev);
    free(f);
}

/* 0 when the store thread took the flush (published once written). */
static int hand_over(jbe *j)
{
    if (j->inflight >= XPB_BUS_JOURNAL_INFLIGHT_MAX) { /* bounded: wait for the disk */
        j->st.waits++;
        xpb_store_wait(j->store);
    }
    int rc = collect_held(j);
    flight *f = rc == 0 ? calloc(1, sizeof *f) : NULL;
    if (f == NULL) return rc ? rc : XPB_ENOMEM;
    *f = (flight){.j = j, .held = j->held, .nheld = j->nheld, .ev = j->ev, .nev = j->nev};
    if (xpb_store_submit_journal(j->store, f->ev, f->nev, on_appended, f) != 0) {
        free(f);
        return XPB_ENOMEM;
    }
    j->inflight++;
    j->held = NULL; /* the flight owns them now */
    j->nheld = j->capheld = 0;
    j->ev = NULL;
    j->nev = j->capev = 0;
    return 0;
}

static void j_flush_done(void *be)
{
    jbe *j = be;
    if (j->nheld == 0) return;
    char err[512] = "";
    int rc;
    if (xpb_store_threaded(j->store)) {
        if ((rc = hand_over(j)) == 0) return;
    } else if ((rc = collect_held(j)) == 0) {
        rc = xpb_store_journal_append(j->store, j->ev, j->nev, err, sizeof err);
    }
    count_append(j, j->nev, rc, err);
    publish_held(j, j->held, j->nheld);
    j->nheld = 0;
}

static int j_reply(void *be, xpb_bus_token *tok, const uint8_t *data, size_t len)
{
    jbe *j = be;
    return j->inner->reply(j->inner_be, tok, data, len);
}

static void j_drain(void *be)
{
    jbe *j = be;
    j->inner->drain(j->inner_be);
}

static void j_close(void *be)
{
    jbe *j = be;
    j_flush_done(j);
    xpb_store_wait(j->store); /* what the store thread holds is published first */
    j->inner->close(j->inner_be);
    xpb_timer_free(j->trim);
    free(j->held);
    free(j->ev);
    free(j);
}

static void j_stats(void *be, xpb_bus_backend_stats *out)
{
    jbe *j = be;
    j->inner->stats(j->inner_be, out);
}

static const char *j_endpoint(void *be, xpb_bus_endpoint which)
{
    jbe *j = be;
    return j->inner->endpoint ? j->inner->endpoint(j->inner_be, which) : NULL;
}

void xpb_bus_journal_get_stats(const xpb_bus *b, xpb_bus_journal_stats *out)
{
    const jbe *j = xpb_bus_backend_of(b, &xpb_bus_journal_ops);
    if (j != NULL)
        *out = j->st;
    else
        memset(out, 0, sizeof *out);
}

static int j_route(void *be, const char *account, int on)
{
    jbe *j = be;
    return j->inner->route != NULL ? j->inner->route(j->inner_be, account, on) : 0;
}

const xpb_bus_backend_ops xpb_bus_journal_ops = {
    .name = "journal",
    .open = j_open,
    .publish = j_publish,
    .flush_done = j_flush_done,
    .reply = j_reply,
    .drain = j_drain,
    .close = j_close,
    .stats = j_stats,
    .endpoint = j_endpoint,
    .route = j_route,
};
