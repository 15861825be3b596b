/* The inbound trust rules: each stanza the server sends is checked against the
 * rule that governs it (carbons, roster pushes, MAM results, iq responses, MUC
 * self-presence, the `to` address) before a backend is told it is genuine, and
 * the iq requests a client must answer are answered here. Pure: no I/O, no
 * event loop; what the daemon knows arrives through xpb_trust_ctx. */
#ifndef XPB_TRUST_H
#define XPB_TRUST_H

#include <stddef.h>
#include <stdint.h>

#include "xpb_arena.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"

/* Event.trust bits (proto/xpb/v1/bus.proto enum Trust, docs/bus.md). */
enum {
    XPB_TRUST_TO_ACCOUNT = 1u << 0,          /* `to` absent, our bare or our full JID */
    XPB_TRUST_CARBON_OWN_ACCOUNT = 1u << 1,  /* carbon wrapper from our bare JID (XEP-0280 §11) */
    XPB_TRUST_ROSTER_PUSH_OWN = 1u << 2,     /* roster push from our account (RFC 6121 §2.1.6) */
    XPB_TRUST_MAM_RESULT_OURS = 1u << 3,     /* our queryid, from the archive asked (XEP-0313) */
    XPB_TRUST_IQ_RESPONSE_MATCHED = 1u << 4, /* id and JID of an iq we sent (RFC 6120 §8.2.3) */
    XPB_TRUST_MUC_ROOM_JOINED = 1u << 5,     /* from a room we joined or are joining */
};

/* Why a stanza was dropped, answered or marked; one /metrics counter each. */
typedef enum xpb_trust_reason {
    XPB_TR_NONE = 0,               /* published as it is */
    XPB_TR_TO_NOT_ACCOUNT,         /* dropped: `to` is another JID (RFC 6120 §8.1.1) */
    XPB_TR_CARBON_FOREIGN,         /* dropped: carbon not from our bare JID (XEP-0280 §11) */
    XPB_TR_ROSTER_PUSH_FOREIGN,    /* dropped: roster push from another JID (RFC 6121 §2.1.6) */
    XPB_TR_MAM_NOT_OURS,           /* dropped: MAM result for no query of ours (XEP-0313 §5) */
    XPB_TR_MAM_WRONG_ARCHIVE,      /* dropped: our queryid, but not from the archive asked */
    XPB_TR_IQ_RESPONSE_WRONG_PEER, /* dropped: id of a pending iq, from another JID (§8.2.3) */
    XPB_TR_IQ_RESPONSE_UNMATCHED,  /* marked: a result/error for no iq pending */
    XPB_TR_MUC_SELF_NOT_JOINED,    /* marked: status 110 from a room we never joined */
    XPB_TR_IQ_NO_ID,               /* dropped: iq without id (RFC 6120 §8.1.3) */
    XPB_TR_IQ_BAD_PAYLOAD,         /* answered bad-request: get/set without one child (§8.2.3) */
    XPB_TR_IQ_PING,                /* answered: XEP-0199 §4 pong */
    XPB_TR_IQ_DISCO_INFO,          /* answered: XEP-0030 §3.1 identity and features */
    XPB_TR_IQ_DISCO_NODE,          /* answered item-not-found: a node we do not have */
    XPB_TR_IQ_VERSION,             /* answered: XEP-0092 (iq.answer_version) */
    XPB_TR_IQ_UNHANDLED,           /* answered service-unavailable (RFC 6120 §8.4) */
    XPB_TR_ROSTER_PUSH_ACK,        /* answered result and published (RFC 6121 §2.1.6) */
    XPB_TR_COUNT
} xpb_trust_reason;

typedef enum xpb_trust_answer {
    XPB_ANSWER_NONE = 0,
    XPB_ANSWER_RESULT, /* empty iq result (ping, roster push) */
    XPB_ANSWER_DISCO_INFO,
    XPB_ANSWER_VERSION,
    XPB_ANSWER_SERVICE_UNAVAILABLE, /* cancel, <service-unavailable/> */
    XPB_ANSWER_ITEM_NOT_FOUND,      /* cancel, <item-not-found/> */
    XPB_ANSWER_BAD_REQUEST,         /* modify, <bad-request/> */
} xpb_trust_answer;

/* What the daemon knows about one account. Callbacks may be NULL (= nothing
 * of that kind is pending / joined). */
typedef struct xpb_trust_ctx {
    const char *bare; /* the account's bare JID */
    const char *full; /* the bound full JID, or NULL before bind */
    /* The n-th (0, 1, ...) pending iq of this account with this id: 1 and
     * *peer (NULL = sent without 'to', to our own account), or 0 when there
     * are no more. */
    int (*iq_pending)(void *ud, const char *id, size_t n, const char **peer);
    /* A MAM query of ours still open with this queryid ("" = sent without
     * one): 1 and *archive (NULL = our own archive), or 0. */
    int (*mam_query)(void *ud, const char *queryid, const char **archive);
    /* 1 when room (a bare JID) is one we joined or are joining. */
    int (*room_joined)(void *ud, const char *room);
    void *ud;
    /* iq get/set namespaces a backend answers (config iq.passthrough). */
    const char *const *passthrough;
    size_t n_passthrough;
    int answer_version;  /* config iq.answer_version */
    const char *version; /* our software version (XEP-0092) */
} xpb_trust_ctx;

typedef struct xpb_trust_verdict {
    int publish;             /* 1: publish with `trust` */
    uint32_t trust;          /* XPB_TRUST_* bits */
    xpb_trust_answer answer; /* sent back to the iq's sender first */
    xpb_trust_reason reason;
    long iq_match;   /* pending iq matched: the n given to iq_pending; -1 none */
    int muc_created; /* self-presence with 201 from a joined room: configure it */
} xpb_trust_verdict;

/* Classify the stanza el. why (may be NULL) gets one sentence naming the rule
 * for a drop or answer, e.g. "dropped carbon: outer from eve@x is not our
 * bare JID (XEP-0280 §11)"; "" when published as it is. */
void xpb_trust_classify(const xpb_trust_ctx *ctx, const xpb_node *el, xpb_trust_verdict *v,
                        char *why, size_t whylen);

/* RFC 6120 §8.2.3 / §10.1: a response comes from the entity the request went
 * to; peer NULL (request without 'to') means our account, which its server
 * answers for (no from, our bare JID, our domain or our full JID). */
int xpb_trust_peer_matches(const xpb_trust_ctx *ctx, const char *peer, const char *from);

/* The answer v->answer to the iq el as a record in arena (NULL when none or
 * out of memory). The session fills `from`. */
xpb_stanza *xpb_trust_build_answer(xpb_arena *arena, const xpb_trust_ctx *ctx, const xpb_node *el,
                                   const xpb_trust_verdict *v);

/* An iq record about to be sent: 1 when it is a MAM query (XEP-0313 §4:
 * <query xmlns='urn:xmpp:mam:2'> of type set), with *queryid its queryid ("" when
 * it has none; points into st); 0 otherwise. */
int xpb_trust_mam_queryid(const xpb_stanza *st, const char **queryid);

/* Features the bridge's disco#info lists (besides iq.passthrough ones). */
extern const char *const xpb_trust_features[];

/* "carbon_foreign" ...; the action: "published", "dropped", "answered", "marked". */
const char *xpb_trust_reason_name(xpb_trust_reason r);
const char *xpb_trust_reason_action(xpb_trust_reason r);

#endif
