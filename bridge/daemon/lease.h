/* Internal to the daemon: the account leases (docs/scaling.md, "Leases"), a
 * pure state machine. Every bridge reads the same account list; a bridge
 * owns an account while its key in KV bucket xpb_owners carries a revision
 * it wrote. Claim = create the key; renew = update it at the revision we
 * hold, every ttl/5; release = delete it at that revision. A claim lapses
 * on the server ttl after its last write, so a bridge that cannot renew
 * closes its session at 70% of the ttl and drops the connection at 85%,
 * counted from when the last successful write was sent (the server stamps
 * it later): before any other bridge can create the key, the session is
 * gone. Bridges announce themselves in
 * bucket xpb_bridges (half the ttl); a bridge claims while it owns fewer than
 * ceil(accounts / live bridges) (and max_sessions), and sheds the excess
 * when a bridge joins. No I/O, no clock: the caller gives the time and
 * carries out the operations (lease_ops), so tests run it on a fake KV. */
#ifndef XPB_LEASE_H
#define XPB_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "xpb_bus_kv.h" /* the operation and result types only */

#define LEASE_TICK_MS 250u        /* how often the caller calls lease_tick */
#define LEASE_RENEWS_PER_TTL 5    /* a renewal every ttl/5 */
#define LEASE_CLOSE_AT 70         /* % of the ttl since the last renewal: close the session */
#define LEASE_DROP_AT 85          /* %: drop its connection (the close did not finish) */
#define LEASE_SHED_PER_ROUND 8u   /* accounts given up per round when over the share */
#define LEASE_BUCKET_OWNERS 0     /* bucket indexes in the ops' kv calls */
#define LEASE_BUCKET_BRIDGES 1

typedef enum lease_state {
    LEASE_FREE,      /* not ours */
    LEASE_CLAIMING,  /* create sent */
    LEASE_OWNED,     /* ours: the session runs */
    LEASE_RELEASING, /* shed or stopping: session closing, then delete */
    LEASE_LOST,      /* not renewed in time, or taken: session closing */
    LEASE_DELETING,  /* delete sent */
} lease_state;

typedef struct lease_ops {
    void *ud;
    /* Queue a KV operation; its result comes back through lease_on_result. */
    int (*kv)(void *ud, xpb_kv_op op, int bucket, const char *key, const char *value,
              uint64_t last_rev);
    /* Open the account's session (idx: its place in the list given to lease_new). */
    void (*start)(void *ud, size_t idx);
    /* Close it (hard: drop the connection now). lease_session_gone follows, possibly
     * from inside this call. */
    void (*stop)(void *ud, size_t idx, int hard);
} lease_ops;

typedef struct lease_cfg {
    const char *self;      /* the bridge id: the value of its keys */
    unsigned ttl_ms;       /* the buckets' ttl */
    unsigned max_sessions; /* 0: no limit */
    uint32_t seed;         /* jitter and the claim order */
} lease_cfg;

typedef struct lease_stats {
    size_t owned, claiming, closing, total;
    unsigned live_bridges;
    uint64_t claims, claims_lost, renewals, renew_failures, lost, released, deadline_closes;
} lease_stats;

typedef struct lease_tab lease_tab;

/* accounts: bare JIDs (copied). NULL when out of memory or a JID's token
 * does not fit. The first claims wait one round, to see the other bridges. */
lease_tab *lease_new(const lease_cfg *cfg, const lease_ops *ops, const char *const *accounts,
                     size_t n, int64_t now_ms);
void lease_free(lease_tab *t);
/* Every LEASE_TICK_MS: deadlines, renewals, and a round (presence,
 * listings, claims) every ttl/5 with jitter. */
void lease_tick(lease_tab *t, int64_t now_ms);
void lease_on_result(lease_tab *t, const xpb_kv_result *r, int64_t now_ms);
/* The account's session is gone (closed, dropped, or never started). */
void lease_session_gone(lease_tab *t, size_t idx, int64_t now_ms);
/* Clean stop: every session closes and each claim is deleted when its
 * session is gone; no new claims. */
void lease_stop(lease_tab *t, int64_t now_ms);
lease_state lease_state_of(const lease_tab *t, size_t idx);
const char *lease_account(const lease_tab *t, size_t idx);
/* The index of a bare JID, or -1 (O(1)). */
long lease_find(const lease_tab *t, const char *jid);
void lease_get_stats(const lease_tab *t, lease_stats *out);

#endif
