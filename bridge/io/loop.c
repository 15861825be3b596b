/* One libevent loop owning every session: implements xpb_session_ops (connect,
 * send, STARTTLS, timers, randomness) on top of the transports, and routes
 * transport events back into the pure state machine. Connection plan: host
 * override or see-other-host, else SRV (RFC 6120 §3.2, XEP-0368) via c-ares,
 * each target's addresses tried in order. */
#include "xpb_loop.h"

#include "connect_gate.h"
#include "transport.h"
#include "xpb_error.h"
#include "xpb_strmap.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <event2/util.h>
#ifdef __GLIBC__
#include <malloc.h> /* malloc_trim */
#endif
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XPB_LOOP_MAX_ADDRS 8u
#define XPB_LOOP_DOMAIN_MAX 256u /* bytes of a target domain, NUL included */

typedef struct tls_entry {
    struct tls_entry *next;
    char *ca_file; /* "" = system store */
    xpb_tls_ctx *ctx;
} tls_entry;

/* Where to connect: SRV targets, then each one's addresses. About 6 KiB,
 * so it lives on the heap while connecting and is given back once online. */
typedef struct conn_plan {
    char ws_url[1024];
    xpb_dns_target targets[XPB_DNS_MAX_TARGETS];
    size_t n_targets, ti;
    struct sockaddr_storage addrs[XPB_LOOP_MAX_ADDRS];
    size_t n_addrs, ai;
} conn_plan;

typedef struct timer_arg {
    xpb_loop_session *ls;
    xpb_session_timer t;
} timer_arg;

struct xpb_loop_session {
    xpb_loop *loop;
    xpb_loop_session *next, *prev;
    char *name;
    void *ud; /* the owner's (xpb_loop_session_set_ud) */
    xpb_session *s;
    xpb_tls_ctx *tls;
    struct event *timers[XPB_TIMER_COUNT];
    timer_arg targs[XPB_TIMER_COUNT];
    struct event *fail_ev; /* reports a connect failure from the loop, not inside a call */
    char *fail_reason;     /* the last connect failure (set_fail), NULL when none */
    xpb_link *link;
    int connected;
    xpb_dns_query *dnsq;
    xpb_gate_node gate;  /* its place in the connect gate's queue (on_gate_go: offsetof) */
    int plan_srv;        /* the plan starts with an SRV lookup (else a fixed target) */
    unsigned connect_ms; /* the session's last XPB_TIMER_CONNECT, restarted at the gate */
    char *domain;        /* the target's domain, for TLS verification and logs */
    xpb_transport_kind kind;
    conn_plan *plan; /* only while connecting: freed once the session is online */
    uint32_t prng;   /* fallback only */
    xpb_loop_session *busy_next; /* on the loop's busy list (see on_park) */
    unsigned char busy;          /* 0: not listed, 1: read since the last sweep, 2: quiet since */
};

struct xpb_loop {
    struct event_base *base;
    int own_base;
    xpb_loop_config cfg;
    char *ca_file;
    char *dns_servers; /* NULL: resolv.conf */
    xpb_dns *dns;
    tls_entry *tls;
    xpb_loop_session *sessions;
    xpb_strmap by_name; /* name -> session */
    xpb_gate *gate;     /* new connections per second (cfg.connect_rate) */
    struct event *trim_ev; /* XPB_LOOP_TRIM_QUIET_MS after the last session came online */
    xpb_loop_session *busy; /* sessions that read lately: the only ones a sweep visits */
    struct event *park_ev;  /* the sweep, every XPB_LOOP_PARK_MS while the list is not empty */
};

static void try_addr(xpb_loop_session *ls);
static void try_target(xpb_loop_session *ls);

/* ---- logging ----------------------------------------------------------------- */

static void logf_(xpb_loop_session *ls, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(xpb_loop_session *ls, int level, const char *fmt, ...)
{
    if (!ls->loop->cfg.on_log) return;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ls->loop->cfg.on_log(ls->loop->cfg.ud, level, ls->name, msg);
}

/* ---- transport events -> session ------------------------------------------- */

static void drop_link(xpb_loop_session *ls)
{
    xpb_gate_leave(ls->loop->gate, &ls->gate);
    if (ls->link) ls->link->ops->free(ls->link);
    ls->link = NULL;
    ls->connected = 0;
    if (ls->dnsq) xpb_dns_cancel(ls->dnsq);
    ls->dnsq = NULL;
}

static void set_fail(xpb_loop_session *ls, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Sized to its text: an online session keeps none (the reason may be the
 * old text itself, so it is formatted before the old one goes). */
static void set_fail(xpb_loop_session *ls, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(ls->fail_reason);
    ls->fail_reason = strdup(buf);
}

static void on_fail_ev(evutil_socket_t fd, short what, void *arg)
{
    xpb_loop_session *ls = arg;
    (void)fd, (void)what;
    char *reason = ls->fail_reason; /* ours: the session may connect again at once */
    ls->fail_reason = NULL;
    logf_(ls, XPB_LOG_INFO, "disconnected: %s", reason ? reason : "");
    xpb_session_on_disconnected(ls->s, reason ? reason : "");
    free(reason);
}

/* Failures found while the session is calling us are reported from the loop. */
static void fail_later(xpb_loop_session *ls, const char *reason)
{
    static const struct timeval now = {0, 0};
    drop_link(ls);
    set_fail(ls, "%s", reason); /* reason is often fail_reason itself (try_target) */
    evtimer_add(ls->fail_ev, &now);
}

static void on_link_connected(void *ud, int tls)
{
    xpb_loop_session *ls = ud;
    ls->connected = 1;
    logf_(ls, XPB_LOG_DEBUG, "transport up (%s)", tls ? "TLS" : "plain");
    xpb_session_on_connected(ls->s, tls);
}

static void on_link_tls(void *ud, const char *cb_type, const unsigned char *cb, size_t len)
{
    xpb_loop_session *ls = ud;
    logf_(ls, XPB_LOG_DEBUG, "TLS established for %s (channel binding %s)", ls->domain,
          cb_type ? cb_type : "none");
    xpb_session_on_tls_ready(ls->s, cb_type, cb, len);
}

static void arm_park(xpb_loop *l)
{
    static const struct timeval period = {XPB_LOOP_PARK_MS / 1000u,
                                          (XPB_LOOP_PARK_MS % 1000u) * 1000u};
    evtimer_add(l->park_ev, &period);
}

static void on_link_bytes(void *ud, const char *data, size_t len)
{
    xpb_loop_session *ls = ud;
    if (!ls->busy) {
        ls->busy_next = ls->loop->busy;
        if (!ls->loop->busy) arm_park(ls->loop);
        ls->loop->busy = ls;
    }
    ls->busy = 1;
    xpb_session_on_bytes(ls->s, data, len);
}

/* A session that read nothing for a whole sweep period is told it is idle
 * (it parks its XML parser) and leaves the list: a sweep costs what the
 * recently busy sessions number, never what all of them do. */
static void on_park(evutil_socket_t fd, short what, void *arg)
{
    xpb_loop *l = arg;
    (void)fd, (void)what;
    xpb_loop_session **pp = &l->busy;
    size_t parked = 0;
    while (*pp) {
        xpb_loop_session *ls = *pp;
        if (ls->busy == 1) {
            ls->busy = 2;
            pp = &ls->busy_next;
            continue;
        }
        *pp = ls->busy_next;
        ls->busy_next = NULL;
        ls->busy = 0;
        xpb_session_idle(ls->s);
        parked++;
    }
    /* After a wave (bring-up, a reconnect storm) their parsers' pages go
     * back to the system too. Not for a trickle: malloc_trim walks the whole
     * heap (5-20 ms at 10,000 sessions) and the pages are soon reused. */
    if (parked >= XPB_LOOP_PARK_TRIM_MIN) {
        static const struct timeval quiet = {0, XPB_LOOP_TRIM_QUIET_MS * 1000};
        evtimer_add(l->trim_ev, &quiet);
    }
    if (l->busy) arm_park(l);
}

static void busy_unlink(xpb_loop_session *ls)
{
    if (!ls->busy) return;
    for (xpb_loop_session **pp = &ls->loop->busy; *pp; pp = &(*pp)->busy_next)
        if (*pp == ls) {
            *pp = ls->busy_next;
            break;
        }
    ls->busy = 0;
}

static void on_link_closed(void *ud, int err, const char *reason)
{
    xpb_loop_session *ls = ud;
    drop_link(ls);
    if (err == XPB_ECONNECT && ls->plan) {
        set_fail(ls, "%s", reason);
        /* Next address, then next SRV target, before giving up (RFC 2782). */
        logf_(ls, XPB_LOG_INFO, "%s", reason);
        ls->plan->ai++;
        try_addr(ls);
        return;
    }
    if (err == XPB_ETLS) {
        logf_(ls, XPB_LOG_WARN, "%s", reason);
        xpb_session_on_tls_failed(ls->s, reason);
        return;
    }
    logf_(ls, XPB_LOG_INFO, "disconnected: %s", reason);
    xpb_session_on_disconnected(ls->s, reason);
}

static const xpb_link_cb link_cb = {
    .connected = on_link_connected,
    .tls_ready = on_link_tls,
    .bytes = on_link_bytes,
    .closed = on_link_closed,
};

/* ---- the connection plan ----------------------------------------------------- */

static void try_addr(xpb_loop_session *ls)
{
    for (; ls->plan->ai < ls->plan->n_addrs; ls->plan->ai++) {
        const struct sockaddr *sa = (const struct sockaddr *)&ls->plan->addrs[ls->plan->ai];
        xpb_stream_params p = {
            .base = ls->loop->base,
            .tls = ls->tls,
            .addr = sa,
            .addr_len = sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                                 : sizeof(struct sockaddr_in6),
            .verify_domain = ls->domain,
            .direct_tls = ls->plan->targets[ls->plan->ti].direct_tls,
            .alpn = "xmpp-client", /* XEP-0368 §3 */
        };
        int rc = ls->kind == XPB_TRANSPORT_WEBSOCKET
                     ? xpb_ws_link_new(&ls->link, &p, ls->plan->ws_url, &link_cb, ls)
                     : xpb_stream_new(&ls->link, &p, &link_cb, ls);
        if (rc == 0) return;
        ls->link = NULL;
        set_fail(ls, "connect to %s:%u: %s", ls->plan->targets[ls->plan->ti].host,
                 (unsigned)ls->plan->targets[ls->plan->ti].port, xpb_strerror(rc));
    }
    ls->plan->ti++;
    try_target(ls);
}

static void on_addrs(void *ud, int err, const struct sockaddr_storage *addrs, size_t n)
{
    xpb_loop_session *ls = ud;
    ls->dnsq = NULL;
    if (err != 0 || n == 0) {
        set_fail(ls, "cannot resolve %s", ls->plan->targets[ls->plan->ti].host);
        ls->plan->ti++;
        try_target(ls);
        return;
    }
    ls->plan->n_addrs = n < XPB_LOOP_MAX_ADDRS ? n : XPB_LOOP_MAX_ADDRS;
    memcpy(ls->plan->addrs, addrs, ls->plan->n_addrs * sizeof addrs[0]);
    ls->plan->ai = 0;
    try_addr(ls);
}

/* An IP literal needs no resolver. */
static int literal_addr(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (evutil_inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        return 1;
    }
    if (evutil_inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        return 1;
    }
    return 0;
}

static int ensure_dns(xpb_loop *l)
{
    if (l->dns) return 0;
    int rc = xpb_dns_new(&l->dns, l->base);
    if (rc == 0 && l->dns_servers) rc = xpb_dns_set_servers(l->dns, l->dns_servers);
    if (rc != 0) {
        xpb_dns_free(l->dns);
        l->dns = NULL;
    }
    return rc;
}

static void try_target(xpb_loop_session *ls)
{
    if (ls->plan->ti >= ls->plan->n_targets) {
        fail_later(ls, ls->fail_reason ? ls->fail_reason : "no address to connect to");
        return;
    }
    const xpb_dns_target *t = &ls->plan->targets[ls->plan->ti];
    logf_(ls, XPB_LOG_DEBUG, "connecting to %s:%u (%s)", t->host, (unsigned)t->port,
          t->direct_tls ? "direct TLS" : "plain TCP");
    if (literal_addr(t->host, t->port, &ls->plan->addrs[0])) {
        ls->plan->n_addrs = 1;
        ls->plan->ai = 0;
        try_addr(ls);
        return;
    }
    int rc = ensure_dns(ls->loop);
    if (rc == 0) rc = xpb_dns_addr(ls->loop->dns, t->host, t->port, on_addrs, ls, &ls->dnsq);
    if (rc != 0) {
        set_fail(ls, "cannot resolve %s: %s", t->host, xpb_strerror(rc));
        ls->plan->ti++;
        try_target(ls);
    }
}

static void on_srv(void *ud, int err, const xpb_dns_target *t, size_t n)
{
    xpb_loop_session *ls = ud;
    ls->dnsq = NULL;
    (void)err;
    ls->plan->n_targets = n < XPB_DNS_MAX_TARGETS ? n : XPB_DNS_MAX_TARGETS;
    memcpy(ls->plan->targets, t, ls->plan->n_targets * sizeof t[0]);
    ls->plan->ti = 0;
    try_target(ls);
}

/* "host", "host:port", "[v6]:port" (see-other-host, RFC 6120 §4.9.3.19). */
static int parse_host_port(const char *s, uint16_t dflt, xpb_dns_target *t)
{
    const char *hs = s, *he, *p;
    if (*s == '[') {
        hs = s + 1;
        he = strchr(hs, ']');
        if (!he) return XPB_EINVAL;
        p = he + 1;
    } else {
        p = strrchr(s, ':');
        he = p ? p : s + strlen(s);
        if (p && strchr(s, ':') != p) p = NULL, he = s + strlen(s); /* bare IPv6 */
        if (!p) p = he;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof t->host) return XPB_EINVAL;
    memcpy(t->host, hs, (size_t)(he - hs));
    t->host[he - hs] = '\0';
    t->port = dflt;
    if (*p == ':') {
        char *e;
        unsigned long v = strtoul(p + 1, &e, 10);
        if (*e || v == 0 || v > 65535) return XPB_EINVAL;
        t->port = (uint16_t)v;
    }
    return 0;
}

static int plan_fixed(xpb_loop_session *ls, const xpb_session_target *t)
{
    xpb_dns_target *x = &ls->plan->targets[0];
    int direct = t->transport == XPB_TRANSPORT_DIRECT_TLS;
    uint16_t dflt = direct ? 5223 : 5222;
    memset(x, 0, sizeof *x);
    if (t->transport == XPB_TRANSPORT_WEBSOCKET) {
        char path[sizeof ls->plan->ws_url];
        if (!t->ws_url || strlen(t->ws_url) >= sizeof ls->plan->ws_url) return XPB_EINVAL;
        memcpy(ls->plan->ws_url, t->ws_url, strlen(t->ws_url) + 1);
        int rc = xpb_ws_parse_url(t->ws_url, x->host, sizeof x->host, &x->port, path,
                                  sizeof path, &direct);
        if (rc != 0) return rc;
        x->direct_tls = 0; /* the WebSocket link starts TLS itself for wss:// */
    } else if (t->see_other_host) {
        if (parse_host_port(t->see_other_host, dflt, x) != 0) return XPB_EINVAL;
        x->direct_tls = direct;
    } else {
        size_t hl = strlen(t->host);
        if (hl == 0 || hl >= sizeof x->host) return XPB_EINVAL;
        memcpy(x->host, t->host, hl + 1);
        x->port = t->port ? t->port : dflt;
        x->direct_tls = direct;
    }
    ls->plan->n_targets = 1;
    ls->plan->ti = 0;
    return 0;
}

/* The plan's first step, once the gate lets the session through. */
static int start_plan(xpb_loop_session *ls)
{
    if (!ls->plan_srv) {
        try_target(ls);
        return 0;
    }
    int rc = ensure_dns(ls->loop);
    if (rc != 0) return rc;
    logf_(ls, XPB_LOG_DEBUG, "SRV lookup for %s", ls->domain);
    return xpb_dns_srv(ls->loop->dns, ls->domain, ls->kind == XPB_TRANSPORT_STARTTLS, 1, on_srv,
                       ls, &ls->dnsq);
}

/* The gate let a waiting session through: its negotiation timeout, held
 * while it waited, counts from now. */
static void on_gate_go(xpb_gate_node *n)
{
    xpb_loop_session *ls = (xpb_loop_session *)((char *)n - offsetof(xpb_loop_session, gate));
    if (ls->connect_ms) {
        struct timeval tv = {(time_t)(ls->connect_ms / 1000u),
                             (suseconds_t)((ls->connect_ms % 1000u) * 1000u)};
        evtimer_add(ls->timers[XPB_TIMER_CONNECT], &tv);
    }
    int rc = start_plan(ls);
    if (rc != 0) fail_later(ls, xpb_strerror(rc));
}

static int op_connect(void *io, const xpb_session_target *t)
{
    xpb_loop_session *ls = io;
    drop_link(ls);
    evtimer_del(ls->fail_ev);
    free(ls->fail_reason);
    ls->fail_reason = NULL;
    size_t dl = t->domain ? strlen(t->domain) : 0;
    if (dl == 0 || dl >= XPB_LOOP_DOMAIN_MAX) return XPB_EINVAL;
    if (!ls->plan && !(ls->plan = calloc(1, sizeof *ls->plan))) return XPB_ENOMEM;
    if (!ls->domain || strcmp(ls->domain, t->domain) != 0) {
        free(ls->domain);
        if (!(ls->domain = strdup(t->domain))) return XPB_ENOMEM;
    }
    ls->kind = t->transport;
    ls->plan_srv = !(t->transport == XPB_TRANSPORT_WEBSOCKET || t->see_other_host || t->host);
    if (!ls->plan_srv) {
        int rc = plan_fixed(ls, t);
        if (rc != 0) return rc;
    }
    if (!xpb_gate_enter(ls->loop->gate, &ls->gate)) {
        /* Waiting is not negotiating: the timeout starts at the gate's exit. */
        evtimer_del(ls->timers[XPB_TIMER_CONNECT]);
        logf_(ls, XPB_LOG_DEBUG, "waiting for the connect gate (limits.connect_rate)");
        return 0;
    }
    return start_plan(ls);
}

/* ---- the other ops ------------------------------------------------------------ */

static int op_send(void *io, const char *data, size_t len)
{
    xpb_loop_session *ls = io;
    if (!ls->link || !ls->connected) return XPB_ENOTCONN;
    return ls->link->ops->send(ls->link, data, len);
}

static int op_starttls(void *io)
{
    xpb_loop_session *ls = io;
    if (!ls->link || !ls->connected) return XPB_ENOTCONN;
    logf_(ls, XPB_LOG_DEBUG, "STARTTLS: handshake on the same connection");
    return ls->link->ops->starttls(ls->link);
}

static void op_disconnect(void *io)
{
    xpb_loop_session *ls = io;
    drop_link(ls);
    evtimer_del(ls->fail_ev);
}

static void op_set_timer(void *io, xpb_session_timer t, unsigned ms)
{
    xpb_loop_session *ls = io;
    if ((unsigned)t >= XPB_TIMER_COUNT) return;
    if (t == XPB_TIMER_CONNECT) {
        ls->connect_ms = ms;
        if (ms && ls->gate.queued) return; /* armed when it leaves the gate */
    }
    if (ms == 0) {
        evtimer_del(ls->timers[t]);
        return;
    }
    struct timeval tv = {(time_t)(ms / 1000u), (suseconds_t)((ms % 1000u) * 1000u)};
    evtimer_add(ls->timers[t], &tv);
}

static void op_event(void *io, const xpb_session_event *ev)
{
    xpb_loop_session *ls = io;
    if (ev->kind == XPB_SE_STATE)
        logf_(ls, XPB_LOG_INFO, "state %s%s%s", xpb_session_state_name(ev->state),
              ev->reason ? ": " : "", ev->reason ? ev->reason : "");
    else if (ev->kind == XPB_SE_ERROR)
        logf_(ls, XPB_LOG_WARN, "error: %s", ev->reason ? ev->reason : "");
    if (ev->kind == XPB_SE_ONLINE) { /* the plan is done with until the next connect */
        free(ls->plan);
        ls->plan = NULL;
        xpb_gate_leave(ls->loop->gate, &ls->gate); /* negotiation over: its place is free */
        static const struct timeval quiet = {0, XPB_LOOP_TRIM_QUIET_MS * 1000};
        evtimer_add(ls->loop->trim_ev, &quiet); /* pushed back by every later one */
    }
    if (ls->loop->cfg.on_event) ls->loop->cfg.on_event(ls->loop->cfg.ud, ls, ev);
}

static uint32_t op_random(void *io)
{
    xpb_loop_session *ls = io;
    uint32_t v = 0;
    if (xpb_tls_random_bytes((unsigned char *)&v, sizeof v) == 0) return v;
    /* RAND_bytes failing is not expected; jitter still needs some spread. */
    ls->prng ^= ls->prng << 13;
    ls->prng ^= ls->prng >> 17;
    ls->prng ^= ls->prng << 5;
    return ls->prng;
}

static const xpb_session_ops loop_ops = {
    .connect = op_connect,
    .send = op_send,
    .starttls = op_starttls,
    .disconnect = op_disconnect,
    .set_timer = op_set_timer,
    .event = op_event,
    .random = op_random,
};

/* Bring-up (or a wave of reconnects) is over: every handshake's buffers
 * and every first stanza's tree were freed, scattered between the sessions'
 * long-lived memory; give the free pages back to the system so an idle
 * session costs what it keeps, not what its negotiation once took. */
static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    timer_arg *ta = arg;
    (void)fd, (void)what;
    xpb_session_on_timer(ta->ls->s, ta->t);
}

/* ---- TLS contexts, one per CA file ------------------------------------------- */

static int tls_for(xpb_loop *l, const char *ca_file, xpb_tls_ctx **out, char *err, size_t errlen)
{
    const char *key = ca_file ? ca_file : "";
    for (tls_entry *e = l->tls; e; e = e->next) {
        if (strcmp(e->ca_file, key) == 0) {
            *out = e->ctx;
            return 0;
        }
    }
    tls_entry *e = calloc(1, sizeof *e);
    if (!e) return XPB_ENOMEM;
    e->ca_file = strdup(key);
    int rc = e->ca_file ? xpb_tls_ctx_new(&e->ctx, ca_file, err, errlen) : XPB_ENOMEM;
    if (rc != 0) {
        free(e->ca_file);
        free(e);
        return rc;
    }
    e->next = l->tls;
    l->tls = e;
    *out = e->ctx;
    return 0;
}

/* ---- the loop ------------------------------------------------------------------ */

/* Timers on the monotonic clock at full resolution: without the flag,
 * libevent uses a coarse clock (4 ms here), which every timer would add. */
static struct event_base *new_base(void)
{
    struct event_config *ec = event_config_new();
    if (!ec) return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    struct event_base *b = event_base_new_with_config(ec);
    event_config_free(ec);
    return b;
}

int xpb_loop_thread_safe(const xpb_loop *l)
{
    return l->cfg.thread_safe;
}

int xpb_loop_new(xpb_loop **out, const xpb_loop_config *cfg)
{
    if (!out || !cfg) return XPB_EINVAL;
    xpb_loop *l = calloc(1, sizeof *l);
    if (!l) return XPB_ENOMEM;
    l->cfg = *cfg;
    if (cfg->ca_file && !(l->ca_file = strdup(cfg->ca_file))) {
        free(l);
        return XPB_ENOMEM;
    }
    l->cfg.ca_file = l->ca_file;
    if (cfg->dns_servers && !(l->dns_servers = strdup(cfg->dns_servers))) {
        xpb_loop_free(l);
        return XPB_ENOMEM;
    }
    l->cfg.dns_servers = l->dns_servers;
    l->base = cfg->base;
    /* Locks before the base exists: libevent gives a base locks at creation. */
    if (cfg->thread_safe && evthread_use_pthreads() != 0) {
        xpb_loop_free(l);
        return XPB_ENOMEM;
    }
    if (!l->base) {
        l->base = new_base();
        l->own_base = 1;
    }
    if (!l->base) {
        xpb_loop_free(l);
        return XPB_ENOMEM;
    }
    int rc = xpb_gate_new(&l->gate, l->base, cfg->connect_rate,
                          (size_t)cfg->connect_rate * XPB_LOOP_CONNECT_INFLIGHT_S, on_gate_go);
    if (rc == 0 && !(l->trim_ev = evtimer_new(l->base, on_trim, l))) rc = XPB_ENOMEM;
    if (rc == 0 && !(l->park_ev = evtimer_new(l->base, on_park, l))) rc = XPB_ENOMEM;
    if (rc != 0) {
        xpb_loop_free(l);
        return rc;
    }
    /* A resolver override is checked now, not at the first connect. */
    rc = l->dns_servers ? ensure_dns(l) : 0;
    if (rc != 0) {
        xpb_loop_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void xpb_loop_free(xpb_loop *l)
{
    if (!l) return;
    while (l->sessions) xpb_loop_remove_session(l, l->sessions);
    xpb_gate_free(l->gate);
    if (l->trim_ev) event_free(l->trim_ev);
    if (l->park_ev) event_free(l->park_ev);
    xpb_dns_free(l->dns);
    while (l->tls) {
        tls_entry *e = l->tls;
        l->tls = e->next;
        xpb_tls_ctx_free(e->ctx);
        free(e->ca_file);
        free(e);
    }
    if (l->own_base && l->base) event_base_free(l->base);
    xpb_strmap_clear(&l->by_name);
    free(l->dns_servers);
    free(l->ca_file);
    free(l);
}

struct event_base *xpb_loop_base(xpb_loop *l)
{
    return l->base;
}

void xpb_loop_set_handlers(xpb_loop *l, xpb_loop_event_cb on_event, xpb_loop_log_cb on_log,
                           void *ud)
{
    l->cfg.on_event = on_event;
    l->cfg.on_log = on_log;
    l->cfg.ud = ud;
}

int xpb_loop_run(xpb_loop *l)
{
    return event_base_dispatch(l->base) < 0 ? XPB_EINVAL : 0;
}

void xpb_loop_stop(xpb_loop *l)
{
    event_base_loopbreak(l->base);
}

static void session_release(xpb_loop_session *ls)
{
    busy_unlink(ls);
    drop_link(ls);
    if (ls->s) xpb_session_free(ls->s);
    for (int t = 0; t < XPB_TIMER_COUNT; t++)
        if (ls->timers[t]) event_free(ls->timers[t]);
    if (ls->fail_ev) event_free(ls->fail_ev);
    free(ls->plan);
    free(ls->fail_reason);
    free(ls->domain);
    free(ls->name);
    free(ls);
}

static int session_events(xpb_loop_session *ls)
{
    for (int t = 0; t < XPB_TIMER_COUNT; t++) {
        ls->targs[t] = (timer_arg){ls, (xpb_session_timer)t};
        ls->timers[t] = evtimer_new(ls->loop->base, on_timer, &ls->targs[t]);
        if (!ls->timers[t]) return XPB_ENOMEM;
    }
    ls->fail_ev = evtimer_new(ls->loop->base, on_fail_ev, ls);
    return ls->fail_ev ? 0 : XPB_ENOMEM;
}

int xpb_loop_add_session(xpb_loop *l, const char *name, const xpb_session_config *cfg,
                         const char *ca_file, xpb_loop_session **out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!l || !name || !*name || !cfg || xpb_loop_find(l, name)) return XPB_EINVAL;
    xpb_loop_session *ls = calloc(1, sizeof *ls);
    if (!ls) return XPB_ENOMEM;
    ls->loop = l;
    ls->prng = (uint32_t)(uintptr_t)ls | 1u;
    ls->name = strdup(name);
    int rc = ls->name ? session_events(ls) : XPB_ENOMEM;
    char tmp[256];
    if (rc == 0) rc = tls_for(l, ca_file ? ca_file : l->ca_file, &ls->tls, err ? err : tmp,
                              err ? errlen : sizeof tmp);
    if (rc == 0) rc = xpb_session_new(&ls->s, cfg, &loop_ops, ls);
    if (rc == 0 && xpb_strmap_put(&l->by_name, ls->name, ls) != 0) rc = XPB_ENOMEM;
    if (rc != 0) {
        session_release(ls);
        return rc;
    }
    ls->next = l->sessions;
    if (l->sessions) l->sessions->prev = ls;
    l->sessions = ls;
    rc = xpb_session_start(ls->s);
    if (rc != 0) {
        xpb_loop_remove_session(l, ls);
        return rc;
    }
    if (out) *out = ls;
    return 0;
}

void xpb_loop_remove_session(xpb_loop *l, xpb_loop_session *ls)
{
    if (!ls || ls->loop != l) return;
    if (ls->prev) ls->prev->next = ls->next;
    else l->sessions = ls->next;
    if (ls->next) ls->next->prev = ls->prev;
    xpb_strmap_del(&l->by_name, ls->name, ls);
    session_release(ls);
}

xpb_loop_session *xpb_loop_find(xpb_loop *l, const char *name)
{
    return xpb_strmap_get(&l->by_name, name);
}

void xpb_loop_session_set_ud(xpb_loop_session *ls, void *ud)
{
    ls->ud = ud;
}

void *xpb_loop_session_ud(const xpb_loop_session *ls)
{
    return ls->ud;
}

xpb_loop_session *xpb_loop_first(xpb_loop *l)
{
    return l->sessions;
}

xpb_loop_session *xpb_loop_next(xpb_loop_session *ls)
{
    return ls->next;
}

xpb_session *xpb_loop_session_get(xpb_loop_session *ls)
{
    return ls->s;
}

const char *xpb_loop_session_name(const xpb_loop_session *ls)
{
    return ls->name;
}

int xpb_loop_session_cut(xpb_loop_session *ls)
{
    if (!ls->link) return XPB_ENOTCONN;
    ls->link->ops->cut(ls->link);
    logf_(ls, XPB_LOG_INFO, "cutting the connection (test hook)");
    fail_later(ls, "connection cut (test hook): broken link");
    return 0;
}

int xpb_loop_session_freeze(xpb_loop_session *ls)
{
    if (!ls->link) return XPB_ENOTCONN;
    logf_(ls, XPB_LOG_INFO, "freezing the connection (test hook)");
    ls->link->ops->freeze(ls->link);
    return 0;
}

size_t xpb_loop_versions(char *buf, size_t len)
{
    int w = snprintf(buf, len, "libevent %s, %s, c-ares %s", event_get_version(),
                     xpb_tls_library_version(), xpb_dns_library_version());
    return w < 0 ? 0 : (size_t)w;
}
