/* Internal to bridge/bus/ and its tests: the request intake step
 * (bus_request.c) as a pure function (bytes in, a validated Request or an
 * error code and sentence out), so that tests/fuzz/fuzz_bus_request.c can
 * drive it without a back end. */
#ifndef XPB_BUS_INTERNAL_H
#define XPB_BUS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "xpb_bus.h"

#define XPB_BUS_ERRTEXT_MAX 512 /* bytes of an error_text the bus writes */

/* Refuses more than max_bytes, checks the nesting depth and every string
 * field of every message in it on the wire bytes before unpacking
 * (xpb_pb_check_wire_text: at most max_string bytes, 0 = the record default,
 * UTF-8, XML characters, no NUL), unpacks, then checks the envelope:
 * api_version, request_id, op, account (unless list or status) and the
 * stanza of send and iq (xpb_stanza_check). Returns 0 with *out set (free it
 * with xpb__v1__request__free_unpacked), or -1 (-2 when a string field broke
 * a text rule) with *out NULL, *code set and a sentence in text (non-empty
 * when textlen > 0). id receives the request id and *has_id is 1 whenever the
 * id is present and at most XPB_BUS_MAX_REQUEST_ID bytes, on failure too, so
 * the error reply can carry it. */
int xpb_bus_decode_request(const uint8_t *data, size_t len, size_t max_bytes, size_t max_string,
                           Xpb__V1__Request **out, char id[XPB_BUS_MAX_REQUEST_ID + 1], int *has_id,
                           Xpb__V1__ErrorCode *code, char *text, size_t textlen);
/* The same, unpacked into arena a (one block for the hundreds of fields and
 * strings of a SendBatch, where malloc per field was a tenth of a send):
 * *out lives until a is freed; never free_unpacked. */
struct xpb_arena;
int xpb_bus_decode_request_in(struct xpb_arena *a, const uint8_t *data, size_t len,
                              size_t max_bytes, size_t max_string, Xpb__V1__Request **out,
                              char id[XPB_BUS_MAX_REQUEST_ID + 1], int *has_id,
                              Xpb__V1__ErrorCode *code, char *text, size_t textlen);

/* The back end's handle when the bus runs on ops, else NULL (for a back
 * end's own stats, e.g. the journal's). */
void *xpb_bus_backend_of(const xpb_bus *b, const xpb_bus_backend_ops *ops);

#endif
