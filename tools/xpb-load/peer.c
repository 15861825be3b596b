/* xpb-load's peer: a small libstrophe client doing the bridge's inbound and
 * outbound work against the same test server in the same run, so the figures
 * compare on one machine and one moment. Direct TLS (XEP-0368) with the test
 * certificate as its CA, SASL PLAIN, bind, XEP-0198 as libstrophe does it. */
#include <stdio.h>
#include <string.h>

#include <strophe.h>

#include "load.h"

#define PEER_STALL_NS 10000000000ull /* no progress this long: the run failed */
#define PEER_CONNECT_NS 15000000000ull
#define PEER_QUEUE 256 /* stanzas queued in libstrophe at once */

typedef struct peer {
    xmpp_ctx_t *ctx;
    xmpp_conn_t *conn;
    int online, failed;
    uint64_t got;
} peer;

static void on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int err, xmpp_stream_error_t *se,
                    void *ud)
{
    (void)conn, (void)err, (void)se;
    peer *p = ud;
    if (ev == XMPP_CONN_CONNECT)
        p->online = 1;
    else
        p->failed = 1;
}

static int on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    (void)conn, (void)st;
    ((peer *)ud)->got++;
    return 1;
}

static int peer_open(peer *p, int port, const char *ca_file, const char *user)
{
    char jid[128];
    snprintf(jid, sizeof(jid), "%s@" LOAD_DOMAIN "/peer", user);
    memset(p, 0, sizeof(*p));
    p->ctx = xmpp_ctx_new(NULL, NULL);
    p->conn = p->ctx ? xmpp_conn_new(p->ctx) : NULL;
    if (!p->conn) return -1;
    xmpp_conn_set_jid(p->conn, jid);
    xmpp_conn_set_pass(p->conn, LOAD_PASSWORD);
    xmpp_conn_set_flags(p->conn, XMPP_CONN_FLAG_LEGACY_SSL | XMPP_CONN_FLAG_MANDATORY_TLS);
    xmpp_conn_set_cafile(p->conn, ca_file);
    xmpp_handler_add(p->conn, on_message, NULL, "message", NULL, p);
    if (xmpp_connect_client(p->conn, "127.0.0.1", (unsigned short)port, on_conn, p)) return -1;
    uint64_t t0 = load_now_ns();
    while (!p->online && !p->failed && load_now_ns() - t0 < PEER_CONNECT_NS)
        xmpp_run_once(p->ctx, 10);
    return p->online ? 0 : -1;
}

static void peer_close(peer *p)
{
    if (p->conn) {
        if (p->online && !p->failed) {
            xmpp_disconnect(p->conn);
            for (int i = 0; i < 100 && !p->failed; i++)
                xmpp_run_once(p->ctx, 10);
        }
        xmpp_conn_release(p->conn);
    }
    if (p->ctx) xmpp_ctx_free(p->ctx);
}

static double rate(uint64_t n, uint64_t t0, uint64_t t1)
{
    return t1 > t0 ? (double)n * 1e9 / (double)(t1 - t0) : -1;
}

double peer_inbound(lsrv *srv, const char *ca_file, const char *user, uint64_t n)
{
    peer p;
    double r = -1;
    if (!peer_open(&p, lsrv_port(srv), ca_file, user) && !lsrv_flood(srv, user, n)) {
        uint64_t t0 = load_now_ns(), seen = 0, t_seen = t0;
        while (p.got < n && !p.failed && load_now_ns() - t_seen < PEER_STALL_NS) {
            xmpp_run_once(p.ctx, 1);
            if (p.got != seen) seen = p.got, t_seen = load_now_ns();
        }
        if (p.got >= n)
            r = rate(n, t0, t_seen);
        else
            fprintf(stderr, "xpb-load: libstrophe peer got %llu of %llu messages\n",
                    (unsigned long long)p.got, (unsigned long long)n);
    }
    peer_close(&p);
    return r;
}

static void send_some(peer *p, uint64_t *sent, uint64_t n)
{
    char id[32], body[64];
    while (*sent < n && xmpp_conn_send_queue_len(p->conn) < PEER_QUEUE) {
        snprintf(id, sizeof(id), "p%llu", (unsigned long long)*sent);
        snprintf(body, sizeof(body), "load message %llu", (unsigned long long)*sent);
        xmpp_stanza_t *m = xmpp_message_new(p->ctx, "chat", "peer@" LOAD_DOMAIN, id);
        if (!m) return;
        xmpp_message_set_body(m, body);
        xmpp_send(p->conn, m);
        xmpp_stanza_release(m);
        (*sent)++;
    }
}

double peer_outbound(lsrv *srv, const char *ca_file, const char *user, uint64_t n)
{
    peer p;
    double r = -1;
    if (!peer_open(&p, lsrv_port(srv), ca_file, user)) {
        uint64_t base = lsrv_received(srv, user), sent = 0, got = 0, t0 = load_now_ns();
        uint64_t t_seen = t0;
        while (got < n && !p.failed && load_now_ns() - t_seen < PEER_STALL_NS) {
            send_some(&p, &sent, n);
            xmpp_run_once(p.ctx, 1);
            uint64_t g = lsrv_received(srv, user) - base;
            if (g != got) got = g, t_seen = load_now_ns();
        }
        if (got >= n)
            r = rate(n, t0, t_seen);
        else
            fprintf(stderr, "xpb-load: the server got %llu of the libstrophe peer's %llu\n",
                    (unsigned long long)got, (unsigned long long)n);
    }
    peer_close(&p);
    return r;
}
