/* The test server's script (server_internal.h): stream headers and features,
 * SASL PLAIN for any account (RFC 4616; RFC 6120 §6), resource bind (§7),
 * XEP-0198 enable and acks, empty iq results, and the flood and trickle work
 * with realistic messages from tools/traffic.h. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "server_internal.h"
#include "traffic.h"
#include "xpb_xml.h"

#define POOL_SIZE 2048u /* distinct flood stanzas, cycled */
#define POOL_MAX_TRIES 200000u

#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SM "urn:xmpp:sm:3"

static int out_str(lconn *c, const char *s)
{
    return lconn_append(c, s, strlen(s));
}

static int out_fmt(lconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int out_fmt(lconn *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= sizeof(buf) ? -1 : lconn_append(c, buf, (size_t)n);
}

static int name_is(const char *el, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n + 1 && el[0] == '<' && !memcmp(el + 1, name, n) &&
           (el[n + 1] == ' ' || el[n + 1] == '>' || el[n + 1] == '/');
}

/* The value of attribute name in the element's start tag, into out. */
static int attr_get(const char *el, size_t len, const char *name, char *out, size_t outlen)
{
    const char *end = memchr(el, '>', len);
    size_t n = strlen(name);
    for (const char *p = el; end && p + n + 3 < end; p++) {
        if (p[0] != ' ' || memcmp(p + 1, name, n) || p[n + 1] != '=') continue;
        char q = p[n + 2];
        const char *v = p + n + 3, *e = memchr(v, q, (size_t)(end - v));
        if (!e || (size_t)(e - v) >= outlen) return -1;
        memcpy(out, v, (size_t)(e - v));
        out[e - v] = 0;
        return 0;
    }
    return -1;
}

static int stream_header(lsrv *s, lconn *c)
{
    int rc = out_fmt(c,
                     "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                     "xmlns:stream='http://etherx.jabber.org/streams' id='ld%d' from='" LOAD_DOMAIN
                     "' version='1.0' xml:lang='en'><stream:features>",
                     c->fd);
    if (c->stage == ST_HEADER) {
        if (!rc)
            rc = out_str(c, "<mechanisms xmlns='" NS_SASL "'><mechanism>PLAIN</mechanism>"
                            "</mechanisms>");
        c->stage = ST_AUTH;
    } else {
        if (!rc) rc = out_str(c, "<bind xmlns='" NS_BIND "'/>");
        if (!rc && s->sm) rc = out_str(c, "<sm xmlns='" NS_SM "'/>");
        c->stage = ST_BOUND;
    }
    return rc ? rc : out_str(c, "</stream:features>");
}

/* RFC 4616 §2: [authzid] NUL authcid NUL passwd; any authcid is welcome. */
static int sasl_plain(lconn *c, const char *el, size_t len)
{
    const char *t = memchr(el, '>', len), *e = t ? memchr(t, '<', len - (size_t)(t - el)) : NULL;
    unsigned char raw[512];
    if (!e || e - t - 1 <= 0 || (size_t)(e - t - 1) > sizeof(raw) / 4 * 3) return -1;
    int n = EVP_DecodeBlock(raw, (const unsigned char *)t + 1, (int)(e - t - 1));
    const unsigned char *a = n > 0 ? memchr(raw, 0, (size_t)n) : NULL;
    if (!a) return -1;
    size_t i = 0;
    for (a++; a < raw + n && *a && *a != '@' && i + 1 < sizeof(c->user); a++)
        c->user[i++] = (char)*a;
    c->user[i] = 0;
    memset(&c->x, 0, sizeof(c->x)); /* RFC 6120 §6.4.6: a new stream follows */
    c->stage = ST_HEADER2;
    return i ? out_str(c, "<success xmlns='" NS_SASL "'/>") : -1;
}

static int iq_answer(lsrv *s, lconn *c, const char *el, size_t len)
{
    char id[256], type[16] = "";
    if (attr_get(el, len, "id", id, sizeof(id))) return -1;
    attr_get(el, len, "type", type, sizeof(type));
    if (strcmp(type, "get") && strcmp(type, "set")) return 0;
    if (!memmem(el, len, NS_BIND, strlen(NS_BIND)))
        return out_fmt(c, "<iq type='result' id='%s'/>", id);
    if (!c->bound) s->bound++;
    c->bound = 1;
    return out_fmt(c,
                   "<iq type='result' id='%s'><bind xmlns='" NS_BIND "'><jid>%s@" LOAD_DOMAIN
                   "/load</jid></bind></iq>",
                   id, c->user);
}

static int on_bound(lsrv *s, lconn *c, const char *el, size_t len)
{
    if (name_is(el, len, "message")) {
        c->received++;
        c->h_in++;
        return 0;
    }
    if (name_is(el, len, "presence")) {
        c->h_in++;
        return 0;
    }
    if (name_is(el, len, "iq")) {
        c->h_in++;
        return iq_answer(s, c, el, len);
    }
    if (name_is(el, len, "r")) return out_fmt(c, "<a xmlns='" NS_SM "' h='%" PRIu64 "'/>", c->h_in);
    if (name_is(el, len, "enable")) {
        c->h_in = 0;
        return out_fmt(c, "<enabled xmlns='" NS_SM "' id='sm-%d' resume='true' max='300'/>", c->fd);
    }
    return 0; /* <a/> and anything else */
}

int lsrv_on_element(lsrv *s, lconn *c, const char *el, size_t len)
{
    if (name_is(el, len, "/stream:stream")) {
        c->closing = 1;
        out_str(c, "</stream:stream>");
        return 0;
    }
    switch (c->stage) {
    case ST_HEADER:
    case ST_HEADER2:
        return name_is(el, len, "stream:stream") ? stream_header(s, c) : -1;
    case ST_AUTH:
        return name_is(el, len, "auth") ? sasl_plain(c, el, len) : -1;
    case ST_BOUND:
        return on_bound(s, c, el, len);
    }
    return -1;
}

/* ---- the flood pool ----------------------------------------------------- */
/* One-to-one messages only: the bridge drops, by its trust rules, groupchat
 * from rooms it did not join, carbons from others and foreign MAM results. */
static int pool_keep(const char *x, size_t len, size_t *to_off, size_t *to_end)
{
    static const char *const skip[] = {"groupchat", "urn:xmpp:carbons", "urn:xmpp:mam",
                                       "type='error'"};
    if (len < 9 || memcmp(x, "<message ", 9)) return 0;
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
        if (memmem(x, len, skip[i], strlen(skip[i]))) return 0;
    const char *end = memchr(x, '>', len), *to = memmem(x, len, " to='", 5);
    if (!end || !to || to > end) return 0;
    const char *q = memchr(to + 5, '\'', (size_t)(end - to - 5));
    if (!q) return 0;
    *to_off = (size_t)(to + 5 - x);
    *to_end = (size_t)(q - x);
    return 1;
}

int lsrv_pool_make(lsrv *s, uint64_t seed)
{
    xpb_traffic *t = xpb_traffic_new(seed);
    xpb_buf all;
    xpb_buf_init(&all, 0);
    size_t offs[POOL_SIZE][3], n = 0;
    for (unsigned tries = 0; t && n < POOL_SIZE && tries < POOL_MAX_TRIES; tries++) {
        size_t at = all.len, to_off, to_end;
        if (!xpb_traffic_next(t, &all)) break;
        if (!pool_keep((const char *)all.data + at, all.len - at, &to_off, &to_end)) {
            all.len = at;
            continue;
        }
        offs[n][0] = at;
        offs[n][1] = at + to_off;
        offs[n++][2] = at + to_end;
    }
    xpb_traffic_free(t);
    s->pool = calloc(n ? n : 1, sizeof(*s->pool));
    if (n < POOL_SIZE || !s->pool) {
        xpb_buf_free(&all);
        return -1;
    }
    s->pool_text = (char *)all.data; /* owned from here on */
    for (size_t i = 0; i < n; i++) {
        size_t end = i + 1 < n ? offs[i + 1][0] : all.len;
        s->pool[i] = (lpool_item){s->pool_text + offs[i][0], end - offs[i][0],
                                  offs[i][1] - offs[i][0], offs[i][2] - offs[i][0]};
    }
    s->n_pool = n;
    return 0;
}

void lsrv_pool_free(lsrv *s)
{
    free(s->pool);
    free(s->pool_text);
}
