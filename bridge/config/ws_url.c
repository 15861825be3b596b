/* The WebSocket URL rule of the configuration, bus open requests included
 * (xpb_config_check_ws_url in config.h): wss://, or ws:// only to a loopback
 * host when allow_plaintext_ws says so. RFC 7395 has no STARTTLS, so ws://
 * sends the password in clear. */
#define _DEFAULT_SOURCE
#include "xpb_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "xpb_error.h"

static int host_is_loopback(const char *h, size_t n)
{
    char host[64];
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') h++, n -= 2;
    if (n == 0 || n >= sizeof host) return 0;
    memcpy(host, h, n);
    host[n] = '\0';
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
    return strcasecmp(host, "localhost") == 0;
}

/* The host of "ws://HOST[:PORT][/path]" (HOST may be "[v6]"). */
static void url_host(const char *rest, const char **h, size_t *n)
{
    size_t len = strcspn(rest, "/?#");
    const char *colon = NULL;
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', len);
        colon = close && (size_t)(close - rest) + 1 < len ? close + 1 : NULL;
    } else {
        colon = memchr(rest, ':', len);
    }
    *h = rest;
    *n = colon ? (size_t)(colon - rest) : len;
}

int xpb_config_check_ws_url(const char *url, int allow_plaintext_ws, char *why, size_t whylen)
{
    const char *h;
    size_t n;
    if (strncasecmp(url, "wss://", 6) == 0) {
        url_host(url + 6, &h, &n);
        if (n > 0) return 0;
    } else if (strncasecmp(url, "ws://", 5) == 0) {
        url_host(url + 5, &h, &n);
        if (n > 0 && !allow_plaintext_ws) {
            snprintf(why, whylen,
                     "ws_url \"%s\": ws:// is WebSocket without TLS (RFC 7395 has "
                     "no STARTTLS); use wss://, or set allow_plaintext_ws = true "
                     "(--allow-plaintext-ws) for a loopback host",
                     url);
            return XPB_EINVAL;
        }
        if (n > 0 && !host_is_loopback(h, n)) {
            snprintf(why, whylen,
                     "ws_url \"%s\": ws:// (no TLS) is allowed only to a loopback "
                     "host (127.0.0.0/8, ::1, localhost); use wss://",
                     url);
            return XPB_EINVAL;
        }
        if (n > 0) return 0;
    }
    snprintf(why, whylen,
             "ws_url \"%s\" must be wss://HOST[:PORT]/PATH (or ws:// to a "
             "loopback host with allow_plaintext_ws)",
             url);
    return XPB_EINVAL;
}
