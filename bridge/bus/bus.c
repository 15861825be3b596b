/* The bus front (xpb_bus.h): seqs and batches for events, decoding,
 * validation, limits and de-duplication for requests; bytes move through
 * the back end given in the config (xpb_bus_backend.h, NNG by default).
 * Wire format and semantics: docs/bus.md and proto/xpb/v1/bus.proto. */
#include "xpb_bus.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus_batch.h"
#include "bus_dedupe.h"
#include "bus_endpoint.h"
#include "bus_internal.h"
#include "xpb_bus_journal.h"
#include "xpb_bus_backend.h"
#include "xpb_arena.h"
#include "xpb_error.h"
#include "xpb_loop.h"

/* A request the front holds: at the handler (owner of a dedupe entry) or a
 * resend waiting for the owner's answer. Records come from a pool of
 * max_inflight + XPB_BUS_CONTROL_SLOTS, which the in-flight limits bound. */
enum req_state { REQ_FREE, REQ_HANDLER, REQ_WAITING };

struct xpb_bus_request {
    xpb_bus *bus;
    xpb_bus_token *tok;
    enum req_state state;
    Xpb__V1__Request *req;         /* HANDLER: unpacked (in arena, when not NULL) */
    xpb_arena *arena;              /* HANDLER: where req lives; NULL: malloc'd */
    xpb_bus_dd_entry *entry;       /* HANDLER or WAITING */
    struct xpb_bus_request *wnext; /* WAITING: the next resend; FREE: the free list */
    char id[XPB_BUS_MAX_REQUEST_ID + 1];
    int control; /* counted in st.inflight_control */
};

struct xpb_bus {
    xpb_loop *loop;
    xpb_bus_config cfg;
    xpb_bus_handler handler;
    void *ud;
    const xpb_bus_backend_ops *ops;
    void *be;
    xpb_bus_host host;
    xpb_bus_journal_cfg journal_cfg; /* when cfg.journal: the decorator's settings */
    xpb_pack_plan *plan; /* events: packed on the loop thread only (codec/pack.c) */
    size_t last_stanza_bytes; /* xpb_bus_last_stanza_bytes */
    xpb_timer *flush_timer;
    unsigned flush_ms;
    int closing;

    xpb_bus_request *pool, *free_reqs;
    unsigned npool;
    xpb_bus_dedupe dd;
    xpb_bus_batcher batches;
    uint64_t seq;
    xpb_bus_stats st;
};

void xpb_bus_config_init(xpb_bus_config *c)
{
    memset(c, 0, sizeof *c);
    c->max_request_bytes = XPB_BUS_DEFAULT_MAX_REQUEST;
    c->batch_max = XPB_BUS_DEFAULT_BATCH_MAX;
    c->batch_flush_us = XPB_BUS_DEFAULT_BATCH_FLUSH_US;
    c->max_inflight = XPB_BUS_DEFAULT_MAX_INFLIGHT;
    c->dedupe_entries = XPB_BUS_DEFAULT_DEDUPE;
    c->batch_bytes = XPB_BUS_DEFAULT_BATCH_BYTES;
}

/* ---- replies ---- */

static void send_bytes(xpb_bus *b, xpb_bus_token *tok, const uint8_t *data, size_t len)
{
    if (b->ops->reply(b->be, tok, data, len) == 0) b->st.replies++;
}

/* Packs resp with api_version and request_id filled in; the caller's fields
 * are restored. *out is malloc'ed. */
static int pack_response(Xpb__V1__Response *resp, const char *id, uint8_t **out, size_t *len)
{
    Xpb__V1__Response saved = *resp;
    resp->has_api_version = 1;
    resp->api_version = XPB_BUS_API_VERSION;
    resp->request_id = (char *)id;
    resp->has_code = 1;
    size_t n = protobuf_c_message_get_packed_size(&resp->base);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf != NULL) protobuf_c_message_pack(&resp->base, buf);
    *resp = saved;
    if (buf == NULL) return XPB_ENOMEM;
    *out = buf;
    *len = n;
    return 0;
}

/* An error reply that is not remembered (malformed requests, busy, shutdown):
 * the same bytes would get the same answer again anyway. id may be NULL. */
static void answer_error(xpb_bus *b, xpb_bus_token *tok, const char *id, Xpb__V1__ErrorCode code,
                         const char *text)
{
    Xpb__V1__Response r = XPB__V1__RESPONSE__INIT;
    r.code = code;
    r.error_text = (char *)text;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (pack_response(&r, id, &buf, &len) != 0) {
        send_bytes(b, tok, (const uint8_t *)"", 0);
        return;
    }
    send_bytes(b, tok, buf, len);
    free(buf);
}

static void answer_shutdown(xpb_bus *b, xpb_bus_token *tok, const char *id)
{
    answer_error(b, tok, id, XPB__V1__ERROR_CODE__ERR_INTERNAL, "shutting down");
}

/* ---- requests in flight ---- */

/* status, list and close: what an operator needs most when the bus is full
 * of slow requests, so they have slots of their own. */
static int is_control(const Xpb__V1__Request *r)
{
    return r->op_case == XPB__V1__REQUEST__OP_STATUS || r->op_case == XPB__V1__REQUEST__OP_LIST ||
           r->op_case == XPB__V1__REQUEST__OP_CLOSE;
}

/* Ordinary requests may hold max_inflight - 1 slots, control requests
 * XPB_BUS_CONTROL_SLOTS more; so one back-end slot always stays free and a
 * full bridge says ERR_BUSY at once instead of leaving the client waiting. */
static int over_limit(xpb_bus *b, int control, char *text, size_t textlen)
{
    if (control && b->st.inflight_control >= XPB_BUS_CONTROL_SLOTS) {
        b->st.busy_control++;
        snprintf(text, textlen,
                 "too many status, list and close requests in flight (control slots %u)",
                 XPB_BUS_CONTROL_SLOTS);
        return 1;
    }
    if (!control && b->st.inflight - b->st.inflight_control + 1 >= b->cfg.max_inflight) {
        snprintf(text, textlen, "too many requests in flight (max_inflight %u)",
                 b->cfg.max_inflight);
        return 1;
    }
    return 0;
}

static xpb_bus_request *req_take(xpb_bus *b, xpb_bus_token *tok, const char *id, int control)
{
    xpb_bus_request *s = b->free_reqs;
    b->free_reqs = s->wnext;
    s->tok = tok;
    s->wnext = NULL;
    s->entry = NULL;
    s->req = NULL;
    s->arena = NULL;
    memcpy(s->id, id, strlen(id) + 1);
    s->control = control;
    b->st.inflight++;
    b->st.inflight_control += control != 0;
    return s;
}

static void req_release(xpb_bus *b, xpb_bus_request *s)
{
    b->st.inflight--;
    b->st.inflight_control -= s->control != 0;
    s->control = 0;
    s->state = REQ_FREE;
    s->tok = NULL;
    s->entry = NULL;
    s->wnext = b->free_reqs;
    b->free_reqs = s;
}

/* A decoded request goes: its arena, or (none could be made) its mallocs. */
static void request_free(Xpb__V1__Request *r, xpb_arena *ar)
{
    if (ar) xpb_arena_free(ar);
    else if (r) xpb__v1__request__free_unpacked(r, NULL);
}

/* A valid request: cached answer, join the in-flight one, busy, or handler. */
static void dispatch(xpb_bus *b, xpb_bus_token *tok, const char *id, Xpb__V1__Request *r,
                     xpb_arena *ar)
{
    xpb_bus_dd_entry *e = xpb_bus_dd_find(&b->dd, id);
    if (e != NULL && e->owner == NULL) {
        b->st.dedupe_hits++;
        xpb_bus_dd_touch(&b->dd, e);
        request_free(r, ar);
        send_bytes(b, tok, e->resp, e->resp_len);
        return;
    }
    int control = is_control(r);
    /* The pool is sized so that over_limit always says it first. */
    char text[128] = "no request slot free";
    if (over_limit(b, control, text, sizeof text) || b->free_reqs == NULL) {
        b->st.busy++;
        request_free(r, ar);
        answer_error(b, tok, id, XPB__V1__ERROR_CODE__ERR_BUSY, text);
        return;
    }
    if (e != NULL) {
        b->st.dedupe_hits++;
        request_free(r, ar);
        xpb_bus_request *s = req_take(b, tok, id, control);
        s->state = REQ_WAITING;
        s->entry = e;
        s->wnext = e->waiters;
        e->waiters = s;
        return;
    }
    e = xpb_bus_dd_add(&b->dd, id);
    if (e == NULL) {
        request_free(r, ar);
        answer_error(b, tok, id, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return;
    }
    xpb_bus_request *s = req_take(b, tok, id, control);
    e->owner = s;
    s->entry = e;
    s->req = r;
    s->arena = ar;
    s->state = REQ_HANDLER;
    b->handler(b->ud, s, r);
}

/* host->request: one request's bytes from the back end. */
static void on_request(void *front, xpb_bus_token *tok, const uint8_t *data, size_t len)
{
    xpb_bus *b = front;
    if (b->closing) { /* received before the back end stopped: drained at shutdown */
        answer_shutdown(b, tok, NULL);
        return;
    }
    char text[XPB_BUS_ERRTEXT_MAX];
    char id[XPB_BUS_MAX_REQUEST_ID + 1] = "";
    int has_id = 0;
    Xpb__V1__ErrorCode code = XPB__V1__ERROR_CODE__ERR_BAD_REQUEST;
    b->st.requests++;
    Xpb__V1__Request *r = NULL;
    /* Unpacked into an arena of its own (a SendBatch's fields are hundreds
     * of small allocations); blocks sized to the request, up to 1 MiB. */
    size_t block = len > XPB_BUS_REQUEST_ARENA_BLOCK_MAX / 8 ? XPB_BUS_REQUEST_ARENA_BLOCK_MAX
                                                             : len * 8;
    xpb_arena *ar = xpb_arena_new(block < 16384 ? 16384 : block);
    int rc = ar ? xpb_bus_decode_request_in(ar, data, len, b->cfg.max_request_bytes,
                                            b->cfg.max_string, &r, id, &has_id, &code, text,
                                            sizeof text)
                : xpb_bus_decode_request(data, len, b->cfg.max_request_bytes, b->cfg.max_string,
                                         &r, id, &has_id, &code, text, sizeof text);
    if (rc == 0) {
        dispatch(b, tok, id, r, ar);
        return;
    }
    xpb_arena_free(ar);
    b->st.malformed++;
    b->st.bad_strings += rc == -2;
    answer_error(b, tok, has_id ? id : NULL, code, text);
}

const char *xpb_bus_request_id(const xpb_bus_request *req)
{
    return req->id;
}

/* Sends the packed answer to the owner and every waiting resend, then keeps
 * it (the entry moves to the LRU list). */
static void complete_entry(xpb_bus *b, xpb_bus_dd_entry *e, uint8_t *buf, size_t len)
{
    xpb_bus_request *owner = e->owner, *w = e->waiters;
    xpb_bus_dd_answered(&b->dd, e, buf, len);
    request_free(owner->req, owner->arena);
    owner->req = NULL;
    owner->arena = NULL;
    xpb_bus_token *tok = owner->tok;
    req_release(b, owner);
    send_bytes(b, tok, buf, len);
    while (w != NULL) {
        xpb_bus_request *next = w->wnext;
        tok = w->tok;
        req_release(b, w);
        send_bytes(b, tok, buf, len);
        w = next;
    }
    xpb_bus_dd_evict(&b->dd); /* may free e and buf: nothing uses them after this */
}

int xpb_bus_reply(xpb_bus_request *req, Xpb__V1__Response *resp)
{
    if (req == NULL || resp == NULL || req->state != REQ_HANDLER || req->entry == NULL)
        return XPB_EINVAL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = pack_response(resp, req->id, &buf, &len);
    if (rc != 0) {
        /* Answer anyway, without caching, so the client is not left waiting. */
        Xpb__V1__Response r = XPB__V1__RESPONSE__INIT;
        r.code = XPB__V1__ERROR_CODE__ERR_INTERNAL;
        r.error_text = "out of memory";
        rc = pack_response(&r, req->id, &buf, &len);
        if (rc != 0) return rc;
    }
    complete_entry(req->bus, req->entry, buf, len);
    return 0;
}

int xpb_bus_reply_error(xpb_bus_request *req, Xpb__V1__ErrorCode code, const char *fmt, ...)
{
    char text[XPB_BUS_ERRTEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    Xpb__V1__Response r = XPB__V1__RESPONSE__INIT;
    r.code = code;
    r.error_text = text;
    return xpb_bus_reply(req, &r);
}

int xpb_bus_remember_answer(xpb_bus *b, const char *id, Xpb__V1__Response *resp)
{
    if (b == NULL || id == NULL || id[0] == '\0' || strlen(id) > XPB_BUS_MAX_REQUEST_ID ||
        resp == NULL)
        return XPB_EINVAL;
    if (xpb_bus_dd_find(&b->dd, id) != NULL) return 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = pack_response(resp, id, &buf, &len);
    if (rc != 0) return rc;
    xpb_bus_dd_entry *e = xpb_bus_dd_add(&b->dd, id);
    if (e == NULL) {
        free(buf);
        return XPB_ENOMEM;
    }
    xpb_bus_dd_answered(&b->dd, e, buf, len);
    b->st.dedupe_restored++;
    xpb_bus_dd_evict(&b->dd);
    return 0;
}

int xpb_bus_remembered_sent(xpb_bus *b, const char *id, char *out, size_t outlen)
{
    if (b == NULL || id == NULL || out == NULL || outlen == 0 || b->st.dedupe_restored == 0)
        return 0; /* only restored answers are asked for: none, no lookup */
    const xpb_bus_dd_entry *e = xpb_bus_dd_find(&b->dd, id);
    if (e == NULL || e->owner != NULL || e->resp == NULL) return 0;
    Xpb__V1__Response *r = xpb__v1__response__unpack(NULL, e->resp_len, e->resp);
    int found = r != NULL && r->result_case == XPB__V1__RESPONSE__RESULT_SENT && r->sent &&
                r->sent->stanza_id && strlen(r->sent->stanza_id) < outlen;
    if (found) memcpy(out, r->sent->stanza_id, strlen(r->sent->stanza_id) + 1);
    if (r) xpb__v1__response__free_unpacked(r, NULL);
    return found;
}

/* ---- events ---- */

static int kind_ok(const char *kind)
{
    static const char *const kinds[] = {"message", "presence", "iq", "other", "state", "delivery"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kind != NULL && strcmp(kind, kinds[i]) == 0) return 1;
    return 0;
}

static void send_batch(xpb_bus *b, xpb_bus_open_batch *ob)
{
    if (ob->count == 0) return; /* its only event failed to append: nothing to send */
    xpb_bus_batch out = {.frame = ob->buf,
                         .frame_len = ob->len,
                         .topic = ob->topic,
                         .topic_len = ob->topic_len,
                         .kind = ob->kind,
                         .account = ob->account,
                         .first_seq = ob->first_seq,
                         .last_seq = ob->last_seq,
                         .count = ob->count,
                         .journal_id = b->batches.journal_id};
    if (b->ops->publish(b->be, &out) != 0) {
        b->st.publish_errors++;
        b->st.events_dropped += ob->count;
    } else {
        b->st.batches++;
    }
}

/* All open batches go out in the order they were opened, i.e. by their first
 * seq: the invariant docs/bus.md's gap detection relies on. */
void xpb_bus_flush(xpb_bus *b)
{
    xpb_bus_open_batch *ob = xpb_bus_batcher_take(&b->batches);
    int any = ob != NULL;
    while (ob != NULL) {
        xpb_bus_open_batch *next = ob->next;
        send_batch(b, ob);
        xpb_bus_batch_free(ob);
        ob = next;
    }
    if (any && b->ops->flush_done != NULL) b->ops->flush_done(b->be);
    if (b->flush_timer != NULL) xpb_timer_stop(b->flush_timer);
}

static void on_flush_timer(void *ud)
{
    xpb_bus_flush(ud);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int publish_args_ok(const xpb_bus *b, const char *kind, const char *account,
                           const Xpb__V1__Event *ev)
{
    return b != NULL && ev != NULL && kind_ok(kind) && account != NULL && account[0] != '\0' &&
           strchr(account, '/') == NULL;
}

/* After an event is in its batch: full batches go out, others wait for the
 * flush timer (batch_flush_us). With batch_flush_us 0 the timer is due at
 * once: the loop first runs every callback that is ready (the events that
 * arrived together share a batch), then flushes: no added delay. */
static void after_append(xpb_bus *b, const xpb_bus_open_batch *ob)
{
    if (ob->count >= b->cfg.batch_max)
        xpb_bus_flush(b);
    else if (!xpb_timer_pending(b->flush_timer))
        xpb_timer_start(b->flush_timer, b->flush_ms);
}

size_t xpb_bus_last_stanza_bytes(const xpb_bus *b)
{
    return b ? b->last_stanza_bytes : 0;
}

int xpb_bus_publish(xpb_bus *b, const char *kind, const char *account, Xpb__V1__Event *ev)
{
    if (b) b->last_stanza_bytes = 0;
    if (!publish_args_ok(b, kind, account, ev)) return XPB_EINVAL;
    char *saved_account = ev->account;
    if (ev->account == NULL) ev->account = (char *)account;
    ev->has_seq = 1;
    ev->seq = ++b->seq;
    ev->has_timestamp_us = 1;
    ev->timestamp_us = now_us();
    /* body is a oneof (a union): stanza only when it is the case */
    const Xpb__V1__Stanza *st = ev->body_case == XPB__V1__EVENT__BODY_STANZA ? ev->stanza : NULL;
    xpb_pack_plan_watch(b->plan, st ? &st->base : NULL);
    size_t evlen = xpb_pack_plan_measure(b->plan, &ev->base);
    size_t stl = st ? xpb_pack_plan_watched(b->plan) : 0;
    if (stl == SIZE_MAX) { /* protobuf-c sized it (unknown fields): once more, then the event */
        stl = xpb_pack_plan_measure(b->plan, &st->base);
        evlen = xpb_pack_plan_measure(b->plan, &ev->base);
    }
    b->last_stanza_bytes = stl;
    xpb_bus_topic *te = xpb_bus_topic_get(&b->batches, kind, account);
    xpb_bus_open_batch *ob = xpb_bus_batch_get(&b->batches, te, kind, account);
    if (ob != NULL && ob->count > 0 && ob->len + evlen + 11 > b->cfg.batch_bytes) {
        xpb_bus_flush(b);
        ob = xpb_bus_batch_get(&b->batches, te, kind, account);
    }
    int rc = ob == NULL ? XPB_ENOMEM : xpb_bus_batch_append(ob, b->plan, ev, evlen);
    ev->account = saved_account;
    b->st.last_seq = b->seq;
    /* Even a dropped event is the topic's last: the next batch's prev_seq
     * then points at it, so subscribers see the loss. */
    if (te != NULL) te->last_seq = ev->seq;
    if (rc != 0) {
        b->last_stanza_bytes = 0;
        b->st.publish_errors++;
        b->st.events_dropped++;
        xpb_bus_flush(b); /* the topic's next event opens a batch with prev_seq */
        return rc;
    }
    b->st.events++;
    after_append(b, ob);
    return 0;
}

/* host->published */
static void on_published(void *front, uint64_t seq)
{
    xpb_bus *b = front;
    if (seq > b->st.acked_seq) b->st.acked_seq = seq;
}

/* ---- life cycle ---- */

static void apply_defaults(xpb_bus_config *c)
{
    if (c->max_request_bytes == 0) c->max_request_bytes = XPB_BUS_DEFAULT_MAX_REQUEST;
    if (c->batch_max == 0) c->batch_max = XPB_BUS_DEFAULT_BATCH_MAX;
    if (c->max_inflight < 2) /* one slot is kept to answer ERR_BUSY */
        c->max_inflight = c->max_inflight == 0 ? XPB_BUS_DEFAULT_MAX_INFLIGHT : 2;
    if (c->batch_bytes == 0) c->batch_bytes = XPB_BUS_DEFAULT_BATCH_BYTES;
    if (c->dedupe_entries > (1u << 22)) /* keeps the bucket table size sane */
        c->dedupe_entries = 1u << 22;
    if (c->max_inflight > 4096) c->max_inflight = 4096;
    if (c->backend == NULL) c->backend = &xpb_bus_nng_ops;
}

static int make_pool(xpb_bus *b)
{
    b->npool = b->cfg.max_inflight + XPB_BUS_CONTROL_SLOTS;
    b->pool = calloc(b->npool, sizeof *b->pool);
    if (b->pool == NULL) return XPB_ENOMEM;
    for (unsigned i = b->npool; i-- > 0;) {
        b->pool[i].bus = b;
        b->pool[i].wnext = b->free_reqs;
        b->free_reqs = &b->pool[i];
    }
    return 0;
}

static int front_init(xpb_bus *b)
{
    b->flush_ms = (b->cfg.batch_flush_us + 999u) / 1000u; /* the loop's timers count ms */
    int rc = make_pool(b);
    if (rc == 0) rc = xpb_bus_dd_init(&b->dd, b->cfg.dedupe_entries, b->npool);
    if (rc == 0) rc = (b->plan = xpb_pack_plan_new()) == NULL ? XPB_ENOMEM : 0;
    if (rc == 0) rc = xpb_timer_new(b->loop, on_flush_timer, b, &b->flush_timer);
    return rc;
}

int xpb_bus_new(xpb_bus **out, xpb_loop *loop, const xpb_bus_config *cfg, xpb_bus_handler handler,
                void *ud, char *err, size_t errlen)
{
    xpb_bus_set_err(err, errlen, "%s", "");
    *out = NULL;
    if (loop == NULL || handler == NULL) return XPB_EINVAL;
    xpb_bus *b = calloc(1, sizeof *b);
    if (b == NULL) return XPB_ENOMEM;
    b->loop = loop;
    b->handler = handler;
    b->ud = ud;
    if (cfg != NULL)
        b->cfg = *cfg;
    else
        xpb_bus_config_init(&b->cfg);
    apply_defaults(&b->cfg);
    b->ops = b->cfg.backend;
    if (b->cfg.journal != NULL) {
        b->journal_cfg = (xpb_bus_journal_cfg){.store = b->cfg.journal, .inner = b->ops,
                                               .inner_cfg = b->cfg.backend_cfg};
        b->ops = b->cfg.backend = &xpb_bus_journal_ops;
        b->cfg.backend_cfg = &b->journal_cfg;
        b->seq = xpb_store_next_seq(b->cfg.journal) - 1;
        b->batches.journal_id = xpb_store_journal_id(b->cfg.journal);
    }
    b->host = (xpb_bus_host){.front = b, .request = on_request, .published = on_published};
    int rc = front_init(b);
    if (rc == 0) rc = b->ops->open(&b->be, loop, &b->cfg, &b->host, err, errlen);
    /* The caller's strings are not kept: the back end copied what it needs. */
    b->cfg.events_url = b->cfg.requests_url = b->cfg.private_dir = NULL;
    if (rc != 0) {
        if (rc == XPB_ENOMEM && err != NULL && errlen > 0 && err[0] == '\0')
            xpb_bus_set_err(err, errlen, "out of memory");
        xpb_bus_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* Every request the front holds gets its answer: owners at the handler
 * first (their entries are dropped), then the resends waiting on them. */
static void answer_open_requests(xpb_bus *b)
{
    for (unsigned i = 0; i < b->npool; i++) {
        xpb_bus_request *s = &b->pool[i];
        if (s->state != REQ_HANDLER) continue;
        request_free(s->req, s->arena);
        s->req = NULL;
        s->arena = NULL;
        xpb_bus_dd_drop(&b->dd, s->entry);
        xpb_bus_token *tok = s->tok;
        req_release(b, s);
        answer_shutdown(b, tok, s->id);
    }
    for (unsigned i = 0; i < b->npool; i++) {
        xpb_bus_request *s = &b->pool[i];
        if (s->state != REQ_WAITING) continue;
        xpb_bus_token *tok = s->tok;
        req_release(b, s);
        answer_shutdown(b, tok, s->id);
    }
}

void xpb_bus_free(xpb_bus *b)
{
    if (b == NULL) return;
    if (b->be != NULL) {
        xpb_bus_flush(b);
        b->closing = 1;
        b->ops->drain(b->be); /* requests already received: answered "shutting down" */
        answer_open_requests(b);
        b->ops->close(b->be);
    }
    xpb_timer_free(b->flush_timer);
    xpb_bus_dd_free(&b->dd);
    xpb_bus_batcher_free(&b->batches);
    xpb_pack_plan_free(b->plan);
    free(b->pool);
    free(b);
}

void xpb_bus_get_stats(const xpb_bus *b, xpb_bus_stats *out)
{
    *out = b->st;
    xpb_bus_backend_stats bs = {0};
    if (b->be != NULL && b->ops->stats != NULL) b->ops->stats(b->be, &bs);
    out->reply_errors = bs.reply_errors;
    out->publish_retries = bs.publish_retries;
    out->publish_pending = bs.publish_pending;
    out->last_seq = b->seq;
    out->dedupe_size = b->dd.done_count;
}

static const char *endpoint(const xpb_bus *b, xpb_bus_endpoint which)
{
    const char *u =
        b->be != NULL && b->ops->endpoint != NULL ? b->ops->endpoint(b->be, which) : NULL;
    return u != NULL ? u : "";
}

const char *xpb_bus_events_url(const xpb_bus *b)
{
    return endpoint(b, XPB_BUS_EP_EVENTS);
}

const char *xpb_bus_requests_url(const xpb_bus *b)
{
    return endpoint(b, XPB_BUS_EP_REQUESTS);
}

int xpb_bus_route(xpb_bus *b, const char *account, int on)
{
    if (b == NULL || b->be == NULL || account == NULL) return XPB_EINVAL;
    return b->ops->route != NULL ? b->ops->route(b->be, account, on) : 0;
}

void *xpb_bus_backend_of(const xpb_bus *b, const xpb_bus_backend_ops *ops)
{
    return b != NULL && b->ops == ops ? b->be : NULL;
}
