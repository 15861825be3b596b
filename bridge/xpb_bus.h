/* The NNG bus (proto/xpb/v1/bus.proto, docs/bus.md): events out on PUB,
 * requests in on REP, served concurrently with NNG contexts. NNG callbacks run
 * on NNG's threads and only move messages through a locked queue that wakes
 * the libevent loop; all decoding, dispatch and state live on the loop thread.
 * Only this module touches NNG. */
#ifndef XPB_BUS_H
#define XPB_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include "xpb/v1/bus.pb-c.h"

#define XPB_BUS_API_VERSION 1u
#define XPB_BUS_DEFAULT_MAX_REQUEST (1024u * 1024u)  /* NNG_OPT_RECVMAXSZ on REP */
#define XPB_BUS_DEFAULT_BATCH_MAX 64u                 /* events per NNG message */
#define XPB_BUS_DEFAULT_BATCH_FLUSH_US 2000u          /* flush a partial batch after this */
#define XPB_BUS_DEFAULT_MAX_INFLIGHT 64u              /* NNG contexts = concurrent requests */
#define XPB_BUS_DEFAULT_DEDUPE 4096u                  /* responses remembered by request id */

typedef struct xpb_bus_config {
    const char *events_url;    /* NULL: ipc://<private dir>/events */
    const char *requests_url;  /* NULL: ipc://<private dir>/requests */
    const char *private_dir;   /* NULL: $XDG_RUNTIME_DIR/xpbridge or /tmp/xpbridge-<uid>; made 0700 */
    int allow_remote;          /* 0: refuse tcp:// / ws:// endpoints not bound to loopback */
    size_t max_request_bytes;
    unsigned batch_max, batch_flush_us, max_inflight, dedupe_entries;
} xpb_bus_config;
void xpb_bus_config_init(xpb_bus_config *c);

typedef struct xpb_bus xpb_bus;
/* An in-flight request: answer it exactly once with xpb_bus_reply*. It stays
 * valid until then (an iq may take seconds; other requests go on meanwhile). */
typedef struct xpb_bus_request xpb_bus_request;

/* Called on the loop thread for every well-formed request (api_version,
 * request_id and an op present; depth-checked and unpacked). Malformed ones
 * and resends of a request id already answered never reach it. */
typedef void (*xpb_bus_handler)(void *ud, xpb_bus_request *req, const Xpb__V1__Request *r);

int xpb_bus_new(xpb_bus **out, struct event_base *base, const xpb_bus_config *cfg,
                xpb_bus_handler handler, void *ud, char *err, size_t errlen);
/* Answers every open request with ERR_INTERNAL "shutting down", flushes
 * batches, closes sockets. */
void xpb_bus_free(xpb_bus *b);

/* Publish one event; seq and timestamp_us are assigned here. kind: "message",
 * "presence", "iq", "other", "state", "delivery". The event is packed at once
 * (the caller keeps ownership of ev). */
int xpb_bus_publish(xpb_bus *b, const char *kind, const char *account, Xpb__V1__Event *ev);

/* Send the response (api_version and request_id are filled in) and remember
 * it for resends of the same request id. */
int xpb_bus_reply(xpb_bus_request *req, Xpb__V1__Response *resp);
int xpb_bus_reply_error(xpb_bus_request *req, Xpb__V1__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *xpb_bus_request_id(const xpb_bus_request *req);

typedef struct xpb_bus_stats {
    uint64_t events, batches, publish_errors, requests, replies, malformed, dedupe_hits, busy;
    uint64_t last_seq;
    unsigned inflight;
} xpb_bus_stats;
void xpb_bus_get_stats(const xpb_bus *b, xpb_bus_stats *out);
/* The URLs actually bound (after defaults). */
const char *xpb_bus_events_url(const xpb_bus *b);
const char *xpb_bus_requests_url(const xpb_bus *b);

#endif
