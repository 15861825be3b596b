/* Compact record -> plain record: rewrites every compact form of
 * docs/mapping.md §7 (UUID bytes, JID references, origin_id_is_id, delay
 * stamp_seconds, disco feature_id) into the plain string it stands for, so a
 * backend can read a record without implementing the references. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_stanza.h"

#define N_OF(t) (sizeof(t) / sizeof((t)[0]))
#define TRY(expr)                  \
    do {                           \
        int rc_ = (expr);          \
        if (rc_ != 0) return rc_;  \
    } while (0)

/* Bounds of Delay.stamp_seconds: years 0000..9999 (the record check's). */
#define STAMP_MIN INT64_C(-62167219200)
#define STAMP_MAX INT64_C(253402300799)
#define UUID_CHARS 36
#define STAMP_CHARS 20
/* A reference may name a JID that is itself a reference; a valid record
 * needs at most a few hops (own to/from, then the forwarding stanza's). */
#define MAX_REF_HOPS 8u

/* The stanza being expanded and the one forwarding it (JidRef targets). */
typedef struct scope {
    xpb_stanza *st;
    const struct scope *outer;
} scope;

/* ---- UUIDs (§7.1) ---------------------------------------------------------- */

/* RFC 4122 §3 string form, lowercase, as the writer prints it. */
static void format_uuid(const uint8_t *u, char buf[UUID_CHARS])
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) buf[k++] = '-';
        buf[k++] = hex[u[i] >> 4];
        buf[k++] = hex[u[i] & 15];
    }
}

/* *str from the 16 bytes in *bin; the bytes field is then cleared. */
static int expand_uuid(xpb_arena *a, char **str, protobuf_c_boolean *has, ProtobufCBinaryData *bin)
{
    if (!*has) return 0;
    if (*str != NULL || bin->len != 16 || bin->data == NULL) return XPB_ERECORD;
    char buf[UUID_CHARS];
    format_uuid(bin->data, buf);
    char *s = xpb_arena_strndup(a, buf, sizeof buf);
    if (s == NULL) return XPB_ENOMEM;
    *str = s;
    *has = 0;
    bin->data = NULL;
    bin->len = 0;
    return 0;
}

/* ---- JID references (§7.3) --------------------------------------------------- */

enum { PART_FULL, PART_BARE, PART_DOMAIN };
typedef struct ref_info {
    bool outer, to;
    int part;
} ref_info;
static const ref_info ref_table[] = {
    [XPB__V1__JID_REF__JID_REF_UNSPECIFIED] = {false, false, -1},
    [XPB__V1__JID_REF__JID_REF_TO_BARE] = {false, true, PART_BARE},
    [XPB__V1__JID_REF__JID_REF_FROM_BARE] = {false, false, PART_BARE},
    [XPB__V1__JID_REF__JID_REF_TO_DOMAIN] = {false, true, PART_DOMAIN},
    [XPB__V1__JID_REF__JID_REF_FROM_DOMAIN] = {false, false, PART_DOMAIN},
    [XPB__V1__JID_REF__JID_REF_TO] = {false, true, PART_FULL},
    [XPB__V1__JID_REF__JID_REF_FROM] = {false, false, PART_FULL},
    [XPB__V1__JID_REF__JID_REF_OUTER_TO] = {true, true, PART_FULL},
    [XPB__V1__JID_REF__JID_REF_OUTER_FROM] = {true, false, PART_FULL},
    [XPB__V1__JID_REF__JID_REF_OUTER_TO_BARE] = {true, true, PART_BARE},
    [XPB__V1__JID_REF__JID_REF_OUTER_FROM_BARE] = {true, false, PART_BARE},
};

/* Bare JID: before the first '/'; domain: the bare JID after its '@'
 * (RFC 7622 §3.2). */
static void jid_part(const char *s, size_t n, int part, size_t *off, size_t *len)
{
    const char *slash = memchr(s, '/', n);
    size_t bare = slash ? (size_t)(slash - s) : n;
    const char *at = part == PART_DOMAIN ? memchr(s, '@', bare) : NULL;
    *off = at ? (size_t)(at - s) + 1 : 0;
    *len = part == PART_FULL ? n : bare - *off;
}

static bool ref_jid(const scope *s, int ref, unsigned hops, const char **p, size_t *n);

/* s's to (or from), following a reference when it is one. */
static bool scope_jid(const scope *s, bool to, unsigned hops, const char **p, size_t *n)
{
    const xpb_stanza *st = s->st;
    const char *str = to ? st->to : st->from;
    if (str != NULL) {
        *p = str;
        *n = strlen(str);
        return true;
    }
    if (!(to ? st->has_to_ref : st->has_from_ref)) return false;
    return ref_jid(s, (int)(to ? st->to_ref : st->from_ref), hops + 1, p, n);
}

static bool ref_jid(const scope *s, int ref, unsigned hops, const char **p, size_t *n)
{
    if (ref <= 0 || (size_t)ref >= N_OF(ref_table) || hops > MAX_REF_HOPS) return false;
    const ref_info *r = &ref_table[ref];
    const scope *target = r->outer ? s->outer : s;
    const char *jid;
    size_t len, off;
    if (target == NULL || !scope_jid(target, r->to, hops, &jid, &len)) return false;
    jid_part(jid, len, r->part, &off, n);
    *p = jid + off;
    return true;
}

/* *str from the reference *ref relative to sc; the reference is then cleared.
 * A reference that names no JID (a cycle, a missing target) is XPB_ERECORD,
 * as in the record check. */
static int expand_jid(xpb_arena *a, const scope *sc, char **str, protobuf_c_boolean *has,
                      Xpb__V1__JidRef *ref)
{
    if (!*has) return 0;
    const char *p;
    size_t n;
    if (*str != NULL || !ref_jid(sc, (int)*ref, 0, &p, &n)) return XPB_ERECORD;
    char *s = xpb_arena_strndup(a, p, n);
    if (s == NULL) return XPB_ENOMEM;
    *str = s;
    *has = 0;
    *ref = XPB__V1__JID_REF__JID_REF_UNSPECIFIED;
    return 0;
}

/* ---- Delay stamp (§7.4) ------------------------------------------------------- */

/* Seconds since the epoch as YYYY-MM-DDThh:mm:ssZ (XEP-0082), exactly the
 * writer's text; civil date by H. Hinnant's civil_from_days. */
static void format_stamp(int64_t t, char buf[STAMP_CHARS])
{
    int64_t z = (t >= 0 ? t : t - 86399) / 86400;
    unsigned sod = (unsigned)(t - z * 86400);
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    unsigned y = (unsigned)(yoe + era * 400 + (m <= 2));
    unsigned v[6] = {y, m, d, sod / 3600, sod / 60 % 60, sod % 60};
    static const char sep[] = "--T::Z";
    size_t k = 0;
    for (size_t i = 0; i < 6; i++) {
        for (unsigned w = i == 0 ? 1000 : 10; w > 0; w /= 10) buf[k++] = (char)('0' + v[i] / w % 10);
        buf[k++] = sep[i];
    }
}

/* sc: the stanza Delay.from_ref is relative to (the writer's scope). */
static int expand_delay(xpb_arena *a, const scope *sc, Xpb__V1__Delay *d)
{
    if (d == NULL) return 0;
    if (d->has_stamp_seconds) {
        if (d->stamp != NULL || d->stamp_seconds < STAMP_MIN || d->stamp_seconds > STAMP_MAX)
            return XPB_ERECORD;
        char buf[STAMP_CHARS];
        format_stamp(d->stamp_seconds, buf);
        d->stamp = xpb_arena_strndup(a, buf, sizeof buf);
        if (d->stamp == NULL) return XPB_ENOMEM;
        d->has_stamp_seconds = 0;
        d->stamp_seconds = 0;
    }
    return expand_jid(a, sc, &d->from, &d->has_from_ref, &d->from_ref);
}

/* ---- Disco features (§7.5) ------------------------------------------------------ */

/* feature_id lists every feature in document order, 0 standing for the next
 * `feature` string: the plain form is the one `feature` list in that order. */
static int expand_features(xpb_arena *a, Xpb__V1__DiscoInfo *d)
{
    size_t n = d->n_feature_id;
    if (n == 0) return 0;
    if (d->feature_id == NULL || n > SIZE_MAX / sizeof *d->feature) return XPB_ERECORD;
    char **all = xpb_arena_alloc(a, n * sizeof *all);
    if (all == NULL) return XPB_ENOMEM;
    size_t next = 0;
    for (size_t i = 0; i < n; i++) {
        if (d->feature_id[i] == 0) {
            if (next >= d->n_feature) return XPB_ERECORD;
            all[i] = d->feature[next++];
            continue;
        }
        const char *uri = xpb_ns_uri(d->feature_id[i]);
        if (uri == NULL) return XPB_ERECORD;
        all[i] = xpb_arena_strndup(a, uri, strlen(uri));
        if (all[i] == NULL) return XPB_ENOMEM;
    }
    if (next != d->n_feature) return XPB_ERECORD;
    d->feature = all;
    d->n_feature = n;
    d->feature_id = NULL;
    d->n_feature_id = 0;
    return 0;
}

/* ---- Stanza ---------------------------------------------------------------------- */

/* XEP-0359 §4: origin_id_is_id stands for a copy of the stanza's id (already
 * a string here). false means nothing, so the flag just goes. */
static int expand_origin_id(xpb_arena *a, xpb_stanza *st)
{
    TRY(expand_uuid(a, &st->origin_id, &st->has_origin_id_uuid, &st->origin_id_uuid));
    if (!st->has_origin_id_is_id) return 0;
    if (st->origin_id_is_id) {
        if (st->origin_id != NULL || st->id == NULL) return XPB_ERECORD;
        st->origin_id = xpb_arena_strndup(a, st->id, strlen(st->id));
        if (st->origin_id == NULL) return XPB_ENOMEM;
    }
    st->has_origin_id_is_id = 0;
    st->origin_id_is_id = 0;
    return 0;
}

static int expand_stanza(xpb_arena *a, xpb_stanza *st, const scope *outer);

/* XEP-0297: a forwarded delay resolves like the writer writes it, in the
 * forwarding stanza's scope; the stanza inside has sc as its outer. */
static int expand_forwarded(xpb_arena *a, const scope *sc, Xpb__V1__Forwarded *f)
{
    if (f == NULL) return 0;
    TRY(expand_delay(a, sc, f->delay));
    return f->stanza ? expand_stanza(a, f->stanza, sc) : 0;
}

static int expand_mam(xpb_arena *a, const scope *sc, Xpb__V1__MamResult *m)
{
    if (m == NULL) return 0;
    TRY(expand_uuid(a, &m->queryid, &m->has_queryid_uuid, &m->queryid_uuid));
    TRY(expand_uuid(a, &m->id, &m->has_id_uuid, &m->id_uuid));
    return expand_forwarded(a, sc, m->forwarded);
}

static int expand_children(xpb_arena *a, const scope *sc)
{
    xpb_stanza *st = sc->st;
    if (st->thread != NULL)
        TRY(expand_uuid(a, &st->thread->id, &st->thread->has_id_uuid, &st->thread->id_uuid));
    TRY(expand_uuid(a, &st->receipt_received, &st->has_receipt_received_uuid,
                    &st->receipt_received_uuid));
    TRY(expand_delay(a, sc, st->delay));
    for (size_t i = 0; i < st->n_stanza_id; i++) {
        Xpb__V1__StanzaId *s = st->stanza_id[i];
        TRY(expand_uuid(a, &s->id, &s->has_id_uuid, &s->id_uuid));
        TRY(expand_jid(a, sc, &s->by, &s->has_by_ref, &s->by_ref));
    }
    TRY(expand_origin_id(a, st));
    if (st->disco_info != NULL) TRY(expand_features(a, st->disco_info));
    if (st->carbon != NULL) TRY(expand_forwarded(a, sc, st->carbon->forwarded));
    return expand_mam(a, sc, st->mam_result);
}

/* Top down: the stanza's own id/from/to first, so the references below
 * (delay, stanza-id, forwarded stanzas) meet plain strings. Each step keeps
 * the XML the record writes unchanged. */
static int expand_stanza(xpb_arena *a, xpb_stanza *st, const scope *outer)
{
    scope mine = {st, outer};
    TRY(expand_uuid(a, &st->id, &st->has_id_uuid, &st->id_uuid));
    TRY(expand_jid(a, &mine, &st->from, &st->has_from_ref, &st->from_ref));
    TRY(expand_jid(a, &mine, &st->to, &st->has_to_ref, &st->to_ref));
    return expand_children(a, &mine);
}

int xpb_stanza_expand(xpb_arena *a, xpb_stanza *st)
{
    if (a == NULL || st == NULL) return XPB_EINVAL;
    return expand_stanza(a, st, NULL);
}

int xpb_stanza_from_xml_plain(xpb_arena *a, const xpb_node *el, xpb_stanza **out)
{
    if (out == NULL) return XPB_EINVAL;
    xpb_stanza *st = NULL;
    int rc = xpb_stanza_from_xml(a, el, &st);
    if (rc == 0) rc = xpb_stanza_expand(a, st);
    *out = rc == 0 ? st : NULL;
    return rc;
}
