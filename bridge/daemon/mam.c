/* The pure parts of archive catch-up (xpb_mam.h): XEP-0313 v2 queries paged
 * with XEP-0059, their <fin/>, forwarded results, XEP-0359 stanza-ids, the
 * store's marker text and the set of ids published but not yet recorded. */
#define _DEFAULT_SOURCE /* strdup, timegm */
#include "xpb_mam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xpb_error.h"

#define NS_DATA "jabber:x:data"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DELAY "urn:xmpp:delay"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

/* ---- the query -------------------------------------------------------------------- */

static Xpb__V1__Element *elem(xpb_arena *a, const char *ns, const char *name)
{
    Xpb__V1__Element *e = xpb_arena_calloc(a, sizeof *e);
    if (e) {
        xpb__v1__element__init(e);
        e->ns = (char *)ns;
        e->name = (char *)name;
    }
    return e;
}

static int add_attr(xpb_arena *a, Xpb__V1__Element *e, const char *name, const char *value)
{
    Xpb__V1__Attribute *at = xpb_arena_calloc(a, sizeof *at);
    Xpb__V1__Attribute **v = xpb_arena_calloc(a, (e->n_attr + 1) * sizeof *v);
    if (!at || !v) return XPB_ENOMEM;
    xpb__v1__attribute__init(at);
    at->name = (char *)name;
    at->value = (char *)value;
    if (e->n_attr) memcpy(v, e->attr, e->n_attr * sizeof *v);
    v[e->n_attr++] = at;
    e->attr = v;
    return 0;
}

static int add_node(xpb_arena *a, Xpb__V1__Element *e, Xpb__V1__Element *child, const char *text)
{
    Xpb__V1__Node *n = xpb_arena_calloc(a, sizeof *n);
    Xpb__V1__Node **v = xpb_arena_calloc(a, (e->n_child + 1) * sizeof *v);
    if (!n || !v || (!child && !text)) return XPB_ENOMEM;
    xpb__v1__node__init(n);
    if (child) {
        n->node_case = XPB__V1__NODE__NODE_ELEMENT;
        n->element = child;
    } else {
        n->node_case = XPB__V1__NODE__NODE_TEXT;
        n->text = (char *)text;
    }
    if (e->n_child) memcpy(v, e->child, e->n_child * sizeof *v);
    v[e->n_child++] = n;
    e->child = v;
    return 0;
}

/* <name xmlns=ns>text</name> appended to parent (text NULL: empty). */
static Xpb__V1__Element *add_child(xpb_arena *a, Xpb__V1__Element *parent, const char *ns,
                                   const char *name, const char *text)
{
    Xpb__V1__Element *e = elem(a, ns, name);
    if (!e || add_node(a, parent, e, NULL) || (text && add_node(a, e, NULL, text))) return NULL;
    return e;
}

/* XEP-0004 <field var=var [type=type]><value>value</value></field>. */
static int add_field(xpb_arena *a, Xpb__V1__Element *x, const char *var, const char *type,
                     const char *value)
{
    Xpb__V1__Element *f = add_child(a, x, NS_DATA, "field", NULL);
    if (!f || add_attr(a, f, "var", var) || (type && add_attr(a, f, "type", type)))
        return XPB_ENOMEM;
    return add_child(a, f, NS_DATA, "value", value) ? 0 : XPB_ENOMEM;
}

/* XEP-0313 §4.1 (form), §4.1.1 (start), XEP-0059 §2.1 / §2.5 (paging). */
static Xpb__V1__Element *query_element(xpb_arena *a, const xpb_mam_query *q)
{
    char max[16];
    snprintf(max, sizeof max, "%u", q->max ? q->max : 1u);
    char *maxs = xpb_arena_strndup(a, max, strlen(max));
    Xpb__V1__Element *query = elem(a, XPB_MAM_NS, "query"), *x, *set;
    if (!maxs || !query || add_attr(a, query, "queryid", q->queryid)) return NULL;
    if (!(x = add_child(a, query, NS_DATA, "x", NULL)) || add_attr(a, x, "type", "submit") ||
        add_field(a, x, "FORM_TYPE", "hidden", XPB_MAM_NS))
        return NULL;
    if (q->start && add_field(a, x, "start", NULL, q->start)) return NULL;
    if (!(set = add_child(a, query, XPB_MAM_RSM_NS, "set", NULL)) ||
        !add_child(a, set, XPB_MAM_RSM_NS, "max", maxs))
        return NULL;
    if (q->after && q->after[0] && !add_child(a, set, XPB_MAM_RSM_NS, "after", q->after))
        return NULL;
    if (q->last_page && !add_child(a, set, XPB_MAM_RSM_NS, "before", NULL)) return NULL;
    return query;
}

int xpb_mam_build_query(xpb_arena *a, const xpb_mam_query *q, xpb_stanza **out)
{
    if (!q->id || !q->id[0] || !q->queryid || !q->queryid[0]) return XPB_EINVAL;
    xpb_stanza *st = xpb_arena_calloc(a, sizeof *st);
    Xpb__V1__Element **ext = xpb_arena_calloc(a, sizeof *ext);
    if (!st || !ext || !(ext[0] = query_element(a, q))) return XPB_ENOMEM;
    xpb__v1__stanza__init(st);
    st->has_kind = st->has_type = 1;
    st->kind = XPB__V1__KIND__KIND_IQ;
    st->type = XPB__V1__STANZA_TYPE__TYPE_SET;
    st->id = (char *)q->id;
    st->to = (char *)q->to;
    st->n_extension = 1;
    st->extension = ext;
    *out = st;
    return 0;
}

/* ---- reading responses ------------------------------------------------------------ */

static const char *attr(const xpb_node *el, const char *name)
{
    const xpb_attr *a = el ? xpb_node_attr(el, "", name) : NULL;
    return a ? a->value : NULL;
}

/* The text of el's child ns:name into out ("" when absent); XPB_EINVAL too long. */
static int child_text(const xpb_node *el, const char *ns, const char *name, char *out, size_t len)
{
    out[0] = '\0';
    const xpb_node *c = el ? xpb_node_child(el, ns, name) : NULL;
    size_t n = 0;
    for (const xpb_node *t = c ? c->children : NULL; t; t = t->next) {
        if (t->kind != XPB_NODE_TEXT) continue;
        if (n + t->text_len >= len) return XPB_EINVAL;
        memcpy(out + n, t->text, t->text_len);
        n += t->text_len;
    }
    out[n] = '\0';
    return 0;
}

/* RFC 6120 §8.3.2: the defined condition is the error's child in the stanzas namespace. */
static void error_condition(const xpb_node *iq, char *out, size_t len)
{
    const xpb_node *e = xpb_node_child(iq, "jabber:client", "error");
    if (!e) e = xpb_node_child(iq, "", "error");
    snprintf(out, len, "undefined-condition");
    for (const xpb_node *c = e ? e->children : NULL; c; c = c->next)
        if (c->kind == XPB_NODE_ELEMENT && c->ns && strcmp(c->ns, NS_STANZAS) == 0 &&
            strcmp(c->name, "text") != 0) {
            snprintf(out, len, "%s", c->name);
            return;
        }
}

int xpb_mam_parse_fin(const xpb_node *iq, xpb_mam_fin *fin)
{
    memset(fin, 0, sizeof *fin);
    fin->count = -1;
    const char *type = attr(iq, "type");
    if (!type || strcmp(iq->name, "iq") != 0) return XPB_EINVAL;
    if (strcmp(type, "error") == 0) {
        fin->is_error = 1;
        error_condition(iq, fin->condition, sizeof fin->condition);
        return 0;
    }
    const xpb_node *f = xpb_node_child(iq, XPB_MAM_NS, "fin");
    if (strcmp(type, "result") != 0 || !f) return XPB_EINVAL;
    const char *c = attr(f, "complete");
    fin->complete = c && (strcmp(c, "true") == 0 || strcmp(c, "1") == 0);
    const xpb_node *set = xpb_node_child(f, XPB_MAM_RSM_NS, "set");
    char count[24];
    if (child_text(set, XPB_MAM_RSM_NS, "first", fin->first, sizeof fin->first) ||
        child_text(set, XPB_MAM_RSM_NS, "last", fin->last, sizeof fin->last) ||
        child_text(set, XPB_MAM_RSM_NS, "count", count, sizeof count))
        return XPB_EINVAL;
    if (count[0]) {
        char *end;
        long n = strtol(count, &end, 10);
        fin->count = *end || n < 0 ? -1 : n;
    }
    return 0;
}

const xpb_node *xpb_mam_result(const xpb_node *el, const char **queryid, const char **id,
                               const xpb_node **delay)
{
    const xpb_node *res = xpb_node_child(el, XPB_MAM_NS, "result");
    const xpb_node *fwd = res ? xpb_node_child(res, NS_FORWARD, "forwarded") : NULL;
    const xpb_node *msg = fwd ? xpb_node_child(fwd, "jabber:client", "message") : NULL;
    if (!res) return NULL;
    *queryid = attr(res, "queryid");
    *id = attr(res, "id");
    *delay = fwd ? xpb_node_child(fwd, NS_DELAY, "delay") : NULL;
    return msg;
}

const char *xpb_mam_stanza_id(const xpb_node *msg, const char *archive)
{
    for (const xpb_node *c = msg->children; c; c = c->next) {
        if (c->kind != XPB_NODE_ELEMENT || strcmp(c->name, "stanza-id") != 0 || !c->ns ||
            strcmp(c->ns, XPB_MAM_SID_NS) != 0)
            continue;
        const char *by = attr(c, "by"), *id = attr(c, "id");
        if (by && id && id[0] && strcmp(by, archive) == 0) return id;
    }
    return NULL;
}

/* ---- the marker ------------------------------------------------------------------- */

int xpb_mam_marker_parse(const char *text, xpb_mam_marker *m)
{
    memset(m, 0, sizeof *m);
    const char *sp = strchr(text, ' ');
    if (sp && sp - text == XPB_MAM_STAMP_LEN) {
        memcpy(m->stamp, text, XPB_MAM_STAMP_LEN);
        if (xpb_mam_stamp_parse(m->stamp) >= 0)
            text = sp + 1;
        else
            m->stamp[0] = '\0';
    }
    size_t n = strlen(text);
    if (n >= sizeof m->id) return XPB_EINVAL;
    memcpy(m->id, text, n + 1);
    return 0;
}

int xpb_mam_marker_format(const xpb_mam_marker *m, char *out, size_t len)
{
    int n = snprintf(out, len, "%s %s", m->stamp, m->id);
    return n < 0 || (size_t)n >= len ? XPB_EINVAL : 0;
}

void xpb_mam_stamp(int64_t unix_s, char out[XPB_MAM_STAMP_LEN + 1])
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, XPB_MAM_STAMP_LEN + 1, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int64_t xpb_mam_stamp_parse(const char *stamp)
{
    struct tm tm = {0};
    int used = 0;
    if (sscanf(stamp, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6 ||
        used != XPB_MAM_STAMP_LEN - 1)
        return -1;
    const char *p = stamp + used;
    if (*p == '.') /* XEP-0082 §3.2: fractions of a second (ejabberd sends microseconds) */
        for (p++; *p >= '0' && *p <= '9'; p++) {
        }
    if (p[0] != 'Z' || p[1] != '\0') return -1; /* offsets other than Z are not read */
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* ---- ids published, not yet recorded ---------------------------------------------- */

static int same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

int xpb_mam_pending_has(const xpb_mam_pending *p, const char *account, const char *archive,
                        const char *stanza_id)
{
    for (size_t i = 0; i < p->n; i++) {
        const xpb_mam_pending_ent *e = &p->ent[i];
        if (same(e->stanza_id, stanza_id) && same(e->archive, archive) && same(e->account, account))
            return 1;
    }
    return 0;
}

static int set_marker(xpb_mam_pending_ent *e, const char *marker, const char *stream)
{
    char *m = strdup(marker), *st = stream ? strdup(stream) : NULL;
    if (!m || (stream && !st)) {
        free(m);
        free(st);
        return XPB_ENOMEM;
    }
    free(e->marker);
    free(e->stream);
    e->marker = m;
    e->stream = st;
    return 0;
}

int xpb_mam_pending_add(xpb_mam_pending *p, const char *account, const char *archive,
                        const char *stanza_id, const char *marker, const char *stream)
{
    /* A marker alone replaces the archive's newest one: they are written in order. */
    if (marker && !stanza_id)
        for (size_t i = p->n; i-- > 0;)
            if (p->ent[i].marker && same(p->ent[i].archive, archive) &&
                same(p->ent[i].account, account))
                return set_marker(&p->ent[i], marker, stream);
    if (p->n >= XPB_MAM_PENDING_MAX) return XPB_ETOOBIG;
    xpb_mam_pending_ent *e = &p->ent[p->n];
    memset(e, 0, sizeof *e);
    e->account = strdup(account);
    e->archive = strdup(archive);
    e->stanza_id = stanza_id ? strdup(stanza_id) : NULL;
    e->marker = marker ? strdup(marker) : NULL;
    e->stream = marker && stream ? strdup(stream) : NULL;
    if (!e->account || !e->archive || (stanza_id && !e->stanza_id) || (marker && !e->marker) ||
        (e->marker && stream && !e->stream)) {
        free(e->account);
        free(e->archive);
        free(e->stanza_id);
        free(e->marker);
        free(e->stream);
        return XPB_ENOMEM;
    }
    p->n++;
    return 0;
}

void xpb_mam_pending_clear(xpb_mam_pending *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->ent[i].account);
        free(p->ent[i].archive);
        free(p->ent[i].stanza_id);
        free(p->ent[i].marker);
        free(p->ent[i].stream);
    }
    p->n = 0;
}
