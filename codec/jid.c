/* JIDs (RFC 7622): split, then PRECIS UsernameCaseMapped (localpart), IDNA2008
 * (domainpart), PRECIS OpaqueString (resourcepart). All-ASCII parts take a byte
 * loop that never calls utf8proc/libidn2 and, when validating, never allocates. */
#include "xpb_error.h"
#include "xpb_jid.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Three parts of XPB_JID_PART_MAX bytes plus '@' and '/' (RFC 7622 §3.1). */
#define JID_INPUT_MAX (3 * XPB_JID_PART_MAX + 2)
/* RFC 1035 §2.3.4: a name is at most 253 bytes without the root dot, a label 63. */
#define DNS_NAME_MAX 253
#define DNS_LABEL_MAX 63

/* One part of the input; off is its byte offset in the whole JID so that
 * messages point at the input the caller has, not at a copy. */
typedef struct jid_span {
    const char *p;
    size_t n;
    size_t off;
    int present;
} jid_span;

typedef struct jid_err {
    char *buf;
    size_t len;
} jid_err;

__attribute__((format(printf, 3, 4))) static int fail(jid_err *e, int code, const char *fmt, ...)
{
    if (e->buf != NULL && e->len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->buf, e->len, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- small byte helpers ------------------------------------------------- */

static int is_ascii(const char *p, size_t n)
{
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= (unsigned char)p[i];
    return acc < 0x80;
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* malloc'd, NUL-terminated, copy of p[0..n), ASCII-lowercased when lower. */
static char *dup_part(const char *p, size_t n, int lower)
{
    char *d = malloc(n + 1);
    if (d == NULL) return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = lower ? ascii_lower(p[i]) : p[i];
    d[n] = '\0';
    return d;
}

/* RFC 7622 §3.3.1: characters forbidden in a localpart on top of PRECIS. */
static int local_forbidden(int c)
{
    return c == '"' || c == '&' || c == '\'' || c == '/' || c == ':' || c == '<' || c == '>' ||
           c == '@';
}

/* ---- splitting (RFC 7622 §3.1) ----------------------------------------- */

static int check_span(const jid_span *sp, const char *name, const char *sect, jid_err *e)
{
    if (!sp->present) return 0;
    if (sp->n == 0) return fail(e, XPB_EJIDEMPTY, "%s is empty (RFC 7622 %s)", name, sect);
    if (sp->n > XPB_JID_PART_MAX)
        return fail(e, XPB_EJIDLEN, "%s exceeds %d bytes (RFC 7622 %s)", name, XPB_JID_PART_MAX,
                    sect);
    return 0;
}

/* The resourcepart is everything after the first '/'; the localpart is what
 * precedes the first '@' before that '/'; the domainpart is in between. */
static int jid_split(const char *s, size_t len, jid_span sp[3], jid_err *e)
{
    if (len == 0) return fail(e, XPB_EJIDEMPTY, "JID is empty (RFC 7622 §3.1)");
    if (len > JID_INPUT_MAX)
        return fail(e, XPB_EJIDLEN, "JID exceeds %d bytes (RFC 7622 §3.1)", JID_INPUT_MAX);
    const char *slash = memchr(s, '/', len);
    size_t head = slash != NULL ? (size_t)(slash - s) : len;
    const char *at = memchr(s, '@', head);
    size_t dstart = at != NULL ? (size_t)(at - s) + 1 : 0;

    sp[0] = (jid_span){s, at != NULL ? (size_t)(at - s) : 0, 0, at != NULL};
    sp[1] = (jid_span){s + dstart, head - dstart, dstart, 1};
    sp[2] = (jid_span){slash != NULL ? slash + 1 : NULL, slash != NULL ? len - head - 1 : 0,
                       head + 1, slash != NULL};
    int rc = check_span(&sp[0], "localpart", "§3.3", e);
    if (rc == 0) rc = check_span(&sp[1], "domainpart", "§3.2", e);
    if (rc == 0) rc = check_span(&sp[2], "resourcepart", "§3.4", e);
    return rc;
}

/* ---- PRECIS profiles for localpart and resourcepart (RFC 8265) ---------- */

/* What a part's profile does to and refuses in a code point. refuse() returns
 * why cp is disallowed, or NULL; forbidden_code is used when the reason is
 * the RFC 7622 §3.3.1 set rather than PRECIS. */
typedef struct jid_profile {
    const char *part; /* "localpart" */
    const char *rule; /* "PRECIS IdentifierClass, RFC 8265 §3.3" */
    int code;         /* XPB_EJIDLOCAL / XPB_EJIDRESOURCE */
    utf8proc_custom_func map;
    const char *(*refuse)(utf8proc_int32_t cp);
    unsigned ascii_ok; /* bit in ascii_class() for bytes the profile accepts as is */
} jid_profile;

#define ASCII_LOCAL_OK 1u    /* IdentifierClass ASCII7 minus RFC 7622 §3.3.1 */
#define ASCII_RESOURCE_OK 2u /* FreeformClass: printable ASCII and space */
#define ASCII_LDH 4u         /* letters, digits, hyphen (RFC 5890 §2.3.1) */

/* Byte classes for the ASCII fast paths (one load per byte); refuse()
 * explains a failure. Generated from the three rules above. */
static const unsigned char ASCII_CLASS[128] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    2, 3, 2, 3, 3, 3, 2, 2, 3, 3, 3, 3, 3, 7, 3, 2, /* 0x20 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2, 3, 2, 3, 2, 3, /* 0x30 */
    2, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x40 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 3, 3, 3, 3, 3, /* 0x50 */
    3, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x60 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 3, 3, 3, 3, 0, /* 0x70 */
};

static inline unsigned ascii_class(int c)
{
    return c < 0x80 ? ASCII_CLASS[c] : 0u;
}

static const char FORBIDDEN[] = "forbidden by RFC 7622 §3.3.1";

/* where is "" for an input offset, or " of the normalised text". */
static int report_cp(const jid_profile *pf, utf8proc_int32_t cp, const char *why, size_t at,
                     const char *where, jid_err *e)
{
    if (why == FORBIDDEN)
        return fail(e, XPB_EJIDCHAR,
                    "%s contains forbidden character '%c' at byte %zu%s (RFC "
                    "7622 §3.3.1)",
                    pf->part, (int)cp, at, where);
    if (cp == 0x20)
        return fail(e, pf->code, "%s contains disallowed space U+0020 at byte %zu%s (%s)", pf->part,
                    at, where, pf->rule);
    return fail(e, pf->code, "%s contains disallowed character U+%04X (%s) at byte %zu%s (%s)",
                pf->part, (unsigned)cp, why, at, where, pf->rule);
}

/* Error path only: finds the input code point whose mapping is refused so
 * the message names what the sender wrote and where; falls back to the
 * normalised text when only NFC composition produced the refused one. */
static int report_refusal(const jid_profile *pf, const jid_span *sp, utf8proc_int32_t mcp,
                          const char *mwhy, size_t mpos, jid_err *e)
{
    for (size_t pos = 0; pos < sp->n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)sp->p + pos,
                                              (utf8proc_ssize_t)(sp->n - pos), &cp);
        if (k <= 0) break;
        utf8proc_int32_t m = pf->map(cp, NULL);
        const char *why = pf->refuse(m);
        if (why != NULL) {
            if (why == FORBIDDEN)
                return fail(e, XPB_EJIDCHAR,
                            "%s contains forbidden character '%c' (mapped from "
                            "U+%04X) at byte %zu (RFC 7622 §3.3.1)",
                            pf->part, (int)m, (unsigned)cp, sp->off + pos);
            return report_cp(pf, cp, why, sp->off + pos, "", e);
        }
        pos += (size_t)k;
    }
    return report_cp(pf, mcp, mwhy, mpos, " of the normalised text", e);
}

/* Maps and normalises the part with utf8proc (custom map, then NFC), checks
 * every resulting code point; the result goes to *out or is freed. */
static int unicode_enforce(const jid_profile *pf, const jid_span *sp, char **out, jid_err *e)
{
    utf8proc_uint8_t *m = NULL;
    utf8proc_ssize_t r =
        utf8proc_map_custom((const utf8proc_uint8_t *)sp->p, (utf8proc_ssize_t)sp->n, &m,
                            UTF8PROC_STABLE | UTF8PROC_COMPOSE, pf->map, NULL);
    if (r == UTF8PROC_ERROR_NOMEM)
        return fail(e, XPB_ENOMEM, "out of memory normalising the %s", pf->part);
    if (r < 0) return fail(e, pf->code, "%s is not valid UTF-8 (%s)", pf->part, utf8proc_errmsg(r));
    int rc = 0;
    if ((size_t)r > XPB_JID_PART_MAX)
        rc = fail(e, XPB_EJIDLEN, "%s exceeds %d bytes after normalisation (RFC 7622 §3)", pf->part,
                  XPB_JID_PART_MAX);
    for (size_t pos = 0; rc == 0 && pos < (size_t)r;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(m + pos, r - (utf8proc_ssize_t)pos, &cp);
        const char *why = k > 0 ? pf->refuse(cp) : "invalid UTF-8";
        if (why != NULL) rc = report_refusal(pf, sp, cp, why, pos, e);
        pos += k > 0 ? (size_t)k : 1;
    }
    if (rc == 0 && out != NULL)
        *out = (char *)m;
    else
        free(m);
    return rc;
}

/* Shared by both profiles: ASCII is checked byte by byte on the raw input
 * (exact offsets, no library calls); only non-ASCII parts reach utf8proc. */
static int precis_prep(const jid_profile *pf, const jid_span *sp, int lower, char **out, jid_err *e)
{
    int ascii = 1;
    for (size_t i = 0; i < sp->n; i++) {
        int c = (unsigned char)sp->p[i];
        if (c >= 0x80) {
            ascii = 0;
            continue;
        }
        if (!(ascii_class(c) & pf->ascii_ok))
            return report_cp(pf, c, pf->refuse(c), sp->off + i, "", e);
    }
    if (!ascii) return unicode_enforce(pf, sp, out, e);
    if (out != NULL && (*out = dup_part(sp->p, sp->n, lower)) == NULL)
        return fail(e, XPB_ENOMEM, "out of memory");
    return 0;
}

/* ---- localpart: PRECIS UsernameCaseMapped (RFC 8265 §3.3) -------------- */

/* Why IdentifierClass (RFC 8264 §4.2, derived per RFC 8264 §8) refuses a
 * non-ASCII cp, or NULL when it is valid. Approximated from the general
 * category; the RFC 5892 §2.6 exceptions are listed explicitly. */
static const char *identifier_refusal(utf8proc_int32_t cp)
{
    if (cp == 0x00DF || cp == 0x03C2 || cp == 0x06FD || cp == 0x06FE || cp == 0x0F0B ||
        cp == 0x3007)
        return NULL; /* RFC 5892 §2.6 PVALID exceptions */
    if (cp == 0x0640 || cp == 0x07FA || cp == 0x302E || cp == 0x302F ||
        (cp >= 0x3031 && cp <= 0x3035) || cp == 0x303B)
        return "disallowed by RFC 5892 §2.6";
    const utf8proc_property_t *pr = utf8proc_get_property(cp);
    if (pr->ignorable) return "default-ignorable code point";
    if (pr->decomp_type != 0) return "has a compatibility decomposition";
    switch (pr->category) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ND:
        return NULL;
    case UTF8PROC_CATEGORY_CN:
        return "unassigned code point";
    case UTF8PROC_CATEGORY_CC:
        return "control character";
    case UTF8PROC_CATEGORY_CF:
        return "format character";
    case UTF8PROC_CATEGORY_CO:
        return "private-use code point";
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
        return "space";
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO:
        return "symbol";
    default:
        return "not a letter or digit";
    }
}

/* ASCII7 (0x21-0x7E) is valid in IdentifierClass; RFC 7622 §3.3.1 then
 * forbids " & ' / : < > @ in localparts. */
static const char *local_refusal(utf8proc_int32_t cp)
{
    if (cp >= 0x80) return identifier_refusal(cp);
    if (cp <= 0x20 || cp == 0x7f) return "control character";
    return local_forbidden(cp) ? FORBIDDEN : NULL;
}

/* Width mapping (RFC 8265 §3.3.2 step 1): fullwidth and halfwidth forms map
 * to their decomposition, which is always a single code point. */
static utf8proc_int32_t width_map(utf8proc_int32_t cp)
{
    const utf8proc_property_t *pr = utf8proc_get_property(cp);
    if (pr->decomp_type != UTF8PROC_DECOMP_TYPE_WIDE &&
        pr->decomp_type != UTF8PROC_DECOMP_TYPE_NARROW)
        return cp;
    utf8proc_int32_t d[4];
    int boundclass = 0;
    utf8proc_ssize_t k =
        utf8proc_decompose_char(cp, d, 4, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, &boundclass);
    return k == 1 ? d[0] : cp;
}

/* RFC 8265 §3.3.2 steps 1 and 3: width mapping, then toLowerCase (RFC 8265
 * uses toLowerCase, not case folding, so 'ß' and 'ς' survive). */
static utf8proc_int32_t local_map_cp(utf8proc_int32_t cp, void *data)
{
    (void)data;
    return utf8proc_tolower(width_map(cp));
}

static const jid_profile LOCAL_PROFILE = {
    .part = "localpart",
    .rule = "PRECIS IdentifierClass, RFC 8265 §3.3",
    .code = XPB_EJIDLOCAL,
    .map = local_map_cp,
    .refuse = local_refusal,
    .ascii_ok = ASCII_LOCAL_OK,
};

/* ---- resourcepart: PRECIS OpaqueString (RFC 8265 §4.2) ------------------ */

/* FreeformClass (RFC 8264 §4.3) refuses controls, ignorable and unassigned
 * code points, private use and line/paragraph separators; ASCII 0x20-0x7E,
 * including '@' and '/', is valid. */
static const char *resource_refusal(utf8proc_int32_t cp)
{
    if (cp < 0x80) return cp < 0x20 || cp == 0x7f ? "control character" : NULL;
    const utf8proc_property_t *pr = utf8proc_get_property(cp);
    if (pr->ignorable) return "default-ignorable code point";
    switch (pr->category) {
    case UTF8PROC_CATEGORY_CN:
        return "unassigned code point";
    case UTF8PROC_CATEGORY_CC:
        return "control character";
    case UTF8PROC_CATEGORY_CF:
        return "format character";
    case UTF8PROC_CATEGORY_CO:
        return "private-use code point";
    case UTF8PROC_CATEGORY_CS:
        return "surrogate";
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
        return "line or paragraph separator";
    default:
        return NULL;
    }
}

/* RFC 8265 §4.2.2 step 2: non-ASCII spaces map to U+0020; no case or width
 * mapping in OpaqueString. */
static utf8proc_int32_t resource_map_cp(utf8proc_int32_t cp, void *data)
{
    (void)data;
    return cp >= 0x80 && utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS ? 0x20 : cp;
}

static const jid_profile RESOURCE_PROFILE = {
    .part = "resourcepart",
    .rule = "PRECIS OpaqueString, RFC 8265 §4.2",
    .code = XPB_EJIDRESOURCE,
    .map = resource_map_cp,
    .refuse = resource_refusal,
    .ascii_ok = ASCII_RESOURCE_OK,
};

/* ---- domainpart (RFC 7622 §3.2) ---------------------------------------- */

static int domain_bad_char(int c, size_t at, jid_err *e)
{
    if (c > 0x20 && c < 0x7f)
        return fail(e, XPB_EJIDCHAR,
                    "domainpart contains forbidden character '%c' at byte %zu "
                    "(RFC 7622 §3.2: letters, digits, hyphens, dots)",
                    c, at);
    return fail(e, XPB_EJIDCHAR,
                "domainpart contains forbidden character U+%04X at byte %zu "
                "(RFC 7622 §3.2: letters, digits, hyphens, dots)",
                (unsigned)c, at);
}

/* Letters-digits-hyphen labels (RFC 5890 §2.3.1), 1..63 bytes each, no
 * leading or trailing hyphen, at most 253 bytes in all. */
static int ldh_check(const char *p, size_t n, size_t off, jid_err *e)
{
    if (n > DNS_NAME_MAX)
        return fail(e, XPB_EJIDDOMAIN, "domainpart exceeds %d bytes (RFC 1035 §2.3.4)",
                    DNS_NAME_MAX);
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '.') {
            if (!(ascii_class((unsigned char)p[i]) & ASCII_LDH))
                return domain_bad_char((unsigned char)p[i], off + i, e);
            continue;
        }
        size_t ln = i - start;
        if (ln == 0)
            return fail(e, XPB_EJIDDOMAIN, "domainpart has an empty label at byte %zu", off + i);
        if (ln > DNS_LABEL_MAX)
            return fail(e, XPB_EJIDDOMAIN,
                        "domainpart label at byte %zu exceeds %d bytes "
                        "(RFC 1035 §2.3.4)",
                        off + start, DNS_LABEL_MAX);
        if (p[start] == '-' || p[i - 1] == '-')
            return fail(e, XPB_EJIDDOMAIN,
                        "domainpart label at byte %zu starts or ends with "
                        "'-' (RFC 5891 §4.2.3.1)",
                        off + start);
        start = i + 1;
    }
    return 0;
}

/* IP literals (RFC 7622 §3.2): IPv4 dotted quad, or IPv6 in brackets. */
static int ip_literal_check(const char *p, size_t n, size_t off, jid_err *e)
{
    char buf[48];
    unsigned char addr[16];
    int v6 = p[0] == '[';
    if (v6 && (n < 3 || p[n - 1] != ']'))
        return fail(e, XPB_EJIDDOMAIN, "domainpart IPv6 literal at byte %zu lacks its closing ']'",
                    off);
    size_t in = v6 ? n - 2 : n;
    if (in >= sizeof buf)
        return fail(e, XPB_EJIDDOMAIN, "domainpart is not a valid IP%s address", v6 ? "v6" : "v4");
    memcpy(buf, v6 ? p + 1 : p, in);
    buf[in] = '\0';
    if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, addr) != 1)
        return fail(e, XPB_EJIDDOMAIN, "domainpart is not a valid IP%s address (RFC 7622 §3.2)",
                    v6 ? "v6" : "v4");
    return 0;
}

static int all_digits_dots(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || p[i] == '.')) return 0;
    return 1;
}

/* Any label starting "xn--" is an A-label that must be stored as a U-label. */
static int has_alabel(const char *p, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++) {
        if ((i == 0 || p[i - 1] == '.') && ascii_lower(p[i]) == 'x' &&
            ascii_lower(p[i + 1]) == 'n' && p[i + 2] == '-' && p[i + 3] == '-')
            return 1;
    }
    return 0;
}

static int domain_ascii(const char *p, size_t n, size_t off, char **out, jid_err *e)
{
    int rc = (p[0] == '[' || all_digits_dots(p, n)) ? ip_literal_check(p, n, off, e)
                                                    : ldh_check(p, n, off, e);
    if (rc == 0 && out != NULL && (*out = dup_part(p, n, 1)) == NULL)
        rc = fail(e, XPB_ENOMEM, "out of memory");
    return rc;
}

/* IDNA2008 (RFC 5891) through libidn2: to A-labels (which validates, maps
 * case via UTS #46 and applies NFC), then back to U-labels, the stored form
 * (RFC 7622 §3.2). *ulabel is libidn2's, freed with idn2_free. */
static int idna_to_ulabel(const char *z, size_t off, char **ulabel, jid_err *e)
{
    char *alabel = NULL;
    int r = idn2_to_ascii_8z(z, &alabel,
                             IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL | IDN2_ALABEL_ROUNDTRIP |
                                 IDN2_USE_STD3_ASCII_RULES);
    if (r == IDN2_OK) {
        /* Label and name limits apply to the A-label form (RFC 5890 §2.3.2.1). */
        int rc = ldh_check(alabel, strlen(alabel), off, e);
        if (rc != 0) {
            idn2_free(alabel);
            return rc;
        }
        r = idn2_to_unicode_8z8z(alabel, ulabel, 0);
    }
    idn2_free(alabel);
    if (r == IDN2_MALLOC) return fail(e, XPB_ENOMEM, "out of memory in libidn2");
    if (r != IDN2_OK)
        return fail(e, XPB_EJIDDOMAIN, "domainpart fails IDNA2008 (RFC 7622 §3.2): %s",
                    idn2_strerror(r));
    return 0;
}

static int domain_idna(const char *p, size_t n, size_t off, char **out, jid_err *e)
{
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c < 0x80 && c != '.' && !(ascii_class(c) & ASCII_LDH))
            return domain_bad_char(c, off + i, e);
    }
    char *z = dup_part(p, n, 0);
    if (z == NULL) return fail(e, XPB_ENOMEM, "out of memory");
    char *ulabel = NULL;
    int rc = idna_to_ulabel(z, off, &ulabel, e);
    free(z);
    if (rc != 0) return rc;
    size_t un = strlen(ulabel);
    if (un > XPB_JID_PART_MAX)
        rc = fail(e, XPB_EJIDLEN, "domainpart exceeds %d bytes (RFC 7622 §3.2)", XPB_JID_PART_MAX);
    else if (out != NULL && (*out = dup_part(ulabel, un, 0)) == NULL)
        rc = fail(e, XPB_ENOMEM, "out of memory");
    idn2_free(ulabel);
    return rc;
}

static int domain_prep(const jid_span *sp, char **out, jid_err *e)
{
    size_t n = sp->n;
    /* RFC 7622 §3.2: one trailing dot is removed before anything else. */
    if (sp->p[n - 1] == '.') n--;
    if (n == 0)
        return fail(e, XPB_EJIDEMPTY,
                    "domainpart is empty after removing the trailing dot "
                    "(RFC 7622 §3.2)");
    if (is_ascii(sp->p, n) && !has_alabel(sp->p, n)) return domain_ascii(sp->p, n, sp->off, out, e);
    return domain_idna(sp->p, n, sp->off, out, e);
}

/* ---- public API --------------------------------------------------------- */

/* Splits and enforces every part; out == NULL validates only. On failure the
 * parts already written to out are left for the caller to clear. */
static int jid_run(const char *s, size_t len, xpb_jid *out, jid_err *e)
{
    jid_span sp[3] = {{NULL, 0, 0, 0}, {NULL, 0, 0, 0}, {NULL, 0, 0, 0}};
    if (s == NULL && len > 0) return fail(e, XPB_EINVAL, "JID pointer is NULL");
    int rc = jid_split(s, len, sp, e);
    if (rc == 0 && sp[0].present)
        rc = precis_prep(&LOCAL_PROFILE, &sp[0], 1, out != NULL ? &out->local : NULL, e);
    if (rc == 0) rc = domain_prep(&sp[1], out != NULL ? &out->domain : NULL, e);
    if (rc == 0 && sp[2].present)
        rc = precis_prep(&RESOURCE_PROFILE, &sp[2], 0, out != NULL ? &out->resource : NULL, e);
    return rc;
}

int xpb_jid_parse(xpb_jid *out, const char *s, size_t len, char *errbuf, size_t errlen)
{
    jid_err e = {errbuf, errlen};
    if (out == NULL) return fail(&e, XPB_EINVAL, "output JID is NULL");
    *out = (xpb_jid){NULL, NULL, NULL};
    int rc = jid_run(s, len, out, &e);
    if (rc != 0) xpb_jid_clear(out);
    return rc;
}

void xpb_jid_clear(xpb_jid *j)
{
    if (j == NULL) return;
    free(j->local);
    free(j->domain);
    free(j->resource);
    *j = (xpb_jid){NULL, NULL, NULL};
}

int xpb_jid_validate(const char *s, size_t len, char *errbuf, size_t errlen)
{
    jid_err e = {errbuf, errlen};
    return jid_run(s, len, NULL, &e);
}

/* local@domain/resource with absent parts (and their separators) left out. */
static char *jid_format(const xpb_jid *j, int with_resource)
{
    if (j == NULL || j->domain == NULL) return NULL;
    size_t ln = j->local != NULL ? strlen(j->local) : 0;
    size_t dn = strlen(j->domain);
    size_t rn = with_resource && j->resource != NULL ? strlen(j->resource) : 0;
    char *d = malloc(ln + dn + rn + 3);
    if (d == NULL) return NULL;
    size_t w = 0;
    if (j->local != NULL) {
        memcpy(d, j->local, ln);
        d[ln] = '@';
        w = ln + 1;
    }
    memcpy(d + w, j->domain, dn);
    w += dn;
    if (with_resource && j->resource != NULL) {
        d[w++] = '/';
        memcpy(d + w, j->resource, rn);
        w += rn;
    }
    d[w] = '\0';
    return d;
}

char *xpb_jid_full(const xpb_jid *j)
{
    return jid_format(j, 1);
}

char *xpb_jid_bare(const xpb_jid *j)
{
    return jid_format(j, 0);
}

int xpb_jid_normalize(const char *s, size_t len, char **out, char *errbuf, size_t errlen)
{
    jid_err e = {errbuf, errlen};
    if (out == NULL) return fail(&e, XPB_EINVAL, "output pointer is NULL");
    *out = NULL;
    xpb_jid j;
    int rc = xpb_jid_parse(&j, s, len, errbuf, errlen);
    if (rc != 0) return rc;
    *out = xpb_jid_full(&j);
    xpb_jid_clear(&j);
    return *out != NULL ? 0 : fail(&e, XPB_ENOMEM, "out of memory");
}

int xpb_jid_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL) return 0;
    char *na = NULL, *nb = NULL;
    int eq = xpb_jid_normalize(a, strlen(a), &na, NULL, 0) == 0 &&
             xpb_jid_normalize(b, strlen(b), &nb, NULL, 0) == 0 && strcmp(na, nb) == 0;
    free(na);
    free(nb);
    return eq;
}
