/* xpb-journal-bench: the event journal's cost (bridge/store/), as the bridge
 * uses it: realistic message events (xpb-gen traffic packed as records)
 * appended in group commits of --batch, then replayed whole. Prints appends/s,
 * replay events/s and bytes per event on disk; docs/benchmarks.md gives the
 * command behind each figure. */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "traffic.h"
#include "xpb_error.h"
#include "xpb_stanza.h"
#include "xpb_store.h"
#include "xpb_xml.h"

static const char USAGE[] =
    "NAME\n"
    "    xpb-journal-bench - measure the event journal: group-commit appends and replay\n"
    "\n"
    "SYNOPSIS\n"
    "    xpb-journal-bench [--events N] [--batch N] [--sync full|sends|normal] [--dir DIR]\n"
    "                      [--seed N]\n"
    "\n"
    "DESCRIPTION\n"
    "    Appends N realistic events (xpb-gen traffic packed as xpb.v1 records,\n"
    "    topic \"message/bot@example.com/\") to a fresh journal in DIR, --batch per\n"
    "    transaction as the bus's flush groups them, then replays all of them\n"
    "    from seq 1. Prints events/s\n"
    "    for both, and the database's bytes per event.\n"
    "\n"
    "OPTIONS\n"
    "    --events N   events to append and replay (default 100000)\n"
    "    --batch N    events per transaction (default 64, the bus's batch_max)\n"
    "    --sync S     full (default: each commit on disk before it returns),\n"
    "                 sends or normal (the journal's commits survive kill -9,\n"
    "                 not a power cut; the bridge's default is sends)\n"
    "    --dir DIR    where to make the scratch journal (default /var/tmp)\n"
    "    --seed N     traffic generator seed (default 1)\n"
    "    --help       print this text\n";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int count_event(void *ud, const xpb_journal_event *ev)
{
    uint64_t *n = ud;
    *n += ev->record_len ? 1 : 0;
    return 0;
}

typedef struct records {
    uint8_t **data;
    size_t *len, n;
} records;

typedef struct packer {
    records *r;
    xpb_arena *a;
} packer;

static int pack_one(void *ud, const xpb_node *el)
{
    packer *p = ud;
    xpb_arena_reset(p->a);
    xpb_stanza *st = NULL;
    xpb_buf out;
    xpb_buf_init(&out, 0);
    int rc = xpb_stanza_from_xml(p->a, el, &st);
    if (!rc) rc = xpb_stanza_pack(&out, st);
    if (rc) return rc;
    p->r->data[p->r->n] = (uint8_t *)out.data;
    p->r->len[p->r->n++] = out.len;
    return 0;
}

/* Realistic records: the traffic generator's stanzas, read, mapped, packed. */
static int make_records(records *r, size_t n, unsigned seed)
{
    r->data = calloc(n, sizeof *r->data);
    r->len = calloc(n, sizeof *r->len);
    xpb_traffic *t = xpb_traffic_new(seed);
    packer p = {r, xpb_arena_new(0)};
    xpb_reader_callbacks cb = {.stanza = pack_one};
    xpb_reader *rd = NULL;
    if (!r->data || !r->len || !t || !p.a ||
        xpb_reader_new(&rd, XPB_READER_FRAGMENTS, NULL, &cb, &p) != 0)
        return XPB_ENOMEM;
    xpb_buf xml;
    xpb_buf_init(&xml, 0);
    int rc = 0;
    while (r->n < n && rc == 0) {
        xpb_buf_reset(&xml);
        if (!xpb_traffic_next(t, &xml)) return XPB_EINVAL;
        rc = xpb_reader_feed(rd, xml.data, xml.len);
    }
    xpb_buf_free(&xml);
    xpb_reader_free(rd);
    xpb_arena_free(p.a);
    xpb_traffic_free(t);
    return rc;
}

int main(int argc, char **argv)
{
    size_t events = 100000, batch = 64;
    unsigned seed = 1;
    int sync_mode = XPB_STORE_SYNC_FULL; /* the journal's worst case */
    const char *base = "/var/tmp";
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--events") && v) {
            events = strtoul(v, NULL, 10), i++;
        } else if (!strcmp(argv[i], "--batch") && v) {
            batch = strtoul(v, NULL, 10), i++;
        } else if (!strcmp(argv[i], "--sync") && v &&
                   (!strcmp(v, "full") || !strcmp(v, "normal") || !strcmp(v, "sends"))) {
            sync_mode = !strcmp(v, "full")     ? XPB_STORE_SYNC_FULL
                        : !strcmp(v, "normal") ? XPB_STORE_SYNC_NORMAL
                                               : XPB_STORE_SYNC_SENDS;
            i++;
        } else if (!strcmp(argv[i], "--dir") && v) {
            base = v, i++;
        } else if (!strcmp(argv[i], "--seed") && v) {
            seed = (unsigned)strtoul(v, NULL, 10), i++;
        } else {
            fprintf(stderr, "xpb-journal-bench: unknown option %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!events || !batch || batch > 4096) {
        fprintf(stderr, "xpb-journal-bench: --events >= 1 and --batch 1..4096\n");
        return 2;
    }
    records r = {0};
    if (make_records(&r, events, seed)) {
        fprintf(stderr, "xpb-journal-bench: cannot make the records\n");
        return 1;
    }
    char dir[512], err[1024];
    snprintf(dir, sizeof dir, "%s/xpb-journal-bench-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    xpb_store_config cfg = {.dir = dir, .sync = sync_mode};
    xpb_store *s;
    if (xpb_store_open(&s, &cfg, err, sizeof err)) {
        fprintf(stderr, "xpb-journal-bench: %s\n", err);
        return 1;
    }
    xpb_journal_event *ev = calloc(batch, sizeof *ev);
    double t0 = now_s();
    size_t raw = 0;
    for (size_t i = 0; i < events;) {
        size_t n = events - i < batch ? events - i : batch;
        for (size_t k = 0; k < n; k++, i++) {
            ev[k] = (xpb_journal_event){.seq = i + 1, .time_us = (int64_t)i,
                                        .topic = "message/bot@example.com/",
                                        .record = r.data[i], .record_len = r.len[i]};
            raw += r.len[i];
        }
        if (xpb_store_journal_append(s, ev, n, err, sizeof err)) {
            fprintf(stderr, "xpb-journal-bench: %s\n", err);
            return 1;
        }
    }
    double t1 = now_s();
    uint64_t got = 0, next;
    if (xpb_store_journal_read(s, 1, "", 0, count_event, &got, &next, err, sizeof err)) {
        fprintf(stderr, "xpb-journal-bench: %s\n", err);
        return 1;
    }
    double t2 = now_s();
    xpb_store_close(s);
    char path[600];
    struct stat st = {0}, wal = {0};
    snprintf(path, sizeof path, "%s/%s", dir, XPB_STORE_FILE);
    stat(path, &st);
    snprintf(path, sizeof path, "%s/%s-wal", dir, XPB_STORE_FILE);
    stat(path, &wal);
    printf("events            %zu (records %.1f B on average)\n", events, (double)raw / (double)events);
    printf("append            %.0f events/s, %.0f commits/s (batch %zu, synchronous=%s)\n",
           (double)events / (t1 - t0), (double)events / (double)batch / (t1 - t0), batch,
           sync_mode == XPB_STORE_SYNC_FULL ? "FULL" : "NORMAL");
    printf("replay            %.0f events/s (%llu events)\n", (double)got / (t2 - t1),
           (unsigned long long)got);
    printf("bytes per event   %.1f on disk (database %lld B + WAL %lld B)\n",
           (double)(st.st_size + wal.st_size) / (double)events, (long long)st.st_size,
           (long long)wal.st_size);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    return system(path) == 0 && got == events ? 0 : 1;
}
