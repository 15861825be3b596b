/* xpb-load's parts (tools/xpb-load/README.md): the scripted direct-TLS XMPP
 * test server, the bridge process it benchmarks, the bus subscriber and REQ
 * load generator, and the libstrophe peer. One header: the tool is small. */
#ifndef XPB_LOAD_H
#define XPB_LOAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LOAD_DOMAIN "load.test" /* every account's domain; the certificate's name */
#define LOAD_PASSWORD "load-pw" /* the test server accepts any password */
#define LOAD_PATH_MAX 512
#define LOAD_TRICKLE_TICK_NS 20000 /* the test server's tick while it trickles: 20 us */
#define LOAD_CLOSE_MS 2000u        /* xpb_nng_close_bounded: NNG 1.5.2 can hang in nng_close */

/* ---- clock --------------------------------------------------------------- */
uint64_t load_now_ns(void); /* CLOCK_MONOTONIC: server and subscriber share it */

/* ---- receiving on NNG's thread (bus.c) ------------------------------------ */
/* For the files that speak NNG (check_layers.sh): seen after <nng/nng.h>. */
#ifdef NNG_MAJOR_VERSION
/* fn gets every message received on s, on NNG's own thread, and the message
 * is freed after it returns: a thread of ours blocked in nng_recvmsg would be
 * one more wake per message, tens of us on a VM whose idle cores halt
 * (docs/benchmarks.md). For the SUB and the NNG floor probe alike. */
typedef void (*lrecv_fn)(void *ud, nng_msg *m);
typedef struct lrecv {
    nng_socket s;
    nng_aio *aio; /* NULL: not started, or stopped */
    lrecv_fn fn;
    void *ud;
} lrecv;
int lrecv_start(lrecv *r, nng_socket s, lrecv_fn fn, void *ud); /* 0 or an NNG error */
void lrecv_stop(lrecv *r); /* no fn runs after it; nothing if not started */
#endif

/* ---- the test server (server.c, server_xml.c, cert.c) -------------------- */
typedef struct lsrv lsrv;

typedef struct lsrv_opts {
    const char *dir;    /* where the certificate and key are written */
    int sm;             /* offer XEP-0198 */
    uint64_t seed;      /* traffic generator seed */
    unsigned max_conns; /* sessions held at once */
} lsrv_opts;

/* Listens on 127.0.0.1, a free port, in its own thread. 0 or -1 (printed). */
int lsrv_start(const lsrv_opts *o, lsrv **out);
void lsrv_stop(lsrv *s);
int lsrv_port(const lsrv *s);
const char *lsrv_ca_file(const lsrv *s);
/* Sessions bound (resource bind done) now. */
unsigned lsrv_bound(lsrv *s);
/* Flood: n messages to the session of user (localpart) as fast as the socket
 * takes them. Trickle: n messages at rate per second, each stamped with its
 * send time (CLOCK_MONOTONIC ns) in its id "lt-NS". -1 when not bound. */
int lsrv_flood(lsrv *s, const char *user, uint64_t n);
int lsrv_trickle(lsrv *s, const char *user, uint64_t n, double rate);
/* Whether the last flood or trickle to user has been written out, and when
 * its first and last bytes went. */
int lsrv_sent(lsrv *s, const char *user, uint64_t *t_first, uint64_t *t_last);
/* Message stanzas received from user's sessions so far (counting mode: the
 * server always counts and answers <r/> with <a/> at once). */
uint64_t lsrv_received(lsrv *s, const char *user);

/* Makes a self-signed P-256 certificate for LOAD_DOMAIN and 127.0.0.1 in dir
 * (cert.pem, key.pem). 0 or -1 (printed). */
int load_make_cert(const char *dir, char *cert, char *key, size_t len);

/* ---- top-level element splitter (server_xml.c) --------------------------- */
typedef struct lxml {
    int depth;    /* 0 before the stream header, 1 inside the stream */
    int in_tag;   /* inside <...> */
    char quote;   /* inside an attribute value */
    int closing;  /* the tag is an end tag */
    char prev;    /* previous byte inside the tag */
    int fresh;    /* the next byte is the first after '<' */
    int bang;     /* <? ... ?> or <!...> */
    size_t start; /* offset of the current top-level element */
    size_t tag;   /* offset of the current tag's '<' */
} lxml;

/* Scans buf[*pos..len); returns 1 with [*el, *el_len) a complete top-level
 * element (or the stream header when depth went 0 -> 1, or "</stream:stream>"
 * when it went to 0), 0 when more bytes are needed. */
int lxml_next(lxml *x, const char *buf, size_t len, size_t *pos, size_t *el, size_t *el_len);
/* The offset the caller must keep when it compacts its buffer (bytes before
 * it are done), and the shift after it dropped n bytes from the front. */
size_t lxml_keep(const lxml *x, size_t pos);
void lxml_shift(lxml *x, size_t n);

/* ---- the bridge process (bridge.c) --------------------------------------- */
typedef struct lbridge {
    pid_t pid;
    char dir[LOAD_PATH_MAX];
    char events[LOAD_PATH_MAX], requests[LOAD_PATH_MAX], conf[LOAD_PATH_MAX];
    int metrics_port;
} lbridge;

typedef struct lbridge_opts {
    const char *xpbridge, *dir, *ca_file;
    int server_port, sm;
    unsigned accounts;                  /* load0 .. loadN-1 @LOAD_DOMAIN; load0 is the busy one */
    unsigned batch_max, batch_flush_us; /* batch_max 0: the bridge's default */
    int batch_flush_set;                /* 0: the bridge's batch_flush_us (0 is a value) */
    int state;                          /* 1: state.dir = dir/state; 0: "none" */
    int loops;                          /* limits.loops: worker loops (0: none); -1: "auto" */
} lbridge_opts;

/* Writes dir/xpbridge.conf and fills b's endpoints; then spawn runs it, so a
 * subscriber can dial before the bridge publishes its first state events. */
int lbridge_config(const lbridge_opts *o, lbridge *b);
int lbridge_spawn(const lbridge_opts *o, lbridge *b);
int lbridge_alive(lbridge *b); /* 0 once it exited (printed, and reaped) */
void lbridge_stop(lbridge *b);
long lbridge_rss_kib(const lbridge *b); /* VmRSS, or -1 */
double lbridge_cpu_s(const lbridge *b); /* seconds on a CPU, all threads, or -1 */
/* GET /metrics; the time to the last byte in ms, or -1. */
double lbridge_scrape_ms(const lbridge *b, size_t *bytes);
void load_account(unsigned i, char *out, size_t len); /* "loadI" */

/* ---- the bus side (bus.c) ------------------------------------------------ */
typedef struct lsub lsub;
int lsub_start(const char *events_url, lsub **out);
void lsub_stop(lsub *s);
void lsub_reset(lsub *s);          /* counters and latency samples to 0 */
uint64_t lsub_messages(lsub *s);   /* message events */
uint64_t lsub_online(lsub *s);     /* ONLINE and RESUMED state events */
uint64_t lsub_deliveries(lsub *s); /* ACKED delivery events */
uint64_t lsub_gaps(lsub *s);       /* events missing by seq */
uint64_t lsub_last_ns(lsub *s);    /* arrival of the last message event */
/* Latency samples of "lt-" messages in ns, sorted; *n their count. */
const uint64_t *lsub_latencies(lsub *s, size_t *n);
/* The bridge's share of each: the probe's send to its event's timestamp_us
 * (set where the bridge publishes, before NNG), sorted. */
const uint64_t *lsub_bridge_latencies(lsub *s, size_t *n);
/* NNG alone, for comparison with the hop: n 8-byte messages at rate per
 * second from a PUB to a SUB on ipc:// in dir, set up as the bridge's PUB
 * and this SUB are; arrival - send p50 and p99 in us. 0 or -1 (printed). */
int lnng_floor(const char *dir, uint64_t n, double rate, double *p50_us, double *p99_us);
/* One thread waking another through a pipe, p50 of half the round trip in
 * us: on the same core, and on another (-1 with one core). Every hop of an
 * event between threads (server, bridge, NNG, subscriber) pays one. */
void lwake_floor(double *same_core_us, double *other_core_us);

typedef struct lreq_result {
    uint64_t ok, queue_full, other_err;
    double seconds;
} lreq_result;

/* n send requests for account to peer@LOAD_DOMAIN, in_flight at once through
 * NNG contexts. 0 or -1 (printed). */
/* One `status` request: BridgeStatus.sessions_online. 0 or -1. */
int lreq_status(const char *requests_url, uint64_t *online);
/* batch 0: one `send` per request; else `send_batch` requests of up to
 * batch stanzas each (the counts in r are per stanza). */
int lreq_run(const char *requests_url, const char *account, uint64_t n, unsigned in_flight,
             unsigned batch, lreq_result *r);

/* ---- the libstrophe peer (peer.c) ---------------------------------------- */
/* Inbound: logs in as user, asks the server to flood n, counts messages;
 * stanzas/s, or -1. Outbound: sends n messages; stanzas/s as counted by the
 * server, or -1. */
double peer_inbound(lsrv *srv, const char *ca_file, const char *user, uint64_t n);
double peer_outbound(lsrv *srv, const char *ca_file, const char *user, uint64_t n);
/* Idle: m libstrophe sessions in a child process (this program again, with
 * --peer-idle-child): its RSS growth per session, and the time to online.
 * 0 or -1 (printed). */
#define PEER_IDLE_MAX 1000u /* libstrophe's select(): FD_SETSIZE is 1024 */
int peer_idle(lsrv *srv, unsigned m, double *kib_per_session, double *online_s);
int peer_idle_child(int port, const char *ca_file, unsigned m);

/* ---- scenarios (scenario.c) and the report (report.c) -------------------- */
typedef struct load_opts {
    const char *xpbridge, *dir;
    uint64_t messages, sends, latency_count;
    double latency_rate; /* 0: half the run's one-account inbound figure */
    unsigned idle, runs, batch_max, batch_flush_us;
    unsigned busy; /* accounts flooded at once for the first inbound figure (default 1) */
    int loops;     /* the bridge's limits.loops; -1 (the default): "auto", one per core */
    int sm, peer, json, batch_flush_set;
    int state; /* the bridge gets a state directory (journal, outbox) */
    int journal_ratio; /* each run also floods a bridge without and one with it */
    int loops_ratio;   /* each run also floods --busy accounts on loops = 0 and on --loops */
    uint64_t seed;
} load_opts;

/* One run's figures; -1 where a scenario failed or was not run. */
typedef enum load_fig {
    F_IN1,
    F_IN1_CPU,
    F_IN_IDLE,
    F_OUT16,
    F_OUT16_REFUSED,
    F_OUT63,
    F_OUT63_REFUSED,
    F_OUT_DELIVERED,
    F_OUT_BATCH,
    F_OUT_BATCH_REFUSED,
    F_OUT_BATCH_CPU, /* bridge CPU us per accepted SendBatch stanza, acks included */
    F_LAT_P50,
    F_LAT_P99,
    F_LAT_RATE,
    F_LAT_BRIDGE_P50, /* the bridge's share: probe sent to event stamped */
    F_LAT_BRIDGE_P99,
    F_NNG_P50, /* NNG PUB -> SUB alone, same rate and machine */
    F_NNG_P99,
    F_IN1_GEN_CPU, /* this program's CPU during the one-account flood */
    F_WAKE_SAME,   /* a thread waking another on the same core, p50 us */
    F_WAKE_OTHER,  /* on another core */
    F_MEM,
    F_RSS1,
    F_RSSM,
    F_ONLINE,
    F_SCRAPE,
    F_GAPS,
    F_PEER_IN,
    F_PEER_OUT,
    F_PEER_MEM,
    F_PEER_ONLINE,
    F_PEER_IDLE_N,
    F_IN_JOURNAL_OFF, /* --journal-ratio: inbound without a state directory */
    F_IN_JOURNAL_ON,  /* and with one, back to back in the same run */
    F_JOURNAL_RATIO,  /* on / off of that run */
    F_IN_LOOPS_ONE,   /* --loops-ratio: --busy accounts flooded with loops = 0 */
    F_IN_LOOPS_N,     /* and with --loops, back to back in the same run */
    F_LOOPS_RATIO,    /* N / one of that run */
    F_LOOPS_N,        /* the worker loops of that bridge ("auto" resolved) */
    F_COUNT
} load_fig;

/* The worker loops limits.loops = loops gives (-1, "auto": one per core,
 * none on one core), as the bridge resolves it. */
int load_loops_of(int loops);

typedef struct load_run {
    double v[F_COUNT];
} load_run;

extern volatile int load_interrupted; /* SIGINT or SIGTERM: stop at once */

/* One run of every scenario; 0, or -1 when any scenario lost or failed work
 * (the figures say which). */
int load_run_once(const load_opts *o, unsigned run, load_run *r);
void load_report_text(const load_opts *o, const load_run *runs, unsigned n);
void load_report_json(const load_opts *o, const load_run *runs, unsigned n);

#endif
