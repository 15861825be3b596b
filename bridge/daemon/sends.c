/* Durable sends (docs/durability.md, "Sends"; docs/bus.md, "Delivery"): an
 * accepted stanza gets an id (a message an origin-id equal to it, XEP-0359)
 * and is kept in the state directory's outbox before the request is
 * answered, until the server acknowledges it (XEP-0198) or it fails for good;
 * after a restart the outbox is sent again. Its Delivery events (QUEUED ->
 * SENT -> ACKED -> RECEIVED, or FAILED) are delivery.c's. */
#define _DEFAULT_SOURCE /* strdup */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "daemon_internal.h"
#include "xpb_bus_kv.h" /* xpb_kv_now_ms: the clock of the KV retries */
#include "xpb_error.h"

/* ---- ids ------------------------------------------------------------------------- */

/* An account's kept sends, and the daemon's sum of them (read by /metrics
 * and status without a walk over the accounts). */
static void outbox_add(struct account *a)
{
    a->outbox_n++;
    a->d->outbox_total++;
}

static void outbox_sub(struct account *a)
{
    if (!a->outbox_n) return;
    a->outbox_n--;
    a->d->outbox_total--;
}

/* 64 random bits per id, read from the kernel 32 ids at a time: a
 * getrandom call per id was a tenth of accepting a send. */
static uint64_t random64(void)
{
    static uint64_t pool[32];
    static size_t left;
    if (!left) {
        if (getrandom(pool, sizeof pool, GRND_NONBLOCK) != (ssize_t)sizeof pool) {
            uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
            for (size_t i = 0; i < 32; i++) { /* no entropy yet (early boot): spread it */
                seed += 0x9e3779b97f4a7c15u;
                pool[i] = seed ^ (seed >> 31);
            }
        }
        left = 32;
    }
    return pool[--left];
}

/* Unique across restarts without any state: 64 random bits and a counter,
 * "xpb-<16 hex>-<counter>" (written without printf: this is per send). */
static void make_id(char *buf, size_t len)
{
    static uint64_t counter;
    static const char hex[] = "0123456789abcdef";
    char tmp[4 + 16 + 1 + 20 + 1], dec[20];
    uint64_t r = random64(), n = ++counter;
    size_t k = 4, d = 0;
    memcpy(tmp, "xpb-", 4);
    for (int shift = 60; shift >= 0; shift -= 4) tmp[k++] = hex[(r >> shift) & 15u];
    tmp[k++] = '-';
    do dec[d++] = (char)('0' + n % 10); while ((n /= 10) != 0);
    while (d) tmp[k++] = dec[--d];
    if (!len) return;
    if (k >= len) k = len - 1;
    memcpy(buf, tmp, k);
    buf[k] = '\0';
}

static int ensure_batch(xpb_daemon *d);

void sends_outbox_forget(struct account *a, uint64_t id)
{
    xpb_daemon *d = a->d;
    if (!id || !d->state) return;
    if (!d->state->async && !state_threaded(d))
        ensure_batch(d); /* joins the turn's batch; alone when none can open */
    char err[768];
    if (d->state->outbox_done(d, a->name, id, err, sizeof err) != 0) {
        d->ctr.outbox_errors++;
        xpb_log(XPB_LOG_WARN, "session %s: outbox: %s (the send may go out again after a "
                              "restart)", a->name, err);
        return;
    }
    outbox_sub(a);
}

/* ---- accepting a send ------------------------------------------------------------- */

static void refuse_storage(struct account *a, xpb_bus_request *req, const char *err)
{
    a->d->ctr.storage_refusals++;
    xpb_log(XPB_LOG_WARN, "session %s: send refused: %s", a->name, err);
    if (req)
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_STORAGE,
                            "send refused: %s; no new send is accepted until %s can be "
                            "written (received stanzas are still relayed)",
                            err, a->d->state ? a->d->state->where : "the state directory");
}

/* ---- group commit ------------------------------------------------------------------
 * With fsync at every commit a send costs one commit for its row and one for
 * its removal: a few hundred sends a second. So rows are written in one
 * transaction per loop turn (xpb_store_batch_*): a send request waits, kept
 * in d->deferred, until the commit timer (0 ms: after the turn's requests)
 * has committed them; then each is handed to its session and answered. A
 * backend never gets OK for a send that is not on disk, and nothing is
 * written to the server before its row is. Removals join the batch too (a
 * removal lost to a crash only means a duplicate after the restart). */

struct deferred {
    struct deferred *next;
    struct account *a;
    xpb_bus_request *req;  /* NULL for an item of a group */
    struct send_group *group; /* a SendBatch item (async back end): its batch */
    struct send_then then;    /* not a group's item: what its request does once sent */
    struct send_prep prep; /* owns the record */
    int rc, committed;     /* the batch's outcome */
    unsigned tries;        /* async back end: puts that failed so far */
    int64_t retry_at;      /* > 0: put it again at this xpb_kv_now_ms() */
    char err[256];         /* a group item's refusal */
    char request_id[XPB_BUS_MAX_REQUEST_ID + 24]; /* its row's (an item's "<id>/<index>") */
};

static void on_committed(void *ud, int rc, const char *err)
{
    xpb_daemon *d = ud;
    if (rc) snprintf(d->commit_err, sizeof d->commit_err, "%s", err);
    for (struct deferred *e = d->deferred; e; e = e->next)
        if (!e->committed) {
            e->committed = 1;
            e->rc = rc;
        }
}

static void on_commit_timer(void *arg);
static void run_committed(xpb_daemon *d);

/* Sends and answers what is committed after this turn (never inside the
 * completion that marked it: that may run inside another request). */
static void arm_commit_timer(xpb_daemon *d)
{
    if (d->commit_armed) return;
    if (!d->commit_timer && xpb_timer_new(d->loop, on_commit_timer, d, &d->commit_timer)) return;
    d->commit_armed = 1;
    xpb_timer_start(d->commit_timer, XPB_DAEMON_COMMIT_MS);
}

void sends_arm(xpb_daemon *d)
{
    arm_commit_timer(d);
    if (d->commit_armed) return;
    run_committed(d); /* no timer: out of memory */
    send_batch_run(d);
}

/* The store thread wrote (or failed to write) a deferred send's row. */
static void on_row_kept(void *ud, const char *account, uint64_t id, int rc, const char *err)
{
    xpb_daemon *d = ud;
    for (struct deferred *e = d->deferred; e; e = e->next)
        if (!e->committed && e->prep.outbox_id == id && strcmp(e->a->name, account) == 0) {
            e->committed = 1;
            e->rc = rc;
            if (rc) snprintf(d->commit_err, sizeof d->commit_err, "%s", err);
            break;
        }
    sends_arm(d);
}

/* The store thread wrote (or failed to write) a row whose prep waits for it:
 * a SendBatch item, or a request answered at once (sends_commit, persist). */
static void on_prep_kept(void *ud, const char *account, uint64_t id, int rc, const char *err)
{
    struct send_prep *p = ud;
    (void)account;
    (void)id;
    p->put_rc = rc;
    if (rc) snprintf(p->err, sizeof p->err, "%s", err);
    if (p->job) send_batch_kept(p->job);
}

/* p's outbox row (its outbox_id set), made for request_id. */
static xpb_outbox_item outbox_item(const struct account *a, const struct send_prep *p,
                                   const char *request_id)
{
    return (xpb_outbox_item){.account = a->name,
                             .id = p->outbox_id,
                             .stanza_id = p->id,
                             .request_id = request_id,
                             .xml = (const uint8_t *)p->record.data,
                             .xml_len = p->record.len};
}

/* With the store thread (state.c): the row is handed over. A single send
 * (SEND_BATCH) waits in d->deferred for on_row_kept, a SendBatch item for
 * sends_commit; iq, presence, join and roster requests (answered when this
 * returns) wait here: rare, and the loop stalls for one round only. */
static int persist_threaded(struct account *a, xpb_bus_request *req, const char *request_id,
                            struct send_prep *p, unsigned flags)
{
    xpb_daemon *d = a->d;
    p->outbox_id = ++a->outbox_next;
    p->put_rc = -1;
    xpb_outbox_item it = outbox_item(a, p, request_id);
    int single = (flags & SEND_BATCH) != 0, later = (flags & (SEND_BATCH | SEND_INBATCH)) != 0;
    int rc = xpb_store_submit_outbox_put(d->store, &it, single ? on_row_kept : on_prep_kept,
                                         single ? (void *)d : (void *)p);
    if (rc == 0 && !later) {
        xpb_store_wait(d->store);
        rc = p->put_rc;
    }
    if (rc == 0) {
        outbox_add(a);
        p->in_batch = later;
        if (!later) d->ctr.sends_persisted++; /* else once written */
        return 0;
    }
    p->outbox_id = 0;
    if (!p->err[0]) snprintf(p->err, sizeof p->err, "outbox: %s", xpb_strerror(rc));
    refuse_storage(a, req, p->err);
    return rc;
}

/* Opens a batch when none is; its commit runs from the loop, after this turn. */
static int ensure_batch(xpb_daemon *d)
{
    if (!xpb_store_batch_open(d->store)) {
        char err[768];
        if (xpb_store_batch_begin(d->store, on_committed, d, err, sizeof err) != 0) return -1;
    }
    if (!d->commit_armed) {
        if (!d->commit_timer && xpb_timer_new(d->loop, on_commit_timer, d, &d->commit_timer))
            return -1;
        d->commit_armed = 1;
        xpb_timer_start(d->commit_timer, XPB_DAEMON_COMMIT_MS);
    }
    return 0;
}

static int persist(struct account *a, xpb_bus_request *req, const char *request_id,
                   struct send_prep *p, unsigned flags)
{
    xpb_daemon *d = a->d;
    if (state_threaded(d)) return persist_threaded(a, req, request_id, p, flags);
    int batch = (flags & (SEND_BATCH | SEND_INBATCH)) != 0;
    int async = d->state->async; /* kept once sends_kept says so: counted then */
    if (!async && (!batch || ensure_batch(d) != 0))
        xpb_store_batch_commit(d->store); /* on its own */
    p->outbox_id = ++a->outbox_next;
    xpb_outbox_item it = outbox_item(a, p, request_id);
    char err[768];
    int rc = d->state->outbox_put(d, &it, err, sizeof err);
    if (rc == 0 && async) {
        outbox_add(a);
        return 0;
    }
    if (rc == 0) {
        outbox_add(a);
        p->in_batch = xpb_store_batch_open(d->store);
        if (!p->in_batch) d->ctr.sends_persisted++; /* else at commit */
        return 0;
    }
    p->outbox_id = 0;
    /* The refusal as the item keeps it: cut to its field, on purpose. */
    snprintf(p->err, sizeof p->err, "%.*s", (int)sizeof p->err - 1, err);
    refuse_storage(a, req, err);
    return rc;
}

int sends_send_kept(struct account *a, struct send_prep *p, const char *request_id,
                    const xpb_stanza **sent)
{
    xpb_daemon *d = a->d;
    d->ctr.sends_persisted++;
    xpb_stanza *st = NULL;
    if (!d->send_arena) d->send_arena = xpb_arena_new(0);
    int rc = d->send_arena ? 0 : XPB_ENOMEM;
    if (!rc) {
        xpb_arena_reset(d->send_arena);
        rc = xpb_stanza_unpack(d->send_arena, (const uint8_t *)p->record.data, p->record.len,
                               &d->limits, &st, NULL, 0);
    }
    uint64_t h = 0;
    size_t xml_bytes = 0;
    a->in_send = 1;
    a->early_set = a->early_sent = 0;
    if (!rc) rc = link_send(a, st, 1, &h, NULL, 0, &xml_bytes); /* unpack checked */
    a->in_send = 0;
    if (rc) {
        sends_abort(a, p);
        return rc;
    }
    d->ctr.stanzas[XPB_DIR_OUT][kind_index(st->kind)]++;
    d->ctr.bytes_record[XPB_DIR_OUT] += p->record.len;
    d->ctr.bytes_xml[XPB_DIR_OUT] += xml_bytes;
    sends_track(a, h, request_id, st, p);
    if (sent) *sent = st;
    return 0;
}

/* The batch is on disk (or failed): send and answer one deferred request. */
static void send_deferred(xpb_daemon *d, struct deferred *e)
{
    struct account *a = e->a;
    if (e->rc) {
        outbox_sub(a);
        refuse_storage(a, e->req, d->commit_err);
        return;
    }
    const xpb_stanza *st = NULL;
    int rc = sends_send_kept(a, &e->prep, xpb_bus_request_id(e->req), &st);
    if (rc) reply_send_error(a, e->req, rc);
    else send_then_run(a, e->req, st, e->prep.id, &e->then);
}

/* The group's entries are consecutive from e: all stored or refused? */
static int group_ready(const struct deferred *e)
{
    const struct send_group *g = e->group;
    if (!g->sealed) return 0;
    for (; e && e->group == g; e = e->next)
        if (!e->committed) return 0;
    return 1;
}

/* Hands every item of e's group to its done callback, in order (rc:
 * forced on all when not 0), then finishes the group. */
static void run_group(xpb_daemon *d, struct deferred **pp, int rc, const char *why)
{
    struct send_group *g = (*pp)->group;
    while (*pp && (*pp)->group == g) {
        struct deferred *e = *pp;
        *pp = e->next;
        int erc = rc ? rc : e->rc;
        if (erc && !rc) outbox_sub(e->a);
        if (erc) d->ctr.storage_refusals += !rc;
        g->item_done(g, &e->prep, erc, rc ? why : e->err);
        sends_prep_free(&e->prep);
        free(e);
    }
    d->deferred_tail = &d->deferred;
    while (*d->deferred_tail) d->deferred_tail = &(*d->deferred_tail)->next;
    g->finish(g);
}

static void run_committed(xpb_daemon *d)
{
    while (d->deferred && d->deferred->committed) {
        struct deferred *e = d->deferred;
        if (e->group) {
            if (!group_ready(e)) break;
            run_group(d, &d->deferred, 0, NULL);
            continue;
        }
        d->deferred = e->next;
        if (!d->deferred) d->deferred_tail = &d->deferred;
        send_deferred(d, e);
        sends_prep_free(&e->prep);
        free(e);
    }
}

void sends_group_sealed(xpb_daemon *d, struct send_group *g)
{
    g->sealed = 1;
    run_committed(d);
}

static void on_commit_timer(void *arg)
{
    xpb_daemon *d = arg;
    d->commit_armed = 0;
    if (d->store) xpb_store_batch_commit(d->store);
    run_committed(d);
    send_batch_run(d);
}

static void drop_deferred(struct account *a);

void sends_flush(xpb_daemon *d)
{
    xpb_store_wait(d->store); /* the store thread's rows: marked committed or failed */
    if (d->store) xpb_store_batch_commit(d->store);
    run_committed(d);
    send_batch_run(d);
    /* What the async back end has not confirmed yet is answered now, while
     * the bus (and so each request) is still there. */
    while (d->deferred) drop_deferred(d->deferred->a);
}

static int defer(struct account *a, xpb_bus_request *req, const char *request_id,
                 const struct send_then *then, struct send_prep *p)
{
    xpb_daemon *d = a->d;
    struct deferred *e = calloc(1, sizeof *e);
    if (!e && (d->state->async || state_threaded(d))) { /* nothing can wait: refused */
        sends_abort(a, p);
        refuse_storage(a, req, "out of memory");
        return XPB_ENOMEM;
    }
    if (!e) {
        xpb_store_batch_commit(d->store); /* its row is written: answer at once */
        return 0;
    }
    e->a = a;
    e->req = req;
    snprintf(e->request_id, sizeof e->request_id, "%s", request_id ? request_id : "");
    e->group = req ? NULL : d->open_group;
    if (then) e->then = *then;
    e->prep = *p; /* the record moves into e */
    xpb_buf_init(&p->record, 0);
    if (!d->deferred_tail) d->deferred_tail = &d->deferred;
    *d->deferred_tail = e;
    d->deferred_tail = &e->next;
    return SENDS_DEFERRED;
}

/* An account going away: its deferred sends are answered now. */
static void drop_deferred(struct account *a)
{
    xpb_daemon *d = a->d;
    struct deferred **pp = &d->deferred;
    while (*pp) {
        struct deferred *e = *pp;
        if (e->a != a) {
            pp = &e->next;
            continue;
        }
        if (e->group) { /* the whole batch is answered, each item refused */
            char why[256];
            snprintf(why, sizeof why, "session %s was closed before the send went out",
                     a->name);
            for (struct deferred *g = e; g && g->group == e->group; g = g->next)
                if (d->state && g->prep.outbox_id) {
                    char err[768];
                    d->state->outbox_done(d, a->name, g->prep.outbox_id, err, sizeof err);
                }
            run_group(d, pp, XPB_ENOTCONN, why);
            continue;
        }
        *pp = e->next;
        xpb_bus_reply_error(e->req, XPB__V1__ERROR_CODE__ERR_NOT_CONNECTED,
                            "session %s was closed before the send went out", a->name);
        if (d->state && e->prep.outbox_id) {
            char err[768];
            d->state->outbox_done(d, a->name, e->prep.outbox_id, err, sizeof err);
        }
        sends_prep_free(&e->prep);
        free(e);
    }
    d->deferred_tail = &d->deferred;
    while (*d->deferred_tail) d->deferred_tail = &(*d->deferred_tail)->next;
}

int sends_accept(struct account *a, xpb_bus_request *req, const char *request_id, xpb_stanza *st,
                 unsigned flags, const struct send_then *then, struct send_prep *p)
{
    memset(p, 0, sizeof *p);
    xpb_buf_init(&p->record, 0);
    if (!st->id || !st->id[0]) {
        make_id(p->id, sizeof p->id);
        st->id = p->id;
    } else {
        snprintf(p->id, sizeof p->id, "%s", st->id);
    }
    if (st->kind == XPB__V1__KIND__KIND_MESSAGE) {
        /* XEP-0359 §4: a receiver de-duplicates a resent message by it. */
        if (!st->origin_id && !st->has_origin_id_uuid && !st->origin_id_is_id)
            st->origin_id = st->id;
        if ((flags & SEND_RECEIPT) && st->to) { /* XEP-0184 §5.1 */
            st->has_receipt_request = st->receipt_request = 1;
            p->receipt = 1;
        }
    }
    const struct state_ops *so = a->d->state;
    int keep = so != NULL;
    if (keep && so->async && (flags & SEND_INBATCH) && !a->d->open_group) {
        snprintf(p->err, sizeof p->err, "a SendBatch item for %s needs its batch", so->where);
        return XPB_EINVAL;
    }
    if (keep && so->async && !then && !(flags & SEND_INBATCH)) {
        snprintf(p->err, sizeof p->err, "a send kept in %s needs what follows it", so->where);
        return XPB_EINVAL;
    }
    if ((keep || st->kind == XPB__V1__KIND__KIND_MESSAGE) && xpb_stanza_pack(&p->record, st)) {
        if (req) xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return XPB_ENOMEM;
    }
    if (!keep) return 0;
    int rc = persist(a, req, request_id, p, flags);
    if (!rc && (so->async || (state_threaded(a->d) && (flags & SEND_BATCH))))
        return defer(a, req, request_id, then, p);
    if (rc || !(flags & SEND_BATCH) || !xpb_store_batch_open(a->d->store)) return rc;
    return defer(a, req, request_id, then, p);
}

int sends_commit(xpb_daemon *d, char *err, size_t errlen)
{
    if (!d->store) return 0;
    if (state_threaded(d)) { /* each row has its own outcome: sends_committed */
        xpb_store_wait(d->store);
        run_committed(d);
        return 0;
    }
    d->commit_err[0] = '\0';
    int rc = xpb_store_batch_commit(d->store);
    if (rc) snprintf(err, errlen, "%s", d->commit_err[0] ? d->commit_err : xpb_strerror(rc));
    run_committed(d);
    return rc;
}

static int put_now(xpb_daemon *d, struct deferred *e)
{
    xpb_outbox_item it = outbox_item(e->a, &e->prep, e->request_id[0] ? e->request_id : NULL);
    char err[768];
    return d->state->outbox_put(d, &it, err, sizeof err);
}

/* Puts whose pause is over go again; a put that cannot even be queued fails. */
static void on_put_retry(void *arg)
{
    xpb_daemon *d = arg;
    d->put_retry_armed = 0;
    int64_t now = xpb_kv_now_ms();
    int waiting = 0;
    for (struct deferred *e = d->deferred; e; e = e->next) {
        if (!e->retry_at) continue;
        if (e->retry_at > now) {
            waiting = 1;
            continue;
        }
        e->retry_at = 0;
        if (d->state && put_now(d, e) == 0) continue;
        e->committed = 1;
        e->rc = XPB_ESTORE;
        snprintf(e->err, sizeof e->err, "the KV queue refused it");
        snprintf(d->commit_err, sizeof d->commit_err, "%s", e->err);
    }
    if (waiting) {
        d->put_retry_armed = 1;
        xpb_timer_start(d->put_retry_timer, XPB_DAEMON_KV_RETRY_MIN_MS);
    }
    run_committed(d);
}

/* A failed KV put is tried again after a pause that doubles (a NATS node
 * lost: its streams elect new leaders within seconds, and while a stream has
 * none a put fails at once) before the send is refused. */
static int put_again(xpb_daemon *d, struct deferred *e)
{
    if (e->tries >= XPB_DAEMON_KV_PUT_TRIES || !d->state || !d->state->async) return -1;
    if (!d->put_retry_timer && xpb_timer_new(d->loop, on_put_retry, d, &d->put_retry_timer))
        return -1;
    e->tries++;
    unsigned pause = XPB_DAEMON_KV_RETRY_MIN_MS << (e->tries - 1);
    if (pause > XPB_DAEMON_KV_RETRY_MAX_MS || e->tries > 16) pause = XPB_DAEMON_KV_RETRY_MAX_MS;
    e->retry_at = xpb_kv_now_ms() + pause;
    if (!d->put_retry_armed) {
        d->put_retry_armed = 1;
        xpb_timer_start(d->put_retry_timer, XPB_DAEMON_KV_RETRY_MIN_MS);
    }
    xpb_log(XPB_LOG_WARN, "session %s: send %s not stored in %s yet; trying again in %u ms "
            "(%u of %u)", e->a->name, e->prep.id, d->state->where, pause, e->tries,
            XPB_DAEMON_KV_PUT_TRIES);
    return 0;
}

void sends_kept(xpb_daemon *d, const char *account, uint64_t id, int rc, const char *err)
{
    for (struct deferred *e = d->deferred; e; e = e->next)
        if (!e->committed && e->prep.outbox_id == id && strcmp(e->a->name, account) == 0) {
            if (rc && put_again(d, e) == 0) return;
            e->committed = 1;
            e->rc = rc;
            if (rc) snprintf(d->commit_err, sizeof d->commit_err, "%s", err);
            if (rc) snprintf(e->err, sizeof e->err, "%s", err);
            break;
        }
    run_committed(d);
}

int sends_committed(struct account *a, struct send_prep *p, int rc, char *err, size_t errlen)
{
    if (!p->in_batch) return 0; /* written on its own: counted then */
    p->in_batch = 0;
    if (state_threaded(a->d)) {
        rc = p->put_rc < 0 ? XPB_ESTORE : p->put_rc;
        if (rc) snprintf(err, errlen, "%s", p->err[0] ? p->err : "outbox: not written");
    }
    if (!rc) {
        a->d->ctr.sends_persisted++;
        return 0;
    }
    outbox_sub(a);
    p->outbox_id = 0; /* the batch's rows are gone */
    a->d->ctr.storage_refusals++;
    return rc;
}

void sends_abort(struct account *a, struct send_prep *p)
{
    sends_outbox_forget(a, p->outbox_id);
    p->outbox_id = 0;
}

void sends_prep_free(struct send_prep *p)
{
    xpb_buf_free(&p->record);
}

void sends_free(xpb_daemon *d)
{
    xpb_timer_free(d->sm_timer);
    d->sm_timer = NULL;
    xpb_timer_free(d->commit_timer);
    d->commit_timer = NULL;
    xpb_timer_free(d->put_retry_timer);
    d->put_retry_timer = NULL;
    xpb_arena_free(d->send_arena);
    d->send_arena = NULL;
}

/* ---- after a restart ------------------------------------------------------------------ */

struct kept {
    struct kept *next;
    uint64_t id;
    char *request_id;
    uint8_t *record;
    size_t len;
};

static int collect(void *ud, const xpb_outbox_item *it)
{
    struct kept ***tail = ud, *k = calloc(1, sizeof *k);
    if (!k || !(k->record = malloc(it->xml_len ? it->xml_len : 1))) {
        free(k);
        return 1;
    }
    k->id = it->id;
    k->request_id = it->request_id ? strdup(it->request_id) : NULL;
    memcpy(k->record, it->xml, it->xml_len);
    k->len = it->xml_len;
    **tail = k;
    *tail = &k->next;
    return 0;
}

static void resend_one(struct account *a, const struct kept *k)
{
    xpb_daemon *d = a->d;
    xpb_stanza *st = NULL;
    char err[256] = "";
    if (!d->send_arena) d->send_arena = xpb_arena_new(0);
    if (!d->send_arena) return; /* out of memory: left in the outbox */
    xpb_arena_reset(d->send_arena); /* not d->arena: acked_stanza resets that one */
    int rc = xpb_stanza_unpack(d->send_arena, k->record, k->len, &d->limits, &st, err,
                               sizeof err);
    uint64_t h = 0;
    char sent_id[XPB_SESSION_ID_MAX] = ""; /* p.id's size: what it keeps */
    a->in_send = 1;
    a->early_set = a->early_sent = 0;
    if (rc == 0) rc = link_send(a, st, 1, &h, sent_id, sizeof sent_id, NULL); /* unpack checked */
    a->in_send = 0;
    if (rc != 0) { /* left in the outbox: the next start tries again */
        xpb_log(XPB_LOG_WARN, "session %s: outbox item %" PRIu64 " not sent again: %s",
                a->name, k->id, err[0] ? err : xpb_strerror(rc));
        return;
    }
    d->ctr.sends_resent++;
    d->ctr.stanzas[XPB_DIR_OUT][kind_index(st->kind)]++;
    /* A client that got no answer before the crash resends the same request
     * id: it gets the answer it would have got, and the stanza is not sent
     * a third time (docs/bus.md, "Idempotency"). An iq's answer is the
     * server's result, which is not kept: its resend runs again. */
    if (k->request_id && st->kind != XPB__V1__KIND__KIND_IQ)
        remember_sent(a, k->request_id, sent_id);
    struct send_prep p = {.outbox_id = k->id};
    snprintf(p.id, sizeof p.id, "%s", sent_id);
    p.record = (xpb_buf){.data = (char *)k->record, .len = k->len, .cap = k->len};
    const struct handle_ent *e = delivery_track(a, h, k->request_id, p.id, st->kind, &p, 1);
    if (st->has_receipt_request && st->receipt_request && st->to) delivery_want_receipt(a, p.id, st->to, k->request_id);
    delivery_after_send(a, h, e);
}

void sends_resend(struct account *a)
{
    xpb_daemon *d = a->d;
    if (!d->state) return;
    struct kept *head = NULL, **tail = &head;
    char err[768];
    if (d->state->outbox_each(d, a->name, collect, &tail, err, sizeof err) != 0)
        xpb_log(XPB_LOG_WARN, "session %s: outbox: %s", a->name, err);
    size_t n = 0;
    /* In NATS KV, ids go on from the wall clock (µs): a key an earlier owner
     * may still remove late (its queue drained after a partition) is never
     * reused by this one. */
    if (d->state->async && a->outbox_next < (uint64_t)time(NULL) * 1000000u)
        a->outbox_next = (uint64_t)time(NULL) * 1000000u;
    for (struct kept *k = head; k; k = k->next, n++)
        if (k->id > a->outbox_next) a->outbox_next = k->id;
    a->d->outbox_total += n - a->outbox_n;
    a->outbox_n = n;
    if (n)
        xpb_log(XPB_LOG_INFO, "session %s: %zu unacknowledged sends kept from the last run: "
                              "sending them again (same ids)",
                a->name, n);
    while (head) {
        struct kept *k = head;
        head = k->next;
        resend_one(a, k);
        free(k->request_id);
        free(k->record);
        free(k);
    }
}

void sends_account_free(struct account *a)
{
    drop_deferred(a);
    send_batch_drop_account(a);
    while (a->receipts) {
        struct receipt_wait *w = a->receipts;
        a->receipts = w->next;
        free(w->stanza_id);
        free(w->peer);
        free(w->request_id);
        free(w);
    }
    a->n_receipts = 0;
    a->d->outbox_total -= a->outbox_n; /* kept in the store; this process forgets them */
    a->outbox_n = 0;
}
