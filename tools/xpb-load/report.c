/* xpb-load's report: the median of each figure over the runs, beside the
 * libstrophe peer's and the goal of issue 10, as a text table or JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

static const char *const keys[F_COUNT] = {
    [F_IN1] = "inbound_1_account_per_s",
    [F_IN1_CPU] = "inbound_1_account_bridge_cpu_pct",
    [F_IN_IDLE] = "inbound_with_idle_per_s",
    [F_OUT16] = "outbound_16_in_flight_per_s",
    [F_OUT16_REFUSED] = "outbound_16_queue_full",
    [F_OUT63] = "outbound_63_in_flight_per_s",
    [F_OUT63_REFUSED] = "outbound_63_queue_full",
    [F_OUT_DELIVERED] = "outbound_delivery_events_acked",
    [F_OUT_BATCH] = "outbound_send_batch_per_s",
    [F_OUT_BATCH_REFUSED] = "outbound_send_batch_queue_full",
    [F_OUT_BATCH_CPU] = "outbound_send_batch_bridge_cpu_us_per_stanza",
    [F_LAT_P50] = "latency_p50_us",
    [F_LAT_P99] = "latency_p99_us",
    [F_LAT_RATE] = "latency_rate_per_s",
    [F_LAT_BRIDGE_P50] = "latency_in_bridge_p50_us",
    [F_LAT_BRIDGE_P99] = "latency_in_bridge_p99_us",
    [F_NNG_P50] = "nng_pub_sub_alone_p50_us",
    [F_NNG_P99] = "nng_pub_sub_alone_p99_us",
    [F_IN1_GEN_CPU] = "inbound_1_account_xpb_load_cpu_pct",
    [F_WAKE_SAME] = "thread_wake_same_core_p50_us",
    [F_WAKE_OTHER] = "thread_wake_other_core_p50_us",
    [F_MEM] = "memory_per_idle_session_kib",
    [F_RSS1] = "rss_1_account_kib",
    [F_RSSM] = "rss_with_idle_kib",
    [F_ONLINE] = "accounts_online_s",
    [F_SCRAPE] = "metrics_scrape_ms",
    [F_GAPS] = "events_missing_by_seq",
    [F_PEER_IN] = "libstrophe_inbound_per_s",
    [F_PEER_OUT] = "libstrophe_outbound_per_s",
    [F_PEER_MEM] = "libstrophe_memory_per_idle_session_kib",
    [F_PEER_ONLINE] = "libstrophe_idle_online_s",
    [F_PEER_IDLE_N] = "libstrophe_idle_sessions",
    [F_IN_JOURNAL_OFF] = "inbound_journal_off_per_s",
    [F_IN_JOURNAL_ON] = "inbound_journal_on_per_s",
    [F_JOURNAL_RATIO] = "inbound_journal_ratio",
    [F_IN_LOOPS_ONE] = "inbound_busy_loops_0_per_s",
    [F_IN_LOOPS_N] = "inbound_busy_loops_n_per_s",
    [F_LOOPS_RATIO] = "inbound_loops_ratio",
    [F_LOOPS_N] = "loops_n",
};

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of the runs that produced the figure; -1 when none did. */
static double median(const load_run *runs, unsigned n, load_fig f)
{
    double v[64];
    unsigned k = 0;
    for (unsigned i = 0; i < n && k < 64; i++)
        if (runs[i].v[f] >= 0) v[k++] = runs[i].v[f];
    if (!k) return -1;
    qsort(v, k, sizeof(v[0]), cmp_d);
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

typedef struct goal {
    const char *name;
    double value, limit;
    int at_most; /* value <= limit, else value >= limit */
} goal;

static int goal_met(const goal *g)
{
    if (g->value < 0) return 0;
    return g->at_most ? g->value <= g->limit : g->value >= g->limit;
}

static double ratio(double a, double b)
{
    return a > 0 && b > 0 ? a / b : -1;
}

static size_t goals_of(const load_opts *o, const double *m, goal *g)
{
    size_t n = 0;
    /* With --busy K the first figure is of K sessions: neither comparison holds. */
    if (o->peer && o->busy <= 1)
        g[n++] = (goal){"inbound_beats_libstrophe", ratio(m[F_IN1], m[F_PEER_IN]), 1, 0};
    if (o->busy <= 1)
        g[n++] = (goal){"inbound_with_idle_flat", ratio(m[F_IN_IDLE], m[F_IN1]), 0.95, 0};
    if (o->peer)
        g[n++] = (goal){"outbound_vs_libstrophe", ratio(m[F_OUT_BATCH], m[F_PEER_OUT]), 0.8, 0};
    g[n++] = (goal){"outbound_63_no_refusal", m[F_OUT63_REFUSED], 0, 1};
    g[n++] = (goal){"latency_p50_us", m[F_LAT_P50], 100, 1};
    g[n++] = (goal){"latency_p99_us", m[F_LAT_P99], 1000, 1};
    /* Judged as stated only at 10,000 accounts: fewer prove nothing (the
     * bridge's fixed memory is then shared by fewer sessions). */
    if (o->idle + 1 >= 10000) {
        g[n++] = (goal){"memory_per_idle_session_kib", m[F_MEM], 32, 1};
        g[n++] = (goal){"10000_online_s", m[F_ONLINE], 12, 1};
    }
    g[n++] = (goal){"metrics_scrape_ms", m[F_SCRAPE], 10, 1};
    /* Issue 11: the journal costs inbound at most a fifth (the median of the
     * runs' own ratios: each run measured both back to back). */
    if (o->journal_ratio) g[n++] = (goal){"inbound_journal_ratio", m[F_JOURNAL_RATIO], 0.8, 0};
    /* Issue 10: 2 loops give at least 1.5x the one-loop figure (the median of
     * the runs' own ratios). Judged only with 2 loops, as stated. */
    if (o->loops_ratio && m[F_LOOPS_N] == 2)
        g[n++] = (goal){"inbound_2_loops_ratio", m[F_LOOPS_RATIO], 1.5, 0};
    return n;
}

/* The median of each figure, but the worst run's count of missing events: a
 * loss in one run of three is a loss, not noise to be voted away. */
static void medians(const load_run *runs, unsigned n, double *m)
{
    for (int f = 0; f < F_COUNT; f++)
        m[f] = median(runs, n, (load_fig)f);
    for (unsigned i = 0; i < n; i++)
        if (runs[i].v[F_GAPS] > m[F_GAPS]) m[F_GAPS] = runs[i].v[F_GAPS];
}

/* decimals: digits after the point */
static void num(double v, int decimals, const char *suffix)
{
    if (v < 0)
        printf(" %14s", "-");
    else
        printf(" %*.*f%s", 14 - (int)strlen(suffix), decimals, v, suffix);
}

static void row(const char *label, double v, double peer, int decimals, const char *target)
{
    printf("%-44s", label);
    num(v, decimals, "");
    num(peer, 0, "");
    num(ratio(v, peer), 2, "x");
    printf("  %s\n", target);
}

void load_report_text(const load_opts *o, const load_run *runs, unsigned n)
{
    double m[F_COUNT];
    char l[128];
    medians(runs, n, m);
    printf("xpb-load: medians of %u run(s); %llu flood messages, %llu sends, %u idle accounts, "
           "XEP-0198 %s, loops = %d%s\n\n",
           n, (unsigned long long)o->messages, (unsigned long long)o->sends, o->idle,
           o->sm ? "on" : "off", load_loops_of(o->loops), o->loops < 0 ? " (auto)" : "");
    printf("%-44s %14s %14s %14s  %s\n", "figure", "xpbridge", "libstrophe", "ratio", "goal");
    if (o->busy > 1) {
        snprintf(l, sizeof(l), "inbound stanzas/s, %u accounts at once", o->busy);
        row(l, m[F_IN1], -1, 0, "");
    } else {
        row("inbound stanzas/s, 1 account", m[F_IN1], m[F_PEER_IN], 0, "beat the peer");
    }
    row("  bridge CPU % during that flood", m[F_IN1_CPU], -1, 0, "");
    row("  xpb-load's own CPU % (server, SUB)", m[F_IN1_GEN_CPU], -1, 0, "");
    snprintf(l, sizeof(l), "inbound stanzas/s, 1 + %u idle accounts", o->idle);
    row(l, m[F_IN_IDLE], -1, 0, ">= 0.95x the 1-account figure");
    row("outbound stanzas/s, 16 requests in flight", m[F_OUT16], m[F_PEER_OUT], 0, "");
    row("  ERR_QUEUE_FULL refusals", m[F_OUT16_REFUSED], -1, 0, "");
    row("outbound stanzas/s, 63 requests in flight", m[F_OUT63], -1, 0, "");
    row("  ERR_QUEUE_FULL refusals", m[F_OUT63_REFUSED], -1, 0, "0 while the server keeps up");
    row("outbound stanzas/s, SendBatch of 64, 4 in flight", m[F_OUT_BATCH], m[F_PEER_OUT], 0,
        ">= 0.8x libstrophe sending directly");
    row("  ERR_QUEUE_FULL refusals", m[F_OUT_BATCH_REFUSED], -1, 0, "0 while the server keeps up");
    row("  bridge CPU us per stanza, acks included", m[F_OUT_BATCH_CPU], -1, 2, "");
    row("  ACKED delivery events (all three)", m[F_OUT_DELIVERED], -1, 0, "one per accepted send");
    snprintf(l, sizeof(l), "added latency p50 us, at %.0f/s", m[F_LAT_RATE]);
    row(l, m[F_LAT_P50], -1, 1, "<= 100 us at half load");
    row("added latency p99 us", m[F_LAT_P99], -1, 1, "<= 1000 us");
    row("  of which in the bridge (to publish), p50 us", m[F_LAT_BRIDGE_P50], -1, 1, "");
    row("  of which in the bridge, p99 us", m[F_LAT_BRIDGE_P99], -1, 1, "");
    row("  NNG PUB->SUB alone, same rate, p50 us", m[F_NNG_P50], -1, 1, "(no bridge goes below)");
    row("  NNG PUB->SUB alone, p99 us", m[F_NNG_P99], -1, 1, "");
    row("  a thread waking one on the same core, p50 us", m[F_WAKE_SAME], -1, 1, "");
    row("  a thread waking one on another core, p50 us", m[F_WAKE_OTHER], -1, 1,
        "(each hop between threads)");
    row("memory per idle TLS session, KiB", m[F_MEM], m[F_PEER_MEM], 1, "<= 32 KiB at 10,000");
    row("  bridge RSS KiB, 1 account", m[F_RSS1], -1, 0, "");
    snprintf(l, sizeof(l), "  bridge RSS KiB, %u accounts", o->idle + 1);
    row(l, m[F_RSSM], -1, 0, "");
    snprintf(l, sizeof(l), "%u accounts online, s", o->idle + 1);
    row(l, m[F_ONLINE], -1, 2, "10,000 in <= 12 s");
    if (m[F_PEER_IDLE_N] > 0)
        snprintf(l, sizeof(l), "  libstrophe: %.0f sessions online, s", m[F_PEER_IDLE_N]);
    else
        snprintf(l, sizeof(l), "  libstrophe: idle sessions online, s");
    row(l, m[F_PEER_ONLINE], -1, 2, "(select(): at most 1,000)");
    snprintf(l, sizeof(l), "one /metrics scrape at %u accounts, ms", o->idle + 1);
    row(l, m[F_SCRAPE], -1, 2, "<= 10 ms at 10,000");
    row("events missing by seq, worst run", m[F_GAPS], -1, 0, "0");
    if (o->journal_ratio) {
        row("inbound stanzas/s, journal off (same run)", m[F_IN_JOURNAL_OFF], -1, 0, "");
        row("inbound stanzas/s, journal on (same run)", m[F_IN_JOURNAL_ON], -1, 0, "");
        row("  on / off, median of the runs' ratios", m[F_JOURNAL_RATIO], -1, 2,
            ">= 0.8x (issue 11)");
    }
    if (o->loops_ratio) {
        snprintf(l, sizeof(l), "inbound stanzas/s, %u accounts, loops = 0 (same run)", o->busy);
        row(l, m[F_IN_LOOPS_ONE], -1, 0, "");
        snprintf(l, sizeof(l), "inbound stanzas/s, %u accounts, loops = %.0f (same run)", o->busy,
                 m[F_LOOPS_N]);
        row(l, m[F_IN_LOOPS_N], -1, 0, "");
        row("  loops / one loop, median of the runs' ratios", m[F_LOOPS_RATIO], -1, 2,
            ">= 1.5x with 2 loops (issue 10)");
    }
    goal g[16];
    size_t k = goals_of(o, m, g);
    printf("\ngoals:");
    for (size_t i = 0; i < k; i++)
        printf(" %s %s;", g[i].name, goal_met(&g[i]) ? "met" : "MISSED");
    printf("\n");
}

static void json_figs(const double *v)
{
    for (int f = 0; f < F_COUNT; f++) {
        printf("%s\"%s\": ", f ? ", " : "", keys[f]);
        if (v[f] < 0)
            printf("null");
        else
            printf("%.3f", v[f]);
    }
}

void load_report_json(const load_opts *o, const load_run *runs, unsigned n)
{
    double m[F_COUNT];
    medians(runs, n, m);
    printf("{\"tool\": \"xpb-load\", \"runs\": %u, \"messages\": %llu, \"sends\": %llu, "
           "\"latency_count\": %llu, \"idle\": %u, \"busy\": %u, \"sm\": %s, \"loops\": %d,\n"
           " \"median\": {",
           n, (unsigned long long)o->messages, (unsigned long long)o->sends,
           (unsigned long long)o->latency_count, o->idle, o->busy, o->sm ? "true" : "false",
           load_loops_of(o->loops));
    json_figs(m);
    printf("},\n \"each_run\": [");
    for (unsigned i = 0; i < n; i++) {
        printf("%s{", i ? ", " : "");
        json_figs(runs[i].v);
        printf("}");
    }
    printf("],\n \"goals\": {");
    goal g[16];
    size_t k = goals_of(o, m, g);
    for (size_t i = 0; i < k; i++) {
        printf("%s\"%s\": {\"value\": ", i ? ", " : "", g[i].name);
        if (g[i].value < 0)
            printf("null");
        else
            printf("%.3f", g[i].value);
        printf(", \"limit\": %g, \"met\": %s}", g[i].limit, goal_met(&g[i]) ? "true" : "false");
    }
    printf("}}\n");
}
