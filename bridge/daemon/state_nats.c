/* The NATS state back end (docs/scaling.md, "XEP-0198 state and sends in
 * NATS KV"): with leases, an account's XEP-0198 state and its accepted but
 * unacknowledged sends live in KV buckets xpb_sm and xpb_outbox, so the
 * bridge that takes the account over resumes its stream or resends them;
 * its catch-up marks are in xpb_marks (marks_nats.c).
 * The KV calls run on their own worker thread and connection (xpb_bus_kv.h;
 * not the leases', so a burst of sends never delays a renewal). A send is
 * answered only once its outbox key is stored (sends_kept); a claimed
 * account starts only once its state has been read (state_nats_prefetch). */
#define _DEFAULT_SOURCE /* strdup */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_internal.h"
#include "state_nats_wire.h"
#include "xpb_bus_kv.h"
#include "xpb_bus_nats_wire.h"
#include "xpb_error.h"

#define TOKEN_MAX 3200u /* a token of a bare JID of at most 3071 bytes, escaped: < 3 x */

/* One claimed account whose state is being read. */
struct prefetch {
    struct prefetch *next;
    size_t idx;
    char *jid, *token;
    int waiting; /* results still to come: 3, 2, 1, 0 */
    int failed;
    int has_sm;
    xpb_sm_state sm;
    char **keys; /* its outbox: keys, values, lengths (taken from the FETCH result) */
    uint8_t **values;
    size_t *lens, n;
    char **mkeys; /* its marks (xpb_marks), the same way */
    uint8_t **mvalues;
    size_t *mlens, mn;
};

struct state_nats {
    xpb_kv *kv;
    struct prefetch *pf;
    const struct prefetch *current; /* the one account_start reads now */
};

static void free_fetched(char **keys, uint8_t **values, size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(keys[i]);
        free(values[i]);
    }
    free(keys);
    free(values);
    free(lens);
}

static void pf_free(struct prefetch *p)
{
    free_fetched(p->keys, p->values, p->lens, p->n);
    free_fetched(p->mkeys, p->mvalues, p->mlens, p->mn);
    free(p->jid);
    free(p->token);
    free(p);
}

static int token_of(const char *jid, char *tok)
{
    return xpb_nats_account_token(jid, tok, TOKEN_MAX) < TOKEN_MAX ? 0 : XPB_ETOOBIG;
}

static int queue_err(int rc, char *err, size_t errlen, const char *what)
{
    if (rc) snprintf(err, errlen, "NATS KV: %s not queued (%s; at most %u KV operations wait)",
                     what, xpb_strerror(rc), XPB_KV_MAX_QUEUED);
    return rc;
}

/* ---- the ops ------------------------------------------------------------------------ */

static int n_sm_save(xpb_daemon *d, const char *acc, const xpb_sm_state *st, char *err,
                     size_t errlen)
{
    char tok[TOKEN_MAX];
    if (token_of(acc, tok)) return queue_err(XPB_ETOOBIG, err, errlen, "XEP-0198 state");
    xpb_buf b;
    xpb_buf_init(&b, 0);
    int rc = state_nats_sm_encode(&b, st);
    if (!rc)
        rc = xpb_kv_submit_bin(d->nstate->kv, XPB_KV_PUT, STATE_NATS_BUCKET_SM, tok, b.data,
                               b.len, 0);
    xpb_buf_free(&b);
    return queue_err(rc, err, errlen, "XEP-0198 state");
}

static int n_sm_clear(xpb_daemon *d, const char *acc, char *err, size_t errlen)
{
    char tok[TOKEN_MAX];
    int rc = token_of(acc, tok);
    if (!rc) rc = xpb_kv_submit(d->nstate->kv, XPB_KV_DELETE, STATE_NATS_BUCKET_SM, tok,
                                 NULL, 0);
    return queue_err(rc, err, errlen, "removal of the XEP-0198 state");
}

static const struct prefetch *current_of(xpb_daemon *d, const char *acc)
{
    const struct prefetch *p = d->nstate ? d->nstate->current : NULL;
    return p && strcmp(p->jid, acc) == 0 ? p : NULL;
}

static int n_sm_load(xpb_daemon *d, const char *acc, xpb_sm_state *st, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    const struct prefetch *p = current_of(d, acc);
    if (!p || !p->has_sm) return 1;
    *st = p->sm;
    return 0;
}

static int n_outbox_put(xpb_daemon *d, const xpb_outbox_item *it, char *err, size_t errlen)
{
    char tok[TOKEN_MAX], key[TOKEN_MAX + 32];
    int rc = token_of(it->account, tok);
    xpb_buf b;
    xpb_buf_init(&b, 0);
    if (!rc) rc = state_nats_outbox_encode(&b, it);
    state_nats_outbox_key(tok, it->id, key, sizeof key);
    if (!rc)
        rc = xpb_kv_submit_bin(d->nstate->kv, XPB_KV_PUT, STATE_NATS_BUCKET_OUTBOX, key, b.data,
                               b.len, 0);
    xpb_buf_free(&b);
    return queue_err(rc, err, errlen, "send");
}

static int n_outbox_done(xpb_daemon *d, const char *acc, uint64_t id, char *err, size_t errlen)
{
    char tok[TOKEN_MAX], key[TOKEN_MAX + 32];
    int rc = token_of(acc, tok);
    state_nats_outbox_key(tok, id, key, sizeof key);
    if (!rc)
        rc = xpb_kv_submit(d->nstate->kv, XPB_KV_DELETE, STATE_NATS_BUCKET_OUTBOX, key, NULL, 0);
    return queue_err(rc, err, errlen, "removal of an acknowledged send");
}

/* The outbox as read, oldest (lowest id) first. */
static int n_outbox_each(xpb_daemon *d, const char *acc, xpb_outbox_cb cb, void *ud, char *err,
                         size_t errlen)
{
    const struct prefetch *p = current_of(d, acc);
    if (!p) return 0;
    uint64_t *ids = calloc(p->n ? p->n : 1, sizeof *ids);
    if (!ids) {
        snprintf(err, errlen, "out of memory");
        return XPB_ENOMEM;
    }
    char tok[TOKEN_MAX];
    for (size_t i = 0; i < p->n; i++)
        if (state_nats_outbox_key_parse(p->keys[i], tok, sizeof tok, &ids[i]) != 0) ids[i] = 0;
    uint64_t last = 0;
    for (;;) { /* n is small: a selection by id, no sort needed */
        size_t best = p->n;
        for (size_t i = 0; i < p->n; i++)
            if (ids[i] > last && (best == p->n || ids[i] < ids[best])) best = i;
        if (best == p->n) break;
        last = ids[best];
        char sid[XPB_SESSION_ID_MAX + 64], rid[1024];
        xpb_outbox_item it = {.account = acc, .id = last};
        if (state_nats_outbox_decode(p->values[best], p->lens[best], &it, sid, sizeof sid, rid,
                                     sizeof rid) != 0) {
            xpb_log(XPB_LOG_WARN, "session %s: NATS KV %s key %s is not an outbox item; "
                                  "skipped", acc, XPB_NATS_OUTBOX_BUCKET, p->keys[best]);
            continue;
        }
        if (cb(ud, &it)) break;
    }
    free(ids);
    return 0;
}

const struct state_ops state_nats_ops = {
    .where = "NATS KV (" XPB_NATS_SM_BUCKET ", " XPB_NATS_OUTBOX_BUCKET ", "
             XPB_NATS_MARKS_BUCKET ")", .async = 1,
    .sm_save = n_sm_save, .sm_clear = n_sm_clear, .sm_load = n_sm_load,
    .outbox_put = n_outbox_put, .outbox_done = n_outbox_done, .outbox_each = n_outbox_each,
    .marker_get = marks_nats_marker_get, .seen_has = marks_nats_seen_has,
    .seen_commit = marks_nats_seen_commit};

struct xpb_kv *state_nats_kv(xpb_daemon *d)
{
    return d->nstate ? d->nstate->kv : NULL;
}

/* ---- results ------------------------------------------------------------------------- */

static struct prefetch *pf_of(struct state_nats *sn, const char *token)
{
    for (struct prefetch *p = sn->pf; p; p = p->next)
        if (strcmp(p->token, token) == 0) return p;
    return NULL;
}

static void pf_result(xpb_daemon *d, struct prefetch *p, const xpb_kv_result *r)
{
    if (r->op == XPB_KV_GET) {
        if (r->status == XPB_KV_OK)
            p->has_sm = state_nats_sm_decode(r->value, r->value_len, &p->sm) == 0;
        else if (r->status != XPB_KV_CONFLICT) /* CONFLICT: no state kept */
            p->failed = 1;
    } else if (r->status != XPB_KV_OK) {
        p->failed = 1;
    } else { /* the FETCH's arrays move into p */
        xpb_kv_result *m = (xpb_kv_result *)r;
        int marks = r->bucket == STATE_NATS_BUCKET_MARKS;
        *(marks ? &p->mkeys : &p->keys) = m->keys;
        *(marks ? &p->mvalues : &p->values) = m->values;
        *(marks ? &p->mlens : &p->lens) = m->values_len;
        *(marks ? &p->mn : &p->n) = m->nkeys;
        m->keys = NULL;
        m->values = NULL;
        m->values_len = NULL;
        m->nkeys = 0;
    }
    if (--p->waiting > 0) return;
    struct state_nats *sn = d->nstate;
    struct prefetch **pp = &sn->pf;
    while (*pp != p) pp = &(*pp)->next;
    *pp = p->next;
    if (p->failed)
        xpb_log(XPB_LOG_WARN, "session %s: its XEP-0198 state and outbox could not be read "
                              "from NATS KV within %u ms; not started here",
                p->jid, XPB_KV_OP_TIMEOUT_MS);
    else if (p->has_sm || p->n)
        xpb_log(XPB_LOG_INFO, "session %s: from NATS KV: %s, %zu unacknowledged sends", p->jid,
                p->has_sm ? "XEP-0198 state" : "no XEP-0198 state", p->n);
    if (!p->failed && marks_nats_loaded(d, p->jid, p->mkeys, p->mvalues, p->mlens, p->mn)) {
        xpb_log(XPB_LOG_WARN, "session %s: its catch-up markers from NATS KV could not be "
                              "kept (out of memory); not started here", p->jid);
        p->failed = 1;
    }
    sn->current = p;
    cluster_prefetched(d, p->idx, p->jid, p->failed ? XPB_ESTORE : 0);
    sn->current = NULL;
    pf_free(p);
}

static void on_kv(void *ud, const xpb_kv_result *r)
{
    xpb_daemon *d = ud;
    struct state_nats *sn = d->nstate;
    if (!sn || !r->key) return;
    char tok[TOKEN_MAX], jid[3200];
    uint64_t id = 0;
    if (r->op == XPB_KV_GET || r->op == XPB_KV_FETCH) {
        snprintf(tok, sizeof tok, "%s", r->key);
        char *star = r->op == XPB_KV_FETCH ? strrchr(tok, '.') : NULL;
        if (star) *star = '\0'; /* "<token>.*" */
        struct prefetch *p = pf_of(sn, tok);
        if (p) pf_result(d, p, r);
    } else if (r->op == XPB_KV_PUT && r->bucket == STATE_NATS_BUCKET_OUTBOX &&
               state_nats_outbox_key_parse(r->key, tok, sizeof tok, &id) == 0 &&
               xpb_nats_account_untoken(tok, jid, sizeof jid) == 0) {
        char err[256];
        snprintf(err, sizeof err, "NATS KV bucket %s did not store it within %u ms",
                 XPB_NATS_OUTBOX_BUCKET, XPB_KV_OP_TIMEOUT_MS);
        if (r->status != XPB_KV_OK) /* it may still land (a reconnect's buffer): take it back */
            xpb_kv_submit(sn->kv, XPB_KV_DELETE, STATE_NATS_BUCKET_OUTBOX, r->key, NULL, 0);
        sends_kept(d, jid, id, r->status == XPB_KV_OK ? 0 : XPB_ESTORE, err);
    } else if (r->status == XPB_KV_UNREACHABLE && r->op == XPB_KV_PUT &&
               r->bucket == STATE_NATS_BUCKET_MARKS) {
        xpb_log(XPB_LOG_WARN, "NATS KV: catch-up marks under %s not stored within %u ms "
                              "(a takeover fetches from an older marker)", r->key,
                XPB_KV_OP_TIMEOUT_MS);
    } else if (r->status == XPB_KV_UNREACHABLE && r->op == XPB_KV_PUT) {
        d->ctr.outbox_errors++;
        xpb_log(XPB_LOG_WARN, "NATS KV: XEP-0198 state under %s not stored within %u ms "
                              "(a takeover binds afresh)", r->key, XPB_KV_OP_TIMEOUT_MS);
    }
}

int state_nats_prefetch(xpb_daemon *d, size_t idx, const char *jid)
{
    struct state_nats *sn = d->nstate;
    struct prefetch *p = calloc(1, sizeof *p);
    char tok[TOKEN_MAX], pat[TOKEN_MAX + 4];
    if (!p || token_of(jid, tok) || !(p->jid = strdup(jid)) || !(p->token = strdup(tok))) {
        if (p) pf_free(p);
        return XPB_ENOMEM;
    }
    snprintf(pat, sizeof pat, "%s.*", tok);
    int rc = xpb_kv_submit(sn->kv, XPB_KV_GET, STATE_NATS_BUCKET_SM, tok, NULL, 0);
    if (!rc) rc = xpb_kv_submit(sn->kv, XPB_KV_FETCH, STATE_NATS_BUCKET_OUTBOX, pat, NULL, 0);
    if (!rc) rc = xpb_kv_submit(sn->kv, XPB_KV_FETCH, STATE_NATS_BUCKET_MARKS, pat, NULL, 0);
    p->idx = idx;
    p->waiting = 3;
    if (rc) { /* a GET may be queued: it finds no prefetch and is ignored */
        pf_free(p);
        return rc;
    }
    p->next = sn->pf;
    sn->pf = p;
    return 0;
}

int state_nats_init(xpb_daemon *d, const struct xpb_bus_nats_cfg *cfg, char *err,
                    size_t errlen)
{
    struct state_nats *sn = calloc(1, sizeof *sn);
    if (!sn) return XPB_ENOMEM;
    static const char *const buckets[] = {XPB_NATS_SM_BUCKET, XPB_NATS_OUTBOX_BUCKET,
                                          XPB_NATS_MARKS_BUCKET};
    static const unsigned ttls[] = {0, 0, 0}; /* kept until removed or replaced */
    int rc = xpb_kv_open(&sn->kv, d->loop, cfg, buckets, ttls, 3, on_kv, d, err, errlen);
    if (!rc && (rc = marks_nats_init(d)) != 0) {
        snprintf(err, errlen, "out of memory");
        xpb_kv_close(sn->kv, 0);
    }
    if (rc) {
        free(sn);
        return rc;
    }
    d->nstate = sn;
    d->state = &state_nats_ops;
    return 0;
}

void state_nats_free(xpb_daemon *d)
{
    struct state_nats *sn = d->nstate;
    if (!sn) return;
    marks_nats_free(d); /* the markers JetStream acknowledged go out with the rest */
    xpb_kv_close(sn->kv, 2000); /* the last removals and states go out first */
    while (sn->pf) {
        struct prefetch *p = sn->pf;
        sn->pf = p->next;
        pf_free(p);
    }
    free(sn);
    d->nstate = NULL;
    if (d->state == &state_nats_ops) d->state = NULL;
}
