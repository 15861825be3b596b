/* Compact record -> plain record: rewrites every compact form of
 * docs/mapping.md §7 (UUID bytes, JID references, origin_id_is_id, delay
 * stamp_seconds, disco feature_id) into the plain string it stands for, so a
 * backend can read a record without implementing the references. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "stanza_internal.h"
#include "xpb_error.h"
#include "xpb_stanza.h"

/* A reference may name a JID that is itself a reference; a valid record
 * needs at most a few hops (own to/from, then the forwarding stanza's). */
#define MAX_REF_HOPS 8u

/* ---- UUIDs (§7.1) ---------------------------------------------------------- */

/* *str from the 16 bytes in *bin; the bytes field is then cleared. */
static int expand_uuid(xpb_arena *a, char **str, protobuf_c_boolean *has, ProtobufCBinaryData *bin)
{
    if (!*has) return 0;
    if (*str != NULL || bin->len != 16 || bin->data == NULL) return XPB_ERECORD;
    char buf[XPB_UUID_CHARS];
    xpb_uuid_format(bin->data, buf);
    char *s = xpb_arena_strndup(a, buf, sizeof buf);
    if (s == NULL) return XPB_ENOMEM;
    *str = s;
    *has = 0;
    bin->data = NULL;
    bin->len = 0;
    return 0;
}

/* ---- JID references (§7.3) --------------------------------------------------- */

/* *str from the reference *ref relative to sc; the reference is then cleared.
 * A reference that names no JID (a cycle, a missing target) is XPB_ERECORD,
 * as in the record check. */
static int expand_jid(xpb_arena *a, const xpb_scope *sc, char **str, protobuf_c_boolean *has,
                      Xpb__V1__JidRef *ref)
{
    if (!*has) return 0;
    const char *p;
    size_t n;
    if (*str != NULL || !xpb_ref_resolve(sc, (int)*ref, MAX_REF_HOPS, &p, &n))
        return XPB_ERECORD;
    char *s = xpb_arena_strndup(a, p, n);
    if (s == NULL) return XPB_ENOMEM;
    *str = s;
    *has = 0;
    *ref = XPB__V1__JID_REF__JID_REF_UNSPECIFIED;
    return 0;
}

/* ---- Delay stamp (§7.4) ------------------------------------------------------- */

/* sc: the stanza Delay.from_ref is relative to (the writer's scope). */
static int expand_delay(xpb_arena *a, const xpb_scope *sc, Xpb__V1__Delay *d)
{
    if (d == NULL) return 0;
    if (d->has_stamp_seconds) {
        if (d->stamp != NULL || d->stamp_seconds < XPB_STAMP_MIN ||
            d->stamp_seconds > XPB_STAMP_MAX)
            return XPB_ERECORD;
        char buf[XPB_STAMP_CHARS];
        xpb_stamp_format(d->stamp_seconds, buf);
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

static int expand_stanza(xpb_arena *a, xpb_stanza *st, const xpb_scope *outer);

/* XEP-0297: a forwarded delay resolves like the writer writes it, in the
 * forwarding stanza's scope; the stanza inside has sc as its outer. */
static int expand_forwarded(xpb_arena *a, const xpb_scope *sc, Xpb__V1__Forwarded *f)
{
    if (f == NULL) return 0;
    TRY(expand_delay(a, sc, f->delay));
    return f->stanza ? expand_stanza(a, f->stanza, sc) : 0;
}

static int expand_mam(xpb_arena *a, const xpb_scope *sc, Xpb__V1__MamResult *m)
{
    if (m == NULL) return 0;
    TRY(expand_uuid(a, &m->queryid, &m->has_queryid_uuid, &m->queryid_uuid));
    TRY(expand_uuid(a, &m->id, &m->has_id_uuid, &m->id_uuid));
    return expand_forwarded(a, sc, m->forwarded);
}

/* sc: st's scope (sc->st == st, which the scope only sees as const). */
static int expand_children(xpb_arena *a, xpb_stanza *st, const xpb_scope *sc)
{
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
static int expand_stanza(xpb_arena *a, xpb_stanza *st, const xpb_scope *outer)
{
    xpb_scope mine = {st, outer};
    TRY(expand_uuid(a, &st->id, &st->has_id_uuid, &st->id_uuid));
    TRY(expand_jid(a, &mine, &st->from, &st->has_from_ref, &st->from_ref));
    TRY(expand_jid(a, &mine, &st->to, &st->has_to_ref, &st->to_ref));
    return expand_children(a, st, &mine);
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
