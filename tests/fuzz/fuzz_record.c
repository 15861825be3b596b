/* libFuzzer target: untrusted record bytes -> xpb_stanza_unpack -> XML. Any
 * record the checks accept must become exactly one well-formed stanza that our
 * own reader takes back without complaint (no markup injection, no bad names). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "xpb_error.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"

static int on_stanza(void *ud, const xpb_node *st)
{
    (void)st;
    (*(int *)ud)++;
    return 0;
}

static void reparse(const xpb_buf *xml)
{
    int stanzas = 0;
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    xpb_reader *r = NULL;
    if (xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, &stanzas) != 0) abort();
    int rc = xpb_reader_feed(r, xml->data, xml->len);
    if (rc != 0 || stanzas != 1) {
        fprintf(stderr, "reader: rc %d (%s), %d stanzas, on:\n%.*s\n", rc, xpb_reader_error(r),
                stanzas, (int)xml->len, xml->data);
        abort();
    }
    xpb_reader_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xpb_arena *a = xpb_arena_new(0);
    if (a == NULL) return 0;
    xpb_stanza *st = NULL;
    char err[256];
    if (xpb_stanza_unpack(a, data, size, NULL, &st, err, sizeof err) == 0) {
        xpb_buf xml;
        xpb_buf_init(&xml, 0);
        if (xpb_stanza_to_xml(&xml, st, "", NULL, err, sizeof err) == 0) reparse(&xml);
        xpb_buf_free(&xml);
    }
    xpb_arena_free(a);
    return 0;
}
