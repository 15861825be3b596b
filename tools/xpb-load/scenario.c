/* xpb-load's scenarios (the table of issue 10): one bridge with one account
 * for inbound, latency and outbound; one with 1 + M accounts for bring-up
 * time, memory per idle session, a /metrics scrape and inbound beside idle
 * sessions; then the libstrophe peer on the same test server. */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "load.h"

#define STALL_NS 10000000000ull        /* no progress this long: work was lost */
/* Bring-up may pause between accounts: today's bridge sets up every account
 * before the first connects, in time that grows with the count squared. */
#define ONLINE_STALL_NS 30000000000ull
#define ONLINE_STALL_PER_ACCOUNT_NS 10000000ull
#define POLL_US 1000
#define ONLINE_POLL_US 20000
#define BUSY "load0"

typedef struct ctx {
    const load_opts *o;
    int state; /* the bridge brought up next gets a state directory */
    int loops; /* and these limits.loops (-1: "auto") */
    lsrv *srv;
    lbridge b;
    lsub *sub;
    int failed;
    const char *phase; /* the bridge's name (bring_up) */
    uint64_t gaps_up;  /* missing by seq once its accounts were online */
} ctx;

typedef uint64_t (*counter)(void *);
static uint64_t sub_messages(void *s)
{
    return lsub_messages(s);
}
static uint64_t srv_busy_received(void *s)
{
    return lsrv_received(s, BUSY);
}

/* Polls get until it reaches target or stops moving for stall_ns; returns
 * the last value and when it last moved. */
static uint64_t wait_for(ctx *c, counter get, void *arg, uint64_t target, uint64_t stall_ns,
                         uint64_t *t_moved)
{
    uint64_t v = get(arg), t = load_now_ns();
    while (v < target && !load_interrupted && load_now_ns() - t < stall_ns) {
        usleep(POLL_US);
        uint64_t w = get(arg);
        if (w != v) v = w, t = load_now_ns();
        if (!lbridge_alive(&c->b)) break;
    }
    if (t_moved) *t_moved = t;
    return v;
}

static int short_of(ctx *c, const char *what, uint64_t got, uint64_t want)
{
    if (got >= want) return 0;
    fprintf(stderr, "xpb-load: %s: %llu of %llu\n", what, (unsigned long long)got,
            (unsigned long long)want);
    c->failed = 1;
    return -1;
}

/* Online as the bridge counts it (a `status` request): state events can be
 * dropped by PUB when a burst of them outruns the subscriber. */
static uint64_t wait_online(ctx *c, unsigned accounts, uint64_t *t_online)
{
    uint64_t n = 0, t = load_now_ns();
    uint64_t stall = ONLINE_STALL_NS + accounts * ONLINE_STALL_PER_ACCOUNT_NS;
    while (n < accounts && !load_interrupted && load_now_ns() - t < stall &&
           lbridge_alive(&c->b)) {
        uint64_t k;
        if (!lreq_status(c->b.requests, &k) && k != n) n = k, t = load_now_ns();
        if (n < accounts) usleep(ONLINE_POLL_US);
    }
    *t_online = t;
    return n;
}

static int bring_up(ctx *c, const char *name, unsigned run, unsigned accounts, double *online_s)
{
    char dir[LOAD_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/%s%u", c->o->dir, name, run);
    lbridge_opts bo = {.xpbridge = c->o->xpbridge,
                       .dir = dir,
                       .ca_file = lsrv_ca_file(c->srv),
                       .server_port = lsrv_port(c->srv),
                       .sm = c->o->sm,
                       .accounts = accounts,
                       .batch_max = c->o->batch_max,
                       .batch_flush_us = c->o->batch_flush_us,
                       .batch_flush_set = c->o->batch_flush_set,
                       .state = c->state,
                       .loops = c->loops};
    if (mkdir(dir, 0700) || lbridge_config(&bo, &c->b) || lsub_start(c->b.events, &c->sub))
        return -1;
    uint64_t t0 = load_now_ns(), t1;
    if (lbridge_spawn(&bo, &c->b)) return -1;
    uint64_t n = wait_online(c, accounts, &t1);
    if (short_of(c, "sessions online (status request)", n, accounts)) return -1;
    if (online_s) *online_s = (double)(t1 - t0) / 1e9;
    usleep(ONLINE_POLL_US); /* the last state events */
    c->phase = name;
    c->gaps_up = lsub_gaps(c->sub);
    uint64_t ev = lsub_online(c->sub);
    if (ev < accounts)
        fprintf(stderr, "xpb-load: %llu of %u online state events reached the subscriber\n",
                (unsigned long long)ev, accounts);
    return 0;
}

static void tear_down(ctx *c, load_run *r)
{
    uint64_t gaps = c->sub ? lsub_gaps(c->sub) : 0;
    if (gaps)
        fprintf(stderr,
                "xpb-load: %s: %llu events missing by seq (docs/bus.md gap rule), %llu of them "
                "while its accounts came online\n",
                c->phase ? c->phase : "bridge", (unsigned long long)gaps,
                (unsigned long long)c->gaps_up);
    r->v[F_GAPS] += (double)gaps;
    lbridge_stop(&c->b);
    lsub_stop(c->sub);
    c->sub = NULL;
}

/* This program's CPU seconds (its test server, subscriber and REQ threads). */
static double self_cpu_s(void)
{
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u)) return -1;
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 +
           (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

/* The --messages flood, split over accounts load0 .. load<busy-1>, from the
 * first byte sent to any to the last event. gen_pct: this program's own CPU
 * meanwhile (NULL: not wanted); on 2 cores it bounds what a bridge on both
 * could reach (docs/benchmarks.md). */
static double inbound(ctx *c, unsigned busy, double *cpu_pct, double *gen_pct)
{
    uint64_t n = c->o->messages, tf = 0;
    char user[32];
    lsub_reset(c->sub);
    double c0 = lbridge_cpu_s(&c->b), g0 = self_cpu_s();
    for (unsigned i = 0; i < busy; i++) {
        load_account(i, user, sizeof(user));
        if (lsrv_flood(c->srv, user, n / busy + (i < n % busy))) return -1;
    }
    uint64_t got = wait_for(c, sub_messages, c->sub, n, STALL_NS, NULL);
    double c1 = lbridge_cpu_s(&c->b), g1 = self_cpu_s();
    for (unsigned i = 0; i < busy; i++) {
        uint64_t f = 0, l = 0;
        load_account(i, user, sizeof(user));
        lsrv_sent(c->srv, user, &f, &l);
        if (f && (!tf || f < tf)) tf = f;
    }
    uint64_t last = lsub_last_ns(c->sub);
    if (short_of(c, "inbound messages published", got, n) || !tf || last <= tf) return -1;
    double secs = (double)(last - tf) / 1e9;
    if (cpu_pct && c0 >= 0 && c1 >= 0) *cpu_pct = (c1 - c0) / secs * 100;
    if (gen_pct && g0 >= 0 && g1 >= 0) *gen_pct = (g1 - g0) / secs * 100;
    return (double)n / secs;
}

static void latency(ctx *c, double rate, load_run *r)
{
    uint64_t n = c->o->latency_count;
    size_t k;
    lsub_reset(c->sub);
    if (rate <= 0 || lsrv_trickle(c->srv, BUSY, n, rate)) return;
    uint64_t got = wait_for(c, sub_messages, c->sub, n, STALL_NS, NULL);
    const uint64_t *lat = lsub_latencies(c->sub, &k);
    if (short_of(c, "latency probes published", k, n) || short_of(c, "messages", got, n)) return;
    r->v[F_LAT_RATE] = rate;
    r->v[F_LAT_P50] = (double)lat[k / 2] / 1e3;
    r->v[F_LAT_P99] = (double)lat[k * 99 / 100] / 1e3;
    const uint64_t *in = lsub_bridge_latencies(c->sub, &k);
    if (k) {
        r->v[F_LAT_BRIDGE_P50] = (double)in[k / 2] / 1e3;
        r->v[F_LAT_BRIDGE_P99] = (double)in[k * 99 / 100] / 1e3;
    }
    /* NNG alone at the same rate, right after, on the same machine. */
    lnng_floor(c->o->dir, n, rate, &r->v[F_NNG_P50], &r->v[F_NNG_P99]);
    lwake_floor(&r->v[F_WAKE_SAME], &r->v[F_WAKE_OTHER]);
}

/* Returns the stanzas accepted (0 when the figure failed). */
static uint64_t outbound(ctx *c, unsigned k, unsigned batch, load_fig rate, load_fig refused,
                         load_run *r)
{
    lreq_result q;
    char account[64];
    snprintf(account, sizeof(account), BUSY "@" LOAD_DOMAIN);
    uint64_t base = lsrv_received(c->srv, BUSY), t0 = load_now_ns(), t1;
    if (lreq_run(c->b.requests, account, c->o->sends, k, batch, &q)) {
        c->failed = 1;
        return 0;
    }
    uint64_t got = wait_for(c, srv_busy_received, c->srv, base + q.ok, STALL_NS, &t1) - base;
    if (q.other_err)
        fprintf(stderr, "xpb-load: %llu send requests failed (not ERR_QUEUE_FULL)\n",
                (unsigned long long)q.other_err);
    if (short_of(c, "sent stanzas the server received", got, q.ok) || !q.ok || q.other_err) {
        c->failed = 1;
        return 0;
    }
    r->v[rate] = (double)got * 1e9 / (double)(t1 - t0);
    r->v[refused] = (double)q.queue_full;
    return q.ok;
}

static void single_account(ctx *c, unsigned run, load_run *r)
{
    if (bring_up(c, "one", run, c->o->busy, NULL)) {
        c->failed = 1;
        return;
    }
    r->v[F_RSS1] = (double)lbridge_rss_kib(&c->b);
    r->v[F_IN1] = inbound(c, c->o->busy, &r->v[F_IN1_CPU], &r->v[F_IN1_GEN_CPU]);
    double rate = c->o->latency_rate > 0 ? c->o->latency_rate : r->v[F_IN1] / 2;
    latency(c, rate, r);
    uint64_t d0 = lsub_deliveries(c->sub);
    outbound(c, 16, 0, F_OUT16, F_OUT16_REFUSED, r);
    outbound(c, 63, 0, F_OUT63, F_OUT63_REFUSED, r);
    double c0 = lbridge_cpu_s(&c->b);
    uint64_t ok = outbound(c, 4, 64, F_OUT_BATCH, F_OUT_BATCH_REFUSED, r);
    usleep(200000); /* the last acks' delivery events */
    double c1 = lbridge_cpu_s(&c->b);
    r->v[F_OUT_DELIVERED] = (double)(lsub_deliveries(c->sub) - d0);
    /* Wall-clock rates on shared cores are noisy; the bridge's CPU per
     * stanza (requests, events, acks, the 200 ms above) is not. */
    if (ok && c0 >= 0 && c1 >= c0) r->v[F_OUT_BATCH_CPU] = (c1 - c0) * 1e6 / (double)ok;
}

/* --journal-ratio: the 1-account flood on a bridge without a state directory
 * and on one with it, back to back, the order turned every run (drift on a
 * shared machine then favours neither); the run's own ratio is a figure. */
static void journal_pair(ctx *c, unsigned run, load_run *r)
{
    for (int k = 0; k < 2 && !c->failed && !load_interrupted; k++) {
        c->state = (int)((run + (unsigned)k) % 2);
        if (bring_up(c, c->state ? "jon" : "joff", run, 1, NULL)) {
            c->failed = 1;
            break;
        }
        r->v[c->state ? F_IN_JOURNAL_ON : F_IN_JOURNAL_OFF] = inbound(c, 1, NULL, NULL);
        tear_down(c, r);
    }
    c->state = c->o->state;
    if (r->v[F_IN_JOURNAL_ON] > 0 && r->v[F_IN_JOURNAL_OFF] > 0)
        r->v[F_JOURNAL_RATIO] = r->v[F_IN_JOURNAL_ON] / r->v[F_IN_JOURNAL_OFF];
}

/* The worker loops "auto" gives: one per core, none on one core (the
 * bridge's xpb_config_loops). */
int load_loops_of(int loops)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return loops >= 0 ? loops : n < 2 ? 0 : (int)n;
}

/* --loops-ratio: the --busy flood on a bridge with loops = 0 and on one with
 * --loops, back to back, the order turned every run; the run's own ratio is
 * a figure (issue 10: at least 1.5 with 2 loops). */
static void loops_pair(ctx *c, unsigned run, load_run *r)
{
    for (int k = 0; k < 2 && !c->failed && !load_interrupted; k++) {
        int many = (int)((run + (unsigned)k) % 2);
        c->loops = many ? c->o->loops : 0;
        if (bring_up(c, many ? "loopsn" : "loops1", run, c->o->busy, NULL)) {
            c->failed = 1;
            break;
        }
        r->v[many ? F_IN_LOOPS_N : F_IN_LOOPS_ONE] = inbound(c, c->o->busy, NULL, NULL);
        tear_down(c, r);
    }
    c->loops = c->o->loops;
    r->v[F_LOOPS_N] = load_loops_of(c->o->loops);
    if (r->v[F_IN_LOOPS_ONE] > 0 && r->v[F_IN_LOOPS_N] > 0)
        r->v[F_LOOPS_RATIO] = r->v[F_IN_LOOPS_N] / r->v[F_IN_LOOPS_ONE];
}

static void many_accounts(ctx *c, unsigned run, load_run *r)
{
    size_t bytes;
    if (bring_up(c, "many", run, c->o->idle + 1, &r->v[F_ONLINE])) {
        c->failed = 1;
        return;
    }
    /* Idle: a session quiet for 1-2 s parks its XML parser (XPB_LOOP_PARK_MS)
     * and the bridge gives the freed pages back 250 ms later. */
    usleep(3000000);
    r->v[F_RSSM] = (double)lbridge_rss_kib(&c->b);
    /* RSS1 is of --busy accounts: the sessions beyond those are the idle ones */
    if (r->v[F_RSS1] > 0 && r->v[F_RSSM] > 0 && c->o->idle + 1 > c->o->busy)
        r->v[F_MEM] = (r->v[F_RSSM] - r->v[F_RSS1]) / (double)(c->o->idle + 1 - c->o->busy);
    r->v[F_SCRAPE] = lbridge_scrape_ms(&c->b, &bytes);
    if (r->v[F_SCRAPE] < 0) short_of(c, "/metrics scrapes answered", 0, 1);
    r->v[F_IN_IDLE] = inbound(c, 1, NULL, NULL);
}

static void with_peer(ctx *c, load_run *r)
{
    r->v[F_PEER_IN] = peer_inbound(c->srv, lsrv_ca_file(c->srv), "peerin", c->o->messages);
    r->v[F_PEER_OUT] = peer_outbound(c->srv, lsrv_ca_file(c->srv), "peerout", c->o->sends);
    if (r->v[F_PEER_IN] < 0 || r->v[F_PEER_OUT] < 0) c->failed = 1;
    unsigned m = c->o->idle < PEER_IDLE_MAX ? c->o->idle : PEER_IDLE_MAX;
    if (m && peer_idle(c->srv, m, &r->v[F_PEER_MEM], &r->v[F_PEER_ONLINE])) c->failed = 1;
    if (m) r->v[F_PEER_IDLE_N] = m;
}

int load_run_once(const load_opts *o, unsigned run, load_run *r)
{
    ctx c = {.o = o, .state = o->state, .loops = o->loops};
    for (int i = 0; i < F_COUNT; i++)
        r->v[i] = -1;
    r->v[F_GAPS] = 0;
    lsrv_opts so = {.dir = o->dir, .sm = o->sm, .seed = o->seed + run, .max_conns = o->idle + 64};
    if (lsrv_start(&so, &c.srv)) return -1;
    single_account(&c, run, r);
    tear_down(&c, r);
    if (!load_interrupted && !c.failed) many_accounts(&c, run, r);
    tear_down(&c, r);
    if (!load_interrupted && !c.failed && o->journal_ratio) journal_pair(&c, run, r);
    if (!load_interrupted && !c.failed && o->loops_ratio) loops_pair(&c, run, r);
    if (!load_interrupted && !c.failed && o->peer) with_peer(&c, r);
    lsrv_stop(c.srv);
    /* A figure, not a failure (tear_down named the bridge): the counts
     * above check the measured work. */
    return c.failed || load_interrupted ? -1 : 0;
}
