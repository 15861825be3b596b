/* /metrics (Prometheus text exposition format 0.0.4) and /healthz over
 * libevent's HTTP server, on a loopback address unless allow_remote: the
 * numbers say which accounts exist, so they are not published by default. */
#define _DEFAULT_SOURCE
#include "daemon.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "xpb_error.h"

#define METRICS_MAX_ADDR 128

struct xpb_metrics {
    struct evhttp *http;
    xpb_daemon *d;
};

/* ---- the exposition text ---------------------------------------------------------- */

static int put(xpb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int put(xpb_buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) return XPB_EINVAL;
    return xpb_buf_append(b, line, (size_t)n);
}

static int head(xpb_buf *b, const char *name, const char *type, const char *help)
{
    return put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values: \ " and newline escaped (exposition format). */
static int label_value(xpb_buf *b, const char *v)
{
    int rc = 0;
    for (; *v && !rc; v++) {
        if (*v == '\\') rc = xpb_buf_append_str(b, "\\\\");
        else if (*v == '"') rc = xpb_buf_append_str(b, "\\\"");
        else if (*v == '\n') rc = xpb_buf_append_str(b, "\\n");
        else rc = xpb_buf_append(b, v, 1);
    }
    return rc;
}

static int render_sessions(xpb_daemon *d, xpb_buf *b, const xpb_daemon_counters *c)
{
    int rc = head(b, "xpb_sessions", "gauge", "Bridged sessions by state.");
    for (int s = 0; s < XPB_MST_COUNT && !rc; s++)
        rc = put(b, "xpb_sessions{state=\"%s\"} %u\n", xpb_metrics_state_name(s), c->sessions[s]);
    static const char *const names[2] = {"xpb_queue_depth", "xpb_unacked"};
    static const char *const helps[2] = {
        "Stanzas waiting to be sent (offline queue, bounded by queue_max).",
        "Stanzas sent but not yet acknowledged by the server (XEP-0198)."};
    for (int m = 0; m < 2 && !rc; m++) {
        rc = head(b, names[m], "gauge", helps[m]);
        const char *name;
        unsigned q, u;
        for (size_t i = 0; !rc && xpb_daemon_account_at(d, i, &name, &q, &u); i++) {
            rc = put(b, "%s{account=\"", names[m]);
            if (!rc) rc = label_value(b, name);
            if (!rc) rc = put(b, "\"} %u\n", m == 0 ? q : u);
        }
    }
    return rc;
}

static int render_traffic(xpb_buf *b, const xpb_daemon_counters *c)
{
    static const char *const dirs[2] = {"in", "out"};
    static const char *const kinds[XPB_KIND_COUNT] = {"message", "presence", "iq", "other"};
    int rc = head(b, "xpb_stanzas_total", "counter", "Stanzas received (in) and sent (out).");
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < XPB_KIND_COUNT && !rc; k++)
            rc = put(b, "xpb_stanzas_total{direction=\"%s\",kind=\"%s\"} %" PRIu64 "\n", dirs[d],
                     kinds[k], c->stanzas[d][k]);
    if (!rc)
        rc = head(b, "xpb_bytes_total", "counter",
                  "Stanza bytes as XML and as records, received (in) and sent (out).");
    for (int d = 0; d < 2 && !rc; d++) {
        rc = put(b, "xpb_bytes_total{direction=\"%s\",format=\"xml\"} %" PRIu64 "\n", dirs[d],
                 c->bytes_xml[d]);
        if (!rc)
            rc = put(b, "xpb_bytes_total{direction=\"%s\",format=\"record\"} %" PRIu64 "\n",
                     dirs[d], c->bytes_record[d]);
    }
    if (!rc) rc = head(b, "xpb_reconnects_total", "counter", "Reconnections of all sessions.");
    if (!rc) rc = put(b, "xpb_reconnects_total %" PRIu64 "\n", c->reconnects);
    if (!rc)
        rc = head(b, "xpb_resumptions_total", "counter",
                  "Streams resumed with XEP-0198 after a reconnection.");
    if (!rc) rc = put(b, "xpb_resumptions_total %" PRIu64 "\n", c->resumptions);
    return rc;
}

static int counter(xpb_buf *b, const char *name, const char *help, uint64_t v)
{
    int rc = head(b, name, "counter", help);
    return rc ? rc : put(b, "%s %" PRIu64 "\n", name, v);
}

static int render_bus(xpb_buf *b, const xpb_bus_stats *s)
{
    int rc = counter(b, "xpb_bus_events_total", "Events published on the bus.", s->events);
    if (!rc) rc = counter(b, "xpb_bus_batches_total", "NNG messages (event batches) sent.", s->batches);
    if (!rc)
        rc = counter(b, "xpb_bus_publish_errors_total", "Event batches the PUB socket refused.",
                     s->publish_errors);
    if (!rc)
        rc = counter(b, "xpb_bus_events_dropped_total", "Events in batches the PUB socket refused.",
                     s->events_dropped);
    if (!rc) rc = counter(b, "xpb_bus_requests_total", "Requests received.", s->requests);
    if (!rc)
        rc = counter(b, "xpb_bus_malformed_total", "Requests answered with ERR_BAD_REQUEST "
                                                   "because they did not decode or validate.",
                     s->malformed);
    if (!rc)
        rc = counter(b, "xpb_bus_dedupe_hits_total",
                     "Resent request ids answered from the response cache.", s->dedupe_hits);
    if (!rc)
        rc = counter(b, "xpb_bus_busy_total", "Requests refused with ERR_BUSY.", s->busy);
    if (!rc) rc = head(b, "xpb_bus_inflight", "gauge", "Requests being served.");
    if (!rc) rc = put(b, "xpb_bus_inflight %u\n", s->inflight);
    if (!rc)
        rc = counter(b, "xpb_bus_bad_strings_total",
                     "Requests refused because a string field held a NUL, invalid UTF-8, a "
                     "character XML does not allow, or more than max_stanza_bytes.",
                     s->bad_strings);
    if (!rc)
        rc = counter(b, "xpb_bus_busy_control_total",
                     "status, list and close requests refused with ERR_BUSY (control slots full).",
                     s->busy_control);
    if (!rc)
        rc = head(b, "xpb_bus_inflight_control", "gauge",
                  "status, list and close requests being served (their own slots).");
    if (!rc) rc = put(b, "xpb_bus_inflight_control %u\n", s->inflight_control);
    return rc;
}

int xpb_metrics_render(xpb_daemon *d, xpb_buf *out)
{
    xpb_daemon_counters c;
    xpb_bus_stats bs;
    xpb_daemon_get_counters(d, &c);
    xpb_daemon_get_bus_stats(d, &bs);
    int rc = render_sessions(d, out, &c);
    if (!rc) rc = render_traffic(out, &c);
    if (!rc) rc = render_bus(out, &bs);
    if (!rc)
        rc = counter(out, "xpb_bus_open_forbidden_total",
                     "open requests refused with ERR_FORBIDDEN (bus.allow_inline_credentials, "
                     "bus.allow_open_overrides).",
                     c.open_forbidden);
    return rc;
}

int xpb_metrics_health(xpb_daemon *d, char *why, size_t whylen)
{
    xpb_daemon_counters c;
    xpb_daemon_get_counters(d, &c);
    if (!c.bus_up) {
        snprintf(why, whylen, "the bus is down");
        return 0;
    }
    if (c.n_accounts > 0 && c.sessions[XPB_MST_ONLINE] == 0) {
        snprintf(why, whylen, "no session online (%u configured)", c.n_accounts);
        return 0;
    }
    snprintf(why, whylen, "ok");
    return 1;
}

/* ---- HTTP ---------------------------------------------------------------------------- */

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *ctype, const char *body, size_t len)
{
    struct evbuffer *eb = evbuffer_new();
    if (!eb) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(eb, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, code, reason, eb);
    evbuffer_free(eb);
}

static void on_http(struct evhttp_request *req, void *arg)
{
    struct xpb_metrics *m = arg;
    const char *uri = evhttp_request_get_uri(req);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_send_error(req, 405, "GET only");
        return;
    }
    size_t plen = strcspn(uri, "?");
    if (plen == 8 && strncmp(uri, "/metrics", 8) == 0) {
        xpb_buf b;
        xpb_buf_init(&b, 0);
        if (xpb_metrics_render(m->d, &b) == 0)
            reply_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        else
            evhttp_send_error(req, 500, "metrics rendering failed");
        xpb_buf_free(&b);
    } else if (plen == 8 && strncmp(uri, "/healthz", 8) == 0) {
        char why[256], body[300];
        int ok = xpb_metrics_health(m->d, why, sizeof why);
        int n = snprintf(body, sizeof body, "%s\n", why);
        reply_text(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable",
                   "text/plain; charset=utf-8", body, (size_t)n);
    } else {
        evhttp_send_error(req, 404, "try /metrics or /healthz");
    }
}

/* "ADDR:PORT" or "[v6]:PORT" -> addr, port. */
static int split_listen(const char *s, char *addr, size_t alen, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon) return XPB_EINVAL;
    const char *a = s;
    size_t n = (size_t)(colon - s);
    if (n >= 2 && a[0] == '[' && a[n - 1] == ']') {
        a++;
        n -= 2;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (n == 0 || n >= alen || *end || p <= 0 || p > 65535) return XPB_EINVAL;
    memcpy(addr, a, n);
    addr[n] = '\0';
    *port = (uint16_t)p;
    return 0;
}

static int is_loopback(const char *addr)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, addr, &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
    return strcmp(addr, "localhost") == 0;
}

static int check_listen(const char *listen, int allow_remote, char *addr, size_t alen,
                        uint16_t *port, char *err, size_t errlen)
{
    if (split_listen(listen, addr, alen, port) != 0) {
        snprintf(err, errlen, "metrics listen \"%s\": expected ADDR:PORT", listen);
        return XPB_EINVAL;
    }
    if (!allow_remote && !is_loopback(addr)) {
        snprintf(err, errlen,
                 "metrics listen \"%s\" is not a loopback address (set metrics.allow_remote "
                 "= true to publish metrics beyond this host)",
                 listen);
        return XPB_EINVAL;
    }
    return 0;
}

int xpb_metrics_check_listen(const char *listen, int allow_remote, char *err, size_t errlen)
{
    char addr[METRICS_MAX_ADDR];
    uint16_t port;
    if (!listen || !listen[0] || strcmp(listen, "0") == 0) return 0;
    return check_listen(listen, allow_remote, addr, sizeof addr, &port, err, errlen);
}

int xpb_metrics_new(xpb_metrics **out, struct event_base *base, const char *listen,
                    int allow_remote, xpb_daemon *d, char *err, size_t errlen)
{
    char addr[METRICS_MAX_ADDR];
    uint16_t port;
    int rc = check_listen(listen, allow_remote, addr, sizeof addr, &port, err, errlen);
    if (rc) return rc;
    struct xpb_metrics *m = calloc(1, sizeof *m);
    if (!m || !(m->http = evhttp_new(base))) {
        free(m);
        snprintf(err, errlen, "out of memory");
        return XPB_ENOMEM;
    }
    m->d = d;
    evhttp_set_gencb(m->http, on_http, m);
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(m->http, 8192);
    evhttp_set_max_body_size(m->http, 0);
    evhttp_set_timeout(m->http, 10);
    if (!evhttp_bind_socket_with_handle(m->http, addr, port)) {
        snprintf(err, errlen, "metrics: cannot listen on %s (in use, or not an address here)",
                 listen);
        evhttp_free(m->http);
        free(m);
        return XPB_EINVAL;
    }
    *out = m;
    return 0;
}

void xpb_metrics_free(xpb_metrics *m)
{
    if (!m) return;
    evhttp_free(m->http);
    free(m);
}
