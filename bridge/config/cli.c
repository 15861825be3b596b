/* xpbridge's command line (xpb_config.h: xpb_cli_parse, xpb_config_apply_cli):
 * the flags, their checks, and the account and global settings they put on top
 * of the configuration file. */
#include "xpb_config.h"
#include "config_internal.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_session.h"

/* ---- the command line ------------------------------------------------------------ */

enum {
    OPT_CONFIG = 256, OPT_JID, OPT_PWFILE, OPT_HOST, OPT_PORT, OPT_TRANSPORT, OPT_WSURL,
    OPT_CAFILE, OPT_ROOM, OPT_NOPRES, OPT_ROSTER, OPT_EVENTS, OPT_REQUESTS, OPT_METRICS,
    OPT_LOGLEVEL, OPT_LOGFILE, OPT_CHECK, OPT_VERSION, OPT_HELP, OPT_PLAINWS, OPT_STATEDIR,
};

static const struct option long_opts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"jid", required_argument, NULL, OPT_JID},
    {"password-file", required_argument, NULL, OPT_PWFILE},
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"transport", required_argument, NULL, OPT_TRANSPORT},
    {"ws-url", required_argument, NULL, OPT_WSURL},
    {"allow-plaintext-ws", no_argument, NULL, OPT_PLAINWS},
    {"ca-file", required_argument, NULL, OPT_CAFILE},
    {"room", required_argument, NULL, OPT_ROOM},
    {"no-presence", no_argument, NULL, OPT_NOPRES},
    {"roster", no_argument, NULL, OPT_ROSTER},
    {"events", required_argument, NULL, OPT_EVENTS},
    {"requests", required_argument, NULL, OPT_REQUESTS},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"log-level", required_argument, NULL, OPT_LOGLEVEL},
    {"log-file", required_argument, NULL, OPT_LOGFILE},
    {"state-dir", required_argument, NULL, OPT_STATEDIR},
    {"check-config", no_argument, NULL, OPT_CHECK},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int cli_value(xpb_cli *cli, int opt, const char *v, char *err, size_t errlen)
{
    char *end;
    long port;
    switch (opt) {
    case OPT_CONFIG: cli->config_file = v; break;
    case OPT_JID: cli->jid = v; break;
    case OPT_PWFILE: cli->password_file = v; break;
    case OPT_HOST: cli->host = v; break;
    case OPT_PORT:
        port = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || port < 1 || port > 65535) {
            snprintf(err, errlen, "--port must be 1..65535, not '%s'", v);
            return XPB_EINVAL;
        }
        cli->port = (unsigned)port;
        break;
    case OPT_TRANSPORT: cli->transport = v; break;
    case OPT_WSURL: cli->ws_url = v; break;
    case OPT_PLAINWS: cli->allow_plaintext_ws = 1; break;
    case OPT_CAFILE: cli->ca_file = v; break;
    case OPT_ROOM:
        if (cli->n_rooms >= XPB_CLI_MAX_ROOMS) {
            snprintf(err, errlen, "more than %d --room flags", XPB_CLI_MAX_ROOMS);
            return XPB_EINVAL;
        }
        cli->rooms[cli->n_rooms++] = v;
        break;
    case OPT_NOPRES: cli->no_presence = 1; break;
    case OPT_ROSTER: cli->roster = 1; break;
    case OPT_EVENTS: cli->events = v; break;
    case OPT_REQUESTS: cli->requests = v; break;
    case OPT_METRICS: cli->metrics = v; break;
    case OPT_LOGLEVEL: cli->log_level = v; break;
    case OPT_LOGFILE: cli->log_file = v; break;
    case OPT_STATEDIR: cli->state_dir = v; break;
    case OPT_CHECK: cli->check_config = 1; break;
    case OPT_VERSION: cli->version = 1; break;
    case OPT_HELP: cli->help = 1; break;
    default:
        snprintf(err, errlen, "unknown option (see xpbridge --help)");
        return XPB_EINVAL;
    }
    return 0;
}

/* Account flags without --jid would be silently ignored: refuse them. */
static int cli_check(const xpb_cli *cli, char *err, size_t errlen)
{
    if (!cli->jid && (cli->password_file || cli->host || cli->port || cli->transport ||
                      cli->ws_url || cli->ca_file || cli->n_rooms || cli->no_presence ||
                      cli->roster || cli->allow_plaintext_ws)) {
        snprintf(err, errlen, "--password-file, --host, --port, --transport, --ws-url, "
                              "--allow-plaintext-ws, --ca-file, --room, --no-presence and "
                              "--roster go with --jid");
        return XPB_EINVAL;
    }
    if (cli->jid && !cli->password_file) {
        snprintf(err, errlen, "--jid needs --password-file");
        return XPB_EINVAL;
    }
    if (cli->transport && xpb_config_transport(cli->transport) < 0) {
        snprintf(err, errlen, "--transport must be starttls, directtls or websocket, not '%s'",
                 cli->transport);
        return XPB_EINVAL;
    }
    if (cli->log_level && xpb_config_log_level(cli->log_level) < 0) {
        snprintf(err, errlen, "--log-level must be debug, info, warn or error, not '%s'",
                 cli->log_level);
        return XPB_EINVAL;
    }
    if (cli->metrics && !config_listen_ok(cli->metrics)) {
        snprintf(err, errlen, "--metrics must be ADDR:PORT (e.g. 127.0.0.1:9477) or 0, not '%s'",
                 cli->metrics);
        return XPB_EINVAL;
    }
    return 0;
}

int xpb_cli_parse(xpb_cli *cli, int argc, char **argv, char *err, size_t errlen)
{
    memset(cli, 0, sizeof *cli);
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
        if (opt == 'h') opt = OPT_HELP;
        if (opt == '?' || opt == ':') {
            const char *a = argv[optind - 1] ? argv[optind - 1] : "?";
            snprintf(err, errlen, opt == ':' ? "option %s needs a value" : "unknown option %s", a);
            return XPB_EINVAL;
        }
        int rc = cli_value(cli, opt, optarg, err, errlen);
        if (rc) return rc;
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s' (options start with --)", argv[optind]);
        return XPB_EINVAL;
    }
    return cli->help || cli->version ? 0 : cli_check(cli, err, errlen);
}

/* --room ROOM@SERVICE/NICK */
static int cli_room(xpb_room_cfg *r, const char *v, char *err, size_t errlen)
{
    const char *slash = strchr(v, '/');
    r->history_maxstanzas = -1;
    if (!slash || !slash[1]) {
        snprintf(err, errlen, "--room takes ROOM@SERVICE/NICK, not '%s'", v);
        return XPB_EINVAL;
    }
    r->room = strndup(v, (size_t)(slash - v));
    r->nick = strdup(slash + 1);
    if (!r->room || !r->nick) return XPB_ENOMEM;
    char why[256];
    if (config_room_jid_ok(r->room, why, sizeof why) != 0) {
        snprintf(err, errlen, "--room '%s': %s", v, why);
        return XPB_EINVAL;
    }
    return 0;
}

/* The same transport and ws:// rules as parse_transport, for the flags. */
static int cli_ws_check(const xpb_account_cfg *a, char *err, size_t errlen)
{
    char why[400];
    if (a->transport == XPB_TRANSPORT_WEBSOCKET && !a->ws_url) {
        snprintf(err, errlen, "--transport websocket needs --ws-url");
        return XPB_EINVAL;
    }
    if (a->ws_url && a->transport != XPB_TRANSPORT_WEBSOCKET) {
        snprintf(err, errlen, "--ws-url goes with --transport websocket (or no --transport)");
        return XPB_EINVAL;
    }
    if (a->ws_url && xpb_config_check_ws_url(a->ws_url, a->allow_plaintext_ws, why, sizeof why)) {
        snprintf(err, errlen, "--ws-url: %s", why);
        return XPB_EINVAL;
    }
    return 0;
}

static int cli_account(xpb_account_cfg *a, const xpb_cli *cli, char *err, size_t errlen)
{
    char why[256] = "";
    a->send_presence = !cli->no_presence;
    a->fetch_roster = cli->roster;
    a->stream_management = 1;
    if (config_account_jid(a, cli->jid, why, sizeof why) != 0) {
        snprintf(err, errlen, "--jid '%s': %s", cli->jid, why);
        return XPB_EINVAL;
    }
    int rc = config_set_str(&a->password_file, cli->password_file);
    if (!rc && cli->host) rc = config_set_str(&a->host, cli->host);
    if (!rc && cli->ws_url) rc = config_set_str(&a->ws_url, cli->ws_url);
    if (!rc && cli->ca_file) rc = config_set_str(&a->ca_file, cli->ca_file);
    a->port = cli->port;
    a->allow_plaintext_ws = cli->allow_plaintext_ws;
    if (cli->transport) a->transport = xpb_config_transport(cli->transport);
    else if (cli->ws_url) a->transport = XPB_TRANSPORT_WEBSOCKET; /* --ws-url implies it */
    if (!rc) rc = cli_ws_check(a, err, errlen);
    if (!rc && cli->n_rooms) {
        a->rooms = calloc(cli->n_rooms, sizeof *a->rooms);
        if (!a->rooms) return XPB_ENOMEM;
        for (size_t i = 0; i < cli->n_rooms && !rc; i++) {
            a->n_rooms++;
            rc = cli_room(&a->rooms[i], cli->rooms[i], err, errlen);
        }
    }
    return rc;
}

static int add_cli_account(xpb_config *c, const xpb_cli *cli, char *err, size_t errlen)
{
    xpb_account_cfg a = {0};
    int rc = cli_account(&a, cli, err, errlen);
    if (rc) {
        if (rc == XPB_ENOMEM) snprintf(err, errlen, "out of memory");
        xpb_account_cfg_clear(&a);
        return rc;
    }
    for (size_t i = 0; i < c->n_accounts; i++)
        if (strcmp(c->accounts[i].jid, a.jid) == 0) { /* the flags win */
            xpb_account_cfg_clear(&c->accounts[i]);
            c->accounts[i] = a;
            return 0;
        }
    xpb_account_cfg *n = realloc(c->accounts, (c->n_accounts + 1) * sizeof *n);
    if (!n) {
        xpb_account_cfg_clear(&a);
        return XPB_ENOMEM;
    }
    c->accounts = n;
    c->accounts[c->n_accounts++] = a;
    return 0;
}

int xpb_config_default_state_dir(char *buf, size_t len)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/') /* the spec ignores a relative value */
        n = snprintf(buf, len, "%s/xpbridge", xdg);
    else if (home && home[0])
        n = snprintf(buf, len, "%s/.local/state/xpbridge", home);
    else
        n = -1;
    if (n < 0 || (size_t)n >= len) {
        snprintf(buf, len, "no default state directory: XDG_STATE_HOME and HOME are unset (or "
                           "too long); set state.dir or --state-dir (\"none\": memory only)");
        return XPB_EINVAL;
    }
    return 0;
}

int xpb_config_apply_cli(xpb_config *c, const xpb_cli *cli, char *err, size_t errlen)
{
    int rc = cli_check(cli, err, errlen);
    if (!rc && cli->events) rc = config_set_str(&c->events_url, cli->events);
    if (!rc && cli->requests) rc = config_set_str(&c->requests_url, cli->requests);
    if (!rc && cli->metrics) rc = config_set_str(&c->metrics_listen, cli->metrics);
    if (!rc && cli->log_file) rc = config_set_str(&c->log_file, cli->log_file);
    if (!rc && cli->state_dir) rc = config_set_str(&c->state_dir, cli->state_dir);
    if (!rc && cli->log_level) c->log_level = xpb_config_log_level(cli->log_level);
    if (!rc && cli->jid) rc = add_cli_account(c, cli, err, errlen);
    if (rc == XPB_ENOMEM) snprintf(err, errlen, "out of memory");
    return rc;
}

/* ---- accounts: compare, copy, find ------------------------------------------------- */

