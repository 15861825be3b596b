/* The NNG back end (xpb_bus_backend.h): events on a PUB socket, requests on
 * a REP socket served through NNG contexts. NNG callbacks run on NNG's
 * threads and only move messages through a locked queue and signal the
 * loop's wake-up (xpb_wake); requests reach the front on the loop thread.
 * The only file in the bridge that includes NNG. */
#include "xpb_bus_backend.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>

#include "bus_endpoint.h"
#include "xpb_error.h"
#include "xpb_log.h"
#include "xpb_loop.h"
#include "xpb_nng_close.h"

#define NNG_BE_CLOSE_MS 2000u /* xpb_nng_close_bounded at the daemon's stop */
#define PUB_RECVMAXSZ 4096u /* PUB never receives; bounded all the same */

/* Why contexts rather than a raw REP socket: a context keeps the REQ
 * backtrace for us, so the reply needs no manual header handling, and each
 * context is one bounded in-flight slot. A slot is owned by NNG while it
 * receives or sends, and by the loop thread from QUEUED until it sends. */
enum slot_state {
    SLOT_RECV,    /* nng_ctx_recv pending */
    SLOT_QUEUED,  /* message received, waiting for the loop */
    SLOT_FRONT,   /* at the front, waiting for its reply */
    SLOT_SENDING, /* nng_ctx_send pending */
    SLOT_STOPPED,
};

typedef struct nng_be nng_be;

/* The token the front sees is the slot. */
struct xpb_bus_token {
    nng_be *be;
    nng_ctx ctx;
    nng_aio *aio;
    enum slot_state state; /* changed under be->mu */
    nng_msg *msg;          /* QUEUED: the request bytes */
    struct xpb_bus_token *qnext;
};
typedef struct xpb_bus_token slot;

struct nng_be {
    xpb_bus_host host;
    xpb_bus_endpoints ep;
    nng_socket pub, rep;
    int pub_open, rep_open;
    slot *slots;
    unsigned nslots;
    xpb_wake *wake;

    pthread_mutex_t mu; /* guards the queue, closing, slot states, reply_errors */
    slot *qhead, *qtail;
    int closing;
    uint64_t reply_errors;
};

static enum slot_state slot_get(slot *s)
{
    pthread_mutex_lock(&s->be->mu);
    enum slot_state st = s->state;
    pthread_mutex_unlock(&s->be->mu);
    return st;
}

static void slot_set(slot *s, enum slot_state st)
{
    pthread_mutex_lock(&s->be->mu);
    s->state = st;
    pthread_mutex_unlock(&s->be->mu);
}

/* ---- NNG threads: only move messages and wake the loop ---- */

static void slot_recv(slot *s)
{
    nng_aio_set_timeout(s->aio, NNG_DURATION_INFINITE);
    nng_ctx_recv(s->ctx, s->aio);
}

static void on_recv(slot *s)
{
    nng_be *be = s->be;
    int rv = nng_aio_result(s->aio);
    pthread_mutex_lock(&be->mu);
    if (rv == 0 && !be->closing) {
        s->msg = nng_aio_get_msg(s->aio);
        s->state = SLOT_QUEUED;
        s->qnext = NULL;
        if (be->qtail != NULL)
            be->qtail->qnext = s;
        else
            be->qhead = s;
        be->qtail = s;
        pthread_mutex_unlock(&be->mu);
        xpb_wake_signal(be->wake);
        return;
    }
    if (rv == 0) /* arrived during shutdown: not answered (docs/bus.md) */
        nng_msg_free(nng_aio_get_msg(s->aio));
    int stop = be->closing || rv == NNG_ECLOSED || rv == NNG_ECANCELED;
    s->state = stop ? SLOT_STOPPED : SLOT_RECV;
    pthread_mutex_unlock(&be->mu);
    if (!stop) slot_recv(s);
}

/* Back to receiving (or stopped when closing) after a reply or a failure. */
static void slot_done(slot *s, int failed)
{
    nng_be *be = s->be;
    pthread_mutex_lock(&be->mu);
    if (failed) be->reply_errors++;
    int stop = be->closing;
    s->state = stop ? SLOT_STOPPED : SLOT_RECV;
    pthread_mutex_unlock(&be->mu);
    if (!stop) slot_recv(s);
}

static void on_send(slot *s)
{
    int rv = nng_aio_result(s->aio);
    if (rv != 0) nng_msg_free(nng_aio_get_msg(s->aio));
    slot_done(s, rv != 0);
}

static void aio_cb(void *arg)
{
    slot *s = arg;
    if (slot_get(s) == SLOT_SENDING)
        on_send(s);
    else
        on_recv(s);
}

/* ---- the loop thread ---- */

static slot *take_queue(nng_be *be)
{
    pthread_mutex_lock(&be->mu);
    slot *q = be->qhead;
    be->qhead = be->qtail = NULL;
    pthread_mutex_unlock(&be->mu);
    return q;
}

/* Hands every queued request to the front. The front may reply at once,
 * which hands the slot back to NNG: nothing of s is used after the call. */
static void deliver_queue(nng_be *be)
{
    slot *q = take_queue(be);
    while (q != NULL) {
        slot *next = q->qnext;
        nng_msg *m = q->msg;
        q->msg = NULL;
        slot_set(q, SLOT_FRONT);
        be->host.request(be->host.front, q, nng_msg_body(m), nng_msg_len(m));
        nng_msg_free(m);
        q = next;
    }
}

static void on_wake(void *ud)
{
    deliver_queue(ud);
}

static int nng_reply(void *bep, xpb_bus_token *s, const uint8_t *data, size_t len)
{
    (void)bep;
    nng_msg *m = NULL;
    if (nng_msg_alloc(&m, len) != 0) {
        slot_done(s, 1); /* cannot answer: give the context back so the slot is not lost */
        return XPB_ENOMEM;
    }
    memcpy(nng_msg_body(m), data, len);
    slot_set(s, SLOT_SENDING);
    nng_aio_set_msg(s->aio, m);
    nng_aio_set_timeout(s->aio, XPB_BUS_SEND_TIMEOUT_MS);
    nng_ctx_send(s->ctx, s->aio);
    return 0;
}

/* Non-blocking: a subscriber too slow to take XPB_BUS_PUB_SENDBUF batches
 * loses the oldest ones, never the bridge its loop. */
static int nng_publish(void *bep, const xpb_bus_batch *bt)
{
    nng_be *be = bep;
    nng_msg *m = NULL;
    if (nng_msg_alloc(&m, bt->frame_len) != 0) return XPB_ENOMEM;
    memcpy(nng_msg_body(m), bt->frame, bt->frame_len);
    if (nng_sendmsg(be->pub, m, NNG_FLAG_NONBLOCK) != 0) {
        nng_msg_free(m);
        return XPB_ENOMEM;
    }
    be->host.published(be->host.front, bt->last_seq);
    return 0;
}

/* ---- life cycle ---- */

/* nng_listen, with the socket file's mode set for ipc:// (xpb_bus_ipc_socket_mode). */
static int listen_on(nng_socket sock, const char *name, const char *url, mode_t dir_mode, char *err,
                     size_t errlen)
{
    nng_listener l;
    int rv = nng_listener_create(&l, sock, url);
    if (rv == 0 && xpb_bus_has_scheme(url, "ipc://"))
        rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, xpb_bus_ipc_socket_mode(dir_mode));
    if (rv == 0) rv = nng_listener_start(l, 0);
    if (rv != 0) {
        xpb_bus_set_err(err, errlen, "cannot listen on %s %s: %s", name, url, nng_strerror(rv));
        return XPB_EINVAL;
    }
    return 0;
}

static int open_sockets(nng_be *be, size_t max_request, char *err, size_t errlen)
{
    int rv = nng_pub0_open(&be->pub);
    if (rv == 0) {
        be->pub_open = 1;
        nng_socket_set_size(be->pub, NNG_OPT_RECVMAXSZ, PUB_RECVMAXSZ);
        rv = nng_socket_set_int(be->pub, NNG_OPT_SENDBUF, XPB_BUS_PUB_SENDBUF);
        if (rv != 0) {
            xpb_bus_set_err(err, errlen, "cannot set the PUB queue to XPB_BUS_PUB_SENDBUF (%d): %s",
                            XPB_BUS_PUB_SENDBUF, nng_strerror(rv));
            return XPB_EINVAL;
        }
        int rc = listen_on(be->pub, "events_url", be->ep.events_url, be->ep.events_dir_mode, err,
                           errlen);
        if (rc != 0) return rc;
        rv = nng_rep0_open(&be->rep);
    }
    if (rv == 0) {
        be->rep_open = 1;
        nng_socket_set_size(be->rep, NNG_OPT_RECVMAXSZ, max_request);
        int rc = listen_on(be->rep, "requests_url", be->ep.requests_url, be->ep.requests_dir_mode,
                           err, errlen);
        if (rc != 0) return rc;
    }
    if (rv != 0) {
        xpb_bus_set_err(err, errlen, "cannot open NNG sockets: %s", nng_strerror(rv));
        return XPB_ENOMEM;
    }
    return 0;
}

static int start_slots(nng_be *be, char *err, size_t errlen)
{
    be->slots = calloc(be->nslots, sizeof *be->slots);
    if (be->slots == NULL) return XPB_ENOMEM;
    for (unsigned i = 0; i < be->nslots; i++) {
        slot *s = &be->slots[i];
        s->be = be;
        s->state = SLOT_STOPPED;
        int rv = nng_aio_alloc(&s->aio, aio_cb, s);
        if (rv == 0) rv = nng_ctx_open(&s->ctx, be->rep);
        if (rv != 0) {
            xpb_bus_set_err(err, errlen, "cannot open NNG context %u: %s", i, nng_strerror(rv));
            return XPB_ENOMEM;
        }
        s->state = SLOT_RECV;
        slot_recv(s);
    }
    return 0;
}

static void nng_be_close(void *bep);

static int nng_be_open(void **out, xpb_loop *loop, const xpb_bus_config *cfg,
                       const xpb_bus_host *host, char *err, size_t errlen)
{
    *out = NULL;
    nng_be *be = calloc(1, sizeof *be);
    if (be == NULL) return XPB_ENOMEM;
    be->host = *host;
    pthread_mutex_init(&be->mu, NULL);
    /* One context is kept free for ERR_BUSY by the front's limits. */
    be->nslots = cfg->max_inflight + XPB_BUS_CONTROL_SLOTS;
    int rc = xpb_bus_endpoints_resolve(cfg, &be->ep, err, errlen);
    if (rc == 0) rc = xpb_wake_new(loop, on_wake, be, &be->wake);
    if (rc == 0) rc = open_sockets(be, cfg->max_request_bytes, err, errlen);
    if (rc == 0) rc = start_slots(be, err, errlen);
    if (rc != 0) {
        nng_be_close(be);
        return rc;
    }
    *out = be;
    return 0;
}

static void nng_be_drain(void *bep)
{
    nng_be *be = bep;
    pthread_mutex_lock(&be->mu);
    be->closing = 1;
    pthread_mutex_unlock(&be->mu);
    deliver_queue(be);
}

static void stop_slots(nng_be *be)
{
    for (unsigned i = 0; i < be->nslots; i++) {
        slot *s = &be->slots[i];
        if (s->aio != NULL && slot_get(s) == SLOT_SENDING)
            nng_aio_wait(s->aio); /* bounded by XPB_BUS_SEND_TIMEOUT_MS */
    }
    for (unsigned i = 0; i < be->nslots; i++)
        if (be->slots[i].aio != NULL) nng_aio_stop(be->slots[i].aio);
    /* A message that raced the stop was freed by on_recv (closing is set). */
    for (unsigned i = 0; i < be->nslots; i++) {
        slot *s = &be->slots[i];
        if (s->aio != NULL) {
            nng_ctx_close(s->ctx);
            nng_aio_free(s->aio);
        }
    }
}

/* Bounded (xpb_nng_close.h): NNG 1.5.2 can hang closing a socket whose peer
 * is mid-message; the daemon exits right after its bus closes. */
static void close_socket(nng_socket s, const char *what)
{
    if (xpb_nng_close_bounded(s, NNG_BE_CLOSE_MS) == XPB_NNG_CLOSE_STUCK)
        xpb_log(XPB_LOG_WARN,
                "bus: the %s socket did not close within %u ms (NNG 1.5.2 close defect, "
                "docs/bus.md \"Closing a socket\"); left to the exit",
                what, NNG_BE_CLOSE_MS);
}

static void nng_be_close(void *bep)
{
    nng_be *be = bep;
    if (be == NULL) return;
    pthread_mutex_lock(&be->mu);
    be->closing = 1;
    pthread_mutex_unlock(&be->mu);
    if (be->slots != NULL) {
        stop_slots(be);
        free(be->slots);
    }
    if (be->rep_open) close_socket(be->rep, "request");
    if (be->pub_open) close_socket(be->pub, "event");
    xpb_wake_free(be->wake);
    /* Requests queued after drain were freed by on_recv; any left were
     * queued before a failed open and never delivered. */
    for (slot *q = take_queue(be); q != NULL; q = q->qnext)
        nng_msg_free(q->msg);
    xpb_bus_endpoints_free(&be->ep);
    pthread_mutex_destroy(&be->mu);
    free(be);
}

static void nng_be_stats(void *bep, xpb_bus_backend_stats *out)
{
    nng_be *be = bep;
    pthread_mutex_lock(&be->mu);
    out->reply_errors = be->reply_errors;
    pthread_mutex_unlock(&be->mu);
}

static const char *nng_be_endpoint(void *bep, xpb_bus_endpoint which)
{
    nng_be *be = bep;
    return which == XPB_BUS_EP_EVENTS ? be->ep.events_url : be->ep.requests_url;
}

const xpb_bus_backend_ops xpb_bus_nng_ops = {
    .name = "nng",
    .open = nng_be_open,
    .publish = nng_publish,
    .flush_done = NULL,
    .reply = nng_reply,
    .drain = nng_be_drain,
    .close = nng_be_close,
    .stats = nng_be_stats,
    .endpoint = nng_be_endpoint,
};

const char *xpb_bus_library_version(void)
{
    return nng_version();
}
