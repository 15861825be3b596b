/* JSON of an archived row (search --json, export --format json, sql --json). */
#ifndef XPB_ARCHIVE_JSON_H
#define XPB_ARCHIVE_JSON_H

#include "archive.h"
#include "xpb_xml.h"

/* Appends "name": (escaped), after a comma when asked. */
void xa_json_key(xpb_buf *b, const char *name, bool comma);
/* Appends "name":"v" (v escaped; null when NULL), after a comma when asked. */
void xa_json_str(xpb_buf *b, const char *name, const char *v, bool comma);

/* One line on standard output; with_record: the stanza record as JSON too.
 * 0, or -1 when the record cannot be read or written. */
int xa_json_row_full(const xa_row *r, bool with_record);
#define xa_json_row(r) xa_json_row_full((r), false)

#endif
