/* record -> XML: writes an xpb.v1.Stanza as one element with the
 * element-at-a-time writer, straight into the caller's buffer (no per-field
 * allocation). Fields follow `order` when set, else the canonical order. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "stanza_internal.h"
#include "xpb_error.h"
#include "xpb_stanza.h"

static const uint8_t canonical_fields[] = {
    F_BODY, F_SUBJECT, F_THREAD, F_SHOW, F_STATUS, F_PRIORITY, F_ERROR, F_ROSTER,
    F_CHAT_STATE, F_RECEIPT_REQUEST, F_RECEIPT_RECEIVED, F_DELAY, F_STANZA_ID, F_ORIGIN_ID,
    F_PING, F_MUC, F_MUC_USER, F_CARBON, F_DISCO_INFO, F_DISCO_ITEMS, F_CAPS, F_MAM_RESULT,
    F_EXTENSION,
};

static const char *const field_names[F_MAX + 1] = {
    [F_BODY] = "body", [F_SUBJECT] = "subject", [F_THREAD] = "thread", [F_SHOW] = "show",
    [F_STATUS] = "status", [F_PRIORITY] = "priority", [F_ERROR] = "error",
    [F_ROSTER] = "roster", [F_CHAT_STATE] = "chat_state",
    [F_RECEIPT_REQUEST] = "receipt_request", [F_RECEIPT_RECEIVED] = "receipt_received",
    [F_DELAY] = "delay", [F_STANZA_ID] = "stanza_id", [F_ORIGIN_ID] = "origin_id",
    [F_PING] = "ping", [F_MUC] = "muc", [F_MUC_USER] = "muc_user", [F_CARBON] = "carbon",
    [F_DISCO_INFO] = "disco_info", [F_DISCO_ITEMS] = "disco_items", [F_CAPS] = "caps",
    [F_MAM_RESULT] = "mam_result", [F_EXTENSION] = "extension",
};

#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

typedef struct out_ctx {
    xpb_writer w;
    char *err;
    size_t errlen;
    const xpb_scope *sc; /* the stanza being written (JidRef targets) */
} out_ctx;

__attribute__((format(printf, 2, 3))) static int refuse(out_ctx *o, const char *fmt, ...)
{
    if (o->err != NULL && o->errlen != 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(o->err, o->errlen, fmt, ap);
        va_end(ap);
    }
    return XPB_ERECORD;
}

/* ---- Writer shorthands (NULL values are simply not written) ------------ */

static int start(out_ctx *o, const char *ns, const char *name)
{
    return xpb_writer_start(&o->w, ns, name);
}

static int end(out_ctx *o)
{
    return xpb_writer_end(&o->w);
}

static int attr(out_ctx *o, const char *name, const char *value)
{
    return value ? xpb_writer_attr(&o->w, "", name, value, strlen(value)) : 0;
}

static int lang_attr(out_ctx *o, const char *value)
{
    return value ? xpb_writer_attr(&o->w, XPB_NS_XML, "lang", value, strlen(value)) : 0;
}

static int text(out_ctx *o, const char *s)
{
    return s ? xpb_writer_text(&o->w, s, strlen(s)) : 0;
}

static int int_attr(out_ctx *o, const char *name, int32_t v)
{
    char num[16];
    int k = snprintf(num, sizeof num, "%d", (int)v);
    return xpb_writer_attr(&o->w, "", name, num, (size_t)k);
}

/* ---- Compact forms (docs/mapping.md §7) ---------------------------------- */

/* An id-valued string that may be stored as a UUID instead. */
typedef struct id_val {
    const char *str;
    protobuf_c_boolean has_uuid;
    ProtobufCBinaryData uuid;
} id_val;

static id_val id_of(const char *str, protobuf_c_boolean has_uuid, ProtobufCBinaryData uuid)
{
    id_val v = {str, has_uuid, uuid};
    return v;
}

static bool id_present(id_val v)
{
    return v.str != NULL || v.has_uuid;
}

static int id_attr(out_ctx *o, const char *name, id_val v)
{
    if (!v.has_uuid) return attr(o, name, v.str);
    char buf[XPB_UUID_CHARS];
    xpb_uuid_format(v.uuid.data, buf);
    return xpb_writer_attr(&o->w, "", name, buf, sizeof buf);
}

static int id_text(out_ctx *o, id_val v)
{
    if (!v.has_uuid) return text(o, v.str);
    char buf[XPB_UUID_CHARS];
    xpb_uuid_format(v.uuid.data, buf);
    return xpb_writer_text(&o->w, buf, sizeof buf);
}

static id_val stanza_id_val(const xpb_stanza *st)
{
    return id_of(st->id, st->has_id_uuid, st->id_uuid);
}

/* A JID-valued attribute given as a string or as a reference. */
static int jid_attr(out_ctx *o, const char *name, const char *str, protobuf_c_boolean has_ref,
                    int ref)
{
    if (str != NULL || !has_ref) return attr(o, name, str);
    const char *p;
    size_t n;
    /* The record check refuses cycles; the hop bound keeps a prechecked
     * record that was changed since from looping. */
    if (!xpb_ref_resolve(o->sc, ref, 2 * XPB_WRITER_MAX_DEPTH, &p, &n))
        return refuse(o, "%s_ref %d names a JID that is not there", name, ref);
    return xpb_writer_attr(&o->w, "", name, p, n);
}

/* An attribute given as a string or as an enum value (its spelling in t). */
static int enum_attr(out_ctx *o, const char *name, const char *str, protobuf_c_boolean has, int v,
                     const xpb_names *t)
{
    if (!has) return attr(o, name, str);
    const char *s = xpb_names_get(t, v);
    if (s == NULL) return refuse(o, "%s_enum: %d is not a value to write", name, v);
    return attr(o, name, s);
}

/* <name xmlns=ns/> with no attributes. */
static int empty_el(out_ctx *o, const char *ns, const char *name)
{
    int rc = start(o, ns, name);
    return rc ? rc : end(o);
}

/* ---- Generic elements ------------------------------------------------------ */

/* The namespace an Element or Attribute names, or dflt when it names none. */
static const char *ns_of(protobuf_c_boolean has_id, uint32_t id, const char *ns, const char *dflt)
{
    if (has_id) return xpb_ns_uri(id);
    return ns ? ns : dflt;
}

static int write_element(out_ctx *o, const Xpb__V1__Element *e, const char *implied_ns);

static int write_element_body(out_ctx *o, const Xpb__V1__Element *e)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < e->n_attr; i++) {
        const Xpb__V1__Attribute *at = e->attr[i];
        const char *ns = ns_of(at->has_ns_id, at->ns_id, at->ns, "");
        const char *v = at->value ? at->value : "";
        if (ns == NULL || at->name == NULL) return refuse(o, "attribute without a name or known ns_id");
        rc = xpb_writer_attr(&o->w, ns, at->name, v, strlen(v));
    }
    for (size_t i = 0; rc == 0 && i < e->n_child; i++) {
        const Xpb__V1__Node *n = e->child[i];
        if (n->node_case == XPB__V1__NODE__NODE_TEXT) {
            rc = text(o, n->text);
        } else if (n->node_case == XPB__V1__NODE__NODE_ELEMENT && n->element != NULL) {
            rc = write_element(o, n->element, NULL);
        } else {
            rc = refuse(o, "element '%s' has a child node with neither element nor text",
                        e->name);
        }
    }
    return rc;
}

/* implied_ns: the namespace when e names none (NULL = the one in scope).
 * Recursion depth is bounded by the writer's stack (XPB_WRITER_MAX_DEPTH). */
static int write_element(out_ctx *o, const Xpb__V1__Element *e, const char *implied_ns)
{
    const char *ns = ns_of(e->has_ns_id, e->ns_id, e->ns, implied_ns);
    if (e->name == NULL || (e->has_ns_id && ns == NULL))
        return refuse(o, "element without a name or with an unknown ns_id");
    int rc = start(o, ns, e->name);
    if (rc == 0) rc = write_element_body(o, e);
    return rc ? rc : end(o);
}

static int write_elements(out_ctx *o, Xpb__V1__Element *const *els, size_t n)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) rc = write_element(o, els[i], NULL);
    return rc;
}

/* ---- Typed fields ---------------------------------------------------------- */

static int write_text_el(out_ctx *o, const char *ns, const char *name, const Xpb__V1__Text *t)
{
    int rc = start(o, ns, name);
    if (rc == 0) rc = lang_attr(o, t->lang);
    if (rc == 0) rc = text(o, t->text);
    return rc ? rc : end(o);
}

static int write_thread(out_ctx *o, const Xpb__V1__Thread *t)
{
    int rc = start(o, XPB_NS_CLIENT, "thread");
    if (rc == 0) rc = attr(o, "parent", t->parent);
    if (rc == 0) rc = id_text(o, id_of(t->id, t->has_id_uuid, t->id_uuid));
    return rc ? rc : end(o);
}

static int write_show(out_ctx *o, int show)
{
    const char *v = xpb_names_get(&xpb_show_names, show);
    if (v == NULL) return refuse(o, "stanza.show: %d is not a value to write", show);
    int rc = start(o, XPB_NS_CLIENT, "show");
    if (rc == 0) rc = text(o, v);
    return rc ? rc : end(o);
}

static int write_priority(out_ctx *o, int32_t prio)
{
    char num[16];
    int k = snprintf(num, sizeof num, "%d", (int)prio);
    int rc = start(o, XPB_NS_CLIENT, "priority");
    if (rc == 0) rc = xpb_writer_text(&o->w, num, (size_t)k);
    return rc ? rc : end(o);
}

/* RFC 6120 §8.3.2: condition first, then <text/>, then application elements. */
static int write_condition(out_ctx *o, const Xpb__V1__StanzaError *e)
{
    const char *cond =
        e->has_condition ? xpb_names_get(&xpb_condition_names, (int)e->condition) : NULL;
    if (cond == NULL) return refuse(o, "stanza.error.condition: a defined condition is required");
    if (e->condition_uri != NULL && !xpb_condition_has_uri((int)e->condition))
        return refuse(o, "stanza.error.condition_uri: only gone and redirect carry a URI");
    int rc = start(o, NS_STANZAS, cond);
    if (rc == 0) rc = text(o, e->condition_uri);
    return rc ? rc : end(o);
}

static int write_error(out_ctx *o, const Xpb__V1__StanzaError *e)
{
    const char *type = e->type_raw;
    if (e->has_type) {
        type = xpb_names_get(&xpb_error_type_names, (int)e->type);
        if (type == NULL) return refuse(o, "stanza.error.type: %d is not a value to write", e->type);
    }
    int rc = start(o, XPB_NS_CLIENT, "error");
    if (rc == 0) rc = attr(o, "type", type);
    if (rc == 0) rc = attr(o, "by", e->by);
    if (rc == 0) rc = attr(o, "code", e->code);
    if (rc == 0) rc = write_condition(o, e);
    if (rc == 0 && e->text != NULL) rc = write_text_el(o, NS_STANZAS, "text", e->text);
    if (rc == 0) rc = write_elements(o, e->application, e->n_application);
    return rc ? rc : end(o);
}

static int write_roster_item(out_ctx *o, const Xpb__V1__RosterItem *it)
{
    const char *sub = NULL;
    if (it->has_subscription) {
        sub = xpb_names_get(&xpb_subscription_names, (int)it->subscription);
        if (sub == NULL) return refuse(o, "stanza.roster.item.subscription: %d is not a value to write",
                                       it->subscription);
    }
    int rc = start(o, NULL, "item");
    if (rc == 0) rc = attr(o, "jid", it->jid);
    if (rc == 0) rc = attr(o, "name", it->name);
    if (rc == 0) rc = attr(o, "subscription", sub);
    if (rc == 0 && it->has_ask_subscribe && it->ask_subscribe) rc = attr(o, "ask", "subscribe");
    if (rc == 0 && it->has_approved && it->approved) rc = attr(o, "approved", "true");
    for (size_t i = 0; rc == 0 && i < it->n_group; i++) {
        rc = start(o, NULL, "group");
        if (rc == 0) rc = text(o, it->group[i]);
        if (rc == 0) rc = end(o);
    }
    return rc ? rc : end(o);
}

static int write_roster(out_ctx *o, const Xpb__V1__RosterQuery *q)
{
    int rc = start(o, "jabber:iq:roster", "query");
    if (rc == 0) rc = attr(o, "ver", q->ver);
    for (size_t i = 0; rc == 0 && i < q->n_item; i++) rc = write_roster_item(o, q->item[i]);
    return rc ? rc : end(o);
}

static int write_chat_state(out_ctx *o, int cs)
{
    const char *v = xpb_names_get(&xpb_chat_state_names, cs);
    if (v == NULL) return refuse(o, "stanza.chat_state: %d is not a value to write", cs);
    return empty_el(o, "http://jabber.org/protocol/chatstates", v);
}

static int write_id_el(out_ctx *o, const char *ns, const char *name, id_val id)
{
    int rc = start(o, ns, name);
    if (rc == 0) rc = id_attr(o, "id", id);
    return rc ? rc : end(o);
}

static int write_delay(out_ctx *o, const Xpb__V1__Delay *d)
{
    int rc = start(o, "urn:xmpp:delay", "delay");
    if (rc == 0 && d->has_stamp_seconds) {
        char buf[XPB_STAMP_CHARS];
        xpb_stamp_format(d->stamp_seconds, buf);
        rc = xpb_writer_attr(&o->w, "", "stamp", buf, sizeof buf);
    }
    if (rc == 0) rc = attr(o, "stamp", d->stamp);
    if (rc == 0) rc = jid_attr(o, "from", d->from, d->has_from_ref, (int)d->from_ref);
    if (rc == 0) rc = text(o, d->text);
    return rc ? rc : end(o);
}

static int write_stanza_id(out_ctx *o, const Xpb__V1__StanzaId *s)
{
    int rc = start(o, "urn:xmpp:sid:0", "stanza-id");
    if (rc == 0) rc = id_attr(o, "id", id_of(s->id, s->has_id_uuid, s->id_uuid));
    if (rc == 0) rc = jid_attr(o, "by", s->by, s->has_by_ref, (int)s->by_ref);
    return rc ? rc : end(o);
}

static int write_muc(out_ctx *o, const Xpb__V1__MucJoin *m)
{
    int rc = start(o, "http://jabber.org/protocol/muc", "x");
    if (rc == 0 && m->password != NULL) {
        rc = start(o, NULL, "password");
        if (rc == 0) rc = text(o, m->password);
        if (rc == 0) rc = end(o);
    }
    const Xpb__V1__MucHistory *h = m->history;
    if (rc == 0 && h != NULL) {
        rc = start(o, NULL, "history");
        if (rc == 0 && h->has_maxchars) rc = int_attr(o, "maxchars", h->maxchars);
        if (rc == 0 && h->has_maxstanzas) rc = int_attr(o, "maxstanzas", h->maxstanzas);
        if (rc == 0 && h->has_seconds) rc = int_attr(o, "seconds", h->seconds);
        if (rc == 0) rc = attr(o, "since", h->since);
        if (rc == 0) rc = end(o);
    }
    return rc ? rc : end(o);
}

static int write_muc_user(out_ctx *o, const Xpb__V1__MucUser *m)
{
    int rc = start(o, "http://jabber.org/protocol/muc#user", "x");
    for (size_t i = 0; rc == 0 && i < m->n_item; i++) {
        const Xpb__V1__MucUser__Item *it = m->item[i];
        rc = start(o, NULL, "item");
        if (rc == 0)
            rc = enum_attr(o, "affiliation", it->affiliation, it->has_affiliation_enum,
                           (int)it->affiliation_enum, &xpb_affiliation_names);
        if (rc == 0)
            rc = enum_attr(o, "role", it->role, it->has_role_enum, (int)it->role_enum,
                           &xpb_role_names);
        if (rc == 0) rc = attr(o, "jid", it->jid);
        if (rc == 0) rc = attr(o, "nick", it->nick);
        if (rc == 0) rc = end(o);
    }
    for (size_t i = 0; rc == 0 && i < m->n_status; i++) {
        rc = start(o, NULL, "status");
        if (rc == 0) rc = int_attr(o, "code", m->status[i]);
        if (rc == 0) rc = end(o);
    }
    return rc ? rc : end(o);
}

static int write_stanza(out_ctx *o, const xpb_stanza *st);

/* XEP-0297 <forwarded/>: optional delay, then the stanza. */
static int write_forwarded(out_ctx *o, const Xpb__V1__Forwarded *f, const char *field)
{
    if (f == NULL || f->stanza == NULL)
        return refuse(o, "stanza.%s.forwarded.stanza: a forwarded stanza is required", field);
    int rc = start(o, "urn:xmpp:forward:0", "forwarded");
    if (rc == 0 && f->delay != NULL) rc = write_delay(o, f->delay);
    if (rc == 0) rc = write_stanza(o, f->stanza);
    return rc ? rc : end(o);
}

static int write_carbon(out_ctx *o, const Xpb__V1__Carbon *c)
{
    const char *dir =
        c->has_direction ? xpb_names_get(&xpb_direction_names, (int)c->direction) : NULL;
    if (dir == NULL) return refuse(o, "stanza.carbon.direction: received or sent is required");
    int rc = start(o, "urn:xmpp:carbons:2", dir);
    if (rc == 0) rc = write_forwarded(o, c->forwarded, "carbon");
    return rc ? rc : end(o);
}

static int write_mam(out_ctx *o, const Xpb__V1__MamResult *m)
{
    int rc = start(o, "urn:xmpp:mam:2", "result");
    if (rc == 0) rc = id_attr(o, "queryid", id_of(m->queryid, m->has_queryid_uuid, m->queryid_uuid));
    if (rc == 0) rc = id_attr(o, "id", id_of(m->id, m->has_id_uuid, m->id_uuid));
    if (rc == 0) rc = write_forwarded(o, m->forwarded, "mam_result");
    return rc ? rc : end(o);
}

/* feature_id, when set, orders every feature; 0 takes the next string. */
static int write_features(out_ctx *o, const Xpb__V1__DiscoInfo *d)
{
    size_t n = d->n_feature_id ? d->n_feature_id : d->n_feature, next = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *var;
        if (d->n_feature_id == 0 || d->feature_id[i] == 0) {
            if (next >= d->n_feature)
                return refuse(o, "stanza.disco_info.feature_id[%zu]: no feature string is left", i);
            var = d->feature[next++];
        } else if ((var = xpb_ns_uri(d->feature_id[i])) == NULL) {
            return refuse(o, "stanza.disco_info.feature_id[%zu]: %u is not in the namespace "
                          "dictionary", i, (unsigned)d->feature_id[i]);
        }
        rc = start(o, NULL, "feature");
        if (rc == 0) rc = attr(o, "var", var);
        if (rc == 0) rc = end(o);
    }
    return rc;
}

static int write_disco_info(out_ctx *o, const Xpb__V1__DiscoInfo *d)
{
    int rc = start(o, "http://jabber.org/protocol/disco#info", "query");
    if (rc == 0) rc = attr(o, "node", d->node);
    for (size_t i = 0; rc == 0 && i < d->n_identity; i++) {
        const Xpb__V1__DiscoInfo__Identity *id = d->identity[i];
        rc = start(o, NULL, "identity");
        if (rc == 0) rc = attr(o, "category", id->category);
        if (rc == 0) rc = attr(o, "type", id->type);
        if (rc == 0) rc = attr(o, "name", id->name);
        if (rc == 0) rc = lang_attr(o, id->lang);
        if (rc == 0) rc = end(o);
    }
    if (rc == 0) rc = write_features(o, d);
    if (rc == 0) rc = write_elements(o, d->extension, d->n_extension);
    return rc ? rc : end(o);
}

static int write_disco_items(out_ctx *o, const Xpb__V1__DiscoItems *d)
{
    int rc = start(o, "http://jabber.org/protocol/disco#items", "query");
    if (rc == 0) rc = attr(o, "node", d->node);
    for (size_t i = 0; rc == 0 && i < d->n_item; i++) {
        rc = start(o, NULL, "item");
        if (rc == 0) rc = attr(o, "jid", d->item[i]->jid);
        if (rc == 0) rc = attr(o, "node", d->item[i]->node);
        if (rc == 0) rc = attr(o, "name", d->item[i]->name);
        if (rc == 0) rc = end(o);
    }
    return rc ? rc : end(o);
}

static int write_caps(out_ctx *o, const Xpb__V1__Caps *c)
{
    int rc = start(o, "http://jabber.org/protocol/caps", "c");
    if (rc == 0)
        rc = enum_attr(o, "hash", c->hash, c->has_hash_enum, (int)c->hash_enum, &xpb_hash_names);
    if (rc == 0) rc = attr(o, "node", c->node);
    if (rc == 0) rc = attr(o, "ver", c->ver);
    if (rc == 0) rc = attr(o, "ext", c->ext);
    return rc ? rc : end(o);
}

/* ---- Stanza level ---------------------------------------------------------- */

static int write_origin_id(out_ctx *o, const xpb_stanza *st)
{
    id_val v = id_of(st->origin_id, st->has_origin_id_uuid, st->origin_id_uuid);
    if (!id_present(v)) v = stanza_id_val(st); /* origin_id_is_id */
    return write_id_el(o, "urn:xmpp:sid:0", "origin-id", v);
}

/* How many children field f contributes. */
static inline __attribute__((always_inline)) size_t field_count(const xpb_stanza *st, unsigned f)
{
    switch (f) {
    case F_BODY: return st->n_body;
    case F_SUBJECT: return st->n_subject;
    case F_THREAD: return st->thread != NULL;
    case F_SHOW: return st->has_show != 0;
    case F_STATUS: return st->n_status;
    case F_PRIORITY: return st->has_priority != 0;
    case F_ERROR: return st->error != NULL;
    case F_ROSTER: return st->roster != NULL;
    case F_CHAT_STATE: return st->has_chat_state != 0;
    case F_RECEIPT_REQUEST: return st->has_receipt_request && st->receipt_request;
    case F_RECEIPT_RECEIVED: return st->receipt_received != NULL || st->has_receipt_received_uuid;
    case F_DELAY: return st->delay != NULL;
    case F_STANZA_ID: return st->n_stanza_id;
    case F_ORIGIN_ID:
        return st->origin_id != NULL || st->has_origin_id_uuid ||
               (st->has_origin_id_is_id && st->origin_id_is_id);
    case F_PING: return st->has_ping && st->ping;
    case F_MUC: return st->muc != NULL;
    case F_MUC_USER: return st->muc_user != NULL;
    case F_CARBON: return st->carbon != NULL;
    case F_DISCO_INFO: return st->disco_info != NULL;
    case F_DISCO_ITEMS: return st->disco_items != NULL;
    case F_CAPS: return st->caps != NULL;
    case F_MAM_RESULT: return st->mam_result != NULL;
    case F_EXTENSION: return st->n_extension;
    default: return 0;
    }
}

/* Writes item i of field f (i is 0 for singular fields). */
static int write_field(out_ctx *o, const xpb_stanza *st, unsigned f, size_t i)
{
    switch (f) {
    case F_BODY: return write_text_el(o, XPB_NS_CLIENT, "body", st->body[i]);
    case F_SUBJECT: return write_text_el(o, XPB_NS_CLIENT, "subject", st->subject[i]);
    case F_THREAD: return write_thread(o, st->thread);
    case F_SHOW: return write_show(o, (int)st->show);
    case F_STATUS: return write_text_el(o, XPB_NS_CLIENT, "status", st->status[i]);
    case F_PRIORITY: return write_priority(o, st->priority);
    case F_ERROR: return write_error(o, st->error);
    case F_ROSTER: return write_roster(o, st->roster);
    case F_CHAT_STATE: return write_chat_state(o, (int)st->chat_state);
    case F_RECEIPT_REQUEST: return empty_el(o, "urn:xmpp:receipts", "request");
    case F_RECEIPT_RECEIVED:
        return write_id_el(o, "urn:xmpp:receipts", "received",
                           id_of(st->receipt_received, st->has_receipt_received_uuid,
                                 st->receipt_received_uuid));
    case F_DELAY: return write_delay(o, st->delay);
    case F_STANZA_ID: return write_stanza_id(o, st->stanza_id[i]);
    case F_ORIGIN_ID: return write_origin_id(o, st);
    case F_PING: return empty_el(o, "urn:xmpp:ping", "ping");
    case F_MUC: return write_muc(o, st->muc);
    case F_MUC_USER: return write_muc_user(o, st->muc_user);
    case F_CARBON: return write_carbon(o, st->carbon);
    case F_DISCO_INFO: return write_disco_info(o, st->disco_info);
    case F_DISCO_ITEMS: return write_disco_items(o, st->disco_items);
    case F_CAPS: return write_caps(o, st->caps);
    case F_MAM_RESULT: return write_mam(o, st->mam_result);
    default: return write_element(o, st->extension[i], NULL);
    }
}

static int write_canonical(out_ctx *o, const xpb_stanza *st)
{
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < N_OF(canonical_fields); k++) {
        size_t n = field_count(st, canonical_fields[k]);
        for (size_t i = 0; rc == 0 && i < n; i++) rc = write_field(o, st, canonical_fields[k], i);
    }
    return rc;
}

/* `order` names every child once, repeated fields consumed in sequence. */
static int write_ordered(out_ctx *o, const xpb_stanza *st)
{
    size_t used[F_MAX + 1] = {0};
    for (size_t k = 0; k < st->n_order; k++) {
        uint32_t f = st->order[k];
        if (f > F_MAX || field_names[f] == NULL)
            return refuse(o, "stanza.order[%zu] names field %u, which is not a child field", k,
                          (unsigned)f);
        if (used[f] >= field_count(st, f))
            return refuse(o, "stanza.order[%zu] names field %u (%s) but no %s is left", k,
                          (unsigned)f, field_names[f], field_names[f]);
        int rc = write_field(o, st, f, used[f]++);
        if (rc != 0) return rc;
    }
    for (size_t k = 0; k < N_OF(canonical_fields); k++) {
        unsigned f = canonical_fields[k];
        if (used[f] < field_count(st, f))
            return refuse(o, "stanza.order does not mention %s[%zu]", field_names[f], used[f]);
    }
    return 0;
}

static int write_stanza_attrs(out_ctx *o, const xpb_stanza *st)
{
    const char *type = st->type_raw;
    if (st->has_type) {
        type = xpb_names_get(&xpb_type_names, (int)st->type);
        if (type == NULL) return refuse(o, "stanza.type: %d is not a value to write", st->type);
    }
    int rc = attr(o, "type", type);
    if (rc == 0) rc = id_attr(o, "id", stanza_id_val(st));
    if (rc == 0) rc = jid_attr(o, "from", st->from, st->has_from_ref, (int)st->from_ref);
    if (rc == 0) rc = jid_attr(o, "to", st->to, st->has_to_ref, (int)st->to_ref);
    if (rc == 0) rc = lang_attr(o, st->lang);
    for (size_t i = 0; rc == 0 && i < st->n_extra_attr; i++) {
        const Xpb__V1__Attribute *at = st->extra_attr[i];
        const char *ns = ns_of(at->has_ns_id, at->ns_id, at->ns, "");
        const char *v = at->value ? at->value : "";
        if (ns == NULL || at->name == NULL)
            return refuse(o, "stanza.extra_attr[%zu]: no name or unknown ns_id", i);
        rc = xpb_writer_attr(&o->w, ns, at->name, v, strlen(v));
    }
    return rc;
}

/* A stanza carried whole in `element` is written from there alone; its
 * element names no namespace when it is jabber:client. */
static int write_stanza(out_ctx *o, const xpb_stanza *st)
{
    if (st->element != NULL) return write_element(o, st->element, XPB_NS_CLIENT);
    const char *name = st->has_kind ? xpb_names_get(&xpb_kind_names, (int)st->kind) : NULL;
    if (name == NULL) return refuse(o, "stanza.kind: message, presence or iq (or an element) is required");
    xpb_scope mine = {st, o->sc};
    o->sc = &mine;
    int rc = start(o, XPB_NS_CLIENT, name);
    if (rc == 0) rc = write_stanza_attrs(o, st);
    if (rc == 0) rc = st->n_order ? write_ordered(o, st) : write_canonical(o, st);
    o->sc = mine.outer;
    return rc ? rc : end(o);
}

static int to_xml(xpb_buf *out, const xpb_stanza *st, const char *parent_ns,
                  const xpb_record_limits *limits, int check, char *err, size_t errlen)
{
    if (err != NULL && errlen != 0) err[0] = '\0';
    if (out == NULL || st == NULL) return XPB_EINVAL;
    int rc = check ? xpb_stanza_check(st, limits, err, errlen) : 0;
    if (rc != 0) return rc;
    size_t max = limits && limits->max_stanza_bytes ? limits->max_stanza_bytes
                                                    : XPB_READER_DEFAULT_MAX_STANZA;
    size_t start_len = out->len, saved_max = out->max;
    if (max <= SIZE_MAX - start_len && (saved_max == 0 || start_len + max < saved_max))
        out->max = start_len + max;
    out_ctx o = {.err = err, .errlen = errlen};
    xpb_writer_init(&o.w, out, parent_ns ? parent_ns : "");
    rc = write_stanza(&o, st);
    out->max = saved_max;
    if (rc == 0) return 0;
    out->len = start_len;
    if (err != NULL && errlen != 0 && err[0] == '\0') {
        if (rc == XPB_ETOOBIG)
            snprintf(err, errlen, "stanza XML exceeds max_stanza_bytes (%zu)", max);
        else if (rc == XPB_EDEPTH)
            snprintf(err, errlen, "element nesting exceeds the writer's depth (%d)", XPB_WRITER_MAX_DEPTH);
        else
            snprintf(err, errlen, "%s", xpb_strerror(rc));
    }
    return rc == XPB_EDEPTH ? XPB_EPBDEPTH : rc;
}

int xpb_stanza_to_xml(xpb_buf *out, const xpb_stanza *st, const char *parent_ns,
                      const xpb_record_limits *limits, char *err, size_t errlen)
{
    return to_xml(out, st, parent_ns, limits, 1, err, errlen);
}

int xpb_stanza_to_xml_prechecked(xpb_buf *out, const xpb_stanza *st, const char *parent_ns,
                                 const xpb_record_limits *limits, char *err, size_t errlen)
{
    return to_xml(out, st, parent_ns, limits, 0, err, errlen);
}
