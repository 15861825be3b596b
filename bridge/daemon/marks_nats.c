/* MAM markers and seen stanza-ids across bridges (docs/scaling.md, "Markers
 * and de-duplication in NATS KV"): with the NATS state back end, catch-up
 * (catchup.c) keeps them in KV bucket xpb_marks, one key per account and
 * archive, so the bridge that takes an account over and binds afresh asks
 * the archive for what came after the dead owner's marker and drops what
 * it had published. The marks of the accounts this bridge runs are kept in
 * memory (read with the account's other state at its prefetch); a commit
 * updates them at once and queues a snapshot of each archive it touched,
 * which goes to KV only once JetStream has acknowledged every event up to
 * the commit's seq (the marker rule: a marker moves only after its events
 * are stored). Runs on the loop thread. */
#define _DEFAULT_SOURCE /* strdup */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_internal.h"
#include "state_nats_wire.h"
#include "xpb_bus_kv.h"
#include "xpb_error.h"
#include "xpb_log.h"

#define MARKS_POLL_MS 50u       /* how often waiting writes look at the bus's acknowledgements */
#define MARKS_WAIT_MAX 65536u   /* snapshots waiting for acknowledgements; more are dropped */
#define TOKEN_MAX 3200u

struct marks_arch {
    struct marks_arch *next;
    char *archive;
    state_nats_marks m;
    int dirty; /* changed by the commit under way */
};

struct marks_acc {
    char *jid; /* the key in by_acc */
    char token[TOKEN_MAX];
    struct marks_arch *arch;
};

/* A snapshot of one archive's marks, written once upto is acknowledged. */
struct marks_write {
    struct marks_write *next;
    uint64_t upto;
    char *key;
    xpb_buf value;
};

struct marks_nats {
    xpb_strmap by_acc;
    struct marks_acc **all; /* every entry of by_acc, to free them */
    size_t n_all, cap_all;
    struct marks_write *head, *tail;
    size_t n_wait;
    xpb_timer *timer;
    int armed;
    int dropped_logged;
};

static void arch_free(struct marks_arch *a)
{
    state_nats_marks_clear(&a->m);
    free(a->archive);
    free(a);
}

static void acc_free(struct marks_acc *ma)
{
    while (ma->arch) {
        struct marks_arch *a = ma->arch;
        ma->arch = a->next;
        arch_free(a);
    }
    free(ma->jid);
    free(ma);
}

static void write_free(struct marks_write *w)
{
    free(w->key);
    xpb_buf_free(&w->value);
    free(w);
}

static struct marks_arch *arch_of(struct marks_acc *ma, const char *archive, int make)
{
    for (struct marks_arch *a = ma->arch; a; a = a->next)
        if (strcmp(a->archive, archive) == 0) return a;
    if (!make) return NULL;
    struct marks_arch *a = calloc(1, sizeof *a);
    if (!a || !(a->archive = strdup(archive))) {
        free(a);
        return NULL;
    }
    a->next = ma->arch;
    ma->arch = a;
    return a;
}

static void drop_acc(struct marks_nats *mn, const char *jid)
{
    struct marks_acc *ma = xpb_strmap_get(&mn->by_acc, jid);
    if (!ma) return;
    xpb_strmap_del(&mn->by_acc, jid, ma);
    for (size_t i = 0; i < mn->n_all; i++)
        if (mn->all[i] == ma) {
            mn->all[i] = mn->all[--mn->n_all];
            break;
        }
    acc_free(ma);
}

static struct marks_acc *new_acc(struct marks_nats *mn, const char *jid)
{
    if (mn->n_all == mn->cap_all) {
        size_t cap = mn->cap_all ? mn->cap_all * 2 : 16;
        struct marks_acc **all = realloc(mn->all, cap * sizeof *all);
        if (!all) return NULL;
        mn->all = all;
        mn->cap_all = cap;
    }
    struct marks_acc *ma = calloc(1, sizeof *ma);
    if (!ma || !(ma->jid = strdup(jid)) ||
        xpb_nats_account_token(jid, ma->token, sizeof ma->token) >= sizeof ma->token ||
        xpb_strmap_put(&mn->by_acc, ma->jid, ma) != 0) {
        if (ma) free(ma->jid);
        free(ma);
        return NULL;
    }
    mn->all[mn->n_all++] = ma;
    return ma;
}

/* ---- writes after the acknowledgement ------------------------------------------------ */

/* 1 when a later snapshot of the same key is also ready: this one is stale. */
static int superseded(const struct marks_write *w, uint64_t acked)
{
    for (const struct marks_write *l = w->next; l && l->upto <= acked; l = l->next)
        if (strcmp(l->key, w->key) == 0) return 1;
    return 0;
}

/* Hands KV every snapshot whose events JetStream has acknowledged. */
static void pump(xpb_daemon *d)
{
    struct marks_nats *mn = d->nmarks;
    uint64_t acked = 0;
    if (d->bus) {
        xpb_bus_stats bs;
        xpb_bus_get_stats(d->bus, &bs);
        acked = bs.acked_seq;
    }
    while (mn->head && mn->head->upto <= acked) {
        struct marks_write *w = mn->head;
        mn->head = w->next;
        if (!mn->head) mn->tail = NULL;
        mn->n_wait--;
        if (!superseded(w, acked) &&
            xpb_kv_submit_bin(state_nats_kv(d), XPB_KV_PUT, STATE_NATS_BUCKET_MARKS, w->key,
                              w->value.data, w->value.len, 0) != 0)
            xpb_log(XPB_LOG_WARN, "catch-up: NATS KV %s key %s not queued (at most %u KV "
                                  "operations wait); that marker stays behind",
                    XPB_NATS_MARKS_BUCKET, w->key, XPB_KV_MAX_QUEUED);
        write_free(w);
    }
    if (mn->head && !mn->armed) {
        mn->armed = 1;
        xpb_timer_start(mn->timer, MARKS_POLL_MS);
    }
}

static void on_poll(void *arg)
{
    xpb_daemon *d = arg;
    d->nmarks->armed = 0;
    pump(d);
}

static int queue_snapshot(struct marks_nats *mn, const struct marks_acc *ma,
                          const struct marks_arch *a, uint64_t upto)
{
    if (mn->n_wait >= MARKS_WAIT_MAX) {
        if (!mn->dropped_logged++)
            xpb_log(XPB_LOG_WARN, "catch-up: %u marker writes wait for JetStream "
                                  "acknowledgements (MARKS_WAIT_MAX); newer ones are dropped "
                                  "(a takeover then fetches more and drops more duplicates)",
                    MARKS_WAIT_MAX);
        return XPB_EQUEUEFULL;
    }
    struct marks_write *w = calloc(1, sizeof *w);
    char key[2 * TOKEN_MAX + 2];
    if (!w) return XPB_ENOMEM;
    xpb_buf_init(&w->value, 0);
    w->upto = upto;
    if (state_nats_marks_key(ma->token, a->archive, key, sizeof key) >= sizeof key ||
        !(w->key = strdup(key)) || state_nats_marks_encode(&w->value, &a->m) != 0) {
        write_free(w);
        return XPB_ENOMEM;
    }
    if (mn->tail) mn->tail->next = w;
    else mn->head = w;
    mn->tail = w;
    mn->n_wait++;
    return 0;
}

/* ---- the state ops -------------------------------------------------------------------- */

int marks_nats_marker_get(xpb_daemon *d, const char *acc, const char *archive, char *out,
                          size_t outlen, char *stream, size_t streamlen, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    struct marks_acc *ma = d->nmarks ? xpb_strmap_get(&d->nmarks->by_acc, acc) : NULL;
    const struct marks_arch *a = ma ? arch_of(ma, archive, 0) : NULL;
    if (!a || !a->m.marker[0]) return 1;
    snprintf(out, outlen, "%s", a->m.marker);
    if (stream) snprintf(stream, streamlen, "%s", a->m.stream);
    return 0;
}

int marks_nats_seen_has(xpb_daemon *d, const char *acc, const char *archive,
                        const char *stanza_id, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    struct marks_acc *ma = d->nmarks ? xpb_strmap_get(&d->nmarks->by_acc, acc) : NULL;
    const struct marks_arch *a = ma ? arch_of(ma, archive, 0) : NULL;
    return a ? state_nats_marks_has(&a->m, stanza_id) : 0;
}

int marks_nats_seen_commit(xpb_daemon *d, const xpb_store_seen_item *it, size_t n,
                           uint64_t upto_seq, int64_t now_us, char *err, size_t errlen)
{
    (void)now_us;
    struct marks_nats *mn = d->nmarks;
    int rc = 0;
    for (size_t i = 0; i < n && mn; i++) {
        /* Not read at a prefetch (no longer ours): a snapshot would overwrite
         * what KV holds with less. */
        struct marks_acc *ma = xpb_strmap_get(&mn->by_acc, it[i].account);
        if (!ma) continue;
        struct marks_arch *a = arch_of(ma, it[i].archive, 1);
        if (!a) {
            rc = XPB_ENOMEM;
            continue;
        }
        if (it[i].stanza_id && state_nats_marks_add(&a->m, it[i].stanza_id) == XPB_ENOMEM)
            rc = XPB_ENOMEM;
        if (it[i].marker) {
            snprintf(a->m.marker, sizeof a->m.marker, "%s", it[i].marker);
            snprintf(a->m.stream, sizeof a->m.stream, "%s", it[i].stream ? it[i].stream : "");
        }
        a->dirty = 1;
    }
    /* One snapshot per archive touched, whatever the number of its items.
     * Without the bus (freed: whether its last events were stored is not
     * known) nothing more is written. */
    for (size_t i = 0; i < n && mn && d->bus; i++) {
        struct marks_acc *ma = xpb_strmap_get(&mn->by_acc, it[i].account);
        struct marks_arch *a = ma ? arch_of(ma, it[i].archive, 0) : NULL;
        if (!a || !a->dirty) continue;
        a->dirty = 0;
        int q = queue_snapshot(mn, ma, a, upto_seq);
        if (q && !rc) rc = q;
    }
    if (rc) snprintf(err, errlen, "NATS KV %s: %s", XPB_NATS_MARKS_BUCKET, xpb_strerror(rc));
    if (mn) pump(d);
    return rc;
}

/* ---- life cycle ------------------------------------------------------------------------ */

int marks_nats_loaded(xpb_daemon *d, const char *jid, char *const *keys,
                      uint8_t *const *values, const size_t *lens, size_t n)
{
    struct marks_nats *mn = d->nmarks;
    if (!mn) return 0;
    drop_acc(mn, jid); /* what KV holds now is newer than what we kept */
    struct marks_acc *ma = new_acc(mn, jid);
    if (!ma) return XPB_ENOMEM;
    size_t tl = strlen(ma->token);
    char archive[TOKEN_MAX];
    for (size_t i = 0; i < n; i++) {
        state_nats_marks m;
        struct marks_arch *a = NULL;
        if (strncmp(keys[i], ma->token, tl) != 0 || keys[i][tl] != '.' ||
            xpb_nats_account_untoken(keys[i] + tl + 1, archive, sizeof archive) != 0 ||
            state_nats_marks_decode(values[i], lens[i], &m) != 0) {
            xpb_log(XPB_LOG_WARN, "session %s: NATS KV %s key %s is not a marks value; skipped",
                    jid, XPB_NATS_MARKS_BUCKET, keys[i]);
            continue;
        }
        if (!(a = arch_of(ma, archive, 1))) {
            state_nats_marks_clear(&m);
            return XPB_ENOMEM;
        }
        state_nats_marks_clear(&a->m);
        a->m = m;
        xpb_log(XPB_LOG_INFO, "session %s: from NATS KV: archive %s marker %s, %zu stanza-ids",
                jid, archive, m.marker[0] ? m.marker : "(none)", m.n);
    }
    return 0;
}

void marks_nats_forget(xpb_daemon *d, const char *jid)
{
    if (d->nmarks) drop_acc(d->nmarks, jid);
}

int marks_nats_init(xpb_daemon *d)
{
    struct marks_nats *mn = calloc(1, sizeof *mn);
    if (!mn) return XPB_ENOMEM;
    if (xpb_timer_new(d->loop, on_poll, d, &mn->timer) != 0) {
        free(mn);
        return XPB_ENOMEM;
    }
    d->nmarks = mn;
    return 0;
}

void marks_nats_free(xpb_daemon *d)
{
    struct marks_nats *mn = d->nmarks;
    if (!mn) return;
    if (state_nats_kv(d)) pump(d);
    while (mn->head) {
        struct marks_write *w = mn->head;
        mn->head = w->next;
        write_free(w);
    }
    for (size_t i = 0; i < mn->n_all; i++) acc_free(mn->all[i]);
    free(mn->all);
    xpb_strmap_clear(&mn->by_acc);
    xpb_timer_free(mn->timer);
    free(mn);
    d->nmarks = NULL;
}
