/* Tests for bridge/store/ (xpb_store.h): the journal's seqs, pages, prefixes,
 * retention and the error naming the oldest seq kept; state that survives a
 * reopen (journal id, seq, outbox, XEP-0198, markers, seen ids); catch-up's
 * seen ids and markers committed together; a full disk
 * (a database page limit, and a real 64 KiB tmpfs when we may mount one) and a
 * read-only directory refused with their own codes; and a kill -9 at random
 * moments of a writer loses nothing it reported written. */
#define _DEFAULT_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <sqlite3.h>

#include "xpb_error.h"
#include "xpb_store.h"

static char g_dir[256];
static char g_err[1024];

/* SQLite (a shared library) calls these through the PLT, so ours are the
 * ones it gets: they count the waits for the disk and then do them. */
static unsigned g_syncs;
int fdatasync(int fd)
{
    g_syncs++;
    return (int)syscall(SYS_fdatasync, fd);
}
int fsync(int fd)
{
    g_syncs++;
    return (int)syscall(SYS_fsync, fd);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/xpb-store-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* A tmpfs a failed test left mounted goes first (EINVAL when none). */
    static const char *const mounts[] = {"small", "ro"};
    for (size_t i = 0; i < sizeof mounts / sizeof mounts[0]; i++) {
        char m[300];
        snprintf(m, sizeof m, "%s/%s", g_dir, mounts[i]);
        umount(m);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static xpb_store *open_store(const char *dir, uint64_t max_bytes, uint64_t max_age_s)
{
    xpb_store_config cfg = {.dir = dir, .journal_max_bytes = max_bytes, .journal_max_age_s = max_age_s};
    xpb_store *s = NULL;
    int rc = xpb_store_open(&s, &cfg, g_err, sizeof g_err);
    if (rc) fprintf(stderr, "open: %s\n", g_err);
    assert_int_equal(rc, 0);
    return s;
}

/* Appends n events, topics alternating "message/a@x/" and "state/b@x/". */
static int append_n(xpb_store *s, size_t n, int64_t time_us)
{
    xpb_journal_event ev[64];
    uint8_t rec[100];
    memset(rec, 'r', sizeof rec);
    assert_true(n <= 64);
    uint64_t seq = xpb_store_next_seq(s);
    for (size_t i = 0; i < n; i++) {
        ev[i] = (xpb_journal_event){.seq = seq + i, .time_us = time_us,
                                    .topic = (seq + i) % 2 ? "message/a@x/" : "state/b@x/",
                                    .record = rec, .record_len = sizeof rec};
    }
    return xpb_store_journal_append(s, ev, n, g_err, sizeof g_err);
}

typedef struct seen_seqs {
    uint64_t seq[256];
    size_t n;
    size_t stop_after;
} seen_seqs;

static int collect(void *ud, const xpb_journal_event *ev)
{
    seen_seqs *c = ud;
    assert_true(c->n < 256);
    assert_int_equal(ev->record_len, 100);
    c->seq[c->n++] = ev->seq;
    return c->stop_after && c->n >= c->stop_after;
}

static void test_journal_pages_and_prefix(void **state)
{
    (void)state;
    xpb_store *s = open_store(g_dir, 0, 0);
    assert_int_equal(strlen(xpb_store_journal_id(s)), XPB_STORE_JOURNAL_ID_LEN);
    assert_int_equal(xpb_store_next_seq(s), 1);
    assert_int_equal(append_n(s, 10, 1000), 0);
    assert_int_equal(append_n(s, 10, 1000), 0);
    /* Pages of 8 from seq 1: 1..8, 9..16, 17..20, then nothing. */
    uint64_t next = 1;
    size_t pages = 0, total = 0;
    for (;;) {
        seen_seqs c = {0};
        assert_int_equal(xpb_store_journal_read(s, next, "", 8, collect, &c, &next, g_err,
                                                sizeof g_err), 0);
        for (size_t i = 0; i < c.n; i++) assert_int_equal(c.seq[i], total + i + 1);
        total += c.n;
        if (!c.n) break;
        pages++;
    }
    assert_int_equal(total, 20);
    assert_int_equal(pages, 3);
    assert_int_equal(next, 21);
    /* A prefix: the odd seqs only, and next goes past what was skipped. */
    seen_seqs c = {0};
    assert_int_equal(xpb_store_journal_read(s, 1, "message/", 0, collect, &c, &next, g_err,
                                            sizeof g_err), 0);
    assert_int_equal(c.n, 10);
    for (size_t i = 0; i < c.n; i++) assert_int_equal(c.seq[i], 2 * i + 1);
    assert_int_equal(next, 21);
    /* The callback stops early: next is right after the last one it saw. */
    seen_seqs d = {.stop_after = 3};
    assert_int_equal(xpb_store_journal_read(s, 5, "", 0, collect, &d, &next, g_err,
                                            sizeof g_err), 0);
    assert_int_equal(d.n, 3);
    assert_int_equal(next, 8);
    /* Out of order is refused and keeps nothing. */
    xpb_journal_event bad = {.seq = 20, .topic = "x/", .record = (const uint8_t *)"", .record_len = 0};
    assert_int_equal(xpb_store_journal_append(s, &bad, 1, g_err, sizeof g_err), XPB_EINVAL);
    assert_non_null(strstr(g_err, "out of order (must be above 20)"));
    xpb_journal_stats st;
    xpb_store_journal_stats(s, &st);
    assert_int_equal(st.events, 20);
    assert_int_equal(st.first_seq, 1);
    assert_int_equal(st.last_seq, 20);
    xpb_store_close(s);
}

/* Group commit: outbox rows of a batch are on disk together at its commit,
 * which another write (here a journal append) makes happen first. */
static int g_commits, g_commit_rc;

static void on_commit(void *ud, int rc, const char *err)
{
    (void)ud;
    (void)err;
    g_commits++;
    g_commit_rc = rc;
}

static void test_batch_group_commit(void **state)
{
    (void)state;
    xpb_store *s = open_store(g_dir, 0, 0);
    g_commits = 0;
    assert_int_equal(xpb_store_batch_begin(s, on_commit, NULL, g_err, sizeof g_err), 0);
    assert_true(xpb_store_batch_open(s));
    assert_int_equal(xpb_store_batch_begin(s, on_commit, NULL, g_err, sizeof g_err), XPB_EINVAL);
    xpb_outbox_item it = {.account = "bot@x", .id = 1, .stanza_id = "s1",
                          .xml = (const uint8_t *)"r", .xml_len = 1};
    assert_int_equal(xpb_store_outbox_put(s, &it, g_err, sizeof g_err), 0);
    it.id = 2;
    assert_int_equal(xpb_store_outbox_put(s, &it, g_err, sizeof g_err), 0);
    assert_int_equal(g_commits, 0);
    assert_int_equal(xpb_store_batch_commit(s), 0);
    assert_int_equal(g_commits, 1);
    assert_int_equal(g_commit_rc, 0);
    assert_false(xpb_store_batch_open(s));
    /* A journal append commits the open batch before its own transaction. */
    assert_int_equal(xpb_store_batch_begin(s, on_commit, NULL, g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_outbox_done(s, "bot@x", 1, g_err, sizeof g_err), 0);
    assert_int_equal(append_n(s, 1, 1), 0);
    assert_int_equal(g_commits, 2);
    assert_false(xpb_store_batch_open(s));
    /* An open batch is committed at close: its rows survive. */
    it.id = 3;
    assert_int_equal(xpb_store_batch_begin(s, on_commit, NULL, g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_outbox_put(s, &it, g_err, sizeof g_err), 0);
    xpb_store_close(s);
    assert_int_equal(g_commits, 3);
    s = open_store(g_dir, 0, 0);
    assert_int_equal(xpb_store_outbox_count(s, "bot@x"), 2); /* 2 and 3 */
    xpb_store_close(s);
}

/* One process per state directory: a second open is refused naming the pid. */
static void test_lock_refuses_a_second_open(void **state)
{
    (void)state;
    xpb_store *s = open_store(g_dir, 0, 0);
    xpb_store *t = NULL;
    xpb_store_config cfg = {.dir = g_dir};
    assert_int_equal(xpb_store_open(&t, &cfg, g_err, sizeof g_err), XPB_ESTORELOCKED);
    assert_null(t);
    char want[64];
    snprintf(want, sizeof want, "(pid %ld, lock ", (long)getpid());
    assert_non_null(strstr(g_err, want));
    assert_non_null(strstr(g_err, g_dir));
    xpb_store_close(s);
    assert_int_equal(xpb_store_open(&t, &cfg, g_err, sizeof g_err), 0); /* released */
    xpb_store_close(t);
}

static void test_state_survives_reopen(void **state)
{
    (void)state;
    xpb_store *s = open_store(g_dir, 0, 0);
    char id[XPB_STORE_JOURNAL_ID_LEN + 1];
    memcpy(id, xpb_store_journal_id(s), sizeof id);
    assert_int_equal(append_n(s, 5, 1), 0);
    xpb_outbox_item it = {.account = "bot@x", .id = 7, .stanza_id = "s7", .request_id = "r7",
                          .xml = (const uint8_t *)"<message/>", .xml_len = 10};
    assert_int_equal(xpb_store_outbox_put(s, &it, g_err, sizeof g_err), 0);
    it.id = 8;
    it.stanza_id = "s8";
    assert_int_equal(xpb_store_outbox_put(s, &it, g_err, sizeof g_err), 0);
    xpb_sm_state sm = {.id = "sm-1", .location = "", .h_in = 41, .h_out = 42, .saved_us = 5};
    assert_int_equal(xpb_store_sm_save(s, "bot@x", &sm, g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_marker_set(s, "bot@x", "bot@x", "arch-9", NULL, g_err, sizeof g_err),
                     0);
    assert_int_equal(xpb_store_seen(s, "bot@x", "room@muc.x", "sid-1", 1, g_err, sizeof g_err), 0);
    xpb_store_close(s);

    s = open_store(g_dir, 0, 0);
    assert_string_equal(xpb_store_journal_id(s), id);
    assert_int_equal(xpb_store_next_seq(s), 6);
    assert_int_equal(xpb_store_outbox_count(s, "bot@x"), 2);
    assert_int_equal(xpb_store_outbox_done(s, "bot@x", 7, g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_outbox_count(s, "bot@x"), 1);
    assert_int_equal(xpb_store_outbox_count(s, "other@x"), 0);
    xpb_sm_state got;
    assert_int_equal(xpb_store_sm_load(s, "bot@x", &got, g_err, sizeof g_err), 0);
    assert_string_equal(got.id, "sm-1");
    assert_int_equal(got.h_in, 41);
    assert_int_equal(got.h_out, 42);
    assert_int_equal(xpb_store_sm_clear(s, "bot@x", g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_sm_load(s, "bot@x", &got, g_err, sizeof g_err), 1);
    char marker[64];
    assert_int_equal(xpb_store_marker_get(s, "bot@x", "bot@x", marker, sizeof marker, NULL, 0,
                                          g_err, sizeof g_err),
                     0);
    assert_string_equal(marker, "arch-9");
    assert_int_equal(xpb_store_marker_get(s, "bot@x", "room@muc.x", marker, sizeof marker, NULL, 0,
                                          g_err, sizeof g_err),
                     1);
    assert_int_equal(xpb_store_seen(s, "bot@x", "room@muc.x", "sid-1", 2, g_err, sizeof g_err), 1);
    assert_int_equal(xpb_store_seen(s, "bot@x", "room@muc.x", "sid-2", 2, g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_seen(s, "bot@x", "other@muc.x", "sid-1", 2, g_err, sizeof g_err), 0);
    xpb_store_close(s);
}

/* Runs sql on the state directory's database, as another program would. */
static void db_exec(const char *sql)
{
    char path[512];
    snprintf(path, sizeof path, "%s/xpbridge.db", g_dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* A marker keeps the stream it was caught up in. A state directory made
 * before that (schema 2: no marker.stream) gains the column, its markers
 * read as not caught up; a database an older xpbridge opened since (version
 * 2 written back over 3, the column there) opens all the same. */
static void test_marker_stream_and_schema_2(void **state)
{
    (void)state;
    xpb_store *s = open_store(g_dir, 0, 0);
    assert_int_equal(xpb_store_marker_set(s, "bot@x", "bot@x", "T a1", "sm-1", g_err, sizeof g_err),
                     0);
    char m[64], st[64];
    assert_int_equal(
        xpb_store_marker_get(s, "bot@x", "bot@x", m, sizeof m, st, sizeof st, g_err, sizeof g_err),
        0);
    assert_string_equal(m, "T a1");
    assert_string_equal(st, "sm-1");
    xpb_store_seen_item it = {.account = "bot@x", .archive = "bot@x", .marker = "T a2"};
    assert_int_equal(xpb_store_seen_commit(s, &it, 1, 5, g_err, sizeof g_err), 0);
    assert_int_equal(
        xpb_store_marker_get(s, "bot@x", "bot@x", m, sizeof m, st, sizeof st, g_err, sizeof g_err),
        0);
    assert_string_equal(st, ""); /* written without a stream: not caught up */
    xpb_store_close(s);

    /* Back to schema 2 by hand: the table as it was, version 2. */
    db_exec("DROP TABLE marker; CREATE TABLE marker(account TEXT NOT NULL, archive TEXT NOT "
            "NULL, stanza_id TEXT NOT NULL, PRIMARY KEY(account, archive)) STRICT; INSERT INTO "
            "marker VALUES('bot@x', 'bot@x', 'T old'); PRAGMA user_version=2;");
    s = open_store(g_dir, 0, 0);
    assert_int_equal(
        xpb_store_marker_get(s, "bot@x", "bot@x", m, sizeof m, st, sizeof st, g_err, sizeof g_err),
        0);
    assert_string_equal(m, "T old");
    assert_string_equal(st, "");
    assert_int_equal(
        xpb_store_marker_set(s, "bot@x", "bot@x", "T new", "sm-2", g_err, sizeof g_err), 0);
    xpb_store_close(s);
    db_exec("PRAGMA user_version=2;");
    s = open_store(g_dir, 0, 0);
    assert_int_equal(
        xpb_store_marker_get(s, "bot@x", "bot@x", m, sizeof m, st, sizeof st, g_err, sizeof g_err),
        0);
    assert_string_equal(st, "sm-2");
    xpb_store_close(s);
}

static void test_retention(void **state)
{
    (void)state;
    /* Each event is 100 record bytes + 10 or 12 topic bytes: 1,000 bytes keep
     * about 8 of them. */
    xpb_store *s = open_store(g_dir, 1000, 3600);
    for (int i = 0; i < 4; i++) assert_int_equal(append_n(s, 5, 1000000), 0);
    assert_int_equal(xpb_store_journal_trim(s, 2000000, g_err, sizeof g_err), 0);
    xpb_journal_stats st;
    xpb_store_journal_stats(s, &st);
    assert_true(st.bytes <= 1000);
    assert_true(st.first_seq > 1);
    assert_int_equal(st.last_seq, 20);
    assert_int_equal(st.trimmed, 20 - st.events);
    /* From before the oldest kept: the error names it and the setting. */
    seen_seqs c = {0};
    uint64_t next;
    assert_int_equal(xpb_store_journal_read(s, 2, "", 0, collect, &c, &next, g_err, sizeof g_err),
                     XPB_EREPLAYGONE);
    char want[64];
    snprintf(want, sizeof want, "keeps seq %llu to 20", (unsigned long long)st.first_seq);
    assert_non_null(strstr(g_err, want));
    assert_non_null(strstr(g_err, "journal_max_bytes 1000"));
    assert_int_equal(c.n, 0);
    /* From the oldest kept on, all of them. */
    assert_int_equal(xpb_store_journal_read(s, st.first_seq, "", 0, collect, &c, &next, g_err,
                                            sizeof g_err), 0);
    assert_int_equal(c.n, st.events);
    /* By age: an hour after, everything goes, and the seq goes on. */
    assert_int_equal(xpb_store_journal_trim(s, 1000000 + 3601ll * 1000000, g_err, sizeof g_err), 0);
    xpb_store_journal_stats(s, &st);
    assert_int_equal(st.events, 0);
    assert_int_equal(xpb_store_next_seq(s), 21);
    xpb_store_close(s);
    s = open_store(g_dir, 1000, 3600);
    assert_int_equal(xpb_store_next_seq(s), 21);
    assert_int_equal(xpb_store_journal_read(s, 20, "", 0, collect, &c, &next, g_err, sizeof g_err),
                     XPB_EREPLAYGONE);
    assert_non_null(strstr(g_err, "the journal is empty; the next seq is 21"));
    /* Asking for what is next is not an error: nothing yet. */
    assert_int_equal(xpb_store_journal_read(s, 21, "", 0, collect, &c, &next, g_err, sizeof g_err), 0);
    xpb_store_close(s);
}

static void test_full_by_page_limit(void **state)
{
    (void)state;
    xpb_store_config cfg = {.dir = g_dir, .max_db_pages = 12};
    xpb_store *s = NULL;
    assert_int_equal(xpb_store_open(&s, &cfg, g_err, sizeof g_err), 0);
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++) rc = append_n(s, 20, 1);
    assert_int_equal(rc, XPB_ESTOREFULL);
    assert_non_null(strstr(g_err, "state directory full"));
    assert_non_null(strstr(g_err, g_dir));
    /* The failed batch left nothing; what was kept reads back whole. */
    xpb_journal_stats st;
    xpb_store_journal_stats(s, &st);
    assert_int_equal(st.append_errors, 1);
    assert_int_equal(st.events % 20, 0);
    seen_seqs c = {0};
    uint64_t next;
    assert_int_equal(xpb_store_journal_read(s, st.last_seq - 4, "", 0, collect, &c, &next, g_err,
                                            sizeof g_err), 0);
    assert_int_equal(c.n, 5);
    assert_int_equal(xpb_store_next_seq(s), st.last_seq + 1);
    xpb_store_close(s);
}

/* Catch-up's writes (bridge/daemon/catchup.c): seen ids and markers in one
 * transaction, read back without writing; all or nothing when the disk is full. */
static void test_seen_commit(void **state)
{
    (void)state;
    xpb_store *s = open_store(g_dir, 0, 0);
    assert_int_equal(xpb_store_seen_has(s, "bot@x", "bot@x", "a1", g_err, sizeof g_err), 0);
    xpb_store_seen_item it[] = {
        {.account = "bot@x", .archive = "bot@x", .stanza_id = "a1"},
        {.account = "bot@x", .archive = "room@m", .stanza_id = "r1", .marker = "T r1"},
        {.account = "bot@x", .archive = "bot@x", .stanza_id = "a2", .marker = "T a2"},
        {.account = "bot@x", .archive = "bot@x", .marker = "T a3"},
    };
    assert_int_equal(xpb_store_seen_commit(s, it, 4, 5, g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_seen_commit(s, it, 0, 5, g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_seen_has(s, "bot@x", "bot@x", "a1", g_err, sizeof g_err), 1);
    assert_int_equal(xpb_store_seen_has(s, "bot@x", "bot@x", "a2", g_err, sizeof g_err), 1);
    assert_int_equal(xpb_store_seen_has(s, "bot@x", "room@m", "r1", g_err, sizeof g_err), 1);
    assert_int_equal(xpb_store_seen_has(s, "bot@x", "room@m", "a1", g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_seen_has(s, "bot2@x", "bot@x", "a1", g_err, sizeof g_err), 0);
    char m[64];
    assert_int_equal(
        xpb_store_marker_get(s, "bot@x", "bot@x", m, sizeof m, NULL, 0, g_err, sizeof g_err), 0);
    assert_string_equal(m, "T a3"); /* the last marker of the archive wins */
    assert_int_equal(
        xpb_store_marker_get(s, "bot@x", "room@m", m, sizeof m, NULL, 0, g_err, sizeof g_err), 0);
    assert_string_equal(m, "T r1");
    /* has does not write: the id is still new for xpb_store_seen */
    assert_int_equal(xpb_store_seen(s, "bot@x", "bot@x", "a9", 6, g_err, sizeof g_err), 0);
    xpb_store_close(s);

    /* A full disk: none of a commit's rows are kept. */
    char small[300];
    snprintf(small, sizeof small, "%s/full", g_dir);
    xpb_store_config cfg = {.dir = small, .max_db_pages = 12};
    assert_int_equal(xpb_store_open(&s, &cfg, g_err, sizeof g_err), 0);
    static char ids[400][16];
    static xpb_store_seen_item many[400];
    for (int i = 0; i < 400; i++) {
        snprintf(ids[i], sizeof ids[i], "id-%d", i);
        many[i] = (xpb_store_seen_item){.account = "bot@x", .archive = "bot@x",
                                        .stanza_id = ids[i], .marker = ids[i]};
    }
    int rc = 0;
    for (int round = 0; round < 50 && rc == 0; round++) {
        for (int i = 0; i < 400; i++) ids[i][0] = (char)('A' + round % 26);
        rc = xpb_store_seen_commit(s, many, 400, 7, g_err, sizeof g_err);
    }
    assert_int_equal(rc, XPB_ESTOREFULL);
    assert_non_null(strstr(g_err, "state directory full"));
    assert_int_equal(xpb_store_seen_has(s, "bot@x", "bot@x", ids[0], g_err, sizeof g_err), 0);
    assert_int_equal(
        xpb_store_marker_get(s, "bot@x", "bot@x", m, sizeof m, NULL, 0, g_err, sizeof g_err) == 0 &&
            strcmp(m, ids[399]) == 0,
        0);
    xpb_store_close(s);
}

/* A real full disk: a 64 KiB tmpfs, when this process may mount one. */
static void test_full_disk_tmpfs(void **state)
{
    (void)state;
    char mnt[300];
    snprintf(mnt, sizeof mnt, "%s/small", g_dir);
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (geteuid() != 0 || mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
        skip(); /* not root: test_full_by_page_limit covers the code path */
    }
    xpb_store_config cfg = {.dir = mnt};
    xpb_store *s = NULL;
    int rc = xpb_store_open(&s, &cfg, g_err, sizeof g_err);
    for (int i = 0; i < 400 && rc == 0; i++) rc = append_n(s, 20, 1);
    assert_int_equal(rc, XPB_ESTOREFULL);
    assert_non_null(strstr(g_err, "state directory full"));
    xpb_store_close(s);
    assert_int_equal(umount(mnt), 0);
}

static void test_read_only_dir(void **state)
{
    (void)state;
    char ro[300];
    snprintf(ro, sizeof ro, "%s/ro", g_dir);
    assert_int_equal(mkdir(ro, 0700), 0);
    int mounted = 0;
    if (geteuid() == 0) {
        if (mount("tmpfs", ro, "tmpfs", MS_RDONLY, "size=64k") != 0) skip();
        mounted = 1;
    } else {
        assert_int_equal(chmod(ro, 0500), 0);
    }
    xpb_store_config cfg = {.dir = ro};
    xpb_store *s = NULL;
    assert_int_equal(xpb_store_open(&s, &cfg, g_err, sizeof g_err), XPB_ESTORERO);
    assert_non_null(strstr(g_err, ro));
    assert_true(strstr(g_err, "not writable") || strstr(g_err, "read-only"));
    if (mounted) assert_int_equal(umount(ro), 0);
}

/* A writer reports each committed seq on a pipe and is killed (SIGKILL) at a
 * random moment; every reported seq must be there after reopening, with no
 * hole below the last one kept. */
static void test_kill9_loses_nothing_reported(void **state)
{
    (void)state;
    srand((unsigned)getpid());
    for (int round = 0; round < 12; round++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            xpb_store *s = open_store(g_dir, 0, 0);
            for (;;) {
                if (append_n(s, 1 + (size_t)(rand() % 20), 1) != 0) _exit(3);
                uint64_t last = xpb_store_next_seq(s) - 1;
                if (write(p[1], &last, sizeof last) != sizeof last) _exit(4);
            }
        }
        close(p[1]);
        usleep((useconds_t)(20000 + rand() % 80000));
        kill(pid, SIGKILL);
        uint64_t reported = 0, v;
        while (read(p[0], &v, sizeof v) == sizeof v) reported = v;
        close(p[0]);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
        xpb_store *s = open_store(g_dir, 0, 0);
        xpb_journal_stats st;
        xpb_store_journal_stats(s, &st);
        assert_true(st.last_seq >= reported);
        /* 1..last with no hole (nothing at all when killed before its first commit). */
        assert_int_equal(st.first_seq, st.last_seq ? 1 : 0);
        assert_int_equal(st.events, st.last_seq);
        xpb_store_close(s);
    }
}

/* state.sync = "sends" (the default): a commit that wrote outbox rows waits
 * for the disk; the journal's and removals' do not; "full": every commit waits. */
static void test_sync_modes(void **state)
{
    (void)state;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/sends", g_dir);
    xpb_store *s = open_store(dir, 0, 0); /* sync 0: XPB_STORE_SYNC_SENDS */
    g_syncs = 0;
    for (int i = 0; i < 5; i++) assert_int_equal(append_n(s, 8, 1000), 0);
    assert_int_equal(g_syncs, 0);
    uint8_t rec[16] = {0};
    xpb_outbox_item it = {.account = "a@x", .id = 1, .stanza_id = "s1", .xml = rec,
                          .xml_len = sizeof rec};
    assert_int_equal(xpb_store_outbox_put(s, &it, g_err, sizeof g_err), 0);
    assert_true(g_syncs >= 1); /* on its own: on disk before it returns */
    unsigned after_put = g_syncs;
    assert_int_equal(append_n(s, 8, 1000), 0); /* back to not waiting */
    assert_int_equal(g_syncs, after_put);
    assert_int_equal(xpb_store_batch_begin(s, NULL, NULL, g_err, sizeof g_err), 0);
    for (uint64_t id = 2; id < 5; id++) {
        it.id = id;
        assert_int_equal(xpb_store_outbox_put(s, &it, g_err, sizeof g_err), 0);
    }
    assert_int_equal(g_syncs, after_put); /* inside the batch: nothing yet */
    assert_int_equal(xpb_store_batch_commit(s), 0);
    assert_true(g_syncs > after_put);
    unsigned after_batch = g_syncs; /* removals only: a lost one is a duplicate, no wait */
    assert_int_equal(xpb_store_batch_begin(s, NULL, NULL, g_err, sizeof g_err), 0);
    for (uint64_t id = 1; id < 5; id++)
        assert_int_equal(xpb_store_outbox_done(s, "a@x", id, g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_batch_commit(s), 0);
    assert_int_equal(g_syncs, after_batch);
    assert_int_equal(xpb_store_outbox_count(s, "a@x"), 0);
    xpb_store_close(s);

    snprintf(dir, sizeof dir, "%s/full", g_dir);
    xpb_store_config cfg = {.dir = dir, .sync = XPB_STORE_SYNC_FULL};
    assert_int_equal(xpb_store_open(&s, &cfg, g_err, sizeof g_err), 0);
    g_syncs = 0;
    assert_int_equal(append_n(s, 8, 1000), 0);
    assert_true(g_syncs >= 1);
    xpb_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_journal_pages_and_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_refuses_a_second_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_marker_stream_and_schema_2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_by_page_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seen_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_tmpfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_loses_nothing_reported, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
