/* Internal interface of xpb-bench (tools/xpb_bench.c and tools/bench_*.c): the
 * corpus of stanzas, the formats measured on it, and the figures reported.
 * Not installed, not part of the codec; see docs/benchmarks.md. */
#ifndef XPB_BENCH_H
#define XPB_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "xpb_stanza.h"

#define BENCH_MAX_KINDS 48
#define BENCH_LABEL_MAX 40

/* ---- corpus ---------------------------------------------------------------
 * wire: the stanza's bytes as they were on the wire (generator output, or the
 * exact byte range in an input file). solo: a standalone, NUL-terminated form
 * every parser can read on its own (same bytes as wire for generated traffic;
 * for input files the element re-serialised with xmlns='jabber:client'). */
typedef struct bench_stanza {
    size_t wire_off, wire_len;
    size_t solo_off, solo_len;
    unsigned kind;               /* index into bench_corpus.kinds */
} bench_stanza;

typedef struct bench_corpus {
    bench_stanza *st;
    size_t n, cap;
    xpb_buf wire;
    xpb_buf solo;
    char kinds[BENCH_MAX_KINDS][BENCH_LABEL_MAX];
    unsigned n_kinds;
    char source[256];            /* "generator seed 1" or the input path */
} bench_corpus;

void bench_corpus_init(bench_corpus *c);
void bench_corpus_free(bench_corpus *c);
int bench_corpus_generate(bench_corpus *c, uint64_t seed, size_t count);
/* A file of stanzas or a stream, or a directory of such files (one level). */
int bench_corpus_load(bench_corpus *c, const char *path, char *err, size_t errlen);
static inline const char *bench_solo(const bench_corpus *c, size_t i)
{
    return c->solo.data + c->st[i].solo_off;
}

/* ---- formats and sizes --------------------------------------------------- */
/* FMT_PB: typed records with compact forms (what the size goal measures);
 * FMT_PB_PLAIN: the same expanded (xpb_stanza_expand), as the bus publishes
 * them by default; FMT_JSON: JSON of the plain records. */
enum bench_format { FMT_XML, FMT_PB, FMT_GENERIC, FMT_JSON, FMT_PB_PLAIN, FMT_COUNT };
extern const char *const bench_format_names[FMT_COUNT];

typedef struct bench_sizes {
    uint64_t raw[FMT_COUNT];
    uint64_t zsync[FMT_COUNT];   /* deflate, Z_SYNC_FLUSH after each stanza */
    uint64_t zstream[FMT_COUNT]; /* deflate over the whole stream, one Z_FINISH */
} bench_sizes;

/* The encoded records, kept for the decode timings. */
typedef struct bench_encoded {
    xpb_buf data[FMT_COUNT];     /* FMT_PB and FMT_GENERIC: records back to back */
    size_t *off[FMT_COUNT];      /* per stanza offset into data (n + 1 entries) */
} bench_encoded;

typedef struct bench_size_report {
    bench_sizes total;
    bench_sizes kind[BENCH_MAX_KINDS];
    size_t kind_count[BENCH_MAX_KINDS];
    size_t errors;               /* stanzas the codec could not map */
} bench_size_report;

int bench_measure_sizes(const bench_corpus *c, bench_size_report *rep, bench_encoded *enc,
                        char *err, size_t errlen);
void bench_encoded_free(bench_encoded *e);
/* The generic-only record: kind + `element` = the whole tree (no typed fields). */
int bench_generic_record(xpb_arena *a, const xpb_node *el, xpb_stanza **out);

/* ---- speeds -------------------------------------------------------------- */
enum bench_path {
    PATH_ENC,         /* XML -> record -> bytes: reader + from_xml + pack */
    PATH_ENC_GENERIC, /* XML -> generic record -> bytes */
    PATH_READER,      /* our reader alone (empty stanza callback) */
    PATH_DEC,         /* bytes -> record -> XML: unpack + to_xml */
    PATH_DEC_GENERIC, /* the same from generic-only records */
    PATH_WRITE,       /* record -> XML: check + to_xml of records unpacked beforehand */
    PATH_EXPAT,       /* expat, empty handlers, same chunking */
    PATH_STROPHE,     /* libstrophe xmpp_stanza_new_from_string per stanza */
    PATH_COUNT
};
extern const char *const bench_path_names[PATH_COUNT];
extern const char *const bench_path_keys[PATH_COUNT];

typedef struct bench_speed {
    double stanzas_per_s;
    double mb_per_s;             /* MB (10^6 bytes) of solo XML per second */
    double allocs_per_stanza;    /* < 0 when allocations could not be counted */
    size_t errors;               /* stanzas refused in one pass */
    unsigned passes;             /* passes over the corpus in the best run */
} bench_speed;

/* Measures the paths whose bit (1u << path) is set in mask; others stay zero. */
int bench_measure_speeds(const bench_corpus *c, const bench_encoded *enc, double min_time,
                         unsigned mask, bench_speed out[PATH_COUNT], char *err, size_t errlen);

/* ---- heap allocation counting (bench_alloc.c) ---------------------------- */
/* Total malloc/calloc/realloc calls in this process so far. */
uint64_t bench_alloc_count(void);
/* 0 when the counter is seen to count (a loop of allocations), -1 otherwise. */
int bench_alloc_selftest(void);

/* ---- report (bench_report.c) --------------------------------------------- */
typedef struct bench_results {
    const bench_corpus *corpus;
    bench_size_report sizes;
    bench_speed speed[PATH_COUNT];
    double min_time;
    int alloc_counting;          /* 1 when the counter works */
} bench_results;

void bench_print_table(FILE *f, const bench_results *r);
void bench_print_json(FILE *f, const bench_results *r);
void bench_print_csv(FILE *f, const bench_results *r);
/* Writes DIR/sizes_by_kind.dat, DIR/sizes_by_kind.gp and, with gnuplot on
 * PATH, renders DIR/sizes_by_kind.svg and .png. 0, or -1 with err set. */
int bench_write_plots(const bench_results *r, const char *dir, char *err, size_t errlen);

#endif
