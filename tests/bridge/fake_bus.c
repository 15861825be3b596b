/* The fake bus (fake_bus.h): the daemon's side of xpb_bus.h, in memory. */
#include "fake_bus.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_bus_backend.h"
#include "xpb_bus_journal.h"
#include "xpb_bus_kv.h"
#include "xpb_error.h"

struct xpb_bus {
    xpb_bus_handler handler;
    void *ud;
    xpb_bus_stats st;
};

struct xpb_bus_request {
    fake_req pub; /* first: the test sees this part */
    char id[64];
    struct xpb_bus_request *next;
};

static struct {
    xpb_bus *bus;
    struct xpb_bus_request *reqs;
    char kinds[FAKE_BUS_MAX_EVENTS][16];
    Xpb__V1__Event *events[FAKE_BUS_MAX_EVENTS];
    size_t n_events;
} G;

void xpb_bus_config_init(xpb_bus_config *c)
{
    memset(c, 0, sizeof *c);
}

int xpb_bus_new(xpb_bus **out, xpb_loop *loop, const xpb_bus_config *cfg,
                xpb_bus_handler handler, void *ud, char *err, size_t errlen)
{
    (void)loop, (void)cfg, (void)err, (void)errlen;
    xpb_bus *b = calloc(1, sizeof *b);
    if (!b) return XPB_ENOMEM;
    b->handler = handler;
    b->ud = ud;
    G.bus = *out = b;
    return 0;
}

static int answer(xpb_bus_request *req, Xpb__V1__Response *resp)
{
    if (req->pub.answered) return XPB_EINVAL;
    resp->request_id = req->id;
    size_t n = xpb__v1__response__get_packed_size(resp);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return XPB_ENOMEM;
    xpb__v1__response__pack(resp, buf);
    req->pub.resp = xpb__v1__response__unpack(NULL, n, buf);
    free(buf);
    req->pub.answered = 1;
    if (G.bus) G.bus->st.replies++;
    return req->pub.resp ? 0 : XPB_ENOMEM;
}

void xpb_bus_free(xpb_bus *b)
{
    if (!b) return;
    for (xpb_bus_request *r = G.reqs; r; r = r->next)
        if (!r->pub.answered) xpb_bus_reply_error(r, XPB__V1__ERROR_CODE__ERR_INTERNAL,
                                                  "shutting down");
    free(b);
    G.bus = NULL;
}

void xpb_bus_flush(xpb_bus *b)
{
    (void)b;
}

static size_t last_stanza_bytes;

size_t xpb_bus_last_stanza_bytes(const xpb_bus *b)
{
    (void)b;
    return last_stanza_bytes;
}

int xpb_bus_publish(xpb_bus *b, const char *kind, const char *account, Xpb__V1__Event *ev)
{
    last_stanza_bytes = 0;
    if (!kind || !account || strchr(account, '/')) return XPB_EINVAL;
    if (G.n_events == FAKE_BUS_MAX_EVENTS) return XPB_ENOMEM;
    ev->account = ev->account ? ev->account : (char *)account;
    ev->has_seq = 1;
    ev->seq = ++b->st.last_seq;
    size_t n = xpb__v1__event__get_packed_size(ev);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return XPB_ENOMEM;
    xpb__v1__event__pack(ev, buf);
    G.events[G.n_events] = xpb__v1__event__unpack(NULL, n, buf);
    free(buf);
    if (!G.events[G.n_events]) return XPB_ENOMEM;
    snprintf(G.kinds[G.n_events++], sizeof G.kinds[0], "%s", kind);
    b->st.events++;
    if (ev->body_case == XPB__V1__EVENT__BODY_STANZA && ev->stanza) last_stanza_bytes = xpb__v1__stanza__get_packed_size(ev->stanza);
    return 0;
}

int xpb_bus_reply(xpb_bus_request *req, Xpb__V1__Response *resp)
{
    Xpb__V1__Response copy = *resp;
    return answer(req, &copy);
}

int xpb_bus_reply_error(xpb_bus_request *req, Xpb__V1__ErrorCode code, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.has_code = 1;
    resp.code = code;
    resp.error_text = text;
    return answer(req, &resp);
}

const char *xpb_bus_request_id(const xpb_bus_request *req)
{
    return req->id;
}

void xpb_bus_get_stats(const xpb_bus *b, xpb_bus_stats *out)
{
    *out = b->st;
}

const char *xpb_bus_events_url(const xpb_bus *b)
{
    (void)b;
    return "fake://events";
}

const char *xpb_bus_requests_url(const xpb_bus *b)
{
    (void)b;
    return "fake://requests";
}

/* ---- the test's side ---------------------------------------------------------- */

xpb_bus *fake_bus_get(void)
{
    return G.bus;
}

fake_req *fake_bus_request(const char *id, const Xpb__V1__Request *r)
{
    xpb_bus_request *req = calloc(1, sizeof *req);
    if (!req || !G.bus) {
        free(req);
        return NULL;
    }
    snprintf(req->id, sizeof req->id, "%s", id);
    req->next = G.reqs;
    G.reqs = req;
    G.bus->st.requests++;
    G.bus->handler(G.bus->ud, req, r);
    return &req->pub;
}

size_t fake_bus_n_events(void)
{
    return G.n_events;
}

const char *fake_bus_event_kind(size_t i)
{
    return i < G.n_events ? G.kinds[i] : NULL;
}

const Xpb__V1__Event *fake_bus_event(size_t i)
{
    return i < G.n_events ? G.events[i] : NULL;
}

const Xpb__V1__SessionState *fake_bus_last_state(const char *account)
{
    for (size_t i = G.n_events; i-- > 0;)
        if (strcmp(G.kinds[i], "state") == 0 && strcmp(G.events[i]->account, account) == 0)
            return G.events[i]->state;
    return NULL;
}

void fake_bus_clear_events(void)
{
    for (size_t i = 0; i < G.n_events; i++) xpb__v1__event__free_unpacked(G.events[i], NULL);
    G.n_events = 0;
}

void fake_bus_reset(void)
{
    fake_bus_clear_events();
    while (G.reqs) {
        xpb_bus_request *r = G.reqs;
        G.reqs = r->next;
        if (r->pub.resp) xpb__v1__response__free_unpacked(r->pub.resp, NULL);
        free(r);
    }
}

void xpb_bus_journal_get_stats(const xpb_bus *b, xpb_bus_journal_stats *out)
{
    (void)b;
    memset(out, 0, sizeof *out);
}

int xpb_bus_route(xpb_bus *b, const char *account, int on)
{
    (void)b;
    (void)account;
    (void)on;
    return 0;
}

/* The NATS back end and its KV worker are never used by test_daemon (no
 * nats settings); these keep bus_nats*.c and the real loop out of the link. */
const xpb_bus_backend_ops xpb_bus_nats_ops = {.name = "nats"};

int xpb_kv_open(xpb_kv **out, xpb_loop *loop, const xpb_bus_nats_cfg *cfg,
                const char *const *buckets, const unsigned *ttls_s, size_t nbuckets, xpb_kv_cb cb,
                void *ud, char *err, size_t errlen)
{
    (void)loop, (void)cfg, (void)buckets, (void)nbuckets, (void)ttls_s, (void)cb, (void)ud;
    (void)err, (void)errlen;
    *out = NULL;
    return -2;
}

int xpb_kv_submit(xpb_kv *kv, xpb_kv_op op, int bucket, const char *key, const char *value,
                  uint64_t last_rev)
{
    (void)kv, (void)op, (void)bucket, (void)key, (void)value, (void)last_rev;
    return -2;
}

int xpb_kv_submit_bin(xpb_kv *kv, xpb_kv_op op, int bucket, const char *key, const void *value,
                      size_t len, uint64_t last_rev)
{
    (void)kv, (void)op, (void)bucket, (void)key, (void)value, (void)len, (void)last_rev;
    return -2;
}

void xpb_kv_close(xpb_kv *kv, unsigned wait_ms)
{
    (void)kv, (void)wait_ms;
}

int64_t xpb_kv_now_ms(void)
{
    return 0;
}
