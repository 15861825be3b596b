/* Stream management (XEP-0198) and the outbound queue of the c2s session:
 * stanzas kept until acknowledged, <r/> and <a/>, enable and resume, and the
 * stream errors XEP-0198 §6 asks for when the counts disagree. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_internal.h"
#include "xpb_error.h"

/* ---- outbound queue -------------------------------------------------------- */

static void item_release(xpb_session *s, size_t i)
{
    free(s->items[i].xml);
    if (i == 0) { /* an ack, from the front: O(1) */
        s->items++;
    } else {
        memmove(&s->items[i], &s->items[i + 1], (s->n_items - i - 1) * sizeof *s->items);
    }
    s->n_items--;
    if (i < s->n_sent) s->n_sent--;
    if (s->n_items == 0) s->items = s->items_base;
    session_gauges_sync(s);
}

/* Room for one more entry at the end: the live ones moved back to the front
 * of the array when acks left at least half of it free, else it grows. */
static int items_reserve(xpb_session *s)
{
    size_t head = s->items_base ? (size_t)(s->items - s->items_base) : 0;
    if (head + s->n_items < s->cap_items) return 0;
    if (head > 0 && head >= s->cap_items / 2) {
        memmove(s->items_base, s->items, s->n_items * sizeof *s->items);
        s->items = s->items_base;
        return 0;
    }
    size_t cap = s->cap_items ? s->cap_items * 2 : 16;
    out_item *n = realloc(s->items_base, cap * sizeof *n);
    if (n == NULL) return XPB_ENOMEM;
    s->items_base = n;
    s->items = n + head;
    s->cap_items = cap;
    return 0;
}

int session_item_insert(xpb_session *s, size_t at, uint64_t handle, const char *xml, size_t len)
{
    if (items_reserve(s) != 0) return XPB_ENOMEM;
    char *copy = malloc(len + 1);
    if (copy == NULL) return XPB_ENOMEM;
    memcpy(copy, xml, len);
    copy[len] = '\0';
    memmove(&s->items[at + 1], &s->items[at], (s->n_items - at) * sizeof *s->items);
    s->items[at] = (out_item){.handle = handle, .xml = copy, .len = len};
    s->n_items++;
    session_gauges_sync(s);
    return 0;
}

void session_items_free(xpb_session *s)
{
    for (size_t i = 0; i < s->n_items; i++) free(s->items[i].xml);
    free(s->items_base);
    s->items = s->items_base = NULL;
    s->n_items = s->cap_items = s->n_sent = 0;
    session_gauges_sync(s);
}

static void report_sm(xpb_session *s)
{
    xpb_session_event ev = {.kind = XPB_SE_SM, .state = s->state};
    s->ops->event(s->io, &ev);
}

static void report_item(xpb_session *s, xpb_session_event_kind kind, uint64_t handle,
                        const char *reason)
{
    if (handle == 0) return; /* the session's own stanza */
    xpb_session_event ev = {.kind = kind, .state = s->state, .handle = handle, .reason = reason};
    s->ops->event(s->io, &ev);
}

/* XEP-0198 §4: the server has handled `count` more of our stanzas. */
static void release_acked(xpb_session *s, uint32_t count)
{
    for (uint32_t i = 0; i < count && s->n_sent > 0; i++) {
        uint64_t h = s->items[0].handle;
        item_release(s, 0);
        report_item(s, XPB_SE_ACKED, h, NULL);
    }
}

void session_fail_all_items(xpb_session *s, const char *reason)
{
    while (s->n_items > 0) {
        uint64_t h = s->items[0].handle;
        item_release(s, 0);
        report_item(s, XPB_SE_FAILED, h, reason);
    }
    s->n_sent = 0;
    session_gauges_sync(s);
}

/* A fresh session: our own stanzas of the old one are pointless (presence and
 * roster are sent again); the user's are all resent. */
void session_drop_internal_items(xpb_session *s)
{
    s->n_sent = 0;
    session_gauges_sync(s);
    for (size_t i = 0; i < s->n_items;) {
        if (s->items[i].handle == 0)
            item_release(s, i);
        else
            i++;
    }
}

void session_forget_sm(xpb_session *s)
{
    s->resume_probe = 0;
    free(s->sm_id);
    s->sm_id = NULL;
    free(s->sm_location);
    s->sm_location = NULL;
    s->sm_imported = 0;
    s->h_in = s->last_acked = 0;
}

void session_import_sm(xpb_session *s, const xpb_session_sm *st)
{
    session_forget_sm(s);
    if (!st->id[0] || !(s->sm_id = session_dup_str(st->id))) return;
    if (st->location[0]) s->sm_location = strndup(st->location, XPB_SESSION_SM_LOCATION_MAX - 1);
    s->h_in = st->h_in;
    s->last_acked = st->h_acked;
    s->sm_imported = 1;
    if (st->jid[0]) {
        free(s->bound_jid);
        s->bound_jid = session_dup_str(st->jid);
    }
}

int xpb_session_get_sm(const xpb_session *s, xpb_session_sm *out)
{
    memset(out, 0, sizeof *out);
    if (!s || !s->sm_id) return 1;
    snprintf(out->id, sizeof out->id, "%s", s->sm_id);
    snprintf(out->location, sizeof out->location, "%s", s->sm_location ? s->sm_location : "");
    out->h_in = s->h_in;
    out->h_acked = s->last_acked;
    snprintf(out->jid, sizeof out->jid, "%s", s->bound_jid ? s->bound_jid : "");
    return 0;
}

void xpb_session_sm_counts(const xpb_session *s, uint32_t *h_in, uint32_t *h_acked)
{
    *h_in = s->h_in;
    *h_acked = s->last_acked;
}

void session_request_ack(xpb_session *s)
{
    session_write_empty(s, NS_SM, "r");
    s->since_r = 0;
}

/* After a tracked send: ask for an ack every ack_every stanzas, and once the
 * burst is over (the ACK timer runs on the loop's next turn) so that the last
 * stanzas of a burst are acknowledged at once too (XEP-0198 §4). */
static void after_tracked_send(xpb_session *s)
{
    if (++s->since_r >= s->cfg.ack_every) {
        session_request_ack(s);
    } else if (!s->ack_timer_armed) {
        s->ack_timer_armed = 1;
        session_set_timer(s, XPB_TIMER_ACK, XPB_SESSION_ACK_IDLE_MS);
    }
}

/* The queue has just been written in one go: one <r/> for all of it. */
void session_request_ack_if_pending(xpb_session *s)
{
    if (s->sm_on && s->since_r > 0 && s->state == XPB_SS_ONLINE) session_request_ack(s);
}

/* Send item n_sent; with SM it stays until acked, without it is done. */
static void send_next_item(xpb_session *s)
{
    out_item *it = &s->items[s->n_sent];
    uint64_t h = it->handle;
    session_emit_bytes(s, it->xml, it->len);
    s->stats.stanzas_out++;
    if (s->sm_on) {
        s->n_sent++;
        session_gauges_sync(s);
        report_item(s, XPB_SE_SENT, h, NULL);
        after_tracked_send(s);
    } else {
        item_release(s, s->n_sent);
        report_item(s, XPB_SE_SENT, h, NULL);
        report_item(s, XPB_SE_ACKED, h, NULL);
    }
}

void session_flush_queue(xpb_session *s)
{
    if (s->resume_probe) return; /* the server has not shown it reads this stream yet */
    while (s->state == XPB_SS_ONLINE && s->n_sent < s->n_items) send_next_item(s);
}

static size_t count_internal_unacked(const xpb_session *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_sent; i++) n += s->items[i].handle == 0;
    return n;
}

/* The session's own stanzas count for h like any other (XEP-0198 §4). They
 * are kept until acknowledged like the user's, so a server that makes us
 * answer (pings) but never acknowledges would grow that list without end:
 * past XPB_SESSION_MAX_INTERNAL_UNACKED the stream is given up and a fresh
 * one started (the user's stanzas are resent there; ours are not needed). */
session_action session_send_internal(xpb_session *s, const char *xml, size_t len)
{
    if (s->sm_on && count_internal_unacked(s) >= XPB_SESSION_MAX_INTERNAL_UNACKED) {
        session_whyf(s, "server acknowledged none of our last %u stanzas (XEP-0198): new session",
                     XPB_SESSION_MAX_INTERNAL_UNACKED);
        session_forget_sm(s);
        session_drop_internal_items(s);
        return act_retry(0, s->why, 0, 0);
    }
    if (s->sm_on) {
        if (session_item_insert(s, s->n_sent, 0, xml, len) == 0) send_next_item(s);
        return act_continue();
    }
    s->stats.stanzas_out++;
    session_emit_bytes(s, xml, len);
    return act_continue();
}

/* ---- acks ------------------------------------------------------------------ */

static session_action stream_error(xpb_session *s, const char *h, const char *send_count)
{
    xpb_buf b;
    xpb_buf_init(&b, 0);
    int rc = session_format_stream_error(&b, "undefined-condition",
                                         send_count ? NS_SM : NULL, "handled-count-too-high", h,
                                         send_count, NULL);
    free(s->why_xml);
    s->why_xml = rc == 0 ? malloc(b.len + 1) : NULL;
    if (s->why_xml) {
        memcpy(s->why_xml, b.data, b.len);
        s->why_xml[b.len] = '\0';
    }
    xpb_buf_free(&b);
    return (session_action){ACT_STREAM_ERROR, XPB_ESTREAM, s->why, 0, 0};
}

/* XEP-0198 §4: h acknowledges (h - last_acked) mod 2^32 stanzas; more than we
 * sent is a protocol violation answered with undefined-condition +
 * handled-count-too-high (XEP-0198 §6). */
static session_action apply_h(xpb_session *s, const char *hv)
{
    uint32_t h;
    if (session_parse_u32(hv, &h) != 0) {
        session_whyf(s, "stream management: invalid h");
        return stream_error(s, NULL, NULL);
    }
    uint32_t diff = h - s->last_acked;
    if (diff > s->n_sent) {
        uint32_t sent = s->last_acked + (uint32_t)s->n_sent;
        char hs[16], ss[16];
        snprintf(hs, sizeof hs, "%" PRIu32, h);
        snprintf(ss, sizeof ss, "%" PRIu32, sent);
        session_whyf(s,
                     "stream management: server acknowledged %" PRIu32 " but only %" PRIu32
                     " were sent (handled-count-too-high)",
                     h, sent);
        return stream_error(s, hs, ss);
    }
    s->last_acked = h;
    release_acked(s, diff);
    if (s->resume_probe) { /* the server reads this stream: the queue goes out */
        s->resume_probe = 0;
        session_set_timer(s, XPB_TIMER_CONNECT, 0);
        session_flush_queue(s);
        session_request_ack_if_pending(s);
    }
    return act_continue();
}

/* ---- enable, resume -------------------------------------------------------- */

static session_action on_enabled(xpb_session *s, const xpb_node *el)
{
    if (s->step != BIND_ENABLE) return act_continue();
    const char *resume = session_attr(el, "resume"), *id = session_attr(el, "id");
    const char *loc = session_attr(el, "location");
    session_forget_sm(s);
    if (id && resume && (strcmp(resume, "true") == 0 || strcmp(resume, "1") == 0)) {
        s->sm_id = session_dup_str(id);
        if (loc && *loc) s->sm_location = strndup(loc, XPB_SESSION_SM_LOCATION_MAX - 1);
    }
    s->sm_on = 1;
    s->since_r = 0;
    report_sm(s);
    return session_go_online(s, 0);
}

static session_action on_resumed(xpb_session *s, const xpb_node *el)
{
    if (s->step != BIND_RESUME) return act_continue();
    s->sm_on = 1;
    if (s->sm_imported) {
        /* A stream of an earlier process: what it sent is not in our queue,
         * so the server's h is taken as it is and nothing is released. */
        uint32_t h;
        if (session_parse_u32(session_attr(el, "h"), &h) != 0) {
            session_whyf(s, "stream management: invalid h");
            return stream_error(s, NULL, NULL);
        }
        s->last_acked = h;
        s->sm_imported = 0;
    } else {
        session_action a = apply_h(s, session_attr(el, "h"));
        if (a.kind != ACT_CONTINUE) return a;
    }
    /* The old link (or the earlier process) may have died in the middle of
     * a stanza, and a server may go on parsing the resumed stream where the
     * old link's bytes stopped (Prosody 0.12 feeds the new link to the old
     * link's parser): our stanzas would then be swallowed as children of
     * that half stanza, never handled nor acknowledged, and every later
     * resume of this stream would do the same. So nothing of the queue is
     * written until an <a/> answers an <r/>: the server parses what we
     * write. No answer within connect_timeout_ms: the stream is given up and
     * a fresh one bound (session.c, give_up_resume). */
    s->resume_probe = 1;
    s->stats.resumptions++;
    report_sm(s);
    s->n_sent = 0; /* XEP-0198 §5: everything not acknowledged is sent again */
    session_gauges_sync(s);
    s->since_r = 0;
    session_action a = session_go_online(s, 1);
    if (a.kind != ACT_CONTINUE || !s->resume_probe || s->state != XPB_SS_ONLINE) return a;
    session_request_ack(s);
    session_set_timer(s, XPB_TIMER_CONNECT, s->cfg.connect_timeout_ms);
    return a;
}

static session_action on_failed(xpb_session *s, const xpb_node *el)
{
    if (s->step == BIND_ENABLE) {
        session_forget_sm(s);
        return session_go_online(s, 0); /* no SM on this stream */
    }
    if (s->step != BIND_RESUME) return act_continue();
    s->stats.resume_failures++;
    /* A newer server tells what it handled before the session died. */
    if (session_attr(el, "h") != NULL && !s->sm_imported) {
        s->sm_on = 1;
        session_action a = apply_h(s, session_attr(el, "h"));
        if (a.kind != ACT_CONTINUE) return a;
        s->sm_on = 0;
    }
    session_forget_sm(s);
    session_drop_internal_items(s);
    return session_send_bind(s);
}

session_action session_on_sm(xpb_session *s, const xpb_node *el)
{
    const char *name = el->name;
    if (strcmp(name, "r") == 0) {
        if (s->sm_on) {
            report_sm(s); /* kept before the server learns the h */
            session_write_answer_r(s);
        }
        return act_continue();
    }
    if (strcmp(name, "a") == 0) return s->sm_on ? apply_h(s, session_attr(el, "h")) : act_continue();
    if (strcmp(name, "enabled") == 0) return on_enabled(s, el);
    if (strcmp(name, "resumed") == 0) return on_resumed(s, el);
    if (strcmp(name, "failed") == 0) return on_failed(s, el);
    return act_continue();
}
