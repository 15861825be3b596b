/* Tables and compact-form helpers shared by the stanza reader, writer,
 * expander and record check (codec/stanza_internal.h): one XML value table
 * per enum, UUID and XEP-0082 stamp conversions, JidRef resolution. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "stanza_internal.h"

/* ---- XML spellings, index = enum value (stanza.proto) ------------------- */

#define NAMES(var, ...)                                                                            \
    static const char *const var##_v[] = {NULL, __VA_ARGS__};                                      \
    const xpb_names var = {var##_v, N_OF(var##_v)}

NAMES(xpb_kind_names, "message", "presence", "iq");
NAMES(xpb_type_names, "normal", "chat", "groupchat", "headline", "error", "get", "set", "result",
      "unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe");
NAMES(xpb_show_names, "away", "chat", "dnd", "xa");
NAMES(xpb_error_type_names, "auth", "cancel", "continue", "modify", "wait");
/* RFC 6120 §8.3.3 defined conditions. */
NAMES(xpb_condition_names, "bad-request", "conflict", "feature-not-implemented", "forbidden",
      "gone", "internal-server-error", "item-not-found", "jid-malformed", "not-acceptable",
      "not-allowed", "not-authorized", "policy-violation", "recipient-unavailable", "redirect",
      "registration-required", "remote-server-not-found", "remote-server-timeout",
      "resource-constraint", "service-unavailable", "subscription-required",
      "undefined-condition", "unexpected-request");
NAMES(xpb_chat_state_names, "active", "composing", "paused", "inactive", "gone");
NAMES(xpb_subscription_names, "none", "to", "from", "both", "remove");
NAMES(xpb_direction_names, "received", "sent");
/* XEP-0045 §5.2 and §5.1; IANA hash function textual names. */
NAMES(xpb_affiliation_names, "owner", "admin", "member", "outcast", "none");
NAMES(xpb_role_names, "moderator", "participant", "visitor", "none");
NAMES(xpb_hash_names, "sha-1", "sha-224", "sha-256", "sha-384", "sha-512", "md5");

/* ---- UUIDs ---------------------------------------------------------------- */

/* Lowercase hex digit value + 1; 0 for everything else (uppercase too: the
 * writer prints lowercase, so only that round-trips). A table because every
 * message id goes through here. */
static const uint8_t hex_tab[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* Positions of the four hyphens in 8-4-4-4-12. */
static const uint8_t uuid_pair_at[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};

bool xpb_uuid_parse(const char *s, size_t len, uint8_t out[16])
{
    if (len != XPB_UUID_CHARS || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
        return false;
    const unsigned char *u = (const unsigned char *)s;
    bool ok = true;
    for (size_t k = 0; k < 16; k++) {
        unsigned hi = hex_tab[u[uuid_pair_at[k]]], lo = hex_tab[u[uuid_pair_at[k] + 1]];
        ok &= hi != 0 && lo != 0;
        out[k] = (uint8_t)((hi - 1) << 4 | (lo - 1));
    }
    return ok;
}

void xpb_uuid_format(const uint8_t *u, char buf[XPB_UUID_CHARS])
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) buf[k++] = '-';
        buf[k++] = hex[u[i] >> 4];
        buf[k++] = hex[u[i] & 15];
    }
}

/* ---- Delay stamps: H. Hinnant's proleptic Gregorian algorithms ------------ */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, size_t n, unsigned *v)
{
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        *v = *v * 10 + (unsigned)(s[i] - '0');
    }
    return true;
}

bool xpb_stamp_parse(const char *s, size_t len, int64_t *out)
{
    static const unsigned char mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y, mo, d, h, mi, sec;
    if (len != XPB_STAMP_CHARS || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != 'Z')
        return false;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
        !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 59)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap) return false;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    return true;
}

/* civil_from_days, then the fixed-width fields. */
void xpb_stamp_format(int64_t t, char buf[XPB_STAMP_CHARS])
{
    int64_t z = (t >= 0 ? t : t - 86399) / 86400;
    unsigned sod = (unsigned)(t - z * 86400);
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    unsigned y = (unsigned)(yoe + era * 400 + (m <= 2));
    unsigned v[6] = {y, m, d, sod / 3600, sod / 60 % 60, sod % 60};
    static const char sep[] = "--T::Z";
    size_t k = 0;
    for (size_t i = 0; i < 6; i++) {
        for (unsigned w = i == 0 ? 1000 : 10; w > 0; w /= 10)
            buf[k++] = (char)('0' + v[i] / w % 10);
        buf[k++] = sep[i];
    }
}

/* ---- JID references ---------------------------------------------------------- */

const xpb_ref_info xpb_ref_table[XPB_REF_N] = {
    [XPB__V1__JID_REF__JID_REF_UNSPECIFIED] = {false, false, -1},
    [XPB__V1__JID_REF__JID_REF_TO_BARE] = {false, true, XPB_PART_BARE},
    [XPB__V1__JID_REF__JID_REF_FROM_BARE] = {false, false, XPB_PART_BARE},
    [XPB__V1__JID_REF__JID_REF_TO_DOMAIN] = {false, true, XPB_PART_DOMAIN},
    [XPB__V1__JID_REF__JID_REF_FROM_DOMAIN] = {false, false, XPB_PART_DOMAIN},
    [XPB__V1__JID_REF__JID_REF_TO] = {false, true, XPB_PART_FULL},
    [XPB__V1__JID_REF__JID_REF_FROM] = {false, false, XPB_PART_FULL},
    [XPB__V1__JID_REF__JID_REF_OUTER_TO] = {true, true, XPB_PART_FULL},
    [XPB__V1__JID_REF__JID_REF_OUTER_FROM] = {true, false, XPB_PART_FULL},
    [XPB__V1__JID_REF__JID_REF_OUTER_TO_BARE] = {true, true, XPB_PART_BARE},
    [XPB__V1__JID_REF__JID_REF_OUTER_FROM_BARE] = {true, false, XPB_PART_BARE},
};

static bool ref_jid(const xpb_scope *s, int ref, unsigned hops, unsigned max_hops, const char **p,
                    size_t *n);

/* s's to (or from), following a reference when it is one. */
static bool scope_jid(const xpb_scope *s, bool to, unsigned hops, unsigned max_hops,
                      const char **p, size_t *n)
{
    const xpb_stanza *st = s->st;
    const char *str = to ? st->to : st->from;
    if (str != NULL) {
        *p = str;
        *n = strlen(str);
        return true;
    }
    if (!(to ? st->has_to_ref : st->has_from_ref)) return false;
    return ref_jid(s, (int)(to ? st->to_ref : st->from_ref), hops + 1, max_hops, p, n);
}

static bool ref_jid(const xpb_scope *s, int ref, unsigned hops, unsigned max_hops, const char **p,
                    size_t *n)
{
    if (ref <= 0 || ref >= XPB_REF_N || hops > max_hops) return false;
    const xpb_ref_info *r = &xpb_ref_table[ref];
    const xpb_scope *target = r->outer ? s->outer : s;
    const char *jid;
    size_t len, off;
    if (target == NULL || !scope_jid(target, r->to, hops, max_hops, &jid, &len)) return false;
    xpb_jid_part(jid, len, r->part, &off, n);
    *p = jid + off;
    return true;
}

bool xpb_ref_resolve(const xpb_scope *s, int ref, unsigned max_hops, const char **p, size_t *n)
{
    return ref_jid(s, ref, 0, max_hops, p, n);
}
