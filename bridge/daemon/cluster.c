/* Many bridges over NATS (docs/scaling.md): the bus settings of the NATS
 * back end, and the account leases (lease.c) wired to the KV worker
 * (xpb_bus_kv.h), the loop's timer and the daemon's accounts. A lease is
 * one account, or with nats.shards one shard ("shard-<k>"): the accounts
 * whose JID hashes to k, started together when it is claimed and all gone
 * before it is released. The daemon calls the cluster_* hooks below; with
 * the NNG back end they do nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon_internal.h"
#include "lease.h"
#include "xpb_bus_backend.h"
#include "xpb_bus_kv.h"
#include "xpb_bus_nats.h"
#include "xpb_error.h"
#include "xpb_strmap.h"

/* With nats.shards: one lease key's accounts (indexes into d->conf). */
struct shard {
    char name[24]; /* "shard-<k>": its lease key */
    size_t *conf, n;
    unsigned char *up; /* conf[i] started (or its state being read) and not gone yet */
    unsigned live;     /* how many are up */
    int holding;       /* op_start runs: the lease's sessions cannot be gone yet */
};

struct xpb_cluster {
    xpb_daemon *d;
    xpb_bus_nats_cfg bus;
    xpb_nats_config own; /* copies of the strings bus points to */
    char bridge_id[256];
    unsigned ttl_s, max_sessions;
    int leases;
    int keep_state; /* XEP-0198 state and sends in NATS KV (state_nats.c) */
    xpb_kv *kv;
    lease_tab *lt;
    xpb_timer *tick;
    struct shard *shards; /* n_shards of them; NULL: a lease per account */
    unsigned n_shards;
};

/* The same on every bridge: FNV-1a of the JID as configured. */
static size_t shard_of(const struct xpb_cluster *c, const char *jid)
{
    return xpb_strmap_hash(jid) % c->n_shards;
}

/* Lease idx is (still) what holds jid. */
static int lease_holds(const struct xpb_cluster *c, size_t idx, const char *jid)
{
    if (c->shards) return idx < c->n_shards && shard_of(c, jid) == idx;
    const char *held = lease_account(c->lt, idx);
    return held && strcmp(held, jid) == 0;
}

/* Account jid of lease idx is gone (or never started): with shards, the
 * lease's sessions are gone once the last account it started is (one it
 * did not start, an old session closing late, does not count). */
static void member_gone(struct xpb_cluster *c, size_t idx, const char *jid)
{
    if (c->shards) {
        struct shard *sh = &c->shards[idx];
        size_t i = 0;
        while (i < sh->n && strcmp(c->d->conf[sh->conf[i]].jid, jid) != 0) i++;
        if (i == sh->n || !sh->up[i]) return;
        sh->up[i] = 0;
        if (--sh->live || sh->holding) return;
    }
    lease_session_gone(c->lt, idx, xpb_kv_now_ms());
}

static int copy_nats(xpb_nats_config *dst, const xpb_nats_config *n)
{
    *dst = *n;
    dst->servers = calloc(n->n_servers ? n->n_servers : 1, sizeof *dst->servers);
    char **s[] = {&dst->ca_file,        &dst->cert_file,   &dst->key_file, &dst->creds_file,
                  &dst->nkey_seed_file, &dst->nkey_public, &dst->bridge_id, &dst->stream};
    int bad = !dst->servers;
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        if (*s[i] && !(*s[i] = strdup(*s[i]))) bad = 1;
    for (size_t i = 0; !bad && i < n->n_servers; i++)
        bad = !(dst->servers[i] = strdup(n->servers[i]));
    return bad ? XPB_ENOMEM : 0;
}

static void free_nats(xpb_nats_config *n)
{
    for (size_t i = 0; n->servers && i < n->n_servers; i++) free(n->servers[i]);
    free(n->servers);
    char *s[] = {n->ca_file,        n->cert_file,   n->key_file, n->creds_file,
                 n->nkey_seed_file, n->nkey_public, n->bridge_id, n->stream};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) free(s[i]);
}

int cluster_bus_config(xpb_daemon *d, const xpb_config *cfg, xpb_bus_config *bc, char *err,
                       size_t errlen)
{
    if (!cfg->bus_nats) return 0;
    struct xpb_cluster *c = calloc(1, sizeof *c);
    if (!c) return XPB_ENOMEM;
    d->cluster = c;
    c->d = d;
    if (copy_nats(&c->own, &cfg->nats)) return XPB_ENOMEM;
    const xpb_nats_config *n = &c->own;
    if (n->bridge_id) snprintf(c->bridge_id, sizeof c->bridge_id, "%s", n->bridge_id);
    else {
        char host[200] = "xpbridge";
        gethostname(host, sizeof host - 1);
        snprintf(c->bridge_id, sizeof c->bridge_id, "%s-%ld", host, (long)getpid());
    }
    c->bus = (xpb_bus_nats_cfg){
        .servers = (const char *const *)n->servers, .n_servers = n->n_servers,
        .ca_file = n->ca_file, .cert_file = n->cert_file, .key_file = n->key_file,
        .creds_file = n->creds_file, .nkey_seed_file = n->nkey_seed_file,
        .nkey_public = n->nkey_public, .bridge_id = c->bridge_id, .stream = n->stream,
        .replicas = n->replicas, .memory_storage = n->memory_storage,
        .max_age_s = n->max_age_s, .max_bytes = n->max_bytes,
        .only_listed_servers = n->only_listed_servers};
    c->ttl_s = n->lease_ttl_s ? n->lease_ttl_s : XPB_CONFIG_DEFAULT_LEASE_TTL_S;
    c->max_sessions = n->max_sessions;
    c->n_shards = n->shards;
    c->leases = n->leases;
    c->keep_state = n->leases && !n->local_state;
    bc->backend = &xpb_bus_nats_ops;
    bc->backend_cfg = &c->bus;
    (void)err;
    (void)errlen;
    return 0;
}

int cluster_owns_accounts(const xpb_daemon *d)
{
    return d->cluster && d->cluster->leases;
}

/* ---- lease ops ---- */

static int op_kv(void *ud, xpb_kv_op op, int bucket, const char *key, const char *value,
                 uint64_t rev)
{
    struct xpb_cluster *c = ud;
    int rc = xpb_kv_submit(c->kv, op, bucket, key, value, rev);
    if (rc) xpb_log(XPB_LOG_WARN, "leases: KV queue refused an operation (%s)", xpb_strerror(rc));
    return rc;
}

/* The account's configuration: at its lease index unless a reload moved it. */
static const xpb_account_cfg *conf_of(const xpb_daemon *d, size_t idx, const char *jid)
{
    if (idx < d->n_conf && strcmp(d->conf[idx].jid, jid) == 0) return &d->conf[idx];
    for (size_t i = 0; i < d->n_conf; i++)
        if (strcmp(d->conf[i].jid, jid) == 0) return &d->conf[i];
    return NULL;
}

/* Claimed: its XEP-0198 state and outbox are read from NATS KV first
 * (state_nats.c), then cluster_prefetched starts it. 0, or it was not
 * started (member_gone is the caller's). */
static int start_one(struct xpb_cluster *c, size_t idx, const char *jid)
{
    xpb_daemon *d = c->d;
    struct account *a = find_account(d, jid);
    if (a && !a->dead) { /* still closing from an earlier lease: wait for it */
        xpb_log(XPB_LOG_INFO, "leases: %s claimed while its old session closes; giving it back",
                jid);
        return -1;
    }
    if (!d->nstate) {
        cluster_prefetched(d, idx, jid, 0);
        return 0;
    }
    int rc = state_nats_prefetch(d, idx, jid);
    if (rc)
        xpb_log(XPB_LOG_ERROR, "leases: %s claimed but its state cannot be read: %s", jid,
                xpb_strerror(rc));
    return rc;
}

static void op_start(void *ud, size_t idx)
{
    struct xpb_cluster *c = ud;
    if (!c->shards) {
        const char *jid = lease_account(c->lt, idx);
        if (start_one(c, idx, jid) != 0) member_gone(c, idx, jid);
        return;
    }
    struct shard *sh = &c->shards[idx];
    xpb_log(XPB_LOG_INFO, "leases: %s claimed by %s (%zu accounts)", sh->name, c->bridge_id,
            sh->n);
    sh->holding = 1; /* a member failing at once must not end the lease of the others */
    for (size_t i = 0; i < sh->n; i++) {
        const char *jid = c->d->conf[sh->conf[i]].jid;
        if (sh->up[i]) continue; /* its old session still closes */
        sh->up[i] = 1;
        sh->live++;
        if (start_one(c, idx, jid) != 0) member_gone(c, idx, jid);
    }
    sh->holding = 0;
    if (!sh->live) lease_session_gone(c->lt, idx, xpb_kv_now_ms());
}

void cluster_prefetched(xpb_daemon *d, size_t idx, const char *jid, int rc)
{
    struct xpb_cluster *c = d->cluster;
    if (!c || !c->lt || !lease_holds(c, idx, jid)) return;
    if (lease_state_of(c->lt, idx) != LEASE_OWNED) { /* given up while its state was read */
        member_gone(c, idx, jid);
        return;
    }
    const xpb_account_cfg *ac = conf_of(d, idx, jid);
    char err[512] = "";
    struct account *a = find_account(d, jid);
    if (rc) {
        snprintf(err, sizeof err, "its state in NATS KV could not be read (%s)",
                 xpb_strerror(rc));
    } else if (a && !a->dead) {
        snprintf(err, sizeof err, "its old session still closes");
    } else if (ac && account_start(d, ac, NULL, 1, err, sizeof err) == 0) {
        xpb_log(XPB_LOG_INFO, "leases: %s claimed by %s", jid, c->bridge_id);
        return;
    } else {
        xpb_log(XPB_LOG_ERROR, "leases: %s claimed but cannot start: %s", jid,
                ac || rc ? err : "no longer configured");
    }
    member_gone(c, idx, jid);
}

static void stop_one(struct xpb_cluster *c, size_t idx, struct account *a, int hard);

static void op_stop(void *ud, size_t idx, int hard)
{
    struct xpb_cluster *c = ud;
    if (c->shards) { /* each member's removal ends in member_gone */
        struct shard *sh = &c->shards[idx];
        if (!sh->live) {
            lease_session_gone(c->lt, idx, xpb_kv_now_ms());
            return;
        }
        for (size_t i = 0; i < sh->n; i++) {
            struct account *a = sh->up[i] ? find_account(c->d, c->d->conf[sh->conf[i]].jid)
                                          : NULL;
            if (a) stop_one(c, idx, a, hard);
        }
        return;
    }
    struct account *a = find_account(c->d, lease_account(c->lt, idx));
    if (!a) {
        lease_session_gone(c->lt, idx, xpb_kv_now_ms());
        return;
    }
    stop_one(c, idx, a, hard);
}

static void stop_one(struct xpb_cluster *c, size_t idx, struct account *a, int hard)
{
    const char *jid = a->name;
    xpb_log(XPB_LOG_INFO, "leases: %s: %s the session (lease %s)", jid,
            hard ? "dropping" : "closing",
            lease_state_of(c->lt, idx) == LEASE_LOST ? "not renewed in time" : "released");
    if (hard) {
        if (a->dead) return;
        answer_closers(a, "dropped: the account's lease was not renewed in time");
        a->dead = 1; /* the reaper removes the session and its connection */
        account_recount(a);
        schedule_reap(c->d);
    } else {
        account_close(a);
    }
}

static void on_kv(void *ud, const xpb_kv_result *r)
{
    struct xpb_cluster *c = ud;
    if (c->lt) lease_on_result(c->lt, r, xpb_kv_now_ms());
}

static void on_tick(void *ud)
{
    struct xpb_cluster *c = ud;
    lease_tick(c->lt, xpb_kv_now_ms());
    xpb_timer_start(c->tick, LEASE_TICK_MS);
}

/* The shards and their members, from the account list (the same on every bridge). */
static int shards_make(struct xpb_cluster *c)
{
    xpb_daemon *d = c->d;
    if (!(c->shards = calloc(c->n_shards, sizeof *c->shards))) return XPB_ENOMEM;
    for (unsigned k = 0; k < c->n_shards; k++)
        snprintf(c->shards[k].name, sizeof c->shards[k].name, "shard-%u", k);
    for (size_t i = 0; i < d->n_conf; i++) {
        struct shard *sh = &c->shards[shard_of(c, d->conf[i].jid)];
        size_t *m = realloc(sh->conf, (sh->n + 1) * sizeof *m);
        if (m) sh->conf = m;
        unsigned char *u = m ? realloc(sh->up, sh->n + 1) : NULL;
        if (!u) return XPB_ENOMEM;
        sh->up = u;
        sh->up[sh->n] = 0;
        sh->conf[sh->n++] = i;
    }
    return 0;
}

int cluster_start(xpb_daemon *d, char *err, size_t errlen)
{
    struct xpb_cluster *c = d->cluster;
    if (!c || !c->leases) return 0;
    static const char *const buckets[] = {XPB_NATS_OWNERS_BUCKET, XPB_NATS_BRIDGES_BUCKET};
    /* Presence lapses at half the claims' ttl: when a dead bridge's claims
     * lapse, the others already count it out and take its whole share. */
    const unsigned ttls[] = {c->ttl_s, c->ttl_s / 2 > 2 ? c->ttl_s / 2 : 2};
    int rc = xpb_kv_open(&c->kv, d->loop, &c->bus, buckets, ttls, 2, on_kv, c, err, errlen);
    if (!rc && c->keep_state) rc = state_nats_init(d, &c->bus, err, errlen);
    if (rc) return rc;
    size_t n_keys = c->n_shards ? c->n_shards : d->n_conf;
    const char **jids = calloc(n_keys ? n_keys : 1, sizeof *jids);
    if (!jids || (c->n_shards && shards_make(c) != 0)) {
        free(jids);
        return XPB_ENOMEM;
    }
    for (size_t i = 0; i < n_keys; i++) jids[i] = c->shards ? c->shards[i].name : d->conf[i].jid;
    lease_cfg lc = {.self = c->bridge_id, .ttl_ms = c->ttl_s * 1000u,
                    .max_sessions = c->max_sessions,
                    .seed = (uint32_t)getpid() * 2654435761u ^ (uint32_t)xpb_kv_now_ms()};
    lease_ops ops = {.ud = c, .kv = op_kv, .start = op_start, .stop = op_stop};
    c->lt = lease_new(&lc, &ops, jids, n_keys, xpb_kv_now_ms());
    free(jids);
    if (!c->lt || xpb_timer_new(d->loop, on_tick, c, &c->tick)) return XPB_ENOMEM;
    xpb_timer_start(c->tick, 0);
    xpb_log(XPB_LOG_INFO, "leases: bridge %s shares %zu accounts%s (ttl %u s, max_sessions %u); "
            "XEP-0198 state and sends kept in %s", c->bridge_id, d->n_conf,
            c->shards ? " in shards" : "", c->ttl_s, c->max_sessions,
            d->state ? d->state->where : "no store (--state-dir none)");
    return 0;
}

void cluster_account_gone(xpb_daemon *d, const char *jid)
{
    if (d->bus) xpb_bus_route(d->bus, jid, 0);
    if (d->nmarks) { /* its last markers are queued before its marks are dropped */
        catchup_commit(d);
        marks_nats_forget(d, jid);
    }
    struct xpb_cluster *c = d->cluster;
    if (!c || !c->lt) return;
    if (c->shards) {
        member_gone(c, shard_of(c, jid), jid);
        return;
    }
    long i = lease_find(c->lt, jid);
    if (i >= 0) lease_session_gone(c->lt, (size_t)i, xpb_kv_now_ms());
}

void cluster_account_started(xpb_daemon *d, const char *jid)
{
    if (d->bus && xpb_bus_route(d->bus, jid, 1) != 0)
        xpb_log(XPB_LOG_ERROR, "session %s: requests cannot be routed here (bus subscription)",
                jid);
}

void cluster_shutdown(xpb_daemon *d)
{
    struct xpb_cluster *c = d->cluster;
    if (c && c->lt) lease_stop(c->lt, xpb_kv_now_ms());
}

void cluster_free(xpb_daemon *d)
{
    struct xpb_cluster *c = d->cluster;
    if (!c) return;
    xpb_timer_free(c->tick);
    xpb_kv_close(c->kv, 2000); /* the releases of a clean stop go out first */
    state_nats_free(d);
    lease_free(c->lt);
    for (unsigned k = 0; c->shards && k < c->n_shards; k++) {
        free(c->shards[k].conf);
        free(c->shards[k].up);
    }
    free(c->shards);
    free_nats(&c->own);
    free(c);
    d->cluster = NULL;
}

void cluster_counters(const xpb_daemon *d, xpb_daemon_counters *out)
{
    if (!d->cluster || !d->cluster->lt) return;
    lease_stats st;
    lease_get_stats(d->cluster->lt, &st);
    out->leases_on = 1;
    out->leases_owned = st.owned;
    out->leases_claiming = st.claiming;
    out->leases_closing = st.closing;
    out->leases_live_bridges = st.live_bridges;
    out->leases_claims = st.claims;
    out->leases_claims_lost = st.claims_lost;
    out->leases_renewals = st.renewals;
    out->leases_renew_failures = st.renew_failures;
    out->leases_lost = st.lost;
    out->leases_deadline_closes = st.deadline_closes;
}
