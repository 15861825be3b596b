/* xpbctl's output helpers: JSON of any record, bridge-supplied text made safe
 * for a terminal, table columns and enum values as short words. */
#ifndef XPBCTL_OUTPUT_H
#define XPBCTL_OUTPUT_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/* m as one JSON line on standard output; 0 or XPBCTL_EXIT_FAIL (printed). */
int ctl_print_json(const ProtobufCMessage *m);

/* Writes at most max bytes of s (NULL: "-"), never cutting a UTF-8 sequence,
 * with control characters as spaces so bridge data cannot drive the terminal. */
void ctl_put_clean(const char *s, size_t max);

/* A table column: the cleaned text, then spaces up to width (bytes). */
void ctl_put_col(const char *s, size_t width);

/* An enum value's name without its prefix, lowercased, '_' as '-': the XML
 * spelling for conditions (RFC 6120 §8.3.3), short words for the rest. */
const char *ctl_enum_short(const ProtobufCEnumDescriptor *d, int v, const char *prefix, char *out,
                           size_t outlen);

#endif
