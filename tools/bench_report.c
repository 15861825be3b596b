/* xpb-bench output: the terminal table, one JSON object, CSV, and gnuplot
 * scripts (+ SVG/PNG when gnuplot is installed). Goals from GitHub issue 3 are
 * checked here and printed as met/missed. */
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- derived figures ----------------------------------------------------- */
static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

typedef struct bench_goal {
    const char *key;
    const char *text;
    double value;
    double limit;
    int at_most;   /* 1: value <= limit; 0: value >= limit (or > for strict) */
    int strict;
} bench_goal;

enum { GOAL_COUNT = 6 };

static double allocs_max(const bench_results *r)
{
    double e = r->speed[PATH_ENC].allocs_per_stanza, d = r->speed[PATH_DEC].allocs_per_stanza;
    if (!r->alloc_counting) return -1;
    return e > d ? e : d;
}

static void goals(const bench_results *r, bench_goal g[GOAL_COUNT])
{
    const bench_sizes *t = &r->sizes.total;
    const bench_speed *s = r->speed;
    bench_goal all[GOAL_COUNT] = {
        {"pb_xml_size", "Protobuf/XML bytes <= 0.40", ratio(t->raw[FMT_PB], t->raw[FMT_XML]),
         0.40, 1, 0},
        {"pbz_xmlz_size", "deflated PB <= 0.75 x deflated XML (sync flush)",
         ratio(t->zsync[FMT_PB], t->zsync[FMT_XML]), 0.75, 1, 0},
        {"xml_to_pb_vs_expat", "XML->record->bytes >= 0.70 x expat empty parse",
         ratio(s[PATH_ENC].stanzas_per_s, s[PATH_EXPAT].stanzas_per_s), 0.70, 0, 0},
        {"xml_to_pb_vs_libstrophe", "XML->record->bytes faster than libstrophe parse",
         ratio(s[PATH_ENC].stanzas_per_s, s[PATH_STROPHE].stanzas_per_s), 1.0, 0, 1},
        {"pb_to_xml_rate", "record->XML >= 1,000,000 stanzas/s", s[PATH_WRITE].stanzas_per_s, 1e6,
         0, 0},
        {"allocs", "<= 2 heap allocations per stanza, each direction", allocs_max(r), 2.0, 1, 0},
    };
    memcpy(g, all, sizeof all);
}

static int goal_met(const bench_goal *g)
{
    if (g->value < 0) return 0; /* not measured */
    if (g->at_most) return g->value <= g->limit;
    return g->strict ? g->value > g->limit : g->value >= g->limit;
}

/* ---- table --------------------------------------------------------------- */
static void table_sizes(FILE *f, const bench_results *r)
{
    const bench_sizes *t = &r->sizes.total;
    fprintf(f, "\nSizes (bytes)            %12s %12s %12s %12s %12s\n", "XML", "Protobuf",
            "generic PB", "JSON", "PB plain");
    fprintf(f, "  raw                    ");
    for (int k = 0; k < FMT_COUNT; k++) fprintf(f, " %12llu", (unsigned long long)t->raw[k]);
    fprintf(f, "\n  ratio to XML           ");
    for (int k = 0; k < FMT_COUNT; k++) fprintf(f, " %12.3f", ratio(t->raw[k], t->raw[FMT_XML]));
    fprintf(f, "\n  deflate, sync/stanza   ");
    for (int k = 0; k < FMT_COUNT; k++) fprintf(f, " %12llu", (unsigned long long)t->zsync[k]);
    fprintf(f, "\n    ratio to XML raw     ");
    for (int k = 0; k < FMT_COUNT; k++) fprintf(f, " %12.3f", ratio(t->zsync[k], t->raw[FMT_XML]));
    fprintf(f, "\n    ratio to XML deflated");
    for (int k = 0; k < FMT_COUNT; k++)
        fprintf(f, " %12.3f", ratio(t->zsync[k], t->zsync[FMT_XML]));
    fprintf(f, "\n  deflate, whole stream  ");
    for (int k = 0; k < FMT_COUNT; k++) fprintf(f, " %12llu", (unsigned long long)t->zstream[k]);
    fprintf(f, "\n    ratio to XML raw     ");
    for (int k = 0; k < FMT_COUNT; k++)
        fprintf(f, " %12.3f", ratio(t->zstream[k], t->raw[FMT_XML]));
    fprintf(f, "\n");
}

static void table_kinds(FILE *f, const bench_results *r)
{
    const bench_corpus *c = r->corpus;
    fprintf(f, "\nPer kind (mean bytes/stanza; ratio to XML)\n");
    fprintf(f, "  %-22s %7s %8s %14s %14s %14s %14s %8s %14s\n", "kind", "count", "XML",
            "Protobuf", "generic PB", "JSON", "PB plain", "XML z", "Protobuf z");
    for (unsigned k = 0; k < c->n_kinds; k++) {
        const bench_sizes *s = &r->sizes.kind[k];
        double n = (double)r->sizes.kind_count[k];
        if (n == 0) continue;
        fprintf(f, "  %-22s %7.0f %8.1f", c->kinds[k], n, (double)s->raw[FMT_XML] / n);
        for (int fm = FMT_PB; fm < FMT_COUNT; fm++)
            fprintf(f, " %7.1f (%.2f)", (double)s->raw[fm] / n, ratio(s->raw[fm], s->raw[FMT_XML]));
        fprintf(f, " %8.1f %7.1f (%.2f)\n", (double)s->zsync[FMT_XML] / n,
                (double)s->zsync[FMT_PB] / n, ratio(s->zsync[FMT_PB], s->zsync[FMT_XML]));
    }
}

static void table_speeds(FILE *f, const bench_results *r)
{
    const bench_speed *s = r->speed;
    fprintf(f, "\nSpeed, one core, best of 3 runs >= %.2f s (MB = 10^6 bytes of XML)\n",
            r->min_time);
    fprintf(f, "  %-32s %12s %9s %9s %11s %11s\n", "path", "stanzas/s", "MB/s", "vs expat",
            "vs strophe", "allocs/st");
    for (int p = 0; p < PATH_COUNT; p++) {
        if (s[p].passes == 0) continue; /* not measured (--only) */
        fprintf(f, "  %-32s %12.0f %9.1f %9.3f %11.3f", bench_path_names[p], s[p].stanzas_per_s,
                s[p].mb_per_s, ratio(s[p].stanzas_per_s, s[PATH_EXPAT].stanzas_per_s),
                ratio(s[p].stanzas_per_s, s[PATH_STROPHE].stanzas_per_s));
        if (r->alloc_counting) fprintf(f, " %11.2f", s[p].allocs_per_stanza);
        else fprintf(f, " %11s", "n/a");
        fprintf(f, s[p].errors ? "  (%zu failed)\n" : "\n", s[p].errors);
    }
}

void bench_print_table(FILE *f, const bench_results *r)
{
    const bench_corpus *c = r->corpus;
    fprintf(f, "xpb-bench: %zu stanzas (%s), %zu bytes of XML on the wire\n", c->n, c->source,
            (size_t)r->sizes.total.raw[FMT_XML]);
    if (r->sizes.errors)
        fprintf(f, "  %zu stanzas could not be mapped; their records are not counted\n",
                r->sizes.errors);
    table_sizes(f, r);
    table_kinds(f, r);
    table_speeds(f, r);
    bench_goal g[GOAL_COUNT];
    goals(r, g);
    fprintf(f, "\nGoals\n");
    for (int i = 0; i < GOAL_COUNT; i++)
        fprintf(f, "  %-7s %-52s (%.3f)\n", g[i].value < 0 ? "n/a" : goal_met(&g[i]) ? "met" : "MISSED",
                g[i].text, g[i].value);
}

/* ---- JSON ------------------------------------------------------------------ */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static void json_sizes(FILE *f, const bench_sizes *s, const char *indent)
{
    for (int k = 0; k < FMT_COUNT; k++) {
        const char *n = bench_format_names[k];
        fprintf(f, "%s\"%s_bytes\": %llu, \"%s_zsync_bytes\": %llu,\n", indent, n,
                (unsigned long long)s->raw[k], n, (unsigned long long)s->zsync[k]);
    }
}

static void json_kinds(FILE *f, const bench_results *r)
{
    const bench_corpus *c = r->corpus;
    fprintf(f, "  \"per_kind\": {");
    for (unsigned k = 0; k < c->n_kinds; k++) {
        const bench_sizes *s = &r->sizes.kind[k];
        fprintf(f, "%s\n    ", k ? "," : "");
        json_str(f, c->kinds[k]);
        fprintf(f, ": {\n");
        json_sizes(f, s, "      ");
        fprintf(f, "      \"count\": %zu, \"size_ratio_pb_xml\": %.4f, \"size_ratio_pbz_xmlz\": %.4f}",
                r->sizes.kind_count[k], ratio(s->raw[FMT_PB], s->raw[FMT_XML]),
                ratio(s->zsync[FMT_PB], s->zsync[FMT_XML]));
    }
    fprintf(f, "\n  },\n");
}

static void json_speeds(FILE *f, const bench_results *r)
{
    const bench_speed *s = r->speed;
    for (int p = 0; p < PATH_COUNT; p++) {
        const char *k = bench_path_keys[p];
        fprintf(f, "  \"%s_stanzas_per_s\": %.1f, \"%s_mb_per_s\": %.3f,\n", k, s[p].stanzas_per_s,
                k, s[p].mb_per_s);
        fprintf(f, "  \"%s_vs_expat\": %.4f, \"%s_vs_libstrophe\": %.4f,\n", k,
                ratio(s[p].stanzas_per_s, s[PATH_EXPAT].stanzas_per_s), k,
                ratio(s[p].stanzas_per_s, s[PATH_STROPHE].stanzas_per_s));
        fprintf(f, "  \"%s_allocs_per_stanza\": %.3f, \"%s_errors\": %zu,\n", k,
                r->alloc_counting ? s[p].allocs_per_stanza : -1.0, k, s[p].errors);
    }
}

void bench_print_json(FILE *f, const bench_results *r)
{
    const bench_sizes *t = &r->sizes.total;
    fprintf(f, "{\n  \"source\": ");
    json_str(f, r->corpus->source);
    fprintf(f, ",\n  \"stanzas\": %zu, \"map_errors\": %zu, \"min_time_s\": %.3f,\n",
            r->corpus->n, r->sizes.errors, r->min_time);
    json_sizes(f, t, "  ");
    for (int k = 0; k < FMT_COUNT; k++)
        fprintf(f, "  \"%s_zstream_bytes\": %llu,\n", bench_format_names[k],
                (unsigned long long)t->zstream[k]);
    fprintf(f, "  \"size_ratio_pb_xml\": %.4f, \"size_ratio_generic_xml\": %.4f,"
               " \"size_ratio_json_xml\": %.4f,\n",
            ratio(t->raw[FMT_PB], t->raw[FMT_XML]), ratio(t->raw[FMT_GENERIC], t->raw[FMT_XML]),
            ratio(t->raw[FMT_JSON], t->raw[FMT_XML]));
    fprintf(f, "  \"size_ratio_pb_plain_xml\": %.4f, \"size_ratio_pb_plainz_xmlz\": %.4f,\n",
            ratio(t->raw[FMT_PB_PLAIN], t->raw[FMT_XML]),
            ratio(t->zsync[FMT_PB_PLAIN], t->zsync[FMT_XML]));
    fprintf(f, "  \"size_ratio_pbz_xmlz\": %.4f, \"size_ratio_genericz_xmlz\": %.4f,"
               " \"size_ratio_jsonz_xmlz\": %.4f, \"size_ratio_xmlz_xml\": %.4f,\n",
            ratio(t->zsync[FMT_PB], t->zsync[FMT_XML]),
            ratio(t->zsync[FMT_GENERIC], t->zsync[FMT_XML]),
            ratio(t->zsync[FMT_JSON], t->zsync[FMT_XML]), ratio(t->zsync[FMT_XML], t->raw[FMT_XML]));
    fprintf(f, "  \"size_ratio_pb_stream_z_xml_stream_z\": %.4f, \"size_ratio_xml_stream_z_xml\": %.4f,\n",
            ratio(t->zstream[FMT_PB], t->zstream[FMT_XML]), ratio(t->zstream[FMT_XML], t->raw[FMT_XML]));
    json_kinds(f, r);
    json_speeds(f, r);
    const bench_speed *s = r->speed;
    fprintf(f, "  \"xml_to_pb_stanzas_per_s\": %.1f, \"pb_to_xml_stanzas_per_s\": %.1f,\n",
            s[PATH_ENC].stanzas_per_s, s[PATH_DEC].stanzas_per_s);
    fprintf(f, "  \"rec_to_xml_stanzas_per_s\": %.1f,\n", s[PATH_WRITE].stanzas_per_s);
    fprintf(f, "  \"allocs_per_stanza\": %.3f,\n  \"goals\": {", allocs_max(r));
    bench_goal g[GOAL_COUNT];
    goals(r, g);
    for (int i = 0; i < GOAL_COUNT; i++)
        fprintf(f, "%s\n    \"%s\": {\"value\": %.4f, \"limit\": %.4f, \"met\": %s}", i ? "," : "",
                g[i].key, g[i].value, g[i].limit, goal_met(&g[i]) ? "true" : "false");
    fprintf(f, "\n  }\n}\n");
}

/* ---- CSV: a per-kind size table, then metric,value rows ------------------- */
static void csv_field(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_size_row(FILE *f, const char *kind, size_t count, const bench_sizes *s)
{
    csv_field(f, kind);
    fprintf(f, ",%zu", count);
    for (int k = 0; k < FMT_COUNT; k++) fprintf(f, ",%llu", (unsigned long long)s->raw[k]);
    for (int k = 0; k < FMT_COUNT; k++) fprintf(f, ",%llu", (unsigned long long)s->zsync[k]);
    fprintf(f, "\n");
}

void bench_print_csv(FILE *f, const bench_results *r)
{
    const bench_corpus *c = r->corpus;
    fprintf(f, "kind,count,xml,pb,generic,json,xml_zsync,pb_zsync,generic_zsync,json_zsync\n");
    for (unsigned k = 0; k < c->n_kinds; k++)
        csv_size_row(f, c->kinds[k], r->sizes.kind_count[k], &r->sizes.kind[k]);
    csv_size_row(f, "total", c->n, &r->sizes.total);
    fprintf(f, "\npath,stanzas_per_s,mb_per_s,vs_expat,vs_libstrophe,allocs_per_stanza,errors\n");
    for (int p = 0; p < PATH_COUNT; p++) {
        const bench_speed *s = &r->speed[p];
        fprintf(f, "%s,%.1f,%.3f,%.4f,%.4f,%.3f,%zu\n", bench_path_keys[p], s->stanzas_per_s,
                s->mb_per_s, ratio(s->stanzas_per_s, r->speed[PATH_EXPAT].stanzas_per_s),
                ratio(s->stanzas_per_s, r->speed[PATH_STROPHE].stanzas_per_s),
                r->alloc_counting ? s->allocs_per_stanza : -1.0, s->errors);
    }
    bench_goal g[GOAL_COUNT];
    goals(r, g);
    fprintf(f, "\ngoal,value,limit,met\n");
    for (int i = 0; i < GOAL_COUNT; i++)
        fprintf(f, "%s,%.4f,%.4f,%d\n", g[i].key, g[i].value, g[i].limit, goal_met(&g[i]));
}

/* ---- plots ----------------------------------------------------------------- */
static const char plot_script[] =
    "# Made by xpb-bench --plot: mean bytes per stanza by kind and format.\n"
    "# Render with: gnuplot sizes_by_kind.gp (in this directory).\n"
    "set style data histograms\n"
    "set style histogram clustered gap 1\n"
    "set style fill solid 0.85 border -1\n"
    "set boxwidth 0.9\n"
    "set key top left\n"
    "set ylabel 'mean bytes per stanza'\n"
    "set xtics rotate by -40 scale 0\n"
    "set grid ytics\n"
    "set title 'Stanza size by kind and format (z = deflate, sync flush per stanza)'\n";
static const char plot_cmd[] =
    "plot 'sizes_by_kind.dat' using 3:xtic(1) title 'XML', '' using 4 title 'Protobuf', \\\n"
    "     '' using 5 title 'generic PB', '' using 6 title 'JSON', \\\n"
    "     '' using 7 title 'XML z', '' using 8 title 'Protobuf z'\n";

static int write_plot_data(const bench_results *r, const char *dir, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/sizes_by_kind.dat", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "# kind count xml pb generic json xml_z pb_z (mean bytes per stanza)\n");
    const bench_corpus *c = r->corpus;
    for (unsigned k = 0; k < c->n_kinds; k++) {
        const bench_sizes *s = &r->sizes.kind[k];
        double n = (double)r->sizes.kind_count[k];
        if (n == 0) continue;
        fprintf(f, "\"%s\" %.0f", c->kinds[k], n);
        for (int fm = 0; fm < FMT_PB_PLAIN; fm++) fprintf(f, " %.1f", (double)s->raw[fm] / n);
        fprintf(f, " %.1f %.1f\n", (double)s->zsync[FMT_XML] / n, (double)s->zsync[FMT_PB] / n);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/sizes_by_kind.gp", dir);
    f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%sset terminal svg size 1000,560 dynamic\nset output 'sizes_by_kind.svg'\n%s",
            plot_script, plot_cmd);
    fprintf(f, "set terminal png size 1000,560\nset output 'sizes_by_kind.png'\nreplot\n");
    fclose(f);
    return 0;
}

static int have_gnuplot(void)
{
    const char *p = getenv("PATH");
    char path[4096];
    while (p && *p) {
        size_t n = strcspn(p, ":");
        snprintf(path, sizeof path, "%.*s/gnuplot", (int)n, p);
        if (n && access(path, X_OK) == 0) return 1;
        p += n + (p[n] == ':');
    }
    return 0;
}

static int run_gnuplot(const char *dir)
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(127);
        execlp("gnuplot", "gnuplot", "sizes_by_kind.gp", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int bench_write_plots(const bench_results *r, const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (write_plot_data(r, dir, err, errlen)) return -1;
    if (!have_gnuplot()) {
        fprintf(stderr, "xpb-bench: gnuplot not found; wrote %s/sizes_by_kind.{dat,gp} only "
                        "(apt-get install gnuplot-nox, then run gnuplot there)\n", dir);
        return 0;
    }
    if (run_gnuplot(dir)) {
        snprintf(err, errlen, "gnuplot failed in %s", dir);
        return -1;
    }
    fprintf(stderr, "xpb-bench: wrote %s/sizes_by_kind.svg and .png\n", dir);
    return 0;
}
