/* Writer: escaping, namespace declarations, self-closing tags, buffer bounds,
 * the UTF-8 / XML character check, the stream header, whole-tree output with
 * its depth bound, and the JSON view of a record. Exact strings throughout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "xpb_error.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"

/* Output so far as a NUL-terminated string (the buffer is not terminated). */
static const char *buf_str(xpb_buf *b)
{
    static char tmp[8192];
    assert_true(b->len < sizeof tmp);
    if (b->len) memcpy(tmp, b->data, b->len);
    tmp[b->len] = '\0';
    return tmp;
}

/* ---- Escaping ------------------------------------------------------------ */

struct esc_case {
    const char *in;
    const char *text;  /* expected from escape_text */
    const char *attr;  /* expected from escape_attr */
};

static const struct esc_case esc_cases[] = {
    {"", "", ""},
    {"plain", "plain", "plain"},
    {"a&b<c>d", "a&amp;b&lt;c&gt;d", "a&amp;b&lt;c&gt;d"},
    {"it's \"q\"", "it's \"q\"", "it&apos;s &quot;q&quot;"},
    {"t\tn\nr\r", "t\tn\nr&#13;", "t&#9;n&#10;r&#13;"},
    {"</body></message><iq type='set'>", "&lt;/body&gt;&lt;/message&gt;&lt;iq type='set'&gt;",
     "&lt;/body&gt;&lt;/message&gt;&lt;iq type=&apos;set&apos;&gt;"},
    {"]]>", "]]&gt;", "]]&gt;"},
    /* non-ASCII passes through untouched */
    {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80",
     "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"},
    /* long runs: the 8-byte fast path, specials at word edges */
    {"0123456789abcdef<0123456789abcdef&", "0123456789abcdef&lt;0123456789abcdef&amp;",
     "0123456789abcdef&lt;0123456789abcdef&amp;"},
    {"01234567'1234567\x01\x7f" "abcdefgh>", "01234567'1234567\x01\x7f" "abcdefgh&gt;",
     "01234567&apos;1234567\x01\x7f" "abcdefgh&gt;"},
};

static void test_escape_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof esc_cases / sizeof esc_cases[0]; i++) {
        const struct esc_case *c = &esc_cases[i];
        xpb_buf b;
        xpb_buf_init(&b, 0);
        assert_int_equal(xpb_xml_escape_text(&b, c->in, strlen(c->in)), 0);
        assert_string_equal(buf_str(&b), c->text);
        xpb_buf_reset(&b);
        assert_int_equal(xpb_xml_escape_attr(&b, c->in, strlen(c->in)), 0);
        assert_string_equal(buf_str(&b), c->attr);
        xpb_buf_free(&b);
    }
}

static void test_body_injection_escaped(void **state)
{
    (void)state;
    const char *evil = "</body></message><iq type='set'>";
    xpb_buf b;
    xpb_buf_init(&b, 0);
    xpb_writer w;
    xpb_writer_init(&w, &b, XPB_NS_CLIENT);
    assert_int_equal(xpb_writer_start(&w, XPB_NS_CLIENT, "message"), 0);
    assert_int_equal(xpb_writer_attr(&w, "", "id", evil, strlen(evil)), 0);
    assert_int_equal(xpb_writer_start(&w, XPB_NS_CLIENT, "body"), 0);
    assert_int_equal(xpb_writer_text(&w, evil, strlen(evil)), 0);
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_string_equal(buf_str(&b),
                        "<message id='&lt;/body&gt;&lt;/message&gt;&lt;iq type=&apos;set&apos;&gt;'>"
                        "<body>&lt;/body&gt;&lt;/message&gt;&lt;iq type='set'&gt;</body></message>");
    xpb_buf_free(&b);
}

/* ---- Namespaces ---------------------------------------------------------- */

static void test_ns_element_rules(void **state)
{
    (void)state;
    static const struct {
        const char *parent, *ns, *out;
    } cases[] = {
        {XPB_NS_CLIENT, XPB_NS_CLIENT, "<e/>"},
        {XPB_NS_CLIENT, "urn:x", "<e xmlns='urn:x'/>"},
        {XPB_NS_CLIENT, "", "<e xmlns=''/>"},
        {"", "", "<e/>"},
        {"", XPB_NS_CLIENT, "<e xmlns='jabber:client'/>"},
        {"", "urn:a&b'", "<e xmlns='urn:a&amp;b&apos;'/>"},
        {NULL, "", "<e/>"}, /* NULL parent = no namespace */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        xpb_buf b;
        xpb_buf_init(&b, 0);
        xpb_writer w;
        xpb_writer_init(&w, &b, cases[i].parent);
        assert_int_equal(xpb_writer_start(&w, cases[i].ns, "e"), 0);
        assert_int_equal(xpb_writer_end(&w), 0);
        assert_string_equal(buf_str(&b), cases[i].out);
        assert_int_equal(w.depth, 0);
        xpb_buf_free(&b);
    }
}

static void test_ns_attrs(void **state)
{
    (void)state;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    xpb_writer w;
    xpb_writer_init(&w, &b, XPB_NS_CLIENT);
    assert_int_equal(xpb_writer_start(&w, XPB_NS_CLIENT, "message"), 0);
    assert_int_equal(xpb_writer_attr(&w, XPB_NS_XML, "lang", "en", 2), 0);
    assert_int_equal(xpb_writer_attr(&w, "", "to", "a@b", 3), 0);
    /* A value that merely looks like a declaration must not be reused. */
    assert_int_equal(xpb_writer_attr(&w, "", "v", "xmlns:ns1='urn:a'", 17), 0);
    assert_int_equal(xpb_writer_attr(&w, "urn:a", "x", "1", 1), 0);
    assert_int_equal(xpb_writer_attr(&w, "urn:a", "y", "2", 1), 0);
    assert_int_equal(xpb_writer_attr(&w, "urn:b", "z", "3", 1), 0);
    assert_int_equal(xpb_writer_attr(&w, "urn:a", "w", "4", 1), 0);
    /* Child: urn:a is not declared here, so a fresh prefix (counter per writer). */
    assert_int_equal(xpb_writer_start(&w, "urn:x", "child"), 0);
    assert_int_equal(xpb_writer_attr(&w, "urn:a", "x", "5", 1), 0);
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_string_equal(buf_str(&b),
                        "<message xml:lang='en' to='a@b' v='xmlns:ns1=&apos;urn:a&apos;'"
                        " xmlns:ns1='urn:a' ns1:x='1' ns1:y='2' xmlns:ns2='urn:b' ns2:z='3'"
                        " ns1:w='4'>"
                        "<child xmlns='urn:x' xmlns:ns3='urn:a' ns3:x='5'/></message>");
    xpb_buf_free(&b);
}

static void test_ns_nested_inherit(void **state)
{
    (void)state;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    xpb_writer w;
    xpb_writer_init(&w, &b, "");
    assert_int_equal(xpb_writer_start(&w, XPB_NS_CLIENT, "message"), 0);
    assert_int_equal(xpb_writer_start(&w, XPB_NS_CLIENT, "body"), 0);
    assert_int_equal(xpb_writer_text(&w, "hi", 2), 0);
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_int_equal(xpb_writer_start(&w, "urn:x", "x"), 0);
    assert_int_equal(xpb_writer_start(&w, "urn:x", "y"), 0);
    assert_int_equal(xpb_writer_text(&w, "", 0), 0); /* empty text keeps <y/> */
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_int_equal(xpb_writer_start(&w, NULL, "z"), 0); /* NULL = inherit */
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_int_equal(xpb_writer_start(&w, XPB_NS_CLIENT, "back"), 0);
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_int_equal(xpb_writer_start(&w, "", "none"), 0);
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_string_equal(buf_str(&b), "<message xmlns='jabber:client'><body>hi</body>"
                                     "<x xmlns='urn:x'><y/><z/><back xmlns='jabber:client'/></x>"
                                     "<none xmlns=''/></message>");
    xpb_buf_free(&b);
}

static void test_writer_misuse(void **state)
{
    (void)state;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    xpb_writer w;
    xpb_writer_init(&w, &b, "");
    assert_int_equal(xpb_writer_end(&w), XPB_EINVAL);
    assert_int_equal(xpb_writer_text(&w, "x", 1), XPB_EINVAL);
    assert_int_equal(xpb_writer_attr(&w, "", "a", "b", 1), XPB_EINVAL);
    assert_int_equal(xpb_writer_start(&w, "", "e"), 0);
    assert_int_equal(xpb_writer_text(&w, "t", 1), 0);
    assert_int_equal(xpb_writer_attr(&w, "", "a", "b", 1), XPB_EINVAL); /* after content */
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_string_equal(buf_str(&b), "<e>t</e>");
    xpb_buf_free(&b);
}

/* ---- Buffer bounds ------------------------------------------------------- */

static void test_buf_growth_and_max(void **state)
{
    (void)state;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    for (int i = 0; i < 10000; i++) assert_int_equal(xpb_buf_append(&b, "x", 1), 0);
    assert_int_equal(b.len, 10000);
    assert_true(b.cap >= 10000 && b.cap < 40000);
    assert_int_equal(xpb_buf_append(&b, "", 0), 0);
    xpb_buf_free(&b);
    assert_null(b.data);

    xpb_buf_init(&b, 10);
    assert_int_equal(xpb_buf_append_str(&b, "12345678"), 0);
    assert_int_equal(xpb_buf_append_str(&b, "abc"), XPB_ETOOBIG);
    assert_int_equal(b.len, 8);
    assert_int_equal(xpb_buf_append_str(&b, "ab"), 0);
    assert_int_equal(b.len, 10);
    assert_int_equal(xpb_buf_append_str(&b, "c"), XPB_ETOOBIG);
    assert_true(b.cap <= 10);
    xpb_buf_reset(&b);
    /* Escaping that grows past max leaves nothing behind: "a<" -> "a&lt;" (5). */
    assert_int_equal(xpb_buf_append_str(&b, "123456"), 0);
    assert_int_equal(xpb_xml_escape_text(&b, "a<", 2), XPB_ETOOBIG);
    assert_int_equal(b.len, 6);
    assert_int_equal(xpb_xml_escape_attr(&b, "'", 1), XPB_ETOOBIG);
    assert_int_equal(b.len, 6);
    assert_int_equal(xpb_xml_escape_text(&b, ">", 1), 0);
    assert_string_equal(buf_str(&b), "123456&gt;");
    xpb_buf_free(&b);
}

/* make_room: later appends up to it keep the same storage; max still holds. */
static void test_buf_make_room(void **state)
{
    (void)state;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_buf_append_str(&b, "ab"), 0);
    assert_int_equal(xpb_buf_make_room(&b, 5000), 0);
    assert_true(b.cap >= 5002);
    const char *room = b.data;
    for (int i = 0; i < 5000; i++) assert_int_equal(xpb_buf_append(&b, "y", 1), 0);
    assert_ptr_equal(b.data, room);
    assert_int_equal(b.len, 5002);
    assert_int_equal(memcmp(b.data, "abyy", 4), 0);
    xpb_buf_free(&b);
    xpb_buf_init(&b, 10);
    assert_int_equal(xpb_buf_append_str(&b, "1234"), 0);
    assert_int_equal(xpb_buf_make_room(&b, 7), XPB_ETOOBIG);
    assert_int_equal(xpb_buf_make_room(&b, 6), 0);
    assert_int_equal(b.len, 4);
    xpb_buf_free(&b);
}

static void test_writer_toobig_leaves_nothing(void **state)
{
    (void)state;
    xpb_buf b;
    xpb_buf_init(&b, 16);
    xpb_writer w;
    xpb_writer_init(&w, &b, "");
    assert_int_equal(xpb_writer_start(&w, "", "a"), 0);             /* "<a" */
    assert_int_equal(xpb_writer_attr(&w, "urn:long", "x", "1", 1), XPB_ETOOBIG);
    assert_int_equal(w.prefix_counter, 0);
    assert_int_equal(xpb_writer_start(&w, "urn:toolong", "b"), XPB_ETOOBIG);
    assert_int_equal(w.depth, 1);
    assert_true(w.tag_open);
    assert_string_equal(buf_str(&b), "<a");
    assert_int_equal(xpb_writer_text(&w, "0123456789abcdef", 16), XPB_ETOOBIG);
    assert_true(w.tag_open);
    assert_int_equal(xpb_writer_end(&w), 0);
    assert_string_equal(buf_str(&b), "<a/>");
    xpb_buf_free(&b);

    xpb_buf_init(&b, 20);
    char body[] = "<b>";
    xpb_node text = {.kind = XPB_NODE_TEXT, .text = body, .text_len = 3};
    xpb_node el = {.kind = XPB_NODE_ELEMENT, .ns = "", .name = "message", .children = &text};
    assert_int_equal(xpb_buf_append_str(&b, "x"), 0);
    assert_int_equal(xpb_xml_write_node(&b, &el, ""), XPB_ETOOBIG); /* needs 28 bytes */
    assert_string_equal(buf_str(&b), "x");
    xpb_buf_free(&b);
}

/* ---- Character check ----------------------------------------------------- */

struct chk_case {
    const char *s;
    size_t len;
    int rc;
    size_t off;
};
#define CHK(lit, rc, off) {lit, sizeof(lit) - 1, rc, off}

static const struct chk_case chk_cases[] = {
    CHK("", 0, 0),
    CHK("hello world, plain ASCII with \t tab \n lf \r cr and \x7f", 0, 0),
    CHK("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 0, 0),
    CHK("\xC2\x80\xDF\xBF", 0, 0),                  /* U+0080, U+07FF */
    CHK("\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBD", 0, 0), /* U+D7FF, U+E000, U+FFFD */
    CHK("\xF0\x90\x80\x80\xF4\x8F\xBF\xBF", 0, 0),  /* U+10000, U+10FFFF */
    CHK("ab\x01", XPB_EXMLCHAR, 2),
    CHK("abc\0d", XPB_EXMLCHAR, 3),
    CHK("\x1f", XPB_EXMLCHAR, 0),
    CHK("\x0b", XPB_EXMLCHAR, 0),
    CHK("abc\xEF\xBF\xBE", XPB_EXMLCHAR, 3), /* U+FFFE */
    CHK("\xEF\xBF\xBF", XPB_EXMLCHAR, 0),    /* U+FFFF */
    CHK("x\xED\xA0\x80", XPB_EUTF8, 1),      /* lone high surrogate */
    CHK("\xED\xBF\xBF", XPB_EUTF8, 0),       /* low surrogate */
    CHK("\xC0\xAF", XPB_EUTF8, 0),           /* overlong '/' */
    CHK("a\xC1\xBF", XPB_EUTF8, 1),
    CHK("\xE0\x80\xAF", XPB_EUTF8, 0),       /* overlong 3-byte */
    CHK("\xF0\x80\x80\xAF", XPB_EUTF8, 0),   /* overlong 4-byte */
    CHK("ab\xF4\x90\x80\x80", XPB_EUTF8, 2), /* U+110000 */
    CHK("\xF5\x80\x80\x80", XPB_EUTF8, 0),
    CHK("\xFF", XPB_EUTF8, 0),
    CHK("ok\x80", XPB_EUTF8, 2),             /* stray continuation */
    CHK("\xE2\x82", XPB_EUTF8, 0),           /* truncated */
    CHK("\xC3" "A", XPB_EUTF8, 0),           /* lead without continuation */
    CHK("\xF0\x9F\x98", XPB_EUTF8, 0),
    /* offsets past the 8-byte fast path */
    CHK("0123456789abcdefghij\x02xyz", XPB_EXMLCHAR, 20),
    CHK("0123456789abcdef\xC3\xA9xxxxxxxx\xEF\xBF\xBExx", XPB_EXMLCHAR, 26),
    CHK("0123456789abcdefg\xED\xA0\x80", XPB_EUTF8, 17),
    CHK("012345\x01", XPB_EXMLCHAR, 6), /* forbidden char before the first full word */
};

static void test_check_text_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof chk_cases / sizeof chk_cases[0]; i++) {
        const struct chk_case *c = &chk_cases[i];
        size_t off = 9999;
        int rc = xpb_xml_check_text(c->s, c->len, &off);
        if (rc != c->rc) fail_msg("case %zu: rc %d, expected %d", i, rc, c->rc);
        if (rc != 0 && off != c->off) fail_msg("case %zu: offset %zu, expected %zu", i, off, c->off);
    }
    assert_int_equal(xpb_xml_check_text("\x01", 1, NULL), XPB_EXMLCHAR); /* NULL offset ok */
}

/* ---- Stream header ------------------------------------------------------- */

static void test_stream_header(void **state)
{
    (void)state;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_xml_write_stream_header(&b, "juliet@im.example.com", "im.example.com",
                                                 NULL, "1.0", "en"),
                     0);
    assert_string_equal(buf_str(&b),
                        "<stream:stream xmlns='jabber:client' "
                        "xmlns:stream='http://etherx.jabber.org/streams' "
                        "from='juliet@im.example.com' to='im.example.com' version='1.0' "
                        "xml:lang='en'>");
    xpb_buf_reset(&b);
    assert_int_equal(xpb_xml_write_stream_header(&b, NULL, NULL, "a'b", NULL, NULL), 0);
    assert_string_equal(buf_str(&b), "<stream:stream xmlns='jabber:client' "
                                     "xmlns:stream='http://etherx.jabber.org/streams' "
                                     "id='a&apos;b'>");
    xpb_buf_free(&b);

    xpb_buf_init(&b, 50);
    assert_int_equal(xpb_xml_write_stream_header(&b, NULL, NULL, NULL, NULL, NULL), XPB_ETOOBIG);
    assert_int_equal(b.len, 0);
    xpb_buf_free(&b);
}

/* ---- Whole trees ----------------------------------------------------------- */

static void test_write_node_tree(void **state)
{
    (void)state;
    xpb_attr msg_attrs[] = {
        {.ns = "", .name = "to", .value = "romeo@example.net", .value_len = 17},
        {.ns = "", .name = "type", .value = "chat", .value_len = 4},
        {.ns = XPB_NS_XML, .name = "lang", .value = "en", .value_len = 2},
    };
    xpb_attr x_attrs[] = {
        {.ns = "", .name = "a", .value = "1\n2", .value_len = 3},
        {.ns = "urn:other", .name = "b", .value = "\"", .value_len = 1},
    };
    xpb_node body_text = {.kind = XPB_NODE_TEXT, .text = "Art thou <not> Romeo & ...", .text_len = 26};
    xpb_node x_text = {.kind = XPB_NODE_TEXT, .text = "t", .text_len = 1};
    xpb_node empty = {.kind = XPB_NODE_ELEMENT, .ns = "urn:x", .name = "empty"};
    x_text.next = &empty;
    xpb_node req = {.kind = XPB_NODE_ELEMENT, .ns = "urn:xmpp:receipts", .name = "request"};
    xpb_node x = {.kind = XPB_NODE_ELEMENT, .ns = "urn:x", .name = "x", .attrs = x_attrs,
                  .n_attrs = 2, .children = &x_text, .next = &req};
    xpb_node body = {.kind = XPB_NODE_ELEMENT, .ns = XPB_NS_CLIENT, .name = "body",
                     .children = &body_text, .next = &x};
    xpb_node msg = {.kind = XPB_NODE_ELEMENT, .ns = XPB_NS_CLIENT, .name = "message",
                    .attrs = msg_attrs, .n_attrs = 3, .children = &body};

    const char *inner = " to='romeo@example.net' type='chat' xml:lang='en'>"
                        "<body>Art thou &lt;not&gt; Romeo &amp; ...</body>"
                        "<x xmlns='urn:x' a='1&#10;2' xmlns:ns1='urn:other' ns1:b='&quot;'>t<empty/></x>"
                        "<request xmlns='urn:xmpp:receipts'/></message>";
    char expect[1024];
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_xml_write_node(&b, &msg, XPB_NS_CLIENT), 0);
    snprintf(expect, sizeof expect, "<message%s", inner);
    assert_string_equal(buf_str(&b), expect);
    xpb_buf_reset(&b);
    assert_int_equal(xpb_xml_write_node(&b, &msg, ""), 0);
    snprintf(expect, sizeof expect, "<message xmlns='jabber:client'%s", inner);
    assert_string_equal(buf_str(&b), expect);
    xpb_buf_reset(&b);
    assert_int_equal(xpb_xml_write_node(&b, &body_text, ""), 0); /* a bare text node */
    assert_string_equal(buf_str(&b), "Art thou &lt;not&gt; Romeo &amp; ...");
    xpb_buf_free(&b);
}

static void test_write_node_depth(void **state)
{
    (void)state;
    enum { N = XPB_WRITER_MAX_DEPTH + 1 };
    xpb_node chain[N];
    memset(chain, 0, sizeof chain);
    for (int i = 0; i < N; i++) {
        chain[i].kind = XPB_NODE_ELEMENT;
        chain[i].ns = "";
        chain[i].name = "d";
        chain[i].children = i + 1 < N ? &chain[i + 1] : NULL;
    }
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_xml_write_node(&b, &chain[0], ""), XPB_EDEPTH);
    assert_int_equal(b.len, 0);
    /* Exactly the maximum depth is fine. */
    assert_int_equal(xpb_xml_write_node(&b, &chain[1], ""), 0);
    assert_int_equal(b.len, (size_t)(XPB_WRITER_MAX_DEPTH - 1) * 7 + 4);
    assert_memory_equal(b.data + (XPB_WRITER_MAX_DEPTH - 1) * 3, "<d/></d>", 8);

    xpb_buf_reset(&b);
    xpb_writer w;
    xpb_writer_init(&w, &b, "");
    for (int i = 0; i < XPB_WRITER_MAX_DEPTH; i++) assert_int_equal(xpb_writer_start(&w, "", "d"), 0);
    assert_int_equal(xpb_writer_start(&w, "", "d"), XPB_EDEPTH);
    assert_int_equal(w.depth, XPB_WRITER_MAX_DEPTH);
    xpb_buf_free(&b);
}

/* ---- JSON ------------------------------------------------------------------ */

static void test_json_stanza(void **state)
{
    (void)state;
    Xpb__V1__Stanza st;
    xpb__v1__stanza__init(&st);
    st.has_kind = 1;
    st.kind = XPB__V1__KIND__KIND_MESSAGE;
    st.has_type = 1;
    st.type = XPB__V1__STANZA_TYPE__TYPE_CHAT;
    st.id = "m1";
    st.from = "juliet@example.com/balcony";
    st.to = "romeo@example.net";

    Xpb__V1__Text body;
    xpb__v1__text__init(&body);
    body.lang = "en";
    body.text = "Hi \"there\"\\\n\x01 caf\xC3\xA9 \xF0\x9F\x98\x80";
    Xpb__V1__Text *bodies[] = {&body};
    st.n_body = 1;
    st.body = bodies;
    st.has_priority = 1;
    st.priority = -5;
    st.has_receipt_request = 1;
    st.receipt_request = 1;
    st.has_ping = 1; /* present and false */
    st.ping = 0;

    Xpb__V1__Node text_node;
    xpb__v1__node__init(&text_node);
    text_node.node_case = XPB__V1__NODE__NODE_TEXT;
    text_node.text = "t";
    Xpb__V1__Node *children[] = {&text_node};
    Xpb__V1__Element ext;
    xpb__v1__element__init(&ext);
    ext.has_ns_id = 1;
    ext.ns_id = 3;
    ext.name = "x";
    ext.n_child = 1;
    ext.child = children;
    Xpb__V1__Element *exts[] = {&ext};
    st.n_extension = 1;
    st.extension = exts;
    uint32_t order[] = {10, 21};
    st.n_order = 2;
    st.order = order;

    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_json_write(&b, &st.base), 0);
    assert_string_equal(
        buf_str(&b),
        "{\"kind\":\"KIND_MESSAGE\",\"type\":\"TYPE_CHAT\",\"id\":\"m1\","
        "\"from\":\"juliet@example.com/balcony\",\"to\":\"romeo@example.net\","
        "\"body\":[{\"lang\":\"en\",\"text\":\"Hi \\\"there\\\"\\\\\\u000a\\u0001 caf\xC3\xA9 "
        "\xF0\x9F\x98\x80\"}],"
        "\"priority\":-5,\"receipt_request\":true,\"ping\":false,"
        "\"extension\":[{\"ns_id\":3,\"name\":\"x\",\"child\":[{\"text\":\"t\"}]}],"
        "\"order\":[10,21]}");

    /* Empty record, unknown enum value, invalid UTF-8. */
    xpb_buf_reset(&b);
    xpb__v1__stanza__init(&st);
    assert_int_equal(xpb_json_write(&b, &st.base), 0);
    assert_string_equal(buf_str(&b), "{}");
    xpb_buf_reset(&b);
    st.has_type = 1;
    st.type = (Xpb__V1__StanzaType)99;
    st.id = "a\xC3(\xFF";
    assert_int_equal(xpb_json_write(&b, &st.base), 0);
    assert_string_equal(buf_str(&b), "{\"type\":99,\"id\":\"a\\ufffd(\\ufffd\"}");
    xpb_buf_free(&b);
}

static void test_json_depth(void **state)
{
    (void)state;
    /* Stanza (1) > element (2) > child Node (3) > element (4) > ... */
    enum { N = 40 };
    Xpb__V1__Element els[N];
    Xpb__V1__Node nodes[N];
    Xpb__V1__Node *node_ptrs[N];
    for (int i = 0; i < N; i++) {
        xpb__v1__element__init(&els[i]);
        xpb__v1__node__init(&nodes[i]);
        nodes[i].node_case = XPB__V1__NODE__NODE_ELEMENT;
        node_ptrs[i] = &nodes[i];
    }
    for (int i = 0; i + 1 < N; i++) {
        nodes[i].element = &els[i + 1];
        els[i].n_child = 1;
        els[i].child = &node_ptrs[i];
    }
    Xpb__V1__Stanza st;
    xpb__v1__stanza__init(&st);
    st.element = &els[0];
    xpb_buf b;
    xpb_buf_init(&b, 0);
    assert_int_equal(xpb_json_write(&b, &st.base), XPB_EDEPTH); /* depth 80 */
    assert_int_equal(b.len, 0);
    /* Cut the chain so the deepest element is at depth 64: els[31]. */
    els[31].n_child = 0;
    assert_int_equal(xpb_json_write(&b, &st.base), 0);
    assert_true(b.len > 0);
    assert_int_equal(b.data[b.len - 1], '}');
    els[31].n_child = 1; /* its node is depth 65 */
    els[32].n_child = 0;
    xpb_buf_reset(&b);
    assert_int_equal(xpb_json_write(&b, &st.base), XPB_EDEPTH);
    xpb_buf_free(&b);
}

/* Escaping against a byte-at-a-time reference, on random strings whose
 * specials sit at every position relative to the 8- and 16-byte fast paths. */
static void ref_escape(xpb_buf *b, const unsigned char *s, size_t n, int attr)
{
    for (size_t i = 0; i < n; i++) {
        const char *e = NULL;
        switch (s[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '\r': e = "&#13;"; break;
        case '"': e = attr ? "&quot;" : NULL; break;
        case '\'': e = attr ? "&apos;" : NULL; break;
        case '\t': e = attr ? "&#9;" : NULL; break;
        case '\n': e = attr ? "&#10;" : NULL; break;
        default: break;
        }
        if (e) xpb_buf_append_str(b, e);
        else xpb_buf_append(b, &s[i], 1);
    }
}

static void test_escape_random(void **state)
{
    (void)state;
    static const unsigned char alphabet[] = "ab&<>\r\"'\t\n\x01\x7f\xc3\xa9 z";
    uint32_t seed = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        unsigned char in[80];
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 16) % sizeof in;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            /* mostly plain letters so long safe runs occur */
            in[i] = ((seed >> 16) % 8) ? (unsigned char)('a' + (seed >> 20) % 26)
                                       : alphabet[(seed >> 20) % (sizeof alphabet - 1)];
        }
        for (int attr = 0; attr < 2; attr++) {
            xpb_buf got, want;
            xpb_buf_init(&got, 0);
            xpb_buf_init(&want, 0);
            int rc = attr ? xpb_xml_escape_attr(&got, (const char *)in, n)
                          : xpb_xml_escape_text(&got, (const char *)in, n);
            assert_int_equal(rc, 0);
            ref_escape(&want, in, n, attr);
            assert_int_equal(got.len, want.len);
            assert_memory_equal(got.data, want.data, got.len);
            xpb_buf_free(&got);
            xpb_buf_free(&want);
        }
    }
}

/* The first bad byte is found wherever it sits relative to the 8- and
 * 16-byte fast paths. */
static void test_check_text_every_offset(void **state)
{
    (void)state;
    char buf[64];
    for (size_t at = 0; at < 48; at++) {
        memset(buf, 'a', 48);
        buf[at] = '\x01';
        size_t off = 999;
        assert_int_equal(xpb_xml_check_text(buf, 48, &off), XPB_EXMLCHAR);
        assert_int_equal(off, at);
        buf[at] = '\xff';
        off = 999;
        assert_int_equal(xpb_xml_check_text(buf, 48, &off), XPB_EUTF8);
        assert_int_equal(off, at);
        buf[at] = '\t';
        assert_int_equal(xpb_xml_check_text(buf, 48, &off), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_table),
        cmocka_unit_test(test_escape_random),
        cmocka_unit_test(test_check_text_every_offset),
        cmocka_unit_test(test_body_injection_escaped),
        cmocka_unit_test(test_ns_element_rules),
        cmocka_unit_test(test_ns_attrs),
        cmocka_unit_test(test_ns_nested_inherit),
        cmocka_unit_test(test_writer_misuse),
        cmocka_unit_test(test_buf_growth_and_max),
        cmocka_unit_test(test_buf_make_room),
        cmocka_unit_test(test_writer_toobig_leaves_nothing),
        cmocka_unit_test(test_check_text_table),
        cmocka_unit_test(test_stream_header),
        cmocka_unit_test(test_write_node_tree),
        cmocka_unit_test(test_write_node_depth),
        cmocka_unit_test(test_json_stanza),
        cmocka_unit_test(test_json_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
