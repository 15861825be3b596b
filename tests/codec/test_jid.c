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

#include <idn2.h>
#include <utf8proc.h>

#include "xpb_error.h"
#include "xpb_jid.h"

/* ---- allocation counter ----------------------------------------------------
 * Counts every malloc/calloc/realloc in the process (libidn2, libunistring and
 * utf8proc included) while `counting` is set. Without sanitizers the test
 * binary defines malloc & co. itself (the dynamic linker binds the shared
 * libraries' calls to them) and forwards to glibc; under ASan, which owns
 * malloc, the sanitizer's allocation hook does the counting instead. */
#if defined(__SANITIZE_ADDRESS__)
#define XPB_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XPB_TEST_ASAN 1
#endif
#endif

static int counting;
static unsigned long n_allocs;

#ifdef XPB_TEST_ASAN
/* From <sanitizer/allocator_interface.h>, which not every toolchain ships. */
int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t),
                                              void (*f)(const volatile void *));
static void count_alloc_hook(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
    if (counting) n_allocs++;
}
static void free_hook(const volatile void *p)
{
    (void)p;
}
static void install_counter(void)
{
    __sanitizer_install_malloc_and_free_hooks(count_alloc_hook, free_hook);
}
#else
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t k, size_t n);
extern void *__libc_realloc(void *p, size_t n);
void *malloc(size_t n)
{
    if (counting) n_allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t k, size_t n)
{
    if (counting) n_allocs++;
    return __libc_calloc(k, n);
}
void *realloc(void *p, size_t n)
{
    if (counting) n_allocs++;
    return __libc_realloc(p, n);
}
static void install_counter(void)
{
}
#endif

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

/* ---- allocation-free validation (issue 3) -------------------------------- */

/* Allocations made by n calls of validate(s); the JID must be valid. */
static unsigned long allocs_for(const char *s, int n)
{
    size_t len = strlen(s);
    unsigned long before = n_allocs;
    counting = 1;
    int rc = 0;
    for (int i = 0; i < n; i++)
        rc |= xpb_jid_validate(s, len, NULL, 0);
    counting = 0;
    if (rc != 0) fail_msg("validate(\"%s\") = %d, want 0", s, rc);
    return n_allocs - before;
}

static void test_validate_allocates_nothing(void **state)
{
    (void)state;
    install_counter();
    /* The counter must really count: one malloc through a volatile pointer
     * the compiler cannot elide, and libidn2's own allocations. */
    void *(*volatile alloc)(size_t) = malloc;
    unsigned long before = n_allocs;
    counting = 1;
    void *p = alloc(32);
    counting = 0;
    free(p);
    assert_int_equal(n_allocs - before, 1);
    char *a = NULL;
    before = n_allocs;
    counting = 1;
    assert_int_equal(idn2_to_ascii_8z("b\xc3\xbc" "cher.example", &a, 0), IDN2_OK);
    counting = 0;
    idn2_free(a);
    assert_true(n_allocs - before >= 1);
    /* An A-label still goes to libidn2, which allocates. */
    assert_true(allocs_for("user@xn--bcher-kva.example", 1) > 0);

    static const char *const jids[] = {
        "j\xc3\xbcrgen@caf\xc3\xa9.example/balc\xc3\xb3n",
        "juliet@example.com/balcony",
        "Juliet@EXAMPLE.com/Balcony",
        "\xe7\x94\xb0\xe4\xb8\xad@\xe4\xbe\x8b\xe3\x81\x88.jp/\xe6\x89\x8b",
        "\xce\xa3@\xce\xb5\xce\xbb.example/\xe2\x99\x9a",  /* Σ@ελ.example/♚ */
        "e\xcc\x81@stra\xc3\x9f" "e.de/x\xe3\x80\x80y",     /* NFC + mapping */
        "\xef\xbc\xa6oo@\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.\xd1\x80\xd1\x84",
        "a@B\xc3\xbc" "cher.EXAMPLE.",                        /* ASCII case, trailing dot */
        "\xea\xb0\x80@\xea\xb0\x80\xeb\x82\x98.kr",     /* Hangul */
    };
    for (size_t i = 0; i < N_ELEM(jids); i++) {
        unsigned long n = allocs_for(jids[i], 1000);
        if (n != 0) fail_msg("1000 x validate(\"%s\") made %lu allocations, want 0", jids[i], n);
    }
}

/* ---- the domain fast path decides exactly as libidn2 --------------------- */

/* What the libidn2 path (domain_idna) decides for a non-ASCII domain without
 * A-labels whose ASCII is letters, digits, hyphens and dots: 0 and the
 * stored form in res, or -1. Mirrors jid.c's flags and A-label limits. */
static int idna_oracle(const char *dom, char *res, size_t reslen)
{
    char z[1100], *a = NULL, *u = NULL;
    size_t n = strlen(dom);
    if (n > 0 && dom[n - 1] == '.') n--; /* RFC 7622 §3.2, as jid.c */
    if (n == 0 || n >= sizeof z) return -1;
    memcpy(z, dom, n);
    z[n] = '\0';
    int r = idn2_to_ascii_8z(z, &a,
                             IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL | IDN2_ALABEL_ROUNDTRIP |
                                 IDN2_USE_STD3_ASCII_RULES);
    int ok = r == IDN2_OK && strlen(a) <= 253;
    for (const char *l = a; ok && l != NULL;) {
        const char *dot = strchr(l, '.');
        size_t ln = dot != NULL ? (size_t)(dot - l) : strlen(l);
        ok = ln > 0 && ln <= 63 && l[0] != '-' && l[ln - 1] != '-';
        l = dot != NULL ? dot + 1 : NULL;
    }
    if (ok) ok = idn2_to_unicode_8z8z(a, &u, 0) == IDN2_OK;
    if (ok) snprintf(res, reslen, "%s", u);
    idn2_free(a);
    idn2_free(u);
    return ok ? 0 : -1;
}

/* validate and normalize of "x@<dom>" agree with the oracle. */
static void expect_like_libidn2(const char *dom)
{
    char jid[1100], want[1100] = "", err[256] = "";
    snprintf(jid, sizeof jid, "x@%s", dom);
    int exp = idna_oracle(dom, want, sizeof want);
    int rc = xpb_jid_validate(jid, strlen(jid), err, sizeof err);
    if ((rc == 0) != (exp == 0))
        fail_msg("validate(\"%s\") = %d (%s), libidn2 says %s", jid, rc, err,
                 exp == 0 ? "valid" : "invalid");
    if (rc != 0) {
        if (rc != XPB_EJIDDOMAIN && rc != XPB_EJIDCHAR && rc != XPB_EJIDEMPTY)
            fail_msg("validate(\"%s\") = %d", jid, rc);
        return;
    }
    xpb_jid j;
    assert_int_equal(xpb_jid_parse(&j, jid, strlen(jid), NULL, 0), 0);
    if (strcmp(j.domain, want) != 0)
        fail_msg("domain of \"%s\" = \"%s\", libidn2 stores \"%s\"", jid, j.domain, want);
    xpb_jid_clear(&j);
}

static size_t put_cp(char *d, utf8proc_int32_t cp)
{
    return (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)d);
}

/* One code point at a label start, after a letter and next to itself, for
 * every code point of the blocks the fast path lists (sampled in the large
 * CJK and Hangul blocks and, sparsely, everywhere else). */
static void test_domain_each_code_point(void **state)
{
    (void)state;
    for (utf8proc_int32_t cp = 0x80; cp < 0x30000; cp++) {
        int dense = cp < 0x600 || (cp >= 0x10A0 && cp < 0x1100) || (cp >= 0x1E00 && cp < 0x2000) ||
                    (cp >= 0x3040 && cp < 0x3100);
        int edge = cp == 0x4E00 || cp == 0x9FA5 || cp == 0x9FA6 || cp == 0xAC00 || cp == 0xD7A3 ||
                   cp == 0xD7A4;
        if (!dense && !edge && cp % 97 != 0) continue;
        if (cp >= 0xD800 && cp < 0xE000) continue;
        char dom[64];
        size_t w = put_cp(dom, cp);
        dom[w++] = 'a';
        w += put_cp(dom + w, cp);
        w += put_cp(dom + w, cp);
        memcpy(dom + w, ".example", 9);
        expect_like_libidn2(dom);
    }
}

/* Random domains over a pool of listed and unlisted code points, ASCII
 * case, digits, hyphens and dots, with labels around the 63-byte A-label
 * limit and names around 253 bytes. */
static void test_domain_random_vs_libidn2(void **state)
{
    (void)state;
    static const char *const pool[] = {
        "a", "Z", "q", "7", "-", "-", ".", "\xc3\xa9", "\xc3\x9f", "\xcf\x82", "\xc3\xbc",
        "\xe4\xb8\xad", "\xea\xb0\x80", "\xe3\x82\xa2", "\xd0\xb6", "\xe1\xbb\x87",
        "\xc3\x89",                 /* É: mapped */
        "\xcc\x81",                 /* combining acute */
        "\xc2\xaa",                 /* ª: disallowed */
        "\xc2\xb7",                 /* middle dot: CONTEXTO */
        "\xd7\x90",                 /* Hebrew alef: bidi */
        "\xef\xbc\xa1",             /* fullwidth A */
        "\xe3\x80\x82",             /* ideographic full stop */
        "\xe1\x84\x80\xe1\x85\xa1", /* conjoining jamo: composes */
        "\xef\xac\x81",             /* ligature fi */
    };
    unsigned seed = 12345;
    for (int iter = 0; iter < 4000; iter++) {
        char dom[700];
        size_t w = 0, want = 5 + (iter % 7 == 0 ? 240 : (size_t)(iter % 90));
        int has_non_ascii = 0;
        while (w < want && w + 8 < sizeof dom) {
            seed = seed * 1103515245u + 12345u;
            const char *t = pool[(seed >> 16) % N_ELEM(pool)];
            if ((seed >> 8) % 3 == 0) t = "\xc3\xbc"; /* make long IDN labels likely */
            size_t n = strlen(t);
            memcpy(dom + w, t, n);
            w += n;
            has_non_ascii |= (unsigned char)t[0] >= 0x80;
        }
        dom[w] = '\0';
        if (!has_non_ascii || strstr(dom, "xn--") != NULL) continue;
        expect_like_libidn2(dom);
    }
}

/* The A-label limits, checked exactly at the boundary with a counted
 * Punycode length: "xn--" + 59 bytes is the longest label. */
static void test_domain_alabel_limits(void **state)
{
    (void)state;
    char dom[800];
    for (size_t k = 1; k < 70; k++) { /* k x "ü" and 'a' + k x "ü" */
        for (int pre = 0; pre < 2; pre++) {
            size_t w = 0;
            if (pre) dom[w++] = 'a';
            for (size_t i = 0; i < k; i++) {
                memcpy(dom + w, "\xc3\xbc", 2);
                w += 2;
            }
            memcpy(dom + w, ".example", 9);
            expect_like_libidn2(dom);
        }
    }
    /* Names crossing 253 bytes in A-label form one byte at a time: IDN
     * labels, then an ASCII label of every length. */
    for (size_t labels = 3; labels < 6; labels++) {
        for (size_t last = 1; last < 64; last++) {
            size_t w = 0;
            for (size_t l = 0; l < labels; l++) {
                memcpy(dom + w, "caf\xc3\xa9", 5);
                w += 5;
                for (size_t i = 0; i < 30 + 5 * labels; i++)
                    dom[w++] = 'e';
                dom[w++] = '.';
            }
            memset(dom + w, 'z', last);
            dom[w + last] = '\0';
            expect_like_libidn2(dom);
        }
    }
}

/* Fixed cases: refusal codes the libidn2 path gives (the fast path never
 * refuses), stored forms the fast path gives. */
static void test_domain_fast_path_cases(void **state)
{
    (void)state;
    static const norm_case ok[] = {
        {"a@caf\xc3\xa9.example", "a@caf\xc3\xa9.example"},
        {"a@CAF\xc3\xa9.Example.", "a@caf\xc3\xa9.example"},
        {"a@stra\xc3\x9f" "e.de", "a@stra\xc3\x9f" "e.de"},
        {"a@\xcf\x82\xcf\x83.gr", "a@\xcf\x82\xcf\x83.gr"},
        {"a@1\xc3\xbc.example", "a@1\xc3\xbc.example"},
        {"a@\xc3\xbc-1.example/r", "a@\xc3\xbc-1.example/r"},
        {"a@\xc3\x89t\xc3\xa9.example", "a@\xc3\xa9t\xc3\xa9.example"}, /* É via libidn2 */
        {"a@e\xcc\x81t\xc3\xa9.example", "a@\xc3\xa9t\xc3\xa9.example"},
    };
    for (size_t i = 0; i < N_ELEM(ok); i++)
        expect_norm(ok[i].in, strlen(ok[i].in), ok[i].want);
    static const bad_case bad[] = {
        {"a@-\xc3\xbc.example", 0, XPB_EJIDDOMAIN},
        {"a@\xc3\xbc-.example", 0, XPB_EJIDDOMAIN},
        {"a@\xc3\xbc\xc3\xbc--x.example", 0, XPB_EJIDDOMAIN}, /* hyphens 3-4 */
        {"a@ab--c.\xc3\xbc", 0, XPB_EJIDDOMAIN},
        {"a@\xc3\xbc..example", 0, XPB_EJIDDOMAIN},
        {"a@\xc3\xbc_x.example", 0, XPB_EJIDCHAR},
        {"a@\xcc\x81x.example", 0, XPB_EJIDDOMAIN},         /* leading combining */
        {"a@\xc3\xbc\xd7\x90.example", 0, XPB_EJIDDOMAIN},  /* bidi */
        {"a@[\xc3\xbc]", 0, XPB_EJIDCHAR},
    };
    run_bad(bad, N_ELEM(bad));
}

/* ---- localpart/resourcepart stack buffer --------------------------------- */

/* jid.c sizes its stack buffer at 2 code points per input byte: ASCII maps
 * to ASCII, and no canonical decomposition exceeds 4 code points. */
static void test_decomposition_bound(void **state)
{
    (void)state;
    for (utf8proc_int32_t c = 0; c < 0x80; c++)
        assert_true(utf8proc_tolower(c) < 0x80);
    for (utf8proc_int32_t cp = 0x80; cp < 0x110000; cp++) {
        utf8proc_int32_t d[16];
        int bc = 0;
        utf8proc_ssize_t k =
            utf8proc_decompose_char(cp, d, 16, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, &bc);
        if (k > 4) fail_msg("U+%04X decomposes into %ld code points", (unsigned)cp, (long)k);
    }
}

/* Parts whose decomposition is long: 1023 bytes of U+1F82 (4 code points
 * each), 1022 bytes of U+01D6 (3 each), and U+0958 which NFC does not
 * recompose (3 bytes -> 6: over the limit after normalisation). */
static void test_long_decompositions(void **state)
{
    (void)state;
    char s[1200];
    size_t w = 0;
    memcpy(s, "a@x/", 4);
    w = 4;
    for (int i = 0; i < 341; i++, w += 3)
        memcpy(s + w, "\xe1\xbe\x82", 3);
    s[w] = '\0';
    expect_rc(s, 0, NULL);
    char *out = NULL;
    assert_int_equal(xpb_jid_normalize(s, w, &out, NULL, 0), 0);
    assert_string_equal(out, s);
    free(out);

    w = 0;
    for (int i = 0; i < 511; i++, w += 2)
        memcpy(s + w, "\xc7\x95", 2); /* Ǖ -> ǖ, 3 code points decomposed */
    memcpy(s + w, "@x", 3);
    expect_rc(s, 0, NULL);
    assert_int_equal(xpb_jid_normalize(s, w + 2, &out, NULL, 0), 0);
    assert_int_equal(memcmp(out, "\xc7\x96\xc7\x96", 4), 0);
    assert_int_equal(strlen(out), 1024);
    free(out);

    memcpy(s, "a@x/", 4);
    w = 4;
    for (int i = 0; i < 341; i++, w += 3)
        memcpy(s + w, "\xe0\xa5\x98", 3);
    s[w] = '\0';
    expect_rc(s, XPB_EJIDLEN, "resourcepart exceeds 1023 bytes after normalisation");
    expect_rc(s + 0, XPB_EJIDLEN, NULL);
    s[4 + 3 * 170] = '\0'; /* 510 bytes -> 1020: fits */
    expect_rc(s, 0, NULL);
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
        cmocka_unit_test(test_validate_allocates_nothing),
        cmocka_unit_test(test_domain_each_code_point),
        cmocka_unit_test(test_domain_random_vs_libidn2),
        cmocka_unit_test(test_domain_alabel_limits),
        cmocka_unit_test(test_domain_fast_path_cases),
        cmocka_unit_test(test_decomposition_bound),
        cmocka_unit_test(test_long_decompositions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
