/* The transitions of the c2s session in one place: which element may arrive
 * in which state, the handler it goes to, and the states that handler may
 * lead to; then the transitions no element causes (transport events, timers,
 * the API). session_dispatch() routes every depth-1 element through
 * session_rules; session_set_state() asserts each move is declared here, and
 * tests/bridge/test_session_table.c checks docs/architecture.md against it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_internal.h"
#include "xpb_error.h"

#define S(st) SS_BIT(XPB_SS_##st)
/* The states in which the server's bytes are read. */
#define LINK (S(STREAM_OPEN) | S(STARTTLS) | S(AUTH) | S(BIND) | S(ONLINE) | S(CLOSING))

/* ---- stream-level handlers ------------------------------------------------- */

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
    if (hlen == 0 ||
        (colon && (session_parse_u32(colon + 1, &port) != 0 || port == 0 || port > 65535)))
        return XPB_EINVAL;
    free(s->redirect_host);
    free(s->redirect_text);
    s->redirect_host = malloc(hlen + 1);
    s->redirect_text = session_dup_str(text);
    if (s->redirect_host == NULL || s->redirect_text == NULL) return XPB_ENOMEM;
    memcpy(s->redirect_host, host, hlen);
    s->redirect_host[hlen] = '\0';
    s->target.port = (uint16_t)port;
    return 0;
}

/* RFC 6120 §4.9.3: what each condition leads to. */
static session_action on_stream_error(xpb_session *s, const xpb_node *el)
{
    const char *cond = session_first_child_name(el, "text");
    if (s->state == XPB_SS_CLOSING) return act_stop(0, "closed");
    session_whyf(s, "stream error: %.100s", cond);
    if (strcmp(cond, "see-other-host") == 0) {
        if (set_redirect(s, session_node_text(xpb_node_child(el, NS_STREAM_ERR, cond))) == 0)
            return (session_action){ACT_REDIRECT, 0, s->why, 0, 0};
    } else if (strcmp(cond, "conflict") == 0) {
        /* Another client took the resource: reconnecting would fight it. */
        return act_stop(XPB_ESTREAM, "stream error: conflict (another client took the resource)");
    } else if (strcmp(cond, "not-authorized") == 0) {
        return act_stop(XPB_EAUTH, s->why);
    }
    unsigned floor = strcmp(cond, "system-shutdown") == 0 ? s->cfg.backoff_max_ms / 2 : 0;
    return act_retry(XPB_ESTREAM, s->why, floor, 1);
}

static session_action on_ws_close(xpb_session *s, const xpb_node *el)
{
    return session_on_server_close(s, session_attr(el, "see-other-uri"));
}

static session_action on_ws_open(xpb_session *s, const xpb_node *el)
{
    (void)s;
    (void)el; /* RFC 7395 §3.4: the server's answer to our <open/>: nothing to do */
    return act_continue();
}

/* XEP-0199 §6: answer the server's ping (RFC 6120 §8.2.3 demands an answer). */
static int is_ping(const xpb_node *el)
{
    const char *type = session_attr(el, "type");
    return strcmp(el->name, "iq") == 0 && type != NULL && strcmp(type, "get") == 0 &&
           session_attr(el, "id") != NULL && xpb_node_child(el, NS_PING, "ping") != NULL;
}

static session_action on_client_stanza(xpb_session *s, const xpb_node *el)
{
    if (strcmp(el->name, "message") != 0 && strcmp(el->name, "presence") != 0 &&
        strcmp(el->name, "iq") != 0)
        return act_continue();
    if (s->sm_on) s->h_in++; /* uint32 arithmetic wraps at 2^32 (XEP-0198 §4) */
    s->stats.stanzas_in++;
    int handled;
    session_action a = session_own_iq_result(s, el, &handled);
    if (handled) return a;
    if (is_ping(el)) return session_write_pong(s, session_attr(el, "id"), session_attr(el, "from"));
    xpb_session_event ev = {.kind = XPB_SE_STANZA, .state = s->state, .stanza = el,
                            .stanza_bytes = xpb_reader_stanza_bytes(s->reader)};
    s->ops->event(s->io, &ev);
    return act_continue();
}

/* ---- the table ------------------------------------------------------------- */

/* Stanzas first: they are most of the traffic. name NULL: any element of ns.
 * An element may have several rows for different states (different `to`). */
#define STANZA_RULE \
    "RFC 6120 §7.1: stanzas only once the stream is authenticated and a resource is bound"
const session_rule session_rules[] = {
    {S(ONLINE) | S(CLOSING), XPB_NS_CLIENT, NULL, on_client_stanza, S(BACKOFF),
     "ping answer past the unacked limit", STANZA_RULE},
    {S(BIND), XPB_NS_CLIENT, NULL, on_client_stanza, S(ONLINE) | S(STOPPED),
     "bind or session result", STANZA_RULE},
    {S(ONLINE) | S(CLOSING), NS_SM, "r", session_on_sm, 0, "r",
     "XEP-0198 §4: acks only on a stream with stream management"},
    {S(ONLINE) | S(CLOSING), NS_SM, "a", session_on_sm, S(BACKOFF), "a with a bad h",
     "XEP-0198 §4: acks only on a stream with stream management"},
    {S(STREAM_OPEN), XPB_NS_STREAMS, "features", session_on_features,
     S(STARTTLS) | S(AUTH) | S(BIND) | S(STOPPED), "features",
     "RFC 6120 §4.3.2: features follow the server's stream header"},
    {LINK & ~S(CLOSING), XPB_NS_STREAMS, "error", on_stream_error, S(BACKOFF) | S(STOPPED),
     "stream error", "RFC 6120 §4.9"},
    {S(CLOSING), XPB_NS_STREAMS, "error", on_stream_error, S(STOPPED), "stream error",
     "RFC 6120 §4.9"},
    {LINK & ~S(CLOSING), NS_FRAMING, "close", on_ws_close, S(BACKOFF) | S(STOPPED),
     "server closes the stream", "RFC 7395 §3.6"},
    {S(CLOSING), NS_FRAMING, "close", on_ws_close, S(STOPPED), "server closes the stream",
     "RFC 7395 §3.6"},
    {S(STREAM_OPEN), NS_FRAMING, "open", on_ws_open, 0, "open",
     "RFC 7395 §3.4: <open/> answers the client's <open/>"},
    {S(STARTTLS), NS_TLS, "proceed", session_on_proceed, S(TLS_HANDSHAKE), "proceed",
     "RFC 6120 §5.4.2.3: <proceed/> answers <starttls/>"},
    {S(STARTTLS), NS_TLS, "failure", session_on_tls_failure, S(STOPPED), "TLS failure",
     "RFC 6120 §5.4.2.2: <failure/> answers <starttls/>"},
    {S(AUTH), NS_SASL, "challenge", session_on_challenge, S(STOPPED), "bad challenge",
     "RFC 6120 §6.4.3: challenges only during the SASL exchange"},
    {S(AUTH), NS_SASL, "success", session_on_success, S(STREAM_OPEN) | S(STOPPED),
     "success (stream restart)", "RFC 6120 §6.4.6: <success/> only during the SASL exchange"},
    {S(AUTH), NS_SASL, "failure", session_on_sasl_failure, S(BACKOFF) | S(STOPPED),
     "SASL failure", "RFC 6120 §6.4.5: <failure/> only during the SASL exchange"},
    {S(BIND), NS_SM, "enabled", session_on_sm, S(ONLINE) | S(BACKOFF), "enabled",
     "XEP-0198 §3: <enabled/> answers <enable/>"},
    {S(BIND), NS_SM, "resumed", session_on_sm, S(ONLINE) | S(BACKOFF), "resumed",
     "XEP-0198 §5: <resumed/> answers <resume/>"},
    {S(BIND), NS_SM, "failed", session_on_sm, S(ONLINE) | S(BACKOFF), "failed",
     "XEP-0198 §3, §5: <failed/> answers <enable/> or <resume/>"},
};
const size_t session_n_rules = sizeof session_rules / sizeof session_rules[0];

/* Moves no element causes. */
const session_edge session_edges[] = {
    {S(IDLE) | S(STOPPED), "start", S(CONNECTING)},
    {S(CONNECTING), "connect refused", S(BACKOFF)},
    {S(CONNECTING), "connected", S(STREAM_OPEN) | S(STOPPED)},
    {S(TLS_HANDSHAKE), "TLS ready", S(STREAM_OPEN)},
    {S(CONNECTING) | LINK | S(TLS_HANDSHAKE) | S(BACKOFF), "TLS failed", S(STOPPED)},
    {S(CONNECTING) | S(STREAM_OPEN) | S(STARTTLS) | S(AUTH) | S(BIND) | S(ONLINE), "link lost",
     S(BACKOFF)},
    {S(CLOSING), "link lost", S(STOPPED)},
    {S(BACKOFF), "reconnect timer, redirect", S(CONNECTING)},
    {S(CONNECTING) | S(STREAM_OPEN) | S(STARTTLS) | S(TLS_HANDSHAKE) | S(AUTH) | S(BIND),
     "connect timer", S(BACKOFF)},
    {S(ONLINE), "ping timeout", S(BACKOFF)},
    {S(ONLINE), "resume unacknowledged", S(BACKOFF)},
    {S(CLOSING), "close timer", S(STOPPED)},
    {S(ONLINE), "close()", S(CLOSING) | S(BACKOFF)},
    {S(IDLE) | S(CONNECTING) | S(STREAM_OPEN) | S(STARTTLS) | S(TLS_HANDSHAKE) | S(AUTH) |
         S(BIND) | S(BACKOFF),
     "close()", S(STOPPED)},
    {LINK, "XML error, element out of place", S(BACKOFF)},
};
const size_t session_n_edges = sizeof session_edges / sizeof session_edges[0];

static int rule_matches(const session_rule *r, const char *ns, const char *name)
{
    return strcmp(ns, r->ns) == 0 && (r->name == NULL || strcmp(name, r->name) == 0);
}

const session_rule *session_rule_find(const char *ns, const char *name, xpb_session_state st,
                                      unsigned *allowed)
{
    const session_rule *first = NULL;
    *allowed = 0;
    for (size_t i = 0; i < session_n_rules; i++) {
        const session_rule *r = &session_rules[i];
        if (!rule_matches(r, ns, name)) continue;
        if (r->from & SS_BIT(st)) return r;
        if (first == NULL) first = r;
    }
    for (size_t i = 0; first != NULL && i < session_n_rules; i++) /* every state it may come in */
        if (rule_matches(&session_rules[i], ns, name)) *allowed |= session_rules[i].from;
    return first;
}

static void allowed_states(char *out, size_t cap, unsigned mask)
{
    size_t len = 0;
    out[0] = '\0';
    for (int st = 0; st <= XPB_SS_STOPPED && len < cap; st++) {
        if (!(mask & SS_BIT(st))) continue;
        int w = snprintf(out + len, cap - len, "%s%s", len ? ", " : "",
                         xpb_session_state_name((xpb_session_state)st));
        if (w < 0) break;
        len += (size_t)w;
    }
}

/* RFC 6120 §4.9: named once, in the stream error's text and the event. */
static session_action out_of_place(xpb_session *s, const session_rule *r, unsigned from,
                                   const xpb_node *el)
{
    char allowed[160];
    allowed_states(allowed, sizeof allowed, from);
    session_whyf(s, "<%.40s xmlns='%.60s'/> is out of place in state %s (%s; allowed in: %s)",
                 el->name, el->ns, xpb_session_state_name(s->state), r->rule, allowed);
    return (session_action){ACT_REFUSE, XPB_ESTREAM, s->why, 0, 1};
}

session_action session_dispatch(xpb_session *s, const xpb_node *el)
{
    unsigned allowed;
    const session_rule *r = session_rule_find(el->ns, el->name, s->state, &allowed);
    /* Elements the session does not know are extensions it may ignore
     * (RFC 6120 §8.4). */
    if (r == NULL) return act_continue();
    if (!(r->from & SS_BIT(s->state))) return out_of_place(s, r, allowed, el);
    return r->fn(s, el);
}

int session_transition_declared(xpb_session_state from, xpb_session_state to)
{
    unsigned f = SS_BIT(from), t = SS_BIT(to);
    if (from == to) return 1;
    for (size_t i = 0; i < session_n_rules; i++)
        if ((session_rules[i].from & f) && (session_rules[i].to & t)) return 1;
    for (size_t i = 0; i < session_n_edges; i++)
        if ((session_edges[i].from & f) && (session_edges[i].to & t)) return 1;
    return 0;
}
