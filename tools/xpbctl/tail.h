/* `xpbctl tail`'s parts: the command (cmd_tail.c) reads the SUB socket,
 * tail_format.c prints events for a person, tail_gaps.c detects lost ones. */
#ifndef XPBCTL_TAIL_H
#define XPBCTL_TAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xpb/v1/bus.pb-c.h"

/* "#SEQ TIME ACCOUNT KIND ..." and a newline; with sizes, the stanza's
 * record size against its size as XML. */
void tail_print_event(const Xpb__V1__Event *ev, bool sizes);

typedef struct tail_gaps tail_gaps;
/* filtered: tail subscribed to some topics only, so gaps are judged per
 * topic from prev_seq. NULL when out of memory. */
tail_gaps *tail_gaps_new(bool filtered, bool json);
/* Before a batch's events are printed: topic[0..len) is its NNG topic. */
void tail_gaps_batch(tail_gaps *t, const uint8_t *topic, size_t len, const Xpb__V1__EventBatch *b);
/* Each event, in order. */
void tail_gaps_event(tail_gaps *t, uint64_t seq);
void tail_gaps_free(tail_gaps *t);

#endif
