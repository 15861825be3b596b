/* The fake loop (fake_loop.h): sessions on scripted I/O, hand-fired timers. */
#include "fake_loop.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_xml.h"

#define FAKE_MAX_TIMERS 256

struct xpb_timer {
    xpb_loop *l;
    xpb_timer_cb cb;
    void *ud;
    int armed;
    unsigned ms;
};

struct xpb_loop_session {
    xpb_loop *l;
    char *name;
    xpb_session *s;
    xpb_buf out;
    int connects;
    unsigned timers[XPB_TIMER_COUNT];
    void *ud;
    xpb_loop_session *next;
};

struct xpb_wake {
    xpb_loop *l;
    xpb_wake_cb cb;
    void *ud;
    atomic_int signaled;
    xpb_wake *next;
};

struct xpb_loop {
    void (*settle)(void *ud); /* fake_loop_set_settle */
    void *settle_ud;
    xpb_wake *wakes;
    xpb_loop_event_cb on_event;
    xpb_loop_log_cb on_log;
    void *ud;
    int stopped;
    xpb_loop_session *sessions;
    xpb_timer *timers[FAKE_MAX_TIMERS]; /* every live timer */
};

/* ---- the session's I/O ops -------------------------------------------------------- */

static int op_connect(void *io, const xpb_session_target *t)
{
    xpb_loop_session *ls = io;
    (void)t;
    ls->connects++;
    return 0;
}

static int op_send(void *io, const char *data, size_t len)
{
    xpb_loop_session *ls = io;
    return xpb_buf_append(&ls->out, data, len);
}

static int op_starttls(void *io)
{
    (void)io;
    return 0;
}

static void op_disconnect(void *io)
{
    (void)io;
}

static void op_set_timer(void *io, xpb_session_timer t, unsigned ms)
{
    xpb_loop_session *ls = io;
    ls->timers[t] = ms;
}

static void op_event(void *io, const xpb_session_event *ev)
{
    xpb_loop_session *ls = io;
    if (ls->l->on_event) ls->l->on_event(ls->l->ud, ls, ev);
}

static uint32_t op_random(void *io)
{
    (void)io;
    return 4; /* chosen by a fair dice roll */
}

static const xpb_session_ops OPS = {
    .connect = op_connect,
    .send = op_send,
    .starttls = op_starttls,
    .disconnect = op_disconnect,
    .set_timer = op_set_timer,
    .event = op_event,
    .random = op_random,
};

/* ---- xpb_loop.h, as the daemon uses it ---------------------------------------------- */

void xpb_loop_set_handlers(xpb_loop *l, xpb_loop_event_cb on_event, xpb_loop_log_cb on_log,
                           void *ud)
{
    l->on_event = on_event;
    l->on_log = on_log;
    l->ud = ud;
}

struct event_base *xpb_loop_base(xpb_loop *l)
{
    (void)l;
    return NULL;
}

void xpb_loop_stop(xpb_loop *l)
{
    l->stopped = 1;
}

int xpb_loop_add_session(xpb_loop *l, const char *name, const xpb_session_config *cfg,
                         const char *ca_file, xpb_loop_session **out, char *err, size_t errlen)
{
    (void)ca_file;
    if (fake_loop_session(l, name)) {
        snprintf(err, errlen, "session %s exists", name);
        return XPB_EINVAL;
    }
    xpb_loop_session *ls = calloc(1, sizeof *ls);
    if (!ls || !(ls->name = strdup(name))) {
        free(ls);
        return XPB_ENOMEM;
    }
    ls->l = l;
    xpb_buf_init(&ls->out, 0);
    int rc = xpb_session_new(&ls->s, cfg, &OPS, ls);
    if (rc) {
        free(ls->name);
        free(ls);
        return rc;
    }
    ls->next = l->sessions;
    l->sessions = ls;
    *out = ls;
    return xpb_session_start(ls->s);
}

void xpb_loop_remove_session(xpb_loop *l, xpb_loop_session *ls)
{
    xpb_loop_session **pp = &l->sessions;
    while (*pp && *pp != ls) pp = &(*pp)->next;
    if (*pp) *pp = ls->next;
    xpb_session_free(ls->s);
    xpb_buf_free(&ls->out);
    free(ls->name);
    free(ls);
}

xpb_session *xpb_loop_session_get(xpb_loop_session *ls)
{
    return ls->s;
}

void xpb_loop_session_set_ud(xpb_loop_session *ls, void *ud)
{
    ls->ud = ud;
}

void *xpb_loop_session_ud(const xpb_loop_session *ls)
{
    return ls->ud;
}

const char *xpb_loop_session_name(const xpb_loop_session *ls)
{
    return ls->name;
}

int xpb_timer_new(xpb_loop *l, xpb_timer_cb cb, void *ud, xpb_timer **out)
{
    for (size_t i = 0; i < FAKE_MAX_TIMERS; i++) {
        if (l->timers[i]) continue;
        xpb_timer *t = calloc(1, sizeof *t);
        if (!t) return XPB_ENOMEM;
        *t = (xpb_timer){l, cb, ud, 0, 0};
        l->timers[i] = *out = t;
        return 0;
    }
    return XPB_ENOMEM;
}

void xpb_timer_start(xpb_timer *t, unsigned ms)
{
    t->armed = 1;
    t->ms = ms;
}

void xpb_timer_stop(xpb_timer *t)
{
    if (t) t->armed = 0;
}

void xpb_timer_free(xpb_timer *t)
{
    if (!t) return;
    for (size_t i = 0; i < FAKE_MAX_TIMERS; i++)
        if (t->l->timers[i] == t) t->l->timers[i] = NULL;
    free(t);
}

int xpb_wake_new(xpb_loop *l, xpb_wake_cb cb, void *ud, xpb_wake **out)
{
    xpb_wake *w = calloc(1, sizeof *w);
    if (!w) return XPB_ENOMEM;
    w->l = l;
    w->cb = cb;
    w->ud = ud;
    w->next = l->wakes;
    l->wakes = w;
    *out = w;
    return 0;
}

void xpb_wake_signal(xpb_wake *w)
{
    atomic_store(&w->signaled, 1); /* any thread; run by fake_loop_fire */
}

void xpb_wake_free(xpb_wake *w)
{
    if (!w) return;
    for (xpb_wake **pp = &w->l->wakes; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    free(w);
}

/* ---- the test's side ------------------------------------------------------------------ */

void fake_loop_set_settle(xpb_loop *l, void (*settle)(void *ud), void *ud)
{
    l->settle = settle;
    l->settle_ud = ud;
}

xpb_loop *fake_loop_new(void)
{
    return calloc(1, sizeof(xpb_loop));
}

void fake_loop_free(xpb_loop *l)
{
    if (!l) return;
    while (l->sessions) xpb_loop_remove_session(l, l->sessions);
    while (l->wakes) xpb_wake_free(l->wakes);
    for (size_t i = 0; i < FAKE_MAX_TIMERS; i++) free(l->timers[i]);
    free(l);
}

int fake_loop_stopped(const xpb_loop *l)
{
    return l->stopped;
}

xpb_loop_session *fake_loop_session(xpb_loop *l, const char *name)
{
    for (xpb_loop_session *ls = l->sessions; ls; ls = ls->next)
        if (strcmp(ls->name, name) == 0) return ls;
    return NULL;
}

size_t fake_loop_n_sessions(const xpb_loop *l)
{
    size_t n = 0;
    for (const xpb_loop_session *ls = l->sessions; ls; ls = ls->next) n++;
    return n;
}

const char *fake_sent(xpb_loop_session *ls)
{
    if (xpb_buf_append(&ls->out, "", 1) != 0) return "";
    ls->out.len--; /* NUL-terminated, not counted */
    return ls->out.data;
}

void fake_clear_sent(xpb_loop_session *ls)
{
    xpb_buf_reset(&ls->out);
}

int fake_connects(xpb_loop_session *ls)
{
    return ls->connects;
}

void fake_feed(xpb_loop_session *ls, const char *xml)
{
    xpb_session_on_bytes(ls->s, xml, strlen(xml));
}

unsigned fake_session_timer(xpb_loop_session *ls, xpb_session_timer t)
{
    return ls->timers[t];
}

int fake_loop_fire(xpb_loop *l, unsigned ms)
{
    if (l->settle) l->settle(l->settle_ud);
    for (xpb_wake *w = l->wakes; w; w = w->next)
        if (atomic_exchange(&w->signaled, 0)) w->cb(w->ud);
    xpb_timer *due[FAKE_MAX_TIMERS];
    size_t n = 0;
    for (size_t i = 0; i < FAKE_MAX_TIMERS; i++)
        if (l->timers[i] && l->timers[i]->armed && l->timers[i]->ms == ms) due[n++] = l->timers[i];
    int fired = 0;
    for (size_t i = 0; i < n; i++) {
        int live = 0; /* an earlier callback may have freed it */
        for (size_t j = 0; j < FAKE_MAX_TIMERS; j++) live |= l->timers[j] == due[i];
        if (!live || !due[i]->armed) continue;
        due[i]->armed = 0;
        due[i]->cb(due[i]->ud);
        fired++;
    }
    return fired;
}

void fake_loop_idle(xpb_loop *l)
{
    for (int i = 0; i < 100 && fake_loop_fire(l, 0) > 0; i++) continue;
}

int fake_loop_armed(const xpb_loop *l, unsigned ms)
{
    int n = 0;
    for (size_t i = 0; i < FAKE_MAX_TIMERS; i++)
        n += l->timers[i] && l->timers[i]->armed && l->timers[i]->ms == ms;
    return n;
}

/* ---- xpb_shards.h: the daemon's tests run with loops = 0 ---------------------------
 * Defined here so that shards.c (and the real loop under it) is never linked
 * in; reaching one of these means a test configured worker loops. */
#include "xpb_shards.h"

static void no_shards(const char *fn)
{
    fprintf(stderr, "fake_loop: %s called: the daemon's tests have no worker loops\n", fn);
    abort();
}

int xpb_shards_new(xpb_shards **out, const xpb_shards_config *cfg, char *err, size_t errlen)
{
    (void)out, (void)cfg;
    snprintf(err, errlen, "no worker loops in the fake loop");
    return XPB_EINVAL;
}
void xpb_shards_free(xpb_shards *sh)
{
    if (sh) no_shards(__func__);
}
unsigned xpb_shards_workers(const xpb_shards *sh)
{
    if (sh) no_shards(__func__);
    return 0;
}
unsigned long long xpb_shards_waits(const xpb_shards *sh)
{
    if (sh) no_shards(__func__);
    return 0;
}
int xpb_shards_add(xpb_shards *sh, const char *name, const xpb_session_config *cfg,
                   const char *ca_file, xpb_shard_session **out)
{
    (void)sh, (void)name, (void)cfg, (void)ca_file, (void)out;
    no_shards(__func__);
    return XPB_EINVAL;
}
void xpb_shards_remove(xpb_shard_session *ss)
{
    (void)ss;
    no_shards(__func__);
}
void xpb_shard_close(xpb_shard_session *ss)
{
    (void)ss;
    no_shards(__func__);
}
void xpb_shard_set_ud(xpb_shard_session *ss, void *ud)
{
    (void)ss, (void)ud;
    no_shards(__func__);
}
void *xpb_shard_ud(const xpb_shard_session *ss)
{
    (void)ss;
    no_shards(__func__);
    return NULL;
}
xpb_session_state xpb_shard_state(const xpb_shard_session *ss)
{
    (void)ss;
    no_shards(__func__);
    return XPB_SS_STOPPED;
}
void xpb_shard_stats(const xpb_shard_session *ss, xpb_session_stats *out)
{
    (void)ss, (void)out;
    no_shards(__func__);
}
int xpb_shard_sm(const xpb_shard_session *ss, xpb_session_sm *out)
{
    (void)ss, (void)out;
    no_shards(__func__);
    return 1;
}
int xpb_shard_send(xpb_shard_session *ss, const xpb_stanza *st, int checked, uint64_t *handle,
                   char *id, size_t idlen, size_t *xml_bytes)
{
    (void)ss, (void)st, (void)checked, (void)handle, (void)id, (void)idlen, (void)xml_bytes;
    no_shards(__func__);
    return XPB_EINVAL;
}
