/* String-keyed hash table (xpb_strmap.h): open addressing, linear probing,
 * backward-shift deletion. */
#include "xpb_strmap.h"

#include <stdlib.h>
#include <string.h>

uint32_t xpb_strmap_hash(const char *key)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h;
}

static size_t find_slot(const xpb_strmap *m, const char *key, uint32_t h)
{
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    while (m->slots[i].key && (m->slots[i].hash != h || strcmp(m->slots[i].key, key) != 0))
        i = (i + 1) & mask;
    return i;
}

void *xpb_strmap_get(const xpb_strmap *m, const char *key)
{
    if (!m->cap || !key) return NULL;
    size_t i = find_slot(m, key, xpb_strmap_hash(key));
    return m->slots[i].key ? m->slots[i].value : NULL;
}

static int grow(xpb_strmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    xpb_strmap_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    xpb_strmap old = *m;
    m->slots = ns;
    m->cap = ncap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].key)
            m->slots[find_slot(m, old.slots[i].key, old.slots[i].hash)] = old.slots[i];
    free(old.slots);
    return 0;
}

int xpb_strmap_put(xpb_strmap *m, const char *key, void *value)
{
    if (!key) return -1;
    if ((m->n + 1) * 4 > m->cap * 3 && grow(m) != 0) return -1;
    uint32_t h = xpb_strmap_hash(key);
    size_t i = find_slot(m, key, h);
    if (!m->slots[i].key) m->n++;
    m->slots[i] = (xpb_strmap_slot){key, value, h};
    return 0;
}

int xpb_strmap_del(xpb_strmap *m, const char *key, const void *value)
{
    if (!m->cap || !key) return 0;
    size_t mask = m->cap - 1;
    size_t i = find_slot(m, key, xpb_strmap_hash(key));
    if (!m->slots[i].key || (value && m->slots[i].value != value)) return 0;
    /* Backward shift: move later entries of the run into the hole when their
     * home slot is not between the hole and where they sit. */
    size_t j = i;
    for (;;) {
        m->slots[i].key = NULL;
        for (;;) {
            j = (j + 1) & mask;
            if (!m->slots[j].key) {
                m->n--;
                return 1;
            }
            size_t home = m->slots[j].hash & mask;
            if (i <= j ? (i < home && home <= j) : (i < home || home <= j)) continue;
            break;
        }
        m->slots[i] = m->slots[j];
        i = j;
    }
}

void xpb_strmap_clear(xpb_strmap *m)
{
    free(m->slots);
    *m = (xpb_strmap)XPB_STRMAP_INIT;
}
