/* libFuzzer target: untrusted record bytes -> xpb_stanza_unpack -> XML. Any
 * record the checks accept must become exactly one well-formed stanza that our
 * own reader takes back without complaint (no markup injection, no bad names),
 * and xpb_stanza_pack (codec/pack.c) must give protobuf-c's bytes for it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Our packer against protobuf_c_message_pack, byte for byte. */
static void check_pack(const xpb_stanza *st)
{
    size_t n = protobuf_c_message_get_packed_size(&st->base);
    uint8_t *want = malloc(n ? n : 1);
    if (want == NULL) abort();
    size_t want_n = protobuf_c_message_pack(&st->base, want);
    xpb_buf got;
    xpb_buf_init(&got, 0);
    int rc = xpb_stanza_pack(&got, st);
    if (rc != 0 || want_n != n || got.len != n || (n > 0 && memcmp(got.data, want, n) != 0)) {
        fprintf(stderr, "pack: rc %d (%s); protobuf-c %zu bytes (sized %zu), ours %zu\n", rc,
                xpb_strerror(rc), want_n, n, got.len);
        abort();
    }
    xpb_buf_free(&got);
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xpb_arena *a = xpb_arena_new(0);
    if (a == NULL) return 0;
    xpb_stanza *st = NULL;
    char err[256];
    if (xpb_stanza_unpack(a, data, size, NULL, &st, err, sizeof err) == 0) {
        check_pack(st);
        xpb_buf xml;
        xpb_buf_init(&xml, 0);
        if (xpb_stanza_to_xml(&xml, st, "", NULL, err, sizeof err) == 0) reparse(&xml);
        xpb_buf_free(&xml);
    }
    xpb_arena_free(a);
    return 0;
}
