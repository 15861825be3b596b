/* The NATS JetStream back end (xpb_bus_backend.h, docs/bus.md "NATS
 * JetStream"): each batch goes to the stream as one message on
 * xpb.ev.<kind>.<account-token>, held until JetStream acknowledges it and
 * sent again (same Nats-Msg-Id, so the server drops a copy it already has)
 * when refused or not acknowledged; requests arrive on xpb.req.<token> for
 * the accounts routed here and on xpb.ctl.*. The connection's socket runs on
 * the loop (xpb_loop_nats.h); libnats calls our handlers on its own threads,
 * which only queue and signal the loop (xpb_wake). A second connection with
 * libnats' own threads does what blocks: the stream set-up and the last
 * resends at close. Only bus_nats*.c include nats.h in bridge/bus. */
#include "xpb_bus_backend.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bus_endpoint.h" /* xpb_bus_set_err */
#include "xpb_bus_nats.h"
#include "xpb_error.h"
#include "xpb_log.h"
#include "xpb_loop.h"
#include "xpb_loop_nats.h"

#define ROUTE_BUCKETS 4096u /* power of two; chains grow past it (O(1) while n ~ buckets) */
#define SUBJECT_MAX 10240u  /* xpb.ev.<kind>.<token of a 3071-byte JID> */

struct xpb_bus_token {
    struct xpb_bus_token *next;
    natsMsg *msg; /* the request; its reply subject is where the answer goes */
};

enum pend_state { P_INFLIGHT, P_FAILED, P_ACKED };

/* A batch taken and not yet acknowledged, in seq order in a ring. */
typedef struct pend {
    uint64_t first, last;
    char *subject;
    uint8_t *data;
    size_t len;
    char msgid[96];
    enum pend_state state;
} pend;

typedef struct ack_ev {
    uint64_t first; /* batches are found by their first seq */
    int ok;
} ack_ev;

typedef struct route {
    struct route *next;
    natsSubscription *sub;
    char account[];
} route;

typedef struct nats_be {
    xpb_bus_host host;
    xpb_loop *loop;
    xpb_bus_nats_cfg cfg;
    char *endpoint; /* the servers, comma-separated */
    natsConnection *nc, *ctl;
    jsCtx *js, *ctl_js;
    natsSubscription *sub_all, *sub_any;
    xpb_wake *wake;
    xpb_timer *retry;
    unsigned retry_ms;
    char instance[40]; /* Nats-Msg-Id prefix without a journal: unique per process */

    pthread_mutex_t mu; /* guards the three below (libnats threads and the loop) */
    xpb_bus_token *rq_head, *rq_tail;
    unsigned rq_n;
    ack_ev *acks;
    size_t nacks, capacks;
    int closing;
    uint64_t requests_dropped;

    pend *ring; /* loop thread only */
    size_t rhead, rcount, rcap, pend_bytes;
    route *routes[ROUTE_BUCKETS];
    uint64_t reply_errors, retries, acked;
    uint64_t max_last; /* the highest seq taken */
} nats_be;

/* ---- libnats threads: queue and wake ---- */

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    nats_be *be = closure;
    const char *v = NULL;
    if (natsMsgHeader_Get(msg, XPB_NATS_HDR_FIRST, &v) == NATS_OK && v != NULL) {
        ack_ev ev = {.first = strtoull(v, NULL, 10), .ok = pa != NULL && pae == NULL};
        pthread_mutex_lock(&be->mu);
        if (be->nacks == be->capacks) {
            size_t n = be->capacks ? be->capacks * 2 : 256;
            ack_ev *a = realloc(be->acks, n * sizeof *a);
            if (a != NULL) {
                be->acks = a;
                be->capacks = n;
            }
        }
        /* Out of memory: the ack is lost and the batch goes again (same id). */
        if (be->nacks < be->capacks) be->acks[be->nacks++] = ev;
        pthread_mutex_unlock(&be->mu);
        xpb_wake_signal(be->wake);
    }
    natsMsg_Destroy(msg);
}

static void on_request_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    nats_be *be = closure;
    xpb_bus_token *t = calloc(1, sizeof *t);
    pthread_mutex_lock(&be->mu);
    if (t == NULL || be->closing || be->rq_n >= XPB_NATS_MAX_REQUESTS_QUEUED ||
        natsMsg_GetReply(msg) == NULL) {
        be->requests_dropped++; /* the client times out and sends the same bytes again */
        pthread_mutex_unlock(&be->mu);
        free(t);
        natsMsg_Destroy(msg);
        return;
    }
    t->msg = msg;
    if (be->rq_tail != NULL) be->rq_tail->next = t;
    else be->rq_head = t;
    be->rq_tail = t;
    be->rq_n++;
    pthread_mutex_unlock(&be->mu);
    xpb_wake_signal(be->wake);
}

/* ---- the loop thread: pending batches ---- */

static pend *ring_at(nats_be *be, size_t i)
{
    return &be->ring[(be->rhead + i) & (be->rcap - 1)];
}

static int ring_push(nats_be *be, const pend *p)
{
    if (be->rcount == be->rcap) {
        size_t n = be->rcap ? be->rcap * 2 : 1024;
        pend *r = malloc(n * sizeof *r);
        if (r == NULL) return XPB_ENOMEM;
        for (size_t i = 0; i < be->rcount; i++) r[i] = *ring_at(be, i);
        free(be->ring);
        be->ring = r;
        be->rcap = n;
        be->rhead = 0;
    }
    *ring_at(be, be->rcount++) = *p;
    return 0;
}

/* Batches enter the ring in the order the front opened them, so their
 * first seqs grow along it (their last seqs need not: batches of several
 * topics interleave): binary search by first seq. */
static pend *ring_find(nats_be *be, uint64_t first)
{
    size_t lo = 0, hi = be->rcount;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        pend *p = ring_at(be, mid);
        if (p->first == first) return p;
        if (p->first < first) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static void pend_free(pend *p)
{
    free(p->subject);
    free(p->data);
}

static int send_pend(nats_be *be, pend *p)
{
    natsMsg *m = NULL;
    char first[24], last[24];
    snprintf(first, sizeof first, "%" PRIu64, p->first);
    snprintf(last, sizeof last, "%" PRIu64, p->last);
    natsStatus s = natsMsg_Create(&m, p->subject, NULL, (const char *)p->data, (int)p->len);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, XPB_NATS_HDR_FIRST, first);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, XPB_NATS_HDR_LAST, last);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = p->msgid;
    po.MaxWait = be->cfg.ack_wait_ms;
    if (s == NATS_OK) s = js_PublishMsgAsync(be->js, &m, &po);
    natsMsg_Destroy(m); /* NULL when the library took it */
    p->state = s == NATS_OK ? P_INFLIGHT : P_FAILED;
    return s == NATS_OK ? 0 : XPB_ENOTCONN;
}

static void arm_retry(nats_be *be)
{
    if (!xpb_timer_pending(be->retry)) xpb_timer_start(be->retry, be->retry_ms);
}

static void on_retry(void *ud)
{
    nats_be *be = ud;
    int failed = 0;
    for (size_t i = 0; i < be->rcount; i++) {
        pend *p = ring_at(be, i);
        if (p->state != P_FAILED) continue;
        be->retries++;
        failed |= send_pend(be, p) != 0;
    }
    if (failed) {
        be->retry_ms = be->retry_ms * 2 > XPB_NATS_RETRY_MAX_MS ? XPB_NATS_RETRY_MAX_MS
                                                                : be->retry_ms * 2;
        arm_retry(be);
    }
}

/* Acknowledged batches leave the head; the front learns the highest seq
 * below which every batch is in the stream. */
static void apply_acks(nats_be *be, const ack_ev *acks, size_t n)
{
    int any_failed = 0;
    for (size_t i = 0; i < n; i++) {
        pend *p = ring_find(be, acks[i].first);
        if (p == NULL || p->state == P_ACKED) continue; /* a late second ack */
        if (acks[i].ok) {
            p->state = P_ACKED;
            be->acked++;
            be->retry_ms = XPB_NATS_RETRY_MIN_MS;
        } else {
            p->state = P_FAILED;
            any_failed = 1;
        }
    }
    int popped = 0;
    while (be->rcount > 0 && ring_at(be, 0)->state == P_ACKED) {
        pend *p = ring_at(be, 0);
        be->pend_bytes -= p->len;
        pend_free(p);
        be->rhead = (be->rhead + 1) & (be->rcap - 1);
        be->rcount--;
        popped = 1;
    }
    if (any_failed) arm_retry(be);
    /* Every seq below the oldest batch still held is in the stream (later
     * batches start later); with none held, everything taken is. */
    uint64_t up_to = be->rcount > 0 ? ring_at(be, 0)->first - 1 : be->max_last;
    if (popped && up_to != 0) be->host.published(be->host.front, up_to);
}

static void deliver_requests(nats_be *be)
{
    pthread_mutex_lock(&be->mu);
    xpb_bus_token *q = be->rq_head;
    be->rq_head = be->rq_tail = NULL;
    be->rq_n = 0;
    pthread_mutex_unlock(&be->mu);
    while (q != NULL) {
        xpb_bus_token *next = q->next;
        q->next = NULL;
        /* The front may answer at once (freeing q): nothing of q after this. */
        be->host.request(be->host.front, q, (const uint8_t *)natsMsg_GetData(q->msg),
                         (size_t)natsMsg_GetDataLength(q->msg));
        q = next;
    }
}

static void on_wake(void *ud)
{
    nats_be *be = ud;
    pthread_mutex_lock(&be->mu);
    ack_ev *acks = be->acks;
    size_t n = be->nacks;
    be->acks = NULL;
    be->nacks = be->capacks = 0;
    pthread_mutex_unlock(&be->mu);
    apply_acks(be, acks, n);
    free(acks);
    deliver_requests(be);
}

/* ---- ops ---- */

static int nats_publish(void *bep, const xpb_bus_batch *bt)
{
    nats_be *be = bep;
    size_t len = bt->frame_len - bt->topic_len - 1; /* the EventBatch after the topic */
    if (be->pend_bytes + len > be->cfg.max_pending_bytes) {
        xpb_log(XPB_LOG_WARN, "nats: %zu bytes wait for JetStream acknowledgements "
                              "(nats.max_pending_bytes %zu): batch %" PRIu64 "..%" PRIu64
                              " refused and counted as dropped",
                be->pend_bytes, be->cfg.max_pending_bytes, bt->first_seq, bt->last_seq);
        return XPB_EQUEUEFULL;
    }
    char subject[SUBJECT_MAX];
    size_t sl = xpb_nats_event_subject(bt->kind, bt->account, subject, sizeof subject);
    if (sl >= sizeof subject) return XPB_ETOOBIG;
    pend p = {.first = bt->first_seq, .last = bt->last_seq, .len = len};
    snprintf(p.msgid, sizeof p.msgid, "%s.%" PRIu64,
             bt->journal_id != NULL ? bt->journal_id : be->instance, bt->first_seq);
    p.subject = strdup(subject);
    p.data = malloc(len > 0 ? len : 1);
    if (p.subject == NULL || p.data == NULL || ring_push(be, &p) != 0) {
        pend_free(&p);
        return XPB_ENOMEM;
    }
    memcpy(p.data, bt->frame + bt->topic_len + 1, len);
    be->pend_bytes += len;
    if (bt->last_seq > be->max_last) be->max_last = bt->last_seq;
    if (send_pend(be, ring_at(be, be->rcount - 1)) != 0) arm_retry(be);
    return 0; /* taken: sent, or held for the retry timer */
}

static int nats_reply(void *bep, xpb_bus_token *tok, const uint8_t *data, size_t len)
{
    nats_be *be = bep;
    natsStatus s = natsConnection_Publish(be->nc, natsMsg_GetReply(tok->msg), data, (int)len);
    natsMsg_Destroy(tok->msg);
    free(tok);
    if (s != NATS_OK) {
        be->reply_errors++;
        return XPB_ENOTCONN;
    }
    return 0;
}

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static int nats_route(void *bep, const char *account, int on)
{
    nats_be *be = bep;
    route **pp = &be->routes[hash_str(account) & (ROUTE_BUCKETS - 1)];
    while (*pp != NULL && strcmp((*pp)->account, account) != 0) pp = &(*pp)->next;
    if (!on) {
        route *r = *pp;
        if (r == NULL) return 0;
        *pp = r->next;
        natsSubscription_Unsubscribe(r->sub);
        natsSubscription_Destroy(r->sub);
        free(r);
        return 0;
    }
    if (*pp != NULL) return 0;
    char subject[SUBJECT_MAX];
    if (xpb_nats_request_subject(account, subject, sizeof subject) >= sizeof subject)
        return XPB_ETOOBIG;
    size_t al = strlen(account);
    route *r = calloc(1, sizeof *r + al + 1);
    if (r == NULL) return XPB_ENOMEM;
    memcpy(r->account, account, al + 1);
    if (natsConnection_QueueSubscribe(&r->sub, be->nc, subject, XPB_NATS_QUEUE, on_request_msg,
                                      be) != NATS_OK) {
        free(r);
        return XPB_ENOTCONN;
    }
    *pp = r;
    return 0;
}

/* ---- life cycle ---- */

static int set_options(nats_be *be, natsOptions **out, int on_loop, char *err, size_t errlen)
{
    natsOptions *o = NULL;
    const xpb_bus_nats_cfg *c = &be->cfg;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetServers(o, (const char **)c->servers, (int)c->n_servers);
    if (s == NATS_OK) s = natsOptions_SetName(o, c->bridge_id);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1); /* a bridge never gives up */
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
    /* A node that stops answering is left after 2 missed pings (~4 s). */
    if (s == NATS_OK) s = natsOptions_SetPingInterval(o, XPB_NATS_PING_MS);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(o, 2);
    if (s == NATS_OK) s = natsOptions_SetIgnoreDiscoveredServers(o, c->only_listed_servers);
    if (s == NATS_OK && c->ca_file != NULL) {
        s = natsOptions_SetSecure(o, true);
        if (s == NATS_OK) s = natsOptions_LoadCATrustedCertificates(o, c->ca_file);
    }
    if (s == NATS_OK && c->cert_file != NULL)
        s = natsOptions_LoadCertificatesChain(o, c->cert_file, c->key_file);
    if (s == NATS_OK && c->creds_file != NULL)
        s = natsOptions_SetUserCredentialsFromFiles(o, c->creds_file, NULL);
    if (s == NATS_OK && c->nkey_seed_file != NULL)
        s = natsOptions_SetNKeyFromSeed(o, c->nkey_public, c->nkey_seed_file);
    if (s == NATS_OK && on_loop && xpb_loop_nats_attach(be->loop, o) != 0) {
        xpb_bus_set_err(err, errlen, "nats: the loop was made without thread_safe, which the "
                                     "NATS client's reconnect thread needs");
        natsOptions_Destroy(o);
        return XPB_EINVAL;
    }
    if (s != NATS_OK) {
        xpb_bus_set_err(err, errlen, "nats: options (servers, TLS files, credentials): %s",
                        natsStatus_GetText(s));
        natsOptions_Destroy(o);
        return XPB_EINVAL;
    }
    *out = o;
    return 0;
}

int xpb_bus_nats_replicas(const xpb_bus_nats_cfg *cfg)
{
    if (cfg->replicas > 0) return cfg->replicas;
    return cfg->n_servers >= 3 ? 3 : 1;
}

/* The events stream, made when missing. An existing stream is used as it is
 * (its settings belong to whoever made it); the log says which. */
static int ensure_stream(nats_be *be, char *err, size_t errlen)
{
    const char *name = be->cfg.stream != NULL ? be->cfg.stream : XPB_NATS_STREAM;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, be->ctl_js, name, NULL, &jerr);
    if (s == NATS_OK) {
        xpb_log(XPB_LOG_INFO, "nats: stream %s exists (%" PRIu64 " messages); its settings stay",
                name, si->State.Msgs);
        jsStreamInfo_Destroy(si);
        return 0;
    }
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[] = {XPB_NATS_EVENT_PREFIX ">"};
    sc.Name = name;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = be->cfg.memory_storage ? js_MemoryStorage : js_FileStorage;
    sc.Replicas = xpb_bus_nats_replicas(&be->cfg);
    sc.MaxAge = (int64_t)be->cfg.max_age_s * 1000000000;
    sc.MaxBytes = be->cfg.max_bytes ? (int64_t)be->cfg.max_bytes : -1;
    sc.Duplicates = (int64_t)be->cfg.dup_window_s * 1000000000;
    s = js_AddStream(&si, be->ctl_js, &sc, NULL, &jerr);
    if (s != NATS_OK) {
        xpb_bus_set_err(err, errlen, "nats: cannot create stream %s (replicas %d): %s (%d)", name,
                        (int)sc.Replicas, natsStatus_GetText(s), (int)jerr);
        return XPB_EINVAL;
    }
    xpb_log(XPB_LOG_INFO, "nats: stream %s created: %s storage, %d replicas", name,
            be->cfg.memory_storage ? "memory" : "file", (int)sc.Replicas);
    jsStreamInfo_Destroy(si);
    return 0;
}

static int connect_both(nats_be *be, char *err, size_t errlen)
{
    natsOptions *lo = NULL, *co = NULL;
    int rc = set_options(be, &lo, 1, err, errlen);
    if (rc == 0) rc = set_options(be, &co, 0, err, errlen);
    natsStatus s = NATS_OK;
    if (rc == 0) s = natsConnection_Connect(&be->ctl, co);
    if (rc == 0 && s == NATS_OK) s = natsConnection_Connect(&be->nc, lo);
    natsOptions_Destroy(lo);
    natsOptions_Destroy(co);
    if (rc == 0 && s != NATS_OK) {
        xpb_bus_set_err(err, errlen, "nats: cannot connect to %s: %s", be->endpoint,
                        natsStatus_GetText(s));
        rc = XPB_EINVAL;
    }
    if (rc != 0) return rc;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = be;
    jo.PublishAsync.MaxPending = 1 << 16;
    jo.PublishAsync.StallWait = 1; /* never hold the loop: a stalled publish waits in the ring */
    s = natsConnection_JetStream(&be->js, be->nc, &jo);
    if (s == NATS_OK) s = natsConnection_JetStream(&be->ctl_js, be->ctl, NULL);
    if (s != NATS_OK) {
        xpb_bus_set_err(err, errlen, "nats: JetStream context: %s", natsStatus_GetText(s));
        return XPB_ENOMEM;
    }
    return ensure_stream(be, err, errlen);
}

static int subscribe_ctl(nats_be *be, char *err, size_t errlen)
{
    natsStatus s = natsConnection_Subscribe(&be->sub_all, be->nc, XPB_NATS_CTL_ALL,
                                            on_request_msg, be);
    if (s == NATS_OK)
        s = natsConnection_QueueSubscribe(&be->sub_any, be->nc, XPB_NATS_CTL_ANY, XPB_NATS_QUEUE,
                                          on_request_msg, be);
    if (s != NATS_OK) {
        xpb_bus_set_err(err, errlen, "nats: cannot subscribe to xpb.ctl: %s",
                        natsStatus_GetText(s));
        return XPB_ENOTCONN;
    }
    return 0;
}

static void nats_close(void *bep);

static int copy_cfg(nats_be *be, const xpb_bus_nats_cfg *c, char *err, size_t errlen)
{
    if (c == NULL || c->n_servers == 0 || c->n_servers > XPB_NATS_MAX_SERVERS) {
        xpb_bus_set_err(err, errlen, "nats: servers must list 1..%u URLs", XPB_NATS_MAX_SERVERS);
        return XPB_EINVAL;
    }
    be->cfg = *c;
    if (be->cfg.dup_window_s == 0) be->cfg.dup_window_s = XPB_NATS_DEFAULT_DUP_WINDOW_S;
    if (be->cfg.ack_wait_ms == 0) be->cfg.ack_wait_ms = XPB_NATS_DEFAULT_ACK_WAIT_MS;
    if (be->cfg.max_pending_bytes == 0) be->cfg.max_pending_bytes = XPB_NATS_DEFAULT_MAX_PENDING;
    if (be->cfg.bridge_id == NULL) be->cfg.bridge_id = "xpbridge";
    size_t n = 1;
    for (size_t i = 0; i < c->n_servers; i++) n += strlen(c->servers[i]) + 1;
    be->endpoint = calloc(1, n);
    if (be->endpoint == NULL) return XPB_ENOMEM;
    size_t at = 0;
    for (size_t i = 0; i < c->n_servers; i++) {
        size_t l = strlen(c->servers[i]);
        if (i > 0) be->endpoint[at++] = ',';
        memcpy(be->endpoint + at, c->servers[i], l);
        at += l;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(be->instance, sizeof be->instance, "%s-%lx%lx", "run", (unsigned long)ts.tv_sec,
             (unsigned long)ts.tv_nsec ^ ((unsigned long)getpid() << 20));
    return 0;
}

static int nats_open(void **out, xpb_loop *loop, const xpb_bus_config *cfg,
                     const xpb_bus_host *host, char *err, size_t errlen)
{
    *out = NULL;
    nats_be *be = calloc(1, sizeof *be);
    if (be == NULL) return XPB_ENOMEM;
    be->host = *host;
    be->loop = loop;
    be->retry_ms = XPB_NATS_RETRY_MIN_MS;
    pthread_mutex_init(&be->mu, NULL);
    int rc = copy_cfg(be, cfg->backend_cfg, err, errlen);
    if (rc == 0) rc = xpb_wake_new(loop, on_wake, be, &be->wake);
    if (rc == 0) rc = xpb_timer_new(loop, on_retry, be, &be->retry);
    if (rc == 0) rc = connect_both(be, err, errlen);
    if (rc == 0) rc = subscribe_ctl(be, err, errlen);
    if (rc != 0) {
        nats_close(be);
        return rc;
    }
    xpb_log(XPB_LOG_INFO, "nats: bridge %s connected to %s", be->cfg.bridge_id, be->endpoint);
    *out = be;
    return 0;
}

static void unsubscribe_all(nats_be *be)
{
    natsSubscription *subs[] = {be->sub_all, be->sub_any};
    for (size_t i = 0; i < 2; i++)
        if (subs[i] != NULL) natsSubscription_Unsubscribe(subs[i]);
    for (unsigned b = 0; b < ROUTE_BUCKETS; b++)
        for (route *r = be->routes[b]; r != NULL; r = r->next)
            natsSubscription_Unsubscribe(r->sub);
}

static void nats_drain(void *bep)
{
    nats_be *be = bep;
    pthread_mutex_lock(&be->mu);
    be->closing = 1;
    pthread_mutex_unlock(&be->mu);
    unsubscribe_all(be);
    deliver_requests(be);
}

/* The loop no longer runs the socket: what JetStream has not acknowledged
 * goes again on the threaded connection, synchronously, with the same ids
 * (the duplicate window drops what had arrived), within XPB_NATS_CLOSE_WAIT_MS. */
static void flush_pending_sync(nats_be *be)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t lost = 0;
    for (size_t i = 0; i < be->rcount; i++) {
        pend *p = ring_at(be, i);
        if (p->state == P_ACKED) continue;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        natsStatus s = NATS_TIMEOUT;
        if (ms < (long)XPB_NATS_CLOSE_WAIT_MS && be->ctl_js != NULL) {
            natsMsg *m = NULL;
            char last[24];
            snprintf(last, sizeof last, "%" PRIu64, p->last);
            jsPubOptions po;
            jsPubOptions_Init(&po);
            po.MsgId = p->msgid;
            po.MaxWait = (int64_t)XPB_NATS_CLOSE_WAIT_MS - ms;
            jsPubAck *pa = NULL;
            s = natsMsg_Create(&m, p->subject, NULL, (const char *)p->data, (int)p->len);
            if (s == NATS_OK) s = natsMsgHeader_Set(m, XPB_NATS_HDR_LAST, last);
            if (s == NATS_OK) s = js_PublishMsg(&pa, be->ctl_js, m, &po, NULL);
            jsPubAck_Destroy(pa);
            natsMsg_Destroy(m);
        }
        if (s == NATS_OK) p->state = P_ACKED;
        else lost++;
    }
    if (lost > 0)
        xpb_log(XPB_LOG_ERROR, "nats: %zu batches not acknowledged by JetStream at close "
                               "(within %u ms); with a state directory the journal keeps them",
                lost, XPB_NATS_CLOSE_WAIT_MS);
}

static void nats_close(void *bep)
{
    nats_be *be = bep;
    if (be == NULL) return;
    pthread_mutex_lock(&be->mu);
    be->closing = 1;
    pthread_mutex_unlock(&be->mu);
    xpb_timer_free(be->retry);
    if (be->rcount > 0) flush_pending_sync(be);
    for (unsigned b = 0; b < ROUTE_BUCKETS; b++)
        while (be->routes[b] != NULL) {
            route *r = be->routes[b];
            be->routes[b] = r->next;
            natsSubscription_Destroy(r->sub);
            free(r);
        }
    natsSubscription_Destroy(be->sub_all);
    natsSubscription_Destroy(be->sub_any);
    jsCtx_Destroy(be->js);
    jsCtx_Destroy(be->ctl_js);
    if (be->nc != NULL) natsConnection_Close(be->nc);
    natsConnection_Destroy(be->nc);
    natsConnection_Destroy(be->ctl);
    xpb_wake_free(be->wake);
    while (be->rq_head != NULL) {
        xpb_bus_token *t = be->rq_head;
        be->rq_head = t->next;
        natsMsg_Destroy(t->msg);
        free(t);
    }
    for (size_t i = 0; i < be->rcount; i++) pend_free(ring_at(be, i));
    free(be->ring);
    free(be->acks);
    free(be->endpoint);
    pthread_mutex_destroy(&be->mu);
    free(be);
}

static void nats_stats(void *bep, xpb_bus_backend_stats *out)
{
    nats_be *be = bep;
    out->reply_errors = be->reply_errors;
    out->publish_retries = be->retries;
    out->publish_pending = be->rcount;
}

static const char *nats_endpoint(void *bep, xpb_bus_endpoint which)
{
    (void)which;
    return ((nats_be *)bep)->endpoint;
}

const xpb_bus_backend_ops xpb_bus_nats_ops = {
    .name = "nats",
    .open = nats_open,
    .publish = nats_publish,
    .flush_done = NULL,
    .reply = nats_reply,
    .drain = nats_drain,
    .close = nats_close,
    .stats = nats_stats,
    .endpoint = nats_endpoint,
    .route = nats_route,
};
