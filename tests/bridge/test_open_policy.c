/* Tests for bridge/daemon/open_policy.c: what a bus `open` request may start, one
 * row per rule, each refusal with its exact sentence. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdio.h>
#include <string.h>

#include "open_policy.h"
#include "xpb_session.h"

static xpb_account_cfg configured(void)
{
    xpb_account_cfg c = {0};
    c.jid = "bot@example.com";
    c.password_file = "/etc/xpbridge/bot.pass";
    c.host = "xmpp.example.com";
    c.port = 5222;
    c.ca_file = "/etc/xpbridge/ca.pem";
    c.send_presence = 1;
    c.stream_management = 1;
    c.fetch_roster = 1;
    return c;
}

enum { OFF = 0, INLINE = 1, OVERRIDES = 2, BOTH = 3 };

typedef struct row {
    const char *name;
    int rules;
    int conf; /* 1: the account is in the configuration */
    const char *password, *password_file, *host;
    int port, transport; /* -1: absent */
    const char *ws_url, *ca_file;
    Xpb__V1__ErrorCode code;
    const char *err; /* exact sentence on refusal */
} row;

#define FORBIDDEN XPB__V1__ERROR_CODE__ERR_FORBIDDEN
#define OK XPB__V1__ERROR_CODE__OK
#define OVR(f)                                                                                     \
    "open: " f " is not allowed from the bus (set bus.allow_open_overrides in the config)"
#define INL                                                                                        \
    "open: password is not allowed from the bus (set bus.allow_inline_credentials in the config)"
#define NOTCONF                                                                                    \
    "open: account bot@example.com is not in the configuration, and the bus may open only "        \
    "accounts whose credentials the configuration provides (add it to accounts, or set "           \
    "bus.allow_inline_credentials and send open.password)"

static const row rows[] = {
    {"configured, nothing else", OFF, 1, NULL, NULL, NULL, -1, -1, NULL, NULL, OK, NULL},
    {"password_file=/etc/passwd + host=attacker", OFF, 1, NULL, "/etc/passwd", "attacker.example",
     -1, -1, NULL, NULL, FORBIDDEN, OVR("password_file")},
    {"password_file, unconfigured", INLINE, 0, NULL, "/etc/passwd", NULL, -1, -1, NULL, NULL,
     FORBIDDEN, OVR("password_file")},
    {"host", INLINE, 1, NULL, NULL, "attacker.example", -1, -1, NULL, NULL, FORBIDDEN, OVR("host")},
    {"port", OFF, 1, NULL, NULL, NULL, 5223, -1, NULL, NULL, FORBIDDEN, OVR("port")},
    {"transport", OFF, 1, NULL, NULL, NULL, -1, 1, NULL, NULL, FORBIDDEN, OVR("transport")},
    {"ws_url", OFF, 1, NULL, NULL, NULL, -1, -1, "wss://attacker.example/ws", NULL, FORBIDDEN,
     OVR("ws_url")},
    {"ca_file", OFF, 1, NULL, NULL, NULL, -1, -1, NULL, "/tmp/evil-ca.pem", FORBIDDEN,
     OVR("ca_file")},
    {"inline password, switch off", OVERRIDES, 1, "secret", NULL, NULL, -1, -1, NULL, NULL,
     FORBIDDEN, INL},
    {"inline password, unconfigured, switch off", OFF, 0, "secret", NULL, NULL, -1, -1, NULL, NULL,
     FORBIDDEN, INL},
    {"unconfigured, no credentials", BOTH, 0, NULL, NULL, NULL, -1, -1, NULL, NULL, FORBIDDEN,
     NOTCONF},
    {"empty inline password", INLINE, 0, "", NULL, NULL, -1, -1, NULL, NULL,
     XPB__V1__ERROR_CODE__ERR_BAD_REQUEST, "open: password is empty"},
    {"inline password, unconfigured, allowed", INLINE, 0, "secret", NULL, NULL, -1, -1, NULL, NULL,
     OK, NULL},
    {"inline password for a configured account", INLINE, 1, "secret", NULL, NULL, -1, -1, NULL,
     NULL, OK, NULL},
    {"overrides allowed", OVERRIDES, 1, NULL, "/srv/bot.pass", "127.0.0.1", 5223, 1, NULL,
     "/srv/ca.pem", OK, NULL},
    {"password_file, unconfigured, overrides allowed", OVERRIDES, 0, NULL, "/srv/bot.pass", NULL,
     -1, -1, NULL, NULL, OK, NULL},
};

static void fill(const row *r, Xpb__V1__OpenSession *op)
{
    xpb__v1__open_session__init(op);
    op->password = (char *)r->password;
    op->password_file = (char *)r->password_file;
    op->host = (char *)r->host;
    op->has_port = r->port >= 0;
    op->port = r->port >= 0 ? (uint32_t)r->port : 0;
    op->has_transport = r->transport >= 0;
    op->transport = r->transport >= 0 ? (Xpb__V1__Transport)r->transport : 0;
    op->ws_url = (char *)r->ws_url;
    op->ca_file = (char *)r->ca_file;
}

static void test_rules(void **state)
{
    (void)state;
    xpb_account_cfg conf = configured();
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const row *r = &rows[i];
        xpb_open_rules rules = {.allow_inline_credentials = (r->rules & INLINE) != 0,
                                .allow_open_overrides = (r->rules & OVERRIDES) != 0};
        Xpb__V1__OpenSession op;
        fill(r, &op);
        xpb_account_cfg out;
        const char *pw = "unset";
        char err[512] = "";
        Xpb__V1__ErrorCode code =
            xpb_open_resolve(&rules, r->conf ? &conf : NULL, &op, "bot@example.com", NULL, &out,
                             &pw, err, sizeof err);
        if (code != r->code) fail_msg("%s: code %d (%s), expected %d", r->name, code, err, r->code);
        if (code != OK) {
            if (strcmp(err, r->err) != 0)
                fail_msg("%s: '%s'\n expected '%s'", r->name, err, r->err);
            assert_null(out.jid); /* nothing to start */
            assert_null(pw);
            continue;
        }
        assert_string_equal(out.jid, "bot@example.com");
        if (r->password)
            assert_string_equal(pw, r->password);
        else
            assert_null(pw);
        /* where it connects: the request's only when overrides are allowed */
        const char *want_host = r->host ? r->host : r->conf ? conf.host : NULL;
        if (want_host)
            assert_string_equal(out.host, want_host);
        else
            assert_null(out.host);
        const char *want_pf = r->password_file ? r->password_file
                              : r->conf        ? conf.password_file
                                               : NULL;
        if (want_pf)
            assert_string_equal(out.password_file, want_pf);
        else
            assert_null(out.password_file);
        assert_int_equal(out.port, r->port >= 0 ? (unsigned)r->port : r->conf ? conf.port : 0);
        xpb_account_cfg_clear(&out);
    }
}

/* Session flags are not overrides: the request may set them, and a
 * configured account keeps its own when the request does not. */
static void test_session_flags(void **state)
{
    (void)state;
    xpb_account_cfg conf = configured();
    xpb_open_rules rules = {0};
    Xpb__V1__OpenSession op = XPB__V1__OPEN_SESSION__INIT;
    xpb_account_cfg out;
    const char *pw;
    char err[256];
    assert_int_equal(
        xpb_open_resolve(&rules, &conf, &op, "bot@example.com", "desk", &out, &pw, err, sizeof err),
        OK);
    assert_int_equal(out.fetch_roster, 1);
    assert_string_equal(out.resource, "desk");
    xpb_account_cfg_clear(&out);
    op.has_fetch_roster = 1;
    op.fetch_roster = 0;
    op.has_send_presence = 1;
    op.send_presence = 0;
    assert_int_equal(
        xpb_open_resolve(&rules, &conf, &op, "bot@example.com", NULL, &out, &pw, err, sizeof err),
        OK);
    assert_int_equal(out.fetch_roster, 0);
    assert_int_equal(out.send_presence, 0);
    assert_int_equal(out.stream_management, 1);
    xpb_account_cfg_clear(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_session_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
