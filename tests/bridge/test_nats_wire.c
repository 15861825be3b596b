/* Tests for bridge/bus/bus_nats_wire.c: the account token (a reversible,
 * subject-safe encoding of a bare JID) and the subjects built from it. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdio.h>
#include <string.h>

#include "xpb_bus_nats_wire.h"
#include "xpb_error.h"

static const struct {
    const char *jid, *token;
} rows[] = {
    {"alice@example.com", "alice_40example_2Ecom"},
    {"bot-1@xpb.test", "bot-1_40xpb_2Etest"},
    {"under_score@x", "under_5Fscore_40x"},
    {"a*b>c d@x", "a_2Ab_3Ec_20d_40x"},
    {"\xc3\xa9t\xc3\xa9@x.org", "_C3_A9t_C3_A9_40x_2Eorg"}, /* UTF-8 bytes one by one */
    {"ABCxyz019", "ABCxyz019"},
    {"", ""},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char tok[256], back[256];
        size_t n = xpb_nats_account_token(rows[i].jid, tok, sizeof tok);
        assert_int_equal(n, strlen(rows[i].token));
        assert_string_equal(tok, rows[i].token);
        assert_int_equal(xpb_nats_account_untoken(tok, back, sizeof back), 0);
        assert_string_equal(back, rows[i].jid);
    }
}

/* Every byte 1..255 alone and inside a JID: the token holds only
 * [A-Za-z0-9_-] (no '.', '*', '>' or whitespace) and decodes back. */
static void test_every_byte(void **state)
{
    (void)state;
    for (int c = 1; c < 256; c++) {
        char jid[8] = {'a', (char)c, '@', 'x', 0}, tok[32], back[32];
        size_t n = xpb_nats_account_token(jid, tok, sizeof tok);
        assert_true(n < sizeof tok);
        for (size_t k = 0; k < n; k++) {
            char t = tok[k];
            assert_true((t >= 'A' && t <= 'Z') || (t >= 'a' && t <= 'z') ||
                        (t >= '0' && t <= '9') || t == '-' || t == '_');
        }
        assert_int_equal(xpb_nats_account_untoken(tok, back, sizeof back), 0);
        assert_string_equal(back, jid);
    }
}

/* Only the tokens the encoder makes decode: one JID, one token. */
static void test_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {"a.b", "a_2e", "a_4", "a_", "a_G0", "a_41", "a b", "a*",
                                      "a>", "_00"};
    char out[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(xpb_nats_account_untoken(bad[i], out, sizeof out), XPB_EINVAL);
    assert_int_equal(xpb_nats_account_untoken("abcdef", out, 4), XPB_ETOOBIG);
}

/* A short buffer: the length needed comes back, the output is cut and ends. */
static void test_truncation(void **state)
{
    (void)state;
    char tok[8];
    size_t n = xpb_nats_account_token("alice@example.com", tok, sizeof tok);
    assert_int_equal(n, strlen("alice_40example_2Ecom"));
    assert_int_equal(strlen(tok), sizeof tok - 1);
    assert_int_equal(xpb_nats_account_token("alice@example.com", NULL, 0), n);
}

static void test_subjects(void **state)
{
    (void)state;
    char s[128];
    xpb_nats_event_subject("message", "alice@example.com", s, sizeof s);
    assert_string_equal(s, "xpb.ev.message.alice_40example_2Ecom");
    xpb_nats_event_subject("state", NULL, s, sizeof s);
    assert_string_equal(s, "xpb.ev.state.*");
    xpb_nats_event_subject(NULL, "a@b", s, sizeof s);
    assert_string_equal(s, "xpb.ev.*.a_40b");
    size_t n = xpb_nats_request_subject("a@b", s, sizeof s);
    assert_string_equal(s, "xpb.req.a_40b");
    assert_int_equal(n, strlen(s));
    assert_true(xpb_nats_request_subject("alice@example.com", s, 10) >= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),      cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_rejects),    cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_subjects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
