/* XML for XMPP streams: the element tree, the restricted stream reader (on
 * expat, RFC 6120 §11) and the writer with correct escaping. */
#ifndef XPB_XML_H
#define XPB_XML_H

#include <stddef.h>
#include <stdbool.h>
#include "xpb_arena.h"

#define XPB_NS_XML "http://www.w3.org/XML/1998/namespace"
#define XPB_NS_STREAMS "http://etherx.jabber.org/streams"
#define XPB_NS_CLIENT "jabber:client"

/* ---- Tree ---------------------------------------------------------------
 * Names are split into namespace URI and local name; prefixes are not kept
 * (the infoset we preserve is namespace + local name). ns == "" means "no
 * namespace". Strings are NUL-terminated and valid UTF-8; text may contain no
 * NUL since XML cannot. */
typedef struct xpb_attr {
    const char *ns;    /* "" for an unqualified attribute; XPB_NS_XML for xml:lang */
    const char *name;
    const char *value;
    size_t value_len;
} xpb_attr;

typedef enum xpb_node_kind { XPB_NODE_ELEMENT = 1, XPB_NODE_TEXT = 2 } xpb_node_kind;

typedef struct xpb_node xpb_node;
struct xpb_node {
    xpb_node_kind kind;
    xpb_node *next;          /* next sibling, document order */
    /* XPB_NODE_TEXT: adjacent character data is merged into one node. */
    const char *text;
    size_t text_len;
    /* XPB_NODE_ELEMENT */
    const char *ns;
    unsigned ns_id;          /* ns's dictionary id (xpb_ns_id) when the reader
                                built the node; 0 = not known, look ns up */
    const char *name;
    xpb_attr *attrs;
    size_t n_attrs;
    xpb_node *children;      /* first child (elements and text), or NULL */
};

/* Attribute lookup; ns "" for unqualified. NULL when absent. */
const xpb_attr *xpb_node_attr(const xpb_node *el, const char *ns, const char *name);
/* First child element with this ns and name (ns NULL = any), or NULL. */
const xpb_node *xpb_node_child(const xpb_node *el, const char *ns, const char *name);

/* A deep copy of n (its attributes, children and every string) into a, for
 * a tree that must outlive the reader's callback or move to another thread.
 * n's next siblings are not copied (out->next is NULL). XPB_ENOMEM, or
 * XPB_EDEPTH for a tree deeper than XPB_NODE_CLONE_MAX_DEPTH (the reader's
 * own max_depth keeps its trees far below). */
#define XPB_NODE_CLONE_MAX_DEPTH 256u
struct xpb_arena;
int xpb_node_clone(struct xpb_arena *a, const xpb_node *n, xpb_node **out);

/* ---- Reader ------------------------------------------------------------- */
#define XPB_READER_DEFAULT_MAX_STANZA (256u * 1024u) /* RFC 6120 §13.12: >= 10000 */
#define XPB_READER_MIN_MAX_STANZA 10000u
#define XPB_READER_DEFAULT_MAX_DEPTH 32u
#define XPB_READER_DEFAULT_MAX_ATTRS 64u

typedef struct xpb_reader_limits {
    size_t max_stanza_bytes; /* 0 = default; values below 10000 are raised to 10000 */
    unsigned max_depth;      /* depth of a stanza's element tree, stanza = 1; 0 = default */
    unsigned max_attrs;      /* attributes per element (xmlns declarations excluded); 0 = default */
} xpb_reader_limits;

typedef enum xpb_reader_mode {
    /* Input must be a stream: optional XML declaration, <stream:stream ...>,
     * depth-1 elements (stanzas), optionally </stream:stream>. */
    XPB_READER_STREAM = 1,
    /* Input is a sequence of bare elements, each one a stanza, as in a file of
     * stanzas or RFC 7395 framing (<open/> ... is just an element here). An
     * element with no namespace is in jabber:client. */
    XPB_READER_FRAGMENTS = 2,
    /* Decide from the first bytes: "<?xml" or a <stream:stream> start tag
     * selects STREAM, anything else FRAGMENTS. */
    XPB_READER_AUTO = 3,
} xpb_reader_mode;

typedef struct xpb_reader_callbacks {
    /* The stream header: an element with attributes and no children. */
    int (*stream_open)(void *ud, const xpb_node *header);
    /* A complete depth-1 element. The tree is valid only during the call. */
    int (*stanza)(void *ud, const xpb_node *stanza);
    /* </stream:stream> was read. */
    void (*stream_close)(void *ud);
} xpb_reader_callbacks;
/* A callback returns 0 to go on; non-zero stops the reader with XPB_ECALLBACK. */

typedef struct xpb_reader xpb_reader;

/* limits may be NULL (defaults). cb is copied. */
int xpb_reader_new(xpb_reader **out, xpb_reader_mode mode, const xpb_reader_limits *limits,
                   const xpb_reader_callbacks *cb, void *ud);
void xpb_reader_free(xpb_reader *r);
/* Feed any chunk of bytes. Returns 0 (everything consumed; "need more" is not
 * an error) or a negative XPB_E… code, which is sticky: later calls return it
 * again until xpb_reader_reset(). Every complete stanza in the chunk has been
 * delivered when this returns, including one whose last byte is the chunk's
 * last byte. */
int xpb_reader_feed(xpb_reader *r, const char *buf, size_t len);
/* The detailed message for the last error: names the rule or the limit and its
 * value, and where (byte offset) it happened. "" when there is none. */
const char *xpb_reader_error(const xpb_reader *r);
/* Start over for a new stream (after STARTTLS or SASL success), same mode. */
int xpb_reader_reset(xpb_reader *r);
/* Between stanzas: gives back the memory kept for the next one (the tree's
 * arena block, the text buffer), so an idle stream holds only expat's state.
 * A no-op inside a stanza or a feed. */
void xpb_reader_trim(xpb_reader *r);
/* Between stanzas of a stream that has gone quiet: also gives back the XML
 * parser (about 9 KiB with its tables and input buffer), keeping only the
 * stream's start tag as received; the next feed builds a new parser and
 * replays that tag into it, so namespaces and offsets go on as before.
 * Returns 1 when parked, 0 when the reader is not at a point where it can
 * be (inside a stanza, a partial token buffered, not a stream, or a start
 * tag over XPB_READER_PARK_MAX_HEADER bytes). */
int xpb_reader_park(xpb_reader *r);
#define XPB_READER_PARK_MAX_HEADER 4096u
/* A copy of n into a (as xpb_node_clone, which it falls back to): inside a
 * stanza callback, n being the stanza delivered, the tree lies in one block
 * of the reader's arena, which is copied at once and its pointers moved;
 * the namespaces of the dictionary and the common names the reader shares
 * are shared by the copy. For a worker loop handing stanzas to another
 * thread (several loops). */
struct xpb_arena;
int xpb_reader_clone(const xpb_reader *r, const xpb_node *n, struct xpb_arena *a, xpb_node **out);
/* Total bytes fed since new/reset. */
size_t xpb_reader_offset(const xpb_reader *r);
/* Inside a stanza callback: the input bytes the stanza took, from the '<' of
 * its start tag to the '>' of its end tag, as received (so a bridge counts
 * wire bytes without writing the tree out again). 0 outside a callback. */
size_t xpb_reader_stanza_bytes(const xpb_reader *r);

/* ---- Writer -------------------------------------------------------------
 * Appends to a growable buffer. Escapes & < > in text and & < " ' in
 * attribute values (plus \t \n \r in attributes as character references so
 * they survive attribute-value normalisation). Does not check UTF-8 or XML
 * character validity; callers handing untrusted text use xpb_xml_check_text(). */
typedef struct xpb_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;  /* 0 = unlimited; appends beyond it fail with XPB_ETOOBIG */
} xpb_buf;

void xpb_buf_init(xpb_buf *b, size_t max);
void xpb_buf_free(xpb_buf *b);
void xpb_buf_reset(xpb_buf *b);
int xpb_buf_append(xpb_buf *b, const void *data, size_t len);
int xpb_buf_append_str(xpb_buf *b, const char *s);
/* Room for extra more bytes, so that appends up to them do not reallocate:
 * 0, XPB_ETOOBIG past max, or XPB_ENOMEM. */
int xpb_buf_make_room(xpb_buf *b, size_t extra);
int xpb_xml_escape_text(xpb_buf *b, const char *s, size_t len);
int xpb_xml_escape_attr(xpb_buf *b, const char *s, size_t len);

/* Serialise an element tree. parent_ns is the default namespace in scope where
 * the element is written (XPB_NS_CLIENT inside a c2s stream, "" standalone);
 * xmlns declarations are emitted only where needed. Prefixes for namespaced
 * attributes are generated (ns1, ns2, ...); xml: is used for XPB_NS_XML. */
int xpb_xml_write_node(xpb_buf *b, const xpb_node *node, const char *parent_ns);

/* Element-at-a-time writer used by the record mapper, same namespace rules.
 * Keeps a small stack of open elements (max depth XPB_WRITER_MAX_DEPTH). */
#define XPB_WRITER_MAX_DEPTH 64
typedef struct xpb_writer {
    xpb_buf *buf;
    int depth;
    bool tag_open;            /* "<name attrs" written, ">" not yet */
    const char *ns_stack[XPB_WRITER_MAX_DEPTH + 1];   /* default ns in scope per level */
    const char *name_stack[XPB_WRITER_MAX_DEPTH + 1]; /* qualified name as written */
    int prefix_counter;
} xpb_writer;

void xpb_writer_init(xpb_writer *w, xpb_buf *buf, const char *parent_ns);
int xpb_writer_start(xpb_writer *w, const char *ns, const char *name);
/* Only between start and the first child/text/end. */
int xpb_writer_attr(xpb_writer *w, const char *ns, const char *name, const char *value, size_t len);
int xpb_writer_text(xpb_writer *w, const char *text, size_t len);
int xpb_writer_end(xpb_writer *w);

/* The stream header <stream:stream ...> (not closed) with the given attributes
 * (from/to/id/version/xml:lang; NULL to omit). Default namespace jabber:client. */
int xpb_xml_write_stream_header(xpb_buf *b, const char *from, const char *to, const char *id,
                                const char *version, const char *lang);

/* 0 when s[0..len) is valid UTF-8 without NUL and with only characters XML 1.0
 * allows (#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]);
 * XPB_EUTF8 or XPB_EXMLCHAR otherwise, with *bad_offset set to the first bad byte. */
int xpb_xml_check_text(const char *s, size_t len, size_t *bad_offset);

/* Writes "expat X.Y.Z (feature list; reparse deferral), protobuf-c X.Y.Z" as
 * the running libraries report them into buf (always NUL-terminated when len >
 * 0) and returns the length the whole text needs, like snprintf. */
size_t xpb_codec_versions(char *buf, size_t len);

#endif
