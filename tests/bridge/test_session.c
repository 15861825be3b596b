/* Tests for the c2s session (bridge/session/session*.c): a scripted fake server drives the c2s state
 * machine through the ops table, asserts what the session sends and answers
 * with canned XML (STARTTLS, SASL, bind, XEP-0198, pings, backoff, stream
 * errors, clean close, RFC 7395 framing). No network. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "xpb_error.h"
#include "xpb_sasl.h"
#include "xpb_session.h"

#define NS_STREAMS_DECL "xmlns:stream='http://etherx.jabber.org/streams'"
#define SERVER_HEADER                                                                              \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' " NS_STREAMS_DECL                  \
    " id='s1' from='example.com' version='1.0'>"
#define F_STARTTLS "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
#define F_MECHS(m) "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" m "</mechanisms>"
#define MECH(m) "<mechanism>" m "</mechanism>"
#define F_BIND "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
#define F_SM "<sm xmlns='urn:xmpp:sm:3'/>"
#define FEATURES(x) "<stream:features>" x "</stream:features>"
#define PROCEED "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
#define SUCCESS "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
#define PLAIN_B64 "AHVzZXIAcGVuY2ls" /* "\0user\0pencil" (RFC 4616) */
#define FRAMING "urn:ietf:params:xml:ns:xmpp-framing"

/* RFC 5802 §5 */
#define SHA1_NONCE "fyko+d2lbbFgONRv9qkxdawL"
#define SHA1_FIRST "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
#define SHA1_SFIRST "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
#define SHA1_FINAL                                                                                 \
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
#define SHA1_SFINAL "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="

/* ---- the fake loop ------------------------------------------------------- */

typedef struct rec_event {
    xpb_session_event_kind kind;
    xpb_session_state state;
    int code, resumed;
    uint64_t handle;
    char reason[400], jid[200], xml[1000];
} rec_event;

#define MAX_EVENTS 256
#define MAX_SENDS 256
static struct fake {
    xpb_buf out;              /* everything sent since clear_sent() */
    char *sends[MAX_SENDS];   /* each ops->send call */
    int n_sends;
    int connects, starttls_calls, disconnects;
    char target_host[128], target_see_other[128], target_domain[128];
    uint16_t target_port;
    unsigned timers[XPB_TIMER_COUNT];
    rec_event ev[MAX_EVENTS];
    int n_ev;
    uint32_t rnd;
} F;

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static int op_connect(void *io, const xpb_session_target *t)
{
    (void)io;
    F.connects++;
    copy_str(F.target_host, sizeof F.target_host, t->host);
    copy_str(F.target_see_other, sizeof F.target_see_other, t->see_other_host);
    copy_str(F.target_domain, sizeof F.target_domain, t->domain);
    F.target_port = t->port;
    return 0;
}

static int op_send(void *io, const char *data, size_t len)
{
    (void)io;
    xpb_buf_append(&F.out, data, len);
    if (F.n_sends < MAX_SENDS) {
        char *c = malloc(len + 1);
        memcpy(c, data, len);
        c[len] = '\0';
        F.sends[F.n_sends++] = c;
    }
    return 0;
}

static int op_starttls(void *io)
{
    (void)io;
    F.starttls_calls++;
    return 0;
}

static void op_disconnect(void *io)
{
    (void)io;
    F.disconnects++;
}

static void op_set_timer(void *io, xpb_session_timer t, unsigned ms)
{
    (void)io;
    F.timers[t] = ms;
}

static void op_event(void *io, const xpb_session_event *e)
{
    (void)io;
    assert_true(F.n_ev < MAX_EVENTS);
    rec_event *r = &F.ev[F.n_ev++];
    memset(r, 0, sizeof *r);
    r->kind = e->kind;
    r->state = e->state;
    r->code = e->code;
    r->resumed = e->resumed;
    r->handle = e->handle;
    copy_str(r->reason, sizeof r->reason, e->reason);
    copy_str(r->jid, sizeof r->jid, e->jid);
    if (e->stanza != NULL) {
        xpb_buf b;
        xpb_buf_init(&b, 0);
        assert_int_equal(xpb_xml_write_node(&b, e->stanza, "jabber:client"), 0);
        xpb_buf_append(&b, "", 1);
        copy_str(r->xml, sizeof r->xml, b.data);
        xpb_buf_free(&b);
    }
    /* RFC 6120 §13.8 / the brief: never a credential in an event */
    assert_null(strstr(r->reason, "pencil"));
    assert_null(strstr(r->reason, PLAIN_B64));
}

static uint32_t op_random(void *io)
{
    (void)io;
    return F.rnd;
}

static const xpb_session_ops OPS = {
    .connect = op_connect, .send = op_send, .starttls = op_starttls,
    .disconnect = op_disconnect, .set_timer = op_set_timer, .event = op_event,
    .random = op_random,
};

static void clear_sent(void)
{
    xpb_buf_reset(&F.out);
    for (int i = 0; i < F.n_sends; i++) free(F.sends[i]);
    F.n_sends = 0;
}

static const char *sent(void)
{
    xpb_buf_append(&F.out, "", 1);
    F.out.len--;
    return F.out.data;
}

static int fake_setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    xpb_buf_init(&F.out, 0);
    F.rnd = 0x12345678u;
    return 0;
}

static int fake_teardown(void **state)
{
    (void)state;
    clear_sent();
    xpb_buf_free(&F.out);
    return 0;
}

#define assert_sent(sub)                                                                           \
    do {                                                                                           \
        if (strstr(sent(), (sub)) == NULL) fail_msg("expected '%s' in sent: %s", (sub), sent());  \
    } while (0)
#define assert_not_sent(sub)                                                                       \
    do {                                                                                           \
        if (strstr(sent(), (sub)) != NULL) fail_msg("unexpected '%s' in sent: %s", (sub), sent()); \
    } while (0)

static void feed(xpb_session *s, const char *xml) { xpb_session_on_bytes(s, xml, strlen(xml)); }

static int count_events(xpb_session_event_kind k)
{
    int n = 0;
    for (int i = 0; i < F.n_ev; i++) n += F.ev[i].kind == k;
    return n;
}

static const rec_event *last_event(xpb_session_event_kind k)
{
    for (int i = F.n_ev - 1; i >= 0; i--)
        if (F.ev[i].kind == k) return &F.ev[i];
    return NULL;
}

static int count_sub(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

/* ---- scripted logins ----------------------------------------------------- */

static void base_cfg(xpb_session_config *c, int sm)
{
    xpb_session_config_init(c);
    c->jid = "user@example.com";
    c->password = (const unsigned char *)"pencil";
    c->password_len = 6;
    c->stream_management = sm;
    c->ack_every = 100;
    c->backoff_min_ms = 100;
    c->backoff_max_ms = 1000;
    c->ping_interval_ms = 30000;
    c->ping_timeout_ms = 5000;
}

static xpb_session *new_session(const xpb_session_config *c)
{
    xpb_session *s = NULL;
    assert_int_equal(xpb_session_new(&s, c, &OPS, NULL), 0);
    return s;
}

/* TCP connect, STARTTLS, PLAIN, restart: ends with the features after SASL
 * fed (so the bind or resume request is in sent()). */
static void negotiate(xpb_session *s, const char *post_auth_features)
{
    if (xpb_session_get_state(s) == XPB_SS_IDLE) assert_int_equal(xpb_session_start(s), 0);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_CONNECTING);
    clear_sent();
    xpb_session_on_connected(s, 0);
    assert_sent("<stream:stream");
    assert_sent("to='example.com'");
    assert_not_sent("from="); /* RFC 6120 §4.7.1: not before TLS */
    feed(s, SERVER_HEADER FEATURES(F_STARTTLS F_MECHS(MECH("PLAIN"))));
    assert_sent("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_not_sent("<auth");
    feed(s, PROCEED);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_TLS_HANDSHAKE);
    clear_sent();
    xpb_session_on_tls_ready(s, NULL, NULL, 0);
    assert_sent("from='user@example.com'");
    feed(s, SERVER_HEADER FEATURES(F_MECHS(MECH("PLAIN"))));
    assert_sent("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" PLAIN_B64
                "</auth>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_AUTH);
    clear_sent();
    feed(s, SUCCESS);
    assert_sent("<stream:stream");
    clear_sent();
    char buf[512];
    snprintf(buf, sizeof buf, "%s<stream:features>%s</stream:features>", SERVER_HEADER,
             post_auth_features);
    feed(s, buf);
}

static void extract_id(const char *prefix, char *out, size_t cap)
{
    const char *p = strstr(sent(), prefix);
    if (p == NULL) fail_msg("no '%s' in %s", prefix, sent());
    p += strlen("id='");
    const char *e = strchr(p, '\'');
    snprintf(out, cap, "%.*s", (int)(e - p), p);
}

static void answer_bind(xpb_session *s, const char *jid)
{
    char id[64], buf[512];
    extract_id("id='xpb-bind-", id, sizeof id);
    clear_sent();
    snprintf(buf, sizeof buf,
             "<iq type='result' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
             "<jid>%s</jid></bind></iq>", id, jid);
    feed(s, buf);
}

/* Full login with SM enabled and resumable: ends ONLINE. */
static xpb_session *online_sm(xpb_session_config *c)
{
    xpb_session *s = new_session(c);
    negotiate(s, F_BIND F_SM);
    answer_bind(s, "user@example.com/r1");
    assert_sent("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    clear_sent();
    feed(s, "<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    return s;
}

static xpb_session *online_plain(xpb_session_config *c)
{
    xpb_session *s = new_session(c);
    negotiate(s, F_BIND);
    answer_bind(s, "user@example.com/r1");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    return s;
}

/* A message record; id NULL lets the session assign one. */
static uint64_t send_msg(xpb_session *s, const char *id, const char *body)
{
    xpb_test_msg m;
    xpb_test_msg_init(&m, "friend@example.com", body);
    xpb_stanza st = m.st;
    st.has_type = 1;
    st.type = XPB__V1__STANZA_TYPE__TYPE_CHAT;
    st.id = (char *)id;
    uint64_t h = 0;
    assert_int_equal(xpb_session_send(s, &st, &h), 0);
    assert_true(h > 0);
    return h;
}

/* ---- tests --------------------------------------------------------------- */

static void test_starttls_plain_login(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    c.fetch_roster = 1;
    xpb_session *s = new_session(&c);
    negotiate(s, F_BIND);
    assert_sent("<iq type='set' id='xpb-bind-");
    assert_sent("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"); /* server assigns */
    answer_bind(s, "user@example.com/assigned-42");
    assert_sent("<query xmlns='jabber:iq:roster'/>");
    assert_sent("<presence/>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    const rec_event *on = last_event(XPB_SE_ONLINE);
    assert_non_null(on);
    assert_string_equal(on->jid, "user@example.com/assigned-42");
    assert_int_equal(on->resumed, 0);
    assert_string_equal(xpb_session_jid(s), "user@example.com/assigned-42");
    /* state sequence */
    static const xpb_session_state want[] = {XPB_SS_CONNECTING, XPB_SS_STREAM_OPEN,
                                             XPB_SS_STARTTLS,   XPB_SS_TLS_HANDSHAKE,
                                             XPB_SS_STREAM_OPEN, XPB_SS_AUTH,
                                             XPB_SS_STREAM_OPEN, XPB_SS_BIND, XPB_SS_ONLINE};
    size_t k = 0;
    for (int i = 0; i < F.n_ev; i++)
        if (F.ev[i].kind == XPB_SE_STATE) {
            assert_true(k < sizeof want / sizeof want[0]);
            assert_int_equal(F.ev[i].state, want[k++]);
            assert_true(F.ev[i].reason[0] != '\0');
        }
    assert_int_equal(k, sizeof want / sizeof want[0]);
    assert_int_equal(F.starttls_calls, 1);
    assert_int_equal(F.timers[XPB_TIMER_CONNECT], 0); /* cancelled when online */
    assert_int_equal(F.timers[XPB_TIMER_PING], 30000);
    assert_string_equal(xpb_session_state_name(XPB_SS_ONLINE), "online");
    /* roster result consumed; a message forwarded; a server ping answered */
    char id[64], buf[256];
    extract_id("id='xpb-roster-", id, sizeof id);
    clear_sent();
    int before = count_events(XPB_SE_STANZA);
    snprintf(buf, sizeof buf, "<iq type='result' id='%s'><query xmlns='jabber:iq:roster'/></iq>", id);
    feed(s, buf);
    feed(s, "<iq type='get' id='p1' from='example.com'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert_sent("<iq type='result' id='p1' to='example.com'/>");
    assert_int_equal(count_events(XPB_SE_STANZA), before);
    feed(s, "<message from='friend@example.com/x' type='chat' id='m1'><body>hi</body></message>");
    assert_int_equal(count_events(XPB_SE_STANZA), before + 1);
    assert_non_null(strstr(last_event(XPB_SE_STANZA)->xml, "<body>hi</body>"));
    xpb_session_free(s);
}

static void test_configured_resource(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    c.jid = "user@example.com/bridge";
    c.send_presence = 0;
    c.presence_show = "away";
    xpb_session *s = new_session(&c);
    negotiate(s, F_BIND);
    assert_sent("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bridge</resource></bind>");
    answer_bind(s, "user@example.com/bridge");
    assert_not_sent("<presence"); /* send_presence = 0 */
    assert_string_equal(last_event(XPB_SE_ONLINE)->jid, "user@example.com/bridge");
    xpb_session_free(s);
}

static void test_mandatory_legacy_session(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = new_session(&c);
    negotiate(s, F_BIND "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>");
    answer_bind(s, "user@example.com/r");
    assert_sent("<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BIND);
    char id[64], buf[128];
    extract_id("id='xpb-sess-", id, sizeof id);
    snprintf(buf, sizeof buf, "<iq type='result' id='%s'/>", id);
    feed(s, buf);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    xpb_session_free(s);
    /* <optional/>: not sent */
    s = new_session(&c);
    negotiate(s, F_BIND "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>");
    answer_bind(s, "user@example.com/r");
    assert_not_sent("xmpp-session");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    xpb_session_free(s);
}

static void scram_login(const char *sfinal, int want_online)
{
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = new_session(&c);
    assert_int_equal(xpb_session_test_set_sasl_nonce(s, SHA1_NONCE), 0);
    assert_int_equal(xpb_session_start(s), 0);
    xpb_session_on_connected(s, 0);
    feed(s, SERVER_HEADER FEATURES(F_STARTTLS));
    feed(s, PROCEED);
    xpb_session_on_tls_ready(s, NULL, NULL, 0);
    clear_sent();
    feed(s, SERVER_HEADER FEATURES(F_MECHS(MECH("PLAIN") MECH("SCRAM-SHA-1"))));
    char *b64 = NULL, xml[512];
    size_t n;
    assert_int_equal(xpb_sasl_b64_encode((const unsigned char *)SHA1_FIRST, strlen(SHA1_FIRST), &b64, &n), 0);
    snprintf(xml, sizeof xml, "mechanism='SCRAM-SHA-1'>%s</auth>", b64);
    assert_sent(xml);
    free(b64);
    clear_sent();
    assert_int_equal(xpb_sasl_b64_encode((const unsigned char *)SHA1_SFIRST, strlen(SHA1_SFIRST), &b64, &n), 0);
    snprintf(xml, sizeof xml, "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</challenge>", b64);
    free(b64);
    feed(s, xml);
    assert_int_equal(xpb_sasl_b64_encode((const unsigned char *)SHA1_FINAL, strlen(SHA1_FINAL), &b64, &n), 0);
    snprintf(xml, sizeof xml, "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>", b64);
    free(b64);
    assert_sent(xml);
    clear_sent();
    assert_int_equal(xpb_sasl_b64_encode((const unsigned char *)sfinal, strlen(sfinal), &b64, &n), 0);
    snprintf(xml, sizeof xml, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</success>", b64);
    free(b64);
    feed(s, xml);
    if (want_online) {
        assert_sent("<stream:stream"); /* restart after a verified success */
        assert_int_equal(xpb_session_get_state(s), XPB_SS_STREAM_OPEN);
    } else {
        assert_not_sent("<stream:stream");
        assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
        assert_int_equal(last_event(XPB_SE_ERROR)->code, XPB_EAUTH);
        assert_int_equal(F.timers[XPB_TIMER_RECONNECT], 0);
    }
    xpb_session_free(s);
}

static void test_scram_sha1_login(void **state)
{
    (void)state;
    scram_login(SHA1_SFINAL, 1);
}

static void test_scram_bad_server_signature(void **state)
{
    (void)state;
    scram_login("v=AAAApqV8S7suAoZWja4dJRkFsKQ=", 0);
}

static void test_sasl_failure_stops(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = new_session(&c);
    assert_int_equal(xpb_session_start(s), 0);
    xpb_session_on_connected(s, 1); /* direct TLS: no STARTTLS */
    feed(s, SERVER_HEADER FEATURES(F_MECHS(MECH("PLAIN"))));
    assert_sent(PLAIN_B64);
    feed(s, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
    const rec_event *e = last_event(XPB_SE_ERROR);
    assert_int_equal(e->code, XPB_EAUTH);
    assert_non_null(strstr(e->reason, "not-authorized"));
    assert_int_equal(F.timers[XPB_TIMER_RECONNECT], 0); /* no retry storm */
    assert_int_equal(F.connects, 1);
    xpb_session_free(s);
}

static void test_bytes_after_proceed_not_parsed(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = new_session(&c);
    assert_int_equal(xpb_session_start(s), 0);
    xpb_session_on_connected(s, 0);
    feed(s, SERVER_HEADER FEATURES(F_STARTTLS));
    clear_sent();
    int ev_before = F.n_ev;
    /* An attacker appends plaintext after <proceed/> (CVE-2011-0411 style). */
    feed(s, PROCEED FEATURES(F_MECHS(MECH("PLAIN"))) SUCCESS
         "<message from='evil@example.com'><body>x</body></message>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_TLS_HANDSHAKE);
    assert_int_equal(F.starttls_calls, 1);
    assert_int_equal(F.out.len, 0);
    assert_int_equal(count_events(XPB_SE_STANZA), 0);
    assert_int_equal(F.n_ev, ev_before + 1); /* only the TLS_HANDSHAKE state */
    /* bytes during the handshake are not XML for us either */
    feed(s, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    assert_int_equal(F.out.len, 0);
    xpb_session_on_tls_ready(s, "tls-exporter", (const unsigned char *)"0123456789abcdef0123456789abcdef", 32);
    assert_sent("<stream:stream");
    /* the reader was reset: a fresh header parses */
    feed(s, SERVER_HEADER FEATURES(F_MECHS(MECH("SCRAM-SHA-1-PLUS") MECH("PLAIN"))
                                   "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
                                   "<channel-binding type='tls-exporter'/></sasl-channel-binding>"));
    assert_sent("mechanism='SCRAM-SHA-1-PLUS'"); /* channel binding from on_tls_ready */
    xpb_session_free(s);
}

/* XEP-0440: -PLUS only with a binding the server can check. After TLS 1.2
 * (tls-server-end-point data), a server with no <sasl-channel-binding/> list
 * is taken to bind to tls-unique: plain SCRAM. With a list naming ours: -PLUS. */
static void auth_after_tls12(const char *features, const char *want)
{
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = new_session(&c);
    assert_int_equal(xpb_session_start(s), 0);
    xpb_session_on_connected(s, 0);
    feed(s, SERVER_HEADER FEATURES(F_STARTTLS));
    feed(s, PROCEED);
    static const unsigned char hash[32] = {1, 2, 3};
    xpb_session_on_tls_ready(s, "tls-server-end-point", hash, sizeof hash);
    clear_sent();
    feed(s, features);
    assert_sent(want);
    xpb_session_free(s);
}

static void test_channel_binding_types(void **state)
{
    (void)state;
#define CB_LIST(t) "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>" t "</sasl-channel-binding>"
#define CB(t) "<channel-binding type='" t "'/>"
    const char *mechs = F_MECHS(MECH("SCRAM-SHA-1-PLUS") MECH("SCRAM-SHA-1"));
    char buf[1024];
    snprintf(buf, sizeof buf, SERVER_HEADER "<stream:features>%s</stream:features>", mechs);
    auth_after_tls12(buf, "mechanism='SCRAM-SHA-1'>");
    snprintf(buf, sizeof buf, SERVER_HEADER "<stream:features>%s%s</stream:features>", mechs,
             CB_LIST(CB("tls-unique") CB("tls-server-end-point")));
    auth_after_tls12(buf, "mechanism='SCRAM-SHA-1-PLUS'>");
    snprintf(buf, sizeof buf, SERVER_HEADER "<stream:features>%s%s</stream:features>", mechs,
             CB_LIST(CB("tls-unique") CB("tls-exporter")));
    auth_after_tls12(buf, "mechanism='SCRAM-SHA-1'>");
#undef CB_LIST
#undef CB
}

static void test_no_starttls_offered(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = new_session(&c);
    assert_int_equal(xpb_session_start(s), 0);
    xpb_session_on_connected(s, 0);
    feed(s, SERVER_HEADER FEATURES(F_MECHS(MECH("SCRAM-SHA-1") MECH("PLAIN"))));
    assert_not_sent("<auth");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
    assert_int_equal(last_event(XPB_SE_ERROR)->code, XPB_ENOTLS);
    assert_int_equal(last_event(XPB_SE_STATE)->state, XPB_SS_STOPPED);
    assert_int_equal(F.disconnects, 1);
    assert_int_equal(F.timers[XPB_TIMER_RECONNECT], 0);
    xpb_session_free(s);
}

static void test_plain_without_tls_refused(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    c.allow_plaintext = 1;
    xpb_session *s = new_session(&c);
    assert_int_equal(xpb_session_start(s), 0);
    xpb_session_on_connected(s, 0);
    feed(s, SERVER_HEADER FEATURES(F_MECHS(MECH("PLAIN"))));
    assert_not_sent("<auth");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
    assert_int_equal(last_event(XPB_SE_ERROR)->code, XPB_ESASLNOMECH);
    xpb_session_free(s);
}

static void test_tls_failure_stops(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = new_session(&c);
    assert_int_equal(xpb_session_start(s), 0);
    xpb_session_on_connected(s, 0);
    feed(s, SERVER_HEADER FEATURES(F_STARTTLS));
    feed(s, PROCEED);
    xpb_session_on_disconnected(s, "certificate verify failed: hostname mismatch");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
    const rec_event *e = last_event(XPB_SE_ERROR);
    assert_int_equal(e->code, XPB_ETLS);
    assert_non_null(strstr(e->reason, "hostname mismatch"));
    assert_int_equal(F.timers[XPB_TIMER_RECONNECT], 0);
    xpb_session_free(s);
}

static void test_sm_enable_and_acks(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.ack_every = 2;
    xpb_session *s = online_sm(&c);
    /* the flush at bind ends with one request for it (XEP-0198 §4) */
    assert_sent("<presence/><r xmlns='urn:xmpp:sm:3'/>");
    /* presence counted: 1 unacked of our own, no event for it */
    xpb_session_stats st;
    xpb_session_get_stats(s, &st);
    assert_int_equal(st.unacked, 1);
    clear_sent();
    uint64_t h1 = send_msg(s, NULL, "one");
    assert_not_sent("<r xmlns");
    uint64_t h2 = send_msg(s, "fixed-id", "two");
    assert_sent("<r xmlns='urn:xmpp:sm:3'/>"); /* ack_every = 2 */
    assert_sent("id='fixed-id'");
    assert_string_equal(xpb_session_last_id(s), "fixed-id");
    /* its size as queued: the bytes of that <message> element in the output */
    const char *m = strstr(F.out.data, "<message"), *id = strstr(F.out.data, "id='fixed-id'");
    assert_non_null(id);
    for (const char *n; m && (n = strstr(m + 1, "<message")) && n < id;)
        m = n; /* the last <message before the id */
    const char *m_end = m ? strstr(m, "</message>") : NULL;
    assert_non_null(m_end);
    assert_int_equal(xpb_session_last_bytes(s), (size_t)(m_end + strlen("</message>") - m));
    int acked = count_events(XPB_SE_ACKED);
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='2'/>"); /* presence + one */
    assert_int_equal(count_events(XPB_SE_ACKED), acked + 1);
    assert_int_equal(last_event(XPB_SE_ACKED)->handle, h1);
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='3'/>");
    assert_int_equal(last_event(XPB_SE_ACKED)->handle, h2);
    xpb_session_get_stats(s, &st);
    assert_int_equal(st.unacked, 0);
    /* inbound counting and <r/> answered */
    clear_sent();
    feed(s, "<message from='a@example.com'><body>1</body></message>"
            "<presence from='a@example.com/x'/>");
    feed(s, "<r xmlns='urn:xmpp:sm:3'/>");
    assert_sent("<a xmlns='urn:xmpp:sm:3' h='2'/>");
    assert_int_equal(count_events(XPB_SE_STANZA), 2);
    /* ack timer */
    clear_sent();
    send_msg(s, NULL, "three");
    xpb_session_on_timer(s, XPB_TIMER_ACK);
    assert_sent("<r xmlns='urn:xmpp:sm:3'/>");
    xpb_session_free(s);
}

/* XEP-0198 §4: stanzas queued while offline go out at bind followed by one
 * <r/>; a burst of live sends gets one <r/> on the loop's next turn (the ACK
 * timer at XPB_SESSION_ACK_IDLE_MS), not one per stanza nor seconds later. */
static void test_ack_requested_when_queue_idle(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.send_presence = 0;
    xpb_session *s = new_session(&c);
    uint64_t q[3];
    for (int i = 0; i < 3; i++) q[i] = send_msg(s, NULL, "queued");
    negotiate(s, F_BIND F_SM);
    answer_bind(s, "user@example.com/r1");
    clear_sent();
    feed(s, "<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    assert_int_equal(count_sub(sent(), "<message"), 3);
    assert_int_equal(count_sub(sent(), "<r xmlns='urn:xmpp:sm:3'/>"), 1);
    const char *r = strstr(sent(), "<r xmlns"), *last = strstr(sent(), "</message>");
    for (const char *n; last && (n = strstr(last + 1, "</message>"));) last = n;
    assert_true(r > last); /* right after the queued stanzas */
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='3'/>");
    assert_int_equal(count_events(XPB_SE_ACKED), 3);
    assert_int_equal(last_event(XPB_SE_ACKED)->handle, q[2]);
    /* a live burst: nothing per stanza, one request once the turn is over */
    clear_sent();
    for (int i = 0; i < 4; i++) send_msg(s, NULL, "burst");
    assert_not_sent("<r xmlns");
    assert_int_equal(F.timers[XPB_TIMER_ACK], XPB_SESSION_ACK_IDLE_MS);
    assert_true(XPB_SESSION_ACK_IDLE_MS <= 10);
    xpb_session_on_timer(s, XPB_TIMER_ACK);
    assert_int_equal(count_sub(sent(), "<r xmlns='urn:xmpp:sm:3'/>"), 1);
    xpb_session_on_timer(s, XPB_TIMER_ACK); /* nothing new since: no second request */
    assert_int_equal(count_sub(sent(), "<r xmlns='urn:xmpp:sm:3'/>"), 1);
    xpb_session_free(s);
}

/* The delay next_backoff picks with F.rnd for this cap (base_cfg: min 100). */
static unsigned jittered(unsigned cap) { return 100 + (unsigned)(F.rnd % (cap - 100 + 1)); }

/* RFC 6120 §6.5.9: temporary-auth-failure means "try again later": backoff
 * like a lost link, growing; not-authorized still stops (test above). */
static void test_temporary_auth_failure_retries(void **state)
{
    (void)state;
    F.rnd = 0xFFFFFFFFu;
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = new_session(&c);
    assert_int_equal(xpb_session_start(s), 0);
    static const unsigned caps[] = {100, 200, 400};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        xpb_session_on_connected(s, 1);
        feed(s, SERVER_HEADER FEATURES(F_MECHS(MECH("PLAIN"))));
        feed(s, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure/>"
                "<text>database down</text></failure>");
        assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
        const rec_event *e = last_event(XPB_SE_ERROR);
        assert_non_null(e);
        assert_int_equal(e->code, XPB_EAUTH);
        assert_non_null(strstr(e->reason, "temporary-auth-failure"));
        assert_int_equal(F.timers[XPB_TIMER_RECONNECT], jittered(caps[i]));
        assert_int_equal(F.disconnects, (int)i + 1);
        xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
        assert_int_equal(F.connects, (int)i + 2);
        assert_int_equal(xpb_session_get_state(s), XPB_SS_CONNECTING);
    }
    xpb_session_free(s);
}

/* A link that fails right after bind does not reset the backoff; one that
 * stayed online for backoff_reset_ms (the STABLE timer) does. */
static void test_backoff_reset_only_when_stable(void **state)
{
    (void)state;
    F.rnd = 0xFFFFFFFFu;
    xpb_session_config c;
    base_cfg(&c, 0);
    c.backoff_reset_ms = 5000;
    xpb_session *s = new_session(&c);
    static const struct { int stable; unsigned want; } steps[] = {
        {0, 100}, {0, 200}, {0, 400}, {1, 100}, {0, 200}};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        negotiate(s, F_BIND);
        answer_bind(s, "user@example.com/r1");
        assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
        assert_int_equal(F.timers[XPB_TIMER_STABLE], 5000);
        if (steps[i].stable) xpb_session_on_timer(s, XPB_TIMER_STABLE);
        xpb_session_on_disconnected(s, "reset by peer");
        assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
        assert_int_equal(F.timers[XPB_TIMER_STABLE], 0); /* cancelled with the link */
        assert_int_equal(F.timers[XPB_TIMER_RECONNECT], jittered(steps[i].want));
        xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
    }
    /* a late STABLE timer after the link is gone changes nothing */
    xpb_session_on_disconnected(s, "refused");
    xpb_session_on_timer(s, XPB_TIMER_STABLE);
    xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
    xpb_session_on_disconnected(s, "refused");
    assert_int_equal(F.timers[XPB_TIMER_RECONNECT], jittered(800)); /* 400 -> 800: growing */
    xpb_session_free(s);
}

static void test_h_wrap(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.send_presence = 0;
    xpb_session *s = online_sm(&c);
    assert_int_equal(xpb_session_test_set_sm_counters(s, 0xFFFFFFFEu, 0xFFFFFFFFu), 0);
    clear_sent();
    feed(s, "<message from='a@example.com'/><message from='a@example.com'/>"
            "<message from='a@example.com'/>");
    feed(s, "<r xmlns='urn:xmpp:sm:3'/>");
    assert_sent("<a xmlns='urn:xmpp:sm:3' h='1'/>"); /* 0xFFFFFFFE + 3 mod 2^32 */
    uint64_t h1 = send_msg(s, NULL, "a"), h2 = send_msg(s, NULL, "b");
    (void)h1;
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='1'/>"); /* 0xFFFFFFFF + 2 */
    assert_int_equal(count_events(XPB_SE_ACKED), 2);
    assert_int_equal(last_event(XPB_SE_ACKED)->handle, h2);
    /* more than sent: handled-count-too-high (XEP-0198 §6) */
    send_msg(s, NULL, "c");
    clear_sent();
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='3'/>");
    assert_sent("<undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    assert_sent("<handled-count-too-high xmlns='urn:xmpp:sm:3' h='3' send-count='2'/>");
    assert_int_equal(last_event(XPB_SE_ERROR)->code, XPB_ESTREAM);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    xpb_session_free(s);
}

/* Online with SM, four messages sent, the first acknowledged: 3 unacked. */
static xpb_session *three_unacked(xpb_session_config *c, uint64_t h[4])
{
    c->send_presence = 0;
    xpb_session *s = online_sm(c);
    h[0] = send_msg(s, "m-1", "1");
    h[1] = send_msg(s, "m-2", "2");
    h[2] = send_msg(s, NULL, "3");
    h[3] = send_msg(s, "m-4", "4");
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='1'/>");
    assert_int_equal(last_event(XPB_SE_ACKED)->handle, h[0]);
    xpb_session_on_disconnected(s, "connection reset");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    assert_true(F.timers[XPB_TIMER_RECONNECT] >= 100);
    xpb_session_stats st;
    xpb_session_get_stats(s, &st);
    assert_int_equal(st.unacked, 3);
    xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
    assert_int_equal(F.connects, 2);
    return s;
}

static void test_resume_resends_only_unacked(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    uint64_t h[4];
    xpb_session *s = three_unacked(&c, h);
    negotiate(s, F_BIND F_SM);
    assert_sent("<resume xmlns='urn:xmpp:sm:3' previd='sm-1' h='0'/>");
    assert_not_sent("xpb-bind");
    clear_sent();
    int acked = count_events(XPB_SE_ACKED);
    feed(s, "<resumed xmlns='urn:xmpp:sm:3' previd='sm-1' h='2'/>");
    assert_int_equal(count_events(XPB_SE_ACKED), acked + 1); /* m-2 made it */
    assert_int_equal(last_event(XPB_SE_ACKED)->handle, h[1]);
    assert_string_equal(sent(), "<r xmlns='urn:xmpp:sm:3'/>"); /* is the stream read? */
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='2'/>");
    assert_not_sent("id='m-1'");
    assert_not_sent("id='m-2'");
    assert_sent("id='m-4'");
    assert_int_equal(count_sub(sent(), "<message"), 2);
    assert_not_sent("<presence");
    const rec_event *on = last_event(XPB_SE_ONLINE);
    assert_int_equal(on->resumed, 1);
    xpb_session_stats st;
    xpb_session_get_stats(s, &st);
    assert_int_equal(st.resumptions, 1);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(st.unacked, 2);
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='4'/>");
    assert_int_equal(last_event(XPB_SE_ACKED)->handle, h[3]);
    xpb_session_free(s);
}

static void test_resume_failed_fresh_bind(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    uint64_t h[4];
    xpb_session *s = three_unacked(&c, h);
    /* the generated id of message 3, to check it is reused */
    char id3[64] = "";
    for (int i = 0; i < F.n_sends; i++) {
        const char *p = strstr(F.sends[i], "<body>3</body>");
        if (p) {
            const char *q = strstr(F.sends[i], "id='xpb-");
            assert_non_null(q);
            snprintf(id3, sizeof id3, "%.*s", (int)(strchr(q + 4, '\'') - q + 1), q);
        }
    }
    assert_true(id3[0] != '\0');
    negotiate(s, F_BIND F_SM);
    clear_sent();
    feed(s, "<failed xmlns='urn:xmpp:sm:3'><item-not-found "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>");
    assert_sent("xpb-bind-");
    answer_bind(s, "user@example.com/r2");
    assert_sent("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    clear_sent();
    feed(s, "<enabled xmlns='urn:xmpp:sm:3' id='sm-2' resume='true'/>");
    assert_int_equal(count_sub(sent(), "<message"), 3);
    assert_sent("id='m-2'");
    assert_sent(id3);
    assert_sent("id='m-4'");
    assert_not_sent("id='m-1'");
    const rec_event *on = last_event(XPB_SE_ONLINE);
    assert_int_equal(on->resumed, 0);
    assert_string_equal(on->jid, "user@example.com/r2");
    xpb_session_stats st;
    xpb_session_get_stats(s, &st);
    assert_int_equal(st.resume_failures, 1);
    assert_int_equal(st.unacked, 3);
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='3'/>"); /* counters restarted with sm-2 */
    assert_int_equal(last_event(XPB_SE_ACKED)->handle, h[3]);
    xpb_session_free(s);
}

/* The gauges the owner reads without touching the session (/metrics) equal
 * the stats at every step: sent, acked, queued while offline, resent after
 * a resume, freed; unset, they are left alone. */
static void check_gauges(xpb_session *s, const xpb_session_gauges *g, unsigned queued,
                         unsigned unacked, int line)
{
    xpb_session_stats st;
    xpb_session_get_stats(s, &st);
    if (st.queued != queued || st.unacked != unacked || g->queued != queued ||
        g->unacked != unacked)
        fail_msg("line %d: stats %u queued %u unacked, gauges %u %u; expected %u %u", line,
                 st.queued, st.unacked, g->queued, g->unacked, queued, unacked);
}
#define assert_gauges(s, g, q, u) check_gauges(s, g, q, u, __LINE__)

static void test_gauges_follow_the_queue(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.send_presence = 0;
    xpb_session *s = online_sm(&c);
    xpb_session_gauges g = {77, 77};
    xpb_session_set_gauges(s, &g); /* filled at once */
    assert_gauges(s, &g, 0, 0);
    send_msg(s, "m-1", "1");
    send_msg(s, "m-2", "2");
    send_msg(s, "m-3", "3");
    assert_gauges(s, &g, 0, 3);
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='1'/>");
    assert_gauges(s, &g, 0, 2);
    xpb_session_on_disconnected(s, "connection reset");
    send_msg(s, "m-4", "4"); /* offline: queued */
    assert_gauges(s, &g, 1, 2);
    xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
    negotiate(s, F_BIND F_SM);
    feed(s, "<resumed xmlns='urn:xmpp:sm:3' previd='sm-1' h='2'/>");
    assert_gauges(s, &g, 2, 0); /* m-2 acked; m-3, m-4 wait for the probe's <a/> */
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='2'/>");
    assert_gauges(s, &g, 0, 2);
    xpb_session_set_gauges(s, NULL);
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='4'/>");
    assert_int_equal(g.unacked, 2); /* unset: left alone */
    xpb_session_set_gauges(s, &g);
    assert_gauges(s, &g, 0, 0);
    send_msg(s, "m-5", "5");
    assert_gauges(s, &g, 0, 1);
    xpb_session_free(s);
    assert_int_equal(g.unacked, 0); /* the queue went with the session */
}

static void test_queue_full(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    c.queue_max = 3;
    xpb_session *s = new_session(&c);
    for (int i = 0; i < 3; i++) send_msg(s, NULL, "q");
    xpb_stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = 1;
    st.kind = XPB__V1__KIND__KIND_MESSAGE;
    uint64_t h = 0;
    assert_int_equal(xpb_session_send(s, &st, &h), XPB_EQUEUEFULL);
    xpb_session_stats stats;
    xpb_session_get_stats(s, &stats);
    assert_int_equal(stats.queued, 3);
    assert_int_equal(F.out.len, 0); /* nothing sent while not online */
    /* an invalid record is refused, not queued */
    xpb_session_free(s);
    c.queue_max = 10;
    s = new_session(&c);
    st.to = "not a jid@@";
    assert_int_not_equal(xpb_session_send(s, &st, &h), 0);
    xpb_session_get_stats(s, &stats);
    assert_int_equal(stats.queued, 0);
    /* queued stanzas go out when online, acked at once without SM */
    send_msg(s, "early", "e");
    negotiate(s, F_BIND);
    answer_bind(s, "user@example.com/r");
    assert_sent("id='early'");
    assert_int_equal(count_events(XPB_SE_ACKED), 1);
    xpb_session_free(s);
}

/* Acks release from the front of the outbound queue without moving the rest
 * (the array's head moves on; it is compacted or grown when full): through
 * growth, compaction and the session's own stanzas (pongs) kept among the
 * user's, every ACKED comes once, in send order, and the unacked count
 * stays exact. */
static void test_acks_release_from_the_front(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.ack_every = 1000; /* the test asks nothing; it acknowledges */
    xpb_session *s = online_sm(&c);
    uint64_t order[200]; /* what the server handles, in order; 0: our own */
    size_t n_order = 0, n_acked = 0;
    order[n_order++] = 0; /* the initial presence */
    static const size_t acks[] = {3, 1, 17, 0, 9, 30, 2, 14};
    char xml[200];
    for (size_t round = 0; round < 8; round++) {
        for (int i = 0; i < 9; i++) order[n_order++] = send_msg(s, NULL, "x");
        snprintf(xml, sizeof xml,
                 "<iq type='get' id='p%zu' from='example.com'><ping xmlns='urn:xmpp:ping'/></iq>",
                 round);
        feed(s, xml);
        order[n_order++] = 0; /* the pong */
        size_t to = n_acked + acks[round];
        snprintf(xml, sizeof xml, "<a xmlns='urn:xmpp:sm:3' h='%zu'/>", to);
        feed(s, xml);
        n_acked = to;
        xpb_session_stats st;
        xpb_session_get_stats(s, &st);
        assert_int_equal(st.unacked, n_order - n_acked);
        assert_int_equal(st.queued, 0);
    }
    snprintf(xml, sizeof xml, "<a xmlns='urn:xmpp:sm:3' h='%zu'/>", n_order);
    feed(s, xml);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    size_t k = 0;
    for (int i = 0; i < F.n_ev; i++) {
        if (F.ev[i].kind != XPB_SE_ACKED) continue;
        while (k < n_order && order[k] == 0) k++; /* ours: no event */
        assert_true(k < n_order);
        assert_int_equal(F.ev[i].handle, order[k]);
        k++;
    }
    while (k < n_order && order[k] == 0) k++;
    assert_int_equal(k, n_order);
    xpb_session_stats st;
    xpb_session_get_stats(s, &st);
    assert_int_equal(st.unacked, 0);
    xpb_session_free(s);
}

/* xpb_session_send_checked writes what xpb_session_send writes without the
 * record check; the XML bound (max_stanza_bytes) still holds, and a stanza
 * larger than the reused buffer keeps (XPB_SESSION_WBUF_KEEP) goes out
 * whole, as do the ones after it and after the session went idle. */
static void test_send_checked(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    c.max_stanza_bytes = 4 * XPB_SESSION_WBUF_KEEP;
    xpb_session *s = online_plain(&c);
    xpb_test_msg m;
    xpb_test_msg_init(&m, "friend@example.com", "a < b & c");
    xpb_stanza st = m.st;
    st.id = "c1";
    uint64_t h1 = 0, h2 = 0;
    clear_sent();
    assert_int_equal(xpb_session_send(s, &st, &h1), 0);
    char plain[400];
    snprintf(plain, sizeof plain, "%s", sent());
    clear_sent();
    assert_int_equal(xpb_session_send_checked(s, &st, &h2), 0);
    assert_string_equal(sent(), plain);
    assert_true(h2 == h1 + 1);
    assert_sent("<body>a &lt; b &amp; c</body>");
    size_t big = 2 * XPB_SESSION_WBUF_KEEP;
    char *body = malloc(big + 1);
    assert_non_null(body);
    memset(body, 'b', big);
    body[big] = '\0';
    m.text.text = body;
    st.id = "big";
    clear_sent();
    assert_int_equal(xpb_session_send_checked(s, &st, &h1), 0);
    assert_non_null(strstr(sent(), body));
    assert_int_equal(count_sub(sent(), "<message"), 1);
    assert_int_equal(F.out.len, xpb_session_last_bytes(s)); /* no SM: only the message */
    assert_true(xpb_session_last_bytes(s) > big);
    char *huge = malloc(c.max_stanza_bytes + 1);
    assert_non_null(huge);
    memset(huge, 'h', c.max_stanza_bytes);
    huge[c.max_stanza_bytes] = '\0';
    m.text.text = huge;
    st.id = "huge";
    clear_sent();
    assert_int_equal(xpb_session_send_checked(s, &st, &h1), XPB_ETOOBIG);
    assert_int_equal(F.out.len, 0);
    m.text.text = "small";
    st.id = "after";
    assert_int_equal(xpb_session_send_checked(s, &st, &h1), 0);
    xpb_session_idle(s);
    st.id = "after-idle";
    assert_int_equal(xpb_session_send_checked(s, &st, &h2), 0);
    assert_sent("id='after'");
    assert_sent("id='after-idle'");
    assert_sent("<body>small</body></message>");
    assert_int_equal(count_sub(sent(), "<message"), 2);
    free(body);
    free(huge);
    xpb_session_free(s);
}

/* xpb_session_send_xml queues the bytes it is given under the caller's
 * handle: written as given, handles only growing, the XML bound and the
 * queue bound held; a stopped session refuses. */
static void test_send_xml(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    c.max_stanza_bytes = 10000;
    c.queue_max = 2;
    xpb_session *s = online_plain(&c);
    const char *m1 = "<message to='friend@example.com' id='x1'><body>one</body></message>";
    clear_sent();
    assert_int_equal(xpb_session_send_xml(s, m1, strlen(m1), 5), 0);
    assert_string_equal(sent(), m1);
    assert_int_equal(xpb_session_last_bytes(s), strlen(m1));
    assert_int_equal(xpb_session_send_xml(s, m1, strlen(m1), 5), XPB_EINVAL); /* not larger */
    assert_int_equal(xpb_session_send_xml(s, m1, strlen(m1), 3), XPB_EINVAL);
    assert_int_equal(xpb_session_send_xml(s, m1, 0, 9), XPB_EINVAL);
    char *huge = malloc(c.max_stanza_bytes + 2);
    assert_non_null(huge);
    memset(huge, 'h', c.max_stanza_bytes + 1);
    assert_int_equal(xpb_session_send_xml(s, huge, c.max_stanza_bytes + 1, 9), XPB_ETOOBIG);
    free(huge);
    /* A record sent after takes the next handle after the caller's. */
    xpb_test_msg m;
    xpb_test_msg_init(&m, "friend@example.com", "two");
    xpb_stanza st = m.st;
    uint64_t h = 0;
    assert_int_equal(xpb_session_send(s, &st, &h), 0);
    assert_int_equal(h, 6);
    xpb_session_close(s);
    assert_int_equal(xpb_session_send_xml(s, m1, strlen(m1), 10), XPB_ENOTCONN);
    xpb_session_free(s);
}

static void test_ping_timeout_reconnects(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = online_plain(&c);
    clear_sent();
    xpb_session_on_timer(s, XPB_TIMER_PING);
    assert_sent("<ping xmlns='urn:xmpp:ping'/>");
    assert_sent("to='example.com'");
    assert_int_equal(F.timers[XPB_TIMER_PING], 5000);
    /* an answer (any byte) re-arms the idle timer */
    char id[64], buf[128];
    extract_id("id='xpb-ping-", id, sizeof id);
    snprintf(buf, sizeof buf, "<iq type='result' id='%s' from='example.com'/>", id);
    feed(s, buf);
    assert_int_equal(F.timers[XPB_TIMER_PING], 30000);
    assert_int_equal(count_events(XPB_SE_STANZA), 0); /* consumed */
    /* no answer this time */
    xpb_session_on_timer(s, XPB_TIMER_PING);
    xpb_session_on_timer(s, XPB_TIMER_PING);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    assert_non_null(strstr(last_event(XPB_SE_STATE)->reason, "ping timeout"));
    assert_int_equal(F.disconnects, 1);
    assert_true(F.timers[XPB_TIMER_RECONNECT] > 0);
    xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
    assert_int_equal(F.connects, 2);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_CONNECTING);
    xpb_session_free(s);
}

static void test_sm_ping_uses_r(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    xpb_session *s = online_sm(&c);
    clear_sent();
    xpb_session_on_timer(s, XPB_TIMER_PING);
    assert_sent("<r xmlns='urn:xmpp:sm:3'/>");
    assert_not_sent("urn:xmpp:ping");
    xpb_session_free(s);
}

/* A server that pings but never acknowledges: our answers would pile up as
 * unacked without end; past the limit the session starts afresh instead. */
static void test_unacked_internal_bounded(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    xpb_session *s = online_sm(&c);
    char ping[160];
    for (unsigned i = 0; i < XPB_SESSION_MAX_INTERNAL_UNACKED + 5 &&
                         xpb_session_get_state(s) == XPB_SS_ONLINE;
         i++) {
        snprintf(ping, sizeof ping,
                 "<iq type='get' id='p%u' from='example.com'><ping xmlns='urn:xmpp:ping'/></iq>", i);
        feed(s, ping);
    }
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    xpb_session_stats st;
    xpb_session_get_stats(s, &st);
    assert_true(st.unacked <= XPB_SESSION_MAX_INTERNAL_UNACKED);
    assert_true(st.queued + st.unacked == 0); /* only our own answers were pending */
    assert_non_null(strstr(last_event(XPB_SE_STATE)->reason, "acknowledged none"));
    xpb_session_free(s);
}

static void test_backoff_grows_and_caps(void **state)
{
    (void)state;
    static const struct { uint32_t rnd; } rnds[] = {{0xFFFFFFFFu}, {0}, {12345u}};
    for (size_t r = 0; r < sizeof rnds / sizeof rnds[0]; r++) {
        memset(F.timers, 0, sizeof F.timers);
        F.rnd = rnds[r].rnd;
        xpb_session_config c;
        base_cfg(&c, 0);
        xpb_session *s = new_session(&c);
        assert_int_equal(xpb_session_start(s), 0);
        static const unsigned caps[] = {100, 200, 400, 800, 1000, 1000, 1000};
        for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
            xpb_session_on_connected(s, 0);
            xpb_session_on_disconnected(s, "refused");
            assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
            unsigned want = 100 + (unsigned)(F.rnd % (caps[i] - 100 + 1));
            assert_int_equal(F.timers[XPB_TIMER_RECONNECT], want);
            assert_true(want >= 100 && want <= caps[i]);
            xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
        }
        xpb_session_free(s);
    }
    /* back online resets the backoff; system-shutdown waits >= max/2 */
    F.rnd = 0;
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = online_plain(&c);
    feed(s, "<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            "</stream:error>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    assert_int_equal(F.timers[XPB_TIMER_RECONNECT], 500);
    assert_int_equal(last_event(XPB_SE_ERROR)->code, XPB_ESTREAM);
    xpb_session_free(s);
}

static void test_see_other_host(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = online_plain(&c);
    clear_sent();
    feed(s, "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>"
            "other.example.net:5999</see-other-host></stream:error>");
    assert_int_equal(F.connects, 2); /* at once, no backoff */
    assert_string_equal(F.target_host, "other.example.net");
    assert_int_equal(F.target_port, 5999);
    assert_string_equal(F.target_see_other, "other.example.net:5999");
    assert_string_equal(F.target_domain, "example.com"); /* TLS still checks the domain */
    assert_int_equal(xpb_session_get_state(s), XPB_SS_CONNECTING);
    /* IPv6 literal, then a loop of redirects is cut at 5 */
    xpb_session_on_connected(s, 0);
    feed(s, SERVER_HEADER "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>"
            "[2001:db8::1]:5223</see-other-host></stream:error>");
    assert_string_equal(F.target_host, "2001:db8::1");
    assert_int_equal(F.target_port, 5223);
    for (int i = 0; i < 4; i++) {
        xpb_session_on_connected(s, 0);
        feed(s, SERVER_HEADER "<stream:error><see-other-host "
                "xmlns='urn:ietf:params:xml:ns:xmpp-streams'>h.example.net</see-other-host>"
                "</stream:error>");
    }
    assert_int_equal(F.connects, 6); /* 5 redirects followed, the 6th refused */
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
    assert_int_equal(last_event(XPB_SE_ERROR)->code, XPB_ESTREAM);
    xpb_session_free(s);
}

static void test_conflict_stops(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    xpb_session *s = online_sm(&c);
    uint64_t h = send_msg(s, NULL, "x");
    feed(s, "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            "</stream:error>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
    assert_int_equal(last_event(XPB_SE_ERROR)->code, XPB_ESTREAM);
    assert_non_null(strstr(last_event(XPB_SE_ERROR)->reason, "conflict"));
    assert_int_equal(F.timers[XPB_TIMER_RECONNECT], 0);
    assert_int_equal(F.connects, 1);
    assert_int_equal(last_event(XPB_SE_FAILED)->handle, h); /* never a silent drop */
    assert_int_equal(xpb_session_send(s, NULL, NULL), XPB_EINVAL);
    Xpb__V1__Stanza st = XPB__V1__STANZA__INIT;
    assert_int_equal(xpb_session_send(s, &st, NULL), XPB_ENOTCONN);
    xpb_session_free(s);
}

static void test_clean_close(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.send_presence = 0;
    xpb_session *s = online_sm(&c);
    uint64_t h1 = send_msg(s, NULL, "1"), h2 = send_msg(s, NULL, "2");
    clear_sent();
    xpb_session_close(s);
    const char *out = sent();
    const char *p = strstr(out, "<presence type='unavailable'/>");
    const char *r = strstr(out, "<r xmlns='urn:xmpp:sm:3'/>");
    const char *e = strstr(out, "</stream:stream>");
    assert_true(p && r && e && p < r && r < e);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_CLOSING);
    assert_int_equal(F.timers[XPB_TIMER_CLOSE], XPB_SESSION_CLOSE_WAIT_MS);
    assert_int_equal(F.disconnects, 0);
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='1'/></stream:stream>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
    assert_int_equal(F.disconnects, 1);
    assert_int_equal(last_event(XPB_SE_ACKED)->handle, h1);
    /* the second and the unavailable presence: FAILED for the user's only */
    assert_int_equal(count_events(XPB_SE_FAILED), 1);
    assert_int_equal(last_event(XPB_SE_FAILED)->handle, h2);
    assert_string_equal(last_event(XPB_SE_FAILED)->reason, "session closed");
    xpb_session_free(s);
    /* the server does not answer: the close timer ends it */
    F.n_ev = 0;
    s = online_plain(&c);
    xpb_session_close(s);
    xpb_session_on_timer(s, XPB_TIMER_CLOSE);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
    assert_int_equal(F.disconnects, 2);
    xpb_session_free(s);
}

static void test_websocket_framing(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.transport = XPB_TRANSPORT_WEBSOCKET;
    c.ws_url = "wss://example.com/xmpp-websocket";
    xpb_session *s = new_session(&c);
    assert_int_equal(xpb_session_start(s), 0);
    xpb_session_on_connected(s, 1); /* wss */
    assert_int_equal(F.n_sends, 1);
    assert_string_equal(F.sends[0],
                        "<open xmlns='" FRAMING "' to='example.com' version='1.0'/>");
    clear_sent();
    feed(s, "<open xmlns='" FRAMING "' from='example.com' id='w1' version='1.0'/>");
    feed(s, "<stream:features " NS_STREAMS_DECL ">" F_STARTTLS F_MECHS(MECH("PLAIN"))
            "</stream:features>");
    assert_not_sent("<starttls"); /* never over WebSocket */
    assert_sent(PLAIN_B64);
    clear_sent();
    feed(s, SUCCESS);
    assert_int_equal(F.n_sends, 1);
    assert_string_equal(F.sends[0], "<open xmlns='" FRAMING "' to='example.com' version='1.0'/>");
    clear_sent();
    feed(s, "<open xmlns='" FRAMING "' from='example.com' id='w2' version='1.0'/>");
    feed(s, "<stream:features " NS_STREAMS_DECL ">" F_BIND F_SM "</stream:features>");
    assert_sent("<iq xmlns='jabber:client' type='set' id='xpb-bind-");
    answer_bind(s, "user@example.com/ws");
    feed(s, "<enabled xmlns='urn:xmpp:sm:3' id='sm-w' resume='true'/>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    clear_sent();
    send_msg(s, "w-1", "over ws");
    assert_int_equal(F.n_sends, 1); /* one element per WebSocket message */
    assert_non_null(strstr(F.sends[0], "<message xmlns='jabber:client'"));
    feed(s, "<message xmlns='jabber:client' from='a@example.com'><body>in</body></message>");
    assert_non_null(strstr(last_event(XPB_SE_STANZA)->xml, "<body>in</body>"));
    clear_sent();
    xpb_session_close(s);
    assert_int_equal(F.n_sends, 3); /* each element its own WebSocket message */
    assert_string_equal(F.sends[0], "<presence xmlns='jabber:client' type='unavailable'/>");
    assert_string_equal(F.sends[1], "<r xmlns='urn:xmpp:sm:3'/>");
    assert_string_equal(F.sends[2], "<close xmlns='" FRAMING "'/>");
    feed(s, "<close xmlns='" FRAMING "'/>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
    xpb_session_free(s);
    /* ws:// is plaintext */
    s = new_session(&c);
    assert_int_equal(xpb_session_start(s), 0);
    clear_sent();
    xpb_session_on_connected(s, 0);
    assert_int_equal(F.out.len, 0);
    assert_int_equal(last_event(XPB_SE_ERROR)->code, XPB_ENOTLS);
    xpb_session_free(s);
}

static void test_connect_timeout_and_xml_error(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = new_session(&c);
    assert_int_equal(xpb_session_start(s), 0);
    assert_int_equal(F.timers[XPB_TIMER_CONNECT], XPB_SESSION_DEFAULT_CONNECT_TIMEOUT_MS);
    xpb_session_on_connected(s, 0);
    xpb_session_on_timer(s, XPB_TIMER_CONNECT);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    assert_int_equal(last_event(XPB_SE_ERROR)->code, XPB_ETIMEOUT);
    xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
    xpb_session_on_connected(s, 0);
    feed(s, SERVER_HEADER "<bad<");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    assert_int_equal(last_event(XPB_SE_ERROR)->code, XPB_EXML);
    xpb_session_free(s);
}

/* A quiet session parks its parser and reason buffer (xpb_session_idle); the
 * next bytes go on exactly as before: stanzas counted for XEP-0198, <r/>
 * answered, and an XML error still reported with its reason. */
static void test_idle_parks_and_resumes(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    xpb_session *s = online_sm(&c);
    int stanzas = count_events(XPB_SE_STANZA);
    xpb_session_idle(s);
    xpb_session_idle(s); /* twice is harmless */
    clear_sent();
    feed(s, "<message from='a@example.com'><body>1</body></message>");
    xpb_session_idle(s);
    feed(s, "<presence from='a@example.com/x'/><r xmlns='urn:xmpp:sm:3'/>");
    assert_sent("<a xmlns='urn:xmpp:sm:3' h='2'/>");
    assert_int_equal(count_events(XPB_SE_STANZA), stanzas + 2);
    xpb_session_idle(s);
    feed(s, "<message><bad<");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    assert_int_equal(last_event(XPB_SE_ERROR)->code, XPB_EXML);
    assert_non_null(strstr(last_event(XPB_SE_ERROR)->reason, "XML error from the server"));
    xpb_session_idle(s);
    xpb_session_free(s);
}

/* RFC 6120 §4.9.3: what each stream error leads to. */
static void test_stream_error_table(void **state)
{
    (void)state;
    static const struct {
        const char *cond;
        xpb_session_state want;
        int code;
        unsigned min_delay;
    } cases[] = {
        {"conflict", XPB_SS_STOPPED, XPB_ESTREAM, 0},
        {"not-authorized", XPB_SS_STOPPED, XPB_EAUTH, 0},
        {"policy-violation", XPB_SS_BACKOFF, XPB_ESTREAM, 100},
        {"resource-constraint", XPB_SS_BACKOFF, XPB_ESTREAM, 100},
        {"system-shutdown", XPB_SS_BACKOFF, XPB_ESTREAM, 500},
        {"host-unknown", XPB_SS_BACKOFF, XPB_ESTREAM, 100},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(F.timers, 0, sizeof F.timers);
        F.rnd = 0;
        xpb_session_config c;
        base_cfg(&c, 0);
        xpb_session *s = online_plain(&c);
        char xml[256];
        snprintf(xml, sizeof xml, "<stream:error><%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                 "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>why</text></stream:error>",
                 cases[i].cond);
        feed(s, xml);
        assert_int_equal(xpb_session_get_state(s), cases[i].want);
        assert_int_equal(last_event(XPB_SE_ERROR)->code, cases[i].code);
        assert_non_null(strstr(last_event(XPB_SE_ERROR)->reason, cases[i].cond));
        assert_int_equal(F.timers[XPB_TIMER_RECONNECT], cases[i].min_delay);
        xpb_session_free(s);
    }
}

static void test_close_while_offline(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    xpb_session *s = new_session(&c);
    uint64_t h1 = send_msg(s, NULL, "1");
    send_msg(s, NULL, "2");
    assert_int_equal(xpb_session_start(s), 0);
    xpb_session_close(s); /* connect still in progress: abort it */
    assert_int_equal(F.disconnects, 1);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_STOPPED);
    assert_int_equal(count_events(XPB_SE_FAILED), 2);
    assert_int_equal(F.ev[F.n_ev - 3].handle, h1);
    assert_int_equal(F.out.len, 0);
    xpb_stanza st = XPB__V1__STANZA__INIT;
    assert_int_equal(xpb_session_send(s, &st, NULL), XPB_ENOTCONN);
    xpb_session_free(s);
}

/* ---- XEP-0198 state kept across a restart of the bridge -------------------- */

/* The state a stream exports, and an SM event before every <a/> we send
 * (so a kept h is never below what the server was told). */
static void test_sm_state_exported(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.send_presence = 0;
    xpb_session *s = new_session(&c);
    negotiate(s, F_BIND F_SM);
    answer_bind(s, "user@example.com/r1");
    feed(s, "<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true' location='[::1]:5222'/>");
    assert_int_equal(count_events(XPB_SE_SM), 1);
    xpb_session_sm sm;
    assert_int_equal(xpb_session_get_sm(s, &sm), 0);
    assert_string_equal(sm.id, "sm-1");
    assert_string_equal(sm.location, "[::1]:5222");
    assert_string_equal(sm.jid, "user@example.com/r1");
    assert_int_equal(sm.h_in, 0);
    feed(s, "<message from='a@example.com' to='user@example.com'><body>x</body></message>");
    clear_sent();
    int before = F.n_ev;
    feed(s, "<r xmlns='urn:xmpp:sm:3'/>");
    assert_sent("<a xmlns='urn:xmpp:sm:3' h='1'/>");
    assert_int_equal(F.n_ev, before + 1);
    assert_int_equal(F.ev[before].kind, XPB_SE_SM);
    assert_int_equal(xpb_session_get_sm(s, &sm), 0);
    assert_int_equal(sm.h_in, 1);
    send_msg(s, "m-1", "1");
    send_msg(s, "m-2", "2");
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='2'/>");
    assert_int_equal(xpb_session_get_sm(s, &sm), 0);
    assert_int_equal(sm.h_acked, 2);
    xpb_session_free(s);
}

static void test_sm_state_none_without_resume(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 0);
    xpb_session *s = online_plain(&c);
    xpb_session_sm sm;
    assert_int_equal(xpb_session_get_sm(s, &sm), 1);
    assert_string_equal(sm.id, "");
    /* Without SM a written stanza is SENT, then ACKED at once. */
    int n = F.n_ev;
    uint64_t h = send_msg(s, "m-1", "1");
    assert_int_equal(F.n_ev, n + 2);
    assert_int_equal(F.ev[n].kind, XPB_SE_SENT);
    assert_int_equal(F.ev[n].handle, h);
    assert_int_equal(F.ev[n + 1].kind, XPB_SE_ACKED);
    assert_int_equal(F.ev[n + 1].handle, h);
    xpb_session_free(s);
}

static const xpb_session_sm KEPT = {.id = "sm-9", .location = "", .h_in = 7, .h_acked = 3,
                                    .jid = "user@example.com/old"};

/* A new session given a kept state resumes first; the server's h (more than
 * this session ever sent) is taken as it is, and the queue is sent once an
 * <a/> answers our <r/> (the server parses this stream). */
static void test_sm_import_resumes(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.resume = &KEPT;
    xpb_session *s = new_session(&c);
    uint64_t h = send_msg(s, "kept-1", "resent"); /* queued before the start */
    negotiate(s, F_BIND F_SM);
    assert_sent("<resume xmlns='urn:xmpp:sm:3' previd='sm-9' h='7'/>");
    assert_not_sent("xpb-bind");
    clear_sent();
    feed(s, "<resumed xmlns='urn:xmpp:sm:3' previd='sm-9' h='40'/>");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    assert_not_sent("<stream:error"); /* not handled-count-too-high */
    const rec_event *on = last_event(XPB_SE_ONLINE);
    assert_int_equal(on->resumed, 1);
    assert_string_equal(on->jid, "user@example.com/old");
    assert_string_equal(sent(), "<r xmlns='urn:xmpp:sm:3'/>"); /* the probe, nothing else */
    assert_null(last_event(XPB_SE_SENT));
    assert_int_equal(F.timers[XPB_TIMER_CONNECT], XPB_SESSION_DEFAULT_CONNECT_TIMEOUT_MS);
    send_msg(s, "new-1", "held"); /* a send meanwhile waits too */
    assert_not_sent("new-1");
    feed(s, "<r xmlns='urn:xmpp:sm:3'/>"); /* the server's own <r/> is answered */
    assert_sent("<a xmlns='urn:xmpp:sm:3' h='7'/>");
    assert_not_sent("kept-1");
    clear_sent();
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='40'/>");
    assert_int_equal(F.timers[XPB_TIMER_CONNECT], 0);
    assert_non_null(strstr(sent(), "id='kept-1'"));
    assert_true(strstr(sent(), "id='kept-1'") < strstr(sent(), "id='new-1'")); /* in order */
    assert_sent("<r xmlns='urn:xmpp:sm:3'/>");
    assert_int_equal(F.ev[F.n_ev - 1].kind, XPB_SE_SENT);
    assert_int_equal(F.ev[F.n_ev - 2].kind, XPB_SE_SENT);
    assert_int_equal(F.ev[F.n_ev - 2].handle, h);
    xpb_session_sm sm;
    assert_int_equal(xpb_session_get_sm(s, &sm), 0);
    assert_int_equal(sm.h_acked, 40);
    assert_int_equal(sm.h_in, 7);
    feed(s, "<a xmlns='urn:xmpp:sm:3' h='41'/>");
    assert_int_equal(last_event(XPB_SE_ACKED)->handle, h);
    xpb_session_free(s);
}

/* Resumed, but the server never answers the <r/>: the old process died in
 * the middle of a stanza and the server goes on parsing the new link where
 * the old one stopped (Prosody 0.12), swallowing all we write. Nothing of
 * the queue was written there; the stream is given up (not resumed again:
 * the same parser would swallow it again) and a fresh bind sends it all. */
static void test_sm_import_resume_unanswered_binds_afresh(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.resume = &KEPT;
    xpb_session *s = new_session(&c);
    uint64_t h = send_msg(s, "kept-1", "resent");
    negotiate(s, F_BIND F_SM);
    clear_sent();
    feed(s, "<resumed xmlns='urn:xmpp:sm:3' previd='sm-9' h='40'/>");
    feed(s, "<r xmlns='urn:xmpp:sm:3'/>"); /* bytes from the server do not end the wait */
    assert_int_equal(F.timers[XPB_TIMER_CONNECT], XPB_SESSION_DEFAULT_CONNECT_TIMEOUT_MS);
    xpb_session_on_timer(s, XPB_TIMER_CONNECT);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    assert_non_null(strstr(last_event(XPB_SE_ERROR)->reason, "resumed stream unacknowledged"));
    assert_not_sent("kept-1");
    assert_null(last_event(XPB_SE_FAILED)); /* kept for the fresh session */
    xpb_session_sm sm;
    assert_int_equal(xpb_session_get_sm(s, &sm), 1); /* forgotten: no resume next */
    xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
    negotiate(s, F_BIND F_SM);
    assert_not_sent("<resume");
    assert_sent("xpb-bind-");
    answer_bind(s, "user@example.com/new");
    clear_sent();
    feed(s, "<enabled xmlns='urn:xmpp:sm:3' id='sm-11' resume='true'/>");
    assert_sent("id='kept-1'");
    assert_int_equal(last_event(XPB_SE_SENT)->handle, h);
    assert_int_equal(last_event(XPB_SE_ONLINE)->resumed, 0);
    xpb_session_free(s);
}

/* The link drops while the resumed stream is not yet shown to be read: the
 * next link binds afresh as well. */
static void test_sm_import_resume_link_lost_binds_afresh(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.resume = &KEPT;
    xpb_session *s = new_session(&c);
    send_msg(s, "kept-1", "resent");
    negotiate(s, F_BIND F_SM);
    feed(s, "<resumed xmlns='urn:xmpp:sm:3' previd='sm-9' h='40'/>");
    xpb_session_on_disconnected(s, "reset by peer");
    assert_int_equal(xpb_session_get_state(s), XPB_SS_BACKOFF);
    xpb_session_sm sm;
    assert_int_equal(xpb_session_get_sm(s, &sm), 1);
    xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
    negotiate(s, F_BIND F_SM);
    assert_not_sent("<resume");
    assert_sent("xpb-bind-");
    xpb_session_free(s);
}

/* The server no longer knows the stream: a fresh bind, the queue sent there. */
static void test_sm_import_failed_binds(void **state)
{
    (void)state;
    xpb_session_config c;
    base_cfg(&c, 1);
    c.resume = &KEPT;
    xpb_session *s = new_session(&c);
    send_msg(s, "kept-1", "resent");
    negotiate(s, F_BIND F_SM);
    clear_sent();
    feed(s, "<failed xmlns='urn:xmpp:sm:3' h='99'><item-not-found "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>");
    assert_not_sent("<stream:error");
    assert_sent("xpb-bind-");
    answer_bind(s, "user@example.com/new");
    clear_sent();
    feed(s, "<enabled xmlns='urn:xmpp:sm:3' id='sm-10' resume='true'/>");
    assert_sent("id='kept-1'");
    assert_int_equal(last_event(XPB_SE_ONLINE)->resumed, 0);
    xpb_session_sm sm;
    assert_int_equal(xpb_session_get_sm(s, &sm), 0);
    assert_string_equal(sm.id, "sm-10");
    assert_string_equal(sm.jid, "user@example.com/new");
    assert_int_equal(sm.h_in, 0);
    xpb_session_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, fake_setup, fake_teardown)
        T(test_starttls_plain_login),
        T(test_configured_resource),
        T(test_mandatory_legacy_session),
        T(test_scram_sha1_login),
        T(test_scram_bad_server_signature),
        T(test_sasl_failure_stops),
        T(test_bytes_after_proceed_not_parsed),
        T(test_channel_binding_types),
        T(test_no_starttls_offered),
        T(test_plain_without_tls_refused),
        T(test_tls_failure_stops),
        T(test_sm_enable_and_acks),
        T(test_ack_requested_when_queue_idle),
        T(test_temporary_auth_failure_retries),
        T(test_backoff_reset_only_when_stable),
        T(test_h_wrap),
        T(test_resume_resends_only_unacked),
        T(test_resume_failed_fresh_bind),
        T(test_sm_state_exported),
        T(test_sm_state_none_without_resume),
        T(test_sm_import_resumes),
        T(test_sm_import_resume_unanswered_binds_afresh),
        T(test_sm_import_resume_link_lost_binds_afresh),
        T(test_sm_import_failed_binds),
        T(test_gauges_follow_the_queue),
        T(test_queue_full),
        T(test_acks_release_from_the_front),
        T(test_send_checked),
        T(test_send_xml),
        T(test_ping_timeout_reconnects),
        T(test_sm_ping_uses_r),
        T(test_unacked_internal_bounded),
        T(test_backoff_grows_and_caps),
        T(test_see_other_host),
        T(test_conflict_stops),
        T(test_clean_close),
        T(test_websocket_framing),
        T(test_connect_timeout_and_xml_error),
        T(test_idle_parks_and_resumes),
        T(test_stream_error_table),
        T(test_close_while_offline),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
