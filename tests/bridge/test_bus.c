/* Tests for the bus front with its NNG back end (bridge/bus/) over real NNG
 * sockets (ipc:// in a mkdtemp dir), on an xpb_loop wrapping the test's own
 * event_base on the main thread: topics, batching and seq numbers,
 * concurrent requests, resends, malformed requests, limits, endpoints. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "xpb_bus.h"
#include "xpb_error.h"
#include "xpb_loop.h"
#include "xpb_nng_close.h"
#include "xpb_store.h"

#define NMAX 4096

/* ---- the handler under test's control ---- */

typedef struct handler_state {
    struct event_base *base;
    int calls;
    const char *slow_id; /* answered from a timer 300 ms later */
    const char *hold_id; /* never answered by the handler */
    xpb_bus_request *held;
    const char *hold_prefix; /* ids starting with it are held too, counted */
    int held_n;
    xpb_bus_request *slow_req;
    struct event *slow_ev;
} handler_state;

static void reply_echo(xpb_bus_request *req)
{
    char version[160];
    snprintf(version, sizeof version, "echo:%s", xpb_bus_request_id(req));
    Xpb__V1__BridgeStatus st = XPB__V1__BRIDGE_STATUS__INIT;
    st.version = version;
    Xpb__V1__Response r = XPB__V1__RESPONSE__INIT;
    r.result_case = XPB__V1__RESPONSE__RESULT_STATUS;
    r.status = &st;
    assert_int_equal(xpb_bus_reply(req, &r), 0);
}

static void on_slow(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    handler_state *h = arg;
    reply_echo(h->slow_req);
    h->slow_req = NULL;
}

static void handler(void *ud, xpb_bus_request *req, const Xpb__V1__Request *r)
{
    handler_state *h = ud;
    h->calls++;
    if (h->hold_id != NULL && strcmp(r->request_id, h->hold_id) == 0) {
        h->held = req;
        return;
    }
    if (h->hold_prefix != NULL &&
        strncmp(r->request_id, h->hold_prefix, strlen(h->hold_prefix)) == 0) {
        h->held_n++; /* answered by xpb_bus_free */
        return;
    }
    if (h->slow_id != NULL && strcmp(r->request_id, h->slow_id) == 0) {
        struct timeval tv = {0, 300000};
        h->slow_req = req;
        h->slow_ev = evtimer_new(h->base, on_slow, h);
        evtimer_add(h->slow_ev, &tv);
        return;
    }
    reply_echo(req);
}

/* ---- fixture ---- */

typedef struct fx {
    char dir[64];
    char ev_url[128], req_url[128];
    struct event_base *base;
    struct event *tick;
    xpb_loop *loop;
    xpb_bus *bus;
    handler_state h;
} fx;

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static int make_bus(fx *f, xpb_bus_config *cfg, xpb_bus **out, char *err, size_t errlen)
{
    return xpb_bus_new(out, f->loop, cfg, handler, &f->h, err, errlen);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/xpb-test-bus-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->ev_url, sizeof f->ev_url, "ipc://%s/ev", f->dir);
    snprintf(f->req_url, sizeof f->req_url, "ipc://%s/req", f->dir);
    f->base = event_base_new();
    xpb_loop_config lc = {.base = f->base};
    assert_int_equal(xpb_loop_new(&f->loop, &lc), 0);
    f->h.base = f->base;
    struct timeval tv = {0, 2000};
    f->tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
    evtimer_add(f->tick, &tv);
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    cfg.events_url = f->ev_url;
    cfg.requests_url = f->req_url;
    char err[256];
    int rc = make_bus(f, &cfg, &f->bus, err, sizeof err);
    if (rc != 0) fprintf(stderr, "xpb_bus_new: %s\n", err);
    assert_int_equal(rc, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    xpb_bus_free(f->bus);
    if (f->h.slow_ev != NULL) event_free(f->h.slow_ev);
    event_free(f->tick);
    xpb_loop_free(f->loop);
    event_base_free(f->base);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs the loop until *flag reaches want or ms pass. */
static void run_until(fx *f, atomic_int *flag, int want, int ms)
{
    double end = now_ms() + ms;
    while ((flag == NULL || atomic_load(flag) < want) && now_ms() < end)
        event_base_loop(f->base, EVLOOP_ONCE);
}

/* ---- REQ clients (run on their own threads: no cmocka asserts there) ---- */

typedef struct call {
    const char *url;
    uint8_t *req;
    size_t len;
    int timeout_ms;
    int rv;                  /* NNG result */
    Xpb__V1__Response *resp; /* NULL when it does not unpack */
    double done_ms;
    atomic_int *done;
    pthread_t th;
} call;

static void *call_thread(void *arg)
{
    call *c = arg;
    nng_socket s;
    c->rv = nng_req0_open(&s);
    if (c->rv == 0) {
        nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 1u << 20);
        nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, c->timeout_ms);
        nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, c->timeout_ms);
        c->rv = nng_dial(s, c->url, NULL, 0);
    }
    if (c->rv == 0) c->rv = nng_send(s, c->req, c->len, 0);
    void *buf = NULL;
    size_t n = 0;
    if (c->rv == 0) c->rv = nng_recv(s, &buf, &n, NNG_FLAG_ALLOC);
    if (c->rv == 0) {
        c->resp = xpb__v1__response__unpack(NULL, n, buf);
        nng_free(buf, n);
    }
    c->done_ms = now_ms();
    nng_close(s);
    atomic_fetch_add(c->done, 1);
    return NULL;
}

static void call_start(call *c, const char *url, uint8_t *req, size_t len, int timeout_ms,
                       atomic_int *done)
{
    memset(c, 0, sizeof *c);
    c->url = url;
    c->req = req;
    c->len = len;
    c->timeout_ms = timeout_ms;
    c->done = done;
    assert_int_equal(pthread_create(&c->th, NULL, call_thread, c), 0);
}

static void call_finish(call *c)
{
    pthread_join(c->th, NULL);
}

static void call_free(call *c)
{
    if (c->resp != NULL) xpb__v1__response__free_unpacked(c->resp, NULL);
    free(c->req);
}

/* A packed status request; api_version 0 means "leave it out". */
static uint8_t *pack_status(const char *id, unsigned api_version, size_t *len)
{
    Xpb__V1__GetStatus gs = XPB__V1__GET_STATUS__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.has_api_version = api_version != 0;
    r.api_version = api_version;
    r.request_id = (char *)id;
    r.op_case = XPB__V1__REQUEST__OP_STATUS;
    r.status = &gs;
    *len = xpb__v1__request__get_packed_size(&r);
    uint8_t *buf = malloc(*len + 1);
    xpb__v1__request__pack(&r, buf);
    return buf;
}

static uint8_t *copy_bytes(const void *p, size_t len)
{
    uint8_t *b = malloc(len + 1);
    memcpy(b, p, len);
    return b;
}

/* One request from a thread while the loop runs here. */
static void roundtrip(fx *f, const char *url, uint8_t *req, size_t len, int timeout_ms, call *c)
{
    atomic_int done = 0;
    call_start(c, url, req, len, timeout_ms, &done);
    run_until(f, &done, 1, timeout_ms + 2000);
    call_finish(c);
}

/* ---- requests ---- */

static void test_request_reply(void **state)
{
    fx *f = *state;
    size_t len;
    uint8_t *req = pack_status("r-1", 1, &len);
    call c;
    roundtrip(f, f->req_url, req, len, 2000, &c);
    assert_int_equal(c.rv, 0);
    assert_non_null(c.resp);
    assert_true(c.resp->has_api_version);
    assert_int_equal(c.resp->api_version, 1);
    assert_string_equal(c.resp->request_id, "r-1");
    assert_true(c.resp->has_code);
    assert_int_equal(c.resp->code, XPB__V1__ERROR_CODE__OK);
    assert_int_equal(c.resp->result_case, XPB__V1__RESPONSE__RESULT_STATUS);
    assert_string_equal(c.resp->status->version, "echo:r-1");
    assert_int_equal(f->h.calls, 1);
    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.replies, 1);
    assert_int_equal(st.inflight, 0);
    call_free(&c);
}

/* 8 clients at once; the handler answers c3 300 ms late: the others do not
 * wait for it. */
static void test_slow_request_does_not_block(void **state)
{
    fx *f = *state;
    f->h.slow_id = "c3";
    call c[8];
    atomic_int done = 0;
    double start = now_ms();
    for (int i = 0; i < 8; i++) {
        char id[8];
        size_t len;
        snprintf(id, sizeof id, "c%d", i);
        uint8_t *req = pack_status(id, 1, &len);
        call_start(&c[i], f->req_url, req, len, 3000, &done);
    }
    run_until(f, &done, 8, 5000);
    for (int i = 0; i < 8; i++)
        call_finish(&c[i]);
    for (int i = 0; i < 8; i++) {
        char want[16];
        snprintf(want, sizeof want, "echo:c%d", i);
        assert_int_equal(c[i].rv, 0);
        assert_non_null(c[i].resp);
        assert_int_equal(c[i].resp->code, XPB__V1__ERROR_CODE__OK);
        assert_string_equal(c[i].resp->status->version, want);
        if (i != 3) assert_true(c[i].done_ms < c[3].done_ms);
    }
    assert_true(c[3].done_ms - start >= 290);
    assert_int_equal(f->h.calls, 8);
    for (int i = 0; i < 8; i++)
        call_free(&c[i]);
}

static void test_resend_answered_from_cache(void **state)
{
    fx *f = *state;
    size_t len;
    call a, b;
    {
        uint8_t *rq_ = pack_status("dup-1", 1, &len);
        roundtrip(f, f->req_url, rq_, len, 2000, &a);
    }
    {
        uint8_t *rq_ = pack_status("dup-1", 1, &len);
        roundtrip(f, f->req_url, rq_, len, 2000, &b);
    }
    assert_int_equal(a.rv, 0);
    assert_int_equal(b.rv, 0);
    assert_string_equal(a.resp->status->version, "echo:dup-1");
    assert_string_equal(b.resp->status->version, "echo:dup-1");
    assert_int_equal(f->h.calls, 1);
    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.dedupe_hits, 1);
    assert_int_equal(st.dedupe_size, 1);
    call_free(&a);
    call_free(&b);
}

/* An answer a restarted bridge rebuilt (xpb_bus_remember_answer): a request
 * with that id gets it, and the handler never sees the request. An id the
 * cache already knew keeps its first answer. */
static void test_remembered_answer_serves_a_resend(void **state)
{
    fx *f = *state;
    Xpb__V1__SendResult sr = XPB__V1__SEND_RESULT__INIT;
    sr.stanza_id = "kept-7";
    sr.has_queued = 1;
    sr.queued = 1;
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    resp.result_case = XPB__V1__RESPONSE__RESULT_SENT;
    resp.sent = &sr;
    assert_int_equal(xpb_bus_remember_answer(f->bus, "sent-before-crash", &resp), 0);
    sr.stanza_id = "other";
    assert_int_equal(xpb_bus_remember_answer(f->bus, "sent-before-crash", &resp), 0);
    assert_int_equal(xpb_bus_remember_answer(f->bus, "", &resp), XPB_EINVAL);
    char sid[32] = "";
    assert_int_equal(xpb_bus_remembered_sent(f->bus, "sent-before-crash", sid, sizeof sid), 1);
    assert_string_equal(sid, "kept-7");
    assert_int_equal(xpb_bus_remembered_sent(f->bus, "sent-before-crash", sid, 4), 0);
    assert_int_equal(xpb_bus_remembered_sent(f->bus, "never-seen", sid, sizeof sid), 0);

    size_t len;
    call c;
    uint8_t *rq = pack_status("sent-before-crash", 1, &len);
    roundtrip(f, f->req_url, rq, len, 2000, &c);
    assert_int_equal(c.rv, 0);
    assert_non_null(c.resp);
    assert_string_equal(c.resp->request_id, "sent-before-crash");
    assert_int_equal(c.resp->result_case, XPB__V1__RESPONSE__RESULT_SENT);
    assert_string_equal(c.resp->sent->stanza_id, "kept-7");
    assert_true(c.resp->sent->queued);
    assert_int_equal(f->h.calls, 0);
    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.dedupe_restored, 1);
    assert_int_equal(st.dedupe_hits, 1);
    call_free(&c);
}

/* A resend while the first is still at the handler waits for its answer. */
static void test_resend_while_in_flight(void **state)
{
    fx *f = *state;
    f->h.slow_id = "dup-2";
    call c[2];
    atomic_int done = 0;
    size_t len;
    {
        uint8_t *rq_ = pack_status("dup-2", 1, &len);
        call_start(&c[0], f->req_url, rq_, len, 3000, &done);
    }
    run_until(f, NULL, 0, 50);
    {
        uint8_t *rq_ = pack_status("dup-2", 1, &len);
        call_start(&c[1], f->req_url, rq_, len, 3000, &done);
    }
    run_until(f, &done, 2, 4000);
    call_finish(&c[0]);
    call_finish(&c[1]);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c[i].rv, 0);
        assert_int_equal(c[i].resp->code, XPB__V1__ERROR_CODE__OK);
        assert_string_equal(c[i].resp->status->version, "echo:dup-2");
        call_free(&c[i]);
    }
    assert_int_equal(f->h.calls, 1);
}

/* Packs a request with the given fields (NULL / 0 = absent). */
static uint8_t *pack_req(unsigned api, const char *id, const char *account,
                         Xpb__V1__Request__OpCase op, Xpb__V1__Stanza *st, size_t *len)
{
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    Xpb__V1__SendStanza send = XPB__V1__SEND_STANZA__INIT;
    Xpb__V1__SendIq iq = XPB__V1__SEND_IQ__INIT;
    Xpb__V1__ListSessions list = XPB__V1__LIST_SESSIONS__INIT;
    Xpb__V1__GetRoster roster = XPB__V1__GET_ROSTER__INIT;
    Xpb__V1__CloseSession close_ = XPB__V1__CLOSE_SESSION__INIT;
    r.has_api_version = api != 0;
    r.api_version = api;
    r.request_id = (char *)id;
    r.account = (char *)account;
    r.op_case = op;
    if (op == XPB__V1__REQUEST__OP_SEND) {
        send.stanza = st;
        r.send = &send;
    } else if (op == XPB__V1__REQUEST__OP_IQ) {
        iq.stanza = st;
        r.iq = &iq;
    } else if (op == XPB__V1__REQUEST__OP_LIST) {
        r.list = &list;
    } else if (op == XPB__V1__REQUEST__OP_ROSTER) {
        r.roster = &roster;
    } else if (op == XPB__V1__REQUEST__OP_CLOSE) {
        r.close = &close_;
    }
    *len = xpb__v1__request__get_packed_size(&r);
    uint8_t *buf = malloc(*len + 1);
    xpb__v1__request__pack(&r, buf);
    return buf;
}

static void test_malformed_requests(void **state)
{
    fx *f = *state;
    char long_id[200];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    Xpb__V1__Stanza bad = XPB__V1__STANZA__INIT;
    bad.has_kind = 1;
    bad.kind = XPB__V1__KIND__KIND_MESSAGE;
    bad.to = "a@@b"; /* not a JID */
    Xpb__V1__Stanza msg = XPB__V1__STANZA__INIT;
    msg.has_kind = 1;
    msg.kind = XPB__V1__KIND__KIND_MESSAGE;
    msg.to = "bob@example.com";
    const struct {
        const char *name;
        uint8_t *req;
        size_t len;
        Xpb__V1__ErrorCode code;
        const char *id;   /* expected request_id in the reply, or NULL */
        const char *text; /* expected substring of error_text */
    } cases[] = {
        {"garbage", copy_bytes("\xff\xff\xff\xff", 4), 4, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST,
         NULL, "request does not decode"},
        {"api 2", NULL, 0, XPB__V1__ERROR_CODE__ERR_API_VERSION, "m-2", "speaks 1"},
        {"no api", NULL, 0, XPB__V1__ERROR_CODE__ERR_API_VERSION, "m-3", "speaks 1"},
        {"no id", NULL, 0, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST, NULL, "request_id is required"},
        {"long id", NULL, 0, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST, NULL, "longer than 128"},
        {"no op", NULL, 0, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST, "m-6", "op is missing"},
        {"no account", NULL, 0, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST, "m-7", "account"},
        {"no stanza", NULL, 0, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST, "m-8", "send.stanza"},
        {"bad jid", NULL, 0, XPB__V1__ERROR_CODE__ERR_INVALID_JID, "m-9", "send.stanza: "},
        {"iq not iq", NULL, 0, XPB__V1__ERROR_CODE__ERR_INVALID_RECORD, "m-10", "get or set"},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    uint8_t *reqs[N];
    size_t lens[N];
    reqs[0] = cases[0].req;
    lens[0] = cases[0].len;
    reqs[1] = pack_status("m-2", 2, &lens[1]);
    reqs[2] = pack_status("m-3", 0, &lens[2]);
    reqs[3] = pack_status(NULL, 1, &lens[3]);
    reqs[4] = pack_status(long_id, 1, &lens[4]);
    reqs[5] = pack_req(1, "m-6", "a@example.com", XPB__V1__REQUEST__OP__NOT_SET, NULL, &lens[5]);
    reqs[6] = pack_req(1, "m-7", NULL, XPB__V1__REQUEST__OP_SEND, &msg, &lens[6]);
    reqs[7] = pack_req(1, "m-8", "a@example.com", XPB__V1__REQUEST__OP_SEND, NULL, &lens[7]);
    reqs[8] = pack_req(1, "m-9", "a@example.com", XPB__V1__REQUEST__OP_SEND, &bad, &lens[8]);
    reqs[9] = pack_req(1, "m-10", "a@example.com", XPB__V1__REQUEST__OP_IQ, &msg, &lens[9]);
    for (size_t i = 0; i < N; i++) {
        call c;
        roundtrip(f, f->req_url, reqs[i], lens[i], 2000, &c);
        if (c.rv != 0 || c.resp == NULL) fail_msg("%s: rv %d", cases[i].name, c.rv);
        if (c.resp->code != cases[i].code || strstr(c.resp->error_text, cases[i].text) == NULL)
            fail_msg("%s: code %d text '%s'", cases[i].name, c.resp->code, c.resp->error_text);
        assert_int_equal(c.resp->api_version, 1);
        if (cases[i].id != NULL)
            assert_string_equal(c.resp->request_id, cases[i].id);
        else
            assert_null(c.resp->request_id);
        call_free(&c);
    }
    assert_int_equal(f->h.calls, 0);
    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.malformed, N);
}

/* Prepends a length-delimited field header (tag, then length n) before
 * buf[*pos..], writing backwards. */
static void prepend_header(uint8_t *buf, size_t *pos, unsigned fieldno, size_t n)
{
    uint8_t hdr[20];
    size_t h = 0;
    for (uint32_t v = fieldno << 3 | 2;; v >>= 7) { /* tag varint */
        hdr[h++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80) break;
    }
    for (size_t v = n;; v >>= 7) {
        hdr[h++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80) break;
    }
    *pos -= h;
    memcpy(buf + *pos, hdr, h);
}

/* Request{api_version 1, request_id "deep", send(12){stanza(1){element(70){
 * child(5){element(1){child(5)...}}}}}}: 10,000 nested levels as raw bytes
 * (protobuf-c could not build them: it has no depth limit either way). */
static void test_deep_nesting_10000(void **state)
{
    fx *f = *state;
    size_t cap = 10000 * 8 + 256, pos = cap;
    uint8_t *buf = calloc(1, cap);
    for (size_t i = 0; i < 10000; i++)
        prepend_header(buf, &pos, (i % 2 == 0) ? 1 : 5, cap - pos);
    prepend_header(buf, &pos, 70, cap - pos);
    prepend_header(buf, &pos, 1, cap - pos);
    prepend_header(buf, &pos, 12, cap - pos);
    static const uint8_t env[] = {0x08, 0x01, 0x12, 0x04, 'd', 'e', 'e', 'p'};
    pos -= sizeof env;
    memcpy(buf + pos, env, sizeof env);
    size_t n = cap - pos;
    uint8_t *req = copy_bytes(buf + pos, n);
    free(buf);
    call c;
    roundtrip(f, f->req_url, req, n, 2000, &c);
    assert_int_equal(c.rv, 0);
    assert_non_null(c.resp);
    assert_int_equal(c.resp->code, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST);
    assert_string_equal(c.resp->request_id == NULL ? "" : c.resp->request_id, "");
    assert_non_null(strstr(c.resp->error_text, "nesting deeper than the limit of 67"));
    call_free(&c);
    assert_int_equal(f->h.calls, 0);
}

/* A stanza nested within the record limits (20 element levels) is not
 * caught by the wire depth check. */
static void test_nested_stanza_accepted(void **state)
{
    fx *f = *state;
    enum { LEVELS = 20 };
    Xpb__V1__Element el[LEVELS];
    Xpb__V1__Node node[LEVELS];
    Xpb__V1__Node *kids[LEVELS];
    for (int i = LEVELS - 1; i >= 0; i--) {
        xpb__v1__element__init(&el[i]);
        el[i].name = "x";
        el[i].ns = "urn:example:nest";
        if (i + 1 < LEVELS) {
            xpb__v1__node__init(&node[i]);
            node[i].node_case = XPB__V1__NODE__NODE_ELEMENT;
            node[i].element = &el[i + 1];
            kids[i] = &node[i];
            el[i].n_child = 1;
            el[i].child = &kids[i];
        }
    }
    Xpb__V1__Stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = 1;
    st.kind = XPB__V1__KIND__KIND_MESSAGE;
    st.to = "bob@example.com";
    st.n_extension = 1;
    Xpb__V1__Element *ext = &el[0];
    st.extension = &ext;
    size_t len;
    uint8_t *req = pack_req(1, "nest", "a@example.com", XPB__V1__REQUEST__OP_SEND, &st, &len);
    call c;
    roundtrip(f, f->req_url, req, len, 2000, &c);
    assert_int_equal(c.rv, 0);
    if (c.resp->code != XPB__V1__ERROR_CODE__OK)
        fail_msg("code %d: %s", c.resp->code, c.resp->error_text);
    assert_int_equal(f->h.calls, 1);
    call_free(&c);
}

/* Above max_request_bytes NNG drops the message (and the connection): the
 * REQ side times out. The bus keeps serving others. */
static void test_oversized_dropped_by_nng(void **state)
{
    fx *f = *state;
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    char ev[160], rq[160], err[256];
    snprintf(ev, sizeof ev, "ipc://%s/ev2", f->dir);
    snprintf(rq, sizeof rq, "ipc://%s/req2", f->dir);
    cfg.events_url = ev;
    cfg.requests_url = rq;
    cfg.max_request_bytes = 1024;
    xpb_bus *b = NULL;
    assert_int_equal(make_bus(f, &cfg, &b, err, sizeof err), 0);
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    Xpb__V1__GetStatus gs = XPB__V1__GET_STATUS__INIT;
    char big[4000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    r.has_api_version = 1;
    r.api_version = 1;
    r.request_id = "big";
    r.account = big;
    r.op_case = XPB__V1__REQUEST__OP_STATUS;
    r.status = &gs;
    size_t len = xpb__v1__request__get_packed_size(&r);
    uint8_t *req = malloc(len);
    xpb__v1__request__pack(&r, req);
    call c;
    roundtrip(f, rq, req, len, 300, &c);
    assert_int_equal(c.rv, NNG_ETIMEDOUT);
    assert_null(c.resp);
    call_free(&c);
    {
        uint8_t *rq_ = pack_status("small", 1, &len);
        roundtrip(f, rq, rq_, len, 2000, &c);
    }
    assert_int_equal(c.rv, 0);
    assert_string_equal(c.resp->status->version, "echo:small");
    call_free(&c);
    xpb_bus_free(b);
}

static void test_busy_when_all_slots_taken(void **state)
{
    fx *f = *state;
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    char ev[160], rq[160], err[256];
    snprintf(ev, sizeof ev, "ipc://%s/ev3", f->dir);
    snprintf(rq, sizeof rq, "ipc://%s/req3", f->dir);
    cfg.events_url = ev;
    cfg.requests_url = rq;
    cfg.max_inflight = 2;
    xpb_bus *b = NULL;
    assert_int_equal(make_bus(f, &cfg, &b, err, sizeof err), 0);
    f->h.slow_id = "first";
    call c[2];
    atomic_int done = 0;
    size_t len;
    {
        uint8_t *rq_ =
            pack_req(1, "first", "a@example.com", XPB__V1__REQUEST__OP_ROSTER, NULL, &len);
        call_start(&c[0], rq, rq_, len, 3000, &done);
    }
    run_until(f, NULL, 0, 50);
    {
        uint8_t *rq_ =
            pack_req(1, "second", "a@example.com", XPB__V1__REQUEST__OP_ROSTER, NULL, &len);
        call_start(&c[1], rq, rq_, len, 3000, &done);
    }
    run_until(f, &done, 2, 4000);
    call_finish(&c[0]);
    call_finish(&c[1]);
    assert_int_equal(c[0].resp->code, XPB__V1__ERROR_CODE__OK);
    assert_int_equal(c[1].resp->code, XPB__V1__ERROR_CODE__ERR_BUSY);
    assert_non_null(strstr(c[1].resp->error_text, "max_inflight 2"));
    assert_true(c[1].done_ms < c[0].done_ms);
    call_free(&c[0]);
    call_free(&c[1]);
    xpb_bus_free(b);
}

/* With every ordinary slot taken by slow requests, status, list and close
 * are still served from slots of their own; those are bounded too. */
static void test_control_requests_have_own_slots(void **state)
{
    fx *f = *state;
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    char ev[160], rq[160], err[256];
    snprintf(ev, sizeof ev, "ipc://%s/ev-ctl", f->dir);
    snprintf(rq, sizeof rq, "ipc://%s/req-ctl", f->dir);
    cfg.events_url = ev;
    cfg.requests_url = rq;
    cfg.max_inflight = 4; /* 3 ordinary requests in flight at most */
    xpb_bus *b = NULL;
    assert_int_equal(make_bus(f, &cfg, &b, err, sizeof err), 0);
    f->h.hold_prefix = "hold-";
    enum { ORD = 3, CTL = XPB_BUS_CONTROL_SLOTS, N = ORD + CTL + 4 };
    call c[N];
    atomic_int done = 0;
    size_t len, k = 0;
    char id[32];
    for (int i = 0; i < ORD; i++) { /* fill the ordinary slots */
        snprintf(id, sizeof id, "hold-iq-%d", i);
        uint8_t *q = pack_req(1, id, "a@example.com", XPB__V1__REQUEST__OP_ROSTER, NULL, &len);
        call_start(&c[k++], rq, q, len, 5000, &done);
        run_until(f, NULL, 0, 30);
    }
    for (int i = 0; i < 100 && f->h.held_n < ORD; i++)
        run_until(f, NULL, 0, 10);
    assert_int_equal(f->h.held_n, ORD);
    size_t ord_busy = k;
    uint8_t *q = pack_req(1, "iq-busy", "a@example.com", XPB__V1__REQUEST__OP_ROSTER, NULL, &len);
    call_start(&c[k++], rq, q, len, 3000, &done);
    size_t status_ok = k;
    q = pack_status("st-1", 1, &len);
    call_start(&c[k++], rq, q, len, 3000, &done);
    size_t list_ok = k;
    q = pack_req(1, "ls-1", NULL, XPB__V1__REQUEST__OP_LIST, NULL, &len);
    call_start(&c[k++], rq, q, len, 3000, &done);
    run_until(f, &done, 3, 3000);
    assert_int_equal(atomic_load(&done), 3);
    for (int i = 0; i < CTL; i++) { /* fill the control slots with held closes */
        snprintf(id, sizeof id, "hold-close-%d", i);
        q = pack_req(1, id, "a@example.com", XPB__V1__REQUEST__OP_CLOSE, NULL, &len);
        call_start(&c[k++], rq, q, len, 5000, &done);
        run_until(f, NULL, 0, 30);
    }
    for (int i = 0; i < 100 && f->h.held_n < ORD + CTL; i++)
        run_until(f, NULL, 0, 10);
    assert_int_equal(f->h.held_n, ORD + CTL);
    xpb_bus_stats st;
    xpb_bus_get_stats(b, &st);
    assert_int_equal(st.inflight, ORD + CTL);
    assert_int_equal(st.inflight_control, CTL);
    size_t ctl_busy = k;
    q = pack_status("st-2", 1, &len);
    call_start(&c[k++], rq, q, len, 3000, &done);
    run_until(f, &done, 4, 3000);
    assert_int_equal(atomic_load(&done), 4);
    xpb_bus_free(b); /* answers the held ones */
    for (size_t i = 0; i < k; i++)
        call_finish(&c[i]);
    assert_int_equal(c[ord_busy].resp->code, XPB__V1__ERROR_CODE__ERR_BUSY);
    assert_non_null(strstr(c[ord_busy].resp->error_text, "max_inflight 4"));
    assert_int_equal(c[status_ok].resp->code, XPB__V1__ERROR_CODE__OK);
    assert_int_equal(c[list_ok].resp->code, XPB__V1__ERROR_CODE__OK);
    assert_int_equal(c[ctl_busy].resp->code, XPB__V1__ERROR_CODE__ERR_BUSY);
    assert_non_null(strstr(c[ctl_busy].resp->error_text, "control slots 8"));
    for (size_t i = 0; i < k; i++)
        call_free(&c[i]);
}

static void test_free_answers_inflight(void **state)
{
    fx *f = *state;
    f->h.hold_id = "held";
    call c;
    atomic_int done = 0;
    size_t len;
    {
        uint8_t *rq_ = pack_status("held", 1, &len);
        call_start(&c, f->req_url, rq_, len, 3000, &done);
    }
    for (int i = 0; i < 200 && f->h.held == NULL; i++)
        run_until(f, NULL, 0, 10);
    assert_non_null(f->h.held);
    xpb_bus_free(f->bus);
    f->bus = NULL;
    call_finish(&c);
    assert_int_equal(c.rv, 0);
    assert_non_null(c.resp);
    assert_int_equal(c.resp->code, XPB__V1__ERROR_CODE__ERR_INTERNAL);
    assert_string_equal(c.resp->request_id, "held");
    assert_string_equal(c.resp->error_text, "shutting down");
    call_free(&c);
}

/* ---- events ---- */

typedef struct got {
    uint64_t seq[NMAX];
    char topic[NMAX][64];
    size_t n, msgs;
    uint64_t first_seq[NMAX]; /* per NNG message */
} got;

static nng_socket sub_open(const char *url, const char *prefix)
{
    nng_socket s;
    assert_int_equal(nng_sub0_open(&s), 0);
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 1u << 20);
    nng_socket_set_int(s, NNG_OPT_RECVBUF, 1024);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 200);
    assert_int_equal(nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, prefix, strlen(prefix)), 0);
    assert_int_equal(nng_dial(s, url, NULL, 0), 0);
    return s;
}

static void drain(nng_socket s, got *g)
{
    memset(g, 0, sizeof *g);
    for (;;) {
        nng_msg *m;
        if (nng_recvmsg(s, &m, 0) != 0) break;
        const uint8_t *p = nng_msg_body(m);
        size_t len = nng_msg_len(m);
        const uint8_t *nul = memchr(p, 0, len);
        assert_non_null(nul);
        size_t tl = (size_t)(nul - p);
        Xpb__V1__EventBatch *eb = xpb__v1__event_batch__unpack(NULL, len - tl - 1, nul + 1);
        assert_non_null(eb);
        assert_true(eb->n_event > 0);
        g->first_seq[g->msgs++] = eb->event[0]->seq;
        for (size_t i = 0; i < eb->n_event && g->n < NMAX; i++) {
            g->seq[g->n] = eb->event[i]->seq;
            assert_true(tl < sizeof g->topic[0]);
            memcpy(g->topic[g->n], p, tl);
            g->topic[g->n][tl] = '\0';
            g->n++;
        }
        xpb__v1__event_batch__free_unpacked(eb, NULL);
        nng_msg_free(m);
    }
}

static void publish_one(fx *f, const char *kind, const char *account)
{
    Xpb__V1__Stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = 1;
    st.kind = XPB__V1__KIND__KIND_MESSAGE;
    st.to = (char *)account;
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    ev.stanza = &st;
    assert_int_equal(xpb_bus_publish(f->bus, kind, account, &ev), 0);
    assert_true(ev.seq > 0);
    assert_null(ev.account); /* the caller's event is left as it was */
}

#define ALICE "alice@example.com"
#define BOB "bob@example.com"

/* Which topic event number i (seq i+1) goes to: mostly alice's messages,
 * with bob's messages and alice's presence interleaved. */
static const char *pattern(size_t i, const char **account)
{
    *account = (i % 51 == 50) ? BOB : ALICE;
    return (i % 51 == 25) ? "presence" : "message";
}

static void test_publish_topics_batches_seq(void **state)
{
    fx *f = *state;
    enum { TOTAL = 1020 };
    nng_socket all = sub_open(f->ev_url, "");
    nng_socket msgs = sub_open(f->ev_url, "message/");
    nng_socket alice = sub_open(f->ev_url, "message/" ALICE "/");
    nng_socket alic = sub_open(f->ev_url, "message/alice@example.co/"); /* must match nothing */
    nng_msleep(100); /* let the PUB side attach the pipes */
    for (size_t i = 0; i < TOTAL; i++) {
        const char *account;
        const char *kind = pattern(i, &account);
        publish_one(f, kind, account);
    }
    run_until(f, NULL, 0, 50); /* the flush timer */
    static got g;
    /* everything: each seq once, and batches leave in order of first seq */
    drain(all, &g);
    assert_int_equal(g.n, TOTAL);
    assert_true(g.msgs < TOTAL / 10);
    for (size_t i = 0; i < g.msgs; i++)
        if (i > 0) assert_true(g.first_seq[i] > g.first_seq[i - 1]);
    static uint8_t seen[TOTAL + 1];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < g.n; i++) {
        assert_true(g.seq[i] >= 1 && g.seq[i] <= TOTAL);
        assert_int_equal(seen[g.seq[i]], 0);
        seen[g.seq[i]] = 1;
        const char *account;
        const char *kind = pattern(g.seq[i] - 1, &account);
        char want[64];
        snprintf(want, sizeof want, "%s/%s/", kind, account);
        assert_string_equal(g.topic[i], want);
    }
    /* messages of every account, in seq order per topic */
    drain(msgs, &g);
    size_t want_msgs = 0, want_alice = 0;
    for (size_t i = 0; i < TOTAL; i++) {
        const char *account;
        if (strcmp(pattern(i, &account), "message") == 0) {
            want_msgs++;
            want_alice += strcmp(account, ALICE) == 0;
        }
    }
    assert_int_equal(g.n, want_msgs);
    for (size_t i = 0; i < g.n; i++)
        assert_true(strncmp(g.topic[i], "message/", 8) == 0);
    /* one account: exactly its messages, in order, seq ascending */
    drain(alice, &g);
    assert_int_equal(g.n, want_alice);
    assert_true(g.msgs < want_alice);
    size_t k = 0;
    for (size_t i = 0; i < TOTAL; i++) {
        const char *account;
        if (strcmp(pattern(i, &account), "message") == 0 && strcmp(account, ALICE) == 0) {
            assert_int_equal(g.seq[k], i + 1);
            assert_string_equal(g.topic[k], "message/" ALICE "/");
            k++;
        }
    }
    drain(alic, &g);
    assert_int_equal(g.n, 0);
    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.events, TOTAL);
    assert_int_equal(st.last_seq, TOTAL);
    assert_int_equal(st.publish_errors, 0);
    assert_true(st.batches < TOTAL / 10);
    xpb_nng_close_bounded(all, 5000); /* NNG 1.5.2 (xpb_nng_close.h) */
    xpb_nng_close_bounded(msgs, 5000); /* NNG 1.5.2 (xpb_nng_close.h) */
    xpb_nng_close_bounded(alice, 5000); /* NNG 1.5.2 (xpb_nng_close.h) */
    xpb_nng_close_bounded(alic, 5000); /* NNG 1.5.2 (xpb_nng_close.h) */
}

static void test_publish_refuses_bad_topic(void **state)
{
    fx *f = *state;
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    assert_int_equal(xpb_bus_publish(f->bus, "mesage", ALICE, &ev), XPB_EINVAL);
    assert_int_equal(xpb_bus_publish(f->bus, "message", "a@b/res", &ev), XPB_EINVAL);
    assert_int_equal(xpb_bus_publish(f->bus, "message", "", &ev), XPB_EINVAL);
    assert_int_equal(xpb_bus_publish(f->bus, NULL, ALICE, &ev), XPB_EINVAL);
}

/* One EventBatch off a SUB socket into seqs[*n..]: the topic is the one
 * subscribed to and the batch's events are consecutive. -1 on timeout. */
static int read_batch(nng_socket s, const char *topic, uint64_t *seqs, size_t *n, size_t cap)
{
    nng_msg *m;
    if (nng_recvmsg(s, &m, 0) != 0) return -1;
    const uint8_t *p = nng_msg_body(m);
    size_t len = nng_msg_len(m), tl = strlen(topic);
    assert_true(len > tl && memcmp(p, topic, tl) == 0 && p[tl] == '\0');
    Xpb__V1__EventBatch *eb = xpb__v1__event_batch__unpack(NULL, len - tl - 1, p + tl + 1);
    assert_non_null(eb);
    assert_true(eb->n_event > 0);
    for (size_t i = 0; i < eb->n_event; i++) {
        assert_int_equal(eb->event[i]->seq, eb->event[0]->seq + i);
        assert_true(*n < cap);
        seqs[(*n)++] = eb->event[i]->seq;
    }
    xpb__v1__event_batch__free_unpacked(eb, NULL);
    nng_msg_free(m);
    return 0;
}

/* A subscriber that reads one batch, stalls while far more is published than
 * NNG's PUB send buffer and its own receive buffer hold, then reads what is
 * left. NNG drops the overflow without telling anyone (documented NNG
 * behaviour); the subscriber sees it from seq alone: strictly increasing,
 * consecutive inside each batch, and a gap. The bus's own counters still
 * account for every event (docs/bus.md). */
static int count_journal(void *ud, const xpb_journal_event *ev)
{
    uint64_t *seqs = ud;
    seqs[++seqs[0]] = ev->seq;
    return 0;
}

/* Two topics' events interleaved in one flush (per-topic batches, so seq
 * 1, 3 in one and 2, 4 in the other) are all kept in the journal, in seq
 * order: the journal refused such a flush whole before, so a subscriber
 * resuming from it missed those events (integration_catchup, ejabberd, with
 * worker loops). */
static void test_journal_keeps_interleaved_topics(void **state)
{
    fx *f = *state;
    xpb_bus_free(f->bus);
    char sdir[300];
    snprintf(sdir, sizeof sdir, "%s/state", f->dir);
    xpb_store_config sc = {.dir = sdir};
    xpb_store *store = NULL;
    char err[256];
    assert_int_equal(xpb_store_open(&store, &sc, err, sizeof err), 0);
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    cfg.events_url = f->ev_url;
    cfg.requests_url = f->req_url;
    cfg.journal = store;
    assert_int_equal(make_bus(f, &cfg, &f->bus, err, sizeof err), 0);
    for (int i = 0; i < 10; i++)
        publish_one(f, i % 2 ? "presence" : "message", ALICE);
    xpb_bus_flush(f->bus);
    run_until(f, NULL, 0, 50);
    uint64_t seqs[32] = {0}, next = 0;
    assert_int_equal(
        xpb_store_journal_read(store, 1, "", 0, count_journal, seqs, &next, err, sizeof err), 0);
    assert_int_equal(seqs[0], 10);
    for (uint64_t i = 1; i <= 10; i++)
        assert_int_equal(seqs[i], i);
    xpb_bus_free(f->bus);
    f->bus = NULL;
    xpb_store_close(store);
}

static void test_slow_subscriber_sees_gap(void **state)
{
    fx *f = *state;
    /* more batches than the PUB queue (XPB_BUS_PUB_SENDBUF) and SUB_RECVBUF hold */
    enum { TOTAL = 4 * (XPB_BUS_PUB_SENDBUF + 4096), BATCH = 4, SUB_RECVBUF = 8 };
    static uint64_t seqs[TOTAL];
    size_t n = 0;
    xpb_bus_free(f->bus); /* a bus with small batches on the same endpoints */
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    cfg.events_url = f->ev_url;
    cfg.requests_url = f->req_url;
    cfg.batch_max = BATCH;
    char err[256];
    assert_int_equal(make_bus(f, &cfg, &f->bus, err, sizeof err), 0);
    nng_socket sub = sub_open(f->ev_url, "message/" ALICE "/");
    assert_int_equal(nng_socket_set_int(sub, NNG_OPT_RECVBUF, SUB_RECVBUF), 0);
    nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 2000);
    nng_msleep(100); /* let the PUB side attach the pipe */
    for (size_t i = 0; i < BATCH; i++)
        publish_one(f, "message", ALICE);
    assert_int_equal(read_batch(sub, "message/" ALICE "/", seqs, &n, TOTAL), 0);
    assert_int_equal(n, BATCH);
    for (size_t i = BATCH; i < TOTAL; i++) /* nobody reads meanwhile */
        publish_one(f, "message", ALICE);
    run_until(f, NULL, 0, 50);
    nng_msleep(300);
    /* the newest batches are there however slow the machine (2 s), then the rest */
    assert_int_equal(read_batch(sub, "message/" ALICE "/", seqs, &n, TOTAL), 0);
    nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 300);
    size_t msgs = 2, gaps = 0;
    while (read_batch(sub, "message/" ALICE "/", seqs, &n, TOTAL) == 0)
        msgs++;
    /* at most what the two queues hold (and one in transit): NNG dropped the rest */
    assert_true(msgs <= XPB_BUS_PUB_SENDBUF + SUB_RECVBUF + 2u);
    assert_true(n < TOTAL);
    for (size_t i = 1; i < n; i++) {
        assert_true(seqs[i] > seqs[i - 1]);
        gaps += seqs[i] != seqs[i - 1] + 1;
    }
    assert_true(gaps >= 1); /* and something arrived after the loss */
    assert_true(seqs[n - 1] <= TOTAL);
    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.events, TOTAL);
    assert_int_equal(st.last_seq, TOTAL);
    assert_int_equal(st.batches + st.publish_errors, TOTAL / BATCH);
    assert_int_equal(st.events_dropped, st.publish_errors * BATCH);
    xpb_nng_close_bounded(sub, 5000); /* NNG 1.5.2 (xpb_nng_close.h) */
}

/* prev_seq of every batch read off a SUB socket, with its topic and seqs. */
typedef struct pbatch {
    char topic[64];
    int has_prev;
    uint64_t prev, seq[8];
    size_t n;
} pbatch;

static int read_pbatch(nng_socket s, pbatch *pb)
{
    nng_msg *m;
    if (nng_recvmsg(s, &m, 0) != 0) return -1;
    const uint8_t *p = nng_msg_body(m);
    size_t len = nng_msg_len(m);
    const uint8_t *nul = memchr(p, 0, len);
    assert_non_null(nul);
    size_t tl = (size_t)(nul - p);
    assert_true(tl < sizeof pb->topic);
    memcpy(pb->topic, p, tl);
    pb->topic[tl] = '\0';
    Xpb__V1__EventBatch *eb = xpb__v1__event_batch__unpack(NULL, len - tl - 1, nul + 1);
    assert_non_null(eb);
    assert_true(eb->n_event > 0 && eb->n_event <= 8);
    pb->has_prev = eb->has_prev_seq;
    pb->prev = eb->prev_seq;
    pb->n = eb->n_event;
    for (size_t i = 0; i < eb->n_event; i++)
        pb->seq[i] = eb->event[i]->seq;
    xpb__v1__event_batch__free_unpacked(eb, NULL);
    nng_msg_free(m);
    return 0;
}

static void restart_bus(fx *f, unsigned batch_max)
{
    xpb_bus_free(f->bus);
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    cfg.events_url = f->ev_url;
    cfg.requests_url = f->req_url;
    cfg.batch_max = batch_max;
    char err[256];
    assert_int_equal(make_bus(f, &cfg, &f->bus, err, sizeof err), 0);
}

/* Two topics interleaved irregularly, batches cut by batch_max and by
 * explicit flushes: every batch's prev_seq is exactly the seq published on
 * its topic before its first event (0 for the topic's first), and the events
 * inside a batch continue that chain. */
static void test_prev_seq_chains_per_topic(void **state)
{
    fx *f = *state;
    enum { TOTAL = 60 };
    restart_bus(f, 3);
    nng_socket all = sub_open(f->ev_url, "");
    nng_msleep(100);
    uint64_t prev_of[TOTAL + 1], last_a = 0, last_b = 0;
    for (size_t i = 0; i < TOTAL; i++) {
        int is_b = i % 5 == 1 || i % 5 == 2 || i % 11 == 0;
        publish_one(f, "message", is_b ? BOB : ALICE);
        uint64_t *last = is_b ? &last_b : &last_a;
        prev_of[i + 1] = *last;
        *last = i + 1;
        if (i % 7 == 6) xpb_bus_flush(f->bus);
    }
    xpb_bus_flush(f->bus);
    pbatch pb;
    size_t events = 0, batches = 0, zero_prev = 0;
    while (read_pbatch(all, &pb) == 0) {
        batches++;
        assert_true(pb.has_prev);
        int is_b = strcmp(pb.topic, "message/" BOB "/") == 0;
        assert_true(is_b || strcmp(pb.topic, "message/" ALICE "/") == 0);
        assert_int_equal(pb.prev, prev_of[pb.seq[0]]);
        zero_prev += pb.prev == 0;
        for (size_t i = 1; i < pb.n; i++)
            assert_int_equal(prev_of[pb.seq[i]], pb.seq[i - 1]);
        events += pb.n;
    }
    assert_int_equal(events, TOTAL);
    assert_true(batches > TOTAL / 3);
    assert_int_equal(zero_prev, 2); /* each topic's first batch only */
    xpb_nng_close_bounded(all, 5000); /* NNG 1.5.2 (xpb_nng_close.h) */
}

/* A topic forgotten after BUS_MAX_TOPICS (16384) newer ones: its next batch
 * says prev_seq 0 (unknown); while it is remembered it says the real one. */
static void test_prev_seq_forgotten_topic(void **state)
{
    fx *f = *state;
    enum { MAX_TOPICS = 16384 }; /* XPB_BUS_MAX_TOPICS (bridge/bus/bus_batch.h) */
    nng_socket sub = sub_open(f->ev_url, "message/" ALICE "/");
    nng_msleep(100);
    char acct[64];
    size_t other = 0;
    publish_one(f, "message", ALICE); /* seq 1 */
    for (int phase = 0; phase < 2; phase++) {
        /* phase 0: MAX_TOPICS - 1 others keep alice among the last MAX_TOPICS;
         * phase 1: MAX_TOPICS evict her */
        size_t n = phase == 0 ? MAX_TOPICS - 1 : MAX_TOPICS;
        for (size_t i = 0; i < n; i++) {
            snprintf(acct, sizeof acct, "u%zu@example.com", other++);
            publish_one(f, "presence", acct);
            if (i % 256 == 255) xpb_bus_flush(f->bus);
        }
        xpb_bus_flush(f->bus);
        nng_msleep(200); /* the others' batches leave the PUB queue */
        publish_one(f, "message", ALICE);
        xpb_bus_flush(f->bus);
    }
    pbatch pb;
    assert_int_equal(read_pbatch(sub, &pb), 0);
    assert_int_equal(pb.seq[0], 1);
    assert_int_equal(pb.prev, 0);
    assert_int_equal(read_pbatch(sub, &pb), 0);
    assert_int_equal(pb.seq[0], MAX_TOPICS + 1);
    assert_int_equal(pb.prev, 1);
    assert_int_equal(read_pbatch(sub, &pb), 0);
    assert_int_equal(pb.seq[0], 2 * MAX_TOPICS + 2);
    assert_true(pb.has_prev);
    assert_int_equal(pb.prev, 0);
    xpb_nng_close_bounded(sub, 5000); /* NNG 1.5.2 (xpb_nng_close.h) */
}

/* ---- endpoints ---- */

static void test_remote_endpoint_refused(void **state)
{
    fx *f = *state;
    const struct {
        const char *url;
        int allow, rc;
    } cases[] = {
        {"tcp://0.0.0.0:45123", 0, XPB_EINVAL},
        {"tcp://192.0.2.1:45123", 0, XPB_EINVAL},
        {"ws://[::]:45123/bus", 0, XPB_EINVAL},
        {"tcp://localhost.evil.example:45123", 0, XPB_EINVAL},
        {"tcp://127.0.0.1:0", 0, 0},
        {"tcp://0.0.0.0:0", 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        xpb_bus_config cfg;
        xpb_bus_config_init(&cfg);
        char rq[160], err[256] = "";
        snprintf(rq, sizeof rq, "ipc://%s/req-r%zu", f->dir, i);
        cfg.events_url = cases[i].url;
        cfg.requests_url = rq;
        cfg.allow_remote = cases[i].allow;
        xpb_bus *b = NULL;
        int rc = make_bus(f, &cfg, &b, err, sizeof err);
        if (rc != cases[i].rc) fail_msg("%s: rc %d (%s)", cases[i].url, rc, err);
        if (rc != 0) {
            assert_null(b);
            assert_non_null(strstr(err, "allow_remote"));
            assert_non_null(strstr(err, "events_url"));
        }
        xpb_bus_free(b);
    }
}

/* The default endpoints are the ones xpb_bus_default_url names (xpbctl finds
 * the daemon through it): under an absolute $XDG_RUNTIME_DIR, and not under a
 * relative one, which the XDG spec says to ignore. */
static void test_default_url(void **state)
{
    fx *f = *state;
    char err[256], want[256], buf[256];
    const char *old = getenv("XDG_RUNTIME_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("XDG_RUNTIME_DIR", f->dir, 1);
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    xpb_bus *b = NULL;
    assert_int_equal(make_bus(f, &cfg, &b, err, sizeof err), 0);
    assert_int_equal(xpb_bus_default_url("events", buf, sizeof buf), 0);
    assert_string_equal(xpb_bus_events_url(b), buf);
    snprintf(want, sizeof want, "ipc://%s/xpbridge/events", f->dir);
    assert_string_equal(buf, want);
    assert_int_equal(xpb_bus_default_url("requests", buf, sizeof buf), 0);
    assert_string_equal(xpb_bus_requests_url(b), buf);
    xpb_bus_free(b);

    setenv("XDG_RUNTIME_DIR", "relative/run", 1);
    assert_int_equal(xpb_bus_default_url("events", buf, sizeof buf), 0);
    snprintf(want, sizeof want, "ipc:///tmp/xpbridge-%lu/events", (unsigned long)geteuid());
    assert_string_equal(buf, want);
    assert_int_equal(xpb_bus_default_url("events", buf, 10), XPB_ETOOBIG);

    if (saved) {
        setenv("XDG_RUNTIME_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("XDG_RUNTIME_DIR");
    }
}

static void test_private_dir(void **state)
{
    fx *f = *state;
    char dir[128], err[256];
    snprintf(dir, sizeof dir, "%s/priv", f->dir);
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    cfg.private_dir = dir;
    xpb_bus *b = NULL;
    assert_int_equal(make_bus(f, &cfg, &b, err, sizeof err), 0);
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0700);
    char want[192];
    snprintf(want, sizeof want, "ipc://%s/events", dir);
    assert_string_equal(xpb_bus_events_url(b), want);
    snprintf(want, sizeof want, "ipc://%s/requests", dir);
    assert_string_equal(xpb_bus_requests_url(b), want);
    /* a second bridge on the same endpoints: refused, the first is live */
    xpb_bus *b2 = NULL;
    assert_int_equal(make_bus(f, &cfg, &b2, err, sizeof err), XPB_EINVAL);
    assert_non_null(strstr(err, "another process is listening"));
    xpb_bus_free(b);

    /* a stale socket file (nobody listening) is removed */
    char path[192];
    snprintf(path, sizeof path, "%s/events", dir);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    assert_int_equal(make_bus(f, &cfg, &b, err, sizeof err), 0);
    xpb_bus_free(b);

    /* a directory others can write is refused */
    snprintf(dir, sizeof dir, "%s/open", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(make_bus(f, &cfg, &b, err, sizeof err), XPB_EINVAL);
    assert_non_null(strstr(err, "writable by group or others"));
    assert_null(b);
}

/* Every ipc:// endpoint's directory is checked like the private one, and
 * socket files get an explicit mode instead of whatever the umask gives. */
static void test_ipc_endpoint_directory(void **state)
{
    fx *f = *state;
    const struct {
        mode_t dir_mode;
        int rc;
        mode_t sock_mode;
    } cases[] = {
        {0777, XPB_EINVAL, 0},                  /* anyone could replace the socket */
        {0770, XPB_EINVAL, 0},                  /* the group could */
        {01777, 0, 0600},                       /* like /tmp: sticky, owner only */
        {0750, 0, 0660},                        /* a private dir shared with one group */
        {0700, 0, 0600},       {0755, 0, 0600}, /* others may look, not connect */
    };
    mode_t old = umask(0); /* what NNG would otherwise leave the socket at */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[160], ev[200], rq[200], err[512] = "";
        snprintf(dir, sizeof dir, "%s/d%zu", f->dir, i);
        assert_int_equal(mkdir(dir, 0700), 0);
        assert_int_equal(chmod(dir, cases[i].dir_mode), 0);
        snprintf(ev, sizeof ev, "ipc://%s/events", dir);
        snprintf(rq, sizeof rq, "ipc://%s/requests", f->dir);
        xpb_bus_config cfg;
        xpb_bus_config_init(&cfg);
        cfg.events_url = ev;
        cfg.requests_url = rq;
        xpb_bus *b = NULL;
        int rc = make_bus(f, &cfg, &b, err, sizeof err);
        if (rc != cases[i].rc) fail_msg("dir mode %04o: rc %d (%s)", cases[i].dir_mode, rc, err);
        if (rc != 0) {
            assert_non_null(strstr(err, "events_url"));
            assert_non_null(strstr(err, "without the sticky bit"));
            assert_null(b);
            continue;
        }
        struct stat sb;
        assert_int_equal(stat(ev + strlen("ipc://"), &sb), 0);
        if ((sb.st_mode & 0777) != cases[i].sock_mode)
            fail_msg("dir mode %04o: socket mode %04o, expected %04o", cases[i].dir_mode,
                     sb.st_mode & 0777, cases[i].sock_mode);
        xpb_bus_free(b);
    }
    umask(old);
}

/* A NUL inside a string over a real socket: refused naming the field, the
 * handler never called, counted in bad_strings. */
static void test_nul_in_body_refused(void **state)
{
    fx *f = *state;
    /* Request{api 1, id "nul", account "a@b", send{stanza{kind 1, body{text
     * "PLACE\0OLD"}}}} as raw bytes: protobuf-c would stop at the NUL. */
    static const uint8_t req[] = {0x08, 0x01, 0x12, 0x03, 'n',  'u',  'l',  0x1a, 0x03, 'a',  '@',
                                  'b',  0x62, 0x11, 0x0a, 0x0f, 0x08, 0x01, 0x52, 0x0b, 0x12, 0x09,
                                  'P',  'L',  'A',  'C',  'E',  0x00, 'O',  'L',  'D'};
    call c;
    roundtrip(f, f->req_url, copy_bytes(req, sizeof req), sizeof req, 2000, &c);
    assert_int_equal(c.rv, 0);
    assert_non_null(c.resp);
    if (c.resp->code != XPB__V1__ERROR_CODE__ERR_INVALID_RECORD ||
        strcmp(c.resp->error_text,
               "send.stanza.body.text: U+0000 at byte 5 is not an XML 1.0 character") != 0)
        fail_msg("code %d: %s", c.resp->code, c.resp->error_text);
    assert_string_equal(c.resp->request_id, "nul"); /* read from the wire for the refusal */
    call_free(&c);
    assert_int_equal(f->h.calls, 0);
    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.bad_strings, 1);
    assert_int_equal(st.malformed, 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_request_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_request_does_not_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_answered_from_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remembered_answer_serves_a_resend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_while_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deep_nesting_10000, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_stanza_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_dropped_by_nng, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_when_all_slots_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_answers_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_topics_batches_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_refuses_bad_topic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_keeps_interleaved_topics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_subscriber_sees_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prev_seq_chains_per_topic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prev_seq_forgotten_topic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_endpoint_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_private_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_requests_have_own_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipc_endpoint_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_in_body_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
