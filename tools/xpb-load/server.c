/* xpb-load's scripted direct-TLS XMPP server (XEP-0368): one epoll loop in its
 * own thread on 127.0.0.1. It accepts any account with SASL PLAIN (RFC 4616)
 * over TLS, binds a resource (RFC 6120 §7), offers XEP-0198 or not, answers
 * every iq get/set with an empty result and every <r/> with <a/> at once,
 * counts the messages it receives, and on command floods or trickles
 * realistic messages (tools/traffic.h) to one session. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "load.h"
#include "server_internal.h"

#define SRV_EPOLL_BATCH 256
#define SRV_READ_CHUNK 16384

static void conn_close(lsrv *s, lconn *c)
{
    epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->bound) s->bound--;
    for (size_t i = 0; i < s->n_conns; i++)
        if (s->conns[i] == c) s->conns[i] = s->conns[--s->n_conns];
    lsrv_work_drop(s, c);
    SSL_free(c->ssl);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_watch(lsrv *s, lconn *c)
{
    int want = c->out_len > c->out_off || c->ssl_wants_write;
    if (want == c->watching_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->watching_out = want;
}

int lconn_append(lconn *c, const char *p, size_t n)
{
    if (c->out_off && c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n)
            cap *= 2;
        char *o = realloc(c->out, cap);
        if (!o) return -1;
        c->out = o;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

/* -1: the connection failed. */
int lconn_flush(lsrv *s, lconn *c)
{
    c->ssl_wants_write = 0;
    while (c->out_off < c->out_len) {
        int n = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
        return -1;
    }
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    lsrv_work_fill(s, c);
    if (c->out_off < c->out_len && c->out_off == 0) {
        int n = SSL_write(c->ssl, c->out, (int)c->out_len);
        if (n > 0) c->out_off = (size_t)n;
    }
    conn_watch(s, c);
    return 0;
}

static int conn_handshake(lsrv *s, lconn *c)
{
    int r = SSL_accept(c->ssl);
    if (r == 1) {
        c->tls_up = 1;
        return 0;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) return 0;
    if (e == SSL_ERROR_WANT_WRITE) {
        c->ssl_wants_write = 1;
        conn_watch(s, c);
        return 0;
    }
    return -1;
}

static int conn_take(lsrv *s, lconn *c)
{
    size_t el, el_len;
    while (lxml_next(&c->x, c->in, c->in_len, &c->pos, &el, &el_len))
        if (lsrv_on_element(s, c, c->in + el, el_len)) return -1;
    size_t keep = lxml_keep(&c->x, c->pos);
    if (keep) {
        memmove(c->in, c->in + keep, c->in_len - keep);
        c->in_len -= keep;
        c->pos -= keep;
        lxml_shift(&c->x, keep);
    }
    return 0;
}

static int conn_read(lsrv *s, lconn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < SRV_READ_CHUNK) {
            if (c->in_cap >= LSRV_MAX_ELEMENT) return -1; /* a runaway element */
            char *p = realloc(c->in, c->in_cap + 2 * SRV_READ_CHUNK);
            if (!p) return -1;
            c->in = p;
            c->in_cap += 2 * SRV_READ_CHUNK;
        }
        int n = SSL_read(c->ssl, c->in + c->in_len, (int)(c->in_cap - c->in_len));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
        }
        c->in_len += (size_t)n;
        if (conn_take(s, c) || c->closing) return -1;
    }
}

static void conn_event(lsrv *s, lconn *c, uint32_t ev)
{
    int rc = 0;
    if (!c->tls_up) rc = conn_handshake(s, c);
    if (!rc && c->tls_up && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) rc = conn_read(s, c);
    if (!rc && c->tls_up) rc = lconn_flush(s, c);
    if (rc) conn_close(s, c);
}

/* Trickles come due with time; floods restart after a command. */
static void work_tick(lsrv *s)
{
    for (size_t i = s->n_work; i-- > 0;) {
        lconn *c = s->work[i];
        if (c->tls_up && lconn_flush(s, c)) conn_close(s, c);
    }
}

static void accept_all(lsrv *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        lconn *c = calloc(1, sizeof(*c));
        if (!c || s->n_conns >= s->max_conns || !(c->ssl = SSL_new(s->ctx))) {
            free(c);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->fd = fd;
        SSL_set_fd(c->ssl, fd);
        SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev);
        s->conns[s->n_conns++] = c;
    }
}

static void *srv_main(void *arg)
{
    lsrv *s = arg;
    struct epoll_event evs[SRV_EPOLL_BATCH];
    while (!s->stop) {
        /* A trickle wakes every LOAD_TRICKLE_TICK_NS, so its messages leave
         * nearly one by one, as a person's would: a 1 ms tick sent them in
         * bursts, and the latency figure then measured the burst's queue.
         * The kernel's default timer slack (50 us) stretches the tick to
         * about 70 us. A 1 us slack (tried) made the hop worse: on 2 cores
         * the server's 50,000 wakes a second took the bridge's CPU. */
        struct timespec tick = {0, s->n_work ? (lsrv_trickling(s) ? LOAD_TRICKLE_TICK_NS : 1000000)
                                             : 100000000};
        int n = epoll_pwait2(s->ep, evs, SRV_EPOLL_BATCH, &tick, NULL);
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &s->lfd) {
                accept_all(s);
            } else if (evs[i].data.ptr == &s->wake) {
                uint64_t v;
                if (read(s->wake, &v, sizeof(v)) < 0) { /* nothing to do: level-triggered */
                }
            } else {
                conn_event(s, evs[i].data.ptr, evs[i].events);
            }
        }
        work_tick(s);
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

static int listen_local(lsrv *s)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(s->lfd, 4096) ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al))
        return -1;
    s->port = ntohs(a.sin_port);
    return 0;
}

static int tls_setup(lsrv *s, const char *dir)
{
    char key[LOAD_PATH_MAX];
    if (load_make_cert(dir, s->ca_file, key, sizeof(key))) return -1;
    s->ctx = SSL_CTX_new(TLS_server_method());
    if (!s->ctx || SSL_CTX_use_certificate_file(s->ctx, s->ca_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(s->ctx, key, SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return -1;
    }
    /* Idle sessions are what the benchmark holds by the thousand. */
    SSL_CTX_set_mode(s->ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(s->ctx, SSL_SESS_CACHE_OFF);
    return 0;
}

static int watch(lsrv *s, int fd, void *ptr)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ptr};
    return epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev);
}

int lsrv_start(const lsrv_opts *o, lsrv **out)
{
    lsrv *s = calloc(1, sizeof(*s));
    if (!s) return -1;
    s->sm = o->sm;
    s->max_conns = o->max_conns;
    s->lfd = s->ep = s->wake = -1;
    pthread_mutex_init(&s->mu, NULL);
    s->conns = calloc(o->max_conns, sizeof(*s->conns));
    int rc = s->conns && !tls_setup(s, o->dir) && !lsrv_pool_make(s, o->seed) && !listen_local(s) &&
                     (s->ep = epoll_create1(EPOLL_CLOEXEC)) >= 0 &&
                     (s->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) >= 0 &&
                     !watch(s, s->lfd, &s->lfd) && !watch(s, s->wake, &s->wake)
                 ? 0
                 : -1;
    if (!rc) rc = pthread_create(&s->thread, NULL, srv_main, s) ? -1 : 0;
    if (rc) {
        fprintf(stderr, "xpb-load: cannot start the test server: %s\n", strerror(errno));
        lsrv_stop(s);
        return -1;
    }
    s->started = 1;
    *out = s;
    return 0;
}

void lsrv_wake(lsrv *s)
{
    uint64_t one = 1;
    if (write(s->wake, &one, sizeof(one)) < 0) { /* the counter is full: it is awake */
    }
}

void lsrv_stop(lsrv *s)
{
    if (!s) return;
    if (s->started) {
        s->stop = 1;
        lsrv_wake(s);
        pthread_join(s->thread, NULL);
    }
    while (s->n_conns)
        conn_close(s, s->conns[0]);
    if (s->lfd >= 0) close(s->lfd);
    if (s->ep >= 0) close(s->ep);
    if (s->wake >= 0) close(s->wake);
    SSL_CTX_free(s->ctx);
    lsrv_pool_free(s);
    free(s->conns);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int lsrv_port(const lsrv *s)
{
    return s->port;
}

const char *lsrv_ca_file(const lsrv *s)
{
    return s->ca_file;
}

unsigned lsrv_bound(lsrv *s)
{
    pthread_mutex_lock(&s->mu);
    unsigned n = s->bound;
    pthread_mutex_unlock(&s->mu);
    return n;
}
