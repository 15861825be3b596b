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

/* SipHash-2-4 (Aumasson, Bernstein 2012), fed piece by piece: the parts of
 * a key go in as they are, with no buffer to build. */
typedef struct sip {
    uint64_t v0, v1, v2, v3, m; /* m: the bytes of the block not yet full */
    size_t len;                 /* bytes fed */
} sip;

static void sip_init(sip *s, const uint8_t secret[16])
{
    uint64_t k0 = le64(secret), k1 = le64(secret + 8);
    *s = (sip){0x736f6d6570736575ULL ^ k0, 0x646f72616e646f6dULL ^ k1, 0x6c7967656e657261ULL ^ k0,
               0x7465646279746573ULL ^ k1, 0, 0};
}

static void sip_block(sip *s, uint64_t m)
{
    uint64_t v0 = s->v0, v1 = s->v1, v2 = s->v2, v3 = s->v3 ^ m;
    SIPROUND;
    SIPROUND;
    s->v0 = v0 ^ m;
    s->v1 = v1;
    s->v2 = v2;
    s->v3 = v3;
}

static void sip_feed(sip *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        s->m |= (uint64_t)p[i] << (8 * (s->len % 8));
        if (++s->len % 8 == 0) {
            sip_block(s, s->m);
            s->m = 0;
        }
    }
}

static uint64_t sip_final(sip *s)
{
    uint64_t b = s->m | (uint64_t)s->len << 56;
    uint64_t v0 = s->v0, v1 = s->v1, v2 = s->v2, v3 = s->v3 ^ b;
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

static void part(sip *s, const char *v)
{
    /* Every part ends with a 0xff byte, which UTF-8 never holds. */
    if (v) sip_feed(s, v, strlen(v));
    sip_feed(s, "\xff", 1);
}

int xa_key_make(const xa_db *db, xa_key *k, char type, const char *account, const char *a,
                const char *b)
{
    sip s;
    char t[2] = {type, 0};
    sip_init(&s, db->secret);
    part(&s, account);
    part(&s, t);
    part(&s, a);
    part(&s, b);
    k->type = type;
    k->v = (int64_t)sip_final(&s);
    return 0;
}

int xa_key_content(const xa_db *db, xa_key *k, const xa_msg *m)
{
    sip s;
    /* Direction is left out in rooms: our send is "out" as a delivery and
     * "in" as the room's reflection. */
    char kd[3] = {'h', (char)('0' + m->kind), (char)('0' + (m->groupchat ? 2 : m->direction))};
    sip_init(&s, db->secret);
    part(&s, m->account);
    sip_feed(&s, kd, 3);
    part(&s, m->conversation);
    part(&s, m->msg_id);
    part(&s, m->body);
    part(&s, m->target);
    k->type = 'h';
    k->v = (int64_t)sip_final(&s);
    return 0;
}
