/* The restricted XMPP stream reader (RFC 6120 §11) on expat: bytes in any
 * chunking, the stream header and one element tree per stanza out, every
 * refusal a distinct code plus a message naming the rule, limit and offset. */
#include "expat_compat.h"
#include "node_internal.h"
#include "xpb_error.h"
#include "xpb_stanza.h" /* the namespace dictionary */
#include "xpb_xml.h"

#include <expat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Expanded names arrive as URI + NS_SEP + local. A space cannot occur in a
 * local name, and expat (>= 2.4.5) refuses a namespace URI containing it. */
#define NS_SEP ' '
#define STREAM_QNAME XPB_NS_STREAMS " stream"

/* FRAGMENTS mode: one synthetic root so bare elements become depth 2 like
 * stanzas in a stream, and unqualified ones land in jabber:client. */
static const char FRAG_WRAPPER[] = "<xpb-fragments xmlns='" XPB_NS_CLIENT "'>";
#define FRAG_WRAPPER_LEN (sizeof FRAG_WRAPPER - 1)

#define MAX_PIECE ((size_t)INT_MAX / 2) /* XML_Parse takes an int length */
#define MSG_MAX 256

/* Incremental UTF-8 check (RFC 3629 §4): no overlongs, surrogates or > U+10FFFF. */
typedef struct utf8_state {
    unsigned char need;   /* continuation bytes still expected */
    unsigned char lo, hi; /* allowed range for the next continuation byte */
} utf8_state;

/* One open element of the stanza being built: frames[d] is the open element
 * at stanza depth d (0 = the stanza), reused from stanza to stanza. The array
 * may move when it grows, so frames are found by depth, never kept by address
 * across a frame_at call. */
typedef struct frame {
    xpb_node *el;
    xpb_node *last; /* last child, for O(1) append */
} frame;

struct xpb_reader {
    xpb_reader_mode mode;   /* as configured (AUTO stays AUTO across reset) */
    xpb_reader_mode active; /* STREAM or FRAGMENTS once decided, 0 before */
    size_t max_stanza;
    unsigned max_depth;
    unsigned max_attrs;
    xpb_reader_callbacks cb;
    void *ud;

    XML_Parser p;  /* NULL before AUTO decides, or while parked */
    size_t base;   /* expat bytes that are not the user's (wrapper, replayed header) */
    size_t origin; /* user offset of expat's first own byte (after an unpark) */
    char *header;  /* STREAM: the stream's start tag as received, to unpark with */
    size_t header_len;
    int replaying; /* parsing the saved header into a new parser: no callbacks */
    xpb_arena *arena;
    frame *top; /* innermost open stanza element, NULL between stanzas */
    frame *frames; /* grows to the deepest stanza seen, never past max_depth */
    size_t frames_cap;
    xpb_node *stanza;
    unsigned xdepth; /* expat element depth: 1 = stream root, 2 = stanza */

    char *text; /* pending character data, merged until the next tag */
    size_t text_len, text_cap;
    char *pending; /* AUTO: leading bytes held until the mode is known */
    size_t pending_len, pending_cap;

    size_t total;   /* bytes handed to xpb_reader_feed since new/reset */
    size_t fed;     /* bytes handed to expat (user bytes only) */
    size_t mark;    /* start of the size window: end of the last top-level element */
    size_t stop_at; /* user offset where the parser was stopped on purpose */
    size_t stanza_start; /* user offset of the open stanza's start tag */
    size_t stanza_bytes; /* during the stanza callback: its size in the input */
    int in_parse;
    int stopped;
    int closed;
    int reset_pending;
    int err;
    char msg[MSG_MAX];
};

/* ---- errors ------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int reader_fail(xpb_reader *r, int code,
                                                             const char *fmt, ...)
{
    if (r->err) return r->err; /* the first error wins and sticks */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    r->err = code;
    if (r->p && r->in_parse && !r->stopped) XML_StopParser(r->p, XML_FALSE);
    r->stopped = 1;
    return code;
}

/* User byte offset of the event expat is reporting (or failed at). */
static size_t event_offset(const xpb_reader *r)
{
    XML_Index i = XML_GetCurrentByteIndex(r->p);
    if (i < 0 || (size_t)i < r->base) return r->origin;
    return (size_t)i - r->base + r->origin;
}

static size_t event_end(const xpb_reader *r)
{
    return event_offset(r) + (size_t)XML_GetCurrentByteCount(r->p);
}

/* Stop on purpose (close, reset from a callback) at the end of this event. */
static void reader_stop(xpb_reader *r)
{
    r->stop_at = event_end(r);
    if (!r->stopped) XML_StopParser(r->p, XML_FALSE);
    r->stopped = 1;
}

/* ---- UTF-8 -------------------------------------------------------------- */

static int utf8_lead(utf8_state *s, unsigned char c)
{
    s->lo = 0x80;
    s->hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        s->need = 1;
    else if (c == 0xE0)
        s->need = 2, s->lo = 0xA0; /* no overlongs */
    else if (c == 0xED)
        s->need = 2, s->hi = 0x9F; /* no surrogates */
    else if (c >= 0xE1 && c <= 0xEF)
        s->need = 2;
    else if (c == 0xF0)
        s->need = 3, s->lo = 0x90; /* no overlongs */
    else if (c >= 0xF1 && c <= 0xF3)
        s->need = 3;
    else if (c == 0xF4)
        s->need = 3, s->hi = 0x8F; /* <= U+10FFFF */
    else
        return -1;
    return 0;
}

/* Whether the character at p[0..n) is invalid UTF-8; *bad is the index of
 * its first wrong byte. An ASCII byte, or a sequence that n cuts short, is
 * not. */
static bool utf8_invalid_char(const unsigned char *p, size_t n, size_t *bad)
{
    utf8_state s = {0};
    if (n == 0 || p[0] < 0x80) return false;
    if (utf8_lead(&s, p[0]) != 0) {
        *bad = 0;
        return true;
    }
    for (size_t i = 1; i <= s.need && i < n; i++) {
        if (p[i] < s.lo || p[i] > s.hi) {
            *bad = i;
            return true;
        }
        s.lo = 0x80;
        s.hi = 0xBF;
    }
    return false;
}

/* ---- tree building ------------------------------------------------------ */

/* Element and attribute names common in XMPP traffic (RFC 6120/6121 and the
 * XEPs the typed mapping knows) are not copied: the node points at the
 * literal. Most names in a stanza are among these. */
#define NAME_IS(lit)                                                                               \
    if (memcmp(s, lit, sizeof lit - 1) == 0) return lit
static const char *common_name(const char *s, size_t len)
{
    switch (len) {
    case 1:
        switch (s[0]) {
        case 'c': NAME_IS("c"); break;
        case 'x': NAME_IS("x"); break;
        }
        break;
    case 2:
        switch (s[0]) {
        case 'b': NAME_IS("by"); break;
        case 'i': NAME_IS("iq"); NAME_IS("id"); break;
        case 't': NAME_IS("to"); break;
        }
        break;
    case 3:
        switch (s[0]) {
        case 'j': NAME_IS("jid"); break;
        case 'v': NAME_IS("ver"); NAME_IS("var"); break;
        }
        break;
    case 4:
        switch (s[0]) {
        case 'b': NAME_IS("body"); break;
        case 'c': NAME_IS("code"); break;
        case 'f': NAME_IS("from"); break;
        case 'g': NAME_IS("gone"); break;
        case 'h': NAME_IS("hash"); break;
        case 'i': NAME_IS("item"); break;
        case 'l': NAME_IS("lang"); break;
        case 'n': NAME_IS("node"); NAME_IS("name"); break;
        case 'p': NAME_IS("ping"); break;
        case 'r': NAME_IS("role"); break;
        case 's': NAME_IS("show"); NAME_IS("sent"); break;
        case 't': NAME_IS("type"); NAME_IS("text"); break;
        }
        break;
    case 5:
        switch (s[0]) {
        case 'd': NAME_IS("delay"); break;
        case 'e': NAME_IS("error"); break;
        case 'q': NAME_IS("query"); break;
        case 's': NAME_IS("stamp"); break;
        }
        break;
    case 6:
        switch (s[0]) {
        case 'a': NAME_IS("active"); break;
        case 'p': NAME_IS("paused"); break;
        case 'r': NAME_IS("result"); break;
        case 's': NAME_IS("status"); break;
        case 't': NAME_IS("thread"); break;
        }
        break;
    case 7:
        switch (s[0]) {
        case 'f': NAME_IS("feature"); break;
        case 'm': NAME_IS("message"); break;
        case 'q': NAME_IS("queryid"); break;
        case 'r': NAME_IS("request"); break;
        case 's': NAME_IS("subject"); break;
        }
        break;
    case 8:
        switch (s[0]) {
        case 'c': NAME_IS("category"); break;
        case 'i': NAME_IS("inactive"); NAME_IS("identity"); break;
        case 'm': NAME_IS("markable"); break;
        case 'n': NAME_IS("no-store"); break;
        case 'p': NAME_IS("presence"); NAME_IS("priority"); break;
        case 'r': NAME_IS("received"); break;
        }
        break;
    case 9:
        switch (s[0]) {
        case 'c': NAME_IS("composing"); break;
        case 'f': NAME_IS("forwarded"); break;
        case 'o': NAME_IS("origin-id"); break;
        case 's': NAME_IS("stanza-id"); break;
        }
        break;
    case 11:
        switch (s[0]) {
        case 'a': NAME_IS("affiliation"); break;
        }
        break;
    case 12:
        switch (s[0]) {
        case 's': NAME_IS("subscription"); break;
        }
        break;
    }
    return NULL;
}

#undef NAME_IS

/* Split "uri SEP local" (or a bare local name) into arena strings. A URI in
 * the namespace dictionary is not copied: ns points at the dictionary's own
 * string and *ns_id says which, so the mapping never looks it up again. */
static int split_name(xpb_reader *r, const char *qname, const char **ns, const char **local,
                      unsigned *ns_id)
{
    size_t len = strlen(qname), i = len;
    while (i > 0 && qname[i - 1] != NS_SEP) /* local names are short: scan from the end */
        i--;
    *ns = "";
    *ns_id = 0;
    if (i > 0) {
        uint32_t id = xpb_ns_id_n(qname, i - 1);
        if (id != 0) {
            *ns = xpb_ns_uri(id);
            *ns_id = id;
        } else if ((*ns = xpb_arena_strndup(r->arena, qname, i - 1)) == NULL) {
            return XPB_ENOMEM;
        }
    }
    *local = common_name(qname + i, len - i);
    if (*local == NULL) *local = xpb_arena_strndup(r->arena, qname + i, len - i);
    return *local ? 0 : XPB_ENOMEM;
}

static int fill_attrs(xpb_reader *r, xpb_node *el, const XML_Char **atts, size_t n)
{
    if (n == 0) return 0;
    el->attrs = xpb_arena_alloc(r->arena, n * sizeof *el->attrs); /* every field set below */
    if (!el->attrs) return XPB_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        xpb_attr *a = &el->attrs[i];
        size_t vlen = strlen(atts[2 * i + 1]);
        unsigned ns_id;
        if (split_name(r, atts[2 * i], &a->ns, &a->name, &ns_id) != 0) return XPB_ENOMEM;
        a->value = xpb_arena_strndup(r->arena, atts[2 * i + 1], vlen);
        if (!a->value) return XPB_ENOMEM;
        a->value_len = vlen;
    }
    el->n_attrs = n;
    return 0;
}

static xpb_node *new_element(xpb_reader *r, const XML_Char *name, const XML_Char **atts,
                             size_t n_attrs)
{
    xpb_node *el = xpb_arena_alloc(r->arena, sizeof *el);
    if (!el) return NULL;
    *el = (xpb_node){.kind = XPB_NODE_ELEMENT};
    if (split_name(r, name, &el->ns, &el->name, &el->ns_id) != 0) return NULL;
    if (fill_attrs(r, el, atts, n_attrs) != 0) return NULL;
    return el;
}

static void append_child(frame *f, xpb_node *n)
{
    if (f->last)
        f->last->next = n;
    else
        f->el->children = n;
    f->last = n;
}

/* Turn the merged character data into one text node of the open element. */
static int flush_text(xpb_reader *r)
{
    if (r->text_len == 0 || !r->top) {
        r->text_len = 0;
        return 0;
    }
    xpb_node *t = xpb_arena_calloc(r->arena, sizeof *t);
    char *s = xpb_arena_strndup(r->arena, r->text, r->text_len);
    if (!t || !s) return XPB_ENOMEM;
    t->kind = XPB_NODE_TEXT;
    t->text = s;
    t->text_len = r->text_len;
    append_child(r->top, t);
    r->text_len = 0;
    return 0;
}

static int text_append(xpb_reader *r, const char *s, size_t len)
{
    if (len > r->max_stanza - r->text_len) /* cannot exceed the raw bytes, but bound it */
        return XPB_ESTANZASIZE;
    if (r->text_len + len > r->text_cap) {
        size_t cap = r->text_cap ? r->text_cap : 256;
        while (cap < r->text_len + len)
            cap *= 2;
        char *n = realloc(r->text, cap);
        if (!n) return XPB_ENOMEM;
        r->text = n;
        r->text_cap = cap;
    }
    memcpy(r->text + r->text_len, s, len);
    r->text_len += len;
    return 0;
}

/* ---- expat handlers ----------------------------------------------------- */

static size_t count_attrs(const XML_Char **atts)
{
    size_t n = 0;
    while (atts[2 * n])
        n++;
    return n;
}

static int check_callback(xpb_reader *r, int rc, const char *which)
{
    if (rc == 0) return 0;
    return reader_fail(r, XPB_ECALLBACK, "%s callback returned %d at byte %zu", which, rc,
                       event_offset(r));
}

/* XML_DefaultCurrent hands the current event's markup here, as received. */
static void XMLCALL on_raw_header(void *ud, const XML_Char *s, int len)
{
    xpb_reader *r = ud;
    if (len <= 0 || (size_t)len > XPB_READER_PARK_MAX_HEADER || r->header) return;
    r->header = malloc((size_t)len);
    if (!r->header) return; /* parking is an economy: without the copy it is skipped */
    memcpy(r->header, s, (size_t)len);
    r->header_len = (size_t)len;
}

/* Keep the stream's start tag, so a parked reader can rebuild expat's
 * namespace context from it (xpb_reader_park). */
static void save_header(xpb_reader *r)
{
    free(r->header);
    r->header = NULL;
    r->header_len = 0;
    XML_SetDefaultHandlerExpand(r->p, on_raw_header);
    XML_DefaultCurrent(r->p);
    XML_SetDefaultHandlerExpand(r->p, NULL);
}

static void on_stream_start(xpb_reader *r, const XML_Char *name, const XML_Char **atts,
                            size_t n_attrs)
{
    if (r->active == XPB_READER_FRAGMENTS) return; /* our own wrapper */
    if (r->replaying) return;                      /* our own copy of the header */
    if (strcmp(name, STREAM_QNAME) != 0) {
        reader_fail(r, XPB_ENOTSTREAM,
                    "root element is not <stream:stream> in " XPB_NS_STREAMS
                    " (RFC 6120 section 4.8) at byte %zu",
                    event_offset(r));
        return;
    }
    if (n_attrs > r->max_attrs) {
        reader_fail(r, XPB_EATTRS, "element has %zu attributes, over max_attrs (%u), at byte %zu",
                    n_attrs, r->max_attrs, event_offset(r));
        return;
    }
    xpb_node *h = new_element(r, name, atts, n_attrs);
    if (!h) {
        reader_fail(r, XPB_ENOMEM, "out of memory at byte %zu", event_offset(r));
        return;
    }
    r->mark = event_end(r);
    save_header(r);
    int rc = r->cb.stream_open ? r->cb.stream_open(r->ud, h) : 0;
    xpb_arena_reset(r->arena);
    check_callback(r, rc, "stream_open");
}

/* Limits and rules for an element inside the stream (stanza or descendant). */
static int check_element(xpb_reader *r, size_t n_attrs)
{
    if (r->xdepth - 1 > r->max_depth)
        return reader_fail(r, XPB_EDEPTH, "element nesting exceeds max_depth (%u) at byte %zu",
                           r->max_depth, event_offset(r));
    if (n_attrs > r->max_attrs)
        return reader_fail(r, XPB_EATTRS,
                           "element has %zu attributes, over max_attrs (%u), at byte %zu", n_attrs,
                           r->max_attrs, event_offset(r));
    return 0;
}

/* The frame for stanza depth d (0 = the stanza), grown on demand. */
static frame *frame_at(xpb_reader *r, size_t d)
{
    if (d >= r->frames_cap) {
        size_t cap = r->frames_cap ? r->frames_cap * 2 : 8;
        while (cap <= d)
            cap *= 2;
        frame *n = realloc(r->frames, cap * sizeof *n);
        if (!n) return NULL;
        r->frames = n;
        r->frames_cap = cap;
    }
    return &r->frames[d];
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    xpb_reader *r = ud;
    if (r->stopped) return;
    size_t n_attrs = count_attrs(atts);
    r->xdepth++;
    if (r->xdepth == 1) {
        on_stream_start(r, name, atts, n_attrs);
        return;
    }
    if (check_element(r, n_attrs) != 0) return;
    xpb_node *el = NULL;
    frame *f = NULL;
    if (flush_text(r) == 0) el = new_element(r, name, atts, n_attrs);
    if (el && el->ns_id == XPB_NS_ID_STREAMS && strcmp(el->name, "stream") == 0) {
        reader_fail(r, XPB_ENESTEDSTREAM,
                    "nested <stream:stream> refused (RFC 6120 section 4.2) at byte %zu",
                    event_offset(r));
        return;
    }
    size_t d = r->xdepth - 2; /* check_element bounded it by max_depth */
    if (el) f = frame_at(r, d);
    if (!f) {
        reader_fail(r, XPB_ENOMEM, "out of memory at byte %zu", event_offset(r));
        return;
    }
    f->el = el;
    f->last = NULL;
    if (d > 0) {
        append_child(&r->frames[d - 1], el);
    } else {
        r->stanza = el;
        r->stanza_start = event_offset(r);
    }
    r->top = f;
}

static void deliver_stanza(xpb_reader *r)
{
    xpb_node *s = r->stanza;
    r->stanza = NULL;
    r->top = NULL;
    r->mark = event_end(r);
    r->stanza_bytes = r->mark - r->stanza_start;
    int rc = r->cb.stanza ? r->cb.stanza(r->ud, s) : 0;
    r->stanza_bytes = 0;
    xpb_arena_reset(r->arena);
    check_callback(r, rc, "stanza");
}

static void on_root_end(xpb_reader *r)
{
    if (r->active == XPB_READER_FRAGMENTS) {
        reader_fail(r, XPB_EXML, "end tag of the fragments wrapper in the input at byte %zu",
                    event_offset(r));
        return;
    }
    r->closed = 1;
    reader_stop(r);
    if (r->cb.stream_close) r->cb.stream_close(r->ud);
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    xpb_reader *r = ud;
    (void)name;
    if (r->stopped) return;
    unsigned d = r->xdepth--;
    if (d == 1) {
        on_root_end(r);
        return;
    }
    if (flush_text(r) != 0) {
        reader_fail(r, XPB_ENOMEM, "out of memory at byte %zu", event_offset(r));
        return;
    }
    r->top = d >= 3 ? &r->frames[d - 3] : NULL; /* the parent's frame; d is the old xdepth */
    if (d == 2) deliver_stanza(r);
}

/* Index of the first non-whitespace byte of s[0..len), or len. */
static int skip_whitespace(const char *s, int len)
{
    int i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    xpb_reader *r = ud;
    if (r->stopped || len <= 0) return;
    if (r->xdepth <= 1) {
        /* RFC 6120 §11.7: only whitespace may sit between stanzas. expat
         * hands line breaks over as separate events, so offset + i is exact. */
        int i = skip_whitespace(s, len);
        if (i < len)
            reader_fail(r, XPB_ETEXT,
                        "non-whitespace text between stanzas (RFC 6120 section 11.7) at byte %zu",
                        event_offset(r) + (size_t)i);
        return;
    }
    int rc = text_append(r, s, (size_t)len);
    if (rc != 0)
        reader_fail(r, rc, "character data exceeds max_stanza_bytes (%zu) at byte %zu",
                    r->max_stanza, event_offset(r));
}

static void XMLCALL on_comment(void *ud, const XML_Char *data)
{
    xpb_reader *r = ud;
    (void)data;
    reader_fail(r, XPB_ECOMMENT, "XML comment refused (RFC 6120 section 11.1) at byte %zu",
                event_offset(r));
}

static void XMLCALL on_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
    xpb_reader *r = ud;
    (void)target;
    (void)data;
    reader_fail(r, XPB_EPI, "processing instruction refused (RFC 6120 section 11.1) at byte %zu",
                event_offset(r));
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal)
{
    xpb_reader *r = ud;
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal;
    reader_fail(r, XPB_EDTD, "DOCTYPE refused (RFC 6120 section 11.1) at byte %zu",
                event_offset(r));
}

/* ---- expat errors ------------------------------------------------------- */

/* expat has no error code for "<!DOCTYPE" (or another declaration) in
 * content: it stops with an invalid token right after "<!". */
static int is_markup_decl(const xpb_reader *r)
{
    int off = 0, size = 0;
    const char *ctx = XML_GetInputContext(r->p, &off, &size);
    if (!ctx || off < 2 || off >= size) return 0;
    return ctx[off - 2] == '<' && ctx[off - 1] == '!' && ctx[off] >= 'A' && ctx[off] <= 'Z';
}

static int map_expat_error(const xpb_reader *r, enum XML_Error e)
{
    switch (e) {
    case XML_ERROR_NO_MEMORY:
        return XPB_ENOMEM;
    case XML_ERROR_UNBOUND_PREFIX:
        return XPB_EPREFIX;
    case XML_ERROR_DUPLICATE_ATTRIBUTE:
        return XPB_EDUPATTR;
    case XML_ERROR_UNDEFINED_ENTITY:
    case XML_ERROR_RECURSIVE_ENTITY_REF:
    case XML_ERROR_ASYNC_ENTITY:
    case XML_ERROR_BINARY_ENTITY_REF:
    case XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF:
    case XML_ERROR_EXTERNAL_ENTITY_HANDLING:
    case XML_ERROR_AMPLIFICATION_LIMIT_BREACH:
        return XPB_EENTITY;
    case XML_ERROR_PARAM_ENTITY_REF:
    case XML_ERROR_ENTITY_DECLARED_IN_PE:
    case XML_ERROR_INCOMPLETE_PE:
    case XML_ERROR_NOT_STANDALONE:
    case XML_ERROR_PUBLICID:
    case XML_ERROR_FEATURE_REQUIRES_XML_DTD:
    case XML_ERROR_SUSPEND_PE:
        return XPB_EDTD;
    case XML_ERROR_MISPLACED_XML_PI:
        return XPB_EPI;
    case XML_ERROR_INVALID_TOKEN:
        return is_markup_decl(r) ? XPB_EDTD : XPB_EXML;
    default:
        return XPB_EXML;
    }
}

static const char *rule_for(int code)
{
    switch (code) {
    case XPB_EPREFIX:
        return "unbound namespace prefix (RFC 6120 section 11.2)";
    case XPB_EDUPATTR:
        return "duplicate attribute (XML 1.0 Unique Att Spec, after namespace "
               "expansion)";
    case XPB_EENTITY:
        return "entity reference other than the five predefined refused (RFC 6120 "
               "section 11.1)";
    case XPB_EDTD:
        return "DTD/markup declaration refused (RFC 6120 section 11.1)";
    case XPB_EPI:
        return "XML declaration allowed only at the stream start, processing "
               "instructions refused (RFC 6120 sections 11.1, 11.5)";
    case XPB_ENOMEM:
        return "out of memory";
    default:
        return "not well-formed XML (RFC 6120 section 11.3)";
    }
}

/* expat checks UTF-8 itself (no overlongs, surrogates or code points past
 * U+10FFFF, as RFC 3629 says) and stops with an invalid token on the first
 * bad sequence, at its first byte. Looking at the bytes there tells that case
 * from the other invalid tokens, so no pass of our own over every byte is
 * needed to name it. */
static int fail_if_bad_utf8(xpb_reader *r)
{
    int off = 0, size = 0;
    const char *ctx = XML_GetInputContext(r->p, &off, &size);
    size_t bad;
    if (!ctx || off < 0 || off >= size) return 0;
    const unsigned char *p = (const unsigned char *)ctx + off;
    if (!utf8_invalid_char(p, (size_t)(size - off), &bad)) return 0;
    return reader_fail(r, XPB_EUTF8, "invalid UTF-8 byte 0x%02X (RFC 6120 section 11.6) at byte %zu",
                       (unsigned)p[bad], event_offset(r) + bad);
}

static int fail_from_expat(xpb_reader *r)
{
    enum XML_Error e = XML_GetErrorCode(r->p);
    if (e == XML_ERROR_INVALID_TOKEN && fail_if_bad_utf8(r) != 0) return r->err;
    int code = map_expat_error(r, e);
    return reader_fail(r, code, "%s: expat: %s at byte %zu", rule_for(code), XML_ErrorString(e),
                       event_offset(r));
}

/* ---- parser lifecycle --------------------------------------------------- */

static int parser_start(xpb_reader *r, xpb_reader_mode active)
{
    /* Encoding forced to UTF-8 (RFC 6120 §11.6), whatever a declaration says. */
    r->p = XML_ParserCreateNS("UTF-8", NS_SEP);
    if (!r->p) return XPB_ENOMEM;
    r->active = active;
    XML_SetUserData(r->p, r);
    /* Deliver a stanza as soon as its last byte arrives. */
    if (!xpb_expat_disable_deferral(r->p)) return XPB_ENOMEM;
    XML_SetElementHandler(r->p, on_start, on_end);
    XML_SetCharacterDataHandler(r->p, on_text);
    XML_SetCommentHandler(r->p, on_comment);
    XML_SetProcessingInstructionHandler(r->p, on_pi);
    XML_SetStartDoctypeDeclHandler(r->p, on_doctype);
    r->base = 0;
    if (active == XPB_READER_FRAGMENTS) {
        if (XML_Parse(r->p, FRAG_WRAPPER, (int)FRAG_WRAPPER_LEN, XML_FALSE) != XML_STATUS_OK)
            return XPB_ENOMEM;
        r->base = FRAG_WRAPPER_LEN;
    }
    return 0;
}

static void state_clear(xpb_reader *r)
{
    if (r->p) XML_ParserFree(r->p);
    r->p = NULL;
    r->active = 0;
    r->base = r->origin = 0;
    free(r->header);
    r->header = NULL;
    r->header_len = 0;
    r->replaying = 0;
    xpb_arena_reset(r->arena);
    r->top = NULL;
    r->stanza = NULL;
    r->xdepth = 0;
    r->text_len = 0;
    r->pending_len = 0;
    r->total = r->fed = r->mark = r->stop_at = 0;
    r->in_parse = r->stopped = r->closed = r->reset_pending = 0;
    r->err = 0;
    r->msg[0] = '\0';
}

static int state_init(xpb_reader *r)
{
    state_clear(r);
    if (r->mode == XPB_READER_AUTO) return 0; /* parser made once the mode is known */
    int rc = parser_start(r, r->mode);
    if (rc != 0) reader_fail(r, rc, "out of memory creating the XML parser");
    return rc;
}

int xpb_reader_new(xpb_reader **out, xpb_reader_mode mode, const xpb_reader_limits *limits,
                   const xpb_reader_callbacks *cb, void *ud)
{
    if (!out) return XPB_EINVAL;
    *out = NULL;
    if (mode != XPB_READER_STREAM && mode != XPB_READER_FRAGMENTS && mode != XPB_READER_AUTO)
        return XPB_EINVAL;
    xpb_reader *r = calloc(1, sizeof *r);
    if (!r) return XPB_ENOMEM;
    r->mode = mode;
    r->max_stanza = limits && limits->max_stanza_bytes ? limits->max_stanza_bytes
                                                       : XPB_READER_DEFAULT_MAX_STANZA;
    if (r->max_stanza < XPB_READER_MIN_MAX_STANZA) r->max_stanza = XPB_READER_MIN_MAX_STANZA;
    r->max_depth = limits && limits->max_depth ? limits->max_depth : XPB_READER_DEFAULT_MAX_DEPTH;
    r->max_attrs = limits && limits->max_attrs ? limits->max_attrs : XPB_READER_DEFAULT_MAX_ATTRS;
    if (cb) r->cb = *cb;
    r->ud = ud;
    r->arena = xpb_arena_new(0);
    if (!r->arena || state_init(r) != 0) {
        xpb_reader_free(r);
        return XPB_ENOMEM;
    }
    *out = r;
    return 0;
}

void xpb_reader_free(xpb_reader *r)
{
    if (!r) return;
    if (r->p) XML_ParserFree(r->p);
    xpb_arena_free(r->arena);
    free(r->header);
    free(r->text);
    free(r->pending);
    free(r->frames);
    free(r);
}

/* Every pointer of a tree the reader builds is into its arena or to a string
 * that lives for good (split_name: the dictionary's URIs, common_name, "").
 * With the arena in one block, the block's used bytes are the stanza's
 * (reset after each), copied at once. */
int xpb_reader_clone(const xpb_reader *r, const xpb_node *n, xpb_arena *a, xpb_node **out)
{
    if (!r || !n || !a || !out) return XPB_EINVAL;
    void *copy;
    const unsigned char *base;
    size_t len;
    int rc = xpb_arena_copy_used(a, r->arena, &copy, &base, &len);
    if (rc < 0) return XPB_ENOMEM;
    if (rc == 0 && xpb_node_relocate(copy, base, len, n, out) == 0) return 0;
    return xpb_node_clone(a, n, out); /* a tree over blocks, or not the reader's */
}

void xpb_reader_trim(xpb_reader *r)
{
    if (!r || r->in_parse || r->stanza || r->text_len) return;
    xpb_arena_trim(r->arena);
    free(r->text);
    r->text = NULL;
    r->text_cap = 0;
}

/* Parked: no expat parser, but the stream's header kept to make a new one. */
static int is_parked(const xpb_reader *r)
{
    return !r->p && r->header && r->active == XPB_READER_STREAM;
}

/* Every byte handed to expat was parsed: it holds no partial token. Outside
 * a callback the current index is just past the last parse event. */
static int expat_drained(const xpb_reader *r)
{
    XML_Index i = XML_GetCurrentByteIndex(r->p);
    return i >= 0 && (size_t)i >= r->base && (size_t)i - r->base + r->origin == r->fed;
}

int xpb_reader_park(xpb_reader *r)
{
    if (!r || !r->p || r->active != XPB_READER_STREAM || !r->header) return 0;
    if (r->in_parse || r->stopped || r->closed || r->reset_pending || r->err) return 0;
    if (r->xdepth != 1 || r->stanza || r->top || r->text_len || !expat_drained(r)) return 0;
    xpb_reader_trim(r);
    XML_ParserFree(r->p);
    r->p = NULL;
    r->xdepth = 0;
    return 1;
}

/* A new parser, fed the saved start tag without callbacks: the stream's
 * namespace declarations are in scope again, offsets go on from r->fed. */
static int unpark(xpb_reader *r)
{
    int rc = parser_start(r, XPB_READER_STREAM);
    if (rc == 0) {
        r->replaying = 1;
        enum XML_Status st = XML_Parse(r->p, r->header, (int)r->header_len, XML_FALSE);
        r->replaying = 0;
        if (st != XML_STATUS_OK || r->xdepth != 1) rc = XPB_EXML;
    }
    if (rc != 0)
        return reader_fail(r, rc, "could not rebuild the parked stream's XML parser at byte %zu",
                           r->fed);
    r->base = r->header_len;
    r->origin = r->fed;
    return 0;
}

int xpb_reader_reset(xpb_reader *r)
{
    if (!r) return XPB_EINVAL;
    if (r->in_parse) {
        /* Called from a callback: finish this event, then start over with the
         * rest of the chunk (the new stream's first bytes). */
        r->reset_pending = 1;
        reader_stop(r);
        return 0;
    }
    return state_init(r);
}

const char *xpb_reader_error(const xpb_reader *r)
{
    return r ? r->msg : "";
}

size_t xpb_reader_offset(const xpb_reader *r)
{
    return r ? r->total : 0;
}

size_t xpb_reader_stanza_bytes(const xpb_reader *r)
{
    return r->stanza_bytes;
}

/* ---- feeding ------------------------------------------------------------ */

/* Hand n user bytes to expat. After an intended stop (close, reset from a
 * callback) *used says how many of them were consumed. */
static int parse_piece(xpb_reader *r, const char *buf, size_t n, size_t *used)
{
    size_t start = r->fed;
    r->in_parse = 1;
    enum XML_Status st = XML_Parse(r->p, buf, (int)n, XML_FALSE);
    r->in_parse = 0;
    r->fed += n;
    *used = n;
    if (r->err) return r->err;
    if (st == XML_STATUS_ERROR && !r->stopped) return fail_from_expat(r);
    if (r->stopped) *used = r->stop_at > start ? r->stop_at - start : 0;
    return 0;
}

static int fail_size(xpb_reader *r)
{
    return reader_fail(r, XPB_ESTANZASIZE,
                       "stanza exceeds max_stanza_bytes (%zu) at byte %zu (RFC 6120 section "
                       "13.12)",
                       r->max_stanza, r->fed);
}

/* Feed the decided-mode parser, in pieces that keep the bytes since the last
 * top-level element within max_stanza_bytes, so expat never buffers more. */
static int feed_parser(xpb_reader *r, const char *buf, size_t len, size_t *used)
{
    size_t done = 0;
    while (done < len) {
        if (r->reset_pending) break; /* even after close: the rest is a new stream */
        if (r->closed) {
            /* XML allows whitespace after the root element (XML 1.0 §2.8 Misc). */
            done += (size_t)skip_whitespace(buf + done, (int)(len - done));
            if (done == len) break;
            return reader_fail(r, XPB_ECLOSED,
                               "data other than whitespace after </stream:stream> (RFC 6120 "
                               "section 4.4), which ended at byte %zu",
                               r->stop_at);
        }
        size_t window = r->fed - r->mark;
        if (window >= r->max_stanza) return fail_size(r);
        size_t n = len - done;
        if (n > r->max_stanza - window) n = r->max_stanza - window;
        if (n > MAX_PIECE) n = MAX_PIECE;
        size_t u = 0;
        int rc = parse_piece(r, buf + done, n, &u);
        if (rc != 0) return rc;
        done += u;
    }
    *used = done;
    return 0;
}

/* AUTO: 1 when pending[0..n) decides the mode (*mode set), 0 when more is needed. */
static int auto_classify(const char *p, size_t n, xpb_reader_mode *mode)
{
    static const char xmldecl[] = "?xml", qname[] = "stream:stream";
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (i == n) return 0;
    *mode = XPB_READER_FRAGMENTS;
    if (p[i] != '<') return 1;
    const char *s = p + i + 1;
    size_t m = n - i - 1;
    if (m == 0) return 0;
    const char *want = s[0] == '?' ? xmldecl : qname;
    size_t wlen = strlen(want);
    size_t k = m < wlen ? m : wlen;
    if (memcmp(s, want, k) != 0) return 1;
    if (m < wlen + (want == qname)) return 0;
    if (want == xmldecl) {
        *mode = XPB_READER_STREAM;
        return 1;
    }
    char c = s[wlen];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '>' || c == '/')
        *mode = XPB_READER_STREAM;
    return 1;
}

static int pending_push(xpb_reader *r, char c)
{
    if (r->pending_len == r->pending_cap) {
        size_t cap = r->pending_cap ? r->pending_cap * 2 : 64;
        char *n = realloc(r->pending, cap);
        if (!n) return XPB_ENOMEM;
        r->pending = n;
        r->pending_cap = cap;
    }
    r->pending[r->pending_len++] = c;
    return 0;
}

/* Take bytes into the AUTO buffer until the mode is known; *taken says how
 * many of buf were buffered. Leading whitespace counts toward the first
 * stanza, so the buffer stays within max_stanza_bytes. */
static int auto_take(xpb_reader *r, const char *buf, size_t len, size_t *taken)
{
    xpb_reader_mode mode = XPB_READER_FRAGMENTS;
    size_t i = 0;
    int decided = 0;
    while (!decided && i < len && r->pending_len < r->max_stanza) {
        if (pending_push(r, buf[i++]) != 0)
            return reader_fail(r, XPB_ENOMEM, "out of memory at byte %zu", r->pending_len);
        decided = auto_classify(r->pending, r->pending_len, &mode);
    }
    *taken = i;
    if (!decided && r->pending_len < r->max_stanza) return 0;
    int rc = parser_start(r, mode);
    if (rc != 0) return reader_fail(r, rc, "out of memory creating the XML parser");
    size_t used = 0;
    rc = feed_parser(r, r->pending, r->pending_len, &used);
    r->pending_len = 0;
    return rc;
}

int xpb_reader_feed(xpb_reader *r, const char *buf, size_t len)
{
    if (!r || (!buf && len)) return XPB_EINVAL;
    if (r->err) return r->err;
    if (r->in_parse) return XPB_EINVAL; /* not from inside a callback */
    r->total += len;
    if (len > 0 && is_parked(r)) {
        int rc = unpark(r);
        if (rc != 0) return rc;
    }
    while (len > 0) {
        size_t used = 0;
        int rc = r->p ? feed_parser(r, buf, len, &used) : auto_take(r, buf, len, &used);
        if (rc != 0) return rc;
        buf += used;
        len -= used;
        if (r->reset_pending) {
            /* A callback asked for a new stream: the rest of the chunk is its start. */
            rc = state_init(r);
            r->total = len;
            if (rc != 0) return rc;
        }
    }
    return 0;
}

/* ---- tree helpers ------------------------------------------------------- */

const xpb_attr *xpb_node_attr(const xpb_node *el, const char *ns, const char *name)
{
    if (!el || el->kind != XPB_NODE_ELEMENT || !name) return NULL;
    if (!ns) ns = "";
    for (size_t i = 0; i < el->n_attrs; i++) {
        const xpb_attr *a = &el->attrs[i];
        if (strcmp(a->name, name) == 0 && strcmp(a->ns, ns) == 0) return a;
    }
    return NULL;
}

const xpb_node *xpb_node_child(const xpb_node *el, const char *ns, const char *name)
{
    if (!el || el->kind != XPB_NODE_ELEMENT || !name) return NULL;
    for (const xpb_node *c = el->children; c; c = c->next) {
        if (c->kind != XPB_NODE_ELEMENT || strcmp(c->name, name) != 0) continue;
        if (!ns || strcmp(c->ns, ns) == 0) return c;
    }
    return NULL;
}
