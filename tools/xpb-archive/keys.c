/* De-duplication and lookup keys (docs/archive.md, "De-duplication"): 64
 * bits each, SipHash-2-4 under the archive's own random secret, over the
 * account, the key's type and its parts. An integer key is msgkey's rowid
 * (no separate index, 8 bytes); the secret keeps anyone who can send us a
 * message from making one collide with another's key, and a chance
 * collision between two keys is 1 in 2^64 per pair (docs/archive.md). */
#include <string.h>

#include "db_internal.h"
#include "keys.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* SipHash-2-4 (Aumasson, Bernstein 2012) of in[0..len) under k0, k1. */
static uint64_t siphash(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t m = le64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t j = 0; i + j < len; j++)
        b |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static int part(xpb_buf *b, const char *s)
{
    /* Every part ends with a 0xff byte, which UTF-8 never holds. */
    int rc = s ? xpb_buf_append(b, s, strlen(s)) : 0;
    return rc ? rc : xpb_buf_append(b, "\xff", 1);
}

static int finish(const xa_db *db, xpb_buf *in, xa_key *k)
{
    uint64_t k0 = le64(db->secret), k1 = le64(db->secret + 8);
    k->v = (int64_t)siphash(k0, k1, (const uint8_t *)in->data, in->len);
    xpb_buf_free(in);
    return 0;
}

int xa_key_make(const xa_db *db, xa_key *k, char type, const char *account, const char *a,
                const char *b)
{
    xpb_buf in;
    xpb_buf_init(&in, 0);
    char t[2] = {type, 0};
    k->type = type;
    if (part(&in, account) || part(&in, t) || part(&in, a) || part(&in, b)) {
        xpb_buf_free(&in);
        return XA_ENOMEM;
    }
    return finish(db, &in, k);
}

int xa_key_content(const xa_db *db, xa_key *k, const xa_msg *m)
{
    xpb_buf in;
    xpb_buf_init(&in, 0);
    /* Direction is left out in rooms: our send is "out" as a delivery and
     * "in" as the room's reflection. */
    char kd[3] = {'h', (char)('0' + m->kind), (char)('0' + (m->groupchat ? 2 : m->direction))};
    k->type = 'h';
    if (part(&in, m->account) || xpb_buf_append(&in, kd, 3) || part(&in, m->conversation) ||
        part(&in, m->msg_id) || part(&in, m->body) || part(&in, m->target)) {
        xpb_buf_free(&in);
        return XA_ENOMEM;
    }
    return finish(db, &in, k);
}
