/* Settings of the NATS JetStream back end (docs/bus.md, "NATS JetStream";
 * docs/scaling.md): given as xpb_bus_config.backend_cfg with
 * backend = &xpb_bus_nats_ops. Strings stay the caller's until close. */
#ifndef XPB_BUS_NATS_H
#define XPB_BUS_NATS_H

#include <stddef.h>
#include <stdint.h>

#include "xpb_bus_nats_wire.h"

#define XPB_NATS_MAX_SERVERS 32u
#define XPB_NATS_DEFAULT_ACK_WAIT_MS 5000u   /* a publish not acknowledged by then is sent again */
#define XPB_NATS_DEFAULT_MAX_PENDING (64u * 1024u * 1024u) /* bytes held until acknowledged */
#define XPB_NATS_DEFAULT_DUP_WINDOW_S 120u   /* the stream's duplicate window */
#define XPB_NATS_RETRY_MIN_MS 100u           /* first resend after a refusal, doubling */
#define XPB_NATS_RETRY_MAX_MS 5000u
#define XPB_NATS_CLOSE_WAIT_MS 5000u         /* close: unacknowledged batches get this long */
#define XPB_NATS_MAX_REQUESTS_QUEUED 4096u   /* requests waiting for the loop */
#define XPB_NATS_PING_MS 2000                /* client pings; 2 unanswered: reconnect elsewhere */

typedef struct xpb_bus_nats_cfg {
    const char *const *servers; /* nats://host:port ... */
    size_t n_servers;
    const char *ca_file, *cert_file, *key_file; /* TLS: trusted CAs, client certificate */
    const char *creds_file;                     /* a .creds file (JWT + NKey seed), or NULL */
    const char *nkey_seed_file;                 /* an NKey seed file (with nkey_public), or NULL */
    const char *nkey_public;
    const char *bridge_id;      /* this bridge's name: logs, xpb.ctl.<id>, the lease owner */
    const char *stream;         /* NULL: XPB_NATS_STREAM */
    int replicas;               /* 0: 3 with 3 or more servers, else 1 */
    int memory_storage;         /* 0: file storage */
    uint64_t max_age_s, max_bytes; /* the stream's retention; 0: unlimited */
    unsigned dup_window_s;      /* 0: XPB_NATS_DEFAULT_DUP_WINDOW_S */
    unsigned ack_wait_ms;       /* 0: XPB_NATS_DEFAULT_ACK_WAIT_MS */
    size_t max_pending_bytes;   /* 0: XPB_NATS_DEFAULT_MAX_PENDING */
    int only_listed_servers;    /* ignore the servers the cluster announces (behind a proxy) */
} xpb_bus_nats_cfg;

/* The replicas a stream gets under cfg (the rule above). */
int xpb_bus_nats_replicas(const xpb_bus_nats_cfg *cfg);

#endif
