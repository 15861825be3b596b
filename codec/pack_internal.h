/* Internal to codec/ (and its tests): our protobuf serializer (pack.c), which
 * xpb_stanza_pack uses in place of protobuf_c_message_pack. Its output is
 * byte-identical to protobuf-c's for every record; records it does not handle
 * are packed by protobuf-c itself. */
#ifndef XPB_PACK_INTERNAL_H
#define XPB_PACK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "stanza_internal.h"
#include "xpb_xml.h"

/* What pass 1 hands to pass 2, in pre-order (the order pass 2 needs it):
 *  - len: one length per nested message, per string and per non-empty
 *    packed repeated field (a stanza of the corpus or the traffic generator
 *    needs a few dozen at most);
 *  - field: for each message, the fields[] indexes of the fields written,
 *    then XPB_PACK_END, so pass 2 visits only those.
 * A record needing more, or a message type with XPB_PACK_END fields or more,
 * is packed by protobuf-c. Both arrays live on the stack (12 KiB). */
#define XPB_PACK_MAX_LENGTHS 2048
#define XPB_PACK_MAX_FIELDS 4096
#define XPB_PACK_END 0xFF

struct xpb_pack_plan {
    bool theirs; /* xpb_pack_plan_measure: protobuf-c packs this one */
    const ProtobufCMessage *watch; /* xpb_pack_plan_watch: a sub-message whose size to keep */
    size_t watched;                /* its size in the last measure (SIZE_MAX: not seen) */
    size_t n_len, n_field;
    uint32_t len[XPB_PACK_MAX_LENGTHS];
    uint8_t field[XPB_PACK_MAX_FIELDS];
};

/* Pass 1: true with *size set and plan filled when xpb_pack_write can pack
 * m; false when protobuf-c must (unknown fields anywhere, a proto3 or
 * otherwise unhandled field, a plan that does not fit, 4 GiB or more). */
XPB_INTERNAL bool xpb_pack_measure(xpb_pack_plan *plan, const ProtobufCMessage *m, size_t *size);

/* Pass 2: writes m, measured into plan, at out (the *size bytes of pass 1,
 * which it returns). */
XPB_INTERNAL size_t xpb_pack_write(const xpb_pack_plan *plan, const ProtobufCMessage *m,
                                   uint8_t *out);

/* Appends m packed to out, by the two passes or else by protobuf-c. 0,
 * XPB_ETOOBIG (out->max) or XPB_ENOMEM; out is unchanged on error. */
XPB_INTERNAL int xpb_pack_append(xpb_buf *out, const ProtobufCMessage *m);

#endif
