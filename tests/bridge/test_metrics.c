/* Tests for bridge/app/metrics.c: the exposition text and the /healthz
 * verdict rendered from a fake snapshot source (no daemon, no socket). */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"
#include "test_util.h"
#include "xpb_error.h"

/* The fake source: figures the test chose (the accounts apart). */
static void fake_figures(xpb_metrics_snapshot *s)
{
    static const char *const names[XPB_MST_COUNT] = {"connecting", "online", "disconnected",
                                                     "closing", "stopped"};
    for (int i = 0; i < XPB_MST_COUNT; i++) s->state_name[i] = names[i];
    s->c.sessions[XPB_MST_ONLINE] = 2;
    s->c.sessions[XPB_MST_CLOSING] = 1;
    s->c.n_accounts = 3;
    s->c.bus_up = 1;
    s->c.stanzas[XPB_DIR_IN][XPB_KIND_MESSAGE] = 41;
    s->c.stanzas[XPB_DIR_OUT][XPB_KIND_IQ] = 7;
    s->c.reconnects = 5;
    s->c.open_forbidden = 9;
    s->c.queue_max = 1000;
    s->c.max_stanza_bytes = 262144;
    s->c.muc_self_ping_s = 300;
    s->bus.events = 123;
    s->bus.inflight = 4;
}

static void fake_snapshot(xpb_metrics_snapshot *s)
{
    memset(s, 0, sizeof *s);
    fake_figures(s);
    assert_int_equal(xpb_metrics_snapshot_reserve(s, 2, 64), 0);
    assert_int_equal(xpb_metrics_snapshot_add_account(s, "bot@example.com", 3, 1), 0);
    /* Label values escape \, " and newline (exposition format 0.0.4). */
    assert_int_equal(xpb_metrics_snapshot_add_account(s, "we\"ird\\na\nme@example.com", 0, 2), 0);
}

static char *render(const xpb_metrics_snapshot *s)
{
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_metrics_render(s, &b), 0);
    assert_int_equal(xpb_buf_append(&b, "", 1), 0);
    return b.data; /* the buffer's storage, freed by the caller */
}

static void assert_has(const char *text, const char *line)
{
    if (!strstr(text, line)) fail_msg("missing: %s", line);
}

static void test_values_and_labels(void **state)
{
    (void)state;
    xpb_metrics_snapshot s;
    fake_snapshot(&s);
    char *t = render(&s);
    assert_has(t, "\nxpb_sessions{state=\"online\"} 2\n");
    assert_has(t, "\nxpb_sessions{state=\"closing\"} 1\n");
    assert_has(t, "\nxpb_sessions{state=\"connecting\"} 0\n");
    assert_has(t, "xpb_stanzas_total{direction=\"in\",kind=\"message\"} 41\n");
    assert_has(t, "xpb_stanzas_total{direction=\"out\",kind=\"iq\"} 7\n");
    assert_has(t, "\nxpb_reconnects_total 5\n");
    assert_has(t, "\nxpb_bus_events_total 123\n");
    assert_has(t, "\nxpb_bus_inflight 4\n");
    assert_has(t, "\nxpb_bus_open_forbidden_total 9\n");
    assert_has(t, "\nxpb_queue_max 1000\n");
    assert_has(t, "\nxpb_queue_depth{account=\"bot@example.com\"} 3\n");
    assert_has(t, "\nxpb_unacked{account=\"bot@example.com\"} 1\n");
    assert_has(t, "\nxpb_unacked{account=\"we\\\"ird\\\\na\\nme@example.com\"} 2\n");
    assert_null(strstr(t, "ird\\na\nme")); /* no raw newline inside a label */
    free(t);
    xpb_metrics_snapshot_clear(&s);
}

/* Every sample line's metric has one HELP and one TYPE line before it, and
 * no HELP or TYPE is repeated. */
static void test_every_metric_has_help_and_type(void **state)
{
    (void)state;
    xpb_metrics_snapshot s;
    fake_snapshot(&s);
    char *t = render(&s);
    char seen_help[128][96], seen_type[128][96];
    int n_help = 0, n_type = 0, samples = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        char name[96];
        if (sscanf(line, "# HELP %95s", name) == 1) {
            for (int i = 0; i < n_help; i++)
                if (strcmp(seen_help[i], name) == 0) fail_msg("HELP twice: %s", name);
            assert_true(n_help < 128);
            snprintf(seen_help[n_help++], 96, "%s", name);
            continue;
        }
        if (sscanf(line, "# TYPE %95s", name) == 1) {
            const char *type = line + strlen("# TYPE ") + strlen(name) + 1;
            assert_true(strcmp(type, "gauge") == 0 || strcmp(type, "counter") == 0);
            for (int i = 0; i < n_type; i++)
                if (strcmp(seen_type[i], name) == 0) fail_msg("TYPE twice: %s", name);
            assert_true(n_type < 128);
            snprintf(seen_type[n_type++], 96, "%s", name);
            continue;
        }
        assert_true(line[0] != '#');
        size_t len = strcspn(line, "{ ");
        snprintf(name, sizeof name, "%.*s", (int)len, line);
        int help = 0, type = 0;
        for (int i = 0; i < n_help; i++) help |= strcmp(seen_help[i], name) == 0;
        for (int i = 0; i < n_type; i++) type |= strcmp(seen_type[i], name) == 0;
        if (!help || !type) fail_msg("%s has no HELP or TYPE before it", name);
        samples++;
    }
    assert_int_equal(n_help, n_type);
    assert_true(samples > n_help); /* labelled metrics have several samples */
    free(t);
    xpb_metrics_snapshot_clear(&s);
}

static void test_healthz(void **state)
{
    (void)state;
    xpb_metrics_snapshot s;
    char why[256];
    fake_snapshot(&s);
    assert_int_equal(xpb_metrics_health(&s, why, sizeof why), 1);
    assert_string_equal(why, "ok");
    s.c.sessions[XPB_MST_ONLINE] = 0;
    assert_int_equal(xpb_metrics_health(&s, why, sizeof why), 0);
    assert_string_equal(why, "no session online (3 configured)");
    s.c.bus_up = 0;
    assert_int_equal(xpb_metrics_health(&s, why, sizeof why), 0);
    assert_string_equal(why, "the bus is down");
    /* No account configured and the bus up: healthy. */
    s.c.bus_up = 1;
    s.c.n_accounts = 0;
    assert_int_equal(xpb_metrics_health(&s, why, sizeof why), 1);
    xpb_metrics_snapshot_clear(&s);
}

/* Adding an account never allocates (it runs on the daemon's loop thread):
 * without room it says XPB_METRICS_FULL and adds nothing; reserve makes
 * room; reset empties and keeps the room. */
static void test_snapshot_room(void **state)
{
    (void)state;
    xpb_metrics_snapshot s = {0};
    assert_int_equal(xpb_metrics_snapshot_add_account(&s, "a@example.com", 1, 2),
                     XPB_METRICS_FULL);
    assert_int_equal(s.n_accounts, 0);
    assert_int_equal(xpb_metrics_snapshot_reserve(&s, 2, 20), 0);
    assert_int_equal(xpb_metrics_snapshot_add_account(&s, "a@example.com", 1, 2), 0);
    /* 14 bytes used of 20: 7 with the NUL do not fit, 6 do. */
    assert_int_equal(xpb_metrics_snapshot_add_account(&s, "b@e.co", 3, 4), XPB_METRICS_FULL);
    assert_int_equal(xpb_metrics_snapshot_add_account(&s, "b@e.c", 3, 4), 0);
    assert_int_equal(xpb_metrics_snapshot_add_account(&s, "", 0, 0), XPB_METRICS_FULL); /* 2 of 2 */
    assert_int_equal(s.n_accounts, 2);
    assert_string_equal(xpb_metrics_account_name(&s, &s.accounts[0]), "a@example.com");
    assert_string_equal(xpb_metrics_account_name(&s, &s.accounts[1]), "b@e.c");
    assert_int_equal(s.accounts[1].queued, 3);
    assert_int_equal(s.accounts[1].unacked, 4);
    const xpb_metrics_account *room = s.accounts;
    s.c.n_accounts = 7;
    xpb_metrics_snapshot_reset(&s);
    assert_int_equal(s.n_accounts, 0);
    assert_int_equal(s.names_len, 0);
    assert_int_equal(s.c.n_accounts, 0);
    assert_ptr_equal(s.accounts, room);
    assert_int_equal(s.cap_accounts, 2);
    assert_int_equal(s.names_cap, 20);
    assert_int_equal(xpb_metrics_snapshot_add_account(&s, "c@example.com", 5, 6), 0);
    assert_string_equal(xpb_metrics_account_name(&s, &s.accounts[0]), "c@example.com");
    xpb_metrics_snapshot_clear(&s);
    assert_null(s.accounts);
    assert_null(s.names);
}

static void test_listen_rule(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(xpb_metrics_check_listen("127.0.0.1:9477", 0, err, sizeof err), 0);
    assert_int_equal(xpb_metrics_check_listen("[::1]:9477", 0, err, sizeof err), 0);
    assert_int_equal(xpb_metrics_check_listen("0", 0, err, sizeof err), 0);
    assert_int_equal(xpb_metrics_check_listen("192.0.2.1:9477", 0, err, sizeof err), XPB_EINVAL);
    assert_non_null(strstr(err, "metrics.allow_remote"));
    assert_int_equal(xpb_metrics_check_listen("192.0.2.1:9477", 1, err, sizeof err), 0);
    assert_int_equal(xpb_metrics_check_listen("127.0.0.1", 0, err, sizeof err), XPB_EINVAL);
}

/* ---- the listener on its own thread ------------------------------------------------ */

typedef struct served {
    pthread_t daemon_thread; /* where the snapshot must run */
    int calls, wrong_thread, full;
    size_t next; /* the source's cursor over its accounts */
    xpb_loop *loop;
    xpb_wake *done;
    uint16_t port;
    const char *path;
    char reply[65536];
} served;

/* The source's accounts, walked two per call (a slice) like the daemon's:
 * an account that does not fit (XPB_METRICS_FULL) is added at the next call. */
static const struct {
    const char *name;
    unsigned queued, unacked;
} src_accounts[3] = {
    {"bot@example.com", 3, 1}, {"we\"ird\\na\nme@example.com", 0, 2}, {"late@example.com", 5, 0}};

static int snapshot_src(void *ud, xpb_metrics_snapshot *s, int first)
{
    served *sv = ud;
    sv->calls++;
    if (!pthread_equal(pthread_self(), sv->daemon_thread)) sv->wrong_thread++;
    if (first) {
        assert_int_equal(s->n_accounts, 0); /* emptied for each request */
        fake_figures(s);
        sv->next = 0;
    }
    for (int n = 0; n < 2 && sv->next < 3; n++, sv->next++) {
        int rc = xpb_metrics_snapshot_add_account(s, src_accounts[sv->next].name,
                                                  src_accounts[sv->next].queued,
                                                  src_accounts[sv->next].unacked);
        if (rc == XPB_METRICS_FULL) sv->full++;
        if (rc) return rc;
    }
    return sv->next < 3 ? XPB_METRICS_MORE : 0;
}

/* The client thread: one GET, the whole answer into sv->reply, then the
 * daemon's loop is told to stop. */
static void *client(void *arg)
{
    served *sv = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(sv->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    size_t got = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        char req[128];
        int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", sv->path);
        if (write(fd, req, (size_t)n) == n) {
            ssize_t r;
            while (got < sizeof sv->reply - 1 &&
                   (r = read(fd, sv->reply + got, sizeof sv->reply - 1 - got)) > 0)
                got += (size_t)r;
        }
    }
    sv->reply[got] = '\0';
    close(fd);
    if (sv->done) xpb_wake_signal(sv->done);
    return NULL;
}

static void on_done(void *ud)
{
    xpb_loop_stop(((served *)ud)->loop);
}

/* The figures are copied on the daemon's loop thread (the snapshot callback
 * runs there, once per request) and rendered and sent by the listener's own
 * thread; a daemon loop that does not answer gets a 503 naming the limit. */
static void test_listener_thread(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    served sv = {.daemon_thread = pthread_self(), .path = "/metrics"};
    xpb_loop_config lc = {0};
    assert_int_equal(xpb_loop_new(&sv.loop, &lc), 0);
    assert_int_equal(xpb_wake_new(sv.loop, on_done, &sv, &sv.done), 0);
    sv.port = xpb_test_free_port();
    char listen[64], err[256];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)sv.port);
    xpb_metrics_opts mo = {.listen = listen, .max_connections = 4, .idle_timeout_s = 10};
    xpb_metrics *m = NULL;
    assert_int_equal(xpb_metrics_new(&m, sv.loop, &mo, snapshot_src, &sv, err, sizeof err), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client, &sv), 0);
    assert_int_equal(xpb_loop_run(sv.loop), 0); /* until the client is done */
    pthread_join(t, NULL);
    assert_non_null(strstr(sv.reply, "HTTP/1.1 200"));
    assert_has(sv.reply, "xpb_queue_depth{account=\"bot@example.com\"} 3\n");
    assert_has(sv.reply, "xpb_unacked{account=\"we\\\"ird\\\\na\\nme@example.com\"} 2\n");
    assert_has(sv.reply, "xpb_queue_depth{account=\"late@example.com\"} 5\n");
    /* No room at first: the listener made it, then two slices. */
    assert_int_equal(sv.full, 1);
    assert_int_equal(sv.calls, 3);
    assert_int_equal(sv.wrong_thread, 0);

    /* The next scrape reuses the room: two slices, nothing full. */
    memset(sv.reply, 0, sizeof sv.reply);
    assert_int_equal(pthread_create(&t, NULL, client, &sv), 0);
    assert_int_equal(xpb_loop_run(sv.loop), 0);
    pthread_join(t, NULL);
    assert_non_null(strstr(sv.reply, "HTTP/1.1 200"));
    assert_has(sv.reply, "xpb_unacked{account=\"bot@example.com\"} 1\n");
    assert_has(sv.reply, "xpb_queue_depth{account=\"late@example.com\"} 5\n");
    assert_null(strstr(strstr(sv.reply, "late@example.com") + 1, "xpb_queue_depth{account=\"late"));
    assert_int_equal(sv.full, 1);
    assert_int_equal(sv.calls, 5);

    /* The daemon's loop is not running: no figures within the wait. */
    sv.path = "/healthz";
    xpb_wake *done = sv.done;
    sv.done = NULL;
    assert_int_equal(pthread_create(&t, NULL, client, &sv), 0);
    pthread_join(t, NULL);
    assert_non_null(strstr(sv.reply, "HTTP/1.1 503"));
    assert_non_null(strstr(sv.reply, "XPB_METRICS_SNAPSHOT_WAIT_MS"));
    assert_int_equal(sv.calls, 5);
    xpb_metrics_free(m);
    xpb_wake_free(done);
    xpb_loop_free(sv.loop);
}

/* Room made at start for the accounts the bridge has (expected_accounts):
 * the first scrape goes through without XPB_METRICS_FULL. */
static void test_listener_room_made_at_start(void **state)
{
    (void)state;
    served sv = {.daemon_thread = pthread_self(), .path = "/metrics"};
    xpb_loop_config lc = {0};
    assert_int_equal(xpb_loop_new(&sv.loop, &lc), 0);
    assert_int_equal(xpb_wake_new(sv.loop, on_done, &sv, &sv.done), 0);
    sv.port = xpb_test_free_port();
    char listen[64], err[256];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)sv.port);
    xpb_metrics_opts mo = {.listen = listen, .max_connections = 4, .idle_timeout_s = 10,
                           .expected_accounts = 3};
    xpb_metrics *m = NULL;
    assert_int_equal(xpb_metrics_new(&m, sv.loop, &mo, snapshot_src, &sv, err, sizeof err), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client, &sv), 0);
    assert_int_equal(xpb_loop_run(sv.loop), 0);
    pthread_join(t, NULL);
    assert_non_null(strstr(sv.reply, "HTTP/1.1 200"));
    assert_has(sv.reply, "xpb_queue_depth{account=\"late@example.com\"} 5\n");
    assert_int_equal(sv.full, 0);
    assert_int_equal(sv.calls, 2);
    xpb_metrics_free(m);
    xpb_wake_free(sv.done);
    xpb_loop_free(sv.loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_and_labels),
        cmocka_unit_test(test_every_metric_has_help_and_type),
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_snapshot_room),
        cmocka_unit_test(test_listen_rule),
        cmocka_unit_test(test_listener_thread),
        cmocka_unit_test(test_listener_room_made_at_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
