/* The client side of the bridge's bus for xpbctl: one request over an NNG
 * REQ socket and its reply, or a SUB socket with prefix subscriptions. The
 * only xpbctl code that touches NNG; endpoints default to the daemon's own
 * rule (xpb_bus_wire.h). */
#ifndef XPBCTL_BUS_CLIENT_H
#define XPBCTL_BUS_CLIENT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xpb/v1/bus.pb-c.h"
#include "xpb_bus_wire.h"
#include "xpbctl.h"

#define CTL_DEFAULT_TIMEOUT_MS 15000
#define CTL_MAX_TIMEOUT_MS 86400000LL /* a day: anything longer is a typo */
#define CTL_URL_MAX (PATH_MAX + 32)

/* One command's connection settings: the globals with defaults filled in. */
typedef struct ctl {
    const char *cmd;
    char requests[CTL_URL_MAX], events[CTL_URL_MAX];
    long timeout_ms;
    bool timeout_set, json;
    char request_id[XPB_BUS_MAX_REQUEST_ID + 1];
    const char *account; /* put into requests that have none */
    const char *nats;    /* NATS servers (--nats), or NULL for NNG */
    const char *durable; /* tail over NATS: --durable */
    void *ud;            /* for a reply printer that needs a context */
} ctl;

/* Fills c from g: default URLs, a random request id unless given. 0 or an
 * exit status (the reason printed). */
int ctl_init(ctl *c, const char *cmd, const xpbctl_globals *g);

typedef int (*reply_printer)(ctl *c, const Xpb__V1__Response *resp);

/* Sends r (api_version, request_id and account filled in here), waits for
 * the reply, prints an error reply as "xpbctl: CMD: ERR_NAME: text" or hands
 * an OK one to print. Returns the exit status. */
int ctl_request(ctl *c, Xpb__V1__Request *r, reply_printer print);

/* Reply printers shared by several commands. */
int ctl_print_ok(ctl *c, const Xpb__V1__Response *resp);
int ctl_missing_result(ctl *c);

/* An event subscription. */
typedef struct ctl_sub ctl_sub;
#define CTL_SUB_TIMEOUT (-1) /* ctl_sub_next: nothing within the poll interval */
#define CTL_POLL_MS 200      /* ctl_sub_next returns this often (to see signals) */

/* Subscribes to c->events with the n topic prefixes (all events when n is
 * 0). The dial does not block: the bridge may start later, and NNG redials
 * after it restarts. 0 or an exit status (printed). */
int ctl_sub_open(ctl *c, const char *const *prefixes, size_t n, ctl_sub **out);
/* The next message (valid until the next call): 0, CTL_SUB_TIMEOUT, or an
 * exit status (printed). */
int ctl_sub_next(ctl_sub *s, const uint8_t **data, size_t *len);
/* Over NATS the message ctl_sub_next returned is acknowledged by the next
 * ctl_sub_next or by ctl_sub_close (an archiver acknowledges what it has
 * committed); this takes that back: JetStream delivers it again. NNG: nothing. */
void ctl_sub_redeliver(ctl_sub *s);
void ctl_sub_close(ctl_sub *s);
/* Waits until the subscription is connected to the bridge (so an event
 * published after this returns is received): 0, or XPBCTL_EXIT_NOREPLY
 * after ms. NNG tells when our end of the pipe is up, not when the bridge's
 * PUB has added its end: CTL_SUB_SETTLE_MS more covers that. */
#define CTL_SUB_SETTLE_MS 250
int ctl_sub_wait_connected(ctl_sub *s, long ms);

#endif
