/* Records -> protobuf bytes, byte-identical to protobuf_c_message_pack and
 * cheaper: protobuf-c goes through generic per-field calls and packs every
 * nested message before knowing its length, moving it when the length prefix
 * needs more than a byte. Here pass 1 measures each nested message once and
 * notes which fields are written (both kept, pre-order, in fixed arrays on
 * the stack); pass 2 visits only those fields and writes every byte once, in
 * place. Both walk the descriptors, so every message of our .proto files is
 * served and new fields need nothing here.
 *
 * The rules of protobuf-c 1.4 (protobuf-c.c, protobuf_c_message_pack) kept:
 *   - fields in descriptor fields[] order;
 *   - optional string/message: written unless NULL or == the descriptor's
 *     default_value; other optional types: when their has_ flag is set;
 *   - oneof member: when the case equals its id (string/message: and not
 *     NULL and not the default);
 *   - required: always, a NULL string or message as an empty one;
 *   - repeated: nothing for count 0; packed: tag, payload length, payload;
 *   - int32/enum: negative values as 10-byte sign-extended varints;
 *     bool: 1 for any non-zero value.
 * Unknown fields, proto3 fields (LABEL_NONE: none in proto/xpb/v1) and
 * anything else unexpected go to protobuf-c for the whole record. */
#include <stdlib.h>
#include <string.h>

#include "pack_internal.h"
#include "xpb_error.h"

/* ---- Wire primitives ---------------------------------------------------------- */

/* Bytes of v as a base-128 varint: its significant bits / 7, rounded up. */
static inline size_t varint_size(uint64_t v)
{
#if defined(__GNUC__)
    unsigned msb = 63u - (unsigned)__builtin_clzll(v | 1);
    return (9u * msb + 73u) / 64u;
#else
    size_t n = 1;
    while (v >= 0x80)
        v >>= 7, n++;
    return n;
#endif
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline size_t tag_size(uint32_t id)
{
    return varint_size((uint64_t)id << 3);
}

static inline uint8_t *put_tag(uint8_t *p, uint32_t id, ProtobufCWireType wire)
{
    return put_varint(p, ((uint64_t)id << 3) | (uint64_t)wire);
}

/* Fixed-width values are little-endian on the wire whatever the host. */
static inline uint8_t *put_le(uint8_t *p, uint64_t v, unsigned width)
{
    for (unsigned i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + width;
}

/* protobuf-c's zigzag: no shift of a negative value. */
static inline uint32_t zigzag32(int32_t v)
{
    return v < 0 ? (0u - (uint32_t)v) * 2u - 1u : (uint32_t)v * 2u;
}

static inline uint64_t zigzag64(int64_t v)
{
    return v < 0 ? (0u - (uint64_t)v) * 2u - 1u : (uint64_t)v * 2u;
}

/* ---- Field types ---------------------------------------------------------------- */

static inline bool is_pointer_type(ProtobufCType t)
{
    return t == PROTOBUF_C_TYPE_STRING || t == PROTOBUF_C_TYPE_MESSAGE;
}

/* The varint a varint-typed value is written as; false for other types. */
static inline bool varint_of(ProtobufCType t, const void *v, uint64_t *out)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_ENUM:
        *out = (uint64_t)(int64_t)(*(const int32_t *)v);
        return true;
    case PROTOBUF_C_TYPE_SINT32:
        *out = zigzag32(*(const int32_t *)v);
        return true;
    case PROTOBUF_C_TYPE_UINT32:
        *out = *(const uint32_t *)v;
        return true;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
        *out = *(const uint64_t *)v;
        return true;
    case PROTOBUF_C_TYPE_SINT64:
        *out = zigzag64(*(const int64_t *)v);
        return true;
    case PROTOBUF_C_TYPE_BOOL:
        *out = *(const protobuf_c_boolean *)v != 0;
        return true;
    default:
        return false;
    }
}

/* Bytes on the wire of a fixed-width type, else 0. */
static inline unsigned fixed_width(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return 4;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    default:
        return 0;
    }
}

static inline ProtobufCWireType wire_type(ProtobufCType t)
{
    if (t == PROTOBUF_C_TYPE_STRING || t == PROTOBUF_C_TYPE_BYTES || t == PROTOBUF_C_TYPE_MESSAGE)
        return PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    switch (fixed_width(t)) {
    case 4:
        return PROTOBUF_C_WIRE_TYPE_32BIT;
    case 8:
        return PROTOBUF_C_WIRE_TYPE_64BIT;
    default:
        return PROTOBUF_C_WIRE_TYPE_VARINT;
    }
}

/* Bytes per item of a repeated field's array in the C struct; 0 for a type
 * we do not know. */
static inline size_t item_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    }
    return 0;
}

/* ---- Presence (protobuf-c's optional_field_pack, oneof_field_pack) -------------- */

enum presence { ABSENT, PRESENT, UNHANDLED };

/* Whether field f of the message at msg is written. Optional first: it is
 * nearly every field of our records, and most are absent. */
static inline enum presence presence(const ProtobufCFieldDescriptor *f, const char *msg)
{
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
        bool ptr = is_pointer_type(f->type);
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) {
            if (!ptr)
                return *(const protobuf_c_boolean *)(msg + f->quantifier_offset) ? PRESENT : ABSENT;
        } else if (*(const uint32_t *)(msg + f->quantifier_offset) != f->id) {
            return ABSENT;
        } else if (!ptr) {
            return PRESENT;
        }
        const void *v = *(const void *const *)(msg + f->offset);
        return v != NULL && v != f->default_value ? PRESENT : ABSENT;
    }
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)(msg + f->quantifier_offset) != 0 ? PRESENT : ABSENT;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED) return PRESENT;
    return UNHANDLED; /* LABEL_NONE: proto3 */
}

/* ---- Pass 1: sizes and the fields written ---------------------------------------- */

static bool measure_msg(xpb_pack_plan *pl, const ProtobufCMessage *m, size_t *out);

/* The next length slot: a message's comes before its children's. */
static inline bool take_len(xpb_pack_plan *pl, size_t *slot)
{
    if (pl->n_len >= XPB_PACK_MAX_LENGTHS) return false;
    *slot = pl->n_len++;
    return true;
}

static inline bool note_field(xpb_pack_plan *pl, unsigned index)
{
    if (pl->n_field >= XPB_PACK_MAX_FIELDS) return false;
    pl->field[pl->n_field++] = (uint8_t)index;
    return true;
}

/* Wire bytes of one value of type t at v, without its tag. */
static inline bool measure_value(xpb_pack_plan *pl, ProtobufCType t, const void *v, size_t *out)
{
    uint64_t x;
    if (varint_of(t, v, &x)) {
        *out = varint_size(x);
        return true;
    }
    switch (t) {
    case PROTOBUF_C_TYPE_STRING: {
        /* Its length is kept too, so pass 2 does not run strlen again. */
        const char *str = *(const char *const *)v;
        size_t slot, n = str ? strlen(str) : 0;
        if (n > UINT32_MAX || !take_len(pl, &slot)) return false;
        pl->len[slot] = (uint32_t)n;
        *out = varint_size(n) + n;
        return true;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        size_t n = ((const ProtobufCBinaryData *)v)->len;
        *out = varint_size(n) + n;
        return true;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)v;
        size_t slot, n = 0;
        if (sub != NULL) {
            if (!take_len(pl, &slot) || !measure_msg(pl, sub, &n)) return false;
            /* Truncation needs n >= 4 GiB: xpb_pack_measure then refuses. */
            pl->len[slot] = (uint32_t)n;
            if (sub == pl->watch) pl->watched = n;
        }
        *out = varint_size(n) + n;
        return true;
    }
    default:
        break;
    }
    *out = fixed_width(t);
    return *out != 0;
}

static bool measure_repeated(xpb_pack_plan *pl, const ProtobufCFieldDescriptor *f, size_t count,
                             const char *items, size_t *out)
{
    size_t step = item_size(f->type), payload = 0, slot = 0, n;
    bool packed = (f->flags & PROTOBUF_C_FIELD_FLAG_PACKED) != 0;
    if (step == 0) return false;
    if (packed) {
        /* protobuf-c packs only scalars. */
        if (wire_type(f->type) == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED || !take_len(pl, &slot))
            return false;
    }
    for (size_t i = 0; i < count; i++, items += step) {
        if (!measure_value(pl, f->type, items, &n)) return false;
        payload += n;
    }
    if (packed) {
        pl->len[slot] = (uint32_t)payload;
        *out = tag_size(f->id) + varint_size(payload) + payload;
    } else {
        *out = count * tag_size(f->id) + payload;
    }
    return true;
}

static bool measure_msg(xpb_pack_plan *pl, const ProtobufCMessage *m, size_t *out)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    unsigned n_fields = d->n_fields;
    if (m->n_unknown_fields != 0 || n_fields >= XPB_PACK_END) return false;
    const char *msg = (const char *)m;
    const ProtobufCFieldDescriptor *f = d->fields;
    size_t total = 0, n;
    for (unsigned i = 0; i < n_fields; i++, f++) {
        enum presence p = presence(f, msg);
        if (p == ABSENT) continue;
        /* The index goes before a nested message's own: pass 2 reads it first. */
        if (p == UNHANDLED || !note_field(pl, i)) return false;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (!measure_repeated(pl, f, *(const size_t *)(msg + f->quantifier_offset),
                                  *(const char *const *)(msg + f->offset), &n))
                return false;
        } else {
            if (!measure_value(pl, f->type, msg + f->offset, &n)) return false;
            n += tag_size(f->id);
        }
        total += n;
    }
    *out = total;
    return note_field(pl, XPB_PACK_END);
}

bool xpb_pack_measure(xpb_pack_plan *plan, const ProtobufCMessage *m, size_t *size)
{
    plan->n_len = 0;
    plan->n_field = 0;
    /* protobuf-c writes lengths as 32-bit values (uint32_pack): from 4 GiB on
     * only its own output is its output. */
    return measure_msg(plan, m, size) && *size <= UINT32_MAX;
}

/* ---- Pass 2: bytes ------------------------------------------------------------- */

/* Reads the plan of pass 1 back in the same order. */
typedef struct pack_cursor {
    const xpb_pack_plan *pl;
    size_t next_len, next_field;
} pack_cursor;

static uint8_t *write_msg(pack_cursor *c, const ProtobufCMessage *m, uint8_t *p);

/* One value of type t at v (measured by measure_value), without its tag. */
static inline uint8_t *write_value(pack_cursor *c, ProtobufCType t, const void *v, uint8_t *p)
{
    uint64_t x;
    if (varint_of(t, v, &x)) return put_varint(p, x);
    switch (t) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *str = *(const char *const *)v;
        size_t n = c->pl->len[c->next_len++];
        p = put_varint(p, n);
        if (n > 0) memcpy(p, str, n);
        return p + n;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = v;
        p = put_varint(p, b->len);
        if (b->len > 0) memcpy(p, b->data, b->len);
        return p + b->len;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)v;
        if (sub == NULL) {
            *p++ = 0;
            return p;
        }
        p = put_varint(p, c->pl->len[c->next_len++]);
        return write_msg(c, sub, p);
    }
    default:
        break;
    }
    /* float and double by their bits, like the integer fixed types. */
    if (fixed_width(t) == 4) {
        uint32_t bits;
        memcpy(&bits, v, 4);
        return put_le(p, bits, 4);
    }
    uint64_t bits;
    memcpy(&bits, v, 8);
    return put_le(p, bits, 8);
}

static uint8_t *write_repeated(pack_cursor *c, const ProtobufCFieldDescriptor *f, size_t count,
                               const char *items, uint8_t *p)
{
    size_t step = item_size(f->type);
    ProtobufCWireType wire = wire_type(f->type);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_PACKED) {
        p = put_tag(p, f->id, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
        p = put_varint(p, c->pl->len[c->next_len++]);
        for (size_t i = 0; i < count; i++, items += step)
            p = write_value(c, f->type, items, p);
        return p;
    }
    for (size_t i = 0; i < count; i++, items += step) {
        p = put_tag(p, f->id, wire);
        p = write_value(c, f->type, items, p);
    }
    return p;
}

/* Writes the fields pass 1 noted for m; the checks are not repeated. */
static uint8_t *write_msg(pack_cursor *c, const ProtobufCMessage *m, uint8_t *p)
{
    const ProtobufCFieldDescriptor *fields = m->descriptor->fields;
    const char *msg = (const char *)m;
    for (unsigned i; (i = c->pl->field[c->next_field++]) != XPB_PACK_END;) {
        const ProtobufCFieldDescriptor *f = &fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            p = write_repeated(c, f, *(const size_t *)(msg + f->quantifier_offset),
                               *(const char *const *)(msg + f->offset), p);
        } else {
            p = put_tag(p, f->id, wire_type(f->type));
            p = write_value(c, f->type, msg + f->offset, p);
        }
    }
    return p;
}

size_t xpb_pack_write(const xpb_pack_plan *plan, const ProtobufCMessage *m, uint8_t *out)
{
    pack_cursor c = {.pl = plan, .next_len = 0, .next_field = 0};
    return (size_t)(write_msg(&c, m, out) - out);
}

/* ---- Into a buffer ------------------------------------------------------------- */

/* xpb_buf memory is malloc'd (xpb_buf_free frees it), so growing it here in
 * one step to the exact size is fine. */
int xpb_pack_append(xpb_buf *out, const ProtobufCMessage *m)
{
    xpb_pack_plan plan; /* filled by xpb_pack_measure as far as needed */
    plan.watch = NULL;
    size_t n;
    bool ours = xpb_pack_measure(&plan, m, &n);
    if (!ours) n = protobuf_c_message_get_packed_size(m);
    if (n > SIZE_MAX - out->len) return XPB_ETOOBIG;
    size_t need = out->len + n;
    if (out->max != 0 && need > out->max) return XPB_ETOOBIG;
    if (need > out->cap) {
        char *p = realloc(out->data, need);
        if (p == NULL) return XPB_ENOMEM;
        out->data = p;
        out->cap = need;
    }
    if (n == 0) return 0;
    uint8_t *at = (uint8_t *)out->data + out->len;
    out->len += ours ? xpb_pack_write(&plan, m, at) : protobuf_c_message_pack(m, at);
    return 0;
}

/* ---- The public plan API (xpb_stanza.h) ------------------------------------------ */

xpb_pack_plan *xpb_pack_plan_new(void)
{
    return calloc(1, sizeof(xpb_pack_plan));
}

void xpb_pack_plan_free(xpb_pack_plan *plan)
{
    free(plan);
}

size_t xpb_pack_plan_measure(xpb_pack_plan *plan, const ProtobufCMessage *m)
{
    size_t n;
    plan->watched = SIZE_MAX;
    plan->theirs = !xpb_pack_measure(plan, m, &n);
    if (plan->theirs) {
        plan->watched = SIZE_MAX;
        return protobuf_c_message_get_packed_size(m);
    }
    if (plan->watch == m) plan->watched = n;
    return n;
}

void xpb_pack_plan_watch(xpb_pack_plan *plan, const ProtobufCMessage *sub)
{
    plan->watch = sub;
    plan->watched = SIZE_MAX;
}

size_t xpb_pack_plan_watched(const xpb_pack_plan *plan)
{
    return plan->watched;
}

size_t xpb_pack_plan_write(xpb_pack_plan *plan, const ProtobufCMessage *m, uint8_t *out)
{
    return plan->theirs ? protobuf_c_message_pack(m, out) : xpb_pack_write(plan, m, out);
}
