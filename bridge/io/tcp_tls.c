/* TCP streams with STARTTLS or direct TLS (XEP-0368) on libevent bufferevents.
 * The only file that touches OpenSSL: the TLS policy of docs/security.md (TLS
 * >= 1.2, no compression or renegotiation, certificate checked against the
 * JID's domain) and channel binding data for SCRAM-*-PLUS. */
#include "transport.h"
#include "xpb_error.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define XPB_READ_CHUNK 16384u
#define XPB_CB_MAX 64u /* channel binding data: a digest or 32 exported bytes */

struct xpb_tls_ctx {
    SSL_CTX *ctx;
};

typedef struct xpb_stream {
    xpb_link link;
    struct event_base *base;
    xpb_tls_ctx *tls;
    struct bufferevent *bev;
    evutil_socket_t fd;
    int fd_owned;    /* 1 while the plain bev holds it; the TLS bev closes it itself */
    int tcp_up, is_tls, handshaking, direct_tls, frozen, closed;
    int in_cb, dead; /* free requested inside a callback: release on the way out */
    char domain[256];
    char alpn[32];
    char peer[64];   /* "127.0.0.1:5222", for messages */
    xpb_link_cb cb;
    void *ud;
} xpb_stream;

static void stream_destroy(xpb_stream *s);

/* ---- TLS context ---------------------------------------------------------- */

static void last_ssl_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256] = "unknown error";
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, buf);
}

int xpb_tls_ctx_new(xpb_tls_ctx **out, const char *ca_file, char *err, size_t errlen)
{
    xpb_tls_ctx *c = calloc(1, sizeof *c);
    if (!c) return XPB_ENOMEM;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx) {
        last_ssl_error(err, errlen, "SSL_CTX_new");
        free(c);
        return XPB_ETLS;
    }
    /* docs/security.md: TLS 1.2 or later, no compression (CRIME), no
     * renegotiation, release idle buffers (many sessions per process). */
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file ? SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(c->ctx);
    if (ok != 1) {
        char what[300];
        snprintf(what, sizeof what, "loading CA %s", ca_file ? ca_file : "(system store)");
        last_ssl_error(err, errlen, what);
        SSL_CTX_free(c->ctx);
        free(c);
        return XPB_ETLS;
    }
    *out = c;
    return 0;
}

void xpb_tls_ctx_free(xpb_tls_ctx *c)
{
    if (!c) return;
    SSL_CTX_free(c->ctx);
    free(c);
}

/* ---- helpers other files use instead of OpenSSL --------------------------- */

int xpb_tls_random_bytes(unsigned char *out, size_t len)
{
    return RAND_bytes(out, (int)len) == 1 ? 0 : XPB_ESASLCRYPTO;
}

void xpb_tls_sha1(const void *data, size_t len, unsigned char out[20])
{
    SHA1(data, len, out);
}

size_t xpb_base64_encode(const unsigned char *in, size_t len, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* ---- channel binding ------------------------------------------------------ */

/* RFC 5929 §4.1: hash of the server certificate; MD5 and SHA-1 are replaced
 * by SHA-256, other signature hashes are used as they are. Certificates
 * without a hash in their signature (Ed25519) have no defined binding. */
static int server_end_point(SSL *ssl, unsigned char *out, size_t *len)
{
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (!cert) return -1;
    int md_nid = NID_undef, pk_nid = NID_undef;
    const EVP_MD *md = NULL;
    if (OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, &pk_nid)) {
        if (md_nid == NID_md5 || md_nid == NID_sha1)
            md = EVP_sha256();
        else if (md_nid != NID_undef)
            md = EVP_get_digestbynid(md_nid);
    }
    unsigned int n = 0;
    int ok = md && X509_digest(cert, md, out, &n) == 1;
    X509_free(cert);
    *len = n;
    return ok ? 0 : -1;
}

/* RFC 5929 §3.1: the first Finished message of the handshake: ours on a full
 * handshake (the client finishes first), the server's on a resumed one. */
static int tls_unique(SSL *ssl, unsigned char *out, size_t *len)
{
    size_t n = SSL_session_reused(ssl) ? SSL_get_peer_finished(ssl, out, XPB_CB_MAX)
                                       : SSL_get_finished(ssl, out, XPB_CB_MAX);
    if (n == 0 || n > XPB_CB_MAX) return -1;
    *len = n;
    return 0;
}

/* TLS 1.3: tls-exporter (RFC 9266). TLS 1.2: tls-unique, the binding TLS 1.2
 * servers implement (Prosody 0.12, ejabberd), but only with the extended
 * master secret (RFC 7627), without which the triple-handshake attack breaks
 * it; else tls-server-end-point (RFC 5929 §4), which a server must list
 * (XEP-0440) before we use it. */
static const char *channel_binding(SSL *ssl, unsigned char *out, size_t *len)
{
    static const char label[] = "EXPORTER-Channel-Binding";
    if (SSL_version(ssl) >= TLS1_3_VERSION) {
        if (SSL_export_keying_material(ssl, out, 32, label, sizeof label - 1, NULL, 0, 0) != 1)
            return NULL;
        *len = 32;
        return "tls-exporter";
    }
    if (SSL_get_extms_support(ssl) == 1 && tls_unique(ssl, out, len) == 0) return "tls-unique";
    return server_end_point(ssl, out, len) == 0 ? "tls-server-end-point" : NULL;
}

/* ---- stream ---------------------------------------------------------------- */

static void enter(xpb_stream *s) { s->in_cb++; }

static void leave(xpb_stream *s)
{
    if (--s->in_cb == 0 && s->dead) stream_destroy(s);
}

static void report_closed(xpb_stream *s, int err, const char *reason)
{
    if (s->closed || s->dead) return;
    s->closed = 1;
    if (s->bev) bufferevent_disable(s->bev, EV_READ | EV_WRITE);
    s->cb.closed(s->ud, err, reason);
}

static void tls_failure(xpb_stream *s)
{
    char msg[512];
    SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK) {
        snprintf(msg, sizeof msg, "TLS: certificate verify failed: %s (expected %s)",
                 X509_verify_cert_error_string(vr), s->domain);
    } else {
        unsigned long e, last = 0;
        while ((e = bufferevent_get_openssl_error(s->bev)) != 0) last = e;
        char buf[256] = "connection closed during the handshake";
        if (last) ERR_error_string_n(last, buf, sizeof buf);
        snprintf(msg, sizeof msg, "TLS handshake with %s failed: %s", s->peer, buf);
    }
    ERR_clear_error();
    report_closed(s, XPB_ETLS, msg);
}

static void socket_failure(xpb_stream *s, short what)
{
    char msg[512];
    int e = EVUTIL_SOCKET_ERROR();
    if (!s->tcp_up)
        snprintf(msg, sizeof msg, "connect to %s: %s", s->peer,
                 e ? evutil_socket_error_to_string(e) : "failed");
    else if (what & BEV_EVENT_EOF)
        snprintf(msg, sizeof msg, "connection to %s closed by the peer", s->peer);
    else
        snprintf(msg, sizeof msg, "connection to %s broken: %s", s->peer,
                 e ? evutil_socket_error_to_string(e) : "error");
    report_closed(s, s->tcp_up ? XPB_ENOTCONN : XPB_ECONNECT, msg);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    xpb_stream *s = arg;
    char chunk[XPB_READ_CHUNK];
    enter(s);
    /* Stop as soon as the bev is replaced: after STARTTLS the rest of this
     * plaintext buffer was discarded, never handed on (RFC 6120 §5.4.3.3). */
    while (!s->dead && !s->closed && s->bev == bev) {
        size_t n = (size_t)evbuffer_remove(bufferevent_get_input(bev), chunk, sizeof chunk);
        if (n == 0 || n > sizeof chunk) break;
        s->cb.bytes(s->ud, chunk, n);
    }
    leave(s);
}

static int start_tls(xpb_stream *s);

static void handshake_done(xpb_stream *s)
{
    unsigned char cb[XPB_CB_MAX];
    size_t cb_len = 0;
    SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
    const char *type = channel_binding(ssl, cb, &cb_len);
    s->handshaking = 0;
    s->cb.tls_ready(s->ud, type, type ? cb : NULL, type ? cb_len : 0);
    if (!s->dead && !s->closed && s->direct_tls) s->cb.connected(s->ud, 1);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    xpb_stream *s = arg;
    (void)bev;
    enter(s);
    if (what & BEV_EVENT_CONNECTED) {
        if (s->is_tls) {
            handshake_done(s);
        } else {
            s->tcp_up = 1;
            if (!s->direct_tls)
                s->cb.connected(s->ud, 0);
            else if (start_tls(s) != 0)
                report_closed(s, XPB_ETLS, "TLS: cannot start the handshake");
        }
    } else if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        if (s->is_tls && s->handshaking)
            tls_failure(s);
        else
            socket_failure(s, what);
    }
    leave(s);
}

static SSL *new_ssl(xpb_stream *s)
{
    SSL *ssl = SSL_new(s->tls->ctx);
    if (!ssl) return NULL;
    /* The certificate must name the JID's domain, never the SRV target or
     * the address we connected to (RFC 6120 §13.7.2.1, RFC 6125). */
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int ok = SSL_set1_host(ssl, s->domain) == 1 && SSL_set_tlsext_host_name(ssl, s->domain) == 1;
    if (ok && s->alpn[0]) {
        unsigned char proto[sizeof s->alpn + 1];
        size_t n = strlen(s->alpn);
        proto[0] = (unsigned char)n;
        memcpy(proto + 1, s->alpn, n);
        ok = SSL_set_alpn_protos(ssl, proto, (unsigned)(n + 1)) == 0; /* 0 = success */
    }
    if (!ok) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

/* Replaces the plain bev by a TLS one on the same socket. */
static int start_tls(xpb_stream *s)
{
    SSL *ssl = new_ssl(s);
    if (!ssl) return XPB_ETLS;
    if (s->bev) {
        bufferevent_setcb(s->bev, NULL, NULL, NULL, NULL);
        bufferevent_disable(s->bev, EV_READ | EV_WRITE);
        bufferevent_free(s->bev); /* no BEV_OPT_CLOSE_ON_FREE: the fd stays open */
        s->bev = NULL;
    }
    s->bev = bufferevent_openssl_socket_new(s->base, s->fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!s->bev) {
        SSL_free(ssl);
        return XPB_ETLS;
    }
    s->fd_owned = 0; /* the TLS bev closes it, and frees the SSL */
    s->is_tls = 1;
    s->handshaking = 1;
    /* Servers often close without close_notify; that is an EOF, not an attack
     * on a length-delimited protocol like XMPP. */
    bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
    bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
    if (!s->frozen) bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    return 0;
}

static int stream_starttls(xpb_link *l)
{
    xpb_stream *s = (xpb_stream *)l;
    if (s->is_tls || !s->bev || s->closed) return XPB_EINVAL;
    /* RFC 6120 §5.4.3.3: whatever arrived in plaintext after <proceed/> is
     * discarded, never read as if it came over TLS. */
    struct evbuffer *in = bufferevent_get_input(s->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    return start_tls(s);
}

static int stream_send(xpb_link *l, const char *data, size_t len)
{
    xpb_stream *s = (xpb_stream *)l;
    if (!s->bev || s->closed || s->dead) return XPB_ENOTCONN;
    return bufferevent_write(s->bev, data, len) == 0 ? 0 : XPB_ENOMEM;
}

static void stream_cut(xpb_link *l)
{
    xpb_stream *s = (xpb_stream *)l;
    if (s->fd >= 0) shutdown(s->fd, SHUT_RDWR);
}

static void stream_freeze(xpb_link *l)
{
    xpb_stream *s = (xpb_stream *)l;
    s->frozen = 1;
    if (s->bev) bufferevent_disable(s->bev, EV_READ | EV_WRITE);
}

static void stream_destroy(xpb_stream *s)
{
    if (s->bev) {
        bufferevent_setcb(s->bev, NULL, NULL, NULL, NULL);
        bufferevent_free(s->bev);
    }
    if (s->fd_owned && s->fd >= 0) evutil_closesocket(s->fd);
    free(s);
}

static void stream_free(xpb_link *l)
{
    xpb_stream *s = (xpb_stream *)l;
    if (!s) return;
    s->dead = 1;
    if (s->bev) bufferevent_disable(s->bev, EV_READ | EV_WRITE);
    if (s->in_cb == 0) stream_destroy(s);
}

static const xpb_link_ops stream_ops = {
    .name = "tcp",
    .send = stream_send,
    .starttls = stream_starttls,
    .cut = stream_cut,
    .freeze = stream_freeze,
    .free = stream_free,
};

static void format_peer(char *out, size_t outlen, const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        evutil_inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        port = ntohs(in->sin_port);
        snprintf(out, outlen, "%s:%u", ip, port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
        snprintf(out, outlen, "[%s]:%u", ip, port);
    }
}

static int stream_init(xpb_stream *s, const xpb_stream_params *p)
{
    size_t dl = strlen(p->verify_domain);
    if (dl == 0 || dl >= sizeof s->domain) return XPB_EINVAL;
    if (p->alpn && strlen(p->alpn) >= sizeof s->alpn) return XPB_EINVAL;
    memcpy(s->domain, p->verify_domain, dl + 1);
    if (p->alpn) memcpy(s->alpn, p->alpn, strlen(p->alpn) + 1);
    format_peer(s->peer, sizeof s->peer, p->addr);
    s->fd = socket(p->addr->sa_family, SOCK_STREAM, 0);
    if (s->fd < 0) return XPB_ECONNECT;
    s->fd_owned = 1;
    evutil_make_socket_nonblocking(s->fd);
    evutil_make_socket_closeonexec(s->fd);
    /* Stanzas and XEP-0198 <r/> are small writes a few ms apart: Nagle would
     * hold the <r/> until the server's delayed ACK (~40 ms), and with it the
     * `acked` delivery event. Each write is a whole TLS record anyway. */
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->bev = bufferevent_socket_new(p->base, s->fd, 0);
    if (!s->bev) return XPB_ENOMEM;
    bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    return 0;
}

int xpb_stream_new(xpb_link **out, const xpb_stream_params *p, const xpb_link_cb *cb, void *ud)
{
    if (!out || !p || !p->base || !p->tls || !p->addr || !p->verify_domain || !cb)
        return XPB_EINVAL;
    if (p->addr->sa_family != AF_INET && p->addr->sa_family != AF_INET6) return XPB_EINVAL;
    xpb_stream *s = calloc(1, sizeof *s);
    if (!s) return XPB_ENOMEM;
    s->link.ops = &stream_ops;
    s->base = p->base;
    s->tls = p->tls;
    s->fd = -1;
    s->direct_tls = p->direct_tls;
    s->cb = *cb;
    s->ud = ud;
    int rc = stream_init(s, p);
    /* A refused connect may be reported at once; libevent then calls on_event
     * from the loop, so the caller always gets closed() asynchronously. */
    if (rc == 0 && bufferevent_socket_connect(s->bev, p->addr, (int)p->addr_len) != 0)
        rc = XPB_ECONNECT;
    if (rc != 0) {
        stream_destroy(s);
        return rc;
    }
    *out = &s->link;
    return 0;
}

const char *xpb_tls_library_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}
