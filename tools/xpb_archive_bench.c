/* xpb-archive-bench: what the archive costs (docs/benchmarks.md, "The
 * archive"): ingest rate on one core with the FTS5 index on, from a
 * realistic event stream (xpb-gen traffic as bus events); search latency
 * (p50, p99) on an archive of --search-size messages; and the bytes stored
 * against the same messages as XML and as deflated XML. Each figure is the
 * median of --runs runs. */
#define _DEFAULT_SOURCE
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <zlib.h>

#include "archive.h"
#include "traffic.h"
#include "xpb_xml.h"

static const char USAGE[] =
    "NAME\n"
    "    xpb-archive-bench - measure the archive: ingest, search, storage\n"
    "\n"
    "SYNOPSIS\n"
    "    xpb-archive-bench [--events N] [--search-size N] [--queries N] [--runs N]\n"
    "                      [--dir DIR] [--seed N]\n"
    "\n"
    "DESCRIPTION\n"
    "    Makes N realistic events (xpb-gen traffic: chats, rooms, carbons, MAM\n"
    "    results, presence, receipts... as xpb.v1.Event records), then per run:\n"
    "    ingests them into a fresh archive in DIR exactly as `xpb-archive run`\n"
    "    does (unpack, extract, de-duplicate, store, FTS5 index; 1000 events\n"
    "    per transaction; one core) and prints events/s and messages stored/s\n"
    "    (wall clock), and messages stored per CPU second the process used\n"
    "    (user + system: what a shared machine's load does not change much).\n"
    "    Then fills an archive to --search-size messages (more traffic, new\n"
    "    seeds) and times --queries one-word searches (words taken from stored\n"
    "    bodies, newest first, limit 20): p50 and p99. Last, the storage of the\n"
    "    ingest archive against its messages as XML and as XML deflated\n"
    "    (zlib level 6). Figures are medians of --runs runs.\n"
    "\n"
    "OPTIONS\n"
    "    --events N        events per ingest run (default 100000)\n"
    "    --search-size N   messages in the search archive (default 100000;\n"
    "                      1000000 for the figure in docs/benchmarks.md)\n"
    "    --queries N       searches timed per run (default 201)\n"
    "    --runs N          runs per figure (default 3)\n"
    "    --dir DIR         where the scratch archives go (default /var/tmp)\n"
    "    --seed N          traffic seed (default 1)\n"
    "    --keep            keep the last ingest archive and the search archive\n"
    "                      (their paths are printed)\n"
    "    --search-db FILE  time the searches on this archive (left as it is)\n"
    "                      instead of filling one\n"
    "    --help            print this text\n";

#define BENCH_BATCH 1000
#define BENCH_MAX_RUNS 15

typedef struct opts {
    long events, search_size, queries, runs, seed;
    const char *dir, *search_db;
    int keep;
} opts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds this process used (user + system): on a shared machine the
 * wall clock counts the other processes' turns too. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* ---- the event stream -------------------------------------------------- */
typedef struct stream {
    uint8_t **ev;
    size_t *len, n;
} stream;

typedef struct gen {
    xpb_arena *a;
    xpb_stanza *st;
} gen;

static int on_stanza(void *ud, const xpb_node *el)
{
    gen *g = ud;
    return xpb_stanza_from_xml_plain(g->a, el, &g->st);
}

/* n events from traffic seed: each stanza as the bridge would publish it. */
static int make_stream(stream *s, long n, uint64_t seed, uint64_t first_seq)
{
    xpb_traffic *t = xpb_traffic_new(seed);
    xpb_buf xml;
    xpb_buf_init(&xml, 0);
    gen g = {xpb_arena_new(64 * 1024), NULL};
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    s->ev = calloc((size_t)n, sizeof *s->ev);
    s->len = calloc((size_t)n, sizeof *s->len);
    s->n = 0;
    uint64_t t0 = (uint64_t)time(NULL) * 1000000;
    while (t && g.a && s->ev && s->len && s->n < (size_t)n) {
        xpb_buf_reset(&xml);
        xpb_arena_reset(g.a);
        g.st = NULL;
        if (!xpb_traffic_next(t, &xml)) break;
        xpb_reader *r = NULL;
        if (xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, &g)) break;
        int rc = xpb_reader_feed(r, xml.data, xml.len);
        xpb_reader_free(r);
        if (rc || !g.st) continue;
        Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
        ev.has_seq = ev.has_timestamp_us = 1;
        ev.seq = first_seq + s->n;
        ev.timestamp_us = t0 + s->n;
        ev.account = "bot@example.com";
        ev.body_case = XPB__V1__EVENT__BODY_STANZA;
        ev.stanza = g.st;
        size_t len = xpb__v1__event__get_packed_size(&ev);
        uint8_t *buf = malloc(len);
        if (!buf) break;
        xpb__v1__event__pack(&ev, buf);
        s->ev[s->n] = buf;
        s->len[s->n++] = len;
    }
    xpb_arena_free(g.a);
    xpb_buf_free(&xml);
    xpb_traffic_free(t);
    return s->n == (size_t)n ? 0 : -1;
}

static void free_stream(stream *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->ev[i]);
    free(s->ev);
    free(s->len);
}

/* ---- ingest ------------------------------------------------------------ */
static int ingest(xa_db *db, const stream *s, xa_counts *c)
{
    char err[XA_ERR_MAX];
    xpb_arena *a = xpb_arena_new(64 * 1024);
    int rc = a ? 0 : -1;
    for (size_t i = 0; !rc && i < s->n; i++) {
        if (i % BENCH_BATCH == 0) rc = xa_db_begin(db, err, sizeof err);
        /* As `run` does: checked on the wire, unpacked into the arena. */
        Xpb__V1__Event *ev = rc ? NULL : xa_event_unpack(a, s->ev[i], s->len[i], err, sizeof err);
        if (!ev) {
            rc = -1;
            break;
        }
        uint64_t seq = ev->seq;
        rc = xa_ingest_owned(db, a, ev, c, err, sizeof err);
        xpb_arena_reset(a);
        if (!rc && (i % BENCH_BATCH == BENCH_BATCH - 1 || i + 1 == s->n))
            rc = xa_db_commit(db, "bench", seq, err, sizeof err);
    }
    if (rc) fprintf(stderr, "xpb-archive-bench: ingest: %s\n", err);
    xpb_arena_free(a);
    return rc;
}

static xa_db *fresh_db(const opts *o, const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/xpb-archive-bench-%ld-%s.db", o->dir, (long)getpid(), name);
    char p[4200];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
    xa_db *db = NULL;
    char err[XA_ERR_MAX];
    if (xa_db_open(path, XA_OPEN_CREATE, &db, err, sizeof err))
        fprintf(stderr, "xpb-archive-bench: %s\n", err);
    return db;
}

static void remove_db(const char *path)
{
    char p[4200];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
}

/* ---- storage ----------------------------------------------------------- */
typedef struct sizes {
    uint64_t n, record, xml, deflated;
    xpb_buf buf;
    xpb_arena *a;
    z_stream z;
} sizes;

static void deflate_buf(sizes *s, int flush)
{
    unsigned char out[65536];
    s->z.next_in = (unsigned char *)s->buf.data;
    s->z.avail_in = (uInt)s->buf.len;
    do {
        s->z.next_out = out;
        s->z.avail_out = sizeof out;
        deflate(&s->z, flush);
        s->deflated += sizeof out - s->z.avail_out;
    } while (s->z.avail_out == 0);
    xpb_buf_reset(&s->buf);
}

static int size_row(void *ud, const xa_row *r)
{
    sizes *s = ud;
    xpb_stanza *st = NULL;
    char err[256];
    xpb_arena_reset(s->a);
    size_t before = s->buf.len;
    if (xpb_stanza_unpack(s->a, r->record, r->record_len, NULL, &st, err, sizeof err) ||
        xpb_stanza_to_xml_prechecked(&s->buf, st, "jabber:client", NULL, err, sizeof err))
        return -1;
    s->n++;
    s->record += r->record_len;
    s->xml += s->buf.len - before;
    if (s->buf.len > 256 * 1024) deflate_buf(s, Z_NO_FLUSH);
    return 0;
}

static void storage(xa_db *db, const char *path)
{
    sizes s = {0};
    xpb_buf_init(&s.buf, 0);
    s.a = xpb_arena_new(64 * 1024);
    deflateInit(&s.z, 6);
    xa_filter f = {.changes = true};
    char err[XA_ERR_MAX];
    sqlite3_exec(xa_db_sqlite(db), "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    int rc = xa_each(db, &f, size_row, &s, err, sizeof err);
    deflate_buf(&s, Z_FINISH);
    deflateEnd(&s.z);
    struct stat sb;
    long long file = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
    double x = s.xml ? (double)s.xml : 1;
    if (!rc) {
        printf("storage: %" PRIu64 " stanzas; XML %" PRIu64 " B = 1.000\n", s.n, s.xml);
        printf("storage: records %" PRIu64 " B = %.3f of XML; database file %lld B = %.3f "
               "(keys, indexes, FTS5); XML deflated %" PRIu64 " B = %.3f\n",
               s.record, (double)s.record / x, file, (double)file / x, s.deflated,
               (double)s.deflated / x);
    }
    xpb_arena_free(s.a);
    xpb_buf_free(&s.buf);
}

/* ---- search ------------------------------------------------------------ */
typedef struct words {
    char **w;
    size_t n, cap;
} words;

static int take_word(void *ud, const xa_row *r)
{
    words *w = ud;
    if (!r->body || w->n == w->cap) return w->n == w->cap;
    const char *p = r->body;
    size_t len = strcspn(p, " .,!?");
    if (len < 4 || len > 30) return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] < 'a' || (unsigned char)p[i] > 'z') return 0;
    w->w[w->n++] = strndup(p, len);
    return 0;
}

static int count_row(void *ud, const xa_row *r)
{
    (void)r;
    ++*(long *)ud;
    return 0;
}

static int search_run(xa_db *db, const words *w, long queries, double *p50, double *p99)
{
    double *t = calloc((size_t)queries, sizeof *t);
    char err[XA_ERR_MAX];
    xa_filter f = {.limit = 20};
    for (long i = 0; t && i < queries; i++) {
        long found = 0;
        double t0 = now_s();
        if (xa_search(db, w->w[(size_t)i % w->n], &f, count_row, &found, err, sizeof err)) {
            fprintf(stderr, "xpb-archive-bench: search: %s\n", err);
            free(t);
            return -1;
        }
        t[i] = (now_s() - t0) * 1e6;
    }
    if (!t) return -1;
    qsort(t, (size_t)queries, sizeof *t, cmp_double);
    *p50 = t[queries / 2];
    *p99 = t[queries * 99 / 100];
    free(t);
    return 0;
}

static int fill_to(xa_db *db, const opts *o, long messages, xa_counts *c)
{
    uint64_t seq = 1;
    for (long seed = o->seed + 1000; (long)c->stored < messages; seed++) {
        stream s;
        long n = (messages - (long)c->stored) * 2 + 1000;
        if (n > 200000) n = 200000;
        int rc = make_stream(&s, n, (uint64_t)seed, seq);
        seq += s.n;
        if (!rc) rc = ingest(db, &s, c);
        free_stream(&s);
        if (rc) return rc;
    }
    return 0;
}

static int bench_search(const opts *o)
{
    char path[4096];
    xa_counts c = {0};
    xa_db *db = NULL;
    char err[XA_ERR_MAX];
    if (o->search_db) {
        snprintf(path, sizeof path, "%s", o->search_db);
        if (xa_db_open(path, XA_OPEN_READ, &db, err, sizeof err)) {
            fprintf(stderr, "xpb-archive-bench: %s\n", err);
            return -1;
        }
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(xa_db_sqlite(db), "SELECT count(*) FROM message WHERE kind = 0",
                               -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            c.stored = (uint64_t)sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    } else {
        db = fresh_db(o, "search", path, sizeof path);
        double t0 = now_s();
        if (!db || fill_to(db, o, o->search_size, &c)) return -1;
        printf("search: archive of %" PRIu64 " messages filled in %.1f s\n", c.stored,
               now_s() - t0);
    }
    words w = {calloc(1000, sizeof(char *)), 0, 1000};
    xa_filter all = {0};
    if (!w.w || xa_each(db, &all, take_word, &w, err, sizeof err) < 0 || !w.n) return -1;
    double p50[BENCH_MAX_RUNS] = {0}, p99[BENCH_MAX_RUNS] = {0};
    for (long r = 0; r < o->runs; r++)
        if (search_run(db, &w, o->queries, &p50[r], &p99[r])) return -1;
    printf("search: %ld one-word queries (limit 20, newest first) on %" PRIu64
           " messages: p50 %.0f us, p99 %.0f us (medians of %ld)\n",
           o->queries, c.stored, median(p50, (size_t)o->runs), median(p99, (size_t)o->runs),
           o->runs);
    for (size_t i = 0; i < w.n; i++)
        free(w.w[i]);
    free(w.w);
    xa_db_close(db);
    if (o->keep && !o->search_db)
        printf("kept: %s\n", path);
    else if (!o->search_db)
        remove_db(path);
    return 0;
}

static int bench_ingest(const opts *o)
{
    stream s;
    if (make_stream(&s, o->events, (uint64_t)o->seed, 1)) {
        fprintf(stderr, "xpb-archive-bench: cannot make %ld events\n", o->events);
        return -1;
    }
    double ev_rate[BENCH_MAX_RUNS] = {0}, msg_rate[BENCH_MAX_RUNS] = {0};
    double cpu_rate[BENCH_MAX_RUNS] = {0};
    xa_counts c = {0};
    int rc = 0;
    for (long r = 0; !rc && r < o->runs; r++) {
        char path[4096];
        xa_db *db = fresh_db(o, "ingest", path, sizeof path);
        memset(&c, 0, sizeof c);
        double t0 = now_s(), c0 = cpu_s();
        rc = db ? ingest(db, &s, &c) : -1;
        double dt = now_s() - t0, dc = cpu_s() - c0;
        cpu_rate[r] = (double)(c.stored + c.changes) / dc;
        ev_rate[r] = (double)s.n / dt;
        msg_rate[r] = (double)(c.stored + c.changes) / dt;
        bool last = r + 1 == o->runs;
        if (!rc && last) storage(db, path);
        xa_db_close(db);
        if (last && o->keep)
            printf("kept: %s\n", path);
        else
            remove_db(path);
    }
    if (!rc)
        printf("ingest: %zu events -> %" PRIu64 " messages stored, %" PRIu64
               " duplicates, %" PRIu64 " skipped: %.0f events/s, %.0f msgs/s; %.0f msgs per "
               "CPU second (medians of %ld)\n",
               s.n, c.stored, c.duplicates, c.skipped, median(ev_rate, (size_t)o->runs),
               median(msg_rate, (size_t)o->runs), median(cpu_rate, (size_t)o->runs), o->runs);
    free_stream(&s);
    return rc;
}

static int parse(int argc, char **argv, opts *o)
{
    *o = (opts){100000, 100000, 201, 3, 1, "/var/tmp", NULL, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *num = !strcmp(a, "--events")        ? &o->events
                    : !strcmp(a, "--search-size") ? &o->search_size
                    : !strcmp(a, "--queries")     ? &o->queries
                    : !strcmp(a, "--runs")        ? &o->runs
                    : !strcmp(a, "--seed")        ? &o->seed
                                                  : NULL;
        if (!strcmp(a, "--keep")) {
            o->keep = 1;
            continue;
        }
        if (!strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            exit(0);
        } else if (!strcmp(a, "--dir") && v) {
            o->dir = v;
        } else if (!strcmp(a, "--search-db") && v) {
            o->search_db = v;
        } else if (num && v) {
            char *end;
            *num = strtol(v, &end, 10);
            if (*end || *num < 1) return -1;
        } else {
            return -1;
        }
        i++;
    }
    return o->runs <= BENCH_MAX_RUNS ? 0 : -1;
}

int main(int argc, char **argv)
{
    opts o;
    setvbuf(stdout, NULL, _IOLBF, 0); /* figures as they come, also into a file */
    if (parse(argc, argv, &o)) {
        fprintf(stderr, "xpb-archive-bench: bad arguments (numbers >= 1, --runs at most %d; "
                        "see --help)\n",
                BENCH_MAX_RUNS);
        return 2;
    }
    printf("xpb-archive-bench: SQLite %s, %ld events per ingest run, seed %ld\n",
           sqlite3_libversion(), o.events, o.seed);
    if ((!o.search_db && bench_ingest(&o)) || bench_search(&o)) return 1;
    return 0;
}
