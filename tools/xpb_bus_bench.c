/* xpb-bus-bench: events per second through the bus hop, the front (seqs,
 * batching) and the NNG back end, to one subscriber on ipc:// (the SUB side
 * is xpbctl's, tools/xpbctl/bus_client.c); with --nats-r1 / --nats-r3, the
 * same events through the NATS back end until JetStream has acknowledged
 * every one (R=1 and R=3 streams), in the same run. docs/benchmarks.md,
 * "The bus hop" and "NATS JetStream"; tools/nats_bench.sh starts the servers. */
#define _DEFAULT_SOURCE /* usleep, mkdtemp */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xpb_bus.h"
#include "xpb_bus_backend.h"
#include "xpb_bus_nats.h"
#include "xpb_loop.h"
#include "xpbctl/bus_client.h"

#define BUS_BENCH_DEFAULT_EVENTS 500000u
#define BUS_BENCH_MAX_EVENTS 100000000u
#define BUS_BENCH_DEFAULT_ACCOUNTS 8u
#define BUS_BENCH_MAX_ACCOUNTS 1024u
#define BUS_BENCH_RUNS 3u
#define BUS_BENCH_REASON_BYTES 160u /* the payload of each event */
#define BUS_BENCH_DRAIN_MS 1000     /* a run ends this long after the last delivery */

#define BUS_BENCH_NATS_CHUNK 2000u     /* events published per loop turn */
#define BUS_BENCH_NATS_WINDOW 50000u   /* events published and not yet acknowledged, at most */
#define BUS_BENCH_NATS_TIMEOUT_S 120   /* a NATS run gives up after this long */

static const char usage_text[] =
    "usage: xpb-bus-bench [--events N] [--accounts N] [--nats-r1 URL] [--nats-r3 URL,URL,URL]\n"
    "  With --nats-r1 (one nats-server) and/or --nats-r3 (a 3-node cluster), the\n"
    "  same events also go through the NATS back end (stream XPB_EVENTS, R=1 or\n"
    "  R=3, file storage) and each run ends when JetStream has acknowledged the\n"
    "  last event: acknowledged events/s, three runs and the median each.\n"
    "  Publishes N events (default 500000) round-robin over N accounts (default 8)\n"
    "  through xpb_bus_publish on the NNG back end, to one subscriber on ipc://,\n"
    "  three runs, and prints each run and the medians: published events/s (the\n"
    "  loop thread's time in xpb_bus_publish and the final flush) and delivered\n"
    "  events/s (until the subscriber has the last event it will get; PUB drops\n"
    "  batches for a subscriber that falls XPB_BUS_PUB_SENDBUF batches behind).\n";

typedef struct sub_state {
    ctl c;
    ctl_sub *sub;
    atomic_ulong events;
    atomic_int stop;
    atomic_long last_ns; /* CLOCK_MONOTONIC of the last delivery */
} sub_state;

static long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Events in one frame: topic, NUL, then EventBatch fields; every field 1
 * (tag 0x0a) is one event. Fields are walked, not unpacked. */
static unsigned long count_events(const uint8_t *p, size_t len)
{
    const uint8_t *nul = memchr(p, 0, len), *end = p + len;
    if (nul == NULL) return 0;
    unsigned long n = 0;
    for (p = nul + 1; p < end;) {
        uint8_t tag = *p++;
        uint64_t v = 0;
        for (unsigned sh = 0; p < end && sh < 64; sh += 7) {
            uint8_t b = *p++;
            v |= (uint64_t)(b & 0x7f) << sh;
            if ((b & 0x80) == 0) break;
        }
        if (tag == 0x0a) {
            n++;
            p += v;
        } else if ((tag & 7) != 0) {
            return n; /* not an EventBatch field we know */
        }
    }
    return n;
}

static void *sub_main(void *arg)
{
    sub_state *s = arg;
    while (!atomic_load(&s->stop)) {
        const uint8_t *data;
        size_t len;
        int rc = ctl_sub_next(s->sub, &data, &len);
        if (rc == CTL_SUB_TIMEOUT) continue;
        if (rc != 0) break;
        atomic_fetch_add(&s->events, count_events(data, len));
        atomic_store(&s->last_ns, mono_ns());
    }
    return NULL;
}

static void on_request(void *ud, xpb_bus_request *req, const Xpb__V1__Request *r)
{
    (void)ud, (void)r;
    xpb_bus_reply_error(req, XPB__V1__ERROR_CODE__ERR_INTERNAL, "xpb-bus-bench answers nothing");
}

typedef struct run_result {
    double published_per_s, delivered_per_s;
    unsigned long delivered;
} run_result;

static void publish_one(xpb_bus *bus, const char *account, const char *reason)
{
    Xpb__V1__SessionState st = XPB__V1__SESSION_STATE__INIT;
    st.has_state = 1;
    st.state = XPB__V1__SESSION_STATE__STATE__STATE_ONLINE;
    st.reason = (char *)reason;
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STATE;
    ev.state = &st;
    if (xpb_bus_publish(bus, "state", account, &ev) != 0) {
        fprintf(stderr, "xpb-bus-bench: publish failed\n");
        exit(1);
    }
}

/* Waits until the subscriber has seen want events more than base (the
 * probe that says it is connected), at most ms. */
static int wait_events(sub_state *s, unsigned long want, int ms)
{
    for (int i = 0; i < ms && atomic_load(&s->events) < want; i++)
        usleep(1000);
    return atomic_load(&s->events) >= want ? 0 : -1;
}

static int one_run(xpb_loop *loop, const char *dir, unsigned events, unsigned accounts,
                   run_result *out)
{
    static unsigned run_no;
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    char ev_url[256], rq_url[256], err[256];
    snprintf(ev_url, sizeof ev_url, "ipc://%s/ev%u", dir, run_no);
    snprintf(rq_url, sizeof rq_url, "ipc://%s/rq%u", dir, run_no++);
    cfg.events_url = ev_url;
    cfg.requests_url = rq_url;
    xpb_bus *bus = NULL;
    if (xpb_bus_new(&bus, loop, &cfg, on_request, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "xpb-bus-bench: %s\n", err);
        return -1;
    }
    sub_state s = {.c = {.cmd = "bench", .timeout_ms = 1000}};
    snprintf(s.c.events, sizeof s.c.events, "%s", ev_url);
    if (ctl_sub_open(&s.c, NULL, 0, &s.sub) != 0) return -1;
    pthread_t th;
    pthread_create(&th, NULL, sub_main, &s);
    char reason[BUS_BENCH_REASON_BYTES + 1];
    memset(reason, 'r', BUS_BENCH_REASON_BYTES);
    reason[BUS_BENCH_REASON_BYTES] = '\0';
    /* Probe until the subscription is up: NNG dials in the background. */
    int up = -1;
    for (int i = 0; i < 50 && up != 0; i++) {
        publish_one(bus, "probe@example.org", "probe");
        xpb_bus_flush(bus);
        up = wait_events(&s, 1, 100);
    }
    unsigned long base = atomic_load(&s.events);
    char(*acc)[64] = calloc(accounts, sizeof *acc);
    for (unsigned a = 0; a < accounts; a++)
        snprintf(acc[a], sizeof acc[a], "user%u@example.org", a);
    long t0 = mono_ns();
    for (unsigned i = 0; i < events; i++)
        publish_one(bus, acc[i % accounts], reason);
    xpb_bus_flush(bus);
    long t1 = mono_ns();
    /* Delivery: until the subscriber is quiet for BUS_BENCH_DRAIN_MS. */
    while (atomic_load(&s.events) - base < events &&
           mono_ns() - atomic_load(&s.last_ns) < BUS_BENCH_DRAIN_MS * 1000000L)
        usleep(1000);
    out->delivered = atomic_load(&s.events) - base;
    long t2 = atomic_load(&s.last_ns);
    atomic_store(&s.stop, 1);
    pthread_join(th, NULL);
    ctl_sub_close(s.sub);
    xpb_bus_free(bus);
    free(acc);
    out->published_per_s = events / ((t1 - t0) / 1e9);
    out->delivered_per_s = t2 > t0 ? out->delivered / ((t2 - t0) / 1e9) : 0;
    return up;
}

/* ---- NATS: the loop must run (acks arrive through it) ---- */

typedef struct nats_run {
    xpb_bus *bus;
    xpb_loop *loop;
    xpb_timer *t;
    unsigned i, events, accounts;
    char (*acc)[64];
    const char *reason;
    uint64_t first_seq;
    long t0, t_acked;
    int failed;
} nats_run;

static void nats_step(void *ud)
{
    nats_run *n = ud;
    xpb_bus_stats st;
    xpb_bus_get_stats(n->bus, &st);
    if (mono_ns() - n->t0 > BUS_BENCH_NATS_TIMEOUT_S * 1000000000L) {
        fprintf(stderr, "xpb-bus-bench: JetStream acknowledged %llu of %u events in %d s\n",
                (unsigned long long)(st.acked_seq - n->first_seq), n->events,
                BUS_BENCH_NATS_TIMEOUT_S);
        n->failed = 1;
        xpb_loop_stop(n->loop);
        return;
    }
    if (n->i < n->events && st.last_seq - st.acked_seq < BUS_BENCH_NATS_WINDOW) {
        for (unsigned k = 0; k < BUS_BENCH_NATS_CHUNK && n->i < n->events; k++, n->i++)
            publish_one(n->bus, n->acc[n->i % n->accounts], n->reason);
        xpb_bus_flush(n->bus);
    }
    if (n->i == n->events && st.acked_seq >= n->first_seq + n->events) {
        n->t_acked = mono_ns();
        xpb_loop_stop(n->loop);
        return;
    }
    xpb_timer_start(n->t, n->i < n->events ? 0 : 1);
}

static int nats_one_run(xpb_loop *loop, const char *urls, int replicas, unsigned events,
                        unsigned accounts, double *acked_per_s)
{
    char buf[1024], err[512];
    snprintf(buf, sizeof buf, "%s", urls);
    const char *servers[XPB_NATS_MAX_SERVERS];
    size_t ns = 0;
    char *comma = NULL;
    for (char *p = buf; p && ns < XPB_NATS_MAX_SERVERS; p = comma ? comma + 1 : NULL) {
        comma = strchr(p, ',');
        if (comma) *comma = '\0';
        servers[ns++] = p;
    }
    xpb_bus_nats_cfg nc = {.servers = servers, .n_servers = ns, .replicas = replicas,
                           .bridge_id = "xpb-bus-bench"};
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    cfg.backend = &xpb_bus_nats_ops;
    cfg.backend_cfg = &nc;
    nats_run n = {.loop = loop, .events = events, .accounts = accounts};
    if (xpb_bus_new(&n.bus, loop, &cfg, on_request, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "xpb-bus-bench: %s\n", err);
        return -1;
    }
    char reason[BUS_BENCH_REASON_BYTES + 1];
    memset(reason, 'r', BUS_BENCH_REASON_BYTES);
    reason[BUS_BENCH_REASON_BYTES] = '\0';
    n.reason = reason;
    n.acc = calloc(accounts, sizeof *n.acc);
    for (unsigned a = 0; a < accounts; a++)
        snprintf(n.acc[a], sizeof n.acc[a], "user%u@example.org", a);
    xpb_bus_stats st;
    xpb_bus_get_stats(n.bus, &st);
    n.first_seq = st.last_seq;
    xpb_timer_new(loop, nats_step, &n, &n.t);
    n.t0 = mono_ns();
    xpb_timer_start(n.t, 0);
    xpb_loop_run(loop);
    xpb_timer_free(n.t);
    xpb_bus_free(n.bus);
    free(n.acc);
    *acked_per_s = n.failed ? 0 : events / ((n.t_acked - n.t0) / 1e9);
    return n.failed ? -1 : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median3(double a, double b, double c)
{
    double v[3] = {a, b, c};
    qsort(v, 3, sizeof v[0], cmp_double);
    return v[1];
}

static const char *nats_urls[2]; /* --nats-r1, --nats-r3 */

static int parse_args(int argc, char **argv, unsigned *events, unsigned *accounts)
{
    for (int i = 1; i < argc; i++) {
        int which = strcmp(argv[i], "--nats-r1") == 0 ? 0 : strcmp(argv[i], "--nats-r3") == 0 ? 1
                                                                                             : -1;
        if (which >= 0 && i + 1 < argc) {
            nats_urls[which] = argv[++i];
            continue;
        }
        unsigned *dst = strcmp(argv[i], "--events") == 0     ? events
                        : strcmp(argv[i], "--accounts") == 0 ? accounts
                                                             : NULL;
        unsigned max = dst == events ? BUS_BENCH_MAX_EVENTS : BUS_BENCH_MAX_ACCOUNTS;
        char *end = NULL;
        unsigned long v = dst != NULL && i + 1 < argc ? strtoul(argv[++i], &end, 10) : 0;
        if (dst == NULL || end == NULL || *end != '\0' || v == 0 || v > max) {
            fputs(usage_text, stderr);
            return -1;
        }
        *dst = (unsigned)v;
    }
    return 0;
}

int main(int argc, char **argv)
{
    unsigned events = BUS_BENCH_DEFAULT_EVENTS, accounts = BUS_BENCH_DEFAULT_ACCOUNTS;
    if (parse_args(argc, argv, &events, &accounts) != 0) return 2;
    char dir[] = "/tmp/xpb-bus-bench-XXXXXX";
    if (mkdtemp(dir) == NULL) return 1;
    xpb_loop_config lc = {.thread_safe = nats_urls[0] != NULL || nats_urls[1] != NULL};
    xpb_loop *loop = NULL;
    if (xpb_loop_new(&loop, &lc) != 0) return 1;
    run_result r[BUS_BENCH_RUNS];
    printf("xpb-bus-bench: %u events of %u reason bytes over %u accounts, NNG %s\n", events,
           BUS_BENCH_REASON_BYTES, accounts, xpb_bus_library_version());
    int rc = 0;
    for (unsigned i = 0; i < BUS_BENCH_RUNS && rc == 0; i++) {
        rc = one_run(loop, dir, events, accounts, &r[i]);
        printf("run %u: published %.0f events/s, delivered %lu (%.0f events/s)\n", i + 1,
               r[i].published_per_s, r[i].delivered, r[i].delivered_per_s);
    }
    if (rc == 0)
        printf("median: published %.0f events/s, delivered %.0f events/s\n",
               median3(r[0].published_per_s, r[1].published_per_s, r[2].published_per_s),
               median3(r[0].delivered_per_s, r[1].delivered_per_s, r[2].delivered_per_s));
    for (int w = 0; w < 2 && rc == 0; w++) {
        if (nats_urls[w] == NULL) continue;
        double a[BUS_BENCH_RUNS];
        for (unsigned i = 0; i < BUS_BENCH_RUNS && rc == 0; i++) {
            rc = nats_one_run(loop, nats_urls[w], w ? 3 : 1, events, accounts, &a[i]);
            printf("nats R=%d run %u: acknowledged by JetStream %.0f events/s\n", w ? 3 : 1,
                   i + 1, a[i]);
        }
        if (rc == 0)
            printf("nats R=%d median: acknowledged %.0f events/s\n", w ? 3 : 1,
                   median3(a[0], a[1], a[2]));
    }
    xpb_loop_free(loop);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) rc = -1;
    return rc == 0 ? 0 : 1;
}
