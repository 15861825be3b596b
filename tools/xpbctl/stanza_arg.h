/* A stanza given on xpbctl's command line as XML, checked like the bridge
 * checks records before it sends them. */
#ifndef XPBCTL_STANZA_ARG_H
#define XPBCTL_STANZA_ARG_H

#include <stddef.h>

#include "xpb_stanza.h"

/* Exactly one stanza in xml[0..len) (no xmlns means jabber:client), mapped
 * into arena a and checked with xpb_stanza_check. 0, or XPBCTL_EXIT_FAIL
 * with "xpbctl: CMD: stanza refused: REASON" printed. */
int ctl_stanza_from_text(const char *cmd, xpb_arena *a, const char *xml, size_t len,
                         xpb_stanza **out);

#endif
