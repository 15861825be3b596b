/* Stream negotiation of the c2s session: what the features ask for
 * (RFC 6120 §4.3), STARTTLS (§5), SASL (§6, through bridge/session/sasl.c),
 * resource binding (§7), RFC 3921 §3 session establishment, and going online.
 * Handlers return an action for session_apply(); session_table.c decides
 * which of them may run in which state. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_internal.h"
#include "xpb_error.h"

/* ---- features: STARTTLS, SASL, bind / resume ------------------------------- */

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

static size_t offered_mechs(const xpb_node *mechs, const char **out, size_t max)
{
    size_t n = 0;
    for (const xpb_node *c = mechs ? mechs->children : NULL; c && n < max; c = c->next)
        if (c->kind == XPB_NODE_ELEMENT && strcmp(c->ns, NS_SASL) == 0 &&
            strcmp(c->name, "mechanism") == 0)
            out[n++] = session_node_text(c);
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

static session_action start_auth(xpb_session *s, const xpb_node *features)
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
        session_whyf(s, "SASL: %s%s%s", xpb_strerror(rc),
                     s->sasl && *xpb_sasl_error(s->sasl) ? ": " : "",
                     s->sasl ? xpb_sasl_error(s->sasl) : "");
        return act_stop(rc, s->why);
    }
    rc = xpb_sasl_start(s->sasl, &out, &out_len);
    if (rc == 0) rc = session_write_sasl(s, "auth", mech, out, out_len);
    if (rc != 0) return act_stop(rc, "SASL: could not start the exchange");
    char list[XPB_SESSION_MAX_MECHS * 24];
    mech_list(list, sizeof list, offered, n);
    session_whyf(s, "authenticating with %s; the server offers %s%s", mech, list,
                 cb_listed ? " and lists its channel bindings (XEP-0440)" : "");
    session_set_state(s, XPB_SS_AUTH, s->why, 0, 1);
    return act_continue();
}

session_action session_send_bind(xpb_session *s)
{
    s->step = BIND_BIND;
    session_set_state(s, XPB_SS_BIND, "binding a resource", 0, 1);
    session_next_iq_id(s, s->iq_bind, sizeof s->iq_bind, "bind");
    session_write_bind(s);
    return act_continue();
}

static session_action send_resume(xpb_session *s)
{
    s->step = BIND_RESUME;
    session_set_state(s, XPB_SS_BIND, "resuming the previous session", 0, 1);
    session_write_resume(s);
    return act_continue();
}

/* RFC 3921 §3 session establishment, only when not marked <optional/>. */
static int session_mandatory(const xpb_node *features)
{
    const xpb_node *sess = xpb_node_child(features, NS_SESSION, "session");
    return sess != NULL && xpb_node_child(sess, NS_SESSION, "optional") == NULL;
}

session_action session_on_features(xpb_session *s, const xpb_node *el)
{
    if (!s->tls) {
        if (!session_is_ws(s) && xpb_node_child(el, NS_TLS, "starttls") != NULL) {
            session_set_state(s, XPB_SS_STARTTLS, "STARTTLS requested", 0, 1);
            session_write_empty(s, NS_TLS, "starttls");
            return act_continue();
        }
        if (!s->cfg.allow_plaintext)
            return act_stop(XPB_ENOTLS,
                            "server offers no STARTTLS; refusing to authenticate without TLS");
    }
    if (!s->authed) return start_auth(s, el);
    s->sm_offered = xpb_node_child(el, NS_SM, "sm") != NULL;
    s->session_required = session_mandatory(el);
    if (s->cfg.stream_management && s->sm_offered && s->sm_id != NULL) return send_resume(s);
    return session_send_bind(s);
}

session_action session_on_proceed(xpb_session *s, const xpb_node *el)
{
    (void)el;
    /* RFC 6120 §5.4.3.3: nothing after <proceed/> in this chunk was protected:
     * the parse stops; session_apply resets the reader and starts TLS. */
    session_set_state(s, XPB_SS_TLS_HANDSHAKE, "TLS handshake", 0, 1);
    return (session_action){ACT_START_TLS, 0, NULL, 0, 0};
}

session_action session_on_tls_failure(xpb_session *s, const xpb_node *el)
{
    (void)s;
    (void)el;
    return act_stop(XPB_ETLS, "server refused STARTTLS (<failure/>)");
}

/* ---- SASL ------------------------------------------------------------------ */

static int decode_payload(const xpb_node *el, unsigned char **out, size_t *len)
{
    const char *t = session_node_text(el);
    return xpb_sasl_b64_decode(t, strlen(t), out, len);
}

static session_action auth_failed(xpb_session *s, int rc, const char *what)
{
    session_whyf(s, "%s: %s%s%s", what, xpb_strerror(rc), *xpb_sasl_error(s->sasl) ? ": " : "",
                 xpb_sasl_error(s->sasl));
    return act_stop(XPB_EAUTH, s->why);
}

session_action session_on_challenge(xpb_session *s, const xpb_node *el)
{
    if (s->sasl == NULL) return act_continue();
    unsigned char *in = NULL;
    size_t in_len = 0;
    const unsigned char *out = NULL;
    size_t out_len = 0;
    int rc = decode_payload(el, &in, &in_len);
    if (rc == 0) rc = xpb_sasl_step(s->sasl, in, in_len, &out, &out_len);
    session_free_secret(in, in_len);
    if (rc == 0) rc = session_write_sasl(s, "response", NULL, out, out_len);
    return rc != 0 ? auth_failed(s, rc, "SASL challenge refused") : act_continue();
}

session_action session_on_success(xpb_session *s, const xpb_node *el)
{
    if (s->sasl == NULL) return act_continue();
    unsigned char *in = NULL;
    size_t in_len = 0;
    int rc = decode_payload(el, &in, &in_len);
    if (rc == 0) rc = xpb_sasl_finish(s->sasl, in, in_len); /* RFC 5802 §5.1 */
    session_free_secret(in, in_len);
    if (rc != 0) return auth_failed(s, rc, "SASL success not trusted");
    xpb_sasl_free(s->sasl);
    s->sasl = NULL;
    s->authed = 1;
    return (session_action){ACT_RESTART, 0, NULL, 0, 0}; /* RFC 6120 §6.4.6 */
}

session_action session_on_sasl_failure(xpb_session *s, const xpb_node *el)
{
    if (s->sasl == NULL) return act_continue();
    const char *cond = session_first_child_name(el, "text");
    if (strcmp(cond, "temporary-auth-failure") == 0)
        /* RFC 6120 §6.5.9: the server's problem, "try again later": retried
         * with the backoff of a lost connection, never a stop. */
        return act_retry(XPB_EAUTH,
                         "authentication failed: temporary-auth-failure (RFC 6120 §6.5.9): "
                         "retrying", 0, 0);
    session_whyf(s, "authentication failed: %.100s", cond);
    return act_stop(XPB_EAUTH, s->why);
}

/* ---- bind, session, online ------------------------------------------------- */

session_action session_go_online(xpb_session *s, int resumed)
{
    s->step = BIND_NONE;
    s->redirects = 0;
    session_set_timer(s, XPB_TIMER_CONNECT, 0);
    /* The backoff starts over only once this link has lasted (STABLE timer). */
    session_set_timer(s, XPB_TIMER_STABLE, s->cfg.backoff_reset_ms);
    /* Online before sending so the queue flushes; reported once it is out. */
    session_set_state(s, XPB_SS_ONLINE, NULL, 0, 0);
    session_action a = act_continue();
    if (!resumed && s->cfg.fetch_roster) a = session_write_roster_get(s);
    if (a.kind == ACT_CONTINUE && !resumed && s->cfg.send_presence)
        a = session_write_presence(s, 0);
    if (a.kind != ACT_CONTINUE) return a;
    session_flush_queue(s);
    session_request_ack_if_pending(s);
    session_arm_ping(s);
    if (s->state != XPB_SS_ONLINE) return act_continue();
    session_emit_event(s, XPB_SE_STATE, resumed ? "session resumed" : "session established", 0);
    xpb_session_event ev = {.kind = XPB_SE_ONLINE, .state = s->state, .jid = s->bound_jid,
                            .resumed = resumed};
    s->ops->event(s->io, &ev);
    return act_continue();
}

static session_action after_bind(xpb_session *s)
{
    if (!s->cfg.stream_management || !s->sm_offered) return session_go_online(s, 0);
    s->step = BIND_ENABLE;
    session_write_enable(s);
    return act_continue();
}

static session_action on_bind_result(xpb_session *s, const xpb_node *iq, const char *type)
{
    const char *jid = session_node_text(
        xpb_node_child(xpb_node_child(iq, NS_BIND, "bind"), NS_BIND, "jid"));
    if (strcmp(type, "result") != 0 || *jid == '\0') {
        session_whyf(s, "resource binding refused: %.100s",
                     session_first_child_name(xpb_node_child(iq, XPB_NS_CLIENT, "error"), "text"));
        return act_stop(XPB_ESTREAM, s->why);
    }
    free(s->bound_jid);
    s->bound_jid = session_dup_str(jid);
    /* A fresh session after a failed resume: counters restart at 0 at enable. */
    session_drop_internal_items(s);
    if (!s->session_required) return after_bind(s);
    s->step = BIND_SESSION;
    session_next_iq_id(s, s->iq_session, sizeof s->iq_session, "sess");
    session_write_session_iq(s);
    return act_continue();
}

session_action session_own_iq_result(xpb_session *s, const xpb_node *el, int *handled)
{
    const char *id = session_attr(el, "id"), *type = session_attr(el, "type");
    *handled = 0;
    if (id == NULL || type == NULL || strcmp(el->name, "iq") != 0) return act_continue();
    if (strcmp(type, "result") != 0 && strcmp(type, "error") != 0) return act_continue();
    *handled = 1;
    if (s->step == BIND_BIND && strcmp(id, s->iq_bind) == 0) return on_bind_result(s, el, type);
    if (s->step == BIND_SESSION && strcmp(id, s->iq_session) == 0) {
        if (strcmp(type, "result") == 0) return after_bind(s);
        return act_stop(XPB_ESTREAM, "session establishment refused");
    }
    if (strcmp(id, s->iq_roster) == 0 || strcmp(id, s->iq_ping) == 0) return act_continue();
    *handled = 0;
    return act_continue();
}
