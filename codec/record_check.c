/* Checks for untrusted records (docs/mapping.md, "Record checks"): the wire
 * depth walk that runs before protobuf-c ever sees the bytes, unpack/pack, and
 * the one-pass, allocation-free rule check that runs on every outbound stanza. */
#include <expat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack_internal.h"
#include "stanza_internal.h"
#include "xpb_error.h"
#include "xpb_jid.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"

#define NS_XMLNS "http://www.w3.org/2000/xmlns/"
/* Attributes per element: the reader refuses more (XPB_READER_DEFAULT_MAX_ATTRS),
 * and the bound keeps the duplicate check linear in the record size. */
#define RECORD_MAX_ATTRS XPB_READER_DEFAULT_MAX_ATTRS
/* How much of an offending value an error message quotes. */
#define QUOTE_MAX 64

typedef struct chk {
    const xpb_scope *sc; /* the stanza being checked (JidRef targets) */
    size_t max_string;
    unsigned max_depth;
    char *err;
    size_t errlen;
    XML_Parser names; /* created only for non-ASCII names (rare) */
} chk;

/* ---- Error messages ---------------------------------------------------------
 * The innermost check writes "field: rule"; each level on the way out prepends
 * its own segment, so the path costs nothing unless something is refused. A
 * message-level refusal writes ": rule" and gets the segment without a dot. */

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int
fail(chk *c, int code, const char *field, const char *fmt, ...)
{
    if (c->err == NULL || c->errlen == 0) return code;
    int k = snprintf(c->err, c->errlen, "%s: ", field);
    if (k < 0 || (size_t)k >= c->errlen) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
    va_end(ap);
    return code;
}

static void prepend_raw(char *err, size_t errlen, const char *seg, size_t seglen)
{
    if (err == NULL || errlen == 0) return;
    if (seglen > errlen - 1) seglen = errlen - 1;
    size_t cur = strlen(err);
    size_t keep = cur < errlen - 1 - seglen ? cur : errlen - 1 - seglen;
    memmove(err + seglen, err, keep);
    memcpy(err, seg, seglen);
    err[seglen + keep] = '\0';
}

/* idx == SIZE_MAX: no index. */
static void prepend(char *err, size_t errlen, const char *name, size_t idx)
{
    if (err == NULL || errlen == 0) return;
    const char *dot = err[0] == ':' ? "" : ".";
    char seg[96];
    int k = idx == SIZE_MAX ? snprintf(seg, sizeof seg, "%s%s", name, dot)
                            : snprintf(seg, sizeof seg, "%s[%zu]%s", name, idx, dot);
    if (k < 0) return;
    prepend_raw(err, errlen, seg, (size_t)k < sizeof seg ? (size_t)k : sizeof seg - 1);
}

#define NOIDX SIZE_MAX
/* Run a check of a sub-message or array item and name it on the way out. */
#define TRY_AT(c, expr, name, idx)                                                                 \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != 0) {                                                                            \
            prepend((c)->err, (c)->errlen, (name), (idx));                                         \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

/* ---- Strings ----------------------------------------------------------------- */

/* Code point at s[0..len) for the message; 0xFFFFFFFF when it does not decode. */
static uint32_t peek_cp(const unsigned char *s, size_t len)
{
    if (len == 0) return 0xFFFFFFFFu;
    if (s[0] < 0x80) return s[0];
    size_t n = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : 2;
    if (len < n) return 0xFFFFFFFFu;
    uint32_t cp = s[0] & (0x7Fu >> n);
    for (size_t i = 1; i < n; i++)
        cp = (cp << 6) | (s[i] & 0x3Fu);
    return cp;
}

static int text_fail(chk *c, int rc, const char *field, const char *s, size_t len, size_t off)
{
    if (rc == XPB_EUTF8) return fail(c, rc, field, "invalid UTF-8 at byte %zu", off);
    uint32_t cp = peek_cp((const unsigned char *)s + off, len - off);
    return fail(c, rc, field, "U+%04X at byte %zu is not an XML 1.0 character", (unsigned)cp, off);
}

/* Length limit, UTF-8 and XML 1.0 Char; *lenp gets the length. NULL is absent. */
static int check_str_len(chk *c, const char *s, const char *field, size_t *lenp)
{
    size_t len = strlen(s);
    if (len > c->max_string)
        return fail(c, XPB_ESTRLEN, field, "%zu bytes exceeds max_string (%zu)", len,
                    c->max_string);
    size_t off = 0;
    int rc = xpb_xml_check_text(s, len, &off);
    if (rc != 0) return text_fail(c, rc, field, s, len, off);
    *lenp = len;
    return 0;
}

static int check_str(chk *c, const char *s, const char *field)
{
    size_t len;
    return s == NULL ? 0 : check_str_len(c, s, field, &len);
}

/* Repeated strings cannot hold NULL items (protobuf-c never makes them). */
static int check_strs(chk *c, char *const *v, size_t n, const char *field)
{
    if (n > 0 && v == NULL) return fail(c, XPB_ERECORD, field, "%zu items but no array", n);
    for (size_t i = 0; i < n; i++) {
        if (v[i] == NULL) return fail(c, XPB_ERECORD, field, "item %zu is NULL", i);
        TRY_AT(c, check_str(c, v[i], ""), field, i);
    }
    return 0;
}

/* RFC 7622 via xpb_jid_validate; the JID module's sentence follows ours. */
static int check_jid(chk *c, const char *s, const char *field)
{
    size_t len = 0; /* set by check_str_len; GCC -O3 cannot tell */
    if (s == NULL) return 0;
    TRY(check_str_len(c, s, field, &len));
    char jerr[160];
    jerr[0] = '\0';
    if (xpb_jid_validate(s, len, jerr, sizeof jerr) != 0)
        return fail(c, XPB_EJID, field, "invalid JID '%.*s': %s",
                    (int)(len < QUOTE_MAX ? len : QUOTE_MAX), s, jerr);
    return 0;
}

static int check_enum(chk *c, bool has, int value, const ProtobufCEnumDescriptor *d,
                      const char *field)
{
    if (!has || protobuf_c_enum_descriptor_get_value(d, value) != NULL) return 0;
    return fail(c, XPB_ERECORD, field, "value %d is not a %s", value, d->short_name);
}

/* ---- Compact forms (docs/mapping.md §7) ----------------------------------------- */

/* An id that is either a string (checked as one) or a UUID of exactly 16
 * bytes, never both. field names the string; the bytes are field_uuid. */
static int check_id(chk *c, const char *str, bool has_uuid, ProtobufCBinaryData uuid,
                    const char *field)
{
    if (!has_uuid) return check_str(c, str, field);
    if (str != NULL)
        return fail(c, XPB_ERECORD, field, "both %s and %s_uuid are set", field, field);
    if (uuid.len != 16) {
        char name[64];
        snprintf(name, sizeof name, "%s_uuid", field);
        return fail(c, XPB_ERECORD, name, "%zu bytes; a UUID is exactly 16", uuid.len);
    }
    return 0;
}

/* JidRef values by what they name (stanza.proto). */
#define REF_BIT(v) (1u << XPB__V1__JID_REF__JID_REF_##v)
#define REFS_OWN_TO (REF_BIT(TO_BARE) | REF_BIT(TO_DOMAIN) | REF_BIT(TO))
#define REFS_OWN_FROM (REF_BIT(FROM_BARE) | REF_BIT(FROM_DOMAIN) | REF_BIT(FROM))
#define REFS_OWN (REFS_OWN_TO | REFS_OWN_FROM)
#define REFS_OUTER                                                                                 \
    (REF_BIT(OUTER_TO) | REF_BIT(OUTER_TO_BARE) | REF_BIT(OUTER_FROM) | REF_BIT(OUTER_FROM_BARE))

static bool has_jid(const xpb_stanza *st, bool to)
{
    return to ? st->to != NULL || st->has_to_ref : st->from != NULL || st->has_from_ref;
}

/* A JidRef must be one of `allowed` and name a JID that is there: the
 * stanza's own to/from, or the forwarding stanza's. */
static int check_jid_ref(chk *c, bool has, int ref, unsigned allowed, const char *field)
{
    if (!has) return 0;
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&xpb__v1__jid_ref__descriptor, ref);
    if (v == NULL || ref == 0) return fail(c, XPB_ERECORD, field, "value %d names no JID", ref);
    if ((allowed & (1u << ref)) == 0)
        return fail(c, XPB_ERECORD, field, "%s cannot be used here", v->name);
    bool outer = xpb_ref_table[ref].outer, to = xpb_ref_table[ref].to;
    const xpb_scope *target = outer ? c->sc->outer : c->sc;
    if (target == NULL)
        return fail(c, XPB_ERECORD, field, "%s but no stanza forwards this one", v->name);
    if (!has_jid(target->st, to))
        return fail(c, XPB_ERECORD, field, "%s but the %sstanza has no '%s'", v->name,
                    outer ? "forwarding " : "", to ? "to" : "from");
    return 0;
}

/* Stanza from/to: a string or a reference, never both; a reference to the
 * other attribute of the same stanza, or to the forwarding stanza; the two
 * never both refer within the stanza (no cycle). */
static int check_stanza_jids(chk *c, const xpb_stanza *st)
{
    if (st->from != NULL && st->has_from_ref)
        return fail(c, XPB_ERECORD, "from_ref", "both from and from_ref are set");
    if (st->to != NULL && st->has_to_ref)
        return fail(c, XPB_ERECORD, "to_ref", "both to and to_ref are set");
    TRY(check_jid_ref(c, st->has_from_ref, (int)st->from_ref, REFS_OWN_TO | REFS_OUTER, "from_ref"));
    TRY(check_jid_ref(c, st->has_to_ref, (int)st->to_ref, REFS_OWN_FROM | REFS_OUTER, "to_ref"));
    if (st->has_from_ref && st->has_to_ref && ((REFS_OWN >> st->from_ref) & 1u) &&
        ((REFS_OWN >> st->to_ref) & 1u))
        return fail(c, XPB_ERECORD, "to_ref", "from_ref and to_ref refer to each other");
    return 0;
}

static int check_stamp(chk *c, const Xpb__V1__Delay *d)
{
    if (!d->has_stamp_seconds) return check_str(c, d->stamp, "stamp");
    if (d->stamp != NULL)
        return fail(c, XPB_ERECORD, "stamp_seconds", "both stamp and stamp_seconds are set");
    if (d->stamp_seconds < XPB_STAMP_MIN || d->stamp_seconds > XPB_STAMP_MAX)
        return fail(c, XPB_ERECORD, "stamp_seconds", "%lld is outside years 0000..9999",
                    (long long)d->stamp_seconds);
    return 0;
}

/* origin-id has at most one of its three forms; the flag needs a stanza id. */
static int check_origin_id(chk *c, const xpb_stanza *st)
{
    bool is_id = st->has_origin_id_is_id && st->origin_id_is_id;
    if (is_id && (st->origin_id != NULL || st->has_origin_id_uuid))
        return fail(c, XPB_ERECORD, "origin_id_is_id", "set together with origin_id%s",
                    st->has_origin_id_uuid ? "_uuid" : "");
    if (is_id && st->id == NULL && !st->has_id_uuid)
        return fail(c, XPB_ERECORD, "origin_id_is_id", "set but the stanza has no id");
    return check_id(c, st->origin_id, st->has_origin_id_uuid, st->origin_id_uuid, "origin_id");
}

/* feature_id lists every feature: dictionary ids, 0 for the next string. */
static int check_feature_ids(chk *c, const Xpb__V1__DiscoInfo *d)
{
    if (d->n_feature_id == 0) return 0;
    if (d->feature_id == NULL)
        return fail(c, XPB_ERECORD, "feature_id", "%zu items but no array", d->n_feature_id);
    size_t zeros = 0;
    for (size_t i = 0; i < d->n_feature_id; i++) {
        if (d->feature_id[i] == 0) {
            zeros++;
        } else if (xpb_ns_uri(d->feature_id[i]) == NULL) {
            return fail(c, XPB_ERECORD, "feature_id", "item %zu (%u) is not in the namespace "
                        "dictionary", i, (unsigned)d->feature_id[i]);
        }
    }
    if (zeros != d->n_feature)
        return fail(c, XPB_ERECORD, "feature_id", "has %zu zero entries but there are %zu "
                    "feature strings", zeros, d->n_feature);
    return 0;
}

/* A string or a defined enum value in its place, never both. */
static int check_enum_str(chk *c, const char *str, bool has, int v, const ProtobufCEnumDescriptor *d,
                          const char *field, const char *enum_field)
{
    if (!has) return check_str(c, str, field);
    if (str != NULL)
        return fail(c, XPB_ERECORD, enum_field, "both %s and %s are set", field, enum_field);
    if (v == 0) return fail(c, XPB_ERECORD, enum_field, "value 0 has no XML spelling");
    return check_enum(c, true, v, d, enum_field);
}

/* ---- XML names (Namespaces in XML 1.0 §3 NCName; XML 1.0 5th ed. §2.3) ------- */

/* 1: NameChar, 3: NameStartChar too; ':' excluded (NCName). */
static const unsigned char ascii_name[128] = {
    ['-'] = 1, ['.'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['_'] = 3,
#define L(x) [x] = 3, [x + 32] = 3
    L('A'),    L('B'),    L('C'),    L('D'),    L('E'),    L('F'),    L('G'),
    L('H'),    L('I'),    L('J'),    L('K'),    L('L'),    L('M'),    L('N'),
    L('O'),    L('P'),    L('Q'),    L('R'),    L('S'),    L('T'),    L('U'),
    L('V'),    L('W'),    L('X'),    L('Y'),    L('Z'),
#undef L
};

static bool is_name_start_cp(uint32_t cp)
{
    if (cp < 0x80) return cp < 128 && (ascii_name[cp] & 2);
    return (cp >= 0xC0 && cp <= 0xD6) || (cp >= 0xD8 && cp <= 0xF6) ||
           (cp >= 0xF8 && cp <= 0x2FF) || (cp >= 0x370 && cp <= 0x37D) ||
           (cp >= 0x37F && cp <= 0x1FFF) || (cp >= 0x200C && cp <= 0x200D) ||
           (cp >= 0x2070 && cp <= 0x218F) || (cp >= 0x2C00 && cp <= 0x2FEF) ||
           (cp >= 0x3001 && cp <= 0xD7FF) || (cp >= 0xF900 && cp <= 0xFDCF) ||
           (cp >= 0xFDF0 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0xEFFFF);
}

static bool is_name_cp(uint32_t cp)
{
    if (cp < 0x80) return ascii_name[cp] != 0;
    return is_name_start_cp(cp) || cp == 0xB7 || (cp >= 0x300 && cp <= 0x36F) ||
           (cp >= 0x203F && cp <= 0x2040);
}

/* expat implements the older (4th edition) name tables and no names outside
 * the BMP, so a 5th-edition name it refuses would get our stream killed by an
 * expat-based peer: non-ASCII names must pass expat too. */
static bool expat_accepts_name(chk *c, const char *s, size_t len)
{
    if (c->names == NULL) {
        c->names = XML_ParserCreate("UTF-8");
        if (c->names == NULL) return false;
    } else if (!XML_ParserReset(c->names, "UTF-8")) {
        return false;
    }
    return XML_Parse(c->names, "<", 1, 0) == XML_STATUS_OK &&
           XML_Parse(c->names, s, (int)len, 0) == XML_STATUS_OK &&
           XML_Parse(c->names, "/>", 2, 1) == XML_STATUS_OK;
}

static bool is_ncname_unicode(chk *c, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = u[i] < 0x80 ? 1 : u[i] >= 0xF0 ? 4 : u[i] >= 0xE0 ? 3 : 2;
        uint32_t cp = peek_cp(u + i, len - i);
        if (i == 0 ? !is_name_start_cp(cp) : !is_name_cp(cp)) return false;
        i += n;
    }
    return len <= INT_MAX && expat_accepts_name(c, s, len);
}

/* A required NCName other than "xmlns" (Namespaces in XML 1.0 §3). */
static int check_name(chk *c, const char *s, const char *field)
{
    if (s == NULL || s[0] == '\0') return fail(c, XPB_ERECORD, field, "an XML name is required");
    size_t len = strlen(s);
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    if (u[0] < 0x80 && (ascii_name[u[0]] & 2))
        for (i = 1; i < len && u[i] < 0x80 && ascii_name[u[i]]; i++)
            continue;
    if (i < len) {
        TRY(check_str_len(c, s, field, &len));
        if (!is_ncname_unicode(c, s, len))
            return fail(c, XPB_ERECORD, field, "'%.*s' is not an XML name",
                        (int)(len < QUOTE_MAX ? len : QUOTE_MAX), s);
    } else if (len > c->max_string) {
        return fail(c, XPB_ESTRLEN, field, "%zu bytes exceeds max_string (%zu)", len,
                    c->max_string);
    }
    if (len == 5 && memcmp(s, "xmlns", 5) == 0)
        return fail(c, XPB_ERECORD, field, "'xmlns' is reserved for namespace declarations");
    return 0;
}

/* ---- Generic elements --------------------------------------------------------- */

/* The namespace of an Element or Attribute: ns_id or ns, never both; NULL when
 * neither is given. */
static int check_ns(chk *c, bool has_id, uint32_t id, const char *ns, const char **uri)
{
    *uri = ns;
    if (has_id && ns != NULL)
        return fail(c, XPB_ERECORD, "ns", "both ns_id (%u) and ns are set", (unsigned)id);
    if (has_id) {
        *uri = xpb_ns_uri(id);
        if (*uri == NULL)
            return fail(c, XPB_ERECORD, "ns_id", "%u is not in the namespace dictionary",
                        (unsigned)id);
        return 0;
    }
    size_t len;
    if (ns == NULL) return 0;
    TRY(check_str_len(c, ns, "ns", &len));
    /* Namespace names are URI references (Namespaces in XML 1.0 §2.2), which
     * never hold whitespace (RFC 3986 §2); expat refuses a name with its
     * separator (our reader's is a space) in it. */
    for (size_t i = 0; i < len; i++)
        if (ns[i] == ' ' || ns[i] == '\t' || ns[i] == '\n' || ns[i] == '\r')
            return fail(c, XPB_ERECORD, "ns",
                        "a namespace name cannot contain whitespace (byte %zu)", i);
    return 0;
}

static int check_attr(chk *c, const Xpb__V1__Attribute *a, const char **uri)
{
    if (a == NULL) return fail(c, XPB_ERECORD, "", "is NULL");
    TRY(check_ns(c, a->has_ns_id, a->ns_id, a->ns, uri));
    if (*uri == NULL) *uri = "";
    if (strcmp(*uri, NS_XMLNS) == 0)
        return fail(c, XPB_ERECORD, "ns", "attributes in the xmlns namespace are declarations");
    TRY(check_name(c, a->name, "name"));
    return check_str(c, a->value, "value");
}

/* Each attribute, then no two with the same namespace and name (XML 1.0 §3.1
 * WFC Unique Att Spec, Namespaces §6.3). stanza: also no typed attribute. */
static int check_attrs(chk *c, Xpb__V1__Attribute *const *v, size_t n, bool stanza,
                       const char *field)
{
    const char *uris[RECORD_MAX_ATTRS];
    if (n > RECORD_MAX_ATTRS)
        return fail(c, XPB_ERECORD, field, "%zu attributes exceeds the limit (%u)", n,
                    (unsigned)RECORD_MAX_ATTRS);
    if (n > 0 && v == NULL) return fail(c, XPB_ERECORD, field, "%zu items but no array", n);
    for (size_t i = 0; i < n; i++) {
        TRY_AT(c, check_attr(c, v[i], &uris[i]), field, i);
        if (stanza && xpb_is_typed_stanza_attr(uris[i], v[i]->name))
            return fail(c, XPB_ERECORD, field,
                        "item %zu ('%s') clashes with a typed stanza attribute", i, v[i]->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(v[i]->name, v[j]->name) == 0 && strcmp(uris[i], uris[j]) == 0)
                return fail(c, XPB_ERECORD, field, "items %zu and %zu are the same attribute '%s'",
                            j, i, v[i]->name);
    }
    return 0;
}

static int check_depth(chk *c, unsigned depth)
{
    if (depth <= c->max_depth) return 0;
    return fail(c, XPB_EPBDEPTH, "", "nesting depth %u exceeds max_depth (%u)", depth,
                c->max_depth);
}

static int check_element(chk *c, const Xpb__V1__Element *el, unsigned depth);

static int check_node(chk *c, const Xpb__V1__Node *nd, unsigned depth)
{
    if (nd == NULL) return fail(c, XPB_ERECORD, "", "is NULL");
    switch (nd->node_case) {
    case XPB__V1__NODE__NODE_ELEMENT:
        TRY_AT(c, check_element(c, nd->element, depth + 1), "element", NOIDX);
        return 0;
    case XPB__V1__NODE__NODE_TEXT:
        if (nd->text == NULL) return fail(c, XPB_ERECORD, "text", "is NULL");
        return check_str(c, nd->text, "text");
    default:
        return fail(c, XPB_ERECORD, "", "Node has neither element nor text");
    }
}

/* depth: this element's level (the XML depth it will be written at). */
static int check_element(chk *c, const Xpb__V1__Element *el, unsigned depth)
{
    if (el == NULL) return fail(c, XPB_ERECORD, "", "is NULL");
    TRY(check_depth(c, depth));
    const char *uri;
    TRY(check_ns(c, el->has_ns_id, el->ns_id, el->ns, &uri));
    /* Namespaces in XML 1.0 §3: neither may be a default namespace. */
    if (uri != NULL && (strcmp(uri, NS_XMLNS) == 0 || strcmp(uri, XPB_NS_XML) == 0))
        return fail(c, XPB_ERECORD, "ns", "'%s' cannot be an element's namespace", uri);
    TRY(check_name(c, el->name, "name"));
    TRY(check_attrs(c, el->attr, el->n_attr, false, "attr"));
    if (el->n_child > 0 && el->child == NULL)
        return fail(c, XPB_ERECORD, "child", "%zu items but no array", el->n_child);
    for (size_t i = 0; i < el->n_child; i++)
        TRY_AT(c, check_node(c, el->child[i], depth), "child", i);
    return 0;
}

static int check_elements(chk *c, Xpb__V1__Element *const *v, size_t n, unsigned depth,
                          const char *field)
{
    if (n > 0 && v == NULL) return fail(c, XPB_ERECORD, field, "%zu items but no array", n);
    for (size_t i = 0; i < n; i++)
        TRY_AT(c, check_element(c, v[i], depth), field, i);
    return 0;
}

/* ---- Typed extensions ------------------------------------------------------------ */

static int check_text(chk *c, const Xpb__V1__Text *t, unsigned depth)
{
    TRY(check_depth(c, depth));
    TRY(check_str(c, t->lang, "lang"));
    return check_str(c, t->text, "text");
}

static int check_texts(chk *c, Xpb__V1__Text *const *v, size_t n, unsigned depth, const char *field)
{
    if (n > 0 && v == NULL) return fail(c, XPB_ERECORD, field, "%zu items but no array", n);
    for (size_t i = 0; i < n; i++) {
        if (v[i] == NULL) return fail(c, XPB_ERECORD, field, "item %zu is NULL", i);
        TRY_AT(c, check_text(c, v[i], depth), field, i);
    }
    return 0;
}

static int check_error(chk *c, const Xpb__V1__StanzaError *e, unsigned depth)
{
    TRY(check_depth(c, depth));
    TRY(check_enum(c, e->has_type, (int)e->type, &xpb__v1__error_type__descriptor, "type"));
    if (e->has_type && e->type_raw != NULL)
        return fail(c, XPB_ERECORD, "type_raw", "both type and type_raw are set");
    TRY(check_str(c, e->type_raw, "type_raw"));
    TRY(check_enum(c, e->has_condition, (int)e->condition, &xpb__v1__error_condition__descriptor,
                   "condition"));
    TRY(check_str(c, e->condition_uri, "condition_uri"));
    if (e->text != NULL) TRY_AT(c, check_text(c, e->text, depth + 1), "text", NOIDX);
    TRY(check_jid(c, e->by, "by"));
    TRY(check_elements(c, e->application, e->n_application, depth + 1, "application"));
    return check_str(c, e->code, "code");
}

static int check_roster_item(chk *c, const Xpb__V1__RosterItem *it, unsigned depth)
{
    if (it == NULL) return fail(c, XPB_ERECORD, "", "is NULL");
    TRY(check_depth(c, depth));
    TRY(check_jid(c, it->jid, "jid"));
    TRY(check_str(c, it->name, "name"));
    TRY(check_enum(c, it->has_subscription, (int)it->subscription,
                   &xpb__v1__roster_item__subscription__descriptor, "subscription"));
    return check_strs(c, it->group, it->n_group, "group");
}

static int check_roster(chk *c, const Xpb__V1__RosterQuery *q, unsigned depth)
{
    TRY(check_depth(c, depth));
    TRY(check_str(c, q->ver, "ver"));
    if (q->n_item > 0 && q->item == NULL)
        return fail(c, XPB_ERECORD, "item", "%zu items but no array", q->n_item);
    for (size_t i = 0; i < q->n_item; i++)
        TRY_AT(c, check_roster_item(c, q->item[i], depth + 1), "item", i);
    return 0;
}

/* refs: Stanza.delay may name its stanza's JIDs; Forwarded.delay may not. */
static int check_delay(chk *c, const Xpb__V1__Delay *d, unsigned depth, bool refs)
{
    TRY(check_depth(c, depth));
    TRY(check_stamp(c, d));
    if (d->has_from_ref && d->from != NULL)
        return fail(c, XPB_ERECORD, "from_ref", "both from and from_ref are set");
    TRY(check_jid_ref(c, d->has_from_ref, (int)d->from_ref, refs ? REFS_OWN : 0, "from_ref"));
    TRY(check_jid(c, d->from, "from"));
    return check_str(c, d->text, "text");
}

static int check_stanza_id(chk *c, const Xpb__V1__StanzaId *s)
{
    TRY(check_id(c, s->id, s->has_id_uuid, s->id_uuid, "id"));
    if (s->has_by_ref && s->by != NULL)
        return fail(c, XPB_ERECORD, "by_ref", "both by and by_ref are set");
    TRY(check_jid_ref(c, s->has_by_ref, (int)s->by_ref, REFS_OWN, "by_ref"));
    return check_jid(c, s->by, "by");
}

static int check_stanza_ids(chk *c, Xpb__V1__StanzaId *const *v, size_t n, unsigned depth)
{
    if (n > 0 && v == NULL) return fail(c, XPB_ERECORD, "stanza_id", "%zu items but no array", n);
    for (size_t i = 0; i < n; i++) {
        if (v[i] == NULL) return fail(c, XPB_ERECORD, "stanza_id", "item %zu is NULL", i);
        TRY_AT(c, check_depth(c, depth), "stanza_id", i);
        TRY_AT(c, check_stanza_id(c, v[i]), "stanza_id", i);
    }
    return 0;
}

static int check_muc(chk *c, const Xpb__V1__MucJoin *m, unsigned depth)
{
    TRY(check_depth(c, depth));
    TRY(check_str(c, m->password, "password"));
    if (m->history != NULL) {
        TRY_AT(c, check_depth(c, depth + 1), "history", NOIDX);
        TRY_AT(c, check_str(c, m->history->since, "since"), "history", NOIDX);
    }
    return 0;
}

static int check_muc_user(chk *c, const Xpb__V1__MucUser *m, unsigned depth)
{
    TRY(check_depth(c, depth));
    if (m->n_item > 0 && m->item == NULL)
        return fail(c, XPB_ERECORD, "item", "%zu items but no array", m->n_item);
    if (m->n_status > 0 && m->status == NULL)
        return fail(c, XPB_ERECORD, "status", "%zu items but no array", m->n_status);
    for (size_t i = 0; i < m->n_item; i++) {
        const Xpb__V1__MucUser__Item *it = m->item[i];
        if (it == NULL) return fail(c, XPB_ERECORD, "item", "item %zu is NULL", i);
        TRY_AT(c, check_depth(c, depth + 1), "item", i);
        TRY_AT(c, check_enum_str(c, it->affiliation, it->has_affiliation_enum,
                                 (int)it->affiliation_enum,
                                 &xpb__v1__muc_user__affiliation__descriptor, "affiliation",
                                 "affiliation_enum"), "item", i);
        TRY_AT(c, check_enum_str(c, it->role, it->has_role_enum, (int)it->role_enum,
                                 &xpb__v1__muc_user__role__descriptor, "role", "role_enum"),
               "item", i);
        TRY_AT(c, check_jid(c, it->jid, "jid"), "item", i);
        TRY_AT(c, check_str(c, it->nick, "nick"), "item", i);
    }
    return 0;
}

static int check_stanza(chk *c, const xpb_stanza *st, unsigned depth, bool forwarded);

/* XEP-0297: the forwarded stanza is a message, presence or iq. */
static int check_forwarded(chk *c, const Xpb__V1__Forwarded *f, unsigned depth)
{
    if (f == NULL) return 0;
    TRY(check_depth(c, depth));
    if (f->delay != NULL) TRY_AT(c, check_delay(c, f->delay, depth + 1, false), "delay", NOIDX);
    if (f->stanza != NULL) TRY_AT(c, check_stanza(c, f->stanza, depth + 1, true), "stanza", NOIDX);
    return 0;
}

static int check_carbon(chk *c, const Xpb__V1__Carbon *cb, unsigned depth)
{
    TRY(check_depth(c, depth));
    TRY(check_enum(c, cb->has_direction, (int)cb->direction,
                   &xpb__v1__carbon__direction__descriptor, "direction"));
    TRY_AT(c, check_forwarded(c, cb->forwarded, depth + 1), "forwarded", NOIDX);
    return 0;
}

static int check_mam(chk *c, const Xpb__V1__MamResult *m, unsigned depth)
{
    TRY(check_depth(c, depth));
    TRY(check_id(c, m->queryid, m->has_queryid_uuid, m->queryid_uuid, "queryid"));
    TRY(check_id(c, m->id, m->has_id_uuid, m->id_uuid, "id"));
    TRY_AT(c, check_forwarded(c, m->forwarded, depth + 1), "forwarded", NOIDX);
    return 0;
}

static int check_disco_info(chk *c, const Xpb__V1__DiscoInfo *d, unsigned depth)
{
    TRY(check_depth(c, depth));
    TRY(check_str(c, d->node, "node"));
    if (d->n_identity > 0 && d->identity == NULL)
        return fail(c, XPB_ERECORD, "identity", "%zu items but no array", d->n_identity);
    for (size_t i = 0; i < d->n_identity; i++) {
        const Xpb__V1__DiscoInfo__Identity *id = d->identity[i];
        if (id == NULL) return fail(c, XPB_ERECORD, "identity", "item %zu is NULL", i);
        TRY_AT(c, check_depth(c, depth + 1), "identity", i);
        TRY_AT(c, check_str(c, id->category, "category"), "identity", i);
        TRY_AT(c, check_str(c, id->type, "type"), "identity", i);
        TRY_AT(c, check_str(c, id->name, "name"), "identity", i);
        TRY_AT(c, check_str(c, id->lang, "lang"), "identity", i);
    }
    TRY(check_strs(c, d->feature, d->n_feature, "feature"));
    TRY(check_feature_ids(c, d));
    return check_elements(c, d->extension, d->n_extension, depth + 1, "extension");
}

static int check_disco_items(chk *c, const Xpb__V1__DiscoItems *d, unsigned depth)
{
    TRY(check_depth(c, depth));
    TRY(check_str(c, d->node, "node"));
    if (d->n_item > 0 && d->item == NULL)
        return fail(c, XPB_ERECORD, "item", "%zu items but no array", d->n_item);
    for (size_t i = 0; i < d->n_item; i++) {
        const Xpb__V1__DiscoItems__Item *it = d->item[i];
        if (it == NULL) return fail(c, XPB_ERECORD, "item", "item %zu is NULL", i);
        TRY_AT(c, check_depth(c, depth + 1), "item", i);
        TRY_AT(c, check_jid(c, it->jid, "jid"), "item", i);
        TRY_AT(c, check_str(c, it->node, "node"), "item", i);
        TRY_AT(c, check_str(c, it->name, "name"), "item", i);
    }
    return 0;
}

static int check_caps(chk *c, const Xpb__V1__Caps *k, unsigned depth)
{
    TRY(check_depth(c, depth));
    TRY(check_enum_str(c, k->hash, k->has_hash_enum, (int)k->hash_enum,
                       &xpb__v1__caps__hash__descriptor, "hash", "hash_enum"));
    TRY(check_str(c, k->node, "node"));
    TRY(check_str(c, k->ver, "ver"));
    return check_str(c, k->ext, "ext");
}

/* ---- Stanza ------------------------------------------------------------------------ */

static int check_head(chk *c, const xpb_stanza *st, bool forwarded)
{
    if (!st->has_kind || st->kind == XPB__V1__KIND__KIND_UNSPECIFIED)
        return fail(c, XPB_ERECORD, "kind", "is not set");
    TRY(check_enum(c, true, (int)st->kind, &xpb__v1__kind__descriptor, "kind"));
    if (st->kind == XPB__V1__KIND__KIND_OTHER && st->element == NULL)
        return fail(c, XPB_ERECORD, "element", "is required for KIND_OTHER");
    if (forwarded && st->kind == XPB__V1__KIND__KIND_OTHER)
        return fail(c, XPB_ERECORD, "kind", "a forwarded stanza must be a message, presence or iq");
    TRY(check_enum(c, st->has_type, (int)st->type, &xpb__v1__stanza_type__descriptor, "type"));
    if (st->has_type && st->type_raw != NULL)
        return fail(c, XPB_ERECORD, "type_raw", "both type and type_raw are set");
    TRY(check_str(c, st->type_raw, "type_raw"));
    TRY(check_id(c, st->id, st->has_id_uuid, st->id_uuid, "id"));
    TRY(check_jid(c, st->from, "from"));
    TRY(check_jid(c, st->to, "to"));
    TRY(check_stanza_jids(c, st));
    TRY(check_str(c, st->lang, "lang"));
    return check_attrs(c, st->extra_attr, st->n_extra_attr, true, "extra_attr");
}

static int check_simple(chk *c, const xpb_stanza *st, unsigned d)
{
    TRY(check_texts(c, st->body, st->n_body, d, "body"));
    TRY(check_texts(c, st->subject, st->n_subject, d, "subject"));
    if (st->thread != NULL) {
        TRY_AT(c, check_depth(c, d), "thread", NOIDX);
        TRY_AT(c, check_id(c, st->thread->id, st->thread->has_id_uuid, st->thread->id_uuid, "id"),
               "thread", NOIDX);
        TRY_AT(c, check_str(c, st->thread->parent, "parent"), "thread", NOIDX);
    }
    TRY(check_enum(c, st->has_show, (int)st->show, &xpb__v1__show__descriptor, "show"));
    TRY(check_texts(c, st->status, st->n_status, d, "status"));
    if (st->error != NULL) TRY_AT(c, check_error(c, st->error, d), "error", NOIDX);
    if (st->roster != NULL) TRY_AT(c, check_roster(c, st->roster, d), "roster", NOIDX);
    TRY(check_enum(c, st->has_chat_state, (int)st->chat_state, &xpb__v1__chat_state__descriptor,
                   "chat_state"));
    TRY(check_id(c, st->receipt_received, st->has_receipt_received_uuid,
                 st->receipt_received_uuid, "receipt_received"));
    if (st->delay != NULL) TRY_AT(c, check_delay(c, st->delay, d, true), "delay", NOIDX);
    TRY(check_stanza_ids(c, st->stanza_id, st->n_stanza_id, d));
    return check_origin_id(c, st);
}

static int check_extensions(chk *c, const xpb_stanza *st, unsigned d)
{
    if (st->muc != NULL) TRY_AT(c, check_muc(c, st->muc, d), "muc", NOIDX);
    if (st->muc_user != NULL) TRY_AT(c, check_muc_user(c, st->muc_user, d), "muc_user", NOIDX);
    if (st->carbon != NULL) TRY_AT(c, check_carbon(c, st->carbon, d), "carbon", NOIDX);
    if (st->disco_info != NULL)
        TRY_AT(c, check_disco_info(c, st->disco_info, d), "disco_info", NOIDX);
    if (st->disco_items != NULL)
        TRY_AT(c, check_disco_items(c, st->disco_items, d), "disco_items", NOIDX);
    if (st->caps != NULL) TRY_AT(c, check_caps(c, st->caps, d), "caps", NOIDX);
    if (st->mam_result != NULL) TRY_AT(c, check_mam(c, st->mam_result, d), "mam_result", NOIDX);
    return check_elements(c, st->extension, st->n_extension, d, "extension");
}

/* depth: the stanza's own level. Its children are one deeper; Stanza.element
 * IS the stanza element, so it sits at the stanza's level (record depth then
 * equals the XML depth the reader limits). */
static int check_stanza_in(chk *c, const xpb_stanza *st, unsigned depth, bool forwarded)
{
    TRY(check_depth(c, depth));
    TRY(check_head(c, st, forwarded));
    TRY(check_simple(c, st, depth + 1));
    TRY(check_extensions(c, st, depth + 1));
    if (st->element != NULL) TRY_AT(c, check_element(c, st->element, depth), "element", NOIDX);
    return 0;
}

static int check_stanza(chk *c, const xpb_stanza *st, unsigned depth, bool forwarded)
{
    xpb_scope mine = {st, c->sc};
    c->sc = &mine;
    int rc = check_stanza_in(c, st, depth, forwarded);
    c->sc = mine.outer;
    return rc;
}

static void chk_init(chk *c, const xpb_record_limits *limits, char *err, size_t errlen)
{
    c->max_depth = limits && limits->max_depth ? limits->max_depth : XPB_RECORD_DEFAULT_MAX_DEPTH;
    c->max_string =
        limits && limits->max_string ? limits->max_string : XPB_RECORD_DEFAULT_MAX_STRING;
    c->err = err;
    c->errlen = errlen;
    c->names = NULL;
    c->sc = NULL;
    if (err != NULL && errlen > 0) err[0] = '\0';
}

int xpb_stanza_check(const xpb_stanza *st, const xpb_record_limits *limits, char *err,
                     size_t errlen)
{
    chk c;
    chk_init(&c, limits, err, errlen);
    if (st == NULL) return fail(&c, XPB_EINVAL, "stanza", "is NULL");
    int rc = check_stanza(&c, st, 1, false);
    if (rc != 0) prepend(err, errlen, "stanza", NOIDX);
    if (c.names != NULL) XML_ParserFree(c.names);
    return rc;
}

/* ---- Wire walk ------------------------------------------------------------------------
 * Follows only length-delimited message fields; every other field is skipped
 * in O(1), so the walk is linear in the input and never recurses deeper than
 * max_depth + 1. In unpack mode it also refuses NUL inside strings: protobuf-c
 * would keep it and strlen would silently cut the string there. */

typedef struct wire {
    const uint8_t *base;
    unsigned max_depth;
    bool strings; /* refuse NUL in string fields */
    bool text;    /* and check each string as text: max_string, UTF-8, XML Char */
    size_t max_string;
    char *err;
    size_t errlen;
} wire;

static int wire_fail(wire *w, int code, const uint8_t *at, const char *what)
{
    if (w->err != NULL && w->errlen > 0)
        snprintf(w->err, w->errlen, ": %s at byte %zu", what, (size_t)(at - w->base));
    return code;
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p == end) return XPB_EPBDECODE;
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7Fu) << shift;
        if ((b & 0x80u) == 0) {
            *v = r;
            return 0;
        }
    }
    return XPB_EPBDECODE;
}

static int wire_walk(wire *w, const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                     unsigned depth);

/* A string field's payload p[0..n) as text: the rules check_str_len applies to
 * a C string, applied to the wire bytes, so a NUL (which strlen would stop
 * at) is refused instead of cutting the string short. */
static int wire_text(wire *w, const ProtobufCFieldDescriptor *fd, const uint8_t *p, size_t n)
{
    size_t off = 0;
    int rc = 0;
    if (n > w->max_string) {
        rc = XPB_ESTRLEN;
        if (w->err != NULL && w->errlen > 0)
            snprintf(w->err, w->errlen, ": %zu bytes exceeds max_string (%zu)", n, w->max_string);
    } else if ((rc = xpb_xml_check_text((const char *)p, n, &off)) != 0) {
        if (w->err != NULL && w->errlen > 0 && rc == XPB_EUTF8)
            snprintf(w->err, w->errlen, ": invalid UTF-8 at byte %zu", off);
        else if (w->err != NULL && w->errlen > 0)
            snprintf(w->err, w->errlen, ": U+%04X at byte %zu is not an XML 1.0 character",
                     (unsigned)peek_cp(p + off, n - off), off);
    }
    if (rc != 0) prepend(w->err, w->errlen, fd->name, NOIDX);
    return rc;
}

/* A length-delimited field's payload p[0..n). */
static int wire_delimited(wire *w, const ProtobufCFieldDescriptor *fd, const uint8_t *p, size_t n,
                          unsigned depth)
{
    if (fd == NULL) return 0;
    if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
        int rc = wire_walk(w, fd->descriptor, p, n, depth + 1);
        if (rc != 0) prepend(w->err, w->errlen, fd->name, NOIDX);
        return rc;
    }
    if (w->text && fd->type == PROTOBUF_C_TYPE_STRING) return wire_text(w, fd, p, n);
    if (w->strings && fd->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, n) != NULL) {
        const uint8_t *z = memchr(p, 0, n);
        int rc = wire_fail(w, XPB_EXMLCHAR, z, "U+0000 is not an XML 1.0 character");
        if (w->err != NULL && w->errlen > 0) prepend(w->err, w->errlen, fd->name, NOIDX);
        return rc;
    }
    return 0;
}

static int wire_field(wire *w, const ProtobufCMessageDescriptor *desc, const uint8_t **pp,
                      const uint8_t *end, unsigned depth)
{
    const uint8_t *tag_at = *pp;
    uint64_t tag, v;
    if (read_varint(pp, end, &tag) != 0)
        return wire_fail(w, XPB_EPBDECODE, tag_at, "truncated tag");
    if ((tag >> 3) == 0 || (tag >> 3) > 0x1FFFFFFFu)
        return wire_fail(w, XPB_EPBDECODE, tag_at, "invalid field number");
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3));
    unsigned wt = (unsigned)(tag & 7u);
    if (fd != NULL && fd->type == PROTOBUF_C_TYPE_MESSAGE && wt != 2)
        return wire_fail(w, XPB_EPBDECODE, tag_at, "message field with a scalar wire type");
    switch (wt) {
    case 0:
        if (read_varint(pp, end, &v) != 0)
            return wire_fail(w, XPB_EPBDECODE, tag_at, "truncated varint in the field");
        return 0;
    case 1:
    case 5: {
        size_t n = wt == 1 ? 8 : 4;
        if ((size_t)(end - *pp) < n)
            return wire_fail(w, XPB_EPBDECODE, tag_at, "truncated fixed-size field");
        *pp += n;
        return 0;
    }
    case 2:
        if (read_varint(pp, end, &v) != 0)
            return wire_fail(w, XPB_EPBDECODE, tag_at, "truncated length in the field");
        if (v > (uint64_t)(end - *pp))
            return wire_fail(w, XPB_EPBDECODE, *pp, "length runs past the end of the message");
        *pp += v;
        return wire_delimited(w, fd, *pp - v, (size_t)v, depth);
    default:
        return wire_fail(w, XPB_EPBDECODE, tag_at, "group or invalid wire type");
    }
}

static int wire_walk(wire *w, const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                     unsigned depth)
{
    if (depth > w->max_depth)
        return wire_fail(w, XPB_EPBDEPTH, p, "message nesting exceeds the wire depth bound");
    const uint8_t *end = p + len;
    while (p < end)
        TRY(wire_field(w, desc, &p, end, depth));
    return 0;
}

int xpb_pb_check_depth(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                       unsigned max_depth)
{
    if (desc == NULL || (data == NULL && len > 0)) return XPB_EINVAL;
    wire w = {.base = data, .max_depth = max_depth, .strings = false, .err = NULL, .errlen = 0};
    return wire_walk(&w, desc, data, len, 1);
}

int xpb_pb_check_wire_nul(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                          unsigned max_depth, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0) err[0] = '\0';
    if (desc == NULL || (data == NULL && len > 0)) return XPB_EINVAL;
    wire w = {.base = data, .max_depth = max_depth, .strings = true, .err = err, .errlen = errlen};
    return wire_walk(&w, desc, data, len, 1);
}

int xpb_pb_check_wire_text(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                           unsigned max_depth, size_t max_string, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0) err[0] = '\0';
    if (desc == NULL || (data == NULL && len > 0)) return XPB_EINVAL;
    wire w = {.base = data,
              .max_depth = max_depth,
              .strings = true,
              .text = true,
              .max_string = max_string > 0 ? max_string : XPB_RECORD_DEFAULT_MAX_STRING,
              .err = err,
              .errlen = errlen};
    return wire_walk(&w, desc, data, len, 1);
}

/* ---- bytes <-> record ------------------------------------------------------------------ */

/* Each record level (see check_stanza) is at most two wire levels (Element and
 * its Node wrapper), plus a trailing Node: 2 * max_depth + 1 bounds every
 * record the check would accept, and protobuf-c never recurses further. */
static unsigned wire_bound(unsigned max_depth)
{
    return max_depth > (UINT_MAX - 1) / 2 ? UINT_MAX - 1 : 2 * max_depth + 1;
}

int xpb_stanza_unpack(xpb_arena *a, const uint8_t *data, size_t len,
                      const xpb_record_limits *limits, xpb_stanza **out, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0) err[0] = '\0';
    if (a == NULL || out == NULL || (data == NULL && len > 0)) return XPB_EINVAL;
    *out = NULL;
    unsigned max_depth =
        limits && limits->max_depth ? limits->max_depth : XPB_RECORD_DEFAULT_MAX_DEPTH;
    wire w = {.base = data,
              .max_depth = wire_bound(max_depth),
              .strings = true,
              .err = err,
              .errlen = errlen};
    int rc = wire_walk(&w, &xpb__v1__stanza__descriptor, data, len, 1);
    if (rc != 0) {
        prepend(err, errlen, "stanza", NOIDX);
        return rc;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(&xpb__v1__stanza__descriptor,
                                                    xpb_arena_pb_allocator(a), len, data);
    if (m == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "stanza: protobuf-c cannot unpack these %zu bytes", len);
        return XPB_EPBDECODE;
    }
    rc = xpb_stanza_check((const xpb_stanza *)m, limits, err, errlen);
    if (rc == 0) *out = (xpb_stanza *)m;
    return rc;
}

/* Our two-pass packer (pack.c): the bytes protobuf_c_message_pack gives, at a
 * fraction of the cost. */
int xpb_stanza_pack(xpb_buf *out, const xpb_stanza *st)
{
    if (out == NULL || st == NULL) return XPB_EINVAL;
    return xpb_pack_append(out, &st->base);
}
