/* Tests for codec/pack.c: our two-pass packer must give byte for byte what
 * protobuf_c_message_pack gives (and the size protobuf_c_message_get_packed_size
 * gives) on every corpus stanza, on generated traffic, on random records of
 * every message type (stanza.proto, bus.proto and the test-only
 * pack_test.proto with every field type), and on hand-built edge cases; and it
 * must leave to protobuf-c exactly the records it does not handle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first. */
#include <cmocka.h>

#include "test_util.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack_internal.h"
#include "pack_test.pb-c.h"
#include "pack_test3.pb-c.h"
#include "traffic.h"
#include "xpb/v1/bus.pb-c.h"
#include "xpb_error.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"

#define GENERATED_COUNT 5000
#define RANDOM_PER_TYPE 2000
/* Nested messages per random record: far below both plan limits, so every
 * random proto2 record must take our path (61 messages of at most 39 fields,
 * Stanza's count, note fewer than XPB_PACK_MAX_FIELDS fields). */
#define RANDOM_NESTED_BUDGET 60

static xpb_arena *A;

static int setup(void **state)
{
    (void)state;
    A = xpb_arena_new(0);
    return A == NULL;
}

static int teardown(void **state)
{
    (void)state;
    xpb_arena_free(A);
    return 0;
}

/* ---- The comparison ------------------------------------------------------------ */

enum path { EITHER, OURS, FALLBACK };

static void print_diff(const char *what, const uint8_t *want, size_t want_n, const uint8_t *got,
                       size_t got_n)
{
    size_t i = 0;
    while (i < want_n && i < got_n && want[i] == got[i])
        i++;
    print_error("%s: protobuf-c %zu bytes, ours %zu; first difference at byte %zu\n", what, want_n,
                got_n, i);
    for (size_t k = i; k < i + 16 && k < want_n; k++)
        print_error(" %02x", want[k]);
    print_error("  (protobuf-c)\n");
    for (size_t k = i; k < i + 16 && k < got_n; k++)
        print_error(" %02x", got[k]);
    print_error("  (ours)\n");
}

/* Packs m both ways and compares; `path` is the path xpb_pack_measure must
 * choose. Also checks xpb_pack_append, after a prefix. Returns whether ours
 * was taken. */
static bool check_same(const char *what, const ProtobufCMessage *m, enum path path)
{
    size_t want_n = protobuf_c_message_get_packed_size(m);
    uint8_t *want = malloc(want_n ? want_n : 1);
    assert_non_null(want);
    assert_int_equal(protobuf_c_message_pack(m, want), want_n);

    xpb_pack_plan plan;
    size_t n = 0;
    bool ours = xpb_pack_measure(&plan, m, &n);
    if (path != EITHER && ours != (path == OURS))
        fail_msg("%s: %s path taken", what, ours ? "our" : "the protobuf-c");
    if (ours) {
        if (n != want_n) fail_msg("%s: measured %zu bytes, protobuf-c %zu", what, n, want_n);
        uint8_t *got = malloc(n ? n : 1); /* exactly n: ASan sees any overrun */
        assert_non_null(got);
        size_t got_n = xpb_pack_write(&plan, m, got);
        if (got_n != want_n || memcmp(got, want, want_n) != 0) {
            print_diff(what, want, want_n, got, got_n);
            fail_msg("%s: bytes differ", what);
        }
        free(got);
    }

    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_buf_append(&b, "pre", 3), 0);
    assert_int_equal(xpb_pack_append(&b, m), 0);
    assert_int_equal(b.len, 3 + want_n);
    assert_memory_equal(b.data, "pre", 3);
    if (want_n > 0) assert_memory_equal(b.data + 3, want, want_n);
    xpb_buf_free(&b);

    /* The public plan API (the bus packs events with it), one plan reused. */
    static xpb_pack_plan *pub;
    if (pub == NULL) assert_non_null(pub = xpb_pack_plan_new());
    xpb_pack_plan_watch(pub, m); /* the top message itself is watched too */
    if (xpb_pack_plan_measure(pub, m) != want_n) fail_msg("%s: plan measure differs", what);
    if (ours && xpb_pack_plan_watched(pub) != want_n) fail_msg("%s: watched size differs", what);
    if (!ours && xpb_pack_plan_watched(pub) != SIZE_MAX) fail_msg("%s: watched by protobuf-c", what);
    xpb_pack_plan_watch(pub, NULL);
    uint8_t *got = malloc(want_n ? want_n : 1);
    assert_non_null(got);
    if (xpb_pack_plan_write(pub, m, got) != want_n || memcmp(got, want, want_n) != 0)
        fail_msg("%s: plan write differs", what);
    free(got);
    free(want);
    return ours;
}

/* ---- Stanzas from XML: the corpus and generated traffic --------------------------- */

typedef struct feed {
    const char *what;
    size_t n, n_ours;
    xpb_arena *back; /* records unpacked from our bytes */
} feed;

/* A stanza record as the reader makes it, and the same record unpacked from
 * the bytes (protobuf-c's own layout of it): both must match protobuf-c. */
static int on_stanza(void *ud, const xpb_node *el)
{
    feed *fd = ud;
    char what[320], err[256];
    snprintf(what, sizeof what, "%s stanza %zu", fd->what, fd->n);
    xpb_stanza *st = NULL, *back = NULL;
    xpb_arena_reset(A);
    int rc = xpb_stanza_from_xml(A, el, &st);
    if (rc) fail_msg("%s: from_xml: %s", what, xpb_strerror(rc));
    fd->n_ours += check_same(what, &st->base, OURS);

    xpb_buf rec;
    xpb_buf_init(&rec, 0);
    assert_int_equal(xpb_stanza_pack(&rec, st), 0);
    xpb_arena_reset(fd->back);
    rc = xpb_stanza_unpack(fd->back, (const uint8_t *)rec.data, rec.len, NULL, &back, err,
                           sizeof err);
    if (rc) fail_msg("%s: unpack: %s (%s)", what, xpb_strerror(rc), err);
    check_same(what, &back->base, OURS);
    xpb_buf_free(&rec);
    fd->n++;
    return 0;
}

static size_t feed_document(const char *what, const char *data, size_t len)
{
    feed fd = {.what = what, .back = xpb_arena_new(0)};
    assert_non_null(fd.back);
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    xpb_reader *r = NULL;
    assert_int_equal(xpb_reader_new(&r, XPB_READER_AUTO, NULL, &cb, &fd), 0);
    int rc = xpb_reader_feed(r, data, len);
    if (rc) fail_msg("%s: reader: %s", what, xpb_reader_error(r));
    xpb_reader_free(r);
    xpb_arena_free(fd.back);
    assert_int_equal(fd.n_ours, fd.n);
    return fd.n;
}

static void feed_corpus_file(const char *name, const char *data, size_t len, void *ud)
{
    *(size_t *)ud += feed_document(name, data, len);
}

static void test_corpus(void **state)
{
    (void)state;
    size_t stanzas = 0;
    size_t files = xpb_test_each_xml(XPB_CORPUS_DIR, feed_corpus_file, &stanzas);
    assert_true(files >= 10 && files != (size_t)-1);
    assert_true(stanzas >= 150); /* the corpus is there and not a token one */
}

static void test_generated(void **state)
{
    (void)state;
    static const uint64_t seeds[] = {1, 20240601};
    for (size_t s = 0; s < N_OF(seeds); s++) {
        xpb_traffic *t = xpb_traffic_new(seeds[s]);
        assert_non_null(t);
        xpb_buf in;
        xpb_buf_init(&in, 0);
        for (int i = 0; i < GENERATED_COUNT; i++)
            assert_non_null(xpb_traffic_next(t, &in));
        assert_int_equal(feed_document("generated", in.data, in.len), GENERATED_COUNT);
        xpb_buf_free(&in);
        xpb_traffic_free(t);
    }
}

/* ---- Random records of any message type, from its descriptor ------------------------ */

typedef struct rnd {
    uint64_t s;
    int budget; /* nested messages left for this record */
} rnd;

static uint64_t next(rnd *r) /* splitmix64 */
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static unsigned below(rnd *r, unsigned n)
{
    return (unsigned)(next(r) % n);
}

/* Mostly the values at varint and zigzag boundaries, sometimes any. */
static uint64_t pick_bits(rnd *r, unsigned width)
{
    static const uint64_t edges[] = {0,
                                     1,
                                     127,
                                     128,
                                     16383,
                                     16384,
                                     0x7FFFFFFF,
                                     0x80000000,
                                     0xFFFFFFFF,
                                     0x100000000,
                                     (uint64_t)INT64_MAX,
                                     (uint64_t)INT64_MIN,
                                     UINT64_MAX,
                                     (uint64_t)-2,
                                     (uint64_t)-128,
                                     (uint64_t)-129};
    uint64_t v = below(r, 3) == 0 ? next(r) : edges[below(r, N_OF(edges))];
    return width == 4 ? (uint64_t)(uint32_t)v : v;
}

/* Mostly short, sometimes at the one/two/three-byte length boundaries. */
static size_t pick_len(rnd *r)
{
    static const size_t lens[] = {0, 1, 127, 128, 300, 16383, 16384};
    return below(r, 8) == 0 ? lens[below(r, N_OF(lens))] : below(r, 24);
}

static char *random_string(rnd *r)
{
    size_t n = pick_len(r);
    char *s = xpb_arena_alloc(A, n + 1);
    assert_non_null(s);
    unsigned first = (unsigned)next(r);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(1 + (first + i) % 255); /* no NUL inside */
    s[n] = '\0';
    return s;
}

static ProtobufCMessage *random_msg(rnd *r, const ProtobufCMessageDescriptor *d, int depth);

/* A value of f's type at member; false when a message was wanted and none
 * is left in the budget (member is then NULL). */
static bool random_value(rnd *r, const ProtobufCFieldDescriptor *f, void *member, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        *(char **)member = below(r, 8) == 0 && f->default_value != NULL ? (char *)f->default_value
                                                                        : random_string(r);
        return true;
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = member;
        b->len = pick_len(r);
        b->data = b->len || below(r, 2) ? xpb_arena_alloc(A, b->len + 1) : NULL;
        uint8_t first = (uint8_t)next(r);
        for (size_t i = 0; i < b->len; i++)
            b->data[i] = (uint8_t)(first + i);
        return true;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        *(ProtobufCMessage **)member =
            depth < 4 && r->budget > 0 ? random_msg(r, f->descriptor, depth + 1) : NULL;
        return *(ProtobufCMessage **)member != NULL;
    case PROTOBUF_C_TYPE_BOOL: {
        static const protobuf_c_boolean bools[] = {0, 1, 2, -1};
        *(protobuf_c_boolean *)member = bools[below(r, 4)];
        return true;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: {
        uint64_t v = pick_bits(r, 8);
        memcpy(member, &v, 8);
        return true;
    }
    default: { /* the 32-bit types, float and enum (protobuf-c never checks enums) */
        uint32_t v = (uint32_t)pick_bits(r, 4);
        memcpy(member, &v, 4);
        return true;
    }
    }
}

static size_t item_bytes(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    default:
        return 4;
    }
}

/* protobuf-c cannot size NULL items of repeated strings or messages, so a
 * repeated message field stops at the first item the budget refuses. */
static void random_repeated(rnd *r, const ProtobufCFieldDescriptor *f, char *base, int depth)
{
    size_t want = below(r, 3) == 0 ? 0 : below(r, 5);
    if (below(r, 20) == 0 && f->type != PROTOBUF_C_TYPE_MESSAGE) want = 100 + below(r, 100);
    size_t step = item_bytes(f->type), n = 0;
    char *items = want || below(r, 2) ? xpb_arena_calloc(A, (want + 1) * step) : NULL;
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_PACKED) && want > 0) r->budget--;
    while (n < want && random_value(r, f, items + n * step, depth))
        n++;
    *(size_t *)(base + f->quantifier_offset) = n;
    *(char **)(base + f->offset) = items;
}

/* A oneof member: usually its case and a value, sometimes the case with a
 * NULL string or message, or a case no member has. A later member of the
 * same oneof replaces case and value together. */
static void random_oneof(rnd *r, const ProtobufCFieldDescriptor *f, char *base, int depth)
{
    bool ptr = f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE;
    if (below(r, 3) != 0) return;
    uint32_t *c = (uint32_t *)(base + f->quantifier_offset);
    switch (below(r, 6)) {
    case 0:
        *c = 999;
        break;
    case 1:
        if (ptr) {
            *c = f->id;
            *(void **)(base + f->offset) = NULL;
            break;
        }
        /* fall through */
    default:
        *c = f->id;
        random_value(r, f, base + f->offset, depth);
        break;
    }
}

static ProtobufCMessage *random_msg(rnd *r, const ProtobufCMessageDescriptor *d, int depth)
{
    ProtobufCMessage *m = xpb_arena_calloc(A, d->sizeof_message);
    assert_non_null(m);
    d->message_init(m);
    r->budget--;
    char *base = (char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        void *member = base + f->offset;
        bool ptr = f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            random_repeated(r, f, base, depth);
        } else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            random_oneof(r, f, base, depth);
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && ptr) {
            if (below(r, 2)) random_value(r, f, member, depth);
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
            /* A value without its has_ flag must not be written either. */
            *(protobuf_c_boolean *)(base + f->quantifier_offset) = (protobuf_c_boolean)below(r, 2);
            if (below(r, 2)) random_value(r, f, member, depth);
        } else if (below(r, 8) != 0 || !ptr) { /* required (a NULL one is empty) or proto3 */
            random_value(r, f, member, depth);
        }
    }
    return m;
}

static void check_random(const ProtobufCMessageDescriptor *d, uint64_t seed, enum path path)
{
    rnd r = {.s = seed};
    for (int i = 0; i < RANDOM_PER_TYPE; i++) {
        xpb_arena_reset(A);
        r.budget = RANDOM_NESTED_BUDGET;
        ProtobufCMessage *m = random_msg(&r, d, 0);
        char what[128];
        snprintf(what, sizeof what, "random %s %d (seed %llu)", d->name, i,
                 (unsigned long long)seed);
        check_same(what, m, path);
    }
}

static void test_random_records(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *ours[] = {
        &xpbtest__scalars__descriptor,     &xpbtest__required__descriptor,
        &xpbtest__repeated__descriptor,    &xpbtest__with_oneof__descriptor,
        &xpbtest__tree__descriptor,        &xpbtest__unordered__descriptor,
        &xpb__v1__stanza__descriptor,      &xpb__v1__element__descriptor,
        &xpb__v1__request__descriptor,     &xpb__v1__response__descriptor,
        &xpb__v1__event_batch__descriptor,
    };
    for (size_t i = 0; i < N_OF(ours); i++)
        check_random(ours[i], 1000 + i, OURS);
    check_random(&xpbtest__plain3__descriptor, 7, FALLBACK);
}

/* ---- Hand-built records ----------------------------------------------------------- */

static Xpbtest__Scalars *new_scalars(void)
{
    Xpbtest__Scalars *s = xpb_arena_calloc(A, sizeof *s);
    assert_non_null(s);
    xpbtest__scalars__init(s);
    return s;
}

/* m must pack (both ways) to exactly the n bytes at want. */
static void check_bytes(const char *what, const ProtobufCMessage *m, const char *want, size_t n)
{
    check_same(what, m, OURS);
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_pack_append(&b, m), 0);
    assert_int_equal(b.len, n);
    assert_memory_equal(b.data, want, n);
    xpb_buf_free(&b);
}
#define CHECK_BYTES(what, m, lit) check_bytes(what, m, lit, sizeof(lit) - 1)

static void test_varint_edges(void **state)
{
    (void)state;
    Xpbtest__Scalars *s = new_scalars();
    CHECK_BYTES("empty", &s->base, "");
    s->has_i32 = 1, s->i32 = -1;
    CHECK_BYTES("int32 -1", &s->base, "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01");
    s->i32 = INT32_MIN;
    CHECK_BYTES("int32 min", &s->base, "\x08\x80\x80\x80\x80\xf8\xff\xff\xff\xff\x01");
    s->has_i32 = 0;
    s->has_color = 1, s->color = XPBTEST__COLOR__COLOR_NEGATIVE;
    CHECK_BYTES("enum -3", &s->base, "\x70\xfd\xff\xff\xff\xff\xff\xff\xff\xff\x01");
    s->color = XPBTEST__COLOR__COLOR_BIG;
    CHECK_BYTES("enum 2000000", &s->base, "\x70\x80\x89\x7a");
    s->has_color = 0;
    s->has_s32 = 1, s->s32 = INT32_MIN;
    CHECK_BYTES("sint32 min", &s->base, "\x10\xff\xff\xff\xff\x0f");
    s->s32 = INT32_MAX;
    CHECK_BYTES("sint32 max", &s->base, "\x10\xfe\xff\xff\xff\x0f");
    s->has_s32 = 0;
    s->has_s64 = 1, s->s64 = INT64_MIN;
    CHECK_BYTES("sint64 min", &s->base, "\x28\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01");
    s->s64 = -1;
    CHECK_BYTES("sint64 -1", &s->base, "\x28\x01");
    s->has_s64 = 0;
    s->has_u64 = 1, s->u64 = UINT64_MAX;
    CHECK_BYTES("uint64 max", &s->base, "\x48\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01");
    s->has_u64 = 0;
    s->has_tag5 = 1, s->tag5 = -1;
    CHECK_BYTES("tag 2^29-1", &s->base, "\xf8\xff\xff\xff\x0f\x01");
    s->has_tag5 = 0;
    s->has_f32 = 1, s->f32 = 0x01020304;
    s->has_fl = 1, s->fl = -0.0f;
    s->has_db = 1, s->db = 1.0;
    s->has_sf64 = 1, s->sf64 = -2;
    CHECK_BYTES("fixed", &s->base,
                "\x31\xfe\xff\xff\xff\xff\xff\xff\xff"
                "\x45\x04\x03\x02\x01"
                "\x5d\x00\x00\x00\x80"
                "\x61\x00\x00\x00\x00\x00\x00\xf0\x3f");
}

/* Every optional field present, for the field order and tag sizes. */
static void test_all_scalars(void **state)
{
    (void)state;
    Xpbtest__Scalars *s = new_scalars();
    s->has_i32 = s->has_s32 = s->has_sf32 = s->has_i64 = s->has_s64 = s->has_sf64 = 1;
    s->has_u32 = s->has_f32 = s->has_u64 = s->has_f64 = s->has_fl = s->has_db = 1;
    s->has_b = s->has_color = s->has_by = s->has_def_bytes = s->has_def_i32 = 1;
    s->has_def_b = s->has_tag2 = s->has_tag4 = s->has_tag5 = 1;
    s->i32 = -5, s->s32 = -5, s->sf32 = -5, s->i64 = -5, s->s64 = -5, s->sf64 = -5;
    s->u32 = 300, s->f32 = 300, s->u64 = 1ull << 40, s->f64 = 1ull << 40;
    s->fl = 1.5f, s->db = -2.25, s->b = 1, s->color = XPBTEST__COLOR__COLOR_RED;
    s->str = "text", s->by.data = (uint8_t *)"\0\1\2", s->by.len = 3;
    s->sub = new_scalars();
    s->def_str = "other", s->def_i32 = -7, s->def_b = 0;
    s->tag2 = 5, s->tag4 = 1, s->tag5 = 5;
    char *big = xpb_arena_calloc(A, 20000);
    memset(big, 'x', 19999);
    s->tag3 = big; /* three-byte length */
    check_same("all scalars", &s->base, OURS);
}

/* Absent and empty differ; a string equal to its default is written unless
 * it is the default's own pointer; a bool is 0 or 1 on the wire. */
static void test_presence(void **state)
{
    (void)state;
    Xpbtest__Scalars *s = new_scalars();
    CHECK_BYTES("defaults only", &s->base, ""); /* def_str, def_bytes are set but absent */
    s->str = "";
    CHECK_BYTES("empty string", &s->base, "\x7a\x00");
    s->str = NULL;
    s->def_str = xpb_arena_strndup(A, "hello", 5);
    CHECK_BYTES("default's value, not pointer", &s->base, "\x92\x01\x05hello");
    s->def_str = NULL;
    s->has_by = 1; /* {0, NULL} */
    CHECK_BYTES("empty bytes", &s->base, "\x82\x01\x00");
    s->has_by = 0;
    s->by.data = (uint8_t *)"ab", s->by.len = 2; /* no has_ flag: absent */
    s->i32 = 5;
    CHECK_BYTES("values without has_", &s->base, "");
    s->has_b = 1, s->b = 2;
    CHECK_BYTES("bool 2", &s->base, "\x68\x01");
    s->b = 0;
    CHECK_BYTES("bool false", &s->base, "\x68\x00");
    s->has_b = 0;
    s->sub = new_scalars();
    CHECK_BYTES("empty message", &s->base, "\x8a\x01\x00");
}

static void test_required(void **state)
{
    (void)state;
    Xpbtest__Required q;
    xpbtest__required__init(&q);
    q.color = XPBTEST__COLOR__COLOR_ZERO; /* init gives the first value, -3 */
    /* NULL string and message are written empty, like protobuf-c does. */
    CHECK_BYTES("required, zero", &q.base,
                "\x08\x00\x10\x00\x19\x00\x00\x00\x00\x00\x00\x00\x00\x20\x00\x28\x00"
                "\x32\x00\x3a\x00\x42\x00\x4d\x00\x00\x00\x00");
    q.i32 = -1, q.s64 = INT64_MAX, q.db = 3.5, q.b = 7, q.color = XPBTEST__COLOR__COLOR_NEGATIVE;
    q.str = "s", q.by.data = (uint8_t *)"b", q.by.len = 1, q.sub = new_scalars(), q.f32 = 9;
    q.sub->has_i32 = 1;
    check_same("required, set", &q.base, OURS);
}

static void test_repeated(void **state)
{
    (void)state;
    Xpbtest__Repeated r;
    xpbtest__repeated__init(&r);
    uint32_t u[200];
    r.u32 = u, r.n_u32 = 0; /* an array but no items */
    CHECK_BYTES("empty repeated", &r.base, "");
    int32_t neg[13];
    for (size_t i = 0; i < N_OF(neg); i++)
        neg[i] = -(int32_t)i - 1;
    /* 13 negative int32: a 130-byte payload, where protobuf-c first guesses a
     * one-byte length and moves the payload. */
    r.p_i32 = neg, r.n_p_i32 = 13;
    check_same("packed negative int32", &r.base, OURS);
    r.n_p_i32 = 1;
    CHECK_BYTES("packed one", &r.base, "\xaa\x01\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01");
    r.n_p_i32 = 0;
    for (size_t i = 0; i < N_OF(u); i++)
        u[i] = (uint32_t)i;
    r.p_u32 = u;
    r.n_p_u32 = 127; /* payload 127 then 128 bytes: the length grows a byte */
    check_same("packed 127 bytes", &r.base, OURS);
    r.n_p_u32 = 128;
    check_same("packed 128 bytes", &r.base, OURS);
    r.n_p_u32 = 0;
    r.n_u32 = 3;
    CHECK_BYTES("unpacked", &r.base, "\x38\x00\x38\x01\x38\x02");
    char *strs[] = {"", "a", ""};
    r.str = strs, r.n_str = 3;
    Xpbtest__Scalars *subs[] = {new_scalars(), new_scalars()};
    r.sub = subs, r.n_sub = 2;
    CHECK_BYTES("strings and messages", &r.base,
                "\x38\x00\x38\x01\x38\x02\x7a\x00\x7a\x01\x61\x7a\x00\x8a\x01\x00\x8a\x01\x00");
    protobuf_c_boolean bools[] = {0, 1, 5};
    r.p_b = bools, r.n_p_b = 3;
    float fl[] = {1.0f, -1.0f};
    r.p_fl = fl, r.n_p_fl = 2;
    double db[] = {0.5};
    r.db = db, r.n_db = 1;
    check_same("bools and floats", &r.base, OURS);
}

static void test_oneof(void **state)
{
    (void)state;
    Xpbtest__WithOneof o;
    xpbtest__with_oneof__init(&o);
    o.has_before = 1, o.before = 1, o.after = "z";
    CHECK_BYTES("no case", &o.base, "\x08\x01\x3a\x01z");
    o.choice_case = XPBTEST__WITH_ONEOF__CHOICE_A, o.a = -2;
    CHECK_BYTES("int32 member", &o.base,
                "\x08\x01\x10\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01\x3a\x01z");
    o.choice_case = XPBTEST__WITH_ONEOF__CHOICE_B, o.b = NULL;
    CHECK_BYTES("string member NULL", &o.base, "\x08\x01\x3a\x01z");
    o.b = "";
    CHECK_BYTES("string member empty", &o.base, "\x08\x01\x1a\x00\x3a\x01z");
    o.choice_case = XPBTEST__WITH_ONEOF__CHOICE_C, o.c = NULL;
    CHECK_BYTES("message member NULL", &o.base, "\x08\x01\x3a\x01z");
    o.c = new_scalars();
    CHECK_BYTES("message member", &o.base, "\x08\x01\x22\x00\x3a\x01z");
    o.choice_case = XPBTEST__WITH_ONEOF__CHOICE_D, o.d.data = NULL, o.d.len = 0;
    CHECK_BYTES("bytes member empty", &o.base, "\x08\x01\x2a\x00\x3a\x01z");
    o.choice_case = XPBTEST__WITH_ONEOF__CHOICE_E, o.e = INT64_MIN;
    check_same("sint64 member", &o.base, OURS);
    o.choice_case = (Xpbtest__WithOneof__ChoiceCase)999;
    CHECK_BYTES("unknown case", &o.base, "\x08\x01\x3a\x01z");
}

static void test_descriptor_order(void **state)
{
    (void)state;
    Xpbtest__Unordered u;
    xpbtest__unordered__init(&u);
    uint32_t m[] = {1, 300};
    u.z = "z", u.a = "a", u.m = m, u.n_m = 2;
    CHECK_BYTES("by number", &u.base,
                "\x0a\x01"
                "a"
                "\x2a\x03\x01\xac\x02"
                "\x4a\x01z");
}

/* ---- What goes to protobuf-c ---------------------------------------------------- */

static void test_unknown_fields(void **state)
{
    (void)state;
    /* Scalars{i32: 1, field 100: varint 5} and the same inside sub. */
    static const uint8_t top[] = {0x08, 0x01, 0xa0, 0x06, 0x05};
    static const uint8_t nested[] = {0x8a, 0x01, 0x05, 0x08, 0x01, 0xa0, 0x06, 0x05, 0x08, 0x02};
    ProtobufCMessage *m =
        protobuf_c_message_unpack(&xpbtest__scalars__descriptor, NULL, sizeof top, top);
    assert_non_null(m);
    assert_int_equal(m->n_unknown_fields, 1);
    check_same("unknown field", m, FALLBACK);
    protobuf_c_message_free_unpacked(m, NULL);
    m = protobuf_c_message_unpack(&xpbtest__scalars__descriptor, NULL, sizeof nested, nested);
    assert_non_null(m);
    check_same("unknown field in a sub-message", m, FALLBACK);
    protobuf_c_message_free_unpacked(m, NULL);

    /* A stanza with one, through xpb_stanza_pack. */
    static const uint8_t stanza[] = {0x08, 0x01, 0xb8, 0x3e, 0x07}; /* kind 1, field 999 */
    xpb_stanza *st = NULL;
    char err[256];
    assert_int_equal(xpb_stanza_unpack(A, stanza, sizeof stanza, NULL, &st, err, sizeof err), 0);
    assert_int_equal(st->base.n_unknown_fields, 1);
    check_same("stanza with an unknown field", &st->base, FALLBACK);
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_stanza_pack(&b, st), 0);
    assert_int_equal(b.len, sizeof stanza);
    assert_memory_equal(b.data, stanza, sizeof stanza);
    xpb_buf_free(&b);
}

static Xpbtest__Tree *new_tree(const char *name)
{
    Xpbtest__Tree *t = xpb_arena_calloc(A, sizeof *t);
    assert_non_null(t);
    xpbtest__tree__init(t);
    t->name = (char *)name;
    return t;
}

/* A root with n named children: 1 + 2n lengths (the root's name, and each
 * child's message and name). */
static Xpbtest__Tree *wide_tree(size_t n)
{
    Xpbtest__Tree *root = new_tree("root");
    root->child = xpb_arena_calloc(A, n * sizeof *root->child);
    for (size_t i = 0; i < n; i++)
        root->child[i] = new_tree(i % 2 ? "odd" : "");
    root->n_child = n;
    return root;
}

static void test_plan_limits(void **state)
{
    (void)state;
    size_t fit = (XPB_PACK_MAX_LENGTHS - 1) / 2;
    check_same("lengths just fit", &wide_tree(fit)->base, OURS);
    check_same("one length too many", &wide_tree(fit + 1)->base, FALLBACK);
    Xpbtest__Tree *deep = new_tree("0");
    for (int i = 0; i < XPB_PACK_MAX_LENGTHS / 2 + 100; i++) {
        Xpbtest__Tree *t = new_tree("n");
        t->next = deep;
        deep = t;
    }
    check_same("deeper than the lengths", &deep->base, FALLBACK);

    /* Few messages, many fields: 200 Scalars of 25 fields each note more
     * than XPB_PACK_MAX_FIELDS fields. 100 of them fit. */
    Xpbtest__Scalars *chain[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < (k ? 200 : 100); i++) {
            Xpbtest__Scalars *s = new_scalars();
            s->has_i32 = s->has_s32 = s->has_sf32 = s->has_i64 = s->has_s64 = s->has_sf64 = 1;
            s->has_u32 = s->has_f32 = s->has_u64 = s->has_f64 = s->has_fl = s->has_db = 1;
            s->has_b = s->has_color = s->has_by = s->has_def_bytes = s->has_def_i32 = 1;
            s->has_def_b = s->has_tag2 = s->has_tag4 = s->has_tag5 = 1;
            s->str = "s", s->def_str = "d", s->tag3 = "t";
            s->sub = chain[k];
            chain[k] = s;
        }
    }
    check_same("100 full messages", &chain[0]->base, OURS);
    check_same("200 full messages", &chain[1]->base, FALLBACK);
}

static void test_proto3(void **state)
{
    (void)state;
    Xpbtest__Plain3 p;
    xpbtest__plain3__init(&p);
    check_same("proto3 zero", &p.base, FALLBACK);
    p.i32 = 5, p.str = "x";
    check_same("proto3 set", &p.base, FALLBACK);
}

/* out->max and the error paths leave out as it was, on both paths. */
static void test_append_limits(void **state)
{
    (void)state;
    const ProtobufCMessage *msgs[] = {&wide_tree(3)->base, &wide_tree(600)->base};
    for (size_t i = 0; i < N_OF(msgs); i++) {
        size_t n = protobuf_c_message_get_packed_size(msgs[i]);
        xpb_buf b;
        xpb_buf_init(&b, n + 1);
        assert_int_equal(xpb_buf_append(&b, "xy", 2), 0);
        assert_int_equal(xpb_pack_append(&b, msgs[i]), XPB_ETOOBIG);
        assert_int_equal(b.len, 2);
        b.max = n + 2;
        assert_int_equal(xpb_pack_append(&b, msgs[i]), 0);
        assert_int_equal(b.len, n + 2);
        xpb_buf_free(&b);
    }
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_stanza_pack(NULL, NULL), XPB_EINVAL);
    assert_int_equal(xpb_stanza_pack(&b, NULL), XPB_EINVAL);
    xpb_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint_edges),     cmocka_unit_test(test_all_scalars),
        cmocka_unit_test(test_presence),         cmocka_unit_test(test_required),
        cmocka_unit_test(test_repeated),         cmocka_unit_test(test_oneof),
        cmocka_unit_test(test_descriptor_order), cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_plan_limits),      cmocka_unit_test(test_proto3),
        cmocka_unit_test(test_append_limits),    cmocka_unit_test(test_random_records),
        cmocka_unit_test(test_corpus),           cmocka_unit_test(test_generated),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
