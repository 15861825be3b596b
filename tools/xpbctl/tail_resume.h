/* `xpbctl tail --resume-file`: replay from the bridge's journal and the file
 * that remembers how far a reader got (tail_resume.c). */
#ifndef XPBCTL_TAIL_RESUME_H
#define XPBCTL_TAIL_RESUME_H

#include <stdbool.h>
#include <stdint.h>

#include "bus_client.h"
#include "xpb_arena.h"

#define TAIL_REPLAY_PAGE 1000u /* events asked per Replay request */
/* Quiet this long after an event: ask the journal once whether PUB dropped
 * the last events of a burst (no later event would show that hole). */
#define TAIL_IDLE_CHECK_MS 1000u

typedef struct tail_resume {
    const char *path;   /* NULL: nothing is saved (--from-seq alone) */
    char journal_id[65]; /* of the events delivered; "" when unknown */
    uint64_t last;       /* the last seq delivered; 0: none yet */
    int dirty;
    uint64_t journal_last; /* the journal's newest seq, from the last replay page */
    unsigned long long requests; /* Replay requests made: numbers their request ids */
    bool hold; /* a hole whose replay got no reply is not skipped (an archive) */
    /* NULL: replay pages are unpacked with malloc. Set (xpb-archive run):
     * each page is checked on the wire (depth, no NUL in any string) and
     * unpacked into this arena, reset once its events are delivered; the
     * deliver function may then change the events it gets. */
    xpb_arena *arena;
} tail_resume;

/* Reads "JOURNAL_ID SEQ" from path (a missing file is a first run); from_seq,
 * when not 0, wins over the file. 0, or -1 with the reason printed. */
int tail_resume_load(tail_resume *r, const char *path, uint64_t from_seq);
/* Writes the file atomically (a temporary file, fsync, rename). 0 or -1. */
int tail_resume_save(const tail_resume *r);
/* A batch's or page's journal id: another journal restarts from its start. */
void tail_resume_journal(tail_resume *r, const char *id);

/* Prints one event; returns non-zero to stop (--count reached). */
typedef int (*tail_deliver_fn)(void *ud, const Xpb__V1__Event *ev);
/* Replays the journal from r->last + 1 (below before, when not 0), page by
 * page, delivering the events whose topic starts with one of prefixes (all
 * when n is 0) and moving r->last. Returns an exit status. */
int tail_replay(ctl *c, tail_resume *r, const char *const *prefixes, size_t n, uint64_t before,
                tail_deliver_fn deliver, void *ud, int *stopped);

/* Live following with a resume point: ev = b->event[i] as SUB delivered it.
 * An event at or below r->last was delivered already and is skipped; a hole
 * before it (by seq when n is 0, by the batch's prev_seq on its topic
 * otherwise) is replayed from the journal first. Moves r->last, then
 * delivers. Returns non-zero when deliver says to stop, or (with r->hold)
 * when the replay of a hole got no reply: ev is then not delivered and
 * r->last stays, so the hole is tried again with the next event. */
int tail_resume_live(ctl *c, tail_resume *r, const char *const *prefixes, size_t n,
                     const Xpb__V1__EventBatch *b, size_t i, tail_deliver_fn deliver, void *ud);

/* One NNG message of the event socket: topic, NUL, EventBatch. The batch
 * (free with xpb__v1__event_batch__free_unpacked) and the topic's length,
 * or NULL with the reason printed. The depth is checked before unpacking. */
Xpb__V1__EventBatch *tail_batch_decode(const ctl *c, const uint8_t *data, size_t len,
                                       size_t *topic_len);
/* The same unpacked into arena a (nothing to free: a's reset does it), after
 * the wire walk that bounds the depth and refuses a NUL in any string
 * (xpb_pb_check_wire_nul): the events are then the caller's to change. a
 * must hold nothing else: it is reset when protobuf-c gives up half way. */
Xpb__V1__EventBatch *tail_batch_decode_in(const ctl *c, xpb_arena *a, const uint8_t *data,
                                          size_t len, size_t *topic_len);

#endif
