/* Base64 for SASL payloads (RFC 4648 §4, as RFC 6120 §6.4.2 uses it): strict
 * decoding (padding, alphabet, "=" for empty data) and the wiping of buffers
 * that may hold secrets. Split from sasl.c, which uses it for SCRAM too. */
#include <openssl/crypto.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_sasl.h"

static void wipe_free(void *p, size_t len)
{
    if (p) OPENSSL_cleanse(p, len);
    free(p);
}

static const char b64_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_block(const unsigned char *in, size_t n, char *o)
{
    uint32_t v = (uint32_t)in[0] << 16;
    if (n > 1) v |= (uint32_t)in[1] << 8;
    if (n > 2) v |= in[2];
    o[0] = b64_alpha[(v >> 18) & 63];
    o[1] = b64_alpha[(v >> 12) & 63];
    o[2] = n > 1 ? b64_alpha[(v >> 6) & 63] : '=';
    o[3] = n > 2 ? b64_alpha[v & 63] : '=';
}

int xpb_sasl_b64_encode(const unsigned char *in, size_t len, char **out, size_t *out_len)
{
    if (!out || !out_len || (len && !in)) return XPB_EINVAL;
    if (len > (SIZE_MAX / 4 - 1) * 3) return XPB_EINVAL;
    size_t n = len ? 4 * ((len + 2) / 3) : 1;
    char *o = malloc(n + 1);
    if (!o) return XPB_ENOMEM;
    if (!len) o[0] = '='; /* RFC 6120 §6.4.2: empty data is sent as "=" */
    for (size_t i = 0, j = 0; i < len; i += 3, j += 4)
        b64_block(in + i, len - i < 3 ? len - i : 3, o + j);
    o[n] = 0;
    *out = o;
    *out_len = n;
    return 0;
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decode one 4-character group; pads allowed only when last. Returns bytes or -1. */
static int b64_group(const char *g, int last, unsigned char *o)
{
    int v[4], pads = 0;
    for (int k = 0; k < 4; k++) {
        if (g[k] == '=' && last && k >= 2) {
            v[k] = 0;
            pads++;
        } else if (pads || (v[k] = b64_val(g[k])) < 0) {
            return -1;
        }
    }
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    /* RFC 4648 §3.5: only the canonical encoding (zero pad bits) is accepted,
     * so two different strings never decode to the same bytes. */
    if ((pads == 1 && (w & 0xff)) || (pads == 2 && (w & 0xffff))) return -1;
    o[0] = (unsigned char)(w >> 16);
    o[1] = (unsigned char)(w >> 8);
    o[2] = (unsigned char)w;
    return 3 - pads;
}

int xpb_sasl_b64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len)
{
    if (!out || !out_len || (len && !in)) return XPB_EINVAL;
    if (len == 1 && in[0] == '=') len = 0; /* RFC 6120 §6.4.2 empty */
    if (len % 4) return XPB_ESASLBASE64;
    unsigned char *o = malloc(len / 4 * 3 + 1);
    if (!o) return XPB_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        int got = b64_group(in + i, i + 4 == len, o + n);
        if (got < 0) {
            wipe_free(o, len / 4 * 3 + 1);
            return XPB_ESASLBASE64;
        }
        n += (size_t)got;
    }
    o[n] = 0;
    *out = o;
    *out_len = n;
    return 0;
}
