/* The daemon core: one account per bridged JID, each with its session on the
 * loop it is given; session events become bus events, bus requests become
 * stanzas (requests.c). Every inbound stanza passes the trust rules
 * (stanza_trust.c) first: it is published with what they verified, dropped,
 * or answered. Here too: new/free, clean shutdown, the counters /metrics
 * shows, and the one table naming session states. Runs on the loop thread. */
#define _DEFAULT_SOURCE /* strdup */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon_internal.h"
#include "xpb_error.h"
#include "xpb_jid.h"

/* ---- small helpers ------------------------------------------------------------ */

char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

int kind_index(Xpb__V1__Kind k)
{
    switch (k) {
    case XPB__V1__KIND__KIND_MESSAGE: return XPB_KIND_MESSAGE;
    case XPB__V1__KIND__KIND_PRESENCE: return XPB_KIND_PRESENCE;
    case XPB__V1__KIND__KIND_IQ: return XPB_KIND_IQ;
    default: return XPB_KIND_OTHER;
    }
}

static int kind_of_name(const char *name)
{
    return strcmp(name, "message") == 0    ? XPB_KIND_MESSAGE
           : strcmp(name, "presence") == 0 ? XPB_KIND_PRESENCE
           : strcmp(name, "iq") == 0       ? XPB_KIND_IQ
                                           : XPB_KIND_OTHER;
}

struct account *find_account(xpb_daemon *d, const char *name)
{
    struct account *a = xpb_strmap_get(&d->by_name, name);
    return a && !a->dead ? a : NULL;
}

/* The session points at its account (account_start); only the events a
 * session reports while it is being added come before that pointer. */
static struct account *account_of(xpb_daemon *d, xpb_loop_session *ls)
{
    struct account *a = xpb_loop_session_ud(ls);
    return a ? a : find_account(d, xpb_loop_session_name(ls));
}

/* The account a request names: its bare JID, or the full JID our own
 * session is bound to (as the log and SessionInfo.jid show it). Any other
 * full JID is refused with a sentence saying to use the bare JID. */
/* Accounts are named by their normalised bare JID (RFC 7622 §3), so
 * BOT@Example.COM is bot@example.com (docs/configuration.md). */
static struct account *find_normalised(xpb_daemon *d, const char *name)
{
    char *norm = NULL, jerr[128];
    if (xpb_jid_normalize(name, strlen(name), &norm, jerr, sizeof jerr) != 0) return NULL;
    struct account *a = strcmp(norm, name) != 0 ? find_account(d, norm) : NULL;
    free(norm);
    return a;
}

struct account *request_account(xpb_daemon *d, const char *name, char *why, size_t whylen)
{
    struct account *a = find_account(d, name);
    if (!a) a = find_normalised(d, name);
    const char *slash = strchr(name, '/');
    if (a || !slash) return a;
    for (struct account *b = d->accounts; b; b = b->next)
        if (!b->dead && b->full_jid && strcmp(b->full_jid, name) == 0) return b;
    snprintf(why, whylen,
             "account %s is a full JID that no session is bound to; name the account by its "
             "bare JID %.*s",
             name, (int)(slash - name), name);
    return NULL;
}

/* A compact id (docs/mapping.md §7) back to its canonical UUID text. */
void expand_id_uuid(xpb_stanza *st, char buf[37])
{
    if (st->id || !st->has_id_uuid || st->id_uuid.len != 16) return;
    const uint8_t *u = st->id_uuid.data;
    snprintf(buf, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
             u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
             u[15]);
    st->id = buf;
    st->has_id_uuid = 0;
}

/* ---- publishing ------------------------------------------------------------------- */

void publish_event(xpb_daemon *d, const char *kind, const char *account, Xpb__V1__Event *ev)
{
    if (!d->bus) return;
    int rc = xpb_bus_publish(d->bus, kind, account, ev);
    if (rc != 0) xpb_log(XPB_LOG_WARN, "publish %s/%s/ failed: %s", kind, account, xpb_strerror(rc));
}

static void publish_state(struct account *a, pub_state st, const char *reason, const char *jid)
{
    Xpb__V1__SessionState ss = XPB__V1__SESSION_STATE__INIT;
    ss.has_state = 1;
    ss.state = st;
    ss.reason = (char *)reason;
    ss.jid = (char *)jid;
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STATE;
    ev.state = &ss;
    publish_event(a->d, "state", a->name, &ev);
}

/* One allocation per tracked stanza: the entry, then its record and its
 * two ids (four mallocs and four frees per send before). */
struct handle_ent *track_handle_record(struct account *a, uint64_t h, const char *request_id,
                                       const char *sid, const uint8_t *record, size_t record_len)
{
    size_t rl = request_id ? strlen(request_id) + 1 : 0, sl = sid ? strlen(sid) + 1 : 0;
    if (record_len > SIZE_MAX - sizeof(struct handle_ent) - rl - sl) return NULL;
    struct handle_ent *e = malloc(sizeof *e + record_len + rl + sl);
    if (!e) return NULL;
    *e = (struct handle_ent){.handle = h};
    char *p = (char *)(e + 1);
    if (record && record_len) {
        e->record = (uint8_t *)p;
        e->record_len = record_len;
        memcpy(p, record, record_len);
        p += record_len;
    }
    if (request_id) {
        e->request_id = memcpy(p, request_id, rl);
        p += rl;
    }
    if (sid) e->stanza_id = memcpy(p, sid, sl);
    if (!a->h_head) a->h_unordered = 0; /* a new list starts ordered */
    else if (h <= a->h_tail->handle) a->h_unordered = 1;
    if (a->h_tail) a->h_tail->next = e;
    else a->h_head = e;
    a->h_tail = e;
    return e;
}

struct handle_ent *track_handle(struct account *a, uint64_t h, const char *request_id,
                                const char *sid)
{
    return track_handle_record(a, h, request_id, sid, NULL, 0);
}

void free_handle(struct handle_ent *e)
{
    free(e); /* its strings and record are in the same block */
}

/* A session numbers its stanzas upwards, so the list is normally ordered by
 * handle; then a handle past the tail is not tracked (yet): the report of
 * the stanza xpb_session_send is writing, which used to walk the whole list
 * of unacknowledged ones, once per send. */
static int beyond_tail(const struct account *a, uint64_t h)
{
    return !a->h_tail || (!a->h_unordered && h > a->h_tail->handle);
}

/* SENT reports come in send order, for the stanza after the one the last
 * search found, which may be thousands of unacknowledged entries from the
 * head: the search starts at that one (h_find), then tries the part before
 * it, so an out-of-order report is still found. In an ordered list each
 * walk also stops at the first larger handle. */
struct handle_ent *find_handle(struct account *a, uint64_t h)
{
    if (beyond_tail(a, h)) return NULL;
    struct handle_ent *start = a->h_find && a->h_find->handle <= h ? a->h_find : NULL;
    for (struct handle_ent *e = start ? start : a->h_head; e; e = e->next) {
        if (e->handle == h) return a->h_find = e;
        if (e->handle > h && !a->h_unordered) return NULL;
    }
    for (struct handle_ent *e = a->h_head; start && e != start; e = e->next) {
        if (e->handle == h) return a->h_find = e;
        if (e->handle > h && !a->h_unordered) return NULL;
    }
    return NULL;
}

struct handle_ent *take_handle(struct account *a, uint64_t h)
{
    if (beyond_tail(a, h)) return NULL;
    struct handle_ent *prev = NULL;
    for (struct handle_ent *e = a->h_head; e; prev = e, e = e->next) {
        if (e->handle != h) {
            if (e->handle > h && !a->h_unordered) return NULL;
            continue;
        }
        if (prev) prev->next = e->next;
        else a->h_head = e->next;
        if (a->h_tail == e) a->h_tail = prev;
        if (a->h_find == e) a->h_find = prev;
        return e;
    }
    return NULL;
}

/* ---- session events ------------------------------------------------------------------ */

/* ---- inbound trust (bridge/daemon/stanza_trust.c) ------------------------------------- */

static int trust_iq_pending(void *ud, const char *id, size_t n, const char **peer)
{
    struct account *a = ud;
    struct pending_iq *p = pending_nth(a->d, a, id, n);
    if (p) *peer = p->peer;
    return p != NULL;
}

static int trust_mam_query(void *ud, const char *queryid, const char **archive)
{
    struct account *a = ud;
    for (struct pending_iq *p = a->iqs; p; p = p->anext)
        if (p->mam_qid && strcmp(p->mam_qid, queryid) == 0) {
            *archive = p->peer;
            return 1;
        }
    return 0;
}

/* One normalisation of the sender per stanza, none per room after the first
 * use: an account in many rooms costs string compares only. */
static int trust_room_joined(void *ud, const char *room)
{
    struct account *a = ud;
    char *norm = NULL;
    int found = 0;
    for (struct room *r = a->rooms; r; r = r->next) {
        if (!r->norm) xpb_jid_normalize(r->room, strlen(r->room), &r->norm, NULL, 0);
        if (r->norm && strcmp(r->norm, room) == 0) return 1; /* servers send it normalised */
    }
    if (!a->rooms || xpb_jid_normalize(room, strlen(room), &norm, NULL, 0) != 0) return 0;
    for (struct room *r = a->rooms; r && !found; r = r->next)
        found = r->norm && strcmp(r->norm, norm) == 0;
    free(norm);
    return found;
}

static void trust_ctx(struct account *a, xpb_trust_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->bare = a->name;
    ctx->full = a->full_jid;
    ctx->iq_pending = trust_iq_pending;
    ctx->mam_query = trust_mam_query;
    ctx->room_joined = trust_room_joined;
    ctx->ud = a;
    ctx->passthrough = (const char *const *)a->d->iq_passthrough;
    ctx->n_passthrough = a->d->n_iq_passthrough;
    ctx->answer_version = a->d->iq_answer_version;
    ctx->version = XPB_VERSION_STRING;
}

/* Count, log and answer what the trust rules decided; 1 when el is published. */
static int apply_verdict(struct account *a, const xpb_trust_ctx *ctx, const xpb_node *el,
                         const xpb_trust_verdict *v, const char *why)
{
    xpb_daemon *d = a->d;
    d->ctr.trust[v->reason]++;
    if (why[0]) xpb_log(XPB_LOG_DEBUG, "session %s: %s", a->name, why);
    if (v->answer != XPB_ANSWER_NONE) {
        xpb_arena_reset(d->arena);
        xpb_stanza *ans = xpb_trust_build_answer(d->arena, ctx, el, v);
        if (ans) send_own(a, ans);
        else xpb_log(XPB_LOG_WARN, "session %s: cannot build the iq answer: out of memory", a->name);
    }
    if (v->muc_created) accept_instant_room(a, el);
    return v->publish;
}

/* xml: the stanza's size as the server sent it. The trust rules run first:
 * a stanza is published only as what they verified (Event.trust). */
static void on_stanza(struct account *a, const xpb_node *el, size_t xml)
{
    xpb_daemon *d = a->d;
    xpb_trust_ctx ctx;
    xpb_trust_verdict v;
    char why[512];
    trust_ctx(a, &ctx);
    xpb_trust_classify(&ctx, el, &v, why, sizeof why);
    struct pending_iq *p =
        v.iq_match >= 0 ? pending_nth(d, a, xpb_node_attr(el, "", "id")->value, (size_t)v.iq_match)
                        : NULL;
    /* Every stanza received counts, whatever its verdict. */
    d->ctr.stanzas[XPB_DIR_IN][kind_of_name(el->name)]++;
    d->ctr.bytes_xml[XPB_DIR_IN] += xml;
    if (!apply_verdict(a, &ctx, el, &v, why)) return;
    if (p && p->kind == IQ_CATCHUP) { /* the daemon's own archive query: not published */
        catchup_iq(p, el);
        pending_free(d, p);
        return;
    }
    if (strcmp(el->name, "presence") == 0) catchup_presence(a, el, v.trust);
    if (catchup_inbound(a, el, v.trust)) return;
    xpb_arena_reset(d->arena);
    xpb_stanza *st = NULL;
    /* Plain records by default: every id and JID as the text it was, so a
     * backend needs no knowledge of the compact forms. */
    int rc = d->compact_records ? xpb_stanza_from_xml(d->arena, el, &st)
                                : xpb_stanza_from_xml_plain(d->arena, el, &st);
    if (rc != 0) {
        xpb_log(XPB_LOG_WARN, "session %s: stanza not mapped: %s", a->name, xpb_strerror(rc));
        return;
    }
    if (p) pending_resolve(p, st);
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    ev.stanza = st;
    ev.has_xml_bytes = ev.has_trust = 1;
    ev.xml_bytes = (uint32_t)xml;
    ev.trust = v.trust;
    publish_event(d, xpb_bus_stanza_kind(st->kind), a->name, &ev);
    /* Sized once, with its event, by the bus (bug 6b of issue 10: twice). */
    size_t rec = xpb_bus_last_stanza_bytes(d->bus);
    d->ctr.bytes_record[XPB_DIR_IN] += rec ? rec : xpb_pack_plan_measure(d->plan, &st->base);
    if (st->kind == XPB__V1__KIND__KIND_MESSAGE) sends_on_receipt(a, st);
}

static void on_online(struct account *a, const xpb_session_event *ev)
{
    char *j = xstrdup(ev->jid);
    if (j) {
        free(a->full_jid);
        a->full_jid = j;
    }
    xpb_log(XPB_LOG_INFO, "session %s %s as %s", a->name, ev->resumed ? "resumed" : "online",
            ev->jid ? ev->jid : "?");
    publish_state(a, ev->resumed ? XPB__V1__SESSION_STATE__STATE__STATE_RESUMED
                                 : XPB__V1__SESSION_STATE__STATE__STATE_ONLINE,
                  NULL, ev->jid);
    /* XEP-0045: occupancy does not survive a new stream; a resumed one keeps it. */
    if (!ev->resumed) {
        resend_presence(a);
        rejoin_rooms(a);
        catchup_online(a); /* what the archive got while no stream was bound */
    } else {
        catchup_resumed(a);
    }
}

static void on_stopped(struct account *a, const char *reason)
{
    publish_state(a, XPB__V1__SESSION_STATE__STATE__STATE_STOPPED, reason, NULL);
    if (!a->removing) {
        xpb_log(XPB_LOG_WARN, "session %s stopped: %s", a->name, reason ? reason : "");
        return;
    }
    answer_closers(a, NULL);
    a->dead = 1;
    schedule_reap(a->d);
}

static void on_state(struct account *a, const xpb_session_event *ev)
{
    switch (ev->state) { /* the others are announced by on_online, or not at all */
    case XPB_SS_CONNECTING:
    case XPB_SS_BACKOFF: publish_state(a, daemon_bus_state(ev->state), ev->reason, NULL); break;
    case XPB_SS_STOPPED:
        sends_on_stopped(a);
        on_stopped(a, ev->reason);
        break;
    default: break;
    }
}

void daemon_session_event(struct account *a, const xpb_session_event *ev)
{
    switch (ev->kind) {
    case XPB_SE_STATE: on_state(a, ev); break;
    case XPB_SE_ONLINE: on_online(a, ev); break;
    case XPB_SE_STANZA:
        on_stanza(a, ev->stanza, ev->stanza_bytes);
        sends_on_inbound(a);
        break;
    case XPB_SE_SENT:
    case XPB_SE_ACKED:
    case XPB_SE_FAILED: publish_delivery(a, ev); break;
    case XPB_SE_SM: sends_on_sm(a); break;
    default: break;
    }
    if (ev->kind != XPB_SE_STANZA) account_recount(a); /* a stanza changes no gauge */
}

static void on_session_event(void *ud, xpb_loop_session *ls, const xpb_session_event *ev)
{
    struct account *a = account_of(ud, ls);
    if (a) daemon_session_event(a, ev);
}

/* A worker loop's session (xpb_shards): the proxy's ud is its account, and
 * the queue gauges /metrics reads come with the event (the session on the
 * worker cannot write them into the account). */
static void on_shard_event(void *ud, xpb_shard_session *ss, const xpb_session_event *ev)
{
    (void)ud;
    struct account *a = xpb_shard_ud(ss);
    if (!a) return;
    xpb_session_stats st;
    xpb_shard_stats(ss, &st);
    atomic_store_explicit(&a->gauges.queued, st.queued, memory_order_relaxed);
    atomic_store_explicit(&a->gauges.unacked, st.unacked, memory_order_relaxed);
    daemon_session_event(a, ev);
}

static void on_loop_log(void *ud, int level, const char *session, const char *msg);

static int shards_start(xpb_daemon *d, xpb_loop *loop, const xpb_config *cfg, char *err,
                        size_t errlen)
{
    unsigned n = xpb_config_loops(cfg);
    if (n == 0) return 0;
    xpb_shards_config sc = {
        .workers = n, .owner = loop, .on_event = on_shard_event, .on_log = on_loop_log, .ud = d};
    sc.worker.connect_rate = cfg->connect_rate;
    char why[256] = "";
    int rc = xpb_shards_new(&d->shards, &sc, why, sizeof why);
    int autom = cfg->loops == XPB_CONFIG_LOOPS_AUTO;
    if (rc != 0)
        snprintf(err, errlen, "limits.loops = %u%s: %s", n, autom ? " (auto)" : "", why);
    else
        xpb_log(XPB_LOG_INFO, "sessions on %u worker loops (limits.loops = %s)", n,
                autom ? "\"auto\": one per core" : "as configured");
    return rc;
}

static void on_loop_log(void *ud, int level, const char *session, const char *msg)
{
    (void)ud;
    xpb_log(level, "session %s: %s", session ? session : "-", msg);
}

/* ---- the daemon --------------------------------------------------------------------- */

/* A request must have room for the largest stanza the bridge may write:
 * its record takes at most about twice its XML (tags and lengths of nested
 * elements), plus the envelope. bus.max_request_bytes can raise it. */
static size_t request_limit(const xpb_config *cfg)
{
    size_t need = 2 * cfg->max_stanza_bytes + XPB_DAEMON_REQUEST_SLACK;
    return cfg->max_request_bytes > need ? cfg->max_request_bytes : need;
}

/* The configuration's accounts, kept for open requests (at start and at
 * every reload); the bus.allow_* switches are read at start only. */
static void forget_config(xpb_daemon *d)
{
    for (size_t i = 0; i < d->n_conf; i++)
        xpb_account_cfg_clear(&d->conf[i]);
    free(d->conf);
    d->conf = NULL;
    d->n_conf = 0;
}

int remember_config(xpb_daemon *d, const xpb_config *cfg)
{
    forget_config(d);
    if (!cfg->n_accounts) return 0;
    d->conf = calloc(cfg->n_accounts, sizeof *d->conf);
    if (!d->conf) return XPB_ENOMEM;
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        if (xpb_account_cfg_copy(&d->conf[i], &cfg->accounts[i]) != 0) return XPB_ENOMEM;
        d->n_conf++;
    }
    return 0;
}

/* The config's defaults are the bus's own: the config layer does not see the
 * bus's header, so the daemon, which sees both, holds them equal. */
_Static_assert(XPB_CONFIG_DEDUPE_DEFAULT == XPB_BUS_DEFAULT_DEDUPE, "bus.dedupe_entries default");
_Static_assert(XPB_CONFIG_DEFAULT_BATCH_FLUSH_US == XPB_BUS_DEFAULT_BATCH_FLUSH_US,
               "bus.batch_flush_us default");

static int bus_start(xpb_daemon *d, const xpb_config *cfg, char *err, size_t errlen)
{
    xpb_bus_config bc;
    xpb_bus_config_init(&bc);
    bc.events_url = cfg->events_url;
    bc.requests_url = cfg->requests_url;
    bc.private_dir = cfg->private_dir;
    bc.allow_remote = cfg->allow_remote;
    bc.max_request_bytes = request_limit(cfg);
    bc.max_string = cfg->max_stanza_bytes; /* a bot can send back what it received */
    bc.batch_max = cfg->batch_max;
    bc.batch_flush_us = cfg->batch_flush_us;
    bc.dedupe_entries = d->dedupe_entries = cfg->dedupe_entries;
    state_bus_config(d, &bc);
    int rc = cluster_bus_config(d, cfg, &bc, err, errlen);
    if (rc) return rc;
    rc = xpb_bus_new(&d->bus, d->loop, &bc, on_request, d, err, errlen);
    if (rc && !err[0]) snprintf(err, errlen, "bus: %s", xpb_strerror(rc));
    return rc;
}

static void on_shutdown_timeout(void *arg);

/* The daemon's own timers: reaping closed accounts (started with 0 ms, so it
 * runs from the loop, never inside a session callback), the self-ping round
 * (re-armed by on_ping_timer) and the shutdown bound. */
static int daemon_timers(xpb_daemon *d, const xpb_config *cfg)
{
    if (xpb_timer_new(d->loop, on_reap, d, &d->reap_timer) ||
        xpb_timer_new(d->loop, on_ping_timer, d, &d->ping_timer) ||
        xpb_timer_new(d->loop, on_shutdown_timeout, d, &d->shutdown_timer))
        return XPB_ENOMEM;
    if (cfg->muc_ping_s) xpb_timer_start(d->ping_timer, cfg->muc_ping_s * 1000u);
    return 0;
}

static int daemon_init(xpb_daemon *d, xpb_loop *loop, const xpb_config *cfg, char *err,
                       size_t errlen)
{
    d->loop = loop;
    d->started = time(NULL);
    d->queue_max = cfg->queue_max;
    d->muc_ping_s = cfg->muc_ping_s;
    d->backoff_reset_s = cfg->backoff_reset_s;
    d->backoff_max_s = cfg->backoff_max_s;
    d->compact_records = cfg->compact_records;
    d->limits.max_stanza_bytes = cfg->max_stanza_bytes;
    d->iq_answer_version = cfg->iq_answer_version;
    if (cfg->n_iq_passthrough &&
        !(d->iq_passthrough = calloc(cfg->n_iq_passthrough, sizeof *d->iq_passthrough))) {
        snprintf(err, errlen, "out of memory");
        return XPB_ENOMEM;
    }
    for (size_t i = 0; i < cfg->n_iq_passthrough; i++, d->n_iq_passthrough++)
        if (!(d->iq_passthrough[i] = strdup(cfg->iq_passthrough[i]))) {
            snprintf(err, errlen, "out of memory");
            return XPB_ENOMEM;
        }
    d->limits.max_string = cfg->max_stanza_bytes; /* as the bus's request check */
    d->open_rules.allow_inline_credentials = cfg->allow_inline_credentials;
    d->open_rules.allow_open_overrides = cfg->allow_open_overrides;
    if (remember_config(d, cfg)) {
        snprintf(err, errlen, "out of memory");
        return XPB_ENOMEM;
    }
    d->arena = xpb_arena_new(0);
    d->rarena = xpb_arena_new(0);
    d->plan = xpb_pack_plan_new();
    if (!d->arena || !d->rarena || !d->plan || daemon_timers(d, cfg)) {
        snprintf(err, errlen, "out of memory");
        return XPB_ENOMEM;
    }
    xpb_loop_set_handlers(loop, on_session_event, on_loop_log, d);
    int rc = shards_start(d, loop, cfg, err, errlen);
    if (rc) return rc;
    rc = state_open(d, cfg, err, errlen);
    if (rc) return rc;
    rc = bus_start(d, cfg, err, errlen);
    if (rc) return rc;
    d->ctr.bus_up = 1;
    /* cluster_start may put NATS KV in the state back end's place, which
     * catch-up then keeps its markers in; accounts start later, on the loop */
    if (cluster_owns_accounts(d) && (rc = cluster_start(d, err, errlen)) != 0) return rc;
    if ((rc = catchup_init(d, cfg)) != 0) {
        snprintf(err, errlen, "catch-up: out of memory");
        return rc;
    }
    if (cluster_owns_accounts(d)) return 0;
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        char aerr[512] = "";
        rc = account_start(d, &cfg->accounts[i], NULL, 1, aerr, sizeof aerr);
        if (rc) {
            snprintf(err, errlen, "account %s: %s", cfg->accounts[i].jid, aerr);
            return rc;
        }
    }
    return 0;
}

int xpb_daemon_new(xpb_daemon **out, xpb_loop *loop, const xpb_config *cfg, char *err,
                   size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    xpb_daemon *d = calloc(1, sizeof *d);
    if (!d) return XPB_ENOMEM;
    int rc = daemon_init(d, loop, cfg, err, errlen);
    if (rc) {
        xpb_daemon_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void finish_shutdown(xpb_daemon *d)
{
    xpb_timer_stop(d->shutdown_timer);
    sends_flush(d); /* the group commit's sends: answered while the bus is there */
    while (d->iqs) pending_free(d, d->iqs); /* xpb_bus_free answers their requests */
    for (struct account *a = d->accounts; a; a = a->next)
        while (a->closers) {
            struct closer *c = a->closers;
            a->closers = c->next;
            free(c);
        }
    if (d->bus) {
        xpb_bus_flush(d->bus);
        xpb_bus_free(d->bus);
    }
    d->bus = NULL;
    d->ctr.bus_up = 0;
    xpb_log(XPB_LOG_INFO, "xpbridge: stopped");
    xpb_loop_stop(d->loop);
}

static void on_shutdown_timeout(void *arg)
{
    xpb_daemon *d = arg;
    xpb_log(XPB_LOG_WARN, "shutdown: sessions still open after %u ms; dropping them",
            XPB_DAEMON_CLOSE_WAIT_MS);
    finish_shutdown(d);
}

void xpb_daemon_shutdown(xpb_daemon *d)
{
    if (d->shutting_down) {
        xpb_log(XPB_LOG_WARN, "shutdown: second signal, stopping now");
        finish_shutdown(d);
        return;
    }
    d->shutting_down = 1;
    xpb_log(XPB_LOG_INFO, "shutdown: closing %s sessions", d->accounts ? "all" : "no");
    xpb_timer_stop(d->ping_timer);
    xpb_timer_start(d->shutdown_timer, XPB_DAEMON_CLOSE_WAIT_MS);
    cluster_shutdown(d); /* no new claims; each claim is released once its session is gone */
    for (struct account *a = d->accounts; a; a = a->next) account_close(a);
    schedule_reap(d); /* finishes at once when there was nothing to close */
}

/* Remember nc to start the account again once its close is done (on_reap);
 * the newest configuration wins. 0, or -1 out of memory. */
void xpb_daemon_free(xpb_daemon *d)
{
    if (!d) return;
    if (d->shards) { /* the worker loops stop first: no session runs after */
        for (struct account *a = d->accounts; a; a = a->next) a->ss = NULL;
        xpb_shards_free(d->shards);
        d->shards = NULL;
    }
    sends_flush(d);
    while (d->iqs) pending_free(d, d->iqs);
    if (d->nmarks) catchup_commit(d); /* NATS KV: the markers acknowledged by now */
    if (d->bus) xpb_bus_free(d->bus);
    d->bus = NULL;
    catchup_fini(d); /* after the bus's last flush, before the store closes */
    state_close(d);  /* after the bus: its last flush goes to the journal */
    walk_free(d);
    while (d->accounts) {
        struct account *a = d->accounts;
        d->accounts = a->next;
        while (a->closers) { /* their requests were answered by xpb_bus_free */
            struct closer *c = a->closers;
            a->closers = c->next;
            free(c);
        }
        account_free(a);
    }
    cluster_free(d);
    xpb_strmap_clear(&d->by_name);
    if (d->loop) xpb_loop_set_handlers(d->loop, NULL, NULL, NULL); /* the loop outlives us */
    sends_free(d);
    xpb_timer_free(d->reap_timer);
    xpb_timer_free(d->ping_timer);
    xpb_timer_free(d->shutdown_timer);
    xpb_arena_free(d->arena);
    xpb_pack_plan_free(d->plan);
    xpb_arena_free(d->rarena);
    for (size_t i = 0; i < d->n_iq_passthrough; i++) free(d->iq_passthrough[i]);
    free(d->iq_passthrough);
    forget_config(d);
    free(d);
}

const char *xpb_daemon_events_url(const xpb_daemon *d)
{
    return d->bus ? xpb_bus_events_url(d->bus) : "";
}

const char *xpb_daemon_requests_url(const xpb_daemon *d)
{
    return d->bus ? xpb_bus_requests_url(d->bus) : "";
}

/* ---- metrics ------------------------------------------------------------------------ */

/* The one mapping from a session's state to what the bus and /metrics show
 * (docs/bus.md "Session states", docs/operations.md): the bus state of a
 * SessionInfo and of a state event, and the xpb_sessions{state} bucket.
 * bus.proto has no closing state, so a CLOSING session is DISCONNECTED on
 * the bus (not online, not yet stopped for good) and has its own bucket,
 * "closing", in /metrics, where an operator sees closes that hang. */
static const struct {
    pub_state bus;
    int bucket; /* XPB_MST_* */
} state_map[] = {
    [XPB_SS_IDLE] = {XPB__V1__SESSION_STATE__STATE__STATE_CONNECTING, XPB_MST_CONNECTING},
    [XPB_SS_CONNECTING] = {XPB__V1__SESSION_STATE__STATE__STATE_CONNECTING, XPB_MST_CONNECTING},
    [XPB_SS_STREAM_OPEN] = {XPB__V1__SESSION_STATE__STATE__STATE_CONNECTING, XPB_MST_CONNECTING},
    [XPB_SS_STARTTLS] = {XPB__V1__SESSION_STATE__STATE__STATE_CONNECTING, XPB_MST_CONNECTING},
    [XPB_SS_TLS_HANDSHAKE] = {XPB__V1__SESSION_STATE__STATE__STATE_CONNECTING,
                              XPB_MST_CONNECTING},
    [XPB_SS_AUTH] = {XPB__V1__SESSION_STATE__STATE__STATE_CONNECTING, XPB_MST_CONNECTING},
    [XPB_SS_BIND] = {XPB__V1__SESSION_STATE__STATE__STATE_CONNECTING, XPB_MST_CONNECTING},
    [XPB_SS_ONLINE] = {XPB__V1__SESSION_STATE__STATE__STATE_ONLINE, XPB_MST_ONLINE},
    [XPB_SS_CLOSING] = {XPB__V1__SESSION_STATE__STATE__STATE_DISCONNECTED, XPB_MST_CLOSING},
    [XPB_SS_BACKOFF] = {XPB__V1__SESSION_STATE__STATE__STATE_DISCONNECTED, XPB_MST_DISCONNECTED},
    [XPB_SS_STOPPED] = {XPB__V1__SESSION_STATE__STATE__STATE_STOPPED, XPB_MST_STOPPED},
};

static int state_known(xpb_session_state s)
{
    return (unsigned)s < sizeof state_map / sizeof state_map[0] && state_map[s].bus != 0;
}

pub_state daemon_bus_state(xpb_session_state s)
{
    return state_known(s) ? state_map[s].bus : XPB__V1__SESSION_STATE__STATE__STATE_CONNECTING;
}

int daemon_state_bucket(xpb_session_state s)
{
    return state_known(s) ? state_map[s].bucket : XPB_MST_CONNECTING;
}

const char *xpb_daemon_state_name(int bucket)
{
    static const char *const n[XPB_MST_COUNT] = {
        [XPB_MST_CONNECTING] = "connecting", [XPB_MST_ONLINE] = "online",
        [XPB_MST_DISCONNECTED] = "disconnected", [XPB_MST_CLOSING] = "closing",
        [XPB_MST_STOPPED] = "stopped"};
    return bucket >= 0 && bucket < XPB_MST_COUNT ? n[bucket] : "unknown";
}

void xpb_daemon_get_counters(xpb_daemon *d, xpb_daemon_counters *out)
{
    *out = d->ctr;
    out->n_accounts = 0;
    for (int b = 0; b < XPB_MST_COUNT; b++) {
        out->sessions[b] = d->n_bucket[b];
        out->n_accounts += d->n_bucket[b];
    }
    out->reconnects = d->sum_reconnects;
    out->resumptions = d->sum_resumptions;
    out->queue_max = d->queue_max;
    out->muc_self_ping_s = d->muc_ping_s;
    out->max_stanza_bytes = d->limits.max_stanza_bytes;
    out->worker_loops = d->shards ? xpb_shards_workers(d->shards) : 0;
    out->worker_waits = d->shards ? xpb_shards_waits(d->shards) : 0;
    cluster_counters(d, out);
    if (d->store) {
        out->journal_on = 1;
        xpb_store_journal_stats(d->store, &out->journal);
        xpb_bus_journal_get_stats(d->bus, &out->journal_bus);
        out->journal_max_bytes = d->journal_max_bytes;
        out->journal_max_age_s = d->journal_max_age_s;
    }
    out->catchup_on = d->cu != NULL;
    out->outbox = d->outbox_total;
}

void xpb_daemon_get_bus_stats(xpb_daemon *d, xpb_bus_stats *out)
{
    if (d->bus) xpb_bus_get_stats(d->bus, out);
    else memset(out, 0, sizeof *out);
}
