/* Tests for the daemon library (bridge/daemon/): requests go in through a
 * fake bus (fake_bus.c) and sessions run on a fake loop (fake_loop.c), both
 * linked in place of the real ones. Each session is the real xpb_session
 * state machine; the test plays the server by feeding it XML, and fires the
 * daemon's timers by hand. No network, no NNG, no libevent. */
#define _DEFAULT_SOURCE /* usleep */
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
#include "xpb_log.h"

#define BOT "bot@example.com"
#define ROOM "room@conference.example.com"
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

typedef struct fixture {
    xpb_loop *loop;
    xpb_daemon *d;
    int n_req;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->loop = fake_loop_new();
    assert_non_null(f->loop);
    xpb_config cfg;
    xpb_config_init(&cfg);
    cfg.loops = 0;                    /* the fake loop has no worker loops */
    cfg.allow_inline_credentials = 1; /* open may carry a password (bus.allow_inline_credentials) */
    cfg.state_dir = strdup("none"); /* never the user's default state directory */
    char err[512] = "";
    int rc = xpb_daemon_new(&f->d, f->loop, &cfg, err, sizeof err);
    xpb_config_clear(&cfg);
    if (rc != 0) fail_msg("xpb_daemon_new: %s", err);
    assert_non_null(fake_bus_get());
    *state = f;
    return 0;
}

/* The same with a state directory (a fresh temporary one, removed after). */
static char state_dir[64];

static unsigned queue_max_next; /* daemon_with_state: limits.queue_max when not 0 */

static xpb_daemon *daemon_with_state(xpb_loop *loop)
{
    xpb_config cfg;
    xpb_config_init(&cfg);
    if (queue_max_next) cfg.queue_max = queue_max_next;
    cfg.loops = 0; /* the fake loop has no worker loops */
    cfg.allow_inline_credentials = 1;
    cfg.state_dir = strdup(state_dir);
    char err[512] = "";
    xpb_daemon *d = NULL;
    int rc = xpb_daemon_new(&d, loop, &cfg, err, sizeof err);
    xpb_config_clear(&cfg);
    if (rc != 0) fail_msg("xpb_daemon_new: %s", err);
    fake_loop_set_settle(loop, xpb_daemon_settle, d); /* the store thread's work, then timers */
    return d;
}

static int setup_state(void **state)
{
    snprintf(state_dir, sizeof state_dir, "/tmp/xpb-test-daemon-XXXXXX");
    assert_non_null(mkdtemp(state_dir));
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->loop = fake_loop_new();
    assert_non_null(f->loop);
    f->d = daemon_with_state(f->loop);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    xpb_daemon_free(f->d);
    assert_null(fake_bus_get()); /* the daemon freed its bus */
    fake_loop_free(f->loop);
    fake_bus_reset();
    free(f);
    return 0;
}

/* ---- requests ------------------------------------------------------------------- */

static fake_req *request(fixture *f, Xpb__V1__Request *r)
{
    char id[32];
    snprintf(id, sizeof id, "r%d", ++f->n_req);
    r->api_version = 1;
    r->has_api_version = 1;
    r->request_id = id;
    fake_req *q = fake_bus_request(id, r);
    assert_non_null(q);
    fake_loop_idle(f->loop);
    return q;
}

static Xpb__V1__ErrorCode code_of(const fake_req *q)
{
    assert_true(q->answered);
    return q->resp->has_code ? q->resp->code : XPB__V1__ERROR_CODE__OK;
}

static fake_req *open_bot(fixture *f, const char *room)
{
    Xpb__V1__JoinRoom jr = XPB__V1__JOIN_ROOM__INIT;
    jr.room = (char *)room;
    jr.nick = "bot";
    Xpb__V1__JoinRoom *rooms[] = {&jr};
    Xpb__V1__OpenSession op = XPB__V1__OPEN_SESSION__INIT;
    op.jid = BOT;
    op.password = "pencil";
    op.n_room = room ? 1 : 0;
    op.room = rooms;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.account = BOT;
    r.op_case = XPB__V1__REQUEST__OP_OPEN;
    r.open = &op;
    return request(f, &r);
}

static fake_req *send_message_as(fixture *f, const char *account, const char *body);

static fake_req *send_message(fixture *f, const char *body)
{
    return send_message_as(f, BOT, body);
}

static fake_req *send_message_as(fixture *f, const char *account, const char *body)
{
    xpb_test_msg m;
    xpb_test_chat_init(&m, "friend@example.com", body);
    xpb_stanza st = m.st;
    Xpb__V1__SendStanza op = XPB__V1__SEND_STANZA__INIT;
    op.stanza = &st;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.account = (char *)account;
    r.op_case = XPB__V1__REQUEST__OP_SEND;
    r.send = &op;
    return request(f, &r);
}

/* An XEP-0199 ping iq to peer with id; timeout_ms 0: the default. */
static fake_req *send_iq(fixture *f, const char *peer, const char *id, unsigned timeout_ms)
{
    xpb_stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = st.has_type = st.has_ping = 1;
    st.kind = XPB__V1__KIND__KIND_IQ;
    st.type = XPB__V1__STANZA_TYPE__TYPE_GET;
    st.ping = 1;
    st.to = (char *)peer;
    st.id = (char *)id;
    Xpb__V1__SendIq op = XPB__V1__SEND_IQ__INIT;
    op.stanza = &st;
    op.has_timeout_ms = timeout_ms != 0;
    op.timeout_ms = timeout_ms;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.account = BOT;
    r.op_case = XPB__V1__REQUEST__OP_IQ;
    r.iq = &op;
    return request(f, &r);
}

static fake_req *simple_request(fixture *f, Xpb__V1__Request__OpCase op, const char *account)
{
    Xpb__V1__CloseSession close = XPB__V1__CLOSE_SESSION__INIT;
    Xpb__V1__ListSessions list = XPB__V1__LIST_SESSIONS__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.account = (char *)account;
    r.op_case = op;
    if (op == XPB__V1__REQUEST__OP_CLOSE) r.close = &close;
    if (op == XPB__V1__REQUEST__OP_LIST) r.list = &list;
    return request(f, &r);
}

/* ---- the server's side ------------------------------------------------------------ */

static xpb_loop_session *bot_session(fixture *f)
{
    xpb_loop_session *ls = fake_loop_session(f->loop, BOT);
    assert_non_null(ls);
    return ls;
}

static void assert_sent(xpb_loop_session *ls, const char *what)
{
    if (!strstr(fake_sent(ls), what)) fail_msg("'%s' not sent; sent: %s", what, fake_sent(ls));
}

static void assert_not_sent(xpb_loop_session *ls, const char *what)
{
    if (strstr(fake_sent(ls), what)) fail_msg("'%s' sent; sent: %s", what, fake_sent(ls));
}

/* TCP, STARTTLS, PLAIN, bind: ends ONLINE as BOT/r1; with sm, XEP-0198 is
 * offered and enabled. */
static void login_with(fixture *f, int sm)
{
    xpb_loop_session *ls = bot_session(f);
    xpb_session *s = xpb_loop_session_get(ls);
    assert_int_equal(xpb_session_get_state(s), XPB_SS_CONNECTING);
    xpb_session_on_connected(s, 0);
    fake_feed(ls, SERVER_HEADER FEATURES(F_STARTTLS F_PLAIN));
    fake_feed(ls, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    xpb_session_on_tls_ready(s, NULL, NULL, 0);
    fake_feed(ls, SERVER_HEADER FEATURES(F_PLAIN));
    fake_feed(ls, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    fake_clear_sent(ls);
    fake_feed(ls, sm ? SERVER_HEADER FEATURES(F_BIND F_SM) : SERVER_HEADER FEATURES(F_BIND));
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
    if (sm) {
        assert_sent(ls, "<enable xmlns='urn:xmpp:sm:3'");
        fake_feed(ls, "<enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/>");
    }
    assert_int_equal(xpb_session_get_state(s), XPB_SS_ONLINE);
    fake_loop_idle(f->loop);
}

static void login(fixture *f)
{
    login_with(f, 0);
}

static xpb_daemon_counters counters(fixture *f)
{
    xpb_daemon_counters c;
    xpb_daemon_get_counters(f->d, &c);
    return c;
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_open_starts_a_session(void **state)
{
    fixture *f = *state;
    fake_req *q = open_bot(f, NULL);
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
    assert_int_equal(fake_loop_n_sessions(f->loop), 1);
    assert_int_equal(fake_connects(bot_session(f)), 1);
    const Xpb__V1__SessionState *st = fake_bus_last_state(BOT);
    assert_non_null(st);
    assert_int_equal(st->state, XPB__V1__SESSION_STATE__STATE__STATE_CONNECTING);
    assert_int_equal(counters(f).sessions[XPB_MST_CONNECTING], 1);
    /* A second open of the same account is refused. */
    assert_int_equal(code_of(open_bot(f, NULL)), XPB__V1__ERROR_CODE__ERR_EXISTS);
    login(f);
    st = fake_bus_last_state(BOT);
    assert_int_equal(st->state, XPB__V1__SESSION_STATE__STATE__STATE_ONLINE);
    assert_string_equal(st->jid, BOT "/r1");
    assert_int_equal(counters(f).sessions[XPB_MST_ONLINE], 1);
}

static void test_unknown_account_refused(void **state)
{
    fixture *f = *state;
    fake_req *q = send_message(f, "hello");
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__ERR_UNKNOWN_ACCOUNT);
    assert_int_equal(fake_loop_n_sessions(f->loop), 0);
}

typedef struct gauges {
    unsigned accounts, queued;
} gauges;

static int count_gauges(void *ud, const char *name, unsigned queued, unsigned unacked)
{
    gauges *g = ud;
    assert_string_equal(name, BOT);
    (void)unacked;
    g->accounts++;
    g->queued += queued;
    return 0;
}

static void test_send_while_offline_is_queued(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    xpb_loop_session *ls = bot_session(f);
    fake_req *q = send_message(f, "queued hello");
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
    assert_int_equal(q->resp->result_case, XPB__V1__RESPONSE__RESULT_SENT);
    assert_true(q->resp->sent->queued);
    assert_non_null(q->resp->sent->stanza_id);
    assert_not_sent(ls, "queued hello"); /* nothing connected yet */
    /* The per-account gauges /metrics shows, in one walk. */
    gauges g = {0};
    int more = 1;
    assert_int_equal(xpb_daemon_each_account_slice(f->d, 1, 100, count_gauges, &g, &more), 0);
    assert_false(more);
    assert_int_equal(g.accounts, 1);
    assert_int_equal(g.queued, 1);
    /* Sent once the session is online, with the id the reply named. */
    login(f);
    /* login() cleared the output before bind; the queue flushes after it. */
    assert_sent(ls, "queued hello");
    assert_sent(ls, q->resp->sent->stanza_id);
    /* Online: not queued any more. */
    fake_req *q2 = send_message(f, "live hello");
    assert_int_equal(code_of(q2), XPB__V1__ERROR_CODE__OK);
    assert_false(q2->resp->sent->queued);
    assert_sent(ls, "live hello");
    assert_int_equal(counters(f).stanzas[XPB_DIR_OUT][XPB_KIND_MESSAGE], 2);
}

static fake_req *open_named(fixture *f, const char *jid)
{
    Xpb__V1__OpenSession op = XPB__V1__OPEN_SESSION__INIT;
    op.jid = (char *)jid;
    op.password = "pencil";
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.account = (char *)jid;
    r.op_case = XPB__V1__REQUEST__OP_OPEN;
    r.open = &op;
    return request(f, &r);
}

typedef struct walked {
    char names[8][64];
    unsigned n;
    int pause_at; /* refuse the account after this many (once), as a full snapshot does */
} walked;

static int note_name(void *ud, const char *name, unsigned queued, unsigned unacked)
{
    walked *w = ud;
    (void)queued, (void)unacked;
    if (w->pause_at > 0 && w->n == (unsigned)w->pause_at) {
        w->pause_at = 0;
        return 7;
    }
    assert_true(w->n < 8);
    snprintf(w->names[w->n++], sizeof w->names[0], "%s", name);
    return 0;
}

static int fail_walk(void *ud, const char *name, unsigned queued, unsigned unacked)
{
    (void)ud, (void)name, (void)queued, (void)unacked;
    return XPB_ENOMEM;
}

static int walked_has(const walked *w, const char *name)
{
    int n = 0;
    for (unsigned i = 0; i < w->n; i++)
        n += strcmp(w->names[i], name) == 0;
    return n;
}

/* /metrics copies the accounts a slice per loop turn: every live account
 * once, none twice, and an account closed and reaped between two slices
 * (the next one the walk would visit) is skipped, not followed. */
static void test_account_walk_in_slices(void **state)
{
    fixture *f = *state;
    static const char *const jids[4] = {"a1@example.com", "a2@example.com", "a3@example.com",
                                        "a4@example.com"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(code_of(open_named(f, jids[i])), 0);
    walked w = {0};
    int more = 0;
    assert_int_equal(xpb_daemon_each_account_slice(f->d, 1, 3, note_name, &w, &more), 0);
    assert_int_equal(w.n, 3);
    assert_true(more);
    assert_int_equal(xpb_daemon_each_account_slice(f->d, 0, 3, note_name, &w, &more), 0);
    assert_int_equal(w.n, 4);
    assert_false(more);
    for (int i = 0; i < 4; i++)
        assert_int_equal(walked_has(&w, jids[i]), 1);

    /* Accounts are walked newest first: a4, a3, then a2 is next; close it. */
    memset(&w, 0, sizeof w);
    assert_int_equal(xpb_daemon_each_account_slice(f->d, 1, 2, note_name, &w, &more), 0);
    assert_true(more);
    const char *next = walked_has(&w, "a2@example.com") ? NULL : "a2@example.com";
    assert_non_null(next);
    Xpb__V1__CloseSession cl = XPB__V1__CLOSE_SESSION__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.account = (char *)next;
    r.op_case = XPB__V1__REQUEST__OP_CLOSE;
    r.close = &cl;
    assert_int_equal(code_of(request(f, &r)), 0);
    fake_loop_idle(f->loop); /* the reaper runs */
    assert_int_equal(xpb_daemon_each_account_slice(f->d, 0, 10, note_name, &w, &more), 0);
    assert_false(more);
    assert_int_equal(walked_has(&w, "a2@example.com"), 0);
    assert_int_equal(walked_has(&w, "a1@example.com"), 1);
    assert_int_equal(w.n, 3);

    /* A callback with no room (a positive value) pauses the walk at that
     * account: the next slice visits it again; a negative value ends it. */
    memset(&w, 0, sizeof w);
    w.pause_at = 1;
    assert_int_equal(xpb_daemon_each_account_slice(f->d, 1, 10, note_name, &w, &more), 7);
    assert_int_equal(w.n, 1);
    assert_true(more);
    assert_int_equal(xpb_daemon_each_account_slice(f->d, 0, 10, note_name, &w, &more), 0);
    assert_false(more);
    assert_int_equal(w.n, 3);
    for (int i = 0; i < 4; i++)
        assert_int_equal(walked_has(&w, jids[i]), i == 1 ? 0 : 1); /* each once, a2 closed */
    assert_int_equal(xpb_daemon_each_account_slice(f->d, 1, 10, fail_walk, &w, &more),
                     XPB_ENOMEM);
    assert_false(more);

    /* An account visited already is reaped, another opened, between two
     * slices: the walk goes on with the accounts it had not visited. */
    memset(&w, 0, sizeof w);
    assert_int_equal(xpb_daemon_each_account_slice(f->d, 1, 1, note_name, &w, &more), 0);
    assert_int_equal(walked_has(&w, "a4@example.com"), 1);
    r.account = "a4@example.com";
    assert_int_equal(code_of(request(f, &r)), 0);
    fake_loop_idle(f->loop);
    assert_int_equal(code_of(open_named(f, "a5@example.com")), 0);
    assert_int_equal(xpb_daemon_each_account_slice(f->d, 0, 10, note_name, &w, &more), 0);
    assert_false(more);
    assert_int_equal(w.n, 3);
    assert_int_equal(walked_has(&w, "a3@example.com"), 1);
    assert_int_equal(walked_has(&w, "a1@example.com"), 1);
    /* A new walk sees the newcomer first. */
    memset(&w, 0, sizeof w);
    assert_int_equal(xpb_daemon_each_account_slice(f->d, 1, 1, note_name, &w, &more), 0);
    assert_int_equal(walked_has(&w, "a5@example.com"), 1);
    assert_true(more);
}

/* Without XEP-0198 (the server offers no <sm/>) a written stanza is acked
 * inside xpb_session_send, before the daemon knew its handle: the delivery
 * event must still be published, once, and nothing stays tracked. */
static void test_delivery_acked_without_stream_management(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    login(f);
    fake_bus_clear_events();
    for (int i = 0; i < 3; i++) {
        fake_req *q = send_message(f, "no-sm hello");
        assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
        size_t acked = 0;
        for (size_t k = 0; k < fake_bus_n_events(); k++) {
            const Xpb__V1__Event *ev = fake_bus_event(k);
            if (ev->body_case == XPB__V1__EVENT__BODY_DELIVERY &&
                ev->delivery->outcome == XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED &&
                strcmp(ev->delivery->stanza_id, q->resp->sent->stanza_id) == 0)
                acked++;
        }
        assert_int_equal(acked, 1);
    }
}

/* SendBatch: each stanza goes the way of a single send and is accepted or
 * refused on its own, in order; an accepted one is written with the id its
 * outcome names and its Delivery names "<request_id>/<index>". */
static void test_send_batch(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    login(f);
    xpb_loop_session *ls = bot_session(f);
    fake_bus_clear_events();
    xpb_test_msg m;
    xpb_test_chat_init(&m, "friend@example.com", "batch hello");
    xpb_stanza ok = m.st, bad;
    bad = ok;
    bad.to = "not a jid@@";
    Xpb__V1__SendStanza s0 = XPB__V1__SEND_STANZA__INIT, s1 = XPB__V1__SEND_STANZA__INIT,
                        s2 = XPB__V1__SEND_STANZA__INIT, s3 = XPB__V1__SEND_STANZA__INIT;
    s0.stanza = &ok;
    s2.stanza = &bad; /* s1 has no stanza */
    s3.stanza = &ok;
    Xpb__V1__SendStanza *items[] = {&s0, &s1, &s2, &s3};
    Xpb__V1__SendBatch op;
    Xpb__V1__Request r;
    xpb_test_batch_init(&r, &op, BOT, items, 4);
    fake_req *q = request(f, &r);
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
    assert_int_equal(q->resp->result_case, XPB__V1__RESPONSE__RESULT_SENT_BATCH);
    const Xpb__V1__SendBatchResult *br = q->resp->sent_batch;
    assert_int_equal(br->n_result, 4);
    assert_int_equal(br->result[0]->code, XPB__V1__ERROR_CODE__OK);
    assert_int_equal(br->result[1]->code, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST);
    assert_non_null(strstr(br->result[1]->error_text, "send_batch.send[1].stanza"));
    assert_int_equal(br->result[2]->code, XPB__V1__ERROR_CODE__ERR_INVALID_JID);
    assert_int_equal(br->result[3]->code, XPB__V1__ERROR_CODE__OK);
    assert_string_not_equal(br->result[0]->stanza_id, br->result[3]->stanza_id);
    assert_sent(ls, br->result[0]->stanza_id);
    assert_sent(ls, br->result[3]->stanza_id);
    assert_false(br->result[0]->queued);
    /* No XEP-0198 here: each accepted one is acked at once, under its index. */
    int seen0 = 0, seen3 = 0;
    for (size_t k = 0; k < fake_bus_n_events(); k++) {
        const Xpb__V1__Event *ev = fake_bus_event(k);
        if (ev->body_case != XPB__V1__EVENT__BODY_DELIVERY ||
            ev->delivery->outcome != XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED)
            continue; /* QUEUED and SENT come first, under the same index */
        char want0[64], want3[64];
        snprintf(want0, sizeof want0, "r%d/0", f->n_req);
        snprintf(want3, sizeof want3, "r%d/3", f->n_req);
        seen0 += strcmp(ev->delivery->request_id, want0) == 0;
        seen3 += strcmp(ev->delivery->request_id, want3) == 0;
    }
    assert_int_equal(seen0, 1);
    assert_int_equal(seen3, 1);
    assert_int_equal(counters(f).stanzas[XPB_DIR_OUT][XPB_KIND_MESSAGE], 2);
    /* An empty batch is refused as a whole. */
    op.n_send = 0;
    assert_int_equal(code_of(request(f, &r)), XPB__V1__ERROR_CODE__ERR_BAD_REQUEST);
}

/* Accounts are named by their normalised bare JID: any spelling of it finds
 * the session (RFC 7622 §3); another JID does not. */
/* An id the bridge gives: "xpb-<16 hex>-<decimal counter>". */
static int is_generated_id(const char *id, unsigned long long *counter)
{
    if (strncmp(id, "xpb-", 4) != 0) return 0;
    for (int i = 4; i < 20; i++)
        if (!strchr("0123456789abcdef", id[i]) || !id[i]) return 0;
    if (id[20] != '-' || !id[21]) return 0;
    char *end = NULL;
    *counter = strtoull(id + 21, &end, 10);
    return *end == '\0';
}

/* The Delivery outcomes (letters, see outcomes_of) of the stanza with this id. */
static void outcomes_of(const char *id, char *out, size_t cap, int *resent);

/* SendBatch with XEP-0198: every stanza gets its own generated id (the
 * counter going up by one), QUEUED and SENT at once and ACKED only when an
 * <a/> covers it, in order, carrying the message as sent with from filled
 * in; the counters count the records as sent. */
static void test_send_batch_acked_by_the_server(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    login_with(f, 1);
    xpb_loop_session *ls = bot_session(f);
    fake_bus_clear_events();
    fake_clear_sent(ls);
    xpb_daemon_counters c0 = counters(f);
    enum { N = 40 };
    xpb_test_msg m;
    xpb_test_chat_init(&m, "friend@example.com", "batch & acks");
    xpb_stanza st = m.st;
    Xpb__V1__SendStanza one[N], *items[N];
    for (int i = 0; i < N; i++) {
        one[i] = (Xpb__V1__SendStanza)XPB__V1__SEND_STANZA__INIT;
        one[i].stanza = &st;
        items[i] = &one[i];
    }
    Xpb__V1__SendBatch op;
    Xpb__V1__Request r;
    xpb_test_batch_init(&r, &op, BOT, items, N);
    fake_req *q = request(f, &r);
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
    const Xpb__V1__SendBatchResult *br = q->resp->sent_batch;
    assert_int_equal(br->n_result, N);
    unsigned long long prev = 0, cnt = 0;
    char got[16];
    int resent;
    for (int i = 0; i < N; i++) {
        const char *id = br->result[i]->stanza_id;
        assert_int_equal(br->result[i]->code, XPB__V1__ERROR_CODE__OK);
        if (!is_generated_id(id, &cnt)) fail_msg("stanza id '%s' is not xpb-<16 hex>-<n>", id);
        if (i) assert_int_equal(cnt, prev + 1);
        prev = cnt;
        for (int j = 0; j < i; j++) assert_string_not_equal(br->result[j]->stanza_id, id);
        assert_sent(ls, id);
        outcomes_of(id, got, sizeof got, &resent);
        assert_string_equal(got, "QS");
    }
    /* The initial presence is the stream's first stanza: h counts it. */
    fake_feed(ls, "<a xmlns='urn:xmpp:sm:3' h='11'/>");
    for (int i = 0; i < N; i++) {
        outcomes_of(br->result[i]->stanza_id, got, sizeof got, &resent);
        assert_string_equal(got, i < 10 ? "QSA" : "QS");
    }
    char h[64];
    snprintf(h, sizeof h, "<a xmlns='urn:xmpp:sm:3' h='%d'/>", N + 1);
    fake_feed(ls, h);
    size_t acked = 0, record_bytes = 0;
    for (size_t k = 0; k < fake_bus_n_events(); k++) {
        const Xpb__V1__Event *ev = fake_bus_event(k);
        if (ev->body_case != XPB__V1__EVENT__BODY_DELIVERY ||
            ev->delivery->outcome != XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED)
            continue;
        assert_true(acked < N);
        const xpb_stanza *as = ev->delivery->stanza;
        assert_non_null(as);
        assert_string_equal(ev->delivery->stanza_id, br->result[acked]->stanza_id); /* in order */
        assert_string_equal(as->id, br->result[acked]->stanza_id);
        assert_string_equal(as->origin_id, as->id);
        assert_string_equal(as->from, BOT "/r1");
        assert_string_equal(as->to, "friend@example.com");
        assert_int_equal(as->n_body, 1);
        assert_string_equal(as->body[0]->text, "batch & acks");
        xpb_stanza sent = *as; /* the record as sent had no from */
        sent.from = NULL;
        xpb_buf b;
        xpb_buf_init(&b, 0);
        assert_int_equal(xpb_stanza_pack(&b, &sent), 0);
        record_bytes += b.len;
        xpb_buf_free(&b);
        acked++;
    }
    assert_int_equal(acked, N);
    xpb_daemon_counters c1 = counters(f);
    assert_int_equal(c1.stanzas[XPB_DIR_OUT][XPB_KIND_MESSAGE] -
                         c0.stanzas[XPB_DIR_OUT][XPB_KIND_MESSAGE], N);
    assert_int_equal(c1.bytes_record[XPB_DIR_OUT] - c0.bytes_record[XPB_DIR_OUT], record_bytes);
    assert_true(c1.bytes_xml[XPB_DIR_OUT] - c0.bytes_xml[XPB_DIR_OUT] > record_bytes);
}

static void test_account_name_is_normalised(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    assert_int_equal(code_of(send_message_as(f, "BOT@Example.COM", "hi")),
                     XPB__V1__ERROR_CODE__OK);
    assert_int_equal(code_of(send_message_as(f, "bot2@example.com", "hi")),
                     XPB__V1__ERROR_CODE__ERR_UNKNOWN_ACCOUNT);
}

static void test_iq_response_matched_to_its_request(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    login(f);
    xpb_loop_session *ls = bot_session(f);
    fake_clear_sent(ls);
    fake_req *q = send_iq(f, "svc@example.com/x", "q1", 0);
    assert_false(q->answered);
    assert_sent(ls, "id='q1'");
    /* The same id from another JID is not the response (RFC 6120 §8.2.3). */
    fake_feed(ls, "<iq type='result' id='q1' from='mallory@example.com/x' to='" BOT "/r1'/>");
    fake_loop_idle(f->loop);
    assert_false(q->answered);
    /* An unrelated id neither. */
    fake_feed(ls, "<iq type='result' id='q2' from='svc@example.com/x' to='" BOT "/r1'/>");
    assert_false(q->answered);
    fake_feed(ls, "<iq type='result' id='q1' from='svc@example.com/x' to='" BOT "/r1'/>");
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
    assert_int_equal(q->resp->result_case, XPB__V1__RESPONSE__RESULT_IQ_RESULT);
    assert_string_equal(q->resp->iq_result->id, "q1");
    assert_string_equal(q->resp->iq_result->from, "svc@example.com/x");
    /* Answered once: its timer is gone with it. */
    assert_int_equal(fake_loop_armed(f->loop, 10000), 0);
}

static void test_iq_timeout(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    login(f);
    fake_req *q = send_iq(f, "svc@example.com/x", "slow", 1234);
    assert_false(q->answered);
    assert_int_equal(fake_loop_armed(f->loop, 1234), 1);
    assert_int_equal(fake_loop_fire(f->loop, 1234), 1);
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__ERR_TIMEOUT);
    assert_non_null(strstr(q->resp->error_text, "1234 ms"));
    /* A late response is not matched to anything (and answers nothing twice). */
    xpb_loop_session *ls = bot_session(f);
    fake_feed(ls, "<iq type='result' id='slow' from='svc@example.com/x' to='" BOT "/r1'/>");
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__ERR_TIMEOUT);
}

static void test_muc_join_and_rejoin_after_reconnect(void **state)
{
    fixture *f = *state;
    open_bot(f, ROOM);
    xpb_loop_session *ls = bot_session(f);
    xpb_session *s = xpb_loop_session_get(ls);
    login(f);
    assert_sent(ls, "to='" ROOM "/bot'");
    assert_sent(ls, "http://jabber.org/protocol/muc");
    /* The link breaks: DISCONNECTED on the bus, a reconnect timer. */
    xpb_session_on_disconnected(s, "link cut by the test");
    fake_loop_idle(f->loop);
    assert_int_equal(fake_bus_last_state(BOT)->state,
                     XPB__V1__SESSION_STATE__STATE__STATE_DISCONNECTED);
    assert_int_equal(counters(f).sessions[XPB_MST_DISCONNECTED], 1);
    assert_true(fake_session_timer(ls, XPB_TIMER_RECONNECT) > 0);
    xpb_session_on_timer(s, XPB_TIMER_RECONNECT);
    assert_int_equal(fake_connects(ls), 2);
    /* The gauges and totals follow the session's events, with no walk. */
    assert_int_equal(counters(f).reconnects, 1);
    assert_int_equal(counters(f).sessions[XPB_MST_DISCONNECTED], 0);
    assert_int_equal(counters(f).sessions[XPB_MST_CONNECTING], 1);
    assert_int_equal(counters(f).n_accounts, 1);
    /* A fresh stream (no XEP-0198 resumption): the room is joined again. */
    login(f);
    assert_sent(ls, "to='" ROOM "/bot'");
    assert_sent(ls, "http://jabber.org/protocol/muc");
    /* A join request while online is sent at once, and remembered. */
    fake_clear_sent(ls);
    Xpb__V1__JoinRoom jr = XPB__V1__JOIN_ROOM__INIT;
    jr.room = "other@conference.example.com";
    jr.nick = "b";
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.account = BOT;
    r.op_case = XPB__V1__REQUEST__OP_JOIN;
    r.join = &jr;
    fake_req *q = request(f, &r);
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
    assert_false(q->resp->sent->queued);
    assert_sent(ls, "to='other@conference.example.com/b'");
    fake_req *l = simple_request(f, XPB__V1__REQUEST__OP_LIST, NULL);
    assert_int_equal(l->resp->sessions->n_session, 1);
    assert_int_equal(l->resp->sessions->session[0]->n_room, 2);
}

static void test_close(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    login(f);
    xpb_loop_session *ls = bot_session(f);
    fake_clear_sent(ls);
    fake_req *q = simple_request(f, XPB__V1__REQUEST__OP_CLOSE, BOT);
    assert_false(q->answered); /* answered when the stream is closed */
    assert_sent(ls, "</stream:stream>");
    /* CLOSING: "closing" in /metrics, DISCONNECTED in SessionInfo (one table). */
    assert_int_equal(counters(f).sessions[XPB_MST_CLOSING], 1);
    assert_string_equal(xpb_daemon_state_name(XPB_MST_CLOSING), "closing");
    fake_req *l = simple_request(f, XPB__V1__REQUEST__OP_LIST, NULL);
    assert_int_equal(l->resp->sessions->n_session, 1);
    assert_int_equal(l->resp->sessions->session[0]->state,
                     XPB__V1__SESSION_STATE__STATE__STATE_DISCONNECTED);
    /* Requests for a closing account are refused. */
    assert_int_equal(code_of(send_message(f, "late")), XPB__V1__ERROR_CODE__ERR_UNKNOWN_ACCOUNT);
    fake_feed(ls, "</stream:stream>");
    fake_loop_idle(f->loop); /* the reap runs from the loop */
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
    assert_int_equal(fake_loop_n_sessions(f->loop), 0);
    assert_int_equal(fake_bus_last_state(BOT)->state,
                     XPB__V1__SESSION_STATE__STATE__STATE_STOPPED);
    l = simple_request(f, XPB__V1__REQUEST__OP_LIST, NULL);
    assert_int_equal(l->resp->sessions->n_session, 0);
    xpb_daemon_counters c = counters(f);
    assert_int_equal(c.n_accounts, 0);
    for (int b = 0; b < XPB_MST_COUNT; b++) assert_int_equal(c.sessions[b], 0);
    /* And it can be opened again. */
    assert_int_equal(code_of(open_bot(f, NULL)), XPB__V1__ERROR_CODE__OK);
    assert_int_equal(counters(f).sessions[XPB_MST_CONNECTING], 1);
}

static void test_close_bounded_when_the_server_is_silent(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    login(f);
    fake_req *q = simple_request(f, XPB__V1__REQUEST__OP_CLOSE, BOT);
    assert_false(q->answered);
    assert_true(fake_loop_fire(f->loop, XPB_DAEMON_CLOSE_WAIT_MS) >= 1);
    fake_loop_idle(f->loop);
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
    assert_non_null(strstr(q->resp->error_text, "without waiting"));
    assert_int_equal(fake_loop_n_sessions(f->loop), 0);
}

static void test_shutdown_answers_pending_and_stops_the_loop(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    login(f);
    fake_req *iq = send_iq(f, "svc@example.com/x", "q9", 0);
    xpb_daemon_shutdown(f->d);
    fake_loop_idle(f->loop);
    assert_false(fake_loop_stopped(f->loop)); /* waiting for the session to close */
    fake_feed(bot_session(f), "</stream:stream>");
    fake_loop_idle(f->loop);
    assert_true(fake_loop_stopped(f->loop));
    assert_int_equal(code_of(iq), XPB__V1__ERROR_CODE__ERR_NOT_CONNECTED);
    assert_null(fake_bus_get()); /* the bus was freed at the end of the shutdown */
}

/* ---- durable sends (sends.c) ------------------------------------------------------ */

static int teardown_state(void **state)
{
    int rc = teardown(state);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", state_dir);
    assert_int_equal(system(cmd), 0);
    return rc;
}

/* "Crash": the daemon goes without closing anything; a new one on the same
 * state directory opens the account again. */
static void crash_and_restart(fixture *f)
{
    xpb_daemon_free(f->d);
    fake_loop_free(f->loop);
    fake_bus_reset();
    f->loop = fake_loop_new();
    f->d = daemon_with_state(f->loop);
    open_bot(f, NULL);
}

/* The delivery outcomes of stanza id, in order, as letters (Q S A R F). */
static void outcomes_of(const char *id, char *out, size_t cap, int *resent)
{
    size_t n = 0;
    static const char letters[] = "?ASQSR"; /* index: Outcome (1 ACKED 2 FAILED ...) */
    *resent = 0;
    for (size_t k = 0; k < fake_bus_n_events() && n + 1 < cap; k++) {
        const Xpb__V1__Event *ev = fake_bus_event(k);
        if (ev->body_case != XPB__V1__EVENT__BODY_DELIVERY || !ev->delivery->stanza_id ||
            strcmp(ev->delivery->stanza_id, id) != 0)
            continue;
        int o = ev->delivery->outcome;
        out[n++] = o == XPB__V1__DELIVERY__OUTCOME__OUTCOME_FAILED ? 'F' : letters[o];
        *resent |= ev->delivery->resent;
    }
    out[n] = '\0';
}

/* Without SM: QUEUED, SENT, ACKED (with the message as sent, from filled
 * in); the outbox had it until the ack. An id and an origin-id equal to it
 * are given to a message that has none. */
static void test_sends_states_and_outbox(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    login(f);
    fake_bus_clear_events();
    fake_clear_sent(bot_session(f));
    fake_req *q = send_message(f, "kept");
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
    const char *id = q->resp->sent->stanza_id;
    char got[16];
    int resent;
    outcomes_of(id, got, sizeof got, &resent);
    assert_string_equal(got, "QSA");
    assert_false(resent);
    for (size_t k = 0; k < fake_bus_n_events(); k++) {
        const Xpb__V1__Event *ev = fake_bus_event(k);
        if (ev->body_case != XPB__V1__EVENT__BODY_DELIVERY ||
            ev->delivery->outcome != XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED)
            continue;
        assert_non_null(ev->delivery->stanza);
        assert_string_equal(ev->delivery->stanza->from, BOT "/r1");
        assert_string_equal(ev->delivery->stanza->origin_id, id);
    }
    char want[128];
    snprintf(want, sizeof want, "<origin-id xmlns='urn:xmpp:sid:0' id='%s'/>", id);
    assert_sent(bot_session(f), want);
    xpb_daemon_counters c = counters(f);
    assert_int_equal(c.sends_persisted, 1);
    assert_int_equal(c.outbox, 0);
}

/* Sends accepted while offline are on disk: a new daemon on the same state
 * directory (after a crash) sends them again, same id, marked resent. */
static void test_sends_resent_after_restart(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL); /* not logged in: the sends wait in the queue */
    fake_req *q1 = send_message(f, "first");
    fake_req *q2 = send_message(f, "second");
    assert_int_equal(code_of(q1), XPB__V1__ERROR_CODE__OK);
    assert_int_equal(code_of(q2), XPB__V1__ERROR_CODE__OK);
    char id1[80], id2[80];
    snprintf(id1, sizeof id1, "%s", q1->resp->sent->stanza_id);
    snprintf(id2, sizeof id2, "%s", q2->resp->sent->stanza_id);
    assert_int_equal(counters(f).outbox, 2);
    crash_and_restart(f);
    assert_int_equal(counters(f).sends_resent, 2);
    assert_int_equal(counters(f).outbox, 2);
    login(f);
    const char *sent = fake_sent(bot_session(f));
    const char *p1 = strstr(sent, id1), *p2 = strstr(sent, id2);
    assert_non_null(p1);
    assert_non_null(p2);
    assert_true(p1 < p2); /* in their order */
    char got[16];
    int resent;
    outcomes_of(id2, got, sizeof got, &resent);
    assert_string_equal(got, "QSA");
    assert_true(resent);
    assert_int_equal(counters(f).outbox, 0);
}

/* A SendBatch with a state directory: every item's row is written (one
 * commit for the batch) before the answer, so a crash right after it loses
 * none of them: the next daemon sends all of them again. */
static void test_send_batch_kept_before_the_answer(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL); /* not logged in: the sends wait in the queue */
    xpb_test_msg m;
    xpb_test_chat_init(&m, "friend@example.com", "batch kept");
    xpb_stanza ok = m.st;
    Xpb__V1__SendStanza s0 = XPB__V1__SEND_STANZA__INIT, s1 = XPB__V1__SEND_STANZA__INIT,
                        s2 = XPB__V1__SEND_STANZA__INIT;
    s0.stanza = s1.stanza = s2.stanza = &ok;
    Xpb__V1__SendStanza *items[] = {&s0, &s1, &s2};
    Xpb__V1__SendBatch op;
    Xpb__V1__Request r;
    xpb_test_batch_init(&r, &op, BOT, items, 3);
    fake_req *q = request(f, &r);
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
    const Xpb__V1__SendBatchResult *br = q->resp->sent_batch;
    assert_int_equal(br->n_result, 3);
    char ids[3][80];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(br->result[i]->code, XPB__V1__ERROR_CODE__OK);
        assert_true(br->result[i]->queued);
        snprintf(ids[i], sizeof ids[i], "%s", br->result[i]->stanza_id);
    }
    assert_int_equal(counters(f).sends_persisted, 3);
    assert_int_equal(counters(f).outbox, 3);
    crash_and_restart(f);
    assert_int_equal(counters(f).sends_resent, 3);
    login(f);
    const char *sent = fake_sent(bot_session(f));
    for (int i = 0; i < 3; i++) assert_non_null(strstr(sent, ids[i]));
    assert_int_equal(counters(f).outbox, 0);
}

/* After a crash, a client that got no answer resends the same request id:
 * a send (or a SendBatch item) the new daemon kept and sent again is
 * answered with its stanza id and is not sent once more; an iq is not
 * remembered (its answer is the server's). */
static void test_resend_after_restart_not_sent_again(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL); /* not logged in: the sends wait in the outbox */
    fake_req *q = send_message(f, "once");
    assert_int_equal(code_of(q), XPB__V1__ERROR_CODE__OK);
    char rid[32], id[80];
    snprintf(rid, sizeof rid, "r%d", f->n_req);
    snprintf(id, sizeof id, "%s", q->resp->sent->stanza_id);
    xpb_test_msg m;
    xpb_test_chat_init(&m, "friend@example.com", "in a batch");
    xpb_stanza st = m.st;
    Xpb__V1__SendStanza s0 = XPB__V1__SEND_STANZA__INIT, s1 = XPB__V1__SEND_STANZA__INIT;
    s0.stanza = s1.stanza = &st;
    Xpb__V1__SendStanza *items[] = {&s0, &s1};
    Xpb__V1__SendBatch op;
    Xpb__V1__Request br;
    xpb_test_batch_init(&br, &op, BOT, items, 2);
    fake_req *qb = request(f, &br);
    assert_int_equal(code_of(qb), XPB__V1__ERROR_CODE__OK);
    char brid[32], bids[2][80];
    snprintf(brid, sizeof brid, "r%d", f->n_req);
    for (int i = 0; i < 2; i++)
        snprintf(bids[i], sizeof bids[i], "%s", qb->resp->sent_batch->result[i]->stanza_id);
    assert_int_equal(counters(f).outbox, 3);

    crash_and_restart(f);
    assert_int_equal(counters(f).sends_resent, 3);
    assert_non_null(fake_bus_remembered(rid));
    assert_string_equal(fake_bus_remembered(rid), id);

    /* The same bytes again, under the same ids. */
    xpb_test_chat_init(&m, "friend@example.com", "once");
    st = m.st;
    Xpb__V1__SendStanza one = XPB__V1__SEND_STANZA__INIT;
    one.stanza = &st;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.api_version = br.api_version = 1;
    r.has_api_version = br.has_api_version = 1;
    r.account = BOT;
    r.request_id = rid;
    r.op_case = XPB__V1__REQUEST__OP_SEND;
    r.send = &one;
    fake_req *again = fake_bus_request(rid, &r);
    fake_loop_idle(f->loop);
    assert_int_equal(code_of(again), XPB__V1__ERROR_CODE__OK);
    assert_string_equal(again->resp->sent->stanza_id, id);
    s0.stanza = s1.stanza = &st;
    br.request_id = brid;
    fake_req *bagain = fake_bus_request(brid, &br);
    fake_loop_idle(f->loop);
    assert_int_equal(code_of(bagain), XPB__V1__ERROR_CODE__OK);
    assert_int_equal(bagain->resp->sent_batch->n_result, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(bagain->resp->sent_batch->result[i]->code, XPB__V1__ERROR_CODE__OK);
        assert_string_equal(bagain->resp->sent_batch->result[i]->stanza_id, bids[i]);
    }
    xpb_daemon_counters c = counters(f);
    assert_int_equal(c.sends_persisted, 0); /* nothing new was kept */
    assert_int_equal(c.outbox, 3);
    login(f);
    const char *sent = fake_sent(bot_session(f));
    const char *p = strstr(sent, "<body>once</body>");
    assert_non_null(p);
    assert_null(strstr(p + 1, "<body>once</body>")); /* sent once by this daemon */
    assert_non_null(strstr(sent, id));
    for (int i = 0; i < 2; i++)
        assert_non_null(strstr(sent, bids[i]));
}

/* More kept sends than the request-id cache holds: the log names the limit
 * once, and every answer was still offered to the cache (the oldest go). */
static void test_more_kept_sends_than_the_cache_holds(void **state)
{
    fixture *f = *state;
    const unsigned n = XPB_BUS_DEFAULT_DEDUPE + 2u;
    char log[sizeof state_dir + 16];
    snprintf(log, sizeof log, "%s/log", state_dir);
    char err[256];
    assert_int_equal(xpb_log_open_file(log, err, sizeof err), 0);
    queue_max_next = n + 10;
    crash_and_restart(f); /* a daemon with the larger queue */
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(code_of(send_message(f, "many")), 0);
    crash_and_restart(f);
    queue_max_next = 0;
    assert_int_equal(counters(f).sends_resent, n);
    xpb_log_close_file();
    size_t len = 0;
    char *text = xpb_test_read_file(log, &len);
    assert_non_null(text);
    const char *w = strstr(text, "more sends kept from the last run than the request-id cache "
                                 "holds (4096 answers, bus.dedupe_entries)");
    assert_non_null(w);
    assert_null(strstr(w + 1, "more sends kept from the last run")); /* once */
    free(text);
    xpb_bus_stats st;
    xpb_bus_get_stats(fake_bus_get(), &st);
    assert_int_equal(st.dedupe_restored, n);
}

/* With the store thread: a send and a SendBatch are answered (and handed to
 * the session) only once the thread has written their rows: not from the
 * request handler, whatever the thread's speed; the loop's next turn does. */
static void test_answers_wait_for_the_store_thread(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    xpb_test_msg m;
    xpb_test_chat_init(&m, "friend@example.com", "held");
    xpb_stanza st = m.st;
    Xpb__V1__SendStanza one = XPB__V1__SEND_STANZA__INIT;
    one.stanza = &st;
    Xpb__V1__SendStanza *items[] = {&one, &one};
    Xpb__V1__SendBatch batch = XPB__V1__SEND_BATCH__INIT;
    batch.n_send = 2;
    batch.send = items;
    Xpb__V1__Request r1 = XPB__V1__REQUEST__INIT, r2 = XPB__V1__REQUEST__INIT;
    r1.account = r2.account = BOT;
    r1.api_version = r2.api_version = 1;
    r1.has_api_version = r2.has_api_version = 1;
    r1.request_id = "held-send";
    r1.op_case = XPB__V1__REQUEST__OP_SEND;
    r1.send = &one;
    r2.request_id = "held-batch";
    r2.op_case = XPB__V1__REQUEST__OP_SEND_BATCH;
    r2.send_batch = &batch;
    fake_req *q1 = fake_bus_request("held-send", &r1);
    fake_req *q2 = fake_bus_request("held-batch", &r2);
    usleep(20000); /* the thread has long written them: still no answer */
    assert_false(q1->answered);
    assert_false(q2->answered);
    assert_int_equal(counters(f).sends_persisted, 0);
    fake_loop_idle(f->loop); /* completions, then the commit timer */
    assert_int_equal(code_of(q1), XPB__V1__ERROR_CODE__OK);
    assert_int_equal(code_of(q2), XPB__V1__ERROR_CODE__OK);
    assert_int_equal(q2->resp->sent_batch->n_result, 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(q2->resp->sent_batch->result[i]->code, XPB__V1__ERROR_CODE__OK);
    assert_int_equal(counters(f).sends_persisted, 3);
    assert_int_equal(counters(f).outbox, 3);
}

/* XEP-0184: RECEIVED only from the JID the message went to (bare match). */
static void test_receipt_only_from_the_addressee(void **state)
{
    fixture *f = *state;
    open_bot(f, NULL);
    login(f);
    Xpb__V1__Text text = XPB__V1__TEXT__INIT;
    text.text = "receipt please";
    Xpb__V1__Text *bodies[] = {&text};
    xpb_stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = 1;
    st.kind = XPB__V1__KIND__KIND_MESSAGE;
    st.to = "Friend@Example.com/phone";
    st.id = "rcpt-1";
    st.n_body = 1;
    st.body = bodies;
    Xpb__V1__SendStanza op = XPB__V1__SEND_STANZA__INIT;
    op.stanza = &st;
    op.has_receipt = op.receipt = 1;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.account = BOT;
    r.op_case = XPB__V1__REQUEST__OP_SEND;
    r.send = &op;
    fake_clear_sent(bot_session(f));
    assert_int_equal(code_of(request(f, &r)), XPB__V1__ERROR_CODE__OK);
    assert_sent(bot_session(f), "<request xmlns='urn:xmpp:receipts'/>");
    fake_feed(bot_session(f), "<message from='mallory@example.com/x' to='" BOT "/r1'>"
                              "<received xmlns='urn:xmpp:receipts' id='rcpt-1'/></message>");
    char got[16];
    int resent;
    outcomes_of("rcpt-1", got, sizeof got, &resent);
    assert_string_equal(got, "QSA");
    assert_int_equal(counters(f).receipts_spoofed, 1);
    fake_feed(bot_session(f), "<message from='friend@example.com/laptop' to='" BOT "/r1'>"
                              "<received xmlns='urn:xmpp:receipts' id='rcpt-1'/></message>");
    outcomes_of("rcpt-1", got, sizeof got, &resent);
    assert_string_equal(got, "QSAR");
    assert_int_equal(counters(f).receipts_received, 1);
}

/* One bridge per state directory: a second daemon on it is refused, with
 * the directory and the holder's pid named. */
static void test_state_dir_locked(void **state)
{
    fixture *f = *state;
    (void)f;
    xpb_loop *l2 = fake_loop_new();
    xpb_config cfg;
    xpb_config_init(&cfg);
    cfg.loops = 0; /* the fake loop has no worker loops */
    cfg.state_dir = strdup(state_dir);
    char err[1024] = "";
    xpb_daemon *d2 = NULL;
    /* flock is per open file: the same process is refused like another would be */
    int rc = xpb_daemon_new(&d2, l2, &cfg, err, sizeof err);
    xpb_config_clear(&cfg);
    assert_int_equal(rc, XPB_ESTORELOCKED);
    assert_non_null(strstr(err, state_dir));
    assert_non_null(strstr(err, "in use by another xpbridge (pid "));
    fake_loop_free(l2);
}

static void test_state_names(void **state)
{
    (void)state;
    static const char *const want[XPB_MST_COUNT] = {"connecting", "online", "disconnected",
                                                    "closing", "stopped"};
    for (int i = 0; i < XPB_MST_COUNT; i++) assert_string_equal(xpb_daemon_state_name(i), want[i]);
    assert_string_equal(xpb_daemon_state_name(XPB_MST_COUNT), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_starts_a_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_account_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_while_offline_is_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_walk_in_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_acked_without_stream_management, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_send_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_batch_acked_by_the_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_name_is_normalised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iq_response_matched_to_its_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iq_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_muc_join_and_rejoin_after_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_bounded_when_the_server_is_silent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_answers_pending_and_stops_the_loop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sends_states_and_outbox, setup_state, teardown_state),
        cmocka_unit_test_setup_teardown(test_resend_after_restart_not_sent_again, setup_state,
                                        teardown_state),
        cmocka_unit_test_setup_teardown(test_more_kept_sends_than_the_cache_holds, setup_state,
                                        teardown_state),
        cmocka_unit_test_setup_teardown(test_sends_resent_after_restart, setup_state,
                                        teardown_state),
        cmocka_unit_test_setup_teardown(test_receipt_only_from_the_addressee, setup_state,
                                        teardown_state),
        cmocka_unit_test_setup_teardown(test_state_dir_locked, setup_state, teardown_state),
        cmocka_unit_test_setup_teardown(test_send_batch_kept_before_the_answer, setup_state,
                                        teardown_state),
        cmocka_unit_test_setup_teardown(test_answers_wait_for_the_store_thread, setup_state,
                                        teardown_state),
        cmocka_unit_test(test_state_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
