/* The account lease state machine (lease.h): pure, driven by the caller's
 * clock and KV results. */
#include "lease.h"

#include <stdlib.h>
#include <string.h>

#include "xpb_bus_nats_wire.h"

typedef struct lacct {
    char *jid, *token;
    lease_state st;
    uint64_t rev;       /* the revision we wrote last (OWNED and after) */
    int64_t renewed_ms; /* when the last successful write was sent */
    int inflight;       /* an update is on its way */
    int session;        /* started and not yet gone */
    int hard_sent;      /* a hard stop was asked */
    int taken;          /* another bridge's key was listed last round */
    uint32_t hnext;     /* token hash chain: index + 1, 0 ends */
    uint32_t jnext;     /* jid hash chain */
} lacct;

struct lease_tab {
    lease_cfg cfg;
    char *self, *self_key;
    lease_ops ops;
    lacct *a;
    size_t n;
    uint32_t *tok_buckets, *jid_buckets, nbuckets;
    unsigned live;
    uint64_t presence_rev; /* our key in xpb_bridges */
    int presence_inflight; /* a put of it is on its way */
    unsigned round_ops;    /* operations of the last round not yet answered */
    int64_t next_round, claim_after;
    int stopping;
    uint32_t rnd;
    lease_stats st;
};

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static uint32_t next_rand(lease_tab *t)
{
    t->rnd ^= t->rnd << 13; /* xorshift32: jitter only */
    t->rnd ^= t->rnd >> 17;
    t->rnd ^= t->rnd << 5;
    return t->rnd;
}

static char *token_of(const char *s)
{
    size_t n = xpb_nats_account_token(s, NULL, 0);
    char *tok = malloc(n + 1);
    if (tok != NULL) xpb_nats_account_token(s, tok, n + 1);
    return tok;
}

static long find_token(const lease_tab *t, const char *tok)
{
    for (uint32_t i = t->tok_buckets[hash(tok) & (t->nbuckets - 1)]; i; i = t->a[i - 1].hnext)
        if (strcmp(t->a[i - 1].token, tok) == 0) return (long)i - 1;
    return -1;
}

long lease_find(const lease_tab *t, const char *jid)
{
    for (uint32_t i = t->jid_buckets[hash(jid) & (t->nbuckets - 1)]; i; i = t->a[i - 1].jnext)
        if (strcmp(t->a[i - 1].jid, jid) == 0) return (long)i - 1;
    return -1;
}

static int index_all(lease_tab *t)
{
    t->nbuckets = 16;
    while (t->nbuckets < t->n * 2) t->nbuckets <<= 1;
    t->tok_buckets = calloc(t->nbuckets, sizeof *t->tok_buckets);
    t->jid_buckets = calloc(t->nbuckets, sizeof *t->jid_buckets);
    if (t->tok_buckets == NULL || t->jid_buckets == NULL) return -1;
    for (size_t i = 0; i < t->n; i++) {
        uint32_t *hb = &t->tok_buckets[hash(t->a[i].token) & (t->nbuckets - 1)];
        uint32_t *jb = &t->jid_buckets[hash(t->a[i].jid) & (t->nbuckets - 1)];
        t->a[i].hnext = *hb;
        *hb = (uint32_t)i + 1;
        t->a[i].jnext = *jb;
        *jb = (uint32_t)i + 1;
    }
    return 0;
}

lease_tab *lease_new(const lease_cfg *cfg, const lease_ops *ops, const char *const *accounts,
                     size_t n, int64_t now_ms)
{
    lease_tab *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    t->cfg = *cfg;
    t->ops = *ops;
    t->n = n;
    t->live = 1;
    t->rnd = cfg->seed ? cfg->seed : 0x9e3779b9u;
    t->self = strdup(cfg->self);
    t->self_key = token_of(cfg->self);
    t->cfg.self = t->self;
    t->a = calloc(n ? n : 1, sizeof *t->a);
    int bad = t->self == NULL || t->self_key == NULL || t->a == NULL;
    for (size_t i = 0; !bad && i < n; i++) {
        t->a[i].jid = strdup(accounts[i]);
        t->a[i].token = token_of(accounts[i]);
        bad = t->a[i].jid == NULL || t->a[i].token == NULL;
    }
    if (bad || index_all(t) != 0) {
        lease_free(t);
        return NULL;
    }
    t->next_round = now_ms;
    t->claim_after = now_ms + cfg->ttl_ms / LEASE_RENEWS_PER_TTL; /* a round to see the others */
    t->st.total = n;
    return t;
}

void lease_free(lease_tab *t)
{
    if (t == NULL) return;
    for (size_t i = 0; t->a != NULL && i < t->n; i++) {
        free(t->a[i].jid);
        free(t->a[i].token);
    }
    free(t->a);
    free(t->tok_buckets);
    free(t->jid_buckets);
    free(t->self);
    free(t->self_key);
    free(t);
}

/* 0 when queued: its result will come. */
static int kv(lease_tab *t, xpb_kv_op op, int bucket, const char *key, uint64_t rev)
{
    return t->ops.kv(t->ops.ud, op, bucket, key, op == XPB_KV_DELETE ? NULL : t->self, rev);
}

static void stop_session(lease_tab *t, size_t i, int hard)
{
    lacct *a = &t->a[i];
    if (!a->session || (hard && a->hard_sent)) return;
    a->hard_sent |= hard;
    t->ops.stop(t->ops.ud, i, hard);
}

/* The session is gone: give the key back while our revision may still hold
 * it (a revision-checked delete cannot remove another bridge's claim). */
static void release_key(lease_tab *t, size_t i, int64_t now)
{
    lacct *a = &t->a[i];
    a->st = LEASE_DELETING;
    if (a->rev == 0 || now - a->renewed_ms >= (int64_t)t->cfg.ttl_ms ||
        kv(t, XPB_KV_DELETE, LEASE_BUCKET_OWNERS, a->token, a->rev) != 0) {
        a->st = LEASE_FREE;
        a->rev = 0;
    }
}

void lease_session_gone(lease_tab *t, size_t idx, int64_t now_ms)
{
    if (idx >= t->n) return;
    lacct *a = &t->a[idx];
    a->session = 0;
    a->hard_sent = 0;
    if (a->st == LEASE_OWNED || a->st == LEASE_RELEASING || a->st == LEASE_LOST) {
        t->st.released++;
        release_key(t, idx, now_ms);
    }
}

static void lose(lease_tab *t, size_t i)
{
    t->a[i].st = LEASE_LOST;
    t->st.lost++;
    stop_session(t, i, 0);
}

/* Deadlines first (they hold even when KV does not answer), then renewals. */
static void check_account(lease_tab *t, size_t i, int64_t now)
{
    lacct *a = &t->a[i];
    int64_t age = now - a->renewed_ms, ttl = t->cfg.ttl_ms;
    if (a->st == LEASE_OWNED && age >= ttl * LEASE_CLOSE_AT / 100) {
        t->st.deadline_closes++;
        lose(t, i);
    }
    if ((a->st == LEASE_LOST || a->st == LEASE_RELEASING) && a->session &&
        age >= ttl * LEASE_DROP_AT / 100)
        stop_session(t, i, 1);
    if (a->st == LEASE_OWNED && !a->inflight && age >= ttl / LEASE_RENEWS_PER_TTL)
        a->inflight = kv(t, XPB_KV_UPDATE, LEASE_BUCKET_OWNERS, a->token, a->rev) == 0;
}

void lease_tick(lease_tab *t, int64_t now_ms)
{
    for (size_t i = 0; i < t->n; i++) check_account(t, i, now_ms);
    /* A round waits for the last one's answers: while NATS does not answer,
     * the KV worker's queue must not fill with rounds nobody will read. */
    if (t->stopping || now_ms < t->next_round || t->round_ops > 0) return;
    unsigned period = t->cfg.ttl_ms / LEASE_RENEWS_PER_TTL;
    t->next_round = now_ms + period + next_rand(t) % (period / 5 + 1);
    t->presence_inflight = kv(t, XPB_KV_PUT, LEASE_BUCKET_BRIDGES, t->self_key, 0) == 0;
    t->round_ops = (unsigned)t->presence_inflight;
    t->round_ops += kv(t, XPB_KV_KEYS, LEASE_BUCKET_BRIDGES, NULL, 0) == 0;
    t->round_ops += kv(t, XPB_KV_KEYS, LEASE_BUCKET_OWNERS, NULL, 0) == 0;
}

static size_t mine(const lease_tab *t)
{
    size_t m = 0;
    for (size_t i = 0; i < t->n; i++)
        m += t->a[i].st == LEASE_OWNED || t->a[i].st == LEASE_CLAIMING;
    return m;
}

/* The share: ceil(accounts / live bridges), at most max_sessions. */
static size_t share(const lease_tab *t)
{
    size_t live = t->live ? t->live : 1;
    size_t s = (t->n + live - 1) / live;
    if (t->cfg.max_sessions && s > t->cfg.max_sessions) s = t->cfg.max_sessions;
    return s;
}

static void plan(lease_tab *t, int64_t now)
{
    if (t->stopping || now < t->claim_after || t->n == 0) return;
    size_t have = mine(t), want = share(t);
    size_t start = next_rand(t) % t->n; /* bridges start their scans apart */
    for (size_t k = 0; k < t->n && have < want; k++) {
        size_t i = (start + k) % t->n;
        lacct *a = &t->a[i];
        if (a->st != LEASE_FREE || a->taken) continue;
        if (kv(t, XPB_KV_CREATE, LEASE_BUCKET_OWNERS, a->token, 0) != 0) break; /* queue full */
        a->st = LEASE_CLAIMING;
        t->st.claims++;
        have++;
    }
    unsigned shed = 0;
    for (size_t k = 0; k < t->n && have > want && t->live > 1 && shed < LEASE_SHED_PER_ROUND;
         k++) {
        size_t i = (start + k) % t->n;
        if (t->a[i].st != LEASE_OWNED) continue;
        t->a[i].st = LEASE_RELEASING;
        have--;
        shed++;
        stop_session(t, i, 0);
    }
}

static void withdraw(lease_tab *t);

static void on_keys(lease_tab *t, const xpb_kv_result *r, int64_t now)
{
    if (r->status != XPB_KV_OK) return;
    if (r->bucket == LEASE_BUCKET_BRIDGES) {
        unsigned live = 0, me = 0;
        for (size_t k = 0; k < r->nkeys; k++) {
            live++;
            me |= strcmp(r->keys[k], t->self_key) == 0;
        }
        t->live = live + !me; /* ourselves, even before our first put lands */
        return;
    }
    for (size_t i = 0; i < t->n; i++) t->a[i].taken = 0;
    for (size_t k = 0; k < r->nkeys; k++) {
        long i = find_token(t, r->keys[k]);
        if (i >= 0 && t->a[i].st == LEASE_FREE) t->a[i].taken = 1;
    }
    plan(t, now);
}

static void on_create(lease_tab *t, size_t i, const xpb_kv_result *r)
{
    lacct *a = &t->a[i];
    if (a->st != LEASE_CLAIMING) return;
    if (r->status != XPB_KV_OK) {
        a->st = LEASE_FREE;
        a->taken = r->status == XPB_KV_CONFLICT;
        t->st.claims_lost++;
        return;
    }
    a->rev = r->rev;
    a->renewed_ms = r->sent_ms;
    if (t->stopping) { /* won after the stop began: give it straight back */
        a->st = LEASE_DELETING;
        if (kv(t, XPB_KV_DELETE, LEASE_BUCKET_OWNERS, a->token, a->rev) != 0) a->st = LEASE_FREE;
        return;
    }
    a->st = LEASE_OWNED;
    a->session = 1;
    a->hard_sent = 0;
    t->ops.start(t->ops.ud, i);
}

static void on_update(lease_tab *t, size_t i, const xpb_kv_result *r)
{
    lacct *a = &t->a[i];
    a->inflight = 0;
    if (r->status == XPB_KV_OK) {
        t->st.renewals++;
        a->rev = r->rev;
        a->renewed_ms = r->sent_ms;
        return;
    }
    t->st.renew_failures++;
    if (r->status == XPB_KV_CONFLICT && a->st == LEASE_OWNED) {
        a->rev = 0; /* the key is someone else's now: never delete it */
        lose(t, i);
    }
}

void lease_on_result(lease_tab *t, const xpb_kv_result *r, int64_t now_ms)
{
    if ((r->op == XPB_KV_KEYS || r->op == XPB_KV_PUT) && t->round_ops > 0) t->round_ops--;
    if (r->op == XPB_KV_KEYS) {
        on_keys(t, r, now_ms);
        return;
    }
    if (r->op == XPB_KV_PUT) {
        t->presence_inflight = 0;
        if (r->status == XPB_KV_OK) t->presence_rev = r->rev;
        if (t->stopping) withdraw(t);
        return;
    }
    if (r->key == NULL || r->bucket != LEASE_BUCKET_OWNERS) return;
    long i = find_token(t, r->key);
    if (i < 0) return;
    switch (r->op) {
    case XPB_KV_CREATE: on_create(t, (size_t)i, r); break;
    case XPB_KV_UPDATE: on_update(t, (size_t)i, r); break;
    case XPB_KV_DELETE:
        if (t->a[i].st == LEASE_DELETING) {
            t->a[i].st = LEASE_FREE;
            t->a[i].rev = 0;
        }
        break;
    default: break;
    }
}

/* Gone from the live count at once: the others' shares grow now, not when
 * our presence key lapses (a put on its way is withdrawn when it lands). */
static void withdraw(lease_tab *t)
{
    if (t->presence_inflight || t->presence_rev == 0) return;
    (void)kv(t, XPB_KV_DELETE, LEASE_BUCKET_BRIDGES, t->self_key, t->presence_rev);
    t->presence_rev = 0; /* refused: the key lapses by itself */
}

void lease_stop(lease_tab *t, int64_t now_ms)
{
    (void)now_ms;
    t->stopping = 1;
    withdraw(t);
    for (size_t i = 0; i < t->n; i++)
        if (t->a[i].st == LEASE_OWNED) {
            t->a[i].st = LEASE_RELEASING;
            stop_session(t, i, 0);
        }
}

lease_state lease_state_of(const lease_tab *t, size_t idx)
{
    return idx < t->n ? t->a[idx].st : LEASE_FREE;
}

const char *lease_account(const lease_tab *t, size_t idx)
{
    return idx < t->n ? t->a[idx].jid : NULL;
}

void lease_get_stats(const lease_tab *t, lease_stats *out)
{
    *out = t->st;
    out->owned = out->claiming = out->closing = 0;
    out->live_bridges = t->live;
    for (size_t i = 0; i < t->n; i++) {
        lease_state s = t->a[i].st;
        out->owned += s == LEASE_OWNED;
        out->claiming += s == LEASE_CLAIMING;
        out->closing += s == LEASE_RELEASING || s == LEASE_LOST || s == LEASE_DELETING;
    }
}
