/* What the bridges and their clients agree on over NATS (docs/bus.md,
 * "NATS JetStream"): the account token and the subjects. Pure: no libnats.
 * The daemon's NATS back end and xpbctl both link it (xpbbuswire). */
#ifndef XPB_BUS_NATS_WIRE_H
#define XPB_BUS_NATS_WIRE_H

#include <stddef.h>

#define XPB_NATS_STREAM "XPB_EVENTS"       /* the events stream */
#define XPB_NATS_EVENT_PREFIX "xpb.ev."    /* xpb.ev.<kind>.<account-token> */
#define XPB_NATS_REQUEST_PREFIX "xpb.req." /* xpb.req.<account-token> */
#define XPB_NATS_CTL_ALL "xpb.ctl.all"     /* every bridge answers (scatter-gather) */
#define XPB_NATS_CTL_ANY "xpb.ctl.any"     /* one bridge answers (queue group) */
#define XPB_NATS_QUEUE "xpb"               /* the bridges' queue group */
#define XPB_NATS_OWNERS_BUCKET "xpb_owners" /* KV: account token -> owning bridge */
#define XPB_NATS_BRIDGES_BUCKET "xpb_bridges" /* KV: bridge id -> alive */
/* Headers of every events message: the seqs of its EventBatch. */
#define XPB_NATS_HDR_FIRST "Xpb-First-Seq"
#define XPB_NATS_HDR_LAST "Xpb-Last-Seq"

/* The account token: a reversible encoding of a bare JID that is one NATS
 * subject token and one KV key: A-Z a-z 0-9 '-' stay, every other byte
 * becomes '_' and two upper-case hex digits ("alice@example.com" ->
 * "alice_40example_2Ecom"). Writes the token (NUL-terminated when it fits)
 * and returns its length (like snprintf: >= outlen means truncated). */
size_t xpb_nats_account_token(const char *jid, char *out, size_t outlen);
/* The inverse: 0 with the JID in out, or XPB_EINVAL (not a token this
 * encoding makes: another byte, lower-case or missing hex, an escape of a
 * byte that needs none) or XPB_ETOOBIG. */
int xpb_nats_account_untoken(const char *token, char *out, size_t outlen);

/* "xpb.ev.<kind>.<token>", "xpb.req.<token>". Length as snprintf; kind "*"
 * or account NULL give the wildcard "*" in that place. */
size_t xpb_nats_event_subject(const char *kind, const char *account, char *out, size_t outlen);
size_t xpb_nats_request_subject(const char *account, char *out, size_t outlen);

#endif
