/* Tests for bridge/daemon/state_nats_wire.c, the values the NATS state back
 * end keeps in KV (xpb_sm, xpb_outbox, xpb_marks): what is encoded decodes to
 * the same state, send and marks; truncated, padded or foreign values are
 * refused; outbox keys carry the account token and the id, marks keys the
 * archive's token; the seen stanza-ids keep the newest XPB_NATS_MARKS_SEEN. */
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

#include "state_nats_wire.h"
#include "xpb_error.h"

static void test_sm_round_trip(void **state)
{
    (void)state;
    xpb_sm_state in = {.h_in = 4294967295u, .h_out = 7, .saved_us = 1765000000123456};
    snprintf(in.id, sizeof in.id, "g2gCZAAEbm9uZWgCbQ==");
    snprintf(in.location, sizeof in.location, "[::1]:5222");
    snprintf(in.jid, sizeof in.jid, "alice@example.com/res with space\nand newline");
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(state_nats_sm_encode(&b, &in), 0);
    xpb_sm_state out;
    assert_int_equal(state_nats_sm_decode((const uint8_t *)b.data, b.len, &out), 0);
    assert_int_equal(out.h_in, in.h_in);
    assert_int_equal(out.h_out, in.h_out);
    assert_true(out.saved_us == in.saved_us);
    assert_string_equal(out.id, in.id);
    assert_string_equal(out.location, in.location);
    assert_string_equal(out.jid, in.jid);
    /* one byte short, one byte more, another magic: refused */
    assert_int_equal(state_nats_sm_decode((const uint8_t *)b.data, b.len - 1, &out), XPB_EINVAL);
    assert_int_equal(xpb_buf_append(&b, "x", 1), 0);
    assert_int_equal(state_nats_sm_decode((const uint8_t *)b.data, b.len, &out), XPB_EINVAL);
    b.data[3] = 'X';
    assert_int_equal(state_nats_sm_decode((const uint8_t *)b.data, b.len - 1, &out), XPB_EINVAL);
    xpb_buf_free(&b);
}

static void test_sm_refuses_bad_values(void **state)
{
    (void)state;
    xpb_sm_state out;
    static const char *const bad[] = {
        "",
        "XPBSM1 1 2 3 0 0 0\n",           /* no resumption id */
        "XPBSM1 1 2 3 4 0 0\nab",         /* shorter than it says */
        "XPBSM1 1 2 3 300 0 0\n",         /* an id longer than the state holds */
        "XPBSM1 1 2 3 2 0 0 extra\nab",   /* more numbers than the format */
        "XPBSM1 -1 2 3 2 0 0\nab",        /* not a count */
        "XPBOB1 2 0\nab",                 /* an outbox value */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(state_nats_sm_decode((const uint8_t *)bad[i], strlen(bad[i]), &out),
                         XPB_EINVAL);
    const char ok[] = "XPBSM1 1 2 3 2 0 0\nab";
    assert_int_equal(state_nats_sm_decode((const uint8_t *)ok, strlen(ok), &out), 0);
    assert_string_equal(out.id, "ab");
}

static void test_outbox_round_trip(void **state)
{
    (void)state;
    static const uint8_t rec[] = {0x0a, 0x00, 0x0a, 0x12, 0xff, 0x00, '\n'};
    xpb_outbox_item in = {.account = "a@b", .id = 42, .stanza_id = "xpb-1",
                          .request_id = "req 7", .xml = rec, .xml_len = sizeof rec};
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(state_nats_outbox_encode(&b, &in), 0);
    char sid[64], rid[64];
    xpb_outbox_item out = {0};
    assert_int_equal(state_nats_outbox_decode((const uint8_t *)b.data, b.len, &out, sid,
                                              sizeof sid, rid, sizeof rid),
                     0);
    assert_string_equal(out.stanza_id, "xpb-1");
    assert_string_equal(out.request_id, "req 7");
    assert_int_equal(out.xml_len, sizeof rec);
    assert_memory_equal(out.xml, rec, sizeof rec);
    /* a stanza id longer than the caller's buffer: refused, not cut */
    assert_int_equal(state_nats_outbox_decode((const uint8_t *)b.data, b.len, &out, sid, 5, rid,
                                              sizeof rid),
                     XPB_EINVAL);
    xpb_buf_reset(&b);
    in.request_id = NULL; /* none: decoded as NULL */
    assert_int_equal(state_nats_outbox_encode(&b, &in), 0);
    assert_int_equal(state_nats_outbox_decode((const uint8_t *)b.data, b.len, &out, sid,
                                              sizeof sid, rid, sizeof rid),
                     0);
    assert_null(out.request_id);
    const char trunc[] = "XPBOB1 9 0\nxpb-1";
    assert_int_equal(state_nats_outbox_decode((const uint8_t *)trunc, strlen(trunc), &out, sid,
                                              sizeof sid, rid, sizeof rid),
                     XPB_EINVAL);
    xpb_buf_free(&b);
}

static void test_outbox_keys(void **state)
{
    (void)state;
    char key[64], tok[32];
    uint64_t id = 0;
    assert_int_equal(state_nats_outbox_key("alice_40example_2Ecom", 18446744073709551615u, key,
                                           sizeof key),
                     strlen("alice_40example_2Ecom.18446744073709551615"));
    assert_string_equal(key, "alice_40example_2Ecom.18446744073709551615");
    assert_int_equal(state_nats_outbox_key_parse(key, tok, sizeof tok, &id), 0);
    assert_string_equal(tok, "alice_40example_2Ecom");
    assert_true(id == 18446744073709551615u);
    static const char *const bad[] = {"noid", ".5", "tok.", "tok.5x", "tok.-5", "tok.+5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(state_nats_outbox_key_parse(bad[i], tok, sizeof tok, &id), XPB_EINVAL);
    assert_int_equal(state_nats_outbox_key_parse(key, tok, 8, &id), XPB_EINVAL); /* no room */
}

static void test_marks_round_trip(void **state)
{
    (void)state;
    state_nats_marks in, out;
    memset(&in, 0, sizeof in);
    snprintf(in.marker, sizeof in.marker, "2026-12-06T07:00:00Z 1ec1-ab");
    assert_int_equal(state_nats_marks_add(&in, "id-1"), 0);
    assert_int_equal(state_nats_marks_add(&in, "id with\nnewline and 12:colon"), 0);
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(state_nats_marks_encode(&b, &in), 0);
    assert_int_equal(state_nats_marks_decode((const uint8_t *)b.data, b.len, &out), 0);
    assert_string_equal(out.marker, in.marker);
    assert_int_equal(out.n, 2);
    assert_string_equal(out.seen[0], "id-1");
    assert_string_equal(out.seen[1], "id with\nnewline and 12:colon");
    assert_true(state_nats_marks_has(&out, "id-1"));
    assert_false(state_nats_marks_has(&out, "id-2"));
    state_nats_marks_clear(&out);
    /* one byte short, one byte more, another magic: refused, nothing kept */
    assert_int_equal(state_nats_marks_decode((const uint8_t *)b.data, b.len - 1, &out),
                     XPB_EINVAL);
    assert_int_equal(out.n, 0);
    assert_int_equal(xpb_buf_append(&b, "x", 1), 0);
    assert_int_equal(state_nats_marks_decode((const uint8_t *)b.data, b.len, &out), XPB_EINVAL);
    ((char *)b.data)[5] = '9';
    assert_int_equal(state_nats_marks_decode((const uint8_t *)b.data, b.len - 1, &out),
                     XPB_EINVAL);
    static const char *const bad[] = {"XPBMK1 0 1\n0:", "XPBMK1 0 1\n3:ab", "XPBMK1 0 1\n2ab",
                                      "XPBMK1 0 65\n", "XPBMK1 3 0\nab"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (state_nats_marks_decode((const uint8_t *)bad[i], strlen(bad[i]), &out) != XPB_EINVAL)
            fail_msg("accepted: %s", bad[i]);
    xpb_buf_free(&b);
    /* no marker, no ids: a value all the same */
    state_nats_marks_clear(&in);
    xpb_buf_init(&b, 0);
    assert_int_equal(state_nats_marks_encode(&b, &in), 0);
    assert_int_equal(state_nats_marks_decode((const uint8_t *)b.data, b.len, &out), 0);
    assert_string_equal(out.marker, "");
    assert_int_equal(out.n, 0);
    xpb_buf_free(&b);
}

/* A marker written while caught up keeps its stream (XPBMK2); without one
 * the value is the first form, which bridges of before XPBMK2 read. */
static void test_marks_stream(void **state)
{
    (void)state;
    state_nats_marks in, out;
    memset(&in, 0, sizeof in);
    snprintf(in.marker, sizeof in.marker, "2026-12-06T07:00:00Z m1");
    snprintf(in.stream, sizeof in.stream, "sm-stream-1");
    assert_int_equal(state_nats_marks_add(&in, "id-1"), 0);
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(state_nats_marks_encode(&b, &in), 0);
    assert_memory_equal(b.data, "XPBMK2 ", 7);
    assert_int_equal(state_nats_marks_decode((const uint8_t *)b.data, b.len, &out), 0);
    assert_string_equal(out.marker, in.marker);
    assert_string_equal(out.stream, "sm-stream-1");
    assert_int_equal(out.n, 1);
    state_nats_marks_clear(&out);
    assert_int_equal(state_nats_marks_decode((const uint8_t *)b.data, b.len - 1, &out), XPB_EINVAL);
    xpb_buf_free(&b);
    in.stream[0] = '\0';
    xpb_buf_init(&b, 0);
    assert_int_equal(state_nats_marks_encode(&b, &in), 0);
    assert_memory_equal(b.data, "XPBMK1 ", 7);
    assert_int_equal(state_nats_marks_decode((const uint8_t *)b.data, b.len, &out), 0);
    assert_string_equal(out.stream, "");
    state_nats_marks_clear(&out);
    xpb_buf_free(&b);
    state_nats_marks_clear(&in);
    /* an empty stream is written as the first form: XPBMK2 with none is foreign */
    static const char *const bad[] = {"XPBMK2 0 0 0\n", "XPBMK2 2 3 0\nabcd", "XPBMK2 0 1\nx"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (state_nats_marks_decode((const uint8_t *)bad[i], strlen(bad[i]), &out) != XPB_EINVAL)
            fail_msg("accepted: %s", bad[i]);
}

static void test_marks_keep_the_newest(void **state)
{
    (void)state;
    state_nats_marks m;
    memset(&m, 0, sizeof m);
    char id[32];
    for (unsigned i = 0; i < XPB_NATS_MARKS_SEEN + 10; i++) {
        snprintf(id, sizeof id, "s%u", i);
        assert_int_equal(state_nats_marks_add(&m, id), 0);
    }
    assert_int_equal(m.n, XPB_NATS_MARKS_SEEN);
    assert_false(state_nats_marks_has(&m, "s9"));
    assert_true(state_nats_marks_has(&m, "s10"));
    /* seen again: it becomes the newest and survives the next ten */
    assert_int_equal(state_nats_marks_add(&m, "s10"), 0);
    assert_int_equal(m.n, XPB_NATS_MARKS_SEEN);
    for (unsigned i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "t%u", i);
        assert_int_equal(state_nats_marks_add(&m, id), 0);
    }
    assert_true(state_nats_marks_has(&m, "s10"));
    assert_false(state_nats_marks_has(&m, "s11"));
    char longid[XPB_NATS_MARK_ID_MAX + 1];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_int_equal(state_nats_marks_add(&m, longid), XPB_ETOOBIG);
    assert_int_equal(state_nats_marks_add(&m, ""), XPB_ETOOBIG);
    state_nats_marks_clear(&m);
    char key[128];
    state_nats_marks_key("bot_40example_2Ecom", "room@conf.example.com", key, sizeof key);
    assert_string_equal(key, "bot_40example_2Ecom.room_40conf_2Eexample_2Ecom");
    assert_true(state_nats_marks_key("tok", "room@conf.example.com", key, 8) >= 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sm_round_trip),         cmocka_unit_test(test_sm_refuses_bad_values),
        cmocka_unit_test(test_outbox_round_trip),     cmocka_unit_test(test_outbox_keys),
        cmocka_unit_test(test_marks_round_trip),      cmocka_unit_test(test_marks_stream),
        cmocka_unit_test(test_marks_keep_the_newest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
