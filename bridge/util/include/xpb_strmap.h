/* A hash table from a string key to a pointer, for the lookups on the
 * per-stanza and bring-up paths (accounts by name, sessions by name): O(1)
 * whatever the number of accounts. Open addressing with linear probing,
 * grown at 3/4 full, deletion by backward shift (no tombstones). The keys
 * are not copied: each must stay valid and unchanged while it is in the map
 * (it is usually a field of the value). One thread at a time. */
#ifndef XPB_STRMAP_H
#define XPB_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct xpb_strmap_slot {
    const char *key; /* NULL: empty */
    void *value;
    uint32_t hash;
} xpb_strmap_slot;

typedef struct xpb_strmap {
    xpb_strmap_slot *slots;
    size_t cap, n; /* cap: 0 or a power of two */
} xpb_strmap;

#define XPB_STRMAP_INIT                                                                            \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* FNV-1a over the key's bytes. */
uint32_t xpb_strmap_hash(const char *key);
/* The value stored under key, or NULL. */
void *xpb_strmap_get(const xpb_strmap *m, const char *key);
/* Stores value under key, replacing what was there. 0, or -1 when out of
 * memory (the map is unchanged). */
int xpb_strmap_put(xpb_strmap *m, const char *key, void *value);
/* Removes key when its value is value (NULL: whatever it is); 1 when removed. */
int xpb_strmap_del(xpb_strmap *m, const char *key, const void *value);
void xpb_strmap_clear(xpb_strmap *m); /* frees the table, not keys or values */

#endif
