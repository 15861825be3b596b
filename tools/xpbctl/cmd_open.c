/* `xpbctl open`: start a session for an account in the bridge (request
 * "open" of bus.proto). The password never goes on the bus: the bridge reads
 * the password file itself. */
#define _XOPEN_SOURCE 700 /* realpath() */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_client.h"

typedef struct open_args {
    const char *account, *password_file, *host, *ws_url, *ca_file;
    xpbctl_num port, transport;
    bool roster, no_presence, no_sm;
} open_args;

static const xpbctl_choice transports[] = {
    {"starttls", XPB__V1__TRANSPORT__TRANSPORT_STARTTLS},
    {"directtls", XPB__V1__TRANSPORT__TRANSPORT_DIRECT_TLS},
    {"websocket", XPB__V1__TRANSPORT__TRANSPORT_WEBSOCKET},
    {NULL, 0},
};

static const xpbctl_opt open_opts[] = {
    {.name = "--account",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .required = true,
     .offset = XPBCTL_AT(open_args, account),
     .help = "the account's bare JID"},
    {.name = "--password-file",
     .arg = "F",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(open_args, password_file),
     .help = "file holding the password, read by the bridge\n"
             "(refused unless bus.allow_open_overrides)"},
    {.name = "--host",
     .arg = "H",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(open_args, host),
     .help = "connect here instead of the DNS SRV lookup"},
    {.name = "--port",
     .arg = "N",
     .kind = XPBCTL_NUM,
     .min = 1,
     .max = 65535,
     .offset = XPBCTL_AT(open_args, port),
     .help = "the port to connect to"},
    {.name = "--transport",
     .arg = "T",
     .kind = XPBCTL_CHOICE,
     .choices = transports,
     .offset = XPBCTL_AT(open_args, transport),
     .help = "starttls (RFC 6120 §5, default), directtls\n"
             "(XEP-0368) or websocket (RFC 7395)"},
    {.name = "--ws-url",
     .arg = "URL",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(open_args, ws_url),
     .help = "the WebSocket endpoint (with --transport websocket)"},
    {.name = "--ca-file",
     .arg = "F",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(open_args, ca_file),
     .help = "trust these CA certificates instead of the system's"},
    {.name = "--roster",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(open_args, roster),
     .help = "fetch the roster after login"},
    {.name = "--no-presence",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(open_args, no_presence),
     .help = "do not send initial presence"},
    {.name = "--no-sm",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(open_args, no_sm),
     .help = "do not use stream management (XEP-0198)"},
    {0},
};

/* The bridge may run elsewhere in the file system: hand it absolute paths. */
static int absolute_path(const char *opt, const char *path, char **out)
{
    *out = realpath(path, NULL);
    if (*out) return 0;
    fprintf(stderr, "xpbctl open: %s %s: %s\n", opt, path, strerror(errno));
    return XPBCTL_EXIT_USAGE;
}

static void fill_open(const open_args *a, Xpb__V1__OpenSession *s)
{
    s->jid = (char *)a->account;
    s->host = (char *)a->host;
    s->has_port = a->port.set;
    s->port = (uint32_t)a->port.v;
    s->has_transport = a->transport.set;
    s->transport = (Xpb__V1__Transport)a->transport.v;
    s->ws_url = (char *)a->ws_url;
    s->has_fetch_roster = s->fetch_roster = a->roster;
    s->has_send_presence = a->no_presence; /* send_presence stays 0 */
    s->has_stream_management = a->no_sm;   /* stream_management stays 0 */
}

static int run_open(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    const open_args *a = args;
    if (a->ws_url && a->transport.v != XPB__V1__TRANSPORT__TRANSPORT_WEBSOCKET)
        return xpbctl_usage_error(&cmd->page, "--ws-url goes with --transport websocket", NULL);
    ctl c;
    int rc = ctl_init(&c, cmd->page.name, g);
    if (rc) return rc;
    c.account = a->account;
    Xpb__V1__OpenSession s = XPB__V1__OPEN_SESSION__INIT;
    fill_open(a, &s);
    if (a->password_file) rc = absolute_path("--password-file", a->password_file, &s.password_file);
    if (!rc && a->ca_file) rc = absolute_path("--ca-file", a->ca_file, &s.ca_file);
    if (!rc) {
        Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
        r.op_case = XPB__V1__REQUEST__OP_OPEN;
        r.open = &s;
        rc = ctl_request(&c, &r, ctl_print_ok);
    }
    free(s.password_file);
    free(s.ca_file);
    return rc;
}

const xpbctl_command xpbctl_cmd_open = {
    .page =
        {
            .name = "open",
            .summary = "open a session for an account",
            .usage = "xpbctl open --account JID [--password-file F] [--host H] [--port N] "
                     "[--transport T] ...",
            .synopsis =
                "    xpbctl open --account JID [--roster] [--no-presence] [--no-sm] [OPTIONS]\n"
                "    xpbctl open --account JID [--password-file F] [--host H] [--port N]\n"
                "                [--transport starttls|directtls|websocket] [--ws-url URL]\n"
                "                [--ca-file F] ...\n",
            .description =
                "    Request \"open\" of proto/xpb/v1/bus.proto: the bridge starts a session\n"
                "    for the account and keeps it open (reconnecting as needed) until\n"
                "    xpbctl close or the bridge stops. The reply comes at once; watch the\n"
                "    session's state with xpbctl tail --kind state or xpbctl sessions.\n"
                "    Prints \"ok\".\n"
                "\n"
                "    The bridge opens only accounts of its configuration file, with the\n"
                "    settings and password file configured there (e.g. again after xpbctl\n"
                "    close). --password-file, --host, --port, --transport, --ws-url and\n"
                "    --ca-file are refused with ERR_FORBIDDEN unless the configuration sets\n"
                "    bus.allow_open_overrides (docs/security.md). The password is never put\n"
                "    on the bus: the bridge reads the password file itself, so it is sent\n"
                "    as an absolute path and must be readable by the bridge.\n",
            .exit_status = XPBCTL_REQUEST_EXIT_STATUS
            "    1  also: ERR_EXISTS when the account already has a session,\n"
            "       ERR_FORBIDDEN when the configuration does not allow the request\n",
            .examples =
                "    xpbctl open --account bot@example.com\n"
                "    xpbctl open --account bot@localhost --password-file bot.pass \\\n"
                "        --host 127.0.0.1 --port 5222 --ca-file /etc/prosody/certs/localhost.crt\n",
        },
    .opts = open_opts,
    .args_size = sizeof(open_args),
    .bus = true,
    .run = run_open,
};
