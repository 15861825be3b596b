/* The connect gate (connect_gate.h): a token bucket and a FIFO of waiting
 * sessions, released from a libevent timer. */
#include "connect_gate.h"

#include <stdlib.h>
#include <time.h>

#include <event2/event.h>

#include "xpb_error.h"

/* Saved-up tokens: a tenth of a second's worth, so a quiet gate lets a
 * small group through at once and a big one at the rate, and a loop busy
 * with handshakes for a while catches up instead of losing its turns. */
#define GATE_BURST_DIV 10u
#define GATE_JITTER_US 500u /* ticks land up to this much later, spread */

void xpb_tokens_init(xpb_tokens *t, unsigned rate, uint64_t now_ns)
{
    t->rate = rate;
    t->burst = rate / GATE_BURST_DIV ? rate / GATE_BURST_DIV : 1;
    t->milli = t->burst * 1000u;
    t->last_ns = now_ns;
}

static void refill(xpb_tokens *t, uint64_t now_ns)
{
    if (now_ns <= t->last_ns) return;
    uint64_t dt = now_ns - t->last_ns;
    if (dt > 10000000000u) dt = 10000000000u; /* 10 s fills any bucket; no overflow */
    uint64_t add = dt * t->rate / 1000000u;   /* milli-tokens: ns x rate/s x 1000 / 1e9 */
    if (add == 0) return;                     /* keep last_ns: the fraction builds up */
    t->milli += add;
    /* Advance by the time those tokens took, so no fraction is lost. */
    t->last_ns += add * 1000000u / t->rate;
    if (t->milli > t->burst * 1000u || t->last_ns > now_ns) {
        if (t->milli > t->burst * 1000u) t->milli = t->burst * 1000u;
        t->last_ns = now_ns;
    }
}

int xpb_tokens_take(xpb_tokens *t, uint64_t now_ns)
{
    if (t->rate == 0) return 1;
    refill(t, now_ns);
    if (t->milli < 1000u) return 0;
    t->milli -= 1000u;
    return 1;
}

uint64_t xpb_tokens_wait_ns(xpb_tokens *t, uint64_t now_ns)
{
    if (t->rate == 0) return 0;
    refill(t, now_ns);
    if (t->milli >= 1000u) return 0;
    uint64_t need = 1000u - t->milli; /* milli-tokens */
    return (need * 1000000u + t->rate - 1) / t->rate;
}

struct xpb_gate {
    xpb_tokens tokens;
    struct event *tick;
    xpb_gate_go go;
    xpb_gate_node *head, *tail;
    size_t waiting;
    size_t inflight, max_inflight; /* max 0: no limit */
    uint32_t prng;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void unlink_node(xpb_gate *g, xpb_gate_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        g->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        g->tail = n->prev;
    n->next = n->prev = NULL;
    n->queued = 0;
    g->waiting--;
}

static int room(const xpb_gate *g)
{
    return !g->max_inflight || g->inflight < g->max_inflight;
}

static void hold(xpb_gate *g, xpb_gate_node *n)
{
    n->holding = 1;
    g->inflight++;
}

/* No tick while every in-flight place is taken: a leave re-arms it. */
static void arm(xpb_gate *g)
{
    if (!g->head || !room(g) || evtimer_pending(g->tick, NULL)) return;
    uint64_t wait = xpb_tokens_wait_ns(&g->tokens, now_ns());
    g->prng ^= g->prng << 13;
    g->prng ^= g->prng >> 17;
    g->prng ^= g->prng << 5;
    uint64_t us = wait / 1000u + g->prng % GATE_JITTER_US;
    struct timeval tv = {(time_t)(us / 1000000u), (suseconds_t)(us % 1000000u)};
    evtimer_add(g->tick, &tv);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    xpb_gate *g = arg;
    (void)fd, (void)what;
    uint64_t now = now_ns();
    while (g->head && room(g) && xpb_tokens_take(&g->tokens, now)) {
        xpb_gate_node *n = g->head;
        unlink_node(g, n);
        hold(g, n);
        g->go(n); /* may enter or leave other nodes */
    }
    arm(g);
}

int xpb_gate_new(xpb_gate **out, struct event_base *base, unsigned rate, size_t max_inflight,
                 xpb_gate_go go)
{
    xpb_gate *g = calloc(1, sizeof *g);
    if (!g) return XPB_ENOMEM;
    g->max_inflight = max_inflight;
    xpb_tokens_init(&g->tokens, rate, now_ns());
    g->go = go;
    g->prng = (uint32_t)(uintptr_t)g | 1u;
    g->tick = evtimer_new(base, on_tick, g);
    if (!g->tick) {
        free(g);
        return XPB_ENOMEM;
    }
    *out = g;
    return 0;
}

void xpb_gate_free(xpb_gate *g)
{
    if (!g) return;
    while (g->head)
        unlink_node(g, g->head);
    event_free(g->tick);
    free(g);
}

int xpb_gate_enter(xpb_gate *g, xpb_gate_node *n)
{
    if (n->queued) return 0;
    xpb_gate_leave(g, n); /* a new attempt: the last one's place is free */
    if (!g->head && room(g) && xpb_tokens_take(&g->tokens, now_ns())) {
        hold(g, n);
        return 1;
    }
    n->next = NULL;
    n->prev = g->tail;
    if (g->tail)
        g->tail->next = n;
    else
        g->head = n;
    g->tail = n;
    n->queued = 1;
    g->waiting++;
    arm(g);
    return 0;
}

void xpb_gate_leave(xpb_gate *g, xpb_gate_node *n)
{
    if (n->queued) unlink_node(g, n);
    if (n->holding) {
        n->holding = 0;
        g->inflight--;
        arm(g);
    }
}

size_t xpb_gate_inflight(const xpb_gate *g)
{
    return g->inflight;
}

size_t xpb_gate_waiting(const xpb_gate *g)
{
    return g->waiting;
}
