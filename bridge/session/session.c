/* The c2s session state machine (bridge/session/include/xpb_session.h): stream negotiation
 * (RFC 6120 §4-§7), STARTTLS, SASL via bridge/session/sasl.c, resource binding, stream
 * management with resumption (XEP-0198), pings (XEP-0199), backoff and clean
 * close. Pure: every effect goes through the ops table the loop provides. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_jid.h"
#include "xpb_sasl.h"
#include "xpb_session.h"

#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_SM "urn:xmpp:sm:3"
#define NS_PING "urn:xmpp:ping"
#define NS_ROSTER "jabber:iq:roster"
#define NS_FRAMING "urn:ietf:params:xml:ns:xmpp-framing"
#define NS_STREAM_ERR "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_SASL_CB "urn:xmpp:sasl-cb:0" /* XEP-0440 */
#define MAX_CB_TYPES 8u                  /* XEP-0440 types considered */

/* Steps inside XPB_SS_BIND (RFC 6120 §7, RFC 3921 §3, XEP-0198 §3, §5). */
typedef enum bind_phase { PH_NONE = 0, PH_RESUME, PH_BIND, PH_SESSION, PH_ENABLE } bind_phase;

/* One outbound stanza; handle 0 marks the session's own (presence, roster). */
typedef struct out_item {
    uint64_t handle;
    char *xml;
    size_t len;
} out_item;

struct xpb_session {
    const xpb_session_ops *ops;
    void *io;
    xpb_session_config cfg;      /* strings point into the copies below */
    char *jid_str, *host, *ws_url, *presence_show, *presence_status;
    unsigned char *password;
    xpb_jid jid;                 /* parsed cfg.jid */
    char *bound_jid;

    xpb_session_state state;
    xpb_reader *reader;
    xpb_session_target target;
    char *redirect_host, *redirect_text, *redirect_uri;
    int redirect_pending;
    unsigned redirects;

    int link;                    /* ops->connect called, transport not reported gone */
    int tls, authed, transport_up, halt;
    int want_starttls, want_restart;
    char *cb_type;
    unsigned char cb_data[XPB_SASL_CB_MAX];
    size_t cb_len;
    xpb_sasl *sasl;
    xpb_sasl_cache *sasl_cache;
    char *test_nonce;

    bind_phase phase;
    int sm_offered, session_required;
    char iq_bind[32], iq_session[32], iq_roster[32], iq_ping[32];
    uint64_t iq_counter, id_counter, next_handle;
    char last_id[XPB_SESSION_ID_MAX];
    size_t last_bytes; /* XML size of the stanza last accepted by xpb_session_send */

    /* XEP-0198 */
    int sm_on;                   /* enabled or resumed on this stream */
    char *sm_id;                 /* resumable session id (kept across links) */
    uint32_t h_in, last_acked;
    unsigned since_r;
    int ack_timer_armed;

    out_item *items;             /* [0, n_sent) sent and unacked; the rest queued */
    size_t n_items, cap_items, n_sent;

    unsigned backoff_cur;
    int ping_wait;
    xpb_session_stats stats;
};

/* ---- small helpers --------------------------------------------------------- */

static char *dup_str(const char *s)
{
    if (s == NULL) return NULL;
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d != NULL) memcpy(d, s, n + 1);
    return d;
}

static void free_secret(void *p, size_t len)
{
    if (p == NULL) return;
    volatile unsigned char *v = p;
    for (size_t i = 0; i < len; i++) v[i] = 0;
    free(p);
}

static int is_ws(const xpb_session *s) { return s->cfg.transport == XPB_TRANSPORT_WEBSOCKET; }

/* Stanzas we write: in a TCP stream jabber:client is the default namespace;
 * RFC 7395 §3.3.3 makes each WebSocket message carry it explicitly. */
static const char *client_xmlns(const xpb_session *s)
{
    return is_ws(s) ? " xmlns='" XPB_NS_CLIENT "'" : "";
}

static const char *node_text(const xpb_node *el)
{
    for (const xpb_node *c = el ? el->children : NULL; c != NULL; c = c->next)
        if (c->kind == XPB_NODE_TEXT) return c->text;
    return "";
}

static const char *attr_value(const xpb_node *el, const char *name)
{
    const xpb_attr *a = xpb_node_attr(el, "", name);
    return a ? a->value : NULL;
}

static int parse_u32(const char *v, uint32_t *out)
{
    if (v == NULL || *v == '\0' || strlen(v) > 10) return XPB_EINVAL;
    uint64_t x = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9') return XPB_EINVAL;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    if (x > UINT32_MAX) return XPB_EINVAL;
    *out = (uint32_t)x;
    return 0;
}

static void emit_event(xpb_session *s, xpb_session_event_kind kind, const char *reason, int code)
{
    xpb_session_event ev = {.kind = kind, .state = s->state, .reason = reason, .code = code};
    s->ops->event(s->io, &ev);
}

static void set_state(xpb_session *s, xpb_session_state st, const char *reason)
{
    if (s->state == st) return;
    s->state = st;
    emit_event(s, XPB_SE_STATE, reason, 0);
}

static void set_timer(xpb_session *s, xpb_session_timer t, unsigned ms)
{
    s->ops->set_timer(s->io, t, ms);
}

static void cancel_link_timers(xpb_session *s)
{
    set_timer(s, XPB_TIMER_PING, 0);
    set_timer(s, XPB_TIMER_CONNECT, 0);
    set_timer(s, XPB_TIMER_ACK, 0);
    set_timer(s, XPB_TIMER_CLOSE, 0);
    set_timer(s, XPB_TIMER_STABLE, 0);
    s->ack_timer_armed = 0;
    s->ping_wait = 0;
}

static int emit_bytes(xpb_session *s, const char *data, size_t len)
{
    s->stats.bytes_out += len;
    return s->ops->send(s->io, data, len);
}

static int emit_str(xpb_session *s, const char *str) { return emit_bytes(s, str, strlen(str)); }

/* Build one element in a buffer and send it; format pieces are escaped by
 * the callers (only our own ids and the configured names go in). */
static int emit_buf(xpb_session *s, xpb_buf *b, int rc)
{
    if (rc == 0) rc = emit_bytes(s, b->data, b->len);
    xpb_buf_free(b);
    return rc;
}

static void next_iq_id(xpb_session *s, char *dst, size_t cap, const char *what)
{
    snprintf(dst, cap, "xpb-%s-%" PRIu64, what, ++s->iq_counter);
}

/* ---- outbound queue -------------------------------------------------------- */

static void item_release(xpb_session *s, size_t i)
{
    free(s->items[i].xml);
    memmove(&s->items[i], &s->items[i + 1], (s->n_items - i - 1) * sizeof *s->items);
    s->n_items--;
    if (i < s->n_sent) s->n_sent--;
}

static int item_insert(xpb_session *s, size_t at, uint64_t handle, const char *xml, size_t len)
{
    if (s->n_items == s->cap_items) {
        size_t cap = s->cap_items ? s->cap_items * 2 : 16;
        out_item *n = realloc(s->items, cap * sizeof *n);
        if (n == NULL) return XPB_ENOMEM;
        s->items = n;
        s->cap_items = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) return XPB_ENOMEM;
    memcpy(copy, xml, len);
    copy[len] = '\0';
    memmove(&s->items[at + 1], &s->items[at], (s->n_items - at) * sizeof *s->items);
    s->items[at] = (out_item){.handle = handle, .xml = copy, .len = len};
    s->n_items++;
    return 0;
}

static void report_item(xpb_session *s, xpb_session_event_kind kind, uint64_t handle,
                        const char *reason)
{
    if (handle == 0) return; /* the session's own stanza */
    xpb_session_event ev = {.kind = kind, .state = s->state, .handle = handle, .reason = reason};
    s->ops->event(s->io, &ev);
}

/* XEP-0198 §4: the server has handled `count` more of our stanzas. */
static void release_acked(xpb_session *s, uint32_t count)
{
    for (uint32_t i = 0; i < count && s->n_sent > 0; i++) {
        uint64_t h = s->items[0].handle;
        item_release(s, 0);
        report_item(s, XPB_SE_ACKED, h, NULL);
    }
}

static void fail_all_items(xpb_session *s, const char *reason)
{
    while (s->n_items > 0) {
        uint64_t h = s->items[0].handle;
        item_release(s, 0);
        report_item(s, XPB_SE_FAILED, h, reason);
    }
    s->n_sent = 0;
}

/* A fresh session: our own stanzas of the old one are pointless (presence and
 * roster are sent again); the user's are all resent. */
static void drop_internal_items(xpb_session *s)
{
    s->n_sent = 0;
    for (size_t i = 0; i < s->n_items;) {
        if (s->items[i].handle == 0)
            item_release(s, i);
        else
            i++;
    }
}

static void request_ack(xpb_session *s)
{
    emit_str(s, "<r xmlns='" NS_SM "'/>");
    s->since_r = 0;
}

/* After a tracked send: ask for an ack every ack_every stanzas, and once the
 * burst is over (the ACK timer runs on the loop's next turn) so that the last
 * stanzas of a burst are acknowledged at once too (XEP-0198 §4). */
static void after_tracked_send(xpb_session *s)
{
    if (++s->since_r >= s->cfg.ack_every) {
        request_ack(s);
    } else if (!s->ack_timer_armed) {
        s->ack_timer_armed = 1;
        set_timer(s, XPB_TIMER_ACK, XPB_SESSION_ACK_IDLE_MS);
    }
}

/* The queue has just been written in one go: one <r/> for all of it. */
static void request_ack_if_pending(xpb_session *s)
{
    if (s->sm_on && s->since_r > 0 && s->state == XPB_SS_ONLINE) request_ack(s);
}

/* Send item n_sent; with SM it stays until acked, without it is done. */
static void send_next_item(xpb_session *s)
{
    out_item *it = &s->items[s->n_sent];
    emit_bytes(s, it->xml, it->len);
    s->stats.stanzas_out++;
    if (s->sm_on) {
        s->n_sent++;
        after_tracked_send(s);
    } else {
        uint64_t h = it->handle;
        item_release(s, s->n_sent);
        report_item(s, XPB_SE_ACKED, h, NULL);
    }
}

static void flush_queue(xpb_session *s)
{
    while (s->state == XPB_SS_ONLINE && s->n_sent < s->n_items) send_next_item(s);
}

static void forget_sm(xpb_session *s);
static void enter_backoff(xpb_session *s, const char *reason, unsigned lo);

static size_t count_internal_unacked(const xpb_session *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_sent; i++) n += s->items[i].handle == 0;
    return n;
}

/* The session's own stanzas count for h like any other (XEP-0198 §4). They
 * are kept until acknowledged like the user's, so a server that makes us
 * answer (pings) but never acknowledges would grow that list without end:
 * past XPB_SESSION_MAX_INTERNAL_UNACKED the stream is given up and a fresh
 * one started (the user's stanzas are resent there; ours are not needed). */
static int send_internal(xpb_session *s, const char *xml, size_t len)
{
    if (s->sm_on && count_internal_unacked(s) >= XPB_SESSION_MAX_INTERNAL_UNACKED) {
        char reason[160];
        snprintf(reason, sizeof reason,
                 "server acknowledged none of our last %u stanzas (XEP-0198): new session",
                 XPB_SESSION_MAX_INTERNAL_UNACKED);
        forget_sm(s);
        drop_internal_items(s);
        enter_backoff(s, reason, 0);
        return XPB_ESTREAM;
    }
    if (s->sm_on) {
        int rc = item_insert(s, s->n_sent, 0, xml, len);
        if (rc != 0) return rc;
        send_next_item(s);
        return 0;
    }
    s->stats.stanzas_out++;
    return emit_bytes(s, xml, len);
}

static int send_internal_buf(xpb_session *s, xpb_buf *b, int rc)
{
    if (rc == 0) rc = send_internal(s, b->data, b->len);
    xpb_buf_free(b);
    return rc;
}

/* ---- stream open / close --------------------------------------------------- */

static int send_stream_header(xpb_session *s)
{
    xpb_buf b;
    xpb_buf_init(&b, 0);
    int rc;
    if (is_ws(s)) { /* RFC 7395 §3.4 */
        rc = xpb_buf_append_str(&b, "<open xmlns='" NS_FRAMING "' to='");
        if (rc == 0) rc = xpb_xml_escape_attr(&b, s->jid.domain, strlen(s->jid.domain));
        if (rc == 0) rc = xpb_buf_append_str(&b, "' version='1.0'/>");
    } else {
        /* RFC 6120 §4.7.1: 'from' only once the stream is protected. */
        char *bare = s->tls ? xpb_jid_bare(&s->jid) : NULL;
        rc = xpb_buf_append_str(&b, "<?xml version='1.0'?>");
        if (rc == 0) rc = xpb_xml_write_stream_header(&b, bare, s->jid.domain, NULL, "1.0", NULL);
        free(bare);
    }
    return emit_buf(s, &b, rc);
}

static void send_stream_close(xpb_session *s)
{
    emit_str(s, is_ws(s) ? "<close xmlns='" NS_FRAMING "'/>" : "</stream:stream>");
}

static void open_stream(xpb_session *s)
{
    xpb_reader_reset(s->reader);
    s->phase = PH_NONE;
    set_state(s, XPB_SS_STREAM_OPEN, s->authed ? "stream restart after SASL"
                                     : s->tls  ? "stream restart after TLS"
                                               : "stream opened");
    send_stream_header(s);
}

/* ---- leaving a link: backoff, stop, close ---------------------------------- */

static void drop_link(xpb_session *s)
{
    s->halt = 1;
    cancel_link_timers(s);
    if (s->link) s->ops->disconnect(s->io); /* also aborts a connect in progress */
    s->link = s->transport_up = 0;
    s->tls = s->authed = 0;
    s->sm_on = 0; /* SM id, counters and items are kept for resumption */
    s->phase = PH_NONE;
    s->want_starttls = s->want_restart = 0;
    xpb_sasl_free(s->sasl);
    s->sasl = NULL;
}

/* Exponential backoff with jitter: delay in [floor, cur], cur doubling from
 * backoff_min to backoff_max (AWS "full jitter", with a floor). */
static unsigned next_backoff(xpb_session *s, unsigned lo)
{
    unsigned cur = s->backoff_cur ? s->backoff_cur : s->cfg.backoff_min_ms;
    if (cur > s->cfg.backoff_max_ms) cur = s->cfg.backoff_max_ms;
    unsigned next = cur > s->cfg.backoff_max_ms / 2 ? s->cfg.backoff_max_ms : cur * 2;
    s->backoff_cur = next;
    if (lo < s->cfg.backoff_min_ms) lo = s->cfg.backoff_min_ms;
    if (lo > s->cfg.backoff_max_ms) lo = s->cfg.backoff_max_ms;
    if (cur < lo) cur = lo;
    uint32_t r = s->ops->random(s->io);
    return lo + (unsigned)(r % ((uint64_t)(cur - lo) + 1));
}

static void enter_backoff(xpb_session *s, const char *reason, unsigned lo)
{
    drop_link(s);
    set_state(s, XPB_SS_BACKOFF, reason);
    set_timer(s, XPB_TIMER_RECONNECT, next_backoff(s, lo));
}

static void forget_sm(xpb_session *s)
{
    free(s->sm_id);
    s->sm_id = NULL;
    s->h_in = s->last_acked = 0;
}

/* Closed for good: the error is reported once, pending stanzas fail. */
static void stop_session(xpb_session *s, int code, const char *reason)
{
    drop_link(s);
    set_timer(s, XPB_TIMER_RECONNECT, 0);
    if (code != 0) emit_event(s, XPB_SE_ERROR, reason, code);
    forget_sm(s);
    fail_all_items(s, code ? reason : "session closed");
    if (s->state != XPB_SS_STOPPED) {
        s->state = XPB_SS_STOPPED;
        emit_event(s, XPB_SE_STATE, reason, code);
    }
}

static void do_connect(xpb_session *s);

/* ---- features: STARTTLS, SASL, bind / resume ------------------------------- */

static void send_starttls(xpb_session *s)
{
    set_state(s, XPB_SS_STARTTLS, "STARTTLS requested");
    emit_str(s, "<starttls xmlns='" NS_TLS "'/>");
}

static int new_sasl(xpb_session *s, const char *const *server_cb_types, size_t n_cb)
{
    xpb_sasl_config c;
    xpb_sasl_config_init(&c);
    c.server_cb_types = server_cb_types;
    c.n_server_cb_types = n_cb;
    c.authcid = s->jid.local;
    c.password = s->password;
    c.password_len = s->cfg.password_len;
    c.tls = s->tls;
    if (s->tls && s->cb_type != NULL && s->cb_len > 0) {
        c.cb_type = s->cb_type;
        c.cb_data = s->cb_data;
        c.cb_data_len = s->cb_len;
    }
    c.cache = s->sasl_cache;
    xpb_sasl_free(s->sasl);
    s->sasl = NULL;
    int rc = xpb_sasl_new(&s->sasl, &c);
    if (rc == 0 && s->test_nonce != NULL) rc = xpb_sasl_test_set_nonce(s->sasl, s->test_nonce);
    return rc;
}

/* <auth/>, <response/>: base64 of SASL data that may hold the password, so
 * the buffer is wiped after sending (RFC 6120 §6.4.2). */
static int send_sasl(xpb_session *s, const char *head, const char *tail,
                     const unsigned char *data, size_t len)
{
    char *b64 = NULL;
    size_t b64_len = 0;
    int rc = xpb_sasl_b64_encode(data, len, &b64, &b64_len);
    if (rc != 0) return rc;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    rc = xpb_buf_append_str(&b, head);
    if (rc == 0) rc = xpb_buf_append(&b, b64, b64_len);
    if (rc == 0) rc = xpb_buf_append_str(&b, tail);
    if (rc == 0) rc = emit_bytes(s, b.data, b.len);
    if (b.data != NULL) free_secret(b.data, b.cap);
    free_secret(b64, b64_len);
    return rc;
}

static size_t offered_mechs(const xpb_node *mechs, const char **out, size_t max)
{
    size_t n = 0;
    for (const xpb_node *c = mechs ? mechs->children : NULL; c && n < max; c = c->next)
        if (c->kind == XPB_NODE_ELEMENT && strcmp(c->ns, NS_SASL) == 0 &&
            strcmp(c->name, "mechanism") == 0)
            out[n++] = node_text(c);
    return n;
}

/* XEP-0440: the channel-binding types the server can verify; *listed = 0
 * when it does not say. */
static size_t offered_cb_types(const xpb_node *features, const char **out, size_t max,
                               int *listed)
{
    const xpb_node *cb = xpb_node_child(features, NS_SASL_CB, "sasl-channel-binding");
    size_t n = 0;
    *listed = cb != NULL;
    for (const xpb_node *c = cb ? cb->children : NULL; c && n < max; c = c->next) {
        int is_cb = c->kind == XPB_NODE_ELEMENT && strcmp(c->ns, NS_SASL_CB) == 0 &&
                    strcmp(c->name, "channel-binding") == 0;
        const xpb_attr *type = is_cb ? xpb_node_attr(c, "", "type") : NULL;
        if (type) out[n++] = type->value;
    }
    return n;
}

/* The offered names for the log, space-separated. They come from the
 * server: a name that is not a SASL mechanism name (RFC 4422 §3.1: 1 to 20
 * of A-Z 0-9 - _) is shown as "?". */
static void mech_list(char *out, size_t cap, const char *const *offered, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && len < cap; i++) {
        const char *m = offered[i] ? offered[i] : "";
        size_t k = strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_");
        int ok = k > 0 && k <= 20 && m[k] == '\0';
        int w = snprintf(out + len, cap - len, "%s%s", i ? " " : "", ok ? m : "?");
        if (w < 0) break;
        len += (size_t)w;
    }
}

static void start_auth(xpb_session *s, const xpb_node *features)
{
    const char *offered[XPB_SESSION_MAX_MECHS], *cb_types[MAX_CB_TYPES];
    size_t n = offered_mechs(xpb_node_child(features, NS_SASL, "mechanisms"), offered,
                             XPB_SESSION_MAX_MECHS);
    int cb_listed;
    size_t n_cb = offered_cb_types(features, cb_types, MAX_CB_TYPES, &cb_listed);
    const char *mech = NULL;
    const unsigned char *out = NULL;
    size_t out_len = 0;
    int rc = new_sasl(s, cb_listed ? cb_types : NULL, n_cb);
    if (rc == 0) rc = xpb_sasl_select(s->sasl, offered, n, &mech);
    if (rc != 0) {
        char why[512];
        snprintf(why, sizeof why, "SASL: %s%s%s", xpb_strerror(rc),
                 s->sasl && *xpb_sasl_error(s->sasl) ? ": " : "",
                 s->sasl ? xpb_sasl_error(s->sasl) : "");
        stop_session(s, rc, why);
        return;
    }
    rc = xpb_sasl_start(s->sasl, &out, &out_len);
    char head[128];
    snprintf(head, sizeof head, "<auth xmlns='" NS_SASL "' mechanism='%s'>", mech);
    if (rc == 0) rc = send_sasl(s, head, "</auth>", out, out_len);
    if (rc != 0) {
        stop_session(s, rc, "SASL: could not start the exchange");
        return;
    }
    char why[96 + XPB_SESSION_MAX_MECHS * 24], list[XPB_SESSION_MAX_MECHS * 24];
    mech_list(list, sizeof list, offered, n);
    snprintf(why, sizeof why, "authenticating with %s; the server offers %s%s", mech, list,
             cb_listed ? " and lists its channel bindings (XEP-0440)" : "");
    set_state(s, XPB_SS_AUTH, why);
}

static void send_bind(xpb_session *s)
{
    s->phase = PH_BIND;
    set_state(s, XPB_SS_BIND, "binding a resource");
    next_iq_id(s, s->iq_bind, sizeof s->iq_bind, "bind");
    xpb_buf b;
    xpb_buf_init(&b, 0);
    int rc = xpb_buf_append_str(&b, "<iq");
    if (rc == 0) rc = xpb_buf_append_str(&b, client_xmlns(s));
    if (rc == 0) rc = xpb_buf_append_str(&b, " type='set' id='");
    if (rc == 0) rc = xpb_buf_append_str(&b, s->iq_bind);
    if (rc == 0) rc = xpb_buf_append_str(&b, "'><bind xmlns='" NS_BIND "'");
    if (rc == 0 && s->jid.resource != NULL) { /* RFC 6120 §7.6: client-submitted */
        rc = xpb_buf_append_str(&b, "><resource>");
        if (rc == 0) rc = xpb_xml_escape_text(&b, s->jid.resource, strlen(s->jid.resource));
        if (rc == 0) rc = xpb_buf_append_str(&b, "</resource></bind></iq>");
    } else if (rc == 0) {
        rc = xpb_buf_append_str(&b, "/></iq>");
    }
    emit_buf(s, &b, rc);
}

static void send_resume(xpb_session *s)
{
    s->phase = PH_RESUME;
    set_state(s, XPB_SS_BIND, "resuming the previous session");
    xpb_buf b;
    xpb_buf_init(&b, 0);
    char h[16];
    snprintf(h, sizeof h, "%" PRIu32, s->h_in);
    int rc = xpb_buf_append_str(&b, "<resume xmlns='" NS_SM "' previd='");
    if (rc == 0) rc = xpb_xml_escape_attr(&b, s->sm_id, strlen(s->sm_id));
    if (rc == 0) rc = xpb_buf_append_str(&b, "' h='");
    if (rc == 0) rc = xpb_buf_append_str(&b, h);
    if (rc == 0) rc = xpb_buf_append_str(&b, "'/>");
    emit_buf(s, &b, rc);
}

/* RFC 3921 §3 session establishment, only when not marked <optional/>. */
static int session_mandatory(const xpb_node *features)
{
    const xpb_node *sess = xpb_node_child(features, NS_SESSION, "session");
    return sess != NULL && xpb_node_child(sess, NS_SESSION, "optional") == NULL;
}

static void on_features(xpb_session *s, const xpb_node *el)
{
    if (s->state != XPB_SS_STREAM_OPEN) return;
    if (!s->tls) {
        if (!is_ws(s) && xpb_node_child(el, NS_TLS, "starttls") != NULL) {
            send_starttls(s);
            return;
        }
        if (!s->cfg.allow_plaintext) {
            stop_session(s, XPB_ENOTLS,
                         "server offers no STARTTLS; refusing to authenticate without TLS");
            return;
        }
    }
    if (!s->authed) {
        start_auth(s, el);
        return;
    }
    s->sm_offered = xpb_node_child(el, NS_SM, "sm") != NULL;
    s->session_required = session_mandatory(el);
    if (s->cfg.stream_management && s->sm_offered && s->sm_id != NULL)
        send_resume(s);
    else
        send_bind(s);
}

static void on_proceed(xpb_session *s)
{
    if (s->state != XPB_SS_STARTTLS) return;
    /* RFC 6120 §5.4.3.3: nothing after <proceed/> in this chunk was protected:
     * stop the reader; on_bytes resets it and starts TLS. */
    set_state(s, XPB_SS_TLS_HANDSHAKE, "TLS handshake");
    s->want_starttls = 1;
    s->halt = 1;
}

/* ---- SASL ------------------------------------------------------------------ */

static int decode_payload(const xpb_node *el, unsigned char **out, size_t *len)
{
    const char *t = node_text(el);
    return xpb_sasl_b64_decode(t, strlen(t), out, len);
}

static void auth_failed(xpb_session *s, int rc, const char *what)
{
    char why[512];
    snprintf(why, sizeof why, "%s: %s%s%s", what, xpb_strerror(rc),
             *xpb_sasl_error(s->sasl) ? ": " : "", xpb_sasl_error(s->sasl));
    stop_session(s, XPB_EAUTH, why);
}

static void on_challenge(xpb_session *s, const xpb_node *el)
{
    unsigned char *in = NULL;
    size_t in_len = 0;
    const unsigned char *out = NULL;
    size_t out_len = 0;
    int rc = decode_payload(el, &in, &in_len);
    if (rc == 0) rc = xpb_sasl_step(s->sasl, in, in_len, &out, &out_len);
    free_secret(in, in_len);
    if (rc == 0) rc = send_sasl(s, "<response xmlns='" NS_SASL "'>", "</response>", out, out_len);
    if (rc != 0) auth_failed(s, rc, "SASL challenge refused");
}

static void on_success(xpb_session *s, const xpb_node *el)
{
    unsigned char *in = NULL;
    size_t in_len = 0;
    int rc = decode_payload(el, &in, &in_len);
    if (rc == 0) rc = xpb_sasl_finish(s->sasl, in, in_len); /* RFC 5802 §5.1 */
    free_secret(in, in_len);
    if (rc != 0) {
        auth_failed(s, rc, "SASL success not trusted");
        return;
    }
    xpb_sasl_free(s->sasl);
    s->sasl = NULL;
    s->authed = 1;
    s->want_restart = 1; /* RFC 6120 §6.4.6: new stream, reader reset */
    s->halt = 1;
}

static void on_sasl_failure(xpb_session *s, const xpb_node *el)
{
    const char *cond = "unknown condition";
    for (const xpb_node *c = el->children; c; c = c->next)
        if (c->kind == XPB_NODE_ELEMENT && strcmp(c->name, "text") != 0) {
            cond = c->name;
            break;
        }
    char why[200];
    if (strcmp(cond, "temporary-auth-failure") == 0) {
        /* RFC 6120 §6.5.9: the server's problem, "try again later": retried
         * with the backoff of a lost connection, never a stop. */
        snprintf(why, sizeof why,
                 "authentication failed: temporary-auth-failure (RFC 6120 §6.5.9): retrying");
        emit_event(s, XPB_SE_ERROR, why, XPB_EAUTH);
        enter_backoff(s, why, 0);
        return;
    }
    snprintf(why, sizeof why, "authentication failed: %.100s", cond);
    stop_session(s, XPB_EAUTH, why);
}

/* ---- online ---------------------------------------------------------------- */

static void send_roster_get(xpb_session *s)
{
    next_iq_id(s, s->iq_roster, sizeof s->iq_roster, "roster");
    xpb_buf b;
    xpb_buf_init(&b, 0);
    int rc = xpb_buf_append_str(&b, "<iq");
    if (rc == 0) rc = xpb_buf_append_str(&b, client_xmlns(s));
    if (rc == 0) rc = xpb_buf_append_str(&b, " type='get' id='");
    if (rc == 0) rc = xpb_buf_append_str(&b, s->iq_roster);
    if (rc == 0) rc = xpb_buf_append_str(&b, "'><query xmlns='" NS_ROSTER "'/></iq>");
    send_internal_buf(s, &b, rc);
}

static int append_child_text(xpb_buf *b, const char *name, const char *text)
{
    int rc = xpb_buf_append_str(b, "<");
    if (rc == 0) rc = xpb_buf_append_str(b, name);
    if (rc == 0) rc = xpb_buf_append_str(b, ">");
    if (rc == 0) rc = xpb_xml_escape_text(b, text, strlen(text));
    if (rc == 0) rc = xpb_buf_append_str(b, "</");
    if (rc == 0) rc = xpb_buf_append_str(b, name);
    return rc == 0 ? xpb_buf_append_str(b, ">") : rc;
}

/* RFC 6121 §4.2 initial presence, or §4.5 unavailable presence. */
static void send_presence(xpb_session *s, int unavailable)
{
    xpb_buf b;
    xpb_buf_init(&b, 0);
    int rc = xpb_buf_append_str(&b, "<presence");
    if (rc == 0) rc = xpb_buf_append_str(&b, client_xmlns(s));
    if (rc == 0 && unavailable) rc = xpb_buf_append_str(&b, " type='unavailable'/>");
    if (rc == 0 && !unavailable && !s->cfg.presence_show && !s->cfg.presence_status)
        rc = xpb_buf_append_str(&b, "/>");
    else if (rc == 0 && !unavailable) {
        rc = xpb_buf_append_str(&b, ">");
        if (rc == 0 && s->cfg.presence_show) rc = append_child_text(&b, "show", s->cfg.presence_show);
        if (rc == 0 && s->cfg.presence_status)
            rc = append_child_text(&b, "status", s->cfg.presence_status);
        if (rc == 0) rc = xpb_buf_append_str(&b, "</presence>");
    }
    send_internal_buf(s, &b, rc);
}

static void arm_ping(xpb_session *s)
{
    s->ping_wait = 0;
    set_timer(s, XPB_TIMER_PING, s->cfg.ping_interval_ms);
}

static void go_online(xpb_session *s, int resumed)
{
    s->phase = PH_NONE;
    s->redirects = 0;
    set_timer(s, XPB_TIMER_CONNECT, 0);
    /* The backoff starts over only once this link has lasted (STABLE timer). */
    set_timer(s, XPB_TIMER_STABLE, s->cfg.backoff_reset_ms);
    s->state = XPB_SS_ONLINE; /* set before sending so the queue flushes */
    if (!resumed) {
        if (s->cfg.fetch_roster) send_roster_get(s);
        if (s->cfg.send_presence) send_presence(s, 0);
    }
    flush_queue(s);
    request_ack_if_pending(s);
    arm_ping(s);
    if (s->state != XPB_SS_ONLINE) return;
    emit_event(s, XPB_SE_STATE, resumed ? "session resumed" : "session established", 0);
    xpb_session_event ev = {.kind = XPB_SE_ONLINE, .state = s->state, .jid = s->bound_jid,
                            .resumed = resumed};
    s->ops->event(s->io, &ev);
}

static void send_enable(xpb_session *s)
{
    s->phase = PH_ENABLE;
    emit_str(s, "<enable xmlns='" NS_SM "' resume='true'/>");
}

static void after_bind(xpb_session *s)
{
    if (s->cfg.stream_management && s->sm_offered)
        send_enable(s);
    else
        go_online(s, 0);
}

static void send_session_iq(xpb_session *s)
{
    s->phase = PH_SESSION;
    next_iq_id(s, s->iq_session, sizeof s->iq_session, "sess");
    xpb_buf b;
    xpb_buf_init(&b, 0);
    int rc = xpb_buf_append_str(&b, "<iq");
    if (rc == 0) rc = xpb_buf_append_str(&b, client_xmlns(s));
    if (rc == 0) rc = xpb_buf_append_str(&b, " type='set' id='");
    if (rc == 0) rc = xpb_buf_append_str(&b, s->iq_session);
    if (rc == 0) rc = xpb_buf_append_str(&b, "'><session xmlns='" NS_SESSION "'/></iq>");
    emit_buf(s, &b, rc);
}

static const char *first_child_name(const xpb_node *el, const char *skip)
{
    for (const xpb_node *c = el ? el->children : NULL; c; c = c->next)
        if (c->kind == XPB_NODE_ELEMENT && strcmp(c->name, skip) != 0) return c->name;
    return "unknown condition";
}

static void on_bind_result(xpb_session *s, const xpb_node *iq, const char *type)
{
    const char *jid = node_text(xpb_node_child(xpb_node_child(iq, NS_BIND, "bind"), NS_BIND, "jid"));
    if (strcmp(type, "result") != 0 || *jid == '\0') {
        char why[160];
        snprintf(why, sizeof why, "resource binding refused: %.100s",
                 first_child_name(xpb_node_child(iq, XPB_NS_CLIENT, "error"), "text"));
        stop_session(s, XPB_ESTREAM, why);
        return;
    }
    free(s->bound_jid);
    s->bound_jid = dup_str(jid);
    /* A fresh session after a failed resume: counters restart at 0 at enable. */
    drop_internal_items(s);
    if (s->session_required)
        send_session_iq(s);
    else
        after_bind(s);
}

/* Results of our own iqs are consumed; returns 1 when el was one. */
static int own_iq_result(xpb_session *s, const xpb_node *el)
{
    const char *id = attr_value(el, "id"), *type = attr_value(el, "type");
    if (id == NULL || type == NULL || strcmp(el->name, "iq") != 0) return 0;
    if (strcmp(type, "result") != 0 && strcmp(type, "error") != 0) return 0;
    if (s->phase == PH_BIND && strcmp(id, s->iq_bind) == 0) {
        on_bind_result(s, el, type);
        return 1;
    }
    if (s->phase == PH_SESSION && strcmp(id, s->iq_session) == 0) {
        if (strcmp(type, "result") == 0)
            after_bind(s);
        else
            stop_session(s, XPB_ESTREAM, "session establishment refused");
        return 1;
    }
    if (strcmp(id, s->iq_roster) == 0 || strcmp(id, s->iq_ping) == 0) return 1;
    return 0;
}

/* XEP-0199 §6: answer the server's ping (RFC 6120 §8.2.3 demands an answer). */
static int answer_ping(xpb_session *s, const xpb_node *el)
{
    const char *type = attr_value(el, "type"), *id = attr_value(el, "id");
    if (strcmp(el->name, "iq") != 0 || type == NULL || strcmp(type, "get") != 0 || id == NULL ||
        xpb_node_child(el, NS_PING, "ping") == NULL)
        return 0;
    const char *from = attr_value(el, "from");
    xpb_buf b;
    xpb_buf_init(&b, 0);
    int rc = xpb_buf_append_str(&b, "<iq");
    if (rc == 0) rc = xpb_buf_append_str(&b, client_xmlns(s));
    if (rc == 0) rc = xpb_buf_append_str(&b, " type='result' id='");
    if (rc == 0) rc = xpb_xml_escape_attr(&b, id, strlen(id));
    if (rc == 0 && from) rc = xpb_buf_append_str(&b, "' to='");
    if (rc == 0 && from) rc = xpb_xml_escape_attr(&b, from, strlen(from));
    if (rc == 0) rc = xpb_buf_append_str(&b, "'/>");
    send_internal_buf(s, &b, rc);
    return 1;
}

static void on_client_stanza(xpb_session *s, const xpb_node *el)
{
    if (strcmp(el->name, "message") != 0 && strcmp(el->name, "presence") != 0 &&
        strcmp(el->name, "iq") != 0)
        return;
    if (s->sm_on) s->h_in++; /* uint32 arithmetic wraps at 2^32 (XEP-0198 §4) */
    s->stats.stanzas_in++;
    if (own_iq_result(s, el) || answer_ping(s, el)) return;
    xpb_session_event ev = {.kind = XPB_SE_STANZA, .state = s->state, .stanza = el,
                            .stanza_bytes = xpb_reader_stanza_bytes(s->reader)};
    s->ops->event(s->io, &ev);
}

/* ---- stream management ----------------------------------------------------- */

static void send_stream_error_and_fail(xpb_session *s, const char *xml, const char *why)
{
    emit_str(s, xml);
    send_stream_close(s);
    forget_sm(s); /* counts no longer agree: resuming would lose or double stanzas */
    s->n_sent = 0;
    drop_internal_items(s);
    emit_event(s, XPB_SE_ERROR, why, XPB_ESTREAM);
    enter_backoff(s, why, 0);
}

/* XEP-0198 §4: h acknowledges (h - last_acked) mod 2^32 stanzas; more than we
 * sent is a protocol violation answered with undefined-condition +
 * handled-count-too-high (XEP-0198 §6). */
static int apply_h(xpb_session *s, const char *hv)
{
    uint32_t h;
    if (parse_u32(hv, &h) != 0) {
        send_stream_error_and_fail(s,
            "<stream:error xmlns:stream='" XPB_NS_STREAMS "'><undefined-condition xmlns='"
            NS_STREAM_ERR "'/></stream:error>", "stream management: invalid h");
        return XPB_ESTREAM;
    }
    uint32_t diff = h - s->last_acked;
    if (diff > s->n_sent) {
        char xml[320], why[128];
        uint32_t sent = s->last_acked + (uint32_t)s->n_sent;
        snprintf(xml, sizeof xml, "<stream:error xmlns:stream='" XPB_NS_STREAMS "'>"
                 "<undefined-condition xmlns='" NS_STREAM_ERR "'/><handled-count-too-high "
                 "xmlns='" NS_SM "' h='%" PRIu32 "' send-count='%" PRIu32 "'/></stream:error>",
                 h, sent);
        snprintf(why, sizeof why, "stream management: server acknowledged %" PRIu32
                 " but only %" PRIu32 " were sent (handled-count-too-high)", h, sent);
        send_stream_error_and_fail(s, xml, why);
        return XPB_ESTREAM;
    }
    s->last_acked = h;
    release_acked(s, diff);
    return 0;
}

static void on_answer_r(xpb_session *s)
{
    if (!s->sm_on) return;
    char xml[64];
    snprintf(xml, sizeof xml, "<a xmlns='" NS_SM "' h='%" PRIu32 "'/>", s->h_in);
    emit_str(s, xml);
}

static void on_enabled(xpb_session *s, const xpb_node *el)
{
    if (s->phase != PH_ENABLE) return;
    const char *resume = attr_value(el, "resume"), *id = attr_value(el, "id");
    forget_sm(s);
    if (id && resume && (strcmp(resume, "true") == 0 || strcmp(resume, "1") == 0))
        s->sm_id = dup_str(id);
    s->sm_on = 1;
    s->since_r = 0;
    go_online(s, 0);
}

static void on_resumed(xpb_session *s, const xpb_node *el)
{
    if (s->phase != PH_RESUME) return;
    s->sm_on = 1;
    if (apply_h(s, attr_value(el, "h")) != 0) return;
    s->stats.resumptions++;
    s->n_sent = 0; /* XEP-0198 §5: everything not acknowledged is sent again */
    s->since_r = 0;
    go_online(s, 1);
}

static void on_sm_failed(xpb_session *s, const xpb_node *el)
{
    if (s->phase == PH_RESUME) {
        s->stats.resume_failures++;
        /* A newer server tells what it handled before the session died. */
        if (attr_value(el, "h") != NULL) {
            s->sm_on = 1;
            if (apply_h(s, attr_value(el, "h")) != 0) return;
            s->sm_on = 0;
        }
        forget_sm(s);
        drop_internal_items(s);
        send_bind(s);
    } else if (s->phase == PH_ENABLE) {
        forget_sm(s);
        go_online(s, 0); /* no SM on this stream */
    }
}

static void on_sm_element(xpb_session *s, const xpb_node *el)
{
    if (strcmp(el->name, "r") == 0)
        on_answer_r(s);
    else if (strcmp(el->name, "a") == 0 && s->sm_on)
        apply_h(s, attr_value(el, "h"));
    else if (strcmp(el->name, "enabled") == 0)
        on_enabled(s, el);
    else if (strcmp(el->name, "resumed") == 0)
        on_resumed(s, el);
    else if (strcmp(el->name, "failed") == 0)
        on_sm_failed(s, el);
}

/* ---- stream errors (RFC 6120 §4.9) ----------------------------------------- */

/* "host", "host:port" or "[v6]:port" (RFC 6120 §4.9.3.19). */
static int set_redirect(xpb_session *s, const char *text)
{
    const char *host = text, *colon = NULL;
    size_t hlen;
    if (*text == '[') {
        const char *rb = strchr(text, ']');
        if (rb == NULL) return XPB_EINVAL;
        host = text + 1;
        hlen = (size_t)(rb - host);
        if (rb[1] == ':') colon = rb + 1;
    } else {
        colon = strrchr(text, ':');
        hlen = colon ? (size_t)(colon - text) : strlen(text);
    }
    uint32_t port = 0;
    if (hlen == 0 || (colon && (parse_u32(colon + 1, &port) != 0 || port == 0 || port > 65535)))
        return XPB_EINVAL;
    free(s->redirect_host);
    free(s->redirect_text);
    s->redirect_host = malloc(hlen + 1);
    s->redirect_text = dup_str(text);
    if (s->redirect_host == NULL || s->redirect_text == NULL) return XPB_ENOMEM;
    memcpy(s->redirect_host, host, hlen);
    s->redirect_host[hlen] = '\0';
    s->target.port = (uint16_t)port;
    return 0;
}

static void redirect_now(xpb_session *s, const char *why)
{
    if (++s->redirects > XPB_SESSION_MAX_REDIRECTS) {
        stop_session(s, XPB_ESTREAM, "too many see-other-host redirects in a row");
        return;
    }
    drop_link(s);
    s->redirect_pending = 1;
    set_state(s, XPB_SS_BACKOFF, why);
    do_connect(s);
}

static void on_stream_error(xpb_session *s, const xpb_node *el)
{
    const char *cond = first_child_name(el, "text");
    char why[200];
    snprintf(why, sizeof why, "stream error: %.100s", cond);
    if (s->state == XPB_SS_CLOSING) {
        stop_session(s, 0, "closed");
        return;
    }
    if (strcmp(cond, "see-other-host") == 0) {
        if (set_redirect(s, node_text(xpb_node_child(el, NS_STREAM_ERR, cond))) == 0) {
            redirect_now(s, why);
            return;
        }
    } else if (strcmp(cond, "conflict") == 0) {
        /* Another client took the resource: reconnecting would fight it. */
        stop_session(s, XPB_ESTREAM, "stream error: conflict (another client took the resource)");
        return;
    } else if (strcmp(cond, "not-authorized") == 0) {
        stop_session(s, XPB_EAUTH, why);
        return;
    }
    emit_event(s, XPB_SE_ERROR, why, XPB_ESTREAM);
    send_stream_close(s);
    enter_backoff(s, why, strcmp(cond, "system-shutdown") == 0 ? s->cfg.backoff_max_ms / 2 : 0);
}

/* The server ended the stream: </stream:stream> or RFC 7395 <close/>. */
static void on_server_close(xpb_session *s, const char *see_other_uri)
{
    if (s->state == XPB_SS_CLOSING) {
        stop_session(s, 0, "closed");
        return;
    }
    if (see_other_uri != NULL && *see_other_uri) { /* RFC 7395 §3.6.1 */
        free(s->redirect_uri);
        free(s->redirect_text);
        s->redirect_uri = dup_str(see_other_uri);
        s->redirect_text = dup_str(see_other_uri);
        if (s->redirect_uri && s->redirect_text) {
            redirect_now(s, "redirected by the server (see-other-uri)");
            return;
        }
    }
    send_stream_close(s);
    enter_backoff(s, "server closed the stream", 0);
}

/* ---- reader callbacks ------------------------------------------------------ */

static int cb_stream_open(void *ud, const xpb_node *header)
{
    (void)header;
    xpb_session *s = ud;
    return s->halt ? 1 : 0;
}

static void dispatch(xpb_session *s, const xpb_node *el)
{
    const char *ns = el->ns, *name = el->name;
    if (strcmp(ns, XPB_NS_STREAMS) == 0 && strcmp(name, "features") == 0)
        on_features(s, el);
    else if (strcmp(ns, XPB_NS_STREAMS) == 0 && strcmp(name, "error") == 0)
        on_stream_error(s, el);
    else if (strcmp(ns, NS_FRAMING) == 0 && strcmp(name, "close") == 0)
        on_server_close(s, attr_value(el, "see-other-uri"));
    else if (strcmp(ns, NS_TLS) == 0 && strcmp(name, "proceed") == 0)
        on_proceed(s);
    else if (strcmp(ns, NS_TLS) == 0 && strcmp(name, "failure") == 0)
        stop_session(s, XPB_ETLS, "server refused STARTTLS (<failure/>)");
    else if (strcmp(ns, NS_SASL) == 0 && s->state == XPB_SS_AUTH && s->sasl != NULL) {
        if (strcmp(name, "challenge") == 0) on_challenge(s, el);
        else if (strcmp(name, "success") == 0) on_success(s, el);
        else if (strcmp(name, "failure") == 0) on_sasl_failure(s, el);
    } else if (strcmp(ns, NS_SM) == 0)
        on_sm_element(s, el);
    else if (strcmp(ns, XPB_NS_CLIENT) == 0)
        on_client_stanza(s, el);
    /* RFC 7395 <open/> and unknown stream-level elements: nothing to do */
}

static int cb_stanza(void *ud, const xpb_node *el)
{
    xpb_session *s = ud;
    if (s->halt) return 1;
    dispatch(s, el);
    return s->halt ? 1 : 0;
}

static void cb_stream_close(void *ud)
{
    xpb_session *s = ud;
    if (!s->halt) on_server_close(s, NULL);
}

/* ---- public API ------------------------------------------------------------ */

void xpb_session_config_init(xpb_session_config *c)
{
    memset(c, 0, sizeof *c);
    c->send_presence = 1;
    c->stream_management = 1;
    c->transport = XPB_TRANSPORT_STARTTLS;
}

static void config_defaults(xpb_session_config *c)
{
    if (c->queue_max == 0) c->queue_max = XPB_SESSION_DEFAULT_QUEUE_MAX;
    if (c->ping_interval_ms == 0) c->ping_interval_ms = XPB_SESSION_DEFAULT_PING_INTERVAL_MS;
    if (c->ping_timeout_ms == 0) c->ping_timeout_ms = XPB_SESSION_DEFAULT_PING_TIMEOUT_MS;
    if (c->connect_timeout_ms == 0) c->connect_timeout_ms = XPB_SESSION_DEFAULT_CONNECT_TIMEOUT_MS;
    if (c->backoff_min_ms == 0) c->backoff_min_ms = XPB_SESSION_DEFAULT_BACKOFF_MIN_MS;
    if (c->backoff_max_ms == 0) c->backoff_max_ms = XPB_SESSION_DEFAULT_BACKOFF_MAX_MS;
    if (c->backoff_max_ms < c->backoff_min_ms) c->backoff_max_ms = c->backoff_min_ms;
    if (c->backoff_reset_ms == 0) c->backoff_reset_ms = XPB_SESSION_DEFAULT_BACKOFF_RESET_MS;
    if (c->ack_every == 0) c->ack_every = XPB_SESSION_DEFAULT_ACK_EVERY;
}

static int copy_config(xpb_session *s, const xpb_session_config *cfg)
{
    s->cfg = *cfg;
    config_defaults(&s->cfg);
    s->jid_str = dup_str(cfg->jid);
    s->host = dup_str(cfg->host);
    s->ws_url = dup_str(cfg->ws_url);
    s->presence_show = dup_str(cfg->presence_show);
    s->presence_status = dup_str(cfg->presence_status);
    s->password = malloc(cfg->password_len + 1);
    if (!s->jid_str || (cfg->host && !s->host) || (cfg->ws_url && !s->ws_url) ||
        (cfg->presence_show && !s->presence_show) ||
        (cfg->presence_status && !s->presence_status) || !s->password)
        return XPB_ENOMEM;
    if (cfg->password_len) memcpy(s->password, cfg->password, cfg->password_len);
    s->cfg.jid = s->jid_str;
    s->cfg.host = s->host;
    s->cfg.ws_url = s->ws_url;
    s->cfg.presence_show = s->presence_show;
    s->cfg.presence_status = s->presence_status;
    s->cfg.password = s->password;
    return 0;
}

int xpb_session_new(xpb_session **out, const xpb_session_config *cfg, const xpb_session_ops *ops,
                    void *io)
{
    if (out == NULL || cfg == NULL || cfg->jid == NULL || ops == NULL || !ops->connect ||
        !ops->send || !ops->starttls || !ops->disconnect || !ops->set_timer || !ops->event ||
        !ops->random || (cfg->password == NULL && cfg->password_len != 0) ||
        (cfg->transport == XPB_TRANSPORT_WEBSOCKET && cfg->ws_url == NULL))
        return XPB_EINVAL;
    *out = NULL;
    xpb_session *s = calloc(1, sizeof *s);
    if (s == NULL) return XPB_ENOMEM;
    s->ops = ops;
    s->io = io;
    int rc = copy_config(s, cfg);
    if (rc == 0) rc = xpb_jid_parse(&s->jid, cfg->jid, strlen(cfg->jid), NULL, 0);
    if (rc == 0 && s->jid.local == NULL) rc = XPB_EJIDEMPTY; /* SASL needs a username */
    if (rc == 0) rc = xpb_sasl_cache_new(&s->sasl_cache);
    xpb_reader_callbacks cb = {.stream_open = cb_stream_open, .stanza = cb_stanza,
                               .stream_close = cb_stream_close};
    xpb_reader_mode mode = is_ws(s) ? XPB_READER_FRAGMENTS : XPB_READER_STREAM;
    if (rc == 0) rc = xpb_reader_new(&s->reader, mode, NULL, &cb, s);
    if (rc != 0) {
        xpb_session_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void xpb_session_free(xpb_session *s)
{
    if (s == NULL) return;
    for (size_t i = 0; i < s->n_items; i++) free(s->items[i].xml);
    free(s->items);
    xpb_reader_free(s->reader);
    xpb_sasl_free(s->sasl);
    xpb_sasl_cache_free(s->sasl_cache);
    free_secret(s->password, s->cfg.password_len + 1);
    xpb_jid_clear(&s->jid);
    free(s->jid_str);
    free(s->host);
    free(s->ws_url);
    free(s->presence_show);
    free(s->presence_status);
    free(s->bound_jid);
    free(s->redirect_host);
    free(s->redirect_text);
    free(s->redirect_uri);
    free(s->cb_type);
    free(s->test_nonce);
    free(s->sm_id);
    memset(s->cb_data, 0, sizeof s->cb_data);
    free(s);
}

static void do_connect(xpb_session *s)
{
    s->target = (xpb_session_target){.domain = s->jid.domain, .host = s->cfg.host,
                                     .port = s->cfg.port, .transport = s->cfg.transport,
                                     .ws_url = s->cfg.ws_url};
    if (s->redirect_pending) {
        s->target.see_other_host = s->redirect_text;
        if (s->redirect_uri) {
            s->target.ws_url = s->redirect_uri;
        } else {
            s->target.host = s->redirect_host;
            s->target.port = 0;
            const char *c = strrchr(s->redirect_text, ':');
            uint32_t port = 0;
            if (c && parse_u32(c + 1, &port) == 0 && port <= 65535) s->target.port = (uint16_t)port;
        }
    }
    s->redirect_pending = 0;
    s->halt = 0;
    s->cb_len = 0;
    set_state(s, XPB_SS_CONNECTING, s->target.see_other_host ? "connecting (redirected)"
                                                              : "connecting");
    set_timer(s, XPB_TIMER_CONNECT, s->cfg.connect_timeout_ms);
    s->link = 1;
    int rc = s->ops->connect(s->io, &s->target);
    if (rc != 0) {
        s->link = 0;
        enter_backoff(s, xpb_strerror(rc), 0);
    }
}

int xpb_session_start(xpb_session *s)
{
    if (s == NULL) return XPB_EINVAL;
    if (s->state != XPB_SS_IDLE && s->state != XPB_SS_STOPPED) return XPB_EINVAL;
    s->backoff_cur = 0;
    s->redirects = 0;
    do_connect(s);
    return 0;
}

void xpb_session_on_connected(xpb_session *s, int tls)
{
    if (s->state != XPB_SS_CONNECTING) return;
    s->transport_up = 1;
    s->tls = tls != 0;
    s->halt = 0;
    if (is_ws(s) && !s->tls && !s->cfg.allow_plaintext) {
        /* RFC 7395 §3.1: no STARTTLS over WebSocket; ws:// is plaintext. */
        stop_session(s, XPB_ENOTLS, "WebSocket without TLS (ws://) needs allow_plaintext_ws "
                                    "and a loopback host (RFC 7395 has no STARTTLS)");
        return;
    }
    open_stream(s);
}

void xpb_session_on_tls_ready(xpb_session *s, const char *cb_type, const unsigned char *cb_data,
                              size_t cb_len)
{
    free(s->cb_type);
    s->cb_type = NULL;
    s->cb_len = 0;
    if (cb_type != NULL && cb_data != NULL && cb_len > 0 && cb_len <= sizeof s->cb_data) {
        s->cb_type = dup_str(cb_type);
        memcpy(s->cb_data, cb_data, cb_len);
        s->cb_len = s->cb_type ? cb_len : 0;
    }
    if (s->state != XPB_SS_TLS_HANDSHAKE) return; /* direct TLS: just the binding data */
    s->tls = 1;
    s->halt = 0;
    open_stream(s); /* RFC 6120 §5.4.3.3: a new stream over TLS */
}

static void after_feed(xpb_session *s, int rc)
{
    if (s->want_starttls) {
        s->want_starttls = 0;
        xpb_reader_reset(s->reader); /* drop whatever followed <proceed/> */
        s->halt = 0;
        int src = s->ops->starttls(s->io);
        if (src != 0) stop_session(s, XPB_ETLS, "could not start TLS");
    } else if (s->want_restart) {
        s->want_restart = 0;
        s->halt = 0;
        open_stream(s);
    } else if (rc != 0 && !s->halt) {
        char why[300];
        snprintf(why, sizeof why, "XML error from the server: %s", xpb_reader_error(s->reader));
        emit_event(s, XPB_SE_ERROR, why, rc);
        enter_backoff(s, why, 0);
    }
}

void xpb_session_on_bytes(xpb_session *s, const char *data, size_t len)
{
    if (!s->transport_up || s->state == XPB_SS_TLS_HANDSHAKE || len == 0) return;
    s->stats.bytes_in += len;
    if (s->state == XPB_SS_ONLINE) arm_ping(s); /* any byte shows the link is alive */
    s->halt = 0;
    int rc = xpb_reader_feed(s->reader, data, len);
    after_feed(s, rc);
}

void xpb_session_on_tls_failed(xpb_session *s, const char *reason)
{
    if (s->state == XPB_SS_STOPPED || s->state == XPB_SS_IDLE) return;
    char why[300];
    snprintf(why, sizeof why, "TLS failed: %.250s", reason ? reason : "handshake error");
    s->link = s->transport_up = 0;
    stop_session(s, XPB_ETLS, why);
}

void xpb_session_on_disconnected(xpb_session *s, const char *reason)
{
    switch (s->state) {
    case XPB_SS_IDLE:
    case XPB_SS_BACKOFF:
    case XPB_SS_STOPPED:
        return;
    case XPB_SS_TLS_HANDSHAKE:
        xpb_session_on_tls_failed(s, reason);
        return;
    case XPB_SS_CLOSING:
        s->link = s->transport_up = 0;
        stop_session(s, 0, "closed");
        return;
    default: {
        char why[300];
        snprintf(why, sizeof why, "disconnected: %.250s", reason ? reason : "transport closed");
        s->link = s->transport_up = 0;
        enter_backoff(s, why, 0);
    }
    }
}

static void on_ping_timer(xpb_session *s)
{
    if (s->state != XPB_SS_ONLINE) return;
    if (s->ping_wait) { /* XEP-0199 §8: no answer, the link is dead */
        enter_backoff(s, "ping timeout: no data from the server", 0);
        return;
    }
    if (s->sm_on) {
        request_ack(s);
    } else {
        next_iq_id(s, s->iq_ping, sizeof s->iq_ping, "ping");
        xpb_buf b;
        xpb_buf_init(&b, 0);
        int rc = xpb_buf_append_str(&b, "<iq");
        if (rc == 0) rc = xpb_buf_append_str(&b, client_xmlns(s));
        if (rc == 0) rc = xpb_buf_append_str(&b, " type='get' id='");
        if (rc == 0) rc = xpb_buf_append_str(&b, s->iq_ping);
        if (rc == 0) rc = xpb_buf_append_str(&b, "' to='");
        if (rc == 0) rc = xpb_xml_escape_attr(&b, s->jid.domain, strlen(s->jid.domain));
        if (rc == 0) rc = xpb_buf_append_str(&b, "'><ping xmlns='" NS_PING "'/></iq>");
        send_internal_buf(s, &b, rc);
    }
    s->ping_wait = 1;
    set_timer(s, XPB_TIMER_PING, s->cfg.ping_timeout_ms);
}

void xpb_session_on_timer(xpb_session *s, xpb_session_timer t)
{
    switch (t) {
    case XPB_TIMER_PING:
        on_ping_timer(s);
        break;
    case XPB_TIMER_RECONNECT:
        if (s->state != XPB_SS_BACKOFF) break;
        s->stats.reconnects++;
        do_connect(s);
        break;
    case XPB_TIMER_CONNECT:
        if (s->state != XPB_SS_ONLINE && s->state != XPB_SS_BACKOFF &&
            s->state != XPB_SS_STOPPED && s->state != XPB_SS_IDLE &&
            s->state != XPB_SS_CLOSING) {
            emit_event(s, XPB_SE_ERROR, "negotiation timed out", XPB_ETIMEOUT);
            enter_backoff(s, "negotiation timed out", 0);
        }
        break;
    case XPB_TIMER_ACK:
        s->ack_timer_armed = 0;
        if (s->n_sent > 0) request_ack_if_pending(s);
        break;
    case XPB_TIMER_STABLE:
        if (s->state == XPB_SS_ONLINE) s->backoff_cur = 0;
        break;
    case XPB_TIMER_CLOSE:
        if (s->state == XPB_SS_CLOSING) stop_session(s, 0, "closed (server did not answer)");
        break;
    default:
        break;
    }
}

static int make_id(xpb_session *s, const xpb_stanza *st)
{
    if (st->id != NULL && st->id[0] != '\0') {
        size_t n = strlen(st->id);
        if (n >= sizeof s->last_id) n = sizeof s->last_id - 1; /* only for last_id */
        memcpy(s->last_id, st->id, n);
        s->last_id[n] = '\0';
        return 0;
    }
    uint32_t a = s->ops->random(s->io), b = s->ops->random(s->io);
    snprintf(s->last_id, sizeof s->last_id, "xpb-%08" PRIx32 "%08" PRIx32 "-%" PRIu64, a, b,
             ++s->id_counter);
    return 1;
}

int xpb_session_send(xpb_session *s, const xpb_stanza *st, uint64_t *handle)
{
    if (s == NULL || st == NULL) return XPB_EINVAL;
    if (s->state == XPB_SS_STOPPED || s->state == XPB_SS_CLOSING) return XPB_ENOTCONN;
    if (s->n_items >= s->cfg.queue_max) return XPB_EQUEUEFULL;
    xpb_stanza copy = *st; /* shallow: only the id may differ */
    if (make_id(s, st)) copy.id = s->last_id;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    /* Strings as long as the stanza may be: what arrived can be echoed. */
    xpb_record_limits lim = {.max_string = s->cfg.max_stanza_bytes,
                             .max_stanza_bytes = s->cfg.max_stanza_bytes};
    int rc = xpb_stanza_to_xml(&b, &copy, is_ws(s) ? "" : XPB_NS_CLIENT, &lim, NULL, 0);
    uint64_t h = s->next_handle + 1;
    if (rc == 0) rc = item_insert(s, s->n_items, h, b.data, b.len);
    size_t bytes = b.len;
    xpb_buf_free(&b);
    if (rc != 0) return rc;
    s->last_bytes = bytes;
    s->next_handle = h;
    if (handle != NULL) *handle = h;
    flush_queue(s);
    return 0;
}

void xpb_session_close(xpb_session *s)
{
    if (s == NULL || s->state == XPB_SS_STOPPED || s->state == XPB_SS_CLOSING) return;
    if (s->state != XPB_SS_ONLINE) {
        if (s->transport_up && s->state != XPB_SS_CONNECTING && s->state != XPB_SS_TLS_HANDSHAKE)
            send_stream_close(s);
        stop_session(s, 0, "closed");
        return;
    }
    send_presence(s, 1); /* RFC 6121 §4.5.1 */
    if (s->sm_on && s->n_sent > 0) request_ack(s); /* last chance to learn what arrived */
    send_stream_close(s); /* RFC 6120 §4.4 */
    set_timer(s, XPB_TIMER_PING, 0);
    set_timer(s, XPB_TIMER_ACK, 0);
    set_state(s, XPB_SS_CLOSING, "closing");
    set_timer(s, XPB_TIMER_CLOSE, XPB_SESSION_CLOSE_WAIT_MS);
}

xpb_session_state xpb_session_get_state(const xpb_session *s) { return s->state; }

const char *xpb_session_state_name(xpb_session_state st)
{
    static const char *const names[] = {
        [XPB_SS_IDLE] = "idle",         [XPB_SS_CONNECTING] = "connecting",
        [XPB_SS_STREAM_OPEN] = "stream_open", [XPB_SS_STARTTLS] = "starttls",
        [XPB_SS_TLS_HANDSHAKE] = "tls_handshake", [XPB_SS_AUTH] = "auth",
        [XPB_SS_BIND] = "bind",         [XPB_SS_ONLINE] = "online",
        [XPB_SS_CLOSING] = "closing",   [XPB_SS_BACKOFF] = "backoff",
        [XPB_SS_STOPPED] = "stopped",
    };
    if ((unsigned)st >= sizeof names / sizeof names[0] || names[st] == NULL) return "unknown";
    return names[st];
}

const char *xpb_session_last_id(const xpb_session *s) { return s->last_id; }

size_t xpb_session_last_bytes(const xpb_session *s) { return s->last_bytes; }

const char *xpb_session_jid(const xpb_session *s) { return s->bound_jid; }

void xpb_session_get_stats(const xpb_session *s, xpb_session_stats *out)
{
    *out = s->stats;
    out->unacked = (unsigned)s->n_sent;
    out->queued = (unsigned)(s->n_items - s->n_sent);
}

int xpb_session_test_set_sasl_nonce(xpb_session *s, const char *nonce)
{
    free(s->test_nonce);
    s->test_nonce = dup_str(nonce);
    return s->test_nonce || !nonce ? 0 : XPB_ENOMEM;
}

int xpb_session_test_set_sm_counters(xpb_session *s, uint32_t h_in, uint32_t h_acked)
{
    if (!s->sm_on || s->n_sent != 0) return XPB_EINVAL;
    s->h_in = h_in;
    s->last_acked = h_acked;
    return 0;
}
