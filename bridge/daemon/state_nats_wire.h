/* The values the NATS state back end keeps in KV (docs/scaling.md,
 * "XEP-0198 state and sends in NATS KV"). Pure: no libnats, so the unit
 * tests link it alone.
 *   xpb_sm     key <account-token>:      "XPBSM1 h_in h_out saved_us id_len loc_len jid_len\n"
 *                                        then id, location, jid (no separators)
 *   xpb_outbox key <account-token>.<id>: "XPBOB1 sid_len rid_len\n" then the stanza id,
 *                                        the request id and the packed stanza record */
#ifndef XPB_STATE_NATS_WIRE_H
#define XPB_STATE_NATS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "xpb_xml.h" /* xpb_buf */
#include "xpb_store.h"

#define XPB_NATS_SM_BUCKET "xpb_sm"         /* KV: account token -> XEP-0198 state */
#define XPB_NATS_OUTBOX_BUCKET "xpb_outbox" /* KV: <token>.<id> -> an unacknowledged send */

/* 0, or XPB_ENOMEM. */
int state_nats_sm_encode(xpb_buf *out, const xpb_sm_state *st);
/* 0, or XPB_EINVAL (not a value sm_encode makes, or a field too long). */
int state_nats_sm_decode(const uint8_t *v, size_t len, xpb_sm_state *st);
int state_nats_outbox_encode(xpb_buf *out, const xpb_outbox_item *it);
/* Fills it's stanza_id, request_id (NULL when empty), xml, xml_len (pointing
 * into v and into the two buffers given); 0 or XPB_EINVAL. */
int state_nats_outbox_decode(const uint8_t *v, size_t len, xpb_outbox_item *it, char *sid,
                             size_t sidlen, char *rid, size_t ridlen);
/* "<token>.<id>" (length as snprintf). */
size_t state_nats_outbox_key(const char *token, uint64_t id, char *out, size_t outlen);
/* The token and id of such a key: 0, or XPB_EINVAL. */
int state_nats_outbox_key_parse(const char *key, char *token, size_t toklen, uint64_t *id);

#endif
