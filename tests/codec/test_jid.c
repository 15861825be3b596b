/* JID tests (RFC 7622): the §3.5 valid and §3.6 invalid examples, PRECIS and
 * IDNA normalisation, part length limits, empty parts, bare/full and equal().
 * Tables first; each row names the expected XPB_E* code or normalised form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "xpb_error.h"
#include "xpb_jid.h"

#define N_ELEM(a) (sizeof(a) / sizeof((a)[0]))

typedef struct norm_case {
    const char *in;
    const char *want; /* normalised full JID */
} norm_case;

typedef struct bad_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    int want;   /* XPB_EJID* */
} bad_case;

/* Parses in (and validates it) and checks the normalised form. */
static void expect_norm(const char *in, size_t len, const char *want)
{
    char err[256] = "";
    char *out = NULL;
    int rc = xpb_jid_normalize(in, len, &out, err, sizeof err);
    if (rc != 0) fail_msg("normalize(\"%s\") = %d (%s), want 0", in, rc, err);
    if (strcmp(out, want) != 0) fail_msg("normalize(\"%s\") = \"%s\", want \"%s\"", in, out, want);
    free(out);
    rc = xpb_jid_validate(in, len, err, sizeof err);
    if (rc != 0) fail_msg("validate(\"%s\") = %d (%s), want 0", in, rc, err);
    /* Normalisation is idempotent. */
    rc = xpb_jid_normalize(want, strlen(want), &out, err, sizeof err);
    if (rc != 0 || strcmp(out, want) != 0)
        fail_msg("normalize(\"%s\") is not idempotent: %d \"%s\"", want, rc, out ? out : "");
    free(out);
}

/* parse, validate and normalize must all refuse with the same code and a message. */
static void expect_bad(const char *in, size_t len, int want)
{
    char err[256] = "";
    xpb_jid j = {(char *)1, (char *)1, (char *)1};
    int rc = xpb_jid_parse(&j, in, len, err, sizeof err);
    if (rc != want)
        fail_msg("parse(\"%.60s\") = %d (%s), want %d (%s)", in, rc, err, want, xpb_strerror(want));
    assert_true(strlen(err) > 0);
    assert_null(j.local); /* parse leaves a cleared JID on failure */
    assert_null(j.domain);
    assert_null(j.resource);
    rc = xpb_jid_validate(in, len, NULL, 0);
    if (rc != want) fail_msg("validate(\"%.60s\") = %d, want %d", in, rc, want);
    char *out = (char *)1;
    rc = xpb_jid_normalize(in, len, &out, NULL, 0);
    assert_int_equal(rc, want);
    assert_null(out);
}

/* RFC 7622 §3.5, retyped; erratum 4534 moved "juliet@example.com/ foo" from
 * the invalid list to here (OpaqueString allows spaces). */
static const norm_case rfc_valid[] = {
    {"juliet@example.com", "juliet@example.com"},
    {"juliet@example.com/foo", "juliet@example.com/foo"},
    {"juliet@example.com/foo bar", "juliet@example.com/foo bar"},
    {"juliet@example.com/foo@bar", "juliet@example.com/foo@bar"},
    {"foo\\20bar@example.com", "foo\\20bar@example.com"},
    {"fussball@example.com", "fussball@example.com"},
    {"fu\xc3\x9f"
     "ball@example.com",
     "fu\xc3\x9f"
     "ball@example.com"},                                               /* ß stays (toLowerCase) */
    {"\xcf\x80@example.com", "\xcf\x80@example.com"},                   /* π */
    {"\xce\xa3@example.com/foo", "\xcf\x83@example.com/foo"},           /* Σ -> σ */
    {"\xcf\x83@example.com/foo", "\xcf\x83@example.com/foo"},           /* σ */
    {"\xcf\x82@example.com/foo", "\xcf\x82@example.com/foo"},           /* ς stays ς */
    {"king@example.com/\xe2\x99\x9a", "king@example.com/\xe2\x99\x9a"}, /* ♚ in resource */
    {"example.com", "example.com"},
    {"example.com/foobar", "example.com/foobar"},
    {"a.example.com/b@example.net", "a.example.com/b@example.net"},
    {"juliet@example.com/ foo", "juliet@example.com/ foo"},
};

/* RFC 7622 §3.6, retyped, plus the splitting cases of §3.1. */
static const bad_case rfc_invalid[] = {
    {"\"juliet\"@example.com", 0, XPB_EJIDCHAR},         /* U+0022 forbidden, §3.3.1 */
    {"foo bar@example.com", 0, XPB_EJIDLOCAL},           /* space in localpart */
    {"@example.com/", 0, XPB_EJIDEMPTY},                 /* empty local and resource */
    {"henry\xe2\x85\xa3@example.com", 0, XPB_EJIDLOCAL}, /* U+2163 ROMAN NUMERAL FOUR */
    {"\xe2\x99\x9a@example.com", 0, XPB_EJIDLOCAL},      /* ♚ is a symbol */
    {"juliet@", 0, XPB_EJIDEMPTY},
    {"/foobar", 0, XPB_EJIDEMPTY},
    {"juliet@@example.com", 0, XPB_EJIDCHAR}, /* '@' ends up in the domain */
    {"juliet@test@test.com/baz", 0, XPB_EJIDCHAR},
    {"node@/server", 0, XPB_EJIDEMPTY},
    {"john@example.com/", 0, XPB_EJIDEMPTY},
};

static const bad_case other_invalid[] = {
    {"", 0, XPB_EJIDEMPTY},
    {"@", 0, XPB_EJIDEMPTY},
    {"@example.com", 0, XPB_EJIDEMPTY},
    {"a@", 0, XPB_EJIDEMPTY},
    {"/", 0, XPB_EJIDEMPTY},
    {"a@/", 0, XPB_EJIDEMPTY},
    {"example.com/", 0, XPB_EJIDEMPTY},
    {".", 0, XPB_EJIDEMPTY},
    {"a@./r", 0, XPB_EJIDEMPTY},
    /* localpart: RFC 7622 §3.3.1 forbidden set and PRECIS IdentifierClass */
    {"a&b@example.com", 0, XPB_EJIDCHAR},
    {"a'b@example.com", 0, XPB_EJIDCHAR},
    {"a:b@example.com", 0, XPB_EJIDCHAR},
    {"a<b@example.com", 0, XPB_EJIDCHAR},
    {"a>b@example.com", 0, XPB_EJIDCHAR},
    {"\xef\xbc\xa0x@example.com", 0, XPB_EJIDCHAR}, /* fullwidth @ maps to '@' */
    {"a\x01"
     "b@example.com",
     0, XPB_EJIDLOCAL},
    {"a\x7f@example.com", 0, XPB_EJIDLOCAL},
    {"a\0b@example.com", 16, XPB_EJIDLOCAL}, /* NUL inside the length */
    {"a\xe2\x80\x8b"
     "b@example.com",
     0, XPB_EJIDLOCAL}, /* ZERO WIDTH SPACE */
    {"a\xc2\xa0"
     "b@example.com",
     0, XPB_EJIDLOCAL},                             /* NO-BREAK SPACE */
    {"\xee\x80\x80@example.com", 0, XPB_EJIDLOCAL}, /* private use */
    {"\xcd\xb8@example.com", 0, XPB_EJIDLOCAL},     /* U+0378 unassigned */
    {"\xc2\xa7@example.com", 0, XPB_EJIDLOCAL},     /* § non-ASCII punctuation */
    {"\xef\xac\x81@example.com", 0, XPB_EJIDLOCAL}, /* U+FB01 ligature: compat */
    {"\xff@example.com", 0, XPB_EJIDLOCAL},         /* invalid UTF-8 */
    {"\xc3@example.com", 0, XPB_EJIDLOCAL},         /* truncated UTF-8 */
    /* domainpart */
    {"a@exa mple.com", 0, XPB_EJIDCHAR},
    {"a@exa_mple.com", 0, XPB_EJIDCHAR},
    {"a@example..com", 0, XPB_EJIDDOMAIN},
    {"a@.example.com", 0, XPB_EJIDDOMAIN},
    {"a@example.com..", 0, XPB_EJIDDOMAIN}, /* only one trailing dot goes */
    {"a@-example.com", 0, XPB_EJIDDOMAIN},
    {"a@example-.com", 0, XPB_EJIDDOMAIN},
    {"a@1.2.3.999", 0, XPB_EJIDDOMAIN},
    {"a@1.2.3", 0, XPB_EJIDDOMAIN},
    {"a@[::1", 0, XPB_EJIDDOMAIN},
    {"a@[::g]", 0, XPB_EJIDDOMAIN},
    {"a@[]", 0, XPB_EJIDDOMAIN},
    {"a@[1.2.3.4]", 0, XPB_EJIDDOMAIN},            /* brackets are for IPv6 only */
    {"a@\xe2\x99\x9a.example", 0, XPB_EJIDDOMAIN}, /* symbol fails IDNA2008 */
    {"a@b\xc3\xbc"
     "cher.ex_ample",
     0, XPB_EJIDCHAR},
    {"a@xn--zzzzzzzz-.example", 0, XPB_EJIDDOMAIN}, /* bad A-label */
    {"a@\xff.example", 0, XPB_EJIDDOMAIN},          /* invalid UTF-8 */
    /* resourcepart: PRECIS OpaqueString */
    {"a@example.com/x\x01", 0, XPB_EJIDRESOURCE},
    {"a@example.com/x\x7f", 0, XPB_EJIDRESOURCE},
    {"a@example.com/x\ny", 0, XPB_EJIDRESOURCE},
    {"a@example.com/x\0y", 17, XPB_EJIDRESOURCE},
    {"a@example.com/x\xe2\x80\x8b", 0, XPB_EJIDRESOURCE}, /* ZERO WIDTH SPACE */
    {"a@example.com/x\xe2\x80\xa8", 0, XPB_EJIDRESOURCE}, /* LINE SEPARATOR */
    {"a@example.com/\xee\x80\x80", 0, XPB_EJIDRESOURCE},  /* private use */
    {"a@example.com/\xcd\xb8", 0, XPB_EJIDRESOURCE},      /* unassigned */
    {"a@example.com/\xc2\x85", 0, XPB_EJIDRESOURCE},      /* NEL, a C1 control */
    {"a@example.com/\xed\xa0\x80", 0, XPB_EJIDRESOURCE},  /* encoded surrogate */
    {"a@example.com/\xc0\xaf", 0, XPB_EJIDRESOURCE},      /* overlong '/' */
};

static const norm_case normalisation[] = {
    /* case: localpart and domain are lowercased, resource keeps its case */
    {"JuLiEt@EXAMPLE.COM/Balcony", "juliet@example.com/Balcony"},
    {"EXAMPLE.com", "example.com"},
    {"\xc3\x89lise@example.com", "\xc3\xa9lise@example.com"}, /* É -> é */
    /* NFC: e + U+0301 composes in local and resource */
    {"e\xcc\x81@example.com/e\xcc\x81", "\xc3\xa9@example.com/\xc3\xa9"},
    {"\xe2\x84\xab@example.com", "\xc3\xa5@example.com"}, /* ANGSTROM SIGN -> å */
    /* width mapping in the localpart only (RFC 8265 §3.3.2 vs §4.2.2) */
    {"\xef\xbc\xa6\xef\xbc\xaf\xef\xbc\xaf@example.com/\xef\xbc\xa6",
     "foo@example.com/\xef\xbc\xa6"},
    {"\xef\xbd\xb6@example.com", "\xe3\x82\xab@example.com"}, /* halfwidth KA */
    /* trailing dot (RFC 7622 §3.2) */
    {"juliet@example.com.", "juliet@example.com"},
    {"example.com./r", "example.com/r"},
    /* IDN: stored as lowercase U-labels */
    {"user@B\xc3\xbc"
     "cher.EXAMPLE",
     "user@b\xc3\xbc"
     "cher.example"},
    {"user@xn--bcher-kva.example", "user@b\xc3\xbc"
                                   "cher.example"},
    {"user@XN--BCHER-KVA.example", "user@b\xc3\xbc"
                                   "cher.example"},
    {"user@fa\xc3\x9f.de", "user@fa\xc3\x9f.de"}, /* non-transitional: ß kept */
    {"user@b\xc3\xbc"
     "cher.example.",
     "user@b\xc3\xbc"
     "cher.example"},
    {"user@bu\xcc\x88"
     "cher.example",
     "user@b\xc3\xbc"
     "cher.example"}, /* NFC input */
    /* resource: non-ASCII spaces become U+0020 */
    {"a@example.com/x\xe3\x80\x80y", "a@example.com/x y"},
    {"a@example.com/x\xc2\xa0y", "a@example.com/x y"},
    {"a@example.com/a/b@c", "a@example.com/a/b@c"},
    {"a@example.com//", "a@example.com//"},
    /* IP literals */
    {"a@127.0.0.1/r", "a@127.0.0.1/r"},
    {"a@[::FFFF:1]", "a@[::ffff:1]"},
    {"[2001:db8::1]/r", "[2001:db8::1]/r"},
    /* ASCII in the localpart beyond letters and digits is allowed */
    {"a!#$%*+-.=?^_`{|}~@example.com", "a!#$%*+-.=?^_`{|}~@example.com"},
};

static void test_rfc7622_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEM(rfc_valid); i++)
        expect_norm(rfc_valid[i].in, strlen(rfc_valid[i].in), rfc_valid[i].want);
}

static void run_bad(const bad_case *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect_bad(t[i].in, t[i].len != 0 ? t[i].len : strlen(t[i].in), t[i].want);
}

static void test_rfc7622_invalid(void **state)
{
    (void)state;
    run_bad(rfc_invalid, N_ELEM(rfc_invalid));
}

static void test_other_invalid(void **state)
{
    (void)state;
    run_bad(other_invalid, N_ELEM(other_invalid));
}

static void test_normalisation(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEM(normalisation); i++)
        expect_norm(normalisation[i].in, strlen(normalisation[i].in), normalisation[i].want);
}

static void test_parts_bare_full(void **state)
{
    (void)state;
    xpb_jid j;
    const char *s = "Juliet@Example.COM/Balcony/East";
    assert_int_equal(xpb_jid_parse(&j, s, strlen(s), NULL, 0), 0);
    assert_string_equal(j.local, "juliet");
    assert_string_equal(j.domain, "example.com");
    assert_string_equal(j.resource, "Balcony/East");
    char *bare = xpb_jid_bare(&j), *full = xpb_jid_full(&j);
    assert_string_equal(bare, "juliet@example.com");
    assert_string_equal(full, "juliet@example.com/Balcony/East");
    free(bare);
    free(full);
    xpb_jid_clear(&j);
    assert_null(j.domain);
    xpb_jid_clear(&j); /* twice is harmless */

    s = "example.com/r@x";
    assert_int_equal(xpb_jid_parse(&j, s, strlen(s), NULL, 0), 0);
    assert_null(j.local);
    assert_string_equal(j.resource, "r@x");
    bare = xpb_jid_bare(&j);
    full = xpb_jid_full(&j);
    assert_string_equal(bare, "example.com");
    assert_string_equal(full, "example.com/r@x");
    free(bare);
    free(full);
    xpb_jid_clear(&j);

    xpb_jid empty = {NULL, NULL, NULL};
    assert_null(xpb_jid_full(&empty));
    assert_null(xpb_jid_bare(NULL));
    xpb_jid_clear(NULL);
}

/* The length only bounds the input: bytes after it are never read. */
static void test_not_nul_terminated(void **state)
{
    (void)state;
    char buf[] = "Juliet@example.com/xyz@@@";
    char *out = NULL;
    assert_int_equal(xpb_jid_normalize(buf, 22, &out, NULL, 0), 0);
    assert_string_equal(out, "juliet@example.com/xyz");
    free(out);
    assert_int_equal(xpb_jid_validate(buf, 18, NULL, 0), 0);
    assert_int_equal(xpb_jid_validate(buf, 6, NULL, 0), 0); /* "Juliet" is a domain */
}

static char *repeat(char c, size_t n, const char *prefix, const char *suffix)
{
    size_t pn = strlen(prefix), sn = strlen(suffix);
    char *s = malloc(pn + n + sn + 1);
    assert_non_null(s);
    memcpy(s, prefix, pn);
    memset(s + pn, c, n);
    memcpy(s + pn + n, suffix, sn + 1);
    return s;
}

static void expect_rc(const char *s, int want, const char *msg_part)
{
    char err[256] = "";
    int rc = xpb_jid_validate(s, strlen(s), err, sizeof err);
    if (rc != want) fail_msg("validate(%.40s...) = %d (%s), want %d", s, rc, err, want);
    if (msg_part != NULL && strstr(err, msg_part) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err, msg_part);
}

static void test_part_lengths(void **state)
{
    (void)state;
    char *s = repeat('a', 1023, "", "@example.com");
    expect_rc(s, 0, NULL);
    free(s);
    s = repeat('a', 1024, "", "@example.com");
    expect_rc(s, XPB_EJIDLEN, "localpart exceeds 1023 bytes (RFC 7622 §3.3)");
    free(s);
    s = repeat('r', 1023, "a@example.com/", "");
    expect_rc(s, 0, NULL);
    free(s);
    s = repeat('r', 1024, "a@example.com/", "");
    expect_rc(s, XPB_EJIDLEN, "resourcepart exceeds 1023 bytes (RFC 7622 §3.4)");
    free(s);
    /* 2-byte é: 511 fit (1022 bytes), 512 do not (1024 bytes). */
    s = malloc(2 * 512 + 16);
    for (int i = 0; i < 512; i++)
        memcpy(s + 2 * i, "\xc3\xa9", 2);
    memcpy(s + 1022, "@x", 3);
    expect_rc(s, 0, NULL);
    memcpy(s + 1022, "\xc3\xa9@x", 5);
    expect_rc(s, XPB_EJIDLEN, "localpart exceeds");
    free(s);
    /* Domain: 1024 bytes is refused by RFC 7622 §3.2 before any DNS rule;
     * 1023 ASCII bytes pass that but not the 253-byte DNS limit. */
    s = repeat('d', 1024, "a@", "");
    expect_rc(s, XPB_EJIDLEN, "domainpart exceeds 1023 bytes (RFC 7622 §3.2)");
    free(s);
    s = repeat('d', 1023, "a@", "");
    expect_rc(s, XPB_EJIDDOMAIN, "exceeds 253 bytes");
    free(s);
    /* Whole input above 3 * 1023 + 2 bytes. */
    s = repeat('r', 3100, "a@example.com/", "");
    expect_rc(s, XPB_EJIDLEN, "JID exceeds 3071");
    free(s);
}

static void test_dns_limits(void **state)
{
    (void)state;
    char *s = repeat('l', 63, "a@", ".example");
    expect_rc(s, 0, NULL);
    free(s);
    s = repeat('l', 64, "a@", ".example");
    expect_rc(s, XPB_EJIDDOMAIN, "exceeds 63 bytes");
    free(s);
    /* 253 bytes: four labels of 62/62/62/64 bytes with dots; build 63-byte labels. */
    char name[300];
    size_t w = 0;
    for (int i = 0; i < 4; i++) {
        memset(name + w, 'a' + i, 63);
        w += 63;
        name[w++] = '.';
    }
    name[w - 1] = '\0'; /* 4 * 63 + 3 = 255 bytes */
    name[251] = '\0';   /* cut to 251: last label 59 bytes */
    char jid[320];
    snprintf(jid, sizeof jid, "x@%s", name);
    expect_rc(jid, 0, NULL);
    snprintf(jid, sizeof jid, "x@%s.c", name); /* 253 */
    expect_rc(jid, 0, NULL);
    snprintf(jid, sizeof jid, "x@%s.c.", name); /* 253 plus the trailing dot */
    expect_rc(jid, 0, NULL);
    snprintf(jid, sizeof jid, "x@%s.cc", name); /* 254 */
    expect_rc(jid, XPB_EJIDDOMAIN, "exceeds 253 bytes");
}

static void test_messages(void **state)
{
    (void)state;
    expect_rc("\"juliet\"@example.com", XPB_EJIDCHAR,
              "localpart contains forbidden character '\"' at byte 0");
    expect_rc("ju<liet@example.com", XPB_EJIDCHAR, "'<' at byte 2 (RFC 7622 §3.3.1)");
    expect_rc("foo bar@example.com", XPB_EJIDLOCAL, "space U+0020 at byte 3");
    expect_rc("a@exa_mple.com", XPB_EJIDCHAR,
              "domainpart contains forbidden character '_' at byte 5");
    expect_rc("a@example.com/x\x01", XPB_EJIDRESOURCE, "U+0001 (control character) at byte 15");
    /* The message names what was sent (U+2163), not its lowercase (U+2173). */
    expect_rc("henry\xe2\x85\xa3@example.com", XPB_EJIDLOCAL,
              "U+2163 (has a compatibility "
              "decomposition) at byte 5");
    expect_rc("ab\xef\xbc\xa0x@example.com", XPB_EJIDCHAR,
              "forbidden character '@' (mapped from U+FF20) at byte 2");
    expect_rc("a@example.com/x\xe2\x80\x8b", XPB_EJIDRESOURCE, "U+200B (default-ignorable");
    expect_rc("a@\xe2\x99\x9a.example", XPB_EJIDDOMAIN, "domainpart fails IDNA2008");
    expect_rc("", XPB_EJIDEMPTY, "JID is empty");
    expect_rc("a@/r", XPB_EJIDEMPTY, "domainpart is empty");

    /* A short errbuf is truncated, never overrun (ASan checks). */
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(xpb_jid_validate("a b@c", 5, small, sizeof small), XPB_EJIDLOCAL);
    assert_int_equal(small[7], '\0');
    assert_int_equal(xpb_jid_validate("a b@c", 5, small, 0), XPB_EJIDLOCAL);
}

static void test_equal(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b;
        int want;
    } t[] = {
        {"Juliet@Example.com", "juliet@example.com", 1},
        {"juliet@example.com/Balcony", "juliet@example.com/balcony", 0},
        {"juliet@example.com", "juliet@example.com/r", 0},
        {"\xce\xa3@example.com", "\xcf\x83@example.com", 1}, /* Σ = σ */
        {"\xcf\x82@example.com", "\xcf\x83@example.com", 0}, /* ς != σ */
        {"fu\xc3\x9f"
         "ball@example.com",
         "fussball@example.com", 0},
        {"user@B\xc3\xbc"
         "cher.example",
         "user@xn--bcher-kva.example", 1},
        {"example.com.", "example.com", 1},
        {"\xef\xbc\xa1@example.com", "a@example.com", 1}, /* fullwidth A */
        {"e\xcc\x81@x/e\xcc\x81", "\xc3\xa9@x/\xc3\xa9", 1},
        {"foo bar@example.com", "foo bar@example.com", 0}, /* invalid never equal */
        {"a@example.com", NULL, 0},
    };
    for (size_t i = 0; i < N_ELEM(t); i++)
        if (xpb_jid_equal(t[i].a, t[i].b) != t[i].want)
            fail_msg("equal(\"%s\", \"%s\") != %d", t[i].a, t[i].b ? t[i].b : "NULL", t[i].want);
    assert_int_equal(xpb_jid_equal(NULL, NULL), 0);
}

/* Every prefix of some JIDs: any result is fine, but it must be a defined
 * code and never read past the length (ASan). */
static void test_every_prefix(void **state)
{
    (void)state;
    static const char *const s[] = {
        "Juliet@B\xc3\xbc"
        "cher.example/Balcony\xe3\x80\x80x",
        "\xce\xa3\xef\xbc\xa6@[::1]/r",
    };
    for (size_t k = 0; k < N_ELEM(s); k++) {
        size_t n = strlen(s[k]);
        for (size_t len = 0; len <= n; len++) {
            char *copy = malloc(len + 1);
            memcpy(copy, s[k], len);
            int rc = xpb_jid_validate(copy, len, NULL, 0);
            assert_true(rc == 0 || (rc <= XPB_EJIDEMPTY && rc >= XPB_EJIDRESOURCE));
            free(copy);
        }
    }
}

static void test_bad_arguments(void **state)
{
    (void)state;
    xpb_jid j;
    char *out;
    assert_int_equal(xpb_jid_parse(NULL, "a", 1, NULL, 0), XPB_EINVAL);
    assert_int_equal(xpb_jid_parse(&j, NULL, 1, NULL, 0), XPB_EINVAL);
    assert_int_equal(xpb_jid_validate(NULL, 0, NULL, 0), XPB_EJIDEMPTY);
    assert_int_equal(xpb_jid_normalize("a", 1, NULL, NULL, 0), XPB_EINVAL);
    assert_int_equal(xpb_jid_normalize(NULL, 3, &out, NULL, 0), XPB_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7622_valid),   cmocka_unit_test(test_rfc7622_invalid),
        cmocka_unit_test(test_other_invalid),   cmocka_unit_test(test_normalisation),
        cmocka_unit_test(test_parts_bare_full), cmocka_unit_test(test_not_nul_terminated),
        cmocka_unit_test(test_part_lengths),    cmocka_unit_test(test_dns_limits),
        cmocka_unit_test(test_messages),        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_every_prefix),    cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
