/* The KV values of the NATS state back end (state_nats_wire.h): a header
 * line of decimal numbers, then the strings and bytes it gives lengths for. */
#include "state_nats_wire.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_bus_nats_wire.h"
#include "xpb_error.h"

#define SM_MAGIC "XPBSM1"
#define OB_MAGIC "XPBOB1"
#define MK_MAGIC "XPBMK1"
#define MK2_MAGIC "XPBMK2" /* with the stream the marker was caught up in */
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

int state_nats_marks_encode(xpb_buf *out, const state_nats_marks *m)
{
    char head[HEAD_MAX];
    size_t lm = strlen(m->marker), ls = strlen(m->stream);
    /* Without a stream the first form: a bridge of before XPBMK2 reads it. */
    if (ls)
        snprintf(head, sizeof head, MK2_MAGIC " %zu %zu %zu\n", lm, ls, m->n);
    else
        snprintf(head, sizeof head, MK_MAGIC " %zu %zu\n", lm, m->n);
    if (xpb_buf_append_str(out, head) || xpb_buf_append(out, m->marker, lm) ||
        xpb_buf_append(out, m->stream, ls))
        return XPB_ENOMEM;
    for (size_t i = 0; i < m->n; i++) {
        char len[24];
        size_t l = strlen(m->seen[i]);
        snprintf(len, sizeof len, "%zu:", l);
        if (xpb_buf_append_str(out, len) || xpb_buf_append(out, m->seen[i], l)) return XPB_ENOMEM;
    }
    return 0;
}

/* One "<len>:<bytes>" stanza-id at v[*at] into id. */
static int take_id(const uint8_t *v, size_t len, size_t *at, char *id, size_t idlen)
{
    size_t l = 0, digits = 0;
    while (*at < len && v[*at] >= '0' && v[*at] <= '9' && digits < 4) {
        l = l * 10 + (size_t)(v[*at] - '0');
        (*at)++;
        digits++;
    }
    if (!digits || *at >= len || v[*at] != ':' || l == 0) return XPB_EINVAL;
    (*at)++;
    return take(v, len, at, l, id, idlen);
}

int state_nats_marks_decode(const uint8_t *v, size_t len, state_nats_marks *m)
{
    char head[HEAD_MAX], id[XPB_NATS_MARK_ID_MAX];
    size_t at = 0, lm, ls = 0, n;
    int end = 0, v2 = 0;
    memset(m, 0, sizeof *m);
    if (head_line(v, len, head, &at)) return XPB_EINVAL;
    if (sscanf(head, MK2_MAGIC " %zu %zu %zu%n", &lm, &ls, &n, &end) == 3)
        v2 = 1;
    else if (end = 0, sscanf(head, MK_MAGIC " %zu %zu%n", &lm, &n, &end) != 2)
        return XPB_EINVAL;
    if (head[end] != '\0' || n > XPB_NATS_MARKS_SEEN ||
        take(v, len, &at, lm, m->marker, sizeof m->marker) ||
        (v2 && (ls == 0 || take(v, len, &at, ls, m->stream, sizeof m->stream))))
        return XPB_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int rc = take_id(v, len, &at, id, sizeof id);
        if (!rc && !(m->seen[m->n] = strdup(id))) rc = XPB_ENOMEM;
        if (rc) {
            state_nats_marks_clear(m);
            return rc;
        }
        m->n++;
    }
    if (at != len) {
        state_nats_marks_clear(m);
        return XPB_EINVAL;
    }
    return 0;
}

void state_nats_marks_clear(state_nats_marks *m)
{
    for (size_t i = 0; i < m->n; i++) free(m->seen[i]);
    memset(m, 0, sizeof *m);
}

int state_nats_marks_has(const state_nats_marks *m, const char *id)
{
    for (size_t i = m->n; i > 0; i--) /* newest first: a duplicate is usually recent */
        if (strcmp(m->seen[i - 1], id) == 0) return 1;
    return 0;
}

int state_nats_marks_add(state_nats_marks *m, const char *id)
{
    size_t l = strlen(id);
    if (l == 0 || l >= XPB_NATS_MARK_ID_MAX) return XPB_ETOOBIG;
    char *copy = NULL;
    for (size_t i = 0; i < m->n; i++) /* kept already: it becomes the newest */
        if (strcmp(m->seen[i], id) == 0) {
            copy = m->seen[i];
            memmove(&m->seen[i], &m->seen[i + 1], (m->n - i - 1) * sizeof *m->seen);
            m->n--;
            break;
        }
    if (!copy && !(copy = strdup(id))) return XPB_ENOMEM;
    if (m->n == XPB_NATS_MARKS_SEEN) {
        free(m->seen[0]);
        memmove(&m->seen[0], &m->seen[1], (m->n - 1) * sizeof *m->seen);
        m->n--;
    }
    m->seen[m->n++] = copy;
    return 0;
}

size_t state_nats_marks_key(const char *token, const char *archive, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s.", token);
    if (n < 0 || (size_t)n >= outlen) return outlen;
    return (size_t)n + xpb_nats_account_token(archive, out + n, outlen - (size_t)n);
}
