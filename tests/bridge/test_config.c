/* Tests for bridge/config/config.c: the documented example parses, bad configs are
 * refused with "FILE:LINE: text" naming the setting, flags override the
 * file, and the account comparison SIGHUP relies on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xpb_config.h"
#include "xpb_error.h"
#include "xpb_session.h"

static const char GOOD[] =
    "log = { level = \"debug\"; file = \"/tmp/x.log\"; };\n"
    "bus = { events = \"ipc:///run/xpbridge/events\"; requests = "
    "\"ipc:///run/xpbridge/requests\";\n"
    "        allow_remote = false; max_request_bytes = 65536; batch_max = 16; batch_flush_us = "
    "500;\n"
    "        dedupe_entries = 20000; };\n"
    "metrics = { listen = \"127.0.0.1:9999\"; };\n"
    "limits = { queue_max = 50; max_stanza_bytes = 100000; muc_self_ping_s = 60; };\n"
    "accounts = (\n"
    "  { jid = \"Bot@Example.COM/res\"; password_file = \"/etc/xpbridge/bot.pass\";\n"
    "    host = \"127.0.0.1\"; port = 5222; transport = \"starttls\"; ws_url = \"\";\n"
    "    ca_file = \"/etc/ssl/ca.pem\"; presence = { show = \"chat\"; status = \"bridged\"; };\n"
    "    send_presence = true; fetch_roster = true;\n"
    "    rooms = ( { room = \"team@conference.example.com\"; nick = \"bot\"; history = 5; } ); },\n"
    "  { jid = \"other@example.com\"; password_file = \"/p\"; transport = \"websocket\";\n"
    "    ws_url = \"wss://example.com/ws\"; send_presence = false; }\n"
    ");\n";

static void test_good_config(void **state)
{
    (void)state;
    xpb_config c;
    char err[512] = "";
    assert_int_equal(xpb_config_parse_string(&c, GOOD, "good.conf", err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(c.log_level, XPB_CFG_LOG_DEBUG);
    assert_string_equal(c.log_file, "/tmp/x.log");
    assert_string_equal(c.events_url, "ipc:///run/xpbridge/events");
    assert_string_equal(c.requests_url, "ipc:///run/xpbridge/requests");
    assert_int_equal(c.max_request_bytes, 65536);
    assert_int_equal(c.batch_max, 16);
    assert_int_equal(c.batch_flush_us, 500);
    assert_int_equal(c.dedupe_entries, 20000);
    assert_string_equal(c.metrics_listen, "127.0.0.1:9999");
    assert_int_equal(c.queue_max, 50);
    assert_int_equal(c.max_stanza_bytes, 100000);
    assert_int_equal(c.muc_ping_s, 60);
    assert_int_equal(c.n_accounts, 2);
    const xpb_account_cfg *a = &c.accounts[0];
    assert_string_equal(a->jid, "bot@example.com"); /* normalised, bare */
    assert_string_equal(a->resource, "res");
    assert_string_equal(a->password_file, "/etc/xpbridge/bot.pass");
    assert_string_equal(a->host, "127.0.0.1");
    assert_int_equal(a->port, 5222);
    assert_int_equal(a->transport, XPB_TRANSPORT_STARTTLS);
    assert_null(a->ws_url);
    assert_string_equal(a->presence_show, "chat");
    assert_string_equal(a->presence_status, "bridged");
    assert_int_equal(a->send_presence, 1);
    assert_int_equal(a->fetch_roster, 1);
    assert_int_equal(a->stream_management, 1);
    assert_int_equal(a->n_rooms, 1);
    assert_string_equal(a->rooms[0].room, "team@conference.example.com");
    assert_string_equal(a->rooms[0].nick, "bot");
    assert_int_equal(a->rooms[0].history_maxstanzas, 5);
    assert_int_equal(a->line, 8);
    const xpb_account_cfg *b = &c.accounts[1];
    assert_int_equal(b->transport, XPB_TRANSPORT_WEBSOCKET);
    assert_string_equal(b->ws_url, "wss://example.com/ws");
    assert_int_equal(b->send_presence, 0);
    assert_int_equal(b->fetch_roster, 0);
    assert_null(b->host);
    assert_ptr_equal(xpb_config_find(&c, "other@example.com"), b);
    assert_null(xpb_config_find(&c, "nobody@example.com"));
    xpb_config_clear(&c);
}

static void test_defaults(void **state)
{
    (void)state;
    xpb_config c;
    char err[512] = "";
    assert_int_equal(xpb_config_parse_string(&c, "", "empty.conf", err, sizeof err), 0);
    assert_int_equal(c.log_level, XPB_CFG_LOG_INFO);
    assert_null(c.log_file);
    assert_null(c.events_url);
    assert_string_equal(c.metrics_listen, XPB_CONFIG_DEFAULT_METRICS);
    assert_int_equal(c.queue_max, XPB_SESSION_DEFAULT_QUEUE_MAX);
    assert_int_equal(c.muc_ping_s, XPB_CONFIG_DEFAULT_MUC_PING_S);
    assert_int_equal(c.n_accounts, 0);
    assert_int_equal(c.state_sync, 0); /* "sends": xpb_store_sync's default */
    xpb_config_clear(&c);
    const char *modes[] = {"sends", "full", "normal"};
    for (int i = 0; i < 3; i++) {
        char text[64];
        snprintf(text, sizeof text, "state = { sync = \"%s\"; };", modes[i]);
        assert_int_equal(xpb_config_parse_string(&c, text, "s.conf", err, sizeof err), 0);
        assert_int_equal(c.state_sync, i);
        xpb_config_clear(&c);
    }
}

/* Each bad config, and the exact "FILE:LINE: text" it must produce. */
static const struct bad_case {
    const char *text;
    const char *err;
} BAD[] = {
    {"log = { level = \"loud\"; };",
     "bad.conf:1: log level must be debug, info, warn or error, not \"loud\""},
    {"\n\nlimits = { queue_max = 0; };", "bad.conf:3: queue_max must be 1..1000000, not 0"},
    {"limits = {\n max_stanza_bytes = 100; };",
     "bad.conf:2: max_stanza_bytes must be 10000..16777216, not 100"},
    {"bus = { batch_max = \"many\"; };", "bad.conf:1: batch_max must be an integer"},
    {"bus = { dedupe_entries = 5; };", "bad.conf:1: dedupe_entries must be 16..4194304, not 5"},
    {"bus = { allow_remote = 1; };", "bad.conf:1: allow_remote must be true or false"},
    {"bus = { evnets = \"ipc:///x\"; };", "bad.conf:1: unknown setting 'evnets' in bus"},
    {"colour = \"blue\";", "bad.conf:1: unknown setting 'colour' in the top level"},
    {"metrics = { listen = \"localhost\"; };",
     "bad.conf:1: metrics listen must be \"ADDR:PORT\" (e.g. \"127.0.0.1:9477\") or \"0\""},
    {"bus = 3;", "bad.conf:1: bus must be a group: bus = { ... };"},
    {"accounts = ( {\n password_file = \"/p\"; } );", "bad.conf:1: an account needs jid"},
    {"accounts = (\n { jid = \"example.com\"; password_file = \"/p\"; } );",
     "bad.conf:2: jid \"example.com\": an account JID needs a localpart (user@domain)"},
    {"accounts = ( { jid = \"a@b.example\"; } );",
     "bad.conf:1: account a@b.example needs password_file"},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\";\n port = 70000; } );",
     "bad.conf:2: port must be 1..65535, not 70000"},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\"; transport = \"tcp\"; } );",
     "bad.conf:1: transport must be starttls, directtls or websocket, not \"tcp\""},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\"; transport = \"websocket\"; } "
     ");",
     "bad.conf:1: transport \"websocket\" needs ws_url (wss://...)"},
    /* ws:// is plaintext (RFC 7395 has no STARTTLS): loopback and explicit only */
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\";\n ws_url = "
     "\"ws://127.0.0.1:5280/ws\"; } );",
     "bad.conf:2: ws_url \"ws://127.0.0.1:5280/ws\": ws:// is WebSocket without TLS (RFC 7395 has "
     "no STARTTLS); use wss://, or set allow_plaintext_ws = true (--allow-plaintext-ws) for a "
     "loopback host"},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\"; allow_plaintext_ws = true;\n"
     " ws_url = \"ws://xmpp.example.com:5280/ws\"; } );",
     "bad.conf:2: ws_url \"ws://xmpp.example.com:5280/ws\": ws:// (no TLS) is allowed only to a "
     "loopback host (127.0.0.0/8, ::1, localhost); use wss://"},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\"; allow_plaintext_ws = true;\n"
     " ws_url = \"ws://127.evil.example/ws\"; } );",
     "bad.conf:2: ws_url \"ws://127.evil.example/ws\": ws:// (no TLS) is allowed only to a "
     "loopback host (127.0.0.0/8, ::1, localhost); use wss://"},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\";\n ws_url = "
     "\"https://example.com/ws\"; } );",
     "bad.conf:2: ws_url \"https://example.com/ws\" must be wss://HOST[:PORT]/PATH (or ws:// to a "
     "loopback host with allow_plaintext_ws)"},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\"; transport = \"starttls\";\n"
     " ws_url = \"wss://example.com/ws\"; } );",
     "bad.conf:2: ws_url goes with transport \"websocket\" (or no transport setting)"},
    {"metrics = { max_connections = 0; };", "bad.conf:1: max_connections must be 1..10000, not 0"},
    {"metrics = { idle_timeout_s = 7200; };",
     "bad.conf:1: idle_timeout_s must be 1..3600, not 7200"},
    {"limits = { backoff_reset_s = 0; };", "bad.conf:1: backoff_reset_s must be 1..86400, not 0"},
    {"limits = { backoff_max_s = 0; };", "bad.conf:1: backoff_max_s must be 1..3600, not 0"},
    {"limits = { loops = \"many\"; };", "bad.conf:1: loops must be \"auto\" or 0..64"},
    {"limits = { loops = 65; };", "bad.conf:1: loops must be 0..64, not 65"},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\"; pasword = \"x\"; } );",
     "bad.conf:1: unknown setting 'pasword' in an account"},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\";\n presence = { show = "
     "\"busy\"; }; } );",
     "bad.conf:2: presence show must be away, chat, dnd, xa or online, not \"busy\""},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\";\n rooms = ( { room = "
     "\"r@muc.example\"; } ); } );",
     "bad.conf:2: a room needs room and nick"},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\"; rooms = (\n { room = "
     "\"r@muc.example/nick\"; nick = \"n\"; } ); } );",
     "bad.conf:2: room \"r@muc.example/nick\": a room is a bare JID room@service (the nick goes in "
     "'nick')"},
    {"accounts = ( { jid = \"a@b.example\"; password_file = \"/p\"; },\n { jid = \"A@B.example\"; "
     "password_file = \"/q\"; } );",
     "bad.conf:2: account a@b.example is defined twice (first on line 1)"},
    {"state = { sync = \"always\"; };",
     "bad.conf:1: state.sync must be \"sends\", \"full\" or \"normal\", not \"always\""},
    {"accounts = ( { jid = ; } );", "bad.conf:1: syntax error"},
    {"log = { level = \"info\"; };\n\nbus = { events = ipc; };", "bad.conf:3: syntax error"},
};

static void test_bad_configs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        xpb_config c;
        char err[512] = "";
        int rc = xpb_config_parse_string(&c, BAD[i].text, "bad.conf", err, sizeof err);
        if (rc != XPB_EINVAL || strcmp(err, BAD[i].err) != 0)
            fail_msg("case %zu: rc %d, err \"%s\"; expected XPB_EINVAL and \"%s\"", i, rc, err,
                     BAD[i].err);
        assert_int_equal(c.n_accounts, 0); /* cleared */
    }
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/xpb-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "accounts = (\n  { jid = \"a@b.example\"; password_file = \"/p\"; port = -1; }\n);\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    xpb_config c;
    char err[512] = "", want[600];
    assert_int_equal(xpb_config_load(&c, path, err, sizeof err), XPB_EINVAL);
    snprintf(want, sizeof want, "%s:2: port must be 1..65535, not -1", path);
    assert_string_equal(err, want);
    unlink(path);
    assert_int_equal(xpb_config_load(&c, path, err, sizeof err), XPB_EINVAL);
    snprintf(want, sizeof want, "%s: cannot read the file: No such file or directory", path);
    assert_string_equal(err, want);
}

/* Only a regular file is read: a FIFO would block the caller (SIGHUP runs
 * on the event loop) until a writer shows up, a device never ends. */
static void test_load_refuses_non_regular(void **state)
{
    (void)state;
    char dir[] = "/tmp/xpb-test-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/fifo.conf", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *const paths[] = {fifo, "/dev/null", dir};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        xpb_config c;
        char err[512] = "", want[600];
        assert_int_equal(xpb_config_load(&c, paths[i], err, sizeof err), XPB_EINVAL);
        snprintf(want, sizeof want,
                 "%s: not a regular file (a config file must be one; FIFOs and devices are "
                 "refused)", paths[i]);
        assert_string_equal(err, want);
        xpb_config_clear(&c);
    }
    unlink(fifo);
    rmdir(dir);
}

/* ws_url alone means the websocket transport; ws:// with the explicit
 * setting to a loopback host is accepted, in the file and as flags. */
static void test_websocket_rules(void **state)
{
    (void)state;
    static const char text[] =
        "accounts = (\n"
        "  { jid = \"a@b.example\"; password_file = \"/p\"; ws_url = \"wss://b.example/ws\"; },\n"
        "  { jid = \"c@b.example\"; password_file = \"/p\"; allow_plaintext_ws = true;\n"
        "    ws_url = \"ws://127.0.0.1:5280/xmpp-websocket\"; },\n"
        "  { jid = \"d@b.example\"; password_file = \"/p\"; allow_plaintext_ws = true;\n"
        "    ws_url = \"ws://[::1]:5280/ws\"; },\n"
        "  { jid = \"e@b.example\"; password_file = \"/p\"; allow_plaintext_ws = true;\n"
        "    ws_url = \"ws://LocalHost/ws\"; } );\n";
    xpb_config c;
    char err[512] = "";
    assert_int_equal(xpb_config_parse_string(&c, text, "ws.conf", err, sizeof err), 0);
    for (size_t i = 0; i < c.n_accounts; i++)
        assert_int_equal(c.accounts[i].transport, XPB_TRANSPORT_WEBSOCKET);
    assert_int_equal(c.accounts[0].allow_plaintext_ws, 0);
    assert_int_equal(c.accounts[1].allow_plaintext_ws, 1);
    xpb_account_cfg copy;
    assert_int_equal(xpb_account_cfg_copy(&copy, &c.accounts[1]), 0);
    assert_true(xpb_account_cfg_equal(&copy, &c.accounts[1]));
    copy.allow_plaintext_ws = 0;
    assert_false(xpb_account_cfg_equal(&copy, &c.accounts[1]));
    xpb_account_cfg_clear(&copy);
    xpb_config_clear(&c);
    /* flags: --ws-url implies --transport websocket */
    static const struct {
        const char *url;
        int plain;
        const char *transport;
        const char *err; /* NULL: accepted */
    } cases[] = {
        {"wss://b.example/ws", 0, NULL, NULL},
        {"ws://127.0.0.1:5280/ws", 1, NULL, NULL},
        {"ws://127.0.0.1:5280/ws", 0, NULL,
         "--ws-url: ws_url \"ws://127.0.0.1:5280/ws\": ws:// is WebSocket without TLS (RFC 7395 "
         "has no STARTTLS); use wss://, or set allow_plaintext_ws = true (--allow-plaintext-ws) "
         "for a loopback host"},
        {"ws://10.0.0.1/ws", 1, NULL,
         "--ws-url: ws_url \"ws://10.0.0.1/ws\": ws:// (no TLS) is allowed only to a loopback "
         "host (127.0.0.0/8, ::1, localhost); use wss://"},
        {"wss://b.example/ws", 0, "starttls",
         "--ws-url goes with --transport websocket (or no --transport)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[12] = {"xpbridge", "--jid", "a@b.example", "--password-file", "/p",
                          "--ws-url", (char *)cases[i].url};
        int argc = 7;
        if (cases[i].plain) argv[argc++] = "--allow-plaintext-ws";
        if (cases[i].transport) {
            argv[argc++] = "--transport";
            argv[argc++] = (char *)cases[i].transport;
        }
        xpb_cli cli;
        assert_int_equal(xpb_cli_parse(&cli, argc, argv, err, sizeof err), 0);
        xpb_config_init(&c);
        int rc = xpb_config_apply_cli(&c, &cli, err, sizeof err);
        if (cases[i].err == NULL) {
            if (rc != 0) fail_msg("case %zu: %s", i, err);
            assert_int_equal(c.accounts[0].transport, XPB_TRANSPORT_WEBSOCKET);
            assert_int_equal(c.accounts[0].allow_plaintext_ws, cases[i].plain);
        } else {
            assert_int_equal(rc, XPB_EINVAL);
            assert_string_equal(err, cases[i].err);
        }
        xpb_config_clear(&c);
    }
}

static void test_robustness_limits(void **state)
{
    (void)state;
    xpb_config c;
    char err[512] = "";
    assert_int_equal(xpb_config_parse_string(&c, "", "empty.conf", err, sizeof err), 0);
    assert_int_equal(c.metrics_max_connections, XPB_CONFIG_DEFAULT_METRICS_MAX_CONNECTIONS);
    assert_int_equal(c.metrics_idle_timeout_s, XPB_CONFIG_DEFAULT_METRICS_IDLE_S);
    assert_int_equal(c.backoff_reset_s, XPB_CONFIG_DEFAULT_BACKOFF_RESET_S);
    assert_int_equal(c.backoff_max_s, XPB_CONFIG_DEFAULT_BACKOFF_MAX_S);
    /* loops: one worker loop per core by default, none on one core */
    assert_int_equal(c.loops, XPB_CONFIG_LOOPS_AUTO);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(xpb_config_loops(&c), cores < 2 ? 0 : (unsigned)cores);
    xpb_config_clear(&c);
    assert_int_equal(
        xpb_config_parse_string(&c, "limits = { loops = \"auto\"; };", "a.conf", err, sizeof err),
        0);
    assert_int_equal(c.loops, XPB_CONFIG_LOOPS_AUTO);
    xpb_config_clear(&c);
    assert_int_equal(
        xpb_config_parse_string(&c, "limits = { loops = 0; };", "z.conf", err, sizeof err), 0);
    assert_int_equal(xpb_config_loops(&c), 0);
    xpb_config_clear(&c);
    assert_int_equal(xpb_config_parse_string(
                         &c,
                         "metrics = { max_connections = 4; idle_timeout_s = 2; };\n"
                         "limits = { backoff_reset_s = 300; backoff_max_s = 8; loops = 3; };",
                         "l.conf", err, sizeof err),
                     0);
    assert_int_equal(c.metrics_max_connections, 4);
    assert_int_equal(c.metrics_idle_timeout_s, 2);
    assert_int_equal(c.backoff_reset_s, 300);
    assert_int_equal(c.backoff_max_s, 8);
    assert_int_equal(xpb_config_loops(&c), 3);
    xpb_config_clear(&c);
}

static int parse_args(xpb_cli *cli, char *err, size_t errlen, ...)
{
    char *argv[32] = {"xpbridge"};
    int argc = 1;
    va_list ap;
    va_start(ap, errlen);
    for (char *a; argc < 31 && (a = va_arg(ap, char *)) != NULL;) argv[argc++] = a;
    va_end(ap);
    return xpb_cli_parse(cli, argc, argv, err, errlen);
}

static void test_flags_override(void **state)
{
    (void)state;
    xpb_config c;
    xpb_cli cli;
    char err[512] = "";
    assert_int_equal(xpb_config_parse_string(&c, GOOD, "good.conf", err, sizeof err), 0);
    assert_int_equal(parse_args(&cli, err, sizeof err, "--config", "good.conf", "--events",
                                "ipc:///tmp/e", "--metrics", "0", "--log-level", "warn", "--jid",
                                "new@example.com", "--password-file", "/np", "--port", "5223",
                                "--transport", "directtls", "--room", "r@muc.example.com/me",
                                "--no-presence", "--roster", NULL),
                     0);
    assert_string_equal(cli.config_file, "good.conf");
    assert_int_equal(xpb_config_apply_cli(&c, &cli, err, sizeof err), 0);
    assert_string_equal(c.events_url, "ipc:///tmp/e");
    assert_string_equal(c.requests_url, "ipc:///run/xpbridge/requests"); /* untouched */
    assert_string_equal(c.metrics_listen, "0");
    assert_int_equal(c.log_level, XPB_CFG_LOG_WARN);
    assert_int_equal(c.n_accounts, 3);
    const xpb_account_cfg *a = xpb_config_find(&c, "new@example.com");
    assert_non_null(a);
    assert_string_equal(a->password_file, "/np");
    assert_int_equal(a->port, 5223);
    assert_int_equal(a->transport, XPB_TRANSPORT_DIRECT_TLS);
    assert_int_equal(a->send_presence, 0);
    assert_int_equal(a->fetch_roster, 1);
    assert_int_equal(a->n_rooms, 1);
    assert_string_equal(a->rooms[0].room, "r@muc.example.com");
    assert_string_equal(a->rooms[0].nick, "me");
    /* --jid naming a configured account replaces it. */
    assert_int_equal(parse_args(&cli, err, sizeof err, "--jid", "bot@example.com",
                                "--password-file", "/other", NULL),
                     0);
    assert_int_equal(xpb_config_apply_cli(&c, &cli, err, sizeof err), 0);
    assert_int_equal(c.n_accounts, 3);
    assert_string_equal(xpb_config_find(&c, "bot@example.com")->password_file, "/other");
    assert_int_equal(xpb_config_find(&c, "bot@example.com")->n_rooms, 0);
    xpb_config_clear(&c);
}

static const struct bad_flags {
    const char *a, *b, *c;
    const char *err;
} BAD_FLAGS[] = {
    {"--bogus", NULL, NULL, "unknown option --bogus"},
    {"--port", "0", NULL, "--port must be 1..65535, not '0'"},
    {"--config", NULL, NULL, "option --config needs a value"},
    {"--password-file", "/p", NULL,
     "--password-file, --host, --port, --transport, --ws-url, --allow-plaintext-ws, --ca-file, "
     "--room, --no-presence and --roster go with --jid"},
    {"--jid", "a@b.example", NULL, "--jid needs --password-file"},
    {"--log-level", "loud", NULL, "--log-level must be debug, info, warn or error, not 'loud'"},
    {"--metrics", "9477", NULL, "--metrics must be ADDR:PORT (e.g. 127.0.0.1:9477) or 0, not '9477'"},
    {"stray", NULL, NULL, "unexpected argument 'stray' (options start with --)"},
};

static void test_bad_flags(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof BAD_FLAGS / sizeof BAD_FLAGS[0]; i++) {
        xpb_cli cli;
        char err[512] = "";
        const struct bad_flags *f = &BAD_FLAGS[i];
        int rc = parse_args(&cli, err, sizeof err, f->a, f->b, f->c, NULL);
        if (rc != XPB_EINVAL || strcmp(err, f->err) != 0)
            fail_msg("case %zu: rc %d, err \"%s\"; expected \"%s\"", i, rc, err, f->err);
    }
    /* Errors found when the account is built. */
    xpb_config c;
    xpb_cli cli;
    char err[512] = "";
    xpb_config_init(&c);
    assert_int_equal(parse_args(&cli, err, sizeof err, "--jid", "a@b.example", "--password-file",
                                "/p", "--room", "nonick@muc.example", NULL),
                     0);
    assert_int_equal(xpb_config_apply_cli(&c, &cli, err, sizeof err), XPB_EINVAL);
    assert_string_equal(err, "--room takes ROOM@SERVICE/NICK, not 'nonick@muc.example'");
    xpb_config_clear(&c);
    xpb_config_init(&c);
    assert_int_equal(parse_args(&cli, err, sizeof err, "--jid", "a@b.example", "--password-file",
                                "/p", "--transport", "websocket", NULL),
                     0);
    assert_int_equal(xpb_config_apply_cli(&c, &cli, err, sizeof err), XPB_EINVAL);
    assert_string_equal(err, "--transport websocket needs --ws-url");
    xpb_config_clear(&c);
}

static void test_account_equal(void **state)
{
    (void)state;
    xpb_config c;
    char err[512] = "";
    assert_int_equal(xpb_config_parse_string(&c, GOOD, "good.conf", err, sizeof err), 0);
    xpb_account_cfg copy;
    assert_int_equal(xpb_account_cfg_copy(&copy, &c.accounts[0]), 0);
    assert_true(xpb_account_cfg_equal(&copy, &c.accounts[0]));
    copy.line = 99; /* where it is defined does not matter */
    assert_true(xpb_account_cfg_equal(&copy, &c.accounts[0]));
    copy.port = 5223;
    assert_false(xpb_account_cfg_equal(&copy, &c.accounts[0]));
    copy.port = 5222;
    free(copy.rooms[0].nick);
    copy.rooms[0].nick = strdup("bot2");
    assert_false(xpb_account_cfg_equal(&copy, &c.accounts[0]));
    xpb_account_cfg_clear(&copy);
    assert_false(xpb_account_cfg_equal(&c.accounts[0], &c.accounts[1]));
    xpb_config_clear(&c);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(xpb_config_log_level("error"), XPB_CFG_LOG_ERROR);
    assert_int_equal(xpb_config_log_level("warning"), XPB_CFG_LOG_WARN);
    assert_int_equal(xpb_config_log_level("verbose"), -1);
    assert_string_equal(xpb_config_log_level_name(XPB_CFG_LOG_DEBUG), "debug");
    assert_int_equal(xpb_config_transport("directtls"), XPB_TRANSPORT_DIRECT_TLS);
    assert_int_equal(xpb_config_transport("plain"), -1);
}

/* iq { answer_version; passthrough } (docs/configuration.md, `iq`). */
static void test_iq_group(void **state)
{
    (void)state;
    xpb_config c;
    char err[512] = "";
    assert_int_equal(xpb_config_parse_string(&c, "", "empty.conf", err, sizeof err), 0);
    assert_int_equal(c.iq_answer_version, 0); /* off by default (XEP-0092 §6) */
    assert_int_equal(c.n_iq_passthrough, 0);
    xpb_config_clear(&c);
    assert_int_equal(xpb_config_parse_string(&c,
                                             "iq = { answer_version = true;\n"
                                             " passthrough = [ \"urn:a\", \"urn:b\" ]; };",
                                             "iq.conf", err, sizeof err),
                     0);
    assert_int_equal(c.iq_answer_version, 1);
    assert_int_equal(c.n_iq_passthrough, 2);
    assert_string_equal(c.iq_passthrough[0], "urn:a");
    assert_string_equal(c.iq_passthrough[1], "urn:b");
    xpb_config_clear(&c);
    static const struct bad_case bad[] = {
        {"iq = { passthrough = \"urn:a\"; };",
         "bad.conf:1: iq.passthrough must be a list of namespaces: [ \"urn:...\" ]"},
        {"iq = {\n passthrough = [ \"\" ]; };",
         "bad.conf:2: iq.passthrough: each entry is a namespace string"},
        {"iq = { passthrough = ( 1 ); };",
         "bad.conf:1: iq.passthrough: each entry is a namespace string"},
        {"iq = { answer_version = \"yes\"; };", "bad.conf:1: answer_version must be true or false"},
        {"iq = { version = true; };", "bad.conf:1: unknown setting 'version' in iq"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = xpb_config_parse_string(&c, bad[i].text, "bad.conf", err, sizeof err);
        if (rc != XPB_EINVAL || strcmp(err, bad[i].err) != 0)
            fail_msg("iq case %zu: rc %d, err \"%s\"; expected \"%s\"", i, rc, err, bad[i].err);
    }
}

/* The shipped example must stay valid. */
static void test_example_file(void **state)
{
    (void)state;
    xpb_config c;
    char err[512] = "";
    int rc = xpb_config_load(&c, XPB_SOURCE_DIR "/tools/xpbridge.conf.example", err, sizeof err);
    if (rc != 0) fail_msg("example: %s", err);
    assert_true(c.n_accounts >= 1);
    xpb_config_clear(&c);
}

/* The two switches of bus open requests: off unless set (docs/security.md). */
/* The nats group (config_nats.c): every setting read, defaults, refusals
 * naming the setting. */
static void test_nats_group(void **state)
{
    (void)state;
    xpb_config c;
    char err[512] = "";
    const char good[] =
        "bus = { backend = \"nats\"; };\n"
        "nats = { servers = [ \"nats://a:4222\", \"tls://b:4222\" ]; bridge_id = \"b1\";\n"
        "  ca_file = \"/ca\"; cert_file = \"/c\"; key_file = \"/k\"; creds_file = \"/cr\";\n"
        "  replicas = 3; storage = \"memory\"; max_age_s = 3600; max_bytes = 1000000;\n"
        "  lease_ttl_s = 20; max_sessions = 500; only_listed_servers = true; shards = 64; };\n";
    assert_int_equal(xpb_config_parse_string(&c, good, "n.conf", err, sizeof err), 0);
    assert_true(c.bus_nats);
    assert_int_equal(c.nats.n_servers, 2);
    assert_string_equal(c.nats.servers[1], "tls://b:4222");
    assert_string_equal(c.nats.bridge_id, "b1");
    assert_string_equal(c.nats.creds_file, "/cr");
    assert_int_equal(c.nats.replicas, 3);
    assert_true(c.nats.memory_storage);
    assert_int_equal(c.nats.max_age_s, 3600);
    assert_int_equal(c.nats.lease_ttl_s, 20);
    assert_int_equal(c.nats.max_sessions, 500);
    assert_int_equal(c.nats.shards, 64);
    assert_true(c.nats.leases);
    assert_true(c.nats.only_listed_servers);
    xpb_config_clear(&c);
    assert_int_equal(xpb_config_parse_string(&c, "log = { level = \"info\"; };", "n.conf", err,
                                             sizeof err),
                     0);
    assert_false(c.bus_nats);
    assert_true(c.nats.leases);
    assert_int_equal(c.nats.lease_ttl_s, XPB_CONFIG_DEFAULT_LEASE_TTL_S);
    assert_int_equal(c.nats.shards, 0);
    xpb_config_clear(&c);
    static const struct {
        const char *text, *err;
    } bad[] = {
        {"bus = { backend = \"zmq\"; };", "n.conf:1: bus.backend must be \"nng\" or \"nats\""},
        {"bus = { backend = \"nats\"; };",
         "n.conf:0: nats.servers: bus.backend = \"nats\" needs nats.servers"},
        {"nats = { servers = [ \"http://x\" ]; };",
         "n.conf:1: nats.servers[0] must be a nats:// or tls:// URL"},
        {"nats = { storage = \"disk\"; };",
         "n.conf:1: nats.storage must be \"file\" or \"memory\", not \"disk\""},
        {"nats = { replicas = 7; };", "n.conf:1: nats.replicas must be 1..5, not 7"},
        {"nats = { lease_ttl_s = 1; };", "n.conf:1: nats.lease_ttl_s must be 3..3600, not 1"},
        {"nats = { shards = 65537; };", "n.conf:1: nats.shards must be 0..65536, not 65537"},
        {"nats = { sever = [ ]; };", "n.conf:1: nats.sever: unknown setting"},
        {"nats = { cert_file = \"/c\"; };", "n.conf:1: nats.cert_file and key_file go together"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = xpb_config_parse_string(&c, bad[i].text, "n.conf", err, sizeof err);
        if (rc != XPB_EINVAL || strcmp(err, bad[i].err) != 0)
            fail_msg("case %zu: rc %d, err \"%s\"; expected \"%s\"", i, rc, err, bad[i].err);
    }
}

static void test_bus_open_switches(void **state)
{
    (void)state;
    xpb_config c;
    char err[512] = "";
    assert_int_equal(xpb_config_parse_string(&c, "", "empty.conf", err, sizeof err), 0);
    assert_int_equal(c.allow_inline_credentials, 0);
    assert_int_equal(c.allow_open_overrides, 0);
    xpb_config_clear(&c);
    assert_int_equal(xpb_config_parse_string(&c,
                                             "bus = { allow_inline_credentials = true;\n"
                                             "        allow_open_overrides = true; };",
                                             "on.conf", err, sizeof err),
                     0);
    assert_int_equal(c.allow_inline_credentials, 1);
    assert_int_equal(c.allow_open_overrides, 1);
    xpb_config_clear(&c);
    assert_int_equal(xpb_config_parse_string(&c, "bus = { allow_open_overrides = 1; };", "bad.conf",
                                             err, sizeof err),
                     XPB_EINVAL);
    assert_string_equal(err, "bad.conf:1: allow_open_overrides must be true or false");
}

/* mam = { ... } (docs/configuration.md): defaults, values, bounds named. */
static void test_mam_group(void **state)
{
    (void)state;
    xpb_config c;
    char err[512] = "";
    assert_int_equal(xpb_config_parse_string(&c, "", "empty.conf", err, sizeof err), 0);
    assert_int_equal(c.mam_catchup, 1);
    assert_int_equal(c.mam_page_size, XPB_CONFIG_DEFAULT_MAM_PAGE);
    assert_int_equal(c.mam_max_pages, XPB_CONFIG_DEFAULT_MAM_MAX_PAGES);
    assert_int_equal(c.mam_max_messages, XPB_CONFIG_DEFAULT_MAM_MAX_MESSAGES);
    assert_int_equal(c.mam_timeout_ms, XPB_CONFIG_DEFAULT_MAM_TIMEOUT_MS);
    xpb_config_clear(&c);
    assert_int_equal(xpb_config_parse_string(&c,
                                             "mam = { catchup = false; page_size = 20;\n"
                                             "        max_pages = 3; max_messages = 70;\n"
                                             "        timeout_ms = 5000; };",
                                             "mam.conf", err, sizeof err),
                     0);
    assert_int_equal(c.mam_catchup, 0);
    assert_int_equal(c.mam_page_size, 20);
    assert_int_equal(c.mam_max_pages, 3);
    assert_int_equal(c.mam_max_messages, 70);
    assert_int_equal(c.mam_timeout_ms, 5000);
    xpb_config_clear(&c);
    static const struct {
        const char *text, *err;
    } bad[] = {
        {"mam = { page_size = 0; };", "bad.conf:1: page_size must be 1..1000, not 0"},
        {"mam = { timeout_ms = 10; };", "bad.conf:1: timeout_ms must be 1000..600000, not 10"},
        {"mam = { catchup = 1; };", "bad.conf:1: catchup must be true or false"},
        {"mam = { pages = 3; };", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = xpb_config_parse_string(&c, bad[i].text, "bad.conf", err, sizeof err);
        if (rc != XPB_EINVAL || (bad[i].err && strcmp(err, bad[i].err) != 0))
            fail_msg("mam case %zu: rc %d, err \"%s\"; expected \"%s\"", i, rc, err,
                     bad[i].err ? bad[i].err : "(an unknown-setting error)");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_config),    cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_configs),    cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_flags_override), cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_account_equal), cmocka_unit_test(test_names),
        cmocka_unit_test(test_example_file),  cmocka_unit_test(test_iq_group),
        cmocka_unit_test(test_load_refuses_non_regular), cmocka_unit_test(test_nats_group),
        cmocka_unit_test(test_websocket_rules),
        cmocka_unit_test(test_robustness_limits),
        cmocka_unit_test(test_bus_open_switches),
        cmocka_unit_test(test_mam_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
