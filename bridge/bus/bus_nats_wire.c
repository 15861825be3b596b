/* The NATS subjects and the account token (xpb_bus_nats_wire.h). */
#include "xpb_bus_nats_wire.h"

#include <stdio.h>
#include <string.h>

#include "xpb_error.h"

static int plain(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

size_t xpb_nats_account_token(const char *jid, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)jid; *p; p++) {
        char esc[3] = {'_', hex[*p >> 4], hex[*p & 15]};
        size_t k = plain(*p) ? 1 : 3;
        const char *src = plain(*p) ? (const char *)p : esc;
        for (size_t i = 0; i < k; i++, n++)
            if (n + 1 < outlen) out[n] = src[i];
    }
    if (outlen > 0) out[n < outlen ? n : outlen - 1] = '\0';
    return n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1; /* lower case too: one JID has exactly one token */
}

int xpb_nats_account_untoken(const char *token, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *p = token; *p; p++) {
        int c = (unsigned char)*p;
        if (c == '_') {
            int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
            if (lo < 0) return XPB_EINVAL;
            c = hi << 4 | lo;
            if (c == 0 || plain((unsigned char)c)) return XPB_EINVAL;
            p += 2;
        } else if (!plain((unsigned char)c)) {
            return XPB_EINVAL;
        }
        if (n + 1 >= outlen) return XPB_ETOOBIG;
        out[n++] = (char)c;
    }
    if (outlen == 0) return XPB_ETOOBIG;
    out[n] = '\0';
    return 0;
}

/* prefix + token of account (or "*"), with an optional middle part. */
static size_t subject(const char *prefix, const char *mid, const char *account, char *out,
                      size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s%s", prefix, mid ? mid : "", mid ? "." : "");
    if (n < 0) return 0;
    size_t len = (size_t)n;
    if (account == NULL) {
        if (len + 1 < outlen) memcpy(out + len, "*", 2);
        return len + 1;
    }
    size_t rest = len < outlen ? outlen - len : 0;
    return len + xpb_nats_account_token(account, rest ? out + len : NULL, rest);
}

size_t xpb_nats_event_subject(const char *kind, const char *account, char *out, size_t outlen)
{
    return subject(XPB_NATS_EVENT_PREFIX, kind ? kind : "*", account, out, outlen);
}

size_t xpb_nats_request_subject(const char *account, char *out, size_t outlen)
{
    return subject(XPB_NATS_REQUEST_PREFIX, NULL, account, out, outlen);
}
