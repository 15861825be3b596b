/* xpb-load: the bridge under load (issue 10; docs/benchmarks.md, "The bridge
 * under load"). Runs xpbridge against its own scripted direct-TLS server and
 * measures inbound, outbound, latency, memory, bring-up and /metrics, with a
 * libstrophe client doing the same work in the same run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "load.h"
#include "xpb_config.h"

#define LOAD_MAX_RUNS 64u
/* The busy account plus M idle ones, within the bridge's own limit. */
#define LOAD_MAX_IDLE (XPB_CONFIG_MAX_ACCOUNTS - 1u)
#define LOAD_MAX_BUSY 64u /* the test server floods at most 64 sessions at once */
#define LOAD_MAX_COUNT 100000000ull

volatile int load_interrupted;

static const char usage_text[] =
    "NAME\n"
    "    xpb-load - benchmark xpbridge under load, with libstrophe beside it\n"
    "\n"
    "SYNOPSIS\n"
    "    xpb-load [--xpbridge PATH] [--messages N] [--sends N] [--idle M] [--busy K]\n"
    "             [--latency-count N] [--latency-rate R] [--runs N] [--no-sm]\n"
    "             [--no-peer] [--batch-max N] [--batch-flush-us US] [--state] [--seed N]\n"
    "             [--journal-ratio] [--loops N|auto] [--loops-ratio] [--cpu-latency-us US]\n"
    "             [--keep] [--json]\n"
    "\n"
    "DESCRIPTION\n"
    "    Starts a scripted direct-TLS XMPP server (XEP-0368) on 127.0.0.1 and a\n"
    "    free port, with a self-signed certificate made at start that the bridge\n"
    "    trusts through each account's ca_file. The server accepts any account\n"
    "    with SASL PLAIN, binds a resource, offers XEP-0198 (unless --no-sm),\n"
    "    answers every iq get/set and every <r/> at once, counts the messages it\n"
    "    receives, and floods or trickles realistic messages (tools/traffic.h).\n"
    "    xpbridge runs as a child with its own config file in a private\n"
    "    directory; a SUB on its events socket counts events, checks seq for\n"
    "    gaps and timestamps arrivals; a REQ load generator keeps K send\n"
    "    requests in flight through NNG contexts. Each run measures:\n"
    "      inbound         --messages flooded to one account as fast as the\n"
    "                      socket takes them: first byte sent to last event\n"
    "                      received, the bridge's CPU (all threads, from\n"
    "                      /proc/PID/task/*/schedstat) and xpb-load's own\n"
    "                      CPU meanwhile (on 2 cores the second bounds what a\n"
    "                      bridge on both cores could reach)\n"
    "      latency         --latency-count stamped messages trickled at half the\n"
    "                      inbound figure (or --latency-rate): server send time\n"
    "                      to subscriber receive time, p50 and p99; the\n"
    "                      bridge's share (send time to the event's\n"
    "                      timestamp_us, set where it publishes); and NNG\n"
    "                      alone: 8-byte send times PUB -> SUB on ipc:// at the\n"
    "                      same rate, sleeping between sends at least the test\n"
    "                      server's tick apart, those then due in one message as\n"
    "                      the bridge batches a read, each stamped when sent;\n"
    "                      and one thread waking another through a pipe, on\n"
    "                      the same core and on another (each hop of an event\n"
    "                      between threads pays one)\n"
    "      outbound        --sends send requests with 16, then 63 in flight,\n"
    "                      then --sends stanzas in send_batch requests of 64,\n"
    "                      4 in flight (after a refusal that context waits\n"
    "                      1 ms, as a client backs off): stanzas the server\n"
    "                      received per second, and the ERR_QUEUE_FULL\n"
    "                      refusals; for send_batch also the bridge's CPU\n"
    "                      (all threads) per accepted stanza, from the first\n"
    "                      request to 200 ms after the server received the\n"
    "                      last stanza (its acks' Delivery events included)\n"
    "      idle accounts   a second bridge with 1 + M accounts: time until M + 1\n"
    "                      online state events, RSS per idle TLS session (RSS\n"
    "                      with M + 1 accounts less RSS with one, over M), one\n"
    "                      /metrics scrape, and inbound again beside them\n"
    "      libstrophe      a libstrophe client on the same server: the same\n"
    "                      flood, --sends messages sent directly, and M idle\n"
    "                      sessions (at most 1,000: it uses select()) in a\n"
    "                      child process for its memory per session\n"
    "    The figures are the medians of --runs runs, printed beside the peer's\n"
    "    figure, their ratio and the goals of issue 10 (met or MISSED). Every\n"
    "    process the tool starts is stopped by PID, also on error and Ctrl-C.\n"
    "\n"
    "OPTIONS\n"
    "    --xpbridge PATH   the bridge to run (default: ../bridge/xpbridge\n"
    "                      beside this program's directory)\n"
    "    --messages N      messages per inbound flood (default 100000)\n"
    "    --sends N         send requests per outbound figure (default 20000)\n"
    "    --idle M          idle accounts beside the busy one (default 1000; at\n"
    "                      most 9999: the bridge takes 10,000 accounts)\n"
    "    --loops N|auto    the bridge's limits.loops: sessions on N worker loops,\n"
    "                      0 all on its main loop (default auto, the bridge's\n"
    "                      own default: one per core, none on one core)\n"
    "    --loops-ratio     each run also floods the --busy accounts on a bridge\n"
    "                      with loops = 0 and on one with --loops, back to back\n"
    "                      (the order turns every run), and reports the runs'\n"
    "                      ratio (issue 10: >= 1.5 with 2 loops)\n"
    "    --busy K          the first inbound figure floods K accounts at once,\n"
    "                      --messages in all, split evenly (default 1; at most\n"
    "                      64): the bridge's figure for many busy sessions, the\n"
    "                      one a bridge with several loops spreads over cores.\n"
    "                      The figure is then not compared with libstrophe's\n"
    "                      (one session), nor the idle figure with it\n"
    "    --latency-count N stamped messages for the latency figure (default 20000)\n"
    "    --latency-rate R  their rate per second (default: half the inbound\n"
    "                      figure of the same run)\n"
    "    --runs N          runs; figures are medians (default 3)\n"
    "    --no-sm           the server does not offer XEP-0198\n"
    "    --no-peer         skip the libstrophe peer\n"
    "    --batch-max N     the bridge's bus.batch_max (default: its own)\n"
    "    --batch-flush-us US  the bridge's bus.batch_flush_us (default: its own;\n"
    "                      0: a batch goes out when the loop has run what is ready)\n"
    "    --state           give the bridge a state directory (in the run's work\n"
    "                      directory): every event journaled, every send kept\n"
    "                      in the outbox before it is answered (default: none)\n"
    "    --journal-ratio   each run also floods a 1-account bridge without a state\n"
    "                      directory and one with it, back to back (the order\n"
    "                      turns every run), and reports the runs' on/off ratio\n"
    "                      (issue 11: >= 0.8)\n"
    "    --seed N          traffic generator seed (default 1)\n"
    "    --cpu-latency-us US  hold a PM QoS request on /dev/cpu_dma_latency for\n"
    "                      the whole run (root; what tuned's latency-performance\n"
    "                      profile does): idle cores wake within US microseconds.\n"
    "                      0 keeps them polling instead of halting, so a thread\n"
    "                      woken on the other core runs in a few microseconds,\n"
    "                      not tens (docs/benchmarks.md, \"Where the hop goes\")\n"
    "    --keep            keep the work directory (configs, logs) and print it\n"
    "    --json            print one JSON object instead of the table\n"
    "    -h, --help        this text\n"
    "\n"
    "EXIT STATUS\n"
    "    0 when every scenario completed (missed goals do not change it); 1 when\n"
    "    a scenario lost work (events missing, sends not received, the bridge\n"
    "    exited) or failed; 2 on a usage error; 130 when interrupted.\n"
    "\n"
    "EXAMPLES\n"
    "    xpb-load --runs 3\n"
    "    xpb-load --idle 9999 --runs 3 --json\n"
    "    xpb-load --messages 200 --sends 100 --idle 5 --latency-count 50 --runs 1\n";

enum {
    O_XPB = 256,
    O_MSG,
    O_SENDS,
    O_IDLE,
    O_LATN,
    O_LATR,
    O_RUNS,
    O_NOSM,
    O_NOPEER,
    O_BMAX,
    O_BFLUSH,
    O_SEED,
    O_CPULAT,
    O_KEEP,
    O_JSON,
    O_STATE,
    O_JRATIO,
    O_LRATIO,
    O_BUSY,
    O_LOOPS
};

static const struct option long_opts[] = {{"xpbridge", required_argument, 0, O_XPB},
                                          {"messages", required_argument, 0, O_MSG},
                                          {"sends", required_argument, 0, O_SENDS},
                                          {"idle", required_argument, 0, O_IDLE},
                                          {"busy", required_argument, 0, O_BUSY},
                                          {"loops", required_argument, 0, O_LOOPS},
                                          {"latency-count", required_argument, 0, O_LATN},
                                          {"latency-rate", required_argument, 0, O_LATR},
                                          {"runs", required_argument, 0, O_RUNS},
                                          {"no-sm", no_argument, 0, O_NOSM},
                                          {"no-peer", no_argument, 0, O_NOPEER},
                                          {"batch-max", required_argument, 0, O_BMAX},
                                          {"batch-flush-us", required_argument, 0, O_BFLUSH},
                                          {"seed", required_argument, 0, O_SEED},
                                          {"cpu-latency-us", required_argument, 0, O_CPULAT},
                                          {"keep", no_argument, 0, O_KEEP},
                                          {"json", no_argument, 0, O_JSON},
                                          {"state", no_argument, 0, O_STATE},
                                          {"journal-ratio", no_argument, 0, O_JRATIO},
                                          {"loops-ratio", no_argument, 0, O_LRATIO},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "xpb-load: %s%s%s\nTry 'xpb-load --help'.\n", what, arg ? ": " : "",
            arg ? arg : "");
    return 2;
}

/* 0, or -1 when s is not a whole number in [min, max]. */
static int parse_num(const char *s, unsigned long long min, unsigned long long max,
                     unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) return -1;
    *out = v;
    return 0;
}

typedef struct cli {
    load_opts o;
    int keep;
    long cpu_latency_us; /* -1: leave the machine's idle states alone */
    char xpbridge[LOAD_PATH_MAX];
} cli;

static int set_num(cli *c, int opt, const char *arg)
{
    unsigned long long v;
    unsigned long long max = opt == O_IDLE                      ? LOAD_MAX_IDLE
                             : opt == O_BUSY                    ? LOAD_MAX_BUSY
                             : opt == O_LOOPS                   ? 64u
                             : opt == O_CPULAT                  ? 2000000000u
                             : opt == O_RUNS                    ? LOAD_MAX_RUNS
                             : opt == O_BMAX || opt == O_BFLUSH ? 100000000u
                                                                : LOAD_MAX_COUNT;
    unsigned long long min =
        opt == O_IDLE || opt == O_SEED || opt == O_BFLUSH || opt == O_LOOPS || opt == O_CPULAT ? 0
                                                                                               : 1;
    if (parse_num(arg, min, max, &v)) {
        char what[96];
        snprintf(what, sizeof(what), "not a number from %llu to %llu", min, max);
        return usage_error(what, arg);
    }
    switch (opt) {
    case O_MSG:
        c->o.messages = v;
        break;
    case O_SENDS:
        c->o.sends = v;
        break;
    case O_IDLE:
        c->o.idle = (unsigned)v;
        break;
    case O_BUSY:
        c->o.busy = (unsigned)v;
        break;
    case O_LOOPS:
        c->o.loops = (int)v;
        break;
    case O_CPULAT:
        c->cpu_latency_us = (long)v;
        break;
    case O_LATN:
        c->o.latency_count = v;
        break;
    case O_LATR:
        c->o.latency_rate = (double)v;
        break;
    case O_RUNS:
        c->o.runs = (unsigned)v;
        break;
    case O_BMAX:
        c->o.batch_max = (unsigned)v;
        break;
    case O_BFLUSH:
        c->o.batch_flush_us = (unsigned)v;
        c->o.batch_flush_set = 1;
        break;
    default:
        c->o.seed = v;
        break;
    }
    return 0;
}

static int parse_args(int argc, char **argv, cli *c)
{
    int opt;
    c->o = (load_opts){.messages = 100000,
                       .sends = 20000,
                       .idle = 1000,
                       .busy = 1,
                       .loops = -1,
                       .latency_count = 20000,
                       .runs = 3,
                       .sm = 1,
                       .peer = 1,
                       .seed = 1};
    while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        int rc = 0;
        if (opt == 'h') {
            fputs(usage_text, stdout);
            exit(0);
        } else if (opt == O_XPB) {
            c->o.xpbridge = optarg;
        } else if (opt == O_STATE) {
            c->o.state = 1;
        } else if (opt == O_JRATIO) {
            c->o.journal_ratio = 1;
        } else if (opt == O_LRATIO) {
            c->o.loops_ratio = 1;
        } else if (opt == O_LOOPS && !strcmp(optarg, "auto")) {
            c->o.loops = -1;
        } else if (opt == O_NOSM || opt == O_NOPEER || opt == O_KEEP || opt == O_JSON) {
            *(opt == O_NOSM     ? &c->o.sm
              : opt == O_NOPEER ? &c->o.peer
              : opt == O_KEEP   ? &c->keep
                                : &c->o.json) = opt == O_KEEP || opt == O_JSON;
        } else if (opt == '?') {
            rc = 2;
        } else {
            rc = set_num(c, opt, optarg);
        }
        if (rc) return rc;
    }
    if (optind < argc) return usage_error("unexpected argument", argv[optind]);
    if (c->o.busy > c->o.messages) return usage_error("--busy is more than --messages", NULL);
    if (c->o.busy > c->o.idle + 1)
        return usage_error("--busy is more than the 1 + --idle accounts of the idle figure", NULL);
    return 0;
}

/* ../bridge/xpbridge beside this program's directory (the build tree). */
static int default_bridge(cli *c)
{
    char self[LOAD_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) return -1;
    self[n] = 0;
    if (snprintf(c->xpbridge, sizeof(c->xpbridge), "%s/../bridge/xpbridge", dirname(self)) >=
            (int)sizeof(c->xpbridge) ||
        access(c->xpbridge, X_OK))
        return -1;
    c->o.xpbridge = c->xpbridge;
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    load_interrupted = 1;
}

static void signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed TLS peer is an error return, not a death */
}

/* Each session is a socket at both ends: M idle accounts need 2 M + a few
 * descriptors in this process and M in the bridge, which inherits the limit. */
static void raise_fd_limit(const load_opts *o)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)o->idle + 256; /* the server's ends; the bridge holds its own */
    if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= want) return;
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    if (setrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur < want)
        fprintf(stderr, "xpb-load: RLIMIT_NOFILE is %llu, below the %llu that --idle %u needs\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)want, o->idle);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(path);
}

/* --cpu-latency-us: the request holds while the descriptor stays open
 * (Documentation/power/pm_qos_interface.rst); the process's exit drops it. */
static int hold_cpu_latency(long lat_us)
{
    if (lat_us < 0) return 0;
    int fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);
    int32_t v = (int32_t)lat_us;
    if (fd < 0 || write(fd, &v, sizeof v) != (ssize_t)sizeof v) {
        fprintf(stderr, "xpb-load: --cpu-latency-us: /dev/cpu_dma_latency: %s\n", strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    fprintf(stderr, "xpb-load: PM QoS cpu_dma_latency held at %ld us for the run\n", lat_us);
    return 0; /* fd left open on purpose */
}

/* Every run starts from the same thread state: the test server's thread and
 * the bridge inherit this thread's timer slack, and a probe that once left
 * it at 1 ns made runs 2 and 3 measure another hop (docs/benchmarks.md). */
static int same_slack(unsigned run, int slack)
{
    int now = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    if (now == slack) return 1;
    fprintf(stderr,
            "xpb-load: after run %u: the timer slack is %d ns, not the %d ns it started with; "
            "a run's test server and bridge inherit it\n",
            run, now, slack);
    return 0;
}

static int run_all(cli *c)
{
    load_run runs[LOAD_MAX_RUNS];
    int rc = 0, slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    for (unsigned i = 0; i < c->o.runs && !load_interrupted; i++) {
        if (!c->o.json) fprintf(stderr, "xpb-load: run %u of %u\n", i + 1, c->o.runs);
        if (load_run_once(&c->o, i, &runs[i])) rc = 1;
        if (!load_interrupted && !same_slack(i + 1, slack)) return 1;
    }
    if (load_interrupted) return 130;
    if (c->o.json)
        load_report_json(&c->o, runs, c->o.runs);
    else
        load_report_text(&c->o, runs, c->o.runs);
    return rc;
}

int main(int argc, char **argv)
{
    cli c;
    memset(&c, 0, sizeof(c));
    if (argc == 5 && !strcmp(argv[1], "--peer-idle-child")) /* peer_idle.c runs itself */
        return peer_idle_child(atoi(argv[2]), argv[3], (unsigned)atoi(argv[4]));
    c.cpu_latency_us = -1;
    int rc = parse_args(argc, argv, &c);
    if (rc) return rc;
    if (hold_cpu_latency(c.cpu_latency_us)) return 2;
    if (!c.o.xpbridge && default_bridge(&c))
        return usage_error("no xpbridge beside this program: give --xpbridge PATH", NULL);
    char dir[] = "/tmp/xpb-load-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "xpb-load: cannot make a work directory: %s\n", strerror(errno));
        return 1;
    }
    c.o.dir = dir;
    signals();
    raise_fd_limit(&c.o);
    rc = run_all(&c);
    if (c.keep)
        fprintf(stderr, "xpb-load: work directory kept: %s\n", dir);
    else
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
