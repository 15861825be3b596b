/* The bus requests: send, iq, roster, presence, join, list, status, open and
 * close, each answered exactly once, and their dispatch from the bus
 * (on_request). Sending a stanza for a request tracks its handle so
 * its Delivery event names the request. */
#define _DEFAULT_SOURCE /* strdup */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon_internal.h"
#include "xpb_error.h"
#include "xpb_jid.h"

/* ---- sending ------------------------------------------------------------------------ */

static int is_jid_error(int rc)
{
    return rc == XPB_EJID || (rc <= XPB_EJIDEMPTY && rc >= XPB_EJIDRESOURCE);
}

/* A batch item the state directory could not keep (%s: why), said once for
 * its two causes: the row refused, or the batch's commit failed. */
#define SEND_REFUSED_FMT                                                                     \
    "send refused: %s; no new send is accepted until the state directory can be written " \
    "(received stanzas are still relayed)"

/* Where a refusal goes: the request's error reply, or (one stanza of a
 * SendBatch) its SendOutcome, with the text kept in the batch's arena. */
typedef struct send_sink {
    xpb_bus_request *req;
    const char *request_id;     /* what the Delivery names */
    Xpb__V1__SendOutcome *out;  /* NULL: answer req */
    char *text;                 /* out's error text buffer */
    size_t textlen;
} send_sink;

static void refuse(const send_sink *k, Xpb__V1__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(const send_sink *k, Xpb__V1__ErrorCode code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (!k->out) {
        xpb_bus_reply_error(k->req, code, "%s", text);
        return;
    }
    k->out->has_code = 1;
    k->out->code = code;
    snprintf(k->text, k->textlen, "%s", text);
    k->out->error_text = k->text;
}

/* Why a session refused a send: for its queue (limits.queue_max bounds what
 * waits for the connection; what was sent and is not yet acked is bounded
 * apart, at XPB_SESSION_UNACKED_FACTOR x queue_max), a stopped session, or
 * the stanza itself. */
static void refuse_send(const send_sink *k, struct account *a, int rc)
{
    if (rc == XPB_EQUEUEFULL && link_present(a)) {
        xpb_session_stats st;
        link_stats(a, &st);
        const char *why = "too many stanzas waiting for the connection";
        if (link_state(a) != XPB_SS_ONLINE)
            why = "stanzas waiting while not connected";
        else if (st.unacked >= a->d->queue_max * XPB_SESSION_UNACKED_FACTOR)
            why = "too many stanzas sent and not acknowledged";
        refuse(k, XPB__V1__ERROR_CODE__ERR_QUEUE_FULL, "queue full (queue_max %u): %s",
               a->d->queue_max, why);
    } else if (rc == XPB_ENOTCONN || rc == XPB_EQUEUEFULL) {
        refuse(k, XPB__V1__ERROR_CODE__ERR_NOT_CONNECTED,
               "session %s is stopped or closing (close it and open it again)", a->name);
    } else {
        refuse(k,
               is_jid_error(rc) ? XPB__V1__ERROR_CODE__ERR_INVALID_JID
               : rc == XPB_ENOMEM ? XPB__V1__ERROR_CODE__ERR_INTERNAL
                                  : XPB__V1__ERROR_CODE__ERR_INVALID_RECORD,
               "%s", xpb_strerror(rc));
    }
}

void reply_send_error(struct account *a, xpb_bus_request *req, int rc)
{
    send_sink k = {.req = req, .request_id = xpb_bus_request_id(req)};
    refuse_send(&k, a, rc);
}

/* Checks st and keeps it in the outbox (sends.c); on failure tells k and
 * returns non-zero. flags: SEND_RECEIPT; SEND_BATCH (a single send request:
 * then SENDS_DEFERRED means sends.c sends and answers it after the group
 * commit); SEND_INBATCH (a SendBatch item: its row joins the open batch). */
static int send_prepare(struct account *a, const send_sink *k, xpb_stanza *st, unsigned flags,
                        const struct send_then *then, struct send_prep *prep)
{
    xpb_daemon *d = a->d;
    memset(prep, 0, sizeof *prep);
    char cerr[256] = "";
    int rc = xpb_stanza_check(st, &d->limits, cerr, sizeof cerr);
    if (rc != 0) {
        refuse(k, is_jid_error(rc) ? XPB__V1__ERROR_CODE__ERR_INVALID_JID
                                   : XPB__V1__ERROR_CODE__ERR_INVALID_RECORD,
               "%s", cerr[0] ? cerr : xpb_strerror(rc));
        return rc;
    }
    xpb_session_state state = link_state(a);
    if (state == XPB_SS_STOPPED || state == XPB_SS_CLOSING) {
        refuse_send(k, a, XPB_ENOTCONN);
        return XPB_ENOTCONN;
    }
    /* A batch's item has no request of its own to answer: its refusal goes to k. */
    rc = sends_accept(a, k->out ? NULL : k->req, k->request_id, st, flags, then, prep);
    if (rc != 0) {
        if (k->out && rc != SENDS_DEFERRED)
            refuse(k, rc == XPB_ENOMEM ? XPB__V1__ERROR_CODE__ERR_INTERNAL
                                       : XPB__V1__ERROR_CODE__ERR_STORAGE,
                   SEND_REFUSED_FMT, prep->err[0] ? prep->err : xpb_strerror(rc));
        sends_prep_free(prep);
    }
    return rc;
}

/* Hands a prepared (and kept) st to the session; on failure tells k and
 * returns non-zero. Frees prep either way. */
static int send_handoff(struct account *a, const send_sink *k, xpb_stanza *st,
                        struct send_prep *prep, uint64_t *h, char *idbuf, size_t idlen)
{
    xpb_daemon *d = a->d;
    size_t xml_bytes = 0;
    a->in_send = 1;
    a->early_set = a->early_sent = 0;
    /* send_prepare checked st (the session's limits are d->limits). */
    int rc = link_send(a, st, 1, h, idbuf, idlen, &xml_bytes);
    a->in_send = 0;
    if (rc != 0) {
        refuse_send(k, a, rc);
        sends_abort(a, prep);
        sends_prep_free(prep);
        return rc;
    }
    sends_track(a, *h, k->request_id, st, prep);
    /* A message's record was packed from st as sent (sends_accept). */
    d->ctr.bytes_record[XPB_DIR_OUT] +=
        prep->record.len ? prep->record.len : xpb_pack_plan_measure(d->plan, &st->base);
    sends_prep_free(prep);
    d->ctr.stanzas[XPB_DIR_OUT][kind_index(st->kind)]++;
    d->ctr.bytes_xml[XPB_DIR_OUT] += xml_bytes; /* as the session queued it */
    return 0;
}

/* Send st for request req, then do what then says (answer it, wait for the
 * iq's response ...): at once, or once sends.c kept it (SENDS_DEFERRED). On
 * failure answer req and return non-zero. */
static int send_for(struct account *a, xpb_bus_request *req, xpb_stanza *st, unsigned flags,
                    const struct send_then *then)
{
    send_sink k = {.req = req, .request_id = xpb_bus_request_id(req)};
    struct send_prep prep;
    char id[XPB_SESSION_ID_MAX + 8];
    uint64_t h;
    int rc = send_prepare(a, &k, st, flags, then, &prep);
    if (!rc) rc = send_handoff(a, &k, st, &prep, &h, id, sizeof id);
    if (!rc) send_then_run(a, req, st, id, then);
    return rc;
}

/* The answer to a send of stanza id: a SendResult in resp, which points at sr. */
static void sent_answer(struct account *a, const char *id, Xpb__V1__SendResult *sr,
                        Xpb__V1__Response *resp)
{
    *sr = (Xpb__V1__SendResult)XPB__V1__SEND_RESULT__INIT;
    sr->stanza_id = (char *)id;
    sr->has_queued = 1;
    sr->queued = link_state(a) != XPB_SS_ONLINE;
    *resp = (Xpb__V1__Response)XPB__V1__RESPONSE__INIT;
    resp->result_case = XPB__V1__RESPONSE__RESULT_SENT;
    resp->sent = sr;
}

void reply_sent(struct account *a, xpb_bus_request *req, const char *id)
{
    Xpb__V1__SendResult sr;
    Xpb__V1__Response resp;
    sent_answer(a, id, &sr, &resp);
    xpb_bus_reply(req, &resp);
}

void remember_sent(struct account *a, const char *request_id, const char *id)
{
    Xpb__V1__SendResult sr;
    Xpb__V1__Response resp;
    sent_answer(a, id, &sr, &resp);
    int rc = xpb_bus_remember_answer(a->d->bus, request_id, &resp);
    if (rc != 0) {
        if (rc != XPB_EINVAL)
            xpb_log(XPB_LOG_WARN, "session %s: the answer to request %s is not remembered: %s",
                    a->name, request_id, xpb_strerror(rc));
        return;
    }
    xpb_bus_stats st;
    xpb_bus_get_stats(a->d->bus, &st); /* counts the answers it took */
    if (st.dedupe_restored == (uint64_t)a->d->dedupe_entries + 1u)
        xpb_log(XPB_LOG_WARN,
                "more sends kept from the last run than the request-id cache holds (%u "
                "answers, bus.dedupe_entries): a resend of the oldest ones runs again "
                "(docs/bus.md, \"Idempotency\")",
                a->d->dedupe_entries);
}

/* A SendBatch item's outcome when its stanza id went to the session. */
static void item_sent(struct account *a, Xpb__V1__SendOutcome *out, char *id)
{
    out->has_code = out->has_queued = 1;
    out->code = XPB__V1__ERROR_CODE__OK;
    out->stanza_id = id;
    out->queued = link_state(a) != XPB_SS_ONLINE;
}

/* A batch item whose stanza a restart (or a takeover) kept and sent again:
 * answered with that stanza's id instead of being sent twice (the batch's
 * resend after the crash). 1 when it was. */
static int item_sent_before(struct account *a, const char *rid, Xpb__V1__SendOutcome *out, char *id,
                            size_t idlen)
{
    if (!xpb_bus_remembered_sent(a->d->bus, rid, id, idlen)) return 0;
    item_sent(a, out, id);
    return 1;
}

/* The daemon's own stanzas (rejoins, self-pings): no request, no Delivery. */
int send_own(struct account *a, const xpb_stanza *st)
{
    uint64_t h;
    int rc = link_send(a, st, 0, &h, NULL, 0, NULL);
    if (rc != 0)
        xpb_log(XPB_LOG_WARN, "session %s: cannot send: %s", a->name, xpb_strerror(rc));
    else
        a->d->ctr.stanzas[XPB_DIR_OUT][kind_index(st->kind)]++;
    return rc;
}

/* ---- requests --------------------------------------------------------------------- */

static void req_send(struct account *a, xpb_bus_request *req, const Xpb__V1__SendStanza *op)
{
    xpb_stanza st = *op->stanza; /* shallow: only the id may change */
    char uuid[37];
    expand_id_uuid(&st, uuid);
    unsigned flags = SEND_BATCH | (op->has_receipt && op->receipt ? SEND_RECEIPT : 0u);
    const struct send_then then = {.kind = THEN_REPLY};
    send_for(a, req, &st, flags, &then);
}

/* ---- SendBatch with the async state back end (NATS KV) ------------------------------ */

/* Every item's outbox key is put; the batch waits (a send_group in sends.c)
 * until each is stored or refused, then the kept ones go to the session in
 * order and the batch gets its one answer. */
struct kbatch {
    struct send_group g;
    struct account *a;
    xpb_bus_request *req;
    size_t n, next; /* next: where item_done looks first */
    struct kbatch_item {
        Xpb__V1__SendOutcome out;
        uint64_t outbox_id; /* 0: refused before it was kept */
        char rid[XPB_BUS_MAX_REQUEST_ID + 16], text[512], id[XPB_SESSION_ID_MAX + 8];
    } *items;
};

static void kbatch_item_done(struct send_group *g, struct send_prep *p, int rc, const char *why)
{
    struct kbatch *b = (struct kbatch *)g;
    struct kbatch_item *it = NULL;
    for (; b->next < b->n && !it; b->next++) /* items come back in their order */
        if (b->items[b->next].outbox_id && b->items[b->next].outbox_id == p->outbox_id)
            it = &b->items[b->next];
    if (!it) return;
    send_sink k = {.req = b->req, .request_id = it->rid, .out = &it->out, .text = it->text,
                   .textlen = sizeof it->text};
    if (rc == XPB_ENOTCONN) {
        refuse(&k, XPB__V1__ERROR_CODE__ERR_NOT_CONNECTED, "%s", why);
    } else if (rc) {
        refuse(&k, XPB__V1__ERROR_CODE__ERR_STORAGE, SEND_REFUSED_FMT, why);
    } else if ((rc = sends_send_kept(b->a, p, it->rid, NULL)) != 0) {
        refuse_send(&k, b->a, rc);
    } else {
        snprintf(it->id, sizeof it->id, "%s", p->id);
        item_sent(b->a, &it->out, it->id);
    }
}

static void kbatch_finish(struct send_group *g)
{
    struct kbatch *b = (struct kbatch *)g;
    Xpb__V1__SendOutcome **ptrs = calloc(b->n, sizeof *ptrs);
    if (!ptrs) {
        xpb_bus_reply_error(b->req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
    } else {
        for (size_t i = 0; i < b->n; i++) ptrs[i] = &b->items[i].out;
        Xpb__V1__SendBatchResult br = XPB__V1__SEND_BATCH_RESULT__INIT;
        br.n_result = b->n;
        br.result = ptrs;
        Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
        resp.result_case = XPB__V1__RESPONSE__RESULT_SENT_BATCH;
        resp.sent_batch = &br;
        xpb_bus_reply(b->req, &resp);
    }
    free(ptrs);
    free(b->items);
    free(b);
}

static void req_send_batch_kept(struct account *a, xpb_bus_request *req,
                                const Xpb__V1__SendBatch *op)
{
    xpb_daemon *d = a->d;
    struct kbatch *b = calloc(1, sizeof *b);
    if (!b || !(b->items = calloc(op->n_send, sizeof *b->items))) {
        free(b);
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return;
    }
    b->g = (struct send_group){.item_done = kbatch_item_done, .finish = kbatch_finish};
    b->a = a;
    b->req = req;
    b->n = op->n_send;
    const char *rid = xpb_bus_request_id(req);
    d->open_group = &b->g;
    for (size_t i = 0; i < b->n; i++) {
        struct kbatch_item *it = &b->items[i];
        it->out = (Xpb__V1__SendOutcome)XPB__V1__SEND_OUTCOME__INIT;
        snprintf(it->rid, sizeof it->rid, "%s/%zu", rid, i);
        send_sink k = {.req = req, .request_id = it->rid, .out = &it->out, .text = it->text,
                       .textlen = sizeof it->text};
        const Xpb__V1__SendStanza *one = op->send[i];
        if (!one || !one->stanza) {
            refuse(&k, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST,
                   "send_batch.send[%zu].stanza is required", i);
            continue;
        }
        if (item_sent_before(a, it->rid, &it->out, it->id, sizeof it->id)) continue;
        xpb_stanza st = *one->stanza; /* shallow: only the id may change */
        char uuid[37];
        expand_id_uuid(&st, uuid);
        unsigned flags = SEND_INBATCH | (one->has_receipt && one->receipt ? SEND_RECEIPT : 0u);
        struct send_prep prep;
        if (send_prepare(a, &k, &st, flags, NULL, &prep) == SENDS_DEFERRED)
            it->outbox_id = prep.outbox_id;
    }
    d->open_group = NULL;
    int waiting = 0;
    for (size_t i = 0; i < b->n; i++) waiting |= b->items[i].outbox_id != 0;
    if (waiting) sends_group_sealed(d, &b->g); /* b may be gone after this */
    else kbatch_finish(&b->g);                 /* nothing kept: answered at once */
}

/* Many stanzas, one reply: each goes through the same path as a single send
 * and is accepted or refused on its own; its Delivery names
 * "<request_id>/<index>" (docs/bus.md, "Sending in batches"). Two passes:
 * every item is checked and its row written (one commit for the batch), then
 * the accepted ones go to the session. With the store thread the second pass
 * waits, in a batch_job, until the thread has written every row (the loop
 * goes on meanwhile); send_batch_run finishes it. */
struct batch_item {
    xpb_stanza st; /* shallow: the request's, kept until it is answered */
    char uuid[37];
    struct send_prep prep;
    int prepared;
    Xpb__V1__SendOutcome out;
    char text[512];
    char rid[XPB_BUS_MAX_REQUEST_ID + 16];
    char id[XPB_SESSION_ID_MAX + 8];
};

struct batch_job {
    struct batch_job *next;
    xpb_daemon *d;
    struct account *a; /* NULL: closed and freed while its rows were written */
    char *account;
    xpb_bus_request *req;
    size_t n;
    unsigned waiting; /* rows the store thread has not written yet */
    Xpb__V1__SendOutcome **ptrs;
    struct batch_item items[];
};

static void batch_free(struct batch_job *j)
{
    free(j->account);
    free(j->ptrs);
    free(j);
}

/* The second pass of one item: its row is kept (or refused: crc, cerr). */
static void batch_item_send(struct batch_job *j, struct batch_item *it, int crc, char *cerr,
                            size_t cerrlen)
{
    xpb_daemon *d = j->d;
    struct account *a = j->a;
    Xpb__V1__SendOutcome *o = &it->out;
    send_sink k = {.req = j->req, .request_id = it->rid, .out = o, .text = it->text,
                   .textlen = sizeof it->text};
    if (!a) {
        char err[768];
        refuse(&k, XPB__V1__ERROR_CODE__ERR_NOT_CONNECTED,
               "session %s was closed before the send went out", j->account);
        if (d->state && it->prep.outbox_id && it->prep.put_rc == 0)
            d->state->outbox_done(d, j->account, it->prep.outbox_id, err, sizeof err);
        sends_prep_free(&it->prep);
        return;
    }
    int was_batched = it->prep.in_batch;
    int irc = sends_committed(a, &it->prep, crc, cerr, cerrlen);
    uint64_t h;
    if (irc && was_batched) {
        refuse(&k, XPB__V1__ERROR_CODE__ERR_STORAGE, SEND_REFUSED_FMT, cerr);
        sends_prep_free(&it->prep);
    } else if (send_handoff(a, &k, &it->st, &it->prep, &h, it->id, sizeof it->id) == 0) {
        item_sent(a, o, it->id);
    }
}

static void batch_finish(struct batch_job *j, int crc, const char *cerr_in)
{
    char cerr[768];
    snprintf(cerr, sizeof cerr, "%s", cerr_in);
    for (size_t i = 0; i < j->n; i++)
        if (j->items[i].prepared) batch_item_send(j, &j->items[i], crc, cerr, sizeof cerr);
    Xpb__V1__SendBatchResult br = XPB__V1__SEND_BATCH_RESULT__INIT;
    br.n_result = j->n;
    br.result = j->ptrs;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.result_case = XPB__V1__RESPONSE__RESULT_SENT_BATCH;
    resp.sent_batch = &br;
    xpb_bus_reply(j->req, &resp);
    batch_free(j);
}

void send_batch_kept(struct batch_job *j)
{
    if (j->waiting && --j->waiting == 0) sends_arm(j->d);
}

void send_batch_run(xpb_daemon *d)
{
    struct batch_job **pp = &d->jobs;
    while (*pp) {
        struct batch_job *j = *pp;
        if (j->waiting) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        batch_finish(j, 0, "");
        pp = &d->jobs; /* finishing may have changed the list */
    }
}

void send_batch_drop_account(struct account *a)
{
    for (struct batch_job *j = a->d->jobs; j; j = j->next)
        if (j->a == a) j->a = NULL;
}

static struct batch_job *batch_new(struct account *a, xpb_bus_request *req, size_t n)
{
    struct batch_job *j = calloc(1, sizeof *j + n * sizeof j->items[0]);
    if (!j) return NULL;
    j->ptrs = calloc(n, sizeof *j->ptrs);
    j->account = strdup(a->name);
    if (!j->ptrs || !j->account) {
        batch_free(j);
        return NULL;
    }
    j->d = a->d;
    j->a = a;
    j->req = req;
    j->n = n;
    return j;
}

/* First pass of item i: checked, its row written or handed to the store thread. */
static void batch_prepare(struct batch_job *j, size_t i, const Xpb__V1__SendStanza *one)
{
    struct batch_item *it = &j->items[i];
    it->out = (Xpb__V1__SendOutcome)XPB__V1__SEND_OUTCOME__INIT;
    j->ptrs[i] = &it->out;
    snprintf(it->rid, sizeof it->rid, "%s", xpb_bus_request_id(j->req));
    size_t rl = strlen(it->rid);
    snprintf(it->rid + rl, sizeof it->rid - rl, "/%zu", i);
    send_sink k = {.req = j->req, .request_id = it->rid, .out = &it->out, .text = it->text,
                   .textlen = sizeof it->text};
    if (!one || !one->stanza) {
        refuse(&k, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST,
               "send_batch.send[%zu].stanza is required", i);
        return;
    }
    if (item_sent_before(j->a, it->rid, &it->out, it->id, sizeof it->id)) return;
    it->st = *one->stanza; /* shallow: only the id may change */
    expand_id_uuid(&it->st, it->uuid);
    unsigned flags = SEND_INBATCH | (one->has_receipt && one->receipt ? SEND_RECEIPT : 0u);
    it->prepared = send_prepare(j->a, &k, &it->st, flags, NULL, &it->prep) == 0;
    /* Set after send_prepare (which clears prep), before any completion can run
     * (they run on this thread, later): the completion finds the job by it. */
    it->prep.job = j;
    if (it->prepared && it->prep.in_batch && state_threaded(j->d) && it->prep.put_rc < 0)
        j->waiting++;
}

static void req_send_batch(struct account *a, xpb_bus_request *req, const Xpb__V1__SendBatch *op)
{
    xpb_daemon *d = a->d;
    size_t n = op->n_send;
    if (n == 0 || n > XPB_DAEMON_MAX_SEND_BATCH) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST,
                            "send_batch holds %zu stanzas; it takes 1 to %u", n,
                            XPB_DAEMON_MAX_SEND_BATCH);
        return;
    }
    if (d->state && d->state->async) {
        req_send_batch_kept(a, req, op);
        return;
    }
    struct batch_job *j = batch_new(a, req, n);
    if (!j) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return;
    }
    int kept = 0;
    for (size_t i = 0; i < n; i++) {
        batch_prepare(j, i, op->send[i]);
        kept |= j->items[i].prepared && j->items[i].prep.in_batch;
    }
    if (state_threaded(d) && j->waiting) { /* finished by send_batch_run */
        struct batch_job **tail = &d->jobs;
        while (*tail) tail = &(*tail)->next;
        *tail = j;
        return;
    }
    char cerr[768] = "";
    int crc = kept && !state_threaded(d) ? sends_commit(d, cerr, sizeof cerr) : 0;
    batch_finish(j, crc, cerr);
}

static void req_iq(struct account *a, xpb_bus_request *req, const Xpb__V1__SendIq *op)
{
    xpb_daemon *d = a->d;
    xpb_stanza st = *op->stanza;
    char uuid[37], gen[64];
    expand_id_uuid(&st, uuid);
    if (!st.id || !st.id[0]) {
        snprintf(gen, sizeof gen, "xpb-iq-%" PRIu64 "-%lx", ++d->iq_counter, (long)time(NULL));
        st.id = gen;
    }
    unsigned ms = op->has_timeout_ms && op->timeout_ms ? op->timeout_ms : 10000u;
    if (ms > XPB_DAEMON_MAX_IQ_TIMEOUT_MS) ms = XPB_DAEMON_MAX_IQ_TIMEOUT_MS;
    const struct send_then then = {.kind = THEN_IQ, .ms = ms};
    send_for(a, req, &st, 0, &then);
}

/* A backend's iq went out: wait for its response (iq.c). */
static void iq_sent(struct account *a, xpb_bus_request *req, const xpb_stanza *st,
                    const char *id, unsigned ms)
{
    struct pending_iq *p = pending_add(a, IQ_USER, id, st->to, req, ms);
    const char *qid;
    /* XEP-0313 §5: its results are trusted only with this queryid, from st->to. */
    if (p && xpb_trust_mam_queryid(st, &qid) && !(p->mam_qid = strdup(qid))) {
        pending_free(a->d, p);
        p = NULL;
    }
    if (!p) xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
}

static void req_roster(struct account *a, xpb_bus_request *req)
{
    Xpb__V1__RosterQuery q = XPB__V1__ROSTER_QUERY__INIT;
    xpb_stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = st.has_type = 1;
    st.kind = XPB__V1__KIND__KIND_IQ;
    st.type = XPB__V1__STANZA_TYPE__TYPE_GET; /* RFC 6121 §2.1.3 */
    st.roster = &q;
    char id[64];
    snprintf(id, sizeof id, "xpb-roster-%" PRIu64, ++a->d->iq_counter);
    st.id = id;
    const struct send_then then = {.kind = THEN_ROSTER};
    send_for(a, req, &st, 0, &then);
}

static int presence_type_ok(Xpb__V1__StanzaType t)
{
    return t == XPB__V1__STANZA_TYPE__TYPE_UNAVAILABLE ||
           (t >= XPB__V1__STANZA_TYPE__TYPE_SUBSCRIBE && t <= XPB__V1__STANZA_TYPE__TYPE_PROBE);
}

static void remember_presence(struct account *a, const xpb_stanza *st, const char *status)
{
    char *copy = xstrdup(status);
    if (status && !copy) return; /* out of memory: keep the previous one */
    free(a->pres_status);
    a->pres_status = copy;
    a->pres_set = 1;
    a->pres_show = st->has_show ? (int)st->show : 0;
    a->pres_has_prio = st->has_priority;
    a->pres_prio = st->priority;
}

/* After a fresh bind (not a resumption, which keeps the server's state). */
void resend_presence(struct account *a)
{
    if (!a->pres_set) return;
    xpb_stanza st = XPB__V1__STANZA__INIT;
    Xpb__V1__Text status = XPB__V1__TEXT__INIT, *statusp = &status;
    st.has_kind = 1;
    st.kind = XPB__V1__KIND__KIND_PRESENCE;
    st.has_show = a->pres_show != 0;
    st.show = (Xpb__V1__Show)a->pres_show;
    if (a->pres_status) {
        status.text = a->pres_status;
        st.n_status = 1;
        st.status = &statusp;
    }
    st.has_priority = a->pres_has_prio;
    st.priority = a->pres_prio;
    send_own(a, &st);
}

static void req_presence(struct account *a, xpb_bus_request *req, const Xpb__V1__SetPresence *op)
{
    char why[256] = "";
    if (op->to && xpb_jid_validate(op->to, strlen(op->to), why, sizeof why) != 0) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INVALID_JID, "presence.to: %s", why);
        return;
    }
    if (op->has_type && op->type != 0 && !presence_type_ok(op->type)) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST,
                            "presence.type must be a presence type (unavailable, subscribe, "
                            "subscribed, unsubscribe, unsubscribed, probe)");
        return;
    }
    xpb_stanza st = XPB__V1__STANZA__INIT;
    Xpb__V1__Text status = XPB__V1__TEXT__INIT, *statusp = &status;
    st.has_kind = 1;
    st.kind = XPB__V1__KIND__KIND_PRESENCE;
    st.to = op->to;
    if (op->unavailable || (op->has_type && op->type != 0)) {
        st.has_type = 1;
        st.type = op->unavailable ? XPB__V1__STANZA_TYPE__TYPE_UNAVAILABLE : op->type;
    }
    if (op->has_show && op->show != 0) {
        st.has_show = 1;
        st.show = op->show;
    }
    if (op->status) {
        status.text = op->status;
        st.n_status = 1;
        st.status = &statusp;
    }
    st.has_priority = op->has_priority;
    st.priority = op->priority;
    const struct send_then then = {.kind = THEN_PRESENCE, .remember = !op->to && !st.has_type};
    send_for(a, req, &st, 0, &then);
}

static void req_join(struct account *a, xpb_bus_request *req, const Xpb__V1__JoinRoom *op)
{
    char why[256] = "", full[3 * 1024 + 8];
    if (!op->room || !op->nick || !op->nick[0]) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST, "join needs room and nick");
        return;
    }
    xpb_jid j;
    int rc = xpb_jid_parse(&j, op->room, strlen(op->room), why, sizeof why);
    if (rc == 0 && (!j.local || j.resource)) {
        snprintf(why, sizeof why, "a room is a bare JID room@service");
        rc = XPB_EJID;
    }
    if (rc == 0) xpb_jid_clear(&j);
    snprintf(full, sizeof full, "%s/%s", op->room, op->nick);
    if (rc == 0) rc = xpb_jid_validate(full, strlen(full), why, sizeof why);
    if (rc != 0) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INVALID_JID, "join %s: %s", full, why);
        return;
    }
    struct room *r;
    int hist = op->has_history_maxstanzas ? op->history_maxstanzas : -1;
    if (room_add(a, op->room, op->nick, op->password, hist, &r) != 0) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return;
    }
    xpb_stanza st;
    Xpb__V1__MucJoin mj;
    Xpb__V1__MucHistory mh;
    char to[3 * 1024 + 8];
    join_stanza(r, &st, &mj, &mh, to, sizeof to);
    const struct send_then then = {.kind = THEN_JOIN};
    send_for(a, req, &st, 0, &then);
}

void send_then_run(struct account *a, xpb_bus_request *req, const xpb_stanza *st,
                   const char *id, const struct send_then *t)
{
    switch (t->kind) {
    case THEN_IQ: iq_sent(a, req, st, id, t->ms); return;
    case THEN_ROSTER:
        if (!pending_add(a, IQ_ROSTER, id, NULL, req, 10000u))
            xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return;
    case THEN_PRESENCE:
        if (t->remember)
            remember_presence(a, st, st->n_status ? st->status[0]->text : NULL);
        break;
    case THEN_JOIN: { /* to is room/nick; a room (a bare JID) has no '/' */
        const char *to = st->to ? st->to : "", *slash = strchr(to, '/');
        int n = slash ? (int)(slash - to) : (int)strlen(to);
        xpb_log(XPB_LOG_INFO, "session %s: joining %.*s as %s", a->name, n, to,
                slash ? slash + 1 : "");
        break;
    }
    case THEN_REPLY: break;
    }
    reply_sent(a, req, id);
}

/* OpenSession -> the account to start, under the configuration's rules
 * (open_policy.h). 0, or the request is answered. */
static int open_cfg(xpb_daemon *d, xpb_bus_request *req, const Xpb__V1__Request *r,
                    xpb_account_cfg *c, const char **password, int *from_config)
{
    const Xpb__V1__OpenSession *op = r->open;
    const char *jid = op->jid ? op->jid : r->account;
    char why[512] = "";
    xpb_jid j;
    int rc = xpb_jid_parse(&j, jid, strlen(jid), why, sizeof why);
    if (rc == 0 && !j.local) {
        snprintf(why, sizeof why, "an account JID needs a localpart (user@domain)");
        xpb_jid_clear(&j);
        rc = XPB_EJID;
    }
    if (rc != 0) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INVALID_JID, "open.jid %s: %s", jid, why);
        return rc;
    }
    char *bare = xpb_jid_bare(&j);
    const xpb_account_cfg *conf = NULL;
    for (size_t i = 0; bare && i < d->n_conf; i++)
        if (strcmp(d->conf[i].jid, bare) == 0) conf = &d->conf[i];
    Xpb__V1__ErrorCode code = bare ? xpb_open_resolve(&d->open_rules, conf, op, bare, j.resource, c,
                                                      password, why, sizeof why)
                                   : XPB__V1__ERROR_CODE__ERR_INTERNAL;
    xpb_jid_clear(&j);
    free(bare);
    if (code != XPB__V1__ERROR_CODE__OK) {
        if (code == XPB__V1__ERROR_CODE__ERR_FORBIDDEN) {
            d->ctr.open_forbidden++;
            xpb_log(XPB_LOG_WARN, "request %s refused: %s", xpb_bus_request_id(req), why);
        }
        xpb_bus_reply_error(req, code, "%s", why[0] ? why : "out of memory");
        return -1;
    }
    *from_config = conf && !*password && !op->password_file && !op->host && !op->has_port &&
                   !op->has_transport && !op->ws_url && !op->ca_file;
    return 0;
}

/* The same WebSocket URL rule as the configuration (xpb_config_check_ws_url);
 * a bus request cannot set allow_plaintext_ws, so ws:// is refused here. */
static int open_ws_url_refused(xpb_bus_request *req, const xpb_account_cfg *c)
{
    char why[400];
    if (xpb_config_check_ws_url(c->ws_url, 0, why, sizeof why) == 0) return 0;
    xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST, "open.%s", why);
    return 1;
}

static void req_open(xpb_daemon *d, xpb_bus_request *req, const Xpb__V1__Request *r)
{
    xpb_account_cfg c = {0};
    const char *password = NULL;
    int from_config = 0;
    if (cluster_owns_accounts(d)) { /* an open here could put an account online twice */
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_FORBIDDEN,
                            "accounts are owned by leases (nats.leases): open is refused");
        return;
    }
    if (open_cfg(d, req, r, &c, &password, &from_config) != 0) {
        xpb_account_cfg_clear(&c);
        return;
    }
    if (find_account(d, c.jid)) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_EXISTS, "account %s is already open",
                            c.jid);
    } else if (!password && !c.password_file) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST,
                            "open needs password or password_file");
    } else if (c.transport == XPB_TRANSPORT_WEBSOCKET && !c.ws_url) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST,
                            "transport websocket needs ws_url");
    } else if (c.ws_url && open_ws_url_refused(req, &c)) {
        /* answered: the ws:// rule of config.c (no allow_plaintext_ws over the bus) */
    } else {
        char err[512] = "";
        int rc = account_start(d, &c, password, from_config, err, sizeof err);
        struct account *a = rc == 0 ? find_account(d, c.jid) : NULL;
        for (size_t i = 0; a && i < r->open->n_room; i++) {
            const Xpb__V1__JoinRoom *jr = r->open->room[i];
            struct room *rm;
            if (jr->room && jr->nick)
                room_add(a, jr->room, jr->nick, jr->password,
                         jr->has_history_maxstanzas ? jr->history_maxstanzas : -1, &rm);
        }
        if (rc == 0) xpb_bus_reply(req, &(Xpb__V1__Response)XPB__V1__RESPONSE__INIT);
        else
            xpb_bus_reply_error(req,
                                rc == XPB_ENOMEM ? XPB__V1__ERROR_CODE__ERR_INTERNAL
                                : strstr(err, "password") ? XPB__V1__ERROR_CODE__ERR_BAD_REQUEST
                                                          : XPB__V1__ERROR_CODE__ERR_TLS,
                                "%s", err);
    }
    xpb_account_cfg_clear(&c);
}

static void req_close(struct account *a, xpb_bus_request *req)
{
    struct closer *c = calloc(1, sizeof *c);
    if (!c) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return;
    }
    c->req = req;
    c->next = a->closers;
    a->closers = c;
    xpb_log(XPB_LOG_INFO, "session %s: closing (request %s)", a->name, xpb_bus_request_id(req));
    account_close(a);
}

void on_request(void *ud, xpb_bus_request *req, const Xpb__V1__Request *r)
{
    xpb_daemon *d = ud;
    if (d->shutting_down) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "shutting down");
        return;
    }
    switch (r->op_case) {
    case XPB__V1__REQUEST__OP_LIST: req_list(d, req); return;
    case XPB__V1__REQUEST__OP_STATUS: req_status(d, req); return;
    case XPB__V1__REQUEST__OP_REPLAY: req_replay(d, req, r->replay); return;
    case XPB__V1__REQUEST__OP_OPEN: req_open(d, req, r); return;
    default: break;
    }
    char why[1024] = "";
    struct account *a = request_account(d, r->account, why, sizeof why);
    if (!a || (a->removing && r->op_case != XPB__V1__REQUEST__OP_CLOSE)) {
        if (!why[0])
            snprintf(why, sizeof why,
                     "no session for account %s (open it first or add it to the config)",
                     r->account);
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_UNKNOWN_ACCOUNT, "%s", why);
        return;
    }
    switch (r->op_case) {
    case XPB__V1__REQUEST__OP_CLOSE: req_close(a, req); break;
    case XPB__V1__REQUEST__OP_SEND: req_send(a, req, r->send); break;
    case XPB__V1__REQUEST__OP_SEND_BATCH: req_send_batch(a, req, r->send_batch); break;
    case XPB__V1__REQUEST__OP_IQ: req_iq(a, req, r->iq); break;
    case XPB__V1__REQUEST__OP_PRESENCE: req_presence(a, req, r->presence); break;
    case XPB__V1__REQUEST__OP_ROSTER: req_roster(a, req); break;
    case XPB__V1__REQUEST__OP_JOIN: req_join(a, req, r->join); break;
    default:
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST, "unknown operation");
        break;
    }
}

