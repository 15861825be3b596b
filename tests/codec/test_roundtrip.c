/* Round trip XML -> record -> bytes -> record -> XML over the corpus
 * (tests/corpus) and 5,000 generated stanzas, judged by an independent parser:
 * libxml2 infosets of input and output must be equal stanza by stanza. Also:
 * every chunking of every corpus file gives the same record bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "traffic.h"
#include "xpb_error.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"

#define GENERATED_COUNT 5000
/* Files up to this size get every two-chunk split point; larger ones every
 * SPLIT_STRIDE-th (a prime, so the cuts drift across tag and text positions).
 * The byte-at-a-time feed covers every file, so every corpus stanza is cut at
 * every byte at least once (keeps the test well under 10 s with ASan). */
#define SPLIT_ALL_MAX 3000
#define SPLIT_STRIDE 13

/* ---- Files ---------------------------------------------------------------- */
typedef struct file {
    char name[256];
    char *data;
    size_t len;
} file;

typedef struct corpus {
    file *files;
    size_t n;
} corpus;

static void add_file(const char *name, const char *data, size_t len, void *ud)
{
    corpus *c = ud;
    size_t l = strlen(name);
    assert_true(l < sizeof c->files->name);
    c->files = realloc(c->files, (c->n + 1) * sizeof *c->files);
    assert_non_null(c->files);
    file *f = &c->files[c->n++];
    memcpy(f->name, name, l + 1);
    f->data = malloc(len + 1);
    assert_non_null(f->data);
    memcpy(f->data, data, len);
    f->data[len] = '\0';
    f->len = len;
}

/* Every *.xml in XPB_CORPUS_DIR, sorted by name. */
static file *load_corpus(size_t *count)
{
    corpus c = {NULL, 0};
    size_t n = xpb_test_each_xml(XPB_CORPUS_DIR, add_file, &c);
    assert_true(n >= 10 && n != (size_t)-1); /* the corpus is there */
    *count = c.n;
    return c.files;
}

static void free_corpus(file *files, size_t n)
{
    for (size_t i = 0; i < n; i++) free(files[i].data);
    free(files);
}

/* ---- The pipeline under test ---------------------------------------------- */
typedef struct trip {
    const char *what;     /* file name, for messages */
    bool full;            /* unpack and write XML too, not just pack */
    xpb_arena *a1, *a2;
    xpb_buf records;      /* delimited packed records, in order */
    xpb_buf xml;          /* standalone stanzas, one after another */
    size_t n;
    size_t n_whole;       /* records carried whole as a generic element */
} trip;

static int on_stanza(void *ud, const xpb_node *el)
{
    trip *p = ud;
    char err[512] = "";
    xpb_stanza *st = NULL, *back = NULL;
    xpb_arena_reset(p->a1);
    int rc = xpb_stanza_from_xml(p->a1, el, &st);
    if (rc) fail_msg("%s stanza %zu: from_xml: %s", p->what, p->n, xpb_strerror(rc));
    if (st->element) p->n_whole++;
    xpb_buf rec;
    xpb_buf_init(&rec, 0);
    assert_int_equal(xpb_stanza_pack(&rec, st), 0);
    assert_int_equal(xpb_delim_write(&p->records, (const uint8_t *)rec.data, rec.len), 0);
    if (p->full) {
        xpb_arena_reset(p->a2);
        rc = xpb_stanza_unpack(p->a2, (const uint8_t *)rec.data, rec.len, NULL, &back, err,
                               sizeof(err));
        if (rc) fail_msg("%s stanza %zu: unpack: %s (%s)", p->what, p->n, xpb_strerror(rc), err);
        rc = xpb_stanza_to_xml(&p->xml, back, "", NULL, err, sizeof(err));
        if (rc) fail_msg("%s stanza %zu: to_xml: %s (%s)", p->what, p->n, xpb_strerror(rc), err);
    }
    xpb_buf_free(&rec);
    p->n++;
    return 0;
}

static void pipe_init(trip *p, const char *what, bool full)
{
    memset(p, 0, sizeof(*p));
    p->what = what;
    p->full = full;
    p->a1 = xpb_arena_new(0);
    p->a2 = xpb_arena_new(0);
    assert_non_null(p->a1);
    assert_non_null(p->a2);
    xpb_buf_init(&p->records, 0);
    xpb_buf_init(&p->xml, 0);
}

static void pipe_fini(trip *p)
{
    xpb_arena_free(p->a1);
    xpb_arena_free(p->a2);
    xpb_buf_free(&p->records);
    xpb_buf_free(&p->xml);
}

/* Feeds data in the chunks ending at the offsets in cuts (ascending, the
 * last one == len). Returns the reader's result. */
static int run_reader(trip *p, const char *data, size_t len, const size_t *cuts, size_t n_cuts)
{
    xpb_reader_callbacks cb = {.stanza = on_stanza};
    xpb_reader *r = NULL;
    assert_int_equal(xpb_reader_new(&r, XPB_READER_AUTO, NULL, &cb, p), 0);
    int rc = 0;
    size_t at = 0;
    for (size_t i = 0; i < n_cuts && !rc; i++) {
        rc = xpb_reader_feed(r, data + at, cuts[i] - at);
        at = cuts[i];
    }
    if (rc) print_error("%s: reader: %s\n", p->what, xpb_reader_error(r));
    xpb_reader_free(r);
    (void)len;
    return rc;
}

/* ---- Canonical infoset (libxml2) ------------------------------------------
 * element = {ns}name, attributes sorted as {ns}name="value" (xmlns
 * declarations are not attributes in libxml2), children in order with
 * adjacent text/CDATA merged; whitespace-only text is dropped only when the
 * element also has element children (indentation). */
static void put(xpb_buf *b, const char *s, size_t n) { assert_int_equal(xpb_buf_append(b, s, n), 0); }
static void puts_(xpb_buf *b, const char *s) { put(b, s, strlen(s)); }

/* Unambiguous, printable: length prefix, then bytes with controls escaped. */
static void put_text(xpb_buf *b, const char *s, size_t n)
{
    char hdr[32];
    snprintf(hdr, sizeof(hdr), "#text(%zu)\"", n);
    puts_(b, hdr);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '\\' || c == '"') {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            puts_(b, esc);
        } else {
            put(b, s + i, 1);
        }
    }
    puts_(b, "\"");
}

static const char *ns_of(const xmlNs *ns) { return ns && ns->href ? (const char *)ns->href : ""; }

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void canon_attrs(xpb_buf *b, const xmlNode *el)
{
    char *items[256];
    size_t n = 0;
    for (const xmlAttr *a = el->properties; a; a = a->next) {
        assert_true(n < 256);
        xmlChar *v = xmlNodeGetContent((const xmlNode *)a);
        xpb_buf one;
        xpb_buf_init(&one, 0);
        puts_(&one, " {");
        puts_(&one, ns_of(a->ns));
        puts_(&one, "}");
        puts_(&one, (const char *)a->name);
        puts_(&one, "=");
        put_text(&one, v ? (const char *)v : "", v ? strlen((const char *)v) : 0);
        put(&one, "", 1);
        items[n++] = one.data;
        xmlFree(v);
    }
    qsort(items, n, sizeof(items[0]), cmp_str);
    for (size_t i = 0; i < n; i++) {
        puts_(b, items[i]);
        free(items[i]);
    }
}

static bool is_text(const xmlNode *c)
{
    return c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE;
}

static bool all_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return false;
    return true;
}

static void canon_element(xpb_buf *b, const xmlNode *el);

static void canon_children(xpb_buf *b, const xmlNode *el)
{
    bool has_elements = false;
    for (const xmlNode *c = el->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE) has_elements = true;
    xpb_buf run;
    xpb_buf_init(&run, 0);
    for (const xmlNode *c = el->children;; c = c->next) {
        if (c && is_text(c)) {
            if (c->content) puts_(&run, (const char *)c->content);
            continue;
        }
        if (run.len && !(has_elements && all_space(run.data, run.len)))
            put_text(b, run.data, run.len);
        xpb_buf_reset(&run);
        if (!c) break;
        if (c->type == XML_ELEMENT_NODE) canon_element(b, c);
        else if (c->type != XML_COMMENT_NODE) fail_msg("unexpected libxml2 node type %d", c->type);
    }
    xpb_buf_free(&run);
}

static void canon_element(xpb_buf *b, const xmlNode *el)
{
    puts_(b, "<{");
    puts_(b, ns_of(el->ns));
    puts_(b, "}");
    puts_(b, (const char *)el->name);
    canon_attrs(b, el);
    puts_(b, ">");
    canon_children(b, el);
    puts_(b, "</>");
}

/* Canonical forms of the depth-1 elements: of the document itself when it is a
 * stream, else of the stanzas wrapped in a jabber:client root. */
typedef struct canon {
    char **forms;
    size_t n;
} canon;

static bool is_stream_doc(const char *data, size_t len)
{
    while (len && (*data == ' ' || *data == '\n' || *data == '\r' || *data == '\t')) data++, len--;
    return (len >= 5 && memcmp(data, "<?xml", 5) == 0) ||
           (len >= 14 && memcmp(data, "<stream:stream", 14) == 0);
}

static canon canonicalize(const char *what, const char *data, size_t len)
{
    static const char open[] = "<xpb-test-root xmlns='jabber:client'>";
    static const char close[] = "</xpb-test-root>";
    xpb_buf doc;
    xpb_buf_init(&doc, 0);
    bool stream = is_stream_doc(data, len);
    if (!stream) puts_(&doc, open);
    put(&doc, data, len);
    if (!stream) puts_(&doc, close);
    xmlDocPtr d = xmlReadMemory(doc.data, (int)doc.len, what, "UTF-8",
                                XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_NOWARNING);
    if (!d) fail_msg("%s: libxml2 cannot parse it", what);
    canon c = {0};
    for (const xmlNode *s = xmlDocGetRootElement(d)->children; s; s = s->next) {
        if (s->type != XML_ELEMENT_NODE) continue;
        xpb_buf one;
        xpb_buf_init(&one, 0);
        canon_element(&one, s);
        put(&one, "", 1);
        c.forms = realloc(c.forms, (c.n + 1) * sizeof(*c.forms));
        assert_non_null(c.forms);
        c.forms[c.n++] = one.data;
    }
    xmlFreeDoc(d);
    xpb_buf_free(&doc);
    return c;
}

static void canon_free(canon *c)
{
    for (size_t i = 0; i < c->n; i++) free(c->forms[i]);
    free(c->forms);
}

/* Input and output infosets must be equal, stanza by stanza. Prints every
 * differing stanza (index from 0, both canonical forms); returns how many. */
static size_t count_infoset_diffs(const char *what, const char *in, size_t in_len,
                                  const char *out, size_t out_len)
{
    canon a = canonicalize(what, in, in_len);
    canon b = canonicalize(what, out, out_len);
    size_t n = a.n < b.n ? a.n : b.n, diffs = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(a.forms[i], b.forms[i]) == 0) continue;
        print_error("%s: stanza %zu differs\n  input:  %s\n  output: %s\n", what, i, a.forms[i],
                    b.forms[i]);
        diffs++;
    }
    if (a.n != b.n) {
        print_error("%s: %zu stanzas in, %zu out\n", what, a.n, b.n);
        diffs++;
    }
    canon_free(&a);
    canon_free(&b);
    return diffs;
}

/* ---- Tests ------------------------------------------------------------------ */
static size_t roundtrip_document(const char *what, const char *data, size_t len, size_t *n_out,
                                 size_t *n_whole)
{
    trip p;
    pipe_init(&p, what, true);
    size_t cut = len;
    int rc = run_reader(&p, data, len, &cut, 1);
    if (rc) fail_msg("%s: reader refused it: %s", what, xpb_strerror(rc));
    assert_true(p.n > 0);
    size_t diffs = count_infoset_diffs(what, data, len, p.xml.data ? p.xml.data : "", p.xml.len);
    *n_out = p.n;
    if (n_whole) *n_whole = p.n_whole;
    pipe_fini(&p);
    return diffs;
}

static void test_corpus_roundtrip(void **state)
{
    (void)state;
    size_t n_files, total = 0, diffs = 0;
    file *files = load_corpus(&n_files);
    for (size_t i = 0; i < n_files; i++) {
        size_t n = 0;
        diffs += roundtrip_document(files[i].name, files[i].data, files[i].len, &n, NULL);
        total += n;
    }
    free_corpus(files, n_files);
    assert_true(total >= 150); /* the corpus is not a token one */
    if (diffs) fail_msg("%zu corpus stanza(s) changed in the round trip (listed above)", diffs);
}

static void test_generated_roundtrip(void **state)
{
    (void)state;
    xpb_traffic *t = xpb_traffic_new(20240601);
    assert_non_null(t);
    xpb_buf in;
    xpb_buf_init(&in, 0);
    for (int i = 0; i < GENERATED_COUNT; i++) {
        assert_non_null(xpb_traffic_next(t, &in));
        put(&in, "\n", 1);
    }
    size_t n = 0, whole = 0;
    assert_int_equal(roundtrip_document("generated", in.data, in.len, &n, &whole), 0);
    assert_int_equal(n, GENERATED_COUNT);
    /* Real client traffic maps to typed records, not whole generic elements. */
    assert_int_equal(whole, 0);
    xpb_buf_free(&in);
    xpb_traffic_free(t);
}

/* Record bytes for data fed in the given chunks. */
static void records_for(const file *f, const size_t *cuts, size_t n_cuts, xpb_buf *out, int *rc)
{
    trip p;
    pipe_init(&p, f->name, false);
    *rc = run_reader(&p, f->data, f->len, cuts, n_cuts);
    xpb_buf_reset(out);
    put(out, p.records.data ? p.records.data : "", p.records.len);
    pipe_fini(&p);
}

static void assert_same_records(const file *f, const xpb_buf *want, const xpb_buf *got,
                                const char *how, size_t at)
{
    if (want->len == got->len && memcmp(want->data, got->data, want->len) == 0) return;
    fail_msg("%s: %s (split at %zu) gives other record bytes (%zu vs %zu bytes)", f->name, how,
             at, got->len, want->len);
}

static void chunk_file(const file *f)
{
    xpb_buf want, got;
    xpb_buf_init(&want, 0);
    xpb_buf_init(&got, 0);
    int rc_want, rc;
    size_t whole = f->len;
    records_for(f, &whole, 1, &want, &rc_want);
    assert_int_equal(rc_want, 0);
    assert_true(want.len > 0);
    size_t step = f->len <= SPLIT_ALL_MAX ? 1 : SPLIT_STRIDE;
    for (size_t at = 0; at <= f->len; at += step) {
        size_t cuts[2] = {at, f->len};
        records_for(f, cuts, 2, &got, &rc);
        assert_int_equal(rc, rc_want);
        assert_same_records(f, &want, &got, "two chunks", at);
    }
    size_t *cuts = malloc(f->len * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i < f->len; i++) cuts[i] = i + 1;
    records_for(f, cuts, f->len, &got, &rc);
    assert_int_equal(rc, rc_want);
    assert_same_records(f, &want, &got, "byte at a time", 0);
    free(cuts);
    xpb_buf_free(&want);
    xpb_buf_free(&got);
}

static void test_corpus_chunking(void **state)
{
    (void)state;
    size_t n_files;
    file *files = load_corpus(&n_files);
    for (size_t i = 0; i < n_files; i++) chunk_file(&files[i]);
    free_corpus(files, n_files);
}

/* The generator: deterministic per seed, labels from the fixed list, and the
 * observed mix close to the documented weights. */
static void test_traffic_generator(void **state)
{
    (void)state;
    size_t k = xpb_traffic_kind_count();
    unsigned sum = 0, seen[32] = {0};
    assert_true(k >= 12 && k <= 32);
    for (size_t i = 0; i < k; i++) sum += xpb_traffic_kind_weight(i);
    assert_int_equal(sum, 1000);
    assert_null(xpb_traffic_kind_label(k));
    assert_int_equal(xpb_traffic_kind_weight(k), 0);
    xpb_traffic *a = xpb_traffic_new(7), *b = xpb_traffic_new(7), *c = xpb_traffic_new(8);
    xpb_buf ba, bb, bc;
    xpb_buf_init(&ba, 0);
    xpb_buf_init(&bb, 0);
    xpb_buf_init(&bc, 0);
    for (int i = 0; i < 4000; i++) {
        const char *la = xpb_traffic_next(a, &ba);
        assert_non_null(la);
        assert_string_equal(la, xpb_traffic_next(b, &bb));
        assert_non_null(xpb_traffic_next(c, &bc));
        size_t j = 0;
        while (j < k && strcmp(la, xpb_traffic_kind_label(j)) != 0) j++;
        assert_true(j < k);
        seen[j]++;
    }
    assert_int_equal(ba.len, bb.len);
    assert_memory_equal(ba.data, bb.data, ba.len);
    assert_false(ba.len == bc.len && memcmp(ba.data, bc.data, ba.len) == 0);
    for (size_t i = 0; i < k; i++) { /* 4000 draws: expected 4*w, allow +-50 % + 10 */
        unsigned want = 4 * xpb_traffic_kind_weight(i);
        assert_in_range(seen[i], want / 2 > 10 ? want / 2 - 10 : 0, want + want / 2 + 10);
    }
    xpb_buf full;
    xpb_buf_init(&full, 16); /* out->max refuses: NULL and out unchanged */
    assert_null(xpb_traffic_next(a, &full));
    assert_int_equal(full.len, 0);
    xpb_buf_free(&full);
    xpb_buf_free(&ba);
    xpb_buf_free(&bb);
    xpb_buf_free(&bc);
    xpb_traffic_free(a);
    xpb_traffic_free(b);
    xpb_traffic_free(c);
}

/* The comparator itself must see differences, or the round trip proves nothing. */
static void test_comparator_sees_differences(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b;
        bool same;
    } cases[] = {
        {"<m a='1' b='2'/>", "<m b='2' a='1'/>", true},
        {"<m xmlns='jabber:client'/>", "<m/>", true},
        {"<p:m xmlns:p='jabber:client'><p:b>x</p:b></p:m>", "<m><b>x</b></m>", true},
        {"<m>\n  <b>x</b>\n</m>", "<m><b>x</b></m>", true},
        {"<m><b><![CDATA[a<]]>b</b></m>", "<m><b>a&lt;b</b></m>", true},
        {"<m><b> x</b></m>", "<m><b>x</b></m>", false},
        {"<m><b>  </b></m>", "<m><b/></m>", false},
        {"<m a='1'/>", "<m a='2'/>", false},
        {"<m xmlns:x='urn:x' x:a='1'/>", "<m a='1'/>", false},
        {"<m><b/><c/></m>", "<m><c/><b/></m>", false},
        {"<m><x xmlns='urn:a'/></m>", "<m><x xmlns='urn:b'/></m>", false},
        {"<m><x xmlns='urn:a'><y xmlns=''/></x></m>", "<m><x xmlns='urn:a'><y/></x></m>", false},
        {"<m>a&#13;b</m>", "<m>a\nb</m>", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        canon x = canonicalize("case", cases[i].a, strlen(cases[i].a));
        canon y = canonicalize("case", cases[i].b, strlen(cases[i].b));
        assert_int_equal(x.n, 1);
        assert_int_equal(y.n, 1);
        if ((strcmp(x.forms[0], y.forms[0]) == 0) != cases[i].same)
            fail_msg("comparator case %zu: %s vs %s", i, x.forms[0], y.forms[0]);
        canon_free(&x);
        canon_free(&y);
    }
}

int main(void)
{
    LIBXML_TEST_VERSION
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_comparator_sees_differences),
        cmocka_unit_test(test_traffic_generator),
        cmocka_unit_test(test_corpus_roundtrip),
        cmocka_unit_test(test_generated_roundtrip),
        cmocka_unit_test(test_corpus_chunking),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return rc;
}
