/* Every string field of every bus request is checked as text on the wire
 * bytes (bridge/bus/bus.c decode, codec xpb_pb_check_wire_text): a NUL, bad UTF-8
 * or a character XML 1.0 does not allow is refused, naming the field, before
 * anything reads the field as a C string. One row per field, plus a sweep
 * over the descriptors that reaches every string field of Request. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"
#include "xpb_arena.h"
#include "xpb_bus.h"

#define MAXPATH 80
#define BUFCAP (1u << 20)

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        p[n++] = c | (v != 0 ? 0x80 : 0);
    } while (v != 0);
    return n;
}

/* Wire bytes of a Request holding api_version 1, request_id "t" (unless the
 * path is request_id itself) and value at the field path fds[0..n). */
static size_t build(const ProtobufCFieldDescriptor *const *fds, size_t n, const uint8_t *val,
                    size_t vlen, uint8_t *out)
{
    uint8_t *inner = malloc(BUFCAP), *tmp = malloc(BUFCAP);
    memcpy(inner, val, vlen);
    size_t len = vlen;
    for (size_t i = n; i-- > 0;) {
        size_t h = put_varint(tmp, (uint64_t)fds[i]->id << 3 | 2);
        h += put_varint(tmp + h, len);
        memcpy(tmp + h, inner, len);
        len += h;
        memcpy(inner, tmp, len);
    }
    size_t o = 0;
    out[o++] = 0x08; /* api_version = 1 */
    out[o++] = 0x01;
    if (!(n == 1 && strcmp(fds[0]->name, "request_id") == 0)) {
        static const uint8_t id[] = {0x12, 0x01, 't'};
        memcpy(out + o, id, sizeof id);
        o += sizeof id;
    }
    memcpy(out + o, inner, len);
    free(inner);
    free(tmp);
    return o + len;
}

/* "open.room.nick" -> field descriptors from Request down. */
static size_t resolve(const char *path, const ProtobufCFieldDescriptor **fds)
{
    const ProtobufCMessageDescriptor *d = &xpb__v1__request__descriptor;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok != NULL;
         tok = strtok_r(NULL, ".", &save)) {
        if (d == NULL) fail_msg("%s: %s is below a scalar", path, tok);
        const ProtobufCFieldDescriptor *fd =
            protobuf_c_message_descriptor_get_field_by_name(d, tok);
        if (fd == NULL) fail_msg("%s: no field %s in %s", path, tok, d->name);
        fds[n++] = fd;
        d = fd->type == PROTOBUF_C_TYPE_MESSAGE ? fd->descriptor : NULL;
    }
    return n;
}

static const struct {
    const char *what;
    const char *bytes;
    size_t len;
    const char *rule; /* expected after "<path>: " */
} bad_values[] = {
    {"NUL", "PLACE\0OLD", 9, "U+0000 at byte 5 is not an XML 1.0 character"},
    {"bad UTF-8", "ab\xff", 3, "invalid UTF-8 at byte 2"},
    {"non-XML char", "a\x01", 2, "U+0001 at byte 1 is not an XML 1.0 character"},
};

/* Refused with -2 and a sentence that starts with the field's path; a good
 * value at the same place is not refused for a string rule. */
static void expect_refused(const char *path, const ProtobufCFieldDescriptor *const *fds, size_t n)
{
    uint8_t *req = malloc(BUFCAP);
    for (size_t v = 0; v < sizeof bad_values / sizeof bad_values[0]; v++) {
        size_t len = build(fds, n, (const uint8_t *)bad_values[v].bytes, bad_values[v].len, req);
        Xpb__V1__Request *r = NULL;
        char id[XPB_BUS_MAX_REQUEST_ID + 1], text[512], want[512];
        int has_id = 0;
        Xpb__V1__ErrorCode code = XPB__V1__ERROR_CODE__OK;
        int rc =
            xpb_bus_decode_request(req, len, BUFCAP, 0, &r, id, &has_id, &code, text, sizeof text);
        snprintf(want, sizeof want, "%s: %s", path, bad_values[v].rule);
        if (rc != -2 || r != NULL || strcmp(text, want) != 0)
            fail_msg("%s with %s: rc %d, text '%s', expected -2 and '%s'", path, bad_values[v].what,
                     rc, text, want);
        int stanza = strncmp(path, "send.stanza", 11) == 0 || strncmp(path, "iq.stanza", 9) == 0;
        Xpb__V1__ErrorCode want_code =
            stanza ? XPB__V1__ERROR_CODE__ERR_INVALID_RECORD : XPB__V1__ERROR_CODE__ERR_BAD_REQUEST;
        if (code != want_code) fail_msg("%s: code %d, expected %d", path, code, want_code);
        /* the refusal carries the request id, unless the id is what was refused */
        int id_refused = strcmp(path, "request_id") == 0;
        if (has_id != !id_refused || (!id_refused && strcmp(id, "t") != 0))
            fail_msg("%s: has_id %d id '%s'", path, has_id, has_id ? id : "");
    }
    size_t len = build(fds, n, (const uint8_t *)"ok", 2, req);
    Xpb__V1__Request *r = NULL;
    char id[XPB_BUS_MAX_REQUEST_ID + 1], text[512];
    int has_id = 0;
    Xpb__V1__ErrorCode code;
    int rc = xpb_bus_decode_request(req, len, BUFCAP, 0, &r, id, &has_id, &code, text, sizeof text);
    if (rc == -2) fail_msg("%s: the good value \"ok\" was refused: %s", path, text);
    if (r != NULL) xpb__v1__request__free_unpacked(r, NULL);
    free(req);
}

/* One row per string field of the request envelope and of every op; the
 * stanza of send and iq is a Stanza record, covered field by field by the
 * sweep below (a few of its fields are listed here too). */
static void test_every_request_field(void **state)
{
    (void)state;
    static const char *const rows[] = {
        "request_id",
        "account",
        "open.jid",
        "open.password",
        "open.password_file",
        "open.host",
        "open.ws_url",
        "open.ca_file",
        "open.room.room",
        "open.room.nick",
        "open.room.password",
        "send.stanza.to",
        "send.stanza.from",
        "send.stanza.id",
        "send.stanza.body.text",
        "send.stanza.subject.text",
        "send.stanza.thread.id",
        "iq.stanza.to",
        "iq.stanza.id",
        "presence.status",
        "presence.to",
        "join.room",
        "join.nick",
        "join.password",
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const ProtobufCFieldDescriptor *fds[MAXPATH];
        size_t n = resolve(rows[i], fds);
        assert_int_equal(fds[n - 1]->type, PROTOBUF_C_TYPE_STRING);
        expect_refused(rows[i], fds, n);
    }
}

/* Depth-first over the descriptors from Request: every string field of
 * every message reachable, each message type entered once per path (the
 * Element/Node recursion would not end otherwise). */
static size_t sweep(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor **fds,
                    size_t depth, char *path, size_t plen)
{
    size_t count = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        int k = snprintf(path + plen, 1024 - plen, "%s%s", plen ? "." : "", fd->name);
        fds[depth] = fd;
        if (fd->type == PROTOBUF_C_TYPE_STRING) {
            expect_refused(path, fds, depth + 1);
            count++;
        } else if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
            int seen = 0;
            for (size_t j = 0; j < depth; j++)
                seen |=
                    fds[j]->type == PROTOBUF_C_TYPE_MESSAGE && fds[j]->descriptor == fd->descriptor;
            if (!seen && depth + 1 < MAXPATH)
                count += sweep(fd->descriptor, fds, depth + 1, path, plen + (size_t)k);
        }
        path[plen] = '\0';
    }
    return count;
}

static void test_sweep_every_string_field(void **state)
{
    (void)state;
    const ProtobufCFieldDescriptor *fds[MAXPATH];
    char path[1024] = "";
    size_t n = sweep(&xpb__v1__request__descriptor, fds, 0, path, 0);
    print_message("%zu string field paths checked\n", n);
    assert_true(n > 100); /* Request, its ops, and the whole Stanza record */
}

/* The wire checks happen before unpacking, so the C strings a handler sees
 * are whole: the body that arrived as 70,000 characters is not cut. */
static void test_max_string_follows_the_configured_limit(void **state)
{
    (void)state;
    size_t blen = 70000;
    char *body = malloc(blen + 1);
    memset(body, 'a', blen);
    body[blen] = '\0';
    Xpb__V1__Text t = XPB__V1__TEXT__INIT, *tp = &t;
    t.text = body;
    Xpb__V1__Stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = 1;
    st.kind = XPB__V1__KIND__KIND_MESSAGE;
    st.to = "bob@example.com";
    st.n_body = 1;
    st.body = &tp;
    Xpb__V1__SendStanza send = XPB__V1__SEND_STANZA__INIT;
    send.stanza = &st;
    Xpb__V1__Request rq = XPB__V1__REQUEST__INIT;
    rq.has_api_version = 1;
    rq.api_version = 1;
    rq.request_id = "long";
    rq.account = "a@example.com";
    rq.op_case = XPB__V1__REQUEST__OP_SEND;
    rq.send = &send;
    size_t len = xpb__v1__request__get_packed_size(&rq);
    uint8_t *req = malloc(len);
    xpb__v1__request__pack(&rq, req);
    Xpb__V1__Request *r = NULL;
    char id[XPB_BUS_MAX_REQUEST_ID + 1], text[512];
    int has_id;
    Xpb__V1__ErrorCode code;
    int rc = xpb_bus_decode_request(req, len, BUFCAP, 0, &r, id, &has_id, &code, text, sizeof text);
    assert_int_equal(rc, -2);
    assert_string_equal(text, "send.stanza.body.text: 70000 bytes exceeds max_string (65536)");
    rc =
        xpb_bus_decode_request(req, len, BUFCAP, 262144, &r, id, &has_id, &code, text, sizeof text);
    if (rc != 0) fail_msg("refused: %s", text);
    assert_int_equal(strlen(r->send->stanza->body[0]->text), blen);
    xpb__v1__request__free_unpacked(r, NULL);
    free(body);
    free(req);
}

/* A request decoded into an arena (what the bus does) is the request the
 * malloc'd decode gives, field for field, and lives in the arena's blocks;
 * a refusal is the same refusal, with nothing to free but the arena (ASan
 * reports a leak otherwise). */
static void test_decode_into_an_arena(void **state)
{
    (void)state;
    enum { N = 64 };
    Xpb__V1__Text text = XPB__V1__TEXT__INIT;
    Xpb__V1__Text *bodies[] = {&text};
    Xpb__V1__Stanza st[N];
    Xpb__V1__SendStanza one[N], *items[N];
    for (int i = 0; i < N; i++) {
        st[i] = (Xpb__V1__Stanza)XPB__V1__STANZA__INIT;
        st[i].has_kind = 1;
        st[i].kind = XPB__V1__KIND__KIND_MESSAGE;
        st[i].to = "friend@example.com";
        st[i].n_body = 1;
        st[i].body = bodies;
        one[i] = (Xpb__V1__SendStanza)XPB__V1__SEND_STANZA__INIT;
        one[i].stanza = &st[i];
        one[i].has_receipt = 1;
        one[i].receipt = i % 2;
        items[i] = &one[i];
    }
    text.text = "hello";
    Xpb__V1__SendBatch sb = XPB__V1__SEND_BATCH__INIT;
    sb.n_send = N;
    sb.send = items;
    Xpb__V1__Request rq = XPB__V1__REQUEST__INIT;
    rq.has_api_version = 1;
    rq.api_version = 1;
    rq.request_id = "batch-1";
    rq.account = "a@example.com";
    rq.op_case = XPB__V1__REQUEST__OP_SEND_BATCH;
    rq.send_batch = &sb;
    for (int refused = 0; refused < 2; refused++) {
        rq.account = refused ? NULL : "a@example.com"; /* send_batch needs its account */
        size_t len = xpb__v1__request__get_packed_size(&rq);
        uint8_t *req = malloc(len);
        xpb__v1__request__pack(&rq, req);
        Xpb__V1__Request *rm = NULL, *ra = NULL;
        char id_m[XPB_BUS_MAX_REQUEST_ID + 1], id_a[XPB_BUS_MAX_REQUEST_ID + 1];
        char text_m[512] = "", text_a[512] = "";
        int has_m = 0, has_a = 0;
        Xpb__V1__ErrorCode code_m = 0, code_a = 0;
        int rc_m = xpb_bus_decode_request(req, len, BUFCAP, 0, &rm, id_m, &has_m, &code_m, text_m,
                                          sizeof text_m);
        xpb_arena *a = xpb_arena_new(1024);
        assert_non_null(a);
        size_t m0 = xpb_arena_mallocs(a);
        int rc_a = xpb_bus_decode_request_in(a, req, len, BUFCAP, 0, &ra, id_a, &has_a, &code_a,
                                             text_a, sizeof text_a);
        assert_int_equal(rc_a, rc_m);
        assert_int_equal(has_a, has_m);
        if (has_m) assert_string_equal(id_a, id_m);
        if (refused) {
            assert_int_equal(rc_a, -1);
            assert_null(ra);
            assert_int_equal(code_a, code_m);
            assert_string_equal(text_a, text_m);
            assert_true(text_a[0] != '\0');
        } else {
            assert_int_equal(rc_a, 0);
            assert_true(xpb_arena_mallocs(a) > m0); /* in the arena's blocks */
            assert_string_equal(ra->request_id, "batch-1");
            assert_string_equal(ra->account, "a@example.com");
            assert_int_equal(ra->op_case, XPB__V1__REQUEST__OP_SEND_BATCH);
            assert_int_equal(ra->send_batch->n_send, N);
            for (int i = 0; i < N; i++) {
                const Xpb__V1__SendStanza *x = ra->send_batch->send[i];
                assert_string_equal(x->stanza->to, rm->send_batch->send[i]->stanza->to);
                assert_string_equal(x->stanza->body[0]->text, "hello");
                assert_int_equal(x->receipt, i % 2);
            }
            xpb__v1__request__free_unpacked(rm, NULL);
        }
        xpb_arena_free(a);
        free(req);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_request_field),
        cmocka_unit_test(test_sweep_every_string_field),
        cmocka_unit_test(test_max_string_follows_the_configured_limit),
        cmocka_unit_test(test_decode_into_an_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
