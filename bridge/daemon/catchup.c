/* Catch-up from the server's archive (docs/durability.md, "Catch-up"). After
 * a fresh bind (not a resumption) the account's archive, and each joined room
 * whose disco#info lists urn:xmpp:mam:2, is asked for what came after the
 * marker kept in the state directory, page by page (XEP-0313 v2 with
 * XEP-0059); every archived message becomes an ordinary message event with
 * from_archive and archive set. Stanza-ids (XEP-0359) de-duplicate archive
 * against live traffic both ways. Markers and seen ids are kept by the state
 * back end (d->state: the state directory, or NATS KV across bridges). A
 * stanza-id is recorded as seen, and a marker moved, only after the events
 * are stored: the bus writes the journal inside xpb_bus_flush (bus_journal.c,
 * j_flush_done; with the store thread it hands the append over, and the ids
 * follow it in submit order), so commit_pending flushes first and writes the
 * store after; the NATS back end holds its KV writes until JetStream
 * acknowledged the events (marks_nats.c). The pure parts are in mam.c
 * (xpb_mam.h). Runs on the loop thread. */
#define _DEFAULT_SOURCE /* strdup */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "daemon_internal.h"
#include "xpb_error.h"
#include "xpb_jid.h"
#include "xpb_log.h"
#include "xpb_mam.h"

/* The time-based fallback starts this much before the marker's stamp: the
 * stamp may come from our clock, the query runs on the server's; the overlap
 * is dropped as duplicates. */
#define CATCHUP_TIME_MARGIN_S 300
/* Live stanza-ids and markers are written at most this long after their event. */
#define CATCHUP_COMMIT_MS 200u
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define JID_MAX (3 * 1024 + 8)
#define CATCHUP_STREAM_MAX 256 /* a XEP-0198 stream id, NUL included (xpb_sm_state.id) */

enum cu_state {
    CU_IDLE,   /* nothing asked in this stream yet */
    CU_DISCO,  /* a room: disco#info asked, does it keep an archive? */
    CU_LATEST, /* first run: asking for the newest id only (no history taken) */
    CU_PAGING, /* asking page after page */
    CU_DONE,   /* caught up (synced) or stopped at the bound (not synced) */
    CU_OFF,    /* the archive is missing or refused: nothing more this stream */
};

/* One archive of one account: the account's own, or a room's. */
struct catchup {
    struct catchup *next;
    struct account *acc;
    char *archive; /* bare JID, normalised */
    int room;
    enum cu_state state;
    int synced;        /* caught up: live stanza-ids of this archive move the marker */
    int fallback_used; /* item-not-found once this run: asked by time instead */
    int refused_logged;
    char iq_id[64], queryid[64];
    char start[XPB_MAM_STAMP_LEN + 1]; /* time-based run: the form's start */
    unsigned pages, messages, dups, failed;
    char page_last[XPB_MAM_ID_MAX];         /* newest result id of this run */
    char page_stamp[XPB_MAM_STAMP_LEN + 1]; /* and its delay stamp */
    int64_t started_us;
};

struct catchup_daemon {
    unsigned page, max_pages, max_messages, timeout_ms;
    xpb_mam_pending pending;
    xpb_timer *timer;
    int timer_armed;
    xpb_arena *arena;
    uint64_t append_errors; /* the journal's append errors when last looked at */
    uint64_t events_dropped; /* and the bus's dropped events (NATS: never in the stream) */
    int store_error_logged;
};

static int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

/* ---- recording what was published ---------------------------------------------------- */

/* Flush the bus (the journal is written inside the flush), then record the
 * pending stanza-ids and markers in one transaction. When the journal failed
 * meanwhile (or, with NATS, the bus dropped events), ids are still recorded
 * (subscribers saw the events live) but no marker moves: the next run asks
 * for those messages again. */
static void on_seen_written(void *ud, const char *account, uint64_t skipped, int rc,
                            const char *err)
{
    (void)ud;
    (void)account;
    if (rc != 0)
        xpb_log(XPB_LOG_WARN, "catch-up: cannot record stanza-ids and markers: %s", err);
    else if (skipped)
        xpb_log(XPB_LOG_WARN, "catch-up: the journal could not be written; archive markers "
                              "stay where they were");
}

/* With the store thread: the flush hands the journal append to it, the ids
 * and markers follow in submit order (the store leaves the markers out when
 * an append failed meanwhile), and the wait makes them readable for
 * seen_before before the pending list is cleared. */
static void commit_threaded(xpb_daemon *d)
{
    struct catchup_daemon *cu = d->cu;
    if (d->bus) xpb_bus_flush(d->bus);
    xpb_store_seen_item it[XPB_MAM_PENDING_MAX];
    for (size_t i = 0; i < cu->pending.n; i++) {
        const xpb_mam_pending_ent *e = &cu->pending.ent[i];
        it[i] = (xpb_store_seen_item){.account = e->account,
                                      .archive = e->archive,
                                      .stanza_id = e->stanza_id,
                                      .marker = e->marker,
                                      .stream = e->stream};
    }
    if (xpb_store_submit_seen(d->store, it, cu->pending.n, now_us(), on_seen_written, d) != 0)
        xpb_log(XPB_LOG_WARN, "catch-up: cannot record stanza-ids and markers: out of memory");
    xpb_store_wait(d->store);
    xpb_mam_pending_clear(&cu->pending);
    xpb_timer_stop(cu->timer);
    cu->timer_armed = 0;
}

static void commit_pending(xpb_daemon *d)
{
    struct catchup_daemon *cu = d->cu;
    if (!cu || cu->pending.n == 0) return;
    if (state_threaded(d)) { /* the local store's thread (NATS: d->state's KV) */
        commit_threaded(d);
        return;
    }
    int journal_ok = 1;
    uint64_t upto = 0;
    if (d->bus) {
        xpb_bus_flush(d->bus);
        xpb_bus_journal_stats js;
        xpb_bus_journal_get_stats(d->bus, &js);
        journal_ok = js.append_errors == cu->append_errors;
        cu->append_errors = js.append_errors;
        xpb_bus_stats bs;
        xpb_bus_get_stats(d->bus, &bs);
        if (d->state->async) journal_ok &= bs.events_dropped == cu->events_dropped;
        cu->events_dropped = bs.events_dropped;
        upto = bs.last_seq;
    }
    xpb_store_seen_item it[XPB_MAM_PENDING_MAX];
    for (size_t i = 0; i < cu->pending.n; i++) {
        const xpb_mam_pending_ent *e = &cu->pending.ent[i];
        it[i] = (xpb_store_seen_item){.account = e->account,
                                      .archive = e->archive,
                                      .stanza_id = e->stanza_id,
                                      .marker = journal_ok ? e->marker : NULL,
                                      .stream = e->stream};
    }
    char err[512];
    int64_t t0 = now_us();
    if (d->state->seen_commit(d, it, cu->pending.n, upto, t0, err, sizeof err) != 0)
        xpb_log(XPB_LOG_WARN, "catch-up: cannot record stanza-ids and markers: %s", err);
    else if (!journal_ok)
        xpb_log(XPB_LOG_WARN, "catch-up: the journal could not be written (or the bus dropped "
                              "events); archive markers stay where they were");
    xpb_log(XPB_LOG_DEBUG, "catch-up: %zu stanza-ids and markers recorded in %.1f ms",
            cu->pending.n, (double)(now_us() - t0) / 1e3);
    xpb_mam_pending_clear(&cu->pending);
    xpb_timer_stop(cu->timer);
    cu->timer_armed = 0;
}

static void on_commit_timer(void *arg)
{
    xpb_daemon *d = arg;
    d->cu->timer_armed = 0;
    commit_pending(d);
}

/* The stream a marker written now is caught up in: the session's XEP-0198
 * id, kept while it stays the same (NULL: none, the marker says ""). */
static const char *stream_now(struct account *a)
{
    xpb_session_sm sm;
    if (link_sm(a, &sm) != 0 || !sm.id[0]) return NULL;
    if (!a->cu_stream || strcmp(a->cu_stream, sm.id) != 0) {
        free(a->cu_stream);
        a->cu_stream = strdup(sm.id);
    }
    return a->cu_stream;
}

/* A run that just caught up reads the stream id again: a fresh bind since
 * the last marker has a new one. */
static void a_stream_fresh(struct account *a)
{
    free(a->cu_stream);
    a->cu_stream = NULL;
    stream_now(a);
}

/* Remember stanza_id (may be NULL) and/or a new marker of archive; synced:
 * the archive is caught up, the marker records the stream it is in. */
static void remember(struct account *a, const char *archive, const char *stanza_id,
                     const char *marker, int synced)
{
    struct catchup_daemon *cu = a->d->cu;
    const char *stream = marker && synced ? (a->cu_stream ? a->cu_stream : stream_now(a)) : NULL;
    int rc = xpb_mam_pending_add(&cu->pending, a->name, archive, stanza_id, marker, stream);
    if (rc == XPB_ETOOBIG) { /* XPB_MAM_PENDING_MAX reached: write them now */
        commit_pending(a->d);
        rc = xpb_mam_pending_add(&cu->pending, a->name, archive, stanza_id, marker, stream);
    }
    if (rc)
        xpb_log(XPB_LOG_WARN, "catch-up %s: cannot remember stanza-id: %s", archive,
                xpb_strerror(rc));
    if (!cu->timer_armed) {
        cu->timer_armed = 1;
        xpb_timer_start(cu->timer, CATCHUP_COMMIT_MS);
    }
}

/* 1 when stanza_id of archive was published before (pending or recorded). */
static int seen_before(struct account *a, const char *archive, const char *stanza_id)
{
    struct catchup_daemon *cu = a->d->cu;
    if (xpb_mam_pending_has(&cu->pending, a->name, archive, stanza_id)) return 1;
    char err[512];
    int rc = a->d->state->seen_has(a->d, a->name, archive, stanza_id, err, sizeof err);
    if (rc >= 0) return rc;
    if (!cu->store_error_logged++) /* publishing twice beats losing it */
        xpb_log(XPB_LOG_WARN,
                "catch-up: cannot read the seen stanza-ids (%s); de-duplication "
                "is off until the store answers",
                err);
    return 0;
}

static void marker_text(const char *stamp, const char *id, char *out, size_t len)
{
    xpb_mam_marker m;
    memset(&m, 0, sizeof m);
    if (stamp && stamp[0])
        snprintf(m.stamp, sizeof m.stamp, "%s", stamp);
    else
        xpb_mam_stamp(now_us() / 1000000, m.stamp);
    snprintf(m.id, sizeof m.id, "%s", id);
    if (xpb_mam_marker_format(&m, out, len) != 0) out[0] = '\0';
}

/* ---- the runs --------------------------------------------------------------------------- */

static struct catchup *find_archive(struct account *a, const char *archive)
{
    for (struct catchup *c = a->cu; c; c = c->next)
        if (strcmp(c->archive, archive) == 0) return c;
    return NULL;
}

static struct catchup *get_archive(struct account *a, const char *archive, int room)
{
    struct catchup *c = find_archive(a, archive);
    if (c) return c;
    if (!(c = calloc(1, sizeof *c)) || !(c->archive = strdup(archive))) {
        free(c);
        return NULL;
    }
    c->acc = a;
    c->room = room;
    c->next = a->cu;
    a->cu = c;
    return c;
}

/* Logged at WARN the first time only (then DEBUG): a server without MAM would
 * otherwise say so at every reconnect. The session is never stopped for it. */
static void refuse(struct catchup *c, const char *why)
{
    struct account *a = c->acc;
    a->d->ctr.catchup_refused++;
    xpb_log(c->refused_logged++ ? XPB_LOG_DEBUG : XPB_LOG_WARN,
            "catch-up %s of %s: %s; no catch-up, the session goes on (XEP-0313)", c->archive,
            a->name, why);
    c->state = CU_OFF;
    c->synced = 0;
}

static int send_tracked(struct catchup *c, xpb_stanza *st, const char *mam_qid)
{
    struct account *a = c->acc;
    if (send_own(a, st) != 0) return XPB_ENOTCONN;
    struct pending_iq *p = pending_add(a, IQ_CATCHUP, c->iq_id, c->room ? c->archive : NULL, NULL,
                                       a->d->cu->timeout_ms);
    if (p && mam_qid && !(p->mam_qid = strdup(mam_qid))) {
        pending_free(a->d, p);
        p = NULL;
    }
    return p ? 0 : XPB_ENOMEM;
}

/* One page: after the marker (or the last page), or by time, or the newest. */
static void send_page(struct catchup *c, const char *after, int last_page)
{
    xpb_daemon *d = c->acc->d;
    struct catchup_daemon *cu = d->cu;
    uint64_t n = ++d->iq_counter;
    snprintf(c->iq_id, sizeof c->iq_id, "xpb-mam-%" PRIu64, n);
    snprintf(c->queryid, sizeof c->queryid, "xpbcu-%" PRIu64 "-%lx", n,
             (long)(now_us() & 0xffffff));
    xpb_mam_query q = {.id = c->iq_id,
                       .to = c->room ? c->archive : NULL,
                       .queryid = c->queryid,
                       .max = last_page ? 1 : cu->page,
                       .after = after,
                       .start = c->start[0] ? c->start : NULL,
                       .last_page = last_page};
    xpb_arena_reset(cu->arena);
    xpb_stanza *st;
    int rc = xpb_mam_build_query(cu->arena, &q, &st);
    if (rc == 0) rc = send_tracked(c, st, c->queryid);
    if (rc) {
        c->state = CU_IDLE; /* the stream went away; the next fresh bind starts again */
        xpb_log(XPB_LOG_INFO, "catch-up %s of %s: query not sent: %s", c->archive, c->acc->name,
                xpb_strerror(rc));
    }
}

/* Start a run of archive c from its marker. */
static void start_archive(struct catchup *c)
{
    struct account *a = c->acc;
    xpb_daemon *d = a->d;
    char text[XPB_MAM_STAMP_LEN + XPB_MAM_ID_MAX + 2], err[512];
    xpb_mam_marker m;
    c->pages = c->messages = c->dups = c->failed = 0;
    c->fallback_used = 0;
    c->start[0] = c->page_last[0] = c->page_stamp[0] = '\0';
    c->started_us = now_us();
    c->synced = 0;
    d->ctr.catchup_runs++;
    char was[CATCHUP_STREAM_MAX] = "";
    commit_pending(d); /* live markers still pending are newer than the stored one */
    int rc = d->state->marker_get(d, a->name, c->archive, text, sizeof text, was, sizeof was, err,
                                  sizeof err);
    if (rc < 0) {
        refuse(c, err);
        return;
    }
    /* Not caught up until this run ends: a restart that resumes this stream
     * meanwhile must not take the marker for caught up (resume_archive). */
    if (rc == 0 && was[0]) remember(a, c->archive, NULL, text, 0);
    if (rc == 1 || xpb_mam_marker_parse(text, &m) != 0 || (!m.id[0] && !m.stamp[0])) {
        c->state = CU_LATEST; /* first run: learn the newest id, take no history */
        send_page(c, NULL, 1);
        return;
    }
    c->state = CU_PAGING;
    if (!m.id[0]) { /* the archive was empty on the first run: everything since then */
        int64_t t = xpb_mam_stamp_parse(m.stamp) - CATCHUP_TIME_MARGIN_S;
        xpb_mam_stamp(t, c->start);
    }
    xpb_log(XPB_LOG_INFO, "catch-up %s of %s: asking for what came after %s", c->archive, a->name,
            m.id[0] ? m.id : c->start);
    send_page(c, m.id[0] ? m.id : NULL, 0);
}

static void start_disco(struct catchup *c)
{
    struct account *a = c->acc;
    struct catchup_daemon *cu = a->d->cu;
    snprintf(c->iq_id, sizeof c->iq_id, "xpb-mamdisco-%" PRIu64, ++a->d->iq_counter);
    xpb_arena_reset(cu->arena);
    Xpb__V1__Element *q = xpb_arena_calloc(cu->arena, sizeof *q);
    Xpb__V1__Element **ext = xpb_arena_calloc(cu->arena, sizeof *ext);
    if (!q || !ext) return;
    xpb__v1__element__init(q);
    q->ns = NS_DISCO_INFO;
    q->name = "query";
    ext[0] = q;
    xpb_stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = st.has_type = 1;
    st.kind = XPB__V1__KIND__KIND_IQ;
    st.type = XPB__V1__STANZA_TYPE__TYPE_GET;
    st.id = c->iq_id;
    st.to = c->archive;
    st.n_extension = 1;
    st.extension = ext;
    c->state = CU_DISCO;
    if (send_tracked(c, &st, NULL) != 0) c->state = CU_IDLE;
}

/* ---- hooks ------------------------------------------------------------------------------ */

int catchup_init(xpb_daemon *d, const xpb_config *cfg)
{
    if (!d->state || !d->state->marker_get) return 0; /* no marker can be kept */
    if (!cfg->mam_catchup) {
        xpb_log(XPB_LOG_INFO, "catch-up: off (mam.catchup = false)");
        return 0;
    }
    struct catchup_daemon *cu = calloc(1, sizeof *cu);
    if (!cu) return XPB_ENOMEM;
    cu->page = cfg->mam_page_size;
    cu->max_pages = cfg->mam_max_pages;
    cu->max_messages = cfg->mam_max_messages;
    cu->timeout_ms = cfg->mam_timeout_ms;
    cu->arena = xpb_arena_new(0);
    if (!cu->arena || xpb_timer_new(d->loop, on_commit_timer, d, &cu->timer) != 0) {
        xpb_arena_free(cu->arena);
        free(cu);
        return XPB_ENOMEM;
    }
    d->cu = cu;
    return 0;
}

void catchup_commit(xpb_daemon *d)
{
    commit_pending(d);
}

void catchup_fini(xpb_daemon *d)
{
    struct catchup_daemon *cu = d->cu;
    if (!cu) return;
    commit_pending(d);
    xpb_mam_pending_clear(&cu->pending);
    xpb_timer_free(cu->timer);
    xpb_arena_free(cu->arena);
    free(cu);
    d->cu = NULL;
}

void catchup_account_free(struct account *a)
{
    while (a->cu) {
        struct catchup *c = a->cu;
        a->cu = c->next;
        free(c->archive);
        free(c);
    }
    free(a->cu_stream);
    a->cu_stream = NULL;
}

void catchup_online(struct account *a)
{
    if (!a->d->cu) return;
    free(a->cu_stream); /* a fresh bind: a new stream */
    a->cu_stream = NULL;
    for (struct catchup *c = a->cu; c; c = c->next) { /* rooms start again once rejoined */
        c->state = CU_IDLE;
        c->synced = 0;
    }
    struct catchup *c = get_archive(a, a->name, 0);
    if (c) start_archive(c);
}

/* archive was caught up in stream when this process's predecessor wrote its
 * marker: the resumed stream lost nothing since (XEP-0198 §5), so it is
 * caught up now, and live stanza-ids move its marker again. */
static void resume_archive(struct account *a, const char *archive, int room, const char *stream)
{
    xpb_daemon *d = a->d;
    struct catchup *c = find_archive(a, archive);
    if (c && c->state != CU_IDLE) return; /* this process knows better (a run, or done) */
    char text[XPB_MAM_STAMP_LEN + XPB_MAM_ID_MAX + 2], was[CATCHUP_STREAM_MAX], err[512];
    int rc = d->state->marker_get(d, a->name, archive, text, sizeof text, was, sizeof was, err,
                                  sizeof err);
    if (rc != 0 || strcmp(was, stream) != 0) {
        if (rc < 0) xpb_log(XPB_LOG_WARN, "catch-up %s of %s: %s", archive, a->name, err);
        return; /* not caught up then: the next fresh bind asks the archive */
    }
    if (!(c = get_archive(a, archive, room))) return;
    c->state = CU_DONE;
    c->synced = 1;
    xpb_log(XPB_LOG_INFO,
            "catch-up %s of %s: caught up in the resumed stream before the restart; its "
            "marker moves with live messages again",
            archive, a->name);
}

void catchup_resumed(struct account *a)
{
    if (!a->d->cu) return;
    const char *stream = stream_now(a);
    if (!stream) return;
    resume_archive(a, a->name, 0, stream);
    for (struct room *r = a->rooms; r; r = r->next) {
        if (!r->norm) xpb_jid_normalize(r->room, strlen(r->room), &r->norm, NULL, 0);
        if (r->norm) resume_archive(a, r->norm, 1, stream);
    }
}

/* XEP-0045 §7.2.2: our own presence (110) from a room we joined: the join is
 * complete; ask the room whether it keeps an archive (XEP-0313 §7). */
void catchup_presence(struct account *a, const xpb_node *el, uint32_t trust)
{
    if (!a->d->cu || !(trust & XPB_TRUST_MUC_ROOM_JOINED) || xpb_node_attr(el, "", "type")) return;
    const xpb_node *x = xpb_node_child(el, "http://jabber.org/protocol/muc#user", "x");
    int self = 0;
    for (const xpb_node *s = x ? x->children : NULL; s; s = s->next) {
        const xpb_attr *code = s->kind == XPB_NODE_ELEMENT ? xpb_node_attr(s, "", "code") : NULL;
        self |= code && strcmp(s->name, "status") == 0 && strcmp(code->value, "110") == 0;
    }
    const xpb_attr *from = xpb_node_attr(el, "", "from");
    if (!self || !from) return;
    char room[JID_MAX];
    const char *slash = strchr(from->value, '/');
    size_t n = slash ? (size_t)(slash - from->value) : from->value_len;
    if (n >= sizeof room) return;
    memcpy(room, from->value, n);
    room[n] = '\0';
    struct catchup *c = get_archive(a, room, 1);
    if (c && c->state == CU_IDLE) start_disco(c);
}

/* XEP-0203 <delay/> of the result as a record (stamp, from, text). */
static Xpb__V1__Delay *delay_of(xpb_arena *ar, const xpb_node *delay)
{
    const xpb_attr *stamp = delay ? xpb_node_attr(delay, "", "stamp") : NULL;
    if (!stamp) return NULL;
    Xpb__V1__Delay *dl = xpb_arena_calloc(ar, sizeof *dl);
    if (!dl) return NULL;
    xpb__v1__delay__init(dl);
    dl->stamp = (char *)stamp->value; /* the node outlives the publish */
    const xpb_attr *from = xpb_node_attr(delay, "", "from");
    dl->from = from ? (char *)from->value : NULL;
    return dl;
}

/* An archived message: the forwarded <message/> itself (mapped on its own, so
 * however a server orders or decorates the wrapper, the message comes out),
 * with the result's delay and the archive's stanza-id, published as an
 * ordinary message event. 0, or an error when it cannot be mapped. */
static int publish_archived(struct catchup *c, const xpb_node *inner, const xpb_node *delay,
                            const char *rid, uint32_t trust)
{
    xpb_daemon *d = c->acc->d;
    xpb_arena *ar = d->cu->arena;
    xpb_arena_reset(ar);
    xpb_stanza *in = NULL; /* plain: every id and JID as the text it was */
    int rc = xpb_stanza_from_xml_plain(ar, inner, &in);
    if (rc) return rc;
    if (!in->delay) in->delay = delay_of(ar, delay); /* XEP-0313 §4.2: when it was archived */
    int has_sid = 0;
    for (size_t i = 0; i < in->n_stanza_id; i++)
        has_sid |= in->stanza_id[i]->by && strcmp(in->stanza_id[i]->by, c->archive) == 0;
    Xpb__V1__StanzaId *sid = xpb_arena_calloc(ar, sizeof *sid);
    Xpb__V1__StanzaId **ids = xpb_arena_calloc(ar, (in->n_stanza_id + 1) * sizeof *ids);
    if (!has_sid && sid && ids) { /* XEP-0313 §5.1.2: the result id is the stanza-id */
        xpb__v1__stanza_id__init(sid);
        sid->id = (char *)rid;
        sid->by = c->archive;
        if (in->n_stanza_id) memcpy(ids, in->stanza_id, in->n_stanza_id * sizeof *ids);
        ids[in->n_stanza_id++] = sid;
        in->stanza_id = ids;
    }
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    ev.stanza = in;
    ev.has_trust = ev.has_from_archive = 1;
    ev.trust = trust;
    ev.from_archive = 1;
    ev.archive = c->archive;
    return d->bus ? xpb_bus_publish(d->bus, xpb_bus_stanza_kind(in->kind), c->acc->name, &ev) : 0;
}

static struct catchup *by_queryid(struct account *a, const char *qid)
{
    for (struct catchup *c = a->cu; c && qid; c = c->next)
        if ((c->state == CU_LATEST || c->state == CU_PAGING) && strcmp(c->queryid, qid) == 0)
            return c;
    return NULL;
}

static void on_result(struct catchup *c, const xpb_node *el, uint32_t trust)
{
    const char *qid, *rid;
    const xpb_node *delay;
    const xpb_node *inner = xpb_mam_result(el, &qid, &rid, &delay);
    if (!inner || !rid || !rid[0] || strlen(rid) >= XPB_MAM_ID_MAX) return;
    const xpb_attr *stamp = delay ? xpb_node_attr(delay, "", "stamp") : NULL;
    snprintf(c->page_last, sizeof c->page_last, "%s", rid);
    int64_t t = stamp ? xpb_mam_stamp_parse(stamp->value) : -1;
    c->page_stamp[0] = '\0';
    if (t >= 0) xpb_mam_stamp(t, c->page_stamp);
    if (c->state == CU_LATEST) return; /* first run: its id only */
    struct account *a = c->acc;
    c->messages++;
    if (seen_before(a, c->archive, rid)) {
        c->dups++;
        a->d->ctr.catchup_duplicates++;
        return;
    }
    int rc = publish_archived(c, inner, delay, rid, trust);
    if (rc) { /* the marker moves past it all the same: asking again would not help */
        xpb_log(c->failed++ ? XPB_LOG_DEBUG : XPB_LOG_WARN,
                "catch-up %s of %s: archived message %s not published: %s", c->archive, a->name,
                rid, xpb_strerror(rc));
        return;
    }
    remember(a, c->archive, rid, NULL, 0);
    a->d->ctr.catchup_messages++;
}

/* A result of an earlier catch-up query of ours (the stream was replaced
 * meanwhile): its pending iq is still there, its run is not. */
static int stale_query(struct account *a, const char *qid)
{
    for (const struct pending_iq *p = a->d->iqs; p && qid; p = p->next)
        if (p->acc == a && p->kind == IQ_CATCHUP && p->mam_qid && strcmp(p->mam_qid, qid) == 0)
            return 1;
    return 0;
}

/* The message whose stanza-id counts: el itself, or for a carbon from our own
 * account (XEP-0280 §11, checked by the trust rules) the forwarded message,
 * which carries our archive's stanza-id (the same message as the archive's). */
static const xpb_node *dedup_subject(const xpb_node *el, uint32_t trust)
{
    if (!(trust & XPB_TRUST_CARBON_OWN_ACCOUNT)) return el;
    const xpb_node *w = xpb_node_child(el, "urn:xmpp:carbons:2", "received");
    if (!w) w = xpb_node_child(el, "urn:xmpp:carbons:2", "sent");
    const xpb_node *fwd = w ? xpb_node_child(w, "urn:xmpp:forward:0", "forwarded") : NULL;
    const xpb_node *msg = fwd ? xpb_node_child(fwd, "jabber:client", "message") : NULL;
    return msg ? msg : el;
}

int catchup_inbound(struct account *a, const xpb_node *el, uint32_t trust)
{
    if (!a->d->cu || strcmp(el->name, "message") != 0) return 0;
    if (trust & XPB_TRUST_MAM_RESULT_OURS) {
        const xpb_node *res = xpb_node_child(el, XPB_MAM_NS, "result");
        const xpb_attr *qid = res ? xpb_node_attr(res, "", "queryid") : NULL;
        struct catchup *c = by_queryid(a, qid ? qid->value : NULL);
        if (c) on_result(c, el, trust);
        /* else a backend's own query (theirs to read), or a stale one of ours */
        return c || stale_query(a, qid ? qid->value : NULL);
    }
    /* XEP-0359 §5: a room's stanza-id is by the room, ours by our bare JID. */
    const xpb_attr *type = xpb_node_attr(el, "", "type"), *from = xpb_node_attr(el, "", "from");
    char room[JID_MAX];
    const char *archive = a->name;
    if (type && strcmp(type->value, "groupchat") == 0 && from &&
        (trust & XPB_TRUST_MUC_ROOM_JOINED)) {
        const char *slash = strchr(from->value, '/');
        size_t n = slash ? (size_t)(slash - from->value) : from->value_len;
        if (n >= sizeof room) return 0;
        memcpy(room, from->value, n);
        room[n] = '\0';
        archive = room;
    }
    const char *id = xpb_mam_stanza_id(dedup_subject(el, trust), archive);
    if (!id || strlen(id) >= XPB_MAM_ID_MAX) return 0;
    if (seen_before(a, archive, id)) {
        a->d->ctr.catchup_duplicates++;
        xpb_log(XPB_LOG_DEBUG,
                "session %s: dropped message %s of %s: already published "
                "(stanza-id, XEP-0359)",
                a->name, id, archive);
        return 1;
    }
    const struct catchup *c = find_archive(a, archive);
    char marker[XPB_MAM_STAMP_LEN + XPB_MAM_ID_MAX + 2] = "";
    if (c && c->state == CU_DONE && c->synced) marker_text(NULL, id, marker, sizeof marker);
    remember(a, archive, id, marker[0] ? marker : NULL, 1);
    return 0;
}

/* ---- responses -------------------------------------------------------------------------- */

static void finished(struct catchup *c, int synced, const char *how)
{
    c->state = CU_DONE;
    c->synced = synced;
    xpb_log(XPB_LOG_INFO,
            "catch-up %s of %s %s: %u archived messages in %u pages (%u duplicates dropped, "
            "%u not published) in %.3f s",
            c->archive, c->acc->name, how, c->messages, c->pages, c->dups, c->failed,
            (double)(now_us() - c->started_us) / 1e6);
}

static void on_latest(struct catchup *c)
{
    char marker[XPB_MAM_STAMP_LEN + XPB_MAM_ID_MAX + 2];
    marker_text(c->page_stamp, c->page_last, marker, sizeof marker);
    a_stream_fresh(c->acc);
    remember(c->acc, c->archive, NULL, marker, 1);
    commit_pending(c->acc->d);
    xpb_log(XPB_LOG_INFO, "catch-up %s of %s: first run, no history taken; marker %s", c->archive,
            c->acc->name, marker);
    finished(c, 1, "started");
}

static void on_page(struct catchup *c, const xpb_mam_fin *fin)
{
    struct catchup_daemon *cu = c->acc->d->cu;
    c->pages++;
    const char *last = fin->last[0] ? fin->last : c->page_last;
    int done = fin->complete || !fin->last[0]; /* caught up with this page */
    if (last[0]) {
        char marker[XPB_MAM_STAMP_LEN + XPB_MAM_ID_MAX + 2];
        marker_text(c->page_stamp, last, marker, sizeof marker);
        if (done) a_stream_fresh(c->acc);
        remember(c->acc, c->archive, NULL, marker, done);
    }
    commit_pending(c->acc->d); /* the page is in the journal before the next is asked */
    if (done) {
        finished(c, 1, "done");
    } else if (c->pages >= cu->max_pages || c->messages >= cu->max_messages) {
        c->acc->d->ctr.catchup_bounded++;
        xpb_log(XPB_LOG_WARN,
                "catch-up %s of %s stopped at its bound (mam.max_pages %u, mam.max_messages "
                "%u); the rest is fetched after the next fresh bind",
                c->archive, c->acc->name, cu->max_pages, cu->max_messages);
        finished(c, 0, "bounded");
    } else {
        char after[XPB_MAM_ID_MAX];
        snprintf(after, sizeof after, "%s", fin->last);
        send_page(c, after, 0);
    }
}

/* XEP-0313 §4.1.1 / XEP-0059 §2.1: an unknown <after/> id is item-not-found;
 * ask by time from the marker's stamp instead, once. */
static void on_error(struct catchup *c, const xpb_mam_fin *fin)
{
    char why[128];
    if (strcmp(fin->condition, "item-not-found") == 0 && c->state == CU_PAGING &&
        !c->fallback_used) {
        char text[XPB_MAM_STAMP_LEN + XPB_MAM_ID_MAX + 2], err[256];
        xpb_mam_marker m;
        c->fallback_used = 1;
        xpb_daemon *d = c->acc->d;
        if (d->state->marker_get(d, c->acc->name, c->archive, text, sizeof text, NULL, 0, err,
                                 sizeof err) == 0 &&
            xpb_mam_marker_parse(text, &m) == 0 && m.stamp[0]) {
            xpb_mam_stamp(xpb_mam_stamp_parse(m.stamp) - CATCHUP_TIME_MARGIN_S, c->start);
            xpb_log(XPB_LOG_WARN,
                    "catch-up %s of %s: the archive no longer knows marker %s (item-not-found); "
                    "asking by time from %s instead",
                    c->archive, c->acc->name, m.id, c->start);
            send_page(c, NULL, 0);
            return;
        }
        xpb_log(XPB_LOG_WARN,
                "catch-up %s of %s: the archive no longer knows the marker and it "
                "has no time; starting over without history",
                c->archive, c->acc->name);
        c->state = CU_LATEST;
        send_page(c, NULL, 1);
        return;
    }
    snprintf(why, sizeof why, "the archive refused the query (%s)", fin->condition);
    refuse(c, why);
}

/* XEP-0030 §3.1 / XEP-0313 §7: does the room list urn:xmpp:mam:2? */
static void on_disco(struct catchup *c, const xpb_node *el)
{
    const xpb_attr *type = xpb_node_attr(el, "", "type");
    const xpb_node *q = xpb_node_child(el, NS_DISCO_INFO, "query");
    for (const xpb_node *f = q && type && strcmp(type->value, "result") == 0 ? q->children : NULL;
         f; f = f->next) {
        const xpb_attr *var = f->kind == XPB_NODE_ELEMENT ? xpb_node_attr(f, "", "var") : NULL;
        if (var && strcmp(f->name, "feature") == 0 && strcmp(var->value, XPB_MAM_NS) == 0) {
            start_archive(c);
            return;
        }
    }
    c->state = CU_OFF;
    xpb_log(c->refused_logged++ ? XPB_LOG_DEBUG : XPB_LOG_INFO,
            "catch-up %s of %s: the room keeps no archive (no %s in its disco#info); no catch-up",
            c->archive, c->acc->name, XPB_MAM_NS);
}

void catchup_iq(struct pending_iq *p, const xpb_node *el)
{
    struct catchup *c = NULL;
    for (c = p->acc->cu; c && strcmp(c->iq_id, p->id) != 0; c = c->next) {
    }
    if (!c || (c->state != CU_DISCO && c->state != CU_LATEST && c->state != CU_PAGING)) return;
    char why[96];
    if (!el) {
        snprintf(why, sizeof why, "no answer within %u ms (mam.timeout_ms)", p->timeout_ms);
        refuse(c, why);
        return;
    }
    if (c->state == CU_DISCO) {
        on_disco(c, el);
        return;
    }
    xpb_mam_fin fin;
    if (xpb_mam_parse_fin(el, &fin) != 0)
        refuse(c, "the answer is neither an error nor a result with <fin/> (XEP-0313 §4.3)");
    else if (fin.is_error)
        on_error(c, &fin);
    else if (c->state == CU_LATEST)
        on_latest(c);
    else
        on_page(c, &fin);
}
