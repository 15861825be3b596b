/* Tests for the stanza <-> record mapping (codec/stanza_from_xml.c,
 * codec/stanza_to_xml.c) and the namespace dictionary (codec/ns.c): XML ->
 * record -> protobuf bytes -> record -> XML, asserting typed fields and the
 * exact canonical output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_stanza.h"

#define CLIENT " xmlns='jabber:client'"
#define STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

/* ---- Harness ---------------------------------------------------------------- */

typedef struct parse_run {
    xpb_arena *a;
    xpb_stanza *st;
    int count;
    int rc;
} parse_run;

static int on_stanza(void *ud, const xpb_node *el)
{
    parse_run *r = ud;
    r->count++;
    r->rc = xpb_stanza_from_xml(r->a, el, &r->st);
    return 0;
}

/* One stanza from xml (FRAGMENTS mode), mapped into arena a. */
static xpb_stanza *parse_one(xpb_arena *a, const char *xml, size_t len)
{
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    parse_run run = {.a = a};
    xpb_reader *r = NULL;
    assert_int_equal(xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, &run), 0);
    int rc = xpb_reader_feed(r, xml, len);
    if (rc != 0) print_error("reader: %s\n", xpb_reader_error(r));
    xpb_reader_free(r);
    assert_int_equal(rc, 0);
    assert_int_equal(run.count, 1);
    assert_int_equal(run.rc, 0);
    assert_non_null(run.st);
    return run.st;
}

static uint8_t *pack(const xpb_stanza *st, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(&st->base);
    uint8_t *bytes = malloc(*len ? *len : 1);
    assert_non_null(bytes);
    assert_int_equal(protobuf_c_message_pack(&st->base, bytes), *len);
    return bytes;
}

/* record -> XML with parent_ns "" as a NUL-terminated malloc'd string. */
static char *to_xml(const xpb_stanza *st, const char *parent_ns)
{
    xpb_buf b;
    char err[256];
    xpb_buf_init(&b, 0);
    int rc = xpb_stanza_to_xml(&b, st, parent_ns, NULL, err, sizeof err);
    if (rc != 0) print_error("to_xml: %d %s\n", rc, err);
    assert_int_equal(rc, 0);
    assert_int_equal(xpb_buf_append(&b, "", 1), 0);
    return b.data;
}

typedef struct map_case {
    const char *name;
    const char *xml;    /* input, read in FRAGMENTS mode */
    const char *expect; /* canonical output, parent_ns "" */
    void (*check)(const xpb_stanza *st);
} map_case;

/* The whole pipeline for one case; then the output, read again, must give
 * the same record bytes (the canonical form is a fixed point). */
static void run_case(void **state)
{
    const map_case *c = *state;
    xpb_arena *a = xpb_arena_new(0);
    assert_non_null(a);
    xpb_stanza *st = parse_one(a, c->xml, strlen(c->xml));
    if (c->check) c->check(st);
    size_t len;
    uint8_t *bytes = pack(st, &len);
    Xpb__V1__Stanza *u = xpb__v1__stanza__unpack(NULL, len, bytes);
    assert_non_null(u);
    char *xml = to_xml(u, "");
    assert_string_equal(xml, c->expect);

    xpb_stanza *again = parse_one(a, xml, strlen(xml));
    size_t len2;
    uint8_t *bytes2 = pack(again, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(bytes2, bytes, len);

    free(bytes2);
    free(xml);
    xpb__v1__stanza__free_unpacked(u, NULL);
    free(bytes);
    xpb_arena_free(a);
}

/* ---- Per-case assertions ------------------------------------------------------ */

#define KIND(st, k) assert_int_equal((st)->kind, XPB__V1__KIND__KIND_##k)
#define TYPE(st, t)                       \
    do {                                  \
        assert_true((st)->has_type);      \
        assert_int_equal((st)->type, XPB__V1__STANZA_TYPE__TYPE_##t); \
    } while (0)
#define NO_GENERIC(st)                          \
    do {                                        \
        assert_int_equal((st)->n_extension, 0); \
        assert_int_equal((st)->n_order, 0);     \
        assert_null((st)->element);             \
    } while (0)

static void chk_body(const xpb_stanza *st)
{
    KIND(st, MESSAGE);
    TYPE(st, CHAT);
    assert_string_equal(st->id, "m1");
    assert_string_equal(st->from, "romeo@example.net/orchard");
    assert_string_equal(st->to, "juliet@example.com");
    assert_int_equal(st->n_body, 1);
    assert_null(st->body[0]->lang);
    assert_string_equal(st->body[0]->text, "Wherefore art thou?");
    assert_int_equal(st->n_extra_attr, 0);
    NO_GENERIC(st);
}

static void chk_full_message(const xpb_stanza *st)
{
    assert_string_equal(st->thread->id, "t1");
    assert_string_equal(st->thread->parent, "p1");
    assert_true(st->has_chat_state);
    assert_int_equal(st->chat_state, XPB__V1__CHAT_STATE__CHAT_STATE_ACTIVE);
    assert_true(st->has_receipt_request && st->receipt_request);
    assert_null(st->delay->stamp); /* compact: seconds since the epoch */
    assert_true(st->delay->has_stamp_seconds);
    assert_int_equal(st->delay->stamp_seconds, 1031699305);
    assert_null(st->delay->from); /* the domain of 'to' */
    assert_int_equal(st->delay->from_ref, XPB__V1__JID_REF__JID_REF_TO_DOMAIN);
    assert_string_equal(st->delay->text, "Offline Storage");
    assert_int_equal(st->n_stanza_id, 2);
    assert_null(st->stanza_id[0]->by); /* by = the bare JID of 'to' */
    assert_true(st->stanza_id[0]->has_by_ref);
    assert_int_equal(st->stanza_id[0]->by_ref, XPB__V1__JID_REF__JID_REF_TO_BARE);
    assert_string_equal(st->stanza_id[1]->by, "b@example.com");
    assert_string_equal(st->origin_id, "o1");
    NO_GENERIC(st);
}

static void chk_composing(const xpb_stanza *st)
{
    assert_int_equal(st->chat_state, XPB__V1__CHAT_STATE__CHAT_STATE_COMPOSING);
    assert_int_equal(st->n_body, 0);
    NO_GENERIC(st);
}

static void chk_received(const xpb_stanza *st)
{
    assert_string_equal(st->receipt_received, "m1");
    NO_GENERIC(st);
}

static void chk_groupchat(const xpb_stanza *st)
{
    TYPE(st, GROUPCHAT);
    assert_int_equal(st->n_body, 1);
    assert_int_equal(st->n_subject, 1);
    assert_string_equal(st->subject[0]->text, "topic");
    NO_GENERIC(st);
}

static void chk_presence(const xpb_stanza *st)
{
    KIND(st, PRESENCE);
    assert_false(st->has_type);
    assert_true(st->has_show);
    assert_int_equal(st->show, XPB__V1__SHOW__SHOW_AWAY);
    assert_int_equal(st->n_status, 1);
    assert_true(st->has_priority);
    assert_int_equal(st->priority, -5);
    NO_GENERIC(st);
}

static void chk_caps(const xpb_stanza *st)
{
    assert_null(st->caps->hash);
    assert_true(st->caps->has_hash_enum);
    assert_int_equal(st->caps->hash_enum, XPB__V1__CAPS__HASH__HASH_SHA_1);
    assert_string_equal(st->caps->ver, "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    assert_null(st->caps->ext);
    NO_GENERIC(st);
}

static void chk_muc(const xpb_stanza *st)
{
    assert_string_equal(st->muc->password, "secret");
    assert_true(st->muc->history->has_maxstanzas);
    assert_int_equal(st->muc->history->maxstanzas, 20);
    assert_false(st->muc->history->has_maxchars);
    NO_GENERIC(st);
}

static void chk_muc_user(const xpb_stanza *st)
{
    assert_int_equal(st->muc_user->n_item, 1);
    assert_null(st->muc_user->item[0]->affiliation);
    assert_int_equal(st->muc_user->item[0]->affiliation_enum,
                     XPB__V1__MUC_USER__AFFILIATION__AFFILIATION_MEMBER);
    assert_int_equal(st->muc_user->n_status, 2);
    assert_int_equal(st->muc_user->status[0], 110);
    assert_int_equal(st->muc_user->status[1], 210);
    NO_GENERIC(st);
}

static void chk_muc_user_generic(const xpb_stanza *st)
{
    assert_null(st->muc_user);
    assert_int_equal(st->n_extension, 1);
    assert_true(st->extension[0]->has_ns_id);
    assert_int_equal(st->extension[0]->ns_id, xpb_ns_id("http://jabber.org/protocol/muc#user"));
}

static void chk_roster_get(const xpb_stanza *st)
{
    KIND(st, IQ);
    TYPE(st, GET);
    assert_non_null(st->roster);
    assert_int_equal(st->roster->n_item, 0);
    assert_null(st->roster->ver);
    NO_GENERIC(st);
}

static void chk_roster_result(const xpb_stanza *st)
{
    const Xpb__V1__RosterQuery *q = st->roster;
    assert_string_equal(q->ver, "ver11");
    assert_int_equal(q->n_item, 2);
    assert_int_equal(q->item[0]->subscription, XPB__V1__ROSTER_ITEM__SUBSCRIPTION__SUBSCRIPTION_BOTH);
    assert_int_equal(q->item[0]->n_group, 2);
    assert_string_equal(q->item[0]->group[1], "Work");
    assert_true(q->item[1]->has_ask_subscribe && q->item[1]->ask_subscribe);
    assert_true(q->item[1]->has_approved && q->item[1]->approved);
    NO_GENERIC(st);
}

static void chk_roster_push(const xpb_stanza *st)
{
    TYPE(st, SET);
    assert_int_equal(st->roster->item[0]->subscription,
                     XPB__V1__ROSTER_ITEM__SUBSCRIPTION__SUBSCRIPTION_REMOVE);
    NO_GENERIC(st);
}

static void chk_one_extension(const xpb_stanza *st)
{
    assert_int_equal(st->n_extension, 1);
    assert_null(st->roster);
    assert_null(st->error);
    assert_false(st->has_priority);
    assert_false(st->has_show);
}

static void chk_ping(const xpb_stanza *st)
{
    assert_true(st->has_ping && st->ping);
    NO_GENERIC(st);
}

static void chk_disco_info(const xpb_stanza *st)
{
    const Xpb__V1__DiscoInfo *d = st->disco_info;
    assert_string_equal(d->node, "http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w=");
    assert_int_equal(d->n_identity, 1);
    assert_string_equal(d->identity[0]->lang, "en");
    assert_int_equal(d->n_feature, 0); /* both vars are dictionary namespaces */
    assert_int_equal(d->n_feature_id, 2);
    assert_int_equal(d->feature_id[0], xpb_ns_id("http://jabber.org/protocol/disco#info"));
    assert_int_equal(d->feature_id[1], xpb_ns_id("urn:xmpp:ping"));
    assert_int_equal(d->n_extension, 1);
    assert_int_equal(d->extension[0]->ns_id, xpb_ns_id("jabber:x:data"));
    NO_GENERIC(st);
}

static void chk_disco_bad_feature(const xpb_stanza *st)
{
    const Xpb__V1__DiscoInfo *d = st->disco_info;
    assert_int_equal(d->n_feature, 1);
    assert_string_equal(d->feature[0], "a");
    assert_int_equal(d->n_extension, 2); /* the odd feature and everything after it */
    assert_false(d->extension[0]->has_ns_id); /* same namespace as the query */
    assert_string_equal(d->extension[0]->attr[0]->name, "vnr");
    NO_GENERIC(st);
}

static void chk_disco_items(const xpb_stanza *st)
{
    assert_int_equal(st->disco_items->n_item, 2);
    assert_string_equal(st->disco_items->item[1]->node, "n1");
    assert_null(st->disco_items->item[1]->name);
    NO_GENERIC(st);
}

static void chk_error_simple(const xpb_stanza *st)
{
    const Xpb__V1__StanzaError *e = st->error;
    assert_int_equal(e->type, XPB__V1__ERROR_TYPE__ERROR_TYPE_CANCEL);
    assert_int_equal(e->condition, XPB__V1__ERROR_CONDITION__CONDITION_SERVICE_UNAVAILABLE);
    assert_null(e->text);
    NO_GENERIC(st);
}

static void chk_error_text(const xpb_stanza *st)
{
    const Xpb__V1__StanzaError *e = st->error;
    assert_string_equal(e->by, "example.com");
    assert_string_equal(e->text->lang, "en");
    assert_string_equal(e->text->text, "Bad");
    NO_GENERIC(st);
}

static void chk_error_gone(const xpb_stanza *st)
{
    assert_int_equal(st->error->condition, XPB__V1__ERROR_CONDITION__CONDITION_GONE);
    assert_string_equal(st->error->condition_uri, "xmpp:new@example.com");
    NO_GENERIC(st);
}

static void chk_error_app(const xpb_stanza *st)
{
    const Xpb__V1__StanzaError *e = st->error;
    assert_string_equal(e->code, "501");
    assert_int_equal(e->n_application, 1);
    assert_false(e->application[0]->has_ns_id);
    assert_string_equal(e->application[0]->ns, "http://jabber.org/protocol/pubsub#errors");
    NO_GENERIC(st);
}

static void chk_error_raw_type(const xpb_stanza *st)
{
    assert_false(st->error->has_type);
    assert_string_equal(st->error->type_raw, "bogus");
    NO_GENERIC(st);
}

static void chk_carbon(const xpb_stanza *st)
{
    const Xpb__V1__Carbon *c = st->carbon;
    assert_int_equal(c->direction, XPB__V1__CARBON__DIRECTION__DIRECTION_RECEIVED);
    const xpb_stanza *in = c->forwarded->stanza;
    KIND(in, MESSAGE);
    assert_string_equal(in->from, "b@example.com/x");
    assert_true(st->has_from_ref); /* outer from = bare JID of the outer to */
    assert_int_equal(st->from_ref, XPB__V1__JID_REF__JID_REF_TO_BARE);
    assert_null(st->from);
    assert_string_equal(in->body[0]->text, "Hi");
    assert_non_null(in->thread);
    NO_GENERIC(st);
}

static void chk_carbon_sent(const xpb_stanza *st)
{
    assert_int_equal(st->carbon->direction, XPB__V1__CARBON__DIRECTION__DIRECTION_SENT);
    assert_null(st->carbon->forwarded->delay);
    NO_GENERIC(st);
}

static void chk_mam(const xpb_stanza *st)
{
    const Xpb__V1__MamResult *m = st->mam_result;
    assert_string_equal(m->queryid, "f27");
    assert_int_equal(m->forwarded->delay->stamp_seconds, 1278803305);
    assert_null(m->forwarded->delay->text);
    assert_string_equal(m->forwarded->stanza->body[0]->text, "Hail to thee");
    NO_GENERIC(st);
}

static void chk_unknown_ext(const xpb_stanza *st)
{
    assert_int_equal(st->n_body, 1);
    assert_int_equal(st->n_extension, 1);
    const Xpb__V1__Element *e = st->extension[0];
    assert_string_equal(e->ns, "urn:example:foo");
    assert_int_equal(e->n_attr, 1);
    assert_null(e->attr[0]->ns);
    assert_false(e->attr[0]->has_ns_id);
    const Xpb__V1__Element *bar = e->child[0]->element;
    assert_false(bar->has_ns_id); /* same namespace as its parent */
    assert_null(bar->ns);
    assert_int_equal(st->n_order, 0);
}

static void chk_mixed(const xpb_stanza *st)
{
    KIND(st, MESSAGE);
    assert_non_null(st->element);
    assert_false(st->element->has_ns_id);
    assert_null(st->element->ns);
    assert_int_equal(st->element->n_child, 3);
    assert_string_equal(st->element->child[0]->text, "hello");
    assert_int_equal(st->n_body, 0);
}

static void chk_indented(const xpb_stanza *st)
{
    assert_int_equal(st->n_body, 1);
    NO_GENERIC(st);
}

static void chk_lang(const xpb_stanza *st)
{
    assert_string_equal(st->lang, "en");
    assert_int_equal(st->n_body, 2);
    assert_null(st->body[0]->lang);
    assert_string_equal(st->body[1]->lang, "de");
    NO_GENERIC(st);
}

static void chk_ns_attrs(const xpb_stanza *st)
{
    assert_int_equal(st->n_extra_attr, 1);
    assert_string_equal(st->extra_attr[0]->ns, "urn:example:e");
    assert_string_equal(st->extra_attr[0]->name, "flag");
    assert_int_equal(st->n_body, 0); /* a foreign attribute makes body generic */
    assert_int_equal(st->n_extension, 1);
}

static void chk_xml_attr(const xpb_stanza *st)
{
    assert_int_equal(st->n_extra_attr, 1);
    assert_true(st->extra_attr[0]->has_ns_id);
    assert_int_equal(st->extra_attr[0]->ns_id, 2);
    assert_string_equal(st->extra_attr[0]->name, "space");
}

static void chk_out_of_order(const xpb_stanza *st)
{
    assert_int_equal(st->n_order, 2);
    assert_int_equal(st->order[0], 20);
    assert_int_equal(st->order[1], 10);
    assert_int_equal(st->n_extension, 0);
}

static void chk_dup_thread(const xpb_stanza *st)
{
    assert_string_equal(st->thread->id, "t1");
    assert_int_equal(st->n_extension, 1);
    assert_string_equal(st->extension[0]->name, "thread");
    assert_int_equal(st->n_order, 0);
}

static void chk_dup_priority(const xpb_stanza *st)
{
    assert_int_equal(st->priority, 1);
    assert_int_equal(st->show, XPB__V1__SHOW__SHOW_DND);
    assert_int_equal(st->n_extension, 1);
    assert_int_equal(st->n_order, 3);
    assert_int_equal(st->order[0], 15);
    assert_int_equal(st->order[1], 13);
    assert_int_equal(st->order[2], 50);
}

static void chk_raw_type(const xpb_stanza *st)
{
    assert_false(st->has_type);
    assert_string_equal(st->type_raw, "urgent");
}

static void chk_no_ns_child(const xpb_stanza *st)
{
    const Xpb__V1__Element *y = st->extension[0]->child[0]->element;
    assert_false(y->has_ns_id);
    assert_non_null(y->ns);
    assert_string_equal(y->ns, "");
}

static void chk_other(const xpb_stanza *st)
{
    KIND(st, OTHER);
    assert_true(st->element->has_ns_id);
    assert_int_equal(st->element->ns_id, 53);
    assert_string_equal(xpb_ns_uri(53), "urn:xmpp:sm:3");
}

static void chk_empty_body(const xpb_stanza *st)
{
    assert_int_equal(st->n_body, 1);
    assert_string_equal(st->body[0]->text, "");
    NO_GENERIC(st);
}

static void chk_escapes(const xpb_stanza *st)
{
    assert_string_equal(st->id, "a'b\"c");
    assert_string_equal(st->body[0]->text, "a & b < c > d");
}

static void chk_unavailable(const xpb_stanza *st)
{
    TYPE(st, UNAVAILABLE);
    assert_string_equal(st->status[0]->lang, "fr");
    NO_GENERIC(st);
}

static void chk_extra_plain(const xpb_stanza *st)
{
    assert_int_equal(st->n_extra_attr, 1);
    assert_null(st->extra_attr[0]->ns);
    assert_string_equal(st->extra_attr[0]->value, "bar");
}

/* ---- The table ------------------------------------------------------------- */

#define ERR_NS " xmlns='" STANZAS "'"
#define FWD_NS " xmlns='urn:xmpp:forward:0'"

/* ---- Compact forms (docs/mapping.md §7) ------------------------------------------ */

static const uint8_t uuid_a[16] = {0x12, 0x30, 0x04, 0xef, 0x8d, 0xf5, 0x40, 0xe6,
                                   0xa1, 0x95, 0x4d, 0xcc, 0x47, 0xb1, 0xe8, 0x9d};

static void assert_uuid(protobuf_c_boolean has, ProtobufCBinaryData b, const uint8_t *want)
{
    assert_true(has);
    assert_int_equal(b.len, 16);
    assert_memory_equal(b.data, want, 16);
}

static void chk_uuid_ids(const xpb_stanza *st)
{
    assert_null(st->id);
    assert_uuid(st->has_id_uuid, st->id_uuid, uuid_a);
    assert_true(st->has_origin_id_is_id && st->origin_id_is_id);
    assert_null(st->origin_id);
    assert_false(st->has_origin_id_uuid);
    assert_int_equal(st->n_stanza_id, 1);
    assert_null(st->stanza_id[0]->id);
    assert_true(st->stanza_id[0]->has_id_uuid);
    assert_int_equal(st->stanza_id[0]->by_ref, XPB__V1__JID_REF__JID_REF_FROM_BARE);
    assert_true(st->thread->has_id_uuid);
    assert_null(st->thread->id);
    NO_GENERIC(st);
}

/* Uppercase, braces, missing dashes, wrong length: not canonical, kept as strings. */
static void chk_uuid_not_canonical(const xpb_stanza *st)
{
    assert_string_equal(st->id, "123004EF-8DF5-40E6-A195-4DCC47B1E89D");
    assert_false(st->has_id_uuid);
    assert_string_equal(st->receipt_received, "123004ef8df540e6a1954dcc47b1e89d");
    assert_false(st->has_receipt_received_uuid);
    assert_string_equal(st->origin_id, "{123004ef-8df5-40e6-a195-4dcc47b1e89d}");
    assert_false(st->has_origin_id_is_id);
    NO_GENERIC(st);
}

static void chk_uuid_receipt(const xpb_stanza *st)
{
    assert_string_equal(st->id, "r1");
    assert_uuid(st->has_receipt_received_uuid, st->receipt_received_uuid, uuid_a);
    assert_uuid(st->has_origin_id_uuid, st->origin_id_uuid, uuid_a); /* differs from id */
    assert_false(st->has_origin_id_is_id);
    NO_GENERIC(st);
}

static void chk_ping_domain_ref(const xpb_stanza *st)
{
    assert_null(st->from);
    assert_true(st->has_from_ref);
    assert_int_equal(st->from_ref, XPB__V1__JID_REF__JID_REF_TO_DOMAIN);
    assert_string_equal(st->to, "erin@chat.example.de/work pc");
    assert_false(st->has_to_ref);
}

static void chk_to_from_ref(const xpb_stanza *st)
{
    assert_null(st->from);
    assert_int_equal(st->from_ref, XPB__V1__JID_REF__JID_REF_TO);
    assert_non_null(st->to);
    assert_string_equal(st->to, "chat.example.de");
    assert_false(st->has_to_ref); /* never both within a stanza */
}

static void chk_delay_compact(const xpb_stanza *st)
{
    assert_int_equal(st->delay->stamp_seconds, -62135596800 + 59); /* 0001-01-01T00:00:59Z */
    assert_int_equal(st->delay->from_ref, XPB__V1__JID_REF__JID_REF_FROM_BARE);
    assert_null(st->delay->from);
}

static void chk_delay_strings(const xpb_stanza *st)
{
    assert_string_equal(st->delay->stamp, "2024-02-30T00:00:00Z"); /* no such day */
    assert_false(st->delay->has_stamp_seconds);
    assert_string_equal(st->delay->from, "other.example");
    assert_false(st->delay->has_from_ref);
}

static void chk_mam_refs(const xpb_stanza *st)
{
    const Xpb__V1__MamResult *m = st->mam_result;
    assert_uuid(m->has_queryid_uuid, m->queryid_uuid, uuid_a);
    assert_string_equal(m->id, "28482-98726-73623");
    const xpb_stanza *in = m->forwarded->stanza;
    assert_int_equal(in->from_ref, XPB__V1__JID_REF__JID_REF_OUTER_TO);
    assert_int_equal(in->to_ref, XPB__V1__JID_REF__JID_REF_OUTER_TO_BARE); /* outer refs first */
    assert_null(in->from);
    assert_null(in->to);
    assert_true(in->has_origin_id_is_id && in->origin_id_is_id);
}

static void chk_carbon_refs(const xpb_stanza *st)
{
    const xpb_stanza *in = st->carbon->forwarded->stanza;
    assert_int_equal(st->from_ref, XPB__V1__JID_REF__JID_REF_TO_BARE);
    assert_string_equal(in->from, "b@example.com/x");
    assert_int_equal(in->to_ref, XPB__V1__JID_REF__JID_REF_OUTER_FROM);
}

static void chk_disco_mixed(const xpb_stanza *st)
{
    const Xpb__V1__DiscoInfo *d = st->disco_info;
    assert_int_equal(d->n_feature, 2);
    assert_string_equal(d->feature[0], "urn:example:one");
    assert_string_equal(d->feature[1], "urn:xmpp:avatar:metadata+notify");
    assert_int_equal(d->n_feature_id, 4);
    assert_int_equal(d->feature_id[0], 0);
    assert_int_equal(d->feature_id[1], xpb_ns_id("urn:xmpp:ping"));
    assert_int_equal(d->feature_id[2], 0);
    assert_int_equal(d->feature_id[3], xpb_ns_id("urn:xmpp:receipts"));
}

static void chk_disco_unknown_only(const xpb_stanza *st)
{
    assert_int_equal(st->disco_info->n_feature, 1);
    assert_int_equal(st->disco_info->n_feature_id, 0); /* costs nothing */
}

static void chk_muc_enums(const xpb_stanza *st)
{
    const Xpb__V1__MucUser__Item *it = st->muc_user->item[0];
    assert_int_equal(it->role_enum, XPB__V1__MUC_USER__ROLE__ROLE_PARTICIPANT);
    assert_null(it->role);
    assert_false(it->has_affiliation_enum);
    assert_string_equal(it->affiliation, "Member"); /* not a defined value */
    assert_string_equal(st->caps->hash, "sha3-256");
    assert_false(st->caps->has_hash_enum);
}

static const map_case cases[] = {
    {"uuid_ids_origin_is_id_by_from_bare",
     "<message from='room@muc.example.com/nick' to='a@example.com/r' type='groupchat' "
     "id='123004ef-8df5-40e6-a195-4dcc47b1e89d'><body>x</body><thread>123004ef-8df5-40e6-a195-4dcc47b1e89d</thread>"
     "<stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example.com' "
     "id='f4f55300-ca24-42f7-a603-4bc0bdee2210'/><origin-id xmlns='urn:xmpp:sid:0' id='123004ef-8df5-40e6-a195-4dcc47b1e89d'/>"
     "</message>",
     "<message" CLIENT " type='groupchat' id='123004ef-8df5-40e6-a195-4dcc47b1e89d' from='room@muc.example.com/nick' "
     "to='a@example.com/r'><body>x</body><thread>123004ef-8df5-40e6-a195-4dcc47b1e89d</thread>"
     "<stanza-id xmlns='urn:xmpp:sid:0' id='f4f55300-ca24-42f7-a603-4bc0bdee2210' "
     "by='room@muc.example.com'/><origin-id xmlns='urn:xmpp:sid:0' id='123004ef-8df5-40e6-a195-4dcc47b1e89d'/></message>",
     chk_uuid_ids},
    {"uuid_not_canonical_stays_string",
     "<message id='123004EF-8DF5-40E6-A195-4DCC47B1E89D'>"
     "<received xmlns='urn:xmpp:receipts' id='123004ef8df540e6a1954dcc47b1e89d'/>"
     "<origin-id xmlns='urn:xmpp:sid:0' id='{123004ef-8df5-40e6-a195-4dcc47b1e89d}'/></message>",
     "<message" CLIENT " id='123004EF-8DF5-40E6-A195-4DCC47B1E89D'>"
     "<received xmlns='urn:xmpp:receipts' id='123004ef8df540e6a1954dcc47b1e89d'/>"
     "<origin-id xmlns='urn:xmpp:sid:0' id='{123004ef-8df5-40e6-a195-4dcc47b1e89d}'/></message>",
     chk_uuid_not_canonical},
    {"uuid_receipt_and_origin",
     "<message id='r1'><received xmlns='urn:xmpp:receipts' id='123004ef-8df5-40e6-a195-4dcc47b1e89d'/>"
     "<origin-id xmlns='urn:xmpp:sid:0' id='123004ef-8df5-40e6-a195-4dcc47b1e89d'/></message>",
     "<message" CLIENT " id='r1'><received xmlns='urn:xmpp:receipts' id='123004ef-8df5-40e6-a195-4dcc47b1e89d'/>"
     "<origin-id xmlns='urn:xmpp:sid:0' id='123004ef-8df5-40e6-a195-4dcc47b1e89d'/></message>",
     chk_uuid_receipt},
    {"ping_from_is_domain_of_to",
     "<iq from='chat.example.de' to='erin@chat.example.de/work pc' type='get' id='p1'>"
     "<ping xmlns='urn:xmpp:ping'/></iq>",
     "<iq" CLIENT " type='get' id='p1' from='chat.example.de' to='erin@chat.example.de/work pc'>"
     "<ping xmlns='urn:xmpp:ping'/></iq>",
     chk_ping_domain_ref},
    {"to_equals_from",
     "<iq from='chat.example.de' to='chat.example.de' type='result' id='p2'/>",
     "<iq" CLIENT " type='result' id='p2' from='chat.example.de' to='chat.example.de'/>",
     chk_to_from_ref},
    {"delay_seconds_and_from_ref",
     "<message from='room@muc.example.com/nick'><delay xmlns='urn:xmpp:delay' "
     "stamp='0001-01-01T00:00:59Z' from='room@muc.example.com'/></message>",
     "<message" CLIENT " from='room@muc.example.com/nick'><delay xmlns='urn:xmpp:delay' "
     "stamp='0001-01-01T00:00:59Z' from='room@muc.example.com'/></message>",
     chk_delay_compact},
    {"delay_not_canonical_stays_string",
     "<message from='a@example.com'><delay xmlns='urn:xmpp:delay' "
     "stamp='2024-02-30T00:00:00Z' from='other.example'/></message>",
     "<message" CLIENT " from='a@example.com'><delay xmlns='urn:xmpp:delay' "
     "stamp='2024-02-30T00:00:00Z' from='other.example'/></message>",
     chk_delay_strings},
    {"mam_inner_refs",
     "<message to='juliet@capulet.lit/chamber'><result xmlns='urn:xmpp:mam:2' "
     "queryid='123004ef-8df5-40e6-a195-4dcc47b1e89d' id='28482-98726-73623'><forwarded xmlns='urn:xmpp:forward:0'>"
     "<delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25.123Z'/>"
     "<message xmlns='jabber:client' from='juliet@capulet.lit/chamber' to='juliet@capulet.lit' "
     "id='m1'><body>x</body><origin-id xmlns='urn:xmpp:sid:0' id='m1'/></message>"
     "</forwarded></result></message>",
     "<message" CLIENT " to='juliet@capulet.lit/chamber'><result xmlns='urn:xmpp:mam:2' "
     "queryid='123004ef-8df5-40e6-a195-4dcc47b1e89d' id='28482-98726-73623'><forwarded" FWD_NS ">"
     "<delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25.123Z'/>"
     "<message" CLIENT " id='m1' from='juliet@capulet.lit/chamber' to='juliet@capulet.lit'>"
     "<body>x</body><origin-id xmlns='urn:xmpp:sid:0' id='m1'/></message>"
     "</forwarded></result></message>",
     chk_mam_refs},
    {"carbon_inner_to_is_outer_from",
     "<message to='a@example.com/r' from='a@example.com' type='chat'>"
     "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
     "<message xmlns='jabber:client' from='b@example.com/x' to='a@example.com' type='chat'>"
     "<body>Hi</body></message></forwarded></received></message>",
     "<message" CLIENT " type='chat' from='a@example.com' to='a@example.com/r'>"
     "<received xmlns='urn:xmpp:carbons:2'><forwarded" FWD_NS ">"
     "<message" CLIENT " type='chat' from='b@example.com/x' to='a@example.com'>"
     "<body>Hi</body></message></forwarded></received></message>",
     chk_carbon_refs},
    {"disco_feature_ids_keep_order",
     "<iq type='result' id='d2'><query xmlns='http://jabber.org/protocol/disco#info'>"
     "<feature var='urn:example:one'/><feature var='urn:xmpp:ping'/>"
     "<feature var='urn:xmpp:avatar:metadata+notify'/><feature var='urn:xmpp:receipts'/>"
     "</query></iq>",
     "<iq" CLIENT " type='result' id='d2'><query xmlns='http://jabber.org/protocol/disco#info'>"
     "<feature var='urn:example:one'/><feature var='urn:xmpp:ping'/>"
     "<feature var='urn:xmpp:avatar:metadata+notify'/><feature var='urn:xmpp:receipts'/>"
     "</query></iq>",
     chk_disco_mixed},
    {"disco_unknown_features_only",
     "<iq type='result' id='d3'><query xmlns='http://jabber.org/protocol/disco#info'>"
     "<feature var='urn:example:one'/></query></iq>",
     "<iq" CLIENT " type='result' id='d3'><query xmlns='http://jabber.org/protocol/disco#info'>"
     "<feature var='urn:example:one'/></query></iq>",
     chk_disco_unknown_only},
    {"muc_role_enum_affiliation_string_caps_hash_string",
     "<presence><x xmlns='http://jabber.org/protocol/muc#user'>"
     "<item affiliation='Member' role='participant'/></x>"
     "<c xmlns='http://jabber.org/protocol/caps' hash='sha3-256' node='n' ver='v'/></presence>",
     "<presence" CLIENT "><x xmlns='http://jabber.org/protocol/muc#user'>"
     "<item affiliation='Member' role='participant'/></x>"
     "<c xmlns='http://jabber.org/protocol/caps' hash='sha3-256' node='n' ver='v'/></presence>",
     chk_muc_enums},
    {"message_body",
     "<message to='juliet@example.com' from='romeo@example.net/orchard' type='chat' "
     "id='m1'><body>Wherefore art thou?</body></message>",
     "<message" CLIENT " type='chat' id='m1' from='romeo@example.net/orchard' "
     "to='juliet@example.com'><body>Wherefore art thou?</body></message>",
     chk_body},
    {"message_typed_extensions",
     "<message type='chat' id='m2' to='a@example.com'><body>hi</body>"
     "<thread parent='p1'>t1</thread>"
     "<active xmlns='http://jabber.org/protocol/chatstates'/>"
     "<request xmlns='urn:xmpp:receipts'/>"
     "<delay xmlns='urn:xmpp:delay' from='example.com' stamp='2002-09-10T23:08:25Z'>"
     "Offline Storage</delay>"
     "<stanza-id xmlns='urn:xmpp:sid:0' id='s1' by='a@example.com'/>"
     "<stanza-id xmlns='urn:xmpp:sid:0' by='b@example.com' id='s2'/>"
     "<origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>",
     "<message" CLIENT " type='chat' id='m2' to='a@example.com'><body>hi</body>"
     "<thread parent='p1'>t1</thread>"
     "<active xmlns='http://jabber.org/protocol/chatstates'/>"
     "<request xmlns='urn:xmpp:receipts'/>"
     "<delay xmlns='urn:xmpp:delay' stamp='2002-09-10T23:08:25Z' from='example.com'>"
     "Offline Storage</delay>"
     "<stanza-id xmlns='urn:xmpp:sid:0' id='s1' by='a@example.com'/>"
     "<stanza-id xmlns='urn:xmpp:sid:0' id='s2' by='b@example.com'/>"
     "<origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>",
     chk_full_message},
    {"chat_state_composing",
     "<message type='chat' to='a@example.com'>"
     "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
     "<message" CLIENT " type='chat' to='a@example.com'>"
     "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
     chk_composing},
    {"receipt_received",
     "<message to='a@example.com' id='r2'><received xmlns='urn:xmpp:receipts' id='m1'/></message>",
     "<message" CLIENT " id='r2' to='a@example.com'>"
     "<received xmlns='urn:xmpp:receipts' id='m1'/></message>",
     chk_received},
    {"groupchat",
     "<message type='groupchat' to='room@muc.example.com' id='g1'><body>hello room</body>"
     "<subject>topic</subject></message>",
     "<message" CLIENT " type='groupchat' id='g1' to='room@muc.example.com'>"
     "<body>hello room</body><subject>topic</subject></message>",
     chk_groupchat},
    {"presence_show_status_priority",
     "<presence><show>away</show><status>gone fishing</status><priority>-5</priority></presence>",
     "<presence" CLIENT "><show>away</show><status>gone fishing</status>"
     "<priority>-5</priority></presence>",
     chk_presence},
    {"presence_caps",
     "<presence from='a@example.com/r'><c xmlns='http://jabber.org/protocol/caps' "
     "node='http://psi-im.org' ver='q07IKJEyjvHSyhy//CH0CxmKi8w=' hash='sha-1'/></presence>",
     "<presence" CLIENT " from='a@example.com/r'><c xmlns='http://jabber.org/protocol/caps' "
     "hash='sha-1' node='http://psi-im.org' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/></presence>",
     chk_caps},
    {"presence_muc_join",
     "<presence to='room@muc.example.com/nick'><x xmlns='http://jabber.org/protocol/muc'>"
     "<password>secret</password><history since='1970-01-01T00:00:00Z' maxstanzas='20'/>"
     "</x></presence>",
     "<presence" CLIENT " to='room@muc.example.com/nick'>"
     "<x xmlns='http://jabber.org/protocol/muc'><password>secret</password>"
     "<history maxstanzas='20' since='1970-01-01T00:00:00Z'/></x></presence>",
     chk_muc},
    {"presence_muc_user",
     "<presence from='room@muc.example.com/nick' to='a@example.com/r'>"
     "<x xmlns='http://jabber.org/protocol/muc#user'>"
     "<item affiliation='member' role='participant' jid='a@example.com/r'/>"
     "<status code='110'/><status code='210'/></x></presence>",
     "<presence" CLIENT " from='room@muc.example.com/nick' to='a@example.com/r'>"
     "<x xmlns='http://jabber.org/protocol/muc#user'>"
     "<item affiliation='member' role='participant' jid='a@example.com/r'/>"
     "<status code='110'/><status code='210'/></x></presence>",
     chk_muc_user},
    {"muc_user_item_with_reason_is_generic",
     "<presence><x xmlns='http://jabber.org/protocol/muc#user'><item role='none'>"
     "<reason>bye</reason></item></x></presence>",
     "<presence" CLIENT "><x xmlns='http://jabber.org/protocol/muc#user'><item role='none'>"
     "<reason>bye</reason></item></x></presence>",
     chk_muc_user_generic},
    {"iq_roster_get",
     "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
     "<iq" CLIENT " type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
     chk_roster_get},
    {"iq_roster_result",
     "<iq type='result' id='r1' to='a@example.com/r'><query xmlns='jabber:iq:roster' "
     "ver='ver11'><item name='B' jid='b@example.net' subscription='both'>"
     "<group>Friends</group><group>Work</group></item>"
     "<item jid='c@example.org' subscription='none' ask='subscribe' approved='true'/>"
     "</query></iq>",
     "<iq" CLIENT " type='result' id='r1' to='a@example.com/r'><query xmlns='jabber:iq:roster' "
     "ver='ver11'><item jid='b@example.net' name='B' subscription='both'>"
     "<group>Friends</group><group>Work</group></item>"
     "<item jid='c@example.org' subscription='none' ask='subscribe' approved='true'/>"
     "</query></iq>",
     chk_roster_result},
    {"iq_roster_push",
     "<iq type='set' id='p1'><query xmlns='jabber:iq:roster'>"
     "<item jid='b@example.net' subscription='remove'/></query></iq>",
     "<iq" CLIENT " type='set' id='p1'><query xmlns='jabber:iq:roster'>"
     "<item jid='b@example.net' subscription='remove'/></query></iq>",
     chk_roster_push},
    {"roster_unknown_subscription_is_generic",
     "<iq type='set' id='p2'><query xmlns='jabber:iq:roster'>"
     "<item jid='b@example.net' subscription='sometimes'/></query></iq>",
     "<iq" CLIENT " type='set' id='p2'><query xmlns='jabber:iq:roster'>"
     "<item jid='b@example.net' subscription='sometimes'/></query></iq>",
     chk_one_extension},
    {"iq_ping",
     "<iq type='get' id='ping1' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>",
     "<iq" CLIENT " type='get' id='ping1' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>",
     chk_ping},
    {"disco_info_with_form",
     "<iq type='result' id='d1'><query xmlns='http://jabber.org/protocol/disco#info' "
     "node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>"
     "<identity category='client' type='pc' name='Psi' xml:lang='en'/>"
     "<feature var='http://jabber.org/protocol/disco#info'/><feature var='urn:xmpp:ping'/>"
     "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>"
     "<value>urn:xmpp:dataforms:softwareinfo</value></field></x></query></iq>",
     "<iq" CLIENT " type='result' id='d1'><query xmlns='http://jabber.org/protocol/disco#info' "
     "node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>"
     "<identity category='client' type='pc' name='Psi' xml:lang='en'/>"
     "<feature var='http://jabber.org/protocol/disco#info'/><feature var='urn:xmpp:ping'/>"
     "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>"
     "<value>urn:xmpp:dataforms:softwareinfo</value></field></x></query></iq>",
     chk_disco_info},
    {"disco_feature_without_var",
     "<iq type='result' id='d3'><query xmlns='http://jabber.org/protocol/disco#info'>"
     "<feature var='a'/><feature vnr='b'/><feature var='c'/></query></iq>",
     "<iq" CLIENT " type='result' id='d3'><query xmlns='http://jabber.org/protocol/disco#info'>"
     "<feature var='a'/><feature vnr='b'/><feature var='c'/></query></iq>",
     chk_disco_bad_feature},
    {"disco_items",
     "<iq type='result' id='d2'><query xmlns='http://jabber.org/protocol/disco#items'>"
     "<item jid='muc.example.com' name='Chat'/><item node='n1' jid='example.com'/></query></iq>",
     "<iq" CLIENT " type='result' id='d2'><query xmlns='http://jabber.org/protocol/disco#items'>"
     "<item jid='muc.example.com' name='Chat'/><item jid='example.com' node='n1'/></query></iq>",
     chk_disco_items},
    {"error_condition_only",
     "<iq type='error' id='e1'><error type='cancel'><service-unavailable xmlns='" STANZAS
     "'/></error></iq>",
     "<iq" CLIENT " type='error' id='e1'><error type='cancel'><service-unavailable" ERR_NS
     "/></error></iq>",
     chk_error_simple},
    {"error_with_text",
     "<message type='error'><error by='example.com' type='modify'><bad-request xmlns='" STANZAS
     "'/><text xmlns='" STANZAS "' xml:lang='en'>Bad</text></error></message>",
     "<message" CLIENT " type='error'><error type='modify' by='example.com'><bad-request" ERR_NS
     "/><text" ERR_NS " xml:lang='en'>Bad</text></error></message>",
     chk_error_text},
    {"error_gone_with_uri",
     "<iq type='error' id='e3'><error type='cancel'><gone xmlns='" STANZAS
     "'>xmpp:new@example.com</gone></error></iq>",
     "<iq" CLIENT " type='error' id='e3'><error type='cancel'><gone" ERR_NS
     ">xmpp:new@example.com</gone></error></iq>",
     chk_error_gone},
    {"error_app_specific",
     "<iq type='error' id='e4'><error type='cancel' code='501'><feature-not-implemented xmlns='"
     STANZAS "'/><unsupported xmlns='http://jabber.org/protocol/pubsub#errors' "
     "feature='retrieve-subscriptions'/></error></iq>",
     "<iq" CLIENT " type='error' id='e4'><error type='cancel' code='501'><feature-not-implemented"
     ERR_NS "/><unsupported xmlns='http://jabber.org/protocol/pubsub#errors' "
     "feature='retrieve-subscriptions'/></error></iq>",
     chk_error_app},
    {"error_unknown_condition_is_generic",
     "<iq type='error' id='e5'><error type='wait'><frobnicate xmlns='" STANZAS
     "'/></error></iq>",
     "<iq" CLIENT " type='error' id='e5'><error type='wait'><frobnicate" ERR_NS
     "/></error></iq>",
     chk_one_extension},
    {"error_text_in_plain_condition_is_generic",
     "<iq type='error' id='e7'><error type='wait'><conflict xmlns='" STANZAS
     "'>x</conflict></error></iq>",
     "<iq" CLIENT " type='error' id='e7'><error type='wait'><conflict" ERR_NS
     ">x</conflict></error></iq>",
     chk_one_extension},
    {"error_raw_type",
     "<iq type='error' id='e6'><error type='bogus'><conflict xmlns='" STANZAS "'/></error></iq>",
     "<iq" CLIENT " type='error' id='e6'><error type='bogus'><conflict" ERR_NS "/></error></iq>",
     chk_error_raw_type},
    {"carbon_received",
     "<message to='a@example.com/r' from='a@example.com' type='chat'>"
     "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
     "<message xmlns='jabber:client' from='b@example.com/x' to='a@example.com/y' type='chat'>"
     "<body>Hi</body><thread>0e3141cd80894871a68e6fe6b1ec56fa</thread></message>"
     "</forwarded></received></message>",
     "<message" CLIENT " type='chat' from='a@example.com' to='a@example.com/r'>"
     "<received xmlns='urn:xmpp:carbons:2'><forwarded" FWD_NS ">"
     "<message" CLIENT " type='chat' from='b@example.com/x' to='a@example.com/y'>"
     "<body>Hi</body><thread>0e3141cd80894871a68e6fe6b1ec56fa</thread></message>"
     "</forwarded></received></message>",
     chk_carbon},
    {"carbon_sent",
     "<message><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
     "<message xmlns='jabber:client' to='b@example.com' type='chat'><body>yo</body></message>"
     "</forwarded></sent></message>",
     "<message" CLIENT "><sent xmlns='urn:xmpp:carbons:2'><forwarded" FWD_NS ">"
     "<message" CLIENT " type='chat' to='b@example.com'><body>yo</body></message>"
     "</forwarded></sent></message>",
     chk_carbon_sent},
    {"mam_result",
     "<message id='aeb213' to='juliet@capulet.lit/chamber'><result xmlns='urn:xmpp:mam:2' "
     "queryid='f27' id='28482-98726-73623'><forwarded xmlns='urn:xmpp:forward:0'>"
     "<delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>"
     "<message xmlns='jabber:client' from='witch@shakespeare.lit' to='macbeth@shakespeare.lit'>"
     "<body>Hail to thee</body></message></forwarded></result></message>",
     "<message" CLIENT " id='aeb213' to='juliet@capulet.lit/chamber'><result "
     "xmlns='urn:xmpp:mam:2' queryid='f27' id='28482-98726-73623'><forwarded" FWD_NS ">"
     "<delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>"
     "<message" CLIENT " from='witch@shakespeare.lit' to='macbeth@shakespeare.lit'>"
     "<body>Hail to thee</body></message></forwarded></result></message>",
     chk_mam},
    {"unknown_extension",
     "<message to='a@example.com'><body>x</body><foo xmlns='urn:example:foo' a='1'>"
     "<bar>t</bar></foo></message>",
     "<message" CLIENT " to='a@example.com'><body>x</body><foo xmlns='urn:example:foo' a='1'>"
     "<bar>t</bar></foo></message>",
     chk_unknown_ext},
    {"mixed_content_goes_whole",
     "<message to='a@example.com'>hello<body>x</body> </message>",
     "<message" CLIENT " to='a@example.com'>hello<body>x</body> </message>",
     chk_mixed},
    {"indentation_dropped",
     "<message to='a@example.com'>\n  <body>x</body>\n</message>",
     "<message" CLIENT " to='a@example.com'><body>x</body></message>",
     chk_indented},
    {"xml_lang_stanza_and_children",
     "<message xml:lang='en' to='a@example.com'><body>Hello</body><body xml:lang='de'>Hallo"
     "</body></message>",
     "<message" CLIENT " to='a@example.com' xml:lang='en'><body>Hello</body>"
     "<body xml:lang='de'>Hallo</body></message>",
     chk_lang},
    {"namespaced_attributes",
     "<message xmlns:e='urn:example:e' e:flag='1' to='a@example.com'><body e:x='y'>x</body>"
     "</message>",
     "<message" CLIENT " to='a@example.com' xmlns:ns1='urn:example:e' ns1:flag='1'>"
     "<body xmlns:ns2='urn:example:e' ns2:x='y'>x</body></message>",
     chk_ns_attrs},
    {"xml_namespace_attribute",
     "<message xml:space='preserve' to='a@example.com'/>",
     "<message" CLIENT " to='a@example.com' xml:space='preserve'/>",
     chk_xml_attr},
    {"children_out_of_order",
     "<message to='a@example.com'><active xmlns='http://jabber.org/protocol/chatstates'/>"
     "<body>x</body></message>",
     "<message" CLIENT " to='a@example.com'><active xmlns='http://jabber.org/protocol/chatstates'/>"
     "<body>x</body></message>",
     chk_out_of_order},
    {"duplicated_singular_child",
     "<message to='a@example.com'><thread>t1</thread><thread>t2</thread></message>",
     "<message" CLIENT " to='a@example.com'><thread>t1</thread><thread>t2</thread></message>",
     chk_dup_thread},
    {"duplicated_priority_out_of_order",
     "<presence><priority>1</priority><show>dnd</show><priority>2</priority></presence>",
     "<presence" CLIENT "><priority>1</priority><show>dnd</show><priority>2</priority></presence>",
     chk_dup_priority},
    {"priority_not_canonical",
     "<presence><priority>05</priority></presence>",
     "<presence" CLIENT "><priority>05</priority></presence>",
     chk_one_extension},
    {"priority_out_of_range",
     "<presence><priority>128</priority></presence>",
     "<presence" CLIENT "><priority>128</priority></presence>",
     chk_one_extension},
    {"show_unknown_value",
     "<presence><show>busy</show></presence>",
     "<presence" CLIENT "><show>busy</show></presence>",
     chk_one_extension},
    {"unknown_type_value",
     "<message type='urgent' to='a@example.com'><body>x</body></message>",
     "<message" CLIENT " type='urgent' to='a@example.com'><body>x</body></message>",
     chk_raw_type},
    {"no_namespace_inside_extension",
     "<message to='a@example.com'><x xmlns='urn:example:x'><y xmlns=''>t</y></x></message>",
     "<message" CLIENT " to='a@example.com'><x xmlns='urn:example:x'><y xmlns=''>t</y></x>"
     "</message>",
     chk_no_ns_child},
    {"kind_other_sm_request",
     "<r xmlns='urn:xmpp:sm:3'/>",
     "<r xmlns='urn:xmpp:sm:3'/>",
     chk_other},
    {"empty_body",
     "<message><body/></message>",
     "<message" CLIENT "><body/></message>",
     chk_empty_body},
    {"escapes",
     "<message id=\"a'b&quot;c\"><body>a &amp; b &lt; c &gt; d</body></message>",
     "<message" CLIENT " id='a&apos;b&quot;c'><body>a &amp; b &lt; c &gt; d</body></message>",
     chk_escapes},
    {"presence_unavailable_status_lang",
     "<presence type='unavailable'><status xml:lang='fr'>parti</status></presence>",
     "<presence" CLIENT " type='unavailable'><status xml:lang='fr'>parti</status></presence>",
     chk_unavailable},
    {"body_with_markup_is_generic",
     "<message><body>a<b>x</b></body></message>",
     "<message" CLIENT "><body>a<b>x</b></body></message>",
     chk_one_extension},
    {"unknown_plain_attribute",
     "<message foo='bar'><body>x</body></message>",
     "<message" CLIENT " foo='bar'><body>x</body></message>",
     chk_extra_plain},
};

#define N_CASES (sizeof cases / sizeof cases[0])

/* ---- Namespace dictionary ------------------------------------------------------ */

static void test_ns_dictionary(void **state)
{
    (void)state;
    /* Pinned ids: part of the xpb.v1 wire format. */
    assert_int_equal(xpb_ns_id("jabber:client"), 1);
    assert_int_equal(xpb_ns_id(XPB_NS_XML), 2);
    assert_int_equal(xpb_ns_id(XPB_NS_STREAMS), 3);
    assert_int_equal(xpb_ns_id(XPB_NS_STREAMS), XPB_NS_ID_STREAMS); /* the reader relies on it */
    assert_int_equal(xpb_ns_id(STANZAS), 4);
    assert_int_equal(xpb_ns_id("http://jabber.org/protocol/chatstates"), 5);
    assert_int_equal(xpb_ns_id("urn:xmpp:sm:3"), 53);
    assert_int_equal(xpb_ns_id("urn:xmpp:occupant-id:0"), 74);
    /* Every id maps back to itself (catches a stale length index). */
    uint32_t id = 1;
    for (; xpb_ns_uri(id) != NULL; id++) assert_int_equal(xpb_ns_id(xpb_ns_uri(id)), id);
    assert_true(id > 60);
    assert_null(xpb_ns_uri(0));
    assert_null(xpb_ns_uri(id));
    assert_int_equal(xpb_ns_id(""), 0);
    assert_int_equal(xpb_ns_id(NULL), 0);
    assert_int_equal(xpb_ns_id("jabber:clienT"), 0);
    assert_int_equal(xpb_ns_id("jabber:client "), 0);
    assert_int_equal(xpb_ns_id("urn:example:not-there"), 0);
    assert_int_equal(xpb_ns_id("http://jabber.org/protocol/disco#info-and-more-and-more-and-more"), 0);
}

/* ---- Enumerations: every value maps and writes back ---------------------------- */

static const char *const conditions[] = {
    "bad-request", "conflict", "feature-not-implemented", "forbidden", "gone",
    "internal-server-error", "item-not-found", "jid-malformed", "not-acceptable",
    "not-allowed", "not-authorized", "policy-violation", "recipient-unavailable", "redirect",
    "registration-required", "remote-server-not-found", "remote-server-timeout",
    "resource-constraint", "service-unavailable", "subscription-required",
    "undefined-condition", "unexpected-request",
};

static void roundtrip_exact(xpb_arena *a, const char *in, const char *expect, xpb_stanza **st)
{
    *st = parse_one(a, in, strlen(in));
    char *xml = to_xml(*st, "");
    assert_string_equal(xml, expect);
    free(xml);
}

static void test_every_condition(void **state)
{
    (void)state;
    xpb_arena *a = xpb_arena_new(0);
    for (size_t i = 0; i < sizeof conditions / sizeof conditions[0]; i++) {
        char in[512], want[512];
        snprintf(in, sizeof in, "<iq type='error' id='x'><error type='auth'><%s xmlns='%s'/>"
                 "</error></iq>", conditions[i], STANZAS);
        snprintf(want, sizeof want, "<iq" CLIENT " type='error' id='x'><error type='auth'><%s"
                 ERR_NS "/></error></iq>", conditions[i]);
        xpb_stanza *st;
        roundtrip_exact(a, in, want, &st);
        assert_non_null(st->error);
        assert_int_equal(st->error->condition, (int)i + 1);
        assert_int_equal(st->n_extension, 0);
    }
    xpb_arena_free(a);
}

static void test_every_type_and_state(void **state)
{
    (void)state;
    static const char *const types[] = {"normal", "chat", "groupchat", "headline", "error",
                                        "get", "set", "result", "unavailable", "subscribe",
                                        "subscribed", "unsubscribe", "unsubscribed", "probe"};
    static const char *const states[] = {"active", "composing", "paused", "inactive", "gone"};
    static const char *const shows[] = {"away", "chat", "dnd", "xa"};
    xpb_arena *a = xpb_arena_new(0);
    char in[256], want[256];
    xpb_stanza *st;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        snprintf(in, sizeof in, "<message type='%s'/>", types[i]);
        snprintf(want, sizeof want, "<message" CLIENT " type='%s'/>", types[i]);
        roundtrip_exact(a, in, want, &st);
        assert_int_equal(st->type, (int)i + 1);
    }
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        snprintf(in, sizeof in, "<message><%s xmlns='http://jabber.org/protocol/chatstates'/>"
                 "</message>", states[i]);
        snprintf(want, sizeof want, "<message" CLIENT "><%s "
                 "xmlns='http://jabber.org/protocol/chatstates'/></message>", states[i]);
        roundtrip_exact(a, in, want, &st);
        assert_int_equal(st->chat_state, (int)i + 1);
    }
    for (size_t i = 0; i < sizeof shows / sizeof shows[0]; i++) {
        snprintf(in, sizeof in, "<presence><show>%s</show></presence>", shows[i]);
        snprintf(want, sizeof want, "<presence" CLIENT "><show>%s</show></presence>", shows[i]);
        roundtrip_exact(a, in, want, &st);
        assert_int_equal(st->show, (int)i + 1);
    }
    xpb_arena_free(a);
}

/* ---- record -> XML refusals and bounds ----------------------------------------- */

static Xpb__V1__Text body_text;
static Xpb__V1__Text *body_ptrs[1];

static void make_message(xpb_stanza *st, const char *body)
{
    xpb__v1__stanza__init(st);
    st->has_kind = 1;
    st->kind = XPB__V1__KIND__KIND_MESSAGE;
    xpb__v1__text__init(&body_text);
    body_text.text = (char *)body;
    body_ptrs[0] = &body_text;
    st->n_body = 1;
    st->body = body_ptrs;
}

static void test_injection_is_escaped(void **state)
{
    (void)state;
    xpb_stanza st;
    make_message(&st, "</body></message><iq type='set'>");
    char *xml = to_xml(&st, "");
    assert_string_equal(xml, "<message" CLIENT "><body>&lt;/body&gt;&lt;/message&gt;"
                             "&lt;iq type='set'&gt;</body></message>");
    free(xml);
    /* Attribute values cannot close the quote either. */
    st.id = "x' to='evil@example.com";
    xml = to_xml(&st, "");
    assert_string_equal(xml, "<message" CLIENT " id='x&apos; to=&apos;evil@example.com'>"
                             "<body>&lt;/body&gt;&lt;/message&gt;&lt;iq type='set'&gt;</body>"
                             "</message>");
    free(xml);
}

/* Asserts a refusal: code, message fragment, and nothing appended. */
static void expect_refusal(const xpb_stanza *st, const xpb_record_limits *lim, int code,
                           const char *fragment)
{
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_buf_append_str(&b, "<prefix/>"), 0);
    char err[256];
    int rc = xpb_stanza_to_xml(&b, st, "", lim, err, sizeof err);
    assert_int_equal(rc, code);
    if (strstr(err, fragment) == NULL) fail_msg("error '%s' lacks '%s'", err, fragment);
    assert_int_equal(b.len, strlen("<prefix/>"));
    xpb_buf_free(&b);
}

static void test_order_inconsistent(void **state)
{
    (void)state;
    xpb_stanza st;
    make_message(&st, "hi");
    uint32_t twice[] = {10, 10};
    st.order = twice;
    st.n_order = 2;
    expect_refusal(&st, NULL, XPB_ERECORD, "order[1] names field 10 (body) but no body is left");
    uint32_t unknown[] = {10, 99};
    st.order = unknown;
    expect_refusal(&st, NULL, XPB_ERECORD, "order[1] names field 99");
    uint32_t absent[] = {20, 10};
    st.order = absent;
    expect_refusal(&st, NULL, XPB_ERECORD, "order[0] names field 20 (chat_state)");
    Xpb__V1__Element ext = XPB__V1__ELEMENT__INIT;
    Xpb__V1__Element *exts[] = {&ext};
    ext.name = "x";
    st.extension = exts;
    st.n_extension = 1;
    uint32_t partial[] = {10};
    st.order = partial;
    st.n_order = 1;
    expect_refusal(&st, NULL, XPB_ERECORD, "does not mention extension[0]");
    /* A consistent order is followed. */
    uint32_t swapped[] = {50, 10};
    st.order = swapped;
    st.n_order = 2;
    char *xml = to_xml(&st, "");
    assert_string_equal(xml, "<message" CLIENT "><x/><body>hi</body></message>");
    free(xml);
}

static void test_refusals(void **state)
{
    (void)state;
    xpb_stanza st;
    make_message(&st, "hi");
    st.has_chat_state = 1;
    st.chat_state = XPB__V1__CHAT_STATE__CHAT_STATE_UNSPECIFIED;
    expect_refusal(&st, NULL, XPB_ERECORD, "chat_state");
    st.has_chat_state = 0;
    Xpb__V1__StanzaError e = XPB__V1__STANZA_ERROR__INIT;
    st.error = &e;
    expect_refusal(&st, NULL, XPB_ERECORD, "condition");
    e.has_condition = 1;
    e.condition = XPB__V1__ERROR_CONDITION__CONDITION_CONFLICT;
    e.condition_uri = "xmpp:x@example.com";
    expect_refusal(&st, NULL, XPB_ERECORD, "condition_uri");
    st.error = NULL;
    Xpb__V1__Carbon c = XPB__V1__CARBON__INIT;
    c.has_direction = 1;
    c.direction = XPB__V1__CARBON__DIRECTION__DIRECTION_SENT;
    st.carbon = &c;
    expect_refusal(&st, NULL, XPB_ERECORD, "forwarded");
}

static void test_size_bound(void **state)
{
    (void)state;
    xpb_stanza st;
    make_message(&st, "a body that is longer than the limit");
    xpb_record_limits lim = {.max_stanza_bytes = 40};
    expect_refusal(&st, &lim, XPB_ETOOBIG, "max_stanza_bytes (40)");
    lim.max_stanza_bytes = 100;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_stanza_to_xml(&b, &st, "", &lim, NULL, 0), 0);
    assert_int_equal(b.max, 0); /* the caller's bound is restored */
    xpb_buf_free(&b);
}

static void test_parent_ns_client(void **state)
{
    (void)state;
    xpb_arena *a = xpb_arena_new(0);
    const char *in = "<message to='a@example.com'><body>x</body><r xmlns='urn:xmpp:sm:3'/></message>";
    xpb_stanza *st = parse_one(a, in, strlen(in));
    char *xml = to_xml(st, XPB_NS_CLIENT);
    assert_string_equal(xml, "<message to='a@example.com'><body>x</body>"
                             "<r xmlns='urn:xmpp:sm:3'/></message>");
    free(xml);
    /* Two stanzas appended to one buffer: the second starts after the first. */
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_stanza_to_xml(&b, st, XPB_NS_CLIENT, NULL, NULL, 0), 0);
    size_t one = b.len;
    assert_int_equal(xpb_stanza_to_xml(&b, st, XPB_NS_CLIENT, NULL, NULL, 0), 0);
    assert_int_equal(b.len, 2 * one);
    assert_memory_equal(b.data, b.data + one, one);
    xpb_buf_free(&b);
    xpb_arena_free(a);
}

/* Every canonical output, read byte at a time, gives the same record. */
static void test_arena_strings_outlive_tree(void **state)
{
    (void)state;
    xpb_arena *a = xpb_arena_new(256);
    const char *in = cases[1].xml;
    xpb_stanza *st = parse_one(a, in, strlen(in));
    /* The reader's tree is gone; every string must live in the arena. */
    char *xml = to_xml(st, "");
    assert_string_equal(xml, cases[1].expect);
    free(xml);
    xpb_arena_free(a);
}

int main(void)
{
    struct CMUnitTest tests[N_CASES + 9];
    size_t n = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        struct CMUnitTest t = {cases[i].name, run_case, NULL, NULL, (void *)&cases[i]};
        tests[n++] = t;
    }
    const struct CMUnitTest more[] = {
        cmocka_unit_test(test_ns_dictionary),
        cmocka_unit_test(test_every_condition),
        cmocka_unit_test(test_every_type_and_state),
        cmocka_unit_test(test_injection_is_escaped),
        cmocka_unit_test(test_order_inconsistent),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_size_bound),
        cmocka_unit_test(test_parent_ns_client),
        cmocka_unit_test(test_arena_strings_outlive_tree),
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) tests[n++] = more[i];
    return _cmocka_run_group_tests("stanza", tests, n, NULL, NULL);
}
