/* Client side of SASL for XMPP (RFC 6120 §6) as a pure state machine: the
 * session engine feeds it the server's mechanisms and challenges and sends what
 * it returns. SCRAM-SHA-256/-SHA-1 with and without channel binding (RFC 5802,
 * RFC 7677, RFC 9266) and PLAIN (RFC 4616, over TLS only). No I/O, no globals.
 *
 * Typical use:
 *   xpb_sasl_config cfg; xpb_sasl_config_init(&cfg); cfg.authcid = ...;
 *   xpb_sasl_new(&s, &cfg);
 *   xpb_sasl_select(s, offered, n, &mech);          -> <auth mechanism=mech>
 *   xpb_sasl_start(s, &out, &len);                  -> base64 in <auth>
 *   on <challenge>: xpb_sasl_step(s, in, ilen, &out, &len) -> <response>
 *   on <success>:   xpb_sasl_finish(s, data, dlen)  -> 0 only if authenticated
 *   xpb_sasl_free(s);
 * Wire text is base64 (RFC 6120 §6.4.2): use xpb_sasl_b64_encode/decode. */
#ifndef XPB_SASL_H
#define XPB_SASL_H

#include <stddef.h>
#include <stdint.h>

/* RFC 7677 §4 recommends at least 4096 iterations; fewer is refused. */
#define XPB_SASL_MIN_ITERATIONS 4096u
/* A hostile server could ask for billions of PBKDF2 rounds; cap the work. */
#define XPB_SASL_MAX_ITERATIONS 1000000u
/* authcid, authzid and password are each at most this many bytes (RFC 4616 §2
 * only obliges servers to take 255 octets; we allow more for SCRAM). */
#define XPB_SASL_FIELD_MAX 1024u
/* Channel-binding data (RFC 9266 tls-exporter: 32 bytes; tls-server-end-point:
 * a certificate hash, at most 64 bytes). */
#define XPB_SASL_CB_MAX 128u
/* Largest server message (decoded challenge / success data) we parse. */
#define XPB_SASL_MSG_MAX 4096u
/* Salt length bound (servers use 16-32 bytes). */
#define XPB_SASL_SALT_MAX 256u

typedef struct xpb_sasl xpb_sasl;
typedef struct xpb_sasl_cache xpb_sasl_cache;

typedef struct xpb_sasl_config {
    const char *authcid;           /* username, UTF-8, NUL-terminated; required. Pass it
                                      already PRECIS-prepared (e.g. a JID localpart from
                                      xpb_jid_parse); only prohibited characters are checked */
    const unsigned char *password; /* password bytes (UTF-8); may contain no NUL */
    size_t password_len;
    const char *authzid;          /* optional authorization identity, NULL for none */
    int tls;                      /* nonzero when the stream is TLS-protected */
    const char *cb_type;          /* "tls-exporter", "tls-unique" or "tls-server-end-point",
                                     or NULL */
    const unsigned char *cb_data; /* channel-binding data for cb_type (needs tls) */
    size_t cb_data_len;           /* 0 = no channel binding available */
    int allow_plain;              /* PLAIN allowed (still only over TLS); default 1 */
    /* The channel-binding types the server listed in its stream features
     * (XEP-0440 <sasl-channel-binding/>), or NULL when it listed none. -PLUS
     * is used only when the server can check our cb_type: it is listed, or,
     * with no list, it is tls-unique (TLS 1.2's default, RFC 5929; on TLS 1.3
     * servers that predate RFC 9266 bind -PLUS to something else than
     * tls-exporter, so there we need the list). Borrowed for xpb_sasl_new
     * only. */
    const char *const *server_cb_types;
    size_t n_server_cb_types;
    xpb_sasl_cache *cache;        /* optional SaltedPassword cache, NULL for none;
                                     borrowed: must outlive the xpb_sasl */
} xpb_sasl_config;

/* Fill *cfg with defaults: everything empty, allow_plain = 1. */
void xpb_sasl_config_init(xpb_sasl_config *cfg);

/* Create a client. Every string and byte array in cfg is copied, so the caller
 * may wipe its own copy of the password right after. XPB_EINVAL for a missing
 * or over-long field, an unknown cb_type, or cb data without TLS;
 * XPB_ESASLCRED when the username or authzid has a prohibited character. */
int xpb_sasl_new(xpb_sasl **out, const xpb_sasl_config *cfg);
/* Wipes every secret (password, keys, messages) and frees. NULL is fine. */
void xpb_sasl_free(xpb_sasl *s);

/* Choose among the server's <mechanism/> names, strongest first:
 * SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS (both only with channel-binding data),
 * SCRAM-SHA-256, SCRAM-SHA-1, PLAIN (only over TLS and if allowed).
 * *chosen points to a static string. XPB_ESASLNOMECH when nothing fits; then
 * xpb_sasl_error() lists what was offered and why each was refused. */
int xpb_sasl_select(xpb_sasl *s, const char *const *offered, size_t n, const char **chosen);

/* The initial response for <auth/> (raw bytes, not base64). *out is owned by s
 * and valid until the next call on s; it may hold the password (PLAIN), so do
 * not keep copies longer than needed. */
int xpb_sasl_start(xpb_sasl *s, const unsigned char **out, size_t *out_len);

/* Answer a decoded <challenge/>. *out as for xpb_sasl_start; *out_len may be 0
 * (send "=" on the wire). A SCRAM server-final sent as a challenge is verified
 * here and answered with an empty response (RFC 4422 §5 point 3c). */
int xpb_sasl_step(xpb_sasl *s, const unsigned char *in, size_t in_len, const unsigned char **out,
                  size_t *out_len);

/* The decoded additional data of <success/> (len 0 when none). Returns 0 only
 * when authentication is complete and, for SCRAM, the server signature
 * verified (RFC 5802 §5.1: a client MUST NOT trust an unverified success). */
int xpb_sasl_finish(xpb_sasl *s, const unsigned char *data, size_t len);

/* Detail message for the last error ("" if none). Never contains the password
 * or the username. Owned by s. */
const char *xpb_sasl_error(const xpb_sasl *s);

/* Base64 (RFC 4648 §4) for the XMPP wire. Empty data encodes to "=" (RFC 6120
 * §6.4.2); "=" and "" decode to zero bytes. *out is malloc'd, NUL-terminated,
 * never NULL on success; caller frees. Decoding is strict: no whitespace, no
 * characters outside the alphabet, padding only at the end, pad bits zero
 * (RFC 4648 §3.5) (XPB_ESASLBASE64). */
int xpb_sasl_b64_encode(const unsigned char *in, size_t len, char **out, size_t *out_len);
int xpb_sasl_b64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len);

/* SaltedPassword cache (RFC 5802 §5.1 allows caching it): remembers the last
 * PBKDF2 result keyed by hash, salt, iteration count and password, so a
 * reconnect skips the key stretching. Not thread-safe; one per account. */
int xpb_sasl_cache_new(xpb_sasl_cache **out);
void xpb_sasl_cache_free(xpb_sasl_cache *c); /* wipes the stored key */
/* Number of PBKDF2 runs the cache saved (for tests and metrics). */
uint64_t xpb_sasl_cache_hits(const xpb_sasl_cache *c);

/* Test hooks, not for production. Set the client nonce (printable ASCII, no
 * ',') before xpb_sasl_start, to replay the RFC examples. */
int xpb_sasl_test_set_nonce(xpb_sasl *s, const char *nonce);
/* Lower the minimum iteration count (default XPB_SASL_MIN_ITERATIONS). */
void xpb_sasl_test_set_min_iterations(xpb_sasl *s, uint32_t min);

#endif
