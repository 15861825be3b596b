/* Revision-checked key-value operations on NATS JetStream KV buckets, run
 * on a worker thread with its own connection (libnats KV calls block, and
 * the bus's connection reads on the loop). Results come back on the loop
 * thread through the callback. The account leases (bridge/daemon/lease.c)
 * and the XEP-0198 state and outbox of the NATS state back end
 * (bridge/daemon/state_nats.c) are the users. */
#ifndef XPB_BUS_KV_H
#define XPB_BUS_KV_H

#include <stddef.h>
#include <stdint.h>

#include "xpb_bus_nats.h"
#include "xpb_loop.h"

#define XPB_KV_OP_TIMEOUT_MS 1500u /* one KV call gives up after this */
#define XPB_KV_MAX_QUEUED 65536u   /* operations waiting for the worker */
#define XPB_KV_MAX_BUCKETS 4u      /* buckets one xpb_kv opens */
#define XPB_KV_FETCH_MAX 100000u   /* entries one FETCH returns at most */

typedef enum xpb_kv_op {
    XPB_KV_CREATE, /* only if the key has no live value */
    XPB_KV_UPDATE, /* only if the key's revision is still last_rev */
    XPB_KV_DELETE, /* only if the key's revision is still last_rev; last_rev 0: whatever it is */
    XPB_KV_PUT,    /* unconditional */
    XPB_KV_KEYS,   /* the live keys of the bucket */
    XPB_KV_GET,    /* the key's value (status XPB_KV_CONFLICT: no live value) */
    XPB_KV_FETCH,  /* key is a pattern ("tok.*"): every live key matching it, with values */
} xpb_kv_op;

typedef enum xpb_kv_status {
    XPB_KV_OK = 0,
    XPB_KV_CONFLICT = 1,    /* exists (create) or another revision (update, delete) */
    XPB_KV_UNREACHABLE = 2, /* no answer in time, no connection, any other failure */
} xpb_kv_status;

typedef struct xpb_kv_result {
    xpb_kv_op op;
    int bucket;      /* the index given to xpb_kv_submit */
    const char *key; /* NULL for KEYS */
    uint64_t rev;    /* the new revision (create, update, put) */
    xpb_kv_status status;
    int64_t sent_ms; /* xpb_kv_now_ms() when the worker started the call */
    char **keys;     /* KEYS, FETCH: valid during the callback */
    size_t nkeys;
    uint8_t **values; /* FETCH: values[i] of keys[i], values_len[i] bytes */
    size_t *values_len;
    const uint8_t *value; /* GET: the value, value_len bytes */
    size_t value_len;
} xpb_kv_result;

typedef void (*xpb_kv_cb)(void *ud, const xpb_kv_result *r);

typedef struct xpb_kv xpb_kv;

/* Connects (cfg's servers, TLS, credentials) and opens or creates the
 * buckets (history 1, ttls_s[i]: a key of bucket i not written for that long
 * is removed by the server; replicas as xpb_bus_nats_replicas). An existing
 * bucket keeps its settings. Blocks until done. 0, or XPB_EINVAL with a
 * sentence in err. */
int xpb_kv_open(xpb_kv **out, xpb_loop *loop, const xpb_bus_nats_cfg *cfg,
                const char *const *buckets, const unsigned *ttls_s, size_t nbuckets, xpb_kv_cb cb,
                void *ud, char *err, size_t errlen);
/* Queues one operation (strings copied). 0, or XPB_EQUEUEFULL / XPB_ENOMEM. */
int xpb_kv_submit(xpb_kv *kv, xpb_kv_op op, int bucket, const char *key, const char *value,
                  uint64_t last_rev);
/* The same with a value of len bytes (any bytes). */
int xpb_kv_submit_bin(xpb_kv *kv, xpb_kv_op op, int bucket, const char *key, const void *value,
                      size_t len, uint64_t last_rev);
/* Runs what is queued (at most wait_ms more), stops the worker, closes.
 * Results after the call are not delivered. NULL ok. */
void xpb_kv_close(xpb_kv *kv, unsigned wait_ms);

/* The monotonic clock in ms that sent_ms uses. */
int64_t xpb_kv_now_ms(void);

#endif
