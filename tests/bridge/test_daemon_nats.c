/* Tests for the NATS state back end (bridge/daemon/state_nats.c, sends.c)
 * on the daemon's seams (fake bus, fake loop, fake JetStream KV in
 * fake_bus.c whose results arrive only when the test delivers them): with
 * leases, a send is answered only once its outbox key is stored; the
 * XEP-0198 state is in KV; a second bridge that takes the account over
 * after the first died resumes the stream with that state and sends the
 * unacknowledged send again, with the same id. Catch-up markers and seen
 * stanza-ids are in xpb_marks, written only once the bus acknowledged the
 * events; a bridge that takes the account over, cannot resume and binds
 * afresh asks the archive for what came after the dead bridge's marker and
 * drops what the dead bridge had published. */
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
#include <unistd.h>

#include "fake_bus.h"
#include "fake_loop.h"
#include "test_util.h"
#include "xpb_config.h"
#include "xpb_daemon.h"
#include "xpb_error.h"
#include "xpb_session.h"

#define BOT "bot@example.com"
#define BOT_TOKEN "bot_40example_2Ecom"
#define BOT2 "bot2@example.com"
#define SERVER_HEADER                                                                              \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                                   \
    "xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='example.com' version='1.0'>"
#define FEATURES(x) "<stream:features>" x "</stream:features>"
#define F_STARTTLS "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
#define F_PLAIN                                                                                    \
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"          \
    "</mechanisms>"
#define F_BIND "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
#define F_SM "<sm xmlns='urn:xmpp:sm:3'/>"

static char pwfile[64];
static int64_t clock_ms;
static int n_req;

static unsigned g_shards; /* nats.shards of the next new_bridge; 2 accounts with it */

static xpb_daemon *new_bridge(xpb_loop *loop, const char *id)
{
    xpb_config cfg;
    xpb_config_init(&cfg);
    cfg.loops = 0; /* the fake loop has no worker loops */
    cfg.nats.shards = g_shards;
    cfg.state_dir = strdup("none");
    cfg.bus_nats = 1;
    cfg.nats.leases = 1;
    cfg.nats.servers = calloc(1, sizeof *cfg.nats.servers);
    cfg.nats.servers[0] = strdup("nats://127.0.0.1:4222");
    cfg.nats.n_servers = 1;
    cfg.nats.bridge_id = strdup(id);
    cfg.n_accounts = g_shards ? 2 : 1;
    cfg.accounts = calloc(cfg.n_accounts, sizeof *cfg.accounts);
    for (size_t i = 0; i < cfg.n_accounts; i++) {
        cfg.accounts[i].jid = strdup(i ? BOT2 : BOT);
        cfg.accounts[i].password_file = strdup(pwfile);
        cfg.accounts[i].host = strdup("127.0.0.1");
        cfg.accounts[i].stream_management = 1;
    }
    char err[512] = "";
    xpb_daemon *d = NULL;
    int rc = xpb_daemon_new(&d, loop, &cfg, err, sizeof err);
    xpb_config_clear(&cfg);
    if (rc != 0) fail_msg("xpb_daemon_new: %s", err);
    return d;
}

/* Lease ticks (every 250 ms of the fake clock) until BOT has a session. */
static xpb_loop_session *until_started(xpb_loop *loop)
{
    for (int i = 0; i < 80; i++) {
        clock_ms += 250;
        fake_kv_set_clock(clock_ms);
        fake_loop_idle(loop);
        fake_loop_fire(loop, 250);
        fake_kv_deliver();
        fake_loop_idle(loop);
        xpb_loop_session *ls = fake_loop_session(loop, BOT);
        if (ls) return ls;
    }
    fail_msg("the account was never claimed and started");
    return NULL;
}

/* TCP, STARTTLS, PLAIN: the stream restarted with XEP-0198 offered. */
static void authenticate(xpb_loop_session *ls)
{
    xpb_session *s = xpb_loop_session_get(ls);
    xpb_session_on_connected(s, 0);
    fake_feed(ls, SERVER_HEADER FEATURES(F_STARTTLS F_PLAIN));
    fake_feed(ls, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    xpb_session_on_tls_ready(s, NULL, NULL, 0);
    fake_feed(ls, SERVER_HEADER FEATURES(F_PLAIN));
    fake_feed(ls, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    fake_clear_sent(ls);
    fake_feed(ls, SERVER_HEADER FEATURES(F_BIND F_SM));
}

static void bind_and_enable(xpb_loop_session *ls)
{
    const char *p = strstr(fake_sent(ls), "id='xpb-bind-");
    assert_non_null(p);
    char id[64], buf[512];
    p += strlen("id='");
    snprintf(id, sizeof id, "%.*s", (int)(strchr(p, '\'') - p), p);
    fake_clear_sent(ls);
    snprintf(buf, sizeof buf,
             "<iq type='result' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
             "<jid>" BOT "/r1</jid></bind></iq>", id);
    fake_feed(ls, buf);
    assert_non_null(strstr(fake_sent(ls), "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"));
    fake_feed(ls, "<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/>");
    assert_int_equal(xpb_session_get_state(xpb_loop_session_get(ls)), XPB_SS_ONLINE);
}

static fake_req *send_message(xpb_loop *loop, const char *body)
{
    xpb_test_msg m;
    xpb_test_chat_init(&m, "friend@example.com", body);
    xpb_stanza st = m.st;
    Xpb__V1__SendStanza op = XPB__V1__SEND_STANZA__INIT;
    op.stanza = &st;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.account = BOT;
    r.op_case = XPB__V1__REQUEST__OP_SEND;
    r.send = &op;
    char id[32];
    snprintf(id, sizeof id, "r%d", ++n_req);
    r.api_version = 1;
    r.has_api_version = 1;
    r.request_id = id;
    fake_req *q = fake_bus_request(id, &r);
    assert_non_null(q);
    fake_loop_idle(loop);
    return q;
}

/* The MAM query (XEP-0313) just sent, which must contain must: its iq id and queryid. */
typedef struct query {
    char id[64], qid[64];
} query;

static query sent_query(xpb_loop_session *ls, const char *must)
{
    query q;
    const char *sent = fake_sent(ls), *mam = strstr(sent, "urn:xmpp:mam:2");
    if (!mam || !strstr(mam, must)) fail_msg("no MAM query with '%s' sent: %s", must, sent);
    const char *iq = NULL;
    for (const char *p = sent; (p = strstr(p, "<iq ")) && p < mam; p++) iq = p;
    assert_non_null(iq);
    const char *id = strstr(iq, " id='"), *qid = strstr(mam, "queryid='");
    assert_non_null(id);
    assert_non_null(qid);
    id += 5;
    qid += 9;
    snprintf(q.id, sizeof q.id, "%.*s", (int)(strchr(id, '\'') - id), id);
    snprintf(q.qid, sizeof q.qid, "%.*s", (int)(strchr(qid, '\'') - qid), qid);
    return q;
}

static void feed_result(xpb_loop_session *ls, const query *q, const char *rid, const char *body)
{
    char buf[1024];
    snprintf(buf, sizeof buf,
             "<message to='" BOT "/r1'><result xmlns='urn:xmpp:mam:2' queryid='%s' id='%s'>"
             "<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' "
             "stamp='2026-12-06T01:02:03Z'/><message xmlns='jabber:client' "
             "from='alice@example.com/x' to='" BOT "' type='chat'><body>%s</body></message>"
             "</forwarded></result></message>",
             q->qid, rid, body);
    fake_feed(ls, buf);
}

static void feed_fin(xpb_loop_session *ls, const query *q, const char *last)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2' complete='true'><set "
             "xmlns='http://jabber.org/protocol/rsm'><first>%s</first><last>%s</last></set>"
             "</fin></iq>",
             q->id, last, last);
    fake_feed(ls, buf);
}

static void feed_live(xpb_loop_session *ls, const char *sid, const char *body)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "<message from='alice@example.com/x' to='" BOT "/r1' type='chat'><body>%s</body>"
             "<stanza-id xmlns='urn:xmpp:sid:0' by='" BOT "' id='%s'/></message>",
             body, sid);
    fake_feed(ls, buf);
}

/* xpb_marks' value for BOT's own archive, as text ("" when there is none). */
static void marks_value(char *out, size_t len)
{
    size_t n = 0;
    const uint8_t *v = fake_kv_value("xpb_marks", BOT_TOKEN "." BOT_TOKEN, &n);
    snprintf(out, len, "%.*s", v ? (int)n : 0, v ? (const char *)v : "");
}

/* Message events with a body, in order, as "body[A]" (A: from the archive). */
static void bodies(char *out, size_t len)
{
    out[0] = '\0';
    for (size_t i = 0; i < fake_bus_n_events(); i++) {
        const Xpb__V1__Event *ev = fake_bus_event(i);
        if (strcmp(fake_bus_event_kind(i), "message") || !ev->stanza || !ev->stanza->n_body)
            continue;
        size_t n = strlen(out);
        snprintf(out + n, len - n, "%s%s%s", n ? " " : "", ev->stanza->body[0]->text,
                 ev->from_archive ? "[A]" : "");
    }
}

static int setup(void **state)
{
    (void)state;
    snprintf(pwfile, sizeof pwfile, "/tmp/xpb-test-nats-pw-XXXXXX");
    int fd = mkstemp(pwfile);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "pencil\n", 7), 7);
    close(fd);
    fake_kv_wipe();
    clock_ms = 1000;
    fake_kv_set_clock(clock_ms);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(pwfile);
    fake_kv_freeze(0);
    fake_kv_wipe();
    fake_bus_reset();
    g_shards = 0;
    return 0;
}

static void test_send_kept_in_kv_and_taken_over(void **state)
{
    (void)state;
    xpb_loop *loop = fake_loop_new();
    xpb_daemon *d = new_bridge(loop, "one");
    xpb_loop_session *ls = until_started(loop);
    authenticate(ls);
    bind_and_enable(ls);
    fake_kv_deliver();
    assert_int_equal(fake_kv_get("xpb_sm", BOT_TOKEN, NULL), 1); /* the state is in KV */

    /* The send is not answered, nor written to the server, before KV says
     * its outbox key is stored. */
    fake_clear_sent(ls);
    fake_req *q = send_message(loop, "kept in kv");
    assert_false(q->answered);
    assert_null(strstr(fake_sent(ls), "kept in kv"));
    assert_int_equal(fake_kv_get("xpb_outbox", BOT_TOKEN ".", NULL), 1);
    fake_kv_deliver();
    fake_loop_idle(loop);
    assert_true(q->answered);
    assert_false(q->resp->has_code && q->resp->code != XPB__V1__ERROR_CODE__OK);
    char sid[128], rid[64];
    snprintf(sid, sizeof sid, "%s", q->resp->sent->stanza_id);
    snprintf(rid, sizeof rid, "%s", q->resp->request_id);
    assert_non_null(strstr(fake_sent(ls), "kept in kv"));

    /* The bridge dies before the server acknowledges it: nothing more of
     * it reaches KV; its lease lapses. */
    fake_kv_freeze(1);
    xpb_daemon_free(d);
    fake_loop_free(loop);
    fake_bus_reset();
    fake_kv_freeze(0);
    fake_kv_drop_bucket("xpb_owners");
    fake_kv_drop_bucket("xpb_bridges");
    assert_int_equal(fake_kv_get("xpb_outbox", BOT_TOKEN ".", NULL), 1);

    /* Another bridge claims the account, resumes the stream with the state
     * from KV and sends the unacknowledged message again, same id. */
    loop = fake_loop_new();
    d = new_bridge(loop, "two");
    ls = until_started(loop);
    authenticate(ls);
    assert_non_null(strstr(fake_sent(ls), "<resume xmlns='urn:xmpp:sm:3' previd='sm-1'"));
    fake_clear_sent(ls);
    fake_feed(ls, "<resumed xmlns='urn:xmpp:sm:3' previd='sm-1' h='0'/>");
    assert_int_equal(xpb_session_get_state(xpb_loop_session_get(ls)), XPB_SS_ONLINE);
    /* A resumed stream of an earlier process gets its queue only once an <a/>
     * answers our <r/> (docs/durability.md: the old link may have been cut
     * mid-stanza). */
    fake_loop_idle(loop);
    assert_non_null(strstr(fake_sent(ls), "<r xmlns='urn:xmpp:sm:3'/>"));
    assert_null(strstr(fake_sent(ls), "kept in kv"));
    fake_feed(ls, "<a xmlns='urn:xmpp:sm:3' h='0'/>");
    fake_loop_idle(loop);
    const char *sent = fake_sent(ls);
    if (!strstr(sent, "kept in kv") || !strstr(sent, sid))
        fail_msg("the kept send was not sent again with id %s; sent: %s", sid, sent);
    xpb_daemon_counters c;
    xpb_daemon_get_counters(d, &c);
    assert_int_equal(c.sends_resent, 1);
    /* A client that got no answer resends the request to the new owner: it
     * is answered with the kept send's id, not run again. */
    assert_non_null(fake_bus_remembered(rid));
    assert_string_equal(fake_bus_remembered(rid), sid);
    /* The server acknowledges it: its key goes. */
    fake_feed(ls, "<a xmlns='urn:xmpp:sm:3' h='1'/>");
    fake_kv_deliver();
    assert_int_equal(fake_kv_get("xpb_outbox", BOT_TOKEN ".", NULL), 0);
    xpb_daemon_free(d);
    fake_kv_deliver();
    fake_loop_free(loop);
}

/* A SendBatch with the state in KV: every item's outbox key is stored
 * before any stanza goes out; then one answer with a result per item. */
static void test_send_batch_kept_in_kv(void **state)
{
    (void)state;
    xpb_loop *loop = fake_loop_new();
    xpb_daemon *d = new_bridge(loop, "one");
    xpb_loop_session *ls = until_started(loop);
    authenticate(ls);
    bind_and_enable(ls);
    fake_kv_deliver();
    fake_clear_sent(ls);
    static const char *const texts[] = {"batch one", NULL, "batch three"};
    Xpb__V1__Text text[3];
    Xpb__V1__Text *bodies[3][1];
    xpb_stanza st[3];
    Xpb__V1__SendStanza one[3], *ones[3];
    for (int i = 0; i < 3; i++) {
        xpb__v1__text__init(&text[i]);
        text[i].text = (char *)texts[i];
        bodies[i][0] = &text[i];
        xpb__v1__stanza__init(&st[i]);
        st[i].has_kind = st[i].has_type = 1;
        st[i].kind = XPB__V1__KIND__KIND_MESSAGE;
        st[i].type = XPB__V1__STANZA_TYPE__TYPE_CHAT;
        st[i].to = "friend@example.com";
        st[i].n_body = 1;
        st[i].body = bodies[i];
        xpb__v1__send_stanza__init(&one[i]);
        one[i].stanza = texts[i] ? &st[i] : NULL; /* the second: no stanza, refused */
        ones[i] = &one[i];
    }
    Xpb__V1__SendBatch op;
    Xpb__V1__Request r;
    xpb_test_batch_init(&r, &op, BOT, ones, 3);
    r.api_version = 1;
    r.has_api_version = 1;
    r.request_id = "batch-1";
    fake_req *q = fake_bus_request("batch-1", &r);
    assert_non_null(q);
    fake_loop_idle(loop);
    assert_false(q->answered);
    assert_int_equal(fake_kv_get("xpb_outbox", BOT_TOKEN ".", NULL), 2);
    fake_kv_deliver_n(1); /* one key confirmed: still nothing goes out */
    fake_loop_idle(loop);
    assert_false(q->answered);
    assert_null(strstr(fake_sent(ls), "batch one"));
    fake_kv_deliver();
    fake_loop_idle(loop);
    assert_true(q->answered);
    assert_int_equal(q->resp->result_case, XPB__V1__RESPONSE__RESULT_SENT_BATCH);
    const Xpb__V1__SendBatchResult *br = q->resp->sent_batch;
    assert_int_equal(br->n_result, 3);
    assert_int_equal(br->result[0]->code, XPB__V1__ERROR_CODE__OK);
    assert_int_equal(br->result[1]->code, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST);
    assert_int_equal(br->result[2]->code, XPB__V1__ERROR_CODE__OK);
    const char *sent = fake_sent(ls), *p1 = strstr(sent, "batch one"),
               *p3 = strstr(sent, "batch three");
    assert_non_null(p1);
    assert_non_null(p3);
    assert_true(p1 < p3);
    assert_non_null(strstr(sent, br->result[2]->stanza_id));
    int named = 0; /* their Delivery events name <request_id>/<index> */
    for (size_t i = 0; i < fake_bus_n_events(); i++) {
        const Xpb__V1__Event *ev = fake_bus_event(i);
        if (ev->delivery && ev->delivery->request_id)
            named |= strcmp(ev->delivery->request_id, "batch-1/2") == 0;
    }
    assert_true(named);
    /* acknowledged by the server (with what went before: presence, the
     * catch-up query): both keys go */
    xpb_session_stats ss;
    xpb_session_get_stats(xpb_loop_session_get(ls), &ss);
    char ack[64];
    snprintf(ack, sizeof ack, "<a xmlns='urn:xmpp:sm:3' h='%u'/>", ss.unacked);
    fake_feed(ls, ack);
    fake_kv_deliver();
    assert_int_equal(fake_kv_get("xpb_outbox", BOT_TOKEN ".", NULL), 0);
    xpb_daemon_free(d);
    fake_kv_deliver();
    fake_loop_free(loop);
}

static fake_req *request(xpb_loop *loop, Xpb__V1__Request *r)
{
    char id[32];
    snprintf(id, sizeof id, "r%d", ++n_req);
    r->account = BOT;
    r->api_version = 1;
    r->has_api_version = 1;
    r->request_id = id;
    fake_req *q = fake_bus_request(id, r);
    assert_non_null(q);
    fake_loop_idle(loop);
    return q;
}

/* iq, presence and MUC join requests are kept in xpb_outbox like messages:
 * nothing goes out and nothing is answered before the key is stored. */
static void test_other_sends_kept_in_kv(void **state)
{
    (void)state;
    xpb_loop *loop = fake_loop_new();
    xpb_daemon *d = new_bridge(loop, "one");
    xpb_loop_session *ls = until_started(loop);
    authenticate(ls);
    bind_and_enable(ls);
    fake_kv_deliver();
    fake_clear_sent(ls);
    int before = fake_kv_get("xpb_outbox", BOT_TOKEN ".", NULL);

    xpb_stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = st.has_type = st.has_ping = 1;
    st.kind = XPB__V1__KIND__KIND_IQ;
    st.type = XPB__V1__STANZA_TYPE__TYPE_GET;
    st.ping = 1;
    st.to = "example.com";
    st.id = "ping-1";
    Xpb__V1__SendIq iq = XPB__V1__SEND_IQ__INIT;
    iq.stanza = &st;
    Xpb__V1__Request r1 = XPB__V1__REQUEST__INIT;
    r1.op_case = XPB__V1__REQUEST__OP_IQ;
    r1.iq = &iq;
    fake_req *qi = request(loop, &r1);
    Xpb__V1__SetPresence pr = XPB__V1__SET_PRESENCE__INIT;
    pr.status = "kept first";
    Xpb__V1__Request r2 = XPB__V1__REQUEST__INIT;
    r2.op_case = XPB__V1__REQUEST__OP_PRESENCE;
    r2.presence = &pr;
    fake_req *qp = request(loop, &r2);
    Xpb__V1__JoinRoom jr = XPB__V1__JOIN_ROOM__INIT;
    jr.room = "room@conference.example.com";
    jr.nick = "bot";
    Xpb__V1__Request r3 = XPB__V1__REQUEST__INIT;
    r3.op_case = XPB__V1__REQUEST__OP_JOIN;
    r3.join = &jr;
    fake_req *qj = request(loop, &r3);

    assert_int_equal(fake_kv_get("xpb_outbox", BOT_TOKEN ".", NULL), before + 3);
    assert_false(qi->answered || qp->answered || qj->answered);
    assert_null(strstr(fake_sent(ls), "ping-1"));
    assert_null(strstr(fake_sent(ls), "kept first"));
    assert_null(strstr(fake_sent(ls), "room@conference"));
    fake_kv_deliver();
    fake_loop_idle(loop);
    const char *sent = fake_sent(ls);
    const char *pi = strstr(sent, "ping-1"), *pp = strstr(sent, "kept first"),
               *pj = strstr(sent, "room@conference.example.com/bot");
    if (!pi || !pp || !pj || !(pi < pp && pp < pj))
        fail_msg("not sent in request order after KV kept them: %s", sent);
    assert_true(qp->answered && qj->answered);
    assert_false(qi->answered); /* an iq waits for its response */
    fake_feed(ls, "<iq type='result' id='ping-1' from='example.com'/>");
    fake_loop_idle(loop);
    assert_true(qi->answered);
    assert_int_equal(qi->resp->result_case, XPB__V1__RESPONSE__RESULT_IQ_RESULT);
    xpb_daemon_free(d);
    fake_kv_deliver();
    fake_loop_free(loop);
}

/* A put that fails (a stream without a leader fails at once) is tried again
 * after a pause that doubles; the send is answered once one is stored. */
static void test_failed_put_tried_again_after_a_pause(void **state)
{
    (void)state;
    xpb_loop *loop = fake_loop_new();
    xpb_daemon *d = new_bridge(loop, "one");
    xpb_loop_session *ls = until_started(loop);
    authenticate(ls);
    bind_and_enable(ls);
    fake_kv_deliver();
    fake_kv_fail_puts("xpb_outbox", 2);
    fake_req *q = send_message(loop, "second time lucky");
    assert_int_equal(fake_kv_deliver(), 2); /* the put failed; its key taken back */
    fake_loop_idle(loop);
    assert_false(q->answered);
    clock_ms += 200; /* within the first pause (250 ms): not tried yet */
    fake_kv_set_clock(clock_ms);
    fake_loop_fire(loop, 200);
    assert_int_equal(fake_kv_pending(), 0);
    clock_ms += 100;
    fake_kv_set_clock(clock_ms);
    fake_loop_fire(loop, 250); /* tried again: fails again */
    assert_int_equal(fake_kv_deliver(), 2);
    clock_ms += 400; /* the second pause is 500 ms */
    fake_kv_set_clock(clock_ms);
    fake_loop_fire(loop, 250);
    assert_int_equal(fake_kv_pending(), 0);
    clock_ms += 200;
    fake_kv_set_clock(clock_ms);
    fake_loop_fire(loop, 250);
    assert_int_equal(fake_kv_deliver(), 1); /* stored */
    fake_loop_idle(loop);
    assert_true(q->answered);
    assert_false(q->resp->has_code && q->resp->code != XPB__V1__ERROR_CODE__OK);
    assert_non_null(strstr(fake_sent(ls), "second time lucky"));
    xpb_daemon_free(d);
    fake_kv_deliver();
    fake_loop_free(loop);
}

/* A bridge stopped while KV has not confirmed a send: the send is answered
 * (not sent) while the bus is still there, and its key is taken back. */
static void test_unconfirmed_send_at_stop(void **state)
{
    (void)state;
    xpb_loop *loop = fake_loop_new();
    xpb_daemon *d = new_bridge(loop, "one");
    xpb_loop_session *ls = until_started(loop);
    authenticate(ls);
    bind_and_enable(ls);
    fake_kv_deliver();
    fake_req *q = send_message(loop, "never confirmed");
    assert_false(q->answered);
    assert_int_equal(fake_kv_get("xpb_outbox", BOT_TOKEN ".", NULL), 1);
    assert_null(strstr(fake_sent(ls), "never confirmed"));
    xpb_daemon_free(d); /* the session goes with it */
    assert_true(q->answered);
    assert_int_equal(q->resp->code, XPB__V1__ERROR_CODE__ERR_NOT_CONNECTED);
    assert_int_equal(fake_kv_get("xpb_outbox", BOT_TOKEN ".", NULL), 0);
    fake_kv_deliver();
    fake_loop_free(loop);
}

static void test_marks_taken_over_by_a_fresh_bind(void **state)
{
    (void)state;
    char v[1024], got[1024];
    xpb_loop *loop = fake_loop_new();
    xpb_daemon *d = new_bridge(loop, "one");
    xpb_loop_session *ls = until_started(loop);
    authenticate(ls);
    bind_and_enable(ls);
    fake_loop_idle(loop);
    /* First run: the newest id only. The marker goes to KV only once the bus
     * acknowledged every event published before it (JetStream's ack). */
    query q = sent_query(ls, "<before/>");
    feed_result(ls, &q, "A1", "old news");
    feed_fin(ls, &q, "A1");
    fake_loop_fire(loop, 200);
    marks_value(v, sizeof v);
    assert_string_equal(v, "");
    fake_bus_ack_all();
    fake_loop_fire(loop, 50);
    marks_value(v, sizeof v);
    assert_non_null(strstr(v, " A1"));
    /* A live message moves the marker (caught up) and is seen; in KV only
     * after its event is acknowledged. */
    feed_live(ls, "L1", "live one");
    fake_loop_fire(loop, 200);
    marks_value(v, sizeof v);
    assert_null(strstr(v, "L1"));
    fake_bus_ack_all();
    fake_loop_fire(loop, 50);
    marks_value(v, sizeof v);
    assert_non_null(strstr(v, " L1"));
    assert_non_null(strstr(v, "2:L1")); /* and among the seen stanza-ids */

    /* The bridge dies; its lease lapses. */
    fake_kv_freeze(1);
    xpb_daemon_free(d);
    fake_loop_free(loop);
    fake_bus_reset();
    fake_kv_freeze(0);
    fake_kv_drop_bucket("xpb_owners");
    fake_kv_drop_bucket("xpb_bridges");

    /* The next owner cannot resume (the server forgot the stream) and binds
     * afresh: catch-up asks for what came after the dead bridge's marker,
     * publishes it, and drops the live message the server delivers again,
     * which the dead bridge had published. No state directory: all from KV. */
    loop = fake_loop_new();
    d = new_bridge(loop, "two");
    ls = until_started(loop);
    authenticate(ls);
    assert_non_null(strstr(fake_sent(ls), "<resume xmlns='urn:xmpp:sm:3' previd='sm-1'"));
    fake_feed(ls, "<failed xmlns='urn:xmpp:sm:3'><item-not-found "
                  "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>");
    bind_and_enable(ls);
    fake_loop_idle(loop);
    q = sent_query(ls, "<after>L1</after>");
    feed_live(ls, "L1", "live one"); /* delivered again by the server */
    feed_result(ls, &q, "X1", "while away");
    feed_fin(ls, &q, "X1");
    bodies(got, sizeof got);
    assert_string_equal(got, "while away[A]");
    xpb_daemon_counters c;
    xpb_daemon_get_counters(d, &c);
    assert_int_equal(c.catchup_duplicates, 1);
    assert_int_equal(c.catchup_messages, 1);
    fake_bus_ack_all();
    fake_loop_fire(loop, 50);
    marks_value(v, sizeof v);
    assert_non_null(strstr(v, " X1"));
    xpb_daemon_free(d);
    fake_kv_deliver();
    fake_loop_free(loop);
}

/* nats.shards: one lease key for a group of accounts; the bridge that
 * claims it starts them all, and the next owner takes them all over. */
static void test_shard_lease_moves_its_accounts(void **state)
{
    (void)state;
    g_shards = 1;
    xpb_loop *loop = fake_loop_new();
    xpb_daemon *d = new_bridge(loop, "one");
    until_started(loop);
    assert_non_null(fake_loop_session(loop, BOT2));
    assert_int_equal(fake_kv_get("xpb_owners", "shard-0", NULL), 1);
    assert_int_equal(fake_kv_get("xpb_owners", BOT_TOKEN, NULL), 0);
    xpb_daemon_counters c;
    xpb_daemon_get_counters(d, &c);
    assert_int_equal(c.leases_owned, 1);

    fake_kv_freeze(1); /* the bridge dies; its lease lapses */
    xpb_daemon_free(d);
    fake_loop_free(loop);
    fake_bus_reset();
    fake_kv_freeze(0);
    fake_kv_drop_bucket("xpb_owners");
    fake_kv_drop_bucket("xpb_bridges");

    loop = fake_loop_new();
    d = new_bridge(loop, "two");
    until_started(loop);
    assert_non_null(fake_loop_session(loop, BOT2));
    assert_int_equal(fake_kv_get("xpb_owners", "shard-0", NULL), 1);
    /* A clean stop closes both sessions, then releases the one key. */
    xpb_daemon_shutdown(d);
    for (int i = 0; i < 20 && fake_kv_get("xpb_owners", "shard-0", NULL); i++) {
        fake_loop_idle(loop);
        fake_loop_fire(loop, 250);
        fake_kv_deliver();
    }
    assert_int_equal(fake_kv_get("xpb_owners", "shard-0", NULL), 0);
    xpb_daemon_free(d);
    fake_kv_deliver();
    fake_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_send_kept_in_kv_and_taken_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_marks_taken_over_by_a_fresh_bind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_batch_kept_in_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_sends_kept_in_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unconfirmed_send_at_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_put_tried_again_after_a_pause, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_shard_lease_moves_its_accounts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
