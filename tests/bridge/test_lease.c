/* Tests for bridge/daemon/lease.c, the account lease state machine, on a
 * fake clock and a fake KV (revisions and the ttl as JetStream KV keeps
 * them): several bridges share accounts; after every 50 ms step no account
 * has a session on two bridges, and a session runs only while its bridge's
 * key is live. Cases: even spread, a bridge that dies, a bridge cut off
 * from NATS (partition), a clean stop, a bridge that joins later,
 * max_sessions. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"

#define NACC 30
#define NBR 3
#define TTL 10000
#define STEP 50
#define LATENCY 20 /* ms from an operation to its result */
#define CLOSE_MS 300 /* a clean XMPP close takes this long */

/* ---- fake KV: one bucket per index, keys with value, revision, write time ---- */
typedef struct kvkey {
    char key[64], value[32];
    uint64_t rev;
    int64_t written;
    int live;
} kvkey;

static kvkey kv[2][64];
static uint64_t kv_seq;
static int64_t now;

static kvkey *kv_get(int b, const char *key, int create)
{
    for (int i = 0; i < 64; i++)
        if (kv[b][i].key[0] && strcmp(kv[b][i].key, key) == 0) {
            /* expired: the presence bucket has half the ttl (cluster.c) */
            int64_t ttl = b == LEASE_BUCKET_BRIDGES ? TTL / 2 : TTL;
            if (kv[b][i].live && now - kv[b][i].written >= ttl) kv[b][i].live = 0;
            return &kv[b][i];
        }
    for (int i = 0; create && i < 64; i++)
        if (!kv[b][i].key[0]) {
            snprintf(kv[b][i].key, sizeof kv[b][i].key, "%s", key);
            return &kv[b][i];
        }
    return NULL;
}

/* ---- bridges ---- */
typedef struct result {
    xpb_kv_result r;
    char key[64];
    char *keys[64];
    int64_t due;
} result;

typedef struct bridge {
    char id[16];
    lease_tab *t;
    int alive, cut; /* cut: no answer from NATS (ops time out after 1.5 s) */
    int refuse;     /* the KV queue refuses operations (full) */
    int session[NACC];
    int64_t close_due[NACC]; /* a clean close finishes then; 0: none */
    result res[512];
    int nres;
} bridge;

static bridge br[NBR];
static const char *accounts[NACC];
static char acc_buf[NACC][32];
static unsigned double_sessions, orphan_sessions;

static void push_result(bridge *b, const xpb_kv_result *r, int64_t due)
{
    assert_true(b->nres < 512);
    result *x = &b->res[b->nres++];
    x->r = *r;
    if (r->key) {
        snprintf(x->key, sizeof x->key, "%s", r->key);
        x->r.key = x->key;
    }
    for (size_t i = 0; i < r->nkeys; i++) x->keys[i] = r->keys[i];
    x->r.keys = x->keys;
    x->due = due;
}

static int op_kv(void *ud, xpb_kv_op op, int bucket, const char *key, const char *value,
                 uint64_t rev)
{
    bridge *b = ud;
    if (b->refuse) return -1;
    xpb_kv_result r = {.op = op, .bucket = bucket, .key = key, .sent_ms = now};
    if (b->cut) {
        r.status = XPB_KV_UNREACHABLE;
        push_result(b, &r, now + 1500);
        return 0;
    }
    static char keybuf[64][64];
    kvkey *k = key ? kv_get(bucket, key, 1) : NULL;
    switch (op) {
    case XPB_KV_CREATE:
        if (k->live) r.status = XPB_KV_CONFLICT;
        break;
    case XPB_KV_UPDATE:
    case XPB_KV_DELETE:
        if (!k->live || k->rev != rev) r.status = XPB_KV_CONFLICT;
        break;
    case XPB_KV_PUT: break;
    case XPB_KV_KEYS:
        for (int i = 0; i < 64; i++) {
            kvkey *e = kv[bucket][i].key[0] ? kv_get(bucket, kv[bucket][i].key, 0) : NULL;
            if (e && e->live) {
                snprintf(keybuf[r.nkeys], 64, "%s", e->key);
                r.nkeys++;
            }
        }
        r.keys = (char **)calloc(64, sizeof(char *));
        for (size_t i = 0; i < r.nkeys; i++) r.keys[i] = keybuf[i];
        break;
    case XPB_KV_GET:
    case XPB_KV_FETCH: return -1; /* the leases never read values */
    }
    if (r.status == XPB_KV_OK && k) {
        if (op == XPB_KV_DELETE) {
            k->live = 0;
        } else {
            k->live = 1;
            k->rev = ++kv_seq;
            k->written = now;
            snprintf(k->value, sizeof k->value, "%s", value);
            r.rev = k->rev;
        }
    }
    /* KEYS results copy the names now: the fake's buffer is reused. */
    if (op == XPB_KV_KEYS) {
        static char store[NBR][2][64][64]; /* per bridge and bucket: both may be pending */
        for (size_t i = 0; i < r.nkeys; i++) {
            snprintf(store[b - br][bucket][i], 64, "%s", keybuf[i]);
            r.keys[i] = store[b - br][bucket][i];
        }
    }
    push_result(b, &r, now + LATENCY);
    free(op == XPB_KV_KEYS ? r.keys : NULL);
    return 0;
}

static void op_start(void *ud, size_t idx)
{
    bridge *b = ud;
    assert_false(b->session[idx]);
    b->session[idx] = 1;
}

static void op_stop(void *ud, size_t idx, int hard)
{
    bridge *b = ud;
    if (hard) {
        b->session[idx] = 0;
        b->close_due[idx] = 0;
        lease_session_gone(b->t, idx, now);
    } else if (!b->close_due[idx]) {
        b->close_due[idx] = now + CLOSE_MS;
    }
}

static void bridge_start(int i, unsigned max_sessions)
{
    bridge *b = &br[i];
    memset(b, 0, sizeof *b);
    snprintf(b->id, sizeof b->id, "b%d", i);
    lease_cfg lc = {.self = b->id, .ttl_ms = TTL, .max_sessions = max_sessions,
                    .seed = 1234u + (uint32_t)i * 7919u};
    lease_ops ops = {.ud = b, .kv = op_kv, .start = op_start, .stop = op_stop};
    b->t = lease_new(&lc, &ops, accounts, NACC, now);
    assert_non_null(b->t);
    b->alive = 1;
}

static void bridge_die(int i)
{
    lease_free(br[i].t);
    br[i].t = NULL;
    br[i].alive = 0;
    memset(br[i].session, 0, sizeof br[i].session); /* kill -9: the server drops its streams */
}

static void check_invariants(void)
{
    for (int a = 0; a < NACC; a++) {
        int n = 0;
        for (int i = 0; i < NBR; i++) {
            if (!br[i].alive || !br[i].session[a]) continue;
            n++;
            char tok[64];
            xpb_nats_account_token(accounts[a], tok, sizeof tok);
            kvkey *k = kv_get(LEASE_BUCKET_OWNERS, tok, 0);
            if (!k || !k->live || strcmp(k->value, br[i].id) != 0) orphan_sessions++;
        }
        if (n > 1) double_sessions++;
    }
}

static void step(void)
{
    now += STEP;
    for (int i = 0; i < NBR; i++) {
        bridge *b = &br[i];
        if (!b->alive) continue;
        for (int a = 0; a < NACC; a++)
            if (b->close_due[a] && now >= b->close_due[a]) {
                b->close_due[a] = 0;
                b->session[a] = 0;
                lease_session_gone(b->t, (size_t)a, now);
            }
        /* results due now, in order; lease_on_result may queue more */
        for (int k = 0; k < b->nres;) {
            if (b->res[k].due > now) {
                k++;
                continue;
            }
            result x = b->res[k];
            memmove(&b->res[k], &b->res[k + 1], (size_t)(b->nres - k - 1) * sizeof x);
            b->nres--;
            x.r.keys = x.keys;
            if (x.r.key) x.r.key = x.key;
            lease_on_result(b->t, &x.r, now);
        }
        if (now % LEASE_TICK_MS == 0) lease_tick(b->t, now);
    }
    check_invariants();
}

static void run_ms(int64_t ms)
{
    for (int64_t end = now + ms; now < end;) step();
}

static int owned(int i)
{
    int n = 0;
    for (int a = 0; a < NACC; a++) n += br[i].alive && br[i].session[a];
    return n;
}

static int online_total(void)
{
    int n = 0;
    for (int i = 0; i < NBR; i++) n += owned(i);
    return n;
}

static int setup(void **state)
{
    (void)state;
    memset(kv, 0, sizeof kv);
    memset(br, 0, sizeof br);
    kv_seq = 0;
    now = 1000000;
    double_sessions = orphan_sessions = 0;
    for (int a = 0; a < NACC; a++) {
        snprintf(acc_buf[a], sizeof acc_buf[a], "u%d@xpb.test", a);
        accounts[a] = acc_buf[a];
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < NBR; i++) lease_free(br[i].t);
    memset(br, 0, sizeof br);
    return 0;
}

static void test_even_spread(void **state)
{
    (void)state;
    for (int i = 0; i < NBR; i++) bridge_start(i, 0);
    run_ms(20000);
    assert_int_equal(online_total(), NACC);
    for (int i = 0; i < NBR; i++) assert_int_equal(owned(i), NACC / NBR);
    assert_int_equal(double_sessions, 0);
    assert_int_equal(orphan_sessions, 0);
}

static void test_failover_after_death(void **state)
{
    (void)state;
    for (int i = 0; i < NBR; i++) bridge_start(i, 0);
    run_ms(20000);
    bridge_die(0);
    int64_t killed = now, back = 0;
    while (now - killed < 30000 && !back) {
        step();
        if (online_total() == NACC) back = now;
    }
    assert_true(back > 0);
    /* the claims lapse by TTL, then one round (ttl/5 + jitter) and the claim */
    assert_true(back - killed <= TTL + TTL / LEASE_RENEWS_PER_TTL * 6 / 5 + 500);
    assert_true(abs(owned(1) - owned(2)) <= 1);
    assert_int_equal(double_sessions, 0);
    assert_int_equal(orphan_sessions, 0);
}

/* Bridge 0 loses NATS: it must drop every session before its keys lapse,
 * and the others take them over without overlap. */
static void test_partition(void **state)
{
    (void)state;
    for (int i = 0; i < NBR; i++) bridge_start(i, 0);
    run_ms(20000);
    assert_int_equal(owned(0), NACC / NBR);
    br[0].cut = 1;
    run_ms(TTL * LEASE_CLOSE_AT / 100 + 1000);
    assert_int_equal(owned(0), 0); /* closed at LEASE_CLOSE_AT % of the ttl */
    run_ms(TTL + 5000);
    assert_int_equal(online_total(), NACC);
    assert_int_equal(double_sessions, 0);
    assert_int_equal(orphan_sessions, 0);
    lease_stats st;
    lease_get_stats(br[0].t, &st);
    assert_true(st.deadline_closes >= (uint64_t)(NACC / NBR));
    br[0].cut = 0; /* back: it rejoins and the shares even out again */
    run_ms(40000);
    assert_true(owned(0) >= NACC / NBR - 1);
    assert_int_equal(online_total(), NACC);
    assert_int_equal(double_sessions, 0);
    assert_int_equal(orphan_sessions, 0);
}

static void test_clean_stop_releases(void **state)
{
    (void)state;
    for (int i = 0; i < NBR; i++) bridge_start(i, 0);
    run_ms(20000);
    lease_stop(br[0].t, now);
    run_ms(CLOSE_MS + 200);
    assert_int_equal(owned(0), 0);
    int released = 0; /* deleted, not waiting for the ttl */
    for (int a = 0; a < 64; a++) {
        kvkey *k = &kv[LEASE_BUCKET_OWNERS][a];
        if (k->key[0]) released += !k->live;
    }
    assert_true(released >= NACC / NBR);
    bridge_die(0);
    run_ms(2 * TTL / 4 + 2000); /* well before any ttl: taken over at the next round */
    assert_int_equal(online_total(), NACC);
    assert_int_equal(double_sessions, 0);
}

static void test_late_joiner_gets_a_share(void **state)
{
    (void)state;
    bridge_start(0, 0);
    run_ms(10000);
    assert_int_equal(owned(0), NACC);
    bridge_start(1, 0);
    run_ms(40000);
    assert_int_equal(owned(0), NACC / 2);
    assert_int_equal(owned(1), NACC / 2);
    assert_int_equal(double_sessions, 0);
    assert_int_equal(orphan_sessions, 0);
}

/* A KV queue that refuses work for a while (full) leaves nothing stuck:
 * claims, rounds and renewals go on once it takes work again, and sessions
 * whose renewals could not even be queued close in time. */
static void test_refused_queue(void **state)
{
    (void)state;
    bridge_start(0, 0);
    bridge_start(1, 0);
    br[0].refuse = 1;
    run_ms(10000);
    assert_int_equal(owned(0), 0);
    assert_int_equal(owned(1), NACC);
    br[0].refuse = 0;
    br[1].refuse = 1;
    run_ms(TTL + 5000);
    assert_int_equal(owned(1), 0); /* could not renew: closed */
    assert_int_equal(owned(0), NACC);
    br[1].refuse = 0;
    run_ms(40000);
    assert_int_equal(owned(0), NACC / 2);
    assert_int_equal(owned(1), NACC / 2);
    assert_int_equal(double_sessions, 0);
    assert_int_equal(orphan_sessions, 0);
}

static void test_max_sessions(void **state)
{
    (void)state;
    bridge_start(0, 7);
    run_ms(20000);
    assert_int_equal(owned(0), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_even_spread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover_after_death, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partition, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_stop_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_joiner_gets_a_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_queue, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
