/* Request intake as a pure function: wire bytes in, a validated Request or
 * an error code and a sentence out (bus_internal.h). No I/O: the front calls
 * it on the loop thread, tests/fuzz/fuzz_bus_request.c calls it directly. */
#include "bus_internal.h"

#include <stdio.h>
#include <string.h>

#include "xpb_arena.h"
#include "xpb_error.h"
#include "xpb_stanza.h"

/* Wire levels of a Request: a record level of a stanza is at most two wire
 * levels (Element and its Node wrapper) plus a trailing Node (the bound
 * xpb_stanza_unpack uses), and Request -> SendStanza/SendIq sit above the
 * Stanza. xpb_stanza_check applies the record depth limit afterwards. */
#define REQUEST_MAX_DEPTH (2u * XPB_RECORD_DEFAULT_MAX_DEPTH + 1u + 2u)

static int op_needs_account(Xpb__V1__Request__OpCase op)
{
    return op != XPB__V1__REQUEST__OP_LIST && op != XPB__V1__REQUEST__OP_STATUS &&
           op != XPB__V1__REQUEST__OP_REPLAY;
}

/* The stanza inside send or iq, checked like any record from outside. */
static int check_op_stanza(const Xpb__V1__Request *r, size_t max_string, char *text, size_t textlen,
                           Xpb__V1__ErrorCode *code)
{
    const Xpb__V1__Stanza *st = NULL;
    const char *field = NULL;
    if (r->op_case == XPB__V1__REQUEST__OP_SEND) {
        st = r->send->stanza;
        field = "send.stanza";
    } else if (r->op_case == XPB__V1__REQUEST__OP_IQ) {
        st = r->iq->stanza;
        field = "iq.stanza";
    } else {
        return 0;
    }
    if (st == NULL) {
        *code = XPB__V1__ERROR_CODE__ERR_BAD_REQUEST;
        snprintf(text, textlen, "%s is required", field);
        return -1;
    }
    xpb_record_limits lim = {.max_string = max_string};
    char cerr[256] = "";
    int crc = xpb_stanza_check(st, &lim, cerr, sizeof cerr);
    if (crc != 0) {
        *code = crc == XPB_EJID ? XPB__V1__ERROR_CODE__ERR_INVALID_JID
                                : XPB__V1__ERROR_CODE__ERR_INVALID_RECORD;
        snprintf(text, textlen, "%s: %s", field, cerr);
        return -1;
    }
    if (r->op_case == XPB__V1__REQUEST__OP_IQ &&
        (st->kind != XPB__V1__KIND__KIND_IQ || (st->type != XPB__V1__STANZA_TYPE__TYPE_GET &&
                                                st->type != XPB__V1__STANZA_TYPE__TYPE_SET))) {
        *code = XPB__V1__ERROR_CODE__ERR_INVALID_RECORD;
        snprintf(text, textlen, "iq.stanza must be an iq of type get or set");
        return -1;
    }
    return 0;
}

/* The envelope rules, in the order a client most needs to hear about them. */
static int validate(const Xpb__V1__Request *r, size_t max_string,
                    char id[XPB_BUS_MAX_REQUEST_ID + 1], int *has_id, char *text, size_t textlen,
                    Xpb__V1__ErrorCode *code)
{
    *code = XPB__V1__ERROR_CODE__ERR_BAD_REQUEST;
    if (r->request_id != NULL && strlen(r->request_id) <= XPB_BUS_MAX_REQUEST_ID &&
        r->request_id[0] != '\0') {
        memcpy(id, r->request_id, strlen(r->request_id) + 1);
        *has_id = 1;
    }
    if (!r->has_api_version || r->api_version != XPB_BUS_API_VERSION) {
        *code = XPB__V1__ERROR_CODE__ERR_API_VERSION;
        if (r->has_api_version)
            snprintf(text, textlen, "api_version %u is not supported; this bridge speaks %u",
                     r->api_version, XPB_BUS_API_VERSION);
        else
            snprintf(text, textlen, "api_version is missing; this bridge speaks %u",
                     XPB_BUS_API_VERSION);
        return -1;
    }
    if (r->request_id == NULL || r->request_id[0] == '\0') {
        snprintf(text, textlen, "request_id is required");
        return -1;
    }
    if (!*has_id) {
        snprintf(text, textlen, "request_id is longer than %u bytes", XPB_BUS_MAX_REQUEST_ID);
        return -1;
    }
    if (r->op_case == XPB__V1__REQUEST__OP__NOT_SET) {
        snprintf(text, textlen, "no known operation in the request (op is missing)");
        return -1;
    }
    if (op_needs_account(r->op_case) && (r->account == NULL || r->account[0] == '\0')) {
        snprintf(text, textlen, "account is required for this operation");
        return -1;
    }
    return check_op_stanza(r, max_string, text, textlen, code);
}

/* Whether a wire-check failure lies inside the stanza of send or iq: those
 * are record faults (ERR_INVALID_RECORD, as xpb_stanza_check reports them);
 * every other field is the request's own (ERR_BAD_REQUEST). */
static int in_op_stanza(const char *path)
{
    return strncmp(path, "send.stanza", 11) == 0 || strncmp(path, "iq.stanza", 9) == 0;
}

/* Bytes -> unpacked request, or an error text. Size is NNG's job
 * (RECVMAXSZ) and checked again here. Depth and every string field (NUL,
 * UTF-8, XML characters, max_string) are checked on the wire bytes before
 * unpacking: protobuf-c recurses without a limit and keeps a NUL inside a
 * string, where every later strlen would silently cut it. */
static Xpb__V1__Request *decode(const uint8_t *data, size_t len, size_t max_bytes,
                                size_t max_string, ProtobufCAllocator *alloc,
                                Xpb__V1__ErrorCode *code, int *bad_string, char *text,
                                size_t textlen)
{
    if (len > max_bytes) {
        snprintf(text, textlen, "request does not decode: %zu bytes, limit %zu", len, max_bytes);
        return NULL;
    }
    char why[XPB_BUS_ERRTEXT_MAX - 64] = "";
    int rc = xpb_pb_check_wire_text(&xpb__v1__request__descriptor, data, len, REQUEST_MAX_DEPTH,
                                    max_string, why, sizeof why);
    if (rc == XPB_EPBDEPTH) {
        snprintf(text, textlen, "request does not decode: nesting deeper than the limit of %u",
                 REQUEST_MAX_DEPTH);
        return NULL;
    }
    if (rc == XPB_ESTRLEN || rc == XPB_EUTF8 || rc == XPB_EXMLCHAR) {
        if (in_op_stanza(why)) *code = XPB__V1__ERROR_CODE__ERR_INVALID_RECORD;
        *bad_string = 1;
        snprintf(text, textlen, "%s", why);
        return NULL;
    }
    Xpb__V1__Request *r = NULL;
    if (rc == 0) r = xpb__v1__request__unpack(alloc, len, data);
    if (r == NULL) snprintf(text, textlen, "request does not decode: not a valid xpb.v1.Request");
    return r;
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7fu) << shift;
        if ((b & 0x80u) == 0) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* A request refused for a string rule was well-formed protobuf: its
 * request_id (top-level field 2) is read from the wire bytes so the refusal
 * can carry it, when the id itself is valid text of at most 128 bytes. */
static void wire_request_id(const uint8_t *p, size_t len, char id[XPB_BUS_MAX_REQUEST_ID + 1],
                            int *has_id)
{
    const uint8_t *end = p + len;
    uint64_t tag, v;
    while (p < end && read_varint(&p, end, &tag) == 0) {
        unsigned wt = (unsigned)(tag & 7u);
        if (wt == 0 && read_varint(&p, end, &v) == 0) continue;
        if ((wt == 1 || wt == 5) && (size_t)(end - p) >= (wt == 1 ? 8u : 4u)) {
            p += wt == 1 ? 8 : 4;
            continue;
        }
        if (wt != 2 || read_varint(&p, end, &v) != 0 || v > (uint64_t)(end - p)) return;
        size_t off;
        if ((tag >> 3) == 2 && v > 0 && v <= XPB_BUS_MAX_REQUEST_ID &&
            xpb_xml_check_text((const char *)p, (size_t)v, &off) == 0) {
            memcpy(id, p, (size_t)v);
            id[v] = '\0';
            *has_id = 1;
        }
        p += v;
    }
}

static int decode_request(const uint8_t *data, size_t len, size_t max_bytes, size_t max_string,
                          ProtobufCAllocator *alloc, Xpb__V1__Request **out,
                          char id[XPB_BUS_MAX_REQUEST_ID + 1], int *has_id,
                          Xpb__V1__ErrorCode *code, char *text, size_t textlen)
{
    *out = NULL;
    *has_id = 0;
    *code = XPB__V1__ERROR_CODE__ERR_BAD_REQUEST;
    int bad_string = 0;
    Xpb__V1__Request *r =
        decode(data, len, max_bytes, max_string, alloc, code, &bad_string, text, textlen);
    if (r == NULL && bad_string) wire_request_id(data, len, id, has_id);
    if (r == NULL) return bad_string ? -2 : -1;
    if (validate(r, max_string, id, has_id, text, textlen, code) != 0) {
        xpb__v1__request__free_unpacked(r, alloc);
        return -1;
    }
    *out = r;
    return 0;
}

/* bus_internal.h; the front (bus.c) is its only caller in the bridge. */
int xpb_bus_decode_request(const uint8_t *data, size_t len, size_t max_bytes, size_t max_string,
                           Xpb__V1__Request **out, char id[XPB_BUS_MAX_REQUEST_ID + 1], int *has_id,
                           Xpb__V1__ErrorCode *code, char *text, size_t textlen)
{
    return decode_request(data, len, max_bytes, max_string, NULL, out, id, has_id, code, text,
                          textlen);
}

int xpb_bus_decode_request_in(xpb_arena *a, const uint8_t *data, size_t len, size_t max_bytes,
                              size_t max_string, Xpb__V1__Request **out,
                              char id[XPB_BUS_MAX_REQUEST_ID + 1], int *has_id,
                              Xpb__V1__ErrorCode *code, char *text, size_t textlen)
{
    return decode_request(data, len, max_bytes, max_string, xpb_arena_pb_allocator(a), out, id,
                          has_id, code, text, textlen);
}
