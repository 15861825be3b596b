/* Internal to bridge/io/: the connect gate. New connections (and with them
 * TLS handshakes) start at most `rate` per second, so 10,000 accounts coming
 * up at once, or reconnecting together after a server restart, neither
 * starve the loop of the handshakes already under way nor hammer the server.
 * A token bucket (pure, testable with any clock) and a FIFO of waiting
 * sessions released by a timer with a little jitter. Loop thread only. */
#ifndef XPB_CONNECT_GATE_H
#define XPB_CONNECT_GATE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

/* Tokens: `rate` per second, at most `burst` saved up. */
typedef struct xpb_tokens {
    uint64_t rate, burst; /* rate 0: no limit */
    uint64_t milli;       /* tokens x 1000 */
    uint64_t last_ns;
} xpb_tokens;

void xpb_tokens_init(xpb_tokens *t, unsigned rate, uint64_t now_ns);
/* Takes one token: 1, or 0 when none is there now. */
int xpb_tokens_take(xpb_tokens *t, uint64_t now_ns);
/* Nanoseconds until the next token (0: one is there). */
uint64_t xpb_tokens_wait_ns(xpb_tokens *t, uint64_t now_ns);

typedef struct xpb_gate_node {
    struct xpb_gate_node *next, *prev;
    int queued;  /* waits in the gate's queue */
    int holding; /* went through, and its negotiation is not over: one of max_inflight */
} xpb_gate_node;

typedef struct xpb_gate xpb_gate;
typedef void (*xpb_gate_go)(xpb_gate_node *n); /* n may start connecting now */

/* rate: new connections per second (0: no limit). max_inflight: nodes that
 * went through and have not left yet (their negotiation is under way; 0: no
 * limit): a server that falls behind is not handed more handshakes than it
 * can finish before their timeout. */
int xpb_gate_new(xpb_gate **out, struct event_base *base, unsigned rate, size_t max_inflight,
                 xpb_gate_go go);
void xpb_gate_free(xpb_gate *g); /* waiting nodes are forgotten, not called */
/* 1: go now (a token and an in-flight place were free and nobody waits
 * before n); 0: n waits, and go(n) is called later from the loop, in the
 * order nodes entered. Either way n then holds its place until it leaves. */
int xpb_gate_enter(xpb_gate *g, xpb_gate_node *n);
/* n no longer waits, or its negotiation is over (online, failed, removed):
 * its in-flight place is free. A no-op for a node that holds nothing. */
void xpb_gate_leave(xpb_gate *g, xpb_gate_node *n);
size_t xpb_gate_waiting(const xpb_gate *g);
size_t xpb_gate_inflight(const xpb_gate *g);

#endif
