/* The archive's de-duplication and lookup keys (keys.c). */
#ifndef XPB_ARCHIVE_KEYS_H
#define XPB_ARCHIVE_KEYS_H

#include "archive.h"

typedef struct xa_key {
    int64_t v; /* msgkey.key: a 64-bit SipHash-2-4 */
    char type; /* 's' stanza-id, 'o' origin-id, 'h' content, 'i' the stanza's id (lookup only) */
} xa_key;

/* The key of (account, type, a, b): 's' (by, stanza-id), 'o' (conversation,
 * origin-id), 'i' (conversation, id attribute). 0 or XA_ENOMEM. */
int xa_key_make(const xa_db *db, xa_key *k, char type, const char *account, const char *a,
                const char *b);
/* The content key of m ('h'). */
int xa_key_content(const xa_db *db, xa_key *k, const xa_msg *m);

/* The message a key points to (store.c); *id 0 when none. */
int xa_key_find(xa_db *db, const xa_key *k, int64_t *id, char *err, size_t errlen);

#endif
