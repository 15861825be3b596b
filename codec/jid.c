/* JIDs (RFC 7622): split, then PRECIS UsernameCaseMapped (localpart), IDNA2008
 * (domainpart), PRECIS OpaqueString (resourcepart). All-ASCII parts take a byte
 * loop that never calls utf8proc/libidn2 and, when validating, never allocates. */
#include "xpb_error.h"
#include "xpb_jid.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdarg.h>
#include <stdint.h>
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

/* Checks every code point of the mapped, NFC text m[0..r) (RFC 8264 §7
 * order: map, normalise, then test the behavioural rules on the result). */
static int check_mapped(const jid_profile *pf, const jid_span *sp, const utf8proc_uint8_t *m,
                        utf8proc_ssize_t r, jid_err *e)
{
    if (r < 0) return fail(e, pf->code, "%s is not valid UTF-8 (%s)", pf->part, utf8proc_errmsg(r));
    if ((size_t)r > XPB_JID_PART_MAX)
        return fail(e, XPB_EJIDLEN, "%s exceeds %d bytes after normalisation (RFC 7622 §3)",
                    pf->part, XPB_JID_PART_MAX);
    for (size_t pos = 0; pos < (size_t)r;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(m + pos, r - (utf8proc_ssize_t)pos, &cp);
        const char *why = k > 0 ? pf->refuse(cp) : "invalid UTF-8";
        if (why != NULL) return report_refusal(pf, sp, cp, why, pos, e);
        pos += k > 0 ? (size_t)k : 1;
    }
    return 0;
}

/* Heap variant of unicode_enforce for inputs that outgrow the stack buffer
 * (none exist today, see PART_CP_MAX); utf8proc_map_custom sizes its
 * buffer with a first decomposition pass and mallocs it. */
static int unicode_enforce_heap(const jid_profile *pf, const jid_span *sp, char **out, jid_err *e)
{
    utf8proc_uint8_t *m = NULL;
    utf8proc_ssize_t r =
        utf8proc_map_custom((const utf8proc_uint8_t *)sp->p, (utf8proc_ssize_t)sp->n, &m,
                            UTF8PROC_STABLE | UTF8PROC_COMPOSE, pf->map, NULL);
    if (r == UTF8PROC_ERROR_NOMEM)
        return fail(e, XPB_ENOMEM, "out of memory normalising the %s", pf->part);
    int rc = check_mapped(pf, sp, m, r, e);
    if (rc == 0 && out != NULL)
        *out = (char *)m;
    else
        free(m);
    return rc;
}

/* Code points after mapping and canonical decomposition, per input byte, at
 * most 2: ASCII maps to ASCII (one code point per byte), and no canonical
 * decomposition is longer than 4 code points (U+1F82 -> U+03B1 U+0313 U+0300
 * U+0345), while every non-ASCII input code point takes at least 2 bytes.
 * test_jid checks both facts over all of Unicode. */
#define PART_CP_MAX (2 * XPB_JID_PART_MAX)

/* Maps and normalises the part with utf8proc exactly as utf8proc_map_custom
 * would (custom map + canonical decomposition, then NFC composition and UTF-8
 * re-encoding in place), but into a stack buffer: validation allocates
 * nothing. Only parse copies the result out (*out, malloc'd). */
static int unicode_enforce(const jid_profile *pf, const jid_span *sp, char **out, jid_err *e)
{
    /* +1: utf8proc_reencode NUL-terminates the UTF-8 it writes in place. */
    utf8proc_int32_t buf[PART_CP_MAX + 1];
    const utf8proc_option_t opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    utf8proc_ssize_t r = utf8proc_decompose_custom((const utf8proc_uint8_t *)sp->p,
                                                   (utf8proc_ssize_t)sp->n, buf, PART_CP_MAX,
                                                   opts, pf->map, NULL);
    if (r > PART_CP_MAX) return unicode_enforce_heap(pf, sp, out, e);
    if (r >= 0) r = utf8proc_reencode(buf, r, opts);
    const utf8proc_uint8_t *m = (const utf8proc_uint8_t *)buf;
    int rc = check_mapped(pf, sp, m, r, e);
    if (rc == 0 && out != NULL && (*out = dup_part((const char *)m, (size_t)r, 0)) == NULL)
        rc = fail(e, XPB_ENOMEM, "out of memory");
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

/* ---- domainpart: allocation-free acceptance of stored-form IDNs --------- */

/* libidn2 allocates about ten times per call (libunistring conversions), so
 * a domain that is already in the form we store is accepted here without
 * it. "Already stored" must imply exactly what libidn2 decides, so this is a
 * one-sided test: it only ever says "certainly valid", and anything else
 * goes to libidn2, which then also produces every refusal and its code.
 *
 * A code point is listed below only when, for the IDNA2008/UTS #46 checks
 * idn2_to_ascii_8z runs (lib/lookup.c: _tr46 and label), it is
 * - UTS #46 "valid" (or a deviation kept by non-transitional processing:
 *   U+00DF, U+03C2), so mapping leaves it as is: it is lowercase already;
 * - PVALID (RFC 5892 §2.1-2.6), neither CONTEXTJ nor CONTEXTO;
 * - bidi class L, so RFC 5893 (which libidn2 applies only to labels holding
 *   an R, AL or AN code point, lib/bidi.c) never runs;
 * - a starter (ccc 0, not a mark: RFC 5891 §5.4 leading-combining rule)
 *   that is NFC on its own and never the second half of a canonical
 *   composition, so any string of them and ASCII is NFC (UAX #15 §9);
 * - in a block assigned by Unicode 6.1, so an older libidn2 knows it.
 * The list was generated from libidn2 2.3.3 and utf8proc 2.6.0 (Latin, Greek,
 * Cyrillic, Armenian, Georgian, kana, CJK 4E00-9FA5, Hangul syllables);
 * test_jid re-derives every entry against the installed libidn2.
 * Ranges are {first, last, step}: step 2 for alternating lower/upper case. */
typedef struct cp_run {
    utf8proc_int32_t lo, hi, step;
} cp_run;

static const cp_run STORED_IDN_CP[] = {
    {0x00DF, 0x00F6, 1}, {0x00F8, 0x00FF, 1}, {0x0101, 0x0131, 2}, {0x0135, 0x0137, 2},
    {0x0138, 0x013E, 2}, {0x0142, 0x0148, 2}, {0x014B, 0x0177, 2}, {0x017A, 0x0180, 2},
    {0x0183, 0x0185, 2}, {0x0188, 0x0188, 1}, {0x018C, 0x018D, 1}, {0x0192, 0x0192, 1},
    {0x0195, 0x0195, 1}, {0x0199, 0x019B, 1}, {0x019E, 0x019E, 1}, {0x01A1, 0x01A5, 2},
    {0x01A8, 0x01AA, 2}, {0x01AB, 0x01AD, 2}, {0x01B0, 0x01B0, 1}, {0x01B4, 0x01B6, 2},
    {0x01B9, 0x01BB, 1}, {0x01BD, 0x01C3, 1}, {0x01CE, 0x01DC, 2}, {0x01DD, 0x01EF, 2},
    {0x01F0, 0x01F0, 1}, {0x01F5, 0x01F5, 1}, {0x01F9, 0x0233, 2}, {0x0234, 0x0239, 1},
    {0x023C, 0x023C, 1}, {0x023F, 0x0240, 1}, {0x0242, 0x0242, 1}, {0x0247, 0x024F, 2},
    {0x0371, 0x0373, 2}, {0x0377, 0x0377, 1}, {0x037B, 0x037D, 1}, {0x0390, 0x0390, 1},
    {0x03AC, 0x03CE, 1}, {0x03D7, 0x03EF, 2}, {0x03F3, 0x03F3, 1}, {0x03F8, 0x03F8, 1},
    {0x03FB, 0x03FC, 1}, {0x0430, 0x045F, 1}, {0x0461, 0x0481, 2}, {0x048B, 0x04BF, 2},
    {0x04C2, 0x04CE, 2}, {0x04CF, 0x052F, 2}, {0x0559, 0x0559, 1}, {0x0561, 0x0586, 1},
    {0x10D0, 0x10FA, 1}, {0x10FD, 0x10FF, 1}, {0x1E01, 0x1E95, 2}, {0x1E96, 0x1E99, 1},
    {0x1E9C, 0x1E9D, 1}, {0x1E9F, 0x1EFF, 2}, {0x1F00, 0x1F07, 1}, {0x1F10, 0x1F15, 1},
    {0x1F20, 0x1F27, 1}, {0x1F30, 0x1F37, 1}, {0x1F40, 0x1F45, 1}, {0x1F50, 0x1F57, 1},
    {0x1F60, 0x1F67, 1}, {0x1F70, 0x1F7C, 2}, {0x1FB0, 0x1FB1, 1}, {0x1FB6, 0x1FB6, 1},
    {0x1FC6, 0x1FC6, 1}, {0x1FD0, 0x1FD2, 1}, {0x1FD6, 0x1FD7, 1}, {0x1FE0, 0x1FE2, 1},
    {0x1FE4, 0x1FE7, 1}, {0x1FF6, 0x1FF6, 1}, {0x3041, 0x3096, 1}, {0x309D, 0x309E, 1},
    {0x30A1, 0x30FA, 1}, {0x30FC, 0x30FE, 1}, {0x4E00, 0x9FA5, 1}, {0xAC00, 0xD7A3, 1},
};

/* Binary search for the run whose lo is the last <= cp. */
static int stored_idn_cp(utf8proc_int32_t cp)
{
    size_t lo = 0, hi = sizeof STORED_IDN_CP / sizeof STORED_IDN_CP[0];
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (STORED_IDN_CP[mid].lo <= cp)
            lo = mid;
        else
            hi = mid;
    }
    const cp_run *r = &STORED_IDN_CP[lo];
    return cp >= r->lo && cp <= r->hi && (cp - r->lo) % r->step == 0;
}

/* RFC 3492 §6.1 bias adaptation with the §5 parameters. */
static uint32_t puny_adapt(uint32_t delta, uint32_t numpoints, int first)
{
    uint32_t k = 0;
    delta = first ? delta / 700 : delta / 2;
    delta += delta / numpoints;
    while (delta > ((36 - 1) * 26) / 2) {
        delta /= 36 - 1;
        k += 36;
    }
    return k + (36 * delta) / (delta + 38);
}

/* Punycode digits for one delta (RFC 3492 §6.3 inner loop), counted only. */
static size_t puny_digits(uint32_t q, uint32_t bias)
{
    size_t d = 1;
    for (uint32_t k = 36;; k += 36) {
        uint32_t t = k <= bias ? 1 : k >= bias + 26 ? 26 : k - bias;
        if (q < t) return d;
        q = (q - t) / (36 - t);
        d++;
    }
}

/* Length of the Punycode encoding (RFC 3492 §6.3) of cp[0..n); n <= 63 and
 * cp < 0x110000 keep every delta far below 2^32 (no overflow handling). */
static size_t puny_len(const utf8proc_int32_t *cp, size_t n)
{
    size_t b = 0;
    for (size_t i = 0; i < n; i++)
        b += cp[i] < 0x80;
    size_t out = b + (b > 0), h = b;
    uint32_t next = 0x80, delta = 0, bias = 72;
    while (h < n) {
        uint32_t m = UINT32_MAX;
        for (size_t i = 0; i < n; i++)
            if ((uint32_t)cp[i] >= next && (uint32_t)cp[i] < m) m = (uint32_t)cp[i];
        delta += (m - next) * (uint32_t)(h + 1);
        next = m;
        for (size_t i = 0; i < n; i++) {
            if ((uint32_t)cp[i] < next) delta++;
            if ((uint32_t)cp[i] != next) continue;
            out += puny_digits(delta, bias);
            bias = puny_adapt(delta, (uint32_t)(h + 1), h == b);
            delta = 0;
            h++;
        }
        delta++;
        next++;
    }
    return out;
}

/* Byte length of one label in A-label form, or 0 when the label is not
 * certainly valid: a code point off the list, a byte outside LDH, a hyphen
 * at either end or in positions 3-4 (RFC 5891 §4.2.3.1, which libidn2's
 * TR46 step applies to ASCII labels too), or over 63 bytes as an A-label. */
static size_t stored_label_alen(const char *p, size_t n)
{
    utf8proc_int32_t cp[DNS_LABEL_MAX + 1];
    size_t ncp = 0, ascii = 1;
    for (size_t pos = 0; pos < n;) {
        utf8proc_int32_t c = (unsigned char)p[pos];
        utf8proc_ssize_t k = 1;
        if (c >= 0x80) {
            k = utf8proc_iterate((const utf8proc_uint8_t *)p + pos, (utf8proc_ssize_t)(n - pos), &c);
            if (k <= 0 || !stored_idn_cp(c)) return 0;
            ascii = 0;
        } else if (!(ascii_class(c) & ASCII_LDH)) {
            return 0;
        }
        if (ncp == DNS_LABEL_MAX) return 0; /* > 63 code points: too long either way */
        cp[ncp++] = c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; /* UTS #46 maps ASCII case */
        pos += (size_t)k;
    }
    if (ncp == 0 || cp[0] == '-' || cp[ncp - 1] == '-' ||
        (ncp >= 4 && cp[2] == '-' && cp[3] == '-'))
        return 0;
    size_t alen = ascii ? ncp : 4 + puny_len(cp, ncp); /* "xn--" + Punycode */
    return alen <= DNS_LABEL_MAX ? alen : 0;
}

/* 1 when p[0..n) (trailing dot removed, no A-labels) is certainly accepted
 * by domain_idna and stored unchanged apart from ASCII case; 0: ask libidn2.
 * Limits are on the A-label form, as in idna_to_ulabel (RFC 5890 §2.3.2.1). */
static int domain_is_stored_form(const char *p, size_t n)
{
    size_t total = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '.') continue;
        size_t alen = stored_label_alen(p + start, i - start);
        if (alen == 0) return 0;
        total += alen + (start > 0);
        if (total > DNS_NAME_MAX) return 0;
        start = i + 1;
    }
    return 1;
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
    /* libidn2 wants NUL-terminated input; n <= XPB_JID_PART_MAX (jid_split). */
    char z[XPB_JID_PART_MAX + 1];
    memcpy(z, p, n);
    z[n] = '\0';
    char *ulabel = NULL;
    int rc = idna_to_ulabel(z, off, &ulabel, e);
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
    if (has_alabel(sp->p, n)) return domain_idna(sp->p, n, sp->off, out, e);
    if (is_ascii(sp->p, n)) return domain_ascii(sp->p, n, sp->off, out, e);
    if (!domain_is_stored_form(sp->p, n)) return domain_idna(sp->p, n, sp->off, out, e);
    if (out != NULL && (*out = dup_part(sp->p, n, 1)) == NULL)
        return fail(e, XPB_ENOMEM, "out of memory");
    return 0;
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
