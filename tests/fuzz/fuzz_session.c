/* libFuzzer target for the c2s session (bridge/session/include/xpb_session.h) facing a hostile
 * or broken server, with a fake loop (no network). Input: one configuration
 * byte, then segments separated by NUL (never part of XML); a segment is a
 * control byte (transport event, timer, send, close) and server bytes.
 * Checks, besides ASan/UBSan and leaks: nothing sent, reported or armed after
 * STOPPED; no SASL data without TLS; each stanza handle reported at most once. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_session.h"

#define MAX_HANDLES 256u
/* RFC 5802 §5 and RFC 7677 §3 client nonces, so seeds hold whole exchanges. */
#define NONCE_SHA1 "fyko+d2lbbFgONRv9qkxdawL"
#define NONCE_SHA256 "rOprNGfwEbeRWgbNEkqO"

static struct fake {
    xpb_session *s;
    int up, tls, plaintext_ok, stopped;
    int starttls_called, fail_connect, fail_starttls;
    unsigned armed[XPB_TIMER_COUNT];
    uint64_t issued;
    int sending; /* inside xpb_session_send */
    uint8_t reported[MAX_HANDLES + 1];
    uint32_t rnd;
} F;

/* FUZZ_SESSION_TRACE=1 prints sends and events: to check what a seed reaches. */
static int trace = -1;

static void die(const char *what, const char *detail, size_t len)
{
    fprintf(stderr, "fuzz_session: %s: %.*s\n", what, (int)(len > 400 ? 400 : len),
            detail ? detail : "");
    abort();
}

static int starts_with(const char *data, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(data, prefix, n) == 0;
}

static int op_connect(void *io, const xpb_session_target *t)
{
    (void)io;
    if (t->domain == NULL || strcmp(t->domain, "example.com") != 0)
        die("connect: TLS would not verify the JID's domain", t->domain, 64);
    F.up = F.tls = F.starttls_called = 0;
    return F.fail_connect ? XPB_EINVAL : 0;
}

static int op_send(void *io, const char *data, size_t len)
{
    (void)io;
    if (trace) fprintf(stderr, "  send: %.*s\n", (int)len, data);
    xpb_session_state st = xpb_session_get_state(F.s);
    if (F.stopped || st == XPB_SS_STOPPED) die("send after STOPPED", data, len);
    if (!F.up) die("send without a transport", data, len);
    if (st == XPB_SS_TLS_HANDSHAKE) die("send during the TLS handshake", data, len);
    if (len == 0 || memchr(data, '\0', len) != NULL) die("empty send or NUL in XML", data, len);
    /* RFC 6120 §5.3.1, §6.4: no SASL exchange on an unprotected stream. Each
     * element is its own send, so a prefix test cannot be fooled by echoes. */
    if (!F.tls && !F.plaintext_ok &&
        (starts_with(data, len, "<auth") || starts_with(data, len, "<response")))
        die("SASL data without TLS", data, len);
    return 0;
}

static int op_starttls(void *io)
{
    (void)io;
    if (!F.up || F.tls) die("starttls on a down or encrypted link", NULL, 0);
    F.starttls_called = 1;
    return F.fail_starttls ? XPB_ETLS : 0;
}

static void op_disconnect(void *io)
{
    (void)io;
    F.up = F.tls = F.starttls_called = 0;
}

static void op_set_timer(void *io, xpb_session_timer t, unsigned ms)
{
    (void)io;
    if ((unsigned)t >= XPB_TIMER_COUNT) die("bad timer", NULL, 0);
    if (F.stopped && ms != 0) die("timer armed after STOPPED", NULL, 0);
    F.armed[t] = ms;
}

static void check_handle(const xpb_session_event *e)
{
    /* Without SM a stanza is reported ACKED inside xpb_session_send. */
    if (e->handle == 0 || e->handle > F.issued + F.sending) die("unknown handle reported", NULL, 0);
    if (e->handle > MAX_HANDLES) return;
    if (F.reported[e->handle]) die("handle reported twice", NULL, 0);
    F.reported[e->handle] = 1;
}

static void op_event(void *io, const xpb_session_event *e)
{
    (void)io;
    if (trace)
        fprintf(stderr, "event %d state %s code %d handle %llu: %s\n", (int)e->kind,
                xpb_session_state_name(e->state), e->code, (unsigned long long)e->handle,
                e->reason ? e->reason : "");
    if (F.stopped) die("event after STOPPED", e->reason, e->reason ? strlen(e->reason) : 0);
    switch (e->kind) {
    case XPB_SE_STATE:
        if (e->state != xpb_session_get_state(F.s)) die("state event disagrees", NULL, 0);
        F.stopped = e->state == XPB_SS_STOPPED;
        break;
    case XPB_SE_ONLINE:
        if (e->jid == NULL || e->jid[0] == '\0') die("online without a JID", NULL, 0);
        break;
    case XPB_SE_STANZA: {
        if (e->stanza == NULL) die("stanza event without a stanza", NULL, 0);
        xpb_buf b;
        xpb_buf_init(&b, 0);
        if (xpb_xml_write_node(&b, e->stanza, "jabber:client") != 0)
            die("received stanza does not write back", NULL, 0);
        xpb_buf_free(&b);
        break;
    }
    case XPB_SE_SENT: /* written (again after a reconnect): known, not yet final */
        if (e->handle == 0 || e->handle > F.issued + F.sending) die("unknown handle sent", NULL, 0);
        if (e->handle <= MAX_HANDLES && F.reported[e->handle])
            die("handle sent after its outcome", NULL, 0);
        break;
    case XPB_SE_SM: /* the XEP-0198 state changed: nothing to check here */
        break;
    case XPB_SE_ACKED:
    case XPB_SE_FAILED:
        check_handle(e);
        break;
    case XPB_SE_ERROR:
        if (e->code >= 0 || e->reason == NULL || e->reason[0] == '\0')
            die("error without code or reason", NULL, 0);
        break;
    default:
        die("unknown event kind", NULL, 0);
    }
}

static uint32_t op_random(void *io)
{
    (void)io;
    F.rnd = F.rnd * 1103515245u + 12345u;
    return F.rnd >> 1;
}

static const xpb_session_ops OPS = {
    .connect = op_connect,
    .send = op_send,
    .starttls = op_starttls,
    .disconnect = op_disconnect,
    .set_timer = op_set_timer,
    .event = op_event,
    .random = op_random,
};

/* ---- actions ------------------------------------------------------------- */

static void feed(const uint8_t *p, size_t n, size_t step)
{
    for (size_t off = 0; off < n; off += step)
        xpb_session_on_bytes(F.s, (const char *)p + off, n - off < step ? n - off : step);
}

static void connected(int tls)
{
    if (xpb_session_get_state(F.s) == XPB_SS_CONNECTING) {
        F.up = 1;
        F.tls = tls;
    }
    xpb_session_on_connected(F.s, tls);
}

/* Only armed timers fire, once, as with the real loop's one-shot events. */
static void fire(xpb_session_timer t)
{
    if (F.armed[t] == 0) return;
    F.armed[t] = 0;
    xpb_session_on_timer(F.s, t);
}

static void tls_event(unsigned p)
{
    static const unsigned char cb[32] = {1, 2, 3, 4, 5, 6, 7, 8};
    if (p & 1) {
        xpb_session_on_tls_failed(F.s, "fuzz: certificate refused");
        F.up = F.tls = 0;
        return;
    }
    if (xpb_session_get_state(F.s) == XPB_SS_TLS_HANDSHAKE && F.starttls_called) F.tls = 1;
    if (p & 2)
        xpb_session_on_tls_ready(F.s, "tls-exporter", cb, sizeof cb);
    else
        xpb_session_on_tls_ready(F.s, NULL, NULL, 0);
}

/* A small valid record (or, p & 8, one the checks refuse). */
static void send_record(unsigned p)
{
    Xpb__V1__Text text = XPB__V1__TEXT__INIT;
    text.text = (p & 4) ? "<&'\"]]>" : "hello";
    Xpb__V1__Text *bodies[1] = {&text};
    xpb_stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = 1;
    st.kind = XPB__V1__KIND__KIND_MESSAGE;
    st.has_type = 1;
    st.type = XPB__V1__STANZA_TYPE__TYPE_CHAT;
    st.to = (p & 8) ? "a@@b" : "friend@example.com";
    st.id = (p & 2) ? "fixed-id" : NULL;
    st.n_body = 1;
    st.body = bodies;
    xpb_session_state before = xpb_session_get_state(F.s);
    uint64_t h = 0;
    F.sending = 1;
    int rc = xpb_session_send(F.s, &st, &h);
    F.sending = 0;
    if (rc == 0) {
        if (h != F.issued + 1) die("handles not consecutive", NULL, 0);
        F.issued = h;
    } else if (F.issued < MAX_HANDLES && F.reported[F.issued + 1]) {
        die("refused stanza reported", NULL, 0);
    } else if (!(p & 8) && rc != XPB_EQUEUEFULL &&
               !(rc == XPB_ENOTCONN && (before == XPB_SS_STOPPED || before == XPB_SS_CLOSING))) {
        die("valid record refused", xpb_strerror(rc), strlen(xpb_strerror(rc)));
    }
}

/* p & 1: close; else p & 16 in STOPPED: start again; else the reconnect
 * timer (when armed) and a connect (p & 4: refused; p & 8: STARTTLS fails). */
static void misc(unsigned p)
{
    if ((p & 17) == 16 && xpb_session_get_state(F.s) == XPB_SS_STOPPED) {
        F.stopped = 0;
        if (xpb_session_start(F.s) != 0) die("start after STOPPED refused", NULL, 0);
        connected((p & 2) != 0);
        return;
    }
    if (p & 1) {
        xpb_session_close(F.s);
        if (F.stopped) F.up = F.tls = 0;
        return;
    }
    F.fail_connect = (p & 4) != 0;
    F.fail_starttls = (p & 8) != 0;
    fire(XPB_TIMER_RECONNECT);
    connected((p & 2) != 0);
}

/* Control byte: bits 0-2 the action, bits 3-7 its parameter p. A segment
 * that starts with '<' is all server bytes. */
static void segment(const uint8_t *seg, size_t n)
{
    if (n == 0) return;
    if (seg[0] == '<') {
        feed(seg, n, n);
        return;
    }
    unsigned a = seg[0] & 7u, p = seg[0] >> 3;
    if (trace) fprintf(stderr, "ctl a=%u p=%u n=%zu\n", a, p, n);
    size_t step = n - 1 ? n - 1 : 1;
    switch (a) {
    case 0:
        break;
    case 1:
        step = p + 1;
        break;
    case 2:
        fire((xpb_session_timer)(p % XPB_TIMER_COUNT));
        break;
    case 3:
        xpb_session_on_disconnected(F.s, (p & 1) ? NULL : "fuzz: connection reset");
        F.up = F.tls = 0;
        break;
    case 4:
        tls_event(p);
        break;
    case 5:
        connected(p & 1);
        break;
    case 6:
        send_record(p);
        break;
    default:
        misc(p);
        break;
    }
    feed(seg + 1, n - 1, step);
}

/* Configuration byte: bit 0 TLS from the start (direct TLS / wss), bit 1
 * WebSocket, bit 2 stream management, bit 3 allow_plaintext, bit 4 a resource
 * in the JID, bit 5 roster and presence text, bit 6 the SCRAM-SHA-256 nonce,
 * bit 7 tiny queue and frequent acks. */
static int make_session(uint8_t m)
{
    xpb_session_config c;
    xpb_session_config_init(&c);
    c.jid = (m & 0x10) ? "user@example.com/r1" : "user@example.com";
    c.password = (const unsigned char *)"pencil";
    c.password_len = 6;
    c.transport = (m & 2)   ? XPB_TRANSPORT_WEBSOCKET
                  : (m & 1) ? XPB_TRANSPORT_DIRECT_TLS
                            : XPB_TRANSPORT_STARTTLS;
    c.ws_url = (m & 1) ? "wss://example.com/ws" : "ws://example.com/ws";
    c.stream_management = (m & 4) != 0;
    c.allow_plaintext = (m & 8) != 0;
    c.fetch_roster = (m & 0x20) != 0;
    c.presence_show = (m & 0x20) ? "away" : NULL;
    c.presence_status = (m & 0x20) ? "out <&> about" : NULL;
    c.queue_max = (m & 0x80) ? 3 : 0;
    c.ack_every = (m & 0x80) ? 2 : 0;
    if (xpb_session_new(&F.s, &c, &OPS, NULL) != 0) return -1;
    if (xpb_session_test_set_sasl_nonce(F.s, (m & 0x40) ? NONCE_SHA256 : NONCE_SHA1) != 0)
        return -1;
    return 0;
}

/* The user's stanzas not yet ACKED or FAILED stay within the session's
 * bounds: queue_max waiting for the connection plus queue_max x
 * XPB_SESSION_UNACKED_FACTOR sent and not yet acked (the session's own
 * stanzas, e.g. ping answers, are not counted by them). */
static void check_queue(uint8_t m)
{
    uint64_t open = 0;
    for (uint64_t h = 1; h <= F.issued && h <= MAX_HANDLES; h++)
        open += !F.reported[h];
    xpb_session_stats st;
    xpb_session_get_stats(F.s, &st);
    uint64_t qmax = (m & 0x80) ? 3u : XPB_SESSION_DEFAULT_QUEUE_MAX;
    if (open > qmax * (1u + XPB_SESSION_UNACKED_FACTOR) ||
        open > (uint64_t)st.queued + st.unacked)
        die("user stanzas over queue_max or missing from the queue", NULL, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (trace < 0) trace = getenv("FUZZ_SESSION_TRACE") != NULL;
    memset(&F, 0, sizeof F);
    F.rnd = 0x12345678u;
    F.plaintext_ok = (data[0] & 8) != 0;
    if (make_session(data[0]) != 0) abort();
    if (xpb_session_start(F.s) != 0) abort();
    connected(data[0] & 1);
    const uint8_t *p = data + 1, *end = data + size;
    while (p < end) {
        const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
        size_t n = nul ? (size_t)(nul - p) : (size_t)(end - p);
        segment(p, n);
        check_queue(data[0]);
        p += n + 1;
    }
    xpb_session_free(F.s);
    return 0;
}
