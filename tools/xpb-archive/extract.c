/* From a bridge event to an archived message (docs/archive.md, "What is
 * archived"): received messages (carbons unwrapped, XEP-0280), messages
 * recovered from the server's archive (Event.from_archive, XEP-0313) and our
 * own sends (Delivery ACKED with its stanza). Pure: no database here. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "archive.h"
#include "xpb_error.h"

#define NS_CORRECT "urn:xmpp:message-correct:0"   /* XEP-0308 */
#define NS_RETRACT "urn:xmpp:message-retract:1"   /* XEP-0424 1.x */
#define NS_RETRACT0 "urn:xmpp:message-retract:0"  /* XEP-0424 0.3, inside apply-to */
#define NS_FASTEN "urn:xmpp:fasten:0"             /* XEP-0422 */

static void seterr(char *err, size_t errlen, const char *what)
{
    if (err && errlen) snprintf(err, errlen, "%s", what);
}

/* s up to its first '/', in the arena. */
static const char *bare(xpb_arena *a, const char *s)
{
    if (!s) return NULL;
    const char *slash = strchr(s, '/');
    return slash ? xpb_arena_strndup(a, s, (size_t)(slash - s)) : s;
}

static const char *resource(const char *s)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    return slash && slash[1] ? slash + 1 : NULL;
}

static bool same_bare(const char *jid, const char *bare_jid)
{
    if (!jid || !bare_jid) return false;
    size_t n = strcspn(jid, "/");
    return strlen(bare_jid) == n && strncasecmp(jid, bare_jid, n) == 0;
}

/* ---- XEP-0082 date-time ---------------------------------------------- */
static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int64_t xa_parse_stamp(const char *s)
{
    int y, mo, d, h, mi, se;
    if (!s || strlen(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || !digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
        !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &se))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return -1;
    const char *p = s + 19;
    int64_t frac = 0, scale = 1000000;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') return -1;
        for (; *p >= '0' && *p <= '9'; p++)
            if (scale > 1) frac += (*p - '0') * (scale /= 10);
    }
    int64_t off = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om)) return -1;
        off = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p) return -1;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
    return secs * 1000000 + frac;
}

void xa_format_stamp(int64_t us, char *out, size_t outlen)
{
    time_t t = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        t--;
    }
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac)
        snprintf(out, outlen, "%s.%06ldZ", base, frac);
    else
        snprintf(out, outlen, "%sZ", base);
}

/* ---- extension elements ---------------------------------------------- */
static const char *elem_ns(const Xpb__V1__Element *e)
{
    if (e->ns) return e->ns;
    return e->has_ns_id ? xpb_ns_uri(e->ns_id) : NULL;
}

static bool elem_is(const Xpb__V1__Element *e, const char *ns, const char *name)
{
    const char *n = elem_ns(e);
    return n && e->name && strcmp(n, ns) == 0 && strcmp(e->name, name) == 0;
}

static const char *elem_attr(const Xpb__V1__Element *e, const char *name)
{
    for (size_t i = 0; i < e->n_attr; i++)
        if (e->attr[i]->name && strcmp(e->attr[i]->name, name) == 0 && !e->attr[i]->ns &&
            !e->attr[i]->has_ns_id)
            return e->attr[i]->value;
    return NULL;
}

static bool has_child(const Xpb__V1__Element *e, const char *ns, const char *name)
{
    for (size_t i = 0; i < e->n_child; i++) {
        const Xpb__V1__Node *c = e->child[i];
        if (c->node_case != XPB__V1__NODE__NODE_ELEMENT) continue;
        /* A child without a namespace of its own inherits its parent's. */
        const char *cns = elem_ns(c->element) ? elem_ns(c->element) : elem_ns(e);
        if (cns && c->element->name && strcmp(cns, ns) == 0 && strcmp(c->element->name, name) == 0)
            return true;
    }
    return false;
}

/* XEP-0308 §4 and XEP-0424 §4 (and its 0.3 form inside XEP-0422 apply-to). */
static void find_change(const xpb_stanza *st, xa_msg *m)
{
    for (size_t i = 0; i < st->n_extension; i++) {
        const Xpb__V1__Element *e = st->extension[i];
        const char *id = elem_attr(e, "id");
        if (!id || !id[0]) continue;
        if (elem_is(e, NS_CORRECT, "replace")) {
            m->kind = XA_KIND_CORRECTION;
        } else if (elem_is(e, NS_RETRACT, "retract") ||
                   (elem_is(e, NS_FASTEN, "apply-to") && has_child(e, NS_RETRACT0, "retract"))) {
            m->kind = XA_KIND_RETRACTION;
        } else {
            continue;
        }
        m->target = id;
        return;
    }
}

/* The stanza-id the archive owner set (XEP-0359 §3.2: by = the archive's
 * JID), else the first one. */
static void pick_stanza_id(const xpb_stanza *st, const char *owner, xa_msg *m)
{
    const Xpb__V1__StanzaId *pick = NULL;
    for (size_t i = 0; i < st->n_stanza_id; i++) {
        const Xpb__V1__StanzaId *s = st->stanza_id[i];
        if (!s->id || !s->by) continue;
        if (!pick || (owner && strcasecmp(s->by, owner) == 0)) pick = s;
    }
    if (pick) {
        m->stanza_id = pick->id;
        m->stanza_id_by = pick->by;
    }
}

static const char *first_body(const xpb_stanza *st)
{
    for (size_t i = 0; i < st->n_body; i++)
        if (st->body[i]->text) return st->body[i]->text;
    return NULL;
}

static bool is_groupchat(const xpb_stanza *st)
{
    return st->has_type && st->type == XPB__V1__STANZA_TYPE__TYPE_GROUPCHAT;
}

/* Conversation, direction and sender of message st seen by account. A
 * private message through a room (XEP-0045 §7.5: not groupchat, with a
 * muc#user <x/>) is a conversation with the occupant, room/nick. */
static void place(xpb_arena *a, const xpb_stanza *st, xa_msg *m)
{
    m->groupchat = is_groupchat(st);
    bool pm = !m->groupchat && st->muc_user;
    if (m->own) {
        m->direction = XA_DIR_OUT;
        m->conversation = pm ? st->to : bare(a, st->to);
        m->sender = m->groupchat ? NULL : m->account; /* our nick comes with the reflection */
    } else if (m->groupchat) {
        m->direction = XA_DIR_IN; /* store.c knows our nick once a send is reflected */
        m->conversation = bare(a, st->from);
        m->sender = resource(st->from);
    } else if (same_bare(st->from, m->account)) {
        m->direction = XA_DIR_OUT; /* a sent carbon, or our own message from the archive */
        m->conversation = pm ? st->to : bare(a, st->to);
        m->sender = m->account;
    } else {
        m->direction = XA_DIR_IN;
        m->conversation = pm ? st->from : bare(a, st->from);
        m->sender = pm ? resource(st->from) : m->conversation;
    }
}

/* The message the event carries, plain (compact forms expanded) and checked
 * with every rule for untrusted records. A borrowed event (xa_extract) is
 * not ours to change: its stanza is packed again and unpacked into the arena
 * (xpb_stanza_unpack: depth and NUL on the wire, then xpb_stanza_check). An
 * owned one (xa_extract_owned: from xa_event_unpack, whose wire walk bounded
 * the depth and refused a NUL in any string before protobuf-c unpacked it
 * into the arena) is checked where it is (xpb_stanza_check) and expanded in
 * place, which spares the copy. */
static int plain_stanza(xpb_arena *a, const xpb_stanza *in, bool owned, xpb_stanza **out,
                        char *err, size_t errlen)
{
    int rc;
    if (owned) {
        rc = xpb_stanza_check(in, NULL, err, errlen);
        if (!rc) *out = (xpb_stanza *)in; /* owned: the caller's, in arena memory */
    } else {
        xpb_buf b;
        xpb_buf_init(&b, 0);
        rc = xpb_stanza_pack(&b, in);
        if (!rc) rc = xpb_stanza_unpack(a, (const uint8_t *)b.data, b.len, NULL, out, err, errlen);
        xpb_buf_free(&b);
    }
    if (!rc) rc = xpb_stanza_expand(a, *out);
    if (rc && err && errlen && !err[0]) snprintf(err, errlen, "record: %s", xpb_strerror(rc));
    return rc ? XA_EINVAL : 0;
}

/* Event > Stanza, or Event > Delivery > Stanza: two wire levels above the
 * record's own bound (2 per record level and a trailing Node, see
 * xpb_stanza_unpack). */
#define XA_EVENT_WIRE_DEPTH (2u * XPB_RECORD_DEFAULT_MAX_DEPTH + 1u + 2u)

Xpb__V1__Event *xa_event_unpack(xpb_arena *a, const uint8_t *data, size_t len, char *err,
                                size_t errlen)
{
    int rc = xpb_pb_check_wire_nul(&xpb__v1__event__descriptor, data, len, XA_EVENT_WIRE_DEPTH,
                                   err, errlen);
    if (rc) {
        char why[XA_ERR_MAX];
        snprintf(why, sizeof why, "%s", err && errlen ? err : "");
        if (err && errlen) snprintf(err, errlen, "event: %s: %s", xpb_strerror(rc), why);
        return NULL;
    }
    Xpb__V1__Event *ev = xpb__v1__event__unpack(xpb_arena_pb_allocator(a), len, data);
    if (!ev && err && errlen)
        snprintf(err, errlen, "event: protobuf-c cannot unpack these %zu bytes", len);
    return ev; /* NULL: what protobuf-c allocated stays in a until its reset */
}

/* A carbon's inner message (XEP-0280 §7): its delay is the forwarded one's. */
static const xpb_stanza *unwrap_carbon(const xpb_stanza *st, const Xpb__V1__Delay **delay)
{
    const Xpb__V1__Carbon *c = st->carbon;
    if (!c || !c->forwarded || !c->forwarded->stanza) return st;
    if (c->forwarded->delay) *delay = c->forwarded->delay;
    return c->forwarded->stanza;
}

static int64_t message_time(const Xpb__V1__Event *ev, const xpb_stanza *st,
                            const Xpb__V1__Delay *fwd_delay)
{
    const Xpb__V1__Delay *d = st->delay ? st->delay : fwd_delay;
    int64_t t = d && d->stamp ? xa_parse_stamp(d->stamp) : -1;
    if (t >= 0) return t;
    return ev->has_timestamp_us ? (int64_t)ev->timestamp_us : 0;
}

static int extract(xpb_arena *a, const Xpb__V1__Event *ev, bool owned, xa_msg *m, char *err,
                   size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (err && errlen) err[0] = '\0';
    const xpb_stanza *src = NULL;
    if (ev->body_case == XPB__V1__EVENT__BODY_STANZA) {
        src = ev->stanza;
    } else if (ev->body_case == XPB__V1__EVENT__BODY_DELIVERY && ev->delivery &&
               ev->delivery->has_outcome &&
               ev->delivery->outcome == XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED) {
        src = ev->delivery->stanza;
        m->own = true;
    }
    if (!src || !src->has_kind || src->kind != XPB__V1__KIND__KIND_MESSAGE) return XA_SKIP;
    if (src->has_type && src->type == XPB__V1__STANZA_TYPE__TYPE_ERROR) return XA_SKIP;
    if (!ev->account || !ev->account[0]) {
        seterr(err, errlen, "event without an account");
        return XA_EINVAL;
    }
    m->account = ev->account;
    /* XEP-0280 §11: a carbon not from our bare JID is forged. The bridge drops
     * those; a bridge that says what it checked (Event.trust) must have
     * checked this one too. */
    if (src->carbon && ev->has_trust && !(ev->trust & XPB__V1__TRUST__TRUST_CARBON_OWN_ACCOUNT)) {
        seterr(err, errlen,
               "a carbon the bridge did not verify (Event.trust lacks "
               "TRUST_CARBON_OWN_ACCOUNT, XEP-0280 §11)");
        return XA_EINVAL;
    }
    /* Chat states, receipts, markers...: nothing of them is stored, so they
     * are skipped before the record checks and the copy (which would make
     * a third of the ingest's checks on xpb-gen traffic for nothing). Only
     * whether a body or a change is there is read: protobuf-c unpacked the
     * event safely (its depth bounded on the wire), and the compact forms
     * expand leaves neither bodies nor extension elements to change. */
    const Xpb__V1__Delay *fwd_delay = NULL;
    const xpb_stanza *st = unwrap_carbon(src, &fwd_delay);
    find_change(st, m);
    if (m->kind == XA_KIND_MESSAGE && !first_body(st)) return XA_SKIP;
    xpb_stanza *outer = NULL;
    int rc = plain_stanza(a, src, owned, &outer, err, errlen);
    if (rc) return rc;
    /* From the checked, plain record (the copy, or src expanded in place). */
    fwd_delay = NULL;
    m->kind = XA_KIND_MESSAGE;
    m->target = NULL;
    st = unwrap_carbon(outer, &fwd_delay);
    find_change(st, m);
    m->body = first_body(st);
    if (m->kind == XA_KIND_MESSAGE && !m->body) return XA_SKIP;
    place(a, st, m);
    if (!m->conversation || !m->conversation[0]) {
        seterr(err, errlen, "message without the peer's address (from/to)");
        return XA_EINVAL;
    }
    pick_stanza_id(st, ev->archive ? ev->archive : m->groupchat ? m->conversation : m->account, m);
    m->origin_id = st->origin_id;
    m->msg_id = st->id;
    m->time_us = message_time(ev, st, fwd_delay);
    m->stanza = st;
    return 0;
}

int xa_extract(xpb_arena *a, const Xpb__V1__Event *ev, xa_msg *m, char *err, size_t errlen)
{
    return extract(a, ev, false, m, err, errlen);
}

int xa_extract_owned(xpb_arena *a, Xpb__V1__Event *ev, xa_msg *m, char *err, size_t errlen)
{
    return extract(a, ev, true, m, err, errlen);
}
