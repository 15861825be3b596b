/* Sessions on N worker loops, driven from the owner's loop (xpb_shards.h).
 * limits.loops (default "auto": one per core): docs/architecture.md,
 * "Several loops". Sends, owner -> worker, are in shard_sends.c.
 *
 * Each side owns its half of a session and touches only that: the worker
 * its xpb_loop_session (and through it the xpb_session), the owner its
 * mirror (state, stats, XEP-0198 state) and ud. They talk through mailboxes
 * (xpb_mailbox): commands to a worker (create, close, destroy), events to the
 * owner, each event a copy (strings, the stanza's tree copied into its
 * batch's arena). A proxy is freed when its last reference goes: the
 * owner's (until remove), the worker's (until its session is freed) and one
 * per run of its events or sends on their way. */
#define _GNU_SOURCE /* explicit_bzero */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "shards_internal.h"
#include "xpb_arena.h"
#include "xpb_error.h"
#include "xpb_shards.h"
#include "xpb_stanza.h"
#include "xpb_strmap.h"

void shards_unref(xpb_shard_session *ss)
{
    if (atomic_fetch_sub(&ss->refs, 1) != 1) return;
    free(ss->sm_strs);
    free(ss->name);
    free(ss);
}

/* ---- events, worker -> owner ------------------------------------------------------
 * A worker collects the events of one loop turn in a batch: the events, their
 * strings and stanza copies all in the batch's arena, one mailbox post and
 * one wake of the owner per turn (a post per event cost more than the work
 * it moved: docs/architecture.md, "Several loops"). The batch is posted by a
 * wake the worker signals itself at the first event, which runs after the
 * turn's other callbacks, at its BATCH_POST_EVENTS-th event, or at once for
 * an XPB_SE_SM event, which the worker then waits for. An event that opens
 * a batch when the owner has run every batch of this worker (in_flight 0)
 * also goes at once, alone: the owner, idle, starts on it while the worker
 * parses on (Nagle's rule across the threads; the hop's p50 in the bridge
 * fell from 141-199 to 100-151 us at half load: docs/benchmarks.md), but only
 * while the worker's last turn had at most ALONE_TURN_MAX events: in a flood
 * the owner is idle between batches too, and lone events there made a bus
 * message each (30 events per message instead of 40, 25% more messages and
 * the NNG wake-ups on both ends of each; the flood was 1-3% slower). Events
 * added while the owner is busy wait for the end of the turn, so a busy
 * owner gets whole batches; posting them as soon as it is idle again
 * (tried) halved the events per bus message under load and cost 12-25% of
 * the flood (test_shards test_handoff holds the rule). The owner runs the
 * events in order and gives the batch back to the worker for reuse. */

typedef struct shard_ev {
    struct shard_ev *next;
    xpb_shard_session *ss;
    int holds_ref; /* the first of a run of ss's events in the batch holds one for the run */
    xpb_session_event ev;
    xpb_session_state state;
    xpb_session_stats stats;
    int sm_ok;
    xpb_session_sm *sm; /* XPB_SE_SM: the state then */
    int has_counts;     /* h_in, h_acked of the session then (every event with one) */
    uint32_t h_in, h_acked;
} shard_ev;

typedef struct ev_batch {
    xpb_shards *sh;
    struct worker *w; /* whose it goes back to */
    struct ev_batch *next_spare;
    xpb_arena *arena;
    shard_ev *head, **tail;
    unsigned n; /* events */
    int *done; /* ends with an XPB_SE_SM event: the waiting worker's flag, under sh->sm_mu */
} ev_batch;

/* A batch is posted at its BATCH_POST_EVENTS-th event, without waiting for
 * the end of the turn: the owner starts on it while the worker reads on, and
 * the batch stays within its block (under glibc's mmap threshold). */
#define BATCH_ARENA_BLOCK (120u * 1024u)
#define BATCH_POST_EVENTS 64u
#define BATCH_SPARE_MAX 16u /* a worker keeps at most this many (a burst's are freed) */
/* An event goes alone only while the worker's turns are this short (a
 * trickle); after a longer turn it waits for its batch (a flood). */
#define ALONE_TURN_MAX 8u

/* On the owner's thread. Once stopping, the worker no longer waits and its
 * flag (on its stack) may be gone: a dropped batch leaves it alone. */
static void batch_complete(ev_batch *b)
{
    if (!b->done) return;
    xpb_shards *sh = b->sh;
    pthread_mutex_lock(&sh->sm_mu);
    if (!sh->stopping) *b->done = 1;
    pthread_cond_broadcast(&sh->sm_cv);
    pthread_mutex_unlock(&sh->sm_mu);
}

static void batch_unref(ev_batch *b)
{
    for (shard_ev *e = b->head; e; e = e->next)
        if (e->holds_ref) shards_unref(e->ss);
}

static void free_spares(ev_batch *b);

static void batch_free(ev_batch *b)
{
    batch_unref(b);
    b->next_spare = NULL;
    free_spares(b);
}

/* On the owner's thread: the batch emptied and pushed back to its worker. */
static void batch_return(ev_batch *b)
{
    batch_unref(b);
    xpb_arena_reset(b->arena);
    b->head = NULL;
    b->tail = &b->head;
    b->n = 0;
    b->done = NULL;
    struct worker *w = b->w;
    atomic_fetch_sub(&w->in_flight, 1);
    ev_batch *top = atomic_load_explicit(&w->returned, memory_order_relaxed);
    do
        b->next_spare = top;
    while (!atomic_compare_exchange_weak_explicit(&w->returned, &top, b, memory_order_release,
                                                  memory_order_relaxed));
}

static void free_spares(ev_batch *b)
{
    while (b) {
        ev_batch *next = b->next_spare;
        xpb_arena_free(b->arena);
        free(b);
        b = next;
    }
}

/* On the worker's thread: a spare batch, refilled from what came back. */
static ev_batch *take_spare(struct worker *w)
{
    if (!w->spare) {
        ev_batch *list = atomic_exchange_explicit(&w->returned, NULL, memory_order_acquire);
        for (ev_batch *next; list; list = next) {
            next = list->next_spare;
            if (w->n_spare < BATCH_SPARE_MAX) {
                list->next_spare = w->spare;
                w->spare = list;
                w->n_spare++;
            } else {
                list->next_spare = NULL;
                free_spares(list);
            }
        }
    }
    ev_batch *b = w->spare;
    if (b) {
        w->spare = b->next_spare;
        w->n_spare--;
        b->next_spare = NULL;
    }
    return b;
}

/* sm's strings into ss's one allocation (kept when they are the same). */
static int sm_keep(xpb_shard_session *ss, const xpb_session_sm *sm)
{
    size_t a = strnlen(sm->id, sizeof sm->id), b = strnlen(sm->location, sizeof sm->location),
           c = strnlen(sm->jid, sizeof sm->jid);
    if (a == sizeof sm->id || b == sizeof sm->location || c == sizeof sm->jid) return XPB_EINVAL;
    size_t n = a + b + c + 3;
    char *old = ss->sm_strs;
    if (old && !strcmp(old, sm->id) && !strcmp(old + a + 1, sm->location) &&
        !strcmp(old + a + b + 2, sm->jid))
        return 0;
    char *p = malloc(n);
    if (!p) return XPB_ENOMEM;
    memcpy(p, sm->id, a + 1);
    memcpy(p + a + 1, sm->location, b + 1);
    memcpy(p + a + b + 2, sm->jid, c + 1);
    free(old);
    ss->sm_strs = p;
    return 0;
}

static void owner_event(shard_ev *e)
{
    xpb_shard_session *ss = e->ss;
    xpb_shards *sh = ss->sh;
    if (ss->removed) return;
    ss->state = e->state;
    ss->stats = e->stats;
    if (e->sm) {
        ss->sm_ok = e->sm_ok && sm_keep(ss, e->sm) == 0;
        ss->sm_h_in = e->sm->h_in;
        ss->sm_h_acked = e->sm->h_acked;
    } else if (e->has_counts && ss->sm_strs && ss->sm_ok) {
        /* Between XEP-0198 state events the counters move with each stanza:
         * the state kept within XPB_DAEMON_SM_SAVE_MS must follow them. */
        ss->sm_h_in = e->h_in;
        ss->sm_h_acked = e->h_acked;
    }
    if (sh->cfg.on_event) sh->cfg.on_event(sh->cfg.ud, ss, &e->ev);
}

static void owner_batch(void *arg)
{
    ev_batch *b = arg;
    for (shard_ev *e = b->head; e; e = e->next)
        owner_event(e);
    batch_complete(b);
    batch_return(b);
}

static void owner_batch_dropped(void *arg)
{
    ev_batch *b = arg;
    batch_complete(b);
    batch_return(b);
}

static const char *arena_dup(xpb_arena *a, const char *s, int *bad)
{
    if (!s) return NULL;
    const char *d = xpb_arena_strndup(a, s, strlen(s));
    if (!d) *bad = 1;
    return d;
}

/* The worker's open batch, made at its first event; NULL when out of memory. */
static ev_batch *open_batch(struct worker *w)
{
    if (w->batch) return w->batch;
    ev_batch *b = take_spare(w);
    if (!b) {
        if (!(b = calloc(1, sizeof *b)) || !(b->arena = xpb_arena_new(BATCH_ARENA_BLOCK))) {
            free(b);
            return NULL;
        }
        b->sh = w->sh;
        b->w = w;
        b->tail = &b->head;
    }
    w->batch = b;
    xpb_wake_signal(w->flush); /* posted after this turn's other callbacks */
    return b;
}

/* ev of ss into w's batch, with the session's figures of now (s NULL: none). */
static int ev_add(struct worker *w, xpb_shard_session *ss, const xpb_session_event *ev,
                  xpb_session *s)
{
    ev_batch *b = open_batch(w);
    shard_ev *e = b ? xpb_arena_calloc(b->arena, sizeof *e) : NULL;
    if (!e) return XPB_ENOMEM;
    int bad = 0;
    e->ss = ss;
    e->ev = *ev;
    e->ev.reason = arena_dup(b->arena, ev->reason, &bad);
    e->ev.jid = arena_dup(b->arena, ev->jid, &bad);
    e->ev.stanza = NULL;
    if (ev->stanza && !bad) {
        xpb_node *copy = NULL;
        bad = xpb_session_clone_stanza(s, ev->stanza, b->arena, &copy) != 0;
        e->ev.stanza = copy;
    }
    if (s) {
        e->state = xpb_session_get_state(s);
        xpb_session_get_stats(s, &e->stats);
        e->has_counts = 1;
        xpb_session_sm_counts(s, &e->h_in, &e->h_acked);
        if (ev->kind == XPB_SE_SM && !bad) {
            bad = !(e->sm = xpb_arena_alloc(b->arena, sizeof *e->sm));
            if (!bad) e->sm_ok = xpb_session_get_sm(s, e->sm) == 0;
        }
    } else {
        e->state = ev->kind == XPB_SE_STATE ? ev->state : XPB_SS_STOPPED;
    }
    if (bad) return XPB_ENOMEM; /* left in the arena, not linked */
    /* The batch runs its events in order and drops its references after the
     * last: one per run of the same session's events is enough (an atomic
     * per stanza on a line the owner also writes cost more). */
    shard_ev *prev = b->head ? (shard_ev *)((char *)b->tail - offsetof(shard_ev, next)) : NULL;
    if (!prev || prev->ss != ss) {
        e->holds_ref = 1;
        atomic_fetch_add(&ss->refs, 1);
    }
    *b->tail = e;
    b->tail = &e->next;
    b->n++;
    return 0;
}

/* One pause of a worker waiting for the owner (counted once per wait);
 * 0 without pausing once the owner stops. */
static int pause_for_owner(xpb_shards *sh, int *waited)
{
    if (atomic_load(&sh->stopping)) return 0;
    if (!(*waited)++) atomic_fetch_add(&sh->waits, 1);
    struct timespec pause = {0, 200000};
    nanosleep(&pause, NULL);
    return 1;
}

/* Posts w's batch; with sync, waits until the owner ran it (XPB_SE_SM: the
 * owner keeps the state before the session tells the server its h). */
static void post_batch(struct worker *w, int sync)
{
    ev_batch *b = w->batch;
    if (!b) return;
    w->batch = NULL;
    xpb_shards *sh = w->sh;
    int done = 0;
    /* The flag lives on this stack while the owner may write it: this thread
     * waits below until it has, or until the owner stops (and then leaves
     * it alone, batch_complete). */
    // cppcheck-suppress autoVariables
    if (sync) b->done = &done;
    /* Backpressure, not loss: while the owner is this far behind (or its
     * mailbox is full) the worker waits, and reads none of its sockets. */
    int rc, waited = 0;
    while (atomic_load(&w->in_flight) >= XPB_SHARDS_MAX_IN_FLIGHT && pause_for_owner(sh, &waited)) {
    }
    atomic_fetch_add(&w->in_flight, 1);
    while ((rc = xpb_mailbox_post(sh->to_owner, owner_batch, owner_batch_dropped, b)) ==
               XPB_EQUEUEFULL &&
           pause_for_owner(sh, &waited)) {
    }
    if (rc != 0) { /* stopping: nobody will run them */
        atomic_fetch_sub(&w->in_flight, 1);
        b->done = NULL;
        batch_free(b);
        return;
    }
    if (!sync) return;
    pthread_mutex_lock(&sh->sm_mu);
    while (!done && !sh->stopping) pthread_cond_wait(&sh->sm_cv, &sh->sm_mu);
    pthread_mutex_unlock(&sh->sm_mu);
}

static void on_flush(void *ud)
{
    struct worker *w = ud;
    w->last_turn_events = w->turn_events;
    w->turn_events = 0;
    post_batch(w, 0);
}

void shards_worker_event(struct worker *w, xpb_shard_session *ss, const xpb_session_event *ev,
                         xpb_session *s)
{
    if (ev_add(w, ss, ev, s) != 0) {
        if (w->sh->cfg.on_log)
            w->sh->cfg.on_log(w->sh->cfg.ud, XPB_LOG_ERROR, ss->name,
                              "an event was lost: out of memory copying it for the daemon");
        return;
    }
    w->turn_events++;
    if (ev->kind == XPB_SE_SM) post_batch(w, 1);
    else if (w->batch && (w->batch->n >= BATCH_POST_EVENTS ||
                          (w->batch->n == 1 && atomic_load(&w->in_flight) == 0 &&
                           w->last_turn_events <= ALONE_TURN_MAX)))
        post_batch(w, 0);
}

static void on_worker_event(void *ud, xpb_loop_session *ls, const xpb_session_event *ev)
{
    struct worker *w = ud;
    xpb_shard_session *ss = xpb_loop_session_ud(ls);
    if (!ss) ss = w->creating; /* NULL: being destroyed */
    if (ss) shards_worker_event(w, ss, ev, xpb_loop_session_get(ls));
}

/* ---- commands, owner -> worker ---------------------------------------------------- */

static char *dup_or_null(const char *s, int *bad)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d) *bad = 1;
    return d;
}

typedef struct create_cmd {
    xpb_shard_session *ss;
    xpb_session_config cfg;
    xpb_session_sm resume;
    char *jid, *host, *ws_url, *show, *status, *ca_file;
    unsigned char *password;
} create_cmd;

static void create_free(create_cmd *c)
{
    if (c->password) explicit_bzero(c->password, c->cfg.password_len);
    free(c->password);
    free(c->jid);
    free(c->host);
    free(c->ws_url);
    free(c->show);
    free(c->status);
    free(c->ca_file);
    explicit_bzero(&c->resume, sizeof c->resume);
    free(c);
}

static create_cmd *create_copy(xpb_shard_session *ss, const xpb_session_config *cfg,
                               const char *ca_file)
{
    create_cmd *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    int bad = 0;
    c->ss = ss;
    c->cfg = *cfg;
    c->cfg.jid = c->jid = dup_or_null(cfg->jid, &bad);
    c->cfg.host = c->host = dup_or_null(cfg->host, &bad);
    c->cfg.ws_url = c->ws_url = dup_or_null(cfg->ws_url, &bad);
    c->cfg.presence_show = c->show = dup_or_null(cfg->presence_show, &bad);
    c->cfg.presence_status = c->status = dup_or_null(cfg->presence_status, &bad);
    c->ca_file = dup_or_null(ca_file, &bad);
    if (cfg->password && cfg->password_len) {
        c->password = malloc(cfg->password_len);
        if (c->password) memcpy(c->password, cfg->password, cfg->password_len);
        else bad = 1;
    }
    c->cfg.password = c->password;
    if (cfg->resume) {
        c->resume = *cfg->resume;
        c->cfg.resume = &c->resume;
    }
    if (bad) {
        create_free(c);
        return NULL;
    }
    return c;
}

static void worker_create(void *arg)
{
    create_cmd *c = arg;
    xpb_shard_session *ss = c->ss;
    struct worker *w = &ss->sh->w[ss->wi];
    char err[256] = "";
    xpb_loop_session *ls = NULL;
    w->creating = ss;
    int rc = xpb_loop_add_session(w->loop, ss->name, &c->cfg, c->ca_file, &ls, err, sizeof err);
    w->creating = NULL;
    create_free(c);
    if (rc == 0) {
        ss->ls = ls;
        xpb_loop_session_set_ud(ls, ss);
        xpb_session_set_gauges(xpb_loop_session_get(ls), &ss->live);
        return;
    }
    char why[320];
    snprintf(why, sizeof why, "session not created on worker %u: %s", ss->wi,
             err[0] ? err : xpb_strerror(rc));
    xpb_session_event ev = {.kind = XPB_SE_STATE, .state = XPB_SS_STOPPED, .reason = why,
                            .code = rc};
    shards_worker_event(w, ss, &ev, NULL);
    shards_unref(ss); /* the worker's: no session (the event holds its own) */
}

static void create_dropped(void *arg)
{
    create_cmd *c = arg;
    xpb_shard_session *ss = c->ss;
    create_free(c);
    shards_unref(ss);
}

static void worker_close(void *arg)
{
    xpb_shard_session *ss = arg;
    if (ss->ls) xpb_session_close(xpb_loop_session_get(ss->ls));
    shards_unref(ss);
}

static void worker_destroy(void *arg)
{
    xpb_shard_session *ss = arg;
    if (ss->ls) {
        xpb_loop_session_set_ud(ss->ls, NULL); /* no more events of it */
        xpb_session_set_gauges(xpb_loop_session_get(ss->ls), NULL);
        xpb_loop_remove_session(ss->sh->w[ss->wi].loop, ss->ls);
        ss->ls = NULL;
        shards_unref(ss); /* the worker's */
    }
    shards_unref(ss); /* the command's */
}

static void cmd_dropped(void *arg)
{
    shards_unref(arg);
}

/* ---- the owner's API --------------------------------------------------------------- */

int xpb_shards_new(xpb_shards **out, const xpb_shards_config *cfg, char *err, size_t errlen)
{
    if (!out || !cfg || !cfg->owner || cfg->workers < 1 || cfg->workers > XPB_SHARDS_MAX_WORKERS) {
        snprintf(err, errlen, "loops must be 1 .. %u", XPB_SHARDS_MAX_WORKERS);
        return XPB_EINVAL;
    }
    xpb_shards *sh = calloc(1, sizeof *sh);
    if (!sh) return XPB_ENOMEM;
    sh->cfg = *cfg;
    pthread_mutex_init(&sh->sm_mu, NULL);
    pthread_cond_init(&sh->sm_cv, NULL);
    int rc = xpb_mailbox_new(cfg->owner, &sh->to_owner);
    if (rc == 0) rc = xpb_wake_new(cfg->owner, shards_on_send_flush, sh, &sh->send_flush);
    for (unsigned i = 0; rc == 0 && i < cfg->workers; i++) {
        struct worker *w = &sh->w[i];
        xpb_loop_config lc = cfg->worker;
        lc.base = NULL;
        lc.on_event = on_worker_event;
        lc.on_log = cfg->on_log;
        lc.ud = w;
        if (lc.connect_rate) lc.connect_rate = (lc.connect_rate + cfg->workers - 1) / cfg->workers;
        w->sh = sh;
        w->index = i;
        rc = xpb_loop_new(&w->loop, &lc);
        if (rc == 0) {
            /* the loop's callbacks get the worker, not the shards' ud */
            xpb_loop_set_handlers(w->loop, on_worker_event, cfg->on_log, w);
            rc = xpb_wake_new(w->loop, on_flush, w, &w->flush);
        }
        if (rc == 0) rc = xpb_loop_thread_start(w->loop, &w->thread);
        if (rc == 0) {
            sh->n = i + 1;
        } else { /* not counted in sh->n: free what this one made here */
            snprintf(err, errlen, "worker loop %u: %s", i, xpb_strerror(rc));
            xpb_wake_free(w->flush);
            w->flush = NULL;
            xpb_loop_free(w->loop);
            w->loop = NULL;
        }
    }
    if (rc != 0) {
        xpb_shards_free(sh);
        return rc;
    }
    *out = sh;
    return 0;
}

unsigned xpb_shards_workers(const xpb_shards *sh)
{
    return sh->n;
}

unsigned long long xpb_shards_waits(const xpb_shards *sh)
{
    return atomic_load(&sh->waits);
}

int xpb_shards_add(xpb_shards *sh, const char *name, const xpb_session_config *cfg,
                   const char *ca_file, xpb_shard_session **out)
{
    if (!sh || !name || !cfg || !out) return XPB_EINVAL;
    xpb_shard_session *ss = calloc(1, sizeof *ss);
    if (!ss || !(ss->name = strdup(name))) {
        free(ss);
        return XPB_ENOMEM;
    }
    ss->sh = sh;
    ss->wi = xpb_strmap_hash(name) % sh->n;
    ss->state = XPB_SS_IDLE;
    ss->stream_ns = cfg->transport == XPB_TRANSPORT_WEBSOCKET ? "" : XPB_NS_CLIENT;
    ss->max_stanza_bytes = cfg->max_stanza_bytes;
    ss->queue_max = cfg->queue_max ? cfg->queue_max : XPB_SESSION_DEFAULT_QUEUE_MAX;
    atomic_init(&ss->refs, 3); /* the owner's, the worker's, the create command's */
    create_cmd *c = create_copy(ss, cfg, ca_file);
    if (!c) {
        free(ss->name);
        free(ss);
        return XPB_ENOMEM;
    }
    /* the command's reference becomes the worker's when the session is made */
    atomic_fetch_sub(&ss->refs, 1);
    ss->next = sh->live;
    if (sh->live) sh->live->prev = ss;
    sh->live = ss;
    shards_post_cmd(ss, worker_create, create_dropped, c);
    *out = ss;
    return 0;
}

void xpb_shards_remove(xpb_shard_session *ss)
{
    if (!ss || ss->removed) return;
    xpb_shards *sh = ss->sh;
    ss->removed = 1;
    if (ss->prev) ss->prev->next = ss->next;
    else sh->live = ss->next;
    if (ss->next) ss->next->prev = ss->prev;
    atomic_fetch_add(&ss->refs, 1); /* the command's */
    shards_post_cmd(ss, worker_destroy, cmd_dropped, ss);
    shards_unref(ss); /* the owner's */
}

void xpb_shard_close(xpb_shard_session *ss)
{
    if (!ss || ss->removed) return;
    atomic_fetch_add(&ss->refs, 1);
    shards_post_cmd(ss, worker_close, cmd_dropped, ss);
}

void xpb_shards_free(xpb_shards *sh)
{
    if (!sh) return;
    xpb_wake_free(sh->send_flush); /* on the owner's loop, as this call */
    shards_drop_unposted_sends(sh);
    pthread_mutex_lock(&sh->sm_mu);
    /* A worker waiting for its XEP-0198 event, or for room, goes on. */
    atomic_store(&sh->stopping, 1);
    pthread_cond_broadcast(&sh->sm_cv);
    pthread_mutex_unlock(&sh->sm_mu);
    for (unsigned i = 0; i < sh->n; i++) {
        struct worker *w = &sh->w[i];
        if (w->thread) xpb_loop_thread_stop(w->thread); /* commands not yet run are dropped */
        if (w->batch) { /* never posted: nobody waits for it (stopping) */
            batch_free(w->batch);
            w->batch = NULL;
        }
        for (xpb_loop_session *ls = xpb_loop_first(w->loop), *next; ls; ls = next) {
            next = xpb_loop_next(ls);
            xpb_shard_session *ss = xpb_loop_session_ud(ls);
            xpb_loop_session_set_ud(ls, NULL);
            xpb_loop_remove_session(w->loop, ls);
            if (ss) {
                ss->ls = NULL;
                shards_unref(ss); /* the worker's */
            }
        }
        xpb_wake_free(w->flush);
        xpb_loop_free(w->loop);
    }
    xpb_mailbox_free(sh->to_owner); /* events not delivered: dropped (and returned) */
    for (unsigned i = 0; i < sh->n; i++) {
        free_spares(sh->w[i].spare);
        free_spares(atomic_exchange(&sh->w[i].returned, NULL));
        shards_free_send_spares(&sh->w[i]);
    }
    while (sh->live) {
        xpb_shard_session *ss = sh->live;
        sh->live = ss->next;
        ss->removed = 1;
        shards_unref(ss); /* the owner's */
    }
    pthread_cond_destroy(&sh->sm_cv);
    pthread_mutex_destroy(&sh->sm_mu);
    free(sh);
}

void xpb_shard_set_ud(xpb_shard_session *ss, void *ud)
{
    ss->ud = ud;
}

void *xpb_shard_ud(const xpb_shard_session *ss)
{
    return ss->ud;
}

const char *xpb_shard_name(const xpb_shard_session *ss)
{
    return ss->name;
}

unsigned xpb_shard_worker(const xpb_shard_session *ss)
{
    return ss->wi;
}

xpb_session_state xpb_shard_state(const xpb_shard_session *ss)
{
    return ss->state;
}

void xpb_shard_stats(const xpb_shard_session *ss, xpb_session_stats *out)
{
    *out = ss->stats;
    /* The queue's gauges are the session's as of now, not of the last event. */
    out->queued = atomic_load_explicit(&ss->live.queued, memory_order_relaxed);
    out->unacked = atomic_load_explicit(&ss->live.unacked, memory_order_relaxed);
}

int xpb_shard_sm(const xpb_shard_session *ss, xpb_session_sm *out)
{
    if (!ss->sm_strs || !ss->sm_ok) return 1;
    const char *id = ss->sm_strs, *loc = id + strlen(id) + 1, *jid = loc + strlen(loc) + 1;
    memset(out, 0, sizeof *out);
    /* each fitted its array when kept (sm_keep) */
    memcpy(out->id, id, strlen(id) + 1);
    memcpy(out->location, loc, strlen(loc) + 1);
    memcpy(out->jid, jid, strlen(jid) + 1);
    out->h_in = ss->sm_h_in;
    out->h_acked = ss->sm_h_acked;
    return 0;
}
