/* Sends through a worker loop (xpb_shards.h, xpb_shard_send): accepted on
 * the owner's thread, queued by the session on the worker's. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "shards_internal.h"
#include "xpb_error.h"
#include "xpb_stanza.h"

/* ---- sends, owner -> worker ----------------------------------------------------------
 * A send is accepted on the owner's thread (xpb_shard_send) and its XML
 * written straight into the worker's open send batch: one buffer of entries,
 * each a header and the stanza's bytes. The batch is posted after the
 * owner's turn (send_flush), at its SEND_POST_ENTRIES-th entry, or before
 * any other command to that worker, so a session's commands keep their
 * order. A post per send cost a malloc, a mailbox lock and a wake per
 * stanza (docs/architecture.md, "Several loops"). */

typedef struct send_ent {
    xpb_shard_session *ss;
    uint64_t handle;
    size_t len;    /* of the XML after the header */
    int holds_ref; /* the first of a run of ss's sends holds one for the run */
} send_ent;

typedef struct send_batch {
    struct worker *w;
    xpb_buf buf; /* send_ent, XML, padding to SEND_ALIGN; again */
    unsigned n;
    xpb_shard_session *last; /* owner side: the last entry's session */
} send_batch;

#define SEND_ALIGN 8u
#define SEND_POST_ENTRIES 64u
#define SEND_BATCH_KEEP (256u * 1024u) /* a larger buffer is not kept for reuse */

static size_t send_pad(size_t n)
{
    return (n + SEND_ALIGN - 1) & ~(size_t)(SEND_ALIGN - 1);
}

static void send_batch_free(send_batch *b)
{
    if (!b) return;
    xpb_buf_free(&b->buf);
    free(b);
}

/* On the worker's thread (or at the end): the batch back to its worker for
 * reuse, or freed when one is already there or it grew large. */
static void send_batch_return(send_batch *b)
{
    if (b->buf.cap > SEND_BATCH_KEEP) {
        send_batch_free(b);
        return;
    }
    xpb_buf_reset(&b->buf);
    b->n = 0;
    b->last = NULL;
    send_batch_free(atomic_exchange(&b->w->spare_sends, b));
}

/* Runs fn on every entry, then drops the runs' references. */
static void send_batch_each(send_batch *b, void (*fn)(send_ent *e, const char *xml))
{
    for (size_t at = 0; at < b->buf.len;) {
        send_ent *e = (send_ent *)(void *)(b->buf.data + at);
        fn(e, b->buf.data + at + sizeof *e);
        at += send_pad(sizeof *e + e->len);
    }
    for (size_t at = 0; at < b->buf.len;) {
        send_ent *e = (send_ent *)(void *)(b->buf.data + at);
        at += send_pad(sizeof *e + e->len);
        if (e->holds_ref) shards_unref(e->ss);
    }
}

static void worker_send_one(send_ent *c, const char *xml)
{
    xpb_shard_session *ss = c->ss;
    atomic_fetch_sub(&ss->on_way, 1);
    int rc = ss->ls ? xpb_session_send_xml(xpb_loop_session_get(ss->ls), xml, c->len, c->handle)
                    : XPB_ENOTCONN;
    if (rc != 0) { /* accepted by the owner already: the refusal is this handle's failure */
        char why[160];
        snprintf(why, sizeof why, "not queued by the session on worker %u: %s", ss->wi,
                 xpb_strerror(rc));
        xpb_session_event ev = {
            .kind = XPB_SE_FAILED, .handle = c->handle, .reason = why, .code = rc};
        shards_worker_event(&ss->sh->w[ss->wi], ss, &ev,
                            ss->ls ? xpb_loop_session_get(ss->ls) : NULL);
    }
}

static void dropped_one(send_ent *c, const char *xml)
{
    (void)xml;
    atomic_fetch_sub(&c->ss->on_way, 1);
}

static void worker_sends(void *arg)
{
    send_batch_each(arg, worker_send_one);
    send_batch_return(arg);
}

static void sends_dropped(void *arg)
{
    send_batch_each(arg, dropped_one);
    send_batch_return(arg);
}

/* On the owner's thread: w's open send batch to w. */
static void post_sends(struct worker *w)
{
    send_batch *b = w->sends;
    if (!b) return;
    w->sends = NULL;
    xpb_mailbox_post_wait(xpb_loop_thread_mailbox(w->thread), worker_sends, sends_dropped, b);
}

void shards_on_send_flush(void *ud)
{
    xpb_shards *sh = ud;
    for (unsigned i = 0; i < sh->n; i++)
        post_sends(&sh->w[i]);
}

/* A command the worker must get: a full mailbox is waited out. The sends
 * accepted before it go first. */
int shards_post_cmd(xpb_shard_session *ss, xpb_mail_fn run, xpb_mail_fn drop, void *arg)
{
    struct worker *w = &ss->sh->w[ss->wi];
    post_sends(w);
    return xpb_mailbox_post_wait(xpb_loop_thread_mailbox(w->thread), run, drop, arg);
}

/* w's open send batch, made (or taken back from the worker) at its first entry. */
static send_batch *open_sends(xpb_shards *sh, struct worker *w)
{
    if (w->sends) return w->sends;
    send_batch *b = atomic_exchange(&w->spare_sends, NULL);
    if (!b) {
        if (!(b = calloc(1, sizeof *b))) return NULL;
        b->w = w;
        xpb_buf_init(&b->buf, 0);
    }
    w->sends = b;
    xpb_wake_signal(sh->send_flush);
    return b;
}

/* A random word from the kernel, 64 per getrandom call: a call per send was
 * a system call on the owner's path of every stanza sent without an id. */
static uint32_t id_random(xpb_shards *sh, const void *salt)
{
    if (sh->id_rand_left == 0) {
        if (getrandom(sh->id_rand, sizeof sh->id_rand, 0) != (ssize_t)sizeof sh->id_rand)
            return (uint32_t)(uintptr_t)salt; /* not expected; the counter keeps ids apart */
        sh->id_rand_left = sizeof sh->id_rand / sizeof sh->id_rand[0];
    }
    return sh->id_rand[--sh->id_rand_left];
}

/* The session's id form (xpb_session_format_id), from the kernel's randomness. */
static void make_id(xpb_shard_session *ss, char *out, size_t len)
{
    uint32_t r0 = id_random(ss->sh, out), r1 = id_random(ss->sh, ss);
    xpb_session_format_id(out, len, r0, r1, ++ss->id_counter);
}

int xpb_shard_send(xpb_shard_session *ss, const xpb_stanza *st, int checked, uint64_t *handle,
                   char *id, size_t idlen, size_t *xml_bytes)
{
    char own[XPB_SESSION_ID_MAX];
    if (!ss || !st || !handle) return XPB_EINVAL;
    if (!id || idlen == 0) { /* the caller does not want it */
        id = own;
        idlen = sizeof own;
    }
    if (ss->removed || ss->state == XPB_SS_STOPPED || ss->state == XPB_SS_CLOSING)
        return XPB_ENOTCONN;
    /* The session's own bounds, on its queue as of now plus what is on its
     * way to it: a refusal here is an ERR_QUEUE_FULL, as with loops = 0. */
    size_t on_way = atomic_load(&ss->on_way);
    size_t queued = atomic_load_explicit(&ss->live.queued, memory_order_relaxed);
    size_t unacked = atomic_load_explicit(&ss->live.unacked, memory_order_relaxed);
    if (queued + on_way >= ss->queue_max ||
        unacked >= (size_t)ss->queue_max * XPB_SESSION_UNACKED_FACTOR)
        return XPB_EQUEUEFULL;
    xpb_stanza copy = *st; /* shallow: only the id may differ */
    if (st->id && st->id[0]) {
        snprintf(id, idlen, "%s", st->id);
    } else {
        make_id(ss, id, idlen);
        copy.id = id;
    }
    xpb_record_limits lim = {.max_string = ss->max_stanza_bytes,
                             .max_stanza_bytes = ss->max_stanza_bytes};
    struct worker *w = &ss->sh->w[ss->wi];
    send_batch *b = open_sends(ss->sh, w);
    if (!b) return XPB_ENOMEM;
    /* The entry's header, then the XML written after it in place. */
    size_t at = b->buf.len;
    send_ent head = {.ss = ss};
    int rc = xpb_buf_append(&b->buf, &head, sizeof head);
    if (rc == 0)
        rc = checked ? xpb_stanza_to_xml_prechecked(&b->buf, &copy, ss->stream_ns, &lim, NULL, 0)
                     : xpb_stanza_to_xml(&b->buf, &copy, ss->stream_ns, &lim, NULL, 0);
    size_t len = b->buf.len - at - sizeof head;
    static const char zeros[SEND_ALIGN];
    if (rc == 0)
        rc = xpb_buf_append(&b->buf, zeros, send_pad(sizeof head + len) - sizeof head - len);
    if (rc != 0) {
        b->buf.len = at;
        return rc;
    }
    send_ent *e = (send_ent *)(void *)(b->buf.data + at);
    e->handle = ++ss->next_handle;
    e->len = len;
    if (b->last != ss) {
        e->holds_ref = 1;
        atomic_fetch_add(&ss->refs, 1);
        b->last = ss;
    }
    *handle = e->handle;
    if (xml_bytes) *xml_bytes = len;
    atomic_fetch_add(&ss->on_way, 1);
    if (++b->n >= SEND_POST_ENTRIES) post_sends(w);
    return 0;
}

void shards_drop_unposted_sends(xpb_shards *sh)
{
    for (unsigned i = 0; i < sh->n; i++) {
        send_batch *b = sh->w[i].sends;
        sh->w[i].sends = NULL;
        if (b) sends_dropped(b);
    }
}

void shards_free_send_spares(struct worker *w)
{
    send_batch_free(atomic_exchange(&w->spare_sends, NULL));
}
