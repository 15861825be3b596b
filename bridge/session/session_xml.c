/* Every element the c2s session writes, through the codec's xpb_writer
 * (codec/xpb_xml.h): escaping and namespace declarations are the writer's
 * job, not string pasting. In a TCP stream jabber:client is the default
 * namespace; RFC 7395 §3.3.3 makes each WebSocket message carry it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_internal.h"
#include "xpb_error.h"
#include "xpb_jid.h"

/* A writer whose first error sticks, so an element reads as its steps. The
 * session's elements are built in its reusable s->wbuf (no allocation per
 * element once it has grown); a nested write (an <r/> after a tracked send)
 * only starts after the outer one's bytes were consumed. */
typedef struct out {
    xpb_buf *buf;
    xpb_writer w;
    int rc;
} out;

static void o_init(out *o, xpb_buf *buf, const char *parent_ns)
{
    o->buf = buf;
    o->buf->len = 0;
    xpb_writer_init(&o->w, o->buf, parent_ns);
    o->rc = 0;
}

/* Stanzas (ns NULL: jabber:client) and stream-level elements alike. */
static void o_init_for(out *o, xpb_session *s)
{
    o_init(o, &s->wbuf, session_is_ws(s) ? "" : XPB_NS_CLIENT);
}

static void o_start(out *o, const char *ns, const char *name)
{
    if (o->rc == 0) o->rc = xpb_writer_start(&o->w, ns, name);
}

static void o_attr(out *o, const char *name, const char *value)
{
    if (o->rc == 0 && value != NULL) o->rc = xpb_writer_attr(&o->w, NULL, name, value, strlen(value));
}

static void o_text(out *o, const char *text, size_t len)
{
    if (o->rc == 0) o->rc = xpb_writer_text(&o->w, text, len);
}

static void o_end(out *o)
{
    if (o->rc == 0) o->rc = xpb_writer_end(&o->w);
}

/* <name>text</name> in the parent's namespace. */
static void o_child_text(out *o, const char *name, const char *text)
{
    o_start(o, NULL, name);
    o_text(o, text, strlen(text));
    o_end(o);
}

/* Sends what was built (not SM-tracked: stream-level elements). */
static int o_send(xpb_session *s, out *o)
{
    return o->rc == 0 ? session_emit_bytes(s, o->buf->data, o->buf->len) : o->rc;
}

/* Sends a stanza of the session's own (SM-tracked, see session_sm.c). */
static session_action o_send_internal(xpb_session *s, out *o)
{
    return o->rc == 0 ? session_send_internal(s, o->buf->data, o->buf->len) : act_continue();
}

/* ---- stream ---------------------------------------------------------------- */

int session_write_stream_header(xpb_session *s)
{
    if (session_is_ws(s)) { /* RFC 7395 §3.4 */
        out o;
        o_init(&o, &s->wbuf, "");
        o_start(&o, NS_FRAMING, "open");
        o_attr(&o, "to", s->jid.domain);
        o_attr(&o, "version", "1.0");
        o_end(&o);
        return o_send(s, &o);
    }
    /* RFC 6120 §4.7.1: 'from' only once the stream is protected. */
    xpb_buf b;
    xpb_buf_init(&b, 0);
    char *bare = s->tls ? xpb_jid_bare(&s->jid) : NULL;
    int rc = xpb_buf_append_str(&b, "<?xml version='1.0'?>");
    if (rc == 0) rc = xpb_xml_write_stream_header(&b, bare, s->jid.domain, NULL, "1.0", NULL);
    free(bare);
    if (rc == 0) rc = session_emit_bytes(s, b.data, b.len);
    xpb_buf_free(&b);
    return rc;
}

void session_write_stream_close(xpb_session *s)
{
    if (session_is_ws(s)) {
        session_write_empty(s, NS_FRAMING, "close");
        return;
    }
    static const char end[] = "</stream:stream>"; /* the end tag of the header we sent */
    session_emit_bytes(s, end, sizeof end - 1);
}

int session_write_empty(xpb_session *s, const char *ns, const char *name)
{
    out o;
    o_init_for(&o, s);
    o_start(&o, ns, name);
    o_end(&o);
    return o_send(s, &o);
}

int session_format_stream_error(xpb_buf *b, const char *cond, const char *app_ns,
                                const char *app_name, const char *h, const char *send_count,
                                const char *text)
{
    xpb_buf local;
    xpb_buf_init(&local, 0);
    out o;
    o_init(&o, &local, "");
    /* The prefix is declared here too, so the element stands alone (RFC 7395
     * §3.6 messages do; in TCP it repeats the stream header's). */
    o_start(&o, NULL, "stream:error");
    o_attr(&o, "xmlns:stream", XPB_NS_STREAMS);
    o_start(&o, NS_STREAM_ERR, cond);
    o_end(&o);
    if (app_ns != NULL) { /* XEP-0198 §6 */
        o_start(&o, app_ns, app_name);
        o_attr(&o, "h", h);
        o_attr(&o, "send-count", send_count);
        o_end(&o);
    }
    if (text != NULL) { /* RFC 6120 §4.9.2: the rule, for the server's logs */
        o_start(&o, NS_STREAM_ERR, "text");
        o_text(&o, text, strlen(text));
        o_end(&o);
    }
    o_end(&o);
    int rc = o.rc;
    if (rc == 0) rc = xpb_buf_append(b, local.data, local.len);
    xpb_buf_free(&local);
    return rc;
}

/* ---- negotiation ----------------------------------------------------------- */

/* <auth mechanism=''/> or <response/>: base64 of SASL data that may hold the
 * password, so the buffer is wiped after sending (RFC 6120 §6.4.2). */
int session_write_sasl(xpb_session *s, const char *name, const char *mech,
                       const unsigned char *data, size_t len)
{
    char *b64 = NULL;
    size_t b64_len = 0;
    int rc = xpb_sasl_b64_encode(data, len, &b64, &b64_len);
    if (rc != 0) return rc;
    xpb_buf secret; /* its own buffer: wiped, never reused */
    xpb_buf_init(&secret, 0);
    out o;
    o_init(&o, &secret, session_is_ws(s) ? "" : XPB_NS_CLIENT);
    o_start(&o, NS_SASL, name);
    o_attr(&o, "mechanism", mech);
    o_text(&o, b64, b64_len);
    o_end(&o);
    rc = o.rc;
    if (rc == 0) rc = session_emit_bytes(s, secret.data, secret.len);
    if (secret.data != NULL) session_free_secret(secret.data, secret.cap);
    session_free_secret(b64, b64_len);
    return rc;
}

int session_write_bind(xpb_session *s)
{
    out o;
    o_init_for(&o, s);
    o_start(&o, XPB_NS_CLIENT, "iq");
    o_attr(&o, "type", "set");
    o_attr(&o, "id", s->iq_bind);
    o_start(&o, NS_BIND, "bind");
    if (s->jid.resource != NULL) /* RFC 6120 §7.6: client-submitted */
        o_child_text(&o, "resource", s->jid.resource);
    o_end(&o);
    o_end(&o);
    return o_send(s, &o);
}

int session_write_session_iq(xpb_session *s)
{
    out o;
    o_init_for(&o, s);
    o_start(&o, XPB_NS_CLIENT, "iq");
    o_attr(&o, "type", "set");
    o_attr(&o, "id", s->iq_session);
    o_start(&o, NS_SESSION, "session");
    o_end(&o);
    o_end(&o);
    return o_send(s, &o);
}

/* ---- stream management (XEP-0198) ------------------------------------------ */

int session_write_resume(xpb_session *s)
{
    char h[16];
    snprintf(h, sizeof h, "%" PRIu32, s->h_in);
    out o;
    o_init_for(&o, s);
    o_start(&o, NS_SM, "resume");
    o_attr(&o, "previd", s->sm_id);
    o_attr(&o, "h", h);
    o_end(&o);
    return o_send(s, &o);
}

int session_write_enable(xpb_session *s)
{
    out o;
    o_init_for(&o, s);
    o_start(&o, NS_SM, "enable");
    o_attr(&o, "resume", "true");
    o_end(&o);
    return o_send(s, &o);
}

int session_write_answer_r(xpb_session *s)
{
    char h[16];
    snprintf(h, sizeof h, "%" PRIu32, s->h_in);
    out o;
    o_init_for(&o, s);
    o_start(&o, NS_SM, "a");
    o_attr(&o, "h", h);
    o_end(&o);
    return o_send(s, &o);
}

/* ---- the session's own stanzas --------------------------------------------- */

session_action session_write_roster_get(xpb_session *s)
{
    session_next_iq_id(s, s->iq_roster, sizeof s->iq_roster, "roster");
    out o;
    o_init_for(&o, s);
    o_start(&o, XPB_NS_CLIENT, "iq");
    o_attr(&o, "type", "get");
    o_attr(&o, "id", s->iq_roster);
    o_start(&o, NS_ROSTER, "query");
    o_end(&o);
    o_end(&o);
    return o_send_internal(s, &o);
}

/* RFC 6121 §4.2 initial presence, or §4.5 unavailable presence. */
session_action session_write_presence(xpb_session *s, int unavailable)
{
    out o;
    o_init_for(&o, s);
    o_start(&o, XPB_NS_CLIENT, "presence");
    if (unavailable) {
        o_attr(&o, "type", "unavailable");
    } else {
        if (s->cfg.presence_show) o_child_text(&o, "show", s->cfg.presence_show);
        if (s->cfg.presence_status) o_child_text(&o, "status", s->cfg.presence_status);
    }
    o_end(&o);
    return o_send_internal(s, &o);
}

/* XEP-0199 §4.2: a ping to our server when SM cannot tell us the link lives. */
session_action session_write_ping(xpb_session *s)
{
    session_next_iq_id(s, s->iq_ping, sizeof s->iq_ping, "ping");
    out o;
    o_init_for(&o, s);
    o_start(&o, XPB_NS_CLIENT, "iq");
    o_attr(&o, "type", "get");
    o_attr(&o, "id", s->iq_ping);
    o_attr(&o, "to", s->jid.domain);
    o_start(&o, NS_PING, "ping");
    o_end(&o);
    o_end(&o);
    return o_send_internal(s, &o);
}

/* XEP-0199 §6: the answer to the server's ping (RFC 6120 §8.2.3). */
session_action session_write_pong(xpb_session *s, const char *id, const char *from)
{
    out o;
    o_init_for(&o, s);
    o_start(&o, XPB_NS_CLIENT, "iq");
    o_attr(&o, "type", "result");
    o_attr(&o, "id", id);
    o_attr(&o, "to", from);
    o_end(&o);
    return o_send_internal(s, &o);
}
