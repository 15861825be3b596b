/* The values the NATS state back end keeps in KV (docs/scaling.md,
 * "XEP-0198 state and sends in NATS KV"). Pure: no libnats, so the unit
 * tests link it alone.
 *   xpb_sm     key <account-token>:      "XPBSM1 h_in h_out saved_us id_len loc_len jid_len\n"
 *                                        then id, location, jid (no separators)
 *   xpb_outbox key <account-token>.<id>: "XPBOB1 sid_len rid_len\n" then the stanza id,
 *                                        the request id and the packed stanza record
 *   xpb_marks  key <account-token>.<archive-token>: "XPBMK1 marker_len n\n" then the
 *                                        marker text, then n stanza-ids, each as
 *                                        "<len>:" and its bytes (oldest first); or
 *                                        "XPBMK2 marker_len stream_len n\n" with the
 *                                        stream id after the marker text (a marker
 *                                        written while caught up, catchup.c) */
#ifndef XPB_STATE_NATS_WIRE_H
#define XPB_STATE_NATS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "xpb_xml.h" /* xpb_buf */
#include "xpb_store.h"

#define XPB_NATS_SM_BUCKET "xpb_sm"         /* KV: account token -> XEP-0198 state */
#define XPB_NATS_OUTBOX_BUCKET "xpb_outbox" /* KV: <token>.<id> -> an unacknowledged send */
#define XPB_NATS_MARKS_BUCKET "xpb_marks"   /* KV: <token>.<archive token> -> marks */
/* Stanza-ids (XEP-0359) kept per archive in xpb_marks, the newest: enough
 * for what a server delivers again after a stream that could not be resumed
 * (its unacknowledged stanzas) and for live messages published while a
 * catch-up run was not yet caught up; older ones are behind the marker. */
#define XPB_NATS_MARKS_SEEN 64u
#define XPB_NATS_MARK_TEXT_MAX 288u /* a marker's text (xpb_mam_marker_format) */
#define XPB_NATS_MARK_ID_MAX 256u   /* a stanza-id (XPB_MAM_ID_MAX) */
#define XPB_NATS_MARK_STREAM_MAX 256u /* a XEP-0198 stream id (xpb_sm_state.id) */

/* One archive's marks: its marker ("" none) and the stanza-ids published
 * from it, oldest first (each malloc'd). */
typedef struct state_nats_marks {
    char marker[XPB_NATS_MARK_TEXT_MAX];
    char stream[XPB_NATS_MARK_STREAM_MAX]; /* the XEP-0198 stream caught up in, "" none */
    char *seen[XPB_NATS_MARKS_SEEN];
    size_t n;
} state_nats_marks;

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

/* The marks value; 0, or XPB_ENOMEM. */
int state_nats_marks_encode(xpb_buf *out, const state_nats_marks *m);
/* Fills m (empty before; state_nats_marks_clear frees it): 0, or
 * XPB_EINVAL (not a value marks_encode makes) / XPB_ENOMEM; m is then empty. */
int state_nats_marks_decode(const uint8_t *v, size_t len, state_nats_marks *m);
void state_nats_marks_clear(state_nats_marks *m);
/* Records id as seen (the oldest goes when XPB_NATS_MARKS_SEEN are kept; an id
 * already kept moves to the newest place). 0, XPB_ETOOBIG (id too long) or XPB_ENOMEM. */
int state_nats_marks_add(state_nats_marks *m, const char *id);
int state_nats_marks_has(const state_nats_marks *m, const char *id);
/* "<token>.<archive token>" (length as snprintf). */
size_t state_nats_marks_key(const char *token, const char *archive, char *out, size_t outlen);

#endif
