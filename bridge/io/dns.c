/* Name resolution in the event loop with c-ares: SRV records for
 * _xmpps-client._tcp (XEP-0368) and _xmpp-client._tcp (RFC 6120 §3.2.1),
 * ordered per RFC 2782, and A/AAAA for the chosen target. c-ares tells us
 * which sockets to watch (sock state callback); libevent watches them. */
#include "transport.h"
#include "xpb_error.h"

#include <sys/select.h> /* fd_set, used by ares.h */

#include <ares.h>
#include <arpa/nameser.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XPB_DNS_MAX_SOCKS 16u
#define XPB_DNS_MAX_ADDRS 8u

typedef struct dns_sock {
    ares_socket_t fd;
    struct event *ev;
} dns_sock;

typedef struct srv_rec {
    xpb_dns_target t;
    uint16_t prio, weight;
} srv_rec;

typedef struct srv_tag {
    xpb_dns_query *q;
    int direct;
} srv_tag;

struct xpb_dns_query {
    xpb_dns *d;
    xpb_dns_query *next;  /* in d->queries */
    int cancelled, pending;
    struct event *deliver; /* results go out from the loop, never inside a call */
    xpb_dns_srv_cb srv_cb;
    xpb_dns_addr_cb addr_cb;
    void *ud;
    char domain[256];
    int want_starttls, want_direct, err;
    srv_tag tags[2];
    srv_rec recs[XPB_DNS_MAX_TARGETS];
    size_t n;
    struct sockaddr_storage addrs[XPB_DNS_MAX_ADDRS];
    size_t n_addrs;
    uint16_t port;
};

struct xpb_dns {
    struct event_base *base;
    ares_channel ch;
    struct event *timer;
    dns_sock socks[XPB_DNS_MAX_SOCKS];
    xpb_dns_query *queries;
};

static void reschedule(xpb_dns *d)
{
    struct timeval tv;
    if (ares_timeout(d->ch, NULL, &tv))
        evtimer_add(d->timer, &tv);
    else
        evtimer_del(d->timer);
}

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
    xpb_dns *d = arg;
    ares_process_fd(d->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    reschedule(d);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    xpb_dns *d = arg;
    (void)fd, (void)what;
    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    reschedule(d);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    xpb_dns *d = data;
    dns_sock *slot = NULL, *free_slot = NULL;
    for (size_t i = 0; i < XPB_DNS_MAX_SOCKS; i++) {
        if (d->socks[i].ev && d->socks[i].fd == fd) slot = &d->socks[i];
        if (!d->socks[i].ev && !free_slot) free_slot = &d->socks[i];
    }
    if (slot) {
        event_free(slot->ev);
        slot->ev = NULL;
    }
    if (!readable && !writable) return;
    if (!slot) slot = free_slot;
    if (!slot) return; /* more sockets than slots: that query will time out */
    short what = (short)(EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    slot->fd = fd;
    slot->ev = event_new(d->base, fd, what, on_sock, d);
    if (slot->ev) event_add(slot->ev, NULL);
}

int xpb_dns_new(xpb_dns **out, struct event_base *base)
{
    xpb_dns *d = calloc(1, sizeof *d);
    if (!d) return XPB_ENOMEM;
    d->base = base;
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
        free(d);
        return XPB_EDNS;
    }
    struct ares_options opt;
    memset(&opt, 0, sizeof opt);
    opt.sock_state_cb = sock_state;
    opt.sock_state_cb_data = d;
    d->timer = evtimer_new(base, on_timer, d);
    if (!d->timer || ares_init_options(&d->ch, &opt, ARES_OPT_SOCK_STATE_CB) != ARES_SUCCESS) {
        if (d->timer) event_free(d->timer);
        ares_library_cleanup();
        free(d);
        return XPB_EDNS;
    }
    *out = d;
    return 0;
}

/* Replaces the nameservers from resolv.conf (search list and options stay).
 * A test points this at a local dnsmasq; a deployment at a trusted resolver. */
int xpb_dns_set_servers(xpb_dns *d, const char *csv)
{
    if (!d || !csv || !*csv) return XPB_EINVAL;
    return ares_set_servers_ports_csv(d->ch, csv) == ARES_SUCCESS ? 0 : XPB_EINVAL;
}

static void query_release(xpb_dns_query *q)
{
    for (xpb_dns_query **p = &q->d->queries; *p; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            break;
        }
    }
    if (q->deliver) event_free(q->deliver);
    free(q);
}

void xpb_dns_free(xpb_dns *d)
{
    if (!d) return;
    /* ares_destroy calls every pending callback with ARES_EDESTRUCTION. */
    for (xpb_dns_query *q = d->queries; q; q = q->next) q->cancelled = 1;
    ares_destroy(d->ch);
    while (d->queries) query_release(d->queries);
    for (size_t i = 0; i < XPB_DNS_MAX_SOCKS; i++)
        if (d->socks[i].ev) event_free(d->socks[i].ev);
    event_free(d->timer);
    ares_library_cleanup();
    free(d);
}

void xpb_dns_cancel(xpb_dns_query *q)
{
    if (q) q->cancelled = 1;
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    xpb_dns_query *q = arg;
    (void)fd, (void)what;
    if (!q->cancelled) {
        if (q->srv_cb) {
            xpb_dns_target t[XPB_DNS_MAX_TARGETS];
            for (size_t i = 0; i < q->n; i++) t[i] = q->recs[i].t;
            q->srv_cb(q->ud, q->err, t, q->n);
        } else {
            q->addr_cb(q->ud, q->err, q->addrs, q->n_addrs);
        }
    }
    query_release(q);
}

static void finish(xpb_dns_query *q)
{
    static const struct timeval now = {0, 0};
    if (!q->deliver) q->deliver = evtimer_new(q->d->base, on_deliver, q);
    if (q->deliver) evtimer_add(q->deliver, &now);
}

static xpb_dns_query *query_new(xpb_dns *d, void *ud)
{
    xpb_dns_query *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->d = d;
    q->ud = ud;
    q->next = d->queries;
    d->queries = q;
    return q;
}

/* RFC 2782: lowest priority first; among equals, heavier weight first (a
 * deterministic stand-in for the weighted random pick). */
static int srv_cmp(const void *a, const void *b)
{
    const srv_rec *x = a, *y = b;
    if (x->prio != y->prio) return x->prio < y->prio ? -1 : 1;
    if (x->weight != y->weight) return x->weight > y->weight ? -1 : 1;
    if (x->t.direct_tls != y->t.direct_tls) return x->t.direct_tls ? -1 : 1;
    return 0;
}

static void srv_fallback(xpb_dns_query *q)
{
    srv_rec *r = &q->recs[0];
    memset(r, 0, sizeof *r);
    memcpy(r->t.host, q->domain, strlen(q->domain) + 1);
    /* RFC 6120 §3.2.2: no SRV -> the domain itself on 5222. A direct-TLS-only
     * account uses 5223, the customary port (XEP-0368 §3 has no fallback). */
    r->t.direct_tls = !q->want_starttls;
    r->t.port = q->want_starttls ? 5222 : 5223;
    q->n = 1;
}

static void add_srv_replies(xpb_dns_query *q, struct ares_srv_reply *rep, int direct)
{
    for (; rep; rep = rep->next) {
        size_t hl = strlen(rep->host);
        /* "." means the service is decidedly not offered (RFC 2782). */
        if (hl == 0 || strcmp(rep->host, ".") == 0 || hl >= sizeof q->recs[0].t.host) continue;
        if (q->n >= XPB_DNS_MAX_TARGETS) return;
        srv_rec *r = &q->recs[q->n++];
        memcpy(r->t.host, rep->host, hl + 1);
        r->t.port = rep->port;
        r->t.direct_tls = direct;
        r->prio = rep->priority;
        r->weight = rep->weight;
    }
}

static void srv_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    srv_tag *tag = arg;
    xpb_dns_query *q = tag->q;
    (void)timeouts;
    struct ares_srv_reply *rep = NULL;
    if (status == ARES_SUCCESS && ares_parse_srv_reply(abuf, alen, &rep) == ARES_SUCCESS) {
        add_srv_replies(q, rep, tag->direct);
        ares_free_data(rep);
    }
    if (status == ARES_EDESTRUCTION) q->cancelled = 1;
    if (--q->pending > 0 || status == ARES_EDESTRUCTION) return;
    qsort(q->recs, q->n, sizeof q->recs[0], srv_cmp);
    if (q->n == 0) srv_fallback(q);
    finish(q);
}

int xpb_dns_srv(xpb_dns *d, const char *domain, int want_starttls, int want_direct,
                xpb_dns_srv_cb cb, void *ud, xpb_dns_query **qout)
{
    char name[300];
    size_t dl = strlen(domain);
    if (!cb || dl == 0 || dl >= sizeof ((xpb_dns_query *)0)->domain) return XPB_EINVAL;
    if (!want_starttls && !want_direct) return XPB_EINVAL;
    xpb_dns_query *q = query_new(d, ud);
    if (!q) return XPB_ENOMEM;
    q->srv_cb = cb;
    memcpy(q->domain, domain, dl + 1);
    q->want_starttls = want_starttls;
    q->want_direct = want_direct;
    q->pending = (want_starttls ? 1 : 0) + (want_direct ? 1 : 0);
    *qout = q;
    for (int direct = 1; direct >= 0; direct--) {
        if (direct ? !want_direct : !want_starttls) continue;
        q->tags[direct] = (srv_tag){q, direct};
        snprintf(name, sizeof name, "%s._tcp.%s", direct ? "_xmpps-client" : "_xmpp-client",
                 domain);
        ares_query(d->ch, name, ns_c_in, ns_t_srv, srv_done, &q->tags[direct]);
    }
    reschedule(d);
    return 0;
}

static void addr_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    xpb_dns_query *q = arg;
    (void)timeouts;
    if (status == ARES_EDESTRUCTION) return;
    for (struct ares_addrinfo_node *n = res ? res->nodes : NULL;
         n && q->n_addrs < XPB_DNS_MAX_ADDRS; n = n->ai_next) {
        if (n->ai_addrlen > (ares_socklen_t)sizeof q->addrs[0]) continue;
        struct sockaddr_storage *ss = &q->addrs[q->n_addrs++];
        memset(ss, 0, sizeof *ss);
        memcpy(ss, n->ai_addr, (size_t)n->ai_addrlen);
        if (ss->ss_family == AF_INET)
            ((struct sockaddr_in *)ss)->sin_port = htons(q->port);
        else if (ss->ss_family == AF_INET6)
            ((struct sockaddr_in6 *)ss)->sin6_port = htons(q->port);
        else
            q->n_addrs--;
    }
    if (res) ares_freeaddrinfo(res);
    q->err = q->n_addrs ? 0 : XPB_EDNS;
    finish(q);
}

int xpb_dns_addr(xpb_dns *d, const char *host, uint16_t port, xpb_dns_addr_cb cb, void *ud,
                 xpb_dns_query **qout)
{
    if (!cb || !host || !*host) return XPB_EINVAL;
    xpb_dns_query *q = query_new(d, ud);
    if (!q) return XPB_ENOMEM;
    q->addr_cb = cb;
    q->port = port;
    *qout = q;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    ares_getaddrinfo(d->ch, host, NULL, &hints, addr_done, q);
    reschedule(d);
    return 0;
}

const char *xpb_dns_library_version(void)
{
    return ares_version(NULL);
}
