/* The connect gate (bridge/io/connect_gate.c): the token bucket on a made-up
 * clock, and the gate's order, leave and release on a real event base. */
// clang-format off: cmocka.h needs these first
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <string.h>

#include <event2/event.h>

#include "connect_gate.h"

#define MS 1000000ull /* ns */

static void test_tokens_rate_and_burst(void **state)
{
    (void)state;
    xpb_tokens t;
    xpb_tokens_init(&t, 1000, 0); /* burst 1000/10 = 100 */
    int n = 0;
    while (xpb_tokens_take(&t, 0))
        n++;
    assert_int_equal(n, 100);
    assert_int_equal(xpb_tokens_wait_ns(&t, 0), 1 * MS); /* one per ms */
    assert_int_equal(xpb_tokens_take(&t, MS / 2), 0);
    assert_int_equal(xpb_tokens_take(&t, MS), 1);
    assert_int_equal(xpb_tokens_take(&t, MS), 0);
    /* 600 ms later: 600 tokens earned, but only the burst is kept */
    n = 0;
    while (xpb_tokens_take(&t, 601 * MS))
        n++;
    assert_int_equal(n, 100);
    /* over one simulated second in 0.1 ms steps: the rate, give or take the burst */
    n = 0;
    for (uint64_t now = 601 * MS; now <= 1601 * MS; now += MS / 10)
        while (xpb_tokens_take(&t, now))
            n++;
    assert_in_range(n, 1000, 1001);
}

static void test_tokens_low_rate_and_no_limit(void **state)
{
    (void)state;
    xpb_tokens t;
    xpb_tokens_init(&t, 3, 0); /* burst at least 1 */
    assert_int_equal(xpb_tokens_take(&t, 0), 1);
    assert_int_equal(xpb_tokens_take(&t, 0), 0);
    /* fractions add up over many small steps (no token lost to rounding) */
    int n = 0;
    for (uint64_t now = 0; now <= 1000 * MS; now += MS / 100)
        n += xpb_tokens_take(&t, now);
    assert_int_equal(n, 3);
    xpb_tokens_init(&t, 0, 0);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(xpb_tokens_take(&t, 0), 1);
    assert_int_equal(xpb_tokens_wait_ns(&t, 0), 0);
}

enum { NODES = 40 };
static xpb_gate_node nodes[NODES];
static int order[NODES], norder;
static struct event_base *base;

static void on_go(xpb_gate_node *n)
{
    order[norder++] = (int)(n - nodes);
    if (norder == NODES - 1) event_base_loopbreak(base); /* one left the queue */
}

/* 100/s: 10 go at once, the rest wait and come out in the order they
 * entered; one that left is never called. */
static void test_gate_order_and_leave(void **state)
{
    (void)state;
    base = event_base_new();
    assert_non_null(base);
    xpb_gate *g = NULL;
    assert_int_equal(xpb_gate_new(&g, base, 100, 0, on_go), 0);
    norder = 0;
    int now = 0;
    for (int i = 0; i < NODES; i++) {
        if (xpb_gate_enter(g, &nodes[i])) order[norder++] = i, now++;
    }
    assert_int_equal(now, 10);
    assert_int_equal(xpb_gate_waiting(g), NODES - 10);
    assert_int_equal(xpb_gate_enter(g, &nodes[25]), 0); /* already waiting: no-op */
    assert_int_equal(xpb_gate_waiting(g), NODES - 10);
    xpb_gate_leave(g, &nodes[30]);
    xpb_gate_leave(g, &nodes[3]); /* went through: no-op */
    assert_int_equal(xpb_gate_waiting(g), NODES - 11);
    event_base_dispatch(base);
    assert_int_equal(norder, NODES - 1);
    assert_int_equal(xpb_gate_waiting(g), 0);
    for (int i = 0, k = 0; i < NODES; i++) {
        if (i == 30) continue;
        assert_int_equal(order[k++], i);
    }
    xpb_gate_free(g);
    event_base_free(base);
}

static int gone[8], ngone;

static void on_go_count(xpb_gate_node *n)
{
    gone[ngone++] = (int)(n - nodes);
}

/* No rate limit, 3 in flight at most: 3 go at once, the others wait until a
 * holder leaves (online or failed); one that left while waiting never goes. */
static void test_gate_inflight_cap(void **state)
{
    (void)state;
    base = event_base_new();
    assert_non_null(base);
    xpb_gate *g = NULL;
    assert_int_equal(xpb_gate_new(&g, base, 0, 3, on_go_count), 0);
    memset(nodes, 0, sizeof nodes); /* the last test's gate is gone */
    ngone = 0;
    int now = 0;
    for (int i = 0; i < 6; i++) now += xpb_gate_enter(g, &nodes[i]);
    assert_int_equal(now, 3);
    assert_int_equal(xpb_gate_inflight(g), 3);
    assert_int_equal(xpb_gate_waiting(g), 3);
    /* full: the loop has nothing to do for the gate */
    assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 1);
    assert_int_equal(ngone, 0);
    xpb_gate_leave(g, &nodes[4]); /* gives up waiting */
    xpb_gate_leave(g, &nodes[1]); /* online: its place is free */
    assert_int_equal(xpb_gate_inflight(g), 2);
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(ngone, 1);
    assert_int_equal(gone[0], 3);
    assert_int_equal(xpb_gate_inflight(g), 3);
    xpb_gate_leave(g, &nodes[1]); /* leaving twice frees nothing more */
    assert_int_equal(xpb_gate_inflight(g), 3);
    xpb_gate_leave(g, &nodes[0]);
    event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(ngone, 2);
    assert_int_equal(gone[1], 5);
    assert_int_equal(xpb_gate_waiting(g), 0);
    /* a holder that connects again gives its place back first */
    assert_int_equal(xpb_gate_enter(g, &nodes[2]), 1);
    assert_int_equal(xpb_gate_inflight(g), 3);
    xpb_gate_free(g);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens_rate_and_burst),
        cmocka_unit_test(test_tokens_low_rate_and_no_limit),
        cmocka_unit_test(test_gate_order_and_leave),
        cmocka_unit_test(test_gate_inflight_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
