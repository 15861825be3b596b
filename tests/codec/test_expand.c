/* xpb_stanza_expand: compact records -> plain records (docs/mapping.md §7).
 * Over the corpus and generated traffic the plain record writes the same XML
 * byte for byte, passes the record check and has no compact field left
 * (found by walking descriptors); table cases pin the plain values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "traffic.h"
#include "xpb_error.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"

#define GENERATED_COUNT 2000

/* ---- Which fields are compact forms ----------------------------------------
 * From stanza.proto's comments (each names the plain field it replaces) and
 * the tables of docs/mapping.md §7.1–7.5. The §7.6 enums (affiliation_enum,
 * role_enum, hash_enum) are typed fields, not compact forms. */
typedef struct compact_field {
    const char *msg, *field;
} compact_field;
static const compact_field compact_fields[] = {
    {"xpb.v1.Stanza", "id_uuid"},
    {"xpb.v1.Stanza", "receipt_received_uuid"},
    {"xpb.v1.Stanza", "origin_id_uuid"},
    {"xpb.v1.Stanza", "origin_id_is_id"},
    {"xpb.v1.Stanza", "from_ref"},
    {"xpb.v1.Stanza", "to_ref"},
    {"xpb.v1.Thread", "id_uuid"},
    {"xpb.v1.StanzaId", "id_uuid"},
    {"xpb.v1.StanzaId", "by_ref"},
    {"xpb.v1.MamResult", "queryid_uuid"},
    {"xpb.v1.MamResult", "id_uuid"},
    {"xpb.v1.Delay", "stamp_seconds"},
    {"xpb.v1.Delay", "from_ref"},
    {"xpb.v1.DiscoInfo", "feature_id"},
};
#define N_COMPACT (sizeof(compact_fields) / sizeof(compact_fields[0]))

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The naming rule the proto follows for compact forms. MucHistory.seconds
 * (XEP-0045 history) is a plain value: the rule needs the underscore. */
static bool compact_name(const char *name)
{
    return ends_with(name, "_uuid") || ends_with(name, "_ref") || ends_with(name, "_is_id") ||
           ends_with(name, "_seconds") || ends_with(name, "feature_id");
}

/* Index in compact_fields, or -1. */
static int compact_index(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f)
{
    for (size_t i = 0; i < N_COMPACT; i++)
        if (strcmp(compact_fields[i].msg, d->name) == 0 && strcmp(compact_fields[i].field, f->name) == 0)
            return (int)i;
    return -1;
}

/* How many values field f holds in m (0 or 1 for a singular field). */
static size_t field_count(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) return *(const size_t *)(base + f->quantifier_offset);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(void *const *)(base + f->offset) != NULL;
    return *(const protobuf_c_boolean *)(base + f->quantifier_offset) != 0;
}

/* Adds to seen[i] every set compact field in m and the messages below it;
 * returns how many compact fields are set. A set field matching the naming
 * rule but not in compact_fields fails the test. */
static size_t count_compact(const ProtobufCMessage *m, size_t seen[N_COMPACT])
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    size_t total = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        size_t n = field_count(m, f);
        if (n == 0) continue;
        if (compact_name(f->name)) {
            int k = compact_index(d, f);
            if (k < 0) fail_msg("%s.%s looks compact but is not in the list", d->name, f->name);
            seen[k]++;
            total++;
        }
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *p = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)p;
            for (size_t j = 0; j < n; j++) total += count_compact(arr[j], seen);
        } else {
            total += count_compact(*(const ProtobufCMessage *const *)p, seen);
        }
    }
    return total;
}

/* Every message type reachable from Stanza, once: names matching the rule. */
static void collect_rule_fields(const ProtobufCMessageDescriptor *d, const void **done,
                                size_t *n_done, size_t *n_found)
{
    for (size_t i = 0; i < *n_done; i++)
        if (done[i] == d) return;
    assert_true(*n_done < 64);
    done[(*n_done)++] = d;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (compact_name(f->name)) {
            if (compact_index(d, f) < 0) fail_msg("%s.%s matches the rule, not §7", d->name, f->name);
            (*n_found)++;
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            collect_rule_fields(f->descriptor, done, n_done, n_found);
    }
}

/* The naming rule finds exactly the §7 list: nothing more (e.g. not
 * MucHistory.seconds, Element.ns_id), nothing less. */
static void test_compact_field_list(void **state)
{
    (void)state;
    const void *done[64];
    size_t n_done = 0, n_found = 0;
    collect_rule_fields(&xpb__v1__stanza__descriptor, done, &n_done, &n_found);
    assert_int_equal(n_found, N_COMPACT);
    for (size_t i = 0; i < N_COMPACT; i++) assert_true(compact_name(compact_fields[i].field));
    assert_false(compact_name("seconds"));
    assert_false(compact_name("affiliation_enum"));
    assert_false(compact_name("hash_enum"));
    assert_false(compact_name("ns_id"));
}

/* ---- The pipeline under test ----------------------------------------------- */
typedef struct run {
    const char *what;
    xpb_arena *a, *a2;
    xpb_buf xa, xb, xc, rec;
    size_t n, n_compact;
    size_t seen[N_COMPACT]; /* compact fields met before expansion */
} run;

static void to_xml_ok(const run *r, const xpb_stanza *st, xpb_buf *out, const char *step)
{
    char err[512] = "";
    xpb_buf_reset(out);
    int rc = xpb_stanza_to_xml(out, st, "", NULL, err, sizeof err);
    if (rc) fail_msg("%s stanza %zu: to_xml (%s): %s (%s)", r->what, r->n, step, xpb_strerror(rc), err);
}

static void assert_same_xml(const run *r, const xpb_buf *x, const xpb_buf *y, const char *step)
{
    if (x->len == y->len && memcmp(x->data, y->data, x->len) == 0) return;
    fail_msg("%s stanza %zu: %s XML differs\n  compact: %.*s\n  plain:   %.*s", r->what, r->n,
             step, (int)x->len, x->data, (int)y->len, y->data);
}

/* from_xml -> XML A; expand -> no compact field, check passes -> XML B == A;
 * pack, unpack (checks again) -> XML C == A; expand again changes nothing. */
static int on_stanza(void *ud, const xpb_node *el)
{
    run *r = ud;
    char err[512] = "";
    xpb_stanza *st = NULL, *back = NULL;
    xpb_arena_reset(r->a);
    assert_int_equal(xpb_stanza_from_xml(r->a, el, &st), 0);
    to_xml_ok(r, st, &r->xa, "compact");
    size_t before = count_compact(&st->base, r->seen);
    r->n_compact += before != 0;
    assert_int_equal(xpb_stanza_expand(r->a, st), 0);
    size_t none[N_COMPACT] = {0};
    if (count_compact(&st->base, none) != 0)
        fail_msg("%s stanza %zu: a compact field is left after expand", r->what, r->n);
    int rc = xpb_stanza_check(st, NULL, err, sizeof err);
    if (rc) fail_msg("%s stanza %zu: check: %s (%s)", r->what, r->n, xpb_strerror(rc), err);
    to_xml_ok(r, st, &r->xb, "plain");
    assert_same_xml(r, &r->xa, &r->xb, "plain");
    xpb_buf_reset(&r->rec);
    assert_int_equal(xpb_stanza_pack(&r->rec, st), 0);
    xpb_arena_reset(r->a2);
    rc = xpb_stanza_unpack(r->a2, (const uint8_t *)r->rec.data, r->rec.len, NULL, &back, err,
                           sizeof err);
    if (rc) fail_msg("%s stanza %zu: unpack: %s (%s)", r->what, r->n, xpb_strerror(rc), err);
    to_xml_ok(r, back, &r->xc, "unpacked plain");
    assert_same_xml(r, &r->xa, &r->xc, "unpacked plain");
    assert_int_equal(xpb_stanza_expand(r->a2, back), 0); /* idempotent */
    to_xml_ok(r, back, &r->xc, "expanded twice");
    assert_same_xml(r, &r->xa, &r->xc, "expanded twice");
    r->n++;
    return 0;
}

static void run_init(run *r)
{
    memset(r, 0, sizeof *r);
    r->a = xpb_arena_new(0);
    r->a2 = xpb_arena_new(0);
    assert_non_null(r->a);
    assert_non_null(r->a2);
    xpb_buf_init(&r->xa, 0);
    xpb_buf_init(&r->xb, 0);
    xpb_buf_init(&r->xc, 0);
    xpb_buf_init(&r->rec, 0);
}

static void run_fini(run *r)
{
    xpb_arena_free(r->a);
    xpb_arena_free(r->a2);
    xpb_buf_free(&r->xa);
    xpb_buf_free(&r->xb);
    xpb_buf_free(&r->xc);
    xpb_buf_free(&r->rec);
}

static void feed(run *r, const char *what, const char *data, size_t len)
{
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    xpb_reader *rd = NULL;
    assert_int_equal(xpb_reader_new(&rd, XPB_READER_AUTO, NULL, &cb, r), 0);
    r->what = what;
    int rc = xpb_reader_feed(rd, data, len);
    if (rc) fail_msg("%s: reader: %s", what, xpb_reader_error(rd));
    xpb_reader_free(rd);
}

static void feed_corpus_file(const char *name, const char *data, size_t len, void *ud)
{
    feed(ud, name, data, len);
}

static void feed_corpus(run *r)
{
    size_t files = xpb_test_each_xml(XPB_CORPUS_DIR, feed_corpus_file, r);
    assert_true(files >= 10 && files != (size_t)-1);
}

static void feed_generated(run *r)
{
    xpb_traffic *t = xpb_traffic_new(20240611);
    assert_non_null(t);
    xpb_buf in;
    xpb_buf_init(&in, 0);
    for (int i = 0; i < GENERATED_COUNT; i++) assert_non_null(xpb_traffic_next(t, &in));
    feed(r, "generated", in.data, in.len);
    xpb_buf_free(&in);
    xpb_traffic_free(t);
}

static void test_corpus(void **state)
{
    (void)state;
    run r;
    run_init(&r);
    feed_corpus(&r);
    assert_true(r.n >= 150);
    assert_true(r.n_compact >= 20); /* the corpus does exercise compact forms */
    run_fini(&r);
}

static void test_generated(void **state)
{
    (void)state;
    run r;
    run_init(&r);
    feed_generated(&r);
    assert_int_equal(r.n, GENERATED_COUNT);
    assert_true(r.n_compact > GENERATED_COUNT / 2); /* real traffic is mostly compact */
    run_fini(&r);
}

/* Compact forms real traffic here does not produce (archive ids are
 * server-specific; a UUID one is Prosody's style). */
static const char extras[] =
    "<message to='juliet@capulet.lit/balcony' from='juliet@capulet.lit'>"
    "<result xmlns='urn:xmpp:mam:2' queryid='q1' id='" "5f3a0c1e-9d8b-4a7c-b6e5-d4c3b2a19080" "'>"
    "<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>"
    "<message xmlns='jabber:client' from='juliet@capulet.lit' to='romeo@montague.lit'>"
    "<body>Hail</body></message></forwarded></result></message>";

/* Together, corpus, traffic and the extras meet every compact field at least
 * once, so the byte-identity check above covers each rewrite. */
static void test_every_compact_field_met(void **state)
{
    (void)state;
    run r;
    run_init(&r);
    feed_corpus(&r);
    feed_generated(&r);
    feed(&r, "extras", extras, sizeof extras - 1);
    for (size_t i = 0; i < N_COMPACT; i++)
        if (r.seen[i] == 0)
            fail_msg("no stanza has %s.%s", compact_fields[i].msg, compact_fields[i].field);
    run_fini(&r);
}

/* ---- Table cases: specific plain values ------------------------------------ */
typedef struct one {
    xpb_arena *a;
    bool plain;
    xpb_stanza *st;
    int rc;
} one;

static int keep_one(void *ud, const xpb_node *el)
{
    one *o = ud;
    assert_null(o->st);
    o->rc = o->plain ? xpb_stanza_from_xml_plain(o->a, el, &o->st)
                     : xpb_stanza_from_xml(o->a, el, &o->st);
    return 0;
}

static xpb_stanza *read_one(xpb_arena *a, const char *xml, bool plain)
{
    one o = {a, plain, NULL, 0};
    xpb_reader_callbacks cb = {.stanza = keep_one};
    xpb_reader *rd = NULL;
    assert_int_equal(xpb_reader_new(&rd, XPB_READER_FRAGMENTS, NULL, &cb, &o), 0);
    assert_int_equal(xpb_reader_feed(rd, xml, strlen(xml)), 0);
    xpb_reader_free(rd);
    assert_int_equal(o.rc, 0);
    assert_non_null(o.st);
    return o.st;
}

static xpb_stanza *parse_one_plain(xpb_arena *a, const char *xml)
{
    return read_one(a, xml, true);
}

/* The compact record of the single stanza in xml; *xml_out its XML. */
static xpb_stanza *parse_one(xpb_arena *a, const char *xml, xpb_buf *xml_out)
{
    xpb_stanza *st = read_one(a, xml, false);
    assert_int_equal(xpb_stanza_to_xml(xml_out, st, "", NULL, NULL, 0), 0);
    return st;
}

/* Expands st, asserts it left nothing compact and writes what xml holds. */
static void expand_ok(xpb_arena *a, xpb_stanza *st, const xpb_buf *xml)
{
    size_t seen[N_COMPACT] = {0};
    assert_true(count_compact(&st->base, seen) > 0);
    assert_int_equal(xpb_stanza_expand(a, st), 0);
    assert_int_equal(count_compact(&st->base, seen), 0);
    assert_int_equal(xpb_stanza_check(st, NULL, NULL, 0), 0);
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_stanza_to_xml(&b, st, "", NULL, NULL, 0), 0);
    assert_int_equal(b.len, xml->len);
    assert_memory_equal(b.data, xml->data, b.len);
    xpb_buf_free(&b);
}

typedef struct fixture {
    xpb_arena *a;
    xpb_buf xml;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL || (f->a = xpb_arena_new(0)) == NULL) return -1;
    xpb_buf_init(&f->xml, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    xpb_arena_free(f->a);
    xpb_buf_free(&f->xml);
    free(f);
    return 0;
}

#define UUID1 "0f8e5c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
#define UUID2 "e0ffe42b-28cf-4c4a-a5e6-7c9b5a6f3e10"
#define UUID3 "5f3a0c1e-9d8b-4a7c-b6e5-d4c3b2a19080"

/* UUID ids back to strings; origin-id from the flag; stanza-id by from a
 * reference to the bare to. */
static void test_ids(void **state)
{
    fixture *f = *state;
    xpb_stanza *st = parse_one(f->a,
        "<message id='" UUID1 "' from='romeo@montague.lit/orchard' to='juliet@capulet.lit/balcony'"
        " type='chat'><body>hi</body><thread>" UUID2 "</thread>"
        "<received xmlns='urn:xmpp:receipts' id='" UUID3 "'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' id='" UUID3 "' by='juliet@capulet.lit'/>"
        "<origin-id xmlns='urn:xmpp:sid:0' id='" UUID1 "'/></message>", &f->xml);
    assert_true(st->has_id_uuid && st->id == NULL);
    assert_true(st->has_origin_id_is_id && st->origin_id_is_id);
    assert_true(st->thread->has_id_uuid);
    assert_true(st->has_receipt_received_uuid);
    assert_true(st->stanza_id[0]->has_by_ref);
    assert_int_equal(st->stanza_id[0]->by_ref, XPB__V1__JID_REF__JID_REF_TO_BARE);
    expand_ok(f->a, st, &f->xml);
    assert_string_equal(st->id, UUID1);
    assert_string_equal(st->origin_id, UUID1);
    assert_false(st->has_origin_id_is_id);
    assert_string_equal(st->thread->id, UUID2);
    assert_string_equal(st->receipt_received, UUID3);
    assert_string_equal(st->stanza_id[0]->id, UUID3);
    assert_string_equal(st->stanza_id[0]->by, "juliet@capulet.lit");
    assert_string_equal(st->from, "romeo@montague.lit/orchard");
    assert_string_equal(st->to, "juliet@capulet.lit/balcony");
}

/* XEP-0280: the outer from is the bare outer to; the inner to is the outer
 * to; a sent carbon's inner from is the outer to, itself a reference. */
static void test_carbons(void **state)
{
    fixture *f = *state;
    xpb_stanza *st = parse_one(f->a,
        "<message from='juliet@capulet.lit' to='juliet@capulet.lit/balcony' type='chat'>"
        "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message xmlns='jabber:client' from='romeo@montague.lit/orchard'"
        " to='juliet@capulet.lit/balcony' type='chat'>"
        "<body>x</body></message></forwarded></received></message>", &f->xml);
    xpb_stanza *in = st->carbon->forwarded->stanza;
    assert_true(st->has_from_ref);
    assert_int_equal(st->from_ref, XPB__V1__JID_REF__JID_REF_TO_BARE);
    assert_true(in->has_to_ref);
    assert_int_equal(in->to_ref, XPB__V1__JID_REF__JID_REF_OUTER_TO);
    expand_ok(f->a, st, &f->xml);
    assert_string_equal(st->from, "juliet@capulet.lit");
    assert_string_equal(st->to, "juliet@capulet.lit/balcony");
    assert_string_equal(in->from, "romeo@montague.lit/orchard");
    assert_string_equal(in->to, "juliet@capulet.lit/balcony");

    xpb_buf_reset(&f->xml);
    st = parse_one(f->a,
        "<message from='juliet@capulet.lit/balcony' to='juliet@capulet.lit' type='chat'>"
        "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message xmlns='jabber:client' from='juliet@capulet.lit' to='romeo@montague.lit' type='chat'>"
        "<body>y</body></message></forwarded></sent></message>", &f->xml);
    in = st->carbon->forwarded->stanza;
    assert_int_equal(st->to_ref, XPB__V1__JID_REF__JID_REF_FROM_BARE);
    assert_int_equal(in->from_ref, XPB__V1__JID_REF__JID_REF_OUTER_TO);
    expand_ok(f->a, st, &f->xml);
    assert_string_equal(st->to, "juliet@capulet.lit");
    assert_string_equal(in->from, "juliet@capulet.lit");
    assert_string_equal(in->to, "romeo@montague.lit");
}

/* XEP-0313: queryid UUID, forwarded delay stamp, inner JIDs from the outer. */
static void test_mam(void **state)
{
    fixture *f = *state;
    xpb_stanza *st = parse_one(f->a,
        "<message to='juliet@capulet.lit/balcony' from='juliet@capulet.lit'>"
        "<result xmlns='urn:xmpp:mam:2' queryid='" UUID2 "' id='28482-98726-73623'>"
        "<forwarded xmlns='urn:xmpp:forward:0'>"
        "<delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>"
        "<message xmlns='jabber:client' from='juliet@capulet.lit/balcony' to='romeo@montague.lit'"
        " type='chat'>"
        "<body>Hail</body></message></forwarded></result></message>", &f->xml);
    Xpb__V1__MamResult *m = st->mam_result;
    assert_true(m->has_queryid_uuid && !m->has_id_uuid);
    assert_true(m->forwarded->delay->has_stamp_seconds);
    assert_int_equal(m->forwarded->delay->stamp_seconds, 1278803305);
    assert_int_equal(m->forwarded->stanza->from_ref, XPB__V1__JID_REF__JID_REF_OUTER_TO);
    expand_ok(f->a, st, &f->xml);
    assert_string_equal(m->queryid, UUID2);
    assert_string_equal(m->id, "28482-98726-73623");
    assert_string_equal(m->forwarded->delay->stamp, "2010-07-10T23:08:25Z");
    assert_false(m->forwarded->delay->has_stamp_seconds);
    assert_string_equal(m->forwarded->stanza->from, "juliet@capulet.lit/balcony");
}

/* XEP-0203 delay: stamp text and a from that was the bare stanza from;
 * a stamp with a fraction was never compact and stays as it was. */
static void test_delay(void **state)
{
    fixture *f = *state;
    xpb_stanza *st = parse_one(f->a,
        "<message from='coven@chat.shakespeare.lit/firstwitch' to='hecate@shakespeare.lit/broom'"
        " type='groupchat'><body>Thrice</body><delay xmlns='urn:xmpp:delay'"
        " from='coven@chat.shakespeare.lit' stamp='0000-01-01T00:00:00Z'/></message>", &f->xml);
    assert_int_equal(st->delay->from_ref, XPB__V1__JID_REF__JID_REF_FROM_BARE);
    assert_true(st->delay->has_stamp_seconds);
    expand_ok(f->a, st, &f->xml);
    assert_string_equal(st->delay->from, "coven@chat.shakespeare.lit");
    assert_string_equal(st->delay->stamp, "0000-01-01T00:00:00Z");

    xpb_buf_reset(&f->xml);
    st = parse_one(f->a,
        "<message from='a@b.c/r' to='d@e.f'><delay xmlns='urn:xmpp:delay' from='b.c'"
        " stamp='2002-10-13T23:58:37.123Z'/></message>", &f->xml);
    assert_false(st->delay->has_stamp_seconds);
    assert_int_equal(st->delay->from_ref, XPB__V1__JID_REF__JID_REF_FROM_DOMAIN);
    expand_ok(f->a, st, &f->xml);
    assert_string_equal(st->delay->stamp, "2002-10-13T23:58:37.123Z");
    assert_string_equal(st->delay->from, "b.c");
}

/* XEP-0199: a server ping's from is the domain of the to. */
static void test_ping_domain(void **state)
{
    fixture *f = *state;
    xpb_stanza *st = parse_one(f->a,
        "<iq from='capulet.lit' to='juliet@capulet.lit/balcony' id='s2c1' type='get'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>", &f->xml);
    assert_int_equal(st->from_ref, XPB__V1__JID_REF__JID_REF_TO_DOMAIN);
    expand_ok(f->a, st, &f->xml);
    assert_string_equal(st->from, "capulet.lit");
    assert_string_equal(st->id, "s2c1");
}

/* XEP-0030: dictionary and other vars back in document order. */
static void test_disco_features(void **state)
{
    fixture *f = *state;
    static const char *const want[] = {
        "http://jabber.org/protocol/disco#info", "urn:example:custom",
        "http://jabber.org/protocol/muc", "jabber:iq:register", "x-other", "urn:xmpp:ping",
    };
    xpb_stanza *st = parse_one(f->a,
        "<iq type='result' id='info1' from='plays.shakespeare.lit' to='romeo@montague.net/orchard'>"
        "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='conference'"
        " type='text'/><feature var='http://jabber.org/protocol/disco#info'/>"
        "<feature var='urn:example:custom'/><feature var='http://jabber.org/protocol/muc'/>"
        "<feature var='jabber:iq:register'/><feature var='x-other'/>"
        "<feature var='urn:xmpp:ping'/></query></iq>", &f->xml);
    Xpb__V1__DiscoInfo *d = st->disco_info;
    assert_int_equal(d->n_feature_id, 6);
    assert_int_equal(d->n_feature, 2);
    expand_ok(f->a, st, &f->xml);
    assert_int_equal(d->n_feature_id, 0);
    assert_int_equal(d->n_feature, 6);
    for (size_t i = 0; i < 6; i++) assert_string_equal(d->feature[i], want[i]);
}

/* §7.6 enums are typed fields: expansion leaves them. */
static void test_enums_stay(void **state)
{
    fixture *f = *state;
    xpb_stanza *st = parse_one(f->a,
        "<presence from='coven@chat.shakespeare.lit/thirdwitch' to='hag66@shakespeare.lit/pda'>"
        "<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member'"
        " role='participant'/></x><c xmlns='http://jabber.org/protocol/caps' hash='sha-1'"
        " node='http://x.example' ver='abc='/></presence>", &f->xml);
    size_t seen[N_COMPACT] = {0};
    assert_int_equal(count_compact(&st->base, seen), 0);
    assert_int_equal(xpb_stanza_expand(f->a, st), 0);
    assert_true(st->muc_user->item[0]->has_affiliation_enum);
    assert_null(st->muc_user->item[0]->affiliation);
    assert_true(st->muc_user->item[0]->has_role_enum);
    assert_true(st->caps->has_hash_enum);
    assert_null(st->caps->hash);
}

/* from_xml_plain = from_xml + expand: same record bytes. */
static void test_from_xml_plain(void **state)
{
    fixture *f = *state;
    static const char xml[] =
        "<message id='" UUID1 "' from='a@b.c/d' to='a@b.c'><origin-id xmlns='urn:xmpp:sid:0'"
        " id='" UUID1 "'/></message>";
    xpb_stanza *st = parse_one(f->a, xml, &f->xml);
    assert_int_equal(xpb_stanza_expand(f->a, st), 0);
    xpb_stanza *plain = parse_one_plain(f->a, xml);
    assert_string_equal(plain->to, "a@b.c");
    assert_string_equal(plain->origin_id, UUID1);
    xpb_buf want, got;
    xpb_buf_init(&want, 0);
    xpb_buf_init(&got, 0);
    assert_int_equal(xpb_stanza_pack(&want, st), 0);
    assert_int_equal(xpb_stanza_pack(&got, plain), 0);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, got.len);
    xpb_buf_free(&want);
    xpb_buf_free(&got);

    xpb_node el = {.kind = XPB_NODE_ELEMENT, .ns = XPB_NS_CLIENT, .name = "message"};
    plain = (xpb_stanza *)&el;
    assert_int_equal(xpb_stanza_from_xml_plain(f->a, NULL, &plain), XPB_EINVAL);
    assert_null(plain);
    assert_int_equal(xpb_stanza_from_xml_plain(f->a, &el, NULL), XPB_EINVAL);
    assert_int_equal(xpb_stanza_from_xml_plain(f->a, &el, &plain), 0);
    assert_non_null(plain);
}

/* ---- Records that cannot be expanded --------------------------------------- */
static uint8_t uuid_bytes[16] = {0x0f, 0x8e, 0x5c, 0x3a, 0x1b, 0x2c, 0x4d, 0x5e,
                                 0x8f, 0x90, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6};

static void msg_init(xpb_stanza *st)
{
    xpb__v1__stanza__init(st);
    st->has_kind = 1;
    st->kind = XPB__V1__KIND__KIND_MESSAGE;
}

typedef void (*spoil_fn)(xpb_stanza *st, Xpb__V1__Delay *d, Xpb__V1__DiscoInfo *di);

static void bad_outer_ref(xpb_stanza *st, Xpb__V1__Delay *d, Xpb__V1__DiscoInfo *di)
{
    (void)d, (void)di;
    st->has_from_ref = 1;
    st->from_ref = XPB__V1__JID_REF__JID_REF_OUTER_TO; /* nothing forwards it */
}
static void bad_ref_cycle(xpb_stanza *st, Xpb__V1__Delay *d, Xpb__V1__DiscoInfo *di)
{
    (void)d, (void)di;
    st->has_from_ref = st->has_to_ref = 1;
    st->from_ref = XPB__V1__JID_REF__JID_REF_TO;
    st->to_ref = XPB__V1__JID_REF__JID_REF_FROM;
}
static void bad_ref_value(xpb_stanza *st, Xpb__V1__Delay *d, Xpb__V1__DiscoInfo *di)
{
    (void)d, (void)di;
    st->to = "a@b.c";
    st->has_from_ref = 1;
    st->from_ref = (Xpb__V1__JidRef)99;
}
static void bad_both_from(xpb_stanza *st, Xpb__V1__Delay *d, Xpb__V1__DiscoInfo *di)
{
    (void)d, (void)di;
    st->from = st->to = "a@b.c";
    st->has_from_ref = 1;
    st->from_ref = XPB__V1__JID_REF__JID_REF_TO;
}
static void bad_uuid_len(xpb_stanza *st, Xpb__V1__Delay *d, Xpb__V1__DiscoInfo *di)
{
    (void)d, (void)di;
    st->has_id_uuid = 1;
    st->id_uuid.data = uuid_bytes;
    st->id_uuid.len = 15;
}
static void bad_both_id(xpb_stanza *st, Xpb__V1__Delay *d, Xpb__V1__DiscoInfo *di)
{
    (void)d, (void)di;
    st->id = "x";
    st->has_id_uuid = 1;
    st->id_uuid.data = uuid_bytes;
    st->id_uuid.len = 16;
}
static void bad_origin_no_id(xpb_stanza *st, Xpb__V1__Delay *d, Xpb__V1__DiscoInfo *di)
{
    (void)d, (void)di;
    st->has_origin_id_is_id = st->origin_id_is_id = 1;
}
static void bad_stamp_range(xpb_stanza *st, Xpb__V1__Delay *d, Xpb__V1__DiscoInfo *di)
{
    (void)di;
    st->delay = d;
    d->has_stamp_seconds = 1;
    d->stamp_seconds = INT64_C(253402300800); /* 10000-01-01 */
}
static void bad_feature_id(xpb_stanza *st, Xpb__V1__Delay *d, Xpb__V1__DiscoInfo *di)
{
    (void)d;
    static uint32_t ids[] = {16, 9999};
    st->disco_info = di;
    di->feature_id = ids;
    di->n_feature_id = 2;
}
static void bad_feature_zeros(xpb_stanza *st, Xpb__V1__Delay *d, Xpb__V1__DiscoInfo *di)
{
    (void)d;
    static uint32_t ids[] = {16, 0, 0};
    static char *strs[] = {"urn:example:one"};
    st->disco_info = di;
    di->feature_id = ids;
    di->n_feature_id = 3;
    di->feature = strs;
    di->n_feature = 1;
}

static void test_refusals(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *what;
        spoil_fn spoil;
    } cases[] = {
        {"outer ref without a forwarding stanza", bad_outer_ref},
        {"from_ref and to_ref refer to each other", bad_ref_cycle},
        {"undefined JidRef", bad_ref_value},
        {"from and from_ref", bad_both_from},
        {"15-byte UUID", bad_uuid_len},
        {"id and id_uuid", bad_both_id},
        {"origin_id_is_id without id", bad_origin_no_id},
        {"stamp_seconds past 9999", bad_stamp_range},
        {"feature_id not in the dictionary", bad_feature_id},
        {"more zeros than feature strings", bad_feature_zeros},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        xpb_stanza st;
        Xpb__V1__Delay d;
        Xpb__V1__DiscoInfo di;
        msg_init(&st);
        xpb__v1__delay__init(&d);
        xpb__v1__disco_info__init(&di);
        cases[i].spoil(&st, &d, &di);
        /* The record check refuses each one too. */
        if (xpb_stanza_check(&st, NULL, NULL, 0) == 0) fail_msg("check accepts: %s", cases[i].what);
        int rc = xpb_stanza_expand(f->a, &st);
        if (rc != XPB_ERECORD)
            fail_msg("%s: expand gave %d (%s), want XPB_ERECORD", cases[i].what, rc, xpb_strerror(rc));
    }
    xpb_stanza st;
    msg_init(&st);
    assert_int_equal(xpb_stanza_expand(NULL, &st), XPB_EINVAL);
    assert_int_equal(xpb_stanza_expand(f->a, NULL), XPB_EINVAL);
}

/* origin_id_is_id = false means nothing: the flag goes, no origin-id appears. */
static void test_false_flag_cleared(void **state)
{
    fixture *f = *state;
    xpb_stanza st;
    msg_init(&st);
    st.id = "m1";
    st.has_origin_id_is_id = 1;
    st.origin_id_is_id = 0;
    xpb_buf x1, x2;
    xpb_buf_init(&x1, 0);
    xpb_buf_init(&x2, 0);
    assert_int_equal(xpb_stanza_to_xml(&x1, &st, "", NULL, NULL, 0), 0);
    assert_int_equal(xpb_stanza_expand(f->a, &st), 0);
    assert_false(st.has_origin_id_is_id);
    assert_null(st.origin_id);
    assert_int_equal(xpb_stanza_to_xml(&x2, &st, "", NULL, NULL, 0), 0);
    assert_int_equal(x1.len, x2.len);
    assert_memory_equal(x1.data, x2.data, x1.len);
    xpb_buf_free(&x1);
    xpb_buf_free(&x2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compact_field_list),
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_generated),
        cmocka_unit_test(test_every_compact_field_met),
        cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_carbons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mam, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_domain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disco_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enums_stay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_from_xml_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_false_flag_cleared, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
