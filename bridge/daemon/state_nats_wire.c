/* The KV values of the NATS state back end (state_nats_wire.h): a header
 * line of decimal numbers, then the strings and bytes it gives lengths for. */
#include "state_nats_wire.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"

#define SM_MAGIC "XPBSM1"
#define OB_MAGIC "XPBOB1"
#define HEAD_MAX 200u /* a header line is shorter than this */

/* The header line of v (up to '\n') as a string in head; the offset past it. */
static int head_line(const uint8_t *v, size_t len, char *head, size_t *past)
{
    const uint8_t *nl = memchr(v, '\n', len < HEAD_MAX ? len : HEAD_MAX);
    if (!nl) return XPB_EINVAL;
    size_t n = (size_t)(nl - v);
    memcpy(head, v, n);
    head[n] = '\0';
    *past = n + 1;
    for (size_t i = 6; i < n; i++) /* after the magic: counts only (sscanf takes "-1") */
        if (head[i] != ' ' && (head[i] < '0' || head[i] > '9')) return XPB_EINVAL;
    return 0;
}

/* Copies n bytes at v[*at] into out (NUL-terminated); XPB_EINVAL when they
 * are not all there or do not fit. */
static int take(const uint8_t *v, size_t len, size_t *at, size_t n, char *out, size_t outlen)
{
    if (n > len - *at || n >= outlen || memchr(v + *at, '\0', n)) return XPB_EINVAL;
    memcpy(out, v + *at, n);
    out[n] = '\0';
    *at += n;
    return 0;
}

int state_nats_sm_encode(xpb_buf *out, const xpb_sm_state *st)
{
    char head[HEAD_MAX];
    size_t li = strlen(st->id), ll = strlen(st->location), lj = strlen(st->jid);
    snprintf(head, sizeof head, SM_MAGIC " %" PRIu32 " %" PRIu32 " %" PRId64 " %zu %zu %zu\n",
             st->h_in, st->h_out, st->saved_us, li, ll, lj);
    if (xpb_buf_append_str(out, head) || xpb_buf_append(out, st->id, li) ||
        xpb_buf_append(out, st->location, ll) || xpb_buf_append(out, st->jid, lj))
        return XPB_ENOMEM;
    return 0;
}

int state_nats_sm_decode(const uint8_t *v, size_t len, xpb_sm_state *st)
{
    char head[HEAD_MAX];
    size_t at = 0, li, ll, lj;
    memset(st, 0, sizeof *st);
    if (head_line(v, len, head, &at)) return XPB_EINVAL;
    int end = 0;
    if (sscanf(head, SM_MAGIC " %" SCNu32 " %" SCNu32 " %" SCNd64 " %zu %zu %zu%n", &st->h_in,
               &st->h_out, &st->saved_us, &li, &ll, &lj, &end) != 6 ||
        head[end] != '\0')
        return XPB_EINVAL;
    if (take(v, len, &at, li, st->id, sizeof st->id) ||
        take(v, len, &at, ll, st->location, sizeof st->location) ||
        take(v, len, &at, lj, st->jid, sizeof st->jid) || at != len || !st->id[0])
        return XPB_EINVAL;
    return 0;
}

int state_nats_outbox_encode(xpb_buf *out, const xpb_outbox_item *it)
{
    char head[HEAD_MAX];
    const char *rid = it->request_id ? it->request_id : "";
    size_t ls = strlen(it->stanza_id), lr = strlen(rid);
    snprintf(head, sizeof head, OB_MAGIC " %zu %zu\n", ls, lr);
    if (xpb_buf_append_str(out, head) || xpb_buf_append(out, it->stanza_id, ls) ||
        xpb_buf_append(out, rid, lr) || xpb_buf_append(out, it->xml, it->xml_len))
        return XPB_ENOMEM;
    return 0;
}

int state_nats_outbox_decode(const uint8_t *v, size_t len, xpb_outbox_item *it, char *sid,
                             size_t sidlen, char *rid, size_t ridlen)
{
    char head[HEAD_MAX];
    size_t at = 0, ls, lr;
    int end = 0;
    if (head_line(v, len, head, &at) ||
        sscanf(head, OB_MAGIC " %zu %zu%n", &ls, &lr, &end) != 2 || head[end] != '\0' ||
        take(v, len, &at, ls, sid, sidlen) || take(v, len, &at, lr, rid, ridlen) || !sid[0])
        return XPB_EINVAL;
    it->stanza_id = sid;
    it->request_id = rid[0] ? rid : NULL;
    it->xml = v + at;
    it->xml_len = len - at;
    return 0;
}

size_t state_nats_outbox_key(const char *token, uint64_t id, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s.%" PRIu64, token, id);
    return n < 0 ? outlen : (size_t)n;
}

int state_nats_outbox_key_parse(const char *key, char *token, size_t toklen, uint64_t *id)
{
    const char *dot = strrchr(key, '.');
    if (!dot || dot == key || (size_t)(dot - key) >= toklen || !dot[1]) return XPB_EINVAL;
    char *end = NULL;
    unsigned long long v = strtoull(dot + 1, &end, 10);
    if (*end != '\0' || dot[1] < '0' || dot[1] > '9') return XPB_EINVAL;
    memcpy(token, key, (size_t)(dot - key));
    token[dot - key] = '\0';
    *id = v;
    return 0;
}
