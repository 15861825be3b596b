/* xpb-archive's archive (tools/xpb-archive/): de-duplication across the ways
 * one message arrives (live, carbon, server archive, our own delivery),
 * corrections and retractions, the schema checks, and what a full disk
 * leaves behind. Events are made from XML stanzas, as the bridge makes them. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "archive.h"
#include "xpb_xml.h"

#define ME "me@example.com"
#define ALICE "alice@example.com"
#define ROOM "room@muc.example.com"

typedef struct env {
    char dir[64], path[96];
    xa_db *db;
    xpb_arena *a;
    xa_counts c;
    uint64_t seq;
} env;

typedef struct parse_run {
    xpb_arena *a;
    xpb_stanza *st;
} parse_run;

static int on_stanza(void *ud, const xpb_node *el)
{
    parse_run *p = ud;
    return xpb_stanza_from_xml_plain(p->a, el, &p->st);
}

static xpb_stanza *stanza(env *e, const char *xml)
{
    parse_run run = {.a = e->a};
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    xpb_reader *r = NULL;
    assert_int_equal(xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, &run), 0);
    assert_int_equal(xpb_reader_feed(r, xml, strlen(xml)), 0);
    xpb_reader_free(r);
    assert_non_null(run.st);
    return run.st;
}

static uint8_t *pack_event(const Xpb__V1__Event *ev, size_t *len)
{
    *len = xpb__v1__event__get_packed_size(ev);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    xpb__v1__event__pack(ev, buf);
    return buf;
}

/* Ingests one event in its own transaction, as `run` would with a batch of one. */
static void ingest(env *e, Xpb__V1__Event *ev)
{
    char err[XA_ERR_MAX] = "";
    ev->has_seq = 1;
    ev->seq = ++e->seq;
    ev->account = ME;
    ev->has_timestamp_us = 1;
    ev->timestamp_us = 1700000000000000ULL + e->seq;
    assert_int_equal(xa_db_begin(e->db, err, sizeof err), 0);
    /* As `run` and `import` do: bytes, arena, checked in place. */
    size_t len;
    uint8_t *buf = pack_event(ev, &len);
    xpb_arena *a = xpb_arena_new(4096);
    assert_non_null(a);
    Xpb__V1__Event *owned = xa_event_unpack(a, buf, len, err, sizeof err);
    free(buf);
    if (!owned) fail_msg("unpack: %s", err);
    int rc = xa_ingest_owned(e->db, a, owned, &e->c, err, sizeof err);
    xpb_arena_free(a);
    if (rc) print_error("ingest: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(xa_db_commit(e->db, "j1", ev->seq, err, sizeof err), 0);
}

/* ev packed, with the first byte equal to mark in its wire bytes made 0. */
static uint8_t *packed_with_nul(Xpb__V1__Event *ev, char mark, size_t *len)
{
    uint8_t *buf = pack_event(ev, len);
    uint8_t *at = memchr(buf, mark, *len);
    assert_non_null(at);
    *at = 0;
    return buf;
}

static void received_stanza(env *e, xpb_stanza *st)
{
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    ev.stanza = st;
    ingest(e, &ev);
}

static void received(env *e, const char *xml)
{
    received_stanza(e, stanza(e, xml));
}

static void from_archive(env *e, const char *archive, const char *xml)
{
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    ev.stanza = stanza(e, xml);
    ev.has_from_archive = 1;
    ev.from_archive = 1;
    ev.archive = (char *)archive;
    ingest(e, &ev);
}

static void delivered(env *e, const char *xml)
{
    Xpb__V1__Delivery d = XPB__V1__DELIVERY__INIT;
    d.has_outcome = 1;
    d.outcome = XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED;
    d.stanza = stanza(e, xml);
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_DELIVERY;
    ev.delivery = &d;
    ingest(e, &ev);
}

static int64_t count(env *e, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(xa_db_sqlite(e->db), sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The one text column sql selects ("" for NULL). */
static const char *text(env *e, const char *sql)
{
    static char out[1024];
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(xa_db_sqlite(e->db), sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *v = sqlite3_column_text(st, 0);
    snprintf(out, sizeof out, "%s", v ? (const char *)v : "");
    sqlite3_finalize(st);
    return out;
}

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/test_archive.XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->path, sizeof e->path, "%s/a.db", e->dir);
    char err[XA_ERR_MAX];
    assert_int_equal(xa_db_open(e->path, XA_OPEN_CREATE, &e->db, err, sizeof err), 0);
    e->a = xpb_arena_new(16384);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    xa_db_close(e->db);
    xpb_arena_free(e->a);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    if (system(cmd) != 0) return -1;
    free(e);
    return 0;
}

#define LIVE                                                                                       \
    "<message from='alice@example.com/phone' to='me@example.com/b' type='chat' id='m1'>"          \
    "<body>hello there</body><stanza-id xmlns='urn:xmpp:sid:0' by='me@example.com' id='S1'/>"    \
    "</message>"
#define ARCHIVED                                                                                   \
    "<message from='alice@example.com/phone' to='me@example.com/b' type='chat' id='m1'>"          \
    "<body>hello there</body><stanza-id xmlns='urn:xmpp:sid:0' by='me@example.com' id='S1'/>"    \
    "<delay xmlns='urn:xmpp:delay' stamp='2026-01-02T03:04:05Z'/></message>"

static void live_then_archive_is_one(void **state)
{
    env *e = *state;
    received(e, LIVE);
    from_archive(e, ME, ARCHIVED);
    received(e, LIVE); /* a re-run over the same events */
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 1);
    assert_int_equal(e->c.stored, 1);
    assert_int_equal(e->c.duplicates, 2);
    assert_string_equal(text(e, "SELECT conversation FROM message"), ALICE);
    assert_string_equal(text(e, "SELECT sender FROM message"), ALICE);
    assert_int_equal(count(e, "SELECT direction FROM message"), XA_DIR_IN);
}

static void delay_stamp_is_the_time(void **state)
{
    env *e = *state;
    from_archive(e, ME, ARCHIVED);
    assert_int_equal(count(e, "SELECT time_us FROM message"), 1767323045LL * 1000000);
    assert_int_equal(xa_parse_stamp("2026-01-02T04:04:05.25+01:00"), 1767323045250000LL);
    assert_int_equal(xa_parse_stamp("2026-01-02 03:04:05Z"), -1);
    char t[40];
    xa_format_stamp(1767323045250000LL, t, sizeof t);
    assert_string_equal(t, "2026-01-02T03:04:05.250000Z");
}

static void own_send_found_by_origin_id(void **state)
{
    env *e = *state;
    delivered(e, "<message from='me@example.com/b' to='alice@example.com' type='chat' id='x1'>"
                 "<body>sent by me</body><origin-id xmlns='urn:xmpp:sid:0' id='O1'/></message>");
    from_archive(e, ME,
                 "<message from='me@example.com/b' to='alice@example.com' type='chat' id='x9'>"
                 "<body>sent by me</body><origin-id xmlns='urn:xmpp:sid:0' id='O1'/>"
                 "<stanza-id xmlns='urn:xmpp:sid:0' by='me@example.com' id='S7'/></message>");
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 1);
    assert_int_equal(count(e, "SELECT direction FROM message"), XA_DIR_OUT);
    assert_string_equal(text(e, "SELECT stanza_id FROM message"), "S7");
    assert_string_equal(text(e, "SELECT conversation FROM message"), ALICE);
}

static void own_send_found_by_content(void **state)
{
    env *e = *state;
    delivered(e, "<message from='me@example.com/b' to='alice@example.com' type='chat' id='x2'>"
                 "<body>no origin id</body></message>");
    from_archive(e, ME,
                 "<message from='me@example.com/b' to='alice@example.com' type='chat' id='x2'>"
                 "<body>no origin id</body>"
                 "<stanza-id xmlns='urn:xmpp:sid:0' by='me@example.com' id='S8'/></message>");
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 1);
    assert_string_equal(text(e, "SELECT stanza_id FROM message"), "S8");
}

static void same_text_other_stanza_id_is_two(void **state)
{
    env *e = *state;
    received(e, "<message from='alice@example.com/a' to='me@example.com' type='chat' id='k'>"
                "<body>ok</body><stanza-id xmlns='urn:xmpp:sid:0' by='me@example.com' id='A'/>"
                "</message>");
    received(e, "<message from='alice@example.com/a' to='me@example.com' type='chat' id='k'>"
                "<body>ok</body><stanza-id xmlns='urn:xmpp:sid:0' by='me@example.com' id='B'/>"
                "</message>");
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 2);
}

static void sent_carbon_is_unwrapped(void **state)
{
    env *e = *state;
    received(e, "<message from='me@example.com' to='me@example.com/b'>"
                "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
                "<message xmlns='jabber:client' from='me@example.com/phone' "
                "to='alice@example.com/x' type='chat' id='c1'><body>from my phone</body>"
                "</message></forwarded></sent></message>");
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 1);
    assert_int_equal(count(e, "SELECT direction FROM message"), XA_DIR_OUT);
    assert_string_equal(text(e, "SELECT conversation FROM message"), ALICE);
    assert_string_equal(text(e, "SELECT body FROM message"), "from my phone");
}

static void unverified_carbon_is_refused(void **state)
{
    env *e = *state;
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    ev.stanza = stanza(e, "<message from='me@example.com' to='me@example.com/b'>"
                          "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
                          "<message xmlns='jabber:client' from='me@example.com/x' "
                          "to='alice@example.com' type='chat'><body>forged?</body>"
                          "</message></forwarded></sent></message>");
    ev.has_trust = 1;
    ev.trust = XPB__V1__TRUST__TRUST_TO_ACCOUNT; /* not TRUST_CARBON_OWN_ACCOUNT */
    ingest(e, &ev);
    assert_int_equal(e->c.refused, 1);
    ev.trust |= XPB__V1__TRUST__TRUST_CARBON_OWN_ACCOUNT;
    ingest(e, &ev);
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 1);
}

static void room_reflection_teaches_our_nick(void **state)
{
    env *e = *state;
    received(e, "<message from='room@muc.example.com/bob' to='me@example.com/b' type='groupchat'"
                " id='g0'><body>hi all</body>"
                "<stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example.com' id='R0'/></message>");
    delivered(e, "<message from='me@example.com/b' to='room@muc.example.com' type='groupchat' "
                 "id='g1'><body>hi bob</body></message>");
    received(e, "<message from='room@muc.example.com/menick' to='me@example.com/b' "
                "type='groupchat' id='g1'><body>hi bob</body>"
                "<stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example.com' id='R1'/></message>");
    from_archive(e, ROOM,
                 "<message from='room@muc.example.com/menick' to='me@example.com/b' "
                 "type='groupchat' id='g2'><body>later</body>"
                 "<stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example.com' id='R2'/>"
                 "<delay xmlns='urn:xmpp:delay' stamp='2026-01-02T03:04:05Z'/></message>");
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 3);
    assert_int_equal(count(e, "SELECT count(*) FROM message WHERE direction = 1"), 2);
    assert_string_equal(text(e, "SELECT sender FROM message WHERE msg_id = 'g1'"), "menick");
    assert_string_equal(text(e, "SELECT sender FROM message WHERE msg_id = 'g0'"), "bob");
    assert_string_equal(text(e, "SELECT group_concat(DISTINCT conversation) FROM message"), ROOM);
}

static void room_private_message_is_its_own_conversation(void **state)
{
    env *e = *state;
    received(e, "<message from='room@muc.example.com/bob' to='me@example.com/b' type='chat' "
                "id='pm1'><body>psst</body><x xmlns='http://jabber.org/protocol/muc#user'/>"
                "</message>");
    delivered(e, "<message from='me@example.com/b' to='room@muc.example.com/bob' type='chat' "
                 "id='pm2'><body>what?</body><x xmlns='http://jabber.org/protocol/muc#user'/>"
                 "</message>");
    assert_int_equal(count(e, "SELECT count(*) FROM message WHERE conversation = "
                              "'room@muc.example.com/bob'"),
                     2);
    assert_string_equal(text(e, "SELECT sender FROM message WHERE msg_id = 'pm1'"), "bob");
    assert_int_equal(count(e, "SELECT direction FROM message WHERE msg_id = 'pm2'"), XA_DIR_OUT);
}

typedef struct found {
    int n;
    char body[256];
} found;

static int on_found(void *ud, const xa_row *r)
{
    found *f = ud;
    f->n++;
    snprintf(f->body, sizeof f->body, "%s", r->edited_body ? r->edited_body : r->body);
    return 0;
}

static int search(env *e, const char *q, char *body)
{
    found f = {0};
    xa_filter flt = {0};
    char err[XA_ERR_MAX];
    assert_int_equal(xa_search(e->db, q, &flt, on_found, &f, err, sizeof err), 0);
    if (body) snprintf(body, 256, "%s", f.body);
    return f.n;
}

#define CORRECTION                                                                                 \
    "<message from='alice@example.com/phone' to='me@example.com' type='chat' id='m2'>"            \
    "<body>hello where</body><replace xmlns='urn:xmpp:message-correct:0' id='m1'/></message>"

static void correction_changes_the_original(void **state)
{
    env *e = *state;
    received(e, LIVE);
    received(e, CORRECTION);
    received(e, CORRECTION);
    assert_int_equal(count(e, "SELECT count(*) FROM message WHERE kind = 0"), 1);
    assert_int_equal(count(e, "SELECT count(*) FROM message WHERE kind = 1"), 1);
    assert_string_equal(text(e, "SELECT edited_body FROM message WHERE kind = 0"), "hello where");
    assert_int_equal(count(e, "SELECT count(*) FROM message WHERE kind = 1 AND target = "
                              "(SELECT id FROM message WHERE kind = 0)"),
                     1);
    char body[256];
    assert_int_equal(search(e, "where", body), 1);
    assert_string_equal(body, "hello where");
    assert_int_equal(search(e, "there", NULL), 0);
}

static void correction_before_original_waits(void **state)
{
    env *e = *state;
    received(e, CORRECTION);
    assert_int_equal(count(e, "SELECT count(*) FROM message WHERE target IS NULL AND kind = 1"), 1);
    received(e, LIVE);
    assert_string_equal(text(e, "SELECT edited_body FROM message WHERE kind = 0"), "hello where");
    assert_int_equal(e->c.linked, 1);
}

static void correction_from_someone_else_is_not_applied(void **state)
{
    env *e = *state;
    received(e, LIVE);
    delivered(e, "<message from='me@example.com/b' to='alice@example.com' type='chat' id='m3'>"
                 "<body>hijack</body><replace xmlns='urn:xmpp:message-correct:0' id='m1'/>"
                 "</message>");
    assert_string_equal(text(e, "SELECT edited_body FROM message WHERE kind = 0"), "");
}

static void retraction_hides_the_message(void **state)
{
    env *e = *state;
    received(e, "<message from='alice@example.com/phone' to='me@example.com' type='chat' id='r1'>"
                "<body>oops secret</body><origin-id xmlns='urn:xmpp:sid:0' id='OR1'/></message>");
    assert_int_equal(search(e, "secret", NULL), 1);
    received(e, "<message from='alice@example.com/phone' to='me@example.com' type='chat' id='r2'>"
                "<retract xmlns='urn:xmpp:message-retract:1' id='OR1'/>"
                "<body>This person attempted to retract a previous message</body></message>");
    assert_int_equal(count(e, "SELECT count(*) FROM message WHERE kind = 0"), 1);
    assert_int_equal(count(e, "SELECT count(*) FROM message WHERE retracted_us IS NOT NULL"), 1);
    assert_int_equal(search(e, "secret", NULL), 0);
    /* The 0.3 form (XEP-0422 apply-to) too. */
    received(e, "<message from='alice@example.com/phone' to='me@example.com' type='chat' id='r3'>"
                "<body>second</body></message>");
    received(e, "<message from='alice@example.com/phone' to='me@example.com' type='chat' id='r4'>"
                "<apply-to xmlns='urn:xmpp:fasten:0' id='r3'>"
                "<retract xmlns='urn:xmpp:message-retract:0'/></apply-to></message>");
    assert_int_equal(count(e, "SELECT count(*) FROM message WHERE retracted_us IS NOT NULL"), 2);
}

static void chat_states_and_errors_are_skipped(void **state)
{
    env *e = *state;
    received(e, "<message from='alice@example.com/a' to='me@example.com' type='chat'>"
                "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
    received(e, "<message from='alice@example.com/a' to='me@example.com' type='error' id='e'>"
                "<body>x</body><error type='cancel'><item-not-found "
                "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>");
    received(e, "<presence from='alice@example.com/a' to='me@example.com'/>");
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 0);
    assert_int_equal(e->c.skipped, 3);
}

static void resume_point_commits_with_messages(void **state)
{
    env *e = *state;
    received(e, LIVE);
    char j[XA_JOURNAL_ID_MAX + 1], err[XA_ERR_MAX];
    uint64_t seq = 0;
    assert_int_equal(xa_db_resume(e->db, j, &seq, err, sizeof err), 0);
    assert_string_equal(j, "j1");
    assert_int_equal(seq, 1);
    /* A batch rolled back (a kill) leaves neither its messages nor its seq. */
    assert_int_equal(xa_db_begin(e->db, err, sizeof err), 0);
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    ev.account = ME;
    ev.stanza = stanza(e, "<message from='alice@example.com/a' to='me@example.com' type='chat'>"
                          "<body>lost in the crash</body></message>");
    assert_int_equal(xa_ingest(e->db, e->a, &ev, &e->c, err, sizeof err), 0);
    xa_db_rollback(e->db);
    assert_int_equal(xa_db_resume(e->db, j, &seq, err, sizeof err), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 1);
}

typedef struct ids {
    int64_t v[64];
    int n;
} ids;

static int on_id(void *ud, const xa_row *r)
{
    ids *x = ud;
    if (x->n < 64) x->v[x->n++] = r->id;
    return 0;
}

/* Newest first is exact whatever order the rows were archived in: the
 * search's shortcut against ORDER BY time_us over every match. */
static void check_newest(env *e, const char *word, const char *with)
{
    ids got = {0}, want = {0};
    xa_filter f = {.limit = 20, .with = with};
    char err[XA_ERR_MAX], sql[512], q[64];
    assert_int_equal(xa_search(e->db, word, &f, on_id, &got, err, sizeof err), 0);
    snprintf(q, sizeof q, "\"%s\"", word);
    snprintf(sql, sizeof sql,
             "SELECT m.id FROM fts JOIN message m ON m.id = fts.rowid WHERE fts MATCH ?1 "
             "AND m.retracted_us IS NULL AND (?2 IS NULL OR m.conversation = ?2) "
             "ORDER BY m.time_us DESC, m.id DESC LIMIT 20");
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(xa_db_sqlite(e->db), sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, q, -1, SQLITE_STATIC);
    if (with) sqlite3_bind_text(st, 2, with, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW)
        want.v[want.n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    assert_int_equal(got.n, want.n);
    for (int i = 0; i < got.n; i++)
        assert_int_equal(got.v[i], want.v[i]);
}

static void search_newest_first_is_exact(void **state)
{
    env *e = *state;
    char err[XA_ERR_MAX];
    assert_int_equal(xa_db_begin(e->db, err, sizeof err), 0);
    /* The first 5000 archived with stamps far ahead and newest first (more
     * rows newer than the latest ones than the shortcut looks at: its
     * fallback), then 1000 in time order with every 7th an old stamp
     * (offline, history) and every 13th a bit ahead; "rare" in a few. */
    for (int i = 0; i < 6000; i++) {
        char xml[512], stamp[128] = "";
        int64_t t = 1767323045LL * 1000000 + (int64_t)i * 1000000;
        if (i < 5000) t = 1867323045LL * 1000000 - (int64_t)i * 1000000;
        if (i >= 5000 && i % 7 == 0) t -= 86400LL * 1000000 * (1 + i % 50);
        if (i >= 5000 && i % 13 == 0) t += 3600LL * 1000000;
        char ts[40];
        xa_format_stamp(t, ts, sizeof ts);
        snprintf(stamp, sizeof stamp, "<delay xmlns='urn:xmpp:delay' stamp='%s'/>", ts);
        snprintf(xml, sizeof xml,
                 "<message from='%s/a' to='me@example.com' type='chat' id='n%d'>"
                 "<body>common %s %d</body>%s</message>",
                 i % 3 ? ALICE : "bob@example.com", i, i % 97 == 0 ? "rare" : "plain", i, stamp);
        Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
        ev.body_case = XPB__V1__EVENT__BODY_STANZA;
        ev.account = ME;
        ev.stanza = stanza(e, xml);
        assert_int_equal(xa_ingest(e->db, e->a, &ev, &e->c, err, sizeof err), 0);
        xpb_arena_reset(e->a);
    }
    assert_int_equal(xa_db_commit(e->db, "j1", 1, err, sizeof err), 0);
    assert_int_equal(e->c.stored, 6000);
    check_newest(e, "common", NULL);
    check_newest(e, "common", "bob@example.com");
    check_newest(e, "rare", NULL);
    check_newest(e, "plain", ALICE);
    /* Few rows out of order: the shortcut's own path (old and new stamps
     * among the newest rows, one row far ahead among the first). */
    xa_db_close(e->db);
    e->db = NULL;
    char p[128];
    snprintf(p, sizeof p, "%s/b.db", e->dir);
    assert_int_equal(xa_db_open(p, XA_OPEN_CREATE, &e->db, err, sizeof err), 0);
    for (int i = 0; i < 200; i++) {
        char xml[512];
        snprintf(xml, sizeof xml,
                 "<message from='alice@example.com/a' to='me@example.com' type='chat' id='k%d'>"
                 "<body>word %d</body>%s</message>",
                 i, i, i % 9 == 0 ? "<delay xmlns='urn:xmpp:delay' stamp='2000-01-01T00:00:00Z'/>"
                       : i == 20 ? "<delay xmlns='urn:xmpp:delay' stamp='2099-01-01T00:00:00Z'/>"
                                 : "");
        received(e, xml);
    }
    check_newest(e, "word", NULL);
}

/* ---- records: deflated chunks, fields left out and put back ------------- */
typedef struct rec_seen {
    int n;
    char id[64], origin_id[64], body[64];
} rec_seen;

static int on_record(void *ud, const xa_row *r)
{
    rec_seen *s = ud;
    xpb_arena *a = xpb_arena_new(4096);
    xpb_stanza *st = NULL;
    char err[XA_ERR_MAX];
    assert_int_equal(xpb_stanza_unpack(a, r->record, r->record_len, NULL, &st, err, sizeof err), 0);
    snprintf(s->id, sizeof s->id, "%s", st->id ? st->id : "");
    snprintf(s->origin_id, sizeof s->origin_id, "%s", st->origin_id ? st->origin_id : "");
    snprintf(s->body, sizeof s->body, "%s", st->n_body ? st->body[0]->text : "");
    s->n++;
    xpb_arena_free(a);
    return 0;
}

static void records_come_back_whole_and_prune_frees_chunks(void **state)
{
    env *e = *state;
    received(e, LIVE); /* 2023 (the event's time): pruned below */
    received(e, "<message from='bob@example.com/pc' to='me@example.com/b' type='chat' "
                "id='o-7'><body>still here</body><origin-id xmlns='urn:xmpp:sid:0' id='o-7'/>"
                "<delay xmlns='urn:xmpp:delay' stamp='2026-11-02T03:04:05Z'/></message>");
    /* One transaction each: one chunk each. The id and origin-id are in the
     * row, not in the record (strip 1|2); the body is only in the record;
     * msg_id is the origin-id (8), the sender the peer (32). */
    assert_int_equal(count(e, "SELECT count(*) FROM chunk"), 2);
    assert_int_equal(count(e, "SELECT strip FROM message WHERE body = 'still here'"), 1 | 2 | 8 | 32);
    assert_int_equal(count(e, "SELECT count(*) FROM msg WHERE xpb_body(rec) = 'hello there'"), 1);
    assert_int_equal(search(e, "hello", NULL), 1);
    assert_string_equal(text(e, "SELECT msg_id FROM message WHERE body = 'still here'"), "o-7");
    assert_string_equal(text(e, "SELECT sender FROM message WHERE body = 'still here'"),
                        "bob@example.com");
    assert_int_equal(count(e, "SELECT count(*) FROM msgkey"), 4); /* s, h, i; o */
    char err[XA_ERR_MAX];
    uint64_t n = 0;
    assert_int_equal(xa_db_begin(e->db, err, sizeof err), 0);
    assert_int_equal(xa_prune(e->db, xa_parse_stamp("2025-01-01T00:00:00Z"), &n, err, sizeof err),
                     0);
    assert_int_equal(xa_db_commit_plain(e->db, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(count(e, "SELECT count(*) FROM chunk"), 1);
    /* The contentless index lost the pruned message's words (deleted with
     * the text read back from its record), and only those. */
    assert_int_equal(search(e, "hello", NULL), 0);
    assert_int_equal(search(e, "still", NULL), 1);
    assert_int_equal(count(e, "SELECT count(*) FROM msgkey"), 1); /* o-7's origin-id key */
    xa_filter f = {0};
    rec_seen seen = {0};
    assert_int_equal(xa_each(e->db, &f, on_record, &seen, err, sizeof err), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.id, "o-7");
    assert_string_equal(seen.origin_id, "o-7");
    assert_string_equal(seen.body, "still here");
}

/* UUIDs are kept as 16 bytes and decimal numbers as integers; the view and
 * every reader see the text that came; other ids stay text. */
static void ids_are_stored_small_and_read_back_as_text(void **state)
{
    env *e = *state;
    received(e, "<message from='alice@example.com/phone' to='me@example.com/b' type='chat' "
                "id='123e4567-e89b-12d3-a456-426614174000'><body>uuid one</body>"
                "<origin-id xmlns='urn:xmpp:sid:0' id='123e4567-e89b-12d3-a456-426614174000'/>"
                "<stanza-id xmlns='urn:xmpp:sid:0' by='me@example.com' id='1607599856484436'/>"
                "</message>");
    received(e, "<message from='alice@example.com/phone' to='me@example.com/b' type='chat' "
                "id='0123'><body>text ids</body><stanza-id xmlns='urn:xmpp:sid:0' "
                "by='me@example.com' id='123E4567-E89B-12D3-A456-426614174000'/></message>");
    assert_string_equal(text(e, "SELECT typeof(origin_id) || typeof(stanza_id) FROM msg WHERE "
                                "xpb_body(rec) = 'uuid one'"),
                        "blobinteger");
    assert_string_equal(text(e, "SELECT origin_id FROM message WHERE body = 'uuid one'"),
                        "123e4567-e89b-12d3-a456-426614174000");
    assert_string_equal(text(e, "SELECT msg_id FROM message WHERE body = 'uuid one'"),
                        "123e4567-e89b-12d3-a456-426614174000");
    assert_string_equal(text(e, "SELECT stanza_id FROM message WHERE body = 'uuid one'"),
                        "1607599856484436");
    /* Not canonical (upper case, a leading zero): text as it came. */
    assert_string_equal(text(e, "SELECT typeof(stanza_id) || typeof(msg_id) FROM msg WHERE "
                                "xpb_body(rec) = 'text ids'"),
                        "texttext");
    assert_string_equal(text(e, "SELECT stanza_id FROM message WHERE body = 'text ids'"),
                        "123E4567-E89B-12D3-A456-426614174000");
    assert_string_equal(text(e, "SELECT msg_id FROM message WHERE body = 'text ids'"), "0123");
    /* The same message again (by its integer-kept stanza-id) adds nothing. */
    received(e, "<message from='alice@example.com/phone' to='me@example.com/b' type='chat' "
                "id='x'><body>uuid one</body><stanza-id xmlns='urn:xmpp:sid:0' "
                "by='me@example.com' id='1607599856484436'/></message>");
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 2);
}

/* ---- schema checks and bad files ------------------------------------------ */
static int open_rc(const char *path, xa_mode mode, char *err)
{
    xa_db *db = NULL;
    int rc = xa_db_open(path, mode, &db, err, XA_ERR_MAX);
    xa_db_close(db);
    return rc;
}

static void write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(data, f);
    fclose(f);
}

static void bad_files_are_refused(void **state)
{
    env *e = *state;
    char p[128], err[XA_ERR_MAX];
    snprintf(p, sizeof p, "%s/garbage.db", e->dir);
    write_file(p, "this is not an SQLite database, not at all, not even close............");
    assert_int_equal(open_rc(p, XA_OPEN_CREATE, err), XA_ECORRUPT);
    assert_non_null(strstr(err, "not an xpb-archive database"));

    snprintf(p, sizeof p, "%s/other.db", e->dir);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(p, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(open_rc(p, XA_OPEN_CREATE, err), XA_ECORRUPT);

    snprintf(p, sizeof p, "%s/missing.db", e->dir);
    assert_int_equal(open_rc(p, XA_OPEN_READ, err), XA_ENOTFOUND);
    assert_int_equal(access(p, F_OK), -1); /* a read-only command created nothing */
}

static void newer_schema_is_refused(void **state)
{
    env *e = *state;
    char err[XA_ERR_MAX];
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", XA_SCHEMA_VERSION + 1);
    assert_int_equal(sqlite3_exec(xa_db_sqlite(e->db), sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(open_rc(e->path, XA_OPEN_CREATE, err), XA_ENEWER);
    assert_non_null(strstr(err, "newer xpb-archive"));
    assert_int_equal(open_rc(e->path, XA_OPEN_READ, err), XA_ENEWER);
}

static void older_schema_is_refused(void **state)
{
    env *e = *state;
    char err[XA_ERR_MAX], sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", XA_SCHEMA_VERSION - 1);
    assert_int_equal(sqlite3_exec(xa_db_sqlite(e->db), sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(open_rc(e->path, XA_OPEN_WRITE, err), XA_ECORRUPT);
    assert_non_null(strstr(err, "older xpb-archive"));
}

static void read_only_is_refused(void **state)
{
    env *e = *state;
    if (geteuid() == 0) skip(); /* root writes through file modes: the CLI test uses a ro mount */
    char err[XA_ERR_MAX];
    assert_int_equal(chmod(e->path, 0444), 0);
    assert_int_equal(open_rc(e->path, XA_OPEN_WRITE, err), XA_EREADONLY);
    assert_int_equal(open_rc(e->path, XA_OPEN_READ, err), 0);
}

/* RLIMIT_FSIZE stands for a full disk: the batch fails, the resume point
 * stays, and once the limit is lifted the same batch goes in. */
static void full_disk_keeps_the_resume_point(void **state)
{
    env *e = *state;
    received(e, LIVE);
    char err[XA_ERR_MAX];
    assert_int_equal(sqlite3_exec(xa_db_sqlite(e->db), "PRAGMA wal_checkpoint(TRUNCATE)", NULL,
                                  NULL, NULL),
                     SQLITE_OK);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 40 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char body[2048];
    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = 0;
    int rc = xa_db_begin(e->db, err, sizeof err);
    for (int i = 0; !rc && i < 200; i++) {
        char xml[2400];
        snprintf(xml, sizeof xml,
                 "<message from='alice@example.com/a' to='me@example.com' type='chat' id='f%d'>"
                 "<body>%d %s</body></message>",
                 i, i, body);
        Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
        ev.body_case = XPB__V1__EVENT__BODY_STANZA;
        ev.account = ME;
        ev.stanza = stanza(e, xml);
        rc = xa_ingest(e->db, e->a, &ev, &e->c, err, sizeof err);
    }
    if (!rc) rc = xa_db_commit(e->db, "j1", 99, err, sizeof err);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(rc, XA_EFULL);
    xa_db_rollback(e->db);
    char j[XA_JOURNAL_ID_MAX + 1];
    uint64_t seq = 0;
    assert_int_equal(xa_db_resume(e->db, j, &seq, err, sizeof err), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 1);
    received(e, ARCHIVED); /* writing works again */
    assert_int_equal(xa_db_resume(e->db, j, &seq, err, sizeof err), 0);
    assert_int_equal(seq, 2);
}

/* A NUL inside a string of the event's bytes: protobuf-c would keep it and
 * every C reader would see the body cut short. Refused before unpacking. */
static void event_bytes_with_nul_are_refused(void **state)
{
    env *e = *state;
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    ev.account = ME;
    ev.stanza = stanza(e, "<message from='alice@example.com/a' to='me@example.com' "
                          "type='chat'><body>cut#here</body></message>");
    size_t len;
    uint8_t *buf = packed_with_nul(&ev, '#', &len);
    char err[XA_ERR_MAX] = "";
    assert_null(xa_event_unpack(e->a, buf, len, err, sizeof err));
    assert_true(strstr(err, "U+0000") && strstr(err, "body"));
    free(buf);
    /* In the account too (outside any stanza). */
    ev.account = "me@exa#mple.com";
    buf = packed_with_nul(&ev, '#', &len);
    assert_null(xa_event_unpack(e->a, buf, len, err, sizeof err));
    assert_non_null(strstr(err, "account"));
    free(buf);
}

/* Nested deeper than the record depth bound allows: refused on the wire,
 * before protobuf-c (which has no recursion limit) unpacks it. */
static void event_nested_too_deep_is_refused(void **state)
{
    env *e = *state;
    enum { LEVELS = 40 }; /* wire depth 3 + 2 * 39 = 81 > 2 * 32 + 1 + 2 */
    Xpb__V1__Element el[LEVELS];
    Xpb__V1__Node node[LEVELS];
    Xpb__V1__Node *kid[LEVELS];
    for (int i = LEVELS - 1; i >= 0; i--) {
        el[i] = (Xpb__V1__Element)XPB__V1__ELEMENT__INIT;
        el[i].name = "x";
        el[i].ns = "urn:example:deep";
        el[i].n_child = i + 1 < LEVELS;
        el[i].child = &kid[i + 1 < LEVELS ? i + 1 : i];
        node[i] = (Xpb__V1__Node)XPB__V1__NODE__INIT;
        node[i].node_case = XPB__V1__NODE__NODE_ELEMENT;
        node[i].element = &el[i];
        kid[i] = &node[i];
    }
    xpb_stanza *st = stanza(e, "<message from='alice@example.com/a' to='me@example.com' "
                               "type='chat'><body>deep</body></message>");
    Xpb__V1__Element *ext = &el[0];
    st->n_extension = 1;
    st->extension = &ext;
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    ev.stanza = st;
    size_t len;
    uint8_t *buf = pack_event(&ev, &len);
    char err[XA_ERR_MAX] = "";
    assert_null(xa_event_unpack(e->a, buf, len, err, sizeof err));
    assert_non_null(strstr(err, "depth"));
    free(buf);
    el[9].n_child = 0; /* ten levels are fine */
    buf = pack_event(&ev, &len);
    assert_non_null(xa_event_unpack(e->a, buf, len, err, sizeof err));
    free(buf);
}

/* The bridge's events use compact forms (origin_id_is_id here): made plain
 * in place, they are stored and matched like the plain copy they stand for. */
static void compact_event_is_expanded_in_place(void **state)
{
    env *e = *state;
    xpb_stanza *st = stanza(e, "<message from='alice@example.com/a' to='me@example.com' "
                               "type='chat' id='o-1'><body>compact</body></message>");
    st->has_origin_id_is_id = 1;
    st->origin_id_is_id = 1;
    received_stanza(e, st);
    assert_string_equal(text(e, "SELECT origin_id FROM message"), "o-1");
    /* The same message in plain form is found by that origin-id. */
    received(e, "<message from='alice@example.com/a' to='me@example.com' type='chat' id='o-1'>"
                "<origin-id xmlns='urn:xmpp:sid:0' id='o-1'/><body>compact</body></message>");
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 1);
    assert_int_equal(e->c.duplicates, 1);
}

/* A message with a body gets every record check before it is stored (a bad
 * JID here: refused, nothing stored); one without a body (a chat state) is
 * skipped before the checks: nothing of it would be stored. */
static void bad_record_is_refused_bodyless_skipped(void **state)
{
    env *e = *state;
    xpb_stanza *st = stanza(e, "<message from='alice@example.com/a' to='me@example.com' "
                               "type='chat'><body>hello</body></message>");
    st->from = "alice@@example.com/a";
    received_stanza(e, st);
    assert_int_equal(e->c.refused, 1);
    assert_int_equal(count(e, "SELECT count(*) FROM message"), 0);
    st = stanza(e, "<message from='alice@example.com/a' to='me@example.com' type='chat'>"
                   "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
    st->from = "alice@@example.com/a";
    received_stanza(e, st);
    assert_int_equal(e->c.refused, 1);
    assert_int_equal(e->c.skipped, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(live_then_archive_is_one, setup, teardown),
        cmocka_unit_test_setup_teardown(delay_stamp_is_the_time, setup, teardown),
        cmocka_unit_test_setup_teardown(own_send_found_by_origin_id, setup, teardown),
        cmocka_unit_test_setup_teardown(own_send_found_by_content, setup, teardown),
        cmocka_unit_test_setup_teardown(same_text_other_stanza_id_is_two, setup, teardown),
        cmocka_unit_test_setup_teardown(sent_carbon_is_unwrapped, setup, teardown),
        cmocka_unit_test_setup_teardown(unverified_carbon_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(room_private_message_is_its_own_conversation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(room_reflection_teaches_our_nick, setup, teardown),
        cmocka_unit_test_setup_teardown(correction_changes_the_original, setup, teardown),
        cmocka_unit_test_setup_teardown(correction_before_original_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(correction_from_someone_else_is_not_applied, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(retraction_hides_the_message, setup, teardown),
        cmocka_unit_test_setup_teardown(chat_states_and_errors_are_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(resume_point_commits_with_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(search_newest_first_is_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(ids_are_stored_small_and_read_back_as_text, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(bad_files_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(older_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(records_come_back_whole_and_prune_frees_chunks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(read_only_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(full_disk_keeps_the_resume_point, setup, teardown),
        cmocka_unit_test_setup_teardown(event_bytes_with_nul_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(event_nested_too_deep_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(compact_event_is_expanded_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_record_is_refused_bodyless_skipped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
