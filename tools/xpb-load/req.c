/* xpb-load's REQ load generator: K NNG contexts on one REQ socket, each
 * sending the next `send` request as soon as its reply arrives, so K requests
 * are always in flight (docs/bus.md, "Requests"). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "load.h"
#include "xpb/v1/bus.pb-c.h"
#include "xpb_bus_wire.h"
#include "xpb_nng_close.h"

#define REQ_TIMEOUT_MS 60000
#define REQ_FULL_BACKOFF_MS 1 /* a context waits this long after an ERR_QUEUE_FULL */
#define REQ_MAX_IN_FLIGHT 1024u
#define STATUS_TIMEOUT_MS 5000

typedef struct lreq lreq;
typedef struct lctx {
    lreq *r;
    nng_ctx ctx;
    nng_aio *aio;
    int receiving, sleeping;
    uint64_t cnt; /* stanzas in the request in flight */
} lctx;

struct lreq {
    const char *account;
    uint64_t n, issued, answered; /* stanzas */
    unsigned batch;               /* 0: send; else send_batch of up to this many */
    lreq_result *res;
    pthread_mutex_t mu;
    pthread_cond_t done;
    int failed;
};

/* Request ids never repeat within the process: the bridge answers a repeated
 * id from its cache without acting (docs/bus.md). */
static atomic_ullong next_id;

#define BATCH_MAX 4096u

/* One message i: "load message i" to peer@LOAD_DOMAIN. */
typedef struct one_msg {
    char body[64];
    Xpb__V1__Text t, *tp;
    Xpb__V1__Stanza st;
    Xpb__V1__SendStanza s;
} one_msg;

static void fill(one_msg *o, uint64_t i)
{
    static char to[] = "peer@" LOAD_DOMAIN;
    snprintf(o->body, sizeof(o->body), "load message %llu", (unsigned long long)i);
    o->t = (Xpb__V1__Text)XPB__V1__TEXT__INIT;
    o->t.text = o->body;
    o->tp = &o->t;
    o->st = (Xpb__V1__Stanza)XPB__V1__STANZA__INIT;
    o->st.has_kind = o->st.has_type = 1;
    o->st.kind = XPB__V1__KIND__KIND_MESSAGE;
    o->st.type = XPB__V1__STANZA_TYPE__TYPE_CHAT;
    o->st.to = to;
    o->st.n_body = 1;
    o->st.body = &o->tp;
    o->s = (Xpb__V1__SendStanza)XPB__V1__SEND_STANZA__INIT;
    o->s.stanza = &o->st;
}

/* A request for stanzas i .. i + cnt - 1: a send, or a send_batch. */
static nng_msg *build(lreq *r, uint64_t i, uint64_t cnt)
{
    static one_msg msgs[BATCH_MAX];          /* under r->mu */
    static Xpb__V1__SendStanza *ptrs[BATCH_MAX];
    char rid[64];
    snprintf(rid, sizeof(rid), "ld-%d-%llu", (int)getpid(), (unsigned long long)next_id++);
    for (uint64_t k = 0; k < cnt; k++) {
        fill(&msgs[k], i + k);
        ptrs[k] = &msgs[k].s;
    }
    Xpb__V1__SendBatch sb = XPB__V1__SEND_BATCH__INIT;
    sb.n_send = cnt;
    sb.send = ptrs;
    Xpb__V1__Request q = XPB__V1__REQUEST__INIT;
    q.has_api_version = 1;
    q.api_version = XPB_BUS_API_VERSION;
    q.request_id = rid;
    q.account = (char *)r->account;
    if (r->batch == 0) {
        q.op_case = XPB__V1__REQUEST__OP_SEND;
        q.send = &msgs[0].s;
    } else {
        q.op_case = XPB__V1__REQUEST__OP_SEND_BATCH;
        q.send_batch = &sb;
    }
    nng_msg *m = NULL;
    size_t len = xpb__v1__request__get_packed_size(&q);
    if (nng_msg_alloc(&m, len)) return NULL;
    xpb__v1__request__pack(&q, nng_msg_body(m));
    return m;
}

static void count_code(lreq *r, int code, uint64_t n)
{
    if (code == XPB__V1__ERROR_CODE__OK)
        r->res->ok += n;
    else if (code == XPB__V1__ERROR_CODE__ERR_QUEUE_FULL)
        r->res->queue_full += n;
    else
        r->res->other_err += n;
}

/* cnt: the stanzas of the request; a batch's outcomes count one by one.
 * Returns how many were refused with ERR_QUEUE_FULL. */
static uint64_t count_reply(lreq *r, nng_msg *m, uint64_t cnt)
{
    uint64_t full0 = r->res->queue_full;
    Xpb__V1__Response *resp = xpb__v1__response__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    int code = !resp ? -1 : resp->has_code ? (int)resp->code : 0;
    if (code == 0 && resp->result_case == XPB__V1__RESPONSE__RESULT_SENT_BATCH &&
        resp->sent_batch->n_result == cnt) {
        for (size_t k = 0; k < resp->sent_batch->n_result; k++) {
            const Xpb__V1__SendOutcome *o = resp->sent_batch->result[k];
            count_code(r, o->has_code ? (int)o->code : 0, 1);
        }
    } else {
        count_code(r, r->batch && code == 0 ? -1 : code, cnt);
    }
    if (resp) xpb__v1__response__free_unpacked(resp, NULL);
    return r->res->queue_full - full0;
}

/* Called with r->mu held: the next request, or nothing left to send. */
static void next(lctx *c)
{
    lreq *r = c->r;
    uint64_t cnt = r->batch ? r->batch : 1;
    if (cnt > r->n - r->issued) cnt = r->n - r->issued;
    nng_msg *m = r->issued < r->n && !r->failed ? build(r, r->issued, cnt) : NULL;
    if (!m) {
        if (r->answered >= r->n || r->failed) pthread_cond_broadcast(&r->done);
        return;
    }
    r->issued += cnt;
    c->cnt = cnt;
    c->receiving = 0;
    nng_aio_set_msg(c->aio, m);
    nng_ctx_send(c->ctx, c->aio);
}

static void on_aio(void *arg)
{
    lctx *c = arg;
    lreq *r = c->r;
    int rv = nng_aio_result(c->aio);
    pthread_mutex_lock(&r->mu);
    if (rv) {
        if (!c->receiving) nng_msg_free(nng_aio_get_msg(c->aio));
        fprintf(stderr, "xpb-load: send request: %s\n", nng_strerror(rv));
        r->failed = 1;
        pthread_cond_broadcast(&r->done);
    } else if (c->sleeping) {
        c->sleeping = 0;
        next(c);
    } else if (!c->receiving) {
        c->receiving = 1;
        nng_ctx_recv(c->ctx, c->aio);
    } else {
        nng_msg *m = nng_aio_get_msg(c->aio);
        uint64_t full = count_reply(r, m, c->cnt);
        nng_msg_free(m);
        r->answered += c->cnt;
        if (full && r->issued < r->n) { /* back off like a client would: the queue is full */
            c->sleeping = 1;
            nng_sleep_aio(REQ_FULL_BACKOFF_MS, c->aio);
        } else {
            next(c);
        }
    }
    pthread_mutex_unlock(&r->mu);
}

static int open_ctxs(nng_socket s, lctx *cs, unsigned k, lreq *r)
{
    for (unsigned i = 0; i < k; i++) {
        cs[i].r = r;
        if (nng_ctx_open(&cs[i].ctx, s) || nng_aio_alloc(&cs[i].aio, on_aio, &cs[i])) return -1;
        nng_aio_set_timeout(cs[i].aio, REQ_TIMEOUT_MS);
    }
    return 0;
}

static void drive(lreq *r, lctx *cs, unsigned k)
{
    pthread_mutex_lock(&r->mu);
    for (unsigned i = 0; i < k; i++)
        next(&cs[i]);
    while (r->answered < r->n && !r->failed)
        pthread_cond_wait(&r->done, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

int lreq_run(const char *url, const char *account, uint64_t n, unsigned in_flight,
             unsigned batch, lreq_result *res)
{
    memset(res, 0, sizeof(*res));
    if (in_flight == 0 || in_flight > REQ_MAX_IN_FLIGHT || batch > BATCH_MAX) return -1;
    lreq r = {.account = account, .n = n, .res = res, .batch = batch};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.done, NULL);
    lctx *cs = calloc(in_flight, sizeof(*cs));
    nng_socket s = NNG_SOCKET_INITIALIZER;
    int rv = cs ? nng_req0_open(&s) : NNG_ENOMEM;
    if (!rv) rv = nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, REQ_TIMEOUT_MS * 2);
    if (!rv) rv = nng_dial(s, url, NULL, 0);
    if (!rv) rv = open_ctxs(s, cs, in_flight, &r) ? NNG_ENOMEM : 0;
    uint64_t t0 = load_now_ns();
    if (!rv) drive(&r, cs, in_flight);
    res->seconds = (double)(load_now_ns() - t0) / 1e9;
    if (rv) fprintf(stderr, "xpb-load: requests on %s: %s\n", url, nng_strerror(rv));
    for (unsigned i = 0; cs && i < in_flight; i++)
        if (cs[i].aio) nng_aio_stop(cs[i].aio);
    xpb_nng_close_bounded(s, LOAD_CLOSE_MS);
    for (unsigned i = 0; cs && i < in_flight; i++)
        nng_aio_free(cs[i].aio);
    free(cs);
    pthread_cond_destroy(&r.done);
    pthread_mutex_destroy(&r.mu);
    return rv || r.failed ? -1 : 0;
}

/* One `status` request (BridgeStatus.sessions_online); 0 or -1. */
int lreq_status(const char *url, uint64_t *online)
{
    char rid[64];
    snprintf(rid, sizeof(rid), "ld-%d-%llu", (int)getpid(), (unsigned long long)next_id++);
    Xpb__V1__GetStatus st = XPB__V1__GET_STATUS__INIT;
    Xpb__V1__Request q = XPB__V1__REQUEST__INIT;
    q.has_api_version = 1;
    q.api_version = XPB_BUS_API_VERSION;
    q.request_id = rid;
    q.op_case = XPB__V1__REQUEST__OP_STATUS;
    q.status = &st;
    uint8_t buf[256];
    size_t len = xpb__v1__request__pack(&q, buf);
    nng_socket s = NNG_SOCKET_INITIALIZER;
    nng_msg *m = NULL;
    int rv = nng_req0_open(&s);
    if (!rv) rv = nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, STATUS_TIMEOUT_MS);
    if (!rv) rv = nng_dial(s, url, NULL, 0);
    if (!rv) rv = nng_send(s, buf, len, 0);
    if (!rv) rv = nng_recvmsg(s, &m, 0);
    Xpb__V1__Response *r =
        rv ? NULL : xpb__v1__response__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    int rc = r && r->result_case == XPB__V1__RESPONSE__RESULT_STATUS ? 0 : -1;
    if (!rc) *online = r->status->sessions_online;
    if (r) xpb__v1__response__free_unpacked(r, NULL);
    if (m) nng_msg_free(m);
    xpb_nng_close_bounded(s, LOAD_CLOSE_MS);
    return rc;
}
