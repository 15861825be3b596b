/* Internal to bridge/: the transports under a session (TCP with STARTTLS,
 * direct TLS, WebSocket) behind one small ops table, the SRV resolver, and the
 * pure WebSocket framing codec (RFC 6455) that tests/bridge/test_websocket.c
 * exercises without a network. Only loop.c and the transports include this. */
#ifndef XPB_TRANSPORT_H
#define XPB_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "xpb_xml.h"

struct event_base;

/* ---- links: one live connection of a session ----------------------------- */

/* Upward callbacks, all with the ud given at creation. After closed() the
 * link delivers nothing more; the owner frees it (never inside a callback:
 * xpb_link_free defers the actual release to the loop). */
typedef struct xpb_link_cb {
    void (*connected)(void *ud, int tls); /* TCP up (tls 0), or direct TLS / wss done (1) */
    void (*tls_ready)(void *ud, const char *cb_type, const unsigned char *cb, size_t cb_len);
    void (*bytes)(void *ud, const char *data, size_t len);
    void (*closed)(void *ud, int err, const char *reason); /* err: XPB_E... */
} xpb_link_cb;

typedef struct xpb_link xpb_link;

/* A transport is a table of these (style rule 15). */
typedef struct xpb_link_ops {
    const char *name;
    int (*send)(xpb_link *l, const char *data, size_t len);
    int (*starttls)(xpb_link *l);
    void (*cut)(xpb_link *l);    /* shutdown(SHUT_RDWR): the peer and we see a broken link */
    void (*freeze)(xpb_link *l); /* stop reading and writing, keep the socket open */
    void (*free)(xpb_link *l);   /* silent: no callback after this */
} xpb_link_ops;

struct xpb_link {
    const xpb_link_ops *ops;
};

/* TLS settings shared by the links of every session using the same CA file. */
typedef struct xpb_tls_ctx xpb_tls_ctx;
/* ca_file NULL = the system store. err gets OpenSSL's reason on failure. */
int xpb_tls_ctx_new(xpb_tls_ctx **out, const char *ca_file, char *err, size_t errlen);
void xpb_tls_ctx_free(xpb_tls_ctx *c);

typedef struct xpb_stream_params {
    struct event_base *base;
    xpb_tls_ctx *tls;
    const struct sockaddr *addr; /* where to connect */
    socklen_t addr_len;
    const char *verify_domain;   /* the JID's domain: SNI and certificate name */
    int direct_tls;              /* TLS from the first byte (XEP-0368 / wss) */
    const char *alpn;            /* "xmpp-client", "http/1.1" or NULL */
    unsigned max_read;           /* refuse reads beyond this buffered (0: no limit) */
} xpb_stream_params;

/* TCP (+TLS) stream: tcp_tls.c. */
int xpb_stream_new(xpb_link **out, const xpb_stream_params *p, const xpb_link_cb *cb, void *ud);
/* WebSocket over a stream (websocket.c): url is ws://host[:port]/path or wss://... */
int xpb_ws_link_new(xpb_link **out, const xpb_stream_params *p, const char *url,
                    const xpb_link_cb *cb, void *ud);

/* Helpers from tcp_tls.c so that only it touches OpenSSL. */
int xpb_tls_random_bytes(unsigned char *out, size_t len);
void xpb_tls_sha1(const void *data, size_t len, unsigned char out[20]);
/* Base64 (RFC 4648 §4, with padding); out must hold 4*((len+2)/3)+1 bytes. */
size_t xpb_base64_encode(const unsigned char *in, size_t len, char *out);

/* ---- WebSocket codec (RFC 6455 §5), pure --------------------------------- */
#define XPB_WS_DEFAULT_MAX_MESSAGE (256u * 1024u) /* same as the stanza limit (RFC 6120 §13.12) */
#define XPB_WS_MAX_HANDSHAKE 8192u                /* HTTP response head bytes */
#define XPB_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 §1.3 */

enum {
    XPB_WS_OP_CONT = 0x0,
    XPB_WS_OP_TEXT = 0x1,
    XPB_WS_OP_BINARY = 0x2,
    XPB_WS_OP_CLOSE = 0x8,
    XPB_WS_OP_PING = 0x9,
    XPB_WS_OP_PONG = 0xA,
};

/* One frame header as parsed; payload points into the caller's buffer and is
 * already unmasked when the frame was masked (unmasking happens in place). */
typedef struct xpb_ws_frame {
    int fin;
    int opcode;
    int masked;
    uint64_t payload_len;
    unsigned char *payload;
} xpb_ws_frame;

/* Appends one frame (FIN set) to out. mask NULL = unmasked (server side;
 * only tests use it). Client frames must be masked (RFC 6455 §5.3). */
int xpb_ws_encode(xpb_buf *out, int opcode, const void *data, size_t len,
                  const unsigned char mask[4]);
int xpb_ws_encode_frag(xpb_buf *out, int opcode, int fin, const void *data, size_t len,
                       const unsigned char mask[4]);
/* Parses one frame at buf[0..len): returns bytes consumed (> 0) with *f set,
 * 0 when more bytes are needed, or XPB_EWEBSOCKET (err filled) when the frame
 * breaks RFC 6455 §5.2/§5.5 or its payload exceeds max_payload. Unmasks in place. */
long xpb_ws_parse(unsigned char *buf, size_t len, size_t max_payload, xpb_ws_frame *f, char *err,
                  size_t errlen);

/* Reassembles messages (RFC 6455 §5.4): control frames may come between
 * fragments and are reported on their own. */
typedef struct xpb_ws_assembler {
    xpb_buf msg;     /* the data message being assembled */
    int in_message;  /* a non-FIN data frame was seen */
    int opcode;      /* of the message being assembled */
    size_t max;      /* message limit */
} xpb_ws_assembler;
void xpb_ws_assembler_init(xpb_ws_assembler *a, size_t max);
void xpb_ws_assembler_free(xpb_ws_assembler *a);
/* 1 when the frame completed a message (or is a control frame): *opcode and
 * *data and *len describe it (valid until the next call); 0 when a fragment was
 * stored; XPB_EWEBSOCKET on a sequence error or the size limit. */
int xpb_ws_assemble(xpb_ws_assembler *a, const xpb_ws_frame *f, int *opcode, const char **data,
                    size_t *len, char *err, size_t errlen);

/* Close frame payload (RFC 6455 §5.5.1, §7.4): *code, or 1005 when the
 * payload is empty; XPB_EWEBSOCKET for a 1-byte payload or a code that must
 * not appear on the wire. */
int xpb_ws_parse_close(const unsigned char *p, size_t len, unsigned *code);

/* Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2 step 5.4); out holds 29 bytes. */
void xpb_ws_accept_for_key(const char *key, char out[29]);
/* The client's opening handshake (RFC 6455 §4.1, RFC 7395 §3.1). */
int xpb_ws_write_request(xpb_buf *out, const char *host_header, const char *path,
                         const char *key);
/* Checks the server's handshake response in buf[0..len): returns the length of
 * the response head (> 0) when it is complete and valid (101, Upgrade,
 * Connection, Sec-WebSocket-Accept matching key, Sec-WebSocket-Protocol: xmpp),
 * 0 when more bytes are needed, XPB_EWEBSOCKET with err filled otherwise. */
long xpb_ws_check_response(const char *buf, size_t len, const char *key, char *err,
                           size_t errlen);

/* Splits ws://host[:port]/path and wss://...: host (no brackets), port
 * (default 80/443), path (default "/"), tls. */
int xpb_ws_parse_url(const char *url, char *host, size_t hostlen, uint16_t *port, char *path,
                     size_t pathlen, int *tls);

/* ---- DNS: SRV and addresses via c-ares in the loop (dns.c) --------------- */
#define XPB_DNS_MAX_TARGETS 16u
typedef struct xpb_dns xpb_dns;
typedef struct xpb_dns_query xpb_dns_query;

typedef struct xpb_dns_target {
    char host[256];
    uint16_t port;
    int direct_tls; /* from _xmpps-client (XEP-0368) */
} xpb_dns_target;

/* err 0 with n >= 1 targets, in the order to try; never called after cancel. */
typedef void (*xpb_dns_srv_cb)(void *ud, int err, const xpb_dns_target *t, size_t n);
typedef void (*xpb_dns_addr_cb)(void *ud, int err, const struct sockaddr_storage *addrs,
                                size_t n);

int xpb_dns_new(xpb_dns **out, struct event_base *base);
void xpb_dns_free(xpb_dns *d);
/* SRV for _xmpps-client._tcp (when want_direct) and _xmpp-client._tcp (when
 * want_starttls) of domain, sorted (RFC 2782); no usable record -> domain on
 * 5222 (or 5223 for direct TLS only). */
int xpb_dns_srv(xpb_dns *d, const char *domain, int want_starttls, int want_direct,
                xpb_dns_srv_cb cb, void *ud, xpb_dns_query **q);
/* A and AAAA for host; port set in every address. */
int xpb_dns_addr(xpb_dns *d, const char *host, uint16_t port, xpb_dns_addr_cb cb, void *ud,
                 xpb_dns_query **q);
/* The callback will not be called; the query is released when c-ares is done. */
void xpb_dns_cancel(xpb_dns_query *q);
/* Ask these servers instead of resolv.conf's nameservers
 * (xpb_loop_config.dns_servers; the SRV integration test points it at its
 * dnsmasq). csv: "host[:port],..." as c-ares takes it ("127.0.0.1:5353",
 * "[::1]:53"). XPB_EINVAL when malformed. */
int xpb_dns_set_servers(xpb_dns *d, const char *csv);

/* The running OpenSSL and c-ares versions, for xpb_loop_versions. */
const char *xpb_tls_library_version(void);
const char *xpb_dns_library_version(void);

#endif
