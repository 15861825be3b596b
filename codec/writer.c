/* XML writer: growable output buffer, escaping, namespace-aware element writer,
 * the c2s stream header, and the UTF-8 / XML 1.0 character check for untrusted
 * text. On the record -> XML hot path, so escaping and checking copy safe runs
 * in bulk (8 bytes at a time) and fall back to a table only near special bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "xpb_error.h"
#include "xpb_xml.h"

/* ---- Buffer ------------------------------------------------------------- */

void xpb_buf_init(xpb_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void xpb_buf_free(xpb_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* Keeps the allocation for the next stanza. */
void xpb_buf_reset(xpb_buf *b)
{
    b->len = 0;
}

/* Makes room for extra more bytes; checks the max bound before allocating. */
static int buf_grow(xpb_buf *b, size_t extra);

static inline int buf_reserve(xpb_buf *b, size_t extra)
{
    /* Fast path, taken for nearly every append once the buffer is warm. */
    if (extra <= b->cap - b->len && (b->max == 0 || b->len + extra <= b->max)) return 0;
    return buf_grow(b, extra);
}

static int buf_grow(xpb_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len) return XPB_ETOOBIG;
    size_t need = b->len + extra;
    if (b->max != 0 && need > b->max) return XPB_ETOOBIG;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->max != 0 && cap > b->max) cap = b->max;
    char *p = realloc(b->data, cap);
    if (p == NULL) return XPB_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

/* The append every writer function uses; inlined on the hot path. */
static inline int buf_put(xpb_buf *b, const void *data, size_t len)
{
    if (len == 0) return 0;
    int rc = buf_reserve(b, len);
    if (rc != 0) return rc;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int xpb_buf_append(xpb_buf *b, const void *data, size_t len)
{
    return buf_put(b, data, len);
}

int xpb_buf_make_room(xpb_buf *b, size_t extra)
{
    return buf_reserve(b, extra);
}

int xpb_buf_append_str(xpb_buf *b, const char *s)
{
    return buf_put(b, s, strlen(s));
}

/* ---- Escaping ------------------------------------------------------------
 * Text: & < > (> too, so "]]>" never appears, XML 1.0 §2.4) and CR as &#13;,
 * because end-of-line handling (XML 1.0 §2.11) turns a literal CR into LF. Attributes
 * (single-quoted): & < > " ' and TAB/LF/CR as character references, because
 * attribute-value normalisation (XML 1.0 §3.3.3) turns literal ones into
 * spaces. */

enum { ESC_TEXT = 1, ESC_ATTR = 2 };

static const unsigned char esc_class[256] = {
    ['\t'] = ESC_ATTR, ['\n'] = ESC_ATTR, ['\r'] = ESC_TEXT | ESC_ATTR,
    ['"'] = ESC_ATTR,  ['\''] = ESC_ATTR, ['&'] = ESC_TEXT | ESC_ATTR,
    ['<'] = ESC_TEXT | ESC_ATTR,          ['>'] = ESC_TEXT | ESC_ATTR,
};

static const char *const esc_entity[256] = {
    ['\t'] = "&#9;",  ['\n'] = "&#10;",  ['\r'] = "&#13;", ['"'] = "&quot;",
    ['\''] = "&apos;", ['&'] = "&amp;", ['<'] = "&lt;",   ['>'] = "&gt;",
};

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
/* Non-zero when some byte of v equals c (exact as a yes/no answer). */
#define HAS_BYTE(v, c) ((((v) ^ (ONES * (c))) - ONES) & ~((v) ^ (ONES * (c))) & HIGHS)
/* Non-zero when some byte of v is below n (n <= 128). */
#define HAS_LESS(v, n) (((v) - ONES * (n)) & ~(v) & HIGHS)

static uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Length of the run at s[0..len) that needs no escaping for this class. */
static size_t safe_run(const unsigned char *s, size_t len, unsigned cls)
{
    size_t i = 0;
#ifdef __SSE2__
    /* 16 bytes per step: compare with each special byte, stop at the first hit. */
    const __m128i amp = _mm_set1_epi8('&'), lt = _mm_set1_epi8('<'), gt = _mm_set1_epi8('>'),
                  cr = _mm_set1_epi8('\r'), quot = _mm_set1_epi8('"'), apos = _mm_set1_epi8('\''),
                  sp = _mm_set1_epi8(0x20), bias = _mm_set1_epi8((char)0x80);
    while (i + 16 <= len) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, amp), _mm_cmpeq_epi8(v, lt)),
                                   _mm_or_si128(_mm_cmpeq_epi8(v, gt), _mm_cmpeq_epi8(v, cr)));
        if (cls == ESC_ATTR) {
            /* Unsigned v < 0x20 via the signed compare of biased values. */
            __m128i ctl = _mm_cmplt_epi8(_mm_xor_si128(v, bias), _mm_xor_si128(sp, bias));
            hit = _mm_or_si128(hit, _mm_or_si128(ctl, _mm_or_si128(_mm_cmpeq_epi8(v, quot),
                                                                   _mm_cmpeq_epi8(v, apos))));
        }
        if (_mm_movemask_epi8(hit)) break;
        i += 16;
    }
#endif
    while (i + 8 <= len) {
        uint64_t v = load64(s + i);
        uint64_t hit = HAS_BYTE(v, '&') | HAS_BYTE(v, '<') | HAS_BYTE(v, '>') | HAS_BYTE(v, '\r');
        if (cls == ESC_ATTR) hit |= HAS_BYTE(v, '"') | HAS_BYTE(v, '\'') | HAS_LESS(v, 0x20);
        if (hit) break;
        i += 8;
    }
    while (i < len && !(esc_class[s[i]] & cls)) i++;
    return i;
}

static int escape(xpb_buf *b, const char *s, size_t len, unsigned cls)
{
    const unsigned char *u = (const unsigned char *)s;
    /* Most text and attribute values need no escaping at all: one copy. */
    size_t first = safe_run(u, len, cls);
    if (first == len) return buf_put(b, s, len);
    size_t start = b->len;
    /* The output is at least len bytes: one reservation in the common case. */
    int rc = buf_reserve(b, len);
    size_t i = 0;
    while (rc == 0 && i < len) {
        size_t run = safe_run(u + i, len - i, cls);
        rc = buf_put(b, u + i, run);
        i += run;
        if (rc == 0 && i < len) {
            rc = xpb_buf_append_str(b, esc_entity[u[i]]);
            i++;
        }
    }
    if (rc != 0) b->len = start;
    return rc;
}

int xpb_xml_escape_text(xpb_buf *b, const char *s, size_t len)
{
    return escape(b, s, len, ESC_TEXT);
}

int xpb_xml_escape_attr(xpb_buf *b, const char *s, size_t len)
{
    return escape(b, s, len, ESC_ATTR);
}

/* ---- Element-at-a-time writer -------------------------------------------
 * Elements are never prefixed: each one carries xmlns='...' when its namespace
 * differs from the default in scope. Attributes in a namespace other than
 * "" or xml get a generated prefix declared on the same element. The names
 * passed to xpb_writer_start must stay valid until the matching end. */

static bool ns_equal(const char *a, const char *b)
{
    return a == b || strcmp(a, b) == 0;
}

void xpb_writer_init(xpb_writer *w, xpb_buf *buf, const char *parent_ns)
{
    /* Only the bottom of the stacks: deeper slots are written before they are
     * read (start pushes), and zeroing 1 KiB per stanza showed in profiles. */
    w->buf = buf;
    w->depth = 0;
    w->tag_open = false;
    w->prefix_counter = 0;
    w->ns_stack[0] = parent_ns ? parent_ns : "";
    w->name_stack[0] = NULL;
}

/* Finishes a pending start tag with '>' before content is written. */
static int close_start_tag(xpb_writer *w)
{
    if (!w->tag_open) return 0;
    int rc = buf_put(w->buf, ">", 1);
    if (rc == 0) w->tag_open = false;
    return rc;
}

/* ns NULL means "inherit the default namespace in scope". */
int xpb_writer_start(xpb_writer *w, const char *ns, const char *name)
{
    if (w->depth >= XPB_WRITER_MAX_DEPTH) return XPB_EDEPTH;
    const char *scope = w->ns_stack[w->depth];
    if (ns == NULL) ns = scope;
    xpb_buf *b = w->buf;
    size_t start = b->len;
    bool was_open = w->tag_open;
    int rc = close_start_tag(w);
    if (rc == 0) rc = buf_put(b, "<", 1);
    if (rc == 0) rc = xpb_buf_append_str(b, name);
    if (rc == 0 && !ns_equal(ns, scope)) {
        rc = buf_put(b, " xmlns='", 8);
        if (rc == 0) rc = xpb_xml_escape_attr(b, ns, strlen(ns));
        if (rc == 0) rc = buf_put(b, "'", 1);
    }
    if (rc != 0) {
        b->len = start;
        w->tag_open = was_open;
        return rc;
    }
    w->depth++;
    w->ns_stack[w->depth] = ns;
    w->name_stack[w->depth] = name;
    w->tag_open = true;
    return 0;
}

/* Compares an escaped attribute value as written (esc[0..elen)) with a raw
 * string, escaping the raw side on the fly. */
static bool escaped_equals(const char *esc, size_t elen, const char *raw)
{
    size_t j = 0;
    for (const unsigned char *r = (const unsigned char *)raw; *r; r++) {
        const char *rep = (esc_class[*r] & ESC_ATTR) ? esc_entity[*r] : NULL;
        size_t rlen = rep ? strlen(rep) : 1;
        if (j + rlen > elen) return false;
        if (rep ? memcmp(esc + j, rep, rlen) != 0 : esc[j] != (char)*r) return false;
        j += rlen;
    }
    return j == elen;
}

/* Looks for xmlns:nsN='uri' among the attributes of the open start tag and
 * returns N, or 0. The tag begins at the last '<' in the buffer (escaped
 * values contain none) and values contain no "'" (escaped as &apos;), so
 * splitting at quotes is exact. */
static int find_declared_prefix(const xpb_buf *b, const char *uri)
{
    const char *d = b->data;
    size_t i = b->len;
    while (i > 0 && d[i - 1] != '<') i--;
    while (i < b->len && d[i] != ' ') i++; /* skip the element name */
    while (i < b->len) {
        size_t name = i + 1, eq = name;
        while (eq < b->len && d[eq] != '=') eq++;
        size_t val = eq + 2, end = val; /* after ="'" */
        while (end < b->len && d[end] != '\'') end++;
        if (end >= b->len) break;
        if (eq - name > 8 && memcmp(d + name, "xmlns:ns", 8) == 0 &&
            escaped_equals(d + val, end - val, uri)) {
            int n = 0;
            for (size_t k = name + 8; k < eq && n < 100000000; k++) n = n * 10 + (d[k] - '0');
            return n;
        }
        i = end + 1;
    }
    return 0;
}

/* Writes " xmlns:nsN='uri'" with a fresh N unless uri is declared on this
 * element already; *n gets the prefix number. */
static int declare_prefix(xpb_writer *w, const char *uri, int *n)
{
    *n = find_declared_prefix(w->buf, uri);
    if (*n != 0) return 0;
    char decl[32];
    int k = snprintf(decl, sizeof decl, " xmlns:ns%d='", w->prefix_counter + 1);
    int rc = buf_put(w->buf, decl, (size_t)k);
    if (rc == 0) rc = xpb_xml_escape_attr(w->buf, uri, strlen(uri));
    if (rc == 0) rc = buf_put(w->buf, "'", 1);
    if (rc == 0) *n = ++w->prefix_counter;
    return rc;
}

/* " name", " xml:name", or " xmlns:nsN='uri' nsN:name" for a namespaced one. */
static int write_attr_name(xpb_writer *w, const char *ns, const char *name)
{
    xpb_buf *b = w->buf;
    int rc;
    if (ns == NULL || ns[0] == '\0') {
        rc = buf_put(b, " ", 1);
    } else if (strcmp(ns, XPB_NS_XML) == 0) {
        rc = buf_put(b, " xml:", 5); /* bound by definition, never declared */
    } else {
        int n;
        char pfx[24];
        rc = declare_prefix(w, ns, &n);
        if (rc == 0) {
            int k = snprintf(pfx, sizeof pfx, " ns%d:", n);
            rc = buf_put(b, pfx, (size_t)k);
        }
    }
    return rc ? rc : xpb_buf_append_str(b, name);
}

int xpb_writer_attr(xpb_writer *w, const char *ns, const char *name, const char *value, size_t len)
{
    if (!w->tag_open) return XPB_EINVAL;
    xpb_buf *b = w->buf;
    size_t start = b->len;
    int counter = w->prefix_counter;
    int rc = write_attr_name(w, ns, name);
    if (rc == 0) rc = buf_put(b, "='", 2);
    if (rc == 0) rc = xpb_xml_escape_attr(b, value, len);
    if (rc == 0) rc = buf_put(b, "'", 1);
    if (rc != 0) {
        b->len = start;
        w->prefix_counter = counter;
    }
    return rc;
}

int xpb_writer_text(xpb_writer *w, const char *text, size_t len)
{
    if (w->depth == 0) return XPB_EINVAL;
    if (len == 0) return 0;
    size_t start = w->buf->len;
    bool was_open = w->tag_open;
    int rc = close_start_tag(w);
    if (rc == 0) rc = xpb_xml_escape_text(w->buf, text, len);
    if (rc != 0) {
        w->tag_open = was_open;
        w->buf->len = start;
    }
    return rc;
}

int xpb_writer_end(xpb_writer *w)
{
    if (w->depth == 0) return XPB_EINVAL;
    xpb_buf *b = w->buf;
    size_t start = b->len;
    int rc;
    if (w->tag_open) {
        rc = buf_put(b, "/>", 2);
    } else {
        rc = buf_put(b, "</", 2);
        if (rc == 0) rc = xpb_buf_append_str(b, w->name_stack[w->depth]);
        if (rc == 0) rc = buf_put(b, ">", 1);
    }
    if (rc != 0) {
        b->len = start;
        return rc;
    }
    w->tag_open = false;
    w->depth--;
    return 0;
}

/* ---- Whole trees -------------------------------------------------------- */

static int write_tree(xpb_writer *w, const xpb_node *n)
{
    if (n->kind == XPB_NODE_TEXT) return xpb_writer_text(w, n->text, n->text_len);
    if (n->kind != XPB_NODE_ELEMENT) return XPB_EINVAL;
    int rc = xpb_writer_start(w, n->ns ? n->ns : "", n->name);
    for (size_t i = 0; rc == 0 && i < n->n_attrs; i++) {
        const xpb_attr *a = &n->attrs[i];
        rc = xpb_writer_attr(w, a->ns, a->name, a->value, a->value_len);
    }
    for (const xpb_node *c = n->children; rc == 0 && c != NULL; c = c->next) rc = write_tree(w, c);
    return rc ? rc : xpb_writer_end(w);
}

/* Recursion depth is bounded by xpb_writer_start (XPB_WRITER_MAX_DEPTH). */
int xpb_xml_write_node(xpb_buf *b, const xpb_node *node, const char *parent_ns)
{
    xpb_writer w;
    xpb_writer_init(&w, b, parent_ns);
    size_t start = b->len;
    int rc = node->kind == XPB_NODE_TEXT ? xpb_xml_escape_text(b, node->text, node->text_len)
                                         : write_tree(&w, node);
    if (rc != 0) b->len = start;
    return rc;
}

/* ---- Stream header (RFC 6120 §4.7) ---------------------------------------- */

static int header_attr(xpb_buf *b, const char *name, const char *value)
{
    if (value == NULL) return 0;
    int rc = xpb_buf_append_str(b, name);
    if (rc == 0) rc = xpb_xml_escape_attr(b, value, strlen(value));
    return rc ? rc : buf_put(b, "'", 1);
}

int xpb_xml_write_stream_header(xpb_buf *b, const char *from, const char *to, const char *id,
                                const char *version, const char *lang)
{
    size_t start = b->len;
    int rc = xpb_buf_append_str(b, "<stream:stream xmlns='" XPB_NS_CLIENT
                                   "' xmlns:stream='" XPB_NS_STREAMS "'");
    if (rc == 0) rc = header_attr(b, " from='", from);
    if (rc == 0) rc = header_attr(b, " to='", to);
    if (rc == 0) rc = header_attr(b, " id='", id);
    if (rc == 0) rc = header_attr(b, " version='", version);
    if (rc == 0) rc = header_attr(b, " xml:lang='", lang);
    if (rc == 0) rc = buf_put(b, ">", 1);
    if (rc != 0) b->len = start;
    return rc;
}

/* ---- Character check -------------------------------------------------------
 * UTF-8 per RFC 3629 §4 (no overlongs, no surrogates, nothing above U+10FFFF)
 * and XML 1.0 §2.2 Char. The offset reported is that of the first byte of the
 * offending sequence. */

enum { CC_CTRL = 1, CC_BAD = 2, CC_2 = 3, CC_3 = 4, CC_4 = 5 };

/* Class of a byte (not printable ASCII) as the first byte of a character;
 * 80..BF are continuation bytes and C0/C1 could only start overlongs. */
static int lead_class(unsigned char c)
{
    if (c < 0x20) return CC_CTRL;
    if (c < 0xC2) return CC_BAD;
    if (c < 0xE0) return CC_2;
    if (c < 0xF0) return CC_3;
    if (c < 0xF5) return CC_4;
    return CC_BAD;
}

static bool is_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/* Checks the multi-byte character at s[0..len): its length, or a negative
 * XPB_E… code. */
static int check_multibyte(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    switch (lead_class(c)) {
    case CC_2:
        return (len >= 2 && is_cont(s[1])) ? 2 : XPB_EUTF8;
    case CC_3: {
        if (len < 3 || !is_cont(s[1]) || !is_cont(s[2])) return XPB_EUTF8;
        if (c == 0xE0 && s[1] < 0xA0) return XPB_EUTF8;  /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return XPB_EUTF8; /* surrogate */
        if (c == 0xEF && s[1] == 0xBF && s[2] >= 0xBE) return XPB_EXMLCHAR; /* U+FFFE/F */
        return 3;
    }
    case CC_4:
        if (len < 4 || !is_cont(s[1]) || !is_cont(s[2]) || !is_cont(s[3])) return XPB_EUTF8;
        if (c == 0xF0 && s[1] < 0x90) return XPB_EUTF8; /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return XPB_EUTF8; /* above U+10FFFF */
        return 4;
    case CC_CTRL:
        return XPB_EXMLCHAR;
    default:
        return XPB_EUTF8;
    }
}

int xpb_xml_check_text(const char *s, size_t len, size_t *bad_offset)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
#ifdef __SSE2__
    /* 16 printable ASCII bytes per step: as signed bytes, both controls and
     * bytes with the high bit set compare below 0x20. */
    const __m128i sp = _mm_set1_epi8(0x20);
    while (i + 16 <= len &&
           !_mm_movemask_epi8(_mm_cmplt_epi8(
               _mm_loadu_si128((const __m128i *)(const void *)(u + i)), sp)))
        i += 16;
#endif
    while (i < len) {
        /* Fast path: eight printable ASCII bytes (or TAB/LF/CR among them
         * fall to the table below). */
        if (i + 8 <= len) {
            uint64_t v = load64(u + i);
            if (((v & HIGHS) | HAS_LESS(v, 0x20)) == 0) {
                i += 8;
                continue;
            }
        }
        unsigned char c = u[i];
        if (c >= 0x20 && c < 0x80) {
            i++;
            continue;
        }
        if (c == '\t' || c == '\n' || c == '\r') {
            i++;
            continue;
        }
        int n = check_multibyte(u + i, len - i);
        if (n < 0) {
            if (bad_offset) *bad_offset = i;
            return n;
        }
        i += (size_t)n;
    }
    return 0;
}
