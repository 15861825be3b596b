/* `xpbctl send|tail|iq|presence|roster|join|sessions|status|open|close`: the
 * backend side of the bus (proto/xpb/v1/bus.proto). One request per run over
 * an NNG REQ socket; tail reads a SUB socket with prefix subscriptions built
 * from its filters ("<kind>/<account>/", see the proto's header comment). */
#define _XOPEN_SOURCE 700 /* realpath() */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>

#include "xpb/v1/bus.pb-c.h"
#include "xpb_bus.h" /* xpb_bus_default_url */
#include "xpb_error.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"
#include "xpbctl.h"

#define CTL_API_VERSION 1u
#define CTL_DEFAULT_TIMEOUT_MS 15000
#define CTL_MAX_TIMEOUT_MS 86400000ull /* a day: anything longer is a typo */
#define CTL_RESEND_MARGIN_MS 60000     /* REQ resend time = timeout + this: never resend blindly */
#define CTL_MAX_REPLY_BYTES                                                                        \
    (64u * 1024u * 1024u) /* NNG_OPT_RECVMAXSZ: big rosters, session lists */
#define CTL_MAX_EVENT_BYTES (64u * 1024u * 1024u) /* a batch of 64 events of up to 256 KiB */
#define CTL_SUB_QUEUE 1024                        /* NNG_OPT_RECVBUF on SUB, in messages */
#define CTL_POLL_MS 200                           /* tail wakes this often to see SIGINT */
#define CTL_REQUEST_ID_MAX 128
#define CTL_URL_MAX (PATH_MAX + 32)
#define CTL_MAX_WORDS 256  /* positional words of a message body */
#define CTL_MAX_FILTERS 16 /* --account values of tail */
#define CTL_EXCERPT_BYTES 60
#define CTL_IQ_MARGIN_MS 5000 /* bridge-side iq timeout + this = REQ timeout */

/* ---- shared help text ---------------------------------------------------- */
#define HELP_COMMON_OPTIONS                                                                        \
    "    --requests URL     the bridge's request socket (default\n"                                \
    "                       ipc://$XDG_RUNTIME_DIR/xpbridge/requests, or\n"                        \
    "                       ipc:///tmp/xpbridge-UID/requests without XDG_RUNTIME_DIR)\n"           \
    "    --timeout MS       how long to wait for the reply (default 15000)\n"                      \
    "    --request-id ID    the request's id (default: 128 random bits in hex); a\n"               \
    "                       retry with the same id is answered by the bridge from its\n"           \
    "                       cache and never acts twice\n"                                          \
    "    --json             print the reply's result as one JSON object (field\n"                  \
    "                       names as in bus.proto, 64-bit integers as strings);\n"                 \
    "                       a reply without a result is printed whole\n"                           \
    "    --help             print this text\n"

#define HELP_EXIT_STATUS                                                                           \
    "EXIT STATUS\n"                                                                                \
    "    0  the bridge answered OK\n"                                                              \
    "    1  the bridge answered with an error, printed on standard error as\n"                     \
    "           xpbctl: COMMAND: ERR_NAME: text\n"                                                 \
    "       (ERR_UNKNOWN_ACCOUNT, ERR_NOT_CONNECTED, ERR_INVALID_JID, ERR_TIMEOUT...),\n"          \
    "       or the reply could not be decoded\n"                                                   \
    "    2  usage error\n"                                                                         \
    "    3  no reply within --timeout, or the request socket cannot be reached\n"

/* ---- options ------------------------------------------------------------- */
typedef struct optspec {
    const char *name;
    bool arg;
    int id;
} optspec;

enum {
    OPT_END = -1,
    OPT_WORD = 0,   /* a positional argument */
    OPT_USAGE = -2, /* a usage error was printed */
    OPT_HELP = -3,  /* --help was printed */
    /* options every bus command takes, handled by next_opt itself */
    CO_REQUESTS = 1000,
    CO_EVENTS,
    CO_TIMEOUT,
    CO_REQID,
    CO_JSON,
    CO_ACCOUNT,
};

static const optspec common_opts[] = {
    {"--requests", true, CO_REQUESTS}, {"--events", true, CO_EVENTS},
    {"--timeout", true, CO_TIMEOUT},   {"--request-id", true, CO_REQID},
    {"--json", false, CO_JSON},        {NULL, false, 0},
};

typedef struct ctl {
    const char *cmd, *help, *synopsis;
    int argc, i;
    char **argv;
    bool words_only; /* after "--" */
    char requests[CTL_URL_MAX], events[CTL_URL_MAX];
    long timeout_ms;
    bool timeout_set, json;
    char request_id[CTL_REQUEST_ID_MAX + 1];
    const char *account;
} ctl;

static int usage_error(ctl *c, const char *what, const char *arg)
{
    fprintf(stderr, "xpbctl %s: %s%s%s\n", c->cmd, what, arg ? ": " : "", arg ? arg : "");
    fprintf(stderr, "usage: %s (see xpbctl %s --help)\n", c->synopsis, c->cmd);
    return OPT_USAGE;
}

static bool parse_ull(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end = NULL;
    if (!s[0] || s[0] == '-' || s[0] == '+') return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max) return false;
    *out = v;
    return true;
}

/* Printable ASCII, 1..CTL_REQUEST_ID_MAX bytes: it ends up in logs. */
static bool request_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CTL_REQUEST_ID_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f) return false;
    return true;
}

/* 128 random bits in hex: unique enough that two backends never collide. */
static int random_request_id(char *out, size_t outlen)
{
    unsigned char r[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, r, sizeof(r)) : -1;
    if (fd >= 0) close(fd);
    if (n != (ssize_t)sizeof(r) || outlen < 2 * sizeof(r) + 1) return -1;
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    return 0;
}

int xpbctl_default_url(const char *name, char *out, size_t outlen)
{
    return xpb_bus_default_url(name, out, outlen) == 0 ? 0 : -1; /* the daemon's own rule */
}

static int set_url(ctl *c, char *dst, const char *url)
{
    size_t n = strlen(url);
    if (n == 0 || n >= CTL_URL_MAX) return usage_error(c, "URL is empty or too long", url);
    memcpy(dst, url, n + 1);
    return 0;
}

static int common_opt(ctl *c, int id, const char *val)
{
    unsigned long long v = 0;
    switch (id) {
    case CO_REQUESTS:
        return set_url(c, c->requests, val);
    case CO_EVENTS:
        return set_url(c, c->events, val);
    case CO_TIMEOUT:
        if (!parse_ull(val, CTL_MAX_TIMEOUT_MS, &v) || v == 0)
            return usage_error(c, "--timeout must be 1..86400000 (milliseconds)", val);
        c->timeout_ms = (long)v;
        c->timeout_set = true;
        return 0;
    case CO_REQID:
        if (!request_id_ok(val))
            return usage_error(c, "--request-id must be 1..128 printable ASCII characters", val);
        memcpy(c->request_id, val, strlen(val) + 1);
        return 0;
    case CO_JSON:
        c->json = true;
        return 0;
    case CO_ACCOUNT:
        c->account = val;
        return 0;
    default:
        return usage_error(c, "internal: unhandled option", NULL);
    }
}

static const optspec *find_opt(const optspec *specs, const char *name)
{
    for (; specs && specs->name; specs++)
        if (strcmp(specs->name, name) == 0) return specs;
    return NULL;
}

/* The next command-specific option (its id, value in *val), OPT_WORD with the
 * word in *val, OPT_END, or OPT_USAGE / OPT_HELP (already printed). */
static int next_opt(ctl *c, const optspec *specs, const char **val)
{
    while (c->i < c->argc) {
        const char *a = c->argv[c->i++];
        *val = a;
        if (!c->words_only && strcmp(a, "--") == 0) {
            c->words_only = true;
            continue;
        }
        if (c->words_only || a[0] != '-' || a[1] == '\0') return OPT_WORD;
        if (strcmp(a, "--help") == 0) {
            fputs(c->help, stdout);
            return OPT_HELP;
        }
        const optspec *s = find_opt(common_opts, a);
        if (!s) s = find_opt(specs, a);
        if (!s) return usage_error(c, "unknown option", a);
        *val = NULL;
        if (s->arg) {
            if (c->i >= c->argc) return usage_error(c, "missing value for", a);
            *val = c->argv[c->i++];
        }
        if (s->id < CO_REQUESTS) return s->id;
        int rc = common_opt(c, s->id, *val);
        if (rc) return rc;
    }
    return OPT_END;
}

/* Exit status for a non-option result of next_opt. */
static int opt_exit(int o)
{
    return o == OPT_HELP ? XPBCTL_EXIT_OK : XPBCTL_EXIT_USAGE;
}

static int ctl_init(ctl *c, const char *cmd, const char *help, const char *synopsis, int argc,
                    char **argv)
{
    memset(c, 0, sizeof(*c));
    c->cmd = cmd;
    c->help = help;
    c->synopsis = synopsis;
    c->argc = argc;
    c->argv = argv;
    c->i = 1;
    c->timeout_ms = CTL_DEFAULT_TIMEOUT_MS;
    if (xpbctl_default_url("requests", c->requests, sizeof(c->requests)) ||
        xpbctl_default_url("events", c->events, sizeof(c->events))) {
        fprintf(stderr, "xpbctl %s: $XDG_RUNTIME_DIR is too long for a socket path\n", cmd);
        return XPBCTL_EXIT_USAGE;
    }
    if (random_request_id(c->request_id, sizeof(c->request_id))) {
        fprintf(stderr, "xpbctl %s: cannot read /dev/urandom for a request id\n", cmd);
        return XPBCTL_EXIT_FAIL;
    }
    return 0;
}

/* ---- name tables ---------------------------------------------------------- */
typedef struct nameval {
    const char *name;
    int value;
} nameval;

static bool lookup(const nameval *t, const char *s, int *out)
{
    for (; t->name; t++)
        if (strcmp(t->name, s) == 0) {
            *out = t->value;
            return true;
        }
    return false;
}

static const nameval message_types[] = {
    {"chat", XPB__V1__STANZA_TYPE__TYPE_CHAT},
    {"normal", XPB__V1__STANZA_TYPE__TYPE_NORMAL},
    {"groupchat", XPB__V1__STANZA_TYPE__TYPE_GROUPCHAT},
    {"headline", XPB__V1__STANZA_TYPE__TYPE_HEADLINE},
    {NULL, 0},
};
static const nameval shows[] = {
    {"away", XPB__V1__SHOW__SHOW_AWAY},
    {"chat", XPB__V1__SHOW__SHOW_CHAT},
    {"dnd", XPB__V1__SHOW__SHOW_DND},
    {"xa", XPB__V1__SHOW__SHOW_XA},
    {NULL, 0},
};
static const nameval subscription_types[] = {
    {"subscribe", XPB__V1__STANZA_TYPE__TYPE_SUBSCRIBE},
    {"subscribed", XPB__V1__STANZA_TYPE__TYPE_SUBSCRIBED},
    {"unsubscribe", XPB__V1__STANZA_TYPE__TYPE_UNSUBSCRIBE},
    {"unsubscribed", XPB__V1__STANZA_TYPE__TYPE_UNSUBSCRIBED},
    {NULL, 0},
};
static const nameval transports[] = {
    {"starttls", XPB__V1__TRANSPORT__TRANSPORT_STARTTLS},
    {"directtls", XPB__V1__TRANSPORT__TRANSPORT_DIRECT_TLS},
    {"websocket", XPB__V1__TRANSPORT__TRANSPORT_WEBSOCKET},
    {NULL, 0},
};

/* An enum value's name without its prefix, lowercased, '_' as '-': the XML
 * spelling for conditions (RFC 6120 §8.3.3), short words for the rest. */
static const char *enum_short(const ProtobufCEnumDescriptor *d, int v, const char *prefix,
                              char *out, size_t outlen)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    const char *n = ev ? ev->name : "UNKNOWN";
    size_t pl = strlen(prefix), i = 0;
    if (strncmp(n, prefix, pl) == 0) n += pl;
    for (; n[i] && i + 1 < outlen; i++) {
        char ch = n[i];
        out[i] = ch == '_' ? '-' : (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    out[i] = '\0';
    return out;
}

/* ---- output helpers ------------------------------------------------------ */
static int print_json(const ProtobufCMessage *m)
{
    xpb_buf b;
    xpb_buf_init(&b, 0);
    int rc = xpb_json_write(&b, m);
    if (!rc) rc = xpb_buf_append(&b, "\n", 1);
    if (!rc) fwrite(b.data, 1, b.len, stdout);
    xpb_buf_free(&b);
    if (rc) fprintf(stderr, "xpbctl: cannot format JSON: %s\n", xpb_strerror(rc));
    return rc ? XPBCTL_EXIT_FAIL : 0;
}

/* Writes at most max bytes of s (NULL: "-"), never cutting a UTF-8 sequence,
 * with control characters as spaces so bridge data cannot drive the terminal. */
static void put_clean(const char *s, size_t max)
{
    if (!s) s = "-";
    size_t n = strlen(s), i = 0;
    bool cut = n > max;
    if (cut) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    for (; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        putchar(ch < 0x20 || ch == 0x7f ? ' ' : ch);
    }
    if (cut) fputs("…", stdout);
}

/* A table column: the cleaned text, then spaces up to width (bytes). */
static void put_col(const char *s, size_t width)
{
    size_t n = s ? strlen(s) : 1;
    put_clean(s, 256);
    for (putchar(' '); n < width; n++)
        putchar(' ');
}

/* ---- talking to the bridge ----------------------------------------------- */
static int open_req(ctl *c, nng_socket *s)
{
    int rv = nng_req0_open(s);
    if (rv) {
        fprintf(stderr, "xpbctl: %s: cannot open a REQ socket: %s\n", c->cmd, nng_strerror(rv));
        return XPBCTL_EXIT_FAIL;
    }
    /* NNG's REQ resends after NNG_OPT_REQ_RESENDTIME; we retry ourselves, with
     * the same request id, so keep that past our own deadline. */
    rv = nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, (nng_duration)c->timeout_ms);
    if (!rv) rv = nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, (nng_duration)c->timeout_ms);
    if (!rv)
        rv = nng_socket_set_ms(*s, NNG_OPT_REQ_RESENDTIME,
                               (nng_duration)(c->timeout_ms + CTL_RESEND_MARGIN_MS));
    if (!rv) rv = nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, CTL_MAX_REPLY_BYTES);
    if (!rv) rv = nng_dial(*s, c->requests, NULL, 0);
    if (rv) {
        fprintf(stderr, "xpbctl: %s: cannot connect to %s: %s — is xpbridge running?\n", c->cmd,
                c->requests, nng_strerror(rv));
        nng_close(*s);
        return rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? XPBCTL_EXIT_USAGE : XPBCTL_EXIT_NOREPLY;
    }
    return 0;
}

static int decode_reply(ctl *c, nng_msg *m, Xpb__V1__Response **out)
{
    const uint8_t *data = nng_msg_body(m);
    size_t len = nng_msg_len(m);
    if (xpb_pb_check_depth(&xpb__v1__response__descriptor, data, len,
                           XPB_RECORD_DEFAULT_MAX_DEPTH + 1) ||
        !(*out = xpb__v1__response__unpack(NULL, len, data))) {
        fprintf(stderr, "xpbctl: %s: undecodable reply (%zu bytes) from %s\n", c->cmd, len,
                c->requests);
        return XPBCTL_EXIT_FAIL;
    }
    if ((*out)->request_id && strcmp((*out)->request_id, c->request_id) != 0) {
        fprintf(stderr, "xpbctl: %s: reply is for request %s, not %s\n", c->cmd, (*out)->request_id,
                c->request_id);
        xpb__v1__response__free_unpacked(*out, NULL);
        *out = NULL;
        return XPBCTL_EXIT_FAIL;
    }
    return 0;
}

/* Sends r (api_version and request_id filled in here) and waits for the
 * reply. 0 with *out set (free with xpb__v1__response__free_unpacked), or an
 * exit status with the reason printed. */
static int call(ctl *c, Xpb__V1__Request *r, Xpb__V1__Response **out)
{
    r->has_api_version = 1;
    r->api_version = CTL_API_VERSION;
    r->request_id = c->request_id;
    if (!r->account && c->account) r->account = (char *)c->account;
    size_t len = xpb__v1__request__get_packed_size(r);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return XPBCTL_EXIT_FAIL;
    xpb__v1__request__pack(r, buf);
    nng_socket s;
    int rc = open_req(c, &s);
    if (rc) {
        free(buf);
        return rc;
    }
    nng_msg *m = NULL;
    int rv = nng_send(s, buf, len, 0);
    if (!rv) rv = nng_recvmsg(s, &m, 0);
    free(buf);
    if (rv == NNG_ETIMEDOUT) {
        fprintf(stderr, "xpbctl: %s: no reply from %s within %ld ms — is xpbridge running?\n",
                c->cmd, c->requests, c->timeout_ms);
        rc = XPBCTL_EXIT_NOREPLY;
    } else if (rv) {
        fprintf(stderr, "xpbctl: %s: %s: %s\n", c->cmd, c->requests, nng_strerror(rv));
        rc = XPBCTL_EXIT_NOREPLY;
    } else {
        rc = decode_reply(c, m, out);
        nng_msg_free(m);
    }
    nng_close(s);
    return rc;
}

/* An error reply: "xpbctl: CMD: ERR_NAME: text" and exit status 1. */
static int check_reply(ctl *c, const Xpb__V1__Response *resp)
{
    if (!resp->has_code || resp->code == XPB__V1__ERROR_CODE__OK) return 0;
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(&xpb__v1__error_code__descriptor, (int)resp->code);
    fprintf(stderr, "xpbctl: %s: %s: %s\n", c->cmd, ev ? ev->name : "ERR_UNKNOWN",
            resp->error_text && resp->error_text[0] ? resp->error_text : "(no error text)");
    if (c->json) print_json(&resp->base);
    return XPBCTL_EXIT_FAIL;
}

typedef int (*reply_printer)(ctl *c, const Xpb__V1__Response *resp);

static int run_request(ctl *c, Xpb__V1__Request *r, reply_printer print)
{
    Xpb__V1__Response *resp = NULL;
    int rc = call(c, r, &resp);
    if (rc) return rc;
    rc = check_reply(c, resp);
    if (!rc) rc = print(c, resp);
    if (fflush(stdout) != 0 && !rc) rc = XPBCTL_EXIT_FAIL;
    xpb__v1__response__free_unpacked(resp, NULL);
    return rc;
}

static int print_ok(ctl *c, const Xpb__V1__Response *resp)
{
    if (c->json) return print_json(&resp->base);
    puts("ok");
    return 0;
}

static int missing_result(ctl *c)
{
    fprintf(stderr, "xpbctl: %s: the reply is OK but carries no result\n", c->cmd);
    return XPBCTL_EXIT_FAIL;
}

/* ---- stanzas from XML ------------------------------------------------------ */
typedef struct xml_parse {
    xpb_arena *arena;
    xpb_stanza *st;
    int count, rc;
} xml_parse;

static int on_stanza(void *ud, const xpb_node *el)
{
    xml_parse *p = ud;
    if (p->count++ == 0) p->rc = xpb_stanza_from_xml(p->arena, el, &p->st);
    return 0;
}

/* Exactly one stanza (reader in FRAGMENTS mode: no xmlns means
 * jabber:client), mapped into arena a and checked like the bridge checks it. */
static int stanza_from_text(ctl *c, xpb_arena *a, const char *xml, size_t len, xpb_stanza **out)
{
    xml_parse p = {.arena = a};
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    xpb_reader *r = NULL;
    char err[512] = "";
    int rc = xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, &p);
    if (!rc) rc = xpb_reader_feed(r, xml, len);
    if (rc)
        snprintf(err, sizeof(err), "%s",
                 r && xpb_reader_error(r)[0] ? xpb_reader_error(r) : xpb_strerror(rc));
    xpb_reader_free(r);
    if (!rc && p.rc) snprintf(err, sizeof(err), "%s", xpb_strerror(rc = p.rc));
    if (!rc && p.count != 1) {
        snprintf(err, sizeof(err), "%s", p.count ? "more than one stanza" : "no complete element");
        rc = XPB_EINVAL;
    }
    if (!rc) rc = xpb_stanza_check(p.st, NULL, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "xpbctl: %s: stanza refused: %s\n", c->cmd,
                err[0] ? err : xpb_strerror(rc));
        return XPBCTL_EXIT_FAIL;
    }
    *out = p.st;
    return 0;
}

/* ---- send ---------------------------------------------------------------- */
static const char send_help[] =
    "NAME\n"
    "    xpbctl send - send a message, or any stanza, through a bridged account\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbctl send --account JID --to JID [--type chat|normal|groupchat|headline]\n"
    "                [--thread T] [--id ID] [OPTIONS] [--] BODY...\n"
    "    xpbctl send --account JID --xml STANZA [OPTIONS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Asks the bridge to send a stanza from the account's session (request\n"
    "    \"send\" of proto/xpb/v1/bus.proto). The first form builds a <message/>\n"
    "    whose body is the BODY words joined by single spaces. The second sends\n"
    "    the stanza given as XML (no xmlns means jabber:client); it is mapped to a\n"
    "    record and checked like the bridge checks records before it is sent.\n"
    "    The session fills in 'from'; the bridge assigns an id when none is given.\n"
    "\n"
    "    Prints the id the stanza was sent with, followed by \"queued\" when the\n"
    "    session is not online yet and the stanza waits in its queue. Whether the\n"
    "    server received it is reported later as a delivery event (xpbctl tail\n"
    "    --kind delivery).\n"
    "\n"
    "OPTIONS\n"
    "    --account JID      the bridged account to send from (bare JID; required)\n"
    "    --to JID           the recipient (required without --xml)\n"
    "    --type T           message type (RFC 6121 §5.2.2; default chat)\n"
    "    --thread T         thread id (RFC 6121 §5.2.5)\n"
    "    --id ID            the stanza's id attribute\n"
    "    --xml STANZA       send this stanza instead of building a message\n" HELP_COMMON_OPTIONS
    "\n" HELP_EXIT_STATUS "    1  also: the stanza given with --xml was refused\n"
    "\n"
    "EXAMPLES\n"
    "    xpbctl send --account bot@example.com --to alice@example.com Hello there\n"
    "    xpbctl send --account bot@example.com --request-id order-42 \\\n"
    "        --to alice@example.com 'Your order shipped'\n"
    "    xpbctl send --account bot@example.com \\\n"
    "        --xml \"<message to='alice@example.com'><body>hi</body></message>\"\n";

typedef struct send_args {
    const char *to, *type, *thread, *id, *xml;
    const char *words[CTL_MAX_WORDS];
    size_t n_words;
} send_args;

static int build_message_xml(const send_args *a, xpb_buf *out)
{
    xpb_writer w;
    xpb_writer_init(&w, out, "");
    int rc = xpb_writer_start(&w, XPB_NS_CLIENT, "message");
    if (!rc) rc = xpb_writer_attr(&w, "", "to", a->to, strlen(a->to));
    if (!rc) rc = xpb_writer_attr(&w, "", "type", a->type, strlen(a->type));
    if (!rc && a->id) rc = xpb_writer_attr(&w, "", "id", a->id, strlen(a->id));
    if (!rc) rc = xpb_writer_start(&w, XPB_NS_CLIENT, "body");
    for (size_t i = 0; !rc && i < a->n_words; i++) {
        if (i) rc = xpb_writer_text(&w, " ", 1);
        if (!rc) rc = xpb_writer_text(&w, a->words[i], strlen(a->words[i]));
    }
    if (!rc) rc = xpb_writer_end(&w);
    if (!rc && a->thread) {
        rc = xpb_writer_start(&w, XPB_NS_CLIENT, "thread");
        if (!rc) rc = xpb_writer_text(&w, a->thread, strlen(a->thread));
        if (!rc) rc = xpb_writer_end(&w);
    }
    if (!rc) rc = xpb_writer_end(&w);
    return rc;
}

static int parse_send(ctl *c, send_args *a)
{
    enum { O_TO = 1, O_TYPE, O_THREAD, O_ID, O_XML };
    static const optspec specs[] = {
        {"--account", true, CO_ACCOUNT},
        {"--to", true, O_TO},
        {"--type", true, O_TYPE},
        {"--thread", true, O_THREAD},
        {"--id", true, O_ID},
        {"--xml", true, O_XML},
        {NULL, false, 0},
    };
    const char *v;
    int o, t;
    while ((o = next_opt(c, specs, &v)) != OPT_END) {
        switch (o) {
        case O_TO:
            a->to = v;
            break;
        case O_TYPE:
            if (!lookup(message_types, v, &t)) return usage_error(c, "unknown --type", v);
            a->type = v;
            break;
        case O_THREAD:
            a->thread = v;
            break;
        case O_ID:
            a->id = v;
            break;
        case O_XML:
            a->xml = v;
            break;
        case OPT_WORD:
            if (a->n_words == CTL_MAX_WORDS)
                return usage_error(c, "too many BODY words (quote the body)", NULL);
            a->words[a->n_words++] = v;
            break;
        default:
            return o;
        }
    }
    if (!c->account) return usage_error(c, "--account is required", NULL);
    if (a->xml && (a->to || a->type || a->thread || a->id || a->n_words))
        return usage_error(c, "--xml cannot be combined with --to, --type, --thread, --id or BODY",
                           NULL);
    if (!a->xml && (!a->to || !a->n_words))
        return usage_error(c, "--to and a BODY are required", NULL);
    if (!a->type) a->type = "chat";
    return 0;
}

static int print_sent(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_SENT) return missing_result(c);
    if (c->json) return print_json(&resp->sent->base);
    put_clean(resp->sent->stanza_id ? resp->sent->stanza_id : "-", SIZE_MAX);
    puts(resp->sent->has_queued && resp->sent->queued ? " queued" : "");
    return 0;
}

int xpbctl_send_main(int argc, char **argv)
{
    ctl c;
    send_args a = {0};
    int rc = ctl_init(&c, "send", send_help,
                      "xpbctl send --account JID (--to JID [--type T] [--thread T] [--id ID] "
                      "BODY... | --xml STANZA)",
                      argc, argv);
    if (rc) return rc;
    if ((rc = parse_send(&c, &a))) return opt_exit(rc);
    xpb_arena *arena = xpb_arena_new(0);
    xpb_buf xml;
    xpb_buf_init(&xml, 0);
    xpb_stanza *st = NULL;
    rc = arena ? 0 : XPBCTL_EXIT_FAIL;
    if (!rc && !a.xml && build_message_xml(&a, &xml)) rc = XPBCTL_EXIT_FAIL;
    if (!rc)
        rc = a.xml ? stanza_from_text(&c, arena, a.xml, strlen(a.xml), &st)
                   : stanza_from_text(&c, arena, xml.data, xml.len, &st);
    if (!rc) {
        Xpb__V1__SendStanza s = XPB__V1__SEND_STANZA__INIT;
        Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
        s.stanza = st;
        r.op_case = XPB__V1__REQUEST__OP_SEND;
        r.send = &s;
        rc = run_request(&c, &r, print_sent);
    }
    xpb_buf_free(&xml);
    xpb_arena_free(arena);
    return rc;
}

/* ---- iq ------------------------------------------------------------------ */
static const char iq_help[] =
    "NAME\n"
    "    xpbctl iq - send an iq through a bridged account and print the response\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbctl iq --account JID --to JID (--ping | --disco-info [--node N] |\n"
    "              --disco-items [--node N] | --version) [--iq-timeout MS] [OPTIONS]\n"
    "    xpbctl iq --account JID --xml IQ [--to JID] [--iq-timeout MS] [OPTIONS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Sends an iq of type get (request \"iq\" of proto/xpb/v1/bus.proto) and\n"
    "    waits for its response (RFC 6120 §8.2.3): XEP-0199 ping, XEP-0030\n"
    "    disco#info or disco#items, XEP-0092 software version, or any iq of type\n"
    "    get or set given as XML (with --to, the XML's 'to' is replaced).\n"
    "\n"
    "    The response stanza is printed as XML on one line (as a JSON object with\n"
    "    --json). A response of type error is printed too, and its condition and\n"
    "    text go to standard error.\n"
    "\n"
    "OPTIONS\n"
    "    --account JID      the bridged account to send from (required)\n"
    "    --to JID           the entity to ask (required without --xml)\n"
    "    --ping             <ping xmlns='urn:xmpp:ping'/>\n"
    "    --disco-info       <query xmlns='http://jabber.org/protocol/disco#info'/>\n"
    "    --disco-items      <query xmlns='http://jabber.org/protocol/disco#items'/>\n"
    "    --node N           the disco node to ask about\n"
    "    --version          <query xmlns='jabber:iq:version'/>\n"
    "    --xml IQ           send this iq\n"
    "    --iq-timeout MS    how long the bridge waits for the response (default\n"
    "                       10000); --timeout is raised to this plus 5000 unless\n"
    "                       given\n" HELP_COMMON_OPTIONS "\n" HELP_EXIT_STATUS
    "    1  also: the response is of type error, or the bridge timed out waiting\n"
    "       for it (ERR_TIMEOUT)\n"
    "\n"
    "EXAMPLES\n"
    "    xpbctl iq --account bot@example.com --to example.com --ping\n"
    "    xpbctl iq --account bot@example.com --to conference.example.com --disco-items\n"
    "    xpbctl iq --account bot@example.com --json \\\n"
    "        --xml \"<iq type='get' to='example.com'><time xmlns='urn:xmpp:time'/></iq>\"\n";

typedef struct iq_args {
    const char *to, *node, *xml;
    const char *payload_ns, *payload_name; /* from --ping etc. */
    int n_payloads;
    unsigned long long iq_timeout;
    bool has_iq_timeout;
} iq_args;

static int parse_iq(ctl *c, iq_args *a)
{
    enum { O_TO = 1, O_PING, O_INFO, O_ITEMS, O_NODE, O_VERSION, O_XML, O_IQTIMEOUT };
    static const optspec specs[] = {
        {"--account", true, CO_ACCOUNT},     {"--to", true, O_TO},
        {"--ping", false, O_PING},           {"--disco-info", false, O_INFO},
        {"--disco-items", false, O_ITEMS},   {"--node", true, O_NODE},
        {"--version", false, O_VERSION},     {"--xml", true, O_XML},
        {"--iq-timeout", true, O_IQTIMEOUT}, {NULL, false, 0},
    };
    const char *v;
    int o;
    while ((o = next_opt(c, specs, &v)) != OPT_END) {
        switch (o) {
        case O_TO:
            a->to = v;
            break;
        case O_NODE:
            a->node = v;
            break;
        case O_XML:
            a->xml = v;
            a->n_payloads++;
            break;
        case O_PING:
            a->payload_ns = "urn:xmpp:ping";
            a->payload_name = "ping";
            a->n_payloads++;
            break;
        case O_INFO:
            a->payload_ns = "http://jabber.org/protocol/disco#info";
            a->payload_name = "query";
            a->n_payloads++;
            break;
        case O_ITEMS:
            a->payload_ns = "http://jabber.org/protocol/disco#items";
            a->payload_name = "query";
            a->n_payloads++;
            break;
        case O_VERSION:
            a->payload_ns = "jabber:iq:version";
            a->payload_name = "query";
            a->n_payloads++;
            break;
        case O_IQTIMEOUT:
            if (!parse_ull(v, CTL_MAX_TIMEOUT_MS, &a->iq_timeout) || !a->iq_timeout ||
                a->iq_timeout > UINT32_MAX)
                return usage_error(c, "--iq-timeout must be 1..86400000 (milliseconds)", v);
            a->has_iq_timeout = true;
            break;
        case OPT_WORD:
            return usage_error(c, "unexpected argument", v);
        default:
            return o;
        }
    }
    if (!c->account) return usage_error(c, "--account is required", NULL);
    if (a->n_payloads != 1)
        return usage_error(
            c, "give exactly one of --ping, --disco-info, --disco-items, --version, --xml", NULL);
    if (!a->xml && !a->to) return usage_error(c, "--to is required", NULL);
    if (a->node && (!a->payload_ns || !strstr(a->payload_ns, "disco#")))
        return usage_error(c, "--node goes with --disco-info or --disco-items", NULL);
    return 0;
}

static int build_iq_xml(const iq_args *a, xpb_buf *out)
{
    xpb_writer w;
    xpb_writer_init(&w, out, "");
    int rc = xpb_writer_start(&w, XPB_NS_CLIENT, "iq");
    if (!rc) rc = xpb_writer_attr(&w, "", "type", "get", 3);
    if (!rc) rc = xpb_writer_attr(&w, "", "to", a->to, strlen(a->to));
    if (!rc) rc = xpb_writer_start(&w, a->payload_ns, a->payload_name);
    if (!rc && a->node) rc = xpb_writer_attr(&w, "", "node", a->node, strlen(a->node));
    if (!rc) rc = xpb_writer_end(&w);
    if (!rc) rc = xpb_writer_end(&w);
    return rc;
}

static void print_stanza_error(ctl *c, const xpb_stanza *st)
{
    char cond[64] = "undefined-condition";
    const Xpb__V1__StanzaError *e = st->error;
    if (e && e->has_condition)
        enum_short(&xpb__v1__error_condition__descriptor, (int)e->condition, "CONDITION_", cond,
                   sizeof(cond));
    fprintf(stderr, "xpbctl: %s: error response: %s%s%s\n", c->cmd, cond,
            e && e->text && e->text->text ? ": " : "",
            e && e->text && e->text->text ? e->text->text : "");
}

static int print_iq_result(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_IQ_RESULT) return missing_result(c);
    const xpb_stanza *st = resp->iq_result;
    int rc = 0;
    if (c->json) {
        rc = print_json(&st->base);
    } else {
        xpb_buf b;
        char err[256] = "";
        xpb_buf_init(&b, 0);
        rc = xpb_stanza_to_xml(&b, st, "", NULL, err, sizeof(err));
        if (!rc) {
            fwrite(b.data, 1, b.len, stdout);
            putchar('\n');
        } else {
            fprintf(stderr, "xpbctl: %s: the response cannot be written as XML (%s); as JSON:\n",
                    c->cmd, err[0] ? err : xpb_strerror(rc));
            rc = print_json(&st->base);
        }
        xpb_buf_free(&b);
    }
    if (st->has_type && st->type == XPB__V1__STANZA_TYPE__TYPE_ERROR) {
        print_stanza_error(c, st);
        rc = XPBCTL_EXIT_FAIL;
    }
    return rc;
}

static int iq_stanza(ctl *c, const iq_args *a, xpb_arena *arena, xpb_stanza **st)
{
    xpb_buf xml;
    xpb_buf_init(&xml, 0);
    int rc = 0;
    if (a->xml) {
        rc = stanza_from_text(c, arena, a->xml, strlen(a->xml), st);
    } else if (build_iq_xml(a, &xml)) {
        rc = XPBCTL_EXIT_FAIL;
    } else {
        rc = stanza_from_text(c, arena, xml.data, xml.len, st);
    }
    xpb_buf_free(&xml);
    if (rc) return rc;
    if ((*st)->kind != XPB__V1__KIND__KIND_IQ || ((*st)->type != XPB__V1__STANZA_TYPE__TYPE_GET &&
                                                  (*st)->type != XPB__V1__STANZA_TYPE__TYPE_SET)) {
        fprintf(stderr, "xpbctl: iq: --xml must be an <iq/> of type get or set\n");
        return XPBCTL_EXIT_USAGE;
    }
    if (a->xml && a->to) (*st)->to = (char *)a->to;
    return 0;
}

int xpbctl_iq_main(int argc, char **argv)
{
    ctl c;
    iq_args a = {0};
    int rc = ctl_init(&c, "iq", iq_help,
                      "xpbctl iq --account JID --to JID (--ping | --disco-info | --disco-items | "
                      "--version | --xml IQ)",
                      argc, argv);
    if (rc) return rc;
    if ((rc = parse_iq(&c, &a))) return opt_exit(rc);
    unsigned long long bridge_wait = a.has_iq_timeout ? a.iq_timeout : 10000;
    if (!c.timeout_set && (unsigned long long)c.timeout_ms < bridge_wait + CTL_IQ_MARGIN_MS)
        c.timeout_ms = (long)(bridge_wait + CTL_IQ_MARGIN_MS);
    xpb_arena *arena = xpb_arena_new(0);
    xpb_stanza *st = NULL;
    rc = arena ? iq_stanza(&c, &a, arena, &st) : XPBCTL_EXIT_FAIL;
    if (!rc) {
        Xpb__V1__SendIq q = XPB__V1__SEND_IQ__INIT;
        Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
        q.stanza = st;
        q.has_timeout_ms = a.has_iq_timeout;
        q.timeout_ms = (uint32_t)a.iq_timeout;
        r.op_case = XPB__V1__REQUEST__OP_IQ;
        r.iq = &q;
        rc = run_request(&c, &r, print_iq_result);
    }
    xpb_arena_free(arena);
    return rc;
}

/* ---- presence ------------------------------------------------------------ */
static const char presence_help[] =
    "NAME\n"
    "    xpbctl presence - set an account's presence, or send directed presence\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbctl presence --account JID [--show away|chat|dnd|xa] [--status TEXT]\n"
    "                    [--priority N] [--unavailable] [OPTIONS]\n"
    "    xpbctl presence --account JID --to JID [--type subscribe|subscribed|\n"
    "                    unsubscribe|unsubscribed] [OPTIONS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Request \"presence\" of proto/xpb/v1/bus.proto. Without --to, sets the\n"
    "    account's broadcast presence (RFC 6121 §4.2), which the bridge restores\n"
    "    after reconnects. With --to, sends directed presence (RFC 6121 §4.6), or\n"
    "    with --type, subscription handling (RFC 6121 §3): subscribe asks for\n"
    "    the contact's presence, subscribed approves the contact's request.\n"
    "    Prints \"ok\".\n"
    "\n"
    "OPTIONS\n"
    "    --account JID      the bridged account (required)\n"
    "    --show S           availability sub-state (RFC 6121 §4.7.2.1)\n"
    "    --status TEXT      human-readable status (RFC 6121 §4.7.2.2)\n"
    "    --priority N       -128..127 (RFC 6121 §4.7.2.3)\n"
    "    --unavailable      go offline (type unavailable) but keep the session\n"
    "    --to JID           directed presence to this entity\n"
    "    --type T           subscription request or answer (needs --to)\n" HELP_COMMON_OPTIONS
    "\n" HELP_EXIT_STATUS "\n"
    "EXAMPLES\n"
    "    xpbctl presence --account bot@example.com --show dnd --status 'Deploying'\n"
    "    xpbctl presence --account bot@example.com --to alice@example.com --type subscribed\n";

static int parse_presence(ctl *c, Xpb__V1__SetPresence *p)
{
    enum { O_SHOW = 1, O_STATUS, O_PRIO, O_UNAV, O_TO, O_TYPE };
    static const optspec specs[] = {
        {"--account", true, CO_ACCOUNT},  {"--show", true, O_SHOW},
        {"--status", true, O_STATUS},     {"--priority", true, O_PRIO},
        {"--unavailable", false, O_UNAV}, {"--to", true, O_TO},
        {"--type", true, O_TYPE},         {NULL, false, 0},
    };
    const char *v;
    int o, t;
    while ((o = next_opt(c, specs, &v)) != OPT_END) {
        switch (o) {
        case O_SHOW:
            if (!lookup(shows, v, &t)) return usage_error(c, "unknown --show", v);
            p->has_show = 1;
            p->show = (Xpb__V1__Show)t;
            break;
        case O_STATUS:
            p->status = (char *)v;
            break;
        case O_PRIO: {
            char *end = NULL;
            errno = 0;
            long n = strtol(v, &end, 10);
            if (errno || !v[0] || *end || n < -128 || n > 127)
                return usage_error(c, "--priority must be -128..127", v);
            p->has_priority = 1;
            p->priority = (int32_t)n;
            break;
        }
        case O_UNAV:
            p->has_unavailable = p->unavailable = 1;
            break;
        case O_TO:
            p->to = (char *)v;
            break;
        case O_TYPE:
            if (!lookup(subscription_types, v, &t)) return usage_error(c, "unknown --type", v);
            p->has_type = 1;
            p->type = (Xpb__V1__StanzaType)t;
            break;
        case OPT_WORD:
            return usage_error(c, "unexpected argument", v);
        default:
            return o;
        }
    }
    if (!c->account) return usage_error(c, "--account is required", NULL);
    if (p->has_type && !p->to) return usage_error(c, "--type needs --to", NULL);
    if (p->has_type && (p->has_show || p->status || p->has_priority || p->has_unavailable))
        return usage_error(
            c, "--type cannot be combined with --show, --status, --priority or --unavailable",
            NULL);
    return 0;
}

int xpbctl_presence_main(int argc, char **argv)
{
    ctl c;
    Xpb__V1__SetPresence p = XPB__V1__SET_PRESENCE__INIT;
    int rc = ctl_init(&c, "presence", presence_help,
                      "xpbctl presence --account JID [--show S] [--status T] [--priority N] "
                      "[--unavailable] [--to JID [--type T]]",
                      argc, argv);
    if (rc) return rc;
    if ((rc = parse_presence(&c, &p))) return opt_exit(rc);
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.op_case = XPB__V1__REQUEST__OP_PRESENCE;
    r.presence = &p;
    return run_request(&c, &r, print_ok);
}

/* ---- commands with no arguments but the account ---------------------------- */
/* Parses options that are all common (plus --account when with_account). */
static int parse_plain(ctl *c, bool with_account)
{
    static const optspec acct[] = {{"--account", true, CO_ACCOUNT}, {NULL, false, 0}};
    const char *v;
    int o;
    while ((o = next_opt(c, with_account ? acct : NULL, &v)) != OPT_END) {
        if (o == OPT_WORD) return usage_error(c, "unexpected argument", v);
        return o;
    }
    if (with_account && !c->account) return usage_error(c, "--account is required", NULL);
    return 0;
}

/* ---- roster -------------------------------------------------------------- */
static const char roster_help[] =
    "NAME\n"
    "    xpbctl roster - print a bridged account's roster\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbctl roster --account JID [OPTIONS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Request \"roster\" of proto/xpb/v1/bus.proto: the account's roster\n"
    "    (RFC 6121 §2) as the bridge holds it. Prints one line per item: JID,\n"
    "    name (\"-\" when none), subscription (none, to, from, both; \"+ask\" when\n"
    "    a subscription request is pending) and groups separated by commas.\n"
    "\n"
    "OPTIONS\n"
    "    --account JID      the bridged account (required)\n" HELP_COMMON_OPTIONS
    "\n" HELP_EXIT_STATUS "\n"
    "EXAMPLES\n"
    "    xpbctl roster --account bot@example.com\n"
    "    xpbctl roster --account bot@example.com --json | jq '.item[].jid'\n";

static int print_roster(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_ROSTER) return missing_result(c);
    const Xpb__V1__RosterQuery *q = resp->roster;
    if (c->json) return print_json(&q->base);
    printf("%-32s %-20s %-14s %s\n", "JID", "NAME", "SUBSCRIPTION", "GROUPS");
    for (size_t i = 0; i < q->n_item; i++) {
        const Xpb__V1__RosterItem *it = q->item[i];
        char sub[32] = "none", col[48];
        if (it->has_subscription)
            enum_short(&xpb__v1__roster_item__subscription__descriptor, (int)it->subscription,
                       "SUBSCRIPTION_", sub, sizeof(sub));
        snprintf(col, sizeof(col), "%s%s", sub,
                 it->has_ask_subscribe && it->ask_subscribe ? "+ask" : "");
        put_col(it->jid, 32);
        put_col(it->name, 20);
        printf("%-14s ", col);
        for (size_t g = 0; g < it->n_group; g++) {
            if (g) putchar(',');
            put_clean(it->group[g], 256);
        }
        putchar('\n');
    }
    return 0;
}

int xpbctl_roster_main(int argc, char **argv)
{
    ctl c;
    int rc = ctl_init(&c, "roster", roster_help, "xpbctl roster --account JID", argc, argv);
    if (rc) return rc;
    if ((rc = parse_plain(&c, true))) return opt_exit(rc);
    Xpb__V1__GetRoster g = XPB__V1__GET_ROSTER__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.op_case = XPB__V1__REQUEST__OP_ROSTER;
    r.roster = &g;
    return run_request(&c, &r, print_roster);
}

/* ---- join ---------------------------------------------------------------- */
static const char join_help[] =
    "NAME\n"
    "    xpbctl join - join a multi-user chat room with a bridged account\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbctl join --account JID --room ROOM@SERVICE --nick NICK [--password P]\n"
    "                [--history N] [OPTIONS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Request \"join\" of proto/xpb/v1/bus.proto: enters the room (XEP-0045\n"
    "    §7.2). The bridge rejoins it after every reconnect and checks it is\n"
    "    still joined with XEP-0410 self-pings. Room messages arrive as events\n"
    "    of kind message with type groupchat; send to the room with\n"
    "    xpbctl send --type groupchat --to ROOM@SERVICE. Prints \"ok\".\n"
    "\n"
    "OPTIONS\n"
    "    --account JID      the bridged account (required)\n"
    "    --room JID         the room's bare JID (required)\n"
    "    --nick NICK        the nickname in the room (required)\n"
    "    --password P       the room's password\n"
    "    --history N        ask for at most N messages of history (XEP-0045\n"
    "                       §7.2.13; 0: none)\n" HELP_COMMON_OPTIONS "\n" HELP_EXIT_STATUS "\n"
    "EXAMPLES\n"
    "    xpbctl join --account bot@example.com --room ops@conference.example.com \\\n"
    "        --nick bot --history 0\n";

static int parse_join(ctl *c, Xpb__V1__JoinRoom *j)
{
    enum { O_ROOM = 1, O_NICK, O_PASSWORD, O_HISTORY };
    static const optspec specs[] = {
        {"--account", true, CO_ACCOUNT},  {"--room", true, O_ROOM},       {"--nick", true, O_NICK},
        {"--password", true, O_PASSWORD}, {"--history", true, O_HISTORY}, {NULL, false, 0},
    };
    const char *v;
    unsigned long long n;
    int o;
    while ((o = next_opt(c, specs, &v)) != OPT_END) {
        switch (o) {
        case O_ROOM:
            j->room = (char *)v;
            break;
        case O_NICK:
            j->nick = (char *)v;
            break;
        case O_PASSWORD:
            j->password = (char *)v;
            break;
        case O_HISTORY:
            if (!parse_ull(v, INT32_MAX, &n))
                return usage_error(c, "--history must be 0..2147483647", v);
            j->has_history_maxstanzas = 1;
            j->history_maxstanzas = (int32_t)n;
            break;
        case OPT_WORD:
            return usage_error(c, "unexpected argument", v);
        default:
            return o;
        }
    }
    if (!c->account || !j->room || !j->nick)
        return usage_error(c, "--account, --room and --nick are required", NULL);
    return 0;
}

int xpbctl_join_main(int argc, char **argv)
{
    ctl c;
    Xpb__V1__JoinRoom j = XPB__V1__JOIN_ROOM__INIT;
    int rc = ctl_init(
        &c, "join", join_help,
        "xpbctl join --account JID --room ROOM@SERVICE --nick NICK [--password P] [--history N]",
        argc, argv);
    if (rc) return rc;
    if ((rc = parse_join(&c, &j))) return opt_exit(rc);
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.op_case = XPB__V1__REQUEST__OP_JOIN;
    r.join = &j;
    return run_request(&c, &r, print_ok);
}

/* ---- sessions ------------------------------------------------------------ */
static const char sessions_help[] =
    "NAME\n"
    "    xpbctl sessions - list the bridge's XMPP sessions\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbctl sessions [OPTIONS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Request \"list\" of proto/xpb/v1/bus.proto. Prints a table with one row\n"
    "    per session: account, bound JID, state (connecting, online, resumed,\n"
    "    disconnected, stopped), stanzas in and out, stanzas queued while not\n"
    "    online, stanzas sent but not yet acknowledged (XEP-0198), reconnects,\n"
    "    stream resumptions, and the joined rooms.\n"
    "\n"
    "OPTIONS\n" HELP_COMMON_OPTIONS "\n" HELP_EXIT_STATUS "\n"
    "EXAMPLES\n"
    "    xpbctl sessions\n"
    "    xpbctl sessions --json | jq '.session[] | select(.state != \"STATE_ONLINE\")'\n";

static int print_sessions(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_SESSIONS) return missing_result(c);
    const Xpb__V1__SessionList *l = resp->sessions;
    if (c->json) return print_json(&l->base);
    printf("%-28s %-40s %-12s %8s %8s %6s %7s %10s %11s %s\n", "ACCOUNT", "JID", "STATE", "IN",
           "OUT", "QUEUED", "UNACKED", "RECONNECTS", "RESUMPTIONS", "ROOMS");
    for (size_t i = 0; i < l->n_session; i++) {
        const Xpb__V1__SessionInfo *s = l->session[i];
        char st[32] = "unspecified";
        if (s->has_state)
            enum_short(&xpb__v1__session_state__state__descriptor, (int)s->state, "STATE_", st,
                       sizeof(st));
        put_col(s->account, 28);
        put_col(s->jid, 40);
        printf("%-12s %8" PRIu64 " %8" PRIu64 " %6" PRIu32 " %7" PRIu32 " %10" PRIu64 " %11" PRIu64
               " ",
               st, s->stanzas_in, s->stanzas_out, s->queued, s->unacked, s->reconnects,
               s->resumptions);
        for (size_t r = 0; r < s->n_room; r++) {
            if (r) putchar(',');
            put_clean(s->room[r], 256);
        }
        if (!s->n_room) putchar('-');
        putchar('\n');
    }
    return 0;
}

int xpbctl_sessions_main(int argc, char **argv)
{
    ctl c;
    int rc = ctl_init(&c, "sessions", sessions_help, "xpbctl sessions [--json]", argc, argv);
    if (rc) return rc;
    if ((rc = parse_plain(&c, false))) return opt_exit(rc);
    Xpb__V1__ListSessions l = XPB__V1__LIST_SESSIONS__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.op_case = XPB__V1__REQUEST__OP_LIST;
    r.list = &l;
    return run_request(&c, &r, print_sessions);
}

/* ---- status -------------------------------------------------------------- */
static const char status_help[] =
    "NAME\n"
    "    xpbctl status - print the bridge's status\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbctl status [OPTIONS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Request \"status\" of proto/xpb/v1/bus.proto. Prints the bridge's\n"
    "    version, uptime, sessions (and how many are online), events published\n"
    "    and the last event sequence number (compare with what a subscriber saw\n"
    "    to count lost events). Also a quick \"is the bridge up\" check.\n"
    "\n"
    "OPTIONS\n" HELP_COMMON_OPTIONS "\n" HELP_EXIT_STATUS "\n"
    "EXAMPLES\n"
    "    xpbctl status\n"
    "    xpbctl status --timeout 1000 >/dev/null || echo 'bridge down'\n";

static int print_status(ctl *c, const Xpb__V1__Response *resp)
{
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_STATUS) return missing_result(c);
    const Xpb__V1__BridgeStatus *s = resp->status;
    if (c->json) return print_json(&s->base);
    fputs("version: ", stdout);
    put_clean(s->version ? s->version : "unknown", 64);
    printf("\nuptime: %" PRIu64 " s\nsessions: %" PRIu32 " (%" PRIu32 " online)\n"
           "events published: %" PRIu64 "\nlast seq: %" PRIu64 "\n",
           s->uptime_s, s->sessions, s->sessions_online, s->events_published, s->last_seq);
    return 0;
}

int xpbctl_status_main(int argc, char **argv)
{
    ctl c;
    int rc = ctl_init(&c, "status", status_help, "xpbctl status [--json]", argc, argv);
    if (rc) return rc;
    if ((rc = parse_plain(&c, false))) return opt_exit(rc);
    Xpb__V1__GetStatus g = XPB__V1__GET_STATUS__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.op_case = XPB__V1__REQUEST__OP_STATUS;
    r.status = &g;
    return run_request(&c, &r, print_status);
}

/* ---- open / close -------------------------------------------------------- */
static const char open_help[] =
    "NAME\n"
    "    xpbctl open - open an XMPP session for an account in the bridge\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbctl open --account JID [--roster] [--no-presence] [--no-sm] [OPTIONS]\n"
    "    xpbctl open --account JID [--password-file F] [--host H] [--port N]\n"
    "                [--transport starttls|directtls|websocket] [--ws-url URL]\n"
    "                [--ca-file F] ...\n"
    "\n"
    "DESCRIPTION\n"
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
    "    as an absolute path and must be readable by the bridge.\n"
    "\n"
    "OPTIONS\n"
    "    --account JID        the account's bare JID (required)\n"
    "    --password-file F    file holding the password (allow_open_overrides)\n"
    "    --host H, --port N   connect here instead of the DNS SRV lookup\n"
    "    --transport T        starttls (RFC 6120 §5, default), directtls\n"
    "                         (XEP-0368) or websocket (RFC 7395)\n"
    "    --ws-url URL         the WebSocket endpoint (with --transport websocket)\n"
    "    --ca-file F          trust these CA certificates instead of the system's\n"
    "    --roster             fetch the roster after login\n"
    "    --no-presence        do not send initial presence\n"
    "    --no-sm              do not use stream management (XEP-0198)\n" HELP_COMMON_OPTIONS
    "\n" HELP_EXIT_STATUS "    1  also: ERR_EXISTS when the account already has a session,\n"
    "       ERR_FORBIDDEN when the configuration does not allow the request\n"
    "\n"
    "EXAMPLES\n"
    "    xpbctl open --account bot@example.com\n"
    "    xpbctl open --account bot@localhost --password-file bot.pass \\\n"
    "        --host 127.0.0.1 --port 5222 --ca-file /etc/prosody/certs/localhost.crt\n";

/* The bridge may run elsewhere in the file system: hand it absolute paths. */
static int absolute_path(ctl *c, const char *opt, const char *path, char **out)
{
    *out = realpath(path, NULL);
    if (*out) return 0;
    fprintf(stderr, "xpbctl %s: %s %s: %s\n", c->cmd, opt, path, strerror(errno));
    return XPBCTL_EXIT_USAGE;
}

typedef struct open_args {
    const char *password_file, *ca_file;
} open_args;

static int parse_open(ctl *c, Xpb__V1__OpenSession *s, open_args *a)
{
    enum {
        O_PWFILE = 1,
        O_HOST,
        O_PORT,
        O_TRANSPORT,
        O_WSURL,
        O_CAFILE,
        O_ROSTER,
        O_NOPRES,
        O_NOSM
    };
    static const optspec specs[] = {
        {"--account", true, CO_ACCOUNT},
        {"--password-file", true, O_PWFILE},
        {"--host", true, O_HOST},
        {"--port", true, O_PORT},
        {"--transport", true, O_TRANSPORT},
        {"--ws-url", true, O_WSURL},
        {"--ca-file", true, O_CAFILE},
        {"--roster", false, O_ROSTER},
        {"--no-presence", false, O_NOPRES},
        {"--no-sm", false, O_NOSM},
        {NULL, false, 0},
    };
    const char *v;
    unsigned long long n;
    int o, t;
    while ((o = next_opt(c, specs, &v)) != OPT_END) {
        switch (o) {
        case O_PWFILE:
            a->password_file = v;
            break;
        case O_HOST:
            s->host = (char *)v;
            break;
        case O_PORT:
            if (!parse_ull(v, 65535, &n) || !n) return usage_error(c, "--port must be 1..65535", v);
            s->has_port = 1;
            s->port = (uint32_t)n;
            break;
        case O_TRANSPORT:
            if (!lookup(transports, v, &t)) return usage_error(c, "unknown --transport", v);
            s->has_transport = 1;
            s->transport = (Xpb__V1__Transport)t;
            break;
        case O_WSURL:
            s->ws_url = (char *)v;
            break;
        case O_CAFILE:
            a->ca_file = v;
            break;
        case O_ROSTER:
            s->has_fetch_roster = s->fetch_roster = 1;
            break;
        case O_NOPRES:
            s->has_send_presence = 1;
            s->send_presence = 0;
            break;
        case O_NOSM:
            s->has_stream_management = 1;
            s->stream_management = 0;
            break;
        case OPT_WORD:
            return usage_error(c, "unexpected argument", v);
        default:
            return o;
        }
    }
    if (!c->account) return usage_error(c, "--account is required", NULL);
    if (s->ws_url && !(s->has_transport && s->transport == XPB__V1__TRANSPORT__TRANSPORT_WEBSOCKET))
        return usage_error(c, "--ws-url goes with --transport websocket", NULL);
    return 0;
}

int xpbctl_open_main(int argc, char **argv)
{
    ctl c;
    open_args a = {0};
    Xpb__V1__OpenSession s = XPB__V1__OPEN_SESSION__INIT;
    int rc = ctl_init(
        &c, "open", open_help,
        "xpbctl open --account JID [--password-file F] [--host H] [--port N] [--transport T] ...",
        argc, argv);
    if (rc) return rc;
    if ((rc = parse_open(&c, &s, &a))) return opt_exit(rc);
    if (a.password_file)
        rc = absolute_path(&c, "--password-file", a.password_file, &s.password_file);
    if (!rc && a.ca_file) rc = absolute_path(&c, "--ca-file", a.ca_file, &s.ca_file);
    if (!rc) {
        Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
        s.jid = (char *)c.account;
        r.op_case = XPB__V1__REQUEST__OP_OPEN;
        r.open = &s;
        rc = run_request(&c, &r, print_ok);
    }
    free(s.password_file);
    free(s.ca_file);
    return rc;
}

static const char close_help[] =
    "NAME\n"
    "    xpbctl close - close an account's session in the bridge\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbctl close --account JID [OPTIONS]\n"
    "\n"
    "DESCRIPTION\n"
    "    Request \"close\" of proto/xpb/v1/bus.proto: the bridge sends\n"
    "    unavailable presence, closes the stream (RFC 6120 §4.4) and forgets the\n"
    "    session; a state event \"stopped\" follows. Prints \"ok\".\n"
    "\n"
    "OPTIONS\n"
    "    --account JID      the bridged account (required)\n" HELP_COMMON_OPTIONS
    "\n" HELP_EXIT_STATUS "\n"
    "EXAMPLES\n"
    "    xpbctl close --account bot@example.com\n";

int xpbctl_close_main(int argc, char **argv)
{
    ctl c;
    int rc = ctl_init(&c, "close", close_help, "xpbctl close --account JID", argc, argv);
    if (rc) return rc;
    if ((rc = parse_plain(&c, true))) return opt_exit(rc);
    Xpb__V1__CloseSession s = XPB__V1__CLOSE_SESSION__INIT;
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    r.op_case = XPB__V1__REQUEST__OP_CLOSE;
    r.close = &s;
    return run_request(&c, &r, print_ok);
}

/* ---- tail ---------------------------------------------------------------- */
static const char tail_help[] =
    "NAME\n"
    "    xpbctl tail - print the bridge's events as they come\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbctl tail [--account JID]... [--kind KIND[,KIND...]] [--count N]\n"
    "                [--sizes] [--json] [--events URL]\n"
    "\n"
    "DESCRIPTION\n"
    "    Subscribes to the bridge's event socket (proto/xpb/v1/bus.proto) and\n"
    "    prints every event: received stanzas (kinds message, presence, iq,\n"
    "    other), session state changes (kind state) and outcomes of sent\n"
    "    stanzas (kind delivery). Filters become NNG prefix subscriptions on the\n"
    "    topic \"KIND/ACCOUNT/\", one per kind and account, so the filtering\n"
    "    costs nothing on the wire.\n"
    "\n"
    "    A line per event:\n"
    "        #SEQ TIME ACCOUNT KIND FROM → TO TYPE \"BODY...\"\n"
    "        #SEQ TIME ACCOUNT state STATE [jid=JID] [reason=\"...\"]\n"
    "        #SEQ TIME ACCOUNT delivery acked|failed id=ID [request=ID] [reason=\"...\"]\n"
    "    TIME is local, HH:MM:SS.mmm. With --json, each event is one JSON\n"
    "    object (xpb.v1.Event) per line.\n"
    "\n"
    "    Sequence numbers count every event of the bridge, across all topics.\n"
    "    Without filters, a jump means events were lost (the subscriber was too\n"
    "    slow and NNG dropped messages); it is reported as\n"
    "        xpbctl: tail: lost N events (seq A..B)\n"
    "    on standard error, or as a line {\"gap\":{\"lost\":N,\"first\":A,\"last\":B}}\n"
    "    with --json. With filters, other topics' numbers are skipped normally;\n"
    "    instead each batch says which seq came before it on its topic\n"
    "    (EventBatch.prev_seq), and tail keeps the last seq it saw per topic. When\n"
    "    they differ, events of that topic were lost:\n"
    "        xpbctl: tail: lost events on TOPIC between seq A and B (the last was P)\n"
    "    or {\"gap\":{\"topic\":\"TOPIC\",\"after\":A,\"before\":B,\"last\":P}} with\n"
    "    --json (how many is unknown: other topics' events are numbered between).\n"
    "    A topic's first batch, and prev_seq 0 (the bridge forgot the topic), are\n"
    "    not checked.\n"
    "\n"
    "    tail starts even when the bridge is not running yet and reconnects when\n"
    "    it restarts. It stops after --count events, or on SIGINT or SIGTERM.\n"
    "\n"
    "OPTIONS\n"
    "    --account JID      only this account's events (repeatable)\n"
    "    --kind LIST        only these kinds: message, presence, iq, other, state,\n"
    "                       delivery (comma-separated, repeatable)\n"
    "    --count N          exit after N events\n"
    "    --sizes            append each stanza's record size against its size as\n"
    "                       XML on the wire: [record 112 B vs XML 287 B (0.39)]\n"
    "    --json             one JSON object per event\n"
    "    --events URL       the bridge's event socket (default\n"
    "                       ipc://$XDG_RUNTIME_DIR/xpbridge/events, or\n"
    "                       ipc:///tmp/xpbridge-UID/events without XDG_RUNTIME_DIR)\n"
    "    --help             print this text\n"
    "\n"
    "EXIT STATUS\n"
    "    0  --count events were printed, or SIGINT/SIGTERM\n"
    "    1  the event socket could not be opened, or output failed\n"
    "    2  usage error\n"
    "\n"
    "EXAMPLES\n"
    "    xpbctl tail\n"
    "    xpbctl tail --account bot@example.com --kind message,delivery --sizes\n"
    "    xpbctl tail --json --kind state | jq -c '{account, state: .state.state}'\n";

static const char *const event_kinds[] = {"message", "presence", "iq",
                                          "other",   "state",    "delivery"};
#define N_KINDS (sizeof(event_kinds) / sizeof(event_kinds[0]))

typedef struct tail_args {
    bool kind[N_KINDS], any_kind, sizes;
    const char *accounts[CTL_MAX_FILTERS];
    size_t n_accounts;
    unsigned long long count;
} tail_args;

/* Seqs skipped so far that may still arrive: the bus batches per topic, so
 * events of different topics can arrive out of order. A skipped seq is lost
 * only once a batch whose first seq is above it arrives (batches leave the
 * bridge in order of their first seq; docs/bus.md). */
#define TAIL_MAX_PENDING 256
typedef struct seq_range {
    uint64_t first, last;
} seq_range;

/* With filters, the last seq seen per topic, compared with each batch's
 * prev_seq. A --kind filter without --account matches any number of
 * accounts, so the topics remembered are bounded; the least recently seen is
 * forgotten first (its next batch is then not checked). */
#define TAIL_MAX_TOPICS 4096
#define TAIL_TOPIC_BUCKETS 1024 /* power of two */
#define TAIL_TOPIC_MAX 4096     /* bytes: "<kind>/" + a bare JID (3071) + "/" */
typedef struct tail_topic {
    struct tail_topic *hnext, *lprev, *lnext;
    uint32_t hash;
    uint64_t last_seq;
    size_t len;
    char name[];
} tail_topic;

typedef struct tail_state {
    unsigned long long printed;
    uint64_t last_seq; /* highest seq seen */
    bool check_gaps;
    seq_range pending[TAIL_MAX_PENDING];
    size_t n_pending;
    tail_topic *topics[TAIL_TOPIC_BUCKETS];
    tail_topic *lru_head, *lru_tail; /* most recently seen first */
    size_t n_topics;
} tail_state;

static volatile sig_atomic_t tail_stop;
static void on_stop_signal(int sig)
{
    (void)sig;
    tail_stop = 1;
}

static int add_kinds(ctl *c, tail_args *a, const char *list)
{
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        size_t k = 0;
        while (k < N_KINDS && !(strlen(event_kinds[k]) == n && memcmp(event_kinds[k], p, n) == 0))
            k++;
        if (k == N_KINDS)
            return usage_error(c, "unknown --kind (message, presence, iq, other, state, delivery)",
                               list);
        a->kind[k] = a->any_kind = true;
        p += n + (p[n] == ',');
    }
    return 0;
}

static int parse_tail(ctl *c, tail_args *a)
{
    enum { O_KIND = 1, O_COUNT, O_SIZES, O_ACCOUNT };
    static const optspec specs[] = {
        {"--account", true, O_ACCOUNT}, {"--kind", true, O_KIND}, {"--count", true, O_COUNT},
        {"--sizes", false, O_SIZES},    {NULL, false, 0},
    };
    const char *v;
    int o, rc;
    while ((o = next_opt(c, specs, &v)) != OPT_END) {
        switch (o) {
        case O_ACCOUNT:
            if (a->n_accounts == CTL_MAX_FILTERS)
                return usage_error(c, "too many --account filters", v);
            if (!v[0] || strchr(v, '/')) return usage_error(c, "--account takes a bare JID", v);
            a->accounts[a->n_accounts++] = v;
            break;
        case O_KIND:
            if ((rc = add_kinds(c, a, v))) return rc;
            break;
        case O_COUNT:
            if (!parse_ull(v, UINT64_MAX, &a->count) || !a->count)
                return usage_error(c, "--count must be a positive number", v);
            break;
        case O_SIZES:
            a->sizes = true;
            break;
        case OPT_WORD:
            return usage_error(c, "unexpected argument", v);
        default:
            return o;
        }
    }
    return 0;
}

/* One prefix subscription per kind × account (bus.proto's topic scheme). */
static int subscribe_filters(nng_socket s, const tail_args *a)
{
    char topic[2048];
    size_t n_acc = a->n_accounts ? a->n_accounts : 1;
    if (!a->any_kind && !a->n_accounts) return nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    for (size_t k = 0; k < N_KINDS; k++) {
        if (a->any_kind && !a->kind[k]) continue;
        for (size_t i = 0; i < n_acc; i++) {
            int n = a->n_accounts
                        ? snprintf(topic, sizeof(topic), "%s/%s/", event_kinds[k], a->accounts[i])
                        : snprintf(topic, sizeof(topic), "%s/", event_kinds[k]);
            if (n < 0 || (size_t)n >= sizeof(topic)) return NNG_EINVAL;
            int rv = nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, topic, (size_t)n);
            if (rv) return rv;
        }
    }
    return 0;
}

static void print_time(uint64_t us)
{
    time_t t = (time_t)(us / 1000000u);
    struct tm tm;
    char buf[16] = "??:??:??";
    if (localtime_r(&t, &tm)) strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
    printf("%s.%03u", buf, (unsigned)(us / 1000u % 1000u));
}

static const char *stanza_kind_name(const xpb_stanza *st)
{
    switch (st->kind) {
    case XPB__V1__KIND__KIND_MESSAGE:
        return "message";
    case XPB__V1__KIND__KIND_PRESENCE:
        return "presence";
    case XPB__V1__KIND__KIND_IQ:
        return "iq";
    default:
        return "other";
    }
}

/* What an iq carries, in a word. */
static const char *iq_payload_name(const xpb_stanza *st)
{
    if (st->ping) return "ping";
    if (st->disco_info) return "disco#info";
    if (st->disco_items) return "disco#items";
    if (st->roster) return "roster";
    if (st->n_extension && st->extension[0]->name) return st->extension[0]->name;
    return NULL;
}

static void print_stanza_line(const xpb_stanza *st)
{
    char word[64];
    printf(" %s ", stanza_kind_name(st));
    put_clean(st->from, 256);
    fputs(" → ", stdout);
    put_clean(st->to, 256);
    if (st->has_type && st->type)
        printf(" %s", enum_short(&xpb__v1__stanza_type__descriptor, (int)st->type, "TYPE_", word,
                                 sizeof(word)));
    else if (st->type_raw) {
        putchar(' ');
        put_clean(st->type_raw, 32);
    }
    if (st->has_show && st->show)
        printf(" show=%s",
               enum_short(&xpb__v1__show__descriptor, (int)st->show, "SHOW_", word, sizeof(word)));
    const Xpb__V1__Text *text = st->n_body ? st->body[0] : st->n_status ? st->status[0] : NULL;
    if (text && text->text) {
        fputs(" \"", stdout);
        put_clean(text->text, CTL_EXCERPT_BYTES);
        putchar('"');
    }
    const char *payload = st->kind == XPB__V1__KIND__KIND_IQ ? iq_payload_name(st) : NULL;
    if (payload) {
        putchar(' ');
        put_clean(payload, 64);
    }
    if (st->error && st->error->has_condition)
        printf(" error=%s",
               enum_short(&xpb__v1__error_condition__descriptor, (int)st->error->condition,
                          "CONDITION_", word, sizeof(word)));
}

static void print_state_line(const Xpb__V1__SessionState *s)
{
    char word[32] = "unspecified";
    if (s->has_state)
        enum_short(&xpb__v1__session_state__state__descriptor, (int)s->state, "STATE_", word,
                   sizeof(word));
    printf(" state %s", word);
    if (s->jid) {
        fputs(" jid=", stdout);
        put_clean(s->jid, 256);
    }
    if (s->reason) {
        fputs(" reason=\"", stdout);
        put_clean(s->reason, 200);
        putchar('"');
    }
}

static void print_delivery_line(const Xpb__V1__Delivery *d)
{
    char word[32] = "unspecified";
    if (d->has_outcome)
        enum_short(&xpb__v1__delivery__outcome__descriptor, (int)d->outcome, "OUTCOME_", word,
                   sizeof(word));
    printf(" delivery %s id=", word);
    put_clean(d->stanza_id, 128);
    if (d->request_id) {
        fputs(" request=", stdout);
        put_clean(d->request_id, 128);
    }
    if (d->reason) {
        fputs(" reason=\"", stdout);
        put_clean(d->reason, 200);
        putchar('"');
    }
}

static void print_event_human(const tail_args *a, const Xpb__V1__Event *ev)
{
    printf("#%" PRIu64 " ", ev->seq);
    print_time(ev->timestamp_us);
    putchar(' ');
    put_clean(ev->account, 256);
    if (ev->body_case == XPB__V1__EVENT__BODY_STANZA) {
        print_stanza_line(ev->stanza);
        if (a->sizes) {
            size_t rec = xpb__v1__stanza__get_packed_size(ev->stanza);
            if (ev->has_xml_bytes && ev->xml_bytes)
                printf(" [record %zu B vs XML %" PRIu32 " B (%.2f)]", rec, ev->xml_bytes,
                       (double)rec / (double)ev->xml_bytes);
            else
                printf(" [record %zu B]", rec);
        }
    } else if (ev->body_case == XPB__V1__EVENT__BODY_STATE) {
        print_state_line(ev->state);
    } else if (ev->body_case == XPB__V1__EVENT__BODY_DELIVERY) {
        print_delivery_line(ev->delivery);
    } else {
        fputs(" (empty event)", stdout);
    }
    putchar('\n');
}

static void report_lost(ctl *c, uint64_t first, uint64_t last)
{
    uint64_t lost = last - first + 1;
    if (c->json) {
        printf("{\"gap\":{\"lost\":%" PRIu64 ",\"first\":%" PRIu64 ",\"last\":%" PRIu64 "}}\n",
               lost, first, last);
    } else {
        fflush(stdout);
        fprintf(stderr, "xpbctl: tail: lost %" PRIu64 " event%s (seq %" PRIu64 "..%" PRIu64 ")\n",
                lost, lost == 1 ? "" : "s", first, last);
    }
}

/* A batch with first seq `first` arrived: every pending seq below it is lost. */
static void settle_pending(ctl *c, tail_state *t, uint64_t first)
{
    size_t keep = 0;
    for (size_t i = 0; i < t->n_pending; i++) {
        seq_range r = t->pending[i];
        if (r.first < first) {
            uint64_t end = r.last < first ? r.last : first - 1;
            report_lost(c, r.first, end);
            if (r.last < first) continue;
            r.first = first;
        }
        t->pending[keep++] = r;
    }
    t->n_pending = keep;
    /* Seqs between the highest seen and this batch's first are lost too. */
    if (t->last_seq != 0 && first > t->last_seq + 1) {
        report_lost(c, t->last_seq + 1, first - 1);
        t->last_seq = first - 1;
    }
}

static void add_pending(ctl *c, tail_state *t, uint64_t first, uint64_t last)
{
    if (t->n_pending == TAIL_MAX_PENDING) { /* too many holes: the oldest is lost */
        report_lost(c, t->pending[0].first, t->pending[0].last);
        memmove(t->pending, t->pending + 1, (TAIL_MAX_PENDING - 1) * sizeof *t->pending);
        t->n_pending--;
    }
    t->pending[t->n_pending++] = (seq_range){first, last};
}

/* Takes seq out of the pending ranges; false when it was not pending. */
static bool fill_pending(tail_state *t, uint64_t seq)
{
    for (size_t i = 0; i < t->n_pending; i++) {
        seq_range *r = &t->pending[i];
        if (seq < r->first || seq > r->last) continue;
        if (r->first == r->last) {
            memmove(r, r + 1, (t->n_pending - i - 1) * sizeof *r);
            t->n_pending--;
        } else if (seq == r->first) {
            r->first++;
        } else if (seq == r->last) {
            r->last--;
        } else if (t->n_pending < TAIL_MAX_PENDING) {
            seq_range tail = {seq + 1, r->last};
            r->last = seq - 1;
            t->pending[t->n_pending++] = tail;
        } else {
            r->last = seq - 1; /* no room to split: the rest counts as lost later */
        }
        return true;
    }
    return false;
}

static void check_gap(ctl *c, tail_state *t, uint64_t seq)
{
    if (!t->check_gaps) return;
    if (t->last_seq == 0 || seq == t->last_seq + 1) {
        t->last_seq = seq;
    } else if (seq > t->last_seq + 1) {
        add_pending(c, t, t->last_seq + 1, seq - 1);
        t->last_seq = seq;
    } else if (!fill_pending(t, seq)) {
        fflush(stdout);
        fprintf(stderr,
                "xpbctl: tail: sequence restarted at %" PRIu64 " (after %" PRIu64
                "): bridge restarted?\n",
                seq, t->last_seq);
        t->n_pending = 0;
        t->last_seq = seq;
    }
}

/* ---- per-topic gaps (filtered tail) ---- */

static uint32_t topic_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static void topic_unlink(tail_state *t, tail_topic *tp)
{
    if (tp->lprev)
        tp->lprev->lnext = tp->lnext;
    else
        t->lru_head = tp->lnext;
    if (tp->lnext)
        tp->lnext->lprev = tp->lprev;
    else
        t->lru_tail = tp->lprev;
    tp->lprev = tp->lnext = NULL;
}

static void topic_push(tail_state *t, tail_topic *tp)
{
    tp->lnext = t->lru_head;
    if (t->lru_head)
        t->lru_head->lprev = tp;
    else
        t->lru_tail = tp;
    t->lru_head = tp;
}

static void topic_forget_oldest(tail_state *t)
{
    tail_topic *tp = t->lru_tail;
    topic_unlink(t, tp);
    tail_topic **pp = &t->topics[tp->hash & (TAIL_TOPIC_BUCKETS - 1)];
    while (*pp != tp)
        pp = &(*pp)->hnext;
    *pp = tp->hnext;
    free(tp);
    t->n_topics--;
}

static void free_topics(tail_state *t)
{
    while (t->lru_tail)
        topic_forget_oldest(t);
}

/* Printed as is, on stderr and inside a JSON string: a bridge's topics are
 * "<kind>/<bare JID>/" and a JID holds no '"' (RFC 7622 §3.3.1, §3.2), so
 * anything else is simply not tracked. */
static bool topic_printable(const uint8_t *s, size_t len)
{
    if (!len || len > TAIL_TOPIC_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] == 0x7f || s[i] == '"' || s[i] == '\\') return false;
    return true;
}

/* The topic's entry, now the most recently seen; new ones have last_seq 0. */
static tail_topic *topic_get(tail_state *t, const uint8_t *name, size_t len)
{
    if (!topic_printable(name, len)) return NULL;
    uint32_t h = topic_hash((const char *)name, len);
    tail_topic **head = &t->topics[h & (TAIL_TOPIC_BUCKETS - 1)];
    for (tail_topic *tp = *head; tp; tp = tp->hnext)
        if (tp->hash == h && tp->len == len && memcmp(tp->name, name, len) == 0) {
            topic_unlink(t, tp);
            topic_push(t, tp);
            return tp;
        }
    if (t->n_topics >= TAIL_MAX_TOPICS) topic_forget_oldest(t);
    tail_topic *tp = calloc(1, sizeof(*tp) + len + 1);
    if (!tp) return NULL;
    memcpy(tp->name, name, len);
    tp->len = len;
    tp->hash = h;
    tp->hnext = *head;
    *head = tp;
    topic_push(t, tp);
    t->n_topics++;
    return tp;
}

static void report_topic_lost(ctl *c, const tail_topic *tp, uint64_t before, uint64_t last)
{
    if (c->json) {
        printf("{\"gap\":{\"topic\":\"%s\",\"after\":%" PRIu64 ",\"before\":%" PRIu64
               ",\"last\":%" PRIu64 "}}\n",
               tp->name, tp->last_seq, before, last);
    } else {
        fflush(stdout);
        fprintf(stderr,
                "xpbctl: tail: lost events on %s between seq %" PRIu64 " and %" PRIu64
                " (the last was %" PRIu64 ")\n",
                tp->name, tp->last_seq, before, last);
    }
}

/* A batch of a filtered tail: prev_seq names the topic's event before it
 * (docs/bus.md); 0 or absent means unknown. A first seq at or below the last
 * one seen means the bridge restarted: start the topic over. */
static void check_topic_gap(ctl *c, tail_state *t, const uint8_t *topic, size_t len,
                            const Xpb__V1__EventBatch *b)
{
    tail_topic *tp = topic_get(t, topic, len);
    if (!tp) return;
    uint64_t first = b->event[0]->seq;
    if (tp->last_seq && first > tp->last_seq && b->has_prev_seq && b->prev_seq > tp->last_seq)
        report_topic_lost(c, tp, first, b->prev_seq);
    tp->last_seq = b->event[b->n_event - 1]->seq;
}

/* One NNG message: topic, NUL, EventBatch. Returns true when --count is reached. */
static bool handle_event_msg(ctl *c, const tail_args *a, tail_state *t, const uint8_t *data,
                             size_t len)
{
    const uint8_t *nul = memchr(data, 0, len);
    size_t off = nul ? (size_t)(nul - data) + 1 : 0;
    Xpb__V1__EventBatch *b = NULL;
    /* Batch and Event wrap the Stanza: two more levels than a record. */
    if (!nul ||
        xpb_pb_check_depth(&xpb__v1__event_batch__descriptor, data + off, len - off,
                           XPB_RECORD_DEFAULT_MAX_DEPTH + 2) ||
        !(b = xpb__v1__event_batch__unpack(NULL, len - off, data + off))) {
        fprintf(stderr, "xpbctl: tail: undecodable event message (%zu bytes)\n", len);
        return false;
    }
    bool done = false;
    if (t->check_gaps && b->n_event > 0) settle_pending(c, t, b->event[0]->seq);
    if (!t->check_gaps && b->n_event > 0) check_topic_gap(c, t, data, off - 1, b);
    for (size_t i = 0; i < b->n_event && !done; i++) {
        const Xpb__V1__Event *ev = b->event[i];
        check_gap(c, t, ev->seq);
        if (c->json)
            print_json(&ev->base);
        else
            print_event_human(a, ev);
        done = a->count && ++t->printed >= a->count;
    }
    fflush(stdout);
    xpb__v1__event_batch__free_unpacked(b, NULL);
    return done;
}

static int open_sub(ctl *c, const tail_args *a, nng_socket *s)
{
    int rv = nng_sub0_open(s);
    if (rv) {
        fprintf(stderr, "xpbctl: tail: cannot open a SUB socket: %s\n", nng_strerror(rv));
        return XPBCTL_EXIT_FAIL;
    }
    rv = subscribe_filters(*s, a);
    if (!rv) rv = nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, CTL_MAX_EVENT_BYTES);
    if (!rv) rv = nng_socket_set_int(*s, NNG_OPT_RECVBUF, CTL_SUB_QUEUE);
    if (!rv) rv = nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, CTL_POLL_MS);
    /* Non-blocking dial: NNG keeps redialing, so tail may start first. */
    if (!rv) rv = nng_dial(*s, c->events, NULL, NNG_FLAG_NONBLOCK);
    if (rv) {
        fprintf(stderr, "xpbctl: tail: %s: %s\n", c->events, nng_strerror(rv));
        nng_close(*s);
        return rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? XPBCTL_EXIT_USAGE : XPBCTL_EXIT_FAIL;
    }
    return 0;
}

int xpbctl_tail_main(int argc, char **argv)
{
    ctl c;
    tail_args a = {0};
    int rc =
        ctl_init(&c, "tail", tail_help,
                 "xpbctl tail [--account JID]... [--kind KIND,...] [--count N] [--sizes] [--json]",
                 argc, argv);
    if (rc) return rc;
    if ((rc = parse_tail(&c, &a))) return opt_exit(rc);
    nng_socket s;
    if ((rc = open_sub(&c, &a, &s))) return rc;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    static tail_state t; /* the topic table is big for a stack */
    t.check_gaps = !a.any_kind && !a.n_accounts;
    bool done = false;
    while (!done && !tail_stop) {
        nng_msg *m = NULL;
        int rv = nng_recvmsg(s, &m, 0);
        if (rv == NNG_ETIMEDOUT) continue;
        if (rv) {
            fprintf(stderr, "xpbctl: tail: %s: %s\n", c.events, nng_strerror(rv));
            rc = XPBCTL_EXIT_FAIL;
            break;
        }
        done = handle_event_msg(&c, &a, &t, nng_msg_body(m), nng_msg_len(m));
        nng_msg_free(m);
        if (ferror(stdout)) {
            rc = XPBCTL_EXIT_FAIL;
            break;
        }
    }
    nng_close(s);
    free_topics(&t);
    return rc;
}
