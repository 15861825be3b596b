/* Inside the codec: moving a tree copied byte for byte (xpb_reader_clone). */
#ifndef XPB_NODE_INTERNAL_H
#define XPB_NODE_INTERNAL_H

#include <stddef.h>

#include "xpb_xml.h"

/* copy holds the bytes of [base, base + len) where n lies (n a tree whose
 * nodes and attribute arrays are all there, and whose strings are there or
 * live for good, as the reader's dictionary and common names do). Sets *out
 * to the copy's n with every pointer into the range moved to the copy, and
 * its next to NULL. XPB_EINVAL when a node or an attribute array lies
 * outside the range (the copy is then unusable: clone another way);
 * XPB_EDEPTH past XPB_NODE_CLONE_MAX_DEPTH. */
int xpb_node_relocate(void *copy, const unsigned char *base, size_t len, const xpb_node *n,
                      xpb_node **out);

#endif
