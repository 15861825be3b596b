/* Sizes of one corpus in each format (XML, typed records, generic-only
 * records, JSON of the records), raw and deflated two ways: per stanza with
 * Z_SYNC_FLUSH on one long-lived stream (XEP-0138 stream compression) and over
 * the whole stream at once. Binary records in a byte stream carry a varint
 * length (xpb_delim_write); JSON records end with a newline. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "xpb_error.h"

const char *const bench_format_names[FMT_COUNT] = {"xml", "pb", "generic", "json", "pb_plain"};

/* ---- the generic-only record ----------------------------------------------
 * Built here by walking the tree, not through the typed mapping, so that the
 * comparison shows what typed fields buy. Namespace rules as docs/mapping.md:
 * omitted when equal to the parent's, ns_id when in the dictionary. */
static void set_ns(const char *ns, const char *parent_ns, protobuf_c_boolean *has_id,
                   uint32_t *id, char **str)
{
    if (parent_ns && strcmp(ns, parent_ns) == 0) return;
    uint32_t known = ns[0] ? xpb_ns_id(ns) : 0;
    if (known) {
        *has_id = 1;
        *id = known;
    } else {
        *str = (char *)ns;
    }
}

static int generic_element(xpb_arena *a, const xpb_node *el, const char *parent_ns,
                           Xpb__V1__Element **out);

static int generic_attrs(xpb_arena *a, const xpb_node *el, Xpb__V1__Element *e)
{
    if (el->n_attrs == 0) return 0;
    e->attr = xpb_arena_alloc(a, el->n_attrs * sizeof *e->attr);
    if (!e->attr) return XPB_ENOMEM;
    for (size_t i = 0; i < el->n_attrs; i++) {
        Xpb__V1__Attribute *at = xpb_arena_alloc(a, sizeof *at);
        if (!at) return XPB_ENOMEM;
        xpb__v1__attribute__init(at);
        if (el->attrs[i].ns[0]) set_ns(el->attrs[i].ns, NULL, &at->has_ns_id, &at->ns_id, &at->ns);
        at->name = (char *)el->attrs[i].name;
        at->value = (char *)el->attrs[i].value;
        e->attr[e->n_attr++] = at;
    }
    return 0;
}

static int generic_children(xpb_arena *a, const xpb_node *el, Xpb__V1__Element *e)
{
    size_t n = 0;
    for (const xpb_node *ch = el->children; ch; ch = ch->next) n++;
    if (n == 0) return 0;
    e->child = xpb_arena_alloc(a, n * sizeof *e->child);
    if (!e->child) return XPB_ENOMEM;
    for (const xpb_node *ch = el->children; ch; ch = ch->next) {
        Xpb__V1__Node *node = xpb_arena_alloc(a, sizeof *node);
        if (!node) return XPB_ENOMEM;
        xpb__v1__node__init(node);
        if (ch->kind == XPB_NODE_TEXT) {
            node->node_case = XPB__V1__NODE__NODE_TEXT;
            node->text = xpb_arena_strndup(a, ch->text, ch->text_len);
            if (!node->text) return XPB_ENOMEM;
        } else {
            node->node_case = XPB__V1__NODE__NODE_ELEMENT;
            int rc = generic_element(a, ch, el->ns, &node->element);
            if (rc) return rc;
        }
        e->child[e->n_child++] = node;
    }
    return 0;
}

static int generic_element(xpb_arena *a, const xpb_node *el, const char *parent_ns,
                           Xpb__V1__Element **out)
{
    Xpb__V1__Element *e = xpb_arena_alloc(a, sizeof *e);
    if (!e) return XPB_ENOMEM;
    xpb__v1__element__init(e);
    set_ns(el->ns, parent_ns, &e->has_ns_id, &e->ns_id, &e->ns);
    e->name = (char *)el->name;
    int rc = generic_attrs(a, el, e);
    if (rc == 0) rc = generic_children(a, el, e);
    *out = e;
    return rc;
}

int bench_generic_record(xpb_arena *a, const xpb_node *el, xpb_stanza **out)
{
    xpb_stanza *st = xpb_arena_alloc(a, sizeof *st);
    if (!st) return XPB_ENOMEM;
    xpb__v1__stanza__init(st);
    st->has_kind = 1;
    st->kind = XPB__V1__KIND__KIND_OTHER;
    if (strcmp(el->ns, XPB_NS_CLIENT) == 0) {
        if (strcmp(el->name, "message") == 0) st->kind = XPB__V1__KIND__KIND_MESSAGE;
        else if (strcmp(el->name, "presence") == 0) st->kind = XPB__V1__KIND__KIND_PRESENCE;
        else if (strcmp(el->name, "iq") == 0) st->kind = XPB__V1__KIND__KIND_IQ;
    }
    *out = st;
    return generic_element(a, el, XPB_NS_CLIENT, &st->element);
}

/* ---- deflate ------------------------------------------------------------ */
typedef struct zcount {
    z_stream z;
    uint64_t out;
    int ok;
} zcount;

static int zcount_init(zcount *zc)
{
    memset(zc, 0, sizeof *zc);
    zc->ok = deflateInit(&zc->z, Z_DEFAULT_COMPRESSION) == Z_OK;
    return zc->ok ? 0 : XPB_ENOMEM;
}

/* Deflates data with the given flush mode; returns the bytes produced. */
static uint64_t zcount_feed(zcount *zc, const void *data, size_t len, int flush)
{
    unsigned char out[16384];
    uint64_t before = zc->out;
    zc->z.next_in = (Bytef *)data;
    zc->z.avail_in = (uInt)len;
    do {
        zc->z.next_out = out;
        zc->z.avail_out = sizeof out;
        int rc = deflate(&zc->z, flush);
        if (rc == Z_STREAM_ERROR) return 0;
        zc->out += sizeof out - zc->z.avail_out;
    } while (zc->z.avail_out == 0 || (flush == Z_FINISH && zc->z.avail_in));
    return zc->out - before;
}

static void zcount_end(zcount *zc)
{
    if (zc->ok) deflateEnd(&zc->z);
}

/* ---- per stanza --------------------------------------------------------- */
typedef struct size_ctx {
    const bench_corpus *c;
    bench_size_report *rep;
    bench_encoded *enc;
    zcount zsync[FMT_COUNT], zstream[FMT_COUNT];
    xpb_arena *arena;
    xpb_buf rec[FMT_COUNT];     /* the stanza in each format */
    xpb_buf framed;
} size_ctx;

static void account(size_ctx *sc, unsigned kind, int fmt, size_t len, const void *framed,
                    size_t framed_len)
{
    uint64_t z = zcount_feed(&sc->zsync[fmt], framed, framed_len, Z_SYNC_FLUSH);
    zcount_feed(&sc->zstream[fmt], framed, framed_len, Z_NO_FLUSH);
    sc->rep->total.raw[fmt] += len;
    sc->rep->total.zsync[fmt] += z;
    sc->rep->kind[kind].raw[fmt] += len;
    sc->rep->kind[kind].zsync[fmt] += z;
}

/* Encodes one parsed stanza into every record format. */
static int encode_all(size_ctx *sc, const xpb_node *el)
{
    xpb_stanza *st = NULL, *gen = NULL;
    for (int f = 0; f < FMT_COUNT; f++) xpb_buf_reset(&sc->rec[f]);
    xpb_arena_reset(sc->arena);
    int rc = xpb_stanza_from_xml(sc->arena, el, &st);
    if (rc == 0) rc = xpb_stanza_pack(&sc->rec[FMT_PB], st);
    if (rc == 0) rc = xpb_stanza_expand(sc->arena, st);
    if (rc == 0) rc = xpb_stanza_pack(&sc->rec[FMT_PB_PLAIN], st);
    if (rc == 0) rc = xpb_json_write(&sc->rec[FMT_JSON], &st->base);
    if (rc == 0) rc = xpb_buf_append(&sc->rec[FMT_JSON], "\n", 1);
    if (rc == 0) rc = bench_generic_record(sc->arena, el, &gen);
    if (rc == 0) rc = xpb_stanza_pack(&sc->rec[FMT_GENERIC], gen);
    return rc;
}

static int store_record(bench_encoded *enc, int fmt, size_t i, const xpb_buf *rec)
{
    enc->off[fmt][i] = enc->data[fmt].len;
    int rc = xpb_buf_append(&enc->data[fmt], rec->data, rec->len);
    enc->off[fmt][i + 1] = enc->data[fmt].len;
    return rc;
}

/* A stanza the codec cannot map is counted in rep->errors and stored as an
 * empty record (the decode timings skip it); only ENOMEM stops the run. */
static int size_one(size_ctx *sc, size_t i, const xpb_node *el)
{
    const bench_corpus *c = sc->c;
    const bench_stanza *s = &c->st[i];
    int mapped = encode_all(sc, el);
    if (mapped == XPB_ENOMEM) return mapped;
    if (mapped) {
        sc->rep->errors++;
        for (int f = FMT_PB; f < FMT_COUNT; f++) xpb_buf_reset(&sc->rec[f]);
    }
    const char *wire = c->wire.data + s->wire_off;
    account(sc, s->kind, FMT_XML, s->wire_len, wire, s->wire_len);
    int rc = 0;
    for (int f = FMT_PB; f < FMT_COUNT && rc == 0 && mapped == 0; f++) {
        const xpb_buf *r = &sc->rec[f];
        xpb_buf_reset(&sc->framed);
        if (f == FMT_JSON) rc = xpb_buf_append(&sc->framed, r->data, r->len);
        else rc = xpb_delim_write(&sc->framed, (const uint8_t *)r->data, r->len);
        if (rc == 0) account(sc, s->kind, f, r->len, sc->framed.data, sc->framed.len);
    }
    if (rc == 0) rc = store_record(sc->enc, FMT_PB, i, &sc->rec[FMT_PB]);
    if (rc == 0) rc = store_record(sc->enc, FMT_GENERIC, i, &sc->rec[FMT_GENERIC]);
    return rc;
}

/* The reader hands over one stanza per callback; ud carries the index. */
typedef struct size_cb {
    size_ctx *sc;
    size_t i;
    int rc;
    int seen;
} size_cb;

static int on_size_stanza(void *ud, const xpb_node *el)
{
    size_cb *cb = ud;
    cb->seen++;
    cb->rc = size_one(cb->sc, cb->i, el);
    return cb->rc;
}

static int size_ctx_init(size_ctx *sc, const bench_corpus *c, bench_size_report *rep,
                         bench_encoded *enc)
{
    memset(sc, 0, sizeof *sc);
    memset(rep, 0, sizeof *rep);
    memset(enc, 0, sizeof *enc);
    sc->c = c;
    sc->rep = rep;
    sc->enc = enc;
    int rc = 0;
    for (int f = 0; f < FMT_COUNT; f++) {
        xpb_buf_init(&sc->rec[f], 0);
        xpb_buf_init(&enc->data[f], 0);
        enc->off[f] = calloc(c->n + 1, sizeof(size_t));
        if (!enc->off[f]) rc = XPB_ENOMEM;
        if (rc == 0) rc = zcount_init(&sc->zsync[f]);
        if (rc == 0) rc = zcount_init(&sc->zstream[f]);
    }
    xpb_buf_init(&sc->framed, 0);
    sc->arena = xpb_arena_new(0);
    return rc ? rc : sc->arena ? 0 : XPB_ENOMEM;
}

static void size_ctx_fini(size_ctx *sc)
{
    for (int f = 0; f < FMT_COUNT; f++) {
        sc->rep->total.zstream[f] = sc->zstream[f].out;
        zcount_end(&sc->zsync[f]);
        zcount_end(&sc->zstream[f]);
        xpb_buf_free(&sc->rec[f]);
    }
    xpb_buf_free(&sc->framed);
    xpb_arena_free(sc->arena);
}

int bench_measure_sizes(const bench_corpus *c, bench_size_report *rep, bench_encoded *enc,
                        char *err, size_t errlen)
{
    size_ctx sc;
    int rc = size_ctx_init(&sc, c, rep, enc);
    size_cb cb = {.sc = &sc};
    xpb_reader_callbacks rcb = {.stanza = on_size_stanza};
    xpb_reader *r = NULL;
    if (rc == 0) rc = xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &rcb, &cb);
    for (size_t i = 0; rc == 0 && i < c->n; i++) {
        cb.i = i;
        cb.seen = 0;
        rc = xpb_reader_feed(r, bench_solo(c, i), c->st[i].solo_len);
        if (rc == 0 && cb.seen != 1) rc = XPB_EINVAL;
        rep->kind_count[c->st[i].kind]++;
        if (rc) snprintf(err, errlen, "stanza %zu: %s %s", i, xpb_strerror(cb.rc ? cb.rc : rc),
                         r ? xpb_reader_error(r) : "");
    }
    for (int f = 0; rc == 0 && f < FMT_COUNT; f++)
        zcount_feed(&sc.zstream[f], "", 0, Z_FINISH);
    xpb_reader_free(r);
    size_ctx_fini(&sc);
    if (rc == 0 && rep->errors)
        fprintf(stderr, "xpb-bench: warning: %zu of %zu stanzas could not be mapped\n",
                rep->errors, c->n);
    return rc ? -1 : 0;
}

void bench_encoded_free(bench_encoded *e)
{
    for (int f = 0; f < FMT_COUNT; f++) {
        xpb_buf_free(&e->data[f]);
        free(e->off[f]);
    }
    memset(e, 0, sizeof *e);
}
