/* Tests for codec/record_check.c: every rule of xpb_stanza_check with its exact
 * code and field path, the wire depth walk (including a 10,000-deep input
 * protobuf-c must never see), unpack/pack, and record -> XML injection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first. */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"

#define NS_XMLNS "http://www.w3.org/2000/xmlns/"

/* ---- Building records in an arena ------------------------------------------------ */

static xpb_arena *A;

static void *mk(size_t size, void (*init)(void *))
{
    void *p = xpb_arena_calloc(A, size);
    assert_non_null(p);
    init(p);
    return p;
}
#define NEW(T, init) ((T *)mk(sizeof(T), (void (*)(void *))(init)))

static char *S(const char *s)
{
    return xpb_arena_strndup(A, s, strlen(s));
}

static void *arr(size_t n)
{
    void **v = xpb_arena_calloc(A, n * sizeof(void *));
    assert_non_null(v);
    return v;
}

static Xpb__V1__Text *text(const char *t)
{
    Xpb__V1__Text *x = NEW(Xpb__V1__Text, xpb__v1__text__init);
    x->text = S(t);
    return x;
}

static Xpb__V1__Attribute *attr(const char *ns, const char *name, const char *value)
{
    Xpb__V1__Attribute *a = NEW(Xpb__V1__Attribute, xpb__v1__attribute__init);
    a->ns = ns ? S(ns) : NULL;
    a->name = S(name);
    a->value = S(value);
    return a;
}

static Xpb__V1__Element *elem(const char *ns, const char *name)
{
    Xpb__V1__Element *e = NEW(Xpb__V1__Element, xpb__v1__element__init);
    e->ns = ns ? S(ns) : NULL;
    e->name = S(name);
    return e;
}

static void add_attr(Xpb__V1__Element *e, Xpb__V1__Attribute *a)
{
    Xpb__V1__Attribute **v = arr(e->n_attr + 1);
    if (e->n_attr) memcpy(v, e->attr, e->n_attr * sizeof *v);
    v[e->n_attr++] = a;
    e->attr = v;
}

static Xpb__V1__Node *add_node(Xpb__V1__Element *e)
{
    Xpb__V1__Node **v = arr(e->n_child + 1);
    if (e->n_child) memcpy(v, e->child, e->n_child * sizeof *v);
    Xpb__V1__Node *n = NEW(Xpb__V1__Node, xpb__v1__node__init);
    v[e->n_child++] = n;
    e->child = v;
    return n;
}

static void add_text(Xpb__V1__Element *e, const char *t)
{
    Xpb__V1__Node *n = add_node(e);
    n->node_case = XPB__V1__NODE__NODE_TEXT;
    n->text = S(t);
}

static void add_child(Xpb__V1__Element *e, Xpb__V1__Element *c)
{
    Xpb__V1__Node *n = add_node(e);
    n->node_case = XPB__V1__NODE__NODE_ELEMENT;
    n->element = c;
}

/* A valid chat message with one extension <x xmlns='urn:example' a='1'>t<y/></x>. */
static xpb_stanza *base(void)
{
    xpb_stanza *st = NEW(xpb_stanza, xpb__v1__stanza__init);
    st->has_kind = 1;
    st->kind = XPB__V1__KIND__KIND_MESSAGE;
    st->has_type = 1;
    st->type = XPB__V1__STANZA_TYPE__TYPE_CHAT;
    st->id = S("m1");
    st->from = S("juliet@example.com/balcony");
    st->to = S("romeo@example.net");
    st->n_body = 1;
    st->body = arr(1);
    st->body[0] = text("hi");
    Xpb__V1__Element *x = elem("urn:example", "x");
    add_attr(x, attr(NULL, "a", "1"));
    add_text(x, "t");
    add_child(x, elem(NULL, "y"));
    st->n_extension = 1;
    st->extension = arr(1);
    st->extension[0] = x;
    return st;
}

/* ---- Table of single-rule violations ------------------------------------------------- */

static const xpb_record_limits SMALL = {.max_depth = 8, .max_string = 40};

static void m_kind_unset(xpb_stanza *s)
{
    s->has_kind = 0;
}
static void m_kind_99(xpb_stanza *s)
{
    s->kind = 99;
}
static void m_type_99(xpb_stanza *s)
{
    s->type = 99;
}
static void m_show_99(xpb_stanza *s)
{
    s->has_show = 1;
    s->show = 99;
}
static void m_chat_state_99(xpb_stanza *s)
{
    s->has_chat_state = 1;
    s->chat_state = 99;
}
static void m_error_type_99(xpb_stanza *s)
{
    s->error = NEW(Xpb__V1__StanzaError, xpb__v1__stanza_error__init);
    s->error->has_condition = 1;
    s->error->condition = 99;
}
static void m_roster_sub_99(xpb_stanza *s)
{
    s->roster = NEW(Xpb__V1__RosterQuery, xpb__v1__roster_query__init);
    s->roster->n_item = 1;
    s->roster->item = arr(1);
    s->roster->item[0] = NEW(Xpb__V1__RosterItem, xpb__v1__roster_item__init);
    s->roster->item[0]->jid = S("nurse@example.com");
    s->roster->item[0]->has_subscription = 1;
    s->roster->item[0]->subscription = 99;
}
static void m_carbon_dir_99(xpb_stanza *s)
{
    s->carbon = NEW(Xpb__V1__Carbon, xpb__v1__carbon__init);
    s->carbon->has_direction = 1;
    s->carbon->direction = 99;
}
static void m_other_no_element(xpb_stanza *s)
{
    s->kind = XPB__V1__KIND__KIND_OTHER;
}
static void m_body_41(xpb_stanza *s)
{
    s->body[0]->text = S("0123456789abcdef0123456789abcdef01234567g");
}
static void m_bad_utf8(xpb_stanza *s)
{
    s->body[0]->text = S("ok\xC3\x28");
}
static void m_u0001(xpb_stanza *s)
{
    s->body[0]->text = S("a\x01");
}
static void m_ufffe(xpb_stanza *s)
{
    s->subject = arr(1);
    s->n_subject = 1;
    s->subject[0] = text("ab\xEF\xBF\xBE");
}
static void m_name_digit(xpb_stanza *s)
{
    s->extension[0]->name = S("1abc");
}
static void m_name_colon(xpb_stanza *s)
{
    s->extension[0]->name = S("a:b");
}
static void m_name_xmlns(xpb_stanza *s)
{
    s->extension[0]->name = S("xmlns");
}
static void m_name_empty(xpb_stanza *s)
{
    s->extension[0]->name = S("");
}
static void m_name_null(xpb_stanza *s)
{
    s->extension[0]->name = NULL;
}
static void m_name_nested(xpb_stanza *s)
{
    s->extension[0]->child[1]->element->name = S("1abc");
}
/* U+3400 is a NameChar in the 5th edition but not in expat's tables. */
static void m_name_cjk_ext(xpb_stanza *s)
{
    s->extension[0]->name = S("a\xE3\x90\x80");
}
static void m_attr_name_bad(xpb_stanza *s)
{
    s->extension[0]->attr[0]->name = S("-a");
}
static void m_ns_id_unknown(xpb_stanza *s)
{
    s->extension[0]->ns = NULL;
    s->extension[0]->has_ns_id = 1;
    s->extension[0]->ns_id = 99999;
}
static void m_ns_id_and_ns(xpb_stanza *s)
{
    s->extension[0]->has_ns_id = 1;
    s->extension[0]->ns_id = xpb_ns_id("urn:xmpp:ping");
}
static void m_elem_xml_ns(xpb_stanza *s)
{
    s->extension[0]->ns = S(XPB_NS_XML);
}
static void m_ns_space(xpb_stanza *s)
{
    s->extension[0]->ns = S("urn:a b");
}
static void m_attr_ns_tab(xpb_stanza *s)
{
    s->extension[0]->attr[0]->ns = S("urn:a\tb");
}
static void m_attr_xmlns_ns(xpb_stanza *s)
{
    s->extension[0]->attr[0]->ns = S(NS_XMLNS);
}
static void m_attr_name_xmlns(xpb_stanza *s)
{
    s->extension[0]->attr[0]->name = S("xmlns");
}
static void m_attr_dup(xpb_stanza *s)
{
    add_attr(s->extension[0], attr("", "a", "2"));
}
static void m_attr_dup_by_id(xpb_stanza *s)
{
    add_attr(s->extension[0], attr(XPB_NS_XML, "lang", "en"));
    Xpb__V1__Attribute *a = attr(NULL, "lang", "de");
    a->has_ns_id = 1;
    a->ns_id = xpb_ns_id(XPB_NS_XML);
    add_attr(s->extension[0], a);
}
static void m_extra_id(xpb_stanza *s)
{
    s->n_extra_attr = 1;
    s->extra_attr = arr(1);
    s->extra_attr[0] = attr(NULL, "id", "x");
}
static void m_extra_lang(xpb_stanza *s)
{
    s->n_extra_attr = 1;
    s->extra_attr = arr(1);
    s->extra_attr[0] = attr(XPB_NS_XML, "lang", "en");
}
static void m_node_unset(xpb_stanza *s)
{
    s->extension[0]->child[0]->node_case = 0;
}
static void m_type_and_raw(xpb_stanza *s)
{
    s->type_raw = S("fancy");
}
static void m_from_bad(xpb_stanza *s)
{
    s->from = S("juliet@");
}
static void m_to_bad(xpb_stanza *s)
{
    s->to = S("");
}
static void m_roster_jid_bad(xpb_stanza *s)
{
    m_roster_sub_99(s);
    s->roster->item[0]->has_subscription = 0;
    s->roster->item[0]->jid = S("a@b@c");
}
static void m_delay_from_bad(xpb_stanza *s)
{
    s->delay = NEW(Xpb__V1__Delay, xpb__v1__delay__init);
    s->delay->stamp = S("2002-09-10T23:08:25Z");
    s->delay->from = S("@example.com");
}
static void m_forwarded_other(xpb_stanza *s)
{
    m_carbon_dir_99(s);
    s->carbon->direction = XPB__V1__CARBON__DIRECTION__DIRECTION_SENT;
    s->carbon->forwarded = NEW(Xpb__V1__Forwarded, xpb__v1__forwarded__init);
    xpb_stanza *in = base();
    in->kind = XPB__V1__KIND__KIND_OTHER;
    in->element = elem(NULL, "foo");
    s->carbon->forwarded->stanza = in;
}
static void m_forwarded_body_bad(xpb_stanza *s)
{
    m_forwarded_other(s);
    s->carbon->forwarded->stanza->kind = XPB__V1__KIND__KIND_MESSAGE;
    s->carbon->forwarded->stanza->element = NULL;
    s->carbon->forwarded->stanza->body[0]->text = S("\x02");
}

/* Compact forms (docs/mapping.md §7). */
static ProtobufCBinaryData bin(size_t n)
{
    ProtobufCBinaryData b = {n, xpb_arena_calloc(A, n ? n : 1)};
    assert_non_null(b.data);
    return b;
}
static void m_id_uuid_15(xpb_stanza *s)
{
    s->id = NULL;
    s->has_id_uuid = 1;
    s->id_uuid = bin(15);
}
static void m_id_and_uuid(xpb_stanza *s)
{
    s->has_id_uuid = 1;
    s->id_uuid = bin(16);
}
static void m_receipt_uuid_17(xpb_stanza *s)
{
    s->has_receipt_received_uuid = 1;
    s->receipt_received_uuid = bin(17);
}
static void m_origin_is_id_no_id(xpb_stanza *s)
{
    s->id = NULL;
    s->has_origin_id_is_id = s->origin_id_is_id = 1;
}
static void m_origin_is_id_and_str(xpb_stanza *s)
{
    s->has_origin_id_is_id = s->origin_id_is_id = 1;
    s->origin_id = S("o1");
}
static void m_origin_is_id_and_uuid(xpb_stanza *s)
{
    s->has_origin_id_is_id = s->origin_id_is_id = 1;
    s->has_origin_id_uuid = 1;
    s->origin_id_uuid = bin(16);
}
static void m_thread_uuid_0(xpb_stanza *s)
{
    s->thread = NEW(Xpb__V1__Thread, xpb__v1__thread__init);
    s->thread->has_id_uuid = 1;
    s->thread->id_uuid = bin(0);
}
static Xpb__V1__StanzaId *one_sid(xpb_stanza *s)
{
    s->n_stanza_id = 1;
    s->stanza_id = arr(1);
    s->stanza_id[0] = NEW(Xpb__V1__StanzaId, xpb__v1__stanza_id__init);
    return s->stanza_id[0];
}
static void m_sid_by_and_ref(xpb_stanza *s)
{
    Xpb__V1__StanzaId *x = one_sid(s);
    x->by = S("romeo@example.net");
    x->has_by_ref = 1;
    x->by_ref = XPB__V1__JID_REF__JID_REF_TO_BARE;
}
static void m_sid_ref_no_to(xpb_stanza *s)
{
    one_sid(s)->has_by_ref = 1;
    s->stanza_id[0]->by_ref = XPB__V1__JID_REF__JID_REF_TO_BARE;
    s->to = NULL;
}
static void m_sid_ref_0(xpb_stanza *s)
{
    one_sid(s)->has_by_ref = 1;
}
static void m_sid_ref_99(xpb_stanza *s)
{
    one_sid(s)->has_by_ref = 1;
    s->stanza_id[0]->by_ref = 99;
}
static void m_sid_ref_outer(xpb_stanza *s)
{
    one_sid(s)->has_by_ref = 1;
    s->stanza_id[0]->by_ref = XPB__V1__JID_REF__JID_REF_OUTER_TO;
}
static void m_sid_uuid_and_id(xpb_stanza *s)
{
    Xpb__V1__StanzaId *x = one_sid(s);
    x->id = S("s1");
    x->has_id_uuid = 1;
    x->id_uuid = bin(16);
}
static void m_from_and_ref(xpb_stanza *s)
{
    s->has_from_ref = 1;
    s->from_ref = XPB__V1__JID_REF__JID_REF_TO_BARE;
}
static void m_from_ref_from(xpb_stanza *s)
{
    s->from = NULL;
    s->has_from_ref = 1;
    s->from_ref = XPB__V1__JID_REF__JID_REF_FROM_BARE;
}
static void m_from_ref_outer_top(xpb_stanza *s)
{
    s->from = NULL;
    s->has_from_ref = 1;
    s->from_ref = XPB__V1__JID_REF__JID_REF_OUTER_TO;
}
static void m_refs_cycle(xpb_stanza *s)
{
    s->from = NULL;
    s->to = NULL;
    s->has_from_ref = s->has_to_ref = 1;
    s->from_ref = XPB__V1__JID_REF__JID_REF_TO;
    s->to_ref = XPB__V1__JID_REF__JID_REF_FROM;
}
static xpb_stanza *carbon_of(xpb_stanza *s)
{
    m_forwarded_other(s);
    xpb_stanza *in = s->carbon->forwarded->stanza;
    in->kind = XPB__V1__KIND__KIND_MESSAGE;
    in->element = NULL;
    return in;
}
static void m_inner_ref_outer_missing(xpb_stanza *s)
{
    xpb_stanza *in = carbon_of(s);
    s->from = NULL;
    in->from = NULL;
    in->has_from_ref = 1;
    in->from_ref = XPB__V1__JID_REF__JID_REF_OUTER_FROM;
}
static void m_stamp_both(xpb_stanza *s)
{
    s->delay = NEW(Xpb__V1__Delay, xpb__v1__delay__init);
    s->delay->stamp = S("2002-09-10T23:08:25Z");
    s->delay->has_stamp_seconds = 1;
}
static void m_stamp_year_10000(xpb_stanza *s)
{
    s->delay = NEW(Xpb__V1__Delay, xpb__v1__delay__init);
    s->delay->has_stamp_seconds = 1;
    s->delay->stamp_seconds = INT64_C(253402300800);
}
static void m_delay_from_and_ref(xpb_stanza *s)
{
    m_delay_from_bad(s);
    s->delay->from = S("example.net");
    s->delay->has_from_ref = 1;
    s->delay->from_ref = XPB__V1__JID_REF__JID_REF_TO_DOMAIN;
}
static void m_fwd_delay_ref(xpb_stanza *s)
{
    carbon_of(s);
    Xpb__V1__Delay *d = NEW(Xpb__V1__Delay, xpb__v1__delay__init);
    d->has_from_ref = 1;
    d->from_ref = XPB__V1__JID_REF__JID_REF_TO_BARE;
    s->carbon->forwarded->delay = d;
}
static Xpb__V1__MamResult *mam_of(xpb_stanza *s)
{
    s->mam_result = NEW(Xpb__V1__MamResult, xpb__v1__mam_result__init);
    return s->mam_result;
}
static void m_mam_queryid_both(xpb_stanza *s)
{
    Xpb__V1__MamResult *m = mam_of(s);
    m->queryid = S("q");
    m->has_queryid_uuid = 1;
    m->queryid_uuid = bin(16);
}
static void m_mam_id_uuid_32(xpb_stanza *s)
{
    Xpb__V1__MamResult *m = mam_of(s);
    m->has_id_uuid = 1;
    m->id_uuid = bin(32);
}
static Xpb__V1__DiscoInfo *disco_of(xpb_stanza *s, size_t n_str, size_t n_id)
{
    Xpb__V1__DiscoInfo *d = NEW(Xpb__V1__DiscoInfo, xpb__v1__disco_info__init);
    d->n_feature = n_str;
    d->feature = arr(n_str ? n_str : 1);
    for (size_t i = 0; i < n_str; i++) d->feature[i] = S("urn:example:f");
    d->n_feature_id = n_id;
    d->feature_id = xpb_arena_calloc(A, (n_id ? n_id : 1) * sizeof *d->feature_id);
    s->disco_info = d;
    return d;
}
static void m_feature_id_unknown(xpb_stanza *s)
{
    Xpb__V1__DiscoInfo *d = disco_of(s, 0, 1);
    d->feature_id[0] = 9999;
}
static void m_feature_id_zeros(xpb_stanza *s)
{
    Xpb__V1__DiscoInfo *d = disco_of(s, 2, 2); /* one zero, two strings */
    d->feature_id[1] = 9;
}
static void m_affiliation_both(xpb_stanza *s)
{
    s->muc_user = NEW(Xpb__V1__MucUser, xpb__v1__muc_user__init);
    s->muc_user->n_item = 1;
    s->muc_user->item = arr(1);
    s->muc_user->item[0] = NEW(Xpb__V1__MucUser__Item, xpb__v1__muc_user__item__init);
    s->muc_user->item[0]->affiliation = S("member");
    s->muc_user->item[0]->has_affiliation_enum = 1;
    s->muc_user->item[0]->affiliation_enum = XPB__V1__MUC_USER__AFFILIATION__AFFILIATION_MEMBER;
}
static void m_role_0(xpb_stanza *s)
{
    m_affiliation_both(s);
    s->muc_user->item[0]->affiliation = NULL;
    s->muc_user->item[0]->has_role_enum = 1;
}
static void m_caps_hash_99(xpb_stanza *s)
{
    s->caps = NEW(Xpb__V1__Caps, xpb__v1__caps__init);
    s->caps->has_hash_enum = 1;
    s->caps->hash_enum = 99;
}

typedef struct bad_case {
    const char *what;
    void (*mutate)(xpb_stanza *);
    int code;
    const char *msg; /* substring of err */
} bad_case;

static const bad_case BAD[] = {
    {"kind unset", m_kind_unset, XPB_ERECORD, "stanza.kind: is not set"},
    {"kind 99", m_kind_99, XPB_ERECORD, "stanza.kind: value 99 is not a Kind"},
    {"type 99", m_type_99, XPB_ERECORD, "stanza.type: value 99"},
    {"show 99", m_show_99, XPB_ERECORD, "stanza.show: value 99"},
    {"chat_state 99", m_chat_state_99, XPB_ERECORD, "stanza.chat_state: value 99"},
    {"error condition 99", m_error_type_99, XPB_ERECORD, "stanza.error.condition: value 99"},
    {"roster subscription 99", m_roster_sub_99, XPB_ERECORD,
     "stanza.roster.item[0].subscription: value 99"},
    {"carbon direction 99", m_carbon_dir_99, XPB_ERECORD, "stanza.carbon.direction: value 99"},
    {"OTHER without element", m_other_no_element, XPB_ERECORD,
     "stanza.element: is required for KIND_OTHER"},
    {"string max+1", m_body_41, XPB_ESTRLEN,
     "stanza.body[0].text: 41 bytes exceeds max_string (40)"},
    {"invalid UTF-8", m_bad_utf8, XPB_EUTF8, "stanza.body[0].text: invalid UTF-8 at byte 2"},
    {"U+0001", m_u0001, XPB_EXMLCHAR, "stanza.body[0].text: U+0001 at byte 1"},
    {"U+FFFE", m_ufffe, XPB_EXMLCHAR, "stanza.subject[0].text: U+FFFE at byte 2"},
    {"name 1abc", m_name_digit, XPB_ERECORD, "stanza.extension[0].name: '1abc' is not an XML name"},
    {"name a:b", m_name_colon, XPB_ERECORD, "stanza.extension[0].name: 'a:b' is not an XML name"},
    {"name xmlns", m_name_xmlns, XPB_ERECORD, "stanza.extension[0].name: 'xmlns' is reserved"},
    {"name empty", m_name_empty, XPB_ERECORD, "stanza.extension[0].name: an XML name is required"},
    {"name absent", m_name_null, XPB_ERECORD, "stanza.extension[0].name: an XML name is required"},
    {"nested name", m_name_nested, XPB_ERECORD,
     "stanza.extension[0].child[1].element.name: '1abc' is not an XML name"},
    {"name expat refuses", m_name_cjk_ext, XPB_ERECORD, "is not an XML name"},
    {"attr name -a", m_attr_name_bad, XPB_ERECORD,
     "stanza.extension[0].attr[0].name: '-a' is not an XML name"},
    {"unknown ns_id", m_ns_id_unknown, XPB_ERECORD,
     "stanza.extension[0].ns_id: 99999 is not in the namespace dictionary"},
    {"ns_id and ns", m_ns_id_and_ns, XPB_ERECORD, "stanza.extension[0].ns: both ns_id"},
    {"element in xml ns", m_elem_xml_ns, XPB_ERECORD,
     "stanza.extension[0].ns: '" XPB_NS_XML "' cannot be an element's namespace"},
    {"ns with a space", m_ns_space, XPB_ERECORD,
     "stanza.extension[0].ns: a namespace name cannot contain whitespace (byte 5)"},
    {"attr ns with a tab", m_attr_ns_tab, XPB_ERECORD,
     "stanza.extension[0].attr[0].ns: a namespace name cannot contain whitespace"},
    {"attr in xmlns ns", m_attr_xmlns_ns, XPB_ERECORD,
     "stanza.extension[0].attr[0].ns: attributes in the xmlns namespace"},
    {"attr named xmlns", m_attr_name_xmlns, XPB_ERECORD,
     "stanza.extension[0].attr[0].name: 'xmlns' is reserved"},
    {"duplicate attr", m_attr_dup, XPB_ERECORD,
     "stanza.extension[0].attr: items 0 and 1 are the same attribute 'a'"},
    {"duplicate attr ns vs ns_id", m_attr_dup_by_id, XPB_ERECORD,
     "items 1 and 2 are the same attribute 'lang'"},
    {"extra_attr id", m_extra_id, XPB_ERECORD,
     "stanza.extra_attr: item 0 ('id') clashes with a typed stanza attribute"},
    {"extra_attr xml:lang", m_extra_lang, XPB_ERECORD, "('lang') clashes"},
    {"Node without case", m_node_unset, XPB_ERECORD,
     "stanza.extension[0].child[0]: Node has neither element nor text"},
    {"type and type_raw", m_type_and_raw, XPB_ERECORD,
     "stanza.type_raw: both type and type_raw are set"},
    {"from bad JID", m_from_bad, XPB_EJID, "stanza.from: invalid JID 'juliet@'"},
    {"to empty JID", m_to_bad, XPB_EJID, "stanza.to: invalid JID ''"},
    {"roster jid bad", m_roster_jid_bad, XPB_EJID,
     "stanza.roster.item[0].jid: invalid JID 'a@b@c'"},
    {"delay from bad", m_delay_from_bad, XPB_EJID, "stanza.delay.from: invalid JID '@example.com'"},
    {"forwarded OTHER", m_forwarded_other, XPB_ERECORD,
     "stanza.carbon.forwarded.stanza.kind: a forwarded stanza must be"},
    {"forwarded body", m_forwarded_body_bad, XPB_EXMLCHAR,
     "stanza.carbon.forwarded.stanza.body[0].text: U+0002 at byte 0"},
    {"id_uuid 15 bytes", m_id_uuid_15, XPB_ERECORD,
     "stanza.id_uuid: 15 bytes; a UUID is exactly 16"},
    {"id and id_uuid", m_id_and_uuid, XPB_ERECORD, "stanza.id: both id and id_uuid are set"},
    {"receipt uuid 17", m_receipt_uuid_17, XPB_ERECORD,
     "stanza.receipt_received_uuid: 17 bytes; a UUID is exactly 16"},
    {"origin_id_is_id without id", m_origin_is_id_no_id, XPB_ERECORD,
     "stanza.origin_id_is_id: set but the stanza has no id"},
    {"origin_id_is_id and origin_id", m_origin_is_id_and_str, XPB_ERECORD,
     "stanza.origin_id_is_id: set together with origin_id"},
    {"origin_id_is_id and uuid", m_origin_is_id_and_uuid, XPB_ERECORD,
     "stanza.origin_id_is_id: set together with origin_id_uuid"},
    {"thread uuid 0 bytes", m_thread_uuid_0, XPB_ERECORD,
     "stanza.thread.id_uuid: 0 bytes; a UUID is exactly 16"},
    {"stanza_id by and by_ref", m_sid_by_and_ref, XPB_ERECORD,
     "stanza.stanza_id[0].by_ref: both by and by_ref are set"},
    {"stanza_id by_ref without to", m_sid_ref_no_to, XPB_ERECORD,
     "stanza.stanza_id[0].by_ref: JID_REF_TO_BARE but the stanza has no 'to'"},
    {"stanza_id by_ref 0", m_sid_ref_0, XPB_ERECORD, "stanza.stanza_id[0].by_ref: value 0 names no JID"},
    {"stanza_id by_ref 99", m_sid_ref_99, XPB_ERECORD, "stanza.stanza_id[0].by_ref: value 99 names no JID"},
    {"stanza_id by_ref outer", m_sid_ref_outer, XPB_ERECORD,
     "stanza.stanza_id[0].by_ref: JID_REF_OUTER_TO cannot be used here"},
    {"stanza_id id and uuid", m_sid_uuid_and_id, XPB_ERECORD,
     "stanza.stanza_id[0].id: both id and id_uuid are set"},
    {"from and from_ref", m_from_and_ref, XPB_ERECORD, "stanza.from_ref: both from and from_ref"},
    {"from_ref to itself", m_from_ref_from, XPB_ERECORD,
     "stanza.from_ref: JID_REF_FROM_BARE cannot be used here"},
    {"from_ref outer at top level", m_from_ref_outer_top, XPB_ERECORD,
     "stanza.from_ref: JID_REF_OUTER_TO but no stanza forwards this one"},
    {"from_ref and to_ref cycle", m_refs_cycle, XPB_ERECORD,
     "stanza.to_ref: from_ref and to_ref refer to each other"},
    {"inner ref to missing outer from", m_inner_ref_outer_missing, XPB_ERECORD,
     "stanza.carbon.forwarded.stanza.from_ref: JID_REF_OUTER_FROM but the forwarding stanza "
     "has no 'from'"},
    {"stamp and stamp_seconds", m_stamp_both, XPB_ERECORD,
     "stanza.delay.stamp_seconds: both stamp and stamp_seconds are set"},
    {"stamp_seconds year 10000", m_stamp_year_10000, XPB_ERECORD,
     "stanza.delay.stamp_seconds: 253402300800 is outside years 0000..9999"},
    {"delay from and from_ref", m_delay_from_and_ref, XPB_ERECORD,
     "stanza.delay.from_ref: both from and from_ref are set"},
    {"forwarded delay from_ref", m_fwd_delay_ref, XPB_ERECORD,
     "stanza.carbon.forwarded.delay.from_ref: JID_REF_TO_BARE cannot be used here"},
    {"mam queryid both", m_mam_queryid_both, XPB_ERECORD,
     "stanza.mam_result.queryid: both queryid and queryid_uuid are set"},
    {"mam id uuid 32", m_mam_id_uuid_32, XPB_ERECORD,
     "stanza.mam_result.id_uuid: 32 bytes; a UUID is exactly 16"},
    {"feature_id unknown", m_feature_id_unknown, XPB_ERECORD,
     "stanza.disco_info.feature_id: item 0 (9999) is not in the namespace dictionary"},
    {"feature_id zeros vs strings", m_feature_id_zeros, XPB_ERECORD,
     "stanza.disco_info.feature_id: has 1 zero entries but there are 2 feature strings"},
    {"affiliation and enum", m_affiliation_both, XPB_ERECORD,
     "stanza.muc_user.item[0].affiliation_enum: both affiliation and affiliation_enum are set"},
    {"role_enum 0", m_role_0, XPB_ERECORD,
     "stanza.muc_user.item[0].role_enum: value 0 has no XML spelling"},
    {"caps hash_enum 99", m_caps_hash_99, XPB_ERECORD, "stanza.caps.hash_enum: value 99 is not a Hash"},
};

static int setup(void **state)
{
    (void)state;
    A = xpb_arena_new(0);
    return A ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    xpb_arena_free(A);
    A = NULL;
    return 0;
}

static void test_base_is_valid(void **state)
{
    (void)state;
    char err[256] = "x";
    assert_int_equal(xpb_stanza_check(base(), &SMALL, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(xpb_stanza_check(base(), NULL, err, sizeof err), 0);
}

static void test_bad_records(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        xpb_stanza *st = base();
        BAD[i].mutate(st);
        char err[512] = "";
        int rc = xpb_stanza_check(st, &SMALL, err, sizeof err);
        if (rc != BAD[i].code || strstr(err, BAD[i].msg) == NULL)
            fail_msg("%s: got %d (%s) \"%s\", want %d \"%s\"", BAD[i].what, rc, xpb_strerror(rc),
                     err, BAD[i].code, BAD[i].msg);
        /* A tiny buffer or none at all must be safe too. */
        char tiny[8];
        assert_int_equal(xpb_stanza_check(st, &SMALL, tiny, sizeof tiny), BAD[i].code);
        assert_true(strlen(tiny) < sizeof tiny);
        assert_int_equal(xpb_stanza_check(st, &SMALL, NULL, 0), BAD[i].code);
    }
}

typedef struct good_case {
    const char *what;
    void (*mutate)(xpb_stanza *);
} good_case;

static void g_body_40(xpb_stanza *s)
{
    s->body[0]->text = S("0123456789abcdef0123456789abcdef01234567");
}
static void g_names_unicode(xpb_stanza *s)
{
    s->extension[0]->name = S("caf\xC3\xA9");               /* café */
    s->extension[0]->attr[0]->name = S("\xE5\x90\x8D-1.x"); /* 名-1.x */
}
static void g_name_ascii_all(xpb_stanza *s)
{
    s->extension[0]->name = S("_a-b.c9Z");
}
static void g_type_raw_only(xpb_stanza *s)
{
    s->has_type = 0;
    s->type_raw = S("fancy");
}
static void g_attr_same_name_other_ns(xpb_stanza *s)
{
    add_attr(s->extension[0], attr("urn:o", "a", "2"));
}
static void g_ns_id_only(xpb_stanza *s)
{
    s->extension[0]->ns = NULL;
    s->extension[0]->has_ns_id = 1;
    s->extension[0]->ns_id = xpb_ns_id("urn:xmpp:ping");
}
static void g_extra_attr(xpb_stanza *s)
{
    s->n_extra_attr = 1;
    s->extra_attr = arr(1);
    s->extra_attr[0] = attr("urn:o", "id", "x");
}
static void g_text_controls(xpb_stanza *s)
{
    s->body[0]->text = S("a\tb\nc\r\xF0\x9F\x98\x80");
}

/* Compact forms that are fine: the writer must give the same XML as the strings. */
static void g_compact_all(xpb_stanza *s)
{
    s->from = NULL;
    s->has_from_ref = 1;
    s->from_ref = XPB__V1__JID_REF__JID_REF_TO_DOMAIN;
    s->has_origin_id_is_id = s->origin_id_is_id = 1;
    Xpb__V1__StanzaId *x = one_sid(s);
    x->has_by_ref = 1;
    x->by_ref = XPB__V1__JID_REF__JID_REF_TO_BARE;
    x->has_id_uuid = 1;
    x->id_uuid = bin(16);
    x->id_uuid.data[15] = 0xab;
    s->delay = NEW(Xpb__V1__Delay, xpb__v1__delay__init);
    s->delay->has_stamp_seconds = 1;
    s->delay->stamp_seconds = INT64_C(-62167219200); /* 0000-01-01T00:00:00Z */
    Xpb__V1__DiscoInfo *d = disco_of(s, 1, 2);
    d->feature_id[1] = 9;
}
static void g_inner_refs(xpb_stanza *s)
{
    xpb_stanza *in = carbon_of(s);
    in->from = in->to = NULL;
    in->has_from_ref = in->has_to_ref = 1;
    in->from_ref = XPB__V1__JID_REF__JID_REF_OUTER_TO_BARE;
    in->to_ref = XPB__V1__JID_REF__JID_REF_OUTER_FROM;
}

static const good_case GOOD[] = {
    {"compact forms", g_compact_all},
    {"forwarded stanza refers to the outer one", g_inner_refs},
    {"string exactly max_string", g_body_40},
    {"unicode names", g_names_unicode},
    {"ascii name chars", g_name_ascii_all},
    {"type_raw alone", g_type_raw_only},
    {"same name, other ns", g_attr_same_name_other_ns},
    {"ns_id alone", g_ns_id_only},
    {"namespaced extra_attr named id", g_extra_attr},
    {"tab, newline, CR, emoji", g_text_controls},
};

/* The writer expands every compact form back to its string. */
static void test_compact_to_xml(void **state)
{
    (void)state;
    xpb_stanza *st = base();
    g_compact_all(st);
    st->n_extension = 0;
    xpb_stanza *in = carbon_of(st);
    in->n_extension = 0;
    in->from = in->to = NULL;
    in->has_from_ref = in->has_to_ref = 1;
    in->from_ref = XPB__V1__JID_REF__JID_REF_OUTER_FROM; /* -> the outer from_ref, resolved */
    in->to_ref = XPB__V1__JID_REF__JID_REF_OUTER_TO_BARE;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    char err[256] = "";
    int rc = xpb_stanza_to_xml(&b, st, "", NULL, err, sizeof err);
    if (rc != 0) fail_msg("%d %s", rc, err);
    assert_int_equal(xpb_buf_append(&b, "", 1), 0);
    assert_string_equal(
        b.data,
        "<message xmlns='jabber:client' type='chat' id='m1' from='example.net' "
        "to='romeo@example.net'><body>hi</body>"
        "<delay xmlns='urn:xmpp:delay' stamp='0000-01-01T00:00:00Z'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' id='00000000-0000-0000-0000-0000000000ab' "
        "by='romeo@example.net'/><origin-id xmlns='urn:xmpp:sid:0' id='m1'/>"
        "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message xmlns='jabber:client' type='chat' id='m1' from='example.net' "
        "to='romeo@example.net'><body>hi</body></message></forwarded></sent>"
        "<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:example:f'/>"
        "<feature var='urn:xmpp:ping'/></query></message>");
    xpb_buf_free(&b);
}

static void test_good_records(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof GOOD / sizeof GOOD[0]; i++) {
        xpb_stanza *st = base();
        GOOD[i].mutate(st);
        char err[256] = "";
        int rc = xpb_stanza_check(st, &SMALL, err, sizeof err);
        if (rc != 0) fail_msg("%s: got %d \"%s\"", GOOD[i].what, rc, err);
    }
}

/* ---- Depth ------------------------------------------------------------------------- */

/* KIND_OTHER whose element is a chain of n nested elements (depth n). */
static xpb_stanza *other_chain(unsigned n)
{
    xpb_stanza *st = NEW(xpb_stanza, xpb__v1__stanza__init);
    st->has_kind = 1;
    st->kind = XPB__V1__KIND__KIND_OTHER;
    st->element = elem(NULL, "e");
    Xpb__V1__Element *cur = st->element;
    for (unsigned i = 1; i < n; i++) {
        Xpb__V1__Element *c = elem(NULL, "e");
        add_child(cur, c);
        cur = c;
    }
    add_text(cur, "leaf");
    return st;
}

/* A message whose extension is a chain of n - 1 elements (depth n). */
static xpb_stanza *extension_chain(unsigned n)
{
    xpb_stanza *st = base();
    Xpb__V1__Element *cur = st->extension[0]->child[1]->element; /* depth 3 */
    for (unsigned i = 3; i < n; i++) {
        Xpb__V1__Element *c = elem(NULL, "e");
        add_child(cur, c);
        cur = c;
    }
    return st;
}

static int pack_unpack(const xpb_stanza *st, const xpb_record_limits *lim, char *err, size_t n)
{
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_stanza_pack(&b, st), 0);
    xpb_stanza *out = NULL;
    int rc = xpb_stanza_unpack(A, (const uint8_t *)b.data, b.len, lim, &out, err, n);
    assert_true((rc == 0) == (out != NULL));
    xpb_buf_free(&b);
    return rc;
}

static void test_depth(void **state)
{
    (void)state;
    char err[512];
    xpb_stanza *(*make[])(unsigned) = {other_chain, extension_chain};
    for (size_t k = 0; k < 2; k++) {
        xpb_stanza *ok = make[k](SMALL.max_depth);
        xpb_stanza *deep = make[k](SMALL.max_depth + 1);
        assert_int_equal(xpb_stanza_check(ok, &SMALL, err, sizeof err), 0);
        assert_int_equal(pack_unpack(ok, &SMALL, err, sizeof err), 0);
        assert_int_equal(xpb_stanza_check(deep, &SMALL, err, sizeof err), XPB_EPBDEPTH);
        assert_non_null(strstr(err, "nesting depth 9 exceeds max_depth (8)"));
        assert_non_null(strstr(err, k == 0 ? "stanza.element.child[0].element.child[0]"
                                           : "stanza.extension[0].child[1].element.child[0]"));
        assert_int_equal(pack_unpack(deep, &SMALL, err, sizeof err), XPB_EPBDEPTH);
        assert_true(strncmp(err, "stanza.", 7) == 0);
    }
    /* Typed nesting counts too: carbon(2) forwarded(3) stanza(4) body(5). */
    xpb_record_limits four = {.max_depth = 4};
    xpb_stanza *st = base();
    m_forwarded_other(st);
    st->carbon->forwarded->stanza->kind = XPB__V1__KIND__KIND_MESSAGE;
    st->carbon->forwarded->stanza->n_extension = 0;
    assert_int_equal(xpb_stanza_check(st, &four, err, sizeof err), XPB_EPBDEPTH);
    assert_non_null(strstr(err, "stanza.carbon.forwarded.stanza.body[0]: nesting depth 5"));
    four.max_depth = 5;
    assert_int_equal(xpb_stanza_check(st, &four, err, sizeof err), 0);
}

/* Writes v as a varint at p; returns its length. */
static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        if (p) p[n] = (uint8_t)(b | (v ? 0x80 : 0));
        n++;
    } while (v);
    return n;
}

/* Stanza{kind=OTHER, element(70)=Element{name="a", child(5)=Node{element(1)=...}}}
 * nested n Elements deep, built outside-in after computing the sizes. */
static uint8_t *deep_wire(size_t n, size_t *len)
{
    size_t *el = calloc(n, sizeof *el); /* el[i]: size of the element i levels from the inside */
    assert_non_null(el);
    el[0] = 3; /* 1A 01 'a' */
    for (size_t i = 1; i < n; i++) {
        size_t node = 1 + put_varint(NULL, el[i - 1]) + el[i - 1];
        el[i] = 3 + 1 + put_varint(NULL, node) + node;
    }
    size_t total = 2 + 2 + put_varint(NULL, el[n - 1]) + el[n - 1];
    uint8_t *buf = malloc(total), *p = buf;
    assert_non_null(buf);
    *p++ = 0x08, *p++ = 0x04; /* kind = KIND_OTHER */
    *p++ = 0xB2, *p++ = 0x04; /* field 70, wire type 2 */
    p += put_varint(p, el[n - 1]);
    for (size_t i = n - 1;; i--) {
        *p++ = 0x1A, *p++ = 0x01, *p++ = 'a'; /* name = "a" */
        if (i == 0) break;
        size_t node = 1 + put_varint(NULL, el[i - 1]) + el[i - 1];
        *p++ = 0x2A; /* child */
        p += put_varint(p, node);
        *p++ = 0x0A; /* Node.element */
        p += put_varint(p, el[i - 1]);
    }
    assert_int_equal((size_t)(p - buf), total);
    free(el);
    *len = total;
    return buf;
}

static void test_deep_wire(void **state)
{
    (void)state;
    size_t len;
    char err[256];
    xpb_stanza *out = (xpb_stanza *)1;
    uint8_t *w = deep_wire(10000, &len);
    assert_int_equal(xpb_pb_check_depth(&xpb__v1__stanza__descriptor, w, len, 32), XPB_EPBDEPTH);
    assert_int_equal(xpb_stanza_unpack(A, w, len, NULL, &out, err, sizeof err), XPB_EPBDEPTH);
    assert_null(out);
    assert_non_null(strstr(err, "stanza.element.child.element.child"));
    free(w);
    /* Wire depth of n nested Elements is 2n (Stanza, then Element/Node pairs). */
    w = deep_wire(100, &len);
    assert_int_equal(xpb_pb_check_depth(&xpb__v1__stanza__descriptor, w, len, 200), 0);
    assert_int_equal(xpb_pb_check_depth(&xpb__v1__stanza__descriptor, w, len, 199), XPB_EPBDEPTH);
    free(w);
    /* A shallow one built the same way is fine, and unpacks to the same depth. */
    w = deep_wire(5, &len);
    assert_int_equal(xpb_pb_check_depth(&xpb__v1__stanza__descriptor, w, len, 10), 0);
    assert_int_equal(xpb_pb_check_depth(&xpb__v1__stanza__descriptor, w, len, 9), XPB_EPBDEPTH);
    assert_int_equal(xpb_stanza_unpack(A, w, len, NULL, &out, err, sizeof err), 0);
    assert_string_equal(out->element->child[0]->element->child[0]->element->name, "a");
    free(w);
}

/* ---- Wire format errors -------------------------------------------------------------- */

typedef struct wire_case {
    const char *what;
    const char *bytes;
    size_t len;
    int code;
    const char *msg;
} wire_case;

#define W(s) s, sizeof(s) - 1
static const wire_case WIRE[] = {
    {"truncated varint", W("\x08\x80"), XPB_EPBDECODE, "truncated varint in the field at byte 0"},
    {"truncated tag", W("\x08\x01\x80"), XPB_EPBDECODE, "truncated tag at byte 2"},
    {"length past end",
     W("\x08\x01\x22\x05"
       "ab"),
     XPB_EPBDECODE, "length runs past the end"},
    {"truncated length", W("\x08\x01\x22"), XPB_EPBDECODE, "truncated length"},
    {"start group", W("\x08\x01\x0B"), XPB_EPBDECODE, "group"},
    {"end group", W("\x08\x01\x0C"), XPB_EPBDECODE, "group"},
    {"wire type 7", W("\x08\x01\x0F"), XPB_EPBDECODE, "invalid wire type"},
    {"field 0", W("\x08\x01\x02\x00"), XPB_EPBDECODE, "invalid field number"},
    {"truncated fixed64", W("\x08\x01\x99\x06\x01\x02"), XPB_EPBDECODE, "truncated fixed"},
    {"message as varint", W("\x08\x01\xB0\x04\x01"), XPB_EPBDECODE, "scalar wire type"},
    {"nested truncation",
     W("\x08\x04\xB2\x04\x03\x1A\x05"
       "a"),
     XPB_EPBDECODE, "stanza.element: length runs past"},
    {"U+0000 in a string",
     W("\x08\x01\x22\x03"
       "a\0b"),
     XPB_EXMLCHAR, "stanza.id: U+0000 is not an XML 1.0 character at byte 5"},
    {"U+0000 nested",
     W("\x08\x01\x52\x04\x12\x02"
       "a\0"),
     XPB_EXMLCHAR, "stanza.body.text: U+0000"},
    {"kind missing",
     W("\x22\x01"
       "a"),
     XPB_ERECORD, "stanza.kind: is not set"},
    {"unknown fields skipped", W("\x08\x01\xF8\x07\x05\xFA\x07\x01x\x9D\x08\x01\x02\x03\x04"), 0,
     ""},
};

static void test_wire_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof WIRE / sizeof WIRE[0]; i++) {
        char err[256] = "";
        xpb_stanza *out = NULL;
        int rc = xpb_stanza_unpack(A, (const uint8_t *)WIRE[i].bytes, WIRE[i].len, NULL, &out, err,
                                   sizeof err);
        if (rc != WIRE[i].code || strstr(err, WIRE[i].msg) == NULL)
            fail_msg("%s: got %d \"%s\", want %d \"%s\"", WIRE[i].what, rc, err, WIRE[i].code,
                     WIRE[i].msg);
        assert_true((rc == 0) == (out != NULL));
    }
}

/* ---- Pack / unpack --------------------------------------------------------------------- */

static xpb_stanza *rich(void)
{
    xpb_stanza *st = base();
    m_roster_sub_99(st);
    st->roster->item[0]->subscription = XPB__V1__ROSTER_ITEM__SUBSCRIPTION__SUBSCRIPTION_BOTH;
    st->roster->item[0]->n_group = 1;
    st->roster->item[0]->group = arr(1);
    st->roster->item[0]->group[0] = S("Friends");
    st->has_priority = 1;
    st->priority = -5;
    st->n_order = 2;
    st->order = xpb_arena_calloc(A, 2 * sizeof(uint32_t));
    st->order[0] = 50, st->order[1] = 10;
    st->lang = S("en");
    return st;
}

static void test_pack_roundtrip(void **state)
{
    (void)state;
    xpb_stanza *st = rich();
    xpb_buf b, b2;
    xpb_buf_init(&b, 0);
    xpb_buf_init(&b2, 0);
    assert_int_equal(xpb_buf_append(&b, "pre", 3), 0); /* pack appends */
    assert_int_equal(xpb_stanza_pack(&b, st), 0);
    assert_int_equal(b.len, 3 + xpb__v1__stanza__get_packed_size(st));
    xpb_stanza *out = NULL;
    char err[256];
    assert_int_equal(
        xpb_stanza_unpack(A, (const uint8_t *)b.data + 3, b.len - 3, NULL, &out, err, sizeof err),
        0);
    assert_int_equal(out->kind, XPB__V1__KIND__KIND_MESSAGE);
    assert_string_equal(out->from, st->from);
    assert_string_equal(out->body[0]->text, "hi");
    assert_string_equal(out->extension[0]->ns, "urn:example");
    assert_string_equal(out->extension[0]->child[0]->text, "t");
    assert_string_equal(out->roster->item[0]->group[0], "Friends");
    assert_int_equal(out->priority, -5);
    assert_int_equal(out->n_order, 2);
    assert_int_equal(out->order[1], 10);
    /* Equal record: packing it again gives the same bytes. */
    assert_int_equal(xpb_stanza_pack(&b2, out), 0);
    assert_int_equal(b2.len, b.len - 3);
    assert_memory_equal(b2.data, b.data + 3, b2.len);
    /* Bounded buffer. */
    xpb_buf small;
    xpb_buf_init(&small, 10);
    assert_int_equal(xpb_stanza_pack(&small, st), XPB_ETOOBIG);
    assert_int_equal(small.len, 0);
    xpb_buf_free(&small);
    xpb_buf_free(&b);
    xpb_buf_free(&b2);
}

/* Every prefix of a valid record: a clean refusal or a valid (shorter) record. */
static void test_truncated(void **state)
{
    (void)state;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_stanza_pack(&b, rich()), 0);
    char err[256];
    xpb_stanza *out;
    /* The last field is a string: cutting its last byte breaks its length. */
    assert_int_equal(
        xpb_stanza_unpack(A, (const uint8_t *)b.data, b.len - 1, NULL, &out, err, sizeof err),
        XPB_EPBDECODE);
    assert_non_null(strstr(err, "runs past the end"));
    size_t refused = 0;
    for (size_t n = 0; n < b.len; n++) {
        xpb_arena_reset(A);
        int rc = xpb_stanza_unpack(A, (const uint8_t *)b.data, n, NULL, &out, err, sizeof err);
        assert_true(rc == 0 || rc == XPB_EPBDECODE || rc == XPB_ERECORD);
        refused += rc == XPB_EPBDECODE;
    }
    assert_true(refused > b.len / 2);
    xpb_buf_free(&b);
}

/* ---- Record -> XML: text cannot inject markup ---------------------------------------------- */

typedef struct count {
    int stanzas;
    char name[32];
} count;

static int on_stanza(void *ud, const xpb_node *st)
{
    count *c = ud;
    c->stanzas++;
    snprintf(c->name, sizeof c->name, "%s", st->name);
    return 0;
}

static void test_body_injection(void **state)
{
    (void)state;
    const char *evil = "</body></message><iq type='set'><query/></iq><message><body>";
    xpb_stanza *st = base();
    st->body[0]->text = S(evil);
    xpb_buf out;
    xpb_buf_init(&out, 0);
    char err[256] = "";
    int rc = xpb_stanza_to_xml(&out, st, "", NULL, err, sizeof err);
    if (rc != 0) fail_msg("xpb_stanza_to_xml: %d %s", rc, err);
    assert_true(out.len > 0);
    count c = {0, ""};
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    xpb_reader *r = NULL;
    assert_int_equal(xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, &c), 0);
    rc = xpb_reader_feed(r, out.data, out.len);
    if (rc != 0) fail_msg("reader: %d %s on %.*s", rc, xpb_reader_error(r), (int)out.len, out.data);
    assert_int_equal(c.stanzas, 1);
    assert_string_equal(c.name, "message");
    xpb_reader_free(r);
    xpb_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_base_is_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact_to_xml, setup, teardown),
        cmocka_unit_test_setup_teardown(test_good_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deep_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wire_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_injection, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
