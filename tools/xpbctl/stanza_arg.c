/* XML from the command line to a checked record (stanza_arg.h). */
#include <stdio.h>

#include "stanza_arg.h"
#include "xpb_error.h"
#include "xpb_xml.h"
#include "xpbctl.h"

typedef struct xml_parse {
    xpb_arena *arena;
    xpb_stanza *st;
    int count, rc;
} xml_parse;

static int on_stanza(void *ud, const xpb_node *el)
{
    xml_parse *p = ud;
    if (p->count++ == 0) p->rc = xpb_stanza_from_xml(p->arena, el, &p->st);
    return 0;
}

/* Reads with the reader in FRAGMENTS mode; err gets the reason on failure. */
static int parse_one(xml_parse *p, const char *xml, size_t len, char *err, size_t errlen)
{
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    xpb_reader *r = NULL;
    int rc = xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, p);
    if (!rc) rc = xpb_reader_feed(r, xml, len);
    if (rc)
        snprintf(err, errlen, "%s",
                 r && xpb_reader_error(r)[0] ? xpb_reader_error(r) : xpb_strerror(rc));
    xpb_reader_free(r);
    if (!rc && p->rc) snprintf(err, errlen, "%s", xpb_strerror(rc = p->rc));
    if (!rc && p->count != 1) {
        snprintf(err, errlen, "%s", p->count ? "more than one stanza" : "no complete element");
        rc = XPB_EINVAL;
    }
    return rc;
}

int ctl_stanza_from_text(const char *cmd, xpb_arena *a, const char *xml, size_t len,
                         xpb_stanza **out)
{
    xml_parse p = {.arena = a};
    char err[512] = "";
    int rc = parse_one(&p, xml, len, err, sizeof(err));
    if (!rc) rc = xpb_stanza_check(p.st, NULL, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "xpbctl: %s: stanza refused: %s\n", cmd, err[0] ? err : xpb_strerror(rc));
        return XPBCTL_EXIT_FAIL;
    }
    *out = p.st;
    return 0;
}
