/* The c2s session (bridge/session/include/xpb_session.h): its lifecycle, the
 * transport events the loop reports, timers, and session_apply(), the one
 * function that carries out what a handler asks for. Which element goes to
 * which handler in which state is in session_table.c; negotiation in
 * session_auth.c; XEP-0198 in session_sm.c; the XML written in session_xml.c.
 * Pure: every effect goes through the ops table the loop provides. */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_internal.h"
#include "xpb_error.h"
#include "xpb_jid.h"

/* ---- small helpers --------------------------------------------------------- */

char *session_dup_str(const char *s)
{
    if (s == NULL) return NULL;
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d != NULL) memcpy(d, s, n + 1);
    return d;
}

void session_free_secret(void *p, size_t len)
{
    if (p == NULL) return;
    volatile unsigned char *v = p;
    for (size_t i = 0; i < len; i++) v[i] = 0;
    free(p);
}

int session_is_ws(const xpb_session *s) { return s->cfg.transport == XPB_TRANSPORT_WEBSOCKET; }

const char *session_node_text(const xpb_node *el)
{
    for (const xpb_node *c = el ? el->children : NULL; c != NULL; c = c->next)
        if (c->kind == XPB_NODE_TEXT) return c->text;
    return "";
}

const char *session_attr(const xpb_node *el, const char *name)
{
    const xpb_attr *a = xpb_node_attr(el, "", name);
    return a ? a->value : NULL;
}

const char *session_first_child_name(const xpb_node *el, const char *skip)
{
    for (const xpb_node *c = el ? el->children : NULL; c; c = c->next)
        if (c->kind == XPB_NODE_ELEMENT && strcmp(c->name, skip) != 0) return c->name;
    return "unknown condition";
}

int session_parse_u32(const char *v, uint32_t *out)
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

void session_next_iq_id(xpb_session *s, char *dst, size_t cap, const char *what)
{
    snprintf(dst, cap, "xpb-%s-%" PRIu64, what, ++s->iq_counter);
}

/* The transport reported connected and has not gone: the states between. */
int session_link_up(const xpb_session *s)
{
    return s->state >= XPB_SS_STREAM_OPEN && s->state <= XPB_SS_CLOSING;
}

void session_emit_event(xpb_session *s, xpb_session_event_kind kind, const char *reason, int code)
{
    xpb_session_event ev = {.kind = kind, .state = s->state, .reason = reason, .code = code};
    s->ops->event(s->io, &ev);
}

void session_set_state(xpb_session *s, xpb_session_state st, const char *reason, int code,
                       int emit)
{
    if (s->state == st) return;
    /* Every move is one the table declares (docs/architecture.md is checked
     * against the same table by tests/bridge/test_session_table.c). */
    assert(session_transition_declared(s->state, st));
    s->state = st;
    if (emit) session_emit_event(s, XPB_SE_STATE, reason, code);
}

static void set_state(xpb_session *s, xpb_session_state st, const char *reason)
{
    session_set_state(s, st, reason, 0, 1);
}

void session_set_timer(xpb_session *s, xpb_session_timer t, unsigned ms)
{
    s->ops->set_timer(s->io, t, ms);
}

static void cancel_link_timers(xpb_session *s)
{
    session_set_timer(s, XPB_TIMER_PING, 0);
    session_set_timer(s, XPB_TIMER_CONNECT, 0);
    session_set_timer(s, XPB_TIMER_ACK, 0);
    session_set_timer(s, XPB_TIMER_CLOSE, 0);
    session_set_timer(s, XPB_TIMER_STABLE, 0);
    s->ack_timer_armed = 0;
    s->ping_wait = 0;
}

int session_emit_bytes(xpb_session *s, const char *data, size_t len)
{
    s->stats.bytes_out += len;
    return s->ops->send(s->io, data, len);
}

/* ---- stream open, leaving a link ------------------------------------------- */

static void open_stream(xpb_session *s)
{
    xpb_reader_reset(s->reader);
    s->step = BIND_NONE;
    set_state(s, XPB_SS_STREAM_OPEN, s->authed ? "stream restart after SASL"
                                     : s->tls  ? "stream restart after TLS"
                                               : "stream opened");
    session_write_stream_header(s);
}

static void drop_link(xpb_session *s)
{
    /* A drop from inside a reader callback (the user closing from an event)
     * must stop the parse of the chunk in progress. */
    if (s->pending.kind == ACT_CONTINUE) s->pending.kind = ACT_HALTED;
    cancel_link_timers(s);
    if (s->link) s->ops->disconnect(s->io); /* also aborts a connect in progress */
    s->link = 0;
    s->tls = s->authed = 0;
    s->sm_on = 0; /* SM id, counters and items are kept for resumption */
    /* ...unless the stream was resumed but never shown to be read (session_sm.c,
     * on_resumed): the next link binds afresh. */
    if (s->resume_probe) {
        session_forget_sm(s);
        session_drop_internal_items(s);
    }
    s->step = BIND_NONE;
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
    session_set_timer(s, XPB_TIMER_RECONNECT, next_backoff(s, lo));
}

/* Closed for good: the error is reported once, pending stanzas fail. */
static void stop_session(xpb_session *s, int code, const char *reason)
{
    drop_link(s);
    session_set_timer(s, XPB_TIMER_RECONNECT, 0);
    if (code != 0) session_emit_event(s, XPB_SE_ERROR, reason, code);
    session_forget_sm(s);
    session_fail_all_items(s, code ? reason : "session closed");
    session_set_state(s, XPB_SS_STOPPED, reason, code, 1);
}

static void do_connect(xpb_session *s);

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

/* ---- applying an action ---------------------------------------------------- */

/* RFC 6120 §4.9: an element the current state does not allow is answered
 * once, with a stream error whose text names the rule, then the stream is
 * closed and a new one started after the backoff. SM state is kept: both
 * ends still agree on the counts. */
static void refuse(xpb_session *s, const char *why)
{
    xpb_buf b;
    xpb_buf_init(&b, 0);
    if (session_format_stream_error(&b, "unsupported-stanza-type", NULL, NULL, NULL, NULL, why) == 0)
        session_emit_bytes(s, b.data, b.len);
    xpb_buf_free(&b);
    session_write_stream_close(s);
    session_emit_event(s, XPB_SE_ERROR, why, XPB_ESTREAM);
    enter_backoff(s, why, 0);
}

/* XEP-0198 §6: our counts and the server's disagree; resuming would lose or
 * double stanzas, so the next link starts a fresh session. */
static void fail_stream(xpb_session *s, const char *xml, const char *why)
{
    session_emit_bytes(s, xml, strlen(xml));
    session_write_stream_close(s);
    session_forget_sm(s);
    s->n_sent = 0; /* session_drop_internal_items syncs the gauges */
    session_drop_internal_items(s);
    session_emit_event(s, XPB_SE_ERROR, why, XPB_ESTREAM);
    enter_backoff(s, why, 0);
}

const char *session_whyf(xpb_session *s, const char *fmt, ...)
{
    if (!s->why_buf) s->why_buf = malloc(SESSION_WHY_MAX);
    if (!s->why_buf) return s->why = "out of memory formatting the reason";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why_buf, SESSION_WHY_MAX, fmt, ap);
    va_end(ap);
    return s->why = s->why_buf;
}

void session_apply(xpb_session *s, session_action a)
{
    if (a.kind == ACT_CONTINUE || a.kind == ACT_HALTED) return;
    char why[SESSION_WHY_MAX]; /* events may re-enter the session and reuse s->why */
    snprintf(why, sizeof why, "%s", a.reason ? a.reason : "");
    switch (a.kind) {
    case ACT_CONTINUE:
    case ACT_HALTED:
        return;
    case ACT_START_TLS:
        xpb_reader_reset(s->reader); /* drop whatever followed <proceed/> */
        if (s->ops->starttls(s->io) != 0) stop_session(s, XPB_ETLS, "could not start TLS");
        return;
    case ACT_RESTART:
        open_stream(s);
        return;
    case ACT_REFUSE:
        refuse(s, why);
        return;
    case ACT_STREAM_ERROR: {
        char *xml = s->why_xml; /* ours now: fail_stream may build another */
        s->why_xml = NULL;
        fail_stream(s, xml ? xml : "", why);
        free(xml);
        return;
    }
    case ACT_RETRY:
        if (a.code != 0) session_emit_event(s, XPB_SE_ERROR, why, a.code);
        if (a.close_stream) session_write_stream_close(s);
        enter_backoff(s, why, a.backoff_floor);
        return;
    case ACT_REDIRECT:
        redirect_now(s, why);
        return;
    case ACT_STOP:
        stop_session(s, a.code, a.code || a.reason ? why : "closed");
        return;
    }
}

/* ---- reader callbacks ------------------------------------------------------ */

static int cb_stream_open(void *ud, const xpb_node *header)
{
    (void)header;
    xpb_session *s = ud;
    return s->pending.kind != ACT_CONTINUE;
}

static int cb_stanza(void *ud, const xpb_node *el)
{
    xpb_session *s = ud;
    if (s->pending.kind != ACT_CONTINUE) return 1;
    session_action a = session_dispatch(s, el);
    if (a.kind != ACT_CONTINUE && s->pending.kind == ACT_CONTINUE) s->pending = a;
    return s->pending.kind != ACT_CONTINUE;
}

/* The server ended the stream: </stream:stream> or RFC 7395 <close/>. */
session_action session_on_server_close(xpb_session *s, const char *see_other_uri)
{
    if (s->state == XPB_SS_CLOSING) return act_stop(0, "closed");
    if (see_other_uri != NULL && *see_other_uri) { /* RFC 7395 §3.6.1 */
        free(s->redirect_uri);
        free(s->redirect_text);
        s->redirect_uri = session_dup_str(see_other_uri);
        s->redirect_text = session_dup_str(see_other_uri);
        if (s->redirect_uri && s->redirect_text)
            return (session_action){ACT_REDIRECT, 0, "redirected by the server (see-other-uri)", 0, 0};
    }
    return act_retry(0, "server closed the stream", 0, 1);
}

static void cb_stream_close(void *ud)
{
    xpb_session *s = ud;
    if (s->pending.kind == ACT_CONTINUE) s->pending = session_on_server_close(s, NULL);
}

/* ---- public API: lifetime -------------------------------------------------- */

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
    s->jid_str = session_dup_str(cfg->jid);
    s->host = session_dup_str(cfg->host);
    s->ws_url = session_dup_str(cfg->ws_url);
    s->presence_show = session_dup_str(cfg->presence_show);
    s->presence_status = session_dup_str(cfg->presence_status);
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
    s->why = "";
    xpb_buf_init(&s->wbuf, 0);
    int rc = copy_config(s, cfg);
    if (rc == 0) rc = xpb_jid_parse(&s->jid, cfg->jid, strlen(cfg->jid), NULL, 0);
    if (rc == 0 && s->jid.local == NULL) rc = XPB_EJIDEMPTY; /* SASL needs a username */
    if (rc == 0) rc = xpb_sasl_cache_new(&s->sasl_cache);
    if (rc == 0 && cfg->resume) session_import_sm(s, cfg->resume);
    s->cfg.resume = NULL; /* borrowed: not kept */
    xpb_reader_callbacks cb = {.stream_open = cb_stream_open, .stanza = cb_stanza,
                               .stream_close = cb_stream_close};
    xpb_reader_mode mode = session_is_ws(s) ? XPB_READER_FRAGMENTS : XPB_READER_STREAM;
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
    session_items_free(s);
    xpb_buf_free(&s->wbuf);
    xpb_reader_free(s->reader);
    xpb_sasl_free(s->sasl);
    xpb_sasl_cache_free(s->sasl_cache);
    session_free_secret(s->password, s->cfg.password_len + 1);
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
    free(s->sm_location);
    free(s->why_buf);
    free(s->why_xml);
    memset(s->cb_data, 0, sizeof s->cb_data);
    free(s);
}

static void fill_target(xpb_session *s)
{
    s->target = (xpb_session_target){.domain = s->jid.domain, .host = s->cfg.host,
                                     .port = s->cfg.port, .transport = s->cfg.transport,
                                     .ws_url = s->cfg.ws_url};
    if (!s->redirect_pending) return;
    s->target.see_other_host = s->redirect_text;
    if (s->redirect_uri) {
        s->target.ws_url = s->redirect_uri;
        return;
    }
    s->target.host = s->redirect_host;
    s->target.port = 0;
    const char *c = strrchr(s->redirect_text, ':');
    uint32_t port = 0;
    if (c && session_parse_u32(c + 1, &port) == 0 && port <= 65535) s->target.port = (uint16_t)port;
}

static void do_connect(xpb_session *s)
{
    fill_target(s);
    s->redirect_pending = 0;
    s->pending = act_continue();
    s->cb_len = 0;
    set_state(s, XPB_SS_CONNECTING, s->target.see_other_host ? "connecting (redirected)"
                                                              : "connecting");
    session_set_timer(s, XPB_TIMER_CONNECT, s->cfg.connect_timeout_ms);
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

/* ---- public API: transport events ------------------------------------------ */

void xpb_session_on_connected(xpb_session *s, int tls)
{
    if (s->state != XPB_SS_CONNECTING) return;
    s->tls = tls != 0;
    s->pending = act_continue();
    if (session_is_ws(s) && !s->tls && !s->cfg.allow_plaintext) {
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
        s->cb_type = session_dup_str(cb_type);
        memcpy(s->cb_data, cb_data, cb_len);
        s->cb_len = s->cb_type ? cb_len : 0;
    }
    if (s->state != XPB_SS_TLS_HANDSHAKE) return; /* direct TLS: just the binding data */
    s->tls = 1;
    s->pending = act_continue();
    open_stream(s); /* RFC 6120 §5.4.3.3: a new stream over TLS */
}

static void arm_ping(xpb_session *s)
{
    s->ping_wait = 0;
    session_set_timer(s, XPB_TIMER_PING, s->cfg.ping_interval_ms);
}

void xpb_session_on_bytes(xpb_session *s, const char *data, size_t len)
{
    if (!session_link_up(s) || s->state == XPB_SS_TLS_HANDSHAKE || len == 0) return;
    s->stats.bytes_in += len;
    if (s->state == XPB_SS_ONLINE) arm_ping(s); /* any byte shows the link is alive */
    s->pending = act_continue();
    int rc = xpb_reader_feed(s->reader, data, len);
    session_action a = s->pending;
    s->pending = act_continue();
    if (a.kind == ACT_CONTINUE && rc != 0) {
        session_whyf(s, "XML error from the server: %s", xpb_reader_error(s->reader));
        a = act_retry(rc, s->why, 0, 0);
    }
    session_apply(s, a);
    /* Between stanzas the reader gives its tree memory back: of 10,000
     * mostly idle sessions only those reading hold a block. */
    if (s->reader) xpb_reader_trim(s->reader);
}

void xpb_session_idle(xpb_session *s)
{
    /* Its expat parser too (about 9 KiB), rebuilt from the saved stream
     * header when bytes come again: most of 10,000 sessions are quiet. */
    if (!s) return;
    if (s->reader) xpb_reader_park(s->reader);
    xpb_buf_free(&s->wbuf); /* made again by the next element written */
    /* And the reason buffer: session_apply copies a reason before using it. */
    free(s->why_buf);
    s->why_buf = NULL;
    s->why = "";
}

void xpb_session_on_tls_failed(xpb_session *s, const char *reason)
{
    if (s->state == XPB_SS_STOPPED || s->state == XPB_SS_IDLE) return;
    char why[300];
    snprintf(why, sizeof why, "TLS failed: %.250s", reason ? reason : "handshake error");
    s->link = 0;
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
        s->link = 0;
        stop_session(s, 0, "closed");
        return;
    default:
        session_whyf(s, "disconnected: %.250s", reason ? reason : "transport closed");
        s->link = 0;
        session_apply(s, act_retry(0, s->why, 0, 0));
    }
}

/* ---- timers ---------------------------------------------------------------- */

static session_action on_ping_timer(xpb_session *s)
{
    if (s->state != XPB_SS_ONLINE) return act_continue();
    if (s->ping_wait) /* XEP-0199 §8: no answer, the link is dead */
        return act_retry(0, "ping timeout: no data from the server", 0, 0);
    session_action a = act_continue();
    if (s->sm_on)
        session_request_ack(s);
    else
        a = session_write_ping(s);
    if (a.kind != ACT_CONTINUE) return a;
    s->ping_wait = 1;
    session_set_timer(s, XPB_TIMER_PING, s->cfg.ping_timeout_ms);
    return a;
}

/* A resumed stream whose server did not answer our
 * <r/> in time (session_sm.c, on_resumed): it does not parse what we write.
 * Resuming it again would feed the same parser, so a fresh session is bound;
 * none of the queue was written on this stream, all of it goes there. The
 * old session, if the server keeps it, waits out its resumption timeout
 * (Prosody: a hibernating resource) and is never resumed. */
static session_action give_up_resume(xpb_session *s)
{
    session_whyf(s,
                 "resumed stream unacknowledged: no <a/> to our <r/> within %u ms (XEP-0198 §4); "
                 "new session",
                 s->cfg.connect_timeout_ms);
    session_forget_sm(s);
    session_drop_internal_items(s);
    return act_retry(XPB_ETIMEOUT, s->why, 0, 1);
}

static int negotiating(const xpb_session *s)
{
    return s->state != XPB_SS_ONLINE && s->state != XPB_SS_BACKOFF &&
           s->state != XPB_SS_STOPPED && s->state != XPB_SS_IDLE && s->state != XPB_SS_CLOSING;
}

void xpb_session_on_timer(xpb_session *s, xpb_session_timer t)
{
    switch (t) {
    case XPB_TIMER_PING:
        session_apply(s, on_ping_timer(s));
        break;
    case XPB_TIMER_RECONNECT:
        if (s->state != XPB_SS_BACKOFF) break;
        s->stats.reconnects++;
        do_connect(s);
        break;
    case XPB_TIMER_CONNECT:
        if (negotiating(s)) session_apply(s, act_retry(XPB_ETIMEOUT, "negotiation timed out", 0, 0));
        else if (s->state == XPB_SS_ONLINE && s->resume_probe) session_apply(s, give_up_resume(s));
        break;
    case XPB_TIMER_ACK:
        s->ack_timer_armed = 0;
        if (s->n_sent > 0) session_request_ack_if_pending(s);
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

/* ---- public API: stanzas, close, queries ----------------------------------- */

/* Called by session_go_online once roster, presence and the queue are out. */
void session_arm_ping(xpb_session *s) { arm_ping(s); }

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
    xpb_session_format_id(s->last_id, sizeof s->last_id, a, b, ++s->id_counter);
    return 1;
}

void xpb_session_format_id(char *out, size_t len, uint32_t r0, uint32_t r1, uint64_t counter)
{
    snprintf(out, len, "xpb-%08" PRIx32 "%08" PRIx32 "-%" PRIu64, r0, r1, counter);
}

/* queue_max bounds what waits for the connection; what was sent and is not
 * yet acked is bounded apart (XPB_SESSION_UNACKED_FACTOR x queue_max), so a
 * server that acks as it reads never makes a send fail, however fast they
 * come: its acks trail the stream by a few milliseconds. */
static int queue_full(const xpb_session *s)
{
    return s->n_items - s->n_sent >= s->cfg.queue_max ||
           s->n_sent >= (size_t)s->cfg.queue_max * XPB_SESSION_UNACKED_FACTOR;
}

static int session_send(xpb_session *s, const xpb_stanza *st, uint64_t *handle, int checked)
{
    if (s == NULL || st == NULL) return XPB_EINVAL;
    if (s->state == XPB_SS_STOPPED || s->state == XPB_SS_CLOSING) return XPB_ENOTCONN;
    if (queue_full(s)) return XPB_EQUEUEFULL;
    xpb_stanza copy = *st; /* shallow: only the id may differ */
    if (make_id(s, st)) copy.id = s->last_id;
    /* Written in the session's reused buffer, then copied at its size:
     * one allocation per stanza, not one per doubling of a fresh buffer. */
    xpb_buf *b = &s->wbuf;
    xpb_buf_reset(b);
    /* Strings as long as the stanza may be: what arrived can be echoed. The
     * XML bound (max_stanza_bytes) holds with or without the check. */
    xpb_record_limits lim = {.max_string = s->cfg.max_stanza_bytes,
                             .max_stanza_bytes = s->cfg.max_stanza_bytes};
    const char *ns = session_is_ws(s) ? "" : XPB_NS_CLIENT;
    int rc = checked ? xpb_stanza_to_xml_prechecked(b, &copy, ns, &lim, NULL, 0)
                     : xpb_stanza_to_xml(b, &copy, ns, &lim, NULL, 0);
    uint64_t h = s->next_handle + 1;
    size_t bytes = b->len;
    if (rc == 0) rc = session_item_insert(s, s->n_items, h, b->data, b->len);
    if (b->cap > XPB_SESSION_WBUF_KEEP) xpb_buf_free(b); /* a large stanza's buffer */
    if (rc != 0) return rc;
    s->last_bytes = bytes;
    s->next_handle = h;
    if (handle != NULL) *handle = h;
    session_flush_queue(s);
    return 0;
}

int xpb_session_send(xpb_session *s, const xpb_stanza *st, uint64_t *handle)
{
    return session_send(s, st, handle, 0);
}

int xpb_session_send_checked(xpb_session *s, const xpb_stanza *st, uint64_t *handle)
{
    return session_send(s, st, handle, 1);
}

int xpb_session_send_xml(xpb_session *s, const char *xml, size_t len, uint64_t handle)
{
    if (s == NULL || xml == NULL || len == 0 || handle <= s->next_handle) return XPB_EINVAL;
    if (s->state == XPB_SS_STOPPED || s->state == XPB_SS_CLOSING) return XPB_ENOTCONN;
    size_t max = s->cfg.max_stanza_bytes ? s->cfg.max_stanza_bytes : XPB_READER_DEFAULT_MAX_STANZA;
    if (len > max) return XPB_ETOOBIG;
    if (queue_full(s)) return XPB_EQUEUEFULL;
    int rc = session_item_insert(s, s->n_items, handle, xml, len);
    if (rc != 0) return rc;
    s->last_bytes = len;
    s->next_handle = handle;
    session_flush_queue(s);
    return 0;
}

void xpb_session_close(xpb_session *s)
{
    if (s == NULL || s->state == XPB_SS_STOPPED || s->state == XPB_SS_CLOSING) return;
    if (s->state != XPB_SS_ONLINE) {
        if (session_link_up(s) && s->state != XPB_SS_TLS_HANDSHAKE)
            session_write_stream_close(s);
        stop_session(s, 0, "closed");
        return;
    }
    session_action a = session_write_presence(s, 1); /* RFC 6121 §4.5.1 */
    if (a.kind != ACT_CONTINUE) {
        session_apply(s, a);
        return;
    }
    if (s->sm_on && s->n_sent > 0) session_request_ack(s); /* last chance to learn what arrived */
    session_write_stream_close(s); /* RFC 6120 §4.4 */
    session_set_timer(s, XPB_TIMER_PING, 0);
    session_set_timer(s, XPB_TIMER_ACK, 0);
    set_state(s, XPB_SS_CLOSING, "closing");
    session_set_timer(s, XPB_TIMER_CLOSE, XPB_SESSION_CLOSE_WAIT_MS);
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

void xpb_session_set_gauges(xpb_session *s, xpb_session_gauges *g)
{
    s->gauges = g;
    session_gauges_sync(s);
}

int xpb_session_test_set_sasl_nonce(xpb_session *s, const char *nonce)
{
    free(s->test_nonce);
    s->test_nonce = session_dup_str(nonce);
    return s->test_nonce || !nonce ? 0 : XPB_ENOMEM;
}

int xpb_session_test_set_sm_counters(xpb_session *s, uint32_t h_in, uint32_t h_acked)
{
    if (!s->sm_on || s->n_sent != 0) return XPB_EINVAL;
    s->h_in = h_in;
    s->last_acked = h_acked;
    return 0;
}

int xpb_session_clone_stanza(const xpb_session *s, const xpb_node *stanza, xpb_arena *a,
                             xpb_node **out)
{
    return s && s->reader ? xpb_reader_clone(s->reader, stanza, a, out)
                          : xpb_node_clone(a, stanza, out);
}
