/* The fake bus (fake_bus.h): the daemon's side of xpb_bus.h, in memory. */
#include "fake_bus.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_bus_backend.h"
#include "xpb_bus_journal.h"
#include "xpb_bus_kv.h"
#include "xpb_error.h"

struct xpb_bus {
    xpb_bus_handler handler;
    void *ud;
    xpb_bus_stats st;
};

struct xpb_bus_request {
    fake_req pub; /* first: the test sees this part */
    char id[64];
    struct xpb_bus_request *next;
};

#define FAKE_BUS_MAX_REMEMBERED 8192 /* more than XPB_BUS_DEFAULT_DEDUPE */

static struct {
    xpb_bus *bus;
    struct xpb_bus_request *reqs;
    struct {
        char id[64], stanza_id[128]; /* stanza_id "": not a SendResult */
    } rem[FAKE_BUS_MAX_REMEMBERED];  /* xpb_bus_remember_answer's cache */
    size_t n_rem;
    char kinds[FAKE_BUS_MAX_EVENTS][16];
    Xpb__V1__Event *events[FAKE_BUS_MAX_EVENTS];
    size_t n_events;
} G;

void xpb_bus_config_init(xpb_bus_config *c)
{
    memset(c, 0, sizeof *c);
}

int xpb_bus_new(xpb_bus **out, xpb_loop *loop, const xpb_bus_config *cfg,
                xpb_bus_handler handler, void *ud, char *err, size_t errlen)
{
    (void)loop, (void)cfg, (void)err, (void)errlen;
    xpb_bus *b = calloc(1, sizeof *b);
    if (!b) return XPB_ENOMEM;
    b->handler = handler;
    b->ud = ud;
    G.bus = *out = b;
    return 0;
}

static int answer(xpb_bus_request *req, Xpb__V1__Response *resp)
{
    if (req->pub.answered) return XPB_EINVAL;
    resp->request_id = req->id;
    size_t n = xpb__v1__response__get_packed_size(resp);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return XPB_ENOMEM;
    xpb__v1__response__pack(resp, buf);
    req->pub.resp = xpb__v1__response__unpack(NULL, n, buf);
    free(buf);
    req->pub.answered = 1;
    if (G.bus) G.bus->st.replies++;
    return req->pub.resp ? 0 : XPB_ENOMEM;
}

void xpb_bus_free(xpb_bus *b)
{
    if (!b) return;
    for (xpb_bus_request *r = G.reqs; r; r = r->next)
        if (!r->pub.answered) xpb_bus_reply_error(r, XPB__V1__ERROR_CODE__ERR_INTERNAL,
                                                  "shutting down");
    free(b);
    G.bus = NULL;
}

void xpb_bus_flush(xpb_bus *b)
{
    (void)b;
}

static size_t last_stanza_bytes;

size_t xpb_bus_last_stanza_bytes(const xpb_bus *b)
{
    (void)b;
    return last_stanza_bytes;
}

int xpb_bus_publish(xpb_bus *b, const char *kind, const char *account, Xpb__V1__Event *ev)
{
    last_stanza_bytes = 0;
    if (!kind || !account || strchr(account, '/')) return XPB_EINVAL;
    if (G.n_events == FAKE_BUS_MAX_EVENTS) return XPB_ENOMEM;
    ev->account = ev->account ? ev->account : (char *)account;
    ev->has_seq = 1;
    ev->seq = ++b->st.last_seq;
    size_t n = xpb__v1__event__get_packed_size(ev);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return XPB_ENOMEM;
    xpb__v1__event__pack(ev, buf);
    G.events[G.n_events] = xpb__v1__event__unpack(NULL, n, buf);
    free(buf);
    if (!G.events[G.n_events]) return XPB_ENOMEM;
    snprintf(G.kinds[G.n_events++], sizeof G.kinds[0], "%s", kind);
    b->st.events++;
    if (ev->body_case == XPB__V1__EVENT__BODY_STANZA && ev->stanza) last_stanza_bytes = xpb__v1__stanza__get_packed_size(ev->stanza);
    return 0;
}

int xpb_bus_reply(xpb_bus_request *req, Xpb__V1__Response *resp)
{
    Xpb__V1__Response copy = *resp;
    return answer(req, &copy);
}

int xpb_bus_reply_error(xpb_bus_request *req, Xpb__V1__ErrorCode code, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.has_code = 1;
    resp.code = code;
    resp.error_text = text;
    return answer(req, &resp);
}

const char *xpb_bus_request_id(const xpb_bus_request *req)
{
    return req->id;
}

static int rem_find(const char *id)
{
    for (size_t i = 0; i < G.n_rem; i++)
        if (strcmp(G.rem[i].id, id) == 0) return (int)i;
    return -1;
}

int xpb_bus_remember_answer(xpb_bus *b, const char *id, Xpb__V1__Response *resp)
{
    if (!b || !id || !id[0] || strlen(id) >= sizeof G.rem[0].id || !resp) return XPB_EINVAL;
    if (rem_find(id) >= 0) return 0;
    if (G.n_rem == FAKE_BUS_MAX_REMEMBERED) return XPB_ENOMEM;
    snprintf(G.rem[G.n_rem].id, sizeof G.rem[0].id, "%s", id);
    const char *sid =
        resp->result_case == XPB__V1__RESPONSE__RESULT_SENT && resp->sent && resp->sent->stanza_id
            ? resp->sent->stanza_id
            : "";
    snprintf(G.rem[G.n_rem++].stanza_id, sizeof G.rem[0].stanza_id, "%s", sid);
    b->st.dedupe_restored++;
    return 0;
}

int xpb_bus_remembered_sent(xpb_bus *b, const char *id, char *out, size_t outlen)
{
    int i = b && id ? rem_find(id) : -1;
    if (i < 0 || !G.rem[i].stanza_id[0] || strlen(G.rem[i].stanza_id) >= outlen) return 0;
    snprintf(out, outlen, "%s", G.rem[i].stanza_id);
    return 1;
}

const char *fake_bus_remembered(const char *id)
{
    int i = rem_find(id);
    return i < 0 ? NULL : G.rem[i].stanza_id;
}

void fake_bus_ack_all(void)
{
    if (G.bus) G.bus->st.acked_seq = G.bus->st.last_seq;
}

void xpb_bus_get_stats(const xpb_bus *b, xpb_bus_stats *out)
{
    *out = b->st;
}

const char *xpb_bus_events_url(const xpb_bus *b)
{
    (void)b;
    return "fake://events";
}

const char *xpb_bus_requests_url(const xpb_bus *b)
{
    (void)b;
    return "fake://requests";
}

/* ---- the test's side ---------------------------------------------------------- */

xpb_bus *fake_bus_get(void)
{
    return G.bus;
}

fake_req *fake_bus_request(const char *id, const Xpb__V1__Request *r)
{
    xpb_bus_request *req = calloc(1, sizeof *req);
    if (!req || !G.bus) {
        free(req);
        return NULL;
    }
    snprintf(req->id, sizeof req->id, "%s", id);
    req->next = G.reqs;
    G.reqs = req;
    G.bus->st.requests++;
    int i = rem_find(id);
    if (i >= 0) { /* as bus.c's cache: the remembered answer, the handler not run */
        G.bus->st.dedupe_hits++;
        Xpb__V1__SendResult sr = XPB__V1__SEND_RESULT__INIT;
        sr.stanza_id = G.rem[i].stanza_id;
        Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
        resp.result_case = XPB__V1__RESPONSE__RESULT_SENT;
        resp.sent = &sr;
        answer(req, &resp);
        return &req->pub;
    }
    G.bus->handler(G.bus->ud, req, r);
    return &req->pub;
}

size_t fake_bus_n_events(void)
{
    return G.n_events;
}

const char *fake_bus_event_kind(size_t i)
{
    return i < G.n_events ? G.kinds[i] : NULL;
}

const Xpb__V1__Event *fake_bus_event(size_t i)
{
    return i < G.n_events ? G.events[i] : NULL;
}

const Xpb__V1__SessionState *fake_bus_last_state(const char *account)
{
    for (size_t i = G.n_events; i-- > 0;)
        if (strcmp(G.kinds[i], "state") == 0 && strcmp(G.events[i]->account, account) == 0)
            return G.events[i]->state;
    return NULL;
}

void fake_bus_clear_events(void)
{
    for (size_t i = 0; i < G.n_events; i++) xpb__v1__event__free_unpacked(G.events[i], NULL);
    G.n_events = 0;
}

void fake_bus_reset(void)
{
    fake_bus_clear_events();
    G.n_rem = 0;
    while (G.reqs) {
        xpb_bus_request *r = G.reqs;
        G.reqs = r->next;
        if (r->pub.resp) xpb__v1__response__free_unpacked(r->pub.resp, NULL);
        free(r);
    }
}

void xpb_bus_journal_get_stats(const xpb_bus *b, xpb_bus_journal_stats *out)
{
    (void)b;
    memset(out, 0, sizeof *out);
}

int xpb_bus_route(xpb_bus *b, const char *account, int on)
{
    (void)b;
    (void)account;
    (void)on;
    return 0;
}

/* The NATS back end is never used by these tests (the bus itself is fake);
 * this keeps bus_nats*.c and the real loop out of the link. */
const xpb_bus_backend_ops xpb_bus_nats_ops = {.name = "nats"};

/* ---- a fake JetStream KV (fake_bus.h): one store for every xpb_kv, kept
 * across daemons (a new daemon finds what a "crashed" one left), results
 * handed to the callback only by fake_kv_deliver. ---- */

#define FKV_KEYS 256
#define FKV_PENDING 1024

static struct fkv_key {
    char bucket[32], key[256];
    uint8_t *val;
    size_t len;
    uint64_t rev;
    int live;
} FKV[FKV_KEYS];
static uint64_t fkv_seq;
static int64_t fkv_now;

struct xpb_kv {
    xpb_kv_cb cb;
    void *ud;
    char names[XPB_KV_MAX_BUCKETS][32];
    size_t n;
};

static struct fkv_pending {
    xpb_kv *kv;
    xpb_kv_result r;
    uint8_t *val; /* GET */
} FKV_Q[FKV_PENDING];
static size_t fkv_nq;

static struct fkv_key *fkv_find(const char *bucket, const char *key, int make)
{
    struct fkv_key *free_slot = NULL;
    for (size_t i = 0; i < FKV_KEYS; i++) {
        if (!FKV[i].bucket[0]) {
            if (!free_slot) free_slot = &FKV[i];
            continue;
        }
        if (strcmp(FKV[i].bucket, bucket) == 0 && strcmp(FKV[i].key, key) == 0) return &FKV[i];
    }
    if (!make || !free_slot) return NULL;
    snprintf(free_slot->bucket, sizeof free_slot->bucket, "%s", bucket);
    snprintf(free_slot->key, sizeof free_slot->key, "%s", key);
    return free_slot;
}

int xpb_kv_open(xpb_kv **out, xpb_loop *loop, const xpb_bus_nats_cfg *cfg,
                const char *const *buckets, const unsigned *ttls_s, size_t nbuckets, xpb_kv_cb cb,
                void *ud, char *err, size_t errlen)
{
    (void)loop, (void)cfg, (void)ttls_s, (void)err, (void)errlen;
    xpb_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return -1;
    kv->cb = cb;
    kv->ud = ud;
    for (size_t i = 0; i < nbuckets && i < XPB_KV_MAX_BUCKETS; i++)
        snprintf(kv->names[kv->n++], sizeof kv->names[0], "%s", buckets[i]);
    *out = kv;
    return 0;
}

static void fkv_add_key(xpb_kv_result *r, const struct fkv_key *k, int with_value)
{
    r->keys = realloc(r->keys, (r->nkeys + 1) * sizeof *r->keys);
    r->keys[r->nkeys] = strdup(k->key);
    if (with_value) {
        r->values = realloc(r->values, (r->nkeys + 1) * sizeof *r->values);
        r->values_len = realloc(r->values_len, (r->nkeys + 1) * sizeof *r->values_len);
        r->values[r->nkeys] = malloc(k->len + 1);
        memcpy(r->values[r->nkeys], k->val, k->len);
        r->values_len[r->nkeys] = k->len;
    }
    r->nkeys++;
}

static int fkv_frozen;
static int fkv_fail_puts;
static char fkv_fail_bucket[32];

void fake_kv_fail_puts(const char *bucket, int n)
{
    snprintf(fkv_fail_bucket, sizeof fkv_fail_bucket, "%s", bucket);
    fkv_fail_puts = n;
}

void fake_kv_freeze(int on)
{
    fkv_frozen = on;
}

void fake_kv_drop_bucket(const char *bucket)
{
    for (size_t i = 0; i < FKV_KEYS; i++)
        if (strcmp(FKV[i].bucket, bucket) == 0) FKV[i].live = 0;
}

int xpb_kv_submit_bin(xpb_kv *kv, xpb_kv_op op, int bucket, const char *key, const void *value,
                      size_t len, uint64_t last_rev)
{
    if (fkv_frozen || !kv || bucket < 0 || (size_t)bucket >= kv->n || fkv_nq >= FKV_PENDING) return -2;
    struct fkv_pending *p = &FKV_Q[fkv_nq++];
    memset(p, 0, sizeof *p);
    p->kv = kv;
    p->r.op = op;
    p->r.bucket = bucket;
    p->r.key = key ? strdup(key) : NULL;
    p->r.sent_ms = fkv_now;
    const char *b = kv->names[bucket];
    if (op == XPB_KV_PUT && fkv_fail_puts > 0 && strcmp(b, fkv_fail_bucket) == 0) {
        fkv_fail_puts--; /* no leader, no answer: nothing stored */
        p->r.status = XPB_KV_UNREACHABLE;
        return 0;
    }
    struct fkv_key *k = key && op != XPB_KV_FETCH ? fkv_find(b, key, op == XPB_KV_CREATE ||
                                                    op == XPB_KV_PUT || op == XPB_KV_UPDATE)
                                                  : NULL;
    switch (op) {
    case XPB_KV_CREATE:
    case XPB_KV_UPDATE:
    case XPB_KV_PUT:
        if ((op == XPB_KV_CREATE && k->live) ||
            (op == XPB_KV_UPDATE && (!k->live || k->rev != last_rev))) {
            p->r.status = XPB_KV_CONFLICT;
            break;
        }
        free(k->val);
        k->val = malloc(len + 1);
        memcpy(k->val, value ? value : "", len);
        k->len = len;
        k->live = 1;
        p->r.rev = k->rev = ++fkv_seq;
        break;
    case XPB_KV_DELETE:
        if (!k || !k->live || (last_rev && k->rev != last_rev)) {
            p->r.status = last_rev ? XPB_KV_CONFLICT : XPB_KV_OK;
            break;
        }
        k->live = 0;
        break;
    case XPB_KV_GET:
        if (!k || !k->live) {
            p->r.status = XPB_KV_CONFLICT;
            break;
        }
        p->val = malloc(k->len + 1);
        memcpy(p->val, k->val, k->len);
        p->r.value = p->val;
        p->r.value_len = k->len;
        break;
    case XPB_KV_KEYS:
    case XPB_KV_FETCH: {
        size_t plen = op == XPB_KV_FETCH ? strlen(key) - 1 : 0; /* "tok.*": "tok." */
        for (size_t i = 0; i < FKV_KEYS; i++)
            if (FKV[i].live && strcmp(FKV[i].bucket, b) == 0 &&
                (op == XPB_KV_KEYS || strncmp(FKV[i].key, key, plen) == 0))
                fkv_add_key(&p->r, &FKV[i], op == XPB_KV_FETCH);
        break;
    }
    }
    return 0;
}

int xpb_kv_submit(xpb_kv *kv, xpb_kv_op op, int bucket, const char *key, const char *value,
                  uint64_t last_rev)
{
    return xpb_kv_submit_bin(kv, op, bucket, key, value, value ? strlen(value) : 0, last_rev);
}

static void fkv_free_result(struct fkv_pending *p)
{
    for (size_t i = 0; i < p->r.nkeys; i++) {
        free(p->r.keys[i]);
        if (p->r.values) free(p->r.values[i]);
    }
    free(p->r.keys);
    free(p->r.values);
    free(p->r.values_len);
    free((char *)p->r.key);
    free(p->val);
}

size_t fake_kv_deliver(void)
{
    return fake_kv_deliver_n((size_t)-1);
}

size_t fake_kv_deliver_n(size_t max)
{
    size_t n = 0;
    while (fkv_nq > 0 && n < max) { /* in order; a callback may queue more */
        struct fkv_pending p = FKV_Q[0];
        memmove(FKV_Q, FKV_Q + 1, (fkv_nq - 1) * sizeof FKV_Q[0]);
        fkv_nq--;
        p.kv->cb(p.kv->ud, &p.r);
        fkv_free_result(&p);
        n++;
    }
    return n;
}

size_t fake_kv_pending(void)
{
    return fkv_nq;
}

int fake_kv_get(const char *bucket, const char *key_prefix, size_t *len)
{
    int n = 0;
    for (size_t i = 0; i < FKV_KEYS; i++)
        if (FKV[i].live && strcmp(FKV[i].bucket, bucket) == 0 &&
            strncmp(FKV[i].key, key_prefix, strlen(key_prefix)) == 0) {
            if (len) *len = FKV[i].len;
            n++;
        }
    return n;
}

const uint8_t *fake_kv_value(const char *bucket, const char *key, size_t *len)
{
    for (size_t i = 0; i < FKV_KEYS; i++)
        if (FKV[i].live && strcmp(FKV[i].bucket, bucket) == 0 && strcmp(FKV[i].key, key) == 0) {
            *len = FKV[i].len;
            return FKV[i].val;
        }
    return NULL;
}

void fake_kv_set_clock(int64_t ms)
{
    fkv_now = ms;
}

void fake_kv_wipe(void)
{
    for (size_t i = 0; i < fkv_nq; i++) fkv_free_result(&FKV_Q[i]);
    fkv_nq = 0;
    fkv_fail_puts = 0;
    for (size_t i = 0; i < FKV_KEYS; i++) free(FKV[i].val);
    memset(FKV, 0, sizeof FKV);
}

void xpb_kv_close(xpb_kv *kv, unsigned wait_ms)
{
    (void)wait_ms;
    if (!kv) return;
    size_t j = 0; /* its undelivered results are dropped, like the real one's */
    for (size_t i = 0; i < fkv_nq; i++) {
        if (FKV_Q[i].kv == kv) fkv_free_result(&FKV_Q[i]);
        else FKV_Q[j++] = FKV_Q[i];
    }
    fkv_nq = j;
    free(kv);
}

int64_t xpb_kv_now_ms(void)
{
    return fkv_now;
}
