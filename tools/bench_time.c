/* Throughput and heap allocations of each path over the corpus, on one core:
 * every timed loop repeats whole passes until min_time has passed, best of 3
 * runs (CLOCK_MONOTONIC). Parsers are fed the same chunks: one stanza each. */
#include "bench.h"

#include <expat.h>
#include <stdlib.h>
#include <string.h>
#include <strophe.h>
#include <time.h>

#include "xpb_error.h"
#include "expat_compat.h"

const char *const bench_path_names[PATH_COUNT] = {
    "XML -> record -> bytes", "XML -> generic record -> bytes", "our reader alone",
    "bytes -> record -> XML", "generic bytes -> record -> XML", "record -> XML",
    "expat, empty handlers",
    "libstrophe stanza parse"};
const char *const bench_path_keys[PATH_COUNT] = {
    "xml_to_pb", "xml_to_generic", "reader_only", "pb_to_xml", "generic_to_xml", "rec_to_xml",
    "expat",
    "libstrophe"};

#define BENCH_RUNS 3
/* The root every stanza of a FRAGMENTS-style feed sits under, for expat. */
static const char expat_root[] = "<stream xmlns='jabber:client'>";

typedef struct bench_ctx {
    const bench_corpus *c;
    const bench_encoded *enc;
    enum bench_path path;
    xpb_arena *arena;
    xpb_buf out;
    xpb_reader *reader;
    XML_Parser expat;
    xmpp_ctx_t *strophe;
    xpb_arena *rec_arena; /* PATH_WRITE: every record, unpacked once */
    xpb_stanza **recs;
    size_t errors;       /* in the current pass */
    uint64_t sink;       /* bytes produced, so no work is optimised away */
    char err[256];
} bench_ctx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- XML -> record -> bytes ------------------------------------------- */
static int on_enc_stanza(void *ud, const xpb_node *el)
{
    bench_ctx *b = ud;
    xpb_stanza *st = NULL;
    xpb_arena_reset(b->arena);
    xpb_buf_reset(&b->out);
    int rc = b->path == PATH_ENC_GENERIC ? bench_generic_record(b->arena, el, &st)
                                         : xpb_stanza_from_xml(b->arena, el, &st);
    if (rc == 0) rc = xpb_stanza_pack(&b->out, st);
    if (rc) b->errors++;
    b->sink += b->out.len;
    return 0;
}

static int on_empty_stanza(void *ud, const xpb_node *el)
{
    bench_ctx *b = ud;
    b->sink += (uintptr_t)el->name[0];
    return 0;
}

static void pass_reader(bench_ctx *b)
{
    if (xpb_reader_reset(b->reader)) b->errors++;
    for (size_t i = 0; i < b->c->n; i++)
        if (xpb_reader_feed(b->reader, bench_solo(b->c, i), b->c->st[i].solo_len)) {
            b->errors++;
            snprintf(b->err, sizeof b->err, "%s", xpb_reader_error(b->reader));
            xpb_reader_reset(b->reader);
        }
}

/* ---- bytes -> record -> XML ------------------------------------------- */
static void pass_decode(bench_ctx *b)
{
    int fmt = b->path == PATH_DEC ? FMT_PB : FMT_GENERIC;
    const uint8_t *data = (const uint8_t *)b->enc->data[fmt].data;
    const size_t *off = b->enc->off[fmt];
    for (size_t i = 0; i < b->c->n; i++) {
        xpb_stanza *st = NULL;
        if (off[i + 1] == off[i]) {
            b->errors++;
            continue;
        }
        xpb_arena_reset(b->arena);
        xpb_buf_reset(&b->out);
        int rc = xpb_stanza_unpack(b->arena, data + off[i], off[i + 1] - off[i], NULL, &st,
                                   b->err, sizeof b->err);
        if (rc == 0)
            rc = xpb_stanza_to_xml_prechecked(&b->out, st, "", NULL, b->err, sizeof b->err);
        if (rc) b->errors++;
        b->sink += b->out.len;
    }
}

/* ---- record -> XML (records unpacked beforehand; checked and written) ---- */
static void pass_write(bench_ctx *b)
{
    for (size_t i = 0; i < b->c->n; i++) {
        if (b->recs[i] == NULL) {
            b->errors++;
            continue;
        }
        xpb_buf_reset(&b->out);
        if (xpb_stanza_to_xml(&b->out, b->recs[i], "", NULL, b->err, sizeof b->err)) b->errors++;
        b->sink += b->out.len;
    }
}

/* ---- references --------------------------------------------------------- */
static void XMLCALL x_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    (void)ud;
    (void)name;
    (void)atts;
}

static void XMLCALL x_end(void *ud, const XML_Char *name)
{
    (void)ud;
    (void)name;
}

static void XMLCALL x_chars(void *ud, const XML_Char *s, int len)
{
    (void)ud;
    (void)s;
    (void)len;
}

static void pass_expat(bench_ctx *b)
{
    /* Reset clears the handlers and the deferral switch: set them again, as
     * our reader does (same encoding, no reparse deferral, so each chunk is
     * parsed when fed; an expat without the switch never defers). */
    XML_ParserReset(b->expat, "UTF-8");
    xpb_expat_disable_deferral(b->expat);
    XML_SetElementHandler(b->expat, x_start, x_end);
    XML_SetCharacterDataHandler(b->expat, x_chars);
    if (XML_Parse(b->expat, expat_root, (int)sizeof expat_root - 1, 0) != XML_STATUS_OK)
        b->errors++;
    for (size_t i = 0; i < b->c->n; i++)
        if (XML_Parse(b->expat, bench_solo(b->c, i), (int)b->c->st[i].solo_len, 0) !=
            XML_STATUS_OK)
            b->errors++;
}

static void pass_strophe(bench_ctx *b)
{
    for (size_t i = 0; i < b->c->n; i++) {
        xmpp_stanza_t *s = xmpp_stanza_new_from_string(b->strophe, bench_solo(b->c, i));
        if (!s) {
            b->errors++;
            continue;
        }
        b->sink += (uintptr_t)xmpp_stanza_get_name(s)[0];
        xmpp_stanza_release(s);
    }
}

static void run_pass(bench_ctx *b)
{
    b->errors = 0;
    switch (b->path) {
    case PATH_ENC:
    case PATH_ENC_GENERIC:
    case PATH_READER: pass_reader(b); break;
    case PATH_DEC:
    case PATH_DEC_GENERIC: pass_decode(b); break;
    case PATH_WRITE: pass_write(b); break;
    case PATH_EXPAT: pass_expat(b); break;
    case PATH_STROPHE: pass_strophe(b); break;
    case PATH_COUNT: break;
    }
}

/* ---- harness ------------------------------------------------------------ */
static int unpack_all(bench_ctx *b)
{
    const uint8_t *data = (const uint8_t *)b->enc->data[FMT_PB].data;
    const size_t *off = b->enc->off[FMT_PB];
    b->rec_arena = xpb_arena_new(1u << 20);
    b->recs = calloc(b->c->n ? b->c->n : 1, sizeof *b->recs);
    if (!b->rec_arena || !b->recs) return XPB_ENOMEM;
    for (size_t i = 0; i < b->c->n; i++)
        if (off[i + 1] > off[i] &&
            xpb_stanza_unpack(b->rec_arena, data + off[i], off[i + 1] - off[i], NULL, &b->recs[i],
                              b->err, sizeof b->err) != 0)
            b->recs[i] = NULL;
    return 0;
}

static int ctx_open(bench_ctx *b, enum bench_path path)
{
    b->path = path;
    xpb_buf_init(&b->out, 0);
    b->arena = xpb_arena_new(0);
    if (!b->arena) return XPB_ENOMEM;
    if (path == PATH_ENC || path == PATH_ENC_GENERIC || path == PATH_READER) {
        xpb_reader_callbacks cb = {.stanza = path == PATH_READER ? on_empty_stanza
                                                                 : on_enc_stanza};
        return xpb_reader_new(&b->reader, XPB_READER_FRAGMENTS, NULL, &cb, b);
    }
    if (path == PATH_WRITE) return unpack_all(b);
    if (path == PATH_EXPAT) {
        b->expat = XML_ParserCreateNS("UTF-8", '\x01');
        return b->expat ? 0 : XPB_ENOMEM;
    }
    if (path == PATH_STROPHE) {
        b->strophe = xmpp_ctx_new(NULL, NULL);
        return b->strophe ? 0 : XPB_ENOMEM;
    }
    return 0;
}

static void ctx_close(bench_ctx *b)
{
    xpb_reader_free(b->reader);
    if (b->expat) XML_ParserFree(b->expat);
    if (b->strophe) xmpp_ctx_free(b->strophe);
    xpb_arena_free(b->arena);
    xpb_arena_free(b->rec_arena);
    free(b->recs);
    xpb_buf_free(&b->out);
    memset(b, 0, sizeof *b);
}

static size_t solo_bytes(const bench_corpus *c)
{
    size_t total = 0;
    for (size_t i = 0; i < c->n; i++) total += c->st[i].solo_len;
    return total;
}

/* Warm-up pass, a counted pass (allocations), then the timed runs. */
static void measure_path(bench_ctx *b, double min_time, bench_speed *out)
{
    run_pass(b);
    uint64_t a0 = bench_alloc_count();
    run_pass(b);
    uint64_t a1 = bench_alloc_count();
    out->errors = b->errors;
    out->allocs_per_stanza = (double)(a1 - a0) / (double)b->c->n;
    double best = 0;
    for (int run = 0; run < BENCH_RUNS; run++) {
        unsigned passes = 0;
        double t0 = now_s(), dt;
        do {
            run_pass(b);
            passes++;
            dt = now_s() - t0;
        } while (dt < min_time);
        double rate = (double)passes * (double)b->c->n / dt;
        if (rate > best) {
            best = rate;
            out->passes = passes;
        }
    }
    out->stanzas_per_s = best;
    out->mb_per_s = best / (double)b->c->n * (double)solo_bytes(b->c) / 1e6;
}

int bench_measure_speeds(const bench_corpus *c, const bench_encoded *enc, double min_time,
                         unsigned mask, bench_speed out[PATH_COUNT], char *err, size_t errlen)
{
    xmpp_initialize();
    for (int p = 0; p < PATH_COUNT; p++) {
        if (!(mask & (1u << p))) continue;
        bench_ctx b = {.c = c, .enc = enc};
        int rc = ctx_open(&b, (enum bench_path)p);
        if (rc) {
            snprintf(err, errlen, "%s: cannot set up (%s)", bench_path_names[p], xpb_strerror(rc));
            ctx_close(&b);
            xmpp_shutdown();
            return -1;
        }
        measure_path(&b, min_time, &out[p]);
        if (out[p].errors)
            fprintf(stderr, "xpb-bench: warning: %s: %zu of %zu stanzas failed (%s)\n",
                    bench_path_names[p], out[p].errors, c->n, b.err);
        ctx_close(&b);
    }
    xmpp_shutdown();
    return 0;
}
