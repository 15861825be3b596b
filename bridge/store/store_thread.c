/* The store thread (xpb_store.h, "the store thread"): the writes the event
 * loop hands over run here, on a connection of their own, everything queued
 * in one transaction, so that commits, fsyncs and WAL checkpoints never stall
 * the loop. The hand-off is a list under one mutex; the results go back on a
 * second list and the owner's notify (its loop's wake event). */
#define _GNU_SOURCE /* strdup, pthread_setname_np */
#include "store_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"

enum op_kind { OP_JOURNAL, OP_TRIM, OP_PUT, OP_DONE, OP_SM_SAVE, OP_SM_CLEAR, OP_SEEN };

struct store_op {
    struct store_op *next;
    enum op_kind kind;
    xpb_store_done_cb cb;
    void *ud;
    char *account;
    uint64_t id;
    int rc;
    char *err;                   /* the failure's text, or NULL */
    const xpb_journal_event *ev; /* OP_JOURNAL: the caller's, n of them */
    size_t n;                    /* OP_JOURNAL, OP_SEEN */
    int64_t now_us;              /* OP_TRIM, OP_SEEN */
    xpb_outbox_item put;         /* OP_PUT: its strings and bytes owned */
    xpb_sm_state *sm;            /* OP_SM_SAVE */
    xpb_store_seen_item *seen;   /* OP_SEEN: n items, strings owned */
};

struct store_thread {
    xpb_store *w; /* the thread's connection: a store without the lock file */
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    struct store_op *todo, **todo_tail; /* submitted, not taken yet */
    struct store_op *done, **done_tail; /* written, not completed yet */
    struct store_op *cur;               /* being completed (the caller's thread only) */
    int running, stop;
    xpb_journal_stats js; /* the thread's journal figures after its last round */
    xpb_store_notify_fn notify;
    void *ud;
    int wal_pages; /* the WAL's size after the thread's last commit (sqlite3_wal_hook) */
};

/* ---- one round ---------------------------------------------------------------------- */

static void set_rc(struct store_op *op, int rc, const char *err)
{
    op->rc = rc;
    free(op->err);
    op->err = rc && err[0] ? strdup(err) : NULL;
}

/* A marker moves only past events in the journal: none when an append failed
 * since the previous seen write (the ids are written all the same). */
static int run_seen(xpb_store *w, struct store_op *op, char *err, size_t errlen)
{
    op->id = w->js.append_errors != w->seen_journal_errors;
    w->seen_journal_errors = w->js.append_errors;
    for (size_t i = 0; op->id && i < op->n; i++) {
        free((void *)op->seen[i].marker);
        free((void *)op->seen[i].stream);
        op->seen[i].marker = op->seen[i].stream = NULL;
    }
    return xpb_store_seen_commit(w, op->seen, op->n, op->now_us, err, errlen);
}

static int run_op(xpb_store *w, struct store_op *op, char *err, size_t errlen)
{
    switch (op->kind) {
    case OP_JOURNAL:
        return xpb_store_journal_append(w, op->ev, op->n, err, errlen);
    case OP_TRIM:
        return xpb_store_journal_trim(w, op->now_us, err, errlen);
    case OP_PUT:
        return xpb_store_outbox_put(w, &op->put, err, errlen);
    case OP_DONE:
        return xpb_store_outbox_done(w, op->account, op->id, err, errlen);
    case OP_SM_SAVE:
        return xpb_store_sm_save(w, op->account, op->sm, err, errlen);
    case OP_SM_CLEAR:
        return xpb_store_sm_clear(w, op->account, err, errlen);
    case OP_SEEN:
        return run_seen(w, op, err, errlen);
    }
    return XPB_EINVAL;
}

/* Each write in a transaction of its own (an outbox row fsynced on its own):
 * after a round that failed as a whole, so each gets its own outcome. */
static void run_alone(xpb_store *w, struct store_op *list)
{
    for (struct store_op *op = list; op; op = op->next) {
        char err[768] = "";
        w->batch_puts = 0;
        set_rc(op, run_op(w, op, err, sizeof err), err);
    }
}

static void run_round(struct store_thread *t, struct store_op *list)
{
    xpb_store *w = t->w;
    xpb_journal_stats js0 = w->js;
    uint64_t seen0 = w->seen_journal_errors;
    char err[768] = "";
    int broken = store_step_stmt(w, ST_TX_BEGIN) != SQLITE_OK;
    w->in_round = 1;
    w->batch_puts = 0;
    for (struct store_op *op = list; op && !broken; op = op->next) {
        err[0] = '\0';
        set_rc(op, run_op(w, op, err, sizeof err), err);
        broken = sqlite3_get_autocommit(w->db); /* SQLite rolled the round back */
    }
    w->in_round = 0;
    if (!broken) broken = store_step_stmt(w, ST_TX_COMMIT) != SQLITE_OK;
    if (broken) {
        if (!sqlite3_get_autocommit(w->db)) sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
        w->js = js0;
        w->seen_journal_errors = seen0;
        run_alone(w, list);
        return;
    }
    int rc = w->batch_puts ? store_sync_sends(w, err, sizeof err) : 0;
    if (rc) /* written, but not known to be on disk: refused, as a failed commit */
        for (struct store_op *op = list; op; op = op->next)
            if (op->kind == OP_PUT && op->rc == 0) set_rc(op, rc, err);
}

static int on_wal(void *ud, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    ((struct store_thread *)ud)->wal_pages = pages;
    return SQLITE_OK;
}

/* PASSIVE: copies what no reader needs, waits for nobody; the WAL starts over
 * at a later commit once it was copied whole. */
static void checkpoint(struct store_thread *t)
{
    if (t->wal_pages < (int)XPB_STORE_CHECKPOINT_PAGES) return;
    int log = 0, copied = 0;
    sqlite3_wal_checkpoint_v2(t->w->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    t->wal_pages = 0;
}

static void *thread_main(void *arg)
{
    struct store_thread *t = arg;
    pthread_setname_np(pthread_self(), "xpb-store"); /* top -H, perf, gdb */
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->todo && !t->stop)
            pthread_cond_wait(&t->work, &t->mu);
        if (!t->todo) break;
        struct store_op *list = t->todo;
        t->todo = NULL;
        t->todo_tail = &t->todo;
        t->running = 1;
        pthread_mutex_unlock(&t->mu);
        run_round(t, list);
        pthread_mutex_lock(&t->mu);
        *t->done_tail = list;
        while (*t->done_tail)
            t->done_tail = &(*t->done_tail)->next;
        t->js = t->w->js;
        t->running = 0;
        pthread_cond_broadcast(&t->idle);
        pthread_mutex_unlock(&t->mu);
        if (t->notify) t->notify(t->ud);
        checkpoint(t);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- the caller's side --------------------------------------------------------------- */

static void op_free(struct store_op *op)
{
    free(op->account);
    free(op->err);
    free((void *)op->put.stanza_id);
    free((void *)op->put.request_id);
    free((void *)op->put.xml);
    free(op->sm);
    for (size_t i = 0; op->seen && i < op->n; i++) {
        free((void *)op->seen[i].account);
        free((void *)op->seen[i].archive);
        free((void *)op->seen[i].stanza_id);
        free((void *)op->seen[i].marker);
        free((void *)op->seen[i].stream);
    }
    free(op->seen);
    free(op);
}

static void free_list(struct store_op *op)
{
    while (op) {
        struct store_op *next = op->next;
        op_free(op);
        op = next;
    }
}

int xpb_store_thread_start(xpb_store *s, xpb_store_notify_fn notify, void *ud, char *err,
                           size_t errlen)
{
    if (!s || s->t) return XPB_EINVAL;
    store_batch_end(s);
    struct store_thread *t = calloc(1, sizeof *t);
    xpb_store *w = calloc(1, sizeof *w);
    if (!t || !w) {
        free(t);
        free(w);
        return XPB_ENOMEM;
    }
    w->lock_fd = -1; /* s holds the directory's lock for both */
    memcpy(w->path, s->path, sizeof w->path);
    w->sync = s->sync;
    w->max_db_pages = s->max_db_pages;
    w->max_bytes = s->max_bytes;
    w->max_age_s = s->max_age_s;
    int rc = store_open_db(w, err, errlen);
    /* The thread checkpoints (checkpoint above); the caller's connection never. */
    if (!rc) rc = store_exec(s, "PRAGMA wal_autocheckpoint=0", "open", err, errlen);
    if (rc) {
        xpb_store_close(w);
        free(t);
        return rc;
    }
    sqlite3_wal_hook(w->db, on_wal, t); /* replaces SQLite's automatic checkpoint */
    t->w = w;
    t->js = w->js;
    t->notify = notify;
    t->ud = ud;
    t->todo_tail = &t->todo;
    t->done_tail = &t->done;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->work, NULL);
    pthread_cond_init(&t->idle, NULL);
    if (pthread_create(&t->tid, NULL, thread_main, t) != 0) {
        snprintf(err, errlen, "store thread: cannot start it");
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->work);
        pthread_cond_destroy(&t->idle);
        xpb_store_close(w);
        free(t);
        return XPB_ENOMEM;
    }
    s->t = t;
    return 0;
}

int xpb_store_threaded(const xpb_store *s)
{
    return s && s->t;
}

void store_thread_stop(xpb_store *s)
{
    struct store_thread *t = s->t;
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->work);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->tid, NULL); /* it writes what is queued first */
    free_list(t->cur);
    free_list(t->done);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->work);
    pthread_cond_destroy(&t->idle);
    xpb_store_close(t->w);
    free(t);
    s->t = NULL;
}

void store_thread_js(const xpb_store *s, xpb_journal_stats *out)
{
    struct store_thread *t = s->t;
    pthread_mutex_lock(&t->mu);
    *out = t->js;
    pthread_mutex_unlock(&t->mu);
}

/* In submit order, also when a done callback calls this again (t->cur is shared). */
void xpb_store_complete(xpb_store *s)
{
    struct store_thread *t = s ? s->t : NULL;
    if (!t) return;
    for (;;) {
        if (!t->cur) {
            pthread_mutex_lock(&t->mu);
            t->cur = t->done;
            t->done = NULL;
            t->done_tail = &t->done;
            pthread_mutex_unlock(&t->mu);
            if (!t->cur) return;
        }
        struct store_op *op = t->cur;
        t->cur = op->next;
        if (op->cb) op->cb(op->ud, op->account, op->id, op->rc, op->err ? op->err : "");
        op_free(op);
    }
}

void xpb_store_wait(xpb_store *s)
{
    struct store_thread *t = s ? s->t : NULL;
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    while (t->todo || t->running)
        pthread_cond_wait(&t->idle, &t->mu);
    pthread_mutex_unlock(&t->mu);
    xpb_store_complete(s);
}

static struct store_op *op_new(const xpb_store *s, enum op_kind kind, const char *account,
                               xpb_store_done_cb cb, void *ud)
{
    if (!s || !s->t) return NULL;
    struct store_op *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    op->kind = kind;
    op->cb = cb;
    op->ud = ud;
    if (account && !(op->account = strdup(account))) {
        free(op);
        return NULL;
    }
    return op;
}

static int submit(xpb_store *s, struct store_op *op)
{
    struct store_thread *t = s->t;
    pthread_mutex_lock(&t->mu);
    *t->todo_tail = op;
    t->todo_tail = &op->next;
    pthread_cond_signal(&t->work);
    pthread_mutex_unlock(&t->mu);
    return 0;
}

static int no_op(const xpb_store *s)
{
    return s && s->t ? XPB_ENOMEM : XPB_EINVAL;
}

int xpb_store_submit_journal(xpb_store *s, const xpb_journal_event *ev, size_t n,
                             xpb_store_done_cb cb, void *ud)
{
    struct store_op *op = op_new(s, OP_JOURNAL, NULL, cb, ud);
    if (!op) return no_op(s);
    op->ev = ev;
    op->n = n;
    return submit(s, op);
}

int xpb_store_submit_trim(xpb_store *s, int64_t now_us, xpb_store_done_cb cb, void *ud)
{
    struct store_op *op = op_new(s, OP_TRIM, NULL, cb, ud);
    if (!op) return no_op(s);
    op->now_us = now_us;
    return submit(s, op);
}

static char *dup_opt(const char *v, int *bad)
{
    char *c = v ? strdup(v) : NULL;
    if (v && !c) *bad = 1;
    return c;
}

int xpb_store_submit_outbox_put(xpb_store *s, const xpb_outbox_item *it, xpb_store_done_cb cb,
                                void *ud)
{
    struct store_op *op = op_new(s, OP_PUT, it->account, cb, ud);
    if (!op) return no_op(s);
    int bad = 0;
    uint8_t *xml = malloc(it->xml_len ? it->xml_len : 1);
    if (xml) memcpy(xml, it->xml, it->xml_len);
    op->id = it->id;
    op->put = (xpb_outbox_item){.account = op->account,
                                .id = it->id,
                                .stanza_id = dup_opt(it->stanza_id, &bad),
                                .request_id = dup_opt(it->request_id, &bad),
                                .xml = xml,
                                .xml_len = it->xml_len};
    if (bad || !xml) {
        op_free(op);
        return XPB_ENOMEM;
    }
    return submit(s, op);
}

int xpb_store_submit_outbox_done(xpb_store *s, const char *account, uint64_t id,
                                 xpb_store_done_cb cb, void *ud)
{
    struct store_op *op = op_new(s, OP_DONE, account, cb, ud);
    if (!op) return no_op(s);
    op->id = id;
    return submit(s, op);
}

int xpb_store_submit_sm_save(xpb_store *s, const char *account, const xpb_sm_state *st,
                             xpb_store_done_cb cb, void *ud)
{
    struct store_op *op = op_new(s, OP_SM_SAVE, account, cb, ud);
    if (!op) return no_op(s);
    if (!(op->sm = malloc(sizeof *op->sm))) {
        op_free(op);
        return XPB_ENOMEM;
    }
    *op->sm = *st;
    return submit(s, op);
}

int xpb_store_submit_sm_clear(xpb_store *s, const char *account, xpb_store_done_cb cb, void *ud)
{
    struct store_op *op = op_new(s, OP_SM_CLEAR, account, cb, ud);
    return op ? submit(s, op) : no_op(s);
}

int xpb_store_submit_seen(xpb_store *s, const xpb_store_seen_item *it, size_t n, int64_t now_us,
                          xpb_store_done_cb cb, void *ud)
{
    struct store_op *op = op_new(s, OP_SEEN, NULL, cb, ud);
    if (!op) return no_op(s);
    op->now_us = now_us;
    op->seen = calloc(n ? n : 1, sizeof *op->seen);
    int bad = !op->seen;
    for (size_t i = 0; !bad && i < n; i++) {
        op->n = i + 1; /* what op_free must free */
        op->seen[i] = (xpb_store_seen_item){.account = dup_opt(it[i].account, &bad),
                                            .archive = dup_opt(it[i].archive, &bad),
                                            .stanza_id = dup_opt(it[i].stanza_id, &bad),
                                            .marker = dup_opt(it[i].marker, &bad),
                                            .stream = dup_opt(it[i].stream, &bad)};
    }
    if (bad) {
        op_free(op);
        return XPB_ENOMEM;
    }
    op->n = n;
    return submit(s, op);
}
