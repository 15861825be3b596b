/* The bus front (proto/xpb/v1/bus.proto, docs/bus.md): what the daemon calls
 * to publish events and answer requests. The front assigns seqs, batches
 * events per topic, decodes and validates requests and remembers answers by
 * request id; a back end (xpb_bus_backend.h: NNG by default) only moves bytes.
 * The daemon never learns which back end runs. Every function below is
 * called on the loop thread; several buses may live on several loops. */
#ifndef XPB_BUS_H
#define XPB_BUS_H

#include "xpb/v1/bus.pb-c.h"
#include "xpb_bus_wire.h" /* API version, default endpoints, topics */
#include <stddef.h>
#include <stdint.h>

/* Limits of the front (any back end) */
#define XPB_BUS_DEFAULT_MAX_REQUEST (1024u * 1024u) /* bytes of a request (NNG: RECVMAXSZ) */
#define XPB_BUS_DEFAULT_BATCH_MAX 64u               /* events per batch */
#define XPB_BUS_DEFAULT_BATCH_FLUSH_US 0u /* a partial batch goes out when the loop is idle */
#define XPB_BUS_DEFAULT_MAX_INFLIGHT 64u     /* ordinary requests at once (one is kept free) */
/* A request is unpacked into an arena of its own, in blocks of 8 x its
 * wire size (at least 16 KiB), at most this much per block. */
#define XPB_BUS_REQUEST_ARENA_BLOCK_MAX (1u << 20)
#define XPB_BUS_CONTROL_SLOTS 8u             /* more, only for status, list and close */
#define XPB_BUS_DEFAULT_DEDUPE 4096u         /* responses remembered by request id */
/* bytes per batch (a bigger single event goes alone) */
#define XPB_BUS_DEFAULT_BATCH_BYTES (256u * 1024u)

/* Limits of the NNG back end */
/* Batches queued per subscriber before PUB drops the oldest: NNG's largest
 * (pub0 takes 1 .. 8192). Pointers only, the messages are shared: a burst of
 * thousands of small batches (a bring-up's state events, one topic each;
 * flush on idle under a trickle) fits a subscriber that reads as fast as it
 * can. */
#define XPB_BUS_PUB_SENDBUF 8192
#define XPB_BUS_SEND_TIMEOUT_MS 5000 /* a reply nobody takes is dropped */
#define XPB_BUS_IPC_MODE 0600        /* mode of every ipc:// socket file */

typedef struct xpb_loop xpb_loop;                       /* xpb_loop.h */
typedef struct xpb_bus_backend_ops xpb_bus_backend_ops; /* xpb_bus_backend.h */

typedef struct xpb_bus_config {
    /* NULL: xpb_bus_nng_ops. The endpoint fields below are the NNG back end's. */
    const xpb_bus_backend_ops *backend;
    const void *backend_cfg;  /* the back end's own settings, read by its open; NULL for NNG */
    const char *events_url;   /* NULL: ipc://<private dir>/events */
    const char *requests_url; /* NULL: ipc://<private dir>/requests */
    const char *private_dir; /* NULL: $XDG_RUNTIME_DIR/xpbridge or /tmp/xpbridge-<uid>; made 0700 */
    int allow_remote;        /* 0: refuse tcp:// / ws:// endpoints not bound to loopback */
    size_t max_request_bytes;
    size_t max_string; /* bytes per string field of a request; 0: XPB_RECORD_DEFAULT_MAX_STRING */
    /* batch_flush_us: a partial batch waits this long (rounded up to whole
     * ms); 0: it goes out as soon as the loop has run what is ready. */
    unsigned batch_max, batch_flush_us, max_inflight, dedupe_entries;
    size_t batch_bytes; /* byte bound of one batch */
    /* The state directory's store (docs/durability.md), or NULL. With one,
     * the bus puts the journal back end (xpb_bus_journal.h) over the back end
     * above, so every event is on disk before it is published; seqs go on
     * from the journal's last and every EventBatch carries the journal's id.
     * The store must outlive the bus. */
    struct xpb_store *journal;
} xpb_bus_config;
void xpb_bus_config_init(xpb_bus_config *c);

typedef struct xpb_bus xpb_bus;
/* An in-flight request: answer it exactly once with xpb_bus_reply*. It stays
 * valid until then (an iq may take seconds; other requests go on meanwhile),
 * or until xpb_bus_free, which answers it itself. */
typedef struct xpb_bus_request xpb_bus_request;

/* Called on the loop thread for every well-formed request (api_version,
 * request_id, an op, and an account unless the op is list or status;
 * depth-checked and unpacked; the stanza of send and iq passed
 * xpb_stanza_check). Malformed ones and resends of a request id already
 * answered or in flight never reach it. r stays valid until req is answered. */
typedef void (*xpb_bus_handler)(void *ud, xpb_bus_request *req, const Xpb__V1__Request *r);

/* Creates the front on loop and opens cfg->backend. The NNG back end creates
 * the private directory (when a default endpoint needs it), checks the
 * directory of every ipc:// endpoint, removes stale ipc socket files, binds
 * both sockets (ipc socket files get XPB_BUS_IPC_MODE) and starts
 * max_inflight + XPB_BUS_CONTROL_SLOTS contexts. On failure returns
 * XPB_EINVAL (a refused endpoint or directory) or XPB_ENOMEM, and err holds a
 * sentence naming the endpoint or option. */
int xpb_bus_new(xpb_bus **out, xpb_loop *loop, const xpb_bus_config *cfg, xpb_bus_handler handler,
                void *ud, char *err, size_t errlen);
/* Answers every open request with ERR_INTERNAL "shutting down" (and waits,
 * at most XPB_BUS_SEND_TIMEOUT_MS, for those replies to be sent), flushes
 * batches, closes sockets. Request pointers are invalid afterwards. NULL ok. */
void xpb_bus_free(xpb_bus *b);

/* Publish one event; seq and timestamp_us are assigned here (and left in
 * *ev), account is filled in when ev->account is NULL. kind: "message",
 * "presence", "iq", "other", "state", "delivery"; account: a bare JID (no
 * '/'). The event is packed at once (the caller keeps ownership of ev).
 * XPB_EINVAL for a bad kind or account. */
int xpb_bus_publish(xpb_bus *b, const char *kind, const char *account, Xpb__V1__Event *ev);
/* The packed size of ev->stanza (body_case STANZA), sized once with the event by the last
 * xpb_bus_publish (so a caller's byte counter costs no second pass); 0 when
 * that event had no stanza or was not published. */
size_t xpb_bus_last_stanza_bytes(const xpb_bus *b);
/* Send every partial batch now (e.g. before a planned pause). */
void xpb_bus_flush(xpb_bus *b);

/* Send the response (api_version and request_id are filled in; code defaults
 * to OK) and remember it for resends of the same request id. The caller keeps
 * ownership of resp. XPB_EINVAL when req was already answered. */
int xpb_bus_reply(xpb_bus_request *req, Xpb__V1__Response *resp);
int xpb_bus_reply_error(xpb_bus_request *req, Xpb__V1__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *xpb_bus_request_id(const xpb_bus_request *req);

/* Remembers resp as the answer already given to request id, as if a request
 * with that id had just been answered: a resend gets it and does not run
 * again. For answers a restarted bridge (or the new owner of an account)
 * rebuilds from what it kept, such as the sends still in the outbox. An id
 * the cache already knows (answered or in flight) keeps its answer: 0. */
int xpb_bus_remember_answer(xpb_bus *b, const char *id, Xpb__V1__Response *resp);
/* The stanza id in the remembered answer of id, when it is a SendResult
 * (copied into out, at most outlen - 1 bytes): 1; 0 when there is none. */
int xpb_bus_remembered_sent(xpb_bus *b, const char *id, char *out, size_t outlen);

typedef struct xpb_bus_stats {
    uint64_t events, batches, publish_errors, requests, replies, malformed, dedupe_hits, busy;
    uint64_t last_seq;
    unsigned inflight;
    uint64_t events_dropped;   /* events in batches PUB refused (publish_errors) */
    uint64_t reply_errors;     /* replies the back end could not send (peer gone, timeout) */
    unsigned dedupe_size;      /* answered request ids remembered */
    uint64_t bad_strings;      /* malformed: a string field failed a text rule (NUL, UTF-8, ...) */
    uint64_t busy_control;     /* busy: status, list or close with every control slot taken */
    unsigned inflight_control; /* of inflight: status, list and close */
    uint64_t acked_seq;        /* the back end took every event up to this seq (NNG: when sent) */
    uint64_t publish_retries;  /* batches the back end sent again (NATS: refused or no ack) */
    uint64_t publish_pending;  /* batches the back end holds until acknowledged (NATS) */
    uint64_t dedupe_restored;  /* answers remembered with xpb_bus_remember_answer */
} xpb_bus_stats;
void xpb_bus_get_stats(const xpb_bus *b, xpb_bus_stats *out);
/* Requests naming account reach this bus from now on (on) or no longer
 * (off). With NATS that is the subscription to xpb.req.<token>; with NNG,
 * where every request reaches the one bridge, it does nothing. */
int xpb_bus_route(xpb_bus *b, const char *account, int on);

/* The URLs actually bound (after defaults); "" when the back end has none. */
const char *xpb_bus_events_url(const xpb_bus *b);
const char *xpb_bus_requests_url(const xpb_bus *b);

/* The running NNG version ("1.5.2") of the NNG back end. */
const char *xpb_bus_library_version(void);

#endif
