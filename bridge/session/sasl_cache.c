/* The SaltedPassword cache of the SCRAM client (RFC 5802 §5.1 allows caching
 * it): a reconnect with the same password, salt and iteration count skips the
 * PBKDF2 run. Keyed by a SHA-256 of the password, so a new password misses. */
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <stdlib.h>
#include <string.h>

#include "sasl_cache.h"
#include "xpb_error.h"

struct xpb_sasl_cache {
    int sha256;
    uint32_t iter;
    unsigned char salt[XPB_SASL_SALT_MAX];
    size_t salt_len;
    unsigned char pwhash[32]; /* SHA-256 of the password: a new password misses */
    unsigned char salted[EVP_MAX_MD_SIZE];
    int valid;
    uint64_t hits;
};

int sasl_cache_lookup(xpb_sasl_cache *c, int sha256, uint32_t iter, const unsigned char *salt,
                      size_t salt_len, const unsigned char *pwhash, unsigned char *salted,
                      size_t hlen)
{
    if (!c || !c->valid || c->sha256 != sha256 || c->iter != iter || c->salt_len != salt_len ||
        memcmp(c->salt, salt, salt_len) != 0 ||
        CRYPTO_memcmp(c->pwhash, pwhash, sizeof c->pwhash) != 0)
        return -1;
    memcpy(salted, c->salted, hlen);
    c->hits++;
    return 0;
}

void sasl_cache_store(xpb_sasl_cache *c, int sha256, uint32_t iter, const unsigned char *salt,
                      size_t salt_len, const unsigned char *pwhash, const unsigned char *salted,
                      size_t hlen)
{
    if (!c || salt_len > sizeof c->salt || hlen > sizeof c->salted) return;
    c->sha256 = sha256;
    c->iter = iter;
    memcpy(c->salt, salt, salt_len);
    c->salt_len = salt_len;
    memcpy(c->pwhash, pwhash, sizeof c->pwhash);
    memcpy(c->salted, salted, hlen);
    c->valid = 1;
}

int xpb_sasl_cache_new(xpb_sasl_cache **out)
{
    if (!out) return XPB_EINVAL;
    *out = calloc(1, sizeof **out);
    return *out ? 0 : XPB_ENOMEM;
}

void xpb_sasl_cache_free(xpb_sasl_cache *c)
{
    if (!c) return;
    OPENSSL_cleanse(c, sizeof *c);
    free(c);
}

uint64_t xpb_sasl_cache_hits(const xpb_sasl_cache *c)
{
    return c ? c->hits : 0;
}
