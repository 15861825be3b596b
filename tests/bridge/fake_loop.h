/* A fake loop for tests/bridge/test_daemon.c, linked in place of
 * bridge/io/loop.c and loop_events.c (a link seam). It implements only the
 * xpb_loop.h functions the daemon calls (xpb_loop_set_handlers, _base, _stop,
 * _add_session, _remove_session, _session_get, _session_name,
 * xpb_timer_new/start/stop/free, and xpb_wake_new/signal/free: a wake
 * signalled from any thread runs at the next fake_loop_fire). Each session is a real xpb_session state
 * machine on scripted fake I/O: what it sends is kept as text, the test
 * feeds the server's XML, and timers fire only when the test says so. */
#ifndef FAKE_LOOP_H
#define FAKE_LOOP_H

#include "xpb_loop.h"

xpb_loop *fake_loop_new(void);
void fake_loop_free(xpb_loop *l);
/* xpb_loop_stop was called. */
int fake_loop_stopped(const xpb_loop *l);
/* The session named name (an account's bare JID), or NULL. */
xpb_loop_session *fake_loop_session(xpb_loop *l, const char *name);
size_t fake_loop_n_sessions(const xpb_loop *l);

/* Everything the session sent since the last clear, as one string. */
const char *fake_sent(xpb_loop_session *ls);
void fake_clear_sent(xpb_loop_session *ls);
int fake_connects(xpb_loop_session *ls);
/* Server XML to the session (as the transport would deliver it). */
void fake_feed(xpb_loop_session *ls, const char *xml);
/* The session's own timer t as it last armed it (ms, 0 = not armed). */
unsigned fake_session_timer(xpb_loop_session *ls, xpb_session_timer t);

/* Fires every armed timer (xpb_timer) set to exactly ms, as armed before
 * the call; returns how many fired. fake_loop_idle fires the 0 ms ones
 * (work deferred to the loop, such as reaping) until none is left. */
int fake_loop_fire(xpb_loop *l, unsigned ms);
void fake_loop_idle(xpb_loop *l);
/* settle(ud) runs at the start of every fake_loop_fire: a test with a state
 * directory passes xpb_daemon_settle, so that what the store thread was
 * handed is written and completed before the timers fire (deterministic). */
void fake_loop_set_settle(xpb_loop *l, void (*settle)(void *ud), void *ud);
/* How many timers are armed for ms. */
int fake_loop_armed(const xpb_loop *l, unsigned ms);

#endif
