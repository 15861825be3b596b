/* xpb-bench: compares XML, our typed Protobuf records, generic-only records and
 * JSON on the same stanzas (sizes raw and deflated, encode/decode speed,
 * allocations) against expat and libstrophe. GitHub issue 3; docs/benchmarks.md. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define BENCH_DEFAULT_COUNT 20000u
#define BENCH_MAX_COUNT 10000000u
#define BENCH_DEFAULT_MIN_TIME 0.5

static const char usage_text[] =
    "NAME\n"
    "    xpb-bench - compare XMPP stanza wire formats: XML, Protobuf records, JSON\n"
    "\n"
    "SYNOPSIS\n"
    "    xpb-bench [--seed N] [--count N] [--input PATH] [--min-time SECONDS]\n"
    "              [--json | --csv] [--plot DIR] [--only KEYS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Measures the same stanzas in four formats: XML as on the wire; the typed\n"
    "    xpb.v1.Stanza records (xpb_stanza_from_xml + pack); generic-only records\n"
    "    (the whole element as a generic Element tree, no typed fields); and JSON of\n"
    "    the typed records. Each is also deflated (zlib, default level) two ways:\n"
    "    per stanza with Z_SYNC_FLUSH on one long-lived stream per format, as\n"
    "    XEP-0138 stream compression does, and over the whole stream at once.\n"
    "    In byte streams, records carry a varint length prefix and JSON a newline.\n"
    "\n"
    "    Speeds, on one core, best of 3 runs, each repeating whole passes over\n"
    "    the stanzas for at least --min-time seconds:\n"
    "      xml_to_pb       XML -> record -> bytes: reader + from_xml + pack, the\n"
    "                      whole path a bridge runs, parsing included\n"
    "      xml_to_generic  the same with generic-only records\n"
    "      reader_only     our reader with an empty stanza callback\n"
    "      pb_to_xml       bytes -> record -> XML: xpb_stanza_unpack + to_xml\n"
    "      generic_to_xml  the same from generic-only records\n"
    "      rec_to_xml      record -> XML: xpb_stanza_to_xml (check + write) of\n"
    "                      records unpacked beforehand; the 1,000,000/s goal\n"
    "      expat           expat (XML_ParserCreateNS) with empty handlers\n"
    "      libstrophe      xmpp_stanza_new_from_string per stanza\n"
    "    Every parser is fed the same bytes in the same chunks (one stanza per\n"
    "    chunk). MB/s counts bytes of XML. Heap allocations per stanza are counted\n"
    "    on a separate, untimed pass after a warm-up pass.\n"
    "\n"
    "    The goals of issue 3 are checked and printed as met or MISSED.\n"
    "\n"
    "OPTIONS\n"
    "    --seed N          generator seed (default 1); same seed, same stanzas\n"
    "    --count N         stanzas to generate (default 20000)\n"
    "    --input PATH      measure the stanzas in PATH instead: a file of bare\n"
    "                      stanzas or a whole stream (read in AUTO mode), or a\n"
    "                      directory of such files (not recursive, sorted)\n"
    "    --min-time S      minimum seconds per timed run (default 0.5)\n"
    "    --json            print one JSON object instead of the table\n"
    "    --csv             print CSV (per-kind sizes, speeds, goals)\n"
    "    --plot DIR        write DIR/sizes_by_kind.{dat,gp}; with gnuplot on PATH,\n"
    "                      also render sizes_by_kind.svg and .png\n"
    "    --only KEYS       measure only these speed paths (comma-separated keys\n"
    "                      from the list above, e.g. --only pb_to_xml), for\n"
    "                      profiling with perf or callgrind; goals that need the\n"
    "                      other paths then read as missed\n"
    "    -h, --help        this text\n"
    "\n"
    "JSON KEYS (selection)\n"
    "    size_ratio_pb_xml        Protobuf bytes / XML bytes\n"
    "    size_ratio_pbz_xmlz      both deflated per stanza with sync flush\n"
    "    xml_to_pb_vs_expat       xml_to_pb stanzas/s / expat stanzas/s\n"
    "    xml_to_pb_vs_libstrophe  xml_to_pb stanzas/s / libstrophe stanzas/s\n"
    "    pb_to_xml_stanzas_per_s  bytes -> record -> XML rate\n"
    "    rec_to_xml_stanzas_per_s record -> XML rate (check + write)\n"
    "    size_ratio_pb_plain_xml  plain (expanded) records / XML bytes\n"
    "    allocs_per_stanza        the larger of the two directions\n"
    "    per_kind, goals          per stanza kind sizes; each goal with value/met\n"
    "\n"
    "EXIT STATUS\n"
    "    0 when the run completed (missed goals do not change it), 1 on an input\n"
    "    or codec error, 2 on a usage error.\n"
    "\n"
    "EXAMPLES\n"
    "    xpb-bench\n"
    "    xpb-bench --count 100000 --min-time 1 --json > bench.json\n"
    "    xpb-bench --input tests/corpus --csv\n"
    "    xpb-bench --plot /tmp/plots\n"
    "\n"
    "SEE ALSO\n"
    "    docs/benchmarks.md, XEP-0138 (stream compression), XEP-0322 (EXI).\n";

typedef struct bench_opts {
    uint64_t seed;
    size_t count;
    const char *input;
    double min_time;
    int json, csv;
    const char *plot_dir;
    unsigned paths;      /* bit per enum bench_path to measure */
} bench_opts;

static int parse_number(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return -1;
    *out = v;
    return 0;
}

static int bad_value(const char *opt, const char *v)
{
    fprintf(stderr, "xpb-bench: invalid value for %s: '%s' (see --help)\n", opt, v);
    return 2;
}

/* --only KEY[,KEY...]: the path keys of bench_path_keys. */
static int parse_only(const char *arg, unsigned *mask)
{
    *mask = 0;
    while (*arg) {
        size_t n = strcspn(arg, ",");
        int found = 0;
        for (int p = 0; p < PATH_COUNT; p++)
            if (strlen(bench_path_keys[p]) == n && strncmp(arg, bench_path_keys[p], n) == 0) {
                *mask |= 1u << p;
                found = 1;
            }
        if (!found) return -1;
        arg += n + (arg[n] == ',');
    }
    return *mask ? 0 : -1;
}

/* 0 to run, 1 when done (help), 2 on a usage error. */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    static const struct option longopts[] = {
        {"seed", required_argument, NULL, 's'},  {"count", required_argument, NULL, 'n'},
        {"input", required_argument, NULL, 'i'}, {"min-time", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},        {"csv", no_argument, NULL, 'c'},
        {"plot", required_argument, NULL, 'p'},  {"help", no_argument, NULL, 'h'},
        {"only", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0}};
    int ch;
    double d;
    uint64_t u;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 's': if (parse_u64(optarg, &o->seed)) return bad_value("--seed", optarg); break;
        case 'n':
            if (parse_u64(optarg, &u) || u == 0 || u > BENCH_MAX_COUNT)
                return bad_value("--count", optarg);
            o->count = (size_t)u;
            break;
        case 'i': o->input = optarg; break;
        case 't':
            if (parse_number(optarg, 0.0, 3600.0, &d)) return bad_value("--min-time", optarg);
            o->min_time = d;
            break;
        case 'j': o->json = 1; break;
        case 'c': o->csv = 1; break;
        case 'p': o->plot_dir = optarg; break;
        case 'o':
            if (parse_only(optarg, &o->paths)) return bad_value("--only", optarg);
            break;
        case 'h': fputs(usage_text, stdout); return 1;
        default: fprintf(stderr, "Try 'xpb-bench --help'.\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "xpb-bench: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (o->json && o->csv) {
        fprintf(stderr, "xpb-bench: --json and --csv exclude each other\n");
        return 2;
    }
    return 0;
}

static int run(const bench_opts *o, bench_corpus *c, bench_results *r, bench_encoded *enc)
{
    char err[512] = "";
    int rc = o->input ? bench_corpus_load(c, o->input, err, sizeof err)
                      : bench_corpus_generate(c, o->seed, o->count);
    if (rc && !err[0]) snprintf(err, sizeof err, "generator failed");
    if (rc == 0) rc = bench_measure_sizes(c, &r->sizes, enc, err, sizeof err);
    if (rc == 0) rc = bench_measure_speeds(c, enc, o->min_time, o->paths, r->speed, err, sizeof err);
    if (rc) {
        fprintf(stderr, "xpb-bench: %s\n", err);
        return 1;
    }
    if (o->json) bench_print_json(stdout, r);
    else if (o->csv) bench_print_csv(stdout, r);
    else bench_print_table(stdout, r);
    if (o->plot_dir && bench_write_plots(r, o->plot_dir, err, sizeof err)) {
        fprintf(stderr, "xpb-bench: %s\n", err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    bench_opts o = {.seed = 1, .count = BENCH_DEFAULT_COUNT, .min_time = BENCH_DEFAULT_MIN_TIME,
                   .paths = (1u << PATH_COUNT) - 1};
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    bench_corpus c;
    bench_corpus_init(&c);
    bench_encoded enc;
    memset(&enc, 0, sizeof enc);
    bench_results r = {.corpus = &c, .min_time = o.min_time};
    r.alloc_counting = bench_alloc_selftest() == 0;
    if (!r.alloc_counting)
        fprintf(stderr, "xpb-bench: warning: allocation counter does not count; "
                        "allocations are reported as -1\n");
    rc = run(&o, &c, &r, &enc);
    bench_encoded_free(&enc);
    bench_corpus_free(&c);
    return rc;
}
