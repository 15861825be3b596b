/* WebSocket client transport (RFC 6455) carrying XMPP framed per RFC 7395:
 * one text message = one XML element. The framing codec at the top is pure
 * (tests/bridge/test_websocket.c); the link below it rides on a TCP or TLS
 * stream from tcp_tls.c. */
#include "transport.h"
#include "xpb_error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- frames (RFC 6455 §5.2) ------------------------------------------------ */

int xpb_ws_encode_frag(xpb_buf *out, int opcode, int fin, const void *data, size_t len,
                       const unsigned char mask[4])
{
    unsigned char hdr[14];
    size_t h = 0;
    hdr[h++] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0F));
    unsigned char mbit = mask ? 0x80 : 0;
    if (len < 126) {
        hdr[h++] = (unsigned char)(mbit | len);
    } else if (len <= 0xFFFF) {
        hdr[h++] = mbit | 126;
        hdr[h++] = (unsigned char)(len >> 8);
        hdr[h++] = (unsigned char)len;
    } else {
        hdr[h++] = mbit | 127;
        for (int i = 7; i >= 0; i--) hdr[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(hdr + h, mask, 4);
        h += 4;
    }
    size_t start = out->len;
    int rc = xpb_buf_append(out, hdr, h);
    if (rc == 0) rc = xpb_buf_append(out, data, len);
    if (rc != 0) {
        out->len = start;
        return rc;
    }
    if (mask) {
        unsigned char *p = (unsigned char *)out->data + start + h;
        for (size_t i = 0; i < len; i++) p[i] ^= mask[i & 3];
    }
    return 0;
}

int xpb_ws_encode(xpb_buf *out, int opcode, const void *data, size_t len,
                  const unsigned char mask[4])
{
    return xpb_ws_encode_frag(out, opcode, 1, data, len, mask);
}

static int known_opcode(int op)
{
    return op == XPB_WS_OP_CONT || op == XPB_WS_OP_TEXT || op == XPB_WS_OP_BINARY ||
           op == XPB_WS_OP_CLOSE || op == XPB_WS_OP_PING || op == XPB_WS_OP_PONG;
}

/* Header fields after the first two bytes: extended length and mask key. */
static long parse_header(const unsigned char *buf, size_t len, xpb_ws_frame *f)
{
    size_t h = 2;
    uint64_t plen = buf[1] & 0x7F;
    if (plen == 126) {
        if (len < 4) return 0;
        plen = ((uint64_t)buf[2] << 8) | buf[3];
        h = 4;
    } else if (plen == 127) {
        if (len < 10) return 0;
        plen = 0;
        for (int i = 0; i < 8; i++) plen = (plen << 8) | buf[2 + i];
        h = 10;
    }
    if (f->masked) h += 4;
    if (len < h) return 0;
    f->payload_len = plen;
    return (long)h;
}

long xpb_ws_parse(unsigned char *buf, size_t len, size_t max_payload, xpb_ws_frame *f, char *err,
                  size_t errlen)
{
    if (len < 2) return 0;
    memset(f, 0, sizeof *f);
    f->fin = (buf[0] & 0x80) != 0;
    f->opcode = buf[0] & 0x0F;
    f->masked = (buf[1] & 0x80) != 0;
    if (buf[0] & 0x70) {
        snprintf(err, errlen, "WebSocket: reserved bits set without a negotiated extension");
        return XPB_EWEBSOCKET;
    }
    if (!known_opcode(f->opcode)) {
        snprintf(err, errlen, "WebSocket: unknown opcode 0x%x", (unsigned)f->opcode);
        return XPB_EWEBSOCKET;
    }
    long h = parse_header(buf, len, f);
    if (h <= 0) return h;
    if (f->opcode & 0x8) {
        /* §5.5: control frames are not fragmented and carry <= 125 bytes. */
        if (!f->fin || f->payload_len > 125) {
            snprintf(err, errlen, "WebSocket: control frame fragmented or longer than 125 bytes");
            return XPB_EWEBSOCKET;
        }
    }
    if (f->payload_len >> 63) {
        snprintf(err, errlen, "WebSocket: 64-bit length with the most significant bit set");
        return XPB_EWEBSOCKET;
    }
    if (f->payload_len > max_payload) {
        snprintf(err, errlen, "WebSocket: frame of %llu bytes exceeds the %zu-byte limit",
                 (unsigned long long)f->payload_len, max_payload);
        return XPB_EWEBSOCKET;
    }
    if (len - (size_t)h < f->payload_len) return 0;
    f->payload = buf + h;
    if (f->masked) {
        const unsigned char *m = buf + h - 4;
        for (size_t i = 0; i < f->payload_len; i++) f->payload[i] ^= m[i & 3];
    }
    return h + (long)f->payload_len;
}

/* ---- messages (RFC 6455 §5.4) --------------------------------------------- */

void xpb_ws_assembler_init(xpb_ws_assembler *a, size_t max)
{
    memset(a, 0, sizeof *a);
    a->max = max ? max : XPB_WS_DEFAULT_MAX_MESSAGE;
    xpb_buf_init(&a->msg, a->max);
}

void xpb_ws_assembler_free(xpb_ws_assembler *a)
{
    xpb_buf_free(&a->msg);
}

static int too_big(xpb_ws_assembler *a, char *err, size_t errlen)
{
    a->in_message = 0; /* the connection closes after an error; start clean anyway */
    snprintf(err, errlen, "WebSocket: message exceeds the %zu-byte limit", a->max);
    return XPB_EWEBSOCKET;
}

int xpb_ws_assemble(xpb_ws_assembler *a, const xpb_ws_frame *f, int *opcode, const char **data,
                    size_t *len, char *err, size_t errlen)
{
    if (f->opcode & 0x8 || (f->opcode != XPB_WS_OP_CONT && f->fin && !a->in_message)) {
        if (f->payload_len > a->max) return too_big(a, err, errlen);
        *opcode = f->opcode;
        *data = (const char *)f->payload;
        *len = (size_t)f->payload_len;
        return 1;
    }
    if (f->opcode == XPB_WS_OP_CONT ? !a->in_message : a->in_message) {
        snprintf(err, errlen, "WebSocket: %s",
                 a->in_message ? "new data frame inside a fragmented message"
                               : "continuation frame without a message to continue");
        a->in_message = 0;
        return XPB_EWEBSOCKET;
    }
    if (f->opcode != XPB_WS_OP_CONT) {
        xpb_buf_reset(&a->msg);
        a->in_message = 1;
        a->opcode = f->opcode;
    }
    if (f->payload_len > a->max - a->msg.len ||
        xpb_buf_append(&a->msg, f->payload, (size_t)f->payload_len) != 0)
        return too_big(a, err, errlen);
    if (!f->fin) return 0;
    a->in_message = 0;
    *opcode = a->opcode;
    *data = a->msg.data ? a->msg.data : "";
    *len = a->msg.len;
    return 1;
}

/* ---- opening handshake (RFC 6455 §4.1, RFC 7395 §3.1) --------------------- */

void xpb_ws_accept_for_key(const char *key, char out[29])
{
    char cat[128];
    unsigned char digest[20];
    int n = snprintf(cat, sizeof cat, "%s%s", key, XPB_WS_GUID);
    if (n < 0 || (size_t)n >= sizeof cat) n = 0;
    xpb_tls_sha1(cat, (size_t)n, digest);
    xpb_base64_encode(digest, sizeof digest, out);
}

int xpb_ws_write_request(xpb_buf *out, const char *host_header, const char *path,
                         const char *key)
{
    char req[1536];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n",
                     path, host_header, key);
    if (n < 0 || (size_t)n >= sizeof req) return XPB_EINVAL;
    return xpb_buf_append(out, req, (size_t)n);
}

/* Does the comma-separated header value hold this token (case-insensitive)? */
static int has_token(const char *v, size_t vlen, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t s = i;
        while (i < vlen && v[i] != ',') i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0) return 1;
    }
    return 0;
}

typedef struct ws_seen {
    int upgrade, connection, accept, protocol;
} ws_seen;

static void check_header(const char *line, size_t len, const char *accept, ws_seen *seen)
{
    const char *colon = memchr(line, ':', len);
    if (!colon) return;
    size_t nl = (size_t)(colon - line);
    const char *v = colon + 1;
    size_t vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
#define IS(name) (nl == strlen(name) && strncasecmp(line, name, nl) == 0)
    if (IS("Upgrade")) seen->upgrade = has_token(v, vl, "websocket");
    else if (IS("Connection")) seen->connection = has_token(v, vl, "upgrade");
    else if (IS("Sec-WebSocket-Accept")) seen->accept = vl == 28 && memcmp(v, accept, 28) == 0;
    else if (IS("Sec-WebSocket-Protocol")) seen->protocol = vl == 4 && memcmp(v, "xmpp", 4) == 0;
#undef IS
}

static const char *find_head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
            return buf + i + 4;
    return NULL;
}

static long ws_fail(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "WebSocket handshake: %s", what);
    return XPB_EWEBSOCKET;
}

long xpb_ws_check_response(const char *buf, size_t len, const char *key, char *err,
                           size_t errlen)
{
    const char *end = find_head_end(buf, len < XPB_WS_MAX_HANDSHAKE ? len : XPB_WS_MAX_HANDSHAKE);
    if (!end)
        return len >= XPB_WS_MAX_HANDSHAKE ? ws_fail(err, errlen, "response head too long") : 0;
    if ((size_t)(end - buf) < 12 || memcmp(buf, "HTTP/1.1 ", 9) != 0) 
        return ws_fail(err, errlen, "not an HTTP/1.1 response");
    if (memcmp(buf + 9, "101", 3) != 0) {
        const char *eol = memchr(buf, '\r', (size_t)(end - buf));
        char what[160];
        snprintf(what, sizeof what, "server answered \"%.*s\" instead of 101",
                 (int)(eol - buf > 100 ? 100 : eol - buf), buf);
        return ws_fail(err, errlen, what);
    }
    char accept[29];
    xpb_ws_accept_for_key(key, accept);
    ws_seen seen = {0};
    const char *p = (const char *)memchr(buf, '\n', (size_t)(end - buf)) + 1;
    while (p < end - 2) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        check_header(p, (size_t)(eol - p), accept, &seen);
        p = eol + 2;
    }
    if (!seen.upgrade || !seen.connection)
        return ws_fail(err, errlen, "missing Upgrade: websocket / Connection: Upgrade");
    if (!seen.accept) return ws_fail(err, errlen, "Sec-WebSocket-Accept does not match the key");
    if (!seen.protocol)
        return ws_fail(err, errlen, "server did not agree to Sec-WebSocket-Protocol: xmpp");
    return (long)(end - buf);
}

int xpb_ws_parse_url(const char *url, char *host, size_t hostlen, uint16_t *port, char *path,
                     size_t pathlen, int *tls)
{
    const char *p;
    if (strncmp(url, "ws://", 5) == 0) *tls = 0, p = url + 5;
    else if (strncmp(url, "wss://", 6) == 0) *tls = 1, p = url + 6;
    else return XPB_EINVAL;
    const char *hs = p, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he) return XPB_EINVAL;
        p = he + 1;
    } else {
        he = p + strcspn(p, ":/");
        p = he;
    }
    if (he == hs || (size_t)(he - hs) >= hostlen) return XPB_EINVAL;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    unsigned long pn = *tls ? 443 : 80;
    if (*p == ':') {
        char *e;
        pn = strtoul(p + 1, &e, 10);
        if (e == p + 1 || pn == 0 || pn > 65535) return XPB_EINVAL;
        p = e;
    }
    if (*p != '\0' && *p != '/') return XPB_EINVAL;
    const char *ps = *p ? p : "/";
    if (strlen(ps) >= pathlen) return XPB_EINVAL;
    memcpy(path, ps, strlen(ps) + 1);
    *port = (uint16_t)pn;
    return 0;
}

int xpb_ws_parse_close(const unsigned char *p, size_t len, unsigned *code)
{
    if (len == 0) {
        *code = 1005; /* §7.1.5: no status code was present */
        return 0;
    }
    if (len == 1) return XPB_EWEBSOCKET;
    unsigned c = ((unsigned)p[0] << 8) | p[1];
    /* §7.4: 1004-1006 and 1015 must not be sent; 1012-1014 are registered since. */
    int ok = (c >= 1000 && c <= 1014 && c != 1004 && c != 1005 && c != 1006) ||
             (c >= 3000 && c <= 4999);
    if (!ok) return XPB_EWEBSOCKET;
    *code = c;
    return 0;
}

/* ---- the link ---------------------------------------------------------------- */

typedef struct xpb_ws_link {
    xpb_link link;
    xpb_link *stream;
    xpb_link_cb cb;
    void *ud;
    int tls, upgraded, closed, close_sent, in_cb, dead;
    char key[32];
    char host_header[300];
    char path[1024];
    xpb_buf in;       /* raw bytes not yet parsed */
    xpb_buf out;      /* scratch for frames */
    xpb_ws_assembler msgs;
    char cb_type[32]; /* channel binding kept until the upgrade is done */
    unsigned char cb_data[64];
    size_t cb_len;
} xpb_ws_link;

static void ws_destroy(xpb_ws_link *w)
{
    if (w->stream) w->stream->ops->free(w->stream);
    xpb_buf_free(&w->in);
    xpb_buf_free(&w->out);
    xpb_ws_assembler_free(&w->msgs);
    free(w);
}

static void ws_leave(xpb_ws_link *w)
{
    if (--w->in_cb == 0 && w->dead) ws_destroy(w);
}

static void ws_closed(xpb_ws_link *w, int err, const char *reason)
{
    if (w->closed || w->dead) return;
    w->closed = 1;
    w->cb.closed(w->ud, err, reason);
}

static int ws_send_frame(xpb_ws_link *w, int opcode, const void *data, size_t len)
{
    unsigned char mask[4];
    if (xpb_tls_random_bytes(mask, sizeof mask) != 0) return XPB_ESASLCRYPTO;
    xpb_buf_reset(&w->out);
    int rc = xpb_ws_encode(&w->out, opcode, data, len, mask);
    if (rc == 0) rc = w->stream->ops->send(w->stream, w->out.data, w->out.len);
    return rc;
}

static void on_stream_connected(void *ud, int tls)
{
    xpb_ws_link *w = ud;
    (void)tls;
    xpb_buf_reset(&w->out);
    int rc = xpb_ws_write_request(&w->out, w->host_header, w->path, w->key);
    if (rc == 0) rc = w->stream->ops->send(w->stream, w->out.data, w->out.len);
    if (rc != 0) ws_closed(w, XPB_EWEBSOCKET, "WebSocket: cannot send the opening handshake");
}

static void on_stream_tls(void *ud, const char *type, const unsigned char *cb, size_t len)
{
    xpb_ws_link *w = ud;
    w->cb_type[0] = '\0';
    if (type && len <= sizeof w->cb_data && strlen(type) < sizeof w->cb_type) {
        memcpy(w->cb_type, type, strlen(type) + 1);
        memcpy(w->cb_data, cb, len);
        w->cb_len = len;
    }
}

/* A control frame: answer pings (§5.5.2), answer and report a close (§5.5.1). */
static void ws_control(xpb_ws_link *w, int op, const char *data, size_t len)
{
    if (op == XPB_WS_OP_PING) {
        ws_send_frame(w, XPB_WS_OP_PONG, data, len);
    } else if (op == XPB_WS_OP_CLOSE) {
        unsigned code = 0;
        char msg[200];
        if (xpb_ws_parse_close((const unsigned char *)data, len, &code) != 0) {
            ws_closed(w, XPB_EWEBSOCKET, "WebSocket: invalid close frame from the server");
            return;
        }
        if (!w->close_sent) {
            unsigned char echo[2] = {(unsigned char)(code >> 8), (unsigned char)code};
            ws_send_frame(w, XPB_WS_OP_CLOSE, echo, code == 1005 ? 0 : 2);
            w->close_sent = 1;
        }
        int rl = len > 2 ? (int)(len - 2 > 120 ? 120 : len - 2) : 0;
        snprintf(msg, sizeof msg, "WebSocket closed by the server (code %u%s%.*s)", code,
                 rl ? ": " : "", rl, rl ? data + 2 : "");
        ws_closed(w, code == 1000 ? XPB_ENOTCONN : XPB_EWEBSOCKET, msg);
    }
}

static int ws_one_message(xpb_ws_link *w, xpb_ws_frame *f)
{
    char err[200];
    int op;
    const char *data;
    size_t len;
    if (f->masked) {
        ws_closed(w, XPB_EWEBSOCKET, "WebSocket: masked frame from the server (RFC 6455 §5.1)");
        return -1;
    }
    int rc = xpb_ws_assemble(&w->msgs, f, &op, &data, &len, err, sizeof err);
    if (rc < 0) {
        ws_closed(w, rc, err);
        return -1;
    }
    if (rc == 0) return 0;
    if (op & 0x8) {
        ws_control(w, op, data, len);
    } else if (op == XPB_WS_OP_BINARY) {
        /* RFC 7395 §3.2: XMPP is carried in text messages only. */
        ws_closed(w, XPB_EWEBSOCKET, "WebSocket: binary message (RFC 7395 needs text)");
        return -1;
    } else {
        w->cb.bytes(w->ud, data, len);
    }
    return 0;
}

static void ws_consume(xpb_ws_link *w, size_t n)
{
    memmove(w->in.data, w->in.data + n, w->in.len - n);
    w->in.len -= n;
}

static void ws_upgrade_done(xpb_ws_link *w)
{
    w->upgraded = 1;
    if (w->tls) {
        w->cb.tls_ready(w->ud, w->cb_type[0] ? w->cb_type : NULL, w->cb_data, w->cb_len);
        if (w->dead || w->closed) return;
    }
    w->cb.connected(w->ud, w->tls);
}

static void ws_process(xpb_ws_link *w)
{
    char err[200];
    if (!w->upgraded) {
        long n = xpb_ws_check_response(w->in.data, w->in.len, w->key, err, sizeof err);
        if (n < 0) ws_closed(w, XPB_EWEBSOCKET, err);
        if (n <= 0) return;
        ws_consume(w, (size_t)n);
        ws_upgrade_done(w);
    }
    while (!w->dead && !w->closed && w->in.len > 0) {
        xpb_ws_frame f;
        long n = xpb_ws_parse((unsigned char *)w->in.data, w->in.len, w->msgs.max, &f, err,
                              sizeof err);
        if (n < 0) ws_closed(w, XPB_EWEBSOCKET, err);
        if (n <= 0) return;
        int rc = ws_one_message(w, &f);
        if (rc != 0 || w->dead) return;
        ws_consume(w, (size_t)n);
    }
}

static void on_stream_bytes(void *ud, const char *data, size_t len)
{
    xpb_ws_link *w = ud;
    if (w->closed || w->dead) return;
    w->in_cb++;
    if (xpb_buf_append(&w->in, data, len) != 0)
        ws_closed(w, XPB_EWEBSOCKET, "WebSocket: input buffer limit exceeded");
    else
        ws_process(w);
    ws_leave(w);
}

static void on_stream_closed(void *ud, int err, const char *reason)
{
    xpb_ws_link *w = ud;
    w->in_cb++;
    ws_closed(w, err, reason);
    ws_leave(w);
}

static int ws_send(xpb_link *l, const char *data, size_t len)
{
    xpb_ws_link *w = (xpb_ws_link *)l;
    if (!w->upgraded || w->closed || w->dead) return XPB_ENOTCONN;
    return ws_send_frame(w, XPB_WS_OP_TEXT, data, len);
}

static int ws_starttls(xpb_link *l)
{
    (void)l;
    return XPB_EINVAL; /* RFC 7395 §3.6: no STARTTLS over WebSocket; use wss:// */
}

static void ws_cut(xpb_link *l)
{
    xpb_ws_link *w = (xpb_ws_link *)l;
    w->stream->ops->cut(w->stream);
}

static void ws_freeze(xpb_link *l)
{
    xpb_ws_link *w = (xpb_ws_link *)l;
    w->stream->ops->freeze(w->stream);
}

static void ws_free(xpb_link *l)
{
    xpb_ws_link *w = (xpb_ws_link *)l;
    if (!w) return;
    w->dead = 1;
    if (w->in_cb == 0) ws_destroy(w);
}

static const xpb_link_ops ws_ops = {
    .name = "websocket",
    .send = ws_send,
    .starttls = ws_starttls,
    .cut = ws_cut,
    .freeze = ws_freeze,
    .free = ws_free,
};

static int ws_setup(xpb_ws_link *w, const char *url)
{
    char host[256];
    uint16_t port;
    unsigned char raw[16];
    if (xpb_ws_parse_url(url, host, sizeof host, &port, w->path, sizeof w->path, &w->tls) != 0)
        return XPB_EINVAL;
    int v6 = strchr(host, ':') != NULL;
    int dflt = port == (w->tls ? 443 : 80);
    snprintf(w->host_header, sizeof w->host_header, dflt ? "%s%s%s" : "%s%s%s:%u",
             v6 ? "[" : "", host, v6 ? "]" : "", (unsigned)port);
    /* §4.1: the key is 16 random bytes, base64. */
    if (xpb_tls_random_bytes(raw, sizeof raw) != 0) return XPB_ESASLCRYPTO;
    xpb_base64_encode(raw, sizeof raw, w->key);
    xpb_buf_init(&w->in, (size_t)XPB_WS_DEFAULT_MAX_MESSAGE + 14 + 16384 + XPB_WS_MAX_HANDSHAKE);
    xpb_buf_init(&w->out, 0);
    xpb_ws_assembler_init(&w->msgs, XPB_WS_DEFAULT_MAX_MESSAGE);
    return 0;
}

int xpb_ws_link_new(xpb_link **out, const xpb_stream_params *p, const char *url,
                    const xpb_link_cb *cb, void *ud)
{
    static const xpb_link_cb up = {
        .connected = on_stream_connected,
        .tls_ready = on_stream_tls,
        .bytes = on_stream_bytes,
        .closed = on_stream_closed,
    };
    if (!out || !p || !url || !cb) return XPB_EINVAL;
    xpb_ws_link *w = calloc(1, sizeof *w);
    if (!w) return XPB_ENOMEM;
    w->link.ops = &ws_ops;
    w->cb = *cb;
    w->ud = ud;
    int rc = ws_setup(w, url);
    xpb_stream_params sp = *p;
    sp.direct_tls = w->tls;
    sp.alpn = w->tls ? "http/1.1" : NULL;
    if (rc == 0) rc = xpb_stream_new(&w->stream, &sp, &up, w);
    if (rc != 0) {
        w->stream = NULL;
        ws_destroy(w);
        return rc;
    }
    *out = &w->link;
    return 0;
}
