/* A readable one-line JSON view of any protobuf-c message (for xpbctl and
 * logs), walking the message descriptor: present fields only, enums by name,
 * bytes as base64, 64-bit integers as strings (as in the protobuf JSON
 * mapping, so JavaScript readers keep every digit). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_stanza.h"

#define JSON_MAX_DEPTH 64

static int put(xpb_buf *b, const char *s)
{
    return xpb_buf_append_str(b, s);
}

/* ---- Strings ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n) (RFC 3629 §4), or 0. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3;
    else if (c >= 0xF0 && c <= 0xF4) len = 4;
    else return 0;
    if (c == 0xE0) lo = 0xA0;      /* overlong */
    if (c == 0xED) hi = 0x9F;      /* surrogates */
    if (c == 0xF0) lo = 0x90;      /* overlong */
    if (c == 0xF4) hi = 0x8F;      /* above U+10FFFF */
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

/* Escapes one byte that cannot be copied as is; invalid UTF-8 becomes
 * U+FFFD so the output is always valid JSON (RFC 8259 §8.1). */
static int json_escape_byte(xpb_buf *b, unsigned char c)
{
    char tmp[8];
    if (c == '"') return put(b, "\\\"");
    if (c == '\\') return put(b, "\\\\");
    if (c >= 0x80) return put(b, "\\ufffd");
    int k = snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)c);
    return xpb_buf_append(b, tmp, (size_t)k);
}

static int json_string(xpb_buf *b, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    int rc = xpb_buf_append(b, "\"", 1);
    size_t i = 0;
    while (rc == 0 && i < len) {
        size_t run = i;
        while (run < len && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\')
            run++;
        rc = xpb_buf_append(b, s + i, run - i);
        i = run;
        if (rc != 0 || i >= len) break;
        size_t seq = s[i] >= 0x80 ? utf8_seq_len(s + i, len - i) : 0;
        if (seq > 0) {
            rc = xpb_buf_append(b, s + i, seq);
            i += seq;
        } else {
            rc = json_escape_byte(b, s[i]);
            i++;
        }
    }
    return rc ? rc : xpb_buf_append(b, "\"", 1);
}

/* RFC 4648 §4 base64 with padding. */
static int json_base64(xpb_buf *b, const uint8_t *d, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int rc = xpb_buf_append(b, "\"", 1);
    for (size_t i = 0; rc == 0 && i < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16;
        if (i + 1 < len) v |= (uint32_t)d[i + 1] << 8;
        if (i + 2 < len) v |= d[i + 2];
        char q[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63], tab[(v >> 6) & 63], tab[v & 63]};
        if (i + 1 >= len) q[2] = '=';
        if (i + 2 >= len) q[3] = '=';
        rc = xpb_buf_append(b, q, 4);
    }
    return rc ? rc : xpb_buf_append(b, "\"", 1);
}

/* ---- Scalars ------------------------------------------------------------- */

static int json_double(xpb_buf *b, double v, int digits)
{
    if (isnan(v)) return put(b, "\"NaN\"");
    if (isinf(v)) return put(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    char tmp[40];
    int k = snprintf(tmp, sizeof tmp, "%.*g", digits, v);
    return xpb_buf_append(b, tmp, (size_t)k);
}

static int json_enum(xpb_buf *b, const ProtobufCEnumDescriptor *ed, int v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
    if (ev != NULL) {
        int rc = xpb_buf_append(b, "\"", 1);
        if (rc == 0) rc = put(b, ev->name);
        return rc ? rc : xpb_buf_append(b, "\"", 1);
    }
    char tmp[16];
    int k = snprintf(tmp, sizeof tmp, "%d", v);
    return xpb_buf_append(b, tmp, (size_t)k);
}

static int json_message(xpb_buf *b, const ProtobufCMessage *msg, int depth);

/* One value of field f stored at p (an element of the array when repeated). */
static int json_value(xpb_buf *b, const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
    char tmp[32];
    int k = -1;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: k = snprintf(tmp, sizeof tmp, "%" PRId32, *(const int32_t *)p); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: k = snprintf(tmp, sizeof tmp, "%" PRIu32, *(const uint32_t *)p); break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        k = snprintf(tmp, sizeof tmp, "\"%" PRId64 "\"", *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        k = snprintf(tmp, sizeof tmp, "\"%" PRIu64 "\"", *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_BOOL: return put(b, *(const protobuf_c_boolean *)p ? "true" : "false");
    case PROTOBUF_C_TYPE_FLOAT: return json_double(b, *(const float *)p, 9);
    case PROTOBUF_C_TYPE_DOUBLE: return json_double(b, *(const double *)p, 17);
    case PROTOBUF_C_TYPE_ENUM: return json_enum(b, f->descriptor, *(const int *)p);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s ? json_string(b, s, strlen(s)) : put(b, "null");
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = p;
        return json_base64(b, bd->data, bd->len);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? json_message(b, m, depth + 1) : put(b, "null");
    }
    }
    if (k < 0) return XPB_EINVAL;
    return xpb_buf_append(b, tmp, (size_t)k);
}

/* ---- Presence and fields ------------------------------------------------- */

static size_t type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return 8;
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM: return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    default: return 4;
    }
}

/* proto3 implicit presence: present unless zero / empty. */
static bool nonzero(const ProtobufCFieldDescriptor *f, const char *p)
{
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = *(char *const *)p;
        return s != NULL && s[0] != '\0';
    }
    if (f->type == PROTOBUF_C_TYPE_BYTES) return ((const ProtobufCBinaryData *)p)->len > 0;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) return *(void *const *)p != NULL;
    static const char zero[sizeof(ProtobufCBinaryData)];
    return memcmp(p, zero, type_size(f->type)) != 0;
}

/* Whether a non-repeated field is set, following protobuf-c's own packer:
 * oneof case, has_ flag, or a non-NULL pointer that is not the default. */
static bool field_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)msg;
    const char *p = base + f->offset;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED) return true;
    if (f->label == PROTOBUF_C_LABEL_NONE) return nonzero(f, p);
    if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
        const void *ptr = *(void *const *)p;
        return ptr != NULL && ptr != f->default_value;
    }
    return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
}

static int json_repeated(xpb_buf *b, const ProtobufCFieldDescriptor *f, const char *arr, size_t n,
                         int depth)
{
    size_t step = type_size(f->type);
    int rc = xpb_buf_append(b, "[", 1);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i > 0) rc = xpb_buf_append(b, ",", 1);
        if (rc == 0) rc = json_value(b, f, arr + i * step, depth);
    }
    return rc ? rc : xpb_buf_append(b, "]", 1);
}

static int json_field(xpb_buf *b, const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                      bool *first, int depth)
{
    const char *base = (const char *)msg;
    size_t n = 0;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        n = *(const size_t *)(base + f->quantifier_offset);
        if (n == 0) return 0;
    } else if (!field_present(msg, f)) {
        return 0;
    }
    int rc = *first ? 0 : xpb_buf_append(b, ",", 1);
    *first = false;
    if (rc == 0) rc = json_string(b, f->name, strlen(f->name));
    if (rc == 0) rc = xpb_buf_append(b, ":", 1);
    if (rc != 0) return rc;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return json_repeated(b, f, *(char *const *)(base + f->offset), n, depth);
    return json_value(b, f, base + f->offset, depth);
}

static int json_message(xpb_buf *b, const ProtobufCMessage *msg, int depth)
{
    if (depth > JSON_MAX_DEPTH) return XPB_EDEPTH;
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    bool first = true;
    int rc = xpb_buf_append(b, "{", 1);
    for (unsigned i = 0; rc == 0 && i < d->n_fields; i++)
        rc = json_field(b, msg, &d->fields[i], &first, depth);
    return rc ? rc : xpb_buf_append(b, "}", 1);
}

/* Top-level message is depth 1; nesting deeper than 64 fails with XPB_EDEPTH.
 * Nothing is left appended on failure. */
int xpb_json_write(xpb_buf *out, const ProtobufCMessage *msg)
{
    if (out == NULL || msg == NULL || msg->descriptor == NULL) return XPB_EINVAL;
    size_t start = out->len;
    int rc = json_message(out, msg, 1);
    if (rc != 0) out->len = start;
    return rc;
}
