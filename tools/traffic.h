/* A deterministic, seeded generator of realistic XMPP client traffic, for the
 * round-trip tests, xpb-gen and the benchmarks. Same seed, same stanzas, on
 * every platform (xoshiro256** seeded by splitmix64; no libc rand, no globals).
 *
 * The mix, per 1000 stanzas (xpb_traffic_weight() returns these numbers):
 *   chat          30.0 %  one-to-one chat (RFC 6121 §5): body from a word list,
 *                         XEP-0085 active, XEP-0184 request, XEP-0359 origin-id,
 *                         often a server stanza-id, sometimes a thread; 8 % carry
 *                         XEP-0203 delay (offline storage), 8 % are wrapped in
 *                         XEP-0280 carbons (received/sent)
 *   chatstate     12.0 %  standalone XEP-0085 composing/paused/inactive/gone
 *   receipt        8.0 %  XEP-0184 <received id=''/>
 *   groupchat     15.0 %  XEP-0045 groupchat messages with stanza-id, some history
 *                         (delay) and subject changes
 *   presence      10.0 %  RFC 6121 §4 presence with show/status/priority and
 *                         XEP-0115 caps; some unavailable
 *   muc-presence   6.0 %  XEP-0045 joins (<x muc><history/>) and occupant
 *                         presence with muc#user items and status codes
 *   roster-push    2.0 %  RFC 6121 §2.1.6 roster pushes (ver, groups)
 *   ping           5.0 %  XEP-0199 ping and its empty result
 *   disco          4.0 %  XEP-0030 info/items queries and results, with XEP-0128
 *                         data forms
 *   version        2.0 %  XEP-0092 software version query and result
 *   mam            4.0 %  XEP-0313 archive results (forwarded + delay)
 *   error          2.0 %  RFC 6120 §8.3 stanza errors on iq and message
 *
 * Bodies: 70 % one to eight words, 25 % nine to thirty, 5 % up to 120; about
 * one word in twelve is non-ASCII. Ids look like real clients' (uuid-ish or
 * short base-36). JIDs come from a fixed pool of users, domains and resources,
 * all valid under RFC 7622. */
#ifndef XPB_TRAFFIC_H
#define XPB_TRAFFIC_H

#include <stddef.h>
#include <stdint.h>
#include "xpb_xml.h"

typedef struct xpb_traffic xpb_traffic;

/* NULL on ENOMEM. Free with xpb_traffic_free. */
xpb_traffic *xpb_traffic_new(uint64_t seed);
void xpb_traffic_free(xpb_traffic *t);

/* Appends one standalone stanza (carrying xmlns='jabber:client') to out and
 * returns its kind label (a static string from the fixed list below). Returns
 * NULL when out cannot grow (ENOMEM or out->max); out is then left unchanged. */
const char *xpb_traffic_next(xpb_traffic *t, xpb_buf *out);

/* The fixed list of kind labels and their weights (per 1000), in list order. */
size_t xpb_traffic_kind_count(void);
/* NULL when i >= xpb_traffic_kind_count(). */
const char *xpb_traffic_kind_label(size_t i);
/* 0 when i >= xpb_traffic_kind_count(). */
unsigned xpb_traffic_kind_weight(size_t i);

#endif
