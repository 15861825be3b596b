/* xpbridge: keeps the configured XMPP sessions open and serves backends over
 * NNG. This file is the executable's shell: command line, where logs go,
 * signals (SIGTERM/SIGINT clean shutdown, SIGHUP reload); it creates the loop,
 * the daemon (bridge/daemon/, which does the work) and the /metrics listener
 * (metrics.c), and hands the listener the daemon's figures (metrics_snapshot). */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "xpb_config.h"
#include "xpb_daemon.h"
#include "metrics.h"
#include "notify.h"
#include "xpb_error.h"
#include "xpb_bus.h"
#include "xpb_log.h"
#include "xpb_loop.h"
#include "xpb_xml.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static int open_log(const char *path)
{
    char err[512];
    if (!path || xpb_log_open_file(path, err, sizeof err) == 0) return 0;
    fprintf(stderr, "xpbridge: %s\n", err);
    return -1;
}

/* ---- help ------------------------------------------------------------------------ */

static const char HELP[] =
    "NAME\n"
    "    xpbridge - bridge XMPP accounts to backends over NNG with Protobuf records\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbridge [--config FILE] [--jid JID --password-file FILE [--host H] [--port N]\n"
    "             [--transport starttls|directtls|websocket] [--ws-url URL]\n"
    "             [--allow-plaintext-ws] [--ca-file FILE]\n"
    "             [--room ROOM@SERVICE/NICK]... [--no-presence] [--roster]]\n"
    "             [--events URL] [--requests URL] [--metrics ADDR:PORT]\n"
    "             [--log-level debug|info|warn|error] [--log-file FILE] [--state-dir DIR]\n"
    "             [--check-config] [--version] [--help]\n"
    "\n"
    "DESCRIPTION\n"
    "    xpbridge keeps one XMPP client session open per configured account (TLS\n"
    "    required, SCRAM, stream management with resumption, reconnection with\n"
    "    backoff) and serves backends over two NNG sockets:\n"
    "      events    (PUB)  every received stanza as an xpb.v1 record, session state\n"
    "                       changes and delivery outcomes; topic \"<kind>/<account>/\"\n"
    "      requests  (REP)  open, close, send, iq, presence, roster, join, list, status\n"
    "    Records and topics are described in proto/xpb/v1/bus.proto; xpbctl(1) is the\n"
    "    command-line client. Accounts are named by their bare JID.\n"
    "    With bus.backend = \"nats\" in the config file the same records travel over\n"
    "    NATS JetStream instead (stream XPB_EVENTS, subjects xpb.ev.<kind>.<account>,\n"
    "    requests on xpb.req.<account>) and several bridges with the same account\n"
    "    list share the accounts by leases in NATS KV (docs/scaling.md).\n"
    "\n"
    "OPTIONS\n"
    "    --config FILE        read settings and accounts from FILE (libconfig syntax)\n"
    "    --jid JID            run this account (in addition to those of --config)\n"
    "    --password-file FILE its password: the file's content, trailing newline removed\n"
    "    --host H, --port N   connect there instead of the DNS SRV target (TLS still\n"
    "                         verifies the JID's domain)\n"
    "    --transport T        starttls (default), directtls (XEP-0368) or websocket\n"
    "    --ws-url URL         wss:// URL; implies --transport websocket\n"
    "    --allow-plaintext-ws allow a ws:// (no TLS) --ws-url, to a loopback host only\n"
    "                         (127.0.0.0/8, ::1, localhost); otherwise ws:// is refused\n"
    "    --ca-file FILE       trust the CA certificates in FILE instead of the system store\n"
    "    --room R@S/NICK      join this MUC room (repeatable); rejoined after reconnects\n"
    "    --no-presence        do not send initial presence\n"
    "    --roster             fetch the roster after login\n"
    "    --events URL         PUB endpoint (default ipc://$XDG_RUNTIME_DIR/xpbridge/events,\n"
    "                         or ipc:///tmp/xpbridge-UID/events; the directory is 0700)\n"
    "    --requests URL       REP endpoint (default .../requests beside the events socket)\n"
    "    --metrics ADDR:PORT  /metrics and /healthz listener (default 127.0.0.1:9477;\n"
    "                         0 disables; non-loopback needs metrics.allow_remote)\n"
    "    --log-level L        debug, info (default), warn or error\n"
    "    --log-file FILE      append logs to FILE instead of stderr\n"
    "    --state-dir DIR      keep state in DIR/xpbridge.db (SQLite, WAL): every event\n"
    "                         written before it is published (replay by seq, xpbctl\n"
    "                         tail --resume-file), every accepted send until the\n"
    "                         server acks it (sent again after a restart), XEP-0198\n"
    "                         state (a restart resumes the stream). Default:\n"
    "                         $XDG_STATE_HOME/xpbridge, else ~/.local/state/xpbridge;\n"
    "                         \"none\" keeps nothing. One bridge per DIR (a lock)\n"
    "    --check-config       validate the configuration and password files, then exit\n"
    "    --version            print the version\n"
    "    --help               print this text\n"
    "    Flags override the config file's global settings; --jid adds one account.\n"
    "\n"
    "CONFIGURATION\n"
    "    log = { level = \"info\"; file = \"/var/log/xpbridge.log\"; };\n"
    "    bus = { events = \"ipc:///run/xpbridge/events\";\n"
    "            requests = \"ipc:///run/xpbridge/requests\"; allow_remote = false;\n"
    "            max_request_bytes = 1048576; batch_max = 64; batch_flush_us = 2000; };\n"
    "    metrics = { listen = \"127.0.0.1:9477\"; max_connections = 16; idle_timeout_s = 10; };\n"
    "    limits = { queue_max = 1000; max_stanza_bytes = 262144; muc_self_ping_s = 300;\n"
    "               backoff_reset_s = 60; };\n"
    "    accounts = ( { jid = \"bot@example.com\"; password_file = \"/etc/xpbridge/bot.pass\";\n"
    "                   host = \"127.0.0.1\"; port = 5222; transport = \"starttls\";\n"
    "                   # or: ws_url = \"wss://example.com/xmpp-websocket\";\n"
    "                   ca_file = \"/etc/ssl/private-ca.pem\";\n"
    "                   presence = { show = \"chat\"; status = \"bridged\"; };\n"
    "                   send_presence = true; fetch_roster = true;\n"
    "                   rooms = ( { room = \"team@conference.example.com\"; nick = \"bot\"; } );\n"
    "                 } );\n"
    "    Every setting is described in docs/configuration.md.\n"
    "\n"
    "SIGNALS\n"
    "    SIGTERM, SIGINT  close every session cleanly (unavailable presence, stream\n"
    "                     close; at most 3 s), answer open requests, exit 0. A second\n"
    "                     signal stops at once.\n"
    "    SIGHUP           re-read --config: start new accounts, close removed ones,\n"
    "                     restart changed ones, leave the others untouched. On an\n"
    "                     error the running set is kept and the error logged; so\n"
    "                     it is when FILE is not a regular file or defines no\n"
    "                     account while accounts are running.\n"
    "\n"
    "FILES\n"
    "    $XDG_RUNTIME_DIR/xpbridge/ or /tmp/xpbridge-UID/   default ipc sockets (0700)\n"
    "    tools/xpbridge.conf.example                        an annotated configuration\n"
    "\n"
    "EXIT STATUS\n"
    "    0  clean shutdown after SIGTERM/SIGINT (or --check-config found no error)\n"
    "    1  runtime failure (the bus or the metrics listener cannot bind, ...)\n"
    "    2  usage or configuration error (\"FILE:LINE: text\")\n"
    "\n"
    "EXAMPLES\n"
    "    xpbridge --jid bot@example.com --password-file ~/.config/xpbridge/bot.pass\n"
    "    xpbridge --config /etc/xpbridge/xpbridge.conf --log-level debug\n"
    "    xpbridge --config xpbridge.conf --check-config\n"
    "    xpbctl tail --json     # in another terminal: watch the events\n";

/* ---- configuration ---------------------------------------------------------------- */

static int load_config(const xpb_cli *cli, xpb_config *cfg, char *err, size_t errlen)
{
    int rc;
    if (cli->config_file) rc = xpb_config_load(cfg, cli->config_file, err, errlen);
    else {
        xpb_config_init(cfg);
        rc = 0;
    }
    if (rc == 0) rc = xpb_config_apply_cli(cfg, cli, err, errlen);
    if (rc != 0) xpb_config_clear(cfg);
    return rc;
}

/* --check-config also opens each password file (without keeping its content). */
static int check_password_files(const xpb_config *cfg)
{
    int bad = 0;
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        const char *p = cfg->accounts[i].password_file;
        struct stat sb;
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size == 0) {
            fprintf(stderr, "xpbridge: account %s: password file %s: %s\n", cfg->accounts[i].jid,
                    p, fd < 0 ? strerror(errno) : "not a non-empty regular file");
            bad = 1;
        } else if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
            fprintf(stderr, "xpbridge: warning: password file %s can be read by group or others\n",
                    p);
        }
        if (fd >= 0) close(fd);
    }
    return bad;
}

/* ---- signals ---------------------------------------------------------------------- */

struct run {
    xpb_daemon *d;
    xpb_metrics *metrics;
    const xpb_cli *cli;
    xpb_notify *notify;
    size_t n_accounts; /* of the configuration running now */
};

static void on_term(void *ud, int sig)
{
    struct run *r = ud;
    xpb_log(XPB_LOG_INFO, "signal %s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    xpb_notify_stopping(r->notify);
    xpb_daemon_shutdown(r->d);
}

static void reload(struct run *r)
{
    if (!r->cli->config_file) {
        xpb_log(XPB_LOG_INFO, "SIGHUP: no --config to reload");
        return;
    }
    xpb_log(XPB_LOG_INFO, "SIGHUP: reloading %s", r->cli->config_file);
    xpb_config cfg;
    char err[1024] = "";
    if (load_config(r->cli, &cfg, err, sizeof err) != 0) {
        xpb_log(XPB_LOG_ERROR, "reload failed, keeping the running accounts: %s", err);
        return;
    }
    if (cfg.n_accounts == 0 && r->n_accounts > 0) {
        /* An emptied or truncated file (an editor mid-save, a failed deploy)
         * must not close every session; stopping them all is SIGTERM's job. */
        xpb_log(XPB_LOG_ERROR,
                "reload refused, keeping the running accounts: %s defines no account and a "
                "reload may not remove every account (%zu running); stop xpbridge instead",
                r->cli->config_file, r->n_accounts);
        xpb_config_clear(&cfg);
        return;
    }
    xpb_daemon_reload(r->d, &cfg);
    r->n_accounts = cfg.n_accounts;
    xpb_config_clear(&cfg);
}

static void on_hup(void *ud, int sig)
{
    struct run *r = ud;
    (void)sig;
    xpb_notify_reloading(r->notify);
    reload(r);
    xpb_notify_ready(r->notify); /* the reload is over, applied or refused */
}

/* SIGUSR1: reopen --log-file after logrotate moved it. */
static void on_usr1(void *ud, int sig)
{
    char err[512];
    (void)ud, (void)sig;
    if (xpb_log_reopen(err, sizeof err) != 0)
        xpb_log(XPB_LOG_ERROR, "SIGUSR1: %s; still writing to the old file", err);
    else
        xpb_log(XPB_LOG_INFO, "SIGUSR1: log file reopened");
}

static void service_status(void *ud, char *buf, size_t len)
{
    struct run *r = ud;
    xpb_daemon_counters c;
    xpb_daemon_get_counters(r->d, &c);
    snprintf(buf, len, "%u of %u sessions online", c.sessions[XPB_MST_ONLINE], c.n_accounts);
}

/* 0, or XPB_METRICS_FULL: the walk stops at this account until there is room. */
static int add_account(void *ud, const char *name, unsigned queued, unsigned unacked)
{
    return xpb_metrics_snapshot_add_account(ud, name, queued, unacked);
}

/* The /metrics listener's figures, read from the daemon on each request
 * (on the loop thread): the counters first, then the accounts, a slice per
 * loop turn, paused (XPB_METRICS_FULL) while the listener makes room. */
static int metrics_snapshot(void *ud, xpb_metrics_snapshot *s, int first)
{
    struct run *r = ud;
    if (first) {
        xpb_daemon_get_counters(r->d, &s->c);
        xpb_daemon_get_bus_stats(r->d, &s->bus);
        for (int i = 0; i < XPB_MST_COUNT; i++)
            s->state_name[i] = xpb_daemon_state_name(i);
    }
    int more = 0;
    int rc = xpb_daemon_each_account_slice(r->d, first, XPB_METRICS_SLICE, add_account, s, &more);
    return rc ? rc : more ? XPB_METRICS_MORE : 0; /* rc: XPB_METRICS_FULL */
}

static int metrics_on(const xpb_config *cfg)
{
    const char *ml = cfg->metrics_listen;
    return ml && ml[0] && strcmp(ml, "0") != 0;
}

/* After the daemon: the listener reads its figures. */
static int metrics_start(struct run *r, xpb_loop *loop, const xpb_config *cfg, char *err,
                         size_t errlen)
{
    if (!metrics_on(cfg)) return 0;
    xpb_daemon_counters c;
    xpb_daemon_get_counters(r->d, &c);
    xpb_metrics_opts mo = {.expected_accounts = c.n_accounts,
                           .listen = cfg->metrics_listen,
                           .allow_remote = cfg->metrics_allow_remote || cfg->allow_remote,
                           .max_connections = cfg->metrics_max_connections,
                           .idle_timeout_s = cfg->metrics_idle_timeout_s};
    return xpb_metrics_new(&r->metrics, loop, &mo, metrics_snapshot, r, err, errlen);
}

/* The libraries that parse or carry untrusted input, as running (not as
 * built against): an operator can tell which security update is in use. */
static void library_versions(char *buf, size_t len)
{
    char codec[512], loop[256];
    xpb_codec_versions(codec, sizeof codec);
    xpb_loop_versions(loop, sizeof loop);
    snprintf(buf, len, "%s, %s, NNG %s", codec, loop, xpb_bus_library_version());
}

enum { SIG_TERM, SIG_INT, SIG_HUP, SIG_USR1, SIG_COUNT };

static int install_signals(xpb_loop *loop, struct run *r, xpb_signal *sigs[SIG_COUNT])
{
    static const struct {
        int signo;
        xpb_signal_cb cb;
    } table[SIG_COUNT] = {
        [SIG_TERM] = {SIGTERM, on_term},
        [SIG_INT] = {SIGINT, on_term},
        [SIG_HUP] = {SIGHUP, on_hup},
        [SIG_USR1] = {SIGUSR1, on_usr1},
    };
    for (int i = 0; i < SIG_COUNT; i++)
        if (xpb_signal_new(loop, table[i].signo, table[i].cb, r, &sigs[i]) != 0) return -1;
    return 0;
}

static int run(const xpb_cli *cli, const xpb_config *cfg)
{
    signal(SIGPIPE, SIG_IGN);
    xpb_loop_route_libevent_log();
    xpb_loop_config lc = {0};
    lc.thread_safe = cfg->bus_nats; /* the NATS client adds events from its threads */
    lc.connect_rate = cfg->connect_rate;
    xpb_loop *loop = NULL;
    if (xpb_loop_new(&loop, &lc) != 0) {
        xpb_log(XPB_LOG_ERROR, "cannot create the event loop");
        return EXIT_RUNTIME;
    }
    struct run r = {NULL, NULL, cli, NULL, cfg->n_accounts};
    xpb_signal *sigs[SIG_COUNT] = {NULL};
    char err[1024] = "";
    char libs[1024];
    library_versions(libs, sizeof libs);
    xpb_log(XPB_LOG_INFO, "xpbridge %s: libraries %s", XPB_VERSION_STRING, libs);
    int rc = xpb_daemon_new(&r.d, loop, cfg, err, sizeof err);
    if (rc == 0) rc = metrics_start(&r, loop, cfg, err, sizeof err);
    int status = EXIT_OK;
    if (rc != 0) {
        xpb_log(XPB_LOG_ERROR, "xpbridge: %s", err[0] ? err : xpb_strerror(rc));
        status = EXIT_RUNTIME;
    } else if (install_signals(loop, &r, sigs) != 0 ||
               xpb_notify_new(&r.notify, loop, service_status, &r) != 0) {
        xpb_log(XPB_LOG_ERROR, "xpbridge: cannot install signal handlers");
        status = EXIT_RUNTIME;
    } else {
        xpb_log(XPB_LOG_INFO, "xpbridge: ready events %s requests %s metrics %s (%zu accounts)",
                xpb_daemon_events_url(r.d), xpb_daemon_requests_url(r.d),
                metrics_on(cfg) ? cfg->metrics_listen : "off", cfg->n_accounts);
        xpb_notify_ready(r.notify);
        xpb_loop_run(loop);
    }
    xpb_metrics_free(r.metrics);
    xpb_daemon_free(r.d);
    xpb_notify_free(r.notify);
    for (int i = 0; i < SIG_COUNT; i++) xpb_signal_free(sigs[i]);
    xpb_loop_free(loop);
    return status;
}

int main(int argc, char **argv)
{
    xpb_cli cli;
    char err[1024] = "";
    if (xpb_cli_parse(&cli, argc, argv, err, sizeof err) != 0) {
        fprintf(stderr, "xpbridge: %s\n(see xpbridge --help)\n", err);
        return EXIT_USAGE;
    }
    if (cli.help) {
        fputs(HELP, stdout);
        return EXIT_OK;
    }
    if (cli.version) {
        char libs[1024];
        library_versions(libs, sizeof libs);
        printf("xpbridge %s\nlibraries: %s\n", XPB_VERSION_STRING, libs);
        return EXIT_OK;
    }
    xpb_config cfg;
    if (load_config(&cli, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "xpbridge: %s\n", err);
        return EXIT_USAGE;
    }
    if (xpb_metrics_check_listen(cfg.metrics_listen, cfg.metrics_allow_remote || cfg.allow_remote,
                                 err, sizeof err) != 0) {
        fprintf(stderr, "xpbridge: %s\n", err);
        xpb_config_clear(&cfg);
        return EXIT_USAGE;
    }
    if (cli.check_config) {
        int bad = check_password_files(&cfg);
        if (!bad)
            printf("%s: ok (%zu accounts)\n", cli.config_file ? cli.config_file : "flags",
                   cfg.n_accounts);
        xpb_config_clear(&cfg);
        return bad ? EXIT_USAGE : EXIT_OK;
    }
    xpb_log_init();
    xpb_log_set_level(cfg.log_level);
    if (open_log(cfg.log_file) != 0) {
        xpb_config_clear(&cfg);
        return EXIT_USAGE;
    }
    int status = run(&cli, &cfg);
    xpb_config_clear(&cfg);
    xpb_log_close_file();
    return status;
}
