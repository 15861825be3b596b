/* Client side of SASL for XMPP (RFC 6120 §6): mechanism choice, SCRAM (RFC 5802,
 * RFC 7677, channel binding per RFC 9266) and PLAIN (RFC 4616) as a pure state
 * machine. Only libcrypto is used: RAND_bytes, PBKDF2, HMAC, CRYPTO_memcmp.
 * Base64 is in sasl_base64.c, the SaltedPassword cache in sasl_cache.c. */
#include "xpb_error.h"
#include "xpb_sasl.h"
#include "sasl_cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONCE_BYTES 24 /* entropy in the client nonce (RFC 5802 §5.1 wants it unpredictable) */
#define NONCE_MAX 64   /* printable characters of the client nonce */
#define ERR_MAX 512

/* Mechanisms in preference order: channel binding first, then hash strength. */
enum mech { M_SHA256_PLUS, M_SHA1_PLUS, M_SHA256, M_SHA1, M_PLAIN, M_COUNT, M_NONE = -1 };

static const struct mech_info {
    const char *name;
    int scram; /* 1 for SCRAM */
    int plus;  /* 1 for channel binding */
    int sha256;
} mechs[M_COUNT] = {
    [M_SHA256_PLUS] = {"SCRAM-SHA-256-PLUS", 1, 1, 1},
    [M_SHA1_PLUS] = {"SCRAM-SHA-1-PLUS", 1, 1, 0},
    [M_SHA256] = {"SCRAM-SHA-256", 1, 0, 1},
    [M_SHA1] = {"SCRAM-SHA-1", 1, 0, 0},
    [M_PLAIN] = {"PLAIN", 0, 0, 0},
};

enum state {
    ST_NEW,        /* nothing chosen yet */
    ST_SELECTED,   /* mechanism chosen, initial response not produced */
    ST_WAIT_FIRST, /* SCRAM client-first sent, expecting server-first */
    ST_WAIT_FINAL, /* SCRAM client-final sent, expecting server-final */
    ST_VERIFIED,   /* SCRAM server signature verified, expecting <success/> */
    ST_WAIT_PLAIN, /* PLAIN sent, expecting <success/> */
    ST_DONE,
    ST_FAILED,
};

struct xpb_sasl {
    enum state st;
    enum mech mech;
    char *authcid;
    char *authzid; /* NULL when absent */
    unsigned char *password;
    size_t password_len;
    int tls, allow_plain;
    const char *cb_type; /* static string, NULL when no channel binding */
    int cb_usable;       /* the server can check cb_type (see cb_usable()) */
    int cb_listed;       /* the server listed its types (XEP-0440) */
    unsigned char *cb_data;
    size_t cb_len;
    char gs2_flag; /* 'p', 'y' or 'n' (RFC 5802 §7 gs2-cbind-flag) */
    char nonce[NONCE_MAX + 1];
    size_t nonce_len;
    uint32_t min_iter;
    char *first_bare; /* client-first-message-bare, part of AuthMessage */
    size_t first_bare_len;
    unsigned char server_sig[EVP_MAX_MD_SIZE];
    size_t sig_len;
    unsigned char *out; /* last output, wiped when replaced */
    size_t out_len;
    xpb_sasl_cache *cache;
    char err[ERR_MAX];
};

/* ---- small helpers ------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static int set_err(xpb_sasl *s, int code, const char *fmt,
                                                         ...)
{
    va_list ap;
    int n = snprintf(s->err, sizeof s->err, "%s: ", xpb_strerror(code));
    if (n < 0 || (size_t)n >= sizeof s->err) return code;
    va_start(ap, fmt);
    vsnprintf(s->err + n, sizeof s->err - (size_t)n, fmt, ap);
    va_end(ap);
    return code;
}

/* Record the error and stop: a failed exchange cannot be resumed. */
#define FAIL(s, code, ...) ((s)->st = ST_FAILED, set_err((s), (code), __VA_ARGS__))

static void wipe_free(void *p, size_t len)
{
    if (p) OPENSSL_cleanse(p, len);
    free(p);
}

static void *dup_bytes(const void *p, size_t len)
{
    unsigned char *d = malloc(len + 1);
    if (!d) return NULL;
    if (len) memcpy(d, p, len);
    d[len] = 0;
    return d;
}

/* Replace the output buffer; the old one may hold a password (PLAIN). */
static void set_out(xpb_sasl *s, unsigned char *p, size_t len)
{
    wipe_free(s->out, s->out_len);
    s->out = p;
    s->out_len = len;
}

static const EVP_MD *mech_md(const xpb_sasl *s)
{
    return mechs[s->mech].sha256 ? EVP_sha256() : EVP_sha1();
}

/* Copy an untrusted server string into dst for an error message: printable
 * ASCII only, truncated. */
static void sanitize(char *dst, size_t dstlen, const char *src, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 1 < dstlen; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[j] = 0;
}

/* ---- configuration and lifetime ----------------------------------------- */

void xpb_sasl_config_init(xpb_sasl_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->allow_plain = 1;
}

/* Length of the UTF-8 sequence at p (RFC 3629 §4: no overlongs, surrogates or
 * code points above U+10FFFF), or 0 when invalid. */
static size_t utf8_len(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    size_t n = c < 0x80                 ? 1
               : c >= 0xc2 && c <= 0xdf ? 2
               : (c & 0xf0) == 0xe0     ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
    if (n == 0 || n > avail) return 0;
    for (size_t k = 1; k < n; k++)
        if ((p[k] & 0xc0) != 0x80) return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) || (c == 0xf0 && p[1] < 0x90) ||
        (c == 0xf4 && p[1] > 0x8f))
        return 0;
    return n;
}

/* SASLprep (RFC 4013 §2.3) prohibits control characters; we also need valid
 * UTF-8. Other mapping is left to the caller's PRECIS preparation. */
static int check_identity(const char *str, size_t len)
{
    const unsigned char *p = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_len(p + i, len - i);
        if (n == 0) return -1;
        if (p[i] < 0x20 || p[i] == 0x7f) return -1;     /* C0 controls, DEL */
        if (p[i] == 0xc2 && p[i + 1] < 0xa0) return -1; /* C1 controls */
        i += n;
    }
    return 0;
}

static int copy_identities(xpb_sasl *s, const xpb_sasl_config *cfg)
{
    size_t ulen = strlen(cfg->authcid);
    size_t zlen = cfg->authzid ? strlen(cfg->authzid) : 0;
    if (ulen == 0 || ulen > XPB_SASL_FIELD_MAX || zlen > XPB_SASL_FIELD_MAX)
        return set_err(s, XPB_EINVAL, "username must be 1..%u bytes, authzid at most %u",
                       XPB_SASL_FIELD_MAX, XPB_SASL_FIELD_MAX);
    if (check_identity(cfg->authcid, ulen) < 0)
        return set_err(s, XPB_ESASLCRED, "username is not valid UTF-8 or has a control character");
    if (cfg->authzid && check_identity(cfg->authzid, zlen) < 0)
        return set_err(s, XPB_ESASLCRED, "authzid is not valid UTF-8 or has a control character");
    if (!(s->authcid = dup_bytes(cfg->authcid, ulen))) return XPB_ENOMEM;
    if (cfg->authzid && zlen && !(s->authzid = dup_bytes(cfg->authzid, zlen))) return XPB_ENOMEM;
    return 0;
}

static int copy_password(xpb_sasl *s, const xpb_sasl_config *cfg)
{
    if (cfg->password_len > XPB_SASL_FIELD_MAX || (cfg->password_len && !cfg->password))
        return set_err(s, XPB_EINVAL, "password must be at most %u bytes", XPB_SASL_FIELD_MAX);
    if (cfg->password_len && memchr(cfg->password, 0, cfg->password_len))
        return set_err(s, XPB_ESASLCRED, "password contains a NUL byte");
    if (!(s->password = dup_bytes(cfg->password, cfg->password_len))) return XPB_ENOMEM;
    s->password_len = cfg->password_len;
    return 0;
}

static int copy_cb(xpb_sasl *s, const xpb_sasl_config *cfg)
{
    if (cfg->cb_data_len == 0 || !cfg->cb_type) return 0; /* no channel binding */
    if (!cfg->cb_data || cfg->cb_data_len > XPB_SASL_CB_MAX)
        return set_err(s, XPB_EINVAL, "channel-binding data must be 1..%u bytes", XPB_SASL_CB_MAX);
    if (!cfg->tls)
        return set_err(s, XPB_EINVAL, "channel-binding data given but the stream is not TLS");
    if (strcmp(cfg->cb_type, "tls-exporter") == 0)
        s->cb_type = "tls-exporter"; /* RFC 9266 */
    else if (strcmp(cfg->cb_type, "tls-server-end-point") == 0)
        s->cb_type = "tls-server-end-point"; /* RFC 5929 §4 */
    else if (strcmp(cfg->cb_type, "tls-unique") == 0)
        s->cb_type = "tls-unique"; /* RFC 5929 §3, TLS 1.2 with extended master secret */
    else
        return set_err(s, XPB_EINVAL, "unsupported channel-binding type");
    if (!(s->cb_data = dup_bytes(cfg->cb_data, cfg->cb_data_len))) return XPB_ENOMEM;
    s->cb_len = cfg->cb_data_len;
    return 0;
}

/* Whether the server can verify a binding of type ours (xpb_sasl_config). */
static int cb_usable(const char *ours, const xpb_sasl_config *cfg)
{
    if (!ours) return 0;
    /* No list: only TLS 1.2's default, tls-unique (RFC 5929). RFC 9266 makes
     * tls-exporter TLS 1.3's default, but servers that predate it bind -PLUS
     * to something else there (ejabberd 23.01 offers SCRAM-SHA-1-PLUS over
     * TLS 1.3 and refuses tls-exporter): on 1.3 we bind only when listed. */
    if (!cfg->server_cb_types) return strcmp(ours, "tls-unique") == 0;
    for (size_t i = 0; i < cfg->n_server_cb_types; i++)
        if (cfg->server_cb_types[i] && strcmp(cfg->server_cb_types[i], ours) == 0) return 1;
    return 0;
}

int xpb_sasl_new(xpb_sasl **out, const xpb_sasl_config *cfg)
{
    if (!out || !cfg || !cfg->authcid) return XPB_EINVAL;
    *out = NULL;
    xpb_sasl *s = calloc(1, sizeof *s);
    if (!s) return XPB_ENOMEM;
    s->mech = M_NONE;
    s->tls = cfg->tls != 0;
    s->allow_plain = cfg->allow_plain != 0;
    s->min_iter = XPB_SASL_MIN_ITERATIONS;
    s->cache = cfg->cache;
    int rc = copy_identities(s, cfg);
    if (rc == 0) rc = copy_password(s, cfg);
    if (rc == 0) rc = copy_cb(s, cfg);
    s->cb_usable = cb_usable(s->cb_type, cfg);
    s->cb_listed = cfg->server_cb_types != NULL;
    if (rc != 0) {
        xpb_sasl_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void xpb_sasl_free(xpb_sasl *s)
{
    if (!s) return;
    wipe_free(s->authcid, s->authcid ? strlen(s->authcid) : 0);
    wipe_free(s->authzid, s->authzid ? strlen(s->authzid) : 0);
    wipe_free(s->password, s->password_len);
    wipe_free(s->cb_data, s->cb_len);
    wipe_free(s->first_bare, s->first_bare_len);
    wipe_free(s->out, s->out_len);
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

const char *xpb_sasl_error(const xpb_sasl *s)
{
    return s ? s->err : "";
}

int xpb_sasl_test_set_nonce(xpb_sasl *s, const char *nonce)
{
    size_t len = nonce ? strlen(nonce) : 0;
    if (!s || len == 0 || len > NONCE_MAX) return XPB_EINVAL;
    for (size_t i = 0; i < len; i++)
        if (nonce[i] < 0x21 || nonce[i] > 0x7e || nonce[i] == ',') return XPB_EINVAL;
    memcpy(s->nonce, nonce, len + 1);
    s->nonce_len = len;
    return 0;
}

void xpb_sasl_test_set_min_iterations(xpb_sasl *s, uint32_t min)
{
    if (s) s->min_iter = min ? min : 1;
}

/* ---- mechanism selection (RFC 6120 §6.3.3) ------------------------------ */

/* Why mechanism m cannot be used here, or NULL when it can. */
static const char *refusal(const xpb_sasl *s, enum mech m)
{
    if (m == M_NONE) return "the mechanism is not supported";
    if (mechs[m].plus && !s->cb_type) return "no channel-binding data is available";
    if (mechs[m].plus && !s->cb_usable)
        return s->cb_listed ? "the server's channel-binding types (XEP-0440) do not include ours"
                            : "the server does not list its channel-binding types (XEP-0440), "
                              "and without a list we bind only to tls-unique (TLS 1.2 with the "
                              "extended master secret)";
    if (m == M_PLAIN && !s->tls) return "the stream is not TLS-protected";
    if (m == M_PLAIN && !s->allow_plain) return "PLAIN is disabled by configuration";
    return NULL;
}

static enum mech lookup(const char *name)
{
    for (int m = 0; m < M_COUNT; m++)
        if (name && strcmp(name, mechs[m].name) == 0) return (enum mech)m;
    return M_NONE;
}

static void append(char *buf, size_t cap, size_t *len, const char *a, const char *b)
{
    if (*len >= cap) return;
    int n = snprintf(buf + *len, cap - *len, "%s%s", a, b);
    if (n > 0) *len += (size_t)n;
}

/* Name every offered mechanism and the reason it was refused. */
static int explain_refusal(xpb_sasl *s, const char *const *offered, size_t n)
{
    char msg[ERR_MAX], name[48];
    size_t len = 0;
    if (n == 0) return set_err(s, XPB_ESASLNOMECH, "server offers no mechanism");
    if (n == 1) {
        sanitize(name, sizeof name, offered[0] ? offered[0] : "",
                 offered[0] ? strlen(offered[0]) : 0);
        return set_err(s, XPB_ESASLNOMECH, "server offers only %s and %s", name,
                       refusal(s, lookup(offered[0])));
    }
    msg[0] = 0;
    for (size_t i = 0; i < n; i++) {
        const char *o = offered[i] ? offered[i] : "";
        sanitize(name, sizeof name, o, strlen(o));
        append(msg, sizeof msg, &len, i ? "; " : "", name);
        append(msg, sizeof msg, &len, " refused because ", refusal(s, lookup(o)));
    }
    return set_err(s, XPB_ESASLNOMECH, "server offers %zu mechanisms: %s", n, msg);
}

/* Any -PLUS mechanism among those offered, known to us or not. */
static int offers_plus(const char *const *offered, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = offered[i] ? strlen(offered[i]) : 0;
        if (len > 5 && strcmp(offered[i] + len - 5, "-PLUS") == 0) return 1;
    }
    return 0;
}

int xpb_sasl_select(xpb_sasl *s, const char *const *offered, size_t n, const char **chosen)
{
    if (!s || (n && !offered) || !chosen) return XPB_EINVAL;
    if (s->st != ST_NEW && s->st != ST_SELECTED)
        return set_err(s, XPB_ESASLSTATE, "select after the exchange started");
    int seen[M_COUNT] = {0};
    for (size_t i = 0; i < n; i++) {
        enum mech m = lookup(offered[i]);
        if (m != M_NONE) seen[m] = 1;
    }
    for (int m = 0; m < M_COUNT; m++) {
        if (!seen[m] || refusal(s, (enum mech)m)) continue;
        s->mech = (enum mech)m;
        /* RFC 5802 §6: 'y' tells a server that hides -PLUS that we could have
         * bound, so a stripped mechanism list is detected (downgrade). When it
         * does offer -PLUS but with a binding we cannot make, 'y' would look
         * like that attack to it: 'n', we do not support its binding. */
        s->gs2_flag = mechs[m].plus              ? 'p'
                      : s->cb_type && !offers_plus(offered, n) ? 'y'
                                                               : 'n';
        s->st = ST_SELECTED;
        *chosen = mechs[m].name;
        return 0;
    }
    return explain_refusal(s, offered, n);
}

/* ---- growable byte buffer for building messages -------------------------- */

typedef struct {
    unsigned char *p;
    size_t len, cap;
    int oom;
} buf;

static void buf_add(buf *b, const void *d, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        unsigned char *p = malloc(cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        if (b->len) memcpy(p, b->p, b->len);
        wipe_free(b->p, b->cap); /* may hold secrets: never realloc */
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_str(buf *b, const char *str)
{
    buf_add(b, str, strlen(str));
}

static void buf_wipe(buf *b)
{
    wipe_free(b->p, b->cap);
    memset(b, 0, sizeof *b);
}

/* saslname (RFC 5802 §5.1): ',' and '=' are sent as "=2C" and "=3D". */
static void buf_saslname(buf *b, const char *name)
{
    for (const char *p = name; *p; p++) {
        if (*p == ',')
            buf_str(b, "=2C");
        else if (*p == '=')
            buf_str(b, "=3D");
        else
            buf_add(b, p, 1);
    }
}

/* gs2-header (RFC 5802 §7): cbind flag, optional a=authzid, then ','. */
static void buf_gs2_header(xpb_sasl *s, buf *b)
{
    if (s->gs2_flag == 'p') {
        buf_str(b, "p=");
        buf_str(b, s->cb_type);
    } else {
        buf_add(b, &s->gs2_flag, 1);
    }
    buf_str(b, ",");
    if (s->authzid) {
        buf_str(b, "a=");
        buf_saslname(b, s->authzid);
    }
    buf_str(b, ",");
}

/* Hand the buffer over as the output of this call. */
static int emit(xpb_sasl *s, buf *b, const unsigned char **out, size_t *out_len)
{
    if (b->oom) {
        buf_wipe(b);
        return FAIL(s, XPB_ENOMEM, "building the SASL message");
    }
    set_out(s, b->p, b->len);
    memset(b, 0, sizeof *b);
    *out = s->out ? s->out : (const unsigned char *)"";
    *out_len = s->out_len;
    return 0;
}

/* ---- initial response ---------------------------------------------------- */

static int start_plain(xpb_sasl *s, const unsigned char **out, size_t *out_len)
{
    buf b = {0};
    static const unsigned char nul = 0;
    /* RFC 4616 §2: [authzid] NUL authcid NUL passwd */
    if (s->authzid) buf_str(&b, s->authzid);
    buf_add(&b, &nul, 1);
    buf_str(&b, s->authcid);
    buf_add(&b, &nul, 1);
    buf_add(&b, s->password, s->password_len);
    s->st = ST_WAIT_PLAIN;
    return emit(s, &b, out, out_len);
}

static int make_nonce(xpb_sasl *s)
{
    unsigned char raw[NONCE_BYTES];
    char *enc = NULL;
    size_t len = 0;
    if (s->nonce_len) return 0; /* injected by a test */
    if (RAND_bytes(raw, sizeof raw) != 1)
        return FAIL(s, XPB_ESASLCRYPTO, "RAND_bytes failed for the client nonce");
    int rc = xpb_sasl_b64_encode(raw, sizeof raw, &enc, &len);
    if (rc != 0) return FAIL(s, rc, "encoding the client nonce");
    memcpy(s->nonce, enc, len + 1); /* 32 characters of base64, no ',' */
    s->nonce_len = len;
    free(enc);
    return 0;
}

static int start_scram(xpb_sasl *s, const unsigned char **out, size_t *out_len)
{
    buf bare = {0}, msg = {0};
    int rc = make_nonce(s);
    if (rc != 0) return rc;
    /* client-first-message-bare = "n=" saslname ",r=" c-nonce (RFC 5802 §7) */
    buf_str(&bare, "n=");
    buf_saslname(&bare, s->authcid);
    buf_str(&bare, ",r=");
    buf_str(&bare, s->nonce);
    buf_gs2_header(s, &msg);
    buf_add(&msg, bare.p, bare.len);
    if (bare.oom) msg.oom = 1;
    s->first_bare = (char *)bare.p;
    s->first_bare_len = bare.len;
    if (!bare.p) msg.oom = 1;
    s->st = ST_WAIT_FIRST;
    return emit(s, &msg, out, out_len);
}

int xpb_sasl_start(xpb_sasl *s, const unsigned char **out, size_t *out_len)
{
    if (!s || !out || !out_len) return XPB_EINVAL;
    if (s->st != ST_SELECTED)
        return FAIL(s, XPB_ESASLSTATE, "start needs a selected mechanism and is called once");
    return s->mech == M_PLAIN ? start_plain(s, out, out_len) : start_scram(s, out, out_len);
}

/* ---- SCRAM server messages (RFC 5802 §7) --------------------------------- */

typedef struct {
    char name;
    const char *val;
    size_t len;
} attr;

/* Next "x=value" from [*p, end); 0, or -1 when malformed. */
static int next_attr(const char **p, const char *end, attr *a)
{
    const char *q = *p;
    if (end - q < 2 || q[1] != '=') return -1;
    a->name = q[0];
    a->val = q + 2;
    const char *comma = memchr(a->val, ',', (size_t)(end - a->val));
    a->len = (size_t)((comma ? comma : end) - a->val);
    *p = comma ? comma + 1 : end;
    return (a->name >= 'a' && a->name <= 'z') || (a->name >= 'A' && a->name <= 'Z') ? 0 : -1;
}

/* A server message starting with e= (RFC 5802 §7 server-error) or m=. */
static int check_error_or_ext(xpb_sasl *s, const attr *a)
{
    char why[64];
    if (a->name == 'e') {
        sanitize(why, sizeof why, a->val, a->len);
        return FAIL(s, XPB_ESASLSERVERERR, "server says e=%s", why);
    }
    if (a->name == 'm') /* RFC 5802 §5.1: unknown mandatory extension, abort */
        return FAIL(s, XPB_ESASLPROTO, "server requires an unsupported extension (m=)");
    return 0;
}

static int parse_iterations(xpb_sasl *s, const attr *a, uint32_t *iter)
{
    uint64_t v = 0;
    if (a->len == 0 || a->len > 10 || a->val[0] == '0')
        return FAIL(s, XPB_ESASLPROTO, "iteration count is not a positive decimal number");
    for (size_t i = 0; i < a->len; i++) {
        if (a->val[i] < '0' || a->val[i] > '9')
            return FAIL(s, XPB_ESASLPROTO, "iteration count is not a decimal number");
        v = v * 10 + (uint64_t)(a->val[i] - '0');
    }
    if (v < s->min_iter)
        return FAIL(s, XPB_ESASLITER,
                    "server asks for %llu iterations, fewer than the minimum %u "
                    "(RFC 7677 section 4)",
                    (unsigned long long)v, (unsigned)s->min_iter);
    if (v > XPB_SASL_MAX_ITERATIONS)
        return FAIL(s, XPB_ESASLITER, "server asks for %llu iterations, more than the maximum %u",
                    (unsigned long long)v, XPB_SASL_MAX_ITERATIONS);
    *iter = (uint32_t)v;
    return 0;
}

/* Server nonce = our nonce + at least one printable char, no ','. */
static int check_nonce(xpb_sasl *s, const attr *a)
{
    if (a->len <= s->nonce_len || memcmp(a->val, s->nonce, s->nonce_len) != 0)
        return FAIL(s, XPB_ESASLNONCE,
                    "the server nonce (%zu bytes) does not extend the %zu-byte "
                    "client nonce",
                    a->len, s->nonce_len);
    for (size_t i = 0; i < a->len; i++)
        if (a->val[i] < 0x21 || a->val[i] > 0x7e)
            return FAIL(s, XPB_ESASLPROTO, "server nonce has a non-printable character");
    return 0;
}

typedef struct {
    attr nonce;
    unsigned char *salt;
    size_t salt_len;
    uint32_t iter;
} server_first;

static int parse_salt(xpb_sasl *s, const attr *a, server_first *sf)
{
    int rc = xpb_sasl_b64_decode(a->val, a->len, &sf->salt, &sf->salt_len);
    if (rc == XPB_ENOMEM) return FAIL(s, rc, "decoding the salt");
    if (rc != 0) return FAIL(s, XPB_ESASLPROTO, "salt is not valid base64");
    if (sf->salt_len == 0 || sf->salt_len > XPB_SASL_SALT_MAX)
        return FAIL(s, XPB_ESASLPROTO, "salt must be 1..%u bytes", XPB_SASL_SALT_MAX);
    return 0;
}

/* server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count
 * ["," extensions]; we also accept e= here (some servers fail early). */
static int parse_server_first(xpb_sasl *s, const char *m, size_t len, server_first *sf)
{
    const char *p = m, *end = m + len;
    attr a[3];
    static const char want[3] = {'r', 's', 'i'};
    for (int k = 0; k < 3; k++) {
        if (next_attr(&p, end, &a[k]) < 0)
            return FAIL(s, XPB_ESASLPROTO, "server-first-message is malformed");
        int rc = check_error_or_ext(s, &a[k]);
        if (rc != 0) return rc;
        if (a[k].name != want[k])
            return FAIL(s, XPB_ESASLPROTO,
                        "server-first-message: expected %c= but got %c=", want[k], a[k].name);
    }
    int rc = check_nonce(s, &a[0]);
    if (rc == 0) rc = parse_salt(s, &a[1], sf);
    if (rc == 0) rc = parse_iterations(s, &a[2], &sf->iter);
    sf->nonce = a[0];
    return rc; /* trailing extensions are ignored (RFC 5802 §7) */
}

/* ---- SCRAM keys (RFC 5802 §3) -------------------------------------------- */

static int hmac(const EVP_MD *md, const unsigned char *key, size_t klen, const void *d, size_t dlen,
                unsigned char *out)
{
    unsigned int olen = 0;
    return HMAC(md, key, (int)klen, d, dlen, out, &olen) ? 0 : -1;
}

static int cache_lookup(xpb_sasl *s, const server_first *sf, const unsigned char *pwhash,
                        unsigned char *salted, size_t hlen)
{
    return sasl_cache_lookup(s->cache, mechs[s->mech].sha256, sf->iter, sf->salt, sf->salt_len,
                             pwhash, salted, hlen);
}

static void cache_store(xpb_sasl *s, const server_first *sf, const unsigned char *pwhash,
                        const unsigned char *salted, size_t hlen)
{
    sasl_cache_store(s->cache, mechs[s->mech].sha256, sf->iter, sf->salt, sf->salt_len, pwhash,
                     salted, hlen);
}

/* SaltedPassword := Hi(Normalize(password), salt, i), i.e. PBKDF2-HMAC. */
static int salted_password(xpb_sasl *s, const server_first *sf, unsigned char *salted)
{
    const EVP_MD *md = mech_md(s);
    size_t hlen = (size_t)EVP_MD_get_size(md);
    unsigned char pwhash[32];
    unsigned int pwlen = 0;
    if (s->cache && !EVP_Digest(s->password, s->password_len, pwhash, &pwlen, EVP_sha256(), NULL))
        return FAIL(s, XPB_ESASLCRYPTO, "hashing the password for the cache");
    if (s->cache && cache_lookup(s, sf, pwhash, salted, hlen) == 0) goto out;
    if (PKCS5_PBKDF2_HMAC((const char *)s->password, (int)s->password_len, sf->salt,
                          (int)sf->salt_len, (int)sf->iter, md, (int)hlen, salted) != 1)
        return FAIL(s, XPB_ESASLCRYPTO, "PBKDF2 failed");
    if (s->cache) cache_store(s, sf, pwhash, salted, hlen);
out:
    OPENSSL_cleanse(pwhash, sizeof pwhash);
    return 0;
}

/* ClientProof := ClientKey XOR HMAC(H(ClientKey), AuthMessage), and remember
 * ServerSignature := HMAC(HMAC(SaltedPassword, "Server Key"), AuthMessage). */
static int scram_proof(xpb_sasl *s, const unsigned char *salted, const buf *auth,
                       unsigned char *proof)
{
    const EVP_MD *md = mech_md(s);
    size_t hlen = (size_t)EVP_MD_get_size(md);
    unsigned char ckey[EVP_MAX_MD_SIZE], stored[EVP_MAX_MD_SIZE], skey[EVP_MAX_MD_SIZE];
    unsigned int slen = 0;
    int bad = hmac(md, salted, hlen, "Client Key", 10, ckey) < 0 ||
              !EVP_Digest(ckey, hlen, stored, &slen, md, NULL) ||
              hmac(md, stored, hlen, auth->p, auth->len, proof) < 0 ||
              hmac(md, salted, hlen, "Server Key", 10, skey) < 0 ||
              hmac(md, skey, hlen, auth->p, auth->len, s->server_sig) < 0;
    for (size_t i = 0; i < hlen; i++)
        proof[i] ^= ckey[i];
    s->sig_len = hlen;
    OPENSSL_cleanse(ckey, sizeof ckey);
    OPENSSL_cleanse(stored, sizeof stored);
    OPENSSL_cleanse(skey, sizeof skey);
    return bad ? FAIL(s, XPB_ESASLCRYPTO, "HMAC failed") : 0;
}

/* client-final-message-without-proof = "c=" base64(gs2-header [cbind-data]) ",r=" nonce */
static int client_final_bare(xpb_sasl *s, const server_first *sf, buf *cf)
{
    buf cbind = {0};
    char *enc = NULL;
    size_t enc_len = 0;
    buf_gs2_header(s, &cbind);
    if (s->gs2_flag == 'p') buf_add(&cbind, s->cb_data, s->cb_len); /* RFC 5802 §7 */
    int rc = cbind.oom ? XPB_ENOMEM : xpb_sasl_b64_encode(cbind.p, cbind.len, &enc, &enc_len);
    buf_wipe(&cbind);
    if (rc != 0) return FAIL(s, rc, "encoding the channel binding");
    buf_str(cf, "c=");
    buf_add(cf, enc, enc_len);
    buf_str(cf, ",r=");
    buf_add(cf, sf->nonce.val, sf->nonce.len);
    free(enc);
    return cf->oom ? FAIL(s, XPB_ENOMEM, "building client-final-message") : 0;
}

static int append_proof(xpb_sasl *s, buf *cf, const unsigned char *proof)
{
    char *enc = NULL;
    size_t enc_len = 0;
    int rc = xpb_sasl_b64_encode(proof, s->sig_len, &enc, &enc_len);
    if (rc != 0) return FAIL(s, rc, "encoding the proof");
    buf_str(cf, ",p=");
    buf_add(cf, enc, enc_len);
    wipe_free(enc, enc_len);
    return 0;
}

/* server-first in, client-final out. */
static int scram_client_final(xpb_sasl *s, const char *m, size_t len, const unsigned char **out,
                              size_t *out_len)
{
    server_first sf = {0};
    buf cf = {0}, auth = {0};
    unsigned char salted[EVP_MAX_MD_SIZE], proof[EVP_MAX_MD_SIZE];
    int rc = parse_server_first(s, m, len, &sf);
    if (rc == 0) rc = client_final_bare(s, &sf, &cf);
    if (rc == 0) {
        /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
        buf_add(&auth, s->first_bare, s->first_bare_len);
        buf_str(&auth, ",");
        buf_add(&auth, m, len);
        buf_str(&auth, ",");
        buf_add(&auth, cf.p, cf.len);
        rc = auth.oom ? FAIL(s, XPB_ENOMEM, "building AuthMessage") : 0;
    }
    if (rc == 0) rc = salted_password(s, &sf, salted);
    if (rc == 0) rc = scram_proof(s, salted, &auth, proof);
    if (rc == 0) rc = append_proof(s, &cf, proof);
    if (rc == 0) {
        s->st = ST_WAIT_FINAL;
        rc = emit(s, &cf, out, out_len);
    }
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(proof, sizeof proof);
    buf_wipe(&auth);
    buf_wipe(&cf);
    free(sf.salt);
    return rc;
}

/* server-final-message = (server-error / verifier) ["," extensions] */
static int scram_verify(xpb_sasl *s, const char *m, size_t len)
{
    const char *p = m;
    attr a;
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    if (next_attr(&p, m + len, &a) < 0)
        return FAIL(s, XPB_ESASLPROTO, "server-final-message is malformed");
    int rc = check_error_or_ext(s, &a);
    if (rc != 0) return rc;
    if (a.name != 'v')
        return FAIL(s, XPB_ESASLPROTO, "server-final-message: expected v= but got %c=", a.name);
    rc = xpb_sasl_b64_decode(a.val, a.len, &sig, &sig_len);
    if (rc == XPB_ENOMEM) return FAIL(s, rc, "decoding the server signature");
    if (rc != 0) return FAIL(s, XPB_ESASLPROTO, "server signature is not valid base64");
    int ok = sig_len == s->sig_len && CRYPTO_memcmp(sig, s->server_sig, sig_len) == 0;
    free(sig);
    if (!ok)
        return FAIL(s, XPB_ESASLSERVERSIG,
                    "the server does not know the password "
                    "(or a man in the middle answered)");
    s->st = ST_VERIFIED;
    return 0;
}

/* ---- challenges and success ---------------------------------------------- */

static int check_server_bytes(xpb_sasl *s, const unsigned char *in, size_t len)
{
    if (len && !in) return FAIL(s, XPB_EINVAL, "NULL data");
    if (len > XPB_SASL_MSG_MAX)
        return FAIL(s, XPB_ESASLPROTO, "server message of %zu bytes exceeds %u", len,
                    XPB_SASL_MSG_MAX);
    if (len && memchr(in, 0, len)) return FAIL(s, XPB_ESASLPROTO, "server message contains NUL");
    return 0;
}

int xpb_sasl_step(xpb_sasl *s, const unsigned char *in, size_t in_len, const unsigned char **out,
                  size_t *out_len)
{
    if (!s || !out || !out_len) return XPB_EINVAL;
    int rc = check_server_bytes(s, in, in_len);
    if (rc != 0) return rc;
    const char *m = (const char *)in;
    switch (s->st) {
    case ST_WAIT_FIRST:
        return scram_client_final(s, m, in_len, out, out_len);
    case ST_WAIT_FINAL: /* server-final as a challenge: verify, answer empty */
        rc = scram_verify(s, m, in_len);
        if (rc != 0) return rc;
        set_out(s, NULL, 0);
        *out = (const unsigned char *)"";
        *out_len = 0;
        return 0;
    case ST_WAIT_PLAIN:
        return FAIL(s, XPB_ESASLPROTO, "PLAIN takes no challenge");
    default:
        return FAIL(s, XPB_ESASLSTATE, "challenge arrived in the wrong state");
    }
}

int xpb_sasl_finish(xpb_sasl *s, const unsigned char *data, size_t len)
{
    if (!s) return XPB_EINVAL;
    int rc = check_server_bytes(s, data, len);
    if (rc != 0) return rc;
    switch (s->st) {
    case ST_WAIT_FINAL:
        if (len == 0) /* RFC 5802 §5.1: never trust a success we cannot verify */
            return FAIL(s, XPB_ESASLSERVERSIG, "<success/> carries no server signature");
        rc = scram_verify(s, (const char *)data, len);
        break;
    case ST_VERIFIED:
    case ST_WAIT_PLAIN:
        if (len != 0) return FAIL(s, XPB_ESASLPROTO, "unexpected data in <success/>");
        break;
    default:
        return FAIL(s, XPB_ESASLSTATE, "success arrived in the wrong state");
    }
    if (rc == 0) s->st = ST_DONE;
    return rc;
}
