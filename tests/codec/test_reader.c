/* Stream reader tests: trees, every refusal with its code and message, limit
 * boundaries, every chunking (split points, byte at a time), expat reparse
 * deferral, FRAGMENTS/AUTO modes, reset, sticky errors and close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h> /* after the headers it needs */

#include "node_internal.h" /* xpb_node_relocate */
#include "xpb_error.h"
#include "xpb_stanza.h" /* xpb_ns_id */
#include "xpb_xml.h"

#define HDR                                                                                        \
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "        \
    "to='example.com' version='1.0'>"
#define HDR_LEN (sizeof HDR - 1)

/* ---- a collector that logs every event as a compact string ------------- */

typedef struct col {
    char *log;
    size_t len, cap;
    int n_open, n_stanzas, n_close;
    int stop_on;  /* stanza number (1-based) whose callback returns non-zero */
    int reset_on; /* stanza number whose callback calls xpb_reader_reset */
    int reset_on_close;
    xpb_reader *r;
    int feed_no; /* set by the test before each feed call */
    int delivered_in_feed;
} col;

static void put(col *c, const char *s, size_t n)
{
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 1024;
        while (cap < c->len + n + 1)
            cap *= 2;
        c->log = realloc(c->log, cap);
        assert_non_null(c->log);
        c->cap = cap;
    }
    memcpy(c->log + c->len, s, n);
    c->len += n;
    c->log[c->len] = '\0';
}

static void puts_(col *c, const char *s)
{
    put(c, s, strlen(s));
}

/* Short names for the namespaces tests use most. */
static void put_ns(col *c, const char *ns)
{
    if (strcmp(ns, XPB_NS_CLIENT) == 0)
        puts_(c, "{C}");
    else if (strcmp(ns, XPB_NS_STREAMS) == 0)
        puts_(c, "{S}");
    else if (strcmp(ns, XPB_NS_XML) == 0)
        puts_(c, "{X}");
    else if (ns[0]) {
        puts_(c, "{");
        puts_(c, ns);
        puts_(c, "}");
    }
}

/* <{ns}name {ns}attr='value'>children</> ; text as [text]. */
static void ser(col *c, const xpb_node *n)
{
    for (; n; n = n->next) {
        if (n->kind == XPB_NODE_TEXT) {
            assert_int_equal(strlen(n->text), n->text_len);
            puts_(c, "[");
            put(c, n->text, n->text_len);
            puts_(c, "]");
            continue;
        }
        assert_int_equal(n->kind, XPB_NODE_ELEMENT);
        puts_(c, "<");
        put_ns(c, n->ns);
        puts_(c, n->name);
        for (size_t i = 0; i < n->n_attrs; i++) {
            puts_(c, " ");
            put_ns(c, n->attrs[i].ns);
            puts_(c, n->attrs[i].name);
            puts_(c, "='");
            put(c, n->attrs[i].value, n->attrs[i].value_len);
            puts_(c, "'");
        }
        puts_(c, ">");
        ser(c, n->children);
        puts_(c, "</>");
    }
}

static int on_open(void *ud, const xpb_node *h)
{
    col *c = ud;
    c->n_open++;
    assert_null(h->next);
    puts_(c, "OPEN");
    ser(c, h);
    puts_(c, "\n");
    return 0;
}

static int on_stanza(void *ud, const xpb_node *s)
{
    col *c = ud;
    c->n_stanzas++;
    c->delivered_in_feed = c->feed_no;
    assert_null(s->next);
    ser(c, s);
    puts_(c, "\n");
    if (c->reset_on == c->n_stanzas) assert_int_equal(xpb_reader_reset(c->r), 0);
    return c->stop_on == c->n_stanzas ? 7 : 0;
}

static void on_close(void *ud)
{
    col *c = ud;
    c->n_close++;
    puts_(c, "CLOSE\n");
    if (c->reset_on_close) assert_int_equal(xpb_reader_reset(c->r), 0);
}

static const xpb_reader_callbacks CBS = {on_open, on_stanza, on_close};

static xpb_reader *mk(col *c, xpb_reader_mode mode, const xpb_reader_limits *lim)
{
    memset(c, 0, sizeof *c);
    assert_int_equal(xpb_reader_new(&c->r, mode, lim, &CBS, c), 0);
    return c->r;
}

static void done(col *c)
{
    xpb_reader_free(c->r);
    free(c->log);
    c->log = NULL;
}

static int feed_str(xpb_reader *r, const char *s)
{
    return xpb_reader_feed(r, s, strlen(s));
}

/* ---- trees -------------------------------------------------------------- */

static void test_stream_header(void **state)
{
    (void)state;
    col c;
    xpb_reader *r = mk(&c, XPB_READER_STREAM, NULL);
    assert_int_equal(feed_str(r, "<?xml version='1.0'?>" HDR), 0);
    assert_int_equal(c.n_open, 1);
    assert_string_equal(c.log, "OPEN<{S}stream to='example.com' version='1.0'></>\n");
    assert_int_equal(xpb_reader_offset(r), strlen("<?xml version='1.0'?>" HDR));
    assert_string_equal(xpb_reader_error(r), "");
    done(&c);

    r = mk(&c, XPB_READER_STREAM, NULL);
    assert_int_equal(feed_str(r, "<stream:stream xmlns:stream='" XPB_NS_STREAMS
                                 "' xml:lang='en' from='a@b' id='x1'>"),
                     0);
    assert_string_equal(c.log, "OPEN<{S}stream {X}lang='en' from='a@b' id='x1'></>\n");
    done(&c);
}

/* Trim between stanzas gives the arena back and changes nothing that is
 * parsed; inside a stanza split over feeds it is a no-op, so the half-built
 * tree survives. */
static void test_trim_between_stanzas(void **state)
{
    (void)state;
    col c;
    xpb_reader *r = mk(&c, XPB_READER_STREAM, NULL);
    assert_int_equal(feed_str(r, HDR), 0);
    xpb_reader_trim(r);
    assert_int_equal(feed_str(r, "<message to='a@b'><body>one</body></message>"), 0);
    xpb_reader_trim(r);
    assert_int_equal(feed_str(r, "<message to='a@b'><body>tw"), 0);
    xpb_reader_trim(r); /* inside a stanza: kept */
    assert_int_equal(feed_str(r, "o</body><x xmlns='urn:x' k='v'/></message>"), 0);
    xpb_reader_trim(r);
    xpb_reader_trim(r);
    assert_int_equal(feed_str(r, "<presence/>"), 0);
    assert_int_equal(c.n_stanzas, 3);
    assert_string_equal(c.log, "OPEN<{S}stream to='example.com' version='1.0'></>\n"
                               "<{C}message to='a@b'><{C}body>[one]</></>\n"
                               "<{C}message to='a@b'><{C}body>[two]</><{urn:x}x k='v'></></>\n"
                               "<{C}presence></>\n");
    done(&c);
}

/* Parking between stanzas gives expat back and keeps only the start tag; the
 * next feed rebuilds the parser, so prefixes declared on the stream, the
 * default namespace, offsets, limits and the closing tag all go on as if it
 * had never been parked. Where a stanza or a partial token is open, park
 * refuses and nothing is lost. */
static void test_park_between_stanzas(void **state)
{
    (void)state;
    col c;
    xpb_reader_limits lim = {.max_stanza_bytes = 10000};
    xpb_reader *r = mk(&c, XPB_READER_STREAM, &lim);
    assert_int_equal(xpb_reader_park(r), 0); /* no stream yet */
    const char *hdr = "<?xml version='1.0'?><s:stream xmlns:s='" XPB_NS_STREAMS
                      "' xmlns='jabber:client' xmlns:p='urn:p' id='i1'>";
    assert_int_equal(feed_str(r, hdr), 0);
    assert_int_equal(xpb_reader_park(r), 1);
    assert_int_equal(xpb_reader_park(r), 0); /* already parked */
    assert_int_equal(feed_str(r, "<message p:a='1'><body>one</body></message>\n"), 0);
    assert_int_equal(xpb_reader_park(r), 1);
    assert_int_equal(feed_str(r, "<presence/><mess"), 0);
    assert_int_equal(xpb_reader_park(r), 0); /* "<mess" is buffered in expat */
    assert_int_equal(feed_str(r, "age><body>t"), 0);
    assert_int_equal(xpb_reader_park(r), 0); /* inside a stanza */
    assert_int_equal(feed_str(r, "wo</body></message>"), 0);
    assert_int_equal(xpb_reader_park(r), 1);
    assert_int_equal(c.n_open, 1); /* the replayed header is not a new stream */
    assert_int_equal(c.n_stanzas, 3);
    assert_string_equal(c.log, "OPEN<{S}stream id='i1'></>\n"
                               "<{C}message {urn:p}a='1'><{C}body>[one]</></>\n"
                               "<{C}presence></>\n"
                               "<{C}message><{C}body>[two]</></>\n");
    /* Offsets in errors count the user's bytes only, across parks. */
    size_t at = xpb_reader_offset(r);
    assert_int_equal(feed_str(r, "  x"), XPB_ETEXT);
    char want[64];
    snprintf(want, sizeof want, "at byte %zu", at + 2);
    assert_non_null(strstr(xpb_reader_error(r), want));
    done(&c);

    /* The closing tag after a park. */
    r = mk(&c, XPB_READER_STREAM, &lim);
    assert_int_equal(feed_str(r, HDR), 0);
    assert_int_equal(xpb_reader_park(r), 1);
    assert_int_equal(feed_str(r, "<iq type='get' id='1'/>"), 0);
    assert_int_equal(xpb_reader_park(r), 1);
    assert_int_equal(feed_str(r, "</stream:stream>"), 0);
    assert_int_equal(c.n_close, 1);
    assert_int_equal(xpb_reader_park(r), 0); /* closed */
    done(&c);

    /* The stanza size window goes on across a park. */
    r = mk(&c, XPB_READER_STREAM, &lim);
    assert_int_equal(feed_str(r, HDR), 0);
    assert_int_equal(xpb_reader_park(r), 1);
    static char big[12000];
    memset(big, 'a', sizeof big - 1);
    assert_int_equal(feed_str(r, "<message><body>"), 0);
    assert_int_equal(feed_str(r, big), XPB_ESTANZASIZE);
    done(&c);

    /* After a reset (a new stream) the old header is not replayed. */
    r = mk(&c, XPB_READER_STREAM, &lim);
    assert_int_equal(feed_str(r, HDR), 0);
    assert_int_equal(xpb_reader_reset(r), 0);
    assert_int_equal(xpb_reader_park(r), 0);
    assert_int_equal(feed_str(r,
                              "<stream:stream xmlns='jabber:server' xmlns:stream='" XPB_NS_STREAMS
                              "'><message/>"),
                     0);
    assert_int_equal(xpb_reader_park(r), 1);
    assert_int_equal(feed_str(r, "<presence/>"), 0);
    assert_int_equal(c.n_open, 2);
    assert_non_null(strstr(c.log, "<{jabber:server}presence></>"));
    done(&c);

    /* Fragments have no stream to park. */
    r = mk(&c, XPB_READER_FRAGMENTS, &lim);
    assert_int_equal(feed_str(r, "<message/>"), 0);
    assert_int_equal(xpb_reader_park(r), 0);
    done(&c);
    assert_int_equal(xpb_reader_park(NULL), 0);
}

static void test_stanza_trees(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"<message to='a@b' type='chat' xml:lang='de'><body>hi</body>"
         "<x xmlns='urn:x'><y/></x></message>",
         "<{C}message to='a@b' type='chat' {X}lang='de'><{C}body>[hi]</>"
         "<{urn:x}x><{urn:x}y></></></>"},
        {"<iq type='get' xmlns:p='urn:p'><q xmlns='urn:q' p:attr='v' plain='w'/></iq>",
         "<{C}iq type='get'><{urn:q}q {urn:p}attr='v' plain='w'></></>"},
        /* mixed content: text merged across entity refs, char refs and CDATA */
        {"<message><body>a &amp; b &lt;&#x41;&#66;<![CDATA[<c>&amp;]]>d<i/>e\n</body></message>",
         "<{C}message><{C}body>[a & b <AB<c>&amp;d]<{C}i></>[e\n]</></>"},
        {"<message><body>caf\xc3\xa9 \xf0\x9f\x98\x80</body></message>",
         "<{C}message><{C}body>[caf\xc3\xa9 \xf0\x9f\x98\x80]</></>"},
        {"<presence xmlns='jabber:server'/>", "<{jabber:server}presence></>"},
        {"<a:iq xmlns:a='urn:a'><b/></a:iq>", "<{urn:a}iq><{C}b></></>"},
        {"<m v='&quot;&apos;&gt;'/>", "<{C}m v='\"'>'></>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        col c;
        xpb_reader *r = mk(&c, XPB_READER_STREAM, NULL);
        assert_int_equal(feed_str(r, HDR), 0);
        c.len = 0;
        assert_int_equal(feed_str(r, cases[i].in), 0);
        assert_int_equal(c.n_stanzas, 1);
        char want[1024];
        snprintf(want, sizeof want, "%s\n", cases[i].want);
        assert_string_equal(c.log, want);
        done(&c);
    }
}

static int helpers_cb(void *ud, const xpb_node *s)
{
    int *ok = ud;
    const xpb_attr *to = xpb_node_attr(s, "", "to");
    const xpb_attr *lang = xpb_node_attr(s, XPB_NS_XML, "lang");
    const xpb_node *body = xpb_node_child(s, XPB_NS_CLIENT, "body");
    const xpb_node *x_any = xpb_node_child(s, NULL, "x");
    *ok = to && strcmp(to->value, "a@b") == 0 && to->value_len == 3 && lang &&
          strcmp(lang->value, "en") == 0 && !xpb_node_attr(s, XPB_NS_XML, "to") &&
          !xpb_node_attr(s, NULL, "nope") && body && body->children &&
          strcmp(body->children->text, "hi") == 0 && x_any && strcmp(x_any->ns, "urn:x") == 0 &&
          !xpb_node_child(s, XPB_NS_CLIENT, "x") && !xpb_node_child(body, NULL, "hi");
    return 0;
}

static void test_tree_helpers(void **state)
{
    (void)state;
    int ok = 0;
    xpb_reader_callbacks cb = {NULL, helpers_cb, NULL};
    xpb_reader *r;
    assert_int_equal(xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, &ok), 0);
    assert_int_equal(
        feed_str(r, "<message to='a@b' xml:lang='en'><x xmlns='urn:x'/><body>hi</body></message>"),
        0);
    assert_true(ok);
    xpb_reader_free(r);
    assert_null(xpb_node_attr(NULL, "", "a"));
    assert_null(xpb_node_child(NULL, NULL, "a"));
}

/* ---- refusals ----------------------------------------------------------- */

typedef struct refusal {
    const char *name;
    xpb_reader_mode mode;
    const char *in;
    int code;
    const char *msg1, *msg2; /* substrings the message must contain (msg2 may be NULL) */
    xpb_reader_limits lim;
} refusal;

static const refusal REFUSALS[] = {
    {"doctype first",
     XPB_READER_STREAM,
     "<!DOCTYPE stream:stream>" HDR,
     XPB_EDTD,
     "DOCTYPE",
     "11.1",
     {0}},
    {"doctype internal subset",
     XPB_READER_STREAM,
     "<?xml version='1.0'?><!DOCTYPE s [<!ENTITY x 'y'>]><s/>",
     XPB_EDTD,
     "DOCTYPE",
     "11.1",
     {0}},
    {"doctype in stream", XPB_READER_STREAM, HDR "<!DOCTYPE x>", XPB_EDTD, "11.1", NULL, {0}},
    {"entity decl in stream",
     XPB_READER_STREAM,
     HDR "<!ENTITY x 'y'>",
     XPB_EDTD,
     "11.1",
     NULL,
     {0}},
    {"doctype in fragments", XPB_READER_FRAGMENTS, "<a/><!DOCTYPE a>", XPB_EDTD, "11.1", NULL, {0}},
    {"comment between", XPB_READER_STREAM, HDR "<!-- hi -->", XPB_ECOMMENT, "comment", "11.1", {0}},
    {"comment in stanza",
     XPB_READER_STREAM,
     HDR "<message><!--x--></message>",
     XPB_ECOMMENT,
     "comment",
     NULL,
     {0}},
    {"comment before root",
     XPB_READER_STREAM,
     "<!--x-->" HDR,
     XPB_ECOMMENT,
     "comment",
     "at byte 0",
     {0}},
    {"pi", XPB_READER_STREAM, HDR "<?foo bar?>", XPB_EPI, "processing instruction", "11.1", {0}},
    {"pi in stanza",
     XPB_READER_STREAM,
     HDR "<message><?foo?></message>",
     XPB_EPI,
     "processing instruction",
     NULL,
     {0}},
    {"xml decl mid-stream",
     XPB_READER_STREAM,
     HDR "<?xml version='1.0'?>",
     XPB_EPI,
     "XML declaration",
     NULL,
     {0}},
    {"entity in text",
     XPB_READER_STREAM,
     HDR "<message>&foo;</message>",
     XPB_EENTITY,
     "five predefined",
     "undefined entity",
     {0}},
    {"entity in attr",
     XPB_READER_STREAM,
     HDR "<message to='&nbsp;'/>",
     XPB_EENTITY,
     "five predefined",
     NULL,
     {0}},
    {"nested stream",
     XPB_READER_STREAM,
     HDR "<stream:stream>",
     XPB_ENESTEDSTREAM,
     "nested <stream:stream>",
     NULL,
     {0}},
    {"nested stream deep",
     XPB_READER_STREAM,
     HDR "<message><stream:stream/></message>",
     XPB_ENESTEDSTREAM,
     "nested <stream:stream>",
     NULL,
     {0}},
    {"utf8 bad byte",
     XPB_READER_STREAM,
     HDR "<message>\xff</message>",
     XPB_EUTF8,
     "UTF-8",
     "0xFF",
     {0}},
    {"utf8 overlong", XPB_READER_STREAM, HDR "<m>\xc0\xaf</m>", XPB_EUTF8, "UTF-8", "0xC0", {0}},
    {"utf8 overlong 3",
     XPB_READER_STREAM,
     HDR "<m>\xe0\x80\xaf</m>",
     XPB_EUTF8,
     "UTF-8",
     NULL,
     {0}},
    {"utf8 surrogate",
     XPB_READER_STREAM,
     HDR "<m>\xed\xa0\x80</m>",
     XPB_EUTF8,
     "UTF-8",
     "0xA0",
     {0}},
    {"utf8 beyond 10FFFF",
     XPB_READER_STREAM,
     HDR "<m>\xf4\x90\x80\x80</m>",
     XPB_EUTF8,
     "UTF-8",
     NULL,
     {0}},
    {"utf8 truncated", XPB_READER_STREAM, HDR "<m>\xe2\x82</m>", XPB_EUTF8, "UTF-8", NULL, {0}},
    {"unbound element prefix",
     XPB_READER_STREAM,
     HDR "<foo:bar/>",
     XPB_EPREFIX,
     "prefix",
     "11.2",
     {0}},
    {"unbound attr prefix",
     XPB_READER_STREAM,
     HDR "<message foo:x='1'/>",
     XPB_EPREFIX,
     "prefix",
     NULL,
     {0}},
    {"dup attr",
     XPB_READER_STREAM,
     HDR "<message to='a' to='b'/>",
     XPB_EDUPATTR,
     "duplicate",
     NULL,
     {0}},
    {"dup expanded attr",
     XPB_READER_STREAM,
     HDR "<message xmlns:a='urn:u' xmlns:b='urn:u' a:x='1' b:x='2'/>",
     XPB_EDUPATTR,
     "duplicate",
     NULL,
     {0}},
    {"depth",
     XPB_READER_STREAM,
     HDR "<a><b><c><d/></c></b></a>",
     XPB_EDEPTH,
     "max_depth (3)",
     NULL,
     {0, 3, 0}},
    {"attrs",
     XPB_READER_STREAM,
     HDR "<a x='1' y='2' z='3'/>",
     XPB_EATTRS,
     "max_attrs (2)",
     NULL,
     {0, 0, 2}},
    {"header attrs", XPB_READER_STREAM, HDR, XPB_EATTRS, "max_attrs (1)", NULL, {0, 0, 1}},
    {"text between stanzas",
     XPB_READER_STREAM,
     HDR "<a/> hello",
     XPB_ETEXT,
     "non-whitespace",
     "11.7",
     {0}},
    {"text after newlines",
     XPB_READER_FRAGMENTS,
     "<a/>\r\n \n  x",
     XPB_ETEXT,
     "at byte 10",
     NULL,
     {0}},
    {"text in fragments",
     XPB_READER_FRAGMENTS,
     "x<a/>",
     XPB_ETEXT,
     "non-whitespace",
     "at byte 0",
     {0}},
    {"root not stream",
     XPB_READER_STREAM,
     "<message/>",
     XPB_ENOTSTREAM,
     "<stream:stream>",
     XPB_NS_STREAMS,
     {0}},
    {"root wrong ns",
     XPB_READER_STREAM,
     "<stream:stream xmlns:stream='urn:wrong'>",
     XPB_ENOTSTREAM,
     "<stream:stream>",
     NULL,
     {0}},
    {"mismatched tag",
     XPB_READER_STREAM,
     HDR "<message></iq>",
     XPB_EXML,
     "mismatched tag",
     "well-formed",
     {0}},
    {"bad attr syntax", XPB_READER_STREAM, HDR "<a b=c/>", XPB_EXML, "expat", NULL, {0}},
    {"control char", XPB_READER_STREAM, HDR "<a>\x01</a>", XPB_EXML, "invalid token", NULL, {0}},
    {"wrapper end tag",
     XPB_READER_FRAGMENTS,
     "<a/></xpb-fragments>",
     XPB_EXML,
     "wrapper",
     "at byte 4",
     {0}},
    {"fragments offset",
     XPB_READER_FRAGMENTS,
     "<a/><b></c>",
     XPB_EXML,
     "mismatched",
     "at byte 9",
     {0}},
    {"fragments entity offset",
     XPB_READER_FRAGMENTS,
     "<a/>&foo;",
     XPB_EENTITY,
     "at byte 4",
     NULL,
     {0}},
    {"closed",
     XPB_READER_STREAM,
     HDR "</stream:stream> x",
     XPB_ECLOSED,
     "</stream:stream>",
     NULL,
     {0}},
};

static void test_refusals(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof REFUSALS / sizeof REFUSALS[0]; i++) {
        const refusal *t = &REFUSALS[i];
        col c;
        xpb_reader *r = mk(&c, t->mode, &t->lim);
        int rc = feed_str(r, t->in);
        const char *msg = xpb_reader_error(r);
        if (rc != t->code || !strstr(msg, t->msg1) || (t->msg2 && !strstr(msg, t->msg2)) ||
            !strstr(msg, "at byte "))
            fail_msg("%s: rc %d (want %d) msg '%s'", t->name, rc, t->code, msg);
        done(&c);
    }
}

/* Our own checks must give the same code and message whatever the chunking. */
static void test_refusals_any_chunking(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof REFUSALS / sizeof REFUSALS[0]; i++) {
        const refusal *t = &REFUSALS[i];
        size_t n = strlen(t->in);
        col c;
        xpb_reader *r = mk(&c, t->mode, &t->lim);
        feed_str(r, t->in);
        char want[512];
        snprintf(want, sizeof want, "%s", xpb_reader_error(r));
        done(&c);
        r = mk(&c, t->mode, &t->lim);
        int rc = 0;
        for (size_t k = 0; k < n && rc == 0; k++)
            rc = xpb_reader_feed(r, t->in + k, 1);
        if (rc != t->code) fail_msg("%s byte at a time: rc %d want %d", t->name, rc, t->code);
        /* Rules we check ourselves report the same offset; expat's own errors
         * may point elsewhere inside the failing token. */
        if (t->code != XPB_EXML && t->code != XPB_EENTITY && t->code != XPB_EPREFIX &&
            t->code != XPB_EDUPATTR && t->code != XPB_EDTD && t->code != XPB_EPI)
            assert_string_equal(xpb_reader_error(r), want);
        done(&c);
    }
}

/* Invalid UTF-8 is named with its exact offset wherever it sits, at every
 * two-chunk split; a stanza before it is still delivered; an invalid XML
 * character before it is reported as that, not as UTF-8. */
static void test_utf8_offsets(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        xpb_reader_mode mode;
        const char *in;
        int code;
        size_t at; /* offset of the bad byte, for XPB_EUTF8 */
        int stanzas;
    } cases[] = {
        {"in text", XPB_READER_STREAM, HDR "<m><b>ok\xc3\xa9 \xff</b></m>", XPB_EUTF8, HDR_LEN + 11, 0},
        {"in attribute", XPB_READER_STREAM, HDR "<m a='x\xed\xa0\x80'/>", XPB_EUTF8, HDR_LEN + 8, 0},
        {"in a name", XPB_READER_STREAM, HDR "<m\xc0\xaf/>", XPB_EUTF8, HDR_LEN + 2, 0},
        {"after a stanza", XPB_READER_STREAM, HDR "<p/>\n<m>\xe2\x82<", XPB_EUTF8, HDR_LEN + 10, 1},
        {"between stanzas", XPB_READER_FRAGMENTS, "<p/> \xf4\x90\x80\x80", XPB_EUTF8, 6, 1},
        {"in the header", XPB_READER_STREAM, "<stream:stream xmlns:stream='\xfe'", XPB_EUTF8, 29, 0},
        {"XML char first", XPB_READER_STREAM, HDR "<m>\x01\xff</m>", XPB_EXML, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].in);
        char want[64];
        snprintf(want, sizeof want, "at byte %zu", cases[i].at);
        for (size_t split = 0; split < n; split++) {
            col c;
            xpb_reader *r = mk(&c, cases[i].mode, NULL);
            int rc = xpb_reader_feed(r, cases[i].in, split);
            if (rc == 0) rc = xpb_reader_feed(r, cases[i].in + split, n - split);
            const char *msg = xpb_reader_error(r);
            if (rc != cases[i].code || c.n_stanzas != cases[i].stanzas ||
                (rc == XPB_EUTF8 && !strstr(msg, want)))
                fail_msg("%s, split %zu: rc %d (want %d), %d stanzas (want %d), '%s' (want '%s')",
                         cases[i].name, split, rc, cases[i].code, c.n_stanzas,
                         cases[i].stanzas, msg, want);
            done(&c);
        }
    }
}

static void test_sticky_and_reset(void **state)
{
    (void)state;
    col c;
    xpb_reader *r = mk(&c, XPB_READER_STREAM, NULL);
    assert_int_equal(feed_str(r, HDR "<!-- x -->"), XPB_ECOMMENT);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", xpb_reader_error(r));
    assert_int_equal(feed_str(r, "<message/>"), XPB_ECOMMENT);
    assert_int_equal(xpb_reader_feed(r, "", 0), XPB_ECOMMENT);
    assert_string_equal(xpb_reader_error(r), msg);
    assert_int_equal(c.n_stanzas, 0);

    assert_int_equal(xpb_reader_reset(r), 0);
    assert_string_equal(xpb_reader_error(r), "");
    assert_int_equal(xpb_reader_offset(r), 0);
    assert_int_equal(feed_str(r, "<?xml version='1.0'?>" HDR "<message/>"), 0);
    assert_int_equal(c.n_open, 2);
    assert_int_equal(c.n_stanzas, 1);
    assert_int_equal(xpb_reader_offset(r), strlen("<?xml version='1.0'?>" HDR "<message/>"));
    /* reset mid-stanza: the new stream starts clean */
    assert_int_equal(feed_str(r, "<message><body>half"), 0);
    assert_int_equal(xpb_reader_reset(r), 0);
    c.len = 0;
    assert_int_equal(feed_str(r, HDR "<iq/>"), 0);
    assert_string_equal(c.log, "OPEN<{S}stream to='example.com' version='1.0'></>\n<{C}iq></>\n");
    done(&c);
}

/* A session resets the reader from the callback that saw SASL <success/>;
 * the rest of the same chunk is the new stream. */
static void test_reset_from_callback(void **state)
{
    (void)state;
    col c;
    xpb_reader *r = mk(&c, XPB_READER_STREAM, NULL);
    c.reset_on = 1;
    const char *tail = HDR "<iq/>";
    char in[1024];
    snprintf(in, sizeof in, "%s<success/>%s", HDR, tail);
    assert_int_equal(feed_str(r, in), 0);
    assert_int_equal(c.n_open, 2);
    assert_int_equal(c.n_stanzas, 2);
    assert_int_equal(xpb_reader_offset(r), strlen(tail));
    done(&c);

    /* from stream_close: what follows </stream:stream> is a new stream */
    r = mk(&c, XPB_READER_AUTO, NULL);
    c.reset_on_close = 1;
    assert_int_equal(feed_str(r, HDR "<a/></stream:stream><b/>"), 0);
    assert_int_equal(c.n_close, 1);
    assert_string_equal(c.log, "OPEN<{S}stream to='example.com' version='1.0'></>\n<{C}a></>\n"
                               "CLOSE\n<{C}b></>\n");
    done(&c);
}

static void test_closed(void **state)
{
    (void)state;
    col c;
    xpb_reader *r = mk(&c, XPB_READER_STREAM, NULL);
    assert_int_equal(feed_str(r, HDR "<a/></stream:stream>"), 0);
    assert_int_equal(c.n_close, 1);
    assert_int_equal(xpb_reader_feed(r, "", 0), 0);
    /* XML 1.0 §2.8: whitespace may follow the root element. */
    assert_int_equal(feed_str(r, "\n \r\n\t"), 0);
    assert_int_equal(feed_str(r, "\n!"), XPB_ECLOSED);
    assert_non_null(strstr(xpb_reader_error(r), "</stream:stream>"));
    assert_int_equal(feed_str(r, "<a/>"), XPB_ECLOSED);
    done(&c);

    r = mk(&c, XPB_READER_STREAM, NULL);
    assert_int_equal(feed_str(r, HDR "</stream:stream><a/>"), XPB_ECLOSED);
    assert_int_equal(c.n_close, 1);
    assert_int_equal(c.n_stanzas, 0);
    char want[64];
    snprintf(want, sizeof want, "ended at byte %zu", HDR_LEN + strlen("</stream:stream>"));
    assert_non_null(strstr(xpb_reader_error(r), want));
    done(&c);
}

static void test_callback_stops(void **state)
{
    (void)state;
    col c;
    xpb_reader *r = mk(&c, XPB_READER_STREAM, NULL);
    c.stop_on = 2;
    assert_int_equal(feed_str(r, HDR "<a/><b/><c/>"), XPB_ECALLBACK);
    assert_int_equal(c.n_stanzas, 2);
    assert_non_null(strstr(xpb_reader_error(r), "stanza callback returned 7"));
    assert_int_equal(feed_str(r, "<d/>"), XPB_ECALLBACK);
    assert_int_equal(c.n_stanzas, 2);
    done(&c);
}

/* ---- limits ------------------------------------------------------------- */

/* "<message>" + filler + "</message>", exactly n bytes. */
static char *stanza_of(size_t n)
{
    static const char open[] = "<message>", close[] = "</message>";
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, open, 9);
    memset(s + 9, 'x', n - 19);
    memcpy(s + n - 10, close, 10);
    s[n] = '\0';
    return s;
}

static void check_size(size_t limit_in, size_t limit, size_t n, const char *prefix, int want)
{
    xpb_reader_limits lim = {limit_in, 0, 0};
    col c;
    xpb_reader *r = mk(&c, XPB_READER_STREAM, &lim);
    assert_int_equal(feed_str(r, HDR), 0);
    assert_int_equal(feed_str(r, prefix), 0);
    char *s = stanza_of(n);
    int rc = feed_str(r, s);
    if (rc != want) fail_msg("limit %zu stanza %zu: rc %d want %d", limit_in, n, rc, want);
    if (want == 0) {
        assert_int_equal(c.n_stanzas, 1);
    } else {
        char m[128];
        snprintf(m, sizeof m, "max_stanza_bytes (%zu) at byte %zu", limit, HDR_LEN + limit);
        if (!strstr(xpb_reader_error(r), m)) fail_msg("'%s' lacks '%s'", xpb_reader_error(r), m);
        assert_int_equal(c.n_stanzas, 0);
    }
    free(s);
    done(&c);
}

static void test_stanza_size_limits(void **state)
{
    (void)state;
    check_size(10000, 10000, 10000, "", 0);
    check_size(10000, 10000, 10001, "", XPB_ESTANZASIZE);
    check_size(20000, 20000, 20000, "", 0);
    check_size(20000, 20000, 20001, "", XPB_ESTANZASIZE);
    /* below the RFC 6120 §13.12 floor: raised to 10000 */
    check_size(100, 10000, 9000, "", 0);
    check_size(100, 10000, 10000, "", 0);
    check_size(100, 10000, 10001, "", XPB_ESTANZASIZE);
    /* default 256 KiB */
    check_size(0, XPB_READER_DEFAULT_MAX_STANZA, XPB_READER_DEFAULT_MAX_STANZA, "", 0);
    check_size(0, XPB_READER_DEFAULT_MAX_STANZA, XPB_READER_DEFAULT_MAX_STANZA + 1, "",
               XPB_ESTANZASIZE);
    /* whitespace between stanzas counts toward the next one */
    check_size(10000, 10000, 9999, "\n", 0);
    check_size(10000, 10000, 10000, "\n", XPB_ESTANZASIZE);
}

static void test_size_limit_any_chunking(void **state)
{
    (void)state;
    xpb_reader_limits lim = {10000, 0, 0};
    const size_t sizes[] = {1, 7, 999, 4096, 9999};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (size_t n = 10000; n <= 10001; n++) {
            col c;
            xpb_reader *r = mk(&c, XPB_READER_STREAM, &lim);
            char *s = stanza_of(n);
            assert_int_equal(feed_str(r, HDR), 0);
            int rc = 0;
            for (size_t off = 0; off < n && rc == 0; off += sizes[k])
                rc = xpb_reader_feed(r, s + off, n - off < sizes[k] ? n - off : sizes[k]);
            if (rc == 0) rc = feed_str(r, "<a/> ");
            assert_int_equal(rc, n == 10000 ? 0 : XPB_ESTANZASIZE);
            assert_int_equal(c.n_stanzas, n == 10000 ? 2 : 0);
            free(s);
            done(&c);
        }
    }
}

static void test_depth_and_attr_limits(void **state)
{
    (void)state;
    char in[2048];
    for (unsigned depth = 32; depth <= 33; depth++) {
        size_t len = 0;
        for (unsigned i = 0; i < depth; i++)
            len += (size_t)snprintf(in + len, 16, "<e>");
        for (unsigned i = 0; i < depth; i++)
            len += (size_t)snprintf(in + len, 16, "</e>");
        col c;
        xpb_reader *r = mk(&c, XPB_READER_FRAGMENTS, NULL);
        int rc = feed_str(r, in);
        assert_int_equal(rc, depth == 32 ? 0 : XPB_EDEPTH);
        if (rc) assert_non_null(strstr(xpb_reader_error(r), "max_depth (32)"));
        done(&c);
    }
    xpb_reader_limits lim = {0, 3, 2};
    col c;
    xpb_reader *r = mk(&c, XPB_READER_FRAGMENTS, &lim);
    /* exactly at the limits; xmlns declarations are not attributes */
    assert_int_equal(feed_str(r, "<a xmlns:p='urn:p' xmlns='urn:d' x='1' p:y='2'><b><c/></b></a>"),
                     0);
    assert_int_equal(c.n_stanzas, 1);
    done(&c);
}

/* ---- chunking ----------------------------------------------------------- */

static const char CHUNK_STREAM[] =
    "<?xml version='1.0' encoding='UTF-8'?>\n" HDR "\n  "
    "<message to='romeo@example.net' xml:lang='en' type='chat'><body>Wherefore &amp; "
    "why? caf\xc3\xa9 \xf0\x9f\x98\x80 &#x263A;</body><thread>t1</thread></message>\n"
    "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>"
    "<presence xmlns:x='urn:x' x:a='1'><show>away</show><status><![CDATA[a<b]]>c</status>"
    "</presence>\r\n\t"
    "<a><b>1<c/>2</b>3</a>"
    "</stream:stream>";

static void run_chunked(xpb_reader_mode mode, const char *in, size_t n, size_t split, size_t step,
                        const char *want)
{
    col c;
    xpb_reader *r = mk(&c, mode, NULL);
    if (step == 0) {
        assert_int_equal(xpb_reader_feed(r, in, split), 0);
        assert_int_equal(xpb_reader_feed(r, in + split, n - split), 0);
    } else {
        for (size_t i = 0; i < n; i += step)
            assert_int_equal(xpb_reader_feed(r, in + i, n - i < step ? n - i : step), 0);
    }
    if (strcmp(c.log ? c.log : "", want) != 0)
        fail_msg("split %zu step %zu:\n%s\nwant:\n%s", split, step, c.log, want);
    assert_int_equal(xpb_reader_offset(r), n);
    done(&c);
}

static void test_chunking(void **state)
{
    (void)state;
    const char *in = CHUNK_STREAM;
    size_t n = sizeof CHUNK_STREAM - 1;
    static const char want[] =
        "OPEN<{S}stream to='example.com' version='1.0'></>\n"
        "<{C}message to='romeo@example.net' {X}lang='en' type='chat'><{C}body>[Wherefore & why? "
        "caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x98\xba]</><{C}thread>[t1]</></>\n"
        "<{C}iq type='get' id='1'><{jabber:iq:roster}query></></>\n"
        "<{C}presence {urn:x}a='1'><{C}show>[away]</><{C}status>[a<bc]</></>\n"
        "<{C}a><{C}b>[1]<{C}c></>[2]</>[3]</>\n"
        "CLOSE\n";
    for (xpb_reader_mode m = XPB_READER_STREAM; m <= XPB_READER_AUTO; m += 2) {
        for (size_t split = 0; split <= n; split++)
            run_chunked(m, in, n, split, 0, want);
        for (size_t step = 1; step <= 7; step++)
            run_chunked(m, in, n, 0, step, want);
    }
}

static void test_fragments_chunking(void **state)
{
    (void)state;
    static const char in[] = "<message to='a'><body>hi</body></message>\n"
                             "<presence/><iq xmlns='jabber:server' type='get'/> <open "
                             "xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x'/>";
    static const char want[] = "<{C}message to='a'><{C}body>[hi]</></>\n"
                               "<{C}presence></>\n"
                               "<{jabber:server}iq type='get'></>\n"
                               "<{urn:ietf:params:xml:ns:xmpp-framing}open to='x'></>\n";
    size_t n = sizeof in - 1;
    for (xpb_reader_mode m = XPB_READER_FRAGMENTS; m <= XPB_READER_AUTO; m++) {
        for (size_t split = 0; split <= n; split++)
            run_chunked(m, in, n, split, 0, want);
        run_chunked(m, in, n, 0, 1, want);
    }
}

/* Feed head + 200000 * fill + tail in 1 KiB chunks; the stanza must come out
 * in the feed call that carries its last byte. */
static void check_delivered_on_last_byte(const char *head, char fill, const char *tail)
{
    const size_t big = 200000;
    size_t hl = strlen(head), tl = strlen(tail), n = hl + big + tl;
    char *s = malloc(n);
    assert_non_null(s);
    memcpy(s, head, hl);
    memset(s + hl, fill, big);
    memcpy(s + hl + big, tail, tl);
    col c;
    xpb_reader *r = mk(&c, XPB_READER_STREAM, NULL);
    assert_int_equal(feed_str(r, HDR), 0);
    c.len = 0;
    int last = 0;
    for (size_t off = 0; off < n; off += 1024) {
        c.feed_no = ++last;
        assert_int_equal(xpb_reader_feed(r, s + off, n - off < 1024 ? n - off : 1024), 0);
        if (off + 1024 < n) assert_int_equal(c.n_stanzas, 0);
    }
    assert_int_equal(c.n_stanzas, 1);
    assert_int_equal(c.delivered_in_feed, last);
    free(s);
    done(&c);
}

/* expat >= 2.6 (and Debian's 2.5.0 backport) defers reparsing a big token
 * until much more input arrives; we switch that off so a stanza is delivered
 * as soon as its last byte is fed. */
static void test_reparse_deferral_off(void **state)
{
    (void)state;
    /* one 200 KB token (a start tag with a huge attribute) */
    check_delivered_on_last_byte("<message><x a='", 'y', "'/></message>");
    /* 200 KB of text, delivered merged into one text node */
    check_delivered_on_last_byte("<message><body>", 'y', "</body></message>");
    col c;
    xpb_reader *r = mk(&c, XPB_READER_FRAGMENTS, NULL);
    char *s = malloc(200100);
    assert_non_null(s);
    int len = snprintf(s, 100, "<message><body>");
    memset(s + len, 'y', 200000);
    snprintf(s + len + 200000, 100, "</body></message>");
    for (size_t off = 0; off < strlen(s); off += 1000)
        assert_int_equal(
            xpb_reader_feed(r, s + off, strlen(s) - off < 1000 ? strlen(s) - off : 1000), 0);
    assert_int_equal(c.len, strlen("<{C}message><{C}body>[]</></>\n") + 200000);
    free(s);
    done(&c);
}

/* ---- modes -------------------------------------------------------------- */

static void test_auto_mode(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc, opens, stanzas;
    } cases[] = {
        {"<?xml version='1.0'?>" HDR "<a/>", 0, 1, 1},
        {HDR "<a/>", 0, 1, 1},
        {"\n  " HDR "<a/>", 0, 1, 1},
        {"<stream:stream xmlns:stream='" XPB_NS_STREAMS "'><a/>", 0, 1, 1},
        {"<message/><iq/>", 0, 0, 2},
        {"<s/>", 0, 0, 1},
        {"<stream/>", 0, 0, 1},
        {"  <stream:streamx xmlns:stream='urn:s'/>", 0, 0, 1},
        {"<stream:stream/>", XPB_EPREFIX, 0, 0},
        {"hello", XPB_ETEXT, 0, 0},
        {"<?xml version='1.0'?><message/>", XPB_ENOTSTREAM, 0, 0},
        {"<?php ?>", XPB_EPI, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].in);
        for (size_t step = 1; step <= n; step += (step < 4 ? 1 : n)) {
            col c;
            xpb_reader *r = mk(&c, XPB_READER_AUTO, NULL);
            int rc = 0;
            for (size_t off = 0; off < n && rc == 0; off += step)
                rc = xpb_reader_feed(r, cases[i].in + off, n - off < step ? n - off : step);
            if (rc != cases[i].rc || c.n_open != cases[i].opens || c.n_stanzas != cases[i].stanzas)
                fail_msg("case %zu step %zu: rc %d opens %d stanzas %d (%s)", i, step, rc, c.n_open,
                         c.n_stanzas, xpb_reader_error(r));
            if (rc == 0) assert_int_equal(xpb_reader_offset(r), n);
            done(&c);
        }
    }
}

static void test_auto_whitespace_only_is_bounded(void **state)
{
    (void)state;
    xpb_reader_limits lim = {10000, 0, 0};
    col c;
    xpb_reader *r = mk(&c, XPB_READER_AUTO, &lim);
    char ws[4096];
    memset(ws, ' ', sizeof ws);
    int rc = 0;
    for (int i = 0; i < 4 && rc == 0; i++)
        rc = xpb_reader_feed(r, ws, sizeof ws);
    assert_int_equal(rc, XPB_ESTANZASIZE);
    assert_non_null(strstr(xpb_reader_error(r), "max_stanza_bytes (10000) at byte 10000"));
    done(&c);
}

static void test_fragments_no_stream_open(void **state)
{
    (void)state;
    col c;
    xpb_reader *r = mk(&c, XPB_READER_FRAGMENTS, NULL);
    assert_int_equal(feed_str(r, "  <a/>\n<b>t</b>  "), 0);
    assert_int_equal(c.n_open, 0);
    assert_int_equal(c.n_close, 0);
    assert_string_equal(c.log, "<{C}a></>\n<{C}b>[t]</>\n");
    /* reset keeps FRAGMENTS mode */
    assert_int_equal(xpb_reader_reset(r), 0);
    assert_int_equal(feed_str(r, "<c/>"), 0);
    assert_int_equal(c.n_stanzas, 3);
    done(&c);
}

/* ---- stanza sizes as received, and dictionary ids on nodes -------------- */

typedef struct sizes {
    xpb_reader *r;
    size_t got[8];
    int n;
    int ns_ok; /* every element's ns_id agreed with the dictionary */
} sizes;

static void check_ns_ids(sizes *z, const xpb_node *n)
{
    for (; n; n = n->next) {
        if (n->kind != XPB_NODE_ELEMENT) continue;
        if (n->ns_id != xpb_ns_id(n->ns)) z->ns_ok = 0;
        if (n->ns_id != 0 && n->ns != xpb_ns_uri(n->ns_id)) z->ns_ok = 0; /* shared, not copied */
        check_ns_ids(z, n->children);
    }
}

static int on_sized(void *ud, const xpb_node *el)
{
    sizes *z = ud;
    if (z->n < 8) z->got[z->n++] = xpb_reader_stanza_bytes(z->r);
    check_ns_ids(z, el);
    return 0;
}

static void test_stanza_bytes(void **state)
{
    (void)state;
    static const char *const st[] = {
        "<message id='a' xml:lang='en'><body>x &amp; \xc3\xa9</body></message>",
        "<presence/>",
        "<iq type='get' id='q'><ping xmlns='urn:xmpp:ping'/><x xmlns='urn:example:other'/></iq>",
    };
    const xpb_reader_mode modes[] = {XPB_READER_STREAM, XPB_READER_FRAGMENTS, XPB_READER_AUTO};
    for (size_t m = 0; m < 3; m++) {
        char in[1024];
        size_t len = 0;
        if (modes[m] == XPB_READER_STREAM) len = (size_t)snprintf(in, sizeof in, "%s", HDR);
        len += (size_t)snprintf(in + len, sizeof in - len, " \n%s\n%s  %s\n", st[0], st[1], st[2]);
        for (size_t step = 1; step <= len; step = step == 1 ? len : len + 1) {
            sizes z = {.ns_ok = 1};
            xpb_reader_callbacks cb = {.stanza = on_sized};
            assert_int_equal(xpb_reader_new(&z.r, modes[m], NULL, &cb, &z), 0);
            for (size_t off = 0; off < len; off += step) {
                size_t n = len - off < step ? len - off : step;
                assert_int_equal(xpb_reader_feed(z.r, in + off, n), 0);
            }
            assert_int_equal(z.n, 3);
            for (int i = 0; i < 3; i++) assert_int_equal(z.got[i], strlen(st[i]));
            assert_true(z.ns_ok);
            assert_int_equal(xpb_reader_stanza_bytes(z.r), 0); /* outside a callback */
            xpb_reader_free(z.r);
        }
    }
}

static void test_bad_args(void **state)
{
    (void)state;
    xpb_reader *r = NULL;
    assert_int_equal(xpb_reader_new(NULL, XPB_READER_STREAM, NULL, &CBS, NULL), XPB_EINVAL);
    assert_int_equal(xpb_reader_new(&r, (xpb_reader_mode)9, NULL, &CBS, NULL), XPB_EINVAL);
    assert_null(r);
    /* no callbacks at all is fine */
    assert_int_equal(xpb_reader_new(&r, XPB_READER_STREAM, NULL, NULL, NULL), 0);
    assert_int_equal(feed_str(r, HDR "<a/></stream:stream>"), 0);
    assert_int_equal(xpb_reader_feed(r, NULL, 1), XPB_EINVAL);
    xpb_reader_free(r);
    xpb_reader_free(NULL);
}

/* ---- xpb_node_clone ------------------------------------------------------ */

typedef struct clone_col {
    xpb_arena *a;
    xpb_node *copy;
    xpb_buf orig;
} clone_col;

static int keep_clone(void *ud, const xpb_node *s)
{
    clone_col *k = ud;
    assert_int_equal(xpb_node_clone(k->a, s, &k->copy), 0);
    assert_int_equal(xpb_xml_write_node(&k->orig, s, "jabber:client"), 0);
    return 0;
}

/* The copy outlives the reader (freed before it is read) and writes the same
 * XML as the original did: names, namespaces, attributes, text, order. */
static void test_clone_outlives_the_reader(void **state)
{
    (void)state;
    clone_col k = {.a = xpb_arena_new(0)};
    xpb_buf_init(&k.orig, 0);
    xpb_reader_callbacks cb = {.stanza = keep_clone};
    xpb_reader *r;
    assert_int_equal(xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, &k), 0);
    const char *xml = "<message xmlns='jabber:client' to='a@b/c' xml:lang='en' type='chat'>"
                      "<body>h&amp;i &lt;3</body><x xmlns='urn:y' k='v'><z/>tail<w a='1'/></x>"
                      "</message>";
    assert_int_equal(xpb_reader_feed(r, xml, strlen(xml)), 0);
    xpb_reader_free(r); /* the original tree is gone */
    assert_non_null(k.copy);
    assert_null(k.copy->next);
    xpb_buf again;
    xpb_buf_init(&again, 0);
    assert_int_equal(xpb_xml_write_node(&again, k.copy, "jabber:client"), 0);
    assert_int_equal(again.len, k.orig.len);
    assert_memory_equal(again.data, k.orig.data, again.len);
    assert_string_equal(xpb_node_attr(k.copy, XPB_NS_XML, "lang")->value, "en");
    xpb_buf_free(&again);
    xpb_buf_free(&k.orig);

    /* Deeper than the bound: refused by name, not copied. */
    xpb_node *deep = NULL, **at = &deep;
    for (unsigned i = 0; i <= XPB_NODE_CLONE_MAX_DEPTH + 1; i++) {
        *at = xpb_arena_calloc(k.a, sizeof **at);
        (*at)->kind = XPB_NODE_ELEMENT;
        (*at)->name = "d";
        (*at)->ns = "urn:d";
        at = &(*at)->children;
    }
    xpb_node *copy = NULL;
    assert_int_equal(xpb_node_clone(k.a, deep, &copy), XPB_EDEPTH);
    assert_int_equal(xpb_node_clone(NULL, deep, &copy), XPB_EINVAL);
    xpb_arena_free(k.a);
}

/* ---- xpb_reader_clone ------------------------------------------------------ */

typedef struct rclone_col {
    xpb_reader *r;
    xpb_arena *a;
    xpb_node *copy[4];
    xpb_buf orig[4];
    size_t n;
} rclone_col;

static int keep_reader_clone(void *ud, const xpb_node *s)
{
    rclone_col *k = ud;
    assert_true(k->n < 4);
    assert_int_equal(xpb_reader_clone(k->r, s, k->a, &k->copy[k->n]), 0);
    xpb_buf_init(&k->orig[k->n], 0);
    assert_int_equal(xpb_xml_write_node(&k->orig[k->n], s, "jabber:client"), 0);
    k->n++;
    return 0;
}

/* Stanza after stanza, each copied from the reader's block at once (the
 * block is reset in between), one over several blocks copied node by node:
 * every copy outlives the reader (ASan reports any pointer left in its
 * arena) and writes the same XML; the dictionary's namespaces and the
 * common names are shared, not copied. */
static void test_reader_clone_moves_the_block(void **state)
{
    (void)state;
    rclone_col k = {.a = xpb_arena_new(0)};
    xpb_reader_callbacks cb = {.stanza = keep_reader_clone};
    assert_int_equal(xpb_reader_new(&k.r, XPB_READER_FRAGMENTS, NULL, &cb, &k), 0);
    const char *one = "<message xmlns='jabber:client' to='a@b/c' xml:lang='en' type='chat'>"
                      "<body>h&amp;i &lt;3</body><x xmlns='urn:y' k='v'><z/>tail<w a='1'/></x>"
                      "</message>";
    const char *two = "<presence xmlns='jabber:client' from='d@e/f'><show>away</show>"
                      "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>"
                      "</presence>";
    assert_int_equal(xpb_reader_feed(k.r, one, strlen(one)), 0);
    assert_int_equal(xpb_reader_feed(k.r, two, strlen(two)), 0);
    /* Over the reader's 16 KiB block: text of 40,000 bytes. */
    xpb_buf big;
    xpb_buf_init(&big, 0);
    assert_int_equal(xpb_buf_append(&big, "<message xmlns='jabber:client'><body>", 37), 0);
    for (int i = 0; i < 4000; i++)
        assert_int_equal(xpb_buf_append(&big, "0123456789", 10), 0);
    assert_int_equal(xpb_buf_append(&big, "</body></message>", 17), 0);
    assert_int_equal(xpb_reader_feed(k.r, (const char *)big.data, big.len), 0);
    xpb_buf_free(&big);
    xpb_reader_free(k.r); /* every original tree is gone */
    assert_int_equal(k.n, 3);
    for (size_t i = 0; i < k.n; i++) {
        xpb_buf again;
        xpb_buf_init(&again, 0);
        assert_null(k.copy[i]->next);
        assert_int_equal(xpb_xml_write_node(&again, k.copy[i], "jabber:client"), 0);
        assert_int_equal(again.len, k.orig[i].len);
        assert_memory_equal(again.data, k.orig[i].data, again.len);
        xpb_buf_free(&again);
        xpb_buf_free(&k.orig[i]);
    }
    assert_ptr_equal(k.copy[0]->ns, xpb_ns_uri(xpb_ns_id(XPB_NS_CLIENT)));
    assert_string_equal(xpb_node_attr(k.copy[0], XPB_NS_XML, "lang")->value, "en");
    const xpb_node *x = xpb_node_child(k.copy[0], "urn:y", "x");
    assert_non_null(x);
    assert_string_equal(xpb_node_attr(x, "", "k")->value, "v");
    assert_int_equal(k.copy[2]->children->children->text_len, 40000);
    xpb_arena_free(k.a);
}

/* A tree that is not the reader's (or not all in the range) is refused by
 * xpb_node_relocate, and xpb_reader_clone copies it node by node instead;
 * an arena over two blocks, or empty, has no single range to copy. */
static void test_reader_clone_other_trees(void **state)
{
    (void)state;
    xpb_arena *mine = xpb_arena_new(0), *dst = xpb_arena_new(0);
    xpb_node *root = xpb_arena_calloc(mine, sizeof *root);
    xpb_node *child = xpb_arena_calloc(dst, sizeof *child); /* outside mine's range */
    root->kind = child->kind = XPB_NODE_ELEMENT;
    root->ns = child->ns = "urn:t";
    root->name = "r";
    child->name = "c";
    root->children = child;
    void *copy;
    const unsigned char *base;
    size_t len;
    assert_int_equal(xpb_arena_copy_used(dst, mine, &copy, &base, &len), 0);
    assert_int_equal(len, sizeof *root);
    xpb_node *out = NULL;
    assert_int_equal(xpb_node_relocate(copy, base, len, root, &out), XPB_EINVAL);
    assert_int_equal(xpb_node_relocate(copy, base, len, child, &out), XPB_EINVAL);

    xpb_reader_callbacks cb = {0};
    xpb_reader *r;
    assert_int_equal(xpb_reader_new(&r, XPB_READER_FRAGMENTS, NULL, &cb, NULL), 0);
    assert_int_equal(xpb_reader_clone(r, root, dst, &out), 0); /* node by node */
    assert_ptr_not_equal(out, root);
    assert_string_equal(out->children->name, "c");
    assert_ptr_not_equal(out->children, child);
    assert_int_equal(xpb_reader_clone(NULL, root, dst, &out), XPB_EINVAL);
    xpb_reader_free(r);

    xpb_arena_reset(mine);
    assert_int_equal(xpb_arena_copy_used(dst, mine, &copy, &base, &len), 1); /* empty */
    assert_non_null(xpb_arena_alloc(mine, 100));
    assert_non_null(xpb_arena_alloc(mine, 32 * 1024)); /* a second block */
    assert_int_equal(xpb_arena_copy_used(dst, mine, &copy, &base, &len), 1);
    xpb_arena_free(mine);
    xpb_arena_free(dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_header),
        cmocka_unit_test(test_trim_between_stanzas),
        cmocka_unit_test(test_park_between_stanzas),
        cmocka_unit_test(test_stanza_trees),
        cmocka_unit_test(test_tree_helpers),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_refusals_any_chunking),
        cmocka_unit_test(test_utf8_offsets),
        cmocka_unit_test(test_sticky_and_reset),
        cmocka_unit_test(test_reset_from_callback),
        cmocka_unit_test(test_closed),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_stanza_size_limits),
        cmocka_unit_test(test_size_limit_any_chunking),
        cmocka_unit_test(test_depth_and_attr_limits),
        cmocka_unit_test(test_chunking),
        cmocka_unit_test(test_fragments_chunking),
        cmocka_unit_test(test_reparse_deferral_off),
        cmocka_unit_test(test_auto_mode),
        cmocka_unit_test(test_auto_whitespace_only_is_bounded),
        cmocka_unit_test(test_fragments_no_stream_open),
        cmocka_unit_test(test_stanza_bytes),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_clone_outlives_the_reader),
        cmocka_unit_test(test_reader_clone_moves_the_block),
        cmocka_unit_test(test_reader_clone_other_trees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
