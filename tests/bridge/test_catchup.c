/* Tests for bridge/daemon/catchup.c: the daemon with a real state directory
 * on the fake bus (fake_bus.c) and fake loop (fake_loop.c), a scripted server
 * answering its XEP-0313 queries. First run (no history, marker from the
 * newest id), paging after the marker with from_archive events, stanza-id
 * de-duplication both ways, live ids moving the marker, a refusing archive,
 * the item-not-found fallback by time, the page bound, and a restart that
 * resumes a caught-up stream. */
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

#include "fake_bus.h"
#include "fake_loop.h"
#include "xpb_config.h"
#include "xpb_daemon.h"
#include "xpb_session.h"
#include "xpb_store.h"

#define BOT "bot@example.com"
#define SERVER_HEADER                                                                              \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                                   \
    "xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='example.com' version='1.0'>"
#define FEATURES(x) "<stream:features>" x "</stream:features>"
#define F_STARTTLS "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
#define F_PLAIN                                                                                    \
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"            \
    "</mechanisms>"
#define F_BIND "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"

static char g_dir[64];

typedef struct fixture {
    xpb_loop *loop;
    xpb_daemon *d;
    int n_req;
} fixture;

static void daemon_up(fixture *f, unsigned max_pages)
{
    f->loop = fake_loop_new();
    assert_non_null(f->loop);
    xpb_config cfg;
    xpb_config_init(&cfg);
    cfg.loops = 0; /* the fake loop has no worker loops */
    cfg.allow_inline_credentials = 1;
    cfg.state_dir = strdup(g_dir);
    if (max_pages) cfg.mam_max_pages = max_pages;
    char err[512] = "";
    int rc = xpb_daemon_new(&f->d, f->loop, &cfg, err, sizeof err);
    xpb_config_clear(&cfg);
    if (rc != 0) fail_msg("xpb_daemon_new: %s", err);
    fake_loop_set_settle(f->loop, xpb_daemon_settle, f->d);
}

static void daemon_down(fixture *f)
{
    xpb_daemon_free(f->d);
    fake_loop_free(f->loop);
    fake_bus_reset();
    f->d = NULL;
    f->loop = NULL;
}

static int setup(void **state)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/xpb-catchup-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->d) daemon_down(f);
    free(f);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void open_bot(fixture *f)
{
    Xpb__V1__OpenSession op = XPB__V1__OPEN_SESSION__INIT;
    op.jid = BOT;
    op.password = "pencil";
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.account = BOT;
    r.op_case = XPB__V1__REQUEST__OP_OPEN;
    r.open = &op;
    r.api_version = 1;
    r.has_api_version = 1;
    char id[32];
    snprintf(id, sizeof id, "r%d", ++f->n_req);
    r.request_id = id;
    assert_non_null(fake_bus_request(id, &r));
    fake_loop_idle(f->loop);
}

static xpb_loop_session *bot(fixture *f)
{
    xpb_loop_session *ls = fake_loop_session(f->loop, BOT);
    assert_non_null(ls);
    return ls;
}

/* TCP, STARTTLS, PLAIN, then the stream's features after SASL (what the
 * session answers them with is left in fake_sent). */
static xpb_loop_session *through_sasl(fixture *f, const char *features)
{
    open_bot(f);
    xpb_loop_session *ls = bot(f);
    xpb_session *s = xpb_loop_session_get(ls);
    xpb_session_on_connected(s, 0);
    fake_feed(ls, SERVER_HEADER FEATURES(F_STARTTLS F_PLAIN));
    fake_feed(ls, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    xpb_session_on_tls_ready(s, NULL, NULL, 0);
    fake_feed(ls, SERVER_HEADER FEATURES(F_PLAIN));
    fake_feed(ls, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    fake_clear_sent(ls);
    fake_feed(ls, features);
    return ls;
}

/* Answers the bind the session just sent with BOT/r1, and with <enabled
 * id=sm_id/> when sm_id is not NULL (XEP-0198). */
static void answer_bind(xpb_loop_session *ls, const char *sm_id)
{
    const char *p = strstr(fake_sent(ls), "id='xpb-bind-");
    if (!p) fail_msg("no bind sent: %s", fake_sent(ls));
    char id[64], enabled[128] = "", buf[512];
    p += strlen("id='");
    snprintf(id, sizeof id, "%.*s", (int)(strchr(p, '\'') - p), p);
    if (sm_id)
        snprintf(enabled, sizeof enabled, "<enabled xmlns='urn:xmpp:sm:3' id='%s' resume='true'/>",
                 sm_id);
    fake_clear_sent(ls);
    snprintf(buf, sizeof buf,
             "<iq type='result' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
             "<jid>" BOT "/r1</jid></bind></iq>%s",
             id, enabled);
    fake_feed(ls, buf);
}

/* TCP, STARTTLS, PLAIN, bind: ONLINE as BOT/r1, a fresh bind. */
static void login(fixture *f)
{
    xpb_loop_session *ls = through_sasl(f, SERVER_HEADER FEATURES(F_BIND));
    answer_bind(ls, NULL);
    assert_int_equal(xpb_session_get_state(xpb_loop_session_get(ls)), XPB_SS_ONLINE);
    fake_loop_idle(f->loop);
}

/* The value of attribute name in the last query the bridge sent. */
static void last_attr(xpb_loop_session *ls, const char *before, const char *name, char *out,
                      size_t len)
{
    const char *q = strstr(fake_sent(ls), before);
    if (!q) fail_msg("no '%s' sent; sent: %s", before, fake_sent(ls));
    char key[32];
    snprintf(key, sizeof key, "%s='", name);
    const char *p = NULL;
    for (const char *s = fake_sent(ls); (s = strstr(s, key)); s++)
        p = s;
    assert_non_null(p);
    p += strlen(key);
    snprintf(out, len, "%.*s", (int)(strchr(p, '\'') - p), p);
}

typedef struct query {
    char id[64], qid[64];
} query;

/* The MAM query just sent: its iq id and queryid; the sent text is kept. */
static query sent_query(xpb_loop_session *ls, const char *must_contain)
{
    query q;
    const char *sent = fake_sent(ls);
    if (!strstr(sent, must_contain)) fail_msg("no '%s' in the query: %s", must_contain, sent);
    const char *iq = strstr(sent, "<iq ");
    assert_non_null(iq);
    const char *id = strstr(iq, " id='");
    assert_non_null(id);
    id += 5;
    snprintf(q.id, sizeof q.id, "%.*s", (int)(strchr(id, '\'') - id), id);
    last_attr(ls, "urn:xmpp:mam:2", "queryid", q.qid, sizeof q.qid);
    return q;
}

static void feed_result(xpb_loop_session *ls, const query *q, const char *rid, const char *body)
{
    char buf[1024];
    snprintf(buf, sizeof buf,
             "<message to='" BOT "/r1'><result xmlns='urn:xmpp:mam:2' queryid='%s' id='%s'>"
             "<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' "
             "stamp='2026-12-06T01:02:03.123Z'/><message xmlns='jabber:client' "
             "from='alice@example.com/x' to='" BOT "' type='chat'><body>%s</body></message>"
             "</forwarded></result></message>",
             q->qid, rid, body);
    fake_feed(ls, buf);
}

static void feed_fin(xpb_loop_session *ls, const query *q, const char *first, const char *last,
                     int complete)
{
    char buf[1024];
    snprintf(buf, sizeof buf,
             "<iq type='result' id='%s'><fin xmlns='urn:xmpp:mam:2'%s><set "
             "xmlns='http://jabber.org/protocol/rsm'><first>%s</first><last>%s</last></set>"
             "</fin></iq>",
             q->id, complete ? " complete='true'" : "", first, last);
    fake_clear_sent(ls);
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

static void marker_stream(char *m, size_t mlen, char *stream, size_t slen);

static void marker(char *out, size_t len)
{
    char stream[256];
    marker_stream(out, len, stream, sizeof stream);
}

/* Message events with body text, in order, as "body[A]" (A: archived). */
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

static xpb_daemon_counters counters(fixture *f)
{
    xpb_daemon_counters c;
    xpb_daemon_get_counters(f->d, &c);
    return c;
}

/* Run 1 learns the newest id (no history); run 2 pages after it. */
static void test_first_run_then_catch_up(void **state)
{
    fixture *f = *state;
    char m[512], got[1024];
    daemon_up(f, 0);
    login(f);
    xpb_loop_session *ls = bot(f);
    query q = sent_query(ls, "<before/>");
    assert_null(strstr(fake_sent(ls), "<after>"));
    feed_result(ls, &q, "A1", "old news");
    feed_fin(ls, &q, "A1", "A1", 1);
    bodies(got, sizeof got);
    assert_string_equal(got, "");                         /* no history on the first run */
    assert_null(strstr(fake_sent(ls), "urn:xmpp:mam:2")); /* nothing more asked */
    daemon_down(f);
    marker(m, sizeof m);
    assert_string_equal(m, "2026-12-06T01:02:03Z A1");

    daemon_up(f, 0);
    login(f);
    ls = bot(f);
    q = sent_query(ls, "<after>A1</after>");
    feed_result(ls, &q, "X1", "one");
    feed_result(ls, &q, "X2", "two");
    feed_fin(ls, &q, "X1", "X2", 0);
    query q2 = sent_query(ls, "<after>X2</after>"); /* the next page */
    feed_result(ls, &q2, "X3", "three");
    feed_live(ls, "X3", "three"); /* the same message live: dropped */
    feed_live(ls, "L1", "live one");
    feed_fin(ls, &q2, "X3", "X3", 1);
    feed_live(ls, "X1", "one"); /* archived first, then live: dropped */
    feed_live(ls, "L2", "live two");
    bodies(got, sizeof got);
    assert_string_equal(got, "one[A] two[A] three[A] live one live two");
    const Xpb__V1__Event *ev = NULL;
    for (size_t i = 0; i < fake_bus_n_events() && !ev; i++)
        if (fake_bus_event(i)->from_archive) ev = fake_bus_event(i);
    assert_non_null(ev);
    assert_string_equal(ev->archive, BOT);
    assert_non_null(ev->stanza->delay);
    assert_string_equal(ev->stanza->delay->stamp, "2026-12-06T01:02:03.123Z");
    assert_int_equal(ev->stanza->n_stanza_id, 1);
    assert_string_equal(ev->stanza->stanza_id[0]->id, "X1");
    assert_string_equal(ev->stanza->stanza_id[0]->by, BOT);
    xpb_daemon_counters c = counters(f);
    assert_true(c.catchup_on);
    assert_int_equal(c.catchup_runs, 1);
    assert_int_equal(c.catchup_messages, 3);
    assert_int_equal(c.catchup_duplicates, 2);
    /* Caught up: the live id after it moves the marker once written. */
    assert_true(fake_loop_fire(f->loop, 200) >= 1);
    daemon_down(f);
    marker(m, sizeof m);
    assert_non_null(strstr(m, " L2"));
}

static void first_run_marker(fixture *f, const char *id)
{
    daemon_up(f, 0);
    login(f);
    xpb_loop_session *ls = bot(f);
    query q = sent_query(ls, "<before/>");
    feed_result(ls, &q, id, "x");
    feed_fin(ls, &q, id, id, 1);
    daemon_down(f);
}

static void test_refusing_archive_leaves_the_session(void **state)
{
    fixture *f = *state;
    daemon_up(f, 0);
    login(f);
    xpb_loop_session *ls = bot(f);
    query q = sent_query(ls, "<before/>");
    char buf[512];
    snprintf(buf, sizeof buf,
             "<iq type='error' id='%s'><error type='cancel'><feature-not-implemented "
             "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
             q.id);
    fake_clear_sent(ls);
    fake_feed(ls, buf);
    assert_int_equal(xpb_session_get_state(xpb_loop_session_get(ls)), XPB_SS_ONLINE);
    assert_int_equal(counters(f).catchup_refused, 1);
    assert_null(strstr(fake_sent(ls), "urn:xmpp:mam:2"));
    feed_live(ls, "L1", "still here");
    char got[256];
    bodies(got, sizeof got);
    assert_string_equal(got, "still here");
}

/* XEP-0313 §4.1.1: the marker is unknown: ask by time from its stamp - 5 min. */
static void test_unknown_marker_falls_back_to_time(void **state)
{
    fixture *f = *state;
    first_run_marker(f, "GONE");
    daemon_up(f, 0);
    login(f);
    xpb_loop_session *ls = bot(f);
    query q = sent_query(ls, "<after>GONE</after>");
    char buf[512];
    snprintf(buf, sizeof buf,
             "<iq type='error' id='%s'><error type='cancel'><item-not-found "
             "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
             q.id);
    fake_clear_sent(ls);
    fake_feed(ls, buf);
    query q2 = sent_query(ls, "<field var='start'><value>2026-12-06T00:57:03Z</value></field>");
    assert_null(strstr(fake_sent(ls), "<after>"));
    feed_result(ls, &q2, "T1", "by time");
    feed_fin(ls, &q2, "T1", "T1", 1);
    char got[256];
    bodies(got, sizeof got);
    assert_string_equal(got, "by time[A]");
    assert_int_equal(counters(f).catchup_refused, 0);
}

/* mam.max_pages: the run stops there, counted; the marker stays at the bound. */
static void test_bound(void **state)
{
    fixture *f = *state;
    first_run_marker(f, "B0");
    daemon_up(f, 1);
    login(f);
    xpb_loop_session *ls = bot(f);
    query q = sent_query(ls, "<after>B0</after>");
    feed_result(ls, &q, "B1", "page one");
    feed_fin(ls, &q, "B1", "B1", 0);
    assert_null(strstr(fake_sent(ls), "urn:xmpp:mam:2")); /* no second page */
    assert_int_equal(counters(f).catchup_bounded, 1);
    feed_live(ls, "B9", "live"); /* not caught up: does not move the marker */
    fake_loop_fire(f->loop, 200);
    daemon_down(f);
    char m[256];
    marker(m, sizeof m);
    assert_non_null(strstr(m, " B1"));
}

/* A carbon (XEP-0280) seen live carries our archive's stanza-id in the
 * forwarded message: its archived copy is not published again. A result of
 * a query the bridge no longer runs is dropped, not published. */
static void test_carbon_then_archive(void **state)
{
    fixture *f = *state;
    first_run_marker(f, "C0");
    daemon_up(f, 0);
    login(f);
    xpb_loop_session *ls = bot(f);
    query q = sent_query(ls, "<after>C0</after>");
    fake_feed(ls, "<message from='" BOT "' to='" BOT "/r1'><received xmlns='urn:xmpp:carbons:2'>"
                  "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' "
                  "from='alice@example.com/x' to='" BOT "/other' type='chat'><body>one</body>"
                  "<stanza-id xmlns='urn:xmpp:sid:0' by='" BOT "' id='C1'/></message>"
                  "</forwarded></received></message>");
    feed_result(ls, &q, "C1", "one");
    feed_result(ls, &q, "C2", "two");
    feed_fin(ls, &q, "C1", "C2", 1);
    query stale = q;
    snprintf(stale.qid, sizeof stale.qid, "not-ours-any-more");
    feed_result(ls, &stale, "C3", "three"); /* no query with that id: the trust rules drop it */
    char got[256];
    bodies(got, sizeof got);
    assert_string_equal(got, "two[A]");
    xpb_daemon_counters c = counters(f);
    assert_int_equal(c.catchup_messages, 1);
    assert_int_equal(c.catchup_duplicates, 1);
    size_t carbons = 0;
    for (size_t i = 0; i < fake_bus_n_events(); i++) {
        const Xpb__V1__Event *ev = fake_bus_event(i);
        carbons += ev->body_case == XPB__V1__EVENT__BODY_STANZA && ev->stanza->carbon;
    }
    assert_int_equal(carbons, 1);
}

/* Through SASL with XEP-0198 offered; then, when previd is NULL, bind and
 * <enabled id=sm_id/> (a fresh bind), else <resumed previd=''/> (what the
 * session asks for with the state kept by the previous daemon). */
static void login_sm(fixture *f, const char *previd, const char *sm_id)
{
    xpb_loop_session *ls =
        through_sasl(f, SERVER_HEADER FEATURES(F_BIND "<sm xmlns='urn:xmpp:sm:3'/>"));
    if (previd) {
        if (!strstr(fake_sent(ls), previd)) fail_msg("no <resume/> sent: %s", fake_sent(ls));
        fake_clear_sent(ls);
        char buf[512];
        snprintf(buf, sizeof buf, "<resumed xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>", previd);
        fake_feed(ls, buf);
    } else {
        answer_bind(ls, sm_id);
    }
    assert_int_equal(xpb_session_get_state(xpb_loop_session_get(ls)), XPB_SS_ONLINE);
    fake_loop_idle(f->loop);
}

/* The marker's text and the stream it was written in while caught up. */
static void marker_stream(char *m, size_t mlen, char *stream, size_t slen)
{
    xpb_store_config sc = {.dir = g_dir};
    xpb_store *s = NULL;
    char err[256];
    assert_int_equal(xpb_store_open(&s, &sc, err, sizeof err), 0);
    m[0] = stream[0] = '\0';
    xpb_store_marker_get(s, BOT, BOT, m, mlen, stream, slen, err, sizeof err);
    xpb_store_close(s);
}

/* Killed while caught up, then restarted on the same state: the stream is
 * resumed (XEP-0198), nothing was lost in between, so the archive is still
 * caught up and live stanza-ids move the marker again (before, it stayed
 * where the old process left it until the next fresh bind, and that bind's
 * run fetched everything since: past the seen-id window, twice). A run
 * that had not finished in the resumed stream keeps the marker still. */
static void test_resumed_restart_stays_caught_up(void **state)
{
    fixture *f = *state;
    char m[256], st[256];
    daemon_up(f, 0);
    login_sm(f, NULL, "S1");
    xpb_loop_session *ls = bot(f);
    query q = sent_query(ls, "<before/>"); /* the first run: the newest id only */
    feed_result(ls, &q, "A1", "old");
    feed_fin(ls, &q, "A1", "A1", 1);
    feed_live(ls, "L1", "live one");
    assert_true(fake_loop_fire(f->loop, 200) >= 1);
    daemon_down(f); /* no clean stop: the XEP-0198 state stays for a resume */
    marker_stream(m, sizeof m, st, sizeof st);
    assert_non_null(strstr(m, " L1"));
    assert_string_equal(st, "S1");

    daemon_up(f, 0);
    login_sm(f, "S1", NULL);
    ls = bot(f);
    assert_null(strstr(fake_sent(ls), "urn:xmpp:mam:2")); /* resumed: no catch-up run */
    feed_live(ls, "L2", "live two");
    assert_true(fake_loop_fire(f->loop, 200) >= 1);
    daemon_down(f);
    marker_stream(m, sizeof m, st, sizeof st);
    assert_non_null(strstr(m, " L2"));
    assert_string_equal(st, "S1");

    /* A fresh bind (resumption refused) starts a run; killed before it ends. */
    daemon_up(f, 0);
    ls = through_sasl(f, SERVER_HEADER FEATURES(F_BIND "<sm xmlns='urn:xmpp:sm:3'/>"));
    fake_clear_sent(ls);
    fake_feed(ls, "<failed xmlns='urn:xmpp:sm:3'><item-not-found "
                  "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>");
    answer_bind(ls, "S2");
    fake_loop_idle(f->loop);
    sent_query(ls, "<after>L2</after>"); /* asked, never answered */
    assert_true(fake_loop_fire(f->loop, 200) >= 1);
    daemon_down(f);
    marker_stream(m, sizeof m, st, sizeof st);
    assert_non_null(strstr(m, " L2"));
    assert_string_equal(st, ""); /* the run did not end: not caught up in S2 */

    daemon_up(f, 0);
    login_sm(f, "S2", NULL);
    feed_live(bot(f), "L3", "live three");
    fake_loop_fire(f->loop, 200);
    daemon_down(f);
    marker_stream(m, sizeof m, st, sizeof st);
    assert_non_null(strstr(m, " L2")); /* stays: the next fresh bind asks after L2 */
}

static uint32_t kept_h(void)
{
    xpb_store_config sc = {.dir = g_dir};
    xpb_store *s = NULL;
    char err[256];
    assert_int_equal(xpb_store_open(&s, &sc, err, sizeof err), 0);
    xpb_sm_state st;
    int rc = xpb_store_sm_load(s, BOT, &st, err, sizeof err);
    xpb_store_close(s);
    return rc == 0 ? st.h_in : 0;
}

/* The XEP-0198 state of an account that received is kept within
 * XPB_DAEMON_SM_SAVE_MS, by a timer that visits the accounts marked since
 * (a list, not every account); an account closed while on that list is
 * taken off it (ASan: no use after free when the timer runs). */
static void test_sm_kept_from_the_dirty_list(void **state)
{
    fixture *f = *state;
    daemon_up(f, 0);
    login_sm(f, NULL, "S1");
    xpb_loop_session *ls = bot(f);
    query q = sent_query(ls, "<before/>");
    feed_fin(ls, &q, "", "", 1);
    feed_live(ls, "K1", "one");
    feed_live(ls, "K2", "two");
    assert_int_equal(fake_loop_fire(f->loop, XPB_DAEMON_SM_SAVE_MS), 1);
    daemon_down(f);                /* the store is the daemon's while it runs: read it after */
    assert_int_equal(kept_h(), 3); /* the <fin/> iq and two messages */

    daemon_up(f, 0);
    login_sm(f, "S1", NULL);
    ls = bot(f);
    feed_live(ls, "K3", "three"); /* on the list again */
    Xpb__V1__CloseSession cl = XPB__V1__CLOSE_SESSION__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.account = BOT;
    r.op_case = XPB__V1__REQUEST__OP_CLOSE;
    r.close = &cl;
    r.api_version = 1;
    r.has_api_version = 1;
    r.request_id = "close-1";
    assert_non_null(fake_bus_request("close-1", &r));
    xpb_session_on_disconnected(xpb_loop_session_get(ls), "gone");
    fake_loop_idle(f->loop); /* the account is reaped */
    fake_loop_fire(f->loop, XPB_DAEMON_SM_SAVE_MS);
    daemon_down(f);
    assert_int_equal(kept_h(), 0); /* closed for good: nothing to resume */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_run_then_catch_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusing_archive_leaves_the_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_marker_falls_back_to_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_carbon_then_archive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resumed_restart_stays_caught_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sm_kept_from_the_dirty_list, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
