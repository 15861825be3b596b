/* Tests for bridge/daemon/stanza_trust.c: every inbound rule, the case it accepts and
 * the case it refuses, table-driven; the answers the bridge writes for the iq
 * requests it handles; the MAM queryid of outgoing queries. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdio.h>
#include <string.h>

#include "xpb_trust.h"
#include "xpb_error.h"

#define BARE "bot@xpb.test"
#define FULL "bot@xpb.test/res1"

/* What the fake daemon knows: pending iqs "id=peer" (peer "" = our account),
 * open MAM queries "queryid=archive" (archive "" = our own), joined rooms. */
typedef struct world {
    const char *iqs[4];
    const char *mams[4];
    const char *rooms[4];
} world;

static int split(const char *entry, const char *key, char *val, size_t len)
{
    const char *eq = strchr(entry, '=');
    size_t kl = (size_t)(eq - entry);
    if (strlen(key) != kl || strncmp(entry, key, kl) != 0) return 0;
    snprintf(val, len, "%s", eq + 1);
    return 1;
}

static char peer_buf[4][64];

static int w_iq_pending(void *ud, const char *id, size_t n, const char **peer)
{
    const world *w = ud;
    for (size_t i = 0; i < 4 && w->iqs[i]; i++) {
        if (!split(w->iqs[i], id, peer_buf[i], sizeof peer_buf[i])) continue;
        if (n-- > 0) continue;
        *peer = peer_buf[i][0] ? peer_buf[i] : NULL;
        return 1;
    }
    return 0;
}

static char archive_buf[64];

static int w_mam_query(void *ud, const char *qid, const char **archive)
{
    const world *w = ud;
    for (size_t i = 0; i < 4 && w->mams[i]; i++)
        if (split(w->mams[i], qid, archive_buf, sizeof archive_buf)) {
            *archive = archive_buf[0] ? archive_buf : NULL;
            return 1;
        }
    return 0;
}

static int w_room_joined(void *ud, const char *room)
{
    const world *w = ud;
    for (size_t i = 0; i < 4 && w->rooms[i]; i++)
        if (strcmp(w->rooms[i], room) == 0) return 1;
    return 0;
}

static const char *const passthrough[] = {"urn:example:backend"};

static void make_ctx(xpb_trust_ctx *ctx, world *w, int answer_version)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->bare = BARE;
    ctx->full = FULL;
    ctx->iq_pending = w_iq_pending;
    ctx->mam_query = w_mam_query;
    ctx->room_joined = w_room_joined;
    ctx->ud = w;
    ctx->passthrough = passthrough;
    ctx->n_passthrough = 1;
    ctx->answer_version = answer_version;
    ctx->version = "9.9.9";
}

/* One stanza through the reader and the classifier; the answer as XML. */
typedef struct run {
    const xpb_trust_ctx *ctx;
    xpb_trust_verdict v;
    char why[512];
    char answer[2048];
    int seen;
} run;

static int on_stanza(void *ud, const xpb_node *el)
{
    run *r = ud;
    r->seen++;
    xpb_trust_classify(r->ctx, el, &r->v, r->why, sizeof r->why);
    r->answer[0] = '\0';
    xpb_arena *a = xpb_arena_new(0);
    assert_non_null(a);
    xpb_stanza *st = xpb_trust_build_answer(a, r->ctx, el, &r->v);
    assert_int_equal(st != NULL, r->v.answer != XPB_ANSWER_NONE);
    if (st) {
        xpb_buf b;
        xpb_buf_init(&b, 0);
        char err[256] = "";
        xpb_record_limits lim = {0};
        assert_int_equal(xpb_stanza_to_xml(&b, st, "", &lim, err, sizeof err), 0);
        snprintf(r->answer, sizeof r->answer, "%.*s", (int)b.len, b.data);
        xpb_buf_free(&b);
    }
    xpb_arena_free(a);
    return 0;
}

static void classify(const xpb_trust_ctx *ctx, const char *xml, run *r)
{
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    xpb_reader *rd;
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    assert_int_equal(xpb_reader_new(&rd, XPB_READER_FRAGMENTS, NULL, &cb, r), 0);
    int rc = xpb_reader_feed(rd, xml, strlen(xml));
    if (rc != 0) fail_msg("reader: %s for %s", xpb_reader_error(rd), xml);
    xpb_reader_free(rd);
    assert_int_equal(r->seen, 1);
}

/* ---- the table -------------------------------------------------------------- */

typedef struct tcase {
    const char *name;
    world w;
    const char *xml;
    int publish;
    uint32_t trust;           /* exact bits */
    xpb_trust_reason reason;
    xpb_trust_answer answer;
    const char *why;          /* substring of the log sentence, NULL: "" */
    const char *answer_has;   /* substring of the answer's XML, NULL: none */
    long iq_match;
    int muc_created;
    int answer_version;
} tcase;

#define TO XPB_TRUST_TO_ACCOUNT
#define NOWORLD {.iqs = {NULL}}
#define CARBON_FWD                                                                                 \
    "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' "                     \
    "from='boss@xpb.test/phone' to='bot@xpb.test' type='chat'><body>wire money</body>"          \
    "</message></forwarded>"
#define MAM_FWD                                                                                    \
    "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' "                     \
    "from='boss@xpb.test' to='bot@xpb.test'><body>old</body></message></forwarded>"

static const tcase cases[] = {
    /* `to` (RFC 6120 §8.1.1) */
    {"to absent", NOWORLD, "<message from='a@xpb.test/x'><body>hi</body></message>", 1, TO,
     XPB_TR_NONE, 0, NULL, NULL, -1, 0, 0},
    {"to bare", NOWORLD, "<message to='bot@xpb.test' from='a@xpb.test/x'/>", 1, TO, XPB_TR_NONE, 0,
     NULL, NULL, -1, 0, 0},
    {"to full, case-folded", NOWORLD, "<message to='BOT@xpb.test/res1' from='a@xpb.test/x'/>", 1,
     TO, XPB_TR_NONE, 0, NULL, NULL, -1, 0, 0},
    {"to another resource", NOWORLD, "<message to='bot@xpb.test/other' from='a@xpb.test'/>", 0, 0,
     XPB_TR_TO_NOT_ACCOUNT, 0, "to bot@xpb.test/other is neither our bare nor our full JID",
     NULL, -1, 0, 0},
    {"to another account", NOWORLD, "<presence to='eve@xpb.test'/>", 0, 0, XPB_TR_TO_NOT_ACCOUNT,
     0, "RFC 6120 §8.1.1", NULL, -1, 0, 0},
    {"to not a JID", NOWORLD, "<message to='@@'/>", 0, 0, XPB_TR_TO_NOT_ACCOUNT, 0, NULL, NULL, -1,
     0, 0},

    /* carbons (XEP-0280 §11) */
    {"carbon received from our bare JID", NOWORLD,
     "<message from='bot@xpb.test' to='bot@xpb.test/res1'><received xmlns='urn:xmpp:carbons:2'>"
     CARBON_FWD "</received></message>",
     1, TO | XPB_TRUST_CARBON_OWN_ACCOUNT, XPB_TR_NONE, 0, NULL, NULL, -1, 0, 0},
    {"carbon sent from our bare JID", NOWORLD,
     "<message from='bot@xpb.test' to='bot@xpb.test/res1'><sent xmlns='urn:xmpp:carbons:2'>"
     CARBON_FWD "</sent></message>",
     1, TO | XPB_TRUST_CARBON_OWN_ACCOUNT, XPB_TR_NONE, 0, NULL, NULL, -1, 0, 0},
    {"carbon from another account", NOWORLD,
     "<message from='eve@evil.example' to='bot@xpb.test/res1'><received "
     "xmlns='urn:xmpp:carbons:2'>" CARBON_FWD "</received></message>",
     0, 0, XPB_TR_CARBON_FOREIGN, 0,
     "dropped carbon: outer from eve@evil.example is not our bare JID bot@xpb.test (XEP-0280 §11)",
     NULL, -1, 0, 0},
    {"carbon from our own full JID", NOWORLD,
     "<message from='bot@xpb.test/res2' to='bot@xpb.test/res1'><sent xmlns='urn:xmpp:carbons:2'>"
     CARBON_FWD "</sent></message>",
     0, 0, XPB_TR_CARBON_FOREIGN, 0, "XEP-0280 §11", NULL, -1, 0, 0},
    {"carbon without from", NOWORLD,
     "<message><received xmlns='urn:xmpp:carbons:2'>" CARBON_FWD "</received></message>", 0, 0,
     XPB_TR_CARBON_FOREIGN, 0, "outer from (none)", NULL, -1, 0, 0},

    /* roster pushes (RFC 6121 §2.1.6) */
    {"roster push without from", NOWORLD,
     "<iq type='set' id='p1'><query xmlns='jabber:iq:roster'><item jid='x@xpb.test'/></query></iq>",
     1, TO | XPB_TRUST_ROSTER_PUSH_OWN, XPB_TR_ROSTER_PUSH_ACK, XPB_ANSWER_RESULT, NULL,
     "type='result'", -1, 0, 0},
    {"roster push from our bare JID", NOWORLD,
     "<iq type='set' id='p2' from='bot@xpb.test'><query xmlns='jabber:iq:roster'>"
     "<item jid='x@xpb.test'/></query></iq>",
     1, TO | XPB_TRUST_ROSTER_PUSH_OWN, XPB_TR_ROSTER_PUSH_ACK, XPB_ANSWER_RESULT, NULL,
     "id='p2'", -1, 0, 0},
    {"roster push from another JID", NOWORLD,
     "<iq type='set' id='p3' from='eve@evil.example'><query xmlns='jabber:iq:roster'>"
     "<item jid='eve@evil.example' subscription='both'/></query></iq>",
     0, 0, XPB_TR_ROSTER_PUSH_FOREIGN, 0,
     "dropped roster push: from eve@evil.example is not our bare JID bot@xpb.test (RFC 6121 "
     "§2.1.6)",
     NULL, -1, 0, 0},
    {"roster push from the server domain", NOWORLD,
     "<iq type='set' id='p4' from='xpb.test'><query xmlns='jabber:iq:roster'/></iq>", 0, 0,
     XPB_TR_ROSTER_PUSH_FOREIGN, 0, "RFC 6121 §2.1.6", NULL, -1, 0, 0},
    {"roster push from our full JID", NOWORLD,
     "<iq type='set' id='p5' from='bot@xpb.test/res1'><query xmlns='jabber:iq:roster'/></iq>", 0,
     0, XPB_TR_ROSTER_PUSH_FOREIGN, 0, NULL, NULL, -1, 0, 0},

    /* MAM results (XEP-0313 §5) */
    {"MAM result of our own archive", {.mams = {"q1="}},
     "<message from='bot@xpb.test' to='bot@xpb.test/res1'><result xmlns='urn:xmpp:mam:2' "
     "queryid='q1' id='a1'>" MAM_FWD "</result></message>",
     1, TO | XPB_TRUST_MAM_RESULT_OURS, XPB_TR_NONE, 0, NULL, NULL, -1, 0, 0},
    {"MAM result without from, own archive", {.mams = {"q1="}},
     "<message><result xmlns='urn:xmpp:mam:2' queryid='q1' id='a1'>" MAM_FWD "</result></message>",
     1, TO | XPB_TRUST_MAM_RESULT_OURS, XPB_TR_NONE, 0, NULL, NULL, -1, 0, 0},
    {"MAM result of a room we asked", {.mams = {"q2=room@conference.xpb.test"}},
     "<message from='room@conference.xpb.test' to='bot@xpb.test/res1'><result "
     "xmlns='urn:xmpp:mam:2' queryid='q2' id='a2'>" MAM_FWD "</result></message>",
     1, TO | XPB_TRUST_MAM_RESULT_OURS, XPB_TR_NONE, 0, NULL, NULL, -1, 0, 0},
    {"MAM result with no query open", NOWORLD,
     "<message from='bot@xpb.test'><result xmlns='urn:xmpp:mam:2' queryid='q1' id='a1'>" MAM_FWD
     "</result></message>",
     0, 0, XPB_TR_MAM_NOT_OURS, 0, "queryid q1 from bot@xpb.test is no query of ours", NULL, -1,
     0, 0},
    {"MAM result with a foreign queryid", {.mams = {"q1="}},
     "<message from='bot@xpb.test'><result xmlns='urn:xmpp:mam:2' queryid='zz' id='a1'>" MAM_FWD
     "</result></message>",
     0, 0, XPB_TR_MAM_NOT_OURS, 0, "XEP-0313 §5", NULL, -1, 0, 0},
    {"MAM result from another JID", {.mams = {"q1="}},
     "<message from='eve@evil.example'><result xmlns='urn:xmpp:mam:2' queryid='q1' id='a1'>"
     MAM_FWD "</result></message>",
     0, 0, XPB_TR_MAM_WRONG_ARCHIVE, 0,
     "from eve@evil.example is not the archive bot@xpb.test we asked", NULL, -1, 0, 0},
    {"MAM result of our archive for a room query", {.mams = {"q2=room@conference.xpb.test"}},
     "<message from='bot@xpb.test'><result xmlns='urn:xmpp:mam:2' queryid='q2' id='a1'>" MAM_FWD
     "</result></message>",
     0, 0, XPB_TR_MAM_WRONG_ARCHIVE, 0, NULL, NULL, -1, 0, 0},

    /* iq responses (RFC 6120 §8.2.3) */
    {"result from the peer asked", {.iqs = {"i1=alice@xpb.test/pc"}},
     "<iq type='result' id='i1' from='alice@xpb.test/pc' to='bot@xpb.test/res1'/>", 1,
     TO | XPB_TRUST_IQ_RESPONSE_MATCHED, XPB_TR_NONE, 0, NULL, NULL, 0, 0, 0},
    {"error from the peer asked", {.iqs = {"i1=alice@xpb.test/pc"}},
     "<iq type='error' id='i1' from='alice@xpb.test/pc'><error type='cancel'>"
     "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
     1, TO | XPB_TRUST_IQ_RESPONSE_MATCHED, XPB_TR_NONE, 0, NULL, NULL, 0, 0, 0},
    {"result for a request to our account, from the domain", {.iqs = {"i2="}},
     "<iq type='result' id='i2' from='xpb.test'/>", 1, TO | XPB_TRUST_IQ_RESPONSE_MATCHED,
     XPB_TR_NONE, 0, NULL, NULL, 0, 0, 0},
    {"result for a request to our account, no from", {.iqs = {"i2="}},
     "<iq type='result' id='i2'/>", 1, TO | XPB_TRUST_IQ_RESPONSE_MATCHED, XPB_TR_NONE, 0, NULL,
     NULL, 0, 0, 0},
    {"second pending iq with the same id", {.iqs = {"i3=a@xpb.test", "i3=b@xpb.test"}},
     "<iq type='result' id='i3' from='b@xpb.test'/>", 1, TO | XPB_TRUST_IQ_RESPONSE_MATCHED,
     XPB_TR_NONE, 0, NULL, NULL, 1, 0, 0},
    {"result from another JID", {.iqs = {"i1=alice@xpb.test/pc"}},
     "<iq type='result' id='i1' from='eve@evil.example'/>", 0, 0, XPB_TR_IQ_RESPONSE_WRONG_PEER, 0,
     "id i1 is pending for another JID, not eve@evil.example", NULL, -1, 0, 0},
    {"result without from for a request to a peer", {.iqs = {"i1=alice@xpb.test/pc"}},
     "<iq type='result' id='i1'/>", 0, 0, XPB_TR_IQ_RESPONSE_WRONG_PEER, 0, NULL, NULL, -1, 0, 0},
    {"result for no pending iq", NOWORLD, "<iq type='result' id='nope' from='a@xpb.test'/>", 1, TO,
     XPB_TR_IQ_RESPONSE_UNMATCHED, 0, NULL, NULL, -1, 0, 0},
    {"iq without id", NOWORLD, "<iq type='result' from='a@xpb.test'/>", 0, 0, XPB_TR_IQ_NO_ID, 0,
     "no id (RFC 6120 §8.1.3)", NULL, -1, 0, 0},

    /* MUC self-presence (XEP-0045 §7.2.2, §10.1.1) */
    {"201 from a room we joined", {.rooms = {"room@conference.xpb.test"}},
     "<presence from='room@conference.xpb.test/bot'><x xmlns='http://jabber.org/protocol/muc#user'>"
     "<item affiliation='owner' role='moderator'/><status code='110'/><status code='201'/></x>"
     "</presence>",
     1, TO | XPB_TRUST_MUC_ROOM_JOINED, XPB_TR_NONE, 0, NULL, NULL, -1, 1, 0},
    {"110 from a room we joined", {.rooms = {"room@conference.xpb.test"}},
     "<presence from='room@conference.xpb.test/bot'><x xmlns='http://jabber.org/protocol/muc#user'>"
     "<status code='110'/></x></presence>",
     1, TO | XPB_TRUST_MUC_ROOM_JOINED, XPB_TR_NONE, 0, NULL, NULL, -1, 0, 0},
    {"201 from a room we never joined", {.rooms = {"room@conference.xpb.test"}},
     "<presence from='trap@conference.evil.example/bot'><x "
     "xmlns='http://jabber.org/protocol/muc#user'><status code='201'/><status code='110'/></x>"
     "</presence>",
     1, TO, XPB_TR_MUC_SELF_NOT_JOINED, 0, "a room we never joined", NULL, -1, 0, 0},
    {"groupchat from a joined room", {.rooms = {"room@conference.xpb.test"}},
     "<message type='groupchat' from='room@conference.xpb.test/alice'><body>x</body></message>", 1,
     TO | XPB_TRUST_MUC_ROOM_JOINED, XPB_TR_NONE, 0, NULL, NULL, -1, 0, 0},
    {"groupchat from another room", {.rooms = {"room@conference.xpb.test"}},
     "<message type='groupchat' from='other@conference.xpb.test/alice'><body>x</body></message>",
     1, TO, XPB_TR_NONE, 0, NULL, NULL, -1, 0, 0},

    /* iq get/set the bridge answers (RFC 6120 §8.2.3, §8.4) */
    {"ping", NOWORLD, "<iq type='get' id='g1' from='xpb.test'><ping xmlns='urn:xmpp:ping'/></iq>", 0,
     TO, XPB_TR_IQ_PING, XPB_ANSWER_RESULT, NULL, "<iq xmlns='jabber:client' type='result' "
     "id='g1' to='xpb.test'/>", -1, 0, 0},
    {"disco#info", NOWORLD,
     "<iq type='get' id='g2' from='alice@xpb.test/pc'><query "
     "xmlns='http://jabber.org/protocol/disco#info'/></iq>",
     0, TO, XPB_TR_IQ_DISCO_INFO, XPB_ANSWER_DISCO_INFO, NULL,
     "<identity category='client' type='bot' name='xpbridge'/>", -1, 0, 0},
    {"disco#info lists passthrough namespaces", NOWORLD,
     "<iq type='get' id='g2' from='alice@xpb.test/pc'><query "
     "xmlns='http://jabber.org/protocol/disco#info'/></iq>",
     0, TO, XPB_TR_IQ_DISCO_INFO, XPB_ANSWER_DISCO_INFO, NULL,
     "<feature var='urn:example:backend'/>", -1, 0, 0},
    {"disco#info with a node", NOWORLD,
     "<iq type='get' id='g3' from='alice@xpb.test/pc'><query "
     "xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>",
     0, TO, XPB_TR_IQ_DISCO_NODE, XPB_ANSWER_ITEM_NOT_FOUND, NULL, "<item-not-found", -1, 0, 0},
    {"version, answered when configured", NOWORLD,
     "<iq type='get' id='g4' from='alice@xpb.test/pc'><query xmlns='jabber:iq:version'/></iq>", 0,
     TO, XPB_TR_IQ_VERSION, XPB_ANSWER_VERSION, NULL,
     "<query xmlns='jabber:iq:version'><name>xpbridge</name><version>9.9.9</version></query>",
     -1, 0, 1},
    {"version, off by default", NOWORLD,
     "<iq type='get' id='g5' from='alice@xpb.test/pc'><query xmlns='jabber:iq:version'/></iq>", 0,
     TO, XPB_TR_IQ_UNHANDLED, XPB_ANSWER_SERVICE_UNAVAILABLE, "no handler for jabber:iq:version",
     "<error type='cancel'><service-unavailable", -1, 0, 0},
    {"unknown get", NOWORLD,
     "<iq type='get' id='g6' from='alice@xpb.test/pc'><query xmlns='urn:example:unknown'/></iq>",
     0, TO, XPB_TR_IQ_UNHANDLED, XPB_ANSWER_SERVICE_UNAVAILABLE, "RFC 6120 §8.4",
     "to='alice@xpb.test/pc'", -1, 0, 0},
    {"unknown set", NOWORLD,
     "<iq type='set' id='g7' from='alice@xpb.test/pc'><x xmlns='urn:example:unknown'/></iq>", 0,
     TO, XPB_TR_IQ_UNHANDLED, XPB_ANSWER_SERVICE_UNAVAILABLE, NULL, "type='error'", -1, 0, 0},
    {"passthrough get goes to backends", NOWORLD,
     "<iq type='get' id='g8' from='alice@xpb.test/pc'><q xmlns='urn:example:backend'/></iq>", 1,
     TO, XPB_TR_NONE, 0, NULL, NULL, -1, 0, 0},
    {"get without a child", NOWORLD, "<iq type='get' id='g9' from='alice@xpb.test/pc'/>", 0, TO,
     XPB_TR_IQ_BAD_PAYLOAD, XPB_ANSWER_BAD_REQUEST, "not exactly one child",
     "<error type='modify'><bad-request", -1, 0, 0},
    {"set with two children", NOWORLD,
     "<iq type='set' id='g10'><a xmlns='urn:x'/><b xmlns='urn:x'/></iq>", 0, TO,
     XPB_TR_IQ_BAD_PAYLOAD, XPB_ANSWER_BAD_REQUEST, NULL, NULL, -1, 0, 0},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const tcase *c = &cases[i];
        world w = c->w;
        xpb_trust_ctx ctx;
        make_ctx(&ctx, &w, c->answer_version);
        run r;
        classify(&ctx, c->xml, &r);
        const xpb_trust_verdict *v = &r.v;
        if (v->publish != c->publish || v->trust != c->trust || v->reason != c->reason ||
            v->answer != c->answer || v->iq_match != c->iq_match ||
            v->muc_created != c->muc_created)
            fail_msg("case \"%s\": got publish %d trust %#x reason %s answer %d iq_match %ld "
                     "muc_created %d; want %d %#x %s %d %ld %d (why: %s)",
                     c->name, v->publish, v->trust, xpb_trust_reason_name(v->reason), v->answer,
                     v->iq_match, v->muc_created, c->publish, c->trust,
                     xpb_trust_reason_name(c->reason), c->answer, c->iq_match, c->muc_created,
                     r.why);
        if (c->why && !strstr(r.why, c->why))
            fail_msg("case \"%s\": log \"%s\" lacks \"%s\"", c->name, r.why, c->why);
        if (!c->why && c->reason == XPB_TR_NONE && r.why[0])
            fail_msg("case \"%s\": unexpected log \"%s\"", c->name, r.why);
        if (c->answer_has && !strstr(r.answer, c->answer_has))
            fail_msg("case \"%s\": answer \"%s\" lacks \"%s\"", c->name, r.answer, c->answer_has);
    }
}

/* No callbacks at all: nothing is pending, no room joined, no MAM query. */
static void test_empty_daemon(void **state)
{
    (void)state;
    xpb_trust_ctx ctx = {.bare = BARE};
    run r;
    classify(&ctx, "<message from='bot@xpb.test'><result xmlns='urn:xmpp:mam:2' queryid='q'/>"
                   "</message>",
             &r);
    assert_int_equal(r.v.reason, XPB_TR_MAM_NOT_OURS);
    assert_false(r.v.publish);
    classify(&ctx, "<iq type='result' id='x' to='bot@xpb.test/anything'/>", &r);
    assert_int_equal(r.v.reason, XPB_TR_TO_NOT_ACCOUNT); /* no full JID known yet */
    classify(&ctx, "<iq type='result' id='x' to='bot@xpb.test'/>", &r);
    assert_int_equal(r.v.reason, XPB_TR_IQ_RESPONSE_UNMATCHED);
    assert_true(r.v.publish);
    classify(&ctx, "<presence from='r@c.xpb.test/me'><x xmlns='http://jabber.org/protocol/muc#user'>"
                   "<status code='110'/><status code='201'/></x></presence>",
             &r);
    assert_int_equal(r.v.reason, XPB_TR_MUC_SELF_NOT_JOINED);
    assert_false(r.v.muc_created);
}

static void test_peer_matches(void **state)
{
    (void)state;
    xpb_trust_ctx ctx = {.bare = BARE, .full = FULL};
    static const struct {
        const char *peer, *from;
        int ok;
    } t[] = {
        {NULL, NULL, 1},           {NULL, "bot@xpb.test", 1},  {NULL, "xpb.test", 1},
        {NULL, FULL, 1},           {NULL, "bot@xpb.test/x", 0}, {NULL, "eve@xpb.test", 0},
        {BARE, "xpb.test", 1},     {"a@xpb.test/r", "a@xpb.test/r", 1},
        {"a@xpb.test/r", "A@xpb.test/r", 1}, {"a@xpb.test/r", "a@xpb.test", 0},
        {"a@xpb.test/r", NULL, 0}, {"xpb.test", "xpb.test", 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (xpb_trust_peer_matches(&ctx, t[i].peer, t[i].from) != t[i].ok)
            fail_msg("peer %s from %s: want %d", t[i].peer ? t[i].peer : "(none)",
                     t[i].from ? t[i].from : "(none)", t[i].ok);
}

static void test_mam_queryid(void **state)
{
    (void)state;
    Xpb__V1__Attribute qa = XPB__V1__ATTRIBUTE__INIT, *qap = &qa;
    qa.name = "queryid";
    qa.value = "f27";
    Xpb__V1__Element q = XPB__V1__ELEMENT__INIT, *qp = &q;
    q.ns = "urn:xmpp:mam:2";
    q.name = "query";
    xpb_stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = st.has_type = 1;
    st.kind = XPB__V1__KIND__KIND_IQ;
    st.type = XPB__V1__STANZA_TYPE__TYPE_SET;
    st.n_extension = 1;
    st.extension = &qp;
    const char *qid = "unset";
    assert_int_equal(xpb_trust_mam_queryid(&st, &qid), 1);
    assert_string_equal(qid, ""); /* no queryid attribute */
    q.n_attr = 1;
    q.attr = &qap;
    assert_int_equal(xpb_trust_mam_queryid(&st, &qid), 1);
    assert_string_equal(qid, "f27");
    q.ns = NULL; /* the dictionary form of the namespace */
    q.has_ns_id = 1;
    q.ns_id = xpb_ns_id("urn:xmpp:mam:2");
    assert_true(q.ns_id != 0);
    assert_int_equal(xpb_trust_mam_queryid(&st, &qid), 1);
    st.type = XPB__V1__STANZA_TYPE__TYPE_GET; /* XEP-0313 §4: a query is a set */
    assert_int_equal(xpb_trust_mam_queryid(&st, &qid), 0);
    st.type = XPB__V1__STANZA_TYPE__TYPE_SET;
    q.ns_id = xpb_ns_id("jabber:iq:roster");
    assert_int_equal(xpb_trust_mam_queryid(&st, &qid), 0);
}

static void test_reason_names(void **state)
{
    (void)state;
    for (int r = 0; r < XPB_TR_COUNT; r++) {
        assert_non_null(xpb_trust_reason_name(r));
        assert_non_null(xpb_trust_reason_action(r));
        for (int k = 0; k < r; k++) /* distinct metric labels */
            assert_true(strcmp(xpb_trust_reason_name(r), xpb_trust_reason_name(k)) != 0);
    }
    assert_string_equal(xpb_trust_reason_action(XPB_TR_CARBON_FOREIGN), "dropped");
    assert_string_equal(xpb_trust_reason_action(XPB_TR_IQ_UNHANDLED), "answered");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_empty_daemon),
        cmocka_unit_test(test_peer_matches),
        cmocka_unit_test(test_mam_queryid),
        cmocka_unit_test(test_reason_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
