/* The NATS client on the loop: libnats' libevent adapter attaches a
 * connection's socket to the loop's event_base, so socket reads and writes
 * of that connection run on the loop thread. The only place where libevent
 * and libnats meet; bridge/bus/bus_nats*.c call it (docs/architecture.md,
 * "NATS on the loop"). */
#ifndef XPB_LOOP_NATS_H
#define XPB_LOOP_NATS_H

#include "xpb_loop.h"

typedef struct __natsOptions natsOptions; /* nats.h */

/* Sets opts' event loop to l (natsOptions_SetEventLoop with the adapter's
 * callbacks). The loop must have been made with xpb_loop_config.thread_safe:
 * libnats re-attaches from its reconnect thread. 0, or XPB_EINVAL (a loop
 * without locking) / XPB_ENOMEM. */
int xpb_loop_nats_attach(xpb_loop *l, natsOptions *opts);

#endif
