/* nng_close with a bound on how long it may take.
 *
 * NNG 1.5.2 (Debian 12's libnng1) can hang for good in nng_close: when the
 * socket closes while an IPC or TCP pipe's read has just completed, the
 * transport resubmits the read on the stopped aio, which then never
 * finishes, and NNG's single reaper thread waits on it forever (every later
 * close in the process waits behind it). A subscriber that closes while the
 * bridge publishes hits it: tests/bridge/test_nng_close.c shows it on most
 * closes under a flood, and an xpbctl send --wait hung in it once in a few
 * hundred runs. docs/bus.md, "Closing a socket", has the details.
 *
 * xpb_nng_close_bounded runs nng_close on a thread of its own and waits at
 * most ms milliseconds for it. Every caller closes a socket it will never
 * use again, and closes it on its way out (a command's end, the daemon's
 * stop): past the bound the socket is left to the process's exit, where the
 * kernel closes its connections. */
#ifndef XPB_NNG_CLOSE_H
#define XPB_NNG_CLOSE_H

#include <nng/nng.h>

#define XPB_NNG_CLOSE_STUCK 1 /* nng_close had not returned within the bound */

/* 0 when the socket closed within ms, XPB_NNG_CLOSE_STUCK when it had not
 * (it goes on closing, or hanging, on its own thread), or an NNG error when
 * the thread could not be started (the socket is then closed here, unbounded). */
int xpb_nng_close_bounded(nng_socket s, unsigned ms);

/* Closes that passed their bound in this process so far. */
unsigned long xpb_nng_close_stuck_count(void);

#endif
