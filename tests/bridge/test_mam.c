/* Tests for bridge/daemon/mam.c, the pure parts of archive catch-up: the
 * XEP-0313 query with its XEP-0059 paging, reading <fin/> and errors, the
 * forwarded result, the archive's stanza-id (XEP-0359), the store's marker
 * text, and the set of stanza-ids published but not yet recorded. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdio.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_mam.h"

/* ---- the query ------------------------------------------------------------------ */

static void query_xml(const xpb_mam_query *q, char *out, size_t len)
{
    xpb_arena *a = xpb_arena_new(0);
    xpb_stanza *st = NULL;
    assert_int_equal(xpb_mam_build_query(a, q, &st), 0);
    xpb_buf b;
    xpb_buf_init(&b, 0);
    char err[256] = "";
    xpb_record_limits lim = {0};
    int rc = xpb_stanza_to_xml(&b, st, "jabber:client", &lim, err, sizeof err);
    if (rc) fail_msg("xpb_stanza_to_xml: %s", err);
    snprintf(out, len, "%.*s", (int)b.len, b.data);
    xpb_buf_free(&b);
    xpb_arena_free(a);
}

#define FORM                                                                                       \
    "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"                 \
    "<value>urn:xmpp:mam:2</value></field>"

static void test_query_after_marker(void **state)
{
    (void)state;
    char xml[2048];
    xpb_mam_query q = {.id = "i1", .queryid = "q1", .max = 100, .after = "28482-98726-73623"};
    query_xml(&q, xml, sizeof xml);
    assert_string_equal(xml,
                        "<iq type='set' id='i1'><query xmlns='urn:xmpp:mam:2' queryid='q1'>" FORM
                        "</x><set xmlns='http://jabber.org/protocol/rsm'><max>100</max>"
                        "<after>28482-98726-73623</after></set></query></iq>");
}

static void test_query_room_by_time(void **state)
{
    (void)state;
    char xml[2048];
    xpb_mam_query q = {.id = "i2",
                       .to = "lounge@conference.xpb.test",
                       .queryid = "q2",
                       .max = 50,
                       .start = "2026-12-06T03:00:00Z"};
    query_xml(&q, xml, sizeof xml);
    assert_string_equal(xml, "<iq type='set' id='i2' to='lounge@conference.xpb.test'>"
                             "<query xmlns='urn:xmpp:mam:2' queryid='q2'>" FORM
                             "<field var='start'><value>2026-12-06T03:00:00Z</value></field></x>"
                             "<set xmlns='http://jabber.org/protocol/rsm'><max>50</max></set>"
                             "</query></iq>");
}

/* First run: the newest result only (XEP-0059 §2.5, <before/> = the last page). */
static void test_query_last_page(void **state)
{
    (void)state;
    char xml[2048];
    xpb_mam_query q = {.id = "i3", .queryid = "q3", .max = 1, .last_page = 1};
    query_xml(&q, xml, sizeof xml);
    assert_non_null(strstr(xml, "<set xmlns='http://jabber.org/protocol/rsm'><max>1</max>"
                                "<before/></set>"));
    assert_null(strstr(xml, "<after>"));
}

static void test_query_needs_ids(void **state)
{
    (void)state;
    xpb_arena *a = xpb_arena_new(0);
    xpb_stanza *st = NULL;
    xpb_mam_query no_qid = {.id = "i", .max = 10};
    xpb_mam_query no_id = {.queryid = "q", .max = 10};
    assert_int_equal(xpb_mam_build_query(a, &no_qid, &st), XPB_EINVAL);
    assert_int_equal(xpb_mam_build_query(a, &no_id, &st), XPB_EINVAL);
    xpb_arena_free(a);
}

/* ---- reading what comes back ------------------------------------------------------ */

typedef void (*node_fn)(const xpb_node *el, void *ud);
typedef struct with_ctx {
    node_fn fn;
    void *ud;
    int seen;
} with_ctx;

static int on_stanza(void *ud, const xpb_node *el)
{
    with_ctx *w = ud;
    w->seen++;
    w->fn(el, w->ud);
    return 0;
}

/* Parses xml (one stanza, default namespace jabber:client) and calls fn on it. */
static void with_node(const char *xml, node_fn fn, void *ud)
{
    char doc[8192];
    snprintf(doc, sizeof doc,
             "<stream:stream xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams'>%s",
             xml);
    with_ctx w = {fn, ud, 0};
    xpb_reader *rd;
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    assert_int_equal(xpb_reader_new(&rd, XPB_READER_STREAM, NULL, &cb, &w), 0);
    if (xpb_reader_feed(rd, doc, strlen(doc)) != 0)
        fail_msg("reader: %s for %s", xpb_reader_error(rd), xml);
    xpb_reader_free(rd);
    assert_int_equal(w.seen, 1);
}

typedef struct fin_case {
    const char *xml;
    int rc, is_error, complete;
    const char *condition, *first, *last;
    long count;
} fin_case;

static void check_fin(const xpb_node *el, void *ud)
{
    const fin_case *c = ud;
    xpb_mam_fin fin;
    int rc = xpb_mam_parse_fin(el, &fin);
    assert_int_equal(rc, c->rc);
    if (rc) return;
    assert_int_equal(fin.is_error, c->is_error);
    assert_string_equal(fin.condition, c->condition ? c->condition : "");
    assert_int_equal(fin.complete, c->complete);
    assert_string_equal(fin.first, c->first ? c->first : "");
    assert_string_equal(fin.last, c->last ? c->last : "");
    assert_int_equal(fin.count, c->count);
}

#define RSM "http://jabber.org/protocol/rsm"
static void test_parse_fin(void **state)
{
    (void)state;
    char long_id[400];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    char too_long[600];
    snprintf(too_long, sizeof too_long,
             "<iq type='result' id='a'><fin xmlns='urn:xmpp:mam:2'><set xmlns='" RSM "'>"
             "<last>%s</last></set></fin></iq>",
             long_id);
    const fin_case cases[] = {
        /* XEP-0313 §4.3: the last page */
        {"<iq type='result' id='a'><fin xmlns='urn:xmpp:mam:2' complete='true'><set xmlns='" RSM
         "'><first index='0'>23452-4534-1</first><last>390-2342-22</last><count>16</count>"
         "</set></fin></iq>",
         0, 0, 1, NULL, "23452-4534-1", "390-2342-22", 16},
        /* more pages to come: complete absent */
        {"<iq type='result' id='a'><fin xmlns='urn:xmpp:mam:2'><set xmlns='" RSM
         "'><first>a</first><last>b</last></set></fin></iq>",
         0, 0, 0, NULL, "a", "b", -1},
        /* an empty page: XEP-0059 §2.6, no first or last */
        {"<iq type='result' id='a'><fin xmlns='urn:xmpp:mam:2' complete='true'><set xmlns='" RSM
         "'><count>0</count></set></fin></iq>",
         0, 0, 1, NULL, NULL, NULL, 0},
        /* XEP-0313 §4.1.1: an <after/> the archive does not know */
        {"<iq type='error' id='a'><error type='cancel'><item-not-found "
         "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
         0, 1, 0, "item-not-found", NULL, NULL, -1},
        {"<iq type='error' id='a'><error type='cancel'><text "
         "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no</text><feature-not-implemented "
         "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
         0, 1, 0, "feature-not-implemented", NULL, NULL, -1},
        {"<iq type='error' id='a'/>", 0, 1, 0, "undefined-condition", NULL, NULL, -1},
        /* a result without <fin/> (a MAM v0 server), and ids over XPB_MAM_ID_MAX */
        {"<iq type='result' id='a'/>", XPB_EINVAL, 0, 0, NULL, NULL, NULL, -1},
        {too_long, XPB_EINVAL, 0, 0, NULL, NULL, NULL, -1},
        {"<message id='a'/>", XPB_EINVAL, 0, 0, NULL, NULL, NULL, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        with_node(cases[i].xml, check_fin, (void *)&cases[i]);
}

static void check_result(const xpb_node *el, void *ud)
{
    (void)ud;
    const char *qid = NULL, *id = NULL;
    const xpb_node *delay = NULL;
    const xpb_node *in = xpb_mam_result(el, &qid, &id, &delay);
    assert_non_null(in);
    assert_string_equal(in->name, "message");
    assert_string_equal(qid, "f27");
    assert_string_equal(id, "28482-98726-73623");
    assert_non_null(delay);
    assert_string_equal(xpb_node_attr(delay, "", "stamp")->value, "2010-07-10T23:08:25Z");
    /* the inner message's own stanza-id by the archive, not the forged one */
    assert_string_equal(xpb_mam_stanza_id(in, "juliet@capulet.lit"), "28482-98726-73623");
    assert_null(xpb_mam_stanza_id(in, "romeo@montague.lit"));
}

/* XEP-0313 §4.2, example 3 (with a stanza-id in the archived message). */
static void test_result(void **state)
{
    (void)state;
    with_node("<message id='aeb213' to='juliet@capulet.lit/chamber'>"
              "<result xmlns='urn:xmpp:mam:2' queryid='f27' id='28482-98726-73623'>"
              "<forwarded xmlns='urn:xmpp:forward:0'>"
              "<delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>"
              "<message xmlns='jabber:client' from='witch@shakespeare.lit' "
              "to='macbeth@shakespeare.lit'><body>Hail to thee</body>"
              "<stanza-id xmlns='urn:xmpp:sid:0' by='evil@x' id='forged'/>"
              "<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.lit' "
              "id='28482-98726-73623'/></message></forwarded></result></message>",
              check_result, NULL);
}

static void check_no_result(const xpb_node *el, void *ud)
{
    (void)ud;
    const char *qid = NULL, *id = NULL;
    const xpb_node *delay = NULL;
    assert_null(xpb_mam_result(el, &qid, &id, &delay));
    assert_null(xpb_mam_stanza_id(el, "bot@xpb.test")); /* no by */
    assert_string_equal(xpb_mam_stanza_id(el, "room@muc.xpb.test"), "r1");
}

static void test_live_message(void **state)
{
    (void)state;
    with_node("<message from='room@muc.xpb.test/nick' type='groupchat'><body>x</body>"
              "<stanza-id xmlns='urn:xmpp:sid:0' id='nobody'/>"
              "<stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.xpb.test' id='r1'/>"
              "<stanza-id xmlns='urn:other' by='bot@xpb.test' id='wrong-ns'/></message>",
              check_no_result, NULL);
}

/* ---- the marker ------------------------------------------------------------------- */

static void test_marker(void **state)
{
    (void)state;
    xpb_mam_marker m;
    char out[512];
    assert_int_equal(xpb_mam_marker_parse("2026-12-06T03:00:00Z abc-1", &m), 0);
    assert_string_equal(m.stamp, "2026-12-06T03:00:00Z");
    assert_string_equal(m.id, "abc-1");
    assert_int_equal(xpb_mam_marker_format(&m, out, sizeof out), 0);
    assert_string_equal(out, "2026-12-06T03:00:00Z abc-1");
    /* the archive was empty on the first run: a stamp, no id */
    assert_int_equal(xpb_mam_marker_parse("2026-12-06T03:00:00Z ", &m), 0);
    assert_string_equal(m.id, "");
    assert_string_equal(m.stamp, "2026-12-06T03:00:00Z");
    /* a bare id (written by hand, or an id with a space) */
    assert_int_equal(xpb_mam_marker_parse("just-an-id", &m), 0);
    assert_string_equal(m.stamp, "");
    assert_string_equal(m.id, "just-an-id");
    assert_int_equal(xpb_mam_marker_parse("not a stamp", &m), 0);
    assert_string_equal(m.id, "not a stamp");
    char big[XPB_MAM_ID_MAX + 10];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(xpb_mam_marker_parse(big, &m), XPB_EINVAL);
    assert_int_equal(xpb_mam_marker_parse("2026-12-06T03:00:00Z abc-1", &m), 0);
    assert_int_equal(xpb_mam_marker_format(&m, out, 8), XPB_EINVAL); /* does not fit */
}

static void test_stamp(void **state)
{
    (void)state;
    char s[XPB_MAM_STAMP_LEN + 1];
    xpb_mam_stamp(1796529805, s);
    assert_string_equal(s, "2026-12-06T04:03:25Z");
    assert_int_equal(xpb_mam_stamp_parse(s), 1796529805);
    assert_int_equal(xpb_mam_stamp_parse("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(xpb_mam_stamp_parse("2026-12-06T04:03:25.398116Z"), 1796529805);
    assert_int_equal(xpb_mam_stamp_parse("2026-12-06T04:03:25.Z"), 1796529805);
    assert_int_equal(xpb_mam_stamp_parse("2026-12-06T04:03:25+01:00"), -1); /* offsets unread */
    assert_int_equal(xpb_mam_stamp_parse("2026-12-06T04:03:25Zjunk"), -1);
    assert_int_equal(xpb_mam_stamp_parse("2026-12-06T04:03:25"), -1);
    assert_int_equal(xpb_mam_stamp_parse("yesterday"), -1);
}

/* ---- ids published, not yet recorded: the de-duplication decision ------------------ */

static void test_pending(void **state)
{
    (void)state;
    static xpb_mam_pending p; /* 512 entries: keep it off the stack */
    assert_int_equal(xpb_mam_pending_add(&p, "bot@x", "bot@x", "id1", NULL, NULL), 0);
    assert_int_equal(xpb_mam_pending_add(&p, "bot@x", "room@m", "id1", NULL, NULL), 0);
    assert_true(xpb_mam_pending_has(&p, "bot@x", "bot@x", "id1"));
    assert_true(xpb_mam_pending_has(&p, "bot@x", "room@m", "id1"));
    assert_false(xpb_mam_pending_has(&p, "bot@x", "bot@x", "id2"));   /* another id */
    assert_false(xpb_mam_pending_has(&p, "bot2@x", "bot@x", "id1"));  /* another account */
    assert_false(xpb_mam_pending_has(&p, "bot@x", "other@m", "id1")); /* another archive */
    /* Markers: an id with its marker, then a marker alone replaces the newest. */
    assert_int_equal(xpb_mam_pending_add(&p, "bot@x", "bot@x", "id2", "T id2", NULL), 0);
    assert_int_equal(xpb_mam_pending_add(&p, "bot@x", "bot@x", "id3", "T id3", "sm-1"), 0);
    assert_int_equal(xpb_mam_pending_add(&p, "bot@x", "bot@x", NULL, "T id9", NULL), 0);
    assert_int_equal(p.n, 4);
    assert_string_equal(p.ent[2].marker, "T id2");
    assert_null(p.ent[2].stream);
    assert_string_equal(p.ent[3].marker, "T id9"); /* and its stream with it: none now */
    assert_null(p.ent[3].stream);
    assert_int_equal(xpb_mam_pending_add(&p, "bot@x", "bot@x", NULL, "T id10", "sm-2"), 0);
    assert_string_equal(p.ent[3].marker, "T id10");
    assert_string_equal(p.ent[3].stream, "sm-2");
    assert_int_equal(xpb_mam_pending_add(&p, "bot@x", "bot@x", "id11", NULL, "sm-3"), 0);
    assert_null(p.ent[4].stream); /* a stream only goes with a marker */
    assert_int_equal(p.n, 5);
    assert_false(xpb_mam_pending_has(&p, "bot@x", "bot@x", NULL));
    xpb_mam_pending_clear(&p);
    assert_int_equal(p.n, 0);
    assert_false(xpb_mam_pending_has(&p, "bot@x", "bot@x", "id1"));
    /* Bounded: full at XPB_MAM_PENDING_MAX, then the caller writes it out. */
    char id[32];
    for (unsigned i = 0; i < XPB_MAM_PENDING_MAX; i++) {
        snprintf(id, sizeof id, "n%u", i);
        assert_int_equal(xpb_mam_pending_add(&p, "bot@x", "bot@x", id, NULL, NULL), 0);
    }
    assert_int_equal(xpb_mam_pending_add(&p, "bot@x", "bot@x", "one-more", NULL, NULL),
                     XPB_ETOOBIG);
    assert_true(xpb_mam_pending_has(&p, "bot@x", "bot@x", "n511"));
    xpb_mam_pending_clear(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_after_marker),
        cmocka_unit_test(test_query_room_by_time),
        cmocka_unit_test(test_query_last_page),
        cmocka_unit_test(test_query_needs_ids),
        cmocka_unit_test(test_parse_fin),
        cmocka_unit_test(test_result),
        cmocka_unit_test(test_live_message),
        cmocka_unit_test(test_marker),
        cmocka_unit_test(test_stamp),
        cmocka_unit_test(test_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
