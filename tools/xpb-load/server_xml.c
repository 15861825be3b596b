/* xpb-load's test server reads the bridge's stream with this splitter, not a
 * parser: it only needs top-level element boundaries of well-formed XML it
 * trusts (RFC 6120 §4.1: a stream is one document; stanzas are its depth-1
 * children). Attribute values are skipped by their quotes. */
#include "load.h"

static int tag_end(lxml *x, size_t pos, size_t *el, size_t *el_len)
{
    if (x->bang) return 0;
    if (x->closing) {
        x->depth--;
        if (x->depth == 1) {
            *el = x->start;
            *el_len = pos + 1 - x->start;
            return 1;
        }
        if (x->depth == 0) {
            *el = x->tag;
            *el_len = pos + 1 - x->tag;
            return 1;
        }
        return 0;
    }
    if (x->prev == '/') { /* an empty-element tag: depth does not change */
        if (x->depth != 1) return 0;
        *el = x->tag;
        *el_len = pos + 1 - x->tag;
        return 1;
    }
    x->depth++;
    if (x->depth == 2) x->start = x->tag;
    if (x->depth != 1) return 0;
    *el = x->tag; /* the stream header */
    *el_len = pos + 1 - x->tag;
    return 1;
}

static void tag_first(lxml *x, char c)
{
    x->fresh = 0;
    x->closing = c == '/';
    x->bang = c == '?' || c == '!';
}

int lxml_next(lxml *x, const char *buf, size_t len, size_t *pos, size_t *el, size_t *el_len)
{
    for (; *pos < len; (*pos)++) {
        char c = buf[*pos];
        if (!x->in_tag) {
            if (c == '<') {
                x->in_tag = 1;
                x->fresh = 1;
                x->prev = 0;
                x->tag = *pos;
            }
            continue;
        }
        if (x->fresh) tag_first(x, c);
        if (x->quote) {
            if (c == x->quote) x->quote = 0;
        } else if (c == '\'' || c == '"') {
            x->quote = c;
        } else if (c == '>') {
            x->in_tag = 0;
            if (tag_end(x, (*pos)++, el, el_len)) return 1;
            (*pos)--;
        }
        x->prev = c;
    }
    return 0;
}

size_t lxml_keep(const lxml *x, size_t pos)
{
    if (x->depth >= 2) return x->start;
    return x->in_tag ? x->tag : pos;
}

void lxml_shift(lxml *x, size_t n)
{
    x->start = x->start >= n ? x->start - n : 0;
    x->tag = x->tag >= n ? x->tag - n : 0;
}
