/* `xpb-archive run`: the bridge's events into the archive. The resume point
 * (journal id + last seq) lives in the database and commits with the
 * messages of each batch, so a kill at any moment loses nothing and stores
 * nothing twice; at start the journal is replayed from it, then events are
 * followed live, and a hole in the live stream is replayed (tail_resume.c,
 * shared with xpbctl tail). A full disk rolls the batch back: the resume
 * point stays, and once writing works again the journal is replayed from it.
 * Over NATS (--nats) a durable JetStream consumer keeps the place instead:
 * each stream message is acknowledged only after its transaction committed,
 * and one that was rolled back is delivered again. */
#define _XOPEN_SOURCE 700 /* sigaction */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus_client.h"
#include "tail_resume.h"
#include "xa_cmd.h"

#define RUN_DEFAULT_BATCH 1000      /* events per transaction while replaying */
#define RUN_FULL_RETRY_S 5          /* wait after a full disk before trying again */
#define RUN_PRUNE_EVERY_S 3600      /* with --keep-days */
#define RUN_REPLAY_RETRY_S 2        /* a replay the bridge did not answer, tried again */
#define RUN_ARENA_BLOCK (64 * 1024) /* one event's plain record */
#define RUN_NATS_DURABLE "xpb-archive" /* --nats without --durable */
#define RUN_BATCH_ARENA_BLOCK (256 * 1024) /* a batch's or a replay page's events */

typedef struct run_args {
    const char *db;
    xpbctl_num keep_days, batch;
    bool progress;
} run_args;

static const xpbctl_opt run_opts[] = {
    XA_DB_OPT(run_args),
    {.name = "--keep-days",
     .arg = "N",
     .kind = XPBCTL_NUM,
     .min = 1,
     .max = 365000,
     .unit = "days",
     .offset = XPBCTL_AT(run_args, keep_days),
     .help = "drop messages older than N days: at start, every hour,\n"
             "and on arrival"},
    {.name = "--batch",
     .arg = "N",
     .kind = XPBCTL_NUM,
     .min = 1,
     .max = 100000,
     .offset = XPBCTL_AT(run_args, batch),
     .help = "events per transaction while replaying the journal\n"
             "(default 1000); live, each event batch is one"},
    {.name = "--progress",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(run_args, progress),
     .help = "print the progress line while catching up even when\n"
             "standard error is not a terminal"},
    {0},
};

static volatile sig_atomic_t stop_flag, report_flag;
static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}
static void on_report(int sig)
{
    (void)sig;
    report_flag = 1;
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_report;
    sigaction(SIGUSR1, &sa, NULL);
    /* A file size limit then fails the write (EFBIG) instead of killing us. */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGXFSZ, &sa, NULL);
}

typedef struct arch {
    xa_db *db;
    xpb_arena *arena;          /* one event's plain record, reset per event */
    xpb_arena *live, *replay;  /* the events of a live batch, of a replay page */
    xa_counts c, committed; /* committed: the counts as of the last commit */
    tail_resume res;
    ctl *bus;
    xa_progress *prog;
    uint64_t in_tx, batch, seq; /* events in the open transaction; seq: the last one's */
    int failed;                 /* XA_E… that stopped ingest */
    int64_t cutoff_us;
    time_t last_prune;
    bool replay_owed;   /* the journal could not be replayed yet (the bridge was down) */
    bool whole;         /* NATS: a stream message is ingested whole (acked as one) */
    ctl_sub *sub;
    time_t replay_tried;
    char err[XA_ERR_MAX];
} arch;

static void fail(arch *a, int rc)
{
    a->failed = rc;
    fprintf(stderr, "xpb-archive: run: %s\n", a->err);
    xa_db_rollback(a->db);
    a->in_tx = 0;
    a->c = a->committed; /* what was rolled back was not stored */
}

static int commit(arch *a)
{
    if (!a->in_tx || a->failed) return a->failed;
    int rc = xa_db_commit(a->db, a->res.journal_id, a->seq, a->err, sizeof a->err);
    if (rc) {
        fail(a, rc);
        return rc;
    }
    a->in_tx = 0;
    a->committed = a->c;
    return 0;
}

static void figures(arch *a)
{
    if (report_flag) {
        report_flag = 0;
        xa_progress_report(a->prog, &a->c, a->seq, a->res.journal_last);
    }
    xa_progress_tick(a->prog, &a->c, a->seq, a->res.journal_last);
}

/* tail_deliver_fn: one event into the open transaction. */
static int deliver(void *ud, const Xpb__V1__Event *ev)
{
    arch *a = ud;
    if (a->failed) return 1;
    if (!a->in_tx) {
        int rc = xa_db_begin(a->db, a->err, sizeof a->err);
        if (rc) {
            fail(a, rc);
            return 1;
        }
    }
    a->in_tx++;
    uint64_t refused = a->c.refused;
    /* Every event comes from tail_batch_decode_in or a replay page with
     * a->res.arena set: checked on the wire and in an arena of ours, so it
     * is ours to change (its stanza is checked and expanded in place). */
    int rc = xa_ingest_owned(a->db, a->arena, (Xpb__V1__Event *)ev, &a->c, a->err, sizeof a->err);
    xpb_arena_reset(a->arena);
    if (rc) {
        fail(a, rc);
        return 1;
    }
    if (a->c.refused > refused)
        fprintf(stderr, "xpb-archive: run: event #%" PRIu64 " not archived: %s\n", ev->seq, a->err);
    a->seq = ev->seq;
    if (ev->seq > a->res.journal_last) a->res.journal_last = ev->seq;
    if (a->in_tx >= a->batch && commit(a)) return 1;
    figures(a);
    return stop_flag && !a->whole ? 1 : 0;
}

static void maybe_prune(arch *a, const run_args *args)
{
    if (!args->keep_days.set || time(NULL) - a->last_prune < RUN_PRUNE_EVERY_S) return;
    uint64_t n = 0;
    a->last_prune = time(NULL);
    a->cutoff_us = xa_keep_cutoff(&args->keep_days);
    xa_db_set_cutoff(a->db, a->cutoff_us);
    int rc = xa_db_begin(a->db, a->err, sizeof a->err);
    if (!rc) rc = xa_prune(a->db, a->cutoff_us, &n, a->err, sizeof a->err);
    if (!rc) rc = xa_db_commit_plain(a->db, a->err, sizeof a->err);
    if (rc) {
        fail(a, rc);
        return;
    }
    if (n) fprintf(stderr, "xpb-archive: run: pruned %" PRIu64 " messages (--keep-days)\n", n);
}

/* The journal could not be asked at start (the bridge was not up yet): once
 * it publishes, replay what came before its first live event (tried at most
 * every RUN_REPLAY_RETRY_S, also while nothing is published; b NULL: up to
 * the journal's end). Until then live events are left alone: they are in the
 * journal, and the replay will bring them in order. False: skip b. */
static bool pay_replay(arch *a, const Xpb__V1__EventBatch *b)
{
    if (!a->replay_owed) return true;
    if ((b && !b->n_event) || time(NULL) - a->replay_tried < RUN_REPLAY_RETRY_S) return false;
    int stopped = 0;
    a->replay_tried = time(NULL);
    int rc = tail_replay(a->bus, &a->res, NULL, 0, b ? b->event[0]->seq : 0, deliver, a,
                         &stopped);
    if (rc == XPBCTL_EXIT_NOREPLY) return false;
    a->replay_owed = false; /* answered: replayed, or the bridge keeps no journal */
    commit(a);
    return !a->failed;
}

/* The live stream until a stop, a storage failure or a bus error. */
static int follow(arch *a, ctl_sub *sub, const run_args *args)
{
    while (!stop_flag && !a->failed) {
        const uint8_t *data = NULL;
        size_t len = 0;
        int rc = ctl_sub_next(sub, &data, &len);
        figures(a);
        maybe_prune(a, args);
        if (rc == CTL_SUB_TIMEOUT) {
            pay_replay(a, NULL); /* a quiet bridge: do not wait for its next event */
            continue;
        }
        if (rc) return rc;
        size_t topic_len = 0;
        Xpb__V1__EventBatch *b = tail_batch_decode_in(a->bus, a->live, data, len, &topic_len);
        if (!b) continue;
        tail_resume_journal(&a->res, b->journal_id);
        for (size_t i = 0; pay_replay(a, b) && i < b->n_event; i++)
            if (tail_resume_live(a->bus, &a->res, NULL, 0, b, i, deliver, a)) break;
        xpb_arena_reset(a->live);
        commit(a);
    }
    return 0;
}

/* Over NATS: the durable consumer's messages, each one's events in a
 * transaction; a message is acknowledged (by the next ctl_sub_next, or at
 * close) only once that committed. A failed transaction's message is handed
 * back (ctl_sub_redeliver). No journal replay: the consumer keeps the place,
 * whichever bridges published; the archive stores a message seen twice once. */
static int follow_nats(arch *a, ctl_sub *sub, const run_args *args)
{
    snprintf(a->res.journal_id, sizeof a->res.journal_id, "nats");
    while (!stop_flag && !a->failed) {
        const uint8_t *data = NULL;
        size_t len = 0;
        int rc = ctl_sub_next(sub, &data, &len);
        figures(a);
        maybe_prune(a, args);
        if (rc == CTL_SUB_TIMEOUT) continue;
        if (rc) return rc;
        size_t topic_len = 0;
        /* Checked on the wire and unpacked into the batch arena, as live
         * batches are (deliver changes the events in place). */
        Xpb__V1__EventBatch *b = tail_batch_decode_in(a->bus, a->live, data, len, &topic_len);
        if (!b) continue; /* not a batch of ours: acknowledged and skipped */
        for (size_t i = 0; i < b->n_event; i++)
            if (deliver(a, b->event[i])) break;
        xpb_arena_reset(a->live);
        commit(a);
    }
    if (a->failed) ctl_sub_redeliver(sub);
    return 0;
}

/* From the resume point the database holds: replay, then live. */
static int catch_up_and_follow(arch *a, ctl_sub *sub, const run_args *args)
{
    uint64_t seq = 0;
    int rc = xa_db_resume(a->db, a->res.journal_id, &seq, a->err, sizeof a->err);
    if (rc) {
        fail(a, rc);
        return XA_EXIT_FAIL;
    }
    if (a->whole) return follow_nats(a, sub, args);
    a->res.last = a->seq = seq;
    a->res.path = NULL;
    a->res.hold = true;
    a->res.arena = a->replay;
    int stopped = 0;
    a->replay_owed = false;
    rc = tail_replay(a->bus, &a->res, NULL, 0, 0, deliver, a, &stopped);
    if (rc == XPBCTL_EXIT_NOREPLY && !a->failed) {
        fprintf(stderr, "xpb-archive: run: the bridge does not answer yet; its journal is "
                        "replayed once it publishes\n");
        a->replay_owed = true;
        a->replay_tried = time(NULL);
    } else if (rc && !a->failed) {
        fprintf(stderr, "xpb-archive: run: the journal could not be replayed (the bridge's "
                        "answer is above); following live\n");
    }
    rc = 0;
    commit(a);
    if (!a->failed && !stop_flag) rc = follow(a, sub, args);
    return rc;
}

static void wait_for_space(void)
{
    for (int i = 0; i < RUN_FULL_RETRY_S * 10 && !stop_flag; i++) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
}

static int run_loop(arch *a, ctl_sub *sub, const run_args *args)
{
    for (;;) {
        a->failed = 0;
        int rc = catch_up_and_follow(a, sub, args);
        if (rc) return rc;
        if (stop_flag && !a->failed) return XA_EXIT_OK;
        if (a->failed != XA_EFULL) return XA_EXIT_FAIL;
        char journal[XA_JOURNAL_ID_MAX + 1];
        uint64_t kept = 0;
        if (xa_db_resume(a->db, journal, &kept, a->err, sizeof a->err)) {
            fprintf(stderr, "xpb-archive: run: %s\n", a->err);
            return XA_EXIT_FAIL;
        }
        fprintf(stderr,
                "xpb-archive: run: the resume point stays at seq %" PRIu64
                " (events up to %" PRIu64 " were not stored); trying again in %d s\n",
                kept, a->seq, RUN_FULL_RETRY_S);
        wait_for_space();
        if (stop_flag) return XA_EXIT_FAIL;
    }
}

static int run_run(const xpbctl_command *cmd, const xpbctl_globals *g, void *argp)
{
    const run_args *args = argp;
    ctl bus;
    int rc = ctl_init(&bus, cmd->page.name, g);
    if (rc) return rc;
    if (bus.nats && !bus.durable) bus.durable = RUN_NATS_DURABLE;
    arch a = {0};
    a.whole = bus.nats != NULL;
    a.batch = args->batch.set ? (uint64_t)args->batch.v : RUN_DEFAULT_BATCH;
    a.bus = &bus;
    if (!(a.db = xa_cmd_open("run", args->db, XA_OPEN_CREATE))) return XA_EXIT_FAIL;
    a.arena = xpb_arena_new(RUN_ARENA_BLOCK);
    a.live = xpb_arena_new(RUN_BATCH_ARENA_BLOCK);
    a.replay = xpb_arena_new(RUN_BATCH_ARENA_BLOCK);
    a.prog = xa_progress_new(args->progress || isatty(2));
    ctl_sub *sub = NULL;
    catch_signals();
    if (a.arena && a.live && a.replay && a.prog) {
        maybe_prune(&a, args);
        /* Subscribe before replaying: nothing published meanwhile falls between. */
        rc = a.failed ? XA_EXIT_FAIL : ctl_sub_open(&bus, NULL, 0, &sub);
        a.sub = sub;
        if (!rc) rc = run_loop(&a, sub, args);
    } else {
        rc = XA_EXIT_FAIL;
    }
    xa_progress_report(a.prog, &a.c, a.seq, a.res.journal_last);
    ctl_sub_close(sub);
    xa_progress_free(a.prog);
    xpb_arena_free(a.arena);
    xpb_arena_free(a.live);
    xpb_arena_free(a.replay);
    xa_db_close(a.db);
    return rc;
}

const xpbctl_command xa_cmd_run = {
    .page =
        {
            .name = "run",
            .summary = "archive the bridge's messages as they come",
            .usage = "xpb-archive run --db FILE [--keep-days N] [--batch N] [--progress] "
                     "[--events URL] [--requests URL] [--nats URL [--durable NAME]]",
            .synopsis = "    xpb-archive run --db FILE [--keep-days N] [--batch N] [--progress]\n"
                        "                    [--events URL] [--requests URL] [--timeout MS]\n"
                        "    xpb-archive run --db FILE --nats URL [--durable NAME]\n"
                        "                    [--keep-days N] [--progress]\n",
            .description =
                "    Reads the bridge's events and stores each message once in FILE (created\n"
                "    when missing; SQLite in WAL mode). Archived: messages received (a\n"
                "    carbon's inner message, XEP-0280), messages the bridge recovered from\n"
                "    the server's archive (Event.from_archive), and the account's own sends\n"
                "    once the server has them (Delivery ACKED with its stanza). A message\n"
                "    seen again (live, as a carbon, from the archive, as our delivery) is\n"
                "    recognised by its stanza-id and `by`, else its origin-id, else a hash\n"
                "    of its content, and stored once. Corrections (XEP-0308) and\n"
                "    retractions (XEP-0424) change the message they name.\n"
                "\n"
                "    The resume point (the bridge's journal id and the last seq archived) is\n"
                "    in FILE and commits in the same transaction as the messages: one\n"
                "    transaction per event batch (--batch events while replaying). At start\n"
                "    run replays the bridge's journal from there (request Replay; the\n"
                "    bridge needs a state directory), then follows live, and replays any\n"
                "    hole in the live stream. Killed at any moment, it loses and duplicates\n"
                "    nothing. When the disk is full (or a file size limit is hit) the batch\n"
                "    is rolled back, the resume point stays, and run tries again every\n"
                "    5 seconds from there.\n"
                "\n"
                "    With --nats (bridges sharing accounts over NATS JetStream,\n"
                "    docs/scaling.md) run reads stream XPB_EVENTS, every bridge's events,\n"
                "    with the durable consumer NAME (--durable, default xpb-archive): each\n"
                "    stream message (one event batch) is one transaction and is\n"
                "    acknowledged only after it committed; a kill before that, or a full\n"
                "    disk, has JetStream deliver it again, and the archive stores a message\n"
                "    it sees twice once. Archivers that share NAME share the events. No\n"
                "    journal replay: the consumer keeps the place.\n"
                "\n"
                "    While catching up, a progress line on standard error (when it is a\n"
                "    terminal, or with --progress): messages stored, duplicates, changes,\n"
                "    msgs/s and how many seqs behind the bridge's newest. SIGUSR1 prints the\n"
                "    same figures as one line; SIGINT or SIGTERM commits and exits.\n",
            .exit_status = "    0  stopped by SIGINT or SIGTERM\n"
                           "    1  the database was refused (not an archive, damaged, from a\n"
                           "       newer xpb-archive, read-only) or failed while running\n"
                           "    2  usage error\n",
            .examples = "    xpb-archive run --db /var/lib/xpb-archive/archive.db\n"
                        "    xpb-archive run --db archive.db --nats nats://10.0.0.1:4222,"
                        "nats://10.0.0.2:4222\n"
                        "    xpb-archive run --db archive.db --keep-days 365 --progress\n"
                        "    kill -USR1 $(pidof xpb-archive)\n",
        },
    .opts = run_opts,
    .args_size = sizeof(run_args),
    .bus = true,
    .run = run_run,
};
