/* libFuzzer target for the stream reader: the first byte picks mode, limits
 * and chunk size; the rest is fed in those chunks and every delivered tree is
 * walked (all strings touched, invariants checked). Must never crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_xml.h"

typedef struct fuzz_ctx {
    xpb_reader *r;
    unsigned sum;
} fuzz_ctx;

static void touch(fuzz_ctx *f, const char *s, size_t len)
{
    if (strlen(s) != len) abort(); /* text carries its length and no NUL */
    for (size_t i = 0; i < len; i++)
        f->sum += (unsigned char)s[i];
}

static void walk(fuzz_ctx *f, const xpb_node *n, unsigned depth)
{
    for (; n; n = n->next) {
        if (n->kind == XPB_NODE_TEXT) {
            if (n->text_len == 0) abort(); /* no empty text nodes */
            touch(f, n->text, n->text_len);
            if (n->next && n->next->kind == XPB_NODE_TEXT) abort(); /* merged */
            continue;
        }
        if (n->kind != XPB_NODE_ELEMENT || depth > 64) abort();
        touch(f, n->ns, strlen(n->ns));
        touch(f, n->name, strlen(n->name));
        for (size_t i = 0; i < n->n_attrs; i++) {
            const xpb_attr *a = &n->attrs[i];
            touch(f, a->ns, strlen(a->ns));
            touch(f, a->name, strlen(a->name));
            touch(f, a->value, a->value_len);
            if (xpb_node_attr(n, a->ns, a->name) == NULL) abort();
        }
        if (n->children && n->children->kind == XPB_NODE_ELEMENT &&
            xpb_node_child(n, n->children->ns, n->children->name) == NULL)
            abort();
        walk(f, n->children, depth + 1);
    }
}

static int on_open(void *ud, const xpb_node *h)
{
    fuzz_ctx *f = ud;
    if (h->children) abort();
    walk(f, h, 0);
    return 0;
}

static int on_stanza(void *ud, const xpb_node *s)
{
    fuzz_ctx *f = ud;
    walk(f, s, 0);
    /* Exercise a reset from inside a callback (as after SASL success). */
    if (strcmp(s->name, "success") == 0) xpb_reader_reset(f->r);
    return strcmp(s->name, "stop") == 0;
}

static void on_close(void *ud)
{
    fuzz_ctx *f = ud;
    f->sum++;
}

static const xpb_reader_mode MODES[4] = {XPB_READER_STREAM, XPB_READER_FRAGMENTS, XPB_READER_AUTO,
                                         XPB_READER_AUTO};

/* bits 0-1 mode; bits 2-6 chunk size (0 = all at once, 1..15 bytes, then
 * multiples of 512); bit 7 small limits so the limit paths are reachable. */
static size_t chunk_size(uint8_t b, size_t size)
{
    unsigned v = (b >> 2) & 31u;
    if (v == 0) return size ? size : 1;
    return v < 16 ? v : (v - 15) * 512u;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One pass over the input; with park, the reader is parked after every
 * chunk it allows it for. Returns the feed's result; *sum and msg describe
 * everything it delivered and refused. */
static int run(uint8_t b, const char *in, size_t n, int park, unsigned *sum, char *msg,
               size_t msg_len)
{
    size_t step = chunk_size(b, n);
    xpb_reader_limits small = {10000, 4, 3};
    xpb_reader_callbacks cb = {on_open, on_stanza, on_close};
    fuzz_ctx f = {0};
    if (xpb_reader_new(&f.r, MODES[b & 3], (b & 0x80) ? &small : NULL, &cb, &f) != 0) abort();
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0; off += step) {
        rc = xpb_reader_feed(f.r, in + off, n - off < step ? n - off : step);
        if (park && rc == 0) (void)xpb_reader_park(f.r);
    }
    snprintf(msg, msg_len, "%s", xpb_reader_error(f.r));
    int first = rc;
    if (rc != 0) {
        if (xpb_reader_error(f.r)[0] == '\0') abort();      /* every refusal explains itself */
        if (xpb_reader_feed(f.r, "<a/>", 4) != rc) abort(); /* sticky */
        if (xpb_reader_reset(f.r) != 0) abort();
        (void)xpb_reader_feed(f.r, in, n);
    }
    if (xpb_reader_offset(f.r) > n) abort();
    xpb_reader_free(f.r);
    *sum = f.sum;
    return first;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t b = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    unsigned sum0 = 0, sum1 = 0;
    char msg0[256], msg1[256];
    int rc0 = run(b, in, n, 0, &sum0, msg0, sizeof msg0);
    /* Parking between chunks must change nothing: what is delivered, what is
     * refused, and the byte offset the refusal names. */
    int rc1 = run(b, in, n, 1, &sum1, msg1, sizeof msg1);
    if (rc0 != rc1 || sum0 != sum1 || strcmp(msg0, msg1) != 0) abort();
    return 0;
}
