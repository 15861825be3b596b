/* The SaltedPassword cache behind xpb_sasl_cache (private to bridge/session/). */
#ifndef XPB_SASL_CACHE_H
#define XPB_SASL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "xpb_sasl.h"

/* 0 and the cached SaltedPassword in salted[0..hlen) on a hit; -1 on a miss. */
int sasl_cache_lookup(xpb_sasl_cache *c, int sha256, uint32_t iter, const unsigned char *salt,
                      size_t salt_len, const unsigned char *pwhash, unsigned char *salted,
                      size_t hlen);
void sasl_cache_store(xpb_sasl_cache *c, int sha256, uint32_t iter, const unsigned char *salt,
                      size_t salt_len, const unsigned char *pwhash, const unsigned char *salted,
                      size_t hlen);

#endif
