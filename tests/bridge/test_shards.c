/* Tests for bridge/io/shards.c (limits.loops): sessions
 * on two worker loops, driven from the test's loop. Their server refuses
 * every connection (a closed port on 127.0.0.1), so each session goes
 * connecting -> backoff -> connecting ...: the events must reach the owner's
 * thread, in order per session, with the state mirrored; a session that
 * cannot be made says why; remove stops its events; free with sessions and
 * events under way leaks nothing (ASan). */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shards_internal.h" /* a turn run on the worker's thread (test_handoff) */
#include "test_util.h"
#include "xpb/v1/stanza.pb-c.h"
#include "xpb_error.h"
#include "xpb_shards.h"
#include "xpb_stanza.h"

#define N_SESS 6

typedef struct rec {
    xpb_loop *owner;
    xpb_shards *sh;
    pthread_t owner_thread;
    int off_thread;
    int states[N_SESS][64];
    int n_states[N_SESS];
    int stopped_reason_ok;
    int want_backoffs, backoffs;
    int each_backoffs[N_SESS]; /* per session */
    int want_each;             /* stop only once each working session backed off this often */
    xpb_timer *deadline;
} rec;

/* Every session but the last (which cannot be made) backed off want_each times. */
static int each_backed_off(const rec *r)
{
    for (int i = 0; i < N_SESS - 1; i++)
        if (r->each_backoffs[i] < r->want_each) return 0;
    return 1;
}

static rec g;

static int index_of(xpb_shard_session *ss)
{
    return (int)(intptr_t)xpb_shard_ud(ss);
}

static void on_event(void *ud, xpb_shard_session *ss, const xpb_session_event *ev)
{
    rec *r = ud;
    if (!pthread_equal(pthread_self(), r->owner_thread)) r->off_thread++;
    if (ev->kind != XPB_SE_STATE) return;
    int i = index_of(ss);
    assert_int_equal(xpb_shard_state(ss), ev->state); /* mirrored before the call */
    if (r->n_states[i] < 64) r->states[i][r->n_states[i]++] = ev->state;
    if (ev->state == XPB_SS_STOPPED && ev->reason && strstr(ev->reason, "not created on worker"))
        r->stopped_reason_ok++;
    if (ev->state != XPB_SS_BACKOFF) return;
    r->each_backoffs[i]++;
    /* Counted per session as well: on a loaded machine (CI, ASan) one
     * session's worker may be late, and the total alone was reached before
     * it had backed off once. */
    if (++r->backoffs >= r->want_backoffs && each_backed_off(r)) xpb_loop_stop(r->owner);
}

static void on_deadline(void *ud)
{
    xpb_loop_stop(((rec *)ud)->owner);
}

static void on_deadline_send(void *ud)
{
    xpb_loop_stop(ud);
}

static void session_cfg(xpb_session_config *c, uint16_t port)
{
    xpb_session_config_init(c);
    c->jid = "u@localhost";
    c->password = (const unsigned char *)"pw";
    c->password_len = 2;
    c->host = "127.0.0.1";
    c->port = port;
    c->backoff_min_ms = 20;
    c->backoff_max_ms = 40;
}

static void test_events_reach_the_owner(void **state)
{
    (void)state;
    memset(&g, 0, sizeof g);
    g.owner_thread = pthread_self();
    xpb_loop_config oc = {0};
    assert_int_equal(xpb_loop_new(&g.owner, &oc), 0);
    xpb_shards_config cfg = {.workers = 2, .owner = g.owner, .on_event = on_event, .ud = &g};
    char err[256] = "";
    assert_int_equal(xpb_shards_new(&g.sh, &cfg, err, sizeof err), 0);
    assert_int_equal(xpb_shards_workers(g.sh), 2);
    xpb_session_config sc;
    session_cfg(&sc, xpb_test_free_port());
    xpb_shard_session *ss[N_SESS];
    unsigned on_worker[2] = {0, 0};
    for (int i = 0; i < N_SESS - 1; i++) {
        char name[32];
        snprintf(name, sizeof name, "acct%d", i);
        assert_int_equal(xpb_shards_add(g.sh, name, &sc, NULL, &ss[i]), 0);
        xpb_shard_set_ud(ss[i], (void *)(intptr_t)i);
        on_worker[xpb_shard_worker(ss[i])]++;
    }
    assert_true(on_worker[0] > 0 && on_worker[1] > 0); /* spread by name */
    /* A CA file that cannot be read: the worker cannot make the session. */
    assert_int_equal(xpb_shards_add(g.sh, "bad", &sc, "/nonexistent/ca.pem", &ss[N_SESS - 1]), 0);
    xpb_shard_set_ud(ss[N_SESS - 1], (void *)(intptr_t)(N_SESS - 1));
    g.want_backoffs = 3 * (N_SESS - 1);
    g.want_each = 1;
    assert_int_equal(xpb_timer_new(g.owner, on_deadline, &g, &g.deadline), 0);
    xpb_timer_start(g.deadline, 10000);
    assert_int_equal(xpb_loop_run(g.owner), 0);
    assert_true(g.backoffs >= g.want_backoffs);
    assert_int_equal(g.off_thread, 0);
    assert_int_equal(g.stopped_reason_ok, 1);
    for (int i = 0; i < N_SESS - 1; i++) {
        /* connecting first, then connecting and backoff in turn */
        assert_true(g.n_states[i] >= 2);
        assert_int_equal(g.states[i][0], XPB_SS_CONNECTING);
        for (int k = 1; k < g.n_states[i]; k++)
            assert_int_equal(g.states[i][k],
                             g.states[i][k - 1] == XPB_SS_CONNECTING ? XPB_SS_BACKOFF
                                                                     : XPB_SS_CONNECTING);
    }
    assert_int_equal(xpb_shard_state(ss[N_SESS - 1]), XPB_SS_STOPPED);

    /* Removed: none of its events after this. Closed: it stops. */
    int before = g.n_states[0];
    xpb_shards_remove(ss[0]);
    xpb_shard_close(ss[1]);
    g.want_backoffs = g.backoffs + 2 * (N_SESS - 3);
    g.want_each = 0; /* ss[0] removed and ss[1] closed: no more of theirs */
    xpb_timer_start(g.deadline, 10000);
    assert_int_equal(xpb_loop_run(g.owner), 0);
    assert_int_equal(g.n_states[0], before);
    assert_int_equal(xpb_shard_state(ss[1]), XPB_SS_STOPPED);
    /* Freed with sessions reconnecting and events on their way. */
    xpb_timer_free(g.deadline);
    xpb_shards_free(g.sh);
    xpb_loop_free(g.owner);
}

typedef struct send_rec {
    xpb_loop *owner;
    int failed;
    uint64_t failed_handle[8];
    int backoffs;
} send_rec;

static void on_send_event(void *ud, xpb_shard_session *ss, const xpb_session_event *ev)
{
    (void)ss;
    send_rec *r = ud;
    if (ev->kind == XPB_SE_FAILED && ev->reason && strstr(ev->reason, "not queued by the session"))
        r->failed_handle[r->failed++ % 8] = ev->handle;
    if (ev->kind == XPB_SE_STATE && ev->state == XPB_SS_BACKOFF && ++r->backoffs >= 2)
        xpb_loop_stop(r->owner);
}

/* An owner loop and two worker loops whose events go to r. */
static xpb_shards *send_setup(send_rec *r)
{
    memset(r, 0, sizeof *r);
    xpb_loop_config oc = {0};
    assert_int_equal(xpb_loop_new(&r->owner, &oc), 0);
    xpb_shards_config cfg = {.workers = 2, .owner = r->owner, .on_event = on_send_event, .ud = r};
    xpb_shards *sh;
    char err[256] = "";
    assert_int_equal(xpb_shards_new(&sh, &cfg, err, sizeof err), 0);
    return sh;
}

/* Sends answer at once with a handle and an id; past queue_max a send is
 * refused, at once or (when the worker's queue filled before the owner heard
 * of it) as a FAILED event for its handle: five sends to a session that
 * queues three, two refused either way. A bad record is refused at once. */
static void test_send_through_a_worker(void **state)
{
    (void)state;
    static send_rec r;
    xpb_shards *sh = send_setup(&r);
    xpb_session_config sc;
    session_cfg(&sc, xpb_test_free_port());
    sc.queue_max = 3;
    xpb_shard_session *ss;
    assert_int_equal(xpb_shards_add(sh, "sender", &sc, NULL, &ss), 0);
    xpb_test_msg m;
    xpb_test_msg_init(&m, "friend@example.com", "hello");
    xpb_stanza st = m.st;
    int accepted = 0, refused_now = 0;
    uint64_t last = 0;
    for (int i = 0; i < 5; i++) {
        uint64_t h = 0;
        char id[64] = "";
        size_t bytes = 0;
        int rc = xpb_shard_send(ss, &st, 0, &h, id, sizeof id, &bytes);
        if (rc == XPB_EQUEUEFULL) {
            refused_now++;
            continue;
        }
        assert_int_equal(rc, 0);
        assert_true(h > last);
        last = h;
        assert_int_equal(strncmp(id, "xpb-", 4), 0);
        assert_true(bytes > strlen("<message"));
        accepted++;
    }
    st.to = "not a jid@@";
    uint64_t h;
    char id[64];
    assert_true(xpb_shard_send(ss, &st, 0, &h, id, sizeof id, NULL) != 0);
    xpb_timer *dl;
    assert_int_equal(xpb_timer_new(r.owner, on_deadline_send, r.owner, &dl), 0);
    xpb_timer_start(dl, 10000);
    assert_int_equal(xpb_loop_run(r.owner), 0);
    assert_int_equal(refused_now + r.failed, 2);
    assert_int_equal(accepted - r.failed, 3);
    xpb_session_stats stats;
    xpb_shard_stats(ss, &stats);
    assert_int_equal(stats.queued, 3);
    /* Closed, as the last event says: refused at once. */
    xpb_shard_close(ss);
    r.backoffs = -1000000; /* stop on the deadline or STOPPED below */
    while (xpb_shard_state(ss) != XPB_SS_STOPPED) {
        xpb_timer_start(dl, 50);
        assert_int_equal(xpb_loop_run(r.owner), 0);
    }
    st.to = "friend@example.com";
    assert_int_equal(xpb_shard_send(ss, &st, 0, &h, id, sizeof id, NULL), XPB_ENOTCONN);
    xpb_shards_remove(ss); /* ss is not used after this */
    xpb_timer_free(dl);
    xpb_shards_free(sh);
    xpb_loop_free(r.owner);
}

/* Sends go to a worker in batches (posted after the owner's turn, or at
 * every 64th): 150 sends to each of two sessions on different workers,
 * interleaved, all accepted in one turn, all queued by the sessions (their
 * offline queues), none failed. Sends accepted and never posted are dropped
 * by free (ASan: nothing leaks, every reference let go). */
static void test_sends_batched(void **state)
{
    (void)state;
    static send_rec r;
    xpb_shards *sh = send_setup(&r);
    xpb_session_config sc;
    session_cfg(&sc, xpb_test_free_port());
    sc.queue_max = 200;
    xpb_shard_session *ss[2];
    const char *names[2] = {"acct0",
                            "acct1"}; /* one on each worker (test_events_reach_the_owner) */
    for (int i = 0; i < 2; i++)
        assert_int_equal(xpb_shards_add(sh, names[i], &sc, NULL, &ss[i]), 0);
    assert_true(xpb_shard_worker(ss[0]) != xpb_shard_worker(ss[1]));
    xpb_test_msg m;
    xpb_test_msg_init(&m, "friend@example.com", "hello");
    xpb_stanza st = m.st;
    uint64_t last[2] = {0, 0};
    for (int n = 0; n < 150; n++) {
        for (int i = 0; i < 2; i++) {
            uint64_t h = 0;
            assert_int_equal(xpb_shard_send(ss[i], &st, 0, &h, NULL, 0, NULL), 0);
            assert_int_equal(h, last[i] + 1);
            last[i] = h;
        }
    }
    xpb_timer *dl;
    assert_int_equal(xpb_timer_new(r.owner, on_deadline_send, r.owner, &dl), 0);
    r.backoffs = -1000000; /* run in slices until both queued all, for up to 10 s */
    unsigned queued[2] = {0, 0};
    for (int slice = 0; slice < 200 && (queued[0] < 150 || queued[1] < 150); slice++) {
        xpb_timer_start(dl, 50);
        assert_int_equal(xpb_loop_run(r.owner), 0);
        for (int i = 0; i < 2; i++) {
            xpb_session_stats stats;
            xpb_shard_stats(ss[i], &stats);
            queued[i] = stats.queued;
        }
    }
    assert_int_equal(r.failed, 0);
    assert_int_equal(queued[0], 150);
    assert_int_equal(queued[1], 150);
    /* Accepted, never posted: free drops them. */
    for (int n = 0; n < 10; n++) {
        uint64_t h;
        assert_int_equal(xpb_shard_send(ss[n % 2], &st, 0, &h, NULL, 0, NULL), 0);
    }
    xpb_timer_free(dl);
    xpb_shards_free(sh);
    xpb_loop_free(r.owner);
}

/* Backpressure, not loss: the owner runs nothing while a worker makes more
 * than XPB_SHARDS_MAX_IN_FLIGHT batches of events (20,000 sends to a
 * session the worker could not make, each a FAILED event): the worker waits
 * for room, and once the owner runs, every event arrives. */
static void test_worker_waits_for_the_owner(void **state)
{
    (void)state;
    static send_rec r;
    xpb_shards *sh = send_setup(&r);
    xpb_session_config sc;
    session_cfg(&sc, xpb_test_free_port());
    sc.queue_max = 100000;
    xpb_shard_session *ss;
    /* A CA file that cannot be read: no session on the worker, every send fails there. */
    assert_int_equal(xpb_shards_add(sh, "nobody", &sc, "/nonexistent/ca.pem", &ss), 0);
    xpb_test_msg m;
    xpb_test_msg_init(&m, "friend@example.com", "hello");
    /* Whole posts of 64 sends: each goes to the worker at its 64th send,
     * so the owner's loop need not run (a turn of it, which posted a rest,
     * ran some of the worker's batches, and then sometimes too few were
     * left to fill XPB_SHARDS_MAX_IN_FLIGHT). */
    enum { N = 64 * (XPB_SHARDS_MAX_IN_FLIGHT + 64) };
    for (int i = 0; i < N; i++) {
        uint64_t h;
        assert_int_equal(xpb_shard_send(ss, &m.st, 0, &h, NULL, 0, NULL), 0);
    }
    xpb_timer *dl;
    assert_int_equal(xpb_timer_new(r.owner, on_deadline_send, r.owner, &dl), 0);
    for (int i = 0; i < 500 && xpb_shards_waits(sh) == 0; i++) {
        struct timespec ms = {0, 10000000};
        nanosleep(&ms, NULL); /* the owner runs nothing meanwhile */
    }
    assert_true(xpb_shards_waits(sh) >= 1);
    r.backoffs = -1000000;
    for (int slice = 0; slice < 400 && r.failed < N; slice++) {
        xpb_timer_start(dl, 50);
        assert_int_equal(xpb_loop_run(r.owner), 0);
    }
    assert_int_equal(r.failed, N); /* every one, none dropped */
    xpb_shards_remove(ss);
    xpb_timer_free(dl);
    xpb_shards_free(sh);
    xpb_loop_free(r.owner);
}

/* The hand-off rule (shards.c, "events, worker -> owner"), in one worker
 * turn: event 1 opens a batch while the owner has run every batch the worker
 * posted, so it goes at once; event 2 is added before the owner has run it,
 * so it waits in a new batch; the owner then runs event 1, and event 3 joins
 * event 2's batch, which stays with the worker until the turn ends (a busy
 * owner gets whole batches). Posting that batch at event 3 (tried: it halved
 * the events per bus message under load) fails here. */
typedef struct turn_rec {
    xpb_loop *owner;
    xpb_shards *sh;
    xpb_shard_session *ss;
    atomic_int seen;      /* the turn's events the owner ran */
    atomic_int two_added; /* the worker added event 2: the owner may run */
    int owner_was_idle;   /* no batch of the worker in flight when the turn began */
    int ran_1;            /* the owner ran event 1 during the turn */
    int ran_3;            /* the owner ran event 3 during the turn */
    atomic_int turn_over; /* the fields above are final */
    int stop_at;          /* the owner's loop stops when it has run this many (0: 3) */
    int held;             /* test_flood_turn_holds: the owner had not run the lone event */
} turn_rec;

static void on_turn_event(void *ud, xpb_shard_session *ss, const xpb_session_event *ev)
{
    (void)ss;
    turn_rec *t = ud;
    if (ev->kind == XPB_SE_SENT &&
        atomic_fetch_add(&t->seen, 1) + 1 == (t->stop_at ? t->stop_at : 3))
        xpb_loop_stop(t->owner);
}

/* Waits up to ms for *v to reach n (another thread raises it). */
static int wait_for(atomic_int *v, int n, int ms)
{
    for (int i = 0; i < ms && atomic_load(v) < n; i++) {
        struct timespec one = {0, 1000000};
        nanosleep(&one, NULL);
    }
    return atomic_load(v) >= n;
}

static void turn_event(turn_rec *t, struct worker *w, uint64_t handle)
{
    xpb_session_event ev = {.kind = XPB_SE_SENT, .handle = handle};
    shards_worker_event(w, t->ss, &ev, NULL);
}

/* Waits up to 5 s until the owner has run every batch w posted (it counts a
 * batch done after running its events). */
static void wait_owner_done(struct worker *w)
{
    for (int i = 0; i < 5000 && atomic_load(&w->in_flight) != 0; i++) {
        struct timespec one = {0, 1000000};
        nanosleep(&one, NULL);
    }
}

/* On the worker's thread, as one turn of its loop. */
static void worker_turn(void *arg)
{
    turn_rec *t = arg;
    struct worker *w = &t->sh->w[xpb_shard_worker(t->ss)];
    t->owner_was_idle = atomic_load(&w->in_flight) == 0;
    turn_event(t, w, 1);
    turn_event(t, w, 2); /* the owner's loop is not running yet */
    atomic_store(&t->two_added, 1);
    t->ran_1 = wait_for(&t->seen, 1, 5000);
    wait_owner_done(w);
    turn_event(t, w, 3);
    /* An idle owner runs a post in microseconds; a held batch is not posted
     * before the turn ends, however long it waits. */
    t->ran_3 = wait_for(&t->seen, 3, 500);
    atomic_store(&t->turn_over, 1);
}

static void on_turn_deadline(void *ud)
{
    xpb_loop_stop(ud);
}

/* t's owner loop and shards with one account on a worker, its session
 * stopped: a CA file that cannot be read leaves no session on the worker, so
 * no event of its own after the one that says so. Returns the owner's
 * deadline timer. */
static xpb_timer *turn_start(turn_rec *t, unsigned workers, const char *name)
{
    memset(t, 0, sizeof *t);
    xpb_loop_config oc = {0};
    assert_int_equal(xpb_loop_new(&t->owner, &oc), 0);
    xpb_shards_config cfg = {
        .workers = workers, .owner = t->owner, .on_event = on_turn_event, .ud = t};
    char err[256] = "";
    assert_int_equal(xpb_shards_new(&t->sh, &cfg, err, sizeof err), 0);
    xpb_session_config sc;
    session_cfg(&sc, xpb_test_free_port());
    assert_int_equal(xpb_shards_add(t->sh, name, &sc, "/nonexistent/ca.pem", &t->ss), 0);
    xpb_timer *dl;
    assert_int_equal(xpb_timer_new(t->owner, on_turn_deadline, t->owner, &dl), 0);
    for (int i = 0; i < 100 && xpb_shard_state(t->ss) != XPB_SS_STOPPED; i++) {
        xpb_timer_start(dl, 50);
        assert_int_equal(xpb_loop_run(t->owner), 0);
    }
    assert_int_equal(xpb_shard_state(t->ss), XPB_SS_STOPPED);
    return dl;
}

static void turn_end(turn_rec *t, xpb_timer *dl)
{
    xpb_shards_remove(t->ss);
    xpb_timer_free(dl);
    xpb_shards_free(t->sh);
    xpb_loop_free(t->owner);
}

static void test_handoff(void **state)
{
    (void)state;
    static turn_rec t;
    xpb_timer *dl = turn_start(&t, 2, "turn");
    assert_int_equal(shards_post_cmd(t.ss, worker_turn, NULL, &t), 0);
    assert_true(wait_for(&t.two_added, 1, 5000));
    xpb_timer_start(dl, 10000);
    assert_int_equal(xpb_loop_run(t.owner), 0);
    assert_int_equal(atomic_load(&t.seen), 3); /* every one, in the end */
    assert_true(wait_for(&t.turn_over, 1, 5000));
    assert_true(t.owner_was_idle);
    assert_true(t.ran_1);
    assert_false(t.ran_3); /* held to the end of the turn */
    turn_end(&t, dl);
}

/* The lone post is for a trickle (shards.c, ALONE_TURN_MAX): after a turn of
 * more events than that, the next turn's first event waits for its batch
 * even though the owner is idle; after a short turn it goes at once again.
 * Without the rule the held event runs within microseconds and this fails. */
#define LONG_TURN 12 /* > ALONE_TURN_MAX */

static void worker_long_turn(void *arg)
{
    turn_rec *t = arg;
    struct worker *w = &t->sh->w[xpb_shard_worker(t->ss)];
    for (int i = 1; i <= LONG_TURN; i++)
        turn_event(t, w, (uint64_t)i);
}

static void worker_turn_after_long(void *arg)
{
    turn_rec *t = arg;
    struct worker *w = &t->sh->w[xpb_shard_worker(t->ss)];
    wait_owner_done(w);
    t->owner_was_idle = atomic_load(&w->in_flight) == 0;
    turn_event(t, w, LONG_TURN + 1);
    t->held = !wait_for(&t->seen, LONG_TURN + 1, 500);
}

static void worker_turn_after_short(void *arg)
{
    turn_rec *t = arg;
    struct worker *w = &t->sh->w[xpb_shard_worker(t->ss)];
    wait_owner_done(w);
    turn_event(t, w, LONG_TURN + 2);
    t->ran_1 = wait_for(&t->seen, LONG_TURN + 2, 5000);
    atomic_store(&t->turn_over, 1);
}

/* Runs the owner's loop until it has run n events (10 s at most). */
static void owner_until(turn_rec *t, xpb_timer *dl, int n)
{
    t->stop_at = n;
    for (int i = 0; i < 100 && atomic_load(&t->seen) < n; i++) {
        xpb_timer_start(dl, 100);
        assert_int_equal(xpb_loop_run(t->owner), 0);
    }
    assert_int_equal(atomic_load(&t->seen), n);
}

static void test_flood_turn_holds(void **state)
{
    (void)state;
    static turn_rec t;
    xpb_timer *dl = turn_start(&t, 1, "flood");
    assert_int_equal(shards_post_cmd(t.ss, worker_long_turn, NULL, &t), 0);
    owner_until(&t, dl, LONG_TURN);
    assert_int_equal(shards_post_cmd(t.ss, worker_turn_after_long, NULL, &t), 0);
    owner_until(&t, dl, LONG_TURN + 1);
    assert_true(t.owner_was_idle);
    assert_true(t.held); /* the owner idle for 500 ms, the event still with the worker */
    assert_int_equal(shards_post_cmd(t.ss, worker_turn_after_short, NULL, &t), 0);
    owner_until(&t, dl, LONG_TURN + 2);
    assert_true(wait_for(&t.turn_over, 1, 5000));
    assert_true(t.ran_1); /* a trickle again: the lone event went at once */
    turn_end(&t, dl);
}

static void test_bad_config(void **state)
{
    (void)state;
    xpb_loop *owner;
    xpb_loop_config oc = {0};
    assert_int_equal(xpb_loop_new(&owner, &oc), 0);
    xpb_shards *sh = NULL;
    char err[256] = "";
    xpb_shards_config cfg = {.workers = 0, .owner = owner};
    assert_int_equal(xpb_shards_new(&sh, &cfg, err, sizeof err), XPB_EINVAL);
    assert_non_null(strstr(err, "loops must be 1 .."));
    cfg.workers = XPB_SHARDS_MAX_WORKERS + 1;
    assert_int_equal(xpb_shards_new(&sh, &cfg, err, sizeof err), XPB_EINVAL);
    xpb_loop_free(owner);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_reach_the_owner),
        cmocka_unit_test(test_send_through_a_worker),
        cmocka_unit_test(test_sends_batched),
        cmocka_unit_test(test_worker_waits_for_the_owner),
        cmocka_unit_test(test_handoff),
        cmocka_unit_test(test_flood_turn_holds),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
