/* The small HTTP/1.x server under /metrics (see xpb_httpd.h): any local user can
 * connect, so nothing here may grow or spin without a bound. One request per
 * connection, "Connection: close"; accept() errors pause the listener and are
 * logged through xpb_log at most once per XPB_HTTPD_LOG_INTERVAL_S. */
#define _DEFAULT_SOURCE
#include "xpb_httpd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "xpb_error.h"
#include "xpb_log.h"
#include "xpb_loop.h"

typedef struct conn {
    struct xpb_httpd *h;
    struct bufferevent *bev;
    struct event *deadline; /* idle_timeout_s for the request, then again for the reply */
    struct conn *prev, *next;
} conn;

struct xpb_httpd {
    struct event_base *base;
    struct evconnlistener *lev;
    struct event *resume; /* re-enables the listener after an accept() error */
    int reserve_fd;       /* given up to accept-and-close one client at EMFILE */
    xpb_httpd_opts o;
    xpb_httpd_handler handler;
    void *ud;
    conn *conns;
    xpb_httpd_stats st;
    time_t last_log;
    uint64_t errors_logged;
};

/* ---- connections ------------------------------------------------------------------ */

static void conn_free(conn *c)
{
    xpb_httpd *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->deadline) event_free(c->deadline);
    if (c->bev) bufferevent_free(c->bev); /* closes the socket (BEV_OPT_CLOSE_ON_FREE) */
    free(c);
    h->st.open--;
}

static void arm_deadline(conn *c)
{
    struct timeval tv = {(time_t)c->h->o.idle_timeout_s, 0};
    evtimer_add(c->deadline, &tv);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    (void)fd, (void)what;
    c->h->st.timed_out++;
    conn_free(c);
}

static void on_written(struct bufferevent *bev, void *arg)
{
    conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) conn_free(c);
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) conn_free(arg);
}

static void free_body(const void *data, size_t len, void *extra)
{
    (void)len, (void)extra;
    free((void *)data);
}

/* Status line, headers, body; then only writing is left (the deadline again).
 * The body goes to the socket's buffer as it is, not copied: r->body is
 * libevent's afterwards (a /metrics page at 10,000 accounts is 1 MB). */
static void send_reply(conn *c, xpb_httpd_reply *r, int head_only, const char *extra)
{
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     r->status, r->reason, r->ctype, r->body.len, extra ? extra : "");
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (n < 0 || (size_t)n >= sizeof hdr || evbuffer_add(out, hdr, (size_t)n) != 0 ||
        (!head_only && r->body.len &&
         evbuffer_add_reference(out, r->body.data, r->body.len, free_body, NULL) != 0)) {
        conn_free(c);
        return;
    }
    if (!head_only && r->body.len) xpb_buf_init(&r->body, 0); /* handed over */
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setcb(c->bev, NULL, on_written, on_conn_event, c);
    bufferevent_enable(c->bev, EV_WRITE);
    arm_deadline(c);
}

static void send_error(conn *c, int status, const char *reason, const char *extra)
{
    xpb_httpd_reply r = {.status = status, .reason = reason, .ctype = "text/plain; charset=utf-8"};
    xpb_buf_init(&r.body, 0);
    if (xpb_buf_append_str(&r.body, reason) == 0) xpb_buf_append_str(&r.body, "\n");
    send_reply(c, &r, 0, extra);
    xpb_buf_free(&r.body);
}

/* ---- the request head --------------------------------------------------------------- */

/* Bytes up to and including the blank line ending the head, or 0: need more. */
static size_t head_len(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n') continue;
        if (i + 1 < n && p[i + 1] == '\n') return i + 2;
        if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') return i + 3;
    }
    return 0;
}

typedef struct request_line {
    char method[8];
    char path[128]; /* without the query; "" when longer (answered 404) */
} request_line;

/* "METHOD SP TARGET SP HTTP/1.x" (RFC 9112 §3). XPB_EINVAL when not that. */
static int parse_request_line(const char *p, size_t n, request_line *rl)
{
    size_t end = 0;
    while (end < n && p[end] != '\r' && p[end] != '\n')
        end++;
    const char *sp1 = memchr(p, ' ', end);
    if (!sp1 || sp1 == p || (size_t)(sp1 - p) >= sizeof rl->method) return XPB_EINVAL;
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', end - (size_t)(t - p));
    if (!sp2 || sp2 == t) return XPB_EINVAL;
    size_t vlen = end - (size_t)(sp2 + 1 - p);
    if (vlen != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0) return XPB_EINVAL;
    memcpy(rl->method, p, (size_t)(sp1 - p));
    rl->method[sp1 - p] = '\0';
    size_t plen = 0;
    while (t + plen < sp2 && t[plen] != '?')
        plen++;
    if (plen >= sizeof rl->path) plen = 0;
    memcpy(rl->path, t, plen);
    rl->path[plen] = '\0';
    return 0;
}

static void serve(conn *c, const request_line *rl)
{
    int head = strcmp(rl->method, "HEAD") == 0;
    if (!head && strcmp(rl->method, "GET") != 0) {
        send_error(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n");
        return;
    }
    xpb_httpd_reply r = {
        .status = 404, .reason = "Not Found", .ctype = "text/plain; charset=utf-8"};
    xpb_buf_init(&r.body, 0);
    c->h->handler(c->h->ud, rl->path, &r);
    send_reply(c, &r, head, NULL);
    xpb_buf_free(&r.body);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    size_t take = n < XPB_HTTPD_MAX_HEAD ? n : XPB_HTTPD_MAX_HEAD;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
    size_t hl = p ? head_len(p, take) : 0;
    if (hl == 0) {
        if (n >= XPB_HTTPD_MAX_HEAD) {
            c->h->st.bad_requests++;
            send_error(c, 431, "Request Header Fields Too Large", NULL);
        }
        return; /* need more (the deadline bounds the wait) */
    }
    request_line rl;
    if (parse_request_line(p, hl, &rl) != 0) {
        c->h->st.bad_requests++;
        send_error(c, 400, "Bad Request", NULL);
        return;
    }
    serve(c, &rl);
}

/* ---- the listener ------------------------------------------------------------------- */

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    xpb_httpd *h = arg;
    (void)lev, (void)sa, (void)salen;
    if (h->st.open >= h->o.max_connections) { /* metrics.max_connections */
        h->st.refused++;
        evutil_closesocket(fd);
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (c) c->bev = bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c && c->bev) c->deadline = evtimer_new(h->base, on_deadline, c);
    if (!c || !c->bev || !c->deadline) {
        if (c && c->deadline) event_free(c->deadline);
        if (c && c->bev)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        free(c);
        h->st.refused++;
        return;
    }
    c->h = h;
    c->next = h->conns;
    if (h->conns) h->conns->prev = c;
    h->conns = c;
    h->st.open++;
    h->st.accepted++;
    bufferevent_setcb(c->bev, on_read, NULL, on_conn_event, c);
    bufferevent_enable(c->bev, EV_READ);
    arm_deadline(c);
}

/* Out of descriptors the pending client can be neither served nor refused,
 * and the listener would report readable forever: give up the reserve
 * descriptor to accept and close one client, then take it back. */
static void shed_one(xpb_httpd *h)
{
    if (h->reserve_fd < 0) return;
    close(h->reserve_fd);
    int fd = accept(evconnlistener_get_fd(h->lev), NULL, NULL);
    if (fd >= 0) {
        close(fd);
        h->st.refused++;
    }
    h->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static const char *errno_name(int e)
{
    switch (e) {
    case EMFILE:
        return "EMFILE";
    case ENFILE:
        return "ENFILE";
    case ENOBUFS:
        return "ENOBUFS";
    case ENOMEM:
        return "ENOMEM";
    default:
        return "errno";
    }
}

static void log_accept_error(xpb_httpd *h, int e)
{
    time_t now = time(NULL);
    if (h->last_log != 0 && now - h->last_log < (time_t)XPB_HTTPD_LOG_INTERVAL_S) return;
    xpb_log(XPB_LOG_WARN,
            "metrics: accept() failed: %s (%s %d); not accepting for %u ms each time "
            "(%" PRIu64 " accept errors, %" PRIu64 " since the last report; at most one such "
            "line every %u s)",
            strerror(e), errno_name(e), e, XPB_HTTPD_ACCEPT_PAUSE_MS, h->st.accept_errors,
            h->st.accept_errors - h->errors_logged, XPB_HTTPD_LOG_INTERVAL_S);
    h->last_log = now;
    h->errors_logged = h->st.accept_errors;
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    xpb_httpd *h = arg;
    int e = EVUTIL_SOCKET_ERROR();
    h->st.accept_errors++;
    if (e == EMFILE || e == ENFILE) shed_one(h);
    evconnlistener_disable(lev);
    struct timeval tv = {0, (suseconds_t)XPB_HTTPD_ACCEPT_PAUSE_MS * 1000};
    evtimer_add(h->resume, &tv);
    log_accept_error(h, e);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    xpb_httpd *h = arg;
    (void)fd, (void)what;
    evconnlistener_enable(h->lev);
}

static int bind_listener(xpb_httpd *h, char *err, size_t errlen)
{
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)h->o.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(h->o.addr, port, &hints, &ai) != 0 || !ai) {
        snprintf(err, errlen, "metrics: %s is not an address here", h->o.addr);
        return XPB_EINVAL;
    }
    h->lev = evconnlistener_new_bind(
        h->base, on_accept, h, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        XPB_HTTPD_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!h->lev) {
        snprintf(err, errlen, "metrics: cannot listen on %s:%u (%s)", h->o.addr,
                 (unsigned)h->o.port, strerror(errno));
        return XPB_EINVAL;
    }
    evconnlistener_set_error_cb(h->lev, on_accept_error);
    return 0;
}

int xpb_httpd_new(xpb_httpd **out, xpb_loop *loop, const xpb_httpd_opts *o,
                  xpb_httpd_handler handler, void *ud, char *err, size_t errlen)
{
    if (!o->max_connections || !o->idle_timeout_s) {
        snprintf(err, errlen, "metrics: max_connections and idle_timeout_s must be > 0");
        return XPB_EINVAL;
    }
    xpb_httpd *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return XPB_ENOMEM;
    }
    h->base = xpb_loop_base(loop);
    h->o = *o;
    h->handler = handler;
    h->ud = ud;
    h->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    h->resume = evtimer_new(h->base, on_resume, h);
    int rc = h->resume ? bind_listener(h, err, errlen) : XPB_ENOMEM;
    if (rc) {
        if (rc == XPB_ENOMEM) snprintf(err, errlen, "out of memory");
        h->o.addr = NULL;
        xpb_httpd_free(h);
        return rc;
    }
    h->o.addr = NULL; /* borrowed: not kept past this call */
    *out = h;
    return 0;
}

void xpb_httpd_free(xpb_httpd *h)
{
    if (!h) return;
    while (h->conns)
        conn_free(h->conns);
    if (h->lev) evconnlistener_free(h->lev);
    if (h->resume) event_free(h->resume);
    if (h->reserve_fd >= 0) close(h->reserve_fd);
    free(h);
}

void xpb_httpd_get_stats(const xpb_httpd *h, xpb_httpd_stats *out)
{
    *out = h->st;
}
