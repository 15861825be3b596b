/* JetStream KV on a worker thread (xpb_bus_kv.h): the loop queues
 * operations, the worker runs them one by one on its own connection (libnats
 * threads, blocking calls bounded by XPB_KV_OP_TIMEOUT_MS) and queues the
 * results, which xpb_wake hands to the callback on the loop thread. */
#define _GNU_SOURCE /* strcasestr */
#include "xpb_bus_kv.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <nats/nats.h>

#include "bus_endpoint.h" /* xpb_bus_set_err */
#include "xpb_error.h"
#include "xpb_log.h"

#define KV_MAX_BUCKETS XPB_KV_MAX_BUCKETS

typedef struct kv_job {
    struct kv_job *next;
    xpb_kv_result r; /* op, bucket, key; filled in by the worker */
    char *value;
    size_t value_len;
    uint64_t last_rev;
    kvEntry *got; /* GET: owns r.value */
} kv_job;

struct xpb_kv {
    xpb_kv_cb cb;
    void *ud;
    xpb_wake *wake;
    natsConnection *nc;
    jsCtx *js;
    kvStore *stores[KV_MAX_BUCKETS];
    char *names[KV_MAX_BUCKETS];
    size_t nstores;
    pthread_t thread;
    int started;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    kv_job *todo_head, *todo_tail, *done_head, *done_tail;
    unsigned queued;
    int stop;
};

int64_t xpb_kv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void job_free(kv_job *j)
{
    free((char *)j->r.key);
    free(j->value);
    if (j->r.keys != NULL)
        for (size_t i = 0; i < j->r.nkeys; i++) free(j->r.keys[i]);
    free(j->r.keys);
    if (j->r.values != NULL)
        for (size_t i = 0; i < j->r.nkeys; i++) free(j->r.values[i]);
    free(j->r.values);
    free(j->r.values_len);
    kvEntry_Destroy(j->got);
    free(j);
}

static void push(kv_job **head, kv_job **tail, kv_job *j)
{
    j->next = NULL;
    if (*tail != NULL) (*tail)->next = j;
    else *head = j;
    *tail = j;
}

/* A refusal by revision is a conflict; anything else means "no answer". */
static xpb_kv_status classify(natsStatus s, jsErrCode jerr)
{
    if (s == NATS_OK) return XPB_KV_OK;
    if (jerr == JSStreamWrongLastSequenceErr) return XPB_KV_CONFLICT;
    natsStatus ls = NATS_OK;
    const char *t = nats_GetLastError(&ls);
    if (s == NATS_ERR && t != NULL &&
        (strcasestr(t, "wrong last sequence") != NULL || strcasestr(t, "exists") != NULL))
        return XPB_KV_CONFLICT;
    return XPB_KV_UNREACHABLE;
}

/* Delete only while the key is at last_rev: a delete marker published with
 * the expected last subject sequence (kvStore_Delete has no revision check). */
static natsStatus delete_at(xpb_kv *kv, int bucket, const char *key, uint64_t last_rev,
                            jsErrCode *jerr)
{
    char subject[1024];
    int n = snprintf(subject, sizeof subject, "$KV.%s.%s", kv->names[bucket], key);
    if (n < 0 || (size_t)n >= sizeof subject) return NATS_INVALID_ARG;
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, NULL, 0);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "KV-Operation", "DEL");
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.ExpectLastSubjectSeq = last_rev;
    po.MaxWait = XPB_KV_OP_TIMEOUT_MS;
    jsPubAck *pa = NULL;
    if (s == NATS_OK) s = js_PublishMsg(&pa, kv->js, m, &po, jerr);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    return s;
}

static void run_keys(xpb_kv *kv, kv_job *j)
{
    kvKeysList l = {0};
    kvWatchOptions wo;
    kvWatchOptions_Init(&wo);
    wo.Timeout = XPB_KV_OP_TIMEOUT_MS;
    natsStatus s = kvStore_Keys(&l, kv->stores[j->r.bucket], &wo);
    if (s == NATS_NOT_FOUND) s = NATS_OK; /* an empty bucket */
    j->r.status = s == NATS_OK ? XPB_KV_OK : XPB_KV_UNREACHABLE;
    if (s == NATS_OK && l.Count > 0 && (j->r.keys = calloc((size_t)l.Count, sizeof(char *)))) {
        for (int i = 0; i < l.Count; i++) {
            j->r.keys[i] = l.Keys[i];
            l.Keys[i] = NULL;
        }
        j->r.nkeys = (size_t)l.Count;
    } else if (s == NATS_OK && l.Count > 0) {
        j->r.status = XPB_KV_UNREACHABLE; /* out of memory: no view this round */
    }
    kvKeysList_Destroy(&l);
}

static void run_get(xpb_kv *kv, kv_job *j)
{
    natsStatus s = kvStore_Get(&j->got, kv->stores[j->r.bucket], j->r.key);
    if (s == NATS_OK) {
        j->r.value = kvEntry_Value(j->got);
        j->r.value_len = (size_t)kvEntry_ValueLen(j->got);
        j->r.status = XPB_KV_OK;
    } else {
        j->r.status = s == NATS_NOT_FOUND ? XPB_KV_CONFLICT : XPB_KV_UNREACHABLE;
    }
}

/* One entry of a FETCH into the job's arrays; 0, or -1 when out of memory. */
static int fetch_add(kv_job *j, size_t *cap, kvEntry *e)
{
    if (j->r.nkeys == *cap) {
        size_t n = *cap ? *cap * 2 : 16;
        char **k = realloc(j->r.keys, n * sizeof *k);
        if (k == NULL) return -1;
        j->r.keys = k;
        uint8_t **v = realloc(j->r.values, n * sizeof *v);
        if (v == NULL) return -1;
        j->r.values = v;
        size_t *l = realloc(j->r.values_len, n * sizeof *l);
        if (l == NULL) return -1;
        j->r.values_len = l;
        *cap = n;
    }
    size_t len = (size_t)kvEntry_ValueLen(e);
    char *key = strdup(kvEntry_Key(e));
    uint8_t *val = malloc(len ? len : 1);
    if (key == NULL || val == NULL) {
        free(key);
        free(val);
        return -1;
    }
    if (len) memcpy(val, kvEntry_Value(e), len);
    j->r.keys[j->r.nkeys] = key;
    j->r.values[j->r.nkeys] = val;
    j->r.values_len[j->r.nkeys++] = len;
    return 0;
}

/* Every live key matching the pattern, with its value: a watcher's initial
 * values, which end with a NULL entry. */
static void run_fetch(xpb_kv *kv, kv_job *j)
{
    kvWatcher *w = NULL;
    kvWatchOptions wo;
    kvWatchOptions_Init(&wo);
    wo.IgnoreDeletes = true;
    wo.Timeout = XPB_KV_OP_TIMEOUT_MS;
    natsStatus s = kvStore_Watch(&w, kv->stores[j->r.bucket], j->r.key, &wo);
    size_t cap = 0;
    int64_t until = xpb_kv_now_ms() + XPB_KV_OP_TIMEOUT_MS;
    while (s == NATS_OK) {
        kvEntry *e = NULL;
        int64_t left = until - xpb_kv_now_ms();
        s = left > 0 ? kvWatcher_Next(&e, w, left) : NATS_TIMEOUT;
        if (s != NATS_OK || e == NULL) break; /* NULL: the initial values are all in */
        int bad = kvEntry_Operation(e) == kvOp_Put && fetch_add(j, &cap, e) != 0;
        kvEntry_Destroy(e);
        if (bad || j->r.nkeys >= XPB_KV_FETCH_MAX) s = NATS_NO_MEMORY;
    }
    kvWatcher_Destroy(w);
    j->r.status = s == NATS_OK ? XPB_KV_OK : XPB_KV_UNREACHABLE;
}

static void run_job(xpb_kv *kv, kv_job *j)
{
    kvStore *st = kv->stores[j->r.bucket];
    const char *v = j->value != NULL ? j->value : "";
    jsErrCode jerr = 0;
    natsStatus s = NATS_OK;
    j->r.sent_ms = xpb_kv_now_ms();
    switch (j->r.op) {
    case XPB_KV_CREATE: s = kvStore_CreateString(&j->r.rev, st, j->r.key, v); break;
    case XPB_KV_UPDATE: s = kvStore_UpdateString(&j->r.rev, st, j->r.key, v, j->last_rev); break;
    case XPB_KV_PUT: s = kvStore_Put(&j->r.rev, st, j->r.key, v, (int)j->value_len); break;
    case XPB_KV_DELETE:
        s = j->last_rev ? delete_at(kv, j->r.bucket, j->r.key, j->last_rev, &jerr)
                        : kvStore_Delete(st, j->r.key);
        break;
    case XPB_KV_KEYS: run_keys(kv, j); return;
    case XPB_KV_GET: run_get(kv, j); return;
    case XPB_KV_FETCH: run_fetch(kv, j); return;
    }
    j->r.status = classify(s, jerr);
}

static void *worker(void *arg)
{
    xpb_kv *kv = arg;
    pthread_mutex_lock(&kv->mu);
    for (;;) {
        while (kv->todo_head == NULL && !kv->stop) pthread_cond_wait(&kv->cv, &kv->mu);
        if (kv->todo_head == NULL) break; /* stop, and nothing left to run */
        kv_job *j = kv->todo_head;
        kv->todo_head = j->next;
        if (kv->todo_head == NULL) kv->todo_tail = NULL;
        kv->queued--;
        pthread_mutex_unlock(&kv->mu);
        run_job(kv, j);
        pthread_mutex_lock(&kv->mu);
        push(&kv->done_head, &kv->done_tail, j);
        pthread_mutex_unlock(&kv->mu);
        xpb_wake_signal(kv->wake);
        pthread_mutex_lock(&kv->mu);
    }
    pthread_mutex_unlock(&kv->mu);
    return NULL;
}

static void on_wake(void *ud)
{
    xpb_kv *kv = ud;
    pthread_mutex_lock(&kv->mu);
    kv_job *j = kv->done_head;
    kv->done_head = kv->done_tail = NULL;
    pthread_mutex_unlock(&kv->mu);
    while (j != NULL) {
        kv_job *next = j->next;
        kv->cb(kv->ud, &j->r);
        job_free(j);
        j = next;
    }
}

int xpb_kv_submit(xpb_kv *kv, xpb_kv_op op, int bucket, const char *key, const char *value,
                  uint64_t last_rev)
{
    return xpb_kv_submit_bin(kv, op, bucket, key, value, value ? strlen(value) : 0, last_rev);
}

int xpb_kv_submit_bin(xpb_kv *kv, xpb_kv_op op, int bucket, const char *key, const void *value,
                      size_t len, uint64_t last_rev)
{
    if (bucket < 0 || (size_t)bucket >= kv->nstores) return XPB_EINVAL;
    kv_job *j = calloc(1, sizeof *j);
    if (j == NULL) return XPB_ENOMEM;
    j->r.op = op;
    j->r.bucket = bucket;
    j->last_rev = last_rev;
    if (len > INT32_MAX || (key != NULL && (j->r.key = strdup(key)) == NULL) ||
        (value != NULL && (j->value = malloc(len + 1)) == NULL)) {
        job_free(j);
        return XPB_ENOMEM;
    }
    if (value != NULL) {
        memcpy(j->value, value, len);
        j->value[len] = '\0';
        j->value_len = len;
    }
    pthread_mutex_lock(&kv->mu);
    if (kv->queued >= XPB_KV_MAX_QUEUED || kv->stop) {
        pthread_mutex_unlock(&kv->mu);
        job_free(j);
        return XPB_EQUEUEFULL;
    }
    push(&kv->todo_head, &kv->todo_tail, j);
    kv->queued++;
    pthread_cond_signal(&kv->cv);
    pthread_mutex_unlock(&kv->mu);
    return 0;
}

static int open_conn(xpb_kv *kv, const xpb_bus_nats_cfg *c, char *err, size_t errlen)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetServers(o, (const char **)c->servers, (int)c->n_servers);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
    /* A node that stops answering is left after 2 missed pings (~4 s). */
    if (s == NATS_OK) s = natsOptions_SetPingInterval(o, XPB_NATS_PING_MS);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(o, 2);
    if (s == NATS_OK) s = natsOptions_SetIgnoreDiscoveredServers(o, c->only_listed_servers);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, XPB_KV_OP_TIMEOUT_MS);
    if (s == NATS_OK && c->ca_file != NULL) {
        s = natsOptions_SetSecure(o, true);
        if (s == NATS_OK) s = natsOptions_LoadCATrustedCertificates(o, c->ca_file);
    }
    if (s == NATS_OK && c->cert_file != NULL)
        s = natsOptions_LoadCertificatesChain(o, c->cert_file, c->key_file);
    if (s == NATS_OK && c->creds_file != NULL)
        s = natsOptions_SetUserCredentialsFromFiles(o, c->creds_file, NULL);
    if (s == NATS_OK && c->nkey_seed_file != NULL)
        s = natsOptions_SetNKeyFromSeed(o, c->nkey_public, c->nkey_seed_file);
    if (s == NATS_OK) s = natsConnection_Connect(&kv->nc, o);
    natsOptions_Destroy(o);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = XPB_KV_OP_TIMEOUT_MS;
    if (s == NATS_OK) s = natsConnection_JetStream(&kv->js, kv->nc, &jo);
    if (s != NATS_OK) {
        xpb_bus_set_err(err, errlen, "nats kv: cannot connect: %s", natsStatus_GetText(s));
        return XPB_EINVAL;
    }
    return 0;
}

static int open_bucket(xpb_kv *kv, const xpb_bus_nats_cfg *c, const char *name, unsigned ttl_s,
                       char *err, size_t errlen)
{
    kvStore **st = &kv->stores[kv->nstores];
    natsStatus s = js_KeyValue(st, kv->js, name);
    if (s == NATS_NOT_FOUND) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = name;
        kc.History = 1;
        kc.TTL = (int64_t)ttl_s * 1000000000; /* nanoseconds, like a stream's MaxAge */
        kc.Replicas = xpb_bus_nats_replicas(c);
        kc.StorageType = js_FileStorage;
        s = js_CreateKeyValue(st, kv->js, &kc);
    }
    if (s != NATS_OK || (kv->names[kv->nstores] = strdup(name)) == NULL) {
        natsStatus ls = NATS_OK;
        const char *why = nats_GetLastError(&ls);
        xpb_bus_set_err(err, errlen, "nats kv: cannot open or create bucket %s (ttl %u s): %s",
                        name, ttl_s, why != NULL && why[0] ? why : natsStatus_GetText(s));
        return XPB_EINVAL;
    }
    kv->nstores++;
    return 0;
}

int xpb_kv_open(xpb_kv **out, xpb_loop *loop, const xpb_bus_nats_cfg *cfg,
                const char *const *buckets, const unsigned *ttls_s, size_t nbuckets, xpb_kv_cb cb,
                void *ud, char *err, size_t errlen)
{
    *out = NULL;
    if (nbuckets > KV_MAX_BUCKETS || cfg == NULL || cfg->n_servers == 0) return XPB_EINVAL;
    xpb_kv *kv = calloc(1, sizeof *kv);
    if (kv == NULL) return XPB_ENOMEM;
    kv->cb = cb;
    kv->ud = ud;
    pthread_mutex_init(&kv->mu, NULL);
    pthread_cond_init(&kv->cv, NULL);
    int rc = xpb_wake_new(loop, on_wake, kv, &kv->wake);
    if (rc == 0) rc = open_conn(kv, cfg, err, errlen);
    for (size_t i = 0; rc == 0 && i < nbuckets; i++)
        rc = open_bucket(kv, cfg, buckets[i], ttls_s[i], err, errlen);
    if (rc == 0 && pthread_create(&kv->thread, NULL, worker, kv) != 0) rc = XPB_ENOMEM;
    if (rc != 0) {
        xpb_kv_close(kv, 0);
        return rc;
    }
    kv->started = 1;
    *out = kv;
    return 0;
}

void xpb_kv_close(xpb_kv *kv, unsigned wait_ms)
{
    if (kv == NULL) return;
    if (kv->started) {
        /* The queue runs on (a clean stop's releases) for at most wait_ms. */
        int64_t until = xpb_kv_now_ms() + wait_ms;
        for (;;) {
            pthread_mutex_lock(&kv->mu);
            int empty = kv->todo_head == NULL;
            pthread_mutex_unlock(&kv->mu);
            if (empty || xpb_kv_now_ms() >= until) break;
            struct timespec ts = {0, 10 * 1000000};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&kv->mu);
        kv->stop = 1;
        while (kv->todo_head != NULL) { /* left over: dropped */
            kv_job *j = kv->todo_head;
            kv->todo_head = j->next;
            job_free(j);
        }
        kv->todo_tail = NULL;
        pthread_cond_signal(&kv->cv);
        pthread_mutex_unlock(&kv->mu);
        pthread_join(kv->thread, NULL);
    }
    while (kv->done_head != NULL) {
        kv_job *j = kv->done_head;
        kv->done_head = j->next;
        job_free(j);
    }
    for (size_t i = 0; i < kv->nstores; i++) {
        kvStore_Destroy(kv->stores[i]);
        free(kv->names[i]);
    }
    jsCtx_Destroy(kv->js);
    natsConnection_Destroy(kv->nc);
    xpb_wake_free(kv->wake);
    pthread_cond_destroy(&kv->cv);
    pthread_mutex_destroy(&kv->mu);
    free(kv);
}
