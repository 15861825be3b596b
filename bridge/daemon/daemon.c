/* The daemon core: one account per bridged JID, each with its session on the
 * shared loop; session events become bus events, bus requests become stanzas.
 * Every inbound stanza passes the trust rules (stanza_trust.c) first: it is
 * published with what they verified, dropped, or answered. iq responses are
 * matched to the request that sent them by (account, id, peer); MUC rooms
 * are rejoined after every fresh bind (XEP-0045 §7.2) and checked with
 * XEP-0410 self-pings. Runs entirely on the loop thread. */
#define _DEFAULT_SOURCE /* explicit_bzero */
#include "xpb_daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "open_policy.h"
#include "xpb_error.h"
#include "xpb_jid.h"
#include "xpb_loop.h"
#include "xpb_session.h"
#include "xpb_stanza.h"
#include "xpb_trust.h"

typedef Xpb__V1__SessionState__State pub_state;

enum iq_kind { IQ_USER, IQ_ROSTER, IQ_SELFPING };

/* A sent stanza whose outcome a Delivery event reports. Outcomes arrive in
 * send order, so the FIFO is searched from its head. */
struct handle_ent {
    struct handle_ent *next;
    uint64_t handle;
    char *request_id, *stanza_id;
};

struct room {
    struct room *next;
    char *room, *nick, *password;
    char *norm;            /* room normalised (RFC 7622), made on first use; NULL: not yet */
    int history;
};

struct account;
struct pending_iq {
    struct pending_iq *next, *prev;
    xpb_daemon *d;
    struct account *acc;
    enum iq_kind kind;
    char *id, *peer;       /* peer NULL: the account's own server/bare JID */
    xpb_bus_request *req;  /* NULL for self-pings */
    struct event *timer;
    unsigned timeout_ms;
    char *room;            /* self-ping: the room */
    char *mam_qid;         /* a MAM query (XEP-0313): its queryid, "" none; NULL: not MAM */
};

struct closer {
    struct closer *next;
    xpb_bus_request *req;
};

struct account {
    struct account *next;
    xpb_daemon *d;
    char *name;            /* bare JID */
    xpb_account_cfg cfg;
    int from_config;
    unsigned char *password;
    size_t password_len;
    xpb_loop_session *ls;
    char *full_jid;
    struct handle_ent *h_head, *h_tail;
    struct room *rooms;
    struct closer *closers;
    struct event *close_timer;
    int removing, dead;
    xpb_account_cfg *restart_cfg; /* reload: start again with this once stopped */
    /* The last broadcast presence a backend set (presence request without
     * `to`): a fresh session after a reconnect announces it again, so a
     * reconnect does not silently turn "away" back into the configured one. */
    int pres_set, pres_show, pres_has_prio, pres_prio;
    char *pres_status;
};

struct xpb_daemon {
    struct event_base *base;
    xpb_loop *loop;
    xpb_bus *bus;
    xpb_metrics *metrics;
    struct account *accounts;
    struct pending_iq *iqs;
    xpb_arena *arena, *rarena;
    xpb_pack_plan *plan; /* sizes records for the byte counters (codec/pack.c) */
    xpb_record_limits limits;
    unsigned queue_max, muc_ping_s;
    unsigned backoff_reset_s; /* limits.backoff_reset_s */
    int compact_records; /* publish compact forms (docs/mapping.md §7) */
    xpb_open_rules open_rules; /* bus.allow_*: what an open request may do */
    xpb_account_cfg *conf;     /* the configuration's accounts: what open may start */
    size_t n_conf;
    xpb_daemon_counters ctr;
    uint64_t gone_reconnects, gone_resumptions;
    struct event *reap_ev, *ping_timer, *shutdown_timer;
    int shutting_down;
    time_t started;
    uint64_t iq_counter;
    int iq_answer_version;  /* iq.answer_version */
    char **iq_passthrough;  /* iq.passthrough */
    size_t n_iq_passthrough;
};

static void rejoin_rooms(struct account *a);
static void resend_presence(struct account *a);
static void accept_instant_room(struct account *a, const xpb_node *el);
static void join_one(struct account *a, const struct room *r);
static int send_own(struct account *a, const xpb_stanza *st);

/* ---- small helpers ------------------------------------------------------------ */

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static const char *kind_name(Xpb__V1__Kind k)
{
    switch (k) {
    case XPB__V1__KIND__KIND_MESSAGE: return "message";
    case XPB__V1__KIND__KIND_PRESENCE: return "presence";
    case XPB__V1__KIND__KIND_IQ: return "iq";
    default: return "other";
    }
}

static int kind_index(Xpb__V1__Kind k)
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

static struct account *find_account(xpb_daemon *d, const char *name)
{
    for (struct account *a = d->accounts; a; a = a->next)
        if (!a->dead && strcmp(a->name, name) == 0) return a;
    return NULL;
}

static struct account *account_of(xpb_daemon *d, xpb_loop_session *ls)
{
    for (struct account *a = d->accounts; a; a = a->next)
        if (a->ls == ls) return a;
    return find_account(d, xpb_loop_session_name(ls));
}

/* The account a request names: its bare JID, or the full JID our own
 * session is bound to (as the log and SessionInfo.jid show it). Any other
 * full JID is refused with a sentence saying to use the bare JID. */
static struct account *request_account(xpb_daemon *d, const char *name, char *why, size_t whylen)
{
    struct account *a = find_account(d, name);
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

static xpb_session *session_of(struct account *a)
{
    return a->ls ? xpb_loop_session_get(a->ls) : NULL;
}

/* A compact id (docs/mapping.md §7) back to its canonical UUID text. */
static void expand_id_uuid(xpb_stanza *st, char buf[37])
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

/* ---- password files --------------------------------------------------------------- */

static int read_password(const char *path, unsigned char **out, size_t *len, char *err,
                         size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "password file %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return XPB_EINVAL;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size > (off_t)XPB_DAEMON_MAX_PASSWORD) {
        snprintf(err, errlen, "password file %s: not a regular file of at most %u bytes", path,
                 XPB_DAEMON_MAX_PASSWORD);
        close(fd);
        return XPB_EINVAL;
    }
    if (sb.st_mode & (S_IRWXG | S_IRWXO))
        xpb_log(XPB_LOG_WARN, "password file %s can be read by group or others (chmod 600 it)",
                path);
    unsigned char *buf = malloc(XPB_DAEMON_MAX_PASSWORD + 1);
    ssize_t n = buf ? read(fd, buf, XPB_DAEMON_MAX_PASSWORD + 1) : -1;
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    if (n <= 0 || n > (ssize_t)XPB_DAEMON_MAX_PASSWORD) {
        snprintf(err, errlen, "password file %s: %s", path, n == 0 ? "empty" : "cannot be read");
        if (buf) explicit_bzero(buf, XPB_DAEMON_MAX_PASSWORD + 1);
        free(buf);
        return XPB_EINVAL;
    }
    *out = buf;
    *len = (size_t)n;
    return 0;
}

/* ---- publishing ------------------------------------------------------------------- */

static void publish(xpb_daemon *d, const char *kind, const char *account, Xpb__V1__Event *ev)
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
    publish(a->d, "state", a->name, &ev);
}

static void track_handle(struct account *a, uint64_t h, const char *request_id, const char *sid)
{
    struct handle_ent *e = calloc(1, sizeof *e);
    if (!e) return;
    e->handle = h;
    e->request_id = xstrdup(request_id);
    e->stanza_id = xstrdup(sid);
    if (a->h_tail) a->h_tail->next = e;
    else a->h_head = e;
    a->h_tail = e;
}

static void free_handle(struct handle_ent *e)
{
    free(e->request_id);
    free(e->stanza_id);
    free(e);
}

static struct handle_ent *take_handle(struct account *a, uint64_t h)
{
    struct handle_ent *prev = NULL;
    for (struct handle_ent *e = a->h_head; e; prev = e, e = e->next) {
        if (e->handle != h) continue;
        if (prev) prev->next = e->next;
        else a->h_head = e->next;
        if (a->h_tail == e) a->h_tail = prev;
        return e;
    }
    return NULL;
}

static void publish_delivery(struct account *a, const xpb_session_event *sev)
{
    struct handle_ent *e = take_handle(a, sev->handle);
    if (!e) return; /* the daemon's own stanzas (self-pings, rejoins) */
    Xpb__V1__Delivery dl = XPB__V1__DELIVERY__INIT;
    dl.has_outcome = 1;
    dl.outcome = sev->kind == XPB_SE_ACKED ? XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED
                                           : XPB__V1__DELIVERY__OUTCOME__OUTCOME_FAILED;
    dl.request_id = e->request_id;
    dl.stanza_id = e->stanza_id;
    dl.reason = (char *)sev->reason;
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_DELIVERY;
    ev.delivery = &dl;
    publish(a->d, "delivery", a->name, &ev);
    free_handle(e);
}

/* ---- pending iqs ---------------------------------------------------------------------- */

static void pending_free(xpb_daemon *d, struct pending_iq *p)
{
    if (p->prev) p->prev->next = p->next;
    else d->iqs = p->next;
    if (p->next) p->next->prev = p->prev;
    if (p->timer) event_free(p->timer);
    free(p->id);
    free(p->peer);
    free(p->room);
    free(p->mam_qid);
    free(p);
}

static void on_iq_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pending_iq *p = arg;
    (void)fd, (void)what;
    if (p->req)
        xpb_bus_reply_error(p->req, XPB__V1__ERROR_CODE__ERR_TIMEOUT, "no response within %u ms",
                            p->timeout_ms);
    else
        xpb_log(XPB_LOG_DEBUG, "session %s: self-ping to %s unanswered", p->acc->name, p->room);
    pending_free(p->d, p);
}

static struct pending_iq *pending_add(struct account *a, enum iq_kind kind, const char *id,
                                      const char *peer, xpb_bus_request *req, unsigned ms)
{
    xpb_daemon *d = a->d;
    struct pending_iq *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->d = d;
    p->acc = a;
    p->kind = kind;
    p->req = req;
    p->timeout_ms = ms;
    p->id = strdup(id);
    p->peer = xstrdup(peer);
    p->timer = evtimer_new(d->base, on_iq_timeout, p);
    p->next = d->iqs;
    if (d->iqs) d->iqs->prev = p;
    d->iqs = p;
    if (!p->id || (peer && !p->peer) || !p->timer) {
        pending_free(d, p);
        return NULL;
    }
    struct timeval tv = {(time_t)(ms / 1000u), (suseconds_t)((ms % 1000u) * 1000u)};
    evtimer_add(p->timer, &tv);
    return p;
}

/* Answer (and forget) every iq of an account that goes away. */
static void pending_drop_account(xpb_daemon *d, const struct account *a, const char *why)
{
    struct pending_iq *p = d->iqs;
    while (p) {
        struct pending_iq *n = p->next;
        if (p->acc == a) {
            if (p->req) xpb_bus_reply_error(p->req, XPB__V1__ERROR_CODE__ERR_NOT_CONNECTED, "%s", why);
            pending_free(d, p);
        }
        p = n;
    }
}

/* The n-th pending iq of account a with this id (stanza_trust.h iq_pending). */
static struct pending_iq *pending_nth(xpb_daemon *d, const struct account *a, const char *id,
                                      size_t n)
{
    for (struct pending_iq *p = d->iqs; p; p = p->next)
        if (p->acc == a && strcmp(p->id, id) == 0 && n-- == 0) return p;
    return NULL;
}

static const char *condition_name(const xpb_stanza *st)
{
    if (!st->error) return "unknown error";
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &xpb__v1__error_condition__descriptor, (int)st->error->condition);
    return v ? v->name : "unknown error";
}

static void resolve_selfping(struct pending_iq *p, const xpb_stanza *st)
{
    if (st->type != XPB__V1__STANZA_TYPE__TYPE_ERROR) return;
    Xpb__V1__ErrorCondition c = st->error ? st->error->condition : 0;
    /* XEP-0410 §3.2: these two mean "joined, but the client does not answer pings". */
    if (c == XPB__V1__ERROR_CONDITION__CONDITION_FEATURE_NOT_IMPLEMENTED ||
        c == XPB__V1__ERROR_CONDITION__CONDITION_SERVICE_UNAVAILABLE)
        return;
    xpb_log(XPB_LOG_INFO, "session %s: self-ping to %s failed (%s); rejoining", p->acc->name,
            p->room, condition_name(st));
    for (struct room *r = p->acc->rooms; r; r = r->next)
        if (strcmp(r->room, p->room) == 0) {
            join_one(p->acc, r);
            break;
        }
}

static void resolve(struct pending_iq *p, xpb_stanza *st)
{
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    Xpb__V1__RosterQuery empty = XPB__V1__ROSTER_QUERY__INIT;
    if (p->kind == IQ_SELFPING) {
        resolve_selfping(p, st);
    } else if (p->kind == IQ_USER) {
        resp.result_case = XPB__V1__RESPONSE__RESULT_IQ_RESULT;
        resp.iq_result = st;
        xpb_bus_reply(p->req, &resp);
    } else if (st->type == XPB__V1__STANZA_TYPE__TYPE_RESULT) {
        resp.result_case = XPB__V1__RESPONSE__RESULT_ROSTER;
        resp.roster = st->roster ? st->roster : &empty;
        xpb_bus_reply(p->req, &resp);
    } else {
        xpb_bus_reply_error(p->req, XPB__V1__ERROR_CODE__ERR_INTERNAL,
                            "the server refused the roster request: %s", condition_name(st));
    }
    pending_free(p->d, p);
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
    for (struct pending_iq *p = a->d->iqs; p; p = p->next)
        if (p->acc == a && p->mam_qid && strcmp(p->mam_qid, queryid) == 0) {
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
    d->ctr.bytes_record[XPB_DIR_IN] += xpb_pack_plan_measure(d->plan, &st->base);
    if (p) resolve(p, st);
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    ev.stanza = st;
    ev.has_xml_bytes = ev.has_trust = 1;
    ev.xml_bytes = (uint32_t)xml;
    ev.trust = v.trust;
    publish(d, kind_name(st->kind), a->name, &ev);
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
    }
}

static void answer_closers(struct account *a, const char *note)
{
    while (a->closers) {
        struct closer *c = a->closers;
        a->closers = c->next;
        Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
        if (note) resp.error_text = (char *)note;
        xpb_bus_reply(c->req, &resp);
        free(c);
    }
}

/* Reaping runs from the loop, never inside a session's own callback. */
static void schedule_reap(xpb_daemon *d)
{
    event_active(d->reap_ev, EV_TIMEOUT, 0);
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
    switch (ev->state) {
    case XPB_SS_CONNECTING:
        publish_state(a, XPB__V1__SESSION_STATE__STATE__STATE_CONNECTING, ev->reason, NULL);
        break;
    case XPB_SS_BACKOFF:
        publish_state(a, XPB__V1__SESSION_STATE__STATE__STATE_DISCONNECTED, ev->reason, NULL);
        break;
    case XPB_SS_STOPPED: on_stopped(a, ev->reason); break;
    default: break;
    }
}

static void on_session_event(void *ud, xpb_loop_session *ls, const xpb_session_event *ev)
{
    xpb_daemon *d = ud;
    struct account *a = account_of(d, ls);
    if (!a) return;
    switch (ev->kind) {
    case XPB_SE_STATE: on_state(a, ev); break;
    case XPB_SE_ONLINE: on_online(a, ev); break;
    case XPB_SE_STANZA: on_stanza(a, ev->stanza, ev->stanza_bytes); break;
    case XPB_SE_ACKED:
    case XPB_SE_FAILED: publish_delivery(a, ev); break;
    default: break;
    }
}

static void on_loop_log(void *ud, int level, const char *session, const char *msg)
{
    (void)ud;
    xpb_log(level, "session %s: %s", session ? session : "-", msg);
}

/* ---- sending ------------------------------------------------------------------------ */

static int is_jid_error(int rc)
{
    return rc == XPB_EJID || (rc <= XPB_EJIDEMPTY && rc >= XPB_EJIDRESOURCE);
}

/* Send st for request req; on failure answer req and return non-zero. */
static int send_for(struct account *a, xpb_bus_request *req, xpb_stanza *st, uint64_t *h,
                    char *idbuf, size_t idlen)
{
    xpb_daemon *d = a->d;
    char cerr[256] = "";
    int rc = xpb_stanza_check(st, &d->limits, cerr, sizeof cerr);
    if (rc != 0) {
        xpb_bus_reply_error(req, is_jid_error(rc) ? XPB__V1__ERROR_CODE__ERR_INVALID_JID
                                                  : XPB__V1__ERROR_CODE__ERR_INVALID_RECORD,
                            "%s", cerr[0] ? cerr : xpb_strerror(rc));
        return rc;
    }
    xpb_session *s = session_of(a);
    rc = s ? xpb_session_send(s, st, h) : XPB_ENOTCONN;
    if (rc == XPB_EQUEUEFULL) {
        int online = xpb_session_get_state(s) == XPB_SS_ONLINE;
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_QUEUE_FULL, "queue full (queue_max %u)%s",
                            d->queue_max,
                            online ? ": too many stanzas unacknowledged" : " while not connected");
    } else if (rc == XPB_ENOTCONN) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_NOT_CONNECTED,
                            "session %s is stopped or closing (close it and open it again)",
                            a->name);
    } else if (rc != 0) {
        xpb_bus_reply_error(req,
                            is_jid_error(rc) ? XPB__V1__ERROR_CODE__ERR_INVALID_JID
                            : rc == XPB_ENOMEM ? XPB__V1__ERROR_CODE__ERR_INTERNAL
                                               : XPB__V1__ERROR_CODE__ERR_INVALID_RECORD,
                            "%s", xpb_strerror(rc));
    }
    if (rc != 0) return rc;
    snprintf(idbuf, idlen, "%s", xpb_session_last_id(s));
    track_handle(a, *h, xpb_bus_request_id(req), idbuf);
    d->ctr.stanzas[XPB_DIR_OUT][kind_index(st->kind)]++;
    d->ctr.bytes_record[XPB_DIR_OUT] += xpb_pack_plan_measure(d->plan, &st->base);
    d->ctr.bytes_xml[XPB_DIR_OUT] += xpb_session_last_bytes(s); /* as the session queued it */
    return 0;
}

static void reply_sent(struct account *a, xpb_bus_request *req, const char *id)
{
    Xpb__V1__SendResult sr = XPB__V1__SEND_RESULT__INIT;
    sr.stanza_id = (char *)id;
    sr.has_queued = 1;
    xpb_session *s = session_of(a);
    sr.queued = !s || xpb_session_get_state(s) != XPB_SS_ONLINE;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.result_case = XPB__V1__RESPONSE__RESULT_SENT;
    resp.sent = &sr;
    xpb_bus_reply(req, &resp);
}

/* The daemon's own stanzas (rejoins, self-pings): no request, no Delivery. */
static int send_own(struct account *a, const xpb_stanza *st)
{
    xpb_session *s = session_of(a);
    uint64_t h;
    int rc = s ? xpb_session_send(s, st, &h) : XPB_ENOTCONN;
    if (rc != 0)
        xpb_log(XPB_LOG_WARN, "session %s: cannot send: %s", a->name, xpb_strerror(rc));
    else
        a->d->ctr.stanzas[XPB_DIR_OUT][kind_index(st->kind)]++;
    return rc;
}

/* ---- MUC (XEP-0045 §7.2.1 join, XEP-0410 self-ping) ------------------------------------- */

/* The join presence: to room/nick with <x xmlns='http://jabber.org/protocol/muc'>. */
static int join_stanza(const struct room *r, xpb_stanza *st, Xpb__V1__MucJoin *mj,
                       Xpb__V1__MucHistory *hist, char *to, size_t tolen)
{
    xpb__v1__stanza__init(st);
    xpb__v1__muc_join__init(mj);
    xpb__v1__muc_history__init(hist);
    if ((size_t)snprintf(to, tolen, "%s/%s", r->room, r->nick) >= tolen) return XPB_EINVAL;
    st->has_kind = 1;
    st->kind = XPB__V1__KIND__KIND_PRESENCE;
    st->to = to;
    st->muc = mj;
    mj->password = r->password;
    if (r->history >= 0) {
        hist->has_maxstanzas = 1;
        hist->maxstanzas = r->history;
        mj->history = hist;
    }
    return 0;
}

static void join_one(struct account *a, const struct room *r)
{
    xpb_stanza st;
    Xpb__V1__MucJoin mj;
    Xpb__V1__MucHistory hist;
    char to[3 * 1024 + 8];
    if (join_stanza(r, &st, &mj, &hist, to, sizeof to) != 0) return;
    if (send_own(a, &st) == 0)
        xpb_log(XPB_LOG_INFO, "session %s: joining %s as %s", a->name, r->room, r->nick);
}

static void rejoin_rooms(struct account *a)
{
    for (struct room *r = a->rooms; r; r = r->next) join_one(a, r);
}

/* XEP-0045 §10.1.2: a room we just created (status 201 on our own presence,
 * 110) stays locked until its owner configures it; accept the default
 * configuration ("instant room") so the join completes. Called only when the
 * trust rules found the room among the ones we asked to join (muc_created). */
static void accept_instant_room(struct account *a, const xpb_node *el)
{
    /* Read the tree, not the record: servers order <item/> and <status/>
     * freely, and the record keeps an unusual order as a generic element. */
    const xpb_node *x = xpb_node_child(el, "http://jabber.org/protocol/muc#user", "x");
    int created = 0, self = 0;
    for (const xpb_node *c = x ? x->children : NULL; c; c = c->next) {
        if (c->kind != XPB_NODE_ELEMENT || strcmp(c->name, "status") != 0) continue;
        const xpb_attr *code = xpb_node_attr(c, "", "code");
        created |= code && strcmp(code->value, "201") == 0;
        self |= code && strcmp(code->value, "110") == 0;
    }
    const xpb_attr *from = xpb_node_attr(el, "", "from");
    if (!created || !self || !from) return;
    char room[3 * 1024 + 8];
    const char *slash = strchr(from->value, '/');
    size_t n = slash ? (size_t)(slash - from->value) : from->value_len;
    if (n >= sizeof room) return;
    memcpy(room, from->value, n);
    room[n] = '\0';
    Xpb__V1__Attribute type = XPB__V1__ATTRIBUTE__INIT;
    type.name = "type";
    type.value = "submit";
    Xpb__V1__Attribute *attrs[] = {&type};
    Xpb__V1__Element form = XPB__V1__ELEMENT__INIT;
    form.ns = "jabber:x:data";
    form.name = "x";
    form.n_attr = 1;
    form.attr = attrs;
    Xpb__V1__Node node = XPB__V1__NODE__INIT;
    node.node_case = XPB__V1__NODE__NODE_ELEMENT;
    node.element = &form;
    Xpb__V1__Node *children[] = {&node};
    Xpb__V1__Element query = XPB__V1__ELEMENT__INIT;
    query.ns = "http://jabber.org/protocol/muc#owner";
    query.name = "query";
    query.n_child = 1;
    query.child = children;
    Xpb__V1__Element *ext[] = {&query};
    xpb_stanza iq = XPB__V1__STANZA__INIT;
    iq.has_kind = iq.has_type = 1;
    iq.kind = XPB__V1__KIND__KIND_IQ;
    iq.type = XPB__V1__STANZA_TYPE__TYPE_SET;
    iq.to = room;
    char id[64];
    snprintf(id, sizeof id, "xpb-room-%" PRIu64, ++a->d->iq_counter);
    iq.id = id;
    iq.n_extension = 1;
    iq.extension = ext;
    if (send_own(a, &iq) == 0)
        xpb_log(XPB_LOG_INFO, "session %s: created %s; accepting the default configuration",
                a->name, room);
}

static void self_ping_account(struct account *a)
{
    for (struct room *r = a->rooms; r; r = r->next) {
        char to[3 * 1024 + 8];
        snprintf(to, sizeof to, "%s/%s", r->room, r->nick);
        xpb_stanza st = XPB__V1__STANZA__INIT;
        st.has_kind = st.has_type = st.has_ping = 1;
        st.kind = XPB__V1__KIND__KIND_IQ;
        st.type = XPB__V1__STANZA_TYPE__TYPE_GET;
        st.ping = 1;
        st.to = to;
        char id[64];
        snprintf(id, sizeof id, "xpb-sp-%" PRIu64, ++a->d->iq_counter);
        st.id = id;
        if (send_own(a, &st) != 0) return;
        struct pending_iq *p =
            pending_add(a, IQ_SELFPING, id, to, NULL, XPB_DAEMON_SELF_PING_TIMEOUT_MS);
        if (p) p->room = strdup(r->room);
    }
}

static void on_ping_timer(evutil_socket_t fd, short what, void *arg)
{
    xpb_daemon *d = arg;
    (void)fd, (void)what;
    for (struct account *a = d->accounts; a; a = a->next) {
        xpb_session *s = session_of(a);
        if (!a->dead && !a->removing && s && xpb_session_get_state(s) == XPB_SS_ONLINE)
            self_ping_account(a);
    }
}

static int room_add(struct account *a, const char *room, const char *nick, const char *pw,
                    int history, struct room **out)
{
    for (struct room *r = a->rooms; r; r = r->next)
        if (strcmp(r->room, room) == 0) { /* a new nick or password replaces the old */
            char *n = strdup(nick), *p = xstrdup(pw);
            if (!n || (pw && !p)) {
                free(n);
                free(p);
                return XPB_ENOMEM;
            }
            free(r->nick);
            free(r->password);
            r->nick = n;
            r->password = p;
            r->history = history;
            *out = r;
            return 0;
        }
    struct room *r = calloc(1, sizeof *r);
    if (!r) return XPB_ENOMEM;
    r->room = strdup(room);
    r->nick = strdup(nick);
    r->password = xstrdup(pw);
    r->history = history;
    if (!r->room || !r->nick || (pw && !r->password)) {
        free(r->room);
        free(r->nick);
        free(r->password);
        free(r);
        return XPB_ENOMEM;
    }
    struct room **tail = &a->rooms; /* keep config order */
    while (*tail) tail = &(*tail)->next;
    *tail = r;
    *out = r;
    return 0;
}

/* ---- accounts --------------------------------------------------------------------- */

static void account_free(struct account *a)
{
    xpb_daemon *d = a->d;
    free(a->pres_status);
    pending_drop_account(d, a, "the session was closed");
    answer_closers(a, NULL);
    if (a->ls) {
        xpb_session_stats st;
        xpb_session_get_stats(xpb_loop_session_get(a->ls), &st);
        d->gone_reconnects += st.reconnects;
        d->gone_resumptions += st.resumptions;
        xpb_loop_remove_session(d->loop, a->ls);
    }
    while (a->h_head) {
        struct handle_ent *e = a->h_head;
        a->h_head = e->next;
        free_handle(e);
    }
    while (a->rooms) {
        struct room *r = a->rooms;
        a->rooms = r->next;
        free(r->room);
        free(r->nick);
        free(r->password);
        free(r->norm);
        free(r);
    }
    if (a->close_timer) event_free(a->close_timer);
    if (a->password) explicit_bzero(a->password, a->password_len);
    free(a->password);
    if (a->restart_cfg) {
        xpb_account_cfg_clear(a->restart_cfg);
        free(a->restart_cfg);
    }
    xpb_account_cfg_clear(&a->cfg);
    free(a->full_jid);
    free(a->name);
    free(a);
}

static void session_config(const xpb_daemon *d, const struct account *a, xpb_session_config *sc,
                           char *jid, size_t jidlen)
{
    xpb_session_config_init(sc);
    if (a->cfg.resource) snprintf(jid, jidlen, "%s/%s", a->cfg.jid, a->cfg.resource);
    else snprintf(jid, jidlen, "%s", a->cfg.jid);
    sc->jid = jid;
    sc->password = a->password;
    sc->password_len = a->password_len;
    sc->host = a->cfg.host;
    sc->port = (uint16_t)a->cfg.port;
    sc->transport = (xpb_transport_kind)a->cfg.transport;
    sc->ws_url = a->cfg.ws_url;
    sc->fetch_roster = a->cfg.fetch_roster;
    sc->send_presence = a->cfg.send_presence;
    sc->presence_show = a->cfg.presence_show;
    sc->presence_status = a->cfg.presence_status;
    sc->stream_management = a->cfg.stream_management;
    sc->queue_max = d->queue_max;
    sc->backoff_reset_ms = d->backoff_reset_s * 1000u;
    /* ws:// only with allow_plaintext_ws, which config.c grants to loopback only */
    sc->allow_plaintext = a->cfg.transport == XPB_TRANSPORT_WEBSOCKET && a->cfg.allow_plaintext_ws;
    sc->max_stanza_bytes = d->limits.max_stanza_bytes;
}

/* Password: inline (an open request) or from cfg->password_file. */
static int account_start(xpb_daemon *d, const xpb_account_cfg *cfg, const char *password,
                         int from_config, char *err, size_t errlen)
{
    struct account *a = calloc(1, sizeof *a);
    if (!a) return XPB_ENOMEM;
    a->d = d;
    a->from_config = from_config;
    int rc = xpb_account_cfg_copy(&a->cfg, cfg);
    if (!rc && !(a->name = strdup(cfg->jid))) rc = XPB_ENOMEM;
    if (!rc && password) {
        a->password_len = strlen(password);
        if (!(a->password = malloc(a->password_len + 1))) rc = XPB_ENOMEM;
        else memcpy(a->password, password, a->password_len + 1);
    } else if (!rc) {
        rc = read_password(cfg->password_file, &a->password, &a->password_len, err, errlen);
    }
    struct room *r;
    for (size_t i = 0; !rc && i < cfg->n_rooms; i++)
        rc = room_add(a, cfg->rooms[i].room, cfg->rooms[i].nick, cfg->rooms[i].password,
                      cfg->rooms[i].history_maxstanzas, &r);
    if (rc) {
        if (rc == XPB_ENOMEM) snprintf(err, errlen, "out of memory");
        account_free(a);
        return rc;
    }
    a->next = d->accounts; /* listed first: the session's first events find it */
    d->accounts = a;
    xpb_session_config sc;
    char jid[3 * 1024 + 8];
    session_config(d, a, &sc, jid, sizeof jid);
    rc = xpb_loop_add_session(d->loop, a->name, &sc, a->cfg.ca_file, &a->ls, err, errlen);
    if (rc) {
        if (!err[0]) snprintf(err, errlen, "%s", xpb_strerror(rc));
        d->accounts = a->next;
        a->ls = NULL;
        account_free(a);
        return rc;
    }
    xpb_log(XPB_LOG_INFO, "session %s: started (%s)", a->name,
            from_config ? "configured" : "opened by request");
    return 0;
}

static void on_close_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct account *a = arg;
    (void)fd, (void)what;
    xpb_log(XPB_LOG_WARN, "session %s: not closed within %u ms; dropping it", a->name,
            XPB_DAEMON_CLOSE_WAIT_MS);
    answer_closers(a, "closed without waiting for the server");
    a->dead = 1;
    schedule_reap(a->d);
}

/* Clean close (unavailable presence, </stream:stream>), then removal. */
static void account_close(struct account *a)
{
    if (a->dead) return;
    if (!a->removing) {
        a->removing = 1;
        a->close_timer = evtimer_new(a->d->base, on_close_timeout, a);
        struct timeval tv = {XPB_DAEMON_CLOSE_WAIT_MS / 1000u,
                             (suseconds_t)(XPB_DAEMON_CLOSE_WAIT_MS % 1000u) * 1000};
        if (a->close_timer) evtimer_add(a->close_timer, &tv);
    }
    xpb_session *s = session_of(a);
    if (s) xpb_session_close(s);
    if ((!s || xpb_session_get_state(s) == XPB_SS_STOPPED) && !a->dead) {
        answer_closers(a, NULL);
        a->dead = 1;
        schedule_reap(a->d);
    }
}

static void finish_shutdown(xpb_daemon *d);

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    xpb_daemon *d = arg;
    (void)fd, (void)what;
    struct account **pp = &d->accounts;
    while (*pp) {
        struct account *a = *pp;
        if (!a->dead) {
            pp = &a->next;
            continue;
        }
        *pp = a->next;
        xpb_account_cfg *restart = a->restart_cfg;
        a->restart_cfg = NULL;
        xpb_log(XPB_LOG_INFO, "session %s: removed", a->name);
        account_free(a);
        if (restart && !d->shutting_down) {
            char err[512] = "";
            if (account_start(d, restart, NULL, 1, err, sizeof err) != 0)
                xpb_log(XPB_LOG_ERROR, "session %s: cannot restart: %s", restart->jid, err);
        }
        if (restart) {
            xpb_account_cfg_clear(restart);
            free(restart);
        }
    }
    if (d->shutting_down && !d->accounts) finish_shutdown(d);
}

/* ---- requests --------------------------------------------------------------------- */

static void req_send(struct account *a, xpb_bus_request *req, const Xpb__V1__SendStanza *op)
{
    xpb_stanza st = *op->stanza; /* shallow: only the id may change */
    char uuid[37], id[XPB_SESSION_ID_MAX + 8];
    expand_id_uuid(&st, uuid);
    uint64_t h;
    if (send_for(a, req, &st, &h, id, sizeof id) == 0) reply_sent(a, req, id);
}

static void req_iq(struct account *a, xpb_bus_request *req, const Xpb__V1__SendIq *op)
{
    xpb_daemon *d = a->d;
    xpb_stanza st = *op->stanza;
    char uuid[37], gen[64], id[XPB_SESSION_ID_MAX + 8];
    expand_id_uuid(&st, uuid);
    if (!st.id || !st.id[0]) {
        snprintf(gen, sizeof gen, "xpb-iq-%" PRIu64 "-%lx", ++d->iq_counter, (long)time(NULL));
        st.id = gen;
    }
    unsigned ms = op->has_timeout_ms && op->timeout_ms ? op->timeout_ms : 10000u;
    if (ms > XPB_DAEMON_MAX_IQ_TIMEOUT_MS) ms = XPB_DAEMON_MAX_IQ_TIMEOUT_MS;
    uint64_t h;
    if (send_for(a, req, &st, &h, id, sizeof id) != 0) return;
    struct pending_iq *p = pending_add(a, IQ_USER, id, st.to, req, ms);
    const char *qid;
    /* XEP-0313 §5: its results are trusted only with this queryid, from st.to. */
    if (p && xpb_trust_mam_queryid(&st, &qid) && !(p->mam_qid = strdup(qid))) {
        pending_free(d, p);
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
    char id[64], sent[XPB_SESSION_ID_MAX + 8];
    snprintf(id, sizeof id, "xpb-roster-%" PRIu64, ++a->d->iq_counter);
    st.id = id;
    uint64_t h;
    if (send_for(a, req, &st, &h, sent, sizeof sent) != 0) return;
    if (!pending_add(a, IQ_ROSTER, sent, NULL, req, 10000u))
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
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
static void resend_presence(struct account *a)
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
    char id[XPB_SESSION_ID_MAX + 8];
    uint64_t h;
    if (send_for(a, req, &st, &h, id, sizeof id) != 0) return;
    if (!op->to && !st.has_type) remember_presence(a, &st, op->status);
    reply_sent(a, req, id);
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
    char to[3 * 1024 + 8], id[XPB_SESSION_ID_MAX + 8];
    join_stanza(r, &st, &mj, &mh, to, sizeof to);
    uint64_t h;
    if (send_for(a, req, &st, &h, id, sizeof id) == 0) {
        xpb_log(XPB_LOG_INFO, "session %s: joining %s as %s", a->name, r->room, r->nick);
        reply_sent(a, req, id);
    }
}

static pub_state public_state(xpb_session_state s)
{
    switch (s) {
    case XPB_SS_ONLINE: return XPB__V1__SESSION_STATE__STATE__STATE_ONLINE;
    case XPB_SS_BACKOFF:
    case XPB_SS_CLOSING: return XPB__V1__SESSION_STATE__STATE__STATE_DISCONNECTED;
    case XPB_SS_STOPPED: return XPB__V1__SESSION_STATE__STATE__STATE_STOPPED;
    default: return XPB__V1__SESSION_STATE__STATE__STATE_CONNECTING;
    }
}

static Xpb__V1__SessionInfo *session_info(xpb_daemon *d, struct account *a)
{
    xpb_arena *ar = d->rarena;
    Xpb__V1__SessionInfo *si = xpb_arena_calloc(ar, sizeof *si);
    if (!si) return NULL;
    xpb__v1__session_info__init(si);
    xpb_session *s = session_of(a);
    xpb_session_stats st = {0};
    if (s) xpb_session_get_stats(s, &st);
    si->account = a->name;
    si->jid = a->full_jid;
    si->has_state = si->has_stanzas_in = si->has_stanzas_out = si->has_queued = 1;
    si->has_unacked = si->has_reconnects = si->has_resumptions = 1;
    si->state = s ? public_state(xpb_session_get_state(s))
                  : XPB__V1__SESSION_STATE__STATE__STATE_STOPPED;
    si->stanzas_in = st.stanzas_in;
    si->stanzas_out = st.stanzas_out;
    si->queued = st.queued;
    si->unacked = st.unacked;
    si->reconnects = st.reconnects;
    si->resumptions = st.resumptions;
    size_t n = 0;
    for (struct room *r = a->rooms; r; r = r->next) n++;
    si->room = n ? xpb_arena_alloc(ar, n * sizeof *si->room) : NULL;
    if (n && !si->room) return NULL;
    for (struct room *r = a->rooms; r; r = r->next) si->room[si->n_room++] = r->room;
    return si;
}

static void req_list(xpb_daemon *d, xpb_bus_request *req)
{
    xpb_arena_reset(d->rarena);
    size_t n = 0;
    for (struct account *a = d->accounts; a; a = a->next) n += !a->dead;
    Xpb__V1__SessionList sl = XPB__V1__SESSION_LIST__INIT;
    sl.session = n ? xpb_arena_alloc(d->rarena, n * sizeof *sl.session) : NULL;
    for (struct account *a = d->accounts; a && (sl.session || !n); a = a->next) {
        if (a->dead) continue;
        Xpb__V1__SessionInfo *si = session_info(d, a);
        if (!si) break;
        sl.session[sl.n_session++] = si;
    }
    if (sl.n_session != n) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return;
    }
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.result_case = XPB__V1__RESPONSE__RESULT_SESSIONS;
    resp.sessions = &sl;
    xpb_bus_reply(req, &resp);
}

static void req_status(xpb_daemon *d, xpb_bus_request *req)
{
    xpb_daemon_counters c;
    xpb_daemon_get_counters(d, &c);
    xpb_bus_stats bs;
    xpb_bus_get_stats(d->bus, &bs);
    Xpb__V1__BridgeStatus st = XPB__V1__BRIDGE_STATUS__INIT;
    st.version = XPB_VERSION_STRING;
    st.has_uptime_s = st.has_sessions = st.has_sessions_online = 1;
    st.has_events_published = st.has_last_seq = 1;
    st.uptime_s = (uint64_t)(time(NULL) - d->started);
    st.sessions = c.n_accounts;
    st.sessions_online = c.sessions[XPB_MST_ONLINE];
    st.events_published = bs.events;
    st.last_seq = bs.last_seq;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.result_case = XPB__V1__RESPONSE__RESULT_STATUS;
    resp.status = &st;
    xpb_bus_reply(req, &resp);
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

static void on_request(void *ud, xpb_bus_request *req, const Xpb__V1__Request *r)
{
    xpb_daemon *d = ud;
    if (d->shutting_down) {
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "shutting down");
        return;
    }
    switch (r->op_case) {
    case XPB__V1__REQUEST__OP_LIST: req_list(d, req); return;
    case XPB__V1__REQUEST__OP_STATUS: req_status(d, req); return;
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
    case XPB__V1__REQUEST__OP_IQ: req_iq(a, req, r->iq); break;
    case XPB__V1__REQUEST__OP_PRESENCE: req_presence(a, req, r->presence); break;
    case XPB__V1__REQUEST__OP_ROSTER: req_roster(a, req); break;
    case XPB__V1__REQUEST__OP_JOIN: req_join(a, req, r->join); break;
    default:
        xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST, "unknown operation");
        break;
    }
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

static int remember_config(xpb_daemon *d, const xpb_config *cfg)
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
    int rc = xpb_bus_new(&d->bus, d->loop, &bc, on_request, d, err, errlen);
    if (rc && !err[0]) snprintf(err, errlen, "bus: %s", xpb_strerror(rc));
    return rc;
}

static int daemon_events(xpb_daemon *d, const xpb_config *cfg)
{
    d->reap_ev = event_new(d->base, -1, 0, on_reap, d);
    d->ping_timer = event_new(d->base, -1, EV_PERSIST, on_ping_timer, d);
    if (!d->reap_ev || !d->ping_timer) return XPB_ENOMEM;
    if (cfg->muc_ping_s) {
        struct timeval tv = {(time_t)cfg->muc_ping_s, 0};
        event_add(d->ping_timer, &tv);
    }
    return 0;
}

static int daemon_init(xpb_daemon *d, struct event_base *base, const xpb_config *cfg, char *err,
                       size_t errlen)
{
    d->base = base;
    d->started = time(NULL);
    d->queue_max = cfg->queue_max;
    d->muc_ping_s = cfg->muc_ping_s;
    d->backoff_reset_s = cfg->backoff_reset_s;
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
    if (!d->arena || !d->rarena || !d->plan || daemon_events(d, cfg)) {
        snprintf(err, errlen, "out of memory");
        return XPB_ENOMEM;
    }
    xpb_loop_config lc = {.base = base, .on_event = on_session_event, .on_log = on_loop_log,
                          .ud = d};
    int rc = xpb_loop_new(&d->loop, &lc);
    if (rc) {
        snprintf(err, errlen, "event loop: %s", xpb_strerror(rc));
        return rc;
    }
    if ((rc = bus_start(d, cfg, err, errlen))) return rc;
    d->ctr.bus_up = 1;
    const char *ml = cfg->metrics_listen;
    if (ml && ml[0] && strcmp(ml, "0") != 0) {
        xpb_metrics_opts mo = {.listen = ml,
                               .allow_remote = cfg->metrics_allow_remote || cfg->allow_remote,
                               .max_connections = cfg->metrics_max_connections,
                               .idle_timeout_s = cfg->metrics_idle_timeout_s};
        rc = xpb_metrics_new(&d->metrics, base, &mo, d, err, errlen);
        if (rc) return rc;
    }
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

int xpb_daemon_new(xpb_daemon **out, struct event_base *base, const xpb_config *cfg, char *err,
                   size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    xpb_daemon *d = calloc(1, sizeof *d);
    if (!d) return XPB_ENOMEM;
    int rc = daemon_init(d, base, cfg, err, errlen);
    if (rc) {
        xpb_daemon_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

static void finish_shutdown(xpb_daemon *d)
{
    if (d->shutdown_timer) evtimer_del(d->shutdown_timer);
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
    event_base_loopbreak(d->base);
}

static void on_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
    xpb_daemon *d = arg;
    (void)fd, (void)what;
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
    evtimer_del(d->ping_timer);
    d->shutdown_timer = evtimer_new(d->base, on_shutdown_timeout, d);
    struct timeval tv = {XPB_DAEMON_CLOSE_WAIT_MS / 1000u,
                         (suseconds_t)(XPB_DAEMON_CLOSE_WAIT_MS % 1000u) * 1000};
    if (d->shutdown_timer) evtimer_add(d->shutdown_timer, &tv);
    for (struct account *a = d->accounts; a; a = a->next) account_close(a);
    schedule_reap(d); /* finishes at once when there was nothing to close */
}

/* Remember nc to start the account again once its close is done (on_reap);
 * the newest configuration wins. 0, or -1 out of memory. */
static int schedule_restart(struct account *a, const xpb_account_cfg *nc)
{
    xpb_account_cfg *copy = calloc(1, sizeof *copy);
    if (!copy || xpb_account_cfg_copy(copy, nc) != 0) {
        free(copy);
        xpb_log(XPB_LOG_ERROR, "reload: out of memory");
        return -1;
    }
    if (a->restart_cfg) {
        xpb_account_cfg_clear(a->restart_cfg);
        free(a->restart_cfg);
    }
    a->restart_cfg = copy;
    return 0;
}

static void reload_account(xpb_daemon *d, const xpb_account_cfg *nc)
{
    struct account *a = find_account(d, nc->jid);
    char err[512] = "";
    if (!a) {
        xpb_log(XPB_LOG_INFO, "reload: adding account %s", nc->jid);
        if (account_start(d, nc, NULL, 1, err, sizeof err) != 0)
            xpb_log(XPB_LOG_ERROR, "reload: account %s: %s", nc->jid, err);
        return;
    }
    if (a->removing) {
        /* Back in the file while its close is still in progress: start it
         * again once the close is done, instead of losing it. */
        xpb_log(XPB_LOG_INFO, "reload: account %s is closing; starting it again afterwards",
                nc->jid);
        schedule_restart(a, nc);
        return;
    }
    if (!a->from_config) {
        a->from_config = 1; /* opened by request, now configured: keep it as it is */
        return;
    }
    if (xpb_account_cfg_equal(&a->cfg, nc)) return;
    xpb_log(XPB_LOG_INFO, "reload: account %s changed; restarting it", nc->jid);
    if (schedule_restart(a, nc) == 0) account_close(a);
}

void xpb_daemon_reload(xpb_daemon *d, const xpb_config *cfg)
{
    if (d->shutting_down) return;
    xpb_log_set_level(cfg->log_level);
    unsigned removed = 0;
    for (struct account *a = d->accounts; a; a = a->next) {
        if (!a->from_config || xpb_config_find(cfg, a->name)) continue;
        if (a->removing && a->restart_cfg) { /* a pending restart no longer wanted */
            xpb_account_cfg_clear(a->restart_cfg);
            free(a->restart_cfg);
            a->restart_cfg = NULL;
        } else if (!a->removing) {
            xpb_log(XPB_LOG_INFO, "reload: removing account %s", a->name);
            account_close(a);
            removed++;
        }
    }
    for (size_t i = 0; i < cfg->n_accounts; i++) reload_account(d, &cfg->accounts[i]);
    if (remember_config(d, cfg)) xpb_log(XPB_LOG_ERROR, "reload: out of memory");
    xpb_log(XPB_LOG_INFO, "reload: done (%zu accounts configured, %u removed); bus, metrics and "
                          "limits changes take effect at the next start",
            cfg->n_accounts, removed);
}

void xpb_daemon_free(xpb_daemon *d)
{
    if (!d) return;
    while (d->iqs) pending_free(d, d->iqs);
    xpb_metrics_free(d->metrics);
    if (d->bus) xpb_bus_free(d->bus);
    d->bus = NULL;
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
    xpb_loop_free(d->loop);
    if (d->reap_ev) event_free(d->reap_ev);
    if (d->ping_timer) event_free(d->ping_timer);
    if (d->shutdown_timer) event_free(d->shutdown_timer);
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

static int metrics_state(xpb_session_state s)
{
    switch (s) {
    case XPB_SS_ONLINE: return XPB_MST_ONLINE;
    case XPB_SS_BACKOFF: return XPB_MST_DISCONNECTED;
    case XPB_SS_CLOSING: return XPB_MST_CLOSING;
    case XPB_SS_STOPPED: return XPB_MST_STOPPED;
    default: return XPB_MST_CONNECTING;
    }
}

const char *xpb_metrics_state_name(int st)
{
    static const char *const n[] = {"connecting", "online", "disconnected", "closing", "stopped"};
    return st >= 0 && st < XPB_MST_COUNT ? n[st] : "unknown";
}

void xpb_daemon_get_counters(xpb_daemon *d, xpb_daemon_counters *out)
{
    *out = d->ctr;
    memset(out->sessions, 0, sizeof out->sessions);
    out->n_accounts = 0;
    out->reconnects = d->gone_reconnects;
    out->resumptions = d->gone_resumptions;
    out->queue_max = d->queue_max;
    out->muc_self_ping_s = d->muc_ping_s;
    out->max_stanza_bytes = d->limits.max_stanza_bytes;
    for (struct account *a = d->accounts; a; a = a->next) {
        xpb_session *s = session_of(a);
        if (!s || a->dead) continue;
        xpb_session_stats st;
        xpb_session_get_stats(s, &st);
        out->reconnects += st.reconnects;
        out->resumptions += st.resumptions;
        out->sessions[metrics_state(xpb_session_get_state(s))]++;
        out->n_accounts++;
    }
}

void xpb_daemon_get_bus_stats(xpb_daemon *d, xpb_bus_stats *out)
{
    if (d->bus) xpb_bus_get_stats(d->bus, out);
    else memset(out, 0, sizeof *out);
}

int xpb_daemon_account_at(xpb_daemon *d, size_t i, const char **name, unsigned *queued,
                          unsigned *unacked)
{
    for (struct account *a = d->accounts; a; a = a->next) {
        xpb_session *s = session_of(a);
        if (!s || a->dead) continue;
        if (i-- > 0) continue;
        xpb_session_stats st;
        xpb_session_get_stats(s, &st);
        *name = a->name;
        *queued = st.queued;
        *unacked = st.unacked;
        return 1;
    }
    return 0;
}
