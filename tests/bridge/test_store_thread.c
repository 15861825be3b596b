/* Tests for the store thread (bridge/store/store_thread.c, xpb_store.h "the
 * store thread"): writes handed over run in submit order and their
 * completions come back on the caller's thread only, after the commit; an
 * outbox row's completion comes after the wait for the disk (sync "sends"),
 * a journal-only round waits for nothing; a full state directory fails each
 * write with its own reason and leaves archive markers where they were; the
 * WAL is checkpointed by the thread, not left to grow. */
#define _DEFAULT_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "xpb_error.h"
#include "xpb_store.h"

static char g_dir[256];
static char g_err[1024];

/* SQLite calls these through the PLT: ours count the waits for the disk. */
static atomic_uint g_syncs;
int fdatasync(int fd)
{
    atomic_fetch_add(&g_syncs, 1);
    return (int)syscall(SYS_fdatasync, fd);
}
int fsync(int fd)
{
    atomic_fetch_add(&g_syncs, 1);
    return (int)syscall(SYS_fsync, fd);
}

static atomic_int g_notified;
static void notify(void *ud)
{
    (void)ud;
    atomic_fetch_add(&g_notified, 1);
}

/* What the completions saw, in the order they ran. */
typedef struct done_log {
    char tag[64][16];
    int rc[64];
    uint64_t id[64];
    unsigned syncs[64]; /* g_syncs when it ran */
    char err[64][256];
    int n;
} done_log;
static done_log g_log;

static void on_done(void *ud, const char *account, uint64_t id, int rc, const char *err)
{
    (void)account;
    int i = g_log.n++;
    assert_true(i < 64);
    snprintf(g_log.tag[i], sizeof g_log.tag[i], "%s", (const char *)ud);
    g_log.rc[i] = rc;
    g_log.id[i] = id;
    g_log.syncs[i] = atomic_load(&g_syncs);
    snprintf(g_log.err[i], sizeof g_log.err[i], "%s", err);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/xpb-store-thread-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    memset(&g_log, 0, sizeof g_log);
    atomic_store(&g_notified, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static xpb_store *open_threaded(uint64_t max_pages)
{
    xpb_store_config cfg = {.dir = g_dir, .max_db_pages = max_pages};
    xpb_store *s = NULL;
    assert_int_equal(xpb_store_open(&s, &cfg, g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_thread_start(s, notify, NULL, g_err, sizeof g_err), 0);
    assert_true(xpb_store_threaded(s));
    return s;
}

/* n events from seq on, each record rec_len bytes of 'r'; ev must live until done. */
static void fill(xpb_journal_event *ev, size_t n, uint64_t seq, const uint8_t *rec, size_t rec_len)
{
    for (size_t i = 0; i < n; i++)
        ev[i] = (xpb_journal_event){.seq = seq + i,
                                    .time_us = 1,
                                    .topic = "message/a@x/",
                                    .record = rec,
                                    .record_len = rec_len};
}

static int count_rows(void *ud, const xpb_journal_event *ev)
{
    (void)ev;
    (*(size_t *)ud)++;
    return 0;
}

static int count_outbox(void *ud, const xpb_outbox_item *it)
{
    (void)it;
    (*(size_t *)ud)++;
    return 0;
}

static void test_order_and_completion_on_the_callers_thread(void **state)
{
    (void)state;
    xpb_store *s = open_threaded(0);
    static uint8_t rec[100];
    static xpb_journal_event ev1[10], ev2[10];
    fill(ev1, 10, 1, rec, sizeof rec);
    fill(ev2, 10, 11, rec, sizeof rec);
    uint8_t xml[8] = "<m/>";
    xpb_outbox_item it = {.account = "a@x", .id = 7, .stanza_id = "s7", .xml = xml, .xml_len = 4};
    xpb_sm_state sm = {.h_in = 5, .h_out = 3, .saved_us = 9};
    snprintf(sm.id, sizeof sm.id, "sm-1");
    snprintf(sm.jid, sizeof sm.jid, "a@x/r");
    xpb_store_seen_item seen = {
        .account = "a@x", .archive = "a@x", .stanza_id = "id1", .marker = "T id1"};
    assert_int_equal(xpb_store_submit_journal(s, ev1, 10, on_done, "j1"), 0);
    assert_int_equal(xpb_store_submit_outbox_put(s, &it, on_done, "put"), 0);
    it.xml = NULL; /* copied: the caller's buffer is free again */
    assert_int_equal(xpb_store_submit_journal(s, ev2, 10, on_done, "j2"), 0);
    assert_int_equal(xpb_store_submit_sm_save(s, "a@x", &sm, on_done, "sm"), 0);
    assert_int_equal(xpb_store_submit_seen(s, &seen, 1, 5, on_done, "seen"), 0);
    assert_int_equal(xpb_store_submit_outbox_done(s, "a@x", 7, on_done, "done"), 0);
    /* Nothing completes on the store thread: only here, when asked. */
    for (int i = 0; i < 200 && atomic_load(&g_notified) == 0; i++)
        usleep(1000);
    assert_true(atomic_load(&g_notified) > 0);
    assert_int_equal(g_log.n, 0);
    xpb_store_wait(s);
    static const char *const want[] = {"j1", "put", "j2", "sm", "seen", "done"};
    assert_int_equal(g_log.n, 6);
    for (int i = 0; i < 6; i++) {
        assert_string_equal(g_log.tag[i], want[i]);
        assert_int_equal(g_log.rc[i], 0);
    }
    assert_int_equal(g_log.id[1], 7); /* the put's own id */
    assert_int_equal(g_log.id[4], 0); /* markers written */
    /* Completed means committed: this thread's connection reads all of it. */
    xpb_journal_stats js;
    xpb_store_journal_stats(s, &js);
    assert_int_equal(js.last_seq, 20);
    assert_int_equal(js.events, 20);
    assert_int_equal(xpb_store_next_seq(s), 21);
    size_t rows = 0;
    uint64_t next = 0;
    assert_int_equal(
        xpb_store_journal_read(s, 1, "", 0, count_rows, &rows, &next, g_err, sizeof g_err), 0);
    assert_int_equal(rows, 20);
    assert_int_equal(next, 21);
    xpb_sm_state got;
    assert_int_equal(xpb_store_sm_load(s, "a@x", &got, g_err, sizeof g_err), 0);
    assert_int_equal(got.h_in, 5);
    assert_string_equal(got.jid, "a@x/r");
    char m[64];
    assert_int_equal(
        xpb_store_marker_get(s, "a@x", "a@x", m, sizeof m, NULL, 0, g_err, sizeof g_err), 0);
    assert_string_equal(m, "T id1");
    assert_int_equal(xpb_store_seen_has(s, "a@x", "a@x", "id1", g_err, sizeof g_err), 1);
    size_t kept = 0;
    assert_int_equal(xpb_store_outbox_each(s, "a@x", count_outbox, &kept, g_err, sizeof g_err), 0);
    assert_int_equal(kept, 0); /* put, then removed */
    /* An out-of-order seq is refused on the thread, with its reason. */
    assert_int_equal(xpb_store_submit_journal(s, ev1, 10, on_done, "stale"), 0);
    xpb_store_wait(s);
    assert_int_equal(g_log.rc[6], XPB_EINVAL);
    assert_non_null(strstr(g_log.err[6], "out of order"));
    xpb_store_close(s);
    /* And it survives a reopen (without the thread). */
    xpb_store_config cfg = {.dir = g_dir};
    assert_int_equal(xpb_store_open(&s, &cfg, g_err, sizeof g_err), 0);
    assert_int_equal(xpb_store_next_seq(s), 21);
    xpb_store_close(s);
}

/* sync "sends": a row's completion comes after the wait for the disk; a
 * round of journal events only waits for nothing; many rows share waits. */
static void test_outbox_rows_on_disk_before_completion(void **state)
{
    (void)state;
    xpb_store *s = open_threaded(0);
    static uint8_t rec[50];
    static xpb_journal_event ev[8];
    fill(ev, 8, 1, rec, sizeof rec);
    xpb_store_wait(s);
    atomic_store(&g_syncs, 0);
    assert_int_equal(xpb_store_submit_journal(s, ev, 8, on_done, "j"), 0);
    xpb_store_wait(s);
    assert_int_equal(g_log.n, 1);
    assert_int_equal(g_log.syncs[0], 0);
    uint8_t xml[4] = "<m/";
    for (uint64_t id = 1; id <= 40; id++) {
        xpb_outbox_item it = {.account = "a@x", .id = id, .xml = xml, .xml_len = 3};
        assert_int_equal(xpb_store_submit_outbox_put(s, &it, on_done, "put"), 0);
    }
    xpb_store_wait(s);
    assert_int_equal(g_log.n, 41);
    for (int i = 1; i < 41; i++) {
        assert_int_equal(g_log.rc[i], 0);
        assert_true(g_log.syncs[i] >= 1);
    }
    unsigned syncs = atomic_load(&g_syncs);
    assert_true(syncs >= 1 && syncs <= 40 + 2); /* per round, not more than per row */
    assert_int_equal(xpb_store_outbox_count(s, "a@x"), 40);
    xpb_store_close(s);
}

/* A full state directory (a page limit standing in for it): each write fails
 * with its own reason naming the directory; a marker does not move past a
 * journal append that failed; earlier writes stay readable. */
static void test_full_disk_fails_each_write(void **state)
{
    (void)state;
    xpb_store *s = open_threaded(12);
    static uint8_t rec[400];
    static xpb_journal_event ev[200][20];
    uint64_t seq = 1;
    int i = 0;
    for (; i < 200; i++, seq += 20) {
        fill(ev[i], 20, seq, rec, sizeof rec);
        assert_int_equal(xpb_store_submit_journal(s, ev[i], 20, on_done, "j"), 0);
        xpb_store_wait(s);
        if (g_log.rc[g_log.n - 1] != 0) break;
    }
    assert_true(i < 200);
    int last = g_log.n - 1;
    assert_int_equal(g_log.rc[last], XPB_ESTOREFULL);
    assert_non_null(strstr(g_log.err[last], "state directory full"));
    assert_non_null(strstr(g_log.err[last], g_dir));
    xpb_journal_stats js;
    xpb_store_journal_stats(s, &js);
    assert_int_equal(js.events, (uint64_t)i * 20);
    assert_int_equal(js.append_errors, 1);
    /* A send's row refused with the cause; the seen write keeps its marker out. */
    static uint8_t big[20000];
    xpb_outbox_item it = {
        .account = "a@x", .id = 1, .stanza_id = "s1", .xml = big, .xml_len = sizeof big};
    xpb_store_seen_item seen = {.account = "a@x", .archive = "a@x", .marker = "T moved"};
    assert_int_equal(xpb_store_submit_outbox_put(s, &it, on_done, "put"), 0);
    assert_int_equal(xpb_store_submit_seen(s, &seen, 1, 5, on_done, "seen"), 0);
    xpb_store_wait(s);
    assert_string_equal(g_log.tag[last + 1], "put");
    assert_int_equal(g_log.rc[last + 1], XPB_ESTOREFULL);
    assert_non_null(strstr(g_log.err[last + 1], "outbox: state directory full"));
    assert_non_null(strstr(g_log.err[last + 1], g_dir));
    assert_string_equal(g_log.tag[last + 2], "seen");
    assert_int_equal(g_log.id[last + 2], 1); /* markers left out */
    char m[64];
    assert_int_equal(
        xpb_store_marker_get(s, "a@x", "a@x", m, sizeof m, NULL, 0, g_err, sizeof g_err), 1);
    size_t rows = 0;
    uint64_t next = 0;
    assert_int_equal(
        xpb_store_journal_read(s, 1, "", 0, count_rows, &rows, &next, g_err, sizeof g_err), 0);
    assert_int_equal(rows, (size_t)i * 20);
    xpb_store_close(s);
}

/* The thread checkpoints: the WAL does not keep every page written. */
static void test_wal_checkpointed_by_the_thread(void **state)
{
    (void)state;
    xpb_store *s = open_threaded(0);
    static uint8_t rec[2000];
    static xpb_journal_event ev[400][25]; /* 10,000 events, about 20 MB */
    for (int i = 0; i < 400; i++) {
        fill(ev[i], 25, 1 + (uint64_t)i * 25, rec, sizeof rec);
        assert_int_equal(xpb_store_submit_journal(s, ev[i], 25, on_done, "j"), 0);
        if (i % 60 == 59) {
            xpb_store_wait(s);
            g_log.n = 0;
        }
    }
    xpb_store_wait(s);
    char wal[400];
    snprintf(wal, sizeof wal, "%s/%s-wal", g_dir, XPB_STORE_FILE);
    struct stat st;
    assert_int_equal(stat(wal, &st), 0);
    /* Without checkpoints it would hold all ~20 MB; with them a few MB. */
    assert_true(st.st_size < 10 * 1024 * 1024);
    xpb_journal_stats js;
    xpb_store_journal_stats(s, &js);
    assert_int_equal(js.last_seq, 10000);
    xpb_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_completion_on_the_callers_thread, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_outbox_rows_on_disk_before_completion, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_fails_each_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_checkpointed_by_the_thread, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
