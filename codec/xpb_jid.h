/* JIDs (RFC 7622): parse, validate, normalise; bare/full helpers.
 * Localpart: PRECIS IdentifierClass / UsernameCaseMapped (RFC 8265 §3.3);
 * domainpart: IDNA2008 via libidn2, lowercased, trailing dot removed;
 * resourcepart: PRECIS FreeformClass / OpaqueString (RFC 8265 §4.2).
 * Unicode work (NFC, case folding, width mapping) is done by utf8proc. */
#ifndef XPB_JID_H
#define XPB_JID_H

#include <stddef.h>

#define XPB_JID_PART_MAX 1023 /* RFC 7622 §3.2-3.4: each part 1..1023 bytes */

typedef struct xpb_jid {
    char *local;    /* NULL when absent */
    char *domain;   /* never NULL in a parsed JID */
    char *resource; /* NULL when absent */
} xpb_jid;

/* Parse and normalise s[0..len). On success fills *out (free with
 * xpb_jid_clear). On failure returns XPB_EJID* and, if errbuf is not NULL,
 * writes a sentence naming the part and rule (e.g. "localpart contains
 * forbidden character '@' at byte 3"). */
int xpb_jid_parse(xpb_jid *out, const char *s, size_t len, char *errbuf, size_t errlen);
void xpb_jid_clear(xpb_jid *j);

/* Validate only (same rules as parse); 0 or XPB_EJID*. */
int xpb_jid_validate(const char *s, size_t len, char *errbuf, size_t errlen);

/* Format into a malloc'd NUL-terminated string: full (local@domain/resource)
 * or bare (local@domain). NULL on ENOMEM. Caller frees. */
char *xpb_jid_full(const xpb_jid *j);
char *xpb_jid_bare(const xpb_jid *j);

/* Normalise a JID string into a malloc'd string (caller frees). */
int xpb_jid_normalize(const char *s, size_t len, char **out, char *errbuf, size_t errlen);

/* 1 when both parse and their normalised full forms are equal, 0 otherwise. */
int xpb_jid_equal(const char *a, const char *b);

#endif
