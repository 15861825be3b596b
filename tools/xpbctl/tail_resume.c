/* `xpbctl tail --resume-file`/`--from-seq` (docs/bus.md, "Replay and
 * resume"): the last seq delivered is kept in a file (written atomically);
 * at start tail replays from the journal what came after it, then follows
 * live; when the live stream shows a gap it replays the missing range. So a
 * reader sees every event once, in order, across its own restarts, the
 * bridge's and slow reads, as long as the journal keeps them. */
#define _POSIX_C_SOURCE 200809L
#include "tail_resume.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xpb_bus_wire.h"
#include "xpb_stanza.h"

int tail_resume_load(tail_resume *r, const char *path, uint64_t from_seq)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    if (from_seq) r->last = from_seq - 1;
    if (!path) return 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT) return 0; /* a first run: from the journal's start */
        fprintf(stderr, "%s: tail: --resume-file %s: %s\n", xpbctl_prog, path, strerror(errno));
        return -1;
    }
    char id[sizeof r->journal_id];
    unsigned long long seq;
    int n = fscanf(f, "%64s %llu", id, &seq);
    fclose(f);
    if (n != 2) {
        fprintf(stderr, "%s: tail: --resume-file %s: not \"JOURNAL_ID SEQ\"\n", xpbctl_prog, path);
        return -1;
    }
    memcpy(r->journal_id, id, sizeof id);
    if (!from_seq) r->last = seq;
    return 0;
}

int tail_resume_save(const tail_resume *r)
{
    if (!r->path || !r->dirty) return 0;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", r->path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s %" PRIu64 "\n", r->journal_id[0] ? r->journal_id : "-", r->last) < 0 ||
        fflush(f) || fsync(fileno(f)) || fclose(f) || rename(tmp, r->path)) {
        fprintf(stderr, "%s: tail: --resume-file %s: %s\n", xpbctl_prog, r->path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The journal id a batch or page carries: a different one than the file's
 * means another journal (the bridge's state directory was replaced). */
void tail_resume_journal(tail_resume *r, const char *id)
{
    if (!id || !id[0] || strcmp(id, r->journal_id) == 0) return;
    if (r->journal_id[0] && strcmp(r->journal_id, "-") != 0) {
        fprintf(stderr,
                "%s: the bridge's journal changed (%s, was %s): its seqs start over; "
                "replaying it from the start\n",
                xpbctl_prog, id, r->journal_id);
        r->last = 0;
    }
    snprintf(r->journal_id, sizeof r->journal_id, "%s", id);
    r->dirty = 1;
}

/* Whether the event's topic "KIND/ACCOUNT/" starts with one of prefixes. */
static int wanted(const Xpb__V1__Event *ev, const char *const *prefixes, size_t n)
{
    if (n == 0) return 1;
    char topic[2100];
    snprintf(topic, sizeof topic, "%s/%s/", xpb_bus_event_kind(ev), ev->account ? ev->account : "");
    for (size_t i = 0; i < n; i++)
        if (strncmp(topic, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

typedef struct replay_run {
    tail_resume *r;
    const char *const *prefixes;
    size_t n;
    uint64_t before; /* replay events below this seq only; 0: no bound */
    tail_deliver_fn deliver;
    void *ud;
    uint64_t next, last_seq;
    uint32_t count;
    int stop;
} replay_run;

/* EventBatch > Event > Delivery > Stanza: three wire levels above a
 * record's own bound (two per record level and a trailing Node). */
#define TAIL_BATCH_WIRE_DEPTH (2u * XPB_RECORD_DEFAULT_MAX_DEPTH + 1u + 3u)

static Xpb__V1__EventBatch *batch_in(xpb_arena *a, const uint8_t *data, size_t len)
{
    if (xpb_pb_check_wire_nul(&xpb__v1__event_batch__descriptor, data, len,
                              TAIL_BATCH_WIRE_DEPTH, NULL, 0))
        return NULL;
    Xpb__V1__EventBatch *b = xpb__v1__event_batch__unpack(xpb_arena_pb_allocator(a), len, data);
    /* What protobuf-c allocated before giving up, it "freed": a no-op here. */
    if (!b) xpb_arena_reset(a);
    return b;
}

static int on_page(ctl *c, const Xpb__V1__Response *resp)
{
    replay_run *run = c->ud;
    const Xpb__V1__ReplayPage *pg = resp->replay;
    if (resp->result_case != XPB__V1__RESPONSE__RESULT_REPLAY || !pg) return ctl_missing_result(c);
    tail_resume_journal(run->r, pg->journal_id);
    run->next = pg->next_seq;
    run->last_seq = pg->last_seq;
    run->r->journal_last = pg->last_seq;
    run->count = pg->count;
    Xpb__V1__EventBatch *b =
        run->r->arena ? batch_in(run->r->arena, pg->batch.data, pg->batch.len)
                      : xpb__v1__event_batch__unpack(NULL, pg->batch.len, pg->batch.data);
    if (!b) {
        fprintf(stderr, "%s: %s: undecodable replay page (%zu bytes)\n", xpbctl_prog, c->cmd,
                pg->batch.len);
        return XPBCTL_EXIT_FAIL;
    }
    for (size_t i = 0; i < b->n_event && !run->stop; i++) {
        const Xpb__V1__Event *ev = b->event[i];
        if (run->before && ev->seq >= run->before) break;
        if (ev->seq <= run->r->last || !wanted(ev, run->prefixes, run->n)) continue;
        run->stop = run->deliver(run->ud, ev);
        run->r->last = ev->seq;
        run->r->dirty = 1;
    }
    if (run->r->arena)
        xpb_arena_reset(run->r->arena);
    else
        xpb__v1__event_batch__free_unpacked(b, NULL);
    return 0;
}

int tail_replay(ctl *c, tail_resume *r, const char *const *prefixes, size_t n, uint64_t before,
                tail_deliver_fn deliver, void *ud, int *stopped)
{
    /* On the heap: the reply printer reaches it through c->ud. */
    replay_run *run = calloc(1, sizeof *run);
    if (!run) return XPBCTL_EXIT_FAIL;
    *run = (replay_run){r, prefixes, n, before, deliver, ud, 0, 0, 0, 0};
    char base[sizeof c->request_id];
    memcpy(base, c->request_id, sizeof base);
    c->ud = run;
    int rc = 0;
    while (!rc && !run->stop) {
        Xpb__V1__Replay op = XPB__V1__REPLAY__INIT;
        op.has_from_seq = op.has_max_events = 1;
        op.from_seq = r->last + 1;
        op.max_events = TAIL_REPLAY_PAGE;
        op.topic_prefix = n == 1 ? (char *)prefixes[0] : NULL;
        Xpb__V1__Request req = XPB__V1__REQUEST__INIT;
        req.op_case = XPB__V1__REQUEST__OP_REPLAY;
        req.replay = &op;
        /* Each page is its own request, across every replay of this run (the
         * first one and each gap's): the bridge answers a repeated id from its
         * cache, which would hand back an old page. */
        snprintf(c->request_id, sizeof c->request_id, "%.100s-r%llu", base, ++r->requests);
        rc = ctl_request(c, &req, on_page);
        if (!rc && run->next > r->last + 1 && run->count == 0) r->last = run->next - 1;
        if (run->count == 0 || run->next > run->last_seq || (before && run->next >= before)) break;
    }
    memcpy(c->request_id, base, sizeof base);
    c->ud = NULL;
    *stopped = run->stop;
    free(run);
    return rc;
}

int tail_resume_live(ctl *c, tail_resume *r, const char *const *prefixes, size_t n,
                     const Xpb__V1__EventBatch *b, size_t i, tail_deliver_fn deliver, void *ud)
{
    const Xpb__V1__Event *ev = b->event[i];
    if (ev->seq <= r->last) return 0;
    int hole = n == 0 ? ev->seq > r->last + 1 : i == 0 && b->has_prev_seq && b->prev_seq > r->last;
    int stopped = 0;
    if (hole && r->last) {
        int rc = tail_replay(c, r, prefixes, n, ev->seq, deliver, ud, &stopped);
        if (stopped || (rc == XPBCTL_EXIT_NOREPLY && r->hold)) return 1;
    }
    r->last = ev->seq;
    r->dirty = 1;
    return deliver(ud, ev);
}

Xpb__V1__EventBatch *tail_batch_decode(const ctl *c, const uint8_t *data, size_t len,
                                       size_t *topic_len)
{
    const uint8_t *nul = memchr(data, 0, len);
    size_t off = nul ? (size_t)(nul - data) + 1 : 0;
    Xpb__V1__EventBatch *b = NULL;
    /* Batch and Event wrap the Stanza: two more levels than a record. */
    if (!nul ||
        xpb_pb_check_depth(&xpb__v1__event_batch__descriptor, data + off, len - off,
                           XPB_RECORD_DEFAULT_MAX_DEPTH + 2) ||
        !(b = xpb__v1__event_batch__unpack(NULL, len - off, data + off))) {
        fprintf(stderr, "%s: %s: undecodable event message (%zu bytes)\n", xpbctl_prog, c->cmd,
                len);
        return NULL;
    }
    *topic_len = off - 1;
    return b;
}

Xpb__V1__EventBatch *tail_batch_decode_in(const ctl *c, xpb_arena *a, const uint8_t *data,
                                          size_t len, size_t *topic_len)
{
    const uint8_t *nul = memchr(data, 0, len);
    size_t off = nul ? (size_t)(nul - data) + 1 : 0;
    Xpb__V1__EventBatch *b = nul ? batch_in(a, data + off, len - off) : NULL;
    if (!b) {
        fprintf(stderr,
                "%s: %s: undecodable event message (%zu bytes; or nested too deep, or a NUL "
                "in a string)\n",
                xpbctl_prog, c->cmd, len);
        return NULL;
    }
    *topic_len = off - 1;
    return b;
}
