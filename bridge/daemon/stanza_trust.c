/* The inbound trust rules (docs/security.md, "What the bridge checks on
 * inbound stanzas"): one verdict per stanza from the server, publish with the
 * trust bits that held, drop, or answer, and the answers themselves. Reads the
 * parsed element, not the record, so compact record forms cannot hide a field. */
#include "xpb_trust.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "xpb_jid.h"

#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_MAM "urn:xmpp:mam:2"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define NS_ROSTER "jabber:iq:roster"
#define NS_PING "urn:xmpp:ping"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_VERSION "jabber:iq:version"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define JID_MAX (3 * 1024 + 8) /* RFC 7622 §3.1: three parts of at most 1023 bytes */

const char *const xpb_trust_features[] = {NS_DISCO_INFO, NS_PING, NULL};

static const struct {
    const char *name, *action;
} reasons[XPB_TR_COUNT] = {
    [XPB_TR_NONE] = {"none", "published"},
    [XPB_TR_TO_NOT_ACCOUNT] = {"to_not_account", "dropped"},
    [XPB_TR_CARBON_FOREIGN] = {"carbon_not_own_account", "dropped"},
    [XPB_TR_ROSTER_PUSH_FOREIGN] = {"roster_push_not_own_account", "dropped"},
    [XPB_TR_MAM_NOT_OURS] = {"mam_result_not_our_query", "dropped"},
    [XPB_TR_MAM_WRONG_ARCHIVE] = {"mam_result_wrong_archive", "dropped"},
    [XPB_TR_IQ_RESPONSE_WRONG_PEER] = {"iq_response_wrong_peer", "dropped"},
    [XPB_TR_IQ_RESPONSE_UNMATCHED] = {"iq_response_unmatched", "marked"},
    [XPB_TR_MUC_SELF_NOT_JOINED] = {"muc_self_presence_not_joined", "marked"},
    [XPB_TR_IQ_NO_ID] = {"iq_without_id", "dropped"},
    [XPB_TR_IQ_BAD_PAYLOAD] = {"iq_bad_payload", "answered"},
    [XPB_TR_IQ_PING] = {"iq_ping", "answered"},
    [XPB_TR_IQ_DISCO_INFO] = {"iq_disco_info", "answered"},
    [XPB_TR_IQ_DISCO_NODE] = {"iq_disco_info_unknown_node", "answered"},
    [XPB_TR_IQ_VERSION] = {"iq_version", "answered"},
    [XPB_TR_IQ_UNHANDLED] = {"iq_unhandled", "answered"},
    [XPB_TR_ROSTER_PUSH_ACK] = {"roster_push_acknowledged", "answered"},
};

const char *xpb_trust_reason_name(xpb_trust_reason r)
{
    return r < XPB_TR_COUNT ? reasons[r].name : "unknown";
}

const char *xpb_trust_reason_action(xpb_trust_reason r)
{
    return r < XPB_TR_COUNT ? reasons[r].action : "unknown";
}

/* ---- small helpers ------------------------------------------------------------- */

static const char *attr(const xpb_node *el, const char *name)
{
    const xpb_attr *a = xpb_node_attr(el, "", name);
    return a ? a->value : NULL;
}

static int streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* RFC 7622 comparison; the byte compare first spares the normalisation on the
 * common path (the server echoes the JIDs it bound). */
static int jid_eq(const char *a, const char *b)
{
    return streq(a, b) || xpb_jid_equal(a, b);
}

/* from names our account itself: absent (RFC 6120 §8.1.2.1: the stanza is from
 * the user's account) or our bare JID. */
static int from_own_bare(const xpb_trust_ctx *ctx, const char *from)
{
    return !from || jid_eq(from, ctx->bare);
}

/* The bare part of jid into buf ("" when it does not fit). */
static const char *bare_of(const char *jid, char *buf, size_t len)
{
    const char *slash = strchr(jid, '/');
    size_t n = slash ? (size_t)(slash - jid) : strlen(jid);
    if (n >= len) n = 0;
    memcpy(buf, jid, n);
    buf[n] = '\0';
    return buf;
}

static const char *domain_of(const char *bare)
{
    const char *at = strchr(bare, '@');
    return at ? at + 1 : bare;
}

static int room_joined(const xpb_trust_ctx *ctx, const char *from)
{
    char room[JID_MAX];
    return from && ctx->room_joined && ctx->room_joined(ctx->ud, bare_of(from, room, sizeof room));
}

static size_t element_children(const xpb_node *el, const xpb_node **first)
{
    size_t n = 0;
    *first = NULL;
    for (const xpb_node *c = el->children; c; c = c->next) {
        if (c->kind != XPB_NODE_ELEMENT) continue;
        if (!n++) *first = c;
    }
    return n;
}

static const char *nz(const char *s)
{
    return s ? s : "(none)";
}

static void say(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t len, const char *fmt, ...)
{
    if (!why || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}

static void drop(xpb_trust_verdict *v, xpb_trust_reason r)
{
    v->publish = 0;
    v->trust = 0;
    v->answer = XPB_ANSWER_NONE;
    v->reason = r;
}

static void answer(xpb_trust_verdict *v, xpb_trust_reason r, xpb_trust_answer a)
{
    v->publish = 0;
    v->answer = a;
    v->reason = r;
}

/* ---- the rules ------------------------------------------------------------------ */

int xpb_trust_peer_matches(const xpb_trust_ctx *ctx, const char *peer, const char *from)
{
    if (!peer || jid_eq(peer, ctx->bare)) {
        if (!from) return 1;
        return jid_eq(from, ctx->bare) || jid_eq(from, domain_of(ctx->bare)) ||
               (ctx->full && jid_eq(from, ctx->full));
    }
    return from && jid_eq(from, peer);
}

/* RFC 6120 §8.1.1: a client accepts stanzas addressed to its account. */
static int check_to(const xpb_trust_ctx *ctx, const xpb_node *el, xpb_trust_verdict *v, char *why,
                    size_t len)
{
    const char *to = attr(el, "to");
    int ours = !to || streq(to, ctx->full) || streq(to, ctx->bare) || jid_eq(to, ctx->bare) ||
               (ctx->full && jid_eq(to, ctx->full));
    if (!ours) {
        drop(v, XPB_TR_TO_NOT_ACCOUNT);
        say(why, len, "dropped %s: to %s is neither our bare nor our full JID (RFC 6120 §8.1.1)",
            el->name, to);
        return 0;
    }
    v->trust |= XPB_TRUST_TO_ACCOUNT;
    return 1;
}

/* XEP-0280 §11: a forwarded copy must come from the user's own bare JID. */
static void check_carbon(const xpb_trust_ctx *ctx, const char *from, xpb_trust_verdict *v,
                         char *why, size_t len)
{
    if (from && jid_eq(from, ctx->bare)) {
        v->trust |= XPB_TRUST_CARBON_OWN_ACCOUNT;
        return;
    }
    drop(v, XPB_TR_CARBON_FOREIGN);
    say(why, len, "dropped carbon: outer from %s is not our bare JID %s (XEP-0280 §11)", nz(from),
        ctx->bare);
}

/* XEP-0313 §5 (and §4.1): a result carries the queryid we chose and comes from
 * the archive we asked: our bare JID (from absent or bare) or the room. */
static void check_mam(const xpb_trust_ctx *ctx, const xpb_node *result, const char *from,
                      xpb_trust_verdict *v, char *why, size_t len)
{
    const char *qid = attr(result, "queryid");
    const char *archive = NULL;
    if (!ctx->mam_query || !ctx->mam_query(ctx->ud, qid ? qid : "", &archive)) {
        drop(v, XPB_TR_MAM_NOT_OURS);
        say(why, len, "dropped MAM result: queryid %s from %s is no query of ours (XEP-0313 §5)",
            nz(qid), nz(from));
        return;
    }
    int ok = archive && !jid_eq(archive, ctx->bare) ? from && jid_eq(from, archive)
                                                    : from_own_bare(ctx, from);
    if (ok) {
        v->trust |= XPB_TRUST_MAM_RESULT_OURS;
        return;
    }
    drop(v, XPB_TR_MAM_WRONG_ARCHIVE);
    say(why, len, "dropped MAM result: from %s is not the archive %s we asked (XEP-0313 §5)",
        nz(from), archive ? archive : ctx->bare);
}

static void classify_message(const xpb_trust_ctx *ctx, const xpb_node *el, const char *from,
                             xpb_trust_verdict *v, char *why, size_t len)
{
    const xpb_node *res = xpb_node_child(el, NS_MAM, "result");
    if (xpb_node_child(el, NS_CARBONS, "received") || xpb_node_child(el, NS_CARBONS, "sent"))
        check_carbon(ctx, from, v, why, len);
    if (v->publish && res) check_mam(ctx, res, from, v, why, len);
}

/* XEP-0045 §7.2.2 / §10.1.1: self-presence (110) and "room created" (201)
 * mean something only for a room we asked to join. */
static void classify_presence(const xpb_node *el, const char *from, xpb_trust_verdict *v, char *why,
                              size_t len)
{
    const xpb_node *x = xpb_node_child(el, NS_MUC_USER, "x");
    int self = 0, created = 0;
    for (const xpb_node *c = x ? x->children : NULL; c; c = c->next) {
        if (c->kind != XPB_NODE_ELEMENT || strcmp(c->name, "status") != 0) continue;
        self |= streq(attr(c, "code"), "110");
        created |= streq(attr(c, "code"), "201");
    }
    if (!self) return;
    if (v->trust & XPB_TRUST_MUC_ROOM_JOINED) {
        v->muc_created = created;
        return;
    }
    v->reason = XPB_TR_MUC_SELF_NOT_JOINED;
    say(why, len,
        "self-presence from %s: a room we never joined; published without "
        "muc-room-joined and not acted on (XEP-0045 §7.2.2)",
        nz(from));
}

/* RFC 6120 §8.2.3: a result or error answers an iq we sent, to that JID. */
static void classify_response(const xpb_trust_ctx *ctx, const char *id, const char *from,
                              xpb_trust_verdict *v, char *why, size_t len)
{
    const char *peer = NULL;
    size_t n = 0;
    for (; ctx->iq_pending && ctx->iq_pending(ctx->ud, id, n, &peer); n++)
        if (xpb_trust_peer_matches(ctx, peer, from)) {
            v->trust |= XPB_TRUST_IQ_RESPONSE_MATCHED;
            v->iq_match = (long)n;
            return;
        }
    if (n == 0) {
        v->reason = XPB_TR_IQ_RESPONSE_UNMATCHED;
        return;
    }
    drop(v, XPB_TR_IQ_RESPONSE_WRONG_PEER);
    say(why, len,
        "dropped iq response: id %s is pending for another JID, not %s "
        "(RFC 6120 §8.2.3)",
        id, nz(from));
}

static int passthrough(const xpb_trust_ctx *ctx, const char *ns)
{
    for (size_t i = 0; i < ctx->n_passthrough; i++)
        if (streq(ctx->passthrough[i], ns)) return 1;
    return 0;
}

/* RFC 6121 §2.1.6: a roster push is ignored unless from is absent or our
 * bare JID; a genuine one is answered with a result. */
static void classify_roster_push(const xpb_trust_ctx *ctx, const char *from, xpb_trust_verdict *v,
                                 char *why, size_t len)
{
    if (from_own_bare(ctx, from)) {
        v->trust |= XPB_TRUST_ROSTER_PUSH_OWN;
        v->answer = XPB_ANSWER_RESULT;
        v->reason = XPB_TR_ROSTER_PUSH_ACK;
        return;
    }
    drop(v, XPB_TR_ROSTER_PUSH_FOREIGN);
    say(why, len, "dropped roster push: from %s is not our bare JID %s (RFC 6121 §2.1.6)", nz(from),
        ctx->bare);
}

/* RFC 6120 §8.2.3 / §8.4: every get or set gets a result or an error. */
static void classify_request(const xpb_trust_ctx *ctx, const xpb_node *el, const char *type,
                             const char *from, xpb_trust_verdict *v, char *why, size_t len)
{
    const xpb_node *q;
    if (element_children(el, &q) != 1) {
        answer(v, XPB_TR_IQ_BAD_PAYLOAD, XPB_ANSWER_BAD_REQUEST);
        say(why, len,
            "answered bad-request: iq %s from %s has not exactly one child "
            "(RFC 6120 §8.2.3)",
            type, nz(from));
        return;
    }
    int get = strcmp(type, "get") == 0;
    if (!get && streq(q->ns, NS_ROSTER) && streq(q->name, "query")) {
        classify_roster_push(ctx, from, v, why, len);
    } else if (passthrough(ctx, q->ns)) {
        return; /* a backend answers it (iq.passthrough) */
    } else if (get && streq(q->ns, NS_PING) && streq(q->name, "ping")) {
        answer(v, XPB_TR_IQ_PING, XPB_ANSWER_RESULT);
    } else if (get && streq(q->ns, NS_DISCO_INFO) && streq(q->name, "query")) {
        if (attr(q, "node"))
            answer(v, XPB_TR_IQ_DISCO_NODE, XPB_ANSWER_ITEM_NOT_FOUND);
        else
            answer(v, XPB_TR_IQ_DISCO_INFO, XPB_ANSWER_DISCO_INFO);
    } else if (get && ctx->answer_version && streq(q->ns, NS_VERSION) && streq(q->name, "query")) {
        answer(v, XPB_TR_IQ_VERSION, XPB_ANSWER_VERSION);
    } else {
        answer(v, XPB_TR_IQ_UNHANDLED, XPB_ANSWER_SERVICE_UNAVAILABLE);
        say(why, len,
            "answered service-unavailable: no handler for %s from %s (RFC 6120 §8.4; "
            "list the namespace in iq.passthrough for a backend to answer it)",
            nz(q->ns), nz(from));
    }
}

static void classify_iq(const xpb_trust_ctx *ctx, const xpb_node *el, const char *from,
                        xpb_trust_verdict *v, char *why, size_t len)
{
    const char *id = attr(el, "id"), *type = attr(el, "type");
    if (!id) {
        drop(v, XPB_TR_IQ_NO_ID);
        say(why, len, "dropped iq from %s: no id (RFC 6120 §8.1.3)", nz(from));
        return;
    }
    if (streq(type, "result") || streq(type, "error"))
        classify_response(ctx, id, from, v, why, len);
    else if (streq(type, "get") || streq(type, "set"))
        classify_request(ctx, el, type, from, v, why, len);
}

void xpb_trust_classify(const xpb_trust_ctx *ctx, const xpb_node *el, xpb_trust_verdict *v,
                        char *why, size_t whylen)
{
    memset(v, 0, sizeof *v);
    v->publish = 1;
    v->iq_match = -1;
    if (why && whylen) why[0] = '\0';
    if (!check_to(ctx, el, v, why, whylen)) return;
    const char *from = attr(el, "from");
    if (room_joined(ctx, from)) v->trust |= XPB_TRUST_MUC_ROOM_JOINED;
    if (strcmp(el->name, "message") == 0)
        classify_message(ctx, el, from, v, why, whylen);
    else if (strcmp(el->name, "presence") == 0)
        classify_presence(el, from, v, why, whylen);
    else if (strcmp(el->name, "iq") == 0)
        classify_iq(ctx, el, from, v, why, whylen);
}

/* ---- outbound MAM queries ---------------------------------------------------------- */

static const char *element_ns(const Xpb__V1__Element *e)
{
    return e->ns ? e->ns : e->has_ns_id ? xpb_ns_uri(e->ns_id) : NULL;
}

int xpb_trust_mam_queryid(const xpb_stanza *st, const char **queryid)
{
    if (st->kind != XPB__V1__KIND__KIND_IQ || st->type != XPB__V1__STANZA_TYPE__TYPE_SET) return 0;
    for (size_t i = 0; i < st->n_extension; i++) {
        const Xpb__V1__Element *e = st->extension[i];
        if (!streq(element_ns(e), NS_MAM) || !streq(e->name, "query")) continue;
        *queryid = "";
        for (size_t k = 0; k < e->n_attr; k++)
            if (streq(e->attr[k]->name, "queryid") && !e->attr[k]->ns && !e->attr[k]->has_ns_id &&
                e->attr[k]->value)
                *queryid = e->attr[k]->value;
        return 1;
    }
    return 0;
}

/* ---- answers ------------------------------------------------------------------------ */

static char *arena_str(xpb_arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xpb_arena_alloc(a, n);
    if (p) memcpy(p, s, n);
    return p;
}

static Xpb__V1__StanzaError *error_of(xpb_arena *a, xpb_trust_answer ans)
{
    Xpb__V1__StanzaError *e = xpb_arena_calloc(a, sizeof *e);
    if (!e) return NULL;
    xpb__v1__stanza_error__init(e);
    e->has_type = e->has_condition = 1;
    e->type = ans == XPB_ANSWER_BAD_REQUEST ? XPB__V1__ERROR_TYPE__ERROR_TYPE_MODIFY
                                            : XPB__V1__ERROR_TYPE__ERROR_TYPE_CANCEL;
    e->condition = ans == XPB_ANSWER_BAD_REQUEST ? XPB__V1__ERROR_CONDITION__CONDITION_BAD_REQUEST
                   : ans == XPB_ANSWER_ITEM_NOT_FOUND
                       ? XPB__V1__ERROR_CONDITION__CONDITION_ITEM_NOT_FOUND
                       : XPB__V1__ERROR_CONDITION__CONDITION_SERVICE_UNAVAILABLE;
    return e;
}

/* XEP-0030 §3.1: identity client/bot (XEP-0030 registry) and our features. */
static Xpb__V1__DiscoInfo *disco_info_of(xpb_arena *a, const xpb_trust_ctx *ctx)
{
    Xpb__V1__DiscoInfo *di = xpb_arena_calloc(a, sizeof *di);
    Xpb__V1__DiscoInfo__Identity *id = xpb_arena_calloc(a, sizeof *id);
    Xpb__V1__DiscoInfo__Identity **ids = xpb_arena_calloc(a, sizeof *ids);
    size_t nf = 0;
    while (xpb_trust_features[nf])
        nf++;
    size_t total = nf + (ctx->answer_version ? 1 : 0) + ctx->n_passthrough;
    char **f = xpb_arena_calloc(a, total * sizeof *f);
    if (!di || !id || !ids || !f) return NULL;
    xpb__v1__disco_info__init(di);
    xpb__v1__disco_info__identity__init(id);
    id->category = "client";
    id->type = "bot";
    id->name = "xpbridge";
    ids[0] = id;
    di->n_identity = 1;
    di->identity = ids;
    for (size_t i = 0; i < nf; i++)
        f[di->n_feature++] = (char *)xpb_trust_features[i];
    if (ctx->answer_version) f[di->n_feature++] = NS_VERSION;
    for (size_t i = 0; i < ctx->n_passthrough; i++)
        f[di->n_feature++] = (char *)ctx->passthrough[i];
    di->feature = f;
    return di;
}

static Xpb__V1__Node *text_child(xpb_arena *a, const char *name, const char *text)
{
    Xpb__V1__Node *n = xpb_arena_calloc(a, sizeof *n);
    Xpb__V1__Node *t = xpb_arena_calloc(a, sizeof *t);
    Xpb__V1__Node **kids = xpb_arena_calloc(a, sizeof *kids);
    Xpb__V1__Element *e = xpb_arena_calloc(a, sizeof *e);
    if (!n || !t || !kids || !e) return NULL;
    xpb__v1__node__init(n);
    xpb__v1__node__init(t);
    xpb__v1__element__init(e);
    t->node_case = XPB__V1__NODE__NODE_TEXT;
    t->text = (char *)text;
    kids[0] = t;
    e->ns = NS_VERSION;
    e->name = (char *)name;
    e->n_child = 1;
    e->child = kids;
    n->node_case = XPB__V1__NODE__NODE_ELEMENT;
    n->element = e;
    return n;
}

/* XEP-0092 §2: name and version; the OS is left out (§6 advises it). */
static Xpb__V1__Element **version_of(xpb_arena *a, const char *version)
{
    Xpb__V1__Element **ext = xpb_arena_calloc(a, sizeof *ext);
    Xpb__V1__Element *q = xpb_arena_calloc(a, sizeof *q);
    Xpb__V1__Node **kids = xpb_arena_calloc(a, 2 * sizeof *kids);
    if (!ext || !q || !kids) return NULL;
    xpb__v1__element__init(q);
    q->ns = NS_VERSION;
    q->name = "query";
    kids[0] = text_child(a, "name", "xpbridge");
    kids[1] = text_child(a, "version", version ? version : "unknown");
    if (!kids[0] || !kids[1]) return NULL;
    q->n_child = 2;
    q->child = kids;
    ext[0] = q;
    return ext;
}

xpb_stanza *xpb_trust_build_answer(xpb_arena *a, const xpb_trust_ctx *ctx, const xpb_node *el,
                                   const xpb_trust_verdict *v)
{
    const char *id = attr(el, "id"), *from = attr(el, "from");
    if (v->answer == XPB_ANSWER_NONE || !id || strcmp(el->name, "iq") != 0) return NULL;
    xpb_stanza *st = xpb_arena_calloc(a, sizeof *st);
    if (!st) return NULL;
    xpb__v1__stanza__init(st);
    st->has_kind = st->has_type = 1;
    st->kind = XPB__V1__KIND__KIND_IQ;
    st->type = XPB__V1__STANZA_TYPE__TYPE_RESULT;
    st->id = arena_str(a, id);
    st->to = from ? arena_str(a, from) : NULL;
    if (!st->id || (from && !st->to)) return NULL;
    switch (v->answer) {
    case XPB_ANSWER_DISCO_INFO:
        if (!(st->disco_info = disco_info_of(a, ctx))) return NULL;
        break;
    case XPB_ANSWER_VERSION:
        if (!(st->extension = version_of(a, ctx->version))) return NULL;
        st->n_extension = 1;
        break;
    case XPB_ANSWER_SERVICE_UNAVAILABLE:
    case XPB_ANSWER_ITEM_NOT_FOUND:
    case XPB_ANSWER_BAD_REQUEST:
        st->type = XPB__V1__STANZA_TYPE__TYPE_ERROR;
        if (!(st->error = error_of(a, v->answer))) return NULL;
        break;
    default:
        break;
    }
    return st;
}
