/* Catch-up from a server's archive (docs/durability.md, "Catch-up"): the pure
 * parts of XEP-0313 (MAM v2) paged with XEP-0059 (RSM): the query iq, its
 * <fin/>, a result's forwarded message, a message's stanza-id (XEP-0359),
 * the marker kept in the store, and the set of stanza-ids published but not
 * yet recorded. No I/O, no event loop, no store. */
#ifndef XPB_MAM_H
#define XPB_MAM_H

#include <stddef.h>
#include <stdint.h>

#include "xpb_arena.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"

#define XPB_MAM_NS "urn:xmpp:mam:2"
#define XPB_MAM_RSM_NS "http://jabber.org/protocol/rsm"
#define XPB_MAM_SID_NS "urn:xmpp:sid:0"
#define XPB_MAM_ID_MAX 256   /* bytes of an archive id we keep; a longer one is refused */
#define XPB_MAM_STAMP_LEN 20 /* XEP-0082 "YYYY-MM-DDThh:mm:ssZ" */

typedef struct xpb_mam_query {
    const char *id;      /* the iq id */
    const char *to;      /* the archive: NULL for our own (XEP-0313 §4: no 'to') or a room */
    const char *queryid; /* XEP-0313 §4.1: echoed in every <result/> */
    unsigned max;        /* RSM <max/> (XEP-0059 §2.1): results per page */
    const char *after;   /* RSM <after/>: page forward from this archive id; NULL: none */
    const char *start;   /* form field start (XEP-0313 §4.1.1), a XEP-0082 stamp; NULL */
    int last_page;       /* RSM <before/> (XEP-0059 §2.5): the newest page */
} xpb_mam_query;

/* The query as an iq set record in arena a: <query xmlns='urn:xmpp:mam:2'
 * queryid=...><x xmlns='jabber:x:data' type='submit'> with FORM_TYPE (and
 * start) </x><set xmlns=rsm><max/>(<after/>|<before/>)</set></query>.
 * XPB_EINVAL without id or queryid, XPB_ENOMEM. */
int xpb_mam_build_query(xpb_arena *a, const xpb_mam_query *q, xpb_stanza **out);

/* What a query's response said (XEP-0313 §4.3, XEP-0059 §2.2). */
typedef struct xpb_mam_fin {
    int is_error;               /* an iq error: condition names why */
    char condition[48];         /* "item-not-found", "forbidden" ... ("" when not an error) */
    int complete;               /* <fin complete='true'/>: no more pages */
    char first[XPB_MAM_ID_MAX]; /* RSM <first/>, "" when the page is empty */
    char last[XPB_MAM_ID_MAX];  /* RSM <last/>: ask <after/> it next; "" when empty */
    long count;                 /* RSM <count/>, -1 when absent */
} xpb_mam_fin;

/* Reads the response iq el (type result with <fin/>, or type error).
 * XPB_EINVAL when it is neither, or an id is longer than XPB_MAM_ID_MAX. */
int xpb_mam_parse_fin(const xpb_node *iq, xpb_mam_fin *fin);

/* A <result xmlns='urn:xmpp:mam:2'/> of message el: *queryid and *id (NULL when
 * absent), *delay (the forwarded <delay/>, or NULL) and the forwarded
 * <message/>; NULL when el carries no result with a forwarded message. */
const xpb_node *xpb_mam_result(const xpb_node *el, const char **queryid, const char **id,
                               const xpb_node **delay);

/* The id of the <stanza-id xmlns='urn:xmpp:sid:0'/> of msg whose by is the
 * archive (XEP-0359 §5: only the archive's own stanza-id can be trusted: the
 * server strips forged ones with its by); NULL when there is none. */
const char *xpb_mam_stanza_id(const xpb_node *msg, const char *archive);

/* The marker kept per archive in the store: "STAMP ID", STAMP the XEP-0082
 * time of the newest event kept (the time-based fallback when the archive no
 * longer knows ID), ID the archive's stanza-id ("" when the archive was empty
 * on the first run: the next run asks for everything from STAMP on). A marker
 * written by hand as a bare ID is read with an empty stamp. */
typedef struct xpb_mam_marker {
    char stamp[XPB_MAM_STAMP_LEN + 1];
    char id[XPB_MAM_ID_MAX];
} xpb_mam_marker;
int xpb_mam_marker_parse(const char *text, xpb_mam_marker *m); /* XPB_EINVAL: too long */
int xpb_mam_marker_format(const xpb_mam_marker *m, char *out, size_t len);
/* unix seconds as a XEP-0082 stamp; and back, fractions of a second ignored (-1 when
 * stamp is not YYYY-MM-DDThh:mm:ss[.fff]Z). */
void xpb_mam_stamp(int64_t unix_s, char out[XPB_MAM_STAMP_LEN + 1]);
int64_t xpb_mam_stamp_parse(const char *stamp);

/* Stanza-ids published whose "seen" row is not yet written (it is written
 * after the events are in the journal): a bounded set, searched before the
 * store so that an id published a moment ago is a duplicate too. */
#define XPB_MAM_PENDING_MAX 512u
typedef struct xpb_mam_pending_ent {
    char *account, *archive, *stanza_id; /* stanza_id NULL: a marker only */
    char *marker;                        /* the archive's new marker, or NULL */
    char *stream; /* with the marker: the XEP-0198 stream caught up in, or NULL */
} xpb_mam_pending_ent;
typedef struct xpb_mam_pending {
    xpb_mam_pending_ent ent[XPB_MAM_PENDING_MAX];
    size_t n;
} xpb_mam_pending;
/* 1 when (account, archive, stanza_id) is in the set. */
int xpb_mam_pending_has(const xpb_mam_pending *p, const char *account, const char *archive,
                        const char *stanza_id);
/* Adds an id (may be NULL) and/or the archive's new marker (may be NULL; it
 * replaces an earlier one of the same archive) with its stream (NULL: the
 * archive was not caught up when it was written). XPB_ETOOBIG when full
 * (write the set to the store first), XPB_ENOMEM. */
int xpb_mam_pending_add(xpb_mam_pending *p, const char *account, const char *archive,
                        const char *stanza_id, const char *marker, const char *stream);
void xpb_mam_pending_clear(xpb_mam_pending *p);

#endif
