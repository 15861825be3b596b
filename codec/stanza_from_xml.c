/* XML -> record: maps a depth-1 element from the reader to an xpb.v1.Stanza.
 * A child becomes a typed field only when that field reproduces it exactly;
 * everything else is kept as a generic Element (docs/mapping.md). */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "stanza_internal.h"
#include "xpb_error.h"
#include "xpb_stanza.h"

/* Dictionary ids used for dispatch (codec/ns.c). */
enum {
    NS_CLIENT = 1, NS_XML = 2, NS_STANZAS = 4, NS_CHATSTATES = 5, NS_RECEIPTS = 6,
    NS_DELAY = 7, NS_SID = 8, NS_PING = 9, NS_MUC = 10, NS_MUC_USER = 11, NS_CARBONS = 14,
    NS_FORWARD = 15, NS_DISCO_INFO = 16, NS_DISCO_ITEMS = 17, NS_CAPS = 18, NS_MAM = 19,
    NS_ROSTER = 21,
};

#define ALLOC_MSG(a, var, T, initfn)                 \
    do {                                             \
        (var) = xpb_arena_alloc((a), sizeof(T));     \
        if ((var) == NULL) return XPB_ENOMEM;        \
        initfn(var);                                 \
    } while (0)

#define DUP_OR_FAIL(a, dst, s, len)                          \
    do {                                                     \
        (dst) = xpb_arena_strndup((a), (s), (len));          \
        if ((dst) == NULL) return XPB_ENOMEM;                \
    } while (0)

/* ---- Small predicates over the tree ---------------------------------- */

static bool is_unqualified(const xpb_attr *at)
{
    return at->ns == NULL || at->ns[0] == '\0';
}

static bool is_xml_lang(const xpb_attr *at)
{
    return at->ns != NULL && xpb_streq(at->ns, XPB_NS_XML) && xpb_streq(at->name, "lang");
}

/* Every attribute is unqualified and named in names (NULL-terminated), or is
 * xml:lang when lang is allowed. */
static bool attrs_ok(const xpb_node *el, const char *const *names, bool lang)
{
    for (size_t i = 0; i < el->n_attrs; i++) {
        const xpb_attr *at = &el->attrs[i];
        if (lang && is_xml_lang(at)) continue;
        if (!is_unqualified(at) || names == NULL) return false;
        const char *const *n = names;
        while (*n != NULL && !xpb_streq(*n, at->name)) n++;
        if (*n == NULL) return false;
    }
    return true;
}

static const xpb_attr *attr_get(const xpb_node *el, const char *name)
{
    for (size_t i = 0; i < el->n_attrs; i++)
        if (is_unqualified(&el->attrs[i]) && xpb_streq(el->attrs[i].name, name))
            return &el->attrs[i];
    return NULL;
}

static const xpb_attr *lang_get(const xpb_node *el)
{
    for (size_t i = 0; i < el->n_attrs; i++)
        if (is_xml_lang(&el->attrs[i])) return &el->attrs[i];
    return NULL;
}

/* Content is at most one text node (the reader merges adjacent text). */
static bool text_only(const xpb_node *el)
{
    const xpb_node *c = el->children;
    return c == NULL || (c->kind == XPB_NODE_TEXT && c->next == NULL);
}

static bool empty_el(const xpb_node *el)
{
    return el->n_attrs == 0 && el->children == NULL;
}

/* Dictionary id of el's namespace: the reader's, or looked up. */
static uint32_t node_ns_id(const xpb_node *el)
{
    return el->ns_id != 0 ? el->ns_id : xpb_ns_id(el->ns);
}

static bool ns_is(const xpb_node *el, uint32_t id)
{
    return node_ns_id(el) == id;
}

static bool name_is(const xpb_node *el, uint32_t id, const char *name)
{
    return el->kind == XPB_NODE_ELEMENT && xpb_streq(el->name, name) && ns_is(el, id);
}

static bool all_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return false;
    return true;
}

/* Canonical decimal ("0", "-12", never "05", "+5" or "-0") within [min, max],
 * so that printing the value gives back the same bytes. */
static bool canon_int(const char *s, size_t len, long min, long max, int32_t *out)
{
    size_t i = 0;
    bool neg = len > 0 && s[0] == '-';
    if (neg) i++;
    if (i >= len || len - i > 10 || s[i] < '0' || s[i] > '9') return false;
    if (s[i] == '0' && (len - i > 1 || neg)) return false;
    long long v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (neg) v = -v;
    if (v < min || v > max) return false;
    *out = (int32_t)v;
    return true;
}

static void node_text(const xpb_node *el, const char **s, size_t *len)
{
    const xpb_node *c = el->children;
    *s = c ? c->text : "";
    *len = c ? c->text_len : 0;
}

static bool attr_int_ok(const xpb_node *el, const char *name)
{
    int32_t v;
    const xpb_attr *at = attr_get(el, name);
    return at == NULL || canon_int(at->value, at->value_len, INT32_MIN, INT32_MAX, &v);
}

/* ---- Exact-match checks, one per typed element ------------------------ */

static const char *const no_attrs[] = {NULL};
static const char *const a_parent[] = {"parent", NULL};
static const char *const a_id[] = {"id", NULL};
static const char *const a_delay[] = {"stamp", "from", NULL};
static const char *const a_sid[] = {"id", "by", NULL};
static const char *const a_error[] = {"type", "by", "code", NULL};
static const char *const a_ver[] = {"ver", NULL};
static const char *const a_ritem[] = {"jid", "name", "subscription", "ask", "approved", NULL};
static const char *const a_history[] = {"maxchars", "maxstanzas", "seconds", "since", NULL};
static const char *const a_muitem[] = {"affiliation", "role", "jid", "nick", NULL};
static const char *const a_code[] = {"code", NULL};
static const char *const a_node[] = {"node", NULL};
static const char *const a_identity[] = {"category", "type", "name", NULL};
static const char *const a_var[] = {"var", NULL};
static const char *const a_ditem[] = {"jid", "node", "name", NULL};
static const char *const a_caps[] = {"hash", "node", "ver", "ext", NULL};
static const char *const a_mam[] = {"queryid", "id", NULL};

static bool match_text_el(const xpb_node *el)
{
    return attrs_ok(el, no_attrs, true) && text_only(el);
}

static bool match_show(const xpb_node *el)
{
    const char *s;
    size_t len;
    node_text(el, &s, &len);
    return el->n_attrs == 0 && text_only(el) && strlen(s) == len &&
           xpb_names_find(&xpb_show_names, s) != 0;
}

static bool match_priority(const xpb_node *el)
{
    const char *s;
    size_t len;
    int32_t v;
    node_text(el, &s, &len);
    return el->n_attrs == 0 && text_only(el) && canon_int(s, len, -128, 127, &v);
}

static bool match_condition(const xpb_node *c)
{
    if (c->kind != XPB_NODE_ELEMENT || !ns_is(c, NS_STANZAS) || c->n_attrs != 0) return false;
    int cond = xpb_names_find(&xpb_condition_names, c->name);
    if (cond == 0) return false;
    if (c->children == NULL) return true;
    return xpb_condition_has_uri(cond) && text_only(c);
}

/* RFC 6120 §8.3.2: one defined condition, optional <text/>, then
 * application-specific elements; any text between them goes generic. */
static bool match_error(const xpb_node *el)
{
    if (!attrs_ok(el, a_error, false)) return false;
    const xpb_node *c = el->children;
    if (c == NULL || !match_condition(c)) return false;
    c = c->next;
    if (c != NULL && name_is(c, NS_STANZAS, "text") && match_text_el(c)) c = c->next;
    for (; c != NULL; c = c->next)
        if (c->kind != XPB_NODE_ELEMENT) return false;
    return true;
}

static bool match_roster_item(const xpb_node *it)
{
    if (!name_is(it, NS_ROSTER, "item") || !attrs_ok(it, a_ritem, false)) return false;
    const xpb_attr *s = attr_get(it, "subscription");
    if (s && xpb_names_find(&xpb_subscription_names, s->value) == 0) return false;
    const xpb_attr *ask = attr_get(it, "ask");
    if (ask && !xpb_streq(ask->value, "subscribe")) return false;
    const xpb_attr *ap = attr_get(it, "approved");
    if (ap && !xpb_streq(ap->value, "true")) return false;
    for (const xpb_node *g = it->children; g != NULL; g = g->next)
        if (!name_is(g, NS_ROSTER, "group") || g->n_attrs != 0 || !text_only(g)) return false;
    return true;
}

static bool match_roster(const xpb_node *el)
{
    if (!attrs_ok(el, a_ver, false)) return false;
    for (const xpb_node *c = el->children; c != NULL; c = c->next)
        if (!match_roster_item(c)) return false;
    return true;
}

static bool match_delay(const xpb_node *el)
{
    return attrs_ok(el, a_delay, false) && text_only(el);
}

static bool match_muc(const xpb_node *el)
{
    if (el->n_attrs != 0) return false;
    const xpb_node *c = el->children;
    if (c != NULL && name_is(c, NS_MUC, "password") && c->n_attrs == 0 && text_only(c))
        c = c->next;
    if (c != NULL && name_is(c, NS_MUC, "history") && c->children == NULL &&
        attrs_ok(c, a_history, false) && attr_int_ok(c, "maxchars") &&
        attr_int_ok(c, "maxstanzas") && attr_int_ok(c, "seconds"))
        c = c->next;
    return c == NULL;
}

/* XEP-0045 §7.2.3: items, then status codes. */
static bool match_muc_user(const xpb_node *el)
{
    if (el->n_attrs != 0) return false;
    const xpb_node *c = el->children;
    while (c != NULL && name_is(c, NS_MUC_USER, "item") && c->children == NULL &&
           attrs_ok(c, a_muitem, false))
        c = c->next;
    while (c != NULL && name_is(c, NS_MUC_USER, "status") && c->children == NULL &&
           attrs_ok(c, a_code, false) && attr_get(c, "code") != NULL && attr_int_ok(c, "code"))
        c = c->next;
    return c == NULL;
}

static bool is_stanza_el(const xpb_node *el)
{
    return el->kind == XPB_NODE_ELEMENT && ns_is(el, NS_CLIENT) &&
           (xpb_streq(el->name, "message") || xpb_streq(el->name, "presence") ||
            xpb_streq(el->name, "iq"));
}

/* XEP-0297: optional delay, then exactly one stanza, no text. */
static bool match_forwarded(const xpb_node *el)
{
    if (!name_is(el, NS_FORWARD, "forwarded") || el->n_attrs != 0) return false;
    const xpb_node *c = el->children;
    if (c != NULL && name_is(c, NS_DELAY, "delay") && match_delay(c)) c = c->next;
    return c != NULL && is_stanza_el(c) && c->next == NULL;
}

static bool match_carbon(const xpb_node *el)
{
    return el->n_attrs == 0 && el->children != NULL && match_forwarded(el->children) &&
           el->children->next == NULL;
}

static bool match_mam(const xpb_node *el)
{
    return attrs_ok(el, a_mam, false) && el->children != NULL &&
           match_forwarded(el->children) && el->children->next == NULL;
}

static bool is_identity(const xpb_node *c)
{
    return name_is(c, NS_DISCO_INFO, "identity") && c->children == NULL &&
           attrs_ok(c, a_identity, true);
}

static bool is_feature(const xpb_node *c)
{
    return name_is(c, NS_DISCO_INFO, "feature") && c->children == NULL &&
           attrs_ok(c, a_var, false) && attr_get(c, "var") != NULL;
}

/* XEP-0030 §3.1: identities, features, then other extensions (XEP-0128). */
static bool match_disco_info(const xpb_node *el)
{
    if (!attrs_ok(el, a_node, false)) return false;
    const xpb_node *c = el->children;
    while (c != NULL && is_identity(c)) c = c->next;
    while (c != NULL && is_feature(c)) c = c->next;
    for (; c != NULL; c = c->next)
        if (c->kind != XPB_NODE_ELEMENT) return false;
    return true;
}

static bool match_disco_items(const xpb_node *el)
{
    if (!attrs_ok(el, a_node, false)) return false;
    for (const xpb_node *c = el->children; c != NULL; c = c->next)
        if (!name_is(c, NS_DISCO_ITEMS, "item") || c->children != NULL ||
            !attrs_ok(c, a_ditem, false))
            return false;
    return true;
}

static bool match_attr_only(const xpb_node *el, const char *const *names, const char *required)
{
    return el->children == NULL && attrs_ok(el, names, false) &&
           (required == NULL || attr_get(el, required) != NULL);
}

/* ---- Classification: (namespace, name) -> field number ------------------ */

static unsigned classify_client(const xpb_node *c)
{
    const char *n = c->name;
    switch (n[0]) {
    case 'b': return xpb_streq(n, "body") && match_text_el(c) ? F_BODY : F_EXTENSION;
    case 's':
        if (xpb_streq(n, "subject")) return match_text_el(c) ? F_SUBJECT : F_EXTENSION;
        if (xpb_streq(n, "status")) return match_text_el(c) ? F_STATUS : F_EXTENSION;
        if (xpb_streq(n, "show")) return match_show(c) ? F_SHOW : F_EXTENSION;
        return F_EXTENSION;
    case 't':
        return xpb_streq(n, "thread") && attrs_ok(c, a_parent, false) && text_only(c)
                   ? F_THREAD : F_EXTENSION;
    case 'p': return xpb_streq(n, "priority") && match_priority(c) ? F_PRIORITY : F_EXTENSION;
    case 'e': return xpb_streq(n, "error") && match_error(c) ? F_ERROR : F_EXTENSION;
    default: return F_EXTENSION;
    }
}

static unsigned classify_ns(const xpb_node *c, uint32_t ns)
{
    const char *n = c->name;
    switch (ns) {
    case NS_CLIENT: return classify_client(c);
    case NS_ROSTER: return xpb_streq(n, "query") && match_roster(c) ? F_ROSTER : 0;
    case NS_CHATSTATES:
        return xpb_names_find(&xpb_chat_state_names, n) && empty_el(c) ? F_CHAT_STATE : 0;
    case NS_RECEIPTS:
        if (xpb_streq(n, "request")) return empty_el(c) ? F_RECEIPT_REQUEST : 0;
        if (xpb_streq(n, "received") && match_attr_only(c, a_id, "id")) return F_RECEIPT_RECEIVED;
        return 0;
    case NS_DELAY: return xpb_streq(n, "delay") && match_delay(c) ? F_DELAY : 0;
    case NS_SID:
        if (xpb_streq(n, "stanza-id") && match_attr_only(c, a_sid, NULL)) return F_STANZA_ID;
        if (xpb_streq(n, "origin-id") && match_attr_only(c, a_id, "id")) return F_ORIGIN_ID;
        return 0;
    case NS_PING: return xpb_streq(n, "ping") && empty_el(c) ? F_PING : 0;
    case NS_MUC: return xpb_streq(n, "x") && match_muc(c) ? F_MUC : 0;
    case NS_MUC_USER: return xpb_streq(n, "x") && match_muc_user(c) ? F_MUC_USER : 0;
    case NS_CARBONS:
        return (xpb_streq(n, "received") || xpb_streq(n, "sent")) && match_carbon(c)
                   ? F_CARBON : 0;
    case NS_DISCO_INFO: return xpb_streq(n, "query") && match_disco_info(c) ? F_DISCO_INFO : 0;
    case NS_DISCO_ITEMS:
        return xpb_streq(n, "query") && match_disco_items(c) ? F_DISCO_ITEMS : 0;
    case NS_CAPS: return xpb_streq(n, "c") && match_attr_only(c, a_caps, NULL) ? F_CAPS : 0;
    case NS_MAM: return xpb_streq(n, "result") && match_mam(c) ? F_MAM_RESULT : 0;
    default: return 0;
    }
}

static bool is_repeated(unsigned f)
{
    return f == F_BODY || f == F_SUBJECT || f == F_STATUS || f == F_STANZA_ID || f == F_EXTENSION;
}

/* The field a child maps to; a second occurrence of a singular field is an
 * extension. *seen has bit f set once field f is taken. */
static unsigned classify(const xpb_node *c, uint64_t *seen)
{
    unsigned f = classify_ns(c, node_ns_id(c));
    if (f == 0) return F_EXTENSION;
    if (!is_repeated(f)) {
        if (*seen & ((uint64_t)1 << f)) return F_EXTENSION;
        *seen |= (uint64_t)1 << f;
    }
    return f;
}

/* ---- Generic elements ----------------------------------------------------- */

/* Namespace of an element relative to its parent: nothing when equal, a
 * dictionary id when known, else the URI ("" for no namespace). */
static int set_element_ns(xpb_arena *a, Xpb__V1__Element *e, const xpb_node *el,
                          const char *parent)
{
    const char *ns = el->ns != NULL ? el->ns : "";
    if (ns == parent || xpb_streq(ns, parent)) return 0; /* the reader shares dictionary URIs */
    uint32_t id = node_ns_id(el);
    if (id != 0) {
        e->has_ns_id = 1;
        e->ns_id = id;
        return 0;
    }
    DUP_OR_FAIL(a, e->ns, ns, strlen(ns));
    return 0;
}

static int map_one_attr(xpb_arena *a, const xpb_attr *at, Xpb__V1__Attribute *r)
{
    xpb__v1__attribute__init(r);
    if (!is_unqualified(at)) {
        uint32_t id = xpb_ns_id(at->ns);
        if (id != 0) {
            r->has_ns_id = 1;
            r->ns_id = id;
        } else {
            DUP_OR_FAIL(a, r->ns, at->ns, strlen(at->ns));
        }
    }
    DUP_OR_FAIL(a, r->name, at->name, strlen(at->name));
    DUP_OR_FAIL(a, r->value, at->value, at->value_len);
    return 0;
}

/* The attributes of el for which keep(at) holds (NULL = all), n of them. */
static int map_attrs(xpb_arena *a, const xpb_node *el, size_t n, bool (*keep)(const xpb_attr *),
                     Xpb__V1__Attribute ***out)
{
    Xpb__V1__Attribute **ptrs = xpb_arena_alloc(a, n * sizeof *ptrs);
    Xpb__V1__Attribute *arr = xpb_arena_alloc(a, n * sizeof *arr);
    if (ptrs == NULL || arr == NULL) return XPB_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < el->n_attrs && k < n; i++) {
        if (keep != NULL && !keep(&el->attrs[i])) continue;
        ptrs[k] = &arr[k];
        int rc = map_one_attr(a, &el->attrs[i], ptrs[k++]);
        if (rc != 0) return rc;
    }
    *out = ptrs;
    return 0;
}

static int map_element(xpb_arena *a, const xpb_node *el, const char *parent,
                       Xpb__V1__Element **out);

static int map_children(xpb_arena *a, const xpb_node *el, Xpb__V1__Element *e)
{
    size_t n = 0;
    for (const xpb_node *c = el->children; c != NULL; c = c->next) n++;
    if (n == 0) return 0;
    Xpb__V1__Node **ptrs = xpb_arena_alloc(a, n * sizeof *ptrs);
    Xpb__V1__Node *arr = xpb_arena_alloc(a, n * sizeof *arr);
    if (ptrs == NULL || arr == NULL) return XPB_ENOMEM;
    size_t i = 0;
    for (const xpb_node *c = el->children; c != NULL; c = c->next, i++) {
        Xpb__V1__Node *nd = ptrs[i] = &arr[i];
        xpb__v1__node__init(nd);
        if (c->kind == XPB_NODE_TEXT) {
            nd->node_case = XPB__V1__NODE__NODE_TEXT;
            DUP_OR_FAIL(a, nd->text, c->text, c->text_len);
        } else {
            nd->node_case = XPB__V1__NODE__NODE_ELEMENT;
            int rc = map_element(a, c, el->ns ? el->ns : "", &nd->element);
            if (rc != 0) return rc;
        }
    }
    e->child = ptrs;
    e->n_child = n;
    return 0;
}

/* Recursion depth is bounded by the reader's max_depth. */
static int map_element(xpb_arena *a, const xpb_node *el, const char *parent,
                       Xpb__V1__Element **out)
{
    Xpb__V1__Element *e;
    ALLOC_MSG(a, e, Xpb__V1__Element, xpb__v1__element__init);
    int rc = set_element_ns(a, e, el, parent);
    if (rc != 0) return rc;
    DUP_OR_FAIL(a, e->name, el->name, strlen(el->name));
    if (el->n_attrs != 0) {
        rc = map_attrs(a, el, el->n_attrs, NULL, &e->attr);
        if (rc != 0) return rc;
        e->n_attr = el->n_attrs;
    }
    rc = map_children(a, el, e);
    if (rc != 0) return rc;
    *out = e;
    return 0;
}

/* Array of n element children of el (text skipped), as generic Elements. */
static int map_element_list(xpb_arena *a, const xpb_node *first, const char *parent,
                            size_t *n_out, Xpb__V1__Element ***out)
{
    size_t n = 0;
    for (const xpb_node *c = first; c != NULL; c = c->next) n++;
    if (n == 0) return 0;
    Xpb__V1__Element **arr = xpb_arena_alloc(a, n * sizeof *arr);
    if (arr == NULL) return XPB_ENOMEM;
    size_t i = 0;
    for (const xpb_node *c = first; c != NULL; c = c->next) {
        int rc = map_element(a, c, parent, &arr[i++]);
        if (rc != 0) return rc;
    }
    *out = arr;
    *n_out = n;
    return 0;
}

/* ---- Typed conversions (input already matched) --------------------------- */

/* Copy of an attribute's value, NULL when absent. */
static int attr_dup(xpb_arena *a, const xpb_node *el, const char *name, char **out)
{
    const xpb_attr *at = attr_get(el, name);
    *out = NULL;
    if (at != NULL) DUP_OR_FAIL(a, *out, at->value, at->value_len);
    return 0;
}

static int text_dup(xpb_arena *a, const xpb_node *el, char **out)
{
    const char *s;
    size_t len;
    node_text(el, &s, &len);
    DUP_OR_FAIL(a, *out, s, len);
    return 0;
}

/* ---- Compact forms (docs/mapping.md §7) ------------------------------------ */

/* s[0..len) as 16 bytes in *bin when it is a canonical UUID, else as a
 * string in *str. */
static int id_dup(xpb_arena *a, const char *s, size_t len, char **str, protobuf_c_boolean *has,
                  ProtobufCBinaryData *bin)
{
    uint8_t u[16];
    if (!xpb_uuid_parse(s, len, u)) {
        DUP_OR_FAIL(a, *str, s, len);
        return 0;
    }
    bin->data = xpb_arena_alloc(a, sizeof u);
    if (bin->data == NULL) return XPB_ENOMEM;
    memcpy(bin->data, u, sizeof u);
    bin->len = sizeof u;
    *has = 1;
    return 0;
}

/* An attribute whose value is spelled in t as that enum value, else as a
 * string (mapping §7.6). */
static int attr_enum_dup(xpb_arena *a, const xpb_node *el, const char *name, const xpb_names *t,
                         char **str, protobuf_c_boolean *has, int *v)
{
    const xpb_attr *at = attr_get(el, name);
    if (at == NULL) return 0;
    int k = strlen(at->value) == at->value_len ? xpb_names_find(t, at->value) : 0;
    if (k == 0) {
        DUP_OR_FAIL(a, *str, at->value, at->value_len);
        return 0;
    }
    *has = 1;
    *v = k;
    return 0;
}

static int attr_id_dup(xpb_arena *a, const xpb_node *el, const char *name, char **str,
                       protobuf_c_boolean *has, ProtobufCBinaryData *bin)
{
    const xpb_attr *at = attr_get(el, name);
    return at ? id_dup(a, at->value, at->value_len, str, has, bin) : 0;
}

/* Candidate JidRefs (mapping §7.3), tried in order. */
static const uint8_t refs_own[] = {1, 2, 3, 4, 5, 6};
static const uint8_t refs_from[] = {7, 8, 9, 10, 5, 1, 3};
static const uint8_t refs_to[] = {7, 8, 9, 10, 6, 2, 4};
#define N_OUTER_REFS 4

/* The JIDs references can name, looked up once: [outer][to]. */
typedef struct jid_ctx {
    const xpb_attr *jid[2][2];
} jid_ctx;

/* el: the stanza the references are relative to, outer the forwarding one. */
static jid_ctx jid_ctx_of(const xpb_node *el, const xpb_node *outer)
{
    jid_ctx j = {{{attr_get(el, "from"), attr_get(el, "to")}, {NULL, NULL}}};
    if (outer != NULL) {
        j.jid[1][0] = attr_get(outer, "from");
        j.jid[1][1] = attr_get(outer, "to");
    }
    return j;
}

/* The first reference among cands whose JID equals v, or 0. */
static int find_ref(const xpb_attr *v, const jid_ctx *j, const uint8_t *cands, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const xpb_ref_info *r = &xpb_ref_table[cands[i]];
        const xpb_attr *jid = j->jid[r->outer][r->to];
        if (jid == NULL) continue;
        size_t off, len;
        xpb_jid_part(jid->value, jid->value_len, r->part, &off, &len);
        if (v->value_len == len && memcmp(v->value, jid->value + off, len) == 0) return cands[i];
    }
    return 0;
}

/* A JID attribute as a reference when one matches, else as a string. */
static int jid_dup(xpb_arena *a, const xpb_attr *v, int ref, char **str, protobuf_c_boolean *has,
                   Xpb__V1__JidRef *out)
{
    if (ref == 0) {
        DUP_OR_FAIL(a, *str, v->value, v->value_len);
        return 0;
    }
    *has = 1;
    *out = (Xpb__V1__JidRef)ref;
    return 0;
}

static bool same_value(const xpb_attr *x, const xpb_attr *y)
{
    return y != NULL && x->value_len == y->value_len && memcmp(x->value, y->value, x->value_len) == 0;
}

static int map_text(xpb_arena *a, const xpb_node *el, Xpb__V1__Text **out)
{
    Xpb__V1__Text *t;
    ALLOC_MSG(a, t, Xpb__V1__Text, xpb__v1__text__init);
    const xpb_attr *lang = lang_get(el);
    if (lang != NULL) DUP_OR_FAIL(a, t->lang, lang->value, lang->value_len);
    *out = t;
    return text_dup(a, el, &t->text);
}

static int map_thread(xpb_arena *a, const xpb_node *el, Xpb__V1__Thread **out)
{
    Xpb__V1__Thread *t;
    ALLOC_MSG(a, t, Xpb__V1__Thread, xpb__v1__thread__init);
    *out = t;
    int rc = attr_dup(a, el, "parent", &t->parent);
    const char *s;
    size_t len;
    node_text(el, &s, &len);
    return rc ? rc : id_dup(a, s, len, &t->id, &t->has_id_uuid, &t->id_uuid);
}

static int map_error(xpb_arena *a, const xpb_node *el, Xpb__V1__StanzaError **out)
{
    Xpb__V1__StanzaError *e;
    ALLOC_MSG(a, e, Xpb__V1__StanzaError, xpb__v1__stanza_error__init);
    *out = e;
    const xpb_attr *type = attr_get(el, "type");
    int t = type ? xpb_names_find(&xpb_error_type_names, type->value) : 0;
    if (t != 0) {
        e->has_type = 1;
        e->type = (Xpb__V1__ErrorType)t;
    } else if (type != NULL) {
        DUP_OR_FAIL(a, e->type_raw, type->value, type->value_len);
    }
    int rc = attr_dup(a, el, "by", &e->by);
    if (rc == 0) rc = attr_dup(a, el, "code", &e->code);
    if (rc != 0) return rc;
    const xpb_node *c = el->children;
    e->has_condition = 1;
    e->condition = (Xpb__V1__ErrorCondition)xpb_names_find(&xpb_condition_names, c->name);
    if (c->children != NULL) DUP_OR_FAIL(a, e->condition_uri, c->children->text, c->children->text_len);
    c = c->next;
    if (c != NULL && name_is(c, NS_STANZAS, "text") && match_text_el(c)) {
        rc = map_text(a, c, &e->text);
        if (rc != 0) return rc;
        c = c->next;
    }
    return map_element_list(a, c, el->ns, &e->n_application, &e->application);
}

static int map_roster_item(xpb_arena *a, const xpb_node *el, Xpb__V1__RosterItem *it)
{
    xpb__v1__roster_item__init(it);
    int rc = attr_dup(a, el, "jid", &it->jid);
    if (rc == 0) rc = attr_dup(a, el, "name", &it->name);
    if (rc != 0) return rc;
    const xpb_attr *s = attr_get(el, "subscription");
    if (s != NULL) {
        it->has_subscription = 1;
        it->subscription =
            (Xpb__V1__RosterItem__Subscription)xpb_names_find(&xpb_subscription_names, s->value);
    }
    if (attr_get(el, "ask") != NULL) it->has_ask_subscribe = it->ask_subscribe = 1;
    if (attr_get(el, "approved") != NULL) it->has_approved = it->approved = 1;
    size_t n = 0;
    for (const xpb_node *g = el->children; g != NULL; g = g->next) n++;
    if (n == 0) return 0;
    it->group = xpb_arena_alloc(a, n * sizeof *it->group);
    if (it->group == NULL) return XPB_ENOMEM;
    for (const xpb_node *g = el->children; g != NULL; g = g->next) {
        rc = text_dup(a, g, &it->group[it->n_group++]);
        if (rc != 0) return rc;
    }
    return 0;
}

static int map_roster(xpb_arena *a, const xpb_node *el, Xpb__V1__RosterQuery **out)
{
    Xpb__V1__RosterQuery *q;
    ALLOC_MSG(a, q, Xpb__V1__RosterQuery, xpb__v1__roster_query__init);
    *out = q;
    int rc = attr_dup(a, el, "ver", &q->ver);
    if (rc != 0) return rc;
    size_t n = 0;
    for (const xpb_node *c = el->children; c != NULL; c = c->next) n++;
    if (n == 0) return 0;
    q->item = xpb_arena_alloc(a, n * sizeof *q->item);
    Xpb__V1__RosterItem *arr = xpb_arena_alloc(a, n * sizeof *arr);
    if (q->item == NULL || arr == NULL) return XPB_ENOMEM;
    for (const xpb_node *c = el->children; c != NULL; c = c->next) {
        q->item[q->n_item] = &arr[q->n_item];
        rc = map_roster_item(a, c, q->item[q->n_item++]);
        if (rc != 0) return rc;
    }
    return 0;
}

/* stanza: the stanza holding this delay, NULL inside <forwarded/> (where
 * `from` is never a reference). */
static int map_delay(xpb_arena *a, const xpb_node *el, const xpb_node *stanza,
                     Xpb__V1__Delay **out)
{
    Xpb__V1__Delay *d;
    ALLOC_MSG(a, d, Xpb__V1__Delay, xpb__v1__delay__init);
    *out = d;
    int rc = 0;
    const xpb_attr *stamp = attr_get(el, "stamp");
    if (stamp != NULL && xpb_stamp_parse(stamp->value, stamp->value_len, &d->stamp_seconds))
        d->has_stamp_seconds = 1;
    else
        rc = attr_dup(a, el, "stamp", &d->stamp);
    const xpb_attr *from = attr_get(el, "from");
    if (rc == 0 && from != NULL) {
        jid_ctx j = {{{NULL, NULL}, {NULL, NULL}}};
        if (stanza != NULL) j = jid_ctx_of(stanza, NULL);
        int ref = find_ref(from, &j, refs_own, N_OF(refs_own));
        rc = jid_dup(a, from, ref, &d->from, &d->has_from_ref, &d->from_ref);
    }
    if (rc == 0 && el->children != NULL) rc = text_dup(a, el, &d->text);
    return rc;
}

/* XEP-0359 §3: an archive stamps its own JID in 'by', which usually is the
 * recipient's bare JID (a MAM archive) or the room's (groupchat 'from'). */
static int map_stanza_id(xpb_arena *a, const xpb_node *el, const xpb_node *stanza,
                         Xpb__V1__StanzaId **out)
{
    Xpb__V1__StanzaId *s;
    ALLOC_MSG(a, s, Xpb__V1__StanzaId, xpb__v1__stanza_id__init);
    *out = s;
    int rc = attr_id_dup(a, el, "id", &s->id, &s->has_id_uuid, &s->id_uuid);
    const xpb_attr *by = attr_get(el, "by");
    if (rc != 0 || by == NULL) return rc;
    jid_ctx j = jid_ctx_of(stanza, NULL);
    int ref = find_ref(by, &j, refs_own, N_OF(refs_own));
    return jid_dup(a, by, ref, &s->by, &s->has_by_ref, &s->by_ref);
}

/* XEP-0359 §4: clients usually reuse the stanza's id as its origin-id. */
static int map_origin_id(xpb_arena *a, const xpb_node *el, const xpb_node *stanza,
                         xpb_stanza *st)
{
    const xpb_attr *id = attr_get(el, "id");
    if (same_value(id, attr_get(stanza, "id"))) {
        st->has_origin_id_is_id = st->origin_id_is_id = 1;
        return 0;
    }
    return id_dup(a, id->value, id->value_len, &st->origin_id, &st->has_origin_id_uuid,
                  &st->origin_id_uuid);
}

static int attr_int(const xpb_node *el, const char *name, protobuf_c_boolean *has, int32_t *v)
{
    const xpb_attr *at = attr_get(el, name);
    if (at != NULL && canon_int(at->value, at->value_len, INT32_MIN, INT32_MAX, v)) *has = 1;
    return 0;
}

static int map_muc(xpb_arena *a, const xpb_node *el, Xpb__V1__MucJoin **out)
{
    Xpb__V1__MucJoin *m;
    ALLOC_MSG(a, m, Xpb__V1__MucJoin, xpb__v1__muc_join__init);
    *out = m;
    const xpb_node *c = el->children;
    if (c != NULL && xpb_streq(c->name, "password")) {
        int rc = text_dup(a, c, &m->password);
        if (rc != 0) return rc;
        c = c->next;
    }
    if (c == NULL) return 0;
    Xpb__V1__MucHistory *h;
    ALLOC_MSG(a, h, Xpb__V1__MucHistory, xpb__v1__muc_history__init);
    m->history = h;
    attr_int(c, "maxchars", &h->has_maxchars, &h->maxchars);
    attr_int(c, "maxstanzas", &h->has_maxstanzas, &h->maxstanzas);
    attr_int(c, "seconds", &h->has_seconds, &h->seconds);
    return attr_dup(a, c, "since", &h->since);
}

static int map_muc_items(xpb_arena *a, const xpb_node *c, size_t n, Xpb__V1__MucUser *m)
{
    m->item = xpb_arena_alloc(a, n * sizeof *m->item);
    Xpb__V1__MucUser__Item *arr = xpb_arena_alloc(a, n * sizeof *arr);
    if (m->item == NULL || arr == NULL) return XPB_ENOMEM;
    for (; m->n_item < n; c = c->next) {
        Xpb__V1__MucUser__Item *it = m->item[m->n_item] = &arr[m->n_item];
        m->n_item++;
        xpb__v1__muc_user__item__init(it);
        int rc = attr_enum_dup(a, c, "affiliation", &xpb_affiliation_names, &it->affiliation,
                               &it->has_affiliation_enum, (int *)&it->affiliation_enum);
        if (rc == 0)
            rc = attr_enum_dup(a, c, "role", &xpb_role_names, &it->role, &it->has_role_enum,
                               (int *)&it->role_enum);
        if (rc == 0) rc = attr_dup(a, c, "jid", &it->jid);
        if (rc == 0) rc = attr_dup(a, c, "nick", &it->nick);
        if (rc != 0) return rc;
    }
    return 0;
}

static int map_muc_user(xpb_arena *a, const xpb_node *el, Xpb__V1__MucUser **out)
{
    Xpb__V1__MucUser *m;
    ALLOC_MSG(a, m, Xpb__V1__MucUser, xpb__v1__muc_user__init);
    *out = m;
    size_t n_item = 0, n_status = 0;
    const xpb_node *c = el->children;
    for (; c != NULL && xpb_streq(c->name, "item"); c = c->next) n_item++;
    const xpb_node *statuses = c;
    for (; c != NULL; c = c->next) n_status++;
    if (n_item != 0) {
        int rc = map_muc_items(a, el->children, n_item, m);
        if (rc != 0) return rc;
    }
    if (n_status == 0) return 0;
    m->status = xpb_arena_alloc(a, n_status * sizeof *m->status);
    if (m->status == NULL) return XPB_ENOMEM;
    for (c = statuses; c != NULL; c = c->next) {
        const xpb_attr *code = attr_get(c, "code");
        canon_int(code->value, code->value_len, INT32_MIN, INT32_MAX, &m->status[m->n_status++]);
    }
    return 0;
}

static int map_stanza(xpb_arena *a, const xpb_node *el, const xpb_node *outer, xpb_stanza **out);

/* outer: the stanza that forwards (XEP-0297) el's stanza. */
static int map_forwarded(xpb_arena *a, const xpb_node *el, const xpb_node *outer,
                         Xpb__V1__Forwarded **out)
{
    Xpb__V1__Forwarded *f;
    ALLOC_MSG(a, f, Xpb__V1__Forwarded, xpb__v1__forwarded__init);
    *out = f;
    const xpb_node *c = el->children;
    if (!is_stanza_el(c)) {
        int rc = map_delay(a, c, NULL, &f->delay);
        if (rc != 0) return rc;
        c = c->next;
    }
    return map_stanza(a, c, outer, &f->stanza);
}

static int map_carbon(xpb_arena *a, const xpb_node *el, const xpb_node *stanza,
                      Xpb__V1__Carbon **out)
{
    Xpb__V1__Carbon *cb;
    ALLOC_MSG(a, cb, Xpb__V1__Carbon, xpb__v1__carbon__init);
    *out = cb;
    cb->has_direction = 1;
    cb->direction = el->name[0] == 'r' ? XPB__V1__CARBON__DIRECTION__DIRECTION_RECEIVED
                                       : XPB__V1__CARBON__DIRECTION__DIRECTION_SENT;
    return map_forwarded(a, el->children, stanza, &cb->forwarded);
}

static int map_mam(xpb_arena *a, const xpb_node *el, const xpb_node *stanza,
                   Xpb__V1__MamResult **out)
{
    Xpb__V1__MamResult *m;
    ALLOC_MSG(a, m, Xpb__V1__MamResult, xpb__v1__mam_result__init);
    *out = m;
    int rc = attr_id_dup(a, el, "queryid", &m->queryid, &m->has_queryid_uuid, &m->queryid_uuid);
    if (rc == 0) rc = attr_id_dup(a, el, "id", &m->id, &m->has_id_uuid, &m->id_uuid);
    return rc ? rc : map_forwarded(a, el->children, stanza, &m->forwarded);
}

static int map_identities(xpb_arena *a, const xpb_node *c, size_t n, Xpb__V1__DiscoInfo *d)
{
    d->identity = xpb_arena_alloc(a, n * sizeof *d->identity);
    Xpb__V1__DiscoInfo__Identity *arr = xpb_arena_alloc(a, n * sizeof *arr);
    if (d->identity == NULL || arr == NULL) return XPB_ENOMEM;
    for (; d->n_identity < n; c = c->next) {
        Xpb__V1__DiscoInfo__Identity *id = d->identity[d->n_identity] = &arr[d->n_identity];
        d->n_identity++;
        xpb__v1__disco_info__identity__init(id);
        int rc = attr_dup(a, c, "category", &id->category);
        if (rc == 0) rc = attr_dup(a, c, "type", &id->type);
        if (rc == 0) rc = attr_dup(a, c, "name", &id->name);
        const xpb_attr *lang = lang_get(c);
        if (rc == 0 && lang != NULL) DUP_OR_FAIL(a, id->lang, lang->value, lang->value_len);
        if (rc != 0) return rc;
    }
    return 0;
}

/* Feature vars that are dictionary namespaces (most are: XEP-0030 §3.1
 * features are protocol namespaces) go in feature_id, which then lists every
 * feature in order, 0 standing for the next `feature` string. */
static int map_features(xpb_arena *a, const xpb_node *f, size_t n, Xpb__V1__DiscoInfo *d)
{
    uint32_t *ids = xpb_arena_alloc(a, n * sizeof *ids);
    d->feature = xpb_arena_alloc(a, n * sizeof *d->feature);
    if (ids == NULL || d->feature == NULL) return XPB_ENOMEM;
    bool any = false;
    for (size_t i = 0; i < n; i++, f = f->next) {
        const xpb_attr *var = attr_get(f, "var");
        ids[i] = xpb_ns_id(var->value);
        if (ids[i] != 0) {
            any = true;
            continue;
        }
        DUP_OR_FAIL(a, d->feature[d->n_feature], var->value, var->value_len);
        d->n_feature++;
    }
    if (any) {
        d->feature_id = ids;
        d->n_feature_id = n;
    }
    return 0;
}

static int map_disco_info(xpb_arena *a, const xpb_node *el, Xpb__V1__DiscoInfo **out)
{
    Xpb__V1__DiscoInfo *d;
    ALLOC_MSG(a, d, Xpb__V1__DiscoInfo, xpb__v1__disco_info__init);
    *out = d;
    int rc = attr_dup(a, el, "node", &d->node);
    size_t n_id = 0, n_feat = 0;
    const xpb_node *c = el->children;
    for (; c != NULL && is_identity(c); c = c->next) n_id++;
    const xpb_node *features = c;
    for (; c != NULL && is_feature(c); c = c->next) n_feat++;
    if (rc == 0 && n_id != 0) rc = map_identities(a, el->children, n_id, d);
    if (rc != 0) return rc;
    if (n_feat != 0) rc = map_features(a, features, n_feat, d);
    if (rc != 0) return rc;
    return map_element_list(a, c, el->ns, &d->n_extension, &d->extension);
}

static int map_disco_items(xpb_arena *a, const xpb_node *el, Xpb__V1__DiscoItems **out)
{
    Xpb__V1__DiscoItems *d;
    ALLOC_MSG(a, d, Xpb__V1__DiscoItems, xpb__v1__disco_items__init);
    *out = d;
    int rc = attr_dup(a, el, "node", &d->node);
    size_t n = 0;
    for (const xpb_node *c = el->children; c != NULL; c = c->next) n++;
    if (rc != 0 || n == 0) return rc;
    d->item = xpb_arena_alloc(a, n * sizeof *d->item);
    Xpb__V1__DiscoItems__Item *arr = xpb_arena_alloc(a, n * sizeof *arr);
    if (d->item == NULL || arr == NULL) return XPB_ENOMEM;
    for (const xpb_node *c = el->children; c != NULL; c = c->next) {
        Xpb__V1__DiscoItems__Item *it = d->item[d->n_item] = &arr[d->n_item];
        d->n_item++;
        xpb__v1__disco_items__item__init(it);
        rc = attr_dup(a, c, "jid", &it->jid);
        if (rc == 0) rc = attr_dup(a, c, "node", &it->node);
        if (rc == 0) rc = attr_dup(a, c, "name", &it->name);
        if (rc != 0) return rc;
    }
    return 0;
}

static int map_caps(xpb_arena *a, const xpb_node *el, Xpb__V1__Caps **out)
{
    Xpb__V1__Caps *c;
    ALLOC_MSG(a, c, Xpb__V1__Caps, xpb__v1__caps__init);
    *out = c;
    int rc = attr_enum_dup(a, el, "hash", &xpb_hash_names, &c->hash, &c->has_hash_enum,
                           (int *)&c->hash_enum);
    if (rc == 0) rc = attr_dup(a, el, "node", &c->node);
    if (rc == 0) rc = attr_dup(a, el, "ver", &c->ver);
    return rc ? rc : attr_dup(a, el, "ext", &c->ext);
}

/* ---- Stanza level --------------------------------------------------------- */

/* Repeated fields get their arrays sized once from the classification counts. */
static int alloc_repeated(xpb_arena *a, xpb_stanza *st, const size_t *counts)
{
    struct { size_t n; void ***arr; } rep[] = {
        {counts[F_BODY], (void ***)&st->body},
        {counts[F_SUBJECT], (void ***)&st->subject},
        {counts[F_STATUS], (void ***)&st->status},
        {counts[F_STANZA_ID], (void ***)&st->stanza_id},
        {counts[F_EXTENSION], (void ***)&st->extension},
    };
    for (size_t i = 0; i < N_OF(rep); i++) {
        if (rep[i].n == 0) continue;
        *rep[i].arr = xpb_arena_alloc(a, rep[i].n * sizeof(void *));
        if (*rep[i].arr == NULL) return XPB_ENOMEM;
    }
    return 0;
}

static int map_scalar_field(xpb_stanza *st, const xpb_node *c, unsigned f)
{
    const char *s;
    size_t len;
    node_text(c, &s, &len);
    if (f == F_SHOW) {
        st->has_show = 1;
        st->show = (Xpb__V1__Show)xpb_names_find(&xpb_show_names, s);
    } else if (f == F_PRIORITY) {
        st->has_priority = canon_int(s, len, -128, 127, &st->priority);
    } else if (f == F_CHAT_STATE) {
        st->has_chat_state = 1;
        st->chat_state =
            (Xpb__V1__ChatState)xpb_names_find(&xpb_chat_state_names, c->name);
    } else if (f == F_RECEIPT_REQUEST) {
        st->has_receipt_request = st->receipt_request = 1;
    } else if (f == F_PING) {
        st->has_ping = st->ping = 1;
    }
    return 0;
}

/* el: the stanza element, c: its child mapped to field f. */
static int map_field(xpb_arena *a, xpb_stanza *st, const xpb_node *el, const xpb_node *c,
                     unsigned f)
{
    switch (f) {
    case F_BODY: return map_text(a, c, &st->body[st->n_body++]);
    case F_SUBJECT: return map_text(a, c, &st->subject[st->n_subject++]);
    case F_STATUS: return map_text(a, c, &st->status[st->n_status++]);
    case F_THREAD: return map_thread(a, c, &st->thread);
    case F_ERROR: return map_error(a, c, &st->error);
    case F_ROSTER: return map_roster(a, c, &st->roster);
    case F_RECEIPT_RECEIVED:
        return attr_id_dup(a, c, "id", &st->receipt_received, &st->has_receipt_received_uuid,
                           &st->receipt_received_uuid);
    case F_DELAY: return map_delay(a, c, el, &st->delay);
    case F_STANZA_ID: return map_stanza_id(a, c, el, &st->stanza_id[st->n_stanza_id++]);
    case F_ORIGIN_ID: return map_origin_id(a, c, el, st);
    case F_MUC: return map_muc(a, c, &st->muc);
    case F_MUC_USER: return map_muc_user(a, c, &st->muc_user);
    case F_CARBON: return map_carbon(a, c, el, &st->carbon);
    case F_DISCO_INFO: return map_disco_info(a, c, &st->disco_info);
    case F_DISCO_ITEMS: return map_disco_items(a, c, &st->disco_items);
    case F_CAPS: return map_caps(a, c, &st->caps);
    case F_MAM_RESULT: return map_mam(a, c, el, &st->mam_result);
    case F_EXTENSION:
        return map_element(a, c, XPB_NS_CLIENT, &st->extension[st->n_extension++]);
    default: return map_scalar_field(st, c, f);
    }
}

/* Two passes over the children: classify (and count), then convert. `order`
 * is filled only when the field numbers are not already ascending. */
static int map_stanza_children(xpb_arena *a, const xpb_node *el, xpb_stanza *st)
{
    size_t n = 0;
    for (const xpb_node *c = el->children; c != NULL; c = c->next)
        if (c->kind == XPB_NODE_ELEMENT) n++;
    if (n == 0) return 0;
    uint8_t *fields = xpb_arena_alloc(a, n);
    if (fields == NULL) return XPB_ENOMEM;
    size_t counts[F_EXTENSION + 1] = {0};
    uint64_t seen = 0;
    bool canonical = true;
    size_t i = 0;
    for (const xpb_node *c = el->children; c != NULL; c = c->next) {
        if (c->kind != XPB_NODE_ELEMENT) continue;
        fields[i] = (uint8_t)classify(c, &seen);
        counts[fields[i]]++;
        if (i > 0 && fields[i] < fields[i - 1]) canonical = false;
        i++;
    }
    int rc = alloc_repeated(a, st, counts);
    i = 0;
    for (const xpb_node *c = el->children; rc == 0 && c != NULL; c = c->next)
        if (c->kind == XPB_NODE_ELEMENT) rc = map_field(a, st, el, c, fields[i++]);
    if (rc != 0 || canonical) return rc;
    st->order = xpb_arena_alloc(a, n * sizeof *st->order);
    if (st->order == NULL) return XPB_ENOMEM;
    for (i = 0; i < n; i++) st->order[i] = fields[i];
    st->n_order = n;
    return 0;
}

/* What has no typed stanza field goes to extra_attr. */
static bool is_extra_attr(const xpb_attr *at)
{
    return !xpb_is_typed_stanza_attr(at->ns, at->name);
}

static char **typed_attr_slot(xpb_stanza *st, const xpb_attr *at)
{
    if (is_xml_lang(at)) return &st->lang;
    switch (at->name[0]) {
    case 'i': return &st->id;
    case 'f': return NULL; /* from and to: map_jid_attrs */
    case 't':
        if (at->name[1] == 'o') return NULL;
        st->type = (Xpb__V1__StanzaType)xpb_names_find(&xpb_type_names, at->value);
        st->has_type = st->type != 0;
        return st->has_type ? NULL : &st->type_raw;
    default: return NULL;
    }
}

/* from, then to, each as a reference to the other or to the forwarding
 * stanza when one matches. A reference to the other attribute needs that
 * one as a string, so the two never refer to each other. */
static int map_jid_attrs(xpb_arena *a, const xpb_node *el, const xpb_node *outer, xpb_stanza *st)
{
    jid_ctx j = jid_ctx_of(el, outer);
    const xpb_attr *from = j.jid[0][0], *to = j.jid[0][1];
    size_t n_from = outer ? N_OF(refs_from) : 0, n_to = outer ? N_OF(refs_to) : 0;
    const uint8_t *own_from = refs_from, *own_to = refs_to;
    if (outer == NULL) { /* only the references to this stanza */
        own_from += N_OUTER_REFS;
        own_to += N_OUTER_REFS;
        n_from = n_to = N_OF(refs_from) - N_OUTER_REFS;
    }
    int ref_from = 0;
    if (from != NULL) {
        ref_from = find_ref(from, &j, own_from, n_from);
        int rc = jid_dup(a, from, ref_from, &st->from, &st->has_from_ref, &st->from_ref);
        if (rc != 0) return rc;
    }
    if (to == NULL) return 0;
    if (ref_from != 0 && !xpb_ref_table[ref_from].outer) n_to = outer ? N_OUTER_REFS : 0;
    int ref_to = find_ref(to, &j, own_to, n_to);
    return jid_dup(a, to, ref_to, &st->to, &st->has_to_ref, &st->to_ref);
}

/* extra: also keep the other attributes (not for a stanza carried whole in
 * `element`, where they are written from there). */
static int map_stanza_attrs(xpb_arena *a, const xpb_node *el, const xpb_node *outer,
                            xpb_stanza *st, bool extra)
{
    int rc = map_jid_attrs(a, el, outer, st);
    if (rc != 0) return rc;
    size_t n_extra = 0;
    for (size_t i = 0; i < el->n_attrs; i++) {
        const xpb_attr *at = &el->attrs[i];
        if (is_extra_attr(at)) {
            n_extra++;
            continue;
        }
        char **dst = typed_attr_slot(st, at);
        if (dst == &st->id) {
            rc = id_dup(a, at->value, at->value_len, &st->id, &st->has_id_uuid, &st->id_uuid);
            if (rc != 0) return rc;
        } else if (dst != NULL) {
            DUP_OR_FAIL(a, *dst, at->value, at->value_len);
        }
    }
    if (!extra || n_extra == 0) return 0;
    st->n_extra_attr = n_extra;
    return map_attrs(a, el, n_extra, is_extra_attr, &st->extra_attr);
}

static int stanza_kind(const xpb_node *el)
{
    if (!is_stanza_el(el)) return XPB__V1__KIND__KIND_OTHER;
    switch (el->name[0]) {
    case 'm': return XPB__V1__KIND__KIND_MESSAGE;
    case 'p': return XPB__V1__KIND__KIND_PRESENCE;
    default: return XPB__V1__KIND__KIND_IQ;
    }
}

/* Non-whitespace text directly inside a stanza has no typed place. */
static bool has_loose_text(const xpb_node *el)
{
    for (const xpb_node *c = el->children; c != NULL; c = c->next)
        if (c->kind == XPB_NODE_TEXT && !all_space(c->text, c->text_len)) return true;
    return false;
}

/* outer: the stanza forwarding this one (carbon, MAM), else NULL. */
static int map_stanza(xpb_arena *a, const xpb_node *el, const xpb_node *outer, xpb_stanza **out)
{
    xpb_stanza *st;
    ALLOC_MSG(a, st, xpb_stanza, xpb__v1__stanza__init);
    *out = st;
    st->has_kind = 1;
    st->kind = (Xpb__V1__Kind)stanza_kind(el);
    if (st->kind == XPB__V1__KIND__KIND_OTHER) return map_element(a, el, XPB_NS_CLIENT, &st->element);
    if (has_loose_text(el)) {
        int rc = map_stanza_attrs(a, el, outer, st, false);
        return rc ? rc : map_element(a, el, XPB_NS_CLIENT, &st->element);
    }
    int rc = map_stanza_attrs(a, el, outer, st, true);
    return rc ? rc : map_stanza_children(a, el, st);
}

int xpb_stanza_from_xml(xpb_arena *a, const xpb_node *el, xpb_stanza **out)
{
    if (a == NULL || el == NULL || out == NULL || el->kind != XPB_NODE_ELEMENT) return XPB_EINVAL;
    *out = NULL;
    xpb_stanza *st = NULL;
    int rc = map_stanza(a, el, NULL, &st);
    if (rc == 0) *out = st;
    return rc;
}
