/* The loop's primitives (bridge/io/loop_events.c): timers fire once and in
 * order, stop disarms, a watch reports a readable fd, a wake-up signalled from
 * another thread runs its callback on the loop, signals are delivered. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "xpb_error.h"
#include "xpb_loop.h"

typedef struct rec {
    xpb_loop *l;
    char order[16];
    int n;
    int stop_after;
} rec;

static void note(rec *r, char c)
{
    if (r->n < (int)sizeof r->order - 1) r->order[r->n++] = c;
    if (r->n >= r->stop_after) xpb_loop_stop(r->l);
}

static void on_a(void *ud) { note(ud, 'a'); }
static void on_b(void *ud) { note(ud, 'b'); }
static void on_c(void *ud) { note(ud, 'c'); }

static xpb_loop *new_loop(void)
{
    xpb_loop_config cfg = {0};
    xpb_loop *l = NULL;
    assert_int_equal(xpb_loop_new(&l, &cfg), 0);
    return l;
}

static void test_timers_order_and_stop(void **state)
{
    (void)state;
    rec r = {.l = new_loop(), .stop_after = 2};
    xpb_timer *a, *b, *c;
    assert_int_equal(xpb_timer_new(r.l, on_a, &r, &a), 0);
    assert_int_equal(xpb_timer_new(r.l, on_b, &r, &b), 0);
    assert_int_equal(xpb_timer_new(r.l, on_c, &r, &c), 0);
    xpb_timer_start(b, 30);
    xpb_timer_start(a, 5);
    xpb_timer_start(c, 15);
    assert_true(xpb_timer_pending(c));
    xpb_timer_stop(c); /* never fires */
    assert_false(xpb_timer_pending(c));
    assert_int_equal(xpb_loop_run(r.l), 0);
    r.order[r.n] = '\0';
    assert_string_equal(r.order, "ab");
    assert_false(xpb_timer_pending(a));
    /* Re-arming a fired timer fires it again. */
    r.stop_after = 3;
    xpb_timer_start(a, 1);
    assert_int_equal(xpb_loop_run(r.l), 0);
    r.order[r.n] = '\0';
    assert_string_equal(r.order, "aba");
    xpb_timer_free(a);
    xpb_timer_free(b);
    xpb_timer_free(c);
    xpb_timer_free(NULL);
    xpb_loop_free(r.l);
}

static void on_readable(void *ud, int fd)
{
    char buf[8];
    assert_true(read(fd, buf, sizeof buf) > 0);
    note(ud, 'w');
}

static void test_watch(void **state)
{
    (void)state;
    rec r = {.l = new_loop(), .stop_after = 1};
    int p[2];
    assert_int_equal(pipe(p), 0);
    xpb_watch *w;
    assert_int_equal(xpb_watch_new(r.l, p[0], on_readable, &r, &w), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(xpb_loop_run(r.l), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.order[0], 'w');
    assert_int_equal(xpb_watch_new(r.l, -1, on_readable, &r, &w), XPB_EINVAL);
    xpb_watch_free(w);
    close(p[0]);
    close(p[1]);
    xpb_loop_free(r.l);
}

static void on_woken(void *ud) { note(ud, 'k'); }

static void *signal_many(void *arg)
{
    for (int i = 0; i < 1000; i++) xpb_wake_signal(arg);
    return NULL;
}

static void test_wake_from_threads(void **state)
{
    (void)state;
    rec r = {.l = new_loop(), .stop_after = 1};
    xpb_wake *w;
    assert_int_equal(xpb_wake_new(r.l, on_woken, &r, &w), 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, signal_many, w), 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    /* 4000 signals before the loop ran: they coalesce into one callback. */
    assert_int_equal(xpb_loop_run(r.l), 0);
    assert_int_equal(r.n, 1);
    /* And a later signal wakes it again. */
    r.stop_after = 2;
    xpb_wake_signal(w);
    assert_int_equal(xpb_loop_run(r.l), 0);
    assert_int_equal(r.n, 2);
    xpb_wake_free(w);
    xpb_loop_free(r.l);
}

/* ---- mailboxes -------------------------------------------------------------- */

typedef struct mbox_rec {
    xpb_loop *l;
    pthread_t loop_thread;
    int seen[4][1000]; /* per producer, the order its items ran in */
    int n_seen[4];
    int total, stop_at, wrong_thread, dropped;
    xpb_mailbox *m;
} mbox_rec;

typedef struct mbox_item {
    mbox_rec *r;
    int producer, seq;
} mbox_item;

static void mbox_run(void *arg)
{
    mbox_item *it = arg;
    mbox_rec *r = it->r;
    if (!pthread_equal(pthread_self(), r->loop_thread)) r->wrong_thread++;
    r->seen[it->producer][r->n_seen[it->producer]++] = it->seq;
    free(it);
    if (++r->total == r->stop_at) xpb_loop_stop(r->l);
}

static void mbox_drop(void *arg)
{
    mbox_item *it = arg;
    it->r->dropped++;
    free(it);
}

typedef struct producer {
    mbox_rec *r;
    int id;
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    for (int i = 0; i < 1000; i++) {
        mbox_item *it = malloc(sizeof *it);
        *it = (mbox_item){p->r, p->id, i};
        if (xpb_mailbox_post(p->r->m, mbox_run, mbox_drop, it) != 0) free(it);
    }
    return NULL;
}

/* Four threads post 1,000 items each: every item runs once, on the loop's
 * thread, and each thread's items in the order it posted them. */
static void test_mailbox_from_threads(void **state)
{
    (void)state;
    static mbox_rec r;
    memset(&r, 0, sizeof r);
    r.l = new_loop();
    r.loop_thread = pthread_self();
    r.stop_at = 4000;
    assert_int_equal(xpb_mailbox_new(r.l, &r.m), 0);
    producer p[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        p[i] = (producer){&r, i};
        assert_int_equal(pthread_create(&t[i], NULL, produce, &p[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(xpb_mailbox_queued(r.m), 4000);
    assert_int_equal(xpb_loop_run(r.l), 0);
    assert_int_equal(r.total, 4000);
    assert_int_equal(r.wrong_thread, 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r.n_seen[i], 1000);
        for (int k = 0; k < 1000; k++)
            assert_int_equal(r.seen[i][k], k);
    }
    assert_int_equal(xpb_mailbox_queued(r.m), 0);
    xpb_mailbox_free(r.m);
    xpb_loop_free(r.l);
}

static void post_again(void *arg)
{
    mbox_rec *r = arg;
    r->total++;
    if (r->total < 3) {
        assert_int_equal(xpb_mailbox_post(r->m, post_again, NULL, r), 0);
        /* what a run posts waits for the next round */
        assert_int_equal(xpb_mailbox_queued(r->m), 1);
    } else {
        xpb_loop_stop(r->l);
    }
}

/* A run may post again (a later round runs it); a mailbox freed with items
 * pending drops each; NULL arguments are refused. */
static void test_mailbox_repost_and_free(void **state)
{
    (void)state;
    static mbox_rec r;
    memset(&r, 0, sizeof r);
    r.l = new_loop();
    assert_int_equal(xpb_mailbox_new(r.l, &r.m), 0);
    assert_int_equal(xpb_mailbox_post(r.m, post_again, NULL, &r), 0);
    assert_int_equal(xpb_loop_run(r.l), 0);
    assert_int_equal(r.total, 3);
    for (int i = 0; i < 5; i++) {
        mbox_item *it = malloc(sizeof *it);
        *it = (mbox_item){&r, 0, i};
        assert_int_equal(xpb_mailbox_post(r.m, mbox_run, mbox_drop, it), 0);
    }
    xpb_mailbox_free(r.m); /* not run: dropped, and freed by drop (ASan: no leak) */
    assert_int_equal(r.dropped, 5);
    assert_int_equal(r.n_seen[0], 0);
    assert_int_equal(xpb_mailbox_new(NULL, &r.m), XPB_EINVAL);
    assert_int_equal(xpb_mailbox_post(NULL, mbox_run, NULL, NULL), XPB_EINVAL);
    xpb_mailbox_free(NULL);
    xpb_loop_free(r.l);
}

typedef struct lt_rec {
    pthread_t main;
    int on_main, runs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} lt_rec;

static void lt_run(void *arg)
{
    lt_rec *r = arg;
    pthread_mutex_lock(&r->mu);
    r->on_main += pthread_equal(pthread_self(), r->main);
    r->runs++;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* A loop on its own thread runs what is posted to it there, not on the
 * poster's thread; stop runs what was posted before it, then joins. */
static void test_loop_thread(void **state)
{
    (void)state;
    static lt_rec r;
    memset(&r, 0, sizeof r);
    r.main = pthread_self();
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    xpb_loop *l = new_loop();
    xpb_loop_thread *t;
    assert_int_equal(xpb_loop_thread_start(l, &t), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(xpb_mailbox_post(xpb_loop_thread_mailbox(t), lt_run, NULL, &r), 0);
    pthread_mutex_lock(&r.mu);
    while (r.runs < 50)
        pthread_cond_wait(&r.cv, &r.mu); /* runs while we wait */
    pthread_mutex_unlock(&r.mu);
    assert_int_equal(xpb_loop_thread_stop(t), 0);
    assert_int_equal(r.runs, 100);
    assert_int_equal(r.on_main, 0);
    assert_int_equal(xpb_loop_thread_start(NULL, &t), XPB_EINVAL);
    assert_int_equal(xpb_loop_thread_stop(NULL), 0);
    xpb_loop_free(l);
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
}

static void on_sig(void *ud, int signo)
{
    assert_int_equal(signo, SIGUSR1);
    note(ud, 's');
}

static void test_signal(void **state)
{
    (void)state;
    rec r = {.l = new_loop(), .stop_after = 1};
    xpb_signal *s;
    assert_int_equal(xpb_signal_new(r.l, SIGUSR1, on_sig, &r, &s), 0);
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(xpb_loop_run(r.l), 0);
    assert_int_equal(r.n, 1);
    xpb_signal_free(s);
    xpb_loop_free(r.l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_order_and_stop),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_wake_from_threads),
        cmocka_unit_test(test_mailbox_from_threads),
        cmocka_unit_test(test_mailbox_repost_and_free),
        cmocka_unit_test(test_loop_thread),
        cmocka_unit_test(test_signal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
