/* One XMPP client (c2s) session as a pure state machine: it is fed transport
 * events and received bytes, and answers through a small ops table (send these
 * bytes, start TLS, connect, set a timer, report an event). No sockets, no
 * libevent, no OpenSSL here: bridge/io/loop.c and the transports own those. That
 * is what makes stream negotiation, SASL, stream management (XEP-0198),
 * resumption and every error path testable without a network. */
#ifndef XPB_SESSION_H
#define XPB_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include "xpb_stanza.h"
#include "xpb_xml.h"

/* ---- limits (see docs/architecture.md) ---------------------------------- */
#define XPB_SESSION_DEFAULT_QUEUE_MAX 1000u       /* stanzas waiting for the connection */
#define XPB_SESSION_UNACKED_FACTOR 4u /* and sent, unacked (XEP-0198): up to 4 x queue_max */
#define XPB_SESSION_DEFAULT_PING_INTERVAL_MS 60000u /* XEP-0199 ping after this much silence */
#define XPB_SESSION_DEFAULT_PING_TIMEOUT_MS 20000u  /* no answer -> link is dead */
#define XPB_SESSION_DEFAULT_CONNECT_TIMEOUT_MS 15000u /* connect through bind */
#define XPB_SESSION_DEFAULT_BACKOFF_MIN_MS 500u
#define XPB_SESSION_DEFAULT_BACKOFF_MAX_MS 60000u
/* Online this long before the backoff starts again from backoff_min: a server
 * that drops us right after bind must not get a reconnect every 0.5 s. */
#define XPB_SESSION_DEFAULT_BACKOFF_RESET_MS 60000u
#define XPB_SESSION_DEFAULT_ACK_EVERY 5u            /* send <r/> after this many stanzas */
#define XPB_SESSION_CLOSE_WAIT_MS 2000u             /* wait for the server's </stream:stream> */
/* The session's own stanzas (ping answers, presence, roster) awaiting a
 * XEP-0198 ack; a server that never acks them gets a fresh session instead. */
#define XPB_SESSION_MAX_INTERNAL_UNACKED 1000u
/* XEP-0198 §4: <r/> once the sends of this loop turn are written (the timer
 * runs after them), so a burst gets one request and `acked` follows one round
 * trip after the last send. */
#define XPB_SESSION_ACK_IDLE_MS 1u
#define XPB_SESSION_MAX_REDIRECTS 5u     /* see-other-host in a row (RFC 6120 §4.9.3.19) */
#define XPB_SESSION_ID_MAX 64u           /* bytes of a generated stanza id, NUL included */
#define XPB_SESSION_SM_LOCATION_MAX 256u /* bytes of a kept XEP-0198 location, NUL included */
#define XPB_SESSION_MAX_MECHS 32u        /* SASL <mechanism/> names considered */
/* The session's reused XML buffer (stanzas are written there, then copied
 * at their size) is given back after a stanza that grew it past this, and
 * when the session goes idle: quiet sessions keep no buffer. */
#define XPB_SESSION_WBUF_KEEP 16384u

typedef enum xpb_session_state {
    XPB_SS_IDLE = 0,        /* created, not started */
    XPB_SS_CONNECTING,      /* transport connect in progress */
    XPB_SS_STREAM_OPEN,     /* header sent, waiting for the server's header + features */
    XPB_SS_STARTTLS,        /* <starttls/> sent, waiting for <proceed/> */
    XPB_SS_TLS_HANDSHAKE,   /* <proceed/> received, transport doing the handshake */
    XPB_SS_AUTH,            /* SASL exchange */
    XPB_SS_BIND,            /* resource binding (or SM resume) */
    XPB_SS_ONLINE,          /* stanzas flow */
    XPB_SS_CLOSING,         /* </stream:stream> sent, waiting for the server's */
    XPB_SS_BACKOFF,         /* disconnected, reconnect timer running */
    XPB_SS_STOPPED,         /* closed for good (by the user, or a fatal error) */
} xpb_session_state;

typedef enum xpb_transport_kind {
    XPB_TRANSPORT_STARTTLS = 0, /* TCP, then STARTTLS (required unless allow_plaintext) */
    XPB_TRANSPORT_DIRECT_TLS,   /* XEP-0368: TLS from the first byte */
    XPB_TRANSPORT_WEBSOCKET,    /* RFC 7395: ws:// or wss:// */
} xpb_transport_kind;

/* Where to connect; filled by the session for ops->connect. */
typedef struct xpb_session_target {
    const char *domain;     /* the JID's domain: what TLS must verify */
    const char *host;       /* override, or NULL: the loop resolves SRV for domain */
    uint16_t port;          /* 0 = default / from SRV */
    xpb_transport_kind transport;
    const char *ws_url;     /* WEBSOCKET: ws://host:port/path or wss://... */
    const char *see_other_host; /* set after a see-other-host redirect (RFC 6120 §4.9.3.19):
                                 * the server's text ("host", "host:port", "[v6]:port");
                                 * host/port above then hold the parsed redirect target
                                 * (port 0 = default). TLS still verifies domain. A
                                 * WebSocket <close see-other-uri=''/> (RFC 7395 §3.6.1)
                                 * sets ws_url instead, and see_other_host to the URI. */
} xpb_session_target;

/* XEP-0198 resumption state, kept across a restart of the bridge so that
 * the next process resumes the stream (§5) instead of binding afresh. */
typedef struct xpb_session_sm {
    char id[256];       /* <enabled id=''/>; "" when the stream cannot be resumed */
    char location[XPB_SESSION_SM_LOCATION_MAX]; /* <enabled location=''/>, "" when none (kept, not
                                                   used to connect) */
    uint32_t h_in;      /* stanzas handled, as our last <a h=''/> (or <resume h=''/>) says */
    uint32_t h_acked;   /* our stanzas the server acknowledged */
    char jid[3072];     /* the bound full JID: <resumed/> does not repeat it */
} xpb_session_sm;

typedef struct xpb_session_config {
    const char *jid;            /* bare or full JID; a resource here is requested at bind */
    const unsigned char *password;
    size_t password_len;
    const char *host;           /* NULL = DNS SRV, falling back to the domain on 5222 */
    uint16_t port;
    xpb_transport_kind transport;
    const char *ws_url;
    int allow_plaintext;        /* 0 (default): no TLS -> refuse. Tests of PLAIN-refusal set 1 */
    int fetch_roster;           /* fetch the roster after bind */
    int send_presence;          /* send initial presence after bind (default 1) */
    const char *presence_show;  /* NULL, "away", "chat", "dnd", "xa" */
    const char *presence_status;
    int stream_management;      /* XEP-0198 (default 1) */
    unsigned queue_max;         /* 0 = default */
    unsigned ping_interval_ms, ping_timeout_ms, connect_timeout_ms;
    unsigned backoff_min_ms, backoff_max_ms;
    unsigned backoff_reset_ms;  /* online this long -> backoff back to min (0 = default) */
    unsigned ack_every;
    size_t max_stanza_bytes;    /* largest stanza sent, and longest string in it; 0 = default */
    /* A saved XEP-0198 state (NULL: none; copied by xpb_session_new): the
     * first stream sends <resume/> with it. Since what was sent before the
     * restart is not in this session's queue, <resumed h=''/> is taken as
     * the server's count without releasing anything; queued stanzas are
     * then all sent. On <failed/> the session binds afresh. */
    const xpb_session_sm *resume;
} xpb_session_config;
void xpb_session_config_init(xpb_session_config *c);

/* What the session tells the outside (the bus). Pointers valid during the call. */
typedef enum xpb_session_event_kind {
    XPB_SE_STATE = 1,   /* state changed: state, reason (text, may be NULL) */
    XPB_SE_ONLINE,      /* bound: jid = full JID; resumed = 1 when SM resumption worked */
    XPB_SE_STANZA,      /* a stanza was received: stanza (tree) */
    XPB_SE_ACKED,       /* an outbound stanza was acknowledged by the server (SM): handle */
    XPB_SE_FAILED,      /* an outbound stanza will never be sent: handle, reason */
    XPB_SE_ERROR,       /* an error the user should see (reason), session goes on or stops */
    XPB_SE_SENT,        /* an outbound stanza was written to the stream: handle */
    XPB_SE_SM,          /* the resumption state changed (xpb_session_get_sm): SM enabled or
                         * resumed, or about to tell the server our h; reported before
                         * the <a/>, so a state kept from here never says less than the
                         * server was told (a resume with a lower h fails, XEP-0198 §4) */
} xpb_session_event_kind;

typedef struct xpb_session_event {
    xpb_session_event_kind kind;
    xpb_session_state state;
    const char *reason;
    const char *jid;
    int resumed;
    const xpb_node *stanza;
    size_t stanza_bytes; /* XPB_SE_STANZA: its size as received (xpb_reader_stanza_bytes) */
    uint64_t handle;
    int code;           /* XPB_SE_ERROR / STOPPED: the XPB_E… code (0 when none) */
} xpb_session_event;

/* Timers a session uses; the loop keeps one of each per session. */
typedef enum xpb_session_timer {
    XPB_TIMER_PING = 0,     /* idle -> send ping / ping timeout */
    XPB_TIMER_RECONNECT,    /* backoff elapsed */
    XPB_TIMER_CONNECT,      /* negotiation took too long */
    XPB_TIMER_ACK,          /* request an ack for stanzas sent since */
    XPB_TIMER_CLOSE,        /* the server did not close the stream in time */
    XPB_TIMER_STABLE,       /* online for backoff_reset_ms: the backoff starts over */
    XPB_TIMER_COUNT
} xpb_session_timer;

/* Provided by the loop. Each returns 0 or a negative error. */
typedef struct xpb_session_ops {
    int (*connect)(void *io, const xpb_session_target *t); /* -> on_connected / on_disconnected */
    int (*send)(void *io, const char *data, size_t len);
    int (*starttls)(void *io);                             /* -> on_tls_ready / on_disconnected */
    void (*disconnect)(void *io);                          /* drop the transport now */
    void (*set_timer)(void *io, xpb_session_timer t, unsigned ms); /* ms = 0 cancels */
    void (*event)(void *io, const xpb_session_event *ev);
    uint32_t (*random)(void *io);                          /* jitter, ids */
} xpb_session_ops;

typedef struct xpb_session xpb_session;

/* cfg strings are copied. ops and io are borrowed for the session's life. */
int xpb_session_new(xpb_session **out, const xpb_session_config *cfg, const xpb_session_ops *ops,
                    void *io);
void xpb_session_free(xpb_session *s);
int xpb_session_start(xpb_session *s);

/* Transport events from the loop. */
void xpb_session_on_connected(xpb_session *s, int tls); /* tls: 1 for direct TLS / wss */
/* cb_type/cb_data: channel binding from the TLS layer ("tls-exporter" for TLS 1.3,
 * "tls-server-end-point" otherwise), or NULL/0. */
void xpb_session_on_tls_ready(xpb_session *s, const char *cb_type, const unsigned char *cb_data,
                              size_t cb_len);
/* Received bytes (after TLS / WebSocket de-framing: XML only). */
void xpb_session_on_bytes(xpb_session *s, const char *data, size_t len);
/* The link has been quiet for a while: give back what the next bytes can
 * rebuild (the XML parser, between stanzas). Never changes what is parsed. */
void xpb_session_idle(xpb_session *s);
/* The transport failed or closed; reason is for logs and events. */
void xpb_session_on_disconnected(xpb_session *s, const char *reason);
void xpb_session_on_timer(xpb_session *s, xpb_session_timer t);
/* The TLS layer refused the peer (certificate chain or name, protocol
 * version) in any state, direct TLS included. The session reports XPB_ETLS
 * with reason and stops: a certificate failure is never retried silently.
 * (on_disconnected while in XPB_SS_TLS_HANDSHAKE has the same effect.) For
 * direct TLS / wss the loop may call on_tls_ready before on_connected(s, 1)
 * just to hand over the channel-binding data. */
void xpb_session_on_tls_failed(xpb_session *s, const char *reason);
/* Callbacks (ops->event and the others) must not call xpb_session_free nor feed
 * bytes re-entrantly; they may call xpb_session_send and xpb_session_close. */

/* Send a stanza record (checked; given an id if it has none). Queued while not
 * online, kept until acked with SM. *handle identifies it in ACKED/FAILED.
 * XPB_EQUEUEFULL when queue_max stanzas are waiting. */
int xpb_session_send(xpb_session *s, const xpb_stanza *st, uint64_t *handle);
/* The same for a record that already passed xpb_stanza_check with limits no
 * looser than the session's (default depth, max_string = max_stanza_bytes)
 * and was not changed since, except for an id or origin-id set to a checked
 * string: the check is not run twice (it was a quarter of a send's cost).
 * The XML is still bounded by max_stanza_bytes. */
int xpb_session_send_checked(xpb_session *s, const xpb_stanza *st, uint64_t *handle);
/* A stanza already written as XML for this stream (its namespace: "" on a
 * WebSocket, jabber:client otherwise), under a handle the caller chose:
 * larger than every handle before (several loops: the daemon's proxy gives
 * the handle and the id at once, the worker's session queues the bytes).
 * XPB_EINVAL for a handle not larger, XPB_ETOOBIG past max_stanza_bytes,
 * and the refusals of xpb_session_send. */
int xpb_session_send_xml(xpb_session *s, const char *xml, size_t len, uint64_t handle);
/* The id a stanza sent without one gets: xpb-<r0 r1 in hex>-<counter>, r0
 * and r1 random (the session's own, and the worker loops' proxies'). */
void xpb_session_format_id(char *out, size_t len, uint32_t r0, uint32_t r1, uint64_t counter);
/* Clean shutdown: unavailable presence, </stream:stream>, wait briefly. */
void xpb_session_close(xpb_session *s);
/* The id of the stanza accepted by the last successful xpb_session_send
 * (the record's own or the generated one). Valid until the next send. */
const char *xpb_session_last_id(const xpb_session *s);
/* The size of that stanza as XML on the wire, as queued. */
size_t xpb_session_last_bytes(const xpb_session *s);
/* The bound full JID, or NULL before the first bind. */
const char *xpb_session_jid(const xpb_session *s);

/* The stream's XEP-0198 resumption state: 0 and *out filled when the
 * stream can be resumed, 1 when not (no SM, or the server refused resume). */
int xpb_session_get_sm(const xpb_session *s, xpb_session_sm *out);
/* Just the counters of that state (h in, h acknowledged), without copying it. */
void xpb_session_sm_counts(const xpb_session *s, uint32_t *h_in, uint32_t *h_acked);

/* During an XPB_SE_STANZA event: a copy of its stanza into a, made from the
 * reader's arena at once where it can be (xpb_reader_clone). */
struct xpb_arena;
int xpb_session_clone_stanza(const xpb_session *s, const xpb_node *stanza, struct xpb_arena *a,
                             xpb_node **out);

xpb_session_state xpb_session_get_state(const xpb_session *s);
const char *xpb_session_state_name(xpb_session_state st);
/* Counters for /metrics and tests. */
typedef struct xpb_session_stats {
    uint64_t stanzas_in, stanzas_out, bytes_in, bytes_out;
    uint64_t reconnects, resumptions, resume_failures;
    unsigned queued, unacked;
} xpb_session_stats;
void xpb_session_get_stats(const xpb_session *s, xpb_session_stats *out);
/* The outbound queue's gauges (the queued and unacked of the stats), which
 * the session writes into g each time they change, so that its owner reads
 * them without touching the session (/metrics walks 10,000 accounts). g is
 * the owner's and must outlive the session or be unset (NULL) first; it is
 * filled at once. */
typedef struct xpb_session_gauges {
    /* Atomic: with worker loops the session writes them on its thread and
     * the daemon reads them on its own (xpb_shards). Relaxed is enough: each
     * is a count read on its own. */
    _Atomic unsigned queued, unacked;
} xpb_session_gauges;
void xpb_session_set_gauges(xpb_session *s, xpb_session_gauges *g);

/* Test hooks, not for production. Fix the SCRAM client nonce of the next SASL
 * exchanges (to replay RFC 5802 §5). Set the XEP-0198 counters of a stream
 * with SM on (inbound h, last outbound h the server acknowledged) to test the
 * wrap at 2^32; XPB_EINVAL while stanzas are unacknowledged. */
int xpb_session_test_set_sasl_nonce(xpb_session *s, const char *nonce);
int xpb_session_test_set_sm_counters(xpb_session *s, uint32_t h_in, uint32_t h_acked);

#endif
