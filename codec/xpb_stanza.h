/* Stanza <-> record mapping (proto/xpb/v1/stanza.proto), the well-known
 * namespace dictionary, checks for untrusted records, and a JSON view.
 * XML -> record -> XML gives back the same infoset; see docs/mapping.md. */
#ifndef XPB_STANZA_H
#define XPB_STANZA_H

#include <stddef.h>
#include <stdint.h>
#include "xpb/v1/stanza.pb-c.h"
#include "xpb_arena.h"
#include "xpb_xml.h"

typedef Xpb__V1__Stanza xpb_stanza;

/* Limits applied to records from outside (the bus, a file). */
#define XPB_RECORD_DEFAULT_MAX_DEPTH 32u      /* nested messages, Stanza = 1 */
#define XPB_RECORD_DEFAULT_MAX_STRING 65536u  /* bytes per string field */
typedef struct xpb_record_limits {
    unsigned max_depth;       /* 0 = default */
    size_t max_string;        /* 0 = default */
    size_t max_stanza_bytes;  /* XML output bound; 0 = XPB_READER_DEFAULT_MAX_STANZA */
} xpb_record_limits;

/* ---- Well-known namespaces: ids 1..n, stable forever within xpb.v1 ---- */
/* 0 when uri is not in the dictionary. */
uint32_t xpb_ns_id(const char *uri);
/* The same for uri[0..len), which need not be NUL-terminated. */
uint32_t xpb_ns_id_n(const char *uri, size_t len);
/* NULL when id is not in the dictionary. */
const char *xpb_ns_uri(uint32_t id);
#define XPB_NS_ID_STREAMS 3u /* xpb_ns_id(XPB_NS_STREAMS); test_stanza checks it */

/* ---- Packing any record ---------------------------------------------------
 * codec/pack.c: the bytes protobuf_c_message_pack gives, for any message (bus
 * events too), in fewer instructions. A plan carries what the sizing pass
 * hands to the writing pass (about 12 KiB): keep one per thread and reuse
 * it; it is not safe to share between threads. */
typedef struct xpb_pack_plan xpb_pack_plan;
xpb_pack_plan *xpb_pack_plan_new(void); /* NULL on ENOMEM */
void xpb_pack_plan_free(xpb_pack_plan *plan);
/* The packed size of m. The plan then serves one xpb_pack_plan_write of this
 * same, unchanged m. */
size_t xpb_pack_plan_measure(xpb_pack_plan *plan, const ProtobufCMessage *m);
/* Writes m, measured just before, at out (room for the measured size);
 * returns the bytes written. */
size_t xpb_pack_plan_write(xpb_pack_plan *plan, const ProtobufCMessage *m, uint8_t *out);
/* Keep the packed size of sub, a message inside what the next measures
 * size (NULL: none), so a caller that needs both sizes sizes it once.
 * xpb_pack_plan_watched: that size from the last measure, SIZE_MAX when sub
 * was not in it (or protobuf-c packs it). */
void xpb_pack_plan_watch(xpb_pack_plan *plan, const ProtobufCMessage *sub);
size_t xpb_pack_plan_watched(const xpb_pack_plan *plan);

/* ---- XML -> record ------------------------------------------------------
 * el is a depth-1 element from the reader. Everything in *out (strings too) is
 * allocated in arena a and lives until the arena is reset/freed. Never fails on
 * well-formed input except with XPB_ENOMEM: what has no typed field becomes a
 * generic Element. */
int xpb_stanza_from_xml(xpb_arena *a, const xpb_node *el, xpb_stanza **out);

/* ---- record -> XML --------------------------------------------------------
 * Checks the record (xpb_stanza_check) and appends exactly one well-formed
 * element to out. parent_ns: the default namespace in scope (XPB_NS_CLIENT in
 * a c2s stream; "" for a standalone stanza, which then carries
 * xmlns='jabber:client'). On refusal nothing is appended and err (if not NULL)
 * holds a sentence naming the field and the rule or limit. */
int xpb_stanza_to_xml(xpb_buf *out, const xpb_stanza *st, const char *parent_ns,
                      const xpb_record_limits *limits, char *err, size_t errlen);

/* The same without running xpb_stanza_check again: only for a record that
 * passed xpb_stanza_check or came out of xpb_stanza_unpack and has not been
 * changed since (the check is most of the cost of writing; running it twice
 * halves the speed of bytes -> record -> XML). */
int xpb_stanza_to_xml_prechecked(xpb_buf *out, const xpb_stanza *st, const char *parent_ns,
                                 const xpb_record_limits *limits, char *err, size_t errlen);

/* Every rule for untrusted records: string lengths, UTF-8 and XML characters,
 * names that are valid XML names, JIDs (from, to and every JID-valued field),
 * depth, enum values in range. 0 or XPB_E… with err filled. */
int xpb_stanza_check(const xpb_stanza *st, const xpb_record_limits *limits, char *err,
                     size_t errlen);

/* ---- bytes <-> record ------------------------------------------------------ */
/* Checks nesting depth on the wire bytes first (protobuf-c has no recursion
 * limit), then unpacks into arena a, then xpb_stanza_check. */
int xpb_stanza_unpack(xpb_arena *a, const uint8_t *data, size_t len,
                      const xpb_record_limits *limits, xpb_stanza **out, char *err,
                      size_t errlen);
/* Depth of nested messages in wire bytes of message type desc, walking only
 * message-typed fields; XPB_EPBDEPTH when deeper than max_depth, XPB_EPBDECODE
 * when the wire format is broken. */
int xpb_pb_check_depth(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                       unsigned max_depth);
/* The same walk, which also checks the wire bytes of every string field, at
 * any depth, with the rules of xpb_stanza_check: at most max_string bytes
 * (0 = default), valid UTF-8, XML 1.0 characters only, so no NUL (which a C
 * string would silently end at). XPB_EPBDEPTH, XPB_EPBDECODE, XPB_ESTRLEN,
 * XPB_EUTF8 or XPB_EXMLCHAR, with err naming the field path, e.g.
 * "send.stanza.body.text: U+0000 at byte 5 is not an XML 1.0 character". */
int xpb_pb_check_wire_text(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                           unsigned max_depth, size_t max_string, char *err, size_t errlen);
/* The depth walk of xpb_pb_check_depth that also refuses a NUL in any string
 * field, at any depth (protobuf-c keeps it, and every C reader would then see
 * the string cut short): what xpb_stanza_unpack checks on the wire before
 * unpacking, for a message that wraps records (an Event). The other text
 * rules are xpb_stanza_check's, on the unpacked record. XPB_EPBDEPTH,
 * XPB_EPBDECODE or XPB_EXMLCHAR, with err naming the field path. */
int xpb_pb_check_wire_nul(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                          unsigned max_depth, char *err, size_t errlen);
/* Appends st packed to out: the bytes protobuf_c_message_pack would give
 * (codec/pack.c). 0, XPB_EINVAL, XPB_ETOOBIG (out->max) or XPB_ENOMEM. */
int xpb_stanza_pack(xpb_buf *out, const xpb_stanza *st);

/* ---- length-delimited streams (varint length prefix) --------------------- */
int xpb_delim_write(xpb_buf *out, const uint8_t *data, size_t len);
/* Parses one frame at buf[0..len): 0 with frame, frame_len and consumed set;
 * 1 when more bytes are needed; XPB_EPBDECODE on a bad varint;
 * XPB_ETOOBIG when the length exceeds max_len. */
int xpb_delim_next(const uint8_t *buf, size_t len, size_t max_len, const uint8_t **frame,
                   size_t *frame_len, size_t *consumed);

/* ---- JSON view of any protobuf-c message (readable, for xpbctl) ---------- */
int xpb_json_write(xpb_buf *out, const ProtobufCMessage *msg);

/* ---- Plain records (docs/mapping.md §7, "Plain and compact records") -------
 * Rewrites every compact form in st, forwarded stanzas (carbon, mam_result)
 * included, into its plain field: UUID bytes (*_uuid) into the id string,
 * JID references (from_ref, to_ref, by_ref, Delay.from_ref) into the JID they
 * name, origin_id_is_id into origin_id, Delay.stamp_seconds into stamp, and
 * DiscoInfo.feature_id into the one `feature` list in document order. The
 * compact field and its has_ flag are cleared; new strings are allocated in
 * arena a (which must outlive st). The closed-value enums (MUC affiliation and
 * role, caps hash) are typed fields, not compact forms, and stay. The result
 * writes byte-identical XML (xpb_stanza_to_xml) and passes xpb_stanza_check
 * when st did. A plain record is left as it is (idempotent).
 * 0, XPB_EINVAL, XPB_ENOMEM, or XPB_ERECORD for a compact value that cannot
 * be expanded (a reference naming no JID, a UUID that is not 16 bytes, both
 * forms set, ...; xpb_stanza_check says which). On error st may be partly
 * expanded: every field rewritten so far is equivalent, the failing one is
 * untouched. */
int xpb_stanza_expand(xpb_arena *a, xpb_stanza *st);

/* xpb_stanza_from_xml followed by xpb_stanza_expand: the plain record that
 * the bus publishes by default (compact records only when configured). Same
 * ownership as xpb_stanza_from_xml; *out is NULL on error. */
int xpb_stanza_from_xml_plain(xpb_arena *a, const xpb_node *el, xpb_stanza **out);

#endif
