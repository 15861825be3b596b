/* Internal to codec/ (not installed, included only by the codec sources): what the
 * stanza reader, writer, expander and record check share, so each rule of
 * docs/mapping.md lives in one place: field numbers, one XML value table per
 * enum (both directions), and the compact forms of §7 (UUIDs, stamps, JidRef). */
#ifndef XPB_STANZA_INTERNAL_H
#define XPB_STANZA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "xpb_stanza.h"

#if defined(__GNUC__)
#define XPB_INTERNAL __attribute__((visibility("hidden")))
#else
#define XPB_INTERNAL
#endif

#define N_OF(t) (sizeof(t) / sizeof((t)[0]))
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != 0) return rc_;                                                                  \
    } while (0)

/* Field numbers of stanza.proto's Stanza children; canonical order is
 * ascending (mapping §4). */
enum {
    F_BODY = 10, F_SUBJECT = 11, F_THREAD = 12, F_SHOW = 13, F_STATUS = 14, F_PRIORITY = 15,
    F_ERROR = 16, F_ROSTER = 17, F_CHAT_STATE = 20, F_RECEIPT_REQUEST = 21,
    F_RECEIPT_RECEIVED = 22, F_DELAY = 23, F_STANZA_ID = 24, F_ORIGIN_ID = 25, F_PING = 26,
    F_MUC = 27, F_MUC_USER = 28, F_CARBON = 29, F_DISCO_INFO = 30, F_DISCO_ITEMS = 31,
    F_CAPS = 32, F_MAM_RESULT = 33, F_EXTENSION = 50, F_MAX = 50,
};

/* ---- XML spellings of enum values (stanza.proto) ------------------------- */

/* name[v] is the XML spelling of enum value v; name[0] (UNSPECIFIED) is NULL. */
typedef struct xpb_names {
    const char *const *name;
    size_t n;
} xpb_names;

extern XPB_INTERNAL const xpb_names xpb_kind_names, xpb_type_names, xpb_show_names,
    xpb_error_type_names, xpb_condition_names, xpb_chat_state_names, xpb_subscription_names,
    xpb_direction_names, xpb_affiliation_names, xpb_role_names, xpb_hash_names;

/* strcmp(a, b) == 0 with the first bytes compared inline: names met while
 * mapping mostly differ there, and the call is what costs. The reader points
 * common names at literals (reader.c common_name), which the linker merges
 * with ours, so a match is often the same pointer. */
static inline bool xpb_streq(const char *a, const char *b)
{
    return a == b || (a[0] == b[0] && strcmp(a, b) == 0);
}

/* The enum value spelled s (exact, case-sensitive), or 0. */
static inline int xpb_names_find(const xpb_names *t, const char *s)
{
    for (size_t i = 1; i < t->n; i++)
        if (xpb_streq(t->name[i], s)) return (int)i;
    return 0;
}

/* The spelling of v, or NULL when v has none (0 or out of range). */
static inline const char *xpb_names_get(const xpb_names *t, int v)
{
    return v > 0 && (size_t)v < t->n ? t->name[v] : NULL;
}

/* RFC 6120 §8.3.3.5, §8.3.3.14: only gone and redirect carry text (a URI). */
static inline bool xpb_condition_has_uri(int cond)
{
    return cond == XPB__V1__ERROR_CONDITION__CONDITION_GONE ||
           cond == XPB__V1__ERROR_CONDITION__CONDITION_REDIRECT;
}

/* The stanza attributes with typed fields (RFC 6120 §8.1): unqualified type,
 * id, from, to, and xml:lang. uri NULL or "" is no namespace. */
static inline bool xpb_is_typed_stanza_attr(const char *uri, const char *name)
{
    if (uri == NULL || uri[0] == '\0')
        return xpb_streq(name, "type") || xpb_streq(name, "id") || xpb_streq(name, "from") ||
               xpb_streq(name, "to");
    return xpb_streq(uri, XPB_NS_XML) && xpb_streq(name, "lang");
}

/* ---- UUIDs (mapping §7.1, RFC 4122 §3) ------------------------------------ */

#define XPB_UUID_CHARS 36

/* s[0..len) as 16 bytes when it is exactly 8-4-4-4-12 lowercase hex. */
XPB_INTERNAL bool xpb_uuid_parse(const char *s, size_t len, uint8_t out[16]);
/* 16 bytes as that string form, lowercase, into buf (no NUL). */
XPB_INTERNAL void xpb_uuid_format(const uint8_t *u, char buf[XPB_UUID_CHARS]);

/* ---- Delay stamps (mapping §7.4, XEP-0082) --------------------------------- */

#define XPB_STAMP_CHARS 20
/* Seconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z. */
#define XPB_STAMP_MIN INT64_C(-62167219200)
#define XPB_STAMP_MAX INT64_C(253402300799)

/* s[0..len) of exactly the form YYYY-MM-DDThh:mm:ssZ (a real date, no leap
 * second) as seconds since the epoch. */
XPB_INTERNAL bool xpb_stamp_parse(const char *s, size_t len, int64_t *out);
/* t (within XPB_STAMP_MIN..MAX) in that form into buf (no NUL). */
XPB_INTERNAL void xpb_stamp_format(int64_t t, char buf[XPB_STAMP_CHARS]);

/* ---- JID references (mapping §7.3) ------------------------------------------ */

enum { XPB_PART_FULL, XPB_PART_BARE, XPB_PART_DOMAIN };

/* What a JidRef names: the forwarding stanza's (outer) or this stanza's
 * to (or from), and which part of it. */
typedef struct xpb_ref_info {
    bool outer, to;
    int part;
} xpb_ref_info;

#define XPB_REF_N (XPB__V1__JID_REF__JID_REF_OUTER_FROM_BARE + 1)
extern XPB_INTERNAL const xpb_ref_info xpb_ref_table[XPB_REF_N];

/* The stanza at hand and the one forwarding it (XEP-0297): what references
 * are relative to, in the writer, the expander and the record check. */
typedef struct xpb_scope {
    const xpb_stanza *st;
    const struct xpb_scope *outer;
} xpb_scope;

/* Part of JID s[0..n) at s[*off..*off+*len): the bare JID is everything before
 * the first '/', the domain the bare JID after its '@' (RFC 7622 §3.2:
 * neither localpart nor domainpart holds '/', a localpart holds no '@'). */
static inline void xpb_jid_part(const char *s, size_t n, int part, size_t *off, size_t *len)
{
    const char *slash = memchr(s, '/', n);
    size_t bare = slash ? (size_t)(slash - s) : n;
    const char *at = part == XPB_PART_DOMAIN ? memchr(s, '@', bare) : NULL;
    *off = at ? (size_t)(at - s) + 1 : 0;
    *len = part == XPB_PART_FULL ? n : bare - *off;
}

/* The JID that reference ref names relative to s, as p[0..n) (pointing into
 * the record). A referenced to/from that is itself a reference is followed,
 * at most max_hops times, so a cycle ends. false when it names nothing. */
XPB_INTERNAL bool xpb_ref_resolve(const xpb_scope *s, int ref, unsigned max_hops, const char **p,
                                  size_t *n);

#endif
