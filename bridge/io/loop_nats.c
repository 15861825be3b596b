/* libnats' libevent adapter over the loop's event_base (xpb_loop_nats.h).
 * The adapter is a header of non-static functions: it is included here, in
 * one translation unit, so that libevent stays inside bridge/io and the bus
 * never sees an event_base. */
#include "xpb_loop_nats.h"

#include <nats/adapters/libevent.h>
#include <nats/nats.h>

#include "xpb_error.h"

int xpb_loop_nats_attach(xpb_loop *l, natsOptions *opts)
{
    if (l == NULL || opts == NULL || !xpb_loop_thread_safe(l)) return XPB_EINVAL;
    natsStatus s = natsOptions_SetEventLoop(opts, xpb_loop_base(l), natsLibevent_Attach,
                                            natsLibevent_Read, natsLibevent_Write,
                                            natsLibevent_Detach);
    return s == NATS_OK ? 0 : XPB_ENOMEM;
}
