/* Tests for the NATS state back end (bridge/daemon/state_nats.c, sends.c)
 * on the daemon's seams (fake bus, fake loop, fake JetStream KV in
 * fake_bus.c whose results arrive only when the test delivers them): with
 * leases, a send is answered only once its outbox key is stored; the
 * XEP-0198 state is in KV; a second bridge that takes the account over
 * after the first died resumes the stream with that state and sends the
 * unacknowledged send again, with the same id. */
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
#include "xpb_config.h"
#include "xpb_daemon.h"
#include "xpb_error.h"
#include "xpb_session.h"

#define BOT "bot@example.com"
#define BOT_TOKEN "bot_40example_2Ecom"
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

static xpb_daemon *new_bridge(xpb_loop *loop, const char *id)
{
    xpb_config cfg;
    xpb_config_init(&cfg);
    cfg.state_dir = strdup("none");
    cfg.bus_nats = 1;
    cfg.nats.leases = 1;
    cfg.nats.servers = calloc(1, sizeof *cfg.nats.servers);
    cfg.nats.servers[0] = strdup("nats://127.0.0.1:4222");
    cfg.nats.n_servers = 1;
    cfg.nats.bridge_id = strdup(id);
    cfg.accounts = calloc(1, sizeof *cfg.accounts);
    cfg.n_accounts = 1;
    cfg.accounts[0].jid = strdup(BOT);
    cfg.accounts[0].password_file = strdup(pwfile);
    cfg.accounts[0].host = strdup("127.0.0.1");
    cfg.accounts[0].stream_management = 1;
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
    Xpb__V1__Text text = XPB__V1__TEXT__INIT;
    text.text = (char *)body;
    Xpb__V1__Text *bodies[] = {&text};
    xpb_stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = st.has_type = 1;
    st.kind = XPB__V1__KIND__KIND_MESSAGE;
    st.type = XPB__V1__STANZA_TYPE__TYPE_CHAT;
    st.to = "friend@example.com";
    st.n_body = 1;
    st.body = bodies;
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
    char sid[128];
    snprintf(sid, sizeof sid, "%s", q->resp->sent->stanza_id);
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
    /* The server acknowledges it: its key goes. */
    fake_feed(ls, "<a xmlns='urn:xmpp:sm:3' h='1'/>");
    fake_kv_deliver();
    assert_int_equal(fake_kv_get("xpb_outbox", BOT_TOKEN ".", NULL), 0);
    xpb_daemon_free(d);
    fake_kv_deliver();
    fake_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_send_kept_in_kv_and_taken_over, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
