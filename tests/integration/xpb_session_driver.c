/* Test driver for the integration tests (tests/integration/): sessions in one
 * xpb_loop, commanded by lines on stdin, reporting JSON lines on stdout. The
 * protocol is the contract in tests/integration/README (issue 4): open, send,
 * sendxml, close, cut, freeze, stats, quit. Logs go to stderr, never secrets.
 * --dns-server IP:PORT sends SRV/A lookups to that server (tests/integration/test_srv.py). */
#include "xpb_error.h"
#include "xpb_loop.h"
#include "xpb_session.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DRV_MAX_LINE (1024u * 1024u)   /* one command line, a stanza included */
#define DRV_MAX_PASSWORD 4096u
#define DRV_QUIT_WAIT_MS 4000u         /* quit: time given to clean shutdowns */

typedef struct driver {
    xpb_loop *loop;
    struct event *stdin_ev, *quit_ev;
    const char *ca_file;
    const char *dns_servers; /* --dns-server: resolver override (SRV tests) */
    int log_level;
    int quitting;
    char *line;
    size_t line_len;
} driver;

/* ---- JSON out ------------------------------------------------------------------ */

static void json_str(xpb_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    xpb_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (c == '"' || c == '\\') {
            char two[2] = {'\\', (char)c};
            xpb_buf_append(b, two, 2);
        } else if (c == '\n') {
            xpb_buf_append(b, "\\n", 2);
        } else if (c < 0x20) {
            xpb_buf_append(b, esc, 6);
        } else {
            xpb_buf_append(b, &s[i], 1);
        }
    }
    xpb_buf_append(b, "\"", 1);
}

static void json_field(xpb_buf *b, const char *key, const char *val)
{
    xpb_buf_append(b, ",", 1);
    json_str(b, key, strlen(key));
    xpb_buf_append(b, ":", 1);
    json_str(b, val ? val : "", val ? strlen(val) : 0);
}

static void json_num(xpb_buf *b, const char *key, uint64_t v)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, ",\"%s\":%" PRIu64, key, v);
    xpb_buf_append_str(b, tmp);
}

static void json_begin(xpb_buf *b, const char *event, const char *session)
{
    xpb_buf_init(b, 0);
    xpb_buf_append_str(b, "{\"event\":");
    json_str(b, event, strlen(event));
    if (session) json_field(b, "session", session);
}

static void json_end(xpb_buf *b)
{
    xpb_buf_append(b, "}\n", 2);
    fwrite(b->data, 1, b->len, stdout);
    fflush(stdout);
    xpb_buf_free(b);
}

static const char *code_name(int code)
{
    static const struct { int code; const char *name; } names[] = {
        {XPB_ENOMEM, "XPB_ENOMEM"},       {XPB_EINVAL, "XPB_EINVAL"},
        {XPB_ENOTIMPL, "XPB_ENOTIMPL"},   {XPB_ERECORD, "XPB_ERECORD"},
        {XPB_ESTRLEN, "XPB_ESTRLEN"},     {XPB_EXMLCHAR, "XPB_EXMLCHAR"},
        {XPB_EJID, "XPB_EJID"},           {XPB_ETOOBIG, "XPB_ETOOBIG"},
        {XPB_EXML, "XPB_EXML"},           {XPB_ESASLNOMECH, "XPB_ESASLNOMECH"},
        {XPB_ESASLSERVERSIG, "XPB_ESASLSERVERSIG"}, {XPB_ESASLSERVERERR, "XPB_ESASLSERVERERR"},
        {XPB_ESASLPROTO, "XPB_ESASLPROTO"},
        {XPB_EQUEUEFULL, "XPB_EQUEUEFULL"}, {XPB_ENOTCONN, "XPB_ENOTCONN"},
        {XPB_ETLS, "XPB_ETLS"},           {XPB_ENOTLS, "XPB_ENOTLS"},
        {XPB_EAUTH, "XPB_EAUTH"},         {XPB_ESTREAM, "XPB_ESTREAM"},
        {XPB_ETIMEOUT, "XPB_ETIMEOUT"},   {XPB_EDNS, "XPB_EDNS"},
        {XPB_ECONNECT, "XPB_ECONNECT"},   {XPB_EWEBSOCKET, "XPB_EWEBSOCKET"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].code == code) return names[i].name;
    return code ? "XPB_EOTHER" : "";
}

static void print_error(const char *session, int code, const char *message)
{
    xpb_buf b;
    json_begin(&b, "error", session);
    json_field(&b, "code", code_name(code));
    json_field(&b, "message", message ? message : xpb_strerror(code));
    json_end(&b);
}

/* ---- session events -> JSON -------------------------------------------------- */

static void stanza_fields(xpb_buf *b, const xpb_node *st)
{
    const char *kind = "other";
    if (strcmp(st->ns, XPB_NS_CLIENT) == 0 &&
        (!strcmp(st->name, "message") || !strcmp(st->name, "presence") || !strcmp(st->name, "iq")))
        kind = st->name;
    json_field(b, "kind", kind);
    static const char *const attrs[] = {"from", "id", "type"};
    for (size_t i = 0; i < 3; i++) {
        const xpb_attr *a = xpb_node_attr(st, "", attrs[i]);
        json_field(b, attrs[i], a ? a->value : "");
    }
    const xpb_node *body = xpb_node_child(st, XPB_NS_CLIENT, "body");
    if (body) {
        xpb_buf t;
        xpb_buf_init(&t, 0);
        for (const xpb_node *c = body->children; c; c = c->next)
            if (c->kind == XPB_NODE_TEXT) xpb_buf_append(&t, c->text, c->text_len);
        xpb_buf_append(b, ",\"body\":", 8);
        json_str(b, t.data ? t.data : "", t.len);
        xpb_buf_free(&t);
    }
    xpb_buf x;
    xpb_buf_init(&x, 0);
    xpb_xml_write_node(&x, st, "");
    xpb_buf_append(b, ",\"xml\":", 7);
    json_str(b, x.data ? x.data : "", x.len);
    xpb_buf_free(&x);
}

static void on_event(void *ud, xpb_loop_session *ls, const xpb_session_event *ev)
{
    (void)ud;
    const char *name = xpb_loop_session_name(ls);
    xpb_buf b;
    switch (ev->kind) {
    case XPB_SE_STATE:
        json_begin(&b, "state", name);
        json_field(&b, "state", xpb_session_state_name(ev->state));
        json_field(&b, "reason", ev->reason);
        if (ev->code) json_field(&b, "code", code_name(ev->code));
        break;
    case XPB_SE_ONLINE:
        json_begin(&b, "online", name);
        json_field(&b, "jid", ev->jid);
        xpb_buf_append_str(&b, ev->resumed ? ",\"resumed\":true" : ",\"resumed\":false");
        break;
    case XPB_SE_STANZA:
        json_begin(&b, "stanza", name);
        stanza_fields(&b, ev->stanza);
        break;
    case XPB_SE_ACKED:
        json_begin(&b, "acked", name);
        json_num(&b, "handle", ev->handle);
        break;
    case XPB_SE_FAILED:
        json_begin(&b, "failed", name);
        json_num(&b, "handle", ev->handle);
        json_field(&b, "reason", ev->reason);
        break;
    case XPB_SE_ERROR:
        json_begin(&b, "error", name);
        json_field(&b, "code", code_name(ev->code));
        json_field(&b, "message", ev->reason);
        break;
    default:
        return;
    }
    json_end(&b);
}

static void on_log(void *ud, int level, const char *session, const char *msg)
{
    driver *d = ud;
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (level < d->log_level) return;
    fprintf(stderr, "[%s] %s: %s\n", names[level & 3], session ? session : "-", msg);
}

/* ---- commands -------------------------------------------------------------------- */

/* Next space-separated field; NULL at the end of the line. */
static char *next_field(char **p)
{
    if (!*p || !**p) return NULL;
    char *s = *p, *sp = strchr(s, ' ');
    if (sp) {
        *sp = '\0';
        *p = sp + 1;
    } else {
        *p = s + strlen(s);
    }
    return s;
}

static int read_password(const char *path, unsigned char *out, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return XPB_EINVAL;
    size_t n = fread(out, 1, cap, f);
    int too_long = n == cap;
    fclose(f);
    if (too_long) return XPB_ETOOBIG;
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r')) n--;
    *len = n;
    return 0;
}

static int parse_uint(const char *v, unsigned *out)
{
    char *e;
    errno = 0;
    unsigned long x = strtoul(v, &e, 10);
    if (errno || *v == '\0' || *e != '\0' || x > 0xFFFFFFFFul) return XPB_EINVAL;
    *out = (unsigned)x;
    return 0;
}

static int parse_transport(const char *v, xpb_transport_kind *k)
{
    if (!strcmp(v, "starttls")) *k = XPB_TRANSPORT_STARTTLS;
    else if (!strcmp(v, "directtls")) *k = XPB_TRANSPORT_DIRECT_TLS;
    else if (!strcmp(v, "websocket")) *k = XPB_TRANSPORT_WEBSOCKET;
    else return XPB_EINVAL;
    return 0;
}

/* One key=value of `open`; the strings stay in the command line buffer. */
static int open_option(xpb_session_config *c, const char **ca_file, char *kv)
{
    char *eq = strchr(kv, '=');
    if (!eq) return XPB_EINVAL;
    *eq = '\0';
    const char *k = kv, *v = eq + 1;
    unsigned u = 0;
    if (!strcmp(k, "host")) c->host = v;
    else if (!strcmp(k, "ws_url")) c->ws_url = v;
    else if (!strcmp(k, "ca_file")) *ca_file = v;
    else if (!strcmp(k, "transport")) return parse_transport(v, &c->transport);
    else if (parse_uint(v, &u) != 0) return XPB_EINVAL;
    else if (!strcmp(k, "port")) {
        if (u == 0 || u > 65535) return XPB_EINVAL;
        c->port = (uint16_t)u;
    } else if (!strcmp(k, "allow_plaintext")) c->allow_plaintext = u != 0;
    else if (!strcmp(k, "sm")) c->stream_management = u != 0;
    else if (!strcmp(k, "roster")) c->fetch_roster = u != 0;
    else if (!strcmp(k, "presence")) c->send_presence = u != 0;
    else if (!strcmp(k, "ping_interval_ms")) c->ping_interval_ms = u;
    else if (!strcmp(k, "ping_timeout_ms")) c->ping_timeout_ms = u;
    else if (!strcmp(k, "connect_timeout_ms")) c->connect_timeout_ms = u;
    else if (!strcmp(k, "backoff_min_ms")) c->backoff_min_ms = u;
    else if (!strcmp(k, "backoff_max_ms")) c->backoff_max_ms = u;
    else if (!strcmp(k, "queue_max")) c->queue_max = u;
    else if (!strcmp(k, "ack_every")) c->ack_every = u;
    else return XPB_EINVAL;
    return 0;
}

static void cmd_open(driver *d, char *args)
{
    char *name = next_field(&args), *jid = next_field(&args), *pwfile = next_field(&args);
    if (!name || !jid || !pwfile) {
        print_error(name, XPB_EINVAL, "usage: open NAME JID PASSWORD_FILE key=value...");
        return;
    }
    xpb_session_config c;
    xpb_session_config_init(&c);
    c.jid = jid;
    const char *ca_file = d->ca_file;
    char msg[512];
    for (char *kv; (kv = next_field(&args)) != NULL;) {
        if (*kv == '\0') continue;
        char shown[128];
        snprintf(shown, sizeof shown, "%s", kv);
        if (open_option(&c, &ca_file, kv) != 0) {
            snprintf(msg, sizeof msg, "open: bad option %s", shown);
            print_error(name, XPB_EINVAL, msg);
            return;
        }
    }
    unsigned char pw[DRV_MAX_PASSWORD];
    size_t pwlen = 0;
    if (read_password(pwfile, pw, sizeof pw, &pwlen) != 0) {
        snprintf(msg, sizeof msg, "open: cannot read the password file %s", pwfile);
        print_error(name, XPB_EINVAL, msg);
        return;
    }
    c.password = pw;
    c.password_len = pwlen;
    char err[256] = "";
    int rc = xpb_loop_add_session(d->loop, name, &c, ca_file, NULL, err, sizeof err);
    memset(pw, 0, sizeof pw);
    if (rc != 0) {
        snprintf(msg, sizeof msg, "open: %s%s%s", xpb_strerror(rc), err[0] ? ": " : "", err);
        print_error(name, rc, msg);
    }
}

static xpb_loop_session *find_or_complain(driver *d, const char *name)
{
    xpb_loop_session *ls = name ? xpb_loop_find(d->loop, name) : NULL;
    if (!ls) print_error(name, XPB_EINVAL, "no such session");
    return ls;
}

static void report_send(xpb_loop_session *ls, int rc, uint64_t handle, const char *errmsg)
{
    const char *name = xpb_loop_session_name(ls);
    if (rc != 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s%s%s", xpb_strerror(rc), errmsg && *errmsg ? ": " : "",
                 errmsg ? errmsg : "");
        print_error(name, rc, msg);
        return;
    }
    xpb_buf b;
    json_begin(&b, "queued", name);
    json_num(&b, "handle", handle);
    json_field(&b, "id", xpb_session_last_id(xpb_loop_session_get(ls)));
    json_end(&b);
}

static int message_type(const char *t, Xpb__V1__StanzaType *out)
{
    if (!strcmp(t, "chat")) *out = XPB__V1__STANZA_TYPE__TYPE_CHAT;
    else if (!strcmp(t, "normal")) *out = XPB__V1__STANZA_TYPE__TYPE_NORMAL;
    else if (!strcmp(t, "groupchat")) *out = XPB__V1__STANZA_TYPE__TYPE_GROUPCHAT;
    else if (!strcmp(t, "headline")) *out = XPB__V1__STANZA_TYPE__TYPE_HEADLINE;
    else return XPB_EINVAL;
    return 0;
}

static void cmd_send(driver *d, char *args)
{
    char *name = next_field(&args), *to = next_field(&args), *type = next_field(&args);
    char *id = next_field(&args);
    xpb_loop_session *ls = find_or_complain(d, name);
    if (!ls) return;
    Xpb__V1__Stanza st = XPB__V1__STANZA__INIT;
    Xpb__V1__Text body = XPB__V1__TEXT__INIT;
    Xpb__V1__Text *bodies[1] = {&body};
    if (!to || !id || !type || message_type(type, &st.type) != 0) {
        print_error(name, XPB_EINVAL, "usage: send NAME TO chat|normal|groupchat ID BODY...");
        return;
    }
    st.has_kind = st.has_type = 1;
    st.kind = XPB__V1__KIND__KIND_MESSAGE;
    st.to = to;
    st.id = strcmp(id, "-") == 0 ? NULL : id;
    body.text = args ? args : "";
    st.n_body = 1;
    st.body = bodies;
    uint64_t handle = 0;
    int rc = xpb_session_send(xpb_loop_session_get(ls), &st, &handle);
    report_send(ls, rc, handle, NULL);
}

typedef struct sendxml_ctx {
    xpb_loop_session *ls;
    xpb_arena *arena;
    int done, rc;
    uint64_t handle;
} sendxml_ctx;

static int sendxml_stanza(void *ud, const xpb_node *el)
{
    sendxml_ctx *c = ud;
    xpb_stanza *st = NULL;
    if (c->done++) return 1; /* one stanza per command */
    c->rc = xpb_stanza_from_xml(c->arena, el, &st);
    if (c->rc == 0) c->rc = xpb_session_send(xpb_loop_session_get(c->ls), st, &c->handle);
    return 0;
}

static void cmd_sendxml(driver *d, char *args)
{
    char *name = next_field(&args);
    xpb_loop_session *ls = find_or_complain(d, name);
    if (!ls) return;
    sendxml_ctx c = {.ls = ls, .arena = xpb_arena_new(0)};
    xpb_reader_callbacks cb = {.stanza = sendxml_stanza};
    xpb_reader *r = NULL;
    int rc = c.arena ? xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, &c) : XPB_ENOMEM;
    if (rc == 0) rc = xpb_reader_feed(r, args, strlen(args));
    if (rc == 0 && !c.done) rc = XPB_EXML;
    if (rc == 0) rc = c.rc;
    report_send(ls, rc, c.handle, r && rc == XPB_EXML ? xpb_reader_error(r) : NULL);
    xpb_reader_free(r);
    xpb_arena_free(c.arena);
}

static void cmd_stats(driver *d, char *args)
{
    char *name = next_field(&args);
    xpb_loop_session *ls = find_or_complain(d, name);
    if (!ls) return;
    xpb_session_stats s;
    xpb_session_get_stats(xpb_loop_session_get(ls), &s);
    xpb_buf b;
    json_begin(&b, "stats", name);
    json_field(&b, "state", xpb_session_state_name(xpb_session_get_state(xpb_loop_session_get(ls))));
    json_num(&b, "stanzas_in", s.stanzas_in);
    json_num(&b, "stanzas_out", s.stanzas_out);
    json_num(&b, "bytes_in", s.bytes_in);
    json_num(&b, "bytes_out", s.bytes_out);
    json_num(&b, "reconnects", s.reconnects);
    json_num(&b, "resumptions", s.resumptions);
    json_num(&b, "resume_failures", s.resume_failures);
    json_num(&b, "queued", s.queued);
    json_num(&b, "unacked", s.unacked);
    json_end(&b);
}

static void cmd_hook(driver *d, char *args, int cut)
{
    char *name = next_field(&args);
    xpb_loop_session *ls = find_or_complain(d, name);
    if (!ls) return;
    int rc = cut ? xpb_loop_session_cut(ls) : xpb_loop_session_freeze(ls);
    if (rc != 0) print_error(name, rc, cut ? "cut: no connection" : "freeze: no connection");
}

static int all_stopped(driver *d)
{
    for (xpb_loop_session *ls = xpb_loop_first(d->loop); ls; ls = xpb_loop_next(ls))
        if (xpb_session_get_state(xpb_loop_session_get(ls)) != XPB_SS_STOPPED) return 0;
    return 1;
}

static void on_quit_tick(evutil_socket_t fd, short what, void *arg)
{
    driver *d = arg;
    (void)fd, (void)what;
    static unsigned waited;
    waited += 50;
    if (all_stopped(d) || waited >= DRV_QUIT_WAIT_MS) {
        xpb_loop_stop(d->loop);
        return;
    }
    struct timeval tv = {0, 50000};
    evtimer_add(d->quit_ev, &tv);
}

static void cmd_quit(driver *d)
{
    if (d->quitting) return;
    d->quitting = 1;
    for (xpb_loop_session *ls = xpb_loop_first(d->loop); ls; ls = xpb_loop_next(ls))
        if (xpb_session_get_state(xpb_loop_session_get(ls)) != XPB_SS_STOPPED)
            xpb_session_close(xpb_loop_session_get(ls));
    if (d->stdin_ev) event_del(d->stdin_ev);
    struct timeval tv = {0, 0};
    evtimer_add(d->quit_ev, &tv);
}

static void run_command(driver *d, char *line)
{
    char *args = line;
    char *cmd = next_field(&args);
    if (!cmd || !*cmd) return;
    if (!strcmp(cmd, "open")) cmd_open(d, args);
    else if (!strcmp(cmd, "send")) cmd_send(d, args);
    else if (!strcmp(cmd, "sendxml")) cmd_sendxml(d, args);
    else if (!strcmp(cmd, "stats")) cmd_stats(d, args);
    else if (!strcmp(cmd, "cut")) cmd_hook(d, args, 1);
    else if (!strcmp(cmd, "freeze")) cmd_hook(d, args, 0);
    else if (!strcmp(cmd, "quit")) cmd_quit(d);
    else if (!strcmp(cmd, "close")) {
        xpb_loop_session *ls = find_or_complain(d, next_field(&args));
        if (ls) xpb_session_close(xpb_loop_session_get(ls));
    } else {
        print_error(NULL, XPB_EINVAL, "unknown command");
    }
}

/* ---- stdin, line-buffered ------------------------------------------------------ */

static void run_lines(driver *d)
{
    size_t start = 0;
    for (size_t i = 0; i < d->line_len; i++) {
        if (d->line[i] != '\n') continue;
        d->line[i] = '\0';
        if (i > start && d->line[i - 1] == '\r') d->line[i - 1] = '\0';
        if (!d->quitting) run_command(d, d->line + start);
        start = i + 1;
    }
    memmove(d->line, d->line + start, d->line_len - start);
    d->line_len -= start;
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    driver *d = arg;
    (void)what;
    if (d->line_len >= DRV_MAX_LINE) {
        print_error(NULL, XPB_ETOOBIG, "command line longer than 1 MiB: dropped");
        d->line_len = 0;
    }
    ssize_t n = read(fd, d->line + d->line_len, DRV_MAX_LINE - d->line_len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
        cmd_quit(d); /* EOF on stdin: same as quit */
        return;
    }
    d->line_len += (size_t)n;
    run_lines(d);
}

static int parse_args(driver *d, int argc, char **argv)
{
    d->log_level = XPB_LOG_INFO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ca-file") && i + 1 < argc) {
            d->ca_file = argv[++i];
        } else if (!strcmp(argv[i], "--dns-server") && i + 1 < argc) {
            d->dns_servers = argv[++i]; /* "127.0.0.1:PORT[,...]": xpb_loop_config.dns_servers */
        } else if (!strcmp(argv[i], "--log-level") && i + 1 < argc) {
            const char *v = argv[++i];
            d->log_level = !strcmp(v, "debug") ? XPB_LOG_DEBUG
                           : !strcmp(v, "warn") ? XPB_LOG_WARN
                                                : XPB_LOG_INFO;
        } else {
            fprintf(stderr,
                    "usage: %s [--ca-file FILE] [--dns-server IP:PORT[,...]]"
                    " [--log-level debug|info|warn]\n",
                    argv[0]);
            return 2;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    driver d = {0};
    int rc = parse_args(&d, argc, argv);
    if (rc != 0) return rc;
    /* A write to a socket the server has closed must be an error, not a
     * process kill (the loop's TLS writes go through send(2)). */
    signal(SIGPIPE, SIG_IGN);
    d.line = malloc(DRV_MAX_LINE + 1);
    xpb_loop_config cfg = {.on_event = on_event, .on_log = on_log, .ud = &d, .ca_file = NULL,
                           .dns_servers = d.dns_servers};
    rc = d.line ? xpb_loop_new(&d.loop, &cfg) : XPB_ENOMEM;
    if (rc != 0) {
        fprintf(stderr, "xpb_session_driver: cannot create the loop: %s%s%s\n", xpb_strerror(rc),
                d.dns_servers ? "; --dns-server " : "", d.dns_servers ? d.dns_servers : "");
        return 1;
    }
    struct event_base *base = xpb_loop_base(d.loop);
    evutil_make_socket_nonblocking(0);
    d.stdin_ev = event_new(base, 0, EV_READ | EV_PERSIST, on_stdin, &d);
    d.quit_ev = evtimer_new(base, on_quit_tick, &d);
    if (!d.stdin_ev || !d.quit_ev || event_add(d.stdin_ev, NULL) != 0) {
        fprintf(stderr, "xpb_session_driver: cannot watch stdin\n");
        return 1;
    }
    xpb_loop_run(d.loop);
    event_free(d.stdin_ev);
    event_free(d.quit_ev);
    xpb_loop_free(d.loop);
    free(d.line);
    return 0;
}
