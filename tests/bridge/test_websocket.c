/* Tests for the WebSocket codec in bridge/io/websocket.c (RFC 6455): frame
 * lengths at the 7/16/64-bit boundaries, masking, the §5.7 examples, every
 * prefix as "incomplete", control frames, fragmentation, close codes, the
 * size limit, the opening handshake (§1.3 example key) and ws:// URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "transport.h"
#include "xpb_error.h"

#include <stdlib.h>
#include <string.h>

static const unsigned char MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* RFC 6455 §5.7 examples, byte for byte. */
static void test_rfc_examples(void **state)
{
    (void)state;
    static const unsigned char unmasked[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    static const unsigned char masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f,
                                           0x9f, 0x4d, 0x51, 0x58};
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_ws_encode(&b, XPB_WS_OP_TEXT, "Hello", 5, NULL), 0);
    assert_int_equal(b.len, sizeof unmasked);
    assert_memory_equal(b.data, unmasked, sizeof unmasked);
    xpb_buf_reset(&b);
    assert_int_equal(xpb_ws_encode(&b, XPB_WS_OP_TEXT, "Hello", 5, MASK), 0);
    assert_int_equal(b.len, sizeof masked);
    assert_memory_equal(b.data, masked, sizeof masked);

    xpb_ws_frame f;
    char err[200];
    assert_int_equal(xpb_ws_parse((unsigned char *)b.data, b.len, 1000, &f, err, sizeof err),
                     (long)sizeof masked);
    assert_true(f.fin);
    assert_true(f.masked);
    assert_int_equal(f.opcode, XPB_WS_OP_TEXT);
    assert_int_equal(f.payload_len, 5);
    assert_memory_equal(f.payload, "Hello", 5);
    xpb_buf_free(&b);
}

/* Header size and length field at each boundary, masked and not; the payload
 * round-trips and every strict prefix of the frame is "need more". */
static void test_lengths(void **state)
{
    (void)state;
    static const struct { size_t len; size_t hdr; unsigned char len7; } cases[] = {
        {0, 2, 0},        {1, 2, 1},          {125, 2, 125},        {126, 4, 126},
        {65535, 4, 126},  {65536, 10, 127},   {70000, 10, 127},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int m = 0; m < 2; m++) {
            size_t n = cases[i].len;
            unsigned char *payload = malloc(n + 1);
            for (size_t k = 0; k < n; k++) payload[k] = (unsigned char)(k * 7 + 3);
            xpb_buf b;
            xpb_buf_init(&b, 0);
            assert_int_equal(xpb_ws_encode(&b, XPB_WS_OP_BINARY, payload, n, m ? MASK : NULL), 0);
            size_t hdr = cases[i].hdr + (m ? 4 : 0);
            assert_int_equal(b.len, hdr + n);
            assert_int_equal((unsigned char)b.data[1] & 0x7F, cases[i].len7);
            assert_int_equal(((unsigned char)b.data[1] & 0x80) != 0, m);
            if (cases[i].len7 == 126)
                assert_int_equal(((unsigned char)b.data[2] << 8) | (unsigned char)b.data[3], n);
            xpb_ws_frame f;
            char err[200];
            for (size_t cut = 0; cut < b.len; cut += (cut < 16 ? 1 : 997))
                assert_int_equal(xpb_ws_parse((unsigned char *)b.data, cut, 1u << 20, &f, err,
                                              sizeof err), 0);
            assert_int_equal(xpb_ws_parse((unsigned char *)b.data, b.len, 1u << 20, &f, err,
                                          sizeof err), (long)b.len);
            assert_int_equal(f.payload_len, n);
            if (n) assert_memory_equal(f.payload, payload, n);
            xpb_buf_free(&b);
            free(payload);
        }
    }
}

static void test_limit(void **state)
{
    (void)state;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    unsigned char *big = calloc(1, 65536);
    assert_int_equal(xpb_ws_encode(&b, XPB_WS_OP_TEXT, big, 65536, NULL), 0);
    xpb_ws_frame f;
    char err[200] = "";
    /* Refused from the header alone, before the payload arrives. */
    assert_int_equal(xpb_ws_parse((unsigned char *)b.data, 10, 65535, &f, err, sizeof err),
                     XPB_EWEBSOCKET);
    assert_non_null(strstr(err, "65535"));
    assert_int_equal(xpb_ws_parse((unsigned char *)b.data, b.len, 65536, &f, err, sizeof err),
                     (long)b.len);
    /* A 64-bit length with the top bit set (§5.2). */
    unsigned char huge[10] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(xpb_ws_parse(huge, sizeof huge, SIZE_MAX, &f, err, sizeof err),
                     XPB_EWEBSOCKET);
    free(big);
    xpb_buf_free(&b);
}

static void test_bad_frames(void **state)
{
    (void)state;
    static const struct { unsigned char b0, b1; const char *why; } cases[] = {
        {0x89, 126, "control"},   /* ping with a 16-bit length (> 125) */
        {0x09, 0, "control"},     /* fragmented ping */
        {0x88 | 0x00, 0x7E, "control"},
        {0xC1, 0, "reserved"},    /* RSV1 without an extension */
        {0x83, 0, "opcode"},      /* reserved data opcode */
        {0x8B, 0, "opcode"},      /* reserved control opcode */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char buf[8] = {cases[i].b0, cases[i].b1, 0, 200};
        xpb_ws_frame f;
        char err[200] = "";
        assert_int_equal(xpb_ws_parse(buf, sizeof buf, 1000, &f, err, sizeof err),
                         XPB_EWEBSOCKET);
        assert_non_null(strstr(err, cases[i].why));
    }
}

/* Feeds a frame through parse + assemble; returns assemble's result. */
static int feed(xpb_ws_assembler *a, int op, int fin, const char *data, int *out_op,
                const char **out, size_t *out_len)
{
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_ws_encode_frag(&b, op, fin, data, strlen(data), NULL), 0);
    xpb_ws_frame f;
    char err[200];
    assert_true(xpb_ws_parse((unsigned char *)b.data, b.len, 1000, &f, err, sizeof err) > 0);
    int rc = xpb_ws_assemble(a, &f, out_op, out, out_len, err, sizeof err);
    static char keep[256];
    if (rc == 1) {
        memcpy(keep, *out, *out_len < sizeof keep ? *out_len : sizeof keep);
        *out = keep; /* the frame buffer goes away below */
    }
    xpb_buf_free(&b);
    return rc;
}

static void test_fragments(void **state)
{
    (void)state;
    xpb_ws_assembler a;
    xpb_ws_assembler_init(&a, 10);
    int op;
    const char *d;
    size_t n;
    /* §5.4: "Hel" + ping in between + "lo" */
    assert_int_equal(feed(&a, XPB_WS_OP_TEXT, 0, "Hel", &op, &d, &n), 0);
    assert_int_equal(feed(&a, XPB_WS_OP_PING, 1, "p", &op, &d, &n), 1);
    assert_int_equal(op, XPB_WS_OP_PING);
    assert_int_equal(n, 1);
    assert_int_equal(feed(&a, XPB_WS_OP_CONT, 0, "l", &op, &d, &n), 0);
    assert_int_equal(feed(&a, XPB_WS_OP_CONT, 1, "o", &op, &d, &n), 1);
    assert_int_equal(op, XPB_WS_OP_TEXT);
    assert_int_equal(n, 5);
    assert_memory_equal(d, "Hello", 5);
    /* sequence errors */
    assert_int_equal(feed(&a, XPB_WS_OP_CONT, 1, "x", &op, &d, &n), XPB_EWEBSOCKET);
    assert_int_equal(feed(&a, XPB_WS_OP_TEXT, 0, "ab", &op, &d, &n), 0);
    assert_int_equal(feed(&a, XPB_WS_OP_TEXT, 1, "cd", &op, &d, &n), XPB_EWEBSOCKET);
    xpb_ws_assembler_free(&a);
    /* the message limit applies to the sum of the fragments */
    xpb_ws_assembler_init(&a, 10);
    assert_int_equal(feed(&a, XPB_WS_OP_TEXT, 0, "123456", &op, &d, &n), 0);
    assert_int_equal(feed(&a, XPB_WS_OP_CONT, 1, "78901", &op, &d, &n), XPB_EWEBSOCKET);
    assert_int_equal(feed(&a, XPB_WS_OP_TEXT, 1, "12345678901", &op, &d, &n), XPB_EWEBSOCKET);
    assert_int_equal(feed(&a, XPB_WS_OP_TEXT, 1, "1234567890", &op, &d, &n), 1);
    xpb_ws_assembler_free(&a);
}

static void test_close_codes(void **state)
{
    (void)state;
    static const struct { unsigned char p[2]; size_t len; int rc; unsigned code; } cases[] = {
        {{0, 0}, 0, 0, 1005},                   {{0x03, 0xE8}, 1, XPB_EWEBSOCKET, 0},
        {{0x03, 0xE8}, 2, 0, 1000},             {{0x03, 0xE9}, 2, 0, 1001},
        {{0x03, 0xF3}, 2, 0, 1011},             {{0x03, 0xEC}, 2, XPB_EWEBSOCKET, 0}, /* 1004 */
        {{0x03, 0xED}, 2, XPB_EWEBSOCKET, 0},   {{0x03, 0xEE}, 2, XPB_EWEBSOCKET, 0},
        {{0x03, 0xF7}, 2, XPB_EWEBSOCKET, 0},   {{0x03, 0xE7}, 2, XPB_EWEBSOCKET, 0}, /* 999 */
        {{0x0B, 0xB8}, 2, 0, 3000},             {{0x13, 0x87}, 2, 0, 4999},
        {{0x13, 0x88}, 2, XPB_EWEBSOCKET, 0},   {{0x07, 0xD0}, 2, XPB_EWEBSOCKET, 0}, /* 2000 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned code = 0;
        assert_int_equal(xpb_ws_parse_close(cases[i].p, cases[i].len, &code), cases[i].rc);
        if (cases[i].rc == 0) assert_int_equal(code, cases[i].code);
    }
}

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    xpb_ws_accept_for_key(RFC_KEY, out); /* RFC 6455 §1.3 */
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_request(void **state)
{
    (void)state;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_ws_write_request(&b, "127.0.0.1:5280", "/xmpp-websocket", RFC_KEY), 0);
    assert_int_equal(xpb_buf_append(&b, "", 1), 0);
    assert_non_null(strstr(b.data, "GET /xmpp-websocket HTTP/1.1\r\n"));
    assert_non_null(strstr(b.data, "\r\nHost: 127.0.0.1:5280\r\n"));
    assert_non_null(strstr(b.data, "\r\nSec-WebSocket-Protocol: xmpp\r\n"));
    assert_non_null(strstr(b.data, "\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"));
    assert_non_null(strstr(b.data, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(b.data, "\r\n\r\n"));
    xpb_buf_free(&b);
}

static void test_response(void **state)
{
    (void)state;
    static const char good[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
                               "Sec-WebSocket-Accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "Sec-WebSocket-Protocol: xmpp\r\n\r\n\x81\x00";
    size_t head = sizeof good - 1 - 2;
    char err[200];
    for (size_t cut = 0; cut < head; cut++)
        assert_int_equal(xpb_ws_check_response(good, cut, RFC_KEY, err, sizeof err), 0);
    assert_int_equal(xpb_ws_check_response(good, sizeof good - 1, RFC_KEY, err, sizeof err),
                     (long)head);
    static const struct { const char *resp; const char *why; } bad[] = {
        {"HTTP/1.1 200 OK\r\n\r\n", "instead of 101"},
        {"HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", "xmpp"},
        {"HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
         "Sec-WebSocket-Protocol: xmpp\r\n\r\n", "Accept"},
        {"HTTP/1.1 101 S\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
         "Sec-WebSocket-Protocol: xmpp\r\n\r\n", "Upgrade"},
        {"SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(xpb_ws_check_response(bad[i].resp, strlen(bad[i].resp), RFC_KEY, err,
                                               sizeof err), XPB_EWEBSOCKET);
        assert_non_null(strstr(err, bad[i].why));
    }
    /* No end of head within the limit. */
    char *junk = malloc(XPB_WS_MAX_HANDSHAKE + 10);
    memset(junk, 'a', XPB_WS_MAX_HANDSHAKE + 10);
    assert_int_equal(xpb_ws_check_response(junk, XPB_WS_MAX_HANDSHAKE + 10, RFC_KEY, err,
                                           sizeof err), XPB_EWEBSOCKET);
    free(junk);
}

static void test_urls(void **state)
{
    (void)state;
    static const struct { const char *url; int rc; const char *host; unsigned port;
                          const char *path; int tls; } cases[] = {
        {"ws://127.0.0.1:5280/xmpp-websocket", 0, "127.0.0.1", 5280, "/xmpp-websocket", 0},
        {"wss://example.com/ws", 0, "example.com", 443, "/ws", 1},
        {"ws://example.com", 0, "example.com", 80, "/", 0},
        {"ws://[::1]:81/x", 0, "::1", 81, "/x", 0},
        {"http://example.com/", XPB_EINVAL, NULL, 0, NULL, 0},
        {"ws://:80/", XPB_EINVAL, NULL, 0, NULL, 0},
        {"ws://h:0/", XPB_EINVAL, NULL, 0, NULL, 0},
        {"ws://h:65536/", XPB_EINVAL, NULL, 0, NULL, 0},
        {"ws://h:80x/", XPB_EINVAL, NULL, 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[64], path[64];
        uint16_t port = 0;
        int tls = -1;
        assert_int_equal(xpb_ws_parse_url(cases[i].url, host, sizeof host, &port, path,
                                          sizeof path, &tls), cases[i].rc);
        if (cases[i].rc) continue;
        assert_string_equal(host, cases[i].host);
        assert_int_equal(port, cases[i].port);
        assert_string_equal(path, cases[i].path);
        assert_int_equal(tls, cases[i].tls);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_examples), cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_limit),        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_fragments),    cmocka_unit_test(test_close_codes),
        cmocka_unit_test(test_accept_key),   cmocka_unit_test(test_request),
        cmocka_unit_test(test_response),     cmocka_unit_test(test_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
