/* What the files of the c2s session share (private to bridge/session/): the
 * session struct, the actions handlers return, and the functions each file
 * offers the others. session_table.c holds the transitions; session.c applies
 * actions and owns the public API. */
#ifndef XPB_SESSION_INTERNAL_H
#define XPB_SESSION_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

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
#define SESSION_WHY_MAX 1024u            /* a reason sentence kept for an action */

/* The one sub-state: steps inside XPB_SS_BIND (RFC 6120 §7, RFC 3921 §3,
 * XEP-0198 §3, §5). */
typedef enum bind_step { BIND_NONE = 0, BIND_RESUME, BIND_BIND, BIND_SESSION, BIND_ENABLE } bind_step;

/* What a handler asks for; session_apply() carries it out. Every kind but
 * ACT_CONTINUE ends the parse of the current chunk: the reader cannot be
 * reset from inside its own callback, and after TLS, SASL success or a lost
 * link nothing that followed in the chunk may be trusted or used. */
typedef enum session_act {
    ACT_CONTINUE = 0, /* keep parsing */
    ACT_HALTED,       /* the link is already gone (a drop inside a callback): stop parsing */
    ACT_START_TLS,    /* <proceed/>: drop the rest of the chunk, ops->starttls (RFC 6120 §5.4.3.3) */
    ACT_RESTART,      /* SASL success: a new stream (RFC 6120 §6.4.6) */
    ACT_REFUSE,       /* element out of place: stream error naming the rule, close, reconnect */
    ACT_STREAM_ERROR, /* our XEP-0198 stream error in why_xml: send, close, new session */
    ACT_RETRY,        /* report (code != 0), close our stream (close_stream), back off */
    ACT_REDIRECT,     /* see-other-host / see-other-uri: reconnect at once */
    ACT_STOP,         /* closed for good: report code (0 = clean close) */
} session_act;

typedef struct session_action {
    session_act kind;
    int code;               /* XPB_E… for RETRY / STOP / STREAM_ERROR, 0 when none */
    const char *reason;     /* static text or s->why */
    unsigned backoff_floor; /* RETRY: the least delay before reconnecting */
    int close_stream;       /* RETRY: send our </stream:stream> first */
} session_action;

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

    xpb_session_state state;     /* written only by set_state() */
    session_action pending;      /* what stopped the current parse (ACT_CONTINUE: none) */
    xpb_reader *reader;
    xpb_session_target target;
    char *redirect_host, *redirect_text, *redirect_uri;
    int redirect_pending;
    unsigned redirects;

    int link;                    /* ops->connect called, transport not reported gone */
    int tls, authed;             /* this link is encrypted / this stream authenticated */
    char *cb_type;
    unsigned char cb_data[XPB_SASL_CB_MAX];
    size_t cb_len;
    xpb_sasl *sasl;
    xpb_sasl_cache *sasl_cache;
    char *test_nonce;

    bind_step step;
    int sm_offered, session_required;
    char iq_bind[32], iq_session[32], iq_roster[32], iq_ping[32];
    uint64_t iq_counter, id_counter, next_handle;
    char last_id[XPB_SESSION_ID_MAX];
    size_t last_bytes; /* XML size of the stanza last accepted by xpb_session_send */
    const char *why;   /* reason text of the action being applied (session_whyf) */
    char *why_buf;     /* its SESSION_WHY_MAX bytes, made on demand, freed when idle */
    char *why_xml;     /* ACT_STREAM_ERROR: the <stream:error/> to send, or NULL */
    xpb_buf wbuf;                /* where session_xml.c builds elements, reused */

    /* XEP-0198 */
    int sm_on;                   /* enabled or resumed on this stream */
    char *sm_id;                 /* resumable session id (kept across links) */
    char *sm_location;           /* <enabled location=''/>, NULL none; kept, not used */
    int sm_imported;             /* sm_id came from cfg.resume: h of <resumed/> is the server's */
    int resume_probe;            /* resumed: the queue waits for an
                                  * <a/> answering our <r/> (session_sm.c, on_resumed) */
    uint32_t h_in, last_acked;
    unsigned since_r;
    int ack_timer_armed;

    /* [0, n_sent) sent and unacked; the rest queued. items points into
     * items_base (cap_items entries): an ack releases from the front by
     * moving items on, not by moving every unacked entry down. */
    out_item *items, *items_base;
    size_t n_items, cap_items, n_sent;
    xpb_session_gauges *gauges;  /* the owner's copy of the queue's gauges, or NULL */

    unsigned backoff_cur;
    int ping_wait;
    xpb_session_stats stats;
};

/* ---- actions (session.c) ------------------------------------------------- */
static inline session_action act_continue(void) { return (session_action){ACT_CONTINUE, 0, NULL, 0, 0}; }
static inline session_action act_stop(int code, const char *why)
{
    return (session_action){ACT_STOP, code, why, 0, 0};
}
static inline session_action act_retry(int code, const char *why, unsigned floor, int close)
{
    return (session_action){ACT_RETRY, code, why, floor, close};
}
void session_apply(xpb_session *s, session_action a);
/* Formats the reason of the action being built into the session's reason
 * buffer (made on first use) and returns it; s->why points to it. */
const char *session_whyf(xpb_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The only writer of s->state. emit = 0 defers the XPB_SE_STATE event to the
 * caller (going online reports after the queue is flushed). */
void session_set_state(xpb_session *s, xpb_session_state st, const char *reason, int code,
                       int emit);
void session_emit_event(xpb_session *s, xpb_session_event_kind kind, const char *reason, int code);
void session_set_timer(xpb_session *s, xpb_session_timer t, unsigned ms);
int session_emit_bytes(xpb_session *s, const char *data, size_t len);
int session_is_ws(const xpb_session *s);
char *session_dup_str(const char *s);
void session_free_secret(void *p, size_t len);
int session_parse_u32(const char *v, uint32_t *out);
const char *session_node_text(const xpb_node *el);
const char *session_attr(const xpb_node *el, const char *name);
const char *session_first_child_name(const xpb_node *el, const char *skip);
void session_next_iq_id(xpb_session *s, char *dst, size_t cap, const char *what);
int session_link_up(const xpb_session *s); /* the transport reported connected */
void session_arm_ping(xpb_session *s);
/* </stream:stream> or RFC 7395 <close see-other-uri=''/> from the server. */
session_action session_on_server_close(xpb_session *s, const char *see_other_uri);

/* ---- the transition table (session_table.c) ------------------------------ */
typedef session_action (*session_handler)(xpb_session *s, const xpb_node *el);
/* A row: in these states (bit mask of 1u << state) the element {ns, name}
 * goes to fn, which may move the session to the states in `to`. */
typedef struct session_rule {
    unsigned from;
    const char *ns, *name;
    session_handler fn;
    unsigned to;
    const char *label;          /* the edge in docs/architecture.md */
    const char *rule;           /* the spec rule an out-of-place element breaks */
} session_rule;
/* Transitions caused by transport events, timers and the API (no element). */
typedef struct session_edge {
    unsigned from;
    const char *trigger;
    unsigned to;
} session_edge;
#define SS_BIT(st) (1u << (st))
extern const session_rule session_rules[];
extern const size_t session_n_rules;
extern const session_edge session_edges[];
extern const size_t session_n_edges;
/* The row for {ns, name} in state st; when no row allows st, the first row
 * for {ns, name} (its `from` lacks st) and *allowed = every state that has
 * one; NULL for an element the session does not know. */
const session_rule *session_rule_find(const char *ns, const char *name, xpb_session_state st,
                                      unsigned *allowed);
/* Dispatch a depth-1 element through the table. */
session_action session_dispatch(xpb_session *s, const xpb_node *el);
/* 1 when some row or edge declares the move from -> to. */
int session_transition_declared(xpb_session_state from, xpb_session_state to);

/* ---- negotiation: features, STARTTLS, SASL, bind (session_auth.c) -------- */
session_action session_on_features(xpb_session *s, const xpb_node *el);
session_action session_on_proceed(xpb_session *s, const xpb_node *el);
session_action session_on_tls_failure(xpb_session *s, const xpb_node *el);
session_action session_on_challenge(xpb_session *s, const xpb_node *el);
session_action session_on_success(xpb_session *s, const xpb_node *el);
session_action session_on_sasl_failure(xpb_session *s, const xpb_node *el);
session_action session_send_bind(xpb_session *s);
/* Results of our own iqs are consumed; *handled = 1 when el was one. */
session_action session_own_iq_result(xpb_session *s, const xpb_node *el, int *handled);
session_action session_go_online(xpb_session *s, int resumed);

/* ---- stream management and the outbound queue (session_sm.c) ------------- */
session_action session_on_sm(xpb_session *s, const xpb_node *el);
int session_item_insert(xpb_session *s, size_t at, uint64_t handle, const char *xml, size_t len);
/* After every change of n_items or n_sent: the owner's copy follows. */
static inline void session_gauges_sync(xpb_session *s)
{
    if (!s->gauges) return;
    atomic_store_explicit(&s->gauges->queued, (unsigned)(s->n_items - s->n_sent),
                          memory_order_relaxed);
    atomic_store_explicit(&s->gauges->unacked, (unsigned)s->n_sent, memory_order_relaxed);
}
void session_items_free(xpb_session *s);
void session_fail_all_items(xpb_session *s, const char *reason);
void session_drop_internal_items(xpb_session *s);
void session_forget_sm(xpb_session *s);
void session_import_sm(xpb_session *s, const xpb_session_sm *st);
void session_request_ack(xpb_session *s);
void session_request_ack_if_pending(xpb_session *s);
void session_flush_queue(xpb_session *s);
/* The session's own stanza; with SM it is kept until acknowledged. */
session_action session_send_internal(xpb_session *s, const char *xml, size_t len);

/* ---- XML the session writes (session_xml.c), all through xpb_writer ------ */
int session_write_stream_header(xpb_session *s);
void session_write_stream_close(xpb_session *s);
int session_write_empty(xpb_session *s, const char *ns, const char *name); /* <starttls/>, <r/> */
int session_write_sasl(xpb_session *s, const char *name, const char *mech,
                       const unsigned char *data, size_t len);
int session_write_bind(xpb_session *s);
int session_write_session_iq(xpb_session *s);
int session_write_resume(xpb_session *s);
int session_write_enable(xpb_session *s);
int session_write_answer_r(xpb_session *s);
/* The stanzas below go through session_send_internal (SM-tracked). */
session_action session_write_roster_get(xpb_session *s);
session_action session_write_presence(xpb_session *s, int unavailable);
session_action session_write_ping(xpb_session *s);
session_action session_write_pong(xpb_session *s, const char *id, const char *from);
/* <stream:error><cond/>[extra][<text>text</text>]</stream:error> into out. */
int session_format_stream_error(xpb_buf *out, const char *cond, const char *app_ns,
                                const char *app_name, const char *h, const char *send_count,
                                const char *text);

#endif
